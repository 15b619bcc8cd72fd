//! Merging an applied configuration into an object, removing owned fields from an object, and
//! pruning what an applier stopped applying.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde_json::{Map, Value};

use crate::fieldpath::{FieldSet, PathElement};
use crate::typed::{
    Duplicates, Shape, TypeError, check_depth, ensure_named_fields, field_set, item_element, list_items, pair_shape,
    shape, type_error,
};
use crate::typeinfo::{ListTy, Ty};

/// Merges `rhs` (an applied configuration) into `lhs` (the live object), as
/// structured-merge-diff's `Merge`: granular maps are merged key by key, sets and keyed lists
/// item by item (keeping the live order, with the configuration's items in the
/// configuration's order), and anything else — scalars, atomic maps and lists — is replaced
/// by the configuration's value. Duplicate items in `rhs` are an error; in `lhs` they are
/// kept as they are unless `rhs` sets that item.
pub(crate) fn merge(lhs: &Value, rhs: &Value, ty: &Ty) -> Result<Value, TypeError> {
    let mut path = Vec::new();
    Ok(merge_walk(Some(lhs), Some(rhs), ty, &mut path)?.unwrap_or(Value::Null))
}

fn merge_walk(
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    ty: &Ty,
    path: &mut Vec<PathElement>,
) -> Result<Option<Value>, TypeError> {
    check_depth(path)?;
    match pair_shape(ty, lhs, rhs) {
        Shape::Leaf => Ok(rhs.or(lhs).cloned()),
        Shape::Map(m) => {
            let empty = Map::new();
            let lm = lhs.and_then(Value::as_object).unwrap_or(&empty);
            let rm = rhs.and_then(Value::as_object).unwrap_or(&empty);
            let mut out = Map::new();
            for (key, lv) in lm {
                path.push(PathElement::Field(key.clone()));
                if let Some(v) = merge_walk(Some(lv), rm.get(key), m.field_ty(key), path)? {
                    out.insert(key.clone(), v);
                }
                path.pop();
            }
            for (key, rv) in rm {
                if lm.contains_key(key) {
                    continue;
                }
                path.push(PathElement::Field(key.clone()));
                if let Some(v) = merge_walk(None, Some(rv), m.field_ty(key), path)? {
                    out.insert(key.clone(), v);
                }
                path.pop();
            }
            Ok(Some(Value::Object(out)))
        }
        Shape::List(l) => merge_list(l, list_items(lhs), list_items(rhs), path).map(|items| Some(Value::Array(items))),
    }
}

/// Merges list items: live-only items stay where they are, items set by the configuration
/// follow the configuration's order (structured-merge-diff's ordering).
fn merge_list(l: &ListTy, lhs: &[Value], rhs: &[Value], path: &mut Vec<PathElement>) -> Result<Vec<Value>, TypeError> {
    let mut lhs_pes = Vec::with_capacity(lhs.len());
    // `None` for an element that appears more than once.
    let mut lhs_by_pe: BTreeMap<PathElement, Option<&Value>> = BTreeMap::new();
    for item in lhs {
        let pe = item_element(l, item, path)?;
        lhs_by_pe.entry(pe.clone()).and_modify(|v| *v = None).or_insert(Some(item));
        lhs_pes.push(pe);
    }
    let mut rhs_pes = Vec::with_capacity(rhs.len());
    let mut rhs_by_pe: BTreeMap<PathElement, &Value> = BTreeMap::new();
    for item in rhs {
        let pe = item_element(l, item, path)?;
        if rhs_by_pe.insert(pe.clone(), item).is_some() {
            return Err(type_error(path, format!("duplicate entries for key {pe}")));
        }
        rhs_pes.push(pe);
    }
    let mut shared: VecDeque<&PathElement> = rhs_pes.iter().filter(|pe| lhs_by_pe.contains_key(*pe)).collect();
    let mut next_shared = shared.pop_front();
    let mut merged_rhs: BTreeSet<&PathElement> = BTreeSet::new();
    let mut out = Vec::with_capacity(lhs.len().max(rhs.len()));
    let (mut li, mut ri) = (0, 0);
    while li < lhs_pes.len() || ri < rhs_pes.len() {
        if let (Some(lpe), Some(rpe)) = (lhs_pes.get(li), rhs_pes.get(ri)) {
            if lpe == rpe {
                merged_rhs.insert(rpe);
                let lv = lhs_by_pe.get(lpe).copied().flatten();
                let rv = rhs_by_pe.get(rpe).copied();
                push_item(&mut out, l, rpe, lv, rv, path)?;
                li += 1;
                ri += 1;
                next_shared = shared.pop_front();
                continue;
            }
            if rhs_by_pe.contains_key(lpe) && next_shared.is_some_and(|n| n != lpe) {
                // Set by the configuration, but not its turn yet.
                li += 1;
                continue;
            }
        }
        if let Some(lpe) = lhs_pes.get(li) {
            if !rhs_by_pe.contains_key(lpe) {
                push_item(&mut out, l, lpe, lhs.get(li), None, path)?;
                li += 1;
                continue;
            } else if merged_rhs.contains(lpe) {
                li += 1;
            }
        }
        if let Some(rpe) = rhs_pes.get(ri) {
            merged_rhs.insert(rpe);
            let lv = lhs_by_pe.get(rpe).copied().flatten();
            let rv = rhs_by_pe.get(rpe).copied();
            push_item(&mut out, l, rpe, lv, rv, path)?;
            ri += 1;
            if next_shared == Some(rpe) {
                next_shared = shared.pop_front();
            }
        }
    }
    Ok(out)
}

