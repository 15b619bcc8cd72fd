//! The VM controller: Machines with `spec.provider.libvirt` become libvirt domains. It gives a
//! Machine without interfaces a MAC, places it on a Hypervisor (recorded in that Hypervisor's
//! ledger before any libvirt call), defines its domain (ownership in the metadata), creates its
//! volume, and drives its power from `spec.online`; on deletion it destroys and undefines the
//! domain, deletes the volume and releases the placement before its finalizer goes, and only
//! then does the Machine controller give back its profile slot and CMDB entry.
//!
//! Everything it writes in the Machine's status — `status.provider` and the conditions
//! `Placed` and `VirtualMachine` — is applied with its own field manager, [`FIELD_MANAGER`].
//! libvirt has no safe event API in the `virt` crate, so power is polled: every
//! [`POLL_RUNNING`] while steady, every [`POLL_CHANGING`] while a shutdown is awaited.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::Event as FinalizerEvent;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use machinist_crds::hypervisor::{Hypervisor, PlacementState};
use machinist_crds::machine::{
    DiskFormat, Firmware, LibvirtProvider, MachinePhase, PowerState, ProviderStatus, VolumeStatus,
};
use machinist_crds::{Machine, MachineStatus};
use serde_json::json;

use super::{Context, Error, error_policy, now, with_finalizer};
use crate::conditions::{self, Desired};
use crate::libvirt::{Host, LibvirtError};
use crate::lifecycle::Transition;

/// A libvirt power call on a domain.
type PowerCall = fn(&Host, &str) -> Result<(), LibvirtError>;
use crate::vm::domain_xml::{DiskSpec, DomainSpec, NicSource, NicSpec, Owner, VolumeSpec, render_domain};
use crate::vm::host_ledger::{HostOutcome, HostRequest, is_reachable};
use crate::vm::naming::{console_log, domain_name, free_mac, volume_name};
use crate::vm::placement::{self, HostView, Placed, Request, Target, is_kvm};
use crate::vm::power::{self, Observed, PowerAction};

const CONTROLLER: &str = "vm";

/// The finalizer that keeps a libvirt Machine until its domain, volume and placement are gone.
pub const FINALIZER: &str = "vms.machinist.dev";
/// The field manager of what this controller writes.
pub const FIELD_MANAGER: &str = "machinist-operator-vm";
/// Condition: whether the VM has a Hypervisor.
pub const PLACED: &str = "Placed";
/// Condition: whether the VM is defined and in the power state asked.
pub const VIRTUAL_MACHINE: &str = "VirtualMachine";
/// Condition: whether the definition is on every Hypervisor `hostSelector` selects
/// (`replicateDefinition`).
pub const REPLICATED: &str = "Replicated";
/// The condition types this controller owns (the Machine controller leaves them alone).
pub const CONDITIONS: [&str; 3] = [PLACED, VIRTUAL_MACHINE, REPLICATED];

/// How often a steady VM's power is read.
pub const POLL_RUNNING: Duration = Duration::from_secs(60);
/// How often it is read while a power change is awaited.
pub const POLL_CHANGING: Duration = Duration::from_secs(5);
/// Longest one libvirt call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether the VM controller handles `machine`.
pub fn is_vm(machine: &Machine) -> bool {
    machine.spec.provider.libvirt.is_some()
}

/// Reconciles one libvirt Machine.
pub async fn reconcile(machine: Arc<Machine>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    if !is_vm(&machine) && !machine.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    with_finalizer(CONTROLLER, FINALIZER, machine, &ctx, |event| async {
        match event {
            FinalizerEvent::Apply(m) => apply(&m, &ctx).await,
            FinalizerEvent::Cleanup(m) => cleanup(&m, &ctx).await,
        }
    })
    .await
}

/// The VM controller's error policy.
pub fn on_error(machine: Arc<Machine>, error: &Error, ctx: Arc<Context>) -> Action {
    error_policy(CONTROLLER, machine.as_ref(), error, &ctx)
}

