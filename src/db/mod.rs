//! The DB mirror `fleet_deckies`, behind one small interface with two adapters:
//! DECNET's SQLite file (`sqlite`) and a fleet's shared MySQL/MariaDB (`mysql`).
//! The SQL each pass writes is built here, once, for both.

pub mod files;
pub mod mysql;
pub mod sqlite;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use chrono::NaiveDateTime;

use crate::plan::{ChangeKind, FleetRow, Plan};

/// Where `fleet_deckies` lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbTarget {
    Sqlite(PathBuf),
    MySql(mysql::MySqlTarget),
}

impl std::fmt::Display for DbTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbTarget::Sqlite(path) => write!(f, "{}", path.display()),
            DbTarget::MySql(target) => write!(f, "{target}"),
        }
    }
}

/// Plans on this host's rows as read inside the pass's transaction.
pub type PlanOn<'a> = dyn FnMut(&[FleetRow]) -> Plan + 'a;

/// `updated_at` as stored: SQLite's six fractional digits or MySQL's whole seconds.
pub fn parse_stored_datetime(text: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").ok()
}

/// [`FleetRow::written_at`] from a stored `updated_at`: the last moment it may
/// stand for, given the `resolution` the backend keeps (a row written at
/// 12:00:05.7 is stored by MySQL as 12:00:05, which alone would pass for older
/// than a listing at 12:00:05.2). A stamp after `lock_won` (the pass's own clock,
/// once no other pass can write) comes from a clock that was ahead: it is no
/// evidence of a newer Docker view, and trusting it would block the row's state
/// updates until the clock caught up.
pub fn written_at(
    stored: Option<&str>,
    resolution: chrono::TimeDelta,
    lock_won: NaiveDateTime,
) -> Option<NaiveDateTime> {
    let stamp = parse_stored_datetime(stored?)?;
    (stamp <= lock_won).then(|| stamp + resolution - chrono::TimeDelta::nanoseconds(1))
}

/// The operations a pass needs from a database.
pub trait FleetStore {
    /// This host's rows, read without writing or creating anything (dry run).
    fn read_rows(&mut self, host_uuid: &str) -> Result<Vec<FleetRow>>;

    /// In one transaction that no other pass for this host can share: creates
    /// the table when absent, reads this host's rows, plans on them with
    /// `plan_on`, writes the plan and commits. A crash leaves the old rows or the new.
    /// Rows are stamped with the time the lock was won, not when the pass began.
    /// All its waiting for locks (and, on MySQL, for the server) ends within the
    /// busy timeout it was opened with, counted from the open: one budget.
    fn reconcile(&mut self, host_uuid: &str, plan_on: &mut PlanOn) -> Result<Plan>;
}

/// Opens the database for a pass that may write.
pub fn open(target: &DbTarget, busy_timeout: Duration) -> Result<Box<dyn FleetStore>> {
    Ok(match target {
        DbTarget::Sqlite(path) => Box::new(sqlite::SqliteStore::open(path, busy_timeout)?),
        DbTarget::MySql(target) => Box::new(mysql::MySqlStore::open(target, busy_timeout, false)?),
    })
}

/// Opens the database for a dry run; `None` when there is no database to read.
pub fn open_read_only(
    target: &DbTarget,
    busy_timeout: Duration,
) -> Result<Option<Box<dyn FleetStore>>> {
    Ok(match target {
        DbTarget::Sqlite(path) => sqlite::SqliteStore::open_read_only(path, busy_timeout)?
            .map(|db| Box::new(db) as Box<dyn FleetStore>),
        DbTarget::MySql(target) => Some(Box::new(mysql::MySqlStore::open(
            target,
            busy_timeout,
            true,
        )?)),
    })
}

/// One statement of a pass, with positional (`?`) parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowWrite<'a> {
    pub sql: &'static str,
    pub params: Vec<Param<'a>>,
    /// For messages: which decky this writes.
    pub name: &'a str,
}

const INSERT: &str = "INSERT INTO fleet_deckies (host_uuid, name, services, decky_config, decky_ip, \
     state, last_error, compose_hash, last_seen, updated_at) VALUES (?, ?, ?, ?, ?, ?, NULL, NULL, NULL, ?)";
