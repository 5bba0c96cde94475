//! A fleet's shared MySQL/MariaDB database (DECNET's `DECNET_DB_TYPE=mysql`):
//! its DDL, its to-the-second datetimes, its case- and accent-insensitive
//! names, and a per-host named lock so that two passes for one host never
//! both apply a change while passes of different hosts run side by side.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, NaiveDateTime, Utc};
use mysql::consts::CapabilityFlags;
use mysql::prelude::Queryable;
use mysql::{Conn, DriverError, Opts, OptsBuilder};
use tracing::warn;

use super::{unexpected_row_count, writes, written_at, FleetStore, Param, PlanOn};
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

const SELECT_HOST_ROWS: &str = "SELECT host_uuid, name, services, decky_config, decky_ip, state, \
     CAST(updated_at AS CHAR) FROM fleet_deckies WHERE host_uuid = ? ORDER BY name";

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

/// How long past the budget the pass still listens for the server's answer:
/// InnoDB checks its lock waits about once a second, and the session's lock
/// timeouts are whole seconds rounded up, so a lock timeout the server reports
/// arrives within this of the deadline.
pub const ANSWER_SLACK: Duration = Duration::from_secs(2);

/// One statement's work on the connection, run on the connection's own thread.
type Job = Box<dyn FnOnce(&mut Conn) + Send>;

/// Why a request to the server failed, in words for the operator.
enum Failure {
    /// The server answered with an error: the statement was not applied.
    Refused { code: u16, message: String },
    /// The connection failed, or the server did not answer in time: what was
    /// sent last may or may not have been applied.
    Lost(String),
}

impl Failure {
    fn of(err: mysql::Error) -> Self {
        use mysql::Error as E;
        match err {
            E::MySqlError(err) => Failure::Refused {
                code: err.code,
                message: crate::terminal::escape(&err.message),
            },
            E::IoError(err) => Failure::Lost(lost_connection(&err)),
            // The codec's error wraps the socket's, when it was the socket.
            E::CodecError(err) => match std::error::Error::source(&err)
                .and_then(|source| source.downcast_ref::<std::io::Error>())
            {
                Some(err) => Failure::Lost(lost_connection(err)),
                None => Failure::Lost("its answer broke the MySQL protocol".to_owned()),
            },
            E::DriverError(DriverError::ConnectTimeout) => {
                Failure::Lost("it did not accept the connection in time".to_owned())
            }
            E::DriverError(DriverError::CouldNotConnect(Some((_, _, kind)))) => {
                Failure::Lost(format!("it cannot be reached ({kind})"))
            }
            E::DriverError(DriverError::CouldNotConnect(None)) => {
                Failure::Lost("it cannot be reached".to_owned())
            }
            E::DriverError(err) => Failure::Lost(format!(
                "the client failed: {}",
                crate::terminal::escape(&err.to_string())
            )),
            other => Failure::Lost(crate::terminal::escape(&other.to_string())),
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

fn lost_connection(err: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match err.kind() {
        K::TimedOut | K::WouldBlock => "the server stopped answering".to_owned(),
        K::ConnectionRefused => "it refused the connection".to_owned(),
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
            "the connection was lost".to_owned()
        }
        kind => format!("the connection failed ({kind})"),
    }
}

/// The connection, on a thread of its own: the pass waits for each answer
/// only until the budget's deadline (plus [`ANSWER_SLACK`]), however long the
/// socket would block, so a server that stops answering cannot hold it longer.
struct Session {
    /// `None` once the pass stopped waiting for an answer: the connection is
    /// abandoned (the server rolls back what it did not commit when it goes).
    jobs: Option<mpsc::Sender<Job>>,
    worker: Option<std::thread::JoinHandle<()>>,
    deadline: Instant,
    /// The session's lock timeouts, in whole seconds, as last set.
    lock_wait_secs: u64,
}

impl Session {
    fn connect(opts: Opts, deadline: Instant) -> Result<Self, Failure> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (connected, connection) = mpsc::sync_channel(1);
        let worker = std::thread::spawn(move || {
            let mut conn = match Conn::new(opts) {
                Ok(conn) => conn,
                Err(err) => {
                    let _ = connected.send(Err(err));
                    return;
                }
            };
            let _ = connected.send(Ok(()));
            for job in queue {
                job(&mut conn);
            }
        });
        let mut session = Session {
            jobs: Some(jobs),
            worker: Some(worker),
            deadline,
            lock_wait_secs: u64::MAX,
        };
        session.answer(&connection)?;
        Ok(session)
    }

    /// Runs `job` on the connection and waits for its answer, until the deadline.
    fn call<T: Send + 'static>(
        &mut self,
        job: impl FnOnce(&mut Conn) -> mysql::Result<T> + Send + 'static,
    ) -> Result<T, Failure> {
        let Some(jobs) = &self.jobs else {
            return Err(Failure::Lost("the connection was abandoned".to_owned()));
        };
        let (reply, answer) = mpsc::sync_channel(1);
        let sent = jobs.send(Box::new(move |conn: &mut Conn| {
            let _ = reply.send(job(conn));
        }));
        if sent.is_err() {
            self.jobs = None;
            return Err(Failure::Lost("the connection was lost".to_owned()));
        }
        self.answer(&answer)
    }

