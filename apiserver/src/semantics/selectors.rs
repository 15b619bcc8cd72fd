//! Label selectors (`app=api,tier in (web,db),!canary`) and field selectors
//! (`metadata.name=m1,status.phase!=Ready`), parsed once and matched against objects.

use std::collections::BTreeSet;

use serde_json::Value;

/// A bad selector.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unable to parse requirement: {0}")]
pub struct SelectorError(pub String);

/// One label requirement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// `key=value` / `key==value`.
    Equals(String, String),
    /// `key!=value` (also true when the label is absent).
    NotEquals(String, String),
    /// `key in (a,b)`.
    In(String, BTreeSet<String>),
    /// `key notin (a,b)` (also true when the label is absent).
    NotIn(String, BTreeSet<String>),
    /// `key`.
    Exists(String),
    /// `!key`.
    DoesNotExist(String),
}

/// A parsed label selector; empty matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector(pub Vec<Requirement>);

const MAX_SELECTOR_LENGTH: usize = 16 * 1024;

// Label keys and values follow the same rules as in objects' metadata.
fn valid_key(key: &str) -> bool {
    crate::semantics::meta::qualified_name_problem(key).is_none()
}

fn valid_value(value: &str) -> bool {
    crate::semantics::meta::label_value_problem(value).is_none()
}

/// Splits on commas that are not inside parentheses.
fn split_top_level(text: &str) -> Result<Vec<&str>, SelectorError> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.checked_sub(1).ok_or_else(|| SelectorError(format!("unbalanced ')' in {text:?}")))?,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(SelectorError(format!("unbalanced '(' in {text:?}")));
    }
    parts.push(&text[start..]);
    Ok(parts)
}

