//! One convergence pass, top to bottom (SPEC §4, §5): read the state file,
//! list Docker, open this host's transaction, read its rows, plan, apply,
//! commit, announce, then record the pass in the metrics file. A dry run is
//! the same pass in a read-only transaction that applies nothing, announces
//! nothing and records nothing.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::de::IgnoredAny;
use tracing::{debug, info, warn};

use crate::bus::{self, Health};
use crate::config::Config;
use crate::core::{self, ChangeKind, DockerStatus, DockerView, Plan, PlanError, Report};
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
    let plan = core::plan(&desired.deckies, &snapshot, &docker, host).map_err(|err| match err {
        // A name is the state file's fault; the rest are this database's.
        PlanError::NameTooLong { .. } => anyhow::Error::new(err),
        _ => anyhow::Error::new(err).context(format!("database {}", config.db)),
    })?;
    report_unknown_fields(config, &desired, &plan);
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

/// Unknown decky fields (a newer DECNET's) are kept in `decky_config`. That
/// is a permanent condition, and a pass runs every 30 s: a warning on each
/// would be 2,880 a day. So it is a warning only on its first appearance: when
/// this pass writes (or, dry, would write) a row whose stored config gains an
/// unknown field it did not hold before; the rows remember it, so no state
/// is kept between passes. Otherwise it is said at `-v`.
fn report_unknown_fields(config: &Config, desired: &DesiredFleet, plan: &Plan) {
    if desired.unknown_fields.is_empty() {
        return;
    }
    let gained = unknown_fields_gained(plan, &desired.unknown_fields);
    // Debug-quoted: a field name is file content and must not forge a log line.
    let quoted = |fields: &[&str]| {
        fields
            .iter()
            .map(|field| format!("{field:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let file = config.state_file.display();
    if gained.is_empty() {
        let known: Vec<&str> = desired.unknown_fields.iter().map(String::as_str).collect();
        debug!(
            "state file {file}: unknown decky fields kept in decky_config: {} (as stored already)",
            quoted(&known)
        );
    } else {
        warn!(
            "state file {file}: unknown decky fields kept in decky_config: {}",
            quoted(&gained)
        );
    }
}

/// The unknown fields (of `unknown`, the state file's) that a row written by
/// `plan` gains: in the `decky_config` written, and not among the keys of the
/// one stored before (an inserted row stored none), in `unknown`'s order.
pub fn unknown_fields_gained<'a>(plan: &Plan, unknown: &'a [String]) -> Vec<&'a str> {
    let mut gained: Vec<&str> = Vec::new();
    for change in &plan.changes {
        let written = match &change.kind {
            ChangeKind::Insert { columns, .. } => &columns.config_json,
            ChangeKind::Update {
                config: Some(update),
                ..
            } => &update.columns.config_json,
            ChangeKind::Update { config: None, .. } | ChangeKind::Delete { .. } => continue,
        };
        let stored = change
            .stored
            .as_ref()
            .and_then(|stored| stored.decky_config.as_deref());
        let (written, stored) = (keys_of(Some(written)), keys_of(stored));
        for field in unknown {
            if written.contains(field.as_str())
                && !stored.contains(field.as_str())
                && !gained.contains(&field.as_str())
            {
                gained.push(field);
            }
        }
    }
    gained
}

/// The top-level keys of a `decky_config` text; none when it is absent or
/// not a JSON object (another writer may store anything there).
fn keys_of(config: Option<&str>) -> HashSet<String> {
    config
        .and_then(|text| serde_json::from_str::<HashMap<String, IgnoredAny>>(text).ok())
        .map(|map| map.into_keys().collect())
        .unwrap_or_default()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{FleetRow, Snapshot, StoreRules};

    fn fleet(deckies: &str) -> DesiredFleet {
        let text = format!(r#"{{"config": {{"deckies": {deckies}}}, "compose_path": "/x"}}"#);
        state_file::parse(text.as_bytes()).expect("a valid state file")
    }

    fn decky(name: &str, ip: &str, extra: &str) -> String {
        format!(
            r#"{{"name":"{name}","ip":"{ip}","services":["ssh"],"distro":"d","base_image":"b","hostname":"h"{extra}}}"#
        )
    }

    /// The rows a pass writing `desired` leaves.
    fn rows_of(desired: &DesiredFleet) -> Vec<FleetRow> {
        desired
            .deckies
            .iter()
            .map(|decky| FleetRow {
                host_uuid: "local".to_owned(),
                name: decky.name.clone(),
                services: decky.services_json.clone(),
                decky_config: Some(decky.config_json.clone()),
                decky_ip: Some(decky.ip.clone()),
                state: "running".to_owned(),
                stored_key: None,
                updated_at: None,
            })
            .collect()
    }

    /// What the real planner plans for `desired` over `rows`, and what it gains.
    fn gained(desired: &DesiredFleet, rows: &[FleetRow]) -> Vec<String> {
        let snapshot = Snapshot {
            rows: rows.to_vec(),
            read_at: chrono::Utc::now().naive_utc(),
            store: StoreRules::default(),
        };
        let plan =
            core::plan(&desired.deckies, &snapshot, &DockerView::Unknown, "local").expect("a plan");
        unknown_fields_gained(&plan, &desired.unknown_fields)
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn an_inserted_row_gains_its_unknown_fields() {
        let desired = fleet(&format!(
            "[{}, {}]",
            decky("a", "1", r#","zeta":1,"alpha":2"#),
            decky("b", "2", r#","alpha":null"#)
        ));
        assert_eq!(desired.unknown_fields, ["zeta", "alpha"]);
        assert_eq!(gained(&desired, &[]), ["zeta", "alpha"]);
    }

    #[test]
    fn rows_that_hold_the_fields_already_gain_nothing() {
        let desired = fleet(&format!("[{}]", decky("a", "1", r#","zeta":1"#)));
        let rows = rows_of(&desired);
        assert_eq!(gained(&desired, &rows), Vec::<String>::new());
        // A rewrite for another reason (a new IP) keeps the field: nothing gained.
        let moved = fleet(&format!("[{}]", decky("a", "9", r#","zeta":1"#)));
        assert_eq!(gained(&moved, &rows), Vec::<String>::new());
        // Nor when only the field's value changes.
        let changed = fleet(&format!("[{}]", decky("a", "1", r#","zeta":{"x":2}"#)));
        assert_eq!(gained(&changed, &rows), Vec::<String>::new());
    }

    #[test]
    fn a_row_stored_without_a_field_gains_it_and_only_it() {
        let before = fleet(&format!("[{}]", decky("a", "1", r#","zeta":1"#)));
        let rows = rows_of(&before);
        let after = fleet(&format!(
            "[{}]",
            decky("a", "1", r#","zeta":1,"omega":true"#)
        ));
        assert_eq!(gained(&after, &rows), ["omega"]);
        // A row DECNET wrote (no unknown field), or one whose config is not JSON.
        let plain = rows_of(&fleet(&format!("[{}]", decky("a", "1", ""))));
        assert_eq!(gained(&before, &plain), ["zeta"]);
        let mut garbled = plain.clone();
        garbled[0].decky_config = Some("not json".to_owned());
        assert_eq!(gained(&before, &garbled), ["zeta"]);
    }

    #[test]
    fn without_unknown_fields_nothing_is_gained() {
        let desired = fleet(&format!("[{}]", decky("a", "1", "")));
        assert!(desired.unknown_fields.is_empty());
        assert_eq!(gained(&desired, &[]), Vec::<String>::new());
    }
}
