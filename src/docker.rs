//! Docker, read-only: one `GET /containers/json?all=1`, negotiating the API
//! version only when the daemon refuses ours, bounded by a timeout (SPEC §3.3).
//! Any failure means "unknown", which the caller must never read as "no containers".

use std::time::Duration;

use bollard::query_parameters::ListContainersOptions;
use bollard::{Docker, API_DEFAULT_VERSION};
use serde::Deserialize;

use crate::plan::ContainerStates;

/// Why Docker's view is unknown for this pass.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("unsupported DOCKER_HOST scheme in {0:?} (use unix://, tcp:// or http://)")]
    UnsupportedHost(String),
    #[error(transparent)]
    Api(#[from] bollard::errors::Error),
}

/// Lists every container, running or not, by name with its state.
pub async fn container_states(
    docker_host: &str,
    timeout: Duration,
) -> Result<ContainerStates, DockerError> {
    let client = connect(docker_host, timeout)?;
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
    tokio::time::timeout(timeout, listing)
        .await
        .map_err(|_| DockerError::Timeout(timeout))?
        .map_err(DockerError::Api)
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

fn connect(docker_host: &str, timeout: Duration) -> Result<Docker, DockerError> {
    // bollard's own timeout is in whole seconds; ours wraps the whole exchange.
    let secs = timeout.as_secs().max(1);
    if docker_host.starts_with("unix://") {
        Ok(Docker::connect_with_unix(
            docker_host,
            secs,
            API_DEFAULT_VERSION,
        )?)
    } else if docker_host.starts_with("tcp://") || docker_host.starts_with("http://") {
        Ok(Docker::connect_with_http(
            docker_host,
            secs,
            API_DEFAULT_VERSION,
        )?)
    } else {
        Err(DockerError::UnsupportedHost(docker_host.to_owned()))
    }
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
