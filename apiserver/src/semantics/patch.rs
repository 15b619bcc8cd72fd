//! Strategic merge patch, as far as the kinds this server stores need it: a JSON merge patch
//! that also honours the `$patch: delete` / `$patch: replace` directives and drops the
//! `$setElementOrder`/`$retainKeys`/`$deleteFromPrimitiveList` bookkeeping keys kubectl sends.
//!
//! The built-in kinds served here (Namespace, Secret, ConfigMap, Event, Lease) have no lists
//! merged by key, so a merge patch is what a strategic merge patch does to them; custom
//! resources reject strategic merge patches on a real API server too (kubectl uses merge
//! patches for them).

use serde_json::Value;

/// Applies a strategic merge patch to `target`.
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    match patch_map.get("$patch").and_then(Value::as_str) {
        Some("delete") => {
            *target = Value::Null;
            return;
        }
        Some("replace") => {
            let mut replacement = patch.clone();
            if let Some(map) = replacement.as_object_mut() {
                map.remove("$patch");
            }
            *target = replacement;
            return;
        }
        _ => {}
    }
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    let Value::Object(target_map) = target else { return };
    for (key, value) in patch_map {
        if key.starts_with('$') || key.starts_with("$setElementOrder/") || key.starts_with("$deleteFromPrimitiveList/")
        {
            continue;
        }
        if value.is_null() {
            target_map.remove(key);
        } else {
            let entry = target_map.entry(key.clone()).or_insert(Value::Null);
            strategic_merge(entry, value);
            if entry.is_null() {
                target_map.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merges_and_honours_directives() {
        let mut target = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "data": {"x": "1"}});
        strategic_merge(
            &mut target,
            &json!({
                "metadata": {"labels": {"a": null, "c": "3"}},
                "data": {"$patch": "replace", "y": "2"},
                "$setElementOrder/finalizers": []
            }),
        );
        assert_eq!(target, json!({"metadata": {"labels": {"b": "2", "c": "3"}}, "data": {"y": "2"}}));
    }
}
