//! The HTTP face of the API: authentication, routing, discovery, lists and watches, and the
//! translation of requests into [`crate::ops`] calls.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request as HttpRequest, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::admission::FieldValidation;
use crate::errors::{ApiError, success_status};
use crate::ops::{self, DeleteOptions, Deleted, Patch, Request, Written};
use crate::path::{self, Route, Target};
use crate::registry::{Builtin, Resource};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::state::Api;
use crate::store::{ChangeKind, ObjectKey, StoreError};

/// The Kubernetes version this server reports (the API level of the kinds it serves).
pub const KUBERNETES_VERSION: (&str, &str) = ("1", "34");

/// What every handler needs.
#[derive(Clone)]
pub struct Server {
    /// State.
    pub api: Arc<Api>,
    /// The bearer token clients must present.
    pub token: Arc<str>,
    /// Cancelled when the server shuts down (ends watches).
    pub shutdown: CancellationToken,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").finish_non_exhaustive()
    }
}

type Query = HashMap<String, String>;

fn query_of(uri: &axum::http::Uri) -> Query {
    uri.query().map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

fn json_response(code: StatusCode, value: &Value, warnings: &[String]) -> Response {
    let mut response = (code, [("content-type", "application/json")], value.to_string()).into_response();
    for warning in warnings {
        let text = format!("299 - {:?}", warning);
        if let Ok(header) = HeaderValue::from_str(&text) {
            response.headers_mut().append("warning", header);
        }
    }
    response
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Every request enters here.
pub async fn handle(State(server): State<Server>, request: HttpRequest) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    if matches!(path.as_str(), "/healthz" | "/livez" | "/readyz") {
        return (StatusCode::OK, "ok").into_response();
    }
    let authorized = parts
        .headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .is_some_and(|token| same(token.trim().as_bytes(), server.token.as_bytes()));
    if !authorized {
        return ApiError::unauthorized().into_response();
    }
    let limit = server.api.limits.max_body_bytes;
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(_) => return ApiError::too_large(limit).into_response(),
    };
    let query = query_of(&parts.uri);
    match route(&server, &parts.method, &path, &parts.headers, &query, body).await {
        Ok(response) => response,
        Err(error) => {
            if error.code >= 500 {
                tracing::error!(code = error.code, %path, message = %error.message, "request failed");
            }
            error.into_response()
        }
    }
}

async fn route(
    server: &Server,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    query: &Query,
    body: Bytes,
) -> Result<Response, ApiError> {
    if path == "/version" {
        return Ok(json_response(StatusCode::OK, &version(), &[]));
    }
    let registry = server.api.registry();
    if path == "/openapi/v2" {
        let protobuf = headers.get("accept").and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("protobuf"));
        let (body, content_type) = crate::openapi::v2(protobuf);
        return Ok((StatusCode::OK, [("content-type", content_type)], body).into_response());
    }
    if path == "/openapi/v3" || path.starts_with("/openapi/v3/") {
        let openapi = server.api.openapi();
        return match path.strip_prefix("/openapi/v3/") {
            None => Ok(json_response(StatusCode::OK, &openapi.index, &[])),
            Some(group_version) => openapi
                .documents
                .get(group_version)
                .map(|d| json_response(StatusCode::OK, d, &[]))
                .ok_or_else(|| ApiError::no_route(path)),
        };
    }
    let parsed = path::parse(path, |group, version, resource| {
        registry.find(group, version, resource).is_some_and(|r| r.namespaced)
    });
    match parsed {
        Some(Route::CoreVersions) => Ok(json_response(
            StatusCode::OK,
            &json!({
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
            }),
            &[],
        )),
        Some(Route::Groups) => Ok(json_response(StatusCode::OK, &crate::discovery::groups(&registry), &[])),
        Some(Route::Group(group)) => crate::discovery::group(&registry, &group)
            .map(|g| json_response(StatusCode::OK, &g, &[]))
            .ok_or_else(|| ApiError::no_route(path)),
        Some(Route::Resources { group, version }) => crate::discovery::resources(&registry, &group, &version)
            .map(|r| json_response(StatusCode::OK, &r, &[]))
            .ok_or_else(|| ApiError::no_route(path)),
        Some(Route::Resource(target)) => {
            let resource = registry
                .find(&target.group, &target.version, &target.resource)
                .ok_or_else(|| ApiError::no_route(path))?;
            resource_request(server, method, headers, query, body, resource, target).await
        }
        None => Err(ApiError::no_route(path)),
    }
}

