use super::*;

use proptest::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tempfile::TempDir;

const T0: u64 = 1_796_300_000;

fn at(seconds: u64, millis: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(seconds) + Duration::from_millis(millis)
}

fn states(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(s, n)| (s.to_string(), *n)).collect()
}

fn succeeded(inserted: u64, deleted: u64, updated: u64, lost: u64) -> Pass {
    Pass {
        host_uuid: "local".to_owned(),
        finished_at: at(T0, 250),
        duration: Duration::from_millis(42),
        docker_up: Some(true),
        outcome: Outcome::Succeeded {
            inserted,
            deleted,
            updated,
            events_lost: lost,
            deckies: states(&[("running", 3), ("failed", 1)]),
        },
    }
}

fn failed() -> Pass {
    Pass {
        host_uuid: "local".to_owned(),
        finished_at: at(T0 + 30, 0),
        duration: Duration::from_millis(1500),
        docker_up: None,
        outcome: Outcome::Failed,
    }
}

struct Dir {
    dir: TempDir,
}

impl Dir {
    fn new() -> Self {
        Dir {
            dir: TempDir::new().expect("temp dir"),
        }
    }
    fn file(&self) -> PathBuf {
        self.dir.path().join("decnet-reconcile.prom")
    }
    fn read(&self) -> Snapshot {
        let text = std::fs::read_to_string(self.file()).expect("metrics file");
        parse(&text).expect("the file parses")
    }
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
    /// Records `pass` and returns the warnings as text.
    fn record(&self, pass: &Pass) -> Vec<String> {
        record(&self.file(), pass)
            .iter()
            .map(ToString::to_string)
            .collect()
    }
}

#[test]
fn a_first_pass_writes_every_family_with_help_and_type() {
    let text = render(&Snapshot::default().after(&succeeded(2, 1, 0, 1)));
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        text,
        format!(
            r#"# HELP decnet_reconcile_passes_total Passes of decnet-reconcile by result: ok (converged), changed (rows written), error (exit 1, nothing written).
# TYPE decnet_reconcile_passes_total counter
decnet_reconcile_passes_total{{result="ok"}} 0
decnet_reconcile_passes_total{{result="changed"}} 1
decnet_reconcile_passes_total{{result="error"}} 0
# HELP decnet_reconcile_changes_total Rows of fleet_deckies written by decnet-reconcile, by action.
# TYPE decnet_reconcile_changes_total counter
decnet_reconcile_changes_total{{action="inserted"}} 2
decnet_reconcile_changes_total{{action="deleted"}} 1
decnet_reconcile_changes_total{{action="updated"}} 0
# HELP decnet_reconcile_events_lost_total Change events decnet-reconcile could not publish (the bus down, or a name that cannot form a channel).
# TYPE decnet_reconcile_events_lost_total counter
decnet_reconcile_events_lost_total 1
# HELP decnet_reconcile_last_pass_duration_seconds How long the last pass of decnet-reconcile took, failed or not.
# TYPE decnet_reconcile_last_pass_duration_seconds gauge
decnet_reconcile_last_pass_duration_seconds 0.042
# HELP decnet_reconcile_last_success_timestamp_seconds When the last successful pass of decnet-reconcile ended (Unix time; 0: none yet).
# TYPE decnet_reconcile_last_success_timestamp_seconds gauge
decnet_reconcile_last_success_timestamp_seconds 1796300000.25
# HELP decnet_reconcile_docker_up 1 when Docker answered the last pass that asked it, 0 when its state was unknown.
# TYPE decnet_reconcile_docker_up gauge
decnet_reconcile_docker_up 1
# HELP decnet_reconcile_deckies This host's rows of fleet_deckies by state, after the last successful pass.
# TYPE decnet_reconcile_deckies gauge
decnet_reconcile_deckies{{state="degraded"}} 0
decnet_reconcile_deckies{{state="failed"}} 1
decnet_reconcile_deckies{{state="pending"}} 0
decnet_reconcile_deckies{{state="running"}} 3
decnet_reconcile_deckies{{state="teardown_failed"}} 0
decnet_reconcile_deckies{{state="tearing_down"}} 0
decnet_reconcile_deckies{{state="torn_down"}} 0
# HELP decnet_reconcile_info Always 1: the DECNET host id the passes reconcile, and the version of decnet-reconcile.
# TYPE decnet_reconcile_info gauge
decnet_reconcile_info{{host_uuid="local",version="{version}"}} 1
"#
        )
    );
}

