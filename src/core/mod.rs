//! The pure core of a pass: the state file's deckies, this host's rows and
//! Docker's containers in, the plan out (SPEC §4), and the report of what a
//! pass did. Plain data and rules only: no I/O, and no import of an adapter.
//! Every rule of a pass lives in [`plan`].

mod diagnosis;
mod diff;
pub mod plan;
mod report;

use chrono::{NaiveDateTime, TimeDelta};
use rustc_hash::FxHashMap;

pub use diagnosis::{CheckResult, Diagnosis, ShownSetting};
pub use diff::{changed_keys, services_delta, FieldDiff, KeyChange, ServicesDelta};
pub use plan::{
    aggregate_state, plan, Action, Change, ChangeKind, ConfigColumns, ConfigUpdate, Counts,
    DeckyState, Plan, PlanError, SkippedDecky, StateTransition, StoredColumns,
};
pub use report::{Heartbeat, Report};

/// One decky of the state file, with the column text DECNET stores for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Decky {
    pub name: String,
    pub ip: String,
    pub services: Vec<String>,
    /// `None` means "whichever host deployed it", i.e. this one.
    pub host_uuid: Option<String>,
    /// The `services` column: a compact JSON list.
    pub services_json: String,
    /// The `decky_config` column: the decky with defaults filled in, in DECNET's key order.
    pub config_json: String,
}

/// The columns of a `fleet_deckies` row that the planner reads.
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
    /// `updated_at` as stored; the planner reads it for the staleness rule.
    pub updated_at: Option<String>,
}

/// This host's rows as the pass's transaction read them, with what the
/// planner must know of the store they came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub rows: Vec<FleetRow>,
    /// When the rows were read, on this process's clock, once no other pass
    /// could write any more (or, for a dry run, simply when).
    pub read_at: NaiveDateTime,
    pub store: StoreRules,
}

impl Snapshot {
    /// A table with no rows of this host, read now (a dry run on an absent database).
    pub fn empty(read_at: NaiveDateTime) -> Self {
        Snapshot {
            rows: Vec::new(),
            read_at,
            store: StoreRules::default(),
        }
    }
}

/// What a backend keeps, as far as the planner's rules depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreRules {
    /// The resolution of stored datetimes: a microsecond on SQLite, a second on MySQL.
    pub stamp_resolution: TimeDelta,
    /// The most characters a host id or decky name may have (`varchar(255)` on MySQL).
    pub max_key_chars: Option<usize>,
}

impl Default for StoreRules {
    fn default() -> Self {
        StoreRules {
            stamp_resolution: TimeDelta::microseconds(1),
            max_key_chars: None,
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

    pub fn listed_at(&self) -> Option<NaiveDateTime> {
        self.listed_at
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

impl DockerView {
    pub fn status(&self) -> DockerStatus {
        match self {
            DockerView::Known(_) => DockerStatus::Ok,
            DockerView::Unknown => DockerStatus::Unknown,
        }
    }
}

/// Whether Docker answered this pass, as the report, the heartbeat and the
/// metrics say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DockerStatus {
    Ok,
    Unknown,
}

impl DockerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DockerStatus::Ok => "ok",
            DockerStatus::Unknown => "unknown",
        }
    }
}
