//! Hostile input (SPEC §3, §7, §9): every fuzz corpus input replayed through
//! the parser and the planner, and decky names built to hurt — quotes, SQL,
//! control characters, ANSI escapes, 10 kB, bytes that are not UTF-8 — given to
//! the real binary through the state file and through the DB. They are stored
//! verbatim, printed escaped, and never make the pass panic.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use serde_json::Value;

use crate::fixture::{assert_terminal_safe, decky, docker_unknown, figure, replay_fuzz_input, Env};

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
        if std::panic::catch_unwind(|| replay_fuzz_input(&bytes)).is_err() {
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
fn hostile_names(env: &Env) -> Vec<String> {
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

fn write_ascii_state(env: &Env, deckies: &[Value]) {
    let document = serde_json::json!({
        "config": {"mode": "unihost", "deckies": deckies},
        "compose_path": "/var/lib/decnet/docker-compose.yml"
    });
    env.write_state_text(ascii_json(&document));
}

/// Docker's warning when its socket refuses the connection (`Env::dead_docker`).
fn refused(docker: &str) -> String {
    docker_unknown(docker, "connection refused")
}

#[test]
fn hostile_names_are_stored_verbatim_printed_escaped_and_deleted() {
    let env = Env::new();
    let docker = env.dead_docker();
    let names = hostile_names(&env);
    let deckies: Vec<Value> = names.iter().map(|n| decky(n, &["ssh"])).collect();
    write_ascii_state(&env, &deckies);

    let dry = env
        .test()
        .args(["--docker-host", &docker, "--dry-run"])
        .stderr_lines([refused(&docker)])
        .run();
    assert_terminal_safe("the table", &dry.stdout);
    assert!(dry.stdout.contains("\\u{1b}[31mred"), "{}", dry.stdout);
    assert!(
        dry.stdout.contains(&format!("inserted={}", names.len())),
        "{}",
        dry.stdout
    );

    // Names with whitespace or `.` cannot form a channel: written, not announced, said so.
    let (unannounceable, announceable): (Vec<&String>, Vec<&String>) = names
        .iter()
        .partition(|n| n.contains(|c: char| c.is_whitespace() || matches!(c, '.' | '*' | '>')));
    assert!(unannounceable.len() >= 2);
    let not_announced = format!(
        " WARN decky … of host {:?} was written but not announced on Redis at \
         redis://127.0.0.1:6379/0: the name cannot form a channel",
        env.host
    );
    let out = env
        .test()
        .redis()
        .args(["--docker-host", &docker, "--output", "json"])
        .events(announceable.iter().map(|name| (name.as_str(), "inserted")))
        .stderr_lines(
            std::iter::once(refused(&docker))
                .chain(unannounceable.iter().map(|_| not_announced.clone())),
        )
        .run();
    assert_terminal_safe("stderr", &out.stderr);
    let report = out.json();
    let shown: Vec<&str> = report["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(shown, sorted, "JSON output carries every name verbatim");
    assert_eq!(
        report["published"].as_u64(),
        Some(announceable.len() as u64)
    );
    for event in &out.events {
        let name = event.payload()["name"].as_str().expect("name");
        assert_eq!(event.channel, format!("decky.{}:{name}.state", env.host));
    }

    let mut stored: Vec<String> = env.rows().into_iter().map(|r| r.name).collect();
    stored.sort();
    assert_eq!(stored, sorted, "stored verbatim");
    for row in env.rows() {
        let config: Value =
            serde_json::from_str(row.decky_config.as_deref().expect("config")).expect("JSON");
        assert_eq!(config["name"], row.name.as_str());
    }

    env.test()
        .args(["--docker-host", &docker])
        .stdout("inserted=0 deleted=0 updated=0 docker=unknown\n")
        .stderr_lines([refused(&docker)])
        .run();

    let plain = env.name("plain");
    write_ascii_state(&env, &[decky(&plain, &["ssh"])]);
    let teardown = env
        .test()
        .args(["--docker-host", &docker])
        .stderr_lines([refused(&docker)])
        .run();
    assert_terminal_safe("the table", &teardown.stdout);
    assert!(
        teardown
            .stdout
            .contains(&format!("inserted=1 deleted={} updated=0", names.len())),
        "{}",
        teardown.stdout
    );
    assert_eq!(env.names_of(&env.host), [plain]);
    figure("hostile_names_round_tripped", names.len());
}

/// A name that is not Unicode cannot be in a valid state file: a lone surrogate
/// escape (what Python's `json.dumps` writes for an undecodable byte) or raw
/// bytes that are not UTF-8 make it a bad state file, refused with its place,
/// and nothing is deleted on its account.
#[test]
fn a_state_file_with_non_unicode_names_is_refused_with_its_place() {
    let env = Env::new();
    let docker = env.dead_docker();
    env.test()
        .state(&[decky(&env.name("kept"), &["ssh"])])
        .args(["--docker-host", &docker])
        .stderr_lines([refused(&docker)])
        .run();
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
        let out = env
            .test()
            .context(String::from_utf8_lossy(name))
            .state_text(template(name))
            .args(["--docker-host", &docker])
            .status(1)
            .stderr_lines([format!(
                "decnet-reconcile: error: state file {} is not valid JSON: … at line 1 column …",
                env.state_file.display()
            )])
            .run();
        assert_terminal_safe("stderr", &out.stderr);
        assert_eq!(env.rows(), before, "nothing written for {name:?}");
    }
    figure("non_unicode_state_files_refused", 4);
}

/// Valid JSON escapes for control characters and NUL are names like any other.
#[test]
fn escaped_control_characters_in_the_state_file_are_stored_verbatim() {
    let env = Env::new();
    let docker = env.dead_docker();
    let name = format!("{}\\u0000\\u001b[2J\\u0007\\r\\n", env.prefix);
    let out = env
        .test()
        .state_text(format!(
            r#"{{"config": {{"deckies": [{{"name": "{name}", "ip": "10.0.0.2", "services": ["ssh"],
             "distro": "debian", "base_image": "b", "hostname": "h"}}]}}, "compose_path": "/x"}}"#
        ))
        .args(["--docker-host", &docker])
        .stderr_lines([refused(&docker)])
        .run();
    assert_terminal_safe("the table", &out.stdout);
    assert_eq!(
        env.rows()[0].name,
        format!("{}\u{0}\u{1b}[2J\u{7}\r\n", env.prefix)
    );
}

