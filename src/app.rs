//! A run of the binary: resolve the task, do it, print its result, and map
//! the outcome to an exit code. `main` only hands over the process's
//! arguments and environment.

use std::ffi::OsString;
use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::config::credentials::Credentials;
use crate::config::{self, Checkup, Config, Environment, Output, Stop, Task, Verbosity};
use crate::core::Report;
use crate::exit_codes::ExitCode;
use crate::text::log::{self, StderrSink};
use crate::text::Secrets;
use crate::{doctor, pass, render};

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
        Task::Doctor(checkup) => run_doctor(&checkup, secrets),
        Task::Pass(config) => {
            log::init(config.verbosity.level(), secrets, config.colour.stderr);
            learn_credentials(&config.credentials, secrets);
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

/// `doctor`: its findings on stdout; exit 0 when all is well, else 1.
fn run_doctor(checkup: &Checkup, secrets: &Arc<Secrets>) -> Result<ExitCode> {
    learn_credentials(&checkup.credentials, secrets);
    let diagnosis = on_runtime(doctor::run(checkup))?;
    let text = match checkup.output {
        Output::Json => render::diagnosis_json(&diagnosis),
        Output::Table => render::diagnosis_table(&diagnosis, checkup.colour.stdout),
    };
    write_stdout(secrets.mask(&text).as_bytes()).context("cannot write the diagnosis to stdout")?;
    Ok(match diagnosis.ok() {
        true => ExitCode::Success,
        false => ExitCode::Error,
    })
}

/// Masks the passwords read from files from here on, like every secret of the
/// invocation, and warns about the password files as `config` found them.
fn learn_credentials(credentials: &Credentials, secrets: &Secrets) {
    for password in &credentials.read_from_files {
        secrets.learn(password.expose());
    }
    for warning in &credentials.warnings {
        tracing::warn!("{warning}");
    }
}

/// The pass, on a runtime of one thread.
fn one_pass(config: &Config) -> Result<Report> {
    on_runtime(pass::run(config))?
}

/// Runs `task` on a runtime of one thread that is dropped without waiting for
/// anything still blocked: the task's own bounds decide when it ends.
fn on_runtime<T>(task: impl std::future::Future<Output = T>) -> Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let done = runtime.block_on(task);
    runtime.shutdown_background();
    Ok(done)
}

fn print_report(config: &Config, report: &Report, secrets: &Secrets) -> std::io::Result<()> {
    let text = match config.output {
        Output::Json => render::json(report),
        // The systemd unit runs with -q: a converged pass must not reach the journal.
        Output::Table if config.verbosity == Verbosity::Quiet && report.plan.is_empty() => {
            return Ok(())
        }
        Output::Table => render::table(report, config.colour.stdout, secrets),
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
