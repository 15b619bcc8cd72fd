//! What the boot services need to know about Machines, and where what they learn goes.
//!
//! [`MachineSource`] answers "which machine has this MAC, and what should it boot?" and checks
//! the per-machine token that authenticates reports; [`ReportSink`] receives validated
//! hardware reports. The kube-rs reflector (indexed by MAC) and the status writer implement
//! them; [`InMemoryMachines`] implements both for tests and for running without an API.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use machinist_crds::common::Quad;
use machinist_crds::machine::{BootMenu, BootTarget};

/// MAC addresses, shared with DHCP so both index Machines the same way.
pub use machinist_boot_dhcp::MacAddr;
pub use machinist_boot_dhcp::mac::BadMac;

/// What the boot services know of one Machine: enough to choose and build its iPXE script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootRecord {
    /// The Machine's name (it names the report URL).
    pub name: String,
    /// `status.bootTarget`; absent means the operator has not decided yet, which is served
    /// as discovery (a newly registered machine boots the discovery RAM disk).
    pub boot_target: Option<BootTarget>,
    /// `spec.bootMenu`, used when the target is [`BootTarget::Menu`].
    pub boot_menu: Option<BootMenu>,
    /// The per-machine token the agent presents with its reports; it goes on the kernel
    /// command line.
    pub token: String,
}

/// Looks Machines up for the boot services.
pub trait MachineSource: Send + Sync + 'static {
    /// The machine with an interface of this MAC address, if any.
    fn lookup(&self, mac: MacAddr) -> Option<BootRecord>;

    /// Whether `presented` is the report token of the machine named `machine`. Unknown
    /// machines never verify. Implementations compare with [`constant_time_eq`].
    fn verify_token(&self, machine: &str, presented: &str) -> bool;
}

/// A hardware report that passed validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HardwareReport {
    /// Items in `hardware-detect`'s `[class, type, name, value]` form.
    pub items: Vec<Quad>,
    /// When the sidecar received it.
    pub received: jiff::Timestamp,
}

/// A report the sink could not take.
#[derive(Debug, thiserror::Error)]
#[error("failed to record the hardware report of machine {machine}: {reason}")]
pub struct SinkError {
    /// The machine.
    pub machine: String,
    /// Why.
    pub reason: String,
}

/// Receives validated hardware reports (the status writer puts them in `status.hardware`).
pub trait ReportSink: Send + Sync + 'static {
    /// Records `report` for the machine named `machine` (whose token was verified).
    fn hardware_report(&self, machine: &str, report: HardwareReport) -> BoxFuture<'_, Result<(), SinkError>>;
}

/// Compares two secrets in time that depends only on their lengths, not on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Machines and reports in memory: for tests and for running without an API server.
#[derive(Clone, Debug, Default)]
pub struct InMemoryMachines {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    by_mac: BTreeMap<MacAddr, BootRecord>,
    reports: Vec<(String, HardwareReport)>,
}

impl InMemoryMachines {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind: keep using it.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds or replaces the machine answering to `mac`.
    pub fn insert(&self, mac: MacAddr, record: BootRecord) {
        self.lock().by_mac.insert(mac, record);
    }

    /// The reports received so far, oldest first, with the machine they are for.
    pub fn reports(&self) -> Vec<(String, HardwareReport)> {
        self.lock().reports.clone()
    }
}

impl MachineSource for InMemoryMachines {
    fn lookup(&self, mac: MacAddr) -> Option<BootRecord> {
        self.lock().by_mac.get(&mac).cloned()
    }

    fn verify_token(&self, machine: &str, presented: &str) -> bool {
        let inner = self.lock();
        let mut verified = false;
        for record in inner.by_mac.values().filter(|r| r.name == machine) {
            verified |= constant_time_eq(record.token.as_bytes(), presented.as_bytes());
        }
        verified
    }
}

impl ReportSink for InMemoryMachines {
    fn hardware_report(&self, machine: &str, report: HardwareReport) -> BoxFuture<'_, Result<(), SinkError>> {
        self.lock().reports.push((machine.to_owned(), report));
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
        let machines = InMemoryMachines::new();
        let record = BootRecord { name: "m1".into(), boot_target: None, boot_menu: None, token: "t1".into() };
        machines.insert(MacAddr([2, 0, 0, 0, 0, 1]), record);
        assert!(machines.verify_token("m1", "t1"));
        assert!(!machines.verify_token("m1", "t2"));
        assert!(!machines.verify_token("m2", "t1"));
    }
}
