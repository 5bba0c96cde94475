//! DECNET's own bus, as `decnet bus` serves it on a Unix socket
//! (`decnet/bus/protocol.py`): a frame is an ASCII header line `VERB args\n`,
//! a 4-byte big-endian body length and the JSON body. A pass sends `HELLO`,
//! one `PUB <channel>` per event, then `BYE`, on one connection.

use std::io;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tracing::debug;

use super::Event;

/// DECNET's server drops the connection on a header line longer than this, newline included…
const MAX_HEADER_BYTES: usize = 4096;
/// …or on a body longer than this.
const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot connect: {}", crate::net::io_failure(.0))]
    Connect(io::Error),
    #[error("sending the events: {}", crate::net::io_failure(.0))]
    Send(io::Error),
    #[error("the connection broke before the bus had read every event: {}", crate::net::io_failure(.0))]
    Dropped(io::Error),
    #[error("the bus did not read every event and close the connection within {0:?}")]
    NoClose(Duration),
    #[error("cannot tell whether the bus read every event: {}", crate::net::io_failure(.0))]
    Unknown(io::Error),
}

/// Publishes `events` in order, within `timeout` in all. The bus never
/// acknowledges a frame; it closes the connection once it has read `BYE`, so
/// that close is the sign that every event reached it. Events whose frame
/// exceeds DECNET's limits are left out (the server would drop the connection,
/// losing every later event) and returned.
pub async fn publish<'e>(
    socket: &Path,
    timeout: Duration,
    events: &'e [Event],
) -> Result<Vec<&'e Event>, BusError> {
    let mut too_large = Vec::new();
    let mut wire = hello("decnet-reconcile");
    for event in events {
        if fits("PUB", &event.channel, event.message.as_bytes()) {
            push_frame(&mut wire, "PUB", &event.channel, event.message.as_bytes());
        } else {
            too_large.push(event);
        }
    }
    if too_large.len() == events.len() {
        return Ok(too_large);
    }
    push_frame(&mut wire, "BYE", "", b"");
    exchange(socket, timeout, &wire, events.len() - too_large.len()).await?;
    Ok(too_large)
}

/// Whether the bus takes a connection and reads a greeting to its end
/// (`HELLO`, then `BYE`) within `timeout`, for `doctor`: nothing is published.
pub async fn probe(socket: &Path, timeout: Duration) -> Result<(), BusError> {
    let mut wire = hello("decnet-reconcile-doctor");
    push_frame(&mut wire, "BYE", "", b"");
    exchange(socket, timeout, &wire, 0).await
}

/// The `HELLO` frame that opens a connection, naming `client` and this process.
fn hello(client: &str) -> Vec<u8> {
    let mut wire = Vec::new();
    push_frame(
        &mut wire,
        "HELLO",
        &format!("{client}[{}]", std::process::id()),
        b"",
    );
    wire
}

/// Sends `wire` (`frames` events among its frames) and waits for the bus to
/// close the connection having read all of it, within `timeout` in all.
async fn exchange(
    socket: &Path,
    timeout: Duration,
    wire: &[u8],
    frames: usize,
) -> Result<(), BusError> {
    let exchange = async {
        let mut stream = UnixStream::connect(socket)
            .await
            .map_err(BusError::Connect)?;
        stream.write_all(wire).await.map_err(BusError::Send)?;
        debug!(
            "{frames} event(s) written to {}; waiting for the bus to close the connection",
            crate::text::escape_untrusted(&socket.to_string_lossy())
        );
        // A server that died with frames unread resets the connection. A
        // publisher is sent nothing, but whatever comes is read and dropped
        // until the close.
        let mut discard = [0_u8; 512];
        loop {
            match stream.read(&mut discard).await {
                Ok(0) => break,
                Ok(_) => continue,
                Err(err) => return Err(BusError::Dropped(err)),
            }
        }
        all_read(&stream).await
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or(Err(BusError::NoClose(timeout)))
}

/// Waits until the peer has read everything sent on `stream` and closed it.
/// End of file says only that it stopped sending: a peer may shut down its
/// write side and never read. A Unix socket tells more once the peer closes
/// the connection: it is hung up, and if the peer left any of what was sent
/// unread, the kernel records `ECONNRESET` on our side. So the hang-up with
/// no error is the proof; the caller bounds the wait.
async fn all_read(stream: &UnixStream) -> Result<(), BusError> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    loop {
        let mut polled = [PollFd::new(stream, PollFlags::empty())];
        // A zero timeout: this only looks, the wait is the sleep below.
        poll(&mut polled, Some(&Timespec::default()))
            .map_err(|err| BusError::Unknown(err.into()))?;
        if polled[0].revents().contains(PollFlags::HUP) {
            return match stream.take_error() {
                Ok(None) => Ok(()),
                Ok(Some(err)) => Err(BusError::Dropped(err)),
                Err(err) => Err(BusError::Unknown(err)),
            };
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Whether DECNET's server accepts a frame of `verb args` with this body.
fn fits(verb: &str, args: &str, body: &[u8]) -> bool {
    header(verb, args).len() <= MAX_HEADER_BYTES && body.len() <= MAX_BODY_BYTES
}

fn header(verb: &str, args: &str) -> String {
    if args.is_empty() {
        format!("{verb}\n")
    } else {
        format!("{verb} {args}\n")
    }
}

/// Appends one frame; the caller has checked it `fits`, so its length fits in 4 bytes.
fn push_frame(wire: &mut Vec<u8>, verb: &str, args: &str, body: &[u8]) {
    wire.extend_from_slice(header(verb, args).as_bytes());
    let length = u32::try_from(body.len())
        .unwrap_or_else(|_| unreachable!("a frame body over 4 GiB: {}", body.len()));
    wire.extend_from_slice(&length.to_be_bytes());
    wire.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_header_line_length_and_body() {
        let mut wire = Vec::new();
        push_frame(&mut wire, "PUB", "decky.local:d1.state", b"{}");
        push_frame(&mut wire, "BYE", "", b"");
        assert_eq!(wire, b"PUB decky.local:d1.state\n\0\0\0\x02{}BYE\n\0\0\0\0");
    }

    #[test]
    fn frames_over_decnets_limits_do_not_fit() {
        let topic = "t".repeat(MAX_HEADER_BYTES - "PUB \n".len());
        assert!(fits("PUB", &topic, b"{}"));
        assert!(!fits("PUB", &format!("{topic}x"), b"{}"));
        assert!(fits("PUB", "t", &vec![b' '; MAX_BODY_BYTES]));
        assert!(!fits("PUB", "t", &vec![b' '; MAX_BODY_BYTES + 1]));
    }
}
