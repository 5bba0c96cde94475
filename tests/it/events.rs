//! Events on the real Redis (SPEC §6): one message per written row, after the
//! commit, in DECNET's envelope; none for a quiet or dry pass; faults are
//! warnings. Each test that publishes runs in plaintext and over TLS.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::fixture::{
    assert_events_lost, closed_port, decky, hanging_tcp, Backend, Container, Env, Event,
    PrivateRedis, HEARTBEAT, REDIS_NO_ANSWER, SECRET,
};
use crate::in_plaintext_and_over_tls;

/// Checks the envelope of SPEC §6 and returns its payload.
#[track_caller]
fn assert_envelope(event: &Event, host: &str, name: &str) -> Value {
    let channel = format!("decky.{host}:{name}.state");
    assert_eq!(event.channel, channel);
    let message = &event.message;
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

fn insert_state_change_and_delete_are_announced_once_each(backend: Backend) {
    let env = Env::on(backend);
    let name = env.name("d");
    let out = env
        .test()
        .containers(&[(&format!("{name}-ssh"), Container::Running)])
        .state(&[decky(&name, &["ssh"])])
        .redis()
        .args(["--output", "json"])
        .events([(&name, "inserted")])
        .run();
    assert_eq!(out.json()["published"], 1);
    let payload = assert_envelope(&out.events[0], &env.host, &name);
    assert_eq!(
        payload,
        json!({"host_uuid": env.host, "name": name, "state": "running",
               "transition": "inserted", "source": "fleet"})
    );

    env.stop_container(&format!("{name}-ssh"));
    let out = env.test().redis().events([(&name, "state_changed")]).run();
    let payload = assert_envelope(&out.events[0], &env.host, &name);
    assert_eq!(payload["state"], "failed");
    assert_eq!(payload["previous_state"], "running");

    let other = env.name("other");
    let out = env
        .test()
        .state(&[decky(&other, &["ftp"])])
        .redis()
        .events([(&name, "deleted"), (&other, "inserted")])
        .run();
    let deleted = out
        .events
        .iter()
        .find(|event| event.payload()["transition"] == "deleted")
        .expect("the delete");
    let payload = assert_envelope(deleted, &env.host, &name);
    assert_eq!(payload["state"], "torn_down");
    assert!(
        payload.get("previous_state").is_none(),
        "previous_state only on state_changed"
    );

    // A converged pass announces nothing: the default expectation.
    env.test().redis().run();
}

fn config_repair_is_announced_as_config_changed(backend: Backend) {
    let env = Env::on(backend);
    let name = env.name("d");
    env.test()
        .state(&[decky(&name, &["ssh"])])
        .redis()
        .events([(&name, "inserted")])
        .run();
    env.execute("UPDATE fleet_deckies SET decky_ip = '192.0.2.1'");
    let out = env.test().redis().events([(&name, "config_changed")]).run();
    let payload = assert_envelope(&out.events[0], &env.host, &name);
    assert_eq!(payload["state"], "torn_down");
    assert!(payload.get("previous_state").is_none());
}

#[test]
fn quiet_dry_and_no_publish_passes_do_not_touch_redis() {
    let redis = PrivateRedis::start();
    let env = Env::new();
    env.write_state(&[decky(&env.name("d"), &["ssh"])]);

    let count = || redis.connection_count().expect("INFO");
    let before = count();
    env.test().redis_at(&redis.url()).arg("--dry-run").run();
    env.test().redis_at(&redis.url()).arg("--no-publish").run();
    assert_eq!(count(), before + 1, "only our own INFO connection");

    env.test().redis_at(&redis.url()).run();
    env.execute("DELETE FROM fleet_deckies");
    let before = count();
    let out = env
        .test()
        .redis_at(&redis.url())
        .args(["--output", "json"])
        .run();
    assert_eq!(out.json()["published"], 1);
    assert_eq!(
        count(),
        before + 2,
        "one connection for the pass, one for INFO"
    );

    let before = count();
    env.test().redis_at(&redis.url()).run();
    assert_eq!(count(), before + 1, "a converged pass opened a connection");
}

fn dry_run_and_no_publish_announce_nothing(backend: Backend) {
    let env = Env::on(backend);
    env.write_state(&[decky(&env.name("d"), &["ssh"])]);
    env.test().redis().arg("--dry-run").run();
    env.test().redis().arg("--no-publish").run();
    assert_eq!(env.rows().len(), 1, "--no-publish still writes");
}

/// The options for a Redis with `password` on `port` of loopback, as `env`'s
/// Redis is reached (over TLS, with its CA, on a TLS env), and the URL shown.
fn redis_on(env: &Env, port: u16) -> (Vec<String>, String) {
    let scheme = if env.redis.ca.is_some() {
        "rediss"
    } else {
        "redis"
    };
    let mut args = vec![
        "--redis-url".to_owned(),
        format!("{scheme}://:{SECRET}@127.0.0.1:{port}/0"),
    ];
    if let Some(ca) = &env.redis.ca {
        args.extend(["--redis-ca".to_owned(), ca.display().to_string()]);
    }
    (args, format!("{scheme}://:***@127.0.0.1:{port}/0"))
}

fn redis_on_a_closed_port_loses_events_without_failing(backend: Backend) {
    let env = Env::on(backend);
    let (args, shown) = redis_on(&env, closed_port());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_events_lost(
        &env,
        &args,
        &[&format!(
            " WARN Redis at {shown} failed (connection refused): \
             2 event(s) lost; the database is converged all the same"
        )],
    );
}

fn redis_that_never_answers_loses_events_within_the_timeout(backend: Backend) {
    let env = Env::on(backend);
    let (mut args, shown) = redis_on(&env, hanging_tcp());
    args.extend(["--redis-timeout".to_owned(), "1".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let why = match backend {
        Backend::MySqlTls => "no answer within 1s, over TLS: is that port's Redis without TLS?",
        _ => REDIS_NO_ANSWER,
    };
    assert_events_lost(
        &env,
        &args,
        &[&format!(
            " WARN Redis at {shown} failed ({why}): \
             2 event(s) lost; the database is converged all the same"
        )],
    );
}

#[test]
fn lost_events_show_in_the_summary_line() {
    let env = Env::new();
    let url = format!("redis://127.0.0.1:{}/0", closed_port());
    env.test()
        .state(&[decky(&env.name("a"), &["ssh"])])
        .redis_at(&url)
        .stdout_ends_with("inserted=1 deleted=0 updated=0 events_lost=1\n")
        .stderr(format!(
            " WARN Redis at {url} failed (connection refused): \
             1 event(s) lost; the database is converged all the same\n"
        ))
        .run();
}

fn names_that_cannot_form_a_channel_are_written_not_published(backend: Backend) {
    let env = Env::on(backend);
    let (dotted, fine) = (format!("{}.b", env.name("a")), env.name("fine"));
    let out = env
        .test()
        .state(&[decky(&dotted, &["ssh"]), decky(&fine, &["ssh"])])
        .redis()
        .args(["--output", "json"])
        .events([(&fine, "inserted")])
        .stderr(format!(
            " WARN decky {dotted:?} of host {:?} was written but not announced on Redis at \
             {}: the name cannot form a channel\n",
            env.host, env.redis.url
        ))
        .run();
    assert_eq!(env.rows().len(), 2, "both rows are written");
    assert_eq!(out.json()["published"], 1);
}

/// The message as DECNET's consumers model it; unknown keys would be refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
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
struct ConsumerPayload {
    host_uuid: String,
    name: String,
    state: String,
    transition: String,
    source: String,
    #[serde(default)]
    previous_state: Option<String>,
}

fn messages_parse_as_decnet_consumers_expect(backend: Backend) {
    let env = Env::on(backend);
    let name = env.name("d");
    let mut events = env
        .test()
        .containers(&[(&format!("{name}-ftp"), Container::Running)])
        .state(&[decky(&name, &["ftp"])])
        .redis()
        .events([(&name, "inserted")])
        .run()
        .events;
    env.stop_container(&format!("{name}-ftp"));
    events.extend(
        env.test()
            .redis()
            .events([(&name, "state_changed")])
            .run()
            .events,
    );
    for event in events {
        let parsed: ConsumerEnvelope =
            serde_json::from_value(event.message).expect("consumer model");
        assert_eq!(parsed.topic, event.channel);
        assert_eq!((parsed.v, parsed.kind.as_str()), (1, "state"));
        assert_eq!(parsed.id.len(), 32, "{}", parsed.id);
        assert!(parsed.ts > 0.0);
        let payload = parsed.payload;
        assert_eq!(
            (payload.host_uuid.as_str(), payload.name.as_str()),
            (env.host.as_str(), name.as_str())
        );
        assert_eq!(payload.source, "fleet");
        let state = if payload.transition == "inserted" {
            "running"
        } else {
            "failed"
        };
        assert_eq!(payload.state, state);
        assert_eq!(
            payload.previous_state.is_some(),
            payload.transition == "state_changed"
        );
    }
}

fn the_heartbeat_follows_the_change_events_on_redis_too(backend: Backend) {
    let env = Env::on(backend);
    let name = env.name("d");
    let out = env
        .test()
        .state(&[decky(&name, &["ssh"])])
        .redis()
        .args(["--heartbeat", "--output", "json"])
        .events([(&name, "inserted")])
        .heartbeat()
        .run();
    assert_eq!(out.json()["published"], 1);
    assert_eq!(out.json()["heartbeat"], "sent");
    let channels: Vec<&str> = out.events.iter().map(|e| e.channel.as_str()).collect();
    assert_eq!(
        channels,
        [
            format!("decky.{}:{name}.state", env.host).as_str(),
            HEARTBEAT
        ]
    );
    let heartbeat = &out.events[1].message;
    assert_eq!(heartbeat["type"], "health");
    assert_eq!(heartbeat["topic"], HEARTBEAT);
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
    let out = env.test().redis().arg("--heartbeat").heartbeat().run();
    assert_eq!(out.events[0].payload()["inserted"], 0);
    env.test().redis().args(["--heartbeat", "--dry-run"]).run();
}

in_plaintext_and_over_tls!(
    Sqlite: insert_state_change_and_delete_are_announced_once_each,
    config_repair_is_announced_as_config_changed,
    dry_run_and_no_publish_announce_nothing,
    redis_on_a_closed_port_loses_events_without_failing,
    redis_that_never_answers_loses_events_within_the_timeout,
    names_that_cannot_form_a_channel_are_written_not_published,
    messages_parse_as_decnet_consumers_expect,
    the_heartbeat_follows_the_change_events_on_redis_too,
);
