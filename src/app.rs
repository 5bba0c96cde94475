//! A run of the binary: resolve the task, do it, print its result, and map
//! the outcome to an exit code. `main` only hands over the process's
//! arguments and environment.

use std::ffi::OsString;
use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::config::{self, Config, Environment, Output, Stop, Task, Verbosity};
use crate::core::Report;
use crate::exit_codes::ExitCode;
use crate::text::log::{self, StderrSink};
use crate::text::Secrets;
use crate::{pass, render};

/// Runs the command line `args` in the environment `env`.
pub fn run(args: Vec<OsString>, env: Environment) -> ExitCode {
    log::fill_closed_standard_streams();
    let secrets = Arc::new(Secrets::of_invocation(args.clone(), env.pairs()));
    let stderr = StderrSink::new(Arc::clone(&secrets), false);
    let outcome = match config::resolve(args, &env) {
        Ok(task) => run_task(task, &secrets),
        Err(Stop::Shown(help_or_version)) => {
            let _ = help_or_version.print();
            return ExitCode::Success;
        }
        // Usage errors are 1, not clap's 2: 2 means drift.
        Err(Stop::Usage(text)) => {
            stderr.text(&text);
            return ExitCode::Error;
        }
        Err(Stop::Invalid(err)) => Err(err),
    };
    outcome.unwrap_or_else(|err| {
        stderr.line(&format!("decnet-reconcile: error: {err:#}"));
        ExitCode::Error
    })
}

fn run_task(task: Task, secrets: &Arc<Secrets>) -> Result<ExitCode> {
    match task {
        Task::Completions(shell) => {
            // Generated into memory: clap_complete panics on a failed write.
            let mut script = Vec::new();
            let mut command = config::cli::Cli::command();
            clap_complete::generate(shell, &mut command, "decnet-reconcile", &mut script);
            write_stdout(&script).context("cannot write the completions to stdout")?;
            Ok(ExitCode::Success)
        }
        Task::Pass(config) => {
            log::init(config.verbosity.level(), secrets, config.colour.stderr);
            announce_credentials(&config, secrets);
            let report = one_pass(&config)?;
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

/// Masks the passwords read from files from here on, like every secret of the
/// invocation, and warns about the password files as `config` found them.
fn announce_credentials(config: &Config, secrets: &Secrets) {
    for password in &config.credentials.read_from_files {
        secrets.learn(password.expose());
    }
    for warning in &config.credentials.warnings {
        tracing::warn!("{warning}");
    }
}

/// The pass, on a runtime of one thread that is dropped without waiting for
/// anything still blocked: the pass's own bounds decide when it ends.
fn one_pass(config: &Config) -> Result<Report> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = runtime.block_on(pass::run(config));
    runtime.shutdown_background();
    report
}

fn print_report(config: &Config, report: &Report, secrets: &Secrets) -> std::io::Result<()> {
    let text = match config.output {
        Output::Json => render::json(report),
        // The systemd unit runs with -q: a converged pass must not reach the journal.
        Output::Table if config.verbosity == Verbosity::Quiet && report.plan.is_empty() => {
            return Ok(())
        }
        Output::Table => render::table(report, config.colour.stdout),
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
