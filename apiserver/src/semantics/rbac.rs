//! Role-based access control as Kubernetes evaluates it (`k8s.io/kubernetes/plugin/pkg/auth/
//! authorizer/rbac`): Roles and ClusterRoles hold rules, RoleBindings and ClusterRoleBindings
//! grant them to users, groups and ServiceAccounts. Pure: a [`Policy`] is built from the stored
//! objects and answers [`Policy::authorize`] and [`Policy::rules_for`] without I/O.
//!
//! As in Kubernetes: a RoleBinding grants its Role's (or ClusterRole's) rules in its own
//! namespace only; a ClusterRoleBinding grants everywhere, cluster-scoped resources and
//! non-resource URLs included; rules only ever allow (there is no deny); a rule with
//! `resourceNames` never allows `create`, `list`, `watch` or `deletecollection` of unnamed
//! requests; `*` matches every verb, group, resource or name, `*/scale` every resource's scale
//! and `pods/*` every subresource of pods; a non-resource URL ending in `*` is a prefix.
//! Aggregated ClusterRoles are not built (the issue asked for none).

use std::collections::HashMap;

use serde_json::Value;

use crate::semantics::errors::Cause;

/// Who makes a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// `machinist-admin`, `system:serviceaccount:machinist-system:machinist-boot`.
    pub name: String,
    /// The ServiceAccount's uid, for ServiceAccounts.
    pub uid: String,
    /// `system:masters`, `system:authenticated`, `system:serviceaccounts:<namespace>`…
    pub groups: Vec<String>,
}

/// The group whose members may do anything, before any rule is read (Kubernetes'
/// privileged group).
pub const MASTERS: &str = "system:masters";
/// Every authenticated user's group.
pub const AUTHENTICATED: &str = "system:authenticated";
/// The user-name prefix of ServiceAccounts.
pub const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

impl User {
    /// The user a ServiceAccount authenticates as, with its groups.
    pub fn service_account(namespace: &str, name: &str, uid: &str) -> Self {
        Self {
            name: format!("{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"),
            uid: uid.to_owned(),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                AUTHENTICATED.into(),
            ],
        }
    }

    /// Whether the user is in the privileged group.
    pub fn is_master(&self) -> bool {
        self.groups.iter().any(|g| g == MASTERS)
    }

    /// The ServiceAccount's `(namespace, name)`, for ServiceAccount users.
    pub fn service_account_name(&self) -> Option<(&str, &str)> {
        self.name.strip_prefix(SERVICE_ACCOUNT_PREFIX)?.split_once(':')
    }
}

/// What a request asks to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attributes {
    /// A request on a resource.
    Resource(ResourceAttributes),
    /// A request on another path (`/version`, `/apis`).
    NonResource {
        /// `get`, `post`…
        verb: String,
        /// The path.
        path: String,
    },
}

/// A request on a resource.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceAttributes {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`…
    pub verb: String,
    /// API group, empty for the core group.
    pub group: String,
    /// Plural resource name.
    pub resource: String,
    /// Subresource, empty for none.
    pub subresource: String,
    /// Namespace, empty for cluster-scoped resources and requests across namespaces.
    pub namespace: String,
    /// Object name, empty for collections and creates.
    pub name: String,
}

/// One rule of a Role or ClusterRole.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    /// Verbs.
    pub verbs: Vec<String>,
    /// API groups.
    pub api_groups: Vec<String>,
    /// Resources, `resource/subresource` for subresources.
    pub resources: Vec<String>,
    /// Object names; empty: every object.
    pub resource_names: Vec<String>,
    /// Non-resource URLs (ClusterRoles only).
    pub non_resource_urls: Vec<String>,
}

fn strings(value: &Value) -> Vec<String> {
    value.as_array().map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect()).unwrap_or_default()
}

