//! The Machine lifecycle as a state machine, pure: [`next`] reads a Machine and says what its
//! phase calls for; the transition functions build the status that follows from what the
//! controller did (bound a profile, reserved an entry, found none…), with the Events it is worth.
//!
//! ```text
//! Registered ─► Inspecting ─► Matched ─► Allocated ─► Provisioning ─► Provisioned ─► Ready
//!   (boot discovery)  (report in,   (CMDB entry   (plan made,    (installed:    (the installed
//!                      profile bound) reserved)    boot Install)  boot LocalDisk) system phoned home)
//! any phase ── deletion ──► Deprovisioning (slot and entry given back) ──► gone
//! Inspecting/Matched ── pinned profile mismatch ──► Failed ── spec changed ──► Inspecting
//! Provisioning ── install failed ──► Failed (InstallFailed) ── reinstall annotation or spec change ──► Provisioning
//! Provisioned/Ready ── reinstall annotation ──► Provisioning
//! ```
//!
//! Install reports count only for the current attempt (`status.install.attempt`, one more at
//! each try), so a late report of an earlier try never moves the machine.
//!
//! A machine that cannot go on (no profile matches, the pool is exhausted) stays in its phase
//! with a condition saying why, and goes on when a profile or Cmdb changes.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use machinist_crds::machine::{
    BootTarget, CmdbAllocation, InstallPhase, InstallPlan, InstallStatus, MachineFailure, MachinePhase, ProfileMismatch,
};
use machinist_crds::{Machine, MachineStatus, RoleRef};
use machinist_matching::Choice;

use crate::conditions::{self, Desired};

/// The Machine finalizer: deletion waits until its profile slot and CMDB entry are given back.
pub const FINALIZER: &str = "machines.machinist.dev";

/// Annotation that asks for a new install: a failed install is tried again, an installed
/// machine is installed afresh, each time the value changes
/// (`kubectl annotate machine m1 machinist.dev/reinstall="$(date +%s)" --overwrite`).
pub const REINSTALL_ANNOTATION: &str = "machinist.dev/reinstall";

/// `failure.reason` of an install that failed.
pub const INSTALL_FAILED: &str = "InstallFailed";

/// What a machine's phase calls for next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Boot it into discovery and wait for its hardware report.
    Inspect,
    /// Its report is in: choose a profile (only `pinned`, when `spec.profile` names one) and
    /// take a slot in it.
    Bind {
        /// `spec.profile`.
        pinned: Option<String>,
    },
    /// Bound: reserve an entry of its profile's Cmdb.
    Allocate {
        /// The bound profile.
        profile: String,
    },
    /// Make its install plan and boot it into the installer (attempt one more than the last).
    Provision {
        /// The value of the reinstall annotation this answers, to be recorded.
        reinstall: Option<String>,
    },
    /// The install of the current attempt succeeded: boot the local disk from now on.
    Installed,
    /// The installed system phoned home.
    Booted,
    /// The install of the current attempt failed.
    InstallFailed {
        /// What the agent said.
        message: String,
    },
    /// Give back its slot and entry and inspect again (the pinned profile changed, or a failed
    /// machine's spec changed).
    Restart,
    /// Being deleted: give back its slot and entry, then let it go.
    Release,
    /// Nothing to do until something changes.
    Wait,
}

