//! `HardwareProfile`: eDeploy's `.specs` file and its place in the `state` file.

// clippy reads the repeated `type_ = …` of several `printcolumn(…)` as one duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Conditions, LocalObjectRef, Quad, RoleRef};

/// Which machines a profile accepts (its rules), how many, and what they receive.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "machinist.dev",
    version = "v1alpha1",
    kind = "HardwareProfile",
    namespaced,
    status = "HardwareProfileStatus",
    shortname = "hwp",
    category = "machinist",
    derive = "PartialEq",
    doc = "A hardware profile: eDeploy rules a machine's hardware report must satisfy, the number of machines it may take, and the CMDB and role its machines receive.",
    printcolumn(
        name = "Priority",
        type_ = "integer",
        json_path = ".spec.priority",
        description = "Order in which profiles are tried (lowest first)"
    ),
    printcolumn(
        name = "Bound",
        type_ = "integer",
        json_path = ".status.boundCount",
        description = "Machines bound to the profile"
    ),
    printcolumn(
        name = "Max",
        type_ = "integer",
        json_path = ".spec.maxMachines",
        description = "Most machines the profile may take (empty: unlimited)"
    ),
    printcolumn(
        name = "Role",
        type_ = "string",
        json_path = ".spec.role.name",
        description = "Role its machines install"
    ),
    printcolumn(
        name = "CMDB",
        type_ = "string",
        json_path = ".spec.cmdbRef.name",
        priority = 1,
        description = "Cmdb its machines take entries from"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct HardwareProfileSpec {
    /// Profiles are tried in ascending priority (eDeploy's `state` order: first listed, first
    /// tried); equal priorities are tried in name order. The first profile whose rules all match
    /// and which has room binds the machine.
    #[schemars(range(min = 0, max = 1_000_000))]
    pub priority: i32,

    /// Most machines this profile may take (eDeploy's count in `state`). Absent means unlimited
    /// (eDeploy's `'*'`); 0 disables the profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1_000_000))]
    pub max_machines: Option<i32>,

    /// eDeploy rules, each `[class, type, name, value]`, all of which must match items of the
    /// hardware report. Elements may be literals, `$var` (capture; the same variable takes the
    /// same value everywhere), `$$var` (capture, and select the CMDB entry by it), or functions:
    /// `gt(4)`, `ge()`, `lt()`, `le()`, `range(a,b)`, `in('a','b')`, `regexp(re)`,
    /// `network(192.168.122.0/24)`, `and(…)`, `or(…)`, `not(…)`, combined as `$size=gt(20)`.
    /// An empty list matches every machine.
    #[serde(default, rename = "match")]
    #[schemars(length(max = 512))]
    pub rules: Vec<Quad>,

    /// Cmdb the bound machines take an entry (address, hostname…) from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdb_ref: Option<LocalObjectRef>,

    /// Role the bound machines are to install, unless a Machine names its own; copied to their
    /// `status.role`, and installed once they are allocated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<RoleRef>,

    /// Disk and network layout of the install (eDeploy's `.configure`, declared): `targetDisk`
    /// is the disk the image is written to, and a machine is not installed without it;
    /// `partitionTable` and `partitions` are made for Roles whose image is a `tar` tree (raw
    /// images carry their own); `network` goes into the cloud-init seed's `network-config`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install: Option<InstallLayout>,
}

/// Disk and network layout of an installation.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct InstallLayout {
    /// Disk to install on: a device (`/dev/sda`), or a variable captured by the rules (`$disk`).
    #[schemars(length(min = 1, max = 255))]
    #[x_kube(validation = Rule::new("self.startsWith('/dev/') || self.matches('^[$][A-Za-z_][A-Za-z0-9_]*$')").message("targetDisk must be a /dev/ path or a $variable"))]
    pub target_disk: String,
    /// Partition table type.
    #[serde(default)]
    pub partition_table: PartitionTable,
    /// Partitions, created in order, for `tar` images (ext4, vfat and swap are made; xfs is
    /// not yet; the root must be ext4). Absent: one ext4 root partition over the whole disk.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.filter(p, p.size == 'rest').size() <= 1").message("only one partition may take the rest of the disk"))]
    pub partitions: Vec<Partition>,
    /// How the installed system configures its network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkLayout>,
}

/// Partition table type.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum PartitionTable {
    /// GUID partition table.
    #[default]
    Gpt,
    /// DOS/MBR table (eDeploy's `mklabel msdos`).
    Msdos,
}

/// One partition.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Partition {
    /// Size: `512MiB`, `20GiB`, `1TiB`, a percentage of the disk's usable space (`50%`;
    /// `100%` is all of it), or `rest`. Partitions start and end on 1 MiB boundaries.
    #[schemars(regex(pattern = r"^([1-9][0-9]{0,6}(MiB|GiB|TiB)|([1-9][0-9]?|100)%|rest)$"))]
    pub size: String,
    /// Filesystem created on it.
    pub filesystem: Filesystem,
    /// Where it is mounted (`/`, `/boot/efi`, `/var`); absent for swap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^/[A-Za-z0-9._/-]*$"), length(max = 255))]
    pub mount_point: Option<String>,
    /// Filesystem label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 16))]
    pub label: Option<String>,
}

/// Filesystem type.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Filesystem {
    /// ext4.
    Ext4,
    /// XFS.
    Xfs,
    /// FAT32 (EFI system partition).
    Vfat,
    /// Swap space.
    Swap,
}

/// Network configuration of the installed system.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NetworkLayout {
    /// Interface to configure: a kernel name (`eth0`) or a captured variable (`$eth`).
    #[schemars(length(min = 1, max = 63))]
    pub interface: String,
    /// Static address from the CMDB entry (`ip`, `netmask`, `gateway`), or DHCP.
    #[serde(default)]
    pub mode: AddressMode,
}

/// How an interface gets its address.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum AddressMode {
    /// The CMDB entry's `ip`, `netmask` and `gateway`.
    #[default]
    Static,
    /// DHCP.
    Dhcp,
}

/// Observed state of a profile.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct HardwareProfileStatus {
    /// Machines bound to the profile. This list is what `maxMachines` is checked against, under
    /// optimistic concurrency, so that it is never exceeded. Written whole by one writer (the
    /// operator's ledger), hence atomic.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub bound_machines: Vec<String>,
    /// Number of bound machines.
    #[serde(default)]
    pub bound_count: i32,
    /// `Valid` (rules parse; the parse error otherwise), `Full` (maxMachines reached) and,
    /// while a deletion waits for its bound machines, `Deleting` (reason `InUse`, naming
    /// them), with transition times.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Conditions,
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
