//! The event bus: one event per written row, after the commit (SPEC §6), and
//! the optional heartbeat, on Redis pub/sub or on DECNET's own Unix-socket bus.
//! An event is a notification that may be lost, never one for a change not
//! written, and a lost event is a warning, never an error. This module owns
//! what is common to both transports — a bus URL, the envelope, the channel
//! rules and the books of what was lost; each transport is a submodule.

mod decnet_bus;
mod redis;

pub use self::redis::{
    url_password as redis_url_password, uses_tls as redis_uses_tls, RedisAccess,
};

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Serialize;
use tracing::warn;

use crate::core::{ChangeKind, Counts, DockerStatus, Heartbeat, Plan};

/// Where DECNET's `decnet bus` listens unless `DECNET_BUS_SOCKET` says otherwise.
pub const DECNET_BUS_SOCKET: &str = "/run/decnet/bus.sock";

/// The channel of the heartbeat, where DECNET's Workers panel listens for its reconciler.
pub const HEARTBEAT_CHANNEL: &str = "system.reconciler.health";

/// One message ready to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub channel: String,
    pub message: String,
    pub kind: EventKind,
}

/// Whether an event announces a written row or is the pass's heartbeat:
/// only the first kind counts in `published` and `events_lost`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Change,
    Heartbeat,
}

/// A change that cannot be announced on the configured bus, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unannounceable {
    pub host_uuid: String,
    pub name: String,
    pub reason: &'static str,
}

/// The bus a pass announces its changes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bus {
    /// Redis pub/sub at this URL.
    Redis(String),
    /// DECNET's own bus: `decnet bus` serving this Unix socket.
    DecnetUnix(PathBuf),
}

/// The kind of a bus, which decides what its channel names may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Redis,
    DecnetBus,
}

impl Bus {
    /// Parses a `--bus` value: `redis://…` (and the redis crate's other
    /// `redis…` schemes), or DECNET's bus as `unix:///path` or `unix:/path`.
    pub fn from_url(url: &str) -> anyhow::Result<Bus> {
        if let Some(rest) = url.strip_prefix("unix:") {
            // `unix:///p` and `unix:/p` both leave an absolute path once the
            // empty authority `//` is gone; `unix://host/p` names a host.
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if !path.starts_with('/') {
                bail!("a unix: bus URL needs an absolute socket path, as in unix:///run/decnet/bus.sock");
            }
            return Bus::decnet_socket(PathBuf::from(path));
        }
        let scheme =
            crate::text::url_scheme(url).filter(|scheme| url[scheme.len()..].starts_with("://"));
        match scheme {
            Some(scheme) if scheme.starts_with("redis") => {
                ::redis::Client::open(url)
                    .with_context(|| format!("{} is not a Redis URL", shown(url)))?;
                Ok(Bus::Redis(url.to_owned()))
            }
            _ => bail!(
                "{} is not a bus URL: use redis://HOST:PORT/DB or unix:///PATH/bus.sock",
                shown(url)
            ),
        }
    }

    /// DECNET's bus at `path`, refused when no Unix socket address can hold it.
    pub fn decnet_socket(path: PathBuf) -> anyhow::Result<Bus> {
        if path.as_os_str().is_empty() {
            bail!("the bus socket path is empty");
        }
        // sun_path holds 108 bytes with the terminating NUL: a longer path can never connect.
        if path.as_os_str().len() > 107 {
            bail!(
                "the bus socket path {:?} is longer than the 107 bytes a Unix socket address holds",
                crate::text::escape_untrusted(&path.to_string_lossy())
            );
        }
        Ok(Bus::DecnetUnix(path))
    }

    pub fn transport(&self) -> Transport {
        match self {
            Bus::Redis(_) => Transport::Redis,
            Bus::DecnetUnix(_) => Transport::DecnetBus,
        }
    }
}

/// A bus value fit for a message, quoted (it may be empty): a password
/// redacted, control characters escaped.
fn shown(url: &str) -> String {
    format!("\"{}\"", crate::text::redact_url(url))
}

/// How the bus is named in warnings: no password, no raw control characters.
impl fmt::Display for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bus::Redis(url) => write!(f, "Redis at {}", crate::text::redact_url(url)),
            Bus::DecnetUnix(path) => write!(
                f,
                "DECNET's bus at {}",
                crate::text::escape_untrusted(&path.to_string_lossy())
            ),
        }
    }
}

