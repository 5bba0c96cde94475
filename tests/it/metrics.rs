//! The metrics file of `--metrics-file` over a sequence of real passes
//! (issue 17): each value after a changed pass, a converged one, one with
//! Docker down, one with the bus down and one that fails; counters carried
//! over from one process to the next; every version of the file accepted by
//! Prometheus's own `promtool check metrics`; a reader that never sees half a
//! file while passes replace it; dry runs that never touch it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::fixture::{
    closed_port, decky, docker_unknown, figure, reliability_count, Container, Env,
};

/// Every sample of the file by its series (`name{labels}`), as a number.
fn samples(path: &Path) -> BTreeMap<String, f64> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            let value = value
                .parse()
                .unwrap_or_else(|_| panic!("not a number: {line}"));
            (series.to_owned(), value)
        })
        .collect()
}

/// Prometheus's `promtool` (Debian's `prometheus` package; `scripts/services`
/// extracts it where `scripts/metrics-check` looks for it).
fn promtool() -> PathBuf {
    let state_dir = std::env::var("DECNET_TEST_STATE_DIR")
        .unwrap_or_else(|_| "/var/tmp/decnet-reconcile-test".to_owned());
    std::env::var("DECNET_TEST_PROMTOOL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(&state_dir).join("bin/promtool"))
}

/// Prometheus's own judge of the text format, which must find nothing to say.
#[track_caller]
fn assert_promtool_accepts(path: &Path, when: &str) {
    let promtool = promtool();
    let output = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(path).expect("the metrics file"))
        .output()
        .unwrap_or_else(|err| {
            panic!(
                "{}: {err} (bash scripts/services installs promtool)",
                promtool.display()
            )
        });
    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "{when}: promtool check metrics ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The values a test states, each checked against the file; every series of
/// ours that the test does not name must be absent.
#[track_caller]
fn assert_values(path: &Path, when: &str, expected: &[(&str, f64)]) {
    let found = samples(path);
    for (series, value) in expected {
        assert_eq!(
            found.get(*series),
            Some(value),
            "{when}: {series} in {found:#?}"
        );
    }
}

/// A reader that reads the file as fast as it can until stopped, and fails if
/// a read ever finds part of a file (every file ends with its info line).
struct Reader {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(usize, Vec<String>)>,
}

impl Reader {
    fn start(path: PathBuf) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let (mut reads, mut partial) = (0, Vec::new());
            while !stopped.load(Ordering::Relaxed) {
                let Ok(text) = std::fs::read_to_string(&path) else {
                    continue;
                };
                reads += 1;
                let whole = text.ends_with('\n')
                    && text
                        .lines()
                        .last()
                        .is_some_and(|line| line.starts_with("decnet_reconcile_info{"));
                if !whole && partial.len() < 3 {
                    partial.push(text);
                }
            }
            (reads, partial)
        });
        Reader { stop, thread }
    }

    /// Stops it; returns how many whole files it read.
    fn finish(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        let (reads, partial) = self.thread.join().expect("the reader");
        assert!(
            partial.is_empty(),
            "a reader saw part of a file: {partial:?}"
        );
        reads
    }
}

