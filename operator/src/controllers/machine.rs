//! The Machine controller: drives [`crate::lifecycle`], binding profiles and reserving CMDB
//! entries through the ledgers, and gives both back when a Machine is deleted (finalizer
//! [`FINALIZER`]).

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use futures::future::join_all;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::Event as FinalizerEvent;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use machinist_crds::machine::MachinePhase;
use machinist_crds::{Machine, MachineStatus};
use machinist_matching::{AllocationError, Captures};

use super::{Context, Error, apply_status, error_policy, now, with_finalizer};
use crate::binding::{self, EntryOutcome, EntryRequest, Selected, SlotOutcome, SlotRequest};
use crate::ledger::{CmdbOutcome, CmdbRequest, LedgerError, ProfileOutcome, ProfileRequest};
use crate::lifecycle::{self, Change, FINALIZER, Next, Unallocated, Unbound};
use crate::{install, roles};

const CONTROLLER: &str = "machine";

/// Drops what the controller never reads from cached Machines — hardware items (read fresh
/// when binding), the boot timeline, managed fields, kubectl's last-applied copy — so that
/// tens of thousands of Machines fit in little memory.
pub fn trim(machine: &mut Machine) {
    machine.managed_fields_mut().clear();
    machine.annotations_mut().remove("kubectl.kubernetes.io/last-applied-configuration");
    if let Some(status) = machine.status.as_mut() {
        if let Some(hardware) = status.hardware.as_mut() {
            hardware.items = Vec::new();
            hardware.summary = Default::default();
        }
        status.last_boot = None;
    }
}

/// Reconciles one Machine.
pub async fn reconcile(machine: Arc<Machine>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    with_finalizer(CONTROLLER, FINALIZER, machine, &ctx, |event| async {
        match event {
            FinalizerEvent::Apply(m) => apply(&m, &ctx).await,
            FinalizerEvent::Cleanup(m) => cleanup(&m, &ctx).await,
        }
    })
    .await
}

/// The Machine controller's error policy.
pub fn on_error(machine: Arc<Machine>, error: &Error, ctx: Arc<Context>) -> Action {
    error_policy(CONTROLLER, machine.as_ref(), error, &ctx)
}

async fn apply(machine: &Machine, ctx: &Context) -> Result<Action, Error> {
    let now = now();
    let mut current = machine.clone();
    let mut transitions = Vec::new();
    let mut changed = false;
    // Captures of a bind in this reconcile, for the allocation that follows at once.
    let mut captures: Option<Captures> = None;
    // Registered → Inspecting → Matched → Allocated → Provisioning in one reconcile when nothing
    // waits (and Provisioning → Provisioned → Ready when the reports are in).
    for _ in 0..6 {
        let change: Change = match lifecycle::next(&current) {
            Next::Inspect => lifecycle::inspecting(&current, &now),
            Next::Bind { pinned } => {
                let (change, captured) = bind(&current, pinned.as_deref(), ctx, &now).await?;
                captures = captured;
                change
            }
            Next::Allocate { profile } => allocate(&current, &profile, captures.take(), ctx, &now).await?,
            Next::Provision { reinstall } => provision(&current, reinstall, ctx, &now),
            Next::Installed => lifecycle::installed(&current, &now),
            Next::Booted => lifecycle::booted(&current, &now),
            Next::InstallFailed { message } => lifecycle::install_failed(&current, &message, &now),
            Next::Restart => {
                release(&current, ctx).await?;
                let why = if current.status.as_ref().and_then(|s| s.phase) == Some(MachinePhase::Failed) {
                    "its spec changed after it failed"
                } else {
                    "spec.profile changed"
                };
                lifecycle::restarted(&current, why, &now)
            }
            Next::Release | Next::Wait => break,
        };
        let before = current.status.clone().unwrap_or_default();
        let phase_moved = change.status.phase != before.phase;
        let status_moved = change.status != before;
        transitions.extend(change.transitions);
        current.status = Some(change.status);
        changed |= status_moved;
        if !phase_moved {
            break;
        }
    }
    if changed {
        write_status(&current, ctx).await?;
    }
    ctx.publish(machine, &transitions, "Reconcile");
    Ok(Action::await_change())
}