impl Transport {
    /// Why a host id or decky name cannot be part of a channel on this bus, if it cannot.
    fn refuses_segment(self, segment: &str) -> Option<&'static str> {
        if !channel_safe(segment) {
            return Some("the name cannot form a channel");
        }
        // DECNET's server decodes a frame's header as strict ASCII and drops the
        // connection on anything else, which would lose every later event of the
        // pass; its topic tokenizer (Python's `str.isspace`) also splits on
        // ASCII separators that Rust does not count as whitespace.
        if self == Transport::DecnetBus && !segment.bytes().all(|b| b.is_ascii_graphic()) {
            return Some("DECNET's bus carries only printable ASCII channel names");
        }
        None
    }
}

/// The envelope DECNET's consumers read.
#[derive(Serialize)]
struct Envelope<'a, P> {
    v: u8,
    id: String,
    topic: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    ts: f64,
    payload: P,
}

impl<P: Serialize> Envelope<'_, P> {
    fn event(channel: String, kind: EventKind, ts: f64, payload: P) -> Event {
        let envelope = Envelope {
            v: 1,
            id: uuid::Uuid::new_v4().simple().to_string(),
            topic: &channel,
            kind: match kind {
                EventKind::Change => "state",
                EventKind::Heartbeat => "health",
            },
            ts,
            payload,
        };
        let message = serde_json::to_string(&envelope)
            .unwrap_or_else(|err| unreachable!("serializing an event: {err}"));
        Event {
            channel,
            message,
            kind,
        }
    }
}

#[derive(Serialize)]
struct Payload<'a> {
    host_uuid: &'a str,
    name: &'a str,
    state: &'a str,
    transition: &'static str,
    source: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_state: Option<&'a str>,
}

/// Builds the events of a written plan for a bus of `transport`; `ts` is the
/// commit time in epoch seconds.
pub fn events_for(plan: &Plan, ts: f64, transport: Transport) -> (Vec<Event>, Vec<Unannounceable>) {
    let mut events = Vec::with_capacity(plan.changes.len());
    let mut unannounceable = Vec::new();
    for change in &plan.changes {
        let refusal = transport
            .refuses_segment(&change.host_uuid)
            .or_else(|| transport.refuses_segment(&change.name));
        if let Some(reason) = refusal {
            unannounceable.push(Unannounceable {
                host_uuid: change.host_uuid.clone(),
                name: change.name.clone(),
                reason,
            });
            continue;
        }
        let (transition, previous_state) = match &change.kind {
            ChangeKind::Insert { .. } => ("inserted", None),
            ChangeKind::Delete { .. } => ("deleted", None),
            ChangeKind::Update {
                state: Some(transition),
                ..
            } => ("state_changed", Some(transition.from.as_str())),
            ChangeKind::Update { .. } => ("config_changed", None),
        };
        let channel = format!("decky.{}:{}.state", change.host_uuid, change.name);
        let payload = Payload {
            host_uuid: &change.host_uuid,
            name: &change.name,
            state: change.state(),
            transition,
            source: "fleet",
            previous_state,
        };
        events.push(Envelope::event(channel, EventKind::Change, ts, payload));
    }
    (events, unannounceable)
}

/// A channel segment must not hold the separators and wildcards of DECNET's topics.
fn channel_safe(segment: &str) -> bool {
    !segment.is_empty()
        && !segment
            .chars()
            .any(|c| matches!(c, '.' | '*' | '>') || c.is_whitespace())
}

/// What the heartbeat tells DECNET's Workers panel about the pass just made.
#[derive(Debug, Clone, Serialize)]
pub struct Health<'a> {
    pub host_uuid: &'a str,
    #[serde(flatten)]
    pub counts: Counts,
    /// `ok` or `unknown`, as in the JSON report.
    pub docker: &'static str,
    pub duration_ms: u64,
}

