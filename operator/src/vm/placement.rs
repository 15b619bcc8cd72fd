//! Which Hypervisor a new VM goes to, pure: among the reachable, schedulable Hypervisors its
//! `host` or `hostSelector` allows, the one with the most memory left once the VM is placed
//! (seed 001's manual choice), where it fits.
//!
//! What a host may give (`allocatable`) is its capacity less the reserve, times the overcommit
//! ratio; what it has given (`committed`) is every placement recorded in its status, VMs being
//! created included, plus the running domains the operator did not create. Counting the
//! placements being created is what keeps concurrent placements from overcommitting a host:
//! each one is recorded (through the ledger, which checks [`fits`] again on the fresh object)
//! before any libvirt call.

use std::collections::BTreeMap;

use machinist_crds::hypervisor::{
    EffectiveAccelerator, HypervisorSpec, HypervisorStatus, Placement, PlacementState, PoolStatus, Resources,
};

/// What a VM asks of a host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Memory, in MiB.
    pub memory_mib: i64,
    /// Virtual CPUs.
    pub vcpus: i64,
    /// Disk, in GiB.
    pub disk_gib: i64,
    /// Pool for the disk.
    pub pool: String,
    /// qcow2 disk (needs a file-based pool).
    pub qcow2: bool,
}

/// A Hypervisor as placement sees it.
#[derive(Clone, Copy, Debug)]
pub struct HostView<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its labels.
    pub labels: &'a BTreeMap<String, String>,
    /// Its spec.
    pub spec: &'a HypervisorSpec,
    /// Its status (probe results and placements).
    pub status: &'a HypervisorStatus,
    /// Whether its last probe succeeded.
    pub reachable: bool,
}

/// Where a VM may go.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// This Hypervisor (`provider.libvirt.host`).
    Host(&'a str),
    /// Any Hypervisor with these labels (`provider.libvirt.hostSelector`).
    Selector(&'a BTreeMap<String, String>),
}

/// Why a host cannot take a VM.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// It is not reachable.
    #[error("not reachable")]
    Unreachable,
    /// It is cordoned.
    #[error("unschedulable")]
    Unschedulable,
    /// Its ledger refused the placement: it filled up since the cache saw it.
    #[error("filled up by other placements")]
    FilledUp,
    /// Its capacity is not known yet (never probed).
    #[error("not probed yet")]
    NotProbed,
    /// It has no such pool, or the pool is stopped.
    #[error("has no active pool {0}")]
    PoolMissing(String),
    /// The pool cannot hold a qcow2 disk.
    #[error("pool {pool} ({kind}) holds raw volumes only")]
    FormatUnsupported {
        /// Pool name.
        pool: String,
        /// Pool type.
        kind: String,
    },
    /// Not enough memory left.
    #[error("{left} MiB of memory left, {asked} asked")]
    Memory {
        /// MiB left.
        left: i64,
        /// MiB asked.
        asked: i64,
    },
    /// Not enough vCPUs left.
    #[error("{left} vCPUs left, {asked} asked")]
    Cpus {
        /// vCPUs left.
        left: i64,
        /// vCPUs asked.
        asked: i64,
    },
    /// Not enough room in the pool.
    #[error("{left} GiB left in pool {pool}, {asked} asked")]
    Disk {
        /// Pool name.
        pool: String,
        /// GiB left.
        left: i64,
        /// GiB asked.
        asked: i64,
    },
}

/// The outcome of a placement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placed {
    /// This host.
    Chosen(String),
    /// No Hypervisor matches the target at all.
    NoHypervisor,
    /// Some match, none fits: each with why.
    NoneFits(Vec<(String, Refusal)>),
}

/// What `spec` lets VMs have of `capacity`: less the reserve, times the overcommit ratio.
pub fn allocatable(spec: &HypervisorSpec, memory_mib: i64, cpus: i64) -> Resources {
    let memory = (memory_mib - i64::from(spec.reserved_memory_mib)).max(0);
    let cpus = (cpus - i64::from(spec.reserved_cpus)).max(0);
    Resources {
        memory_mib: memory * i64::from(spec.memory_overcommit_percent) / 100,
        vcpus: cpus * i64::from(spec.cpu_overcommit_percent) / 100,
    }
}

/// What the placements and the host's foreign domains take.
pub fn committed(status: &HypervisorStatus, placements: &[Placement]) -> Resources {
    let foreign = status.foreign.unwrap_or_default();
    Resources {
        memory_mib: foreign.memory_mib + placements.iter().map(|p| p.memory_mib).sum::<i64>(),
        vcpus: foreign.vcpus + placements.iter().map(|p| p.vcpus).sum::<i64>(),
    }
}

