//! The fixture the integration tests share: a temp dir with a state file and a
//! SQLite DB, real containers on the test dockerd under names unique to the
//! test, and the built binary to run against them. Services are required:
//! a missing dockerd or Redis fails the test loudly (`scripts/services` starts them).

#![allow(dead_code)] // each test binary uses its own part of the fixture

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use rusqlite::Connection;
use serde_json::{json, Value};
use tempfile::TempDir;

pub const TEST_IMAGE: &str = "decnet-test-busybox:latest";
pub const DOCKER_SOCKET: &str = "unix:///var/run/docker.sock";
pub const REDIS_URL: &str = "redis://127.0.0.1:6379/0";
/// The test MariaDB that `scripts/services` starts, as the user it creates.
pub const MYSQL_SERVER: &str = "mysql://decnet_test:decnet_test@127.0.0.1:3306";

/// Which database holds `fleet_deckies` in a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    MySql,
}

/// Runs each named test body, `fn(Backend)`, once per backend: `mod sqlite` and `mod mysql`.
#[macro_export]
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(#[test]
            fn $test() {
                super::$test($crate::support::Backend::Sqlite)
            })*
        }
        mod mysql {
            $(#[test]
            fn $test() {
                super::$test($crate::support::Backend::MySql)
            })*
        }
    };
}

/// The environment variables the binary reads; cleared so the caller's shell cannot leak in.
const TOOL_ENV: [&str; 11] = [
    "DECNET_STATE_FILE",
    "DECNET_DB_PATH",
    "DECNET_HOST_UUID",
    "DOCKER_HOST",
    "DECNET_REDIS_URL",
    "NO_COLOR",
    "DECNET_BUS_URL",
    "DECNET_BUS_TYPE",
    "DECNET_BUS_SOCKET",
    "DECNET_BUS_ENABLED",
    "DECNET_RECONCILE_HEARTBEAT",
];

/// A running-or-not state a test container is put in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    Running,
    Exited,
    Created,
    Paused,
}

pub struct TestEnv {
    pub dir: TempDir,
    pub state_file: PathBuf,
    /// The SQLite file; with `Backend::MySql`, a database of its own named `mysql_database`.
    pub db: PathBuf,
    pub backend: Backend,
    pub mysql_database: String,
    pub host: String,
    /// Prefix of every decky and container name this test makes.
    pub prefix: String,
    containers: Vec<String>,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl TestEnv {
    pub fn new(test: &str) -> Self {
        Self::on(Backend::Sqlite, test)
    }

    /// A fresh env whose table lives in `backend` (a new MariaDB database for MySQL).
    pub fn on(backend: Backend, test: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let serial = COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let prefix = format!("t{pid}-{serial}-{}", test.replace('_', "-"));
        let mysql_database = format!("dr_{pid}_{serial}");
        if backend == Backend::MySql {
            mysql_connect(&format!("{MYSQL_SERVER}/mysql"))
                .query_drop(format!("CREATE DATABASE `{mysql_database}`"))
                .expect("create test database");
        }
        TestEnv {
            state_file: dir.path().join("decnet-state.json"),
            db: dir.path().join("decnet.db"),
            backend,
            mysql_database,
            host: "local".to_owned(),
            prefix,
            dir,
            containers: Vec::new(),
        }
    }

    /// The `--db` argument for this env's backend.
    pub fn db_arg(&self) -> String {
        match self.backend {
            Backend::Sqlite => self.db.display().to_string(),
            Backend::MySql => self.mysql_url(),
        }
    }

    pub fn mysql_url(&self) -> String {
        format!("{MYSQL_SERVER}/{}", self.mysql_database)
    }

    /// A decky name unique to this test.
    pub fn name(&self, short: &str) -> String {
        format!("{}-{short}", self.prefix)
    }

    /// A full decky as DECNET writes it, with SPEC §9's example values.
    pub fn decky(&self, name: &str, services: &[&str]) -> Value {
        decky(name, services)
    }

    /// Writes a state file holding `deckies`, as DECNET does (indent 2, ASCII, no newline).
    pub fn write_state(&self, deckies: &[Value]) {
        std::fs::write(&self.state_file, state_file_text(deckies)).expect("write state file");
    }

    pub fn write_state_text(&self, text: impl AsRef<[u8]>) {
        std::fs::write(&self.state_file, text).expect("write state file");
    }

    /// Creates a real container `name` in `state`; removed when the env drops.
    pub fn container(&mut self, name: &str, state: Container) {
        self.containers.push(name.to_owned());
        let base = ["--name", name, "--network", "none", TEST_IMAGE];
        match state {
            Container::Created => docker(&[&["create"][..], &base, &["sleep", "3600"]].concat()),
            Container::Running | Container::Paused => {
                docker(&[&["run", "-d"][..], &base, &["sleep", "3600"]].concat())
            }
            Container::Exited => docker(&[&["run"][..], &base, &["true"]].concat()),
        }
        if state == Container::Paused {
            docker(&["pause", name]);
        }
    }

    pub fn stop_container(&self, name: &str) {
        docker(&["stop", "-t", "0", name]);
    }

    /// The binary with this env's files and host, the test dockerd, and no publishing.
    pub fn command(&self) -> Command {
        let mut command = self.base_command();
        command.arg("--no-publish");
        command
    }

    /// The same, publishing to the Redis at `url` with a one-second timeout.
    pub fn command_publishing_to(&self, url: &str) -> Command {
        let mut command = self.base_command();
        command.args(["--redis-url", url, "--redis-timeout", "1"]);
        command
    }

    /// The same, with no bus option at all: the environment the caller sets chooses the bus.
    pub fn command_choosing_the_bus_by_environment(&self) -> Command {
        self.base_command()
    }

    fn base_command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_decnet-reconcile"));
        for var in TOOL_ENV {
            command.env_remove(var);
        }
        command
            .arg("--state-file")
            .arg(&self.state_file)
            .args(["--db", &self.db_arg()])
            .args(["--host-uuid", &self.host, "--docker-host", DOCKER_SOCKET])
            .args(["--docker-timeout", "10"]);
        command
    }

