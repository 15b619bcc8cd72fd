//! `Table` responses (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`): what `kubectl get`
//! prints. Custom resources get their CRD's printer columns after `Name`; the built-in kinds get
//! the columns the Kubernetes API server gives them.

use axum::http::HeaderMap;
use serde_json::{Value, json};

use crate::semantics::registry::{Builtin, Resource};

/// Whether the client asked for a Table.
pub fn wanted(headers: &HeaderMap) -> bool {
    headers
        .get_all("accept")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|accept| accept.contains("as=Table") && accept.contains("g=meta.k8s.io"))
}

/// What each row carries besides its cells (`includeObject`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Include {
    /// Nothing.
    None,
    /// `metadata` only (the default).
    Metadata,
    /// The whole object.
    Object,
}

impl Include {
    /// Reads the `includeObject` parameter.
    pub fn parse(value: Option<&str>) -> Self {
        match value {
            Some("None") => Self::None,
            Some("Object") => Self::Object,
            _ => Self::Metadata,
        }
    }
}

struct Column {
    name: String,
    kind: String,
    format: String,
    description: String,
    priority: i64,
    /// A JSONPath for CRD columns; built-in columns are computed.
    path: Option<String>,
}

fn column(name: &str, kind: &str, format: &str, description: &str, priority: i64) -> Column {
    Column {
        name: name.into(),
        kind: kind.into(),
        format: format.into(),
        description: description.into(),
        priority,
        path: None,
    }
}

fn columns(resource: &Resource, version: &str) -> Vec<Column> {
    let name = column("Name", "string", "name", "Name must be unique within a namespace.", 0);
    match resource.builtin {
        Some(Builtin::Namespace) => vec![
            name,
            column("Status", "string", "", "The status of the namespace", 0),
            column("Age", "string", "", "", 0),
        ],
        Some(Builtin::Secret) => vec![
            name,
            column("Type", "string", "", "The type of the secret", 0),
            column("Data", "string", "", "The number of entries in the secret", 0),
            column("Age", "string", "", "", 0),
        ],
        Some(Builtin::ConfigMap) => vec![
            name,
            column("Data", "string", "", "The number of entries in the ConfigMap", 0),
            column("Age", "string", "", "", 0),
        ],
        Some(Builtin::Event | Builtin::EventsV1) => vec![
            column("Last Seen", "string", "", "The last time the event was seen", 0),
            column("Type", "string", "", "The type of the event", 0),
            column("Reason", "string", "", "The reason of the event", 0),
            column("Object", "string", "", "The object the event is about", 0),
            column("Message", "string", "", "The message of the event", 0),
        ],
        Some(Builtin::Lease) => {
            vec![name, column("Holder", "string", "", "The holder of the lease", 0), column("Age", "string", "", "", 0)]
        }
        Some(Builtin::CustomResourceDefinition | Builtin::Role | Builtin::ClusterRole) => {
            vec![name, column("Created At", "date", "", "", 0)]
        }
        Some(Builtin::ServiceAccount) => vec![
            name,
            column("Secrets", "string", "", "The number of secrets of the service account", 0),
            column("Age", "string", "", "", 0),
        ],
        Some(Builtin::RoleBinding | Builtin::ClusterRoleBinding) => vec![
            name,
            column("Role", "string", "", "The role the binding grants", 0),
            column("Age", "string", "", "", 0),
        ],
        Some(Builtin::Review) | None => {
            let mut out = vec![name];
            let defined = resource.printer_columns.get(version).cloned().unwrap_or_default();
            if defined.is_empty() {
                out.push(Column {
                    path: Some(".metadata.creationTimestamp".into()),
                    ..column("Age", "date", "", "", 0)
                });
            }
            for c in defined {
                out.push(Column {
                    name: c["name"].as_str().unwrap_or_default().to_owned(),
                    kind: c["type"].as_str().unwrap_or("string").to_owned(),
                    format: c["format"].as_str().unwrap_or_default().to_owned(),
                    description: c["description"].as_str().unwrap_or_default().to_owned(),
                    priority: c["priority"].as_i64().unwrap_or(0),
                    path: c["jsonPath"].as_str().map(str::to_owned),
                });
            }
            out
        }
    }
}

/// Reads a simple JSONPath (`.status.phase`, `.spec.interfaces[0].mac`, `{.a.b}`).
pub fn json_path<'a>(object: &'a Value, path: &str) -> Option<&'a Value> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}').trim_start_matches('$');
    let mut current = object;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, indices) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            current = current.get(key)?;
        }
        for index in indices.split('[').filter(|s| !s.is_empty()) {
            let index: usize = index.trim_end_matches(']').parse().ok()?;
            current = current.get(index)?;
        }
    }
    Some(current)
}

/// How long ago, as the API server and kubectl write ages (`45s`, `5m10s`, `3h`, `2d4h`, `1y`).
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    let seconds = seconds.max(0);
    let (minutes, hours) = (seconds / 60, seconds / 3600);
    if seconds < 120 {
        format!("{seconds}s")
    } else if minutes < 10 {
        let s = seconds % 60;
        if s == 0 { format!("{minutes}m") } else { format!("{minutes}m{s}s") }
    } else if minutes < 180 {
        format!("{minutes}m")
    } else if hours < 8 {
        let m = minutes % 60;
        if m == 0 { format!("{hours}h") } else { format!("{hours}h{m}m") }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 { format!("{}d", hours / 24) } else { format!("{}d{h}h", hours / 24) }
    } else if hours < 24 * 365 * 2 {
        format!("{}d", hours / 24)
    } else if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        if days == 0 { format!("{}y", hours / 24 / 365) } else { format!("{}y{days}d", hours / 24 / 365) }
    } else {
        format!("{}y", hours / 24 / 365)
    }
}

