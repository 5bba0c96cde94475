//! The pure planning core: state-file deckies, this host's DB rows and Docker's
//! container states in, the list of changes that converges them out (SPEC §4).
//! No I/O happens here; every rule of the pass lives here.

use chrono::NaiveDateTime;
use rustc_hash::FxHashMap;
use serde_json::Value;

use crate::state_file::Decky;

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

/// Which containers exist and whether each is running, by name.
///
/// Keyed with FxHash rather than SipHash: the names come from root's state file
/// and the Docker daemon, not from a peer that could aim collisions at it, and
/// hashing was a tenth of planning 10,000 deckies.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerStates {
    running_by_name: FxHashMap<String, bool>,
    /// When Docker was asked; `None` for a view of no particular moment.
    listed_at: Option<NaiveDateTime>,
}

impl ContainerStates {
    /// Records a container by its Docker state string; anything but `running`
    /// (including a state this version has never heard of) counts as not running.
    pub fn insert(&mut self, name: impl Into<String>, state: &str) {
        self.running_by_name.insert(name.into(), state == "running");
    }

    /// Records when Docker was asked for this view (taken before the request
    /// went out). A row written at or after that moment may hold a newer view
    /// than this one, so the plan leaves its state alone (see [`plan`]).
    pub fn set_listed_at(&mut self, at: NaiveDateTime) {
        self.listed_at = Some(at);
    }

    /// Whether `row` may have been written after this view was asked for.
    fn is_older_than(&self, row: &FleetRow) -> bool {
        matches!((self.listed_at, row.written_at), (Some(listed), Some(written)) if written >= listed)
    }

    fn is_running(&self, name: &str) -> Option<bool> {
        self.running_by_name.get(name).copied()
    }

    pub fn len(&self) -> usize {
        self.running_by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.running_by_name.is_empty()
    }
}

/// What this pass knows of Docker. `Unknown` must never be read as "no containers".
#[derive(Debug, Clone, PartialEq)]
pub enum DockerView {
    Known(ContainerStates),
    Unknown,
}

/// The columns of a `fleet_deckies` row that the plan reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetRow {
    pub host_uuid: String,
    pub name: String,
    pub services: String,
    pub decky_config: Option<String>,
    pub decky_ip: Option<String>,
    pub state: String,
    /// Set by a backend when the stored name is not clean text (SQLite's rowid):
    /// no decky can match such a row, so the plan deletes it, by this key.
    pub stored_key: Option<i64>,
    /// The latest moment the row's `updated_at` may stand for (a backend that
    /// stores whole seconds rounds up), or `None` when the stamp is not a
    /// datetime or lies in the future. Compared with [`ContainerStates`]'s
    /// listing time: a row written after we asked Docker keeps its state.
    pub written_at: Option<NaiveDateTime>,
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

    pub fn count(&self, action: Action) -> usize {
        self.changes.iter().filter(|c| c.action() == action).count()
    }
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

/// Plans one pass for host `host_uuid`. Rows of other hosts are ignored even if
/// the caller passes them: this host's pass never touches them.
///
/// A row written at or after the moment Docker was listed gets no state
/// update: whoever wrote it (another pass that won the lock first, or DECNET)
/// may have seen a newer Docker than ours, and writing ours back would revert
/// it. Its config is still repaired; the next pass, listing Docker afresh,
/// fixes its state if it is wrong.
pub fn plan(desired: &[Decky], rows: &[FleetRow], docker: &DockerView, host_uuid: &str) -> Plan {
    let host_rows = || rows.iter().filter(|row| row.host_uuid == host_uuid);
    // This host's rows no decky has claimed yet; what is left at the end is deleted.
    let mut unclaimed: FxHashMap<&str, &FleetRow> = host_rows()
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
        let kind = match unclaimed.remove(decky.name.as_str()) {
            None => ChangeKind::Insert {
                state: observed.map_or(DeckyState::Running, |(state, _)| state),
                columns: config_columns(decky),
            },
            Some(row) => {
                let state = observed
                    .filter(|(_, view)| !view.is_older_than(row))
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
        });
    }

    for row in host_rows() {
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
            });
        }
    }
    // Inserts, then deletes, then updates; by name within each, so output is stable.
    plan.changes
        .sort_by(|a, b| (a.action() as u8, &a.name).cmp(&(b.action() as u8, &b.name)));
    plan
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

fn equivalent(a: &Value, b: &Value) -> bool {
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
mod tests;