/// What the machine's phase calls for.
pub fn next(machine: &Machine) -> Next {
    if machine.metadata.deletion_timestamp.is_some() {
        return Next::Release;
    }
    let status = machine.status.clone().unwrap_or_default();
    let pinned_moved = |status: &MachineStatus| {
        machine.spec.profile.as_ref().is_some_and(|pinned| status.profile.as_ref() != Some(pinned))
    };
    let reinstall = machine.annotations().get(REINSTALL_ANNOTATION).cloned();
    let answered = status.install.as_ref().and_then(|i| i.retry.clone());
    let reinstall_asked = reinstall.is_some() && reinstall != answered;
    let attempt = status.install.as_ref().map(|i| i.attempt);
    // What the agent (or the installed system) said about the current attempt.
    let reported = status.install_progress.as_ref().filter(|p| Some(p.attempt) == attempt);
    let provision = Next::Provision { reinstall: reinstall.clone() };
    match status.phase {
        None | Some(MachinePhase::Registered) => Next::Inspect,
        Some(MachinePhase::Inspecting) => match &status.hardware {
            Some(_) => Next::Bind { pinned: machine.spec.profile.clone() },
            None => Next::Wait,
        },
        Some(MachinePhase::Matched) if pinned_moved(&status) => Next::Restart,
        Some(MachinePhase::Matched) => match status.profile {
            Some(profile) => Next::Allocate { profile },
            None => Next::Restart,
        },
        Some(MachinePhase::Allocated) if pinned_moved(&status) => Next::Restart,
        Some(MachinePhase::Allocated) if status.role.is_some() => provision,
        Some(MachinePhase::Provisioning) => match reported.map(|p| p.phase) {
            Some(InstallPhase::Succeeded | InstallPhase::Booted) => Next::Installed,
            Some(InstallPhase::Failed) => {
                Next::InstallFailed { message: reported.map(|p| p.message.clone()).unwrap_or_default() }
            }
            _ if reinstall_asked => provision,
            _ => Next::Wait,
        },
        Some(MachinePhase::Provisioned) if reported.is_some_and(|p| p.phase == InstallPhase::Booted) => Next::Booted,
        Some(MachinePhase::Provisioned | MachinePhase::Ready) if reinstall_asked => provision,
        Some(MachinePhase::Failed)
            if status.failure.as_ref().is_some_and(|f| f.reason == INSTALL_FAILED)
                && (reinstall_asked || status.observed_generation < machine.metadata.generation) =>
        {
            provision
        }
        Some(MachinePhase::Failed) if status.observed_generation < machine.metadata.generation => Next::Restart,
        Some(MachinePhase::Deprovisioning) => Next::Restart,
        Some(MachinePhase::Allocated | MachinePhase::Provisioned | MachinePhase::Ready | MachinePhase::Failed) => {
            Next::Wait
        }
    }
}

/// An Event worth publishing: a phase change or a new reason to wait.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// PascalCase reason (`Matched`, `Allocated`, `NoProfileMatched`…).
    pub reason: String,
    /// For people.
    pub message: String,
    /// Something is wrong (a Warning Event).
    pub warning: bool,
}

/// A new status and the Events it is worth.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// The status to write.
    pub status: MachineStatus,
    /// Events, in order.
    pub transitions: Vec<Transition>,
}

impl Change {
    fn from(machine: &Machine) -> Self {
        let mut status = machine.status.clone().unwrap_or_default();
        status.observed_generation = machine.metadata.generation;
        Self { status, transitions: Vec::new() }
    }

    fn enter(&mut self, phase: MachinePhase, message: String, now: &Time) {
        if self.status.phase != Some(phase) {
            self.status.phase = Some(phase);
            self.status.phase_transition_time = Some(now.clone());
            self.transitions.push(Transition {
                reason: format!("{phase:?}"),
                message: message.clone(),
                warning: phase == MachinePhase::Failed,
            });
        }
        let ready = Desired::no("Ready", phase_reason(phase), message);
        conditions::set(&mut self.status.conditions, ready, self.status.observed_generation, now);
    }

    fn condition(&mut self, desired: Desired<'_>, now: &Time) {
        conditions::set(&mut self.status.conditions, desired, self.status.observed_generation, now);
    }

    /// A reason to wait, with an Event when the reason is new.
    fn wait(&mut self, type_: &str, reason: &str, message: String, now: &Time) {
        let before = conditions::find(&self.status.conditions, type_).map(|c| (c.status.clone(), c.reason.clone()));
        if before != Some(("False".to_owned(), reason.to_owned())) {
            self.transitions.push(Transition { reason: reason.to_owned(), message: message.clone(), warning: true });
        }
        self.condition(Desired::no(type_, reason, message), now);
    }
}

fn phase_reason(phase: MachinePhase) -> &'static str {
    match phase {
        MachinePhase::Registered => "Registered",
        MachinePhase::Inspecting => "Inspecting",
        MachinePhase::Matched => "Matched",
        MachinePhase::Allocated => "Allocated",
        MachinePhase::Provisioning => "Provisioning",
        MachinePhase::Provisioned => "Provisioned",
        MachinePhase::Ready => "Ready",
        MachinePhase::Deprovisioning => "Deprovisioning",
        MachinePhase::Failed => "Failed",
    }
}