impl Rule {
    /// A rule from its JSON form (`verbs`, `apiGroups`, `resources`, `resourceNames`,
    /// `nonResourceURLs`).
    pub fn from_json(rule: &Value) -> Self {
        Self {
            verbs: strings(&rule["verbs"]),
            api_groups: strings(&rule["apiGroups"]),
            resources: strings(&rule["resources"]),
            resource_names: strings(&rule["resourceNames"]),
            non_resource_urls: strings(&rule["nonResourceURLs"]),
        }
    }

    /// The JSON form, as SelfSubjectRulesReview and Roles carry it (empty lists left out).
    pub fn to_json(&self) -> Value {
        let mut rule = serde_json::Map::new();
        for (key, list) in [
            ("verbs", &self.verbs),
            ("apiGroups", &self.api_groups),
            ("resources", &self.resources),
            ("resourceNames", &self.resource_names),
            ("nonResourceURLs", &self.non_resource_urls),
        ] {
            if !list.is_empty() || key == "verbs" {
                rule.insert(key.into(), list.iter().map(|s| Value::String(s.clone())).collect());
            }
        }
        Value::Object(rule)
    }

    fn allows_verb(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == "*" || v == verb)
    }

    fn allows_resource(&self, attributes: &ResourceAttributes) -> bool {
        if !self.allows_verb(&attributes.verb) || !self.api_groups.iter().any(|g| g == "*" || *g == attributes.group) {
            return false;
        }
        let resource_matches =
            self.resources.iter().any(|r| resource_pattern_matches(r, &attributes.resource, &attributes.subresource));
        let name_matches = self.resource_names.is_empty()
            || (!attributes.name.is_empty() && self.resource_names.contains(&attributes.name));
        resource_matches && name_matches
    }

    fn allows_path(&self, verb: &str, path: &str) -> bool {
        self.allows_verb(verb)
            && self.non_resource_urls.iter().any(|url| match url.strip_suffix('*') {
                Some(prefix) => path.starts_with(prefix),
                None => url == path,
            })
    }

    /// Whether the rule allows the request.
    pub fn allows(&self, attributes: &Attributes) -> bool {
        match attributes {
            Attributes::Resource(resource) => self.allows_resource(resource),
            Attributes::NonResource { verb, path } => self.allows_path(verb, path),
        }
    }
}

/// Whether a rule's resource entry (`pods`, `pods/log`, `*`, `*/scale`, `pods/*`) covers
/// `resource` with `subresource` (empty: none).
fn resource_pattern_matches(pattern: &str, resource: &str, subresource: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.split_once('/') {
        None => subresource.is_empty() && pattern == resource,
        Some((base, sub)) => {
            !subresource.is_empty() && (base == "*" || base == resource) && (sub == "*" || sub == subresource)
        }
    }
}

/// A subject of a binding.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Subject {
    User(String),
    Group(String),
    ServiceAccount { namespace: String, name: String },
}

impl Subject {
    fn from_json(subject: &Value, binding_namespace: Option<&str>) -> Option<Self> {
        let name = subject["name"].as_str()?.to_owned();
        match subject["kind"].as_str()? {
            "User" => Some(Self::User(name)),
            "Group" => Some(Self::Group(name)),
            "ServiceAccount" => {
                let namespace = subject["namespace"].as_str().filter(|n| !n.is_empty()).or(binding_namespace)?;
                Some(Self::ServiceAccount { namespace: namespace.to_owned(), name })
            }
            _ => None,
        }
    }

