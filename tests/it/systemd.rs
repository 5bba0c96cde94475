//! The systemd units of SPEC §8, checked with the tools that judge them:
//! `systemd-analyze verify` finds nothing to say, `systemd-analyze security`
//! scores the service's exposure at most 1.5, and the service's own
//! `ExecStart=` command line makes a clean pass against this machine's Docker
//! and Redis, as an unprivileged user in the `docker` group, staying inside
//! the unit's system-call filter, address families and loopback-only IP rule.
//!
//! These tests need `systemd-analyze` (Debian's `systemd`), `strace`, `man`
//! and `setpriv`; `bash scripts/services` installs what is missing and starts
//! dockerd and Redis. A missing tool fails a test: it never skips.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use crate::fixture::{
    create_decnet_sqlite, decky, figure, run, state_file_text, waits_of, DecnetHost, Install, Run,
    BINARY,
};

const SERVICE: &str = "decnet-reconcile.service";
const TIMER: &str = "decnet-reconcile.timer";
const PATH_UNIT: &str = "decnet-reconcile.path";
/// Where the packaged unit writes its metrics (the directory of Debian's
/// prometheus-node-exporter textfile collector).
const METRICS_FILE: &str = "/var/lib/prometheus/node-exporter/decnet-reconcile.prom";
/// The package's drop-in for DECNET 1.0's own reconciler.
const DROP_IN: &str = "decnet-reconciler.service.d/50-decnet-reconcile.conf";
/// The exposure SPEC §8 allows at most.
const MAX_EXPOSURE: f64 = 1.5;
/// `nobody`/`nogroup`: stands in for the package's `decnet` user, which this
/// machine need not have.
const SERVICE_UID: u32 = 65534;

