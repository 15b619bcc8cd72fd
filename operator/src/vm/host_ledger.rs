//! A Hypervisor's status as its ledger writes it, pure: what the last probe saw (capacity,
//! pools, accelerator, reachability) and the placements, changed by requests applied in order
//! to the freshest copy of the object (see [`crate::ledger`]). A reservation is checked with
//! [`placement::fits`] against every placement already recorded, those of the same batch
//! included, so that concurrent placements never overcommit the host.

use machinist_crds::hypervisor::{
    Accelerator, EffectiveAccelerator, ForeignDomains, HostCapacity, HypervisorSpec, HypervisorStatus, Placement,
    PlacementState, PoolStatus,
};
use machinist_crds::machine::Time;

use crate::conditions::{self, Desired};
use crate::vm::placement::{self, Refusal, Request};

/// The condition type of a Hypervisor's reachability.
pub const REACHABLE: &str = "Reachable";

/// What a probe of a host found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// libvirt's version, `9.0.0`.
    pub libvirt_version: String,
    /// Memory, in MiB.
    pub memory_mib: i64,
    /// Logical CPUs.
    pub cpus: i64,
    /// Whether x86_64 guests can run under KVM.
    pub kvm: bool,
    /// Storage pools.
    pub pools: Vec<PoolStatus>,
    /// Running domains without the operator's metadata.
    pub foreign: ForeignDomains,
}

/// A change to a Hypervisor's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostRequest {
    /// Count a VM against the host, if it fits.
    Reserve {
        /// The Machine, `namespace/name`.
        machine: String,
        /// Its uid.
        uid: String,
        /// What it asks.
        request: Request,
    },
    /// The VM's volume exists.
    Materialize {
        /// Machine uid.
        uid: String,
    },
    /// The VM is gone.
    Release {
        /// Machine uid.
        uid: String,
    },
    /// A probe succeeded.
    Probed(Probe),
    /// A probe failed: why.
    Unreachable(String),
}

/// What became of a [`HostRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostOutcome {
    /// Counted (now, or already).
    Reserved,
    /// It does not fit.
    Refused(Refusal),
    /// Done (materialized, released, observed), or nothing to do.
    Done,
}

/// Applies `requests` to `status`; returns the new status and one outcome per request.
pub fn apply(
    spec: &HypervisorSpec,
    generation: Option<i64>,
    status: &HypervisorStatus,
    requests: &[HostRequest],
    now: &Time,
) -> (HypervisorStatus, Vec<HostOutcome>) {
    let mut next = status.clone();
    let mut outcomes = Vec::with_capacity(requests.len());
    for request in requests {
        let outcome = match request {
            HostRequest::Reserve { machine, uid, request } => reserve(spec, &mut next, machine, uid, request),
            HostRequest::Materialize { uid } => {
                if let Some(p) = next.placements.iter_mut().find(|p| &p.uid == uid) {
                    p.state = PlacementState::Created;
                }
                HostOutcome::Done
            }
            HostRequest::Release { uid } => {
                next.placements.retain(|p| &p.uid != uid);
                HostOutcome::Done
            }
            HostRequest::Probed(probe) => {
                observe(spec, &mut next, probe, generation, now);
                HostOutcome::Done
            }
            HostRequest::Unreachable(why) => {
                let desired = Desired::no(REACHABLE, "ConnectFailed", why.clone());
                conditions::set(&mut next.conditions, desired, generation, now);
                next.last_probe_time = Some(now.clone());
                HostOutcome::Done
            }
        };
        outcomes.push(outcome);
    }
    next.placements.sort_by(|a, b| a.machine.cmp(&b.machine).then_with(|| a.uid.cmp(&b.uid)));
    next.placement_count = Some(i32::try_from(next.placements.len()).unwrap_or(i32::MAX));
    next.allocatable = next.capacity.map(|c| placement::allocatable(spec, c.memory_mib, c.cpus));
    next.committed = Some(placement::committed(&next, &next.placements));
    next.observed_generation = generation;
    (next, outcomes)
}

