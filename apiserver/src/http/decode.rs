//! What an HTTP request says, read into the terms of the semantics layer: query parameters,
//! bodies (JSON, YAML, protobuf), patch documents, delete options, selectors and the writer's
//! name.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue};
use serde_json::Value;

use crate::http::protobuf;
use crate::semantics::errors::ApiError;
use crate::semantics::fields;
use crate::semantics::ops::{DeleteOptions, Patch};
use crate::semantics::registry::Resource;
use crate::semantics::request::Request;
use crate::semantics::selectors::{FieldSelector, LabelSelector};

/// The query parameters of a request.
pub type Query = HashMap<String, String>;

/// The query parameters of `uri`.
pub fn query_of(uri: &axum::http::Uri) -> Query {
    uri.query().map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

/// Decodes a JSON, YAML or (built-in kinds) protobuf body.
pub fn decode_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, ApiError> {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    if content_type.starts_with(protobuf::MEDIA_TYPE) {
        return protobuf::decode(body).map_err(|e| match e {
            protobuf::ProtobufError::UnsupportedKind(_) => {
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
        // Clients send JSON, which is YAML, as apply patches (kube-rs always does): read it
        // with the JSON parser, several times faster than the YAML one, and fall back to YAML.
        if text.trim_start().starts_with('{')
            && let Ok(value) = serde_json::from_str::<Value>(text)
        {
            return Ok(value);
        }
        serde_saphyr::from_str::<Value>(text)
            .map_err(|e| ApiError::bad_request(format!("the request body is not valid YAML: {e}")))
    } else if content_type.contains("json") || content_type.starts_with("*/*") {
        serde_json::from_str::<Value>(text)
            .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
    } else {
        Err(ApiError::unsupported_media_type(content_type))
    }
}

/// The writer's name: `fieldManager`, else the program name of the user agent.
pub fn field_manager(headers: &HeaderMap, query: &Query) -> String {
    if let Some(manager) = query.get("fieldManager").filter(|m| !m.is_empty()) {
        return manager.clone();
    }
    // As the API server does: the user agent's program name.
    fields::manager_from_user_agent(headers.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or_default())
}

/// `dryRun=All`.
pub fn dry_run(query: &Query) -> Result<bool, ApiError> {
    match query.get("dryRun").map(String::as_str) {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!("dryRun must be All, got {other:?}"))),
    }
}

/// A boolean query parameter, read as Go's `strconv.ParseBool` reads it (clients send `true`,
/// `True`, `1`…).
pub fn truthy(value: Option<&String>) -> bool {
    matches!(value.map(String::as_str), Some("1" | "t" | "T" | "true" | "TRUE" | "True"))
}

/// The patch document of a PATCH, by its content type.
pub fn decode_patch(headers: &HeaderMap, query: &Query, body: &Bytes, request: &Request) -> Result<Patch, ApiError> {
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

/// The options of a DELETE, from the query and the body (`DeleteOptions`).
pub fn delete_options(headers: &HeaderMap, query: &Query, body: &Bytes) -> Result<DeleteOptions, ApiError> {
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

/// The `labelSelector` and `fieldSelector` parameters, parsed for a resource.
pub fn selectors(resource: &Resource, query: &Query) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let text = |name: &str| query.get(name).map(String::as_str).unwrap_or_default();
    let labels = LabelSelector::parse(text("labelSelector")).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let fields = FieldSelector::parse(text("fieldSelector"), |f| resource.field_selectable(f))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok((labels, fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(body: &str) -> Result<Value, ApiError> {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/apply-patch+yaml"));
        decode_body(&headers, &Bytes::copy_from_slice(body.as_bytes()))
    }

    #[test]
    fn yaml_bodies_are_read_whether_json_flow_or_block() {
        let expected = serde_json::json!({"a": 1, "b": ["x"]});
        assert_eq!(yaml(r#"{"a": 1, "b": ["x"]}"#).unwrap(), expected, "JSON, by the JSON parser");
        assert_eq!(yaml("{a: 1, b: [x]}").unwrap(), expected, "flow YAML that is not JSON falls back");
        assert_eq!(yaml("a: 1\nb:\n- x\n").unwrap(), expected);
        assert_eq!(yaml("{a: [").unwrap_err().code, 400);
    }
}