    fn matches(&self, user: &User) -> bool {
        match self {
            Self::User(name) => *name == user.name,
            Self::Group(group) => user.groups.iter().any(|g| g == group),
            Self::ServiceAccount { namespace, name } => {
                user.service_account_name() == Some((namespace.as_str(), name.as_str()))
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::User(name) => format!("User {name:?}"),
            Self::Group(name) => format!("Group {name:?}"),
            Self::ServiceAccount { namespace, name } => format!("ServiceAccount \"{name}/{namespace}\""),
        }
    }
}

/// What a binding grants.
#[derive(Clone, Debug, PartialEq, Eq)]
enum RoleRef {
    Role(String),
    ClusterRole(String),
}

#[derive(Clone, Debug)]
struct Binding {
    /// `None` for ClusterRoleBindings.
    namespace: Option<String>,
    name: String,
    role: RoleRef,
    subjects: Vec<Subject>,
}

impl Binding {
    fn from_json(binding: &Value) -> Option<Self> {
        let namespace = binding.pointer("/metadata/namespace").and_then(Value::as_str).map(str::to_owned);
        let name = binding.pointer("/metadata/name").and_then(Value::as_str)?.to_owned();
        let role_name = binding.pointer("/roleRef/name").and_then(Value::as_str)?.to_owned();
        let role = match binding.pointer("/roleRef/kind").and_then(Value::as_str)? {
            "Role" if namespace.is_some() => RoleRef::Role(role_name),
            "ClusterRole" => RoleRef::ClusterRole(role_name),
            _ => return None,
        };
        let subjects = binding["subjects"]
            .as_array()
            .map(|s| s.iter().filter_map(|s| Subject::from_json(s, namespace.as_deref())).collect())
            .unwrap_or_default();
        Some(Self { namespace, name, role, subjects })
    }
}

/// A decision and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Allowed.
    pub allowed: bool,
    /// Which binding allowed it (`RBAC: allowed by …`), empty when denied.
    pub reason: String,
}

/// Every Role, ClusterRole and binding, ready to answer.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    roles: HashMap<(String, String), Vec<Rule>>,
    cluster_roles: HashMap<String, Vec<Rule>>,
    bindings: Vec<Binding>,
}

fn rules_of(role: &Value) -> Vec<Rule> {
    role["rules"].as_array().map(|r| r.iter().map(Rule::from_json).collect()).unwrap_or_default()
}

