//! Proof under faults and concurrency (SPEC §4's last paragraph, §5, §6):
//! passes racing on one drift, passes killed mid-write, a DB locked by another
//! writer or on a full disk, a Docker daemon dead, hung, lying or failing, a
//! Redis dead, silent or hanging up mid-pass.
//!
//! Counts that take minutes at scale come from `DECNET_RELIABILITY_*` (small by
//! default; `scripts/reliability` sets them large), and each proof prints its
//! figures as `reliability: name=value` lines (`--nocapture` shows them).

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{
    closed_port, figure, hanging_socket, hanging_tcp, reliability_count, stale_socket, Container,
    EventLog, Run, TestEnv, REDIS_URL,
};

/// The message `src/db.rs` adds to every lock timeout.
const LOCKED: &str = "locked by another writer for longer than --db-busy-timeout";

/// A Docker endpoint that refuses connections at once: tests that are not about
/// Docker spend no time on it.
fn dead_docker(env: &TestEnv) -> String {
    let path = env.dir.path().join("dead-docker.sock");
    if !path.exists() {
        stale_socket(&path);
    }
    format!("unix://{}", path.display())
}

/// What a pass did, by decky name, as the events name it.
type Transitions = BTreeMap<String, Vec<String>>;

fn transitions_of_report(report: &Value) -> Transitions {
    let mut seen = Transitions::new();
    for change in report["changes"].as_array().expect("changes") {
        let transition = match change["action"].as_str().expect("action") {
            "inserted" => "inserted",
            "deleted" => "deleted",
            _ if change["changed_fields"]
                .as_array()
                .expect("changed_fields")
                .iter()
                .any(|f| f == "state") =>
            {
                "state_changed"
            }
            _ => "config_changed",
        };
        let name = change["name"].as_str().expect("name").to_owned();
        seen.entry(name).or_default().push(transition.to_owned());
    }
    seen
}

fn transitions_of_events(events: &[(String, Value)]) -> Transitions {
    let mut seen = Transitions::new();
    for (_, message) in events {
        let payload = &message["payload"];
        let name = payload["name"].as_str().expect("name").to_owned();
        let transition = payload["transition"].as_str().expect("transition");
        seen.entry(name).or_default().push(transition.to_owned());
    }
    seen
}

fn merge(into: &mut Transitions, more: Transitions) {
    for (name, transitions) in more {
        into.entry(name).or_default().extend(transitions);
    }
}

/// Six passes (by default) at once on the same drift, round after round (from
/// no DB file at all every fifth round), with a busy timeout long enough to
/// queue (even rounds) or so short that most lose the race (odd rounds): every
/// change is applied and announced exactly once, the rows end as the state
/// file says, and a pass either succeeds or says clearly that the lock timed out.
#[test]
fn concurrent_passes_apply_and_announce_each_change_once() {
    let passes = reliability_count("DECNET_RELIABILITY_CONCURRENCY", 6);
    let rounds = reliability_count("DECNET_RELIABILITY_CONCURRENT_ROUNDS", 3);
    let mut env = TestEnv::new("concurrent");
    env.host = format!("host-{}", env.prefix);
    let events = EventLog::subscribe(&env.host);
    let running = env.name("run");
    env.container(&format!("{running}-ssh"), Container::Running);
    let conn = || {
        let conn = env.connect();
        conn.busy_timeout(Duration::from_secs(30)).expect("busy");
        conn
    };

    let mut serial = 0;
    let mut fresh_name = || {
        serial += 1;
        env.name(&format!("d{serial}"))
    };
    // name -> ip, as the state file says.
    let mut desired: BTreeMap<String, String> = BTreeMap::new();
    desired.insert(running.clone(), "10.0.0.1".to_owned());
    let mut expected = Transitions::new();
    let note = |expected: &mut Transitions, name: &str, transition: &str| {
        expected
            .entry(name.to_owned())
            .or_default()
            .push(transition.to_owned());
    };
    for _ in 0..30 {
        desired.insert(fresh_name(), "10.0.0.2".to_owned());
    }
    for name in desired.keys() {
        note(&mut expected, name, "inserted");
    }

    let (mut total_passes, mut lock_timeouts, mut total_changes) = (0, 0, 0);
    let mut rows_lost = 0;
    for round in 0..rounds {
        if round > 0 && round % 5 == 0 {
            // Now and then a fresh start: the racing passes also race to
            // create the file, switch it to WAL and create the table.
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", env.db.display()));
            }
            for name in desired.keys() {
                note(&mut expected, name, "inserted");
            }
        } else if round > 0 {
            // Drift from every side: the state file and another writer of the DB.
            let names: Vec<String> = desired.keys().filter(|n| **n != running).cloned().collect();
            for name in names.iter().take(4) {
                desired.remove(name);
                note(&mut expected, name, "deleted");
            }
            for name in names.iter().skip(4).take(4) {
                desired.insert(name.clone(), format!("10.0.{round}.9"));
                note(&mut expected, name, "config_changed");
            }
            for _ in 0..4 {
                let name = fresh_name();
                desired.insert(name.clone(), "10.0.0.2".to_owned());
                note(&mut expected, &name, "inserted");
            }
            let db = conn();
            for name in names.iter().skip(8).take(3).chain([&running]) {
                db.execute(
                    "UPDATE fleet_deckies SET state = 'failed' WHERE host_uuid = ?1 AND name = ?2",
                    (&env.host, name),
                )
                .expect("state drift");
                note(&mut expected, name, "state_changed");
            }
            for name in names.iter().skip(11).take(2) {
                db.execute(
                    "DELETE FROM fleet_deckies WHERE host_uuid = ?1 AND name = ?2",
                    (&env.host, name),
                )
                .expect("row lost");
                note(&mut expected, name, "inserted");
            }
            for _ in 0..2 {
                let name = fresh_name();
                db.execute(
                    "INSERT INTO fleet_deckies VALUES (?1, ?2, '[\"ssh\"]', NULL, '10.0.0.9', \
                     'running', NULL, NULL, NULL, '2026-01-01 00:00:00.000000')",
                    (&env.host, &name),
                )
                .expect("stray row");
                note(&mut expected, &name, "deleted");
            }
        }
        let deckies: Vec<Value> = desired
            .iter()
            .map(|(name, ip)| {
                let mut decky = env.decky(name, &["ssh"]);
                decky["ip"] = ip.as_str().into();
                decky
            })
            .collect();
        env.write_state(&deckies);

        let busy_timeout = if round % 2 == 0 { "30" } else { "0.001" };
        let children: Vec<_> = (0..passes)
            .map(|_| {
                env.command_publishing_to(REDIS_URL)
                    .args(["--output", "json", "--db-busy-timeout", busy_timeout])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn a pass")
            })
            .collect();
        let mut applied = Transitions::new();
        let mut published = 0;
        for child in children {
            let output = child.wait_with_output().expect("wait for a pass");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(!stderr.contains("panicked"), "{stderr}");
            total_passes += 1;
            match output.status.code() {
                Some(0) => {
                    let report: Value = serde_json::from_slice(&output.stdout).expect("json");
                    published += report["published"].as_u64().expect("published");
                    assert_eq!(report["publish_failed"], 0, "{stderr}");
                    merge(&mut applied, transitions_of_report(&report));
                }
                Some(1) if stderr.contains(LOCKED) => {
                    assert!(output.stdout.is_empty(), "a failed pass reports no changes");
                    lock_timeouts += 1;
                }
                _ => panic!(
                    "round {round}: a racing pass failed without a lock timeout ({}):\n{stderr}",
                    output.status
                ),
            }
        }
        // The racing passes that lost on the lock wrote nothing: a follow-up
        // pass applies whatever they left, and still nothing twice.
        let follow_up = Run::of(
            env.command_publishing_to(REDIS_URL)
                .args(["--output", "json"]),
        )
        .expect_code(0);
        published += follow_up.json()["published"].as_u64().expect("published");
        merge(&mut applied, transitions_of_report(&follow_up.json()));

        let change_count: usize = expected.values().map(Vec::len).sum();
        assert_eq!(applied, expected, "round {round}: applied once each");
        assert_eq!(published as usize, change_count, "round {round}");
        let announced = events.collect(change_count);
        assert_eq!(
            transitions_of_events(&announced),
            expected,
            "round {round}: announced once each"
        );
        total_changes += change_count;
        expected.clear();

        let rows = env.rows();
        rows_lost += desired
            .keys()
            .filter(|name| !rows.iter().any(|row| row.name == **name))
            .count();
        if rows_lost > 0 {
            break;
        }
        let stored: BTreeMap<String, String> = rows
            .iter()
            .map(|row| (row.name.clone(), row.decky_ip.clone().expect("ip")))
            .collect();
        assert_eq!(
            stored, desired,
            "round {round}: rows end as the state file says"
        );
        for row in &rows {
            let state = if row.name == running {
                "running"
            } else {
                "torn_down"
            };
            assert_eq!(row.state, state, "{}", row.name);
        }
        let check: String = conn()
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .expect("integrity_check");
        assert_eq!(check, "ok");
    }
    figure("concurrent_passes", total_passes);
    figure("concurrent_lock_timeouts_reported", lock_timeouts);
    figure("concurrent_changes_announced_once", total_changes);
    figure("rows_lost", rows_lost);
    assert_eq!(rows_lost, 0, "rows missing after concurrent passes");
}

