//! The DB mirror: DECNET's SQLite database and its `fleet_deckies` table
//! (SPEC §3.2, §9). Owns the schema, the connection settings, the row formats
//! and the one write transaction of a pass.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rusqlite::{
    params, Connection, ErrorCode, OpenFlags, OptionalExtension, Transaction, TransactionBehavior,
};

use crate::plan::{Change, ChangeKind, FleetRow, Plan};

/// DECNET's DDL, exactly as SPEC §9 gives it.
const CREATE_TABLE: &str = "CREATE TABLE fleet_deckies (
\thost_uuid VARCHAR NOT NULL,
\tname VARCHAR NOT NULL,
\tservices TEXT NOT NULL,
\tdecky_config TEXT,
\tdecky_ip VARCHAR,
\tstate VARCHAR NOT NULL,
\tlast_error TEXT,
\tcompose_hash VARCHAR,
\tlast_seen DATETIME,
\tupdated_at DATETIME NOT NULL,
\tPRIMARY KEY (host_uuid, name)
)";
const CREATE_INDEXES: [&str; 2] = [
    "CREATE INDEX ix_fleet_deckies_host_uuid ON fleet_deckies (host_uuid)",
    "CREATE INDEX ix_fleet_deckies_state ON fleet_deckies (state)",
];

const SELECT_HOST_ROWS: &str = "SELECT host_uuid, name, services, decky_config, decky_ip, state \
     FROM fleet_deckies WHERE host_uuid = ?1 ORDER BY name";

/// An open DECNET database.
pub struct FleetDb {
    conn: Connection,
    path: PathBuf,
}

impl FleetDb {
    /// Opens (creating the file if needed) for a pass that may write, with DECNET's settings.
    pub fn open(path: &Path, busy_timeout: Duration) -> Result<Self> {
        let conn = Connection::open(path)
            .with_context(|| format!("cannot open database {}", path.display()))?;
        let db = FleetDb {
            conn,
            path: path.to_owned(),
        };
        db.configure(busy_timeout)?;
        db.conn
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(|err| db.describe(err, "cannot switch to WAL journal mode"))?;
        db.conn
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(|err| db.describe(err, "cannot set synchronous=NORMAL"))?;
        Ok(db)
    }

    /// Opens for a dry run: read-only, and an absent database is not created (`None`).
    pub fn open_read_only(path: &Path, busy_timeout: Duration) -> Result<Option<Self>> {
        if !path.exists() {
            return Ok(None);
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("cannot open database {} read-only", path.display()))?;
        let db = FleetDb {
            conn,
            path: path.to_owned(),
        };
        db.configure(busy_timeout)?;
        Ok(Some(db))
    }

    fn configure(&self, busy_timeout: Duration) -> Result<()> {
        self.conn
            .busy_timeout(busy_timeout)
            .map_err(|err| self.describe(err, "cannot set the busy timeout"))
    }

    /// This host's rows, read without taking a write lock (dry run).
    pub fn read_rows(&self, host_uuid: &str) -> Result<Vec<FleetRow>> {
        if !table_exists(&self.conn).map_err(|err| self.describe(err, "cannot read the schema"))? {
            return Ok(Vec::new());
        }
        select_rows(&self.conn, host_uuid)
            .map_err(|err| self.describe(err, "cannot read fleet_deckies"))
    }

    /// Reads this host's rows, plans on them and applies the plan, all inside one
    /// `BEGIN IMMEDIATE` transaction: two passes at once cannot both apply, and a
    /// crash leaves the old rows or the new ones. Creates the table when absent.
    pub fn reconcile(
        &mut self,
        host_uuid: &str,
        now: &str,
        plan_on: impl FnOnce(&[FleetRow]) -> Plan,
    ) -> Result<Plan> {
        let path = self.path.clone();
        let describe = |err, what: &str| describe_error(&path, err, what);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|err| describe(err, "cannot start the write transaction"))?;
        if !table_exists(&tx).map_err(|err| describe(err, "cannot read the schema"))? {
            create_table(&tx).map_err(|err| describe(err, "cannot create fleet_deckies"))?;
        }
        let rows = select_rows(&tx, host_uuid)
            .map_err(|err| describe(err, "cannot read fleet_deckies"))?;
        let plan = plan_on(&rows);
        apply(&tx, &plan, now, &path)?;
        tx.commit()
            .map_err(|err| describe(err, "cannot commit the pass"))?;
        Ok(plan)
    }

    fn describe(&self, err: rusqlite::Error, what: &str) -> anyhow::Error {
        describe_error(&self.path, err, what)
    }
}

