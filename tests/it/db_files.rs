//! The files around a SQLite DB (issue 15): the DB path and its `-wal`,
//! `-shm` and `-journal` companions are looked at, on the resolved path,
//! before SQLite opens anything. What is not a regular file (or absent) is
//! refused with a message that says what it is, at once: a FIFO used to hang
//! a dry run (the DB) or every pass (the journal) forever, `/dev/null` read as
//! a lock. A dry run through a symbolic link reads a live writer's WAL beside
//! the real file, as through the real path. Each run is bounded by the
//! fixture's hang bound (60 s, "the process hung"); its duration is reported.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::fixture::{decky, fifo, run, tool, Env, Output, Test};

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", path.display()))
}

/// A pass and a dry run of `test()`, each refused with exit 1, nothing on
/// stdout and `message` as its only line. (The caller checks the rows once
/// nothing is left that would hang the test's own SQLite.)
fn refused_both_ways<'e>(test: impl Fn() -> Test<'e>, message: &str, label: &str) {
    for dry in [false, true] {
        let mut pass = test();
        if dry {
            pass = pass.arg("--dry-run");
        }
        let out: Output = pass
            .status(1)
            .stdout("")
            .stderr_lines([format!("decnet-reconcile: error: {message}")])
            .run();
        eprintln!(
            "{label}{}: refused in {:.3} s",
            if dry { ", --dry-run" } else { "" },
            out.elapsed.as_secs_f64()
        );
    }
}

#[test]
fn a_fifo_as_the_db_is_refused_by_what_it_is_without_hanging() {
    let env = Env::new();
    env.write_state(&[decky(&env.name("d"), &["ssh"])]);
    let fifo = fifo(&env.dir.path().join("fifo.db"));
    let fifo_arg = fifo.display().to_string();
    let before = env.rows();
    let test = || env.test().without("--db").args(["--db", &fifo_arg]);
    refused_both_ways(
        test,
        &format!(
            "database {fifo_arg}: is a FIFO, not a regular file; refused before SQLite opens it"
        ),
        "the DB is a FIFO",
    );
    // --create-table does not make SQLite try it either.
    test()
        .arg("--create-table")
        .status(1)
        .stderr_lines([format!(
            "decnet-reconcile: error: database {fifo_arg}: is a FIFO, …"
        )])
        .run();
    assert_eq!(env.rows(), before, "nothing was written");
}

/// A FIFO named as any companion, beside a good DB: every pass and every dry
/// run hung on the journal before any busy timeout applied.
#[test]
fn a_fifo_as_any_companion_beside_a_good_db_is_refused_without_hanging() {
    let env = Env::new();
    env.test().state(&[decky(&env.name("d"), &["ssh"])]).run();
    env.write_state(&[
        decky(&env.name("d"), &["ssh"]),
        decky(&env.name("e"), &["ftp"]),
    ]);
    let before = env.rows();
    for (suffix, role) in [
        ("-journal", "rollback journal"),
        ("-wal", "write-ahead log"),
        ("-shm", "shared-memory index"),
    ] {
        let companion = with_suffix(&env.db, suffix);
        fifo(&companion);
        refused_both_ways(
            || env.test(),
            &format!(
                "database {}: its {role} {} is a FIFO, not a regular file; refused before SQLite opens anything",
                env.db.display(),
                companion.display()
            ),
            &format!("a FIFO as decnet.db{suffix}"),
        );
        std::fs::remove_file(&companion).expect("remove the FIFO");
        assert_eq!(env.rows(), before, "{suffix}: nothing was written");
    }
    // With the FIFOs gone the same DB is fine.
    env.test().run();
    assert_eq!(env.rows().len(), 2);
}

#[test]
fn dev_null_and_other_non_files_are_named_not_read_as_a_lock() {
    let env = Env::new();
    env.write_state(&[decky(&env.name("d"), &["ssh"])]);
    let test = |db: &str| {
        env.test()
            .without("--db")
            .args(["--db", db, "--create-table"])
    };
    let before = env.rows();
    let dir = env.dir.path().join("a-directory.db");
    std::fs::create_dir(&dir).expect("dir");
    let link = env.dir.path().join("null.db");
    std::os::unix::fs::symlink("/dev/null", &link).expect("link");
    for (db, says) in [
        (
            "/dev/null".to_owned(),
            "database /dev/null: is a character device".to_owned(),
        ),
        (
            dir.display().to_string(),
            format!("database {}: is a directory", dir.display()),
        ),
        (
            link.display().to_string(),
            format!(
                "database {} (the file /dev/null): is a character device",
                link.display()
            ),
        ),
    ] {
        refused_both_ways(
            || test(&db),
            &format!("{says}, not a regular file; refused before SQLite opens it"),
            &db,
        );
    }
    assert_eq!(env.rows(), before, "nothing was written");
}

