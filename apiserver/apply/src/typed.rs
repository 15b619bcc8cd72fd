//! Walks over typed values: the field set of an object, the comparison of two objects, and
//! set adjustments that need the types (named fields, atomic collapsing).

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use crate::MAX_DEPTH;
use crate::fieldpath::{FieldSet, Path, PathElement, values_equal};
use crate::typeinfo::{ListKind, ListTy, MapTy, Ty};

/// A value that does not fit its type (a list-map item without its keys, a duplicate key in
/// an applied configuration, an object nested too deeply…).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct TypeError {
    /// Where, as `.spec.ports`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for TypeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() { f.write_str(&self.message) } else { write!(f, "{}: {}", self.path, self.message) }
    }
}

pub(crate) fn type_error(path: &[PathElement], message: impl Into<String>) -> TypeError {
    TypeError { path: Path(path.to_vec()).to_string(), message: message.into() }
}

pub(crate) fn check_depth(path: &[PathElement]) -> Result<(), TypeError> {
    if path.len() > MAX_DEPTH {
        Err(type_error(&path[..8.min(path.len())], format!("object nested deeper than {MAX_DEPTH} levels")))
    } else {
        Ok(())
    }
}

/// How a value is walked.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Shape<'t> {
    /// A leaf: a scalar, null, an atomic map or list, or a value of the wrong kind.
    Leaf,
    /// A granular map.
    Map(&'t MapTy),
    /// A set or keyed list.
    List(&'t ListTy),
}

/// The shape of `v` under type `ty`.
pub(crate) fn shape<'t>(ty: &'t Ty, v: &Value) -> Shape<'t> {
    match v {
        Value::Object(_) => match ty.as_map() {
            Some(m) if !m.atomic => Shape::Map(m),
            _ => Shape::Leaf,
        },
        Value::Array(_) => match ty {
            Ty::List(l) | Ty::Untyped(_, l) if l.kind != ListKind::Atomic => Shape::List(l),
            _ => Shape::Leaf,
        },
        _ => Shape::Leaf,
    }
}

fn is_empty_container(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// The shape two versions of a value are walked with together. A null or absent side counts
/// as an empty container when the other side is a container; when both sides are empty (or
/// null, or absent) the value is a leaf, which keeps `{}`, `[]` and `null` apart.
pub(crate) fn pair_shape<'t>(ty: &'t Ty, lhs: Option<&Value>, rhs: Option<&Value>) -> Shape<'t> {
    let side = |v: Option<&Value>| match v {
        None | Some(Value::Null) => None,
        Some(v) => Some((shape(ty, v), is_empty_container(v))),
    };
    match (side(lhs), side(rhs)) {
        (Some((s @ Shape::Map(_), empty)), None) | (None, Some((s @ Shape::Map(_), empty))) => {
            if empty {
                Shape::Leaf
            } else {
                s
            }
        }
        (Some((s @ Shape::List(_), empty)), None) | (None, Some((s @ Shape::List(_), empty))) => {
            if empty {
                Shape::Leaf
            } else {
                s
            }
        }
        (Some((Shape::Map(m), le)), Some((Shape::Map(_), re))) => {
            if le && re {
                Shape::Leaf
            } else {
                Shape::Map(m)
            }
        }
        (Some((Shape::List(l), le)), Some((Shape::List(_), re))) => {
            if le && re {
                Shape::Leaf
            } else {
                Shape::List(l)
            }
        }
        _ => Shape::Leaf,
    }
}

/// The items of a list-shaped value (null is the empty list).
pub(crate) fn list_items(v: Option<&Value>) -> &[Value] {
    match v {
        Some(Value::Array(items)) => items,
        _ => &[],
    }
}

