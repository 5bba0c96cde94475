//! The planner: every rule of a pass (SPEC §4), from the state file's deckies,
//! this host's rows and Docker's view to the list of changes that converges
//! them, including the rules that depend on the store (how long a name may
//! be, how precisely it stamps a row).

use std::collections::BTreeMap;

use chrono::{NaiveDateTime, TimeDelta};
use rustc_hash::FxHashMap;
use serde_json::Value;

use super::{ContainerStates, Decky, DockerView, FleetRow, Snapshot};

/// A decky's state as DECNET's `fleet_deckies.state` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeckyState {
    Running,
    Degraded,
    Failed,
    TornDown,
}

impl DeckyState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeckyState::Running => "running",
            DeckyState::Degraded => "degraded",
            DeckyState::Failed => "failed",
            DeckyState::TornDown => "torn_down",
        }
    }
}

/// Everything one pass will do, in the order it is shown and applied.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub changes: Vec<Change>,
    /// State-file deckies that name another host: never written.
    pub skipped: Vec<SkippedDecky>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// This host's rows by state once the plan is written, from the rows it
    /// was made from (`before`): what the metrics report after a pass.
    pub fn rows_by_state(&self, before: &[FleetRow]) -> BTreeMap<String, usize> {
        let mut by_state: BTreeMap<String, usize> = BTreeMap::new();
        let mut add = |state: &str, delta: isize| {
            let count = by_state.entry(state.to_owned()).or_default();
            *count = count.saturating_add_signed(delta);
        };
        for row in before {
            add(&row.state, 1);
        }
        for change in &self.changes {
            match &change.kind {
                ChangeKind::Insert { state, .. } => add(state.as_str(), 1),
                ChangeKind::Delete { previous_state, .. } => add(previous_state, -1),
                ChangeKind::Update {
                    state: Some(transition),
                    ..
                } => {
                    add(&transition.from, -1);
                    add(transition.to.as_str(), 1);
                }
                ChangeKind::Update { state: None, .. } => {}
            }
        }
        by_state.retain(|_, count| *count > 0);
        by_state
    }

    /// How many rows the plan inserts, deletes and updates.
    pub fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        for change in &self.changes {
            match change.action() {
                Action::Inserted => counts.inserted += 1,
                Action::Deleted => counts.deleted += 1,
                Action::Updated => counts.updated += 1,
            }
        }
        counts
    }
}

/// Rows inserted, deleted and updated, as the summary line, the JSON report,
/// the heartbeat and the metrics all count them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub inserted: usize,
    pub deleted: usize,
    pub updated: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SkippedDecky {
    pub name: String,
    pub host_uuid: String,
}

/// One row to write.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub host_uuid: String,
    pub name: String,
    /// For display: the new IP, or a deleted row's last one.
    pub ip: Option<String>,
    /// For display: the new services, or a deleted row's last ones.
    pub services: Vec<String>,
    pub kind: ChangeKind,
    /// The row's config columns as stored, for a change to an existing row
    /// (`None` for an insert): what [`Change::diff`] shows as old.
    pub stored: Option<StoredColumns>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ChangeKind {
    Insert {
        state: DeckyState,
        columns: ConfigColumns,
    },
    Delete {
        previous_state: String,
        /// The row's [`FleetRow::stored_key`], when its name cannot address it.
        stored_key: Option<i64>,
    },
    /// At least one of `state` and `config` is set.
    Update {
        state: Option<StateTransition>,
        config: Option<ConfigUpdate>,
        current_state: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Inserted,
    Deleted,
    Updated,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Inserted => "inserted",
            Action::Deleted => "deleted",
            Action::Updated => "updated",
        }
    }
}

impl Change {
    pub fn action(&self) -> Action {
        match self.kind {
            ChangeKind::Insert { .. } => Action::Inserted,
            ChangeKind::Delete { .. } => Action::Deleted,
            ChangeKind::Update { .. } => Action::Updated,
        }
    }

