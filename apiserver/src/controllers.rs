//! The server's own controllers: namespace deletion, CRD deletion (the
//! `customresourcecleanup.apiextensions.k8s.io` finalizer) and garbage collection of
//! dependents (ownerReferences), with the `foregroundDeletion` and `orphan` finalizers.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio_util::sync::CancellationToken;

use crate::semantics::meta::{self, meta_str};
use crate::semantics::ops::{self, CUSTOM_RESOURCE_CLEANUP, DeleteOptions, Patch};
use crate::semantics::registry::{Builtin, Registry, Resource};
use crate::semantics::request::{FieldValidation, Request};
use crate::semantics::state::Api;
use crate::store::{ChangeKind, ObjectKey, Precondition, ResourceKey, revision_of};

/// How often the controllers look at everything, besides reacting to changes.
const RESYNC: Duration = Duration::from_secs(5);
/// The field manager of the server's own writes.
const MANAGER: &str = "machinist-apiserver";

/// Runs until shutdown.
pub async fn run(api: Arc<Api>, shutdown: CancellationToken) {
    let mut changes = api.store.subscribe();
    let mut resync = tokio::time::interval(RESYNC);
    loop {
        let relevant = tokio::select! {
            () = shutdown.cancelled() => return,
            _ = resync.tick() => true,
            received = changes.recv() => match received {
                Ok(change) => change.kind == ChangeKind::Deleted || change.object.pointer("/metadata/deletionTimestamp").is_some(),
                Err(RecvError::Lagged(_)) => true,
                Err(RecvError::Closed) => return,
            },
        };
        if relevant {
            // Changes that arrived meanwhile are covered by this sweep: one pass, not one each
            // (a namespace or owner deletion produces a burst of them).
            loop {
                match changes.try_recv() {
                    Ok(_) | Err(TryRecvError::Lagged(_)) => {}
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Closed) => return,
                }
            }
            let api = Arc::clone(&api);
            if let Err(error) = tokio::task::spawn_blocking(move || sweep(&api)).await {
                tracing::error!(%error, "controller sweep failed");
            }
        }
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

fn owner_uids(object: &Value) -> Vec<String> {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|refs| refs.iter().filter_map(|r| r["uid"].as_str()).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// When an Event was last written (created, or updated by a writer's managed fields): its
/// TTL counts from there, as Kubernetes' lease on the Event's key does.
fn event_last_written(event: &Value) -> Option<jiff::Timestamp> {
    let created = event.pointer("/metadata/creationTimestamp").and_then(Value::as_str);
    let updates = event
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.get("time").and_then(Value::as_str));
    created.into_iter().chain(updates).filter_map(|text| text.parse::<jiff::Timestamp>().ok()).max()
}

/// One pass over everything: finish namespace deletions, collect orphaned dependents, honour
/// foreground and orphan deletions, expire Events past their TTL.
pub fn sweep(api: &Api) {
    let registry = api.registry();
    let mut everything: Vec<(Arc<Resource>, Arc<Value>)> = Vec::new();
    let mut seen = HashSet::new();
    for resource in registry.all() {
        // events.k8s.io shares the core events' storage.
        if resource.builtin == Some(Builtin::EventsV1) || !seen.insert(resource.storage.clone()) {
            continue;
        }
        let (_, items) = api.store.list(&resource.storage, None, None);
        everything.extend(items.into_iter().map(|o| (Arc::clone(resource), o)));
    }
    let uids: HashSet<&str> = everything.iter().filter_map(|(_, o)| meta_str(o, "uid")).collect();

    let ttl = jiff::SignedDuration::try_from(api.limits.event_ttl).unwrap_or(jiff::SignedDuration::MAX);
    let expired_before = jiff::Timestamp::now().checked_sub(ttl).unwrap_or(jiff::Timestamp::MIN);
    for (resource, object) in &everything {
        if resource.builtin == Some(Builtin::Event) && event_last_written(object).is_some_and(|t| t < expired_before) {
            delete(api, resource, object);
            continue;
        }
        let owners = owner_uids(object);
        // Background collection: every owner is gone.
        if !owners.is_empty()
            && owners.iter().all(|uid| !uids.contains(uid.as_str()))
            && object.pointer("/metadata/deletionTimestamp").is_none()
        {
            delete(api, resource, object);
        }
        if object.pointer("/metadata/deletionTimestamp").is_none() {
            continue;
        }
        let finalizers = meta::finalizers(object);
        let uid = meta_str(object, "uid").unwrap_or_default();
        let dependents: Vec<&(Arc<Resource>, Arc<Value>)> =
            everything.iter().filter(|(_, d)| owner_uids(d).iter().any(|o| o == uid)).collect();
        if finalizers.iter().any(|f| f == "foregroundDeletion") {
            if dependents.is_empty() {
                remove_finalizer(api, resource, object, "foregroundDeletion");
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
                    .map(|refs| refs.iter().filter(|r| r["uid"] != uid).cloned().collect())
                    .unwrap_or_default();
                let patch = json!({"metadata": {"ownerReferences": if kept.is_empty() { Value::Null } else { Value::Array(kept) }}});
                if let Err(error) = api.patch(&request(dependent_resource, dependent), Patch::Merge(patch)) {
                    tracing::warn!(%error, "failed to orphan a dependent");
                }
            }
            remove_finalizer(api, resource, object, "orphan");
        }
        if resource.builtin == Some(Builtin::Namespace) {
            finish_namespace(api, &registry, object);
        }
        if resource.builtin == Some(Builtin::CustomResourceDefinition) {
            finish_custom_resource_definition(api, &registry, resource, object);
        }
    }
}

/// Deletes an object the sweep listed, with its uid as precondition, as Kubernetes' garbage
/// collector does: an object of the same name made since (a new uid) is not the one deleted.
pub fn delete(api: &Api, resource: &Arc<Resource>, object: &Value) {
    let options = DeleteOptions { uid: meta_str(object, "uid").map(str::to_owned), ..DeleteOptions::default() };
    match api.delete(&request(resource, object), &options) {
        Ok(_) => {}
        // Gone, or another object of that name by now.
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

/// Deletes everything in a terminating namespace; once it is empty, removes the namespace.
fn finish_namespace(api: &Api, registry: &Registry, namespace: &Value) {
    let name = meta_str(namespace, "name").unwrap_or_default();
    let mut remaining = 0usize;
    let mut seen = HashSet::new();
    for resource in registry.all().iter().filter(|r| r.namespaced && r.builtin != Some(Builtin::EventsV1)) {
        if !seen.insert(resource.storage.clone()) {
            continue;
        }
        let (_, items) = api.store.list(&resource.storage, Some(name), None);
        remaining += items.len();
        for item in items.iter().filter(|o| o.pointer("/metadata/deletionTimestamp").is_none()) {
            delete(api, resource, item);
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
fn finish_custom_resource_definition(api: &Api, registry: &Registry, resource: &Arc<Resource>, crd: &Value) {
    if !meta::finalizers(crd).iter().any(|f| f == CUSTOM_RESOURCE_CLEANUP) {
        return;
    }
    let group = crd.pointer("/spec/group").and_then(Value::as_str).unwrap_or_default();
    let plural = crd.pointer("/spec/names/plural").and_then(Value::as_str).unwrap_or_default();
    let storage = ResourceKey::new(group, plural);
    let served = registry.all().iter().find(|r| r.builtin.is_none() && r.storage == storage).cloned();
    let Some(served) = served else {
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
    for instance in instances.iter().filter(|o| o.pointer("/metadata/deletionTimestamp").is_none()) {
        delete(api, &served, instance);
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
