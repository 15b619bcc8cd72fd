//! A QEMU network-boot fixture: a private network, a VM whose iPXE ROM boots from it, and a
//! small Linux RAM disk that says on the serial console what it was booted with.
//!
//! The pieces, each cleaned up in `Drop` (also when a test fails):
//!
//! - [`BootImages`]: a Debian kernel and a busybox RAM disk, built once and cached
//!   ([`BootImages::get`]). The RAM disk prints [`BOOTED`] with the `machinist.*` kernel
//!   arguments, posts a hardware report when it was given `machinist.url` and
//!   `machinist.token`, and powers off (see [the RAM disk's protocol](#the-ram-disks-protocol)).
//! - [`Lab`]: a network namespace with a bridge `br0` (an IPv4 /24 address and an IPv6 ULA
//!   for router advertisements), where taps for VMs are added. Commands run inside with
//!   [`Lab::command`], Rust code (to bind sockets in it) with [`Lab::spawn_thread`] or
//!   [`Lab::run_inside`].
//! - [`Vm`]: `qemu-system-x86_64 -accel tcg` on a tap of the lab, booting from the network
//!   (`-boot n`, QEMU's iPXE ROM), its serial console read line by line ([`Vm::wait_for`]).
//! - [`Dnsmasq`]: dnsmasq on `br0`, handing out addresses (optionally with an iPXE boot file)
//!   and sending IPv6 router advertisements.
//! - [`Process`]: any program started in the lab, its stdout and stderr kept as a transcript
//!   and matched line by line with bounded waits.
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

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use machinist_ramdisk::{Init, RamdiskRecipe};

use crate::prereq;

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

/// The programs a boot test needs besides root ([`need_boot_lab`] checks them).
pub const PROGRAMS: &[&str] =
    &["ip", "qemu-system-x86_64", "dnsmasq", "busybox", "gzip", "apt-get", "apt-cache", "dpkg"];

/// Environment variable: where [`BootImages`] are cached (default
/// `$CARGO_TARGET_DIR/machinist-e2e-boot`, else `<workspace>/target/machinist-e2e-boot`).
pub const CACHE_VARIABLE: &str = "MACHINIST_E2E_BOOT_CACHE";
/// Environment variable: when set (non-empty), every line a [`Process`] prints is also written to
/// the test's stderr as it arrives, prefixed with the process's name.
pub const ECHO_VARIABLE: &str = "MACHINIST_E2E_ECHO";

/// Modules the RAM disk loads, with their dependencies, in this order (built-in ones, such as
/// `af_packet`, skipped).
const WANTED_MODULES: &[&str] = &["af_packet", "virtio_pci", "virtio_net", "e1000"];
/// How many transcript lines errors show.
const TAIL_LINES: usize = 40;

/// The bridge every lab has.
pub const BRIDGE: &str = "br0";
/// The IPv6 address of `br0` (a ULA, so that dnsmasq can send router advertisements).
pub const BRIDGE_IPV6: &str = "fd00:e2e::1";
/// Prefix of lab namespace names: `me2e-<pid>-<n>`.
const NETNS_PREFIX: &str = "me2e-";

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
    /// A host command failed or is missing.
    #[error(transparent)]
    Host(#[from] machinist_ramdisk::Error),
    /// Building the boot images or setting up the lab went wrong otherwise.
    #[error("{0}")]
    Setup(String),
    /// A bounded wait ran out.
    #[error("timed out after {timeout:?} waiting for {what} from {process}; last lines:\n{tail}")]
    Timeout {
        /// The process.
        process: String,
        /// What was awaited.
        what: String,
        /// The bound.
        timeout: Duration,
        /// The last lines of its transcript.
        tail: String,
    },
    /// The process's output ended (it exited) before what was awaited appeared.
    #[error("{process} ended its output before {what}; last lines:\n{tail}")]
    Ended {
        /// The process.
        process: String,
        /// What was awaited.
        what: String,
        /// The last lines of its transcript.
        tail: String,
    },
}

/// Results of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// Runs a command to completion; its stdout, or an error with its stderr.
fn run(command: &mut Command) -> Result<String> {
    Ok(machinist_ramdisk::run::run(command)?)
}