#[test]
fn a_converged_pass_counts_as_ok_and_a_changed_one_as_changed() {
    let after = Snapshot::default()
        .after(&succeeded(0, 0, 0, 0))
        .after(&succeeded(0, 0, 1, 0))
        .after(&succeeded(0, 0, 0, 0));
    assert_eq!(
        (after.passes_ok, after.passes_changed, after.passes_error),
        (2, 1, 0)
    );
    assert_eq!((after.inserted, after.deleted, after.updated), (0, 0, 1));
}

#[test]
fn counters_carry_over_from_one_process_to_the_next() {
    let dir = Dir::new();
    dir.record(&succeeded(2, 0, 0, 2));
    assert_eq!(dir.record(&succeeded(0, 1, 3, 1)), Vec::<String>::new());
    assert_eq!(dir.record(&succeeded(0, 0, 0, 0)), Vec::<String>::new());
    let after = dir.read();
    assert_eq!(
        (after.passes_ok, after.passes_changed, after.passes_error),
        (1, 2, 0)
    );
    assert_eq!((after.inserted, after.deleted, after.updated), (2, 1, 3));
    assert_eq!(after.events_lost, 3);
}

#[test]
fn a_failed_pass_counts_its_error_and_keeps_the_other_values() {
    let dir = Dir::new();
    dir.record(&succeeded(2, 1, 0, 1));
    let before = dir.read();
    assert_eq!(dir.record(&failed()), Vec::<String>::new());
    let after = dir.read();
    assert_eq!(
        after,
        Snapshot {
            passes_error: 1,
            last_pass_duration_seconds: Some(1.5),
            ..before.clone()
        },
        "only the error count and the duration change"
    );
    assert_eq!(after.docker_up, Some(true));
    assert_eq!(after.deckies, before.deckies);
    assert_eq!(after.last_success_timestamp_seconds, 1_796_300_000.25);
}

#[test]
fn a_failed_pass_that_asked_docker_records_its_answer() {
    let after = Snapshot::default()
        .after(&succeeded(0, 0, 0, 0))
        .after(&Pass {
            docker_up: Some(false),
            ..failed()
        });
    assert_eq!(after.docker_up, Some(false));
}

#[test]
fn a_failed_first_pass_leaves_out_what_nobody_knows() {
    let text = render(&Snapshot::default().after(&failed()));
    assert!(text.contains("decnet_reconcile_passes_total{result=\"error\"} 1\n"));
    assert!(text.contains("decnet_reconcile_last_success_timestamp_seconds 0\n"));
    assert!(!text.contains("decnet_reconcile_docker_up"), "{text}");
    assert!(!text.contains("decnet_reconcile_deckies"), "{text}");
}

#[test]
fn docker_unknown_is_zero() {
    let pass = Pass {
        docker_up: Some(false),
        ..succeeded(0, 0, 0, 0)
    };
    let text = render(&Snapshot::default().after(&pass));
    assert!(text.contains("\ndecnet_reconcile_docker_up 0\n"), "{text}");
}

#[test]
fn a_state_outside_decnets_list_is_written_as_it_is() {
    let pass = Pass {
        outcome: Outcome::Succeeded {
            inserted: 0,
            deleted: 0,
            updated: 0,
            events_lost: 0,
            deckies: states(&[("exploded", 2)]),
        },
        ..succeeded(0, 0, 0, 0)
    };
    let deckies = Snapshot::default()
        .after(&pass)
        .deckies
        .expect("deckies after a success");
    assert_eq!(deckies.get("exploded"), Some(&2));
    assert_eq!(deckies.len(), KNOWN_STATES.len() + 1);
}

#[test]
fn a_missing_previous_file_is_one_warning_and_counters_start_at_zero() {
    let dir = Dir::new();
    let warnings = dir.record(&succeeded(1, 0, 0, 0));
    assert_eq!(
        warnings,
        [format!(
            "no metrics file at {} yet: its counters start at 0",
            dir.file().display()
        )]
    );
    assert_eq!(dir.read().passes_changed, 1);
}