    /// Runs one pass with extra arguments; returns the finished process.
    pub fn run(&self, args: &[&str]) -> Run {
        Run::of(self.command().args(args))
    }

    /// Every row of the table, every column, as stored.
    pub fn rows(&self) -> Vec<Row> {
        match self.backend {
            Backend::Sqlite => rows_of(&self.db),
            Backend::MySql => mysql_rows_of(&self.mysql_url()),
        }
    }

    /// Runs SQL that both backends understand, as another DECNET process would.
    pub fn execute(&self, sql: &str) {
        match self.backend {
            Backend::Sqlite => self.connect().execute_batch(sql).expect("SQL on SQLite"),
            Backend::MySql => mysql_connect(&self.mysql_url())
                .query_drop(sql)
                .expect("SQL on MariaDB"),
        }
    }

    /// Whether `fleet_deckies` exists (and, for SQLite, the DB file at all).
    pub fn table_exists(&self) -> bool {
        match self.backend {
            Backend::Sqlite => {
                self.db.exists()
                    && !self
                        .dump("SELECT name FROM sqlite_master WHERE name = 'fleet_deckies'")
                        .is_empty()
            }
            Backend::MySql => !self
                .dump(
                    "SELECT table_name FROM information_schema.tables \
                     WHERE table_schema = DATABASE() AND table_name = 'fleet_deckies'",
                )
                .is_empty(),
        }
    }

    /// The rows of any query, each rendered as text, for before/after comparisons.
    pub fn dump(&self, sql: &str) -> Vec<String> {
        match self.backend {
            Backend::Sqlite => {
                let conn = self.connect();
                let mut statement = conn.prepare(sql).expect("prepare");
                let columns = statement.column_count();
                let rows = statement
                    .query_map([], |row| {
                        (0..columns)
                            .map(|i| {
                                row.get::<_, rusqlite::types::Value>(i)
                                    .map(|v| format!("{v:?}"))
                            })
                            .collect::<Result<Vec<_>, _>>()
                            .map(|cells| cells.join("|"))
                    })
                    .expect("query");
                rows.map(|row| row.expect("row")).collect()
            }
            Backend::MySql => {
                let rows: Vec<mysql::Row> =
                    mysql_connect(&self.mysql_url()).query(sql).expect("query");
                rows.into_iter()
                    .map(|row| {
                        row.unwrap()
                            .iter()
                            .map(|v| format!("{v:?}"))
                            .collect::<Vec<_>>()
                            .join("|")
                    })
                    .collect()
            }
        }
    }

    /// The whole schema as the database reports it.
    pub fn schema(&self) -> Vec<String> {
        match self.backend {
            Backend::Sqlite => {
                self.dump("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")
            }
            Backend::MySql => ["fleet_deckies", "attackers"]
                .iter()
                .flat_map(|table| self.dump(&format!("SHOW CREATE TABLE `{table}`")))
                .collect(),
        }
    }

