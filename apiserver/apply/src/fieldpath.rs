//! Field paths and sets of field paths: the ownership tries behind `managedFields`.
//!
//! A [`FieldSet`] is a trie of [`PathElement`]s. At each level it holds *members* (paths that
//! end here: the manager owns that field, list item or value) and *children* (sub-tries for
//! paths that continue). A path can be both a member and have children: a list item owned as
//! a whole whose fields are also owned, encoded in `fieldsV1` as `".": {}`.
//!
//! The set algebra mirrors structured-merge-diff's `fieldpath.Set`, including its
//! non-recursive [`FieldSet::difference`] (removing `a` leaves `a.b` in place) next to
//! [`FieldSet::recursive_difference`].

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::Value;

/// One step of a field path.
#[derive(Debug, Clone)]
pub enum PathElement {
    /// A field of a map or struct: `f:<name>` in `fieldsV1`, `.name` when printed.
    Field(String),
    /// An item of an `x-kubernetes-list-type: map` list, by its key fields sorted by name:
    /// `k:{"port":80,"protocol":"TCP"}` in `fieldsV1`, `[port=80,protocol="TCP"]` when printed.
    Key(Vec<(String, Value)>),
    /// An item of an `x-kubernetes-list-type: set` list, by its value: `v:"a"` in `fieldsV1`,
    /// `[="a"]` when printed.
    Value(Value),
    /// An item of a list by position: `i:3`. Read from `fieldsV1` for compatibility; never
    /// produced (atomic lists are owned whole).
    Index(i64),
}

impl PathElement {
    /// A [`PathElement::Field`].
    pub fn field(name: impl Into<String>) -> Self {
        Self::Field(name.into())
    }

    /// A [`PathElement::Key`], sorting the key fields by name.
    pub fn key(fields: impl IntoIterator<Item = (String, Value)>) -> Self {
        let mut fields: Vec<(String, Value)> = fields.into_iter().collect();
        fields.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| compare_values(&a.1, &b.1)));
        Self::Key(fields)
    }

    fn rank(&self) -> u8 {
        match self {
            Self::Field(_) => 0,
            Self::Key(_) => 1,
            Self::Value(_) => 2,
            Self::Index(_) => 3,
        }
    }
}

