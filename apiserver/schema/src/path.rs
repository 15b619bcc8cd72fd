//! Field paths as `k8s.io/apimachinery/pkg/util/validation/field.Path` renders them, the empty
//! string standing for the nil path.

/// `parent.Child(name)`: `spec.port`, or `spec` from the nil path.
pub(crate) fn child(parent: &str, name: &str) -> String {
    if parent.is_empty() { name.to_owned() } else { format!("{parent}.{name}") }
}

/// `parent.Key(key)`: `spec.labels[app]`.
pub(crate) fn key(parent: &str, key: &str) -> String {
    format!("{parent}[{key}]")
}

/// `parent.Index(i)`: `spec.interfaces[0]`.
pub(crate) fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

/// The rendering of a possibly nil path: the nil path prints as `<nil>`.
pub(crate) fn or_nil(path: &str) -> String {
    if path.is_empty() { "<nil>".to_owned() } else { path.to_owned() }
}
