//! The pass end to end (SPEC §2–§5, §9): the built binary against the real
//! test dockerd, with real containers, and a real SQLite file.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{hanging_socket, Backend, Container, TestEnv};

/// SPEC §9's `decky_config` example, byte for byte.
const SPEC_DECKY_CONFIG: &str = r#"{"name":"ref-b","ip":"10.0.0.3","services":["smtp_relay","ftp"],"distro":"debian","base_image":"debian:bookworm-slim","build_base":"debian:bookworm-slim","hostname":"host-001","archetype":null,"service_config":{},"nmap_os":"linux","mutate_interval":null,"last_mutated":0.0,"last_login_attempt":0.0,"host_uuid":null}"#;

fn aggregate_state_follows_the_containers(backend: Backend) {
    let mut env = TestEnv::on(backend, "aggregate");
    let (running, torn, failed, paused, degraded) = (
        env.name("run"),
        env.name("torn"),
        env.name("fail"),
        env.name("paused"),
        env.name("degr"),
    );
    env.container(&format!("{running}-ssh"), Container::Running);
    env.container(&format!("{running}-smtp-relay"), Container::Running);
    env.container(&format!("{failed}-ssh"), Container::Exited);
    env.container(&format!("{failed}-smtp-relay"), Container::Created);
    env.container(&format!("{paused}-ssh"), Container::Paused);
    env.container(&format!("{degraded}-ssh"), Container::Running);
    env.write_state(&[
        env.decky(&running, &["ssh", "smtp_relay"]),
        env.decky(&torn, &["ssh", "smtp_relay"]),
        env.decky(&failed, &["ssh", "smtp_relay"]),
        env.decky(&paused, &["ssh"]),
        env.decky(&degraded, &["ssh", "smtp_relay"]),
    ]);
    env.run(&[]).expect_code(0);
    for (name, state) in [
        (&running, "running"),
        (&torn, "torn_down"),
        (&failed, "failed"),
        (&paused, "failed"),
        (&degraded, "degraded"),
    ] {
        assert_eq!(env.row(name).state, state, "{name}");
    }
}

fn insert_writes_every_column_in_decnet_formats(backend: Backend) {
    let env = TestEnv::on(backend, "insert");
    env.write_state(&[env.decky("ref-b", &["smtp_relay", "ftp"])]);
    let run = env.run(&[]).expect_code(0);
    let rows = env.rows();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.host_uuid, "local");
    assert_eq!(row.name, "ref-b");
    assert_eq!(row.services, r#"["smtp_relay","ftp"]"#);
    assert_eq!(row.decky_config.as_deref(), Some(SPEC_DECKY_CONFIG));
    assert_eq!(row.decky_ip.as_deref(), Some("10.0.0.3"));
    assert_eq!(row.state, "torn_down", "no ref-b containers exist");
    assert_eq!(row.last_error, None);
    assert_eq!(row.compose_hash, None);
    assert_eq!(row.last_seen, None);
    env.assert_datetime(&row.updated_at);
    assert!(
        run.stdout.contains("inserted") && run.stdout.contains("ref-b"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.ends_with("inserted=1 deleted=0 updated=0\n"),
        "{}",
        run.stdout
    );
}

fn rows_missing_from_the_state_file_are_deleted(backend: Backend) {
    let env = TestEnv::on(backend, "delete");
    let (kept, gone) = (env.name("kept"), env.name("gone"));
    env.write_state(&[env.decky(&kept, &["ssh"])]);
    env.seed_row("local", &gone, "running");
    let run = env.run(&[]).expect_code(0);
    let names: Vec<String> = env.rows().into_iter().map(|r| r.name).collect();
    assert_eq!(names, [kept]);
    assert!(
        run.stdout.contains("deleted") && run.stdout.contains(&gone),
        "{}",
        run.stdout
    );
}

fn state_update_sets_last_seen_with_updated_at(backend: Backend) {
    let mut env = TestEnv::on(backend, "update");
    let name = env.name("d");
    env.container(&format!("{name}-ssh"), Container::Running);
    env.write_state(&[env.decky(&name, &["ssh"])]);
    env.run(&[]).expect_code(0);
    assert_eq!(env.row(&name).state, "running");

    env.stop_container(&format!("{name}-ssh"));
    if backend == Backend::MySql {
        // MySQL keeps whole seconds: a row stamped in the very second a pass
        // lists Docker may be newer than its view, so it keeps its state for
        // that pass (README, "Another pass committed meanwhile").
        let into_second = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .subsec_nanos();
        std::thread::sleep(std::time::Duration::from_nanos(
            1_000_000_000 - u64::from(into_second),
        ));
    }
    let run = env.run(&[]).expect_code(0);
    let row = env.row(&name);
    assert_eq!(row.state, "failed");
    assert_eq!(row.last_seen.as_deref(), Some(row.updated_at.as_str()));
    env.assert_datetime(&row.updated_at);
    assert!(run.stdout.contains("running → failed"), "{}", run.stdout);
}

fn converged_pass_leaves_every_row_byte_identical(backend: Backend) {
    let mut env = TestEnv::on(backend, "converged");
    let name = env.name("d");
    env.container(&format!("{name}-ssh"), Container::Running);
    env.write_state(&[
        env.decky(&name, &["ssh"]),
        env.decky(&env.name("e"), &["ftp"]),
    ]);
    env.run(&[]).expect_code(0);
    let before = env.rows();
    // SQLite also proves no transaction committed: data_version moves on any other connection's commit.
    let connection = (env.backend == Backend::Sqlite).then(|| env.connect());
    let version = |conn: &Option<rusqlite::Connection>| {
        conn.as_ref().map(|c| {
            c.query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0))
                .expect("data_version")
        })
    };
    let version_before = version(&connection);
    let run = env.run(&["--detailed-exitcode"]).expect_code(0);
    assert_eq!(env.rows(), before);
    assert_eq!(
        version(&connection),
        version_before,
        "another connection committed a write"
    );
    assert_eq!(run.stdout, "inserted=0 deleted=0 updated=0\n");
}