impl Policy {
    /// A policy from the stored objects of each kind.
    pub fn new<'a>(
        roles: impl IntoIterator<Item = &'a Value>,
        cluster_roles: impl IntoIterator<Item = &'a Value>,
        role_bindings: impl IntoIterator<Item = &'a Value>,
        cluster_role_bindings: impl IntoIterator<Item = &'a Value>,
    ) -> Self {
        let meta = |o: &Value, f: &str| o.pointer(&format!("/metadata/{f}")).and_then(Value::as_str).map(str::to_owned);
        let roles =
            roles.into_iter().filter_map(|r| Some(((meta(r, "namespace")?, meta(r, "name")?), rules_of(r)))).collect();
        let cluster_roles = cluster_roles.into_iter().filter_map(|r| Some((meta(r, "name")?, rules_of(r)))).collect();
        let namespaced = role_bindings
            .into_iter()
            .filter(|b| b.pointer("/metadata/namespace").and_then(Value::as_str).is_some_and(|n| !n.is_empty()))
            .filter_map(Binding::from_json);
        let cluster_wide = cluster_role_bindings.into_iter().filter_map(Binding::from_json).map(|mut b| {
            // A ClusterRoleBinding has no namespace, even if a client sent one.
            b.namespace = None;
            b
        });
        let bindings = namespaced.chain(cluster_wide).collect();
        Self { roles, cluster_roles, bindings }
    }

    fn role_rules(&self, binding: &Binding) -> &[Rule] {
        let rules = match (&binding.role, &binding.namespace) {
            (RoleRef::Role(name), Some(namespace)) => self.roles.get(&(namespace.clone(), name.clone())),
            (RoleRef::ClusterRole(name), _) => self.cluster_roles.get(name),
            (RoleRef::Role(_), None) => None,
        };
        rules.map(Vec::as_slice).unwrap_or_default()
    }

    /// The rules of the Role `name` in `namespace` (`kind` `Role`) or of the ClusterRole `name`.
    pub fn rules_of(&self, kind: &str, namespace: &str, name: &str) -> Option<&[Rule]> {
        match kind {
            "Role" => self.roles.get(&(namespace.to_owned(), name.to_owned())).map(Vec::as_slice),
            "ClusterRole" => self.cluster_roles.get(name).map(Vec::as_slice),
            _ => None,
        }
    }

    /// The bindings of `user` that apply in `namespace` (`""`: cluster-wide only).
    fn bindings_for<'a>(&'a self, user: &'a User, namespace: &'a str) -> impl Iterator<Item = &'a Binding> + 'a {
        self.bindings.iter().filter(move |b| {
            let applies = match &b.namespace {
                None => true,
                Some(ns) => !namespace.is_empty() && ns == namespace,
            };
            applies && b.subjects.iter().any(|s| s.matches(user))
        })
    }

    /// Whether `user` may do what `attributes` says.
    pub fn authorize(&self, user: &User, attributes: &Attributes) -> Decision {
        if user.is_master() {
            return Decision { allowed: true, reason: format!("RBAC: {MASTERS} may do anything") };
        }
        let namespace = match attributes {
            Attributes::Resource(r) => r.namespace.as_str(),
            // Non-resource URLs are granted by ClusterRoleBindings only.
            Attributes::NonResource { .. } => "",
        };
        for binding in self.bindings_for(user, namespace) {
            if let Attributes::NonResource { .. } = attributes
                && binding.namespace.is_some()
            {
                continue;
            }
            if self.role_rules(binding).iter().any(|rule| rule.allows(attributes)) {
                let subject =
                    binding.subjects.iter().find(|s| s.matches(user)).map(Subject::describe).unwrap_or_default();
                let (binding_kind, role) = match (&binding.namespace, &binding.role) {
                    (Some(ns), RoleRef::Role(role)) => {
                        (format!("RoleBinding \"{}/{ns}\"", binding.name), format!("Role \"{role}\""))
                    }
                    (Some(ns), RoleRef::ClusterRole(role)) => {
                        (format!("RoleBinding \"{}/{ns}\"", binding.name), format!("ClusterRole \"{role}\""))
                    }
                    (None, role) => (
                        format!("ClusterRoleBinding \"{}\"", binding.name),
                        match role {
                            RoleRef::Role(r) | RoleRef::ClusterRole(r) => format!("ClusterRole \"{r}\""),
                        },
                    ),
                };
                return Decision {
                    allowed: true,
                    reason: format!("RBAC: allowed by {binding_kind} of {role} to {subject}"),
                };
            }
        }
        Decision { allowed: false, reason: String::new() }
    }

    /// The rules `user` holds in `namespace` (cluster-wide ones included), as
    /// SelfSubjectRulesReview lists them: resource rules, then non-resource rules.
    pub fn rules_for(&self, user: &User, namespace: &str) -> (Vec<Rule>, Vec<Rule>) {
        if user.is_master() {
            let all = |non_resource: bool| Rule {
                verbs: vec!["*".into()],
                api_groups: if non_resource { vec![] } else { vec!["*".into()] },
                resources: if non_resource { vec![] } else { vec!["*".into()] },
                resource_names: vec![],
                non_resource_urls: if non_resource { vec!["*".into()] } else { vec![] },
            };
            return (vec![all(false)], vec![all(true)]);
        }
        let (mut resource_rules, mut non_resource_rules) = (Vec::new(), Vec::new());
        for binding in self.bindings_for(user, namespace) {
            for rule in self.role_rules(binding) {
                if !rule.resources.is_empty() && !resource_rules.contains(rule) {
                    let mut only_resources = rule.clone();
                    only_resources.non_resource_urls.clear();
                    resource_rules.push(only_resources);
                }
                if !rule.non_resource_urls.is_empty() && binding.namespace.is_none() {
                    let paths = Rule {
                        verbs: rule.verbs.clone(),
                        non_resource_urls: rule.non_resource_urls.clone(),
                        ..Rule::default()
                    };
                    if !non_resource_rules.contains(&paths) {
                        non_resource_rules.push(paths);
                    }
                }
            }
        }
        (resource_rules, non_resource_rules)
    }

    /// Whether every permission of `rules` is one `user` holds in `namespace` (`""`:
    /// cluster-wide): Kubernetes' escalation check, made by breaking the rules into single
    /// verb × group × resource × name (or verb × URL) permissions, as its `Covers` does. A `*`
    /// in `rules` is covered only by a `*`.
    pub fn covers(&self, user: &User, namespace: &str, rules: &[Rule]) -> Result<(), Vec<String>> {
        if user.is_master() {
            return Ok(());
        }
        let held: Vec<&Rule> = self.bindings_for(user, namespace).flat_map(|b| self.role_rules(b)).collect();
        let mut missing = Vec::new();
        for rule in rules {
            for verb in &rule.verbs {
                for url in &rule.non_resource_urls {
                    let covered = held.iter().any(|h| {
                        h.allows_verb(verb)
                            && h.non_resource_urls
                                .iter()
                                .any(|u| u == url || u.strip_suffix('*').is_some_and(|prefix| url.starts_with(prefix)))
                    });
                    if !covered {
                        missing.push(format!("{{NonResourceURLs:[{url}], Verbs:[{verb}]}}"));
                    }
                }
                for group in &rule.api_groups {
                    for resource in &rule.resources {
                        let names: Vec<Option<&String>> = if rule.resource_names.is_empty() {
                            vec![None]
                        } else {
                            rule.resource_names.iter().map(Some).collect()
                        };
                        for name in names {
                            let (base, sub) = resource.split_once('/').unwrap_or((resource.as_str(), ""));
                            let covered = held.iter().any(|h| {
                                h.allows_verb(verb)
                                    && h.api_groups.iter().any(|g| g == "*" || g == group)
                                    && h.resources.iter().any(|r| resource_pattern_matches(r, base, sub))
                                    && (h.resource_names.is_empty()
                                        || name.is_some_and(|n| h.resource_names.contains(n)))
                            });
                            if !covered {
                                let names = name.map(|n| format!(" ResourceNames:[{n}],")).unwrap_or_default();
                                missing.push(format!(
                                    "{{APIGroups:[{group:?}], Resources:[{resource:?}],{names} Verbs:[{verb:?}]}}"
                                ));
                            }
                        }
                    }
                }
            }
        }
        if missing.is_empty() { Ok(()) } else { Err(missing) }
    }
}

