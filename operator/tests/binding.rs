#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic
//! Binding under load on the embedded control plane: hundreds of machines report at once
//! through the boot services' endpoint (the agent's own client), the operator binds and
//! allocates. `maxMachines` is never exceeded, no CMDB entry is given twice, and an exhausted
//! pool says so and proceeds when entries come back.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use common::{Fleet, condition, qemu_items, start_operator, wait_for};
use kube::Api;
use machinist_crds::machine::MachinePhase;
use machinist_crds::{Cmdb, HardwareProfile, Machine};
use serde_json::json;

const WITHIN: Duration = Duration::from_secs(240);

fn phase(m: &Machine) -> Option<MachinePhase> {
    m.status.as_ref().and_then(|s| s.phase)
}

fn profile_of(m: &Machine) -> Option<&str> {
    m.status.as_ref().and_then(|s| s.profile.as_deref())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_reports_at_once_fill_a_fifty_machine_profile_exactly() {
    let fleet = Fleet::start().await;
    let (shutdown, operator) = start_operator(&fleet.operator).await;
    fleet.apply_profile("small", 1, Some(50), json!([["system", "product", "vendor", "QEMU"]]), None).await;
    fleet.apply_profile("any", 2, None, json!([]), None).await;
    let names = fleet.create_machines("m", 0x100, 200).await;
    fleet.report_all(&names, &qemu_items()).await;

    let machines = wait_for(&fleet.machines(), WITHIN, "200 machines Allocated", |ms: &[Arc<Machine>]| {
        ms.len() == 200 && ms.iter().all(|m| phase(m) == Some(MachinePhase::Allocated))
    })
    .await;
    let mut per_profile: BTreeMap<&str, usize> = BTreeMap::new();
    for m in &machines {
        *per_profile.entry(profile_of(m).unwrap()).or_default() += 1;
        assert_eq!(condition(m, "Allocated").map(|c| c.reason.as_str()), Some("NoCmdb"));
        let vendor_var = m.status.as_ref().unwrap().variables.len();
        assert_eq!(vendor_var, 0, "these rules capture nothing");
    }
    assert_eq!(per_profile, BTreeMap::from([("any", 150), ("small", 50)]));

    // The profiles' own lists agree with the machines, and say the small one is full.
    let profiles: Api<HardwareProfile> = Api::default_namespaced(fleet.client.clone());
    let small = profiles.get("small").await.unwrap();
    let status = small.status.unwrap();
    assert_eq!(status.bound_count, 50);
    let bound: BTreeSet<String> = status.bound_machines.into_iter().collect();
    let expected: BTreeSet<String> =
        machines.iter().filter(|m| profile_of(m) == Some("small")).map(|m| m.metadata.name.clone().unwrap()).collect();
    assert_eq!(bound, expected);
    assert!(status.conditions.iter().any(|c| c.type_ == "Full" && c.status == "True"));
    assert_eq!(profiles.get("any").await.unwrap().status.unwrap().bound_count, 150);
    // Those that went to the fallback say why the first profile passed them over.
    let passed_over = machines.iter().find(|m| profile_of(m) == Some("any")).unwrap();
    let mismatches = &passed_over.status.as_ref().unwrap().profile_mismatches;
    assert!(mismatches.iter().any(|m| m.profile == "small" && m.reason.contains("maxMachines")), "{mismatches:?}");

    shutdown.cancel();
    operator.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_exhausted_cmdb_holds_machines_until_entries_come_back() {
    let fleet = Fleet::start().await;
    let (shutdown, operator) = start_operator(&fleet.operator).await;
    fleet.apply_cmdb("pool", 1, 100).await;
    fleet.apply_profile("vm", 1, None, json!([["disk", "$disk", "size", "gt(1)"]]), Some("pool")).await;
    let names = fleet.create_machines("m", 0x200, 150).await;
    fleet.report_all(&names, &qemu_items()).await;

    let settled = |ms: &[Arc<Machine>]| {
        let allocated = ms.iter().filter(|m| phase(m) == Some(MachinePhase::Allocated)).count();
        let waiting = ms
            .iter()
            .filter(|m| phase(m) == Some(MachinePhase::Matched))
            .filter(|m| condition(m, "Allocated").is_some_and(|c| c.reason == "CmdbExhausted"))
            .count();
        (allocated, waiting)
    };
    let machines =
        wait_for(&fleet.machines(), WITHIN, "100 allocated, 50 waiting", |ms| settled(ms) == (100, 50)).await;
    let entries: Vec<i32> =
        machines.iter().filter_map(|m| m.status.as_ref().unwrap().allocation.as_ref().map(|a| a.entry)).collect();
    assert_eq!(entries.iter().collect::<BTreeSet<_>>().len(), 100, "no entry given twice");
    let ips: BTreeSet<&str> = machines.iter().filter_map(|m| m.status.as_ref().unwrap().ip.as_deref()).collect();
    assert_eq!(ips.len(), 100);
    let allocated = machines.iter().find(|m| phase(m) == Some(MachinePhase::Allocated)).unwrap();
    let variables = &allocated.status.as_ref().unwrap().variables;
    assert_eq!(
        variables.get("netmask").map(String::as_str),
        Some("255.255.0.0"),
        "the Cmdb's network joins the variables"
    );
    assert!(variables.contains_key("disk"), "the rules' captures stay: {variables:?}");
    let waiting = machines.iter().find(|m| phase(m) == Some(MachinePhase::Matched)).unwrap();
    let message = &condition(waiting, "Allocated").unwrap().message;
    assert!(message.contains("pool") && message.contains("exhausted"), "{message}");

    let cmdbs: Api<Cmdb> = Api::default_namespaced(fleet.client.clone());
    let status = cmdbs.get("pool").await.unwrap().status.unwrap();
    assert_eq!((status.total, status.free, status.allocations.len()), (100, 0, 100));
    assert!(status.conditions.iter().any(|c| c.type_ == "Exhausted" && c.status == "True"));

    // Ten allocated machines go: ten waiting ones take their entries.
    let leaving: Vec<String> = machines
        .iter()
        .filter(|m| phase(m) == Some(MachinePhase::Allocated))
        .take(10)
        .map(|m| m.metadata.name.clone().unwrap())
        .collect();
    fleet.delete_machines(&leaving).await;
    let machines = wait_for(&fleet.machines(), WITHIN, "10 waiting machines allocated", |ms| {
        ms.len() == 140 && settled(ms) == (100, 40)
    })
    .await;
    let holders: BTreeSet<String> = machines
        .iter()
        .filter(|m| m.status.as_ref().unwrap().allocation.is_some())
        .map(|m| m.metadata.name.clone().unwrap())
        .collect();
    let status = cmdbs.get("pool").await.unwrap().status.unwrap();
    let recorded: BTreeSet<String> = status.allocations.iter().map(|r| r.machine.clone()).collect();
    assert_eq!(recorded, holders, "the Cmdb's allocations are exactly the machines holding entries");
    assert!(leaving.iter().all(|m| !recorded.contains(m)));

    shutdown.cancel();
    operator.await.unwrap().unwrap();
}
