//! The MySQL backend under faults the server cannot be made to produce on
//! demand, and the messages an operator gets: a server that accepts and never
//! answers, a connection lost right after `COMMIT` (or during it), rows and a
//! whole table locked by another session, and a host id that the collation
//! cannot tell from another. A proxy stands beside the real MariaDB only to
//! stall or cut the connection at a chosen packet; the faults that need no
//! proxy run over TLS too.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use mysql::prelude::Queryable;

use crate::fixture::{decky, figure, hanging_tcp, mysql_connect, Backend, Env, SECRET};
use crate::in_plaintext_and_over_tls;

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
fn through(env: &Env, port: u16) -> String {
    env.mysql_url()
        .replace("127.0.0.1:3306", &format!("127.0.0.1:{port}"))
}

/// `COMMIT` is acknowledged, then the connection drops (before `RELEASE_LOCK`):
/// the rows are written, so the pass succeeds, announces them, and warns about
/// the lock, which the server released with the connection.
#[test]
fn a_connection_lost_after_the_commit_still_publishes_and_succeeds() {
    let env = Env::mysql();
    let (a, b) = (env.name("a"), env.name("b"));
    let port = faulty_proxy(b"\x03COMMIT", Fault::CutAfterAnswer);
    let out = env
        .test()
        .state(&[decky(&a, &["ssh"]), decky(&b, &["ssh"])])
        .redis()
        .args([
            "--db",
            &through(&env, port),
            "--detailed-exitcode",
            "--output",
            "json",
        ])
        .status(2)
        .events([(&a, "inserted"), (&b, "inserted")])
        .stderr(format!(
            " WARN database mysql://***:***@127.0.0.1:{port}/{}: the pass was committed, but \
             releasing the lock of host {:?} failed (the connection was lost); the server \
             releases it when the connection closes\n",
            env.mysql_database, env.host
        ))
        .run();
    assert_eq!(out.json()["published"], 2);
    assert_eq!(env.rows().len(), 2, "the rows were committed");
    // The server let the lock go with the connection: the next pass runs at once.
    env.test()
        .args(["--detailed-exitcode", "--db-busy-timeout", "1"])
        .run();
}

/// The connection drops while `COMMIT` is on its way back: nobody can say
/// whether it was applied. The pass says so plainly, announces nothing, and
/// exits 1; the next pass converges whichever way it went.
#[test]
fn a_connection_lost_during_the_commit_says_the_outcome_is_unknown() {
    let env = Env::mysql();
    let port = faulty_proxy(b"\x03COMMIT", Fault::CutBeforeAnswer);
    env.test()
        .state(&[decky(&env.name("a"), &["ssh"])])
        .redis()
        .args(["--db", &through(&env, port)])
        .status(1)
        .stderr(format!(
            "decnet-reconcile: error: database mysql://***:***@127.0.0.1:{port}/{}: the connection \
             was lost during the commit: the commit may or may not have been applied, and no \
             event was sent; the next pass will converge the rows (if the commit was applied, \
             its events are lost)\n",
            env.mysql_database
        ))
        .run();
    env.test().run();
    assert_eq!(env.rows().len(), 1, "the next pass converged");
}

/// A server that accepts and never answers (not even its greeting): exit 1
/// naming the server (without its password), saying what the pass was doing
/// and that nothing was written. Its duration is a figure.
fn a_server_that_never_answers_fails_within_the_budget_and_says_so(backend: Backend) {
    let env = Env::on(backend);
    let port = hanging_tcp();
    let url = format!(
        "mysql://decnet:{SECRET}@127.0.0.1:{port}/decnet{}",
        backend.mysql_query()
    );
    let out = env
        .test()
        .state(&[decky(&env.name("a"), &["ssh"])])
        .args(["--db", &url, "--db-busy-timeout", "2"])
        .status(1)
        .stderr(format!(
            "decnet-reconcile: error: cannot connect to database mysql://decnet:***@127.0.0.1:{port}/decnet: \
             the server did not answer within --db-busy-timeout; nothing was written\n"
        ))
        .run();
    figure("mysql_silent_server_seconds", out.elapsed.as_secs_f64());
}

