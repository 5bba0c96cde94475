//! One hostile input through the whole path of a pass but Docker and the bus:
//! the state-file parser, the planner on rows read and written through the
//! real SQL (an in-memory SQLite database), the event builder and both
//! renderers, with the invariants of SPEC §4, §6 and §7 checked on the way. Shared by the fuzz
//! target (`fuzz/fuzz_targets/state_and_plan.rs`) and the regression replay
//! (`tests/it/hostile.rs`), so a corpus file means the same thing to both.
//!
//! Input: the state-file bytes, optionally followed by `\0\0` and a scenario
//! (JSON) for the DB rows, Docker's containers and the host id:
//! `{"host":"local","docker":{"d1-ssh":"running"}|null,"rows":[[host,name,services,config|null,ip|null,state],…]}`.
//! A raw NUL is never valid in JSON, so the split hides nothing from the parser.

use std::collections::{HashMap, HashSet};

use decnet_reconcile::core::{
    self, Action, ChangeKind, ContainerStates, Decky, DockerView, FleetRow, Plan, Report,
};
use decnet_reconcile::{bus, render, state_file, store};
use serde_json::Value;

const SEPARATOR: &[u8] = b"\0\0";

/// Panics (a fuzzer crash) when any invariant breaks; returns quietly otherwise.
pub fn exercise(data: &[u8]) {
    let (state_bytes, scenario) = match find(data, SEPARATOR) {
        Some(at) => (&data[..at], Some(&data[at + SEPARATOR.len()..])),
        None => (data, None),
    };
    let fleet = match state_file::parse(state_bytes) {
        Ok(fleet) => fleet,
        Err(err) => {
            let message = err.to_string();
            assert!(
                !message.chars().any(char::is_control),
                "a state-file error would print raw control characters: {message:?}"
            );
            return;
        }
    };
    let deckies = &fleet.deckies;
    let names: HashSet<&str> = deckies.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names.len(), deckies.len(), "duplicate names were accepted");
    for decky in deckies {
        assert!(
            !decky.services.is_empty(),
            "{:?} has no services",
            decky.name
        );
        let config: Value = serde_json::from_str(&decky.config_json).expect("decky_config is JSON");
        assert_eq!(config["name"], decky.name.as_str());
        let services: Vec<String> =
            serde_json::from_str(&decky.services_json).expect("services is a JSON list");
        assert_eq!(services, decky.services);
    }

    // A fresh DB with Docker unknown, then the rows that plan leaves behind.
    let fresh_rows = check_plan(deckies, &[], &DockerView::Unknown, "local");
    check_plan(deckies, &fresh_rows, &DockerView::Unknown, "local");
    check_plan(
        deckies,
        &fresh_rows,
        &DockerView::Known(ContainerStates::default()),
        "local",
    );

    if let Some(scenario) = scenario.and_then(Scenario::decode) {
        check_plan(deckies, &scenario.rows, &scenario.docker, &scenario.host);
        check_plan(
            deckies,
            &scenario.rows,
            &DockerView::Unknown,
            &scenario.host,
        );
    }
}

/// Plans on `rows` stored in a fresh database, checks the plan, renders it,
/// builds its events, writes it, and plans again on what the database then
/// holds: a converged input must plan nothing. Returns this host's rows after.
fn check_plan(
    deckies: &[Decky],
    rows: &[FleetRow],
    docker: &DockerView,
    host: &str,
) -> Vec<FleetRow> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let mut db = store::in_memory(rows).expect("an in-memory database");
        let mut transaction = db.begin(host).await.expect("begin");
        let snapshot = transaction.snapshot().await.expect("read the rows");
        let planned = core::plan(deckies, &snapshot, docker, host).expect("a plan");
        check_changes(&planned, docker, host);
        transaction
            .apply(&planned)
            .await
            .expect("every write touches one row");
        transaction.commit().await.expect("commit");

        let mut transaction = db.begin(host).await.expect("begin");
        let after = transaction.snapshot().await.expect("read the rows");
        let again = core::plan(deckies, &after, docker, host).expect("a plan");
        assert!(
            again.is_empty(),
            "applying the plan did not converge: {:?}",
            again.changes
        );
        after.rows
    })
}