fn libvirt_failed(name: &str, error: &LibvirtError) -> Error {
    Error::Provider { name: name.to_owned(), message: error.to_string() }
}

/// What the VM asks of its host.
fn request(spec: &LibvirtProvider) -> Request {
    Request {
        memory_mib: i64::from(spec.memory_mib),
        vcpus: i64::from(spec.vcpus),
        disk_gib: i64::from(spec.disk_gib),
        pool: spec.pool.clone(),
        qcow2: spec.disk_format == DiskFormat::Qcow2,
    }
}

fn hypervisor(ctx: &Context, name: &str) -> Option<Arc<Hypervisor>> {
    ctx.hypervisors.get(&ObjectRef::new(name).within(&ctx.hypervisor_namespace))
}

/// The outcome of a pass, written at its end.
struct Pass {
    provider: ProviderStatus,
    conditions: Vec<Condition>,
    requeue: Option<Duration>,
    events: Vec<Transition>,
}

impl Pass {
    /// Sets a condition; a change of its status or reason is kept as an Event to publish.
    fn condition(&mut self, desired: Desired<'_>, machine: &Machine) {
        let before =
            self.conditions.iter().find(|c| c.type_ == desired.type_).map(|c| (c.status.clone(), c.reason.clone()));
        let (type_, reason, message, status) =
            (desired.type_.to_owned(), desired.reason.to_owned(), desired.message.clone(), desired.status);
        conditions::set(&mut self.conditions, desired, machine.metadata.generation, &now());
        let after = self.conditions.iter().find(|c| c.type_ == type_).map(|c| (c.status.clone(), c.reason.clone()));
        if before != after && NOTEWORTHY.contains(&reason.as_str()) {
            self.events.push(Transition { reason, message, warning: !status });
        }
    }
}

/// Condition reasons worth an Event when they appear (power changes have their own).
const NOTEWORTHY: [&str; 8] = [
    "Placed",
    "NoCapacity",
    "NoHypervisor",
    "HypervisorNotFound",
    "DomainNameTaken",
    "HypervisorUnreachable",
    "DefineFailed",
    "ReplicaFailed",
];

