//! The pass end to end (SPEC §2–§5, §9): the built binary against the real
//! test dockerd, with real containers, and DECNET's DB on both backends.

use std::os::unix::net::UnixListener;
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;

use crate::fixture::{
    closed_port, decky, docker_timed_out, docker_unknown, figure, finish, hanging_socket,
    line_matches, Backend, Container, Env,
};
use crate::on_every_backend;

/// SPEC §9's `decky_config` example, byte for byte.
const SPEC_DECKY_CONFIG: &str = r#"{"name":"ref-b","ip":"10.0.0.3","services":["smtp_relay","ftp"],"distro":"debian","base_image":"debian:bookworm-slim","build_base":"debian:bookworm-slim","hostname":"host-001","archetype":null,"service_config":{},"nmap_os":"linux","mutate_interval":null,"last_mutated":0.0,"last_login_attempt":0.0,"host_uuid":null}"#;

fn aggregate_state_follows_the_containers(backend: Backend) {
    let env = Env::on(backend);
    let (running, torn, failed, paused, degraded) = (
        env.name("run"),
        env.name("torn"),
        env.name("fail"),
        env.name("paused"),
        env.name("degr"),
    );
    env.test()
        .containers(&[
            (&format!("{running}-ssh"), Container::Running),
            (&format!("{running}-smtp-relay"), Container::Running),
            (&format!("{failed}-ssh"), Container::Exited),
            (&format!("{failed}-smtp-relay"), Container::Created),
            (&format!("{paused}-ssh"), Container::Paused),
            (&format!("{degraded}-ssh"), Container::Running),
        ])
        .state(&[
            decky(&running, &["ssh", "smtp_relay"]),
            decky(&torn, &["ssh", "smtp_relay"]),
            decky(&failed, &["ssh", "smtp_relay"]),
            decky(&paused, &["ssh"]),
            decky(&degraded, &["ssh", "smtp_relay"]),
        ])
        .stdout_ends_with("inserted=5 deleted=0 updated=0\n")
        .run();
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
    let env = Env::on(backend);
    env.test()
        .state(&[decky("ref-b", &["smtp_relay", "ftp"])])
        .stdout_lines([
            " ACTION …".to_owned(),
            format!(
                " inserted   {}   ref-b   10.0.0.3   smtp_relay,ftp   torn_down …",
                env.host
            ),
            "inserted=1 deleted=0 updated=0".to_owned(),
        ])
        .run();
    let rows = env.rows();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.host_uuid, env.host);
    assert_eq!(row.name, "ref-b");
    assert_eq!(row.services, r#"["smtp_relay","ftp"]"#);
    assert_eq!(row.decky_config.as_deref(), Some(SPEC_DECKY_CONFIG));
    assert_eq!(row.decky_ip.as_deref(), Some("10.0.0.3"));
    assert_eq!(row.state, "torn_down", "no ref-b containers exist");
    assert_eq!(row.last_error, None);
    assert_eq!(row.compose_hash, None);
    assert_eq!(row.last_seen, None);
    env.assert_datetime(&row.updated_at);
}

fn rows_missing_from_the_state_file_are_deleted(backend: Backend) {
    let env = Env::on(backend);
    let (kept, gone) = (env.name("kept"), env.name("gone"));
    env.test()
        .state(&[decky(&kept, &["ssh"])])
        .rows(&[(&gone, "running")])
        .stdout_lines([
            " ACTION …".to_owned(),
            format!(" inserted   {}   {kept} …", env.host),
            format!(" deleted    {}   {gone} …", env.host),
            "inserted=1 deleted=1 updated=0".to_owned(),
        ])
        .run();
    assert_eq!(env.names_of(&env.host), [kept]);
}

fn state_update_sets_last_seen_with_updated_at(backend: Backend) {
    let env = Env::on(backend);
    let name = env.name("d");
    env.test()
        .containers(&[(&format!("{name}-ssh"), Container::Running)])
        .state(&[decky(&name, &["ssh"])])
        .run();
    assert_eq!(env.row(&name).state, "running");

    env.stop_container(&format!("{name}-ssh"));
    env.test()
        .stdout_lines([
            " ACTION …".to_owned(),
            format!(" updated … {name} … running → failed   state …"),
            "inserted=0 deleted=0 updated=1".to_owned(),
        ])
        .run();
    let row = env.row(&name);
    assert_eq!(row.state, "failed");
    assert_eq!(row.last_seen.as_deref(), Some(row.updated_at.as_str()));
    env.assert_datetime(&row.updated_at);
}