#[test]
fn a_garbled_previous_file_is_one_warning_and_counters_start_again_at_zero() {
    let good = render(&Snapshot::default().after(&succeeded(5, 5, 5, 5)));
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "cut in the middle of a line",
            good[..good.find("result=\"changed").expect("a result") + 10].to_owned(),
            "without its closing quote",
        ),
        (
            "a negative counter",
            good.replace("lost_total 5", "lost_total -5"),
            "not a whole number",
        ),
        (
            "a fraction in a counter",
            good.replace("lost_total 5", "lost_total 5.5"),
            "not a whole number",
        ),
        (
            "a counter past 2^53",
            good.replace("lost_total 5", "lost_total 9007199254740993"),
            "not a whole number",
        ),
        (
            "an unknown escape",
            good.replace("host_uuid=\"local\"", "host_uuid=\"lo\\cal\""),
            "unknown escape",
        ),
        (
            "a series twice",
            format!("{good}decnet_reconcile_events_lost_total 9\n"),
            "twice",
        ),
        (
            "a result of ours unknown",
            good.replace("result=\"ok\"", "result=\"fine\""),
            "unknown result",
        ),
        (
            "a label missing",
            good.replace("{action=\"deleted\"}", ""),
            "needs exactly the label action",
        ),
        (
            "docker_up 2",
            good.replace("docker_up 1", "docker_up 2"),
            "not 0 or 1",
        ),
        (
            "a timestamp",
            good.replace("lost_total 5", "lost_total 5 1796300000000"),
            "timestamp",
        ),
        (
            "junk",
            "\u{1}\u{2} garbage\n".to_owned(),
            "not a sample line",
        ),
    ];
    for (what, text, reason) in cases {
        let dir = Dir::new();
        std::fs::write(dir.file(), &text).expect("write");
        let warnings = dir.record(&succeeded(0, 0, 0, 0));
        assert_eq!(warnings.len(), 1, "{what}: {warnings:?}");
        assert!(
            warnings[0].contains("is not what decnet-reconcile writes")
                && warnings[0].contains(reason)
                && warnings[0].ends_with("its counters start again at 0"),
            "{what}: {}",
            warnings[0]
        );
        let after = dir.read();
        assert_eq!(
            (after.passes_ok, after.inserted, after.events_lost),
            (1, 0, 0),
            "{what}: counters restart"
        );
    }
}

#[test]
fn a_previous_file_that_is_not_utf8_is_garbled() {
    let dir = Dir::new();
    std::fs::write(dir.file(), b"decnet_reconcile_events_lost_total \xff\n").expect("write");
    let warnings = dir.record(&succeeded(0, 0, 0, 0));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("not UTF-8"), "{}", warnings[0]);
}

#[test]
fn an_unreadable_previous_file_is_one_warning_and_is_replaced() {
    let dir = Dir::new();
    // A symbolic link to itself: reading fails (ELOOP), the rename replaces it.
    std::os::unix::fs::symlink(dir.file(), dir.file()).expect("symlink");
    let warnings = dir.record(&succeeded(0, 0, 0, 0));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with(&format!(
            "cannot read the metrics file {}",
            dir.file().display()
        )) && warnings[0].ends_with("its counters start again at 0"),
        "{}",
        warnings[0]
    );
    assert_eq!(dir.read().passes_ok, 1);
}

#[test]
fn other_metrics_and_comments_are_ignored() {
    let good = render(&Snapshot::default().after(&succeeded(1, 0, 0, 0)));
    let text = format!("# a comment\n\nsome_other_metric{{a=\"b\"}} 7\n{good}");
    assert_eq!(parse(&text), parse(&good));
}

#[test]
fn hostile_host_ids_and_states_are_escaped() {
    let pass = Pass {
        host_uuid: "a\"b\\c\nd}{,=".to_owned(),
        outcome: Outcome::Succeeded {
            inserted: 0,
            deleted: 0,
            updated: 0,
            events_lost: 0,
            deckies: states(&[("x\"} 1\nevil_total 9", 1)]),
        },
        ..succeeded(0, 0, 0, 0)
    };
    let snapshot = Snapshot::default().after(&pass);
    let text = render(&snapshot);
    assert!(
        text.contains(r#"decnet_reconcile_info{host_uuid="a\"b\\c\nd}{,=","#),
        "{text}"
    );
    assert!(
        text.contains(r#"decnet_reconcile_deckies{state="x\"} 1\nevil_total 9"} 1"#),
        "{text}"
    );
    assert!(!text.contains("\nevil_total"), "no line of the attacker's");
    let back = parse(&text).expect("parses");
    assert_eq!(back.deckies, snapshot.deckies);
}

proptest! {
    /// Whatever the host id, the states and the figures, the file reads back
    /// as it was written.
    #[test]
    fn every_file_reads_back_as_written(
        host_uuid in any::<String>(),
        deckies in prop::collection::btree_map(any::<String>(), 0..1000u64, 0..6),
        counts in prop::array::uniform7(0..(1u64 << 40)),
        docker_up in prop::option::of(any::<bool>()),
        duration_us in 0..100_000_000u64,
        finished_ms in 0..4_000_000_000_000u64,
    ) {
        // As Snapshot::after writes them: DECNET's states are always there.
        let mut by_state: BTreeMap<String, u64> =
            KNOWN_STATES.iter().map(|s| (s.to_string(), 0)).collect();
        by_state.extend(deckies);
        let snapshot = Snapshot {
            passes_ok: counts[0],
            passes_changed: counts[1],
            passes_error: counts[2],
            inserted: counts[3],
            deleted: counts[4],
            updated: counts[5],
            events_lost: counts[6],
            last_pass_duration_seconds: Some(Duration::from_micros(duration_us).as_secs_f64()),
            last_success_timestamp_seconds: Duration::from_millis(finished_ms).as_secs_f64(),
            docker_up,
            deckies: Some(by_state),
            host_uuid: Some(host_uuid),
        };
        let back = parse(&render(&snapshot));
        // The info metric is written, never read back.
        prop_assert_eq!(back, Ok(Snapshot { host_uuid: None, ..snapshot }));
    }
}

#[test]
fn the_file_is_world_readable_and_no_temporary_file_remains() {
    let dir = Dir::new();
    for _ in 0..3 {
        dir.record(&succeeded(1, 0, 0, 0));
    }
    assert_eq!(dir.names(), ["decnet-reconcile.prom"]);
    let mode = std::fs::metadata(dir.file())
        .expect("metadata")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644);
}

#[test]
fn a_missing_directory_is_one_warning_and_creates_nothing() {
    let dir = Dir::new();
    let path = dir.dir.path().join("absent").join("decnet-reconcile.prom");
    let warnings: Vec<String> = record(&path, &succeeded(1, 0, 0, 0))
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with(&format!("cannot write the metrics file {}", path.display()))
            && warnings[0].ends_with("this pass is not counted"),
        "{}",
        warnings[0]
    );
    assert_eq!(dir.names(), Vec::<String>::new());
}

