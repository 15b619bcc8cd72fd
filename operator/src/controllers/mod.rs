//! The controllers and what they share: the API client, caches of the kinds (kube-rs
//! reflectors), the ledgers that write profile, Cmdb and Hypervisor statuses, the libvirt
//! connections, metrics, events and backoff.
//!
//! Each reconcile follows the same pipeline: read what the object refers to from the caches →
//! decide with the pure modules ([`crate::lifecycle`], [`crate::binding`], [`crate::roles`],
//! [`pools::decide`]) → claim through the ledgers → write the status with one field manager
//! ([`apply_status`]) → publish Events for transitions only.
//!
//! A reconcile that fails goes to [`error_policy`]: it is counted, shown as an Event on the
//! object (the first failure of a streak, then at most once per [`FailureEvents::REPEAT`] per
//! reason, see [`FailureEvents`]), and retried with [`Backoff`] — or, for a deletion that waits
//! for its users, left until the object changes.

pub mod hypervisor;
pub mod machine;
pub mod pools;
pub mod role;
pub mod vm;

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use machinist_crds::{Cmdb, HardwareProfile, Hypervisor, Machine, Role};
use machinist_matching::{CompiledProfile, RulesError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::binding::ProfileView;
use crate::events::{Notice, Publisher};
use crate::jitter;
use crate::ledger::{CmdbBook, HypervisorBook, Ledger, LedgerError, ProfileBook};
use crate::libvirt::Hosts;
use crate::lifecycle::Transition;
use crate::metrics::Metrics;

/// The field manager of everything the controllers write besides the ledgers' statuses.
pub const FIELD_MANAGER: &str = "machinist-operator";

/// A reconcile that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("failed to {action} {kind} {name}: {source}")]
    Api {
        /// What was being done (`write the status of`, `read`).
        action: &'static str,
        /// Kind.
        kind: String,
        /// Name.
        name: String,
        /// The API's error.
        #[source]
        source: kube::Error,
    },
    /// A profile slot or CMDB entry could not be claimed or given back.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// An object is still used; its deletion waits (not an error to retry: a change wakes it).
    #[error("{kind} {name} is still used by {users} machines; deletion waits")]
    InUse {
        /// Kind.
        kind: &'static str,
        /// Name.
        name: String,
        /// How many.
        users: usize,
    },
    /// The finalizer could not be added or removed.
    #[error("finalizer of {name}: {message}")]
    Finalizer {
        /// Object.
        name: String,
        /// Why.
        message: String,
    },
    /// A libvirt (or other provider) call failed.
    #[error("the VM of {name}: {message}")]
    Provider {
        /// Machine.
        name: String,
        /// What failed.
        message: String,
    },
    /// A deletion waits for another controller to finish first (not an error to retry: a
    /// change wakes it).
    #[error("{kind} {name} waits: {what}")]
    Waiting {
        /// Kind.
        kind: &'static str,
        /// Name.
        name: String,
        /// For what.
        what: &'static str,
    },
    /// An object the reconcile needs is not in the cache yet.
    #[error("{kind} {name} is not in the cache yet")]
    NotCached {
        /// Kind.
        kind: &'static str,
        /// Name.
        name: String,
    },
}

impl Error {
    /// Whether the failure is a fault, shown as a Warning Event; a deletion waiting for its
    /// users ([`Error::InUse`]) is what the user asked for, shown as a Normal Event.
    pub fn warning(&self) -> bool {
        !matches!(self, Error::InUse { .. } | Error::Waiting { .. })
    }

    /// The metric label and Event reason of the error.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Api { .. } => "ApiError",
            Error::Ledger(_) => "LedgerError",
            Error::InUse { .. } => "InUse",
            Error::Provider { .. } => "ProviderError",
            Error::Waiting { .. } => "Waiting",
            Error::Finalizer { .. } => "FinalizerError",
            Error::NotCached { .. } => "NotCached",
        }
    }

    fn from_finalizer(name: &str, error: kube::runtime::finalizer::Error<Error>) -> Self {
        use kube::runtime::finalizer::Error as F;
        match error {
            F::ApplyFailed(e) | F::CleanupFailed(e) => e,
            other => Error::Finalizer { name: name.to_owned(), message: other.to_string() },
        }
    }
}

