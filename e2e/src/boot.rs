//! A QEMU network-boot fixture for tests: [`machinist_lab`]'s network namespace and VMs (re-
//! exported here), dnsmasq, and a small Linux RAM disk that says on the serial console what it
//! was booted with.
//!
//! The pieces, each cleaned up in `Drop` (also when a test fails):
//!
//! - [`BootImages`]: a Debian kernel and a busybox RAM disk, built once and cached
//!   ([`BootImages::get`]). The RAM disk prints [`BOOTED`] with the `machinist.*` kernel
//!   arguments, posts a hardware report when it was given `machinist.url` and
//!   `machinist.token`, and powers off (see [the RAM disk's protocol](#the-ram-disks-protocol)).
//! - [`Lab`] (from `machinist-lab`): a network namespace with a bridge `br0` (an IPv4 /24
//!   address and an IPv6 ULA for router advertisements), where taps for VMs are added.
//!   Commands run inside with [`Lab::command`], Rust code (to bind sockets in it) with
//!   [`Lab::spawn_thread`] or [`Lab::run_inside`].
//! - [`Vm`] (from `machinist-lab`): `qemu-system-x86_64 -accel tcg` on a tap of the lab,
//!   booting from the network (`-boot n`, QEMU's iPXE ROM), its serial console read line by
//!   line ([`Vm::wait_for`]); [`TestRamdisk`] reads this RAM disk's lines on it.
//! - [`Dnsmasq`]: dnsmasq on `br0`, handing out addresses (optionally with an iPXE boot file)
//!   and sending IPv6 router advertisements.
//! - [`Process`] (from `machinist-lab`): any program started in the lab, its stdout and stderr
//!   kept as a transcript and matched line by line with bounded waits
//!   ([`ECHO_VARIABLE`] copies them to the test's stderr as they arrive).
//!
//! Tests check their prerequisites with [`need_boot_lab`] first (root, QEMU, dnsmasq…: a skip
//! or, under `MACHINIST_E2E=require`, a failure).
//!
//! # Boot times (2 vCPU, TCG)
//! QEMU start → [`BOOTED`] with dnsmasq giving the iPXE script over DHCP: about 10 s with
//! router advertisements and option 60 `PXEClient` (the defaults of [`DnsmasqOptions::ipxe`]);
//! without router advertisements iPXE waits ~13 s more for IPv6 autoconfiguration, and without
//! option 60 ~3 s more for proxyDHCP offers. Disabling IPv6 in the namespace does not help:
//! iPXE still waits. The report then takes under a second.
//!
//! # The RAM disk's protocol
//! Lines on the serial console (`console=ttyS0` must be among the kernel arguments):
//!
//! 1. `MACHINIST-E2E-BOOTED machine=<m> mode=<mode> mac=<mac>` — the values of
//!    `machinist.machine=`, `machinist.mode=`, `machinist.mac=` (empty when absent);
//!    see [`Booted`].
//! 2. With `machinist.url=` and `machinist.token=`: load the NIC driver, `udhcpc` on the
//!    interface (the one with `machinist.mac`, else the first), then print
//!    `MACHINIST-E2E-REPORTING <url> <body>` and `POST <url>/machines/<machine>/report` with
//!    `Authorization: Bearer <token>`, `Content-Type: application/json` and the body
//!    `{"items":[[class,type,name,value],…]}` (the wire form machinist's server accepts):
//!    `system product name|vendor` (DMI), `cpu logical number`, `memory total size` (bytes),
//!    `network <if> serial` (its MAC) and `network <if> ipv4`, then one item per
//!    `machinist.e2e.item=class,type,name,value` kernel argument. Then one of
//!    `MACHINIST-E2E-REPORTED <http status>`, `MACHINIST-E2E-REPORT-FAILED <reason>`;
//!    without url or token, `MACHINIST-E2E-REPORT-SKIPPED <reason>`. See [`ReportOutcome`].
//! 3. `MACHINIST-E2E-POWEROFF`, then `poweroff -f`: QEMU exits (it runs with `-no-reboot`).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use machinist_ramdisk::{Init, RamdiskRecipe};

use crate::prereq;

