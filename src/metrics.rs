//! Prometheus metrics of the passes, as a node_exporter textfile (issue 17).
//!
//! A pass is a one-shot process, so nothing stays in memory between passes:
//! every pass reads the previous file to carry its counters over, adds its
//! own figures and replaces the file atomically (a temporary file in the same
//! directory, fsync, rename), so that node_exporter's textfile collector never
//! reads half a file. Dry runs must not call [`record`]: they change nothing,
//! and neither do their metrics.
//!
//! The file is Prometheus's text format 0.0.4, which the textfile collector
//! reads (not OpenMetrics), with `# HELP` and `# TYPE` lines, `_total` counters
//! and base units (seconds). This module writes and reads it by hand, one
//! escape and its inverse: `prometheus-client` writes OpenMetrics, whose
//! counters promtool and the textfile collector read as another family;
//! tikv's `prometheus` needs a long-lived registry and parses nothing; the
//! parsers on crates.io split label values on commas, are LGPL, or keep the
//! escapes. Prometheus's own `promtool check metrics` judges the result
//! (`scripts/metrics-check`).
//!
//! Nothing here fails a pass: every problem is a [`Warning`] for the caller to
//! log, and the pass keeps its exit code.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{File, Permissions};
use std::io::{self, Write as _};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::core::{DockerStatus, Report};

/// The option that names the file (none: no metrics).
pub const OPTION: &str = "--metrics-file";
/// Its environment variable.
pub const ENV: &str = "DECNET_RECONCILE_METRICS_FILE";
/// Where the packaged unit writes it: the directory of Debian's
/// `prometheus-node-exporter` textfile collector.
pub const DEBIAN_PATH: &str = "/var/lib/prometheus/node-exporter/decnet-reconcile.prom";

/// The states of DECNET's rows (SPEC §9): always written, 0 when no decky is
/// in them, so that a state that empties shows 0 instead of vanishing.
pub const KNOWN_STATES: [&str; 7] = [
    "pending",
    "running",
    "failed",
    "degraded",
    "torn_down",
    "tearing_down",
    "teardown_failed",
];

/// How long [`record`] waits for another pass that is writing the same file
/// (one of the bounds a pass's worst case sums, docs/operating.md "Time").
pub const LOCK_WAIT: Duration = Duration::from_secs(1);

const PASSES: &str = "decnet_reconcile_passes_total";
const CHANGES: &str = "decnet_reconcile_changes_total";
const EVENTS_LOST: &str = "decnet_reconcile_events_lost_total";
const DURATION: &str = "decnet_reconcile_last_pass_duration_seconds";
const LAST_SUCCESS: &str = "decnet_reconcile_last_success_timestamp_seconds";
const DOCKER_UP: &str = "decnet_reconcile_docker_up";
const DECKIES: &str = "decnet_reconcile_deckies";
const INFO: &str = "decnet_reconcile_info";

/// One finished pass, as the caller saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Pass {
    /// This host's id (`--host-uuid`).
    pub host_uuid: String,
    /// When the pass ended.
    pub finished_at: SystemTime,
    /// How long it took, failed or not.
    pub duration: Duration,
    /// `Some(true)` when Docker answered, `Some(false)` when it was unknown,
    /// `None` when the pass failed before asking it.
    pub docker_up: Option<bool>,
    pub outcome: Outcome,
}

impl Pass {
    /// A pass that succeeded (converged or applied its plan), ending now,
    /// from its report: the plan's counts, the events the bus lost, what
    /// Docker said and this host's rows by state after the pass.
    pub fn succeeded(report: &Report, duration: Duration) -> Pass {
        let counts = report.plan.counts();
        Pass {
            host_uuid: report.host_uuid.clone(),
            finished_at: SystemTime::now(),
            duration,
            docker_up: Some(report.docker == DockerStatus::Ok),
            outcome: Outcome::Succeeded {
                inserted: counts.inserted as u64,
                deleted: counts.deleted as u64,
                updated: counts.updated as u64,
                events_lost: report.publish_failed as u64,
                deckies: report
                    .rows_by_state
                    .iter()
                    .map(|(state, count)| (state.clone(), *count as u64))
                    .collect(),
            },
        }
    }