/// Registered → Inspecting: the boot services serve it the discovery RAM disk.
pub fn inspecting(machine: &Machine, now: &Time) -> Change {
    let mut change = Change::from(machine);
    change.status.boot_target = Some(BootTarget::Discovery);
    change.enter(MachinePhase::Inspecting, "booting into discovery to report its hardware".into(), now);
    change.condition(Desired::no("Matched", "AwaitingHardwareReport", "no hardware report yet"), now);
    change
}

/// Inspecting → Matched: bound to `profile`, with the variables its rules captured.
pub fn matched(
    machine: &Machine,
    profile: &str,
    variables: BTreeMap<String, String>,
    mismatches: Vec<ProfileMismatch>,
    profile_role: Option<RoleRef>,
    now: &Time,
) -> Change {
    let mut change = Change::from(machine);
    let status = &mut change.status;
    status.profile = Some(profile.to_owned());
    status.variables = variables;
    status.profile_mismatches = mismatches;
    status.role = machine.spec.role.clone().or(profile_role);
    status.failure = None;
    let how = if machine.spec.profile.is_some() { "pinned by spec.profile" } else { "matched its rules" };
    change.enter(MachinePhase::Matched, format!("bound to HardwareProfile {profile} ({how})"), now);
    change.condition(Desired::yes("Matched", "Matched", format!("bound to HardwareProfile {profile}")), now);
    change.condition(Desired::no("Allocated", "Allocating", "reserving a CMDB entry"), now);
    change
}

/// Why a machine could not be bound and waits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unbound {
    /// No profile's rules match (or those that do are full).
    NoProfileMatched,
    /// `spec.profile` names a profile that does not exist.
    ProfileNotFound(String),
    /// `spec.profile` names a profile whose rules do not parse.
    ProfileInvalid(String),
    /// `spec.profile` names a profile that is full.
    ProfileFull(String),
}

/// Stays Inspecting with `Matched=False` saying why.
pub fn unbound(machine: &Machine, why: &Unbound, mismatches: Vec<ProfileMismatch>, now: &Time) -> Change {
    let mut change = Change::from(machine);
    let (reason, message) = match why {
        Unbound::NoProfileMatched => {
            let mut message = String::from("no HardwareProfile matches its hardware");
            for m in mismatches.iter().take(8) {
                message.push_str(&format!("; {}: {}", m.profile, m.reason));
            }
            ("NoProfileMatched", message)
        }
        Unbound::ProfileNotFound(p) => {
            ("ProfileNotFound", format!("spec.profile names HardwareProfile {p}, which does not exist"))
        }
        Unbound::ProfileInvalid(p) => {
            ("ProfileInvalid", format!("HardwareProfile {p} has invalid rules (see its Valid condition)"))
        }
        Unbound::ProfileFull(p) => ("ProfileFull", format!("HardwareProfile {p} has reached maxMachines")),
    };
    change.status.profile_mismatches = mismatches;
    change.wait("Matched", reason, message, now);
    change
}

/// → Failed: a pinned profile's rules do not match the hardware. The machine stays failed
/// until its spec changes.
pub fn failed(machine: &Machine, reason: &str, message: String, now: &Time) -> Change {
    let mut change = Change::from(machine);
    let phase = change.status.phase;
    change.status.failure = Some(MachineFailure { reason: reason.to_owned(), message: message.clone(), phase });
    change.enter(MachinePhase::Failed, message.clone(), now);
    change.condition(Desired::no("Matched", reason, message), now);
    change
}

/// Matched → Allocated: `choice` of Cmdb `cmdb` is reserved; its variables join the machine's.
pub fn allocated(machine: &Machine, cmdb: &str, choice: &Choice, now: &Time) -> Change {
    let mut change = Change::from(machine);
    let status = &mut change.status;
    let mut variables = status.variables.clone();
    variables.extend(choice.variables.iter().map(|(k, v)| (k.clone(), v.clone())));
    status.ip = variables.get("ip").cloned();
    status.hostname = variables.get("hostname").cloned();
    status.allocation = Some(CmdbAllocation {
        cmdb: cmdb.to_owned(),
        entry: i32::try_from(choice.entry).unwrap_or(i32::MAX),
        variables: choice.variables.clone(),
    });
    status.variables = variables;
    let what = match (&status.ip, &status.hostname) {
        (Some(ip), Some(host)) => format!("{host} {ip}"),
        (Some(one), None) | (None, Some(one)) => one.clone(),
        (None, None) => String::from("no ip or hostname"),
    };
    let message = format!("entry {} of Cmdb {cmdb} reserved ({what})", choice.entry);
    change.enter(MachinePhase::Allocated, message.clone(), now);
    change.condition(Desired::yes("Allocated", "Allocated", message), now);
    change
}

