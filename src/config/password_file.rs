//! Passwords that stay out of the environment: a file named by
//! `DECNET_DB_PASSWORD_FILE` / `DECNET_REDIS_PASSWORD_FILE` (the container
//! convention), or a systemd credential (`LoadCredential=db-password:…` puts it
//! in `$CREDENTIALS_DIRECTORY/db-password`), and which of the places a password
//! can come from wins.
//!
//! Precedence, highest first:
//! 1. the password in the URL (`--db`, `DECNET_DB_URL`, `--redis-url`, …);
//! 2. the password file or the systemd credential (both at once is refused: one
//!    of them is a leftover, and guessing which would log in with the wrong one);
//! 3. DECNET's own variable (`DECNET_DB_PASSWORD`; Redis has none).
//!
//! A source that loses to a higher one is not read, and gets a warning. Files
//! are read as one line: a single trailing line end (`\n` or `\r\n`) is dropped,
//! any other byte (spaces included) is part of the password.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::regular_file::{self, ReadError};

/// A password file holds one password; anything larger is the wrong file.
pub const MAX_PASSWORD_FILE_BYTES: u64 = 4096;

/// The permission bits that let every user on the machine at the file
/// (read, write or search by "others"), as ssh checks private keys. Group bits
/// are allowed: `root:decnet 0640` is how a service user is given a file.
const OTHERS_BITS: u32 = 0o007;

/// Which connection a password is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Db,
    Redis,
}

impl Service {
    /// The variable that names a password file.
    pub fn file_variable(self) -> &'static str {
        match self {
            Service::Db => "DECNET_DB_PASSWORD_FILE",
            Service::Redis => "DECNET_REDIS_PASSWORD_FILE",
        }
    }

    /// The systemd credential's name (`LoadCredential=NAME:PATH`).
    pub fn credential_name(self) -> &'static str {
        match self {
            Service::Db => "db-password",
            Service::Redis => "redis-password",
        }
    }
}

/// Where a password came from (for messages; never the password itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Url,
    /// The file named by the variable.
    File {
        variable: &'static str,
        path: PathBuf,
    },
    /// `$CREDENTIALS_DIRECTORY/NAME`.
    Credential {
        name: &'static str,
        path: PathBuf,
    },
    /// DECNET's variable, e.g. `DECNET_DB_PASSWORD`.
    DecnetVariable(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Url => f.write_str("the URL"),
            Source::File { variable, path } => write!(f, "{variable} {}", path.display()),
            Source::Credential { name, path } => {
                write!(f, "the systemd credential {name} ({})", path.display())
            }
            Source::DecnetVariable(name) => f.write_str(name),
        }
    }
}

/// A password and where it came from. Prints without the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Password {
    value: String,
    pub source: Source,
}

impl Password {
    /// The password itself: only for handing to the driver.
    pub fn expose(&self) -> &str {
        &self.value
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Password")
            .field("value", &"<redacted>")
            .field("source", &self.source)
            .finish()
    }
}

/// Something worth saying about a password that was found all the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordWarning {
    /// The file can be read or changed by every user (mode shown).
    OpenToEveryone { source: Source, mode: u32 },
    /// A source was set but a higher one won, so it was not read.
    Shadowed { unused: Source, used: Source },
}

impl fmt::Display for PasswordWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordWarning::OpenToEveryone { source, mode } => write!(
                f,
                "{source} is open to every user on this machine (mode {mode:04o}); \
                 make it private (chmod o-rwx), as ssh requires of private keys"
            ),
            PasswordWarning::Shadowed { unused, used } => write!(
                f,
                "{unused} is set but not used: the password in {used} comes first"
            ),
        }
    }
}

