//! Durable object storage: SQLite (WAL, fsync on commit) as the record, an in-memory index for
//! reads, and an ordered history of changes for watches.
//!
//! Every write takes the next global revision (the `resourceVersion`), is committed to SQLite
//! before it is acknowledged, then applied to the index and published to watchers, all in
//! revision order. Revisions stay monotonic across restarts because the last one is stored in
//! the same transaction as the object.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use tokio::sync::broadcast;

/// Where objects of one resource are stored: its group and plural name (not its version:
/// every version of a resource shares one storage).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceKey {
    /// API group, empty for core.
    pub group: String,
    /// Plural resource name.
    pub resource: String,
}

impl ResourceKey {
    /// Builds a key.
    pub fn new(group: &str, resource: &str) -> Self {
        Self { group: group.to_owned(), resource: resource.to_owned() }
    }
}

/// An object's place within its resource: namespace (empty when cluster-scoped) and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// Namespace, empty for cluster-scoped objects.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectKey {
    /// Builds a key.
    pub fn new(namespace: &str, name: &str) -> Self {
        Self { namespace: namespace.to_owned(), name: name.to_owned() }
    }
}

/// What a change did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// Created.
    Added,
    /// Updated.
    Modified,
    /// Removed.
    Deleted,
}

/// An object as the store keeps it: its JSON text (a parsed tree takes several times the
/// memory: a fleet's objects and their recent versions as trees were most of the server's
/// memory), with the facts read on every request beside it. Readers parse what they need.
#[derive(Debug)]
pub struct Stored {
    key: ObjectKey,
    json: Box<str>,
    revision: u64,
    deleting: bool,
    /// `apiVersion` and `kind` (empty when absent): whether a client can be sent the text as is.
    api_version: Box<str>,
    kind: Box<str>,
}

impl Stored {
    fn new(object: &Value, json: String) -> Self {
        Self {
            key: key_of(object),
            json: json.into_boxed_str(),
            revision: revision_of(object),
            deleting: object.pointer("/metadata/deletionTimestamp").is_some(),
            api_version: object.get("apiVersion").and_then(Value::as_str).unwrap_or_default().into(),
            kind: object.get("kind").and_then(Value::as_str).unwrap_or_default().into(),
        }
    }

    /// Its namespace and name.
    pub fn key(&self) -> &ObjectKey {
        &self.key
    }

    /// The object's JSON text.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// Its `metadata.resourceVersion`.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Its `apiVersion` (empty when it has none).
    pub fn api_version(&self) -> &str {
        &self.api_version
    }

    /// Its `kind` (empty when it has none).
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// Whether it carries a `metadata.deletionTimestamp`.
    pub fn deleting(&self) -> bool {
        self.deleting
    }

    /// The object, parsed. The text was written by this store from a parsed object, so it
    /// parses; should it not (a corrupted process), the failure is logged and `null` returned.
    pub fn value(&self) -> Value {
        serde_json::from_str(&self.json).unwrap_or_else(|error| {
            tracing::error!(%error, "a stored object does not parse");
            Value::Null
        })
    }

    /// Only the object's `metadata` (the rest is skipped, not built), as `{"metadata": …}`: what
    /// indexes of owners and finalizers read, at a fraction of a whole parse.
    pub fn metadata(&self) -> Value {
        #[derive(serde::Deserialize)]
        struct Metadata {
            #[serde(default)]
            metadata: Value,
        }
        match serde_json::from_str::<Metadata>(&self.json) {
            Ok(Metadata { metadata }) => serde_json::json!({ "metadata": metadata }),
            Err(error) => {
                tracing::error!(%error, "a stored object does not parse");
                Value::Null
            }
        }
    }
}

/// One committed change.
#[derive(Debug)]
pub struct Change {
    /// Revision of the change.
    pub revision: u64,
    /// What it did.
    pub kind: ChangeKind,
    /// Resource of the object.
    pub resource: ResourceKey,
    /// The object after the change (for a delete: as it was, with the delete's revision).
    pub object: Arc<Stored>,
    /// The object before the change.
    pub previous: Option<Arc<Stored>>,
}

