//! kubectl's client-side-apply annotation, as the apiserver handles it for the `kubectl`
//! applier: conflicts on fields the annotation proves kubectl set are forgiven (upgrading
//! from `kubectl apply` to `kubectl apply --server-side`), and an existing annotation is kept
//! in sync with what is applied.

use serde_json::Value;

use crate::fieldpath::FieldSet;
use crate::typed::{Duplicates, compare, field_set};
use crate::typeinfo::Ty;

/// The annotation kubectl's client-side apply keeps the last applied configuration in.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The manager name whose conflicts the annotation can forgive.
pub(crate) const KUBECTL: &str = "kubectl";

fn annotation(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/annotations")?.get(LAST_APPLIED_ANNOTATION)?.as_str().filter(|s| !s.is_empty())
}

/// The fields the live object's last-applied annotation sets to their live values: conflicts
/// on those are allowed for the `kubectl` applier. `None` when there is no usable annotation.
pub(crate) fn allowed_conflicts(live: &Value, ty: &Ty) -> Option<FieldSet> {
    let last: Value = serde_json::from_str(annotation(live)?).ok()?;
    if last.get("apiVersion") != live.get("apiVersion") {
        return None;
    }
    let set = field_set(&last, ty, Duplicates::Reject).ok()?;
    let cmp = compare(&last, live, ty).ok()?;
    Some(set.difference(&cmp.modified).difference(&cmp.added).difference(&cmp.removed))
}

/// When the `kubectl` applier applies to an object that has the annotation, sets it to the
/// applied configuration (without the annotation itself), as compact JSON.
pub(crate) fn sync(result: &mut Value, config: &Value) {
    if annotation(result).is_none() {
        return;
    }
    let mut applied = config.clone();
    if let Some(Value::Object(annotations)) = applied.pointer_mut("/metadata/annotations") {
        annotations.remove(LAST_APPLIED_ANNOTATION);
    }
    let text = applied.to_string();
    if let Some(Value::Object(annotations)) = result.pointer_mut("/metadata/annotations") {
        annotations.insert(LAST_APPLIED_ANNOTATION.to_owned(), Value::String(text));
    }
}
