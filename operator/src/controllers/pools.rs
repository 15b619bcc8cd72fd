//! The HardwareProfile and Cmdb controllers: they keep counts and conditions current (through
//! the ledgers, the only writers of those statuses), forget machines that no longer exist, wake
//! machines waiting for room, and hold a deletion while machines still use the object
//! (finalizers [`PROFILE_FINALIZER`] and [`CMDB_FINALIZER`]).

use std::sync::Arc;

use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::{Api, ResourceExt};
use machinist_crds::{Cmdb, HardwareProfile, Machine};

use super::machine::{waiting_for_entry, waiting_for_profile};
use super::{Context, Error, error_policy, succeeded};
use crate::binding::{EntryRequest, SlotRequest};
use crate::conditions;
use crate::ledger::{CmdbOutcome, CmdbRequest, ProfileOutcome, ProfileRequest};
use crate::lifecycle::Transition;

/// Finalizer of HardwareProfiles: deletion waits until no machine is bound.
pub const PROFILE_FINALIZER: &str = "hardwareprofiles.machinist.dev";
/// Finalizer of Cmdbs: deletion waits until no entry is allocated.
pub const CMDB_FINALIZER: &str = "cmdbs.machinist.dev";

/// Names listed in a status whose Machine does not exist: confirmed with a read, since the
/// cache may not have seen a new Machine yet.
async fn vanished(ctx: &Context, namespace: &str, listed: &[String]) -> Vec<String> {
    let cached: std::collections::HashSet<String> = ctx
        .machines
        .state()
        .iter()
        .filter(|m| m.namespace().as_deref() == Some(namespace))
        .map(|m| m.name_any())
        .collect();
    let api: Api<Machine> = Api::namespaced(ctx.client.clone(), namespace);
    let mut gone = Vec::new();
    for name in listed.iter().filter(|m| !cached.contains(*m)) {
        if let Ok(None) = api.get_opt(name).await {
            gone.push(name.clone());
        }
    }
    gone
}

/// Reconciles one HardwareProfile.
pub async fn reconcile_profile(profile: Arc<HardwareProfile>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile("hardwareprofile");
    let namespace = profile.namespace().unwrap_or_default();
    let api: Api<HardwareProfile> = Api::namespaced(ctx.client.clone(), &namespace);
    let name = profile.name_any();
    let result = finalizer(&api, PROFILE_FINALIZER, profile.clone(), |event| refresh_profile(ctx.clone(), event))
        .await
        .map_err(|e| Error::from_finalizer(&name, e));
    if result.is_ok() {
        succeeded("hardwareprofile", profile.as_ref(), &ctx);
    }
    result
}

async fn refresh_profile(ctx: Arc<Context>, event: FinalizerEvent<HardwareProfile>) -> Result<Action, Error> {
    let (profile, deleting) = match event {
        FinalizerEvent::Apply(p) => (p, false),
        FinalizerEvent::Cleanup(p) => (p, true),
    };
    let namespace = profile.namespace().unwrap_or_default();
    let name = profile.name_any();
    {
        let listed = profile.status.as_ref().map(|s| s.bound_machines.clone()).unwrap_or_default();
        let mut requests: Vec<ProfileRequest> = vanished(&ctx, &namespace, &listed)
            .await
            .into_iter()
            .map(|m| ProfileRequest::Slot(SlotRequest::Unbind(m)))
            .collect();
        requests.push(ProfileRequest::Refresh);
        let mut refreshed = None;
        for request in requests {
            if let ProfileOutcome::Refreshed(status) = ctx.profile_ledger.submit(&namespace, &name, request).await? {
                refreshed = Some(status);
            }
        }
        let invalid = ctx.compiled(&profile).as_ref().as_ref().err().map(ToString::to_string);
        let was_invalid =
            profile.status.as_ref().and_then(|s| conditions::find(&s.conditions, "Valid")).map(|c| c.status == "False");
        if let Some(message) = &invalid
            && was_invalid != Some(true)
        {
            let transition = Transition { reason: "InvalidRules".into(), message: message.clone(), warning: true };
            ctx.publish(profile.as_ref(), &[transition], "Validate");
        }
        let bound = profile.status.as_ref().map_or(0, |s| s.bound_machines.len());
        let full =
            profile.spec.max_machines.is_some_and(|max| i64::try_from(bound).unwrap_or(i64::MAX) >= i64::from(max));
        let room =
            profile.spec.max_machines.map_or(i64::MAX, |max| i64::from(max) - i64::try_from(bound).unwrap_or(i64::MAX));
        let grew = ctx.room_grew(&format!("HardwareProfile/{namespace}/{name}"), profile.metadata.generation, room);
        if grew && !full && invalid.is_none() && !deleting {
            for machine in waiting_for_profile(&ctx, &namespace) {
                let _ = ctx.wake.send(machine); // the Machine controller stopped: nothing to wake
            }
        }
        if deleting {
            // Let go only once the ledger's fresh copy has no machine left.
            let users = refreshed.map_or(0, |s| s.bound_machines.len());
            if users > 0 {
                return Err(Error::InUse { kind: "HardwareProfile", name: name.clone(), users });
            }
        }
        Ok(Action::await_change())
    }
}