/// The path element that identifies `item` in a set or keyed list.
pub(crate) fn item_element(list: &ListTy, item: &Value, path: &[PathElement]) -> Result<PathElement, TypeError> {
    match &list.kind {
        ListKind::Map(keys) => {
            let Value::Object(fields) = item else {
                return Err(type_error(
                    path,
                    if item.is_null() {
                        "associative list with keys may not have a null element"
                    } else {
                        "associative list with keys may not have non-map elements"
                    },
                ));
            };
            let defaults = list.elem.as_map();
            let mut key = Vec::with_capacity(keys.len());
            for name in keys {
                if let Some(v) = fields.get(name) {
                    key.push((name.clone(), v.clone()));
                } else if let Some(default) = defaults.and_then(|m| m.fields.get(name)).and_then(|f| f.default.clone())
                {
                    key.push((name.clone(), default));
                }
            }
            if key.is_empty() {
                return Err(type_error(
                    path,
                    format!(
                        "associative list with keys has an element that omits all key fields {keys:?} (and doesn't have default values for any key fields)"
                    ),
                ));
            }
            Ok(PathElement::key(key))
        }
        ListKind::Set | ListKind::Atomic => match item {
            Value::Object(_) => Err(type_error(path, "associative list without keys has an element that's a map type")),
            Value::Array(_) => Err(type_error(path, "not supported: associative list with lists as elements")),
            Value::Null => {
                Err(type_error(path, "associative list without keys has an element that's an explicit null"))
            }
            v => Ok(PathElement::Value(v.clone())),
        },
    }
}

/// Whether duplicate list items are tolerated (live objects) or an error (applied
/// configurations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Duplicates {
    Allow,
    Reject,
}

/// The set of fields `v` sets, as structured-merge-diff's `ToFieldSet`: every leaf, every
/// list item, every map key that is not a named struct field, and empty or null values.
pub(crate) fn field_set(v: &Value, ty: &Ty, dups: Duplicates) -> Result<FieldSet, TypeError> {
    let mut set = FieldSet::new();
    let mut path = Vec::new();
    field_set_walk(v, ty, dups, &mut path, &mut set)?;
    Ok(set)
}

fn field_set_walk(
    v: &Value,
    ty: &Ty,
    dups: Duplicates,
    path: &mut Vec<PathElement>,
    set: &mut FieldSet,
) -> Result<(), TypeError> {
    check_depth(path)?;
    match shape(ty, v) {
        Shape::Leaf => set.insert(path),
        Shape::Map(m) => {
            if let Value::Object(obj) = v {
                for (key, child) in obj {
                    path.push(PathElement::Field(key.clone()));
                    field_set_walk(child, m.field_ty(key), dups, path, set)?;
                    let empty_map = matches!(child, Value::Object(o) if o.is_empty());
                    if child.is_null() || empty_map || !m.is_named(key) {
                        set.insert(path);
                    }
                    path.pop();
                }
            }
        }
        Shape::List(l) => {
            let items = list_items(Some(v));
            let mut pes = Vec::with_capacity(items.len());
            let mut seen: BTreeMap<PathElement, usize> = BTreeMap::new();
            for item in items {
                let pe = item_element(l, item, path)?;
                let count = seen.entry(pe.clone()).or_insert(0);
                *count += 1;
                if *count == 2 {
                    if dups == Duplicates::Reject {
                        return Err(type_error(path, format!("duplicate entries for key {pe}")));
                    }
                    path.push(pe.clone());
                    set.insert(path);
                    path.pop();
                }
                pes.push(pe);
            }
            for (item, pe) in items.iter().zip(pes) {
                if seen.get(&pe).copied().unwrap_or(0) > 1 {
                    continue;
                }
                path.push(pe);
                field_set_walk(item, &l.elem, dups, path, set)?;
                set.insert(path);
                path.pop();
            }
        }
    }
    Ok(())
}

/// The differences between two versions of an object.
#[derive(Debug, Clone, Default)]
pub(crate) struct Comparison {
    /// Fields present in both but different (leaves only).
    pub(crate) modified: FieldSet,
    /// Fields only in the new version (containers included).
    pub(crate) added: FieldSet,
    /// Fields only in the old version (containers included).
    pub(crate) removed: FieldSet,
}

impl Comparison {
    /// Whether the versions are the same.
    #[cfg(test)]
    pub(crate) fn is_same(&self) -> bool {
        self.modified.is_empty() && self.added.is_empty() && self.removed.is_empty()
    }