pub use machinist_lab::{
    BRIDGE, BRIDGE_IPV6, ECHO_VARIABLE, Lab, LabHypervisor, LabThread, Nic, POOL, Process, Vm, VmConfig,
};
/// Printed by the RAM disk once booted: `MACHINIST-E2E-BOOTED machine=<m> mode=<mode> mac=<mac>`.
pub const BOOTED: &str = "MACHINIST-E2E-BOOTED";
/// Printed before the report is posted: `MACHINIST-E2E-REPORTING <url> <json body>`.
pub const REPORTING: &str = "MACHINIST-E2E-REPORTING";
/// Printed after a successful report: `MACHINIST-E2E-REPORTED <http status>`.
pub const REPORTED: &str = "MACHINIST-E2E-REPORTED";
/// Printed when the report could not be made: `MACHINIST-E2E-REPORT-FAILED <reason>`.
pub const REPORT_FAILED: &str = "MACHINIST-E2E-REPORT-FAILED";
/// Printed when there was nothing to report to: `MACHINIST-E2E-REPORT-SKIPPED <reason>`.
pub const REPORT_SKIPPED: &str = "MACHINIST-E2E-REPORT-SKIPPED";
/// Printed just before `poweroff -f`.
pub const POWEROFF: &str = "MACHINIST-E2E-POWEROFF";

/// The programs a boot test needs besides root and the lab's own
/// ([`machinist_lab::host::PROGRAMS`]); [`need_boot_lab`] checks them all.
pub const PROGRAMS: &[&str] = &["dnsmasq", "busybox", "gzip", "apt-get", "apt-cache", "dpkg"];

/// Environment variable: where [`BootImages`] are cached (default
/// `$CARGO_TARGET_DIR/machinist-e2e-boot`, else `<workspace>/target/machinist-e2e-boot`).
pub const CACHE_VARIABLE: &str = "MACHINIST_E2E_BOOT_CACHE";

/// Modules the RAM disk loads, with their dependencies, in this order (built-in ones, such as
/// `af_packet`, skipped).
const WANTED_MODULES: &[&str] = &["af_packet", "virtio_pci", "virtio_net", "e1000"];

const INIT_SCRIPT: &str = r#"#!/bin/busybox sh
# machinist-e2e RAM disk (e2e/src/boot.rs, built by machinist-ramdisk): prints what it was booted with,
# reports hardware when given machinist.url and machinist.token, powers off.
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mkdir -p /tmp
dmesg -n 1

machine= mode= mac= url= token= extra=
set -f
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    machinist.machine=*) machine="${arg#machinist.machine=}" ;;
    machinist.mode=*) mode="${arg#machinist.mode=}" ;;
    machinist.mac=*) mac="${arg#machinist.mac=}" ;;
    machinist.url=*) url="${arg#machinist.url=}" ;;
    machinist.token=*) token="${arg#machinist.token=}" ;;
    machinist.e2e.item=*) extra="$extra ${arg#machinist.e2e.item=}" ;;
  esac
done
set +f
echo "MACHINIST-E2E-BOOTED machine=$machine mode=$mode mac=$mac"

fail() { echo "MACHINIST-E2E-REPORT-FAILED $*"; }
esc() { printf '%s' "$1" | tr -d '\000-\037' | sed 's/[\\"]/\\&/g'; }
quad() { printf '["%s","%s","%s","%s"]' "$(esc "$1")" "$(esc "$2")" "$(esc "$3")" "$(esc "$4")"; }

