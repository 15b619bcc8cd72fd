//! The `FieldsV1` encoding of a [`FieldSet`], as stored in `metadata.managedFields[].fieldsV1`.
//!
//! Each path element is a JSON object key: `f:<field>`, `k:<JSON of the key fields>` (sorted by
//! name, compact), `v:<JSON value>` or `i:<index>`. A member without children is `{}`; a member
//! that also has children carries `".": {}` next to them; a key with children only is not a
//! member itself. Unknown element prefixes are skipped when decoding, as the apiserver does.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use crate::MAX_DEPTH;
use crate::fieldpath::{FieldSet, PathElement};

/// Why a `fieldsV1` document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldsV1Error {
    /// The document, or one of its nested values, is not a JSON object.
    #[error("fieldsV1: expected an object at {0:?}")]
    NotAnObject(String),
    /// A key could not be parsed as a path element.
    #[error("fieldsV1: invalid path element {key:?}: {reason}")]
    InvalidElement {
        /// The offending key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The document nests deeper than [`MAX_DEPTH`].
    #[error("fieldsV1: nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

/// Encodes a set as a `fieldsV1` JSON object.
pub fn encode(set: &FieldSet) -> Value {
    Value::Object(encode_level(set))
}

fn encode_level(set: &FieldSet) -> Map<String, Value> {
    let mut out = Map::new();
    let mut members = set.members().iter().peekable();
    let mut children = set.children().iter().peekable();
    loop {
        let take_member = match (members.peek(), children.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(m), Some((c, _))) => (*m).cmp(*c),
        };
        match take_member {
            Ordering::Less => {
                if let Some(m) = members.next() {
                    out.insert(serialize_element(m), Value::Object(Map::new()));
                }
            }
            Ordering::Equal => {
                members.next();
                if let Some((c, sub)) = children.next() {
                    let mut inner = Map::new();
                    inner.insert(".".to_owned(), Value::Object(Map::new()));
                    inner.extend(encode_level(sub));
                    out.insert(serialize_element(c), Value::Object(inner));
                }
            }
            Ordering::Greater => {
                if let Some((c, sub)) = children.next() {
                    out.insert(serialize_element(c), Value::Object(encode_level(sub)));
                }
            }
        }
    }
    out
}

/// Decodes a `fieldsV1` JSON object.
pub fn decode(fields: &Value) -> Result<FieldSet, FieldsV1Error> {
    let (set, _) = decode_level(fields, 0, "")?;
    Ok(set)
}

/// Returns the sub-trie described by `v` and whether `v` also makes its own key a member.
fn decode_level(v: &Value, depth: usize, at: &str) -> Result<(FieldSet, bool), FieldsV1Error> {
    if depth > MAX_DEPTH {
        return Err(FieldsV1Error::TooDeep);
    }
    let Value::Object(map) = v else {
        return Err(FieldsV1Error::NotAnObject(at.to_owned()));
    };
    let mut set = FieldSet::new();
    let mut is_member = false;
    for (key, child) in map {
        if key == "." {
            is_member = true;
            continue;
        }
        let Some(pe) = parse_element(key)? else {
            continue;
        };
        let (grandchildren, child_is_member) = decode_level(child, depth + 1, key)?;
        if child_is_member {
            set.insert_member(pe.clone());
        }
        set.set_child(pe, grandchildren);
    }
    if set.is_empty() {
        is_member = true;
    }
    Ok((set, is_member))
}

/// Serializes one path element as a `fieldsV1` key.
pub fn serialize_element(pe: &PathElement) -> String {
    match pe {
        PathElement::Field(name) => format!("f:{name}"),
        PathElement::Key(fields) => {
            let mut obj = String::from("{");
            for (i, (name, value)) in fields.iter().enumerate() {
                if i > 0 {
                    obj.push(',');
                }
                obj.push_str(&Value::String(name.clone()).to_string());
                obj.push(':');
                obj.push_str(&value.to_string());
            }
            obj.push('}');
            format!("k:{obj}")
        }
        PathElement::Value(value) => format!("v:{value}"),
        PathElement::Index(i) => format!("i:{i}"),
    }
}

