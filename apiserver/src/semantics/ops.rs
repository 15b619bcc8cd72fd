//! The API operations with Kubernetes semantics — create, get, update, patch, delete — apart
//! from HTTP, so the server's own controllers (garbage collection, namespace deletion) use the
//! same rules as clients. Synchronous: callers run them on a blocking thread.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::semantics::errors::{ApiError, Cause};
use crate::semantics::meta::{self, meta_mut, meta_str};
use crate::semantics::registry::{Builtin, Resource};
use crate::semantics::request::Request;
use crate::semantics::selectors::{FieldSelector, LabelSelector};
use crate::semantics::state::Api;
use crate::semantics::{admission, builtins, fields, identity};
use crate::store::{ObjectKey, Precondition, ResourceKey, StoreError, Stored, revision_of};

/// How many times a patch or delete is retried when the object changes underneath it.
const RACED_WRITE_RETRIES: usize = 8;

/// The finalizer a CRD gets when it is first deleted: the server's controllers delete its
/// instances (waiting for their finalizers), then remove it (Kubernetes'
/// `customresourcecleanup` finalizer controller).
pub const CUSTOM_RESOURCE_CLEANUP: &str = "customresourcecleanup.apiextensions.k8s.io";

/// A successful write.
#[derive(Debug)]
pub struct Written {
    /// The object as stored (in the client's version).
    pub object: Value,
    /// Warnings for the `Warning` header.
    pub warnings: Vec<String>,
    /// Whether the object was created (201) rather than updated.
    pub created: bool,
}

/// A patch document.
#[derive(Debug)]
pub enum Patch {
    /// RFC 7386 JSON merge patch.
    Merge(Value),
    /// RFC 6902 JSON patch.
    Json(Value),
    /// Strategic merge patch (applied as a merge patch honouring `$patch: delete|replace`).
    Strategic(Value),
    /// Server-side apply.
    Apply {
        /// The applied configuration.
        config: Value,
        /// Take ownership of conflicting fields.
        force: bool,
    },
}

/// Options of a delete.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    /// `Background` (default), `Foreground` or `Orphan`.
    pub propagation: Option<String>,
    /// Only delete the object with this uid.
    pub uid: Option<String>,
    /// Only delete the object at this resourceVersion.
    pub resource_version: Option<String>,
}

/// What a delete did.
#[derive(Debug)]
pub enum Deleted {
    /// Gone now.
    Gone(Value),
    /// Marked for deletion; waiting for finalizers.
    Pending(Value),
}

/// A copy of `object` without its status (copied only to be replaced: it can be megabytes).
fn without_status(object: &Value) -> Value {
    match object.as_object() {
        Some(map) => {
            Value::Object(map.iter().filter(|(key, _)| *key != "status").map(|(k, v)| (k.clone(), v.clone())).collect())
        }
        None => object.clone(),
    }
}

/// Why one round of a delete did not finish.
enum DeleteError {
    /// The object changed between the read and the write: read it again.
    Raced,
    /// The answer to give the client.
    Api(ApiError),
}

impl DeleteError {
    fn from_store(request: &Request, name: &str, error: StoreError) -> Self {
        match error {
            StoreError::Conflict { .. } => Self::Raced,
            other => Self::Api(store_error(request, name, other)),
        }
    }
}

impl From<ApiError> for DeleteError {
    fn from(error: ApiError) -> Self {
        Self::Api(error)
    }
}

fn store_error(request: &Request, name: &str, error: StoreError) -> ApiError {
    match error {
        StoreError::AlreadyExists => ApiError::already_exists(request.group(), request.plural(), name),
        StoreError::NotFound => request.not_found(name),
        StoreError::Conflict { .. } => ApiError::conflict(request.group(), request.plural(), name),
        StoreError::Gone { requested, oldest } => {
            ApiError::gone(format!("too old resource version: {requested} ({oldest})"))
        }
        other => {
            tracing::error!(error = %other, resource = request.plural(), name, "storage failed");
            ApiError::internal(other.to_string())
        }
    }
}