    /// Applies `f` to each of the three sets.
    pub(crate) fn map(self, f: impl Fn(FieldSet) -> FieldSet) -> Comparison {
        Comparison { modified: f(self.modified), added: f(self.added), removed: f(self.removed) }
    }
}

/// Compares two versions of an object, as structured-merge-diff's `Compare`. Duplicate list
/// items are tolerated.
pub(crate) fn compare(lhs: &Value, rhs: &Value, ty: &Ty) -> Result<Comparison, TypeError> {
    compare_as(Walk { skip_equal: false, skip_managed_fields: false }, lhs, rhs, ty)
}

/// [`compare`] for tracking an update: `metadata.managedFields` is left out on both sides, and
/// subtrees equal on both sides are not walked (a status of thousands of list items with a few
/// new ones costs one equality check per item, not a field set).
pub(crate) fn compare_without_managed_fields(lhs: &Value, rhs: &Value, ty: &Ty) -> Result<Comparison, TypeError> {
    compare_as(Walk { skip_equal: true, skip_managed_fields: true }, lhs, rhs, ty)
}

fn compare_as(walk: Walk, lhs: &Value, rhs: &Value, ty: &Ty) -> Result<Comparison, TypeError> {
    let mut cmp = Comparison::default();
    compare_walk(walk, Some(lhs), Some(rhs), ty, &mut Vec::new(), &mut cmp)?;
    Ok(cmp)
}

/// How a comparison walks.
#[derive(Clone, Copy)]
struct Walk {
    /// Equal subtrees hold no change: do not descend into them.
    skip_equal: bool,
    /// Leave `metadata.managedFields` out.
    skip_managed_fields: bool,
}

impl Walk {
    fn skips(self, path: &[PathElement], key: &str) -> bool {
        self.skip_managed_fields
            && key == "managedFields"
            && matches!(path, [PathElement::Field(first)] if first == "metadata")
    }
}

fn compare_walk(
    walk: Walk,
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    ty: &Ty,
    path: &mut Vec<PathElement>,
    cmp: &mut Comparison,
) -> Result<(), TypeError> {
    check_depth(path)?;
    if walk.skip_equal
        && let (Some(l), Some(r)) = (lhs, rhs)
        && (l.is_object() || l.is_array())
        && l == r
    {
        return Ok(());
    }
    match pair_shape(ty, lhs, rhs) {
        Shape::Leaf => {
            match (lhs, rhs) {
                (None, Some(_)) => cmp.added.insert(path),
                (Some(_), None) => cmp.removed.insert(path),
                (Some(l), Some(r)) if !values_equal(l, r) => cmp.modified.insert(path),
                _ => {}
            }
            return Ok(());
        }
        Shape::Map(m) => {
            let empty = serde_json::Map::new();
            let lm = lhs.and_then(Value::as_object).unwrap_or(&empty);
            let rm = rhs.and_then(Value::as_object).unwrap_or(&empty);
            for (key, lv) in lm {
                if walk.skips(path, key) {
                    continue;
                }
                path.push(PathElement::Field(key.clone()));
                compare_walk(walk, Some(lv), rm.get(key), m.field_ty(key), path, cmp)?;
                path.pop();
            }
            for (key, rv) in rm {
                if !lm.contains_key(key) && !walk.skips(path, key) {
                    path.push(PathElement::Field(key.clone()));
                    compare_walk(walk, None, Some(rv), m.field_ty(key), path, cmp)?;
                    path.pop();
                }
            }
        }
        Shape::List(l) => compare_list(walk, l, list_items(lhs), list_items(rhs), path, cmp)?,
    }
    if lhs.is_none() {
        cmp.added.insert(path);
    } else if rhs.is_none() {
        cmp.removed.insert(path);
    }
    Ok(())
}