/// A small deterministic generator, so a failing kill schedule can be replayed
/// (`DECNET_RELIABILITY_SEED`).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: Duration) -> Duration {
        let nanos = bound.as_nanos().max(1) as u64;
        Duration::from_nanos(self.next() % nanos)
    }
}

/// The columns a pass writes from the state file, by name: what "the old rows"
/// and "the new rows" mean (timestamps aside).
type RowSet = BTreeMap<String, (String, Option<String>, Option<String>, String)>;

fn row_set(env: &TestEnv) -> RowSet {
    if !env.db.exists() {
        return RowSet::new();
    }
    env.rows()
        .into_iter()
        .map(|row| {
            (
                row.name,
                (row.services, row.decky_config, row.decky_ip, row.state),
            )
        })
        .collect()
}

/// SIGKILL at random moments of passes that each insert, rewrite or delete
/// hundreds of rows: after every kill the rows are the whole old set or the
/// whole new set, the file is intact, and the next pass converges.
#[test]
fn killed_passes_leave_the_old_rows_or_the_new_ones() {
    let kills = reliability_count("DECNET_RELIABILITY_KILLS", 5);
    let size = reliability_count("DECNET_RELIABILITY_KILL_DECKIES", 500);
    let seed = reliability_count("DECNET_RELIABILITY_SEED", 0) as u64;
    let seed = if seed == 0 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos() as u64
            | 1
    } else {
        seed
    };
    let mut rng = XorShift(seed);
    let env = TestEnv::new("kill");
    let docker = dead_docker(&env);
    let pass = || {
        let mut command = env.command();
        command.args(["--docker-host", &docker, "-q"]);
        command
    };
    // Three phases in a cycle: insert `size` deckies, rewrite every one's IP,
    // delete them all (teardown removes the state file).
    let write_phase = |phase: usize| match phase {
        2 => std::fs::remove_file(&env.state_file).expect("remove state file"),
        _ => {
            let deckies: Vec<Value> = (0..size)
                .map(|i| {
                    let mut decky = env.decky(&env.name(&format!("k{i:04}")), &["ssh", "ftp"]);
                    decky["ip"] = format!("10.{phase}.{}.{}", i / 250, i % 250).into();
                    decky
                })
                .collect();
            env.write_state(&deckies);
        }
    };

    // One calm cycle: each phase's rows, and how long its pass takes.
    let mut expected = Vec::new();
    let mut durations = Vec::new();
    for phase in 0..3 {
        write_phase(phase);
        let started = Instant::now();
        let run = Run::of(&mut pass()).expect_code(0);
        durations.push(started.elapsed());
        assert!(run.stdout.contains(&format!("={size}")), "{}", run.stdout);
        expected.push(row_set(&env));
    }
    assert_eq!(expected[0].len(), size);
    assert_eq!(expected[1].len(), size);
    assert_ne!(expected[0], expected[1]);
    assert!(expected[2].is_empty());

    // Half the kills land anywhere in a pass; the other half home in on the
    // commit (the window between the last kill seen before it and the first
    // seen after it), so that some land while the commit is being written.
    let full_range: Vec<(Duration, Duration)> = durations
        .iter()
        .map(|d| (Duration::ZERO, d.mul_f64(1.2)))
        .collect();
    let mut window = full_range.clone();
    let wal = PathBuf::from(format!("{}-wal", env.db.display()));
    let (mut killed, mut before_writing, mut while_writing, mut after_commit) = (0, 0, 0, 0);
    let (mut finished_first, mut rows_lost, mut converged) = (0, 0, 0);
    let mut phase = 0;
    let mut attempts = 0;
    while killed < kills {
        attempts += 1;
        assert!(
            attempts <= kills * 10,
            "passes kept finishing before the kill (seed {seed})"
        );
        let before = &expected[(phase + 2) % 3];
        let after = &expected[phase];
        write_phase(phase);
        let (low, high) = if attempts % 2 == 0 {
            window[phase]
        } else {
            full_range[phase]
        };
        let delay =
            low.mul_f64(0.9) + rng.below(high.mul_f64(1.1).saturating_sub(low.mul_f64(0.9)));
        let mut child = pass()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn a pass");
        std::thread::sleep(delay);
        let status = match child.try_wait().expect("try_wait") {
            Some(status) => {
                finished_first += 1;
                assert_eq!(status.code(), Some(0), "an unkilled pass failed");
                status
            }
            None => {
                child.kill().expect("SIGKILL");
                child.wait().expect("reap")
            }
        };
        // Before anything reads the DB (and so recovers the WAL): frames in the
        // WAL mean the commit had begun to be written.
        let wal_written = std::fs::metadata(&wal)
            .map(|m| m.len() > 0)
            .unwrap_or(false);
        let rows = row_set(&env);
        if status.signal() == Some(9) {
            killed += 1;
            if rows == *before && !wal_written {
                before_writing += 1;
                window[phase].0 = window[phase].0.max(delay);
            } else if rows == *before {
                while_writing += 1;
            } else if rows == *after {
                after_commit += 1;
                window[phase].1 = window[phase].1.min(delay);
            } else {
                panic!(
                    "killed after {delay:?} in phase {phase} (seed {seed}): {} rows, \
                     neither the {} old ones nor the {} new ones",
                    rows.len(),
                    before.len(),
                    after.len()
                );
            }
            let check: String = env
                .connect()
                .query_row("PRAGMA integrity_check", [], |row| row.get(0))
                .expect("integrity_check");
            assert_eq!(check, "ok", "seed {seed}");
            Run::of(&mut pass()).expect_code(0);
            let recovered = row_set(&env);
            rows_lost += after.keys().filter(|k| !recovered.contains_key(*k)).count();
            if rows_lost > 0 {
                break;
            }
            assert_eq!(recovered, *after, "the pass after a kill converges");
            converged += 1;
        } else {
            assert_eq!(rows, *after);
            window[phase].1 = window[phase].1.min(delay);
        }
        if window[phase].0 >= window[phase].1 {
            window[phase] = full_range[phase];
        }
        phase = (phase + 1) % 3;
    }
    figure("passes_killed", killed);
    figure("passes_killed_before_writing", before_writing);
    figure("passes_killed_while_writing_the_commit", while_writing);
    figure("passes_killed_after_the_commit", after_commit);
    figure("passes_recovered", converged);
    figure("changes_per_killed_pass", size);
    figure("rows_lost", rows_lost);
    assert_eq!(rows_lost, 0, "rows lost after a kill (seed {seed})");
    println!("reliability: kill seed {seed}; {finished_first} passes finished before their kill");
}

