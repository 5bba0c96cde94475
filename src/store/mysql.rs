//! A fleet's shared MySQL/MariaDB database (DECNET's `DECNET_DB_TYPE=mysql`):
//! its DDL, its to-the-second datetimes, its case- and accent-insensitive
//! names, and a named lock per database and host, so that two passes for one
//! host never both apply a change while passes of different hosts run side by
//! side. Every wait on the server ends by one deadline per pass.

pub mod tls;

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};
use tracing::{debug, warn};

use super::{Access, Dialect, Param, RowWrite};
use crate::core::{FleetRow, StoreRules};

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
     WHERE table_schema = DATABASE() AND table_name = ?";

const SELECT_HOST_ROWS: &str = "SELECT host_uuid, name, services, decky_config, decky_ip, state, \
     CAST(updated_at AS CHAR) FROM fleet_deckies WHERE host_uuid = ? ORDER BY name";

/// The named lock of a host in this database. `GET_LOCK` names are global to
/// the server, so the database is part of it: two DECNET installations on one
/// server, each with a host `local`, do not wait for each other.
const LOCK_NAME: &str =
    "CONCAT('decnet-reconcile:', LEFT(SHA2(CONCAT_WS(CHAR(0), DATABASE(), ?), 256), 40))";

/// What `varchar(255)` holds, in characters.
const MAX_KEY_CHARS: usize = 255;

/// A MySQL server and database, with credentials. Prints without its password.
#[derive(Clone, PartialEq, Eq)]
pub struct MySqlTarget {
    url: String,
    host: String,
    port: u16,
    user: Option<String>,
    password: Option<String>,
    /// Whether the password is DECNET's `DECNET_DB_PASSWORD` (the URL made
    /// from parts), which a password file outranks, rather than the URL's.
    password_is_decnets_variable: bool,
    database: Option<String>,
    /// Boxed: most targets carry the default, and a `DbTarget` stays small.
    tls: Box<tls::TlsSettings>,
}

impl MySqlTarget {
    /// Takes `mysql://…` and DECNET's SQLAlchemy spellings (`mysql+asyncmy://…`,
    /// the scheme in any case), with the query parameters SQLAlchemy URLs
    /// carry that apply here (`charset`, and TLS's: see [`tls`]). Any other
    /// parameter is refused by name: a parameter may not re-address the
    /// connection (`db_name=`, `host=`, `user=` would send the pass elsewhere
    /// than every message says). Every message shows the URL without its password.
    pub fn from_url(url: &str) -> Result<Self> {
        let redacted = || crate::text::redact_url(url);
        let (scheme, rest) = url.split_once(':').unwrap_or((url, ""));
        if !is_mysql_scheme(scheme) {
            bail!("{} is not a MySQL URL", redacted());
        }
        let Some(rest) = rest.strip_prefix("//") else {
            bail!("MySQL URL {} lacks the // after {scheme}:", redacted());
        };
        let mut parsed = url::Url::parse(&format!("mysql://{rest}"))
            .map_err(|err| anyhow::anyhow!("MySQL URL {} does not parse: {err}", redacted()))?;
        let mut tls_parameters = tls::TlsParameters::default();
        for (key, value) in parsed.query_pairs() {
            match key.as_ref() {
                "charset" => {
                    check_charset(&value).with_context(|| format!("MySQL URL {}", redacted()))?
                }
                key if tls::is_tls_parameter(key) => tls_parameters.push(key, &value),
                unknown => bail!(
                    "MySQL URL {}: unknown parameter {:?} (known: charset, ssl-mode, ssl-ca, \
                     ssl-cert, ssl-key, and SQLAlchemy's ssl_ca, ssl_cert, ssl_key, ssl_check_hostname)",
                    redacted(),
                    crate::text::escape_untrusted(unknown)
                ),
            }
        }
        let tls = tls_parameters
            .settings()
            .map_err(|err| anyhow::anyhow!("MySQL URL {}: {err}", redacted()))?;
        parsed.set_query(None);
        let decoded = |text: &str| {
            percent_encoding::percent_decode_str(text)
                .decode_utf8()
                .map(|text| text.into_owned())
                .map_err(|_| anyhow::anyhow!("MySQL URL {} is not UTF-8 once decoded", redacted()))
        };
        let Some(host) = parsed.host_str().filter(|host| !host.is_empty()) else {
            bail!("MySQL URL {} names no server", redacted());
        };
        let database = decoded(parsed.path().trim_start_matches('/'))?;
        Ok(MySqlTarget {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: parsed.port().unwrap_or(3306),
            user: Some(decoded(parsed.username())?).filter(|user| !user.is_empty()),
            password: parsed.password().map(decoded).transpose()?,
            password_is_decnets_variable: false,
            database: Some(database).filter(|name| !name.is_empty()),
            url: parsed.to_string(),
            tls: Box::new(tls),
        })
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
        let mut target = Self::from_url(url.as_str())?;
        target.password_is_decnets_variable = target.password.is_some();
        Ok(target)
    }

