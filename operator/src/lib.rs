//! machinist's controllers (`machinist-operator`; `machinist up` runs them in-process).
//!
//! - [`lifecycle`]: the Machine state machine, pure (Registered → Inspecting → Matched →
//!   Allocated…), with the status and Events of each transition.
//! - [`binding`]: profile selection, profile slots and CMDB entries, pure.
//! - [`roles`]: Role validation, pure.
//! - [`install`]: the install plan (Role + profile layout + variables), pure.
//! - [`conditions`]: conditions with transition times, pure.
//! - [`ledger`]: the one writer of HardwareProfile and Cmdb statuses — batched, under
//!   `resourceVersion` preconditions, so that `maxMachines` is never exceeded and no CMDB
//!   entry is given twice, across replicas and restarts.
//! - [`controllers`]: Machine, HardwareProfile, Cmdb, Role, Hypervisor and VM controllers
//!   (kube-runtime); one reconcile serves both pools, HardwareProfile and Cmdb
//!   ([`controllers::pools`]).
//! - [`events`]: Events written in the background.
//! - [`leader`]: leader election on a Lease; only the leader runs the controllers.
//! - [`jitter`]: the random spread of retry delays (reconcile backoff, leader election).
//! - [`metrics`]: `/metrics`, `/healthz`, `/readyz`.
//! - [`vm`]: libvirt VMs, pure: names, domain and volume XML, placement on Hypervisors, power.
//! - [`libvirt`]: the libvirt calls (the `virt` crate), blocking.
//!
//! [`start`] ties them together. The LoadBalancerBackend controller and the BMC provider arrive
//! with their issues.

pub mod binding;
pub mod conditions;
pub mod controllers;
pub mod events;
pub mod install;
pub mod jitter;
pub mod leader;
pub mod ledger;
pub mod libvirt;
pub mod lifecycle;
pub mod metrics;
pub mod roles;
pub mod vm;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use machinist_crds::{Cmdb, HardwareProfile, Hypervisor, Machine, Role};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::controllers::vm as vms;
use crate::controllers::{Caches, Context, hypervisor, machine, pools, role};
use crate::leader::{Elector, LeaderConfig};
use crate::metrics::{Metrics, State};

/// How the operator runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Namespace to reconcile; `None`: every namespace.
    pub namespace: Option<String>,
    /// Namespace of the Hypervisors (and, later, their credentials).
    pub hypervisor_namespace: String,
    /// Where `/metrics`, `/healthz` and `/readyz` listen; `None`: nowhere.
    pub metrics_listen: Option<SocketAddr>,
    /// Leader election; `None`: this is the only replica.
    pub leader: Option<LeaderConfig>,
    /// Machines reconciled at once. The ledgers batch what they claim, so this is also the
    /// largest batch.
    pub concurrency: u16,
    /// Name of this replica in Events (`reportingInstance`).
    pub instance: Option<String>,
    /// URL prefixes install images may come from (`http://10.0.0.1:8080/artifacts/images/`); a
    /// Role whose image is elsewhere is not installed (condition `Provisioned`, reason
    /// `PlanInvalid`). Empty: any http(s) URL.
    pub image_sources: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            namespace: None,
            hypervisor_namespace: machinist_crds::access::SYSTEM_NAMESPACE.to_owned(),
            metrics_listen: None,
            leader: None,
            concurrency: 128,
            instance: None,
            image_sources: Vec::new(),
        }
    }
}

/// Why the operator stopped.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// The metrics port could not be bound.
    #[error("failed to listen on {address} for metrics: {source}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Leader election failed.
    #[error(transparent)]
    Leader(#[from] leader::LeaderError),
    /// The caches did not fill.
    #[error("the HardwareProfile and Cmdb caches were not ready within {0:?}")]
    NotReady(Duration),
}

/// A running operator's metrics endpoint, once bound.
#[derive(Debug)]
pub struct Started {
    /// Where `/metrics` listens.
    pub metrics: Option<SocketAddr>,
    /// The operator; resolves when it stops.
    pub task: tokio::task::JoinHandle<Result<(), OperatorError>>,
}

/// Binds the metrics port, then runs the operator in a task until `shutdown` (or until it
/// loses the lease).
pub async fn start(client: Client, config: Config, shutdown: CancellationToken) -> Result<Started, OperatorError> {
    libvirt::init();
    let metrics = Arc::new(Metrics::new());
    let machines: MachineCache = Arc::new(Mutex::new(None));
    let mut bound = None;
    if let Some(address) = config.metrics_listen {
        let listener =
            tokio::net::TcpListener::bind(address).await.map_err(|source| OperatorError::Listen { address, source })?;
        bound = listener.local_addr().ok();
        let cache = machines.clone();
        let scrape = metrics.clone();
        let refresh: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
            let store = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
            if let Some(store) = store {
                scrape.set_machines(&phase_counts(&store));
            }
        });
        let app = metrics::router(metrics.clone(), refresh);
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let served = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await;
            if let Err(error) = served {
                tracing::error!(%error, "the metrics server stopped");
            }
        });
    }
    let task = tokio::spawn(run(client, config, metrics, machines, shutdown));
    Ok(Started { metrics: bound, task })
}

