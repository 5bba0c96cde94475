//! The settings of one run, resolved in one place: the command line (clap,
//! which also reads the variables its options name), DECNET's own variables
//! and the defaults, each value with where it came from. The parsed arguments
//! stop here: past this module only [`Config`] travels (and, for the
//! `completions` task, clap_complete's `Shell`, which generating needs).

pub mod bus;
pub mod cli;
pub mod credentials;
pub mod db;
pub mod decnet_bus;
pub mod decnet_ini;
pub mod decnet_root;
pub mod password_file;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};

use crate::bus::{Bus, RedisAccess};
use crate::store::DbTarget;
use cli::{Cli, Command, OutputFormat, PassArgs};

/// The process environment, read once: every variable the run looks at comes
/// from here (clap reads the variables its options name itself).
#[derive(Debug, Clone, Default)]
pub struct Environment {
    vars: BTreeMap<OsString, OsString>,
}

impl Environment {
    pub fn of_process() -> Self {
        Self::from_pairs(std::env::vars_os())
    }

    pub fn from_pairs<K: Into<OsString>, V: Into<OsString>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Environment {
            vars: pairs
                .into_iter()
                .map(|(name, value)| (name.into(), value.into()))
                .collect(),
        }
    }

    /// The value of `name`, when it is set, UTF-8 and not empty: an empty
    /// variable counts as unset, which is what a blank line in an environment
    /// file means (and how Docker's CLI reads `DOCKER_HOST=`).
    pub fn var(&self, name: &str) -> Option<&str> {
        self.raw(name)
            .and_then(OsStr::to_str)
            .filter(|value| !value.is_empty())
    }

    /// The value of `name` exactly as set, empty or not.
    pub fn raw(&self, name: &str) -> Option<&OsStr> {
        self.vars.get(OsStr::new(name)).map(OsString::as_os_str)
    }

    pub fn pairs(&self) -> impl Iterator<Item = (OsString, OsString)> + '_ {
        self.vars
            .iter()
            .map(|(name, value)| (name.clone(), value.clone()))
    }
}

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    CommandLine,
    Environment,
    /// Not given: the option's default, or nothing.
    Default,
}

/// A value with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T> {
    pub value: T,
    pub origin: Origin,
}

/// What this invocation does.
#[derive(Debug)]
pub enum Task {
    Pass(Box<Config>),
    Completions(clap_complete::Shell),
}

/// Why the command line asks for no task.
#[derive(Debug)]
pub enum Stop {
    /// `--help` or `--version`: print it on stdout, exit 0.
    Shown(clap::Error),
    /// A usage error, rendered for stderr: exit 1 (2 means drift).
    Usage(String),
    /// The arguments parse, but a value is not usable.
    Invalid(anyhow::Error),
}

/// Everything a pass needs, checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub state_file: PathBuf,
    pub db: DbTarget,
    pub host_uuid: String,
    pub docker_host: String,
    /// Where events go; `None` with `--no-publish` (or DECNET's bus turned off).
    pub bus: Option<Bus>,
    /// The CA and password file of a Redis bus.
    pub redis_access: RedisAccess,
    /// Passwords read from files (to mask) and what to warn about them.
    pub credentials: credentials::Credentials,
    /// Publish a heartbeat after every pass that is not dry.
    pub heartbeat: bool,
    pub dry_run: bool,
    pub output: Output,
    pub detailed_exitcode: bool,
    pub docker_timeout: Duration,
    pub bus_timeout: Duration,
    pub db_busy_timeout: Duration,
    pub verbosity: Verbosity,
    pub colour: Colour,
}

/// The format of standard output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose(u8),
}

impl Verbosity {
    /// The least severe log record shown.
    pub fn level(self) -> tracing::Level {
        match self {
            Verbosity::Quiet => tracing::Level::WARN,
            Verbosity::Normal => tracing::Level::INFO,
            Verbosity::Verbose(1) => tracing::Level::DEBUG,
            Verbosity::Verbose(_) => tracing::Level::TRACE,
        }
    }
}

/// Where colour goes: only to a terminal, with `NO_COLOR` unset (or empty)
/// and `TERM` not `dumb` — one rule for both streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Colour {
    pub stdout: bool,
    pub stderr: bool,
}

impl Colour {
    fn decide(env: &Environment) -> Self {
        let allowed = env.var("NO_COLOR").is_none() && env.var("TERM") != Some("dumb");
        Colour {
            stdout: allowed && std::io::stdout().is_terminal(),
            stderr: allowed && std::io::stderr().is_terminal(),
        }
    }
}

/// Variables for which an empty value is not the same as unset: falling back to
/// the default would be unsafe (an empty host id would become `local`, whose
/// rows a pass may delete), so [`Config`] refuses them, naming the variable.
const MUST_NOT_BE_EMPTY: [&str; 1] = ["DECNET_HOST_UUID"];

/// The command line as clap parses it, with every variable that `env` holds
/// empty dropped from its option (clap alone would take the empty value, or
/// refuse it naming the option instead of the variable), so that the option
/// takes its default.
pub fn command(env: &Environment) -> clap::Command {
    let mut command = Cli::command();
    let empty: Vec<clap::Id> = command
        .get_arguments()
        .filter(|arg| {
            arg.get_env().is_some_and(|name| {
                let name = name.to_string_lossy();
                !MUST_NOT_BE_EMPTY.contains(&name.as_ref())
                    && env.raw(&name).is_some_and(OsStr::is_empty)
            })
        })
        .map(|arg| arg.get_id().clone())
        .collect();
    for id in empty {
        command = command.mut_arg(id, |arg| arg.env(None));
    }
    command
}

