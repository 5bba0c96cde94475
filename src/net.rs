//! What the pass's connections share: failures worded the same for MySQL,
//! Redis, DECNET's bus and Docker, and name lookups that cannot hang a pass
//! nor abort it: `(host, port)` resolved
//! before a deadline, on a thread of our own whose failure to start is an
//! error, and which is abandoned, not waited for, when the resolver is silent.
//!
//! tokio's `lookup_host` runs `getaddrinfo` on the runtime's blocking pool: a
//! process at its thread limit (`prlimit --nproc`) panics there ("OS can't
//! spawn worker thread"), and a resolver that never answers holds the pass
//! past its deadline, because dropping the runtime joins the blocking thread.
//! Callers connect to the addresses returned here ([`connect_tcp`], or a
//! driver given an IP literal): tokio resolves nothing for a `SocketAddr`, nor
//! for a `(&str, u16)` whose host is an IP literal.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::time::Instant;

/// Why `(host, port)` gave no address.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("cannot resolve {host:?}: no such host ({detail})")]
    NoSuchHost { host: String, detail: String },
    #[error("cannot resolve {host:?}: the resolver did not answer within {}", Seconds(*waited))]
    NoAnswer { host: String, waited: Duration },
    #[error(
        "cannot resolve {host:?}: the pass's deadline had passed before the lookup could start"
    )]
    NoTimeLeft { host: String },
    #[error(
        "cannot resolve {host:?}: the resolver failed for now ({detail}); \
         the next pass will try again"
    )]
    Temporary { host: String, detail: String },
    #[error(
        "cannot resolve {host:?}: cannot start a thread for the lookup: the system is at its \
         thread limit ({source})"
    )]
    ThreadLimit { host: String, source: io::Error },
    #[error("cannot resolve {host:?}: cannot start a thread for the lookup: {source}")]
    NoThread { host: String, source: io::Error },
    #[error("cannot resolve {host:?}: {detail}")]
    Failed { host: String, detail: String },
}

/// The addresses of `host` at `port`, in the resolver's order, found before
/// `deadline`. An IP literal (an IPv6 one with or without brackets) is its own
/// answer: no lookup, no thread. Anything else is looked up by the system's
/// resolver (`getaddrinfo`: `/etc/hosts`, NSS, DNS), as DECNET's Python does.
///
/// The lookup runs on a thread started with `std::thread::Builder`, so a
/// process that may start no thread gets an error, not a panic; the caller's
/// task waits for it asynchronously until `deadline`, and at the deadline the
/// thread is left to finish (or not) on its own: nothing joins it, and the
/// process may exit while it still waits on the resolver.
pub async fn resolve(
    host: &str,
    port: u16,
    deadline: Instant,
) -> Result<Vec<SocketAddr>, LookupError> {
    resolve_with(host, port, deadline, lookup).await
}

/// The blocking lookup a thread runs.
type Lookup = fn(&str, u16) -> Result<Vec<SocketAddr>, Failure>;