/// Exponential backoff with jitter per object, reset by a success: 0.5–1 s after the first
/// failure, doubling to at most 2.5–5 min.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    const BASE: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(300);

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The delay before retrying `key` after one more failure.
    pub fn failed(&self, key: &str) -> Duration {
        let mut failures = self.lock();
        let n = failures.entry(key.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        let full = Self::BASE.saturating_mul(1u32 << (*n - 1).min(16)).min(Self::MAX);
        jitter::between(full / 2, full)
    }

    /// `key` reconciled fine.
    pub fn succeeded(&self, key: &str) {
        let mut failures = self.lock();
        if !failures.is_empty() {
            failures.remove(key);
        }
    }
}

/// Which reconcile failures are shown as Events, so that an object failing again and again does
/// not flood them: the first failure of a streak (failures of one object with no success in
/// between), then at most one per [`FailureEvents::REPEAT`] for each reason; a new reason in a
/// streak is shown at once. A success ends the streak.
#[derive(Debug, Default)]
pub struct FailureEvents {
    /// Per object (`controller:namespace/name`) in a streak: when each reason was last shown.
    shown: Mutex<HashMap<String, HashMap<&'static str, Instant>>>,
}

impl FailureEvents {
    /// Least time between two Events of one object and reason in a streak.
    pub const REPEAT: Duration = Duration::from_secs(10 * 60);

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<&'static str, Instant>>> {
        self.shown.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a failure of `key` for `reason` at `now` is shown (and if so, records it).
    pub fn failed(&self, key: &str, reason: &'static str, now: Instant) -> bool {
        failure_shown(&mut self.lock(), key, reason, now, Self::REPEAT)
    }

    /// `key` reconciled fine: its streak ends.
    pub fn succeeded(&self, key: &str) {
        let mut shown = self.lock();
        if !shown.is_empty() {
            shown.remove(key);
        }
    }
}

/// [`FailureEvents::failed`], pure.
fn failure_shown(
    shown: &mut HashMap<String, HashMap<&'static str, Instant>>,
    key: &str,
    reason: &'static str,
    now: Instant,
    repeat: Duration,
) -> bool {
    let reasons = shown.entry(key.to_owned()).or_default();
    if reasons.get(reason).is_some_and(|at| now.saturating_duration_since(*at) < repeat) {
        return false;
    }
    reasons.insert(reason, now);
    true
}

/// An error's message followed by each of its causes not already in it: `a: b: c`.
pub fn cause_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}

/// What every controller shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// HardwareProfile statuses.
    pub profile_ledger: Ledger<ProfileBook>,
    /// Cmdb statuses.
    pub cmdb_ledger: Ledger<CmdbBook>,
    /// Hypervisor statuses (probes and placements).
    pub hypervisor_ledger: Ledger<HypervisorBook>,
    /// libvirt connections, one per Hypervisor URI.
    pub hosts: Hosts,
    /// Hypervisors (of the hypervisor namespace).
    pub hypervisors: Store<Hypervisor>,
    /// Where Hypervisors live.
    pub hypervisor_namespace: String,
    /// libvirt Machines (the VM controller's cache, trimmed like `machines`).
    pub vms: Store<Machine>,
    /// Wake-ups for the VM controller.
    pub vm_wake: mpsc::UnboundedSender<ObjectRef<Machine>>,
    /// Machines (trimmed: no hardware items, see [`machine::trim`]).
    pub machines: Store<Machine>,
    /// HardwareProfiles.
    pub profiles: Store<HardwareProfile>,
    /// Cmdbs.
    pub cmdbs: Store<Cmdb>,
    /// Roles.
    pub roles: Store<Role>,
    /// URL prefixes install images may come from (empty: any http(s) URL).
    pub image_sources: Vec<String>,
    /// Machines to reconcile again (a profile, Cmdb or Role they wait for changed).
    pub wake: mpsc::UnboundedSender<ObjectRef<Machine>>,
    events: Publisher,
    backoff: Backoff,
    failures: FailureEvents,
    compiled: Mutex<HashMap<String, (Option<i64>, Compiled)>>,
    /// Per profile or Cmdb: the generation and room last seen, to wake waiting machines only
    /// when either moved the right way (not on every batch write).
    room: Mutex<HashMap<String, (Option<i64>, i64)>>,
}

/// A profile's rules, parsed, or why they do not parse.
type Compiled = Arc<Result<CompiledProfile, RulesError>>;

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
    }
}