fn ip(args: &[&str]) -> Result<String> {
    run(Command::new("ip").args(args))
}

// ---------------------------------------------------------------------------------------------
// Prerequisites

pub use prereq::is_root;

/// Checks what a boot test needs: root and [`PROGRAMS`] plus `extra_programs`, against
/// `MACHINIST_E2E` like [`prereq::need_programs`]: `Ok(true)` run, `Ok(false)` skip (the reason
/// printed), `Err` fail (a prerequisite missing under `MACHINIST_E2E=require`).
pub fn need_boot_lab(test: &str, extra_programs: &[&str]) -> Result<bool, String> {
    let programs: Vec<&str> = PROGRAMS.iter().chain(extra_programs).copied().collect();
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
// Lab

/// A network namespace with a bridge [`BRIDGE`] and taps for VMs; deleted when the last handle
/// (the `Lab`, its clones, and the [`Vm`]s, [`Dnsmasq`]s and [`Process`]es started in it) is
/// dropped, after those processes were killed.
#[derive(Clone, Debug)]
pub struct Lab {
    inner: Arc<LabInner>,
}

#[derive(Debug)]
struct LabInner {
    name: String,
    address: Ipv4Addr,
    taps: AtomicU32,
}

impl Drop for LabInner {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}

impl Lab {
    /// A new namespace (a name unique to this process and call) with `lo` up and the bridge
    /// [`BRIDGE`] up with `address`/24 and [`BRIDGE_IPV6`]/64. Also deletes namespaces left by
    /// earlier test processes that were killed before they could clean up.
    pub fn new(address: Ipv4Addr) -> Result<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        static SWEPT: OnceLock<()> = OnceLock::new();
        SWEPT.get_or_init(remove_stale_namespaces);
        let name = format!("{NETNS_PREFIX}{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        ip(&["netns", "add", &name])?;
        let lab = Self { inner: Arc::new(LabInner { name, address, taps: AtomicU32::new(0) }) };
        let ns = lab.name();
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        ip(&["-n", ns, "link", "add", BRIDGE, "type", "bridge"])?;
        ip(&["-n", ns, "addr", "add", &format!("{address}/24"), "dev", BRIDGE])?;
        ip(&["-n", ns, "-6", "addr", "add", &format!("{BRIDGE_IPV6}/64"), "dev", BRIDGE, "nodad"])?;
        ip(&["-n", ns, "link", "set", BRIDGE, "up"])?;
        Ok(lab)
    }

    /// The namespace's name (for `ip netns exec`, `ip -n`).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// `/run/netns/<name>`, for `setns`.
    pub fn netns_path(&self) -> PathBuf {
        Path::new("/run/netns").join(self.name())
    }

    /// The bridge's IPv4 address.
    pub fn address(&self) -> Ipv4Addr {
        self.inner.address
    }

    /// The address `host` in the bridge's /24 (`10.x.0.<host>`).
    pub fn host(&self, host: u8) -> Ipv4Addr {
        let [a, b, c, _] = self.inner.address.octets();
        Ipv4Addr::new(a, b, c, host)
    }

    /// A command that runs `program` inside the namespace (`ip netns exec <name> program`).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", self.name()]).arg(program);
        command
    }

    /// Runs `program args…` inside the namespace to completion: its stdout, or an error with
    /// its stderr.
    pub fn run<S: AsRef<OsStr>>(&self, program: &str, args: impl IntoIterator<Item = S>) -> Result<String> {
        run(self.command(program).args(args))
    }

    /// A new tap (`tap<n>`) attached to the bridge and up; removed with the namespace.
    pub fn add_tap(&self) -> Result<String> {
        let tap = format!("tap{}", self.inner.taps.fetch_add(1, Ordering::Relaxed));
        ip(&["-n", self.name(), "tuntap", "add", &tap, "mode", "tap"])?;
        ip(&["-n", self.name(), "link", "set", &tap, "master", BRIDGE, "up"])?;
        Ok(tap)
    }

    /// Starts `command` (built with [`command`](Self::command)) as a [`Process`] named `name`
    /// that holds this lab.
    pub fn spawn(&self, name: impl Into<String>, command: Command) -> Result<Process> {
        Process::spawn(name, command, Some(self.clone()))
    }

    /// Runs `f` on a new thread that has entered the namespace (`setns`). Sockets created
    /// there belong to the namespace and can be used from any thread afterwards; threads (and
    /// so tokio runtimes) started from that thread are inside too. Errors when entering fails.
    pub fn spawn_thread<T, F>(&self, f: F) -> Result<LabThread<T>>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let handle = crate::netns::spawn_in(&self.netns_path(), f).map_err(Error::Setup)?;
        Ok(LabThread { handle, lab: self.name().to_owned() })
    }

    /// Runs `f` inside the namespace (on a thread, see [`spawn_thread`](Self::spawn_thread))
    /// and returns its result, e.g. a socket bound there.
    pub fn run_inside<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.spawn_thread(f)?.join()
    }
}

