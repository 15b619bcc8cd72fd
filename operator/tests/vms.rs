//! libvirt Machines on the embedded control plane, the operator as its least-privilege
//! ServiceAccount, the Hypervisor on libvirt's test driver (its state lives in the operator's
//! connection): a Machine without interfaces gets a MAC, is placed, defined, given its volume
//! and powered on; `online: false` powers it off; a VM that fits nowhere, or whose domain name
//! is taken by a domain machinist did not create, says so; deleting a Machine removes its VM and
//! gives its room back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Fleet, start_operator, wait_for};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use machinist_crds::access::SYSTEM_NAMESPACE;
use machinist_crds::hypervisor::PlacementState;
use machinist_crds::machine::PowerState;
use machinist_crds::{Hypervisor, Machine};
use machinist_e2e::boot::{Lab, LabHypervisor};
use serde_json::json;

const WITHIN: Duration = Duration::from_secs(90);

fn vm(name: &str, memory_mib: i32) -> Machine {
    serde_json::from_value(json!({
        "apiVersion": "machinist.dev/v1alpha1",
        "kind": "Machine",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "provider": {"libvirt": {
                "hostSelector": {"site": "gra"}, "pool": "ssd", "diskGiB": 20, "memoryMiB": memory_mib,
                "vcpus": 2, "bridge": "br0", "shutdownTimeoutSeconds": 30
            }}
        }
    }))
    .unwrap()
}

fn condition(machine: &Machine, type_: &str) -> Option<(String, String)> {
    let c = machine.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone()))
}

fn named<'a>(all: &'a [Arc<Machine>], name: &str) -> Option<&'a Machine> {
    all.iter().map(AsRef::as_ref).find(|m| m.metadata.name.as_deref() == Some(name))
}

