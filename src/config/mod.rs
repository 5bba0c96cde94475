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
mod sources;

use std::any::TypeId;
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};

use crate::bus::{Bus, RedisAccess};
use crate::store::{DbTarget, Schema};
use cli::{Cli, Command, OutputFormat, PassArgs};
use decnet_ini::IniOrigin;
use decnet_root::DecnetRoot;
use sources::Sources;

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

/// Where a setting's value came from, in the order of precedence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Typed on the command line, as this option.
    CommandLine(String),
    /// This variable of the process environment.
    Environment(String),
    /// DECNET's ini, at this line.
    DecnetIni(IniOrigin),
    /// Found on this host, as said.
    Discovered(String),
    /// Not given: the default.
    Default,
}

impl Origin {
    /// The word `doctor` shows for it.
    pub fn kind(&self) -> &'static str {
        match self {
            Origin::CommandLine(_) => "option",
            Origin::Environment(_) => "environment",
            Origin::DecnetIni(_) => "decnet-ini",
            Origin::Discovered(_) => "discovered",
            Origin::Default => "default",
        }
    }

    /// Where exactly: the option, the variable, the ini's file, line and key,
    /// or how it was found; `None` for a default.
    pub fn place(&self) -> Option<String> {
        match self {
            Origin::CommandLine(option) => Some(option.clone()),
            Origin::Environment(variable) => Some(variable.clone()),
            Origin::DecnetIni(at) => Some(at.to_string()),
            Origin::Discovered(how) => Some(how.clone()),
            Origin::Default => None,
        }
    }

    /// [`Origin::place`], or `default` for a default: what an error names.
    pub fn place_or(&self, default: &str) -> String {
        self.place().unwrap_or_else(|| default.to_owned())
    }
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
    Doctor(Box<Checkup>),
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
    /// Whether a pass may create the database and its table (`--create-table`).
    pub schema: Schema,
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
    /// Where every pass that is not dry writes its metrics; `None`: nowhere.
    pub metrics_file: Option<PathBuf>,
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
    let typed = args.clone();
    let matches = command
        .try_get_matches_from_mut(args)
        .map_err(|err| stop(err, &command, env, &typed))?;
    let cli = Cli::from_arg_matches(&matches).map_err(|err| stop(err, &command, env, &typed))?;
    let given = Given {
        matches: &matches,
        command: &command,
    };
    match cli.command {
        Some(Command::Completions { shell }) => Ok(Task::Completions(shell)),
        Some(Command::Doctor) => Ok(Task::Doctor(Box::new(Checkup::resolve(
            cli.pass, &given, env,
        )))),
        Some(Command::Once) | None => Config::resolve(cli.pass, &given, env)
            .map(|config| Task::Pass(Box::new(config)))
            .map_err(Stop::Invalid),
    }
}

/// What a clap error means for the run. A value clap refused that came from
/// a variable is named by the variable, not by the option it feeds: the one
/// place that turns clap's errors into messages, so that every option with a
/// variable, a new one too, is covered.
fn stop(err: clap::Error, command: &clap::Command, env: &Environment, typed: &[OsString]) -> Stop {
    if !err.use_stderr() {
        return Stop::Shown(err);
    }
    match err.kind() {
        ErrorKind::ValueValidation | ErrorKind::InvalidValue => {
            if let Some(variable) = refused_variable(&err, command, env) {
                let reason = std::error::Error::source(&err)
                    .map(|source| source.to_string())
                    .unwrap_or_else(|| "not a valid value".to_owned());
                return Stop::Invalid(anyhow::anyhow!("{variable}: {reason}"));
            }
        }
        // clap names no argument here ("invalid UTF-8 was detected in one or
        // more arguments"): when every typed argument is text, it was a variable.
        ErrorKind::InvalidUtf8 => {
            if let Some(variable) = non_text_variable(command, env, typed) {
                return Stop::Invalid(anyhow::anyhow!("{variable}: its value is not UTF-8 text"));
            }
        }
        _ => {}
    }
    Stop::Usage(err.render().to_string())
}

