//! `Hypervisor`: a libvirt host that virtual Machines are placed on (the seeds' hypervisors,
//! chosen by hand with `virsh list` and `htop`).

// clippy reads the repeated `type_ = …` of several `printcolumn(…)` as one duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::common::{Conditions, LocalObjectRef};

/// Most placements one Hypervisor records (its VMs and those being created).
pub const MAX_PLACEMENTS: usize = 1024;

/// The libvirt URI schemes the operator connects with.
pub const URI_PATTERN: &str = r"^(qemu|test)([+](unix|ssh|libssh|libssh2|tls|tcp))?://";

/// A libvirt host the operator connects to, places virtual Machines on and reports on. Lives in
/// the operator's hypervisor namespace (`machinist-system` by default): hypervisors are shared
/// infrastructure, and their credentials sit beside them.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "machinist.dev",
    version = "v1alpha1",
    kind = "Hypervisor",
    namespaced,
    status = "HypervisorStatus",
    shortname = "hv",
    category = "machinist",
    derive = "PartialEq",
    doc = "A libvirt host that Machines with spec.provider.libvirt are placed on: the operator connects to it, reports its capacity and storage pools, and records the VMs placed on it.",
    printcolumn(
        name = "Reachable",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Reachable\")].status",
        description = "Whether the operator's last connection attempt succeeded"
    ),
    printcolumn(
        name = "Accelerator",
        type_ = "string",
        json_path = ".status.accelerator",
        description = "Accelerator the VMs get (KVM or TCG)"
    ),
    printcolumn(
        name = "Memory",
        type_ = "integer",
        json_path = ".status.allocatable.memoryMiB",
        description = "Memory VMs may be given, in MiB (capacity less the reserve, times the overcommit ratio)"
    ),
    printcolumn(
        name = "Committed",
        type_ = "integer",
        json_path = ".status.committed.memoryMiB",
        description = "Memory given to VMs placed here and to other running domains, in MiB"
    ),
    printcolumn(
        name = "VMs",
        type_ = "integer",
        json_path = ".status.placementCount",
        description = "Machines placed here"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(
        name = "URI",
        type_ = "string",
        json_path = ".spec.uri",
        priority = 1,
        description = "libvirt connection URI"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct HypervisorSpec {
    /// libvirt connection URI: `qemu:///system`, `qemu+ssh://root@hv1.example.org/system`,
    /// `qemu+libssh://…`, `qemu+tls://…`, `qemu+unix:///system?socket=/path`, or libvirt's
    /// `test:///default` driver (for trials).
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = Rule::new(format!("self.matches('{URI_PATTERN}')")).message("uri must be a qemu or test libvirt URI, e.g. qemu:///system or qemu+ssh://root@hv1/system"))]
    pub uri: String,

    /// Secret in this namespace with what the connection needs: `ssh-privatekey` and
    /// `known_hosts` (ssh, libssh), `ca.crt`, `tls.crt` and `tls.key` (tls). Not acted on yet:
    /// connections use the operator's own ssh and TLS configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<LocalObjectRef>,

    /// Accelerator of the VMs: `Auto` gives KVM when the host offers it, else TCG (QEMU's
    /// emulation, slower but available everywhere).
    #[serde(default)]
    pub accelerator: Accelerator,

    /// Memory VMs may be given, in percent of what the host has beyond `reservedMemoryMiB`
    /// (100: no overcommit, the seeds' practice; TCG guests cannot balloon).
    #[serde(default = "default_memory_overcommit")]
    #[schemars(range(min = 100, max = 400))]
    pub memory_overcommit_percent: i32,

    /// Virtual CPUs VMs may be given, in percent of the host's CPUs beyond `reservedCPUs`.
    #[serde(default = "default_cpu_overcommit")]
    #[schemars(range(min = 100, max = 1600))]
    pub cpu_overcommit_percent: i32,

    /// Memory kept for the host itself, in MiB.
    #[serde(rename = "reservedMemoryMiB", default = "default_reserved_memory")]
    #[schemars(range(min = 0, max = 16777216))]
    pub reserved_memory_mib: i32,

    /// CPUs kept for the host itself.
    #[serde(rename = "reservedCPUs", default)]
    #[schemars(range(min = 0, max = 4096))]
    pub reserved_cpus: i32,

    /// No new VMs are placed here (cordon); those placed stay.
    #[serde(default)]
    pub unschedulable: bool,

    /// Directory on the host where each VM's serial console is logged
    /// (`<dir>/<domain>-serial.log`, written by libvirt's virtlogd).
    #[serde(default = "default_console_log_dir")]
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = Rule::new("self.startsWith('/')").message("consoleLogDir must be an absolute path"))]
    pub console_log_dir: String,

    /// Seconds between connection probes (capacity, pools, reachability).
    #[serde(default = "default_probe_interval")]
    #[schemars(range(min = 5, max = 3600))]
    pub probe_interval_seconds: i32,
}

impl HypervisorSpec {
    /// A Hypervisor at `uri` with every other field at the default its schema gives.
    pub fn new(uri: impl Into<String>) -> Self {
        Self {
            uri: uri.into(),
            credentials_secret_ref: None,
            accelerator: Accelerator::default(),
            memory_overcommit_percent: default_memory_overcommit(),
            cpu_overcommit_percent: default_cpu_overcommit(),
            reserved_memory_mib: default_reserved_memory(),
            reserved_cpus: 0,
            unschedulable: false,
            console_log_dir: default_console_log_dir(),
            probe_interval_seconds: default_probe_interval(),
        }
    }
}