#[test]
fn metrics_follow_passes_converged_changed_docker_down_bus_down_and_failed() {
    let env = Env::new();
    let file = env.dir.path().join("decnet-reconcile.prom");
    let metrics = ["--metrics-file", file.to_str().expect("UTF-8 path")];
    let (a, b, c) = (env.name("a"), env.name("b"), env.name("c"));
    env.container(&format!("{a}-ssh"), Container::Running);
    let deckies = |names: &[&String]| -> Vec<serde_json::Value> {
        names.iter().map(|name| decky(name, &["ssh"])).collect()
    };
    let reader = Reader::start(file.clone());
    let host = format!(
        "decnet_reconcile_info{{host_uuid=\"{}\",version=\"0.1.0\"}}",
        env.host
    );
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64()
    };

    // Changed: the first pass ever, so there is no file to carry over yet.
    let before = now();
    env.test()
        .state(&deckies(&[&a, &b]))
        .redis()
        .args(metrics)
        .events([(&a, "inserted"), (&b, "inserted")])
        .stderr(format!(
            " WARN no metrics file at {} yet: its counters start at 0\n",
            file.display()
        ))
        .run();
    assert_promtool_accepts(&file, "changed");
    assert_values(
        &file,
        "changed",
        &[
            ("decnet_reconcile_passes_total{result=\"ok\"}", 0.0),
            ("decnet_reconcile_passes_total{result=\"changed\"}", 1.0),
            ("decnet_reconcile_passes_total{result=\"error\"}", 0.0),
            ("decnet_reconcile_changes_total{action=\"inserted\"}", 2.0),
            ("decnet_reconcile_changes_total{action=\"deleted\"}", 0.0),
            ("decnet_reconcile_changes_total{action=\"updated\"}", 0.0),
            ("decnet_reconcile_events_lost_total", 0.0),
            ("decnet_reconcile_docker_up", 1.0),
            ("decnet_reconcile_deckies{state=\"running\"}", 1.0),
            ("decnet_reconcile_deckies{state=\"torn_down\"}", 1.0),
            ("decnet_reconcile_deckies{state=\"failed\"}", 0.0),
            ("decnet_reconcile_deckies{state=\"teardown_failed\"}", 0.0),
            (&host, 1.0),
        ],
    );
    let first = samples(&file);
    let success = first["decnet_reconcile_last_success_timestamp_seconds"];
    assert!(success >= before.floor() && success <= now(), "{success}");
    assert!(first["decnet_reconcile_last_pass_duration_seconds"] > 0.0);
    assert_eq!(
        first.len(),
        18,
        "every series of ours, no other: {first:#?}"
    );

    // Converged, in a new process: the counters carry over.
    env.test().redis().args(metrics).run();
    assert_promtool_accepts(&file, "converged");
    assert_values(
        &file,
        "converged",
        &[
            ("decnet_reconcile_passes_total{result=\"ok\"}", 1.0),
            ("decnet_reconcile_passes_total{result=\"changed\"}", 1.0),
            ("decnet_reconcile_changes_total{action=\"inserted\"}", 2.0),
            ("decnet_reconcile_docker_up", 1.0),
        ],
    );
    let converged = samples(&file)["decnet_reconcile_last_success_timestamp_seconds"];
    assert!(converged >= success, "{converged} after {success}");

    // Docker down, with a deploy: inserted as running, docker_up 0.
    let docker = env.dead_docker();
    env.test()
        .state(&deckies(&[&a, &b, &c]))
        .redis()
        .args(metrics)
        .args(["--docker-host", &docker])
        .events([(&c, "inserted")])
        .stderr_lines([docker_unknown(&docker, "connection refused")])
        .run();
    assert_promtool_accepts(&file, "Docker down");
    assert_values(
        &file,
        "Docker down",
        &[
            ("decnet_reconcile_passes_total{result=\"ok\"}", 1.0),
            ("decnet_reconcile_passes_total{result=\"changed\"}", 2.0),
            ("decnet_reconcile_changes_total{action=\"inserted\"}", 3.0),
            ("decnet_reconcile_docker_up", 0.0),
            ("decnet_reconcile_deckies{state=\"running\"}", 2.0),
            ("decnet_reconcile_deckies{state=\"torn_down\"}", 1.0),
        ],
    );

    // The bus down, with a teardown of b and Docker back (c has no container):
    // both events lost.
    let bus = format!("redis://127.0.0.1:{}/0", closed_port());
    env.test()
        .state(&deckies(&[&a, &c]))
        .redis_at(&bus)
        .args(metrics)
        .stderr(format!(
            " WARN Redis at {bus} failed (connection refused): \
             2 event(s) lost; the database is converged all the same\n"
        ))
        .run();
    assert_promtool_accepts(&file, "bus down");
    let after_bus_down = [
        ("decnet_reconcile_passes_total{result=\"ok\"}", 1.0),
        ("decnet_reconcile_passes_total{result=\"changed\"}", 3.0),
        ("decnet_reconcile_passes_total{result=\"error\"}", 0.0),
        ("decnet_reconcile_changes_total{action=\"inserted\"}", 3.0),
        ("decnet_reconcile_changes_total{action=\"deleted\"}", 1.0),
        ("decnet_reconcile_changes_total{action=\"updated\"}", 1.0),
        ("decnet_reconcile_events_lost_total", 2.0),
        ("decnet_reconcile_docker_up", 1.0),
        ("decnet_reconcile_deckies{state=\"running\"}", 1.0),
        ("decnet_reconcile_deckies{state=\"torn_down\"}", 1.0),
    ];
    assert_values(&file, "bus down", &after_bus_down);
    let last_success = samples(&file)["decnet_reconcile_last_success_timestamp_seconds"];

    // An error: a half-written state file. The error is counted, the rest kept.
    let text = std::fs::read_to_string(&env.state_file).expect("state file");
    env.test()
        .state_text(&text[..text.len() / 2])
        .args(metrics)
        .status(1)
        .stderr_lines([format!(
            "decnet-reconcile: error: state file {} is not valid JSON: …",
            env.state_file.display()
        )])
        .run();
    assert_promtool_accepts(&file, "an error");
    let mut after_error = after_bus_down;
    after_error[2].1 = 1.0;
    assert_values(&file, "an error", &after_error);
    assert_eq!(
        samples(&file)["decnet_reconcile_last_success_timestamp_seconds"],
        last_success,
        "a failed pass is no success"
    );

    // Many passes replacing the file while the reader reads it.
    env.write_state_text(&text);
    let passes = reliability_count("DECNET_METRICS_PASSES", 20);
    for _ in 0..passes {
        env.test().args(metrics).run();
    }
    assert_values(
        &file,
        "after the converged passes",
        &[(
            "decnet_reconcile_passes_total{result=\"ok\"}",
            1.0 + passes as f64,
        )],
    );
    let reads = reader.finish();
    assert!(reads > 0, "the reader never found the file");
    figure("metrics_file_whole_reads", reads);

    // A dry run with something to do writes nothing, not even the metrics.
    let written = std::fs::read(&file).expect("metrics file");
    env.test()
        .state(&deckies(&[&a]))
        .args(metrics)
        .arg("--dry-run")
        .stdout_ends_with("inserted=0 deleted=1 updated=0 (dry run)\n")
        .run();
    assert_eq!(std::fs::read(&file).expect("metrics file"), written);
}