/// Parses a `fieldsV1` key. `Ok(None)` for an unknown element type, which is ignored.
pub fn parse_element(key: &str) -> Result<Option<PathElement>, FieldsV1Error> {
    let invalid = |reason: &str| FieldsV1Error::InvalidElement { key: key.to_owned(), reason: reason.to_owned() };
    let mut chars = key.char_indices();
    let (Some((_, kind)), Some((sep_at, sep))) = (chars.next(), chars.next()) else {
        return Err(invalid("key must be at least 2 characters long"));
    };
    if sep != ':' {
        return Err(invalid("missing colon"));
    }
    let rest = &key[sep_at + 1..];
    match kind {
        'f' => Ok(Some(PathElement::Field(rest.to_owned()))),
        'k' => {
            let value: Value = serde_json::from_str(rest).map_err(|e| invalid(&format!("bad key JSON: {e}")))?;
            let Value::Object(fields) = value else {
                return Err(invalid("a k: element must hold a JSON object"));
            };
            Ok(Some(PathElement::key(fields)))
        }
        'v' => {
            let value: Value = serde_json::from_str(rest).map_err(|e| invalid(&format!("bad value JSON: {e}")))?;
            Ok(Some(PathElement::Value(value)))
        }
        'i' => {
            let index: i64 = rest.parse().map_err(|e| invalid(&format!("bad index: {e}")))?;
            Ok(Some(PathElement::Index(index)))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fieldpath::Path;
    use serde_json::json;

    fn f(name: &str) -> PathElement {
        PathElement::field(name)
    }

    #[test]
    fn round_trip_with_keys_values_and_dots() {
        let doc = json!({
            "f:metadata": {"f:labels": {"f:app": {}}, "f:finalizers": {"v:\"a\"": {}, "v:\"b\"": {}}},
            "f:spec": {
                "f:ports": {
                    "k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}, "f:protocol": {}},
                    "k:{\"port\":443,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}, "f:protocol": {}}
                },
                "f:selector": {},
                "f:template": {".": {}, "f:x": {}}
            }
        });
        let set = decode(&doc).unwrap();
        let key80 = PathElement::key([("protocol".to_owned(), json!("TCP")), ("port".to_owned(), json!(80))]);
        assert!(set.has(&[f("spec"), f("ports"), key80.clone()]));
        assert!(set.has(&[f("spec"), f("ports"), key80, f("port")]));
        assert!(set.has(&[f("spec"), f("template")]));
        assert!(!set.has(&[f("spec")]));
        assert!(set.has(&[f("metadata"), f("finalizers"), PathElement::Value(json!("b"))]));
        assert_eq!(encode(&set), doc);
        assert_eq!(decode(&encode(&set)).unwrap(), set);
    }

    #[test]
    fn key_json_is_sorted_and_compact() {
        let pe = PathElement::key([("protocol".to_owned(), json!("TCP")), ("port".to_owned(), json!(80))]);
        assert_eq!(serialize_element(&pe), r#"k:{"port":80,"protocol":"TCP"}"#);
        assert_eq!(serialize_element(&PathElement::Value(json!(3))), "v:3");
        assert_eq!(serialize_element(&PathElement::Index(2)), "i:2");
        assert_eq!(parse_element("i:2").unwrap(), Some(PathElement::Index(2)));
    }

    #[test]
    fn keys_are_parsed_in_any_order() {
        let a = parse_element(r#"k:{"protocol":"TCP","port":80}"#).unwrap();
        let b = parse_element(r#"k:{"port":80,"protocol":"TCP"}"#).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn unknown_prefixes_are_ignored_and_garbage_rejected() {
        let set = decode(&json!({"x:foo": {}, "f:a": {}})).unwrap();
        assert_eq!(set.paths(), vec![Path(vec![f("a")])]);
        assert!(decode(&json!({"f": {}})).is_err());
        assert!(decode(&json!({"fa": {}})).is_err());
        assert!(decode(&json!({"k:[1]": {}})).is_err());
        assert!(decode(&json!({"f:a": 1})).is_err());
        assert!(decode(&json!([])).is_err());
    }

    #[test]
    fn empty_document_is_empty_set() {
        assert!(decode(&json!({})).unwrap().is_empty());
        assert_eq!(encode(&FieldSet::new()), json!({}));
    }

    #[test]
    fn depth_is_bounded() {
        let mut doc = json!({});
        for _ in 0..(MAX_DEPTH + 5) {
            doc = json!({ "f:a": doc });
        }
        assert_eq!(decode(&doc), Err(FieldsV1Error::TooDeep));
    }
}
