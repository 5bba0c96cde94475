//! A fleet's shared MySQL/MariaDB database (DECNET's `DECNET_DB_TYPE=mysql`):
//! its DDL, its to-the-second datetimes, its case- and accent-insensitive
//! names, and a per-host named lock so that two passes for one host never
//! both apply a change while passes of different hosts run side by side.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use mysql::consts::CapabilityFlags;
use mysql::prelude::Queryable;
use mysql::{AccessMode, Conn, Opts, OptsBuilder, TxOpts};

use super::{parse_stored_datetime, unexpected_row_count, writes, FleetStore, Param, PlanOn};
use crate::plan::{ChangeKind, FleetRow, Plan};

/// DECNET's table as its SQLAlchemy models create it on MariaDB.
const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS `fleet_deckies` (
  `host_uuid` varchar(255) NOT NULL,
  `name` varchar(255) NOT NULL,
  `services` mediumtext NOT NULL,
  `decky_config` mediumtext DEFAULT NULL,
  `decky_ip` varchar(255) DEFAULT NULL,
  `state` varchar(255) NOT NULL,
  `last_error` text DEFAULT NULL,
  `compose_hash` varchar(255) DEFAULT NULL,
  `last_seen` datetime DEFAULT NULL,
  `updated_at` datetime NOT NULL,
  PRIMARY KEY (`host_uuid`,`name`),
  KEY `ix_fleet_deckies_state` (`state`),
  KEY `ix_fleet_deckies_host_uuid` (`host_uuid`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci";

const TABLE_EXISTS: &str = "SELECT COUNT(*) FROM information_schema.tables \
     WHERE table_schema = DATABASE() AND table_name = 'fleet_deckies'";

const SELECT_HOST_ROWS: &str = "SELECT host_uuid, name, services, decky_config, decky_ip, state \
     FROM fleet_deckies WHERE host_uuid = ? ORDER BY name";

/// What `varchar(255)` holds, in characters.
const MAX_KEY_CHARS: usize = 255;

/// A MySQL server and database, with credentials. Prints without its password.
#[derive(Clone, PartialEq, Eq)]
pub struct MySqlTarget {
    url: String,
}

impl MySqlTarget {
    /// Takes `mysql://…` and DECNET's SQLAlchemy spellings (`mysql+asyncmy://…`,
    /// the scheme in any case), with the query parameters SQLAlchemy URLs carry
    /// that apply here (`charset`) and the mysql crate's own; any other parameter
    /// is refused by name. Every message shows the URL without its password.
    pub fn from_url(url: &str) -> Result<Self> {
        let redacted = || crate::terminal::redact_url(url);
        let (scheme, rest) = url.split_once(':').unwrap_or((url, ""));
        if !is_mysql_scheme(scheme) {
            bail!("{} is not a MySQL URL", redacted());
        }
        let Some(rest) = rest.strip_prefix("//") else {
            bail!("MySQL URL {} lacks the // after {scheme}:", redacted());
        };
        let mut parsed = url::Url::parse(&format!("mysql://{rest}"))
            .map_err(|err| anyhow::anyhow!("MySQL URL {} does not parse: {err}", redacted()))?;
        let mut kept = Vec::new();
        for (key, value) in parsed.query_pairs() {
            if key == "charset" {
                check_charset(&value).with_context(|| format!("MySQL URL {}", redacted()))?;
            } else {
                kept.push((key.into_owned(), value.into_owned()));
            }
        }
        if kept.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(kept);
        }
        let target = MySqlTarget {
            url: parsed.to_string(),
        };
        Opts::from_url(&target.url).map_err(|err| match err {
            mysql::UrlError::UnknownParameter(name) => anyhow::anyhow!(
                "MySQL URL {}: unknown parameter {:?} (known: charset, and the mysql crate's own)",
                redacted(),
                crate::terminal::escape(&name)
            ),
            other => anyhow::anyhow!("MySQL URL {} does not parse: {other}", redacted()),
        })?;
        Ok(target)
    }

    /// From DECNET's `DECNET_DB_HOST`, `_PORT`, `_NAME`, `_USER` and `_PASSWORD`.
    pub fn from_parts(
        host: &str,
        port: u16,
        database: &str,
        user: &str,
        password: Option<&str>,
    ) -> Result<Self> {
        let mut url = url::Url::parse("mysql://localhost/").context("building the MySQL URL")?;
        url.set_host(Some(host))
            .with_context(|| format!("DECNET_DB_HOST {host:?} is not a host name"))?;
        // These only fail for URLs without a host, which this one has.
        let _ = url.set_port(Some(port));
        let _ = url.set_username(user);
        let _ = url.set_password(password);
        url.set_path(database);
        Self::from_url(url.as_str())
    }
}

/// `mysql`, or SQLAlchemy's `mysql+DRIVER`, in any case: schemes are case-insensitive.
pub fn is_mysql_scheme(scheme: &str) -> bool {
    let scheme = scheme.to_ascii_lowercase();
    scheme == "mysql" || scheme.starts_with("mysql+")
}

/// The mysql crate always talks utf8mb4 (on any server since MySQL 5.5.3), which
/// holds all that `utf8` (`utf8mb3`) holds; a URL asking for another charset
/// asks for what this connection cannot give, and is refused.
fn check_charset(charset: &str) -> Result<()> {
    if ["utf8mb4", "utf8", "utf8mb3"]
        .iter()
        .any(|known| charset.eq_ignore_ascii_case(known))
    {
        return Ok(());
    }
    bail!(
        "charset={:?} cannot be honoured: decnet-reconcile talks utf8mb4 (charset=utf8mb4, utf8 or utf8mb3 are accepted)",
        crate::terminal::escape(charset)
    )
}

impl std::fmt::Display for MySqlTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::terminal::redact_url(&self.url))
    }
}

