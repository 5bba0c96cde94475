//! Odd but legal environments: a stderr that cannot be written, variables set
//! to the empty string, a user who may read the DB but not write its
//! directory, `--db` names SQLite would read as URIs, DECNET's MySQL URLs.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use support::{Backend, Run, TestEnv, REDIS_URL};

/// A pass with work to do and something to log: one decky to insert, Docker
/// unreachable (a warning), `-vv` (every log line there is).
fn noisy_pass(test: &str) -> (TestEnv, Command) {
    let env = TestEnv::new(test);
    env.write_state(&[env.decky(&env.name("d"), &["ssh"])]);
    let mut command = env.command();
    command.args(["--docker-host", "unix:///nonexistent.sock", "-vv"]);
    (env, command)
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| panic!("killed by signal {:?}", status.signal()))
}

#[test]
fn a_full_stderr_does_not_stop_the_pass() {
    let (env, mut command) = noisy_pass("stderr-full");
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let output = command.stderr(full).output().expect("run");
    assert_eq!(exit_code(output.status), 0);
    assert!(String::from_utf8_lossy(&output.stdout).contains("inserted=1"));
    assert_eq!(env.rows().len(), 1, "the pass wrote its row");
    // An error, too, is reported by its exit code alone.
    let full = std::fs::File::options().write(true).open("/dev/full");
    let status = env
        .command()
        .args(["--db-busy-timeout", "nope"])
        .stderr(full.expect("/dev/full"))
        .status()
        .expect("run");
    assert_eq!(exit_code(status), 1);
}

#[test]
fn a_stderr_pipe_closed_by_its_reader_does_not_stop_the_pass() {
    let (env, mut command) = noisy_pass("stderr-epipe");
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stderr.take());
    let output = child.wait_with_output().expect("wait");
    assert_eq!(exit_code(output.status), 0);
    assert!(String::from_utf8_lossy(&output.stdout).contains("inserted=1"));
    assert_eq!(env.rows().len(), 1);
}