/// A password file or credential that cannot be used. Every message names the
/// variable or credential and the file.
#[derive(Debug, thiserror::Error)]
pub enum PasswordFileError {
    #[error("{source_}: cannot read it: {reason}")]
    Unreadable { source_: Source, reason: ReadError },
    #[error("{0} is empty")]
    Empty(Source),
    #[error("{0} is not UTF-8 text")]
    NotText(Source),
    #[error(
        "{0} holds more than one line (or a NUL byte); a password file holds the password alone"
    )]
    NotOneLine(Source),
    #[error("both {file} and {credential} hold a password; keep one of them")]
    FileAndCredential { file: Source, credential: Source },
    #[error("{variable} is set to a relative path under CREDENTIALS_DIRECTORY {dir:?}; systemd sets an absolute one")]
    RelativeCredentialsDirectory { variable: &'static str, dir: String },
}

/// The places a password may come from, each set or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidates<T> {
    pub url: Option<T>,
    pub file: Option<T>,
    pub credential: Option<T>,
    pub decnet_variable: Option<T>,
}

/// What the precedence decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice<T> {
    Nothing,
    Use(T),
    /// A file and a credential, and no URL password above them.
    Conflict {
        file: T,
        credential: T,
    },
}

/// The precedence, alone: URL > file or credential > DECNET's variable; a file
/// and a credential together are a conflict.
pub fn choose<T: Copy>(candidates: Candidates<T>) -> Choice<T> {
    match candidates {
        Candidates { url: Some(url), .. } => Choice::Use(url),
        Candidates {
            file: Some(file),
            credential: Some(credential),
            ..
        } => Choice::Conflict { file, credential },
        Candidates {
            file: Some(file), ..
        } => Choice::Use(file),
        Candidates {
            credential: Some(credential),
            ..
        } => Choice::Use(credential),
        Candidates {
            decnet_variable: Some(decnet),
            ..
        } => Choice::Use(decnet),
        Candidates { .. } => Choice::Nothing,
    }
}

/// The outcome: the password to use (if any) and what to warn about.
#[derive(Debug, Default)]
pub struct Resolved {
    pub password: Option<Password>,
    pub warnings: Vec<PasswordWarning>,
}