report() {
  if [ -z "$url" ] || [ -z "$token" ]; then
    echo "MACHINIST-E2E-REPORT-SKIPPED no machinist.url or machinist.token"
    return
  fi
  for m in $(cat /etc/machinist/modules); do
    if ! insmod "$m" 2>/tmp/insmod.err && ! grep -q 'File exists' /tmp/insmod.err; then
      fail "insmod $m: $(cat /tmp/insmod.err)"
      return
    fi
  done
  iface=
  tries=0
  while [ -z "$iface" ] && [ "$tries" -lt 50 ]; do
    for dev in /sys/class/net/*; do
      name="${dev##*/}"
      [ "$name" = lo ] && continue
      [ -z "$iface" ] && iface="$name"
      [ -n "$mac" ] && [ "$(cat "$dev/address")" = "$(echo "$mac" | tr A-F a-f)" ] && iface="$name" && break
    done
    [ -n "$iface" ] || { sleep 0.1; tries=$((tries + 1)); }
  done
  if [ -z "$iface" ]; then
    fail "no network interface"
    return
  fi
  ip link set lo up
  ip link set "$iface" up
  if ! udhcpc -i "$iface" -f -q -n -t 10 -T 1 -s /usr/share/udhcpc/default.script; then
    fail "no DHCP lease on $iface"
    return
  fi
  kib=$(sed -n 's/^MemTotal: *\([0-9]*\) kB.*/\1/p' /proc/meminfo)
  ipv4=$(ip -4 -o addr show dev "$iface" | sed -n 's/.* inet \([0-9.]*\)\/.*/\1/p' | head -n 1)
  items="$(quad system product name "$(cat /sys/class/dmi/id/product_name 2>/dev/null)")"
  items="$items,$(quad system product vendor "$(cat /sys/class/dmi/id/sys_vendor 2>/dev/null)")"
  items="$items,$(quad cpu logical number "$(nproc)")"
  items="$items,$(quad memory total size "$((kib * 1024))")"
  items="$items,$(quad network "$iface" serial "$(cat "/sys/class/net/$iface/address")")"
  items="$items,$(quad network "$iface" ipv4 "$ipv4")"
  for item in $extra; do
    IFS=, read -r c t n v <<EOF
$item
EOF
    items="$items,$(quad "$c" "$t" "$n" "$v")"
  done
  body="{\"items\":[$items]}"
  target="${url%/}/machines/$machine/report"
  echo "MACHINIST-E2E-REPORTING $target $body"
  wget -S -q -O /tmp/response --header "Authorization: Bearer $token" \
    --header "Content-Type: application/json" --post-data "$body" "$target" 2>/tmp/wget.log
  rc=$?
  status=$(sed -n 's/^ *HTTP\/[0-9.]* \([0-9][0-9][0-9]\).*/\1/p' /tmp/wget.log | tail -n 1)
  if [ "$rc" -eq 0 ]; then
    echo "MACHINIST-E2E-REPORTED ${status:-ok}"
  else
    fail "${status:+http $status: }$(grep -v '^ ' /tmp/wget.log | tail -n 1)"
  fi
}

report
echo "MACHINIST-E2E-POWEROFF"
poweroff -f
sleep 5
echo o >/proc/sysrq-trigger
"#;

/// What went wrong in the fixture.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The lab (namespace, processes, VMs) failed.
    #[error(transparent)]
    Lab(#[from] machinist_lab::Error),
    /// Building the boot images went wrong, or the RAM disk printed something unexpected.
    #[error("{0}")]
    Setup(String),
}

/// Results of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

// ---------------------------------------------------------------------------------------------
// Prerequisites

pub use prereq::is_root;

/// Checks what a boot test needs: root, the lab's programs ([`machinist_lab::host::PROGRAMS`]),
/// [`PROGRAMS`] and `extra_programs`, against `MACHINIST_E2E` like [`prereq::need_programs`]:
/// `Ok(true)` run, `Ok(false)` skip (the reason printed), `Err` fail (a prerequisite missing
/// under `MACHINIST_E2E=require`).
pub fn need_boot_lab(test: &str, extra_programs: &[&str]) -> Result<bool, String> {
    let programs: Vec<&str> =
        machinist_lab::host::PROGRAMS.iter().chain(PROGRAMS).chain(extra_programs).copied().collect();
    prereq::need_root_and_programs(test, &programs)
}

// ---------------------------------------------------------------------------------------------
// Boot images

/// A kernel and RAM disk for [`Vm`]s, cached on disk (see [`CACHE_VARIABLE`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootImages {
    /// The kernel (`vmlinuz`).
    pub kernel: PathBuf,
    /// The RAM disk: a gzip'd newc cpio archive (`initrd.gz`).
    pub initrd: PathBuf,
    /// The Debian package the kernel comes from (`linux-image-6.1.0-<N>-amd64`).
    pub package: String,
    /// The kernel release (`6.1.0-<N>-amd64`).
    pub release: String,
    /// The modules the RAM disk loads, in order, before bringing up the network.
    pub modules: Vec<String>,
}

