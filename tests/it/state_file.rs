//! Bad state files (SPEC §3.1, §9): exit 1, a message naming the file and the
//! problem, no panic, and a seeded DB left untouched. Odd but valid ones pass.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::fixture::{Env, Output, Test};

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

/// `test` fails: exit 1, one error line that starts with `opening` and names
/// `path` and each of `expected`, nothing on stdout, and the DB file
/// byte-identical. Returns stderr.
#[track_caller]
fn assert_fails_writing_nothing(
    test: Test<'_>,
    opening: &str,
    path: &Path,
    expected: &[&str],
) -> String {
    let db_before = std::fs::read(&test.env().db).expect("db");
    let out: Output = test
        .status(1)
        .stdout("")
        .stderr_lines([format!(
            "decnet-reconcile: error: {opening}…{}…",
            path.display()
        )])
        .run();
    for needle in expected {
        assert!(
            out.stderr.contains(needle),
            "{needle:?} missing from: {}",
            out.stderr
        );
    }
    assert_eq!(
        std::fs::read(&out.env().db).expect("db"),
        db_before,
        "the DB file changed"
    );
    out.stderr
}

/// Runs a pass on `text` over a seeded DB and checks the refusal; returns stderr.
#[track_caller]
fn assert_refused(case: &str, text: &str, expected: &[&str]) -> String {
    let env = Env::new();
    env.seed_row(&env.host, "seeded", "running");
    env.seed_row(&env.host, "bad-one", "running");
    let test = env.test().context(case).state_text(text);
    let stderr = assert_fails_writing_nothing(test, "state file ", &env.state_file, expected);
    assert_eq!(env.rows().len(), 2, "{case}");
    stderr
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
    let env = Env::new();
    env.seed_row(&env.host, "seeded", "running");
    std::fs::create_dir(&env.state_file).expect("a directory where the file should be");
    assert_fails_writing_nothing(
        env.test(),
        "cannot read state file ",
        &env.state_file,
        &["a directory"],
    );
    assert_eq!(env.rows().len(), 1);
}