    /// The password the URL (or DECNET's variable) gave, if any.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// Whether [`MySqlTarget::password`] is DECNET's `DECNET_DB_PASSWORD`
    /// (a URL made from parts) rather than the URL's own.
    pub fn password_is_decnets_variable(&self) -> bool {
        self.password_is_decnets_variable
    }

    /// The same target, logging in with `password` (read from a file or a
    /// systemd credential, by the precedence of `config::password_file`).
    pub fn with_password(mut self, password: String) -> Self {
        self.password = Some(password);
        self.password_is_decnets_variable = false;
        self
    }

    /// The TLS settings the URL asked for.
    pub fn tls(&self) -> &tls::TlsSettings {
        &self.tls
    }
}

/// `mysql`, or SQLAlchemy's `mysql+DRIVER`, in any case: schemes are case-insensitive.
pub fn is_mysql_scheme(scheme: &str) -> bool {
    let scheme = scheme.to_ascii_lowercase();
    scheme == "mysql" || scheme.starts_with("mysql+")
}

/// mysql_async always talks utf8mb4 (on any server since MySQL 5.5.3), which
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
        crate::text::escape_untrusted(charset)
    )
}

impl std::fmt::Display for MySqlTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::text::redact_url(&self.url))
    }
}

impl std::fmt::Debug for MySqlTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MySqlTarget({self})")
    }
}

/// How long past the budget the pass still listens for the server's answer:
/// InnoDB checks its lock waits about once a second, and the session's lock
/// timeouts are whole seconds rounded up, so a lock timeout the server reports
/// arrives within this of the deadline. It is spent once per pass: every
/// answer must come by the budget's deadline plus this slack.
pub const ANSWER_SLACK: Duration = Duration::from_secs(2);

/// Why a request to the server failed, in words for the operator.
enum Failure {
    /// The server answered with an error: the statement was not applied.
    Refused { code: u16, message: String },
    /// The connection failed, or the server did not answer in time: what was
    /// sent last may or may not have been applied.
    Lost(String),
}

impl Failure {
    fn of(err: mysql_async::Error) -> Self {
        use mysql_async::{Error as E, IoError};
        match err {
            E::Server(err) => Failure::Refused {
                code: err.code,
                message: crate::text::escape_untrusted(&err.message),
            },
            E::Io(IoError::Io(err)) => Failure::Lost(crate::net::io_failure(&err)),
            E::Driver(mysql_async::DriverError::ConnectionClosed) => {
                Failure::Lost("the connection was lost".to_owned())
            }
            other => Failure::Lost(crate::text::escape_untrusted(&other.to_string())),
        }
    }

    /// The reason, as the end of a sentence.
    fn reason(&self) -> String {
        match self {
            Failure::Refused {
                code: LOCK_WAIT_TIMEOUT,
                message,
            } => format!(
                "fleet_deckies stayed locked by another writer for longer than --db-busy-timeout \
                 (the server: \"{message}\")"
            ),
            Failure::Refused { code, message } => {
                format!("the server answered error {code}, \"{message}\"")
            }
            Failure::Lost(reason) => reason.clone(),
        }
    }
}

/// `ER_LOCK_WAIT_TIMEOUT`, for a row lock and a table's metadata lock alike.
const LOCK_WAIT_TIMEOUT: u16 = 1205;
/// `ER_DUP_ENTRY`.
const DUPLICATE_KEY: u16 = 1062;

