//! The resources the server serves: the built-in kinds it needs and every established
//! CustomResourceDefinition, with what discovery says about each.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use crate::store::ResourceKey;

/// The Kubernetes version this server reports (`/version`, the OpenAPI documents): the API
/// level of the kinds it serves.
pub const KUBERNETES_VERSION: (&str, &str) = ("1", "34");

/// A built-in kind that gets special handling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Builtin {
    /// `v1` Namespace.
    Namespace,
    /// `v1` Secret.
    Secret,
    /// `v1` ConfigMap.
    ConfigMap,
    /// `v1` Event (stored form of every event).
    Event,
    /// `events.k8s.io/v1` Event (a view of the same objects).
    EventsV1,
    /// `coordination.k8s.io/v1` Lease.
    Lease,
    /// `apiextensions.k8s.io/v1` CustomResourceDefinition.
    CustomResourceDefinition,
    /// `v1` ServiceAccount.
    ServiceAccount,
    /// `rbac.authorization.k8s.io/v1` Role.
    Role,
    /// `rbac.authorization.k8s.io/v1` ClusterRole.
    ClusterRole,
    /// `rbac.authorization.k8s.io/v1` RoleBinding.
    RoleBinding,
    /// `rbac.authorization.k8s.io/v1` ClusterRoleBinding.
    ClusterRoleBinding,
    /// A review the server answers and never stores (`create` only): `authorization.k8s.io/v1`
    /// SelfSubjectAccessReview, SelfSubjectRulesReview, SubjectAccessReview and
    /// `authentication.k8s.io/v1` SelfSubjectReview.
    Review,
}

impl Builtin {
    /// Whether writes of this kind change who may do what.
    pub fn is_rbac(self) -> bool {
        matches!(self, Self::Role | Self::ClusterRole | Self::RoleBinding | Self::ClusterRoleBinding)
    }
}

/// The scale subresource's paths (from the CRD).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScalePaths {
    /// `.spec.replicas`.
    pub spec_replicas: String,
    /// `.status.replicas`.
    pub status_replicas: String,
    /// `.status.selector`, if any.
    pub label_selector: Option<String>,
}

/// One served resource.
#[derive(Clone, Debug)]
pub struct Resource {
    /// Group, empty for core.
    pub group: String,
    /// Served versions, storage version first.
    pub versions: Vec<String>,
    /// Plural name.
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Kind.
    pub kind: String,
    /// Kind of its lists.
    pub list_kind: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Short names.
    pub short_names: Vec<String>,
    /// Categories (`all`, …: `kubectl get CATEGORY` lists them).
    pub categories: Vec<String>,
    /// Has a status subresource.
    pub status: bool,
    /// Has a scale subresource.
    pub scale: Option<ScalePaths>,
    /// Extra fields it can be selected by (`status.phase`), without leading dot.
    pub selectable_fields: Vec<String>,
    /// The `openAPIV3Schema` of each version, for CRDs.
    pub schemas: BTreeMap<String, Value>,
    /// Printer columns of each version, for CRDs.
    pub printer_columns: BTreeMap<String, Vec<Value>>,
    /// List and map semantics of each version, for managedFields and server-side apply.
    pub types: BTreeMap<String, Arc<machinist_apiserver_apply::TypeInfo>>,
    /// Special handling, for built-ins.
    pub builtin: Option<Builtin>,
    /// Where its objects live.
    pub storage: ResourceKey,
}

impl Resource {
    /// `group/version`, or `version` for core.
    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() { version.to_owned() } else { format!("{}/{version}", self.group) }
    }

    /// The storage version.
    pub fn storage_version(&self) -> &str {
        self.versions.first().map(String::as_str).unwrap_or("v1")
    }

    /// Fields a field selector may name on this resource.
    pub fn field_selectable(&self, field: &str) -> bool {
        match field {
            "metadata.name" => true,
            "metadata.namespace" => self.namespaced,
            _ => {
                self.selectable_fields.iter().any(|f| f == field)
                    || (matches!(self.builtin, Some(Builtin::Event))
                        && (field.starts_with("involvedObject.")
                            || matches!(field, "reason" | "type" | "source" | "reportingComponent")))
                    || (matches!(self.builtin, Some(Builtin::EventsV1))
                        && (field.starts_with("regarding.")
                            || matches!(field, "reason" | "type" | "reportingController")))
                    || (matches!(self.builtin, Some(Builtin::Secret)) && field == "type")
                    || (matches!(self.builtin, Some(Builtin::Namespace)) && field == "status.phase")
            }
        }
    }
}

