//! Hostile input (SPEC §3, §7, §9): every fuzz corpus input replayed through
//! the parser and the planner, and decky names built to hurt — quotes, SQL,
//! control characters, ANSI escapes, 10 kB, bytes that are not UTF-8 — given to
//! the real binary through the state file and through the DB. They are stored
//! verbatim, printed escaped, and never make the pass panic.

mod support;

#[path = "../fuzz/harness.rs"]
mod harness;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use serde_json::Value;
use support::{figure, stale_socket, EventLog, Run, TestEnv, REDIS_URL};

/// Every file of the committed corpus (the fuzzer's seeds, the inputs it found
/// that reach new code, and any input that ever crashed it) through
/// `fuzz/harness.rs`: parse, plan, render, build events, check the invariants.
#[test]
fn every_fuzz_corpus_input_replays_cleanly() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/state_and_plan");
    let mut inputs: Vec<_> = std::fs::read_dir(&corpus)
        .unwrap_or_else(|err| panic!("{}: {err}", corpus.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 20, "the corpus lost its files");
    let mut failures = Vec::new();
    for input in &inputs {
        let bytes = std::fs::read(input).expect("read corpus file");
        if std::panic::catch_unwind(|| harness::exercise(&bytes)).is_err() {
            failures.push(input.file_name().expect("name").to_owned());
        }
    }
    assert!(
        failures.is_empty(),
        "inputs that broke an invariant: {failures:?}"
    );
    figure("corpus_inputs_replayed", inputs.len());
}

