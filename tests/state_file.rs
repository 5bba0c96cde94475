//! Bad state files (SPEC §3.1, §9): exit 1, a message naming the file and the
//! problem, no panic, and a seeded DB left untouched. Odd but valid ones pass.

mod support;

use serde_json::{json, Value};
use support::TestEnv;

/// A valid decky to break one field of.
fn decky(name: &str) -> Value {
    json!({"name": name, "ip": "10.0.0.2", "services": ["ssh"], "distro": "debian",
           "base_image": "debian:bookworm-slim", "hostname": "host-000"})
}

fn document(deckies: Value) -> String {
    json!({"config": {"mode": "unihost", "deckies": deckies}, "compose_path": "/x.yml"}).to_string()
}

fn with_field(field: &str, value: Value) -> String {
    let mut bad = decky("bad-one");
    bad[field] = value;
    document(json!([decky("fine"), bad]))
}

/// Runs a pass on `text` over a seeded DB and checks the refusal.
fn assert_refused(case: &str, text: &str, expected: &[&str]) {
    let env = TestEnv::new("bad");
    env.seed_row("local", "seeded", "running");
    env.seed_row("local", "bad-one", "running");
    let db_before = std::fs::read(&env.db).expect("db");
    env.write_state_text(text);
    let run = env.run(&[]);
    assert_eq!(run.code, 1, "{case}: exit code; stderr: {}", run.stderr);
    let state_file = env.state_file.display().to_string();
    assert!(
        run.stderr.contains(&state_file),
        "{case}: the file is not named: {}",
        run.stderr
    );
    for needle in expected {
        assert!(
            run.stderr.contains(needle),
            "{case}: {needle:?} missing from: {}",
            run.stderr
        );
    }
    assert_eq!(run.stdout, "", "{case}");
    assert_eq!(
        std::fs::read(&env.db).expect("db"),
        db_before,
        "{case}: the DB changed"
    );
    assert_eq!(env.rows().len(), 2, "{case}");
}

#[test]
fn unparsable_files_are_refused_with_line_and_column() {
    let valid = document(json!([decky("a")]));
    let truncated = &valid[..valid.len() / 2];
    assert_refused("empty", "", &["not valid JSON", "line 1 column 0"]);
    assert_refused("truncated", truncated, &["not valid JSON", "line 1 column"]);
    assert_refused(
        "not JSON",
        "deckies: [a, b]\n",
        &["not valid JSON", "line 1 column 1"],
    );
    assert_refused("binary", "\u{0}\u{1}\u{2}", &["not valid JSON"]);
}

#[test]
fn wrong_shapes_are_refused() {
    assert_refused("a list", "[]", &["top level"]);
    assert_refused(
        "no config",
        r#"{"compose_path": "/x.yml"}"#,
        &["missing field `config`"],
    );
    assert_refused(
        "no compose_path",
        &json!({"config": {"deckies": [decky("a")]}}).to_string(),
        &["missing field `compose_path`"],
    );
    assert_refused(
        "compose_path not a string",
        &json!({"config": {"deckies": [decky("a")]}, "compose_path": 5}).to_string(),
        &["compose_path"],
    );
    assert_refused(
        "empty deckies",
        &document(json!([])),
        &["config.deckies", "empty"],
    );
}

#[test]
fn decky_type_errors_name_the_decky_and_the_field() {
    let cases: [(&str, &str, Value, &str); 8] = [
        ("empty services", "services", json!([]), "services"),
        ("string services", "services", json!("ssh"), "services"),
        (
            "non-string service",
            "services",
            json!(["ssh", 22]),
            "services[1]",
        ),
        (
            "number for a string field",
            "hostname",
            json!(5),
            "hostname",
        ),
        (
            "mutate_interval as string",
            "mutate_interval",
            json!("30"),
            "mutate_interval",
        ),
        (
            "mutate_interval as float",
            "mutate_interval",
            json!(30.0),
            "mutate_interval",
        ),
        (
            "mutate_interval as bool",
            "mutate_interval",
            json!(true),
            "mutate_interval",
        ),
        (
            "service_config value not an object",
            "service_config",
            json!({"ssh": 1}),
            "service_config",
        ),
    ];
    for (case, field, value, expected) in cases {
        assert_refused(
            case,
            &with_field(field, value),
            &["\"bad-one\"", "config.deckies[1]", expected],
        );
    }
}

#[test]
fn missing_required_field_is_named() {
    let mut bad = decky("bad-one");
    bad.as_object_mut().expect("object").remove("ip");
    assert_refused(
        "missing ip",
        &document(json!([bad])),
        &["\"bad-one\"", "missing field `ip`"],
    );
}

#[test]
fn two_deckies_with_one_name_are_refused() {
    assert_refused(
        "duplicate names",
        &document(json!([decky("twin"), decky("twin")])),
        &["\"twin\"", "config.deckies[1]", "index 0"],
    );
}

#[test]
fn unreadable_file_is_an_error_not_a_teardown() {
    let env = TestEnv::new("unreadable");
    env.seed_row("local", "seeded", "running");
    std::fs::create_dir(&env.state_file).expect("a directory where the file should be");
    let run = env.run(&[]).expect_code(1);
    assert!(
        run.stderr.contains("cannot read state file"),
        "{}",
        run.stderr
    );
    assert_eq!(env.rows().len(), 1);
}

#[test]
fn unknown_fields_are_kept_with_one_warning() {
    let env = TestEnv::new("unknown");
    let mut first = decky(&env.name("a"));
    first["future_field"] = json!({"x": [1, 2]});
    first["another"] = json!("é");
    let mut second = decky(&env.name("b"));
    second["future_field"] = json!(null);
    env.write_state_text(document(json!([first, second])));
    let run = env.run(&[]).expect_code(0);
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("unknown decky fields"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", run.stderr);
    assert!(
        warnings[0].contains(r#""future_field", "another""#),
        "{}",
        warnings[0]
    );
    let config = env.row(&env.name("a")).decky_config.expect("decky_config");
    assert!(
        config.ends_with(r#""host_uuid":null,"future_field":{"x":[1,2]},"another":"é"}"#),
        "{config}"
    );
}

#[test]
fn float_given_an_int_and_non_ascii_are_stored_as_decnet_does() {
    let env = TestEnv::new("floats");
    let mut d = decky(&env.name("a"));
    d["last_mutated"] = json!(5);
    d["hostname"] = json!("hôte-ñ");
    env.write_state_text(document(json!([d])));
    env.run(&[]).expect_code(0);
    let config = env.row(&env.name("a")).decky_config.expect("decky_config");
    assert!(config.contains(r#""hostname":"hôte-ñ""#), "{config}");
    assert!(config.contains(r#""last_mutated":5.0,"#), "{config}");
}

#[test]
fn twenty_thousand_deckies_are_handled() {
    let env = TestEnv::new("large");
    let deckies: Vec<Value> = (0..20_000)
        .map(|i| decky(&format!("{}-{i:05}", env.prefix)))
        .collect();
    env.write_state_text(document(Value::Array(deckies)));
    let run = env.run(&["--output", "json"]).expect_code(0);
    assert_eq!(run.json()["counts"]["inserted"], 20_000);
    assert_eq!(env.rows().len(), 20_000);
    let again = env.run(&["--output", "json"]).expect_code(0);
    assert_eq!(again.json()["changes"], json!([]));
}