/// clap's usage error for an argument or variable that is not UTF-8.
const NOT_UTF8: [&str; 5] = [
    "error: invalid UTF-8 was detected in one or more arguments",
    "",
    "Usage: decnet-reconcile [OPTIONS] [COMMAND]",
    "",
    "For more information, try '--help'.",
];

/// Arguments and environment that are not UTF-8 are usage errors (exit 1), not panics.
#[test]
fn a_host_id_that_is_not_utf8_is_a_usage_error() {
    let env = Env::new();
    let before = env.db_snapshot();
    let bad = OsStr::from_bytes(b"host-\xff");
    env.test()
        .arg("--host-uuid")
        .arg(bad)
        .status(1)
        .stderr_lines(NOT_UTF8)
        .run();
    // From a variable, the variable is named (clap names nothing).
    env.test()
        .without("--host-uuid")
        .env_var("DECNET_HOST_UUID", bad)
        .args(["--docker-host", &env.dead_docker()])
        .status(1)
        .stderr("decnet-reconcile: error: DECNET_HOST_UUID: its value is not UTF-8 text\n")
        .run();
    assert_eq!(env.db_snapshot(), before, "nothing was written");
}

/// The tool's own warnings quote what the file says: an unknown field named to
/// forge a journal line (a newline, a carriage return) must not start one.
#[test]
fn unknown_field_names_cannot_forge_log_lines() {
    let env = Env::new();
    let docker = env.dead_docker();
    let out = env
        .test()
        .state_text(format!(
            r#"{{"config": {{"deckies": [{{"name": "{}", "ip": "1", "services": ["ssh"], "distro": "d",
             "base_image": "b", "hostname": "h",
             "x\nERROR forged journal line\r\u001b[2J": 1}}]}}, "compose_path": "/x"}}"#,
            env.name("d")
        ))
        .args(["--docker-host", &docker])
        .stderr_lines([
            refused(&docker),
            format!(
                " WARN state file {}: unknown decky fields kept in decky_config: \
                 \"x\\nERROR forged journal line\\r\\u{{1b}}[2J\"",
                env.state_file.display()
            ),
        ])
        .run();
    assert_eq!(
        env.rows().len(),
        1,
        "the unknown field is kept, not refused"
    );
    assert_terminal_safe("stderr", &out.stderr);
}

/// Seeds a row of this host whose stored `name` is the given SQL value.
fn seed_raw_name(env: &Env, sql_name: &str) {
    env.execute(&format!(
        "INSERT INTO fleet_deckies VALUES ('{}', {sql_name}, '[\"ssh\"]', NULL, '10.0.0.9', \
         'running', NULL, NULL, NULL, '2026-01-01 00:00:00.000000')",
        env.host
    ));
}

/// `(name bytes, SQLite type)` of every row, as stored.
fn stored_names(env: &Env) -> Vec<(Vec<u8>, String)> {
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
    let env = Env::new();
    let docker = env.dead_docker();
    let names = hostile_names(&env);
    for name in &names {
        env.seed_row(&env.host, name, "running");
    }
    seed_raw_name(
        &env,
        &format!("CAST(X'{}1b5b326aff' AS TEXT)", hex(env.prefix.as_bytes())),
    );
    let out = env
        .test()
        .state(&[decky(&env.name("plain"), &["ssh"])])
        .args(["--docker-host", &docker])
        .stdout_ends_with(format!(
            "inserted=1 deleted={} updated=0 docker=unknown\n",
            names.len() + 1
        ))
        .stderr_lines([refused(&docker)])
        .run();
    assert_terminal_safe("the table", &out.stdout);
    assert_eq!(
        env.names_of(&env.host),
        [env.name("plain")],
        "only the state file's decky is left"
    );
}