/// A thread running inside a [`Lab`] ([`Lab::spawn_thread`]).
#[derive(Debug)]
pub struct LabThread<T> {
    handle: std::thread::JoinHandle<Option<T>>,
    lab: String,
}

impl<T> LabThread<T> {
    /// Waits for the thread; its result, or an error if it panicked.
    pub fn join(self) -> Result<T> {
        match self.handle.join() {
            Ok(Some(value)) => Ok(value),
            Ok(None) => Err(Error::Setup(format!("the thread did not enter {}", self.lab))),
            Err(payload) => {
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Err(Error::Setup(format!("the thread inside {} panicked: {message}", self.lab)))
            }
        }
    }

    /// Whether the thread has finished.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

/// Deletes `me2e-<pid>-<n>` namespaces whose process is gone.
fn remove_stale_namespaces() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(NETNS_PREFIX).and_then(|rest| rest.split('-').next()) else { continue };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = ip(&["netns", "del", &name]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Processes and their output

/// A program started with its stdin on `/dev/null` and its stdout and stderr read line by
/// line (lossy UTF-8, `\r` trimmed) into a transcript; killed and reaped in `Drop`.
///
/// [`wait_for`](Self::wait_for) and [`wait_until`](Self::wait_until) consume lines in order:
/// each looks only at lines that arrived after the line the previous wait matched (all lines
/// stay in the [`transcript`](Self::transcript)).
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Mutex<Child>,
    lines: Mutex<Receiver<String>>,
    transcript: Arc<Mutex<Vec<String>>>,
    started: Instant,
    _lab: Option<Lab>,
}

impl Process {
    /// Starts `command` (stdin null, stdout and stderr piped). `lab` is kept alive as long as
    /// the process.
    pub fn spawn(name: impl Into<String>, mut command: Command, lab: Option<Lab>) -> Result<Self> {
        let name = name.into();
        let started = Instant::now();
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io(format!("starting {name} (`{}`)", machinist_ramdisk::run::describe(&command))))?;
        let (tx, rx) = std::sync::mpsc::channel();
        let transcript = Arc::new(Mutex::new(Vec::new()));
        let echo = std::env::var_os(ECHO_VARIABLE).is_some_and(|v| !v.is_empty()).then(|| name.clone());
        if let Some(stdout) = child.stdout.take() {
            pump(stdout, tx.clone(), Arc::clone(&transcript), echo.clone());
        }
        if let Some(stderr) = child.stderr.take() {
            pump(stderr, tx, Arc::clone(&transcript), echo);
        }
        Ok(Self { name, child: Mutex::new(child), lines: Mutex::new(rx), transcript, started, _lab: lab })
    }

