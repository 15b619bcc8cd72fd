//! `Machine`: one server or virtual machine, from power-on to serving traffic.

// clippy reads the repeated `type_ = …` of several `printcolumn(…)` as one duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

/// Timestamps of the status, as the API spells them.
pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{
    Conditions, DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN, MAC_PATTERN, Quad, RoleRef, SecretRef, VARIABLE_NAME_PATTERN,
    default_true,
};

/// Desired state of a machine: how to reach and power it, and what it should become.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "machinist.dev",
    version = "v1alpha1",
    kind = "Machine",
    namespaced,
    status = "MachineStatus",
    shortname = "mach",
    category = "machinist",
    derive = "PartialEq",
    doc = "A server or virtual machine that machinist inspects, matches to a hardware profile, gives a CMDB entry and installs with its role (a raw image streamed to its disk) until the installed system phones home and the machine is Ready. A libvirt machine's VM is created, powered and removed by the operator; BMC power and adding machines to load balancers are not built yet.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase", description = "Lifecycle phase"),
    printcolumn(
        name = "Profile",
        type_ = "string",
        json_path = ".status.profile",
        description = "HardwareProfile the machine is bound to"
    ),
    printcolumn(
        name = "IP",
        type_ = "string",
        json_path = ".status.ip",
        description = "Address from the CMDB allocation"
    ),
    printcolumn(
        name = "Hostname",
        type_ = "string",
        json_path = ".status.hostname",
        description = "Hostname from the CMDB allocation"
    ),
    printcolumn(
        name = "Role",
        type_ = "string",
        json_path = ".status.role.name",
        description = "Role the machine is to install"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(
        name = "MAC",
        type_ = "string",
        json_path = ".spec.interfaces[0].mac",
        priority = 1,
        description = "MAC address of the first interface"
    ),
    printcolumn(
        name = "CPUs",
        type_ = "integer",
        json_path = ".status.hardware.summary.threads",
        priority = 1,
        description = "Logical CPUs reported by the agent"
    ),
    printcolumn(
        name = "Memory",
        type_ = "integer",
        json_path = ".status.hardware.summary.memoryMiB",
        priority = 1,
        description = "Memory in MiB reported by the agent"
    ),
    selectable = ".status.phase"
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("size(self.interfaces) > 0 || has(self.provider.libvirt)").message("interfaces must list at least one interface (only a libvirt machine may leave them out: the operator then generates its MAC)"))]
pub struct MachineSpec {
    /// Network interfaces, identified by MAC address; the boot services answer DHCP and iPXE
    /// script requests from any of them. MAC addresses are unique (case-insensitively). At
    /// least one, except for a libvirt machine, whose MAC the operator generates and writes
    /// here when none is given.
    #[serde(default)]
    #[schemars(length(max = 32), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["mac"]))]
    #[x_kube(validation = Rule::new("self.all(i, self.filter(j, j.mac.lowerAscii() == i.mac.lowerAscii()).size() == 1)").message("interface MAC addresses must be unique"))]
    #[x_kube(validation = Rule::new("self.filter(i, has(i.boot) && i.boot).size() <= 1").message("at most one interface may have boot: true"))]
    pub interfaces: Vec<MachineInterface>,

    /// How the machine is created and powered: exactly one of `libvirt` (the operator creates
    /// and powers the VM), `bmc` (not built yet: nothing powers the server) or `manual`.
    pub provider: Provider,

    /// Name of a HardwareProfile to bind to instead of matching. Its rules are still checked
    /// against the reported hardware (to capture variables) and a mismatch fails the machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DNS_LABEL_PATTERN), length(min = 1, max = 63))]
    pub profile: Option<String>,

    /// Role to install; overrides the role of the matched HardwareProfile. Copied to
    /// `status.role` when the machine is bound; an allocated machine with a role is installed
    /// (`Provisioning`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<RoleRef>,