    /// A pass that failed (exit 1: nothing written), ending now; `docker` is
    /// what Docker said, when the pass got as far as asking it.
    pub fn failed(host_uuid: &str, docker: Option<DockerStatus>, duration: Duration) -> Pass {
        Pass {
            host_uuid: host_uuid.to_owned(),
            finished_at: SystemTime::now(),
            duration,
            docker_up: docker.map(|status| status == DockerStatus::Ok),
            outcome: Outcome::Failed,
        }
    }
}

/// How a pass ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Converged (`ok`) or applied changes (`changed`).
    Succeeded {
        inserted: u64,
        deleted: u64,
        updated: u64,
        /// Events that could not be published (the bus down, a bad channel).
        events_lost: u64,
        /// This host's rows after the pass, by state.
        deckies: BTreeMap<String, u64>,
    },
    /// Exit 1: nothing was written, so only the error is counted; the
    /// gauges it has no new value for keep the previous file's.
    Failed,
}

/// A problem with the metrics file. Never a failed pass: the caller logs it.
#[derive(Debug, thiserror::Error)]
pub enum Warning {
    #[error("no metrics file at {} yet: its counters start at 0", path.display())]
    NoPrevious { path: PathBuf },
    #[error("cannot read the metrics file {} ({source}): its counters start again at 0", path.display())]
    Unreadable { path: PathBuf, source: io::Error },
    #[error("the metrics file {} is not what decnet-reconcile writes (line {line}: {reason}): its counters start again at 0", path.display())]
    Garbled {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("another pass kept the metrics directory {} locked for {LOCK_WAIT:?}: this pass is not counted", dir.display())]
    Locked { dir: PathBuf },
    #[error("cannot write the metrics file {}: {source}; this pass is not counted", path.display())]
    Write { path: PathBuf, source: io::Error },
}

impl Warning {
    /// Whether this is the packaged default's directory missing from a host
    /// without `prometheus-node-exporter`: that is a choice, not a fault, and
    /// the caller need not warn about it at every pass.
    pub fn is_no_collector(&self) -> bool {
        match self {
            Warning::Write { path, source } => {
                path == Path::new(DEBIAN_PATH)
                    && source.kind() == io::ErrorKind::NotFound
                    && !directory_of(path).exists()
            }
            _ => false,
        }
    }
}

/// Every value of the file: what [`parse`] reads and [`render`] writes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub passes_ok: u64,
    pub passes_changed: u64,
    pub passes_error: u64,
    pub inserted: u64,
    pub deleted: u64,
    pub updated: u64,
    pub events_lost: u64,
    /// `None` before the first pass.
    pub last_pass_duration_seconds: Option<f64>,
    /// 0 until a pass succeeds, so that "no success for 2 minutes" fires for
    /// a host that never had one.
    pub last_success_timestamp_seconds: f64,
    /// `None` until a pass has asked Docker.
    pub docker_up: Option<bool>,
    /// `None` until a pass has succeeded.
    pub deckies: Option<BTreeMap<String, u64>>,
    /// Only written (the info metric), never carried over.
    pub host_uuid: Option<String>,
}

impl Snapshot {
    /// The values after `pass`, from those of the previous file.
    pub fn after(mut self, pass: &Pass) -> Snapshot {
        self.last_pass_duration_seconds = Some(pass.duration.as_secs_f64());
        if pass.docker_up.is_some() {
            self.docker_up = pass.docker_up;
        }
        self.host_uuid = Some(pass.host_uuid.clone());
        match &pass.outcome {
            Outcome::Failed => self.passes_error += 1,
            Outcome::Succeeded {
                inserted,
                deleted,
                updated,
                events_lost,
                deckies,
            } => {
                if inserted + deleted + updated == 0 {
                    self.passes_ok += 1;
                } else {
                    self.passes_changed += 1;
                }
                self.inserted += inserted;
                self.deleted += deleted;
                self.updated += updated;
                self.events_lost += events_lost;
                let mut by_state: BTreeMap<String, u64> =
                    KNOWN_STATES.iter().map(|s| (s.to_string(), 0)).collect();
                by_state.extend(deckies.iter().map(|(s, n)| (s.clone(), *n)));
                self.deckies = Some(by_state);
                self.last_success_timestamp_seconds = pass
                    .finished_at
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs_f64();
            }
        }
        self
    }
}

