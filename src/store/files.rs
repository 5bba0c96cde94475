//! What the SQLite DB path and its companions (`-wal`, `-shm`, `-journal`)
//! are, found before SQLite opens anything.
//!
//! SQLite opens its files without `O_NONBLOCK`, so a FIFO as the DB or as a
//! companion hangs the pass in `open()` (or in the first `read()`), before any
//! busy timeout applies; a character device such as `/dev/null` reads as an
//! empty file, and a directory fails with an error that names a lock. So each
//! is looked at first, with `lstat`, and anything but a regular file (or an
//! absent one) is refused with a message that says what it is.
//!
//! SQLite's unix VFS (since 3.10.0, 2016) resolves symbolic links in the DB
//! path before it names the companions: `-wal`, `-shm` and `-journal` are
//! beside the *real* file, not beside a link to it. `unixFullPathname` in
//! SQLite 3.54 (the bundled build) walks the path one element at a time from
//! the working directory: `.` is dropped, `..` drops the last element of what
//! was resolved so far (the root is its own parent), each element is
//! `lstat`ed, and a link is replaced by its target (an absolute target
//! restarts from the root), at most 200 links; a missing element is kept as
//! written. The companions are then opened with `O_NOFOLLOW`, so a companion
//! that is itself a link cannot be opened. [`DbFiles::inspect`] does the same
//! walk, so "is the DB in use" is decided on the files SQLite will use.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::regular_file;

/// SQLite's `SQLITE_MAX_SYMLINK`: links followed while resolving one path.
const MAX_SYMLINKS: usize = 200;

/// The unix VFS's `mxPathname` (`MAX_PATHNAME`): the resolved path, plus the
/// longest companion suffix and its NUL (SQLite reserves 8 bytes), must fit.
const MAX_PATHNAME: usize = 512;

/// The companions SQLite keeps beside the database file.
pub const COMPANION_SUFFIXES: [&str; 3] = ["-wal", "-shm", "-journal"];

/// What is at a path, seen with `lstat` (a link is not followed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileKind {
    Absent,
    Regular,
    /// Anything else but a link (a directory, a FIFO, a device, a socket),
    /// as [`regular_file::kind_of`] names it: one wording for every file
    /// the tool refuses, the state file's and the database's alike.
    Special(&'static str),
    /// A link, with what it points at (as written in the link).
    Symlink {
        target: PathBuf,
        dangling: bool,
    },
    /// Something `lstat` could not look at (permission, a file where a
    /// directory should be); `error` is the system's words.
    Unreadable {
        error: String,
    },
}

impl FileKind {
    fn of(path: &Path) -> FileKind {
        let metadata = match std::fs::symlink_metadata(path) {
            Ok(metadata) => metadata,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return FileKind::Absent,
            Err(err) => {
                return FileKind::Unreadable {
                    error: err.to_string(),
                }
            }
        };
        let file_type = metadata.file_type();
        if file_type.is_file() {
            FileKind::Regular
        } else if file_type.is_symlink() {
            FileKind::Symlink {
                target: std::fs::read_link(path).unwrap_or_default(),
                dangling: std::fs::metadata(path).is_err(),
            }
        } else {
            FileKind::Special(regular_file::kind_of(&file_type))
        }
    }

    /// Absent or a regular file: what SQLite may safely open or create.
    pub fn is_acceptable(&self) -> bool {
        matches!(self, FileKind::Absent | FileKind::Regular)
    }

    pub fn is_present(&self) -> bool {
        !matches!(self, FileKind::Absent)
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileKind::Absent => f.write_str("absent"),
            FileKind::Regular => f.write_str("a regular file"),
            FileKind::Special(kind) => f.write_str(kind),
            FileKind::Symlink { target, dangling } => {
                write!(f, "a symbolic link to {}", target.display())?;
                if *dangling {
                    f.write_str(", which does not exist")?;
                }
                Ok(())
            }
            FileKind::Unreadable { error } => {
                write!(f, "a file that cannot be looked at ({error})")
            }
        }
    }
}