fn power(machine: Option<&Machine>) -> Option<PowerState> {
    machine?.status.as_ref()?.provider.as_ref()?.power_state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libvirt_machines_become_vms_that_follow_online_and_go_when_deleted() {
    let fleet = Fleet::start().await;
    let hypervisors: Api<Hypervisor> = Api::namespaced(fleet.client.clone(), SYSTEM_NAMESPACE);
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hv-a.xml");
    let hv: Hypervisor = serde_json::from_value(json!({
        "apiVersion": "machinist.dev/v1alpha1", "kind": "Hypervisor",
        "metadata": {"name": "hv-a", "namespace": SYSTEM_NAMESPACE, "labels": {"site": "gra"}},
        // 16 GiB less 2 GiB reserved, 2.5 GiB taken by the fixture's own domains: 11.5 GiB left.
        "spec": {"uri": format!("test://{fixture}"), "reservedMemoryMiB": 2048, "probeIntervalSeconds": 5}
    }))
    .unwrap();
    hypervisors.create(&PostParams::default(), &hv).await.unwrap();
    let machines = fleet.machines();
    machines.create(&PostParams::default(), &vm("vm-1", 4096)).await.unwrap();
    let (shutdown, task) = start_operator(&fleet.operator).await;

    // Given a MAC, placed, defined, its volume created, running.
    let seen =
        wait_for(&machines, WITHIN, "vm-1 running", |all| power(named(all, "vm-1")) == Some(PowerState::On)).await;
    let vm1 = named(&seen, "vm-1").unwrap();
    let mac = &vm1.spec.interfaces[0].mac;
    assert!(mac.starts_with("52:54:") && mac.len() == 17, "{mac}");
    assert_eq!(vm1.spec.interfaces[0].boot, Some(true));
    let provider = vm1.status.as_ref().unwrap().provider.clone().unwrap();
    assert_eq!(provider.hypervisor.as_deref(), Some("hv-a"));
    assert_eq!(provider.domain_name.as_deref(), Some("default_vm-1"));
    assert_eq!(provider.domain_uuid, vm1.metadata.uid);
    let volume = provider.volume.unwrap();
    assert_eq!((volume.pool.as_str(), volume.name.as_str(), volume.capacity_gib), ("ssd", "default_vm-1.qcow2", 20));
    assert_eq!(provider.console_log.as_deref(), Some("/var/log/libvirt/qemu/default_vm-1-serial.log"));
    assert_eq!(condition(vm1, "Placed"), Some(("True".into(), "Placed".into())));
    assert_eq!(condition(vm1, "VirtualMachine"), Some(("True".into(), "Running".into())));
    assert!(vm1.metadata.finalizers.as_ref().unwrap().contains(&"vms.machinist.dev".to_owned()));
    // Its disk cannot move to another pool (nor change size or format) once placed.
    let moved = json!({"spec": {"provider": {"libvirt": {"pool": "sata"}}}});
    let refused = machines.patch("vm-1", &PatchParams::default(), &Patch::Merge(&moved)).await.unwrap_err();
    assert!(refused.to_string().contains("pool cannot be changed"), "{refused}");

    // The Hypervisor counts it, created.
    let hvs = wait_for(&hypervisors, WITHIN, "vm-1 recorded on hv-a", |all| {
        all.iter()
            .any(|h| h.status.as_ref().is_some_and(|s| s.placements.iter().any(|p| p.state == PlacementState::Created)))
    })
    .await;
    let status = hvs[0].status.clone().unwrap();
    assert_eq!(status.placements.len(), 1);
    assert_eq!(status.placements[0].machine, "default/vm-1");
    assert_eq!(status.committed.map(|c| c.memory_mib), Some(2560 + 4096));

    // Too big for what is left (14336 − 6656 = 7680 MiB): it waits, saying why.
    machines.create(&PostParams::default(), &vm("vm-big", 8192)).await.unwrap();
    // Its domain name is taken by a domain the operator did not create.
    machines.create(&PostParams::default(), &vm("taken", 1024)).await.unwrap();
    let seen = wait_for(&machines, WITHIN, "vm-big refused, taken blocked", |all| {
        named(all, "vm-big").and_then(|m| condition(m, "Placed")).is_some_and(|c| c.1 == "NoCapacity")
            && named(all, "taken")
                .and_then(|m| condition(m, "VirtualMachine"))
                .is_some_and(|c| c.1 == "DomainNameTaken")
    })
    .await;
    let big = named(&seen, "vm-big").unwrap();
    let message = &big.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == "Placed").unwrap().message;
    assert!(message.contains("hv-a") && message.contains("8192"), "{message}");
    let taken = named(&seen, "taken").unwrap();
    let message =
        &taken.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == "VirtualMachine").unwrap().message;
    assert!(message.contains("did not create"), "{message}");
    assert_eq!(power(Some(taken)), Some(PowerState::Unknown));

    // online: false powers it off (the test driver's guests obey ACPI at once).
    let off = json!({"spec": {"online": false}});
    machines.patch("vm-1", &PatchParams::default(), &Patch::Merge(&off)).await.unwrap();
    let seen = wait_for(&machines, WITHIN, "vm-1 off", |all| power(named(all, "vm-1")) == Some(PowerState::Off)).await;
    assert_eq!(condition(named(&seen, "vm-1").unwrap(), "VirtualMachine"), Some(("False".into(), "Stopped".into())));
    let on = json!({"spec": {"online": true}});
    machines.patch("vm-1", &PatchParams::default(), &Patch::Merge(&on)).await.unwrap();
    wait_for(&machines, WITHIN, "vm-1 on again", |all| power(named(all, "vm-1")) == Some(PowerState::On)).await;

    // A reinstall (attempt 2) of a running VM that has not network-booted since it started:
    // the VM is reset into it, once.
    let reinstall = json!({"status": {
        "phase": "Provisioning",
        "lastBoot": {"startedTime": "2026-01-01T00:00:00Z"},
        "install": {
            "attempt": 2,
            "startedTime": "2026-01-02T00:00:00Z",
            "plan": {
                "role": {"name": "web"},
                "image": {"url": "http://boot.invalid/system.raw", "sha256": "0".repeat(64), "format": "raw"},
                "targetDisk": "/dev/vda"
            }
        }
    }});
    machines.patch_status("vm-1", &PatchParams::default(), &Patch::Merge(&reinstall)).await.unwrap();
    let cycled = |m: Option<&Machine>| m.and_then(|m| m.status.as_ref()?.provider.as_ref()?.cycled_attempt);
    wait_for(&machines, WITHIN, "vm-1 reset into attempt 2", |all| cycled(named(all, "vm-1")) == Some(2)).await;
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::default_namespaced(fleet.client.clone());
    let events = wait_for(&events, WITHIN, "a PowerCycled Event", |all| {
        all.iter().any(|e| e.reason.as_deref() == Some("PowerCycled"))
    })
    .await;
    let cycled_events: Vec<_> = events.iter().filter(|e| e.reason.as_deref() == Some("PowerCycled")).collect();
    assert_eq!(cycled_events.len(), 1, "{cycled_events:?}");
    assert_eq!(cycled_events[0].regarding.as_ref().and_then(|r| r.name.as_deref()), Some("vm-1"));

    // Deleted: the VM goes, then the Machine; the room comes back and vm-big fits.
    machines.delete("vm-1", &DeleteParams::default()).await.unwrap();
    let seen = wait_for(&machines, WITHIN, "vm-1 gone, vm-big running", |all| {
        named(all, "vm-1").is_none() && power(named(all, "vm-big")) == Some(PowerState::On)
    })
    .await;
    assert_eq!(
        named(&seen, "vm-big").unwrap().status.as_ref().unwrap().provider.as_ref().unwrap().hypervisor.as_deref(),
        Some("hv-a")
    );
    let hvs = wait_for(&hypervisors, WITHIN, "only vm-big and taken recorded", |all| {
        all[0].status.as_ref().is_some_and(|s| {
            let mut on: Vec<&str> = s.placements.iter().map(|p| p.machine.as_str()).collect();
            on.sort_unstable();
            on == ["default/taken", "default/vm-big"]
        })
    })
    .await;
    assert_eq!(hvs[0].status.as_ref().unwrap().committed.map(|c| c.memory_mib), Some(2560 + 8192 + 1024));

    // The blocked one is deleted without touching the domain it does not own.
    machines.delete("taken", &DeleteParams::default()).await.unwrap();
    machines.delete("vm-big", &DeleteParams::default()).await.unwrap();
    wait_for(&machines, WITHIN, "all gone", |all| all.is_empty()).await;
    let hvs = wait_for(&hypervisors, WITHIN, "no placements", |all| {
        all[0].status.as_ref().is_some_and(|s| s.placements.is_empty())
    })
    .await;
    // The fixture's two domains are still there, untouched.
    assert_eq!(hvs[0].status.as_ref().unwrap().foreign.map(|f| f.domains), Some(2));

    shutdown.cancel();
    task.await.unwrap().unwrap();
}