/// An env whose DB holds `keep` and `gone` while the state file says `keep` and
/// `new`, with the URL of a dead Docker.
fn env_with_drift(test: &str) -> (TestEnv, String) {
    let mut env = TestEnv::new(test);
    env.host = format!("host-{}", env.prefix);
    let docker = dead_docker(&env);
    env.write_state(&[
        env.decky(&env.name("keep"), &["ssh"]),
        env.decky(&env.name("gone"), &["ssh"]),
    ]);
    env.run(&["--docker-host", &docker]).expect_code(0);
    env.write_state(&[
        env.decky(&env.name("keep"), &["ssh"]),
        env.decky(&env.name("new"), &["ssh"]),
    ]);
    (env, docker)
}

/// Another connection holds the write lock for longer than `--db-busy-timeout`:
/// exit 1 within the timeout (+1 s), a message that says so, nothing written,
/// nothing announced. A dry run is not blocked (WAL readers never are).
#[test]
fn a_write_lock_held_past_the_busy_timeout_fails_cleanly() {
    let (env, docker) = env_with_drift("locked");
    let events = EventLog::subscribe(&env.host);
    let before = env.rows();
    let holder = env.connect();
    holder
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");

    let run = Run::of(env.command_publishing_to(REDIS_URL).args([
        "--docker-host",
        &docker,
        "--db-busy-timeout",
        "1",
    ]))
    .expect_code(1);
    assert!(run.stderr.contains(LOCKED), "{}", run.stderr);
    assert!(run.stderr.contains("nothing was written"), "{}", run.stderr);
    assert!(
        run.stderr.contains(&env.db.display().to_string()),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty(), "no table for a failed pass");
    assert!(
        run.elapsed >= Duration::from_millis(900),
        "it waited for the lock"
    );
    assert!(
        run.elapsed < Duration::from_secs(2),
        "timeout + 1 s: {:?}",
        run.elapsed
    );

    let dry = env
        .run(&[
            "--docker-host",
            &docker,
            "--dry-run",
            "--db-busy-timeout",
            "1",
        ])
        .expect_code(0);
    assert!(
        dry.stdout
            .ends_with("inserted=1 deleted=1 updated=0 docker=unknown (dry run)\n"),
        "{}",
        dry.stdout
    );

    holder.execute_batch("ROLLBACK").expect("release");
    assert_eq!(env.rows(), before, "nothing was written");
    assert!(events.collect(0).is_empty(), "nothing was announced");
    env.run(&["--docker-host", &docker]).expect_code(0);
    assert_eq!(env.rows().len(), 2);
    figure("db_lock_faults", 1);
}

/// The lock is taken before the DB is even in WAL mode (a DECNET that opened a
/// fresh file in rollback-journal mode and is writing): the switch to WAL
/// cannot happen, and that too is a clear lock timeout, nothing written.
#[test]
fn a_lock_held_before_wal_mode_fails_cleanly_at_open() {
    let (env, docker) = env_with_drift("locked-open");
    std::fs::remove_file(&env.db).expect("start from a fresh file");
    let holder = env.connect();
    holder
        .execute_batch(&format!(
            "PRAGMA journal_mode=DELETE; {}; BEGIN IMMEDIATE; \
             INSERT INTO fleet_deckies VALUES ('peer', 'p1', '[\"ssh\"]', NULL, NULL, 'running', \
             NULL, NULL, NULL, '2026-01-01 00:00:00.000000')",
            support::SCHEMA_IF_ABSENT
        ))
        .expect("hold a rollback-journal write lock");
    let run = env
        .run(&["--docker-host", &docker, "--db-busy-timeout", "1"])
        .expect_code(1);
    assert!(run.stderr.contains(LOCKED), "{}", run.stderr);
    assert!(run.elapsed < Duration::from_secs(2), "{:?}", run.elapsed);
    holder.execute_batch("COMMIT").expect("commit");
    drop(holder);
    let rows = env.rows();
    assert_eq!(rows.len(), 1, "only the other writer's row");
    assert_eq!(rows[0].host_uuid, "peer");
    env.run(&["--docker-host", &docker]).expect_code(0);
    assert_eq!(env.rows().len(), 3);
    figure("db_lock_faults", 1);
}

/// A tmpfs of its own, unmounted on drop. Needs root (CAP_SYS_ADMIN), as the
/// test machine and CI have: the proof fails loudly rather than skip without.
struct TinyFs {
    path: PathBuf,
}

impl TinyFs {
    fn mount(path: &Path, size: &str) -> TinyFs {
        std::fs::create_dir_all(path).expect("mount point");
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .expect("run mount");
        assert!(
            output.status.success(),
            "mounting a {size} tmpfs at {} failed ({}): the full-disk proof needs root \
             with CAP_SYS_ADMIN, as scripts/test and scripts/reliability have",
            path.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        TinyFs {
            path: path.to_owned(),
        }
    }

    /// Fills the filesystem, leaving `spare` bytes (rounded to pages) free.
    fn fill(&self, spare: u64) -> PathBuf {
        let filler = self.path.join("filler");
        let mut file = std::fs::File::create(&filler).expect("filler");
        let page = [0u8; 4096];
        while file.write_all(&page).is_ok() {}
        drop(file);
        let len = std::fs::metadata(&filler).expect("filler size").len();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&filler)
            .expect("filler");
        file.set_len(len.saturating_sub(spare)).expect("free some");
        filler
    }