fn version() -> Value {
    let (major, minor) = KUBERNETES_VERSION;
    json!({
        "major": major,
        "minor": minor,
        "gitVersion": format!("v{major}.{minor}.0-machinist.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if std::env::consts::ARCH == "x86_64" { "amd64" } else { std::env::consts::ARCH }),
    })
}

/// Decodes a JSON or YAML body.
fn decode_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, ApiError> {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    if content_type.starts_with(crate::protobuf::MEDIA_TYPE) {
        return crate::protobuf::decode(body).map_err(|e| match e {
            crate::protobuf::ProtobufError::UnsupportedKind(_) => {
                ApiError::unsupported_media_type(&format!("{content_type}: {e}"))
            }
            other => ApiError::bad_request(format!("the request body is not valid protobuf: {other}")),
        });
    }
    let text = std::str::from_utf8(body).map_err(|_| ApiError::bad_request("the request body is not UTF-8"))?;
    if text.trim().is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    if content_type.contains("yaml") {
        serde_saphyr::from_str::<Value>(text)
            .map_err(|e| ApiError::bad_request(format!("the request body is not valid YAML: {e}")))
    } else if content_type.contains("json") || content_type.starts_with("*/*") {
        serde_json::from_str::<Value>(text)
            .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
    } else {
        Err(ApiError::unsupported_media_type(content_type))
    }
}

fn field_manager(headers: &HeaderMap, query: &Query) -> String {
    if let Some(manager) = query.get("fieldManager").filter(|m| !m.is_empty()) {
        return manager.clone();
    }
    // As the API server does: the user agent's program name.
    crate::fields::manager_from_user_agent(headers.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or_default())
}

fn dry_run(query: &Query) -> Result<bool, ApiError> {
    match query.get("dryRun").map(String::as_str) {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!("dryRun must be All, got {other:?}"))),
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| ApiError::internal(format!("worker failed: {e}")))?
}

fn written(result: Written) -> Response {
    let code = if result.created { StatusCode::CREATED } else { StatusCode::OK };
    json_response(code, &result.object, &result.warnings)
}