fn reserve(
    spec: &HypervisorSpec,
    status: &mut HypervisorStatus,
    machine: &str,
    uid: &str,
    request: &Request,
) -> HostOutcome {
    if status.placements.iter().any(|p| p.uid == uid) {
        return HostOutcome::Reserved;
    }
    if status.placements.len() >= machinist_crds::hypervisor::MAX_PLACEMENTS {
        return HostOutcome::Refused(Refusal::FilledUp);
    }
    if spec.unschedulable {
        return HostOutcome::Refused(Refusal::Unschedulable);
    }
    match placement::fits(spec, status, &status.placements, request) {
        Ok(_) => {
            status.placements.push(Placement {
                machine: machine.to_owned(),
                uid: uid.to_owned(),
                memory_mib: request.memory_mib,
                vcpus: request.vcpus,
                disk_gib: request.disk_gib,
                pool: request.pool.clone(),
                state: PlacementState::Reserved,
            });
            HostOutcome::Reserved
        }
        Err(refusal) => HostOutcome::Refused(refusal),
    }
}

fn observe(spec: &HypervisorSpec, status: &mut HypervisorStatus, probe: &Probe, generation: Option<i64>, now: &Time) {
    status.libvirt_version = Some(probe.libvirt_version.clone());
    status.capacity = Some(HostCapacity { memory_mib: probe.memory_mib, cpus: probe.cpus });
    status.pools.clone_from(&probe.pools);
    status.foreign = Some(probe.foreign);
    status.last_probe_time = Some(now.clone());
    let accelerator = match (spec.accelerator, probe.kvm) {
        (Accelerator::Tcg, _) | (Accelerator::Auto, false) => Some(EffectiveAccelerator::Tcg),
        (Accelerator::Kvm | Accelerator::Auto, true) => Some(EffectiveAccelerator::Kvm),
        (Accelerator::Kvm, false) => None,
    };
    status.accelerator = accelerator;
    let desired = match accelerator {
        Some(_) => Desired::yes(REACHABLE, "Connected", format!("libvirt {}", probe.libvirt_version)),
        None => Desired::no(REACHABLE, "NoKVM", "spec.accelerator is KVM and the host does not offer KVM"),
    };
    conditions::set(&mut status.conditions, desired, generation, now);
}

