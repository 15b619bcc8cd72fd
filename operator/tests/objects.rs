#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic
//! What the operator says about objects that are wrong or still in use, on the embedded
//! control plane: invalid rules, duplicate addresses and broken templates get a condition
//! (and an Event) and are passed over; a pinned profile that does not match fails the machine
//! until its spec changes; deleting a profile or Cmdb still in use is held with a condition.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Fleet, condition, qemu_items, start_operator, wait_for};
use k8s_openapi::api::core::v1::Event;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use machinist_crds::machine::MachinePhase;
use machinist_crds::{Cmdb, HardwareProfile, Machine, Role};
use machinist_operator::conditions::find as cond;
use serde_json::json;

const WITHIN: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalid_objects_get_conditions_and_are_passed_over() {
    let fleet = Fleet::start().await;
    let (shutdown, operator) = start_operator(&fleet.operator).await;
    fleet.apply_profile("broken", 1, None, json!([["disk", "$disk", "size", "gtt(4)"]]), None).await;
    fleet.apply_profile("fine", 2, None, json!([["disk", "$disk", "size", "gt(1)"]]), None).await;
    let cmdb: Cmdb = serde_json::from_value(json!({
        "apiVersion": "machinist.dev/v1alpha1", "kind": "Cmdb", "metadata": {"name": "dups"},
        "spec": {"entries": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "10.0.0.1"}]},
    }))
    .unwrap();
    Api::<Cmdb>::default_namespaced(fleet.client.clone()).create(&PostParams::default(), &cmdb).await.unwrap();
    let role: Role = serde_json::from_value(json!({
        "apiVersion": "machinist.dev/v1alpha1", "kind": "Role", "metadata": {"name": "web"},
        "spec": {"version": "1", "install": {"method": "Image", "image": {"url": "http://x/i.raw", "sha256": "a".repeat(64), "format": "raw"}},
                 "cloudInit": {"userData": "#cloud-config\nhostname: {{ hostname \n"}},
    }))
    .unwrap();
    Api::<Role>::default_namespaced(fleet.client.clone()).create(&PostParams::default(), &role).await.unwrap();

    let profiles = wait_for(
        &Api::<HardwareProfile>::default_namespaced(fleet.client.clone()),
        WITHIN,
        "profile conditions",
        |ps: &[Arc<HardwareProfile>]| {
            ps.iter().all(|p| p.status.as_ref().is_some_and(|s| cond(&s.conditions, "Valid").is_some()))
        },
    )
    .await;
    let broken = profiles.iter().find(|p| p.metadata.name.as_deref() == Some("broken")).unwrap();
    let valid = cond(&broken.status.as_ref().unwrap().conditions, "Valid").unwrap();
    assert_eq!((valid.status.as_str(), valid.reason.as_str()), ("False", "InvalidRules"));
    assert!(valid.message.contains("gtt"), "{}", valid.message);

    let cmdbs = wait_for(
        &Api::<Cmdb>::default_namespaced(fleet.client.clone()),
        WITHIN,
        "Cmdb conditions",
        |cs: &[Arc<Cmdb>]| {
            cs.iter().all(|c| c.status.as_ref().is_some_and(|s| cond(&s.conditions, "Duplicates").is_some()))
        },
    )
    .await;
    let dups = cond(&cmdbs[0].status.as_ref().unwrap().conditions, "Duplicates").unwrap().clone();
    assert_eq!(dups.status, "True");
    assert!(dups.message.contains("10.0.0.1 in entries 0, 2"), "{}", dups.message);

    let roles = wait_for(
        &Api::<Role>::default_namespaced(fleet.client.clone()),
        WITHIN,
        "Role condition",
        |rs: &[Arc<Role>]| rs.iter().all(|r| r.status.as_ref().is_some_and(|s| cond(&s.conditions, "Valid").is_some())),
    )
    .await;
    let role_valid = cond(&roles[0].status.as_ref().unwrap().conditions, "Valid").unwrap().clone();
    assert_eq!((role_valid.status.as_str(), role_valid.reason.as_str()), ("False", "InvalidRole"));
    assert!(role_valid.message.contains("spec.cloudInit.userData"), "{}", role_valid.message);

    // A machine skips the broken profile and binds to the valid one.
    let names = fleet.create_machines("m", 0x600, 1).await;
    fleet.report_all(&names, &qemu_items()).await;
    let machines = wait_for(&fleet.machines(), WITHIN, "bound to the valid profile", |ms: &[Arc<Machine>]| {
        ms.iter().all(|m| m.status.as_ref().is_some_and(|s| s.phase == Some(MachinePhase::Allocated)))
    })
    .await;
    assert_eq!(machines[0].status.as_ref().unwrap().profile.as_deref(), Some("fine"));

    // The invalid objects each got one Warning Event (Events follow the status write).
    let events: Api<Event> = Api::default_namespaced(fleet.client.clone());
    let wanted = ["InvalidRules", "DuplicateAddresses", "InvalidRole", "Matched", "Allocated"];
    wait_for(&events, WITHIN, "the Events", |es: &[Arc<Event>]| {
        wanted.iter().all(|w| es.iter().any(|e| e.reason.as_deref() == Some(*w)))
    })
    .await;
    let reasons: Vec<String> =
        events.list(&ListParams::default()).await.unwrap().items.into_iter().filter_map(|e| e.reason).collect();
    for reason in ["InvalidRules", "DuplicateAddresses", "InvalidRole", "Matched", "Allocated"] {
        assert_eq!(reasons.iter().filter(|r| r.as_str() == reason).count(), 1, "{reason} in {reasons:?}");
    }

    shutdown.cancel();
    operator.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pinned_mismatch_fails_until_the_spec_changes_and_deletions_in_use_are_held() {
    let fleet = Fleet::start().await;
    let (shutdown, operator) = start_operator(&fleet.operator).await;
    fleet.apply_cmdb("pool", 1, 5).await;
    fleet.apply_profile("hp", 1, None, json!([["system", "product", "vendor", "Hewlett-Packard"]]), Some("pool")).await;
    fleet.apply_profile("vm", 2, None, json!([["system", "product", "vendor", "QEMU"]]), Some("pool")).await;
    let names = fleet.create_machines("m", 0x700, 1).await;
    let machines = fleet.machines();
    let pin = |profile: &str| json!({"spec": {"profile": profile}});
    machines.patch(&names[0], &PatchParams::default(), &Patch::Merge(pin("hp"))).await.unwrap();
    fleet.report_all(&names, &qemu_items()).await;

    let failed = wait_for(&machines, WITHIN, "failed on the pinned profile", |ms: &[Arc<Machine>]| {
        ms[0].status.as_ref().is_some_and(|s| s.phase == Some(MachinePhase::Failed))
    })
    .await;
    let failure = failed[0].status.as_ref().unwrap().failure.clone().unwrap();
    assert_eq!(failure.reason, "ProfileMismatch");
    assert!(failure.message.contains("hp"), "{}", failure.message);

    // Pinning a profile that matches: bound and allocated, without a new report.
    machines.patch(&names[0], &PatchParams::default(), &Patch::Merge(pin("vm"))).await.unwrap();
    let bound = wait_for(&machines, WITHIN, "allocated after the spec changed", |ms: &[Arc<Machine>]| {
        ms[0].status.as_ref().is_some_and(|s| s.phase == Some(MachinePhase::Allocated))
    })
    .await;
    assert_eq!(bound[0].status.as_ref().unwrap().profile.as_deref(), Some("vm"));
    assert!(bound[0].status.as_ref().unwrap().failure.is_none());
    assert_eq!(condition(&bound[0], "Matched").map(|c| c.status.as_str()), Some("True"));

    // Deleting the profile and the Cmdb while the machine holds them: held, with a condition.
    let profiles: Api<HardwareProfile> = Api::default_namespaced(fleet.client.clone());
    let cmdbs: Api<Cmdb> = Api::default_namespaced(fleet.client.clone());
    profiles.delete("vm", &DeleteParams::default()).await.unwrap();
    cmdbs.delete("pool", &DeleteParams::default()).await.unwrap();
    let held = wait_for(&profiles, WITHIN, "profile deletion held", |ps: &[Arc<HardwareProfile>]| {
        ps.iter().any(|p| {
            p.status.as_ref().is_some_and(|s| cond(&s.conditions, "Deleting").is_some_and(|c| c.reason == "InUse"))
        })
    })
    .await;
    let vm = held.iter().find(|p| p.metadata.name.as_deref() == Some("vm")).unwrap();
    let message = &cond(&vm.status.as_ref().unwrap().conditions, "Deleting").unwrap().message;
    assert!(message.contains(&names[0]), "{message}");
    wait_for(&cmdbs, WITHIN, "Cmdb deletion held", |cs: &[Arc<Cmdb>]| {
        cs.iter().any(|c| {
            c.status.as_ref().is_some_and(|s| cond(&s.conditions, "Deleting").is_some_and(|c| c.reason == "InUse"))
        })
    })
    .await;

    // The machine goes: its slot and entry come back, and both deletions complete.
    fleet.delete_machines(&names).await;
    wait_for(&machines, WITHIN, "machine gone", |ms: &[Arc<Machine>]| ms.is_empty()).await;
    wait_for(&profiles, WITHIN, "profile vm gone", |ps: &[Arc<HardwareProfile>]| {
        ps.iter().all(|p| p.metadata.name.as_deref() != Some("vm"))
    })
    .await;
    wait_for(&cmdbs, WITHIN, "Cmdb gone", |cs: &[Arc<Cmdb>]| cs.is_empty()).await;

    shutdown.cancel();
    operator.await.unwrap().unwrap();
}
