//! What only the shared MySQL/MariaDB backend has to prove: DECNET's DDL, many
//! hosts on one table at once, names under a case- and accent-insensitive
//! collation, the 255-character keys, the per-host lock, and crash safety.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use support::{mysql_connect, Backend, Run, Subscriber, TestEnv, REDIS_URL};

fn mysql_env(test: &str) -> TestEnv {
    TestEnv::on(Backend::MySql, test)
}

fn names(env: &TestEnv, host: &str) -> Vec<String> {
    env.rows()
        .into_iter()
        .filter(|row| row.host_uuid == host)
        .map(|row| row.name)
        .collect()
}

#[test]
fn table_created_by_the_tool_matches_decnets_ddl() {
    let env = mysql_env("my-ddl");
    env.write_state(&[env.decky(&env.name("d"), &["ssh"])]);
    env.run(&[]).expect_code(0);
    let created = env.dump("SHOW CREATE TABLE fleet_deckies");
    assert_eq!(created.len(), 1);
    let ddl = created[0].split('|').nth(1).expect("two columns");
    // `dump` renders each cell with Debug; the second cell is the DDL as bytes.
    let decnet_ddl = support::MYSQL_SCHEMA.replace("IF NOT EXISTS ", "");
    let expected = format!("{:?}", mysql::Value::Bytes(decnet_ddl.into_bytes()));
    assert_eq!(ddl, expected);
}

#[test]
fn rename_that_changes_only_case_ends_with_the_new_name() {
    let env = mysql_env("my-rename");
    let upper = format!("Decky-A-{}", env.prefix);
    let lower = upper.to_lowercase();
    env.write_state(&[env.decky(&upper, &["ssh"])]);
    env.run(&[]).expect_code(0);
    assert_eq!(names(&env, "local"), std::slice::from_ref(&upper));

    env.write_state(&[env.decky(&lower, &["ssh"])]);
    let run = env.run(&["--output", "json"]).expect_code(0);
    assert_eq!(
        names(&env, "local"),
        std::slice::from_ref(&lower),
        "exactly one row, with the new name"
    );
    assert_eq!(run.json()["counts"]["inserted"], 1);
    assert_eq!(run.json()["counts"]["deleted"], 1);
    env.run(&["--detailed-exitcode"]).expect_code(0);

    let accented = lower.replacen("decky", "décky", 1);
    env.write_state(&[env.decky(&accented, &["ssh"])]);
    env.run(&[]).expect_code(0);
    assert_eq!(names(&env, "local"), [accented]);
}

#[test]
fn names_one_under_the_collation_are_refused_whole() {
    let env = mysql_env("my-collide");
    env.seed_row("local", &env.name("kept"), "running");
    let before = env.rows();
    let name = format!("Decky-A-{}", env.prefix);
    env.write_state(&[
        env.decky(&name, &["ssh"]),
        env.decky(&name.to_lowercase(), &["ssh"]),
    ]);
    let run = env.run(&[]).expect_code(1);
    assert!(run.stderr.contains("collation"), "{}", run.stderr);
    assert_eq!(env.rows(), before, "nothing written");
}

#[test]
fn names_longer_than_255_characters_are_a_bad_state_file_here() {
    let env = mysql_env("my-long");
    env.seed_row("local", &env.name("kept"), "running");
    let before = env.rows();
    let long = format!("{}-{}", env.prefix, "x".repeat(300));
    env.write_state(&[
        env.decky(&long, &["ssh"]),
        env.decky(&env.name("fine"), &["ssh"]),
    ]);
    let run = env.run(&[]).expect_code(1);
    assert!(run.stderr.contains("255"), "{}", run.stderr);
    assert_eq!(env.rows(), before, "nothing written");

    let long_host = "h".repeat(256);
    let run = env.run(&["--host-uuid", &long_host]).expect_code(1);
    assert!(run.stderr.contains("255"), "{}", run.stderr);
    assert_eq!(env.rows(), before);
}

/// Holds host `host`'s pass lock from another session, as a slow pass would.
fn hold_host_lock(env: &TestEnv, host: &str) -> mysql::Conn {
    let mut holder = mysql_connect(&env.mysql_url());
    let got: Option<i64> = holder
        .exec_first(
            "SELECT GET_LOCK(CONCAT('decnet-reconcile:', LEFT(SHA2(CONCAT_WS(CHAR(0), DATABASE(), ?), 256), 40)), 1)",
            (host,),
        )
        .expect("GET_LOCK");
    assert_eq!(got, Some(1));
    holder
}

#[test]
fn a_pass_waits_for_its_own_host_only() {
    let env = mysql_env("my-lock");
    env.seed_row("host-c", &env.name("other"), "running");
    env.write_state(&[env.decky(&env.name("d"), &["ssh"])]);
    let _holder = hold_host_lock(&env, "local");

    let run = env.run(&["--db-busy-timeout", "1"]).expect_code(1);
    assert!(run.stderr.contains("held its lock"), "{}", run.stderr);
    assert!(
        run.elapsed < Duration::from_secs(5),
        "took {:?}",
        run.elapsed
    );
    assert!(names(&env, "local").is_empty(), "nothing written");

    let run = env
        .run(&["--host-uuid", "host-b", "--db-busy-timeout", "1"])
        .expect_code(0);
    assert!(
        run.elapsed < Duration::from_secs(5),
        "host-b waited on local's lock"
    );
    assert_eq!(names(&env, "host-b"), [env.name("d")]);
}