    fn remount(&self, option: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{option}")])
            .arg(&self.path)
            .status()
            .expect("run mount");
        assert!(status.success(), "remount {option}");
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// An env whose DB lives on a 1 MiB tmpfs, with `rows` rows written, and a
/// state file of 500 deckies (~200 kB of rows) waiting to be applied.
fn env_on_tiny_fs(test: &str) -> (TestEnv, TinyFs, String) {
    let mut env = TestEnv::new(test);
    let fs = TinyFs::mount(&env.dir.path().join("tiny"), "1m");
    env.db = fs.path.join("decnet.db");
    let docker = dead_docker(&env);
    env.write_state(&[env.decky(&env.name("first"), &["ssh"])]);
    env.run(&["--docker-host", &docker]).expect_code(0);
    let deckies: Vec<Value> = (0..500)
        .map(|i| env.decky(&env.name(&format!("big{i:03}")), &["ssh", "ftp"]))
        .collect();
    env.write_state(&deckies);
    (env, fs, docker)
}

fn assert_untouched(env: &TestEnv, before: &[support::Row]) {
    assert_eq!(env.rows(), before, "nothing was written");
    let check: String = env
        .connect()
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .expect("integrity_check");
    assert_eq!(check, "ok");
}

/// Room for SQLite's shared-memory file but not for the pass's 500 rows: the
/// commit fails, exit 1 saying the disk is full, and the old rows stand.
#[test]
fn a_full_disk_fails_the_commit_and_keeps_the_old_rows() {
    let (env, fs, docker) = env_on_tiny_fs("disk-full");
    let before = env.rows();
    let filler = fs.fill(64 * 1024);
    let run = env.run(&["--docker-host", &docker]).expect_code(1);
    assert!(
        run.stderr.contains("database or disk is full"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&env.db.display().to_string()),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    std::fs::remove_file(filler).expect("free the disk");
    assert_untouched(&env, &before);
    env.run(&["--docker-host", &docker]).expect_code(0);
    assert_eq!(env.rows().len(), 500, "converges once there is room");
    figure("disk_faults", 1);
}

/// No room at all, not even for SQLite's `-shm` file: still exit 1, nothing
/// written, and a message an operator can act on (not just "disk I/O error").
#[test]
fn a_disk_with_no_room_at_all_says_it_is_full() {
    let (env, fs, docker) = env_on_tiny_fs("disk-no-room");
    let before = env.rows();
    let filler = fs.fill(0);
    let run = env.run(&["--docker-host", &docker]).expect_code(1);
    std::fs::remove_file(filler).expect("free the disk");
    assert_untouched(&env, &before);
    figure("disk_faults", 1);
    assert!(
        run.stderr.contains("full") || run.stderr.contains("No space left"),
        "the message does not say the disk is full: {}",
        run.stderr
    );
}

/// The DB's filesystem turns read-only: exit 1 naming the DB, nothing written.
#[test]
fn a_read_only_filesystem_fails_cleanly() {
    let (env, fs, docker) = env_on_tiny_fs("disk-ro");
    let before = env.rows();
    fs.remount("ro");
    let run = env.run(&["--docker-host", &docker]).expect_code(1);
    assert!(
        run.stderr.contains(&env.db.display().to_string()),
        "{}",
        run.stderr
    );
    fs.remount("rw");
    assert_untouched(&env, &before);
    env.run(&["--docker-host", &docker]).expect_code(0);
    assert_eq!(env.rows().len(), 500);
    figure("disk_faults", 1);
}

/// How a fake Docker daemon answers one request.
#[derive(Clone, Copy)]
enum Daemon {
    /// Bytes that are not HTTP, then hang up.
    Garbage,
    /// Bytes that are not HTTP, and the connection held open.
    GarbageThenSilence,
    /// `500 Internal Server Error` to everything.
    Error500,
    /// A valid `/version`, then a container list that is not JSON.
    NotJson,
    /// Headers promising a body that never comes.
    StallMidBody,
    /// Accepts, then closes at once.
    HangUp,
    /// `500` with this JSON body.
    ErrorSaying(&'static str),
}

fn http(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves `daemon` on a Unix socket at `path`; returns the `--docker-host` URL.
fn fake_docker(path: &Path, daemon: Daemon) -> String {
    let listener = UnixListener::bind(path).expect("bind fake docker");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve_docker(stream, daemon));
        }
    });
    format!("unix://{}", path.display())
}

fn serve_docker(mut stream: UnixStream, daemon: Daemon) {
    let mut held = Vec::new();
    loop {
        let Some(request_line) = read_request_head(&mut stream) else {
            return;
        };
        let reply = match daemon {
            Daemon::HangUp => return,
            Daemon::Garbage => {
                let _ = stream.write_all(b"\x16\x03\x01garbage\r\n\x00\xff\r\n\r\n");
                return;
            }
            Daemon::GarbageThenSilence => {
                let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.2\r\n");
                held.push(stream);
                std::thread::sleep(Duration::from_secs(60));
                return;
            }
            Daemon::Error500 => http("500 Internal Server Error", r#"{"message":"server error"}"#),
            Daemon::ErrorSaying(body) => http("500 Internal Server Error", body),
            Daemon::NotJson if request_line.contains("/version") => http(
                "200 OK",
                r#"{"ApiVersion":"1.41","MinAPIVersion":"1.12","Version":"20.10.0"}"#,
            ),
            Daemon::NotJson => http("200 OK", "<html>not a container list</html>"),
            Daemon::StallMidBody => {
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n[{\"Na",
                );
                std::thread::sleep(Duration::from_secs(60));
                return;
            }
        };
        if stream.write_all(&reply).is_err() {
            return;
        }
    }
}

/// Reads one request head (through the blank line); `None` at EOF.
fn read_request_head(stream: &mut impl Read) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    let text = String::from_utf8_lossy(&head);
    Some(text.lines().next().unwrap_or_default().to_owned())
}

/// SPEC §5 with Docker unknown: the new decky is inserted as running, the
/// stray row deleted, the row whose containers cannot be seen keeps its state;
/// a warning; exit 0; within `--docker-timeout` + 1 s.
fn assert_docker_unknown(test: &str, docker_host: impl FnOnce(&TestEnv) -> String) {
    let (env, _) = env_with_drift(test);
    env.connect()
        .execute("UPDATE fleet_deckies SET state = 'failed'", [])
        .expect("a state only Docker could correct");
    let host = docker_host(&env);
    let run = env
        .run(&[
            "--docker-host",
            &host,
            "--docker-timeout",
            "1",
            "--output",
            "json",
        ])
        .expect_code(0);
    assert!(
        run.elapsed < Duration::from_secs(2),
        "{test}: took {:?}, more than --docker-timeout + 1 s",
        run.elapsed
    );
    let report = run.json();
    assert_eq!(report["docker"], "unknown", "{test}");
    let mut expected = Transitions::new();
    expected.insert(env.name("new"), vec!["inserted".to_owned()]);
    expected.insert(env.name("gone"), vec!["deleted".to_owned()]);
    assert_eq!(transitions_of_report(&report), expected, "{test}");
    assert!(
        run.stderr.contains("WARN") && run.stderr.contains("unknown"),
        "{test}: {}",
        run.stderr
    );
    assert_eq!(env.row(&env.name("new")).state, "running", "{test}");
    assert_eq!(env.row(&env.name("keep")).state, "failed", "{test}");
    figure("docker_faults", 1);
}

#[test]
fn docker_daemon_gone_leaving_its_socket_is_unknown() {
    assert_docker_unknown("docker-stale", dead_docker);
}

#[test]
fn docker_that_accepts_and_never_answers_is_unknown_within_the_timeout() {
    assert_docker_unknown("docker-hang", |env| {
        let socket = hanging_socket(&env.dir.path().join("hang.sock"));
        format!("unix://{}", socket.display())
    });
}

#[test]
fn docker_answering_garbage_is_unknown() {
    assert_docker_unknown("docker-garbage", |env| {
        fake_docker(&env.dir.path().join("garbage.sock"), Daemon::Garbage)
    });
    assert_docker_unknown("docker-garbage-open", |env| {
        fake_docker(
            &env.dir.path().join("garbage2.sock"),
            Daemon::GarbageThenSilence,
        )
    });
}

#[test]
fn docker_answering_500_is_unknown() {
    assert_docker_unknown("docker-500", |env| {
        fake_docker(&env.dir.path().join("500.sock"), Daemon::Error500)
    });
}

#[test]
fn docker_answering_a_list_that_is_not_json_is_unknown() {
    assert_docker_unknown("docker-notjson", |env| {
        fake_docker(&env.dir.path().join("html.sock"), Daemon::NotJson)
    });
}

#[test]
fn docker_stalling_mid_answer_is_unknown_within_the_timeout() {
    assert_docker_unknown("docker-stall", |env| {
        fake_docker(&env.dir.path().join("stall.sock"), Daemon::StallMidBody)
    });
    assert_docker_unknown("docker-hangup", |env| {
        fake_docker(&env.dir.path().join("hangup.sock"), Daemon::HangUp)
    });
}

/// A proxy between the tool and the real dockerd that records every request
/// the tool makes: they are all `GET`s, and the containers are listed once.
#[test]
fn every_docker_request_is_a_get() {
    let mut env = TestEnv::new("docker-proxy");
    let name = env.name("d");
    env.container(&format!("{name}-ssh"), Container::Running);
    env.write_state(&[
        env.decky(&name, &["ssh"]),
        env.decky(&env.name("e"), &["ssh"]),
    ]);
    let proxy = env.dir.path().join("proxy.sock");
    let requests = recording_proxy(&proxy, Path::new("/var/run/docker.sock"));
    let run = env
        .run(&[
            "--docker-host",
            &format!("unix://{}", proxy.display()),
            "--output",
            "json",
        ])
        .expect_code(0);
    assert_eq!(run.json()["docker"], "ok", "{}", run.stderr);
    assert_eq!(
        env.row(&name).state,
        "running",
        "the proxy passed the answer on"
    );

    let requests = requests.lock().expect("requests").clone();
    assert!(!requests.is_empty(), "the proxy saw nothing");
    let not_get: Vec<&String> = requests.iter().filter(|r| !r.starts_with("GET ")).collect();
    figure("docker_requests_recorded", requests.len());
    figure("docker_requests_not_get", not_get.len());
    assert!(not_get.is_empty(), "not read-only: {not_get:?}");
    let lists = requests
        .iter()
        .filter(|r| r.contains("/containers/json"))
        .count();
    assert_eq!(lists, 1, "one list call: {requests:?}");
    assert!(
        requests
            .iter()
            .all(|r| !r.contains("/containers/") || r.contains("/containers/json")),
        "no call per container: {requests:?}"
    );
}

/// Forwards every connection on `listen` to `upstream`, recording each request
/// line the client sends (bodies are skipped by their Content-Length).
fn recording_proxy(listen: &Path, upstream: &Path) -> Arc<Mutex<Vec<String>>> {
    let listener = UnixListener::bind(listen).expect("bind proxy");
    let requests = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&requests);
    let upstream = upstream.to_owned();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let daemon = UnixStream::connect(&upstream).expect("the real dockerd");
            let (mut client_in, mut daemon_out) = (
                client.try_clone().expect("clone"),
                daemon.try_clone().expect("clone"),
            );
            let (mut daemon_in, mut client_out) = (daemon, client);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut daemon_in, &mut client_out);
                let _ = client_out.shutdown(std::net::Shutdown::Write);
            });
            let recorded = Arc::clone(&recorded);
            std::thread::spawn(move || {
                let mut parser = RequestLines::default();
                let mut buffer = [0u8; 8192];
                loop {
                    let read = match client_in.read(&mut buffer) {
                        Ok(0) | Err(_) => break,
                        Ok(read) => read,
                    };
                    for line in parser.feed(&buffer[..read]) {
                        recorded.lock().expect("record").push(line);
                    }
                    if daemon_out.write_all(&buffer[..read]).is_err() {
                        break;
                    }
                }
                let _ = daemon_out.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    requests
}

/// Splits a client's byte stream into HTTP/1.1 requests and yields their lines.
#[derive(Default)]
struct RequestLines {
    pending: Vec<u8>,
    body_left: usize,
}

impl RequestLines {
    fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(bytes);
        let mut lines = Vec::new();
        loop {
            if self.body_left > 0 {
                let skip = self.body_left.min(self.pending.len());
                self.pending.drain(..skip);
                self.body_left -= skip;
                if self.body_left > 0 {
                    break;
                }
            }
            let Some(end) = self.pending.windows(4).position(|w| w == b"\r\n\r\n") else {
                break;
            };
            let head = String::from_utf8_lossy(&self.pending[..end]).into_owned();
            self.pending.drain(..end + 4);
            let mut head_lines = head.lines();
            lines.push(head_lines.next().unwrap_or_default().to_owned());
            for header in head_lines {
                let lower = header.to_ascii_lowercase();
                if let Some(len) = lower.strip_prefix("content-length:") {
                    self.body_left = len.trim().parse().unwrap_or(0);
                }
                if lower.starts_with("transfer-encoding:") {
                    lines.push(format!("(a request with a body: {header})"));
                }
            }
        }
        lines
    }
}

