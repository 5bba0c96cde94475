//! Docker, read-only: one `GET /containers/json?all=1`, negotiating the API
//! version only when the daemon refuses ours, bounded by a timeout and by the
//! size of the answer (SPEC §3.3). Any failure means "unknown", which the
//! caller must never read as "no containers".

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bollard::query_parameters::ListContainersOptions;
use bollard::{BollardRequest, Docker, API_DEFAULT_VERSION};
use http_body_util::{BodyExt, Empty};
use hyper::header::HeaderValue;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::plan::ContainerStates;

/// The largest answer body read from Docker. A listing
/// is about 1 kB per container, so this is tens of thousands of containers;
/// an endless or huge answer stops here instead of growing the process.
pub const MAX_DOCKER_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

/// Why Docker's view is unknown for this pass.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("unsupported DOCKER_HOST scheme in {0:?} (use unix://, tcp:// or http://)")]
    UnsupportedHost(String),
    #[error("its answer is larger than {} MiB", MAX_DOCKER_RESPONSE_BYTES >> 20)]
    TooLarge,
    #[error(transparent)]
    Api(#[from] bollard::errors::Error),
}

/// Lists every container, running or not, by name with its state.
pub async fn container_states(
    docker_host: &str,
    timeout: Duration,
) -> Result<ContainerStates, DockerError> {
    let overflowed = Arc::new(AtomicBool::new(false));
    let client = connect(docker_host, timeout, &overflowed)?;
    let listing = async {
        let options = ListContainersOptions {
            all: true,
            ..Default::default()
        };
        // bollard sends unversioned paths, which every daemon answers; only a
        // daemon that refuses our version costs the extra `GET /version`
        // (about 10 ms on dockerd 20.10, which runs runc to answer it).
        match list(&client, &options).await {
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 400,
                message,
            }) if message.contains("version") => {
                let client = client.negotiate_version().await?;
                list(&client, &options).await
            }
            listed => listed,
        }
    };
    let listed = tokio::time::timeout(timeout, listing)
        .await
        .map_err(|_| DockerError::Timeout(timeout))?;
    listed.map_err(|err| {
        if overflowed.load(Ordering::Relaxed) {
            DockerError::TooLarge
        } else {
            DockerError::Api(err)
        }
    })
}

/// One `GET /containers/json?all=1`.
async fn list(
    client: &Docker,
    options: &ListContainersOptions,
) -> Result<ContainerStates, bollard::errors::Error> {
    match client.list_containers(Some(options.clone())).await {
        Ok(summaries) => Ok(from_summaries(summaries)),
        // bollard's typed model refuses state strings it does not know; the
        // body travels in the error, so read names and states from it directly.
        Err(bollard::errors::Error::JsonDataError { contents, .. }) => from_raw_listing(&contents)
            .map_err(|_| bollard::errors::Error::JsonDataError {
                message: "unreadable container list".to_owned(),
                contents,
                column: 0,
            }),
        Err(err) => Err(err),
    }
}

/// A client whose every request goes over a connection of its own, through
/// `Endpoint::send`, which bounds the answer. bollard's own transports cannot
/// be bounded, and it collects a body frame by frame (about 50 bytes per frame
/// besides the data: a chunked answer of one-byte chunks costs ten times its
/// size); its custom-transport hook lets us read the answer into one bounded
/// buffer and hand bollard that, so bollard still builds the requests,
/// negotiates the version and decodes the answers.
fn connect(
    docker_host: &str,
    timeout: Duration,
    overflowed: &Arc<AtomicBool>,
) -> Result<Docker, DockerError> {
    let unsupported = || DockerError::UnsupportedHost(docker_host.to_owned());
    let (endpoint, authority) = if let Some(path) = docker_host.strip_prefix("unix://") {
        // The path is not an authority; Docker ignores the Host header.
        (Endpoint::Unix(path.into()), "localhost".to_owned())
    } else if docker_host.starts_with("tcp://") || docker_host.starts_with("http://") {
        let url = url::Url::parse(docker_host).map_err(|_| unsupported())?;
        // Docker's own default port for tcp://.
        let port = url.port_or_known_default().unwrap_or(2375);
        let host = match url.host().ok_or_else(unsupported)? {
            url::Host::Domain(name) => name.to_owned(),
            url::Host::Ipv4(ip) => ip.to_string(),
            url::Host::Ipv6(ip) => ip.to_string(),
        };
        let authority = format!("{}:{port}", url.host_str().unwrap_or_default());
        (Endpoint::Tcp(host, port), authority)
    } else {
        return Err(unsupported());
    };
    let endpoint = Arc::new(endpoint);
    let overflowed = Arc::clone(overflowed);
    let transport = move |request: BollardRequest| {
        let (endpoint, overflowed) = (Arc::clone(&endpoint), Arc::clone(&overflowed));
        async move { endpoint.send(request, &overflowed).await }
    };
    // bollard's own timeout is in whole seconds; ours wraps the whole exchange.
    let secs = timeout.as_secs().max(1);
    Ok(Docker::connect_with_custom_transport(
        transport,
        Some(format!("http://{authority}")),
        secs,
        API_DEFAULT_VERSION,
    )?)
}

type Response = hyper::Response<hyper::body::Incoming>;

