#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic
//! QEMU network boots through machinist's own boot services, end to end: `machinist up
//! --boot-config` runs inside a network namespace with a bridge; a TCG VM with QEMU's iPXE ROM
//! boots from it into the test RAM disk (`machinist_e2e::boot`), which prints the
//! `machinist.*` arguments it was booted with and posts a hardware report with its token.
//!
//! - Full mode, a declared Machine: DHCP (our address) → TFTP (`machinist.ipxe`, the chain
//!   script) → HTTP (the Machine's script, kernel, initrd) → the report lands in
//!   `status.hardware`, and every step is on the Machine's boot timeline.
//! - ProxyDHCP beside dnsmasq (which hands out addresses without boot options), an unknown
//!   MAC: auto-registered, booted into discovery with the registered Machine's name and token.
//!
//! - The real agent in machinist's own RAM disk (`machinist ramdisk build --agent`): a VM with
//!   two NICs, two disks, 2 vCPUs and 1536 MiB reports, and its Machine's `status.hardware`
//!   shows them.
//!
//! - The seed scenario, installed: eDeploy's `vm` profile and `generate()` CMDB, a Role whose
//!   image is the test system (`machinist_e2e::system`), a Machine; the VM PXE-boots into
//!   discovery, reports, is matched, allocated and planned, PXE-boots into the installer, which
//!   streams the image to its disk and writes the NoCloud seed, reboots, is told to boot its
//!   disk, boots it (SeaBIOS → syslinux), takes its CMDB address by DHCP and its hostname from
//!   the seed, phones home, and `kubectl wait --for=condition=Ready` succeeds; it answers HTTP
//!   at its CMDB address with its CMDB hostname.
//!
//! The API is reached with the real `kubectl`, run inside the namespace. Needs root, QEMU,
//! dnsmasq, busybox, kubectl (`scripts/deps`): skipped without them, failing under
//! `MACHINIST_E2E=require`.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use machinist_e2e::boot::{
    BootImages, Dnsmasq, DnsmasqOptions, Lab, LabHypervisor, Process, ReportOutcome, TestRamdisk, Vm, VmConfig,
    need_boot_lab,
};
use serde_json::Value;

const BOOT: Duration = Duration::from_secs(240);
const START: Duration = Duration::from_secs(120);
const KUBECTL_TIMEOUT: &str = "60s";

fn kubectl_program() -> PathBuf {
    let pinned = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/bin/kubectl");
    if pinned.is_file() { pinned } else { PathBuf::from("kubectl") }
}

