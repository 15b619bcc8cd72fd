//! Validation ratcheting on update (`CRDValidationRatcheting`, on by default since 1.30): errors
//! of values left unchanged by the update are not reported. Old and new values are correlated
//! (`k8s.io/apiserver/pkg/cel/common.CorrelatedObject`) through object fields, map keys and the
//! keys of `x-kubernetes-list-type: map` lists; other list items are not correlatable.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::node::Node;

/// The old value of the field `name` of an object, if old and new can be correlated there: both
/// objects have it and the schema knows it (a property or `additionalProperties` schema).
pub(crate) fn key<'a>(old: Option<&'a Value>, new: &Value, schema: &Node, name: &str) -> Option<&'a Value> {
    let old_value = old?.as_object()?.get(name)?;
    new.as_object()?.get(name)?;
    schema.field(name)?;
    Some(old_value)
}

/// The old items of a `x-kubernetes-list-type: map` list, by key (the first item of a key wins).
#[derive(Debug, Default)]
pub(crate) struct MapList<'a> {
    keys: Vec<String>,
    items: HashMap<String, &'a Value>,
}

impl<'a> MapList<'a> {
    /// Indexes `old` if `schema` is a map list (else finds nothing).
    pub fn new(schema: &Node, old: Option<&'a Value>) -> Self {
        let mut list = Self::default();
        if schema.list_type.as_deref() != Some("map") || schema.list_map_keys.is_empty() {
            return list;
        }
        list.keys = schema.list_map_keys.clone();
        if let Some(Value::Array(items)) = old {
            for item in items {
                if let Some(k) = item.as_object().and_then(|o| composite_key(&list.keys, o)) {
                    list.items.entry(k).or_insert(item);
                }
            }
        }
        list
    }

    /// The old item with the keys of `item`.
    pub fn get(&self, item: &Value) -> Option<&'a Value> {
        if self.keys.is_empty() {
            return None;
        }
        let k = composite_key(&self.keys, item.as_object()?)?;
        self.items.get(&k).copied()
    }
}

/// The key of a map-list item: its key fields, which must all be present and scalar. Go keys a
/// single key field by its value (an `int64` 1 differs from a `float64` 1) and several with
/// `%t`, `%f`, `%d` and `%q` joined by NUL bytes.
fn composite_key(keys: &[String], item: &Map<String, Value>) -> Option<String> {
    if let [single] = keys {
        return Some(match item.get(single)? {
            Value::Bool(b) => format!("b:{b}"),
            Value::String(s) => format!("s:{s}"),
            Value::Number(n) => match n.as_i64() {
                Some(i) => format!("i:{i}"),
                None => format!("f:{}", n.as_f64().unwrap_or(0.0)),
            },
            _ => return None,
        });
    }
    let mut out = String::new();
    for k in keys {
        out.push('\0');
        match item.get(k)? {
            Value::Bool(b) => out.push_str(&b.to_string()),
            Value::String(s) => out.push_str(&crate::errors::go_quote(s)),
            Value::Number(n) => match n.as_i64() {
                Some(i) => out.push_str(&i.to_string()),
                None => out.push_str(&format!("{:.6}", n.as_f64().unwrap_or(0.0))),
            },
            _ => return None,
        }
    }
    Some(out)
}

/// `CorrelatedObject.CachedDeepEqual`: whether an update left a value unchanged. Objects compare
/// field by field (fields without a schema never compare equal), map lists by key (in any
/// order), other lists and scalars exactly.
pub(crate) fn deep_equal(new: &Value, old: &Value, schema: Option<&Node>) -> bool {
    match (new, old) {
        (Value::Null, Value::Null) => true,
        (Value::Array(new_items), Value::Array(old_items)) => {
            if new_items.len() != old_items.len() {
                return false;
            }
            let Some(schema) = schema else { return new == old };
            let Some(items_schema) = schema.items.as_deref() else { return new == old };
            if schema.list_type.as_deref() != Some("map") {
                return new == old;
            }
            let list = MapList::new(schema, Some(old));
            new_items
                .iter()
                .all(|item| list.get(item).is_some_and(|old_item| deep_equal(item, old_item, Some(items_schema))))
        }
        (Value::Object(new_map), Value::Object(old_map)) => {
            if new_map.len() != old_map.len() {
                return false;
            }
            if new_map.is_empty() {
                return true;
            }
            let Some(schema) = schema else { return false };
            new_map.iter().all(|(k, v)| match (old_map.get(k), schema.field(k)) {
                (Some(old_v), Some(field_schema)) => deep_equal(v, old_v, Some(field_schema)),
                _ => false,
            })
        }
        (Value::Array(_) | Value::Object(_), _) | (_, Value::Array(_) | Value::Object(_)) => false,
        _ => new == old,
    }
}
