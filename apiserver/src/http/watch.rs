//! Watches: initial events, resumption from a resourceVersion, selector transitions,
//! bookmarks, `410 Gone`, timeouts.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use crate::http::decode::{Query, selectors, truthy};
use crate::http::response::streaming_body;
use crate::http::server::Server;
use crate::http::table::{self, Include};
use crate::semantics::errors::ApiError;
use crate::semantics::ops::{present, selected, write_presented};
use crate::semantics::rbac::User;
use crate::semantics::request::Request;
use crate::semantics::selectors::{FieldSelector, LabelSelector};
use crate::store::{Change, ChangeKind, StoreError, Stored};

/// How often a watch that asked for bookmarks gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);

struct Filter {
    request: Request,
    labels: LabelSelector,
    fields: FieldSelector,
    /// Send each object as a one-row Table (`kubectl get -w`).
    table: Option<Include>,
}

impl Filter {
    /// Whether the watch selects `object`.
    fn selects(&self, object: &Stored) -> bool {
        self.request.namespace.as_deref().is_none_or(|ns| object.key().namespace == ns)
            && selected(&self.request.resource, &self.request.version, &self.labels, &self.fields, object)
    }

    /// The watch event line for `change`, if this watch selects it.
    fn event(&self, change: &Change) -> Option<Bytes> {
        if change.resource != self.request.resource.storage {
            return None;
        }
        let was = change.previous.as_deref().is_some_and(|p| self.selects(p));
        let is = self.selects(&change.object);
        let kind = event_type(change.kind, was, is)?;
        Some(self.event_line(kind, &change.object))
    }

    /// One event line, with the object as the client sees it: a Table row, else the stored text
    /// itself when that is the client's view (the usual case; a change's text is shared by
    /// every watcher).
    fn event_line(&self, kind: &str, object: &Stored) -> Bytes {
        if self.table.is_some() {
            return line(&self.event_of(kind, &object.value()));
        }
        let mut text = Vec::with_capacity(object.json().len() + 32);
        text.extend_from_slice(b"{\"type\":\"");
        text.extend_from_slice(kind.as_bytes());
        text.extend_from_slice(b"\",\"object\":");
        write_presented(&self.request.resource, &self.request.version, object, &mut text);
        text.extend_from_slice(b"}\n");
        Bytes::from(text)
    }

    fn event_of(&self, kind: &str, object: &Value) -> Value {
        let object = present(&self.request.resource, &self.request.version, object);
        let object = match self.table {
            Some(include) => {
                let metadata = json!({"resourceVersion": object["metadata"]["resourceVersion"]});
                table::render(
                    &self.request.resource,
                    &self.request.version,
                    std::slice::from_ref(&object),
                    include,
                    metadata,
                )
            }
            None => object,
        };
        json!({"type": kind, "object": object})
    }

    fn bookmark(&self, revision: u64, initial_end: bool) -> Value {
        let mut metadata = json!({"resourceVersion": revision.to_string()});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        json!({"type": "BOOKMARK", "object": {
            "apiVersion": self.request.resource.api_version(&self.request.version),
            "kind": self.request.resource.kind,
            "metadata": metadata,
        }})
    }
}

/// Turns a store error met while watching into the watch's ERROR event.
pub fn watch_error(error: &StoreError) -> Value {
    let status = match error {
        StoreError::Gone { requested, oldest } => {
            ApiError::gone(format!("too old resource version: {requested} ({oldest})"))
        }
        other => ApiError::internal(other.to_string()),
    };
    json!({"type": "ERROR", "object": status.to_status()})
}

/// The watch event type of a change as seen through selectors (an object leaving the selection
/// is DELETED for the watcher, one entering it ADDED).
pub fn event_type(kind: ChangeKind, was_selected: bool, is_selected: bool) -> Option<&'static str> {
    match (kind, was_selected, is_selected) {
        (ChangeKind::Added, _, true) => Some("ADDED"),
        (ChangeKind::Modified, true, true) => Some("MODIFIED"),
        (ChangeKind::Modified, false, true) => Some("ADDED"),
        (ChangeKind::Modified, true, false) => Some("DELETED"),
        (ChangeKind::Deleted, true, _) => Some("DELETED"),
        _ => None,
    }
}

/// How long a watch without `timeoutSeconds` lasts: 30 to 60 minutes, spread so clients do not
/// all reconnect at once.
pub fn default_watch_timeout() -> Duration {
    let mut byte = [0u8; 1];
    let spread = if getrandom::fill(&mut byte).is_ok() { u64::from(byte[0]) * 1800 / 255 } else { 900 };
    Duration::from_secs(1800 + spread)
}

fn line(value: &Value) -> Bytes {
    let mut text = value.to_string();
    text.push('\n');
    Bytes::from(text)
}

