//! The tool against DECNET itself (issue 10): DECNET 1.0.0's own bus server,
//! subscriber (`UnixSocketBus`), `WorkerRegistry` and SQLite repository, run
//! from the virtualenv `scripts/services` installs (`tests/decnet/driver.py`
//! drives them); no fake in between. Faults that the real server cannot
//! produce on demand (a socket that accepts and never reads) stand beside it.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{closed_port, figure, hanging_socket, stale_socket, Container, Run, TestEnv};

/// Where `scripts/services` installs DECNET: `DECNET_TEST_VENV`, by default
/// under its state directory. Missing is a failure, never a skip.
fn decnet_python() -> PathBuf {
    let venv = std::env::var_os("DECNET_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let state = std::env::var_os("DECNET_TEST_STATE_DIR")
                .map_or_else(|| "/var/tmp/decnet-reconcile-test".into(), PathBuf::from);
            state.join("decnet-venv")
        });
    let python = venv.join("bin/python");
    assert!(
        python.is_file(),
        "DECNET's virtualenv is missing at {}: run scripts/services, which installs decnet==1.0.0 there",
        venv.display()
    );
    python
}

/// A command running DECNET's code: the placeholders it needs before import,
/// and none of the test machine's bus or DB settings.
fn decnet(program: &Path) -> Command {
    let mut command = Command::new(program);
    command
        .env(
            "DECNET_JWT_SECRET",
            "test-only-placeholder-secret-0123456789",
        )
        .env("DECNET_ADMIN_PASSWORD", "test-only-placeholder")
        .env("DECNET_SYSTEM_LOGS", "/dev/null");
    for var in [
        "DECNET_BUS_TYPE",
        "DECNET_BUS_SOCKET",
        "DECNET_BUS_ENABLED",
        "DECNET_DB_TYPE",
    ] {
        command.env_remove(var);
    }
    command
}

fn driver() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/decnet/driver.py")
}

/// DECNET's bus server with DECNET's subscriber and worker registry on it,
/// in one python process (`driver.py hub`).
struct Hub {
    child: Child,
    stdin: Option<ChildStdin>,
    events: mpsc::Receiver<(String, Value)>,
    replies: mpsc::Receiver<Value>,
    socket: PathBuf,
}

