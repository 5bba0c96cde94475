//! Proof under faults and concurrency (SPEC §4's last paragraph, §5, §6):
//! passes racing on one drift, passes killed mid-write, a DB locked by another
//! writer or on a full disk, a Docker daemon dead, hung, lying or failing, a
//! Redis dead, silent or hanging up mid-pass. The fakes are in `fakes.rs`.
//!
//! Counts that take minutes at scale come from `DECNET_RELIABILITY_*` (small by
//! default; `scripts/reliability` sets them large), and each proof prints its
//! figures as `reliability: name=value` lines (`--nocapture` shows them).

mod fakes;

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fixture::{
    assert_events_lost, closed_port, create_decnet_sqlite, decky, docker_timed_out, docker_unknown,
    figure, finish, hanging_socket, hanging_tcp, line_matches, reliability_count, run, Container,
    Env, Event, Row, REDIS_NO_ANSWER, SQLITE_DDL,
};
use fakes::{
    fake_docker, fake_redis, flooding_docker, next_listing, recording_proxy, scripted_docker,
    tcp_forwarder, Daemon, FakeRedis, Flood, TinyFs,
};

/// The error of a pass that waited for SQLite's write lock past its budget.
/// (SQLite's code is 5, `SQLITE_BUSY`, or 261, `SQLITE_BUSY_RECOVERY`, when
/// the holder is another pass recovering the WAL index as it opens: a lock too.)
const LOCKED: &str = "decnet-reconcile: error: the database stayed locked by another writer for \
                      longer than --db-busy-timeout; nothing was written: database …: \
                      database is locked: Error code ⟨5|261⟩: database is locked";

