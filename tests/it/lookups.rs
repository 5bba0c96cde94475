//! Name lookups under faults the system's resolver cannot be made to produce
//! on demand: a DNS server that never answers (`scripts/faults/with-silent-dns`,
//! in a mount namespace of the pass's own) and a user at its thread limit
//! (`scripts/faults/at-thread-limit`). Docker, Redis and MySQL are each named
//! by host name, so each goes through a lookup. A silent resolver must not
//! hold the pass past its deadline (glibc would wait 150 s here), and a pass
//! that may start no thread must fail or warn, never abort: before the
//! commit that is exit 1 with nothing written; after it, a bus fault.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::fixture::{decky, figure, Env, Test};

/// The faults' scripts, run by bash.
fn script(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts/faults")
        .join(name)
        .display()
        .to_string()
}

static SERIAL: AtomicU32 = AtomicU32::new(0);

/// Something of this test run's own (a loopback address for the silent DNS
/// server, a user id at the thread limit), so that tests at once never meet.
fn own_number() -> u32 {
    let pid = std::process::id();
    (pid % 200) * 50 + SERIAL.fetch_add(1, Ordering::Relaxed) % 50
}

/// The pass, with a resolver that reads every query and never answers; its
/// log goes to `silent-dns.log` in the env's dir.
fn with_silent_dns<'e>(env: &'e Env, test: Test<'e>) -> Test<'e> {
    let n = own_number();
    let address = format!("127.53.{}.{}", n / 250, n % 250 + 1);
    test.wrapped_in(["bash".to_owned(), script("with-silent-dns")])
        .env_var("DECNET_SILENT_DNS_ADDRESS", address)
        .env_var("DECNET_SILENT_DNS_LOG", silent_dns_log(env))
}

fn silent_dns_log(env: &Env) -> std::path::PathBuf {
    env.dir.path().join("silent-dns.log")
}

/// The pass's lookups went to the silent server, which swallowed them.
fn assert_queries_swallowed(env: &Env) {
    let log = std::fs::read_to_string(silent_dns_log(env)).expect("the silent server's log");
    assert!(
        log.lines()
            .any(|line| line.starts_with("silent-dns: ") && !line.starts_with("silent-dns: 0 ")),
        "no query reached the silent server: {log}"
    );
}

/// The pass as a user that may start no thread at all (`prlimit --nproc=1`),
/// its env's files handed to that user.
fn at_thread_limit<'e>(env: &'e Env, test: Test<'e>) -> Test<'e> {
    let uid = 64200 + own_number();
    let status = std::process::Command::new("chown")
        .args(["-R", &uid.to_string()])
        .arg(env.dir.path())
        .status()
        .expect("chown runs");
    assert!(status.success(), "chown the env's files to {uid}");
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    test.wrapped_in(["bash".to_owned(), script("at-thread-limit"), "1".to_owned()])
        .env_var("DECNET_THREAD_LIMIT_UID", uid.to_string())
}

const DOCKER_BY_NAME: &str = "tcp://docker.decnet-test.example:2375";
const REDIS_BY_NAME: &str = "redis://redis.decnet-test.example:6379";

#[test]
fn a_silent_resolver_for_docker_ends_the_wait_at_the_docker_timeout() {
    let env = Env::new();
    let name = env.name("a");
    let out = with_silent_dns(&env, env.test())
        .state(&[decky(&name, &["ssh"])])
        .args(["--docker-host", DOCKER_BY_NAME, "--docker-timeout", "1"])
        .stderr_lines([format!(
            " WARN Docker at {DOCKER_BY_NAME} is unreachable (cannot resolve \
             \"docker.decnet-test.example\": the resolver did not answer within …): container \
             states are unknown, so this pass makes no state updates"
        )])
        .stdout_ends_with("inserted=1 deleted=0 updated=0 docker=unknown\n")
        .run();
    figure(
        "silent_dns_docker_timeout_1s_pass_seconds",
        out.elapsed.as_secs_f64(),
    );
    assert_queries_swallowed(&env);
    assert_eq!(
        env.names_of(&env.host),
        [name],
        "the pass went on without Docker"
    );
}

