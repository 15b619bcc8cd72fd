//! Pruning of unknown fields (`apiextensions-apiserver/pkg/apiserver/schema/pruning`) and of
//! `null`s the schema does not allow (`defaulting.PruneNonNullableNullsWithoutDefaults`).

use serde_json::Value;

use crate::node::{Additional, Node};

/// Fields of a resource that pruning leaves to the metadata handling.
const META_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// Removes the fields of `value` that `node` does not specify, except where
/// `x-kubernetes-preserve-unknown-fields` keeps them, and returns their paths sorted
/// (`spec.foo`, `spec.items[0].bar`, map keys joined with dots). With `is_resource_root`,
/// `apiVersion`, `kind` and `metadata` are left alone as at the root of a resource.
pub(crate) fn prune(value: &mut Value, node: &Node, is_resource_root: bool) -> Vec<String> {
    let mut pruner = Pruner { paths: Vec::new(), path: String::new() };
    pruner.prune(value, Some(node), is_resource_root);
    pruner.paths.sort();
    pruner.paths
}

struct Pruner {
    paths: Vec<String>,
    /// The path of the value being pruned, as the API server records unknown fields.
    path: String,
}

impl Pruner {
    fn record(&mut self, key: &str) {
        if self.path.is_empty() {
            self.paths.push(key.to_owned());
        } else {
            self.paths.push(format!("{}.{key}", self.path));
        }
    }

    fn enter_key(&mut self, key: &str) -> usize {
        let len = self.path.len();
        if !self.path.is_empty() {
            self.path.push('.');
        }
        self.path.push_str(key);
        len
    }

    fn enter_index(&mut self, i: usize) -> usize {
        let len = self.path.len();
        self.path.push('[');
        self.path.push_str(&i.to_string());
        self.path.push(']');
        len
    }

    fn prune(&mut self, value: &mut Value, node: Option<&Node>, force_embedded: bool) {
        if let Some(node) = node
            && node.preserve_unknown_fields
        {
            self.skip_prune(value, node, force_embedded);
            return;
        }
        match value {
            Value::Object(map) => {
                let Some(node) = node else {
                    let keys: Vec<String> = map.keys().cloned().collect();
                    for k in keys {
                        self.record(&k);
                    }
                    map.clear();
                    return;
                };
                let embedded = node.embedded_resource || force_embedded;
                let keys: Vec<String> = map.keys().cloned().collect();
                for k in keys {
                    if embedded && META_FIELDS.contains(&k.as_str()) {
                        continue;
                    }
                    let schema = if let Some(prop) = node.properties.get(&k) {
                        Some(Some(prop))
                    } else {
                        match &node.additional_properties {
                            Some(Additional::Schema(s)) => Some(Some(&**s)),
                            Some(Additional::Allows(_)) => Some(None),
                            None => None,
                        }
                    };
                    match schema {
                        Some(schema) => {
                            let len = self.enter_key(&k);
                            if let Some(v) = map.get_mut(&k) {
                                self.prune(v, schema, false);
                            }
                            self.path.truncate(len);
                        }
                        None => {
                            if !META_FIELDS.contains(&k.as_str()) || !self.path.is_empty() {
                                self.record(&k);
                            }
                            map.remove(&k);
                        }
                    }
                }
            }
            Value::Array(items) => {
                let items_schema = node.and_then(|n| n.items.as_deref());
                for (i, item) in items.iter_mut().enumerate() {
                    let len = self.enter_index(i);
                    self.prune(item, items_schema, false);
                    self.path.truncate(len);
                }
            }
            _ => {}
        }
    }

    /// Pruning below `x-kubernetes-preserve-unknown-fields`: unknown fields stay, known ones
    /// are still pruned by their schemas.
    fn skip_prune(&mut self, value: &mut Value, node: &Node, force_embedded: bool) {
        match value {
            Value::Object(map) => {
                let embedded = node.embedded_resource || force_embedded;
                for (k, v) in map.iter_mut() {
                    if embedded && META_FIELDS.contains(&k.as_str()) {
                        continue;
                    }
                    let schema = if let Some(prop) = node.properties.get(k) {
                        Some(Some(prop))
                    } else {
                        match &node.additional_properties {
                            Some(Additional::Schema(s)) => Some(Some(&**s)),
                            Some(Additional::Allows(_)) => Some(None),
                            None => None,
                        }
                    };
                    if let Some(schema) = schema {
                        let len = self.enter_key(k);
                        self.prune(v, schema, false);
                        self.path.truncate(len);
                    }
                }
            }
            Value::Array(items) => {
                if let Some(items_schema) = node.items.as_deref() {
                    for (i, item) in items.iter_mut().enumerate() {
                        let len = self.enter_index(i);
                        self.skip_prune(item, items_schema, false);
                        self.path.truncate(len);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Removes the `null` values of object fields whose schema is not nullable and has no default
/// (those with a default are defaulted afterwards).
pub(crate) fn prune_nulls(value: &mut Value, node: Option<&Node>) {
    match value {
        Value::Object(map) => {
            map.retain(|k, v| {
                let schema = node.and_then(|n| n.field(k));
                !(v.is_null() && schema.is_some_and(|s| !s.nullable && s.default.is_none()))
            });
            for (k, v) in map.iter_mut() {
                prune_nulls(v, node.and_then(|n| n.field(k)));
            }
        }
        Value::Array(items) => {
            let items_schema = node.and_then(|n| n.items.as_deref());
            for item in items {
                prune_nulls(item, items_schema);
            }
        }
        _ => {}
    }
}
