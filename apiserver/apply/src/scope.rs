//! Which fields a write may change and track: the status-subresource split, and the metadata
//! fields that never appear in `managedFields`.

use serde_json::{Map, Value};

use crate::fieldpath::{FieldSet, PathElement};
use crate::typed::Comparison;
use crate::typeinfo::TypeInfo;

/// The part of the object a write is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The whole object (kinds without a status subresource, other subresources).
    Whole,
    /// The main resource of a kind with a status subresource: `status` is neither changed
    /// nor tracked (the apiserver's reset fields for the main resource).
    NoStatus,
    /// The `status` subresource: only `status` is changed and tracked.
    OnlyStatus,
}

impl Scope {
    pub(crate) fn of(types: &TypeInfo, subresource: Option<&str>) -> Scope {
        match subresource {
            Some("status") => Scope::OnlyStatus,
            Some(_) => Scope::Whole,
            None if types.status_subresource => Scope::NoStatus,
            None => Scope::Whole,
        }
    }

    /// Keeps the paths this write may track.
    pub(crate) fn filter(self, set: FieldSet) -> FieldSet {
        let status = PathElement::field("status");
        match self {
            Scope::Whole => set,
            Scope::NoStatus => {
                let mut set = set;
                set.remove_member_and_children(&status);
                set
            }
            Scope::OnlyStatus => {
                let mut out = FieldSet::new();
                if set.has_member(&status) {
                    out.insert_member(status.clone());
                }
                if let Some(sub) = set.with_prefix(&status) {
                    out.set_child(status, sub.clone());
                }
                out
            }
        }
    }

    pub(crate) fn filter_comparison(self, cmp: Comparison) -> Comparison {
        cmp.map(|s| self.filter(s))
    }

    /// The part of an applied configuration this write may change.
    pub(crate) fn restrict_config(self, config: &Value) -> Value {
        let Value::Object(obj) = config else {
            return config.clone();
        };
        match self {
            Scope::Whole => config.clone(),
            Scope::NoStatus => {
                let mut obj = obj.clone();
                obj.remove("status");
                Value::Object(obj)
            }
            Scope::OnlyStatus => {
                let mut out = Map::new();
                for key in ["apiVersion", "kind", "status"] {
                    if let Some(v) = obj.get(key) {
                        out.insert(key.to_owned(), v.clone());
                    }
                }
                Value::Object(out)
            }
        }
    }

    /// The object a write of `new` over `live` results in, within this scope: for the main
    /// resource of a kind with a status subresource the live `status` is kept; for `/status`
    /// everything but `status` is kept from the live object.
    pub(crate) fn restrict_update(self, live: &Value, new: &Value) -> Value {
        let (Value::Object(live_obj), Value::Object(new_obj)) = (live, new) else {
            return new.clone();
        };
        let take_status = |base: &Map<String, Value>, from: &Map<String, Value>| {
            let mut out = base.clone();
            match from.get("status") {
                Some(s) => out.insert("status".to_owned(), s.clone()),
                None => out.remove("status"),
            };
            Value::Object(out)
        };
        match self {
            Scope::Whole => new.clone(),
            Scope::NoStatus => take_status(new_obj, live_obj),
            Scope::OnlyStatus => take_status(live_obj, new_obj),
        }
    }
}

/// The fields that never appear in `managedFields` (the apiserver's `stripMetaManager`):
/// removed as members only, so `metadata` loses its `".": {}` but keeps its children.
pub(crate) fn strip_meta(set: &FieldSet) -> FieldSet {
    let mut strip = FieldSet::new();
    for top in ["apiVersion", "kind", "metadata"] {
        strip.insert(&[PathElement::field(top)]);
    }
    for meta in [
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "managedFields",
        "resourceVersion",
    ] {
        strip.insert(&[PathElement::field("metadata"), PathElement::field(meta)]);
    }
    set.difference(&strip)
}