/// `replicateDefinition`: the domain is defined on every other Hypervisor the selector picks
/// (never started there), and undefined there too when the Machine goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicated_definition_is_on_every_selected_hypervisor() {
    let fleet = Fleet::start().await;
    let hypervisors: Api<Hypervisor> = Api::namespaced(fleet.client.clone(), SYSTEM_NAMESPACE);
    // hv-far is at another site: not selected.
    for (name, fixture, site) in
        [("hv-a", "hv-a.xml", "gra"), ("hv-b", "hv-b.xml", "gra"), ("hv-far", "hv-c.xml", "rbx")]
    {
        let uri = format!("test://{}/tests/fixtures/{fixture}", env!("CARGO_MANIFEST_DIR"));
        let hv: Hypervisor = serde_json::from_value(json!({
            "apiVersion": "machinist.dev/v1alpha1", "kind": "Hypervisor",
            "metadata": {"name": name, "namespace": SYSTEM_NAMESPACE, "labels": {"site": site}},
            "spec": {"uri": uri, "reservedMemoryMiB": 0, "probeIntervalSeconds": 5}
        }))
        .unwrap();
        hypervisors.create(&PostParams::default(), &hv).await.unwrap();
    }
    let machines = fleet.machines();
    let (shutdown, task) = start_operator(&fleet.operator).await;
    // Placement uses what the probes have seen: all three first.
    wait_for(&hypervisors, WITHIN, "all probed", |all| {
        all.len() == 3 && all.iter().all(|h| h.status.as_ref().is_some_and(|s| s.capacity.is_some()))
    })
    .await;
    let mut replicated = vm("replicated", 2048);
    replicated.spec.provider.libvirt.as_mut().unwrap().replicate_definition = true;
    machines.create(&PostParams::default(), &replicated).await.unwrap();

    let seen = wait_for(&machines, WITHIN, "replicated running and in sync", |all| {
        let m = named(all, "replicated");
        power(m) == Some(PowerState::On) && m.and_then(|m| condition(m, "Replicated")).is_some_and(|c| c.0 == "True")
    })
    .await;
    let machine = named(&seen, "replicated").unwrap();
    let provider = machine.status.as_ref().unwrap().provider.clone().unwrap();
    // hv-a has the most memory left (16384 − 2560 against 8192): the primary; hv-b the copy.
    assert_eq!(provider.hypervisor.as_deref(), Some("hv-a"));
    assert_eq!(provider.replicas, ["hv-b"]);
    let message =
        &machine.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == "Replicated").unwrap().message;
    assert_eq!(message, "defined on hv-b");
    // Only the primary counts the VM.
    let hvs = wait_for(&hypervisors, WITHIN, "placement on hv-a only", |all| {
        all.iter().all(|h| h.status.as_ref().is_some_and(|s| s.placement_count.is_some()))
            && all.iter().any(|h| h.status.as_ref().is_some_and(|s| !s.placements.is_empty()))
    })
    .await;
    let placed: Vec<&str> = hvs
        .iter()
        .filter(|h| h.status.as_ref().is_some_and(|s| !s.placements.is_empty()))
        .filter_map(|h| h.metadata.name.as_deref())
        .collect();
    assert_eq!(placed, ["hv-a"]);

    machines.delete("replicated", &DeleteParams::default()).await.unwrap();
    wait_for(&machines, WITHIN, "replicated gone", |all| all.is_empty()).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

