//! `Role`: a versioned software environment a machine installs (eDeploy's role and version;
//! the seeds' base, ui, ui-test, api, api-test).

// clippy reads the repeated `type_ = …` of several `printcolumn(…)` as one duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Conditions, VERSION_PATTERN};

/// What a machine is to install for this role, how, and how it upgrades from earlier versions.
/// The operator checks these settings (condition `Valid`); machines install the image method.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "machinist.dev",
    version = "v1alpha1",
    kind = "Role",
    namespaced,
    status = "RoleStatus",
    shortname = "role",
    category = "machinist",
    derive = "PartialEq",
    doc = "A versioned software environment for machines: an image streamed to disk or a Debian installer run with a preseed, then cloud-init and a post-install script. The operator checks it (condition Valid); the image method is installed with its cloud-init seed; the Debian installer and the post-install script are not built yet.",
    printcolumn(
        name = "Version",
        type_ = "string",
        json_path = ".spec.version",
        description = "Version machines install"
    ),
    printcolumn(name = "Method", type_ = "string", json_path = ".spec.install.method", description = "Install method"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct RoleSpec {
    /// Version of the role (eDeploy's `D7-F.1.0.0`, semver…), what machines are to install.
    #[schemars(pattern(VERSION_PATTERN), length(min = 1, max = 128))]
    pub version: String,

    /// What the role is for, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,

    /// How the system is to be put on disk; checked (condition `Valid`). `Image` is installed;
    /// `DebianInstaller` is not built yet (machines naming such a Role stay `Allocated`, reason
    /// `PlanInvalid`).
    pub install: RoleInstall,

    /// cloud-init NoCloud seed for the installed system. Templates (minijinja) over the
    /// machine's variables (`{{ hostname }}`, `{{ ip }}`, `{{ disk }}`…, and `machine`,
    /// `namespace`, `role`, `role_version`, `attempt`), rendered by the boot services into the
    /// plan and written by the agent into the image's `CIDATA` partition. A template that does
    /// not render (an undefined variable, over 100,000 instructions or 1 MiB of output) fails
    /// the install, saying why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_init: Option<CloudInit>,

    /// Script to run in the installed system's root (chroot) after installation (the seeds'
    /// post-install script); a template over the machine's variables, checked to parse, not run
    /// yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 262144))]
    pub post_install: Option<String>,

    /// Kernel arguments for the installed system's boot loader. Not acted on yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 1024)))]
    pub kernel_args: Vec<String>,

    /// Versions this one can be upgraded from in place, and how (eDeploy's metadata tree). Not
    /// acted on yet; checked only for an upgrade from this version itself or two from one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["fromVersion"]))]
    pub upgrades: Vec<RoleUpgrade>,
}

/// How the system is put on disk: `method` names the member that is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.method == 'Image' ? (has(self.image) && !has(self.debianInstaller)) : (has(self.debianInstaller) && !has(self.image))").message("install.method names the one member that is set: Image needs install.image, DebianInstaller needs install.debianInstaller"))]
pub struct RoleInstall {
    /// Install method.
    pub method: InstallMethod,
    /// Image for the agent to stream to the target disk (fast path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageSource>,
    /// Debian installer booted with a preseed (the seeds' path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debian_installer: Option<DebianInstaller>,
}

/// Install method.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstallMethod {
    /// Stream an image to disk.
    Image,
    /// Run the Debian installer with a preseed file.
    DebianInstaller,
}