#[test]
fn the_units_pass_systemd_analyze_verify() {
    let installed = InstalledUnits::new();
    // Verify loads the service again through the timer's and the path unit's
    // Unit=, from the directory beside them, so all are checked together.
    let output = systemd_analyze(&installed)
        .arg("verify")
        .arg(installed.unit(SERVICE))
        .arg(installed.unit(TIMER))
        .arg(installed.unit(PATH_UNIT))
        .output()
        .expect(SYSTEMD_ANALYZE_MISSING);
    // verify exits 0 on warnings (unknown keys, bad values): stderr is the
    // verdict.
    assert!(
        output.status.success() && output.stderr.is_empty() && output.stdout.is_empty(),
        "systemd-analyze verify complained ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn service_exposure_is_at_most_one_and_a_half() {
    let installed = InstalledUnits::new();
    let output = systemd_analyze(&installed)
        .args(["security", "--offline=true", "--no-pager"])
        .arg(installed.unit(SERVICE))
        .output()
        .expect(SYSTEMD_ANALYZE_MISSING);
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "systemd-analyze security failed ({}):\n{report}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let exposure = overall_exposure(&report)
        .unwrap_or_else(|| panic!("no overall exposure level in:\n{report}"));
    assert!(
        exposure <= MAX_EXPOSURE,
        "exposure {exposure} is above {MAX_EXPOSURE}:\n{report}"
    );
}

/// The unit as docs/operating.md widens it for a fleet: its commented
/// credentials loaded (plain and encrypted), and servers of another machine
/// allowed (with TLS or without: the IP filter has no ports). Still at most 1.5.
#[test]
fn service_exposure_stays_at_most_one_and_a_half_with_credentials_and_remote_servers() {
    let installed = InstalledUnits::new();
    let unit = installed.unit(SERVICE);
    let text = std::fs::read_to_string(&unit).expect("read the unit");
    let mut widened: String = text
        .lines()
        .map(|line| match line.strip_prefix("#LoadCredential") {
            Some(rest) => format!("LoadCredential{rest}\n"),
            None => format!("{line}\n"),
        })
        .collect();
    assert_eq!(
        widened.matches("\nLoadCredential").count(),
        3,
        "the unit shows LoadCredential= and LoadCredentialEncrypted=, commented"
    );
    // The drop-in of docs/operating.md, "Widening the sandbox".
    widened.push_str("IPAddressAllow=10.20.0.5 10.20.0.6\n");
    std::fs::write(&unit, widened).expect("write the unit");
    let output = systemd_analyze(&installed)
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
        .expect(SYSTEMD_ANALYZE_MISSING);
    let report = String::from_utf8_lossy(&output.stdout);
    let exposure = overall_exposure(&report)
        .unwrap_or_else(|| panic!("no overall exposure level in:\n{report}"));
    figure("exposure_with_credentials_and_remote_servers", exposure);
    assert!(
        exposure <= MAX_EXPOSURE,
        "exposure {exposure} is above {MAX_EXPOSURE}:\n{report}"
    );
}

#[test]
fn service_is_a_quiet_oneshot_pass_as_an_unprivileged_docker_user() {
    let unit = UnitFile::read(SERVICE);
    assert_eq!(unit.values("Service", "Type"), ["oneshot"]);
    let exec_start = unit.exec_start();
    assert_eq!(
        exec_start[..3],
        ["/usr/bin/decnet-reconcile", "once", "-q"],
        "the installed binary, one quiet pass"
    );
    let user = unit.single("Service", "User");
    assert!(
        !user.is_empty() && user != "root" && user != "0",
        "User={user}"
    );
    assert!(
        unit.values("Service", "DynamicUser").is_empty(),
        "a DynamicUser cannot own the DB"
    );
    assert!(
        unit.words("Service", "SupplementaryGroups")
            .contains(&"docker".to_owned()),
        "the user needs the docker group for the Docker socket"
    );
    assert_eq!(
        unit.values("Service", "EnvironmentFile"),
        ["-/opt/decnet/.env.local", "-/etc/default/decnet-reconcile"],
        "DECNET's secrets, then ours, which outrank them"
    );
    // On by default, so that DECNET's Workers panel shows the reconciler, and
    // the metrics where node-exporter reads them; the defaults file (an
    // EnvironmentFile=, which outranks Environment=) can turn either off.
    assert_eq!(
        unit.values("Service", "Environment"),
        [
            "DECNET_RECONCILE_HEARTBEAT=1",
            &format!("DECNET_RECONCILE_METRICS_FILE={METRICS_FILE}")
        ]
    );
    // Read-only but for DECNET's install dir, which holds DECNET's root in
    // both of DECNET's layouts (the DB and SQLite's -wal/-shm), and the bus's
    // directory, so that DECNET's bus factory asks the same question here as
    // in DECNET's workers (config/decnet_bus.rs, "the trap"), and
    // node-exporter's textfile directory for the metrics.
    assert_eq!(unit.values("Service", "ProtectSystem"), ["strict"]);
    assert_eq!(
        unit.values("Service", "ReadWritePaths"),
        [
            "-/opt/decnet -/run/decnet",
            "-/var/lib/prometheus/node-exporter"
        ]
    );
    let timeout = unit.single("Service", "TimeoutStartSec");
    let seconds: u32 = timeout
        .strip_suffix('s')
        .and_then(|secs| secs.parse().ok())
        .unwrap_or_else(|| panic!("TimeoutStartSec={timeout} is not whole seconds"));
    assert!(
        seconds < 30,
        "a pass must end before the timer's next tick: {seconds}s"
    );
    // The pass's own bounds end it, with a clear message, before systemd kills it:
    // docs/operating.md's sum of its waits, plus the slack of process start,
    // the state file and planning (2 s).
    let bounds = waits_of(&exec_start) + Duration::from_secs(2);
    assert!(
        bounds < Duration::from_secs(seconds.into()),
        "Docker, DB lock and the bus may take {bounds:?} together, over TimeoutStartSec={timeout}"
    );
    assert!(
        !unit
            .values("Service", "RemainAfterExit")
            .iter()
            .any(|v| v == "yes"),
        "RemainAfterExit=yes would stop the timer from starting the service again"
    );
    assert!(
        unit.values("Install", "WantedBy").is_empty(),
        "the service is started by its timer, never enabled by itself"
    );
}

/// Never two reconcilers: a pass stops DECNET 1.0's `decnet-reconciler.service`
/// (`Conflicts=`), and the package's drop-in keeps it from starting while the
/// timer is enabled: its condition is the very link `systemctl enable` makes.
/// The drop-in is checked on DECNET's own unit, rendered as `decnet init`
/// renders it, by `systemd-analyze verify`.
#[test]
fn decnets_own_reconciler_is_held_back_while_the_timer_is_enabled() {
    let service = UnitFile::read(SERVICE);
    assert_eq!(
        service.words("Unit", "Conflicts"),
        ["decnet-reconciler.service"]
    );
    assert!(
        UnitFile::read(TIMER).values("Unit", "Conflicts").is_empty(),
        "a Conflicts= on the timer would let decnet.target stop it for good"
    );
    let drop_in = UnitFile::read(DROP_IN);
    let condition = drop_in.single("Unit", "ConditionPathExists");
    let link = condition
        .strip_prefix('!')
        .unwrap_or_else(|| panic!("the condition is not a negation: {condition}"));

    // `systemctl --root` enables offline, making the link a real enable makes.
    let root = TempDir::new().expect("temp dir");
    let units = root.path().join("usr/lib/systemd/system");
    std::fs::create_dir_all(&units).expect("mkdir");
    for name in [SERVICE, TIMER] {
        std::fs::copy(repo_path(&format!("systemd/{name}")), units.join(name)).expect("copy");
    }
    let enabled = Command::new("systemctl")
        .arg(format!("--root={}", root.path().display()))
        .args(["enable", TIMER])
        .output()
        .expect("systemctl (Debian's systemd package)");
    assert!(enabled.status.success(), "{enabled:?}");
    let made = root.path().join(link.trim_start_matches('/'));
    assert!(
        made.symlink_metadata().is_ok_and(|meta| meta.is_symlink()),
        "enabling the timer does not make {link}, the drop-in's condition"
    );

    // DECNET 1.0's unit, rendered as `decnet init` does (its venv: a stand-in
    // script, since verify checks that ExecStart= can run), with the drop-in beside it.
    let dir = TempDir::new().expect("temp dir");
    let venv = dir.path().join("venv");
    std::fs::create_dir_all(venv.join("bin")).expect("mkdir");
    let decnet = venv.join("bin/decnet");
    std::fs::write(&decnet, "#!/bin/sh\n").expect("write");
    std::fs::set_permissions(&decnet, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let template = std::fs::read_to_string(repo_path(
        "tests/decnet/deploy/decnet-reconciler.service.j2",
    ))
    .expect("DECNET's unit template");
    let rendered = template
        .replace("{{ user }}", "decnet")
        .replace("{{ group }}", "decnet")
        .replace("{{ install_dir }}", "/opt/decnet")
        .replace("{{ venv_dir }}", &venv.display().to_string());
    assert!(
        !rendered.contains("{{"),
        "a placeholder is left:\n{rendered}"
    );
    let units = dir.path().join("units");
    std::fs::create_dir_all(units.join("decnet-reconciler.service.d")).expect("mkdir");
    std::fs::write(units.join("decnet-reconciler.service"), rendered).expect("write");
    std::fs::copy(
        repo_path(&format!("systemd/{DROP_IN}")),
        units.join(DROP_IN),
    )
    .expect("copy the drop-in");
    let output = Command::new("systemd-analyze")
        .args(["verify", "decnet-reconciler.service"])
        .env("SYSTEMD_UNIT_PATH", format!("{}:", units.display()))
        .env("SYSTEMD_COLORS", "0")
        .output()
        .expect(SYSTEMD_ANALYZE_MISSING);
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "systemd-analyze verify of DECNET's reconciler with the drop-in complained ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn timer_starts_the_service_every_30_seconds_from_boot() {
    let unit = UnitFile::read(TIMER);
    assert_eq!(unit.single("Timer", "OnBootSec"), "30s");
    assert_eq!(unit.single("Timer", "OnUnitActiveSec"), "30s");
    assert_eq!(unit.single("Timer", "AccuracySec"), "1s");
    assert_eq!(unit.values("Install", "WantedBy"), ["timers.target"]);
    // No Unit=: the timer starts the service of its own name.
    assert!(unit.values("Timer", "Unit").is_empty());
}

#[test]
fn path_unit_starts_the_service_when_decnets_state_file_changes() {
    let unit = UnitFile::read(PATH_UNIT);
    // DECNET rewrites the file in place: only the close after a write means it
    // is whole, which PathChanged= waits for (PathModified= would not).
    assert_eq!(
        unit.values("Path", "PathChanged"),
        ["/opt/decnet/venv/lib/python3.11/site-packages/decnet-state.json"],
        "DECNET's installer layout; the package's drop-in names the file it finds"
    );
    assert!(unit.values("Path", "PathModified").is_empty());
    // No Unit=: it starts the service of its own name.
    assert!(unit.values("Path", "Unit").is_empty());
    assert_eq!(unit.single("Path", "TriggerLimitIntervalSec"), "10s");
    assert_eq!(unit.single("Path", "TriggerLimitBurst"), "100");
    assert_eq!(unit.values("Install", "WantedBy"), ["paths.target"]);

    // The service it starts must take a start on every write: systemd's
    // default start limit would fail it, and the path unit with it, for good.
    let service = UnitFile::read(SERVICE);
    assert_eq!(service.single("Unit", "StartLimitIntervalSec"), "0");
}

#[test]
fn service_writes_its_metrics_where_node_exporter_reads_them() {
    let unit = UnitFile::read(SERVICE);
    assert!(
        unit.words("Service", "Environment")
            .contains(&format!("DECNET_RECONCILE_METRICS_FILE={METRICS_FILE}")),
        "the packaged unit writes its metrics for node-exporter's textfile collector"
    );
    // "-": without node-exporter the directory is absent, and a ReadWritePaths=
    // without it would fail every pass with 226/NAMESPACE.
    let directory = METRICS_FILE.rsplit_once('/').expect("a directory").0;
    assert!(
        unit.words("Service", "ReadWritePaths")
            .contains(&format!("-{directory}")),
        "the sandbox must let the pass write {directory}"
    );
}

#[test]
fn exec_start_makes_a_clean_pass_then_stays_silent_when_converged() {
    let pass = ServicePass::new();

    let first = run(&mut pass.command(&[]));
    assert_clean_exit(&first, "the first pass");
    assert!(
        first.stdout.contains("inserted=2 deleted=0 updated=0"),
        "the first pass inserts both deckies:\n{}",
        first.stdout
    );

    // -q: 2,880 converged passes a day must not reach the journal.
    let second = run(&mut pass.command(&[]));
    assert_clean_exit(&second, "the converged pass");
    assert!(
        second.stdout.is_empty(),
        "a converged pass under -q printed:\n{}",
        second.stdout
    );
}

#[test]
fn exec_start_stays_inside_the_units_sandbox() {
    let unit = UnitFile::read(SERVICE);
    let pass = ServicePass::new();
    let trace = pass.dir.path().join("strace.out");
    let strace = [
        "strace".to_owned(),
        "-f".to_owned(),
        "-qq".to_owned(),
        "-o".to_owned(),
        trace.display().to_string(),
        "--".to_owned(),
    ];
    let output = run(&mut pass.command(&strace));
    assert_clean_exit(&output, "the traced pass");
    let trace = std::fs::read_to_string(&trace).expect(STRACE_MISSING);
    let calls = parse_trace(&trace);
    assert!(
        calls.iter().any(|call| call.name == "connect"),
        "the trace shows no connect(): was the pass traced at all?\n{trace}"
    );
    // The metrics file's lock and atomic replacement are in the trace too.
    for call in ["flock", "fchmod", "rename"] {
        assert!(
            calls.iter().any(|traced| traced.name.starts_with(call)),
            "the trace shows no {call}(): were the metrics written?"
        );
    }

    let allowed = allowed_syscalls(&unit);
    let denied: BTreeSet<&str> = calls
        .iter()
        .map(|call| call.name.as_str())
        .filter(|name| !allowed.contains(*name))
        .collect();
    assert!(
        denied.is_empty(),
        "SystemCallFilter= would refuse {denied:?}"
    );

    let families = unit.words("Service", "RestrictAddressFamilies");
    for call in calls.iter().filter(|call| call.name == "socket") {
        let family = call.args.split(',').next().unwrap_or_default().trim();
        assert!(
            families.iter().any(|allowed| allowed == family),
            "RestrictAddressFamilies= would refuse {}",
            call.line
        );
    }

    assert_eq!(unit.values("Service", "IPAddressDeny"), ["any"]);
    assert_eq!(unit.values("Service", "IPAddressAllow"), ["localhost"]);
    for call in calls
        .iter()
        .filter(|call| ["connect", "sendto", "sendmsg"].contains(&call.name.as_str()))
    {
        if let Some(address) = ip_address(&call.args) {
            assert!(
                address.is_loopback(),
                "IPAddressAllow=localhost would drop {}",
                call.line
            );
        }
    }

    assert_eq!(unit.values("Service", "MemoryDenyWriteExecute"), ["yes"]);
    for call in calls
        .iter()
        .filter(|call| ["mmap", "mprotect", "pkey_mprotect"].contains(&call.name.as_str()))
    {
        assert!(
            !(call.args.contains("PROT_WRITE") && call.args.contains("PROT_EXEC")),
            "MemoryDenyWriteExecute= would refuse {}",
            call.line
        );
    }
}

#[test]
fn service_is_ordered_after_decnets_bus_without_needing_it() {
    let unit = UnitFile::read(SERVICE);
    assert!(
        unit.words("Unit", "After")
            .contains(&"decnet-bus.service".to_owned()),
        "a pass should start after DECNET's bus, so its events find it"
    );
    // A host without DECNET's bus must still run passes: ordering only.
    for dependency in [
        "Wants",
        "Requires",
        "Requisite",
        "BindsTo",
        "PartOf",
        "Upholds",
    ] {
        assert!(
            !unit
                .words("Unit", dependency)
                .iter()
                .any(|unit| unit.starts_with("decnet-bus")),
            "{dependency}= would tie the pass to DECNET's bus"
        );
    }
}

/// `ProtectSystem=strict` leaves `/run` a read-only bind mount. The service's
/// `ExecStart=`, as its user, still reaches DECNET's bus under it: connecting
/// to a Unix socket needs write permission on the socket, which a read-only
/// mount does not take away (it refuses writes to files, directories and
/// links only). Here `unshare -m` and `mount --bind -o ro` stand in for
/// systemd's namespace, which a machine without systemd as PID 1 cannot make.
#[test]
fn exec_start_reaches_decnets_bus_on_a_read_only_run_directory() {
    assert!(
        running_as_root(),
        "this test mounts (as bash scripts/test runs it: as root)"
    );
    let pass = ServicePass::new();
    let run = pass.dir.path().join("run");
    let socket_dir = run.join("decnet");
    std::fs::create_dir_all(&socket_dir).expect("mkdir run/decnet");
    let socket = socket_dir.join("bus.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind the bus socket");
    // As `decnet bus` leaves it: mode 0660, group decnet (here the service user's group).
    std::os::unix::fs::chown(&socket, Some(0), Some(SERVICE_UID)).expect("chown the socket");
    std::fs::set_permissions(&socket, std::os::unix::fs::PermissionsExt::from_mode(0o660))
        .expect("chmod the socket");
    let (frames_tx, frames) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("read timeout");
        let mut received = Vec::new();
        let mut buffer = [0_u8; 4096];
        // Read up to BYE, then close: the tool's sign that the bus read it all.
        while !received.ends_with(b"BYE\n\0\0\0\0") {
            match std::io::Read::read(&mut stream, &mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
        let _ = frames_tx.send(received);
    });

    let mut inner = pass.command(&[]);
    inner.args(["--heartbeat", "--output", "json", "--bus"]);
    inner.arg(format!("unix://{}", socket.display()));
    // Mount run/ read-only in a namespace of its own, prove it refuses a
    // write, then run the pass (setpriv and all) inside it.
    let script = r#"mount --bind -o ro "$0" "$0" || exit 96
if out=$(touch "$0/decnet/probe" 2>&1); then echo "$0 is still writable" >&2; exit 97; fi
case "$out" in *"Read-only file system"*) ;; *) echo "$out" >&2; exit 98 ;; esac
exec "$@""#;
    let mut outer = Command::new("unshare");
    outer
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .arg(&run)
        .arg(inner.get_program())
        .args(inner.get_args())
        .current_dir(pass.dir.path());
    for (name, value) in inner.get_envs() {
        match value {
            Some(value) => outer.env(name, value),
            None => outer.env_remove(name),
        };
    }
    let output = crate::fixture::run(&mut outer);
    assert_clean_exit(&output, "the pass under a read-only /run");
    let report = output.json();
    assert_eq!(
        (report["published"].as_u64(), report["heartbeat"].as_str()),
        (Some(2), Some("sent")),
    );
    let frames = frames
        .recv_timeout(Duration::from_secs(20))
        .expect("the bus got a connection");
    let text = String::from_utf8_lossy(&frames);
    assert!(text.starts_with("HELLO decnet-reconcile["), "{text}");
    assert_eq!(text.matches("PUB decky.").count(), 2, "{text}");
    assert!(text.contains("PUB system.reconciler.health\n"), "{text}");
}

