//! What the server's controllers know of the store, kept up to date from its changes so their
//! work follows what changed: which objects exist (by uid), each owner's dependents
//! (`ownerReferences`), each namespace's contents, when each Event was last written, and which
//! objects a change made worth looking at again. Nothing here reads the store or writes: the
//! controllers feed it the store's snapshot at start and every change after, and act on what
//! it says.
//!
//! A change to an object marks, for the next pass:
//! - the object, when it is being deleted or has owners (its owners may all be gone);
//! - its owners, when it is removed or stops naming them (a foreground owner waits for it);
//! - its dependents, when it is removed (background collection, orphaning);
//! - its namespace, and the CRD defining its kind, when it is removed and they are being
//!   deleted (they wait until nothing is left).
//!
//! So deleting an owner among a million objects looks at its dependents only, and a write to an
//! object nobody owns and nobody is deleting marks nothing.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

use crate::store::{ChangeKind, ObjectKey, ResourceKey, Stored, revision_of};

/// Where an object is stored.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    /// Its resource's storage.
    pub resource: ResourceKey,
    /// Namespace and name.
    pub key: ObjectKey,
}

impl ObjectRef {
    /// Where `object`, of `resource`, is stored.
    pub fn of(resource: &ResourceKey, object: &Value) -> Self {
        let meta =
            |field: &str| object.pointer(&format!("/metadata/{field}")).and_then(Value::as_str).unwrap_or_default();
        Self { resource: resource.clone(), key: ObjectKey::new(meta("namespace"), meta("name")) }
    }

    /// The Namespace `name`.
    pub fn namespace(name: &str) -> Self {
        Self { resource: ResourceKey::new("", "namespaces"), key: ObjectKey::new("", name) }
    }

    /// The CustomResourceDefinition serving a custom resource's storage.
    pub fn crd_of(resource: &ResourceKey) -> Self {
        Self {
            resource: ResourceKey::new("apiextensions.k8s.io", "customresourcedefinitions"),
            key: ObjectKey::new("", &format!("{}.{}", resource.resource, resource.group)),
        }
    }
}

/// The uids an object's `ownerReferences` name.
pub fn owner_uids(object: &Value) -> Vec<String> {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|refs| refs.iter().filter_map(|r| r["uid"].as_str()).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// What the index reads of a stored object, parsed from its text without building the rest
/// (`managedFields`' field sets, spec, status): `{"metadata": {name, namespace, uid,
/// resourceVersion, ownerReferences: [{uid}], deletionTimestamp, creationTimestamp,
/// managedFields: [{time}]}}`. Every change of the store goes through it.
pub fn skeleton(stored: &Stored) -> Value {
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct Object {
        metadata: Metadata,
    }
    #[derive(serde::Deserialize, Default)]
    #[serde(default, rename_all = "camelCase")]
    struct Metadata {
        name: String,
        namespace: String,
        uid: String,
        resource_version: String,
        owner_references: Vec<Owner>,
        deletion_timestamp: Option<String>,
        creation_timestamp: Option<String>,
        managed_fields: Vec<Managed>,
    }
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct Owner {
        uid: String,
    }
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct Managed {
        time: Option<String>,
    }
    let Ok(Object { metadata: m }) = serde_json::from_str::<Object>(stored.json()) else {
        // Not the shape Kubernetes metadata has: read it the general way.
        return stored.metadata();
    };
    let mut metadata = serde_json::json!({
        "name": m.name,
        "namespace": m.namespace,
        "uid": m.uid,
        "resourceVersion": m.resource_version,
        "ownerReferences": m.owner_references.into_iter().map(|o| serde_json::json!({"uid": o.uid})).collect::<Vec<_>>(),
        "managedFields": m.managed_fields.into_iter().map(|f| serde_json::json!({"time": f.time})).collect::<Vec<_>>(),
    });
    if let Some(deleting) = m.deletion_timestamp {
        metadata["deletionTimestamp"] = Value::String(deleting);
    }
    if let Some(created) = m.creation_timestamp {
        metadata["creationTimestamp"] = Value::String(created);
    }
    serde_json::json!({ "metadata": metadata })
}

/// When an Event was last written (created, or updated by a writer's managed fields): its
/// TTL counts from there, as Kubernetes' lease on the Event's key does.
pub fn event_last_written(event: &Value) -> Option<jiff::Timestamp> {
    let created = event.pointer("/metadata/creationTimestamp").and_then(Value::as_str);
    let updates = event
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.get("time").and_then(Value::as_str));
    created.into_iter().chain(updates).filter_map(|text| text.parse::<jiff::Timestamp>().ok()).max()
}

