//! The HardwareProfile and Cmdb controllers: one reconcile for both kinds of pool (a [`Pool`]).
//! It forgets machines that no longer exist and refreshes counts and conditions (through the
//! ledgers, the only writers of those statuses), publishes a Warning Event when a condition
//! goes bad, wakes machines waiting for room, and holds a deletion while machines still use
//! the pool (finalizers [`PROFILE_FINALIZER`] and [`CMDB_FINALIZER`]).
//!
//! Every decision is made by [`decide`], pure, from the conditions before (the cached object)
//! and after (the status the ledger just refreshed and returned) and the fresh room and users.

use std::fmt::Debug;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::Event as FinalizerEvent;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use machinist_crds::common::Conditions;
use machinist_crds::{Cmdb, CmdbStatus, HardwareProfile, HardwareProfileStatus, Machine};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::machine::{waiting_for_entry, waiting_for_profile};
use super::{Context, Error, error_policy, with_finalizer};
use crate::binding::{EntryRequest, SlotRequest};
use crate::conditions;
use crate::ledger::{Book, CmdbBook, CmdbOutcome, CmdbRequest, Ledger, ProfileBook, ProfileOutcome, ProfileRequest};
use crate::lifecycle::Transition;

/// Finalizer of HardwareProfiles: deletion waits until no machine is bound.
pub const PROFILE_FINALIZER: &str = "hardwareprofiles.machinist.dev";
/// Finalizer of Cmdbs: deletion waits until no entry is allocated.
pub const CMDB_FINALIZER: &str = "cmdbs.machinist.dev";

/// A condition that, when it goes bad, is worth a Warning Event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Warning {
    /// The condition type (`Valid`, `Duplicates`).
    pub condition: &'static str,
    /// Its bad status (`"False"` for `Valid`, `"True"` for `Duplicates`).
    pub bad: &'static str,
    /// The Event's reason (`InvalidRules`, `DuplicateAddresses`).
    pub reason: &'static str,
}

/// A kind of pool machines take from: HardwareProfile (slots) or Cmdb (entries).
pub trait Pool:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + Serialize
    + DeserializeOwned
    + Debug
    + Send
    + Sync
    + 'static
{
    /// Its status.
    type Status: Default + Send;
    /// The ledger's rules for it.
    type Book: Book<Object = Self>;
    /// The controller, in metrics and logs.
    const CONTROLLER: &'static str;
    /// The finalizer holding its deletion.
    const FINALIZER: &'static str;
    /// Conditions that turn into Warning Events.
    const WARNINGS: &'static [Warning];

    /// Its status, as cached.
    fn pool_status(&self) -> Option<&Self::Status>;
    /// The conditions of a status.
    fn conditions(status: &Self::Status) -> &Conditions;
    /// The machines a status lists as users.
    fn users(status: &Self::Status) -> Vec<String>;
    /// Free slots or entries in `status` (`i64::MAX`: no limit; zero or less: full).
    fn room(&self, status: &Self::Status) -> i64;
    /// The ledger writing its status.
    fn ledger(ctx: &Context) -> &Ledger<Self::Book>;
    /// The request giving back what a vanished machine held.
    fn release(machine: String) -> <Self::Book as Book>::Request;
    /// The request recomputing counts and conditions.
    fn refresh() -> <Self::Book as Book>::Request;
    /// The status an outcome carries, if it is a refresh's.
    fn refreshed(outcome: <Self::Book as Book>::Outcome) -> Option<Self::Status>;
    /// The machines of `namespace` waiting for room in a pool of this kind.
    fn waiting(ctx: &Context, namespace: &str) -> Vec<ObjectRef<Machine>>;
}

impl Pool for HardwareProfile {
    type Status = HardwareProfileStatus;
    type Book = ProfileBook;
    const CONTROLLER: &'static str = "hardwareprofile";
    const FINALIZER: &'static str = PROFILE_FINALIZER;
    const WARNINGS: &'static [Warning] = &[Warning { condition: "Valid", bad: "False", reason: "InvalidRules" }];