fn push_item(
    out: &mut Vec<Value>,
    l: &ListTy,
    pe: &PathElement,
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    path: &mut Vec<PathElement>,
) -> Result<(), TypeError> {
    path.push(pe.clone());
    let merged = merge_walk(lhs, rhs, &l.elem, path)?;
    path.pop();
    if let Some(v) = merged {
        out.push(v);
    }
    Ok(())
}

/// Removes the paths of `set` from `v`: a member path is removed with everything below it.
/// A granular map or list left empty by the removal is removed too (structured-merge-diff
/// leaves `null` there, which the apiserver then drops for non-nullable fields). Atomic
/// values are never entered. `None` when `v` itself is emptied.
pub(crate) fn remove_items(v: &Value, set: &FieldSet, ty: &Ty, depth: usize) -> Option<Value> {
    if set.is_empty() || depth > crate::MAX_DEPTH {
        return Some(v.clone());
    }
    match (shape(ty, v), v) {
        (Shape::Map(m), Value::Object(obj)) if !obj.is_empty() => {
            let mut out = Map::new();
            for (key, child) in obj {
                let pe = PathElement::Field(key.clone());
                if set.has_member(&pe) {
                    continue;
                }
                let kept = match set.with_prefix(&pe) {
                    Some(sub) => remove_items(child, sub, m.field_ty(key), depth + 1),
                    None => Some(child.clone()),
                };
                if let Some(kept) = kept {
                    out.insert(key.clone(), kept);
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        (Shape::List(l), Value::Array(items)) if !items.is_empty() => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let Ok(pe) = item_element(l, item, &[]) else {
                    out.push(item.clone());
                    continue;
                };
                if set.has_member(&pe) {
                    continue;
                }
                let kept = match set.with_prefix(&pe) {
                    Some(sub) => remove_items(item, sub, &l.elem, depth + 1),
                    None => Some(item.clone()),
                };
                if let Some(kept) = kept {
                    out.push(kept);
                }
            }
            (!out.is_empty()).then_some(Value::Array(out))
        }
        _ => Some(v.clone()),
    }
}

/// Removes `set` from the root object (which stays an object).
fn remove_from_root(v: &Value, set: &FieldSet, ty: &Ty) -> Value {
    remove_items(v, set, ty, 0).unwrap_or_else(|| Value::Object(Map::new()))
}

/// Prunes from `merged` what the applier applied last time (`last`) but not this time, unless
/// another manager (or the applier's new configuration) owns it, as structured-merge-diff's
/// `prune`: remove everything the applier owned, add back what anyone owns, then only keep
/// the removals of paths that the applier did own.
pub(crate) fn prune(
    merged: &Value,
    owned_by_anyone: &FieldSet,
    last: Option<&FieldSet>,
    ty: &Ty,
) -> Result<Value, TypeError> {
    let Some(last) = last.filter(|s| !s.is_empty()) else {
        return Ok(merged.clone());
    };
    let last = ensure_named_fields(last, ty);
    let set_of = |v: &Value| -> Result<FieldSet, TypeError> {
        Ok(ensure_named_fields(&field_set(v, ty, Duplicates::Allow)?, ty))
    };
    let merged_set = set_of(merged)?;
    // 1. Remove everything the applier owned last time.
    let pruned = remove_from_root(merged, &last, ty);
    // 2. Add back whatever someone still owns.
    let owned = ensure_named_fields(owned_by_anyone, ty);
    let pruned_set = set_of(&pruned)?;
    let pruned = remove_from_root(merged, &merged_set.difference(&pruned_set.union(&owned)), ty);
    // 3. Add back what was removed but never owned by the applier (dangling items).
    let pruned_set = set_of(&pruned)?;
    Ok(remove_from_root(merged, &merged_set.difference(&pruned_set).intersection(&last), ty))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keyed() -> Ty {
        Ty::List(Box::new(ListTy { kind: crate::typeinfo::ListKind::Map(vec!["k".to_owned()]), elem: Ty::Deduced }))
    }

    fn items(v: &Value) -> Vec<String> {
        list_items(Some(v)).iter().map(|i| i["k"].as_str().unwrap_or("?").to_owned()).collect()
    }

    fn m(lhs: &[&str], rhs: &[&str]) -> Vec<String> {
        let to = |ks: &[&str]| Value::Array(ks.iter().map(|k| json!({ "k": k })).collect());
        items(&merge(&to(lhs), &to(rhs), &keyed()).unwrap())
    }

    #[test]
    fn list_merge_order_follows_structured_merge_diff() {
        assert_eq!(m(&["a", "b", "c"], &["c", "a"]), ["b", "c", "a"]);
        assert_eq!(m(&["a", "b"], &["b", "x"]), ["a", "b", "x"]);
        assert_eq!(m(&["a", "b"], &["x", "a"]), ["x", "a", "b"]);
        assert_eq!(m(&[], &["x", "y"]), ["x", "y"]);
        assert_eq!(m(&["x", "y"], &[]), ["x", "y"]);
    }

    #[test]
    fn items_merge_field_by_field() {
        let lhs = json!([{"k": "a", "x": 1, "y": 2}]);
        let rhs = json!([{"k": "a", "x": 3}]);
        assert_eq!(merge(&lhs, &rhs, &keyed()).unwrap(), json!([{"k": "a", "x": 3, "y": 2}]));
        let dup = json!([{"k": "a"}, {"k": "a"}]);
        assert!(merge(&lhs, &dup, &keyed()).is_err());
        // Live duplicates survive unless the configuration sets the item.
        assert_eq!(merge(&dup, &json!([{"k": "b"}]), &keyed()).unwrap(), json!([{"k": "a"}, {"k": "a"}, {"k": "b"}]));
        assert_eq!(merge(&dup, &json!([{"k": "a", "z": 1}]), &keyed()).unwrap(), json!([{"k": "a", "z": 1}]));
    }

    #[test]
    fn remove_drops_emptied_containers() {
        let v = json!({"spec": {"list": [{"k": "a"}], "keep": 1}});
        let set = crate::fieldsv1::decode(&json!({"f:spec": {"f:list": {"k:{\"k\":\"a\"}": {}}}})).unwrap();
        let ty = Ty::Deduced;
        let spec_ty =
            Ty::Map(Box::new(crate::typeinfo::MapTy { fields: BTreeMap::new(), rest: keyed(), atomic: false }));
        let root = Ty::Map(Box::new(crate::typeinfo::MapTy { fields: BTreeMap::new(), rest: spec_ty, atomic: false }));
        assert_eq!(remove_items(&v, &set, &root, 0), Some(json!({"spec": {"keep": 1}})));
        // Deduced lists are atomic: nothing to enter.
        assert_eq!(remove_items(&v, &set, &ty, 0), Some(v.clone()));
    }
}
