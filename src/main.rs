//! The binary: parse, run one task, map the outcome to an exit code.

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use decnet_reconcile::cli::{Cli, OutputFormat};
use decnet_reconcile::config::{self, BusOrigins, Config, DbSource, Origin, Task, Verbosity};
use decnet_reconcile::exit_codes::ExitCode;
use decnet_reconcile::terminal::{self, Secrets, StderrSink};
use decnet_reconcile::{pass, render};

fn main() -> std::process::ExitCode {
    terminal::fill_closed_standard_streams();
    let secrets = Arc::new(Secrets::of_invocation(
        std::env::args_os(),
        std::env::vars_os(),
    ));
    let stderr = StderrSink::new(Arc::clone(&secrets), false);
    let parsed = config::command(|name| std::env::var_os(name))
        .try_get_matches()
        .and_then(|matches| Ok((Cli::from_arg_matches(&matches)?, origins(&matches))));
    let (cli, (db_source, bus_origins)) = match parsed {
        Ok(parsed) => parsed,
        // Usage errors are 1, not clap's 2: 2 means drift.
        Err(err) if err.use_stderr() => {
            stderr.text(&err.render().to_string());
            return ExitCode::Error.into();
        }
        Err(help_or_version) => {
            let _ = help_or_version.print();
            return ExitCode::Success.into();
        }
    };
    match run(cli, db_source, bus_origins, &secrets) {
        Ok(code) => code.into(),
        Err(err) => {
            stderr.line(&format!("decnet-reconcile: error: {err:#}"));
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

fn run(
    cli: Cli,
    db_source: DbSource,
    bus_origins: BusOrigins,
    secrets: &Arc<Secrets>,
) -> Result<ExitCode> {
    match Task::from_cli(cli, db_source, bus_origins, |name| std::env::var(name).ok())? {
        Task::Completions(shell) => {
            // Generated into memory: clap_complete panics on a failed write.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "decnet-reconcile", &mut script);
            write_stdout(&script).context("cannot write the completions to stdout")?;
            Ok(ExitCode::Success)
        }
        Task::Pass(config) => {
            init_logging(config.verbosity, secrets);
            let report = pass::run(&config)?;
            let code = ExitCode::for_pass(!report.plan.is_empty(), config.detailed_exitcode);
            match print_report(&config, &report, secrets) {
                Ok(()) => Ok(code),
                Err(err) => match code.for_unprinted_report(config.dry_run) {
                    ExitCode::Error => Err(anyhow::Error::new(err)
                        .context("cannot write the dry run's plan to stdout; nothing was changed")),
                    code => {
                        tracing::warn!(
                            "cannot write the report to stdout ({err}); the pass is complete all the same"
                        );
                        Ok(code)
                    }
                },
            }
        }
    }
}

fn print_report(
    config: &Config,
    report: &pass::PassReport,
    secrets: &Secrets,
) -> std::io::Result<()> {
    let text = match config.output {
        OutputFormat::Json => render::json(report),
        // The systemd unit runs with -q: a converged pass must not reach the journal.
        OutputFormat::Table if config.verbosity == Verbosity::Quiet && report.plan.is_empty() => {
            return Ok(())
        }
        OutputFormat::Table => render::table(report, render::stdout_wants_color()),
    };
    write_stdout(secrets.mask(&text).as_bytes())
}

/// Writes all of `bytes` to stdout. Rust ignores SIGPIPE, so a closed pipe is
/// an `EPIPE` error here, for the caller to judge, rather than a killed process.
fn write_stdout(bytes: &[u8]) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes)?;
    stdout.flush()
}

fn init_logging(verbosity: Verbosity, secrets: &Arc<Secrets>) {
    let level = match verbosity {
        Verbosity::Quiet => tracing::Level::WARN,
        Verbosity::Normal => tracing::Level::INFO,
        Verbosity::Verbose(1) => tracing::Level::DEBUG,
        Verbosity::Verbose(_) => tracing::Level::TRACE,
    };
    let ansi = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_writer(StderrSink::new(Arc::clone(secrets), ansi))
        .with_max_level(level)
        .with_ansi(ansi)
        .without_time()
        .with_target(false)
        .init();
}
