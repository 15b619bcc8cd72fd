//! Type information: which maps are granular or atomic, which lists are atomic, sets or maps
//! keyed by some fields, and which map keys are named struct fields.
//!
//! Built from a CRD's `openAPIV3Schema` the way kube-openapi's `schemaconv` turns OpenAPI into
//! structured-merge-diff schemas:
//!
//! - `type: object` with `properties` is a struct (its properties are *named fields*);
//!   `additionalProperties: <schema>` types the other keys; `x-kubernetes-map-type: atomic`
//!   makes the whole map one leaf (default `granular`).
//! - `type: array` is atomic unless `x-kubernetes-list-type` is `set` or `map` (with
//!   `x-kubernetes-list-map-keys`); `x-kubernetes-patch-strategy: merge` with
//!   `x-kubernetes-patch-merge-key` is honoured as a keyed list when no list type is given.
//! - no `type` (e.g. `x-kubernetes-int-or-string`, `x-kubernetes-preserve-unknown-fields`
//!   without properties): scalar, or map/list shaped by the value.
//! - keys not described by the schema (unknown fields, preserved unknown fields) are
//!   *deduced*: scalars are leaves, maps are granular maps of deduced values, lists atomic.
//!
//! `metadata` is always typed as `ObjectMeta` (labels and annotations granular maps,
//! `finalizers` a set, `ownerReferences` a list keyed by `uid`), as the apiserver does for
//! custom resources.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::MAX_DEPTH;

/// Why a schema could not be turned into type information.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("schema{at}: {message}")]
pub struct SchemaError {
    at: String,
    message: String,
}

impl SchemaError {
    fn new(at: &str, message: impl Into<String>) -> Self {
        Self { at: if at.is_empty() { String::new() } else { format!(" at {at}") }, message: message.into() }
    }
}

/// How list items relate to each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ListKind {
    /// The list is one leaf, replaced whole.
    Atomic,
    /// Items are scalars identified by their value.
    Set,
    /// Items are maps identified by these key fields.
    Map(Vec<String>),
}

/// A map or struct type.
#[derive(Debug, Clone)]
pub(crate) struct MapTy {
    /// Named fields (struct properties), with their types and defaults.
    pub(crate) fields: BTreeMap<String, FieldTy>,
    /// The type of keys that are not named fields.
    pub(crate) rest: Ty,
    /// Whether the map is one leaf.
    pub(crate) atomic: bool,
}

/// A named field of a struct.
#[derive(Debug, Clone)]
pub(crate) struct FieldTy {
    pub(crate) ty: Ty,
    /// The schema default, used for list-map key fields left out of an item.
    pub(crate) default: Option<Value>,
}

/// A list type.
#[derive(Debug, Clone)]
pub(crate) struct ListTy {
    pub(crate) kind: ListKind,
    pub(crate) elem: Ty,
}

/// A type.
#[derive(Debug, Clone)]
pub(crate) enum Ty {
    /// A scalar.
    Scalar,
    /// Anything, owned whole (structured-merge-diff's `__untyped_atomic_`).
    Atomic,
    /// Shaped by the value: granular maps of deduced values, atomic lists
    /// (structured-merge-diff's `__untyped_deduced_`).
    Deduced,
    /// A map or struct.
    Map(Box<MapTy>),
    /// A list.
    List(Box<ListTy>),
    /// No `type` in the schema: a scalar, or this map or list depending on the value.
    Untyped(Box<MapTy>, Box<ListTy>),
}

/// The granular map of deduced values that [`Ty::Deduced`] stands for when given a map.
pub(crate) static DEDUCED_MAP: MapTy = MapTy { fields: BTreeMap::new(), rest: Ty::Deduced, atomic: false };

impl MapTy {
    /// The type of the value under `key`.
    pub(crate) fn field_ty(&self, key: &str) -> &Ty {
        self.fields.get(key).map_or(&self.rest, |f| &f.ty)
    }

    /// Whether `key` is a named field (struct property).
    pub(crate) fn is_named(&self, key: &str) -> bool {
        self.fields.contains_key(key)
    }
}

impl Ty {
    /// The map type this type takes for map values, if any.
    pub(crate) fn as_map(&self) -> Option<&MapTy> {
        match self {
            Ty::Map(m) | Ty::Untyped(m, _) => Some(m),
            Ty::Deduced => Some(&DEDUCED_MAP),
            _ => None,
        }
    }
}