impl Change {
    /// `object` as JSON: the stored text, which is the watchers' encoding too (a status write
    /// watched by five clients is serialised once, when it is written).
    pub fn encoded(&self) -> &[u8] {
        self.object.json.as_bytes()
    }

    /// What it holds in the history: the JSON size of `object` and of `previous` (shared with
    /// the store and the neighbouring changes, so an upper bound).
    fn size(&self) -> usize {
        self.object.json.len() + self.previous.as_ref().map_or(0, |p| p.json.len())
    }
}

/// What a write requires of the current object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// The object must not exist (create).
    Absent,
    /// The object must exist at exactly this revision (update with resourceVersion).
    Revision(u64),
    /// The object must exist, at any revision.
    Exists,
}

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object exists and must not.
    #[error("object already exists")]
    AlreadyExists,
    /// The object does not exist and must.
    #[error("object not found")]
    NotFound,
    /// The object changed since the revision the writer read.
    #[error("object was modified (now at revision {current})")]
    Conflict {
        /// Its current revision.
        current: u64,
    },
    /// The requested history is gone.
    #[error("too old resource version: {requested} ({oldest})")]
    Gone {
        /// Revision asked for.
        requested: u64,
        /// Oldest revision still resumable.
        oldest: u64,
    },
    /// SQLite failed.
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    /// A stored object did not decode.
    #[error("stored object {key} is corrupt: {source}")]
    Corrupt {
        /// Which object.
        key: String,
        /// Cause.
        source: serde_json::Error,
    },
    /// A lock was poisoned by a panic elsewhere.
    #[error("store lock poisoned")]
    Poisoned,
}

type Objects = HashMap<ResourceKey, BTreeMap<ObjectKey, Arc<Stored>>>;

/// Changes still in history, and a receiver for the ones to come.
pub type Subscription = (Vec<Arc<Change>>, broadcast::Receiver<Arc<Change>>);

struct State {
    revision: u64,
    objects: Objects,
    history: VecDeque<Arc<Change>>,
    /// Every change after this revision is in `history`.
    history_floor: u64,
    /// The [`Change::size`]s of `history`, summed.
    history_bytes: usize,
    /// The revision of each resource's latest change since the store opened.
    changed: HashMap<ResourceKey, u64>,
}

/// The store. Cheap to share behind an `Arc`.
pub struct Store {
    db: Mutex<Connection>,
    state: RwLock<State>,
    changes: broadcast::Sender<Arc<Change>>,
    history_limit: usize,
    history_bytes_limit: usize,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("revision", &self.revision()).finish_non_exhaustive()
    }
}