/// `machinist up --boot-config` inside the lab, with kubectl for it.
struct Machinist {
    lab: Lab,
    process: Process,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl Machinist {
    /// Writes the RAM disk into an artifact root and `boot` (the configuration's `dhcp`
    /// section, YAML) plus TFTP/HTTP settings into a configuration, and starts machinist.
    fn start(lab: &Lab, dhcp: &str, auto_register: bool) -> Self {
        let images = BootImages::get().unwrap();
        Self::start_with(lab, dhcp, auto_register, &images.kernel, &images.initrd, "default")
    }

    /// [`start`](Self::start) serving `kernel` and `initrd` as the RAM disk to the Machines of
    /// `namespace`.
    fn start_with(lab: &Lab, dhcp: &str, auto_register: bool, kernel: &Path, initrd: &Path, namespace: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let artifacts = dir.path().join("artifacts");
        std::fs::create_dir(&artifacts).unwrap();
        std::fs::copy(kernel, artifacts.join("vmlinuz")).unwrap();
        std::fs::copy(initrd, artifacts.join("initrd.gz")).unwrap();
        let address = lab.address();
        let config = format!(
            "namespace: {namespace}\n\
             autoRegister: {auto_register}\n\
             dhcp:\n{dhcp}\
             tftp:\n  listen: {address}:69\n  root: {tftp}\n  ipxeSource: /usr/lib/ipxe\n\
             http:\n  listen: {address}:8080\n  publicUrl: http://{address}:8080\n  artifactRoot: {artifacts}\n\
             \x20 ramdisk: {{kernel: vmlinuz, initrd: initrd.gz, args: [console=ttyS0, panic=-1]}}\n\
             timeline:\n  flushMillis: 200\n",
            tftp = dir.path().join("tftp").display(),
            artifacts = artifacts.display(),
        );
        let config_path = dir.path().join("boot.yaml");
        std::fs::write(&config_path, config).unwrap();
        let mut command = lab.command(env!("CARGO_BIN_EXE_machinist"));
        command
            .args(["up", "--listen", "127.0.0.1:0", "--home"])
            .arg(dir.path().join("home"))
            .arg("--boot-config")
            .arg(&config_path);
        let process = lab.spawn("machinist", command).unwrap();
        let line = process.wait_for("export KUBECONFIG=", START).unwrap();
        let kubeconfig = PathBuf::from(line.trim().trim_start_matches("export KUBECONFIG="));
        process.wait_for("boot services are up", START).unwrap();
        Self { lab: lab.clone(), process, kubeconfig, _dir: dir }
    }

    /// kubectl inside the lab; its stdout, or a panic with its stderr and machinist's log.
    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> String {
        let mut command = self.lab.command(kubectl_program());
        command.env("KUBECONFIG", &self.kubeconfig).args(args).args(["--request-timeout", KUBECTL_TIMEOUT]);
        command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        if let Some(input) = stdin {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        }
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "kubectl {args:?}: {}\nmachinist:\n{}",
            String::from_utf8_lossy(&output.stderr),
            self.process.tail(40)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// The directory the boot services serve under `/artifacts/`.
    fn artifacts(&self) -> PathBuf {
        self._dir.path().join("artifacts")
    }

    fn machine(&self, name: &str) -> Value {
        serde_json::from_str(&self.kubectl(&["get", "machine", name, "-o", "json"], None)).unwrap()
    }

    /// Waits (kubectl wait, bounded) until the machine's timeline holds a step of `kind`.
    fn wait_for_step(&self, machine: &str, kind: &str) {
        let condition = format!("--for=jsonpath={{.status.lastBoot.steps[?(@.kind==\"{kind}\")].kind}}={kind}");
        self.kubectl(&["wait", &format!("machine/{machine}"), &condition, "--timeout", KUBECTL_TIMEOUT], None);
    }
}

fn step_kinds(machine: &Value) -> Vec<String> {
    machine["status"]["lastBoot"]["steps"]
        .as_array()
        .map(|steps| steps.iter().filter_map(|s| s["kind"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

fn step_details(machine: &Value, kind: &str) -> Vec<String> {
    machine["status"]["lastBoot"]["steps"]
        .as_array()
        .map(|steps| {
            steps.iter().filter(|s| s["kind"] == kind).filter_map(|s| s["detail"].as_str().map(str::to_owned)).collect()
        })
        .unwrap_or_default()
}

fn report_items(machine: &Value) -> Vec<Vec<String>> {
    serde_json::from_value(machine["status"]["hardware"]["items"].clone()).unwrap_or_default()
}

#[test]
fn a_declared_machine_boots_through_dhcp_tftp_and_http() {
    if !need_boot_lab("a_declared_machine_boots_through_dhcp_tftp_and_http", &["kubectl"]).unwrap() {
        return;
    }
    const MAC: &str = "52:54:00:e2:e1:01";
    let lab = Lab::new(Ipv4Addr::new(10, 91, 0, 1)).unwrap();
    // Router advertisements only (no DHCP socket): iPXE stops waiting for IPv6 at once.
    let _ra = Dnsmasq::start(&lab, &DnsmasqOptions::router_advertisements_only()).unwrap();
    let dhcp = "  interfaces: [br0]\n  serverAddress: 10.91.0.1\n  \
                dynamicRange: {start: 10.91.0.100, end: 10.91.0.150, netmask: 255.255.255.0, gateway: 10.91.0.1}\n  \
                boot: {ipxeScriptUrl: machinist.ipxe}\n";
    let machinist = Machinist::start(&lab, dhcp, false);
    let manifest = format!(
        "apiVersion: machinist.dev/v1alpha1\nkind: Machine\nmetadata: {{name: vm-1}}\n\
         spec: {{interfaces: [{{mac: \"{MAC}\", boot: true}}], provider: {{manual: {{}}}}}}\n"
    );
    machinist.kubectl(&["apply", "-f", "-"], Some(&manifest));
    // Its agent token exists before the VM asks for its script.
    let wait_secret = ["wait", "-n", "machinist-system", "--for=create", "secret/machinist-agent-default.vm-1"];
    machinist.kubectl(&[&wait_secret[..], &["--timeout", KUBECTL_TIMEOUT]].concat(), None);

    let vm = Vm::start(&lab, VmConfig::new(MAC)).unwrap();
    let booted = vm.wait_booted(BOOT).unwrap();
    eprintln!("vm-1 reached the RAM disk after {:?}", vm.elapsed());
    assert_eq!((booted.machine.as_str(), booted.mode.as_str(), booted.mac.as_str()), ("vm-1", "discovery", MAC));
    assert_eq!(vm.wait_report(BOOT).unwrap(), ReportOutcome::Reported("204".into()));

    machinist.wait_for_step("vm-1", "HardwareReport");
    let machine = machinist.machine("vm-1");
    let items = report_items(&machine);
    assert!(items.iter().any(|i| i[0] == "network" && i[3].eq_ignore_ascii_case(MAC)), "{items:?}");
    let kinds = step_kinds(&machine);
    for kind in ["DhcpOffer", "DhcpAck", "TftpFile", "Script", "Artifact", "HardwareReport"] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} missing from {kinds:?}");
    }
    assert!(step_details(&machine, "TftpFile").iter().any(|d| d.starts_with("machinist.ipxe")));
    let artifacts = step_details(&machine, "Artifact").join(" ");
    assert!(artifacts.contains("vmlinuz") && artifacts.contains("initrd.gz"), "{artifacts}");
    assert!(
        step_details(&machine, "DhcpOffer").iter().any(|d| d.starts_with("10.91.0.1") && d.contains("machinist.ipxe")),
        "{:?}",
        step_details(&machine, "DhcpOffer")
    );
    let described = machinist.kubectl(&["describe", "machine", "vm-1"], None);
    assert!(described.contains("BootProgress"), "{described}");
}

#[test]
fn an_unknown_machine_boots_through_proxy_dhcp_beside_dnsmasq() {
    if !need_boot_lab("an_unknown_machine_boots_through_proxy_dhcp_beside_dnsmasq", &["kubectl"]).unwrap() {
        return;
    }
    const MAC: &str = "52:54:00:e2:e1:02";
    const NAME: &str = "mac-52-54-00-e2-e1-02";
    let lab = Lab::new(Ipv4Addr::new(10, 92, 0, 1)).unwrap();
    // dnsmasq hands out addresses only; machinist answers the PXE client with boot options.
    let dnsmasq =
        Dnsmasq::start(&lab, &DnsmasqOptions::addresses(Ipv4Addr::new(10, 92, 0, 100), Ipv4Addr::new(10, 92, 0, 150)))
            .unwrap();
    let dhcp = "  interfaces: [br0]\n  mode: proxy\n  serverAddress: 10.92.0.1\n";
    let machinist = Machinist::start(&lab, dhcp, true);

    let vm = Vm::start(&lab, VmConfig::new(MAC)).unwrap();
    let booted = vm.wait_booted(BOOT).unwrap();
    eprintln!("the unknown machine reached the RAM disk after {:?}", vm.elapsed());
    assert_eq!((booted.machine.as_str(), booted.mode.as_str(), booted.mac.as_str()), (NAME, "discovery", MAC));
    assert_eq!(vm.wait_report(BOOT).unwrap(), ReportOutcome::Reported("204".into()));

    machinist.wait_for_step(NAME, "HardwareReport");
    // Registered by the boot services, sent to discovery by the operator; with no
    // HardwareProfile at all it waits there, saying so.
    let unmatched = "--for=jsonpath={.status.conditions[?(@.type==\"Matched\")].reason}=NoProfileMatched";
    machinist.kubectl(&["wait", &format!("machine/{NAME}"), unmatched, "--timeout", KUBECTL_TIMEOUT], None);
    let machine = machinist.machine(NAME);
    assert_eq!(machine["status"]["phase"], "Inspecting");
    assert_eq!(machine["metadata"]["labels"]["machinist.dev/auto-registered"], "true");
    assert!(!report_items(&machine).is_empty());
    // The address came from dnsmasq, the boot options from us.
    let leases = std::fs::read_to_string(dnsmasq.lease_file()).unwrap_or_default();
    assert!(leases.to_ascii_lowercase().contains(MAC), "dnsmasq leases: {leases:?}");
    // Its DHCP exchanges came before it had a Machine (they are counted, not attributed); its
    // timeline starts with the script.
    let kinds = step_kinds(&machine);
    assert_eq!(kinds.first().map(String::as_str), Some("Script"), "{kinds:?}");
    assert!(kinds.iter().any(|k| k == "Artifact") && kinds.iter().any(|k| k == "HardwareReport"), "{kinds:?}");
}

/// The static agent `scripts/agent` builds (`MACHINIST_AGENT` overrides).
/// The static agent, or `None` (after saying why) when the test should skip; a panic when it
/// is missing under `MACHINIST_E2E=require`.
fn need_static_agent() -> Option<PathBuf> {
    let agent = static_agent();
    if agent.is_none() {
        let why = "no static agent: run scripts/agent (scripts/test does) or set MACHINIST_AGENT";
        match machinist_e2e::prereq::Mode::from_env().unwrap() {
            machinist_e2e::prereq::Mode::Require => panic!("{why}"),
            _ => eprintln!("skipping: {why}"),
        }
    }
    agent
}

fn static_agent() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("MACHINIST_AGENT") {
        return Some(PathBuf::from(path));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    Some(target.join("x86_64-unknown-linux-gnu/agent/machinist-agent")).filter(|p| p.is_file())
}

/// The real agent on a VM with two NICs and two disks, through to the operator: eDeploy's `vm`
/// profile and `generate()` CMDB from `examples/edeploy` bind it and give it host03.
#[test]
fn the_agent_reports_a_two_nic_two_disk_machine_which_is_matched_and_allocated() {
    if !need_boot_lab("the_agent_reports_a_two_nic_two_disk_machine_which_is_matched_and_allocated", &["kubectl"])
        .unwrap()
    {
        return;
    }
    let Some(agent) = need_static_agent() else {
        return;
    };
    const BOOT_MAC: &str = "52:54:00:e2:e1:03";
    const SECOND_MAC: &str = "52:54:00:e2:e1:13";
    // The production image, with the real agent, as users build it.
    let images = tempfile::tempdir().unwrap();
    production_ramdisk(&agent, images.path());

    // eDeploy's `vm` profile wants an address in 192.168.122.0/24 (libvirt's default network):
    // the lab's bridge, inside its own namespace, uses it.
    let lab = Lab::new(Ipv4Addr::new(192, 168, 122, 1)).unwrap();
    let _ra = Dnsmasq::start(&lab, &DnsmasqOptions::router_advertisements_only()).unwrap();
    let dhcp = "  interfaces: [br0]\n  serverAddress: 192.168.122.1\n  \
                dynamicRange: {start: 192.168.122.100, end: 192.168.122.150, netmask: 255.255.255.0, gateway: 192.168.122.1}\n  \
                boot: {ipxeScriptUrl: machinist.ipxe}\n";
    let kernel = images.path().join("vmlinuz");
    let machinist = Machinist::start_with(&lab, dhcp, false, &kernel, &images.path().join("initrd.gz"), "edeploy");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/edeploy");
    // machinist up made the boot services' namespace (their RoleBinding lives in it).
    machinist.kubectl(&["get", "namespace", "edeploy"], None);
    for file in ["profiles.yaml", "cmdbs.yaml"] {
        machinist.kubectl(&["apply", "-f", examples.join(file).to_str().unwrap()], None);
    }
    let manifest = format!(
        "apiVersion: machinist.dev/v1alpha1\nkind: Machine\nmetadata: {{name: vm-2, namespace: edeploy}}\n\
         spec: {{interfaces: [{{mac: \"{BOOT_MAC}\", boot: true}}, {{mac: \"{SECOND_MAC}\"}}], \
         provider: {{manual: {{}}}}, onSuccess: halt}}\n"
    );
    machinist.kubectl(&["apply", "-f", "-"], Some(&manifest));
    let wait_secret = [
        "wait",
        "-n",
        "machinist-system",
        "--for=create",
        "secret/machinist-agent-edeploy.vm-2",
        "--timeout",
        KUBECTL_TIMEOUT,
    ];
    machinist.kubectl(&wait_secret, None);

    let disks = tempfile::tempdir().unwrap();
    let mut extra = vec!["-smp".to_owned(), "2".to_owned()];
    // Sparse files: the large one is over the profile's `gt(4)` (GB), the small one under.
    for (name, gib) in [("small.raw", 1u64), ("large.raw", 5)] {
        let path = disks.path().join(name);
        std::fs::File::create(&path).unwrap().set_len(gib << 30).unwrap();
        extra.extend(["-drive".to_owned(), format!("file={},format=raw,if=virtio", path.display())]);
    }
    extra.extend([
        "-netdev".to_owned(),
        "user,id=n1,restrict=on".to_owned(),
        "-device".to_owned(),
        format!("virtio-net-pci,netdev=n1,mac={SECOND_MAC}"),
    ]);
    let config = VmConfig { memory_mib: 1536, extra_args: extra, ..VmConfig::new(BOOT_MAC) };
    let vm = Vm::start(&lab, config).unwrap();
    vm.wait_for("hardware report delivered", BOOT).unwrap();
    let reported = vm.elapsed();
    let threads = "--for=jsonpath={.status.hardware.summary.threads}=2";
    machinist.kubectl(&["wait", "-n", "edeploy", "machine/vm-2", threads, "--timeout", KUBECTL_TIMEOUT], None);
    eprintln!("power-on to hardware in status: {reported:?}");
    let path = |jsonpath: &str| {
        machinist.kubectl(&["get", "-n", "edeploy", "machine", "vm-2", "-o", &format!("jsonpath={jsonpath}")], None)
    };
    let macs = path("{.status.hardware.summary.nics[*].mac}");
    assert!(macs.contains(BOOT_MAC) && macs.contains(SECOND_MAC), "nics: {macs}");
    let sizes = path("{.status.hardware.summary.disks[*].sizeBytes}");
    let mut sizes: Vec<u64> = sizes.split_whitespace().map(|s| s.parse().unwrap()).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [1 << 30, 5 << 30], "disk sizes");
    assert_eq!(path("{.status.hardware.summary.memoryMiB}"), "1536");

    // The operator: hp (priority 10) passed over, vm bound with what its rules captured, the
    // first free entry of the generate() CMDB reserved.
    let allocated = "--for=jsonpath={.status.phase}=Allocated";
    machinist.kubectl(&["wait", "-n", "edeploy", "machine/vm-2", allocated, "--timeout", KUBECTL_TIMEOUT], None);
    eprintln!("power-on to Allocated: {:?}", vm.elapsed());
    assert_eq!(path("{.status.profile}"), "vm");
    assert_eq!(path("{.status.profileMismatches[0].profile}"), "hp");
    assert_eq!(path("{.status.variables.disk}"), "vdb", "the disk over 4 GB");
    assert_eq!(path("{.status.variables.mac}"), BOOT_MAC, "the interface on 192.168.122.0/24");
    assert_eq!((path("{.status.ip}"), path("{.status.hostname}")), ("192.168.122.3".into(), "host03".into()));
    assert_eq!(path("{.status.allocation.cmdb}"), "vm");
    assert_eq!(path("{.status.role.version}"), "D7-F.1.0.0");
    let conditions = path("{range .status.conditions[*]}{.type}={.status} {end}");
    assert!(conditions.contains("Matched=True") && conditions.contains("Allocated=True"), "{conditions}");
    let held = machinist.kubectl(
        &["get", "-n", "edeploy", "cmdb", "vm", "-o", "jsonpath={.status.allocations[0].machine} {.status.free}"],
        None,
    );
    assert_eq!(held, "vm-2 4");
    let events = machinist.kubectl(
        &[
            "get",
            "events",
            "-n",
            "edeploy",
            "--field-selector",
            "involvedObject.name=vm-2",
            "-o",
            "jsonpath={.items[*].reason}",
        ],
        None,
    );
    assert!(events.contains("Matched") && events.contains("Allocated"), "events: {events}");
    // The agent powers the VM off (onSuccess: Halt).
    vm.wait_exit(Duration::from_secs(60)).unwrap();
}

/// The production RAM disk with the real agent, built as users build it, into `dir`.
fn production_ramdisk(agent: &Path, dir: &Path) {
    let built = std::process::Command::new(env!("CARGO_BIN_EXE_machinist"))
        .args(["ramdisk", "build", "--agent"])
        .arg(agent)
        .arg("--out")
        .arg(dir)
        .output()
        .unwrap();
    assert!(built.status.success(), "ramdisk build: {}", String::from_utf8_lossy(&built.stderr));
}

/// The seed scenario through to Ready, under SeaBIOS with QEMU's iPXE ROM: see the module's
/// documentation.
#[test]
fn the_seed_scenario_installs_a_vm_that_boots_its_disk_and_phones_home_to_ready() {
    seed_scenario(
        "the_seed_scenario_installs_a_vm_that_boots_its_disk_and_phones_home_to_ready",
        Firmware::Bios,
        Image::Raw,
    );
}

/// The same with the system as a tree of files (`format: tar`, eDeploy's way): the agent makes
/// the `vm` profile's partitions (msdos, one ext4 root), unpacks the tree, writes `/etc/fstab`
/// and cloud-init's seed directory, installs extlinux with syslinux's MBR code, and SeaBIOS
/// boots it.
#[test]
fn the_seed_scenario_installs_a_tar_tree_with_its_boot_loader() {
    seed_scenario("the_seed_scenario_installs_a_tar_tree_with_its_boot_loader", Firmware::Bios, Image::Tree);
}

/// A tree under OVMF (UEFI): the `vm` profile patched to GPT with an EFI system partition, on
/// which the agent puts syslinux's EFI loader with the tree's kernel; after the install's
/// reboot the script says local boot and OVMF boots the disk's `EFI/BOOT/BOOTX64.EFI`.
#[test]
fn the_seed_scenario_installs_a_tar_tree_that_uefi_boots() {
    seed_scenario("the_seed_scenario_installs_a_tar_tree_that_uefi_boots", Firmware::Uefi, Image::Tree);
}

/// The same under OVMF (UEFI) with the NIC's option ROM disabled: the firmware's own PXE client
/// gets `ipxe.efi` over TFTP (told by option 43 not to look for a boot server) and chains to
/// the script, as every UEFI server does. This Machine says `onSuccess: kexec`: after the
/// install the agent boots the installed kernel (found in the image's `syslinux.cfg`) without
/// going through the firmware (after discovery it still reboots through the firmware, to PXE
/// into the installer).
#[test]
fn the_seed_scenario_under_uefi_without_an_ipxe_rom_reaches_ready() {
    seed_scenario("the_seed_scenario_under_uefi_without_an_ipxe_rom_reaches_ready", Firmware::Uefi, Image::Raw);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Firmware {
    Bios,
    Uefi,
}

/// What the Role installs: the test system's raw disk image, or the same system as a tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Image {
    Raw,
    Tree,
}

/// Seed 002's lab for the install tests: the production RAM disk with the test agent, the
/// demo's system image on the boot services (raw and tree), `machinist up` serving `edeploy`
/// with full DHCP on the lab's bridge, router advertisements from dnsmasq.
struct SeedLab {
    system: machinist_e2e::system::SystemImage,
    machinist: Machinist,
    _ra: Dnsmasq,
    lab: Lab,
    _images: tempfile::TempDir,
}

impl SeedLab {
    fn start(agent: &Path) -> Self {
        let images = tempfile::tempdir().unwrap();
        production_ramdisk(agent, images.path());
        let system = machinist_e2e::system::get().unwrap();
        let lab = Lab::new(Ipv4Addr::new(192, 168, 122, 1)).unwrap();
        let ra = Dnsmasq::start(&lab, &DnsmasqOptions::router_advertisements_only()).unwrap();
        let dhcp = "  interfaces: [br0]\n  serverAddress: 192.168.122.1\n  \
                    dynamicRange: {start: 192.168.122.100, end: 192.168.122.150, netmask: 255.255.255.0, gateway: 192.168.122.1}\n  \
                    boot: {ipxeScriptUrl: machinist.ipxe}\n";
        let kernel = images.path().join("vmlinuz");
        let machinist = Machinist::start_with(&lab, dhcp, false, &kernel, &images.path().join("initrd.gz"), "edeploy");
        std::fs::create_dir_all(machinist.artifacts().join("images")).unwrap();
        std::fs::copy(&system.gzip, machinist.artifacts().join("images/system.raw.gz")).unwrap();
        std::fs::copy(&system.tree, machinist.artifacts().join("images/system.tar.gz")).unwrap();
        Self { system, machinist, _ra: ra, lab, _images: images }
    }

    /// eDeploy's profiles and CMDBs, and the `vm` profile's Role `mysql` installing the system
    /// image (raw or tree) from the boot services.
    fn apply_edeploy_vm_pool(&self, image: Image) {
        let machinist = &self.machinist;
        let (file, sha256, format) = match image {
            Image::Raw => ("system.raw.gz", &self.system.gzip_sha256, "raw"),
            Image::Tree => ("system.tar.gz", &self.system.tree_sha256, "tar"),
        };
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/edeploy");
        // machinist up made the boot services' namespace (their RoleBinding lives in it).
        machinist.kubectl(&["get", "namespace", "edeploy"], None);
        for file in ["profiles.yaml", "cmdbs.yaml"] {
            machinist.kubectl(&["apply", "-f", examples.join(file).to_str().unwrap()], None);
        }
        let role = format!(
            "apiVersion: machinist.dev/v1alpha1\nkind: Role\nmetadata: {{name: mysql, namespace: edeploy}}\n\
             spec:\n  version: D7-F.1.0.0\n  install:\n    method: Image\n    image:\n      \
             url: http://192.168.122.1:8080/artifacts/images/{file}\n      sha256: {sha256}\n      \
             format: {format}\n      compression: gzip\n  \
             cloudInit:\n    metaData: |\n      instance-id: {{{{ machine }}}}-{{{{ attempt }}}}\n      \
             local-hostname: {{{{ hostname }}}}\n"
        );
        machinist.kubectl(&["apply", "-f", "-"], Some(&role));
    }
}

fn seed_scenario(test: &str, firmware: Firmware, image: Image) {
    if !need_boot_lab(test, &["kubectl", "curl", "mformat", "mcopy", "syslinux", "sha256sum", "tar"]).unwrap() {
        return;
    }
    let Some(agent) = need_static_agent() else {
        return;
    };
    let mac = match (firmware, image) {
        (Firmware::Bios, Image::Raw) => "52:54:00:e2:e1:04",
        (Firmware::Uefi, Image::Raw) => "52:54:00:e2:e1:05",
        (Firmware::Bios, Image::Tree) => "52:54:00:e2:e1:06",
        (Firmware::Uefi, Image::Tree) => "52:54:00:e2:e1:07",
    };
    let seed = SeedLab::start(&agent);
    let (lab, machinist) = (&seed.lab, &seed.machinist);
    seed.apply_edeploy_vm_pool(image);
    if (firmware, image) == (Firmware::Uefi, Image::Tree) {
        let esp = r#"{"spec":{"install":{"partitionTable":"gpt","partitions":[
            {"size":"64MiB","filesystem":"vfat","mountPoint":"/boot/efi"},
            {"size":"rest","filesystem":"ext4","mountPoint":"/"}]}}}"#;
        machinist.kubectl(&["patch", "-n", "edeploy", "hardwareprofile", "vm", "--type", "merge", "-p", esp], None);
    }
    let on_success = match (firmware, image) {
        (Firmware::Uefi, Image::Raw) => "kexec",
        _ => "reboot",
    };
    let manifest = format!(
        "apiVersion: machinist.dev/v1alpha1\nkind: Machine\nmetadata: {{name: vm-3, namespace: edeploy}}\n\
         spec: {{interfaces: [{{mac: \"{mac}\", boot: true}}], provider: {{manual: {{}}}}, onSuccess: {on_success}}}\n"
    );
    machinist.kubectl(&["apply", "-f", "-"], Some(&manifest));
    let wait_secret = [
        "wait",
        "-n",
        "machinist-system",
        "--for=create",
        "secret/machinist-agent-edeploy.vm-3",
        "--timeout",
        KUBECTL_TIMEOUT,
    ];
    machinist.kubectl(&wait_secret, None);

    // Over eDeploy's `gt(4)` GB, sparse; network first, then the disk; reboots allowed.
    let disks = tempfile::tempdir().unwrap();
    let disk = disks.path().join("disk.raw");
    std::fs::File::create(&disk).unwrap().set_len(5 << 30).unwrap();
    let mut config = VmConfig {
        memory_mib: 1024,
        extra_args: vec!["-drive".into(), format!("file={},format=raw,if=virtio", disk.display())],
        boot: "order=nc".into(),
        reboot: true,
        ..VmConfig::new(mac)
    };
    if firmware == Firmware::Uefi {
        let vars = disks.path().join("OVMF_VARS.fd");
        std::fs::copy("/usr/share/OVMF/OVMF_VARS_4M.fd", &vars).unwrap();
        config.extra_args.extend([
            "-drive".into(),
            "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd".into(),
            "-drive".into(),
            format!("if=pflash,format=raw,file={}", vars.display()),
        ]);
        config.nic_properties.push("romfile=".into());
    }
    let vm = Vm::start(lab, config).unwrap();
    vm.wait_for("hardware report delivered", BOOT).unwrap();
    eprintln!("{firmware:?}: power-on to hardware report: {:?}", vm.elapsed());
    vm.wait_for("install plan", BOOT).unwrap();
    if image == Image::Tree {
        let tree = vm.wait_for("tree installed", BOOT).unwrap();
        assert!(tree.contains("partitions, tree unpacked, extlinux boots /boot/vmlinuz-"), "{tree}");
        if firmware == Firmware::Uefi {
            assert!(tree.contains("2 partitions") && tree.contains("EFI/BOOT/BOOTX64.EFI"), "{tree}");
        }
    }
    vm.wait_for("installed attempt=1", BOOT).unwrap();
    eprintln!("{firmware:?} {image:?}: power-on to installed: {:?}", vm.elapsed());
    if (firmware, image) == (Firmware::Uefi, Image::Raw) {
        let kexec = vm.wait_for("kexec: ", BOOT).unwrap();
        assert!(kexec.contains("/vmlinuz from /syslinux.cfg"), "{kexec}");
    }
    let network = vm.wait_for(machinist_e2e::system::NETWORK, BOOT).unwrap();
    eprintln!("{firmware:?}: power-on to the installed system's network: {:?}: {network}", vm.elapsed());
    assert!(network.contains("seed=yes") && network.contains("hostname=host03"), "{network}");
    assert!(network.contains("address=192.168.122.3"), "its CMDB address, by DHCP: {network}");
    let phoned = vm.wait_for(machinist_e2e::system::PHONED_HOME, BOOT).unwrap();
    assert!(phoned.ends_with(" ok"), "{phoned}");
    if (firmware, image) == (Firmware::Uefi, Image::Raw) {
        // From the agent's kexec to the installed system: the kernel started the new one
        // itself; nothing restarted the machine (which would have gone through OVMF).
        let transcript = vm.transcript();
        let at = transcript.iter().position(|l| l.contains("kexec: /vmlinuz")).unwrap();
        let after = &transcript[at..];
        assert!(after.iter().any(|l| l.contains("Starting new kernel")), "{after:?}");
        assert!(!after.iter().any(|l| l.contains("reboot: Restarting system")), "{after:?}");
    }
    machinist.kubectl(&["wait", "-n", "edeploy", "machine/vm-3", "--for=condition=Ready", "--timeout", "60s"], None);
    eprintln!("{firmware:?}: power-on to Ready: {:?}", vm.elapsed());
    let path = |jsonpath: &str| {
        machinist.kubectl(&["get", "-n", "edeploy", "machine", "vm-3", "-o", &format!("jsonpath={jsonpath}")], None)
    };
    assert_eq!(path("{.status.phase}"), "Ready");
    assert_eq!(path("{.status.bootTarget}"), "LocalDisk");
    assert_eq!(path("{.status.install.plan.targetDisk}"), "/dev/vda");
    assert_eq!(path("{.status.installProgress.phase}"), "Booted");

    assert!(!path("{.status.provisionedTime}").is_empty());
    let mut curl = lab.command("curl");
    let answer = curl.args(["-sf", "--max-time", "10", "http://192.168.122.3/"]).output().unwrap();
    assert!(answer.status.success(), "curl: {}", String::from_utf8_lossy(&answer.stderr));
    assert_eq!(String::from_utf8_lossy(&answer.stdout).trim(), "host03");
    let machine: Value =
        serde_json::from_str(&machinist.kubectl(&["get", "-n", "edeploy", "machine", "vm-3", "-o", "json"], None))
            .unwrap();
    // Installed once; then its disk booted and the installed system phoned home. Under
    // SeaBIOS the last network boot was told to boot the disk (iPXE `exit`); under OVMF the
    // agent kexec'd the installed kernel (raw image: no network boot after the install), or
    // (tree) OVMF booted the disk's EFI loader, with or without asking the network first.
    let kinds = step_kinds(&machine);
    assert!(kinds.last().is_some_and(|k| k == "PhoneHome"), "{kinds:?}");
    let scripts = step_details(&machine, "Script");
    assert!(scripts.iter().filter(|s| *s == "install").count() <= 1, "installed twice: {kinds:?} {scripts:?}");
    match (firmware, image) {
        (Firmware::Bios, _) => assert_eq!(scripts, ["local disk"], "{kinds:?}"),
        (Firmware::Uefi, Image::Raw) => {
            assert!(!scripts.iter().any(|s| s == "local disk"), "{kinds:?} {scripts:?}");
            let progress = step_details(&machine, "Progress");
            assert!(progress.iter().any(|p| p.contains("kexec: /vmlinuz")), "{progress:?}");
        }
        (Firmware::Uefi, Image::Tree) => {}
    }
}

