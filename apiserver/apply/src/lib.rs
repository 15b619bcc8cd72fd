//! Server-side apply: field ownership (`managedFields`), merging and conflicts.
//!
//! A pure reimplementation, in Rust, of what the Kubernetes API server does with
//! sigs.k8s.io/structured-merge-diff (`fieldpath`, `typed`, `merge`) and
//! k8s.io/apimachinery/pkg/util/managedfields for every write:
//!
//! - [`apply`]: a `PATCH` with `Content-Type: application/apply-patch+yaml`. The partial
//!   object is merged into the live one according to the kind's types, fields the manager
//!   stopped applying are pruned, and fields other managers own with other values are
//!   conflicts ([`ApplyError::Conflicts`], HTTP 409, worded as the apiserver words them)
//!   unless `force` is set.
//! - [`update`] / [`try_update`]: any other write (create, `PUT`, merge, JSON and strategic
//!   merge patches). What the write changed becomes the manager's, in an `Update` entry.
//! - [`TypeInfo`]: which lists are atomic, sets or keyed maps and which maps are atomic,
//!   from a CRD's `openAPIV3Schema` ([`TypeInfo::from_schema`], [`TypeInfo::from_crd`]),
//!   for the built-in kinds ([`TypeInfo::builtin`]), or deduced ([`TypeInfo::deduced`]).
//! - [`FieldSet`], [`fieldsv1`]: the ownership sets and their `fieldsV1` encoding.
//!
//! Nothing here does I/O or reads a clock: times come in as `now` (RFC 3339, e.g.
//! `2024-05-01T10:00:00Z`). Recursion is bounded by [`MAX_DEPTH`] against hostile objects.
//!
//! # Reproduced
//!
//! - The `managedFields` entry identity (manager, operation, API version for `Update`,
//!   subresource), their sorting, `Update` entries of one manager merging, the `time` of an
//!   entry moving only when that manager changed something, the cap of
//!   [`MAX_UPDATE_MANAGERS`] update entries with the oldest merged into
//!   [`ANCIENT_CHANGES`] entries per API version.
//! - The fields never tracked (`apiVersion`, `kind`, and in `metadata`: the `metadata` node
//!   itself, `name`, `namespace`, `uid`, `resourceVersion`, `generation`,
//!   `creationTimestamp`, `selfLink`, `clusterName`, `managedFields`), removed as members
//!   only, as the apiserver's `stripMetaManager` (so `metadata.deletionTimestamp` would be
//!   tracked, as upstream, if a tracked write set it).
//! - `fieldsV1`: `f:`, `k:` (key fields sorted, compact JSON), `v:`, `i:` (read only),
//!   `".": {}`; apply sets own the leaves, list items and map keys that are not named struct
//!   fields; update sets also own the containers they create, so a created object has
//!   `f:spec: {".": {}, ...}` for custom resources and `f:data: {".": {}, ...}` for a
//!   ConfigMap but not for structs the built-in empty object already has.
//! - Merge order of keyed lists, duplicate items tolerated in stored objects and refused in
//!   applied configurations, schema defaults of key fields, prune in three passes (remove
//!   what the applier owned, add back what anyone owns, keep only removals of what the
//!   applier owned), conflict detection and forcing, shared ownership.
//! - The first apply to an object without `managedFields` attributes its fields to
//!   [`BEFORE_FIRST_APPLY`]; updates of an existing untracked object do not start tracking;
//!   `managedFields` sent on an update replace the stored ones (`[]` clears them), except on
//!   subresources.
//! - The `kubectl` manager's last-applied annotation handling (conflicts forgiven for fields
//!   the annotation shows kubectl set; annotation kept in sync).
//! - Schema changes that make a field atomic collapse the ownership of its sub-fields.
//!
//! # Not reproduced, or reproduced differently
//!
//! - **Status subresource scoping.** Upstream resets fields per strategy: for a custom
//!   resource's main resource `status` is excluded (as here), but for `/status` only `spec`
//!   is excluded, so metadata in a `/status` apply is tracked although the status strategy
//!   then discards it. Here `/status` writes track and change only `status` (an applied
//!   configuration's other fields are ignored), which matches what gets persisted. Other
//!   subresources (`scale`…) get no special treatment.
//! - **Version conversion.** One API version per kind: entries recorded at another version
//!   are kept and compared as if they were at the current one; the apply version check only
//!   compares the configuration's `apiVersion` with the request's.
//! - **Unions** (`x-kubernetes-unions`), `x-kubernetes-embedded-resource` metadata typing and
//!   schema validation are not done here (the server validates).
//! - **Emptied containers.** When pruning empties a granular map or list, it is removed;
//!   upstream leaves `null`, which the apiserver then drops for non-nullable fields.
//! - **Probabilistic tracking on create** (`DefaultTrackOnCreateProbability` is 1 upstream,
//!   i.e. always): always tracked.
//! - The **`ancient-changes` bucket** is never merged into itself when it is among the oldest
//!   entries (upstream would drop it in that corner case).
//! - **Built-in kinds** are typed from hand-written reduced schemas (struct fields, list
//!   types): `Namespace`, `ConfigMap`, `Secret`, `Event` (core and `events.k8s.io`), `Lease`,
//!   `CustomResourceDefinition`. For the latter, `spec.versions` is atomic as upstream
//!   (`+listType=atomic`), not keyed by name.
//! - Unknown fields of typed objects are deduced (granular maps, atomic lists) instead of
//!   being a validation error.
//! - Quoting in conflict messages follows Go's `%q` for printable text; exotic Unicode may be
//!   escaped differently.