impl Ord for PathElement {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Self::Field(a), Self::Field(b)) => a.cmp(b),
            (Self::Key(a), Self::Key(b)) => {
                for ((an, av), (bn, bv)) in a.iter().zip(b.iter()) {
                    let c = an.cmp(bn).then_with(|| compare_values(av, bv));
                    if c != Ordering::Equal {
                        return c;
                    }
                }
                a.len().cmp(&b.len())
            }
            (Self::Value(a), Self::Value(b)) => compare_values(a, b),
            (Self::Index(a), Self::Index(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for PathElement {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for PathElement {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for PathElement {}

impl fmt::Display for PathElement {
    /// The apiserver's rendering (structured-merge-diff `PathElement.String`), used in
    /// conflict messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Field(name) => write!(f, ".{name}"),
            Self::Key(fields) => {
                f.write_str("[")?;
                for (i, (name, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{name}={}", value_to_string(value))?;
                }
                f.write_str("]")
            }
            Self::Value(value) => write!(f, "[={}]", value_to_string(value)),
            Self::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// A field path from the root of an object.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Path(pub Vec<PathElement>);

impl Path {
    /// Builds a path of plain fields: `Path::fields(&["spec", "replicas"])`.
    pub fn fields(names: &[&str]) -> Self {
        Self(names.iter().map(|n| PathElement::field(*n)).collect())
    }

    /// The elements of the path.
    pub fn elements(&self) -> &[PathElement] {
        &self.0
    }
}

impl fmt::Display for Path {
    /// `.spec.ports[port=80,protocol="TCP"].name`, as the apiserver prints paths.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for pe in &self.0 {
            write!(f, "{pe}")?;
        }
        Ok(())
    }
}

/// A set of field paths, stored as a trie.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    members: BTreeSet<PathElement>,
    /// Never holds an empty set.
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// A set holding the given paths.
    pub fn from_paths<'a>(paths: impl IntoIterator<Item = &'a [PathElement]>) -> Self {
        let mut set = Self::new();
        for p in paths {
            set.insert(p);
        }
        set
    }

    /// Whether the set holds no path.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    /// Adds a path. Its parents are not added. The empty path (the whole object) is never
    /// tracked and is ignored.
    pub fn insert(&mut self, path: &[PathElement]) {
        let Some((last, parents)) = path.split_last() else {
            return;
        };
        let mut node = self;
        for pe in parents {
            node = node.children.entry(pe.clone()).or_default();
        }
        node.members.insert(last.clone());
    }

    /// Whether the set holds exactly this path (not merely a path below it).
    pub fn has(&self, path: &[PathElement]) -> bool {
        let Some((last, parents)) = path.split_last() else {
            return false;
        };
        let mut node = self;
        for pe in parents {
            match node.children.get(pe) {
                Some(child) => node = child,
                None => return false,
            }
        }
        node.members.contains(last)
    }

    /// The members at this level: paths of length one.
    pub(crate) fn members(&self) -> &BTreeSet<PathElement> {
        &self.members
    }

    /// The sub-tries at this level.
    pub(crate) fn children(&self) -> &BTreeMap<PathElement, FieldSet> {
        &self.children
    }

    /// The paths continuing below `pe`, without `pe`.
    pub fn with_prefix(&self, pe: &PathElement) -> Option<&FieldSet> {
        self.children.get(pe)
    }

    /// Whether `pe` is a member at this level.
    pub(crate) fn has_member(&self, pe: &PathElement) -> bool {
        self.members.contains(pe)
    }

    /// Adds `pe` as a member at this level.
    pub(crate) fn insert_member(&mut self, pe: PathElement) {
        self.members.insert(pe);
    }

    /// Sets the sub-trie below `pe` (dropped when empty).
    pub(crate) fn set_child(&mut self, pe: PathElement, child: FieldSet) {
        if child.is_empty() {
            self.children.remove(&pe);
        } else {
            self.children.insert(pe, child);
        }
    }

    /// Removes `pe` as a member and its sub-trie.
    pub(crate) fn remove_member_and_children(&mut self, pe: &PathElement) {
        self.members.remove(pe);
        self.children.remove(pe);
    }

    /// Paths in either set.
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.union_in_place(other);
        out
    }

    /// Adds every path of `other`.
    pub fn union_in_place(&mut self, other: &FieldSet) {
        self.members.extend(other.members.iter().cloned());
        for (pe, sub) in &other.children {
            match self.children.get_mut(pe) {
                Some(mine) => mine.union_in_place(sub),
                None => {
                    self.children.insert(pe.clone(), sub.clone());
                }
            }
        }
    }

    /// Paths in both sets.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.intersection(&other.members).cloned().collect();
        let mut children = BTreeMap::new();
        for (pe, sub) in &self.children {
            if let Some(theirs) = other.children.get(pe) {
                let both = sub.intersection(theirs);
                if !both.is_empty() {
                    children.insert(pe.clone(), both);
                }
            }
        }
        FieldSet { members, children }
    }

    /// Paths of `self` not in `other`. Not recursive: removing a parent path keeps the paths
    /// below it (`{a.b} - {a} = {a.b}`), as structured-merge-diff's `Difference`.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.difference(&other.members).cloned().collect();
        let mut children = BTreeMap::new();
        for (pe, sub) in &self.children {
            let rest = match other.children.get(pe) {
                Some(theirs) => sub.difference(theirs),
                None => sub.clone(),
            };
            if !rest.is_empty() {
                children.insert(pe.clone(), rest);
            }
        }
        FieldSet { members, children }
    }

    /// Paths of `self` that neither are in `other` nor lie below a member of `other`
    /// (`{a.b} - {a} = {}`).
    pub fn recursive_difference(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.difference(&other.members).cloned().collect();
        let mut children = BTreeMap::new();
        for (pe, sub) in &self.children {
            if other.members.contains(pe) {
                continue;
            }
            let rest = match other.children.get(pe) {
                Some(theirs) => sub.recursive_difference(theirs),
                None => sub.clone(),
            };
            if !rest.is_empty() {
                children.insert(pe.clone(), rest);
            }
        }
        FieldSet { members, children }
    }

    /// Only the members that have no children (the leaves of the trie).
    pub fn leaves(&self) -> FieldSet {
        let members = self.members.iter().filter(|pe| !self.children.contains_key(*pe)).cloned().collect();
        let mut children = BTreeMap::new();
        for (pe, sub) in &self.children {
            let leaves = sub.leaves();
            if !leaves.is_empty() {
                children.insert(pe.clone(), leaves);
            }
        }
        FieldSet { members, children }
    }

    /// Every path, in structured-merge-diff's iteration order: at each level the members
    /// first, then the paths below each child, both sorted.
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        let mut prefix = Vec::new();
        self.collect_paths(&mut prefix, &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<Path>) {
        for pe in &self.members {
            let mut p = prefix.clone();
            p.push(pe.clone());
            out.push(Path(p));
        }
        for (pe, sub) in &self.children {
            prefix.push(pe.clone());
            sub.collect_paths(prefix, out);
            prefix.pop();
        }
    }

    /// The number of paths in the set.
    pub fn len(&self) -> usize {
        self.members.len() + self.children.values().map(FieldSet::len).sum::<usize>()
    }
}