#[test]
fn unknown_fields_are_kept_with_one_warning() {
    let env = Env::new();
    let mut first = decky(&env.name("a"));
    first["future_field"] = json!({"x": [1, 2]});
    first["another"] = json!("é");
    let mut second = decky(&env.name("b"));
    second["future_field"] = json!(null);
    env.test()
        .state_text(document(json!([first, second])))
        .stderr(format!(
            " WARN state file {}: unknown decky fields kept in decky_config: \"future_field\", \"another\"\n",
            env.state_file.display()
        ))
        .run();
    let config = env.row(&env.name("a")).decky_config.expect("decky_config");
    assert!(
        config.ends_with(r#""host_uuid":null,"future_field":{"x":[1,2]},"another":"é"}"#),
        "{config}"
    );
}

/// An unknown field is a permanent condition: a warning on every pass would
/// be 2,880 a day. It warns when a pass writes a row whose stored config gains
/// it (its first appearance, remembered by the rows themselves); a pass over
/// rows that hold it already says it at `-v` only.
#[test]
fn an_unknown_field_warns_when_first_written_then_only_at_verbose() {
    let env = Env::new();
    let warning = |fields: &str| {
        format!(
            " WARN state file {}: unknown decky fields kept in decky_config: {fields}\n",
            env.state_file.display()
        )
    };
    let mut with_one = decky(&env.name("a"));
    with_one["future_field"] = json!(1);
    env.test()
        .state_text(document(json!([with_one.clone()])))
        .stderr(warning("\"future_field\""))
        .run();
    // The same file again, twice: the row holds the field, nothing on stderr
    // (the builder's default), as the unit's `-q` passes run.
    env.test().run();
    env.test().arg("-q").run();
    // At -v it is still said, as a debug line.
    let mut verbose = env.test().arg("-v").command();
    let verbose = crate::fixture::run(&mut verbose).expect_status(0);
    let said: Vec<&str> = verbose
        .stderr
        .lines()
        .filter(|line| line.contains("unknown decky fields"))
        .collect();
    assert_eq!(
        said,
        [format!(
            "DEBUG state file {}: unknown decky fields kept in decky_config: \"future_field\" (as stored already)",
            env.state_file.display()
        )],
        "{}",
        verbose.stderr
    );
    // A second unknown field appears: the rewrite warns, naming only it.
    let mut with_two = with_one.clone();
    with_two["later_field"] = json!("x");
    env.test()
        .state_text(document(json!([with_two])))
        .stderr(warning("\"later_field\""))
        .run();
    env.test().run();
    // A decky added with a field the others' rows hold already gains it: its row is new.
    let mut added = decky(&env.name("b"));
    added["future_field"] = json!(2);
    with_one["later_field"] = json!("x");
    env.test()
        .state_text(document(json!([with_one, added])))
        .stderr(warning("\"future_field\""))
        .run();
    env.test().run();
}

/// Every odd number (integers past 64 and 128 bits, floats at the edges of
/// their range, strings and bools where DECNET's lax `int` takes them), in
/// every place one can stand, stored or refused exactly as DECNET 1.0.0
/// itself does: `scripts/numbers-vs-decnet` runs DECNET's own models and
/// orjson write from the test virtualenv against the built binary, byte for
/// byte. A missing virtualenv fails the test, never skips it.
#[test]
fn numbers_are_stored_and_refused_as_decnet_1_0_0_does() {
    let python = crate::fixture::decnet_python();
    let venv = python
        .parent()
        .and_then(Path::parent)
        .expect("the virtualenv holds bin/python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/numbers-vs-decnet");
    let compared = crate::fixture::run(
        std::process::Command::new("bash")
            .arg(&script)
            .arg(crate::fixture::BINARY)
            .env("DECNET_VENV", venv),
    );
    assert_eq!(
        compared.status, 0,
        "the tool and DECNET 1.0.0 differ:\n{}{}",
        compared.stdout, compared.stderr
    );
    let summary = compared.stdout.lines().last().unwrap_or_default();
    assert!(
        summary.ends_with(" passed, 0 failed"),
        "{}",
        compared.stdout
    );
    eprintln!("numbers-vs-decnet: {summary}");
}

#[test]
fn float_given_an_int_and_non_ascii_are_stored_as_decnet_does() {
    let env = Env::new();
    let mut d = decky(&env.name("a"));
    d["last_mutated"] = json!(5);
    d["hostname"] = json!("hôte-ñ");
    env.test().state_text(document(json!([d]))).run();
    let config = env.row(&env.name("a")).decky_config.expect("decky_config");
    assert!(config.contains(r#""hostname":"hôte-ñ""#), "{config}");
    assert!(config.contains(r#""last_mutated":5.0,"#), "{config}");
}

#[test]
fn twenty_thousand_deckies_are_handled() {
    let env = Env::new();
    let deckies: Vec<Value> = (0..20_000)
        .map(|i| decky(&format!("{}-{i:05}", env.prefix)))
        .collect();
    let out = env
        .test()
        .state_text(document(Value::Array(deckies)))
        .args(["--output", "json"])
        .run();
    assert_eq!(out.json()["counts"]["inserted"], 20_000);
    assert_eq!(env.rows().len(), 20_000);
    let again = env.test().args(["--output", "json"]).run();
    assert_eq!(again.json()["changes"], json!([]));
}

/// Words of serde's and Rust's own vocabulary that mean nothing to an operator.
const RUST_VOCABULARY: [&str; 14] = [
    "StateDocument",
    "DecnetConfig",
    "DeckyFields",
    "Mode",
    "struct",
    "enum",
    "i64",
    "f64",
    "u64",
    "sequence",
    "a map",
    "variant identifier",
    "unit value",
    "elements",
];

/// Every shape the state file may take where another is expected: the message
/// names the place and the expected type in the file's terms, never a Rust type.
#[test]
fn wrong_shapes_are_named_without_rust_type_names() {
    let with_config = |key: &str, value: Value| {
        let mut config = json!({"mode": "unihost", "deckies": [decky("fine")]});
        config[key] = value;
        json!({"config": config, "compose_path": "/x.yml"}).to_string()
    };
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "empty list",
            "[]".into(),
            vec!["top level", "`config` and `compose_path`"],
        ),
        (
            "list of two",
            r#"["a", "b"]"#.into(),
            vec!["top level", "`config` and `compose_path`", "a list"],
        ),
        ("number", "5".into(), vec!["top level", "the number 5"]),
        (
            "string",
            r#""x""#.into(),
            vec!["top level", "the string \"x\""],
        ),
        ("null", "null".into(), vec!["top level", "null"]),
        (
            "config a list",
            r#"{"config": [], "compose_path": "/x"}"#.into(),
            vec!["field `config`", "an object"],
        ),
        (
            "config a list of values",
            r#"{"config": ["unihost", "eth0"], "compose_path": "/x"}"#.into(),
            vec!["field `config`", "an object"],
        ),
        (
            "config a string",
            r#"{"config": "c", "compose_path": "/x"}"#.into(),
            vec!["field `config`"],
        ),
        (
            "compose_path a list",
            json!({"config": {"deckies": [decky("a")]}, "compose_path": []}).to_string(),
            vec!["field `compose_path`", "a string"],
        ),
        (
            "deckies an object",
            with_config("deckies", json!({"a": decky("a")})),
            vec!["field `config.deckies`", "a list of deckies"],
        ),
        (
            "deckies a string",
            with_config("deckies", json!("a")),
            vec!["field `config.deckies`", "a list"],
        ),
        (
            "decky a list",
            document(json!([decky("fine"), ["bad-one", "10.0.0.2"]])),
            vec!["config.deckies[1]", "an object"],
        ),
        (
            "decky a number",
            document(json!([decky("fine"), 7])),
            vec!["config.deckies[1]", "the number 7"],
        ),
        (
            "mode a number",
            with_config("mode", json!(5)),
            vec!["field `config.mode`", "\"unihost\" or \"swarm\""],
        ),
        (
            "mode a list",
            with_config("mode", json!(["unihost"])),
            vec!["field `config.mode`", "\"unihost\" or \"swarm\""],
        ),
        (
            "mode unknown",
            with_config("mode", json!("cluster")),
            vec!["field `config.mode`", "cluster", "unihost"],
        ),
        (
            "ipvlan a string",
            with_config("ipvlan", json!("yes")),
            vec!["field `config.ipvlan`", "true, false or null"],
        ),
        (
            "interface a number",
            with_config("interface", json!(0)),
            vec!["field `config.interface`", "a string or null"],
        ),
        (
            "mutate_interval a float",
            with_config("mutate_interval", json!(1.5)),
            vec!["field `config.mutate_interval`", "an integer"],
        ),
        (
            "name a list",
            with_field("name", json!(["bad-one"])),
            vec!["config.deckies[1], field `name`", "a string"],
        ),
        (
            "ip null",
            with_field("ip", json!(null)),
            vec!["\"bad-one\"", "field `ip`", "a string"],
        ),
        (
            "services an object",
            with_field("services", json!({"ssh": 22})),
            vec!["\"bad-one\"", "field `services`", "a list of service names"],
        ),
        (
            "a service null",
            with_field("services", json!([null])),
            vec!["\"bad-one\"", "field `services[0]`", "a string"],
        ),
        (
            "service_config a list",
            with_field("service_config", json!([])),
            vec![
                "\"bad-one\"",
                "field `service_config`",
                "an object of objects",
            ],
        ),
        (
            "a service's settings a list",
            with_field("service_config", json!({"ssh": []})),
            vec!["\"bad-one\"", "field `service_config.ssh`", "an object"],
        ),
        (
            "archetype a number",
            with_field("archetype", json!(3)),
            vec!["\"bad-one\"", "field `archetype`", "a string or null"],
        ),
        (
            "last_mutated a string",
            with_field("last_mutated", json!("now")),
            vec![
                "\"bad-one\"",
                "field `last_mutated`",
                "a number",
                "the string \"now\"",
            ],
        ),
        (
            "mutate_interval a string",
            with_field("mutate_interval", json!("30")),
            vec![
                "\"bad-one\"",
                "field `mutate_interval`",
                "an integer or null",
            ],
        ),
        (
            "host_uuid an object",
            with_field("host_uuid", json!({})),
            vec!["\"bad-one\"", "field `host_uuid`", "a string or null"],
        ),
    ];
    for (case, text, expected) in cases {
        let stderr = assert_refused(case, &text, &expected);
        for word in RUST_VOCABULARY {
            assert!(!stderr.contains(word), "{case}: {word:?} in: {stderr}");
        }
    }
}

/// A host's rows as DECNET leaves them, with the columns only DECNET writes
/// (`compose_hash`, `last_error`) that a wrongful teardown would lose.
fn env_with_decnet_rows() -> Env {
    let env = Env::new();
    env.seed_row(&env.host, "seeded", "running");
    env.seed_row(&env.host, "other", "failed");
    env.execute("UPDATE fleet_deckies SET compose_hash = 'c0ffee', last_error = 'oom at boot'");
    env
}

/// A pass whose state file is at `path` (overriding the env's) fails, saying
/// it cannot read it (the runner fails the test if it hangs instead), naming
/// it and `expected`, changing nothing.
#[track_caller]
fn assert_unreachable(env: &Env, test: Test<'_>, path: &Path, expected: &[&str]) {
    let before = env.rows();
    assert_fails_writing_nothing(test, "cannot read state file ", path, expected);
    assert_eq!(env.rows(), before, "rows changed");
    assert_eq!(env.row("seeded").compose_hash.as_deref(), Some("c0ffee"));
}

/// Only a state file absent from a directory that exists means "nothing
/// deployed"; every other way of not getting at it is an error that keeps the rows.
#[test]
fn only_an_absent_file_in_an_existing_directory_means_nothing_deployed() {
    let env = env_with_decnet_rows();
    let dir = env.dir.path();
    let regular = dir.join("regular-file");
    std::fs::write(&regular, "{}").expect("a file");
    std::os::unix::fs::symlink(dir.join("nowhere.json"), dir.join("dangling.json"))
        .expect("symlink");
    std::fs::create_dir(dir.join("a-directory")).expect("dir");
    let cases: [(&str, PathBuf, &[&str]); 6] = [
        (
            "its directory missing (not mounted)",
            dir.join("unmounted/decnet-state.json"),
            &["directory", "unmounted", "No such file or directory"],
        ),
        (
            "its directory a file",
            regular.join("decnet-state.json"),
            &["Not a directory"],
        ),
        (
            "a dangling symlink",
            dir.join("dangling.json"),
            &["symbolic link", "nowhere.json"],
        ),
        ("a directory", dir.join("a-directory"), &["a directory"]),
        // Reading a process's memory at offset 0 fails with EIO: a real I/O error.
        (
            "an I/O error",
            PathBuf::from("/proc/self/mem"),
            &["Input/output error"],
        ),
        (
            "a link into a missing directory",
            {
                let link = dir.join("into-unmounted.json");
                std::os::unix::fs::symlink(dir.join("gone/decnet-state.json"), &link)
                    .expect("symlink");
                link
            },
            &["symbolic link"],
        ),
    ];
    for (case, path, expected) in cases {
        let test = env.test().context(case).arg("--state-file").arg(&path);
        assert_unreachable(&env, test, &path, expected);
    }

    // The one case that is a teardown: absent from a directory that is there.
    assert!(!env.state_file.exists());
    let out = env.test().args(["--output", "json"]).run();
    assert_eq!(out.json()["counts"]["deleted"], 2);
    assert!(env.rows().is_empty());
}

/// A state file the pass's user may not read, as an unprivileged user (tests
/// run as root, who may read anything): exit 1, rows intact.
#[test]
fn a_state_file_the_user_may_not_read_is_an_error_not_a_teardown() {
    use std::os::unix::fs::PermissionsExt;
    let env = env_with_decnet_rows();
    env.write_state(&[decky("seeded")]);
    let set_mode = |path: &Path, mode| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod")
    };
    // The DB stays root's: the pass must fail before it gets there.
    let as_nobody = |state_file: &Path| env.test().by_nobody().arg("--state-file").arg(state_file);
    set_mode(env.dir.path(), 0o755);
    set_mode(&env.state_file, 0o600);
    assert_unreachable(
        &env,
        as_nobody(&env.state_file).context("the file unreadable"),
        &env.state_file,
        &["Permission denied"],
    );
    // A directory the user may not search: the file may well be there.
    let closed = env.dir.path().join("closed");
    std::fs::create_dir(&closed).expect("dir");
    set_mode(&closed, 0o700);
    let path = closed.join("decnet-state.json");
    assert_unreachable(
        &env,
        as_nobody(&path).context("the directory closed"),
        &path,
        &["Permission denied"],
    );
}

/// What is not a regular file is refused without being read (a FIFO would hang
/// the pass, which the runner fails; `/dev/zero` would fill memory), and so is
/// a file past the bound.
#[test]
fn a_fifo_a_device_or_a_huge_state_file_is_refused_without_hanging() {
    let env = env_with_decnet_rows();
    let fifo = crate::fixture::fifo(&env.dir.path().join("fifo.json"));
    let huge = env.dir.path().join("huge.json");
    std::fs::File::create(&huge)
        .and_then(|file| file.set_len(64 * 1024 * 1024 + 1))
        .expect("a sparse file one byte past 64 MiB");
    let cases: [(&str, PathBuf, &str); 3] = [
        ("a FIFO", fifo, "a FIFO, not a regular file"),
        (
            "/dev/zero",
            PathBuf::from("/dev/zero"),
            "a character device, not a regular file",
        ),
        ("past the bound", huge, "larger than 64 MiB"),
    ];
    for (case, path, expected) in cases {
        let test = env.test().context(case).arg("--state-file").arg(&path);
        assert_unreachable(&env, test, &path, &[expected]);
    }
}