fn required(field: String, message: &str) -> Cause {
    Cause { reason: "FieldValueRequired".into(), message: format!("Required value: {message}"), field }
}

fn invalid(field: String, message: String) -> Cause {
    Cause { reason: "FieldValueInvalid".into(), message, field }
}

/// What is wrong with a Role's (`cluster`: ClusterRole's) rules, as Kubernetes' validation
/// words it.
pub fn role_problems(role: &Value, cluster: bool) -> Vec<Cause> {
    let mut causes = Vec::new();
    let rules = match &role["rules"] {
        Value::Null => return causes,
        Value::Array(rules) => rules,
        _ => return vec![invalid("rules".into(), "Invalid value: must be a list".into())],
    };
    for (i, value) in rules.iter().enumerate() {
        let field = |f: &str| format!("rules[{i}].{f}");
        for list in ["verbs", "apiGroups", "resources", "resourceNames", "nonResourceURLs"] {
            if let Some(v) = value.get(list).filter(|v| !v.is_null())
                && !v.as_array().is_some_and(|a| a.iter().all(Value::is_string))
            {
                causes.push(invalid(field(list), "Invalid value: must be a list of strings".into()));
            }
        }
        let rule = Rule::from_json(value);
        if rule.verbs.is_empty() {
            causes.push(required(field("verbs"), "verbs must contain at least one value"));
        }
        if !rule.non_resource_urls.is_empty() {
            if !cluster {
                causes.push(invalid(
                    field("nonResourceURLs"),
                    format!(
                        "Invalid value: {:?}: namespaced rules cannot apply to non-resource URLs",
                        rule.non_resource_urls
                    ),
                ));
            }
            if !rule.api_groups.is_empty() || !rule.resources.is_empty() || !rule.resource_names.is_empty() {
                causes.push(invalid(
                    field("nonResourceURLs"),
                    format!(
                        "Invalid value: {:?}: rules cannot apply to both regular resources and non-resource URLs",
                        rule.non_resource_urls
                    ),
                ));
            }
            continue;
        }
        if rule.api_groups.is_empty() {
            causes.push(required(field("apiGroups"), "resource rules must supply at least one api group"));
        }
        if rule.resources.is_empty() {
            causes.push(required(field("resources"), "resource rules must supply at least one resource"));
        }
    }
    causes
}

