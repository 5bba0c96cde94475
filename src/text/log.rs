//! The one stderr sink every log record and error goes through: writing never
//! fails the process, each record stays one line with its control and bidi
//! characters escaped, and every secret of the invocation is masked.

use std::io::Write;
use std::sync::Arc;

use super::sanitize::escape_controls;
use super::secrets::{redact_urls_in, Secrets};

/// Everything this process writes to stderr: log records and errors. Writing
/// never fails the process (a full disk or a closed pipe loses the text, not
/// the pass); each record stays one line, its control and bidi characters
/// escaped, so text quoted from Docker or Redis cannot forge or reorder a
/// journal line; and every secret is masked.
#[derive(Debug, Clone)]
pub struct StderrSink {
    secrets: Arc<Secrets>,
    /// Let SGR colour sequences through (our own, when stderr is a terminal).
    colour: bool,
}

impl StderrSink {
    pub fn new(secrets: Arc<Secrets>, colour: bool) -> Self {
        StderrSink { secrets, colour }
    }

    /// Writes one record as one line.
    pub fn line(&self, record: &str) {
        let mut line = self.clean(record);
        line.push('\n');
        self.write(&line);
    }

    /// Writes text of several lines (clap's usage errors), each cleaned alike.
    pub fn text(&self, text: &str) {
        let cleaned: Vec<String> = text.split('\n').map(|line| self.clean(line)).collect();
        self.write(&cleaned.join("\n"));
    }

    fn clean(&self, record: &str) -> String {
        let masked = redact_urls_in(&self.secrets.mask(record));
        if self.colour {
            escape_controls_keeping_colour(&masked)
        } else {
            escape_controls(&masked)
        }
    }

    fn write(&self, text: &str) {
        // Nowhere is left to report a failure to write stderr.
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }
}

/// [`escape_controls`], except for SGR sequences (`ESC [ digits ; m`), which can
/// only colour text: the log formatter's own level colours.
fn escape_controls_keeping_colour(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('\u{1b}') {
        out.push_str(&escape_controls(&rest[..at]));
        let sequence = rest[at + 1..].strip_prefix('[').and_then(|params| {
            let len = params
                .find(|c: char| !(c.is_ascii_digit() || c == ';'))
                .filter(|&end| params[end..].starts_with('m'))?;
            Some(len + 3)
        });
        match sequence {
            Some(len) => {
                out.push_str(&rest[at..at + len]);
                rest = &rest[at + len..];
            }
            None => {
                out.push_str("\\u{1b}");
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(&escape_controls(rest));
    out
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for StderrSink {
    type Writer = StderrRecord;

    fn make_writer(&'a self) -> StderrRecord {
        StderrRecord {
            sink: self.clone(),
            buffer: Vec::new(),
        }
    }
}

/// One log record, gathered whole and written as one line when dropped.
pub struct StderrRecord {
    sink: StderrSink,
    buffer: Vec<u8>,
}

impl Write for StderrRecord {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for StderrRecord {
    fn drop(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.buffer);
        self.sink.line(text.strip_suffix('\n').unwrap_or(&text));
    }
}

/// Opens `/dev/null` on whichever of stdin, stdout and stderr the caller
/// closed (`2>&-`), so that no socket or file this process opens later takes
/// their place and receives its log lines.
pub fn fill_closed_standard_streams() {
    use std::os::fd::{AsRawFd, IntoRawFd};
    for _ in 0..3 {
        let Ok(null) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
        else {
            return;
        };
        if null.as_raw_fd() > 2 {
            return;
        }
        // Stays open for the life of the process, in the standard stream's place.
        let _ = null.into_raw_fd();
    }
}

/// Sends every `tracing` record at `level` or above to stderr through the sink,
/// coloured only when `colour` says so.
pub fn init(level: tracing::Level, secrets: &Arc<Secrets>, colour: bool) {
    tracing_subscriber::fmt()
        .with_writer(StderrSink::new(Arc::clone(secrets), colour))
        .with_max_level(level)
        .with_ansi(colour)
        .without_time()
        .with_target(false)
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_sequences_survive_only_when_they_only_colour() {
        assert_eq!(
            escape_controls_keeping_colour("\u{1b}[33mWARN\u{1b}[0m x\u{1b}[2J\u{1b}"),
            "\u{1b}[33mWARN\u{1b}[0m x\\u{1b}[2J\\u{1b}"
        );
    }
}
