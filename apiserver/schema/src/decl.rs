//! The CEL view of a schema that cost estimation reads: Kubernetes' `DeclType`
//! (`k8s.io/apiserver/pkg/cel/common/schemas.go` `SchemaDeclType`), reduced to what the
//! estimator needs: the kind of each value, the most elements (characters, items, properties)
//! it can have, and the fewest bytes it takes in JSON.
//!
//! Unbounded lists, maps and strings get bounds from the largest request the API server
//! accepts (3 MiB): a list of numbers holds at most `(3 MiB - 2) / 2` of them, a string
//! `3 MiB - 2` characters. That is why rules over unbounded values get huge estimates.

use std::collections::BTreeMap;

use crate::escaping::escape;
use crate::node::{Additional, DeclField, DeclKind, DeclType, Node};

/// The largest request the API server accepts (`MaxRequestSizeBytes`), from which the bounds
/// of unbounded values derive.
pub const MAX_REQUEST_SIZE_BYTES: i64 = 3 * 1024 * 1024;

/// `MaxDurationSizeJSON`, `MaxDatetimeSizeJSON`.
const MAX_DURATION_SIZE_JSON: u64 = 32;
const MAX_DATETIME_SIZE_JSON: u64 = 32;
/// `MinDurationSizeJSON`, `JSONDateSize`, `MinDatetimeSizeJSON`.
const MIN_DURATION_SIZE_JSON: i64 = 3;
const JSON_DATE_SIZE: i64 = 12;
const MIN_DATETIME_SIZE_JSON: i64 = 21;
/// `MinStringSize` (`""`), `MinBoolSize` (`true`), `MinNumberSize` (`0`).
const MIN_STRING_SIZE: i64 = 2;
const MIN_BOOL_SIZE: i64 = 4;
const MIN_NUMBER_SIZE: i64 = 1;

impl DeclType {
    fn simple(kind: DeclKind, min_serialized_size: i64, max_elements: u64) -> Self {
        Self { kind, max_elements, min_serialized_size, fields: BTreeMap::new(), elem: None, key: None }
    }

    fn plain_string() -> Self {
        Self::simple(DeclKind::String, MIN_STRING_SIZE, per_request_string_length())
    }
}

