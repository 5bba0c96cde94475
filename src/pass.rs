//! One convergence pass: read the state file, ask Docker, plan and apply in one
//! DB transaction, then announce what was written (SPEC §4, §5).

use anyhow::{Context, Result};
use tracing::{info, warn};

use crate::config::Config;
use crate::db;
use crate::events::{self, Bus};
use crate::plan::{self, DockerView, FleetRow, Plan};
use crate::state_file;

/// What a pass did, for rendering and the exit code.
#[derive(Debug, Clone)]
pub struct PassReport {
    pub dry_run: bool,
    pub host_uuid: String,
    pub docker_known: bool,
    pub plan: Plan,
    /// Change events the bus took; the heartbeat is not counted here.
    pub published: usize,
    /// Change events lost.
    pub publish_failed: usize,
    /// `None` when no heartbeat was asked for (or the pass was dry, or publishes nothing).
    pub heartbeat: Option<Heartbeat>,
}

/// What became of a pass's heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    Sent,
    Lost,
}

pub fn run(config: &Config) -> Result<PassReport> {
    let started = std::time::Instant::now();
    let desired = state_file::read(&config.state_file)?;
    if !desired.unknown_fields.is_empty() {
        // Debug-quoted: a field name is file content and must not forge a log line.
        let fields: Vec<String> = desired
            .unknown_fields
            .iter()
            .map(|f| format!("{f:?}"))
            .collect();
        warn!(
            "state file {}: unknown decky fields kept in decky_config: {}",
            config.state_file.display(),
            fields.join(", ")
        );
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // Docker is asked before the DB lock is taken, and only then, so that a slow
    // daemon never holds DECNET's writers up; rows written after this moment
    // keep their state (the planner's rule).
    let docker = list_containers(&runtime, config);

    let host = config.host_uuid.as_str();
    let plan = if config.dry_run {
        let rows = match db::open_read_only(&config.db, config.db_busy_timeout)? {
            Some(mut db) => db.read_rows(host)?,
            None => Vec::new(),
        };
        plan::plan(&desired.deckies, &rows, &docker, host)
    } else {
        let mut plan_on = |rows: &[FleetRow]| plan::plan(&desired.deckies, rows, &docker, host);
        db::open(&config.db, config.db_busy_timeout)?.reconcile(host, &mut plan_on)?
    };
    for skipped in &plan.skipped {
        info!(
            "decky {:?} belongs to host {:?}: skipped",
            skipped.name, skipped.host_uuid
        );
    }

    let mut report = PassReport {
        dry_run: config.dry_run,
        host_uuid: config.host_uuid.clone(),
        docker_known: matches!(docker, DockerView::Known(_)),
        plan,
        published: 0,
        publish_failed: 0,
        heartbeat: None,
    };
    if !config.dry_run {
        if let Some(bus) = &config.bus {
            announce(&runtime, bus, config, started, &mut report);
        }
    }
    Ok(report)
}

/// Docker's containers, or `Unknown` (with a warning) when Docker cannot say.
/// The view is stamped with the moment before the request went out.
fn list_containers(runtime: &tokio::runtime::Runtime, config: &Config) -> DockerView {
    let listed_at = chrono::Utc::now().naive_utc();
    match runtime.block_on(crate::docker::container_states(
        &config.docker_host,
        config.docker_timeout,
    )) {
        Ok(mut containers) => {
            containers.set_listed_at(listed_at);
            DockerView::Known(containers)
        }
        Err(err) => {
            warn!(
                "Docker at {} is unreachable ({err}): container states are unknown, so this pass makes no state updates",
                crate::terminal::redact_url(&config.docker_host)
            );
            DockerView::Unknown
        }
    }
}

/// Publishes the committed changes, then the heartbeat when asked for, on one
/// connection; a lost event is a warning, never an error.
fn announce(
    runtime: &tokio::runtime::Runtime,
    bus: &Bus,
    config: &Config,
    started: std::time::Instant,
    report: &mut PassReport,
) {
    let ts = chrono::Utc::now().timestamp_micros() as f64 / 1e6;
    let (mut events, unannounceable) = events::events_for(&report.plan, ts, bus.transport());
    for skipped in &unannounceable {
        warn!(
            "decky {:?} of host {:?} was written but not announced on {bus}: {}",
            skipped.name, skipped.host_uuid, skipped.reason
        );
    }
    let changes = events.len();
    if config.heartbeat {
        let health = events::Health::of(
            &report.plan,
            &report.host_uuid,
            report.docker_known,
            started.elapsed(),
        );
        events.push(events::heartbeat(&health, ts));
    }
    let lost: Vec<usize> = match runtime.block_on(events::publish(bus, config.bus_timeout, &events))
    {
        Ok(delivery) => {
            for &index in &delivery.too_large {
                warn!(
                    "the event on {} is over the size limits of {bus}: lost",
                    crate::terminal::escape(&abbreviated(&events[index].channel))
                );
            }
            delivery.too_large
        }
        Err(err) => {
            let what = match (changes, config.heartbeat) {
                (0, true) => "the heartbeat".to_owned(),
                (changes, true) => format!("{changes} event(s) and the heartbeat"),
                (changes, false) => format!("{changes} event(s)"),
            };
            warn!("{bus} failed ({err}): {what} lost; the database is converged all the same");
            (0..events.len()).collect()
        }
    };
    report.publish_failed = lost.iter().filter(|&&index| index < changes).count();
    report.published = changes - report.publish_failed;
    if config.heartbeat {
        report.heartbeat = Some(if lost.contains(&changes) {
            Heartbeat::Lost
        } else {
            Heartbeat::Sent
        });
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