async fn apply(machine: &Machine, ctx: &Context) -> Result<Action, Error> {
    let Some(spec) = machine.spec.provider.libvirt.clone() else { return Ok(Action::await_change()) };
    let namespace = machine.namespace().unwrap_or_default();
    let name = machine.name_any();
    let uid = machine.uid().unwrap_or_default();

    // A MAC first: the domain's NIC needs it, and the boot services find the machine by it.
    if machine.spec.interfaces.is_empty() {
        write_mac(machine, ctx).await?;
        return Ok(Action::await_change()); // the spec change brings the next pass
    }

    let prior = machine.status.clone().unwrap_or_default();
    let mut pass = Pass {
        provider: prior.provider.clone().unwrap_or_default(),
        conditions: prior.conditions.iter().filter(|c| CONDITIONS.contains(&c.type_.as_str())).cloned().collect(),
        requeue: None,
        events: Vec::new(),
    };
    let outcome = drive(machine, &spec, &namespace, &name, &uid, ctx, &mut pass).await;
    write_status(machine, ctx, &prior, &pass).await?;
    ctx.publish(machine, &pass.events, "Reconcile");
    outcome?;
    Ok(pass.requeue.map_or_else(Action::await_change, Action::requeue))
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    machine: &Machine,
    spec: &LibvirtProvider,
    namespace: &str,
    name: &str,
    uid: &str,
    ctx: &Context,
    pass: &mut Pass,
) -> Result<(), Error> {
    // Placement: kept once recorded.
    let placed_on = match pass.provider.hypervisor.clone() {
        Some(host) => host,
        None => match place(spec, namespace, name, uid, ctx).await? {
            Ok(host) => {
                pass.condition(Desired::yes(PLACED, "Placed", format!("placed on Hypervisor {host}")), machine);
                host
            }
            Err((reason, message)) => {
                pass.condition(Desired::no(PLACED, reason, message), machine);
                pass.requeue = Some(POLL_RUNNING);
                return Ok(());
            }
        },
    };
    pass.provider.hypervisor = Some(placed_on.clone());
    let Some(host) = hypervisor(ctx, &placed_on) else {
        let message = format!("Hypervisor {placed_on} does not exist in namespace {}", ctx.hypervisor_namespace);
        pass.condition(Desired::no(VIRTUAL_MACHINE, "HypervisorNotFound", message), machine);
        pass.provider.power_state = Some(PowerState::Unknown);
        pass.requeue = Some(POLL_RUNNING);
        return Ok(());
    };
    let uri = host.spec.uri.clone();
    pass.provider.host = Some(uri.clone());
    let status = host.status.clone().unwrap_or_default();

    let domain = domain_name(namespace, name);
    let qcow2 = spec.disk_format == DiskFormat::Qcow2;
    let volume = volume_name(&domain, qcow2);
    let log = console_log(&host.spec.console_log_dir, &domain);
    let definition = DomainSpec {
        name: domain.clone(),
        uuid: uid.to_owned(),
        owner: Owner { namespace: namespace.to_owned(), name: name.to_owned(), uid: uid.to_owned() },
        kvm: is_kvm(status.accelerator),
        memory_mib: u64::try_from(spec.memory_mib).unwrap_or(0),
        vcpus: u32::try_from(spec.vcpus).unwrap_or(1),
        uefi: spec.firmware == Firmware::Uefi,
        disk: DiskSpec { pool: spec.pool.clone(), volume: volume.clone(), qcow2 },
        nic: NicSpec {
            source: match (&spec.bridge, &spec.network) {
                (Some(bridge), _) => NicSource::Bridge(bridge.clone()),
                (None, network) => NicSource::Network(network.clone().unwrap_or_else(|| "default".into())),
            },
            mac: boot_mac(machine),
        },
        console_log: log.clone(),
    };
    pass.provider.domain_name = Some(domain.clone());
    pass.provider.console_log = Some(log);

    // The domain, defined (again) when missing or changed; never one that is not ours.
    let looked = ctx.hosts.call(&uri, CALL_TIMEOUT, {
        let domain = domain.clone();
        move |h| h.domain(&domain)
    });
    let existing = match looked.await {
        Ok(existing) => existing,
        Err(error) => {
            unreachable(machine, pass, &placed_on, &error);
            return Ok(());
        }
    };
    // A changed definition (memory, vCPUs, NIC…) is defined again under the same UUID; libvirt
    // gives a running domain the new one at its next power-on.
    let hash = definition.hash();
    match &existing {
        Some(found) if found.ownership.as_ref().is_none_or(|o| o.uid != uid) => {
            let owner = found.ownership.as_ref().map_or_else(
                || "a domain machinist did not create".to_owned(),
                |o| format!("the domain of Machine {}/{} (uid {})", o.namespace, o.name, o.uid),
            );
            let message = format!(
                "domain {domain} on Hypervisor {placed_on} is {owner}; remove it (virsh undefine) or rename this Machine"
            );
            pass.condition(Desired::no(VIRTUAL_MACHINE, "DomainNameTaken", message), machine);
            pass.provider.power_state = Some(PowerState::Unknown);
            pass.requeue = Some(POLL_RUNNING);
            return Ok(());
        }
        Some(found) if found.ownership.as_ref().is_some_and(|o| o.spec_hash == hash) => {}
        _ => {
            let xml = render_domain(&definition);
            let defined = ctx.hosts.call(&uri, CALL_TIMEOUT, {
                let domain = domain.clone();
                move |h| h.define(&domain, &xml)
            });
            if let Err(error) = defined.await {
                if error.is_unreachable() {
                    unreachable(machine, pass, &placed_on, &error);
                    return Ok(());
                }
                let message = error.to_string();
                pass.condition(Desired::no(VIRTUAL_MACHINE, "DefineFailed", message), machine);
                return Err(libvirt_failed(name, &error));
            }
        }
    }
    pass.provider.domain_uuid = Some(uid.to_owned());
    if spec.replicate_definition {
        replicate(machine, spec, &placed_on, &definition, ctx, pass).await;
    } else if !pass.provider.replicas.is_empty() {
        // Replication turned off: the copies stay until the Machine goes (undefined then).
        pass.conditions.retain(|c| c.type_ != REPLICATED);
    }

    // The volume, then the placement counts it as created.
    let volume_spec =
        VolumeSpec { name: volume.clone(), capacity_gib: u64::try_from(spec.disk_gib).unwrap_or(1), qcow2 };
    let pool = spec.pool.clone();
    let created = ctx.hosts.call(&uri, CALL_TIMEOUT, move |h| h.ensure_volume(&pool, &volume_spec)).await;
    match created {
        Ok(view) => {
            pass.provider.volume = Some(VolumeStatus {
                pool: spec.pool.clone(),
                name: volume.clone(),
                path: Some(view.path),
                capacity_gib: i64::try_from(view.capacity_bytes >> 30).unwrap_or(i64::MAX),
            });
        }
        Err(error) if error.is_unreachable() => {
            unreachable(machine, pass, &placed_on, &error);
            return Ok(());
        }
        Err(error) => {
            pass.condition(Desired::no(VIRTUAL_MACHINE, "VolumeFailed", error.to_string()), machine);
            return Err(libvirt_failed(name, &error));
        }
    }
    let materialized = status.placements.iter().any(|p| p.uid == uid && p.state == PlacementState::Created);
    if !materialized {
        let request = HostRequest::Materialize { uid: uid.to_owned() };
        ctx.hypervisor_ledger.submit(&ctx.hypervisor_namespace, &placed_on, request).await?;
    }

    // Power.
    let observed = existing.map_or(Observed::Off, |d| d.power);
    let since = pass.provider.shutdown_requested_time.as_ref().map(|t| {
        let elapsed = jiff::Timestamp::now().duration_since(t.0);
        Duration::try_from(elapsed).unwrap_or_default()
    });
    let timeout = Duration::from_secs(u64::try_from(spec.shutdown_timeout_seconds).unwrap_or(120));
    let action = power::decide(machine.spec.online, observed, since, timeout);
    let cycle = if action == PowerAction::None && observed == Observed::On {
        cycle_owed(machine, pass, ctx).await?
    } else {
        None
    };
    let reset = cycle == Some(true);
    if matches!(action, PowerAction::Start) || cycle.is_some() {
        // Powered on or reset now, or found booting into it already: it is in the current
        // install (recorded, so the boot timeline is not read again on every pass).
        pass.provider.cycled_attempt = current_attempt(machine).or(pass.provider.cycled_attempt);
    }
    let call: Option<(PowerCall, &str, String)> = if reset {
        let attempt = current_attempt(machine).unwrap_or_default();
        Some((Host::reset, "PowerCycled", format!("reset to network-boot into install attempt {attempt}")))
    } else {
        match action {
            PowerAction::Start => Some((Host::start, "PoweredOn", format!("started on Hypervisor {placed_on}"))),
            PowerAction::Resume => Some((Host::resume, "Resumed", format!("resumed on Hypervisor {placed_on}"))),
            PowerAction::Shutdown => Some((Host::shutdown, "ShuttingDown", "asked to power off (ACPI)".to_owned())),
            PowerAction::Destroy => Some((
                Host::destroy,
                "ShutdownTimedOut",
                format!("forced off after {}s without powering off", timeout.as_secs()),
            )),
            PowerAction::None | PowerAction::Wait(_) => None,
        }
    };
    if let Some((call, reason, message)) = call {
        let target = domain.clone();
        if let Err(error) = ctx.hosts.call(&uri, CALL_TIMEOUT, move |h| call(h, &target)).await {
            if error.is_unreachable() {
                unreachable(machine, pass, &placed_on, &error);
                return Ok(());
            }
            pass.condition(Desired::no(VIRTUAL_MACHINE, "PowerFailed", error.to_string()), machine);
            return Err(libvirt_failed(name, &error));
        }
        let warning = reason == "ShutdownTimedOut";
        ctx.publish(machine, &[Transition { reason: reason.into(), message, warning }], "Power");
    }
    let (state, desired) = match (action, machine.spec.online) {
        (PowerAction::Start | PowerAction::Resume, _) => {
            pass.provider.shutdown_requested_time = None;
            (PowerState::On, Desired::yes(VIRTUAL_MACHINE, "Running", format!("running on Hypervisor {placed_on}")))
        }
        (PowerAction::Shutdown, _) => {
            pass.provider.shutdown_requested_time = Some(now());
            pass.requeue = Some(POLL_CHANGING);
            (PowerState::ShuttingDown, Desired::no(VIRTUAL_MACHINE, "ShuttingDown", "asked to power off (ACPI)"))
        }
        (PowerAction::Wait(left), _) => {
            pass.requeue = Some(left.min(POLL_CHANGING));
            (PowerState::ShuttingDown, Desired::no(VIRTUAL_MACHINE, "ShuttingDown", "asked to power off (ACPI)"))
        }
        (PowerAction::Destroy, _) => {
            pass.provider.shutdown_requested_time = None;
            let message = format!("did not power off within {}s of the ACPI request: forced off", timeout.as_secs());
            (PowerState::Off, Desired::no(VIRTUAL_MACHINE, "ShutdownTimedOut", message))
        }
        (PowerAction::None, true) => {
            (PowerState::On, Desired::yes(VIRTUAL_MACHINE, "Running", format!("running on Hypervisor {placed_on}")))
        }
        (PowerAction::None, false) => {
            pass.provider.shutdown_requested_time = None;
            (PowerState::Off, Desired::no(VIRTUAL_MACHINE, "Stopped", "powered off (spec.online is false)"))
        }
    };
    pass.provider.power_state = Some(state);
    pass.condition(desired, machine);
    pass.requeue = Some(pass.requeue.unwrap_or(POLL_RUNNING));
    Ok(())
}