/// The HardwareProfile controller's error policy.
pub fn on_profile_error(profile: Arc<HardwareProfile>, error: &Error, ctx: Arc<Context>) -> Action {
    error_policy("hardwareprofile", profile.as_ref(), error, &ctx)
}

/// Reconciles one Cmdb.
pub async fn reconcile_cmdb(cmdb: Arc<Cmdb>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile("cmdb");
    let namespace = cmdb.namespace().unwrap_or_default();
    let api: Api<Cmdb> = Api::namespaced(ctx.client.clone(), &namespace);
    let name = cmdb.name_any();
    let result = finalizer(&api, CMDB_FINALIZER, cmdb.clone(), |event| refresh_cmdb(ctx.clone(), event))
        .await
        .map_err(|e| Error::from_finalizer(&name, e));
    if result.is_ok() {
        succeeded("cmdb", cmdb.as_ref(), &ctx);
    }
    result
}

async fn refresh_cmdb(ctx: Arc<Context>, event: FinalizerEvent<Cmdb>) -> Result<Action, Error> {
    let (cmdb, deleting) = match event {
        FinalizerEvent::Apply(c) => (c, false),
        FinalizerEvent::Cleanup(c) => (c, true),
    };
    let namespace = cmdb.namespace().unwrap_or_default();
    let name = cmdb.name_any();
    {
        let listed: Vec<String> =
            cmdb.status.as_ref().map(|s| s.allocations.iter().map(|r| r.machine.clone()).collect()).unwrap_or_default();
        let mut requests: Vec<CmdbRequest> = vanished(&ctx, &namespace, &listed)
            .await
            .into_iter()
            .map(|m| CmdbRequest::Entry(EntryRequest::Release(m)))
            .collect();
        requests.push(CmdbRequest::Refresh);
        let mut refreshed = None;
        for request in requests {
            if let CmdbOutcome::Refreshed(status) = ctx.cmdb_ledger.submit(&namespace, &name, request).await? {
                refreshed = Some(status);
            }
        }
        let status = cmdb.status.clone().unwrap_or_default();
        let valid_before = conditions::find(&status.conditions, "Valid").map(|c| c.status.clone());
        let duplicates_before = conditions::is_true(&status.conditions, "Duplicates");
        // The status just refreshed, to compare conditions with what they were.
        let fresh_status = refreshed.map(|s| *s).unwrap_or_default();
        let mut transitions = Vec::new();
        if let Some(valid) = conditions::find(&fresh_status.conditions, "Valid")
            && valid.status == "False"
            && valid_before.as_deref() != Some("False")
        {
            transitions.push(Transition {
                reason: "InvalidEntries".into(),
                message: valid.message.clone(),
                warning: true,
            });
        }
        if let Some(dups) = conditions::find(&fresh_status.conditions, "Duplicates")
            && dups.status == "True"
            && !duplicates_before
        {
            transitions.push(Transition {
                reason: "DuplicateAddresses".into(),
                message: dups.message.clone(),
                warning: true,
            });
        }
        ctx.publish(cmdb.as_ref(), &transitions, "Validate");
        let grew =
            ctx.room_grew(&format!("Cmdb/{namespace}/{name}"), cmdb.metadata.generation, i64::from(fresh_status.free));
        if grew && fresh_status.free > 0 && !deleting {
            for machine in waiting_for_entry(&ctx, &namespace) {
                let _ = ctx.wake.send(machine); // the Machine controller stopped: nothing to wake
            }
        }
        if deleting && !fresh_status.allocations.is_empty() {
            return Err(Error::InUse { kind: "Cmdb", name: name.clone(), users: fresh_status.allocations.len() });
        }
        Ok(Action::await_change())
    }
}

/// The Cmdb controller's error policy.
pub fn on_cmdb_error(cmdb: Arc<Cmdb>, error: &Error, ctx: Arc<Context>) -> Action {
    error_policy("cmdb", cmdb.as_ref(), error, &ctx)
}
