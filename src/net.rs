//! What the pass's connections share: a failed exchange with a server, worded
//! the same for MySQL, Redis, DECNET's bus and Docker.

use std::io;

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
