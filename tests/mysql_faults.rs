//! The MySQL backend under faults the server cannot be made to produce on
//! demand, and the messages an operator gets: a server that accepts and never
//! answers, a connection lost right after `COMMIT` (or during it), rows and a
//! whole table locked by another session, and a host id that the collation
//! cannot tell from another. A proxy stands beside the real MariaDB only to
//! stall or cut the connection at a chosen packet.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use mysql::prelude::Queryable;
use support::{figure, hanging_tcp, mysql_connect, Backend, EventLog, Run, TestEnv, REDIS_URL};

/// What the proxy does once the client has sent the packet that holds `trigger`.
#[derive(Clone, Copy)]
enum Fault {
    /// Passes the server's answer to it on, then closes both connections.
    CutAfterAnswer,
    /// Closes both connections instead of passing the answer on (the server
    /// got the packet and acts on it).
    CutBeforeAnswer,
    /// Passes nothing more on in either direction, and holds the connections open.
    Stall,
}

/// A proxy to the test MariaDB on 127.0.0.1:3306 that applies `fault` after
/// the first client packet containing `trigger`; returns its port.
fn faulty_proxy(trigger: &'static [u8], fault: Fault) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let server = TcpStream::connect("127.0.0.1:3306").expect("MariaDB on 3306");
            let triggered = Arc::new(AtomicBool::new(false));
            let (mut from_client, mut to_server) = (
                client.try_clone().expect("clone"),
                server.try_clone().expect("clone"),
            );
            let (mut from_server, mut to_client) = (server, client);
            let seen = Arc::clone(&triggered);
            std::thread::spawn(move || {
                let mut buffer = [0u8; 65536];
                while let Ok(read @ 1..) = from_client.read(&mut buffer) {
                    let chunk = &buffer[..read];
                    if seen.load(Ordering::SeqCst) && matches!(fault, Fault::Stall) {
                        continue;
                    }
                    if chunk.windows(trigger.len()).any(|w| w == trigger) {
                        seen.store(true, Ordering::SeqCst);
                    }
                    if to_server.write_all(chunk).is_err() {
                        return;
                    }
                }
            });
            std::thread::spawn(move || {
                let mut buffer = [0u8; 65536];
                while let Ok(read @ 1..) = from_server.read(&mut buffer) {
                    // The client sends its next packet only after this answer,
                    // so whatever arrives once the trigger went out answers it.
                    let answer_to_trigger = triggered.load(Ordering::SeqCst);
                    match fault {
                        Fault::Stall if answer_to_trigger => continue,
                        Fault::CutBeforeAnswer if answer_to_trigger => {}
                        _ => {
                            if to_client.write_all(&buffer[..read]).is_err() {
                                return;
                            }
                        }
                    }
                    if answer_to_trigger && !matches!(fault, Fault::Stall) {
                        let _ = to_client.shutdown(Shutdown::Both);
                        let _ = from_server.shutdown(Shutdown::Both);
                        return;
                    }
                }
            });
        }
    });
    port
}

/// The env's database, reached through the proxy on `port`.
fn through(env: &TestEnv, port: u16) -> String {
    env.mysql_url()
        .replace("127.0.0.1:3306", &format!("127.0.0.1:{port}"))
}

/// A crate's internals never reach the operator.
fn assert_plain(stderr: &str) {
    eprintln!("operator sees: {stderr}");
    for raw in [
        "CodecError",
        "MySqlError",
        "DriverError",
        "IoError",
        "os error",
    ] {
        assert!(
            !stderr.contains(raw),
            "{raw} reached the operator: {stderr}"
        );
    }
}

fn my_env(test: &str) -> TestEnv {
    let mut env = TestEnv::on(Backend::MySql, test);
    env.host = format!("host-{}", env.prefix);
    env
}

/// `COMMIT` is acknowledged, then the connection drops (before `RELEASE_LOCK`):
/// the rows are written, so the pass succeeds, announces them, and warns about
/// the lock, which the server released with the connection.
#[test]
fn a_connection_lost_after_the_commit_still_publishes_and_succeeds() {
    let env = my_env("my-after-commit");
    let deckies = [env.name("a"), env.name("b")];
    env.write_state(&[
        env.decky(&deckies[0], &["ssh"]),
        env.decky(&deckies[1], &["ssh"]),
    ]);
    let port = faulty_proxy(b"\x03COMMIT", Fault::CutAfterAnswer);
    let events = EventLog::subscribe(&env.host);
    let run = Run::of(env.command_publishing_to(REDIS_URL).args([
        "--db",
        &through(&env, port),
        "--detailed-exitcode",
        "--output",
        "json",
    ]))
    .expect_code(2);
    assert_eq!(run.json()["published"], 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("the pass was committed, but releasing the lock"),
        "{}",
        run.stderr
    );
    assert_plain(&run.stderr);
    assert_eq!(env.rows().len(), 2, "the rows were committed");
    assert_eq!(events.collect(2).len(), 2, "both inserts were announced");
    // The server let the lock go with the connection: the next pass runs at once.
    env.run(&["--detailed-exitcode", "--db-busy-timeout", "1"])
        .expect_code(0);
}

