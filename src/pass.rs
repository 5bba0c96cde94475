//! One convergence pass, top to bottom (SPEC §4, §5): read the state file,
//! list Docker, open this host's transaction, read its rows, plan, apply,
//! commit, announce. A dry run is the same pass in a read-only transaction
//! that applies nothing and announces nothing.

use std::time::Instant;

use anyhow::Result;
use tracing::{info, warn};

use crate::bus::{self, Health};
use crate::config::Config;
use crate::core::{self, DockerView, PlanError, Report};
use crate::state_file::{self, DesiredFleet};
use crate::store::{self, Access};

pub async fn run(config: &Config) -> Result<Report> {
    let started = Instant::now();
    let desired = state_file::read(&config.state_file)?;
    warn_of_unknown_fields(config, &desired);
    // Docker is asked before the DB lock is taken, and only then, so that a slow
    // daemon never holds DECNET's writers up; rows written after this moment
    // keep their state (the planner's rule).
    let docker = list_containers(config).await;

    let host = config.host_uuid.as_str();
    let access = match config.dry_run {
        true => Access::ReadOnly,
        false => Access::ReadWrite,
    };
    let mut store = store::open(&config.db, access, config.db_busy_timeout).await?;
    let mut transaction = store.begin(host).await?;
    let snapshot = transaction.snapshot().await?;
    let plan = core::plan(&desired.deckies, &snapshot, &docker, host).map_err(|err| match err {
        // A name is the state file's fault; the rest are this database's.
        PlanError::NameTooLong { .. } => anyhow::Error::new(err),
        _ => anyhow::Error::new(err).context(format!("database {}", config.db)),
    })?;
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
