//! The server's own controllers: namespace deletion, CRD deletion (the
//! `customresourcecleanup.apiextensions.k8s.io` finalizer), garbage collection of dependents
//! (ownerReferences, with the `foregroundDeletion` and `orphan` finalizers) and Event expiry.
//!
//! Their work follows what changed: an [`index`] of the store, built from its snapshot at
//! start and kept up to date from its changes, says which objects a change made worth looking
//! at (an owner's dependents, a deleting namespace or CRD, an object whose owners may be gone)
//! and when the next Event expires, so a pass looks at those, not at every object. The whole
//! index is rebuilt from the store every ten minutes (and when the changes outran it) as a
//! safety net.

pub mod index;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio_util::sync::CancellationToken;

use crate::controllers::index::{Index, ObjectRef};
use crate::semantics::meta::{self, meta_str};
use crate::semantics::ops::{self, CUSTOM_RESOURCE_CLEANUP, DeleteOptions, Patch};
use crate::semantics::registry::{Builtin, Resource};
use crate::semantics::request::{FieldValidation, Request};
use crate::semantics::state::Api;
use crate::store::{ObjectKey, Precondition, ResourceKey, revision_of};

/// How often the index is rebuilt from the whole store, as a safety net: the controllers
/// otherwise act on changes.
const RESYNC: Duration = Duration::from_secs(600);
/// The field manager of the server's own writes.
const MANAGER: &str = "machinist-apiserver";

/// What the controllers have done, for tests and diagnostics.
#[derive(Debug, Default)]
pub struct Activity {
    examined: AtomicU64,
    rebuilds: AtomicU64,
}

impl Activity {
    /// Objects the controllers have looked at so far (each marked object, expired Event,
    /// dependent and namespace member a pass reads).
    pub fn examined(&self) -> u64 {
        self.examined.load(Ordering::Relaxed)
    }

    /// Times the index was built from the whole store.
    pub fn rebuilds(&self) -> u64 {
        self.rebuilds.load(Ordering::Relaxed)
    }

    fn examine(&self, count: usize) {
        self.examined.fetch_add(count as u64, Ordering::Relaxed);
    }
}

/// Where Events are stored.
fn events() -> ResourceKey {
    ResourceKey::new("", "events")
}

/// Runs until shutdown.
pub async fn run(api: Arc<Api>, shutdown: CancellationToken, activity: Arc<Activity>) {
    // Subscribed before the snapshot: a change is either in it or received (or both; the
    // index skips what its snapshot holds).
    let mut changes = api.store.subscribe();
    let mut index = Index::new(events());
    let mut rebuild = true;
    let mut resync = tokio::time::interval_at(tokio::time::Instant::now() + RESYNC, RESYNC);
    let ttl = jiff::SignedDuration::try_from(api.limits.event_ttl).unwrap_or(jiff::SignedDuration::MAX);
    loop {
        if std::mem::take(&mut rebuild) {
            let (revision, objects) = api.store.snapshot();
            index.rebuild(revision, objects.into_iter().map(|(resource, o)| (resource, index::skeleton(&o))));
            activity.rebuilds.fetch_add(1, Ordering::Relaxed);
        }
        let now = jiff::Timestamp::now();
        let expired_before = now.checked_sub(ttl).unwrap_or(jiff::Timestamp::MIN);
        if index.has_work(expired_before) {
            let (api, activity) = (Arc::clone(&api), Arc::clone(&activity));
            match tokio::task::spawn_blocking(move || {
                pass(&api, &mut index, expired_before, &activity);
                index
            })
            .await
            {
                Ok(returned) => index = returned,
                Err(error) => {
                    tracing::error!(%error, "controller pass failed; rebuilding its index");
                    index = Index::new(events());
                    rebuild = true;
                    continue;
                }
            }
        }
        // Until a change, the next Event's expiry, or the safety net.
        let next_expiry = index
            .next_event_written()
            .and_then(|written| written.checked_add(ttl).ok())
            .map(|due| Duration::try_from(due.duration_since(jiff::Timestamp::now())).unwrap_or(Duration::ZERO))
            .unwrap_or(RESYNC)
            .min(RESYNC);
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = resync.tick() => rebuild = true,
            () = tokio::time::sleep(next_expiry) => {}
            received = changes.recv() => match received {
                Ok(change) => index.apply(change.revision, change.kind, &change.resource, &index::skeleton(&change.object)),
                Err(RecvError::Lagged(_)) => rebuild = true,
                Err(RecvError::Closed) => return,
            },
        }
        // Changes that arrived meanwhile go into the same pass (a namespace or owner deletion
        // produces a burst of them).
        loop {
            match changes.try_recv() {
                Ok(change) => {
                    index.apply(change.revision, change.kind, &change.resource, &index::skeleton(&change.object))
                }
                Err(TryRecvError::Lagged(_)) => rebuild = true,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Closed) => return,
            }
        }
    }
}

