//! The boot services' view of the cluster, through kube-rs reflectors: Machines found by MAC
//! address, the per-machine agent tokens (one Secret per Machine), and hardware reports written
//! into `status.hardware` with server-side apply.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use machinist_crds::Machine;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::machines::{BootRecord, HardwareReport, MacAddr, MachineSource, ReportSink, SinkError, constant_time_eq};

/// The field manager of the boot services' writes.
pub const FIELD_MANAGER: &str = "machinist-boot";
/// Key of the token in a Machine's agent Secret.
pub const TOKEN_KEY: &str = "token";

/// Name of the Secret holding a Machine's agent token.
pub fn token_secret_name(machine: &str) -> String {
    format!("machinist-agent-{machine}")
}

/// Failures starting the cluster view.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The initial lists did not complete in time.
    #[error("the Machine and Secret caches of namespace {namespace} were not ready within {seconds} s")]
    NotReady {
        /// Namespace watched.
        namespace: String,
        /// How long we waited.
        seconds: u64,
    },
}

/// Machines and agent tokens of one namespace, kept current by reflectors.
#[derive(Clone)]
pub struct ClusterMachines {
    machines: Store<Machine>,
    secrets: Store<Secret>,
    api: Api<Machine>,
    namespace: String,
}

impl std::fmt::Debug for ClusterMachines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterMachines").field("namespace", &self.namespace).finish_non_exhaustive()
    }
}

fn run_reflector<K>(api: Api<K>, config: watcher::Config, shutdown: CancellationToken) -> Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, config)).default_backoff().applied_objects();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                next = stream.next() => match next {
                    Some(Ok(_)) => {}
                    // The watcher backs off and retries by itself; say what happened.
                    Some(Err(error)) => tracing::warn!(%error, "watch of the boot services' cache failed; retrying"),
                    None => return,
                },
            }
        }
    });
    reader
}

impl ClusterMachines {
    /// Starts the reflectors of `namespace` and waits (bounded) for their initial lists.
    pub async fn start(client: Client, namespace: &str, shutdown: CancellationToken) -> Result<Self, ClusterError> {
        let api: Api<Machine> = Api::namespaced(client.clone(), namespace);
        let machines = run_reflector(api.clone(), watcher::Config::default(), shutdown.clone());
        let secrets = run_reflector(Api::<Secret>::namespaced(client, namespace), watcher::Config::default(), shutdown);
        const WAIT: Duration = Duration::from_secs(30);
        let ready = async { machines.wait_until_ready().await.is_ok() && secrets.wait_until_ready().await.is_ok() };
        match tokio::time::timeout(WAIT, ready).await {
            Ok(true) => Ok(Self { machines, secrets, api, namespace: namespace.to_owned() }),
            _ => Err(ClusterError::NotReady { namespace: namespace.to_owned(), seconds: WAIT.as_secs() }),
        }
    }

    fn token_of(&self, machine: &str) -> Option<String> {
        let secret = self.secrets.get(&ObjectRef::new(&token_secret_name(machine)).within(&self.namespace))?;
        let bytes = secret.data.as_ref()?.get(TOKEN_KEY)?;
        String::from_utf8(bytes.0.clone()).ok().filter(|t| !t.is_empty())
    }
}

fn machine_has_mac(machine: &Machine, mac: MacAddr) -> bool {
    machine.spec.interfaces.iter().any(|interface| interface.mac.parse::<MacAddr>().is_ok_and(|m| m == mac))
}

impl MachineSource for ClusterMachines {
    fn lookup(&self, mac: MacAddr) -> Option<BootRecord> {
        let machine: Arc<Machine> = self.machines.find(|m| machine_has_mac(m, mac))?;
        let name = machine.name_any();
        Some(BootRecord {
            token: self.token_of(&name).unwrap_or_default(),
            boot_target: machine.status.as_ref().and_then(|s| s.boot_target),
            boot_menu: machine.spec.boot_menu.clone(),
            name,
        })
    }

    fn verify_token(&self, machine: &str, presented: &str) -> bool {
        self.token_of(machine).is_some_and(|token| constant_time_eq(token.as_bytes(), presented.as_bytes()))
    }
}

impl ReportSink for ClusterMachines {
    fn hardware_report(&self, machine: &str, report: HardwareReport) -> BoxFuture<'_, Result<(), SinkError>> {
        let machine = machine.to_owned();
        Box::pin(async move {
            let status = json!({
                "apiVersion": "machinist.dev/v1alpha1",
                "kind": "Machine",
                "status": {"hardware": {"items": report.items, "reportedTime": report.received.to_string()}},
            });
            self.api
                .patch_status(&machine, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(status))
                .await
                .map(drop)
                .map_err(|error| SinkError {
                    machine: machine.clone(),
                    reason: format!("failed to write the report: {error}"),
                })
        })
    }
}