#[test]
fn a_closed_stderr_does_not_stop_the_pass() {
    let (env, command) = noisy_pass("stderr-closed");
    let mut shell = Command::new("sh");
    shell
        .arg("-c")
        .arg(r#"exec "$0" "$@" 2>&-"#)
        .arg(command.get_program())
        .args(command.get_args());
    for (name, value) in command.get_envs() {
        match value {
            Some(value) => shell.env(name, value),
            None => shell.env_remove(name),
        };
    }
    let output = shell.output().expect("run");
    assert_eq!(exit_code(output.status), 0, "{output:?}");
    assert_eq!(env.rows().len(), 1);
    assert!(env.db.exists());
}

#[test]
fn empty_variables_count_as_unset() {
    let env = TestEnv::new("empty-vars");
    env.write_state(&[env.decky(&env.name("d"), &["ssh"])]);
    // Each variable without its option, so that the variable is what is read;
    // dry runs, so that the defaults' real paths are never written.
    let bare = |command: &mut Command, option: &str| {
        let args: Vec<_> = command.get_args().map(ToOwned::to_owned).collect();
        let mut kept = Command::new(command.get_program());
        let mut skip = false;
        for arg in args {
            if skip {
                skip = false;
            } else if arg == option {
                skip = true;
            } else {
                kept.arg(arg);
            }
        }
        kept.env_clear();
        kept
    };
    for (var, option) in [
        ("DECNET_STATE_FILE", "--state-file"),
        ("DECNET_DB_PATH", "--db"),
        ("DOCKER_HOST", "--docker-host"),
    ] {
        let unset = Run::of(bare(&mut env.command(), option).arg("--dry-run"));
        let empty = Run::of(
            bare(&mut env.command(), option)
                .arg("--dry-run")
                .env(var, ""),
        );
        assert!(
            !empty.stderr.contains("a value is required"),
            "{var}: {}",
            empty.stderr
        );
        assert_eq!(
            (empty.code, &empty.stdout, &empty.stderr),
            (unset.code, &unset.stdout, &unset.stderr),
            "{var}= is not read as unset"
        );
    }
    // DOCKER_HOST= is the default socket: Docker is known.
    let run = Run::of(
        bare(&mut env.command(), "--docker-host")
            .args(["--dry-run", "--output", "json"])
            .env("DOCKER_HOST", ""),
    )
    .expect_code(0);
    assert_eq!(run.json()["docker"], "ok", "{}", run.stderr);
    // DECNET_REDIS_URL= is the default Redis: the event is published.
    let mut env = TestEnv::new("empty-redis");
    env.host = format!("host-{}", env.prefix);
    env.write_state(&[env.decky(&env.name("d"), &["ssh"])]);
    let mut command = bare(&mut env.command_publishing_to(REDIS_URL), "--redis-url");
    command.args(["--output", "json"]);
    let run = Run::of(command.env("DECNET_REDIS_URL", "")).expect_code(0);
    assert_eq!(run.json()["published"], 1, "{}", run.stderr);
}

#[test]
fn an_empty_host_uuid_variable_is_refused_by_its_name() {
    let env = TestEnv::new("empty-host");
    env.write_state(&[env.decky(&env.name("d"), &["ssh"])]);
    let mut command = Command::new(env!("CARGO_BIN_EXE_decnet-reconcile"));
    command
        .env_clear()
        .env("DECNET_HOST_UUID", "")
        .arg("--state-file")
        .arg(&env.state_file)
        .args(["--db", &env.db_arg(), "--no-publish"]);
    let run = Run::of(&mut command).expect_code(1);
    assert!(run.stderr.contains("DECNET_HOST_UUID"), "{}", run.stderr);
    assert!(!run.stderr.contains("--host-uuid"), "{}", run.stderr);
    assert!(!env.db.exists(), "nothing was written");
    // A typed id outranks the empty variable.
    Run::of(command.args(["--host-uuid", "h1"])).expect_code(0);
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
fn read_only_dir_db(test: &str) -> TestEnv {
    let env = TestEnv::new(test);
    env.write_state(&[env.decky(&env.name("d"), &["ssh"])]);
    env.run(&[]).expect_code(0);
    assert_eq!(
        env.dump("PRAGMA journal_mode"),
        ["Text(\"wal\")"],
        "DECNET's databases are WAL"
    );
    assert!(sidecars(&env.db).is_empty(), "closed cleanly");
    env.write_state(&[
        env.decky(&env.name("d"), &["ssh"]),
        env.decky(&env.name("e"), &["ftp"]),
    ]);
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    env
}

/// `command` as the unprivileged user nobody.
fn as_nobody(command: &Command) -> Command {
    let mut nobody = Command::new("setpriv");
    nobody
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(command.get_program())
        .args(command.get_args());
    nobody
}

#[test]
fn a_dry_run_needs_no_write_access_and_leaves_no_wal_behind() {
    let env = read_only_dir_db("dry-nobody");
    let before = env.rows();
    let mut command = env.command();
    command.args(["--dry-run", "--output", "json"]);
    let run = Run::of(&mut as_nobody(&command)).expect_code(0);
    let report = run.json();
    assert_eq!(
        report["changes"].as_array().map(Vec::len),
        Some(1),
        "{report}"
    );
    assert_eq!(report["changes"][0]["name"], env.name("e"));
    assert!(sidecars(&env.db).is_empty(), "{:?}", sidecars(&env.db));
    // Root, who could create them, leaves none either.
    Run::of(&mut command).expect_code(0);
    assert!(sidecars(&env.db).is_empty(), "{:?}", sidecars(&env.db));
    assert_eq!(env.rows(), before);
}

#[test]
fn a_dry_run_reads_what_a_live_writer_has_not_checkpointed() {
    let env = read_only_dir_db("dry-live-writer");
    // Another process holds the DB open in WAL mode with a row not yet checkpointed.
    let writer = env.connect();
    writer
        .execute_batch("PRAGMA wal_autocheckpoint = 0; DELETE FROM fleet_deckies;")
        .expect("write");
    assert!(
        !sidecars(&env.db).is_empty(),
        "the writer has its -wal and -shm"
    );
    let mut command = env.command();
    command.args(["--dry-run", "--output", "json"]);
    for (who, mut command) in [("nobody", as_nobody(&command)), ("root", command)] {
        let run = Run::of(&mut command).expect_code(0);
        let report = run.json();
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
    let env = TestEnv::new("literal-db");
    env.write_state(&[env.decky(&env.name("d"), &["ssh"])]);
    for name in [
        ":memory:",
        "file:x.db?mode=memory",
        "file::memory:?cache=shared",
    ] {
        let mut command = env.command();
        command.current_dir(env.dir.path()).args(["--db", name]);
        let run = Run::of(&mut command).expect_code(0);
        assert!(run.stdout.contains("inserted=1"), "{name}: {}", run.stdout);
        let file = env.dir.path().join(name);
        assert_eq!(support::rows_of(&file).len(), 1, "{name} is a real file");
        let again = Run::of(&mut command).expect_code(0);
        assert!(
            again.stdout.contains("inserted=0"),
            "{name}: {}",
            again.stdout
        );
    }
}

#[test]
fn decnet_mysql_urls_with_charset_work_on_mariadb() {
    let env = TestEnv::on(Backend::MySql, "charset");
    env.write_state(&[env.decky(&env.name("d"), &["ssh"])]);
    let url = env.mysql_url().replacen("mysql://", "mysql+asyncmy://", 1) + "?charset=utf8mb4";
    let run = env.run(&["--db", &url]).expect_code(0);
    assert!(run.stdout.contains("inserted=1"), "{}", run.stdout);
    assert_eq!(env.rows().len(), 1);
    let refused = env
        .run(&["--db", &format!("{url}&ssl_mode=REQUIRED")])
        .expect_code(1);
    assert!(
        refused.stderr.contains("unknown parameter \"ssl_mode\""),
        "{}",
        refused.stderr
    );
    assert!(
        !refused.stderr.contains("decnet_test:decnet_test"),
        "{}",
        refused.stderr
    );
}
