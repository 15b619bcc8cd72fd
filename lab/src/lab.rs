//! The lab: a network namespace with a bridge and taps.

use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use crate::{Error, Process, Result};

/// The bridge every lab has.
pub const BRIDGE: &str = "br0";
/// The IPv6 address of [`BRIDGE`]: a ULA, so that a DHCP server there can send router
/// advertisements (iPXE otherwise waits ~13 s for IPv6 autoconfiguration).
pub const BRIDGE_IPV6: &str = "fd00:e2e::1";
/// Prefix of lab namespace names: `machinist-lab-<pid>-<n>`.
pub const NAMESPACE_PREFIX: &str = "machinist-lab-";

/// Runs `ip args…`; its stdout, or an error with its stderr.
fn ip(args: &[&str]) -> Result<String> {
    Ok(machinist_ramdisk::run::run(Command::new("ip").args(args))?)
}

/// A network namespace with a bridge [`BRIDGE`] and taps for VMs. Clones share it; it is
/// deleted when the last handle (the `Lab`, its clones, and the [`Vm`](crate::Vm)s and
/// [`Process`]es started in it) is dropped, after those processes were killed.
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
        if let Err(error) = ip(&["netns", "del", &self.name]) {
            tracing::warn!(namespace = %self.name, %error, "failed to delete the lab's network namespace");
        }
    }
}

impl Lab {
    /// A new namespace (a name unique to this process and call) with `lo` up and the bridge
    /// [`BRIDGE`] up with `address`/24 and [`BRIDGE_IPV6`]/64. The first call in a process also
    /// deletes lab namespaces left by processes that were killed before they could clean up.
    pub fn new(address: Ipv4Addr) -> Result<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        static SWEPT: OnceLock<()> = OnceLock::new();
        SWEPT.get_or_init(remove_stale_namespaces);
        let name = format!("{NAMESPACE_PREFIX}{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        ip(&["netns", "add", &name])?;
        // From here on, an error drops `lab`, which deletes the namespace.
        let lab = Self { inner: Arc::new(LabInner { name, address, taps: AtomicU32::new(0) }) };
        let ns = lab.name();
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        ip(&["-n", ns, "link", "add", BRIDGE, "type", "bridge"])?;
        ip(&["-n", ns, "addr", "add", &format!("{address}/24"), "dev", BRIDGE])?;
        ip(&["-n", ns, "-6", "addr", "add", &format!("{BRIDGE_IPV6}/64"), "dev", BRIDGE, "nodad"])?;
        ip(&["-n", ns, "link", "set", BRIDGE, "up"])?;
        tracing::info!(namespace = ns, bridge = BRIDGE, %address, "lab network namespace created");
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

    /// The address `host` in the bridge's /24 (`a.b.c.<host>`).
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
        Ok(machinist_ramdisk::run::run(self.command(program).args(args))?)
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
    /// so Tokio runtimes) started from that thread are inside too. Errors when entering fails.
    pub fn spawn_thread<T, F>(&self, f: F) -> Result<LabThread<T>>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let handle = crate::spawn_in(&self.netns_path(), f)?;
        Ok(LabThread { handle, namespace: self.name().to_owned() })
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
    handle: JoinHandle<Option<T>>,
    namespace: String,
}

impl<T> LabThread<T> {
    /// Waits for the thread; its result, or an error if it panicked.
    pub fn join(self) -> Result<T> {
        match self.handle.join() {
            Ok(Some(value)) => Ok(value),
            Ok(None) => Err(Error::NotEntered { namespace: self.namespace }),
            Err(payload) => {
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Err(Error::Panicked { namespace: self.namespace, message })
            }
        }
    }

    /// Whether the thread has finished.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

/// Deletes `machinist-lab-<pid>-<n>` namespaces whose process is gone.
fn remove_stale_namespaces() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(NAMESPACE_PREFIX).and_then(|rest| rest.split('-').next()) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            match ip(&["netns", "del", &name]) {
                Ok(_) => tracing::info!(namespace = %name, "deleted a lab namespace left by an earlier process"),
                Err(error) => tracing::warn!(namespace = %name, %error, "failed to delete a stale lab namespace"),
            }
        }
    }
}