    fn pool_status(&self) -> Option<&HardwareProfileStatus> {
        self.status.as_ref()
    }
    fn conditions(status: &HardwareProfileStatus) -> &Conditions {
        &status.conditions
    }
    fn users(status: &HardwareProfileStatus) -> Vec<String> {
        status.bound_machines.clone()
    }
    fn room(&self, status: &HardwareProfileStatus) -> i64 {
        let bound = i64::try_from(status.bound_machines.len()).unwrap_or(i64::MAX);
        self.spec.max_machines.map_or(i64::MAX, |max| i64::from(max).saturating_sub(bound))
    }
    fn ledger(ctx: &Context) -> &Ledger<ProfileBook> {
        &ctx.profile_ledger
    }
    fn release(machine: String) -> ProfileRequest {
        ProfileRequest::Slot(SlotRequest::Unbind(machine))
    }
    fn refresh() -> ProfileRequest {
        ProfileRequest::Refresh
    }
    fn refreshed(outcome: ProfileOutcome) -> Option<HardwareProfileStatus> {
        match outcome {
            ProfileOutcome::Refreshed(status) => Some(*status),
            ProfileOutcome::Slot(_) => None,
        }
    }
    fn waiting(ctx: &Context, namespace: &str) -> Vec<ObjectRef<Machine>> {
        waiting_for_profile(ctx, namespace)
    }
}

impl Pool for Cmdb {
    type Status = CmdbStatus;
    type Book = CmdbBook;
    const CONTROLLER: &'static str = "cmdb";
    const FINALIZER: &'static str = CMDB_FINALIZER;
    const WARNINGS: &'static [Warning] = &[
        Warning { condition: "Valid", bad: "False", reason: "InvalidEntries" },
        Warning { condition: "Duplicates", bad: "True", reason: "DuplicateAddresses" },
    ];

    fn pool_status(&self) -> Option<&CmdbStatus> {
        self.status.as_ref()
    }
    fn conditions(status: &CmdbStatus) -> &Conditions {
        &status.conditions
    }
    fn users(status: &CmdbStatus) -> Vec<String> {
        status.allocations.iter().map(|r| r.machine.clone()).collect()
    }
    fn room(&self, status: &CmdbStatus) -> i64 {
        i64::from(status.free)
    }
    fn ledger(ctx: &Context) -> &Ledger<CmdbBook> {
        &ctx.cmdb_ledger
    }
    fn release(machine: String) -> CmdbRequest {
        CmdbRequest::Entry(EntryRequest::Release(machine))
    }
    fn refresh() -> CmdbRequest {
        CmdbRequest::Refresh
    }
    fn refreshed(outcome: CmdbOutcome) -> Option<CmdbStatus> {
        match outcome {
            CmdbOutcome::Refreshed(status) => Some(*status),
            CmdbOutcome::Entry(_) => None,
        }
    }
    fn waiting(ctx: &Context, namespace: &str) -> Vec<ObjectRef<Machine>> {
        waiting_for_entry(ctx, namespace)
    }
}

/// What one pool reconcile saw, for [`decide`].
#[derive(Clone, Copy, Debug)]
pub struct Seen<'a> {
    /// The conditions as cached: what users were last shown.
    pub before: &'a Conditions,
    /// The conditions the ledger just refreshed.
    pub after: &'a Conditions,
    /// Free slots or entries in the fresh status ([`Pool::room`]).
    pub room: i64,
    /// Machines the fresh status lists.
    pub users: usize,
    /// The pool is new, its spec changed, or its room grew since last seen
    /// ([`Context::room_grew`]).
    pub grew: bool,
    /// The pool is being deleted.
    pub deleting: bool,
}

/// What a pool reconcile does, from [`decide`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Warning Events to publish.
    pub transitions: Vec<Transition>,
    /// Reconcile the machines waiting for room.
    pub wake: bool,
    /// The deletion waits for this many machines ([`Error::InUse`]).
    pub in_use: Option<usize>,
}

/// Decides a pool reconcile: a Warning for each of `warnings` that is bad after and was not
/// before (so once per time it goes bad); waking waiting machines when room grew and the pool
/// can give some (not deleting, not full, `Valid` not `False`); holding the deletion while the
/// fresh status still lists users.
pub fn decide(warnings: &[Warning], seen: &Seen<'_>) -> Decision {
    fn bad<'c>(conditions: &'c Conditions, warning: &Warning) -> Option<&'c Condition> {
        conditions::find(conditions, warning.condition).filter(|c| c.status == warning.bad)
    }
    let transitions = warnings
        .iter()
        .filter(|w| bad(seen.before, w).is_none())
        .filter_map(|w| {
            bad(seen.after, w).map(|c| Transition {
                reason: w.reason.to_owned(),
                message: c.message.clone(),
                warning: true,
            })
        })
        .collect();
    let invalid = conditions::find(seen.after, "Valid").is_some_and(|c| c.status == "False");
    Decision {
        transitions,
        wake: seen.grew && seen.room > 0 && !invalid && !seen.deleting,
        in_use: (seen.deleting && seen.users > 0).then_some(seen.users),
    }
}

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

