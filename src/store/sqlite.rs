//! DECNET's SQLite database (SPEC §3.2, §9): its DDL, its connection settings
//! (WAL, synchronous=NORMAL, busy timeout) and its datetime text.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension};

use super::files::{DbFiles, FileKind};
use super::{Access, Dialect, Param, RowWrite, Schema};
use crate::core::{FleetRow, StoreRules};

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

const SELECT_HOST_ROWS: &str =
    "SELECT host_uuid, name, services, decky_config, decky_ip, state, rowid, updated_at \
     FROM fleet_deckies WHERE host_uuid = ?1 ORDER BY name";

/// An open DECNET SQLite database.
pub struct Sqlite {
    /// `None` for a dry run on a database that does not exist: no rows.
    conn: Option<Connection>,
    path: PathBuf,
    access: Access,
    /// When `--db-busy-timeout`, counted from the open, runs out: the switch to
    /// WAL and `BEGIN IMMEDIATE` may each wait for the lock, but together no longer.
    lock_deadline: Instant,
}

impl Sqlite {
    pub fn open(
        path: &Path,
        access: Access,
        schema: Schema,
        lock_deadline: Instant,
    ) -> Result<Self> {
        // What the path and its companions are, before SQLite opens anything:
        // a FIFO would hang the open, a device read as an empty database.
        let files = DbFiles::inspect_and_check(path)?;
        refuse_absent(&files, schema)?;
        let conn = match access {
            Access::ReadWrite => Some(open_for_writing(&files, schema)?),
            Access::ReadOnly => open_read_only(&files)?,
        };
        let db = Sqlite {
            conn,
            path: path.to_owned(),
            access,
            lock_deadline,
        };
        db.bound_lock_wait()?;
        if access == Access::ReadWrite {
            if schema == Schema::Decnets && !db.has_table("fleet_deckies")? {
                // Refused before the switch to WAL below rewrites the file's header.
                anyhow::bail!("{}", super::missing_table(&path.display().to_string()));
            }
            let conn = db.conn()?;
            conn.pragma_update(None, "journal_mode", "WAL")
                .map_err(|err| db.describe(err, "cannot switch to WAL journal mode"))?;
            conn.pragma_update(None, "synchronous", "NORMAL")
                .map_err(|err| db.describe(err, "cannot set synchronous=NORMAL"))?;
        }
        Ok(db)
    }

    /// A private in-memory database holding DECNET's table and `rows`, for the
    /// property tests and the fuzzer: the real SQL of a pass, without a file.
    pub(super) fn in_memory(rows: &[FleetRow]) -> Result<Self> {
        let db = Sqlite {
            conn: Some(Connection::open_in_memory().context("cannot open an in-memory database")?),
            path: PathBuf::from(":memory:"),
            access: Access::ReadWrite,
            lock_deadline: Instant::now(),
        };
        db.create_table_now()?;
        let conn = db.conn()?;
        for row in rows {
            conn.execute(
                "INSERT INTO fleet_deckies (host_uuid, name, services, decky_config, decky_ip, \
                 state, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                rusqlite::params![
                    row.host_uuid,
                    row.name,
                    row.services,
                    row.decky_config,
                    row.decky_ip,
                    row.state,
                    row.updated_at
                        .as_deref()
                        .unwrap_or("2000-01-01 00:00:00.000000"),
                ],
            )
            .map_err(|err| db.describe(err, "cannot seed fleet_deckies"))?;
        }
        Ok(db)
    }

    fn conn(&self) -> Result<&Connection> {
        self.conn
            .as_ref()
            .with_context(|| format!("database {} does not exist", self.path.display()))
    }

    /// Cuts SQLite's busy timeout to what is left of the budget.
    fn bound_lock_wait(&self) -> Result<()> {
        match &self.conn {
            Some(conn) => conn
                .busy_timeout(self.lock_deadline.saturating_duration_since(Instant::now()))
                .map_err(|err| self.describe(err, "cannot set the busy timeout")),
            None => Ok(()),
        }
    }

    fn create_table_now(&self) -> Result<()> {
        let conn = self.conn()?;
        conn.execute(CREATE_TABLE, [])
            .and_then(|_| {
                CREATE_INDEXES
                    .iter()
                    .try_for_each(|sql| conn.execute(sql, []).map(drop))
            })
            .map_err(|err| self.describe(err, "cannot create fleet_deckies"))
    }

    fn has_table(&self, table: &str) -> Result<bool> {
        match &self.conn {
            Some(conn) => {
                table_in(conn, table).map_err(|err| self.describe(err, "cannot read the schema"))
            }
            None => Ok(false),
        }
    }

    fn describe(&self, err: rusqlite::Error, what: &str) -> anyhow::Error {
        describe_error(&self.path, err, what)
    }
}

