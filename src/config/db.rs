//! Which database holds `fleet_deckies`: a SQLite file, or MySQL, chosen as
//! DECNET chooses its own (`DECNET_DB_TYPE` and the other `DECNET_DB_*`
//! variables, from the environment or DECNET's ini), unless `--db` names one.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::sources::Sources;
use super::{Origin, Setting};
use crate::store::mysql::{self, MySqlTarget};
use crate::store::DbTarget;

/// DECNET's MySQL server when `DECNET_DB_HOST` names none: `localhost`, as in
/// DECNET's `build_mysql_url`, so that both reach the same server whatever
/// `localhost` resolves to on this host.
pub const DEFAULT_MYSQL_HOST: &str = "localhost";

/// The database chosen, with the settings it was made of (for `doctor`).
#[derive(Debug, Clone)]
pub struct DbChoice {
    pub target: Setting<DbTarget>,
    /// `sqlite` or `mysql`, and what said so.
    pub kind: Setting<String>,
    /// For MySQL from parts: `db_host`, `db_port`, `db_name`, `db_user` and
    /// `db_password` (shown as `***`), each with where it came from.
    pub parts: Vec<(&'static str, Setting<String>)>,
}

/// Chooses the database. `--db` typed on the command line wins; else
/// `DECNET_DB_TYPE` decides (default `sqlite`): for SQLite, `DECNET_DB_PATH`,
/// else `decnet.db` in DECNET's root (DECNET has no setting that moves it, so
/// neither has its ini); for MySQL, `DECNET_DB_URL`, else the URL DECNET builds
/// from `DECNET_DB_HOST`, `_PORT`, `_NAME`, `_USER` and `_PASSWORD`.
pub fn choose(db: Option<Setting<PathBuf>>, sources: &Sources) -> Result<DbChoice> {
    let sqlite_kind = |origin: Origin| Setting {
        value: "sqlite".to_owned(),
        origin,
    };
    if let Some(
        db @ Setting {
            origin: Origin::CommandLine(_),
            ..
        },
    ) = db
    {
        let target = as_target(db)?;
        let kind = kind_of(&target.value);
        return Ok(DbChoice {
            kind: Setting {
                value: kind.to_owned(),
                origin: target.origin.clone(),
            },
            target,
            parts: Vec::new(),
        });
    }
    let kind = sources.decnet_var("DECNET_DB_TYPE")?;
    match kind
        .as_ref()
        .map(|kind| kind.value.to_ascii_lowercase())
        .as_deref()
    {
        None | Some("sqlite") => {
            let kind = kind.unwrap_or_else(|| sqlite_kind(Origin::Default));
            let target = match db {
                Some(db) => as_target(db)?,
                None => {
                    let root = sources.root().context(
                        "cannot find DECNET's database: --db, DECNET_DB_PATH and DECNET_DB_TYPE are unset",
                    )?;
                    Setting {
                        value: DbTarget::Sqlite(root.sqlite_db()),
                        origin: sources.discovered_in_root(root),
                    }
                }
            };
            Ok(DbChoice {
                kind: Setting {
                    value: kind_of(&target.value).to_owned(),
                    origin: kind.origin,
                },
                target,
                parts: Vec::new(),
            })
        }
        Some("mysql") => {
            let kind = kind.expect("the type was given");
            if let Some(url) = sources.decnet_var("DECNET_DB_URL")? {
                let target = MySqlTarget::from_url(&url.value)
                    .with_context(|| url.origin.place_or("DECNET_DB_URL"))?;
                return Ok(DbChoice {
                    target: Setting {
                        value: DbTarget::MySql(target),
                        origin: url.origin,
                    },
                    kind,
                    parts: Vec::new(),
                });
            }
            let part = |name: &'static str, var: &str, default: &str| -> Result<_> {
                let setting = sources.decnet_var(var)?.unwrap_or_else(|| Setting {
                    value: default.to_owned(),
                    origin: Origin::Default,
                });
                Ok((name, setting))
            };
            let host = part("db_host", "DECNET_DB_HOST", DEFAULT_MYSQL_HOST)?;
            let port = part("db_port", "DECNET_DB_PORT", "3306")?;
            let name = part("db_name", "DECNET_DB_NAME", "decnet")?;
            let user = part("db_user", "DECNET_DB_USER", "decnet")?;
            let password = sources.decnet_var("DECNET_DB_PASSWORD")?;
            let port_number = port.1.value.parse().map_err(|_| {
                anyhow::anyhow!(
                    "{} {:?} is not a port number",
                    port.1.origin.place_or("DECNET_DB_PORT"),
                    port.1.value
                )
            })?;
            let target = MySqlTarget::from_parts(
                &host.1.value,
                port_number,
                &name.1.value,
                &user.1.value,
                password.as_ref().map(|p| p.value.as_str()),
            )?;
            let mut parts = vec![host, port, name, user];
            if let Some(password) = password {
                parts.push((
                    "db_password",
                    Setting {
                        value: "***".to_owned(),
                        origin: password.origin,
                    },
                ));
            }
            Ok(DbChoice {
                target: Setting {
                    value: DbTarget::MySql(target),
                    origin: kind.origin.clone(),
                },
                kind,
                parts,
            })
        }
        Some(_) => {
            let kind = kind.expect("the type was given");
            bail!(
                "{} {:?} is not one of sqlite, mysql",
                kind.origin.place_or("DECNET_DB_TYPE"),
                kind.value.to_ascii_lowercase()
            )
        }
    }
}

