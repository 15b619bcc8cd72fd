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
use machinist_crds::machine::{BootMenu, BootTarget, InstallProgress, InstallStatus, MachinePhase, OnSuccess};
use machinist_crds::role::CloudInit;

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
    /// `spec.onSuccess`: what the agent does once its work is done.
    pub on_success: OnSuccess,
    /// `spec.debug`: the agent opens a shell on the console.
    pub debug: bool,
    /// The current install attempt reported success: the machine boots its disk even before
    /// the operator turns `bootTarget` to `LocalDisk` (an agent rebooting at once must not
    /// install again).
    pub installed: bool,
}

/// What the boot services know of a machine's install (its `status.install` and
/// `status.installProgress`).
#[derive(Clone, Debug, PartialEq)]
pub struct InstallView {
    /// `status.phase`.
    pub phase: Option<MachinePhase>,
    /// `status.install`, when the operator made a plan.
    pub install: Option<InstallStatus>,
    /// `status.installProgress`.
    pub progress: Option<InstallProgress>,
    /// `status.variables`, for the Role's templates.
    pub variables: BTreeMap<String, String>,
    /// The cloud-init templates of the Role the plan installs, if it has any.
    pub templates: Option<CloudInit>,
    /// The Machine's namespace.
    pub namespace: String,
}

/// Looks Machines up for the boot services.
pub trait MachineSource: Send + Sync + 'static {
    /// The machine with an interface of this MAC address, if any.
    fn lookup(&self, mac: MacAddr) -> Option<BootRecord>;

    /// Whether `presented` is the report token of the machine named `machine`. Unknown
    /// machines never verify. Implementations compare with [`constant_time_eq`].
    fn verify_token(&self, machine: &str, presented: &str) -> bool;

    /// Registers an unknown MAC (auto-registration): creates its Machine and token and returns
    /// its record. The default refuses: registration is off.
    fn register(&self, mac: MacAddr) -> BoxFuture<'_, Result<BootRecord, RegisterError>> {
        Box::pin(std::future::ready(Err(RegisterError::Disabled(mac))))
    }

    /// The machine's install as last seen; `None` for an unknown machine.
    fn install(&self, _machine: &str) -> Option<InstallView> {
        None
    }

    /// The attempt number of the machine's current install plan (`status.install.attempt`);
    /// `None` for an unknown machine or one without a plan. Every iPXE script request asks it:
    /// implementations answer without building the whole [`InstallView`] (its variables and
    /// templates), which the default does.
    fn install_attempt(&self, machine: &str) -> Option<i32> {
        self.install(machine)?.install.map(|install| install.attempt)
    }

    /// Whether `presented` is the phone-home token of `machine` (the installed system's
    /// credential, not the agent's). Unknown machines never verify.
    fn verify_phone_home(&self, _machine: &str, _presented: &str) -> bool {
        false
    }

    /// The machine's phone-home token, created when it has none. The default has none.
    fn phone_home_token<'a>(&'a self, _machine: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(std::future::ready(None))
    }

    /// The machine's token when [`lookup`](Self::lookup) had none yet (its Secret is being
    /// created, or not yet seen): read or created through the API. The default has none.
    fn token<'a>(&'a self, _machine: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(std::future::ready(None))
    }
}

/// An unknown MAC that could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// Auto-registration is off.
    #[error("auto-registration is off: {0} is not registered")]
    Disabled(MacAddr),
    /// The API refused or failed.
    #[error("failed to register {mac}: {reason}")]
    Failed {
        /// The MAC.
        mac: MacAddr,
        /// Why.
        reason: String,
    },
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

/// Receives what agents send: validated hardware reports (into `status.hardware`) and logs
/// (into a bounded ConfigMap per machine).
pub trait ReportSink: Send + Sync + 'static {
    /// Records `report` for the machine named `machine` (whose token was verified).
    fn hardware_report(&self, machine: &str, report: HardwareReport) -> BoxFuture<'_, Result<(), SinkError>>;

    /// Appends `text` to the machine's log, keeping at most [`LOG_KEEP`] bytes (the newest).
    fn append_log(&self, machine: &str, text: String) -> BoxFuture<'_, Result<(), SinkError>>;

    /// Records install progress (or the phone-home, phase `Booted`) in
    /// `status.installProgress`.
    fn install_progress(&self, machine: &str, progress: InstallProgress) -> BoxFuture<'_, Result<(), SinkError>>;
}

/// Bytes of agent log kept per machine (the newest), well under a ConfigMap's 1 MiB.
pub const LOG_KEEP: usize = 256 * 1024;