/// What the index holds of one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// `metadata.uid`.
    pub uid: String,
    /// The revision the index has seen it at.
    pub revision: u64,
    /// The uids its `ownerReferences` name.
    pub owners: Vec<String>,
    /// It has a `deletionTimestamp`.
    pub deleting: bool,
    /// When it was last written, for Events.
    written: Option<jiff::Timestamp>,
}

/// The index. See the module's documentation.
#[derive(Debug)]
pub struct Index {
    /// The revision of the last change applied (or of the snapshot it was built from).
    revision: u64,
    /// Where Events are stored.
    events: ResourceKey,
    entries: HashMap<ObjectRef, Entry>,
    uids: HashMap<String, ObjectRef>,
    /// Owner uid → the objects naming it (also after the owner is gone, until they go).
    dependents: HashMap<String, BTreeSet<ObjectRef>>,
    /// Namespace → the objects in it.
    namespaces: HashMap<String, BTreeSet<ObjectRef>>,
    /// Events by when they were last written.
    event_times: BTreeSet<(jiff::Timestamp, ObjectRef)>,
    /// Objects to look at in the next pass.
    marked: BTreeSet<ObjectRef>,
}

impl Index {
    /// An empty index; Events are the objects stored under `events`.
    pub fn new(events: ResourceKey) -> Self {
        Self {
            revision: 0,
            events,
            entries: HashMap::new(),
            uids: HashMap::new(),
            dependents: HashMap::new(),
            namespaces: HashMap::new(),
            event_times: BTreeSet::new(),
            marked: BTreeSet::new(),
        }
    }

    /// Replaces what the index holds with a snapshot of the store at `revision`, and marks what
    /// a pass must look at whatever happened before: every object being deleted or having
    /// owners (an owner may have gone while nobody watched).
    pub fn rebuild(&mut self, revision: u64, objects: impl IntoIterator<Item = (ResourceKey, Value)>) {
        *self = Self::new(self.events.clone());
        self.revision = revision;
        for (resource, object) in objects {
            let place = ObjectRef::of(&resource, &object);
            let entry = self.entry_for(&resource, &object);
            if entry.deleting || !entry.owners.is_empty() {
                self.marked.insert(place.clone());
            }
            self.insert(place, entry);
        }
    }

    /// Applies one change of the store. Changes at or before the index's revision (already in
    /// the snapshot it was built from) are skipped.
    pub fn apply(&mut self, revision: u64, kind: ChangeKind, resource: &ResourceKey, object: &Value) {
        if revision <= self.revision {
            return;
        }
        self.revision = revision;
        let place = ObjectRef::of(resource, object);
        match kind {
            ChangeKind::Deleted => self.removed(&place),
            ChangeKind::Added | ChangeKind::Modified => self.written(place, resource, object),
        }
    }

    fn entry_for(&self, resource: &ResourceKey, object: &Value) -> Entry {
        Entry {
            uid: object.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_owned(),
            revision: revision_of(object),
            owners: owner_uids(object),
            deleting: object.pointer("/metadata/deletionTimestamp").is_some(),
            written: if *resource == self.events { event_last_written(object) } else { None },
        }
    }