fn default_memory_overcommit() -> i32 {
    100
}
fn default_cpu_overcommit() -> i32 {
    400
}
fn default_reserved_memory() -> i32 {
    1024
}
fn default_console_log_dir() -> String {
    "/var/log/libvirt/qemu".into()
}
fn default_probe_interval() -> i32 {
    30
}

/// Accelerator of a hypervisor's VMs.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Accelerator {
    /// KVM when the host offers it, else TCG.
    #[default]
    Auto,
    /// Hardware virtualisation; a host that does not offer it is not `Reachable` (reason
    /// `NoKVM`), so no VM is placed there.
    #[serde(rename = "KVM")]
    Kvm,
    /// QEMU's emulation (slow, but needs nothing from the host; for hosts whose KVM is
    /// missing or broken).
    #[serde(rename = "TCG")]
    Tcg,
}

/// What the operator last saw of a hypervisor.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct HypervisorStatus {
    /// `Reachable`: whether the last connection attempt succeeded (reasons `Connected`,
    /// `ConnectFailed`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Conditions,

    /// The `metadata.generation` the status was written for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// When the operator last probed the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe_time: Option<Time>,

    /// libvirt's version on the host (`9.0.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub libvirt_version: Option<String>,

    /// Accelerator VMs get here, `spec.accelerator` applied to what the host offers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accelerator: Option<EffectiveAccelerator>,

    /// What the host has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<HostCapacity>,

    /// What VMs may be given: capacity less the reserve, times the overcommit ratio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocatable: Option<Resources>,

    /// What is given: the VMs placed here and the host's other running domains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed: Option<Resources>,

    /// Running domains the operator did not create, which count in `committed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub foreign: Option<ForeignDomains>,

    /// The host's storage pools.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub pools: Vec<PoolStatus>,

    /// The Machines placed here, including those whose VM is still being created: the
    /// operator's ledger of this host (it writes the whole list at once, hence atomic).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1024), extend("x-kubernetes-list-type" = "atomic"))]
    pub placements: Vec<Placement>,

    /// Number of `placements`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement_count: Option<i32>,
}

/// Accelerator in effect on a hypervisor.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EffectiveAccelerator {
    /// Hardware virtualisation (libvirt domain type `kvm`).
    #[serde(rename = "KVM")]
    Kvm,
    /// QEMU's emulation (libvirt domain type `qemu`).
    #[serde(rename = "TCG")]
    Tcg,
}

/// What a host has.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct HostCapacity {
    /// Memory, in MiB.
    #[serde(rename = "memoryMiB")]
    pub memory_mib: i64,
    /// Logical CPUs.
    pub cpus: i64,
}

/// Memory and virtual CPUs.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    /// Memory, in MiB.
    #[serde(rename = "memoryMiB")]
    pub memory_mib: i64,
    /// Virtual CPUs.
    pub vcpus: i64,
}

/// Running domains the operator did not create.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ForeignDomains {
    /// How many.
    pub domains: i64,
    /// Their memory, in MiB.
    #[serde(rename = "memoryMiB")]
    pub memory_mib: i64,
    /// Their virtual CPUs.
    pub vcpus: i64,
}

/// A storage pool of a host.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PoolStatus {
    /// Pool name (`default`, `libvirt-ssd`).
    #[schemars(length(min = 1, max = 255))]
    pub name: String,
    /// libvirt pool type (`dir`, `logical`, `rbd`, `netfs`…).
    #[serde(rename = "type")]
    #[schemars(length(min = 1, max = 32))]
    pub type_: String,
    /// Whether the pool is started (volumes can be created only in an active pool).
    pub active: bool,
    /// Size, in GiB.
    #[serde(rename = "capacityGiB")]
    pub capacity_gib: i64,
    /// Free space, in GiB.
    #[serde(rename = "availableGiB")]
    pub available_gib: i64,
}

/// A Machine placed on a hypervisor, with what it was given.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    /// The Machine, `namespace/name`.
    #[schemars(length(min = 3, max = 317))]
    pub machine: String,
    /// The Machine's uid (a Machine deleted and created again is another placement).
    #[schemars(length(min = 1, max = 64))]
    pub uid: String,
    /// Memory, in MiB.
    #[serde(rename = "memoryMiB")]
    pub memory_mib: i64,
    /// Virtual CPUs.
    pub vcpus: i64,
    /// Disk size, in GiB.
    #[serde(rename = "diskGiB")]
    pub disk_gib: i64,
    /// Pool that holds the disk.
    #[schemars(length(min = 1, max = 255))]
    pub pool: String,
    /// `Reserved` from the placement until the volume exists, then `Created`.
    pub state: PlacementState,
}

/// Whether a placement's VM exists yet.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlacementState {
    /// Counted against the host; the volume is not created yet (its disk counts against the
    /// pool's free space until it is).
    Reserved,
    /// The volume exists (and is inside the pool's reported free space).
    Created,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_gives_the_defaults_of_the_schema() {
        let decoded: HypervisorSpec = serde_json::from_value(serde_json::json!({"uri": "qemu:///system"})).unwrap();
        assert_eq!(HypervisorSpec::new("qemu:///system"), decoded);
    }
}