fn converged_pass_leaves_every_row_byte_identical(backend: Backend) {
    let env = Env::on(backend);
    let name = env.name("d");
    env.test()
        .containers(&[(&format!("{name}-ssh"), Container::Running)])
        .state(&[decky(&name, &["ssh"]), decky(&env.name("e"), &["ftp"])])
        .run();
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
    env.test()
        .arg("--detailed-exitcode")
        .stdout("inserted=0 deleted=0 updated=0\n")
        .run();
    assert_eq!(env.rows(), before);
    assert_eq!(
        version(&connection),
        version_before,
        "another connection committed a write"
    );
}

fn docker_socket_missing_means_unknown_not_gone(backend: Backend) {
    let env = Env::on(backend);
    let (kept, new) = (env.name("kept"), env.name("new"));
    let missing = format!("unix://{}", env.dir.path().join("no-such.sock").display());
    let out = env
        .test()
        .rows(&[(&kept, "failed")])
        .state(&[decky(&kept, &["ssh"]), decky(&new, &["ssh"])])
        .args(["--docker-host", &missing, "--output", "json"])
        .stderr_lines([docker_unknown(&missing, "no such socket")])
        .run();
    assert_eq!(out.json()["docker"], "unknown");
    assert_eq!(env.row(&new).state, "running", "insert with Docker unknown");
    assert_eq!(
        env.row(&kept).state,
        "failed",
        "no state update with Docker unknown"
    );
}

fn docker_socket_that_never_answers_times_out(backend: Backend) {
    let env = Env::on(backend);
    let (kept, new) = (env.name("kept"), env.name("new"));
    let socket = hanging_socket(&env.dir.path().join("hang.sock"));
    let host = format!("unix://{}", socket.display());
    let out = env
        .test()
        .rows(&[(&kept, "failed")])
        .state(&[decky(&kept, &["ssh"]), decky(&new, &["ssh"])])
        .args(["--docker-host", &host, "--docker-timeout", "1"])
        .stderr_lines([docker_timed_out(&host)])
        .run();
    figure("docker_hung_pass_ms", out.elapsed.as_millis());
    assert_eq!(env.row(&new).state, "running");
    assert_eq!(env.row(&kept).state, "failed");
}

/// A deploy that writes the state file while a pass waits (for Docker here;
/// for the DB's lock alike) starts no pass of its own under the path unit:
/// systemd merges its trigger into the running one. So the pass looks at the
/// file again once it holds the lock, and writes what it says now.
#[test]
fn a_state_file_written_during_the_pass_is_read_again_before_writing() {
    let env = Env::new();
    let (first, second) = (env.name("first"), env.name("second"));
    // A Docker that says when it is asked (after the state file was read),
    // then never answers, so the pass waits its --docker-timeout.
    let socket = env.dir.path().join("docker.sock");
    let listener = UnixListener::bind(&socket).expect("bind");
    let (asked, was_asked) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
            let _ = asked.send(());
        }
    });
    let docker = format!("unix://{}", socket.display());
    env.write_state(&[decky(&first, &["ssh"])]);
    let pass = env
        .test()
        .args(["--docker-host", &docker, "--docker-timeout", "1"])
        .command()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the pass");
    was_asked
        .recv_timeout(Duration::from_secs(30))
        .expect("the pass asks Docker");
    env.write_state(&[decky(&first, &["ssh"]), decky(&second, &["ssh"])]);
    let run = finish(pass).expect_status(0);
    assert!(
        line_matches(run.stderr.trim_end(), &docker_timed_out(&docker)),
        "{}",
        run.stderr
    );
    assert_eq!(env.names_of(&env.host), [first, second]);
    assert!(run
        .stdout
        .ends_with("inserted=2 deleted=0 updated=0 docker=unknown\n"));
}

fn peer_host_rows_survive(backend: Backend) {
    let env = Env::on(backend);
    env.seed_row("host-b", &env.name("d"), "running");
    env.seed_row("host-b", &env.name("other"), "failed");
    let peers = |env: &Env| -> Vec<_> {
        env.rows()
            .into_iter()
            .filter(|r| r.host_uuid == "host-b")
            .collect()
    };
    let before = peers(&env);
    env.test()
        .state(&[decky(&env.name("mine"), &["ssh"])])
        .run();
    std::fs::remove_file(&env.state_file).expect("remove state file");
    env.test()
        .stdout_ends_with("inserted=0 deleted=1 updated=0\n")
        .run();
    assert_eq!(peers(&env), before);
    assert_eq!(before.len(), 2);
}