impl BootImages {
    /// The images, built on first use and then taken from the cache, by `machinist-ramdisk`
    /// ([`recipe`]). The kernel is the one `linux-image-amd64` depends on (`apt-get download`,
    /// needs the network the first time; the package is kept in the cache's `packages/`); the
    /// RAM disk is the host's static busybox, the init script and the NIC drivers (virtio-net
    /// and e1000) from the kernel package. The cache is keyed by kernel package and by the
    /// recipe's hash; concurrent processes build into temporary directories and rename, so
    /// racing test binaries are safe. Built once per process.
    pub fn get() -> Result<Self> {
        static IMAGES: OnceLock<Result<BootImages, String>> = OnceLock::new();
        IMAGES
            .get_or_init(|| Self::build_cached(&cache_root()).map_err(|e| e.to_string()))
            .clone()
            .map_err(Error::Setup)
    }

    /// Builds (or finds) the images under `root`, without the per-process memo of [`get`](Self::get).
    pub fn build_cached(root: &Path) -> Result<Self> {
        let built = machinist_ramdisk::build_cached(&recipe(), root).map_err(|e| Error::Setup(e.to_string()))?;
        Ok(Self {
            kernel: built.kernel,
            initrd: built.initrd,
            package: built.manifest.kernel_package,
            release: built.manifest.release,
            modules: built.manifest.modules,
        })
    }
}

/// This fixture's RAM disk: the kernel `linux-image-amd64` depends on, [`WANTED_MODULES`] and
/// [`INIT_SCRIPT`] (which loads the modules from `/etc/machinist/modules` and runs `udhcpc` with
/// the RAM disk's `/usr/share/udhcpc/default.script`), no agent.
pub fn recipe() -> RamdiskRecipe {
    RamdiskRecipe {
        kernel_package: None,
        modules: WANTED_MODULES.iter().map(|m| (*m).to_owned()).collect(),
        agent: None,
        init: Init::Script(INIT_SCRIPT.to_owned()),
        extra_files: Vec::new(),
        firmware: machinist_ramdisk::FirmwareSources::none(),
        programs: Vec::new(),
        package_files: Vec::new(),
    }
}

/// Where [`BootImages`] are cached.
pub fn cache_root() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new(".")).to_path_buf();
    if let Some(dir) = std::env::var_os(CACHE_VARIABLE).filter(|v| !v.is_empty()) {
        return workspace.join(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()).map(PathBuf::from);
    workspace.join(target.unwrap_or_else(|| PathBuf::from("target"))).join("machinist-e2e-boot")
}

// ---------------------------------------------------------------------------------------------
// The RAM disk on a VM's console

/// This module's RAM disk's lines on a [`Vm`]'s console.
pub trait TestRamdisk {
    /// Waits for the RAM disk's [`BOOTED`] line and parses it.
    fn wait_booted(&self, timeout: Duration) -> Result<Booted>;

    /// Waits for the RAM disk's report outcome ([`REPORTED`], [`REPORT_FAILED`] or
    /// [`REPORT_SKIPPED`]).
    fn wait_report(&self, timeout: Duration) -> Result<ReportOutcome>;
}

impl TestRamdisk for Vm {
    fn wait_booted(&self, timeout: Duration) -> Result<Booted> {
        let line = self.wait_for(BOOTED, timeout)?;
        Booted::parse(&line).ok_or_else(|| Error::Setup(format!("malformed {BOOTED} line: {line:?}")))
    }

    fn wait_report(&self, timeout: Duration) -> Result<ReportOutcome> {
        let line = self.process().wait_until("the report outcome", timeout, |l| ReportOutcome::parse(l).is_some())?;
        ReportOutcome::parse(&line).ok_or_else(|| Error::Setup(format!("malformed report line: {line:?}")))
    }
}
/// What the RAM disk printed on [`BOOTED`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Booted {
    /// `machinist.machine=` (empty when absent).
    pub machine: String,
    /// `machinist.mode=`.
    pub mode: String,
    /// `machinist.mac=`.
    pub mac: String,
}

impl Booted {
    /// Parses `… MACHINIST-E2E-BOOTED machine=<m> mode=<mode> mac=<mac>` (anything may precede
    /// the marker on the line).
    pub fn parse(line: &str) -> Option<Self> {
        let (_, rest) = line.split_once(BOOTED)?;
        let mut booted = Self::default();
        for field in rest.split_whitespace() {
            match field.split_once('=') {
                Some(("machine", v)) => v.clone_into(&mut booted.machine),
                Some(("mode", v)) => v.clone_into(&mut booted.mode),
                Some(("mac", v)) => v.clone_into(&mut booted.mac),
                _ => return None,
            }
        }
        Some(booted)
    }
}

