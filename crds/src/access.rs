//! Who may do what: the ServiceAccounts of machinist's two components and the least-privilege
//! RBAC each gets, defined once for `machinist up` (which runs them with these identities in
//! its embedded control plane) and the Helm chart. Each rule names exactly the verbs the code
//! uses:
//!
//! - the **operator** reconciles Machines, HardwareProfiles, Cmdbs and Roles in every
//!   namespace (finalizers by patch, status by server-side apply and replace), publishes
//!   Events and holds its leader-election Lease; in the system namespace it also reads
//!   Hypervisors and writes their status. It reads no Secret at all.
//! - the **boot services** face the boot network, so they get least of all: in the Machine
//!   namespace they serve, they read Machines, Cmdbs and Roles, create Machines
//!   (auto-registration) and write only Machine *status* (reports, boot timeline, install
//!   progress), keep agent logs in ConfigMaps and publish Events; Secrets they read and write
//!   only in their token namespace, which holds nothing but agent tokens. They cannot change
//!   a Machine's spec, read any other Secret, or touch another namespace.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The namespace of machinist's own identities, leader-election Lease and agent tokens.
pub const SYSTEM_NAMESPACE: &str = "machinist-system";
/// The operator's ServiceAccount and ClusterRole.
pub const OPERATOR: &str = "machinist-operator";
/// The boot services' ServiceAccount and ClusterRole (bound per served namespace).
pub const BOOT: &str = "machinist-boot";
/// The boot services' Role on agent token Secrets, in their token namespace.
pub const BOOT_TOKENS: &str = "machinist-boot-tokens";
/// The operator's Role on its leader-election Lease.
pub const OPERATOR_LEADER: &str = "machinist-operator-leader";
/// The operator's Role on Hypervisors, in the system namespace where they live.
pub const OPERATOR_HYPERVISORS: &str = "machinist-operator-hypervisors";

const GROUP: &str = "machinist.dev";
const RBAC: &str = "rbac.authorization.k8s.io";

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    let strings = |s: &[&str]| Some(s.iter().map(|x| (*x).to_owned()).collect());
    PolicyRule {
        api_groups: strings(groups),
        resources: strings(resources),
        verbs: verbs.iter().map(|x| (*x).to_owned()).collect(),
        ..PolicyRule::default()
    }
}

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some([("app.kubernetes.io/part-of".to_owned(), "machinist".to_owned())].into()),
        ..ObjectMeta::default()
    }
}

fn subject(account: &str, namespace: &str) -> Vec<Subject> {
    vec![Subject {
        kind: "ServiceAccount".into(),
        name: account.to_owned(),
        namespace: Some(namespace.to_owned()),
        api_group: None,
    }]
}

fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef { api_group: RBAC.into(), kind: kind.into(), name: name.into() }
}

/// The operator's rules, in every namespace it reconciles.
pub fn operator_rules() -> Vec<PolicyRule> {
    let kinds = ["machines", "hardwareprofiles", "cmdbs", "roles"];
    let statuses = ["machines/status", "hardwareprofiles/status", "cmdbs/status", "roles/status"];
    vec![
        // Watch everything it reconciles; finalizers are added and removed by patch.
        rule(&[GROUP], &kinds, &["get", "list", "watch", "patch"]),
        // Status: server-side apply (patch) and the ledger's guarded replace (update).
        rule(&[GROUP], &statuses, &["get", "patch", "update"]),
        rule(&["events.k8s.io"], &["events"], &["create", "patch"]),
    ]
}

/// The operator's rules on its leader-election Lease, in the namespace of the Lease.
pub fn operator_leader_rules() -> Vec<PolicyRule> {
    vec![rule(&["coordination.k8s.io"], &["leases"], &["get", "create", "update"])]
}

/// The operator's rules on Hypervisors, in the namespace where they live: it probes them and
/// writes their status (capacity, placements) through its ledger.
pub fn operator_hypervisor_rules() -> Vec<PolicyRule> {
    vec![
        rule(&[GROUP], &["hypervisors"], &["get", "list", "watch"]),
        rule(&[GROUP], &["hypervisors/status"], &["get", "patch", "update"]),
    ]
}

/// The boot services' rules in the Machine namespace they serve.
pub fn boot_rules() -> Vec<PolicyRule> {
    vec![
        // Read Machines; create unknown ones (auto-registration). Never update or patch them:
        // a Machine's spec is not theirs to change.
        rule(&[GROUP], &["machines"], &["get", "list", "watch", "create"]),
        // Reports, boot timeline, install progress, registration phase.
        rule(&[GROUP], &["machines/status"], &["patch"]),
        rule(&[GROUP], &["cmdbs", "roles"], &["get", "list", "watch"]),
        // Agent logs (`machinist-log-<machine>`).
        rule(&[""], &["configmaps"], &["get", "create", "update"]),
        rule(&["events.k8s.io"], &["events"], &["create", "patch"]),
    ]
}

/// The boot services' rules in their token namespace: agent token Secrets, the only Secrets
/// there.
pub fn boot_token_rules() -> Vec<PolicyRule> {
    vec![rule(&[""], &["secrets"], &["get", "list", "watch", "create", "update", "delete"])]
}

