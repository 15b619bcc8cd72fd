//! The HTTP face of the API: authentication, routing, discovery, and the translation of
//! requests into [`crate::semantics::ops`] calls.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request as HttpRequest, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::http::decode::{
    Query, decode_body, decode_patch, delete_options, dry_run, field_manager, query_of, selectors, truthy,
};
use crate::http::list::list;
use crate::http::path::{self, Route, Target};
use crate::http::response::json_response;
use crate::http::server::Server;
use crate::http::{authz, discovery, openapi, review, scale, table, watch};
use crate::semantics::errors::{ApiError, success_status};
use crate::semantics::ops::{Deleted, Written};
use crate::semantics::rbac::User;
use crate::semantics::registry::{Builtin, KUBERNETES_VERSION, Resource};
use crate::semantics::request::{FieldValidation, Request};

/// Every request enters here.
pub async fn handle(State(server): State<Server>, request: HttpRequest) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    if matches!(path.as_str(), "/healthz" | "/livez" | "/readyz") {
        return (StatusCode::OK, "ok").into_response();
    }
    let Some(user) = authz::authenticate(&server, &parts.headers) else {
        return ApiError::unauthorized().into_response();
    };
    let user = match authz::impersonate(&server, user, &parts.headers) {
        Ok(user) => user,
        Err(error) => return error.into_response(),
    };
    let limit = server.api.limits.max_body_bytes;
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(_) => return ApiError::too_large(limit).into_response(),
    };
    let query = query_of(&parts.uri);
    let started = std::time::Instant::now();
    let response = match route(&server, &user, &parts.method, &path, &parts.headers, &query, body).await {
        Ok(response) => response,
        Err(error) => {
            if error.code >= 500 {
                tracing::error!(code = error.code, %path, message = %error.message, "request failed");
            }
            error.into_response()
        }
    };
    // The request log (kube-apiserver's httplog): `RUST_LOG=machinist_apiserver::request=debug`.
    // A watch is logged when its stream starts, not when it ends.
    tracing::debug!(
        target: "machinist_apiserver::request",
        method = %parts.method,
        %path,
        query = parts.uri.query().unwrap_or(""),
        code = response.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        user = %user.name,
    );
    response
}