/// The server's answer to `request`, if it comes by `deadline`.
async fn answer<T>(
    deadline: Instant,
    request: impl std::future::Future<Output = mysql_async::Result<T>>,
) -> Result<T, Failure> {
    match tokio::time::timeout_at(deadline.into(), request).await {
        Ok(answered) => answered.map_err(Failure::of),
        Err(_) => Err(Failure::Lost(
            "the server did not answer within --db-busy-timeout".to_owned(),
        )),
    }
}

/// An open connection to the fleet database, for one pass.
pub struct MySql {
    conn: Conn,
    target: MySqlTarget,
    access: Access,
    /// When `--db-busy-timeout`, counted from the open, runs out: every lock
    /// wait of the pass ends by then.
    deadline: Instant,
    /// The session's lock timeouts, in whole seconds, as last set.
    lock_wait_secs: u64,
}

impl MySql {
    /// Connects, within the budget that ends at `deadline`.
    pub async fn connect(target: &MySqlTarget, access: Access, deadline: Instant) -> Result<Self> {
        let opts = OptsBuilder::default()
            .user(target.user.clone())
            .pass(target.password.clone())
            .db_name(target.database.clone())
            // Where the URL says: not a switch to the server's Unix socket,
            // which the unit's sandbox and the operator's firewall never saw.
            .prefer_socket(false)
            // Count rows matched, not rows changed, so every write reports the one row it hit.
            .client_found_rows(true);
        let conn = connect_with_tls(target, opts, deadline + ANSWER_SLACK).await?;
        let mut db = MySql {
            conn,
            target: target.clone(),
            access,
            deadline,
            lock_wait_secs: u64::MAX,
        };
        db.query("SET SESSION time_zone = '+00:00'")
            .await
            .map_err(|failure| db.fail("cannot configure the session", &failure))?;
        Ok(db)
    }

    fn answer_deadline(&self) -> Instant {
        self.deadline + ANSWER_SLACK
    }

    async fn query(&mut self, sql: &str) -> Result<(), Failure> {
        let deadline = self.answer_deadline();
        answer(deadline, self.conn.query_drop(sql)).await
    }

    fn fail(&self, doing: &str, failure: &Failure) -> anyhow::Error {
        nothing_written(&self.target, doing, failure)
    }

    /// What is left of the budget, in whole seconds rounded up (at least 1:
    /// MySQL's lock timeouts take no fraction, and 0 would not wait at all).
    fn seconds_left(&self) -> u64 {
        let left = self.deadline.saturating_duration_since(Instant::now());
        (left.as_secs() + u64::from(left.subsec_nanos() > 0)).max(1)
    }

    /// Cuts the session's row- and table-lock timeouts to what is left of the
    /// budget, so that no statement's wait outlasts the deadline. Costs a round
    /// trip only when a whole second has passed since the last cut.
    async fn bound_lock_waits(&mut self) -> Result<(), Failure> {
        let secs = self.seconds_left();
        if secs < self.lock_wait_secs {
            self.query(&format!(
                "SET SESSION innodb_lock_wait_timeout = {secs}, SESSION lock_wait_timeout = {secs}"
            ))
            .await?;
            self.lock_wait_secs = secs;
        }
        Ok(())
    }

