//! Every rule of SPEC §4, on plain data, and the properties that need no
//! database (those that do run through the real SQL in `store::properties`).

use std::collections::HashSet;

use proptest::prelude::*;

use super::*;
use crate::core::StoreRules;

pub(crate) const HOST: &str = "local";

pub(crate) fn decky(name: &str, services: &[&str]) -> Decky {
    let services: Vec<String> = services.iter().map(|s| s.to_string()).collect();
    let services_json = serde_json::to_string(&services).expect("json");
    Decky {
        name: name.to_owned(),
        ip: format!("10.0.0.{}", name.len()),
        config_json: format!(r#"{{"name":"{name}","services":{services_json}}}"#),
        services_json,
        services,
        host_uuid: None,
    }
}

/// The row a previous pass would have written for `decky` in `state`.
pub(crate) fn row_for(decky: &Decky, state: &str) -> FleetRow {
    FleetRow {
        host_uuid: HOST.to_owned(),
        name: decky.name.clone(),
        services: decky.services_json.clone(),
        decky_config: Some(decky.config_json.clone()),
        decky_ip: Some(decky.ip.clone()),
        state: state.to_owned(),
        stored_key: None,
        updated_at: None,
    }
}

/// Rows as a pass reads them from SQLite, at the end of the test clock's minute.
fn snapshot(rows: &[FleetRow]) -> Snapshot {
    Snapshot {
        rows: rows.to_vec(),
        read_at: at(59),
        store: StoreRules::default(),
    }
}

/// The plan for this host's `rows`, which must be possible.
fn plan_of(desired: &[Decky], rows: &[FleetRow], docker: &DockerView) -> Plan {
    plan(desired, &snapshot(rows), docker, HOST).expect("a plan")
}

/// `at` as SQLite stores `updated_at`.
fn stamp(at: NaiveDateTime) -> String {
    at.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

fn containers(entries: &[(&str, &str)]) -> DockerView {
    let mut states = ContainerStates::default();
    for (name, state) in entries {
        states.insert(*name, state);
    }
    DockerView::Known(states)
}

fn only_change(plan: &Plan) -> &Change {
    assert_eq!(plan.changes.len(), 1, "{plan:#?}");
    &plan.changes[0]
}

#[test]
fn aggregate_running_needs_every_container_running() {
    let d = decky("d1", &["ssh", "smtp_relay"]);
    let view = containers(&[("d1-ssh", "running"), ("d1-smtp-relay", "running")]);
    let DockerView::Known(states) = view else {
        unreachable!()
    };
    assert_eq!(aggregate_state(&d, &states), DeckyState::Running);
}

#[test]
fn aggregate_rules_of_spec_4_2() {
    let d = decky("d1", &["ssh", "ftp"]);
    let cases: &[(&[(&str, &str)], DeckyState)] = &[
        (&[], DeckyState::TornDown),
        (&[("other-ssh", "running")], DeckyState::TornDown),
        (
            &[("d1-ssh", "exited"), ("d1-ftp", "paused")],
            DeckyState::Failed,
        ),
        (&[("d1-ssh", "created")], DeckyState::Failed),
        (&[("d1-ssh", "running")], DeckyState::Degraded),
        (
            &[("d1-ssh", "running"), ("d1-ftp", "dead")],
            DeckyState::Degraded,
        ),
        (
            &[("d1-ssh", "running"), ("d1-ftp", "restarting")],
            DeckyState::Degraded,
        ),
        (
            &[("d1-ssh", "running"), ("d1-ftp", "some-future-state")],
            DeckyState::Degraded,
        ),
        (
            &[("d1-ssh", "running"), ("d1-ftp", "running")],
            DeckyState::Running,
        ),
    ];
    for (entries, expected) in cases {
        let DockerView::Known(states) = containers(entries) else {
            unreachable!()
        };
        assert_eq!(aggregate_state(&d, &states), *expected, "{entries:?}");
    }
}

#[test]
fn underscores_in_service_names_become_dashes() {
    let d = decky("d1", &["smtp_relay"]);
    let DockerView::Known(states) = containers(&[("d1-smtp_relay", "running")]) else {
        unreachable!()
    };
    assert_eq!(aggregate_state(&d, &states), DeckyState::TornDown);
}

#[test]
fn insert_takes_the_observed_state() {
    let d = decky("d1", &["ssh"]);
    let plan = plan_of(
        std::slice::from_ref(&d),
        &[],
        &containers(&[("d1-ssh", "exited")]),
    );
    let change = only_change(&plan);
    assert_eq!(change.action(), Action::Inserted);
    assert_eq!(
        change.kind,
        ChangeKind::Insert {
            state: DeckyState::Failed,
            columns: ConfigColumns {
                services_json: d.services_json.clone(),
                decky_ip: d.ip.clone(),
                config_json: d.config_json.clone(),
            }
        }
    );
    assert_eq!(change.host_uuid, HOST);
}

/// A moment on the test clock: `second` seconds past noon.
fn at(second: u32) -> chrono::NaiveDateTime {
    chrono::NaiveDate::from_ymd_opt(2026, 11, 26)
        .and_then(|day| day.and_hms_opt(12, 0, second))
        .expect("a valid time")
}

/// Docker's view with `entries`, as listed at `listed_at`.
fn listed(entries: &[(&str, &str)], listed_at: chrono::NaiveDateTime) -> DockerView {
    let DockerView::Known(mut states) = containers(entries) else {
        unreachable!()
    };
    states.set_listed_at(listed_at);
    DockerView::Known(states)
}

#[test]
fn a_row_written_at_or_after_the_listing_keeps_its_state() {
    let d = decky("d1", &["ssh"]);
    let docker = listed(&[("d1-ssh", "running")], at(10));
    for written in [at(10), at(11)] {
        let mut row = row_for(&d, "failed");
        row.updated_at = Some(stamp(written));
        let plan = plan_of(std::slice::from_ref(&d), &[row], &docker);
        assert!(plan.is_empty(), "written at {written}: {plan:#?}");
    }
}

#[test]
fn a_row_written_before_the_listing_or_at_an_unknown_time_gets_the_observed_state() {
    let d = decky("d1", &["ssh"]);
    let docker = listed(&[("d1-ssh", "running")], at(10));
    for written in [Some(at(9)), None] {
        let mut row = row_for(&d, "failed");
        row.updated_at = written.map(stamp);
        let plan = plan_of(std::slice::from_ref(&d), &[row], &docker);
        assert_eq!(
            only_change(&plan).state(),
            "running",
            "written at {written:?}"
        );
    }
}

#[test]
fn a_row_written_after_the_listing_still_gets_its_config_repaired_and_others_their_rows() {
    let d = decky("d1", &["ssh"]);
    let docker = listed(&[("d1-ssh", "running")], at(10));
    let mut row = row_for(&d, "failed");
    row.updated_at = Some(stamp(at(12)));
    row.decky_ip = Some("192.0.2.1".to_owned());
    let mut gone = row_for(&decky("gone", &["ssh"]), "running");
    gone.updated_at = Some(stamp(at(12)));
    let new = decky("new", &["ssh"]);
    let plan = plan_of(&[d, new], &[row, gone], &docker);
    let summary: Vec<(Action, &str, Vec<&str>)> = plan
        .changes
        .iter()
        .map(|c| (c.action(), c.name.as_str(), c.changed_fields()))
        .collect();
    assert_eq!(
        summary,
        [
            (Action::Inserted, "new", vec![]),
            (Action::Deleted, "gone", vec![]),
            (Action::Updated, "d1", vec!["decky_ip"]),
        ]
    );
    assert_eq!(plan.changes[2].state(), "failed", "the row keeps its state");
}

#[test]
fn a_view_of_no_particular_moment_is_never_older_than_a_row() {
    let d = decky("d1", &["ssh"]);
    let mut row = row_for(&d, "failed");
    row.updated_at = Some(stamp(at(59)));
    let plan = plan_of(
        std::slice::from_ref(&d),
        &[row],
        &containers(&[("d1-ssh", "running")]),
    );
    assert_eq!(only_change(&plan).state(), "running");
}

#[test]
fn insert_is_running_when_docker_is_unknown() {
    let plan = plan_of(&[decky("d1", &["ssh"])], &[], &DockerView::Unknown);
    assert_eq!(only_change(&plan).state(), "running");
}

#[test]
fn rows_missing_from_the_state_file_are_deleted() {
    let gone = decky("gone", &["ssh"]);
    let plan = plan_of(&[], &[row_for(&gone, "running")], &DockerView::Unknown);
    let change = only_change(&plan);
    assert_eq!(change.action(), Action::Deleted);
    assert_eq!(change.previous_state(), Some("running"));
    assert_eq!(change.state(), "torn_down");
    assert_eq!(change.services, ["ssh"]);
}

#[test]
fn state_update_when_docker_disagrees() {
    let d = decky("d1", &["ssh"]);
    let plan = plan_of(
        std::slice::from_ref(&d),
        &[row_for(&d, "running")],
        &containers(&[]),
    );
    let change = only_change(&plan);
    assert_eq!(change.previous_state(), Some("running"));
    assert_eq!(change.state(), "torn_down");
    assert_eq!(change.changed_fields(), ["state"]);
}

#[test]
fn docker_unknown_makes_no_state_updates() {
    let d = decky("d1", &["ssh"]);
    let plan = plan_of(
        std::slice::from_ref(&d),
        &[row_for(&d, "running")],
        &DockerView::Unknown,
    );
    assert!(plan.is_empty(), "{plan:#?}");
}

#[test]
fn config_drift_is_repaired_and_named() {
    let d = decky("d1", &["ssh"]);
    let mut row = row_for(&d, "running");
    row.decky_ip = Some("10.9.9.9".to_owned());
    let plan = plan_of(
        std::slice::from_ref(&d),
        &[row],
        &containers(&[("d1-ssh", "running")]),
    );
    let change = only_change(&plan);
    assert_eq!(change.changed_fields(), ["decky_ip"]);
    assert_eq!(change.state(), "running");
    assert_eq!(change.previous_state(), Some("running"));
}

#[test]
fn state_and_config_drift_make_one_update() {
    let d = decky("d1", &["ssh"]);
    let mut row = row_for(&d, "running");
    row.services = r#"["ftp"]"#.to_owned();
    row.decky_config = None;
    let plan = plan_of(std::slice::from_ref(&d), &[row], &containers(&[]));
    let change = only_change(&plan);
    assert_eq!(
        change.changed_fields(),
        ["state", "services", "decky_config"]
    );
}

#[test]
fn json_is_compared_by_meaning_not_text() {
    let d = decky("d1", &["ssh"]);
    let mut row = row_for(&d, "running");
    row.services = r#"[ "ssh" ]"#.to_owned();
    row.decky_config = Some(r#"{ "services": ["ssh"], "name": "d1" }"#.to_owned());
    let plan = plan_of(
        std::slice::from_ref(&d),
        &[row],
        &containers(&[("d1-ssh", "running")]),
    );
    assert!(plan.is_empty(), "{plan:#?}");
}

#[test]
fn integers_and_floats_of_one_value_are_the_same() {
    assert!(same_json(
        r#"{"last_mutated":5}"#,
        r#"{"last_mutated":5.0}"#
    ));
    assert!(!same_json(
        r#"{"last_mutated":5}"#,
        r#"{"last_mutated":5.5}"#
    ));
    assert!(!same_json("not json", "not json "));
}

#[test]
fn unparsable_stored_config_is_repaired() {
    let d = decky("d1", &["ssh"]);
    let mut row = row_for(&d, "running");
    row.decky_config = Some("{truncated".to_owned());
    let plan = plan_of(std::slice::from_ref(&d), &[row], &DockerView::Unknown);
    assert_eq!(only_change(&plan).changed_fields(), ["decky_config"]);
}

#[test]
fn a_row_only_its_stored_key_can_address_matches_no_decky_and_is_deleted_by_it() {
    let d = decky("x\u{fffd}", &["ssh"]);
    let mut undecodable = row_for(&d, "running");
    undecodable.stored_key = Some(42);
    let plan = plan_of(
        std::slice::from_ref(&d),
        &[undecodable],
        &DockerView::Unknown,
    );
    let kinds: Vec<&ChangeKind> = plan.changes.iter().map(|c| &c.kind).collect();
    assert!(matches!(kinds[0], ChangeKind::Insert { .. }), "{plan:#?}");
    assert!(
        matches!(
            kinds[1],
            ChangeKind::Delete {
                stored_key: Some(42),
                ..
            }
        ),
        "{plan:#?}"
    );
}

#[test]
fn decky_of_another_host_is_skipped_and_its_namesake_row_deleted() {
    let mut foreign = decky("d1", &["ssh"]);
    foreign.host_uuid = Some("host-b".to_owned());
    let plan = plan_of(
        &[foreign.clone()],
        &[row_for(&foreign, "running")],
        &DockerView::Unknown,
    );
    assert_eq!(
        plan.skipped,
        [SkippedDecky {
            name: "d1".to_owned(),
            host_uuid: "host-b".to_owned()
        }]
    );
    assert_eq!(only_change(&plan).action(), Action::Deleted);
}

#[test]
fn decky_naming_this_host_is_this_hosts() {
    let mut mine = decky("d1", &["ssh"]);
    mine.host_uuid = Some(HOST.to_owned());
    let plan = plan_of(&[mine], &[], &DockerView::Unknown);
    assert_eq!(only_change(&plan).action(), Action::Inserted);
    assert!(plan.skipped.is_empty());
}

/// The store returned a row of another spelling of this host id for it: its
/// collation holds the two as one, and no plan can keep their rows apart.
#[test]
fn a_row_of_another_host_id_in_the_snapshot_is_refused_whole() {
    let d = decky("d1", &["ssh"]);
    let mut peer = row_for(&d, "running");
    peer.host_uuid = "Local".to_owned();
    let refused = plan(&[d], &snapshot(&[peer]), &containers(&[]), HOST);
    assert_eq!(
        refused,
        Err(PlanError::HostIdsCollide {
            ours: HOST.to_owned(),
            theirs: "Local".to_owned()
        })
    );
}

/// MySQL's `varchar(255)`: a host id or a new name longer than the store
/// holds is refused before anything is written; an existing row is not re-checked.
#[test]
fn keys_longer_than_the_store_holds_are_refused() {
    let rules = StoreRules {
        stamp_resolution: chrono::TimeDelta::seconds(1),
        max_key_chars: Some(5),
    };
    let snapshot_of = |rows: &[FleetRow]| Snapshot {
        rows: rows.to_vec(),
        read_at: at(59),
        store: rules,
    };
    let long = decky("décky6", &["ssh"]);
    let refused = plan(
        std::slice::from_ref(&long),
        &snapshot_of(&[]),
        &DockerView::Unknown,
        HOST,
    );
    assert_eq!(
        refused,
        Err(PlanError::NameTooLong {
            shown: "décky6".to_owned(),
            chars: 6,
            max: 5
        })
    );
    let fits = decky("dé5", &["ssh"]);
    assert!(plan(&[fits], &snapshot_of(&[]), &DockerView::Unknown, HOST).is_ok());
    assert_eq!(
        plan(&[], &snapshot_of(&[]), &DockerView::Unknown, "host-6"),
        Err(PlanError::HostIdTooLong { max: 5 })
    );
}

/// A stamp stands for the last moment of its resolution, and never for the future.
#[test]
fn a_stamp_stands_for_the_last_moment_of_its_resolution() {
    let row_stamped = |text: &str| FleetRow {
        updated_at: Some(text.to_owned()),
        ..row_for(&decky("d1", &["ssh"]), "running")
    };
    let read_at =
        |text: &str| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").expect("time");
    let at_resolution = |resolution| Snapshot {
        rows: Vec::new(),
        read_at: read_at("2026-11-26 12:00:05.500000"),
        store: StoreRules {
            stamp_resolution: resolution,
            max_key_chars: None,
        },
    };
    let second = at_resolution(chrono::TimeDelta::seconds(1));
    let micro = at_resolution(chrono::TimeDelta::microseconds(1));
    let listed = read_at("2026-11-26 12:00:05.200000");
    // MySQL's 12:00:05 may be 12:00:05.7, after a listing at 12:00:05.2.
    let whole = written_at(&row_stamped("2026-11-26 12:00:05"), &second).expect("past");
    assert!(whole >= listed, "{whole}");
    let earlier = written_at(&row_stamped("2026-11-26 12:00:04"), &second).expect("past");
    assert!(earlier < listed, "{earlier}");
    let fine = written_at(&row_stamped("2026-11-26 12:00:05.199999"), &micro).expect("past");
    assert!(fine < listed, "{fine}");
    assert_eq!(
        written_at(&row_stamped("2026-11-26 12:00:05.200000"), &micro),
        Some(listed + chrono::TimeDelta::microseconds(1) - chrono::TimeDelta::nanoseconds(1))
    );
    assert_eq!(
        written_at(&row_stamped("2999-01-01 00:00:00.000000"), &micro),
        None
    );
    assert_eq!(written_at(&row_stamped("yesterday"), &micro), None);
    let unstamped = FleetRow {
        updated_at: None,
        ..row_stamped("x")
    };
    assert_eq!(written_at(&unstamped, &micro), None);
}

#[test]
fn rows_by_state_after_the_plan_count_each_change() {
    let (kept, crashed, gone, new) = (
        decky("kept", &["ssh"]),
        decky("crashed", &["ssh"]),
        decky("gone", &["ssh"]),
        decky("new", &["ssh"]),
    );
    let rows = [
        row_for(&kept, "running"),
        row_for(&crashed, "running"),
        row_for(&gone, "teardown_failed"),
    ];
    let plan = plan_of(
        &[kept, crashed, new],
        &rows,
        &containers(&[("kept-ssh", "running"), ("new-ssh", "running")]),
    );
    let by_state: Vec<(String, usize)> = plan.rows_by_state(&rows).into_iter().collect();
    assert_eq!(
        by_state,
        [("running".to_owned(), 2), ("torn_down".to_owned(), 1)]
    );
}

#[test]
fn changes_come_inserts_then_deletes_then_updates() {
    let (a, b, c) = (
        decky("a", &["ssh"]),
        decky("b", &["ssh"]),
        decky("c", &["ssh"]),
    );
    let gone = decky("z-gone", &["ssh"]);
    let rows = [row_for(&a, "failed"), row_for(&gone, "running")];
    let plan = plan_of(&[c, a, b], &rows, &containers(&[("a-ssh", "running")]));
    let order: Vec<(Action, &str)> = plan
        .changes
        .iter()
        .map(|c| (c.action(), c.name.as_str()))
        .collect();
    assert_eq!(
        order,
        [
            (Action::Inserted, "b"),
            (Action::Inserted, "c"),
            (Action::Deleted, "z-gone"),
            (Action::Updated, "a"),
        ]
    );
}

const SERVICES: [&str; 4] = ["ssh", "ftp", "smtp_relay", "http"];
const STATES: [&str; 6] = [
    "running",
    "exited",
    "paused",
    "created",
    "dead",
    "restarting",
];
const ROW_STATES: [&str; 5] = ["running", "failed", "degraded", "torn_down", "pending"];

prop_compose! {
    pub(crate) fn arb_decky()(name in "[a-e]{1,2}", services in proptest::sample::subsequence(SERVICES.to_vec(), 1..=3),
                   foreign in proptest::option::weighted(0.2, "host-[ab]")) -> Decky {
        let mut d = decky(&name, &services);
        d.host_uuid = foreign;
        d
    }
}

prop_compose! {
    pub(crate) fn arb_row()(name in "[a-e]{1,2}", host in prop_oneof![Just(HOST.to_owned()), "host-[ab]"],
                 state in proptest::sample::select(ROW_STATES.to_vec()),
                 services in proptest::sample::subsequence(SERVICES.to_vec(), 1..=3),
                 drifted_ip in any::<bool>()) -> FleetRow {
        let mut row = row_for(&decky(&name, &services), state);
        row.host_uuid = host;
        if drifted_ip { row.decky_ip = Some("192.0.2.1".to_owned()); }
        row
    }
}

pub(crate) fn arb_docker() -> impl Strategy<Value = DockerView> {
    let entries = proptest::collection::vec(
        (
            "[a-e]{1,2}",
            proptest::sample::select(SERVICES.to_vec()),
            proptest::sample::select(STATES.to_vec()),
        ),
        0..12,
    );
    prop_oneof![
        1 => Just(DockerView::Unknown),
        4 => entries.prop_map(|entries| {
            let mut states = ContainerStates::default();
            for (decky, service, state) in entries {
                states.insert(format!("{decky}-{}", service.replace('_', "-")), state);
            }
            DockerView::Known(states)
        }),
    ]
}

pub(crate) fn unique_by_name<T>(items: Vec<T>, key: impl Fn(&T) -> String) -> Vec<T> {
    let mut seen = HashSet::new();
    items
        .into_iter()
        .filter(|item| seen.insert(key(item)))
        .collect()
}

proptest! {
    #[test]
    fn a_converged_input_plans_nothing(
        deckies in proptest::collection::vec(arb_decky(), 0..8),
        docker in arb_docker(),
    ) {
        let deckies = unique_by_name(deckies, |d| d.name.clone());
        let rows: Vec<FleetRow> = deckies
            .iter()
            .filter(|d| d.host_uuid.is_none())
            .map(|d| {
                let state = match &docker {
                    DockerView::Known(states) => aggregate_state(d, states).as_str(),
                    DockerView::Unknown => "pending",
                };
                row_for(d, state)
            })
            .collect();
        let planned = plan_of(&deckies, &rows, &docker);
        prop_assert!(planned.changes.is_empty(), "{:#?}", planned);
    }

    #[test]
    fn no_row_written_since_the_listing_changes_state(
        deckies in proptest::collection::vec(arb_decky(), 0..8),
        rows in proptest::collection::vec((arb_row(), 0..20u32), 0..8),
        docker in arb_docker(),
    ) {
        let deckies = unique_by_name(deckies, |d| d.name.clone());
        let rows: Vec<FleetRow> = rows
            .into_iter()
            .filter(|(row, _)| row.host_uuid == HOST)
            .map(|(mut row, second)| {
                row.updated_at = Some(stamp(at(second)));
                row
            })
            .collect();
        let rows = unique_by_name(rows, |r| format!("{}/{}", r.host_uuid, r.name));
        let docker = match docker {
            DockerView::Known(mut states) => {
                states.set_listed_at(at(10));
                DockerView::Known(states)
            }
            DockerView::Unknown => DockerView::Unknown,
        };
        let planned = plan_of(&deckies, &rows, &docker);
        for change in &planned.changes {
            if let ChangeKind::Update { state: Some(_), .. } = change.kind {
                let row = rows.iter().find(|r| r.host_uuid == HOST && r.name == change.name);
                let written = row.and_then(|r| written_at(r, &snapshot(&rows)));
                prop_assert!(written.is_some_and(|written| written < at(10)), "{:#?}", change);
            }
        }
    }
}