/// A stored name that is not UTF-8 reads as lossy text (`x\xff` → `x�`). A
/// state-file decky really named `x�` must still get a row of its own, and the
/// undecodable row must go: no state file can name it.
#[test]
fn a_decky_named_like_a_lossy_stored_name_still_gets_its_row() {
    let env = Env::new();
    let docker = env.dead_docker();
    let prefix = env.prefix.as_bytes();
    seed_raw_name(
        &env,
        &format!("CAST(X'{}ff' AS TEXT)", hex(&[prefix, b"-x"].concat())),
    );
    let decky_name = env.name("x\u{fffd}");
    let out = env
        .test()
        .state(&[decky(&decky_name, &["ssh"])])
        .args(["--docker-host", &docker])
        .stderr_lines([refused(&docker)])
        .run();
    assert_terminal_safe("the table", &out.stdout);
    env.test()
        .args(["--docker-host", &docker])
        .stderr_lines([refused(&docker)])
        .run();
    assert_eq!(
        stored_names(&env),
        [(decky_name.into_bytes(), "text".to_owned())],
        "one clean row for the decky, none for the undecodable name: {}",
        out.stdout
    );
}

/// A name stored as a BLOB never equals DECNET's TEXT name (SQLite compares
/// by type first), so DECNET cannot find that row: the decky it spells needs a
/// TEXT row, and the BLOB row must go.
#[test]
fn a_blob_name_does_not_stand_in_for_the_decky_it_spells() {
    let env = Env::new();
    let docker = env.dead_docker();
    let decky_name = env.name("d1");
    seed_raw_name(&env, &format!("X'{}'", hex(decky_name.as_bytes())));
    env.test()
        .state(&[decky(&decky_name, &["ssh"])])
        .args(["--docker-host", &docker])
        .stderr_lines([refused(&docker)])
        .run();
    let found: i64 = env
        .connect()
        .query_row(
            "SELECT count(*) FROM fleet_deckies WHERE name = ?1",
            [&decky_name],
            |row| row.get(0),
        )
        .expect("count");
    assert_eq!(found, 1, "DECNET's lookup by name finds the decky");
    assert_eq!(
        stored_names(&env),
        [(decky_name.into_bytes(), "text".to_owned())]
    );
}

/// Two undecodable names that read as the same lossy text are two rows: one
/// pass deletes both.
#[test]
fn undecodable_names_alike_once_lossy_are_all_deleted_in_one_pass() {
    let env = Env::new();
    let docker = env.dead_docker();
    let prefix = hex(env.prefix.as_bytes());
    seed_raw_name(&env, &format!("CAST(X'{prefix}ff' AS TEXT)"));
    seed_raw_name(&env, &format!("CAST(X'{prefix}fe' AS TEXT)"));
    let out = env
        .test()
        .state(&[decky(&env.name("d"), &["ssh"])])
        .args(["--docker-host", &docker])
        .stderr_lines([refused(&docker)])
        .run();
    assert_eq!(stored_names(&env).len(), 1, "{}", out.stdout);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Integers past 2^53 are still exact in JSON and in DECNET (Python ints):
/// a stored `mutate_interval` one off from the state file's is config drift,
/// even where the two round to the same float.
#[test]
fn config_drift_in_large_integers_is_repaired() {
    let env = Env::new();
    let docker = env.dead_docker();
    let name = env.name("d");
    let mut drifting = decky(&name, &["ssh"]);
    drifting["mutate_interval"] = Value::from(9_007_199_254_740_993_i64);
    env.test()
        .state(&[drifting])
        .args(["--docker-host", &docker])
        .stderr_lines([refused(&docker)])
        .run();
    let stored = env.row(&name).decky_config.expect("config");
    assert!(
        stored.contains(r#""mutate_interval":9007199254740993,"#),
        "{stored}"
    );
    env.execute(&format!(
        "UPDATE fleet_deckies SET decky_config = replace(decky_config, '9007199254740993', '9007199254740992') WHERE name = '{name}'"
    ));
    let out = env
        .test()
        .args(["--docker-host", &docker, "--output", "json"])
        .stderr_lines([refused(&docker)])
        .run();
    assert_eq!(
        out.json()["counts"]["updated"],
        1,
        "the off-by-one interval is drift: {}",
        out.stdout
    );
    let repaired = env.row(&name).decky_config.expect("config");
    assert!(repaired.contains("9007199254740993"), "{repaired}");
}
