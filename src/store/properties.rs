//! The planner's properties through the real SQL of a pass: an in-memory
//! SQLite database, the SQLite dialect, the transaction skeleton.

use proptest::prelude::*;

use super::{in_memory, Store};
use crate::core::plan::tests::{arb_decky, arb_docker, arb_row, unique_by_name, HOST};
use crate::core::{plan, Decky, DockerView, FleetRow, Plan};

fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(future)
}

/// One pass for `host` on `store`: read, plan, apply, commit.
async fn pass(store: &mut Store, deckies: &[Decky], docker: &DockerView, host: &str) -> Plan {
    let mut transaction = store.begin(host).await.expect("begin");
    let snapshot = transaction.snapshot().await.expect("rows");
    let planned = plan(deckies, &snapshot, docker, host).expect("a plan");
    transaction.apply(&planned).await.expect("apply");
    transaction.commit().await.expect("commit");
    planned
}

/// Every row of `hosts`, as stored.
async fn rows_of(store: &mut Store, hosts: &[&str]) -> Vec<FleetRow> {
    let mut rows = Vec::new();
    for host in hosts {
        let mut transaction = store.begin(host).await.expect("begin");
        rows.extend(transaction.snapshot().await.expect("rows").rows);
        transaction.commit().await.expect("end the transaction");
    }
    rows
}

proptest! {
    #[test]
    fn applying_a_plan_then_planning_again_plans_nothing(
        deckies in proptest::collection::vec(arb_decky(), 0..8),
        rows in proptest::collection::vec(arb_row(), 0..8),
        docker in arb_docker(),
    ) {
        let deckies = unique_by_name(deckies, |d| d.name.clone());
        let rows = unique_by_name(rows, |r| format!("{}/{}", r.host_uuid, r.name));
        let second = block_on(async {
            let mut store = in_memory(&rows).expect("store");
            pass(&mut store, &deckies, &docker, HOST).await;
            pass(&mut store, &deckies, &docker, HOST).await
        });
        prop_assert!(second.is_empty(), "second plan: {:#?}", second);
    }

    #[test]
    fn a_pass_never_touches_a_row_of_another_host(
        deckies in proptest::collection::vec(arb_decky(), 0..8),
        rows in proptest::collection::vec(arb_row(), 0..8),
        docker in arb_docker(),
    ) {
        let deckies = unique_by_name(deckies, |d| d.name.clone());
        let rows = unique_by_name(rows, |r| format!("{}/{}", r.host_uuid, r.name));
        let others = ["host-a", "host-b"];
        let (before, after) = block_on(async {
            let mut store = in_memory(&rows).expect("store");
            let before = rows_of(&mut store, &others).await;
            pass(&mut store, &deckies, &docker, HOST).await;
            (before, rows_of(&mut store, &others).await)
        });
        prop_assert_eq!(before, after);
    }

    #[test]
    fn rows_by_state_after_a_plan_are_the_rows_it_leaves(
        deckies in proptest::collection::vec(arb_decky(), 0..8),
        rows in proptest::collection::vec(arb_row(), 0..8),
        docker in arb_docker(),
    ) {
        let deckies = unique_by_name(deckies, |d| d.name.clone());
        let rows = unique_by_name(rows, |r| format!("{}/{}", r.host_uuid, r.name));
        let ours: Vec<FleetRow> = rows.iter().filter(|r| r.host_uuid == HOST).cloned().collect();
        let (planned, after) = block_on(async {
            let mut store = in_memory(&rows).expect("store");
            let planned = pass(&mut store, &deckies, &docker, HOST).await;
            (planned, rows_of(&mut store, &[HOST]).await)
        });
        let mut counted = std::collections::BTreeMap::new();
        for row in &after {
            *counted.entry(row.state.clone()).or_insert(0) += 1;
        }
        prop_assert_eq!(planned.rows_by_state(&ours), counted);
    }
}