/// How the RAM disk's hardware report went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReportOutcome {
    /// Posted; the HTTP status (`204`), or `ok` if none was seen.
    Reported(String),
    /// Not posted, or refused: the reason (`http 401: …`, `no DHCP lease on eth0`…).
    Failed(String),
    /// No `machinist.url` or `machinist.token`.
    Skipped(String),
}

impl ReportOutcome {
    /// Parses a [`REPORTED`], [`REPORT_FAILED`] or [`REPORT_SKIPPED`] line.
    pub fn parse(line: &str) -> Option<Self> {
        let after = |marker: &str| {
            line.split_once(marker)
                .and_then(|(_, rest)| (rest.is_empty() || rest.starts_with(' ')).then(|| rest.trim().to_owned()))
        };
        // REPORTED is a prefix of neither of the others, but check the longer markers first anyway.
        if let Some(reason) = after(REPORT_FAILED) {
            Some(Self::Failed(reason))
        } else if let Some(reason) = after(REPORT_SKIPPED) {
            Some(Self::Skipped(reason))
        } else {
            after(REPORTED).map(Self::Reported)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// dnsmasq

/// How to run [`Dnsmasq`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DnsmasqOptions {
    /// First and last address handed out (in the lab's /24); `None`: no DHCPv4 at all.
    pub range: Option<(Ipv4Addr, Ipv4Addr)>,
    /// Boot file (an iPXE script URL) for clients whose user class is `iPXE` (QEMU's ROM is
    /// iPXE), sent with option 60 `PXEClient` so that iPXE does not wait ~3 s for proxyDHCP.
    /// `None`: addresses only, no boot options (for proxyDHCP tests).
    pub ipxe_script_url: Option<String>,
    /// Send IPv6 router advertisements on the bridge (for [`BRIDGE_IPV6`]'s prefix,
    /// `ra-only`): iPXE otherwise waits ~13 s for IPv6 autoconfiguration.
    pub router_advertisements: bool,
    /// Further dnsmasq arguments.
    pub extra_args: Vec<String>,
}

impl DnsmasqOptions {
    /// Addresses in `first..=last` without boot options, and router advertisements.
    pub fn addresses(first: Ipv4Addr, last: Ipv4Addr) -> Self {
        Self { range: Some((first, last)), router_advertisements: true, ..Self::default() }
    }

    /// Addresses in `first..=last`, `script_url` as boot file for iPXE, and router advertisements.
    pub fn ipxe(first: Ipv4Addr, last: Ipv4Addr, script_url: impl Into<String>) -> Self {
        Self { ipxe_script_url: Some(script_url.into()), ..Self::addresses(first, last) }
    }

    /// Only router advertisements (no DHCP socket at all), beside a DHCP server under test.
    pub fn router_advertisements_only() -> Self {
        Self { router_advertisements: true, ..Self::default() }
    }
}

/// dnsmasq (from `dnsmasq-base`) in the foreground on the lab's bridge: no DNS (`--port=0`),
/// no ping before offering, no configuration file, leases in a temporary directory, log (with
/// `--log-dhcp`) on stderr, which is its [`Process`] transcript. Killed in `Drop`.
#[derive(Debug)]
pub struct Dnsmasq {
    process: Process,
    state: tempfile::TempDir,
}

impl Dnsmasq {
    /// Starts dnsmasq in `lab` and waits (≤ 10 s) until it logged its start, by when its
    /// sockets are bound.
    pub fn start(lab: &Lab, options: &DnsmasqOptions) -> Result<Self> {
        let state = tempfile::Builder::new()
            .prefix("machinist-e2e-dnsmasq-")
            .tempdir()
            .map_err(io("creating dnsmasq's state directory"))?;
        let mut command = lab.command("dnsmasq");
        command
            .args(["--keep-in-foreground", "--no-daemon", "--conf-file=/dev/null", "--port=0", "--no-ping"])
            .args(["--bind-interfaces", &format!("--interface={BRIDGE}"), "--except-interface=lo"])
            .args(["--pid-file=", "--log-facility=-", "--log-dhcp", "--no-hosts", "--no-resolv"])
            .arg(format!("--dhcp-leasefile={}", state.path().join("leases").display()));
        if let Some((first, last)) = options.range {
            command.arg(format!("--dhcp-range={first},{last},255.255.255.0,1h"));
        }
        if let Some(url) = &options.ipxe_script_url {
            command
                .arg("--dhcp-userclass=set:ipxe,iPXE")
                .arg(format!("--dhcp-boot=tag:ipxe,{url}"))
                .arg("--dhcp-option-force=tag:ipxe,60,PXEClient");
        }
        if options.router_advertisements {
            command.arg("--enable-ra").arg(format!("--dhcp-range={BRIDGE_IPV6},ra-only"));
        }
        command.args(&options.extra_args);
        let process = lab.spawn(format!("dnsmasq ({})", lab.name()), command)?;
        process.wait_for("started, version", Duration::from_secs(10))?;
        Ok(Self { process, state })
    }

    /// The dnsmasq process: its log is the transcript ([`Process::wait_for`] e.g.
    /// `DHCPACK(br0) 10.x.0.y <mac>`).
    pub fn process(&self) -> &Process {
        &self.process
    }

    /// The lease file.
    pub fn lease_file(&self) -> PathBuf {
        self.state.path().join("leases")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booted_lines_parse() {
        let line = "\u{1b}[0mMACHINIST-E2E-BOOTED machine=m1 mode=discovery mac=52:54:00:12:34:56";
        assert_eq!(
            Booted::parse(line),
            Some(Booted { machine: "m1".into(), mode: "discovery".into(), mac: "52:54:00:12:34:56".into() })
        );
        assert_eq!(Booted::parse("MACHINIST-E2E-BOOTED machine= mode= mac="), Some(Booted::default()));
        assert_eq!(Booted::parse("MACHINIST-E2E-BOOTED garbage"), None);
        assert_eq!(Booted::parse("Command line: machinist.machine=m1"), None);
    }

    #[test]
    fn report_lines_parse() {
        assert_eq!(ReportOutcome::parse("MACHINIST-E2E-REPORTED 204"), Some(ReportOutcome::Reported("204".into())));
        assert_eq!(
            ReportOutcome::parse("MACHINIST-E2E-REPORT-FAILED http 401: wget: server returned error"),
            Some(ReportOutcome::Failed("http 401: wget: server returned error".into()))
        );
        assert!(matches!(ReportOutcome::parse("MACHINIST-E2E-REPORT-SKIPPED no url"), Some(ReportOutcome::Skipped(_))));
        assert_eq!(ReportOutcome::parse("MACHINIST-E2E-REPORTING http://x {}"), None);
        assert_eq!(ReportOutcome::parse("MACHINIST-E2E-BOOTED machine="), None);
    }

    /// The lab's namespace: its bridge address can be bound only inside, and it is deleted
    /// with the last handle (a process started in it holds it).
    #[test]
    fn a_lab_binds_inside_its_namespace_and_is_deleted_with_its_last_handle() -> Result<(), String> {
        if !prereq::need_root_and_programs("a_lab_binds_inside_its_namespace", machinist_lab::host::PROGRAMS)? {
            return Ok(());
        }
        let exists = |name: &str| Path::new("/run/netns").join(name).exists();
        let lab = Lab::new(Ipv4Addr::new(10, 93, 0, 1)).map_err(|e| e.to_string())?;
        let name = lab.name().to_owned();
        assert!(name.starts_with(machinist_lab::NAMESPACE_PREFIX) && exists(&name), "{name}");
        let address = lab.address();
        assert!(std::net::UdpSocket::bind((address, 0)).is_err(), "{address} is on the host too");
        let inside = lab.run_inside(move || std::net::UdpSocket::bind((address, 0)).map(|s| s.local_addr()));
        assert!(matches!(inside, Ok(Ok(Ok(_)))), "{inside:?}");
        assert!(lab.run("ip", ["link", "show", BRIDGE]).map_err(|e| e.to_string())?.contains("UP"));

        let mut command = lab.command("sleep");
        command.arg("30");
        let sleeper = lab.spawn("sleep", command).map_err(|e| e.to_string())?;
        drop(lab);
        assert!(exists(&name), "deleted while a process in it runs");
        drop(sleeper);
        assert!(!exists(&name), "{name} left behind");
        Ok(())
    }
}