fn compare_list(
    walk: Walk,
    l: &ListTy,
    lhs: &[Value],
    rhs: &[Value],
    path: &mut Vec<PathElement>,
    cmp: &mut Comparison,
) -> Result<(), TypeError> {
    let mut order: Vec<PathElement> = Vec::new();
    let mut lvals: BTreeMap<PathElement, Vec<&Value>> = BTreeMap::new();
    let mut rvals: BTreeMap<PathElement, Vec<&Value>> = BTreeMap::new();
    for item in lhs {
        let pe = item_element(l, item, path)?;
        let entry = lvals.entry(pe.clone()).or_default();
        if entry.is_empty() {
            order.push(pe);
        }
        entry.push(item);
    }
    for item in rhs {
        let pe = item_element(l, item, path)?;
        let entry = rvals.entry(pe.clone()).or_default();
        if entry.is_empty() && !lvals.contains_key(&pe) {
            order.push(pe);
        }
        entry.push(item);
    }
    let none: Vec<&Value> = Vec::new();
    for pe in order {
        let ls = lvals.get(&pe).unwrap_or(&none);
        let rs = rvals.get(&pe).unwrap_or(&none);
        path.push(pe);
        match (ls.len(), rs.len()) {
            (0..=1, 0..=1) => {
                compare_walk(walk, ls.first().copied(), rs.first().copied(), &l.elem, path, cmp)?;
            }
            (2.., 2..) => {
                let same = ls.len() == rs.len() && ls.iter().zip(rs).all(|(a, b)| values_equal(a, b));
                if !same {
                    cmp.modified.insert(path);
                }
            }
            (2.., _) => {
                if let Some(r) = rs.first() {
                    compare_walk(walk, None, Some(r), &l.elem, path, cmp)?;
                }
                cmp.removed.insert(path);
            }
            (_, _) => {
                if let Some(lv) = ls.first() {
                    compare_walk(walk, Some(lv), None, &l.elem, path, cmp)?;
                }
                cmp.added.insert(path);
            }
        }
        path.pop();
    }
    Ok(())
}

/// Adds as members the named struct fields that lie on the paths of `set`, as
/// structured-merge-diff's `EnsureNamedFieldsAreMembers`: `{spec.replicas}` also owns `spec`
/// when `spec` is a struct field, but `{metadata.labels.a}` does not own `labels.a`'s parent
/// map keys.
pub(crate) fn ensure_named_fields(set: &FieldSet, ty: &Ty) -> FieldSet {
    named_walk(set, Some(ty), 0)
}

fn named_walk(set: &FieldSet, ty: Option<&Ty>, depth: usize) -> FieldSet {
    let mut out = set.clone();
    if depth > MAX_DEPTH {
        return out;
    }
    let map = ty.and_then(Ty::as_map);
    let list = match ty {
        Some(Ty::List(l) | Ty::Untyped(_, l)) => Some(l.as_ref()),
        _ => None,
    };
    for (pe, sub) in set.children() {
        let child_ty = match pe {
            PathElement::Field(name) => {
                if map.is_some_and(|m| m.is_named(name)) {
                    out.insert_member(pe.clone());
                }
                map.map(|m| m.field_ty(name))
            }
            PathElement::Key(_) => list.map(|l| &l.elem),
            PathElement::Value(_) | PathElement::Index(_) => None,
        };
        out.set_child(pe.clone(), named_walk(sub, child_ty, depth + 1));
    }
    out
}

/// Adjusts a decoded set to the current types, as structured-merge-diff's
/// `ReconcileFieldSetWithSchema` does for fields that became atomic: ownership of anything
/// below an atomic map or list becomes ownership of the whole map or list.
pub(crate) fn reconcile_with_types(set: &FieldSet, ty: &Ty) -> FieldSet {
    reconcile_walk(set, ty, 0)
}

fn reconcile_walk(set: &FieldSet, ty: &Ty, depth: usize) -> FieldSet {
    let mut out = set.clone();
    if depth > MAX_DEPTH {
        return out;
    }
    for (pe, sub) in set.children() {
        let child_ty: Option<&Ty> = match pe {
            PathElement::Field(name) => ty.as_map().map(|m| m.field_ty(name)),
            PathElement::Key(_) | PathElement::Value(_) => match ty {
                Ty::List(l) | Ty::Untyped(_, l) => Some(&l.elem),
                _ => None,
            },
            PathElement::Index(_) => None,
        };
        let Some(child_ty) = child_ty else {
            continue;
        };
        if is_atomic_for(child_ty, sub) {
            out.remove_member_and_children(pe);
            out.insert_member(pe.clone());
        } else {
            out.set_child(pe.clone(), reconcile_walk(sub, child_ty, depth + 1));
        }
    }
    out
}

