//! All of standard output: the change table with its summary line, or one JSON
//! object (SPEC §7), each showing what every change writes, old → new (the
//! core's [`Change::diff`]). Whether to colour is the caller's decision, made
//! once (`config::Colour`).
//!
//! Every value shown comes from a state file, a database or Docker, so it is
//! masked, then shortened (the table only), then escaped: a value under a key
//! that names a secret (`password`, `upstream_pass`, …) is `***`, so is a URL's
//! password, and so is each secret of the invocation ([`Secrets`]); masking
//! comes first so that no cut leaves half a secret that no longer matches.

use anstyle::{AnsiColor, Style};
use serde::Serialize;
use serde_json::{Map, Value};
use tabled::builder::Builder;
use tabled::settings::Style as TableStyle;

use crate::core::{
    changed_keys, services_delta, Action, Change, ChangeKind, Counts, Diagnosis, DockerStatus,
    FieldDiff, Report, SkippedDecky,
};
use crate::text::{
    escape_json_unsafe, escape_untrusted, names_a_secret, redact_urls_in, shorten, shorten_start,
    Secrets,
};

/// The most characters of one old or new value the table shows.
const VALUE_CHARS: usize = 24;
/// The most characters of a `decky_config` key path the table shows (its end).
const KEY_CHARS: usize = 24;
/// About the most characters the changed `decky_config` keys take in the
/// table (one key is always shown); the keys past it are counted.
const DETAIL_CHARS: usize = 100;
/// What a masked value shows.
const MASKED: &str = "***";

/// The change table (nothing when converged) and the summary line.
pub fn table(report: &Report, color: bool, secrets: &Secrets) -> String {
    let mut out = String::new();
    if !report.plan.changes.is_empty() {
        let mut builder = Builder::default();
        builder.push_record([
            "ACTION", "HOST", "NAME", "IP", "SERVICES", "STATE", "CHANGED",
        ]);
        for change in &report.plan.changes {
            let shown = Shown { secrets };
            let diff = match change.action() {
                Action::Updated => change.diff(),
                Action::Inserted | Action::Deleted => Vec::new(),
            };
            let column = |field: &str| diff.iter().find(|d| d.field == field);
            builder.push_record([
                paint(change.action(), color),
                escape_untrusted(&change.host_uuid),
                escape_untrusted(&change.name),
                match column("decky_ip") {
                    Some(ip) => shown.transition(&ip.old, &ip.new),
                    None => escape_untrusted(change.ip.as_deref().unwrap_or("-")),
                },
                match column("services") {
                    Some(services) => shown.services(services),
                    None => escape_untrusted(&change.services.join(",")),
                },
                escape_untrusted(&state_column(change)),
                changed_column(&diff, change, &shown),
            ]);
        }
        let mut table = builder.build();
        table.with(TableStyle::blank());
        out.push_str(&table.to_string());
        out.push('\n');
    }
    out.push_str(&summary_line(report));
    out.push('\n');
    out
}

/// `inserted=N deleted=N updated=N`, plus what else an operator must notice.
pub fn summary_line(report: &Report) -> String {
    let plan = &report.plan;
    let counts = plan.counts();
    let mut line = format!(
        "inserted={} deleted={} updated={}",
        counts.inserted, counts.deleted, counts.updated
    );
    if !plan.skipped.is_empty() {
        line.push_str(&format!(" skipped={}", plan.skipped.len()));
    }
    if report.publish_failed > 0 {
        line.push_str(&format!(" events_lost={}", report.publish_failed));
    }
    if report.docker == DockerStatus::Unknown {
        line.push_str(" docker=unknown");
    }
    if report.dry_run {
        line.push_str(" (dry run)");
    }
    line
}

fn state_column(change: &Change) -> String {
    match &change.kind {
        ChangeKind::Insert { state, .. } => state.as_str().to_owned(),
        ChangeKind::Update { state: None, .. } => change.state().to_owned(),
        ChangeKind::Delete { .. } | ChangeKind::Update { .. } => {
            format!(
                "{} → {}",
                change.previous_state().unwrap_or("-"),
                change.state()
            )
        }
    }
}