/// How a fake Redis server answers.
#[derive(Clone, Copy)]
enum FakeRedis {
    /// Reads the first bytes of the connection, then closes it.
    CloseAfterFirstBytes,
    /// Answers the handshake and the first PUBLISH, then closes mid-pipeline.
    CloseMidPipeline,
    /// Answers every command with an error, as a Redis requiring a password does.
    Refuses,
    /// Answers every command with this error line.
    RefusesSaying(&'static str),
    /// Answers with bytes that are not RESP at all.
    AnswersGarbage,
}

fn fake_redis(behaviour: FakeRedis) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake redis");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve_redis(stream, behaviour));
        }
    });
    port
}

fn serve_redis(mut stream: std::net::TcpStream, behaviour: FakeRedis) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let read = match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        match behaviour {
            FakeRedis::CloseAfterFirstBytes => return,
            FakeRedis::AnswersGarbage => {
                let _ = stream.write_all(b"\x00\x01 not RESP\r\n");
                return;
            }
            _ => {}
        }
        buffer.extend_from_slice(&chunk[..read]);
        let (commands, used) = resp_commands(&buffer);
        buffer.drain(..used);
        for command in commands {
            let name = command.first().map(|c| c.to_ascii_uppercase());
            let reply: &[u8] = match (behaviour, name.as_deref()) {
                (FakeRedis::Refuses, _) => b"-NOAUTH Authentication required.\r\n",
                (FakeRedis::RefusesSaying(error), _) => &[b"-", error.as_bytes(), b"\r\n"].concat(),
                (_, Some("PUBLISH")) => {
                    let _ = stream.write_all(b":1\r\n");
                    return;
                }
                _ => b"+OK\r\n",
            };
            if stream.write_all(reply).is_err() {
                return;
            }
        }
    }
}

