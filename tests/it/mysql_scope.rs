//! What a MySQL pass touches and waits for: only the database its URL names
//! (no parameter re-addresses it), only its own host's lock in that database
//! (two DECNET installations on one server do not wait for each other), and
//! only its budget plus the slack, however late each of the server's answers.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::fixture::{decky, figure, Env};

/// Every parameter that would send the pass to another database, server or
/// user than the URL's (the names mysql_async's own URL reader and
/// SQLAlchemy's take) is refused by name, before anything is read or
/// written, in the URL's database and in the one the parameter names.
#[test]
fn a_url_parameter_cannot_send_the_pass_elsewhere() {
    let env = Env::mysql();
    let elsewhere = Env::mysql();
    env.write_state(&[decky(&env.name("a"), &["ssh"])]);
    env.seed_row(&env.host, &env.name("gone"), "running");
    elsewhere.seed_row(&env.host, &env.name("kept"), "running");
    let (before, before_elsewhere) = (env.db_snapshot(), elsewhere.db_snapshot());
    let other_database = elsewhere.mysql_database.as_str();
    for (parameter, value) in [
        ("db_name", other_database),
        ("database", other_database),
        ("dbname", other_database),
        ("host", "127.0.0.2"),
        ("ip_or_hostname", "127.0.0.2"),
        ("port", "3307"),
        ("tcp_port", "3307"),
        ("socket", "/run/mysqld/mysqld.sock"),
        ("unix_socket", "/run/mysqld/mysqld.sock"),
        ("prefer_socket", "true"),
        ("user", "root"),
        ("password", "other"),
        ("passwd", "other"),
    ] {
        let url = format!("{}?{parameter}={value}", env.mysql_url());
        env.test()
            .context(format!("?{parameter}="))
            .args(["--db", &url])
            .status(1)
            .stderr_lines([format!(
                "decnet-reconcile: error: --db: MySQL URL …: unknown parameter \"{parameter}\" (known: …)"
            )])
            .run();
        assert_eq!(
            env.db_snapshot(),
            before,
            "?{parameter}= wrote to the URL's database"
        );
        assert_eq!(
            elsewhere.db_snapshot(),
            before_elsewhere,
            "?{parameter}= wrote to another database"
        );
    }
}

/// `GET_LOCK` names are the server's, not a database's: the lock of host
/// `local` in one installation's database must not stop a pass of host
/// `local` in another's on the same server.
#[test]
fn two_installations_on_one_server_do_not_share_a_hosts_lock() {
    let first = Env::mysql().with_host("local");
    let second = Env::mysql().with_host("local");
    for env in [&first, &second] {
        env.write_state(&[decky(&env.name("a"), &["ssh"])]);
    }
    let _held = first.hold_host_lock("local");

    let out = second.test().args(["--db-busy-timeout", "1"]).run();
    figure("mysql_other_database_same_host_ms", out.elapsed.as_millis());
    assert_eq!(second.names_of("local"), [second.name("a")]);

    first
        .test()
        .args(["--db-busy-timeout", "1"])
        .status(1)
        .stderr(format!(
            "decnet-reconcile: error: database mysql://***:***@127.0.0.1:3306/{}: another pass \
             for host \"local\" held its lock for longer than --db-busy-timeout; nothing was \
             written\n",
            first.mysql_database
        ))
        .run();
    assert!(
        first.names_of("local").is_empty(),
        "the held lock is the pass's own"
    );
}

/// `scripts/faults/slow-proxy` in front of the test MariaDB: each of the
/// server's answers reaches the pass `delay` seconds late.
struct SlowProxy {
    child: Child,
    port: u16,
}

impl SlowProxy {
    fn start(delay: &str) -> SlowProxy {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/faults/slow-proxy");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["0", "127.0.0.1:3306", delay])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs scripts/faults/slow-proxy");
        let mut ready = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut ready)
            .expect("the proxy's first line");
        let port = ready
            .strip_prefix("ready ")
            .and_then(|port| port.trim().parse().ok())
            .unwrap_or_else(|| panic!("the slow proxy did not start: {ready:?}"));
        SlowProxy { child, port }
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every answer comes 0.4 s late: each is well inside the 2 s of slack, but
/// 60 inserts cannot all be answered by the budget (3 s) plus the slack. The
/// slack is the pass's, spent once: the pass ends near 5 s with nothing
/// written, where a slack per answer let it run about 30 s and commit.
#[test]
fn late_answers_end_the_pass_at_its_budget_plus_the_slack_once() {
    let env = Env::mysql();
    let deckies: Vec<Value> = (0..60)
        .map(|n| decky(&env.name(&format!("d{n}")), &["ssh"]))
        .collect();
    env.write_state(&deckies);
    let proxy = SlowProxy::start("0.4");
    let url = env
        .mysql_url()
        .replace(":3306/", &format!(":{}/", proxy.port));
    let out = env
        .test()
        .args(["--db", &url, "--db-busy-timeout", "3"])
        .args(["--docker-host", "unix:///nonexistent"])
        .status(1)
        .stderr_lines([
            " WARN Docker at unix:///nonexistent is unreachable …".to_owned(),
            format!(
                "decnet-reconcile: error: database mysql://***:***@127.0.0.1:{}/{}: …the server \
                 did not answer within --db-busy-timeout…nothing was written",
                proxy.port, env.mysql_database
            ),
        ])
        .run();
    figure(
        "mysql_late_answers_budget_3s_pass_seconds",
        out.elapsed.as_secs_f64(),
    );
    assert!(env.rows().is_empty(), "nothing was written");
}