/// Whether the status says the host is reachable (and usable).
pub fn is_reachable(status: &HypervisorStatus) -> bool {
    status.conditions.iter().any(|c| c.type_ == REACHABLE && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> HypervisorSpec {
        HypervisorSpec::new("test:///default")
    }

    fn probe() -> Probe {
        Probe {
            libvirt_version: "9.0.0".into(),
            memory_mib: 9216,
            cpus: 4,
            kvm: false,
            pools: vec![PoolStatus {
                name: "ssd".into(),
                type_: "dir".into(),
                active: true,
                capacity_gib: 100,
                available_gib: 100,
            }],
            foreign: ForeignDomains::default(),
        }
    }

    fn now() -> Time {
        Time(jiff::Timestamp::UNIX_EPOCH)
    }

    fn reserve(uid: &str, memory_mib: i64) -> HostRequest {
        HostRequest::Reserve {
            machine: format!("default/{uid}"),
            uid: uid.into(),
            request: Request { memory_mib, vcpus: 1, disk_gib: 10, pool: "ssd".into(), qcow2: true },
        }
    }

    #[test]
    fn a_probe_fills_the_status_and_a_failure_keeps_what_was_seen() {
        let (status, _) =
            apply(&spec(), Some(1), &HypervisorStatus::default(), &[HostRequest::Probed(probe())], &now());
        assert!(is_reachable(&status));
        assert_eq!(status.accelerator, Some(EffectiveAccelerator::Tcg));
        assert_eq!(status.capacity, Some(HostCapacity { memory_mib: 9216, cpus: 4 }));
        assert_eq!(status.allocatable.map(|a| (a.memory_mib, a.vcpus)), Some((8192, 16)));
        assert_eq!(status.placement_count, Some(0));
        let (down, _) =
            apply(&spec(), Some(1), &status, &[HostRequest::Unreachable("connection refused".into())], &now());
        assert!(!is_reachable(&down));
        assert_eq!(down.conditions[0].reason, "ConnectFailed");
        assert_eq!(down.conditions[0].message, "connection refused");
        assert_eq!(down.capacity, status.capacity, "the last capacity seen stays");
    }

    #[test]
    fn kvm_is_used_when_offered_unless_tcg_is_asked_and_required_when_asked() {
        let mut kvm = probe();
        kvm.kvm = true;
        let mut s = spec();
        let (status, _) = apply(&s, None, &HypervisorStatus::default(), &[HostRequest::Probed(kvm.clone())], &now());
        assert_eq!(status.accelerator, Some(EffectiveAccelerator::Kvm));
        s.accelerator = Accelerator::Tcg;
        let (status, _) = apply(&s, None, &HypervisorStatus::default(), &[HostRequest::Probed(kvm)], &now());
        assert_eq!(status.accelerator, Some(EffectiveAccelerator::Tcg));
        s.accelerator = Accelerator::Kvm;
        let (status, _) = apply(&s, None, &HypervisorStatus::default(), &[HostRequest::Probed(probe())], &now());
        assert_eq!(status.accelerator, None);
        assert!(!is_reachable(&status));
        assert_eq!(status.conditions[0].reason, "NoKVM");
    }

    #[test]
    fn a_batch_of_reservations_never_overcommits() {
        let (probed, _) = apply(&spec(), None, &HypervisorStatus::default(), &[HostRequest::Probed(probe())], &now());
        // 8192 MiB allocatable: 3 × 3072 do not all fit.
        let requests = [reserve("a", 3072), reserve("b", 3072), reserve("c", 3072), reserve("a", 3072)];
        let (status, outcomes) = apply(&spec(), None, &probed, &requests, &now());
        assert_eq!(outcomes[0], HostOutcome::Reserved);
        assert_eq!(outcomes[1], HostOutcome::Reserved);
        assert_eq!(outcomes[2], HostOutcome::Refused(Refusal::Memory { left: 2048, asked: 3072 }));
        assert_eq!(outcomes[3], HostOutcome::Reserved, "a second reservation of the same Machine is the first");
        assert_eq!(status.placements.len(), 2);
        assert_eq!(status.committed.map(|c| c.memory_mib), Some(6144));
        assert_eq!(status.placement_count, Some(2));

        let requests = [
            HostRequest::Materialize { uid: "a".into() },
            HostRequest::Release { uid: "b".into() },
            reserve("c", 3072),
        ];
        let (status, outcomes) = apply(&spec(), None, &status, &requests, &now());
        assert_eq!(outcomes[2], HostOutcome::Reserved, "room freed by the release");
        let states: Vec<(&str, PlacementState)> = status.placements.iter().map(|p| (p.uid.as_str(), p.state)).collect();
        assert_eq!(states, [("a", PlacementState::Created), ("c", PlacementState::Reserved)]);
    }

    #[test]
    fn an_unprobed_or_cordoned_host_refuses() {
        let (_, outcomes) = apply(&spec(), None, &HypervisorStatus::default(), &[reserve("a", 1)], &now());
        assert_eq!(outcomes, [HostOutcome::Refused(Refusal::NotProbed)]);
        let mut cordoned = spec();
        cordoned.unschedulable = true;
        let (probed, _) = apply(&cordoned, None, &HypervisorStatus::default(), &[HostRequest::Probed(probe())], &now());
        let (_, outcomes) = apply(&cordoned, None, &probed, &[reserve("a", 1)], &now());
        assert_eq!(outcomes, [HostOutcome::Refused(Refusal::Unschedulable)]);
    }
}