/// Seed 001's path with libvirt doing what people did by hand: `kubectl apply` of a Hypervisor
/// (a private `libvirtd` in the lab, TCG) and of a Machine with `provider.libvirt` and no MAC.
/// The operator writes its MAC, places it, defines the domain on the lab's bridge with its
/// volume and starts it; the VM PXE-boots through the boot services, is inspected, matched,
/// allocated, installed and phones home: `Ready`. Deleting the Machine removes the domain and
/// its volume and gives the CMDB entry back.
#[test]
fn a_libvirt_machine_is_created_installed_to_ready_and_removed() {
    let test = "a_libvirt_machine_is_created_installed_to_ready_and_removed";
    let programs =
        ["kubectl", "curl", "mformat", "mcopy", "syslinux", "sha256sum", "libvirtd", "virtlogd", "virsh", "unshare"];
    if !need_boot_lab(test, &programs).unwrap() {
        return;
    }
    let Some(agent) = need_static_agent() else {
        return;
    };
    let seed = SeedLab::start(&agent);
    let machinist = &seed.machinist;
    let libvirt = tempfile::tempdir().unwrap();
    let hypervisor = LabHypervisor::start(&seed.lab, libvirt.path()).unwrap();
    seed.apply_edeploy_vm_pool(Image::Raw);
    // /dev/kvm may exist here and hang guests: TCG.
    let hv = format!(
        "apiVersion: machinist.dev/v1alpha1\nkind: Hypervisor\nmetadata: {{name: lab, namespace: machinist-system}}\n\
         spec: {{uri: \"{uri}\", accelerator: TCG, reservedMemoryMiB: 0, consoleLogDir: {logs}, probeIntervalSeconds: 5}}\n",
        uri = hypervisor.uri(),
        logs = hypervisor.console_log_dir().display(),
    );
    machinist.kubectl(&["apply", "-f", "-"], Some(&hv));
    let manifest = "apiVersion: machinist.dev/v1alpha1\nkind: Machine\nmetadata: {name: vm-lv, namespace: edeploy}\n\
         spec:\n  provider:\n    libvirt: {host: lab, pool: lab, diskGiB: 5, diskFormat: raw, memoryMiB: 1024, vcpus: 1, bridge: br0}\n";
    machinist.kubectl(&["apply", "-f", "-"], Some(manifest));

    let wait_ready = ["wait", "-n", "edeploy", "machine/vm-lv", "--for=condition=Ready", "--timeout", "420s"];
    let mut command = machinist.lab.command(kubectl_program());
    command.env("KUBECONFIG", &machinist.kubeconfig).args(wait_ready);
    let waited = command.output().unwrap();
    let path = |jsonpath: &str| {
        machinist.kubectl(&["get", "-n", "edeploy", "machine", "vm-lv", "-o", &format!("jsonpath={jsonpath}")], None)
    };
    let log = hypervisor.console_log_dir().join("edeploy_vm-lv-serial.log");
    let console = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        waited.status.success(),
        "vm-lv not Ready: {}\nstatus: {}\nconsole (tail): {}\nlibvirtd: {}",
        String::from_utf8_lossy(&waited.stderr),
        path("{.status}"),
        console.chars().rev().take(3000).collect::<String>().chars().rev().collect::<String>(),
        hypervisor.tail(20),
    );
    let mac = path("{.spec.interfaces[0].mac}");
    assert!(mac.starts_with("52:54:"), "{mac}");
    assert_eq!(path("{.status.phase}"), "Ready");
    assert_eq!(path("{.status.provider.powerState}"), "On");
    assert_eq!(path("{.status.provider.domainName}"), "edeploy_vm-lv");
    assert_eq!(path("{.status.ip}"), "192.168.122.3");
    // Its serial console, logged by virtlogd, shows the whole path.
    for line in ["hardware report delivered", "installed attempt=1", machinist_e2e::system::PHONED_HOME] {
        assert!(console.contains(line), "the console lacks {line:?}");
    }
    let domains = hypervisor.virsh(&["list", "--all", "--name"]).unwrap();
    assert_eq!(domains.trim(), "edeploy_vm-lv");
    let dumped = hypervisor.virsh(&["dumpxml", "edeploy_vm-lv"]).unwrap();
    assert!(dumped.contains(&mac) && dumped.contains("<source bridge='br0'/>"), "{dumped}");
    assert!(dumped.contains("type='qemu'"), "TCG: {dumped}");

    // Deleted: domain and volume gone, the entry free again.
    machinist.kubectl(&["delete", "-n", "edeploy", "machine", "vm-lv", "--timeout", "120s"], None);
    assert_eq!(hypervisor.virsh(&["list", "--all", "--name"]).unwrap().trim(), "");
    assert_eq!(hypervisor.virsh(&["vol-list", "lab"]).unwrap().trim().lines().count(), 2, "only the header lines");
    let free = machinist.kubectl(&["get", "-n", "edeploy", "cmdb", "vm", "-o", "jsonpath={.status.free}"], None);
    assert_eq!(free, "5");
    let placements = machinist
        .kubectl(&["get", "-n", "machinist-system", "hypervisor", "lab", "-o", "jsonpath={.status.placements}"], None);
    assert!(placements.is_empty() || placements == "[]", "{placements}");
}