/// The current term's Machine cache, for the phase gauge.
type MachineCache = Arc<Mutex<Option<Store<Machine>>>>;

fn phase_counts(store: &Store<Machine>) -> Vec<(String, i64)> {
    let mut counts = std::collections::BTreeMap::<String, i64>::new();
    for machine in store.state() {
        let phase = machine.status.as_ref().and_then(|s| s.phase).map_or("None".to_owned(), |p| format!("{p:?}"));
        *counts.entry(phase).or_default() += 1;
    }
    counts.into_iter().collect()
}

async fn run(
    client: Client,
    config: Config,
    metrics: Arc<Metrics>,
    machines: MachineCache,
    shutdown: CancellationToken,
) -> Result<(), OperatorError> {
    let Some(leader) = &config.leader else {
        return run_controllers(client, &config, metrics, machines, shutdown).await;
    };
    let elector = Elector::new(client.clone(), leader.clone());
    // A replica that loses the lease (a renewal too late on a loaded machine, a partition)
    // stops its controllers and stands by again rather than exiting.
    loop {
        metrics.set_state(State::Standby);
        tracing::info!(identity = %leader.identity, lease = %leader.lease_name, "waiting for the leader lease");
        let Some(leadership) = elector.acquire(&shutdown).await? else {
            return Ok(());
        };
        let stop = shutdown.child_token();
        let lost = leadership.lost();
        let watch = {
            let stop = stop.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = lost.cancelled() => stop.cancel(),
                    () = stop.cancelled() => {}
                }
            })
        };
        let outcome = run_controllers(client.clone(), &config, metrics.clone(), machines.clone(), stop.clone()).await;
        stop.cancel();
        let _ = watch.await; // it ends with `stop`
        let lost = leadership.lost().is_cancelled();
        if shutdown.is_cancelled() || outcome.is_err() {
            metrics.set_state(State::Stopping);
            if !lost {
                leadership.release().await;
            }
            return outcome;
        }
        if !lost {
            leadership.release().await;
        }
        tracing::warn!(identity = %leader.identity, "lost the leader lease; controllers stopped, standing by");
    }
}

/// A Machine watch event as the VM controller's cache sees it: Machines that are not VMs (and
/// hold no VM finalizer) are left out, and one that stops being a VM leaves.
fn vm_event(event: watcher::Event<Machine>) -> Option<watcher::Event<Machine>> {
    let concerned = |m: &Machine| vms::is_vm(m) || m.metadata.finalizers.iter().flatten().any(|f| f == vms::FINALIZER);
    match event {
        watcher::Event::InitApply(m) if !concerned(&m) => None,
        watcher::Event::Apply(m) if !concerned(&m) => Some(watcher::Event::Delete(m)),
        other => Some(other),
    }
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

async fn drive<K, F, E>(controller: Controller<K>, reconcile: F, on_error: E, ctx: Arc<Context>, name: &'static str)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    F: FnMut(
        Arc<K>,
        Arc<Context>,
    ) -> futures::future::BoxFuture<'static, Result<kube::runtime::controller::Action, controllers::Error>>,
    E: Fn(Arc<K>, &controllers::Error, Arc<Context>) -> kube::runtime::controller::Action,
{
    controller
        .run(reconcile, on_error, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(controller = name, %error, "reconcile");
            }
        })
        .await;
}