    fn answer<T>(&mut self, answer: &mpsc::Receiver<mysql::Result<T>>) -> Result<T, Failure> {
        let wait = self.deadline.saturating_duration_since(Instant::now()) + ANSWER_SLACK;
        match answer.recv_timeout(wait) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(Failure::of(err)),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                self.jobs = None;
                Err(Failure::Lost(
                    "the server did not answer within --db-busy-timeout".to_owned(),
                ))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                self.jobs = None;
                Err(Failure::Lost("the connection was lost".to_owned()))
            }
        }
    }

    fn is_alive(&self) -> bool {
        self.jobs.is_some()
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
    fn bound_lock_waits(&mut self) -> Result<(), Failure> {
        let secs = self.seconds_left();
        if secs < self.lock_wait_secs {
            self.call(move |conn| {
                conn.query_drop(format!(
                    "SET SESSION innodb_lock_wait_timeout = {secs}, SESSION lock_wait_timeout = {secs}"
                ))
            })?;
            self.lock_wait_secs = secs;
        }
        Ok(())
    }

    fn query(&mut self, sql: &'static str) -> Result<(), Failure> {
        self.call(move |conn| conn.query_drop(sql))
    }
}

impl Drop for Session {
    /// A live connection is closed politely; an abandoned one is left to the OS.
    fn drop(&mut self) {
        if self.jobs.take().is_some() {
            if let Some(worker) = self.worker.take() {
                let _ = worker.join();
            }
        }
    }
}

/// An open connection to the fleet database.
pub struct MySqlStore {
    session: Session,
    target: MySqlTarget,
}

impl MySqlStore {
    /// Connects, within `busy_timeout`: from here on every wait of the pass on
    /// this server (the connection, the host's lock, row and table locks, each
    /// answer) ends by one deadline, `busy_timeout` from now.
    pub fn open(target: &MySqlTarget, busy_timeout: Duration, read_only: bool) -> Result<Self> {
        let deadline = Instant::now() + busy_timeout;
        let opts = Opts::from_url(&target.url)
            .map_err(|err| anyhow::anyhow!("MySQL URL {target}: {err}"))?;
        // The socket's own bounds only free the connection's thread once the
        // pass has stopped waiting for it.
        let backstop = Some(busy_timeout + ANSWER_SLACK);
        let opts = OptsBuilder::from_opts(opts)
            .tcp_connect_timeout(Some(busy_timeout.max(Duration::from_secs(1))))
            // Where the URL says: not a switch to the server's Unix socket,
            // which the unit's sandbox and the operator's firewall never saw.
            .prefer_socket(false)
            .read_timeout(backstop)
            .write_timeout(backstop)
            // Count rows matched, not rows changed, so every write reports the one row it hit.
            .additional_capabilities(CapabilityFlags::CLIENT_FOUND_ROWS);
        let mut session = Session::connect(opts.into(), deadline).map_err(|failure| {
            anyhow::anyhow!(
                "cannot connect to database {target}: {}; nothing was written",
                failure.reason()
            )
        })?;
        session
            .query("SET SESSION time_zone = '+00:00'")
            .and_then(|()| match read_only {
                true => session.query("SET SESSION TRANSACTION READ ONLY"),
                false => Ok(()),
            })
            .and_then(|()| session.bound_lock_waits())
            .map_err(|failure| nothing_written(target, "cannot configure the session", &failure))?;
        Ok(MySqlStore {
            session,
            target: target.clone(),
        })
    }

