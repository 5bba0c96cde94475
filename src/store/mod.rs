//! The DB mirror `fleet_deckies` (SPEC §3.2, §4): one transaction per pass,
//! the same for every backend — take this host's lock, read its rows, apply
//! the plan, commit — and the SQL of the writes, built once. A backend
//! (`sqlite`, `mysql`) supplies only its dialect: how it connects and locks,
//! its DDL, how it stamps a row and how its failures read.

pub mod files;
pub mod mysql;
#[cfg(test)]
mod properties;
pub mod sqlite;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::core::{ChangeKind, FleetRow, Plan, Snapshot, StoreRules};

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

/// Whose schema the database holds. DECNET's migrations create every table at
/// DECNET's first start, with a plain `CREATE TABLE`, and fail for good on a
/// table someone else made first (SPEC §3.2): so by default a pass creates
/// neither the database nor its table, and refuses to run without them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// DECNET's: an absent database or table is an error, and nothing is created.
    Decnets,
    /// `--create-table`, for a database DECNET never manages: a pass creates
    /// the database and the table when absent (a dry run plans on an empty table).
    CreateIfAbsent,
}

/// What `doctor` learns of a database, without writing to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// The database exists (a SQLite file; on MySQL, a database the server let us use).
    pub exists: bool,
    pub has_fleet_deckies: bool,
    /// DECNET's migrations' table: its presence says DECNET created the schema.
    pub has_alembic_version: bool,
    /// A SQLite database's file, every link resolved: where its `-wal` and
    /// `-shm` go.
    pub file: Option<PathBuf>,
}

/// Whether the pass may write (a dry run may not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadWrite,
    ReadOnly,
}

/// What a backend does for the one transaction of a pass.
#[async_trait(?Send)]
trait Dialect {
    /// What the planner must know of this backend.
    fn rules(&self) -> StoreRules;
    /// `at` as this backend stores a datetime.
    fn stamp(&self, at: DateTime<Utc>) -> String;
    /// Keeps every other pass for `host` out until the connection ends, and
    /// opens the transaction (a read-only one for a dry run).
    async fn begin(&mut self, host: &str) -> Result<()>;
    /// Whether `table` exists in the database.
    async fn table_exists(&mut self, table: &str) -> Result<bool>;
    /// Creates `fleet_deckies` with DECNET's DDL, inside the open transaction.
    async fn create_table(&mut self) -> Result<()>;
    async fn select_rows(&mut self, host: &str) -> Result<Vec<FleetRow>>;
    /// Runs one write; returns how many rows it touched.
    async fn execute(&mut self, write: &RowWrite<'_>) -> Result<u64>;
    /// Commits; once it returns, the rows are written whatever happens after.
    async fn commit(&mut self, host: &str) -> Result<()>;
}

/// An open database, for one pass.
pub struct Store {
    dialect: Box<dyn Dialect>,
    access: Access,
    schema: Schema,
    /// The database as messages name it (no password).
    name: String,
}

/// Opens `target` for one pass. Every wait of the pass on the database ends
/// within `busy_timeout`, counted from now: one budget.
pub async fn open(
    target: &DbTarget,
    access: Access,
    schema: Schema,
    busy_timeout: Duration,
) -> Result<Store> {
    let deadline = Instant::now() + busy_timeout;
    let dialect: Box<dyn Dialect> = match target {
        DbTarget::Sqlite(path) => Box::new(sqlite::Sqlite::open(path, access, schema, deadline)?),
        DbTarget::MySql(target) => Box::new(mysql::MySql::connect(target, access, deadline).await?),
    };
    Ok(Store {
        dialect,
        access,
        schema,
        name: target.to_string(),
    })
}

/// Looks at `target` read-only, for `doctor`: whether it exists and holds
/// DECNET's tables. Nothing is created, locked or written.
pub async fn inspect(target: &DbTarget, busy_timeout: Duration) -> Result<Inspection> {
    if let DbTarget::Sqlite(path) = target {
        // The check a pass makes before SQLite opens anything, and its files.
        let db_files = files::DbFiles::inspect_and_check(path)?;
        if db_files.db == files::FileKind::Absent {
            return Ok(Inspection {
                exists: false,
                has_fleet_deckies: false,
                has_alembic_version: false,
                file: Some(db_files.resolved),
            });
        }
        let [fleet_deckies, alembic_version] =
            sqlite::tables_present(&db_files, &["fleet_deckies", "alembic_version"])?[..]
        else {
            unreachable!("one answer per table asked")
        };
        return Ok(Inspection {
            exists: true,
            has_fleet_deckies: fleet_deckies,
            has_alembic_version: alembic_version,
            file: Some(db_files.resolved),
        });
    }
    let mut store = open(target, Access::ReadOnly, Schema::Decnets, busy_timeout).await?;
    Ok(Inspection {
        exists: true,
        has_fleet_deckies: store.dialect.table_exists("fleet_deckies").await?,
        has_alembic_version: store.dialect.table_exists("alembic_version").await?,
        file: None,
    })
}

/// Why a pass refuses a database without `fleet_deckies`.
pub fn missing_table(database: &str) -> String {
    format!(
        "database {database} has no table fleet_deckies: DECNET creates its tables on its first \
         start (any DECNET service, e.g. `decnet api`), and cannot start on a table made by anyone \
         else, so nothing was created; start DECNET once, or point --db (DECNET_DB_*) at DECNET's \
         database. For a database DECNET never manages, --create-table creates the table"
    )
}

/// A private in-memory SQLite database holding DECNET's table and `rows`,
/// through the real SQLite dialect: for the property tests and the fuzzer.
pub fn in_memory(rows: &[FleetRow]) -> Result<Store> {
    Ok(Store {
        dialect: Box::new(sqlite::Sqlite::in_memory(rows)?),
        access: Access::ReadWrite,
        schema: Schema::Decnets,
        name: ":memory:".to_owned(),
    })
}

impl Store {
    /// Opens this host's transaction: no other pass for `host` writes until it ends.
    pub async fn begin(&mut self, host: &str) -> Result<Transaction<'_>> {
        self.dialect.begin(host).await?;
        let has_table = match self.dialect.table_exists("fleet_deckies").await? {
            true => true,
            false if self.schema == Schema::Decnets => {
                anyhow::bail!("{}", missing_table(&self.name))
            }
            false if self.access == Access::ReadWrite => {
                self.dialect.create_table().await?;
                true
            }
            false => false,
        };
        Ok(Transaction {
            dialect: self.dialect.as_mut(),
            host: host.to_owned(),
            has_table,
            read_at: Utc::now(),
        })
    }
}

