//! Uniqueness in `x-kubernetes-list-type: set` and `map` lists
//! (`apiextensions-apiserver/pkg/apiserver/schema/listtype`): the second occurrence of a value
//! (sets) or of a key tuple (maps) is a `Duplicate value`.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::errors::{FieldError, go_json};
use crate::node::Node;
use crate::path::{child, index, key};

/// Validates the set and map lists of an object.
pub(crate) fn validate(value: &Value, node: &Node) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Value::Object(map) = value {
        validate_map(&mut errors, "", node, map);
    }
    errors
}

fn validate_map(errors: &mut Vec<FieldError>, path: &str, node: &Node, map: &Map<String, Value>) {
    if let Some(schema) = node.additional_schema() {
        for (k, v) in map {
            validate_value(errors, &key(path, k), schema, v);
        }
    }
    if !node.properties.is_empty() {
        for (k, v) in map {
            if let Some(prop) = node.properties.get(k) {
                validate_value(errors, &child(path, k), prop, v);
            }
        }
    }
}

fn validate_value(errors: &mut Vec<FieldError>, path: &str, node: &Node, value: &Value) {
    match value {
        Value::Array(items) => validate_array(errors, path, node, items),
        Value::Object(map) => validate_map(errors, path, node, map),
        _ => {}
    }
}

fn validate_array(errors: &mut Vec<FieldError>, path: &str, node: &Node, items: &[Value]) {
    match node.list_type.as_deref() {
        Some("set") => {
            for i in duplicates(items.iter().map(Some)) {
                errors.push(FieldError::duplicate(index(path, i), items[i].clone()));
            }
        }
        Some("map") => validate_list_map(errors, path, node, items),
        _ => {}
    }
    if let Some(schema) = node.items.as_deref() {
        for (i, item) in items.iter().enumerate() {
            validate_value(errors, &index(path, i), schema, item);
        }
    }
}

/// How Go compares list elements: scalars by type and value (an `int64` 1 is not a `float64`
/// 1), objects and arrays by their JSON. `None` is an unspecified map-list key.
fn identity(value: Option<&Value>) -> String {
    match value {
        None => "u".to_owned(),
        Some(Value::Null) => "n".to_owned(),
        Some(Value::Bool(b)) => format!("b{b}"),
        Some(Value::String(s)) => format!("s{s}"),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(i) => format!("i{i}"),
            None => format!("f{}", n.as_f64().unwrap_or(0.0).to_bits()),
        },
        Some(compound) => format!("c{}", go_json(compound)),
    }
}

/// The indexes of the second occurrence of each repeated value.
fn duplicates<'a>(values: impl Iterator<Item = Option<&'a Value>>) -> Vec<usize> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut repeated = Vec::new();
    for (i, value) in values.enumerate() {
        let count = seen.entry(identity(value)).or_insert(0);
        *count += 1;
        if *count == 2 {
            repeated.push(i);
        }
    }
    repeated
}

fn validate_list_map(errors: &mut Vec<FieldError>, path: &str, node: &Node, items: &[Value]) {
    for (i, item) in items.iter().enumerate() {
        if !item.is_null() && !item.is_object() {
            errors.push(FieldError::invalid(
                index(path, i),
                item.clone(),
                "must be an object for an array of list-type map",
            ));
            return;
        }
    }
    if items.len() <= 1 {
        return;
    }
    if let [field] = node.list_map_keys.as_slice() {
        let keys: Vec<Option<&Value>> = items.iter().map(|item| item.get(field)).collect();
        for i in duplicates(keys.iter().copied()) {
            let mut shown = Map::new();
            if let Some(k) = keys[i] {
                shown.insert(field.clone(), k.clone());
            }
            errors.push(FieldError::duplicate(index(path, i), Value::Object(shown)));
        }
        return;
    }
    let keys: Vec<Value> = items
        .iter()
        .map(|item| {
            let mut tuple = Map::new();
            for field in &node.list_map_keys {
                if let Some(k) = item.get(field) {
                    tuple.insert(field.clone(), k.clone());
                }
            }
            Value::Object(tuple)
        })
        .collect();
    for i in duplicates(keys.iter().map(Some)) {
        errors.push(FieldError::duplicate(index(path, i), keys[i].clone()));
    }
}
