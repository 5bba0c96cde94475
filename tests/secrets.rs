//! No password reaches stdout, stderr, `--help` or the JSON, whatever the
//! shape of the URL and whether it came by option or by environment: a table
//! of URL shapes, each run through the real binary both ways.

mod support;

use std::process::Command;

use support::{closed_port, Run, TestEnv};

const SECRET: &str = "s3cretPW9";

/// How the URL reaches the binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Option,
    Env,
}

/// Which path of the binary prints it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Path {
    /// Refused or failing: exit 1 with an error.
    Error,
    /// Docker unknown or events lost: exit 0, the JSON, and a warning.
    Warning,
}

struct Case {
    option: &'static str,
    var: &'static str,
    /// More environment for the env form (`DECNET_DB_TYPE=mysql` beside `DECNET_DB_URL`).
    with: &'static [(&'static str, &'static str)],
    url: String,
    path: Path,
}

fn cases() -> Vec<Case> {
    let closed = closed_port();
    let case = |option, var, url: String, path| Case {
        option,
        var,
        with: &[],
        url,
        path,
    };
    let mut cases = Vec::new();
    for url in [
        format!("mysql:user:{SECRET}@127.0.0.1/db"),
        format!("mysql:/user:{SECRET}@127.0.0.1/db"),
        format!("mysql+asyncmy:user:{SECRET}@127.0.0.1/db"),
        format!("MySQL://user:{SECRET}@127.0.0.1:{closed}/db"),
        format!("mysql+asyncmy://user:{SECRET}@127.0.0.1:{closed}/db?charset=utf8mb4"),
        format!("mysql://user:{SECRET}@127.0.0.1:{closed}/db?charset=latin1"),
        format!("mysql://user:{SECRET}@127.0.0.1:{closed}/db?ssl_ca=%2Fca.pem"),
        format!("mysql://user@127.0.0.1:{closed}/db?password={SECRET}"),
        format!("redis://user:{SECRET}@127.0.0.1/0"),
        format!("SQLite://user:{SECRET}@host/x.db"),
    ] {
        cases.push(case("--db", "DECNET_DB_PATH", url.clone(), Path::Error));
        cases.push(Case {
            with: &[("DECNET_DB_TYPE", "mysql")],
            ..case("--db", "DECNET_DB_URL", url, Path::Error)
        });
    }
    for url in [
        format!("ssh://user:{SECRET}@127.0.0.1"),
        format!("tcp://user:{SECRET}@127.0.0.1:{closed}"),
        format!("http://user:{SECRET}@127.0.0.1:{closed}"),
        format!("unix:///nonexistent.sock?pass={SECRET}"),
        format!("Unix://user:{SECRET}@/nonexistent.sock"),
    ] {
        cases.push(case("--docker-host", "DOCKER_HOST", url, Path::Warning));
    }
    for url in [
        format!("redis://:{SECRET}@127.0.0.1:{closed}/0"),
        format!("redis://user:{SECRET}@127.0.0.1:{closed}/0"),
        format!("rediss://user:{SECRET}@127.0.0.1:{closed}/0"),
        format!("REDIS://user:{SECRET}@127.0.0.1:{closed}/0"),
        format!("redis:{SECRET}@127.0.0.1:{closed}"),
        format!("redis+unix:///nonexistent.sock?db=0&pass={SECRET}"),
        format!("unix:///nonexistent.sock?pass={SECRET}"),
        format!("redis://user:{SECRET}@127.0.0.1:{closed}/not-a-db"),
    ] {
        cases.push(case("--redis-url", "DECNET_REDIS_URL", url, Path::Warning));
    }
    cases
}

