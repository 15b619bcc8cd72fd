//! Lists: label and field selectors, and `limit`/`continue` paging over one revision: every page
//! of a paged list is served at the first page's revision (the store undoes later changes from
//! its watch history), or answered 410 Expired when the history no longer reaches back to it,
//! as Kubernetes does.

use base64::Engine;
use serde_json::{Value, json};

use crate::http::decode::{Query, selectors};
use crate::semantics::errors::ApiError;
use crate::semantics::ops;
use crate::semantics::request::Request;
use crate::semantics::state::Api;
use crate::store::ObjectKey;

/// Where the next page starts: the revision listed and the last object returned.
#[derive(serde::Serialize, serde::Deserialize)]
struct Continue {
    #[serde(rename = "rv")]
    revision: u64,
    #[serde(rename = "ns")]
    namespace: String,
    name: String,
}

/// Kubernetes' message for a continue token whose revision is no longer available.
const EXPIRED: &str = "The provided continue parameter is too old to display a consistent list result. You can start \
                       a new list without the continue parameter.";

/// A list, with label/field selectors and `limit`/`continue` paging.
pub fn list(api: &Api, request: &Request, query: &Query) -> Result<Value, ApiError> {
    let resource = &request.resource;
    let (labels, fields) = selectors(resource, query)?;
    let limit = match query.get("limit").map(|l| l.parse::<i64>()) {
        None => api.limits.max_list_items,
        Some(Ok(n)) if n > 0 => usize::try_from(n).unwrap_or(usize::MAX).min(api.limits.max_list_items),
        Some(Ok(_)) => api.limits.max_list_items,
        Some(Err(_)) => return Err(ApiError::bad_request("limit must be an integer")),
    };
    let after = match query.get("continue").filter(|c| !c.is_empty()) {
        None => None,
        Some(token) => {
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(token)
                .map_err(|_| ApiError::bad_request("continue token is not valid"))?;
            let token: Continue =
                serde_json::from_slice(&bytes).map_err(|_| ApiError::bad_request("continue token is not valid"))?;
            Some(token)
        }
    };
    let after_key = after.as_ref().map(|t| ObjectKey::new(&t.namespace, &t.name));
    let namespace = request.namespace.as_deref().or_else(|| fields.required("metadata.namespace"));
    let (revision, items) = match &after {
        None => api.store.list(&resource.storage, namespace, None),
        Some(token) => {
            let items = api
                .store
                .list_at(&resource.storage, namespace, after_key.as_ref(), token.revision)
                .map_err(|_| ApiError::gone(EXPIRED))?;
            (token.revision, items)
        }
    };
    let mut page = Vec::new();
    let mut next = None;
    // Field selectors read the client's view (events.k8s.io field names); skip building it when
    // there is nothing to select on.
    let mut matching = items.iter().filter(|o| {
        labels.matches(o) && (fields.is_empty() || fields.matches(&ops::present(resource, &request.version, o)))
    });
    for object in matching.by_ref() {
        if page.len() == limit {
            // The page ends before this object; continue after the last one returned.
            next = page.last().map(|last: &Value| Continue {
                revision,
                namespace: last.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default().to_owned(),
                name: last.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_owned(),
            });
            break;
        }
        page.push(ops::present(resource, &request.version, object));
    }
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if let Some(token) = next {
        // The object that ended the page, and whatever matches after it.
        let remaining = 1 + matching.count();
        let encoded =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).unwrap_or_default());
        metadata["continue"] = json!(encoded);
        metadata["remainingItemCount"] = json!(remaining);
    }
    Ok(json!({
        "apiVersion": resource.api_version(&request.version),
        "kind": resource.list_kind,
        "metadata": metadata,
        "items": page,
    }))
}
