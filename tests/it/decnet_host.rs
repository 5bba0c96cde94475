//! Issue 14 end to end: the tool on a DECNET host laid out and run by DECNET
//! 1.0.0's own code (`tests/decnet/host.py`), with nothing configured but
//! DECNET's install dir and DECNET's ini; then DECNET itself — its
//! `initialize()`, its API, its own answer to "which file, which DB, which
//! bus" — on what the tool did and chose.
//!
//! Cost: one test pip-installs DECNET with every dependency, the way DECNET's
//! installer does (15-40 s); the others install DECNET alone and reach its
//! dependencies in the services' venv (`Install::Pip`, 2-8 s a
//! prefix), and each shares one prefix across all its cases.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;

use crate::fixture::{
    closed_port, line_matches, run, sqlite_rows, stale_socket, DecnetHost, Env, Install, Run,
    SQLITE_DDL,
};

/// DECNET's Alembic baseline, which `initialize()` stamps.
const BASELINE: &str = "4a914b1d62a0";

/// Checks a run whole: its status and every line of its stderr (`…` for any text).
#[track_caller]
fn assert_run(run: &Run, status: i32, stderr: &[&str]) {
    let lines: Vec<&str> = run.stderr.lines().collect();
    let fits = lines.len() == stderr.len()
        && lines
            .iter()
            .zip(stderr)
            .all(|(line, pattern)| line_matches(line, pattern));
    assert!(
        run.status == status && fits,
        "expected exit {status} and stderr\n{}\ngot exit {}\n--- stdout:\n{}--- stderr:\n{}",
        stderr.join("\n"),
        run.status,
        run.stdout,
        run.stderr
    );
}

/// `doctor --output json` with `more` done to its command; its findings.
struct Doctor {
    run: Run,
    json: Value,
}

impl Doctor {
    #[track_caller]
    fn of(mut command: Command) -> Doctor {
        command.args(["doctor", "--output", "json"]);
        let run = run(&mut command);
        let json: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|err| {
            panic!(
                "doctor printed no JSON ({err}):\n{}{}",
                run.stdout, run.stderr
            )
        });
        assert_eq!(run.stderr, "", "doctor wrote to stderr");
        assert_eq!(
            json["ok"].as_bool(),
            Some(run.status == 0),
            "ok and the exit status disagree: {}",
            run.stdout
        );
        Doctor { run, json }
    }

    /// `(value, origin, where)` of `name`.
    #[track_caller]
    fn setting(&self, name: &str) -> (String, String, Option<String>) {
        let setting = self.json["settings"]
            .as_array()
            .expect("settings")
            .iter()
            .find(|s| s["setting"] == name)
            .unwrap_or_else(|| panic!("no setting {name}: {}", self.run.stdout));
        let text = |key: &str| setting[key].as_str().map(str::to_owned);
        (
            text("value").expect("a value"),
            text("origin").expect("an origin"),
            text("where"),
        )
    }

    /// The problem of each check that found one.
    fn problems(&self) -> BTreeMap<String, String> {
        self.json["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .filter(|check| check["ok"] == false)
            .map(|check| {
                (
                    check["check"].as_str().expect("a name").to_owned(),
                    check["problem"].as_str().expect("a problem").to_owned(),
                )
            })
            .collect()
    }

    /// All is well: exit 0, every check passed.
    #[track_caller]
    fn assert_well(&self) {
        assert!(
            self.run.status == 0 && self.problems().is_empty(),
            "doctor found problems: {:?}",
            self.problems()
        );
    }

    /// Exit 1, with exactly one problem, of `check`, matching `pattern`.
    #[track_caller]
    fn assert_only_problem(&self, check: &str, pattern: &str) {
        let problems = self.problems();
        assert_eq!(self.run.status, 1, "{problems:?}");
        assert_eq!(
            problems.keys().collect::<Vec<_>>(),
            [check],
            "{problems:#?}"
        );
        assert!(
            line_matches(&problems[check], pattern),
            "{check}: {}\nis not\n{pattern}",
            problems[check]
        );
    }
}