/// The complete RESP commands at the start of `buffer`, and the bytes they take.
fn resp_commands(buffer: &[u8]) -> (Vec<Vec<String>>, usize) {
    fn line(buffer: &[u8], at: usize) -> Option<(&[u8], usize)> {
        let end = buffer[at..].windows(2).position(|w| w == b"\r\n")? + at;
        Some((&buffer[at..end], end + 2))
    }
    fn number(bytes: &[u8]) -> Option<usize> {
        std::str::from_utf8(bytes).ok()?.parse().ok()
    }
    let mut commands = Vec::new();
    let mut used = 0;
    'commands: while let Some((header, mut at)) = line(buffer, used) {
        let Some(count) = header.strip_prefix(b"*").and_then(number) else {
            break;
        };
        let mut command = Vec::new();
        for _ in 0..count {
            let Some((header, start)) = line(buffer, at) else {
                break 'commands;
            };
            let Some(len) = header.strip_prefix(b"$").and_then(number) else {
                break 'commands;
            };
            if buffer.len() < start + len + 2 {
                break 'commands;
            }
            command.push(String::from_utf8_lossy(&buffer[start..start + len]).into_owned());
            at = start + len + 2;
        }
        commands.push(command);
        used = at;
    }
    (commands, used)
}

/// SPEC §5 with Redis failing: the DB converges, exit 0 within
/// `--redis-timeout` + 1 s, and the warning counts the lost events and says
/// `why` in plain words, never redis-rs's bare "broken pipe".
fn assert_events_lost(test: &str, url: &str, why: &str) {
    let mut env = TestEnv::new(test);
    env.host = format!("host-{}", env.prefix);
    let docker = dead_docker(&env);
    let deckies: Vec<Value> = (0..5)
        .map(|i| env.decky(&env.name(&format!("d{i}")), &["ssh"]))
        .collect();
    env.write_state(&deckies);
    let run = Run::of(env.command_publishing_to(url).args([
        "--docker-host",
        &docker,
        "--output",
        "json",
        "--redis-timeout",
        "1",
    ]))
    .expect_code(0);
    assert!(
        run.elapsed < Duration::from_secs(2),
        "{test}: took {:?}, more than --redis-timeout + 1 s",
        run.elapsed
    );
    assert_eq!(env.rows().len(), 5, "{test}: the DB converged all the same");
    let report = run.json();
    assert_eq!(report["published"], 0, "{test}");
    assert_eq!(report["publish_failed"], 5, "{test}");
    assert!(
        run.stderr.contains("5 event(s) lost"),
        "{test}: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains(why),
        "{test}: {why:?} not in {}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("(broken pipe)"),
        "{test}: {}",
        run.stderr
    );
    let next = env.run(&["--docker-host", &docker]).expect_code(0);
    assert!(
        next.stdout
            .ends_with("inserted=0 deleted=0 updated=0 docker=unknown\n"),
        "{test}: the next pass is converged: {}",
        next.stdout
    );
    figure("redis_faults", 1);
}

#[test]
fn redis_down_loses_the_events_not_the_pass() {
    assert_events_lost(
        "redis-down",
        &format!("redis://127.0.0.1:{}/0", closed_port()),
        "connection refused",
    );
}

#[test]
fn redis_silent_loses_the_events_within_the_timeout() {
    assert_events_lost(
        "redis-silent",
        &format!("redis://127.0.0.1:{}/0", hanging_tcp()),
        "no answer",
    );
}

#[test]
fn redis_hanging_up_after_the_first_bytes_loses_the_events() {
    assert_events_lost(
        "redis-hangup",
        &format!(
            "redis://127.0.0.1:{}/0",
            fake_redis(FakeRedis::CloseAfterFirstBytes)
        ),
        "closed the connection",
    );
}

#[test]
fn redis_hanging_up_mid_pipeline_loses_the_events() {
    assert_events_lost(
        "redis-midway",
        &format!(
            "redis://127.0.0.1:{}/0",
            fake_redis(FakeRedis::CloseMidPipeline)
        ),
        "closed the connection",
    );
}

#[test]
fn redis_refusing_every_command_loses_the_events() {
    assert_events_lost(
        "redis-noauth",
        &format!("redis://127.0.0.1:{}/0", fake_redis(FakeRedis::Refuses)),
        "refused the command: NOAUTH",
    );
}

#[test]
fn redis_answering_garbage_loses_the_events() {
    assert_events_lost(
        "redis-garbage",
        &format!(
            "redis://127.0.0.1:{}/0",
            fake_redis(FakeRedis::AnswersGarbage)
        ),
        "not the Redis protocol",
    );
}