impl LabelSelector {
    /// Parses the `labelSelector` query parameter.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        if text.len() > MAX_SELECTOR_LENGTH {
            return Err(SelectorError("selector too long".into()));
        }
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let mut requirements = Vec::new();
        for part in split_top_level(text)? {
            requirements.push(Self::requirement(part.trim())?);
        }
        Ok(Self(requirements))
    }

    fn requirement(part: &str) -> Result<Requirement, SelectorError> {
        let key_error = |key: &str| SelectorError(format!("{key:?}: invalid label key"));
        let value_error = |value: &str| SelectorError(format!("{value:?}: invalid label value"));
        if let Some(key) = part.strip_prefix('!') {
            let key = key.trim();
            return if valid_key(key) { Ok(Requirement::DoesNotExist(key.to_owned())) } else { Err(key_error(key)) };
        }
        for (op, negate) in [("!=", true), ("==", false), ("=", false)] {
            if let Some((key, value)) = part.split_once(op) {
                let (key, value) = (key.trim(), value.trim());
                if !valid_key(key) {
                    return Err(key_error(key));
                }
                if !valid_value(value) {
                    return Err(value_error(value));
                }
                return Ok(if negate {
                    Requirement::NotEquals(key.to_owned(), value.to_owned())
                } else {
                    Requirement::Equals(key.to_owned(), value.to_owned())
                });
            }
        }
        let words: Vec<&str> = part.splitn(2, char::is_whitespace).collect();
        if let [key, rest] = words.as_slice() {
            let rest = rest.trim();
            let (negate, list) = if let Some(list) = rest.strip_prefix("notin") {
                (true, list)
            } else if let Some(list) = rest.strip_prefix("in") {
                (false, list)
            } else {
                return Err(SelectorError(format!("{part:?}: expected in, notin, =, ==, !=")));
            };
            let list = list.trim();
            let inner = list
                .strip_prefix('(')
                .and_then(|l| l.strip_suffix(')'))
                .ok_or_else(|| SelectorError(format!("{part:?}: expected a (list, of, values)")))?;
            let values: BTreeSet<String> = inner.split(',').map(|v| v.trim().to_owned()).collect();
            if let Some(bad) = values.iter().find(|v| !valid_value(v)) {
                return Err(value_error(bad));
            }
            if !valid_key(key) {
                return Err(key_error(key));
            }
            return Ok(if negate {
                Requirement::NotIn((*key).to_owned(), values)
            } else {
                Requirement::In((*key).to_owned(), values)
            });
        }
        if valid_key(part) { Ok(Requirement::Exists(part.to_owned())) } else { Err(key_error(part)) }
    }

    /// Whether an object's `metadata.labels` satisfy every requirement.
    pub fn matches(&self, object: &Value) -> bool {
        let labels = object.pointer("/metadata/labels");
        let label = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
        self.0.iter().all(|requirement| match requirement {
            Requirement::Equals(k, v) => label(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => label(k) != Some(v.as_str()),
            Requirement::In(k, values) => label(k).is_some_and(|l| values.contains(l)),
            Requirement::NotIn(k, values) => label(k).is_none_or(|l| !values.contains(l)),
            Requirement::Exists(k) => label(k).is_some(),
            Requirement::DoesNotExist(k) => label(k).is_none(),
        })
    }

    /// Whether the selector matches everything.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A parsed field selector: `path=value` / `path!=value` terms, all of which must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector(pub Vec<(String, bool, String)>);

impl FieldSelector {
    /// Parses the `fieldSelector` query parameter; `allowed(field)` says which fields the
    /// resource can be selected by.
    pub fn parse(text: &str, allowed: impl Fn(&str) -> bool) -> Result<Self, SelectorError> {
        if text.len() > MAX_SELECTOR_LENGTH {
            return Err(SelectorError("selector too long".into()));
        }
        let mut terms = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, true, v)
            } else {
                return Err(SelectorError(format!(
                    "invalid field selector term {part:?}: expected field=value or field!=value"
                )));
            };
            let field = field.trim();
            if !allowed(field) {
                return Err(SelectorError(format!("field label not supported: {field}")));
            }
            terms.push((field.to_owned(), equal, value.trim().to_owned()));
        }
        Ok(Self(terms))
    }

    /// Whether the object satisfies every term. A missing field reads as the empty string.
    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(field, equal, value)| {
            let mut current = Some(object);
            for part in field.split('.') {
                current = current.and_then(|v| v.get(part));
            }
            let actual = match current {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (actual == *value) == *equal
        })
    }

    /// Whether the selector matches everything.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value required for `field` by an equality term, if any (to narrow a list).
    pub fn required(&self, field: &str) -> Option<&str> {
        self.0.iter().find(|(f, equal, _)| f == field && *equal).map(|(_, _, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(labels: Value) -> Value {
        json!({"metadata": {"name": "m1", "namespace": "ns", "labels": labels}, "status": {"phase": "Ready"}})
    }

    #[test]
    fn equality_and_set_based_requirements() {
        let selector = LabelSelector::parse("app=api, tier in (web, db),!canary,env,zone notin (a)").unwrap();
        assert_eq!(selector.0.len(), 5);
        assert!(selector.matches(&object(json!({"app": "api", "tier": "db", "env": "prod"}))));
        assert!(!selector.matches(&object(json!({"app": "api", "tier": "db", "env": "prod", "canary": "yes"}))));
        assert!(!selector.matches(&object(json!({"app": "api", "tier": "cache", "env": "prod"}))));
        assert!(!selector.matches(&object(json!({"app": "api", "tier": "db", "env": "prod", "zone": "a"}))));
        assert!(LabelSelector::parse("app!=api").unwrap().matches(&object(json!({}))));
        assert!(LabelSelector::parse("").unwrap().matches(&object(json!({}))));
        assert!(
            LabelSelector::parse("example.com/role==api").unwrap().matches(&object(json!({"example.com/role": "api"})))
        );
    }

    #[test]
    fn bad_label_selectors_are_rejected() {
        for bad in ["app=a b", "tier in web", "tier in (web", "-app", "app=(x)", "x y z", "a,,b"] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn field_selectors() {
        let allowed = |f: &str| matches!(f, "metadata.name" | "metadata.namespace" | "status.phase");
        let selector = FieldSelector::parse("metadata.name=m1,status.phase!=Failed", allowed).unwrap();
        assert!(selector.matches(&object(json!({}))));
        assert_eq!(selector.required("metadata.name"), Some("m1"));
        assert!(!FieldSelector::parse("metadata.namespace==other", allowed).unwrap().matches(&object(json!({}))));
        assert!(FieldSelector::parse("spec.secret=1", allowed).unwrap_err().0.contains("field label not supported"));
        assert!(FieldSelector::parse("metadata.name", allowed).is_err());
    }
}
