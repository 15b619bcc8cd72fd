//! Discovery documents: which groups, versions and resources are served, with their verbs,
//! short names, categories and subresources — what `kubectl api-resources` and every client's
//! REST mapping read.

use serde_json::{Value, json};

use crate::semantics::registry::{Builtin, Registry, Resource};

const VERBS: [&str; 8] = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() { version.to_owned() } else { format!("{group}/{version}") }
}

/// `/apis`: every group with its versions (storage version preferred).
pub fn groups(registry: &Registry) -> Value {
    let groups: Vec<Value> =
        registry.groups().into_iter().map(|(group, versions)| group_document(&group, &versions)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn group_document(group: &str, versions: &[String]) -> Value {
    let versions: Vec<Value> =
        versions.iter().map(|v| json!({"groupVersion": group_version(group, v), "version": v})).collect();
    json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": versions,
        "preferredVersion": versions.first().cloned().unwrap_or(Value::Null),
    })
}

/// `/apis/{group}`.
pub fn group(registry: &Registry, name: &str) -> Option<Value> {
    registry.groups().into_iter().find(|(g, _)| g == name).map(|(g, versions)| group_document(&g, &versions))
}

fn entries(resource: &Resource) -> Vec<Value> {
    let mut out = vec![json!({
        "name": resource.plural,
        "singularName": resource.singular,
        "namespaced": resource.namespaced,
        "kind": resource.kind,
        "verbs": VERBS,
        "shortNames": resource.short_names,
        "categories": resource.categories,
        "storageVersionHash": "",
    })];
    if resource.status {
        out.push(json!({"name": format!("{}/status", resource.plural), "singularName": "", "namespaced": resource.namespaced, "kind": resource.kind, "verbs": ["get", "patch", "update"]}));
    }
    if resource.scale.is_some() {
        out.push(json!({"name": format!("{}/scale", resource.plural), "singularName": "", "namespaced": resource.namespaced, "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}));
    }
    if resource.builtin == Some(Builtin::Namespace) {
        out.push(json!({"name": "namespaces/finalize", "singularName": "", "namespaced": false, "kind": "Namespace", "verbs": ["update"]}));
    }
    out
}

/// `/api/v1` and `/apis/{group}/{version}`.
pub fn resources(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let matching: Vec<&std::sync::Arc<Resource>> =
        registry.all().iter().filter(|r| r.group == group && r.versions.iter().any(|v| v == version)).collect();
    if matching.is_empty() {
        return None;
    }
    let resources: Vec<Value> = matching.iter().flat_map(|r| entries(r)).collect();
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version(group, version), "resources": resources}),
    )
}
