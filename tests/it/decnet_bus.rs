//! The tool against DECNET itself (issue 10): DECNET 1.0.0's own bus server,
//! subscriber (`UnixSocketBus`), `WorkerRegistry` and SQLite repository, run
//! from the virtualenv `scripts/services` installs (`tests/decnet/driver.py`
//! drives them); no fake in between. Faults that the real server cannot
//! produce on demand (a socket that accepts and never reads) stand beside it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::fixture::{
    assert_events_lost, closed_port, decky, decnet, decnet_python, driver, figure, finish,
    half_closing_socket, hanging_socket, line_matches, on, stale_socket, AfterHalfClose, Container,
    Env, Event, Hub, HEARTBEAT,
};

/// Checks a DECNET `Event` as its subscriber rebuilt it: the channel, type and
/// envelope of SPEC §6. Returns its payload.
#[track_caller]
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
fn by_name(events: &[&Event], host: &str) -> Vec<(String, Value)> {
    let mut named: Vec<(String, Value)> = events
        .iter()
        .map(|event| {
            let name = event.payload()["name"]
                .as_str()
                .expect("payload name")
                .to_owned();
            let payload = assert_decnet_event(&event.message, host, &name);
            (name, payload)
        })
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
}

/// Every change of a pass reached DECNET's subscriber exactly once, on
/// `decky.*.state` and `decky.>` alike, and `decky.*` heard nothing.
#[track_caller]
fn assert_heard_once(events: &[Event], host: &str, expected: &[(String, Value)]) {
    for pattern in ["decky.*.state", "decky.>"] {
        let heard = by_name(&on(events, pattern), host);
        assert_eq!(heard, expected, "on {pattern}");
    }
    assert!(
        on(events, "decky.*").is_empty(),
        "decky.* matches one token only: {events:?}"
    );
}

