//! `decnet-reconcile doctor`: what an operator runs when something looks
//! wrong. It shows every setting with where it came from, then checks, in the
//! order a pass needs them, DECNET's ini, the host id, the state file, the
//! database, Docker, the bus and that DECNET's own reconciler is not running
//! beside this one. Each problem is one line that says what to do. It writes
//! nothing: the state file and DECNET's ini are read, the database is opened
//! read-only, the bus is greeted and left, Docker is asked for its list.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::bus::{self, Bus, RedisAccess};
use crate::config::decnet_ini::IniError;
use crate::config::decnet_root::InstallKind;
use crate::config::{Checkup, Origin, Setting, Settings};
use crate::core::{CheckResult, Diagnosis, ShownSetting};
use crate::state_file::{self, StateFileError};
use crate::store::{self, DbTarget, Inspection};

/// What a pass (the timer's) runs as: the user every piece of advice names.
const SERVICE_USER: &str = "decnet";

/// The diagnosis of this host.
pub async fn run(checkup: &Checkup) -> Diagnosis {
    let settings = &checkup.settings;
    let mut checks = vec![
        CheckResult {
            check: "decnet_ini",
            problem: settings.ini_problem.as_ref().map(ini_problem),
        },
        CheckResult {
            check: "host_uuid",
            problem: settings
                .host_uuid
                .as_ref()
                .err()
                .map(|err| format!("{err:#}")),
        },
        CheckResult {
            check: "state_file",
            problem: match &settings.state_file {
                Ok(state_file) => state_file_problem(&state_file.value),
                Err(err) => Some(format!("{err:#}")),
            },
        },
        CheckResult {
            check: "db",
            problem: match &settings.db {
                Ok(db) => db_problem(&db.target.value, settings, checkup.db_busy_timeout).await,
                Err(err) => Some(format!("{err:#}")),
            },
        },
        CheckResult {
            check: "docker",
            problem: docker_problem(&settings.docker_host.value, checkup.docker_timeout).await,
        },
        CheckResult {
            check: "bus",
            problem: match &settings.bus {
                Ok(Setting {
                    value: Some(bus), ..
                }) => bus_problem(bus, &checkup.redis_access, checkup.bus_timeout).await,
                Ok(Setting { value: None, .. }) => None,
                Err(err) => Some(format!("{err:#}")),
            },
        },
    ];
    checks.push(CheckResult {
        check: "decnet_reconciler",
        problem: reconciler_problem(&settings.install_dir.value),
    });
    Diagnosis {
        settings: shown_settings(settings),
        checks,
    }
}

/// Every setting that could be resolved, in the order of the checks.
fn shown_settings(settings: &Settings) -> Vec<ShownSetting> {
    let mut shown = Vec::new();
    let mut show = |setting: &'static str, value: String, origin: &Origin| {
        shown.push(ShownSetting {
            setting,
            value,
            origin: origin.kind(),
            place: origin.place(),
        })
    };
    let path = |path: &Path| path.display().to_string();
    show(
        "install_dir",
        path(&settings.install_dir.value),
        &settings.install_dir.origin,
    );
    show(
        "decnet_ini",
        path(&settings.ini_file.value),
        &settings.ini_file.origin,
    );
    if let Some(root) = &settings.root {
        let how = match &root.kind {
            InstallKind::Regular => format!("decnet installed in the venv {}", root.venv.display()),
            InstallKind::Editable { evidence } => format!(
                "an editable install into the venv {}, per {}",
                root.venv.display(),
                evidence.display()
            ),
        };
        show(
            "decnet_root",
            path(&root.root),
            &Origin::Discovered(format!(
                "{how}, under the install dir {}",
                settings.install_dir.value.display()
            )),
        );
    }
    if let Ok(host_uuid) = &settings.host_uuid {
        show("host_uuid", host_uuid.value.clone(), &host_uuid.origin);
    }
    if let Ok(state_file) = &settings.state_file {
        show("state_file", path(&state_file.value), &state_file.origin);
    }
    if let Ok(db) = &settings.db {
        show("db_type", db.kind.value.clone(), &db.kind.origin);
        // A DbTarget shows no password.
        show("db", db.target.value.to_string(), &db.target.origin);
        for (name, part) in &db.parts {
            show(name, part.value.clone(), &part.origin);
        }
    }
    show(
        "docker_host",
        crate::text::redact_url(&settings.docker_host.value),
        &settings.docker_host.origin,
    );
    if let Ok(bus) = &settings.bus {
        let value = match &bus.value {
            Some(Bus::Redis(url)) => crate::text::redact_url(url),
            Some(Bus::DecnetUnix(socket)) => format!("unix://{}", socket.display()),
            None => "none".to_owned(),
        };
        show("bus", value, &bus.origin);
    }
    show(
        "heartbeat",
        on_off(settings.heartbeat.value),
        &settings.heartbeat.origin,
    );
    show(
        "create_table",
        on_off(settings.create_table.value),
        &settings.create_table.origin,
    );
    shown
}