async fn cleanup(machine: &Machine, ctx: &Context) -> Result<Action, Error> {
    let phase = machine.status.as_ref().and_then(|s| s.phase);
    if lifecycle::holds_anything(machine) && phase != Some(MachinePhase::Deprovisioning) {
        let change = lifecycle::deprovisioning(machine, &now());
        let mut current = machine.clone();
        current.status = Some(change.status);
        // Best effort: the release below is what matters.
        if let Err(error) = write_status(&current, ctx).await {
            tracing::debug!(machine = %machine.name_any(), %error, "could not show Deprovisioning");
        }
        ctx.publish(machine, &change.transitions, "Deprovision");
    }
    // A VM's domain and volume go first (the VM controller's finalizer), then its slot and entry.
    if machine.finalizers().iter().any(|f| f == super::vm::FINALIZER) {
        return Err(Error::Waiting { kind: "Machine", name: machine.name_any(), what: "its VM is being removed" });
    }
    release(machine, ctx).await?;
    Ok(Action::await_change())
}

/// The status fields this controller owns: all but hardware, boot timeline, install progress,
/// provider details and the VM controller's conditions, which belong to other writers (left
/// out, they are not serialised, so not applied).
fn owned_status(machine: &Machine) -> MachineStatus {
    let mut status = machine.status.clone().unwrap_or_default();
    status.conditions.retain(|c| !super::vm::CONDITIONS.contains(&c.type_.as_str()));
    MachineStatus { hardware: None, last_boot: None, install_progress: None, provider: None, ..status }
}

/// Makes the install plan from the cached Role and profile ([`install::plan`]) and starts the
/// install, or says why it cannot start.
fn provision(machine: &Machine, reinstall: Option<String>, ctx: &Context, now: &super::Time) -> Change {
    let namespace = machine.namespace().unwrap_or_default();
    let status = machine.status.clone().unwrap_or_default();
    let Some(role_ref) = machine.spec.role.clone().or(status.role.clone()) else {
        return lifecycle::unplanned(machine, "NoRole", "neither the Machine nor its profile names a Role".into(), now);
    };
    let Some(role) = ctx.roles.get(&ObjectRef::new(&role_ref.name).within(&namespace)) else {
        let message = format!("Role {} does not exist", role_ref.name);
        return lifecycle::unplanned(machine, "RoleNotFound", message, now);
    };
    let problems = roles::validate(&role.spec);
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        let message = format!("Role {} is invalid: {}", role_ref.name, list.join("; "));
        return lifecycle::unplanned(machine, "RoleInvalid", message, now);
    }
    let profile_name = status.profile.clone().unwrap_or_default();
    let profile = ctx.profiles.get(&ObjectRef::new(&profile_name).within(&namespace));
    let inputs = install::PlanInputs {
        role_ref: &role_ref,
        role: &role.spec,
        profile: &profile_name,
        layout: profile.as_ref().and_then(|p| p.spec.install.as_ref()),
        variables: &status.variables,
        allowed_sources: &ctx.image_sources,
    };
    match install::plan(inputs) {
        Ok(plan) => lifecycle::provisioning(machine, plan, reinstall, now),
        Err(error) => lifecycle::unplanned(machine, "PlanInvalid", error.to_string(), now),
    }
}

async fn write_status(machine: &Machine, ctx: &Context) -> Result<(), Error> {
    apply_status(ctx, machine, &owned_status(machine)).await
}

