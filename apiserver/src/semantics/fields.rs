//! managedFields and server-side apply for this server's resources, through
//! `machinist-apiserver-apply` with the type information (list and map semantics) of each
//! resource version.

use std::sync::Arc;

use machinist_apiserver_apply as ssa;
use serde_json::Value;

use crate::semantics::errors::{ApiError, Cause};
use crate::semantics::meta;
use crate::semantics::registry::Resource;
use crate::semantics::request::Request;

/// The types of a resource version, shared (built once per registry refresh, not per write).
fn types(resource: &Resource, version: &str) -> Arc<ssa::TypeInfo> {
    resource.types.get(version).cloned().unwrap_or_else(|| Arc::new(ssa::TypeInfo::deduced()))
}

/// Records who changed what in an update (create, PUT, merge/JSON/strategic patch).
pub fn track_update(
    resource: &Resource,
    version: &str,
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: Option<&str>,
) {
    let api_version = resource.api_version(version);
    let manager = ssa::Manager { name: manager, api_version: &api_version, subresource };
    *new = ssa::update_owned(old, std::mem::take(new), manager, &types(resource, version), &meta::now());
}

/// Merges an applied configuration into the live object.
pub fn apply(
    resource: &Resource,
    version: &str,
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    subresource: Option<&str>,
    force: bool,
) -> Result<Value, ssa::ApplyError> {
    let api_version = resource.api_version(version);
    let manager = ssa::Manager { name: manager, api_version: &api_version, subresource };
    ssa::apply(live, config, manager, force, &types(resource, version), &meta::now())
}

/// The field manager the API server derives from a user agent (`kubectl/v1.35 …` → `kubectl`).
pub fn manager_from_user_agent(user_agent: &str) -> String {
    ssa::manager_from_user_agent(user_agent)
}

/// The API error for a failed apply.
pub fn apply_error(request: &Request, name: &str, error: ssa::ApplyError) -> ApiError {
    match error {
        ssa::ApplyError::Conflicts(conflicts) => {
            let causes: Vec<Cause> = conflicts
                .0
                .iter()
                .map(|c| Cause {
                    reason: "FieldManagerConflict".into(),
                    message: c.cause()["message"].as_str().unwrap_or_default().to_owned(),
                    field: c.field(),
                })
                .collect();
            ApiError::conflict_with(
                &request.resource.group,
                &request.resource.plural,
                name,
                conflicts.message(),
                causes,
            )
        }
        ssa::ApplyError::BadRequest(message) => ApiError::bad_request(message),
        ssa::ApplyError::Internal(message) => ApiError::internal(message),
    }
}