/// The changes a dry run through `db` plans, by name and action.
fn planned(env: &Env, db: &str) -> Vec<(String, String)> {
    let out = env
        .test()
        .without("--db")
        .args([
            "--db",
            db,
            "--dry-run",
            "--output",
            "json",
            "--detailed-exitcode",
        ])
        .status(2)
        .run();
    eprintln!("dry run through {db}: {:.3} s", out.elapsed.as_secs_f64());
    let report = out.json();
    let mut changes: Vec<(String, String)> = report["changes"]
        .as_array()
        .unwrap_or_else(|| panic!("no changes: {report}"))
        .iter()
        .map(|change| {
            let text = |key: &str| change[key].as_str().unwrap_or_default().to_owned();
            (text("name"), text("action"))
        })
        .collect();
    changes.sort();
    changes
}

/// A live writer holds changes in the WAL beside the real file (not yet in
/// the main file); a dry run through a link to the DB sees them, as one
/// through the real path does. It used to look for `-wal` beside the link,
/// find none, open the main file immutable and say "converged".
#[test]
fn a_dry_run_through_a_symlink_sees_a_live_writers_wal() {
    let mut env = Env::new();
    let real = env.dir.path().join("real/decnet.db");
    std::fs::create_dir(env.dir.path().join("real")).expect("dir");
    env.move_db_to(real.clone());
    let link = env.dir.path().join("link.db");
    std::os::unix::fs::symlink("real/decnet.db", &link).expect("link");
    let (kept, gone, added) = (env.name("kept"), env.name("gone"), env.name("added"));
    env.test()
        .state(&[decky(&kept, &["ssh"]), decky(&gone, &["ssh"])])
        .run();
    env.write_state(&[decky(&kept, &["ssh"]), decky(&added, &["ssh"])]);

    // The writer: WAL, no checkpoint, its connection held open; `kept` deleted.
    let writer = env.connect();
    writer
        .execute_batch(&format!(
            "PRAGMA wal_autocheckpoint = 0; DELETE FROM fleet_deckies WHERE name = '{kept}';"
        ))
        .expect("a write held in the WAL");
    assert!(
        with_suffix(&real, "-wal").exists(),
        "the WAL is beside the real file"
    );
    assert!(
        !with_suffix(&link, "-wal").exists(),
        "nothing beside the link"
    );

    let expected = {
        let mut expected = vec![
            (added.clone(), "inserted".to_owned()),
            (gone.clone(), "deleted".to_owned()),
            (kept.clone(), "inserted".to_owned()),
        ];
        expected.sort();
        expected
    };
    let through_the_file = planned(&env, &real.display().to_string());
    let through_the_link = planned(&env, &link.display().to_string());
    assert_eq!(through_the_file, expected, "the writer's delete is seen");
    assert_eq!(
        through_the_link, through_the_file,
        "the link sees what the file does"
    );
    // And a chain of links through a linked directory, relative to the working directory.
    std::os::unix::fs::symlink(env.dir.path().join("real"), env.dir.path().join("dirlink"))
        .expect("dir link");
    std::os::unix::fs::symlink("dirlink/decnet.db", env.dir.path().join("hop")).expect("hop");
    let hop = env
        .test()
        .without("--db")
        .current_dir(env.dir.path())
        .args([
            "--db",
            "hop",
            "--dry-run",
            "--output",
            "json",
            "--detailed-exitcode",
        ])
        .status(2)
        .run()
        .json();
    assert_eq!(
        hop["changes"].as_array().map(Vec::len),
        Some(expected.len()),
        "{hop}"
    );
    drop(writer);
}

/// `doctor` makes the same check, and says what the file is.
#[test]
fn doctor_names_what_the_db_file_is() {
    let env = Env::new();
    env.write_state(&[decky(&env.name("d"), &["ssh"])]);
    fifo(&with_suffix(&env.db, "-journal"));
    let doctor = run(tool().args([
        "doctor",
        "--output",
        "json",
        "--state-file",
        &env.state_file.display().to_string(),
        "--db",
        &env.db.display().to_string(),
        "--no-publish",
        "--docker-host",
        &env.dead_docker(),
    ]));
    eprintln!(
        "doctor with a FIFO journal: {:.3} s",
        doctor.elapsed.as_secs_f64()
    );
    assert_eq!(doctor.status, 1, "{}{}", doctor.stdout, doctor.stderr);
    let json: Value = doctor.json();
    let problems: Vec<&str> = json["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter_map(|check| check["problem"].as_str())
        .collect();
    let expected = format!(
        "its rollback journal {}-journal is a FIFO, not a regular file",
        env.db.display()
    );
    assert!(
        problems.iter().any(|problem| problem.contains(&expected)),
        "{problems:#?}"
    );
}
