//! What only the shared MySQL/MariaDB backend has to prove: DECNET's DDL, many
//! hosts on one table at once, names under a case- and accent-insensitive
//! collation, the 255-character keys, the per-host lock, and crash safety.

use std::process::Stdio;
use std::time::Duration;

use crate::fixture::{
    closed_port, decky, figure, finish, Env, RedisServer, Subscriber, MARIADB_DDL,
};

/// With --create-table (a database DECNET never manages), the table the tool
/// creates is DECNET's, byte for byte as MariaDB reports it. Without it, the
/// tool creates nothing (tests/it/pass.rs).
#[test]
fn table_created_with_create_table_matches_decnets_ddl() {
    let env = Env::mysql().without_db();
    env.test()
        .state(&[decky(&env.name("d"), &["ssh"])])
        .arg("--create-table")
        .run();
    let created = env.dump("SHOW CREATE TABLE fleet_deckies");
    assert_eq!(created.len(), 1);
    let ddl = created[0].split('|').nth(1).expect("two columns");
    // `dump` renders each cell with Debug; the second cell is the DDL as bytes.
    let expected = format!("{:?}", mysql::Value::Bytes(MARIADB_DDL.as_bytes().to_vec()));
    assert_eq!(ddl, expected);
}

#[test]
fn rename_that_changes_only_case_ends_with_the_new_name() {
    let env = Env::mysql();
    let upper = format!("Decky-A-{}", env.prefix);
    let lower = upper.to_lowercase();
    env.test().state(&[decky(&upper, &["ssh"])]).run();
    assert_eq!(env.names_of(&env.host), std::slice::from_ref(&upper));

    let out = env
        .test()
        .state(&[decky(&lower, &["ssh"])])
        .args(["--output", "json"])
        .run();
    assert_eq!(
        env.names_of(&env.host),
        std::slice::from_ref(&lower),
        "exactly one row, with the new name"
    );
    assert_eq!(out.json()["counts"]["inserted"], 1);
    assert_eq!(out.json()["counts"]["deleted"], 1);
    env.test().arg("--detailed-exitcode").run();

    let accented = lower.replacen("decky", "décky", 1);
    env.test().state(&[decky(&accented, &["ssh"])]).run();
    assert_eq!(env.names_of(&env.host), [accented]);
}

#[test]
fn names_one_under_the_collation_are_refused_whole() {
    let env = Env::mysql();
    env.seed_row(&env.host, &env.name("kept"), "running");
    let before = env.rows();
    let name = format!("Decky-A-{}", env.prefix);
    env.test()
        .state(&[
            decky(&name, &["ssh"]),
            decky(&name.to_lowercase(), &["ssh"]),
        ])
        .status(1)
        .stderr(format!(
            "decnet-reconcile: error: database mysql://***:***@127.0.0.1:3306/{}: \
             cannot write decky {:?}: two deckies of the state file have names that MySQL's \
             collation treats as one (it ignores case, accents and trailing spaces); \
             nothing was written\n",
            env.mysql_database,
            name.to_lowercase()
        ))
        .run();
    assert_eq!(env.rows(), before, "nothing written");
}

#[test]
fn names_longer_than_255_characters_are_a_bad_state_file_here() {
    let env = Env::mysql();
    env.seed_row(&env.host, &env.name("kept"), "running");
    let before = env.rows();
    let long = format!("{}-{}", env.prefix, "x".repeat(300));
    env.test()
        .state(&[decky(&long, &["ssh"]), decky(&env.name("fine"), &["ssh"])])
        .status(1)
        .stderr_lines([format!(
            "decnet-reconcile: error: state file: decky \"{}-xxx…\"… has a name of {} characters; \
             fleet_deckies in this database holds 255. Nothing was written",
            env.prefix,
            long.chars().count()
        )])
        .run();
    assert_eq!(env.rows(), before, "nothing written");

    let long_host = "h".repeat(256);
    env.test()
        .args(["--host-uuid", &long_host])
        .status(1)
        .stderr(format!(
            "decnet-reconcile: error: database mysql://***:***@127.0.0.1:3306/{}: --host-uuid \
             is longer than the 255 characters fleet_deckies holds in this database\n",
            env.mysql_database
        ))
        .run();
    assert_eq!(env.rows(), before);
}

