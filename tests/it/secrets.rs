//! No password reaches stdout, stderr, `--help` or the JSON, whatever the
//! shape of the URL and whether it came by option or by environment: a table
//! of URL shapes, each run through the real binary both ways.

use crate::fixture::{closed_port, decky, docker_unknown, Env, Output, Test, SECRET};

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

/// A pass of `env` given `case`'s URL `via` its option or its variable; the
/// other settings by option (the real Docker), and the case's own option left
/// out so that the environment form is the one read.
fn pass<'e>(env: &'e Env, case: &Case, via: Via) -> Test<'e> {
    let mut test = env
        .test()
        .bus_by_environment()
        .args(["--output", "json", "-v"])
        .args(["--docker-timeout", "1", "--redis-timeout", "1"]);
    for option in ["--db", "--docker-host"] {
        if option == case.option {
            test = test.without(option);
        }
    }
    if case.option != "--redis-url" {
        test = test.arg("--no-publish");
    }
    match via {
        Via::Option => test.args([case.option, &case.url]),
        Via::Env => {
            test = test.env_var(case.var, &case.url);
            for (var, value) in case.with {
                test = test.env_var(var, value);
            }
            test
        }
    }
}

#[track_caller]
fn assert_no_secret(what: &str, out: &Output) {
    for (stream, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
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
            let env = Env::new();
            env.write_state(&[decky(&env.name("d"), &["ssh"])]);
            let test = pass(&env, &case, via).context(&what);
            let out = match case.path {
                Path::Error => test
                    .status(1)
                    .stderr_lines(["decnet-reconcile: error: …"])
                    .run(),
                Path::Warning => {
                    let warning = match case.option {
                        "--docker-host" => docker_unknown("…", "…"),
                        _ => " WARN Redis at … failed (…): 1 event(s) lost; \
                              the database is converged all the same"
                            .to_owned(),
                    };
                    let out = test.stderr_lines([warning]).run();
                    let report = out.json();
                    assert_eq!(
                        report["changes"].as_array().map(Vec::len),
                        Some(1),
                        "{what}"
                    );
                    out
                }
            };
            runs += 1;
            assert_no_secret(&what, &out);
            if via == Via::Env {
                let help = pass(&env, &case, via).context(&what).arg("--help").run();
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
    let env = Env::new();
    let port = closed_port();
    // No --db: DECNET's variables choose the database only when it is not typed.
    let out = env
        .test()
        .state(&[decky(&env.name("d"), &["ssh"])])
        .without("--db")
        .args(["--docker-host", "unix:///nonexistent.sock"])
        .env_var("DECNET_DB_TYPE", "mysql")
        .env_var("DECNET_DB_HOST", "127.0.0.1")
        .env_var("DECNET_DB_PORT", port.to_string())
        .env_var("DECNET_DB_PASSWORD", format!("{SECRET}/:@?#"))
        .status(1)
        .stderr_lines([
            docker_unknown("unix:///nonexistent.sock", "no such socket"),
            format!(
                "decnet-reconcile: error: cannot connect to database \
                 mysql://decnet:***@127.0.0.1:{port}/decnet: connection refused; \
                 nothing was written"
            ),
        ])
        .run();
    assert_no_secret("DECNET_DB_PASSWORD", &out);
}

#[test]
fn a_usage_error_does_not_echo_a_password() {
    for bad in [
        format!("mysql://u:{SECRET}@h/d"),
        format!("mysql:u:{SECRET}@h/d"),
    ] {
        let out = Test::new()
            .args(["--docker-timeout", &bad])
            .status(1)
            .stderr_lines([
                format!(
                    "error: invalid value '{0}' for '--docker-timeout <SECS>': \
                     \"{0}\" is not a number of seconds",
                    bad.replace(SECRET, "***")
                ),
                String::new(),
                "For more information, try '--help'.".to_owned(),
            ])
            .run();
        assert_no_secret(&bad, &out);
    }
}