/// Defines the domain on every other reachable Hypervisor the selector picks (never started
/// there); records where it is and what could not be done.
async fn replicate(
    machine: &Machine,
    spec: &LibvirtProvider,
    primary: &str,
    definition: &DomainSpec,
    ctx: &Context,
    pass: &mut Pass,
) {
    let no_labels = BTreeMap::new();
    let selector = spec.host_selector.as_ref().unwrap_or(&no_labels);
    let mut others: Vec<Arc<Hypervisor>> = ctx
        .hypervisors
        .state()
        .into_iter()
        .filter(|h| h.name_any() != primary)
        .filter(|h| selector.iter().all(|(k, v)| h.labels().get(k) == Some(v)))
        .collect();
    others.sort_by_key(|h| h.name_any());
    let mut replicas: Vec<String> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    for host in others {
        let name = host.name_any();
        let mut copy = definition.clone();
        copy.kvm = is_kvm(host.status.as_ref().and_then(|s| s.accelerator));
        copy.console_log = console_log(&host.spec.console_log_dir, &definition.name);
        let xml = render_domain(&copy);
        let (domain, uid, wanted) = (definition.name.clone(), definition.uuid.clone(), copy.hash());
        let outcome = ctx
            .hosts
            .call(&host.spec.uri, CALL_TIMEOUT, move |h| match h.domain(&domain)? {
                Some(found) if found.ownership.as_ref().is_none_or(|o| o.uid != uid) => Ok(Some("the name is taken")),
                Some(found) if found.ownership.as_ref().is_some_and(|o| o.spec_hash == wanted) => Ok(None),
                _ => h.define(&domain, &xml).map(|()| None),
            })
            .await;
        match outcome {
            Ok(None) => replicas.push(name),
            Ok(Some(why)) => problems.push(format!("{name}: {why}")),
            Err(error) => problems.push(format!("{name}: {error}")),
        }
    }
    // Hosts that held a copy and are no longer selected keep it until the Machine goes.
    for kept in &pass.provider.replicas {
        if !replicas.contains(kept) && !problems.iter().any(|p| p.starts_with(&format!("{kept}:"))) {
            replicas.push(kept.clone());
        }
    }
    replicas.sort();
    pass.provider.replicas = replicas.clone();
    let desired = if problems.is_empty() {
        let message = if replicas.is_empty() {
            "no other Hypervisor is selected".to_owned()
        } else {
            format!("defined on {}", replicas.join(", "))
        };
        Desired::yes(REPLICATED, "InSync", message)
    } else {
        pass.requeue = Some(POLL_RUNNING);
        Desired::no(REPLICATED, "ReplicaFailed", problems.join("; "))
    };
    pass.condition(desired, machine);
}