/// A statement parameter. Every column a pass writes is text; a row that only
/// its stored key can address is deleted by that integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param<'a> {
    Text(&'a str),
    Integer(i64),
}

const DELETE: &str = "DELETE FROM fleet_deckies WHERE host_uuid = ? AND name = ?";
/// SQLite's rowid; only SQLite sets [`crate::plan::FleetRow::stored_key`].
const DELETE_BY_STORED_KEY: &str = "DELETE FROM fleet_deckies WHERE host_uuid = ? AND rowid = ?";
// Parameters in SET order: state and last_seen, then the config columns, then updated_at and the key.
const UPDATE_STATE: &str =
    "UPDATE fleet_deckies SET state = ?, last_seen = ?, updated_at = ? WHERE host_uuid = ? AND name = ?";
const UPDATE_CONFIG: &str =
    "UPDATE fleet_deckies SET services = ?, decky_ip = ?, decky_config = ?, \
     updated_at = ? WHERE host_uuid = ? AND name = ?";
const UPDATE_BOTH: &str =
    "UPDATE fleet_deckies SET state = ?, last_seen = ?, services = ?, decky_ip = ?, \
     decky_config = ?, updated_at = ? WHERE host_uuid = ? AND name = ?";

/// The statements that apply `plan`, each touching exactly one row, with `now`
/// in the backend's datetime text. Deletions come first, so that a rename a
/// case-insensitive collation sees as the same key (`Decky-A` → `decky-a`)
/// frees the key before the insert takes it.
pub fn writes<'a>(plan: &'a Plan, now: &'a str) -> Vec<RowWrite<'a>> {
    let deletes = plan
        .changes
        .iter()
        .filter(|c| matches!(c.kind, ChangeKind::Delete { .. }));
    let others = plan
        .changes
        .iter()
        .filter(|c| !matches!(c.kind, ChangeKind::Delete { .. }));
    deletes
        .chain(others)
        .map(|change| {
            let (host, name) = (Param::Text(&change.host_uuid), Param::Text(&change.name));
            let (sql, params) = match &change.kind {
                ChangeKind::Insert { state, columns } => (
                    INSERT,
                    vec![
                        host,
                        name,
                        Param::Text(columns.services_json.as_str()),
                        Param::Text(columns.config_json.as_str()),
                        Param::Text(columns.decky_ip.as_str()),
                        Param::Text(state.as_str()),
                        Param::Text(now),
                    ],
                ),
                ChangeKind::Delete {
                    stored_key: Some(key),
                    ..
                } => (DELETE_BY_STORED_KEY, vec![host, Param::Integer(*key)]),
                ChangeKind::Delete { .. } => (DELETE, vec![host, name]),
                ChangeKind::Update { state, config, .. } => {
                    let mut params = Vec::with_capacity(8);
                    if let Some(transition) = state {
                        params.extend([Param::Text(transition.to.as_str()), Param::Text(now)]);
                    }
                    if let Some(update) = config {
                        let columns = &update.columns;
                        params.extend([
                            Param::Text(columns.services_json.as_str()),
                            Param::Text(columns.decky_ip.as_str()),
                            Param::Text(columns.config_json.as_str()),
                        ]);
                    }
                    params.extend([Param::Text(now), host, name]);
                    let sql = match (state.is_some(), config.is_some()) {
                        (true, false) => UPDATE_STATE,
                        (false, true) => UPDATE_CONFIG,
                        (true, true) => UPDATE_BOTH,
                        (false, false) => unreachable!("the planner never makes an empty update"),
                    };
                    (sql, params)
                }
            };
            RowWrite {
                sql,
                params,
                name: &change.name,
            }
        })
        .collect()
}

