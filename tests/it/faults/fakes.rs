//! The fakes of the fault proofs: peers that fail in ways the real dockerd,
//! Redis and filesystem cannot be made to on demand (a daemon answering
//! garbage or flooding, a Redis hanging up mid-pipeline, a disk that fills
//! up), and proxies that record or forward what the tool asks the real ones.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A tmpfs of its own, unmounted on drop. Needs root (CAP_SYS_ADMIN), as the
/// test machine and CI have: the proof fails loudly rather than skip without.
pub struct TinyFs {
    pub path: PathBuf,
}

impl TinyFs {
    pub fn mount(path: &Path, size: &str) -> TinyFs {
        std::fs::create_dir_all(path).expect("mount point");
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .expect("run mount");
        assert!(
            output.status.success(),
            "mounting a {size} tmpfs at {} failed ({}): the full-disk proof needs root \
             with CAP_SYS_ADMIN, as scripts/test and scripts/reliability have",
            path.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        TinyFs {
            path: path.to_owned(),
        }
    }

    /// Fills the filesystem, leaving `spare` bytes (rounded to pages) free.
    pub fn fill(&self, spare: u64) -> PathBuf {
        let filler = self.path.join("filler");
        let mut file = std::fs::File::create(&filler).expect("filler");
        let page = [0u8; 4096];
        while file.write_all(&page).is_ok() {}
        drop(file);
        let len = std::fs::metadata(&filler).expect("filler size").len();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&filler)
            .expect("filler");
        file.set_len(len.saturating_sub(spare)).expect("free some");
        filler
    }

    pub fn remount(&self, option: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{option}")])
            .arg(&self.path)
            .status()
            .expect("run mount");
        assert!(status.success(), "remount {option}");
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// How a fake Docker daemon answers one request.
#[derive(Clone, Copy)]
pub enum Daemon {
    /// Bytes that are not HTTP, then hang up.
    Garbage,
    /// Bytes that are not HTTP, and the connection held open.
    GarbageThenSilence,
    /// `500 Internal Server Error` to everything.
    Error500,
    /// A valid `/version`, then a container list that is not JSON.
    NotJson,
    /// Headers promising a body that never comes.
    StallMidBody,
    /// Accepts, then closes at once.
    HangUp,
    /// `500` with this JSON body.
    ErrorSaying(&'static str),
}

fn http(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves `daemon` on a Unix socket at `path`; returns the `--docker-host` URL.
pub fn fake_docker(path: &Path, daemon: Daemon) -> String {
    let listener = UnixListener::bind(path).expect("bind fake docker");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve_docker(stream, daemon));
        }
    });
    format!("unix://{}", path.display())
}

fn serve_docker(mut stream: UnixStream, daemon: Daemon) {
    let mut held = Vec::new();
    loop {
        let Some(request_line) = read_request_head(&mut stream) else {
            return;
        };
        let reply = match daemon {
            Daemon::HangUp => return,
            Daemon::Garbage => {
                let _ = stream.write_all(b"\x16\x03\x01garbage\r\n\x00\xff\r\n\r\n");
                return;
            }
            Daemon::GarbageThenSilence => {
                let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.2\r\n");
                held.push(stream);
                std::thread::sleep(Duration::from_secs(60));
                return;
            }
            Daemon::Error500 => http("500 Internal Server Error", r#"{"message":"server error"}"#),
            Daemon::ErrorSaying(body) => http("500 Internal Server Error", body),
            Daemon::NotJson if request_line.contains("/version") => http(
                "200 OK",
                r#"{"ApiVersion":"1.41","MinAPIVersion":"1.12","Version":"20.10.0"}"#,
            ),
            Daemon::NotJson => http("200 OK", "<html>not a container list</html>"),
            Daemon::StallMidBody => {
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n[{\"Na",
                );
                std::thread::sleep(Duration::from_secs(60));
                return;
            }
        };
        if stream.write_all(&reply).is_err() {
            return;
        }
    }
}

/// Reads one request head (through the blank line); `None` at EOF.
fn read_request_head(stream: &mut impl Read) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    let text = String::from_utf8_lossy(&head);
    Some(text.lines().next().unwrap_or_default().to_owned())
}

/// Forwards every connection on `listen` to `upstream`, recording each request
/// line the client sends (bodies are skipped by their Content-Length).
pub fn recording_proxy(listen: &Path, upstream: &Path) -> Arc<Mutex<Vec<String>>> {
    let listener = UnixListener::bind(listen).expect("bind proxy");
    let requests = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&requests);
    let upstream = upstream.to_owned();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let (mut client_in, mut daemon_out) = to_daemon(client, &upstream);
            let recorded = Arc::clone(&recorded);
            std::thread::spawn(move || {
                let mut parser = RequestLines::default();
                let mut buffer = [0u8; 8192];
                loop {
                    let read = match client_in.read(&mut buffer) {
                        Ok(0) | Err(_) => break,
                        Ok(read) => read,
                    };
                    for line in parser.feed(&buffer[..read]) {
                        recorded.lock().expect("record").push(line);
                    }
                    if daemon_out.write_all(&buffer[..read]).is_err() {
                        break;
                    }
                }
                daemon_out.close_write();
            });
        }
    });
    requests
}