/// The columns an update rewrites; `decky_config` with the keys that changed,
/// each old → new, as many as fit in [`DETAIL_CHARS`] (at least one), the
/// rest counted: `decky_config(hostname: a → b, nmap_os: linux → windows, +2 more)`.
fn changed_column(diff: &[FieldDiff], change: &Change, shown: &Shown) -> String {
    let mut fields = change.changed_fields().join(",");
    let Some(config) = diff.iter().find(|d| d.field == "decky_config") else {
        return fields;
    };
    let keys = changed_keys(&config.old, &config.new);
    let mut listed: Vec<String> = Vec::new();
    let mut width = 0;
    for key in &keys {
        let secret = key.path.iter().any(|segment| names_a_secret(segment));
        let value = |value: Option<&Value>| match value {
            None => "-".to_owned(),
            Some(value) if secret && !value.is_null() => MASKED.to_owned(),
            Some(value) => shown.value(value),
        };
        let transition = format!("{} → {}", value(key.old), value(key.new));
        let item = match key.path.is_empty() {
            true => transition,
            false => format!(
                "{}: {transition}",
                escape_untrusted(&shorten_start(&key.path.join("."), KEY_CHARS))
            ),
        };
        let item_width = item.chars().count() + 2;
        if !listed.is_empty() && width + item_width > DETAIL_CHARS {
            break;
        }
        width += item_width;
        listed.push(item);
    }
    if keys.len() > listed.len() {
        listed.push(format!("+{} more", keys.len() - listed.len()));
    }
    fields.push_str(&format!("({})", listed.join(", ")));
    fields
}

/// Values of a row as the table shows them: masked, shortened, escaped.
struct Shown<'a> {
    secrets: &'a Secrets,
}

impl Shown<'_> {
    /// One value: a string as it is, anything else as compact JSON (with
    /// the secrets in it masked, as in the JSON report).
    fn value(&self, value: &Value) -> String {
        let text = match masked(value.clone()) {
            Value::String(text) => text,
            other => other.to_string(),
        };
        escape_untrusted(&shorten(&self.secrets.mask(&text), VALUE_CHARS))
    }

    /// A column's value old → new; an empty column (NULL) is `-`, as the
    /// table shows a missing IP.
    fn transition(&self, old: &Value, new: &Value) -> String {
        let column = |value: &Value| match value {
            Value::Null => "-".to_owned(),
            value => self.value(value),
        };
        format!("{} → {}", column(old), column(new))
    }

    /// `http +ftp −ssh`: the services kept, then each added and each removed;
    /// old → new when either is not a list of names.
    fn services(&self, diff: &FieldDiff) -> String {
        let Some(delta) = services_delta(&diff.old, &diff.new) else {
            return self.transition(&diff.old, &diff.new);
        };
        let name = |name: &str| self.value(&Value::String(name.to_owned()));
        let mut parts = Vec::new();
        if !delta.kept.is_empty() {
            parts.push(
                delta
                    .kept
                    .iter()
                    .map(|n| name(n))
                    .collect::<Vec<_>>()
                    .join(","),
            );
        }
        parts.extend(delta.added.iter().map(|n| format!("+{}", name(n))));
        parts.extend(delta.removed.iter().map(|n| format!("−{}", name(n))));
        parts.join(" ")
    }
}

fn paint(action: Action, color: bool) -> String {
    if !color {
        return action.as_str().to_owned();
    }
    let colour = match action {
        Action::Inserted => AnsiColor::Green,
        Action::Deleted => AnsiColor::Red,
        Action::Updated => AnsiColor::Yellow,
    };
    let style = Style::new().fg_color(Some(colour.into()));
    format!("{style}{}{style:#}", action.as_str())
}

#[derive(Serialize)]
struct JsonReport<'a> {
    dry_run: bool,
    host_uuid: &'a str,
    docker: &'static str,
    changes: Vec<JsonChange<'a>>,
    counts: Counts,
    published: usize,
    publish_failed: usize,
    /// `"sent"` or `"lost"`; `null` when no heartbeat was due.
    heartbeat: Option<&'static str>,
    skipped: &'a [SkippedDecky],
}

#[derive(Serialize)]
struct JsonChange<'a> {
    action: &'static str,
    host_uuid: &'a str,
    name: &'a str,
    ip: Option<&'a str>,
    services: &'a [String],
    previous_state: Option<&'a str>,
    state: &'a str,
    changed_fields: Vec<&'static str>,
    /// `{column: {"old": …, "new": …}}` for each column the change writes.
    diff: Map<String, Value>,
}

/// The whole report as one JSON object on one line.
pub fn json(report: &Report) -> String {
    let plan = &report.plan;
    let document = JsonReport {
        dry_run: report.dry_run,
        host_uuid: &report.host_uuid,
        docker: report.docker.as_str(),
        changes: plan
            .changes
            .iter()
            .map(|change| JsonChange {
                action: change.action().as_str(),
                host_uuid: &change.host_uuid,
                name: &change.name,
                ip: change.ip.as_deref(),
                services: &change.services,
                previous_state: change.previous_state(),
                state: change.state(),
                changed_fields: change.changed_fields(),
                diff: json_diff(change),
            })
            .collect(),
        counts: plan.counts(),
        published: report.published,
        publish_failed: report.publish_failed,
        heartbeat: report.heartbeat.map(|heartbeat| heartbeat.as_str()),
        skipped: &plan.skipped,
    };
    let text = serde_json::to_string(&document)
        .unwrap_or_else(|err| unreachable!("serializing the report: {err}"));
    let mut text = escape_json_unsafe(&text);
    text.push('\n');
    text
}