mod apply;
mod builtin;
mod conflict;
pub mod fieldpath;
pub mod fieldsv1;
mod lastapplied;
mod managers;
mod merge;
mod scope;
mod time;
mod typed;
mod typeinfo;
mod update;

use serde_json::Value;

pub use apply::{ApplyError, BEFORE_FIRST_APPLY, apply};
pub use conflict::{Conflict, Conflicts};
pub use fieldpath::{FieldSet, Path, PathElement};
pub use fieldsv1::FieldsV1Error;
pub use lastapplied::LAST_APPLIED_ANNOTATION;
pub use managers::{ANCIENT_CHANGES, MAX_UPDATE_MANAGERS, ManagedFieldsError, Operation};
pub use typed::TypeError;
pub use typeinfo::{SchemaError, TypeInfo};
pub use update::{UpdateError, try_update, update, update_owned};

/// Objects, schemas and `fieldsV1` documents nested deeper than this are refused (well above
/// the 128 levels `serde_json` parses).
pub const MAX_DEPTH: usize = 200;

/// The longest field manager name the apiserver accepts.
pub const FIELD_MANAGER_MAX_LENGTH: usize = 128;

/// Who writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Manager<'a> {
    /// The `fieldManager` query parameter, else [`manager_from_user_agent`].
    pub name: &'a str,
    /// The API version of the request (`v1`, `machinist.dev/v1alpha1`); empty means the
    /// object's `apiVersion`.
    pub api_version: &'a str,
    /// The subresource written, e.g. `Some("status")`.
    pub subresource: Option<&'a str>,
}

impl<'a> Manager<'a> {
    /// A manager writing the main resource.
    pub fn new(name: &'a str, api_version: &'a str) -> Self {
        Manager { name, api_version, subresource: None }
    }

    /// The same manager writing a subresource.
    pub fn with_subresource(self, subresource: &'a str) -> Self {
        Manager { subresource: Some(subresource), ..self }
    }
}

/// The manager name the apiserver derives from a `User-Agent` when a non-apply write has no
/// `fieldManager`: the text before the first `/`, without unprintable characters, cut to
/// [`FIELD_MANAGER_MAX_LENGTH`] bytes (`kubectl/v1.30.0 (linux/amd64)` → `kubectl`).
pub fn manager_from_user_agent(user_agent: &str) -> String {
    let prefix = user_agent.split('/').next().unwrap_or("");
    let mut out = String::new();
    for c in prefix.chars() {
        let printable = c == ' ' || !(c.is_control() || c.is_whitespace());
        if !printable {
            continue;
        }
        if out.len() + c.len_utf8() > FIELD_MANAGER_MAX_LENGTH {
            break;
        }
        out.push(c);
    }
    out
}

/// The object a write of `new` over `live` persists, as the apiserver's strategies reset it
/// around a status subresource: on the main resource of a kind with a status subresource the
/// live `status` is kept; on `/status` only `status` is taken from `new`. Other writes return
/// `new` unchanged. ([`apply`] already returns objects restricted this way; [`update`] only
/// tracks ownership within these bounds and leaves the resetting to the caller.)
pub fn restrict_to_subresource(live: &Value, new: &Value, types: &TypeInfo, subresource: Option<&str>) -> Value {
    scope::Scope::of(types, subresource).restrict_update(live, new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agent_prefix() {
        assert_eq!(manager_from_user_agent("kubectl/v1.30.0 (linux/amd64) kubernetes/abc"), "kubectl");
        assert_eq!(manager_from_user_agent("my\tctl/1"), "myctl");
        assert_eq!(manager_from_user_agent(""), "");
        assert_eq!(manager_from_user_agent(&"é".repeat(100)).len(), 128);
    }
}