/// Whether `request` fits on the host given `placements` (those of its status, or a ledger's
/// fresher list); `Ok` carries the memory left after it.
pub fn fits(
    spec: &HypervisorSpec,
    status: &HypervisorStatus,
    placements: &[Placement],
    request: &Request,
) -> Result<i64, Refusal> {
    let capacity = status.capacity.ok_or(Refusal::NotProbed)?;
    let pool = status
        .pools
        .iter()
        .find(|p| p.name == request.pool && p.active)
        .ok_or_else(|| Refusal::PoolMissing(request.pool.clone()))?;
    if request.qcow2 && !file_based(pool) {
        return Err(Refusal::FormatUnsupported { pool: pool.name.clone(), kind: pool.type_.clone() });
    }
    let allocatable = allocatable(spec, capacity.memory_mib, capacity.cpus);
    let committed = committed(status, placements);
    let memory_left = allocatable.memory_mib - committed.memory_mib;
    if memory_left < request.memory_mib {
        return Err(Refusal::Memory { left: memory_left, asked: request.memory_mib });
    }
    let cpus_left = allocatable.vcpus - committed.vcpus;
    if cpus_left < request.vcpus {
        return Err(Refusal::Cpus { left: cpus_left, asked: request.vcpus });
    }
    // Created volumes are inside the pool's reported free space; reserved ones not yet.
    let reserved: i64 = placements
        .iter()
        .filter(|p| p.pool == request.pool && p.state == PlacementState::Reserved)
        .map(|p| p.disk_gib)
        .sum();
    let disk_left = pool.available_gib - reserved;
    if disk_left < request.disk_gib {
        return Err(Refusal::Disk { pool: pool.name.clone(), left: disk_left, asked: request.disk_gib });
    }
    Ok(memory_left - request.memory_mib)
}

/// Pools whose volumes are files, which can be qcow2 images.
fn file_based(pool: &PoolStatus) -> bool {
    matches!(pool.type_.as_str(), "dir" | "fs" | "netfs")
}

fn eligible(host: &HostView<'_>) -> Result<(), Refusal> {
    if !host.reachable {
        return Err(Refusal::Unreachable);
    }
    if host.spec.unschedulable {
        return Err(Refusal::Unschedulable);
    }
    Ok(())
}