#[test]
fn a_failed_rename_leaves_the_old_file_and_no_temporary_one() {
    let dir = Dir::new();
    // A directory where the file should be: the rename onto it fails.
    std::fs::create_dir(dir.file()).expect("mkdir");
    std::fs::write(dir.file().join("keep"), "x").expect("write");
    let warnings = dir.record(&succeeded(1, 0, 0, 0));
    assert_eq!(
        warnings.len(),
        2,
        "unreadable, then unwritable: {warnings:?}"
    );
    assert!(warnings[1].contains("this pass is not counted"));
    assert_eq!(dir.names(), ["decnet-reconcile.prom"]);
    assert!(dir.file().join("keep").exists());
}

#[test]
fn a_locked_directory_is_one_warning_and_leaves_the_file_as_it_was() {
    let dir = Dir::new();
    dir.record(&succeeded(1, 0, 0, 0));
    let before = std::fs::read(dir.file()).expect("read");
    let holder = File::open(dir.dir.path()).expect("open dir");
    assert!(lock(&holder, Duration::ZERO));
    let warnings: Vec<String> = record_within(
        &dir.file(),
        &succeeded(1, 0, 0, 0),
        Duration::from_millis(50),
    )
    .iter()
    .map(ToString::to_string)
    .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].starts_with("another pass kept the metrics directory"));
    assert_eq!(std::fs::read(dir.file()).expect("read"), before);
}

#[test]
fn passes_writing_at_once_lose_no_count() {
    let dir = Arc::new(Dir::new());
    dir.record(&succeeded(0, 0, 0, 0));
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let dir = Arc::clone(&dir);
            std::thread::spawn(move || {
                for _ in 0..25 {
                    // A generous bound: only a hang fails this test.
                    let warnings =
                        record_within(&dir.file(), &succeeded(1, 0, 0, 0), Duration::from_secs(60));
                    assert!(warnings.is_empty(), "{warnings:?}");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("writer");
    }
    let after = dir.read();
    assert_eq!((after.passes_ok, after.passes_changed), (1, 100));
    assert_eq!(after.inserted, 100);
}

#[test]
fn a_concurrent_reader_never_sees_half_a_file() {
    let dir = Arc::new(Dir::new());
    dir.record(&succeeded(0, 0, 0, 0));
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (dir, done) = (Arc::clone(&dir), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !done.load(Ordering::Relaxed) {
                let text = std::fs::read_to_string(dir.file()).expect("the file is always there");
                assert!(
                    text.ends_with("} 1\n") && text.contains("decnet_reconcile_info{"),
                    "a partial file:\n{text}"
                );
                parse(&text).expect("a whole file parses");
                reads += 1;
            }
            reads
        })
    };
    for _ in 0..200 {
        let pass = Pass {
            // A long value widens the window in which an in-place write
            // would show a reader half a file.
            host_uuid: "h".repeat(70_000),
            ..succeeded(1, 0, 0, 0)
        };
        assert!(dir.record(&pass).is_empty());
    }
    done.store(true, Ordering::Relaxed);
    let reads = reader.join().expect("reader");
    eprintln!("the reader read the file {reads} times while it was replaced 200 times");
}