/// A Docker daemon whose one container `name` is in the state the test sets,
/// and which reports the request line of every request it receives on `served`.
fn scripted_docker(
    path: &Path,
    container: &str,
) -> (
    String,
    Arc<Mutex<&'static str>>,
    std::sync::mpsc::Receiver<String>,
) {
    let listener = UnixListener::bind(path).expect("bind scripted docker");
    let state = Arc::new(Mutex::new("running"));
    let (served, requests) = std::sync::mpsc::channel();
    let (container, current) = (container.to_owned(), Arc::clone(&state));
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let (container, current, served) =
                (container.clone(), Arc::clone(&current), served.clone());
            std::thread::spawn(move || {
                while let Some(request_line) = read_request_head(&mut stream) {
                    let _ = served.send(request_line.clone());
                    let body = if request_line.contains("/containers/json") {
                        let state = *current.lock().expect("state");
                        format!(r#"[{{"Id":"c1","Names":["/{container}"],"State":"{state}"}}]"#)
                    } else {
                        r#"{"ApiVersion":"1.41","MinAPIVersion":"1.12","Version":"20.10.0"}"#
                            .to_owned()
                    };
                    if stream.write_all(&http("200 OK", &body)).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (format!("unix://{}", path.display()), state, requests)
}

/// Waits for the next container list among `requests`.
fn next_listing(requests: &std::sync::mpsc::Receiver<String>, who: &str) {
    loop {
        let request = requests
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("{who} listed no containers"));
        if request.contains("/containers/json") {
            return;
        }
    }
}

/// DECNET's datetime text for now, as another pass would stamp its rows.
fn stamp_now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%d %H:%M:%S%.6f")
        .to_string()
}

/// A pass that waited for the lock must not write back what Docker said
/// before it waited: another pass, which saw the container stop meanwhile,
/// has written the newer truth. (The timer and an operator at once, SPEC §4.)
/// Nor may it ask Docker again while it holds the lock, which would hold
/// DECNET's writers up behind a slow daemon: the fake daemon sees no request
/// after the lock changed hands. The next pass, listing afresh, corrects the row.
#[test]
fn a_pass_that_waited_for_the_lock_does_not_write_a_stale_docker_view() {
    let mut env = TestEnv::new("stale-view");
    env.host = format!("host-{}", env.prefix);
    let name = env.name("d");
    env.write_state(&[env.decky(&name, &["ssh"])]);
    let (docker, container_state, requests) =
        scripted_docker(&env.dir.path().join("docker.sock"), &format!("{name}-ssh"));
    env.run(&["--docker-host", &docker]).expect_code(0);
    next_listing(&requests, "the first pass");
    while requests.try_recv().is_ok() {}
    assert_eq!(env.row(&name).state, "running");

    let events = EventLog::subscribe(&env.host);
    let holder = env.connect();
    holder.execute_batch("BEGIN IMMEDIATE").expect("lock");
    let waiting = env
        .command_publishing_to(REDIS_URL)
        .args(["--docker-host", &docker])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the waiting pass");
    next_listing(&requests, "the waiting pass");
    // The container stops; a pass that sees it writes `failed` and commits
    // while the first one still waits for the lock.
    *container_state.lock().expect("state") = "exited";
    let stamp = stamp_now();
    holder
        .execute_batch(&format!(
            "UPDATE fleet_deckies SET state = 'failed', last_seen = '{stamp}', \
             updated_at = '{stamp}' WHERE name = '{name}'; COMMIT"
        ))
        .expect("the newer pass commits");
    let output = waiting.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let during_the_lock: Vec<String> = requests.try_iter().collect();
    figure("docker_requests_while_locked", during_the_lock.len());
    assert!(
        during_the_lock.is_empty(),
        "Docker was asked while the pass held the DB lock: {during_the_lock:?}"
    );
    let announced = events.collect(0);
    assert_eq!(
        env.row(&name).state,
        "failed",
        "the waiting pass wrote back a Docker view older than the row; it announced {:?}",
        announced
            .iter()
            .map(|(_, m)| m["payload"].to_string())
            .collect::<Vec<_>>()
    );
    assert!(announced.is_empty(), "a reverted state was announced");

    // The container runs again: the next pass lists Docker afresh and says so.
    *container_state.lock().expect("state") = "running";
    env.run(&["--docker-host", &docker]).expect_code(0);
    assert_eq!(env.row(&name).state, "running", "the next pass converges");
}

/// The worst case of a pass, every service stalled at once: Docker accepts and
/// never answers, another connection holds the DB's write lock until just
/// under the busy timeout, Redis accepts and never answers. The pass still
/// converges what it can (an insert, Docker unknown), loses its event with a
/// warning, and exits 0; its duration is reported beside the sum that
/// docs/operating.md states (Docker + DB budget + Redis/bus + slack).
#[test]
fn a_pass_with_every_service_stalled_ends_within_the_sum_of_its_bounds() {
    let mut env = TestEnv::new("all-stalled");
    env.host = format!("host-{}", env.prefix);
    let (first, second) = (env.name("first"), env.name("second"));
    env.write_state(&[env.decky(&first, &["ssh"])]);
    env.run(&["--docker-host", &dead_docker(&env)])
        .expect_code(0);
    env.write_state(&[env.decky(&first, &["ssh"]), env.decky(&second, &["ssh"])]);

    let (docker_timeout, db_budget, redis_timeout) = (1.0, 2.0, 1.0);
    let docker = hanging_socket(&env.dir.path().join("hang.sock"));
    let redis = format!("redis://127.0.0.1:{}/0", hanging_tcp());
    let holder = env.connect();
    holder.execute_batch("BEGIN IMMEDIATE").expect("lock");
    let started = Instant::now();
    let pass = env
        .command_publishing_to(&redis)
        .args([
            "--docker-host",
            &format!("unix://{}", docker.display()),
            "--docker-timeout",
            &docker_timeout.to_string(),
            "--db-busy-timeout",
            &db_budget.to_string(),
            "--redis-timeout",
            &redis_timeout.to_string(),
            "--output",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the pass");
    // The pass waits out Docker first, then the lock, which is let go half a
    // second before its budget would run out.
    std::thread::sleep(Duration::from_secs_f64(docker_timeout + db_budget - 0.5));
    holder.execute_batch("COMMIT").expect("release the lock");
    let output = pass.wait_with_output().expect("wait");
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON report");
    assert_eq!(report["docker"], "unknown", "{stderr}");
    assert_eq!(report["counts"]["inserted"], 1, "{report}");
    assert_eq!(report["publish_failed"], 1, "{report}");
    assert!(stderr.contains("1 event(s) lost"), "{stderr}");
    assert_eq!(env.row(&second).state, "running");
    // docs/operating.md: SQLite's slack is process start, the state file and
    // planning; a second is generous for a test's few rows.
    let sum = docker_timeout + db_budget + redis_timeout + 1.0;
    figure(
        "all_stalled_pass_seconds",
        format!("{:.2}", elapsed.as_secs_f64()),
    );
    figure("all_stalled_bound_seconds", sum);
}

/// Text quoted from a Docker or Redis error reply reaches the journal as one
/// line per record: a newline in it cannot start a forged line, a bidi control
/// cannot reorder one, and the text is still there to read, escaped.
#[test]
fn error_text_from_docker_and_redis_cannot_forge_a_log_line() {
    let mut env = TestEnv::new("forged-errors");
    env.host = format!("host-{}", env.prefix);
    env.write_state(&[env.decky(&env.name("d"), &["ssh"])]);
    let docker = fake_docker(
        &env.dir.path().join("docker.sock"),
        Daemon::ErrorSaying(r#"{"message":"docker says\nWARN forged by docker\u202e exe.txt"}"#),
    );
    let redis = fake_redis(FakeRedis::RefusesSaying(
        "ERR redis says\nWARN forged by redis\u{202e} exe.txt",
    ));
    let run = Run::of(
        env.command_publishing_to(&format!("redis://127.0.0.1:{redis}/0"))
            .args(["--docker-host", &docker, "--docker-timeout", "2", "-q"]),
    )
    .expect_code(0);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        2,
        "one warning each for Docker and Redis:\n{}",
        run.stderr
    );
    for line in &lines {
        assert!(line.trim_start().starts_with("WARN"), "{line}");
        assert!(!line.contains('\u{202e}'), "a raw bidi control: {line}");
    }
    for said in [
        "docker says\\nWARN forged by docker\\u{202e}",
        "redis says\\nWARN forged by redis\\u{202e}",
    ] {
        assert!(
            run.stderr.contains(said),
            "{said} not shown escaped:\n{}",
            run.stderr
        );
    }
    assert_eq!(env.rows().len(), 1);
}

/// How a fake daemon floods its container list.
#[derive(Clone, Copy, Debug)]
enum Flood {
    /// No length, the body runs until the connection closes, which it never does.
    Endless,
    /// `Content-Length` of 100 GB, then bytes as fast as they go.
    HugeContentLength,
    /// `Transfer-Encoding: chunked`, 64 kB chunks, forever.
    ChunkedForever,
}

/// A daemon that answers `/version` properly and floods `/containers/json`.
fn flooding_docker(path: &Path, flood: Flood) -> String {
    let listener = UnixListener::bind(path).expect("bind flooding docker");
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                while let Some(request_line) = read_request_head(&mut stream) {
                    if !request_line.contains("/containers/json") {
                        let version =
                            r#"{"ApiVersion":"1.41","MinAPIVersion":"1.12","Version":"20.10.0"}"#;
                        if stream.write_all(&http("200 OK", version)).is_err() {
                            return;
                        }
                        continue;
                    }
                    let head = match flood {
                        Flood::Endless => "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n".to_owned(),
                        Flood::HugeContentLength => "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000000000\r\n\r\n".to_owned(),
                        Flood::ChunkedForever => "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_owned(),
                    };
                    let entry = br#"{"Id":"c","Names":["/flood"],"State":"running"},"#;
                    let data: Vec<u8> = entry.iter().copied().cycle().take(64 * 1024).collect();
                    let block = match flood {
                        Flood::ChunkedForever => {
                            [format!("{:x}\r\n", data.len()).as_bytes(), &data, b"\r\n"].concat()
                        }
                        Flood::Endless | Flood::HugeContentLength => data,
                    };
                    let opening: &[u8] = match flood {
                        Flood::ChunkedForever => b"1\r\n[\r\n",
                        Flood::Endless | Flood::HugeContentLength => b"[",
                    };
                    if stream.write_all(head.as_bytes()).is_err()
                        || stream.write_all(opening).is_err()
                    {
                        return;
                    }
                    // Until the client hangs up.
                    while stream.write_all(&block).is_ok() {}
                    return;
                }
            });
        }
    });
    format!("unix://{}", path.display())
}

