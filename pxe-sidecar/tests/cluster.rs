//! The boot services against the embedded control plane: Machines found by MAC through a
//! reflector, agent tokens from Secrets (a token the boot services created is kept only until
//! the cache shows its Secret, never past its Machine), hardware reports written into Machine
//! status.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams, ResourceExt};
use machinist_boot::cluster::{ClusterMachines, TOKEN_LABEL, token_secret_name};
use machinist_boot::machines::{HardwareReport, MacAddr, MachineSource, ReportSink};
use machinist_boot_dhcp::{BootPolicy, Directory};
use machinist_crds::{Cmdb, Machine, Quad};
use machinist_e2e::cluster::ControlPlane;
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn machines_tokens_and_reports_go_through_the_api() {
    let control = ControlPlane::start().await.unwrap();
    let client = control.client.clone();

    let machines: Api<Machine> = Api::default_namespaced(client.clone());
    let machine: Machine = serde_json::from_value(json!({
        "apiVersion": "machinist.dev/v1alpha1", "kind": "Machine", "metadata": {"name": "vm-1"},
        "spec": {"interfaces": [{"mac": "52:54:00:AB:00:01"}], "provider": {"manual": {}},
                 "bootMenu": {"roles": ["base", "api"], "default": "api", "timeoutSeconds": 30}}
    }))
    .unwrap();
    machines.create(&PostParams::default(), &machine).await.unwrap();
    let secret: Secret = serde_json::from_value(
        json!({"metadata": {"name": token_secret_name("vm-1"), "labels": {TOKEN_LABEL: "true"}},
               "stringData": {"token": "s3cret"}}),
    )
    .unwrap();
    Api::<Secret>::default_namespaced(client.clone()).create(&PostParams::default(), &secret).await.unwrap();

    let shutdown = CancellationToken::new();
    let cluster = ClusterMachines::start(client.clone(), "default", false, shutdown.clone()).await.unwrap();

    // Found by MAC whatever the case, with its menu and token.
    let record = MachineSource::lookup(&cluster, "52:54:00:ab:00:01".parse::<MacAddr>().unwrap()).unwrap();
    assert_eq!((record.name.as_str(), record.token.as_str()), ("vm-1", "s3cret"));
    assert_eq!(record.boot_menu.unwrap().default, "api");
    assert!(MachineSource::lookup(&cluster, "52:54:00:ab:00:02".parse::<MacAddr>().unwrap()).is_none());
    assert!(cluster.verify_token("vm-1", "s3cret"));
    assert!(!cluster.verify_token("vm-1", "s3cre"));
    assert!(!cluster.verify_token("vm-2", "s3cret"));

    // A report lands in status.hardware.
    let items = vec![Quad::new("system", "product", "vendor", "QEMU"), Quad::new("disk", "vda", "size", "20")];
    cluster
        .hardware_report("vm-1", HardwareReport { items: items.clone(), received: jiff::Timestamp::now() })
        .await
        .unwrap();
    let stored = machines.get("vm-1").await.unwrap();
    let hardware = stored.status.clone().unwrap().hardware.unwrap();
    assert_eq!(hardware.items, items);
    assert!(hardware.reported_time.is_some());
    assert_eq!(hardware.summary.vendor.as_deref(), Some("QEMU"), "the summary is derived from the items");
    assert!(stored.managed_fields().iter().any(|m| m.manager.as_deref() == Some("machinist-boot")));
    // DHCP's view: the reservation written by the operator, with the network of its Cmdb.
    let cmdb: Cmdb = serde_json::from_value(json!({
        "apiVersion": "machinist.dev/v1alpha1", "kind": "Cmdb", "metadata": {"name": "lab"},
        "spec": {"entries": [{"ip": "10.9.0.5"}],
                 "network": {"netmask": "255.255.255.0", "gateway": "10.9.0.1", "dnsServers": ["10.9.0.2"],
                             "domain": "lab.example"}},
    }))
    .unwrap();
    Api::<Cmdb>::default_namespaced(client.clone()).create(&PostParams::default(), &cmdb).await.unwrap();
    let status = json!({"apiVersion": "machinist.dev/v1alpha1", "kind": "Machine",
        "status": {"ip": "10.9.0.5", "hostname": "api1", "bootTarget": "Install",
                   "allocation": {"cmdb": "lab", "entry": 0}}});
    machines.patch_status("vm-1", &PatchParams::apply("test-operator"), &Patch::Apply(status)).await.unwrap();
    let mac = "52:54:00:ab:00:01".parse::<MacAddr>().unwrap();
    let reserved = cluster
        .wait_for(Duration::from_secs(20), |c| {
            Directory::lookup(c, mac).filter(|boot| boot.address.is_some() && boot.network.gateway.is_some())
        })
        .await
        .expect("the reservation reached the cache");
    assert_eq!(reserved.address, Some("10.9.0.5".parse().unwrap()));
    assert_eq!(reserved.hostname.as_deref(), Some("api1"));
    assert_eq!(reserved.network.dns_servers, ["10.9.0.2".parse::<std::net::Ipv4Addr>().unwrap()]);
    assert_eq!(reserved.network.domain.as_deref(), Some("lab.example"));
    assert_eq!(reserved.policy, BootPolicy::Network);
    // Auto-registration is off here: unknown MACs are ignored and nothing is created.
    assert!(!cluster.register_unknown("52:54:00:ab:00:09".parse().unwrap()));
    assert!(cluster.register("52:54:00:ab:00:09".parse().unwrap()).await.is_err());
    assert_eq!(machines.list(&Default::default()).await.unwrap().items.len(), 1);
    // Both status writers keep their fields: the report's hardware survived the operator's apply.
    assert!(machines.get("vm-1").await.unwrap().status.unwrap().hardware.is_some());

    // A report for a Machine that is gone is an error, not a panic.
    assert!(cluster.hardware_report("vm-9", HardwareReport { items, received: jiff::Timestamp::now() }).await.is_err());

    shutdown.cancel();
    control.stop().await;
}