    /// Whether the machine should be powered on (false: off, without deprovisioning it). A
    /// libvirt VM is started while true (again if its guest powers itself off) and, once false,
    /// asked to shut down (ACPI), then forced off after `shutdownTimeoutSeconds`. Not acted on
    /// for `bmc` and `manual` machines.
    #[serde(default = "default_true")]
    pub online: bool,

    /// What the agent does once its work succeeded (eDeploy's ONSUCCESS): once the hardware
    /// report is delivered, and once the install succeeded (a reboot then boots the installed
    /// disk).
    #[serde(default)]
    pub on_success: OnSuccess,

    /// A shell on the console while the agent runs (`machinist.debug=1` on its kernel command
    /// line; eDeploy's DEBUG=1).
    #[serde(default)]
    pub debug: bool,

    /// A boot menu of roles (the seeds' PXE menu: base, ui, api… with a default after a
    /// timeout), served when `status.bootTarget` is `Menu`; no controller sets that target yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_menu: Option<BootMenu>,
}

/// One network interface of a machine.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MachineInterface {
    /// MAC address, `aa:bb:cc:dd:ee:ff` (either case). DHCP and the iPXE script find the machine
    /// through it.
    #[schemars(pattern(MAC_PATTERN), length(max = 17))]
    pub mac: String,
    /// Optional name for people (`eth0`, `ipmi`, `uplink`); not used to find the interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub name: Option<String>,
    /// The interface meant to PXE-boot; at most one interface may say so. A libvirt VM's network
    /// interface gets its MAC (else the first interface's); the boot services answer every
    /// listed interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<bool>,
}

/// How the machine is created and powered. Exactly one member is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.libvirt) ? 1 : 0) + (has(self.bmc) ? 1 : 0) + (has(self.manual) ? 1 : 0) == 1").message("exactly one of provider.libvirt, provider.bmc or provider.manual must be set"))]
pub struct Provider {
    /// A virtual machine the operator places on a Hypervisor, defines with its volume, powers
    /// from `online` and removes when the Machine is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub libvirt: Option<LibvirtProvider>,
    /// A physical server to be powered through its baseboard management controller. Not acted
    /// on yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bmc: Option<BmcProvider>,
    /// A machine that people power on themselves; machinist only answers its network boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual: Option<ManualProvider>,
}

/// A libvirt virtual machine (the seeds' `virsh define` and `qemu-img create`, automated).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.host) != has(self.hostSelector)").message("exactly one of host or hostSelector must be set"))]
#[x_kube(validation = Rule::new("!self.replicateDefinition || has(self.hostSelector)").message("replicateDefinition needs hostSelector: the Hypervisors that get the definition"))]
#[x_kube(validation = Rule::new("has(self.network) != has(self.bridge)").message("exactly one of network or bridge must be set"))]
pub struct LibvirtProvider {
    /// Name of the Hypervisor (in the operator's hypervisor namespace, `machinist-system` by
    /// default) the VM is to run on. The placement is kept once made: changing `host` or
    /// `hostSelector` later does not move the VM (not built yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DNS_SUBDOMAIN_PATTERN), length(min = 1, max = 253))]
    pub host: Option<String>,
    /// Labels of the Hypervisors the VM may be placed on, instead of naming one in `host`: the
    /// operator picks the reachable one with the most memory left that fits the VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 32))]
    pub host_selector: Option<BTreeMap<String, String>>,
    /// Storage pool that holds the disk (a `dir`, `logical` or Ceph `rbd` pool, e.g.
    /// `libvirt-ssd`). Cannot change once set.
    #[schemars(length(min = 1, max = 255))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("pool cannot be changed"))]
    pub pool: String,
    /// Size of the system disk, in GiB. Cannot change once set (resizing is not built yet).
    #[serde(rename = "diskGiB")]
    #[schemars(range(min = 1, max = 65536))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("diskGiB cannot be changed"))]
    pub disk_gib: i32,
    /// Disk image format (qcow2 needs a file-based pool: `dir`, `fs`, `netfs`). Cannot change
    /// once set.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("diskFormat cannot be changed"))]
    pub disk_format: DiskFormat,
    /// Memory, in MiB. A change defines the domain again; it takes effect at the VM's next
    /// power-on, and the Hypervisor's placement keeps the size the VM was placed with (not
    /// checked again yet), as for `vcpus`.
    #[serde(rename = "memoryMiB")]
    #[schemars(range(min = 128, max = 16777216))]
    pub memory_mib: i32,
    /// Virtual CPUs.
    #[schemars(range(min = 1, max = 1024))]
    pub vcpus: i32,
    /// libvirt network the interfaces attach to (e.g. `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub network: Option<String>,
    /// Host bridge the interfaces attach to (e.g. `br0`), instead of a libvirt network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 15))]
    pub bridge: Option<String>,
    /// Firmware the domain boots with.
    #[serde(default)]
    pub firmware: Firmware,
    /// Seconds a VM is given to power off after an ACPI shutdown request (`online: false`)
    /// before it is forced off.
    #[serde(default = "default_shutdown_timeout")]
    #[schemars(range(min = 1, max = 3600))]
    pub shutdown_timeout_seconds: i32,
    /// Also define the domain, never started, on every other reachable Hypervisor that
    /// `hostSelector` selects, so that people can start it there if its host fails (seed 001's
    /// copied definitions); defined again there when the definition changes, undefined with the
    /// VM. The disk must be on storage those hosts share (an rbd or network pool of the same
    /// name): the operator does not copy it.
    #[serde(default)]
    pub replicate_definition: bool,
}

