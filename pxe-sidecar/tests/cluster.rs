//! The boot services against the embedded control plane: Machines found by MAC through a
//! reflector, agent tokens from Secrets in the token namespace (a token the boot services
//! created is kept only until the cache shows its Secret, never past its Machine; the token
//! keeper makes the missing ones and deletes those of Machines that are gone), hardware reports
//! written into Machine status.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams, ResourceExt};
use kube::runtime::wait::await_condition;
use kube::{Api, Client};
use machinist_boot::cluster::{
    ClusterConfig, ClusterMachines, DEFAULT_TOKEN_NAMESPACE, MACHINE_ANNOTATION, MACHINE_NAMESPACE_LABEL,
    MACHINE_UID_ANNOTATION, TOKEN_KEY, TOKEN_LABEL, run_token_keeper, token_secret_name,
};
use machinist_boot::machines::{HardwareReport, MacAddr, MachineSource, ReportSink};
use machinist_boot_dhcp::{BootPolicy, Directory};
use machinist_crds::{Cmdb, Machine, Quad};
use machinist_e2e::cluster::ControlPlane;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// The token Secrets, in their namespace (created: the control plane does not make it).
async fn token_secrets(client: &Client) -> Api<Secret> {
    ensure_namespace(client, DEFAULT_TOKEN_NAMESPACE).await.unwrap();
    Api::namespaced(client.clone(), DEFAULT_TOKEN_NAMESPACE)
}

/// A token Secret made by hand for Machine `machine` of `namespace`, of the Machine with uid
/// `uid` (none: whichever Machine has the name).
fn hand_made(namespace: &str, machine: &str, uid: Option<&str>, token: &str) -> Secret {
    let mut annotations = json!({MACHINE_ANNOTATION: machine});
    if let Some(uid) = uid {
        annotations[MACHINE_UID_ANNOTATION] = json!(uid);
    }
    serde_json::from_value(json!({
        "metadata": {"name": token_secret_name(namespace, machine),
                     "labels": {TOKEN_LABEL: "true", MACHINE_NAMESPACE_LABEL: namespace},
                     "annotations": annotations},
        "stringData": {TOKEN_KEY: token}}))
    .unwrap()
}

fn secret_token(secret: &Secret) -> String {
    String::from_utf8(secret.data.as_ref().unwrap()[TOKEN_KEY].0.clone()).unwrap()
}

/// The Secret `name` of `api` once `condition` holds (a watch, bounded).
async fn secret_when(
    api: &Api<Secret>,
    name: &str,
    what: &str,
    condition: impl Fn(Option<&Secret>) -> bool,
) -> Option<Secret> {
    const WITHIN: Duration = Duration::from_secs(30);
    tokio::time::timeout(WITHIN, await_condition(api.clone(), name, condition))
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {WITHIN:?}"))
        .unwrap()
}

