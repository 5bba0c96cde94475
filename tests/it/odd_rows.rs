//! Rows another writer left in SQLite with values DECNET never writes: names
//! that are not UTF-8 or are BLOBs, numbers and garbage in text columns. The
//! pass must neither fail nor panic: it deletes what the state file lacks,
//! repairs the rest, and prints every name escaped.

use crate::fixture::{decky, Env};

#[test]
fn odd_stored_values_are_repaired_or_deleted() {
    let env = Env::new();
    let (host, kept) = (&env.host, env.name("kept"));
    env.seed_row(host, &kept, "running");
    env.execute(&format!(
        "INSERT INTO fleet_deckies VALUES ('{host}', CAST(X'6261642dff' AS TEXT), '[]', NULL, NULL, 'running', NULL, NULL, NULL, 'x');
         INSERT INTO fleet_deckies VALUES ('{host}', X'626c6f62', X'00ff', X'01', 5, 7, NULL, NULL, NULL, 'x');
         UPDATE fleet_deckies SET services = X'ff', decky_config = 3.5, state = 42 WHERE name = '{kept}';"
    ));
    let out = env
        .test()
        .state(&[decky(&kept, &["ssh"])])
        .args(["--output", "json"])
        .run();
    let report = out.json();
    assert_eq!(report["counts"]["deleted"], 2, "{}", out.stdout);
    assert_eq!(report["counts"]["updated"], 1, "{}", out.stdout);
    let rows = env.rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].name, kept);
    assert_eq!(rows[0].services, r#"["ssh"]"#);
    assert_eq!(rows[0].state, "torn_down");
    env.test().arg("--detailed-exitcode").run();
}

#[test]
fn hostile_names_print_escaped() {
    let env = Env::new();
    env.execute(&format!(
        "INSERT INTO fleet_deckies VALUES ('{}', CAST(X'1b5b33316dff' AS TEXT), '[]', NULL, NULL, 'running', NULL, NULL, NULL, 'x');",
        env.host
    ));
    let out = env.test().run();
    assert!(
        !out.stdout.contains('\u{1b}'),
        "a raw escape reached the terminal: {}",
        out.stdout
    );
    assert!(out.stdout.contains("\\u{1b}[31m\u{fffd}"), "{}", out.stdout);
    assert!(env.rows().is_empty());
}