/// Splits a client's byte stream into HTTP/1.1 requests and yields their lines.
#[derive(Default)]
struct RequestLines {
    pending: Vec<u8>,
    body_left: usize,
}

impl RequestLines {
    fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(bytes);
        let mut lines = Vec::new();
        loop {
            if self.body_left > 0 {
                let skip = self.body_left.min(self.pending.len());
                self.pending.drain(..skip);
                self.body_left -= skip;
                if self.body_left > 0 {
                    break;
                }
            }
            let Some(end) = self.pending.windows(4).position(|w| w == b"\r\n\r\n") else {
                break;
            };
            let head = String::from_utf8_lossy(&self.pending[..end]).into_owned();
            self.pending.drain(..end + 4);
            let mut head_lines = head.lines();
            lines.push(head_lines.next().unwrap_or_default().to_owned());
            for header in head_lines {
                let lower = header.to_ascii_lowercase();
                if let Some(len) = lower.strip_prefix("content-length:") {
                    self.body_left = len.trim().parse().unwrap_or(0);
                }
                if lower.starts_with("transfer-encoding:") {
                    lines.push(format!("(a request with a body: {header})"));
                }
            }
        }
        lines
    }
}

/// How a fake Redis server answers.
#[derive(Clone, Copy)]
pub enum FakeRedis {
    /// Reads the first bytes of the connection, then closes it.
    CloseAfterFirstBytes,
    /// Answers the handshake and the first PUBLISH, then closes mid-pipeline.
    CloseMidPipeline,
    /// Answers every command with an error, as a Redis requiring a password does.
    Refuses,
    /// Answers every command with this error line.
    RefusesSaying(&'static str),
    /// Answers with bytes that are not RESP at all.
    AnswersGarbage,
}

pub fn fake_redis(behaviour: FakeRedis) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake redis");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve_redis(stream, behaviour));
        }
    });
    port
}

fn serve_redis(mut stream: std::net::TcpStream, behaviour: FakeRedis) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let read = match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        match behaviour {
            FakeRedis::CloseAfterFirstBytes => return,
            FakeRedis::AnswersGarbage => {
                let _ = stream.write_all(b"\x00\x01 not RESP\r\n");
                return;
            }
            _ => {}
        }
        buffer.extend_from_slice(&chunk[..read]);
        let (commands, used) = resp_commands(&buffer);
        buffer.drain(..used);
        for command in commands {
            let name = command.first().map(|c| c.to_ascii_uppercase());
            let reply: &[u8] = match (behaviour, name.as_deref()) {
                (FakeRedis::Refuses, _) => b"-NOAUTH Authentication required.\r\n",
                (FakeRedis::RefusesSaying(error), _) => &[b"-", error.as_bytes(), b"\r\n"].concat(),
                (_, Some("PUBLISH")) => {
                    let _ = stream.write_all(b":1\r\n");
                    return;
                }
                _ => b"+OK\r\n",
            };
            if stream.write_all(reply).is_err() {
                return;
            }
        }
    }
}

/// The complete RESP commands at the start of `buffer`, and the bytes they take.
fn resp_commands(buffer: &[u8]) -> (Vec<Vec<String>>, usize) {
    fn line(buffer: &[u8], at: usize) -> Option<(&[u8], usize)> {
        let end = buffer[at..].windows(2).position(|w| w == b"\r\n")? + at;
        Some((&buffer[at..end], end + 2))
    }
    fn number(bytes: &[u8]) -> Option<usize> {
        std::str::from_utf8(bytes).ok()?.parse().ok()
    }
    let mut commands = Vec::new();
    let mut used = 0;
    'commands: while let Some((header, mut at)) = line(buffer, used) {
        let Some(count) = header.strip_prefix(b"*").and_then(number) else {
            break;
        };
        let mut command = Vec::new();
        for _ in 0..count {
            let Some((header, start)) = line(buffer, at) else {
                break 'commands;
            };
            let Some(len) = header.strip_prefix(b"$").and_then(number) else {
                break 'commands;
            };
            if buffer.len() < start + len + 2 {
                break 'commands;
            }
            command.push(String::from_utf8_lossy(&buffer[start..start + len]).into_owned());
            at = start + len + 2;
        }
        commands.push(command);
        used = at;
    }
    (commands, used)
}