    /// Waits for this host's named lock: one pass per host at a time, fleet-wide.
    async fn lock_host(&mut self, host_uuid: &str) -> Result<()> {
        let wait = self
            .deadline
            .saturating_duration_since(Instant::now())
            .as_secs_f64();
        let deadline = self.answer_deadline();
        let acquired: Option<Option<i64>> = answer(
            deadline,
            self.conn.exec_first(
                format!("SELECT GET_LOCK({LOCK_NAME}, ?)"),
                (host_uuid, wait),
            ),
        )
        .await
        .map_err(|failure| {
            self.fail(
                &format!("cannot take the lock of host {host_uuid:?}"),
                &failure,
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

    async fn unlock_host(&mut self, host_uuid: &str) -> Result<(), Failure> {
        let deadline = self.answer_deadline();
        answer(
            deadline,
            self.conn
                .exec_drop(format!("DO RELEASE_LOCK({LOCK_NAME})"), (host_uuid,)),
        )
        .await
    }

    async fn start_transaction(&mut self) -> Result<()> {
        let sql = match self.access {
            Access::ReadWrite => "START TRANSACTION",
            Access::ReadOnly => "START TRANSACTION READ ONLY",
        };
        self.query(sql)
            .await
            .map_err(|failure| self.fail("cannot start the transaction", &failure))
    }
}

/// Connects as `target`'s TLS settings say (their files read first), by
/// `deadline`; a refusal in which TLS has a part is said in its words.
async fn connect_with_tls(
    target: &MySqlTarget,
    opts: OptsBuilder,
    deadline: Instant,
) -> Result<Conn> {
    let cannot = |why: String| {
        anyhow::anyhow!("cannot connect to database {target}: {why}; nothing was written")
    };
    let ssl = tls::ssl_opts(&target.tls, &target.host).map_err(cannot)?;
    let connecting = async {
        // The driver is given addresses, never the name: its own lookup runs
        // on tokio's blocking pool (see `net`).
        let addresses = crate::net::resolve(&target.host, target.port, deadline.into())
            .await
            .map_err(|err| cannot(err.to_string()))?;
        crate::net::first_that_connects(addresses, |address| {
            let opts = opts
                .clone()
                .ip_or_hostname(address.ip().to_string())
                .tcp_port(address.port());
            tls::connect(opts, ssl.clone(), target.tls.mode)
        })
        .await
        .map_err(|err| {
            cannot(tls::explain(&err, &target.tls).unwrap_or_else(|| Failure::of(err).reason()))
        })
    };
    match tokio::time::timeout_at(deadline.into(), connecting).await {
        Ok(Ok((conn, negotiated))) => {
            debug!(
                "connected to database {target} {}",
                tls::connected_words(&target.tls, negotiated)
            );
            Ok(conn)
        }
        Ok(Err(err)) => Err(err),
        Err(_) => Err(cannot(
            "the server did not answer within --db-busy-timeout".to_owned(),
        )),
    }
}

/// "database X: doing: why; nothing was written".
fn nothing_written(target: &MySqlTarget, doing: &str, failure: &Failure) -> anyhow::Error {
    anyhow::anyhow!(
        "database {target}: {doing}: {}; nothing was written",
        failure.reason()
    )
}

#[async_trait(?Send)]
impl Dialect for MySql {
    fn rules(&self) -> StoreRules {
        StoreRules {
            stamp_resolution: chrono::TimeDelta::seconds(1),
            max_key_chars: Some(MAX_KEY_CHARS),
        }
    }

    fn stamp(&self, at: DateTime<Utc>) -> String {
        timestamp(at)
    }

    /// The host's named lock is taken before the transaction starts, so the
    /// rows read are those the previous holder committed. A dry run takes no
    /// lock: it reads in a read-only transaction.
    async fn begin(&mut self, host: &str) -> Result<()> {
        if self.access == Access::ReadWrite {
            self.lock_host(host).await?;
        }
        self.start_transaction().await
    }

    async fn table_exists(&mut self, table: &str) -> Result<bool> {
        let deadline = self.answer_deadline();
        let count: Option<i64> = answer(deadline, self.conn.exec_first(TABLE_EXISTS, (table,)))
            .await
            .map_err(|failure| self.fail("cannot read the schema", &failure))?;
        Ok(count.unwrap_or(0) > 0)
    }

    /// DDL commits implicitly, so the transaction starts again after it.
    async fn create_table(&mut self) -> Result<()> {
        let created = match self.bound_lock_waits().await {
            Ok(()) => self.query(CREATE_TABLE).await,
            Err(failure) => Err(failure),
        };
        created.map_err(|failure| self.fail("cannot create fleet_deckies", &failure))?;
        self.start_transaction().await
    }

    async fn select_rows(&mut self, host: &str) -> Result<Vec<FleetRow>> {
        let read = match self.bound_lock_waits().await {
            Ok(()) => {
                let deadline = self.answer_deadline();
                answer(
                    deadline,
                    self.conn.exec_map(SELECT_HOST_ROWS, (host,), fleet_row),
                )
                .await
            }
            Err(failure) => Err(failure),
        };
        read.map_err(|failure| self.fail("cannot read fleet_deckies", &failure))
    }

    async fn execute(&mut self, write: &RowWrite<'_>) -> Result<u64> {
        let params: Vec<mysql_async::Value> = write
            .params
            .iter()
            .map(|param| match *param {
                Param::Text(text) => text.into(),
                Param::Integer(number) => number.into(),
            })
            .collect();
        let written = match self.bound_lock_waits().await {
            Ok(()) => {
                let deadline = self.answer_deadline();
                answer(deadline, self.conn.exec_drop(write.sql, params)).await
            }
            Err(failure) => Err(failure),
        };
        match written {
            Ok(()) => Ok(self.conn.affected_rows()),
            Err(Failure::Refused {
                code: DUPLICATE_KEY,
                ..
            }) => bail!(
                "database {}: cannot write decky {:?}: two deckies of the state file have names that \
                 MySQL's collation treats as one (it ignores case, accents and trailing spaces); nothing was written",
                self.target,
                write.name
            ),
            Err(failure) => Err(self.fail(&format!("cannot write decky {:?}", write.name), &failure)),
        }
    }

    /// Once the server has acknowledged the commit, the pass has succeeded,
    /// whatever happens to the lock after it.
    async fn commit(&mut self, host: &str) -> Result<()> {
        match self.query("COMMIT").await {
            Ok(()) => {}
            Err(failure @ Failure::Refused { .. }) => {
                return Err(self.fail("cannot commit the pass", &failure))
            }
            Err(Failure::Lost(reason)) => bail!(
                "database {}: {reason} during the commit: the commit may or may not have been applied, \
                 and no event was sent; the next pass will converge the rows (if the commit was applied, \
                 its events are lost)",
                self.target
            ),
        }
        if let Err(failure) = self.unlock_host(host).await {
            warn!(
                "database {}: the pass was committed, but releasing the lock of host {host:?} failed ({}); \
                 the server releases it when the connection closes",
                self.target,
                failure.reason()
            );
        }
        Ok(())
    }
}

/// A row as `SELECT_HOST_ROWS` returns it.
type StoredRow = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
);

fn fleet_row(stored: StoredRow) -> FleetRow {
    let (host_uuid, name, services, decky_config, decky_ip, state, updated_at) = stored;
    FleetRow {
        host_uuid,
        name,
        services,
        decky_config,
        decky_ip,
        state,
        stored_key: None,
        updated_at,
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
        let utf8 = MySqlTarget::from_url("mysql://u:s3cret@h/d?charset=UTF8").expect("valid");
        assert_eq!(utf8.url, "mysql://u:s3cret@h/d");
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
            MySqlTarget::from_url("mysql://u:s3cret@h/d?charset=utf8mb4&compress=true")
                .expect_err("unknown")
        );
        assert!(
            unknown.contains("unknown parameter \"compress\""),
            "{unknown}"
        );
        for err in [latin, unknown] {
            assert!(!err.contains("s3cret"), "{err}");
        }
    }

    /// A parameter may not send the pass to another database, server or user
    /// than the one every message names.
    #[test]
    fn parameters_that_re_address_the_connection_are_refused() {
        for param in [
            "db_name=other",
            "host=elsewhere",
            "user=root",
            "password=x",
            "socket=%2Ftmp%2Fm.sock",
            "prefer_socket=true",
        ] {
            let url = format!("mysql://u:s3cret@h/d?{param}");
            let err = format!("{:#}", MySqlTarget::from_url(&url).expect_err(&url));
            let name = param.split('=').next().unwrap_or_default();
            assert!(
                err.contains(&format!("unknown parameter \"{name}\"")),
                "{err}"
            );
        }
    }

    #[test]
    fn the_url_gives_server_user_password_and_database_decoded() {
        let target =
            MySqlTarget::from_url("mysql://de%40c:p%40ss%2Fw@[::1]:3307/my%20db").expect("valid");
        assert_eq!(
            (target.host.as_str(), target.port),
            ("::1", 3307),
            "{target:?}"
        );
        assert_eq!(target.user.as_deref(), Some("de@c"));
        assert_eq!(target.password.as_deref(), Some("p@ss/w"));
        assert_eq!(target.database.as_deref(), Some("my db"));
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