/// Everything a deployment needs, as objects to apply: the namespaces named, the two ServiceAccounts (in
/// `system_namespace`), the operator's ClusterRole bound cluster-wide and its Lease and
/// Hypervisor Roles in `system_namespace`, and the boot services' ClusterRole bound in `machine_namespace` plus
/// their token Role in `token_namespace`.
pub fn objects(system_namespace: &str, machine_namespace: &str, token_namespace: &str) -> Vec<serde_json::Value> {
    let to_json = |v: Result<serde_json::Value, serde_json::Error>| v.unwrap_or_default();
    let typed = |kind: &str, api_version: &str, mut value: serde_json::Value| {
        value["apiVersion"] = api_version.into();
        value["kind"] = kind.into();
        value
    };
    let account = |name: &str| {
        typed(
            "ServiceAccount",
            "v1",
            to_json(serde_json::to_value(ServiceAccount {
                metadata: meta(name, Some(system_namespace)),
                ..ServiceAccount::default()
            })),
        )
    };
    let cluster_role = |name: &str, rules: Vec<PolicyRule>| {
        typed(
            "ClusterRole",
            "rbac.authorization.k8s.io/v1",
            to_json(serde_json::to_value(ClusterRole {
                metadata: meta(name, None),
                rules: Some(rules),
                ..ClusterRole::default()
            })),
        )
    };
    let role = |name: &str, namespace: &str, rules: Vec<PolicyRule>| {
        typed(
            "Role",
            "rbac.authorization.k8s.io/v1",
            to_json(serde_json::to_value(Role { metadata: meta(name, Some(namespace)), rules: Some(rules) })),
        )
    };
    let binding = |name: &str, namespace: &str, kind: &str, account: &str| {
        typed(
            "RoleBinding",
            "rbac.authorization.k8s.io/v1",
            to_json(serde_json::to_value(RoleBinding {
                metadata: meta(name, Some(namespace)),
                role_ref: role_ref(kind, name),
                subjects: Some(subject(account, system_namespace)),
            })),
        )
    };
    let mut namespaces: Vec<&str> = Vec::new();
    for namespace in [system_namespace, machine_namespace, token_namespace] {
        if !namespaces.contains(&namespace) {
            namespaces.push(namespace);
        }
    }
    let mut objects: Vec<serde_json::Value> = namespaces
        .iter()
        .map(|ns| {
            // Labelled, so the apply owns a field of it and applying it again writes nothing.
            let metadata = serde_json::to_value(meta(ns, None)).unwrap_or_default();
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": metadata})
        })
        .collect();
    objects.extend([
        account(OPERATOR),
        account(BOOT),
        cluster_role(OPERATOR, operator_rules()),
        typed(
            "ClusterRoleBinding",
            "rbac.authorization.k8s.io/v1",
            to_json(serde_json::to_value(ClusterRoleBinding {
                metadata: meta(OPERATOR, None),
                role_ref: role_ref("ClusterRole", OPERATOR),
                subjects: Some(subject(OPERATOR, system_namespace)),
            })),
        ),
        role(OPERATOR_LEADER, system_namespace, operator_leader_rules()),
        binding(OPERATOR_LEADER, system_namespace, "Role", OPERATOR),
        role(OPERATOR_HYPERVISORS, system_namespace, operator_hypervisor_rules()),
        binding(OPERATOR_HYPERVISORS, system_namespace, "Role", OPERATOR),
        cluster_role(BOOT, boot_rules()),
        binding(BOOT, machine_namespace, "ClusterRole", BOOT),
        role(BOOT_TOKENS, token_namespace, boot_token_rules()),
        binding(BOOT_TOKENS, token_namespace, "Role", BOOT),
    ]);
    objects
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_boot_services_never_write_a_machine_spec_nor_read_secrets_where_machines_live() {
        let rules = boot_rules();
        for rule in &rules {
            let resources = rule.resources.clone().unwrap_or_default();
            assert!(!resources.iter().any(|r| r == "secrets" || r == "*"), "{rule:?}");
            if resources.iter().any(|r| r == "machines") {
                assert!(
                    !rule.verbs.iter().any(|v| matches!(v.as_str(), "update" | "patch" | "delete" | "*")),
                    "{rule:?}"
                );
            }
        }
        let tokens = boot_token_rules();
        assert_eq!(tokens.len(), 1);
        assert_eq!(tokens[0].resources.as_deref(), Some(&["secrets".to_owned()][..]));
    }

    #[test]
    fn every_binding_names_a_role_that_is_defined() {
        let objects = objects("machinist-system", "default", "machinist-system");
        let defined: Vec<(String, String)> = objects
            .iter()
            .filter(|o| o["kind"] == "Role" || o["kind"] == "ClusterRole")
            .map(|o| {
                (
                    o["kind"].as_str().unwrap_or_default().to_owned(),
                    o["metadata"]["name"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        for binding in objects.iter().filter(|o| o["kind"].as_str().is_some_and(|k| k.ends_with("Binding"))) {
            let wanted = (
                binding["roleRef"]["kind"].as_str().unwrap_or_default().to_owned(),
                binding["roleRef"]["name"].as_str().unwrap_or_default().to_owned(),
            );
            assert!(defined.contains(&wanted), "{binding} refers to {wanted:?}");
        }
    }
}