    /// The row's state before this change, when it had one.
    pub fn previous_state(&self) -> Option<&str> {
        match &self.kind {
            ChangeKind::Insert { .. } => None,
            ChangeKind::Delete { previous_state, .. } => Some(previous_state),
            ChangeKind::Update { current_state, .. } => Some(current_state),
        }
    }

    /// The state the decky is in once this change is written (`torn_down` for a deletion).
    pub fn state(&self) -> &str {
        match &self.kind {
            ChangeKind::Insert { state, .. } => state.as_str(),
            ChangeKind::Delete { .. } => DeckyState::TornDown.as_str(),
            ChangeKind::Update {
                state: Some(transition),
                ..
            } => transition.to.as_str(),
            ChangeKind::Update { current_state, .. } => current_state,
        }
    }

    /// The columns an update rewrites, for display (`state`, `services`, `decky_ip`, `decky_config`).
    pub fn changed_fields(&self) -> Vec<&'static str> {
        let ChangeKind::Update { state, config, .. } = &self.kind else {
            return Vec::new();
        };
        let mut fields = Vec::new();
        if state.is_some() {
            fields.push("state");
        }
        if let Some(update) = config {
            fields.extend_from_slice(&update.changed_fields);
        }
        fields
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateTransition {
    pub from: String,
    pub to: DeckyState,
}

/// The three columns that mirror the state file, as a row holds them: any
/// text another writer left, or none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredColumns {
    pub services: String,
    pub decky_ip: Option<String>,
    pub decky_config: Option<String>,
}

impl StoredColumns {
    fn of(row: &FleetRow) -> Self {
        StoredColumns {
            services: row.services.clone(),
            decky_ip: row.decky_ip.clone(),
            decky_config: row.decky_config.clone(),
        }
    }
}

/// The three columns that mirror the state file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigColumns {
    pub services_json: String,
    pub decky_ip: String,
    pub config_json: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigUpdate {
    pub columns: ConfigColumns,
    pub changed_fields: Vec<&'static str>,
}

/// Why no plan can converge this host: nothing may be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "--host-uuid is longer than the {max} characters fleet_deckies holds in this database"
    )]
    HostIdTooLong { max: usize },
    #[error(
        "state file: decky {shown:?}… has a name of {chars} characters; fleet_deckies in this \
         database holds {max}. Nothing was written"
    )]
    NameTooLong {
        /// The name's first 40 characters.
        shown: String,
        chars: usize,
        max: usize,
    },
    #[error(
        "--host-uuid {ours:?} and the rows of host {theirs:?} are one host id to the database's \
         collation (it ignores case, accents and trailing spaces), so the table cannot keep their \
         rows apart; give this host an id that differs in more than that. Nothing was written"
    )]
    HostIdsCollide { ours: String, theirs: String },
}

