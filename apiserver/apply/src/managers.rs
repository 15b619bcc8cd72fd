//! `metadata.managedFields`: decoding, encoding, the manager identity of an entry, and the
//! cap on the number of update entries.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::fieldpath::FieldSet;
use crate::fieldsv1::{self, FieldsV1Error};
use crate::time::unix_seconds;
use crate::typed::reconcile_with_types;
use crate::typeinfo::Ty;

/// The apiserver keeps at most this many `Update` entries; older ones are merged into
/// `ancient-changes` entries.
pub const MAX_UPDATE_MANAGERS: usize = 10;

/// The manager name older `Update` entries are merged into.
pub const ANCIENT_CHANGES: &str = "ancient-changes";

/// The operation of a `managedFields` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// Server-side apply.
    Apply,
    /// Any other write: create, update, patch.
    Update,
}

impl Operation {
    /// `"Apply"` or `"Update"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// What identifies a `managedFields` entry: the manager name, the operation, the API version
/// for `Update` entries (empty for `Apply`: an applier keeps one entry across versions) and
/// the subresource.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ManagerId {
    pub(crate) name: String,
    pub(crate) operation: Operation,
    pub(crate) api_version: String,
    pub(crate) subresource: String,
}

impl ManagerId {
    pub(crate) fn new(name: &str, operation: Operation, api_version: &str, sub: &str) -> Self {
        ManagerId {
            name: name.to_owned(),
            operation,
            api_version: match operation {
                Operation::Apply => String::new(),
                Operation::Update => api_version.to_owned(),
            },
            subresource: sub.to_owned(),
        }
    }

    /// The apiserver's identifier string (the JSON of the entry without fields and time),
    /// used to order managers in conflict messages and when capping.
    pub(crate) fn identifier(&self) -> String {
        let mut s =
            format!("{{\"manager\":{},\"operation\":\"{}\"", Value::String(self.name.clone()), self.operation.as_str());
        if !self.api_version.is_empty() {
            s.push_str(&format!(",\"apiVersion\":{}", Value::String(self.api_version.clone())));
        }
        if !self.subresource.is_empty() {
            s.push_str(&format!(",\"subresource\":{}", Value::String(self.subresource.clone())));
        }
        s.push('}');
        s
    }
}

/// The fields one manager owns.
#[derive(Debug, Clone)]
pub(crate) struct Owned {
    pub(crate) set: FieldSet,
    /// The API version the set is expressed in.
    pub(crate) api_version: String,
    /// RFC 3339 time of the last change by this manager, as stored.
    pub(crate) time: Option<String>,
}

/// All the `managedFields` entries of an object.
#[derive(Debug, Clone, Default)]
pub(crate) struct Managed {
    pub(crate) entries: BTreeMap<ManagerId, Owned>,
}

/// Why `metadata.managedFields` could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManagedFieldsError {
    /// `managedFields` is not a list of objects.
    #[error("metadata.managedFields must be a list of objects")]
    NotAList,
    /// An entry has an operation other than `Apply` or `Update`.
    #[error("managed fields entry {0}: operation must be `Apply` or `Update`")]
    Operation(usize),
    /// An entry has no API version.
    #[error("managed fields entry {0}: apiVersion must not be empty")]
    ApiVersion(usize),
    /// An entry has a missing or unknown `fieldsType`.
    #[error("managed fields entry {index}: invalid fieldsType {fields_type:?}")]
    FieldsType {
        /// Position of the entry.
        index: usize,
        /// What was found (empty when missing).
        fields_type: String,
    },
    /// An entry's `fieldsV1` cannot be decoded.
    #[error("managed fields entry {index}: {source}")]
    Fields {
        /// Position of the entry.
        index: usize,
        /// The decoding error.
        source: FieldsV1Error,
    },
}