/// The whole story of a fresh DECNET host, with the tool as its reconciler:
/// the DB does not exist yet, so the tool refuses and creates nothing; DECNET's
/// own start creates it; the tool's passes fill it and keep DECNET's Workers
/// panel green; DECNET's API reads every decky with the config the tool wrote,
/// and starts (and restarts) cleanly on the tool's rows.
#[test]
fn a_decnet_host_with_nothing_configured_is_reconciled_and_decnet_reads_the_result() {
    let host = DecnetHost::install(Install::Pip);
    host.bus();
    let names = host.save_state(2);
    host.containers();
    let db = host.sqlite_db.display().to_string();

    // 1. No DB yet: refused, nothing created, and doctor says what to do.
    let before = host.files();
    let refused = run(&mut host.tool());
    assert_run(
        &refused,
        1,
        &[&format!(
            "decnet-reconcile: error: database {db} does not exist: DECNET creates it on its first \
             start (any DECNET service, e.g. `decnet api`), and cannot start on a database made by \
             anyone else, so nothing was created; start DECNET once, or point --db at DECNET's \
             database. For a database DECNET never manages, --create-table creates it"
        )],
    );
    let doctor = Doctor::of(host.tool());
    doctor.assert_only_problem(
        "db",
        &format!("database {db} does not exist: start DECNET (systemctl start decnet.target), …"),
    );
    let root = host.root.display().to_string();
    assert_eq!(
        doctor.setting("decnet_root"),
        (
            root.clone(),
            "discovered".to_owned(),
            Some(format!(
                "decnet installed in the venv {}, under the install dir {}",
                host.install_dir.join("venv").display(),
                host.install_dir.display()
            ))
        )
    );
    let in_root = Some(format!("in DECNET's root {root}"));
    assert_eq!(
        doctor.setting("state_file"),
        (
            host.state_file.display().to_string(),
            "discovered".to_owned(),
            in_root.clone()
        )
    );
    assert_eq!(
        doctor.setting("db"),
        (db.clone(), "discovered".to_owned(), in_root)
    );
    assert_eq!(
        doctor.setting("bus"),
        (
            format!("unix://{}", host.socket.display()),
            "decnet-ini".to_owned(),
            Some(format!("{}:8 [bus] socket", host.ini.display()))
        )
    );
    assert_eq!(doctor.setting("host_uuid").0, "local");
    assert_eq!(
        host.files(),
        before,
        "the refused pass or doctor wrote something"
    );

    // 2. DECNET's own start creates its DB.
    let initialized = host.init_db();
    let tables: Vec<&str> = initialized["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(tables.contains(&"fleet_deckies"), "{initialized}");
    assert_eq!(
        initialized["alembic_version"],
        serde_json::json!([BASELINE])
    );

    // 3. A pass as the packaged unit makes it: heartbeat on, nothing else set.
    let first = run(host
        .tool()
        .env("DECNET_RECONCILE_HEARTBEAT", "1")
        .args(["--output", "json"]));
    assert_run(&first, 0, &[]);
    let report: Value = serde_json::from_str(&first.stdout).expect("JSON");
    assert_eq!(report["counts"]["inserted"], 2, "{report}");
    assert_eq!(
        (report["published"].as_u64(), report["heartbeat"].as_str()),
        (Some(2), Some("sent")),
        "{report}"
    );
    let rows = sqlite_rows(&host.sqlite_db);
    assert_eq!(
        rows.iter().map(|row| row.name.as_str()).collect::<Vec<_>>(),
        names,
        "the tool wrote DECNET's state file's deckies into DECNET's DB"
    );
    assert!(rows.iter().all(|row| row.state == "running"), "{rows:?}");

    // 4. DECNET's API starts on the DB with the tool's rows (its start runs
    // initialize() again), reads every decky with the config the tool wrote,
    // and shows the reconciler `ok` from the tool's heartbeat.
    host.api();
    let quiet = run(host.tool().env("DECNET_RECONCILE_HEARTBEAT", "1").arg("-q"));
    assert_run(&quiet, 0, &[]);
    assert_eq!(quiet.stdout, "", "a converged pass under -q prints nothing");
    let answer = host.host_py("query", &[]);
    assert_eq!(
        answer["password_changed"], true,
        "the admin changed the password first"
    );
    assert_api_reads_the_tools_rows(&host, &answer);

    // 5. DECNET restarts cleanly on the tool's rows: the API, and initialize().
    host.stop("api");
    host.api();
    assert_run(
        &run(host.tool().env("DECNET_RECONCILE_HEARTBEAT", "1").arg("-q")),
        0,
        &[],
    );
    let again = host.host_py("query", &[]);
    assert_eq!(again["password_changed"], false);
    assert_api_reads_the_tools_rows(&host, &again);
    let initialized = host.init_db();
    assert_eq!(
        initialized["alembic_version"],
        serde_json::json!([BASELINE])
    );

    // 6. All is well, says doctor.
    Doctor::of(host.tool()).assert_well();
}

type Files = BTreeMap<std::path::PathBuf, Option<(u32, Vec<u8>)>>;

/// `after` is `before`: no file made, removed or changed (named, not dumped).
#[track_caller]
fn assert_unchanged(before: &Files, after: &Files, what: &str) {
    let paths: std::collections::BTreeSet<_> = before.keys().chain(after.keys()).collect();
    let changed: Vec<String> = paths
        .into_iter()
        .filter(|path| before.get(*path) != after.get(*path))
        .map(|path| {
            let size = |files: &Files| files.get(path).map(|f| f.as_ref().map(|(_, b)| b.len()));
            format!(
                "{} ({:?} → {:?} bytes)",
                path.display(),
                size(before),
                size(after)
            )
        })
        .collect();
    assert!(changed.is_empty(), "{what} wrote: {changed:?}");
}

/// `GET /api/v1/deckies` lists every row with the config the tool wrote, and
/// `GET /api/v1/workers` shows the reconciler `ok`, fed by the tool.
#[track_caller]
fn assert_api_reads_the_tools_rows(host: &DecnetHost, answer: &Value) {
    let rows = sqlite_rows(&host.sqlite_db);
    let written: Vec<Value> = rows
        .iter()
        .map(|row| {
            serde_json::from_str(row.decky_config.as_deref().expect("a config")).expect("JSON")
        })
        .collect();
    assert_eq!(
        answer["deckies"].as_array().expect("deckies"),
        &written,
        "DECNET's API does not list the deckies as the tool wrote them"
    );
    let reconciler = answer["workers"]["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .find(|worker| worker["name"] == "reconciler")
        .expect("a reconciler row");
    assert_eq!(reconciler["status"], "ok", "{reconciler}");
    assert_eq!(reconciler["extra"]["host_uuid"], "local", "{reconciler}");
}

/// doctor on a healthy host, then on each way it can break, one at a time:
/// each time it names that problem alone, says what to do, exits 1, and writes
/// nothing.
#[test]
fn doctor_names_each_broken_case_and_writes_nothing() {
    let host = DecnetHost::install(Install::Pip);
    host.bus();
    host.init_db();
    host.save_state(1);
    let doctor = |command: Command| {
        let before = host.files();
        let found = Doctor::of(command);
        assert_unchanged(&before, &host.files(), "doctor");
        found
    };
    doctor(host.tool()).assert_well();

    // Docker down (a daemon that died, leaving its socket).
    let dead = stale_socket(&host.prefix().join("dead-docker.sock"));
    let dead = format!("unix://{}", dead.display());
    let mut command = host.tool();
    command.env("DOCKER_HOST", &dead);
    doctor(command).assert_only_problem(
        "docker",
        &format!(
            "Docker at {dead} does not answer (connection refused): start Docker, or name it \
             with --docker-host (DOCKER_HOST); until then every pass runs with container states unknown"
        ),
    );

    // No bus socket.
    host.stop("bus");
    doctor(host.tool()).assert_only_problem(
        "bus",
        &format!(
            "DECNET's bus at {}: cannot connect: no such socket: start DECNET's bus (systemctl \
             start decnet-bus.service), or name its socket ([bus] socket in DECNET's ini, \
             DECNET_BUS_SOCKET, or --bus); until then every pass loses its events and DECNET's \
             Workers panel sees no heartbeat",
            host.socket.display()
        ),
    );
    host.bus();

    // A state file this user may not read (root, less the capabilities that
    // let it read anything: as the timer's user would be).
    let mode = |mode: u32| {
        std::fs::set_permissions(
            &host.state_file,
            std::os::unix::fs::PermissionsExt::from_mode(mode),
        )
        .expect("chmod the state file")
    };
    mode(0o000);
    let mut unprivileged = Command::new("setpriv");
    unprivileged.args([
        "--bounding-set=-dac_override,-dac_read_search",
        "--inh-caps=-all",
        "--",
    ]);
    let tool = host.tool();
    unprivileged
        .arg(tool.get_program())
        .current_dir(host.prefix());
    for (name, value) in tool.get_envs() {
        match value {
            Some(value) => unprivileged.env(name, value),
            None => unprivileged.env_remove(name),
        };
    }
    doctor(unprivileged).assert_only_problem(
        "state_file",
        &format!(
            "cannot read state file {}: Permission denied (os error 13): give the user the timer \
             runs as (decnet) read access, or run this as that user",
            host.state_file.display()
        ),
    );
    mode(0o644);

    // No DB: DECNET has not started yet. (The DB moves with its -wal and -shm.)
    let aside = host.prefix().join("decnet.db.aside");
    let move_db = |from: &std::path::Path, to: &std::path::Path| {
        for suffix in ["", "-wal", "-shm"] {
            let from = format!("{}{suffix}", from.display());
            if std::path::Path::new(&from).exists() {
                std::fs::rename(&from, format!("{}{suffix}", to.display())).expect("move");
            }
        }
    };
    move_db(&host.sqlite_db, &aside);
    let db = host.sqlite_db.display();
    doctor(host.tool()).assert_only_problem(
        "db",
        &format!(
            "database {db} does not exist: start DECNET (systemctl start decnet.target), which \
             creates it, then run this again; for a database DECNET never manages, pass --create-table"
        ),
    );

    // A DB without DECNET's table.
    {
        let other = rusqlite::Connection::open(&host.sqlite_db).expect("create");
        other
            .execute_batch("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
            .expect("a table");
    }
    doctor(host.tool()).assert_only_problem(
        "db",
        &format!("database {db} has no table fleet_deckies: DECNET creates its tables on its first start: …"),
    );

    // A DB whose fleet_deckies DECNET did not create (an older tool's).
    let gone = host.prefix().join("gone.db");
    move_db(&host.sqlite_db, &gone);
    rusqlite::Connection::open(&host.sqlite_db)
        .expect("create")
        .execute_batch(SQLITE_DDL)
        .expect("the table");
    doctor(host.tool()).assert_only_problem(
        "db",
        &format!(
            "database {db} has fleet_deckies but no alembic_version: DECNET did not create it …"
        ),
    );
    move_db(&host.sqlite_db, &gone);
    move_db(&aside, &host.sqlite_db);
    doctor(host.tool()).assert_well();

    // DECNET's own reconciler running beside the tool (last: it writes DECNET's DB).
    let reconciler = host.host_py("reconciler", &[]);
    let pid = reconciler["pid"].as_u64().expect("a pid");
    let found = Doctor::of(host.tool());
    found.assert_only_problem(
        "decnet_reconciler",
        &format!(
            "DECNET's own reconciler runs beside this one (process {pid}: {} {} reconcile): two \
             reconcilers announce every change twice; stop it …",
            host.install_dir.join("venv/bin/python").display(),
            host.install_dir.join("venv/bin/decnet").display()
        ),
    );
    host.stop("reconciler");
}

/// Every precedence line of the state file, the DB, the bus and the host id
/// through the binary (`doctor` shows each value and where it came from),
/// each compared with what DECNET itself resolves from the same configuration
/// (`host.py facts`, `host.py ini-env`) wherever DECNET has the setting.
#[test]
fn each_setting_follows_decnets_precedence() {
    let host = DecnetHost::install(Install::Pip);
    let bounded = |mut command: Command| {
        command.args([
            "--docker-timeout",
            "1",
            "--bus-timeout",
            "1",
            "--db-busy-timeout",
            "1",
        ]);
        command
    };
    let with = |vars: &[(&str, &str)], args: &[&str]| {
        let mut command = bounded(host.tool());
        command.envs(vars.iter().copied()).args(args);
        Doctor::of(command)
    };
    let facts = host.facts();
    let decnets = |key: &str| facts[key].as_str().expect(key).to_owned();
    let ini = host.ini.display().to_string();

    // The option outranks the variable, and the variable alone is read:
    // `(setting, option, typed value, variable, its value)`, each value as doctor shows it.
    let option_then_environment =
        |setting: &str, option: &str, typed: &str, var: &str, value: &str| {
            let shown = |v: &str| match setting {
                "bus" if !v.contains("://") => format!("unix://{v}"),
                _ => v.to_owned(),
            };
            let typed_run = with(&[(var, value)], &[option, typed]);
            assert_eq!(
                typed_run.setting(setting),
                (shown(typed), "option".to_owned(), Some(option.to_owned()))
            );
            let env_run = with(&[(var, value)], &[]);
            assert_eq!(
                env_run.setting(setting),
                (shown(value), "environment".to_owned(), Some(var.to_owned()))
            );
        };

    // The state file: option, environment, then DECNET's root (DECNET's ini
    // has no setting for it, and DECNET ignores a key for it: so does the tool).
    option_then_environment(
        "state_file",
        "--state-file",
        "/typed/s.json",
        "DECNET_STATE_FILE",
        "/env/s.json",
    );
    let default_ini = std::fs::read_to_string(&host.ini).expect("the ini");
    // The prefix's own bus, in every ini written below.
    let bus_section = format!("[bus]\nsocket = {}\n", host.socket.display());
    host.write_ini(&format!(
        "[decnet]\nstate-file = /ini/s.json\n{bus_section}"
    ));
    assert_eq!(
        host.facts()["state_file"],
        facts["state_file"],
        "DECNET ignores it"
    );
    let state = with(&[], &[]);
    assert_eq!(state.setting("state_file").0, decnets("state_file"));
    assert_eq!(state.setting("state_file").1, "discovered");
    host.write_ini(&default_ini);
    // Nothing names DECNET's install dir: DECNET's default, /opt/decnet, where this machine has none.
    let mut nowhere = bounded(tool_without_install_dir(&host));
    nowhere.env("DECNET_CONFIG", &host.ini);
    let nowhere = Doctor::of(nowhere);
    assert_eq!(
        nowhere.setting("install_dir"),
        ("/opt/decnet".into(), "default".into(), None)
    );
    assert!(
        line_matches(
            &nowhere.problems()["state_file"],
            "cannot find DECNET's state file: --state-file and DECNET_STATE_FILE are unset: found \
             no DECNET installed under /opt/decnet (…); looked at: /opt/decnet…"
        ),
        "{:?}",
        nowhere.problems()
    );

    // The DB: option, environment, DECNET's ini, DECNET's root, DECNET's defaults.
    option_then_environment("db", "--db", "/typed/d.db", "DECNET_DB_PATH", "/env/d.db");
    assert_eq!(
        with(&[], &[]).setting("db"),
        (
            decnets("sqlite_db"),
            "discovered".into(),
            Some(format!("in DECNET's root {}", decnets("root")))
        )
    );
    let closed = closed_port().to_string();
    host.add_env_local("DECNET_DB_PASSWORD=pw\n");
    host.write_ini(&format!(
        "{bus_section}[database]\ntype = mysql  ; shared\nhost = 127.0.0.1\nport = {closed}\nname = fleet\nuser = rec\n"
    ));
    let from_ini = with(&[("DECNET_DB_PASSWORD", "pw")], &[]);
    assert_eq!(
        from_ini.setting("db").0,
        as_tool_shows(&host.facts()["mysql_url"])
    );
    assert_eq!(
        from_ini.setting("db_host"),
        (
            "127.0.0.1".into(),
            "decnet-ini".into(),
            Some(format!("{ini}:5 [database] host"))
        )
    );
    assert_eq!(from_ini.setting("db_type").1, "decnet-ini");
    // The environment outranks the ini, variable by variable (as .env.local does for DECNET).
    host.add_env_local("DECNET_DB_NAME=from_env\n");
    let from_env = with(
        &[("DECNET_DB_PASSWORD", "pw"), ("DECNET_DB_NAME", "from_env")],
        &[],
    );
    assert_eq!(
        from_env.setting("db").0,
        as_tool_shows(&host.facts()["mysql_url"])
    );
    assert_eq!(from_env.setting("db_name").1, "environment");
    // DECNET's defaults for a MySQL server: localhost:3306, decnet, decnet.
    host.write_ini(&format!("{bus_section}[database]\ntype = mysql\n"));
    let path = host.install_dir.join(".env.local");
    let env_local = std::fs::read_to_string(&path).expect("read");
    std::fs::write(&path, env_local.replace("DECNET_DB_NAME=from_env\n", "")).expect("write");
    let defaults = with(&[("DECNET_DB_PASSWORD", "pw")], &[]);
    assert_eq!(
        defaults.setting("db").0,
        as_tool_shows(&host.facts()["mysql_url"])
    );
    assert_eq!(
        defaults.setting("db").0,
        "mysql://decnet:***@localhost:3306/decnet"
    );
    assert_eq!(
        defaults.setting("db_host"),
        ("localhost".into(), "default".into(), None)
    );
    host.write_ini(&default_ini);

    // The bus: option, environment, DECNET's ini, DECNET's default.
    option_then_environment(
        "bus",
        "--bus",
        "unix:///typed/b.sock",
        "DECNET_BUS_SOCKET",
        "/env/b.sock",
    );
    let redis = with(&[("DECNET_REDIS_URL", "redis://127.0.0.1:6379/0")], &[]);
    assert_eq!(redis.setting("bus").0, "redis://127.0.0.1:6379/0");
    assert_eq!(
        with(&[], &[]).setting("bus"),
        (
            format!("unix://{}", decnets("bus_socket")),
            "decnet-ini".into(),
            Some(format!("{ini}:8 [bus] socket"))
        )
    );
    // An empty variable hides the ini's value, in DECNET as in the tool: both fall to DECNET's default.
    host.add_env_local("DECNET_BUS_SOCKET=\n");
    let hidden = host.facts()["bus_socket"]
        .as_str()
        .expect("a socket")
        .to_owned();
    assert_ne!(hidden, decnets("bus_socket"));
    let bus = with(&[("DECNET_BUS_SOCKET", "")], &[]);
    assert_eq!(bus.setting("bus").0, format!("unix://{hidden}"));
    assert_eq!(
        bus.setting("bus").1,
        if hidden.starts_with("/run/decnet/") {
            "discovered"
        } else {
            "default"
        },
        "DECNET chose {hidden}"
    );
    let env_local = std::fs::read_to_string(&path).expect("read");
    std::fs::write(&path, env_local.replace("DECNET_BUS_SOCKET=\n", "")).expect("write");

    // The host id: option, environment, DECNET's ini (agent mode), default.
    option_then_environment(
        "host_uuid",
        "--host-uuid",
        "typed",
        "DECNET_HOST_UUID",
        "from-env",
    );
    let agent =
        format!("[decnet]\nmode = agent\n[agent]\nhost-uuid = 7f3e1c  # this agent\n{bus_section}");
    let agent_ini = host.prefix().join("agent.ini");
    std::fs::write(&agent_ini, &agent).expect("write");
    let decnet_reads = host.host_py("ini-env", &[agent_ini.to_str().expect("UTF-8")]);
    host.write_ini(&agent);
    let id = with(&[], &[]);
    assert_eq!(
        id.setting("host_uuid").0,
        decnet_reads["vars"]["DECNET_HOST_UUID"]
            .as_str()
            .expect("DECNET reads it")
    );
    assert_eq!(id.setting("host_uuid").1, "decnet-ini");
    assert_eq!(
        id.setting("host_uuid").2,
        Some(format!("{ini}:4 [agent] host-uuid"))
    );
    // In master mode (DECNET's default) [agent] is not read, by DECNET nor by the tool.
    let master = format!("[agent]\nhost-uuid = 7f3e1c\n{bus_section}");
    std::fs::write(&agent_ini, &master).expect("write");
    let decnet_reads = host.host_py("ini-env", &[agent_ini.to_str().expect("UTF-8")]);
    assert!(
        decnet_reads["vars"].get("DECNET_HOST_UUID").is_none(),
        "{decnet_reads}"
    );
    host.write_ini(&master);
    assert_eq!(
        with(&[], &[]).setting("host_uuid"),
        ("local".into(), "default".into(), None)
    );
    host.write_ini(&default_ini);

    // An editable install's root is the checkout, the install dir itself.
    let editable = DecnetHost::install(Install::Editable);
    let facts = editable.facts();
    assert_eq!(facts["root"].as_str(), editable.install_dir.to_str());
    let doctor = Doctor::of(bounded(editable.tool()));
    assert_eq!(
        doctor.setting("state_file").0,
        facts["state_file"].as_str().expect("a path")
    );
    assert_eq!(
        doctor.setting("db").0,
        facts["sqlite_db"].as_str().expect("a path")
    );
    assert!(doctor
        .setting("decnet_root")
        .2
        .expect("how")
        .starts_with("an editable install into the venv"),);
}

/// The tool with DECNET's ini named but not its install dir.
fn tool_without_install_dir(host: &DecnetHost) -> Command {
    let mut command = host.tool();
    command.env_remove("DECNET_INSTALL_DIR");
    command
}

/// DECNET's SQLAlchemy URL as the tool shows a MySQL target: `mysql://`, no password.
fn as_tool_shows(decnets_url: &Value) -> String {
    let url = decnets_url
        .as_str()
        .unwrap_or_else(|| panic!("no MySQL URL: {decnets_url}"));
    let url = url.replacen("mysql+asyncmy://", "mysql://", 1);
    let (user, rest) = url["mysql://".len()..]
        .split_once(':')
        .expect("user:password@");
    let (_, server) = rest.split_once('@').expect("@");
    format!("mysql://{user}:***@{server}")
}

/// On MariaDB, DECNET's schema is DECNET's too: a pass on a database without
/// `fleet_deckies` creates nothing; DECNET's own `initialize()` (Alembic under
/// its `GET_LOCK('decnet_schema_init')`) then runs cleanly, and again after
/// the tool's pass has written its rows.
#[test]
fn on_mariadb_decnet_creates_the_schema_and_starts_cleanly_after_a_pass() {
    let db = Env::mysql().without_db();
    let host = DecnetHost::install(Install::Pip);
    let default_ini = std::fs::read_to_string(&host.ini).expect("the ini");
    host.write_ini(&format!(
        "{default_ini}[database]\ntype = mysql\nhost = 127.0.0.1\nport = 3306\nname = {}\nuser = decnet_test\n",
        db.mysql_database
    ));
    // DECNET's secret stays in its .env.local, which the unit passes on as the environment.
    host.add_env_local("DECNET_DB_PASSWORD=decnet_test\n");
    let names = host.save_state(2);
    host.bus();
    let pass = || run(host.tool().env("DECNET_DB_PASSWORD", "decnet_test"));

    let refused = pass();
    assert_run(
        &refused,
        1,
        &[&format!(
            "decnet-reconcile: error: database mysql://***:***@127.0.0.1:3306/{} has no table \
             fleet_deckies: DECNET creates its tables on its first start …",
            db.mysql_database
        )],
    );
    assert!(db.schema().is_empty(), "the pass created {:?}", db.schema());

    host.init_db();
    assert!(
        db.table_exists(),
        "DECNET's initialize() created its schema"
    );
    let stamped = db.dump("SELECT version_num FROM alembic_version");
    assert_eq!(stamped.len(), 1, "{stamped:?}");

    let done = pass();
    assert_run(&done, 0, &[]);
    assert!(
        done.stdout.ends_with("inserted=2 deleted=0 updated=0\n"),
        "{}",
        done.stdout
    );
    assert_eq!(db.names_of("local"), names);

    let (clean, answer) = host.try_init_db();
    assert!(
        clean,
        "DECNET's initialize() failed after the tool's pass: {answer}"
    );
    assert_eq!(
        db.names_of("local"),
        names,
        "DECNET's start kept the tool's rows"
    );
}