fn docker_socket_missing_means_unknown_not_gone(backend: Backend) {
    let env = TestEnv::on(backend, "nosocket");
    let (kept, new) = (env.name("kept"), env.name("new"));
    env.seed_row("local", &kept, "failed");
    env.write_state(&[env.decky(&kept, &["ssh"]), env.decky(&new, &["ssh"])]);
    let missing = format!("unix://{}", env.dir.path().join("no-such.sock").display());
    let run = env
        .run(&["--docker-host", &missing, "--output", "json"])
        .expect_code(0);
    assert_eq!(env.row(&new).state, "running", "insert with Docker unknown");
    assert_eq!(
        env.row(&kept).state,
        "failed",
        "no state update with Docker unknown"
    );
    assert!(
        run.stderr.contains("Docker") && run.stderr.contains("unknown"),
        "{}",
        run.stderr
    );
    assert_eq!(run.json()["docker"], "unknown");
}

fn docker_socket_that_never_answers_times_out(backend: Backend) {
    let env = TestEnv::on(backend, "hang");
    let (kept, new) = (env.name("kept"), env.name("new"));
    env.seed_row("local", &kept, "failed");
    env.write_state(&[env.decky(&kept, &["ssh"]), env.decky(&new, &["ssh"])]);
    let socket = hanging_socket(&env.dir.path().join("hang.sock"));
    let host = format!("unix://{}", socket.display());
    let run = env
        .run(&["--docker-host", &host, "--docker-timeout", "1"])
        .expect_code(0);
    assert!(
        run.elapsed < Duration::from_secs(2),
        "took {:?}",
        run.elapsed
    );
    assert_eq!(env.row(&new).state, "running");
    assert_eq!(env.row(&kept).state, "failed");
    assert!(run.stderr.contains("unknown"), "{}", run.stderr);
}

fn peer_host_rows_survive(backend: Backend) {
    let env = TestEnv::on(backend, "peers");
    let name = env.name("d");
    env.seed_row("host-b", &name, "running");
    env.seed_row("host-b", &env.name("other"), "failed");
    env.write_state(&[env.decky(&env.name("mine"), &["ssh"])]);
    let before: Vec<_> = env
        .rows()
        .into_iter()
        .filter(|r| r.host_uuid == "host-b")
        .collect();
    env.run(&[]).expect_code(0);
    std::fs::remove_file(&env.state_file).expect("remove state file");
    env.run(&[]).expect_code(0);
    let after: Vec<_> = env
        .rows()
        .into_iter()
        .filter(|r| r.host_uuid == "host-b")
        .collect();
    assert_eq!(before, after);
    assert_eq!(after.len(), 2);
}

fn decky_of_another_host_is_skipped_on_every_pass(backend: Backend) {
    let env = TestEnv::on(backend, "foreign");
    let mut foreign = env.decky(&env.name("f"), &["ssh"]);
    foreign["host_uuid"] = json!("host-b");
    env.write_state(&[foreign, env.decky(&env.name("mine"), &["ssh"])]);
    for _ in 0..2 {
        let run = env.run(&["--output", "json"]).expect_code(0);
        assert_eq!(run.json()["skipped"][0]["name"], env.name("f"));
        assert_eq!(run.json()["skipped"][0]["host_uuid"], "host-b");
        let names: Vec<String> = env.rows().into_iter().map(|r| r.name).collect();
        assert_eq!(names, [env.name("mine")]);
    }
}

