//! Shared fixtures: a `Widget` custom resource with every list and map flavour.

#![allow(dead_code)] // each test binary uses a subset
#![allow(clippy::unwrap_used, clippy::panic)] // helpers fail the test that calls them

use machinist_apiserver_apply::{Manager, TypeInfo};
use serde_json::{Value, json};

pub const V: &str = "example.com/v1";
pub const T1: &str = "2024-05-01T10:00:01Z";
pub const T2: &str = "2024-05-01T10:00:02Z";
pub const T3: &str = "2024-05-01T10:00:03Z";
pub const T4: &str = "2024-05-01T10:00:04Z";
pub const T5: &str = "2024-05-01T10:00:05Z";

pub fn widget_types() -> TypeInfo {
    TypeInfo::from_schema(&json!({
        "type": "object",
        "properties": {
            "spec": {"type": "object", "properties": {
                "replicas": {"type": "integer"},
                "image": {"type": "string"},
                "args": {"type": "array", "items": {"type": "string"}},
                "ports": {"type": "array", "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["port", "protocol"],
                    "items": {"type": "object", "properties": {
                        "port": {"type": "integer"},
                        "protocol": {"type": "string", "default": "TCP"},
                        "name": {"type": "string"}}}},
                "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                "selector": {"type": "object", "x-kubernetes-map-type": "atomic",
                    "additionalProperties": {"type": "string"}},
                "settings": {"type": "object", "additionalProperties": {"type": "string"}}
            }},
            "status": {"type": "object", "properties": {
                "phase": {"type": "string"},
                "conditions": {"type": "array", "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["type"],
                    "items": {"type": "object", "properties": {
                        "type": {"type": "string"}, "status": {"type": "string"},
                        "reason": {"type": "string"}}}}
            }}
        }
    }))
    .unwrap()
    .with_status_subresource(true)
}

/// A Widget configuration with the given spec.
pub fn widget(spec: Value) -> Value {
    json!({
        "apiVersion": V,
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": "default"},
        "spec": spec
    })
}

pub fn mgr(name: &str) -> Manager<'_> {
    Manager::new(name, V)
}

/// `metadata.managedFields` of an object.
pub fn managed(obj: &Value) -> Vec<Value> {
    obj.pointer("/metadata/managedFields").and_then(Value::as_array).cloned().unwrap_or_default()
}

/// The entry of `manager` with `operation`.
pub fn entry(obj: &Value, manager: &str, operation: &str) -> Option<Value> {
    managed(obj).into_iter().find(|e| e["manager"] == manager && e["operation"] == operation)
}

/// The `fieldsV1` of that entry.
pub fn fields(obj: &Value, manager: &str, operation: &str) -> Value {
    entry(obj, manager, operation).map(|e| e["fieldsV1"].clone()).unwrap_or(Value::Null)
}

/// The object without `metadata.managedFields`.
pub fn content(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(Value::Object(m)) = o.get_mut("metadata") {
        m.remove("managedFields");
    }
    o
}

/// A stored object as the server would keep it after a create.
pub fn stored(mut obj: Value) -> Value {
    if let Some(Value::Object(m)) = obj.get_mut("metadata") {
        m.insert("uid".into(), json!("0b0e4a3c-1111-2222-3333-444455556666"));
        m.insert("resourceVersion".into(), json!("1"));
        m.insert("creationTimestamp".into(), json!(T1));
    }
    obj
}

/// A Widget configuration with only its identity (no `spec` at all).
pub fn ident() -> Value {
    json!({
        "apiVersion": V,
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": "default"}
    })
}
