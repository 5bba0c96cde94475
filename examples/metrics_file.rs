//! Writes the metrics file of `src/metrics.rs` through a sequence of passes
//! and keeps a copy after each, for `promtool check metrics` to judge
//! (`scripts/metrics-check` runs both). Real passes write the file too
//! (`tests/it/metrics.rs`); these include what a test pass cannot easily
//! make, such as hostile host ids and states, for Prometheus's own parser,
//! linter and node_exporter's textfile collector to judge.
//!
//!     cargo run --example metrics_file -- DIR

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use decnet_reconcile::metrics::{record, Outcome, Pass};

fn main() -> std::process::ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: metrics_file DIR");
        return std::process::ExitCode::FAILURE;
    };
    let file = dir.join("decnet-reconcile.prom");
    let succeeded =
        |inserted, deleted, updated, events_lost, deckies: &[(&str, u64)]| Outcome::Succeeded {
            inserted,
            deleted,
            updated,
            events_lost,
            deckies: deckies
                .iter()
                .map(|(s, n)| (s.to_string(), *n))
                .collect::<BTreeMap<_, _>>(),
        };
    let pass = |host_uuid: &str, docker_up, outcome| Pass {
        host_uuid: host_uuid.to_owned(),
        finished_at: SystemTime::now(),
        duration: Duration::from_millis(37),
        docker_up,
        outcome,
    };
    let steps = [
        ("failed-first", pass("local", None, Outcome::Failed)),
        (
            "changed",
            pass(
                "local",
                Some(true),
                succeeded(3, 0, 0, 0, &[("running", 3)]),
            ),
        ),
        (
            "converged",
            pass(
                "local",
                Some(true),
                succeeded(0, 0, 0, 0, &[("running", 3)]),
            ),
        ),
        (
            "docker-unknown-bus-down",
            pass(
                "local",
                Some(false),
                succeeded(1, 1, 0, 2, &[("running", 2), ("pending", 1)]),
            ),
        ),
        ("failed", pass("local", None, Outcome::Failed)),
        (
            "hostile",
            pass(
                "h\"o\\s\nt}{,= \u{1b}[31m\u{0}\r\t✓",
                Some(true),
                succeeded(
                    0,
                    0,
                    1,
                    0,
                    &[("x\"} 1\nevil_total 9", 1), ("\u{1b}]0;title\u{7}", 1)],
                ),
            ),
        ),
    ];
    for (i, (name, pass)) in steps.iter().enumerate() {
        for warning in record(&file, pass) {
            eprintln!("{name}: warning: {warning}");
        }
        let copy = dir.join(format!("{i:02}-{name}.prom"));
        if let Err(err) = std::fs::copy(&file, &copy) {
            eprintln!(
                "cannot copy {} to {}: {err}",
                file.display(),
                copy.display()
            );
            return std::process::ExitCode::FAILURE;
        }
        println!("{}", copy.display());
    }
    std::process::ExitCode::SUCCESS
}
