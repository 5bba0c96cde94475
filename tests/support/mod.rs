//! The fixture the integration tests share: a temp dir with a state file and a
//! SQLite DB, real containers on the test dockerd under names unique to the
//! test, and the built binary to run against them. Services are required:
//! a missing dockerd or Redis fails the test loudly (`scripts/services` starts them).

#![allow(dead_code)] // each test binary uses its own part of the fixture

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use serde_json::{json, Value};
use tempfile::TempDir;

pub const TEST_IMAGE: &str = "decnet-test-busybox:latest";
pub const DOCKER_SOCKET: &str = "unix:///var/run/docker.sock";
pub const REDIS_URL: &str = "redis://127.0.0.1:6379/0";

/// The environment variables the binary reads; cleared so the caller's shell cannot leak in.
const TOOL_ENV: [&str; 6] = [
    "DECNET_STATE_FILE",
    "DECNET_DB_PATH",
    "DECNET_HOST_UUID",
    "DOCKER_HOST",
    "DECNET_REDIS_URL",
    "NO_COLOR",
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
    pub db: PathBuf,
    pub host: String,
    /// Prefix of every decky and container name this test makes.
    pub prefix: String,
    containers: Vec<String>,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl TestEnv {
    pub fn new(test: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let serial = COUNTER.fetch_add(1, Ordering::Relaxed);
        let prefix = format!(
            "t{}-{serial}-{}",
            std::process::id(),
            test.replace('_', "-")
        );
        TestEnv {
            state_file: dir.path().join("decnet-state.json"),
            db: dir.path().join("decnet.db"),
            host: "local".to_owned(),
            prefix,
            dir,
            containers: Vec::new(),
        }
    }

    /// A decky name unique to this test.
    pub fn name(&self, short: &str) -> String {
        format!("{}-{short}", self.prefix)
    }

    /// A full decky as DECNET writes it, with SPEC §9's example values.
    pub fn decky(&self, name: &str, services: &[&str]) -> Value {
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

    /// Writes a state file holding `deckies`, as DECNET does (indent 2, ASCII, no newline).
    pub fn write_state(&self, deckies: &[Value]) {
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
        let text = serde_json::to_string_pretty(&document).expect("json");
        std::fs::write(&self.state_file, text).expect("write state file");
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

    fn base_command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_decnet-reconcile"));
        for var in TOOL_ENV {
            command.env_remove(var);
        }
        command
            .arg("--state-file")
            .arg(&self.state_file)
            .arg("--db")
            .arg(&self.db)
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
        rows_of(&self.db)
    }

    /// The row of `name` for this env's host.
    pub fn row(&self, name: &str) -> Row {
        self.rows()
            .into_iter()
            .find(|row| row.name == name && row.host_uuid == self.host)
            .unwrap_or_else(|| panic!("no row for {name:?}"))
    }

    /// Opens the DB directly, as another DECNET process would.
    pub fn connect(&self) -> Connection {
        Connection::open(&self.db).expect("open test DB")
    }

    /// Inserts a row as DECNET would, for seeding.
    pub fn seed_row(&self, host: &str, name: &str, state: &str) {
        let conn = self.connect();
        conn.execute(SCHEMA_IF_ABSENT, []).expect("schema");
        conn.execute(
            "INSERT INTO fleet_deckies VALUES (?1, ?2, '[\"ssh\"]', NULL, '10.0.0.9', ?3, NULL, NULL, NULL, \
             '2026-01-01 00:00:00.000000')",
            (host, name, state),
        )
        .expect("seed row");
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
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