fn default_shutdown_timeout() -> i32 {
    120
}

/// Disk image format of a libvirt volume.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    /// Copy-on-write qcow2 image (thin, snapshots).
    #[default]
    Qcow2,
    /// Raw image (fastest; the seeds' choice where performance matters).
    Raw,
}

/// Firmware of a virtual machine.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    /// Legacy BIOS (SeaBIOS), PXE through iPXE's `undionly.kpxe` or the NIC ROM.
    #[default]
    Bios,
    /// UEFI (OVMF), PXE through `ipxe.efi`.
    Uefi,
}

/// A physical server driven through its BMC.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.driver == 'redfish' ? (self.address.startsWith('https://') || self.address.startsWith('http://')) : !self.address.contains('://')").message("a redfish address is an http(s) URL; an ipmi address is host or host:port"))]
pub struct BmcProvider {
    /// Protocol spoken to the BMC.
    pub driver: BmcDriver,
    /// Where the BMC answers: `https://10.0.0.5` (Redfish) or `10.0.0.5:623` (IPMI).
    #[schemars(length(min = 1, max = 1024))]
    pub address: String,
    /// Secret with keys `username` and `password`.
    pub credentials_secret_ref: SecretRef,
    /// Redfish system id or path (`/redfish/v1/Systems/1`); absent: the only system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub system_id: Option<String>,
    /// Accept a self-signed BMC certificate (Redfish only).
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// BMC protocol.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BmcDriver {
    /// DMTF Redfish over HTTPS.
    Redfish,
    /// IPMI 2.0 over LAN (lanplus).
    Ipmi,
}

/// A machine powered by people; machinist only answers its network boot.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct ManualProvider {}

/// What the agent does once its work succeeded.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnSuccess {
    /// Reboot.
    #[default]
    Reboot,
    /// After an install, kexec straight into the installed kernel, skipping firmware: the
    /// agent boots the default entry of the image's syslinux/extlinux configuration or the
    /// first entry of its `grub.cfg`; without one (or when kexec fails) it reboots. After
    /// discovery it reboots.
    Kexec,
    /// Power off.
    Halt,
    /// Stay in the RAM disk with a shell on the console.
    Console,
}

impl OnSuccess {
    /// Every value.
    pub const ALL: [OnSuccess; 4] = [OnSuccess::Reboot, OnSuccess::Kexec, OnSuccess::Halt, OnSuccess::Console];