#[test]
fn two_hosts_reconcile_side_by_side_on_one_database() {
    let env = mysql_env("my-hosts");
    let hosts = [
        format!("host-a-{}", env.prefix),
        format!("host-b-{}", env.prefix),
    ];
    let mut subscribers: Vec<Subscriber> = hosts.iter().map(|h| Subscriber::new(h)).collect();
    let state_files: Vec<_> = hosts
        .iter()
        .map(|host| env.dir.path().join(format!("{host}.json")))
        .collect();
    // Each round gives each host a different fleet of its own; both converge each round.
    let rounds = 4;
    for round in 0..rounds {
        for (host, path) in hosts.iter().zip(&state_files) {
            let deckies: Vec<_> = (0..20)
                .filter(|i| (i + round) % 3 != 0)
                .map(|i| env.decky(&format!("{host}-d{i:02}"), &["ssh"]))
                .collect();
            env.write_state(&deckies);
            std::fs::rename(&env.state_file, path).expect("move state file");
        }
        let children: Vec<_> = hosts
            .iter()
            .zip(&state_files)
            .flat_map(|(host, path)| {
                // Two passes per host at once, as the timer and an operator would.
                (0..2).map(move |_| (host.clone(), path.clone()))
            })
            .map(|(host, path)| {
                env.command_publishing_to(REDIS_URL)
                    .args(["--host-uuid", &host, "--output", "json"])
                    .arg("--state-file")
                    .arg(&path)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn")
            })
            .collect();
        for child in children {
            let output = child.wait_with_output().expect("wait");
            assert_eq!(
                output.status.code(),
                Some(0),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        for host in &hosts {
            let expected: Vec<String> = (0..20)
                .filter(|i| (i + round) % 3 != 0)
                .map(|i| format!("{host}-d{i:02}"))
                .collect();
            assert_eq!(names(&env, host), expected, "round {round}");
        }
    }
    // Every change announced once: per host, the events match the row history.
    for (host, subscriber) in hosts.iter().zip(&mut subscribers) {
        let received = subscriber.drain();
        let mut ids: Vec<&str> = received
            .iter()
            .map(|r| r.message["id"].as_str().expect("id"))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), received.len(), "an event arrived twice");
        let mut present = std::collections::BTreeSet::new();
        let mut expected_events = 0;
        for round in 0..rounds {
            let wanted: std::collections::BTreeSet<usize> =
                (0..20).filter(|i| (i + round) % 3 != 0).collect();
            expected_events += wanted.symmetric_difference(&present).count();
            present = wanted;
        }
        assert_eq!(
            received.len(),
            expected_events,
            "host {host}: one event per change"
        );
        assert!(received
            .iter()
            .all(|r| r.message["payload"]["host_uuid"] == host.as_str()));
    }
}

#[test]
fn a_pass_killed_mid_transaction_leaves_old_or_new_rows() {
    let env = mysql_env("my-kill");
    let fleet = |count: usize| -> Vec<serde_json::Value> {
        (0..count)
            .map(|i| env.decky(&format!("{}-{i:04}", env.prefix), &["ssh"]))
            .collect()
    };
    for attempt in 0..6 {
        let (old_count, new_count) = if attempt % 2 == 0 { (0, 300) } else { (300, 0) };
        let old_rows = if env.table_exists() {
            env.rows()
        } else {
            Vec::new()
        };
        assert_eq!(old_rows.len(), old_count);
        if new_count > 0 {
            env.write_state(&fleet(new_count));
        } else {
            std::fs::remove_file(&env.state_file).expect("teardown");
        }
        let mut child = env
            .command()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_millis(20 + 25 * attempt as u64));
        let _ = child.kill();
        let _ = child.wait();
        let rows = if env.table_exists() {
            env.rows()
        } else {
            Vec::new()
        };
        assert!(
            rows.len() == old_count || rows.len() == new_count,
            "attempt {attempt}: {} rows, a mix of {old_count} and {new_count}",
            rows.len()
        );
        let started = Instant::now();
        Run::of(&mut env.command()).expect_code(0);
        assert!(started.elapsed() < Duration::from_secs(30));
        assert_eq!(env.rows().len(), new_count, "the follow-up pass converges");
    }
}

#[test]
fn a_typed_db_outranks_decnets_db_variables() {
    let env = TestEnv::new("my-typed-db");
    env.write_state(&[env.decky(&env.name("d"), &["ssh"])]);
    let unreachable = format!(
        "mysql://decnet:pw@127.0.0.1:{}/decnet",
        support::closed_port()
    );
    // The fixture passes --db before `once`; a second one after it must win too.
    let run = Run::of(
        env.command()
            .env("DECNET_DB_TYPE", "mysql")
            .env("DECNET_DB_URL", &unreachable)
            .arg("once")
            .arg("--db")
            .arg(&env.db),
    )
    .expect_code(0);
    assert!(!run.stderr.contains("127.0.0.1"), "{}", run.stderr);
    assert_eq!(names(&env, "local"), [env.name("d")]);

    let run = Run::of(
        std::process::Command::new(env!("CARGO_BIN_EXE_decnet-reconcile"))
            .env("DECNET_DB_TYPE", "mysql")
            .env("DECNET_DB_URL", &unreachable)
            .arg("--state-file")
            .arg(&env.state_file)
            .args(["--no-publish", "--docker-timeout", "1"]),
    )
    .expect_code(1);
    assert!(
        run.stderr
            .contains("cannot connect to database mysql://decnet:***@127.0.0.1"),
        "without a typed --db, DECNET_DB_TYPE=mysql selects MySQL: {}",
        run.stderr
    );
    assert!(
        !run.stderr.contains(":pw@"),
        "the password was printed: {}",
        run.stderr
    );
}