/// What installing the package on a DECNET host and doing nothing else runs:
/// the unit's `ExecStart=`, with the unit's `Environment=` and its
/// `EnvironmentFile=`s (DECNET's `.env.local`, then the packaged defaults file,
/// every line of which is commented out), as DECNET's user in the `docker`
/// group, in the otherwise empty environment systemd gives a service. The host
/// is a DECNET prefix (`tests/decnet/host.py`), owned by that user as `decnet
/// init` leaves it; its install dir and ini are named as the drop-in of
/// docs/operating.md names another install dir (`/opt/decnet` and
/// `/etc/decnet/decnet.ini` are the defaults). The pass finds DECNET's files
/// and bus, heartbeat and all: it prints its changes and nothing on stderr,
/// and the next pass prints nothing.
#[test]
fn the_packaged_unit_makes_clean_passes_on_a_decnet_host_with_nothing_configured() {
    assert!(
        running_as_root(),
        "this test runs the pass as the service user (as bash scripts/test runs it: as root)"
    );
    let host = DecnetHost::install(Install::Pip);
    host.bus();
    host.init_db();
    host.save_state(1);
    // As `decnet init` leaves a host: DECNET's files and its bus socket belong to its user.
    let chown = Command::new("chown")
        .args(["-R", &format!("{SERVICE_UID}:{SERVICE_UID}")])
        .arg(&host.install_dir)
        .arg(&host.socket)
        .status()
        .expect("chown");
    assert!(chown.success());

    let unit = UnitFile::read(SERVICE);
    let mut words = unit.exec_start();
    words[0] = BINARY.to_owned();
    let mut pass = Command::new("setpriv");
    pass.args([
        format!("--reuid={SERVICE_UID}"),
        format!("--regid={SERVICE_UID}"),
        format!("--groups={}", group_id("docker")),
        "--".to_owned(),
    ])
    .args(&words)
    .env_clear()
    .env(
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    )
    .env("HOME", &host.install_dir)
    .env("DECNET_INSTALL_DIR", &host.install_dir)
    .env("DECNET_CONFIG", &host.ini)
    .current_dir("/");
    for assignment in unit.values("Service", "Environment") {
        let (name, value) = assignment.split_once('=').expect("NAME=value");
        pass.env(name, value);
    }
    for file in unit.values("Service", "EnvironmentFile") {
        let file = file.trim_start_matches('-');
        let path = match file.strip_prefix("/opt/decnet/") {
            Some(rest) => host.install_dir.join(rest),
            None if file == "/etc/default/decnet-reconcile" => {
                repo_path("packaging/decnet-reconcile.default")
            }
            None => panic!("an EnvironmentFile= this test does not know: {file}"),
        };
        for (name, value) in environment_file(&path) {
            pass.env(name, value);
        }
    }
    let first = run(&mut pass);
    assert_clean_exit(&first, "the first pass on the DECNET host");
    assert!(
        first.stdout.ends_with("inserted=1 deleted=0 updated=0\n"),
        "{}",
        first.stdout
    );
    let second = run(&mut pass);
    assert_clean_exit(&second, "the converged pass on the DECNET host");
    assert_eq!(
        second.stdout, "",
        "a converged pass under -q prints nothing"
    );
}

