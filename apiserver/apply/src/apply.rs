//! Server-side apply.

use serde_json::{Map, Value, json};

use crate::Manager;
use crate::conflict::{Conflict, Conflicts};
use crate::lastapplied::{self, KUBECTL};
use crate::managers::{Managed, ManagedFieldsError, ManagerId, Operation, Owned};
use crate::merge::{merge, prune};
use crate::scope::{Scope, strip_meta};
use crate::typed::{Duplicates, TypeError, compare, field_set};
use crate::typeinfo::{Ty, TypeInfo};
use crate::update::{api_version_of, record_update, remove_managed_fields, set_managed_fields};

/// The manager the apiserver attributes an object's existing fields to when it is applied to
/// for the first time and has no `managedFields`.
pub const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// Why an apply was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// Fields of the configuration are owned by other managers with other values; retry with
    /// `force` to take them. HTTP 409, see [`Conflicts::to_status`].
    #[error("{0}")]
    Conflicts(Conflicts),
    /// The configuration or the request is malformed (no `apiVersion`/`kind`, wrong version
    /// or kind, other name, `managedFields` set, duplicate list keys…). HTTP 400.
    #[error("{0}")]
    BadRequest(String),
    /// The stored object cannot be processed: unreadable `managedFields`, or contents that do
    /// not fit the types. HTTP 500.
    #[error("{0}")]
    Internal(String),
}

impl ApplyError {
    /// The HTTP status code the apiserver answers with.
    pub fn code(&self) -> u16 {
        match self {
            ApplyError::Conflicts(_) => 409,
            ApplyError::BadRequest(_) => 400,
            ApplyError::Internal(_) => 500,
        }
    }

    /// The `metav1.Status` body the apiserver answers with.
    pub fn to_status(&self) -> Value {
        let (reason, message) = match self {
            ApplyError::Conflicts(c) => return c.to_status(),
            ApplyError::BadRequest(m) => ("BadRequest", m),
            ApplyError::Internal(m) => ("InternalError", m),
        };
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": self.code(),
        })
    }
}

impl From<ManagedFieldsError> for ApplyError {
    fn from(e: ManagedFieldsError) -> Self {
        ApplyError::Internal(format!("failed to decode managed fields: {e}"))
    }
}

/// Applies `config` (a partial object, already decoded from YAML or JSON) for `manager`, and
/// returns the resulting object with its `metadata.managedFields` updated.
///
/// `live` is the stored object, `None` when the apply creates it (the server then does the
/// rest of a create: name and namespace checks, uid, timestamps…). As the apiserver:
/// - `config` is merged into the live object: granular maps key by key, `set` and `map`
///   lists item by item, atomic values replaced whole;
/// - fields the manager applied last time and left out now are removed, unless another
///   manager owns them too (then only the manager's ownership goes);
/// - the manager's `Apply` entry becomes exactly the fields of `config` (its `time` is set to
///   `now` when the object changed);
/// - a field of `config` owned by another manager with a different live value is a
///   conflict; with `force` the manager takes it from the others instead. Fields applied with
///   the live value are shared;
/// - an object that has no `managedFields` first gets its fields attributed to a
///   [`BEFORE_FIRST_APPLY`] `Update` entry;
/// - on the main resource of a kind with a status subresource, `status` in `config` is
///   ignored; on `/status`, everything but `status` is ignored;
/// - for the `kubectl` manager, conflicts on fields that kubectl's client-side
///   last-applied annotation shows it set are forgiven, and that annotation is kept in sync.
///
/// `config` must have `apiVersion` and `kind` (those of the live object), must not set
/// `metadata.managedFields`, and its `metadata.name`, if any, must be the live object's.
/// `now` is an RFC 3339 time.
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    manager: Manager<'_>,
    force: bool,
    types: &TypeInfo,
    now: &str,
) -> Result<Value, ApplyError> {
    validate(live, config, manager)?;
    let ty = &types.root;
    let subresource = manager.subresource.unwrap_or("");
    let api_version = api_version_of(manager, config);
    let scope = Scope::of(types, manager.subresource);

    let (live_obj, mut managed) = match live {
        Some(l) => {
            let managed = Managed::decode(l.pointer("/metadata/managedFields"), ty)?;
            let mut obj = l.clone();
            remove_managed_fields(&mut obj);
            (obj, managed)
        }
        None => {
            let mut obj = Map::new();
            for key in ["apiVersion", "kind"] {
                if let Some(v) = config.get(key) {
                    obj.insert(key.to_owned(), v.clone());
                }
            }
            (Value::Object(obj), Managed::default())
        }
    };

    if managed.is_empty() && live.is_some() {
        let id = ManagerId::new(BEFORE_FIRST_APPLY, Operation::Update, &api_version, subresource);
        let empty = types.empty_object(&live_obj);
        record_update(&empty, &live_obj, &mut managed, &id, scope, ty, now)
            .map_err(|e| ApplyError::Internal(format!("failed to create manager for existing fields: {e}")))?;
    }

    let scoped_config = scope.restrict_config(config);
    let applier = ManagerId::new(manager.name, Operation::Apply, &api_version, subresource);
    let attempt = |managed: Managed, force: bool| {
        apply_core(&live_obj, &scoped_config, managed, &applier, &api_version, force, scope, ty, now)
    };
    let (mut result, managed) = match attempt(managed.clone(), force) {
        Err(ApplyError::Conflicts(conflicts)) if manager.name == KUBECTL => {
            match lastapplied::allowed_conflicts(&live_obj, ty) {
                Some(allowed) => {
                    let remaining: Vec<Conflict> =
                        conflicts.0.into_iter().filter(|c| !allowed.has(c.path.elements())).collect();
                    if remaining.is_empty() {
                        attempt(managed, true)?
                    } else {
                        return Err(ApplyError::Conflicts(Conflicts(remaining)));
                    }
                }
                None => return Err(ApplyError::Conflicts(conflicts)),
            }
        }
        other => other?,
    };
    if manager.name == KUBECTL {
        lastapplied::sync(&mut result, config);
    }
    set_managed_fields(&mut result, managed.encode());
    Ok(result)
}