/// The names no state file should hold, and every one of them will some day.
fn hostile_names(env: &TestEnv) -> Vec<String> {
    vec![
        env.name(r#"quote"double'single`back"#),
        env.name("sql'); DROP TABLE fleet_deckies;--"),
        env.name("x' OR '1'='1"),
        env.name("esc\u{1b}[31mred\u{1b}[0m\u{1b}]0;title\u{7}"),
        env.name("csi\u{9b}2J-c1"),
        env.name("cr\rlf\nnul\u{0}tab\tdel\u{7f}"),
        env.name("back\\slash\\u{1b}"),
        env.name("bidi\u{202e}txt.exe"),
        env.name("é-ünï-字-😀"),
        env.name(&"long".repeat(2_500)),
    ]
}

/// JSON as DECNET writes it: ASCII only, every other character `\u`-escaped.
fn ascii_json(value: &Value) -> String {
    let text = serde_json::to_string_pretty(value).expect("json");
    let mut ascii = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            ascii.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                ascii.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    ascii
}

fn write_ascii_state(env: &TestEnv, deckies: &[Value]) {
    let document = serde_json::json!({
        "config": {"mode": "unihost", "deckies": deckies},
        "compose_path": "/var/lib/decnet/docker-compose.yml"
    });
    env.write_state_text(ascii_json(&document));
}

/// Raw control characters (C0, C1, DEL) and bidirectional overrides, which
/// would let a name rewrite or reorder what the operator sees.
fn assert_terminal_safe(what: &str, text: &str) {
    let raw: Vec<char> = text
        .chars()
        .filter(|c| {
            (c.is_control() && *c != '\n')
                || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .collect();
    assert!(raw.is_empty(), "{what} carries raw {raw:?}: {text:?}");
}

fn dead_docker(env: &TestEnv) -> String {
    let path = env.dir.path().join("dead-docker.sock");
    if !path.exists() {
        stale_socket(&path);
    }
    format!("unix://{}", path.display())
}

#[test]
fn hostile_names_are_stored_verbatim_printed_escaped_and_deleted() {
    let mut env = TestEnv::new("hostile");
    env.host = format!("host-{}", env.prefix);
    let events = EventLog::subscribe(&env.host);
    let docker = dead_docker(&env);
    let names = hostile_names(&env);
    let deckies: Vec<Value> = names.iter().map(|n| env.decky(n, &["ssh"])).collect();
    write_ascii_state(&env, &deckies);

    let dry = env
        .run(&["--docker-host", &docker, "--dry-run"])
        .expect_code(0);
    assert_terminal_safe("the table", &dry.stdout);
    assert!(dry.stdout.contains("\\u{1b}[31mred"), "{}", dry.stdout);
    assert!(
        dry.stdout.contains(&format!("inserted={}", names.len())),
        "{}",
        dry.stdout
    );

    let run = Run::of(env.command_publishing_to(REDIS_URL).args([
        "--docker-host",
        &docker,
        "--output",
        "json",
    ]))
    .expect_code(0);
    assert_terminal_safe("stderr", &run.stderr);
    let report = run.json();
    let shown: Vec<&str> = report["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(shown, sorted, "JSON output carries every name verbatim");

    let mut stored: Vec<String> = env.rows().into_iter().map(|r| r.name).collect();
    stored.sort();
    assert_eq!(stored, sorted, "stored verbatim");
    for row in env.rows() {
        let config: Value =
            serde_json::from_str(row.decky_config.as_deref().expect("config")).expect("JSON");
        assert_eq!(config["name"], row.name.as_str());
    }

    // Names with whitespace or `.` cannot form a channel: written, not announced, said so.
    let unannounceable = names
        .iter()
        .filter(|n| n.contains(|c: char| c.is_whitespace() || matches!(c, '.' | '*' | '>')))
        .count();
    assert!(unannounceable >= 2);
    assert_eq!(
        report["published"].as_u64(),
        Some((names.len() - unannounceable) as u64)
    );
    assert_eq!(
        run.stderr.matches("not announced").count(),
        unannounceable,
        "{}",
        run.stderr
    );
    let announced = events.collect(names.len() - unannounceable);
    assert_eq!(announced.len(), names.len() - unannounceable);
    for (channel, message) in &announced {
        let name = message["payload"]["name"].as_str().expect("name");
        assert!(names.iter().any(|n| n == name), "{name:?}");
        assert_eq!(channel, &format!("decky.{}:{name}.state", env.host));
    }

    let again = env.run(&["--docker-host", &docker]).expect_code(0);
    assert!(
        again
            .stdout
            .ends_with("inserted=0 deleted=0 updated=0 docker=unknown\n"),
        "hostile names converge: {}",
        again.stdout
    );

    let plain = env.name("plain");
    write_ascii_state(&env, &[env.decky(&plain, &["ssh"])]);
    let teardown = env.run(&["--docker-host", &docker]).expect_code(0);
    assert_terminal_safe("the table", &teardown.stdout);
    assert!(
        teardown
            .stdout
            .contains(&format!("inserted=1 deleted={} updated=0", names.len())),
        "{}",
        teardown.stdout
    );
    let rows = env.rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].name, plain);
    figure("hostile_names_round_tripped", names.len());
}

/// A name that is not Unicode cannot be in a valid state file: a lone surrogate
/// escape (what Python's `json.dumps` writes for an undecodable byte) or raw
/// bytes that are not UTF-8 make it a bad state file, refused with its place,
/// and nothing is deleted on its account.
#[test]
fn a_state_file_with_non_unicode_names_is_refused_with_its_place() {
    let env = TestEnv::new("hostile-utf8");
    let docker = dead_docker(&env);
    let kept = env.name("kept");
    env.write_state(&[env.decky(&kept, &["ssh"])]);
    env.run(&["--docker-host", &docker]).expect_code(0);
    let before = env.rows();
    let template = |name: &[u8]| {
        let mut text = br#"{"config": {"deckies": [{"name": ""#.to_vec();
        text.extend_from_slice(name);
        text.extend_from_slice(
            br#"", "ip": "10.0.0.2", "services": ["ssh"], "distro": "debian", "base_image": "b", "hostname": "h"}]}, "compose_path": "/x"}"#,
        );
        text
    };
    for name in [
        &b"lone\\udc80surrogate"[..],
        b"\\ud800",
        b"raw\xff\xfebytes",
        b"overlong\xc0\xaf",
    ] {
        env.write_state_text(template(name));
        let run = env.run(&["--docker-host", &docker]).expect_code(1);
        let file = env.state_file.display().to_string();
        assert!(run.stderr.contains(&file), "{}", run.stderr);
        assert!(
            run.stderr.contains("line 1 column"),
            "names the place: {}",
            run.stderr
        );
        assert_terminal_safe("stderr", &run.stderr);
        assert_eq!(env.rows(), before, "nothing written for {name:?}");
    }
    figure("non_unicode_state_files_refused", 4);
}

/// Valid JSON escapes for control characters and NUL are names like any other.
#[test]
fn escaped_control_characters_in_the_state_file_are_stored_verbatim() {
    let env = TestEnv::new("hostile-escapes");
    let docker = dead_docker(&env);
    let name = format!("{}\\u0000\\u001b[2J\\u0007\\r\\n", env.prefix);
    env.write_state_text(format!(
        r#"{{"config": {{"deckies": [{{"name": "{name}", "ip": "10.0.0.2", "services": ["ssh"],
             "distro": "debian", "base_image": "b", "hostname": "h"}}]}}, "compose_path": "/x"}}"#
    ));
    let run = env.run(&["--docker-host", &docker]).expect_code(0);
    assert_terminal_safe("the table", &run.stdout);
    assert_eq!(
        env.rows()[0].name,
        format!("{}\u{0}\u{1b}[2J\u{7}\r\n", env.prefix)
    );
}