#[test]
fn decnets_subscriber_hears_every_change_once_as_on_redis() {
    let env = Env::new();
    let hub = Hub::start(env.dir.path());
    let (a, b, c) = (env.name("a"), env.name("b"), env.name("c"));
    let host = env.host.clone();
    let payload = |name: &str, state: &str, transition: &str| {
        json!({"host_uuid": host, "name": name, "state": state,
               "transition": transition, "source": "fleet"})
    };

    let out = env
        .test()
        .containers(&[(&format!("{a}-ssh"), Container::Running)])
        .state(&[decky(&a, &["ssh"]), decky(&b, &["ssh"])])
        .decnet(&hub)
        .args(["--output", "json"])
        .events([(&a, "inserted"), (&b, "inserted")])
        .run();
    assert_eq!(out.json()["published"], 2);
    assert_eq!(out.json()["publish_failed"], 0);
    assert_heard_once(
        &out.events,
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
    let out = env
        .test()
        .decnet(&hub)
        .events([(&a, "state_changed"), (&b, "config_changed")])
        .run();
    let mut state_changed = payload(&a, "failed", "state_changed");
    state_changed["previous_state"] = json!("running");
    assert_heard_once(
        &out.events,
        &host,
        &[
            (a.clone(), state_changed),
            (b.clone(), payload(&b, "torn_down", "config_changed")),
        ],
    );

    let out = env
        .test()
        .state(&[decky(&a, &["ssh"]), decky(&c, &["ftp"])])
        .decnet(&hub)
        .events([(&b, "deleted"), (&c, "inserted")])
        .run();
    assert_heard_once(
        &out.events,
        &host,
        &[
            (b.clone(), payload(&b, "torn_down", "deleted")),
            (c.clone(), payload(&c, "torn_down", "inserted")),
        ],
    );

    // A converged pass announces nothing: the default expectation.
    env.test().decnet(&hub).run();
}

#[test]
fn the_heartbeat_makes_decnets_worker_registry_report_the_reconciler_ok() {
    let env = Env::new();
    let hub = Hub::start(env.dir.path());
    let before = hub.reconciler();
    assert_eq!(before["status"], "stale", "the driver's own old heartbeat");
    let name = env.name("d");

    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let out = env
        .test()
        .containers(&[(&format!("{name}-ssh"), Container::Running)])
        .state(&[decky(&name, &["ssh"])])
        .decnet(&hub)
        .args(["--heartbeat", "--output", "json"])
        .events([(&name, "inserted")])
        .heartbeat()
        .run();
    let report = out.json();
    assert_eq!(report["heartbeat"], "sent");
    assert_eq!(
        report["published"], 1,
        "the heartbeat is not a change event"
    );
    // `>` is one subscription, so it shows the order the events came in.
    let everything = on(&out.events, ">");
    let topics: Vec<&str> = everything.iter().map(|e| e.channel.as_str()).collect();
    assert_eq!(
        topics,
        [
            format!("decky.{}:{name}.state", env.host).as_str(),
            HEARTBEAT
        ],
        "the heartbeat comes after the change events"
    );
    let heartbeat = &everything[1].message;
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
    let out = env
        .test()
        .decnet(&hub)
        .env_var("DECNET_RECONCILE_HEARTBEAT", "1")
        .args(["--output", "json"])
        .heartbeat()
        .run();
    assert_eq!(out.json()["heartbeat"], "sent");
    let status = hub.reconciler();
    assert_eq!(status["status"], "ok");
    assert_eq!(status["extra"]["inserted"], 0);
    assert!(status["last_heartbeat_ts"].as_f64() > Some(ts));

    // Neither a dry run nor a pass without --heartbeat sends one.
    env.test()
        .decnet(&hub)
        .args(["--heartbeat", "--dry-run"])
        .run();
    let out = env.test().decnet(&hub).args(["--output", "json"]).run();
    assert_eq!(out.json()["heartbeat"], Value::Null);
}

#[test]
fn events_the_bus_cannot_carry_are_lost_alone_and_the_rest_arrive() {
    let env = Env::new();
    let hub = Hub::start(env.dir.path());
    // A channel over DECNET's 4096-byte header, one that is not ASCII, one fine.
    let long = env.name(&"x".repeat(4200));
    let accented = env.name("dé");
    let fine = env.name("fine");
    let socket = hub.socket.display();
    let out = env
        .test()
        .state(&[
            decky(&long, &["ssh"]),
            decky(&accented, &["ssh"]),
            decky(&fine, &["ssh"]),
        ])
        .decnet(&hub)
        .args(["--heartbeat", "--output", "json"])
        .events([(&fine, "inserted")])
        .heartbeat()
        .stderr_lines([
            format!(
                " WARN decky {accented:?} of host {:?} was written but not announced on \
                 DECNET's bus at {socket}: DECNET's bus carries only printable ASCII channel names",
                env.host
            ),
            format!(
                " WARN the event on decky.{}:{}… (… bytes) is over the size limits of \
                 DECNET's bus at {socket}: lost",
                env.host, env.prefix
            ),
        ])
        .run();
    let report = out.json();
    assert_eq!(env.rows().len(), 3, "every row is written");
    assert_eq!(report["published"], 1);
    assert_eq!(report["publish_failed"], 1, "the over-size event is lost");
    assert_eq!(report["heartbeat"], "sent", "later events are not poisoned");

    env.test()
        .decnet(&hub)
        .stdout("inserted=0 deleted=0 updated=0\n")
        .run();
}

/// The tool's rows as DECNET's own repository returns them
/// (`get_repository(db_path=…).list_fleet_deckies()`), each `decky_config`
/// loaded into DECNET's `DeckyConfig`.
fn decnet_reads(db: &Path) -> Vec<Value> {
    let output = driver("read-db", db)
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
    let env = Env::new();
    let (plain, rich, gone) = (env.name("plain"), env.name("rich"), env.name("gone"));
    let mut rich_decky = decky(&rich, &["smtp_relay", "ftp"]);
    rich_decky["archetype"] = json!("mail-server");
    rich_decky["service_config"] = json!({"ftp": {"banner": "ProFTPD 1.3.5 – ünïcode"}});
    rich_decky["mutate_interval"] = json!(30);
    rich_decky["last_mutated"] = json!(5);
    rich_decky["future_field"] = json!({"kept": true});
    env.test()
        .containers(&[(&format!("{plain}-ssh"), Container::Running)])
        .state(&[decky(&plain, &["ssh"]), rich_decky, decky(&gone, &["ssh"])])
        .stderr(format!(
            " WARN state file {}: unknown decky fields kept in decky_config: \"future_field\"\n",
            env.state_file.display()
        ))
        .run();
    // A state update (last_seen set) and a deletion.
    env.stop_container(&format!("{plain}-ssh"));
    env.test()
        .state(&[
            decky(&plain, &["ssh"]),
            decky(&rich, &["smtp_relay", "ftp"]),
        ])
        .run();

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
        let cli = crate::fixture::decnet_python().with_file_name("decnet");
        let child = crate::fixture::decnet(&cli)
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
    let env = Env::new();
    let mut bus = DecnetBus::start(env.dir.path());
    env.write_state(&[
        decky(&env.name("a"), &["ssh"]),
        decky(&env.name("b"), &["ssh"]),
    ]);
    // Stopped, the server still accepts connections (the kernel queues them)
    // but reads nothing: the pass's frames wait in the socket when it is killed.
    bus.signal("STOP");
    // The pass is driven by hand: its stderr is read while it runs.
    let mut tool = env
        .test()
        .bus_by_environment()
        .args(["-v", "--output", "json", "--bus-timeout", "20", "--bus"])
        .arg(format!("unix://{}", bus.socket.display()))
        .command()
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
    let run = finish(tool).expect_status(0);
    figure(
        "decnet_bus_killed_to_pass_end_ms",
        killed_at.elapsed().as_millis(),
    );
    // The reader thread ends at the pass's end of stderr: its last lines are there.
    seen.extend(lines.iter());
    let socket = bus.socket.display();
    let expected = [
        format!(
            "DEBUG 2 event(s) written to {socket}; waiting for the bus to close the connection"
        ),
        format!(
            " WARN DECNET's bus at {socket} failed (the connection broke before the bus had read \
             every event: …): 2 event(s) lost; the database is converged all the same"
        ),
    ];
    assert!(
        seen.len() == expected.len()
            && seen
                .iter()
                .zip(&expected)
                .all(|(line, pattern)| line_matches(line, pattern)),
        "stderr is not\n{}\nbut\n{}",
        expected.join("\n"),
        seen.join("\n")
    );
    let report = run.json();
    assert_eq!(report["publish_failed"], 2);
    assert_eq!(report["published"], 0);
    assert_eq!(env.rows().len(), 2, "the DB converged all the same");
}

fn unix_url(path: &Path) -> String {
    format!("unix://{}", path.display())
}

/// A bus that cannot take the events and the heartbeat, as the warning says.
fn assert_bus_loses_events(env: &Env, url: &str, why: &str) {
    assert_events_lost(
        env,
        &["--bus", url, "--bus-timeout", "1", "--heartbeat"],
        &[&format!(
            " WARN DECNET's bus at {} failed ({why}): \
             2 event(s) and the heartbeat lost; the database is converged all the same",
            url.trim_start_matches("unix://")
        )],
    );
}

#[test]
fn a_bus_that_accepts_and_never_reads_loses_the_events_within_the_timeout() {
    let env = Env::new();
    let url = unix_url(&hanging_socket(&env.dir.path().join("hung.sock")));
    assert_bus_loses_events(
        &env,
        &url,
        "the bus did not read every event and close the connection within 1s",
    );
}

/// The URL of a bus peer in `env`'s dir that stops sending at once, then does what `then` says.
fn half_closing_bus(env: &Env, then: AfterHalfClose) -> String {
    unix_url(&half_closing_socket(
        &env.dir.path().join("half.sock"),
        then,
    ))
}

/// End of file is not delivery: a peer that stops sending at once and never
/// reads holds every byte unread, however soon the publisher sees the end.
#[test]
fn a_bus_that_stops_sending_and_never_reads_loses_the_events() {
    let env = Env::new();
    let url = half_closing_bus(&env, AfterHalfClose::NeverRead);
    assert_bus_loses_events(
        &env,
        &url,
        "the bus did not read every event and close the connection within 1s",
    );
}

/// The kernel tells a close with bytes unread (ECONNRESET) from one after
/// reading them all, whenever the close comes.
#[test]
fn a_bus_that_stops_sending_and_closes_unread_loses_the_events() {
    let env = Env::new();
    let url = half_closing_bus(
        &env,
        AfterHalfClose::CloseUnread(Duration::from_millis(200)),
    );
    assert_bus_loses_events(
        &env,
        &url,
        "the connection broke before the bus had read every event: the connection was lost",
    );
}

/// The other side of the two above: stopping to send first is no fault when
/// the peer then reads every frame and closes.
#[test]
fn a_bus_that_stops_sending_then_reads_everything_gets_the_events() {
    let env = Env::new();
    let url = half_closing_bus(&env, AfterHalfClose::ReadAllThenClose);
    env.write_state(&[decky(&env.name("a"), &["ssh"])]);
    let report = env
        .test()
        .bus_by_environment()
        .args(["--bus", &url, "--bus-timeout", "5", "--heartbeat"])
        .args(["--output", "json"])
        .run()
        .json();
    assert_eq!(report["published"], 1, "{report}");
    assert_eq!(report["heartbeat"], "sent", "{report}");
}

#[test]
fn a_bus_path_that_is_not_a_socket_loses_the_events() {
    let env = Env::new();
    let file = env.dir.path().join("bus.sock");
    std::fs::write(&file, "not a socket").expect("write file");
    assert_bus_loses_events(&env, &unix_url(&file), "cannot connect: connection refused");
}

#[test]
fn a_missing_bus_socket_loses_the_events() {
    let env = Env::new();
    let url = unix_url(&env.dir.path().join("absent/bus.sock"));
    assert_bus_loses_events(&env, &url, "cannot connect: no such socket");
}

#[test]
fn a_bus_socket_left_by_a_dead_server_loses_the_events() {
    let env = Env::new();
    let url = unix_url(&stale_socket(&env.dir.path().join("stale.sock")));
    assert_bus_loses_events(&env, &url, "cannot connect: connection refused");
}

/// Lines 9 (with and without DECNET_BUS_TYPE=unix), 4 and 2 of the README's
/// table, end to end: each pass reaches DECNET's bus only if that line chose it.
#[test]
fn decnets_variables_and_ours_choose_decnets_bus_as_the_table_says() {
    let env = Env::new();
    let hub = Hub::start(env.dir.path());
    let socket = hub.socket.display().to_string();
    let redis_closed = format!("redis://127.0.0.1:{}/0", closed_port());
    let mut deckies = Vec::new();
    let mut pass = |short: &str, vars: &[(&str, &str)], args: &[&str]| {
        let name = env.name(short);
        deckies.push(decky(&name, &["ssh"]));
        let mut test = env
            .test()
            .state(&deckies)
            .bus_by_environment()
            .watch(&hub)
            .args(args)
            .args(["--output", "json"])
            .events([(&name, "inserted")]);
        for (var, value) in vars {
            test = test.env_var(var, value);
        }
        let out = test.run();
        assert_eq!(out.json()["published"], 1, "{short}");
    };
    pass(
        "type-unix",
        &[("DECNET_BUS_TYPE", "unix"), ("DECNET_BUS_SOCKET", &socket)],
        &[],
    );
    pass("socket-alone", &[("DECNET_BUS_SOCKET", &socket)], &[]);
    pass(
        "bus-url-env",
        &[
            ("DECNET_BUS_URL", &format!("unix:{socket}")),
            ("DECNET_REDIS_URL", &redis_closed),
            ("DECNET_BUS_TYPE", "fake"),
        ],
        &[],
    );
    pass(
        "typed-after-once",
        &[("DECNET_BUS_URL", &redis_closed)],
        &["once", "--bus", &hub.url()],
    );
}

/// The lines that choose something else than DECNET's bus, seen in the
/// warning that names the bus that failed (or in the absence of any).
#[test]
fn the_other_lines_of_the_table_choose_as_it_says() {
    let env = Env::new();
    let missing = env.dir.path().join("missing.sock");
    let missing_url = unix_url(&missing);
    let redis_closed = format!("redis://127.0.0.1:{}/0", closed_port());
    let redis_failed = format!(
        " WARN Redis at {redis_closed} failed (connection refused): \
         1 event(s) lost; the database is converged all the same"
    );
    let mut deckies = Vec::new();
    let mut pass = |short: &str| {
        let name = env.name(short);
        deckies.push(decky(&name, &["ssh"]));
        env.test().state(&deckies).bus_by_environment().args([
            "--output",
            "json",
            "--bus-timeout",
            "1",
        ])
    };

    // Line 1: --no-publish outranks a typed --bus: nothing is published, nothing is lost.
    let out = pass("no-publish")
        .args(["--no-publish", "--heartbeat", "--bus", &missing_url])
        .run();
    assert_eq!(out.json()["heartbeat"], Value::Null);

    // Line 3: a typed --redis-url outranks DECNET_BUS_URL.
    pass("typed-redis")
        .env_var("DECNET_BUS_URL", &missing_url)
        .args(["--redis-url", &redis_closed])
        .stderr_lines([&redis_failed])
        .run();

    // Line 5: DECNET_REDIS_URL outranks DECNET's bus variables.
    pass("redis-env")
        .env_var("DECNET_REDIS_URL", &redis_closed)
        .env_var("DECNET_BUS_TYPE", "unix")
        .env_var("DECNET_BUS_SOCKET", &missing)
        .stderr_lines([&redis_failed])
        .run();

    // Lines 6 and 7: DECNET's bus turned off, or its in-process one, publish nothing.
    for (short, var, value) in [
        ("disabled", "DECNET_BUS_ENABLED", "false"),
        ("fake", "DECNET_BUS_TYPE", "fake"),
    ] {
        let out = pass(short)
            .env_var(var, value)
            .env_var("DECNET_BUS_SOCKET", &missing)
            .env_var("DECNET_RECONCILE_HEARTBEAT", "1")
            .run();
        assert_eq!(out.json()["published"], 0, "{short}");
        assert_eq!(out.json()["heartbeat"], Value::Null, "{short}");
    }

    // Line 11: nothing set is DECNET's bus at the socket DECNET's own factory
    // picks: in the home directory when /run/decnet is not a directory this
    // user may write (the test asserts DECNET agrees), where DECNET's bus serves it.
    let home = env.dir.path().join("home");
    std::fs::create_dir_all(home.join(".decnet")).expect("mkdir ~/.decnet");
    let hub = Hub::start(&home.join(".decnet"));
    let decnets_choice = decnet(&decnet_python())
        .env("HOME", &home)
        .args([
            "-c",
            "from decnet.bus.factory import _default_socket_path as p; print(p())",
        ])
        .output()
        .expect("DECNET's python");
    assert_eq!(
        String::from_utf8_lossy(&decnets_choice.stdout).trim(),
        hub.socket.display().to_string(),
        "DECNET's own default socket on this machine (is /run/decnet writable here?): {}",
        String::from_utf8_lossy(&decnets_choice.stderr)
    );
    let name = env.name("default");
    let out = pass("default")
        .env_var("HOME", &home)
        .watch(&hub)
        .args(["--bus-timeout", "5"])
        .events([(&name, "inserted")])
        .run();
    assert_eq!(out.json()["published"], 1);
}

#[test]
fn a_bad_bus_is_a_usage_error_naming_where_it_came_from() {
    let env = Env::new();
    env.write_state(&[decky(&env.name("a"), &["ssh"])]);
    let before = env.db_snapshot();
    env.test()
        .bus_by_environment()
        .args(["once", "--bus", "nats://:s3cret@127.0.0.1:4222"])
        .status(1)
        .stderr(
            "decnet-reconcile: error: --bus: \"nats://:***@127.0.0.1:4222\" is not a bus URL: \
             use redis://HOST:PORT/DB or unix:///PATH/bus.sock\n",
        )
        .run();
    env.test()
        .bus_by_environment()
        .env_var("DECNET_BUS_URL", "unix:relative/bus.sock")
        .status(1)
        .stderr(
            "decnet-reconcile: error: DECNET_BUS_URL: a unix: bus URL needs an absolute socket path, \
             as in unix:///run/decnet/bus.sock\n",
        )
        .run();
    env.test()
        .bus_by_environment()
        .env_var("DECNET_BUS_TYPE", "nats")
        .status(1)
        .stderr(
            "decnet-reconcile: error: DECNET_BUS_TYPE \"nats\" is not one of unix, fake \
             (DECNET's workers refuse it too)\n",
        )
        .run();
    assert_eq!(env.db_snapshot(), before, "nothing was written");
}
