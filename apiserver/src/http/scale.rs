//! The `scale` subresource of custom resources that declare one: an `autoscaling/v1` Scale
//! read from and written to the paths the CRD names.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::http::decode::Query;
use crate::http::server::Server;
use crate::semantics::errors::{ApiError, Cause};
use crate::semantics::ops::Patch;
use crate::semantics::registry::ScalePaths;
use crate::semantics::request::Request;

fn pointer(path: &str) -> String {
    path.trim_start_matches('.').split('.').fold(String::new(), |acc, part| format!("{acc}/{part}"))
}

fn scale_of(object: &Value, paths: &ScalePaths) -> Value {
    let meta = &object["metadata"];
    let mut status = json!({"replicas": object.pointer(&pointer(&paths.status_replicas)).cloned().unwrap_or(json!(0))});
    if let Some(selector) = paths.label_selector.as_deref().and_then(|p| object.pointer(&pointer(p))) {
        status["selector"] = selector.clone();
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": object.pointer(&pointer(&paths.spec_replicas)).cloned().unwrap_or(json!(0))},
        "status": status,
    })
}

/// GET, PUT and PATCH (merge) on `/scale`.
pub async fn handle(
    server: &Server,
    method: &Method,
    _headers: &HeaderMap,
    _query: &Query,
    body: Bytes,
    request: Request,
) -> Result<Response, ApiError> {
    let paths = request.resource.scale.clone().ok_or_else(|| ApiError::no_route("scale"))?;
    let main = Request { subresource: None, ..request.clone() };
    let api = Arc::clone(&server.api);
    let current = api.get(&main)?;
    let replicas = match method.as_str() {
        "GET" => {
            return Ok((
                StatusCode::OK,
                [("content-type", "application/json")],
                scale_of(&current, &paths).to_string(),
            )
                .into_response());
        }
        "PUT" | "PATCH" => {
            let document: Value = serde_json::from_slice(&body)
                .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))?;
            document.pointer("/spec/replicas").and_then(Value::as_i64).ok_or_else(|| {
                ApiError::invalid(
                    "autoscaling",
                    "Scale",
                    request.name.as_deref().unwrap_or_default(),
                    vec![Cause {
                        reason: "FieldValueRequired".into(),
                        message: "Required value: spec.replicas must be an integer".into(),
                        field: "spec.replicas".into(),
                    }],
                )
            })?
        }
        other => return Err(ApiError::method_not_allowed(format!("{other} scale"))),
    };
    let mut patch = json!({});
    let parts: Vec<&str> = paths.spec_replicas.trim_start_matches('.').split('.').collect();
    let mut cursor = &mut patch;
    for part in &parts[..parts.len().saturating_sub(1)] {
        cursor = &mut cursor[*part];
    }
    if let Some(last) = parts.last() {
        cursor[*last] = json!(replicas);
    }
    let written = server.blocking(move || api.patch(&main, Patch::Merge(patch))).await?;
    Ok((StatusCode::OK, [("content-type", "application/json")], scale_of(&written.object, &paths).to_string())
        .into_response())
}
