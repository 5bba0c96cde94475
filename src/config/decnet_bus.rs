//! DECNET's own bus, chosen as `decnet/bus/factory.py` (1.0.0) chooses it for
//! every DECNET worker: on or off, which transport, which socket.
//!
//! The choice is a pure function of the `DECNET_BUS_*` values (already merged:
//! environment over DECNET's ini) and of two facts about the host, passed in
//! so that tests can state them: whether `/run/decnet` is a directory this
//! process may write (`os.path.isdir` and `os.access(W_OK)`), and the home
//! directory (`os.path.expanduser("~")`). [`HostFacts::of_this_process`]
//! gathers them for real.
//!
//! The trap: `os.access` answers "no" on a read-only mount, and the packaged
//! unit's `ProtectSystem=strict` makes `/run` read-only. Inside that unit,
//! without more, the check would pick `~/.decnet/bus.sock` while DECNET's
//! workers (their units use `ProtectSystem=full`, which leaves `/run`
//! writable) pick `/run/decnet/bus.sock`. The unit therefore has
//! `ReadWritePaths=-/run/decnet`: the check then runs, as the same user
//! `decnet`, on the same directory with the same permissions as DECNET's
//! workers, and both land on the same socket.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Where `decnet bus` puts its socket when it may (`RuntimeDirectory=decnet` in its unit).
pub const RUNTIME_DIR: &str = "/run/decnet";

/// The socket's name, in [`RUNTIME_DIR`] or in `~/.decnet`.
pub const SOCKET_NAME: &str = "bus.sock";

/// What DECNET's workers use as their bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecnetBus {
    /// `DECNET_BUS_ENABLED=false`: DECNET's `NullBus`, nothing is published.
    Disabled,
    /// `DECNET_BUS_TYPE=fake`: an in-process bus that no other process hears.
    InProcess,
    /// `decnet bus`'s Unix socket.
    Unix {
        socket: PathBuf,
        choice: SocketChoice,
    },
}

/// Which rule of `_default_socket_path` gave the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketChoice {
    /// `DECNET_BUS_SOCKET`.
    Variable,
    /// `/run/decnet` is a directory this process may write.
    RuntimeDir,
    /// Neither: `~/.decnet/bus.sock`.
    Home,
}

/// What the choice needs to know of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    /// `os.path.isdir("/run/decnet") and os.access("/run/decnet", os.W_OK)`.
    pub runtime_dir_writable: bool,
    /// What `os.path.expanduser("~")` gives: `$HOME` when it is set (even
    /// empty), else the user's home from the user database; `None` when there
    /// is none, and then Python leaves `~` as it is.
    pub home: Option<PathBuf>,
}

impl HostFacts {
    /// The facts as this process sees them, with `home_variable` its `HOME`.
    pub fn of_this_process(home_variable: Option<&std::ffi::OsStr>) -> HostFacts {
        HostFacts {
            runtime_dir_writable: writable_dir(Path::new(RUNTIME_DIR)),
            home: home(home_variable.map(ToOwned::to_owned)),
        }
    }
}

/// `os.path.isdir(path) and os.access(path, os.W_OK)`: the real user's
/// permission, and "no" on a read-only mount.
pub fn writable_dir(path: &Path) -> bool {
    path.is_dir() && rustix::fs::access(path, rustix::fs::Access::WRITE_OK).is_ok()
}

fn home(home_variable: Option<OsString>) -> Option<PathBuf> {
    match home_variable {
        Some(home) => Some(PathBuf::from(home)),
        // With HOME unset, std asks the user database (getpwuid_r), as Python's pwd lookup does.
        #[allow(deprecated)]
        None => std::env::home_dir(),
    }
}

/// An unknown `DECNET_BUS_TYPE`: DECNET's `get_bus` raises `ValueError` on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("DECNET_BUS_TYPE {0:?} is not one of unix, fake (DECNET's workers refuse it too)")]
pub struct UnknownBusType(pub String);

/// `get_bus()`'s choice, with `value` giving each `DECNET_BUS_*` variable as
/// DECNET would see it (environment over ini; `Some("")` for a variable set empty).
pub fn choose(
    value: impl Fn(&str) -> Option<String>,
    host: &HostFacts,
) -> Result<DecnetBus, UnknownBusType> {
    if value("DECNET_BUS_ENABLED").is_some_and(|enabled| enabled.to_lowercase() == "false") {
        return Ok(DecnetBus::Disabled);
    }
    let kind = value("DECNET_BUS_TYPE").unwrap_or_else(|| "unix".to_owned());
    match kind.to_lowercase().as_str() {
        "unix" => {}
        "fake" => return Ok(DecnetBus::InProcess),
        other => return Err(UnknownBusType(other.to_owned())),
    }
    let (socket, choice) = match value("DECNET_BUS_SOCKET").filter(|socket| !socket.is_empty()) {
        Some(socket) => (PathBuf::from(socket), SocketChoice::Variable),
        None if host.runtime_dir_writable => (
            Path::new(RUNTIME_DIR).join(SOCKET_NAME),
            SocketChoice::RuntimeDir,
        ),
        None => (home_socket(host.home.as_deref()), SocketChoice::Home),
    };
    Ok(DecnetBus::Unix { socket, choice })
}