fn check_changes(planned: &Plan, docker: &DockerView, host: &str) {
    let mut seen = HashSet::new();
    for change in &planned.changes {
        assert_eq!(change.host_uuid, host, "a change for another host");
        assert!(
            seen.insert(change.name.as_str()),
            "{:?} changed twice",
            change.name
        );
        match &change.kind {
            ChangeKind::Insert { state, .. } => {
                if *docker == DockerView::Unknown {
                    assert_eq!(
                        state.as_str(),
                        "running",
                        "Docker unknown inserts as running"
                    );
                }
            }
            ChangeKind::Update { state, config, .. } => {
                assert!(state.is_some() || config.is_some(), "an empty update");
                if *docker == DockerView::Unknown {
                    assert!(state.is_none(), "a state update while Docker is unknown");
                }
            }
            ChangeKind::Delete { .. } => {}
        }
    }
    let skipped: HashSet<&str> = planned.skipped.iter().map(|s| s.name.as_str()).collect();
    for change in &planned.changes {
        if change.action() != Action::Deleted {
            assert!(
                !skipped.contains(change.name.as_str()),
                "{:?} is another host's",
                change.name
            );
        }
    }
    let order: Vec<u8> = planned.changes.iter().map(|c| c.action() as u8).collect();
    assert!(
        order.windows(2).all(|w| w[0] <= w[1]),
        "inserts, deletes, updates"
    );

    check_rendering(planned, host, docker);
    check_events(planned, host);
}

fn check_rendering(planned: &Plan, host: &str, docker: &DockerView) {
    let report = Report::new(false, host, docker.status(), planned.clone());
    let table = render::table(&report, false, &Default::default());
    let unsafe_char = |c: char| {
        (c.is_control() && c != '\n')
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    assert!(
        !table.chars().any(unsafe_char),
        "raw control characters or bidi overrides in the table: {table:?}"
    );
    let json: Value = serde_json::from_str(&render::json(&report)).expect("--output json is JSON");
    let changes = json["changes"].as_array().expect("changes is a list");
    assert_eq!(changes.len(), planned.changes.len());
    for (shown, change) in changes.iter().zip(&planned.changes) {
        assert_eq!(
            shown["name"],
            change.name.as_str(),
            "names travel verbatim in JSON"
        );
    }
}

fn check_events(planned: &Plan, host: &str) {
    for transport in [bus::Transport::Redis, bus::Transport::DecnetBus] {
        check_events_on(planned, host, transport);
    }
}

fn check_events_on(planned: &Plan, host: &str, transport: bus::Transport) {
    let (built, unannounceable) = bus::events_for(planned, 1_764_193_200.123, transport);
    assert_eq!(built.len() + unannounceable.len(), planned.changes.len());
    let announced = planned
        .changes
        .iter()
        .filter(|c| !unannounceable.iter().any(|u| u.name == c.name));
    for (event, change) in built.iter().zip(announced) {
        assert_eq!(event.channel, format!("decky.{host}:{}.state", change.name));
        assert_eq!(event.channel.matches('.').count(), 2, "{:?}", event.channel);
        assert!(
            !event.channel.contains(['*', '>']) && !event.channel.contains(char::is_whitespace)
        );
        if transport == bus::Transport::DecnetBus {
            assert!(
                event.channel.bytes().all(|b| b.is_ascii_graphic()),
                "DECNET's server would drop the connection on {:?}",
                event.channel
            );
        }
        let message: Value = serde_json::from_str(&event.message).expect("an event is JSON");
        assert_eq!(message["payload"]["name"], change.name.as_str());
        assert_eq!(message["topic"], event.channel.as_str());
        assert_eq!(
            message["payload"].get("previous_state").is_some(),
            message["payload"]["transition"] == "state_changed"
        );
    }
}

/// The DB rows, Docker's containers and the host id of one fuzz input.
struct Scenario {
    host: String,
    docker: DockerView,
    rows: Vec<FleetRow>,
}

impl Scenario {
    fn decode(bytes: &[u8]) -> Option<Scenario> {
        let value: Value = serde_json::from_slice(bytes).ok()?;
        let host = value["host"].as_str().unwrap_or("local").to_owned();
        let docker = match value["docker"].as_object() {
            Some(containers) => {
                let mut states = ContainerStates::default();
                for (name, state) in containers {
                    states.insert(name.clone(), state.as_str().unwrap_or_default());
                }
                DockerView::Known(states)
            }
            None => DockerView::Unknown,
        };
        // The table's primary key is (host_uuid, name): the DB cannot hold two.
        let mut keys = HashMap::new();
        let mut rows = Vec::new();
        for row in value["rows"].as_array().into_iter().flatten() {
            let text = |i: usize| row[i].as_str().map(str::to_owned);
            let (Some(host_uuid), Some(name), Some(services), Some(state)) =
                (text(0), text(1), text(2), text(5))
            else {
                continue;
            };
            if keys.insert((host_uuid.clone(), name.clone()), ()).is_some() {
                continue;
            }
            rows.push(FleetRow {
                host_uuid,
                name,
                services,
                decky_config: text(3),
                decky_ip: text(4),
                state,
                stored_key: None,
                updated_at: None,
            });
        }
        Some(Scenario { host, docker, rows })
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