/// Type information for one kind at one version.
#[derive(Debug, Clone)]
pub struct TypeInfo {
    /// Always a [`Ty::Map`].
    pub(crate) root: Ty,
    pub(crate) status_subresource: bool,
    /// The object the apiserver compares a created object against: for built-in kinds, the
    /// empty Go struct (whose nested structs are present as `{}`), which decides which
    /// containers a creator owns as a whole (`".": {}`).
    pub(crate) template: Map<String, Value>,
}

impl TypeInfo {
    /// Type information from an `openAPIV3Schema` (the object at
    /// `spec.versions[*].schema.openAPIV3Schema` of a CRD).
    ///
    /// The status subresource is off; see [`TypeInfo::with_status_subresource`] or use
    /// [`TypeInfo::from_crd`].
    pub fn from_schema(schema: &Value) -> Result<TypeInfo, SchemaError> {
        let root = match parse_schema(schema, "", 0)? {
            Ty::Map(m) | Ty::Untyped(m, _) => *m,
            Ty::Deduced | Ty::Atomic => DEDUCED_MAP.clone(),
            Ty::Scalar | Ty::List(_) => {
                return Err(SchemaError::new("", "the root of an object schema must be an object"));
            }
        };
        Ok(Self::with_root(root, false, Map::new()))
    }

    /// Type information for version `version` of a `CustomResourceDefinition` object: its
    /// schema, and whether it has a status subresource. A version without a schema gets
    /// [`TypeInfo::deduced`] types.
    pub fn from_crd(crd: &Value, version: &str) -> Result<TypeInfo, SchemaError> {
        let versions = crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .ok_or_else(|| SchemaError::new("", "the CRD has no spec.versions"))?;
        let v = versions
            .iter()
            .find(|v| v.get("name").and_then(Value::as_str) == Some(version))
            .ok_or_else(|| SchemaError::new("", format!("the CRD has no version {version:?}")))?;
        let status = v.pointer("/subresources/status").is_some_and(Value::is_object);
        let info = match v.pointer("/schema/openAPIV3Schema") {
            Some(schema) => Self::from_schema(schema)?,
            None => Self::deduced(),
        };
        Ok(info.with_status_subresource(status))
    }

    /// Type information for objects without a schema: every map granular, every list atomic,
    /// `metadata` typed as `ObjectMeta`.
    pub fn deduced() -> TypeInfo {
        Self::with_root(DEDUCED_MAP.clone(), false, Map::new())
    }

    /// Type information for the built-in kinds the server stores: `v1` `Namespace`,
    /// `ConfigMap`, `Secret`, `Event`; `events.k8s.io/v1` `Event`; `coordination.k8s.io/v1`
    /// `Lease`; `apiextensions.k8s.io/v1` `CustomResourceDefinition`. The core group may be
    /// given as `""` or `"core"`. `None` for other kinds.
    pub fn builtin(group: &str, version: &str, kind: &str) -> Option<TypeInfo> {
        let group = if group == "core" { "" } else { group };
        let (schema, template, status) = crate::builtin::schema(group, version, kind)?;
        let info = Self::from_schema(&schema).ok()?;
        let template = match template {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        let root = match info.root {
            Ty::Map(m) => *m,
            _ => DEDUCED_MAP.clone(),
        };
        Some(Self::with_root(root, status, template))
    }

    /// Declares whether the kind has a status subresource. When it has, writes to the main
    /// resource neither change nor track `status`, and writes to `/status` track only
    /// `status` (see the crate documentation).
    pub fn with_status_subresource(mut self, enabled: bool) -> TypeInfo {
        self.status_subresource = enabled;
        self
    }

    /// Whether the kind has a status subresource.
    pub fn has_status_subresource(&self) -> bool {
        self.status_subresource
    }

    fn with_root(mut root: MapTy, status: bool, template: Map<String, Value>) -> TypeInfo {
        if let Ok(meta) = parse_schema(&object_meta_schema(), "metadata", 1) {
            root.fields.insert("metadata".to_owned(), FieldTy { ty: meta, default: None });
        }
        for name in ["apiVersion", "kind"] {
            root.fields.insert(name.to_owned(), FieldTy { ty: Ty::Scalar, default: None });
        }
        TypeInfo { root: Ty::Map(Box::new(root)), status_subresource: status, template }
    }

    /// The empty object a created object is compared against, with the created object's
    /// `apiVersion` and `kind`.
    pub(crate) fn empty_object(&self, like: &Value) -> Value {
        let mut obj = self.template.clone();
        for key in ["apiVersion", "kind"] {
            if let Some(v) = like.get(key) {
                obj.insert(key.to_owned(), v.clone());
            }
        }
        Value::Object(obj)
    }
}

/// The `ObjectMeta` schema, reduced to what matters for merging.
fn object_meta_schema() -> Value {
    let string = json!({"type": "string"});
    let string_map = json!({"type": "object", "additionalProperties": {"type": "string"}});
    json!({
        "type": "object",
        "properties": {
            "name": string, "generateName": string, "namespace": string, "selfLink": string,
            "uid": string, "resourceVersion": string, "generation": {"type": "integer"},
            "creationTimestamp": string, "deletionTimestamp": string,
            "deletionGracePeriodSeconds": {"type": "integer"},
            "labels": string_map, "annotations": string_map,
            "ownerReferences": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["uid"],
                "items": {"type": "object", "properties": {
                    "apiVersion": string, "kind": string, "name": string, "uid": string,
                    "controller": {"type": "boolean"}, "blockOwnerDeletion": {"type": "boolean"}
                }}
            },
            "finalizers": {"type": "array", "x-kubernetes-list-type": "set", "items": string},
            "managedFields": {"type": "array", "x-kubernetes-list-type": "atomic",
                "items": {"type": "object", "x-kubernetes-map-type": "atomic"}}
        }
    })
}