/// Finds the password for `service`. `url_password` is the URL's (empty counts as
/// none); `decnet_variable` is DECNET's variable, named and with its value, when
/// it applies (the DB built from `DECNET_DB_*` parts). The file variable and
/// `CREDENTIALS_DIRECTORY` are read through `env`. Only the winning source is read.
pub fn resolve(
    service: Service,
    url_password: Option<&str>,
    decnet_variable: Option<(&'static str, &str)>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Resolved, PasswordFileError> {
    let env = |name: &str| env(name).filter(|value| !value.is_empty());
    let url_password = url_password.filter(|p| !p.is_empty());
    let decnet = decnet_variable
        .filter(|(_, value)| !value.is_empty())
        .map(|(name, value)| (name, value.to_owned()));
    let sources = Candidates {
        url: url_password.map(|_| Source::Url),
        file: env(service.file_variable()).map(|path| Source::File {
            variable: service.file_variable(),
            path: PathBuf::from(path),
        }),
        credential: credential_path(service, &env)?.map(|path| Source::Credential {
            name: service.credential_name(),
            path,
        }),
        decnet_variable: decnet
            .as_ref()
            .map(|(name, _)| Source::DecnetVariable(name)),
    };
    let as_refs = Candidates {
        url: sources.url.as_ref(),
        file: sources.file.as_ref(),
        credential: sources.credential.as_ref(),
        decnet_variable: sources.decnet_variable.as_ref(),
    };
    let mut resolved = Resolved::default();
    let source = match choose(as_refs) {
        Choice::Nothing => return Ok(resolved),
        Choice::Conflict { file, credential } => {
            return Err(PasswordFileError::FileAndCredential {
                file: file.clone(),
                credential: credential.clone(),
            })
        }
        Choice::Use(source) => source.clone(),
    };
    let value = match &source {
        Source::Url => url_password.unwrap_or_default().to_owned(),
        Source::File { path, .. } | Source::Credential { path, .. } => {
            read_password_file(&source, path, &mut resolved.warnings)?
        }
        Source::DecnetVariable(_) => decnet.map(|(_, value)| value).unwrap_or_default(),
    };
    let others = [sources.file, sources.credential, sources.decnet_variable];
    for unused in others.into_iter().flatten() {
        if unused != source {
            resolved.warnings.push(PasswordWarning::Shadowed {
                unused,
                used: source.clone(),
            });
        }
    }
    resolved.password = Some(Password { value, source });
    Ok(resolved)
}

/// `$CREDENTIALS_DIRECTORY/NAME` when that file exists (a unit may load only some).
fn credential_path(
    service: Service,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Option<PathBuf>, PasswordFileError> {
    let Some(dir) = env("CREDENTIALS_DIRECTORY") else {
        return Ok(None);
    };
    if !Path::new(&dir).is_absolute() {
        return Err(PasswordFileError::RelativeCredentialsDirectory {
            variable: "CREDENTIALS_DIRECTORY",
            dir,
        });
    }
    let path = Path::new(&dir).join(service.credential_name());
    // symlink_metadata: a dangling link is "there" and fails loudly when read.
    Ok(path.symlink_metadata().is_ok().then_some(path))
}

fn read_password_file(
    source: &Source,
    path: &Path,
    warnings: &mut Vec<PasswordWarning>,
) -> Result<String, PasswordFileError> {
    let (bytes, metadata) =
        regular_file::read(path, MAX_PASSWORD_FILE_BYTES).map_err(|reason| {
            PasswordFileError::Unreadable {
                source_: source.clone(),
                reason,
            }
        })?;
    let value = password_from_bytes(bytes, source)?;
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & OTHERS_BITS != 0 {
        warnings.push(PasswordWarning::OpenToEveryone {
            source: source.clone(),
            mode,
        });
    }
    Ok(value)
}

/// The file's text less one trailing line end; one line, not empty.
fn password_from_bytes(mut bytes: Vec<u8>, source: &Source) -> Result<String, PasswordFileError> {
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    if bytes.is_empty() {
        return Err(PasswordFileError::Empty(source.clone()));
    }
    if bytes.iter().any(|b| matches!(b, b'\n' | b'\r' | b'\0')) {
        return Err(PasswordFileError::NotOneLine(source.clone()));
    }
    String::from_utf8(bytes).map_err(|_| PasswordFileError::NotText(source.clone()))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::fs;

    use super::*;

    fn candidates(
        url: bool,
        file: bool,
        credential: bool,
        decnet_variable: bool,
    ) -> Candidates<&'static str> {
        Candidates {
            url: url.then_some("url"),
            file: file.then_some("file"),
            credential: credential.then_some("credential"),
            decnet_variable: decnet_variable.then_some("decnet"),
        }
    }

    // One test per line of the precedence.
    #[test]
    fn precedence_1_the_url_password_beats_everything() {
        assert_eq!(
            choose(candidates(true, true, false, true)),
            Choice::Use("url")
        );
        assert_eq!(
            choose(candidates(true, false, true, true)),
            Choice::Use("url")
        );
        // Even above a file and a credential together: neither is read.
        assert_eq!(
            choose(candidates(true, true, true, true)),
            Choice::Use("url")
        );
    }

    #[test]
    fn precedence_2_a_file_or_a_credential_beats_decnets_variable() {
        assert_eq!(
            choose(candidates(false, true, false, true)),
            Choice::Use("file")
        );
        assert_eq!(
            choose(candidates(false, false, true, true)),
            Choice::Use("credential")
        );
    }

    #[test]
    fn precedence_2_a_file_and_a_credential_together_are_a_conflict() {
        assert_eq!(
            choose(candidates(false, true, true, true)),
            Choice::Conflict {
                file: "file",
                credential: "credential"
            }
        );
    }

    #[test]
    fn precedence_3_decnets_variable_is_the_last_resort() {
        assert_eq!(
            choose(candidates(false, false, false, true)),
            Choice::Use("decnet")
        );
    }

    #[test]
    fn precedence_nothing_set_is_no_password() {
        assert_eq!(
            choose(candidates(false, false, false, false)),
            Choice::Nothing
        );
    }

    /// A temp dir with files, and an environment to look names up in.
    struct Fixture {
        dir: tempfile::TempDir,
        vars: HashMap<String, String>,
    }

    impl Fixture {
        fn new() -> Self {
            Fixture {
                dir: tempfile::tempdir().expect("temp dir"),
                vars: HashMap::new(),
            }
        }

        /// Writes `name` (mode 0600 unless changed) and returns its path.
        fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
            let path = self.dir.path().join(name);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).expect("mkdir");
            }
            fs::write(&path, bytes).expect("write");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
            path
        }

        fn var(mut self, name: &str, value: impl Into<String>) -> Self {
            self.vars.insert(name.to_owned(), value.into());
            self
        }

        fn with_file_var(self, service: Service, bytes: &[u8]) -> Self {
            let path = self.file("password", bytes);
            self.var(service.file_variable(), path.to_str().expect("utf-8 path"))
        }

        fn with_credential(self, service: Service, bytes: &[u8]) -> Self {
            self.file(&format!("creds/{}", service.credential_name()), bytes);
            let dir = self.dir.path().join("creds");
            self.var("CREDENTIALS_DIRECTORY", dir.to_str().expect("utf-8 path"))
        }

        fn resolve(
            &self,
            service: Service,
            url: Option<&str>,
            decnet_variable: Option<&'static str>,
        ) -> Result<Resolved, PasswordFileError> {
            let decnet = decnet_variable.map(|name| {
                let value = self.vars.get(name).map_or("", String::as_str);
                (name, value)
            });
            resolve(service, url, decnet, |name| self.vars.get(name).cloned())
        }
    }

    fn value(resolved: &Resolved) -> Option<&str> {
        resolved.password.as_ref().map(Password::expose)
    }

    #[test]
    fn reads_the_db_password_file_and_drops_one_newline() {
        let fx = Fixture::new().with_file_var(Service::Db, b"s3cret\n");
        let resolved = fx.resolve(Service::Db, None, None).expect("resolves");
        assert_eq!(value(&resolved), Some("s3cret"));
        assert!(resolved.warnings.is_empty(), "{:?}", resolved.warnings);
        let source = &resolved.password.as_ref().expect("password").source;
        assert!(matches!(
            source,
            Source::File {
                variable: "DECNET_DB_PASSWORD_FILE",
                ..
            }
        ));
    }

    #[test]
    fn drops_only_one_line_end_and_keeps_spaces() {
        for (bytes, want) in [
            (&b"pw"[..], "pw"),
            (b"pw\r\n", "pw"),
            (b"  pw \n", "  pw "),
            (b"\tpw", "\tpw"),
        ] {
            let fx = Fixture::new().with_file_var(Service::Redis, bytes);
            let resolved = fx.resolve(Service::Redis, None, None).expect("resolves");
            assert_eq!(value(&resolved), Some(want), "{bytes:?}");
        }
    }

    #[test]
    fn refuses_two_lines_an_empty_file_and_bytes_that_are_not_text() {
        for (bytes, want) in [
            (&b"pw\n\n"[..], "holds more than one line"),
            (b"user\npw\n", "holds more than one line"),
            (b"pw\0", "holds more than one line (or a NUL byte)"),
            (b"", "is empty"),
            (b"\n", "is empty"),
            (b"\xff\xfe\n", "is not UTF-8 text"),
        ] {
            let fx = Fixture::new().with_file_var(Service::Db, bytes);
            let err = fx.resolve(Service::Db, None, None).expect_err("refused");
            let text = err.to_string();
            assert!(text.starts_with("DECNET_DB_PASSWORD_FILE /"), "{text}");
            assert!(text.contains(want), "{bytes:?}: {text}");
        }
    }

    #[test]
    fn a_missing_file_a_directory_and_an_oversized_file_name_the_file() {
        let fx = Fixture::new();
        let missing = fx.dir.path().join("absent");
        let fx = fx.var("DECNET_DB_PASSWORD_FILE", missing.to_str().expect("utf-8"));
        let err = fx.resolve(Service::Db, None, None).expect_err("missing");
        assert_eq!(
            err.to_string(),
            format!(
                "DECNET_DB_PASSWORD_FILE {}: cannot read it: No such file or directory (os error 2)",
                missing.display()
            )
        );

        let fx = Fixture::new();
        let dir = fx.dir.path().to_str().expect("utf-8").to_owned();
        let fx = fx.var("DECNET_DB_PASSWORD_FILE", dir.clone());
        let err = fx
            .resolve(Service::Db, None, None)
            .expect_err("a directory");
        assert_eq!(
            err.to_string(),
            format!("DECNET_DB_PASSWORD_FILE {dir}: cannot read it: it is a directory, not a regular file")
        );

        let big = vec![b'x'; MAX_PASSWORD_FILE_BYTES as usize + 1];
        let fx = Fixture::new().with_file_var(Service::Db, &big);
        let err = fx.resolve(Service::Db, None, None).expect_err("too large");
        assert!(
            err.to_string()
                .ends_with("cannot read it: it is larger than 4096 bytes"),
            "{err}"
        );
    }

    #[test]
    fn an_unreadable_path_names_the_file() {
        // (Mode 000 stops no read as root, which the tests run as; a path under a
        // file fails for everyone.)
        let fx = Fixture::new();
        let under_a_file = fx.file("plain", b"x").join("password");
        let fx = fx.var(
            "DECNET_REDIS_PASSWORD_FILE",
            under_a_file.to_str().expect("utf-8"),
        );
        let err = fx
            .resolve(Service::Redis, None, None)
            .expect_err("unreadable");
        assert_eq!(
            err.to_string(),
            format!(
                "DECNET_REDIS_PASSWORD_FILE {}: cannot read it: Not a directory (os error 20)",
                under_a_file.display()
            )
        );
    }

    #[test]
    fn a_file_open_to_every_user_is_used_with_a_warning() {
        for mode in [0o604, 0o644, 0o602, 0o601] {
            let fx = Fixture::new().with_file_var(Service::Db, b"pw\n");
            let path = fx.dir.path().join("password");
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
            let resolved = fx.resolve(Service::Db, None, None).expect("resolves");
            assert_eq!(value(&resolved), Some("pw"));
            assert_eq!(resolved.warnings.len(), 1, "{mode:o}");
            assert_eq!(
                resolved.warnings[0].to_string(),
                format!(
                    "DECNET_DB_PASSWORD_FILE {} is open to every user on this machine (mode {mode:04o}); \
                     make it private (chmod o-rwx), as ssh requires of private keys",
                    path.display()
                )
            );
        }
    }

    #[test]
    fn a_file_shared_with_a_group_gets_no_warning() {
        for mode in [0o600, 0o640, 0o400, 0o440, 0o660] {
            let fx = Fixture::new().with_file_var(Service::Db, b"pw\n");
            let path = fx.dir.path().join("password");
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
            let resolved = fx.resolve(Service::Db, None, None).expect("resolves");
            assert!(
                resolved.warnings.is_empty(),
                "{mode:o}: {:?}",
                resolved.warnings
            );
        }
    }

    #[test]
    fn reads_the_systemd_credential_of_each_service() {
        for service in [Service::Db, Service::Redis] {
            let fx = Fixture::new().with_credential(service, b"from-systemd");
            let resolved = fx.resolve(service, None, None).expect("resolves");
            assert_eq!(value(&resolved), Some("from-systemd"));
            let source = resolved.password.expect("password").source;
            assert!(
                matches!(&source, Source::Credential { name, .. } if *name == service.credential_name()),
                "{source:?}"
            );
            assert!(source.to_string().starts_with(&format!(
                "the systemd credential {} (/",
                service.credential_name()
            )));
        }
    }

    #[test]
    fn a_credentials_directory_without_this_services_credential_is_no_password() {
        // The unit loads only the Redis password; the DB has none from there.
        let fx = Fixture::new().with_credential(Service::Redis, b"r");
        let resolved = fx.resolve(Service::Db, None, None).expect("resolves");
        assert_eq!(value(&resolved), None);
    }

    #[test]
    fn a_relative_credentials_directory_is_refused() {
        let fx = Fixture::new().var("CREDENTIALS_DIRECTORY", "creds");
        let err = fx.resolve(Service::Db, None, None).expect_err("relative");
        assert!(err.to_string().contains("relative path"), "{err}");
    }

    #[test]
    fn the_url_password_wins_and_the_file_is_not_read() {
        // The file is missing: reading it would fail, so it was not read.
        let fx = Fixture::new().var("DECNET_DB_PASSWORD_FILE", "/nonexistent/pw");
        let fx = fx.var("DECNET_DB_PASSWORD", "from-decnet");
        let resolved = fx
            .resolve(Service::Db, Some("from-url"), Some("DECNET_DB_PASSWORD"))
            .expect("resolves");
        assert_eq!(value(&resolved), Some("from-url"));
        let warnings: Vec<String> = resolved.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            warnings,
            [
                "DECNET_DB_PASSWORD_FILE /nonexistent/pw is set but not used: the password in the URL comes first",
                "DECNET_DB_PASSWORD is set but not used: the password in the URL comes first",
            ]
        );
    }

    #[test]
    fn the_file_beats_decnets_variable() {
        let fx = Fixture::new()
            .with_file_var(Service::Db, b"from-file\n")
            .var("DECNET_DB_PASSWORD", "from-decnet");
        let resolved = fx
            .resolve(Service::Db, None, Some("DECNET_DB_PASSWORD"))
            .expect("resolves");
        assert_eq!(value(&resolved), Some("from-file"));
        assert_eq!(resolved.warnings.len(), 1);
        assert!(resolved.warnings[0]
            .to_string()
            .starts_with("DECNET_DB_PASSWORD is set but not used"));
    }

    #[test]
    fn the_credential_beats_decnets_variable() {
        let fx = Fixture::new()
            .with_credential(Service::Db, b"from-systemd")
            .var("DECNET_DB_PASSWORD", "from-decnet");
        let resolved = fx
            .resolve(Service::Db, None, Some("DECNET_DB_PASSWORD"))
            .expect("resolves");
        assert_eq!(value(&resolved), Some("from-systemd"));
    }

    #[test]
    fn decnets_variable_is_used_when_nothing_else_is_set() {
        let fx = Fixture::new().var("DECNET_DB_PASSWORD", "from-decnet");
        let resolved = fx
            .resolve(Service::Db, None, Some("DECNET_DB_PASSWORD"))
            .expect("resolves");
        assert_eq!(value(&resolved), Some("from-decnet"));
        assert!(resolved.warnings.is_empty());
        // Not consulted where it does not apply (a DECNET_DB_URL, or Redis).
        let resolved = fx.resolve(Service::Db, None, None).expect("resolves");
        assert_eq!(value(&resolved), None);
    }

    #[test]
    fn a_file_and_a_credential_together_are_refused_by_name() {
        let fx = Fixture::new()
            .with_file_var(Service::Redis, b"a")
            .with_credential(Service::Redis, b"b");
        let err = fx
            .resolve(Service::Redis, None, None)
            .expect_err("conflict");
        let text = err.to_string();
        assert!(
            text.starts_with("both DECNET_REDIS_PASSWORD_FILE /"),
            "{text}"
        );
        assert!(
            text.contains("the systemd credential redis-password"),
            "{text}"
        );
        assert!(text.ends_with("; keep one of them"), "{text}");
    }

    #[test]
    fn empty_values_count_as_unset() {
        let fx = Fixture::new()
            .var("DECNET_DB_PASSWORD_FILE", "")
            .var("CREDENTIALS_DIRECTORY", "")
            .var("DECNET_DB_PASSWORD", "");
        let resolved = fx
            .resolve(Service::Db, Some(""), Some("DECNET_DB_PASSWORD"))
            .expect("resolves");
        assert_eq!(value(&resolved), None);
        assert!(resolved.warnings.is_empty());
    }

    #[test]
    fn the_password_never_prints() {
        let fx = Fixture::new().with_file_var(Service::Db, b"hunter2-secret\n");
        let resolved = fx.resolve(Service::Db, None, None).expect("resolves");
        let printed = format!("{resolved:?}");
        assert!(!printed.contains("hunter2-secret"), "{printed}");
        assert!(printed.contains("<redacted>"), "{printed}");
    }
}