/// The install attempt under way, if the machine is being installed.
fn current_attempt(machine: &Machine) -> Option<i32> {
    let status = machine.status.as_ref()?;
    (status.phase == Some(MachinePhase::Provisioning)).then(|| status.install.as_ref().map(|i| i.attempt))?
}

/// For a running VM not yet recorded in the current install attempt: whether it must be reset
/// into it (`Some(true)`), or has network-booted since the attempt started and is on its way
/// into the installer (`Some(false)`, never reset). `None`: no attempt to check. The boot
/// timeline is read fresh: the cache trims it.
async fn cycle_owed(machine: &Machine, pass: &Pass, ctx: &Context) -> Result<Option<bool>, Error> {
    let Some(attempt) = current_attempt(machine) else { return Ok(None) };
    if pass.provider.cycled_attempt.is_some_and(|cycled| cycled >= attempt) {
        return Ok(None);
    }
    let name = machine.name_any();
    let api: Api<Machine> = Api::namespaced(ctx.client.clone(), &machine.namespace().unwrap_or_default());
    let fresh = api.get_status(&name).await.map_err(|source| Error::Api {
        action: "read the boot timeline of",
        kind: "Machine".into(),
        name: name.clone(),
        source,
    })?;
    let status = fresh.status.unwrap_or_default();
    let started = status.install.and_then(|i| i.started_time).map(|t| t.0);
    let booted = status.last_boot.and_then(|b| b.started_time).map(|t| t.0);
    Ok(Some(match (started, booted) {
        (Some(started), Some(booted)) => booted < started,
        _ => true,
    }))
}