#[test]
fn an_unwritable_metrics_file_is_a_warning_and_the_pass_still_succeeds() {
    let env = Env::new();
    let file = env.dir.path().join("absent").join("decnet-reconcile.prom");
    env.test()
        .state(&[decky(&env.name("a"), &["ssh"])])
        .args(["--metrics-file", file.to_str().expect("UTF-8")])
        .stderr_lines([format!(
            " WARN cannot write the metrics file {}: No such file or directory (os error 2); \
             this pass is not counted",
            file.display()
        )])
        .run();
    assert_eq!(env.names_of(&env.host), [env.name("a")]);
    // Empty means none: no file, no warning.
    env.test()
        .args(["--metrics-file", ""])
        .env_var("DECNET_RECONCILE_METRICS_FILE", file.as_os_str())
        .run();
    env.test()
        .env_var("DECNET_RECONCILE_METRICS_FILE", "")
        .run();
}

/// The two alert rules of docs/operating.md ("Alert rules"), checked and
/// unit-tested by Prometheus's own `promtool`, from the doc's own text.
#[test]
fn the_documented_alert_rules_pass_promtool_test_rules() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operating.md"))
            .expect("docs/operating.md");
    let section = doc
        .split_once("### Alert rules")
        .expect("an Alert rules section")
        .1;
    let blocks: Vec<&str> = section
        .split("```yaml\n")
        .skip(1)
        .take(2)
        .map(|block| block.split_once("```").expect("a closed block").0)
        .collect();
    assert_eq!(blocks.len(), 2, "the rules, then their test");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("rules.yml"), blocks[0]).expect("rules.yml");
    std::fs::write(dir.path().join("test.yml"), blocks[1]).expect("test.yml");
    for args in [
        ["check", "rules", "rules.yml"],
        ["test", "rules", "test.yml"],
    ] {
        let output = Command::new(promtool())
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("promtool (bash scripts/services installs it)");
        assert!(
            output.status.success(),
            "promtool {args:?} ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