fn kind_of(target: &DbTarget) -> &'static str {
    match target {
        DbTarget::Sqlite(_) => "sqlite",
        DbTarget::MySql(_) => "mysql",
    }
}

/// `--db` or `DECNET_DB_PATH`: a value whose scheme is `mysql` or
/// `mysql+DRIVER` (in any case) is MySQL; any other `scheme://…` is refused (it
/// is no file name, and must not be echoed as one); anything else is a SQLite
/// file path, taken literally: `:memory:` and `file:…` are files of those names.
fn as_target(db: Setting<PathBuf>) -> Result<Setting<DbTarget>> {
    let Setting { value, origin } = db;
    let target = match value.to_str() {
        None => DbTarget::Sqlite(value),
        Some(text) => match crate::text::url_scheme(text) {
            Some(scheme) if mysql::is_mysql_scheme(scheme) => DbTarget::MySql(
                MySqlTarget::from_url(text).with_context(|| origin.place_or("--db"))?,
            ),
            Some(scheme) if text[scheme.len() + 1..].starts_with("//") => bail!(
                "{} {} is a {scheme}: URL; it takes a SQLite file path or a mysql:// URL",
                origin.place_or("--db"),
                crate::text::redact_url(text)
            ),
            _ => DbTarget::Sqlite(value),
        },
    };
    Ok(Setting {
        value: target,
        origin,
    })
}

#[cfg(test)]
mod tests {
    use super::super::sources::testing::TestHost;
    use super::*;

    fn db_on(host: &TestHost, db: Option<(&str, &str)>) -> Result<DbChoice> {
        let db = db.map(|(value, place)| Setting {
            value: PathBuf::from(value),
            origin: match place.starts_with("--") {
                true => Origin::CommandLine(place.to_owned()),
                false => Origin::Environment(place.to_owned()),
            },
        });
        choose(db, &host.sources())
    }

    fn target(
        db: Option<(&str, &str)>,
        vars: &[(&str, &str)],
        ini: Option<&str>,
    ) -> Result<DbChoice> {
        db_on(&TestHost::new(vars, ini).with_decnet(), db)
    }

    const TYPED: &str = "--db";
    const ENV: &str = "DECNET_DB_PATH";

    #[test]
    fn a_path_is_sqlite_and_a_mysql_url_is_mysql() {
        let sqlite = target(Some(("/srv/decnet.db", ENV)), &[], None).expect("ok");
        assert_eq!(
            sqlite.target.value,
            DbTarget::Sqlite(PathBuf::from("/srv/decnet.db"))
        );
        assert_eq!(sqlite.kind.value, "sqlite");
        let mysql = target(Some(("mysql+asyncmy://u:pw@h:3306/d", TYPED)), &[], None).expect("ok");
        assert_eq!(mysql.target.value.to_string(), "mysql://u:***@h:3306/d");
        assert_eq!(mysql.kind.value, "mysql");
    }

    #[test]
    fn db_schemes_are_case_insensitive_and_other_urls_are_no_paths() {
        let upper = target(Some(("MySQL://u:s3cret@h/d", TYPED)), &[], None).expect("ok");
        assert_eq!(upper.target.value.to_string(), "mysql://u:***@h/d");
        for refused in [
            "file:///x.db",
            "SQLite://u:s3cret@h/x.db",
            "mysql:u:s3cret@h/d",
        ] {
            let err = format!(
                "{:#}",
                target(Some((refused, TYPED)), &[], None).expect_err(refused)
            );
            assert!(!err.contains("s3cret"), "{err}");
            assert!(err.starts_with("--db"), "{err}");
        }
        for literal in [":memory:", "file:x.db?mode=memory", "a:b@c.db"] {
            let db = target(Some((literal, TYPED)), &[], None).expect(literal);
            assert_eq!(db.target.value, DbTarget::Sqlite(PathBuf::from(literal)));
        }
    }

    /// The precedence of the database, line by line.
    #[test]
    fn db_line_1_a_typed_db_outranks_decnets_variables_and_ini() {
        let vars = [("DECNET_DB_TYPE", "mysql"), ("DECNET_DB_HOST", "db1")];
        let db = target(
            Some(("/tmp/x.db", TYPED)),
            &vars,
            Some("[database]\ntype = mysql\n"),
        )
        .expect("ok");
        assert_eq!(
            db.target.value,
            DbTarget::Sqlite(PathBuf::from("/tmp/x.db"))
        );
        assert_eq!(db.target.origin, Origin::CommandLine("--db".to_owned()));
    }

