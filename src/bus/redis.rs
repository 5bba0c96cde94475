//! Redis pub/sub: every event of a pass as one `PUBLISH` in one pipelined round
//! trip, over TLS for a `rediss://` URL.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use redis::{AsyncConnectionConfig, ConnectionAddr, IntoConnectionInfo};

use super::Event;
use crate::tls::{self, CaFile, Trust};

/// What a Redis connection needs besides its URL: the CA that signs the
/// server's certificate (`--redis-ca`; without it, the system's), and a
/// password read from a file or a systemd credential (the URL's own comes
/// first, and is left in the URL). Prints without the password.
#[derive(Clone, Default)]
pub struct RedisAccess {
    pub ca: Option<CaFile>,
    /// The setting that named the CA (`--redis-ca` or `DECNET_REDIS_CA`), for messages.
    pub ca_setting: &'static str,
    pub password: Option<String>,
}

impl fmt::Debug for RedisAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisAccess")
            .field("ca", &self.ca)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl RedisAccess {
    fn trust(&self) -> Trust<'_> {
        match &self.ca {
            Some(ca) => Trust::CaFile {
                setting: self.ca_setting,
                path: ca.path(),
            },
            None => Trust::System {
                setting: "--redis-ca",
            },
        }
    }
}

/// Whether `url` is Redis over TLS (`rediss://`, as redis-rs reads it).
pub fn uses_tls(url: &str) -> bool {
    url.into_connection_info()
        .is_ok_and(|info| matches!(info.addr(), ConnectionAddr::TcpTls { .. }))
}

/// The password `url` holds, as redis-rs reads it (user info or `pass=`).
pub fn url_password(url: &str) -> Option<String> {
    let info = url.into_connection_info().ok()?;
    info.redis_settings().password().map(str::to_owned)
}

/// The client for `url` with `access` applied. The TLS name stays the URL's
/// host, whatever address the connection goes to.
fn client(url: &str, access: &RedisAccess) -> redis::RedisResult<redis::Client> {
    let mut info = url.into_connection_info()?;
    if let Some(password) = &access.password {
        let settings = info.redis_settings().clone().set_password(password);
        info = info.set_redis_settings(settings);
    }
    match &access.ca {
        Some(ca) => redis::Client::build_with_tls(
            info,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(ca.pem().to_vec()),
            },
        ),
        None => redis::Client::open(info),
    }
}

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

impl RedisFailure {
    /// `err` in words; a TLS refusal says what was trusted.
    fn of(err: redis::RedisError, access: &RedisAccess) -> Self {
        match tls::find_rustls_error(&err) {
            Some(refused) => {
                RedisFailure(format!("TLS: {}", tls::explain(refused, access.trust())))
            }
            None => RedisFailure::from(err),
        }
    }
}

/// Publishes every event in one pipelined round trip, within `timeout` in all.
/// On error none count as delivered.
pub async fn publish(
    url: &str,
    access: &RedisAccess,
    timeout: Duration,
    events: &[Event],
) -> Result<(), RedisFailure> {
    let mut pipeline = redis::pipe();
    for event in events {
        pipeline.publish(&event.channel, &event.message).ignore();
    }
    exchange(url, access, timeout, pipeline).await
}

/// Whether Redis answers a `PING` within `timeout`, for `doctor`.
pub async fn ping(url: &str, access: &RedisAccess, timeout: Duration) -> Result<(), RedisFailure> {
    let mut pipeline = redis::pipe();
    pipeline.cmd("PING").ignore();
    exchange(url, access, timeout, pipeline).await
}

/// Sends `pipeline` in one round trip on a connection of its own, within `timeout` in all.
async fn exchange(
    url: &str,
    access: &RedisAccess,
    timeout: Duration,
    pipeline: redis::Pipeline,
) -> Result<(), RedisFailure> {
    let deadline = tokio::time::Instant::now() + timeout;
    let exchange = async {
        let client = client(url, access).map_err(|err| RedisFailure::of(err, access))?;
        // redis-rs's own timers are a backstop, a second past ours, so that the
        // warning always says what ended the wait: our bound.
        let backstop = Some(timeout + Duration::from_secs(1));
        let mut config = AsyncConnectionConfig::new()
            .set_connection_timeout(backstop)
            .set_response_timeout(backstop);
        if let Some((host, port)) = tcp_address(client.get_connection_info().addr()) {
            let found = crate::net::resolve(host, port, deadline)
                .await
                .map_err(|err| RedisFailure(err.to_string()))?;
            config = config.set_dns_resolver(Found(found));
        }
        let mut connection = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|err| RedisFailure::of(err, access))?;
        pipeline
            .query_async::<()>(&mut connection)
            .await
            .map_err(|err| RedisFailure::of(err, access))
    };
    match tokio::time::timeout_at(deadline, exchange).await {
        Ok(answered) => answered,
        // A Redis without TLS on that port waits for a line, and a TLS
        // greeting holds none: over TLS, silence is often that.
        Err(_) if uses_tls(url) => Err(RedisFailure(format!(
            "no answer within {timeout:?}, over TLS: is that port's Redis without TLS?"
        ))),
        Err(_) => Err(RedisFailure(format!("no answer within {timeout:?}"))),
    }
}

/// The host and port of a TCP address (with or without TLS); none for a socket.
fn tcp_address(addr: &ConnectionAddr) -> Option<(&str, u16)> {
    match addr {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
            Some((host.as_str(), *port))
        }
        _ => None,
    }
}

/// The addresses `net::resolve` found, in place of redis-rs's own lookup,
/// which runs on tokio's blocking pool (see `net` for why not there). The
/// TLS name stays the URL's host.
struct Found(Vec<SocketAddr>);

impl redis::io::AsyncDNSResolver for Found {
    fn resolve<'a, 'b: 'a>(
        &'a self,
        _host: &'b str,
        _port: u16,
    ) -> redis::RedisFuture<'a, Box<dyn Iterator<Item = SocketAddr> + Send + 'a>> {
        let addresses: Box<dyn Iterator<Item = SocketAddr> + Send + 'a> =
            Box::new(self.0.iter().copied());
        Box::pin(std::future::ready(Ok(addresses)))
    }
}
