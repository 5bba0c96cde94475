//! The validated settings of one run. `Cli` stops here: nothing past this
//! module sees a clap type.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::cli::{Cli, Command, OutputFormat, PassArgs};

/// What this invocation does.
#[derive(Debug)]
pub enum Task {
    Pass(Config),
    Completions(clap_complete::Shell),
}

/// Everything a pass needs, checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub state_file: PathBuf,
    pub db: PathBuf,
    pub host_uuid: String,
    pub docker_host: String,
    /// `None` with `--no-publish`.
    pub redis_url: Option<String>,
    pub dry_run: bool,
    pub output: OutputFormat,
    pub detailed_exitcode: bool,
    pub docker_timeout: Duration,
    pub redis_timeout: Duration,
    pub db_busy_timeout: Duration,
    pub verbosity: Verbosity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose(u8),
}

impl Task {
    pub fn from_cli(cli: Cli) -> Result<Task> {
        match cli.command {
            Some(Command::Completions { shell }) => Ok(Task::Completions(shell)),
            Some(Command::Once) | None => Config::from_args(cli.pass).map(Task::Pass),
        }
    }
}

impl Config {
    fn from_args(args: PassArgs) -> Result<Config> {
        // An empty id would be a scope nobody owns; refuse rather than guess.
        if args.host_uuid.trim().is_empty() {
            bail!("--host-uuid (or DECNET_HOST_UUID) must not be empty");
        }
        let verbosity = match (args.quiet, args.verbose) {
            (true, _) => Verbosity::Quiet,
            (false, 0) => Verbosity::Normal,
            (false, n) => Verbosity::Verbose(n),
        };
        Ok(Config {
            state_file: args.state_file,
            db: args.db,
            host_uuid: args.host_uuid,
            docker_host: args.docker_host,
            redis_url: (!args.no_publish).then_some(args.redis_url),
            dry_run: args.dry_run,
            output: args.output,
            detailed_exitcode: args.detailed_exitcode,
            docker_timeout: args.docker_timeout,
            redis_timeout: args.redis_timeout,
            db_busy_timeout: args.db_busy_timeout,
            verbosity,
        })
    }
}
