//! Each expectation below is what DECNET 1.0.0's `load_ini_config` (Python
//! 3.11 configparser) does with the same text, checked by running it.

use super::*;

fn read(text: &str) -> Result<DecnetIni, IniError> {
    parse(text, Path::new("/etc/decnet/decnet.ini"), None)
}

fn vars(text: &str) -> Vec<(String, String)> {
    read(text)
        .expect("a file DECNET accepts")
        .values()
        .iter()
        .map(|value| (value.var.clone(), value.value.clone()))
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(var, value)| ((*var).to_owned(), (*value).to_owned()))
        .collect()
}

fn error(text: &str) -> String {
    read(text).expect_err("a file DECNET refuses").to_string()
}

#[test]
fn the_file_is_decnet_config_when_set_and_not_empty() {
    assert_eq!(path_from_env(None), PathBuf::from("/etc/decnet/decnet.ini"));
    assert_eq!(
        path_from_env(Some(OsStr::new(""))),
        PathBuf::from("/etc/decnet/decnet.ini")
    );
    assert_eq!(
        path_from_env(Some(OsStr::new("/srv/x.ini"))),
        PathBuf::from("/srv/x.ini")
    );
    assert_eq!(
        path_from_env(Some(OsStr::new("rel.ini"))),
        PathBuf::from("rel.ini")
    );
}

#[test]
fn the_file_decnet_init_writes_sets_only_its_two_keys() {
    // cli/init.py's _CONFIG_PLACEHOLDER, abridged: every other line is a comment.
    let text = "# /etc/decnet/decnet.ini — DECNET host config.\n\n[decnet]\n\
        api-user = decnet\napi-group = decnet\n# mode = master                          # or \"agent\"\n\n\
        # [database]\n# type = sqlite                          # or \"mysql\"\n\
        # url = mysql+asyncmy://user@host:3306/decnet   # if set, wins over host/port/name/user\n\
        # [agent]\n# Managed by the enroll bundle — do NOT edit by hand on an agent host.\n";
    assert_eq!(
        vars(text),
        pairs(&[
            ("DECNET_API_USER", "decnet"),
            ("DECNET_API_GROUP", "decnet")
        ])
    );
}

#[test]
fn database_and_bus_sections_map_to_decnet_variables_with_their_origin() {
    let text = "[database]\ntype = mysql                 # or \"sqlite\"\n\
        url = mysql+asyncmy://decnet@db:3306/decnet  ; inline comment\nhost = db\nport = 3307\n\
        name = fleet\nuser = ops\n\n[bus]\nenabled = true\ntype = unix\nsocket = /run/decnet/bus.sock\ngroup = decnet\n";
    let ini = read(text).expect("valid");
    assert_eq!(
        ini.values()
            .iter()
            .map(|v| (v.var.as_str(), v.value.as_str(), v.origin.line))
            .collect::<Vec<_>>(),
        [
            ("DECNET_DB_TYPE", "mysql", 2),
            ("DECNET_DB_URL", "mysql+asyncmy://decnet@db:3306/decnet", 3),
            ("DECNET_DB_HOST", "db", 4),
            ("DECNET_DB_PORT", "3307", 5),
            ("DECNET_DB_NAME", "fleet", 6),
            ("DECNET_DB_USER", "ops", 7),
            ("DECNET_BUS_ENABLED", "true", 10),
            ("DECNET_BUS_TYPE", "unix", 11),
            ("DECNET_BUS_SOCKET", "/run/decnet/bus.sock", 12),
            ("DECNET_BUS_GROUP", "decnet", 13),
        ]
    );
    let url = ini.get("DECNET_DB_URL").expect("set");
    assert_eq!(
        url.origin.to_string(),
        "/etc/decnet/decnet.ini:3 [database] url"
    );
    assert!(ini.get("DECNET_DB_PASSWORD").is_none());
    assert!(ini.warnings().is_empty());
}

#[test]
fn an_inline_comment_needs_whitespace_before_it() {
    assert_eq!(
        vars("[bus]\ngroup = a\t;tab\nsocket = /s # c\n"),
        pairs(&[("DECNET_BUS_GROUP", "a"), ("DECNET_BUS_SOCKET", "/s")])
    );
}