/// A Docker daemon whose one container `name` is in the state the test sets,
/// and which reports the request line of every request it receives on `served`.
pub fn scripted_docker(
    path: &Path,
    container: &str,
) -> (
    String,
    Arc<Mutex<&'static str>>,
    std::sync::mpsc::Receiver<String>,
) {
    let listener = UnixListener::bind(path).expect("bind scripted docker");
    let state = Arc::new(Mutex::new("running"));
    let (served, requests) = std::sync::mpsc::channel();
    let (container, current) = (container.to_owned(), Arc::clone(&state));
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let (container, current, served) =
                (container.clone(), Arc::clone(&current), served.clone());
            std::thread::spawn(move || {
                while let Some(request_line) = read_request_head(&mut stream) {
                    let _ = served.send(request_line.clone());
                    let body = if request_line.contains("/containers/json") {
                        let state = *current.lock().expect("state");
                        format!(r#"[{{"Id":"c1","Names":["/{container}"],"State":"{state}"}}]"#)
                    } else {
                        r#"{"ApiVersion":"1.41","MinAPIVersion":"1.12","Version":"20.10.0"}"#
                            .to_owned()
                    };
                    if stream.write_all(&http("200 OK", &body)).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (format!("unix://{}", path.display()), state, requests)
}

/// Waits for the next container list among `requests`.
pub fn next_listing(requests: &std::sync::mpsc::Receiver<String>, who: &str) {
    loop {
        let request = requests
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("{who} listed no containers"));
        if request.contains("/containers/json") {
            return;
        }
    }
}

/// How a fake daemon floods its container list.
#[derive(Clone, Copy, Debug)]
pub enum Flood {
    /// No length, the body runs until the connection closes, which it never does.
    Endless,
    /// `Content-Length` of 100 GB, then bytes as fast as they go.
    HugeContentLength,
    /// `Transfer-Encoding: chunked`, 64 kB chunks, forever.
    ChunkedForever,
}

/// A daemon that answers `/version` properly and floods `/containers/json`.
pub fn flooding_docker(path: &Path, flood: Flood) -> String {
    let listener = UnixListener::bind(path).expect("bind flooding docker");
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                while let Some(request_line) = read_request_head(&mut stream) {
                    if !request_line.contains("/containers/json") {
                        let version =
                            r#"{"ApiVersion":"1.41","MinAPIVersion":"1.12","Version":"20.10.0"}"#;
                        if stream.write_all(&http("200 OK", version)).is_err() {
                            return;
                        }
                        continue;
                    }
                    let head = match flood {
                        Flood::Endless => "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n".to_owned(),
                        Flood::HugeContentLength => "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000000000\r\n\r\n".to_owned(),
                        Flood::ChunkedForever => "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_owned(),
                    };
                    let entry = br#"{"Id":"c","Names":["/flood"],"State":"running"},"#;
                    let data: Vec<u8> = entry.iter().copied().cycle().take(64 * 1024).collect();
                    let block = match flood {
                        Flood::ChunkedForever => {
                            [format!("{:x}\r\n", data.len()).as_bytes(), &data, b"\r\n"].concat()
                        }
                        Flood::Endless | Flood::HugeContentLength => data,
                    };
                    let opening: &[u8] = match flood {
                        Flood::ChunkedForever => b"1\r\n[\r\n",
                        Flood::Endless | Flood::HugeContentLength => b"[",
                    };
                    if stream.write_all(head.as_bytes()).is_err()
                        || stream.write_all(opening).is_err()
                    {
                        return;
                    }
                    // Until the client hangs up.
                    while stream.write_all(&block).is_ok() {}
                    return;
                }
            });
        }
    });
    format!("unix://{}", path.display())
}

/// A TCP port on loopback forwarding every connection to the Unix socket `upstream`.
pub fn tcp_forwarder(upstream: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let (mut client_in, mut daemon_out) = to_daemon(client, Path::new(upstream));
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut client_in, &mut daemon_out);
                daemon_out.close_write();
            });
        }
    });
    port
}

/// A connection either proxy takes, on TCP or a Unix socket.
trait Duplex: Read + Write + Send + Sized + 'static {
    fn duplicate(&self) -> Self;
    fn close_write(&self);
}

impl Duplex for TcpStream {
    fn duplicate(&self) -> Self {
        self.try_clone().expect("clone")
    }
    fn close_write(&self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }
}

impl Duplex for UnixStream {
    fn duplicate(&self) -> Self {
        self.try_clone().expect("clone")
    }
    fn close_write(&self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }
}

/// Connects `client` to the real dockerd at `upstream`, the daemon's answers
/// copied back to it on a thread of their own; returns the client's reading
/// end and the daemon's writing end, for the caller to carry the requests.
fn to_daemon<C: Duplex>(client: C, upstream: &Path) -> (C, UnixStream) {
    let daemon = UnixStream::connect(upstream).expect("the real dockerd");
    let (client_in, daemon_out) = (client.duplicate(), daemon.duplicate());
    let (mut daemon_in, mut client_out) = (daemon, client);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut daemon_in, &mut client_out);
        client_out.close_write();
    });
    (client_in, daemon_out)
}