/// An OS image.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ImageSource {
    /// Where the agent downloads it (HTTP or HTTPS).
    #[schemars(regex(pattern = r"^https?://[^\s]+$"), length(max = 2048))]
    pub url: String,
    /// SHA-256 of the file as downloaded; the agent checks it as it streams, and a mismatch
    /// fails the install (the start of the disk is wiped).
    #[schemars(regex(pattern = r"^[a-f0-9]{64}$"))]
    pub sha256: String,
    /// Image format: `raw` is written block by block; `tar` is unpacked onto the profile's
    /// partitions, which the agent makes, with a boot loader; `qcow2` fails the install with
    /// a reason (not built).
    pub format: ImageFormat,
    /// Compression of the file.
    #[serde(default)]
    pub compression: Compression,
    /// Grow the image's last partition (the one that ends last on the disk) in the partition
    /// table, up to the `CIDATA` partition the agent adds at the end of the disk, or else (the
    /// image brings its own `CIDATA`, or none could be added) up to the disk's last usable
    /// sector. Off by default. Only the table entry grows: the file system in it is grown by the
    /// installed system on its first boot (cloud-init's `growpart` and `resize_rootfs`, on by
    /// default in cloud images). A partition that cannot be grown (an extended MBR partition, a
    /// corrupt GPT) is left as it was, and the install still succeeds, saying why.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub grow_last_partition: bool,
}

/// Image format.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    /// Whole-disk raw image, written block by block.
    Raw,
    /// qcow2 image: refused (convert it to raw first).
    Qcow2,
    /// Tree of files (eDeploy's way), unpacked on the partitions of the profile's layout; the
    /// agent installs extlinux (and syslinux's EFI loader with an ESP) to boot its newest
    /// `/boot/vmlinuz-*`.
    Tar,
}

/// Compression of an image file.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Not compressed.
    #[default]
    None,
    /// gzip.
    Gzip,
    /// Zstandard.
    Zstd,
    /// xz.
    Xz,
}

/// The Debian installer path.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DebianInstaller {
    /// Installer kernel (`debian-installer/amd64/linux` of the netboot tree).
    #[schemars(regex(pattern = r"^https?://[^\s]+$"), length(max = 2048))]
    pub kernel_url: String,
    /// Installer initrd (`debian-installer/amd64/initrd.gz`).
    #[schemars(regex(pattern = r"^https?://[^\s]+$"), length(max = 2048))]
    pub initrd_url: String,
    /// Preseed file for the installer, a template over the machine's variables; checked to
    /// parse, not served yet.
    #[schemars(length(min = 1, max = 262144))]
    pub preseed: String,
    /// Extra kernel arguments for the installer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 1024)))]
    pub kernel_args: Vec<String>,
}

/// cloud-init NoCloud seed templates.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CloudInit {
    /// `user-data` template; absent: an empty `#cloud-config`. machinist's own hostname and
    /// phone-home go in `vendor-data`, which cloud-init merges with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 262144))]
    pub user_data: Option<String>,
    /// `meta-data` template; absent: instance id and hostname from the machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub meta_data: Option<String>,
    /// `network-config` template; absent: version 2 from the profile's `install.network` and
    /// the CMDB entry (none without `install.network`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub network_config: Option<String>,
}

/// An in-place upgrade from an earlier version (eDeploy's `<from>/<role>/<to>/` metadata).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RoleUpgrade {
    /// Version upgraded from.
    #[schemars(pattern(VERSION_PATTERN), length(min = 1, max = 128))]
    pub from_version: String,
    /// Paths left untouched by the synchronisation (data and generated files).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4096), inner(length(min = 1, max = 4096)))]
    pub exclude: Vec<String>,
    /// Script run before synchronising (stop services).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 262144))]
    pub pre: Option<String>,
    /// Script run after synchronising (restart services); exit code 100 asks for a reboot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 262144))]
    pub post: Option<String>,
}

/// Observed state of a role.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RoleStatus {
    /// `Valid` (templates parse, `install.method` names the one member set, no upgrade from
    /// this version or two from one; reason `InvalidRole` otherwise), with transition times.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Conditions,
    /// Machines with this role installed, by version. Not written yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub installed: Vec<InstalledVersion>,
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// How many machines run one version of a role.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct InstalledVersion {
    /// The version.
    pub version: String,
    /// Machines running it.
    pub machines: i32,
}