#[tokio::test]
async fn a_created_token_is_kept_until_its_secret_is_cached_and_not_past_its_machine() {
    const WITHIN: Duration = Duration::from_secs(20);
    let control = ControlPlane::start().await.unwrap();
    let client = control.client.clone();
    let shutdown = CancellationToken::new();
    let cluster = ClusterMachines::start(client.clone(), "default", false, shutdown.clone()).await.unwrap();
    let machines: Api<Machine> = Api::default_namespaced(client.clone());
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    let mac = "52:54:00:ab:00:07".parse::<MacAddr>().unwrap();
    let machine: Machine = serde_json::from_value(json!({
        "apiVersion": "machinist.dev/v1alpha1", "kind": "Machine", "metadata": {"name": "vm-7"},
        "spec": {"interfaces": [{"mac": mac.to_string()}], "provider": {"manual": {}}},
    }))
    .unwrap();

    machines.create(&PostParams::default(), &machine).await.unwrap();
    cluster.wait_for(WITHIN, |c| MachineSource::lookup(c, mac)).await.expect("the Machine reached the cache");
    let token = cluster.token("vm-7").await.expect("its token is created");
    assert!(cluster.verify_token("vm-7", &token), "the new token verifies at once");
    // Its Secret reaches the cache: the cache answers, the token kept beside it goes.
    cluster
        .wait_for(WITHIN, |c| {
            let cached = MachineSource::lookup(c, mac).is_some_and(|record| record.token == token);
            (cached && !c.keeps_created_token("vm-7")).then_some(())
        })
        .await
        .expect("the Secret reached the cache and the kept token went");
    assert!(cluster.verify_token("vm-7", &token));

    // Deleted with its Secret, then created again under the same name: the old token is dead.
    machines.delete("vm-7", &Default::default()).await.unwrap();
    // The Secret is owned by the Machine: the garbage collector may have taken it already.
    match secrets.delete(&token_secret_name("vm-7"), &Default::default()).await {
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Ok(_) => {}
        Err(error) => panic!("failed to delete the Secret: {error}"),
    }
    cluster
        .wait_for(WITHIN, |c| {
            (MachineSource::lookup(c, mac).is_none() && !c.verify_token("vm-7", &token)).then_some(())
        })
        .await
        .expect("the deletes reached the caches");
    machines.create(&PostParams::default(), &machine).await.unwrap();
    let again = cluster.wait_for(WITHIN, |c| MachineSource::lookup(c, mac)).await.expect("the new Machine is cached");
    assert_eq!(again.token, "", "the new Machine has no Secret yet");
    assert!(!cluster.verify_token("vm-7", &token), "the deleted Machine's token verifies for the new one");
    assert!(!cluster.keeps_created_token("vm-7"));

    shutdown.cancel();
    control.stop().await;
}