fn decky_of_another_host_is_skipped_on_every_pass(backend: Backend) {
    let env = Env::on(backend);
    let mut foreign = decky(&env.name("f"), &["ssh"]);
    foreign["host_uuid"] = json!("host-b");
    env.write_state(&[foreign, decky(&env.name("mine"), &["ssh"])]);
    for _ in 0..2 {
        let out = env
            .test()
            .args(["--output", "json"])
            .stderr(format!(
                " INFO decky \"{}\" belongs to host \"host-b\": skipped\n",
                env.name("f")
            ))
            .run();
        assert_eq!(out.json()["skipped"][0]["name"], env.name("f"));
        assert_eq!(out.json()["skipped"][0]["host_uuid"], "host-b");
        assert_eq!(env.names_of(&env.host), [env.name("mine")]);
    }
}

fn config_drift_is_repaired_and_shown_as_updated(backend: Backend) {
    let env = Env::on(backend);
    let name = env.name("d");
    env.test().state(&[decky(&name, &["ssh"])]).run();
    let first = env.row(&name);
    env.execute(&format!(
        "UPDATE fleet_deckies SET decky_ip = '10.9.9.9', decky_config = '{{}}', updated_at = '2026-01-01 00:00:00' \
         WHERE name = '{name}'"
    ));
    let out = env.test().args(["--output", "json"]).run();
    let repaired = env.row(&name);
    assert_eq!(repaired.decky_ip, first.decky_ip);
    assert_eq!(repaired.decky_config, first.decky_config);
    assert_eq!(
        repaired.last_seen, first.last_seen,
        "a config repair leaves last_seen"
    );
    assert_ne!(repaired.updated_at, "2026-01-01 00:00:00");
    env.assert_datetime(&repaired.updated_at);
    let change = &out.json()["changes"][0];
    assert_eq!(change["action"], "updated");
    assert_eq!(
        change["changed_fields"],
        json!(["decky_ip", "decky_config"])
    );
}

fn missing_state_file_deletes_this_hosts_rows(backend: Backend) {
    let env = Env::on(backend);
    env.test()
        .rows(&[(&env.name("a"), "running"), (&env.name("b"), "failed")])
        .stdout_ends_with("inserted=0 deleted=2 updated=0\n")
        .run();
    assert!(env.rows().is_empty());
}

fn dry_run_changes_nothing(backend: Backend) {
    let env = Env::on(backend);
    // On SQLite every byte of the DB files; on MySQL every byte of every row.
    let before = env
        .test()
        .rows(&[(&env.name("gone"), "running")])
        .state(&[decky(&env.name("new"), &["ssh"])])
        .env()
        .db_snapshot();
    env.test()
        .args(["--dry-run", "--detailed-exitcode"])
        .status(2)
        .stdout_ends_with("inserted=1 deleted=1 updated=0 (dry run)\n")
        .run();
    assert_eq!(env.db_snapshot(), before, "the DB changed");

    // Without DECNET's DB (or its table), a dry run refuses it as a pass
    // would; with --create-table (a DB DECNET never manages) it previews the
    // inserts into an empty table. Neither creates anything.
    let absent = Env::on(backend).without_db();
    absent
        .test()
        .state(&[decky(&absent.name("new"), &["ssh"])])
        .arg("--dry-run")
        .status(1)
        .stderr(no_decnet_db(&absent))
        .run();
    absent
        .test()
        .args(["--dry-run", "--create-table"])
        .stdout_ends_with("inserted=1 deleted=0 updated=0 (dry run)\n")
        .run();
    assert!(
        !absent.table_exists(),
        "a dry run created the DB or its table"
    );
}