async fn route(
    server: &Server,
    user: &User,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    query: &Query,
    body: Bytes,
) -> Result<Response, ApiError> {
    let registry = server.api.registry();
    let parsed = path::parse(path, |group, version, resource| {
        registry.find(group, version, resource).is_some_and(|r| r.namespaced)
    });
    if !matches!(parsed, Some(Route::Resource(_))) {
        authz::authorize_path(server, user, method, path)?;
    }
    if path == "/version" {
        return Ok(json_response(StatusCode::OK, &version(), &[]));
    }
    if path == "/openapi/v2" {
        let protobuf = headers.get("accept").and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("protobuf"));
        let (body, content_type) = openapi::v2(protobuf);
        return Ok((StatusCode::OK, [("content-type", content_type)], body).into_response());
    }
    if path == "/openapi/v3" || path.starts_with("/openapi/v3/") {
        let (cache, current) = (Arc::clone(&server.openapi), Arc::clone(&registry));
        let openapi = server.blocking(move || Ok(cache.get(&current))).await?;
        return match path.strip_prefix("/openapi/v3/") {
            None => Ok(json_response(StatusCode::OK, &openapi.index, &[])),
            Some(group_version) => openapi
                .documents
                .get(group_version)
                .map(|d| json_response(StatusCode::OK, d, &[]))
                .ok_or_else(|| ApiError::no_route(path)),
        };
    }
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
        Some(Route::Groups) => Ok(json_response(StatusCode::OK, &discovery::groups(&registry), &[])),
        Some(Route::Group(group)) => discovery::group(&registry, &group)
            .map(|g| json_response(StatusCode::OK, &g, &[]))
            .ok_or_else(|| ApiError::no_route(path)),
        Some(Route::Resources { group, version }) => discovery::resources(&registry, &group, &version)
            .map(|r| json_response(StatusCode::OK, &r, &[]))
            .ok_or_else(|| ApiError::no_route(path)),
        Some(Route::Resource(target)) => {
            authz::authorize_resource(server, user, method, &target, query)?;
            let resource = registry
                .find(&target.group, &target.version, &target.resource)
                .ok_or_else(|| ApiError::no_route(path))?;
            resource_request(server, user, method, headers, query, body, resource, target).await
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

fn written(result: Written) -> Response {
    let code = if result.created { StatusCode::CREATED } else { StatusCode::OK };
    json_response(code, &result.object, &result.warnings)
}

#[allow(clippy::too_many_arguments)] // the parts of one HTTP request
async fn resource_request(
    server: &Server,
    user: &User,
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
    if resource.builtin == Some(Builtin::Review) {
        if method != Method::POST || target.name.is_some() {
            return Err(ApiError::method_not_allowed(format!("{method} {}", resource.plural)));
        }
        let review = decode_body(headers, &body)?;
        let answered = review::answer_review(server, user, &resource.kind, &review)?;
        return Ok(json_response(StatusCode::CREATED, &answered, &[]));
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
            return scale::handle(server, method, headers, query, body, request).await;
        }
    }
    let api = Arc::clone(&server.api);
    match (method.as_str(), request.name.is_some()) {
        ("GET", false) if truthy(query.get("watch")) => {
            let table =
                table::wanted(headers).then(|| table::Include::parse(query.get("includeObject").map(String::as_str)));
            watch::watch(server, user, &request, query, table).await
        }
        ("GET", false) => {
            let page = list(&api, &request, query)?;
            if table::wanted(headers) {
                let include = table::Include::parse(query.get("includeObject").map(String::as_str));
                let table =
                    table::render(&resource, &request.version, &page.values(), include, page.metadata().clone());
                return Ok(json_response(StatusCode::OK, &table, &[]));
            }
            Ok((StatusCode::OK, [("content-type", "application/json")], page.to_json()).into_response())
        }
        ("GET", true) => {
            let object = api.get(&request)?;
            if table::wanted(headers) {
                let include = table::Include::parse(query.get("includeObject").map(String::as_str));
                let metadata = json!({"resourceVersion": object["metadata"]["resourceVersion"]});
                let table =
                    table::render(&resource, &request.version, std::slice::from_ref(&object), include, metadata);
                return Ok(json_response(StatusCode::OK, &table, &[]));
            }
            Ok(json_response(StatusCode::OK, &object, &[]))
        }
        ("POST", false) => {
            let object = decode_body(headers, &body)?;
            if resource.builtin.is_some_and(Builtin::is_rbac) {
                authz::check_escalation(server, user, &target, Some(&object))?;
            }
            server.blocking(move || api.create(&request, object)).await.map(written)
        }
        ("PUT", true) => {
            let object = decode_body(headers, &body)?;
            if resource.builtin.is_some_and(Builtin::is_rbac) {
                authz::check_escalation(server, user, &target, Some(&object))?;
            }
            server.blocking(move || api.update(&request, object)).await.map(written)
        }
        ("PATCH", true) => {
            if resource.builtin.is_some_and(Builtin::is_rbac) {
                authz::check_escalation(server, user, &target, None)?;
            }
            let patch = decode_patch(headers, query, &body, &request)?;
            server.blocking(move || api.patch(&request, patch)).await.map(written)
        }
        ("DELETE", true) => {
            let options = delete_options(headers, query, &body)?;
            let resource = Arc::clone(&request.resource);
            match server.blocking(move || api.delete(&request, &options)).await? {
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
            for item in items.iter().map(|o| o.value()).filter(|o| labels.matches(o) && fields.matches(o)) {
                let name = item.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_owned();
                let one = Request {
                    name: Some(name),
                    namespace: item.pointer("/metadata/namespace").and_then(Value::as_str).map(str::to_owned),
                    ..request.clone()
                };
                let api = Arc::clone(&api);
                let options = options.clone();
                match server.blocking(move || api.delete(&one, &options)).await {
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