/// Creates the namespace `name` (of the token Secrets) unless it exists. For whoever starts the
/// boot services with the right to (`machinist up`, test fixtures): the boot services' own
/// identity needs no access to namespaces.
async fn ensure_namespace(client: &Client, name: &str) -> Result<(), kube::Error> {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let namespace = k8s_openapi::api::core::v1::Namespace {
        metadata: kube::api::ObjectMeta { name: Some(name.to_owned()), ..Default::default() },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &namespace).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(error) => Err(error),
    }
}

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
    // A token made by a person, for whichever Machine is named vm-1.
    let secrets = token_secrets(&client).await;
    secrets.create(&PostParams::default(), &hand_made("default", "vm-1", None, "s3cret")).await.unwrap();

    let shutdown = CancellationToken::new();
    let cluster =
        ClusterMachines::start(client.clone(), ClusterConfig::new("default"), shutdown.clone()).await.unwrap();

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
    let secrets = token_secrets(&client).await;
    let shutdown = CancellationToken::new();
    let cluster =
        ClusterMachines::start(client.clone(), ClusterConfig::new("default"), shutdown.clone()).await.unwrap();
    let machines: Api<Machine> = Api::default_namespaced(client.clone());
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

    // Deleted with its Secret (no token keeper runs here to collect it), then created again
    // under the same name: the old token is dead.
    machines.delete("vm-7", &Default::default()).await.unwrap();
    secrets.delete(&token_secret_name("default", "vm-7"), &Default::default()).await.unwrap();
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
/// token Secret (annotated with the earlier uid): the old token does not verify, and the new
/// Machine gets a Secret of its own, the stale one deleted with a uid precondition. No token
/// keeper runs, so nothing else deletes the stale Secret and the test is not a race.
#[tokio::test]
async fn a_recreated_machine_does_not_inherit_the_earlier_token() {
    const WITHIN: Duration = Duration::from_secs(20);
    let control = ControlPlane::start().await.unwrap();
    let client = control.client.clone();
    let machines: Api<Machine> = Api::default_namespaced(client.clone());
    let machine: Machine = serde_json::from_value(json!({
        "apiVersion": "machinist.dev/v1alpha1", "kind": "Machine", "metadata": {"name": "vm-r"},
        "spec": {"interfaces": [{"mac": "52:54:00:ab:00:21"}], "provider": {"manual": {}}}
    }))
    .unwrap();
    let machine = machines.create(&PostParams::default(), &machine).await.unwrap();
    let secrets = token_secrets(&client).await;
    let earlier = hand_made("default", "vm-r", Some("00000000-0000-4000-8000-000000000001"), "earlier-token");
    let stale = secrets.create(&PostParams::default(), &earlier).await.unwrap();

    let shutdown = CancellationToken::new();
    let cluster =
        ClusterMachines::start(client.clone(), ClusterConfig::new("default"), shutdown.clone()).await.unwrap();
    let mac = "52:54:00:ab:00:21".parse::<MacAddr>().unwrap();
    cluster.wait_for(WITHIN, |c| MachineSource::lookup(c, mac)).await.expect("the Machine reached the cache");
    assert!(!cluster.verify_token("vm-r", "earlier-token"), "the earlier Machine's token verified");

    let token = cluster.ensure_token(&machine).await.unwrap();
    assert_ne!(token, "earlier-token");
    let replaced = secrets.get(&token_secret_name("default", "vm-r")).await.unwrap();
    assert_ne!(replaced.uid(), stale.uid(), "the stale Secret was replaced");
    assert_eq!(replaced.annotations()[MACHINE_UID_ANNOTATION], machine.uid().unwrap());
    assert!(replaced.owner_references().is_empty(), "no ownerReferences across namespaces");
    cluster.wait_for(WITHIN, |c| c.verify_token("vm-r", &token).then_some(())).await.expect("the new token verifies");
    assert!(!cluster.verify_token("vm-r", "earlier-token"));

    shutdown.cancel();
    control.stop().await;
}