/// One of the files beside the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Companion {
    /// `-wal`, `-shm` or `-journal`.
    pub suffix: &'static str,
    pub path: PathBuf,
    pub kind: FileKind,
}

impl Companion {
    /// How SQLite uses it, for messages.
    fn role(&self) -> &'static str {
        match self.suffix {
            "-wal" => "write-ahead log",
            "-shm" => "shared-memory index",
            _ => "rollback journal",
        }
    }
}

/// The database path as SQLite will use it, and what is there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbFiles {
    /// `--db` as given.
    pub given: PathBuf,
    /// The path SQLite opens: absolute, every link resolved.
    pub resolved: PathBuf,
    /// Links followed on the way (0: the given path names the file itself).
    pub links_followed: usize,
    /// What is at `resolved`.
    pub db: FileKind,
    /// `-wal`, `-shm`, `-journal` beside `resolved`, in that order.
    pub companions: [Companion; 3],
}

/// The database path cannot be used; nothing was opened.
#[derive(Debug, thiserror::Error)]
pub enum DbFileError {
    #[error("cannot resolve database path {}: {reason}", given.display())]
    Unresolvable { given: PathBuf, reason: String },
    #[error(
        "database {}{}: is {kind}, not a regular file; refused before SQLite opens it",
        given.display(), via(given, resolved)
    )]
    NotRegular {
        given: PathBuf,
        resolved: PathBuf,
        kind: FileKind,
    },
    #[error(
        "database {}{}: its {role} {} is {kind}, not a regular file; refused before SQLite opens anything",
        given.display(), via(given, resolved), companion.display()
    )]
    CompanionNotRegular {
        given: PathBuf,
        resolved: PathBuf,
        role: &'static str,
        companion: PathBuf,
        kind: FileKind,
    },
}

/// ` (the file /real/path)` when the given path is not the one SQLite opens.
pub fn via(given: &Path, resolved: &Path) -> String {
    if given == resolved {
        String::new()
    } else {
        format!(" (the file {})", resolved.display())
    }
}

impl DbFiles {
    /// Resolves `given` as SQLite's unix VFS does and looks at the database
    /// file and its companions, opening nothing. Errors only when the path
    /// cannot be resolved (SQLite would fail to open it too).
    pub fn inspect(given: &Path) -> Result<DbFiles, DbFileError> {
        let unresolvable = |reason: String| DbFileError::Unresolvable {
            given: given.to_owned(),
            reason,
        };
        let mut walk = Walk::default();
        if !given.as_os_str().as_bytes().starts_with(b"/") {
            let cwd = std::env::current_dir()
                .map_err(|err| unresolvable(format!("cannot read the working directory: {err}")))?;
            walk.append_all(cwd.as_os_str().as_bytes())
                .map_err(unresolvable)?;
        }
        walk.append_all(given.as_os_str().as_bytes())
            .map_err(unresolvable)?;
        if walk.path.len() < 2 {
            return Err(unresolvable("it names the root directory".to_owned()));
        }
        if walk.path.len() + 8 > MAX_PATHNAME {
            return Err(unresolvable(format!(
                "the resolved path is {} bytes long; SQLite takes at most {}",
                walk.path.len(),
                MAX_PATHNAME - 8
            )));
        }
        let resolved = PathBuf::from(OsString::from_vec(walk.path));
        let companions = COMPANION_SUFFIXES.map(|suffix| {
            let mut name = resolved.as_os_str().to_owned();
            name.push(suffix);
            let path = PathBuf::from(name);
            Companion {
                suffix,
                kind: FileKind::of(&path),
                path,
            }
        });
        Ok(DbFiles {
            given: given.to_owned(),
            db: FileKind::of(&resolved),
            resolved,
            links_followed: walk.links,
            companions,
        })
    }

    /// A companion is present: a writer has the database open (WAL), one
    /// died mid-transaction (a hot journal), or one left its files behind.
    /// Then the main file alone may not hold every committed change.
    pub fn in_use(&self) -> bool {
        self.companions
            .iter()
            .any(|companion| companion.kind.is_present())
    }

