//! Snapshots of what operators and scripts read (SPEC §7): the change table
//! and the JSON report, from the built binary on a real pass. The host is
//! `local`, the snapshots' own.

use serde_json::json;

use crate::fixture::{decky, Env};

const SKIPPED: &str = " INFO decky \"snap-foreign\" belongs to host \"host-b\": skipped\n";

/// A pass with one of each change: insert, delete, state update, config update.
fn env_with_every_kind_of_change() -> Env {
    let env = Env::new().with_host("local");
    let mut drifted = decky("snap-drifted", &["ssh"]);
    drifted["ip"] = json!("10.0.0.7");
    let mut foreign = decky("snap-foreign", &["ssh"]);
    foreign["host_uuid"] = json!("host-b");
    env.test()
        .state(&[
            decky("snap-new", &["smtp_relay", "ftp"]),
            decky("snap-crashed", &["ssh"]),
            drifted,
            foreign,
        ])
        .rows(&[("snap-gone", "running"), ("snap-crashed", "running")])
        .stderr(SKIPPED)
        .run();
    env.execute(
        "UPDATE fleet_deckies SET state = 'running' WHERE name = 'snap-crashed';
         UPDATE fleet_deckies SET decky_ip = '10.0.0.3' WHERE name = 'snap-drifted';
         INSERT INTO fleet_deckies VALUES ('local', 'snap-gone', '[\"ssh\"]', NULL, '10.0.0.9',
           'failed', NULL, NULL, NULL, '2026-01-01 00:00:00.000000');
         DELETE FROM fleet_deckies WHERE name = 'snap-new';",
    );
    env
}

#[test]
fn table_output() {
    let env = env_with_every_kind_of_change();
    let out = env.test().arg("--dry-run").stderr(SKIPPED).run();
    insta::assert_snapshot!(out.stdout);
}

#[test]
fn json_output() {
    let env = env_with_every_kind_of_change();
    let out = env.test().args(["--output", "json"]).stderr(SKIPPED).run();
    insta::assert_snapshot!(serde_json::to_string_pretty(&out.json()).expect("JSON"));
}

#[test]
fn converged_table_is_only_the_summary() {
    let env = Env::new().with_host("local");
    env.test().state(&[decky("snap-only", &["ssh"])]).run();
    let out = env.test().run();
    insta::assert_snapshot!(out.stdout);
}

#[test]
fn control_characters_in_names_are_escaped() {
    let env = Env::new().with_host("local");
    let out = env
        .test()
        .state(&[decky("snap-\u{1b}[31mred\u{7}", &["ssh"])])
        .run();
    assert!(
        !out.stdout.contains('\u{1b}'),
        "a raw escape reached the terminal"
    );
    insta::assert_snapshot!(out.stdout);
}