/// A Machine deleted and created again under the same name does not inherit the earlier one's
/// token Secret (owned by the earlier uid): the old token does not verify, and the new Machine
/// gets a Secret of its own, the stale one deleted with a uid precondition. The stale Secret
/// has a second owner that exists, so garbage collection leaves it and the test is not a race.
#[tokio::test]
async fn a_recreated_machine_does_not_inherit_the_earlier_token() {
    const WITHIN: Duration = Duration::from_secs(20);
    let control = ControlPlane::start().await.unwrap();
    let client = control.client.clone();
    let keeper: k8s_openapi::api::core::v1::ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "keeper"}})).unwrap();
    let keeper = Api::<k8s_openapi::api::core::v1::ConfigMap>::default_namespaced(client.clone())
        .create(&PostParams::default(), &keeper)
        .await
        .unwrap();
    let machines: Api<Machine> = Api::default_namespaced(client.clone());
    let machine: Machine = serde_json::from_value(json!({
        "apiVersion": "machinist.dev/v1alpha1", "kind": "Machine", "metadata": {"name": "vm-r"},
        "spec": {"interfaces": [{"mac": "52:54:00:ab:00:21"}], "provider": {"manual": {}}}
    }))
    .unwrap();
    let machine = machines.create(&PostParams::default(), &machine).await.unwrap();
    let stale: Secret = serde_json::from_value(json!({
        "metadata": {"name": token_secret_name("vm-r"), "labels": {TOKEN_LABEL: "true"},
                     "ownerReferences": [
                         {"apiVersion": "machinist.dev/v1alpha1", "kind": "Machine", "name": "vm-r",
                          "uid": "00000000-0000-4000-8000-000000000001"},
                         {"apiVersion": "v1", "kind": "ConfigMap", "name": "keeper", "uid": keeper.uid().unwrap()}]},
        "stringData": {"token": "earlier-token"}}))
    .unwrap();
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    let stale = secrets.create(&PostParams::default(), &stale).await.unwrap();

    let shutdown = CancellationToken::new();
    let cluster = ClusterMachines::start(client.clone(), "default", false, shutdown.clone()).await.unwrap();
    let mac = "52:54:00:ab:00:21".parse::<MacAddr>().unwrap();
    cluster.wait_for(WITHIN, |c| MachineSource::lookup(c, mac)).await.expect("the Machine reached the cache");
    assert!(!cluster.verify_token("vm-r", "earlier-token"), "the earlier Machine's token verified");

    let token = cluster.ensure_token(&machine).await.unwrap();
    assert_ne!(token, "earlier-token");
    let replaced = secrets.get(&token_secret_name("vm-r")).await.unwrap();
    assert_ne!(replaced.uid(), stale.uid(), "the stale Secret was replaced");
    let owners: Vec<String> = replaced.owner_references().iter().map(|o| o.uid.clone()).collect();
    assert_eq!(owners, [machine.uid().unwrap()]);
    cluster.wait_for(WITHIN, |c| c.verify_token("vm-r", &token).then_some(())).await.expect("the new token verifies");
    assert!(!cluster.verify_token("vm-r", "earlier-token"));

    shutdown.cancel();
    control.stop().await;
}