/// The request checks of the apiserver's apply path.
fn validate(live: Option<&Value>, config: &Value, manager: Manager<'_>) -> Result<(), ApplyError> {
    let bad = |m: String| Err(ApplyError::BadRequest(m));
    if manager.name.is_empty() {
        return bad(
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
                .to_owned(),
        );
    }
    let Value::Object(obj) = config else {
        return bad("the applied configuration must be an object".to_owned());
    };
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).unwrap_or("").to_owned();
    let (api_version, kind) = (text(config, "apiVersion"), text(config, "kind"));
    if api_version.is_empty() {
        return bad("apiVersion must be set in the applied configuration".to_owned());
    }
    if kind.is_empty() {
        return bad("kind must be set in the applied configuration".to_owned());
    }
    if let Some(meta) = obj.get("metadata")
        && !meta.is_null()
        && !meta.is_object()
    {
        return bad("metadata must be an object".to_owned());
    }
    if config.pointer("/metadata/managedFields").is_some_and(|v| !v.is_null()) {
        return bad("metadata.managedFields must be nil".to_owned());
    }
    let expected_version = if manager.api_version.is_empty() {
        live.map(|l| text(l, "apiVersion")).unwrap_or_default()
    } else {
        manager.api_version.to_owned()
    };
    if !expected_version.is_empty() && api_version != expected_version {
        return bad(format!(
            "Incorrect version specified in apply patch. Specified patch version: {api_version}, expected: {expected_version}"
        ));
    }
    if let Some(live) = live {
        let live_kind = text(live, "kind");
        if !live_kind.is_empty() && live_kind != kind {
            return bad(format!("invalid object type: {api_version}, Kind={kind}"));
        }
        let name = config.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
        let live_name = live.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
        if !name.is_empty() && !live_name.is_empty() && name != live_name {
            return bad(format!("the name of the object ({name}) does not match the name on the URL ({live_name})"));
        }
    }
    Ok(())
}

/// structured-merge-diff's `Updater.Apply` with the apiserver's metadata stripping and
/// timestamps.
#[allow(clippy::too_many_arguments)]
fn apply_core(
    live: &Value,
    config: &Value,
    mut managed: Managed,
    applier: &ManagerId,
    api_version: &str,
    force: bool,
    scope: Scope,
    ty: &Ty,
    now: &str,
) -> Result<(Value, Managed), ApplyError> {
    let config_set = field_set(config, ty, Duplicates::Reject)
        .map_err(|e| ApplyError::BadRequest(format!("failed to create typed patch object: {e}")))?;
    let internal = |what: &str, e: TypeError| ApplyError::Internal(format!("{what}: {e}"));
    let merged = merge(live, config, ty).map_err(|e| internal("failed to merge config", e))?;

    let last = managed.entries.get(applier).map(|o| o.set.clone());
    let previous_time = managed.entries.get(applier).and_then(|o| o.time.clone());
    managed.entries.insert(
        applier.clone(),
        Owned { set: scope.filter(config_set), api_version: api_version.to_owned(), time: previous_time },
    );
    let pruned =
        prune(&merged, &managed.all_owned(), last.as_ref(), ty).map_err(|e| internal("failed to prune fields", e))?;

    let cmp =
        scope.filter_comparison(compare(live, &pruned, ty).map_err(|e| internal("failed to compare objects", e))?);
    let changed = cmp.added.union(&cmp.modified);
    let mut conflicts = Vec::new();
    for (id, owned) in &managed.entries {
        if id == applier {
            continue;
        }
        for path in owned.set.intersection(&changed).paths() {
            conflicts.push(Conflict::new(id, path));
        }
    }
    if !force && !conflicts.is_empty() {
        return Err(ApplyError::Conflicts(Conflicts::sorted(conflicts)));
    }
    for (id, owned) in managed.entries.iter_mut() {
        if id != applier {
            owned.set = owned.set.difference(&changed).difference(&cmp.removed);
        }
    }
    if let Some(owned) = managed.entries.get_mut(applier) {
        owned.set = strip_meta(&owned.set);
        if *live != pruned {
            owned.time = Some(now.to_owned());
        }
    }
    managed.drop_empty();
    Ok((pruned, managed))
}
