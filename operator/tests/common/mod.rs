//! A fleet on the embedded control plane: the API server, the boot services (whose report
//! endpoint the simulated agents post to, with the agent's own client), Machines with their
//! tokens, and waits on watch events (no sleeps).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use machinist_agent::backoff::Backoff;
use machinist_agent::sidecar::Sidecar;
use machinist_agent_protocol::cmdline::{Args, Mode};
use machinist_agent_protocol::report::Report;
use machinist_crds::{Cmdb, HardwareProfile, Machine, Quad};
use machinist_e2e::cluster::{BootServices, ControlPlane, DEFAULT_TOKEN_NAMESPACE, token_secret_name};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// The items of a QEMU virtual machine, as the agent reports them.
pub fn qemu_items() -> Vec<Quad> {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../agent/tests/fixtures/qemu-vm.items.json"))
            .unwrap();
    serde_json::from_str(&text).unwrap()
}

pub struct Fleet {
    pub kubeconfig: PathBuf,
    /// The admin's client: what a person applies.
    pub client: Client,
    /// The operator's least-privilege identity, as `machinist up` runs it.
    pub operator: Client,
    pub http: String,
    _boot: BootServices,
    control: ControlPlane,
}

impl Fleet {
    /// The API server and the boot services (HTTP only: reports), namespace `default`.
    pub async fn start() -> Fleet {
        let control = ControlPlane::start().await.unwrap();
        let yaml = BootServices::http_only(&control.scratch("artifacts").unwrap());
        let boot = BootServices::start(&control, &yaml).await.unwrap();
        let operator = control.operator_client().await.unwrap();
        Fleet {
            kubeconfig: control.kubeconfig.clone(),
            client: control.client.clone(),
            operator,
            http: boot.http_url().unwrap(),
            _boot: boot,
            control,
        }
    }

    /// A directory of the fleet's own.
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.control.scratch(name).unwrap()
    }

    pub fn machines(&self) -> Api<Machine> {
        Api::default_namespaced(self.client.clone())
    }

    pub async fn apply_profile(
        &self,
        name: &str,
        priority: i32,
        max: Option<i32>,
        rules: serde_json::Value,
        cmdb: Option<&str>,
    ) {
        let mut spec = json!({"priority": priority, "match": rules});
        if let Some(max) = max {
            spec["maxMachines"] = json!(max);
        }
        if let Some(cmdb) = cmdb {
            spec["cmdbRef"] = json!({"name": cmdb});
        }
        let profile: HardwareProfile = serde_json::from_value(json!({
            "apiVersion": "machinist.dev/v1alpha1", "kind": "HardwareProfile", "metadata": {"name": name}, "spec": spec,
        }))
        .unwrap();
        Api::<HardwareProfile>::default_namespaced(self.client.clone())
            .create(&PostParams::default(), &profile)
            .await
            .unwrap();
    }

    /// A Cmdb of `n` generated entries `10.<net>.x.y` / `<prefix>NNNNN`.
    pub async fn apply_cmdb(&self, name: &str, net: u8, n: usize) {
        let entries: Vec<BTreeMap<String, String>> = (0..n)
            .map(|i| {
                BTreeMap::from([
                    ("ip".to_owned(), format!("10.{net}.{}.{}", i / 250, i % 250 + 1)),
                    ("hostname".to_owned(), format!("{name}-{i:05}")),
                ])
            })
            .collect();
        let cmdb: Cmdb = serde_json::from_value(json!({
            "apiVersion": "machinist.dev/v1alpha1", "kind": "Cmdb", "metadata": {"name": name},
            "spec": {"entries": entries, "network": {"netmask": "255.255.0.0"}},
        }))
        .unwrap();
        Api::<Cmdb>::default_namespaced(self.client.clone()).create(&PostParams::default(), &cmdb).await.unwrap();
    }

    /// Machines `<prefix>-NNNN`, with MACs from `mac_base`.
    pub async fn create_machines(&self, prefix: &str, mac_base: u16, n: usize) -> Vec<String> {
        let api = self.machines();
        let names: Vec<String> = (0..n).map(|i| format!("{prefix}-{i:04}")).collect();
        let creates = names.iter().enumerate().map(|(i, name)| {
            let api = api.clone();
            let mac = mac_base as usize + i;
            let machine: Machine = serde_json::from_value(json!({
                "apiVersion": "machinist.dev/v1alpha1", "kind": "Machine", "metadata": {"name": name},
                "spec": {"interfaces": [{"mac": format!("52:54:{:02x}:{:02x}:{:02x}:01", mac >> 16 & 0xff, mac >> 8 & 0xff, mac & 0xff)}], "provider": {"manual": {}}},
            }))
            .unwrap();
            async move { api.create(&PostParams::default(), &machine).await.unwrap() }
        });
        futures::stream::iter(creates).buffer_unordered(32).collect::<Vec<_>>().await;
        names
    }

    /// The agent tokens of `names`, once the boot services created them.
    pub async fn tokens(&self, names: &[String]) -> BTreeMap<String, String> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), DEFAULT_TOKEN_NAMESPACE);
        let wanted: std::collections::BTreeSet<String> =
            names.iter().map(|n| token_secret_name("default", n)).collect();
        let all = wait_for(&secrets, Duration::from_secs(120), "agent tokens", |secrets: &[Arc<Secret>]| {
            let have: std::collections::BTreeSet<String> = secrets.iter().map(|s| s.name_any()).collect();
            wanted.is_subset(&have)
        })
        .await;
        names
            .iter()
            .map(|name| {
                let secret = all.iter().find(|s| s.name_any() == token_secret_name("default", name)).unwrap();
                let token = String::from_utf8(secret.data.as_ref().unwrap()["token"].0.clone()).unwrap();
                (name.clone(), token)
            })
            .collect()
    }

    /// Every machine of `names` posts `items` at once, through the agent's client.
    pub async fn report_all(&self, names: &[String], items: &[Quad]) {
        let tokens = self.tokens(names).await;
        let report = Arc::new(Report { items: items.to_vec() });
        let posts = tokens.into_iter().map(|(machine, token)| {
            let url = self.http.clone();
            let report = report.clone();
            tokio::task::spawn_blocking(move || {
                let args = Args {
                    url,
                    machine: machine.clone(),
                    token,
                    mac: String::new(),
                    mode: Mode::Discovery,
                    on_success: machinist_crds::machine::OnSuccess::Halt,
                    debug: false,
                    role: None,
                };
                let backoff = Backoff { base: Duration::from_millis(50), cap: Duration::from_secs(1), attempts: 10 };
                Sidecar::new(&args, backoff)
                    .report(&report, |_, _| {})
                    .unwrap_or_else(|e| panic!("report of {machine}: {e}"));
            })
        });
        for post in futures::future::join_all(posts).await {
            post.unwrap();
        }
    }

    pub async fn delete_machines(&self, names: &[String]) {
        let api = self.machines();
        for name in names {
            api.delete(name, &DeleteParams::default()).await.unwrap();
        }
    }
}