/// `old` followed by `new`, cut from the front to at most `keep` bytes on a line (or character)
/// boundary, so the newest lines stay whole.
pub fn append_bounded(old: &str, new: &str, keep: usize) -> String {
    let mut log = String::with_capacity(old.len() + new.len());
    log.push_str(old);
    log.push_str(new);
    if log.len() <= keep {
        return log;
    }
    let mut start = log.len() - keep;
    while !log.is_char_boundary(start) {
        start += 1;
    }
    // Prefer starting on a whole line when one begins in the kept part.
    if let Some(newline) = log.get(start..).and_then(|rest| rest.find('\n'))
        && newline + 1 < log.len() - start
    {
        start += newline + 1;
    }
    log.split_off(start)
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
    logs: BTreeMap<String, String>,
    installs: BTreeMap<String, InstallView>,
    phone_home: BTreeMap<String, String>,
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

    /// The log kept for `machine`.
    pub fn log(&self, machine: &str) -> Option<String> {
        self.lock().logs.get(machine).cloned()
    }

    /// Sets what is known of `machine`'s install and its phone-home token.
    pub fn set_install(&self, machine: &str, view: InstallView, phone_home_token: &str) {
        let mut inner = self.lock();
        inner.installs.insert(machine.to_owned(), view);
        inner.phone_home.insert(machine.to_owned(), phone_home_token.to_owned());
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

    fn install(&self, machine: &str) -> Option<InstallView> {
        self.lock().installs.get(machine).cloned()
    }

    fn install_attempt(&self, machine: &str) -> Option<i32> {
        self.lock().installs.get(machine)?.install.as_ref().map(|install| install.attempt)
    }

    fn verify_phone_home(&self, machine: &str, presented: &str) -> bool {
        self.lock().phone_home.get(machine).is_some_and(|t| constant_time_eq(t.as_bytes(), presented.as_bytes()))
    }

    fn phone_home_token<'a>(&'a self, machine: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(std::future::ready(self.lock().phone_home.get(machine).cloned()))
    }
}

impl ReportSink for InMemoryMachines {
    fn hardware_report(&self, machine: &str, report: HardwareReport) -> BoxFuture<'_, Result<(), SinkError>> {
        self.lock().reports.push((machine.to_owned(), report));
        Box::pin(std::future::ready(Ok(())))
    }

    fn append_log(&self, machine: &str, text: String) -> BoxFuture<'_, Result<(), SinkError>> {
        let mut inner = self.lock();
        let log = inner.logs.entry(machine.to_owned()).or_default();
        *log = append_bounded(log, &text, LOG_KEEP);
        Box::pin(std::future::ready(Ok(())))
    }

    fn install_progress(&self, machine: &str, progress: InstallProgress) -> BoxFuture<'_, Result<(), SinkError>> {
        if let Some(view) = self.lock().installs.get_mut(machine) {
            view.progress = Some(progress);
        }
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
        let record = BootRecord {
            name: "m1".into(),
            boot_target: None,
            boot_menu: None,
            token: "t1".into(),
            on_success: OnSuccess::default(),
            debug: false,
            installed: false,
        };
        machines.insert(MacAddr([2, 0, 0, 0, 0, 1]), record);
        assert!(machines.verify_token("m1", "t1"));
        assert!(!machines.verify_token("m1", "t2"));
        assert!(!machines.verify_token("m2", "t1"));
    }

    #[test]
    fn the_install_attempt_is_read_alone() {
        /// Only `install`: what the trait's default `install_attempt` derives from it.
        struct ViewsOnly(InMemoryMachines);
        impl MachineSource for ViewsOnly {
            fn lookup(&self, mac: MacAddr) -> Option<BootRecord> {
                self.0.lookup(mac)
            }
            fn verify_token(&self, machine: &str, presented: &str) -> bool {
                self.0.verify_token(machine, presented)
            }
            fn install(&self, machine: &str) -> Option<InstallView> {
                self.0.install(machine)
            }
        }
        let view = |install: Option<InstallStatus>| InstallView {
            phase: Some(MachinePhase::Provisioning),
            install,
            progress: None,
            variables: [("hostname".to_owned(), "host03".to_owned())].into(),
            templates: None,
            namespace: "default".into(),
        };
        let plan = serde_json::from_value(serde_json::json!({
            "role": {"name": "base"},
            "image": {"url": "http://x/i.raw", "sha256": "a".repeat(64), "format": "raw"},
            "targetDisk": "/dev/vda",
        }))
        .unwrap();
        let machines = InMemoryMachines::new();
        machines.set_install("no-plan", view(None), "p1");
        machines.set_install(
            "planned",
            view(Some(InstallStatus { attempt: 3, plan, retry: None, started_time: None })),
            "p2",
        );
        let derived = ViewsOnly(machines.clone());
        for (machine, attempt) in [("planned", Some(3)), ("no-plan", None), ("unknown", None)] {
            assert_eq!(machines.install_attempt(machine), attempt, "{machine}");
            assert_eq!(derived.install_attempt(machine), attempt, "{machine}: the default");
        }
    }

    #[test]
    fn logs_keep_the_newest_whole_lines() {
        assert_eq!(append_bounded("a\n", "b\n", 10), "a\nb\n");
        assert_eq!(append_bounded("line one\n", "line two\n", 12), "line two\n");
        // No newline in the kept part: cut on a character boundary.
        assert_eq!(append_bounded("", "ééééé", 5), "éé");
        let long = append_bounded(&"x\n".repeat(1000), "end\n", 100);
        assert!(long.len() <= 100 && long.ends_with("x\nend\n") && long.starts_with('x'));
    }
}
