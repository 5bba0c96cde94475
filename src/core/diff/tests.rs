//! The diff of every kind of change, and its agreement with the plan: an
//! update's diff names exactly the columns it rewrites, each old value
//! differing in meaning from the new one.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::core::plan::tests::{
    arb_decky, arb_docker, arb_row, decky, row_for, unique_by_name, HOST,
};
use crate::core::{plan, ContainerStates, DockerView, FleetRow, Snapshot, StoreRules};

fn plan_of(
    desired: &[crate::core::Decky],
    rows: &[FleetRow],
    docker: &DockerView,
) -> crate::core::Plan {
    let snapshot = Snapshot {
        rows: rows.to_vec(),
        read_at: chrono::NaiveDateTime::MIN,
        store: StoreRules::default(),
    };
    plan(desired, &snapshot, docker, HOST).expect("a plan")
}

fn running(names: &[&str]) -> DockerView {
    let mut states = ContainerStates::default();
    for name in names {
        states.insert(*name, "running");
    }
    DockerView::Known(states)
}

fn fields(diff: &[FieldDiff]) -> Vec<(&str, &Value, &Value)> {
    diff.iter().map(|d| (d.field, &d.old, &d.new)).collect()
}

#[test]
fn an_update_shows_each_changed_column_old_and_new() {
    let d = decky("d1", &["ssh", "ftp"]);
    let mut row = row_for(&d, "failed");
    row.decky_ip = Some("10.9.9.9".to_owned());
    row.services = r#"["ssh","telnet"]"#.to_owned();
    let plan = plan_of(
        std::slice::from_ref(&d),
        &[row],
        &running(&["d1-ssh", "d1-ftp"]),
    );
    let diff = plan.changes[0].diff();
    assert_eq!(
        fields(&diff),
        [
            ("state", &json!("failed"), &json!("running")),
            (
                "services",
                &json!(["ssh", "telnet"]),
                &json!(["ssh", "ftp"])
            ),
            ("decky_ip", &json!("10.9.9.9"), &json!("10.0.0.2")),
        ]
    );
}

#[test]
fn a_config_that_is_not_json_or_absent_is_shown_as_it_was() {
    let d = decky("d1", &["ssh"]);
    let mut garbled = row_for(&d, "running");
    garbled.decky_config = Some("{truncated".to_owned());
    let mut absent = row_for(&decky("d2", &["ssh"]), "running");
    absent.decky_config = None;
    absent.decky_ip = None;
    let plan = plan_of(
        &[d.clone(), decky("d2", &["ssh"])],
        &[garbled, absent],
        &DockerView::Unknown,
    );
    let config: Value = serde_json::from_str(&d.config_json).expect("json");
    assert_eq!(
        fields(&plan.changes[0].diff()),
        [("decky_config", &json!("{truncated"), &config)]
    );
    let diff = plan.changes[1].diff();
    assert_eq!(diff[0].field, "decky_ip");
    assert_eq!(
        (&diff[0].old, &diff[0].new),
        (&Value::Null, &json!("10.0.0.2"))
    );
    assert_eq!(
        (diff[1].field, &diff[1].old),
        ("decky_config", &Value::Null)
    );
}

#[test]
fn an_insert_is_all_new_and_a_deletion_all_old() {
    let new = decky("new", &["ssh"]);
    let gone = decky("gone", &["ftp"]);
    let plan = plan_of(
        std::slice::from_ref(&new),
        &[row_for(&gone, "degraded")],
        &DockerView::Unknown,
    );
    let config =
        |d: &crate::core::Decky| -> Value { serde_json::from_str(&d.config_json).expect("json") };
    assert_eq!(
        fields(&plan.changes[0].diff()),
        [
            ("state", &Value::Null, &json!("running")),
            ("services", &Value::Null, &json!(["ssh"])),
            ("decky_ip", &Value::Null, &json!("10.0.0.3")),
            ("decky_config", &Value::Null, &config(&new)),
        ]
    );
    assert_eq!(
        fields(&plan.changes[1].diff()),
        [
            ("state", &json!("degraded"), &Value::Null),
            ("services", &json!(["ftp"]), &Value::Null),
            ("decky_ip", &json!("10.0.0.4"), &Value::Null),
            ("decky_config", &config(&gone), &Value::Null),
        ]
    );
}

#[test]
fn changed_keys_go_down_to_the_leaves_by_meaning() {
    let old = json!({"name": "d", "hostname": "a", "last_mutated": 5,
                     "service_config": {"ssh": {"port": 22, "banner": "x"}}, "gone": 1});
    let new = json!({"name": "d", "hostname": "b", "last_mutated": 5.0,
                     "service_config": {"ssh": {"port": 2222, "banner": "x"}}, "added": [1]});
    let keys = changed_keys(&old, &new);
    let shown: Vec<(String, Option<&Value>, Option<&Value>)> = keys
        .iter()
        .map(|k| (k.path.join("."), k.old, k.new))
        .collect();
    assert_eq!(
        shown,
        [
            ("hostname".to_owned(), Some(&json!("a")), Some(&json!("b"))),
            (
                "service_config.ssh.port".to_owned(),
                Some(&json!(22)),
                Some(&json!(2222))
            ),
            ("added".to_owned(), None, Some(&json!([1]))),
            ("gone".to_owned(), Some(&json!(1)), None),
        ]
    );
    let garbled = json!("{truncated");
    let whole = changed_keys(&garbled, &new);
    assert_eq!(whole.len(), 1);
    assert!(whole[0].path.is_empty());
    assert!(changed_keys(&old, &old).is_empty());
}

#[test]
fn services_are_kept_added_and_removed_by_name() {
    let (old, new) = (json!(["ssh", "http"]), json!(["http", "ftp"]));
    let delta = services_delta(&old, &new).expect("lists");
    assert_eq!(delta.kept, ["http"]);
    assert_eq!(delta.added, ["ftp"]);
    assert_eq!(delta.removed, ["ssh"]);
    assert_eq!(services_delta(&json!("not a list"), &json!(["ssh"])), None);
    assert_eq!(services_delta(&json!([1]), &json!(["ssh"])), None);
}

proptest! {
    #[test]
    fn an_updates_diff_is_its_changed_fields_each_a_real_difference(
        deckies in proptest::collection::vec(arb_decky(), 0..8),
        rows in proptest::collection::vec(arb_row(), 0..8),
        docker in arb_docker(),
    ) {
        let deckies = unique_by_name(deckies, |d| d.name.clone());
        let rows: Vec<FleetRow> = rows.into_iter().filter(|row| row.host_uuid == HOST).collect();
        let rows = unique_by_name(rows, |r| r.name.clone());
        let planned = plan_of(&deckies, &rows, &docker);
        for change in &planned.changes {
            let diff = change.diff();
            match change.action() {
                crate::core::Action::Updated => {
                    let named: Vec<&str> = diff.iter().map(|d| d.field).collect();
                    prop_assert_eq!(named, change.changed_fields());
                }
                _ => prop_assert_eq!(diff.len(), 4),
            }
            for field in &diff {
                prop_assert!(!equivalent(&field.old, &field.new), "{:?}", field);
            }
        }
    }
}