fn config_drift_is_repaired_and_shown_as_updated(backend: Backend) {
    let env = TestEnv::on(backend, "drift");
    let name = env.name("d");
    env.write_state(&[env.decky(&name, &["ssh"])]);
    env.run(&[]).expect_code(0);
    let first = env.row(&name);
    env.execute(&format!(
        "UPDATE fleet_deckies SET decky_ip = '10.9.9.9', decky_config = '{{}}', updated_at = '2026-01-01 00:00:00' \
         WHERE name = '{name}'"
    ));
    let run = env.run(&["--output", "json"]).expect_code(0);
    let repaired = env.row(&name);
    assert_eq!(repaired.decky_ip, first.decky_ip);
    assert_eq!(repaired.decky_config, first.decky_config);
    assert_eq!(
        repaired.last_seen, first.last_seen,
        "a config repair leaves last_seen"
    );
    assert_ne!(repaired.updated_at, "2026-01-01 00:00:00");
    env.assert_datetime(&repaired.updated_at);
    let change = &run.json()["changes"][0];
    assert_eq!(change["action"], "updated");
    assert_eq!(
        change["changed_fields"],
        json!(["decky_ip", "decky_config"])
    );
}

fn missing_state_file_deletes_this_hosts_rows(backend: Backend) {
    let env = TestEnv::on(backend, "nofile");
    env.seed_row("local", &env.name("a"), "running");
    env.seed_row("local", &env.name("b"), "failed");
    let run = env.run(&[]).expect_code(0);
    assert!(env.rows().is_empty());
    assert!(
        run.stdout.ends_with("inserted=0 deleted=2 updated=0\n"),
        "{}",
        run.stdout
    );
}

fn dry_run_changes_nothing(backend: Backend) {
    let env = TestEnv::on(backend, "dry");
    env.seed_row("local", &env.name("gone"), "running");
    env.write_state(&[env.decky(&env.name("new"), &["ssh"])]);
    // On SQLite every byte of the DB files; on MySQL every byte of every row.
    let snapshot = || -> Vec<String> {
        if env.backend == Backend::MySql {
            return env.rows().iter().map(|row| format!("{row:?}")).collect();
        }
        let mut files: Vec<String> = std::fs::read_dir(env.dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.to_string_lossy().contains("decnet.db"))
            .map(|p| format!("{} {:?}", p.display(), std::fs::read(&p).expect("read")))
            .collect();
        files.sort();
        files
    };
    let before = snapshot();
    let run = env
        .run(&["--dry-run", "--detailed-exitcode"])
        .expect_code(2);
    assert_eq!(snapshot(), before, "the DB changed");
    assert!(
        run.stdout
            .ends_with("inserted=1 deleted=1 updated=0 (dry run)\n"),
        "{}",
        run.stdout
    );

    let absent = TestEnv::on(backend, "dry-absent");
    absent.write_state(&[absent.decky(&absent.name("new"), &["ssh"])]);
    absent.run(&["--dry-run"]).expect_code(0);
    assert!(
        !absent.table_exists(),
        "a dry run created the DB or its table"
    );
}

fn detailed_exitcode_is_2_on_change_and_0_when_converged(backend: Backend) {
    let env = TestEnv::on(backend, "exitcode");
    env.write_state(&[env.decky(&env.name("d"), &["ssh"])]);
    env.run(&["--detailed-exitcode"]).expect_code(2);
    env.run(&["--detailed-exitcode"]).expect_code(0);
}

fn quiet_prints_nothing_when_converged(backend: Backend) {
    let env = TestEnv::on(backend, "quiet");
    env.write_state(&[env.decky(&env.name("d"), &["ssh"])]);
    let first = env.run(&["-q"]).expect_code(0);
    assert!(
        first.stdout.contains("inserted=1"),
        "changes still show: {}",
        first.stdout
    );
    let run = env.run(&["once", "-q"]).expect_code(0);
    assert_eq!(run.stdout, "");
    assert_eq!(run.stderr, "");
}

fn empty_host_uuid_is_refused(backend: Backend) {
    let env = TestEnv::on(backend, "emptyhost");
    env.seed_row("local", &env.name("d"), "running");
    let before = env.rows();
    let run = env.run(&["--host-uuid", ""]).expect_code(1);
    assert!(run.stderr.contains("--host-uuid"), "{}", run.stderr);
    assert_eq!(env.rows(), before);
    let run = support::Run::of(
        env.command()
            .env("DECNET_HOST_UUID", " ")
            .args(["--host-uuid", " "]),
    );
    assert_eq!(run.code, 1);
    assert_eq!(env.rows(), before);
}

