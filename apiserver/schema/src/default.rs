//! Defaulting (`apiextensions-apiserver/pkg/apiserver/schema/defaulting.Default`): absent
//! properties, and `null`s where the schema is not nullable, take the schema's `default`;
//! defaults apply inside array items and map values, and inside defaults themselves.

use serde_json::Value;

use crate::node::Node;

/// Applies the defaults of `node` to `value`, after pruning as the API server does.
pub(crate) fn apply(value: &mut Value, node: &Node) {
    match value {
        Value::Object(map) => {
            for (name, prop) in &node.properties {
                let Some(default) = &prop.default else { continue };
                match map.get(name) {
                    None => {
                        map.insert(name.clone(), default.clone());
                    }
                    Some(Value::Null) if !prop.nullable => {
                        map.insert(name.clone(), default.clone());
                    }
                    Some(_) => {}
                }
            }
            let additional = node.additional_schema();
            for (name, v) in map.iter_mut() {
                if let Some(prop) = node.properties.get(name) {
                    apply(v, prop);
                } else if let Some(schema) = additional {
                    if v.is_null() && !schema.nullable {
                        // The API server copies the default even when there is none (a no-op).
                        if let Some(default) = &schema.default {
                            *v = default.clone();
                        }
                    }
                    apply(v, schema);
                }
            }
        }
        Value::Array(items) => {
            let Some(schema) = node.items.as_deref() else { return };
            for item in items {
                if item.is_null()
                    && !schema.nullable
                    && let Some(default) = &schema.default
                {
                    *item = default.clone();
                }
                apply(item, schema);
            }
        }
        _ => {}
    }
}
