//! Snapshots of what operators and scripts read (SPEC §7): the change table
//! and the JSON report, from the built binary on a real pass.

mod support;

use serde_json::json;
use support::TestEnv;

/// A pass with one of each change: insert, delete, state update, config update.
fn env_with_every_kind_of_change(test: &str) -> TestEnv {
    let env = TestEnv::new(test);
    let mut drifted = env.decky("snap-drifted", &["ssh"]);
    drifted["ip"] = json!("10.0.0.7");
    let mut foreign = env.decky("snap-foreign", &["ssh"]);
    foreign["host_uuid"] = json!("host-b");
    env.write_state(&[
        env.decky("snap-new", &["smtp_relay", "ftp"]),
        env.decky("snap-crashed", &["ssh"]),
        drifted,
        foreign,
    ]);
    env.seed_row("local", "snap-gone", "running");
    env.seed_row("local", "snap-crashed", "running");
    env.run(&[]).expect_code(0);
    env.connect()
        .execute_batch(
            "UPDATE fleet_deckies SET state = 'running' WHERE name = 'snap-crashed';
             UPDATE fleet_deckies SET decky_ip = '10.0.0.3' WHERE name = 'snap-drifted';
             INSERT INTO fleet_deckies VALUES ('local', 'snap-gone', '[\"ssh\"]', NULL, '10.0.0.9',
               'failed', NULL, NULL, NULL, '2026-01-01 00:00:00.000000');
             DELETE FROM fleet_deckies WHERE name = 'snap-new';",
        )
        .expect("drift");
    env
}

#[test]
fn table_output() {
    let env = env_with_every_kind_of_change("snap-table");
    let run = env.run(&["--dry-run"]).expect_code(0);
    insta::assert_snapshot!(run.stdout);
}

#[test]
fn json_output() {
    let env = env_with_every_kind_of_change("snap-json");
    let run = env.run(&["--output", "json"]).expect_code(0);
    insta::assert_snapshot!(serde_json::to_string_pretty(&run.json()).expect("JSON"));
}

#[test]
fn converged_table_is_only_the_summary() {
    let env = TestEnv::new("snap-quiet");
    env.write_state(&[env.decky("snap-only", &["ssh"])]);
    env.run(&[]).expect_code(0);
    let run = env.run(&[]).expect_code(0);
    insta::assert_snapshot!(run.stdout);
}

#[test]
fn control_characters_in_names_are_escaped() {
    let env = TestEnv::new("snap-escape");
    env.write_state(&[env.decky("snap-\u{1b}[31mred\u{7}", &["ssh"])]);
    let run = env.run(&[]).expect_code(0);
    assert!(
        !run.stdout.contains('\u{1b}'),
        "a raw escape reached the terminal"
    );
    insta::assert_snapshot!(run.stdout);
}