    fn written(&mut self, place: ObjectRef, resource: &ResourceKey, object: &Value) {
        let entry = self.entry_for(resource, object);
        if let Some(old) = self.take(&place) {
            for uid in old.owners.iter().filter(|uid| !entry.owners.contains(uid)) {
                self.mark_uid(uid);
            }
        }
        if entry.deleting || !entry.owners.is_empty() {
            self.marked.insert(place.clone());
        }
        self.insert(place, entry);
    }

    fn removed(&mut self, place: &ObjectRef) {
        let Some(old) = self.take(place) else { return };
        for uid in &old.owners {
            self.mark_uid(uid);
        }
        if let Some(dependents) = self.dependents.get(&old.uid) {
            self.marked.extend(dependents.iter().cloned());
        }
        if !place.key.namespace.is_empty() {
            self.mark_if_deleting(ObjectRef::namespace(&place.key.namespace));
        }
        if !place.resource.group.is_empty() {
            self.mark_if_deleting(ObjectRef::crd_of(&place.resource));
        }
    }

    fn mark_uid(&mut self, uid: &str) {
        if let Some(place) = self.uids.get(uid) {
            self.marked.insert(place.clone());
        }
    }

    fn mark_if_deleting(&mut self, place: ObjectRef) {
        if self.entries.get(&place).is_some_and(|e| e.deleting) {
            self.marked.insert(place);
        }
    }

    fn insert(&mut self, place: ObjectRef, entry: Entry) {
        if !entry.uid.is_empty() {
            self.uids.insert(entry.uid.clone(), place.clone());
        }
        for owner in &entry.owners {
            self.dependents.entry(owner.clone()).or_default().insert(place.clone());
        }
        if !place.key.namespace.is_empty() {
            self.namespaces.entry(place.key.namespace.clone()).or_default().insert(place.clone());
        }
        if let Some(written) = entry.written {
            self.event_times.insert((written, place.clone()));
        }
        self.entries.insert(place, entry);
    }

    /// Removes an object from every map; what it held.
    fn take(&mut self, place: &ObjectRef) -> Option<Entry> {
        let entry = self.entries.remove(place)?;
        if self.uids.get(&entry.uid) == Some(place) {
            self.uids.remove(&entry.uid);
        }
        for owner in &entry.owners {
            if let Some(set) = self.dependents.get_mut(owner) {
                set.remove(place);
                if set.is_empty() {
                    self.dependents.remove(owner);
                }
            }
        }
        if let Some(set) = self.namespaces.get_mut(&place.key.namespace) {
            set.remove(place);
            if set.is_empty() {
                self.namespaces.remove(&place.key.namespace);
            }
        }
        if let Some(written) = entry.written {
            self.event_times.remove(&(written, place.clone()));
        }
        Some(entry)
    }

    /// The revision the index is at.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// What the index holds of an object.
    pub fn get(&self, place: &ObjectRef) -> Option<&Entry> {
        self.entries.get(place)
    }

    /// Whether an object with this uid exists.
    pub fn exists(&self, uid: &str) -> bool {
        self.uids.contains_key(uid)
    }

    /// Whether an object has owners and none of them exists (background collection).
    pub fn orphaned(&self, place: &ObjectRef) -> bool {
        self.entries.get(place).is_some_and(|e| !e.owners.is_empty() && e.owners.iter().all(|uid| !self.exists(uid)))
    }

    /// The objects naming `uid` among their owners.
    pub fn dependents(&self, uid: &str) -> Vec<ObjectRef> {
        self.dependents.get(uid).map(|set| set.iter().cloned().collect()).unwrap_or_default()
    }

    /// The objects in a namespace.
    pub fn in_namespace(&self, namespace: &str) -> Vec<ObjectRef> {
        self.namespaces.get(namespace).map(|set| set.iter().cloned().collect()).unwrap_or_default()
    }