/// The README's run command: `machinist up --demo` makes its namespace, boots a VM through
/// the whole chain to Ready (shown in its table: installed, booted from its disk, phoned home),
/// and on Ctrl-C (SIGINT) stops the VM and removes the namespace.
#[test]
fn the_demo_boots_a_vm_to_ready_and_cleans_up_on_ctrl_c() {
    let mut programs = vec!["kill"];
    programs.extend(machinist_e2e::system::PROGRAMS);
    if !need_boot_lab("the_demo_boots_a_vm_to_ready_and_cleans_up_on_ctrl_c", &programs).unwrap() {
        return;
    }
    let Some(agent) = need_static_agent() else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_machinist"));
    command
        .args(["up", "--demo", "--vms", "1", "--listen", "127.0.0.1:0", "--operator-metrics", "127.0.0.1:0"])
        .arg("--home")
        .arg(home.path())
        .arg("--agent")
        .arg(&agent)
        .arg("--examples")
        .arg(&examples);
    let demo = Process::spawn("machinist up --demo", command, None).unwrap();
    let line = demo.wait_for("demo network:", START).unwrap();
    let namespace = line.split("network namespace ").nth(1).and_then(|rest| rest.split_whitespace().next()).unwrap();
    let namespace = namespace.to_owned();
    assert!(std::fs::read_dir("/run/netns").unwrap().any(|e| e.unwrap().file_name() == namespace.as_str()));
    let row = demo
        .wait_until("vm-01 Ready with host03", BOOT, |line| {
            line.starts_with("vm-01") && line.contains(" Ready ") && line.contains("host03")
        })
        .unwrap();
    assert!(row.contains(" vm ") && row.contains("192.168.122.3"), "{row}");
    // With libvirt installed (CI installs it), the operator created the VMs on the demo's
    // private libvirtd; QEMU is started directly only without it.
    let libvirt = std::process::Command::new("sh").args(["-c", "command -v libvirtd"]).output().unwrap();
    if libvirt.status.success() {
        let transcript = demo.transcript();
        assert!(transcript.iter().any(|l| l.contains("is Hypervisor demo")), "{}", demo.tail(40));
        assert!(transcript.iter().any(|l| l.contains("created 1 Machine for libvirt")), "{}", demo.tail(40));
    }

    let interrupted = std::process::Command::new("kill").args(["-INT", &demo.id().to_string()]).status().unwrap();
    assert!(interrupted.success());
    let status = demo.wait_exit(Duration::from_secs(60)).unwrap();
    assert!(status.success(), "exit status {status:?}:\n{}", demo.tail(20));
    assert!(demo.transcript().iter().any(|l| l.contains("demo stopped")), "{}", demo.tail(20));
    let left = std::fs::read_dir("/run/netns").unwrap().any(|e| e.unwrap().file_name() == namespace.as_str());
    assert!(!left, "namespace {namespace} was not removed");
}

