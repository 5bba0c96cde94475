//! All of standard output: the change table with its summary line, or one JSON
//! object (SPEC §7). Whether to colour is the caller's decision, made once
//! (`config::Colour`).

use anstyle::{AnsiColor, Style};
use serde::Serialize;
use tabled::builder::Builder;
use tabled::settings::Style as TableStyle;

use crate::core::{
    Action, Change, ChangeKind, Counts, Diagnosis, DockerStatus, Report, SkippedDecky,
};
use crate::text::escape_untrusted;

/// The change table (nothing when converged) and the summary line.
pub fn table(report: &Report, color: bool) -> String {
    let mut out = String::new();
    if !report.plan.changes.is_empty() {
        let mut builder = Builder::default();
        builder.push_record([
            "ACTION", "HOST", "NAME", "IP", "SERVICES", "STATE", "CHANGED",
        ]);
        for change in &report.plan.changes {
            builder.push_record([
                paint(change.action(), color),
                escape_untrusted(&change.host_uuid),
                escape_untrusted(&change.name),
                escape_untrusted(change.ip.as_deref().unwrap_or("-")),
                escape_untrusted(&change.services.join(",")),
                escape_untrusted(&state_column(change)),
                change.changed_fields().join(","),
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
            })
            .collect(),
        counts: plan.counts(),
        published: report.published,
        publish_failed: report.publish_failed,
        heartbeat: report.heartbeat.map(|heartbeat| heartbeat.as_str()),
        skipped: &plan.skipped,
    };
    let mut text = serde_json::to_string(&document)
        .unwrap_or_else(|err| unreachable!("serializing the report: {err}"));
    text.push('\n');
    text
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