/// Writes `pass` into the metrics file at `path`, carrying the previous
/// file's counters over. Returns the warnings for the caller to log: at most
/// one about the previous file and one about writing.
pub fn record(path: &Path, pass: &Pass) -> Vec<Warning> {
    record_within(path, pass, LOCK_WAIT)
}

fn record_within(path: &Path, pass: &Pass, lock_wait: Duration) -> Vec<Warning> {
    let write_warning = |source| {
        vec![Warning::Write {
            path: path.to_owned(),
            source,
        }]
    };
    let dir = directory_of(path);
    // Two passes at once (the timer and an operator) would each read the old
    // counters and the last rename would drop the other's pass: the lock
    // makes read, write and rename one step. The directory itself is locked,
    // so no lock file lies beside the .prom files.
    let dir_handle = match File::open(dir) {
        Ok(handle) => handle,
        Err(source) => return write_warning(source),
    };
    if !lock(&dir_handle, lock_wait) {
        return vec![Warning::Locked {
            dir: dir.to_owned(),
        }];
    }
    let mut warnings = Vec::new();
    let previous = match read_previous(path) {
        Ok(previous) => previous,
        Err(warning) => {
            warnings.push(warning);
            Snapshot::default()
        }
    };
    let text = render(&previous.after(pass));
    if let Err(source) = replace(path, dir, &dir_handle, &text) {
        warnings.extend(write_warning(source));
    }
    // The lock goes with `dir_handle`.
    warnings
}

fn directory_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Takes the directory's exclusive lock, waiting at most `wait`.
fn lock(dir: &File, wait: Duration) -> bool {
    use rustix::fs::{flock, FlockOperation};
    let start = Instant::now();
    loop {
        match flock(dir, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return true,
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::WOULDBLOCK) if start.elapsed() < wait => {
                std::thread::sleep(Duration::from_millis(10));
            }
            // Another error (a file system without flock): write unlocked
            // rather than never.
            Err(rustix::io::Errno::WOULDBLOCK) => return false,
            Err(_) => return true,
        }
    }
}

fn read_previous(path: &Path) -> Result<Snapshot, Warning> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(source) if source.kind() == io::ErrorKind::NotFound => {
            return Err(Warning::NoPrevious {
                path: path.to_owned(),
            })
        }
        Err(source) => {
            return Err(Warning::Unreadable {
                path: path.to_owned(),
                source,
            })
        }
    };
    let text = String::from_utf8(bytes).map_err(|_| Warning::Garbled {
        path: path.to_owned(),
        line: 0,
        reason: "not UTF-8".to_owned(),
    })?;
    parse(&text).map_err(|Garbled { line, reason }| Warning::Garbled {
        path: path.to_owned(),
        line,
        reason,
    })
}

/// Replaces the file at `path` by `text` so that a reader sees the old file
/// or the new one, never a part: a temporary file in the same directory
/// (its name does not end in `.prom`, so the textfile collector skips it),
/// fsync, rename, then fsync of the directory so that the rename survives a
/// crash.
fn replace(path: &Path, dir: &Path, dir_handle: &File, text: &str) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
    let mut temporary = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".tmp")
        .tempfile_in(dir)?;
    // node_exporter runs as another user (prometheus): it must read the file.
    // The unit's UMask=0027 does not apply to an explicit chmod.
    temporary
        .as_file()
        .set_permissions(Permissions::from_mode(0o644))?;
    temporary.write_all(text.as_bytes())?;
    temporary.as_file().sync_all()?;
    temporary.persist(path).map_err(|err| err.error)?;
    dir_handle.sync_all()
}