/// Serves `?watch=true`.
pub async fn watch(
    server: &Server,
    user: &User,
    request: &Request,
    query: &Query,
    table: Option<Include>,
) -> Result<Response, ApiError> {
    let resource = &request.resource;
    let (labels, fields) = selectors(resource, query)?;
    let requested: Option<u64> = match query.get("resourceVersion").map(String::as_str) {
        None | Some("") | Some("0") => None,
        Some(v) => Some(v.parse().map_err(|_| ApiError::bad_request(format!("resourceVersion {v:?} is not valid")))?),
    };
    let send_initial = truthy(query.get("sendInitialEvents"));
    let bookmarks = truthy(query.get("allowWatchBookmarks"));
    let timeout = match query.get("timeoutSeconds").map(|t| t.parse::<u64>()) {
        None => default_watch_timeout(),
        Some(Ok(seconds)) => Duration::from_secs(seconds),
        Some(Err(_)) => return Err(ApiError::bad_request("timeoutSeconds must be an integer")),
    };
    let filter = Arc::new(Filter { request: request.clone(), labels, fields, table });
    let store = Arc::clone(&server.api.store);
    // Held for the watch's life: at most `max_watches` at once.
    let per_user = server.api.limits.max_watches_per_user;
    let user_place = server.user_watch(&user.name, per_user).ok_or_else(|| {
        ApiError::too_many_requests(format!("too many watches open by {} ({per_user}); retry later", user.name))
    })?;
    let permit = Arc::clone(&server.watches).try_acquire_owned().map_err(|_| {
        ApiError::too_many_requests(format!("too many watches open ({}); retry later", server.api.limits.max_watches))
    })?;

    // Initial state: without a resourceVersion (or with sendInitialEvents), every selected
    // object is sent as ADDED first, then changes after the snapshot. The snapshot is the
    // store's shared objects; each event is made as it is sent, not all before.
    let (start, initial) = match requested {
        Some(revision) if !send_initial => (revision, Vec::new()),
        _ => store.list(&resource.storage, request.namespace.as_deref(), None),
    };
    let (sender, receiver) = mpsc::channel::<Bytes>(256);
    let body = streaming_body(receiver);
    let (backlog, mut changes) = match store.watch_from(start) {
        Ok(pair) => pair,
        Err(error @ StoreError::Gone { .. }) => {
            // As the API server: a 200 whose only event is the 410 error; clients relist.
            let _ = sender.send(line(&watch_error(&error))).await;
            drop(sender);
            return Ok((StatusCode::OK, [("content-type", "application/json")], body).into_response());
        }
        Err(other) => return Err(ApiError::internal(other.to_string())),
    };
    let shutdown = server.shutdown.clone();
    tokio::spawn(async move {
        let _permit = (permit, user_place);
        let send_line = |line: Bytes| {
            let sender = sender.clone();
            async move { sender.send(line).await.is_ok() }
        };
        let send = |value: Value| send_line(line(&value));
        for object in initial.iter().filter(|o| filter.selects(o)) {
            if !send_line(filter.event_line("ADDED", object)).await {
                return;
            }
        }
        if send_initial && bookmarks && !send(filter.bookmark(start, true)).await {
            return;
        }
        let mut last = start;
        for change in backlog {
            last = change.revision;
            if let Some(event) = filter.event(&change)
                && !send_line(event).await
            {
                return;
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
        ticker.tick().await;
        loop {
            tokio::select! {
                () = &mut deadline => return,
                () = shutdown.cancelled() => return,
                () = sender.closed() => return,
                _ = ticker.tick(), if bookmarks => {
                    if !send(filter.bookmark(last, false)).await { return; }
                }
                received = changes.recv() => match received {
                    Ok(change) => {
                        if change.revision <= last { continue; }
                        last = change.revision;
                        if let Some(event) = filter.event(&change) && !send_line(event).await {
                            return;
                        }
                    }
                    Err(RecvError::Lagged(_)) => {
                        // Too slow to keep up: the client must relist.
                        let gone = StoreError::Gone { requested: last, oldest: last + 1 };
                        let _ = send(watch_error(&gone)).await;
                        return;
                    }
                    Err(RecvError::Closed) => return,
                },
            }
        }
    });
    Ok((StatusCode::OK, [("content-type", "application/json")], body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_changes_become_added_or_deleted() {
        assert_eq!(event_type(ChangeKind::Modified, false, true), Some("ADDED"));
        assert_eq!(event_type(ChangeKind::Modified, true, false), Some("DELETED"));
        assert_eq!(event_type(ChangeKind::Modified, false, false), None);
        assert_eq!(event_type(ChangeKind::Deleted, false, false), None);
        assert_eq!(event_type(ChangeKind::Added, false, true), Some("ADDED"));
    }
}