/// Waits, on watch events, until `done` holds for the objects of `api` (bounded).
pub async fn wait_for<K, F>(api: &Api<K>, within: Duration, what: &str, mut done: F) -> Vec<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    F: FnMut(&[Arc<K>]) -> bool,
{
    let (reader, writer) = reflector::store();
    let mut events = std::pin::pin!(
        reflector::reflector(writer, watcher(api.clone(), watcher::Config::default())).default_backoff()
    );
    let waited = tokio::time::timeout(within, async {
        let mut ready = false;
        while let Some(event) = events.next().await {
            if matches!(event, Ok(watcher::Event::InitDone)) {
                ready = true;
            }
            if ready && done(&reader.state()) {
                return;
            }
        }
    })
    .await;
    let state = reader.state();
    if waited.is_err() {
        panic!("{what}: not within {within:?} ({} objects seen)", state.len());
    }
    state
}

/// Machines by phase name.
pub fn phases(machines: &[Arc<Machine>]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for m in machines {
        let phase = m.status.as_ref().and_then(|s| s.phase).map_or("None".to_owned(), |p| format!("{p:?}"));
        *counts.entry(phase).or_default() += 1;
    }
    counts
}

pub fn condition<'m>(
    machine: &'m Machine,
    type_: &str,
) -> Option<&'m k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    machine.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)
}

/// Starts the operator in-process (no leader election).
pub async fn start_operator(
    client: &Client,
) -> (CancellationToken, tokio::task::JoinHandle<Result<(), machinist_operator::OperatorError>>) {
    let shutdown = CancellationToken::new();
    let config = machinist_operator::Config { namespace: Some("default".into()), ..Default::default() };
    let started = machinist_operator::start(client.clone(), config, shutdown.clone()).await.unwrap();
    (shutdown, started.task)
}

/// Lists everything of a kind.
pub async fn list<K>(api: &Api<K>) -> Vec<K>
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    api.list(&ListParams::default()).await.unwrap().items
}