async fn run_controllers(
    client: Client,
    config: &Config,
    metrics: Arc<Metrics>,
    machines: MachineCache,
    stop: CancellationToken,
) -> Result<(), OperatorError> {
    const READY_WITHIN: Duration = Duration::from_secs(60);
    let namespace = config.namespace.as_deref();
    let wc = watcher::Config::default();
    let (machine_reader, machine_writer) = reflector::store();
    *machines.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(machine_reader.clone());
    let machine_stream = watcher(api::<Machine>(&client, namespace), wc.clone())
        .default_backoff()
        .modify(machine::trim)
        .reflect(machine_writer)
        .applied_objects();
    let profile_controller = Controller::new(api::<HardwareProfile>(&client, namespace), wc.clone());
    let cmdb_controller = Controller::new(api::<Cmdb>(&client, namespace), wc.clone());
    let role_controller = Controller::new(api::<Role>(&client, namespace), wc.clone());
    // Hypervisors are probed on a timer: their status changes (each probe's time) must not
    // trigger another probe, so only spec changes do.
    let (hypervisor_reader, hypervisor_writer) = reflector::store();
    let hypervisor_stream =
        watcher(Api::<Hypervisor>::namespaced(client.clone(), &config.hypervisor_namespace), wc.clone())
            .default_backoff()
            .reflect(hypervisor_writer)
            .applied_objects()
            .predicate_filter(kube::runtime::predicates::generation, Default::default());
    let hypervisor_controller = Controller::for_stream(hypervisor_stream, hypervisor_reader.clone())
        .graceful_shutdown_on(stop.clone().cancelled_owned());
    // libvirt Machines (and those still holding the VM finalizer) for the VM controller: the
    // others leave its cache.
    let (vm_reader, vm_writer) = reflector::store();
    let vm_stream = watcher(api::<Machine>(&client, namespace), wc.clone())
        .default_backoff()
        .try_filter_map(|event| async move { Ok(vm_event(event)) })
        .modify(machine::trim)
        .reflect(vm_writer)
        .applied_objects();
    let (vm_wake, vm_woken) = mpsc::unbounded_channel();
    let vm_woken = futures::stream::unfold(vm_woken, |mut woken| async move { woken.recv().await.map(|r| (r, woken)) });
    let vm_controller = Controller::for_stream(vm_stream, vm_reader.clone())
        .reconcile_on(vm_woken)
        .graceful_shutdown_on(stop.clone().cancelled_owned());
    let (wake, woken) = mpsc::unbounded_channel();
    let caches = Caches {
        machines: machine_reader.clone(),
        profiles: profile_controller.store(),
        cmdbs: cmdb_controller.store(),
        roles: role_controller.store(),
        hypervisors: hypervisor_reader,
        hypervisor_namespace: config.hypervisor_namespace.clone(),
        vms: vm_reader,
        vm_wake,
        wake,
    };
    let ready_profiles = caches.profiles.clone();
    let ready_cmdbs = caches.cmdbs.clone();
    let ready_roles = caches.roles.clone();
    let ctx = Arc::new(Context::new(
        client.clone(),
        metrics.clone(),
        caches,
        config.instance.clone(),
        config.image_sources.clone(),
    ));
    let woken = futures::stream::unfold(woken, |mut woken| async move { woken.recv().await.map(|r| (r, woken)) });
    let machine_controller = Controller::for_stream(machine_stream, machine_reader)
        .reconcile_on(woken)
        .with_config(ControllerConfig::default().concurrency(config.concurrency))
        .graceful_shutdown_on(stop.clone().cancelled_owned());
    let profile_controller = profile_controller.graceful_shutdown_on(stop.clone().cancelled_owned());
    let cmdb_controller = cmdb_controller.graceful_shutdown_on(stop.clone().cancelled_owned());
    let role_controller = role_controller.graceful_shutdown_on(stop.clone().cancelled_owned());

    let pools = async {
        tokio::join!(
            drive(
                profile_controller,
                |o, c| Box::pin(pools::reconcile::<HardwareProfile>(o, c)),
                pools::on_error::<HardwareProfile>,
                ctx.clone(),
                "hardwareprofile"
            ),
            drive(
                cmdb_controller,
                |o, c| Box::pin(pools::reconcile::<Cmdb>(o, c)),
                pools::on_error::<Cmdb>,
                ctx.clone(),
                "cmdb"
            ),
            drive(role_controller, |o, c| Box::pin(role::reconcile(o, c)), role::on_error, ctx.clone(), "role"),
            drive(
                hypervisor_controller,
                |o, c| Box::pin(hypervisor::reconcile(o, c)),
                hypervisor::on_error,
                ctx.clone(),
                "hypervisor"
            ),
        );
    };
    // Machines are bound against the profiles and Cmdbs, and installed from the Roles: not
    // before those caches are full.
    let machines = async {
        let ready = async {
            tokio::join!(
                ready_profiles.wait_until_ready(),
                ready_cmdbs.wait_until_ready(),
                ready_roles.wait_until_ready()
            )
        };
        tokio::select! {
            waited = tokio::time::timeout(READY_WITHIN, ready) => {
                if waited.is_err() {
                    return Err(OperatorError::NotReady(READY_WITHIN));
                }
            }
            () = stop.cancelled() => return Ok(()),
        }
        metrics.set_state(State::Leading);
        tracing::info!("controllers running");
        tokio::join!(
            drive(
                machine_controller,
                |o, c| Box::pin(machine::reconcile(o, c)),
                machine::on_error,
                ctx.clone(),
                "machine"
            ),
            drive(vm_controller, |o, c| Box::pin(vms::reconcile(o, c)), vms::on_error, ctx.clone(), "vm"),
        );
        Ok(())
    };
    let (_, outcome) = tokio::join!(pools, async {
        let outcome = machines.await;
        if outcome.is_err() {
            stop.cancel();
        }
        outcome
    });
    outcome
}