    /// How many objects the index holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether a pass has something to do: marked objects, or Events written before `cutoff`.
    pub fn has_work(&self, cutoff: jiff::Timestamp) -> bool {
        !self.marked.is_empty() || self.next_event_written().is_some_and(|t| t < cutoff)
    }

    /// The objects marked since the last call, unmarked.
    pub fn take_marked(&mut self) -> Vec<ObjectRef> {
        std::mem::take(&mut self.marked).into_iter().collect()
    }

    /// When the Event written longest ago was written.
    pub fn next_event_written(&self) -> Option<jiff::Timestamp> {
        self.event_times.first().map(|(t, _)| *t)
    }

    /// The Events last written before `cutoff`, oldest first; they are not returned again
    /// unless written again (or the index rebuilt), so a delete that keeps failing is not
    /// retried in a loop.
    pub fn take_events_written_before(&mut self, cutoff: jiff::Timestamp) -> Vec<ObjectRef> {
        let mut expired = Vec::new();
        while let Some((written, _)) = self.event_times.first()
            && *written < cutoff
        {
            if let Some((_, place)) = self.event_times.pop_first() {
                expired.push(place);
            }
        }
        expired
    }
}

#[cfg(test)]
mod tests {

    use serde_json::json;

    use super::*;

    fn configmaps() -> ResourceKey {
        ResourceKey::new("", "configmaps")
    }

    fn events() -> ResourceKey {
        ResourceKey::new("", "events")
    }

    fn object(namespace: &str, name: &str, revision: u64, owners: &[&str]) -> Value {
        let refs: Vec<Value> = owners.iter().map(|uid| json!({"uid": uid, "kind": "ConfigMap", "name": "x"})).collect();
        json!({"metadata": {"namespace": namespace, "name": name, "uid": format!("uid-{name}"),
                            "resourceVersion": revision.to_string(), "ownerReferences": refs}})
    }

