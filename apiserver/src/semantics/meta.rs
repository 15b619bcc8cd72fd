//! Object metadata rules: names, generated names, uids, timestamps, generation.

use serde_json::{Map, Value};

/// Why `name` cannot name an RBAC object (Kubernetes' `ValidatePathSegmentName`: anything
/// that is a path segment, so `system:discovery` is fine).
pub fn path_segment_problem(name: &str) -> Option<String> {
    if name == "." || name == ".." {
        return Some(format!("may not be '{name}'"));
    }
    ["/", "%"].iter().find(|bad| name.contains(**bad)).map(|bad| format!("may not contain '{bad}'"))
}

/// Now, as Kubernetes writes `metav1.Time` (seconds, UTC).
pub fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Now with microseconds, as `metav1.MicroTime`.
pub fn now_micro() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
}

/// A new object uid.
pub fn new_uid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Five characters from the alphabet Kubernetes uses for `generateName` suffixes (no vowels,
/// no look-alikes).
pub fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut bytes = [0u8; 5];
    // A failing OS random source is not recoverable; fall back to the uid generator's.
    if getrandom::fill(&mut bytes).is_err() {
        bytes.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..5]);
    }
    bytes.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}

/// Why a name is not a DNS-1123 label, if it is not.
pub fn dns_label_problem(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    (!ok).then(|| format!("Invalid value: {name:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"))
}

/// Why a name is not a DNS-1123 subdomain, if it is not.
pub fn dns_subdomain_problem(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    (!ok).then(|| format!("Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"))
}

/// Why a label or annotation key is invalid, if it is.
pub fn qualified_name_problem(key: &str) -> Option<String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !name_ok {
        return Some(format!(
            "Invalid value: {key:?}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
        ));
    }
    if let Some(prefix) = prefix
        && let Some(problem) = dns_subdomain_problem(prefix)
    {
        return Some(format!("prefix part {problem}"));
    }
    None
}

/// Why a label value is invalid, if it is.
pub fn label_value_problem(value: &str) -> Option<String> {
    let ok = value.is_empty()
        || (value.len() <= 63
            && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric()));
    (!ok).then(|| format!("Invalid value: {value:?}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"))
}

/// A string field of `metadata`.
pub fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object.get("metadata")?.get(field)?.as_str()
}

/// `metadata`, created if absent.
pub fn meta_mut(object: &mut Value) -> Option<&mut Map<String, Value>> {
    let root = object.as_object_mut()?;
    let meta = root.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut()
}

/// Finalizers of an object.
pub fn finalizers(object: &Value) -> Vec<String> {
    object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|f| f.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Whether two objects have the same spec part: everything but metadata, status, apiVersion
/// and kind (what bumps `metadata.generation`). Compared in place: status can be megabytes.
pub fn same_spec(a: &Value, b: &Value) -> bool {
    const OUTSIDE: [&str; 4] = ["metadata", "status", "apiVersion", "kind"];
    same_fields_except(a, b, &OUTSIDE)
}

/// Whether an update changes anything: the objects compared without resourceVersion and
/// without the times of managedFields entries. Compared in place, without copies.
pub fn same_content(a: &Value, b: &Value) -> bool {
    if !same_fields_except(a, b, &["metadata"]) {
        return false;
    }
    let (Some(meta_a), Some(meta_b)) = (a.get("metadata"), b.get("metadata")) else {
        return a.get("metadata") == b.get("metadata");
    };
    if !same_fields_except(meta_a, meta_b, &["resourceVersion", "managedFields"]) {
        return false;
    }
    let (fields_a, fields_b) = (meta_a.get("managedFields"), meta_b.get("managedFields"));
    let (Some(entries_a), Some(entries_b)) = (
        fields_a.map_or(Some(&[][..]), |f| f.as_array().map(Vec::as_slice)),
        fields_b.map_or(Some(&[][..]), |f| f.as_array().map(Vec::as_slice)),
    ) else {
        // Present but not a list: compared as values.
        return fields_a == fields_b;
    };
    entries_a.len() == entries_b.len()
        && entries_a.iter().zip(entries_b).all(|(x, y)| match (x.as_object(), y.as_object()) {
            (Some(_), Some(_)) => same_fields_except(x, y, &["time"]),
            _ => x == y,
        })
}

/// Whether `a` and `b` are objects with equal fields, `skipped` aside (non-objects: equal).
fn same_fields_except(a: &Value, b: &Value, skipped: &[&str]) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else { return a == b };
    let kept = |map: &serde_json::Map<String, Value>| map.keys().filter(|key| !skipped.contains(&key.as_str())).count();
    kept(a) == kept(b)
        && a.iter().filter(|(key, _)| !skipped.contains(&key.as_str())).all(|(key, value)| b.get(key) == Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_and_spec_comparisons_skip_what_they_should() {
        let base = serde_json::json!({
            "apiVersion": "v1", "kind": "K", "spec": {"a": 1}, "status": {"s": 1},
            "metadata": {"name": "n", "resourceVersion": "1", "managedFields": [{"manager": "m", "time": "t1"}]},
        });
        let mut other = base.clone();
        other["metadata"]["resourceVersion"] = "2".into();
        other["metadata"]["managedFields"][0]["time"] = "t2".into();
        assert!(same_content(&base, &other), "resourceVersion and managedFields times do not count");
        other["metadata"]["managedFields"][0]["manager"] = "x".into();
        assert!(!same_content(&base, &other), "a manager does");
        let mut labelled = base.clone();
        labelled["metadata"]["labels"] = serde_json::json!({"a": "b"});
        assert!(!same_content(&base, &labelled));
        let mut restatused = base.clone();
        restatused["status"]["s"] = 2.into();
        assert!(!same_content(&base, &restatused));
        assert!(same_spec(&base, &restatused) && same_spec(&base, &labelled), "status and metadata are not spec");
        let mut respecced = base.clone();
        respecced["spec"]["a"] = 2.into();
        assert!(!same_spec(&base, &respecced));
        let mut extra = base.clone();
        extra["data"] = serde_json::json!({"k": "v"});
        assert!(!same_spec(&base, &extra) && !same_spec(&extra, &base), "a field on one side only counts");
    }

    #[test]
    fn names_and_keys() {
        assert!(dns_label_problem("api-01").is_none());
        assert!(dns_label_problem("API").is_some());
        assert!(dns_subdomain_problem("widgets.example.com").is_none());
        assert!(dns_subdomain_problem("a..b").is_some());
        assert!(qualified_name_problem("example.com/role").is_none());
        assert!(qualified_name_problem("Bad Key").is_some());
        assert!(qualified_name_problem("UPPER.dev/x").is_some());
        assert!(label_value_problem("").is_none());
        assert!(label_value_problem("a b").is_some());
        let suffix = name_suffix();
        assert_eq!(suffix.len(), 5);
        assert!(suffix.bytes().all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b)));
    }

    #[test]
    fn timestamps_have_the_kubernetes_shapes() {
        assert_eq!(now().len(), "2026-11-21T10:00:00Z".len());
        assert_eq!(now_micro().len(), "2026-11-21T10:00:00.000000Z".len());
    }
}