/// What is wrong with a RoleBinding (`namespaced`) or ClusterRoleBinding, `old` its stored
/// form on updates (its `roleRef` cannot change).
pub fn binding_problems(binding: &Value, old: Option<&Value>, namespaced: bool) -> Vec<Cause> {
    let mut causes = Vec::new();
    let role_ref = &binding["roleRef"];
    match role_ref["kind"].as_str() {
        Some("ClusterRole") => {}
        Some("Role") if namespaced => {}
        other => {
            let supported = if namespaced { r#""Role", "ClusterRole""# } else { r#""ClusterRole""# };
            causes.push(Cause {
                reason: "FieldValueNotSupported".into(),
                message: format!("Unsupported value: {:?}: supported values: {supported}", other.unwrap_or_default()),
                field: "roleRef.kind".into(),
            });
        }
    }
    if role_ref["name"].as_str().is_none_or(str::is_empty) {
        causes.push(required("roleRef.name".into(), ""));
    }
    if role_ref["apiGroup"].as_str().is_some_and(|g| g != "rbac.authorization.k8s.io") {
        causes.push(Cause {
            reason: "FieldValueNotSupported".into(),
            message: format!(
                r#"Unsupported value: {}: supported values: "rbac.authorization.k8s.io""#,
                role_ref["apiGroup"]
            ),
            field: "roleRef.apiGroup".into(),
        });
    }
    if let Some(old) = old
        && old["roleRef"] != *role_ref
    {
        causes.push(invalid("roleRef".into(), format!("Invalid value: {role_ref}: cannot change roleRef")));
    }
    for (i, subject) in binding["subjects"].as_array().map(Vec::as_slice).unwrap_or_default().iter().enumerate() {
        let field = |f: &str| format!("subjects[{i}].{f}");
        if subject["name"].as_str().is_none_or(str::is_empty) {
            causes.push(required(field("name"), ""));
        }
        match subject["kind"].as_str() {
            Some("User" | "Group") => {}
            Some("ServiceAccount") => {
                if !namespaced && subject["namespace"].as_str().is_none_or(str::is_empty) {
                    causes.push(required(field("namespace"), ""));
                }
            }
            other => causes.push(Cause {
                reason: "FieldValueNotSupported".into(),
                message: format!(
                    r#"Unsupported value: {:?}: supported values: "ServiceAccount", "User", "Group""#,
                    other.unwrap_or_default()
                ),
                field: field("kind"),
            }),
        }
    }
    causes
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn resource(verb: &str, group: &str, resource: &str, namespace: &str, name: &str) -> Attributes {
        let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
        Attributes::Resource(ResourceAttributes {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: subresource.into(),
            namespace: namespace.into(),
            name: name.into(),
        })
    }

    fn boot() -> User {
        User::service_account("machinist-system", "boot", "u1")
    }

    fn policy() -> Policy {
        let roles = [json!({
            "metadata": {"namespace": "machinist-system", "name": "tokens"},
            "rules": [{"verbs": ["get", "list", "watch", "create"], "apiGroups": [""], "resources": ["secrets"]}],
        })];
        let cluster_roles = [
            json!({"metadata": {"name": "machines"}, "rules": [
                {"verbs": ["get", "list", "watch"], "apiGroups": ["machinist.dev"], "resources": ["machines"]},
                {"verbs": ["patch"], "apiGroups": ["machinist.dev"], "resources": ["machines/status"]},
                {"verbs": ["get", "update"], "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["log-a"]},
            ]}),
            json!({"metadata": {"name": "discovery"}, "rules": [{"verbs": ["get"], "nonResourceURLs": ["/api", "/apis/*"]}]}),
        ];
        let role_bindings = [
            json!({"metadata": {"namespace": "machinist-system", "name": "boot-tokens"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "tokens"},
                   "subjects": [{"kind": "ServiceAccount", "name": "boot"}]}),
            json!({"metadata": {"namespace": "default", "name": "boot-machines"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "machines"},
                   "subjects": [{"kind": "ServiceAccount", "name": "boot", "namespace": "machinist-system"}]}),
        ];
        let cluster_role_bindings = [json!({"metadata": {"name": "discovery"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "discovery"},
            "subjects": [{"kind": "Group", "name": "system:authenticated"}]})];
        Policy::new(&roles, &cluster_roles, &role_bindings, &cluster_role_bindings)
    }

    #[test]
    fn a_role_binding_grants_in_its_namespace_only() {
        let policy = policy();
        let allowed = |a: Attributes| policy.authorize(&boot(), &a).allowed;
        assert!(allowed(resource("get", "", "secrets", "machinist-system", "t")));
        assert!(!allowed(resource("get", "", "secrets", "default", "t")));
        assert!(!allowed(resource("list", "", "secrets", "", "")), "across namespaces needs a cluster-wide grant");
        assert!(!allowed(resource("delete", "", "secrets", "machinist-system", "t")));
        // A ClusterRole bound by a RoleBinding: its rules in that namespace.
        assert!(allowed(resource("watch", "machinist.dev", "machines", "default", "")));
        assert!(!allowed(resource("watch", "machinist.dev", "machines", "other", "")));
        assert!(!allowed(resource("watch", "machinist.dev", "machines", "", "")));
    }

    #[test]
    fn subresources_and_names_must_match() {
        let policy = policy();
        let allowed = |a: Attributes| policy.authorize(&boot(), &a).allowed;
        assert!(allowed(resource("patch", "machinist.dev", "machines/status", "default", "m1")));
        assert!(
            !allowed(resource("patch", "machinist.dev", "machines", "default", "m1")),
            "the spec is not the status"
        );
        assert!(!allowed(resource("get", "machinist.dev", "machines/status", "default", "m1")));
        assert!(allowed(resource("get", "", "configmaps", "default", "log-a")));
        assert!(!allowed(resource("get", "", "configmaps", "default", "log-b")));
        assert!(!allowed(resource("list", "", "configmaps", "default", "")), "a named rule never allows a list");
    }

    #[test]
    fn non_resource_urls_need_a_cluster_binding_and_match_prefixes() {
        let policy = policy();
        let path = |p: &str| Attributes::NonResource { verb: "get".into(), path: p.into() };
        assert!(policy.authorize(&boot(), &path("/api")).allowed);
        assert!(policy.authorize(&boot(), &path("/apis/machinist.dev")).allowed);
        assert!(!policy.authorize(&boot(), &path("/version")).allowed);
        let decision = policy.authorize(&boot(), &path("/api"));
        assert_eq!(
            decision.reason,
            "RBAC: allowed by ClusterRoleBinding \"discovery\" of ClusterRole \"discovery\" to Group \"system:authenticated\""
        );
    }

    #[test]
    fn masters_may_do_anything_and_strangers_nothing() {
        let policy = policy();
        let admin = User { name: "admin".into(), uid: String::new(), groups: vec![MASTERS.into()] };
        assert!(policy.authorize(&admin, &resource("delete", "", "secrets", "default", "x")).allowed);
        let other = User::service_account("machinist-system", "operator", "u2");
        assert!(!policy.authorize(&other, &resource("get", "", "secrets", "machinist-system", "t")).allowed);
        // A ServiceAccount of another namespace with the same name is another subject.
        let lookalike = User::service_account("default", "boot", "u3");
        assert!(!policy.authorize(&lookalike, &resource("get", "", "secrets", "machinist-system", "t")).allowed);
    }

    #[test]
    fn wildcards_cover_resources_and_subresources() {
        let rules = [json!({"metadata": {"name": "r"}, "rules": [
            {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*/scale", "widgets/*"]},
        ]})];
        let bindings = [json!({"metadata": {"name": "b"},
            "roleRef": {"kind": "ClusterRole", "name": "r"}, "subjects": [{"kind": "User", "name": "u"}]})];
        let policy = Policy::new(&[], &rules, &[], &bindings);
        let user = User { name: "u".into(), uid: String::new(), groups: vec![] };
        assert!(policy.authorize(&user, &resource("update", "apps", "deployments/scale", "x", "d")).allowed);
        assert!(policy.authorize(&user, &resource("get", "g", "widgets/status", "x", "w")).allowed);
        assert!(!policy.authorize(&user, &resource("get", "g", "widgets", "x", "w")).allowed);
    }

    #[test]
    fn rules_are_listed_per_namespace() {
        let policy = policy();
        let (resources, paths) = policy.rules_for(&boot(), "machinist-system");
        assert_eq!(resources.len(), 1);
        assert_eq!(resources[0].resources, ["secrets"]);
        assert_eq!(paths.len(), 1);
        let (resources, _) = policy.rules_for(&boot(), "default");
        assert_eq!(resources.len(), 3);
        let (resources, _) = policy.rules_for(&boot(), "elsewhere");
        assert!(resources.is_empty());
    }

    #[test]
    fn bad_roles_and_bindings_are_explained() {
        let role = json!({"rules": [
            {"verbs": [], "apiGroups": [""], "resources": ["secrets"]},
            {"verbs": ["get"], "nonResourceURLs": ["/x"], "resources": ["pods"]},
            {"verbs": ["get"]},
        ]});
        let fields: Vec<String> = role_problems(&role, false).into_iter().map(|c| c.field).collect();
        assert_eq!(
            fields,
            [
                "rules[0].verbs",
                "rules[1].nonResourceURLs",
                "rules[1].nonResourceURLs",
                "rules[2].apiGroups",
                "rules[2].resources"
            ]
        );
        assert!(role_problems(&json!({"rules": [{"verbs": ["get"], "nonResourceURLs": ["/x"]}]}), true).is_empty());
        let binding = json!({"roleRef": {"kind": "Role", "name": "r"}, "subjects": [{"kind": "ServiceAccount", "name": "s"}, {"kind": "Robot", "name": "x"}]});
        let fields: Vec<String> = binding_problems(&binding, None, false).into_iter().map(|c| c.field).collect();
        assert_eq!(fields, ["roleRef.kind", "subjects[0].namespace", "subjects[1].kind"]);
        let changed = json!({"roleRef": {"kind": "ClusterRole", "name": "other"}});
        let old = json!({"roleRef": {"kind": "ClusterRole", "name": "r"}});
        assert_eq!(binding_problems(&changed, Some(&old), true)[0].field, "roleRef");
    }

    #[test]
    fn escalation_is_refused_beyond_what_the_user_holds() {
        let policy = policy();
        let asked = |v: Value| vec![Rule::from_json(&v)];
        assert!(
            policy
                .covers(
                    &boot(),
                    "machinist-system",
                    &asked(json!({"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]}))
                )
                .is_ok()
        );
        let missing = policy
            .covers(
                &boot(),
                "machinist-system",
                &asked(json!({"verbs": ["get", "delete"], "apiGroups": [""], "resources": ["secrets"]})),
            )
            .unwrap_err();
        assert_eq!(missing, [r#"{APIGroups:[""], Resources:["secrets"], Verbs:["delete"]}"#]);
        assert!(
            policy
                .covers(
                    &boot(),
                    "default",
                    &asked(json!({"verbs": ["*"], "apiGroups": [""], "resources": ["secrets"]}))
                )
                .is_err()
        );
    }
}