/// The production RAM disk on the server hardware QEMU emulates: a VM with four more NICs
/// (Intel e1000 and e1000e, VMware vmxnet3, Realtek rtl8139) beside its virtio boot NIC, and
/// ten storage controllers (LSI MegaRAID SAS 1078 and 2108, LSI SAS 1068, LSI 53C895A, VMware
/// PVSCSI, virtio-scsi, virtio-blk, NVMe, AHCI, the `pc` machine's PIIX IDE) boots the image
/// `machinist ramdisk build` makes. Its hardware report names every NIC by its MAC with the
/// driver that should bind it, every controller's PCI function with its driver, and every disk
/// by its size: one small disk behind each controller but the LSI SAS 1068, behind which
/// Linux 6.1's `mptsas` finds no disk on QEMU 7.2's emulation, so only its driver is checked.
#[test]
fn the_production_ramdisk_reports_every_emulated_server_nic_and_storage_controller() {
    const TEST: &str = "the_production_ramdisk_reports_every_emulated_server_nic_and_storage_controller";
    if !need_boot_lab(TEST, &["kubectl"]).unwrap() {
        return;
    }
    let Some(agent) = need_static_agent() else {
        return;
    };
    const BOOT_MAC: &str = "52:54:00:e2:e1:06";
    // QEMU model, MAC, the Linux driver that binds it.
    const NICS: &[(&str, &str, &str)] = &[
        ("e1000", "52:54:00:e2:e2:01", "e1000"),
        ("e1000e", "52:54:00:e2:e2:02", "e1000e"),
        ("vmxnet3", "52:54:00:e2:e2:03", "vmxnet3"),
        ("rtl8139", "52:54:00:e2:e2:04", "8139cp"),
    ];
    // QEMU controller (`ide`: the machine's own PIIX IDE), the Linux driver that binds it, and
    // the size in MiB of the disk behind it: each size says which controller's driver found it.
    const CONTROLLERS: &[(&str, &str, Option<u64>)] = &[
        ("megasas", "megaraid_sas", Some(101)),
        ("megasas-gen2", "megaraid_sas", Some(102)),
        ("mptsas1068", "mptsas", None),
        ("lsi53c895a", "sym53c8xx", Some(104)),
        ("pvscsi", "vmw_pvscsi", Some(105)),
        ("virtio-scsi-pci", "virtio-pci", Some(106)),
        ("virtio-blk-pci", "virtio-pci", Some(110)),
        ("nvme", "nvme", Some(107)),
        ("ahci", "ahci", Some(108)),
        ("ide", "ata_piix", Some(109)),
    ];
    let images = tempfile::tempdir().unwrap();
    production_ramdisk(&agent, images.path());
    let built: Value =
        serde_json::from_str(&std::fs::read_to_string(images.path().join("manifest.json")).unwrap()).unwrap();
    eprintln!("initrd: {} bytes", built["initrdSize"]);

    let lab = Lab::new(Ipv4Addr::new(10, 93, 0, 1)).unwrap();
    let _ra = Dnsmasq::start(&lab, &DnsmasqOptions::router_advertisements_only()).unwrap();
    let dhcp = "  interfaces: [br0]\n  serverAddress: 10.93.0.1\n  \
                dynamicRange: {start: 10.93.0.100, end: 10.93.0.150, netmask: 255.255.255.0, gateway: 10.93.0.1}\n  \
                boot: {ipxeScriptUrl: machinist.ipxe}\n";
    let kernel = images.path().join("vmlinuz");
    let machinist = Machinist::start_with(&lab, dhcp, false, &kernel, &images.path().join("initrd.gz"), "default");
    let manifest = format!(
        "apiVersion: machinist.dev/v1alpha1\nkind: Machine\nmetadata: {{name: vm-servers}}\n\
         spec: {{interfaces: [{{mac: \"{BOOT_MAC}\", boot: true}}], provider: {{manual: {{}}}}, onSuccess: halt}}\n"
    );
    machinist.kubectl(&["apply", "-f", "-"], Some(&manifest));
    machinist.kubectl(
        &[
            "wait",
            "-n",
            "machinist-system",
            "--for=create",
            "secret/machinist-agent-default.vm-servers",
            "--timeout",
            KUBECTL_TIMEOUT,
        ],
        None,
    );

    let disks = tempfile::tempdir().unwrap();
    let controllers: Vec<(&str, Option<u64>)> = CONTROLLERS.iter().map(|(model, _, mib)| (*model, *mib)).collect();
    let config = VmConfig {
        memory_mib: 1024,
        extra_args: server_hardware_args(NICS, &controllers, disks.path()),
        ..VmConfig::new(BOOT_MAC)
    };
    let vm = Vm::start(&lab, config).unwrap();
    let modules = vm.wait_for("modules loaded", BOOT).unwrap();
    eprintln!("{modules}");
    vm.wait_for("hardware report delivered", BOOT).unwrap();
    let reported = vm.elapsed();
    machinist.wait_for_step("vm-servers", "HardwareReport");
    let memory = "--for=jsonpath={.status.hardware.summary.memoryMiB}=1024";
    machinist.kubectl(&["wait", "machine/vm-servers", memory, "--timeout", KUBECTL_TIMEOUT], None);
    eprintln!("power-on to hardware report: {reported:?}; in status: {:?}", vm.elapsed());

    let machine = machinist.machine("vm-servers");
    let summary = &machine["status"]["hardware"]["summary"];
    let items = report_items(&machine);
    let item = |kind: &str, name: &str, key: &str| {
        items.iter().find(|i| i[0] == kind && i[1] == name && i[2] == key).map(|i| i[3].clone())
    };
    let macs: Vec<String> = summary["nics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|nic| nic["mac"].as_str().unwrap().to_ascii_lowercase())
        .collect();
    assert!(macs.iter().any(|m| m == BOOT_MAC), "the boot NIC: {macs:?}");
    for (model, mac, driver) in NICS {
        assert!(macs.iter().any(|m| m == mac), "{model} ({mac}) missing from the report's NICs: {macs:?}");
        let name = items
            .iter()
            .find(|i| i[0] == "network" && i[2] == "serial" && i[3].eq_ignore_ascii_case(mac))
            .map(|i| i[1].clone())
            .unwrap_or_else(|| panic!("no network item with serial {mac}: {items:?}"));
        assert_eq!(item("network", &name, "driver").as_deref(), Some(*driver), "{model} ({mac}, {name})");
    }
    let pci_drivers: Vec<&str> =
        items.iter().filter(|i| i[0] == "pci" && i[2] == "driver").map(|i| i[3].as_str()).collect();
    for (model, driver, _) in CONTROLLERS {
        assert!(pci_drivers.contains(driver), "{model}: no PCI function bound to {driver}: {pci_drivers:?}");
    }
    let mut sizes: Vec<u64> =
        summary["disks"].as_array().unwrap().iter().map(|disk| disk["sizeBytes"].as_u64().unwrap()).collect();
    sizes.sort_unstable();
    let missing: Vec<&str> = CONTROLLERS
        .iter()
        .filter(|(_, _, mib)| mib.is_some_and(|mib| !sizes.contains(&(mib << 20))))
        .map(|(model, _, _)| *model)
        .collect();
    assert!(missing.is_empty(), "no disk behind {missing:?}; disk sizes {sizes:?}");
    let mut expected: Vec<u64> = CONTROLLERS.iter().filter_map(|(_, _, mib)| mib.map(|mib| mib << 20)).collect();
    expected.sort_unstable();
    assert_eq!(sizes, expected, "one disk per controller, nothing else");
    // The agent powers the VM off (onSuccess: Halt).
    vm.wait_exit(Duration::from_secs(60)).unwrap();
}

/// QEMU arguments for `nics` (model, MAC, driver; no option ROM, so that only the boot NIC
/// network-boots) on restricted user networks, and `controllers` (QEMU model, or `ide` for the
/// machine's own IDE; `nvme`, `virtio-blk-pci` and `ide` need a disk), each with a sparse disk of the given size
/// (MiB) in `dir` when one is given.
fn server_hardware_args(nics: &[(&str, &str, &str)], controllers: &[(&str, Option<u64>)], dir: &Path) -> Vec<String> {
    let mut args = Vec::new();
    for (index, (model, mac, _)) in nics.iter().enumerate() {
        args.extend([
            "-netdev".to_owned(),
            format!("user,id=x{index},restrict=on"),
            "-device".to_owned(),
            format!("{model},netdev=x{index},mac={mac},romfile="),
        ]);
    }
    for (index, (controller, mib)) in controllers.iter().enumerate() {
        let drive = mib.map(|mib| {
            let path = dir.join(format!("{controller}.raw"));
            std::fs::File::create(&path).unwrap().set_len(mib << 20).unwrap();
            args.extend(["-drive".to_owned(), format!("if=none,id=d{index},file={},format=raw", path.display())]);
            format!("drive=d{index}")
        });
        let devices = match (*controller, drive) {
            ("nvme", Some(drive)) => vec![format!("nvme,serial=machinist{index},{drive}")],
            ("virtio-blk-pci", Some(drive)) => vec![format!("virtio-blk-pci,{drive}")],
            ("ide", Some(drive)) => vec![format!("ide-hd,bus=ide.0,{drive}")],
            ("ahci", Some(drive)) => vec![format!("ahci,id=c{index}"), format!("ide-hd,bus=c{index}.0,{drive}")],
            (scsi, Some(drive)) => vec![format!("{scsi},id=c{index}"), format!("scsi-hd,bus=c{index}.0,{drive}")],
            (other, None) => vec![format!("{other},id=c{index}")],
        };
        args.extend(devices.into_iter().flat_map(|device| ["-device".to_owned(), device]));
    }
    args
}