/// Adds the database path and, for a lock, what it means for the operator.
fn describe_error(path: &Path, err: rusqlite::Error, what: &str) -> anyhow::Error {
    let locked = matches!(
        err.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    );
    let err = anyhow::Error::new(err).context(format!("database {}: {what}", path.display()));
    if locked {
        err.context("the database stayed locked by another writer for longer than --db-busy-timeout; nothing was written")
    } else {
        err
    }
}

fn table_exists(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'fleet_deckies'",
        [],
        |_| Ok(()),
    )
    .optional()
    .map(|found| found.is_some())
}

fn create_table(tx: &Transaction) -> rusqlite::Result<()> {
    tx.execute(CREATE_TABLE, [])?;
    for index in CREATE_INDEXES {
        tx.execute(index, [])?;
    }
    Ok(())
}

fn select_rows(conn: &Connection, host_uuid: &str) -> rusqlite::Result<Vec<FleetRow>> {
    let mut statement = conn.prepare_cached(SELECT_HOST_ROWS)?;
    let rows = statement.query_map([host_uuid], |row| {
        Ok(FleetRow {
            host_uuid: row.get(0)?,
            name: row.get(1)?,
            services: row.get(2)?,
            decky_config: row.get(3)?,
            decky_ip: row.get(4)?,
            state: row.get(5)?,
        })
    })?;
    rows.collect()
}

/// Writes every change of the plan; each must touch exactly one row.
fn apply(tx: &Transaction, plan: &Plan, now: &str, path: &Path) -> Result<()> {
    for change in &plan.changes {
        let touched = apply_change(tx, change, now)
            .map_err(|err| describe_error(path, err, "cannot write fleet_deckies"))?;
        if touched != 1 {
            bail!(
                "{} of {:?} changed {touched} rows instead of one",
                change.action().as_str(),
                change.name
            );
        }
    }
    Ok(())
}

fn apply_change(tx: &Transaction, change: &Change, now: &str) -> rusqlite::Result<usize> {
    let key = (change.host_uuid.as_str(), change.name.as_str());
    match &change.kind {
        ChangeKind::Insert { state, columns } => tx
            .prepare_cached(
                "INSERT INTO fleet_deckies (host_uuid, name, services, decky_config, decky_ip, \
                 state, last_error, compose_hash, last_seen, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, NULL, NULL, ?7)",
            )?
            .execute(params![
                key.0,
                key.1,
                columns.services_json,
                columns.config_json,
                columns.decky_ip,
                state.as_str(),
                now
            ]),
        ChangeKind::Delete { .. } => tx
            .prepare_cached("DELETE FROM fleet_deckies WHERE host_uuid = ?1 AND name = ?2")?
            .execute(params![key.0, key.1]),
        ChangeKind::Update { state, config, .. } => {
            let mut touched = 0;
            if let Some(transition) = state {
                touched = tx
                    .prepare_cached(
                        "UPDATE fleet_deckies SET state = ?3, last_seen = ?4, updated_at = ?4 \
                         WHERE host_uuid = ?1 AND name = ?2",
                    )?
                    .execute(params![key.0, key.1, transition.to.as_str(), now])?;
            }
            if let Some(update) = config {
                touched = tx
                    .prepare_cached(
                        "UPDATE fleet_deckies SET services = ?3, decky_ip = ?4, decky_config = ?5, \
                         updated_at = ?6 WHERE host_uuid = ?1 AND name = ?2",
                    )?
                    .execute(params![
                        key.0,
                        key.1,
                        update.columns.services_json,
                        update.columns.decky_ip,
                        update.columns.config_json,
                        now
                    ])?;
            }
            Ok(touched)
        }
    }
}

/// DECNET's datetime text: UTC wall clock, always six fractional digits, no offset.
pub fn timestamp(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}