fn parse_schema(s: &Value, at: &str, depth: usize) -> Result<Ty, SchemaError> {
    if depth > MAX_DEPTH {
        return Err(SchemaError::new(at, "schema nested too deeply"));
    }
    let Value::Object(obj) = s else {
        // `true` (any value) in JSON Schema; also tolerate junk as "anything".
        return Ok(Ty::Deduced);
    };
    let ty = match obj.get("type") {
        None | Some(Value::Null) => "",
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(ts)) => ts.first().and_then(Value::as_str).unwrap_or(""),
        Some(other) => {
            return Err(SchemaError::new(at, format!("unrecognized type: {other}")));
        }
    };
    Ok(match ty {
        "" => {
            if obj.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
                Ty::Scalar
            } else {
                Ty::Untyped(Box::new(parse_object(obj, at, depth)?), Box::new(parse_list(obj, at, depth)?))
            }
        }
        "object" => Ty::Map(Box::new(parse_object(obj, at, depth)?)),
        "array" => Ty::List(Box::new(parse_list(obj, at, depth)?)),
        "integer" | "boolean" | "number" | "string" => Ty::Scalar,
        other => return Err(SchemaError::new(at, format!("unrecognized type: {other:?}"))),
    })
}

fn parse_object(obj: &Map<String, Value>, at: &str, depth: usize) -> Result<MapTy, SchemaError> {
    let mut fields = BTreeMap::new();
    if let Some(props) = obj.get("properties") {
        let Value::Object(props) = props else {
            return Err(SchemaError::new(at, "properties must be an object"));
        };
        for (name, prop) in props {
            let here = format!("{at}.{name}");
            fields.insert(
                name.clone(),
                FieldTy { ty: parse_schema(prop, &here, depth + 1)?, default: prop.get("default").cloned() },
            );
        }
    }
    let rest = match obj.get("additionalProperties") {
        Some(schema @ Value::Object(_)) => parse_schema(schema, &format!("{at}.*"), depth + 1)?,
        // Absent, `true` or `false`: keys the schema does not describe (pruned for CRDs, or
        // preserved unknown fields) are deduced from their values.
        _ => Ty::Deduced,
    };
    let atomic = match obj.get("x-kubernetes-map-type") {
        None | Some(Value::Null) => false,
        Some(Value::String(t)) if t == "granular" => false,
        Some(Value::String(t)) if t == "atomic" => true,
        Some(other) => return Err(SchemaError::new(at, format!("unknown map type {other}"))),
    };
    Ok(MapTy { fields, rest, atomic })
}

fn parse_list(obj: &Map<String, Value>, at: &str, depth: usize) -> Result<ListTy, SchemaError> {
    let kind = match obj.get("x-kubernetes-list-type") {
        Some(Value::String(t)) if t == "atomic" => ListKind::Atomic,
        Some(Value::String(t)) if t == "set" => ListKind::Set,
        Some(Value::String(t)) if t == "map" => {
            let keys = obj.get("x-kubernetes-list-map-keys").ok_or_else(|| SchemaError::new(at, "missing map keys"))?;
            ListKind::Map(
                string_list(keys).ok_or_else(|| SchemaError::new(at, format!("uninterpreted map keys: {keys}")))?,
            )
        }
        Some(other @ Value::String(_)) => {
            return Err(SchemaError::new(at, format!("unknown list type {other}")));
        }
        Some(Value::Null) | None => match obj.get("x-kubernetes-patch-strategy") {
            Some(Value::String(s)) if s == "merge" || s == "merge,retainKeys" => {
                match obj.get("x-kubernetes-patch-merge-key") {
                    Some(Value::String(key)) => ListKind::Map(vec![key.clone()]),
                    Some(other) => {
                        return Err(SchemaError::new(at, format!("uninterpreted merge key: {other}")));
                    }
                    None => ListKind::Set,
                }
            }
            _ => ListKind::Atomic,
        },
        Some(other) => return Err(SchemaError::new(at, format!("unknown list type {other}"))),
    };
    if let ListKind::Map(keys) = &kind
        && keys.is_empty()
    {
        return Err(SchemaError::new(at, "x-kubernetes-list-map-keys must not be empty"));
    }
    let elem = match obj.get("items") {
        Some(items @ Value::Object(_)) => parse_schema(items, &format!("{at}[*]"), depth + 1)?,
        Some(Value::Array(items)) if items.len() == 1 => parse_schema(&items[0], &format!("{at}[*]"), depth + 1)?,
        _ => Ty::Atomic,
    };
    Ok(ListTy { kind, elem })
}

