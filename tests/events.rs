//! Events on the real Redis (SPEC §6): one message per written row, after the
//! commit, in DECNET's envelope; none for a quiet or dry pass; faults are warnings.

mod support;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};
use support::{
    closed_port, hanging_tcp, Container, EventLog, Received, Run, Subscriber, TestEnv, REDIS_URL,
};

fn events_env(test: &str) -> TestEnv {
    let mut env = TestEnv::new(test);
    env.host = format!("host-{}", env.prefix);
    env
}

fn publishing_command(env: &TestEnv, url: &str) -> Command {
    env.command_publishing_to(url)
}

fn publish(env: &TestEnv, args: &[&str]) -> Run {
    Run::of(publishing_command(env, REDIS_URL).args(args))
}

/// Checks the envelope of SPEC §6 and returns its payload.
fn assert_envelope(received: &Received, host: &str, name: &str) -> Value {
    let channel = format!("decky.{host}:{name}.state");
    assert_eq!(received.channel, channel);
    let message = &received.message;
    let keys: Vec<&String> = message.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["v", "id", "topic", "type", "ts", "payload"]);
    assert_eq!(message["v"], 1);
    let id = message["id"].as_str().expect("id is a string");
    assert_eq!(id.len(), 32, "{id}");
    assert!(
        id.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
        "{id}"
    );
    assert_eq!(message["topic"], channel.as_str());
    assert_eq!(message["type"], "state");
    let ts = message["ts"].as_f64().expect("ts is a number");
    assert!(message["ts"].is_f64(), "ts is a float");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!((now - ts).abs() < 60.0, "ts {ts} is not now ({now})");
    let payload = message["payload"].clone();
    assert_eq!(payload["host_uuid"], host);
    assert_eq!(payload["name"], name);
    assert_eq!(payload["source"], "fleet");
    payload
}

#[test]
fn insert_state_change_and_delete_are_announced_once_each() {
    let mut env = events_env("ev-cycle");
    let mut subscriber = Subscriber::new(&env.host);
    let name = env.name("d");
    env.container(&format!("{name}-ssh"), Container::Running);
    env.write_state(&[env.decky(&name, &["ssh"])]);

    let run = publish(&env, &["--output", "json"]).expect_code(0);
    assert_eq!(run.json()["published"], 1);
    let received = subscriber.drain();
    assert_eq!(received.len(), 1, "exactly one event for one insert");
    let payload = assert_envelope(&received[0], &env.host, &name);
    assert_eq!(
        payload,
        json!({"host_uuid": env.host, "name": name, "state": "running",
               "transition": "inserted", "source": "fleet"})
    );

    env.stop_container(&format!("{name}-ssh"));
    publish(&env, &[]).expect_code(0);
    let received = subscriber.drain();
    assert_eq!(received.len(), 1);
    let payload = assert_envelope(&received[0], &env.host, &name);
    assert_eq!(payload["transition"], "state_changed");
    assert_eq!(payload["state"], "failed");
    assert_eq!(payload["previous_state"], "running");

    env.write_state(&[env.decky(&env.name("other"), &["ftp"])]);
    publish(&env, &[]).expect_code(0);
    let mut received = subscriber.drain();
    received.sort_by_key(|r| {
        r.message["payload"]["transition"]
            .as_str()
            .map(str::to_owned)
    });
    assert_eq!(received.len(), 2, "one delete and one insert");
    let payload = assert_envelope(&received[0], &env.host, &name);
    assert_eq!(payload["transition"], "deleted");
    assert_eq!(payload["state"], "torn_down");
    assert!(
        payload.get("previous_state").is_none(),
        "previous_state only on state_changed"
    );

    publish(&env, &[]).expect_code(0);
    assert!(
        subscriber.drain().is_empty(),
        "a converged pass announces nothing"
    );
}

#[test]
fn config_repair_is_announced_as_config_changed() {
    let env = events_env("ev-config");
    let mut subscriber = Subscriber::new(&env.host);
    let name = env.name("d");
    env.write_state(&[env.decky(&name, &["ssh"])]);
    publish(&env, &[]).expect_code(0);
    subscriber.drain();
    env.connect()
        .execute("UPDATE fleet_deckies SET decky_ip = '192.0.2.1'", [])
        .expect("drift");
    publish(&env, &[]).expect_code(0);
    let received = subscriber.drain();
    assert_eq!(received.len(), 1);
    let payload = assert_envelope(&received[0], &env.host, &name);
    assert_eq!(payload["transition"], "config_changed");
    assert_eq!(payload["state"], "torn_down");
    assert!(payload.get("previous_state").is_none());
}