    fn fail(&self, doing: &str, failure: &Failure) -> anyhow::Error {
        nothing_written(&self.target, doing, failure)
    }

    /// Waits for this host's named lock: one pass per host at a time, fleet-wide.
    fn lock_host(&mut self, host_uuid: &str) -> Result<()> {
        let host = host_uuid.to_owned();
        let wait = self
            .session
            .deadline
            .saturating_duration_since(Instant::now())
            .as_secs_f64();
        let acquired = self
            .session
            .call(move |conn| {
                conn.exec_first::<Option<i64>, _, _>(
                    "SELECT GET_LOCK(CONCAT('decnet-reconcile:', LEFT(SHA2(?, 256), 40)), ?)",
                    (host, wait),
                )
            })
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

    fn unlock_host(&mut self, host_uuid: &str) -> Result<(), Failure> {
        let host = host_uuid.to_owned();
        self.session.call(move |conn| {
            conn.exec_drop(
                "DO RELEASE_LOCK(CONCAT('decnet-reconcile:', LEFT(SHA2(?, 256), 40)))",
                (host,),
            )
        })
    }

    fn table_exists(&mut self) -> Result<bool> {
        let count = self
            .session
            .call(|conn| conn.query_first::<i64, _>(TABLE_EXISTS))
            .map_err(|failure| self.fail("cannot read the schema", &failure))?;
        Ok(count.unwrap_or(0) > 0)
    }

    fn select_rows(&mut self, host_uuid: &str, lock_won: NaiveDateTime) -> Result<Vec<FleetRow>> {
        let host = host_uuid.to_owned();
        let rows = self
            .session
            .bound_lock_waits()
            .and_then(|()| {
                self.session.call(move |conn| {
                    conn.exec_map(SELECT_HOST_ROWS, (host,), move |row: StoredRow| {
                        fleet_row(row, lock_won)
                    })
                })
            })
            .map_err(|failure| self.fail("cannot read fleet_deckies", &failure))?;
        // The collation finds the rows of any host id equal to ours but for
        // case, accents or trailing spaces: the table cannot keep the two apart.
        if let Some(other) = rows.iter().find(|row| row.host_uuid != host_uuid) {
            bail!(
                "database {}: --host-uuid {host_uuid:?} and the rows of host {:?} are one host id to MySQL's \
                 collation (it ignores case, accents and trailing spaces), so the table cannot keep their \
                 rows apart; give this host an id that differs in more than that. Nothing was written",
                self.target,
                other.host_uuid
            );
        }
        Ok(rows)
    }

    /// Plans and writes inside one transaction, up to (not including) the commit.
    fn plan_and_write(&mut self, host_uuid: &str, plan_on: &mut PlanOn) -> Result<Plan> {
        self.session
            .query("START TRANSACTION")
            .map_err(|failure| self.fail("cannot start the transaction", &failure))?;
        let lock_won = Utc::now();
        let rows = self.select_rows(host_uuid, lock_won.naive_utc())?;
        let plan = plan_on(&rows);
        check_key_lengths(&plan)?;
        let now = timestamp(lock_won);
        for write in writes(&plan, &now) {
            let params: Vec<mysql::Value> = write
                .params
                .iter()
                .map(|param| match *param {
                    Param::Text(text) => text.into(),
                    Param::Integer(number) => number.into(),
                })
                .collect();
            let sql = write.sql;
            let touched = self
                .session
                .bound_lock_waits()
                .and_then(|()| {
                    self.session.call(move |conn| {
                        conn.exec_drop(sql, params).map(|()| conn.affected_rows())
                    })
                })
                .map_err(|failure| self.describe_write_failure(write.name, &failure))?;
            if touched != 1 {
                return Err(unexpected_row_count(&write, touched));
            }
        }
        Ok(plan)
    }

    fn describe_write_failure(&self, name: &str, failure: &Failure) -> anyhow::Error {
        if let Failure::Refused {
            code: DUPLICATE_KEY,
            ..
        } = failure
        {
            return anyhow::anyhow!(
                "database {}: cannot write decky {name:?}: two deckies of the state file have names that \
                 MySQL's collation treats as one (it ignores case, accents and trailing spaces); nothing was written",
                self.target
            );
        }
        self.fail(&format!("cannot write decky {name:?}"), failure)
    }

    /// Commits; once the server has acknowledged it, the pass has succeeded.
    fn commit(&mut self) -> Result<()> {
        match self.session.query("COMMIT") {
            Ok(()) => Ok(()),
            Err(failure @ Failure::Refused { .. }) => Err(self.fail("cannot commit the pass", &failure)),
            Err(Failure::Lost(reason)) => bail!(
                "database {}: {reason} during the commit: the commit may or may not have been applied, \
                 and no event was sent; the next pass will converge the rows (if the commit was applied, \
                 its events are lost)",
                self.target
            ),
        }
    }
}

/// "database X: doing: why; nothing was written".
fn nothing_written(target: &MySqlTarget, doing: &str, failure: &Failure) -> anyhow::Error {
    anyhow::anyhow!(
        "database {target}: {doing}: {}; nothing was written",
        failure.reason()
    )
}

impl FleetStore for MySqlStore {
    fn read_rows(&mut self, host_uuid: &str) -> Result<Vec<FleetRow>> {
        if !self.table_exists()? {
            return Ok(Vec::new());
        }
        self.session
            .query("START TRANSACTION READ ONLY")
            .map_err(|failure| self.fail("cannot start a read-only transaction", &failure))?;
        let rows = self.select_rows(host_uuid, Utc::now().naive_utc())?;
        self.session
            .query("ROLLBACK")
            .map_err(|failure| self.fail("cannot end the read-only transaction", &failure))?;
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
        let created = match self.table_exists() {
            Ok(true) => Ok(()),
            Ok(false) => self
                .session
                .bound_lock_waits()
                .and_then(|()| self.session.query(CREATE_TABLE))
                .map_err(|failure| self.fail("cannot create fleet_deckies", &failure)),
            Err(err) => Err(err),
        };
        let written = created
            .and_then(|()| self.plan_and_write(host_uuid, plan_on))
            .and_then(|plan| self.commit().map(|()| plan));
        let plan = match written {
            Ok(plan) => plan,
            Err(err) => {
                // A lost connection rolls back and releases the lock by itself.
                if self.session.is_alive() {
                    let _ = self.session.query("ROLLBACK");
                    let _ = self.unlock_host(host_uuid);
                }
                return Err(err);
            }
        };
        // The commit was acknowledged: the rows are written, and the pass
        // succeeds whatever happens to the lock now.
        if let Err(failure) = self.unlock_host(host_uuid) {
            warn!(
                "database {}: the pass was committed, but releasing the lock of host {host_uuid:?} failed ({}); \
                 the server releases it when the connection closes",
                self.target,
                failure.reason()
            );
        }
        Ok(plan)
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

fn fleet_row(stored: StoredRow, lock_won: NaiveDateTime) -> FleetRow {
    let (host_uuid, name, services, decky_config, decky_ip, state, updated_at) = stored;
    FleetRow {
        host_uuid,
        name,
        services,
        decky_config,
        decky_ip,
        state,
        stored_key: None,
        written_at: written_at(
            updated_at.as_deref(),
            chrono::TimeDelta::seconds(1),
            lock_won,
        ),
    }
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