/// DECNET's database is DECNET's to create (SPEC §3.2): unless the pass may
/// create it, an absent file is an error, before anything opens it. (A
/// dangling symbolic link counts as absent: SQLite would create its target.)
fn refuse_absent(files: &DbFiles, schema: Schema) -> Result<()> {
    if schema == Schema::Decnets && files.db == FileKind::Absent {
        anyhow::bail!(
            "database {} does not exist: DECNET creates it on its first start (any DECNET \
             service, e.g. `decnet api`), and cannot start on a database made by anyone else, so \
             nothing was created; start DECNET once, or point --db at DECNET's database. For a \
             database DECNET never manages, --create-table creates it",
            files.given.display()
        );
    }
    Ok(())
}

/// Opens for a pass that may write; creates the file only when the pass may
/// create the schema. SQLite opens the file [`DbFiles`] looked at: the
/// resolved path, absolute, so never read as a URI or `:memory:`.
fn open_for_writing(files: &DbFiles, schema: Schema) -> Result<Connection> {
    let create = match schema {
        Schema::CreateIfAbsent => OpenFlags::SQLITE_OPEN_CREATE,
        Schema::Decnets => OpenFlags::empty(),
    };
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | create | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    Connection::open_with_flags(&files.resolved, flags)
        .with_context(|| format!("cannot open database {}", files.given.display()))
}

/// Opens for a dry run: read-only; an absent database is not created (`None`).
///
/// Nothing is created either: when the database is not [in
/// use](DbFiles::in_use) (no `-wal`, `-shm` or `-journal` beside the real
/// file, wherever a link points), all of it is in the main file, which is then
/// opened immutable (no locks, no `-shm`), so that a user who may read the
/// database but not write its directory can dry-run, and no `-wal`/`-shm` is
/// left behind. Otherwise it is read through the writer's files, read-only.
fn open_read_only(files: &DbFiles) -> Result<Option<Connection>> {
    if files.db == FileKind::Absent {
        return Ok(None);
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let opened = match files.in_use() {
        true => Connection::open_with_flags(&files.resolved, flags),
        false => Connection::open_with_flags(
            file_uri(&files.resolved, "immutable=1"),
            flags | OpenFlags::SQLITE_OPEN_URI,
        ),
    };
    opened
        .map(Some)
        .with_context(|| format!("cannot open database {} read-only", files.given.display()))
}

#[async_trait(?Send)]
impl Dialect for Sqlite {
    fn rules(&self) -> StoreRules {
        StoreRules::default()
    }

    fn stamp(&self, at: DateTime<Utc>) -> String {
        timestamp(at)
    }

    /// `BEGIN IMMEDIATE` takes the write lock before the rows are read, so two
    /// passes at once serialize and the second plans on the first one's result.
    /// A dry run reads without a lock.
    async fn begin(&mut self, _host: &str) -> Result<()> {
        if self.access == Access::ReadOnly {
            return Ok(());
        }
        // Whatever the switch to WAL waited is taken off this wait.
        self.bound_lock_wait()?;
        self.conn()?
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|err| self.describe(err, "cannot start the write transaction"))
    }

    async fn table_exists(&mut self, table: &str) -> Result<bool> {
        self.has_table(table)
    }

    async fn create_table(&mut self) -> Result<()> {
        self.create_table_now()
    }

    async fn select_rows(&mut self, host: &str) -> Result<Vec<FleetRow>> {
        select_rows(self.conn()?, host)
            .map_err(|err| self.describe(err, "cannot read fleet_deckies"))
    }

    async fn execute(&mut self, write: &RowWrite<'_>) -> Result<u64> {
        let conn = self.conn()?;
        conn.prepare_cached(write.sql)
            .and_then(|mut statement| {
                let params = write.params.iter().map(|param| match *param {
                    Param::Text(text) => ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes())),
                    Param::Integer(number) => ToSqlOutput::Owned(number.into()),
                });
                statement.execute(rusqlite::params_from_iter(params))
            })
            .map(|touched| touched as u64)
            .map_err(|err| self.describe(err, "cannot write fleet_deckies"))
    }

    async fn commit(&mut self, _host: &str) -> Result<()> {
        self.conn()?
            .execute_batch("COMMIT")
            .map_err(|err| self.describe(err, "cannot commit the pass"))
    }
}

/// Which of `tables` the database [`DbFiles`] looked at holds, for
/// `doctor`, read without writing a byte: when it is not [in
/// use](DbFiles::in_use), all of it is in the main file, read immutable (as a
/// dry run reads an idle database); when it is, through the writer's files
/// with the `-shm` opened read-only (`readonly_shm`), so that not even the
/// read marks every reader leaves in the `-shm` are written.
pub fn tables_present(files: &DbFiles, tables: &[&str]) -> Result<Vec<bool>> {
    let parameters = match files.in_use() {
        true => "mode=ro&readonly_shm=1",
        false => "immutable=1",
    };
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(file_uri(&files.resolved, parameters), flags)
        .with_context(|| format!("cannot open database {} read-only", files.given.display()))?;
    tables
        .iter()
        .map(|table| {
            table_in(&conn, table)
                .map_err(|err| describe_error(&files.given, err, "cannot read the schema"))
        })
        .collect()
}