/// Plans one pass for host `host_uuid` on the rows `snapshot` read.
///
/// The snapshot holds the rows the store returned for this host. One whose
/// host id is spelled otherwise means the store's collation holds two host
/// ids as one (MySQL ignores case, accents and trailing spaces): no plan can
/// keep their rows apart, so none is made.
///
/// A row written at or after the moment Docker was listed gets no state
/// update: whoever wrote it (another pass that won the lock first, or DECNET)
/// may have seen a newer Docker than ours, and writing ours back would revert
/// it. Its config is still repaired; the next pass, listing Docker afresh,
/// fixes its state if it is wrong.
pub fn plan(
    desired: &[Decky],
    snapshot: &Snapshot,
    docker: &DockerView,
    host_uuid: &str,
) -> Result<Plan, PlanError> {
    let max_key_chars = snapshot.store.max_key_chars;
    if let Some(max) = max_key_chars.filter(|&max| host_uuid.chars().count() > max) {
        return Err(PlanError::HostIdTooLong { max });
    }
    if let Some(other) = snapshot.rows.iter().find(|row| row.host_uuid != host_uuid) {
        return Err(PlanError::HostIdsCollide {
            ours: host_uuid.to_owned(),
            theirs: other.host_uuid.clone(),
        });
    }
    let rows = &snapshot.rows;
    // This host's rows no decky has claimed yet; what is left at the end is deleted.
    let mut unclaimed: FxHashMap<&str, &FleetRow> = rows
        .iter()
        .filter(|row| row.stored_key.is_none())
        .map(|row| (row.name.as_str(), row))
        .collect();
    let mut plan = Plan::default();

    for decky in desired {
        if let Some(owner) = decky.host_uuid.as_deref().filter(|h| *h != host_uuid) {
            plan.skipped.push(SkippedDecky {
                name: decky.name.clone(),
                host_uuid: owner.to_owned(),
            });
            continue;
        }
        let observed = match docker {
            DockerView::Known(containers) => Some((aggregate_state(decky, containers), containers)),
            DockerView::Unknown => None,
        };
        let mut stored = None;
        let kind = match unclaimed.remove(decky.name.as_str()) {
            None => {
                check_name_length(&decky.name, max_key_chars)?;
                ChangeKind::Insert {
                    state: observed.map_or(DeckyState::Running, |(state, _)| state),
                    columns: config_columns(decky),
                }
            }
            Some(row) => {
                let state = observed
                    .filter(|(_, view)| !written_since(row, view, snapshot))
                    .map(|(state, _)| state)
                    .filter(|observed| observed.as_str() != row.state)
                    .map(|to| StateTransition {
                        from: row.state.clone(),
                        to,
                    });
                let config = config_update(decky, row);
                if state.is_none() && config.is_none() {
                    continue;
                }
                stored = Some(StoredColumns::of(row));
                ChangeKind::Update {
                    state,
                    config,
                    current_state: row.state.clone(),
                }
            }
        };
        plan.changes.push(Change {
            host_uuid: host_uuid.to_owned(),
            name: decky.name.clone(),
            ip: Some(decky.ip.clone()),
            services: decky.services.clone(),
            kind,
            stored,
        });
    }

    for row in rows {
        if row.stored_key.is_some() || unclaimed.contains_key(row.name.as_str()) {
            plan.changes.push(Change {
                host_uuid: host_uuid.to_owned(),
                name: row.name.clone(),
                ip: row.decky_ip.clone(),
                services: services_for_display(&row.services),
                kind: ChangeKind::Delete {
                    previous_state: row.state.clone(),
                    stored_key: row.stored_key,
                },
                stored: Some(StoredColumns::of(row)),
            });
        }
    }
    // Inserts, then deletes, then updates; by name within each, so output is stable.
    plan.changes
        .sort_by(|a, b| (a.action() as u8, &a.name).cmp(&(b.action() as u8, &b.name)));
    Ok(plan)
}

/// A name the table cannot hold makes the state file bad for this store.
fn check_name_length(name: &str, max_key_chars: Option<usize>) -> Result<(), PlanError> {
    let chars = name.chars().count();
    match max_key_chars {
        Some(max) if chars > max => Err(PlanError::NameTooLong {
            shown: name.chars().take(40).collect(),
            chars,
            max,
        }),
        _ => Ok(()),
    }
}

/// Whether `row` may have been written after Docker was asked for `view`.
fn written_since(row: &FleetRow, view: &ContainerStates, snapshot: &Snapshot) -> bool {
    match (view.listed_at(), written_at(row, snapshot)) {
        (Some(listed), Some(written)) => written >= listed,
        _ => false,
    }
}