/// A private Redis, so that connection counts are this test's alone.
struct PrivateRedis {
    child: Child,
    port: u16,
}

impl PrivateRedis {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is required (scripts/services installs it)");
        let redis = PrivateRedis { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while redis.connection_count().is_none() {
            assert!(
                Instant::now() < deadline,
                "private redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// `total_connections_received`, read on a fresh connection (which adds one).
    fn connection_count(&self) -> Option<u64> {
        let client = redis::Client::open(self.url()).ok()?;
        let mut connection = client.get_connection().ok()?;
        let info: String = redis::cmd("INFO")
            .arg("stats")
            .query(&mut connection)
            .ok()?;
        info.lines()
            .find_map(|line| line.strip_prefix("total_connections_received:"))
            .and_then(|count| count.trim().parse().ok())
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn quiet_dry_and_no_publish_passes_do_not_touch_redis() {
    let redis = PrivateRedis::start();
    let env = events_env("ev-quiet");
    env.write_state(&[env.decky(&env.name("d"), &["ssh"])]);

    let count = || redis.connection_count().expect("INFO");
    let before = count();
    Run::of(publishing_command(&env, &redis.url()).arg("--dry-run")).expect_code(0);
    Run::of(publishing_command(&env, &redis.url()).arg("--no-publish")).expect_code(0);
    assert_eq!(count(), before + 1, "only our own INFO connection");

    Run::of(&mut publishing_command(&env, &redis.url())).expect_code(0);
    env.connect()
        .execute("DELETE FROM fleet_deckies", [])
        .expect("drift");
    let before = count();
    let run =
        Run::of(publishing_command(&env, &redis.url()).args(["--output", "json"])).expect_code(0);
    assert_eq!(run.json()["published"], 1);
    assert_eq!(
        count(),
        before + 2,
        "one connection for the pass, one for INFO"
    );

    let before = count();
    Run::of(&mut publishing_command(&env, &redis.url())).expect_code(0);
    assert_eq!(count(), before + 1, "a converged pass opened a connection");
}

#[test]
fn dry_run_and_no_publish_announce_nothing() {
    let env = events_env("ev-dry");
    let mut subscriber = Subscriber::new(&env.host);
    env.write_state(&[env.decky(&env.name("d"), &["ssh"])]);
    publish(&env, &["--dry-run"]).expect_code(0);
    publish(&env, &["--no-publish"]).expect_code(0);
    assert!(subscriber.drain().is_empty());
    assert_eq!(env.rows().len(), 1, "--no-publish still writes");
}

/// Redis down or silent: the DB converges, exit 0 in time, a warning with the count.
fn assert_events_lost(url: &str, secret: Option<&str>) {
    let env = events_env("ev-fault");
    env.write_state(&[
        env.decky(&env.name("a"), &["ssh"]),
        env.decky(&env.name("b"), &["ssh"]),
    ]);
    let run = Run::of(publishing_command(&env, url).args(["--output", "json"])).expect_code(0);
    assert!(
        run.elapsed < Duration::from_secs(2),
        "took {:?}",
        run.elapsed
    );
    assert_eq!(env.rows().len(), 2, "the DB converged all the same");
    assert_eq!(run.json()["publish_failed"], 2);
    assert!(run.stderr.contains("2 event(s) lost"), "{}", run.stderr);
    if let Some(secret) = secret {
        assert!(
            !run.stdout.contains(secret) && !run.stderr.contains(secret),
            "{}",
            run.stderr
        );
    }
    let table = Run::of(publishing_command(&env, url).arg("--dry-run")).expect_code(0);
    assert!(
        !table.stdout.contains("events_lost"),
        "a dry run loses nothing"
    );
}

#[test]
fn redis_on_a_closed_port_loses_events_without_failing() {
    assert_events_lost(
        &format!("redis://:s3cretpw@127.0.0.1:{}/0", closed_port()),
        Some("s3cretpw"),
    );
}

#[test]
fn redis_that_never_answers_loses_events_within_the_timeout() {
    assert_events_lost(
        &format!("redis://:s3cretpw@127.0.0.1:{}/0", hanging_tcp()),
        Some("s3cretpw"),
    );
}

#[test]
fn lost_events_show_in_the_summary_line() {
    let env = events_env("ev-summary");
    env.write_state(&[env.decky(&env.name("a"), &["ssh"])]);
    let url = format!("redis://127.0.0.1:{}/0", closed_port());
    let run = Run::of(&mut publishing_command(&env, &url)).expect_code(0);
    assert!(
        run.stdout
            .ends_with("inserted=1 deleted=0 updated=0 events_lost=1\n"),
        "{}",
        run.stdout
    );
}

#[test]
fn names_that_cannot_form_a_channel_are_written_not_published() {
    let env = events_env("ev-dots");
    let mut subscriber = Subscriber::new(&env.host);
    let dotted = format!("{}.b", env.name("a"));
    env.write_state(&[
        env.decky(&dotted, &["ssh"]),
        env.decky(&env.name("fine"), &["ssh"]),
    ]);
    let run = publish(&env, &["--output", "json"]).expect_code(0);
    assert_eq!(env.rows().len(), 2, "both rows are written");
    assert!(
        run.stderr.contains(&dotted) && run.stderr.contains("not announced"),
        "{}",
        run.stderr
    );
    assert_eq!(run.json()["published"], 1);
    let received = subscriber.drain();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].message["payload"]["name"], env.name("fine"));
}

/// The message as DECNET's consumers model it; unknown keys would be refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // fields exist to be type-checked by serde
struct ConsumerEnvelope {
    v: u32,
    id: String,
    topic: String,
    #[serde(rename = "type")]
    kind: String,
    ts: f64,
    payload: ConsumerPayload,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct ConsumerPayload {
    host_uuid: String,
    name: String,
    state: String,
    transition: String,
    source: String,
    #[serde(default)]
    previous_state: Option<String>,
}

#[test]
fn messages_parse_as_decnet_consumers_expect() {
    let mut env = events_env("ev-consumer");
    let mut subscriber = Subscriber::new(&env.host);
    let name = env.name("d");
    env.container(&format!("{name}-ftp"), Container::Running);
    env.write_state(&[env.decky(&name, &["ftp"])]);
    publish(&env, &[]).expect_code(0);
    env.stop_container(&format!("{name}-ftp"));
    publish(&env, &[]).expect_code(0);
    let received = subscriber.drain();
    assert_eq!(received.len(), 2);
    for event in received {
        let parsed: ConsumerEnvelope =
            serde_json::from_value(event.message).expect("consumer model");
        assert_eq!(parsed.topic, event.channel);
        assert_eq!(parsed.v, 1);
        assert_eq!(
            parsed.payload.previous_state.is_some(),
            parsed.payload.transition == "state_changed"
        );
    }
}

/// Every message on the decky channels of `host` and on the heartbeat
/// channel, in the order Redis delivered them.
fn subscribe_with_heartbeat(host: &str) -> EventLog {
    EventLog::subscribe_to(&[
        format!("decky.{host}:*"),
        "system.reconciler.health".to_owned(),
    ])
}

#[test]
fn the_heartbeat_follows_the_change_events_on_redis_too() {
    let env = events_env("ev-heartbeat");
    let messages = subscribe_with_heartbeat(&env.host);
    let ours = |(channel, message): &(String, Value)| {
        channel.starts_with("decky.") || message["payload"]["host_uuid"] == env.host.as_str()
    };
    let drain = || -> Vec<(String, Value)> {
        std::iter::from_fn(|| messages.next_within(Duration::from_millis(500)))
            .filter(ours)
            .collect()
    };
    let name = env.name("d");
    env.write_state(&[env.decky(&name, &["ssh"])]);

    let run = publish(&env, &["--heartbeat", "--output", "json"]).expect_code(0);
    assert_eq!(run.json()["published"], 1);
    assert_eq!(run.json()["heartbeat"], "sent");
    let received = drain();
    let channels: Vec<&str> = received.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(
        channels,
        [
            format!("decky.{}:{name}.state", env.host).as_str(),
            "system.reconciler.health"
        ]
    );
    let heartbeat = &received[1].1;
    assert_eq!(heartbeat["type"], "health");
    assert_eq!(heartbeat["topic"], "system.reconciler.health");
    let payload = &heartbeat["payload"];
    assert_eq!(payload["worker"], "reconciler");
    assert!(payload["ts"].is_f64());
    assert_eq!(
        (
            &payload["inserted"],
            &payload["deleted"],
            &payload["updated"]
        ),
        (&json!(1), &json!(0), &json!(0))
    );
    assert!(payload["duration_ms"].is_u64(), "{payload}");

    // Converged, a pass still beats; a dry run does not.
    publish(&env, &["--heartbeat"]).expect_code(0);
    publish(&env, &["--heartbeat", "--dry-run"]).expect_code(0);
    let received = drain();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0].0, "system.reconciler.health");
    assert_eq!(received[0].1["payload"]["inserted"], 0);
}