/// Rewrites `apiVersion` for the client's version (this server runs no conversion
/// webhooks: every version has the same schema) and builds the events.k8s.io view of events.
pub fn present(resource: &Resource, version: &str, object: &Value) -> Value {
    let mut object = object.clone();
    if resource.builtin == Some(Builtin::EventsV1) {
        object = builtins::event_to_events_v1(&object);
    }
    if let Some(map) = object.as_object_mut() {
        map.insert("apiVersion".into(), Value::String(resource.api_version(version)));
        map.insert("kind".into(), Value::String(resource.kind.clone()));
    }
    object
}

/// Appends `object` as the client asking for `version` sees it: the stored text itself when
/// that is the client's view (same apiVersion and kind, not the events.k8s.io view; the usual
/// case), else the view built by [`present`] and serialised.
pub fn write_presented(resource: &Resource, version: &str, object: &Stored, out: &mut Vec<u8>) {
    let as_stored = resource.builtin != Some(Builtin::EventsV1)
        && object.kind() == resource.kind
        && object.api_version() == resource.api_version(version);
    if as_stored {
        out.extend_from_slice(object.json().as_bytes());
    } else if let Err(error) = serde_json::to_writer(&mut *out, &present(resource, version, &object.value())) {
        tracing::error!(%error, "an object did not serialise");
    }
}

/// Whether `object` matches the selectors, parsed only as far as they need: not at all without
/// them, its metadata for labels, the client's view for fields.
pub fn selected(
    resource: &Resource,
    version: &str,
    labels: &LabelSelector,
    fields: &FieldSelector,
    object: &Stored,
) -> bool {
    if fields.is_empty() {
        return labels.is_empty() || labels.matches(&object.metadata());
    }
    let object = object.value();
    labels.matches(&object) && fields.matches(&present(resource, version, &object))
}

/// The stored form of an object the client sent.
fn to_storage(resource: &Resource, object: Value) -> Value {
    let mut object =
        if resource.builtin == Some(Builtin::EventsV1) { builtins::events_v1_to_event(&object) } else { object };
    if let Some(map) = object.as_object_mut() {
        let version = resource.storage_version().to_owned();
        let storage_group = &resource.storage.group;
        let api_version = if storage_group.is_empty() { version } else { format!("{storage_group}/{version}") };
        map.insert("apiVersion".into(), Value::String(api_version));
    }
    object
}

fn decode_object(request: &Request, body: Value) -> Result<Value, ApiError> {
    let Value::Object(map) = body else {
        return Err(ApiError::bad_request("the body of the request must be a JSON or YAML object"));
    };
    let expected = request.resource.api_version(&request.version);
    match map.get("apiVersion").and_then(Value::as_str) {
        Some(found) if found != expected => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({found}) does not match the expected API version ({expected})"
            )));
        }
        _ => {}
    }
    match map.get("kind").and_then(Value::as_str) {
        Some(found) if found != request.resource.kind => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({found}) does not match the expected kind ({})",
                request.resource.kind
            )));
        }
        _ => {}
    }
    let mut object = Value::Object(map);
    if let Some(meta) = meta_mut(&mut object) {
        if let Some(namespace) = &request.namespace {
            match meta.get("namespace").and_then(Value::as_str) {
                Some(found) if !found.is_empty() && found != namespace => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {
                    meta.insert("namespace".into(), Value::String(namespace.clone()));
                }
            }
        } else {
            meta.remove("namespace");
        }
    }
    Ok(object)
}

fn invalid(request: &Request, name: &str, field: &str, reason: &str, message: String) -> ApiError {
    ApiError::invalid(
        request.group(),
        &request.resource.kind,
        name,
        vec![Cause { reason: reason.into(), message, field: field.into() }],
    )
}