fn unreachable(machine: &Machine, pass: &mut Pass, host: &str, error: &LibvirtError) {
    let message = format!("Hypervisor {host}: {error}");
    pass.condition(Desired::no(VIRTUAL_MACHINE, "HypervisorUnreachable", message), machine);
    pass.provider.power_state = Some(PowerState::Unknown);
    pass.requeue = Some(POLL_RUNNING);
}

/// The MAC of the interface that boots (the first, unless one says `boot: true`).
fn boot_mac(machine: &Machine) -> String {
    let interfaces = &machine.spec.interfaces;
    interfaces
        .iter()
        .find(|i| i.boot == Some(true))
        .or_else(|| interfaces.first())
        .map(|i| i.mac.to_ascii_lowercase())
        .unwrap_or_default()
}

/// Chooses a Hypervisor and records the placement in its ledger; a host the ledger finds full
/// is passed over and the choice made again. `Ok(Err((reason, message)))`: nowhere to go.
async fn place(
    spec: &LibvirtProvider,
    namespace: &str,
    name: &str,
    uid: &str,
    ctx: &Context,
) -> Result<Result<String, (&'static str, String)>, Error> {
    let request = request(spec);
    let hypervisors = ctx.hypervisors.state();
    // A placement already recorded (a crash before the status write) is kept.
    if let Some(found) =
        hypervisors.iter().find(|h| h.status.as_ref().is_some_and(|s| s.placements.iter().any(|p| p.uid == uid)))
    {
        return Ok(Ok(found.name_any()));
    }
    let no_labels = BTreeMap::new();
    let target = match (&spec.host, &spec.host_selector) {
        (Some(host), _) => Target::Host(host),
        (None, Some(selector)) => Target::Selector(selector),
        (None, None) => Target::Selector(&no_labels),
    };
    let defaults = Default::default();
    let views: Vec<HostView<'_>> = hypervisors
        .iter()
        .map(|h| {
            let status = h.status.as_ref().unwrap_or(&defaults);
            HostView {
                name: h.metadata.name.as_deref().unwrap_or_default(),
                labels: h.metadata.labels.as_ref().unwrap_or(&no_labels),
                spec: &h.spec,
                status,
                reachable: is_reachable(status),
            }
        })
        .collect();
    let mut excluded: Vec<String> = Vec::new();
    loop {
        let refs: Vec<&str> = excluded.iter().map(String::as_str).collect();
        match placement::choose(&views, target, &request, &refs) {
            Placed::Chosen(host) => {
                let reserve = HostRequest::Reserve {
                    machine: format!("{namespace}/{name}"),
                    uid: uid.to_owned(),
                    request: request.clone(),
                };
                match ctx.hypervisor_ledger.submit(&ctx.hypervisor_namespace, &host, reserve).await? {
                    HostOutcome::Reserved | HostOutcome::Done => return Ok(Ok(host)),
                    HostOutcome::Refused(refusal) => {
                        tracing::debug!(machine = %name, %host, %refusal, "placement refused by the ledger");
                        if excluded.contains(&host) {
                            return Ok(Err(("NoCapacity", format!("Hypervisor {host}: {refusal}"))));
                        }
                        excluded.push(host);
                    }
                }
            }
            Placed::NoHypervisor => {
                let message = match target {
                    Target::Host(host) => {
                        format!("Hypervisor {host} does not exist in namespace {}", ctx.hypervisor_namespace)
                    }
                    Target::Selector(_) => {
                        format!("no Hypervisor in namespace {} has the labels asked", ctx.hypervisor_namespace)
                    }
                };
                return Ok(Err(("NoHypervisor", message)));
            }
            Placed::NoneFits(refusals) => {
                let reasons: Vec<String> = refusals.iter().map(|(host, why)| format!("{host}: {why}")).collect();
                return Ok(Err(("NoCapacity", format!("no Hypervisor fits the VM ({})", reasons.join("; ")))));
            }
        }
    }
}