fn on_off(value: bool) -> String {
    match value {
        true => "on",
        false => "off",
    }
    .to_owned()
}

fn ini_problem(err: &IniError) -> String {
    match err {
        IniError::Read { .. } => format!(
            "{err}: DECNET's services read it as group {SERVICE_USER}; run this as the user the \
             timer runs as (sudo -u {SERVICE_USER} decnet-reconcile doctor), or make it readable"
        ),
        _ => format!("{err}: fix it, then run this again"),
    }
}

fn state_file_problem(path: &Path) -> Option<String> {
    let err = state_file::read(path).err()?;
    let what_to_do = match &err {
        StateFileError::Unreadable { source, .. }
            if source.kind() == ErrorKind::PermissionDenied =>
        {
            format!(
                "give the user the timer runs as ({SERVICE_USER}) read access, or run this as that user"
            )
        }
        StateFileError::Syntax { .. } | StateFileError::Invalid { .. } => {
            "every pass fails, writing nothing, until it is valid again: `decnet deploy` rewrites it"
                .to_owned()
        }
        _ => "every pass fails, writing nothing, until this is fixed".to_owned(),
    };
    Some(format!("{:#}: {what_to_do}", anyhow::Error::new(err)))
}

async fn db_problem(target: &DbTarget, settings: &Settings, timeout: Duration) -> Option<String> {
    let create = settings.create_table.value;
    let inspection = match store::inspect(target, timeout).await {
        Ok(inspection) => inspection,
        Err(err) => {
            return Some(format!(
                "{err:#}: check the database settings above (--db, DECNET_DB_*, [database] in DECNET's ini)"
            ))
        }
    };
    let start_decnet =
        "start DECNET (systemctl start decnet.target), which creates it, then run this again";
    match inspection {
        Inspection { exists: false, .. } if !create => Some(format!(
            "database {target} does not exist: {start_decnet}; for a database DECNET never manages, \
             pass --create-table"
        )),
        Inspection {
            exists: true,
            has_fleet_deckies: false,
            ..
        } if !create => Some(format!(
            "database {target} has no table fleet_deckies: DECNET creates its tables on its first \
             start: {start_decnet}, or point --db (DECNET_DB_*) at DECNET's database"
        )),
        Inspection {
            has_fleet_deckies: true,
            has_alembic_version: false,
            ..
        } if !create => Some(format!(
            "database {target} has fleet_deckies but no alembic_version: DECNET did not create it \
             (an older decnet-reconcile may have), and DECNET cannot start on it (\"table \
             fleet_deckies already exists\"); if DECNET never ran on it, move it aside and {start_decnet}"
        )),
        Inspection {
            exists: true,
            file: Some(file),
            ..
        } => not_writable(target, &file),
        _ => None,
    }
}

/// A pass writes the SQLite file, and beside it SQLite's `-wal` and `-shm`:
/// `file` is the database's own file, every link resolved, as SQLite uses it.
fn not_writable(target: &DbTarget, file: &Path) -> Option<String> {
    let dir = match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let writable = |path: &Path| rustix::fs::access(path, rustix::fs::Access::WRITE_OK).is_ok();
    (!writable(file) || !writable(&dir)).then(|| {
        let via = match target {
            DbTarget::Sqlite(given) => crate::store::files::via(given, file),
            DbTarget::MySql(_) => String::new(),
        };
        format!(
            "database {target}{via} or its directory is not writable by this user, and a pass \
             writes both (SQLite's -wal and -shm go beside it): run this as the user the timer \
             runs as ({SERVICE_USER}), or give that user write access"
        )
    })
}

async fn docker_problem(docker_host: &str, timeout: Duration) -> Option<String> {
    let err = crate::docker::container_states(docker_host, timeout)
        .await
        .err()?;
    let shown = crate::text::redact_url(docker_host);
    let denied = matches!(&err, crate::docker::DockerError::Connection(io)
        if io.kind() == ErrorKind::PermissionDenied);
    Some(match denied {
        true => format!(
            "Docker at {shown} refuses this user ({err}): add the user the timer runs as to group \
             docker (adduser {SERVICE_USER} docker), or run this as that user"
        ),
        false => format!(
            "Docker at {shown} does not answer ({err}): start Docker, or name it with \
             --docker-host (DOCKER_HOST); until then every pass runs with container states unknown"
        ),
    })
}

async fn bus_problem(bus: &Bus, access: &RedisAccess, timeout: Duration) -> Option<String> {
    let err = bus::probe(bus, access, timeout).await.err()?;
    let what_to_do = match (bus, err.permission_denied()) {
        (Bus::DecnetUnix(_), true) => format!(
            "its socket is group {SERVICE_USER}'s: run this as the user the timer runs as \
             ({SERVICE_USER}), or add this user to group {SERVICE_USER}"
        ),
        (Bus::DecnetUnix(_), false) => "start DECNET's bus (systemctl start decnet-bus.service), \
             or name its socket ([bus] socket in DECNET's ini, DECNET_BUS_SOCKET, or --bus)"
            .to_owned(),
        (Bus::Redis(_), _) => "start Redis, or fix --redis-url (DECNET_REDIS_URL)".to_owned(),
    };
    Some(format!(
        "{bus}: {err}: {what_to_do}; until then every pass loses its events and DECNET's Workers \
         panel sees no heartbeat"
    ))
}