fn builtin(
    group: &str,
    version: &str,
    plural: &str,
    kind: &str,
    namespaced: bool,
    short: &[&str],
    special: Builtin,
) -> Resource {
    Resource {
        group: group.to_owned(),
        versions: vec![version.to_owned()],
        plural: plural.to_owned(),
        singular: kind.to_lowercase(),
        kind: kind.to_owned(),
        list_kind: format!("{kind}List"),
        namespaced,
        short_names: short.iter().map(|s| (*s).to_owned()).collect(),
        categories: Vec::new(),
        status: matches!(special, Builtin::Namespace | Builtin::CustomResourceDefinition),
        scale: None,
        selectable_fields: Vec::new(),
        schemas: BTreeMap::new(),
        printer_columns: BTreeMap::new(),
        types: [(
            version.to_owned(),
            Arc::new(
                machinist_apiserver_apply::TypeInfo::builtin(group, version, kind)
                    .unwrap_or_else(machinist_apiserver_apply::TypeInfo::deduced),
            ),
        )]
        .into(),
        builtin: Some(special),
        storage: ResourceKey::new(if special == Builtin::EventsV1 { "" } else { group }, plural),
    }
}

/// Every served resource.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    resources: Vec<Arc<Resource>>,
}

/// Why a CRD cannot be served.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CrdProblem(pub String);

impl Registry {
    /// The built-in resources.
    pub fn builtins() -> Vec<Resource> {
        let reviews = [
            ("authorization.k8s.io", "selfsubjectaccessreviews", "SelfSubjectAccessReview"),
            ("authorization.k8s.io", "selfsubjectrulesreviews", "SelfSubjectRulesReview"),
            ("authorization.k8s.io", "subjectaccessreviews", "SubjectAccessReview"),
            ("authentication.k8s.io", "selfsubjectreviews", "SelfSubjectReview"),
        ]
        .map(|(group, plural, kind)| builtin(group, "v1", plural, kind, false, &[], Builtin::Review));
        let mut builtins = vec![
            builtin("", "v1", "namespaces", "Namespace", false, &["ns"], Builtin::Namespace),
            builtin("", "v1", "secrets", "Secret", true, &[], Builtin::Secret),
            builtin("", "v1", "configmaps", "ConfigMap", true, &["cm"], Builtin::ConfigMap),
            builtin("", "v1", "events", "Event", true, &["ev"], Builtin::Event),
            builtin("events.k8s.io", "v1", "events", "Event", true, &["ev"], Builtin::EventsV1),
            builtin("coordination.k8s.io", "v1", "leases", "Lease", true, &[], Builtin::Lease),
            builtin(
                "apiextensions.k8s.io",
                "v1",
                "customresourcedefinitions",
                "CustomResourceDefinition",
                false,
                &["crd", "crds"],
                Builtin::CustomResourceDefinition,
            ),
            builtin("", "v1", "serviceaccounts", "ServiceAccount", true, &["sa"], Builtin::ServiceAccount),
            builtin("rbac.authorization.k8s.io", "v1", "roles", "Role", true, &[], Builtin::Role),
            builtin("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", false, &[], Builtin::ClusterRole),
            builtin("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", true, &[], Builtin::RoleBinding),
            builtin(
                "rbac.authorization.k8s.io",
                "v1",
                "clusterrolebindings",
                "ClusterRoleBinding",
                false,
                &[],
                Builtin::ClusterRoleBinding,
            ),
        ];
        builtins.extend(reviews);
        builtins
    }

    /// The built-ins plus the given CRDs (those that are not valid are skipped).
    pub fn with_crds<'a>(crds: impl IntoIterator<Item = &'a Value>) -> Self {
        let mut resources: Vec<Arc<Resource>> = Self::builtins().into_iter().map(Arc::new).collect();
        // A CRD being deleted is still served (its instances' finalizers must be removable);
        // only creates are refused meanwhile.
        for crd in crds {
            if let Ok(resource) = resource_from_crd(crd) {
                let clash = resources.iter().any(|r| r.group == resource.group && r.plural == resource.plural);
                if !clash {
                    resources.push(Arc::new(resource));
                }
            }
        }
        Self { resources }
    }

    /// The resource served at `group/version/plural`.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<Arc<Resource>> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.plural == plural && r.versions.iter().any(|v| v == version))
            .cloned()
    }

    /// Every resource.
    pub fn all(&self) -> &[Arc<Resource>] {
        &self.resources
    }

    /// Groups and their versions, core excluded, in order of first appearance.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for resource in self.resources.iter().filter(|r| !r.group.is_empty()) {
            match groups.iter_mut().find(|(g, _)| *g == resource.group) {
                Some((_, versions)) => {
                    for version in &resource.versions {
                        if !versions.contains(version) {
                            versions.push(version.clone());
                        }
                    }
                }
                None => groups.push((resource.group.clone(), resource.versions.clone())),
            }
        }
        groups
    }
}

