//! One hostile input through the whole pure path of a pass: the state-file
//! parser, the planner, the event builder and both renderers, with the
//! invariants of SPEC §4, §6 and §7 checked on the way. Shared by the fuzz
//! target (`fuzz/fuzz_targets/state_and_plan.rs`) and the regression replay
//! (`tests/hostile.rs`), so a corpus file means the same thing to both.
//!
//! Input: the state-file bytes, optionally followed by `\0\0` and a scenario
//! (JSON) for the DB rows, Docker's containers and the host id:
//! `{"host":"local","docker":{"d1-ssh":"running"}|null,"rows":[[host,name,services,config|null,ip|null,state],…]}`.
//! A raw NUL is never valid in JSON, so the split hides nothing from the parser.

use std::collections::{HashMap, HashSet};

use decnet_reconcile::pass::PassReport;
use decnet_reconcile::plan::{self, Action, ChangeKind, ContainerStates, DockerView, FleetRow};
use decnet_reconcile::state_file::{self, Decky};
use decnet_reconcile::{events, render};
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

/// Plans, checks the plan, renders it, builds its events, applies it to the
/// rows and plans again: a converged input must plan nothing.
fn check_plan(
    deckies: &[Decky],
    rows: &[FleetRow],
    docker: &DockerView,
    host: &str,
) -> Vec<FleetRow> {
    let planned = plan::plan(deckies, rows, docker, host);

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

    check_rendering(&planned, host, docker);
    check_events(&planned, host);

    let after = apply(host, rows, &planned);
    let again = plan::plan(deckies, &after, docker, host);
    assert!(
        again.is_empty(),
        "applying the plan did not converge: {:?}",
        again.changes
    );
    after
}

fn check_rendering(planned: &plan::Plan, host: &str, docker: &DockerView) {
    let report = PassReport {
        dry_run: false,
        host_uuid: host.to_owned(),
        docker_known: matches!(docker, DockerView::Known(_)),
        plan: planned.clone(),
        published: 0,
        publish_failed: 0,
        heartbeat: None,
    };
    let table = render::table(&report, false);
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

fn check_events(planned: &plan::Plan, host: &str) {
    for transport in [events::Transport::Redis, events::Transport::DecnetBus] {
        check_events_on(planned, host, transport);
    }
}

fn check_events_on(planned: &plan::Plan, host: &str, transport: events::Transport) {
    let (built, unannounceable) = events::events_for(planned, 1_764_193_200.123, transport);
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
        if transport == events::Transport::DecnetBus {
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

/// What the DB holds after the plan is written, as `src/db.rs` writes it.
fn apply(host: &str, rows: &[FleetRow], planned: &plan::Plan) -> Vec<FleetRow> {
    let mut after: Vec<FleetRow> = rows.to_vec();
    for change in &planned.changes {
        let position = after
            .iter()
            .position(|row| row.host_uuid == host && row.name == change.name);
        match (&change.kind, position) {
            (ChangeKind::Insert { state, columns }, None) => after.push(FleetRow {
                host_uuid: host.to_owned(),
                name: change.name.clone(),
                services: columns.services_json.clone(),
                decky_config: Some(columns.config_json.clone()),
                decky_ip: Some(columns.decky_ip.clone()),
                state: state.as_str().to_owned(),
                stored_key: None,
                written_at: None,
            }),
            (ChangeKind::Delete { .. }, Some(at)) => {
                after.remove(at);
            }
            (ChangeKind::Update { state, config, .. }, Some(at)) => {
                let row = &mut after[at];
                if let Some(transition) = state {
                    row.state = transition.to.as_str().to_owned();
                }
                if let Some(update) = config {
                    row.services = update.columns.services_json.clone();
                    row.decky_ip = Some(update.columns.decky_ip.clone());
                    row.decky_config = Some(update.columns.config_json.clone());
                }
            }
            (_, position) => panic!(
                "{} of {:?} would not touch exactly one row (row present: {})",
                change.action().as_str(),
                change.name,
                position.is_some()
            ),
        }
    }
    after
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
                written_at: None,
            });
        }
        Some(Scenario { host, docker, rows })
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