    #[test]
    fn db_line_2_the_environment_outranks_the_ini() {
        let vars = [
            ("DECNET_DB_TYPE", "MySQL"),
            ("DECNET_DB_HOST", "db1"),
            ("DECNET_DB_PASSWORD", "pw"),
        ];
        let ini = "[database]\ntype = sqlite\nhost = ini-host\nname = ini_db\n";
        let db = target(Some(("/ignored.db", ENV)), &vars, Some(ini)).expect("ok");
        assert_eq!(
            db.target.value.to_string(),
            "mysql://decnet:***@db1:3306/ini_db"
        );
        assert_eq!(
            db.kind.origin,
            Origin::Environment("DECNET_DB_TYPE".to_owned())
        );
        let shown: Vec<(&str, &str, &str)> = db
            .parts
            .iter()
            .map(|(name, s)| (*name, s.value.as_str(), s.origin.kind()))
            .collect();
        assert_eq!(
            shown,
            [
                ("db_host", "db1", "environment"),
                ("db_port", "3306", "default"),
                ("db_name", "ini_db", "decnet-ini"),
                ("db_user", "decnet", "default"),
                ("db_password", "***", "environment"),
            ]
        );
        let url = [
            ("DECNET_DB_TYPE", "mysql"),
            ("DECNET_DB_URL", "mysql+asyncmy://a:b@c:1/d"),
        ];
        let from_url = target(None, &url, Some("[database]\nurl = mysql://x@y/z\n")).expect("ok");
        assert_eq!(from_url.target.value.to_string(), "mysql://a:***@c:1/d");
        // DECNET_DB_PATH names a SQLite file when the type is sqlite.
        let path = target(Some(("/srv/d.db", ENV)), &[], None).expect("ok");
        assert_eq!(path.target.origin, Origin::Environment(ENV.to_owned()));
    }

    #[test]
    fn db_line_3_decnets_ini_gives_the_type_and_the_server() {
        let ini = "[database]\ntype = mysql   # shared\nhost = db.example\nport = 3307\nname = fleet\nuser = rec\n";
        let db = target(None, &[("DECNET_DB_PASSWORD", "pw")], Some(ini)).expect("ok");
        assert_eq!(
            db.target.value.to_string(),
            "mysql://rec:***@db.example:3307/fleet"
        );
        assert_eq!(db.kind.origin.kind(), "decnet-ini");
        assert!(db
            .parts
            .iter()
            .take(4)
            .all(|(_, s)| s.origin.kind() == "decnet-ini"));
        let url = "[database]\ntype = mysql\nurl = mysql+asyncmy://u:pw@h:1/d\n";
        let db = target(None, &[], Some(url)).expect("ok");
        assert_eq!(db.target.value.to_string(), "mysql://u:***@h:1/d");
        assert_eq!(db.target.origin.kind(), "decnet-ini");
    }

    #[test]
    fn db_line_4_without_a_setting_decnets_sqlite_db_in_its_root() {
        let host = TestHost::new(&[], None).with_decnet();
        let db = db_on(&host, None).expect("ok");
        assert_eq!(
            db.target.value,
            DbTarget::Sqlite(host.root().join("decnet.db"))
        );
        assert_eq!(db.target.origin.kind(), "discovered");
        assert_eq!(db.kind.origin, Origin::Default);
        // DECNET has no setting that moves its SQLite DB, so neither has its ini.
        let ini = "[decnet]\ndb-path = /elsewhere.db\n[database]\ntype = sqlite\n";
        let host = TestHost::new(&[], Some(ini)).with_decnet();
        let db = db_on(&host, None).expect("ok");
        assert_eq!(
            db.target.value,
            DbTarget::Sqlite(host.root().join("decnet.db"))
        );
        assert_eq!(db.kind.origin.kind(), "decnet-ini");
    }

    #[test]
    fn db_line_5_decnets_defaults_for_a_mysql_server() {
        let db = target(
            None,
            &[("DECNET_DB_TYPE", "mysql"), ("DECNET_DB_PASSWORD", "pw")],
            None,
        )
        .expect("ok");
        assert_eq!(
            db.target.value.to_string(),
            "mysql://decnet:***@localhost:3306/decnet"
        );
        // Without DECNET, a SQLite DB cannot be found: the message lists where it looked.
        let host = TestHost::new(&[], None);
        let err = db_on(&host, None).expect_err("no DECNET");
        let err = format!("{err:#}");
        assert!(
            err.starts_with("cannot find DECNET's database: --db, DECNET_DB_PATH and DECNET_DB_TYPE are unset: found no DECNET installed under "),
            "{err}"
        );
        let install_dir = host.dir.path().join("opt/decnet");
        assert!(
            err.ends_with(&format!("looked at: {}: absent", install_dir.display())),
            "{err}"
        );
    }

    #[test]
    fn bad_decnet_db_variables_are_refused_naming_them() {
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
            let err = target(None, vars, None).expect_err(message);
            assert_eq!(format!("{err:#}"), message, "{vars:?}");
        }
        let host = TestHost::new(&[], Some("[database]\ntype = mysql\nport = x\n"));
        let err = db_on(&host, None).expect_err("refused");
        assert_eq!(
            format!("{err:#}"),
            format!(
                "{}:3 [database] port \"x\" is not a port number",
                host.ini_path().display()
            )
        );
    }
}
