//! The passwords and the Redis CA of a pass, settled once the database and the
//! bus are chosen: each password by `password_file`'s precedence (the URL's,
//! then a password file or systemd credential, then DECNET's variable), the
//! CA file read and checked now, so that a bad one stops the pass before it
//! writes anything.

use std::path::PathBuf;

use anyhow::{bail, Result};

use super::password_file::{self, Password, PasswordWarning, Service, Source};
use super::{Environment, Origin, Setting};
use crate::bus::{self, Bus, RedisAccess};
use crate::store::DbTarget;
use crate::tls::CaFile;

/// What resolving the passwords found that the run must act on: passwords
/// read from files (masked like every other secret from then on) and what
/// to warn about.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub read_from_files: Vec<Password>,
    pub warnings: Vec<PasswordWarning>,
}

/// The database with its password settled, how to reach a Redis bus, and what
/// was read and found on the way.
pub fn resolve(
    db: DbTarget,
    bus: Option<&Bus>,
    redis_ca: Setting<Option<PathBuf>>,
    env: &Environment,
) -> Result<(DbTarget, RedisAccess, Credentials)> {
    let lookup = |name: &str| env.var(name).map(str::to_owned);
    let mut credentials = Credentials::default();
    let db = match db {
        DbTarget::MySql(target) => {
            let own = target
                .password()
                .filter(|_| !target.password_is_decnets_variable());
            let decnets = target
                .password()
                .filter(|_| target.password_is_decnets_variable())
                .map(|value| ("DECNET_DB_PASSWORD", value));
            let resolved = password_file::resolve(Service::Db, own, decnets, lookup)?;
            credentials.warnings.extend(resolved.warnings);
            match resolved.password.filter(read_from_a_file) {
                Some(password) => {
                    let target = target.with_password(password.expose().to_owned());
                    credentials.read_from_files.push(password);
                    DbTarget::MySql(target)
                }
                None => DbTarget::MySql(target),
            }
        }
        sqlite => sqlite,
    };
    let mut redis = RedisAccess::default();
    if let Some(Bus::Redis(url)) = bus {
        let own = bus::redis_url_password(url);
        let resolved = password_file::resolve(Service::Redis, own.as_deref(), None, lookup)?;
        credentials.warnings.extend(resolved.warnings);
        if let Some(password) = resolved.password.filter(read_from_a_file) {
            redis.password = Some(password.expose().to_owned());
            credentials.read_from_files.push(password);
        }
        if let Some(path) = redis_ca.value {
            let setting = match redis_ca.origin {
                Origin::Environment(_) => "DECNET_REDIS_CA",
                _ => "--redis-ca",
            };
            if !bus::redis_uses_tls(url) {
                bail!(
                    "{setting} is given, but the bus {} is not TLS: write rediss:// for TLS, \
                     or drop {setting}",
                    crate::text::redact_url(url)
                );
            }
            redis.ca = Some(CaFile::read(setting, &path)?);
            redis.ca_setting = setting;
        }
    }
    Ok((db, redis, credentials))
}