/// The stores and channels a [`Context`] is built from.
#[derive(Debug)]
pub struct Caches {
    /// Machines.
    pub machines: Store<Machine>,
    /// HardwareProfiles.
    pub profiles: Store<HardwareProfile>,
    /// Cmdbs.
    pub cmdbs: Store<Cmdb>,
    /// Roles.
    pub roles: Store<Role>,
    /// Hypervisors.
    pub hypervisors: Store<Hypervisor>,
    /// Where Hypervisors live.
    pub hypervisor_namespace: String,
    /// libvirt Machines (the VM controller's cache, trimmed like `machines`).
    pub vms: Store<Machine>,
    /// Wake-ups for the VM controller.
    pub vm_wake: mpsc::UnboundedSender<ObjectRef<Machine>>,
    /// Wake-ups for the Machine controller.
    pub wake: mpsc::UnboundedSender<ObjectRef<Machine>>,
}

impl Context {
    /// A context over `caches`.
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        caches: Caches,
        instance: Option<String>,
        image_sources: Vec<String>,
    ) -> Self {
        Self {
            profile_ledger: Ledger::new(client.clone(), ProfileBook, metrics.clone()),
            cmdb_ledger: Ledger::new(client.clone(), CmdbBook::default(), metrics.clone()),
            hypervisor_ledger: Ledger::new(client.clone(), HypervisorBook, metrics.clone()),
            hosts: Hosts::default(),
            hypervisors: caches.hypervisors,
            hypervisor_namespace: caches.hypervisor_namespace,
            vms: caches.vms,
            vm_wake: caches.vm_wake,
            events: Publisher::start(client.clone(), FIELD_MANAGER, instance),
            client,
            metrics,
            machines: caches.machines,
            profiles: caches.profiles,
            cmdbs: caches.cmdbs,
            roles: caches.roles,
            image_sources,
            wake: caches.wake,
            backoff: Backoff::default(),
            failures: FailureEvents::default(),
            compiled: Mutex::new(HashMap::new()),
            room: Mutex::new(HashMap::new()),
        }
    }

    /// The profiles of `namespace` as `machine`'s selection sees them (rules parsed once per
    /// generation).
    pub fn profile_views(&self, namespace: &str, machine: &str) -> Vec<ProfileView> {
        self.profiles
            .state()
            .iter()
            .filter(|p| p.namespace().as_deref() == Some(namespace))
            .map(|profile| {
                ProfileView::new(
                    profile.name_any(),
                    self.compiled(profile),
                    profile.status.as_ref().map_or(&[], |s| s.bound_machines.as_slice()),
                    machine,
                    profile.metadata.deletion_timestamp.is_some(),
                )
            })
            .collect()
    }

    /// Whether machines waiting on object `key` are worth waking: it is new, its spec changed,
    /// or it has more room (free slots or entries) than when last seen. Records what it saw.
    pub fn room_grew(&self, key: &str, generation: Option<i64>, room: i64) -> bool {
        room_grew(&mut self.room.lock().unwrap_or_else(std::sync::PoisonError::into_inner), key, generation, room)
    }

    /// A profile's rules, parsed once per generation.
    pub fn compiled(&self, profile: &HardwareProfile) -> Arc<Result<CompiledProfile, RulesError>> {
        let key = profile.uid().unwrap_or_else(|| profile.name_any());
        let generation = profile.metadata.generation;
        let mut cache = self.compiled.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((seen, compiled)) = cache.get(&key)
            && generation.is_some()
            && *seen == generation
        {
            return compiled.clone();
        }
        let compiled = Arc::new(CompiledProfile::new(&profile.name_any(), &profile.spec));
        cache.insert(key, (generation, compiled.clone()));
        compiled
    }

    /// Publishes Events for transitions (queued: written in the background, see [`crate::events`]).
    pub fn publish<K: Resource<DynamicType = ()>>(&self, object: &K, transitions: &[Transition], action: &str) {
        let reference = object.object_ref(&());
        for transition in transitions {
            let notice = Notice {
                warning: transition.warning,
                reason: transition.reason.clone(),
                note: truncate(&transition.message, 1024),
                action: action.to_owned(),
            };
            self.events.publish(&reference, notice);
        }
    }
}