/// The served resource of each storage (events.k8s.io shares the core events' storage).
fn served(api: &Api) -> HashMap<ResourceKey, Arc<Resource>> {
    let mut served = HashMap::new();
    for resource in api.registry().all().iter().filter(|r| r.builtin != Some(Builtin::EventsV1)) {
        served.entry(resource.storage.clone()).or_insert_with(|| Arc::clone(resource));
    }
    served
}

/// One pass over what the index marked: expire Events past their TTL, collect orphaned
/// dependents, honour foreground and orphan deletions, finish namespace and CRD deletions.
pub fn pass(api: &Api, index: &mut Index, expired_before: jiff::Timestamp, activity: &Activity) {
    let served = served(api);
    let expired = index.take_events_written_before(expired_before);
    activity.examine(expired.len());
    for place in &expired {
        if let (Some(resource), Some(event)) = (served.get(&place.resource), api.store.get(&place.resource, &place.key))
        {
            delete(api, resource, &event);
        }
    }
    let marked = index.take_marked();
    activity.examine(marked.len());
    for place in &marked {
        examine(api, index, &served, place, activity);
    }
}

/// Looks at one marked object, as the index has seen it: a newer version in the store is
/// left to the change that will announce it.
fn examine(
    api: &Api,
    index: &Index,
    served: &HashMap<ResourceKey, Arc<Resource>>,
    place: &ObjectRef,
    activity: &Activity,
) {
    let (Some(resource), Some(object), Some(entry)) =
        (served.get(&place.resource), api.store.get(&place.resource, &place.key), index.get(place))
    else {
        return;
    };
    if revision_of(&object) != entry.revision {
        return;
    }
    if !entry.deleting {
        // Background collection: every owner is gone. The object must still be the version
        // the index judged (an owner added since would otherwise be missed).
        if index.orphaned(place) {
            let options = DeleteOptions {
                uid: Some(entry.uid.clone()),
                resource_version: Some(entry.revision.to_string()),
                ..DeleteOptions::default()
            };
            delete_with(api, resource, &object, &options);
        }
        return;
    }
    let finalizers = meta::finalizers(&object);
    let dependents: Vec<(Arc<Resource>, Arc<Value>)> = index
        .dependents(&entry.uid)
        .iter()
        .filter_map(|d| Some((Arc::clone(served.get(&d.resource)?), api.store.get(&d.resource, &d.key)?)))
        .collect();
    activity.examine(dependents.len());
    if finalizers.iter().any(|f| f == "foregroundDeletion") {
        if dependents.is_empty() {
            remove_finalizer(api, resource, &object, "foregroundDeletion");
        } else {
            for (dependent_resource, dependent) in &dependents {
                if dependent.pointer("/metadata/deletionTimestamp").is_none() {
                    delete(api, dependent_resource, dependent);
                }
            }
        }
    }
    if finalizers.iter().any(|f| f == "orphan") {
        for (dependent_resource, dependent) in &dependents {
            let kept: Vec<Value> = dependent
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .map(|refs| refs.iter().filter(|r| r["uid"] != entry.uid.as_str()).cloned().collect())
                .unwrap_or_default();
            let patch = json!({"metadata": {"ownerReferences": if kept.is_empty() { Value::Null } else { Value::Array(kept) }}});
            if let Err(error) = api.patch(&request(dependent_resource, dependent), Patch::Merge(patch)) {
                tracing::warn!(%error, "failed to orphan a dependent");
            }
        }
        remove_finalizer(api, resource, &object, "orphan");
    }
    if resource.builtin == Some(Builtin::Namespace) {
        finish_namespace(api, index, served, &object, activity);
    }
    if resource.builtin == Some(Builtin::CustomResourceDefinition) {
        finish_custom_resource_definition(api, served, resource, &object);
    }
}

fn request(resource: &Arc<Resource>, object: &Value) -> Request {
    Request {
        resource: Arc::clone(resource),
        version: resource.storage_version().to_owned(),
        namespace: meta_str(object, "namespace").filter(|n| !n.is_empty()).map(str::to_owned),
        name: meta_str(object, "name").map(str::to_owned),
        subresource: None,
        dry_run: false,
        field_manager: MANAGER.into(),
        field_validation: FieldValidation::Ignore,
    }
}

/// Deletes an object the controllers read, with its uid as precondition, as Kubernetes'
/// garbage collector does: an object of the same name made since (a new uid) is not the one
/// deleted.
pub fn delete(api: &Api, resource: &Arc<Resource>, object: &Value) {
    let options = DeleteOptions { uid: meta_str(object, "uid").map(str::to_owned), ..DeleteOptions::default() };
    delete_with(api, resource, object, &options);
}

fn delete_with(api: &Api, resource: &Arc<Resource>, object: &Value, options: &DeleteOptions) {
    match api.delete(&request(resource, object), options) {
        Ok(_) => {}
        // Gone, or another object (or version) of that name by now.
        Err(error) if error.code == 404 || error.code == 409 => {}
        Err(error) => tracing::warn!(%error, name = meta_str(object, "name"), "failed to delete a dependent"),
    }
}