/// Another pass of this host holds its lock: this one gives up after its
/// budget, saying so. A pass of another host does not wait on that lock
/// (held past any budget, it would fail the pass). Durations are figures.
#[test]
fn a_pass_waits_for_its_own_host_only() {
    let env = Env::mysql();
    env.seed_row("host-c", &env.name("other"), "running");
    env.write_state(&[decky(&env.name("d"), &["ssh"])]);
    let _holder = env.hold_host_lock(&env.host);

    let out = env
        .test()
        .args(["--db-busy-timeout", "1"])
        .status(1)
        .stderr(format!(
            "decnet-reconcile: error: database mysql://***:***@127.0.0.1:3306/{}: another pass \
             for host {:?} held its lock for longer than --db-busy-timeout; nothing was written\n",
            env.mysql_database, env.host
        ))
        .run();
    figure("mysql_own_host_locked_ms", out.elapsed.as_millis());
    assert!(env.names_of(&env.host).is_empty(), "nothing written");

    let out = env
        .test()
        .args(["--host-uuid", "host-b", "--db-busy-timeout", "1"])
        .run();
    figure("mysql_other_host_ms", out.elapsed.as_millis());
    assert_eq!(env.names_of("host-b"), [env.name("d")]);
}

#[test]
fn two_hosts_reconcile_side_by_side_on_one_database() {
    let env = Env::mysql();
    let hosts = [
        format!("host-a-{}", env.prefix),
        format!("host-b-{}", env.prefix),
    ];
    let mut subscribers: Vec<Subscriber> = hosts
        .iter()
        .map(|h| Subscriber::redis(h, &RedisServer::plain()))
        .collect();
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
                .map(|i| decky(&format!("{host}-d{i:02}"), &["ssh"]))
                .collect();
            env.write_state(&deckies);
            std::fs::rename(&env.state_file, path).expect("move state file");
        }
        // Driven by hand: two passes per host at once, as the timer and an operator would.
        let children: Vec<_> = hosts
            .iter()
            .zip(&state_files)
            .flat_map(|(host, path)| (0..2).map(move |_| (host, path)))
            .map(|(host, path)| {
                env.test()
                    .redis()
                    .args(["--host-uuid", host, "--output", "json"])
                    .arg("--state-file")
                    .arg(path)
                    .command()
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn")
            })
            .collect();
        for child in children {
            let pass = finish(child).expect_status(0);
            assert_eq!(pass.stderr, "");
        }
        for host in &hosts {
            let expected: Vec<String> = (0..20)
                .filter(|i| (i + round) % 3 != 0)
                .map(|i| format!("{host}-d{i:02}"))
                .collect();
            assert_eq!(env.names_of(host), expected, "round {round}");
        }
    }
    // Every change announced once: per host, the events match the row history.
    for (host, subscriber) in hosts.iter().zip(&mut subscribers) {
        let received = subscriber.published();
        let mut ids: Vec<&str> = received
            .iter()
            .map(|event| event.message["id"].as_str().expect("id"))
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
            .all(|event| event.payload()["host_uuid"] == host.as_str()));
    }
}

#[test]
fn a_pass_killed_mid_transaction_leaves_old_or_new_rows() {
    let env = Env::mysql();
    let fleet = |count: usize| -> Vec<serde_json::Value> {
        (0..count)
            .map(|i| decky(&format!("{}-{i:04}", env.prefix), &["ssh"]))
            .collect()
    };
    for attempt in 0..6 {
        let (old_count, new_count) = if attempt % 2 == 0 { (0, 300) } else { (300, 0) };
        assert_eq!(env.rows().len(), old_count);
        if new_count > 0 {
            env.write_state(&fleet(new_count));
        } else {
            std::fs::remove_file(&env.state_file).expect("teardown");
        }
        // Driven by hand: killed wherever it has got to.
        let mut child = env
            .test()
            .command()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_millis(20 + 25 * attempt as u64));
        let _ = child.kill();
        let _ = child.wait();
        let rows = env.rows();
        assert!(
            rows.len() == old_count || rows.len() == new_count,
            "attempt {attempt}: {} rows, a mix of {old_count} and {new_count}",
            rows.len()
        );
        env.test().run();
        assert_eq!(env.rows().len(), new_count, "the follow-up pass converges");
    }
}

#[test]
fn a_typed_db_outranks_decnets_db_variables() {
    let env = Env::new();
    env.write_state(&[decky(&env.name("d"), &["ssh"])]);
    let unreachable = format!("mysql://decnet:pw@127.0.0.1:{}/decnet", closed_port());
    // The fixture passes --db before `once`; a second one after it must win too.
    env.test()
        .env_var("DECNET_DB_TYPE", "mysql")
        .env_var("DECNET_DB_URL", &unreachable)
        .arg("once")
        .arg("--db")
        .arg(&env.db)
        .run();
    assert_eq!(env.names_of(&env.host), [env.name("d")]);

    // Without a typed --db, DECNET_DB_TYPE=mysql selects MySQL.
    env.test()
        .without("--db")
        .env_var("DECNET_DB_TYPE", "mysql")
        .env_var("DECNET_DB_URL", &unreachable)
        .args(["--docker-timeout", "1"])
        .status(1)
        .stderr(format!(
            "decnet-reconcile: error: cannot connect to database {}: \
             connection refused; nothing was written\n",
            unreachable.replace(":pw@", ":***@")
        ))
        .run();
}