/// [`Context::room_grew`], pure.
fn room_grew(seen: &mut HashMap<String, (Option<i64>, i64)>, key: &str, generation: Option<i64>, room: i64) -> bool {
    let grew = match seen.get(key) {
        None => true,
        Some((before, was)) => *before != generation || room > *was,
    };
    seen.insert(key.to_owned(), (generation, room));
    grew
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Now, as the API writes times.
pub fn now() -> Time {
    Time(jiff::Timestamp::now())
}

/// The key of an object for backoff and logs: `namespace/name`.
pub fn key<K: Resource>(object: &K) -> String {
    format!("{}/{}", object.namespace().unwrap_or_default(), object.name_any())
}

/// Writes `status` — a kind's status type, or the part of it the controller owns — to
/// `object` by server-side apply with [`FIELD_MANAGER`]: how the controllers write statuses
/// (the ledgers, which write HardwareProfile and Cmdb statuses under `resourceVersion`, aside).
pub async fn apply_status<K>(ctx: &Context, object: &K, status: &impl Serialize) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
{
    apply_status_as(ctx, object, status, FIELD_MANAGER).await
}

/// [`apply_status`] with another field manager (a controller that owns part of a status
/// another one writes too, as the VM controller does on Machines).
pub async fn apply_status_as<K>(ctx: &Context, object: &K, status: &impl Serialize, manager: &str) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
{
    let name = object.name_any();
    let failed = |source| Error::Api {
        action: "write the status of",
        kind: K::kind(&()).into_owned(),
        name: name.clone(),
        source,
    };
    let body = machinist_crds::apply::status::<K>(status).map_err(|e| failed(kube::Error::SerdeError(e)))?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &object.namespace().unwrap_or_default());
    api.patch_status(&name, &PatchParams::apply(manager).force(), &Patch::Apply(body)).await.map_err(failed)?;
    Ok(())
}

/// What a controller does after a failed reconcile. The failure is counted and, as
/// [`FailureEvents`] allows, shown as an Event on the object: reason [`Error::reason`], note the
/// error with its causes, Warning unless [`Error::warning`] says otherwise. Then an object still
/// in use waits for a change; anything else is retried with backoff.
pub fn error_policy<K: Resource<DynamicType = ()>>(
    controller: &'static str,
    object: &K,
    error: &Error,
    ctx: &Context,
) -> Action {
    ctx.metrics.failure(controller, error.reason());
    let streak = format!("{controller}:{}", key(object));
    if ctx.failures.failed(&streak, error.reason(), Instant::now()) {
        let transition =
            Transition { reason: error.reason().to_owned(), message: cause_chain(error), warning: error.warning() };
        ctx.publish(object, &[transition], "Reconcile");
    }
    match error {
        Error::InUse { .. } | Error::Waiting { .. } => Action::await_change(),
        _ => {
            let delay = ctx.backoff.failed(&streak);
            tracing::warn!(controller, object = %key(object), %error, retry_in_ms = delay.as_millis() as u64, "reconcile failed");
            Action::requeue(delay)
        }
    }
}

/// Runs `reconcile` under kube-runtime's finalizer `name` (added before `Apply`, removed after
/// a successful `Cleanup`), its errors as [`Error`]s, a success recorded with [`succeeded`]:
/// the frame of every controller whose objects hold a finalizer.
pub async fn with_finalizer<K, F, Fut>(
    controller: &'static str,
    name: &str,
    object: Arc<K>,
    ctx: &Context,
    reconcile: F,
) -> Result<Action, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + Debug,
    F: FnOnce(kube::runtime::finalizer::Event<K>) -> Fut,
    Fut: std::future::Future<Output = Result<Action, Error>>,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &object.namespace().unwrap_or_default());
    let object_name = object.name_any();
    let result = kube::runtime::finalizer(&api, name, object.clone(), reconcile)
        .await
        .map_err(|e| Error::from_finalizer(&object_name, e));
    if result.is_ok() {
        succeeded(controller, object.as_ref(), ctx);
    }
    result
}