/// The text of the file.
pub fn render(snapshot: &Snapshot) -> String {
    let mut out = String::new();
    family(
        &mut out,
        PASSES,
        "counter",
        "Passes of decnet-reconcile by result: ok (converged), changed (rows written), error (exit 1, nothing written).",
    );
    for (result, count) in [
        ("ok", snapshot.passes_ok),
        ("changed", snapshot.passes_changed),
        ("error", snapshot.passes_error),
    ] {
        sample(&mut out, PASSES, &[("result", result)], count);
    }
    family(
        &mut out,
        CHANGES,
        "counter",
        "Rows of fleet_deckies written by decnet-reconcile, by action.",
    );
    for (action, count) in [
        ("inserted", snapshot.inserted),
        ("deleted", snapshot.deleted),
        ("updated", snapshot.updated),
    ] {
        sample(&mut out, CHANGES, &[("action", action)], count);
    }
    family(
        &mut out,
        EVENTS_LOST,
        "counter",
        "Change events decnet-reconcile could not publish (the bus down, or a name that cannot form a channel).",
    );
    sample(&mut out, EVENTS_LOST, &[], snapshot.events_lost);
    if let Some(seconds) = snapshot.last_pass_duration_seconds {
        family(
            &mut out,
            DURATION,
            "gauge",
            "How long the last pass of decnet-reconcile took, failed or not.",
        );
        sample(&mut out, DURATION, &[], seconds);
    }
    family(
        &mut out,
        LAST_SUCCESS,
        "gauge",
        "When the last successful pass of decnet-reconcile ended (Unix time; 0: none yet).",
    );
    sample(
        &mut out,
        LAST_SUCCESS,
        &[],
        snapshot.last_success_timestamp_seconds,
    );
    if let Some(up) = snapshot.docker_up {
        family(
            &mut out,
            DOCKER_UP,
            "gauge",
            "1 when Docker answered the last pass that asked it, 0 when its state was unknown.",
        );
        sample(&mut out, DOCKER_UP, &[], u64::from(up));
    }
    if let Some(deckies) = &snapshot.deckies {
        family(
            &mut out,
            DECKIES,
            "gauge",
            "This host's rows of fleet_deckies by state, after the last successful pass.",
        );
        for (state, count) in deckies {
            sample(&mut out, DECKIES, &[("state", state)], *count);
        }
    }
    if let Some(host_uuid) = &snapshot.host_uuid {
        family(
            &mut out,
            INFO,
            "gauge",
            "Always 1: the DECNET host id the passes reconcile, and the version of decnet-reconcile.",
        );
        sample(
            &mut out,
            INFO,
            &[
                ("host_uuid", host_uuid),
                ("version", env!("CARGO_PKG_VERSION")),
            ],
            1,
        );
    }
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    // The help texts are constants without backslashes or line feeds, the
    // two characters a HELP line would have to escape.
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (label, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(label);
            out.push_str("=\"");
            escape_label_value(out, value);
            out.push('"');
        }
        out.push('}');
    }
    // f64's Display never uses an exponent nor loses a digit; u64's is plain.
    let _ = writeln!(out, " {value}");
}

/// The text format escapes exactly these three in a label value; anything
/// else, control characters included, stands as it is (UTF-8).
fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Why a file cannot be read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Garbled {
    /// 1-based.
    pub line: usize,
    pub reason: String,
}