/// A total order on JSON values, close to structured-merge-diff's `value.Compare`: numbers
/// (integers and floats compared numerically), then strings, booleans, lists, maps, null.
pub(crate) fn compare_values(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Number(_) => 0,
            Value::String(_) => 1,
            Value::Bool(_) => 2,
            Value::Array(_) => 3,
            Value::Object(_) => 4,
            Value::Null => 5,
        }
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                x.cmp(&y)
            } else if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                x.cmp(&y)
            } else {
                let x = x.as_f64().unwrap_or(0.0);
                let y = y.as_f64().unwrap_or(0.0);
                x.partial_cmp(&y).unwrap_or(Ordering::Equal)
            }
        }
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (i, j) in x.iter().zip(y.iter()) {
                let c = compare_values(i, j);
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            let mut xs: Vec<_> = x.iter().collect();
            let mut ys: Vec<_> = y.iter().collect();
            xs.sort_by(|p, q| p.0.cmp(q.0));
            ys.sort_by(|p, q| p.0.cmp(q.0));
            for ((xk, xv), (yk, yv)) in xs.iter().zip(ys.iter()) {
                let c = xk.cmp(yk).then_with(|| compare_values(xv, yv));
                if c != Ordering::Equal {
                    return c;
                }
            }
            xs.len().cmp(&ys.len())
        }
        (Value::Null, Value::Null) => Ordering::Equal,
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Whether two JSON values are equal, comparing numbers numerically (`1 == 1.0`).
pub(crate) fn values_equal(a: &Value, b: &Value) -> bool {
    compare_values(a, b) == Ordering::Equal
}

/// Renders a value the way structured-merge-diff's `value.ToString` does (Go `%q` for
/// strings, `%v` for numbers).
pub(crate) fn value_to_string(v: &Value) -> String {
    match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number_to_string(n),
        Value::String(s) => go_quote(s),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(value_to_string).collect();
            format!("[{}]", parts.join(","))
        }
        Value::Object(map) => {
            map.iter().map(|(k, v)| format!("{k}={}", value_to_string(v))).collect::<Vec<_>>().join("")
        }
    }
}

fn number_to_string(n: &serde_json::Number) -> String {
    if n.is_i64() || n.is_u64() {
        return n.to_string();
    }
    match n.as_f64() {
        Some(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e21 => format!("{f:.0}"),
        Some(f) => format!("{f}"),
        None => n.to_string(),
    }
}

/// Quotes a string as Go's `%q` (`strconv.Quote`) does.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\u{0b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(name: &str) -> PathElement {
        PathElement::field(name)
    }

    #[test]
    fn insert_and_has() {
        let mut s = FieldSet::new();
        s.insert(&[f("spec"), f("replicas")]);
        assert!(s.has(&[f("spec"), f("replicas")]));
        assert!(!s.has(&[f("spec")]));
        assert!(!s.has(&[]));
        s.insert(&[]);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn difference_is_not_recursive_but_recursive_difference_is() {
        let ab = FieldSet::from_paths([&[f("a"), f("b")][..]]);
        let a = FieldSet::from_paths([&[f("a")][..]]);
        assert_eq!(ab.difference(&a), ab);
        assert!(ab.recursive_difference(&a).is_empty());
        assert!(a.difference(&ab).has(&[f("a")]));
    }

    #[test]
    fn union_intersection_leaves() {
        let x = FieldSet::from_paths([&[f("a")][..], &[f("a"), f("b")][..]]);
        let y = FieldSet::from_paths([&[f("a"), f("b")][..], &[f("c")][..]]);
        let u = x.union(&y);
        assert_eq!(u.len(), 3);
        let i = x.intersection(&y);
        assert_eq!(i.paths(), vec![Path(vec![f("a"), f("b")])]);
        let l = u.leaves();
        assert!(!l.has(&[f("a")]));
        assert!(l.has(&[f("a"), f("b")]));
    }

    #[test]
    fn path_display_matches_apiserver() {
        let p = Path(vec![
            f("spec"),
            f("ports"),
            PathElement::key([("protocol".to_owned(), json!("TCP")), ("port".to_owned(), json!(80))]),
            f("name"),
        ]);
        assert_eq!(p.to_string(), r#".spec.ports[port=80,protocol="TCP"].name"#);
        let v = Path(vec![f("metadata"), f("finalizers"), PathElement::Value(json!("a\"b"))]);
        assert_eq!(v.to_string(), r#".metadata.finalizers[="a\"b"]"#);
        assert_eq!(Path(vec![f("x"), PathElement::Index(3)]).to_string(), ".x[3]");
    }

    #[test]
    fn numbers_compare_numerically() {
        assert!(values_equal(&json!(1), &json!(1.0)));
        assert_eq!(compare_values(&json!(2), &json!("a")), Ordering::Less);
        assert_eq!(value_to_string(&json!(2.0)), "2");
        assert_eq!(value_to_string(&json!(2.5)), "2.5");
    }

    #[test]
    fn iteration_order_is_members_then_children() {
        let s = FieldSet::from_paths([
            &[f("spec"), f("template"), f("x")][..],
            &[f("spec"), f("replicas")][..],
            &[f("metadata"), f("labels"), f("app")][..],
        ]);
        let paths: Vec<String> = s.paths().iter().map(ToString::to_string).collect();
        assert_eq!(paths, vec![".metadata.labels.app", ".spec.replicas", ".spec.template.x"]);
    }
}