fn zero_if_negative(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// `estimateMaxStringLengthPerRequest` of a plain string: the request less the quotes.
fn per_request_string_length() -> u64 {
    zero_if_negative(MAX_REQUEST_SIZE_BYTES - 2)
}

/// `SchemaDeclType`: the CEL declaration of a schema node, or `None` when CEL does not see it
/// (no type, an array without items…). `is_resource_root` adds `apiVersion`, `kind` and
/// `metadata.name`/`generateName` as the API server does at the root of (embedded) resources.
pub(crate) fn decl_type(node: &Node, is_resource_root: bool) -> Option<DeclType> {
    if node.int_or_string {
        let max = match node.max_length {
            Some(l) => zero_if_negative(l).saturating_mul(4),
            None => per_request_string_length(),
        };
        return Some(DeclType::simple(DeclKind::Dyn, 1, max));
    }
    match node.ty.as_str() {
        "array" => {
            let items = node.items.as_deref()?;
            let elem = decl_type(items, items.embedded_resource)?;
            let max = match node.max_items {
                Some(m) => zero_if_negative(m),
                None => zero_if_negative((MAX_REQUEST_SIZE_BYTES - 2) / (elem.min_serialized_size + 1)),
            };
            let mut list = DeclType::simple(DeclKind::List, 2, max);
            list.elem = Some(Box::new(elem));
            Some(list)
        }
        "object" => {
            if let Some(Additional::Schema(values)) = &node.additional_properties {
                let elem = decl_type(values, values.embedded_resource)?;
                let max = match node.max_properties {
                    Some(m) => zero_if_negative(m),
                    // A key of at least "" and a colon, a comma and the smallest value.
                    None => zero_if_negative((MAX_REQUEST_SIZE_BYTES - 2) / (elem.min_serialized_size + 6)),
                };
                let mut map = DeclType::simple(DeclKind::Map, 2, max);
                map.elem = Some(Box::new(elem));
                // Keys are strings without a bound (`StringType`, whose MaxElements is 0).
                map.key = Some(Box::new(DeclType::simple(DeclKind::String, MIN_STRING_SIZE, 0)));
                return Some(map);
            }
            Some(object(node, is_resource_root))
        }
        "string" => Some(string(node)),
        "boolean" => Some(DeclType::simple(DeclKind::Bool, MIN_BOOL_SIZE, 0)),
        "number" => Some(DeclType::simple(DeclKind::Double, MIN_NUMBER_SIZE, 0)),
        "integer" => Some(DeclType::simple(DeclKind::Int, MIN_NUMBER_SIZE, 0)),
        _ => None,
    }
}

fn object(node: &Node, is_resource_root: bool) -> DeclType {
    let mut fields: Vec<(&str, Option<DeclType>, bool)> = Vec::new();
    let meta_ok = !is_resource_root || has_type_and_object_meta(node);
    for (name, prop) in &node.properties {
        if !meta_ok && matches!(name.as_str(), "kind" | "apiVersion" | "metadata") {
            continue;
        }
        fields.push((name, decl_type(prop, prop.embedded_resource), prop.default.is_some()));
    }
    if !meta_ok {
        // `WithTypeAndObjectMeta`: plain strings, and a metadata of name and generateName only.
        fields.push(("kind", Some(DeclType::plain_string()), false));
        fields.push(("apiVersion", Some(DeclType::plain_string()), false));
        let mut meta = DeclType::simple(DeclKind::Object, 2, 0);
        for name in ["name", "generateName"] {
            meta.fields.insert(name.to_owned(), DeclField { json_name: name.to_owned(), ty: DeclType::plain_string() });
        }
        fields.push(("metadata", Some(meta), false));
    }
    let mut obj = DeclType::simple(DeclKind::Object, 2, 0);
    for (name, ty, has_default) in fields {
        let Some(ty) = ty else { continue };
        if node.required.iter().any(|r| r == name) && !has_default {
            obj.min_serialized_size += i64::try_from(name.len()).unwrap_or(i64::MAX / 4) + ty.min_serialized_size + 4;
        }
        if let Some(escaped) = escape(name) {
            obj.fields.insert(escaped, DeclField { json_name: name.to_owned(), ty });
        }
    }
    obj
}

/// Whether a resource's schema already declares `kind`, `apiVersion` and `metadata` with `name`
/// and `generateName` as strings.
fn has_type_and_object_meta(node: &Node) -> bool {
    let is = |n: Option<&Node>, ty: &str| n.is_some_and(|n| n.ty == ty);
    let meta = node.properties.get("metadata");
    is(node.properties.get("kind"), "string")
        && is(node.properties.get("apiVersion"), "string")
        && is(meta, "object")
        && meta
            .is_some_and(|m| is(m.properties.get("name"), "string") && is(m.properties.get("generateName"), "string"))
}

fn string(node: &Node) -> DeclType {
    match node.format.as_str() {
        "byte" => {
            let max = node.max_length.map_or_else(per_request_string_length, zero_if_negative);
            DeclType::simple(DeclKind::Bytes, MIN_STRING_SIZE, max)
        }
        "duration" => DeclType::simple(DeclKind::Duration, MIN_DURATION_SIZE_JSON, MAX_DURATION_SIZE_JSON),
        "date" => DeclType::simple(DeclKind::Timestamp, JSON_DATE_SIZE, zero_if_negative(JSON_DATE_SIZE)),
        "date-time" => DeclType::simple(DeclKind::Timestamp, MIN_DATETIME_SIZE_JSON, MAX_DATETIME_SIZE_JSON),
        _ => {
            let max = if let Some(l) = node.max_length {
                // maxLength counts characters, the API server bytes: up to 4 a character.
                zero_if_negative(l).saturating_mul(4)
            } else if !node.enumeration.is_empty() {
                node.enumeration.iter().filter_map(|v| v.as_str()).map(|s| s.len() as u64).max().unwrap_or(0)
            } else {
                per_request_string_length()
            };
            DeclType::simple(DeclKind::String, MIN_STRING_SIZE, max)
        }
    }
}