fn string_list(v: &Value) -> Option<Vec<String>> {
    v.as_array()?.iter().map(|k| k.as_str().map(str::to_owned)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_list_and_map_types() {
        let info = TypeInfo::from_schema(&json!({
            "type": "object",
            "properties": {
                "spec": {"type": "object", "properties": {
                    "ports": {"type": "array", "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["port", "protocol"],
                        "items": {"type": "object", "properties": {
                            "port": {"type": "integer"},
                            "protocol": {"type": "string", "default": "TCP"}}}},
                    "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                    "args": {"type": "array", "items": {"type": "string"}},
                    "selector": {"type": "object", "x-kubernetes-map-type": "atomic",
                        "additionalProperties": {"type": "string"}},
                    "extra": {"x-kubernetes-preserve-unknown-fields": true}
                }}
            }
        }))
        .unwrap();
        let root = info.root.as_map().unwrap();
        let Some(spec) = root.field_ty("spec").as_map() else { panic!("spec is a map") };
        let Ty::List(ports) = spec.field_ty("ports") else { panic!("ports is a list") };
        assert_eq!(ports.kind, ListKind::Map(vec!["port".to_owned(), "protocol".to_owned()]));
        let protocol = ports.elem.as_map().and_then(|m| m.fields.get("protocol"));
        assert_eq!(protocol.and_then(|f| f.default.clone()), Some(json!("TCP")));
        assert!(matches!(spec.field_ty("tags"), Ty::List(l) if l.kind == ListKind::Set));
        assert!(matches!(spec.field_ty("args"), Ty::List(l) if l.kind == ListKind::Atomic));
        assert!(matches!(spec.field_ty("selector"), Ty::Map(m) if m.atomic));
        assert!(matches!(spec.field_ty("extra"), Ty::Untyped(..)));
        assert!(matches!(spec.field_ty("unknown"), Ty::Deduced));
        let meta = root.field_ty("metadata").as_map().unwrap();
        assert!(meta.is_named("labels"));
        assert!(matches!(meta.field_ty("finalizers"), Ty::List(l) if l.kind == ListKind::Set));
    }

    #[test]
    fn rejects_bad_extensions() {
        for bad in [
            json!({"type": "object", "properties": {"a": {"type": "array", "x-kubernetes-list-type": "bag"}}}),
            json!({"type": "object", "properties": {"a": {"type": "array", "x-kubernetes-list-type": "map"}}}),
            json!({"type": "object", "properties": {"a": {"type": "object", "x-kubernetes-map-type": "x"}}}),
            json!({"type": "object", "properties": {"a": {"type": "tuple"}}}),
            json!({"type": "array"}),
        ] {
            assert!(TypeInfo::from_schema(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn builtins_parse() {
        for (g, v, k) in [
            ("", "v1", "Namespace"),
            ("core", "v1", "ConfigMap"),
            ("", "v1", "Secret"),
            ("", "v1", "Event"),
            ("events.k8s.io", "v1", "Event"),
            ("coordination.k8s.io", "v1", "Lease"),
            ("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
        ] {
            assert!(TypeInfo::builtin(g, v, k).is_some(), "{g}/{v} {k}");
        }
        assert!(TypeInfo::builtin("apps", "v1", "Deployment").is_none());
        assert!(TypeInfo::builtin("", "v1", "Namespace").unwrap().has_status_subresource());
    }

    #[test]
    fn deep_schema_is_rejected() {
        let mut s = json!({"type": "string"});
        for _ in 0..(MAX_DEPTH + 5) {
            s = json!({"type": "object", "properties": {"a": s}});
        }
        assert!(TypeInfo::from_schema(&s).is_err());
    }
}