/// Checks the parts of `metadata` every kind shares.
fn validate_metadata(request: &Request, object: &Value) -> Result<(), ApiError> {
    let name = meta_str(object, "name").unwrap_or_default();
    let mut causes = Vec::new();
    let name_problem = match request.resource.builtin {
        Some(Builtin::Namespace) => meta::dns_label_problem(name),
        Some(builtin) if builtin.is_rbac() => meta::path_segment_problem(name),
        _ => meta::dns_subdomain_problem(name),
    };
    if let Some(problem) = name_problem {
        causes.push(Cause { reason: "FieldValueInvalid".into(), message: problem, field: "metadata.name".into() });
    }
    for (field, check_values) in [("labels", true), ("annotations", false)] {
        let Some(map) = object.pointer(&format!("/metadata/{field}")) else { continue };
        let Some(map) = map.as_object() else {
            causes.push(Cause {
                reason: "FieldValueTypeInvalid".into(),
                message: "must be a map of strings".into(),
                field: format!("metadata.{field}"),
            });
            continue;
        };
        for (key, value) in map {
            if let Some(problem) = meta::qualified_name_problem(key) {
                causes.push(Cause {
                    reason: "FieldValueInvalid".into(),
                    message: problem,
                    field: format!("metadata.{field}"),
                });
            }
            match value.as_str() {
                Some(text) if check_values => {
                    if let Some(problem) = meta::label_value_problem(text) {
                        causes.push(Cause {
                            reason: "FieldValueInvalid".into(),
                            message: problem,
                            field: format!("metadata.{field}"),
                        });
                    }
                }
                Some(_) => {}
                None => causes.push(Cause {
                    reason: "FieldValueTypeInvalid".into(),
                    message: format!("Invalid value: {value}: must be a string"),
                    field: format!("metadata.{field}[{key}]"),
                }),
            }
        }
    }
    if let Some(finalizers) = object.pointer("/metadata/finalizers")
        && !finalizers.as_array().is_some_and(|f| f.iter().all(Value::is_string))
    {
        causes.push(Cause {
            reason: "FieldValueTypeInvalid".into(),
            message: "must be a list of strings".into(),
            field: "metadata.finalizers".into(),
        });
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(request.group(), &request.resource.kind, name, causes))
    }
}

impl Api {
    /// Reads one object.
    pub fn get(&self, request: &Request) -> Result<Value, ApiError> {
        let name = request.name.as_deref().unwrap_or_default();
        let object =
            self.store.get(&request.resource.storage, &request.key(name)).ok_or_else(|| request.not_found(name))?;
        Ok(present(&request.resource, &request.version, &object))
    }

    /// Creates an object (POST on a collection).
    pub fn create(&self, request: &Request, body: Value) -> Result<Written, ApiError> {
        self.create_tracked(request, body, true)
    }

    /// Creates an object; `track` records the writer in managedFields (an apply has already).
    fn create_tracked(&self, request: &Request, body: Value, track: bool) -> Result<Written, ApiError> {
        let mut object = to_storage(&request.resource, decode_object(request, body)?);
        let resource = Arc::clone(&request.resource);
        if let Some(namespace) = &request.namespace {
            self.check_namespace_open(namespace)?;
        }
        let meta = meta_mut(&mut object).ok_or_else(|| ApiError::bad_request("metadata must be an object"))?;
        let name = match (meta.get("name").and_then(Value::as_str), meta.get("generateName").and_then(Value::as_str)) {
            (Some(name), _) if !name.is_empty() => name.to_owned(),
            (_, Some(prefix)) if !prefix.is_empty() => format!("{prefix}{}", meta::name_suffix()),
            _ => {
                return Err(invalid(
                    request,
                    "",
                    "metadata.name",
                    "FieldValueRequired",
                    "Required value: name or generateName is required".into(),
                ));
            }
        };
        if resource.builtin.is_none() && self.custom_resource_terminating(&resource) {
            // As Kubernetes (1.34) answers a create or an apply that would create.
            return Err(ApiError::forbidden(
                request.group(),
                request.plural(),
                &name,
                "create not allowed while custom resource definition is terminating",
            ));
        }
        meta.insert("name".into(), Value::String(name.clone()));
        meta.insert("uid".into(), Value::String(meta::new_uid()));
        meta.insert("creationTimestamp".into(), Value::String(meta::now()));
        for transient in ["resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"] {
            meta.remove(transient);
        }
        if resource.builtin.is_none() || resource.builtin == Some(Builtin::CustomResourceDefinition) {
            meta.insert("generation".into(), json!(1));
        } else {
            meta.remove("generation");
        }
        if resource.status
            && resource.builtin.is_none()
            && let Some(map) = object.as_object_mut()
        {
            // Status belongs to the status subresource: a create cannot set it.
            map.remove("status");
        }
        validate_metadata(request, &object)?;
        let warnings = self.admit(request, &mut object, None)?;
        if track {
            fields::track_update(
                &resource,
                &request.version,
                None,
                &mut object,
                &request.field_manager,
                request.subresource.as_deref(),
            );
        }
        self.commit(request, &name, object, Precondition::Absent, warnings, true)
    }