/// The refusal of a pass on `env` without DECNET's DB (SQLite) or table (MySQL).
fn no_decnet_db(env: &Env) -> String {
    let advice =
        "DECNET creates it on its first start (any DECNET service, e.g. `decnet api`), and \
                  cannot start on a database made by anyone else, so nothing was created; start \
                  DECNET once, or point --db at DECNET's database. For a database DECNET never \
                  manages, --create-table creates it";
    match env.backend {
        Backend::Sqlite => format!(
            "decnet-reconcile: error: database {} does not exist: {advice}\n",
            env.db.display()
        ),
        Backend::MySql | Backend::MySqlTls => format!(
            "decnet-reconcile: error: database {} has no table fleet_deckies: DECNET creates its \
             tables on its first start (any DECNET service, e.g. `decnet api`), and cannot start \
             on a table made by anyone else, so nothing was created; start DECNET once, or point \
             --db (DECNET_DB_*) at DECNET's database. For a database DECNET never manages, \
             --create-table creates the table\n",
            // The password is the user's name too: both are masked; TLS
            // parameters are not part of the database's name.
            env.mysql_url()
                .split('?')
                .next()
                .unwrap_or_default()
                .replace("decnet_test:decnet_test@", "***:***@")
        ),
    }
}

/// DECNET's schema is DECNET's (SPEC §3.2): a pass on an absent DB, or on a DB
/// without `fleet_deckies`, exits 1 and creates nothing, not even an empty file;
/// `--create-table` creates them, for a DB DECNET never manages.
fn a_db_without_decnets_table_is_refused_and_nothing_is_created(backend: Backend) {
    let env = Env::on(backend).without_db();
    let name = env.name("d");
    env.test()
        .state(&[decky(&name, &["ssh"])])
        .status(1)
        .stderr(no_decnet_db(&env))
        .run();
    assert!(!env.table_exists(), "the pass created DECNET's table");
    if backend == Backend::Sqlite {
        let left: Vec<_> = std::fs::read_dir(env.dir.path())
            .expect("dir")
            .map(|entry| entry.expect("entry").file_name())
            .filter(|name| name.to_string_lossy().starts_with("decnet.db"))
            .collect();
        assert!(left.is_empty(), "the pass left {left:?}");
        // A file that is there but holds another schema is refused the same way.
        let other = rusqlite::Connection::open(&env.db).expect("create");
        other
            .execute_batch("CREATE TABLE unrelated (x)")
            .expect("table");
        drop(other);
        let before = std::fs::read(&env.db).expect("read");
        env.test()
            .status(1)
            .stderr(format!(
                "decnet-reconcile: error: database {} has no table fleet_deckies: DECNET creates \
                 its tables on its first start (any DECNET service, e.g. `decnet api`), and cannot \
                 start on a table made by anyone else, so nothing was created; start DECNET once, \
                 or point --db (DECNET_DB_*) at DECNET's database. For a database DECNET never \
                 manages, --create-table creates the table\n",
                env.db.display()
            ))
            .run();
        assert!(
            std::fs::read(&env.db).expect("read") == before,
            "the refused pass changed the DB file"
        );
        env.remove_db();
    }
    env.test()
        .arg("--create-table")
        .stdout_ends_with("inserted=1 deleted=0 updated=0\n")
        .run();
    assert_eq!(env.names_of(&env.host), [name]);
    env.test().stdout("inserted=0 deleted=0 updated=0\n").run();
}

fn detailed_exitcode_is_2_on_change_and_0_when_converged(backend: Backend) {
    let env = Env::on(backend);
    env.test()
        .state(&[decky(&env.name("d"), &["ssh"])])
        .arg("--detailed-exitcode")
        .status(2)
        .run();
    env.test().arg("--detailed-exitcode").run();
}

fn quiet_prints_nothing_when_converged(backend: Backend) {
    let env = Env::on(backend);
    env.test()
        .state(&[decky(&env.name("d"), &["ssh"])])
        .arg("-q")
        .stdout_ends_with("inserted=1 deleted=0 updated=0\n")
        .run();
    env.test().args(["once", "-q"]).stdout("").run();
}

fn empty_host_uuid_is_refused(backend: Backend) {
    let env = Env::on(backend);
    let before = env.test().rows(&[(&env.name("d"), "running")]).env().rows();
    env.test()
        .args(["--host-uuid", ""])
        .status(1)
        .stderr("decnet-reconcile: error: --host-uuid must not be empty\n")
        .run();
    assert_eq!(env.rows(), before);
    // A typed id outranks the variable, so the refusal names the option.
    env.test()
        .env_var("DECNET_HOST_UUID", " ")
        .args(["--host-uuid", " "])
        .status(1)
        .stderr("decnet-reconcile: error: --host-uuid must not be empty\n")
        .run();
    assert_eq!(env.rows(), before);
}