/// The variable, of an option that takes text and is not typed, whose value
/// is not UTF-8, when every typed argument is UTF-8.
fn non_text_variable(
    command: &clap::Command,
    env: &Environment,
    typed: &[OsString],
) -> Option<String> {
    let typed: Vec<&str> = typed
        .iter()
        .skip(1)
        .map(|arg| arg.to_str())
        .collect::<Option<_>>()?;
    command.get_arguments().find_map(|arg| {
        let variable = arg.get_env()?.to_str()?;
        let long = format!("--{}", arg.get_long()?);
        let takes_text = ![TypeId::of::<PathBuf>(), TypeId::of::<OsString>()]
            .iter()
            .any(|id| arg.get_value_parser().type_id() == *id);
        let given = typed
            .iter()
            .any(|arg| *arg == long || arg.starts_with(&format!("{long}=")));
        (takes_text && !given && env.raw(variable)?.to_str().is_none()).then(|| variable.to_owned())
    })
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

/// The arguments as clap parsed them, to tell where each value came from.
struct Given<'m> {
    matches: &'m ArgMatches,
    command: &'m clap::Command,
}

impl Given<'_> {
    /// `value` (clap's value of argument `id`, if it has one) with where it came from.
    fn setting<T>(&self, value: Option<T>, id: &str) -> Option<Setting<T>> {
        value.map(|value| Setting {
            value,
            origin: self.origin(id),
        })
    }

    /// Where argument `id` got its value, typed before or after the subcommand.
    fn origin(&self, id: &str) -> Origin {
        let subcommand = self.matches.subcommand().map(|(_, sub)| sub);
        let sources: Vec<ValueSource> = std::iter::once(self.matches)
            .chain(subcommand)
            .filter_map(|m| m.value_source(id))
            .collect();
        let arg = self.command.get_arguments().find(|arg| arg.get_id() == id);
        if sources.contains(&ValueSource::CommandLine) {
            let long = arg.and_then(|arg| arg.get_long()).unwrap_or(id);
            Origin::CommandLine(format!("--{long}"))
        } else if sources.contains(&ValueSource::EnvVariable) {
            let variable = arg.and_then(|arg| arg.get_env()).unwrap_or_default();
            Origin::Environment(variable.to_string_lossy().into_owned())
        } else {
            Origin::Default
        }
    }
}

/// The host id when neither `--host-uuid` nor `DECNET_HOST_UUID` nor DECNET's ini gives one:
/// DECNET's single-host sentinel.
pub const DEFAULT_HOST_UUID: &str = "local";

/// Every setting of a run, each resolved on its own: a pass needs all of
/// them, `doctor` shows those it can and names what keeps the others.
#[derive(Debug)]
pub struct Settings {
    pub install_dir: Setting<PathBuf>,
    pub ini_file: Setting<PathBuf>,
    /// Why DECNET's ini cannot be used (looked at by `doctor` only: a pass
    /// reads the ini when a setting reaches it, and that setting's error names it).
    pub ini_problem: Option<decnet_ini::IniError>,
    /// DECNET's root, when a setting needed it and it was found.
    pub root: Option<DecnetRoot>,
    pub state_file: Result<Setting<PathBuf>>,
    pub db: Result<db::DbChoice>,
    pub host_uuid: Result<Setting<String>>,
    pub docker_host: Setting<String>,
    pub bus: Result<Setting<Option<Bus>>>,
    pub heartbeat: Setting<bool>,
    pub create_table: Setting<bool>,
}

impl Settings {
    /// The one place every setting is resolved: the command line (and the
    /// variable clap reads for an option), then the environment and DECNET's
    /// ini, then what this host shows, then the defaults.
    fn resolve(args: &PassArgs, given: &Given, env: &Environment, doctor: bool) -> Settings {
        let sources = Sources::new(env, given.setting(args.decnet_dir.clone(), "decnet_dir"));
        let host_uuid = host_uuid(given.setting(args.host_uuid.clone(), "host_uuid"), &sources);
        let bus = bus::choose(
            bus::BusOptions {
                no_publish: args.no_publish,
                bus: given.setting(args.bus.clone(), "bus"),
                redis_url: given.setting(args.redis_url.clone(), "redis_url"),
            },
            &sources,
        );
        let state_file = match given.setting(args.state_file.clone(), "state_file") {
            Some(state_file) => Ok(state_file),
            None => sources
                .root()
                .map(|root| Setting {
                    value: root.state_file(),
                    origin: sources.discovered_in_root(root),
                })
                .context(
                    "cannot find DECNET's state file: --state-file and DECNET_STATE_FILE are unset",
                ),
        };
        let db = db::choose(given.setting(args.db.clone(), "db"), &sources);
        let install_dir = sources.install_dir.clone();
        let ini_file = sources.ini_file.clone();
        let root = sources.root_if_found().cloned();
        Settings {
            install_dir,
            ini_file,
            ini_problem: doctor.then(|| sources.into_ini_problem()).flatten(),
            root,
            state_file,
            db,
            host_uuid,
            docker_host: Setting {
                value: args.docker_host.clone(),
                origin: given.origin("docker_host"),
            },
            bus,
            heartbeat: Setting {
                value: args.heartbeat,
                origin: given.origin("heartbeat"),
            },
            create_table: Setting {
                value: args.create_table,
                origin: given.origin("create_table"),
            },
        }
    }
}