fn environment_variables_configure_the_pass(backend: Backend) {
    let env = TestEnv::on(backend, "envvars");
    env.write_state(&[env.decky(&env.name("d"), &["ssh"])]);
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_decnet-reconcile"));
    match backend {
        Backend::Sqlite => command.env("DECNET_DB_PATH", &env.db),
        // DECNET's own variables and URL spelling, so one environment file serves both.
        Backend::MySql => command.env("DECNET_DB_TYPE", "mysql").env(
            "DECNET_DB_URL",
            env.mysql_url().replace("mysql://", "mysql+asyncmy://"),
        ),
    };
    command
        .env("DECNET_STATE_FILE", &env.state_file)
        .env("DECNET_HOST_UUID", "host-env")
        .env(
            "DOCKER_HOST",
            format!("unix://{}", env.dir.path().join("none.sock").display()),
        )
        .env(
            "DECNET_REDIS_URL",
            format!("redis://127.0.0.1:{}/0", support::closed_port()),
        )
        .args(["--output", "json", "--redis-timeout", "1"]);
    let run = support::Run::of(&mut command).expect_code(0);
    let report = run.json();
    assert_eq!(report["host_uuid"], "host-env");
    assert_eq!(report["docker"], "unknown", "DOCKER_HOST was read");
    assert_eq!(report["publish_failed"], 1, "DECNET_REDIS_URL was read");
    let rows = env.rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].host_uuid, "host-env");
}

fn usage_errors_exit_1_and_help_exits_0(backend: Backend) {
    let env = TestEnv::on(backend, "usage");
    let run = env.run(&["--no-such-flag"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let run = env.run(&["--docker-timeout", "soon"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let run = env.run(&["--help"]).expect_code(0);
    assert!(run.stdout.contains("--dry-run"));
    let run = env.run(&["--version"]).expect_code(0);
    assert!(run.stdout.starts_with("decnet-reconcile "));
}

fn db_created_by_decnet_is_used_as_is(backend: Backend) {
    let env = TestEnv::on(backend, "decnetdb");
    let (schema, other_tables) = match backend {
        Backend::Sqlite => (
            format!(
                "PRAGMA journal_mode=WAL; {}; \
                 CREATE INDEX ix_fleet_deckies_host_uuid ON fleet_deckies (host_uuid); \
                 CREATE INDEX ix_fleet_deckies_state ON fleet_deckies (state);",
                support::SCHEMA_IF_ABSENT.replace("IF NOT EXISTS ", "")
            ),
            "CREATE TABLE attackers (id INTEGER PRIMARY KEY, ip VARCHAR NOT NULL, first_seen DATETIME);",
        ),
        Backend::MySql => (
            format!("{};", support::MYSQL_SCHEMA.replace("IF NOT EXISTS ", "")),
            "CREATE TABLE attackers (id INTEGER PRIMARY KEY AUTO_INCREMENT, ip VARCHAR(64) NOT NULL, first_seen DATETIME);",
        ),
    };
    env.execute(&format!(
        "{schema} {other_tables} \
         INSERT INTO attackers (ip, first_seen) VALUES ('198.51.100.7', '2026-11-01 10:00:00'); \
         INSERT INTO attackers (ip, first_seen) VALUES ('203.0.113.9', '2026-11-02 11:00:00');"
    ));
    let before = env.dump("SELECT id, ip, first_seen FROM attackers ORDER BY id");
    let schema_before = env.schema();
    env.seed_row("local", &env.name("old"), "running");
    env.write_state(&[env.decky(&env.name("new"), &["ssh"])]);
    env.run(&[]).expect_code(0);
    assert_eq!(
        env.dump("SELECT id, ip, first_seen FROM attackers ORDER BY id"),
        before
    );
    assert_eq!(env.schema(), schema_before, "the schema changed");
    let names: Vec<String> = env.rows().into_iter().map(|r| r.name).collect();
    assert_eq!(names, [env.name("new")]);
}

on_both_backends!(
    aggregate_state_follows_the_containers,
    insert_writes_every_column_in_decnet_formats,
    rows_missing_from_the_state_file_are_deleted,
    state_update_sets_last_seen_with_updated_at,
    converged_pass_leaves_every_row_byte_identical,
    docker_socket_missing_means_unknown_not_gone,
    docker_socket_that_never_answers_times_out,
    peer_host_rows_survive,
    decky_of_another_host_is_skipped_on_every_pass,
    config_drift_is_repaired_and_shown_as_updated,
    missing_state_file_deletes_this_hosts_rows,
    dry_run_changes_nothing,
    detailed_exitcode_is_2_on_change_and_0_when_converged,
    quiet_prints_nothing_when_converged,
    empty_host_uuid_is_refused,
    environment_variables_configure_the_pass,
    usage_errors_exit_1_and_help_exits_0,
    db_created_by_decnet_is_used_as_is,
);