/// The token keeper of two Machine namespaces sharing the token namespace, each with a Machine
/// `vm-1`: each gets a Secret of its own, labelled and annotated with its Machine, whose token
/// verifies only for it; a Secret deleted by someone is made again (another token); a Machine's
/// deletion removes its Secret and no other; a token Secret left by a Machine deleted while no
/// keeper ran goes when the keeper starts. Every wait is a watch, bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_keeper_makes_tokens_and_deletes_those_of_gone_machines() {
    const WITHIN: Duration = Duration::from_secs(30);
    let control = ControlPlane::start().await.unwrap();
    let client = control.client.clone();
    let secrets = token_secrets(&client).await;
    ensure_namespace(&client, "lab").await.unwrap();
    let machine = |mac: &str| -> Machine {
        serde_json::from_value(json!({
            "apiVersion": "machinist.dev/v1alpha1", "kind": "Machine", "metadata": {"name": "vm-1"},
            "spec": {"interfaces": [{"mac": mac}], "provider": {"manual": {}}}
        }))
        .unwrap()
    };
    let (default_machines, lab_machines) =
        (Api::<Machine>::default_namespaced(client.clone()), Api::<Machine>::namespaced(client.clone(), "lab"));
    // Left by a Machine deleted while the keeper was down.
    let ghost = hand_made("default", "ghost", Some("00000000-0000-4000-8000-000000000002"), "ghost-token");
    secrets.create(&PostParams::default(), &ghost).await.unwrap();
    let default_vm = default_machines.create(&PostParams::default(), &machine("52:54:00:ab:00:31")).await.unwrap();
    let lab_vm = lab_machines.create(&PostParams::default(), &machine("52:54:00:ab:00:32")).await.unwrap();

    let shutdown = CancellationToken::new();
    let mut clusters = Vec::new();
    for namespace in ["default", "lab"] {
        let cluster =
            ClusterMachines::start(client.clone(), ClusterConfig::new(namespace), shutdown.clone()).await.unwrap();
        tokio::spawn(run_token_keeper(cluster.clone(), shutdown.clone()));
        clusters.push(cluster);
    }
    let (default_cluster, lab_cluster) = (&clusters[0], &clusters[1]);

    // The ghost's Secret goes at the keeper's first sweep.
    secret_when(&secrets, &token_secret_name("default", "ghost"), "the ghost's Secret deleted", |s| s.is_none()).await;

    // One Secret per Machine, told apart by namespace.
    let (default_name, lab_name) = (token_secret_name("default", "vm-1"), token_secret_name("lab", "vm-1"));
    assert_ne!(default_name, lab_name);
    let default_secret = secret_when(&secrets, &default_name, "default/vm-1's token", |s| s.is_some()).await.unwrap();
    let lab_secret = secret_when(&secrets, &lab_name, "lab/vm-1's token", |s| s.is_some()).await.unwrap();
    for (secret, namespace, uid) in [(&default_secret, "default", default_vm.uid()), (&lab_secret, "lab", lab_vm.uid())]
    {
        assert_eq!(secret.labels()[TOKEN_LABEL], "true");
        assert_eq!(secret.labels()[MACHINE_NAMESPACE_LABEL], namespace);
        assert_eq!(secret.annotations()[MACHINE_ANNOTATION], "vm-1");
        assert_eq!(Some(&secret.annotations()[MACHINE_UID_ANNOTATION]), uid.as_ref());
        assert!(secret.owner_references().is_empty());
    }
    let (default_token, lab_token) = (secret_token(&default_secret), secret_token(&lab_secret));
    assert_ne!(default_token, lab_token);
    default_cluster
        .wait_for(WITHIN, |c| c.verify_token("vm-1", &default_token).then_some(()))
        .await
        .expect("default/vm-1's token verifies");
    lab_cluster
        .wait_for(WITHIN, |c| c.verify_token("vm-1", &lab_token).then_some(()))
        .await
        .expect("lab/vm-1's token verifies");
    assert!(!default_cluster.verify_token("vm-1", &lab_token), "lab's token verified for default's vm-1");
    assert!(!lab_cluster.verify_token("vm-1", &default_token), "default's token verified for lab's vm-1");

    // Deleted by someone: made again, with another token.
    secrets.delete(&default_name, &Default::default()).await.unwrap();
    let remade = secret_when(&secrets, &default_name, "default/vm-1's token made again", |s| {
        s.is_some_and(|s| s.uid() != default_secret.uid())
    })
    .await
    .unwrap();
    let remade_token = secret_token(&remade);
    assert_ne!(remade_token, default_token);
    default_cluster
        .wait_for(WITHIN, |c| {
            (c.verify_token("vm-1", &remade_token) && !c.verify_token("vm-1", &default_token)).then_some(())
        })
        .await
        .expect("the new token verifies, the deleted one no longer");

    // The Machine deleted: its Secret goes (long before the periodic sweep), lab's stays.
    default_machines.delete("vm-1", &Default::default()).await.unwrap();
    secret_when(&secrets, &default_name, "default/vm-1's token deleted with its Machine", |s| s.is_none()).await;
    default_cluster
        .wait_for(WITHIN, |c| (!c.verify_token("vm-1", &remade_token)).then_some(()))
        .await
        .expect("the deleted Machine's token no longer verifies");
    assert_eq!(secrets.get(&lab_name).await.unwrap().uid(), lab_secret.uid(), "lab's Secret was touched");

    // Created again under the same name: a new token; the old one stays dead.
    let again = default_machines.create(&PostParams::default(), &machine("52:54:00:ab:00:31")).await.unwrap();
    let fresh = secret_when(&secrets, &default_name, "the new default/vm-1's token", |s| {
        s.is_some_and(|s| s.annotations().get(MACHINE_UID_ANNOTATION) == again.uid().as_ref())
    })
    .await
    .unwrap();
    let fresh_token = secret_token(&fresh);
    assert_ne!(fresh_token, remade_token);
    default_cluster
        .wait_for(WITHIN, |c| c.verify_token("vm-1", &fresh_token).then_some(()))
        .await
        .expect("the new Machine's token verifies");
    assert!(!default_cluster.verify_token("vm-1", &remade_token));
    assert!(!default_cluster.verify_token("vm-1", &default_token));

    shutdown.cancel();
    control.stop().await;
}