    /// Asserts the datetime text of this backend: six fractional digits on SQLite, none on MySQL.
    pub fn assert_datetime(&self, text: &str) {
        let format = match self.backend {
            Backend::Sqlite => "%Y-%m-%d %H:%M:%S%.6f",
            Backend::MySql => "%Y-%m-%d %H:%M:%S",
        };
        let parsed = chrono::NaiveDateTime::parse_from_str(text, format)
            .unwrap_or_else(|err| panic!("{text:?} is not {format}: {err}"));
        assert_eq!(
            parsed.format(format).to_string(),
            text,
            "{text:?} is not in canonical form"
        );
        let age = chrono::Utc::now().naive_utc() - parsed;
        assert!(age.num_seconds().abs() < 120, "{text} is not UTC now");
    }

    /// The row of `name` for this env's host.
    pub fn row(&self, name: &str) -> Row {
        self.rows()
            .into_iter()
            .find(|row| row.name == name && row.host_uuid == self.host)
            .unwrap_or_else(|| panic!("no row for {name:?}"))
    }

    /// Opens the SQLite DB directly, as another DECNET process would.
    pub fn connect(&self) -> Connection {
        assert_eq!(self.backend, Backend::Sqlite, "connect() is SQLite's");
        Connection::open(&self.db).expect("open test DB")
    }

    /// Inserts a row as DECNET would, for seeding; creates the table when absent.
    pub fn seed_row(&self, host: &str, name: &str, state: &str) {
        let insert = "INSERT INTO fleet_deckies VALUES (?, ?, '[\"ssh\"]', NULL, '10.0.0.9', ?, NULL, NULL, NULL, ?)";
        let seeded_at = match self.backend {
            Backend::Sqlite => "2026-01-01 00:00:00.000000",
            Backend::MySql => "2026-01-01 00:00:00",
        };
        match self.backend {
            Backend::Sqlite => {
                let conn = self.connect();
                conn.execute(SCHEMA_IF_ABSENT, []).expect("schema");
                conn.execute(insert, (host, name, state, seeded_at))
                    .expect("seed row");
            }
            Backend::MySql => {
                let mut conn = mysql_connect(&self.mysql_url());
                conn.query_drop(MYSQL_SCHEMA).expect("schema");
                conn.exec_drop(insert, (host, name, state, seeded_at))
                    .expect("seed row");
            }
        }
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if self.backend == Backend::MySql {
            if let Ok(mut server) =
                mysql::Conn::new(mysql::Opts::from_url(MYSQL_SERVER).expect("url"))
            {
                let _ =
                    server.query_drop(format!("DROP DATABASE IF EXISTS `{}`", self.mysql_database));
            }
        }
        if !self.containers.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(self.containers.iter().map(String::as_str));
            let _ = Command::new("docker").args(&args).output();
        }
    }
}

pub const SCHEMA_IF_ABSENT: &str = "CREATE TABLE IF NOT EXISTS fleet_deckies (
	host_uuid VARCHAR NOT NULL,
	name VARCHAR NOT NULL,
	services TEXT NOT NULL,
	decky_config TEXT,
	decky_ip VARCHAR,
	state VARCHAR NOT NULL,
	last_error TEXT,
	compose_hash VARCHAR,
	last_seen DATETIME,
	updated_at DATETIME NOT NULL,
	PRIMARY KEY (host_uuid, name)
)";