fn age(timestamp: Option<&Value>) -> Value {
    let Some(text) = timestamp.and_then(Value::as_str) else { return json!("<unknown>") };
    match text.parse::<jiff::Timestamp>() {
        Ok(then) => json!(human_duration(jiff::Timestamp::now().as_second() - then.as_second())),
        Err(_) => json!("<invalid>"),
    }
}

fn cells(resource: &Resource, columns: &[Column], object: &Value) -> Vec<Value> {
    let meta = &object["metadata"];
    let created = meta.get("creationTimestamp");
    let count = |fields: &[&str]| fields.iter().map(|f| object[*f].as_object().map_or(0, |m| m.len())).sum::<usize>();
    match resource.builtin {
        Some(Builtin::Namespace) => vec![meta["name"].clone(), object["status"]["phase"].clone(), age(created)],
        Some(Builtin::Secret) => {
            vec![meta["name"].clone(), object["type"].clone(), json!(count(&["data"])), age(created)]
        }
        Some(Builtin::ConfigMap) => vec![meta["name"].clone(), json!(count(&["data", "binaryData"])), age(created)],
        Some(Builtin::Event | Builtin::EventsV1) => {
            let last =
                object.get("lastTimestamp").filter(|v| !v.is_null()).or_else(|| object.get("eventTime")).or(created);
            let about = &object["involvedObject"];
            let target = format!(
                "{}/{}",
                about["kind"].as_str().unwrap_or_default().to_lowercase(),
                about["name"].as_str().unwrap_or_default()
            );
            vec![age(last), object["type"].clone(), object["reason"].clone(), json!(target), object["message"].clone()]
        }
        Some(Builtin::Lease) => vec![meta["name"].clone(), object["spec"]["holderIdentity"].clone(), age(created)],
        Some(Builtin::CustomResourceDefinition | Builtin::Role | Builtin::ClusterRole) => {
            vec![meta["name"].clone(), created.cloned().unwrap_or(Value::Null)]
        }
        Some(Builtin::ServiceAccount) => {
            let secrets = object["secrets"].as_array().map_or(0, Vec::len);
            vec![meta["name"].clone(), json!(secrets), age(created)]
        }
        Some(Builtin::RoleBinding | Builtin::ClusterRoleBinding) => {
            let role = format!(
                "{}/{}",
                object["roleRef"]["kind"].as_str().unwrap_or_default(),
                object["roleRef"]["name"].as_str().unwrap_or_default()
            );
            vec![meta["name"].clone(), json!(role), age(created)]
        }
        Some(Builtin::Review) | None => columns
            .iter()
            .map(|c| match c.path.as_deref() {
                None => meta["name"].clone(),
                Some(path) => {
                    let value = json_path(object, path).cloned().unwrap_or(Value::Null);
                    match (c.kind.as_str(), &value) {
                        ("date", Value::String(_)) => age(Some(&value)),
                        (_, Value::Array(_) | Value::Object(_)) => json!(value.to_string()),
                        _ => value,
                    }
                }
            })
            .collect(),
    }
}

/// A Table of `objects` (already in the client's version and representation).
pub fn render(resource: &Resource, version: &str, objects: &[Value], include: Include, list_metadata: Value) -> Value {
    let columns = columns(resource, version);
    let definitions: Vec<Value> = columns
        .iter()
        .map(|c| json!({"name": c.name, "type": c.kind, "format": c.format, "description": c.description, "priority": c.priority}))
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let mut row = json!({"cells": cells(resource, &columns, object)});
            match include {
                Include::None => {}
                Include::Object => row["object"] = object.clone(),
                Include::Metadata => {
                    row["object"] = json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": object["metadata"]});
                }
            }
            row
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_metadata, "columnDefinitions": definitions, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::semantics::registry::Registry;
    use crate::semantics::registry::tests::widget_crd;

    #[test]
    fn ages_read_like_kubectl() {
        for (seconds, text) in [
            (5, "5s"),
            (119, "119s"),
            (130, "2m10s"),
            (600, "10m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 120, "3h2m"),
            (30 * 3600, "30h"),
            (50 * 3600, "2d2h"),
            (10 * 86400, "10d"),
            (800 * 86400, "2y70d"),
        ] {
            assert_eq!(human_duration(seconds), text, "{seconds}");
        }
    }

    #[test]
    fn json_paths_follow_fields_and_indices() {
        let object = json!({"spec": {"interfaces": [{"mac": "aa"}]}, "status": {"phase": "Ready"}});
        assert_eq!(json_path(&object, ".spec.interfaces[0].mac"), Some(&json!("aa")));
        assert_eq!(json_path(&object, "{.status.phase}"), Some(&json!("Ready")));
        assert_eq!(json_path(&object, ".status.ip"), None);
        assert_eq!(json_path(&object, ".spec.interfaces[3].mac"), None);
    }

    #[test]
    fn crds_get_their_printer_columns() {
        let registry = Registry::with_crds(&[widget_crd()]);
        let widgets = registry.find("example.com", "v1alpha1", "widgets").unwrap();
        let widget = json!({"metadata": {"name": "w1", "creationTimestamp": "2020-01-01T00:00:00Z"}, "spec": {"size": 3}, "status": {"phase": "Ready"}});
        let table = render(&widgets, "v1alpha1", &[widget], Include::Metadata, json!({}));
        let names: Vec<&str> =
            table["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["Name", "Phase", "Size", "Age"]);
        let cells = &table["rows"][0]["cells"];
        assert_eq!((cells[0].as_str(), cells[1].as_str(), cells[2].as_i64()), (Some("w1"), Some("Ready"), Some(3)));
        assert!(cells[3].as_str().unwrap().contains('y'), "{}", cells[3]);
        assert_eq!(table["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    }
}