/// The connection drops while `COMMIT` is on its way back: nobody can say
/// whether it was applied. The pass says so plainly, announces nothing, and
/// exits 1; the next pass converges whichever way it went.
#[test]
fn a_connection_lost_during_the_commit_says_the_outcome_is_unknown() {
    let env = my_env("my-during-commit");
    env.write_state(&[env.decky(&env.name("a"), &["ssh"])]);
    let port = faulty_proxy(b"\x03COMMIT", Fault::CutBeforeAnswer);
    let events = EventLog::subscribe(&env.host);
    let run = Run::of(
        env.command_publishing_to(REDIS_URL)
            .args(["--db", &through(&env, port)]),
    )
    .expect_code(1);
    assert!(
        run.stderr
            .contains("the commit may or may not have been applied"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("the next pass will converge"),
        "{}",
        run.stderr
    );
    assert_plain(&run.stderr);
    assert!(events.collect(0).is_empty(), "nothing was announced");
    env.run(&[]).expect_code(0);
    assert_eq!(env.rows().len(), 1, "the next pass converged");
}

/// A server that accepts and never answers (not even its greeting): exit 1
/// within the budget, naming the server (without its password), saying what
/// the pass was doing and that nothing was written.
#[test]
fn a_server_that_never_answers_fails_within_the_budget_and_says_so() {
    let env = my_env("my-silent");
    env.write_state(&[env.decky(&env.name("a"), &["ssh"])]);
    let url = format!("mysql://decnet:s3cret@127.0.0.1:{}/decnet", hanging_tcp());
    let run = env
        .run(&["--db", &url, "--db-busy-timeout", "2"])
        .expect_code(1);
    figure("mysql_silent_server_seconds", run.elapsed.as_secs_f64());
    assert!(
        run.stderr
            .contains("cannot connect to database mysql://decnet:***@127.0.0.1:"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("did not answer within --db-busy-timeout")
            && run.stderr.contains("nothing was written"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("s3cret"), "{}", run.stderr);
    assert_plain(&run.stderr);
}

/// The server stops answering in the middle of the pass (at the host's lock):
/// the same bound, and the message says what the pass was waiting for.
#[test]
fn a_server_that_stops_answering_mid_pass_fails_within_the_budget() {
    let env = my_env("my-stall");
    env.write_state(&[env.decky(&env.name("a"), &["ssh"])]);
    let port = faulty_proxy(b"GET_LOCK", Fault::Stall);
    let run = env
        .run(&["--db", &through(&env, port), "--db-busy-timeout", "2"])
        .expect_code(1);
    figure("mysql_stalled_server_seconds", run.elapsed.as_secs_f64());
    assert!(
        run.stderr.contains("cannot take the lock of host")
            && run
                .stderr
                .contains("did not answer within --db-busy-timeout")
            && run.stderr.contains("nothing was written"),
        "{}",
        run.stderr
    );
    assert_plain(&run.stderr);
    assert!(!env.table_exists(), "nothing written, not even the table");
}

const LOCKED: &str = "stayed locked by another writer for longer than --db-busy-timeout";

/// Another session holds a row lock, or the whole table (`LOCK TABLES … WRITE`),
/// past the busy timeout: one message for both, the server's own words kept
/// out of crate dumps, the rows as they were.
#[test]
fn a_row_or_table_locked_past_the_busy_timeout_fails_with_one_message() {
    let env = my_env("my-locked");
    let name = env.name("a");
    env.seed_row(&env.host, &name, "running");
    env.write_state(&[env.decky(&name, &["ssh"])]);
    let before = env.rows();

    let lock_the_row =
        format!("START TRANSACTION; SELECT * FROM fleet_deckies WHERE name = '{name}' FOR UPDATE");
    for (lock, sql) in [
        ("row", lock_the_row.as_str()),
        ("table", "LOCK TABLES fleet_deckies WRITE"),
    ] {
        let mut holder = mysql_connect(&env.mysql_url());
        holder.query_drop(sql).expect("take the lock");
        let run = env.run(&["--db-busy-timeout", "1"]).expect_code(1);
        figure(
            &format!("mysql_{lock}_lock_seconds"),
            run.elapsed.as_secs_f64(),
        );
        assert!(run.stderr.contains(LOCKED), "{lock} lock: {}", run.stderr);
        assert!(
            run.stderr.contains("Lock wait timeout exceeded"),
            "{lock} lock: {}",
            run.stderr
        );
        assert!(run.stderr.contains("nothing was written"), "{}", run.stderr);
        assert_plain(&run.stderr);
        drop(holder);
        assert_eq!(env.rows(), before, "{lock} lock");
    }
}

/// A host id equal to another host's under the collation (case, or MySQL's
/// PAD SPACE trailing blanks): the message names the two host ids, not two
/// deckies, and nothing of either host is written.
#[test]
fn a_host_id_colliding_with_another_under_the_collation_is_named() {
    let env = my_env("my-host-collide");
    let other = format!("rtHostA-{}", env.prefix);
    for (ours, theirs) in [
        (other.to_lowercase(), other.clone()),
        (other.clone(), format!("{other} ")),
    ] {
        env.seed_row(&theirs, &env.name("theirs"), "running");
        let before = env.rows();
        env.write_state(&[env.decky(&env.name("theirs"), &["ssh"])]);
        let run = env.run(&["--host-uuid", &ours]).expect_code(1);
        assert!(
            run.stderr.contains(&format!("{ours:?}"))
                && run.stderr.contains(&format!("{theirs:?}"))
                && run.stderr.contains("collation"),
            "{}",
            run.stderr
        );
        assert!(!run.stderr.contains("two deckies"), "{}", run.stderr);
        assert_eq!(env.rows(), before, "nothing written");
        env.execute("DELETE FROM fleet_deckies");
    }
}