/// Arguments and environment that are not UTF-8 are usage errors (exit 1), not panics.
#[test]
fn a_host_id_that_is_not_utf8_is_a_usage_error() {
    let env = TestEnv::new("hostile-arg");
    let bad = OsStr::from_bytes(b"host-\xff");
    let run = Run::of(env.command().arg("--host-uuid").arg(bad)).expect_code(1);
    assert!(run.stderr.contains("UTF-8"), "{}", run.stderr);
    let run = Run::of(
        std::process::Command::new(env!("CARGO_BIN_EXE_decnet-reconcile"))
            .env("DECNET_HOST_UUID", bad)
            .arg("--state-file")
            .arg(&env.state_file)
            .arg("--db")
            .arg(&env.db)
            .args(["--no-publish", "--docker-host", &dead_docker(&env)]),
    )
    .expect_code(1);
    assert!(run.stderr.contains("UTF-8"), "{}", run.stderr);
    assert!(!env.db.exists(), "nothing was created");
}

/// The tool's own warnings quote what the file says: an unknown field named to
/// forge a journal line (a newline, a carriage return) must not start one.
#[test]
fn unknown_field_names_cannot_forge_log_lines() {
    let env = TestEnv::new("hostile-log");
    let docker = dead_docker(&env);
    env.write_state_text(format!(
        r#"{{"config": {{"deckies": [{{"name": "{}", "ip": "1", "services": ["ssh"], "distro": "d",
             "base_image": "b", "hostname": "h",
             "x\nERROR forged journal line\r\u001b[2J": 1}}]}}, "compose_path": "/x"}}"#,
        env.name("d")
    ));
    let run = env.run(&["--docker-host", &docker]).expect_code(0);
    assert_eq!(
        env.rows().len(),
        1,
        "the unknown field is kept, not refused"
    );
    assert!(
        !run.stderr
            .lines()
            .any(|line| line.starts_with("ERROR forged")),
        "a forged line reached the log: {:?}",
        run.stderr
    );
    assert_terminal_safe("stderr", &run.stderr);
}

/// Seeds a row of this host whose stored `name` is the given SQL value.
fn seed_raw_name(env: &TestEnv, sql_name: &str) {
    env.execute(&format!(
        "{}; INSERT INTO fleet_deckies VALUES ('{}', {sql_name}, '[\"ssh\"]', NULL, '10.0.0.9', \
         'running', NULL, NULL, NULL, '2026-01-01 00:00:00.000000')",
        support::SCHEMA_IF_ABSENT,
        env.host
    ));
}