#[test]
fn a_line_the_crate_reads_otherwise_than_python_is_refused() {
    // Python keeps `#` and `;` that follow no whitespace; the crate cuts there.
    let message = error("[database]\ntype = mysql\nurl = mysql+asyncmy://decnet:p#ss@db/decnet\n");
    assert!(
        message.starts_with(
            "/etc/decnet/decnet.ini:3: the ini parser reads [database] url as [\"mysql+asyncmy://decnet:p\"], \
             while DECNET (Python's configparser) reads \"mysql+asyncmy://decnet:p#ss@db/decnet\"; "
        ),
        "{message}"
    );
    assert!(
        message.ends_with(
            "or set the variable in the environment (DECNET's .env.local), which wins over the ini"
        ),
        "{message}"
    );
    // Python's round-by-round search for an inline comment stops at ` #8`,
    // though ` ;6` comes first; the crate stops at the first `#`.
    let message = error("[bus]\ngroup = x#5 y;3 z;4 q ;6 r #8\n");
    assert!(
        message.contains("reads \"x#5 y;3 z;4 q ;6 r\""),
        "{message}"
    );
    // Python's section `[ bus ]` is " bus ", which DECNET never reads; the crate trims it.
    let message = error("[ bus ]\ntype = fake\n");
    assert!(
        message.starts_with("/etc/decnet/decnet.ini:2: the ini parser reads [ bus ] type as []"),
        "{message}"
    );
}

#[test]
fn keys_ignore_case_and_section_names_do_not() {
    assert_eq!(
        vars("[database]\nURL = u\nType: mysql\n[Database]\nhost = ignored\n"),
        pairs(&[("DECNET_DB_URL", "u"), ("DECNET_DB_TYPE", "mysql")])
    );
}

#[test]
fn agent_host_uuid_counts_only_in_agent_mode() {
    let text = "[agent]\nhost-uuid = 1b6f\nmaster-host = 10.0.0.1\n";
    assert_eq!(vars(text), pairs(&[]));
    let agent = parse(text, Path::new("x.ini"), Some("Agent")).expect("valid");
    assert_eq!(
        agent.get("DECNET_HOST_UUID").map(|v| v.value.as_str()),
        Some("1b6f")
    );
    assert_eq!(
        vars(&format!("[decnet]\nmode = agent\n{text}")),
        pairs(&[
            ("DECNET_MODE", "agent"),
            ("DECNET_HOST_UUID", "1b6f"),
            ("DECNET_MASTER_HOST", "10.0.0.1"),
        ])
    );
    // The environment's mode outranks the file's.
    let master = parse(
        &format!("[decnet]\nmode = agent\n{text}"),
        Path::new("x.ini"),
        Some("master"),
    )
    .expect("valid");
    assert!(master.get("DECNET_HOST_UUID").is_none());
    assert_eq!(
        vars("[master]\nhost-uuid = m1\n"),
        pairs(&[("DECNET_HOST_UUID", "m1")])
    );
}

#[test]
fn a_mode_other_than_agent_or_master_is_refused() {
    let message = error("[decnet]\nmode = worker\n");
    assert!(
        message.contains("mode must be 'agent' or 'master', got 'worker'"),
        "{message}"
    );
    assert!(
        message.contains("/etc/decnet/decnet.ini:2 [decnet] mode"),
        "{message}"
    );
    let empty = parse("", Path::new("x.ini"), Some("")).expect_err("empty mode");
    assert!(empty.to_string().contains("got ''"), "{empty}");
}

#[test]
fn the_first_section_to_set_a_variable_wins() {
    // [decnet] exports every key, before the domain sections.
    assert_eq!(
        vars("[database]\ntype = sqlite\n[decnet]\ndb-type = mysql\n"),
        pairs(&[("DECNET_DB_TYPE", "mysql")])
    );
}

#[test]
fn default_keys_reach_every_section_read() {
    let ini = read("[DEFAULT]\nhost = h\n[api]\nport = 1\n[database]\nhost = db\n").expect("valid");
    let found: Vec<(&str, &str, String)> = ini
        .values()
        .iter()
        .map(|v| (v.var.as_str(), v.value.as_str(), v.origin.to_string()))
        .collect();
    assert_eq!(
        found,
        [
            (
                "DECNET_API_HOST",
                "h",
                "/etc/decnet/decnet.ini:2 [DEFAULT] host (read through [api])".to_owned()
            ),
            (
                "DECNET_API_PORT",
                "1",
                "/etc/decnet/decnet.ini:4 [api] port".to_owned()
            ),
            (
                "DECNET_DB_HOST",
                "db",
                "/etc/decnet/decnet.ini:6 [database] host".to_owned()
            ),
        ]
    );
}

#[test]
fn unknown_keys_of_known_sections_are_warnings() {
    let ini = read("[bus]\nsockett = /x\n[nosuch]\nk = v\n").expect("valid");
    assert!(ini.values().is_empty());
    assert_eq!(
        ini.warnings(),
        ["/etc/decnet/decnet.ini:2 [bus] sockett: unknown key [bus] sockett, ignored (by DECNET too)"]
    );
}

