//! The event bus: one Redis `PUBLISH` per written row, after the commit (SPEC §6).
//! An event is a notification that may be lost, never one for a change not written.

use std::time::Duration;

use redis::AsyncConnectionConfig;
use serde::Serialize;

use crate::plan::{ChangeKind, Plan};

/// One message ready to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub channel: String,
    pub message: String,
}

/// A change that cannot be announced because its channel name would be ambiguous.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unannounceable {
    pub host_uuid: String,
    pub name: String,
}

/// The envelope DECNET's consumers read.
#[derive(Serialize)]
struct Envelope<'a> {
    v: u8,
    id: String,
    topic: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    ts: f64,
    payload: Payload<'a>,
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

/// Builds the events of a written plan; `ts` is the commit time in epoch seconds.
pub fn events_for(plan: &Plan, ts: f64) -> (Vec<Event>, Vec<Unannounceable>) {
    let mut events = Vec::with_capacity(plan.changes.len());
    let mut unannounceable = Vec::new();
    for change in &plan.changes {
        if !channel_safe(&change.host_uuid) || !channel_safe(&change.name) {
            unannounceable.push(Unannounceable {
                host_uuid: change.host_uuid.clone(),
                name: change.name.clone(),
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
        let envelope = Envelope {
            v: 1,
            id: uuid::Uuid::new_v4().simple().to_string(),
            topic: &channel,
            kind: "state",
            ts,
            payload: Payload {
                host_uuid: &change.host_uuid,
                name: &change.name,
                state: change.state(),
                transition,
                source: "fleet",
                previous_state,
            },
        };
        let message = serde_json::to_string(&envelope)
            .unwrap_or_else(|err| unreachable!("serializing an event: {err}"));
        events.push(Event { channel, message });
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

/// Publishes every event in one pipelined round trip, within `timeout` in all.
/// Returns how many were delivered; on error none count as delivered.
pub async fn publish(url: &str, timeout: Duration, events: &[Event]) -> redis::RedisResult<usize> {
    if events.is_empty() {
        return Ok(0);
    }
    let exchange = async {
        let client = redis::Client::open(url)?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let mut connection = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let mut pipeline = redis::pipe();
        for event in events {
            pipeline.publish(&event.channel, &event.message).ignore();
        }
        pipeline.query_async::<()>(&mut connection).await?;
        Ok(events.len())
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "no answer",
                format!("within {timeout:?}"),
            )))
        })
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
}
