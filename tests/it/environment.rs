//! Odd but legal environments: a stderr that cannot be written, variables set
//! to the empty string, a user who may read the DB but not write its
//! directory, `--db` names SQLite would read as URIs, DECNET's MySQL URLs.

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use crate::fixture::{
    command_line, create_decnet_sqlite, decky, docker_unknown, finish, run, sqlite_rows, tool, Env,
    Hub, Test,
};

/// A pass with work to do and something to log: one decky to insert, Docker
/// unreachable (a warning), `-vv` (every log line there is).
fn noisy_pass(env: &Env) -> Test<'_> {
    env.test().state(&[decky(&env.name("d"), &["ssh"])]).args([
        "--docker-host",
        "unix:///nonexistent.sock",
        "-vv",
    ])
}

fn dev_full() -> File {
    File::options()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full")
}

#[test]
fn a_full_stderr_does_not_stop_the_pass() {
    let env = Env::new();
    noisy_pass(&env)
        .stderr_to(dev_full())
        .stdout_ends_with("inserted=1 deleted=0 updated=0 docker=unknown\n")
        .run();
    assert_eq!(env.rows().len(), 1, "the pass wrote its row");
    // An error, too, is reported by its exit code alone.
    env.test()
        .args(["--db-busy-timeout", "nope"])
        .stderr_to(dev_full())
        .status(1)
        .run();
}

#[test]
fn a_stderr_pipe_closed_by_its_reader_does_not_stop_the_pass() {
    let env = Env::new();
    // Driven by hand: the test closes the reading end of stderr itself.
    let mut child = noisy_pass(&env)
        .command()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stderr.take());
    let run = finish(child).expect_status(0);
    assert!(run
        .stdout
        .ends_with("inserted=1 deleted=0 updated=0 docker=unknown\n"));
    assert_eq!(env.rows().len(), 1);
}