    /// Refuses a database, or a companion, that is neither a regular file
    /// nor absent, naming what it is. (Whether an absent database may be
    /// created is the caller's decision.)
    pub fn check(&self) -> Result<(), DbFileError> {
        if !self.db.is_acceptable() {
            return Err(DbFileError::NotRegular {
                given: self.given.clone(),
                resolved: self.resolved.clone(),
                kind: self.db.clone(),
            });
        }
        match self
            .companions
            .iter()
            .find(|companion| !companion.kind.is_acceptable())
        {
            Some(companion) => Err(DbFileError::CompanionNotRegular {
                given: self.given.clone(),
                resolved: self.resolved.clone(),
                role: companion.role(),
                companion: companion.path.clone(),
                kind: companion.kind.clone(),
            }),
            None => Ok(()),
        }
    }

    /// [`inspect`](Self::inspect), then [`check`](Self::check).
    pub fn inspect_and_check(given: &Path) -> Result<DbFiles, DbFileError> {
        let files = Self::inspect(given)?;
        files.check()?;
        Ok(files)
    }
}

/// A path under construction, as SQLite's `DbPath`.
#[derive(Default)]
struct Walk {
    path: Vec<u8>,
    links: usize,
}

impl Walk {
    /// SQLite's `appendAllPathElements`.
    fn append_all(&mut self, path: &[u8]) -> Result<(), String> {
        for element in path.split(|&byte| byte == b'/') {
            if !element.is_empty() {
                self.append_one(element)?;
            }
        }
        Ok(())
    }