/// Matched → Allocated for a profile without a Cmdb: nothing to reserve.
pub fn allocated_without_cmdb(machine: &Machine, profile: &str, now: &Time) -> Change {
    let mut change = Change::from(machine);
    let message = format!("HardwareProfile {profile} names no Cmdb: nothing to reserve");
    change.enter(MachinePhase::Allocated, message.clone(), now);
    change.condition(Desired::yes("Allocated", "NoCmdb", message), now);
    change
}

/// Why no entry could be reserved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unallocated {
    /// Every entry is taken.
    Exhausted(String),
    /// The `$$` variables select no free entry.
    NoEntryMatched(String),
    /// The profile's Cmdb does not exist.
    CmdbNotFound(String),
    /// The Cmdb's entries do not expand.
    CmdbInvalid(String),
}

/// Stays Matched with `Allocated=False` saying why.
pub fn unallocated(machine: &Machine, cmdb: &str, why: &Unallocated, now: &Time) -> Change {
    let mut change = Change::from(machine);
    let (reason, message) = match why {
        Unallocated::Exhausted(m) => {
            ("CmdbExhausted", format!("Cmdb {cmdb} is exhausted: {m}; waiting for an entry to be released"))
        }
        Unallocated::NoEntryMatched(m) => ("NoEntryMatched", format!("Cmdb {cmdb}: {m}")),
        Unallocated::CmdbNotFound(_) => ("CmdbNotFound", format!("Cmdb {cmdb} does not exist")),
        Unallocated::CmdbInvalid(m) => ("CmdbInvalid", format!("Cmdb {cmdb} does not expand: {m}")),
    };
    change.wait("Allocated", reason, message, now);
    change
}

/// → Provisioning: `plan` is to be installed, as attempt one more than the last; the boot
/// services serve the machine the installer.
pub fn provisioning(machine: &Machine, plan: InstallPlan, reinstall: Option<String>, now: &Time) -> Change {
    let mut change = Change::from(machine);
    let status = &mut change.status;
    let attempt = status.install.as_ref().map_or(0, |i| i.attempt).saturating_add(1);
    let message = format!(
        "installing Role {} {} on {} (attempt {attempt})",
        plan.role.name,
        plan.role.version.as_deref().unwrap_or_default(),
        plan.target_disk
    );
    status.role = Some(plan.role.clone());
    status.install = Some(InstallStatus { attempt, plan, retry: reinstall, started_time: Some(now.clone()) });
    status.boot_target = Some(BootTarget::Install);
    status.failure = None;
    change.enter(MachinePhase::Provisioning, message.clone(), now);
    change.condition(Desired::no("Provisioned", "Installing", message), now);
    change
}

/// Stays Allocated with `Provisioned=False` saying why no plan could be made (`RoleNotFound`,
/// `RoleInvalid`, `PlanInvalid`).
pub fn unplanned(machine: &Machine, reason: &str, message: String, now: &Time) -> Change {
    let mut change = Change::from(machine);
    change.wait("Provisioned", reason, message, now);
    change
}

/// Provisioning → Provisioned: installed; the machine boots its local disk from now on.
pub fn installed(machine: &Machine, now: &Time) -> Change {
    let mut change = Change::from(machine);
    let status = &mut change.status;
    status.boot_target = Some(BootTarget::LocalDisk);
    let message = match &status.install {
        Some(install) => {
            format!("Role {} installed on {}; booting from it", install.plan.role.name, install.plan.target_disk)
        }
        None => "installed; booting from the local disk".to_owned(),
    };
    change.enter(MachinePhase::Provisioned, message.clone(), now);
    change.condition(Desired::yes("Provisioned", "Installed", message), now);
    change
}

/// Provisioned → Ready: the installed system phoned home.
pub fn booted(machine: &Machine, now: &Time) -> Change {
    let mut change = Change::from(machine);
    change.status.provisioned_time = Some(now.clone());
    let message = "the installed system phoned home".to_owned();
    change.enter(MachinePhase::Ready, message.clone(), now);
    change.condition(Desired::yes("Ready", "Ready", message), now);
    change
}