/// DECNET's own reconciler running for this install: a unit systemd reports
/// active, or a process running `decnet reconcile` (or DECNET ≥ 1.1's
/// `decnet supervise batch`, which reconciles inside) from under the install dir.
fn reconciler_problem(install_dir: &Path) -> Option<String> {
    let mut found = active_units();
    found.extend(reconciler_processes(install_dir));
    let what = found.first()?;
    Some(match what.supervise_batch {
        false => format!(
            "DECNET's own reconciler runs beside this one ({}): two reconcilers announce every \
             change twice; stop it (systemctl stop decnet-reconciler.service, or end that \
             process): the package's drop-in keeps it stopped while decnet-reconcile.timer is enabled",
            what.shown
        ),
        true => format!(
            "DECNET's decnet-supervise-batch.service reconciles this host every 30 s ({}), and \
             cannot stop its reconciler alone: keep it and disable this tool's timer \
             (systemctl disable --now decnet-reconcile.timer)",
            what.shown
        ),
    })
}

struct Running {
    shown: String,
    supervise_batch: bool,
}

/// DECNET's reconciler units that systemd (when it runs this host) reports active.
fn active_units() -> Vec<Running> {
    const UNITS: [(&str, bool); 2] = [
        ("decnet-reconciler.service", false),
        ("decnet-supervise-batch.service", true),
    ];
    if !Path::new("/run/systemd/system").is_dir() {
        return Vec::new();
    }
    let Some(states) = systemctl_is_active(&UNITS.map(|(unit, _)| unit)) else {
        return Vec::new();
    };
    UNITS
        .iter()
        .zip(states)
        .filter(|(_, state)| state == "active")
        .map(|((unit, supervise_batch), _)| Running {
            shown: format!("systemd reports {unit} active"),
            supervise_batch: *supervise_batch,
        })
        .collect()
}

/// `systemctl is-active UNITS…`, one state per unit; `None` when it cannot say within 5 s.
fn systemctl_is_active(units: &[&str]) -> Option<Vec<String>> {
    let mut child = Command::new("systemctl")
        .arg("is-active")
        .args(units)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while child.try_wait().ok()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let output = child.wait_with_output().ok()?;
    let states: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    (states.len() == units.len()).then_some(states)
}

/// Processes running DECNET's reconciler from under `install_dir` (another
/// install's DECNET reconciles its own database). Those this user may not
/// see (`hidepid`) are not found.
fn reconciler_processes(install_dir: &Path) -> Vec<Running> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<(u32, Running)> = entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let args: Vec<String> = cmdline
                .split(|&b| b == 0)
                .map(|arg| String::from_utf8_lossy(arg).into_owned())
                .collect();
            let supervise_batch = runs_reconciler(&args, install_dir)?;
            Some((
                pid,
                Running {
                    shown: format!("process {pid}: {}", args.join(" ").trim_end()),
                    supervise_batch,
                },
            ))
        })
        .collect();
    found.sort_by_key(|(pid, _)| *pid);
    found.into_iter().map(|(_, running)| running).collect()
}

/// Whether `args` run `decnet reconcile` (`Some(false)`) or `decnet supervise
/// batch` (`Some(true)`) with a `decnet` script from under `install_dir`.
fn runs_reconciler(args: &[String], install_dir: &Path) -> Option<bool> {
    let at = args.iter().position(|arg| {
        let script = Path::new(arg);
        script.file_name().is_some_and(|name| name == "decnet") && script.starts_with(install_dir)
    })?;
    match (
        args.get(at + 1).map(String::as_str),
        args.get(at + 2).map(String::as_str),
    ) {
        (Some("reconcile"), _) => Some(false),
        (Some("supervise"), Some("batch")) => Some(true),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split(' ').map(str::to_owned).collect()
    }

    #[test]
    fn decnets_reconciler_is_told_by_its_command_line_under_the_install_dir() {
        let dir = Path::new("/opt/decnet");
        let cases = [
            (
                "/opt/decnet/venv/bin/python /opt/decnet/venv/bin/decnet reconcile",
                Some(false),
            ),
            (
                "/opt/decnet/.venv/bin/decnet reconcile --daemon",
                Some(false),
            ),
            (
                "/opt/decnet/venv/bin/python /opt/decnet/venv/bin/decnet supervise batch",
                Some(true),
            ),
            (
                "/opt/decnet/venv/bin/python /opt/decnet/venv/bin/decnet api",
                None,
            ),
            (
                "/srv/other/venv/bin/python /srv/other/venv/bin/decnet reconcile",
                None,
            ),
            ("/usr/bin/decnet-reconcile once", None),
            ("vim /opt/decnet/decnet reconcile.txt", None),
        ];
        for (line, expected) in cases {
            assert_eq!(runs_reconciler(&args(line), dir), expected, "{line}");
        }
    }
}
