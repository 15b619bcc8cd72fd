//! What the built-in kinds need beyond schema-less storage: Secret `stringData`, Namespace
//! phase and finalizer, key checks, and the two views of Events.

use base64::Engine;
use serde_json::{Map, Value, json};

use crate::semantics::errors::{ApiError, Cause};
use crate::semantics::rbac;
use crate::semantics::registry::Builtin;
use crate::semantics::request::Request;

fn valid_config_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn cause(field: String, message: String) -> Cause {
    Cause { reason: "FieldValueInvalid".into(), message, field }
}

/// Normalizes and checks a built-in object before it is stored.
pub fn prepare(kind: Builtin, object: &mut Value, old: Option<&Value>, request: &Request) -> Result<(), ApiError> {
    let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_owned();
    let mut causes = Vec::new();
    match kind {
        Builtin::Namespace => {
            let deleting = object.pointer("/metadata/deletionTimestamp").is_some();
            if old.is_none() {
                object["spec"] = json!({"finalizers": ["kubernetes"]});
            } else if let Some(old) = old {
                // spec.finalizers changes only through /finalize.
                if request.subresource.as_deref() != Some("finalize") {
                    object["spec"] = old.get("spec").cloned().unwrap_or_else(|| json!({}));
                }
            }
            object["status"] = json!({"phase": if deleting { "Terminating" } else { "Active" }});
        }
        Builtin::Secret => {
            let map = object.as_object_mut().ok_or_else(|| ApiError::bad_request("a Secret must be an object"))?;
            let mut data = map.remove("data").and_then(|d| d.as_object().cloned()).unwrap_or_default();
            if let Some(string_data) = map.remove("stringData") {
                for (key, value) in string_data.as_object().cloned().unwrap_or_default() {
                    match value.as_str() {
                        Some(text) => {
                            data.insert(key, Value::String(base64::engine::general_purpose::STANDARD.encode(text)));
                        }
                        None => {
                            causes.push(cause(format!("stringData[{key}]"), "Invalid value: must be a string".into()))
                        }
                    }
                }
            }
            for (key, value) in &data {
                if !valid_config_key(key) {
                    causes.push(cause(format!("data[{key}]"), format!("Invalid value: {key:?}: a valid config key must consist of alphanumeric characters, '-', '_' or '.'")));
                }
                if value.as_str().is_none_or(|v| base64::engine::general_purpose::STANDARD.decode(v).is_err()) {
                    causes.push(cause(format!("data[{key}]"), "Invalid value: must be base64-encoded bytes".into()));
                }
            }
            if !data.is_empty() {
                map.insert("data".into(), Value::Object(data));
            }
            if map.get("type").and_then(Value::as_str).is_none_or(str::is_empty) {
                map.insert("type".into(), json!("Opaque"));
            }
        }
        Builtin::ConfigMap => {
            for (field, binary) in [("data", false), ("binaryData", true)] {
                let Some(entries) = object.get(field) else { continue };
                let Some(entries) = entries.as_object() else {
                    causes.push(cause(field.into(), "Invalid value: must be a map".into()));
                    continue;
                };
                for (key, value) in entries {
                    if !valid_config_key(key) {
                        causes.push(cause(format!("{field}[{key}]"), format!("Invalid value: {key:?}: a valid config key must consist of alphanumeric characters, '-', '_' or '.'")));
                    }
                    let ok = match value.as_str() {
                        Some(v) if binary => base64::engine::general_purpose::STANDARD.decode(v).is_ok(),
                        Some(_) => true,
                        None => false,
                    };
                    if !ok {
                        causes.push(cause(format!("{field}[{key}]"), "Invalid value: must be a string".into()));
                    }
                }
            }
        }
        Builtin::Lease => {
            let spec = object.get("spec").cloned().unwrap_or(Value::Null);
            for field in ["leaseDurationSeconds", "leaseTransitions"] {
                if spec.get(field).is_some_and(|v| !v.is_i64()) {
                    causes.push(cause(format!("spec.{field}"), "Invalid value: must be an integer".into()));
                }
            }
            if spec.get("holderIdentity").is_some_and(|v| !v.is_string() && !v.is_null()) {
                causes.push(cause("spec.holderIdentity".into(), "Invalid value: must be a string".into()));
            }
        }
        Builtin::Event | Builtin::EventsV1 => {
            if object.get("involvedObject").is_none_or(|o| !o.is_object()) {
                causes.push(Cause {
                    reason: "FieldValueRequired".into(),
                    message: "Required value".into(),
                    field: "involvedObject".into(),
                });
            }
        }
        Builtin::Role | Builtin::ClusterRole => {
            causes.extend(rbac::role_problems(object, kind == Builtin::ClusterRole))
        }
        Builtin::RoleBinding | Builtin::ClusterRoleBinding => {
            causes.extend(rbac::binding_problems(object, old, kind == Builtin::RoleBinding));
        }
        Builtin::CustomResourceDefinition | Builtin::ServiceAccount | Builtin::Review => {}
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(&request.resource.group, &request.resource.kind, &name, causes))
    }
}