/// Chooses a host for `request` among `hosts` (`excluded`: refused by the ledger since the
/// caches saw them). A pinned host is taken only if it fits: the overcommit guard holds for
/// pins too. Ties go to fewer vCPUs committed, then to the name.
pub fn choose(hosts: &[HostView<'_>], target: Target<'_>, request: &Request, excluded: &[&str]) -> Placed {
    let candidates: Vec<&HostView<'_>> = hosts
        .iter()
        .filter(|h| match target {
            Target::Host(name) => h.name == name,
            Target::Selector(selector) => selector.iter().all(|(k, v)| h.labels.get(k) == Some(v)),
        })
        .collect();
    if candidates.is_empty() {
        return Placed::NoHypervisor;
    }
    let mut refusals = Vec::new();
    let mut best: Option<(i64, i64, &str)> = None;
    for host in candidates {
        if excluded.contains(&host.name) {
            refusals.push((host.name.to_owned(), Refusal::FilledUp));
            continue;
        }
        match eligible(host).and_then(|()| fits(host.spec, host.status, &host.status.placements, request)) {
            Ok(memory_left) => {
                let vcpus = committed(host.status, &host.status.placements).vcpus;
                let better = best.is_none_or(|(m, v, n)| {
                    (memory_left, -vcpus, std::cmp::Reverse(host.name)) > (m, -v, std::cmp::Reverse(n))
                });
                if better {
                    best = Some((memory_left, vcpus, host.name));
                }
            }
            Err(refusal) => refusals.push((host.name.to_owned(), refusal)),
        }
    }
    match best {
        Some((_, _, name)) => Placed::Chosen(name.to_owned()),
        None => Placed::NoneFits(refusals),
    }
}

/// libvirt's domain type for a host's accelerator.
pub fn is_kvm(accelerator: Option<EffectiveAccelerator>) -> bool {
    accelerator == Some(EffectiveAccelerator::Kvm)
}

#[cfg(test)]
mod tests {
    use machinist_crds::hypervisor::{ForeignDomains, HostCapacity};

    use super::*;

    fn spec() -> HypervisorSpec {
        HypervisorSpec { reserved_cpus: 1, ..HypervisorSpec::new("test:///default") }
    }

    fn status(memory_mib: i64, cpus: i64) -> HypervisorStatus {
        HypervisorStatus {
            capacity: Some(HostCapacity { memory_mib, cpus }),
            pools: vec![
                PoolStatus {
                    name: "ssd".into(),
                    type_: "dir".into(),
                    active: true,
                    capacity_gib: 100,
                    available_gib: 100,
                },
                PoolStatus {
                    name: "ceph".into(),
                    type_: "rbd".into(),
                    active: true,
                    capacity_gib: 1000,
                    available_gib: 900,
                },
                PoolStatus {
                    name: "off".into(),
                    type_: "dir".into(),
                    active: false,
                    capacity_gib: 10,
                    available_gib: 10,
                },
            ],
            ..HypervisorStatus::default()
        }
    }

    fn request(memory_mib: i64) -> Request {
        Request { memory_mib, vcpus: 1, disk_gib: 10, pool: "ssd".into(), qcow2: true }
    }

    fn placement(memory_mib: i64, disk_gib: i64, state: PlacementState) -> Placement {
        Placement {
            machine: "default/m".into(),
            uid: "u".into(),
            memory_mib,
            vcpus: 1,
            disk_gib,
            pool: "ssd".into(),
            state,
        }
    }

    struct Host {
        name: &'static str,
        labels: BTreeMap<String, String>,
        spec: HypervisorSpec,
        status: HypervisorStatus,
        reachable: bool,
    }

    impl Host {
        fn new(name: &'static str, memory_mib: i64, site: &str) -> Self {
            Host {
                name,
                labels: BTreeMap::from([("site".to_owned(), site.to_owned())]),
                spec: spec(),
                status: status(memory_mib, 8),
                reachable: true,
            }
        }
        fn view(&self) -> HostView<'_> {
            HostView {
                name: self.name,
                labels: &self.labels,
                spec: &self.spec,
                status: &self.status,
                reachable: self.reachable,
            }
        }
    }

    #[test]
    fn allocatable_is_capacity_less_reserve_times_ratio() {
        let mut s = spec();
        assert_eq!(allocatable(&s, 9216, 5), Resources { memory_mib: 8192, vcpus: 16 });
        s.memory_overcommit_percent = 150;
        s.cpu_overcommit_percent = 100;
        assert_eq!(allocatable(&s, 9216, 5), Resources { memory_mib: 12288, vcpus: 4 });
        assert_eq!(allocatable(&s, 512, 0), Resources { memory_mib: 0, vcpus: 0 }, "never negative");
    }

    #[test]
    fn placements_and_foreign_domains_count_against_the_host() {
        let mut st = status(9216, 8);
        assert_eq!(fits(&spec(), &st, &[], &request(8192)), Ok(0));
        let placed = [placement(4096, 10, PlacementState::Reserved)];
        assert_eq!(fits(&spec(), &st, &placed, &request(8192)), Err(Refusal::Memory { left: 4096, asked: 8192 }));
        st.foreign = Some(ForeignDomains { domains: 1, memory_mib: 4096, vcpus: 1 });
        assert_eq!(fits(&spec(), &st, &placed, &request(1)), Err(Refusal::Memory { left: 0, asked: 1 }));
    }

    #[test]
    fn vcpus_pools_formats_and_reserved_disks() {
        let st = status(65536, 2); // 1 CPU beyond the reserve, 4 vCPUs at 400%
        let mut r = request(1024);
        r.vcpus = 5;
        assert_eq!(fits(&spec(), &st, &[], &r), Err(Refusal::Cpus { left: 4, asked: 5 }));
        r.vcpus = 1;
        r.pool = "off".into();
        assert_eq!(fits(&spec(), &st, &[], &r), Err(Refusal::PoolMissing("off".into())));
        r.pool = "nowhere".into();
        assert_eq!(fits(&spec(), &st, &[], &r), Err(Refusal::PoolMissing("nowhere".into())));
        r.pool = "ceph".into();
        assert_eq!(
            fits(&spec(), &st, &[], &r),
            Err(Refusal::FormatUnsupported { pool: "ceph".into(), kind: "rbd".into() })
        );
        r.qcow2 = false;
        assert!(fits(&spec(), &st, &[], &r).is_ok());
        // Reserved disks are not in the pool's free space yet; created ones are.
        let mut big = request(1024);
        big.disk_gib = 60;
        let reserved = [placement(1, 50, PlacementState::Reserved)];
        assert_eq!(fits(&spec(), &st, &reserved, &big), Err(Refusal::Disk { pool: "ssd".into(), left: 50, asked: 60 }));
        let created = [placement(1, 50, PlacementState::Created)];
        assert!(fits(&spec(), &st, &created, &big).is_ok());
        // Never probed.
        assert_eq!(fits(&spec(), &HypervisorStatus::default(), &[], &big), Err(Refusal::NotProbed));
    }

    #[test]
    fn the_most_memory_left_wins_among_the_selected() {
        let a = Host::new("hv-a", 16384, "gra");
        let b = Host::new("hv-b", 32768, "gra");
        let c = Host::new("hv-c", 65536, "rbx");
        let hosts = [a.view(), b.view(), c.view()];
        let gra = BTreeMap::from([("site".to_owned(), "gra".to_owned())]);
        assert_eq!(choose(&hosts, Target::Selector(&gra), &request(2048), &[]), Placed::Chosen("hv-b".into()));
        assert_eq!(
            choose(&hosts, Target::Selector(&BTreeMap::new()), &request(2048), &[]),
            Placed::Chosen("hv-c".into())
        );
        // The ledger refused hv-b since the caches saw it.
        assert_eq!(choose(&hosts, Target::Selector(&gra), &request(2048), &["hv-b"]), Placed::Chosen("hv-a".into()));
        let nowhere = BTreeMap::from([("site".to_owned(), "sbg".to_owned())]);
        assert_eq!(choose(&hosts, Target::Selector(&nowhere), &request(2048), &[]), Placed::NoHypervisor);
    }

    #[test]
    fn ties_go_to_fewer_vcpus_then_the_name() {
        let mut a = Host::new("hv-a", 16384, "gra");
        let mut b = Host::new("hv-b", 16384, "gra");
        let hosts = [b.view(), a.view()];
        assert_eq!(
            choose(&hosts, Target::Selector(&BTreeMap::new()), &request(1024), &[]),
            Placed::Chosen("hv-a".into())
        );
        b.status.foreign = Some(ForeignDomains { domains: 1, memory_mib: 0, vcpus: 0 });
        a.status.foreign = Some(ForeignDomains { domains: 1, memory_mib: 0, vcpus: 3 });
        let hosts = [a.view(), b.view()];
        assert_eq!(
            choose(&hosts, Target::Selector(&BTreeMap::new()), &request(1024), &[]),
            Placed::Chosen("hv-b".into())
        );
    }

    #[test]
    fn unreachable_cordoned_and_full_hosts_say_why() {
        let mut a = Host::new("hv-a", 65536, "gra");
        a.reachable = false;
        let mut b = Host::new("hv-b", 65536, "gra");
        b.spec.unschedulable = true;
        let c = Host::new("hv-c", 2048, "gra");
        let hosts = [a.view(), b.view(), c.view()];
        assert_eq!(
            choose(&hosts, Target::Selector(&BTreeMap::new()), &request(4096), &[]),
            Placed::NoneFits(vec![
                ("hv-a".into(), Refusal::Unreachable),
                ("hv-b".into(), Refusal::Unschedulable),
                ("hv-c".into(), Refusal::Memory { left: 1024, asked: 4096 }),
            ])
        );
        // A pin is still held to the overcommit guard.
        assert!(matches!(choose(&hosts, Target::Host("hv-c"), &request(4096), &[]), Placed::NoneFits(_)));
        assert_eq!(choose(&hosts, Target::Host("hv-c"), &request(1024), &[]), Placed::Chosen("hv-c".into()));
        assert_eq!(choose(&hosts, Target::Host("hv-z"), &request(1024), &[]), Placed::NoHypervisor);
    }

    #[test]
    fn many_placements_never_exceed_allocatable() {
        // Placing one by one, each counted before the next, as the ledger does.
        let mut host = Host::new("hv-a", 17408, "gra"); // 16 GiB allocatable
        let mut placed = 0;
        for i in 0..100 {
            let r = request(if i % 3 == 0 { 3072 } else { 1024 });
            match choose(&[host.view()], Target::Host("hv-a"), &r, &[]) {
                Placed::Chosen(_) => {
                    host.status.placements.push(placement(r.memory_mib, 1, PlacementState::Created));
                    placed += 1;
                }
                Placed::NoneFits(_) => {}
                Placed::NoHypervisor => panic!("hv-a exists"),
            }
            let used: i64 = host.status.placements.iter().map(|p| p.memory_mib).sum();
            assert!(used <= 16384, "{used} MiB committed after {i} requests");
        }
        assert!(placed >= 8, "{placed}");
    }
}