impl std::fmt::Debug for MySqlTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MySqlTarget({self})")
    }
}

/// An open connection to the fleet database.
pub struct MySqlStore {
    conn: Conn,
    target: MySqlTarget,
    busy_timeout: Duration,
}

impl MySqlStore {
    pub fn open(target: &MySqlTarget, busy_timeout: Duration, read_only: bool) -> Result<Self> {
        let opts = Opts::from_url(&target.url)
            .map_err(|err| anyhow::anyhow!("MySQL URL {target}: {err}"))?;
        // Every network wait is bounded; a statement waiting on a lock gets the busy timeout on top.
        let network = Some(busy_timeout + Duration::from_secs(10));
        let opts = OptsBuilder::from_opts(opts)
            .tcp_connect_timeout(Some(Duration::from_secs(10)))
            .read_timeout(network)
            .write_timeout(network)
            // Count rows matched, not rows changed, so every write reports the one row it hit.
            .additional_capabilities(CapabilityFlags::CLIENT_FOUND_ROWS);
        let mut conn =
            Conn::new(opts).with_context(|| format!("cannot connect to database {target}"))?;
        let lock_wait = busy_timeout.as_secs().max(1);
        conn.query_drop(format!(
            "SET SESSION innodb_lock_wait_timeout = {lock_wait}, SESSION time_zone = '+00:00'"
        ))
        .with_context(|| format!("database {target}: cannot configure the session"))?;
        if read_only {
            conn.query_drop("SET SESSION TRANSACTION READ ONLY")
                .with_context(|| format!("database {target}: cannot make the session read-only"))?;
        }
        Ok(MySqlStore {
            conn,
            target: target.clone(),
            busy_timeout,
        })
    }

    /// Waits for this host's named lock: one pass per host at a time, fleet-wide.
    fn lock_host(&mut self, host_uuid: &str) -> Result<()> {
        let secs = self.busy_timeout.as_secs().max(1);
        let acquired: Option<Option<i64>> = self
            .conn
            .exec_first(
                "SELECT GET_LOCK(CONCAT('decnet-reconcile:', LEFT(SHA2(?, 256), 40)), ?)",
                (host_uuid, secs),
            )
            .with_context(|| {
                format!(
                    "database {}: cannot take the lock of host {host_uuid:?}",
                    self.target
                )
            })?;
        if acquired.flatten() != Some(1) {
            bail!(
                "database {}: another pass for host {host_uuid:?} held its lock for longer than --db-busy-timeout; nothing was written",
                self.target
            );
        }
        Ok(())
    }

    fn unlock_host(&mut self, host_uuid: &str) -> Result<()> {
        self.conn
            .exec_drop(
                "DO RELEASE_LOCK(CONCAT('decnet-reconcile:', LEFT(SHA2(?, 256), 40)))",
                (host_uuid,),
            )
            .with_context(|| {
                format!(
                    "database {}: cannot release the lock of host {host_uuid:?}",
                    self.target
                )
            })
    }