#[test]
fn values_are_interpolated_as_configparser_does() {
    assert_eq!(
        vars("[DEFAULT]\nbase = /run/decnet\n[bus]\nsocket = %(BASE)s/bus.sock\ngroup = 100%%\n"),
        pairs(&[
            ("DECNET_BUS_SOCKET", "/run/decnet/bus.sock"),
            ("DECNET_BUS_GROUP", "100%")
        ])
    );
    let message = error("[database]\nurl = mysql+asyncmy://u:p%40ss@h/d\n");
    assert!(
        message.starts_with("/etc/decnet/decnet.ini:2: [database] url: '%' must be followed"),
        "{message}"
    );
    let message = error("[bus]\nsocket = %(nope)s\n");
    assert!(message.contains("%(nope)s refers to a key"), "{message}");
    let message = error("[bus]\nsocket = %(socket)s\n");
    assert!(message.contains("deeper than 10"), "{message}");
    let message = error("[bus]\nsocket = %(x)d\n");
    assert!(
        message.contains("bad interpolation variable reference"),
        "{message}"
    );
    // A section DECNET never reads is never interpolated.
    assert_eq!(vars("[nosuch]\nk = 50%\n"), pairs(&[]));
}

#[test]
fn continuation_lines_and_empty_values_read_as_in_python() {
    assert_eq!(
        vars("[web]\ncors-origins = http://a\n  http://b\n\n  http://c\nhost =\n"),
        pairs(&[
            ("DECNET_CORS_ORIGINS", "http://a\nhttp://b\n\nhttp://c"),
            ("DECNET_WEB_HOST", ""),
        ])
    );
    // Windows line ends.
    assert_eq!(
        vars("[bus]\r\ntype = unix\r\n"),
        pairs(&[("DECNET_BUS_TYPE", "unix")])
    );
}

#[test]
fn what_python_refuses_is_refused_with_its_line() {
    for (text, line, words) in [
        ("type = sqlite\n", 1, "a key before any [section]"),
        ("[bus]\n[bus]\n", 2, "section [bus] already exists"),
        (
            "[bus]\ntype = unix\nTYPE = fake\n",
            3,
            "key \"type\" in section [bus] already exists",
        ),
        (
            "[bus]\ntype = unix\nsocket\nx\n",
            3,
            "line 3: \"socket\", line 4: \"x\"",
        ),
        ("[bus]\n= unix\n", 2, "neither a [section]"),
        ("[]\n", 1, "a key before any [section]"),
    ] {
        let message = error(text);
        assert!(
            message.starts_with(&format!("/etc/decnet/decnet.ini:{line}: ")),
            "{text:?}: {message}"
        );
        assert!(message.contains(words), "{text:?}: {message}");
        assert!(
            message.contains("DECNET's own services cannot start"),
            "{message}"
        );
    }
}

#[test]
fn an_absent_file_is_no_ini_and_an_unreadable_one_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(load(&dir.path().join("none.ini"), None)
        .expect("absent")
        .is_none());
    // Python's is_file() is False for a directory and under a file.
    assert!(load(dir.path(), None).expect("directory").is_none());
    let file = dir.path().join("f");
    std::fs::write(&file, "").expect("write");
    assert!(load(&file.join("x.ini"), None)
        .expect("not a dir")
        .is_none());

    let ini = dir.path().join("decnet.ini");
    std::fs::write(&ini, "[bus]\ntype = unix\n").expect("write");
    let loaded = load(&ini, None).expect("readable").expect("present");
    assert_eq!(loaded.file(), ini);
    assert_eq!(
        loaded.get("DECNET_BUS_TYPE").map(|v| v.origin.file.clone()),
        Some(ini.clone())
    );

    std::fs::write(&ini, b"[bus]\ntype = \xff\n").expect("write");
    let message = load(&ini, None).expect_err("not UTF-8").to_string();
    assert!(
        message.ends_with(&format!(
            "{}:2: not UTF-8 text; DECNET's own services cannot start with this file either",
            ini.display()
        )),
        "{message}"
    );

    // A regular file whose read fails, even for root (tests run as root in CI,
    // where a 0000 mode would not stop the read).
    let message = load(Path::new("/proc/self/mem"), None)
        .expect_err("unreadable")
        .to_string();
    assert!(
        message.starts_with("cannot read DECNET's configuration /proc/self/mem: "),
        "{message}"
    );
}