/// The binary with a clean environment and this env's files; the case's own
/// option is left out so that the environment form is the one read.
fn command(env: &TestEnv, case: &Case, via: Via) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_decnet-reconcile"));
    command.env_clear().arg("--state-file").arg(&env.state_file);
    command.args(["--host-uuid", &env.host, "--output", "json", "-v"]);
    command.args(["--docker-timeout", "1", "--redis-timeout", "1"]);
    let defaults = [
        ("--db", env.db.display().to_string()),
        ("--docker-host", "unix:///nonexistent.sock".to_owned()),
    ];
    for (option, value) in defaults {
        if option != case.option {
            command.args([option, &value]);
        }
    }
    if case.option != "--redis-url" {
        command.arg("--no-publish");
    }
    match via {
        Via::Option => {
            command.args([case.option, &case.url]);
        }
        Via::Env => {
            command
                .env(case.var, &case.url)
                .envs(case.with.iter().copied());
        }
    }
    command
}

fn assert_no_secret(what: &str, run: &Run) {
    for (stream, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
        assert!(
            !text.contains(SECRET) && !text.contains("s3cret"),
            "{what}: the secret reached {stream}:\n{text}"
        );
    }
}

#[test]
fn no_url_shape_leaks_its_password_by_option_or_env() {
    let mut runs = 0;
    for case in cases() {
        for via in [Via::Option, Via::Env] {
            let what = format!("{} via {via:?} ({})", case.url, case.var);
            let mut env = TestEnv::new("secrets");
            env.host = format!("host-{}", env.prefix);
            env.write_state(&[env.decky(&env.name("d"), &["ssh"])]);
            let run = Run::of(&mut command(&env, &case, via));
            runs += 1;
            assert_no_secret(&what, &run);
            match case.path {
                Path::Error => {
                    assert_eq!(run.code, 1, "{what}: {}", run.stderr);
                    assert!(run.stderr.contains("error"), "{what}: {}", run.stderr);
                }
                Path::Warning => {
                    assert_eq!(run.code, 0, "{what}: {}", run.stderr);
                    assert!(run.stderr.contains("WARN"), "{what}: {}", run.stderr);
                    let report = run.json();
                    assert_eq!(
                        report["changes"].as_array().map(Vec::len),
                        Some(1),
                        "{what}"
                    );
                }
            }
            if via == Via::Env {
                let help = Run::of(command(&env, &case, via).arg("--help")).expect_code(0);
                assert_no_secret(&format!("{what} --help"), &help);
                if case.with.is_empty() {
                    assert!(help.stdout.contains(case.var), "{what}: {}", help.stdout);
                }
            }
        }
    }
    println!("secrets: {runs} runs, no secret printed");
}

#[test]
fn the_db_password_variable_is_never_printed() {
    let env = TestEnv::new("db-password");
    env.write_state(&[env.decky(&env.name("d"), &["ssh"])]);
    // No --db: DECNET's variables choose the database only when it is not typed.
    let mut command = Command::new(env!("CARGO_BIN_EXE_decnet-reconcile"));
    command
        .env_clear()
        .arg("--state-file")
        .arg(&env.state_file)
        .args(["--no-publish", "--docker-host", "unix:///nonexistent.sock"])
        .env("DECNET_DB_TYPE", "mysql")
        .env("DECNET_DB_HOST", "127.0.0.1")
        .env("DECNET_DB_PORT", closed_port().to_string())
        .env("DECNET_DB_PASSWORD", format!("{SECRET}/:@?#"));
    let run = Run::of(&mut command).expect_code(1);
    assert!(run.stderr.contains("127.0.0.1"), "{}", run.stderr);
    assert_no_secret("DECNET_DB_PASSWORD", &run);
}

#[test]
fn a_usage_error_does_not_echo_a_password() {
    let env = TestEnv::new("usage-secret");
    for bad in [
        format!("mysql://u:{SECRET}@h/d"),
        format!("mysql:u:{SECRET}@h/d"),
    ] {
        let run = env.run(&["--docker-timeout", &bad]).expect_code(1);
        assert!(run.stderr.contains("--docker-timeout"), "{}", run.stderr);
        assert_no_secret(&bad, &run);
    }
}