/// Two real libvirt daemons (private ones, in a lab): a VM goes to the one with more memory
/// left; when that daemon goes away its Hypervisor and its VM say so, and the next VM goes to the
/// other. The VMs stay off (defined only: no CPU spent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_hypervisors_place_by_memory_and_one_going_away_is_seen() {
    let test = "real_hypervisors_place_by_memory_and_one_going_away_is_seen";
    if !machinist_e2e::boot::need_boot_lab(test, &["libvirtd", "virtlogd", "virsh", "unshare"]).unwrap() {
        return;
    }
    let lab = Lab::new(std::net::Ipv4Addr::new(192, 168, 131, 1)).unwrap();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let real_a = LabHypervisor::start(&lab, dir_a.path()).unwrap();
    let real_b = LabHypervisor::start(&lab, dir_b.path()).unwrap();
    let fleet = Fleet::start().await;
    let hypervisors: Api<Hypervisor> = Api::namespaced(fleet.client.clone(), SYSTEM_NAMESPACE);
    // Both see this host's memory; real-a keeps 8 GiB more for itself, so real-b has more left.
    for (name, hypervisor, reserved) in [("real-a", &real_a, 8192), ("real-b", &real_b, 0)] {
        let hv: Hypervisor = serde_json::from_value(json!({
            "apiVersion": "machinist.dev/v1alpha1", "kind": "Hypervisor",
            "metadata": {"name": name, "namespace": SYSTEM_NAMESPACE, "labels": {"site": "lab"}},
            "spec": {"uri": hypervisor.uri(), "accelerator": "TCG", "reservedMemoryMiB": reserved,
                     "consoleLogDir": hypervisor.console_log_dir(), "probeIntervalSeconds": 5}
        }))
        .unwrap();
        hypervisors.create(&PostParams::default(), &hv).await.unwrap();
    }
    let machine = |name: &str| -> Machine {
        serde_json::from_value(json!({
            "apiVersion": "machinist.dev/v1alpha1", "kind": "Machine",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"online": false, "provider": {"libvirt": {
                "hostSelector": {"site": "lab"}, "pool": machinist_e2e::boot::POOL, "diskGiB": 1,
                "diskFormat": "raw", "memoryMiB": 512, "vcpus": 1, "bridge": "br0"}}}
        }))
        .unwrap()
    };
    let machines = fleet.machines();
    let (shutdown, task) = start_operator(&fleet.operator).await;
    // Placement uses what the probes have seen: both first.
    wait_for(&hypervisors, WITHIN, "both daemons probed", |all| {
        all.len() == 2
            && all.iter().all(|h| {
                h.status
                    .as_ref()
                    .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Reachable" && c.status == "True"))
            })
    })
    .await;
    machines.create(&PostParams::default(), &machine("m1")).await.unwrap();
    let on = |m: Option<&Machine>| m?.status.as_ref()?.provider.as_ref()?.hypervisor.clone();
    let seen =
        wait_for(&machines, WITHIN, "m1 defined and off", |all| power(named(all, "m1")) == Some(PowerState::Off)).await;
    assert_eq!(on(named(&seen, "m1")).as_deref(), Some("real-b"));
    assert_eq!(real_b.virsh(&["list", "--all", "--name"]).unwrap().trim(), "default_m1");
    assert_eq!(real_a.virsh(&["list", "--all", "--name"]).unwrap().trim(), "");
    assert!(real_b.virsh(&["vol-list", machinist_e2e::boot::POOL]).unwrap().contains("default_m1.img"));

    // real-b's daemon goes away.
    drop(real_b);
    wait_for(&hypervisors, WITHIN, "real-b unreachable", |all| {
        all.iter().any(|h| {
            h.metadata.name.as_deref() == Some("real-b")
                && h.status
                    .as_ref()
                    .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Reachable" && c.status == "False"))
        })
    })
    .await;
    let seen = wait_for(&machines, WITHIN, "m1 says its host is unreachable", |all| {
        named(all, "m1").and_then(|m| condition(m, "VirtualMachine")).is_some_and(|c| c.1 == "HypervisorUnreachable")
    })
    .await;
    assert_eq!(power(named(&seen, "m1")), Some(PowerState::Unknown));

    // The next VM goes to the host that is left.
    machines.create(&PostParams::default(), &machine("m2")).await.unwrap();
    let seen = wait_for(&machines, WITHIN, "m2 defined", |all| power(named(all, "m2")) == Some(PowerState::Off)).await;
    assert_eq!(on(named(&seen, "m2")).as_deref(), Some("real-a"));
    assert_eq!(real_a.virsh(&["list", "--all", "--name"]).unwrap().trim(), "default_m2");
    machines.delete("m2", &DeleteParams::default()).await.unwrap();
    wait_for(&machines, WITHIN, "m2 gone", |all| named(all, "m2").is_none()).await;
    assert_eq!(real_a.virsh(&["list", "--all", "--name"]).unwrap().trim(), "");

    shutdown.cancel();
    task.await.unwrap().unwrap();
}
