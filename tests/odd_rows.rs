//! Rows another writer left in SQLite with values DECNET never writes: names
//! that are not UTF-8 or are BLOBs, numbers and garbage in text columns. The
//! pass must neither fail nor panic: it deletes what the state file lacks,
//! repairs the rest, and prints every name escaped.

mod support;

use support::TestEnv;

#[test]
fn odd_stored_values_are_repaired_or_deleted() {
    let env = TestEnv::new("odd-rows");
    let kept = env.name("kept");
    env.seed_row("local", &kept, "running");
    env.execute(&format!(
        "INSERT INTO fleet_deckies VALUES ('local', CAST(X'6261642dff' AS TEXT), '[]', NULL, NULL, 'running', NULL, NULL, NULL, 'x');
         INSERT INTO fleet_deckies VALUES ('local', X'626c6f62', X'00ff', X'01', 5, 7, NULL, NULL, NULL, 'x');
         UPDATE fleet_deckies SET services = X'ff', decky_config = 3.5, state = 42 WHERE name = '{kept}';"
    ));
    env.write_state(&[env.decky(&kept, &["ssh"])]);
    let run = env.run(&["--output", "json"]).expect_code(0);
    let report = run.json();
    assert_eq!(report["counts"]["deleted"], 2, "{}", run.stdout);
    assert_eq!(report["counts"]["updated"], 1, "{}", run.stdout);
    let rows = env.rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].name, kept);
    assert_eq!(rows[0].services, r#"["ssh"]"#);
    assert_eq!(rows[0].state, "torn_down");
    env.run(&["--detailed-exitcode"]).expect_code(0);
}

#[test]
fn hostile_names_print_escaped() {
    let env = TestEnv::new("odd-print");
    env.execute(&format!(
        "{}; INSERT INTO fleet_deckies VALUES ('local', CAST(X'1b5b33316dff' AS TEXT), '[]', NULL, NULL, 'running', NULL, NULL, NULL, 'x');",
        support::SCHEMA_IF_ABSENT
    ));
    let run = env.run(&[]).expect_code(0);
    assert!(
        !run.stdout.contains('\u{1b}'),
        "a raw escape reached the terminal: {}",
        run.stdout
    );
    assert!(run.stdout.contains("\\u{1b}[31m\u{fffd}"), "{}", run.stdout);
    assert!(env.rows().is_empty());
}