/// The host id: `--host-uuid`/`DECNET_HOST_UUID`, else DECNET's ini (`[agent]
/// host-uuid`, read in agent mode), else `local`. An empty one is refused,
/// naming where it came from: it would be a scope nobody owns.
fn host_uuid(given: Option<Setting<String>>, sources: &Sources) -> Result<Setting<String>> {
    let setting = match given {
        Some(given) => given,
        None => match sources.ini_value("DECNET_HOST_UUID")? {
            Some(value) => Setting {
                value: value.value.clone(),
                origin: Origin::DecnetIni(value.origin.clone()),
            },
            None => Setting {
                value: DEFAULT_HOST_UUID.to_owned(),
                origin: Origin::Default,
            },
        },
    };
    if setting.value.trim().is_empty() {
        match &setting.origin {
            Origin::Environment(variable) => bail!(
                "{variable} is set but empty: set it to this host's id, or unset it for \"{DEFAULT_HOST_UUID}\""
            ),
            Origin::DecnetIni(at) => bail!(
                "{at} is empty: set it to this host's id, or remove the line for \"{DEFAULT_HOST_UUID}\""
            ),
            _ => bail!("--host-uuid must not be empty"),
        }
    }
    Ok(setting)
}

/// What `doctor` needs: every setting as resolved (or why not), and the bounds of its checks.
#[derive(Debug)]
pub struct Checkup {
    pub settings: Settings,
    /// The CA and password file of a Redis bus, when the DB and the bus resolve.
    pub redis_access: RedisAccess,
    /// Passwords read from files (to mask) and what to warn about them.
    pub credentials: credentials::Credentials,
    pub output: Output,
    pub docker_timeout: Duration,
    pub bus_timeout: Duration,
    pub db_busy_timeout: Duration,
    pub colour: Colour,
}

impl Checkup {
    fn resolve(args: PassArgs, given: &Given, env: &Environment) -> Checkup {
        let mut settings = Settings::resolve(&args, given, env, true);
        let redis_ca = Setting {
            value: args.redis_ca.clone(),
            origin: given.origin("redis_ca"),
        };
        // A password file that cannot be read shows as the DB's or the bus's
        // own problem when doctor connects; here it only loses what it would add.
        let (redis_access, credentials) = match (&mut settings.db, &settings.bus) {
            (Ok(db), Ok(bus)) => {
                match credentials::resolve(
                    db.target.value.clone(),
                    bus.value.as_ref(),
                    redis_ca,
                    env,
                ) {
                    Ok((with_password, redis_access, credentials)) => {
                        db.target.value = with_password;
                        (redis_access, credentials)
                    }
                    Err(_) => Default::default(),
                }
            }
            _ => Default::default(),
        };
        Checkup {
            settings,
            redis_access,
            credentials,
            output: output(args.output),
            docker_timeout: args.docker_timeout,
            bus_timeout: args.bus_timeout,
            db_busy_timeout: args.db_busy_timeout,
            colour: Colour::decide(env),
        }
    }
}

fn output(format: OutputFormat) -> Output {
    match format {
        OutputFormat::Table => Output::Table,
        OutputFormat::Json => Output::Json,
    }
}

