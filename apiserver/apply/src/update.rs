//! Tracking ownership for ordinary writes (create, update, merge/JSON/strategic patches).

use serde_json::Value;

use crate::Manager;
use crate::managers::{MAX_UPDATE_MANAGERS, Managed, ManagedFieldsError, ManagerId, Operation};
use crate::scope::{Scope, strip_meta};
use crate::typed::{TypeError, compare_without_managed_fields};
use crate::typeinfo::{Ty, TypeInfo};

/// Why ownership could not be tracked for a write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    /// The object is not a JSON object.
    #[error("the object is not a JSON object")]
    NotAnObject,
    /// The old or new object does not fit its types (e.g. a keyed list item without keys).
    #[error("failed to update managed fields: {0}")]
    Typed(#[from] TypeError),
    /// The live object's `managedFields` cannot be read.
    #[error(transparent)]
    ManagedFields(#[from] ManagedFieldsError),
}

/// Records a write by `manager` in `new`'s `metadata.managedFields` and returns `new` with
/// them; on failure, `new` keeps the old object's `managedFields`, as the apiserver's
/// `UpdateNoErrors` does.
///
/// `old` is the stored object (`None` on create). See [`try_update`].
pub fn update(old: Option<&Value>, new: &Value, manager: Manager<'_>, types: &TypeInfo, now: &str) -> Value {
    update_owned(old, new.clone(), manager, types, now)
}

/// [`update`] of a `new` the caller gives up: no copy of it is made (an API server's write of a
/// large object should not copy it to track it).
pub fn update_owned(old: Option<&Value>, new: Value, manager: Manager<'_>, types: &TypeInfo, now: &str) -> Value {
    match track(old, new, manager, types, now) {
        Ok(v) => v,
        Err((_, mut out)) => {
            let previous = old.and_then(|o| o.pointer("/metadata/managedFields")).cloned();
            set_managed_fields(&mut out, previous);
            out
        }
    }
}

/// Records a write by `manager` in `new`'s `metadata.managedFields`.
///
/// As the apiserver's field manager for non-apply writes:
/// - the fields the write added or changed (compared with `old`, or with the kind's empty
///   object on create) join `manager`'s `Update` entry for this API version and subresource
///   (created if need be, its `time` set to `now`) and leave every other entry; fields the
///   write removed leave every entry;
/// - `managedFields` sent in `new` replace the stored ones on the main resource (clients may
///   edit them; `[]` or `[{}]` clears them), and are ignored on subresources;
/// - an existing object without `managedFields` stays untracked (updates of objects created
///   without tracking do not start it; the next apply does);
/// - `status` is not tracked on the main resource of a kind with a status subresource, and
///   only `status` is tracked on `/status` (see [`restrict_to_subresource`] to reset the
///   object itself);
/// - at most [`MAX_UPDATE_MANAGERS`] `Update` entries are kept.
///
/// An empty manager name is recorded as `unknown`. `now` is an RFC 3339 time.
///
/// [`restrict_to_subresource`]: crate::restrict_to_subresource
pub fn try_update(
    old: Option<&Value>,
    new: &Value,
    manager: Manager<'_>,
    types: &TypeInfo,
    now: &str,
) -> Result<Value, UpdateError> {
    track(old, new.clone(), manager, types, now).map_err(|(error, _)| error)
}

/// [`try_update`] on an owned `new`, given back (without `managedFields`) on failure.
fn track(
    old: Option<&Value>,
    mut new: Value,
    manager: Manager<'_>,
    types: &TypeInfo,
    now: &str,
) -> Result<Value, (UpdateError, Value)> {
    if !new.is_object() {
        return Err((UpdateError::NotAnObject, new));
    }
    let ty = &types.root;
    let subresource = manager.subresource.unwrap_or("");
    let mut managed = live_or_new_managed(old, &new, !subresource.is_empty(), ty);
    remove_managed_fields(&mut new);
    if managed.is_empty() && old.is_some_and(|o| !uid(o).is_empty()) {
        // Not tracked so far: stays so until the next apply.
        return Ok(new);
    }
    let created;
    let old_obj = match old {
        Some(o) => o,
        None => {
            created = types.empty_object(&new);
            &created
        }
    };
    let name = if manager.name.is_empty() { "unknown" } else { manager.name };
    let api_version = api_version_of(manager, &new);
    let id = ManagerId::new(name, Operation::Update, &api_version, subresource);
    let scope = Scope::of(types, manager.subresource);
    if let Err(error) = record_update(old_obj, &new, &mut managed, &id, scope, ty, now) {
        return Err((error.into(), new));
    }
    set_managed_fields(&mut new, managed.encode());
    Ok(new)
}

/// The core of an update (also used to attribute existing fields before a first apply):
/// moves the changed fields to `id`'s entry and drops removed fields from every entry.
pub(crate) fn record_update(
    old: &Value,
    new: &Value,
    managed: &mut Managed,
    id: &ManagerId,
    scope: Scope,
    ty: &Ty,
    now: &str,
) -> Result<(), TypeError> {
    // The old object's managedFields are not part of it (the new one has none by now).
    let cmp = scope.filter_comparison(compare_without_managed_fields(old, new, ty)?);
    let changed = cmp.added.union(&cmp.modified);
    for owned in managed.entries.values_mut() {
        owned.set = owned.set.difference(&changed).difference(&cmp.removed);
    }
    managed.drop_empty();
    let current = strip_meta(&changed);
    if !current.is_empty() {
        let api_version = id.api_version.clone();
        let entry = managed.entries.entry(id.clone()).or_insert_with(|| crate::managers::Owned {
            set: crate::fieldpath::FieldSet::new(),
            api_version: api_version.clone(),
            time: None,
        });
        entry.set.union_in_place(&current);
        entry.api_version = api_version;
        entry.time = Some(now.to_owned());
    }
    managed.cap_update_managers(MAX_UPDATE_MANAGERS);
    Ok(())
}

/// The entries an update starts from (the apiserver's `decodeLiveOrNew`).
fn live_or_new_managed(old: Option<&Value>, new: &Value, subresource: bool, ty: &Ty) -> Managed {
    let from_old =
        || old.and_then(|o| Managed::decode(o.pointer("/metadata/managedFields"), ty).ok()).unwrap_or_default();
    if subresource {
        return from_old();
    }
    let sent = new.pointer("/metadata/managedFields");
    if is_reset(sent) {
        return Managed::default();
    }
    match Managed::decode(sent, ty) {
        Ok(m) if !m.is_empty() => m,
        _ => from_old(),
    }
}

/// `[]` or `[{}]`: the client asks to clear `managedFields`.
fn is_reset(sent: Option<&Value>) -> bool {
    match sent {
        Some(Value::Array(entries)) => match entries.as_slice() {
            [] => true,
            [Value::Object(e)] => e.values().all(|v| match v {
                Value::Null => true,
                Value::String(s) => s.is_empty(),
                Value::Object(o) => o.is_empty(),
                _ => false,
            }),
            _ => false,
        },
        _ => false,
    }
}

pub(crate) fn uid(obj: &Value) -> &str {
    obj.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("")
}

pub(crate) fn api_version_of(manager: Manager<'_>, obj: &Value) -> String {
    if manager.api_version.is_empty() {
        obj.get("apiVersion").and_then(Value::as_str).unwrap_or("").to_owned()
    } else {
        manager.api_version.to_owned()
    }
}

pub(crate) fn remove_managed_fields(obj: &mut Value) {
    if let Some(Value::Object(meta)) = obj.get_mut("metadata") {
        meta.remove("managedFields");
    }
}

/// Sets (or, for `None`, removes) `metadata.managedFields`.
pub(crate) fn set_managed_fields(obj: &mut Value, fields: Option<Value>) {
    let Value::Object(root) = obj else {
        return;
    };
    match fields {
        Some(fields) => {
            let meta = root.entry("metadata").or_insert_with(|| Value::Object(serde_json::Map::new()));
            if let Value::Object(meta) = meta {
                meta.insert("managedFields".to_owned(), fields);
            }
        }
        None => {
            if let Some(Value::Object(meta)) = root.get_mut("metadata") {
                meta.remove("managedFields");
            }
        }
    }
}