const RENAMES: [(&str, &str); 8] = [
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
    ("reportingInstance", "reportingInstance"),
];

/// An `events.k8s.io/v1` Event as the stored `v1` Event (so `kubectl describe`, which reads
/// `v1` events, shows what controllers record through `events.k8s.io/v1`).
pub fn events_v1_to_event(object: &Value) -> Value {
    let Some(map) = object.as_object() else { return object.clone() };
    let mut out = Map::new();
    for (key, value) in map {
        let renamed = RENAMES.iter().find(|(v1, _)| v1 == key).map_or(key.as_str(), |(_, core)| core);
        out.insert(renamed.to_owned(), value.clone());
    }
    out.insert("apiVersion".into(), json!("v1"));
    if !out.contains_key("source")
        && let Some(component) = out.get("reportingComponent").cloned()
    {
        out.insert("source".into(), json!({"component": component}));
    }
    if !out.contains_key("lastTimestamp")
        && let Some(time) = out.get("eventTime").and_then(Value::as_str).map(str::to_owned)
    {
        // Seconds precision, as metav1.Time.
        let seconds = time.split('.').next().unwrap_or(&time).trim_end_matches('Z').to_owned();
        out.insert("lastTimestamp".into(), json!(format!("{seconds}Z")));
        out.entry("firstTimestamp").or_insert_with(|| json!(format!("{seconds}Z")));
    }
    Value::Object(out)
}

/// The stored `v1` Event seen as `events.k8s.io/v1`.
pub fn event_to_events_v1(object: &Value) -> Value {
    let Some(map) = object.as_object() else { return object.clone() };
    let mut out = Map::new();
    for (key, value) in map {
        let renamed = RENAMES.iter().find(|(_, core)| core == key).map_or(key.as_str(), |(v1, _)| v1);
        out.insert(renamed.to_owned(), value.clone());
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_views_convert_both_ways() {
        let v1 = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "m1.1", "namespace": "ns"},
            "regarding": {"kind": "Widget", "name": "w1"}, "note": "bound to vm", "reason": "Matched",
            "type": "Normal", "reportingController": "example-operator", "reportingInstance": "op-1",
            "eventTime": "2026-11-21T10:00:00.123456Z", "action": "Bind"
        });
        let core = events_v1_to_event(&v1);
        assert_eq!(core["involvedObject"]["name"], "w1");
        assert_eq!(core["message"], "bound to vm");
        assert_eq!(core["source"]["component"], "example-operator");
        assert_eq!(core["lastTimestamp"], "2026-11-21T10:00:00Z");
        let back = event_to_events_v1(&core);
        assert_eq!(back["regarding"], v1["regarding"]);
        assert_eq!(back["note"], v1["note"]);
        assert_eq!(back["reportingController"], v1["reportingController"]);
    }
}