/// Revision of an object, read from `metadata.resourceVersion`.
pub fn revision_of(object: &Value) -> u64 {
    object.pointer("/metadata/resourceVersion").and_then(Value::as_str).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn key_of(object: &Value) -> ObjectKey {
    let meta = |field: &str| object.pointer(&format!("/metadata/{field}")).and_then(Value::as_str).unwrap_or_default();
    ObjectKey::new(meta("namespace"), meta("name"))
}

impl Store {
    /// Opens (creating if needed) the database at `path` and loads every object.
    pub fn open(path: &Path, history_limit: usize) -> Result<Self, StoreError> {
        let db = Connection::open(path)?;
        // WAL + FULL: a commit is on disk before the write is acknowledged, so it survives
        // kill -9 and power loss; readers never block the writer.
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS objects (
                 api_group TEXT NOT NULL, resource TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
                 revision INTEGER NOT NULL, data TEXT NOT NULL,
                 PRIMARY KEY (api_group, resource, namespace, name));
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);",
        )?;
        let revision: u64 = db
            .query_row("SELECT value FROM meta WHERE key = 'revision'", [], |row| row.get::<_, i64>(0))
            .optional()?
            .map_or(0, |v| u64::try_from(v).unwrap_or(0));
        let mut objects: Objects = HashMap::new();
        {
            let mut statement = db.prepare("SELECT api_group, resource, namespace, name, data FROM objects")?;
            let rows = statement.query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                ))
            })?;
            for row in rows {
                let (group, resource, namespace, name, data) = row?;
                let value: Value = serde_json::from_str(&data).map_err(|source| StoreError::Corrupt {
                    key: format!("{group}/{resource}/{namespace}/{name}"),
                    source,
                })?;
                objects
                    .entry(ResourceKey::new(&group, &resource))
                    .or_default()
                    .insert(ObjectKey::new(&namespace, &name), Arc::new(Stored::new(&value, data)));
            }
        }
        let (changes, _) = broadcast::channel(4096);
        Ok(Self {
            db: Mutex::new(db),
            state: RwLock::new(State {
                revision,
                objects,
                history: VecDeque::new(),
                history_floor: revision,
                history_bytes: 0,
                changed: HashMap::new(),
            }),
            changes,
            history_limit: history_limit.max(1),
            history_bytes_limit: usize::MAX,
        })
    }

    fn read(&self) -> Result<RwLockReadGuard<'_, State>, StoreError> {
        self.state.read().map_err(|_| StoreError::Poisoned)
    }

    fn write_state(&self) -> Result<RwLockWriteGuard<'_, State>, StoreError> {
        self.state.write().map_err(|_| StoreError::Poisoned)
    }

    fn lock_db(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        self.db.lock().map_err(|_| StoreError::Poisoned)
    }

    /// The latest revision.
    pub fn revision(&self) -> u64 {
        self.read().map(|s| s.revision).unwrap_or(0)
    }

    /// The revision of `resource`'s latest change since the store opened (0: none), for caches
    /// of what its objects say.
    pub fn changed_at(&self, resource: &ResourceKey) -> u64 {
        self.read().ok().and_then(|s| s.changed.get(resource).copied()).unwrap_or(0)
    }

    /// One object, parsed.
    pub fn get(&self, resource: &ResourceKey, key: &ObjectKey) -> Option<Arc<Value>> {
        self.get_stored(resource, key).map(|stored| Arc::new(stored.value()))
    }

    /// One object as stored.
    pub fn get_stored(&self, resource: &ResourceKey, key: &ObjectKey) -> Option<Arc<Stored>> {
        self.read().ok()?.objects.get(resource)?.get(key).cloned()
    }

    /// Bounds the watch history in bytes as well as in changes (about: each change counts the
    /// JSON size of the object and of the one it replaced); the oldest changes go first, and
    /// watchers that need them get 410 Gone. The newest change always stays.
    pub fn with_history_bytes(mut self, bytes: usize) -> Self {
        self.history_bytes_limit = bytes;
        self
    }

    /// Objects of a resource (in one namespace, or all), in key order, starting after `after`,
    /// with the revision the list is consistent with.
    pub fn list(
        &self,
        resource: &ResourceKey,
        namespace: Option<&str>,
        after: Option<&ObjectKey>,
    ) -> (u64, Vec<Arc<Stored>>) {
        let Ok(state) = self.read() else { return (0, Vec::new()) };
        let Some(objects) = state.objects.get(resource) else { return (state.revision, Vec::new()) };
        // Keys sort by namespace then name: a namespace is one contiguous range.
        let namespace_start = namespace.map(|ns| ObjectKey::new(ns, ""));
        let start = match (after, namespace_start) {
            (Some(after), Some(first)) if *after < first => Bound::Included(first),
            (Some(after), _) => Bound::Excluded(after.clone()),
            (None, Some(first)) => Bound::Included(first),
            (None, None) => Bound::Unbounded,
        };
        let items = objects
            .range((start, Bound::Unbounded))
            .take_while(|(key, _)| namespace.is_none_or(|ns| key.namespace == ns))
            .map(|(_, v)| Arc::clone(v))
            .collect();
        (state.revision, items)
    }

    /// Every object of every resource, with the revision they are consistent with (for the
    /// server's controllers to index at start).
    pub fn snapshot(&self) -> (u64, Vec<(ResourceKey, Arc<Stored>)>) {
        let Ok(state) = self.read() else { return (0, Vec::new()) };
        let objects = state
            .objects
            .iter()
            .flat_map(|(resource, objects)| objects.values().map(move |o| (resource.clone(), Arc::clone(o))))
            .collect();
        (state.revision, objects)
    }

    /// What [`list`](Self::list) returned at `revision`, from `after` on: the current objects
    /// with the changes since `revision` undone (newest first), as etcd serves a paged list's
    /// later pages at the first page's revision. [`StoreError::Gone`] when the history no longer
    /// reaches back to `revision` (or it is in the future).
    pub fn list_at(
        &self,
        resource: &ResourceKey,
        namespace: Option<&str>,
        after: Option<&ObjectKey>,
        revision: u64,
    ) -> Result<Vec<Arc<Stored>>, StoreError> {
        let state = self.read()?;
        if revision < state.history_floor || revision > state.revision {
            return Err(StoreError::Gone { requested: revision, oldest: state.history_floor });
        }
        let in_range =
            |key: &ObjectKey| after.is_none_or(|after| key > after) && namespace.is_none_or(|ns| key.namespace == ns);
        let mut items: BTreeMap<ObjectKey, Arc<Stored>> = state
            .objects
            .get(resource)
            .map(|objects| {
                objects.iter().filter(|(key, _)| in_range(key)).map(|(k, v)| (k.clone(), Arc::clone(v))).collect()
            })
            .unwrap_or_default();
        for change in state.history.iter().rev().take_while(|c| c.revision > revision) {
            if change.resource != *resource {
                continue;
            }
            let key = change.object.key();
            if !in_range(key) {
                continue;
            }
            match (&change.kind, &change.previous) {
                (ChangeKind::Added, _) => {
                    items.remove(key);
                }
                (ChangeKind::Modified | ChangeKind::Deleted, Some(previous)) => {
                    items.insert(key.clone(), Arc::clone(previous));
                }
                (ChangeKind::Modified | ChangeKind::Deleted, None) => {}
            }
        }
        Ok(items.into_values().collect())
    }

    /// Writes an object (create or update). Sets `metadata.resourceVersion` to the new revision.
    pub fn put(
        &self,
        resource: &ResourceKey,
        mut object: Value,
        precondition: Precondition,
    ) -> Result<Arc<Value>, StoreError> {
        let key = key_of(&object);
        let db = self.lock_db()?;
        let previous = self.get_stored(resource, &key);
        check(previous.as_deref(), precondition)?;
        let revision = self.revision() + 1;
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(revision.to_string()));
        }
        let data = object.to_string();
        let transaction = db.unchecked_transaction()?;
        transaction
            .prepare_cached("INSERT OR REPLACE INTO objects (api_group, resource, namespace, name, revision, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?
            .execute(params![resource.group, resource.resource, key.namespace, key.name, revision as i64, data])?;
        set_revision(&transaction, revision)?;
        transaction.commit()?;
        let kind = if previous.is_some() { ChangeKind::Modified } else { ChangeKind::Added };
        let stored = Arc::new(Stored::new(&object, data));
        self.publish(Change { revision, kind, resource: resource.clone(), object: stored, previous })?;
        drop(db);
        Ok(Arc::new(object))
    }

    /// Removes an object. The returned copy carries the delete's revision.
    pub fn delete(
        &self,
        resource: &ResourceKey,
        key: &ObjectKey,
        precondition: Precondition,
    ) -> Result<Arc<Value>, StoreError> {
        let db = self.lock_db()?;
        let previous = self.get_stored(resource, key);
        check(previous.as_deref(), precondition)?;
        let Some(previous) = previous else { return Err(StoreError::NotFound) };
        let revision = self.revision() + 1;
        let transaction = db.unchecked_transaction()?;
        transaction
            .prepare_cached(
                "DELETE FROM objects WHERE api_group = ?1 AND resource = ?2 AND namespace = ?3 AND name = ?4",
            )?
            .execute(params![resource.group, resource.resource, key.namespace, key.name])?;
        set_revision(&transaction, revision)?;
        transaction.commit()?;
        let mut gone = previous.value();
        if let Some(meta) = gone.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(revision.to_string()));
        }
        let stored = Arc::new(Stored::new(&gone, gone.to_string()));
        self.publish(Change {
            revision,
            kind: ChangeKind::Deleted,
            resource: resource.clone(),
            object: stored,
            previous: Some(previous),
        })?;
        drop(db);
        Ok(Arc::new(gone))
    }

    fn publish(&self, change: Change) -> Result<(), StoreError> {
        let mut state = self.write_state()?;
        state.revision = change.revision;
        state.changed.insert(change.resource.clone(), change.revision);
        let objects = state.objects.entry(change.resource.clone()).or_default();
        match change.kind {
            ChangeKind::Deleted => {
                objects.remove(change.object.key());
            }
            _ => {
                objects.insert(change.object.key().clone(), Arc::clone(&change.object));
            }
        }
        let change = Arc::new(change);
        state.history_bytes += change.size();
        state.history.push_back(Arc::clone(&change));
        while state.history.len() > self.history_limit
            || (state.history_bytes > self.history_bytes_limit && state.history.len() > 1)
        {
            if let Some(dropped) = state.history.pop_front() {
                state.history_floor = dropped.revision;
                state.history_bytes -= dropped.size();
            }
        }
        // No receiver is fine: nobody is watching.
        let _ = self.changes.send(change);
        Ok(())
    }

    /// Changes after `revision` still in history, and a receiver for the ones to come, with no
    /// gap or overlap between the two. Fails with [`StoreError::Gone`] when changes after
    /// `revision` have been forgotten.
    pub fn watch_from(&self, revision: u64) -> Result<Subscription, StoreError> {
        let state = self.read()?;
        if revision < state.history_floor {
            return Err(StoreError::Gone { requested: revision, oldest: state.history_floor });
        }
        let backlog = state.history.iter().filter(|c| c.revision > revision).cloned().collect();
        Ok((backlog, self.changes.subscribe()))
    }

    /// A receiver of future changes (for controllers inside the server).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.changes.subscribe()
    }
}