/// This host's transaction: read the rows, apply a plan, commit. Dropped
/// without a commit, nothing it wrote stays (the connection rolls back).
pub struct Transaction<'s> {
    dialect: &'s mut dyn Dialect,
    host: String,
    has_table: bool,
    /// When the rows were read; the rows a plan writes are stamped with it.
    read_at: DateTime<Utc>,
}

impl Transaction<'_> {
    /// This host's rows, with what the planner must know of this store.
    pub async fn snapshot(&mut self) -> Result<Snapshot> {
        self.read_at = Utc::now();
        let rows = match self.has_table {
            true => self.dialect.select_rows(&self.host).await?,
            false => Vec::new(),
        };
        Ok(Snapshot {
            rows,
            read_at: self.read_at.naive_utc(),
            store: self.dialect.rules(),
        })
    }

    /// Writes `plan`, every statement touching exactly one row.
    pub async fn apply(&mut self, plan: &Plan) -> Result<()> {
        let now = self.dialect.stamp(self.read_at);
        for write in writes(plan, &now) {
            let touched = self.dialect.execute(&write).await?;
            if touched != 1 {
                anyhow::bail!(
                    "writing decky {:?} changed {touched} rows instead of one; the pass was rolled back",
                    write.name
                );
            }
        }
        Ok(())
    }

    pub async fn commit(self) -> Result<()> {
        self.dialect.commit(&self.host).await
    }
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
/// SQLite's rowid; only SQLite sets [`crate::core::FleetRow::stored_key`].
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Change, DeckyState};

    fn change(name: &str, kind: ChangeKind) -> Change {
        Change {
            host_uuid: "local".to_owned(),
            name: name.to_owned(),
            ip: None,
            services: Vec::new(),
            kind,
            stored: None,
        }
    }

    #[test]
    fn deletions_are_written_before_inserts() {
        let plan = Plan {
            changes: vec![
                change(
                    "decky-a",
                    ChangeKind::Insert {
                        state: DeckyState::Running,
                        columns: crate::core::ConfigColumns {
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
        let columns = crate::core::ConfigColumns {
            services_json: "[]".to_owned(),
            decky_ip: "1".to_owned(),
            config_json: "{}".to_owned(),
        };
        let transition = crate::core::StateTransition {
            from: "running".to_owned(),
            to: DeckyState::Failed,
        };
        let update = crate::core::ConfigUpdate {
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
