//! The validated settings of one run. `Cli` stops here: nothing past this
//! module sees a clap type.

pub mod password_file;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::CommandFactory;

use crate::cli::{Cli, Command, OutputFormat, PassArgs, DEFAULT_REDIS_URL};
use crate::db::mysql::MySqlTarget;
use crate::db::DbTarget;
use crate::events::{self, Bus};

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
    pub db: DbTarget,
    pub host_uuid: String,
    pub docker_host: String,
    /// Where events go; `None` with `--no-publish` (or DECNET's bus turned off).
    pub bus: Option<Bus>,
    /// Publish a heartbeat after every pass that is not dry.
    pub heartbeat: bool,
    pub dry_run: bool,
    pub output: OutputFormat,
    pub detailed_exitcode: bool,
    pub docker_timeout: Duration,
    pub bus_timeout: Duration,
    pub db_busy_timeout: Duration,
    pub verbosity: Verbosity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose(u8),
}

/// How the `--db` value reached us: DECNET's own DB variables yield to an explicit flag only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbSource {
    CommandLine,
    EnvironmentOrDefault,
}

/// Where a value of the command line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    CommandLine,
    Environment,
    /// Not given: the option's default, or nothing.
    Default,
}

/// Where `--bus` and `--redis-url` got their values: the bus is chosen by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusOrigins {
    pub bus: Origin,
    pub redis_url: Origin,
}

