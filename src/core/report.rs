//! What a pass did, for rendering, the exit code and the metrics.

use std::collections::BTreeMap;

use super::{DockerStatus, Plan};

/// What a pass did.
#[derive(Debug, Clone)]
pub struct Report {
    pub dry_run: bool,
    pub host_uuid: String,
    pub docker: DockerStatus,
    pub plan: Plan,
    /// Change events the bus took; the heartbeat is not counted here.
    pub published: usize,
    /// Change events lost.
    pub publish_failed: usize,
    /// `None` when no heartbeat was due (not asked for, a dry run, or nothing to publish to).
    pub heartbeat: Option<Heartbeat>,
    /// This host's rows by state once the plan is written ([`Plan::rows_by_state`]).
    pub rows_by_state: BTreeMap<String, usize>,
}

impl Report {
    /// A pass that has planned (and, unless dry, written) `plan`, before anything is announced.
    pub fn new(dry_run: bool, host_uuid: &str, docker: DockerStatus, plan: Plan) -> Self {
        Report {
            dry_run,
            host_uuid: host_uuid.to_owned(),
            docker,
            plan,
            published: 0,
            publish_failed: 0,
            heartbeat: None,
            rows_by_state: BTreeMap::new(),
        }
    }
}

/// What became of a pass's heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    Sent,
    Lost,
}

impl Heartbeat {
    pub fn as_str(self) -> &'static str {
        match self {
            Heartbeat::Sent => "sent",
            Heartbeat::Lost => "lost",
        }
    }
}
