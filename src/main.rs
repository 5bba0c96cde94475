//! The binary: parse, run one task, map the outcome to an exit code.

use std::io::{IsTerminal, Write};

use anyhow::Result;
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use decnet_reconcile::cli::{Cli, OutputFormat};
use decnet_reconcile::config::{BusOrigins, Config, DbSource, Origin, Task, Verbosity};
use decnet_reconcile::exit_codes::ExitCode;
use decnet_reconcile::{pass, render};

fn main() -> std::process::ExitCode {
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|matches| Ok((Cli::from_arg_matches(&matches)?, origins(&matches))));
    let (cli, (db_source, bus_origins)) = match parsed {
        Ok(parsed) => parsed,
        Err(err) => {
            let _ = err.print();
            // Usage errors are 1, not clap's 2: 2 means drift.
            let code = if err.use_stderr() {
                ExitCode::Error
            } else {
                ExitCode::Success
            };
            return code.into();
        }
    };
    match run(cli, db_source, bus_origins) {
        Ok(code) => code.into(),
        Err(err) => {
            eprintln!("decnet-reconcile: error: {err:#}");
            ExitCode::Error.into()
        }
    }
}

/// Where `--db`, `--bus` and `--redis-url` got their values: typed ones outrank
/// DECNET's variables.
fn origins(matches: &ArgMatches) -> (DbSource, BusOrigins) {
    let db_source = match origin(matches, "db") {
        Origin::CommandLine => DbSource::CommandLine,
        Origin::Environment | Origin::Default => DbSource::EnvironmentOrDefault,
    };
    let bus_origins = BusOrigins {
        bus: origin(matches, "bus"),
        redis_url: origin(matches, "redis_url"),
    };
    (db_source, bus_origins)
}

/// Where argument `id` got its value, typed before or after `once`.
fn origin(matches: &ArgMatches, id: &str) -> Origin {
    let subcommand = matches.subcommand().map(|(_, sub)| sub);
    let sources: Vec<ValueSource> = std::iter::once(matches)
        .chain(subcommand)
        .filter_map(|m| m.value_source(id))
        .collect();
    if sources.contains(&ValueSource::CommandLine) {
        Origin::CommandLine
    } else if sources.contains(&ValueSource::EnvVariable) {
        Origin::Environment
    } else {
        Origin::Default
    }
}

fn run(cli: Cli, db_source: DbSource, bus_origins: BusOrigins) -> Result<ExitCode> {
    match Task::from_cli(cli, db_source, bus_origins, |name| std::env::var(name).ok())? {
        Task::Completions(shell) => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "decnet-reconcile",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::Success)
        }
        Task::Pass(config) => {
            init_logging(config.verbosity);
            let report = pass::run(&config)?;
            print_report(&config, &report)?;
            let changed = !report.plan.is_empty();
            Ok(ExitCode::for_pass(changed, config.detailed_exitcode))
        }
    }
}

fn print_report(config: &Config, report: &pass::PassReport) -> Result<()> {
    let text = match config.output {
        OutputFormat::Json => render::json(report),
        // The systemd unit runs with -q: a converged pass must not reach the journal.
        OutputFormat::Table if config.verbosity == Verbosity::Quiet && report.plan.is_empty() => {
            return Ok(())
        }
        OutputFormat::Table => render::table(report, render::stdout_wants_color()),
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

fn init_logging(verbosity: Verbosity) {
    let level = match verbosity {
        Verbosity::Quiet => tracing::Level::WARN,
        Verbosity::Normal => tracing::Level::INFO,
        Verbosity::Verbose(1) => tracing::Level::DEBUG,
        Verbosity::Verbose(_) => tracing::Level::TRACE,
    };
    let ansi = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_ansi(ansi)
        .without_time()
        .with_target(false)
        .init();
}