/// Chooses a profile and takes a slot in it; a profile found full by the ledger is passed over
/// and the choice made again.
async fn bind(
    machine: &Machine,
    pinned: Option<&str>,
    ctx: &Context,
    now: &super::Time,
) -> Result<(Change, Option<Captures>), Error> {
    let namespace = machine.namespace().unwrap_or_default();
    let name = machine.name_any();
    let api: Api<Machine> = Api::namespaced(ctx.client.clone(), &namespace);
    // The cache holds no items: read the report itself.
    let fresh = api.get_status(&name).await.map_err(|source| Error::Api {
        action: "read",
        kind: "Machine".into(),
        name: name.clone(),
        source,
    })?;
    let items = fresh.status.and_then(|s| s.hardware).map(|h| h.items).unwrap_or_default();
    let mut found_full: HashSet<String> = HashSet::new();
    loop {
        let views = ctx.profile_views(&namespace, &name);
        let selected = binding::choose_profile(&items, &views, pinned, &found_full);
        let (profile, captures, mismatches) = match selected {
            Selected::Profile { name, captures, mismatches } => (name, captures, mismatches),
            Selected::NoneMatched(mismatches) => {
                return Ok((lifecycle::unbound(machine, &Unbound::NoProfileMatched, mismatches, now), None));
            }
            Selected::PinnedMissing => {
                let why = Unbound::ProfileNotFound(pinned.unwrap_or_default().to_owned());
                return Ok((lifecycle::unbound(machine, &why, Vec::new(), now), None));
            }
            Selected::PinnedInvalid => {
                let why = Unbound::ProfileInvalid(pinned.unwrap_or_default().to_owned());
                return Ok((lifecycle::unbound(machine, &why, Vec::new(), now), None));
            }
            Selected::PinnedFull => {
                let why = Unbound::ProfileFull(pinned.unwrap_or_default().to_owned());
                return Ok((lifecycle::unbound(machine, &why, Vec::new(), now), None));
            }
            Selected::PinnedMismatch(mismatch) => {
                let message = format!(
                    "its hardware does not match pinned HardwareProfile {}: {}",
                    mismatch.profile, mismatch.reason
                );
                return Ok((lifecycle::failed(machine, "ProfileMismatch", message, now), None));
            }
        };
        // A slot left in another profile by an earlier attempt (a crash between claim and
        // status write, a changed priority) goes back first.
        let stale: Vec<&str> = views.iter().filter(|v| v.name != profile && v.holds).map(|v| v.name.as_str()).collect();
        unbind_from(&namespace, &name, stale, ctx).await?;
        let request = ProfileRequest::Slot(SlotRequest::Bind(name.clone()));
        match ctx.profile_ledger.submit(&namespace, &profile, request).await {
            Ok(ProfileOutcome::Slot(SlotOutcome::Bound)) => {
                let role = ctx
                    .profiles
                    .state()
                    .iter()
                    .find(|p| p.name_any() == profile && p.namespace().as_deref() == Some(namespace.as_str()))
                    .and_then(|p| p.spec.role.clone());
                let change = lifecycle::matched(machine, &profile, captures.variables.clone(), mismatches, role, now);
                return Ok((change, Some(captures)));
            }
            Ok(_) | Err(LedgerError::NotFound { .. }) => {
                // Full (or gone) since the cache saw it: choose again without it.
                if found_full.contains(&profile) {
                    return Err(Error::NotCached { kind: "HardwareProfile", name: profile });
                }
                found_full.insert(profile);
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// Reserves an entry of the bound profile's Cmdb.
async fn allocate(
    machine: &Machine,
    profile: &str,
    captures: Option<Captures>,
    ctx: &Context,
    now: &super::Time,
) -> Result<Change, Error> {
    let namespace = machine.namespace().unwrap_or_default();
    let name = machine.name_any();
    let Some(bound) = ctx
        .profiles
        .state()
        .into_iter()
        .find(|p| p.name_any() == profile && p.namespace().as_deref() == Some(namespace.as_str()))
    else {
        return Err(Error::NotCached { kind: "HardwareProfile", name: profile.to_owned() });
    };
    let Some(cmdb) = bound.spec.cmdb_ref.as_ref().map(|r| r.name.clone()) else {
        return Ok(lifecycle::allocated_without_cmdb(machine, profile, now));
    };
    let captures = captures.unwrap_or_else(|| {
        // Not bound in this reconcile: the `$$` selectors come back from the rules' variables.
        let variables = machine.status.as_ref().map(|s| s.variables.clone()).unwrap_or_default();
        let selectors = match ctx.compiled(&bound).as_ref() {
            Ok(compiled) => compiled
                .rules
                .variables()
                .iter()
                .filter(|v| v.selector)
                .filter_map(|v| variables.get(&v.name).map(|value| (v.name.clone(), value.clone())))
                .collect(),
            Err(_) => Default::default(),
        };
        Captures { variables, selectors }
    });
    // An entry left in another Cmdb goes back first.
    let stale: Vec<String> = ctx
        .cmdbs
        .state()
        .iter()
        .filter(|c| c.namespace().as_deref() == Some(namespace.as_str()) && c.name_any() != cmdb)
        .filter(|c| c.status.as_ref().is_some_and(|s| s.allocations.iter().any(|r| r.machine == name)))
        .map(|c| c.name_any())
        .collect();
    release_from(&namespace, &name, stale.iter().map(String::as_str).collect(), ctx).await?;
    let request = CmdbRequest::Entry(EntryRequest::Allocate { machine: name.clone(), captures });
    let why = match ctx.cmdb_ledger.submit(&namespace, &cmdb, request).await {
        Ok(CmdbOutcome::Entry(EntryOutcome::Allocated(choice))) => {
            return Ok(lifecycle::allocated(machine, &cmdb, &choice, now));
        }
        Ok(CmdbOutcome::Entry(EntryOutcome::Refused(error @ AllocationError::Exhausted { .. }))) => {
            Unallocated::Exhausted(error.to_string())
        }
        Ok(CmdbOutcome::Entry(EntryOutcome::Refused(error))) => Unallocated::NoEntryMatched(error.to_string()),
        Ok(CmdbOutcome::Entry(EntryOutcome::Invalid(message))) => Unallocated::CmdbInvalid(message),
        Ok(_) => Unallocated::CmdbInvalid("the ledger gave no outcome".into()),
        Err(LedgerError::NotFound { .. }) => Unallocated::CmdbNotFound(cmdb.clone()),
        Err(error) => return Err(error.into()),
    };
    Ok(lifecycle::unallocated(machine, &cmdb, &why, now))
}

/// Gives back every slot and entry the machine holds: those its status names and those the
/// cached profiles and Cmdbs list (a claim whose status write never happened).
async fn release(machine: &Machine, ctx: &Context) -> Result<(), Error> {
    let namespace = machine.namespace().unwrap_or_default();
    let name = machine.name_any();
    let status = machine.status.clone().unwrap_or_default();
    let in_namespace = |ns: Option<String>| ns.as_deref() == Some(namespace.as_str());
    let mut profiles: BTreeSet<String> = status.profile.into_iter().collect();
    profiles.extend(
        ctx.profiles
            .state()
            .iter()
            .filter(|p| in_namespace(p.namespace()))
            .filter(|p| p.status.as_ref().is_some_and(|s| s.bound_machines.contains(&name)))
            .map(|p| p.name_any()),
    );
    let mut cmdbs: BTreeSet<String> = status.allocation.map(|a| a.cmdb).into_iter().collect();
    cmdbs.extend(
        ctx.cmdbs
            .state()
            .iter()
            .filter(|c| in_namespace(c.namespace()))
            .filter(|c| c.status.as_ref().is_some_and(|s| s.allocations.iter().any(|r| r.machine == name)))
            .map(|c| c.name_any()),
    );
    unbind_from(&namespace, &name, profiles.iter().map(String::as_str).collect(), ctx).await?;
    release_from(&namespace, &name, cmdbs.iter().map(String::as_str).collect(), ctx).await
}

async fn unbind_from(namespace: &str, machine: &str, profiles: Vec<&str>, ctx: &Context) -> Result<(), Error> {
    let requests = profiles.into_iter().map(|profile| {
        ctx.profile_ledger.submit(namespace, profile, ProfileRequest::Slot(SlotRequest::Unbind(machine.to_owned())))
    });
    for result in join_all(requests).await {
        match result {
            Ok(_) | Err(LedgerError::NotFound { .. }) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

async fn release_from(namespace: &str, machine: &str, cmdbs: Vec<&str>, ctx: &Context) -> Result<(), Error> {
    let requests = cmdbs.into_iter().map(|cmdb| {
        ctx.cmdb_ledger.submit(namespace, cmdb, CmdbRequest::Entry(EntryRequest::Release(machine.to_owned())))
    });
    for result in join_all(requests).await {
        match result {
            Ok(_) | Err(LedgerError::NotFound { .. }) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

/// Machines of `namespace` waiting for a profile (Inspecting, reported, not bound).
pub fn waiting_for_profile(ctx: &Context, namespace: &str) -> Vec<kube::runtime::reflector::ObjectRef<Machine>> {
    waiting(ctx, namespace, |status| {
        status.phase == Some(MachinePhase::Inspecting) && status.hardware.is_some() && status.profile.is_none()
    })
}

/// Machines of `namespace` waiting for a CMDB entry (Matched, not allocated).
pub fn waiting_for_entry(ctx: &Context, namespace: &str) -> Vec<kube::runtime::reflector::ObjectRef<Machine>> {
    waiting(ctx, namespace, |status| status.phase == Some(MachinePhase::Matched) && status.allocation.is_none())
}

fn waiting(
    ctx: &Context,
    namespace: &str,
    wants: impl Fn(&machinist_crds::MachineStatus) -> bool,
) -> Vec<kube::runtime::reflector::ObjectRef<Machine>> {
    ctx.machines
        .state()
        .iter()
        .filter(|m| m.namespace().as_deref() == Some(namespace))
        .filter(|m| m.status.as_ref().is_some_and(&wants))
        .map(|m| kube::runtime::reflector::ObjectRef::from_obj(m.as_ref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_status_written_leaves_other_writers_fields_alone() {
        let machine: Machine = serde_json::from_value(json!({
            "apiVersion": "machinist.dev/v1alpha1", "kind": "Machine", "metadata": {"name": "m"},
            "spec": {"interfaces": [{"mac": "52:54:00:00:00:01"}], "provider": {"manual": {}}},
            "status": {"phase": "Matched", "profile": "vm", "hardware": {"items": []}, "lastBoot": {"steps": []}},
        }))
        .unwrap_or_else(|e| unreachable!("{e}"));
        let owned = serde_json::to_value(owned_status(&machine)).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(owned["phase"], "Matched");
        assert_eq!(owned["profile"], "vm");
        assert!(owned.get("hardware").is_none());
        assert!(owned.get("lastBoot").is_none());
    }

    #[test]
    fn trimming_keeps_what_the_lifecycle_reads() {
        let mut machine: Machine = serde_json::from_value(json!({
            "apiVersion": "machinist.dev/v1alpha1", "kind": "Machine", "metadata": {"name": "m"},
            "spec": {"interfaces": [{"mac": "52:54:00:00:00:01"}], "provider": {"manual": {}}},
            "status": {"phase": "Inspecting", "hardware": {"items": [["cpu", "logical", "number", "2"]]}},
        }))
        .unwrap_or_else(|e| unreachable!("{e}"));
        let before = lifecycle::next(&machine);
        trim(&mut machine);
        assert_eq!(lifecycle::next(&machine), before);
        assert!(machine.status.and_then(|s| s.hardware).is_some_and(|h| h.items.is_empty()));
    }
}