/// After the commit, a lookup that never ends is a bus fault like any other:
/// the rows are written, the events lost, the pass ends at --redis-timeout.
#[test]
fn a_silent_resolver_for_redis_loses_the_events_at_the_bus_timeout() {
    let env = Env::new();
    let name = env.name("a");
    let out = with_silent_dns(&env, env.test())
        .state(&[decky(&name, &["ssh"])])
        .redis_at(REDIS_BY_NAME)
        .args(["--docker-timeout", "1"])
        .stderr_lines([format!(
            " WARN Redis at {REDIS_BY_NAME} failed (cannot resolve \
             \"redis.decnet-test.example\": the resolver did not answer within …): 1 event(s) \
             lost; the database is converged all the same"
        )])
        .stdout_ends_with("inserted=1 deleted=0 updated=0 events_lost=1\n")
        .run();
    figure(
        "silent_dns_redis_timeout_1s_pass_seconds",
        out.elapsed.as_secs_f64(),
    );
    assert_queries_swallowed(&env);
    assert_eq!(env.names_of(&env.host), [name]);
}

/// Before the commit, a lookup of the database's host ends at the pass's
/// budget plus the slack (1 s + 2 s here), and nothing is written.
#[test]
fn a_silent_resolver_for_mysql_fails_the_pass_within_its_budget() {
    let env = Env::mysql();
    let url = env
        .mysql_url()
        .replace("127.0.0.1", "db.decnet-test.example");
    let out = with_silent_dns(&env, env.test())
        .state(&[decky(&env.name("a"), &["ssh"])])
        .args(["--db", &url, "--db-busy-timeout", "1"])
        .status(1)
        .stderr_lines([
            " WARN Docker at … is unreachable …".to_owned(),
            format!(
                "decnet-reconcile: error: cannot connect to database \
                 mysql://***:***@db.decnet-test.example:3306/{}: cannot resolve \
                 \"db.decnet-test.example\": the resolver did not answer within …; nothing was \
                 written",
                env.mysql_database
            ),
        ])
        .args(["--docker-host", "unix:///nonexistent"])
        .run();
    figure(
        "silent_dns_mysql_budget_1s_pass_seconds",
        out.elapsed.as_secs_f64(),
    );
    assert_queries_swallowed(&env);
    assert!(env.rows().is_empty(), "nothing was written");
}

#[test]
fn at_the_thread_limit_a_docker_name_is_unknown_states_not_an_abort() {
    let env = Env::new();
    let name = env.name("a");
    at_thread_limit(&env, env.test())
        .state(&[decky(&name, &["ssh"])])
        .args(["--docker-host", "tcp://localhost:2375"])
        .stderr_lines([
            " WARN Docker at tcp://localhost:2375 is unreachable (cannot resolve \
             \"localhost\": cannot start a thread for the lookup: the system is at its thread \
             limit (…)): container states are unknown, so this pass makes no state updates",
        ])
        .stdout_ends_with("inserted=1 deleted=0 updated=0 docker=unknown\n")
        .run();
    assert_eq!(env.names_of(&env.host), [name]);
}

/// The lookup comes after the commit: the rows stay written and the events
/// are counted lost, where the process used to abort (SIGABRT) with them.
#[test]
fn at_the_thread_limit_a_redis_name_is_a_bus_fault_after_the_commit() {
    let env = Env::new();
    let name = env.name("a");
    at_thread_limit(&env, env.test())
        .state(&[decky(&name, &["ssh"])])
        .redis_at("redis://localhost:6379")
        .args(["--docker-host", "unix:///nonexistent"])
        .stderr_lines([
            " WARN Docker at unix:///nonexistent is unreachable (no such socket): container \
             states are unknown, so this pass makes no state updates",
            " WARN Redis at redis://localhost:6379 failed (cannot resolve \"localhost\": cannot \
             start a thread for the lookup: the system is at its thread limit (…)): 1 event(s) \
             lost; the database is converged all the same",
        ])
        .stdout_ends_with("inserted=1 deleted=0 updated=0 events_lost=1 docker=unknown\n")
        .run();
    assert_eq!(env.names_of(&env.host), [name]);
}

#[test]
fn at_the_thread_limit_a_mysql_name_is_exit_1_with_nothing_written() {
    let env = Env::mysql();
    let url = env.mysql_url().replace("127.0.0.1", "localhost");
    at_thread_limit(&env, env.test())
        .state(&[decky(&env.name("a"), &["ssh"])])
        .args(["--db", &url, "--docker-host", "unix:///nonexistent"])
        .status(1)
        .stderr_lines([
            " WARN Docker at unix:///nonexistent is unreachable (no such socket): container \
             states are unknown, so this pass makes no state updates"
                .to_owned(),
            format!(
                "decnet-reconcile: error: cannot connect to database \
                 mysql://***:***@localhost:3306/{}: cannot resolve \"localhost\": cannot start a \
                 thread for the lookup: the system is at its thread limit (…); nothing was written",
                env.mysql_database
            ),
        ])
        .run();
    assert!(env.rows().is_empty(), "nothing was written");
}