    /// The name given at start.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.lock().unwrap_or_else(PoisonError::into_inner).id()
    }

    /// When it was started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Waits at most `timeout` for a line containing `pattern`; returns that line.
    pub fn wait_for(&self, pattern: &str, timeout: Duration) -> Result<String> {
        self.wait_until(&format!("{pattern:?}"), timeout, |line| line.contains(pattern))
    }

    /// Waits at most `timeout` for a line that `matches`; returns it. `what` names it in errors.
    pub fn wait_until(&self, what: &str, timeout: Duration, mut matches: impl FnMut(&str) -> bool) -> Result<String> {
        let deadline = Instant::now() + timeout;
        let lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(remaining) {
                Ok(line) if matches(&line) => return Ok(line),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    return Err(Error::Timeout {
                        process: self.name.clone(),
                        what: what.to_owned(),
                        timeout,
                        tail: self.tail(TAIL_LINES),
                    });
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Error::Ended {
                        process: self.name.clone(),
                        what: what.to_owned(),
                        tail: self.tail(TAIL_LINES),
                    });
                }
            }
        }
    }

    /// Waits at most `timeout` for the process to exit (its output ends first, then it is
    /// reaped); returns how it ended.
    pub fn wait_exit(&self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        {
            let lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(_) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                    Err(RecvTimeoutError::Timeout) => return Err(self.exit_timeout(timeout)),
                }
            }
        }
        // Output closed: the process is exiting. Reap it, still within the bound.
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(status) = child.try_wait().map_err(io(format!("waiting for {}", self.name)))? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(self.exit_timeout(timeout));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn exit_timeout(&self, timeout: Duration) -> Error {
        Error::Timeout { process: self.name.clone(), what: "exit".into(), timeout, tail: self.tail(TAIL_LINES) }
    }

    /// Every line so far, stdout and stderr interleaved as they arrived.
    pub fn transcript(&self) -> Vec<String> {
        self.transcript.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The last `n` lines, joined.
    pub fn tail(&self, n: usize) -> String {
        let transcript = self.transcript.lock().unwrap_or_else(PoisonError::into_inner);
        transcript[transcript.len().saturating_sub(n)..].join("\n")
    }

    /// Kills (SIGKILL) and reaps the process; also done on drop.
    pub fn kill(&self) {
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(child.try_wait(), Ok(None)) {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads `from` line by line into the channel and the transcript, on a thread that ends at EOF.
fn pump(
    from: impl Read + Send + 'static,
    to: Sender<String>,
    transcript: Arc<Mutex<Vec<String>>>,
    echo: Option<String>,
) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(from);
        let mut buffer = Vec::new();
        loop {
            buffer.clear();
            match reader.read_until(b'\n', &mut buffer) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let line = String::from_utf8_lossy(&buffer).trim_end_matches(['\r', '\n']).to_owned();
            if let Some(name) = &echo {
                eprintln!("[{name}] {line}");
            }
            transcript.lock().unwrap_or_else(PoisonError::into_inner).push(line.clone());
            // The receiver may be gone (the Process dropped): keep draining the pipe regardless.
            let _ = to.send(line);
        }
    });
}

// ---------------------------------------------------------------------------------------------
// VMs

/// The emulated NIC. Its QEMU iPXE ROM boots it; the RAM disk has its Linux driver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Nic {
    /// `virtio-net-pci` (driver `virtio_net`): the fastest to boot (~1 s less than e1000 to
    /// [`BOOTED`], and its link is up at once where e1000 takes ~3 s before DHCP).
    #[default]
    VirtioNet,
    /// `e1000` (driver `e1000`).
    E1000,
}

impl Nic {
    /// QEMU's device name.
    pub fn device(self) -> &'static str {
        match self {
            Self::VirtioNet => "virtio-net-pci",
            Self::E1000 => "e1000",
        }
    }
}

/// How to start a [`Vm`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmConfig {
    /// The NIC's MAC address, `52:54:00:xx:xx:xx`.
    pub mac: String,
    /// The NIC model.
    pub nic: Nic,
    /// Memory in MiB (at least ~256 for the RAM disk).
    pub memory_mib: u32,
    /// Further QEMU arguments.
    pub extra_args: Vec<String>,
}

impl VmConfig {
    /// A virtio-net VM with 512 MiB and `mac`.
    pub fn new(mac: impl Into<String>) -> Self {
        Self { mac: mac.into(), nic: Nic::default(), memory_mib: 512, extra_args: Vec::new() }
    }
}

/// A QEMU VM (TCG) on a new tap of a [`Lab`], booting from the network with QEMU's iPXE ROM;
/// its serial console is the [`Process`] output (`-nographic`). Killed and reaped in `Drop`.
#[derive(Debug)]
pub struct Vm {
    process: Process,
    tap: String,
    config: VmConfig,
}

