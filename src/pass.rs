//! One convergence pass, top to bottom (SPEC §4, §5): read the state file,
//! list Docker, open this host's transaction, read its rows, plan, apply,
//! commit, announce, then record the pass in the metrics file. A dry run is
//! the same pass in a read-only transaction that applies nothing, announces
//! nothing and records nothing.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use tracing::{debug, info, warn};

use crate::bus::{self, Health};
use crate::config::Config;
use crate::core::{self, DockerStatus, DockerView, PlanError, Report};
use crate::metrics;
use crate::state_file::{self, DesiredFleet};
use crate::store::{self, Access};

/// How long a pass goes on reading the state file again while it changes
/// under it: DECNET rewrites it in place (truncated, then written), and a
/// write that lands during a pass starts no pass of its own. Once when it is
/// first read and once after the DB's lock is taken: two of the bounds a
/// pass's worst case sums (docs/operating.md, "Time").
pub const STATE_FILE_SETTLE: Duration = Duration::from_secs(1);

/// One pass and, unless it is a dry run, its metrics, failed or not.
pub async fn run(config: &Config) -> Result<Report> {
    let started = Instant::now();
    let mut docker_status = None;
    let result = converge(config, started, &mut docker_status).await;
    if let (false, Some(path)) = (config.dry_run, &config.metrics_file) {
        let pass = match &result {
            Ok(report) => metrics::Pass::succeeded(report, started.elapsed()),
            Err(_) => metrics::Pass::failed(&config.host_uuid, docker_status, started.elapsed()),
        };
        record_metrics(path, &pass);
    }
    result
}

/// The pass itself; `docker_status` learns what Docker said as soon as it
/// has, so that a pass that fails later still reports it.
async fn converge(
    config: &Config,
    started: Instant,
    docker_status: &mut Option<DockerStatus>,
) -> Result<Report> {
    let mut desired = read_state_file(config, Instant::now() + STATE_FILE_SETTLE).await?;
    warn_of_unknown_fields(config, &desired);
    let warned_of = desired.unknown_fields.clone();
    // Docker is asked before the DB lock is taken, and only then, so that a slow
    // daemon never holds DECNET's writers up; rows written after this moment
    // keep their state (the planner's rule).
    let docker = list_containers(config).await;
    *docker_status = Some(docker.status());

    let host = config.host_uuid.as_str();
    let access = match config.dry_run {
        true => Access::ReadOnly,
        false => Access::ReadWrite,
    };
    let mut store = store::open(&config.db, access, config.schema, config.db_busy_timeout).await?;
    let mut transaction = store.begin(host).await?;
    let snapshot = transaction.snapshot().await?;
    // A write of the state file while this pass waited (for Docker, for the
    // lock) starts no pass of its own: systemd merges the path unit's trigger
    // into this running one. So the pass looks again now that it holds the
    // lock, and plans from the file as it is (docs/operating.md, "A pass on
    // every deploy and teardown").
    let settle_until = Instant::now() + STATE_FILE_SETTLE;
    while access == Access::ReadWrite
        && state_file::changed_since(&config.state_file, desired.version)
    {
        if Instant::now() >= settle_until {
            info!(
                "state file {} kept changing for {STATE_FILE_SETTLE:?} during the pass: this pass writes the version it read last, and the next pass converges the rest",
                config.state_file.display()
            );
            break;
        }
        debug!(
            "state file {} changed during the pass: reading it again",
            config.state_file.display()
        );
        desired = read_state_file(config, settle_until).await?;
    }
    if desired.unknown_fields != warned_of {
        warn_of_unknown_fields(config, &desired);
    }
    let plan = core::plan(&desired.deckies, &snapshot, &docker, host).map_err(|err| match err {
        // A name is the state file's fault; the rest are this database's.
        PlanError::NameTooLong { .. } => anyhow::Error::new(err),
        _ => anyhow::Error::new(err).context(format!("database {}", config.db)),
    })?;
    let rows_by_state = plan.rows_by_state(&snapshot.rows);
    if access == Access::ReadWrite {
        transaction.apply(&plan).await?;
        transaction.commit().await?;
    }
    for skipped in &plan.skipped {
        info!(
            "decky {:?} belongs to host {:?}: skipped",
            skipped.name, skipped.host_uuid
        );
    }

    let mut report = Report::new(config.dry_run, host, docker.status(), plan);
    report.rows_by_state = rows_by_state;
    if let (Access::ReadWrite, Some(bus)) = (access, &config.bus) {
        let health = config
            .heartbeat
            .then(|| Health::of(&report.plan, host, report.docker, started.elapsed()));
        let ts = chrono::Utc::now().timestamp_micros() as f64 / 1e6;
        let announced = bus::announce(
            bus,
            &config.redis_access,
            config.bus_timeout,
            &report.plan,
            health.as_ref(),
            ts,
        )
        .await;
        report.published = announced.published;
        report.publish_failed = announced.lost;
        report.heartbeat = announced.heartbeat;
    }
    Ok(report)
}

/// Reads the state file. A read that fails while the file changes under it
/// (DECNET's in-place write caught halfway) is tried again until `deadline`;
/// a file that is bad and stays so fails the pass at once.
async fn read_state_file(config: &Config, deadline: Instant) -> Result<DesiredFleet> {
    let path = &config.state_file;
    loop {
        let before = state_file::current_version(path);
        match state_file::read(path) {
            Ok(desired) => return Ok(desired),
            Err(err)
                if Instant::now() < deadline
                    && before.is_some_and(|before| state_file::changed_since(path, before)) =>
            {
                debug!(
                    "state file {} changed while it was read ({err}): reading it again",
                    path.display()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(err) => return Err(err.into()),
        }
    }
}

/// Writes the metrics file; a problem with it is a warning, never a failed pass.
fn record_metrics(path: &Path, pass: &metrics::Pass) {
    for warning in metrics::record(path, pass) {
        if warning.is_no_collector() {
            debug!("{warning} (prometheus-node-exporter is not installed)");
        } else {
            warn!("{warning}");
        }
    }
}

fn warn_of_unknown_fields(config: &Config, desired: &DesiredFleet) {
    if desired.unknown_fields.is_empty() {
        return;
    }
    // Debug-quoted: a field name is file content and must not forge a log line.
    let fields: Vec<String> = desired
        .unknown_fields
        .iter()
        .map(|field| format!("{field:?}"))
        .collect();
    warn!(
        "state file {}: unknown decky fields kept in decky_config: {}",
        config.state_file.display(),
        fields.join(", ")
    );
}

/// Docker's containers, or `Unknown` (with a warning) when Docker cannot say.
/// The view is stamped with the moment before the request went out.
async fn list_containers(config: &Config) -> DockerView {
    let listed_at = chrono::Utc::now().naive_utc();
    match crate::docker::container_states(&config.docker_host, config.docker_timeout).await {
        Ok(mut containers) => {
            containers.set_listed_at(listed_at);
            DockerView::Known(containers)
        }
        Err(err) => {
            warn!(
                "Docker at {} is unreachable ({err}): container states are unknown, so this pass makes no state updates",
                crate::text::redact_url(&config.docker_host)
            );
            DockerView::Unknown
        }
    }
}