/// Reads a file written by [`render`]. Comments are skipped and metrics of
/// other names ignored (a newer version's, say); anything that is not the
/// text format, a counter that is not a whole number, a duplicate series or
/// an unknown label of ours is [`Garbled`]: the counters then start again
/// at 0 rather than from a value nobody wrote.
pub fn parse(text: &str) -> Result<Snapshot, Garbled> {
    let mut snapshot = Snapshot::default();
    let mut seen = std::collections::BTreeSet::new();
    for (index, line) in text.lines().enumerate() {
        let garbled = |reason: String| Garbled {
            line: index + 1,
            reason,
        };
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, labels, value) = parse_sample(line).map_err(garbled)?;
        if !seen.insert((name.to_owned(), labels.clone())) {
            return Err(garbled(format!("{name} twice with the same labels")));
        }
        let only = |label: &str| -> Result<&str, Garbled> {
            match labels.as_slice() {
                [(key, value)] if key == label => Ok(value),
                _ => Err(garbled(format!("{name} needs exactly the label {label}"))),
            }
        };
        let none = || -> Result<(), Garbled> {
            if labels.is_empty() {
                Ok(())
            } else {
                Err(garbled(format!("{name} takes no labels")))
            }
        };
        match name {
            PASSES => {
                let count = counter(value).map_err(garbled)?;
                match only("result")? {
                    "ok" => snapshot.passes_ok = count,
                    "changed" => snapshot.passes_changed = count,
                    "error" => snapshot.passes_error = count,
                    other => return Err(garbled(format!("unknown result {other:?}"))),
                }
            }
            CHANGES => {
                let count = counter(value).map_err(garbled)?;
                match only("action")? {
                    "inserted" => snapshot.inserted = count,
                    "deleted" => snapshot.deleted = count,
                    "updated" => snapshot.updated = count,
                    other => return Err(garbled(format!("unknown action {other:?}"))),
                }
            }
            EVENTS_LOST => {
                none()?;
                snapshot.events_lost = counter(value).map_err(garbled)?;
            }
            DURATION => {
                none()?;
                snapshot.last_pass_duration_seconds = Some(gauge(value).map_err(garbled)?);
            }
            LAST_SUCCESS => {
                none()?;
                snapshot.last_success_timestamp_seconds = gauge(value).map_err(garbled)?;
            }
            DOCKER_UP => {
                none()?;
                snapshot.docker_up = Some(match value {
                    "0" => false,
                    "1" => true,
                    other => return Err(garbled(format!("{DOCKER_UP} is {other:?}, not 0 or 1"))),
                });
            }
            DECKIES => {
                let count = counter(value).map_err(garbled)?;
                let state = only("state")?.to_owned();
                snapshot
                    .deckies
                    .get_or_insert_with(BTreeMap::new)
                    .insert(state, count);
            }
            INFO => {
                // Written from the pass at hand, never carried over.
            }
            _ => {}
        }
    }
    Ok(snapshot)
}

type Labels = Vec<(String, String)>;

/// `name{label="value",…} value`, the text format's sample line without a
/// timestamp (the textfile collector refuses timestamps).
fn parse_sample(line: &str) -> Result<(&str, Labels, &str), String> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("not a sample line".to_owned());
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        rest = after_brace;
        loop {
            rest = rest.trim_start();
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let key_end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .ok_or("a label without a value")?;
            let key = &rest[..key_end];
            if key.is_empty() {
                return Err("a label without a name".to_owned());
            }
            rest = rest[key_end..]
                .trim_start()
                .strip_prefix("=\"")
                .ok_or_else(|| format!("label {key} has no quoted value"))?;
            let (value, after) = unescape_label_value(rest)?;
            labels.push((key.to_owned(), value));
            rest = after.trim_start();
            if let Some(after) = rest.strip_prefix(',') {
                rest = after;
            } else if !rest.starts_with('}') {
                return Err("labels not separated by a comma".to_owned());
            }
        }
    }
    let mut fields = rest.split_ascii_whitespace();
    let value = fields.next().ok_or("a sample without a value")?;
    if !rest.starts_with([' ', '\t']) {
        return Err("no space before the value".to_owned());
    }
    if fields.next().is_some() {
        return Err("a timestamp or trailing text after the value".to_owned());
    }
    Ok((name, labels, value))
}

/// The value up to its closing quote, unescaped, and what follows the quote.
fn unescape_label_value(text: &str) -> Result<(String, &str), String> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &text[i + 1..])),
            '\\' => match chars.next() {
                Some((_, '\\')) => value.push('\\'),
                Some((_, '"')) => value.push('"'),
                Some((_, 'n')) => value.push('\n'),
                Some((_, other)) => return Err(format!("unknown escape \\{other}")),
                None => break,
            },
            c => value.push(c),
        }
    }
    Err("a label value without its closing quote".to_owned())
}

/// A counter this module wrote: a whole number from 0 to 2^53 (beyond, f64
/// would no longer count by one).
fn counter(text: &str) -> Result<u64, String> {
    text.parse::<u64>()
        .ok()
        .filter(|n| *n <= 1 << 53)
        .ok_or_else(|| format!("counter value {text:?} is not a whole number"))
}

fn gauge(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| format!("gauge value {text:?} is not a finite number of seconds"))
}

#[cfg(test)]
mod tests;
