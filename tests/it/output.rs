//! Snapshots of what operators and scripts read (SPEC §7): the change table
//! and the JSON report, from the built binary on a real pass. The host is
//! `local`, the snapshots' own.

use serde_json::json;

use crate::fixture::{assert_terminal_safe, decky, terminal_unsafe, Env, SECRET};

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

/// A secret of the invocation (a variable whose name says so), which a
/// decky's config happens to hold too: masked before the table shortens it.
const INVOCATION_SECRET: &str = "jwt-secret-0123456789abcdef";

/// Each kind of old → new a pass can show, on a host whose rows a first pass
/// wrote from one state file and which then drifted: the state file changed
/// (services, IP, config keys, nested keys, many keys, hostile and
/// secret-looking values), a column edited behind its back (the IP alone, a
/// config that is not JSON), a container gone (the state), a row to delete
/// and a decky to insert.
fn env_with_every_kind_of_diff() -> Env {
    let env = Env::new().with_host("local");
    let before = |name: &str| {
        let mut d = decky(name, &["ssh", "http"]);
        d["service_config"] = json!({"ssh": {"port": 22, "banner": "OpenSSH_8.4"}});
        d
    };
    let mut secret_before = before("snap-secret");
    secret_before["service_config"]["smtp_relay"] = json!({"upstream_pass": "old-relay-password"});
    let mut url_before = before("snap-url");
    url_before["service_config"]["smtp_relay"] =
        json!({"upstream": format!("smtp://relay:{SECRET}@mx:25")});
    let mut invocation_before = before("snap-invocation");
    invocation_before["hostname"] = json!(format!("old one, {INVOCATION_SECRET}"));
    env.test()
        .state(&[
            before("snap-crashed"),
            before("snap-moved"),
            before("snap-keys"),
            before("snap-many"),
            before("snap-garbled"),
            before("snap-column"),
            before("snap-hostile"),
            secret_before.clone(),
            url_before.clone(),
            invocation_before,
            before("snap-gone"),
        ])
        .run();
    env.execute(
        "UPDATE fleet_deckies SET state = 'running' WHERE name = 'snap-crashed';
         UPDATE fleet_deckies SET decky_ip = '10.0.0.99' WHERE name = 'snap-column';
         UPDATE fleet_deckies SET decky_config = '{\"name\": \"snap-garbled\", trunc' WHERE name = 'snap-garbled';",
    );

    let mut moved = before("snap-moved");
    moved["ip"] = json!("10.0.0.7");
    moved["services"] = json!(["http", "ftp"]);
    let mut keys = before("snap-keys");
    keys["hostname"] = json!("host-002");
    keys["archetype"] = json!("web-server");
    keys["service_config"]["ssh"]["port"] = json!(2222);
    let mut many = before("snap-many");
    many["distro"] = json!("ubuntu");
    many["base_image"] = json!("ubuntu:24.04-with-a-very-long-tag-indeed");
    many["hostname"] = json!("host-003");
    many["nmap_os"] = json!("windows");
    many["mutate_interval"] = json!(30);
    let mut hostile = before("snap-hostile");
    hostile["hostname"] = json!("\u{1b}[2J\u{7}");
    hostile["service_config"]["\u{9b}"] = json!({});
    hostile["nmap_os"] = json!("\u{202e}xe");
    let mut secret = secret_before;
    secret["service_config"]["smtp_relay"] = json!({"upstream_pass": "new-relay-password"});
    let mut url = url_before;
    url["service_config"]["smtp_relay"] =
        json!({"upstream": format!("smtp://relay:{SECRET}@mx2:25")});
    // Cut at 20 characters before masking, it would show "new one, jwt-secret…".
    let mut invocation = before("snap-invocation");
    invocation["hostname"] = json!(format!("new one, {INVOCATION_SECRET}"));
    env.write_state(&[
        before("snap-crashed"),
        moved,
        keys,
        many,
        before("snap-garbled"),
        before("snap-column"),
        hostile,
        secret,
        url,
        invocation,
        decky("snap-new", &["ssh"]),
    ]);
    env
}

/// Raw control characters and bidirectional overrides escaped the way the
/// table does, for a snapshot of pretty-printed JSON (which serde prints raw).
fn shown_escaped(text: &str) -> String {
    text.chars()
        .map(|c| match terminal_unsafe(c) {
            true => c.escape_default().to_string(),
            false => c.to_string(),
        })
        .collect()
}

#[track_caller]
fn assert_nothing_raw_or_secret(what: &str, text: &str) {
    assert_terminal_safe(what, text);
    for secret in [SECRET, "jwt-", "relay-password"] {
        assert!(!text.contains(secret), "{what} shows {secret:?}: {text}");
    }
}

#[test]
fn diff_table_shows_each_kind_of_change_old_to_new() {
    let env = env_with_every_kind_of_diff();
    let out = env
        .test()
        .arg("--dry-run")
        .env_var("DECNET_JWT_SECRET", INVOCATION_SECRET)
        .run();
    assert_nothing_raw_or_secret("the table", &out.stdout);
    insta::assert_snapshot!(out.stdout);
}

#[test]
fn diff_json_has_full_values_masked_and_is_the_same_dry_or_not() {
    let env = env_with_every_kind_of_diff();
    let dry = env
        .test()
        .args(["--dry-run", "--output", "json"])
        .env_var("DECNET_JWT_SECRET", INVOCATION_SECRET)
        .run();
    assert_nothing_raw_or_secret("the JSON report", &dry.stdout);
    let report = dry.json();
    let pretty = serde_json::to_string_pretty(&report["changes"]).expect("JSON");
    insta::assert_snapshot!(shown_escaped(&pretty));

    let applied = env
        .test()
        .args(["--output", "json"])
        .env_var("DECNET_JWT_SECRET", INVOCATION_SECRET)
        .run();
    assert_eq!(
        applied.json()["changes"],
        report["changes"],
        "a dry run shows the diff the pass then applies"
    );
    env.test().stdout("inserted=0 deleted=0 updated=0\n").run();
}

/// An image reference with a digest (DECNET 1.0.0's default `build_base`,
/// which the pass fills in for a decky without one) is shown whole: its `@`
/// ends no user info, and the tag before it is no password.
#[test]
fn an_image_reference_with_a_digest_is_shown_whole() {
    const DECNETS_BUILD_BASE: &str = "debian:bookworm-slim@sha256:\
        f9c6a2fd2ddbc23e336b6257a5245e31f996953ef06cd13a59fa0a1df2d5c252";
    let env = Env::new();
    let mut without_build_base = decky(&env.name("a"), &["ssh"]);
    without_build_base
        .as_object_mut()
        .expect("a decky is an object")
        .remove("build_base");
    let report = env
        .test()
        .state(&[without_build_base])
        .args(["--dry-run", "--output", "json"])
        .run()
        .json();
    assert_eq!(
        report["changes"][0]["diff"]["decky_config"]["new"]["build_base"], DECNETS_BUILD_BASE,
        "{report}"
    );
}