/// Provisioning → Failed (`InstallFailed`): what the agent said. Nothing boots until a reinstall
/// is asked for.
pub fn install_failed(machine: &Machine, message: &str, now: &Time) -> Change {
    let mut change = Change::from(machine);
    let message =
        if message.is_empty() { "the install failed".to_owned() } else { format!("the install failed: {message}") };
    change.status.failure = Some(MachineFailure {
        reason: INSTALL_FAILED.to_owned(),
        message: message.clone(),
        phase: change.status.phase,
    });
    change.status.boot_target = Some(BootTarget::None);
    change.enter(MachinePhase::Failed, message.clone(), now);
    change.condition(Desired::no("Provisioned", INSTALL_FAILED, message), now);
    change
}

/// Back to Inspecting, slot and entry given back (the caller released them). The install
/// attempt count is kept, so that reports of earlier attempts never count again.
pub fn restarted(machine: &Machine, why: &str, now: &Time) -> Change {
    let mut change = Change::from(machine);
    let status = &mut change.status;
    status.profile = None;
    status.allocation = None;
    status.variables.clear();
    status.profile_mismatches.clear();
    status.ip = None;
    status.hostname = None;
    status.role = None;
    status.failure = None;
    status.boot_target = Some(BootTarget::Discovery);
    status.provisioned_time = None;
    conditions::remove(&mut status.conditions, "Allocated");
    conditions::remove(&mut status.conditions, "Provisioned");
    change.enter(MachinePhase::Inspecting, format!("inspecting again: {why}"), now);
    change.condition(Desired::no("Matched", "Rebinding", why.to_owned()), now);
    change
}

/// → Deprovisioning, while the slot and entry are given back before deletion.
pub fn deprovisioning(machine: &Machine, now: &Time) -> Change {
    let mut change = Change::from(machine);
    change.status.boot_target = Some(BootTarget::None);
    change.enter(MachinePhase::Deprovisioning, "releasing its CMDB entry and profile slot".into(), now);
    change
}

/// Whether the machine holds a slot or an entry that deletion must give back.
pub fn holds_anything(machine: &Machine) -> bool {
    machine.status.as_ref().is_some_and(|s| s.profile.is_some() || s.allocation.is_some())
}

#[cfg(test)]
mod tests {
    use machinist_crds::machine::HardwareInventory;
    use serde_json::json;

    use super::*;

    fn now() -> Time {
        Time(jiff::Timestamp::from_second(1_800_000_000).unwrap_or_default())
    }

    fn machine(status: serde_json::Value) -> Machine {
        serde_json::from_value(json!({
            "apiVersion": "machinist.dev/v1alpha1", "kind": "Machine",
            "metadata": {"name": "m1", "generation": 1},
            "spec": {"interfaces": [{"mac": "52:54:00:00:00:01"}], "provider": {"manual": {}}},
            "status": status,
        }))
        .unwrap_or_else(|e| unreachable!("{e}"))
    }

    fn with(mut machine: Machine, change: &Change) -> Machine {
        machine.status = Some(change.status.clone());
        machine
    }

    fn reported() -> HardwareInventory {
        HardwareInventory::default()
    }

    #[test]
    fn a_new_machine_is_sent_to_discovery() {
        let m = machine(json!({"phase": "Registered"}));
        assert_eq!(next(&m), Next::Inspect);
        let change = inspecting(&m, &now());
        assert_eq!(change.status.phase, Some(MachinePhase::Inspecting));
        assert_eq!(change.status.boot_target, Some(BootTarget::Discovery));
        assert_eq!(change.transitions[0].reason, "Inspecting");
        let m = with(m, &change);
        assert_eq!(next(&m), Next::Wait, "no report yet");
        assert_eq!(next(&machine(json!(null))), Next::Inspect, "no status at all");
    }

