//! Which database holds `fleet_deckies`: a SQLite file, or MySQL as DECNET
//! chooses it from its `DECNET_DB_*` variables.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::{Environment, Origin, Setting};
use crate::store::mysql::{self, MySqlTarget};
use crate::store::DbTarget;

/// Chooses the database as DECNET does: `DECNET_DB_TYPE=mysql` with `DECNET_DB_URL`
/// or `DECNET_DB_HOST`/`_PORT`/`_NAME`/`_USER`/`_PASSWORD`, unless `--db` was given on
/// the command line. A value of `--db` whose scheme is `mysql` or `mysql+DRIVER` (in
/// any case) is MySQL; any other `scheme://…` is refused (it is no file name, and
/// must not be echoed as one); anything else is a SQLite file path, taken
/// literally: `:memory:` and `file:…` are files of those names.
pub fn choose(db: Setting<PathBuf>, env: &Environment) -> Result<DbTarget> {
    let env = |name: &str| env.var(name).map(str::to_owned);
    let as_target = |db: PathBuf| {
        let Some(text) = db.to_str() else {
            return Ok(DbTarget::Sqlite(db));
        };
        match crate::text::url_scheme(text) {
            Some(scheme) if mysql::is_mysql_scheme(scheme) => {
                MySqlTarget::from_url(text).map(DbTarget::MySql)
            }
            Some(scheme) if text[scheme.len() + 1..].starts_with("//") => bail!(
                "--db (or DECNET_DB_PATH) {} is a {scheme}: URL; it takes a SQLite file path or a mysql:// URL",
                crate::text::redact_url(text)
            ),
            _ => Ok(DbTarget::Sqlite(db)),
        }
    };
    if db.origin == Origin::CommandLine {
        return as_target(db.value);
    }
    match env("DECNET_DB_TYPE")
        .map(|kind| kind.to_ascii_lowercase())
        .as_deref()
    {
        None | Some("sqlite") => as_target(db.value),
        Some("mysql") => {
            if let Some(url) = env("DECNET_DB_URL") {
                return MySqlTarget::from_url(&url)
                    .map(DbTarget::MySql)
                    .context("DECNET_DB_URL");
            }
            let port = match env("DECNET_DB_PORT") {
                Some(port) => port
                    .parse()
                    .map_err(|_| anyhow::anyhow!("DECNET_DB_PORT {port:?} is not a port number"))?,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn target(db: &str, origin: Origin, vars: &[(&str, &str)]) -> Result<DbTarget> {
        let db = Setting {
            value: PathBuf::from(db),
            origin,
        };
        choose(db, &Environment::from_pairs(vars.iter().copied()))
    }

    #[test]
    fn a_path_is_sqlite_and_a_mysql_url_is_mysql() {
        let sqlite = target("/var/lib/decnet/decnet.db", Origin::Default, &[]).expect("ok");
        assert_eq!(
            sqlite,
            DbTarget::Sqlite(PathBuf::from("/var/lib/decnet/decnet.db"))
        );
        let mysql = target("mysql+asyncmy://u:pw@h:3306/d", Origin::CommandLine, &[]).expect("ok");
        assert_eq!(mysql.to_string(), "mysql://u:***@h:3306/d");
    }

    #[test]
    fn db_schemes_are_case_insensitive_and_other_urls_are_no_paths() {
        let upper = target("MySQL://u:s3cret@h/d", Origin::CommandLine, &[]).expect("ok");
        assert_eq!(upper.to_string(), "mysql://u:***@h/d");
        for refused in [
            "file:///x.db",
            "SQLite://u:s3cret@h/x.db",
            "mysql:u:s3cret@h/d",
        ] {
            let err = format!(
                "{:#}",
                target(refused, Origin::CommandLine, &[]).expect_err(refused)
            );
            assert!(!err.contains("s3cret"), "{err}");
        }
        for literal in [":memory:", "file:x.db?mode=memory", "a:b@c.db"] {
            let db = target(literal, Origin::CommandLine, &[]).expect(literal);
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
        let from_env = target("/var/lib/decnet/decnet.db", Origin::Default, &vars).expect("ok");
        assert_eq!(from_env.to_string(), "mysql://decnet:***@db1:3306/decnet");
        let explicit = target("/tmp/x.db", Origin::CommandLine, &vars).expect("ok");
        assert_eq!(explicit, DbTarget::Sqlite(PathBuf::from("/tmp/x.db")));
        let url = [
            ("DECNET_DB_TYPE", "MySQL"),
            ("DECNET_DB_URL", "mysql+asyncmy://a:b@c:1/d"),
        ];
        let from_url = target("/x.db", Origin::Default, &url).expect("ok");
        assert_eq!(from_url.to_string(), "mysql://a:***@c:1/d");
    }

    #[test]
    fn bad_decnet_db_variables_are_refused() {
        for (vars, message) in [
            (
                &[("DECNET_DB_TYPE", "postgres")][..],
                "DECNET_DB_TYPE \"postgres\" is not one of sqlite, mysql",
            ),
            (
                &[("DECNET_DB_TYPE", "mysql"), ("DECNET_DB_PORT", "abc")][..],
                "DECNET_DB_PORT \"abc\" is not a port number",
            ),
            (
                &[
                    ("DECNET_DB_TYPE", "mysql"),
                    ("DECNET_DB_URL", "sqlite:///x"),
                ][..],
                "DECNET_DB_URL: sqlite:///x is not a MySQL URL",
            ),
        ] {
            let err = target("/x.db", Origin::Default, vars).expect_err(message);
            assert_eq!(format!("{err:#}"), message, "{vars:?}");
        }
    }
}