/// Records a successful reconcile (resets the object's backoff, ends its streak of failures).
pub fn succeeded<K: Resource>(controller: &'static str, object: &K, ctx: &Context) {
    let streak = format!("{controller}:{}", key(object));
    ctx.backoff.succeeded(&streak);
    ctx.failures.succeeded(&streak);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_a_ceiling_and_resets() {
        let backoff = Backoff::default();
        let first = backoff.failed("a");
        assert!((Duration::from_millis(500)..=Duration::from_secs(1)).contains(&first), "{first:?}");
        let second = backoff.failed("a");
        assert!((Duration::from_secs(1)..=Duration::from_secs(2)).contains(&second), "{second:?}");
        for _ in 0..40 {
            backoff.failed("a");
        }
        let ceiling = backoff.failed("a");
        assert!((Duration::from_secs(150)..=Duration::from_secs(300)).contains(&ceiling), "{ceiling:?}");
        backoff.succeeded("a");
        assert!(backoff.failed("a") <= Duration::from_secs(1));
    }

    #[test]
    fn waiting_machines_are_woken_only_when_room_grows_or_the_spec_changes() {
        let mut seen = HashMap::new();
        assert!(room_grew(&mut seen, "p", Some(1), 5), "new");
        assert!(!room_grew(&mut seen, "p", Some(1), 4), "a slot taken");
        assert!(!room_grew(&mut seen, "p", Some(1), 4), "unchanged");
        assert!(room_grew(&mut seen, "p", Some(1), 5), "a slot freed");
        assert!(room_grew(&mut seen, "p", Some(2), 5), "spec changed");
        assert!(room_grew(&mut seen, "q", Some(2), 0), "another object is new");
    }

    #[test]
    fn a_failing_object_shows_its_first_failure_then_one_per_period_per_reason() {
        let mut shown = HashMap::new();
        let repeat = Duration::from_secs(600);
        let t0 = Instant::now();
        let at = |seconds: u64| t0 + Duration::from_secs(seconds);
        assert!(failure_shown(&mut shown, "m", "ApiError", at(0), repeat), "the first of a streak");
        assert!(!failure_shown(&mut shown, "m", "ApiError", at(1), repeat), "a retry");
        assert!(!failure_shown(&mut shown, "m", "ApiError", at(599), repeat), "still within the period");
        assert!(failure_shown(&mut shown, "m", "LedgerError", at(300), repeat), "a new reason");
        assert!(failure_shown(&mut shown, "n", "ApiError", at(300), repeat), "another object");
        assert!(failure_shown(&mut shown, "m", "ApiError", at(600), repeat), "a period later");
        assert!(!failure_shown(&mut shown, "m", "ApiError", at(601), repeat));
    }

    #[test]
    fn a_success_ends_the_streak() {
        let events = FailureEvents::default();
        let now = Instant::now();
        assert!(events.failed("m", "NotCached", now));
        assert!(!events.failed("m", "NotCached", now));
        events.succeeded("m");
        assert!(events.failed("m", "NotCached", now), "a new streak shows its first failure");
    }

    #[test]
    fn failures_are_warnings_but_a_deletion_waiting_for_its_users_is_not() {
        let in_use = Error::InUse { kind: "Cmdb", name: "pool".into(), users: 2 };
        assert_eq!((in_use.reason(), in_use.warning()), ("InUse", false));
        let uncached = Error::NotCached { kind: "HardwareProfile", name: "vm".into() };
        assert_eq!((uncached.reason(), uncached.warning()), ("NotCached", true));
        let ledger = Error::from(LedgerError::Contended { kind: "Cmdb", name: "pool".into() });
        assert_eq!((ledger.reason(), ledger.warning()), ("LedgerError", true));
    }

    #[test]
    fn event_notes_carry_each_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("connection refused")]
        struct Refused;
        #[derive(Debug, thiserror::Error)]
        #[error("request failed")]
        struct Request(#[source] Refused);
        let serde = serde_json::from_str::<u8>("x").map(drop).unwrap_err();
        let api = Error::Api {
            action: "write the status of",
            kind: "Machine".into(),
            name: "m".into(),
            source: kube::Error::SerdeError(serde),
        };
        let note = cause_chain(&api);
        assert!(note.starts_with("failed to write the status of Machine m: "), "{note}");
        assert_eq!(note.matches("expected value").count(), 1, "the cause is in the message once: {note}");
        assert_eq!(cause_chain(&Request(Refused)), "request failed: connection refused");
    }

    #[test]
    fn long_event_notes_are_cut_on_a_character_boundary() {
        let text = "é".repeat(600);
        let cut = truncate(&text, 1023);
        assert!(cut.ends_with('…') && cut.len() <= 1026, "{}", cut.len());
    }
}