/// `resolve` with the blocking lookup given, so tests can stand in a resolver
/// that never answers.
async fn resolve_with(
    host: &str,
    port: u16,
    deadline: Instant,
    lookup: Lookup,
) -> Result<Vec<SocketAddr>, LookupError> {
    if let Some(ip) = ip_literal(host) {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let started = Instant::now();
    if started >= deadline {
        return Err(LookupError::NoTimeLeft {
            host: host.to_owned(),
        });
    }
    let (answer, answered) = tokio::sync::oneshot::channel();
    let name = host.to_owned();
    let spawned = std::thread::Builder::new()
        .name("decnet-reconcile-lookup".to_owned())
        .spawn(move || {
            // The receiver is gone when the caller stopped waiting: nobody to tell.
            let _ = answer.send(lookup(&name, port));
        });
    if let Err(source) = spawned {
        let host = host.to_owned();
        return Err(if is_thread_limit(&source) {
            LookupError::ThreadLimit { host, source }
        } else {
            LookupError::NoThread { host, source }
        });
    }
    // The JoinHandle is dropped here: the thread is detached.
    match tokio::time::timeout_at(deadline, answered).await {
        Ok(Ok(found)) => found.map_err(|failure| failure.for_host(host)),
        // The thread ended without answering: it panicked inside the lookup.
        Ok(Err(_)) => Err(LookupError::Failed {
            host: host.to_owned(),
            detail: "the lookup thread ended without an answer".to_owned(),
        }),
        Err(_) => Err(LookupError::NoAnswer {
            host: host.to_owned(),
            waited: started.elapsed(),
        }),
    }
}

/// Why no connection to `(host, port)` was made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Lookup(#[from] LookupError),
    #[error("{}", io_failure(.0))]
    Io(#[from] io::Error),
}

/// A TCP connection to `(host, port)`, its addresses found by [`resolve`]
/// before `deadline`.
pub async fn connect_tcp(
    host: &str,
    port: u16,
    deadline: Instant,
) -> Result<tokio::net::TcpStream, ConnectError> {
    let addresses = resolve(host, port, deadline).await?;
    Ok(first_that_connects(addresses, tokio::net::TcpStream::connect).await?)
}

/// `connect` tried on each address in the resolver's order, as std's and
/// tokio's own `connect` do (`localhost` is often `::1` first, where the
/// server listens on `127.0.0.1` only): the first success, or the last
/// failure.
pub async fn first_that_connects<T, E, Attempt>(
    addresses: Vec<SocketAddr>,
    mut connect: impl FnMut(SocketAddr) -> Attempt,
) -> Result<T, E>
where
    Attempt: std::future::Future<Output = Result<T, E>>,
    E: From<io::Error>,
{
    let mut last = None;
    for address in addresses {
        match connect(address).await {
            Ok(connected) => return Ok(connected),
            Err(err) => last = Some(err),
        }
    }
    // `resolve` calls an empty answer "no such host", so this is only a guard.
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address").into()))
}

/// `host` as an IP address, if it is one: `10.0.0.1`, `::1`, `[::1]`.
pub fn ip_literal(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

/// Thread creation fails with `EAGAIN` at `RLIMIT_NPROC`, at the kernel's
/// `threads-max`, and at a cgroup's `pids.max` (systemd's `TasksMax=`).
fn is_thread_limit(err: &io::Error) -> bool {
    err.raw_os_error() == Some(libc::EAGAIN) || err.kind() == io::ErrorKind::WouldBlock
}

/// What `getaddrinfo` said, before we know which host to name in the message.
#[derive(Debug)]
enum Failure {
    NoSuchHost(String),
    Temporary(String),
    Other(String),
}

impl Failure {
    fn for_host(self, host: &str) -> LookupError {
        let host = host.to_owned();
        match self {
            Failure::NoSuchHost(detail) => LookupError::NoSuchHost { host, detail },
            Failure::Temporary(detail) => LookupError::Temporary { host, detail },
            Failure::Other(detail) => LookupError::Failed { host, detail },
        }
    }
}

/// The blocking lookup, as std's `(host, port).to_socket_addrs()` does it (TCP
/// addresses of any family), but with `getaddrinfo`'s own error code, so that
/// "no such host" and "the resolver failed for now" can be told apart.
fn lookup(host: &str, port: u16) -> Result<Vec<SocketAddr>, Failure> {
    use dns_lookup::{AddrInfoHints, LookupErrorKind};

    let hints = AddrInfoHints {
        socktype: libc::SOCK_STREAM,
        ..AddrInfoHints::default()
    };
    let found = dns_lookup::getaddrinfo(Some(host), None, Some(hints)).map_err(|err| {
        let detail = gai_words(&err);
        match err.kind() {
            LookupErrorKind::NoName | LookupErrorKind::NoData => Failure::NoSuchHost(detail),
            LookupErrorKind::Again => Failure::Temporary(detail),
            _ => Failure::Other(detail),
        }
    })?;
    let mut addresses = Vec::new();
    for info in found {
        let info = info.map_err(|err| Failure::Other(err.to_string()))?;
        let mut address = info.sockaddr;
        address.set_port(port);
        if !addresses.contains(&address) {
            addresses.push(address);
        }
    }
    if addresses.is_empty() {
        return Err(Failure::NoSuchHost("no address".to_owned()));
    }
    Ok(addresses)
}

/// `getaddrinfo`'s text without the crate's "failed to lookup address
/// information: " prefix (glibc: "Name or service not known").
fn gai_words(err: &dns_lookup::LookupError) -> String {
    let text = err.to_string();
    match text.strip_prefix("failed to lookup address information: ") {
        Some(words) => words.to_owned(),
        None => text,
    }
}

/// A duration as an operator reads it: `1.5 s`, `250 ms`.
struct Seconds(Duration);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.0.as_millis();
        if millis < 1000 {
            write!(f, "{millis} ms")
        } else {
            let secs = self.0.as_secs_f64();
            let text = format!("{secs:.1}");
            write!(f, "{} s", text.strip_suffix(".0").unwrap_or(&text))
        }
    }
}