/// Where the daemon listens.
enum Endpoint {
    Unix(std::path::PathBuf),
    Tcp(String, u16),
}

impl Endpoint {
    /// One HTTP/1.1 exchange on a fresh connection (bollard's own transports
    /// keep no idle connection either), its body read whole but bounded.
    async fn send(
        &self,
        mut request: BollardRequest,
        overflowed: &AtomicBool,
    ) -> Result<Response, bollard::errors::Error> {
        // bollard builds an absolute URI; on the wire it is origin-form plus Host.
        if let Some(authority) = request.uri().authority() {
            let host = HeaderValue::from_str(authority.as_str()).map_err(http::Error::from)?;
            request.headers_mut().insert(hyper::header::HOST, host);
        }
        let target = request
            .uri()
            .path_and_query()
            .map_or("/", |target| target.as_str())
            .parse()?;
        *request.uri_mut() = target;
        let response = match self {
            Endpoint::Unix(path) => {
                exchange(tokio::net::UnixStream::connect(path).await?, request).await?
            }
            Endpoint::Tcp(host, port) => {
                let stream = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                exchange(stream, request).await?
            }
        };
        let (head, mut body) = response.into_parts();
        let mut bytes = Vec::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                if (bytes.len() + data.len()) as u64 > MAX_DOCKER_RESPONSE_BYTES {
                    overflowed.store(true, Ordering::Relaxed);
                    return Err(io::Error::other(DockerError::TooLarge).into());
                }
                bytes.extend_from_slice(&data);
            }
        }
        replay(head, bytes).await
    }
}

async fn exchange<S, B>(stream: S, request: hyper::Request<B>) -> Result<Response, hyper::Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    // The connection's own errors (a hang-up, bad framing) reach the caller
    // through the response or its body; the task only drives the I/O.
    tokio::spawn(connection);
    sender.send_request(request).await
}

/// The answer again, from memory, in the form bollard takes (hyper's
/// `Incoming`, which only hyper can make): its status, content type and the
/// whole body, served over an in-process pipe.
async fn replay(
    head: http::response::Parts,
    body: Vec<u8>,
) -> Result<Response, bollard::errors::Error> {
    let mut answer = format!("HTTP/1.1 {}\r\n", head.status.as_u16()).into_bytes();
    if let Some(content_type) = head.headers.get(hyper::header::CONTENT_TYPE) {
        answer.extend_from_slice(b"Content-Type: ");
        answer.extend_from_slice(content_type.as_bytes());
        answer.extend_from_slice(b"\r\n");
    }
    answer.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    let (ours, mut daemon) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        // hyper refuses an answer that comes before its request: read that first.
        let mut request = Vec::new();
        let mut byte = [0u8; 1];
        while !request.ends_with(b"\r\n\r\n") {
            match daemon.read(&mut byte).await {
                Ok(1) => request.push(byte[0]),
                _ => return,
            }
        }
        if daemon.write_all(&answer).await.is_ok() && daemon.write_all(&body).await.is_ok() {
            // Held open until bollard has read it all and hung up.
            let _ = tokio::io::copy(&mut daemon, &mut tokio::io::sink()).await;
        }
    });
    let request = hyper::Request::get("/")
        .header(hyper::header::HOST, "localhost")
        .body(Empty::<hyper::body::Bytes>::new())?;
    Ok(exchange(ours, request).await?)
}

fn from_summaries(summaries: Vec<bollard::models::ContainerSummary>) -> ContainerStates {
    collect(summaries.into_iter().map(|summary| {
        let state = summary.state.map(|s| s.to_string()).unwrap_or_default();
        (summary.names, state)
    }))
}

/// The two fields of a container summary that the pass needs.
#[derive(Deserialize)]
struct RawSummary {
    #[serde(rename = "Names", default)]
    names: Option<Vec<String>>,
    #[serde(rename = "State", default)]
    state: Option<String>,
}

fn from_raw_listing(body: &str) -> serde_json::Result<ContainerStates> {
    let summaries: Vec<RawSummary> = serde_json::from_str(body)?;
    Ok(collect(summaries.into_iter().map(|summary| {
        (summary.names, summary.state.unwrap_or_default())
    })))
}

/// Each container under each of its names. Docker prefixes names with `/`;
/// legacy link aliases (`/other/alias`) are not names.
fn collect(containers: impl Iterator<Item = (Option<Vec<String>>, String)>) -> ContainerStates {
    let mut states = ContainerStates::default();
    for (names, state) in containers {
        for name in names.into_iter().flatten() {
            let name = name.strip_prefix('/').unwrap_or(&name);
            if !name.contains('/') {
                states.insert(name, &state);
            }
        }
    }
    states
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_listing_accepts_unknown_states_as_not_running() {
        let states = from_raw_listing(
            r#"[{"Names":["/d1-ssh"],"State":"hibernating"},{"Names":["/d1-ftp","/x/alias"],"State":"running"}]"#,
        )
        .expect("valid listing");
        assert_eq!(states.len(), 2);
        let mut expected = ContainerStates::default();
        expected.insert("d1-ssh", "hibernating");
        expected.insert("d1-ftp", "running");
        assert_eq!(states, expected);
    }
}