impl<'a> Health<'a> {
    pub fn of(plan: &Plan, host_uuid: &'a str, docker: DockerStatus, duration: Duration) -> Self {
        Health {
            host_uuid,
            counts: plan.counts(),
            docker: docker.as_str(),
            duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

/// DECNET's heartbeat payload, `{"worker": …, "ts": …}`, with the pass's figures after.
#[derive(Serialize)]
struct HeartbeatPayload<'a> {
    worker: &'static str,
    ts: f64,
    #[serde(flatten)]
    health: &'a Health<'a>,
}

/// The heartbeat event of a pass: type `health`, as DECNET's workers send it
/// (`decnet/bus/publish.py`), so its `WorkerRegistry` counts the reconciler alive.
pub fn heartbeat(health: &Health<'_>, ts: f64) -> Event {
    let payload = HeartbeatPayload {
        worker: "reconciler",
        ts,
        health,
    };
    Envelope::event(
        HEARTBEAT_CHANNEL.to_owned(),
        EventKind::Heartbeat,
        ts,
        payload,
    )
}

/// Why a bus took none of the events.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Redis(#[from] redis::RedisFailure),
    #[error(transparent)]
    DecnetBus(#[from] decnet_bus::BusError),
}

impl PublishError {
    /// The bus refused this user: a permission, not a bus that is down.
    pub fn permission_denied(&self) -> bool {
        matches!(self, PublishError::DecnetBus(decnet_bus::BusError::Connect(err))
            if err.kind() == std::io::ErrorKind::PermissionDenied)
    }
}

/// Publishes `events` in order on one connection, within `timeout` in all,
/// and returns those lost on their own (DECNET's bus refuses a frame over its
/// size limits; sending it would lose every later event). Nothing to publish
/// opens no connection. On error none count as delivered.
async fn publish<'e>(
    bus: &Bus,
    redis_access: &RedisAccess,
    timeout: Duration,
    events: &'e [Event],
) -> Result<Vec<&'e Event>, PublishError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    match bus {
        Bus::Redis(url) => {
            redis::publish(url, redis_access, timeout, events).await?;
            Ok(Vec::new())
        }
        Bus::DecnetUnix(socket) => Ok(decnet_bus::publish(socket, timeout, events).await?),
    }
}

/// Whether `bus` takes a connection within `timeout`, for `doctor`: DECNET's
/// bus is greeted and left (`HELLO`, `BYE`), Redis answers `PING`. Nothing is published.
pub async fn probe(
    bus: &Bus,
    redis_access: &RedisAccess,
    timeout: Duration,
) -> Result<(), PublishError> {
    match bus {
        Bus::Redis(url) => Ok(redis::ping(url, redis_access, timeout).await?),
        Bus::DecnetUnix(socket) => Ok(decnet_bus::probe(socket, timeout).await?),
    }
}

/// What became of a pass's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Announced {
    /// Change events the bus took.
    pub published: usize,
    /// Change events lost.
    pub lost: usize,
    /// `None` when no heartbeat was sent.
    pub heartbeat: Option<Heartbeat>,
}

/// Announces the committed `plan` on `bus` (reached with `redis_access` when
/// it is Redis), then `health` as the heartbeat when given, on one
/// connection; `ts` is the commit time in epoch seconds. Whatever is lost is
/// a warning.
pub async fn announce(
    bus: &Bus,
    redis_access: &RedisAccess,
    timeout: Duration,
    plan: &Plan,
    health: Option<&Health<'_>>,
    ts: f64,
) -> Announced {
    let (mut events, unannounceable) = events_for(plan, ts, bus.transport());
    for skipped in &unannounceable {
        warn!(
            "decky {:?} of host {:?} was written but not announced on {bus}: {}",
            skipped.name, skipped.host_uuid, skipped.reason
        );
    }
    let changes = events.len();
    events.extend(health.map(|health| heartbeat(health, ts)));
    let lost: Vec<&Event> = match publish(bus, redis_access, timeout, &events).await {
        Ok(too_large) => {
            for event in &too_large {
                warn!(
                    "the event on {} is over the size limits of {bus}: lost",
                    crate::text::escape_untrusted(&abbreviated(&event.channel))
                );
            }
            too_large
        }
        Err(err) => {
            let what = match (changes, health.is_some()) {
                (0, true) => "the heartbeat".to_owned(),
                (changes, true) => format!("{changes} event(s) and the heartbeat"),
                (changes, false) => format!("{changes} event(s)"),
            };
            warn!("{bus} failed ({err}): {what} lost; the database is converged all the same");
            events.iter().collect()
        }
    };
    let lost_changes = lost.iter().filter(|e| e.kind == EventKind::Change).count();
    let heartbeat_lost = lost.iter().any(|e| e.kind == EventKind::Heartbeat);
    Announced {
        published: changes - lost_changes,
        lost: lost_changes,
        heartbeat: health.map(|_| match heartbeat_lost {
            true => Heartbeat::Lost,
            false => Heartbeat::Sent,
        }),
    }
}