    /// Replaces an object (PUT), or its status (PUT on `/status`).
    pub fn update(&self, request: &Request, body: Value) -> Result<Written, ApiError> {
        let name = request.name.clone().unwrap_or_default();
        let object = to_storage(&request.resource, decode_object(request, body)?);
        if let Some(body_name) = meta_str(&object, "name")
            && body_name != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let requested = meta_str(&object, "resourceVersion").filter(|v| !v.is_empty()).map(str::to_owned);
        let current =
            self.store.get(&request.resource.storage, &request.key(&name)).ok_or_else(|| request.not_found(&name))?;
        let precondition = match requested {
            Some(version) => {
                let version: u64 = version.parse().map_err(|_| {
                    invalid(
                        request,
                        &name,
                        "metadata.resourceVersion",
                        "FieldValueInvalid",
                        format!("Invalid value: {version:?}: must be an integer"),
                    )
                })?;
                Precondition::Revision(version)
            }
            None if request.resource.builtin.is_none() => {
                return Err(invalid(
                    request,
                    &name,
                    "metadata.resourceVersion",
                    "FieldValueInvalid",
                    "Invalid value: 0x0: must be specified for an update".into(),
                ));
            }
            None => Precondition::Revision(revision_of(&current)),
        };
        if let Precondition::Revision(expected) = precondition
            && expected != revision_of(&current)
        {
            return Err(ApiError::conflict(request.group(), request.plural(), &name));
        }
        self.replace(request, &current, object, precondition, true)
    }