    /// The value as the API spells it (`reboot`, `kexec`, `halt`, `console`); the boot services
    /// pass it to the agent as `machinist.onSuccess=`.
    pub fn as_str(self) -> &'static str {
        match self {
            OnSuccess::Reboot => "reboot",
            OnSuccess::Kexec => "kexec",
            OnSuccess::Halt => "halt",
            OnSuccess::Console => "console",
        }
    }

    /// The value spelled `name` ([`as_str`](Self::as_str)'s inverse).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|value| value.as_str() == name)
    }
}

/// A boot menu of roles with a default taken after a timeout (the seeds' PXE menu).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.roles.exists(r, r == self.default)").message("bootMenu.default must be one of bootMenu.roles"))]
pub struct BootMenu {
    /// Roles offered, in menu order (names of Role objects).
    #[schemars(length(min = 1, max = 32), inner(pattern(DNS_LABEL_PATTERN), length(min = 1, max = 63)))]
    #[x_kube(validation = Rule::new("self.all(r, self.filter(s, s == r).size() == 1)").message("bootMenu.roles must not repeat a role"))]
    pub roles: Vec<String>,
    /// Role chosen when nobody chooses before the timeout.
    #[schemars(pattern(DNS_LABEL_PATTERN), length(min = 1, max = 63))]
    pub default: String,
    /// Seconds the menu waits for a choice.
    #[serde(default = "default_menu_timeout")]
    #[schemars(range(min = 0, max = 86400))]
    pub timeout_seconds: i32,
}

fn default_menu_timeout() -> i32 {
    600
}

/// Observed state of a machine, written by the operator and the boot services.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MachineStatus {
    /// Where the machine is in its lifecycle. Written by the operator (the boot services set
    /// `Registered` on auto-registered machines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<MachinePhase>,
    /// What the boot services serve the machine at its next network boot. The operator sets
    /// `Discovery` to inspect it, `Install` while it is `Provisioning`, `LocalDisk` once
    /// installed, and `None` after a failed install and while the Machine is being deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_target: Option<BootTarget>,
    /// Hardware reported by the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware: Option<HardwareInventory>,
    /// HardwareProfile the machine is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Why each profile tried before the bound one (or all, if none matched) did not match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profile_mismatches: Vec<ProfileMismatch>,
    /// Variables captured by the profile's rules (`$disk`, `$eth`, `$mac`…) merged with the
    /// CMDB entry's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
    /// The CMDB entry reserved for the machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation: Option<CmdbAllocation>,
    /// Role the machine is to install: `spec.role`, else its profile's. Set when it is bound,
    /// and to the Role and version installed when an install starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<RoleRef>,
    /// IPv4 address: the `ip` variable of its CMDB entry. The boot services' DHCP (full mode)
    /// gives the machine this address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Hostname: the `hostname` variable of its CMDB entry, sent by the boot services' DHCP (full
    /// mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// What the provider knows of the machine (written for libvirt machines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderStatus>,
    /// Why the machine is in phase Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<MachineFailure>,
    /// `Ready` (True once the installed system phoned home; else False, its reason the phase),
    /// `Matched` (bound to a profile, or why not: `AwaitingHardwareReport`, `NoProfileMatched`,
    /// `ProfileNotFound`, `ProfileFull`, `ProfileInvalid`, `ProfileMismatch`, `Rebinding`),
    /// `Allocated` (a CMDB entry reserved, `NoCmdb`, or why not: `Allocating`, `CmdbExhausted`,
    /// `NoEntryMatched`, `CmdbNotFound`, `CmdbInvalid`), `Provisioned` (`Installed`, or why not:
    /// `Installing`, `InstallFailed`, and for an allocated machine whose install cannot start
    /// `NoRole`, `RoleNotFound`, `RoleInvalid`, `PlanInvalid`), with their transition times.
    /// Written by the operator.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Conditions,
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the machine last changed phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_transition_time: Option<Time>,
    /// When the installed system phoned home and the machine became Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioned_time: Option<Time>,
    /// The install the operator asked for: its attempt number and the plan the agent fetches.
    /// Written by the operator when the machine enters `Provisioning`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install: Option<InstallStatus>,
    /// How the install of `install.attempt` went, as the agent (and then the installed system,
    /// phoning home) reported it. Written by the boot services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install_progress: Option<InstallProgress>,
    /// The latest network boot as the boot services saw it, step by step (the whole timeline
    /// is in the Machine's Events). Written by the boot services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_boot: Option<BootTimeline>,
}