/// A change's diff with full values, masked.
fn json_diff(change: &Change) -> Map<String, Value> {
    change
        .diff()
        .into_iter()
        .map(|FieldDiff { field, old, new }| {
            let mut sides = Map::new();
            sides.insert("old".to_owned(), masked(old));
            sides.insert("new".to_owned(), masked(new));
            (field.to_owned(), Value::Object(sides))
        })
        .collect()
}

/// `value` with the value of every key that names a secret replaced by
/// `"***"` and every URL's password masked, at any depth.
fn masked(value: Value) -> Value {
    match value {
        Value::String(text) => Value::String(redact_urls_in(&text)),
        Value::Array(items) => Value::Array(items.into_iter().map(masked).collect()),
        Value::Object(entries) => Value::Object(
            entries
                .into_iter()
                .map(|(key, value)| {
                    let value = match names_a_secret(&key) && !value.is_null() {
                        true => Value::String(MASKED.to_owned()),
                        false => masked(value),
                    };
                    (key, value)
                })
                .collect(),
        ),
        other => other,
    }
}

/// `doctor`'s findings: the settings table, then one line per check (a
/// problem in the words that say what to do), then the verdict.
pub fn diagnosis_table(diagnosis: &Diagnosis, color: bool) -> String {
    let mut builder = Builder::default();
    builder.push_record(["SETTING", "VALUE", "ORIGIN", "WHERE"]);
    for setting in &diagnosis.settings {
        builder.push_record([
            setting.setting.to_owned(),
            escape_untrusted(&setting.value),
            setting.origin.to_owned(),
            escape_untrusted(setting.place.as_deref().unwrap_or("")),
        ]);
    }
    let mut table = builder.build();
    table.with(TableStyle::blank());
    let mut out = table.to_string();
    out.push_str("\n\n");
    for check in &diagnosis.checks {
        let (word, colour) = match check.problem {
            None => ("ok", AnsiColor::Green),
            Some(_) => ("PROBLEM", AnsiColor::Red),
        };
        let word = match color {
            true => {
                let style = Style::new().fg_color(Some(colour.into()));
                format!("{style}{word:<7}{style:#}")
            }
            false => format!("{word:<7}"),
        };
        let problem = check
            .problem
            .as_deref()
            .map(|problem| format!(": {}", escape_untrusted(problem)))
            .unwrap_or_default();
        out.push_str(&format!(" {word} {}{problem}\n", check.check));
    }
    let problems = diagnosis
        .checks
        .iter()
        .filter(|c| c.problem.is_some())
        .count();
    out.push_str(&match problems {
        0 => "all well\n".to_owned(),
        1 => "1 problem\n".to_owned(),
        n => format!("{n} problems\n"),
    });
    out
}

#[derive(Serialize)]
struct JsonDiagnosis<'a> {
    ok: bool,
    settings: Vec<JsonSetting<'a>>,
    checks: Vec<JsonCheck<'a>>,
}

#[derive(Serialize)]
struct JsonSetting<'a> {
    setting: &'static str,
    value: &'a str,
    origin: &'static str,
    #[serde(rename = "where")]
    place: Option<&'a str>,
}

#[derive(Serialize)]
struct JsonCheck<'a> {
    check: &'static str,
    ok: bool,
    problem: Option<&'a str>,
}

/// `doctor`'s findings as one JSON object on one line.
pub fn diagnosis_json(diagnosis: &Diagnosis) -> String {
    let document = JsonDiagnosis {
        ok: diagnosis.ok(),
        settings: diagnosis
            .settings
            .iter()
            .map(|s| JsonSetting {
                setting: s.setting,
                value: &s.value,
                origin: s.origin,
                place: s.place.as_deref(),
            })
            .collect(),
        checks: diagnosis
            .checks
            .iter()
            .map(|c| JsonCheck {
                check: c.check,
                ok: c.problem.is_none(),
                problem: c.problem.as_deref(),
            })
            .collect(),
    };
    let mut text = serde_json::to_string(&document)
        .unwrap_or_else(|err| unreachable!("serializing the diagnosis: {err}"));
    text.push('\n');
    text
}