    /// Merges what the client may change into the current object, admits, and commits.
    fn replace(
        &self,
        request: &Request,
        current: &Value,
        mut object: Value,
        precondition: Precondition,
        track: bool,
    ) -> Result<Written, ApiError> {
        let name = meta_str(current, "name").unwrap_or_default().to_owned();
        let resource = Arc::clone(&request.resource);
        if request.is_status() {
            // The status subresource changes status only (and, for an apply, who owns it:
            // the apply already computed the managedFields).
            let status = object.as_object_mut().and_then(|map| map.remove("status"));
            let applied_fields = (!track).then(|| object.pointer("/metadata/managedFields").cloned()).flatten();
            object = without_status(current);
            if let (Some(fields), Some(meta)) = (applied_fields, meta_mut(&mut object)) {
                meta.insert("managedFields".into(), fields);
            }
            match (object.as_object_mut(), status) {
                (Some(map), Some(status)) => {
                    map.insert("status".into(), status);
                }
                (Some(map), None) => {
                    map.remove("status");
                }
                _ => {}
            }
        } else if resource.status
            && let Some(map) = object.as_object_mut()
        {
            match current.get("status") {
                Some(status) => map.insert("status".into(), status.clone()),
                None => map.remove("status"),
            };
        }
        let no_meta = serde_json::Map::new();
        let current_meta = current.get("metadata").and_then(Value::as_object).unwrap_or(&no_meta);
        let meta = meta_mut(&mut object).ok_or_else(|| ApiError::bad_request("metadata must be an object"))?;
        for immutable in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            match current_meta.get(immutable) {
                Some(value) => meta.insert(immutable.into(), value.clone()),
                None => meta.remove(immutable),
            };
        }
        // Absent managedFields keep the stored ones; a list (even empty) replaces them.
        if !meta.contains_key("managedFields")
            && let Some(managed) = current_meta.get("managedFields")
        {
            meta.insert("managedFields".into(), managed.clone());
        }
        meta.remove("resourceVersion");
        if current_meta.contains_key("deletionTimestamp") {
            let before = meta::finalizers(current);
            if let Some(added) = meta::finalizers(&object).into_iter().find(|f| !before.contains(f)) {
                return Err(ApiError::forbidden(
                    request.group(),
                    request.plural(),
                    &name,
                    format!(
                        "no new finalizers can be added if the object is being deleted, found new finalizers [\"{added}\"]"
                    ),
                ));
            }
        }
        if !meta::same_spec(&object, current) && current_meta.contains_key("generation") {
            let generation = current_meta.get("generation").and_then(Value::as_i64).unwrap_or(0) + 1;
            if let Some(meta) = meta_mut(&mut object) {
                meta.insert("generation".into(), json!(generation));
            }
        }
        validate_metadata(request, &object)?;
        let warnings = self.admit(request, &mut object, Some(current))?;
        if track {
            fields::track_update(
                &resource,
                &request.version,
                Some(current),
                &mut object,
                &request.field_manager,
                request.subresource.as_deref(),
            );
        }
        if meta::same_content(&object, current) {
            // Nothing changed: no new revision, no watch event (controllers rely on this to settle).
            return Ok(Written { object: present(&resource, &request.version, current), warnings, created: false });
        }
        let deleting = current_meta.contains_key("deletionTimestamp");
        if deleting && meta::finalizers(&object).is_empty() {
            if request.dry_run {
                return Ok(Written { object: present(&resource, &request.version, &object), warnings, created: false });
            }
            // The last finalizer is gone: the object goes away.
            let key = request.key(&name);
            let gone = if resource.builtin == Some(Builtin::CustomResourceDefinition) {
                self.remove_custom_resource_definition(current, precondition)
            } else {
                self.store.delete(&resource.storage, &key, precondition)
            }
            .map_err(|e| store_error(request, &name, e))?;
            return Ok(Written { object: present(&resource, &request.version, &gone), warnings, created: false });
        }
        self.commit(request, &name, object, precondition, warnings, false)
    }

    fn commit(
        &self,
        request: &Request,
        name: &str,
        object: Value,
        precondition: Precondition,
        warnings: Vec<String>,
        created: bool,
    ) -> Result<Written, ApiError> {
        let resource = &request.resource;
        if request.dry_run {
            return Ok(Written { object: present(resource, &request.version, &object), warnings, created });
        }
        let stored =
            self.store.put(&resource.storage, object, precondition).map_err(|e| store_error(request, name, e))?;
        if resource.builtin == Some(Builtin::CustomResourceDefinition) {
            self.refresh_registry();
        }
        Ok(Written { object: present(resource, &request.version, &stored), warnings, created })
    }

    fn admit(&self, request: &Request, object: &mut Value, old: Option<&Value>) -> Result<Vec<String>, ApiError> {
        if let Some(special) = request.resource.builtin {
            builtins::prepare(special, object, old, request)?;
            if special == Builtin::Secret {
                identity::admit_token_secret(self, request, object, old)?;
            }
            if special == Builtin::CustomResourceDefinition {
                return admission::admit_crd(self, request, object, old);
            }
            return Ok(Vec::new());
        }
        admission::admit(self, request, object, old)
    }

    /// Applies a patch (retrying when the object changes underneath, unless the patch itself
    /// carries a resourceVersion).
    pub fn patch(&self, request: &Request, patch: Patch) -> Result<Written, ApiError> {
        let name = request.name.clone().unwrap_or_default();
        for _ in 0..RACED_WRITE_RETRIES {
            let current = self.store.get(&request.resource.storage, &request.key(&name));
            let result = match (&patch, current) {
                (Patch::Apply { config, force }, None) if !request.is_status() => {
                    let merged = fields::apply(
                        &request.resource,
                        &request.version,
                        None,
                        config,
                        &request.field_manager,
                        None,
                        *force,
                    )
                    .map_err(|e| fields::apply_error(request, &name, e))?;
                    self.create_tracked(request, merged, false)
                }
                (_, None) => return Err(request.not_found(&name)),
                (patch, Some(current)) => self.patch_existing(request, &name, &current, patch),
            };
            match result {
                Err(error)
                    if error.reason == "Conflict" && error.causes().is_empty() && !patch_sets_version(&patch) =>
                {
                    continue;
                }
                other => return other,
            }
        }
        Err(ApiError::conflict(request.group(), request.plural(), &name))
    }

    fn patch_existing(
        &self,
        request: &Request,
        name: &str,
        current: &Arc<Value>,
        patch: &Patch,
    ) -> Result<Written, ApiError> {
        let resource = &request.resource;
        let visible = present(resource, &request.version, current);
        let patched = match patch {
            Patch::Merge(document) => {
                let mut target = visible.clone();
                json_patch::merge(&mut target, document);
                target
            }
            Patch::Strategic(document) => {
                let mut target = visible.clone();
                crate::semantics::patch::strategic_merge(&mut target, document);
                target
            }
            Patch::Json(document) => {
                let operations: json_patch::Patch = serde_json::from_value(document.clone())
                    .map_err(|e| ApiError::bad_request(format!("the JSON patch is invalid: {e}")))?;
                let mut target = visible.clone();
                apply_json_patch(&mut target, operations).map_err(ApiError::unprocessable)?;
                target
            }
            Patch::Apply { config, force } => fields::apply(
                resource,
                &request.version,
                Some(&visible),
                config,
                &request.field_manager,
                request.subresource.as_deref(),
                *force,
            )
            .map_err(|e| fields::apply_error(request, name, e))?,
        };
        let requested = meta_str(&patched, "resourceVersion").and_then(|v| v.parse::<u64>().ok());
        let precondition = match requested {
            Some(version) if patch_sets_version(patch) => {
                if version != revision_of(current) {
                    return Err(ApiError::conflict(request.group(), request.plural(), name));
                }
                Precondition::Revision(version)
            }
            _ => Precondition::Revision(revision_of(current)),
        };
        let patched = to_storage(resource, decode_object(request, patched)?);
        let track = !matches!(patch, Patch::Apply { .. });
        self.replace(request, current, patched, precondition, track)
    }

    /// Deletes an object, or marks it for deletion while finalizers remain. Like the
    /// Kubernetes apiserver, a delete is tried again when the object changes between its read
    /// and its write (a controller's status write must not fail a `kubectl delete`); only the
    /// caller's own preconditions give a conflict.
    pub fn delete(&self, request: &Request, options: &DeleteOptions) -> Result<Deleted, ApiError> {
        let name = request.name.clone().unwrap_or_default();
        for _ in 0..RACED_WRITE_RETRIES {
            match self.try_delete(request, &name, options) {
                Err(DeleteError::Raced) => continue,
                Err(DeleteError::Api(error)) => return Err(error),
                Ok(deleted) => return Ok(deleted),
            }
        }
        Err(ApiError::conflict(request.group(), request.plural(), &name))
    }

    /// One read-decide-write round of [`Self::delete`].
    fn try_delete(&self, request: &Request, name: &str, options: &DeleteOptions) -> Result<Deleted, DeleteError> {
        let key = request.key(name);
        let resource = Arc::clone(&request.resource);
        let current = self.store.get(&resource.storage, &key).ok_or_else(|| request.not_found(name))?;
        let preconditions =
            [("UID", "uid", &options.uid), ("ResourceVersion", "resourceVersion", &options.resource_version)];
        for (label, field, wanted) in preconditions {
            let actual = meta_str(&current, field).unwrap_or_default();
            if let Some(wanted) = wanted
                && wanted != actual
            {
                let message =
                    format!("Precondition failed: {label} in precondition: {wanted}, {label} in object meta: {actual}");
                return Err(
                    ApiError::conflict_with(request.group(), request.plural(), name, message, Vec::new()).into()
                );
            }
        }
        let mut finalizers = meta::finalizers(&current);
        match options.propagation.as_deref() {
            Some("Foreground") if !finalizers.iter().any(|f| f == "foregroundDeletion") => {
                finalizers.push("foregroundDeletion".into())
            }
            Some("Orphan") if !finalizers.iter().any(|f| f == "orphan") => finalizers.push("orphan".into()),
            Some("Foreground" | "Orphan" | "Background") | None => {}
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "unknown propagationPolicy {other:?}: expected Foreground, Background or Orphan"
                ))
                .into());
            }
        }
        let namespace_finalizers = resource.builtin == Some(Builtin::Namespace);
        let crd = resource.builtin == Some(Builtin::CustomResourceDefinition);
        let first_delete = current.pointer("/metadata/deletionTimestamp").is_none();
        if crd && first_delete && !finalizers.iter().any(|f| f == CUSTOM_RESOURCE_CLEANUP) {
            // Its instances are deleted first, the normal way, by the server's controllers.
            finalizers.push(CUSTOM_RESOURCE_CLEANUP.into());
        }
        if finalizers.is_empty() && !namespace_finalizers {
            if request.dry_run {
                return Ok(Deleted::Gone(present(&resource, &request.version, &current)));
            }
            let precondition = Precondition::Revision(revision_of(&current));
            let gone = if crd {
                self.remove_custom_resource_definition(&current, precondition)
            } else {
                self.store.delete(&resource.storage, &key, precondition)
            }
            .map_err(|e| DeleteError::from_store(request, name, e))?;
            return Ok(Deleted::Gone(present(&resource, &request.version, &gone)));
        }
        if current.pointer("/metadata/deletionTimestamp").is_some() && finalizers == meta::finalizers(&current) {
            return Ok(Deleted::Pending(present(&resource, &request.version, &current)));
        }
        let mut marked = (*current).clone();
        if let Some(meta) = meta_mut(&mut marked) {
            meta.entry("deletionTimestamp").or_insert_with(|| Value::String(meta::now()));
            meta.entry("deletionGracePeriodSeconds").or_insert(json!(0));
            meta.insert("finalizers".into(), json!(finalizers));
            meta.remove("resourceVersion");
        }
        if namespace_finalizers {
            marked["status"]["phase"] = json!("Terminating");
        }
        if crd && first_delete {
            set_condition(
                &mut marked,
                "Terminating",
                "True",
                "InstanceDeletionPending",
                "CustomResourceDefinition marked for deletion; CustomResource deletion will begin soon",
            );
        }
        if request.dry_run {
            return Ok(Deleted::Pending(present(&resource, &request.version, &marked)));
        }
        let stored = self
            .store
            .put(&resource.storage, marked, Precondition::Revision(revision_of(&current)))
            .map_err(|e| DeleteError::from_store(request, name, e))?;
        if crd {
            self.refresh_registry();
        }
        Ok(Deleted::Pending(present(&resource, &request.version, &stored)))
    }

    /// Whether the CRD defining a custom resource is being deleted (read from the store, not
    /// from the registry the request was routed with, so a create racing the delete is refused).
    fn custom_resource_terminating(&self, resource: &Resource) -> bool {
        let key = ResourceKey::new("apiextensions.k8s.io", "customresourcedefinitions");
        let name = format!("{}.{}", resource.plural, resource.group);
        self.store.get_stored(&key, &ObjectKey::new("", &name)).is_some_and(|crd| crd.deleting())
    }

    /// Removes a CRD from the store. Its kind stops being served first, so nobody sees the CRD
    /// gone and its kind still served; whatever instance is left (its cleanup finalizer was
    /// removed by hand, or a create raced the cleanup) is removed too (watchers see it
    /// DELETED), so a CRD made again under that name starts empty.
    fn remove_custom_resource_definition(
        &self,
        crd: &Value,
        precondition: Precondition,
    ) -> Result<Arc<Value>, StoreError> {
        let name = meta_str(crd, "name").unwrap_or_default();
        self.refresh_registry_without(Some(name));
        let group = crd.pointer("/spec/group").and_then(Value::as_str).unwrap_or_default();
        let plural = crd.pointer("/spec/names/plural").and_then(Value::as_str).unwrap_or_default();
        if !group.is_empty() && !plural.is_empty() {
            let storage = ResourceKey::new(group, plural);
            let (_, objects) = self.store.list(&storage, None, None);
            for object in objects {
                match self.store.delete(&storage, object.key(), Precondition::Exists) {
                    Ok(_) | Err(StoreError::NotFound) => {}
                    Err(error) => {
                        tracing::error!(%error, resource = plural, "failed to remove an instance of a deleted CRD");
                    }
                }
            }
        }
        let storage = ResourceKey::new("apiextensions.k8s.io", "customresourcedefinitions");
        let removed = self.store.delete(&storage, &ObjectKey::new("", name), precondition);
        // Gone: the registry is right already, but a CRD written meanwhile must be served.
        // Not gone (it changed underneath): it is served again.
        self.refresh_registry();
        removed
    }

    /// Refuses writes into a namespace that does not exist or is being deleted.
    fn check_namespace_open(&self, namespace: &str) -> Result<(), ApiError> {
        let key = ResourceKey::new("", "namespaces");
        match self.store.get_stored(&key, &ObjectKey::new("", namespace)) {
            None => Err(ApiError::not_found("", "namespaces", namespace)),
            Some(ns) if ns.deleting() => Err(ApiError::forbidden(
                "",
                "namespaces",
                namespace,
                format!("unable to create new content in namespace {namespace} because it is being terminated"),
            )),
            Some(_) => Ok(()),
        }
    }
}

