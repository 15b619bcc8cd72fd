//! Lists: label and field selectors, and `limit`/`continue` paging over one revision: every page
//! of a paged list is served at the first page's revision (the store undoes later changes from
//! its watch history), or answered 410 Expired when the history no longer reaches back to it,
//! as Kubernetes does.

use std::sync::Arc;

use base64::Engine;
use serde_json::{Value, json};

use crate::http::decode::{Query, selectors};
use crate::semantics::errors::ApiError;
use crate::semantics::ops;
use crate::semantics::registry::Resource;
use crate::semantics::request::Request;
use crate::semantics::state::Api;
use crate::store::{ObjectKey, Stored};

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

/// One page of a list: the selected objects as stored, and the list's metadata.
#[derive(Debug)]
pub struct Page {
    resource: Arc<Resource>,
    version: String,
    items: Vec<Arc<Stored>>,
    metadata: Value,
}

impl Page {
    /// The list's `metadata` (resourceVersion, continue, remainingItemCount).
    pub fn metadata(&self) -> &Value {
        &self.metadata
    }

    /// The items as the client sees them, parsed (for Tables).
    pub fn values(&self) -> Vec<Value> {
        self.items.iter().map(|item| ops::present(&self.resource, &self.version, &item.value())).collect()
    }

    /// The list as JSON. Items the client sees as stored are copied as text, not parsed and
    /// serialised again (a page of 500 reported Machines is megabytes).
    pub fn to_json(&self) -> Vec<u8> {
        let resource = &self.resource;
        let api_version = resource.api_version(&self.version);
        let head = json!({"apiVersion": api_version, "kind": resource.list_kind, "metadata": self.metadata});
        let head = head.to_string();
        let size = self.items.iter().map(|i| i.json().len() + 1).sum::<usize>();
        let mut text = Vec::with_capacity(head.len() + size + 16);
        // `{…head…,"items":[…]}`: the head's closing brace becomes the items member.
        text.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
        text.extend_from_slice(b",\"items\":[");
        for (n, item) in self.items.iter().enumerate() {
            if n > 0 {
                text.push(b',');
            }
            ops::write_presented(resource, &self.version, item, &mut text);
        }
        text.extend_from_slice(b"]}");
        text
    }
}

/// A list, with label/field selectors and `limit`/`continue` paging.
pub fn list(api: &Api, request: &Request, query: &Query) -> Result<Page, ApiError> {
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
    let mut matching = items.into_iter().filter(|o| ops::selected(resource, &request.version, &labels, &fields, o));
    for object in matching.by_ref() {
        if page.len() == limit {
            // The page ends before this object; continue after the last one returned.
            next = page.last().map(|last: &Arc<Stored>| Continue {
                revision,
                namespace: last.key().namespace.clone(),
                name: last.key().name.clone(),
            });
            break;
        }
        page.push(object);
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
    Ok(Page { resource: Arc::clone(resource), version: request.version.clone(), items: page, metadata })
}