impl Managed {
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Decodes `metadata.managedFields` (absent or null: no entries), adjusting each set to
    /// the current types (ownership below what became atomic is ownership of the whole).
    pub(crate) fn decode(fields: Option<&Value>, ty: &Ty) -> Result<Managed, ManagedFieldsError> {
        let mut managed = Managed::default();
        let entries = match fields {
            None | Some(Value::Null) => return Ok(managed),
            Some(Value::Array(entries)) => entries,
            Some(_) => return Err(ManagedFieldsError::NotAList),
        };
        for (index, entry) in entries.iter().enumerate() {
            let Value::Object(entry) = entry else {
                return Err(ManagedFieldsError::NotAList);
            };
            let text = |key: &str| entry.get(key).and_then(Value::as_str).unwrap_or("");
            let operation = match text("operation") {
                "Apply" => Operation::Apply,
                "Update" => Operation::Update,
                _ => return Err(ManagedFieldsError::Operation(index)),
            };
            let api_version = text("apiVersion");
            if api_version.is_empty() {
                return Err(ManagedFieldsError::ApiVersion(index));
            }
            if text("fieldsType") != "FieldsV1" {
                return Err(ManagedFieldsError::FieldsType { index, fields_type: text("fieldsType").to_owned() });
            }
            let set = match entry.get("fieldsV1") {
                None | Some(Value::Null) => FieldSet::new(),
                Some(f) => fieldsv1::decode(f).map_err(|source| ManagedFieldsError::Fields { index, source })?,
            };
            let id = ManagerId::new(text("manager"), operation, api_version, text("subresource"));
            managed.entries.insert(
                id,
                Owned {
                    set: reconcile_with_types(&set, ty),
                    api_version: api_version.to_owned(),
                    time: entry.get("time").and_then(Value::as_str).map(str::to_owned),
                },
            );
        }
        Ok(managed)
    }

    /// Encodes the entries as the apiserver does, sorted by operation (`Apply` first), time,
    /// manager, API version and subresource. `None` when there is no entry (the apiserver
    /// then leaves `managedFields` out).
    pub(crate) fn encode(&self) -> Option<Value> {
        if self.entries.is_empty() {
            return None;
        }
        let mut sorted: Vec<(&ManagerId, &Owned)> = self.entries.iter().collect();
        sorted.sort_by(|(a, ao), (b, bo)| {
            a.operation
                .cmp(&b.operation)
                .then_with(|| seconds(ao).cmp(&seconds(bo)))
                .then_with(|| a.name.cmp(&b.name))
                .then_with(|| ao.api_version.cmp(&bo.api_version))
                .then_with(|| a.subresource.cmp(&b.subresource))
        });
        let entries = sorted
            .into_iter()
            .map(|(id, owned)| {
                let mut e = Map::new();
                e.insert("manager".to_owned(), Value::String(id.name.clone()));
                e.insert("operation".to_owned(), Value::String(id.operation.as_str().to_owned()));
                e.insert("apiVersion".to_owned(), Value::String(owned.api_version.clone()));
                if let Some(time) = &owned.time {
                    e.insert("time".to_owned(), Value::String(time.clone()));
                }
                e.insert("fieldsType".to_owned(), Value::String("FieldsV1".to_owned()));
                e.insert("fieldsV1".to_owned(), fieldsv1::encode(&owned.set));
                if !id.subresource.is_empty() {
                    e.insert("subresource".to_owned(), Value::String(id.subresource.clone()));
                }
                Value::Object(e)
            })
            .collect();
        Some(Value::Array(entries))
    }

    /// Drops the entries that own nothing.
    pub(crate) fn drop_empty(&mut self) {
        self.entries.retain(|_, owned| !owned.set.is_empty());
    }

    /// The union of every entry's set.
    pub(crate) fn all_owned(&self) -> FieldSet {
        let mut all = FieldSet::new();
        for owned in self.entries.values() {
            all.union_in_place(&owned.set);
        }
        all
    }