/// The assignments of an environment file as systemd reads a simple one:
/// `NAME=value` lines, `#` and `;` lines skipped.
fn environment_file(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with(['#', ';']))
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect()
}

const SYSTEMD_ANALYZE_MISSING: &str =
    "cannot run systemd-analyze: install Debian's systemd package (bash scripts/services does)";
const STRACE_MISSING: &str =
    "cannot run strace: install Debian's strace package (bash scripts/services does)";

/// The units copied to a temporary directory the way verify needs them:
/// `ExecStart=` at the built binary (verify checks that it is executable) and
/// the committed man page where man(1) finds the units' `Documentation=`.
struct InstalledUnits {
    dir: TempDir,
}

impl InstalledUnits {
    fn new() -> Self {
        let dir = TempDir::new().expect("temp dir");
        for name in [SERVICE, TIMER, PATH_UNIT] {
            let text = UnitFile::read(name).text;
            std::fs::write(dir.path().join(name), point_exec_start_at(&text, BINARY))
                .expect("write unit");
        }
        let man1 = dir.path().join("man/man1");
        std::fs::create_dir_all(&man1).expect("man dir");
        std::fs::copy(
            repo_path("packaging/decnet-reconcile.1"),
            man1.join("decnet-reconcile.1"),
        )
        .expect("copy packaging/decnet-reconcile.1 (tests/it/generated.rs writes it)");
        Self { dir }
    }