/// The latest moment a row's `updated_at` may stand for, given the resolution
/// the store keeps (a row written at 12:00:05.7 is stored by MySQL as
/// 12:00:05, which alone would pass for older than a listing at 12:00:05.2).
/// `None` when the stamp is not a datetime, or lies after the moment the rows
/// were read: it comes from a clock that was ahead, is no evidence of a newer
/// Docker view, and trusting it would block the row's state updates until the
/// clock caught up.
pub fn written_at(row: &FleetRow, snapshot: &Snapshot) -> Option<NaiveDateTime> {
    let stamp =
        NaiveDateTime::parse_from_str(row.updated_at.as_deref()?, "%Y-%m-%d %H:%M:%S%.f").ok()?;
    (stamp <= snapshot.read_at)
        .then(|| stamp + snapshot.store.stamp_resolution - TimeDelta::nanoseconds(1))
}

/// SPEC §4.2: a decky's state from its expected containers `<name>-<service>`.
pub fn aggregate_state(decky: &Decky, containers: &ContainerStates) -> DeckyState {
    let mut existing = 0;
    let mut running = 0;
    let mut container_name = String::new();
    for service in &decky.services {
        container_name.clear();
        container_name.push_str(&decky.name);
        container_name.push('-');
        container_name.extend(service.chars().map(|c| if c == '_' { '-' } else { c }));
        if let Some(is_running) = containers.is_running(&container_name) {
            existing += 1;
            running += usize::from(is_running);
        }
    }
    let expected = decky.services.len();
    if running == expected {
        DeckyState::Running
    } else if existing == 0 {
        DeckyState::TornDown
    } else if running == 0 {
        DeckyState::Failed
    } else {
        DeckyState::Degraded
    }
}

fn config_columns(decky: &Decky) -> ConfigColumns {
    ConfigColumns {
        services_json: decky.services_json.clone(),
        decky_ip: decky.ip.clone(),
        config_json: decky.config_json.clone(),
    }
}

/// The config columns that differ in meaning from the state file, if any.
fn config_update(decky: &Decky, row: &FleetRow) -> Option<ConfigUpdate> {
    let mut changed_fields = Vec::new();
    if !same_json(&row.services, &decky.services_json) {
        changed_fields.push("services");
    }
    if row.decky_ip.as_deref() != Some(decky.ip.as_str()) {
        changed_fields.push("decky_ip");
    }
    if !row
        .decky_config
        .as_deref()
        .is_some_and(|stored| same_json(stored, &decky.config_json))
    {
        changed_fields.push("decky_config");
    }
    (!changed_fields.is_empty()).then(|| ConfigUpdate {
        columns: config_columns(decky),
        changed_fields,
    })
}

/// Whether two JSON texts mean the same: key order, spacing and `5` vs `5.0` do
/// not matter. Text that is not JSON never equals anything, so it gets repaired.
fn same_json(stored: &str, desired: &str) -> bool {
    if stored == desired {
        return true;
    }
    match (
        serde_json::from_str::<Value>(stored),
        serde_json::from_str::<Value>(desired),
    ) {
        (Ok(stored), Ok(desired)) => equivalent(&stored, &desired),
        _ => false,
    }
}

/// Whether two JSON values mean the same (see [`same_json`]).
pub(super) fn equivalent(a: &Value, b: &Value) -> bool {
    match (a, b) {
        // `5` and `5.0` are one value; two integers are compared exactly, since
        // as floats 9007199254740993 and 9007199254740992 would be equal.
        (Value::Number(x), Value::Number(y)) => {
            x == y || ((x.is_f64() || y.is_f64()) && x.as_f64() == y.as_f64())
        }
        (Value::Array(xs), Value::Array(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| equivalent(x, y))
        }
        (Value::Object(xs), Value::Object(ys)) => {
            xs.len() == ys.len()
                && xs
                    .iter()
                    .all(|(key, x)| ys.get(key).is_some_and(|y| equivalent(x, y)))
        }
        _ => a == b,
    }
}

fn services_for_display(services_json: &str) -> Vec<String> {
    serde_json::from_str(services_json).unwrap_or_else(|_| vec![services_json.to_owned()])
}

#[cfg(test)]
pub(crate) mod tests;
