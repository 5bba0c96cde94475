//! Docker, read-only: one `GET /containers/json?all=1`, negotiating the API
//! version only when the daemon refuses ours, bounded by a timeout and by the
//! size of the answer (SPEC §3.3). Any failure means "unknown", which the
//! caller must never read as "no containers".
//!
//! The request is one bounded hyper exchange; its answer is decoded with
//! bollard's models of the Engine API. bollard's own client cannot bound an
//! answer's size, and a daemon that floods it would grow the process.

use std::time::Duration;

use bollard::models::{ContainerSummary, ErrorResponse, SystemVersion};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::core::ContainerStates;

/// The largest answer body read from Docker. A listing
/// is about 1 kB per container, so this is tens of thousands of containers;
/// an endless or huge answer stops here instead of growing the process.
pub const MAX_DOCKER_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

const LISTING: &str = "/containers/json?all=1";

/// Why Docker's view is unknown for this pass.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("unsupported DOCKER_HOST scheme in {0:?} (use unix://, tcp:// or http://)")]
    UnsupportedHost(String),
    #[error("its answer is larger than {} MiB", MAX_DOCKER_RESPONSE_BYTES >> 20)]
    TooLarge,
    #[error("{}", crate::net::io_failure(.0))]
    Connection(#[from] std::io::Error),
    #[error(transparent)]
    Connect(#[from] crate::net::ConnectError),
    #[error("its answer is not HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("it answered HTTP {status}: {message}")]
    Status { status: u16, message: String },
    #[error("its answer is not the Engine API's JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Lists every container, running or not, by name with its state.
pub async fn container_states(
    docker_host: &str,
    timeout: Duration,
) -> Result<ContainerStates, DockerError> {
    let endpoint = Endpoint::parse(docker_host)?;
    let deadline = tokio::time::Instant::now() + timeout;
    let listing = async {
        // Unversioned paths, which every daemon answers; only a daemon that
        // refuses our version costs the extra `GET /version` (about 10 ms on
        // dockerd 20.10, which runs runc to answer it).
        let body = match endpoint.get(LISTING, deadline).await {
            Err(DockerError::Status {
                status: 400,
                message,
            }) if message.contains("version") => {
                let version: SystemVersion =
                    serde_json::from_slice(&endpoint.get("/version", deadline).await?)?;
                let api = version.api_version.unwrap_or_default();
                endpoint.get(&format!("/v{api}{LISTING}"), deadline).await?
            }
            answered => answered?,
        };
        decode_listing(&body)
    };
    tokio::time::timeout_at(deadline, listing)
        .await
        .map_err(|_| DockerError::Timeout(timeout))?
}

/// Where the daemon listens, and the `Host` header it is sent.
enum Endpoint {
    Unix(std::path::PathBuf),
    Tcp {
        host: String,
        port: u16,
        authority: String,
    },
}

impl Endpoint {
    fn parse(docker_host: &str) -> Result<Self, DockerError> {
        let unsupported = || DockerError::UnsupportedHost(docker_host.to_owned());
        match crate::text::url_scheme(docker_host) {
            Some("unix") => {
                let path = docker_host["unix:".len()..]
                    .strip_prefix("//")
                    .ok_or_else(unsupported)?;
                Ok(Endpoint::Unix(path.into()))
            }
            Some("tcp" | "http") => {
                let url = url::Url::parse(docker_host).map_err(|_| unsupported())?;
                // Docker's own default port for tcp://.
                let port = url.port_or_known_default().unwrap_or(2375);
                let host = match url.host().ok_or_else(unsupported)? {
                    url::Host::Domain(name) => name.to_owned(),
                    url::Host::Ipv4(ip) => ip.to_string(),
                    url::Host::Ipv6(ip) => ip.to_string(),
                };
                let authority = format!("{}:{port}", url.host_str().unwrap_or_default());
                Ok(Endpoint::Tcp {
                    host,
                    port,
                    authority,
                })
            }
            _ => Err(unsupported()),
        }
    }

    /// One `GET` on a fresh connection; the body of a 2xx answer, read whole
    /// but bounded. A host name is looked up before `deadline` (see `net`).
    async fn get(
        &self,
        path: &str,
        deadline: tokio::time::Instant,
    ) -> Result<Vec<u8>, DockerError> {
        let authority = match self {
            // The path is not an authority; Docker ignores the Host header.
            Endpoint::Unix(_) => "localhost",
            Endpoint::Tcp { authority, .. } => authority,
        };
        let request = hyper::Request::get(path)
            .header(hyper::header::HOST, authority)
            .body(Empty::<Bytes>::new())
            .map_err(|err| DockerError::UnsupportedHost(err.to_string()))?;
        let response = match self {
            Endpoint::Unix(socket) => {
                exchange(tokio::net::UnixStream::connect(socket).await?, request).await?
            }
            Endpoint::Tcp { host, port, .. } => {
                let stream = crate::net::connect_tcp(host, *port, deadline).await?;
                exchange(stream, request).await?
            }
        };
        let status = response.status();
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                if (bytes.len() + data.len()) as u64 > MAX_DOCKER_RESPONSE_BYTES {
                    return Err(DockerError::TooLarge);
                }
                bytes.extend_from_slice(&data);
            }
        }
        if !status.is_success() {
            let message = serde_json::from_slice::<ErrorResponse>(&bytes)
                .map(|error| error.message)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
            return Err(DockerError::Status {
                status: status.as_u16(),
                message: crate::text::escape_untrusted(message.trim()),
            });
        }
        Ok(bytes)
    }
}