fn environment_variables_configure_the_pass(backend: Backend) {
    let env = Env::on(backend);
    let docker = format!("unix://{}", env.dir.path().join("none.sock").display());
    let redis = format!("redis://127.0.0.1:{}/0", closed_port());
    let test = env
        .test()
        .state(&[decky(&env.name("d"), &["ssh"])])
        .without("--state-file")
        .without("--db")
        .without("--host-uuid")
        .without("--docker-host")
        .bus_by_environment()
        .env_var("DECNET_STATE_FILE", &env.state_file)
        .env_var("DECNET_HOST_UUID", "host-env")
        .env_var("DOCKER_HOST", &docker)
        .env_var("DECNET_REDIS_URL", &redis);
    let test = match backend {
        Backend::Sqlite => test.env_var("DECNET_DB_PATH", &env.db),
        // DECNET's own variables and URL spelling, so one environment file serves both.
        Backend::MySql | Backend::MySqlTls => test.env_var("DECNET_DB_TYPE", "mysql").env_var(
            "DECNET_DB_URL",
            env.mysql_url().replace("mysql://", "mysql+asyncmy://"),
        ),
    };
    let out = test
        .args(["--output", "json", "--redis-timeout", "1"])
        .stderr_lines([
            docker_unknown(&docker, "no such socket"),
            format!(
                " WARN Redis at {redis} failed (connection refused): \
                 1 event(s) lost; the database is converged all the same"
            ),
        ])
        .run();
    let report = out.json();
    assert_eq!(report["host_uuid"], "host-env");
    assert_eq!(report["docker"], "unknown", "DOCKER_HOST was read");
    assert_eq!(report["publish_failed"], 1, "DECNET_REDIS_URL was read");
    let rows = env.rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].host_uuid, "host-env");
}

fn usage_errors_exit_1_and_help_exits_0(backend: Backend) {
    let env = Env::on(backend);
    env.test()
        .arg("--no-such-flag")
        .status(1)
        .stderr_lines([
            "error: unexpected argument '--no-such-flag' found",
            "",
            "Usage: decnet-reconcile …",
            "",
            "For more information, try '--help'.",
        ])
        .run();
    env.test()
        .args(["--docker-timeout", "soon"])
        .status(1)
        .stderr_lines([
            "error: invalid value 'soon' for '--docker-timeout <SECS>': \"soon\" is not a number of seconds",
            "",
            "For more information, try '--help'.",
        ])
        .run();
    let help = env.test().arg("--help").run();
    assert!(help.stdout.contains("--dry-run"), "{}", help.stdout);
    env.test()
        .arg("--version")
        .stdout(format!("decnet-reconcile {}\n", env!("CARGO_PKG_VERSION")))
        .run();
}

fn db_created_by_decnet_is_used_as_is(backend: Backend) {
    let env = Env::on(backend);
    let other_table = match backend {
        Backend::Sqlite => {
            "CREATE TABLE attackers (id INTEGER PRIMARY KEY, ip VARCHAR NOT NULL, first_seen DATETIME);"
        }
        Backend::MySql | Backend::MySqlTls => {
            "CREATE TABLE attackers (id INTEGER PRIMARY KEY AUTO_INCREMENT, ip VARCHAR(64) NOT NULL, first_seen DATETIME);"
        }
    };
    env.execute(&format!(
        "{other_table} \
         INSERT INTO attackers (ip, first_seen) VALUES ('198.51.100.7', '2026-11-01 10:00:00'); \
         INSERT INTO attackers (ip, first_seen) VALUES ('203.0.113.9', '2026-11-02 11:00:00');"
    ));
    let before = env.dump("SELECT id, ip, first_seen FROM attackers ORDER BY id");
    let schema_before = env.schema();
    env.test()
        .rows(&[(&env.name("old"), "running")])
        .state(&[decky(&env.name("new"), &["ssh"])])
        .run();
    assert_eq!(
        env.dump("SELECT id, ip, first_seen FROM attackers ORDER BY id"),
        before
    );
    assert_eq!(env.schema(), schema_before, "the schema changed");
    assert_eq!(env.names_of(&env.host), [env.name("new")]);
}

on_every_backend!(
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
    a_db_without_decnets_table_is_refused_and_nothing_is_created,
    detailed_exitcode_is_2_on_change_and_0_when_converged,
    quiet_prints_nothing_when_converged,
    empty_host_uuid_is_refused,
    environment_variables_configure_the_pass,
    usage_errors_exit_1_and_help_exits_0,
    db_created_by_decnet_is_used_as_is,
);