/// Writes a generated MAC as the Machine's interface (server-side apply of the one field).
async fn write_mac(machine: &Machine, ctx: &Context) -> Result<(), Error> {
    let uid = machine.uid().unwrap_or_default();
    let taken: std::collections::HashSet<String> = ctx
        .machines
        .state()
        .iter()
        .flat_map(|m| m.spec.interfaces.iter().map(|i| i.mac.to_ascii_lowercase()))
        .collect();
    let mac = free_mac(&uid, |candidate| taken.contains(candidate));
    let patch = json!({
        "apiVersion": Machine::api_version(&()),
        "kind": Machine::kind(&()),
        "spec": {"interfaces": [{"mac": mac, "name": "eth0", "boot": true}]},
    });
    let name = machine.name_any();
    let api: Api<Machine> = Api::namespaced(ctx.client.clone(), &machine.namespace().unwrap_or_default());
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER), &Patch::Apply(patch)).await.map_err(|source| Error::Api {
        action: "write the generated MAC of",
        kind: "Machine".into(),
        name,
        source,
    })?;
    Ok(())
}

async fn write_status(machine: &Machine, ctx: &Context, prior: &MachineStatus, pass: &Pass) -> Result<(), Error> {
    let unchanged = prior.provider.as_ref() == Some(&pass.provider)
        && CONDITIONS
            .iter()
            .all(|t| prior.conditions.iter().find(|c| c.type_ == *t) == pass.conditions.iter().find(|c| c.type_ == *t));
    if unchanged {
        return Ok(());
    }
    let status = json!({"provider": pass.provider, "conditions": pass.conditions});
    super::apply_status_as(ctx, machine, &status, FIELD_MANAGER).await
}