/// One HTTP/1.1 exchange on `stream`.
async fn exchange<S>(
    stream: S,
    request: hyper::Request<Empty<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, hyper::Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    // The connection's own errors (a hang-up, bad framing) reach the caller
    // through the response or its body; the task only drives the I/O.
    tokio::spawn(connection);
    sender.send_request(request).await
}

/// The names and states of a listing. bollard's model refuses a state string
/// it does not know, which a newer daemon may send: such a listing is read
/// again for the two fields the pass needs.
fn decode_listing(body: &[u8]) -> Result<ContainerStates, DockerError> {
    let pairs: Vec<(Option<Vec<String>>, String)> =
        match serde_json::from_slice::<Vec<ContainerSummary>>(body) {
            Ok(summaries) => summaries
                .into_iter()
                .map(|summary| {
                    let state = summary.state.map(|s| s.to_string()).unwrap_or_default();
                    (summary.names, state)
                })
                .collect(),
            Err(_) => serde_json::from_slice::<Vec<RawSummary>>(body)?
                .into_iter()
                .map(|summary| (summary.names, summary.state.unwrap_or_default()))
                .collect(),
        };
    let mut states = ContainerStates::default();
    // Docker prefixes names with `/`; legacy link aliases (`/other/alias`) are not names.
    for (names, state) in pairs {
        for name in names.into_iter().flatten() {
            let name = name.strip_prefix('/').unwrap_or(&name);
            if !name.contains('/') {
                states.insert(name, &state);
            }
        }
    }
    Ok(states)
}

/// The two fields of a container summary that the pass needs.
#[derive(Deserialize)]
struct RawSummary {
    #[serde(rename = "Names", default)]
    names: Option<Vec<String>>,
    #[serde(rename = "State", default)]
    state: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_with_unknown_states_counts_them_as_not_running() {
        let states = decode_listing(
            br#"[{"Names":["/d1-ssh"],"State":"hibernating"},{"Names":["/d1-ftp","/x/alias"],"State":"running"}]"#,
        )
        .expect("valid listing");
        let mut expected = ContainerStates::default();
        expected.insert("d1-ssh", "hibernating");
        expected.insert("d1-ftp", "running");
        assert_eq!(states, expected);
    }

    #[test]
    fn only_unix_tcp_and_http_endpoints_are_docker() {
        for host in [
            "unix:///var/run/docker.sock",
            "tcp://127.0.0.1",
            "http://h:1",
        ] {
            assert!(Endpoint::parse(host).is_ok(), "{host}");
        }
        for host in [
            "ssh://u@h",
            "unix:relative.sock",
            "npipe:////./pipe/docker",
            "",
        ] {
            assert!(
                matches!(Endpoint::parse(host), Err(DockerError::UnsupportedHost(_))),
                "{host}"
            );
        }
    }
}
