//! Hypervisors on the embedded control plane, the operator running as its least-privilege
//! ServiceAccount: each one is probed through libvirt (its test driver, with a node file) and
//! its status shows capacity, pools, accelerator and reachability; a host that cannot be
//! reached says so.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic

mod common;

use std::time::Duration;

use common::{Fleet, start_operator, wait_for};
use kube::Api;
use kube::api::PostParams;
use machinist_crds::Hypervisor;
use machinist_crds::access::SYSTEM_NAMESPACE;
use machinist_crds::hypervisor::{EffectiveAccelerator, HostCapacity, Resources};
use serde_json::json;

const WITHIN: Duration = Duration::from_secs(60);

fn hypervisor(name: &str, uri: &str) -> Hypervisor {
    serde_json::from_value(json!({
        "apiVersion": "machinist.dev/v1alpha1",
        "kind": "Hypervisor",
        "metadata": {"name": name, "namespace": SYSTEM_NAMESPACE, "labels": {"site": "gra"}},
        "spec": {"uri": uri, "reservedMemoryMiB": 2048, "probeIntervalSeconds": 5}
    }))
    .unwrap()
}

fn reachable(hypervisor: &Hypervisor) -> Option<(String, String)> {
    let condition = hypervisor.status.as_ref()?.conditions.iter().find(|c| c.type_ == "Reachable")?;
    Some((condition.status.clone(), condition.reason.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hypervisors_are_probed_and_unreachable_ones_say_so() {
    let fleet = Fleet::start().await;
    let hypervisors: Api<Hypervisor> = Api::namespaced(fleet.client.clone(), SYSTEM_NAMESPACE);
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hv-a.xml");
    hypervisors.create(&PostParams::default(), &hypervisor("hv-a", &format!("test://{fixture}"))).await.unwrap();
    let gone = "qemu+unix:///system?socket=/nonexistent/libvirt-sock";
    hypervisors.create(&PostParams::default(), &hypervisor("hv-gone", gone)).await.unwrap();
    let (shutdown, task) = start_operator(&fleet.operator).await;

    let seen = wait_for(&hypervisors, WITHIN, "both hypervisors probed", |all| {
        all.len() == 2 && all.iter().all(|h| reachable(h).is_some())
    })
    .await;
    let hv_a = seen.iter().find(|h| h.metadata.name.as_deref() == Some("hv-a")).unwrap();
    let status = hv_a.status.clone().unwrap();
    assert_eq!(reachable(hv_a), Some(("True".into(), "Connected".into())), "{status:?}");
    assert_eq!(status.capacity, Some(HostCapacity { memory_mib: 16384, cpus: 8 }));
    // 16384 − 2048 reserved at 100%; 8 CPUs at 400%.
    assert_eq!(status.allocatable, Some(Resources { memory_mib: 14336, vcpus: 32 }));
    // The fixture's two domains the operator did not create.
    assert_eq!(status.committed, Some(Resources { memory_mib: 2560, vcpus: 3 }));
    assert_eq!(status.foreign.map(|f| f.domains), Some(2));
    assert_eq!(status.accelerator, Some(EffectiveAccelerator::Tcg), "the test driver offers no KVM");
    assert_eq!(status.pools.iter().map(|p| (p.name.as_str(), p.active)).collect::<Vec<_>>(), [("ssd", true)]);
    assert!(status.libvirt_version.is_some_and(|v| v.starts_with(char::is_numeric)));
    assert_eq!(status.placement_count, Some(0));

    let hv_gone = seen.iter().find(|h| h.metadata.name.as_deref() == Some("hv-gone")).unwrap();
    assert_eq!(reachable(hv_gone).map(|r| r.1), Some("ConnectFailed".into()));
    let message = &hv_gone.status.as_ref().unwrap().conditions[0].message;
    assert!(message.contains("/nonexistent/libvirt-sock"), "{message}");
    assert_eq!(hv_gone.status.as_ref().unwrap().capacity, None);

    // Probes go on at the interval: the probe time moves.
    let first = hv_a.status.as_ref().unwrap().last_probe_time.clone().unwrap();
    wait_for(&hypervisors, WITHIN, "hv-a probed again", |all| {
        all.iter().any(|h| {
            h.metadata.name.as_deref() == Some("hv-a")
                && h.status.as_ref().and_then(|s| s.last_probe_time.clone()).is_some_and(|t| t.0 > first.0)
        })
    })
    .await;

    shutdown.cancel();
    task.await.unwrap().unwrap();
}