/// Reconciles one HardwareProfile or Cmdb.
pub async fn reconcile<P: Pool>(pool: Arc<P>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile(P::CONTROLLER);
    with_finalizer(P::CONTROLLER, P::FINALIZER, pool, &ctx, |event| refresh(ctx.clone(), event)).await
}

/// The HardwareProfile and Cmdb controllers' error policy.
pub fn on_error<P: Pool>(pool: Arc<P>, error: &Error, ctx: Arc<Context>) -> Action {
    error_policy(P::CONTROLLER, pool.as_ref(), error, &ctx)
}

async fn refresh<P: Pool>(ctx: Arc<Context>, event: FinalizerEvent<P>) -> Result<Action, Error> {
    let (pool, deleting) = match event {
        FinalizerEvent::Apply(p) => (p, false),
        FinalizerEvent::Cleanup(p) => (p, true),
    };
    let namespace = pool.namespace().unwrap_or_default();
    let name = pool.name_any();
    let listed = pool.pool_status().map(P::users).unwrap_or_default();
    let mut requests: Vec<_> = vanished(&ctx, &namespace, &listed).await.into_iter().map(P::release).collect();
    requests.push(P::refresh());
    let mut fresh = None;
    for request in requests {
        if let Some(status) = P::refreshed(P::ledger(&ctx).submit(&namespace, &name, request).await?) {
            fresh = Some(status);
        }
    }
    // Decided from the status just refreshed, not the cached one, which may be behind.
    let fresh = fresh.unwrap_or_default();
    let room = pool.room(&fresh);
    let kind = <P::Book as Book>::KIND;
    let grew = ctx.room_grew(&format!("{kind}/{namespace}/{name}"), pool.meta().generation, room);
    let none = Conditions::new();
    let decision = decide(
        P::WARNINGS,
        &Seen {
            before: pool.pool_status().map_or(&none, P::conditions),
            after: P::conditions(&fresh),
            room,
            users: P::users(&fresh).len(),
            grew,
            deleting,
        },
    );
    ctx.publish(pool.as_ref(), &decision.transitions, "Validate");
    if decision.wake {
        for machine in P::waiting(&ctx, &namespace) {
            let _ = ctx.wake.send(machine); // the Machine controller stopped: nothing to wake
        }
    }
    if let Some(users) = decision.in_use {
        return Err(Error::InUse { kind, name, users });
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn condition(type_: &str, status: &str, message: &str) -> Condition {
        Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: "Because".to_owned(),
            message: message.to_owned(),
            last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
            observed_generation: Some(1),
        }
    }

    fn valid(ok: bool) -> Conditions {
        vec![condition("Valid", if ok { "True" } else { "False" }, if ok { "3 entries" } else { "bad entry 2" })]
    }

    fn seen<'a>(before: &'a Conditions, after: &'a Conditions) -> Seen<'a> {
        Seen { before, after, room: 5, users: 0, grew: true, deleting: false }
    }

    fn reasons(decision: &Decision) -> Vec<&str> {
        decision.transitions.iter().map(|t| t.reason.as_str()).collect()
    }

    #[test]
    fn becoming_invalid_publishes_once() {
        let (none, good, bad) = (Conditions::new(), valid(true), valid(false));
        let became = decide(Cmdb::WARNINGS, &seen(&good, &bad));
        assert_eq!(reasons(&became), ["InvalidEntries"]);
        assert_eq!(became.transitions[0].message, "bad entry 2");
        assert!(became.transitions[0].warning);
        assert_eq!(reasons(&decide(Cmdb::WARNINGS, &seen(&none, &bad))), ["InvalidEntries"], "created invalid");
        assert_eq!(reasons(&decide(HardwareProfile::WARNINGS, &seen(&none, &bad))), ["InvalidRules"]);
    }

    #[test]
    fn staying_invalid_or_becoming_valid_publishes_nothing() {
        let (good, bad) = (valid(true), valid(false));
        assert!(decide(Cmdb::WARNINGS, &seen(&bad, &bad)).transitions.is_empty(), "still invalid");
        assert!(decide(Cmdb::WARNINGS, &seen(&bad, &good)).transitions.is_empty(), "fixed");
        assert!(decide(Cmdb::WARNINGS, &seen(&good, &good)).transitions.is_empty());
    }

    #[test]
    fn each_watched_condition_publishes_on_its_own_transition() {
        let before = vec![condition("Duplicates", "False", "unique"), condition("Valid", "True", "3 entries")];
        let after = vec![condition("Duplicates", "True", "10.0.0.1 in entries 0, 2"), condition("Valid", "True", "")];
        let decision = decide(Cmdb::WARNINGS, &seen(&before, &after));
        assert_eq!(reasons(&decision), ["DuplicateAddresses"]);
        assert_eq!(decision.transitions[0].message, "10.0.0.1 in entries 0, 2");
        assert!(decide(Cmdb::WARNINGS, &seen(&after, &after)).transitions.is_empty(), "still duplicated");
        assert!(decide(HardwareProfile::WARNINGS, &seen(&before, &after)).transitions.is_empty(), "not a profile's");
    }

    #[test]
    fn room_growth_wakes_only_a_pool_that_can_give_some() {
        let (good, bad) = (valid(true), valid(false));
        assert!(decide(Cmdb::WARNINGS, &seen(&good, &good)).wake);
        assert!(!decide(Cmdb::WARNINGS, &Seen { grew: false, ..seen(&good, &good) }).wake, "no growth");
        assert!(!decide(Cmdb::WARNINGS, &Seen { deleting: true, ..seen(&good, &good) }).wake, "deleting");
        assert!(!decide(Cmdb::WARNINGS, &Seen { room: 0, ..seen(&good, &good) }).wake, "full");
        assert!(!decide(Cmdb::WARNINGS, &Seen { room: -2, ..seen(&good, &good) }).wake, "over full");
        assert!(!decide(Cmdb::WARNINGS, &seen(&good, &bad)).wake, "invalid");
        assert!(decide(Cmdb::WARNINGS, &seen(&bad, &good)).wake, "valid again");
    }

    #[test]
    fn deletion_waits_while_the_fresh_status_lists_users() {
        let good = valid(true);
        let deleting = |users| Seen { deleting: true, users, ..seen(&good, &good) };
        assert_eq!(decide(Cmdb::WARNINGS, &deleting(3)).in_use, Some(3));
        assert_eq!(decide(Cmdb::WARNINGS, &deleting(0)).in_use, None, "released: the deletion goes on");
        assert_eq!(decide(Cmdb::WARNINGS, &Seen { users: 3, ..seen(&good, &good) }).in_use, None, "not deleting");
    }

    fn object<K: DeserializeOwned>(kind: &str, spec: serde_json::Value) -> K {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "machinist.dev/v1alpha1", "kind": kind, "metadata": {"name": "pool"}, "spec": spec,
            "status": {},
        }))
        .unwrap_or_else(|e| unreachable!("{e}"))
    }

    #[test]
    fn room_comes_from_the_status_given() {
        let profile: HardwareProfile =
            object("HardwareProfile", serde_json::json!({"priority": 1, "maxMachines": 3, "match": []}));
        let fresh =
            HardwareProfileStatus { bound_machines: vec!["a".into(), "b".into(), "c".into()], ..Default::default() };
        assert_eq!(profile.room(&fresh), 0, "full by the status given, whatever the cached one says");
        assert_eq!(profile.room(&HardwareProfileStatus::default()), 3);
        assert_eq!(HardwareProfile::users(&fresh), ["a", "b", "c"]);
        let unlimited: HardwareProfile = object("HardwareProfile", serde_json::json!({"priority": 1, "match": []}));
        assert_eq!(unlimited.room(&fresh), i64::MAX);
        let cmdb: Cmdb = object("Cmdb", serde_json::json!({"entries": [{"ip": "10.0.0.1"}]}));
        assert_eq!(cmdb.room(&CmdbStatus { free: 4, ..Default::default() }), 4);
        assert!(Cmdb::users(&CmdbStatus::default()).is_empty());
    }
}