/// The server stops answering in the middle of the pass (at the host's lock):
/// the same bound, and the message says what the pass was waiting for.
#[test]
fn a_server_that_stops_answering_mid_pass_fails_within_the_budget() {
    let env = Env::mysql();
    let schema = env.schema();
    let port = faulty_proxy(b"GET_LOCK", Fault::Stall);
    let out = env
        .test()
        .state(&[decky(&env.name("a"), &["ssh"])])
        .args(["--db", &through(&env, port), "--db-busy-timeout", "2"])
        .status(1)
        .stderr(format!(
            "decnet-reconcile: error: database mysql://***:***@127.0.0.1:{port}/{}: cannot take \
             the lock of host {:?}: the server did not answer within --db-busy-timeout; \
             nothing was written\n",
            env.mysql_database, env.host
        ))
        .run();
    figure("mysql_stalled_server_seconds", out.elapsed.as_secs_f64());
    assert!(env.rows().is_empty(), "nothing written");
    assert_eq!(env.schema(), schema, "nothing written, not even the schema");
}

/// Another session holds a row lock, or the whole table (`LOCK TABLES … WRITE`),
/// past the busy timeout: one message for both, the server's own words kept
/// out of crate dumps, the rows as they were.
fn a_row_or_table_locked_past_the_busy_timeout_fails_with_one_message(backend: Backend) {
    let env = Env::on(backend);
    let name = env.name("a");
    env.seed_row(&env.host, &name, "running");
    env.write_state(&[decky(&name, &["ssh"])]);
    let before = env.rows();

    let lock_the_row =
        format!("START TRANSACTION; SELECT * FROM fleet_deckies WHERE name = '{name}' FOR UPDATE");
    for (lock, sql) in [
        ("row", lock_the_row.as_str()),
        ("table", "LOCK TABLES fleet_deckies WRITE"),
    ] {
        let mut holder = mysql_connect(&env.mysql_url());
        holder.query_drop(sql).expect("take the lock");
        let out = env
            .test()
            .context(lock)
            .args(["--db-busy-timeout", "1"])
            .status(1)
            .stderr_lines([format!(
                "decnet-reconcile: error: database mysql://***:***@…/{}: …: \
                 fleet_deckies stayed locked by another writer for longer than --db-busy-timeout \
                 (the server: \"Lock wait timeout exceeded; try restarting transaction\"); \
                 nothing was written",
                env.mysql_database
            )])
            .run();
        figure(
            &format!("mysql_{lock}_lock_seconds"),
            out.elapsed.as_secs_f64(),
        );
        drop(holder);
        assert_eq!(env.rows(), before, "{lock} lock");
    }
}

/// A host id equal to another host's under the collation (case, or MySQL's
/// PAD SPACE trailing blanks): the message names the two host ids, not two
/// deckies, and nothing of either host is written.
#[test]
fn a_host_id_colliding_with_another_under_the_collation_is_named() {
    let env = Env::mysql();
    let other = format!("rtHostA-{}", env.prefix);
    for (ours, theirs) in [
        (other.to_lowercase(), other.clone()),
        (other.clone(), format!("{other} ")),
    ] {
        env.seed_row(&theirs, &env.name("theirs"), "running");
        let before = env.rows();
        env.test()
            .state(&[decky(&env.name("theirs"), &["ssh"])])
            .args(["--host-uuid", &ours])
            .status(1)
            .stderr(format!(
                "decnet-reconcile: error: database mysql://***:***@127.0.0.1:3306/{}: \
                 --host-uuid {ours:?} and the rows of host {theirs:?} are one host id to the \
                 database's collation (it ignores case, accents and trailing spaces), so the table cannot \
                 keep their rows apart; give this host an id that differs in more than that. \
                 Nothing was written\n",
                env.mysql_database
            ))
            .run();
        assert_eq!(env.rows(), before, "nothing written");
        env.execute("DELETE FROM fleet_deckies");
    }
}

in_plaintext_and_over_tls!(
    MySql: a_server_that_never_answers_fails_within_the_budget_and_says_so,
    a_row_or_table_locked_past_the_busy_timeout_fails_with_one_message,
);