    fn table_exists(&mut self) -> Result<bool> {
        let count: Option<i64> = self
            .conn
            .query_first(TABLE_EXISTS)
            .with_context(|| format!("database {}: cannot read the schema", self.target))?;
        Ok(count.unwrap_or(0) > 0)
    }

    fn plan_and_apply(&mut self, host_uuid: &str, now: &str, plan_on: &mut PlanOn) -> Result<Plan> {
        let target = self.target.clone();
        let mut tx = self
            .conn
            .start_transaction(TxOpts::default())
            .with_context(|| format!("database {target}: cannot start the transaction"))?;
        let rows = select_rows(&mut tx, host_uuid)
            .with_context(|| format!("database {target}: cannot read fleet_deckies"))?;
        let last_written: Option<Option<String>> = tx
            .exec_first(
                "SELECT CAST(MAX(updated_at) AS CHAR) FROM fleet_deckies WHERE host_uuid = ?",
                (host_uuid,),
            )
            .with_context(|| format!("database {target}: cannot read fleet_deckies"))?;
        let last_written = last_written
            .flatten()
            .as_deref()
            .and_then(parse_stored_datetime);
        let plan = plan_on(&rows, last_written);
        check_key_lengths(&plan)?;
        for write in writes(&plan, now) {
            let params: Vec<mysql::Value> = write
                .params
                .iter()
                .map(|param| match *param {
                    Param::Text(text) => text.into(),
                    Param::Integer(number) => number.into(),
                })
                .collect();
            tx.exec_drop(write.sql, params)
                .map_err(|err| describe_write_error(&target, err))?;
            if tx.affected_rows() != 1 {
                return Err(unexpected_row_count(&write, tx.affected_rows()));
            }
        }
        tx.commit()
            .with_context(|| format!("database {target}: cannot commit the pass"))?;
        Ok(plan)
    }
}

impl FleetStore for MySqlStore {
    fn read_rows(&mut self, host_uuid: &str) -> Result<Vec<FleetRow>> {
        if !self.table_exists()? {
            return Ok(Vec::new());
        }
        let target = self.target.clone();
        let mut tx = self
            .conn
            .start_transaction(TxOpts::default().set_access_mode(Some(AccessMode::ReadOnly)))
            .with_context(|| format!("database {target}: cannot start a read-only transaction"))?;
        let rows = select_rows(&mut tx, host_uuid)
            .with_context(|| format!("database {target}: cannot read fleet_deckies"))?;
        tx.rollback()
            .with_context(|| format!("database {target}: cannot end the read-only transaction"))?;
        Ok(rows)
    }

    /// The host's named lock is taken before the transaction starts, so the
    /// rows read are those the previous holder committed.
    fn reconcile(&mut self, host_uuid: &str, plan_on: &mut PlanOn) -> Result<Plan> {
        if host_uuid.chars().count() > MAX_KEY_CHARS {
            bail!("--host-uuid is longer than the {MAX_KEY_CHARS} characters fleet_deckies holds on MySQL");
        }
        self.lock_host(host_uuid)?;
        // DDL commits implicitly, so the table is made before the pass's transaction.
        if !self.table_exists()? {
            self.conn.query_drop(CREATE_TABLE).with_context(|| {
                format!("database {}: cannot create fleet_deckies", self.target)
            })?;
        }
        let result = self.plan_and_apply(host_uuid, &timestamp(Utc::now()), plan_on);
        // A lost connection releases the lock by itself; only a live one needs this.
        let unlocked = self.unlock_host(host_uuid);
        let plan = result?;
        unlocked?;
        Ok(plan)
    }
}

fn select_rows(tx: &mut mysql::Transaction, host_uuid: &str) -> mysql::Result<Vec<FleetRow>> {
    tx.exec_map(
        SELECT_HOST_ROWS,
        (host_uuid,),
        |(host_uuid, name, services, decky_config, decky_ip, state)| FleetRow {
            host_uuid,
            name,
            services,
            decky_config,
            decky_ip,
            state,
            stored_key: None,
        },
    )
}

