//! Redis pub/sub: every event of a pass as one `PUBLISH` in one pipelined round trip.

use std::time::Duration;

use redis::AsyncConnectionConfig;

use super::Event;

/// Why Redis took none of the events, in the operator's words: redis-rs's own
/// text for a broken exchange is a bare "broken pipe" or a parser dump.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RedisFailure(String);

impl From<redis::RedisError> for RedisFailure {
    fn from(err: redis::RedisError) -> Self {
        RedisFailure(match err.kind() {
            redis::ErrorKind::Parse | redis::ErrorKind::UnexpectedReturnType => format!(
                "its answer is not the Redis protocol: {}",
                err.detail().unwrap_or("unreadable")
            ),
            redis::ErrorKind::AuthenticationFailed => format!("it refused our credentials ({err})"),
            redis::ErrorKind::Server(_) | redis::ErrorKind::Extension => {
                format!("it refused the command: {}", server_words(err))
            }
            _ if err.is_connection_refusal() => "connection refused".to_owned(),
            _ if err.is_connection_dropped() => {
                "it closed the connection before answering every PUBLISH".to_owned()
            }
            _ => match std::error::Error::source(&err)
                .and_then(|source| source.downcast_ref::<std::io::Error>())
            {
                Some(io) => crate::net::io_failure(io),
                None if err.is_timeout() => "no answer in time".to_owned(),
                None => crate::text::escape_untrusted(&err.to_string()),
            },
        })
    }
}

/// The server's own error line (the first, when a pipeline collected one per command).
fn server_words(err: redis::RedisError) -> String {
    let fallback = err.to_string();
    match err.into_server_errors().as_deref() {
        Some([(_, first), ..]) => match first.details() {
            Some(details) => format!("{} {details}", first.code()),
            None => first.code().to_owned(),
        },
        _ => fallback,
    }
}

/// Publishes every event in one pipelined round trip, within `timeout` in all.
/// On error none count as delivered.
pub async fn publish(url: &str, timeout: Duration, events: &[Event]) -> Result<(), RedisFailure> {
    let mut pipeline = redis::pipe();
    for event in events {
        pipeline.publish(&event.channel, &event.message).ignore();
    }
    exchange(url, timeout, pipeline).await
}

/// Whether Redis answers a `PING` within `timeout`, for `doctor`.
pub async fn ping(url: &str, timeout: Duration) -> Result<(), RedisFailure> {
    let mut pipeline = redis::pipe();
    pipeline.cmd("PING").ignore();
    exchange(url, timeout, pipeline).await
}

/// Sends `pipeline` in one round trip on a connection of its own, within `timeout` in all.
async fn exchange(
    url: &str,
    timeout: Duration,
    pipeline: redis::Pipeline,
) -> Result<(), RedisFailure> {
    let exchange = async {
        let client = redis::Client::open(url)?;
        // redis-rs's own timers are a backstop, a second past ours, so that the
        // warning always says what ended the wait: our bound.
        let backstop = Some(timeout + Duration::from_secs(1));
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(backstop)
            .set_response_timeout(backstop);
        let mut connection = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        pipeline.query_async::<()>(&mut connection).await
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(published) => Ok(published?),
        Err(_) => Err(RedisFailure(format!("no answer within {timeout:?}"))),
    }
}