/// `os.path.expanduser("~/.decnet/bus.sock")`.
fn home_socket(home: Option<&Path>) -> PathBuf {
    let Some(home) = home else {
        return PathBuf::from("~/.decnet").join(SOCKET_NAME);
    };
    // expanduser strips the home's trailing slashes and falls back to "/".
    let home = home.to_string_lossy();
    let home = home.trim_end_matches('/');
    PathBuf::from(format!("{home}/.decnet/{SOCKET_NAME}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn facts(runtime_dir_writable: bool, home: Option<&str>) -> HostFacts {
        HostFacts {
            runtime_dir_writable,
            home: home.map(PathBuf::from),
        }
    }

    fn choose_with(vars: &[(&str, &str)], host: &HostFacts) -> Result<DecnetBus, UnknownBusType> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        choose(|name| vars.get(name).cloned(), host)
    }

    fn unix(socket: &str, choice: SocketChoice) -> DecnetBus {
        DecnetBus::Unix {
            socket: PathBuf::from(socket),
            choice,
        }
    }

    #[test]
    fn with_nothing_set_the_runtime_dir_when_writable_else_home() {
        let host = facts(true, Some("/opt/decnet"));
        assert_eq!(
            choose_with(&[], &host),
            Ok(unix("/run/decnet/bus.sock", SocketChoice::RuntimeDir))
        );
        let host = facts(false, Some("/opt/decnet/"));
        assert_eq!(
            choose_with(&[], &host),
            Ok(unix("/opt/decnet/.decnet/bus.sock", SocketChoice::Home))
        );
        // expanduser with HOME="" or HOME="/".
        assert_eq!(
            choose_with(&[], &facts(false, Some(""))),
            Ok(unix("/.decnet/bus.sock", SocketChoice::Home))
        );
        assert_eq!(
            choose_with(&[], &facts(false, Some("/"))),
            Ok(unix("/.decnet/bus.sock", SocketChoice::Home))
        );
        assert_eq!(
            choose_with(&[], &facts(false, None)),
            Ok(unix("~/.decnet/bus.sock", SocketChoice::Home))
        );
    }

    #[test]
    fn decnet_bus_socket_wins_unless_empty() {
        let host = facts(true, Some("/h"));
        assert_eq!(
            choose_with(&[("DECNET_BUS_SOCKET", "/srv/b.sock")], &host),
            Ok(unix("/srv/b.sock", SocketChoice::Variable))
        );
        assert_eq!(
            choose_with(&[("DECNET_BUS_SOCKET", "")], &host),
            Ok(unix("/run/decnet/bus.sock", SocketChoice::RuntimeDir))
        );
    }

    #[test]
    fn only_the_word_false_turns_the_bus_off() {
        let host = facts(true, None);
        for off in ["false", "FALSE", "False"] {
            assert_eq!(
                choose_with(
                    &[("DECNET_BUS_ENABLED", off), ("DECNET_BUS_TYPE", "nonsense")],
                    &host
                ),
                Ok(DecnetBus::Disabled)
            );
        }
        for on in ["0", "no", "off", "", "true"] {
            assert_eq!(
                choose_with(&[("DECNET_BUS_ENABLED", on)], &host),
                Ok(unix("/run/decnet/bus.sock", SocketChoice::RuntimeDir)),
                "{on:?}"
            );
        }
    }

    #[test]
    fn the_bus_type_is_unix_or_fake_in_any_case() {
        let host = facts(false, Some("/h"));
        assert_eq!(
            choose_with(&[("DECNET_BUS_TYPE", "UNIX")], &host),
            Ok(unix("/h/.decnet/bus.sock", SocketChoice::Home))
        );
        assert_eq!(
            choose_with(&[("DECNET_BUS_TYPE", "Fake")], &host),
            Ok(DecnetBus::InProcess)
        );
        assert_eq!(
            choose_with(&[("DECNET_BUS_TYPE", "redis")], &host),
            Err(UnknownBusType("redis".to_owned()))
        );
        // An empty type is no default: DECNET raises on "".
        assert_eq!(
            choose_with(&[("DECNET_BUS_TYPE", "")], &host),
            Err(UnknownBusType(String::new()))
        );
    }

    #[test]
    fn a_writable_directory_is_seen_as_such() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(writable_dir(dir.path()));
        assert!(!writable_dir(&dir.path().join("absent")));
        let file = dir.path().join("file");
        std::fs::write(&file, "").expect("write");
        assert!(!writable_dir(&file));
    }

    #[test]
    fn home_is_the_variable_even_when_empty() {
        assert_eq!(home(Some(OsString::from(""))), Some(PathBuf::new()));
        assert_eq!(home(Some(OsString::from("/h"))), Some(PathBuf::from("/h")));
    }
}