/// A channel short enough for a log line: a decky name may be kilobytes long.
fn abbreviated(channel: &str) -> String {
    const SHOWN: usize = 80;
    match channel.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("{}… ({} bytes)", &channel[..end], channel.len()),
        None => channel.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_segments_refuse_separators_wildcards_and_blanks() {
        for bad in ["a.b", "a*", "a>b", "a b", "a\tb", ""] {
            assert!(!channel_safe(bad), "{bad:?}");
        }
        assert!(channel_safe("decky-01"));
        assert!(channel_safe("local"));
    }

    #[test]
    fn decnet_bus_channels_are_printable_ascii_only() {
        for bad in ["dé", "a\u{1c}b", "nul\0", "esc\u{1b}"] {
            assert!(
                Transport::DecnetBus.refuses_segment(bad).is_some(),
                "{bad:?}"
            );
        }
        assert_eq!(Transport::Redis.refuses_segment("dé"), None);
        assert_eq!(Transport::DecnetBus.refuses_segment("decky-01:x_y"), None);
    }

    #[test]
    fn bus_urls_name_redis_or_decnets_socket() {
        assert_eq!(
            Bus::from_url("unix:///run/decnet/bus.sock").expect("ok"),
            Bus::DecnetUnix(PathBuf::from("/run/decnet/bus.sock"))
        );
        assert_eq!(
            Bus::from_url("unix:/tmp/b.sock").expect("ok"),
            Bus::DecnetUnix(PathBuf::from("/tmp/b.sock"))
        );
        assert_eq!(
            Bus::from_url("redis://:pw@127.0.0.1:6379/0").expect("ok"),
            Bus::Redis("redis://:pw@127.0.0.1:6379/0".to_owned())
        );
        let long = format!("unix:///{}", "s".repeat(120));
        let not_a_bus = "is not a bus URL: use redis://HOST:PORT/DB or unix:///PATH/bus.sock";
        let relative = "a unix: bus URL needs an absolute socket path";
        for (bad, message) in [
            ("", not_a_bus),
            ("/run/decnet/bus.sock", not_a_bus),
            ("unix://host/bus.sock", relative),
            ("unix:relative.sock", relative),
            ("nats://127.0.0.1:4222", not_a_bus),
            ("redis://[::1", "\"redis://[::1\" is not a Redis URL"),
            (
                long.as_str(),
                "longer than the 107 bytes a Unix socket address holds",
            ),
        ] {
            let err = format!("{:#}", Bus::from_url(bad).expect_err(bad));
            assert!(err.contains(message), "{bad:?}: {err}");
        }
    }

    #[test]
    fn bus_warnings_hide_passwords() {
        let bus = Bus::from_url("redis://:s3cret@127.0.0.1:6379/0").expect("ok");
        assert_eq!(bus.to_string(), "Redis at redis://:***@127.0.0.1:6379/0");
        let bus = Bus::from_url("unix:///run/decnet/bus.sock").expect("ok");
        assert_eq!(bus.to_string(), "DECNET's bus at /run/decnet/bus.sock");
    }

    #[test]
    fn the_heartbeat_is_decnets_health_event_with_the_pass_figures() {
        let health = Health {
            host_uuid: "local",
            counts: Counts {
                inserted: 1,
                deleted: 2,
                updated: 3,
            },
            docker: "ok",
            duration_ms: 12,
        };
        let event = heartbeat(&health, 1_764_193_200.5);
        assert_eq!(event.channel, "system.reconciler.health");
        let message: serde_json::Value = serde_json::from_str(&event.message).expect("JSON");
        assert_eq!(message["type"], "health");
        assert_eq!(message["topic"], "system.reconciler.health");
        assert_eq!(
            message["payload"],
            serde_json::json!({"worker": "reconciler", "ts": 1_764_193_200.5, "host_uuid": "local",
                "inserted": 1, "deleted": 2, "updated": 3, "docker": "ok", "duration_ms": 12})
        );
    }
}