fn check(current: Option<&Stored>, precondition: Precondition) -> Result<(), StoreError> {
    match (precondition, current) {
        (Precondition::Absent, Some(_)) => Err(StoreError::AlreadyExists),
        (Precondition::Revision(_) | Precondition::Exists, None) => Err(StoreError::NotFound),
        (Precondition::Revision(expected), Some(current)) if current.revision != expected => {
            Err(StoreError::Conflict { current: current.revision })
        }
        _ => Ok(()),
    }
}

fn set_revision(transaction: &rusqlite::Transaction<'_>, revision: u64) -> Result<(), rusqlite::Error> {
    transaction
        .prepare_cached("INSERT INTO meta (key, value) VALUES ('revision', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value")?
        .execute(params![revision as i64])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "ns"}, "data": {"a": name}})
    }

    fn configmaps() -> ResourceKey {
        ResourceKey::new("", "configmaps")
    }

    #[test]
    fn writes_take_increasing_revisions_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let store = Store::open(&path, 100).unwrap();
            let a = store.put(&configmaps(), object("a"), Precondition::Absent).unwrap();
            assert_eq!(revision_of(&a), 1);
            let b = store.put(&configmaps(), object("b"), Precondition::Absent).unwrap();
            assert_eq!(revision_of(&b), 2);
            store.delete(&configmaps(), &ObjectKey::new("ns", "a"), Precondition::Exists).unwrap();
        }
        let store = Store::open(&path, 100).unwrap();
        assert_eq!(store.revision(), 3);
        assert!(store.get(&configmaps(), &ObjectKey::new("ns", "a")).is_none());
        assert_eq!(store.get(&configmaps(), &ObjectKey::new("ns", "b")).unwrap()["data"]["a"], "b");
        let c = store.put(&configmaps(), object("c"), Precondition::Absent).unwrap();
        assert_eq!(revision_of(&c), 4, "revisions continue after a restart");
    }

    #[test]
    fn preconditions_guard_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db"), 100).unwrap();
        store.put(&configmaps(), object("a"), Precondition::Absent).unwrap();
        assert!(matches!(store.put(&configmaps(), object("a"), Precondition::Absent), Err(StoreError::AlreadyExists)));
        assert!(matches!(
            store.put(&configmaps(), object("a"), Precondition::Revision(7)),
            Err(StoreError::Conflict { current: 1 })
        ));
        assert!(store.put(&configmaps(), object("a"), Precondition::Revision(1)).is_ok());
        assert!(matches!(store.put(&configmaps(), object("z"), Precondition::Exists), Err(StoreError::NotFound)));
    }

    #[test]
    fn watches_resume_from_history_or_are_told_it_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db"), 3).unwrap();
        for name in ["a", "b", "c", "d", "e"] {
            store.put(&configmaps(), object(name), Precondition::Absent).unwrap();
        }
        let (backlog, _) = store.watch_from(3).unwrap();
        assert_eq!(backlog.iter().map(|c| c.revision).collect::<Vec<_>>(), vec![4, 5]);
        assert!(matches!(store.watch_from(1), Err(StoreError::Gone { requested: 1, oldest: 2 })));
        let (backlog, mut receiver) = store.watch_from(5).unwrap();
        assert!(backlog.is_empty());
        store.put(&configmaps(), object("f"), Precondition::Absent).unwrap();
        let change = receiver.try_recv().unwrap();
        assert_eq!((change.revision, change.kind), (6, ChangeKind::Added));
    }

    #[test]
    fn lists_page_in_key_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db"), 10).unwrap();
        for name in ["c", "a", "b"] {
            store.put(&configmaps(), object(name), Precondition::Absent).unwrap();
        }
        let (revision, items) = store.list(&configmaps(), Some("ns"), Some(&ObjectKey::new("ns", "a")));
        assert_eq!(revision, 3);
        let names: Vec<String> =
            items.iter().map(|o| o.value()["metadata"]["name"].as_str().unwrap().to_owned()).collect();
        assert_eq!(names, ["b", "c"]);
        assert!(store.list(&configmaps(), Some("other"), None).1.is_empty());
    }

    #[test]
    fn objects_are_kept_as_text_and_read_as_far_as_needed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db"), 10).unwrap();
        let mut marked = object("a");
        marked["metadata"]["deletionTimestamp"] = json!("2026-12-07T00:00:00Z");
        let written = store.put(&configmaps(), marked, Precondition::Absent).unwrap();
        let stored = store.get_stored(&configmaps(), &ObjectKey::new("ns", "a")).unwrap();
        assert_eq!(stored.json(), written.to_string(), "the text is what was written");
        assert_eq!((stored.revision(), stored.deleting()), (1, true));
        assert_eq!(
            (stored.api_version(), stored.kind(), stored.key()),
            ("v1", "ConfigMap", &ObjectKey::new("ns", "a"))
        );
        assert_eq!(stored.value(), *written);
        let metadata = stored.metadata();
        assert_eq!(metadata["metadata"]["name"], "a");
        assert!(metadata.get("data").is_none(), "only the metadata is built: {metadata}");
    }

    #[test]
    fn the_history_bound_counts_the_text_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let size = object("a").to_string().len() + r#","resourceVersion":"1""#.len();
        // Room for three creates of this size, not four.
        let store = Store::open(&dir.path().join("s.db"), 100).unwrap().with_history_bytes(3 * size + size / 2);
        for name in ["a", "b", "c", "d"] {
            store.put(&configmaps(), object(name), Precondition::Absent).unwrap();
        }
        let (backlog, _) = store.watch_from(1).unwrap();
        assert_eq!(backlog.iter().map(|c| c.revision).collect::<Vec<_>>(), vec![2, 3, 4]);
        assert!(matches!(store.watch_from(0), Err(StoreError::Gone { oldest: 1, .. })));
        // An update holds the new text and the one it replaced.
        store.put(&configmaps(), object("a"), Precondition::Exists).unwrap();
        let (backlog, _) = store.watch_from(3).unwrap();
        assert_eq!(backlog.iter().map(|c| c.revision).collect::<Vec<_>>(), vec![4, 5]);
    }
}
