//! `apiVersion`, `kind` and `metadata` of embedded resources
//! (`x-kubernetes-embedded-resource`): coerced while decoding (unknown metadata fields dropped,
//! wrong types rejected), then validated (`apiextensions-apiserver/.../schema/objectmeta`).
//!
//! The root object's own type and object meta are the API server's business, not this crate's.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

use crate::errors::FieldError;
use crate::node::Node;
use crate::path::{child, index, key};

/// The fields of `ObjectMeta` and the Go type each decodes into.
const OBJECT_META: [(&str, GoType); 15] = [
    ("name", GoType::String),
    ("generateName", GoType::String),
    ("namespace", GoType::String),
    ("selfLink", GoType::String),
    ("uid", GoType::String),
    ("resourceVersion", GoType::String),
    ("generation", GoType::Int64),
    ("creationTimestamp", GoType::Time),
    ("deletionTimestamp", GoType::Time),
    ("deletionGracePeriodSeconds", GoType::Int64),
    ("labels", GoType::StringMap),
    ("annotations", GoType::StringMap),
    ("ownerReferences", GoType::Objects("[]v1.OwnerReference")),
    ("finalizers", GoType::Strings),
    ("managedFields", GoType::Objects("[]v1.ManagedFieldsEntry")),
];

#[derive(Clone, Copy)]
enum GoType {
    String,
    Int64,
    Time,
    StringMap,
    Strings,
    Objects(&'static str),
}

/// Coerces the embedded resources below `node` (not the root): `apiVersion` and `kind` must be
/// strings, `metadata` is round-tripped through `ObjectMeta` (unknown fields dropped and
/// returned as `spec.template.metadata.foo`, empty ones dropped, timestamps normalized). The
/// first error stops the coercion, as the API server's decoder fails on it.
pub(crate) fn coerce(value: &mut Value, node: &Node, path: &str, unknown: &mut Vec<String>) -> Result<(), FieldError> {
    match value {
        Value::Object(map) => {
            if node.embedded_resource {
                for name in ["apiVersion", "kind"] {
                    if let Some(v) = map.get(name)
                        && !v.is_string()
                    {
                        return Err(FieldError::invalid(child(path, name), v.clone(), "must be a string"));
                    }
                }
                if let Some(metadata) = map.get_mut("metadata") {
                    coerce_metadata(metadata, &child(path, "metadata"), unknown)?;
                }
            }
            for (k, v) in map.iter_mut() {
                if let Some(prop) = node.properties.get(k) {
                    coerce(v, prop, &child(path, k), unknown)?;
                } else if let Some(schema) = node.additional_schema() {
                    coerce(v, schema, &key(path, k), unknown)?;
                }
            }
        }
        Value::Array(items) => {
            if let Some(schema) = node.items.as_deref() {
                for (i, item) in items.iter_mut().enumerate() {
                    coerce(item, schema, &index(path, i), unknown)?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn unmarshal_error(value: &Value, field: &str, go_type: &str) -> String {
    format!("json: cannot unmarshal {} into Go struct field ObjectMeta.{field} of type {go_type}", json_type(value))
}

/// Round-trips `metadata` through `ObjectMeta` as `GetObjectMetaWithOptions` + `SetObjectMeta`
/// do.
fn coerce_metadata(metadata: &mut Value, path: &str, unknown: &mut Vec<String>) -> Result<(), FieldError> {
    let invalid = |detail: String, original: &Value| FieldError::invalid(path, original.clone(), detail);
    let original = metadata.clone();
    let map = match metadata {
        Value::Object(map) => map,
        Value::Null => return Ok(()),
        other => {
            return Err(invalid(
                format!("json: cannot unmarshal {} into Go value of type v1.ObjectMeta", json_type(other)),
                &original,
            ));
        }
    };
    let mut kept = Map::new();
    let mut names: Vec<String> = map.keys().cloned().collect();
    names.sort();
    for name in names {
        let Some(value) = map.remove(&name) else { continue };
        let Some((_, go_type)) = OBJECT_META.iter().find(|(field, _)| *field == name) else {
            unknown.push(format!("{path}.{name}"));
            continue;
        };
        if value.is_null() {
            continue;
        }
        let value = match go_type {
            GoType::String => match value {
                Value::String(s) if s.is_empty() => continue,
                v @ Value::String(_) => v,
                other => return Err(invalid(unmarshal_error(&other, &name, "string"), &original)),
            },
            GoType::Int64 => match value.as_i64() {
                Some(0) if name == "generation" => continue,
                Some(_) => value,
                None => return Err(invalid(unmarshal_error(&value, &name, "int64"), &original)),
            },
            GoType::Time => match value.as_str().map(DateTime::parse_from_rfc3339) {
                Some(Ok(t)) => Value::from(t.with_timezone(&Utc).to_rfc3339_opts(SecondsFormat::Secs, true)),
                _ => {
                    return Err(invalid(
                        format!("parsing time {} as \"2006-01-02T15:04:05Z07:00\": cannot parse", value),
                        &original,
                    ));
                }
            },
            GoType::StringMap => match &value {
                Value::Object(m) if m.is_empty() => continue,
                Value::Object(m) => {
                    if let Some(bad) = m.values().find(|v| !v.is_string()) {
                        return Err(invalid(unmarshal_error(bad, &name, "string"), &original));
                    }
                    value
                }
                other => return Err(invalid(unmarshal_error(other, &name, "map[string]string"), &original)),
            },
            GoType::Strings => match &value {
                Value::Array(items) if items.is_empty() => continue,
                Value::Array(items) => {
                    if let Some(bad) = items.iter().find(|v| !v.is_string()) {
                        return Err(invalid(unmarshal_error(bad, &name, "string"), &original));
                    }
                    value
                }
                other => return Err(invalid(unmarshal_error(other, &name, "[]string"), &original)),
            },
            GoType::Objects(go) => match &value {
                Value::Array(items) if items.is_empty() => continue,
                Value::Array(items) => {
                    if let Some(bad) = items.iter().find(|v| !v.is_object()) {
                        return Err(invalid(unmarshal_error(bad, &name, &go[2..]), &original));
                    }
                    value
                }
                other => return Err(invalid(unmarshal_error(other, &name, go), &original)),
            },
        };
        kept.insert(name, value);
    }
    *map = kept;
    Ok(())
}

/// Validates the embedded resources below `node` (not the root), as `objectmeta.Validate` with
/// `isResourceRoot=false`: `apiVersion` and `kind` required and well-formed, `metadata` names.
pub(crate) fn validate(value: &Value, node: &Node, path: &str, errors: &mut Vec<FieldError>) {
    match value {
        Value::Object(map) => {
            if node.embedded_resource {
                validate_embedded(map, path, errors);
            }
            for (k, v) in map {
                if let Some(prop) = node.properties.get(k) {
                    validate(v, prop, &child(path, k), errors);
                } else if let Some(schema) = node.additional_schema() {
                    validate(v, schema, &key(path, k), errors);
                }
            }
        }
        Value::Array(items) => {
            if let Some(schema) = node.items.as_deref() {
                for (i, item) in items.iter().enumerate() {
                    validate(item, schema, &index(path, i), errors);
                }
            }
        }
        _ => {}
    }
}

fn validate_embedded(map: &Map<String, Value>, path: &str, errors: &mut Vec<FieldError>) {
    if !map.contains_key("apiVersion") {
        errors.push(FieldError::required(child(path, "apiVersion"), ""));
    }
    if !map.contains_key("kind") {
        errors.push(FieldError::required(child(path, "kind"), ""));
    }
    for (k, v) in map {
        match k.as_str() {
            "apiVersion" => {
                let field = child(path, "apiVersion");
                match v.as_str() {
                    None => errors.push(FieldError::invalid(field, v.clone(), "must be a string")),
                    Some("") => errors.push(FieldError::invalid(field, v.clone(), "must not be empty")),
                    Some(gv) if gv != "/" && gv.matches('/').count() > 1 => {
                        errors.push(FieldError::invalid(
                            field,
                            v.clone(),
                            format!("unexpected GroupVersion string: {gv}"),
                        ));
                    }
                    Some(_) => {}
                }
            }
            "kind" => {
                let field = child(path, "kind");
                match v.as_str() {
                    None => errors.push(FieldError::invalid(field, v.clone(), "must be a string")),
                    Some("") => errors.push(FieldError::invalid(field, v.clone(), "must not be empty")),
                    Some(kind) => {
                        let problems = dns1035_label(&kind.to_lowercase());
                        if !problems.is_empty() {
                            errors.push(FieldError::invalid(
                                field,
                                v.clone(),
                                format!("may have mixed case, but should otherwise match: {}", problems.join(",")),
                            ));
                        }
                    }
                }
            }
            "metadata" => validate_metadata(v, &child(path, "metadata"), errors),
            _ => {}
        }
    }
}

/// The name checks of `ValidateObjectMeta` with path-segment names, for embedded metadata.
fn validate_metadata(metadata: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let Some(meta) = metadata.as_object() else { return };
    let text = |name: &str| meta.get(name).and_then(Value::as_str).unwrap_or_default();
    let generate_name = text("generateName");
    if !generate_name.is_empty() {
        for problem in path_segment(generate_name, true) {
            errors.push(FieldError::invalid(child(path, "generateName"), Value::from(generate_name), problem));
        }
    }
    // An embedded object without a name is validated as "fakename".
    let name = text("name");
    if !name.is_empty() {
        for problem in path_segment(name, false) {
            errors.push(FieldError::invalid(child(path, "name"), Value::from(name), problem));
        }
    }
    let namespace = text("namespace");
    if !namespace.is_empty() {
        for problem in dns1123_label(namespace) {
            errors.push(FieldError::invalid(child(path, "namespace"), Value::from(namespace), problem));
        }
    }
    if let Some(generation) = meta.get("generation").and_then(Value::as_i64)
        && generation < 0
    {
        errors.push(FieldError::invalid(
            child(path, "generation"),
            Value::from(generation),
            "must be greater than or equal to 0",
        ));
    }
}

fn path_segment(name: &str, prefix: bool) -> Vec<String> {
    if !prefix && (name == "." || name == "..") {
        return vec![format!("may not be '{name}'")];
    }
    ["/", "%"].iter().filter(|c| name.contains(**c)).map(|c| format!("may not contain '{c}'")).collect()
}

fn is_label(value: &str, first: impl Fn(u8) -> bool) -> bool {
    let b = value.as_bytes();
    let inner = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-';
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => first(*f) && (l.is_ascii_lowercase() || l.is_ascii_digit()) && b.iter().all(inner),
        _ => false,
    }
}

fn dns1035_label(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if value.len() > 63 {
        problems.push("must be no more than 63 characters".to_owned());
    }
    if !is_label(value, |c| c.is_ascii_lowercase()) {
        problems.push("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')".to_owned());
    }
    problems
}

fn dns1123_label(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if value.len() > 63 {
        problems.push("must be no more than 63 characters".to_owned());
    }
    if !is_label(value, |c| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        problems.push("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')".to_owned());
    }
    problems
}
