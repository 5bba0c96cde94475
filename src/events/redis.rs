//! Redis pub/sub: every event of a pass as one `PUBLISH` in one pipelined round trip.

use std::time::Duration;

use redis::AsyncConnectionConfig;

use super::Event;

/// Publishes every event in one pipelined round trip, within `timeout` in all.
/// On error none count as delivered.
pub async fn publish(url: &str, timeout: Duration, events: &[Event]) -> redis::RedisResult<()> {
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
        pipeline.query_async::<()>(&mut connection).await
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