/// Reads what a CRD serves. Only checks what serving needs; full CRD validation happens when it
/// is written.
pub fn resource_from_crd(crd: &Value) -> Result<Resource, CrdProblem> {
    let spec = &crd["spec"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let list = |v: &Value| -> Vec<String> {
        v.as_array().map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect()).unwrap_or_default()
    };
    let group = text(&spec["group"]);
    let names = &spec["names"];
    let plural = text(&names["plural"]);
    let kind = text(&names["kind"]);
    if group.is_empty() || plural.is_empty() || kind.is_empty() {
        return Err(CrdProblem("spec.group, spec.names.plural and spec.names.kind are required".into()));
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    let mut served: Vec<&Value> = versions.iter().filter(|v| v["served"].as_bool().unwrap_or(false)).collect();
    // Storage version first.
    served.sort_by_key(|v| !v["storage"].as_bool().unwrap_or(false));
    if served.is_empty() {
        return Err(CrdProblem("no served version".into()));
    }
    let storage = versions.iter().find(|v| v["storage"].as_bool().unwrap_or(false)).unwrap_or(served[0]);
    let subresources = &storage["subresources"];
    let scale = subresources.get("scale").filter(|s| s.is_object()).map(|s| ScalePaths {
        spec_replicas: text(&s["specReplicasPath"]),
        status_replicas: text(&s["statusReplicasPath"]),
        label_selector: s["labelSelectorPath"].as_str().map(str::to_owned),
    });
    let mut schemas = BTreeMap::new();
    let mut printer_columns = BTreeMap::new();
    let mut types = BTreeMap::new();
    let has_status = subresources.get("status").is_some_and(Value::is_object);
    for version in &served {
        let name = text(&version["name"]);
        if let Some(schema) = version.pointer("/schema/openAPIV3Schema") {
            schemas.insert(name.clone(), schema.clone());
            let info = machinist_apiserver_apply::TypeInfo::from_schema(schema)
                .map_err(|e| CrdProblem(format!("version {name}: {e}")))?
                .with_status_subresource(has_status);
            types.insert(name.clone(), Arc::new(info));
        }
        printer_columns.insert(name, version["additionalPrinterColumns"].as_array().cloned().unwrap_or_default());
    }
    Ok(Resource {
        versions: served.iter().map(|v| text(&v["name"])).collect(),
        singular: names["singular"].as_str().map(str::to_owned).unwrap_or_else(|| kind.to_lowercase()),
        list_kind: names["listKind"].as_str().map(str::to_owned).unwrap_or_else(|| format!("{kind}List")),
        namespaced: spec["scope"] != "Cluster",
        short_names: list(&names["shortNames"]),
        categories: list(&names["categories"]),
        status: has_status,
        scale,
        selectable_fields: storage["selectableFields"]
            .as_array()
            .map(|f| {
                f.iter().filter_map(|s| s["jsonPath"].as_str()).map(|p| p.trim_start_matches('.').to_owned()).collect()
            })
            .unwrap_or_default(),
        schemas,
        printer_columns,
        types,
        builtin: None,
        storage: ResourceKey::new(&group, &plural),
        plural,
        kind,
        group,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;

    /// A CRD as a caller would install it: namespaced, a status subresource, a short name, a
    /// category, a selectable field and a printer column.
    pub(crate) fn widget_crd() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList",
                          "shortNames": ["wd"], "categories": ["example"]},
                "versions": [{
                    "name": "v1alpha1", "served": true, "storage": true,
                    "subresources": {"status": {}},
                    "selectableFields": [{"jsonPath": ".status.phase"}],
                    "additionalPrinterColumns": [
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        {"name": "Size", "type": "integer", "jsonPath": ".spec.size", "priority": 1},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "description": "What the widget should be.", "properties": {
                            "size": {"type": "integer", "description": "How big, in units."},
                            "colour": {"type": "string"},
                        }},
                        "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
                    }}},
                }],
            },
        })
    }

    #[test]
    fn crds_are_served_with_their_names() {
        let registry = Registry::with_crds(&[widget_crd()]);
        let widgets = registry.find("example.com", "v1alpha1", "widgets").unwrap();
        assert_eq!(widgets.kind, "Widget");
        assert!(widgets.namespaced && widgets.status);
        assert_eq!(widgets.short_names, ["wd"]);
        assert_eq!(widgets.categories, ["example"]);
        assert!(widgets.field_selectable("status.phase"));
        assert!(!widgets.field_selectable("spec.size"));
        assert!(registry.find("example.com", "v1", "widgets").is_none());
        assert!(registry.groups().iter().any(|(g, v)| g == "example.com" && v == &["v1alpha1"]));
        assert_eq!(registry.find("", "v1", "namespaces").unwrap().builtin, Some(Builtin::Namespace));
    }
}