/// Most steps kept in `status.lastBoot.steps` (the oldest are dropped).
pub const BOOT_STEPS_MAX: usize = 24;

/// A network boot, step by step.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BootTimeline {
    /// When the first step of this boot was seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_time: Option<Time>,
    /// The steps, oldest first; at most 24 (the oldest are dropped, `droppedSteps` counts them).
    #[serde(default)]
    #[schemars(length(max = 24))]
    pub steps: Vec<BootStep>,
    /// Steps of this boot no longer listed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped_steps: i32,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// One step of a network boot.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BootStep {
    /// What happened.
    pub kind: BootStepKind,
    /// Details: the address offered, the file sent, the progress message…
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 256))]
    pub detail: String,
    /// When.
    pub time: Time,
}

/// The kinds of boot step.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BootStepKind {
    /// A DHCP offer was sent (or a proxyDHCP offer with boot options).
    DhcpOffer,
    /// A DHCP acknowledgement was sent (address bound, or proxyDHCP boot server reply).
    DhcpAck,
    /// A DHCP request was refused (NAK).
    DhcpNak,
    /// A TFTP transfer started.
    TftpFile,
    /// The iPXE script was served.
    Script,
    /// A kernel, initrd or image was fetched over HTTP.
    Artifact,
    /// The agent's hardware report was received.
    HardwareReport,
    /// The agent reported progress.
    Progress,
    /// The agent uploaded its log.
    LogUpload,
    /// The agent reported install progress (phase, bytes of total).
    Install,
    /// The installed system phoned home.
    PhoneHome,
}

/// Lifecycle phase of a machine.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MachinePhase {
    /// Known to machinist (created by a person or auto-registered from its first PXE request).
    Registered,
    /// Served the discovery RAM disk; waiting for its hardware report.
    Inspecting,
    /// Bound to a HardwareProfile; variables captured.
    Matched,
    /// A CMDB entry (address, hostname…) is reserved for it.
    Allocated,
    /// The agent is installing the role (`status.install` is the plan, `status.installProgress`
    /// how it goes).
    Provisioning,
    /// Installed; the machine boots its disk and the installed system is to phone home.
    Provisioned,
    /// The installed system phoned home; load balancers may send it traffic.
    Ready,
    /// Being deleted: its CMDB entry and profile slot are given back before the Machine goes.
    Deprovisioning,
    /// Stopped on an error; `status.failure` says why. A change to the spec inspects it again;
    /// after a failed install (`InstallFailed`), a spec change or a new value of the annotation
    /// `machinist.dev/reinstall` installs it again.
    Failed,
}

/// The install the operator asked for.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct InstallStatus {
    /// 1 for the first install, one more for each retry. Reports of another attempt are
    /// refused, so a late message of an earlier try never counts.
    pub attempt: i32,
    /// What the agent installs.
    pub plan: InstallPlan,
    /// The value of the `machinist.dev/retry` annotation this attempt answered, if a retry
    /// started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<String>,
    /// When the attempt started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_time: Option<Time>,
}