    fn deleting(mut object: Value) -> Value {
        object["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        object
    }

    fn place(namespace: &str, name: &str) -> ObjectRef {
        ObjectRef { resource: configmaps(), key: ObjectKey::new(namespace, name) }
    }

    /// An index at revision 10 000 holding 10 000 unrelated objects, an owner and its two
    /// dependents, with nothing marked.
    fn crowded() -> Index {
        let mut index = Index::new(events());
        let mut objects: Vec<(ResourceKey, Value)> =
            (0..10_000).map(|i| (configmaps(), object("crowd", &format!("unrelated-{i}"), i, &[]))).collect();
        objects.push((configmaps(), object("default", "owner", 1, &[])));
        for name in ["dependent-a", "dependent-b"] {
            objects.push((configmaps(), object("default", name, 1, &["uid-owner"])));
        }
        index.rebuild(10_000, objects);
        index.take_marked();
        index
    }

    #[test]
    fn removing_an_owner_marks_its_dependents_and_nothing_else() {
        let mut index = crowded();
        assert_eq!(index.len(), 10_003);
        assert_eq!(index.dependents("uid-owner"), [place("default", "dependent-a"), place("default", "dependent-b")]);
        index.apply(10_001, ChangeKind::Deleted, &configmaps(), &object("default", "owner", 10_001, &[]));
        let marked = index.take_marked();
        assert_eq!(marked, [place("default", "dependent-a"), place("default", "dependent-b")]);
        assert!(marked.iter().all(|p| index.orphaned(p)));
        assert!(index.take_marked().is_empty(), "taken once");
    }

    #[test]
    fn writes_to_objects_nobody_owns_or_deletes_mark_nothing() {
        let mut index = crowded();
        for i in 0..100 {
            let name = format!("unrelated-{i}");
            index.apply(10_001 + i, ChangeKind::Modified, &configmaps(), &object("crowd", &name, 10_001 + i, &[]));
        }
        assert!(index.take_marked().is_empty());
        // A write to a dependent marks it (its owners may all be gone), not its owner.
        index.apply(
            20_000,
            ChangeKind::Modified,
            &configmaps(),
            &object("default", "dependent-a", 20_000, &["uid-owner"]),
        );
        assert_eq!(index.take_marked(), [place("default", "dependent-a")]);
        assert!(!index.orphaned(&place("default", "dependent-a")));
    }

    #[test]
    fn a_deleting_owner_is_marked_again_when_a_dependent_goes_or_lets_go() {
        let mut index = crowded();
        index.apply(10_001, ChangeKind::Modified, &configmaps(), &deleting(object("default", "owner", 10_001, &[])));
        assert_eq!(index.take_marked(), [place("default", "owner")]);
        // A dependent removed: its owner (waiting in the foreground) is looked at again.
        index.apply(
            10_002,
            ChangeKind::Deleted,
            &configmaps(),
            &object("default", "dependent-a", 10_002, &["uid-owner"]),
        );
        assert_eq!(index.take_marked(), [place("default", "owner")]);
        // A dependent orphaned (its reference dropped): likewise.
        index.apply(10_003, ChangeKind::Modified, &configmaps(), &object("default", "dependent-b", 10_003, &[]));
        assert_eq!(index.take_marked(), [place("default", "owner")]);
        assert!(index.dependents("uid-owner").is_empty());
    }

    #[test]
    fn a_deleting_namespace_or_crd_is_marked_when_something_of_it_goes() {
        let mut index = Index::new(events());
        let namespaces = ResourceKey::new("", "namespaces");
        let crds = ResourceKey::new("apiextensions.k8s.io", "customresourcedefinitions");
        let gizmos = ResourceKey::new("example.com", "gizmos");
        let gizmo = object("lab", "g1", 1, &[]);
        index.rebuild(
            3,
            [
                (namespaces.clone(), deleting(object("", "lab", 1, &[]))),
                (crds.clone(), deleting(object("", "gizmos.example.com", 2, &[]))),
                (gizmos.clone(), gizmo.clone()),
                (configmaps(), object("other", "cm", 3, &[])),
            ],
        );
        assert_eq!(index.take_marked().len(), 2, "what was being deleted at start is looked at");
        assert_eq!(index.in_namespace("lab"), [ObjectRef::of(&gizmos, &gizmo)]);
        index.apply(4, ChangeKind::Deleted, &gizmos, &gizmo);
        assert_eq!(index.take_marked(), [ObjectRef::namespace("lab"), ObjectRef::crd_of(&gizmos)]);
        assert!(index.in_namespace("lab").is_empty());
        // Something leaving a namespace nobody deletes marks nothing.
        index.apply(5, ChangeKind::Deleted, &configmaps(), &object("other", "cm", 5, &[]));
        assert!(index.take_marked().is_empty());
    }

    #[test]
    fn rebuilding_marks_orphans_and_deletions_and_skips_changes_already_seen() {
        let mut index = Index::new(events());
        index.rebuild(
            7,
            [
                (configmaps(), object("default", "orphan", 3, &["uid-gone"])),
                (configmaps(), object("default", "owned", 4, &["uid-owner"])),
                (configmaps(), object("default", "owner", 5, &[])),
                (configmaps(), deleting(object("default", "leaving", 6, &[]))),
                (configmaps(), object("default", "plain", 7, &[])),
            ],
        );
        let marked = index.take_marked();
        assert_eq!(marked, [place("default", "leaving"), place("default", "orphan"), place("default", "owned")]);
        let orphans: Vec<&ObjectRef> = marked.iter().filter(|p| index.orphaned(p)).collect();
        assert_eq!(orphans, [&place("default", "orphan")]);
        // A change the snapshot already holds (its revision is not newer) is skipped.
        index.apply(7, ChangeKind::Deleted, &configmaps(), &object("default", "owner", 7, &[]));
        assert!(index.exists("uid-owner") && index.take_marked().is_empty());
        index.apply(8, ChangeKind::Deleted, &configmaps(), &object("default", "owner", 8, &[]));
        assert!(!index.exists("uid-owner"));
        assert_eq!(index.take_marked(), [place("default", "owned")]);
        assert_eq!((index.revision(), index.get(&place("default", "orphan")).map(|e| e.revision)), (8, Some(3)));
    }

    #[test]
    fn events_come_due_oldest_first_and_once() {
        let mut index = Index::new(events());
        let event = |name: &str, created: &str, updated: Option<&str>| {
            let mut event = object("default", name, 1, &[]);
            event["metadata"]["creationTimestamp"] = json!(created);
            if let Some(time) = updated {
                event["metadata"]["managedFields"] = json!([{"manager": "m", "time": time}]);
            }
            event
        };
        index.apply(1, ChangeKind::Added, &events(), &event("old", "2026-01-01T00:00:00Z", None));
        index.apply(
            2,
            ChangeKind::Added,
            &events(),
            &event("renewed", "2025-01-01T00:00:00Z", Some("2026-01-02T00:00:00Z")),
        );
        index.apply(3, ChangeKind::Added, &events(), &event("new", "2026-01-03T00:00:00Z", None));
        let at = |text: &str| text.parse::<jiff::Timestamp>().unwrap();
        assert_eq!(index.next_event_written(), Some(at("2026-01-01T00:00:00Z")));
        assert!(!index.has_work(at("2026-01-01T00:00:00Z")));
        assert!(index.has_work(at("2026-01-02T12:00:00Z")));
        let due = index.take_events_written_before(at("2026-01-02T12:00:00Z"));
        let names: Vec<&str> = due.iter().map(|p| p.key.name.as_str()).collect();
        assert_eq!(names, ["old", "renewed"]);
        assert!(index.take_events_written_before(at("2026-01-02T12:00:00Z")).is_empty(), "once");
        // Removing one that came due is fine; the others stay indexed.
        index.apply(4, ChangeKind::Deleted, &events(), &event("old", "2026-01-01T00:00:00Z", None));
        assert_eq!(index.next_event_written(), Some(at("2026-01-03T00:00:00Z")));
    }

    #[test]
    fn the_skeleton_holds_what_the_index_reads_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&dir.path().join("s.db"), 10).unwrap();
        let mut full = deleting(object("default", "owned", 0, &["uid-owner"]));
        full["metadata"]["creationTimestamp"] = json!("2026-12-07T00:00:00Z");
        full["metadata"]["managedFields"] =
            json!([{"manager": "m", "time": "2026-12-07T01:00:00Z", "fieldsV1": {"f:status": {}}}, {"manager": "n"}]);
        full["status"] = json!({"big": "x".repeat(1000)});
        store.put(&configmaps(), full, crate::store::Precondition::Absent).unwrap();
        let stored = store.get_stored(&configmaps(), &ObjectKey::new("default", "owned")).unwrap();
        let skeleton = skeleton(&stored);
        assert!(skeleton.get("status").is_none() && skeleton.pointer("/metadata/managedFields/0/fieldsV1").is_none());
        let parsed = stored.value();
        let mut index = Index::new(events());
        let (from_skeleton, from_object) = (index.entry_for(&events(), &skeleton), index.entry_for(&events(), &parsed));
        assert_eq!(from_skeleton, from_object);
        assert_eq!(from_skeleton.owners, ["uid-owner"]);
        assert!(from_skeleton.deleting && from_skeleton.written.is_some());
        assert_eq!(ObjectRef::of(&configmaps(), &skeleton), ObjectRef::of(&configmaps(), &parsed));
        index.apply(2, ChangeKind::Added, &configmaps(), &skeleton);
        assert_eq!(index.take_marked(), [place("default", "owned")]);
    }
}
