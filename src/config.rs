//! The validated settings of one run. `Cli` stops here: nothing past this
//! module sees a clap type.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::cli::{Cli, Command, OutputFormat, PassArgs};
use crate::db::mysql::MySqlTarget;
use crate::db::DbTarget;

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

/// How the `--db` value reached us: DECNET's own DB variables yield to an explicit flag only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbSource {
    CommandLine,
    EnvironmentOrDefault,
}

impl Task {
    /// `env` looks up DECNET's DB variables (`std::env::var` in the binary).
    pub fn from_cli(
        cli: Cli,
        db_source: DbSource,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Task> {
        match cli.command {
            Some(Command::Completions { shell }) => Ok(Task::Completions(shell)),
            Some(Command::Once) | None => {
                Config::from_args(cli.pass, db_source, env).map(Task::Pass)
            }
        }
    }
}

/// Chooses the database as DECNET does: `DECNET_DB_TYPE=mysql` with `DECNET_DB_URL`
/// or `DECNET_DB_HOST`/`_PORT`/`_NAME`/`_USER`/`_PASSWORD`, unless `--db` was given on
/// the command line; a `mysql://` value of `--db` is MySQL, anything else a SQLite path.
fn db_target(
    db: PathBuf,
    db_source: DbSource,
    env: impl Fn(&str) -> Option<String>,
) -> Result<DbTarget> {
    let env = |name: &str| env(name).filter(|value| !value.is_empty());
    let as_target = |db: PathBuf| match db.to_str() {
        Some(text) if text.starts_with("mysql:") || text.starts_with("mysql+") => {
            MySqlTarget::from_url(text).map(DbTarget::MySql)
        }
        _ => Ok(DbTarget::Sqlite(db)),
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

impl Config {
    fn from_args(
        args: PassArgs,
        db_source: DbSource,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config> {
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
            db: db_target(args.db, db_source, env)?,
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