async fn resource_request(
    server: &Server,
    method: &Method,
    headers: &HeaderMap,
    query: &Query,
    body: Bytes,
    resource: Arc<Resource>,
    target: Target,
) -> Result<Response, ApiError> {
    if resource.namespaced && target.namespace.is_none() && target.name.is_some() {
        return Err(ApiError::no_route(&format!("{} must be addressed within a namespace", resource.plural)));
    }
    let request = Request {
        resource: Arc::clone(&resource),
        version: target.version.clone(),
        namespace: target.namespace.clone(),
        name: target.name.clone(),
        subresource: target.subresource.clone(),
        dry_run: dry_run(query)?,
        field_manager: field_manager(headers, query),
        field_validation: FieldValidation::parse(query.get("fieldValidation").map(String::as_str))?,
    };
    if let Some(sub) = &request.subresource {
        let allowed = match sub.as_str() {
            "status" => resource.status,
            "scale" => resource.scale.is_some(),
            "finalize" => resource.builtin == Some(Builtin::Namespace),
            _ => false,
        };
        if !allowed {
            return Err(ApiError::no_route(&format!("{}/{sub}", resource.plural)));
        }
        if sub == "scale" {
            return crate::scale::handle(server, method, headers, query, body, request).await;
        }
    }
    let api = Arc::clone(&server.api);
    match (method.as_str(), request.name.is_some()) {
        ("GET", false) if truthy(query.get("watch")) => {
            let table = crate::table::wanted(headers)
                .then(|| crate::table::Include::parse(query.get("includeObject").map(String::as_str)));
            crate::watch::watch(server, &request, query, table).await
        }
        ("GET", false) => {
            let list = list(&api, &request, query)?;
            if crate::table::wanted(headers) {
                let include = crate::table::Include::parse(query.get("includeObject").map(String::as_str));
                let items = list["items"].as_array().cloned().unwrap_or_default();
                let table =
                    crate::table::render(&resource, &request.version, &items, include, list["metadata"].clone());
                return Ok(json_response(StatusCode::OK, &table, &[]));
            }
            Ok(json_response(StatusCode::OK, &list, &[]))
        }
        ("GET", true) => {
            let object = api.get(&request)?;
            if crate::table::wanted(headers) {
                let include = crate::table::Include::parse(query.get("includeObject").map(String::as_str));
                let metadata = json!({"resourceVersion": object["metadata"]["resourceVersion"]});
                let table =
                    crate::table::render(&resource, &request.version, std::slice::from_ref(&object), include, metadata);
                return Ok(json_response(StatusCode::OK, &table, &[]));
            }
            Ok(json_response(StatusCode::OK, &object, &[]))
        }
        ("POST", false) => {
            let object = decode_body(headers, &body)?;
            blocking(move || api.create(&request, object)).await.map(written)
        }
        ("PUT", true) => {
            let object = decode_body(headers, &body)?;
            blocking(move || api.update(&request, object)).await.map(written)
        }
        ("PATCH", true) => {
            let patch = decode_patch(headers, query, &body, &request)?;
            blocking(move || api.patch(&request, patch)).await.map(written)
        }
        ("DELETE", true) => {
            let options = delete_options(headers, query, &body)?;
            let resource = Arc::clone(&request.resource);
            match blocking(move || api.delete(&request, &options)).await? {
                Deleted::Pending(object) => Ok(json_response(StatusCode::OK, &object, &[])),
                Deleted::Gone(object) => {
                    let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
                    let uid = object.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default();
                    if resource.builtin.is_some() {
                        Ok(json_response(
                            StatusCode::OK,
                            &success_status(&resource.group, &resource.plural, name, uid),
                            &[],
                        ))
                    } else {
                        Ok(json_response(StatusCode::OK, &object, &[]))
                    }
                }
            }
        }
        ("DELETE", false) => {
            let options = delete_options(headers, query, &body)?;
            let (labels, fields) = selectors(&resource, query)?;
            let (_, items) = api.store.list(&resource.storage, request.namespace.as_deref(), None);
            let mut deleted = Vec::new();
            for item in items.iter().filter(|o| labels.matches(o) && fields.matches(o)) {
                let name = item.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_owned();
                let one = Request {
                    name: Some(name),
                    namespace: item.pointer("/metadata/namespace").and_then(Value::as_str).map(str::to_owned),
                    ..request.clone()
                };
                let api = Arc::clone(&api);
                let options = options.clone();
                match blocking(move || api.delete(&one, &options)).await {
                    Ok(Deleted::Gone(o) | Deleted::Pending(o)) => deleted.push(o),
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(json_response(
                StatusCode::OK,
                &json!({
                    "apiVersion": resource.api_version(&request.version),
                    "kind": resource.list_kind,
                    "metadata": {"resourceVersion": api.store.revision().to_string()},
                    "items": deleted,
                }),
                &[],
            ))
        }
        (verb, _) => Err(ApiError::method_not_allowed(format!("{verb} {}", resource.plural))),
    }
}

/// A boolean query parameter, read as Go's `strconv.ParseBool` reads it (clients send `true`,
/// `True`, `1`…).
pub fn truthy(value: Option<&String>) -> bool {
    matches!(value.map(String::as_str), Some("1" | "t" | "T" | "true" | "TRUE" | "True"))
}

fn decode_patch(headers: &HeaderMap, query: &Query, body: &Bytes, request: &Request) -> Result<Patch, ApiError> {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let media = content_type.split(';').next().unwrap_or_default().trim();
    match media {
        "application/merge-patch+json" => Ok(Patch::Merge(decode_body(headers, body)?)),
        "application/json-patch+json" => Ok(Patch::Json(decode_body(headers, body)?)),
        "application/strategic-merge-patch+json" if request.resource.builtin.is_some() => {
            Ok(Patch::Strategic(decode_body(headers, body)?))
        }
        "application/apply-patch+yaml" => {
            if query.get("fieldManager").is_none_or(|m| m.is_empty()) {
                return Err(ApiError::bad_request(
                    "PATCH, application/apply-patch+yaml: fieldManager is required for apply requests",
                ));
            }
            let force = truthy(query.get("force"));
            let mut yaml_headers = HeaderMap::new();
            yaml_headers.insert("content-type", HeaderValue::from_static("application/yaml"));
            Ok(Patch::Apply { config: decode_body(&yaml_headers, body)?, force })
        }
        _ => Err(ApiError::unsupported_patch(request.resource.builtin.is_some())),
    }
}

fn delete_options(headers: &HeaderMap, query: &Query, body: &Bytes) -> Result<DeleteOptions, ApiError> {
    let mut options =
        DeleteOptions { propagation: query.get("propagationPolicy").cloned(), ..DeleteOptions::default() };
    if !body.iter().all(u8::is_ascii_whitespace) {
        let document = decode_body(headers, body)?;
        if let Some(policy) = document.get("propagationPolicy").and_then(Value::as_str) {
            options.propagation = Some(policy.to_owned());
        }
        if document.get("orphanDependents").and_then(Value::as_bool) == Some(true) && options.propagation.is_none() {
            options.propagation = Some("Orphan".into());
        }
        options.uid = document.pointer("/preconditions/uid").and_then(Value::as_str).map(str::to_owned);
        options.resource_version =
            document.pointer("/preconditions/resourceVersion").and_then(Value::as_str).map(str::to_owned);
    }
    Ok(options)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Continue {
    #[serde(rename = "rv")]
    revision: u64,
    #[serde(rename = "ns")]
    namespace: String,
    name: String,
}

/// The `labelSelector` and `fieldSelector` parameters, parsed for a resource.
pub fn selectors(resource: &Resource, query: &Query) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let text = |name: &str| query.get(name).map(String::as_str).unwrap_or_default();
    let labels = LabelSelector::parse(text("labelSelector")).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let fields = FieldSelector::parse(text("fieldSelector"), |f| resource.field_selectable(f))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok((labels, fields))
}

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
    let (revision, items) = api.store.list(&resource.storage, namespace, after_key.as_ref());
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

/// A body that streams lines sent on a channel.
pub fn streaming_body(receiver: tokio::sync::mpsc::Receiver<Bytes>) -> Body {
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|bytes| (Ok::<_, Infallible>(bytes), receiver))
    });
    Body::from_stream(stream)
}

/// How long a watch without `timeoutSeconds` lasts: 30 to 60 minutes, spread so clients do not
/// all reconnect at once.
pub fn default_watch_timeout() -> Duration {
    let mut byte = [0u8; 1];
    let spread = if getrandom::fill(&mut byte).is_ok() { u64::from(byte[0]) * 1800 / 255 } else { 900 };
    Duration::from_secs(1800 + spread)
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

    #[test]
    fn tokens_compare_in_full() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
    }
}