/// What the agent installs, resolved from the Role, the HardwareProfile's install layout and
/// the machine's variables; the agent fetches it from the boot services.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct InstallPlan {
    /// The Role and the version installed.
    pub role: RoleRef,
    /// The image streamed to the disk.
    pub image: crate::role::ImageSource,
    /// The disk written, a `/dev/` path (`$disk` resolved from the captured variables).
    #[schemars(length(min = 6, max = 255))]
    pub target_disk: String,
    /// Hostname of the installed system (the CMDB entry's `hostname`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Network of the installed system, from the profile's layout and the CMDB entry: the
    /// agent writes it as the NoCloud seed's `network-config` (cloud-init applies it). Images
    /// without cloud-init get their CMDB address by DHCP from the boot services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<PlannedNetwork>,
    /// For a `tar` image: the partitions the agent makes on the disk, from the profile's
    /// `install.partitionTable` and `install.partitions` (one ext4 root over the disk when it
    /// has none), before it unpacks the tree and installs a boot loader. Absent for raw images,
    /// which carry their own partitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<PlannedLayout>,
}

/// The partitions a tree is unpacked onto.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PlannedLayout {
    /// Partition table type.
    pub partition_table: crate::hardware_profile::PartitionTable,
    /// Partitions, in order on the disk.
    #[schemars(length(max = 32))]
    pub partitions: Vec<crate::hardware_profile::Partition>,
}

/// The installed system's network, resolved.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PlannedNetwork {
    /// Interface (`eth0`, or the captured `$eth` resolved).
    pub interface: String,
    /// Static address from the CMDB entry, or DHCP.
    pub mode: crate::hardware_profile::AddressMode,
    /// Address with prefix length (`10.0.0.4/24`), for static mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Default gateway, for static mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Name servers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
}

/// How an install is going, as reported.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct InstallProgress {
    /// The attempt (`status.install.attempt`) reported on.
    pub attempt: i32,
    /// Where the install is.
    pub phase: InstallPhase,
    /// Bytes of the image written to the disk so far.
    #[serde(default)]
    pub bytes_written: i64,
    /// Bytes the image has once decompressed, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_bytes: Option<i64>,
    /// What the agent said (why it failed, in phase `Failed`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 1024))]
    pub message: String,
    /// When this was reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_time: Option<Time>,
}

/// Phases of an install, in the order they are reported (a report never goes back).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum InstallPhase {
    /// The agent fetched its plan and checked the target disk.
    Planned,
    /// Streaming the image to the disk.
    Writing,
    /// The image was written and its sha256 matched; the disk is flushed.
    Written,
    /// Installed; the machine boots from its disk next.
    Succeeded,
    /// The installed system phoned home.
    Booted,
    /// The install failed; `message` says why.
    Failed,
}

/// What the boot services serve at the next network boot.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootTarget {
    /// The discovery RAM disk, which reports the hardware.
    Discovery,
    /// The RAM disk in install mode: the agent fetches the install plan and writes the image.
    Install,
    /// The boot menu of `spec.bootMenu`.
    Menu,
    /// Boot from the local disk (iPXE `exit`), for an installed machine.
    LocalDisk,
    /// Do not boot the machine: DHCP ignores it and its iPXE script only says why and exits.
    None,
}

/// Most items `status.hardware.items` holds, hence most a hardware report may carry.
pub const HARDWARE_ITEMS_MAX: usize = 8192;

/// The hardware a machine reported.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct HardwareInventory {
    /// Items in `hardware-detect`'s `[class, type, name, value]` format; HardwareProfile rules
    /// match against these.
    #[serde(default)]
    #[schemars(length(max = HARDWARE_ITEMS_MAX))]
    pub items: Vec<Quad>,
    /// A typed digest of the items, for printer columns and people.
    #[serde(default)]
    pub summary: HardwareSummary,
    /// When the report was received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_time: Option<Time>,
}

/// A typed digest of a hardware report.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct HardwareSummary {
    /// System manufacturer (DMI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// System product name (DMI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// System serial number (DMI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// System UUID (DMI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// CPU model name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_model: Option<String>,
    /// Physical CPU packages.
    #[serde(default)]
    pub sockets: i32,
    /// Physical cores, all sockets together.
    #[serde(default)]
    pub cores: i32,
    /// Logical CPUs (hardware threads).
    #[serde(default)]
    pub threads: i32,
    /// Installed memory, in MiB.
    #[serde(default, rename = "memoryMiB")]
    pub memory_mib: i64,
    /// Disks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<DiskSummary>,
    /// Network interfaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nics: Vec<NicSummary>,
}