fn read_from_a_file(password: &Password) -> bool {
    matches!(
        password.source,
        Source::File { .. } | Source::Credential { .. }
    )
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::store::mysql::MySqlTarget;

    fn mysql(url: &str) -> DbTarget {
        DbTarget::MySql(MySqlTarget::from_url(url).expect("valid"))
    }

    fn no_ca() -> Setting<Option<PathBuf>> {
        Setting {
            value: None,
            origin: Origin::Default,
        }
    }

    /// A private password file holding `password`.
    fn password_file(dir: &tempfile::TempDir, name: &str, password: &str) -> String {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("{password}\n")).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        path.display().to_string()
    }

    fn password_of(db: &DbTarget) -> Option<&str> {
        match db {
            DbTarget::MySql(target) => target.password(),
            DbTarget::Sqlite(_) => None,
        }
    }

    #[test]
    fn a_db_password_file_logs_in_and_is_remembered_for_masking() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = password_file(&dir, "db", "from-the-file");
        let env = Environment::from_pairs([("DECNET_DB_PASSWORD_FILE", file.as_str())]);
        let (db, _, credentials) =
            resolve(mysql("mysql://decnet@h/d"), None, no_ca(), &env).expect("ok");
        assert_eq!(password_of(&db), Some("from-the-file"));
        assert_eq!(credentials.read_from_files.len(), 1);
        assert_eq!(db.to_string(), "mysql://decnet@h/d", "nothing to redact");
    }

    #[test]
    fn decnets_password_variable_yields_to_a_file_but_the_url_does_not() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = password_file(&dir, "db", "from-the-file");
        let env = Environment::from_pairs([("DECNET_DB_PASSWORD_FILE", file.as_str())]);
        let parts = DbTarget::MySql(
            MySqlTarget::from_parts("h", 3306, "d", "decnet", Some("from-decnet")).expect("ok"),
        );
        let (db, _, credentials) = resolve(parts, None, no_ca(), &env).expect("ok");
        assert_eq!(password_of(&db), Some("from-the-file"));
        assert_eq!(
            credentials.warnings[0].to_string(),
            format!(
                "DECNET_DB_PASSWORD is set but not used: the password in \
                 DECNET_DB_PASSWORD_FILE {file} comes first"
            )
        );
        let (db, _, credentials) =
            resolve(mysql("mysql://decnet:from-url@h/d"), None, no_ca(), &env).expect("ok");
        assert_eq!(password_of(&db), Some("from-url"));
        assert!(credentials.read_from_files.is_empty());
    }

    #[test]
    fn a_redis_password_file_applies_to_a_redis_bus_only() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = password_file(&dir, "redis", "redis-secret");
        let env = Environment::from_pairs([("DECNET_REDIS_PASSWORD_FILE", file.as_str())]);
        let sqlite = DbTarget::Sqlite(PathBuf::from("/x.db"));
        let redis = Bus::Redis("rediss://user@h:6380/0".to_owned());
        let (_, access, credentials) =
            resolve(sqlite.clone(), Some(&redis), no_ca(), &env).expect("ok");
        assert_eq!(access.password.as_deref(), Some("redis-secret"));
        assert_eq!(credentials.read_from_files.len(), 1);
        let with_url_password = Bus::Redis("redis://:from-url@h/0".to_owned());
        let (_, access, credentials) =
            resolve(sqlite.clone(), Some(&with_url_password), no_ca(), &env).expect("ok");
        assert_eq!(access.password, None, "the URL keeps its own");
        assert_eq!(credentials.warnings.len(), 1);
        let unix = Bus::DecnetUnix(PathBuf::from("/run/decnet/bus.sock"));
        let (_, access, credentials) = resolve(sqlite, Some(&unix), no_ca(), &env).expect("ok");
        assert_eq!(access.password, None);
        assert!(credentials.read_from_files.is_empty());
    }

    #[test]
    fn a_redis_ca_is_read_now_and_refused_for_a_plaintext_url() {
        let ca = PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/tls/testdata/ca.pem"
        ));
        let sqlite = DbTarget::Sqlite(PathBuf::from("/x.db"));
        let env = Environment::default();
        let typed = |path: &str| Setting {
            value: Some(PathBuf::from(path)),
            origin: Origin::CommandLine("--redis-ca".to_owned()),
        };
        let tls = Bus::Redis("rediss://h:6380/0".to_owned());
        let (_, access, _) = resolve(
            sqlite.clone(),
            Some(&tls),
            typed(ca.to_str().expect("utf-8")),
            &env,
        )
        .expect("ok");
        assert_eq!(access.ca.expect("read").path(), ca);
        let err = resolve(sqlite.clone(), Some(&tls), typed("/nonexistent.pem"), &env)
            .expect_err("missing");
        assert!(
            format!("{err:#}").starts_with("--redis-ca /nonexistent.pem: cannot read it: "),
            "{err:#}"
        );
        let plain = Bus::Redis("redis://:s3cretpw@h:6379/0".to_owned());
        let from_env = Setting {
            value: Some(ca.clone()),
            origin: Origin::Environment("DECNET_REDIS_CA".to_owned()),
        };
        let err = resolve(sqlite, Some(&plain), from_env, &env).expect_err("plaintext");
        assert_eq!(
            format!("{err:#}"),
            "DECNET_REDIS_CA is given, but the bus redis://:***@h:6379/0 is not TLS: \
             write rediss:// for TLS, or drop DECNET_REDIS_CA"
        );
    }
}