/// Deletion: the domain destroyed and undefined, the volume deleted, the placement released.
async fn cleanup(machine: &Machine, ctx: &Context) -> Result<Action, Error> {
    let name = machine.name_any();
    let namespace = machine.namespace().unwrap_or_default();
    let uid = machine.uid().unwrap_or_default();
    let provider = machine.status.as_ref().and_then(|s| s.provider.clone()).unwrap_or_default();
    // The placement may be recorded without the status saying so (a crash in between).
    let hosts: Vec<Arc<Hypervisor>> = ctx
        .hypervisors
        .state()
        .into_iter()
        .filter(|h| {
            provider.hypervisor.as_deref() == h.metadata.name.as_deref()
                || h.status.as_ref().is_some_and(|s| s.placements.iter().any(|p| p.uid == uid))
                || provider.replicas.iter().any(|r| Some(r.as_str()) == h.metadata.name.as_deref())
        })
        .collect();
    if provider.hypervisor.is_some() && hosts.is_empty() {
        // Its Hypervisor was deleted: nothing left to reach.
        tracing::warn!(machine = %name, hypervisor = ?provider.hypervisor, "the VM's Hypervisor is gone; its domain and volume are left as they are");
    }
    let domain = domain_name(&namespace, &name);
    for host in hosts {
        let host_name = host.name_any();
        let uri = host.spec.uri.clone();
        let (target, expected_uid) = (domain.clone(), uid.clone());
        // A replica's disk is the primary's, on shared storage: deleted once, there.
        let replica =
            provider.replicas.contains(&host_name) && provider.hypervisor.as_deref() != Some(host_name.as_str());
        let volume = machine
            .spec
            .provider
            .libvirt
            .as_ref()
            .filter(|_| !replica)
            .map(|spec| (spec.pool.clone(), volume_name(&domain, spec.disk_format == DiskFormat::Qcow2)));
        let uefi = machine.spec.provider.libvirt.as_ref().is_some_and(|s| s.firmware == Firmware::Uefi);
        let removed = ctx
            .hosts
            .call(&uri, CALL_TIMEOUT, move |h| {
                let ours = match h.domain(&target)? {
                    Some(found) if found.ownership.as_ref().is_some_and(|o| o.uid == expected_uid) => {
                        if found.power != Observed::Off {
                            h.destroy(&target)?;
                        }
                        h.undefine(&target, uefi)?;
                        true
                    }
                    // Someone else's domain: left alone, and its volume too.
                    Some(_) => false,
                    None => true,
                };
                if ours && let Some((pool, volume)) = volume {
                    h.delete_volume(&pool, &volume)?;
                }
                Ok(())
            })
            .await;
        removed.map_err(|error| libvirt_failed(&name, &error))?;
        let release = HostRequest::Release { uid: uid.clone() };
        match ctx.hypervisor_ledger.submit(&ctx.hypervisor_namespace, &host_name, release).await {
            Ok(_) | Err(crate::ledger::LedgerError::NotFound { .. }) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(Action::await_change())
}