/// Docker's warning when its socket refuses the connection (`Env::dead_docker`).
fn refused(docker: &str) -> String {
    docker_unknown(docker, "connection refused")
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

fn transitions_of_events(events: &[Event]) -> Transitions {
    let mut seen = Transitions::new();
    for event in events {
        let (name, transition) = event.change();
        seen.entry(name).or_default().push(transition);
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
    let env = Env::new();
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
            // Now and then a fresh start, as DECNET leaves a new DB (only
            // DECNET_RELIABILITY_CONCURRENT_ROUNDS above 5 gets here): the
            // racing passes also race to switch it to WAL and insert every row.
            env.remove_db();
            create_decnet_sqlite(&env.db);
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
                let mut decky = decky(name, &["ssh"]);
                decky["ip"] = ip.as_str().into();
                decky
            })
            .collect();
        env.write_state(&deckies);

        // The racing passes are driven by hand: all of them start before any is waited for.
        let busy_timeout = if round % 2 == 0 { "30" } else { "0.001" };
        let children: Vec<_> = (0..passes)
            .map(|_| {
                env.test()
                    .redis()
                    .args(["--output", "json", "--db-busy-timeout", busy_timeout])
                    .command()
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn a pass")
            })
            .collect();
        let mut applied = Transitions::new();
        let mut published = 0;
        for child in children {
            let pass = finish(child);
            total_passes += 1;
            match pass.status {
                0 => {
                    assert_eq!(pass.stderr, "", "round {round}");
                    let report = pass.json();
                    published += report["published"].as_u64().expect("published");
                    assert_eq!(report["publish_failed"], 0);
                    merge(&mut applied, transitions_of_report(&report));
                }
                1 if line_matches(pass.stderr.trim_end(), LOCKED) => {
                    assert!(pass.stdout.is_empty(), "a failed pass reports no changes");
                    lock_timeouts += 1;
                }
                _ => panic!(
                    "round {round}: a racing pass failed without a lock timeout ({}):\n{}",
                    pass.status, pass.stderr
                ),
            }
        }
        // The racing passes that lost on the lock wrote nothing: a follow-up
        // pass applies whatever they left, and still nothing twice.
        let follow_up =
            run(&mut env.test().redis().args(["--output", "json"]).command()).expect_status(0);
        assert_eq!(follow_up.stderr, "");
        published += follow_up.json()["published"].as_u64().expect("published");
        merge(&mut applied, transitions_of_report(&follow_up.json()));

        let change_count: usize = expected.values().map(Vec::len).sum();
        assert_eq!(applied, expected, "round {round}: applied once each");
        assert_eq!(published as usize, change_count, "round {round}");
        assert_eq!(
            transitions_of_events(&env.published()),
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
        assert_eq!(env.integrity(), "ok");
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

fn row_set(env: &Env) -> RowSet {
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
    let env = Env::new();
    let docker = env.dead_docker();
    let pass = || {
        env.test()
            .args(["--docker-host", &docker, "-q"])
            .stderr_lines([refused(&docker)])
    };
    // Three phases in a cycle: insert `size` deckies, rewrite every one's IP,
    // delete them all (teardown removes the state file).
    let write_phase = |phase: usize| match phase {
        2 => std::fs::remove_file(&env.state_file).expect("remove state file"),
        _ => {
            let deckies: Vec<Value> = (0..size)
                .map(|i| {
                    let mut decky = decky(&env.name(&format!("k{i:04}")), &["ssh", "ftp"]);
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
        let out = pass().run();
        durations.push(out.elapsed);
        assert!(out.stdout.contains(&format!("={size}")), "{}", out.stdout);
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
        // Driven by hand: the pass is killed wherever it has got to.
        let mut child = pass()
            .command()
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
            assert_eq!(env.integrity(), "ok", "seed {seed}");
            pass().run();
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
fn env_with_drift() -> (Env, String) {
    let env = Env::new();
    let docker = env.dead_docker();
    env.test()
        .state(&[
            decky(&env.name("keep"), &["ssh"]),
            decky(&env.name("gone"), &["ssh"]),
        ])
        .args(["--docker-host", &docker])
        .stderr_lines([refused(&docker)])
        .run();
    env.write_state(&[
        decky(&env.name("keep"), &["ssh"]),
        decky(&env.name("new"), &["ssh"]),
    ]);
    (env, docker)
}

/// Another connection holds the write lock for longer than `--db-busy-timeout`:
/// exit 1 saying so (its duration is a figure), nothing written, nothing
/// announced. A dry run is not blocked (WAL readers never are).
#[test]
fn a_write_lock_held_past_the_busy_timeout_fails_cleanly() {
    let (env, docker) = env_with_drift();
    let before = env.rows();
    let holder = env.connect();
    holder
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");

    let out = env
        .test()
        .redis()
        .args(["--docker-host", &docker, "--db-busy-timeout", "1"])
        .status(1)
        .stdout("")
        .stderr_lines([
            refused(&docker),
            format!(
                "decnet-reconcile: error: the database stayed locked by another writer for longer \
                 than --db-busy-timeout; nothing was written: database {}: \
                 cannot start the write transaction: database is locked: Error code 5: database is locked",
                env.db.display()
            ),
        ])
        .run();
    figure("db_locked_pass_ms", out.elapsed.as_millis());

    env.test()
        .args([
            "--docker-host",
            &docker,
            "--dry-run",
            "--db-busy-timeout",
            "1",
        ])
        .stdout_ends_with("inserted=1 deleted=1 updated=0 docker=unknown (dry run)\n")
        .stderr_lines([refused(&docker)])
        .run();

    holder.execute_batch("ROLLBACK").expect("release");
    assert_eq!(env.rows(), before, "nothing was written");
    env.test()
        .args(["--docker-host", &docker])
        .stderr_lines([refused(&docker)])
        .run();
    assert_eq!(env.rows().len(), 2);
    figure("db_lock_faults", 1);
}

/// The lock is taken before the DB is even in WAL mode (a DECNET that opened a
/// fresh file in rollback-journal mode and is writing): the switch to WAL
/// cannot happen, and that too is a clear lock timeout, nothing written.
#[test]
fn a_lock_held_before_wal_mode_fails_cleanly_at_open() {
    let (env, docker) = env_with_drift();
    std::fs::remove_file(&env.db).expect("start from a fresh file");
    let holder = env.connect();
    holder
        .execute_batch(&format!(
            "PRAGMA journal_mode=DELETE; {SQLITE_DDL} BEGIN IMMEDIATE; \
             INSERT INTO fleet_deckies VALUES ('peer', 'p1', '[\"ssh\"]', NULL, NULL, 'running', \
             NULL, NULL, NULL, '2026-01-01 00:00:00.000000')"
        ))
        .expect("hold a rollback-journal write lock");
    let out = env
        .test()
        .args(["--docker-host", &docker, "--db-busy-timeout", "1"])
        .status(1)
        .stderr_lines([
            refused(&docker),
            format!(
                "decnet-reconcile: error: the database stayed locked by another writer for longer \
                 than --db-busy-timeout; nothing was written: database {}: \
                 cannot switch to WAL journal mode: database is locked: Error code 5: database is locked",
                env.db.display()
            ),
        ])
        .run();
    figure("db_locked_at_open_pass_ms", out.elapsed.as_millis());
    holder.execute_batch("COMMIT").expect("commit");
    drop(holder);
    let rows = env.rows();
    assert_eq!(rows.len(), 1, "only the other writer's row");
    assert_eq!(rows[0].host_uuid, "peer");
    env.test()
        .args(["--docker-host", &docker])
        .stderr_lines([refused(&docker)])
        .run();
    assert_eq!(env.rows().len(), 3);
    figure("db_lock_faults", 1);
}

/// An env whose DB lives on a 1 MiB tmpfs, with one row written, and a state
/// file of 500 deckies (~200 kB of rows) waiting to be applied.
fn env_on_tiny_fs() -> (Env, TinyFs, String) {
    let mut env = Env::new();
    let fs = TinyFs::mount(&env.dir.path().join("tiny"), "1m");
    env.move_db_to(fs.path.join("decnet.db"));
    let docker = env.dead_docker();
    env.test()
        .state(&[decky(&env.name("first"), &["ssh"])])
        .args(["--docker-host", &docker])
        .stderr_lines([refused(&docker)])
        .run();
    let deckies: Vec<Value> = (0..500)
        .map(|i| decky(&env.name(&format!("big{i:03}")), &["ssh", "ftp"]))
        .collect();
    env.write_state(&deckies);
    (env, fs, docker)
}

#[track_caller]
fn assert_untouched(env: &Env, before: &[Row]) {
    assert_eq!(env.rows(), before, "nothing was written");
    assert_eq!(env.integrity(), "ok");
}

/// Room for SQLite's shared-memory file but not for the pass's 500 rows: the
/// commit fails, exit 1 saying the disk is full, and the old rows stand.
#[test]
fn a_full_disk_fails_the_commit_and_keeps_the_old_rows() {
    let (env, fs, docker) = env_on_tiny_fs();
    let before = env.rows();
    let filler = fs.fill(64 * 1024);
    env.test()
        .args(["--docker-host", &docker])
        .status(1)
        .stdout("")
        .stderr_lines([
            refused(&docker),
            format!(
                "decnet-reconcile: error: the filesystem holding {} is full; nothing was written: \
                 database {}: cannot commit the pass: database or disk is full: \
                 Error code 13: database or disk is full",
                fs.path.display(),
                env.db.display()
            ),
        ])
        .run();
    std::fs::remove_file(filler).expect("free the disk");
    assert_untouched(&env, &before);
    env.test()
        .args(["--docker-host", &docker])
        .stderr_lines([refused(&docker)])
        .run();
    assert_eq!(env.rows().len(), 500, "converges once there is room");
    figure("disk_faults", 1);
}

/// No room at all, not even for SQLite's `-shm` file: still exit 1, nothing
/// written, and a message an operator can act on (not just "disk I/O error").
#[test]
fn a_disk_with_no_room_at_all_says_it_is_full() {
    let (env, fs, docker) = env_on_tiny_fs();
    let before = env.rows();
    let filler = fs.fill(0);
    // Where it fails (the switch to WAL, the commit) depends on the last free page.
    env.test()
        .args(["--docker-host", &docker])
        .status(1)
        .stderr_lines([
            refused(&docker),
            format!(
                "decnet-reconcile: error: the filesystem holding {} is full; nothing was written: \
                 database {}: …",
                fs.path.display(),
                env.db.display()
            ),
        ])
        .run();
    std::fs::remove_file(filler).expect("free the disk");
    assert_untouched(&env, &before);
    figure("disk_faults", 1);
}

/// The DB's filesystem turns read-only: exit 1 naming the DB, nothing written.
#[test]
fn a_read_only_filesystem_fails_cleanly() {
    let (env, fs, docker) = env_on_tiny_fs();
    let before = env.rows();
    fs.remount("ro");
    env.test()
        .args(["--docker-host", &docker])
        .status(1)
        .stderr_lines([
            refused(&docker),
            // The first read, which looks for DECNET's table before anything is
            // written, is where SQLite finds it cannot open the WAL's -shm.
            format!(
                "decnet-reconcile: error: database {}: cannot read the schema: \
                 unable to open database file: Error code 14: unable to open database file",
                env.db.display()
            ),
        ])
        .run();
    fs.remount("rw");
    assert_untouched(&env, &before);
    env.test()
        .args(["--docker-host", &docker])
        .stderr_lines([refused(&docker)])
        .run();
    assert_eq!(env.rows().len(), 500);
    figure("disk_faults", 1);
}

/// SPEC §5 with Docker unknown: the new decky is inserted as running, the
/// stray row deleted, the row whose containers cannot be seen keeps its state;
/// a warning saying `why`; exit 0. The pass's duration is a figure.
fn assert_docker_unknown(docker_host: impl FnOnce(&Env) -> String, why: &str) {
    let (env, _) = env_with_drift();
    env.execute("UPDATE fleet_deckies SET state = 'failed'");
    let host = docker_host(&env);
    let out = env
        .test()
        .args(["--docker-host", &host, "--docker-timeout", "1"])
        .args(["--output", "json"])
        .stderr_lines([docker_unknown(&host, why)])
        .run();
    figure("docker_unknown_pass_ms", out.elapsed.as_millis());
    let report = out.json();
    assert_eq!(report["docker"], "unknown");
    let mut expected = Transitions::new();
    expected.insert(env.name("new"), vec!["inserted".to_owned()]);
    expected.insert(env.name("gone"), vec!["deleted".to_owned()]);
    assert_eq!(transitions_of_report(&report), expected);
    assert_eq!(env.row(&env.name("new")).state, "running");
    assert_eq!(env.row(&env.name("keep")).state, "failed");
    figure("docker_faults", 1);
}

#[test]
fn docker_daemon_gone_leaving_its_socket_is_unknown() {
    assert_docker_unknown(Env::dead_docker, "connection refused");
}

#[test]
fn docker_that_accepts_and_never_answers_is_unknown_within_the_timeout() {
    assert_docker_unknown(
        |env| {
            let socket = hanging_socket(&env.dir.path().join("hang.sock"));
            format!("unix://{}", socket.display())
        },
        "no answer within 1s",
    );
}

#[test]
fn docker_answering_garbage_is_unknown() {
    assert_docker_unknown(
        |env| fake_docker(&env.dir.path().join("garbage.sock"), Daemon::Garbage),
        "its answer is not HTTP: invalid HTTP version parsed",
    );
    assert_docker_unknown(
        |env| {
            fake_docker(
                &env.dir.path().join("garbage2.sock"),
                Daemon::GarbageThenSilence,
            )
        },
        "its answer is not HTTP: invalid HTTP version parsed",
    );
}

#[test]
fn docker_answering_500_is_unknown() {
    assert_docker_unknown(
        |env| fake_docker(&env.dir.path().join("500.sock"), Daemon::Error500),
        "it answered HTTP 500: server error",
    );
}

#[test]
fn docker_answering_a_list_that_is_not_json_is_unknown() {
    assert_docker_unknown(
        |env| fake_docker(&env.dir.path().join("html.sock"), Daemon::NotJson),
        "its answer is not the Engine API's JSON: expected value at line 1 column 1",
    );
}

#[test]
fn docker_stalling_mid_answer_is_unknown_within_the_timeout() {
    assert_docker_unknown(
        |env| fake_docker(&env.dir.path().join("stall.sock"), Daemon::StallMidBody),
        "no answer within 1s",
    );
    assert_docker_unknown(
        |env| fake_docker(&env.dir.path().join("hangup.sock"), Daemon::HangUp),
        "its answer is not HTTP: connection closed before message completed",
    );
}

/// A proxy between the tool and the real dockerd that records every request
/// the tool makes: they are all `GET`s, and the containers are listed once.
#[test]
fn every_docker_request_is_a_get() {
    let env = Env::new();
    let name = env.name("d");
    let proxy = env.dir.path().join("proxy.sock");
    let requests = recording_proxy(&proxy, Path::new("/var/run/docker.sock"));
    let out = env
        .test()
        .containers(&[(&format!("{name}-ssh"), Container::Running)])
        .state(&[decky(&name, &["ssh"]), decky(&env.name("e"), &["ssh"])])
        .args([
            "--docker-host",
            &format!("unix://{}", proxy.display()),
            "--output",
            "json",
        ])
        .run();
    assert_eq!(out.json()["docker"], "ok");
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

/// SPEC §5 with Redis failing: the warning counts the lost events and says
/// `why` in plain words, never redis-rs's bare "broken pipe".
fn assert_redis_loses_events(port: u16, why: &str) {
    let url = format!("redis://127.0.0.1:{port}/0");
    assert_events_lost(
        &Env::new(),
        &["--redis-url", &url, "--redis-timeout", "1"],
        &[&format!(
            " WARN Redis at {url} failed ({why}): \
             2 event(s) lost; the database is converged all the same"
        )],
    );
    figure("redis_faults", 1);
}

#[test]
fn redis_down_loses_the_events_not_the_pass() {
    assert_redis_loses_events(closed_port(), "connection refused");
}

#[test]
fn redis_silent_loses_the_events_within_the_timeout() {
    assert_redis_loses_events(hanging_tcp(), REDIS_NO_ANSWER);
}

#[test]
fn redis_hanging_up_after_the_first_bytes_loses_the_events() {
    assert_redis_loses_events(
        fake_redis(FakeRedis::CloseAfterFirstBytes),
        "it closed the connection before answering every PUBLISH",
    );
}

#[test]
fn redis_hanging_up_mid_pipeline_loses_the_events() {
    assert_redis_loses_events(
        fake_redis(FakeRedis::CloseMidPipeline),
        "it closed the connection before answering every PUBLISH",
    );
}

#[test]
fn redis_refusing_every_command_loses_the_events() {
    assert_redis_loses_events(
        fake_redis(FakeRedis::Refuses),
        "it refused the command: NOAUTH Authentication required.",
    );
}

#[test]
fn redis_answering_garbage_loses_the_events() {
    assert_redis_loses_events(
        fake_redis(FakeRedis::AnswersGarbage),
        "its answer is not the Redis protocol: …",
    );
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
    let env = Env::new();
    let name = env.name("d");
    let (docker, container_state, requests) =
        scripted_docker(&env.dir.path().join("docker.sock"), &format!("{name}-ssh"));
    env.test()
        .state(&[decky(&name, &["ssh"])])
        .args(["--docker-host", &docker])
        .run();
    next_listing(&requests, "the first pass");
    while requests.try_recv().is_ok() {}
    assert_eq!(env.row(&name).state, "running");

    let holder = env.connect();
    holder.execute_batch("BEGIN IMMEDIATE").expect("lock");
    // Driven by hand: the pass must be waiting for the lock while the test acts.
    let waiting = env
        .test()
        .redis()
        .args(["--docker-host", &docker])
        .command()
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
    let waited = finish(waiting).expect_status(0);
    assert_eq!(waited.stderr, "");
    let during_the_lock: Vec<String> = requests.try_iter().collect();
    figure("docker_requests_while_locked", during_the_lock.len());
    assert!(
        during_the_lock.is_empty(),
        "Docker was asked while the pass held the DB lock: {during_the_lock:?}"
    );
    let announced = env.published();
    assert_eq!(
        env.row(&name).state,
        "failed",
        "the waiting pass wrote back a Docker view older than the row; it announced {announced:?}"
    );
    assert!(announced.is_empty(), "a reverted state was announced");

    // The container runs again: the next pass lists Docker afresh and says so.
    *container_state.lock().expect("state") = "running";
    env.test().args(["--docker-host", &docker]).run();
    assert_eq!(env.row(&name).state, "running", "the next pass converges");
}

/// The worst case of a pass, every service stalled at once: Docker accepts and
/// never answers, another connection holds the DB's write lock until just
/// under the busy timeout, Redis accepts and never answers. The pass still
/// converges what it can (an insert, Docker unknown), loses its event, and
/// exits 0; each stalled wait ends at its own bound, as its warning says. The
/// pass's duration is reported beside the sum that docs/operating.md states
/// (Docker + DB budget + Redis/bus + slack).
#[test]
fn a_pass_with_every_service_stalled_ends_each_wait_at_its_bound() {
    let env = Env::new();
    let (first, new) = (env.name("first"), env.name("new"));
    let dead = env.dead_docker();
    env.test()
        .state(&[decky(&first, &["ssh"])])
        .args(["--docker-host", &dead])
        .stderr_lines([refused(&dead)])
        .run();
    env.write_state(&[decky(&first, &["ssh"]), decky(&new, &["ssh"])]);

    let (docker_timeout, db_budget, redis_timeout) = (1.0, 2.0, 1.0);
    let docker = format!(
        "unix://{}",
        hanging_socket(&env.dir.path().join("hang.sock")).display()
    );
    let redis = format!("redis://127.0.0.1:{}/0", hanging_tcp());
    let holder = env.connect();
    holder.execute_batch("BEGIN IMMEDIATE").expect("lock");
    let started = Instant::now();
    // Driven by hand: the lock is let go while the pass waits for it.
    let pass = env
        .test()
        .redis_at(&redis)
        .args([
            "--docker-host",
            &docker,
            "--docker-timeout",
            &docker_timeout.to_string(),
            "--db-busy-timeout",
            &db_budget.to_string(),
            "--redis-timeout",
            &redis_timeout.to_string(),
            "--output",
            "json",
        ])
        .command()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the pass");
    // The pass waits out Docker first, then the lock, which is let go half a
    // second before its budget would run out.
    std::thread::sleep(Duration::from_secs_f64(docker_timeout + db_budget - 0.5));
    holder.execute_batch("COMMIT").expect("release the lock");
    let out = finish(pass).expect_status(0);
    let elapsed = started.elapsed();
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stderr);
    assert!(
        line_matches(lines[0], &docker_timed_out(&docker)),
        "Docker's wait did not end at --docker-timeout: {}",
        lines[0]
    );
    assert!(
        line_matches(
            lines[1],
            &format!(
                " WARN Redis at {redis} failed ({REDIS_NO_ANSWER}): \
                 1 event(s) lost; the database is converged all the same"
            )
        ),
        "Redis's wait did not end at --redis-timeout: {}",
        lines[1]
    );
    let report = out.json();
    assert_eq!(report["docker"], "unknown");
    assert_eq!(report["counts"]["inserted"], 1, "{report}");
    assert_eq!(report["publish_failed"], 1, "{report}");
    assert_eq!(env.row(&new).state, "running");
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
    let env = Env::new();
    let docker = fake_docker(
        &env.dir.path().join("docker.sock"),
        Daemon::ErrorSaying(r#"{"message":"docker says\nWARN forged by docker\u202e exe.txt"}"#),
    );
    let redis = fake_redis(FakeRedis::RefusesSaying(
        "ERR redis says\nWARN forged by redis\u{202e} exe.txt",
    ));
    let out = env
        .test()
        .state(&[decky(&env.name("d"), &["ssh"])])
        .redis_at(&format!("redis://127.0.0.1:{redis}/0"))
        .args(["--docker-host", &docker, "--docker-timeout", "2", "-q"])
        .stderr_lines([
            format!(" WARN Docker at {docker} … docker says\\nWARN forged by docker\\u{{202e}} exe.txt…"),
            format!(
                " WARN Redis at redis://127.0.0.1:{redis}/0 … \
                 redis says\\nWARN forged by redis\\u{{202e}} exe.txt…"
            ),
        ])
        .run();
    assert!(
        !out.stderr.contains('\u{202e}'),
        "a raw bidi control: {}",
        out.stderr
    );
    assert_eq!(env.rows().len(), 1);
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
        let (env, _) = env_with_drift();
        env.execute("UPDATE fleet_deckies SET state = 'failed'");
        let docker = flooding_docker(&env.dir.path().join("flood.sock"), flood);
        // Driven by hand: its memory is watched while it runs.
        let child = env
            .test()
            .wrapped_in(["prlimit", &format!("--data={MEMORY_BOUND_BYTES}"), "--"])
            // The timeout is far: the bound, not the clock, must end the exchange.
            .args([
                "--docker-host",
                &docker,
                "--docker-timeout",
                "120",
                "--output",
                "json",
            ])
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn under prlimit");
        let started = Instant::now();
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
        let out = finish(child).expect_status(0);
        let _ = watcher.join();
        assert!(
            line_matches(
                out.stderr.trim_end(),
                &docker_unknown(&docker, "… larger than 64 MiB…")
            ),
            "{flood:?}: {}",
            out.stderr
        );
        let report = out.json();
        assert_eq!(report["docker"], "unknown", "{flood:?}");
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
    let env = Env::new();
    let name = env.name("d");
    let port = tcp_forwarder("/var/run/docker.sock");
    env.test()
        .containers(&[(&format!("{name}-ssh"), Container::Running)])
        .state(&[decky(&name, &["ssh"])])
        .run();
    for scheme in ["tcp", "http"] {
        env.execute(&format!("DELETE FROM fleet_deckies WHERE name = '{name}'"));
        let out = env
            .test()
            .args([
                "--docker-host",
                &format!("{scheme}://127.0.0.1:{port}"),
                "--output",
                "json",
            ])
            .run();
        assert_eq!(out.json()["docker"], "ok", "{scheme}");
        assert_eq!(env.row(&name).state, "running", "{scheme}");
    }
}