/// Applies a JSON patch operation by operation. As the API server's implementation does, a
/// `test` that a missing path is `null` succeeds (kube-rs's finalizer helper relies on it).
fn apply_json_patch(target: &mut Value, operations: json_patch::Patch) -> Result<(), json_patch::PatchError> {
    for operation in operations.0 {
        if let json_patch::PatchOperation::Test(test) = &operation
            && test.value.is_null()
            && target.pointer(test.path.as_str()).is_none_or(Value::is_null)
        {
            continue;
        }
        json_patch::patch(target, &[operation])?;
    }
    Ok(())
}

fn patch_sets_version(patch: &Patch) -> bool {
    match patch {
        Patch::Merge(d) | Patch::Strategic(d) => d.pointer("/metadata/resourceVersion").is_some(),
        Patch::Json(d) => d.as_array().is_some_and(|ops| {
            ops.iter()
                .any(|op| op["path"].as_str().is_some_and(|p| p == "/metadata/resourceVersion") && op["op"] != "test")
        }),
        Patch::Apply { config, .. } => config.pointer("/metadata/resourceVersion").is_some(),
    }
}

/// Sets a condition in `status.conditions`, keeping its `lastTransitionTime` when its status
/// does not change.
pub fn set_condition(object: &mut Value, kind: &str, status: &str, reason: &str, message: &str) {
    let mut conditions: Vec<Value> =
        object.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    let since = conditions
        .iter()
        .find(|c| c["type"] == kind && c["status"] == status)
        .and_then(|c| c.get("lastTransitionTime").cloned())
        .unwrap_or_else(|| Value::String(meta::now()));
    let condition =
        json!({"type": kind, "status": status, "reason": reason, "message": message, "lastTransitionTime": since});
    match conditions.iter_mut().find(|c| c["type"] == kind) {
        Some(slot) => *slot = condition,
        None => conditions.push(condition),
    }
    if !object.get("status").is_some_and(Value::is_object) {
        object["status"] = json!({});
    }
    object["status"]["conditions"] = Value::Array(conditions);
}