/// A state-file name that `varchar(255)` cannot hold makes the file bad for this backend.
fn check_key_lengths(plan: &Plan) -> Result<()> {
    for change in &plan.changes {
        if matches!(change.kind, ChangeKind::Insert { .. })
            && change.name.chars().count() > MAX_KEY_CHARS
        {
            bail!(
                "state file: decky {:?}… has a name of {} characters; fleet_deckies on MySQL holds {MAX_KEY_CHARS}. Nothing was written",
                change.name.chars().take(40).collect::<String>(),
                change.name.chars().count()
            );
        }
    }
    Ok(())
}

fn describe_write_error(target: &MySqlTarget, err: mysql::Error) -> anyhow::Error {
    const DUPLICATE_KEY: u16 = 1062;
    let duplicate = matches!(&err, mysql::Error::MySqlError(e) if e.code == DUPLICATE_KEY);
    let err =
        anyhow::Error::new(err).context(format!("database {target}: cannot write fleet_deckies"));
    if duplicate {
        err.context(
            "two deckies of the state file have names that MySQL's collation treats as one \
             (it ignores case and accents); nothing was written",
        )
    } else {
        err
    }
}

/// MySQL's `DATETIME` holds whole seconds: UTC wall clock, no fraction.
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decnet_url_spellings_are_accepted_and_printed_without_password() {
        let target = MySqlTarget::from_url("mysql+asyncmy://decnet:s3cret@127.0.0.1:3306/decnet")
            .expect("valid");
        assert_eq!(target.url, "mysql://decnet:s3cret@127.0.0.1:3306/decnet");
        assert!(!target.to_string().contains("s3cret"));
        assert!(!format!("{target:?}").contains("s3cret"));
        assert!(MySqlTarget::from_url("postgres://x@y/z").is_err());
        assert!(MySqlTarget::from_url("/var/lib/decnet/decnet.db").is_err());
        let upper = MySqlTarget::from_url("MySQL+AsyncMy://u:s3cret@h/d").expect("valid");
        assert_eq!(upper.url, "mysql://u:s3cret@h/d");
    }

    #[test]
    fn urls_without_slashes_are_refused_without_their_password() {
        for url in [
            "mysql:user:s3cretpw@host/db",
            "mysql:/user:s3cretpw@host/db",
            "mysql+asyncmy:user:s3cretpw@host/db",
        ] {
            let err = format!("{:#}", MySqlTarget::from_url(url).expect_err(url));
            assert!(err.contains("lacks the //"), "{err}");
            assert!(!err.contains("s3cret"), "{err}");
        }
    }

    #[test]
    fn decnet_charset_is_accepted_and_others_are_refused_by_name() {
        let target =
            MySqlTarget::from_url("mysql+asyncmy://decnet:s3cret@h:3306/decnet?charset=utf8mb4")
                .expect("valid");
        assert_eq!(target.url, "mysql://decnet:s3cret@h:3306/decnet");
        let kept = MySqlTarget::from_url("mysql://u:s3cret@h/d?charset=UTF8&prefer_socket=false")
            .expect("valid");
        assert_eq!(kept.url, "mysql://u:s3cret@h/d?prefer_socket=false");
        let latin = format!(
            "{:#}",
            MySqlTarget::from_url("mysql://u:s3cret@h/d?charset=latin1").expect_err("latin1")
        );
        assert!(
            latin.contains("charset=\"latin1\" cannot be honoured"),
            "{latin}"
        );
        let unknown = format!(
            "{:#}",
            MySqlTarget::from_url("mysql://u:s3cret@h/d?charset=utf8mb4&ssl_ca=%2Fca.pem")
                .expect_err("unknown")
        );
        assert!(
            unknown.contains("unknown parameter \"ssl_ca\""),
            "{unknown}"
        );
        for err in [latin, unknown] {
            assert!(!err.contains("s3cret"), "{err}");
        }
    }

    #[test]
    fn parts_are_escaped_into_a_url() {
        let target =
            MySqlTarget::from_parts("db.example", 3307, "decnet", "decnet", Some("p@ss/w:rd"))
                .expect("valid");
        assert_eq!(
            target.url,
            "mysql://decnet:p%40ss%2Fw%3Ard@db.example:3307/decnet"
        );
    }

    #[test]
    fn datetimes_are_whole_seconds() {
        let at = DateTime::parse_from_rfc3339("2026-11-26T21:40:05.987654Z")
            .expect("time")
            .to_utc();
        assert_eq!(timestamp(at), "2026-11-26 21:40:05");
    }
}