#[test]
fn a_closed_stderr_does_not_stop_the_pass() {
    let env = Env::new();
    noisy_pass(&env)
        .wrapped_in(["sh", "-c", r#"exec "$0" "$@" 2>&-"#])
        .stdout_ends_with("inserted=1 deleted=0 updated=0 docker=unknown\n")
        .run();
    assert_eq!(env.rows().len(), 1);
}

#[test]
fn empty_variables_count_as_unset() {
    let env = Env::new();
    env.write_state(&[decky(&env.name("d"), &["ssh"])]);
    // Each variable without its option, so that the variable is what is read;
    // dry runs, so that the defaults' real paths are never written. Whatever
    // the unset variable gives, the empty one must give the same: the two
    // runs are compared, not held to an expectation of their own.
    for (var, option) in [
        ("DECNET_STATE_FILE", "--state-file"),
        ("DECNET_DB_PATH", "--db"),
        ("DOCKER_HOST", "--docker-host"),
    ] {
        let pass = || env.test().without(option).arg("--dry-run");
        let unset = run(&mut pass().command());
        let empty = run(&mut pass().env_var(var, "").command());
        assert!(
            !empty.stderr.contains("a value is required"),
            "{var}: {}",
            empty.stderr
        );
        assert_eq!(
            (empty.status, &empty.stdout, &empty.stderr),
            (unset.status, &unset.stdout, &unset.stderr),
            "{var}= is not read as unset"
        );
    }
    // DOCKER_HOST= is the default socket: Docker is known.
    let out = env
        .test()
        .without("--docker-host")
        .env_var("DOCKER_HOST", "")
        .args(["--dry-run", "--output", "json"])
        .run();
    assert_eq!(out.json()["docker"], "ok");
    // DECNET_REDIS_URL= is no Redis: DECNET's bus is used, as with the variable unset.
    let hub = Hub::start(env.dir.path());
    let name = env.name("d");
    let out = env
        .test()
        .bus_by_environment()
        .watch(&hub)
        .env_var("DECNET_REDIS_URL", "")
        .env_var("DECNET_BUS_SOCKET", &hub.socket)
        .args(["--bus-timeout", "5", "--output", "json"])
        .events([(&name, "inserted")])
        .run();
    assert_eq!(out.json()["published"], 1);
}

#[test]
fn an_empty_host_uuid_variable_is_refused_by_its_name() {
    let env = Env::new();
    env.write_state(&[decky(&env.name("d"), &["ssh"])]);
    let before = env.db_snapshot();
    let pass = || {
        env.test()
            .without("--host-uuid")
            .env_var("DECNET_HOST_UUID", "")
    };
    pass()
        .status(1)
        .stderr(
            "decnet-reconcile: error: DECNET_HOST_UUID is set but empty: \
             set it to this host's id, or unset it for \"local\"\n",
        )
        .run();
    assert_eq!(env.db_snapshot(), before, "nothing was written");
    // A typed id outranks the empty variable.
    pass().args(["--host-uuid", "h1"]).run();
    assert_eq!(env.names_of("h1"), [env.name("d")]);
}

/// The files beside a SQLite DB.
fn sidecars(db: &std::path::Path) -> Vec<String> {
    ["-wal", "-shm", "-journal"]
        .iter()
        .map(|suffix| format!("{}{suffix}", db.display()))
        .filter(|path| std::path::Path::new(path).exists())
        .collect()
}

/// A WAL database with one row, in a directory only root may write.
fn read_only_dir_db() -> Env {
    let env = Env::new();
    env.test().state(&[decky(&env.name("d"), &["ssh"])]).run();
    assert_eq!(
        env.dump("PRAGMA journal_mode"),
        ["Text(\"wal\")"],
        "DECNET's databases are WAL"
    );
    assert!(sidecars(&env.db).is_empty(), "closed cleanly");
    env.write_state(&[
        decky(&env.name("d"), &["ssh"]),
        decky(&env.name("e"), &["ftp"]),
    ]);
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    env
}

/// A dry run as the unprivileged user nobody, who may not read Docker's socket.
fn dry_run_as_nobody(env: &Env) -> Test<'_> {
    env.test()
        .by_nobody()
        .args(["--dry-run", "--output", "json"])
        .stderr_lines([docker_unknown(
            "unix:///var/run/docker.sock",
            "permission denied",
        )])
}

#[test]
fn a_dry_run_needs_no_write_access_and_leaves_no_wal_behind() {
    let env = read_only_dir_db();
    let before = env.rows();
    let report = dry_run_as_nobody(&env).run().json();
    assert_eq!(
        report["changes"].as_array().map(Vec::len),
        Some(1),
        "{report}"
    );
    assert_eq!(report["changes"][0]["name"], env.name("e"));
    assert!(sidecars(&env.db).is_empty(), "{:?}", sidecars(&env.db));
    // Root, who could create them, leaves none either.
    env.test().args(["--dry-run", "--output", "json"]).run();
    assert!(sidecars(&env.db).is_empty(), "{:?}", sidecars(&env.db));
    assert_eq!(env.rows(), before);
}

#[test]
fn a_dry_run_reads_what_a_live_writer_has_not_checkpointed() {
    let env = read_only_dir_db();
    // Another process holds the DB open in WAL mode with a row not yet checkpointed.
    let writer = env.connect();
    writer
        .execute_batch("PRAGMA wal_autocheckpoint = 0; DELETE FROM fleet_deckies;")
        .expect("write");
    assert!(
        !sidecars(&env.db).is_empty(),
        "the writer has its -wal and -shm"
    );
    let by_nobody = dry_run_as_nobody(&env).run().json();
    let by_root = env
        .test()
        .args(["--dry-run", "--output", "json"])
        .run()
        .json();
    for (who, report) in [("nobody", by_nobody), ("root", by_root)] {
        assert_eq!(
            report["changes"].as_array().map(Vec::len),
            Some(2),
            "{who} sees the writer's delete: {report}"
        );
    }
    drop(writer);
}

#[test]
fn db_names_sqlite_would_read_as_uris_are_files_of_that_name() {
    let env = Env::new();
    env.write_state(&[decky(&env.name("d"), &["ssh"])]);
    for name in [
        ":memory:",
        "file:x.db?mode=memory",
        "file::memory:?cache=shared",
    ] {
        // DECNET's DB under that name: a pass that read the name as a URI
        // would find no table there, and its row would not be in the file.
        let file = env.dir.path().join(name);
        create_decnet_sqlite(&file);
        let pass = || {
            env.test()
                .context(name)
                .current_dir(env.dir.path())
                .args(["--db", name])
        };
        pass()
            .stdout_ends_with("inserted=1 deleted=0 updated=0\n")
            .run();
        assert_eq!(sqlite_rows(&file).len(), 1, "{name} is a real file");
        pass()
            .stdout_ends_with("inserted=0 deleted=0 updated=0\n")
            .run();
    }
}

#[test]
fn decnet_mysql_urls_with_charset_work_on_mariadb() {
    let env = Env::mysql();
    let url = env.mysql_url().replacen("mysql://", "mysql+asyncmy://", 1) + "?charset=utf8mb4";
    env.test()
        .state(&[decky(&env.name("d"), &["ssh"])])
        .args(["--db", &url])
        .stdout_ends_with("inserted=1 deleted=0 updated=0\n")
        .run();
    assert_eq!(env.rows().len(), 1);
    // mysqlclient's ssl_mode, which SQLAlchemy passes on: this server offers no TLS.
    env.test()
        .args(["--db", &format!("{url}&ssl_mode=REQUIRED")])
        .status(1)
        .stderr(format!(
            "decnet-reconcile: error: cannot connect to database mysql://***:***@127.0.0.1:3306/{}: \
             the server offers no TLS, and ssl-mode=REQUIRED requires it; nothing was written\n",
            env.mysql_database
        ))
        .run();
}

/// Every option with a variable, given through its variable a value clap
/// refuses, is refused naming the variable, never the option: the variable is
/// what the operator set (a unit's Environment=, an environment file). Driven
/// by the command line's own definition, so a new option is covered as it is
/// added: a value that is not UTF-8 for every option that takes text, and
/// `maybe` for every on/off switch.
#[test]
fn every_variable_given_a_value_clap_refuses_is_named_not_its_option() {
    use std::any::TypeId;
    use std::ffi::{OsStr, OsString};
    use std::os::unix::ffi::OsStrExt;
    use std::path::PathBuf;

    let command = command_line();
    let mut covered = Vec::new();
    for arg in command.get_arguments() {
        let (Some(variable), Some(long)) = (arg.get_env(), arg.get_long()) else {
            continue;
        };
        let variable = variable.to_string_lossy().into_owned();
        let parses = arg.get_value_parser().type_id();
        let mut bad: Vec<&OsStr> = Vec::new();
        if ![TypeId::of::<PathBuf>(), TypeId::of::<OsString>()]
            .iter()
            .any(|id| parses == *id)
        {
            bad.push(OsStr::from_bytes(b"not-\xff-text"));
        }
        if parses == TypeId::of::<bool>() {
            bad.push(OsStr::new("maybe"));
        }
        for value in bad {
            let out = run(tool().env(&variable, value).arg("--dry-run")).expect_status(1);
            assert_eq!(out.stdout, "", "{variable}={value:?}");
            let lines: Vec<&str> = out.stderr.lines().collect();
            assert!(
                lines.len() == 1
                    && lines[0].starts_with(&format!("decnet-reconcile: error: {variable}: ")),
                "{variable}={value:?} is not named by its variable:\n{}",
                out.stderr
            );
            assert!(
                !out.stderr.contains(&format!("--{long}")),
                "{variable}={value:?} is named by --{long}:\n{}",
                out.stderr
            );
            covered.push(format!("{variable}={value:?}"));
        }
    }
    eprintln!("refused by their variables' names: {}", covered.join(", "));
    for must in [
        "DECNET_RECONCILE_HEARTBEAT=\"maybe\"",
        "DECNET_HOST_UUID=",
        "DOCKER_HOST=",
    ] {
        assert!(
            covered.iter().any(|case| case.starts_with(must)),
            "{must} not covered: {covered:?}"
        );
    }
}

/// Every option that takes seconds (`--docker-timeout`, `--bus-timeout` and
/// its old name, `--db-busy-timeout`, and any added later) refuses a bound
/// below a millisecond (`1e-300` was taken as 0 ns) or above a day, by name;
/// none has a variable, so the command line is the one way in.
#[test]
fn every_timeout_refuses_a_value_below_its_floor_by_name() {
    let command = command_line();
    let mut names: Vec<String> = Vec::new();
    for arg in command.get_arguments() {
        if arg
            .get_value_names()
            .is_some_and(|names| names.iter().any(|n| n == "SECS"))
        {
            assert!(
                arg.get_env().is_none(),
                "{:?} has a variable: test it too",
                arg.get_id()
            );
            let long = arg.get_long().expect("a long name");
            names.push(long.to_owned());
            names.extend(
                arg.get_all_aliases()
                    .into_iter()
                    .flatten()
                    .map(str::to_owned),
            );
        }
    }
    assert!(names.len() >= 4, "{names:?}");
    let env = Env::new();
    env.write_state(&[decky(&env.name("d"), &["ssh"])]);
    for name in &names {
        for bad in ["1e-300", "0", "0.0009", "-1", "NaN", "inf", "86400.5"] {
            let out = run(tool().arg(format!("--{name}={bad}")).arg("--dry-run")).expect_status(1);
            assert!(
                out.stderr
                    .contains(&format!("invalid value '{bad}' for '--"))
                    && out.stderr.contains("-timeout <SECS>'")
                    && (out
                        .stderr
                        .contains("must be at least 0.001 and at most 86400 seconds")
                        || out.stderr.contains("is not a number of seconds")),
                "--{name}={bad}:\n{}",
                out.stderr
            );
        }
        // The floor itself is a bound.
        env.test()
            .arg(format!("--{name}=0.001"))
            .args(["--dry-run", "--docker-host", &env.dead_docker()])
            .stderr_lines(["…WARN Docker at … is unreachable…"])
            .run();
    }
}