/// Resolves the task of the command line `args` in the environment `env`.
pub fn resolve(args: Vec<OsString>, env: &Environment) -> Result<Task, Stop> {
    let mut command = command(env);
    let matches = command
        .try_get_matches_from_mut(args)
        .map_err(|err| stop(err, &command, env))?;
    let cli = Cli::from_arg_matches(&matches).map_err(|err| stop(err, &command, env))?;
    match cli.command {
        Some(Command::Completions { shell }) => Ok(Task::Completions(shell)),
        Some(Command::Once) | None => Config::resolve(cli.pass, &matches, env)
            .map(|config| Task::Pass(Box::new(config)))
            .map_err(Stop::Invalid),
    }
}

/// What a clap error means for the run. A value clap refused that came from
/// a variable is named by the variable, not by the option it feeds.
fn stop(err: clap::Error, command: &clap::Command, env: &Environment) -> Stop {
    if !err.use_stderr() {
        return Stop::Shown(err);
    }
    if err.kind() == ErrorKind::ValueValidation {
        if let Some(variable) = refused_variable(&err, command, env) {
            let reason = std::error::Error::source(&err)
                .map(|source| source.to_string())
                .unwrap_or_else(|| "not a valid value".to_owned());
            return Stop::Invalid(anyhow::anyhow!("{variable}: {reason}"));
        }
    }
    Stop::Usage(err.render().to_string())
}

/// The variable whose value clap refused, when the refused value is one.
fn refused_variable(
    err: &clap::Error,
    command: &clap::Command,
    env: &Environment,
) -> Option<String> {
    let (Some(ContextValue::String(option)), Some(ContextValue::String(value))) = (
        err.get(ContextKind::InvalidArg),
        err.get(ContextKind::InvalidValue),
    ) else {
        return None;
    };
    command.get_arguments().find_map(|arg| {
        let long = format!("--{}", arg.get_long()?);
        let variable = arg.get_env()?.to_str()?;
        (option.starts_with(&long) && env.raw(variable) == Some(OsStr::new(value)))
            .then(|| variable.to_owned())
    })
}

/// The value of argument `id` with where it came from.
fn setting<T>(value: T, matches: &ArgMatches, id: &str) -> Setting<T> {
    Setting {
        value,
        origin: origin(matches, id),
    }
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

impl Config {
    fn resolve(args: PassArgs, matches: &ArgMatches, env: &Environment) -> Result<Config> {
        // An empty id would be a scope nobody owns; refuse rather than guess.
        if args.host_uuid.trim().is_empty() {
            if env
                .raw("DECNET_HOST_UUID")
                .is_some_and(|value| value.to_string_lossy().trim().is_empty())
            {
                bail!("DECNET_HOST_UUID is set but empty: set it to this host's id, or unset it for \"local\"");
            }
            bail!("--host-uuid must not be empty");
        }
        let verbosity = match (args.quiet, args.verbose) {
            (true, _) => Verbosity::Quiet,
            (false, 0) => Verbosity::Normal,
            (false, n) => Verbosity::Verbose(n),
        };
        let bus = bus::choose(
            bus::BusOptions {
                no_publish: args.no_publish,
                bus: setting(args.bus, matches, "bus"),
                redis_url: setting(args.redis_url, matches, "redis_url"),
            },
            env,
        )?;
        let db = db::choose(setting(args.db, matches, "db"), env)?;
        let redis_ca = setting(args.redis_ca, matches, "redis_ca");
        let (db, redis_access, credentials) =
            credentials::resolve(db, bus.as_ref(), redis_ca, env)?;
        Ok(Config {
            state_file: args.state_file,
            db,
            host_uuid: args.host_uuid,
            docker_host: args.docker_host,
            bus,
            redis_access,
            credentials,
            heartbeat: args.heartbeat,
            dry_run: args.dry_run,
            output: match args.output {
                OutputFormat::Table => Output::Table,
                OutputFormat::Json => Output::Json,
            },
            detailed_exitcode: args.detailed_exitcode,
            docker_timeout: args.docker_timeout,
            bus_timeout: args.bus_timeout,
            db_busy_timeout: args.db_busy_timeout,
            verbosity,
            colour: Colour::decide(env),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(args: &[&str], vars: &[(&str, &str)]) -> Result<Task, Stop> {
        let args = std::iter::once("decnet-reconcile")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect();
        resolve(args, &Environment::from_pairs(vars.iter().copied()))
    }

    /// clap reads the variables its options name from the process itself, so
    /// the variable's side of this is proven through the binary (tests/it).
    #[test]
    fn a_bad_typed_value_is_a_usage_error_naming_the_option() {
        let Err(Stop::Usage(typed)) = resolved(&["--docker-timeout", "soon"], &[]) else {
            panic!("--docker-timeout soon is refused");
        };
        assert!(typed.contains("--docker-timeout"), "{typed}");
    }

    #[test]
    fn an_empty_typed_host_id_is_refused() {
        let Err(Stop::Invalid(typed)) = resolved(&["--host-uuid", " "], &[]) else {
            panic!("refused");
        };
        assert_eq!(typed.to_string(), "--host-uuid must not be empty");
    }

    #[test]
    fn help_and_version_are_shown_not_errors() {
        for flag in ["--help", "--version"] {
            assert!(
                matches!(resolved(&[flag], &[]), Err(Stop::Shown(_))),
                "{flag}"
            );
        }
    }
}