/// DECNET's table on MariaDB, as the issue records it.
pub const MYSQL_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS `fleet_deckies` (
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

/// Connects to the test MariaDB, failing loudly when it is not there.
pub fn mysql_connect(url: &str) -> mysql::Conn {
    let opts = mysql::Opts::from_url(url).expect("MySQL URL");
    mysql::Conn::new(opts).unwrap_or_else(|err| {
        panic!("MariaDB is required on 127.0.0.1:3306 (scripts/services starts it): {err}")
    })
}

/// Every row on MariaDB, read with the text protocol so datetimes come back as stored text.
pub fn mysql_rows_of(url: &str) -> Vec<Row> {
    let mut conn = mysql_connect(url);
    let rows: Vec<mysql::Row> = conn
        .query("SELECT * FROM fleet_deckies ORDER BY host_uuid, name")
        .expect("select");
    rows.into_iter()
        .map(|mut row| Row {
            host_uuid: row.take(0).expect("host_uuid"),
            name: row.take(1).expect("name"),
            services: row.take(2).expect("services"),
            decky_config: row.take(3).expect("decky_config"),
            decky_ip: row.take(4).expect("decky_ip"),
            state: row.take(5).expect("state"),
            last_error: row.take(6).expect("last_error"),
            compose_hash: row.take(7).expect("compose_hash"),
            last_seen: row.take(8).expect("last_seen"),
            updated_at: row.take(9).expect("updated_at"),
        })
        .collect()
}

/// A full decky as DECNET writes it, with SPEC §9's example values.
pub fn decky(name: &str, services: &[&str]) -> Value {
    json!({
        "name": name,
        "ip": "10.0.0.3",
        "services": services,
        "distro": "debian",
        "base_image": "debian:bookworm-slim",
        "build_base": "debian:bookworm-slim",
        "hostname": "host-001",
        "archetype": null,
        "service_config": {},
        "nmap_os": "linux",
        "mutate_interval": null,
        "last_mutated": 0.0,
        "last_login_attempt": 0.0,
        "host_uuid": null
    })
}

/// A state file holding `deckies`, as DECNET writes it (indent 2, ASCII, no newline).
pub fn state_file_text(deckies: &[Value]) -> String {
    let document = json!({
        "config": {
            "mode": "unihost",
            "interface": "eth0",
            "subnet": "10.0.0.0/16",
            "gateway": "10.0.0.1",
            "deckies": deckies,
            "log_file": null,
            "ipvlan": false,
            "mutate_interval": 30
        },
        "compose_path": "/var/lib/decnet/docker-compose.yml"
    });
    serde_json::to_string_pretty(&document).expect("json")
}

/// Runs `docker` and fails the test loudly if it does not succeed.
pub fn docker(args: &[&str]) {
    let output = Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI is required (scripts/services installs it)");
    assert!(
        output.status.success(),
        "docker {args:?} failed (is dockerd running? scripts/services starts it): {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A stored row, every column, as raw values.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub host_uuid: String,
    pub name: String,
    pub services: String,
    pub decky_config: Option<String>,
    pub decky_ip: Option<String>,
    pub state: String,
    pub last_error: Option<String>,
    pub compose_hash: Option<String>,
    pub last_seen: Option<String>,
    pub updated_at: String,
}

pub fn rows_of(db: &Path) -> Vec<Row> {
    let conn = Connection::open(db).expect("open DB");
    let mut statement = conn
        .prepare("SELECT * FROM fleet_deckies ORDER BY host_uuid, name")
        .expect("select");
    statement
        .query_map([], |row| {
            Ok(Row {
                host_uuid: row.get(0)?,
                name: row.get(1)?,
                services: row.get(2)?,
                decky_config: row.get(3)?,
                decky_ip: row.get(4)?,
                state: row.get(5)?,
                last_error: row.get(6)?,
                compose_hash: row.get(7)?,
                last_seen: row.get(8)?,
                updated_at: row.get(9)?,
            })
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

/// A finished run of the binary.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    pub fn of(command: &mut Command) -> Run {
        let started = Instant::now();
        let Output {
            status,
            stdout,
            stderr,
        } = command.output().expect("run decnet-reconcile");
        let run = Run {
            code: status
                .code()
                .unwrap_or_else(|| panic!("killed by a signal: {status}")),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            elapsed: started.elapsed(),
        };
        assert!(
            !run.stderr.contains("panicked"),
            "the binary panicked: {}",
            run.stderr
        );
        run
    }

    /// Asserts the exit code, showing the run when it differs.
    pub fn expect_code(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "exit code; stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|err| panic!("stdout is not JSON ({err}): {}", self.stdout))
    }
}

/// Listens on `decky.*` for the messages of one host, from a thread of its own.
pub struct Subscriber {
    messages: mpsc::Receiver<Received>,
}

pub struct Received {
    pub channel: String,
    pub message: Value,
}

impl Subscriber {
    pub fn new(host: &str) -> Self {
        let client = redis::Client::open(REDIS_URL).expect("redis URL");
        let mut connection = client
            .get_connection()
            .expect("Redis is required on 127.0.0.1:6379 (scripts/services starts it)");
        // Raw PSUBSCRIBE: redis-rs's PubSub guard unsubscribes when dropped.
        connection
            .send_packed_command(&redis::cmd("PSUBSCRIBE").arg("decky.*").get_packed_command())
            .expect("psubscribe");
        connection.recv_response().expect("psubscribe confirmed");
        let (sender, messages) = mpsc::channel();
        let host = host.to_owned();
        std::thread::spawn(move || {
            while let Ok(reply) = connection.recv_response() {
                let message = redis::Msg::from_value(&reply).expect("a pmessage");
                let payload: String = message.get_payload().expect("payload");
                let value: Value = serde_json::from_str(&payload).expect("message is JSON");
                if value["payload"]["host_uuid"] == host.as_str() {
                    let received = Received {
                        channel: message.get_channel_name().to_owned(),
                        message: value,
                    };
                    if sender.send(received).is_err() {
                        break;
                    }
                }
            }
        });
        Subscriber { messages }
    }

    /// Every message for this host that arrives until a short quiet period.
    pub fn drain(&mut self) -> Vec<Received> {
        std::iter::from_fn(|| self.messages.recv_timeout(Duration::from_millis(400)).ok()).collect()
    }
}

/// A Unix socket that accepts connections and never answers: a hung daemon.
pub fn hanging_socket(path: &Path) -> PathBuf {
    let listener = UnixListener::bind(path).expect("bind hanging socket");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    path.to_owned()
}

/// A TCP listener on loopback that accepts and never answers.
pub fn hanging_tcp() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    port
}

/// A loopback TCP port with nothing listening on it.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// A count for the reliability proofs: `var` from the environment, else `default`.
/// The default run keeps it small; `scripts/reliability` sets it large.
pub fn reliability_count(var: &str, default: usize) -> usize {
    match std::env::var(var) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{var}={text:?} is not a count")),
        Err(_) => default,
    }
}

/// Prints one figure of the reliability report; `scripts/reliability` collects
/// these lines (run with `--nocapture`).
pub fn figure(name: &str, value: impl std::fmt::Display) {
    println!("reliability: {name}={value}");
}

/// A Unix socket file whose listener is gone: connecting is refused, as with a
/// Docker daemon that died without removing its socket.
pub fn stale_socket(path: &Path) -> PathBuf {
    drop(UnixListener::bind(path).expect("bind socket"));
    assert!(path.exists(), "the socket file stays behind");
    path.to_owned()
}

/// Every event published for one host, received on a connection of its own with
/// a raw `PSUBSCRIBE` (redis-rs's PubSub guard unsubscribes when dropped).
pub struct EventLog {
    messages: std::sync::mpsc::Receiver<(String, Value)>,
}

impl EventLog {
    pub fn subscribe(host: &str) -> Self {
        Self::subscribe_to(&[format!("decky.{host}:*")])
    }

    /// Every message on any of `patterns`, in the order Redis delivered them.
    pub fn subscribe_to(patterns: &[String]) -> Self {
        let client = redis::Client::open(REDIS_URL).expect("redis URL");
        let mut connection = client
            .get_connection()
            .expect("Redis is required on 127.0.0.1:6379 (scripts/services starts it)");
        connection
            .send_packed_command(&redis::cmd("PSUBSCRIBE").arg(patterns).get_packed_command())
            .expect("psubscribe");
        for _ in patterns {
            connection.recv_response().expect("psubscribe confirmed");
        }
        let (sender, messages) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            while let Ok(reply) = connection.recv_response() {
                let Some(message) = redis::Msg::from_value(&reply) else {
                    continue;
                };
                let payload: String = message.get_payload().expect("payload");
                let value: Value = serde_json::from_str(&payload).expect("message is JSON");
                if sender
                    .send((message.get_channel_name().to_owned(), value))
                    .is_err()
                {
                    break;
                }
            }
        });
        EventLog { messages }
    }

    /// The next message, if one comes within `wait`.
    pub fn next_within(&self, wait: Duration) -> Option<(String, Value)> {
        self.messages.recv_timeout(wait).ok()
    }

    /// The messages received so far and until `expected` have come (or 10 s
    /// passed), then until half a second goes by without another.
    pub fn collect(&self, expected: usize) -> Vec<(String, Value)> {
        let mut received = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while received.len() < expected && Instant::now() < deadline {
            if let Ok(message) = self.messages.recv_timeout(Duration::from_millis(100)) {
                received.push(message);
            }
        }
        while let Ok(message) = self.messages.recv_timeout(Duration::from_millis(500)) {
            received.push(message);
        }
        received
    }
}