/// `(name bytes, SQLite type)` of every row, as stored.
fn stored_names(env: &TestEnv) -> Vec<(Vec<u8>, String)> {
    let conn = env.connect();
    let mut statement = conn
        .prepare("SELECT CAST(name AS BLOB), typeof(name) FROM fleet_deckies ORDER BY 1")
        .expect("select");
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

/// Hostile names another writer put in the DB (none of them in the state
/// file): every row is deleted by its exact key, and the table shows each name
/// escaped.
#[test]
fn hostile_names_left_in_the_db_are_deleted_and_printed_escaped() {
    let env = TestEnv::new("hostile-db");
    let docker = dead_docker(&env);
    let names = hostile_names(&env);
    env.execute(support::SCHEMA_IF_ABSENT);
    let conn = env.connect();
    for name in &names {
        conn.execute(
            "INSERT INTO fleet_deckies VALUES ('local', ?1, '[\"ssh\"]', NULL, '10.0.0.9', \
             'running', NULL, NULL, NULL, '2026-01-01 00:00:00.000000')",
            [name],
        )
        .expect("seed a hostile row");
    }
    seed_raw_name(
        &env,
        &format!("CAST(X'{}1b5b326aff' AS TEXT)", hex(env.prefix.as_bytes())),
    );
    env.write_state(&[env.decky(&env.name("plain"), &["ssh"])]);
    let run = env.run(&["--docker-host", &docker]).expect_code(0);
    assert_terminal_safe("the table", &run.stdout);
    assert_terminal_safe("stderr", &run.stderr);
    assert!(
        run.stdout
            .contains(&format!("inserted=1 deleted={} updated=0", names.len() + 1)),
        "{}",
        run.stdout
    );
    let rows = env.rows();
    assert_eq!(rows.len(), 1, "only the state file's decky is left");
    assert_eq!(rows[0].name, env.name("plain"));
}

/// A stored name that is not UTF-8 reads as lossy text (`x\xff` → `x�`). A
/// state-file decky really named `x�` must still get a row of its own, and the
/// undecodable row must go: no state file can name it.
#[test]
fn a_decky_named_like_a_lossy_stored_name_still_gets_its_row() {
    let env = TestEnv::new("hostile-lossy");
    let docker = dead_docker(&env);
    let prefix = env.prefix.as_bytes();
    seed_raw_name(
        &env,
        &format!("CAST(X'{}ff' AS TEXT)", hex(&[prefix, b"-x"].concat())),
    );
    let decky = env.name("x\u{fffd}");
    env.write_state(&[env.decky(&decky, &["ssh"])]);
    let run = env.run(&["--docker-host", &docker]).expect_code(0);
    assert_terminal_safe("the table", &run.stdout);
    env.run(&["--docker-host", &docker]).expect_code(0);
    assert_eq!(
        stored_names(&env),
        [(decky.into_bytes(), "text".to_owned())],
        "one clean row for the decky, none for the undecodable name: {}",
        run.stdout
    );
}

/// A name stored as a BLOB never equals DECNET's TEXT name (SQLite compares
/// by type first), so DECNET cannot find that row: the decky it spells needs a
/// TEXT row, and the BLOB row must go.
#[test]
fn a_blob_name_does_not_stand_in_for_the_decky_it_spells() {
    let env = TestEnv::new("hostile-blob");
    let docker = dead_docker(&env);
    let decky = env.name("d1");
    seed_raw_name(&env, &format!("X'{}'", hex(decky.as_bytes())));
    env.write_state(&[env.decky(&decky, &["ssh"])]);
    env.run(&["--docker-host", &docker]).expect_code(0);
    let found: i64 = env
        .connect()
        .query_row(
            "SELECT count(*) FROM fleet_deckies WHERE name = ?1",
            [&decky],
            |row| row.get(0),
        )
        .expect("count");
    assert_eq!(found, 1, "DECNET's lookup by name finds the decky");
    assert_eq!(
        stored_names(&env),
        [(decky.into_bytes(), "text".to_owned())]
    );
}

/// Two undecodable names that read as the same lossy text are two rows: one
/// pass deletes both.
#[test]
fn undecodable_names_alike_once_lossy_are_all_deleted_in_one_pass() {
    let env = TestEnv::new("hostile-twins");
    let docker = dead_docker(&env);
    let prefix = hex(env.prefix.as_bytes());
    seed_raw_name(&env, &format!("CAST(X'{prefix}ff' AS TEXT)"));
    seed_raw_name(&env, &format!("CAST(X'{prefix}fe' AS TEXT)"));
    env.write_state(&[env.decky(&env.name("d"), &["ssh"])]);
    let run = env.run(&["--docker-host", &docker]).expect_code(0);
    assert_eq!(stored_names(&env).len(), 1, "{}", run.stdout);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Integers past 2^53 are still exact in JSON and in DECNET (Python ints):
/// a stored `mutate_interval` one off from the state file's is config drift,
/// even where the two round to the same float.
#[test]
fn config_drift_in_large_integers_is_repaired() {
    let env = TestEnv::new("hostile-bigint");
    let docker = dead_docker(&env);
    let name = env.name("d");
    let mut decky = env.decky(&name, &["ssh"]);
    decky["mutate_interval"] = Value::from(9_007_199_254_740_993_i64);
    env.write_state(&[decky]);
    env.run(&["--docker-host", &docker]).expect_code(0);
    let stored = env.row(&name).decky_config.expect("config");
    assert!(
        stored.contains(r#""mutate_interval":9007199254740993,"#),
        "{stored}"
    );
    env.execute(&format!(
        "UPDATE fleet_deckies SET decky_config = replace(decky_config, '9007199254740993', '9007199254740992') WHERE name = '{name}'"
    ));
    let run = env
        .run(&["--docker-host", &docker, "--output", "json"])
        .expect_code(0);
    assert_eq!(
        run.json()["counts"]["updated"],
        1,
        "the off-by-one interval is drift: {}",
        run.stdout
    );
    let repaired = env.row(&name).decky_config.expect("config");
    assert!(repaired.contains("9007199254740993"), "{repaired}");
}