impl Hub {
    fn start(dir: &Path) -> Hub {
        let socket = dir.join("bus.sock");
        let started = Instant::now();
        let mut child = decnet(&decnet_python())
            .arg(driver())
            .arg("hub")
            .arg(&socket)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start DECNET's bus and subscriber");
        let stdout = child.stdout.take().expect("stdout");
        let (ready_tx, ready) = mpsc::channel();
        let (event_tx, events) = mpsc::channel();
        let (reply_tx, replies) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|err| panic!("driver printed {line:?}: {err}"));
                let sent = if value.get("ready").is_some() {
                    ready_tx.send(()).is_ok()
                } else if let Some(pattern) = value["pattern"].as_str() {
                    event_tx
                        .send((pattern.to_owned(), value["event"].clone()))
                        .is_ok()
                } else {
                    reply_tx.send(value).is_ok()
                };
                if !sent {
                    break;
                }
            }
        });
        let mut hub = Hub {
            stdin: child.stdin.take(),
            child,
            events,
            replies,
            socket,
        };
        if ready.recv_timeout(Duration::from_secs(40)).is_err() {
            let status = hub.child.try_wait();
            panic!("DECNET's bus and subscriber were not ready within 40 s ({status:?})");
        }
        figure("decnet_hub_start_ms", started.elapsed().as_millis());
        hub
    }

    fn url(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Events received until `expected` have come (or 15 s passed), then until
    /// half a second goes by without another: `(subscription pattern, Event)`.
    fn collect(&self, expected: usize) -> Vec<(String, Value)> {
        let mut received = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(15);
        while received.len() < expected && Instant::now() < deadline {
            if let Ok(event) = self.events.recv_timeout(Duration::from_millis(100)) {
                received.push(event);
            }
        }
        while let Ok(event) = self.events.recv_timeout(Duration::from_millis(500)) {
            received.push(event);
        }
        received
    }

    /// The events that came on one subscription, in the order they came.
    fn on(received: &[(String, Value)], pattern: &str) -> Vec<Value> {
        received
            .iter()
            .filter(|(p, _)| p == pattern)
            .map(|(_, event)| event.clone())
            .collect()
    }

    /// The reconciler's row of DECNET's Workers panel (`WorkerStatus`).
    fn reconciler(&mut self) -> Value {
        let stdin = self.stdin.as_mut().expect("stdin");
        stdin.write_all(b"snapshot\n").expect("ask for a snapshot");
        stdin.flush().expect("flush");
        let reply = self
            .replies
            .recv_timeout(Duration::from_secs(10))
            .expect("a snapshot within 10 s");
        reply["reconciler"].clone()
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One pass publishing on `bus`, with extra arguments.
fn pass_on(env: &TestEnv, bus: &str, args: &[&str]) -> Run {
    Run::of(
        env.command_choosing_the_bus_by_environment()
            .args(["--bus", bus, "--bus-timeout", "5"])
            .args(args),
    )
}

/// Checks a DECNET `Event` as its subscriber rebuilt it: the channel, type and
/// envelope of SPEC §6. Returns its payload.
fn assert_decnet_event(event: &Value, host: &str, name: &str) -> Value {
    let topic = format!("decky.{host}:{name}.state");
    assert_eq!(event["topic"], topic.as_str(), "{event}");
    assert_eq!(event["type"], "state");
    assert_eq!(event["v"], 1);
    let id = event["id"].as_str().expect("id");
    assert!(
        id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()),
        "{id}"
    );
    assert!(event["ts"].is_f64(), "{event}");
    event["payload"].clone()
}

/// The events of one subscription, sorted by decky name, as (name, payload).
fn by_name(events: &[Value], host: &str) -> Vec<(String, Value)> {
    let mut named: Vec<(String, Value)> = events
        .iter()
        .map(|event| {
            let name = event["payload"]["name"]
                .as_str()
                .expect("payload name")
                .to_owned();
            let payload = assert_decnet_event(event, host, &name);
            (name, payload)
        })
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
}

/// Every change of a pass reaches DECNET's subscriber exactly once, on
/// `decky.*.state` and `decky.>` alike, and `decky.*` hears nothing.
fn assert_heard_once(hub: &Hub, host: &str, expected: &[(String, Value)]) {
    let received = hub.collect(expected.len() * 2);
    for pattern in ["decky.*.state", "decky.>"] {
        let heard = by_name(&Hub::on(&received, pattern), host);
        assert_eq!(heard, expected, "on {pattern}");
    }
    assert!(
        Hub::on(&received, "decky.*").is_empty(),
        "decky.* matches one token only: {received:?}"
    );
    assert!(Hub::on(&received, "system.reconciler.health").is_empty());
}

#[test]
fn decnets_subscriber_hears_every_change_once_as_on_redis() {
    let mut env = TestEnv::new("db-cycle");
    let hub = Hub::start(env.dir.path());
    let (a, b, c) = (env.name("a"), env.name("b"), env.name("c"));
    env.container(&format!("{a}-ssh"), Container::Running);
    env.write_state(&[env.decky(&a, &["ssh"]), env.decky(&b, &["ssh"])]);
    let host = env.host.clone();
    let payload = |name: &str, state: &str, transition: &str| {
        json!({"host_uuid": host, "name": name, "state": state,
               "transition": transition, "source": "fleet"})
    };

    let run = pass_on(&env, &hub.url(), &["--output", "json"]).expect_code(0);
    assert_eq!(run.json()["published"], 2, "{}", run.stderr);
    assert_eq!(run.json()["publish_failed"], 0);
    assert_heard_once(
        &hub,
        &host,
        &[
            (a.clone(), payload(&a, "running", "inserted")),
            (b.clone(), payload(&b, "torn_down", "inserted")),
        ],
    );

    env.stop_container(&format!("{a}-ssh"));
    env.execute(&format!(
        "UPDATE fleet_deckies SET decky_ip = '192.0.2.1' WHERE name = '{b}'"
    ));
    pass_on(&env, &hub.url(), &[]).expect_code(0);
    let mut state_changed = payload(&a, "failed", "state_changed");
    state_changed["previous_state"] = json!("running");
    assert_heard_once(
        &hub,
        &host,
        &[
            (a.clone(), state_changed),
            (b.clone(), payload(&b, "torn_down", "config_changed")),
        ],
    );

    env.write_state(&[env.decky(&a, &["ssh"]), env.decky(&c, &["ftp"])]);
    pass_on(&env, &hub.url(), &[]).expect_code(0);
    assert_heard_once(
        &hub,
        &host,
        &[
            (b.clone(), payload(&b, "torn_down", "deleted")),
            (c.clone(), payload(&c, "torn_down", "inserted")),
        ],
    );

    pass_on(&env, &hub.url(), &[]).expect_code(0);
    assert!(
        hub.collect(0).is_empty(),
        "a converged pass announces nothing"
    );
}

#[test]
fn the_heartbeat_makes_decnets_worker_registry_report_the_reconciler_ok() {
    let mut env = TestEnv::new("db-heartbeat");
    let mut hub = Hub::start(env.dir.path());
    let before = hub.reconciler();
    assert_eq!(before["status"], "stale", "the driver's own old heartbeat");
    let name = env.name("d");
    env.container(&format!("{name}-ssh"), Container::Running);
    env.write_state(&[env.decky(&name, &["ssh"])]);

    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let run = pass_on(&env, &hub.url(), &["--heartbeat", "--output", "json"]).expect_code(0);
    let report = run.json();
    assert_eq!(report["heartbeat"], "sent", "{}", run.stderr);
    assert_eq!(
        report["published"], 1,
        "the heartbeat is not a change event"
    );
    let received = hub.collect(4);
    // `>` is one subscription, so it shows the order the events came in.
    let everything = Hub::on(&received, ">");
    let topics: Vec<&str> = everything
        .iter()
        .map(|e| e["topic"].as_str().expect("topic"))
        .collect();
    assert_eq!(
        topics,
        [
            format!("decky.{}:{name}.state", env.host).as_str(),
            "system.reconciler.health"
        ],
        "the heartbeat comes after the change events"
    );
    let heartbeat = &Hub::on(&received, "system.reconciler.health")[0];
    assert_eq!(heartbeat["type"], "health");
    let ts = heartbeat["payload"]["ts"].as_f64().expect("ts is a float");
    assert!(heartbeat["payload"]["ts"].is_f64());
    assert!(ts >= started - 1.0, "ts {ts} is not this pass's");

    let status = hub.reconciler();
    assert_eq!(status["status"], "ok", "{status}");
    assert_eq!(status["last_heartbeat_ts"].as_f64(), Some(ts));
    let extra = &status["extra"];
    assert!(
        extra["duration_ms"].is_u64(),
        "duration_ms is a whole number: {extra}"
    );
    assert_eq!(
        extra,
        &json!({"host_uuid": env.host, "inserted": 1, "deleted": 0, "updated": 0,
                "docker": "ok", "duration_ms": extra["duration_ms"]})
    );

    // A converged pass still beats, here switched on by DECNET_RECONCILE_HEARTBEAT=1.
    let run = Run::of(
        env.command_choosing_the_bus_by_environment()
            .env("DECNET_RECONCILE_HEARTBEAT", "1")
            .args(["--bus", &hub.url(), "--output", "json"]),
    )
    .expect_code(0);
    assert_eq!(run.json()["heartbeat"], "sent");
    let received = hub.collect(2);
    assert_eq!(Hub::on(&received, ">").len(), 1, "{received:?}");
    let status = hub.reconciler();
    assert_eq!(status["status"], "ok");
    assert_eq!(status["extra"]["inserted"], 0);
    assert!(status["last_heartbeat_ts"].as_f64() > Some(ts));

    // Neither a dry run nor a pass without --heartbeat sends one.
    pass_on(&env, &hub.url(), &["--heartbeat", "--dry-run"]).expect_code(0);
    let run = pass_on(&env, &hub.url(), &["--output", "json"]).expect_code(0);
    assert_eq!(run.json()["heartbeat"], Value::Null);
    assert!(hub.collect(0).is_empty());
}

#[test]
fn events_the_bus_cannot_carry_are_lost_alone_and_the_rest_arrive() {
    let env = TestEnv::new("db-frames");
    let hub = Hub::start(env.dir.path());
    // A channel over DECNET's 4096-byte header, one that is not ASCII, one fine.
    let long = env.name(&"x".repeat(4200));
    let accented = env.name("dé");
    let fine = env.name("fine");
    env.write_state(&[
        env.decky(&long, &["ssh"]),
        env.decky(&accented, &["ssh"]),
        env.decky(&fine, &["ssh"]),
    ]);
    let run = pass_on(&env, &hub.url(), &["--heartbeat", "--output", "json"]).expect_code(0);
    let report = run.json();
    assert_eq!(env.rows().len(), 3, "every row is written");
    assert_eq!(report["published"], 1, "{}", run.stderr);
    assert_eq!(report["publish_failed"], 1, "the over-size event is lost");
    assert_eq!(report["heartbeat"], "sent", "later events are not poisoned");
    assert!(
        run.stderr.contains("over the size limits of DECNET's bus"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!("{accented:?}"))
            && run.stderr.contains("not announced")
            && run.stderr.contains("printable ASCII"),
        "{}",
        run.stderr
    );
    let received = hub.collect(2);
    let everything = Hub::on(&received, ">");
    assert_eq!(everything.len(), 2, "{received:?}");
    assert_eq!(everything[0]["payload"]["name"], fine.as_str());
    assert_eq!(everything[1]["topic"], "system.reconciler.health");

    let table = pass_on(&env, &hub.url(), &[]).expect_code(0);
    assert_eq!(table.stdout, "inserted=0 deleted=0 updated=0\n");
}

/// The tool's rows as DECNET's own repository returns them
/// (`get_repository(db_path=…).list_fleet_deckies()`), each `decky_config`
/// loaded into DECNET's `DeckyConfig`.
fn decnet_reads(db: &Path) -> Vec<Value> {
    let output = decnet(&decnet_python())
        .arg(driver())
        .arg("read-db")
        .arg(db)
        .output()
        .expect("run DECNET's repository");
    assert!(
        output.status.success(),
        "DECNET could not read the tool's rows: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the driver prints JSON")
}

/// A stored datetime, SQLite text or DECNET's ISO rendering of it (which
/// marks it UTC with a `Z`), as one value.
fn datetime(text: &str) -> chrono::NaiveDateTime {
    let text = text.strip_suffix('Z').unwrap_or(text);
    chrono::NaiveDateTime::parse_from_str(&text.replace('T', " "), "%Y-%m-%d %H:%M:%S%.f")
        .unwrap_or_else(|err| panic!("{text:?} is not a datetime: {err}"))
}

#[test]
fn decnets_repository_reads_back_every_row_with_the_values_written() {
    let mut env = TestEnv::new("db-repo");
    let (plain, rich, gone) = (env.name("plain"), env.name("rich"), env.name("gone"));
    env.container(&format!("{plain}-ssh"), Container::Running);
    let mut rich_decky = env.decky(&rich, &["smtp_relay", "ftp"]);
    rich_decky["archetype"] = json!("mail-server");
    rich_decky["service_config"] = json!({"ftp": {"banner": "ProFTPD 1.3.5 – ünïcode"}});
    rich_decky["mutate_interval"] = json!(30);
    rich_decky["last_mutated"] = json!(5);
    rich_decky["future_field"] = json!({"kept": true});
    env.write_state(&[
        env.decky(&plain, &["ssh"]),
        rich_decky,
        env.decky(&gone, &["ssh"]),
    ]);
    env.run(&[]).expect_code(0);
    // A state update (last_seen set) and a deletion.
    env.stop_container(&format!("{plain}-ssh"));
    env.write_state(&[
        env.decky(&plain, &["ssh"]),
        env.decky(&rich, &["smtp_relay", "ftp"]),
    ]);
    env.run(&[]).expect_code(0);

    let stored = env.rows();
    let read = decnet_reads(&env.db);
    assert_eq!(read.len(), stored.len(), "{read:?}");
    assert_eq!(stored.len(), 2);
    for row in &stored {
        let decnet = read
            .iter()
            .find(|r| r["name"] == row.name.as_str())
            .unwrap_or_else(|| panic!("DECNET does not list {}", row.name));
        assert_eq!(decnet["host_uuid"], row.host_uuid.as_str());
        let services: Value = serde_json::from_str(&row.services).expect("services");
        assert_eq!(decnet["services"], services);
        let config: Value =
            serde_json::from_str(row.decky_config.as_deref().expect("config")).expect("JSON");
        assert_eq!(decnet["decky_config"], config);
        assert_eq!(decnet["decky_ip"].as_str(), row.decky_ip.as_deref());
        assert_eq!(decnet["state"], row.state.as_str());
        assert_eq!(decnet["last_error"], Value::Null);
        assert_eq!(decnet["compose_hash"], Value::Null);
        assert_eq!(
            datetime(decnet["updated_at"].as_str().expect("updated_at")),
            datetime(&row.updated_at)
        );
        assert_eq!(
            decnet["last_seen"].as_str().map(datetime),
            row.last_seen.as_deref().map(datetime)
        );
    }
    let plain_row = read
        .iter()
        .find(|r| r["name"] == plain.as_str())
        .expect("plain");
    assert_eq!(plain_row["state"], "failed");
    assert!(
        plain_row["last_seen"].is_string(),
        "a state update sets last_seen"
    );
}

/// DECNET's own `decnet bus` CLI on a socket of its own.
struct DecnetBus {
    child: Child,
    socket: PathBuf,
}

impl DecnetBus {
    fn start(dir: &Path) -> DecnetBus {
        let socket = dir.join("bus.sock");
        let python = decnet_python();
        let cli = python.with_file_name("decnet");
        let child = decnet(&cli)
            .args(["bus", "--socket"])
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start decnet bus");
        let bus = DecnetBus { child, socket };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(&bus.socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "decnet bus did not listen within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        bus
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal}");
    }
}

impl Drop for DecnetBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_bus_killed_mid_pass_loses_the_events_not_the_pass() {
    let env = TestEnv::new("db-killed");
    let mut bus = DecnetBus::start(env.dir.path());
    env.write_state(&[
        env.decky(&env.name("a"), &["ssh"]),
        env.decky(&env.name("b"), &["ssh"]),
    ]);
    // Stopped, the server still accepts connections (the kernel queues them)
    // but reads nothing: the pass's frames wait in the socket when it is killed.
    bus.signal("STOP");
    let mut tool = env
        .command_choosing_the_bus_by_environment()
        .args(["-v", "--output", "json", "--bus-timeout", "20", "--bus"])
        .arg(format!("unix://{}", bus.socket.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a pass");
    let stderr = tool.stderr.take().expect("stderr");
    let (line_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !seen
        .iter()
        .any(|l: &String| l.contains("waiting for the bus to close"))
    {
        assert!(
            Instant::now() < deadline,
            "the pass never wrote its events: {seen:?}"
        );
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(100)) {
            seen.push(line);
        }
    }
    let killed_at = Instant::now();
    bus.signal("KILL");
    let _ = bus.child.wait();
    let output = tool.wait_with_output().expect("the pass ends");
    figure(
        "decnet_bus_killed_to_pass_end_ms",
        killed_at.elapsed().as_millis(),
    );
    assert_eq!(output.status.code(), Some(0), "{seen:?}");
    // The reader thread ends at the pass's end of stderr; wait for its last lines.
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Ok(line) = lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        seen.push(line);
    }
    let stderr = seen.join("\n");
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(report["publish_failed"], 2, "{stderr}");
    assert_eq!(report["published"], 0);
    assert!(
        stderr.contains("2 event(s) lost") && stderr.contains("broke before the bus had read"),
        "{stderr}"
    );
    assert_eq!(env.rows().len(), 2, "the DB converged all the same");
}

/// A bus that cannot take the events: exit 0, the rows written, a warning with the count.
fn assert_events_lost(test: &str, bus: impl FnOnce(&Path) -> String, reason: &str) {
    let env = TestEnv::new(test);
    let url = bus(env.dir.path());
    env.write_state(&[
        env.decky(&env.name("a"), &["ssh"]),
        env.decky(&env.name("b"), &["ssh"]),
    ]);
    let run = Run::of(
        env.command_choosing_the_bus_by_environment()
            .args(["--bus", &url, "--bus-timeout", "1", "--heartbeat"])
            .args(["--output", "json"]),
    )
    .expect_code(0);
    figure(&format!("{test}_pass_ms"), run.elapsed.as_millis());
    assert_eq!(env.rows().len(), 2, "the DB converged all the same");
    let report = run.json();
    assert_eq!(report["publish_failed"], 2, "{}", run.stderr);
    assert_eq!(report["published"], 0);
    assert_eq!(report["heartbeat"], "lost");
    assert!(
        run.stderr
            .contains("2 event(s) and the heartbeat lost; the database is converged"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains(reason), "{}", run.stderr);
    let table = Run::of(env.command_choosing_the_bus_by_environment().args([
        "--bus",
        &url,
        "--bus-timeout",
        "1",
    ]))
    .expect_code(0);
    assert_eq!(table.stdout, "inserted=0 deleted=0 updated=0\n");
}

fn unix_url(path: &Path) -> String {
    format!("unix://{}", path.display())
}

#[test]
fn a_bus_that_accepts_and_never_reads_loses_the_events_within_the_timeout() {
    assert_events_lost(
        "db-hung",
        |dir| unix_url(&hanging_socket(&dir.join("hung.sock"))),
        "did not read every event and close the connection within 1s",
    );
}

#[test]
fn a_bus_path_that_is_not_a_socket_loses_the_events() {
    assert_events_lost(
        "db-file",
        |dir| {
            let file = dir.join("bus.sock");
            std::fs::write(&file, "not a socket").expect("write file");
            unix_url(&file)
        },
        "cannot connect: connection refused",
    );
}

#[test]
fn a_missing_bus_socket_loses_the_events() {
    assert_events_lost(
        "db-missing",
        |dir| unix_url(&dir.join("absent/bus.sock")),
        "cannot connect: no such socket",
    );
}

#[test]
fn a_bus_socket_left_by_a_dead_server_loses_the_events() {
    assert_events_lost(
        "db-stale",
        |dir| unix_url(&stale_socket(&dir.join("stale.sock"))),
        "cannot connect: connection refused",
    );
}

/// Lines 7, 8, 4 and 2 of the README's table, end to end: each pass reaches
/// DECNET's bus only if that line chose it.
#[test]
fn decnets_variables_and_ours_choose_decnets_bus_as_the_table_says() {
    let env = TestEnv::new("db-precedence");
    let hub = Hub::start(env.dir.path());
    let socket = hub.socket.display().to_string();
    let redis_closed = format!("redis://127.0.0.1:{}/0", closed_port());
    let mut deckies = Vec::new();
    let mut pass = |short: &str, command: &mut Command| {
        let name = env.name(short);
        deckies.push(env.decky(&name, &["ssh"]));
        env.write_state(&deckies);
        let run = Run::of(command.args(["--output", "json"])).expect_code(0);
        assert_eq!(run.json()["published"], 1, "{short}: {}", run.stderr);
        let received = hub.collect(2);
        let heard = Hub::on(&received, "decky.*.state");
        assert_eq!(heard.len(), 1, "{short}: {received:?}");
        assert_eq!(heard[0]["payload"]["name"], name.as_str(), "{short}");
    };
    pass(
        "type-unix",
        env.command_choosing_the_bus_by_environment()
            .env("DECNET_BUS_TYPE", "unix")
            .env("DECNET_BUS_SOCKET", &socket),
    );
    pass(
        "socket-alone",
        env.command_choosing_the_bus_by_environment()
            .env("DECNET_BUS_SOCKET", &socket),
    );
    pass(
        "bus-url-env",
        env.command_choosing_the_bus_by_environment()
            .env("DECNET_BUS_URL", format!("unix:{socket}"))
            .env("DECNET_REDIS_URL", &redis_closed)
            .env("DECNET_BUS_TYPE", "fake"),
    );
    pass(
        "typed-after-once",
        env.command_choosing_the_bus_by_environment()
            .env("DECNET_BUS_URL", &redis_closed)
            .args(["once", "--bus", &hub.url()]),
    );
}

/// The lines that choose something else than DECNET's bus, seen in the
/// warning that names the bus that failed (or in the absence of any).
#[test]
fn the_other_lines_of_the_table_choose_as_it_says() {
    let env = TestEnv::new("db-lines");
    let missing = env.dir.path().join("missing.sock");
    let missing_url = unix_url(&missing);
    let redis_port = closed_port();
    let redis_closed = format!("redis://127.0.0.1:{redis_port}/0");
    let mut deckies = Vec::new();
    let mut pass = |short: &str, command: &mut Command| -> Run {
        deckies.push(env.decky(&env.name(short), &["ssh"]));
        env.write_state(&deckies);
        Run::of(command.args(["--output", "json", "--bus-timeout", "1"])).expect_code(0)
    };
    let redis_failed = format!("Redis at {redis_closed} failed");

    // Line 1: --no-publish outranks a typed --bus.
    let run = pass(
        "no-publish",
        env.command_choosing_the_bus_by_environment().args([
            "--no-publish",
            "--heartbeat",
            "--bus",
            &missing_url,
        ]),
    );
    assert_eq!(run.stderr, "", "nothing is published, nothing is lost");
    assert_eq!(run.json()["heartbeat"], Value::Null);

    // Line 3: a typed --redis-url outranks DECNET_BUS_URL.
    let run = pass(
        "typed-redis",
        env.command_choosing_the_bus_by_environment()
            .env("DECNET_BUS_URL", &missing_url)
            .args(["--redis-url", &redis_closed]),
    );
    assert!(run.stderr.contains(&redis_failed), "{}", run.stderr);

    // Line 5: DECNET_REDIS_URL outranks DECNET's bus variables.
    let run = pass(
        "redis-env",
        env.command_choosing_the_bus_by_environment()
            .env("DECNET_REDIS_URL", &redis_closed)
            .env("DECNET_BUS_TYPE", "unix")
            .env("DECNET_BUS_SOCKET", &missing),
    );
    assert!(run.stderr.contains(&redis_failed), "{}", run.stderr);

    // Lines 6 and 9: DECNET's bus turned off, or its in-process one, publish nothing.
    for (short, var, value) in [
        ("disabled", "DECNET_BUS_ENABLED", "false"),
        ("fake", "DECNET_BUS_TYPE", "fake"),
    ] {
        let run = pass(
            short,
            env.command_choosing_the_bus_by_environment()
                .env(var, value)
                .env("DECNET_BUS_SOCKET", &missing)
                .env("DECNET_RECONCILE_HEARTBEAT", "1"),
        );
        assert_eq!(run.stderr, "", "{short}");
        assert_eq!(run.json()["published"], 0, "{short}");
        assert_eq!(run.json()["heartbeat"], Value::Null, "{short}");
    }

    // Line 11: nothing set is the default Redis, the real one on 127.0.0.1:6379.
    let run = pass(
        "default",
        &mut env.command_choosing_the_bus_by_environment(),
    );
    assert_eq!(run.json()["published"], 1, "{}", run.stderr);
}

#[test]
fn a_bad_bus_is_a_usage_error_naming_where_it_came_from() {
    let env = TestEnv::new("db-bad");
    env.write_state(&[env.decky(&env.name("a"), &["ssh"])]);
    let typed = Run::of(env.command_choosing_the_bus_by_environment().args([
        "once",
        "--bus",
        "nats://:s3cret@127.0.0.1:4222",
    ]))
    .expect_code(1);
    assert!(
        typed.stderr.contains("--bus: ") && !typed.stderr.contains("s3cret"),
        "{}",
        typed.stderr
    );
    let from_env = Run::of(
        env.command_choosing_the_bus_by_environment()
            .env("DECNET_BUS_URL", "unix:relative/bus.sock"),
    )
    .expect_code(1);
    assert!(
        from_env.stderr.contains("DECNET_BUS_URL: "),
        "{}",
        from_env.stderr
    );
    let decnet_type = Run::of(
        env.command_choosing_the_bus_by_environment()
            .env("DECNET_BUS_TYPE", "nats"),
    )
    .expect_code(1);
    assert!(
        decnet_type.stderr.contains("DECNET_BUS_TYPE"),
        "{}",
        decnet_type.stderr
    );
    assert!(!env.table_exists(), "nothing was written");
}