/// Whether a value of type `ty`, whose owned sub-paths are `sub`, is atomic.
fn is_atomic_for(ty: &Ty, sub: &FieldSet) -> bool {
    let below_list = sub
        .children()
        .keys()
        .chain(sub.members().iter())
        .any(|pe| matches!(pe, PathElement::Key(_) | PathElement::Value(_) | PathElement::Index(_)));
    match ty {
        Ty::Scalar | Ty::Atomic => true,
        Ty::Map(m) => m.atomic,
        Ty::List(l) => l.kind == ListKind::Atomic,
        Ty::Untyped(m, l) => {
            if below_list {
                l.kind == ListKind::Atomic
            } else {
                m.atomic
            }
        }
        Ty::Deduced => below_list,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fieldsv1;
    use crate::typeinfo::TypeInfo;
    use serde_json::json;

    fn types() -> TypeInfo {
        TypeInfo::from_schema(&json!({
            "type": "object",
            "properties": {
                "spec": {"type": "object", "properties": {
                    "replicas": {"type": "integer"},
                    "ports": {"type": "array", "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["port", "protocol"],
                        "items": {"type": "object", "properties": {
                            "port": {"type": "integer"},
                            "protocol": {"type": "string", "default": "TCP"},
                            "name": {"type": "string"}}}},
                    "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                    "args": {"type": "array", "items": {"type": "string"}},
                    "template": {"type": "object", "properties": {"x": {"type": "string"}}}
                }}
            }
        }))
        .unwrap()
    }

    fn root(t: &TypeInfo) -> Ty {
        t.root.clone()
    }

    #[test]
    fn field_set_of_a_config() {
        let t = types();
        let obj = json!({
            "apiVersion": "v1", "kind": "X",
            "metadata": {"name": "a", "labels": {"app": "x"}},
            "spec": {
                "replicas": 1,
                "ports": [{"port": 80, "name": "http"}],
                "tags": ["a", "b"],
                "args": ["x"],
                "template": {},
                "unknown": {"deep": 1}
            }
        });
        let set = field_set(&obj, &root(&t), Duplicates::Reject).unwrap();
        assert_eq!(
            fieldsv1::encode(&set),
            json!({
                "f:apiVersion": {}, "f:kind": {},
                "f:metadata": {"f:name": {}, "f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:replicas": {},
                    "f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}, "f:name": {}}},
                    "f:tags": {"v:\"a\"": {}, "v:\"b\"": {}},
                    "f:args": {},
                    "f:template": {},
                    "f:unknown": {".": {}, "f:deep": {}}
                }
            })
        );
    }

    #[test]
    fn duplicates_are_rejected_in_configs_and_tolerated_in_objects() {
        let t = types();
        let obj = json!({"spec": {"tags": ["a", "a"]}});
        let err = field_set(&obj, &root(&t), Duplicates::Reject).unwrap_err();
        assert_eq!(err.to_string(), r#".spec.tags: duplicate entries for key [="a"]"#);
        let set = field_set(&obj, &root(&t), Duplicates::Allow).unwrap();
        assert!(set.has(&[PathElement::field("spec"), PathElement::field("tags"), PathElement::Value(json!("a"))]));
    }

    #[test]
    fn missing_keys_take_defaults_or_are_an_error() {
        let t = types();
        // `protocol` has a default: the item is keyed by it alone.
        let obj = json!({"spec": {"ports": [{"name": "x"}]}});
        let set = field_set(&obj, &root(&t), Duplicates::Allow).unwrap();
        let key = PathElement::key([("protocol".to_owned(), json!("TCP"))]);
        assert!(set.has(&[PathElement::field("spec"), PathElement::field("ports"), key]));
        let keyed = ListTy { kind: ListKind::Map(vec!["name".to_owned()]), elem: Ty::Deduced };
        let err = item_element(&keyed, &json!({"x": 1}), &[]).unwrap_err();
        assert!(err.message.contains("omits all key fields"), "{err}");
        assert!(item_element(&keyed, &json!(null), &[]).is_err());
        assert!(item_element(&keyed, &json!(3), &[]).is_err());
        for bad in
            [json!({"spec": {"tags": [{"a": 1}]}}), json!({"spec": {"tags": [null]}}), json!({"spec": {"tags": [[1]]}})]
        {
            assert!(field_set(&bad, &root(&t), Duplicates::Allow).is_err(), "{bad}");
        }
    }

    #[test]
    fn compare_reports_added_modified_removed() {
        let t = types();
        let old = json!({"spec": {"replicas": 1, "tags": ["a"], "args": ["x"]}});
        let new = json!({"spec": {"replicas": 2, "tags": ["b"], "args": ["y"], "template": {"x": "1"}}});
        let cmp = compare(&old, &new, &root(&t)).unwrap();
        assert_eq!(fieldsv1::encode(&cmp.modified), json!({"f:spec": {"f:replicas": {}, "f:args": {}}}));
        assert_eq!(
            fieldsv1::encode(&cmp.added),
            json!({"f:spec": {"f:tags": {"v:\"b\"": {}}, "f:template": {".": {}, "f:x": {}}}})
        );
        assert_eq!(fieldsv1::encode(&cmp.removed), json!({"f:spec": {"f:tags": {"v:\"a\"": {}}}}));
        assert!(compare(&old, &old, &root(&t)).unwrap().is_same());
    }

    #[test]
    fn update_comparisons_leave_out_managed_fields_and_agree_otherwise() {
        let t = types();
        let old = json!({
            "metadata": {"name": "w", "managedFields": [{"manager": "m"}], "labels": {"a": "1"}},
            "spec": {"replicas": 1, "tags": ["a", "c"], "template": {"x": "1"}}
        });
        let new = json!({
            "metadata": {"name": "w", "labels": {"a": "2"}},
            "spec": {"replicas": 1, "tags": ["b", "c"], "template": {"x": "1"}}
        });
        let fast = compare_without_managed_fields(&old, &new, &root(&t)).unwrap();
        let mut stripped = old.clone();
        stripped["metadata"].as_object_mut().unwrap().remove("managedFields");
        let full = compare(&stripped, &new, &root(&t)).unwrap();
        for (a, b) in [(&fast.added, &full.added), (&fast.modified, &full.modified), (&fast.removed, &full.removed)] {
            assert_eq!(fieldsv1::encode(a), fieldsv1::encode(b));
        }
        assert_eq!(fieldsv1::encode(&fast.modified), json!({"f:metadata": {"f:labels": {"f:a": {}}}}));
        assert!(compare_without_managed_fields(&old, &old, &root(&t)).unwrap().is_same());
    }

    #[test]
    fn named_fields_and_reconcile() {
        let t = types();
        let set = fieldsv1::decode(&json!({
            "f:metadata": {"f:labels": {"f:a": {}}},
            "f:spec": {"f:args": {"i:0": {}}, "f:template": {"f:x": {}}}
        }))
        .unwrap();
        let named = ensure_named_fields(&set, &root(&t));
        assert_eq!(
            fieldsv1::encode(&named),
            json!({
                "f:metadata": {".": {}, "f:labels": {".": {}, "f:a": {}}},
                "f:spec": {".": {}, "f:args": {".": {}, "i:0": {}}, "f:template": {".": {}, "f:x": {}}}
            })
        );
        let reconciled = reconcile_with_types(&set, &root(&t));
        assert_eq!(
            fieldsv1::encode(&reconciled),
            json!({
                "f:metadata": {"f:labels": {"f:a": {}}},
                "f:spec": {"f:args": {}, "f:template": {"f:x": {}}}
            })
        );
    }

    #[test]
    fn deep_objects_are_rejected() {
        let mut v = json!(1);
        for _ in 0..(MAX_DEPTH + 5) {
            v = json!({ "a": v });
        }
        let err = field_set(&v, &Ty::Deduced, Duplicates::Allow).unwrap_err();
        assert!(err.message.contains("deeper"));
        assert!(compare(&v, &v, &Ty::Deduced).is_err());
    }
}