impl Vm {
    /// Adds a tap to `lab` and starts `qemu-system-x86_64 -accel tcg -m <mib> -nographic
    /// -no-reboot -boot n -netdev tap,… -device <nic>,netdev=n0,mac=<mac>` in it.
    pub fn start(lab: &Lab, config: VmConfig) -> Result<Self> {
        let tap = lab.add_tap()?;
        let mut command = lab.command("qemu-system-x86_64");
        command
            .args(["-accel", "tcg", "-m", &config.memory_mib.to_string(), "-nographic", "-no-reboot", "-boot", "n"])
            .args(["-netdev", &format!("tap,id=n0,ifname={tap},script=no,downscript=no")])
            .args(["-device", &format!("{},netdev=n0,mac={}", config.nic.device(), config.mac)])
            .args(&config.extra_args);
        let process = lab.spawn(format!("vm {} ({}, {tap})", config.mac, lab.name()), command)?;
        Ok(Self { process, tap, config })
    }

    /// The MAC address.
    pub fn mac(&self) -> &str {
        &self.config.mac
    }

    /// The tap it is on.
    pub fn tap(&self) -> &str {
        &self.tap
    }

    /// The QEMU process: transcript, [`Process::wait_until`], [`Process::wait_exit`].
    pub fn process(&self) -> &Process {
        &self.process
    }

    /// Time since QEMU was started.
    pub fn elapsed(&self) -> Duration {
        self.process.started().elapsed()
    }

    /// Waits at most `timeout` for a console line containing `pattern`; returns it, or an error
    /// with the console's last lines. See [`Process`] for the order in which lines are consumed.
    pub fn wait_for(&self, pattern: &str, timeout: Duration) -> Result<String> {
        self.process.wait_for(pattern, timeout)
    }

    /// Waits for the RAM disk's [`BOOTED`] line and parses it.
    pub fn wait_booted(&self, timeout: Duration) -> Result<Booted> {
        let line = self.wait_for(BOOTED, timeout)?;
        Booted::parse(&line).ok_or_else(|| Error::Setup(format!("malformed {BOOTED} line: {line:?}")))
    }

    /// Waits for the RAM disk's report outcome ([`REPORTED`], [`REPORT_FAILED`] or
    /// [`REPORT_SKIPPED`]).
    pub fn wait_report(&self, timeout: Duration) -> Result<ReportOutcome> {
        let line = self.process.wait_until("the report outcome", timeout, |l| ReportOutcome::parse(l).is_some())?;
        ReportOutcome::parse(&line).ok_or_else(|| Error::Setup(format!("malformed report line: {line:?}")))
    }

    /// Waits for QEMU to exit (after the RAM disk's `poweroff -f`).
    pub fn wait_exit(&self, timeout: Duration) -> Result<ExitStatus> {
        self.process.wait_exit(timeout)
    }

    /// The console so far.
    pub fn transcript(&self) -> Vec<String> {
        self.process.transcript()
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

    #[test]
    fn process_lines_are_awaited_in_order_and_kept() -> Result<()> {
        let mut command = Command::new("sh");
        command.args(["-c", "echo one; echo two; printf 'three\\r\\n'; echo four >&2"]);
        let process = Process::spawn("sh", command, None)?;
        assert_eq!(process.wait_for("t", Duration::from_secs(10))?, "two");
        assert_eq!(process.wait_for("t", Duration::from_secs(10))?, "three");
        assert!(matches!(process.wait_for("one", Duration::from_secs(10)), Err(Error::Ended { .. })));
        assert!(process.wait_exit(Duration::from_secs(10))?.success());
        let mut transcript = process.transcript();
        transcript.sort();
        assert_eq!(transcript, ["four", "one", "three", "two"]);
        Ok(())
    }

    #[test]
    fn waits_are_bounded() -> Result<()> {
        let mut command = Command::new("sleep");
        command.arg("30");
        let process = Process::spawn("sleep", command, None)?;
        let started = Instant::now();
        assert!(matches!(process.wait_for("never", Duration::from_millis(200)), Err(Error::Timeout { .. })));
        assert!(started.elapsed() < Duration::from_secs(5));
        Ok(())
    }
}