impl Config {
    fn resolve(args: PassArgs, given: &Given, env: &Environment) -> Result<Config> {
        let settings = Settings::resolve(&args, given, env, false);
        let verbosity = match (args.quiet, args.verbose) {
            (true, _) => Verbosity::Quiet,
            (false, 0) => Verbosity::Normal,
            (false, n) => Verbosity::Verbose(n),
        };
        let host_uuid = settings.host_uuid?.value;
        let bus = settings.bus?.value;
        let state_file = settings.state_file?.value;
        let redis_ca = Setting {
            value: args.redis_ca.clone(),
            origin: given.origin("redis_ca"),
        };
        let (db, redis_access, credentials) =
            credentials::resolve(settings.db?.target.value, bus.as_ref(), redis_ca, env)?;
        Ok(Config {
            state_file,
            db,
            schema: match settings.create_table.value {
                true => Schema::CreateIfAbsent,
                false => Schema::Decnets,
            },
            host_uuid,
            docker_host: args.docker_host,
            bus,
            redis_access,
            credentials,
            heartbeat: args.heartbeat,
            dry_run: args.dry_run,
            output: output(args.output),
            detailed_exitcode: args.detailed_exitcode,
            docker_timeout: args.docker_timeout,
            bus_timeout: args.bus_timeout,
            db_busy_timeout: args.db_busy_timeout,
            verbosity,
            colour: Colour::decide(env),
            metrics_file: args
                .metrics_file
                .filter(|path| !path.as_os_str().is_empty()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::sources::testing::TestHost;
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

    /// `doctor`'s settings for `args` on `host` (typed options; the variables
    /// clap reads are proven through the binary, in tests/it/decnet_host.rs).
    fn settings_on(host: &TestHost, args: &[&str]) -> Settings {
        let install_dir = host.dir.path().join("opt/decnet");
        let install_dir = install_dir.to_str().expect("UTF-8");
        let args = ["decnet-reconcile", "doctor", "--decnet-dir", install_dir]
            .into_iter()
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect();
        match resolve(args, &host.env) {
            Ok(Task::Doctor(checkup)) => checkup.settings,
            other => panic!("not doctor: {other:?}"),
        }
    }

    #[test]
    fn state_file_lines_option_then_decnets_root() {
        let host =
            TestHost::new(&[], Some("[decnet]\nstate-file = /from/the/ini.json\n")).with_decnet();
        let typed = settings_on(&host, &["--state-file", "/typed.json"]);
        let typed = typed.state_file.expect("resolved");
        assert_eq!(typed.value, PathBuf::from("/typed.json"));
        assert_eq!(typed.origin, Origin::CommandLine("--state-file".to_owned()));
        // DECNET's ini cannot move DECNET's state file (DECNET has no such
        // setting), so a key for it is not read: the root's file it is.
        let found = settings_on(&host, &[]).state_file.expect("resolved");
        assert_eq!(found.value, host.root().join("decnet-state.json"));
        assert_eq!(found.origin.kind(), "discovered");
        assert!(
            found
                .origin
                .place()
                .expect("a place")
                .contains(&host.root().display().to_string()),
            "{found:?}"
        );
    }

    #[test]
    fn without_decnet_the_state_file_is_an_error_saying_where_it_looked() {
        let host = TestHost::new(&[], None);
        let err = settings_on(&host, &[])
            .state_file
            .expect_err("nothing found");
        let err = format!("{err:#}");
        assert!(
            err.starts_with(
                "cannot find DECNET's state file: --state-file and DECNET_STATE_FILE are unset: \
                 found no DECNET installed under "
            ),
            "{err}"
        );
    }

    #[test]
    fn host_id_lines_option_ini_default() {
        let agent = "[decnet]\nmode = agent\n[agent]\nhost-uuid = 7f3e  # this agent\n";
        let host = TestHost::new(&[], Some(agent));
        let typed = settings_on(&host, &["--host-uuid", "h1"])
            .host_uuid
            .expect("ok");
        assert_eq!(typed.value, "h1");
        let ini = settings_on(&host, &[]).host_uuid.expect("ok");
        assert_eq!(ini.value, "7f3e");
        assert_eq!(
            ini.origin.place(),
            Some(format!("{}:4 [agent] host-uuid", host.ini_path().display()))
        );
        // As in DECNET, [agent] is read only in agent mode.
        let master = "[agent]\nhost-uuid = 7f3e\n";
        let host = TestHost::new(&[], Some(master));
        let default = settings_on(&host, &[]).host_uuid.expect("ok");
        assert_eq!(
            (default.value.as_str(), default.origin),
            ("local", Origin::Default)
        );
        let empty = "[decnet]\nmode = agent\n[agent]\nhost-uuid =\n";
        let host = TestHost::new(&[], Some(empty));
        let err = settings_on(&host, &[]).host_uuid.expect_err("refused");
        assert_eq!(
            err.to_string(),
            format!(
                "{}:4 [agent] host-uuid is empty: set it to this host's id, or remove the line for \"local\"",
                host.ini_path().display()
            )
        );
    }

    #[test]
    fn an_unusable_ini_fails_only_the_settings_that_reach_it() {
        let host = TestHost::new(&[], Some("key before any section = 1\n")).with_decnet();
        let settings = settings_on(&host, &["--host-uuid", "h1", "--no-publish"]);
        assert!(settings.host_uuid.is_ok() && settings.bus.is_ok() && settings.state_file.is_ok());
        let err = settings
            .db
            .expect_err("the DB type is looked up in the ini");
        assert!(
            format!("{err:#}").contains("MissingSectionHeaderError"),
            "{err:#}"
        );
        assert!(settings.ini_problem.is_some());
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
