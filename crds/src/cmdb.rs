//! `Cmdb`: a pool of per-machine settings (addresses, hostnames…), eDeploy's `.cmdb` file.

// clippy reads the repeated `type_ = …` of several `printcolumn(…)` as one duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::Conditions;

/// CEL rule: every key of the map under validation is a variable name.
const VARIABLE_KEYS_RULE: &str = "self.all(k, k.matches('^[A-Za-z_][A-Za-z0-9_]*$'))";
const VARIABLE_KEYS_MESSAGE: &str = "variable names are letters, digits and underscores, not starting with a digit";

/// Most entries written out in `spec.entries`. With [`MAX_ENTRY_VARIABLES`] it bounds the cost
/// of the CEL rule on their variable names, which Kubernetes refuses past 10,000,000 (here
/// 16,384 × (5 + 32 × 10) + 2 = 5,324,802); more entries are written as `generate` blocks (and
/// 16,384 small entries already take some 700 KB of the object).
pub const MAX_ENTRIES: usize = 16_384;

/// Most variables in one entry written out, or in one generate block's `patterns` or `lists`.
pub const MAX_ENTRY_VARIABLES: usize = 32;

/// `maxProperties` on the entries of `spec.entries`.
fn bound_entry_variables(schema: &mut schemars::Schema) {
    if let Some(items) = schema.get_mut("items").and_then(|i| i.as_object_mut()) {
        items.insert("maxProperties".to_owned(), MAX_ENTRY_VARIABLES.into());
    }
}

/// The entries a CMDB holds, written out or generated from ranges.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "machinist.dev",
    version = "v1alpha1",
    kind = "Cmdb",
    namespaced,
    status = "CmdbStatus",
    shortname = "cmdb",
    category = "machinist",
    derive = "PartialEq",
    doc = "A pool of per-machine settings (IP addresses, hostnames, any variable), each entry given to one machine at a time.",
    printcolumn(
        name = "Entries",
        type_ = "integer",
        json_path = ".status.total",
        description = "Entries after expansion"
    ),
    printcolumn(name = "Free", type_ = "integer", json_path = ".status.free", description = "Entries not allocated"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.entries) && size(self.entries) > 0) || (has(self.generate) && size(self.generate) > 0)").message("a Cmdb needs entries or generate"))]
pub struct CmdbSpec {
    /// Entries written out, each a map of variables (`ip`, `hostname`…). They come first, in
    /// order, before generated ones. At most 16,384 entries of at most 32 variables each; more
    /// entries are written as `generate` blocks.
    #[serde(default)]
    #[schemars(length(max = 16384), transform = bound_entry_variables)]
    #[x_kube(validation = Rule::new(format!("self.all(e, {})", VARIABLE_KEYS_RULE.replace("self", "e"))).message(VARIABLE_KEYS_MESSAGE))]
    pub entries: Vec<BTreeMap<String, String>>,

    /// Entries expanded from ranges, as eDeploy's `generate()` does it.
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub generate: Vec<GenerateBlock>,

    /// Settings every entry shares (netmask, gateway, DNS), added to its variables unless the
    /// entry sets them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<CmdbNetwork>,
}

/// One `generate({...})` call: every pattern expanded in step, one entry per step.
///
/// `ip: 192.168.122.3-7` and `hostname: host03-07` give five entries (`192.168.122.3`/`host03`
/// … `192.168.122.7`/`host07`). A pattern is a range `a-b` (descending if `a > b`,
/// zero-padded if `a` starts with 0), several joined by `:` (`10-12:20-22`), in any octet of an
/// IPv4 address; a value without a range is copied to every entry. Lists give their elements in
/// turn. Expansion stops at the shortest pattern or list.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GenerateBlock {
    /// Variable name → pattern; at most 32 variables.
    #[serde(default)]
    #[schemars(extend("maxProperties" = 32))]
    #[x_kube(validation = Rule::new(VARIABLE_KEYS_RULE).message(VARIABLE_KEYS_MESSAGE))]
    pub patterns: BTreeMap<String, String>,
    /// Variable name → values, taken one per entry (eDeploy's Python lists); at most 32
    /// variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    #[x_kube(validation = Rule::new(VARIABLE_KEYS_RULE).message(VARIABLE_KEYS_MESSAGE))]
    pub lists: BTreeMap<String, Vec<String>>,
}

/// Network settings shared by a CMDB's entries.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CmdbNetwork {
    /// Netmask, dotted (`255.255.255.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])$"
    ))]
    pub netmask: Option<String>,
    /// Default gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])$"
    ))]
    pub gateway: Option<String>,
    /// DNS servers, in order of preference.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 8),
        inner(regex(
            pattern = r"^((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])$"
        ))
    )]
    pub dns_servers: Vec<String>,
    /// DNS domain of the machines (`example.org`); the boot services' DHCP sends it (option 15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"),
        length(max = 253)
    )]
    pub domain: Option<String>,
}

/// Observed state of a CMDB: its size and who holds which entry.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CmdbStatus {
    /// Entries after expansion.
    #[serde(default)]
    pub total: i32,
    /// Entries not allocated.
    #[serde(default)]
    pub free: i32,
    /// Entries allocated, one per machine. This list is the source of truth: it is written
    /// whole by one writer (the operator's ledger), under optimistic concurrency, so that no
    /// entry is ever given to two machines. Atomic: with thousands of records, per-record field
    /// ownership would cost more than the write itself, and there is only one owner.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub allocations: Vec<CmdbAllocationRecord>,
    /// `Valid` (patterns expand; the expansion error otherwise), `Exhausted` (no free entry),
    /// `Duplicates` (two entries share an IP, naming them) and, while a deletion waits for the
    /// machines holding entries, `Deleting` (reason `InUse`), with transition times.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Conditions,
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// One allocated entry (eDeploy's `'used': 1` with the machine's variables).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CmdbAllocationRecord {
    /// Index of the entry in the expanded list.
    pub entry: i32,
    /// Machine holding it (same namespace).
    pub machine: String,
    /// The machine's variables merged into the entry when it was taken (`mac`, `eth`, `disk`…).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
}

/// Checks that a name is usable as a CMDB variable.
pub fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::VARIABLE_NAME_PATTERN;

    #[test]
    fn variable_names_follow_the_documented_pattern() {
        assert_eq!(VARIABLE_NAME_PATTERN, r"^[A-Za-z_][A-Za-z0-9_]*$");
        for good in ["ip", "hostname", "_x", "eth0"] {
            assert!(is_variable_name(good), "{good}");
        }
        for bad in ["", "0ip", "host-name", "a.b", "é"] {
            assert!(!is_variable_name(bad), "{bad}");
        }
    }
}

#[cfg(test)]
mod bounds {
    use kube::CustomResourceExt as _;

    use super::*;

    #[test]
    fn entries_and_variables_are_bounded_as_documented() {
        let crd = serde_json::to_value(Cmdb::crd()).unwrap_or_default();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
        assert_eq!(spec["entries"]["maxItems"], MAX_ENTRIES);
        assert_eq!(spec["entries"]["items"]["maxProperties"], MAX_ENTRY_VARIABLES);
        let block = &spec["generate"]["items"]["properties"];
        assert_eq!(block["patterns"]["maxProperties"], MAX_ENTRY_VARIABLES);
        assert_eq!(block["lists"]["maxProperties"], MAX_ENTRY_VARIABLES);
    }
}