    /// Keeps at most `max` `Update` entries by merging the oldest ones, per API version, into
    /// an `ancient-changes` entry, as the apiserver's `capManagersManager`.
    pub(crate) fn cap_update_managers(&mut self, max: usize) {
        let mut updaters: Vec<(ManagerId, i64)> = self
            .entries
            .iter()
            .filter(|(id, _)| id.operation == Operation::Update)
            .map(|(id, owned)| (id.clone(), seconds(owned)))
            .collect();
        if updaters.len() <= max {
            return;
        }
        updaters.sort_by(|(a, at), (b, bt)| at.cmp(bt).then_with(|| a.identifier().cmp(&b.identifier())));
        let mut length = updaters.len();
        let mut first_of_version: BTreeMap<String, ManagerId> = BTreeMap::new();
        for (id, _) in updaters {
            if length <= max {
                break;
            }
            let Some(owned) = self.entries.get(&id).cloned() else {
                continue;
            };
            let bucket = ManagerId::new(ANCIENT_CHANGES, Operation::Update, &owned.api_version, "");
            if id == bucket {
                // Merging the bucket into itself would lose it.
                first_of_version.entry(owned.api_version.clone()).or_insert(id);
                continue;
            }
            match first_of_version.get(&owned.api_version) {
                Some(first) => {
                    if !self.entries.contains_key(&bucket)
                        && let Some(first_owned) = self.entries.remove(first)
                    {
                        self.entries.insert(bucket.clone(), first_owned);
                    }
                    if let Some(b) = self.entries.get_mut(&bucket) {
                        b.set.union_in_place(&owned.set);
                        b.api_version = owned.api_version.clone();
                        // The merged entry is the more recent one.
                        b.time = owned.time.clone();
                    }
                    self.entries.remove(&id);
                    length -= 1;
                }
                None => {
                    first_of_version.insert(owned.api_version.clone(), id);
                }
            }
        }
    }
}

fn seconds(owned: &Owned) -> i64 {
    owned.time.as_deref().and_then(unix_seconds).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decode_encode_round_trip_and_sorting() {
        let fields = json!([
            {"manager": "b", "operation": "Update", "apiVersion": "v1", "time": "2024-01-01T00:00:02Z",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:b": {}}}},
            {"manager": "a", "operation": "Update", "apiVersion": "v1", "time": "2024-01-01T00:00:01Z",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:a": {}}}},
            {"manager": "z", "operation": "Apply", "apiVersion": "v1", "time": "2024-01-01T00:00:09Z",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:z": {}}}, "subresource": "status"}
        ]);
        let managed = Managed::decode(Some(&fields), &Ty::Deduced).unwrap();
        let encoded = managed.encode().unwrap();
        let names: Vec<&str> = encoded.as_array().unwrap().iter().map(|e| e["manager"].as_str().unwrap()).collect();
        assert_eq!(names, ["z", "a", "b"]);
        assert_eq!(encoded[0], fields[2]);
        assert_eq!(encoded[1], fields[1]);
    }

    #[test]
    fn decode_rejects_bad_entries() {
        for bad in [
            json!({}),
            json!([{"manager": "a", "operation": "Patch", "apiVersion": "v1", "fieldsType": "FieldsV1"}]),
            json!([{"manager": "a", "operation": "Update", "fieldsType": "FieldsV1"}]),
            json!([{"manager": "a", "operation": "Update", "apiVersion": "v1"}]),
            json!([{"manager": "a", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV2"}]),
            json!([{"manager": "a", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:a": 3}}]),
        ] {
            assert!(Managed::decode(Some(&bad), &Ty::Deduced).is_err(), "{bad}");
        }
        assert!(Managed::decode(None, &Ty::Deduced).unwrap().is_empty());
    }

    #[test]
    fn identifiers_match_the_apiserver() {
        let id = ManagerId::new("kubectl", Operation::Update, "v1", "");
        assert_eq!(id.identifier(), r#"{"manager":"kubectl","operation":"Update","apiVersion":"v1"}"#);
        let id = ManagerId::new("ctl", Operation::Apply, "v1", "status");
        assert_eq!(id.identifier(), r#"{"manager":"ctl","operation":"Apply","subresource":"status"}"#);
    }
}