    fn unit(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn systemd_analyze(installed: &InstalledUnits) -> Command {
    let mut cmd = Command::new("systemd-analyze");
    cmd.env("MANPATH", installed.dir.path().join("man"))
        .env("SYSTEMD_COLORS", "0")
        .env_remove("SYSTEMD_LOG_LEVEL")
        .current_dir(installed.dir.path());
    cmd
}

/// The unit's text with its `ExecStart=` binary replaced by `binary`.
fn point_exec_start_at(text: &str, binary: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        match line.strip_prefix("ExecStart=") {
            Some(command) => {
                let args = command.split_once(' ').map_or("", |(_, args)| args);
                out.push_str(&format!("ExecStart={binary} {args}"));
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// The number on `systemd-analyze security`'s last line:
/// `→ Overall exposure level for x.service: 1.1 OK 🙂`.
fn overall_exposure(report: &str) -> Option<f64> {
    let line = report
        .lines()
        .find(|line| line.contains("Overall exposure level"))?;
    let (_, verdict) = line.rsplit_once(": ")?;
    verdict.split_whitespace().next()?.parse().ok()
}

/// A unit file as its settings: section → key → values, in file order.
struct UnitFile {
    text: String,
    settings: BTreeMap<(String, String), Vec<String>>,
}

impl UnitFile {
    fn read(name: &str) -> Self {
        let path = repo_path(&format!("systemd/{name}"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
        let mut settings: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        let mut section = String::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with(['#', ';']) {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_owned();
            } else if let Some((key, value)) = line.split_once('=') {
                settings
                    .entry((section.clone(), key.trim().to_owned()))
                    .or_default()
                    .push(value.trim().to_owned());
            } else {
                panic!("{name}: a line that is not a setting: {line:?}");
            }
        }
        Self { text, settings }
    }

    fn values(&self, section: &str, key: &str) -> Vec<String> {
        self.settings
            .get(&(section.to_owned(), key.to_owned()))
            .cloned()
            .unwrap_or_default()
    }

    fn single(&self, section: &str, key: &str) -> String {
        match self.values(section, key).as_slice() {
            [value] => value.clone(),
            values => panic!("[{section}] {key}= is set {} times", values.len()),
        }
    }

    /// The space-separated words of every `key=` line, together.
    fn words(&self, section: &str, key: &str) -> Vec<String> {
        self.values(section, key)
            .iter()
            .flat_map(|value| value.split_whitespace().map(str::to_owned))
            .collect()
    }

    /// `ExecStart=` split into words; the unit uses no quoting, no
    /// specifiers, no variables and no prefixes, so words are arguments.
    fn exec_start(&self) -> Vec<String> {
        let command = self.single("Service", "ExecStart");
        assert!(
            !command.contains(['"', '\'', '%', '$', '\\']),
            "ExecStart= needs a real parser now: {command}"
        );
        let words: Vec<String> = command.split_whitespace().map(str::to_owned).collect();
        assert!(
            words.first().is_some_and(|binary| binary.starts_with('/')),
            "ExecStart= must start with an absolute path: {command}"
        );
        words
    }
}

/// One run of the service's `ExecStart=` with a temporary state file and
/// DECNET's DB (owned by the service's user, as DECNET's is by `decnet`), as
/// the unit would run it: as an unprivileged user in the docker group
/// (when the test runs as root), with the Docker socket and loopback Redis of
/// `scripts/services`.
struct ServicePass {
    dir: TempDir,
    host: String,
}

impl ServicePass {
    fn new() -> Self {
        let dir = TempDir::new().expect("temp dir");
        let db = dir.path().join("decnet.db");
        create_decnet_sqlite(&db);
        if running_as_root() {
            for path in [dir.path(), &db] {
                std::os::unix::fs::chown(path, Some(SERVICE_UID), Some(SERVICE_UID))
                    .expect("give the temp dir and the DB to the service user");
            }
        }
        // Names of their own, so that other tests' subscribers see nothing of ours.
        let host = format!("systemd-test-{}", std::process::id());
        let pass = Self { dir, host };
        std::fs::write(pass.state_file(), state_file_json(&pass.host)).expect("write state file");
        // As if a pass had written it before (an empty file is a valid one):
        // a first pass would warn that it starts the counters at 0.
        std::fs::write(pass.metrics_file(), "").expect("write metrics file");
        pass
    }

    /// Where the unit's `Environment=` would have it, in this pass's directory.
    fn metrics_file(&self) -> PathBuf {
        self.dir.path().join("decnet-reconcile.prom")
    }

    fn state_file(&self) -> PathBuf {
        self.dir.path().join("decnet-state.json")
    }

    /// The ExecStart= command line, run through `wrapper` (e.g. strace).
    fn command(&self, wrapper: &[String]) -> Command {
        let mut words = UnitFile::read(SERVICE).exec_start();
        words[0] = BINARY.to_owned();
        let mut all: Vec<String> = Vec::new();
        if running_as_root() {
            all.extend([
                "setpriv".to_owned(),
                format!("--reuid={SERVICE_UID}"),
                format!("--regid={SERVICE_UID}"),
                format!("--groups={}", group_id("docker")),
                "--".to_owned(),
            ]);
        }
        all.extend(wrapper.iter().cloned());
        all.extend(words);
        let mut cmd = Command::new(&all[0]);
        // As /etc/default/decnet-reconcile of a host whose bus is Redis leaves
        // it, with the paths and names of this test.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("DECNET_") {
                cmd.env_remove(name);
            }
        }
        cmd.args(&all[1..])
            .current_dir(self.dir.path())
            .env("DECNET_STATE_FILE", self.state_file())
            .env("DECNET_DB_PATH", self.dir.path().join("decnet.db"))
            .env("DECNET_HOST_UUID", &self.host)
            .env("DECNET_REDIS_URL", "redis://127.0.0.1:6379/0")
            .env("DECNET_CONFIG", self.dir.path().join("no-decnet.ini"))
            .env("DOCKER_HOST", "unix:///var/run/docker.sock")
            .env("DECNET_RECONCILE_METRICS_FILE", self.metrics_file());
        cmd
    }
}

#[track_caller]
fn assert_clean_exit(output: &Run, what: &str) {
    // -q leaves only warnings on stderr: one would mean Docker or Redis was
    // out of reach (start them with bash scripts/services).
    assert!(
        output.status == 0 && output.stderr.is_empty(),
        "{what} exited {} with stderr:\n{}",
        output.status,
        output.stderr
    );
}

/// Two of this host's deckies, as DECNET writes them (SPEC §9).
fn state_file_json(host: &str) -> String {
    let mut first = decky(&format!("{host}-d1"), &["ssh"]);
    first["ip"] = "10.0.0.2".into();
    let second = decky(&format!("{host}-d2"), &["smtp_relay", "ftp"]);
    state_file_text(&[first, second])
}

/// One system call in an `strace -f` trace.
struct Call {
    name: String,
    args: String,
    line: String,
}

/// The calls of `strace -f -qq` output: `PID name(args) = result`. A call
/// split by another thread shows as `name(args <unfinished ...>` and later
/// `<... name resumed>...`; the first half names it.
fn parse_trace(trace: &str) -> Vec<Call> {
    trace
        .lines()
        .filter_map(|line| {
            let rest = line
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .trim_start();
            let (name, args) = rest.split_once('(')?;
            let valid =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            valid.then(|| Call {
                name: name.to_owned(),
                args: args.to_owned(),
                line: line.to_owned(),
            })
        })
        .collect()
}

/// The system calls the unit's `SystemCallFilter=` lines let through: the
/// first allow list, less every `~` deny list after it.
fn allowed_syscalls(unit: &UnitFile) -> BTreeSet<String> {
    let mut allowed = BTreeSet::new();
    let mut expander = SyscallGroups::default();
    for value in unit.values("Service", "SystemCallFilter") {
        match value.strip_prefix('~') {
            Some(denied) => {
                for name in denied.split_whitespace() {
                    for call in expander.expand(name) {
                        allowed.remove(&call);
                    }
                }
            }
            None => {
                assert!(allowed.is_empty(), "one allow list is all this test reads");
                for name in value.split_whitespace() {
                    allowed.extend(expander.expand(name));
                }
            }
        }
    }
    assert!(
        !allowed.is_empty(),
        "the service has no SystemCallFilter= allow list"
    );
    allowed
}

/// systemd's own definition of its `@groups`, from `systemd-analyze syscall-filter`.
#[derive(Default)]
struct SyscallGroups {
    known: BTreeMap<String, BTreeSet<String>>,
}

impl SyscallGroups {
    fn expand(&mut self, name: &str) -> BTreeSet<String> {
        if !name.starts_with('@') {
            return BTreeSet::from([name.to_owned()]);
        }
        if let Some(calls) = self.known.get(name) {
            return calls.clone();
        }
        let output = Command::new("systemd-analyze")
            .args(["syscall-filter", "--no-pager", name])
            .env("SYSTEMD_COLORS", "0")
            .output()
            .expect(SYSTEMD_ANALYZE_MISSING);
        assert!(
            output.status.success(),
            "systemd-analyze syscall-filter {name} failed"
        );
        let listing = String::from_utf8_lossy(&output.stdout).into_owned();
        let mut calls = BTreeSet::new();
        // The first line names the group; members are indented, comments start with #.
        for member in listing.lines().skip(1).map(str::trim) {
            if member.is_empty() || member.starts_with('#') {
                continue;
            }
            calls.extend(self.expand(member));
        }
        assert!(!calls.is_empty(), "systemd knows no group {name}");
        self.known.insert(name.to_owned(), calls.clone());
        calls
    }
}

/// The IP address in a traced socket address, if it is one.
fn ip_address(args: &str) -> Option<std::net::IpAddr> {
    for marker in ["inet_addr(\"", "inet_pton(AF_INET6, \""] {
        if let Some(start) = args.find(marker) {
            let rest = &args[start + marker.len()..];
            let end = rest.find('"')?;
            return rest[..end].parse().ok();
        }
    }
    None
}

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn running_as_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let uids = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .expect("a Uid: line");
    // Real, effective, saved, fs: the effective one decides.
    uids.split_whitespace().nth(1) == Some("0")
}

/// The id of a group in /etc/group; the Docker socket belongs to `docker`.
fn group_id(name: &str) -> u32 {
    let groups = std::fs::read_to_string("/etc/group").expect("read /etc/group");
    groups
        .lines()
        .find_map(|line| {
            let mut fields = line.split(':');
            (fields.next() == Some(name))
                .then(|| fields.nth(1))
                .flatten()
                .and_then(|gid| gid.parse().ok())
        })
        .unwrap_or_else(|| {
            panic!("no group {name}: install docker.io (bash scripts/services does)")
        })
}

#[test]
fn the_parsers_read_what_the_tools_print() {
    assert_eq!(
        overall_exposure("x\n→ Overall exposure level for a.service: 1.1 OK 🙂\n"),
        Some(1.1)
    );
    assert_eq!(overall_exposure("nothing here"), None);
    let calls = parse_trace(
        "12 connect(3, {sa_family=AF_INET, sin_port=htons(6379), sin_addr=inet_addr(\"127.0.0.1\")}, 16) = 0\n\
         13 read(4, <unfinished ...>\n\
         12 <... read resumed>\"x\", 1) = 1\n\
         12 --- SIGCHLD {si_signo=SIGCHLD} ---\n\
         13 +++ exited with 0 +++\n",
    );
    let names: Vec<&str> = calls.iter().map(|call| call.name.as_str()).collect();
    assert_eq!(names, ["connect", "read"]);
    assert_eq!(
        ip_address(&calls[0].args),
        Some("127.0.0.1".parse().expect("an address"))
    );
    assert_eq!(
        ip_address("{sa_family=AF_INET6, sin6_addr=inet_pton(AF_INET6, \"::1\")}"),
        Some("::1".parse().expect("an address"))
    );
    assert_eq!(
        point_exec_start_at("[Service]\nExecStart=/usr/bin/x once -q\n", "/b/x"),
        "[Service]\nExecStart=/b/x once -q\n"
    );
}