/// Whether the database holds `table`.
fn table_in(conn: &Connection, table: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [table],
        |_| Ok(()),
    )
    .optional()
    .map(|found| found.is_some())
}

/// `file:/absolute/path?parameters`, the path (absolute: [`DbFiles::resolved`])
/// percent-encoded.
fn file_uri(absolute: &Path, parameters: &str) -> String {
    use std::os::unix::ffi::OsStrExt;
    const PATH: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    let encoded = percent_encoding::percent_encode(absolute.as_os_str().as_bytes(), PATH);
    format!("file:{encoded}?{parameters}")
}

/// Adds the database path and, for a lock, what it means for the operator.
fn describe_error(path: &Path, err: rusqlite::Error, what: &str) -> anyhow::Error {
    /// SQLite could not grow the `-shm` file: the filesystem is full.
    const SQLITE_IOERR_SHMSIZE: std::ffi::c_int = 4874;
    let hint = match err.sqlite_error() {
        Some(e) if matches!(e.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Some(
            "the database stayed locked by another writer for longer than --db-busy-timeout; nothing was written"
                .to_owned(),
        ),
        Some(e) if e.code == ErrorCode::DiskFull || e.extended_code == SQLITE_IOERR_SHMSIZE => Some(format!(
            "the filesystem holding {} is full; nothing was written",
            path.parent().unwrap_or(path).display()
        )),
        _ => None,
    };
    let err = anyhow::Error::new(err).context(format!("database {}: {what}", path.display()));
    match hint {
        Some(hint) => err.context(hint),
        None => err,
    }
}

/// This host's rows.
///
/// SQLite stores whatever another writer gave it. No column may make the pass
/// fail: odd values are read as lossy text, which the planner then sees as drift
/// and repairs. A name that is not UTF-8 text cannot be matched or addressed by
/// its lossy spelling, so its row carries its rowid, by which it is deleted.
fn select_rows(conn: &Connection, host_uuid: &str) -> rusqlite::Result<Vec<FleetRow>> {
    let mut statement = conn.prepare_cached(SELECT_HOST_ROWS)?;
    let mut rows = statement.query([host_uuid])?;
    let mut fleet = Vec::new();
    while let Some(row) = rows.next()? {
        let name = row.get_ref(1)?;
        let clean_name =
            matches!(name, ValueRef::Text(bytes) if std::str::from_utf8(bytes).is_ok());
        fleet.push(FleetRow {
            host_uuid: lossy_text(row.get_ref(0)?).unwrap_or_default(),
            name: lossy_text(name).unwrap_or_default(),
            services: lossy_text(row.get_ref(2)?).unwrap_or_default(),
            decky_config: lossy_text(row.get_ref(3)?),
            decky_ip: lossy_text(row.get_ref(4)?),
            state: lossy_text(row.get_ref(5)?).unwrap_or_default(),
            stored_key: if clean_name { None } else { Some(row.get(6)?) },
            updated_at: lossy_text(row.get_ref(7)?),
        });
    }
    Ok(fleet)
}

fn lossy_text(value: ValueRef) -> Option<String> {
    match value {
        ValueRef::Null => None,
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) => {
            Some(String::from_utf8_lossy(bytes).into_owned())
        }
    }
}

/// DECNET's datetime text: UTC wall clock, always six fractional digits, no offset.
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The budget counts from the open: time spent before `BEGIN IMMEDIATE`
    /// (the WAL switch's own wait, in a real pass) is not granted again. The
    /// lock is released 2.8 s after the open; a budget of 2 s that restarted
    /// at the BEGIN (1 s after the open) would still be waiting then, and win it.
    #[test]
    fn the_busy_timeout_is_one_budget_from_the_open() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("decnet.db");
        let deadline = Instant::now() + Duration::from_secs(2);
        Connection::open(&path)
            .expect("create")
            .execute_batch(CREATE_TABLE)
            .expect("table");
        let mut db =
            Sqlite::open(&path, Access::ReadWrite, Schema::Decnets, deadline).expect("open");
        let holder = Connection::open(&path).expect("holder");
        holder
            .execute_batch("BEGIN IMMEDIATE")
            .expect("hold the lock");
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(2800));
            holder.execute_batch("COMMIT").expect("release");
        });
        std::thread::sleep(Duration::from_secs(1));
        let begun = block_on(db.begin("local"));
        let err = begun.expect_err("the budget ran out before the lock was released");
        assert!(
            format!("{err:#}").contains("longer than --db-busy-timeout"),
            "{err:#}"
        );
        release.join().expect("holder");
    }

    fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(future)
    }
}