/// Bytes the tool may have in use: the bound an answer past 64 MiB must keep it under.
const MEMORY_BOUND_BYTES: u64 = 200_000_000;

/// An answer that never ends, or promises 100 GB, is Docker unknown: SPEC §5's
/// rows, a warning naming the bound, exit 0, and the process's memory bounded
/// (it runs under an `RLIMIT_DATA` of 200 MB, so growth past that aborts it,
/// which fails the test; its peak RSS is reported).
#[test]
fn docker_flooding_its_answer_is_unknown_with_memory_bounded() {
    for flood in [
        Flood::Endless,
        Flood::HugeContentLength,
        Flood::ChunkedForever,
    ] {
        let test = format!("docker-flood-{flood:?}").to_lowercase();
        let (env, _) = env_with_drift(&test);
        env.connect()
            .execute("UPDATE fleet_deckies SET state = 'failed'", [])
            .expect("a state only Docker could correct");
        let docker = flooding_docker(&env.dir.path().join("flood.sock"), flood);
        let mut command = Command::new("prlimit");
        command
            .arg(format!("--data={MEMORY_BOUND_BYTES}"))
            .arg("--")
            .arg(env.command().get_program())
            .args(env.command().get_args())
            // The timeout is far: the bound, not the clock, must end the exchange.
            .args([
                "--docker-host",
                &docker,
                "--docker-timeout",
                "120",
                "--output",
                "json",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for var in [
            "DECNET_STATE_FILE",
            "DECNET_DB_PATH",
            "DECNET_HOST_UUID",
            "DOCKER_HOST",
        ] {
            command.env_remove(var);
        }
        let started = Instant::now();
        let child = command.spawn().expect("spawn under prlimit");
        // prlimit execs the tool: its pid is the tool's.
        let status_file = PathBuf::from(format!("/proc/{}/status", child.id()));
        let peak = Arc::new(Mutex::new(0u64));
        let watcher = {
            let peak = Arc::clone(&peak);
            std::thread::spawn(move || {
                while let Ok(status) = std::fs::read_to_string(&status_file) {
                    let hwm = status
                        .lines()
                        .find_map(|line| line.strip_prefix("VmHWM:"))
                        .and_then(|kb| {
                            kb.trim().trim_end_matches(" kB").trim().parse::<u64>().ok()
                        });
                    match hwm {
                        Some(kb) => *peak.lock().expect("peak") = kb * 1024,
                        None => break,
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        let output = child.wait_with_output().expect("wait");
        let _ = watcher.join();
        let stderr = String::from_utf8_lossy(&output.stderr);
        let code = output.status.code().unwrap_or_else(|| {
            panic!(
                "{flood:?}: killed by {:?} (memory past {MEMORY_BOUND_BYTES} bytes?): {stderr}",
                output.status.signal()
            )
        });
        assert_eq!(code, 0, "{flood:?}: {stderr}");
        let report: Value = serde_json::from_slice(&output.stdout).expect("JSON report");
        assert_eq!(report["docker"], "unknown", "{flood:?}");
        assert!(stderr.contains("larger than 64 MiB"), "{flood:?}: {stderr}");
        let mut expected = Transitions::new();
        expected.insert(env.name("new"), vec!["inserted".to_owned()]);
        expected.insert(env.name("gone"), vec!["deleted".to_owned()]);
        assert_eq!(transitions_of_report(&report), expected, "{flood:?}");
        assert_eq!(env.row(&env.name("new")).state, "running", "{flood:?}");
        assert_eq!(env.row(&env.name("keep")).state, "failed", "{flood:?}");
        let peak = *peak.lock().expect("peak");
        println!(
            "{flood:?}: Docker unknown after {:?}, peak RSS seen {} MB",
            started.elapsed(),
            peak / 1_000_000
        );
        assert!(
            peak < MEMORY_BOUND_BYTES,
            "{flood:?}: peak RSS {peak} bytes"
        );
        figure("docker_faults", 1);
    }
}

/// `tcp://` and `http://` hosts reach the daemon through the same bounded
/// transport: a TCP port forwarding to the real dockerd.
#[test]
fn docker_over_tcp_is_listed() {
    let mut env = TestEnv::new("docker-tcp");
    let name = env.name("d");
    env.container(&format!("{name}-ssh"), Container::Running);
    env.write_state(&[env.decky(&name, &["ssh"])]);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let daemon = UnixStream::connect("/var/run/docker.sock").expect("the real dockerd");
            let (mut client_in, mut daemon_out) = (
                client.try_clone().expect("clone"),
                daemon.try_clone().expect("clone"),
            );
            let (mut daemon_in, mut client_out) = (daemon, client);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut daemon_in, &mut client_out);
                let _ = client_out.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut client_in, &mut daemon_out);
                let _ = daemon_out.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    env.run(&[]).expect_code(0);
    for scheme in ["tcp", "http"] {
        env.execute(&format!("DELETE FROM fleet_deckies WHERE name = '{name}'"));
        let run = env
            .run(&[
                "--docker-host",
                &format!("{scheme}://127.0.0.1:{port}"),
                "--output",
                "json",
            ])
            .expect_code(0);
        assert_eq!(run.json()["docker"], "ok", "{scheme}: {}", run.stderr);
        assert_eq!(env.row(&name).state, "running", "{scheme}");
    }
}