fn remove_finalizer(api: &Api, resource: &Arc<Resource>, object: &Value, finalizer: &str) {
    let kept: Vec<String> = meta::finalizers(object).into_iter().filter(|f| f != finalizer).collect();
    let patch = json!({"metadata": {"finalizers": kept, "resourceVersion": revision_of(object).to_string()}});
    match api.patch(&request(resource, object), Patch::Merge(patch)) {
        Ok(_) => {}
        Err(error) if error.code == 404 || error.code == 409 => {}
        Err(error) => tracing::warn!(%error, finalizer, "failed to remove a finalizer"),
    }
}

/// Deletes everything in a terminating namespace (what the index holds in it); once it is
/// empty, removes the namespace.
fn finish_namespace(
    api: &Api,
    index: &Index,
    served: &HashMap<ResourceKey, Arc<Resource>>,
    namespace: &Value,
    activity: &Activity,
) {
    let name = meta_str(namespace, "name").unwrap_or_default();
    let mut remaining = 0usize;
    let contents = index.in_namespace(name);
    activity.examine(contents.len());
    for place in &contents {
        let Some(resource) = served.get(&place.resource) else { continue };
        remaining += 1;
        if index.get(place).is_some_and(|e| e.deleting) {
            continue;
        }
        if let Some(item) = api.store.get(&place.resource, &place.key) {
            delete(api, resource, &item);
        }
    }
    if remaining > 0 {
        return;
    }
    let key = ResourceKey::new("", "namespaces");
    let object_key = ObjectKey::new("", name);
    let spec_finalizers =
        namespace.pointer("/spec/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty());
    let result = if spec_finalizers || !meta::finalizers(namespace).is_empty() {
        let mut finalized = namespace.clone();
        finalized["spec"]["finalizers"] = json!([]);
        if meta::finalizers(namespace).is_empty() {
            api.store.delete(&key, &object_key, Precondition::Revision(revision_of(namespace))).map(drop)
        } else {
            api.store.put(&key, finalized, Precondition::Revision(revision_of(namespace))).map(drop)
        }
    } else {
        api.store.delete(&key, &object_key, Precondition::Revision(revision_of(namespace))).map(drop)
    };
    if let Err(error) = result {
        tracing::debug!(%error, namespace = name, "namespace finalization will be retried");
    }
}

/// Finishes a CRD being deleted, as Kubernetes' CRD finalizer controller does: condition
/// `Terminating` (`InstanceDeletionInProgress`), every instance deleted the normal way (those
/// with finalizers wait for their controllers), and once none is left, condition
/// `InstanceDeletionCompleted` and the `customresourcecleanup` finalizer removed (the CRD goes
/// with its last finalizer, and its kind with it).
fn finish_custom_resource_definition(
    api: &Api,
    served: &HashMap<ResourceKey, Arc<Resource>>,
    resource: &Arc<Resource>,
    crd: &Value,
) {
    if !meta::finalizers(crd).iter().any(|f| f == CUSTOM_RESOURCE_CLEANUP) {
        return;
    }
    let group = crd.pointer("/spec/group").and_then(Value::as_str).unwrap_or_default();
    let plural = crd.pointer("/spec/names/plural").and_then(Value::as_str).unwrap_or_default();
    let storage = ResourceKey::new(group, plural);
    let Some(instances_resource) = served.get(&storage).filter(|r| r.builtin.is_none()) else {
        if let Some(crd) =
            set_crd_condition(api, resource, crd, "False", "NeverEstablished", "resource was never established")
        {
            remove_finalizer(api, resource, &crd, CUSTOM_RESOURCE_CLEANUP);
        }
        return;
    };
    let Some(crd) = set_crd_condition(
        api,
        resource,
        crd,
        "True",
        "InstanceDeletionInProgress",
        "CustomResource deletion is in progress",
    ) else {
        return;
    };
    let (_, instances) = api.store.list(&storage, None, None);
    for instance in instances.iter().filter(|o| !o.deleting()) {
        delete(api, instances_resource, &instance.value());
    }
    if !instances.is_empty() {
        // Their deletions (or their controllers removing their finalizers) bring it back here.
        return;
    }
    if let Some(crd) =
        set_crd_condition(api, resource, &crd, "False", "InstanceDeletionCompleted", "removed all instances")
    {
        remove_finalizer(api, resource, &crd, CUSTOM_RESOURCE_CLEANUP);
    }
}

/// Writes a CRD's `Terminating` condition through its status subresource; the CRD as stored
/// then (unchanged when the condition already said so), or None when it could not be written.
fn set_crd_condition(
    api: &Api,
    resource: &Arc<Resource>,
    crd: &Value,
    status: &str,
    reason: &str,
    message: &str,
) -> Option<Value> {
    let mut updated = crd.clone();
    ops::set_condition(&mut updated, "Terminating", status, reason, message);
    let patch = json!({"status": {"conditions": updated["status"]["conditions"]}});
    let request = Request { subresource: Some("status".into()), ..request(resource, crd) };
    match api.patch(&request, Patch::Merge(patch)) {
        Ok(written) => Some(written.object),
        Err(error) => {
            tracing::debug!(%error, crd = meta_str(crd, "name"), "CRD condition will be written again");
            None
        }
    }
}