    /// SQLite's `appendOnePathElement`.
    fn append_one(&mut self, element: &[u8]) -> Result<(), String> {
        match element {
            b"." => return Ok(()),
            b".." => {
                if let Some(slash) = self.path.iter().rposition(|&byte| byte == b'/') {
                    self.path.truncate(slash);
                }
                return Ok(());
            }
            _ => {}
        }
        // SQLite: `nUsed + nName + 2 >= nOut`, nOut being mxPathname + 1.
        if self.path.len() + element.len() + 2 > MAX_PATHNAME {
            return Err(format!(
                "the resolved path grows past SQLite's {MAX_PATHNAME} bytes"
            ));
        }
        self.path.push(b'/');
        self.path.extend_from_slice(element);
        let here = Path::new(OsStr::from_bytes(&self.path));
        let metadata = match std::fs::symlink_metadata(here) {
            Ok(metadata) => metadata,
            // Kept as written: SQLite resolves what exists.
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(format!("{}: {err}", here.display())),
        };
        if !metadata.file_type().is_symlink() {
            return Ok(());
        }
        self.links += 1;
        if self.links > MAX_SYMLINKS {
            return Err(format!(
                "more than {MAX_SYMLINKS} symbolic links (a loop?) at {}",
                here.display()
            ));
        }
        let target =
            std::fs::read_link(here).map_err(|err| format!("{}: {err}", here.display()))?;
        let target = target.as_os_str().as_bytes();
        if target.starts_with(b"/") {
            self.path.clear();
        } else {
            self.path.truncate(self.path.len() - element.len() - 1);
        }
        self.append_all(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::process::Command;

    fn mkfifo(path: &Path) {
        let status = Command::new("mkfifo")
            .arg(path)
            .status()
            .expect("mkfifo runs");
        assert!(status.success(), "mkfifo {}", path.display());
    }

    /// A temp dir by its real path (`/tmp` may itself be a link).
    fn temp_dir() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let real = std::fs::canonicalize(dir.path()).expect("canonical temp dir");
        (dir, real)
    }

    fn companion<'a>(files: &'a DbFiles, suffix: &str) -> &'a Companion {
        files
            .companions
            .iter()
            .find(|c| c.suffix == suffix)
            .expect("every suffix")
    }

    #[test]
    fn a_plain_db_alone_is_regular_and_not_in_use() {
        let (_guard, dir) = temp_dir();
        let db = dir.join("decnet.db");
        std::fs::write(&db, b"").expect("db");
        let files = DbFiles::inspect_and_check(&db).expect("fine");
        assert_eq!(files.resolved, db);
        assert_eq!(files.db, FileKind::Regular);
        assert_eq!(files.links_followed, 0);
        assert!(!files.in_use());
        for suffix in COMPANION_SUFFIXES {
            assert_eq!(companion(&files, suffix).kind, FileKind::Absent);
        }
    }

    #[test]
    fn an_absent_db_is_acceptable_and_named_as_such() {
        let (_guard, dir) = temp_dir();
        let files = DbFiles::inspect_and_check(&dir.join("new.db")).expect("absent is fine");
        assert_eq!(files.db, FileKind::Absent);
    }

    #[test]
    fn any_present_companion_means_in_use() {
        for suffix in COMPANION_SUFFIXES {
            let (_guard, dir) = temp_dir();
            let db = dir.join("decnet.db");
            std::fs::write(&db, b"").expect("db");
            std::fs::write(dir.join(format!("decnet.db{suffix}")), b"x").expect("companion");
            let files = DbFiles::inspect_and_check(&db).expect("regular companion");
            assert!(files.in_use(), "{suffix}");
        }
    }

    #[test]
    fn a_symlinked_db_is_resolved_and_its_companions_are_beside_the_real_file() {
        let (_guard, dir) = temp_dir();
        std::fs::create_dir(dir.join("real")).expect("dir");
        let real = dir.join("real/decnet.db");
        std::fs::write(&real, b"").expect("db");
        // A live writer's WAL beside the real file; nothing beside the link.
        std::fs::write(dir.join("real/decnet.db-wal"), b"frames").expect("wal");
        std::fs::write(dir.join("real/decnet.db-shm"), b"index").expect("shm");
        let link = dir.join("link.db");
        symlink("real/decnet.db", &link).expect("link");
        let files = DbFiles::inspect_and_check(&link).expect("fine");
        assert_eq!(files.resolved, real);
        assert_eq!(files.links_followed, 1);
        assert!(files.in_use(), "the WAL beside the real file counts");
        assert_eq!(
            companion(&files, "-wal").path,
            dir.join("real/decnet.db-wal")
        );
    }

    #[test]
    fn links_in_directories_and_chains_resolve_like_sqlite() {
        let (_guard, dir) = temp_dir();
        std::fs::create_dir_all(dir.join("a/b")).expect("dirs");
        std::fs::write(dir.join("a/b/decnet.db"), b"").expect("db");
        symlink(dir.join("a/b"), dir.join("dirlink")).expect("dir link");
        symlink("dirlink/decnet.db", dir.join("hop1")).expect("hop1");
        symlink("hop1", dir.join("hop2")).expect("hop2");
        let files = DbFiles::inspect(&dir.join("hop2")).expect("resolves");
        assert_eq!(files.resolved, dir.join("a/b/decnet.db"));
        assert_eq!(files.links_followed, 3);
        // `..` applies to the resolved directory, as the kernel does: dirlink/.. is a/.
        std::fs::write(dir.join("a/other.db"), b"").expect("other");
        let files = DbFiles::inspect(&dir.join("dirlink/../other.db")).expect("resolves");
        assert_eq!(files.resolved, dir.join("a/other.db"));
        assert_eq!(files.db, FileKind::Regular);
    }

    #[test]
    fn a_relative_path_resolves_from_the_working_directory() {
        let files = DbFiles::inspect(Path::new("./x/../y.db")).expect("resolves");
        let cwd = std::env::current_dir().expect("cwd");
        assert_eq!(files.resolved, cwd.join("y.db"));
    }

    #[test]
    fn the_resolved_path_is_the_one_sqlite_itself_opens() {
        let (_guard, dir) = temp_dir();
        std::fs::create_dir_all(dir.join("a/b")).expect("dirs");
        std::fs::create_dir_all(dir.join("c")).expect("dirs");
        std::fs::write(dir.join("a/b/decnet.db"), b"").expect("db");
        symlink(dir.join("a/b"), dir.join("dirlink")).expect("dir link");
        symlink("../dirlink/decnet.db", dir.join("c/rel")).expect("relative link");
        symlink("c/rel", dir.join("chain")).expect("chain");
        symlink("c/new.db", dir.join("dangling")).expect("dangling");
        symlink(dir.join("c/./../a"), dir.join("dotted")).expect("dotted");
        for given in [
            dir.join("a/b/decnet.db"),
            dir.join("dirlink/decnet.db"),
            dir.join("c/rel"),
            dir.join("chain"),
            dir.join("dirlink/../b/./decnet.db"),
            dir.join("dangling"),
            dir.join("dotted/b/decnet.db"),
        ] {
            let ours = DbFiles::inspect(&given).expect("resolves").resolved;
            let conn = rusqlite::Connection::open(&given).expect("SQLite opens it");
            let sqlites = conn.path().expect("a file database").to_owned();
            assert_eq!(ours, Path::new(&sqlites), "{}", given.display());
        }
    }

    #[test]
    fn sqlite_puts_the_wal_where_the_companions_are_looked_for() {
        let (_guard, dir) = temp_dir();
        std::fs::create_dir(dir.join("real")).expect("dir");
        let link = dir.join("decnet.db");
        symlink("real/decnet.db", &link).expect("link");
        let writer = rusqlite::Connection::open(&link).expect("open through the link");
        writer
            .execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            .expect("a write in WAL mode");
        let files = DbFiles::inspect_and_check(&link).expect("fine");
        assert_eq!(companion(&files, "-wal").kind, FileKind::Regular);
        assert_eq!(companion(&files, "-shm").kind, FileKind::Regular);
        assert!(files.in_use());
        assert!(
            !dir.join("decnet.db-wal").exists(),
            "nothing beside the link"
        );
        drop(writer);
    }

    #[test]
    fn a_fifo_as_the_db_is_refused_by_what_it_is() {
        let (_guard, dir) = temp_dir();
        let db = dir.join("decnet.db");
        mkfifo(&db);
        let err = DbFiles::inspect_and_check(&db).expect_err("a FIFO");
        let text = err.to_string();
        assert!(text.contains("is a FIFO, not a regular file"), "{text}");
        assert!(text.contains(&db.display().to_string()), "{text}");
    }

    #[test]
    fn a_fifo_as_the_journal_beside_a_good_db_is_refused() {
        let (_guard, dir) = temp_dir();
        let db = dir.join("decnet.db");
        std::fs::write(&db, b"").expect("db");
        mkfifo(&dir.join("decnet.db-journal"));
        let err = DbFiles::inspect_and_check(&db).expect_err("a FIFO journal");
        let text = err.to_string();
        assert!(
            text.contains("its rollback journal") && text.contains("decnet.db-journal"),
            "{text}"
        );
        assert!(text.contains("is a FIFO, not a regular file"), "{text}");
    }

    #[test]
    fn dev_null_is_a_character_device_not_a_lock() {
        let err = DbFiles::inspect_and_check(Path::new("/dev/null")).expect_err("/dev/null");
        let text = err.to_string();
        assert_eq!(
            text,
            "database /dev/null: is a character device, not a regular file; refused before SQLite opens it"
        );
    }

    #[test]
    fn a_link_to_dev_null_names_both_paths() {
        let (_guard, dir) = temp_dir();
        let link = dir.join("decnet.db");
        symlink("/dev/null", &link).expect("link");
        let text = DbFiles::inspect_and_check(&link)
            .expect_err("refused")
            .to_string();
        assert!(
            text.contains(&format!("database {} (the file /dev/null)", link.display())),
            "{text}"
        );
        assert!(text.contains("a character device"), "{text}");
    }

    #[test]
    fn a_directory_a_socket_and_a_companion_link_are_refused() {
        let (_guard, dir) = temp_dir();
        std::fs::create_dir(dir.join("dir.db")).expect("dir");
        let text = DbFiles::inspect_and_check(&dir.join("dir.db"))
            .expect_err("a directory")
            .to_string();
        assert!(text.contains("is a directory"), "{text}");

        let socket_path = dir.join("sock.db");
        let _listener = std::os::unix::net::UnixListener::bind(&socket_path).expect("socket");
        let text = DbFiles::inspect_and_check(&socket_path)
            .expect_err("a socket")
            .to_string();
        assert!(text.contains("is a socket"), "{text}");

        // SQLite opens companions with O_NOFOLLOW: a link there cannot be opened.
        let db = dir.join("decnet.db");
        std::fs::write(&db, b"").expect("db");
        symlink("/dev/null", dir.join("decnet.db-wal")).expect("link");
        let text = DbFiles::inspect_and_check(&db)
            .expect_err("a linked WAL")
            .to_string();
        assert!(
            text.contains("its write-ahead log") && text.contains("a symbolic link to /dev/null"),
            "{text}"
        );
    }

    #[test]
    fn a_dangling_link_resolves_to_its_absent_target() {
        // SQLite would create the database at the link's target.
        let (_guard, dir) = temp_dir();
        let link = dir.join("decnet.db");
        symlink("missing/real.db", &link).expect("link");
        let files = DbFiles::inspect_and_check(&link).expect("absent target");
        assert_eq!(files.resolved, dir.join("missing/real.db"));
        assert_eq!(files.db, FileKind::Absent);
        assert_eq!(files.links_followed, 1);
    }

    #[test]
    fn a_dangling_companion_link_is_refused_and_named() {
        let (_guard, dir) = temp_dir();
        let db = dir.join("decnet.db");
        std::fs::write(&db, b"").expect("db");
        symlink("nowhere", dir.join("decnet.db-shm")).expect("link");
        let text = DbFiles::inspect_and_check(&db)
            .expect_err("dangling")
            .to_string();
        assert!(
            text.contains("shared-memory index") && text.contains("which does not exist"),
            "{text}"
        );
    }

    #[test]
    fn a_link_loop_is_unresolvable() {
        let (_guard, dir) = temp_dir();
        symlink("b.db", dir.join("a.db")).expect("a");
        symlink("a.db", dir.join("b.db")).expect("b");
        let text = DbFiles::inspect(&dir.join("a.db"))
            .expect_err("a loop")
            .to_string();
        assert!(text.contains("more than 200 symbolic links"), "{text}");
    }

    #[test]
    fn a_path_under_a_file_is_unresolvable() {
        let (_guard, dir) = temp_dir();
        std::fs::write(dir.join("file"), b"").expect("file");
        let text = DbFiles::inspect(&dir.join("file/decnet.db"))
            .expect_err("not a directory")
            .to_string();
        assert!(text.contains("cannot resolve database path"), "{text}");
        assert!(text.contains("Not a directory"), "{text}");
    }

    #[test]
    fn a_path_too_long_for_sqlite_is_unresolvable() {
        let long = format!("/tmp/{}/decnet.db", "d".repeat(600));
        let text = DbFiles::inspect(Path::new(&long))
            .expect_err("too long")
            .to_string();
        assert!(text.contains("SQLite's 512 bytes"), "{text}");
    }

    #[test]
    fn the_root_parent_is_the_root() {
        let files = DbFiles::inspect(Path::new("/../../tmp/../x.db")).expect("resolves");
        assert_eq!(files.resolved, Path::new("/x.db"));
    }

    #[test]
    fn paths_that_are_not_utf8_keep_their_bytes() {
        let (_guard, dir) = temp_dir();
        let name = OsStr::from_bytes(b"db-\xff.db");
        let db = dir.join(name);
        std::fs::write(&db, b"").expect("db");
        let files = DbFiles::inspect_and_check(&db).expect("fine");
        assert_eq!(files.resolved, db);
    }
}