    #[test]
    fn a_report_leads_to_binding_then_allocation() {
        let mut m = machine(json!({"phase": "Inspecting"}));
        m.status.as_mut().unwrap_or_else(|| unreachable!()).hardware = Some(reported());
        assert_eq!(next(&m), Next::Bind { pinned: None });
        let variables = BTreeMap::from([("disk".to_owned(), "vda".to_owned())]);
        let role = RoleRef { name: "base".into(), version: None };
        let change = matched(&m, "vm", variables.clone(), Vec::new(), Some(role.clone()), &now());
        assert_eq!(change.status.phase, Some(MachinePhase::Matched));
        assert_eq!(change.status.role, Some(role));
        assert!(conditions::is_true(&change.status.conditions, "Matched"));
        assert_eq!(change.transitions.iter().map(|t| t.reason.as_str()).collect::<Vec<_>>(), ["Matched"]);
        let m = with(m, &change);
        assert_eq!(next(&m), Next::Allocate { profile: "vm".into() });

        let choice = Choice {
            entry: 3,
            variables: BTreeMap::from([("ip".into(), "10.0.0.4".into()), ("hostname".into(), "vm4".into())]),
            record: machinist_crds::cmdb::CmdbAllocationRecord { entry: 3, machine: "m1".into(), variables },
            reused: false,
        };
        let change = allocated(&m, "pool", &choice, &now());
        let status = &change.status;
        assert_eq!(status.phase, Some(MachinePhase::Allocated));
        assert_eq!((status.ip.as_deref(), status.hostname.as_deref()), (Some("10.0.0.4"), Some("vm4")));
        assert_eq!(status.variables.get("disk").map(String::as_str), Some("vda"), "captures kept");
        assert_eq!(status.allocation.as_ref().map(|a| (a.cmdb.as_str(), a.entry)), Some(("pool", 3)));
        assert!(conditions::is_true(&status.conditions, "Allocated"));
        assert!(!conditions::is_true(&status.conditions, "Ready"));
        assert_eq!(next(&with(m, &change)), Next::Provision { reinstall: None }, "it has a role: installed next");
    }

    #[test]
    fn spec_role_overrides_the_profile_role() {
        let mut m = machine(json!({"phase": "Inspecting", "hardware": {"items": []}}));
        m.spec.role = Some(RoleRef { name: "api".into(), version: Some("2".into()) });
        let change = matched(
            &m,
            "vm",
            BTreeMap::new(),
            Vec::new(),
            Some(RoleRef { name: "base".into(), version: None }),
            &now(),
        );
        assert_eq!(change.status.role.map(|r| r.name), Some("api".into()));
    }

    #[test]
    fn a_pinned_profile_is_the_only_candidate_and_a_change_rebinds() {
        let mut m = machine(json!({"phase": "Inspecting", "hardware": {"items": []}}));
        m.spec.profile = Some("hp".into());
        assert_eq!(next(&m), Next::Bind { pinned: Some("hp".into()) });
        let m = with(m.clone(), &matched(&m, "hp", BTreeMap::new(), Vec::new(), None, &now()));
        assert_eq!(next(&m), Next::Allocate { profile: "hp".into() });
        let mut moved = m.clone();
        moved.spec.profile = Some("vm".into());
        assert_eq!(next(&moved), Next::Restart);
        let change = restarted(&moved, "spec.profile changed", &now());
        assert_eq!(change.status.phase, Some(MachinePhase::Inspecting));
        assert_eq!((change.status.profile.clone(), change.status.allocation.clone()), (None, None));
        assert!(change.status.hardware.is_some(), "the report is kept: no reboot needed");
        assert_eq!(next(&with(moved, &change)), Next::Bind { pinned: Some("vm".into()) });
    }

    #[test]
    fn waiting_reasons_make_one_event_each() {
        let m = machine(json!({"phase": "Inspecting", "hardware": {"items": []}}));
        let mismatch = ProfileMismatch { profile: "hp".into(), rule: Some(0), reason: "rule 0 found no item".into() };
        let first = unbound(&m, &Unbound::NoProfileMatched, vec![mismatch.clone()], &now());
        assert_eq!(first.transitions.len(), 1);
        assert!(first.transitions[0].warning);
        let message = &conditions::find(&first.status.conditions, "Matched").unwrap_or_else(|| unreachable!()).message;
        assert!(message.contains("hp: rule 0 found no item"), "{message}");
        assert_eq!(first.status.profile_mismatches, std::slice::from_ref(&mismatch));
        let m = with(m, &first);
        let again = unbound(&m, &Unbound::NoProfileMatched, vec![mismatch], &now());
        assert!(again.transitions.is_empty(), "same reason: no new Event");
        assert_eq!(again.status, first.status, "nothing to write either");
        let full = unbound(&m, &Unbound::ProfileFull("hp".into()), Vec::new(), &now());
        assert_eq!(full.transitions[0].reason, "ProfileFull");
    }