/// One disk of a hardware summary.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DiskSummary {
    /// Kernel name (`sda`, `nvme0n1`, `vda`).
    pub name: String,
    /// Size in bytes.
    pub size_bytes: i64,
    /// Spinning disk (`true`) or solid state.
    #[serde(default)]
    pub rotational: bool,
}

/// One network interface of a hardware summary.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NicSummary {
    /// Kernel name (`eth0`, `enp1s0`).
    pub name: String,
    /// MAC address.
    pub mac: String,
    /// Link speed in Mbit/s, when the link is up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed_mbps: Option<i32>,
}

/// Why one profile did not match.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ProfileMismatch {
    /// The HardwareProfile.
    pub profile: String,
    /// Index in `spec.match` of the first rule no item satisfied, when a rule was to blame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<i32>,
    /// Explanation: the rule that failed, or "maxMachines reached".
    pub reason: String,
}

/// A CMDB entry reserved for a machine.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CmdbAllocation {
    /// The Cmdb object.
    #[schemars(pattern(DNS_LABEL_PATTERN))]
    pub cmdb: String,
    /// Index of the entry in the Cmdb's expanded entry list.
    pub entry: i32,
    /// The entry's variables (`ip`, `hostname`, `gateway`…), at most 256.
    #[serde(default)]
    #[schemars(extend("maxProperties" = 256))]
    #[x_kube(validation = Rule::new(format!("self.all(k, k.matches('{VARIABLE_NAME_PATTERN}'))")).message("variable names are letters, digits and underscores"))]
    pub variables: BTreeMap<String, String>,
}

/// What the provider knows of the machine.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ProviderStatus {
    /// Power state last observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_state: Option<PowerState>,
    /// Name of the Hypervisor the VM is placed on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hypervisor: Option<String>,
    /// libvirt connection URI of the hypervisor hosting the VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// libvirt domain name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_name: Option<String>,
    /// libvirt domain UUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_uuid: Option<String>,
    /// The VM's disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeStatus>,
    /// File on the hypervisor where the VM's serial console is logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_log: Option<String>,
    /// When the operator asked the VM to shut down (ACPI), while it has not yet powered off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_requested_time: Option<Time>,
    /// The other Hypervisors holding the domain's definition (`replicateDefinition`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub replicas: Vec<String>,
    /// The install attempt (`status.install.attempt`) the VM was last powered on or reset into,
    /// or found network-booting into: a later attempt (a retry, a reinstall) resets a VM that
    /// has not network-booted since that attempt started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cycled_attempt: Option<i32>,
}

/// A VM's disk volume.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct VolumeStatus {
    /// Storage pool.
    pub pool: String,
    /// Volume name in the pool.
    pub name: String,
    /// Path (or rbd image) on the hypervisor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Size, in GiB.
    #[serde(rename = "capacityGiB")]
    pub capacity_gib: i64,
}

/// Power state of a machine.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerState {
    /// Powered on.
    On,
    /// Powered off.
    Off,
    /// Asked to power off, not off yet.
    ShuttingDown,
    /// Suspended (a libvirt domain paused).
    Paused,
    /// Could not be read.
    Unknown,
}

/// Why a machine failed.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MachineFailure {
    /// PascalCase cause: `ProfileMismatch` (the hardware does not match the HardwareProfile
    /// `spec.profile` pins) or `InstallFailed` (the agent's reason in `message`).
    pub reason: String,
    /// What happened, for people.
    pub message: String,
    /// Phase the machine was in when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<MachinePhase>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_success_names_are_the_api_spelling() {
        for value in OnSuccess::ALL {
            let serde_name = serde_json::to_value(value).unwrap();
            assert_eq!(serde_name.as_str(), Some(value.as_str()));
            assert_eq!(OnSuccess::from_name(value.as_str()), Some(value));
        }
        assert_eq!(OnSuccess::from_name("Halt"), None);
    }
}