/// What went wrong on a connection, as the end of an operator's sentence.
pub fn io_failure(err: &io::Error) -> String {
    use io::ErrorKind as K;
    match err.kind() {
        K::ConnectionRefused => "connection refused".to_owned(),
        K::NotFound => "no such socket".to_owned(),
        K::PermissionDenied => "permission denied".to_owned(),
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
            "the connection was lost".to_owned()
        }
        K::TimedOut | K::WouldBlock => "no answer in time".to_owned(),
        _ => crate::text::escape_untrusted(&err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a current-thread runtime")
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(20)
    }

    #[test]
    fn ip_literals_are_their_own_answer() {
        let rt = runtime();
        for (host, expected) in [
            ("10.0.0.1", "10.0.0.1:80"),
            ("::1", "[::1]:80"),
            ("[::1]", "[::1]:80"),
            ("[fe80::1]", "[fe80::1]:80"),
        ] {
            let found = rt
                .block_on(resolve(host, 80, soon()))
                .unwrap_or_else(|err| panic!("{host}: {err}"));
            assert_eq!(found, vec![expected.parse::<SocketAddr>().expect("addr")]);
        }
    }

    #[test]
    fn an_ip_literal_needs_no_time_left() {
        // No thread, no wait: even a spent deadline resolves a literal.
        let rt = runtime();
        let past = Instant::now();
        let found = rt
            .block_on(resolve("127.0.0.1", 6379, past))
            .expect("literal");
        assert_eq!(found, vec!["127.0.0.1:6379".parse().expect("addr")]);
    }

    #[test]
    fn names_are_not_ip_literals() {
        for host in [
            "localhost",
            "[localhost]",
            "1.2.3",
            "::1]",
            "[::1",
            "10.0.0.1:80",
            "",
        ] {
            assert_eq!(ip_literal(host), None, "{host}");
        }
    }

    #[test]
    fn localhost_resolves_through_the_system_resolver() {
        let rt = runtime();
        let found = rt
            .block_on(resolve("localhost", 3306, soon()))
            .expect("localhost is in /etc/hosts");
        assert!(!found.is_empty());
        for address in &found {
            assert!(address.ip().is_loopback(), "{address}");
            assert_eq!(address.port(), 3306);
        }
    }

    #[test]
    fn an_unknown_name_is_no_such_host_in_plain_words() {
        // `.invalid` is reserved (RFC 2606): no resolver may answer it.
        let rt = runtime();
        let err = rt
            .block_on(resolve("no-such-host.invalid", 80, soon()))
            .expect_err("reserved name");
        let text = err.to_string();
        // Without a reachable DNS server the resolver may also say "try again".
        assert!(
            matches!(
                err,
                LookupError::NoSuchHost { .. } | LookupError::Temporary { .. }
            ),
            "{text}"
        );
        assert!(
            text.starts_with("cannot resolve \"no-such-host.invalid\": "),
            "{text}"
        );
        assert!(
            !text.contains("failed to lookup address information"),
            "{text}"
        );
    }

    #[test]
    fn a_spent_deadline_starts_no_lookup() {
        let rt = runtime();
        let err = rt
            .block_on(resolve("localhost", 80, Instant::now()))
            .expect_err("no time left");
        assert!(matches!(err, LookupError::NoTimeLeft { .. }), "{err}");
    }

    #[test]
    fn a_name_with_a_nul_byte_is_a_failure_not_a_panic() {
        let rt = runtime();
        let err = rt
            .block_on(resolve("local\0host", 80, soon()))
            .expect_err("not a C string");
        assert!(matches!(err, LookupError::Failed { .. }), "{err}");
        assert!(err.to_string().contains(r#""local\0host""#), "{err}");
    }

    #[test]
    fn thread_limit_errors_are_named_as_such() {
        let at_limit = io::Error::from_raw_os_error(libc::EAGAIN);
        assert!(is_thread_limit(&at_limit));
        assert!(!is_thread_limit(&io::Error::from_raw_os_error(
            libc::ENOMEM
        )));
        let err = LookupError::ThreadLimit {
            host: "docker.example".to_owned(),
            source: at_limit,
        };
        assert!(
            err.to_string().contains(
                "cannot start a thread for the lookup: the system is at its thread limit"
            ),
            "{err}"
        );
    }

    /// A resolver that never answers: the lookup thread blocks for good.
    fn silent(_: &str, _: u16) -> Result<Vec<SocketAddr>, Failure> {
        loop {
            std::thread::park();
        }
    }

    #[test]
    fn a_silent_resolver_is_abandoned_at_the_deadline() {
        let rt = runtime();
        let started = std::time::Instant::now();
        let deadline = Instant::now() + Duration::from_millis(300);
        let err = rt
            .block_on(resolve_with("silent.example", 53, deadline, silent))
            .expect_err("no answer");
        // Dropping the runtime must not wait for the lookup thread either.
        drop(rt);
        let took = started.elapsed();
        eprintln!("a silent resolver ended the wait after {took:?} (deadline 300 ms)");
        assert!(matches!(err, LookupError::NoAnswer { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("the resolver did not answer within"),
            "{err}"
        );
        assert!(took < Duration::from_secs(20), "hung for {took:?}");
    }

    #[test]
    fn the_wait_does_not_block_the_runtime() {
        // Other tasks of the pass (a Docker listing) go on while a lookup waits.
        let rt = runtime();
        let deadline = Instant::now() + Duration::from_millis(300);
        let (lookup, ticks) = rt.block_on(async {
            let ticker = async {
                let mut ticks = 0;
                while Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    ticks += 1;
                }
                ticks
            };
            tokio::join!(resolve_with("silent.example", 53, deadline, silent), ticker)
        });
        assert!(lookup.is_err());
        assert!(ticks > 1, "the runtime was blocked: {ticks} tick(s)");
    }

    #[test]
    fn a_lookup_that_panics_is_a_failure() {
        fn panicking(_: &str, _: u16) -> Result<Vec<SocketAddr>, Failure> {
            panic!("inside the resolver");
        }
        let rt = runtime();
        let err = rt
            .block_on(resolve_with("h", 53, soon(), panicking))
            .expect_err("no answer");
        assert!(matches!(err, LookupError::Failed { .. }), "{err}");
    }

    /// The half of `a_process_at_its_thread_limit_gets_an_error_not_a_panic`
    /// that runs at the limit: started by it, never on its own.
    #[test]
    #[ignore = "run by a_process_at_its_thread_limit_gets_an_error_not_a_panic"]
    fn at_the_thread_limit() {
        let rt = runtime();
        let literal = rt.block_on(resolve("127.0.0.1", 6379, soon()));
        assert!(
            literal.is_ok(),
            "an IP literal needs no thread: {literal:?}"
        );
        let err = rt
            .block_on(resolve("localhost", 6379, soon()))
            .expect_err("no thread may start");
        assert!(matches!(err, LookupError::ThreadLimit { .. }), "{err}");
        println!("at the limit: {err}");
    }

    /// RLIMIT_NPROC counts every task of the real user id and root ignores
    /// it: the test binary runs again as a user id of its own with
    /// `prlimit --nproc=1` (libtest then runs the test on its main thread).
    /// Needs root, `setpriv` and `prlimit` (util-linux), as the suite does.
    #[test]
    fn a_process_at_its_thread_limit_gets_an_error_not_a_panic() {
        let exe = std::env::current_exe().expect("the test binary");
        let output = std::process::Command::new("setpriv")
            .args(["--reuid=64124", "--regid=64124", "--clear-groups", "--"])
            .args(["prlimit", "--nproc=1", "--"])
            .arg(&exe)
            .args(["--ignored", "--exact", "net::tests::at_the_thread_limit"])
            .args(["--nocapture", "--test-threads=1"])
            .output()
            .expect("setpriv and prlimit run (util-linux; this test needs root)");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "the run at the thread limit failed ({}):\n{stdout}\n{stderr}",
            output.status
        );
        assert!(
            stdout.contains("the system is at its thread limit"),
            "{stdout}"
        );
    }

    /// The half of `a_resolver_that_never_answers_ends_the_wait_and_the_process_on_time`
    /// that runs with the silent resolver: started by it, never on its own.
    #[test]
    #[ignore = "run by a_resolver_that_never_answers_ends_the_wait_and_the_process_on_time"]
    fn with_a_silent_resolver() {
        let rt = runtime();
        let started = std::time::Instant::now();
        let deadline = Instant::now() + Duration::from_secs(1);
        let err = rt
            .block_on(resolve("silent.decnet-test.example", 2375, deadline))
            .expect_err("no answer");
        rt.shutdown_background();
        println!("silent resolver: {err} (after {:?})", started.elapsed());
        assert!(matches!(err, LookupError::NoAnswer { .. }), "{err}");
    }

    /// The system's own resolver (glibc, NSS) pointed at a DNS server that
    /// reads queries and never answers (`scripts/faults/with-silent-dns`: a
    /// mount namespace of its own, root): the lookup is abandoned at its
    /// 1 s deadline, and the process exits without waiting for the resolver
    /// (which would hold it 150 s). Needs root, `unshare` and python3.
    #[test]
    fn a_resolver_that_never_answers_ends_the_wait_and_the_process_on_time() {
        let exe = std::env::current_exe().expect("the test binary");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/faults/with-silent-dns");
        // A loopback address of this run's own, so that runs at once do not meet.
        let pid = std::process::id();
        let address = format!("127.{}.{}.{}", 100 + pid % 100, (pid / 100) % 250 + 1, 53);
        let started = std::time::Instant::now();
        let output = std::process::Command::new("bash")
            .arg(&script)
            .arg(&exe)
            .args(["--ignored", "--exact", "net::tests::with_a_silent_resolver"])
            .args(["--nocapture", "--test-threads=1"])
            .env("DECNET_SILENT_DNS_ADDRESS", &address)
            .output()
            .expect("bash runs scripts/faults/with-silent-dns");
        let took = started.elapsed();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        eprintln!("with a silent resolver, the whole process took {took:?} (deadline 1 s)");
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "the run with a silent resolver failed ({}):\n{stdout}\n{stderr}",
            output.status
        );
        assert!(
            stdout.contains("the resolver did not answer within"),
            "{stdout}"
        );
        assert!(
            took < Duration::from_secs(60),
            "the process hung for {took:?}"
        );
    }

    #[test]
    fn waits_are_said_in_seconds() {
        let text = LookupError::NoAnswer {
            host: "h".to_owned(),
            waited: Duration::from_millis(1500),
        }
        .to_string();
        assert_eq!(
            text,
            r#"cannot resolve "h": the resolver did not answer within 1.5 s"#
        );
        assert_eq!(Seconds(Duration::from_secs(2)).to_string(), "2 s");
        assert_eq!(Seconds(Duration::from_millis(250)).to_string(), "250 ms");
    }

    #[test]
    fn io_failures_read_as_what_happened() {
        for (kind, words) in [
            (io::ErrorKind::ConnectionRefused, "connection refused"),
            (io::ErrorKind::NotFound, "no such socket"),
            (io::ErrorKind::BrokenPipe, "the connection was lost"),
            (io::ErrorKind::UnexpectedEof, "the connection was lost"),
            (io::ErrorKind::TimedOut, "no answer in time"),
        ] {
            assert_eq!(io_failure(&io::Error::from(kind)), words, "{kind:?}");
        }
        let odd = io::Error::other("bad\u{1b}[2J");
        assert_eq!(io_failure(&odd), "bad\\u{1b}[2J");
    }
}