    #[test]
    fn an_exhausted_pool_keeps_the_machine_matched() {
        let m = machine(json!({"phase": "Matched", "profile": "vm"}));
        let change = unallocated(&m, "pool", &Unallocated::Exhausted("no free entry left".into()), &now());
        assert_eq!(change.status.phase, Some(MachinePhase::Matched));
        let c = conditions::find(&change.status.conditions, "Allocated").cloned().unwrap_or_else(|| unreachable!());
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "CmdbExhausted"));
        assert!(c.message.contains("exhausted"), "{}", c.message);
        assert_eq!(next(&with(m, &change)), Next::Allocate { profile: "vm".into() }, "tries again when woken");
    }

    #[test]
    fn a_failed_machine_waits_for_a_spec_change() {
        let m = machine(json!({"phase": "Inspecting", "hardware": {"items": []}}));
        let change = failed(&m, "ProfileMismatch", "rule 2 of hp found no item".into(), &now());
        assert_eq!(change.status.phase, Some(MachinePhase::Failed));
        assert_eq!(change.status.failure.as_ref().map(|f| f.phase), Some(Some(MachinePhase::Inspecting)));
        assert!(change.transitions[0].warning);
        let mut m = with(m, &change);
        assert_eq!(next(&m), Next::Wait);
        m.metadata.generation = Some(2);
        assert_eq!(next(&m), Next::Restart);
    }

    #[test]
    fn deletion_releases_from_any_phase() {
        for phase in ["Registered", "Inspecting", "Matched", "Allocated", "Failed"] {
            let mut m = machine(json!({"phase": phase}));
            m.metadata.deletion_timestamp = Some(now());
            assert_eq!(next(&m), Next::Release, "{phase}");
        }
        let m = machine(json!({"phase": "Allocated", "profile": "vm"}));
        assert!(holds_anything(&m));
        let change = deprovisioning(&m, &now());
        assert_eq!(change.status.phase, Some(MachinePhase::Deprovisioning));
        assert_eq!(change.status.boot_target, Some(BootTarget::None));
        assert!(!holds_anything(&machine(json!({"phase": "Inspecting"}))));
    }

    #[test]
    fn a_profile_without_cmdb_is_allocated_with_nothing_to_reserve() {
        let m = machine(json!({"phase": "Matched", "profile": "vm"}));
        let change = allocated_without_cmdb(&m, "vm", &now());
        assert_eq!(change.status.phase, Some(MachinePhase::Allocated));
        assert_eq!(conditions::find(&change.status.conditions, "Allocated").map(|c| c.reason.as_str()), Some("NoCmdb"));
    }

    fn plan() -> InstallPlan {
        serde_json::from_value(json!({
            "role": {"name": "base", "version": "1"},
            "image": {"url": "http://x/base.raw", "sha256": "a".repeat(64), "format": "raw"},
            "targetDisk": "/dev/vda",
        }))
        .unwrap_or_else(|e| unreachable!("{e}"))
    }

    fn progressed(m: &Machine, attempt: i32, phase: &str) -> Machine {
        let mut m = m.clone();
        let progress = serde_json::from_value(json!({"attempt": attempt, "phase": phase, "message": "disk on fire"}))
            .unwrap_or_else(|e| unreachable!("{e}"));
        m.status.get_or_insert_with(Default::default).install_progress = Some(progress);
        m
    }

    #[test]
    fn an_allocated_machine_with_a_role_is_installed_then_ready() {
        let m = machine(json!({"phase": "Allocated", "profile": "vm"}));
        assert_eq!(next(&m), Next::Wait, "no role: nothing to install");
        let m = machine(json!({"phase": "Allocated", "profile": "vm", "role": {"name": "base"}}));
        assert_eq!(next(&m), Next::Provision { reinstall: None });
        let change = provisioning(&m, plan(), None, &now());
        let status = &change.status;
        assert_eq!(status.phase, Some(MachinePhase::Provisioning));
        assert_eq!(status.boot_target, Some(BootTarget::Install));
        assert_eq!(status.install.as_ref().map(|i| i.attempt), Some(1));
        assert_eq!(change.transitions[0].reason, "Provisioning");
        let m = with(m, &change);
        assert_eq!(next(&m), Next::Wait, "installing");
        assert_eq!(next(&progressed(&m, 1, "Writing")), Next::Wait);
        assert_eq!(next(&progressed(&m, 0, "Succeeded")), Next::Wait, "another attempt's report does not count");
        let m = progressed(&m, 1, "Succeeded");
        assert_eq!(next(&m), Next::Installed);
        let change = installed(&m, &now());
        assert_eq!(change.status.phase, Some(MachinePhase::Provisioned));
        assert_eq!(change.status.boot_target, Some(BootTarget::LocalDisk));
        assert!(conditions::is_true(&change.status.conditions, "Provisioned"));
        assert!(!conditions::is_true(&change.status.conditions, "Ready"));
        let m = with(m, &change);
        assert_eq!(next(&m), Next::Wait, "waiting for the phone-home");
        let m = progressed(&m, 1, "Booted");
        assert_eq!(next(&m), Next::Booted);
        let change = booted(&m, &now());
        assert_eq!(change.status.phase, Some(MachinePhase::Ready));
        assert!(conditions::is_true(&change.status.conditions, "Ready"));
        assert_eq!(change.status.provisioned_time, Some(now()));
        assert_eq!(next(&with(m, &change)), Next::Wait);
    }

    #[test]
    fn a_failed_install_waits_for_a_reinstall_and_counts_attempts() {
        let m = machine(json!({"phase": "Allocated", "profile": "vm", "role": {"name": "base"}}));
        let m = with(m.clone(), &provisioning(&m, plan(), None, &now()));
        let m = progressed(&m, 1, "Failed");
        assert_eq!(next(&m), Next::InstallFailed { message: "disk on fire".into() });
        let change = install_failed(&m, "disk on fire", &now());
        assert_eq!(change.status.phase, Some(MachinePhase::Failed));
        assert_eq!(change.status.boot_target, Some(BootTarget::None));
        let failure = change.status.failure.clone().unwrap_or_else(|| unreachable!());
        assert_eq!((failure.reason.as_str(), failure.phase), (INSTALL_FAILED, Some(MachinePhase::Provisioning)));
        assert!(failure.message.contains("disk on fire"));
        assert!(change.transitions[0].warning);
        let mut m = with(m, &change);
        assert_eq!(next(&m), Next::Wait, "no retry without being asked");
        m.annotations_mut().insert(REINSTALL_ANNOTATION.into(), "1".into());
        assert_eq!(next(&m), Next::Provision { reinstall: Some("1".into()) });
        let change = provisioning(&m, plan(), Some("1".into()), &now());
        assert_eq!(change.status.install.as_ref().map(|i| i.attempt), Some(2));
        assert_eq!(change.status.failure, None);
        let m = with(m, &change);
        assert_eq!(next(&m), Next::Wait, "the old attempt's failure does not count, the annotation was answered");
        // A spec change also retries a failed install.
        let mut failed = with(m.clone(), &install_failed(&progressed(&m, 2, "Failed"), "again", &now()));
        assert_eq!(next(&failed), Next::Wait);
        failed.metadata.generation = Some(2);
        assert!(matches!(next(&failed), Next::Provision { .. }));
    }

    #[test]
    fn an_installed_machine_is_reinstalled_on_request() {
        let m = machine(json!({"phase": "Ready", "profile": "vm", "role": {"name": "base"},
            "install": {"attempt": 1, "plan": plan()}}));
        assert_eq!(next(&m), Next::Wait);
        let mut asked = m.clone();
        asked.annotations_mut().insert(REINSTALL_ANNOTATION.into(), "x".into());
        assert_eq!(next(&asked), Next::Provision { reinstall: Some("x".into()) });
    }

    #[test]
    fn a_plan_that_cannot_be_made_keeps_the_machine_allocated() {
        let m = machine(json!({"phase": "Allocated", "profile": "vm", "role": {"name": "base"}}));
        let change = unplanned(&m, "RoleNotFound", "Role base does not exist".into(), &now());
        assert_eq!(change.status.phase, Some(MachinePhase::Allocated));
        assert_eq!(
            conditions::find(&change.status.conditions, "Provisioned").map(|c| c.reason.as_str()),
            Some("RoleNotFound")
        );
        assert_eq!(change.transitions.len(), 1);
        let again = unplanned(&with(m, &change), "RoleNotFound", "Role base does not exist".into(), &now());
        assert!(again.transitions.is_empty());
    }
}