impl Task {
    /// `env` looks up DECNET's DB and bus variables (`std::env::var` in the binary).
    pub fn from_cli(
        cli: Cli,
        db_source: DbSource,
        bus_origins: BusOrigins,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Task> {
        match cli.command {
            Some(Command::Completions { shell }) => Ok(Task::Completions(shell)),
            Some(Command::Once) | None => {
                Config::from_args(cli.pass, db_source, bus_origins, env).map(Task::Pass)
            }
        }
    }
}

/// Variables for which an empty value is not the same as unset: falling back to
/// the default would be unsafe (an empty host id would become `local`, whose
/// rows a pass may delete), so [`Config`] refuses them, naming the variable.
const MUST_NOT_BE_EMPTY: [&str; 1] = ["DECNET_HOST_UUID"];

/// The command line to parse, with the environment read as Docker's CLI reads
/// `DOCKER_HOST`: a variable set to the empty string counts as unset, so its
/// option takes its default (clap alone would take the empty value, or refuse
/// it naming the option instead of the variable). `env` is `std::env::var_os`
/// in the binary.
pub fn command(env: impl Fn(&str) -> Option<OsString>) -> clap::Command {
    let mut command = Cli::command();
    let empty: Vec<clap::Id> = command
        .get_arguments()
        .filter(|arg| {
            arg.get_env().is_some_and(|name| {
                let name = name.to_string_lossy();
                !MUST_NOT_BE_EMPTY.contains(&name.as_ref())
                    && env(&name).is_some_and(|v| v.is_empty())
            })
        })
        .map(|arg| arg.get_id().clone())
        .collect();
    for id in empty {
        command = command.mut_arg(id, |arg| arg.env(None));
    }
    command
}

/// Chooses the bus (README, "Choosing the bus"): this tool's own options, typed
/// then from the environment, outrank DECNET's bus variables, which outrank
/// the default Redis. `bus` and `redis_url` are the values clap settled on.
fn choose_bus(
    no_publish: bool,
    bus: Option<String>,
    redis_url: String,
    origins: BusOrigins,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<Bus>> {
    // A typed value counts even when empty (and is then refused); an empty
    // variable counts as unset, which is what a blank line in an environment file means.
    let typed = |origin: Origin| origin == Origin::CommandLine;
    let from_env = |origin: Origin, value: &str| origin == Origin::Environment && !value.is_empty();
    match bus {
        _ if no_publish => Ok(None),
        Some(url) if typed(origins.bus) => Bus::from_url(&url).map(Some).context("--bus"),
        _ if typed(origins.redis_url) => Ok(Some(Bus::Redis(redis_url))),
        Some(url) if from_env(origins.bus, &url) => {
            Bus::from_url(&url).map(Some).context("DECNET_BUS_URL")
        }
        _ if from_env(origins.redis_url, &redis_url) => Ok(Some(Bus::Redis(redis_url))),
        _ => decnet_bus_variables(env),
    }
}

/// DECNET's own bus variables, read as `decnet/bus/factory.py` reads them;
/// with none of them set, the default Redis.
fn decnet_bus_variables(env: impl Fn(&str) -> Option<String>) -> Result<Option<Bus>> {
    let env = |name: &str| env(name).filter(|value| !value.is_empty());
    if env("DECNET_BUS_ENABLED").is_some_and(|enabled| enabled.eq_ignore_ascii_case("false")) {
        return Ok(None);
    }
    let socket = env("DECNET_BUS_SOCKET");
    let unix = || {
        let path = socket.as_deref().unwrap_or(events::DECNET_BUS_SOCKET);
        Bus::decnet_socket(path.into())
            .map(Some)
            .context("DECNET_BUS_SOCKET")
    };
    match env("DECNET_BUS_TYPE")
        .map(|kind| kind.to_ascii_lowercase())
        .as_deref()
    {
        Some("unix") => unix(),
        // DECNET's in-process bus: nothing outside a DECNET process can hear it.
        Some("fake") => Ok(None),
        Some(other) => bail!("DECNET_BUS_TYPE {other:?} is not one of unix, fake"),
        None if socket.is_some() => unix(),
        None => Ok(Some(Bus::Redis(DEFAULT_REDIS_URL.to_owned()))),
    }
}

/// Chooses the database as DECNET does: `DECNET_DB_TYPE=mysql` with `DECNET_DB_URL`
/// or `DECNET_DB_HOST`/`_PORT`/`_NAME`/`_USER`/`_PASSWORD`, unless `--db` was given on
/// the command line. A value of `--db` whose scheme is `mysql` or `mysql+DRIVER` (in
/// any case) is MySQL; any other `scheme://…` is refused (it is no file name, and
/// must not be echoed as one); anything else is a SQLite file path, taken
/// literally: `:memory:` and `file:…` are files of those names.
fn db_target(
    db: PathBuf,
    db_source: DbSource,
    env: impl Fn(&str) -> Option<String>,
) -> Result<DbTarget> {
    let env = |name: &str| env(name).filter(|value| !value.is_empty());
    let as_target = |db: PathBuf| {
        let Some(text) = db.to_str() else {
            return Ok(DbTarget::Sqlite(db));
        };
        match url_scheme(text) {
            Some(scheme) if crate::db::mysql::is_mysql_scheme(scheme) => {
                MySqlTarget::from_url(text).map(DbTarget::MySql)
            }
            Some(scheme) if text[scheme.len() + 1..].starts_with("//") => bail!(
                "--db (or DECNET_DB_PATH) {} is a {scheme}: URL; it takes a SQLite file path or a mysql:// URL",
                crate::terminal::redact_url(text)
            ),
            _ => Ok(DbTarget::Sqlite(db)),
        }
    };
    if db_source == DbSource::CommandLine {
        return as_target(db);
    }
    match env("DECNET_DB_TYPE")
        .map(|kind| kind.to_ascii_lowercase())
        .as_deref()
    {
        None | Some("sqlite") => as_target(db),
        Some("mysql") => {
            if let Some(url) = env("DECNET_DB_URL") {
                return MySqlTarget::from_url(&url)
                    .map(DbTarget::MySql)
                    .context("DECNET_DB_URL");
            }
            let port = match env("DECNET_DB_PORT") {
                Some(port) => port
                    .parse()
                    .with_context(|| format!("DECNET_DB_PORT {port:?} is not a port number"))?,
                None => 3306,
            };
            MySqlTarget::from_parts(
                env("DECNET_DB_HOST").as_deref().unwrap_or("127.0.0.1"),
                port,
                env("DECNET_DB_NAME").as_deref().unwrap_or("decnet"),
                env("DECNET_DB_USER").as_deref().unwrap_or("decnet"),
                env("DECNET_DB_PASSWORD").as_deref(),
            )
            .map(DbTarget::MySql)
        }
        Some(other) => bail!("DECNET_DB_TYPE {other:?} is not one of sqlite, mysql"),
    }
}

/// The scheme of `text` (RFC 3986: a letter, then letters, digits, `+`, `-`, `.`) before its `:`.
fn url_scheme(text: &str) -> Option<&str> {
    let (scheme, _) = text.split_once(':')?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some(scheme)
}

impl Config {
    fn from_args(
        args: PassArgs,
        db_source: DbSource,
        bus_origins: BusOrigins,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config> {
        // An empty id would be a scope nobody owns; refuse rather than guess.
        if args.host_uuid.trim().is_empty() {
            if env("DECNET_HOST_UUID").is_some_and(|value| value.trim().is_empty()) {
                bail!("DECNET_HOST_UUID is set but empty: set it to this host's id, or unset it for \"local\"");
            }
            bail!("--host-uuid must not be empty");
        }
        let verbosity = match (args.quiet, args.verbose) {
            (true, _) => Verbosity::Quiet,
            (false, 0) => Verbosity::Normal,
            (false, n) => Verbosity::Verbose(n),
        };
        let bus = choose_bus(args.no_publish, args.bus, args.redis_url, bus_origins, &env)?;
        Ok(Config {
            state_file: args.state_file,
            db: db_target(args.db, db_source, env)?,
            host_uuid: args.host_uuid,
            docker_host: args.docker_host,
            bus,
            heartbeat: args.heartbeat,
            dry_run: args.dry_run,
            output: args.output,
            detailed_exitcode: args.detailed_exitcode,
            docker_timeout: args.docker_timeout,
            bus_timeout: args.bus_timeout,
            db_busy_timeout: args.db_busy_timeout,
            verbosity,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(db: &str, source: DbSource, vars: &[(&str, &str)]) -> Result<DbTarget> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        db_target(PathBuf::from(db), source, |name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    /// The bus a pass would use: `bus` and `redis` as clap would hand them
    /// over (a value and where it came from), `vars` as the environment.
    fn bus_of(
        no_publish: bool,
        bus: Option<(&str, Origin)>,
        redis: Option<(&str, Origin)>,
        vars: &[(&str, &str)],
    ) -> Result<Option<Bus>> {
        let origins = BusOrigins {
            bus: bus.map_or(Origin::Default, |(_, origin)| origin),
            redis_url: redis.map_or(Origin::Default, |(_, origin)| origin),
        };
        let redis_url = redis.map_or(DEFAULT_REDIS_URL, |(url, _)| url);
        choose_bus(
            no_publish,
            bus.map(|(url, _)| url.to_owned()),
            redis_url.to_owned(),
            origins,
            |name| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            },
        )
    }

    fn redis(url: &str) -> Option<Bus> {
        Some(Bus::Redis(url.to_owned()))
    }

    fn unix(path: &str) -> Option<Bus> {
        Some(Bus::DecnetUnix(PathBuf::from(path)))
    }

    const TYPED: Origin = Origin::CommandLine;
    const ENV: Origin = Origin::Environment;
    /// DECNET's bus variables all set, so that each line shows it outranks them.
    const DECNET_VARS: [(&str, &str); 3] = [
        ("DECNET_BUS_ENABLED", "true"),
        ("DECNET_BUS_TYPE", "unix"),
        ("DECNET_BUS_SOCKET", "/run/other/bus.sock"),
    ];

    #[test]
    fn bus_line_1_no_publish_outranks_everything() {
        let bus = bus_of(
            true,
            Some(("unix:///b.sock", TYPED)),
            Some(("redis://r:1/0", TYPED)),
            &DECNET_VARS,
        );
        assert_eq!(bus.expect("ok"), None);
    }

    #[test]
    fn bus_line_2_a_typed_bus_outranks_a_typed_redis_url() {
        let bus = bus_of(
            false,
            Some(("unix:///b.sock", TYPED)),
            Some(("redis://r:1/0", TYPED)),
            &DECNET_VARS,
        );
        assert_eq!(bus.expect("ok"), unix("/b.sock"));
    }

    #[test]
    fn bus_line_3_a_typed_redis_url_outranks_decnet_bus_url() {
        let bus = bus_of(
            false,
            Some(("unix:///b.sock", ENV)),
            Some(("redis://r:1/0", TYPED)),
            &DECNET_VARS,
        );
        assert_eq!(bus.expect("ok"), redis("redis://r:1/0"));
    }

    #[test]
    fn bus_line_4_decnet_bus_url_outranks_decnet_redis_url() {
        let bus = bus_of(
            false,
            Some(("unix:///b.sock", ENV)),
            Some(("redis://r:1/0", ENV)),
            &DECNET_VARS,
        );
        assert_eq!(bus.expect("ok"), unix("/b.sock"));
    }

    #[test]
    fn bus_line_5_decnet_redis_url_outranks_decnets_bus_variables() {
        let bus = bus_of(false, None, Some(("redis://r:1/0", ENV)), &DECNET_VARS);
        assert_eq!(bus.expect("ok"), redis("redis://r:1/0"));
    }

    #[test]
    fn bus_line_6_decnet_bus_enabled_false_publishes_nothing() {
        let vars = [
            ("DECNET_BUS_ENABLED", "False"),
            ("DECNET_BUS_TYPE", "unix"),
            ("DECNET_BUS_SOCKET", "/b.sock"),
        ];
        assert_eq!(bus_of(false, None, None, &vars).expect("ok"), None);
        // As in DECNET's factory, only `false` turns the bus off.
        let vars = [("DECNET_BUS_ENABLED", "0")];
        assert_eq!(
            bus_of(false, None, None, &vars).expect("ok"),
            redis(DEFAULT_REDIS_URL)
        );
    }

    #[test]
    fn bus_line_7_decnet_bus_type_unix_is_decnets_socket() {
        let vars = [("DECNET_BUS_TYPE", "UNIX")];
        assert_eq!(
            bus_of(false, None, None, &vars).expect("ok"),
            unix("/run/decnet/bus.sock")
        );
        let vars = [
            ("DECNET_BUS_TYPE", "unix"),
            ("DECNET_BUS_SOCKET", "/srv/b.sock"),
        ];
        assert_eq!(
            bus_of(false, None, None, &vars).expect("ok"),
            unix("/srv/b.sock")
        );
    }

    #[test]
    fn bus_line_8_decnet_bus_socket_alone_is_decnets_socket() {
        let vars = [("DECNET_BUS_SOCKET", "/srv/b.sock")];
        assert_eq!(
            bus_of(false, None, None, &vars).expect("ok"),
            unix("/srv/b.sock")
        );
    }

    #[test]
    fn bus_line_9_decnet_bus_type_fake_publishes_nothing() {
        let vars = [
            ("DECNET_BUS_TYPE", "fake"),
            ("DECNET_BUS_SOCKET", "/b.sock"),
        ];
        assert_eq!(bus_of(false, None, None, &vars).expect("ok"), None);
    }

    #[test]
    fn bus_line_10_another_decnet_bus_type_is_refused() {
        let err = bus_of(false, None, None, &[("DECNET_BUS_TYPE", "nats")]).expect_err("refused");
        assert!(err.to_string().contains("DECNET_BUS_TYPE"), "{err}");
    }

    #[test]
    fn bus_line_11_nothing_set_is_the_default_redis() {
        assert_eq!(
            bus_of(false, None, None, &[]).expect("ok"),
            redis(DEFAULT_REDIS_URL)
        );
        // Empty variables count as unset.
        let vars = [
            ("DECNET_BUS_TYPE", ""),
            ("DECNET_BUS_SOCKET", ""),
            ("DECNET_BUS_ENABLED", ""),
        ];
        let bus = bus_of(false, Some(("", ENV)), Some(("", ENV)), &vars);
        assert_eq!(bus.expect("ok"), redis(DEFAULT_REDIS_URL));
    }

    #[test]
    fn a_bad_bus_names_where_it_came_from() {
        let typed = bus_of(false, Some(("nats://x", TYPED)), None, &[]).expect_err("refused");
        assert!(format!("{typed:#}").starts_with("--bus: "), "{typed:#}");
        let typed_empty = bus_of(false, Some(("", TYPED)), None, &[]).expect_err("refused");
        assert!(format!("{typed_empty:#}").starts_with("--bus: "));
        let from_env = bus_of(false, Some(("unix:rel", ENV)), None, &[]).expect_err("refused");
        assert!(
            format!("{from_env:#}").starts_with("DECNET_BUS_URL: "),
            "{from_env:#}"
        );
        let long_socket = "/".repeat(200);
        let socket = [("DECNET_BUS_SOCKET", long_socket.as_str())];
        let from_decnet = bus_of(false, None, None, &socket).expect_err("refused");
        assert!(format!("{from_decnet:#}").starts_with("DECNET_BUS_SOCKET: "));
    }

    #[test]
    fn a_path_is_sqlite_and_a_mysql_url_is_mysql() {
        let sqlite = target(
            "/var/lib/decnet/decnet.db",
            DbSource::EnvironmentOrDefault,
            &[],
        )
        .expect("ok");
        assert_eq!(
            sqlite,
            DbTarget::Sqlite(PathBuf::from("/var/lib/decnet/decnet.db"))
        );
        let mysql =
            target("mysql+asyncmy://u:pw@h:3306/d", DbSource::CommandLine, &[]).expect("ok");
        assert_eq!(mysql.to_string(), "mysql://u:***@h:3306/d");
    }

    #[test]
    fn db_schemes_are_case_insensitive_and_other_urls_are_no_paths() {
        let upper = target("MySQL://u:s3cret@h/d", DbSource::CommandLine, &[]).expect("ok");
        assert_eq!(upper.to_string(), "mysql://u:***@h/d");
        for refused in [
            "file:///x.db",
            "SQLite://u:s3cret@h/x.db",
            "mysql:u:s3cret@h/d",
        ] {
            let err = format!(
                "{:#}",
                target(refused, DbSource::CommandLine, &[]).expect_err(refused)
            );
            assert!(!err.contains("s3cret"), "{err}");
        }
        for literal in [":memory:", "file:x.db?mode=memory", "a:b@c.db"] {
            let db = target(literal, DbSource::CommandLine, &[]).expect(literal);
            assert_eq!(db, DbTarget::Sqlite(PathBuf::from(literal)));
        }
    }

    #[test]
    fn decnet_db_variables_select_mysql_unless_db_is_on_the_command_line() {
        let vars = [
            ("DECNET_DB_TYPE", "mysql"),
            ("DECNET_DB_HOST", "db1"),
            ("DECNET_DB_PASSWORD", "pw"),
        ];
        let from_env = target(
            "/var/lib/decnet/decnet.db",
            DbSource::EnvironmentOrDefault,
            &vars,
        )
        .expect("ok");
        assert_eq!(from_env.to_string(), "mysql://decnet:***@db1:3306/decnet");
        let explicit = target("/tmp/x.db", DbSource::CommandLine, &vars).expect("ok");
        assert_eq!(explicit, DbTarget::Sqlite(PathBuf::from("/tmp/x.db")));
        let url = [
            ("DECNET_DB_TYPE", "MySQL"),
            ("DECNET_DB_URL", "mysql+asyncmy://a:b@c:1/d"),
        ];
        let from_url = target("/x.db", DbSource::EnvironmentOrDefault, &url).expect("ok");
        assert_eq!(from_url.to_string(), "mysql://a:***@c:1/d");
    }

    #[test]
    fn bad_decnet_db_variables_are_refused() {
        for vars in [
            &[("DECNET_DB_TYPE", "postgres")][..],
            &[("DECNET_DB_TYPE", "mysql"), ("DECNET_DB_PORT", "abc")][..],
            &[
                ("DECNET_DB_TYPE", "mysql"),
                ("DECNET_DB_URL", "sqlite:///x"),
            ][..],
        ] {
            assert!(
                target("/x.db", DbSource::EnvironmentOrDefault, vars).is_err(),
                "{vars:?}"
            );
        }
    }
}