/// The error for a write that did not touch exactly one row.
pub fn unexpected_row_count(write: &RowWrite, touched: u64) -> anyhow::Error {
    anyhow::anyhow!(
        "writing decky {:?} changed {touched} rows instead of one; the pass was rolled back",
        write.name
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Change, DeckyState};

    fn change(name: &str, kind: ChangeKind) -> Change {
        Change {
            host_uuid: "local".to_owned(),
            name: name.to_owned(),
            ip: None,
            services: Vec::new(),
            kind,
        }
    }

    #[test]
    fn a_stamp_stands_for_the_last_moment_of_its_resolution_and_never_for_the_future() {
        let lock_won = parse_stored_datetime("2026-11-26 12:00:05.500000").expect("time");
        let second = chrono::TimeDelta::seconds(1);
        let micro = chrono::TimeDelta::microseconds(1);
        let listed = parse_stored_datetime("2026-11-26 12:00:05.200000").expect("time");
        // MySQL's 12:00:05 may be 12:00:05.7, after a listing at 12:00:05.2.
        let whole = written_at(Some("2026-11-26 12:00:05"), second, lock_won).expect("past");
        assert!(whole >= listed, "{whole}");
        let earlier = written_at(Some("2026-11-26 12:00:04"), second, lock_won).expect("past");
        assert!(earlier < listed, "{earlier}");
        let fine = written_at(Some("2026-11-26 12:00:05.199999"), micro, lock_won).expect("past");
        assert!(fine < listed, "{fine}");
        assert_eq!(
            written_at(Some("2026-11-26 12:00:05.200000"), micro, lock_won),
            Some(listed + micro - chrono::TimeDelta::nanoseconds(1))
        );
        assert_eq!(
            written_at(Some("2999-01-01 00:00:00.000000"), micro, lock_won),
            None
        );
        assert_eq!(written_at(Some("yesterday"), micro, lock_won), None);
        assert_eq!(written_at(None, micro, lock_won), None);
    }

    #[test]
    fn deletions_are_written_before_inserts() {
        let plan = Plan {
            changes: vec![
                change(
                    "decky-a",
                    ChangeKind::Insert {
                        state: DeckyState::Running,
                        columns: crate::plan::ConfigColumns {
                            services_json: "[]".to_owned(),
                            decky_ip: "1".to_owned(),
                            config_json: "{}".to_owned(),
                        },
                    },
                ),
                change(
                    "Decky-A",
                    ChangeKind::Delete {
                        previous_state: "running".to_owned(),
                        stored_key: None,
                    },
                ),
            ],
            skipped: Vec::new(),
        };
        let writes = writes(&plan, "now");
        assert_eq!(writes[0].sql, DELETE);
        assert_eq!(
            writes[0].params,
            [Param::Text("local"), Param::Text("Decky-A")]
        );
        assert_eq!(writes[1].sql, INSERT);
        assert_eq!(writes[1].params.len(), INSERT.matches('?').count());
    }

    #[test]
    fn every_statement_gets_as_many_params_as_placeholders() {
        let columns = crate::plan::ConfigColumns {
            services_json: "[]".to_owned(),
            decky_ip: "1".to_owned(),
            config_json: "{}".to_owned(),
        };
        let transition = crate::plan::StateTransition {
            from: "running".to_owned(),
            to: DeckyState::Failed,
        };
        let update = crate::plan::ConfigUpdate {
            columns: columns.clone(),
            changed_fields: vec!["decky_ip"],
        };
        let kinds = [
            ChangeKind::Insert {
                state: DeckyState::Running,
                columns,
            },
            ChangeKind::Delete {
                previous_state: "failed".to_owned(),
                stored_key: None,
            },
            ChangeKind::Update {
                state: Some(transition.clone()),
                config: None,
                current_state: "running".to_owned(),
            },
            ChangeKind::Update {
                state: None,
                config: Some(update.clone()),
                current_state: "running".to_owned(),
            },
            ChangeKind::Update {
                state: Some(transition),
                config: Some(update),
                current_state: "running".to_owned(),
            },
        ];
        let plan = Plan {
            changes: kinds.into_iter().map(|kind| change("d", kind)).collect(),
            skipped: Vec::new(),
        };
        let writes = writes(&plan, "now");
        assert_eq!(writes.len(), 5);
        for write in writes {
            assert_eq!(
                write.params.len(),
                write.sql.matches('?').count(),
                "{}",
                write.sql
            );
            let key = if write.sql == INSERT {
                &write.params[..2]
            } else {
                &write.params[write.params.len() - 2..]
            };
            assert_eq!(key, [Param::Text("local"), Param::Text("d")]);
        }
    }
}
