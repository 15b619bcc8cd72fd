//! The libvirt calls against libvirt's own test driver (`test:///<node file>`: libvirt's
//! library with an in-memory hypervisor, no daemon): probe, define, volume, power, undefine,
//! and the ownership that keeps the operator off domains it did not create.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic

use machinist_crds::hypervisor::{ForeignDomains, PoolStatus};
use machinist_operator::libvirt::{Host, LibvirtError, quiet_errors};
use machinist_operator::vm::domain_xml::{
    DiskSpec, DomainSpec, NicSource, NicSpec, Owner, VolumeSpec, parse_ownership, render_domain,
};
use machinist_operator::vm::naming::{console_log, domain_name, volume_name};
use machinist_operator::vm::power::Observed;

fn host() -> Host {
    quiet_errors();
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hv-a.xml");
    Host::connect(&format!("test://{fixture}")).unwrap()
}

fn spec(namespace: &str, name: &str, uid: &str) -> DomainSpec {
    let domain = domain_name(namespace, name);
    DomainSpec {
        uuid: uid.into(),
        owner: Owner { namespace: namespace.into(), name: name.into(), uid: uid.into() },
        kvm: false,
        memory_mib: 1024,
        vcpus: 1,
        uefi: false,
        disk: DiskSpec { pool: "ssd".into(), volume: volume_name(&domain, true), qcow2: true },
        nic: NicSpec { source: NicSource::Bridge("br0".into()), mac: "52:54:00:aa:bb:01".into() },
        console_log: console_log("/var/log/libvirt/qemu", &domain),
        name: domain,
    }
}

#[test]
fn a_probe_reports_capacity_pools_and_foreign_domains() {
    let host = host();
    let probed = host.probe().unwrap();
    let probe = &probed.probe;
    assert_eq!((probe.memory_mib, probe.cpus), (16384, 8));
    assert!(!probe.kvm, "the test driver offers no KVM");
    assert!(probe.libvirt_version.split('.').count() == 3, "{}", probe.libvirt_version);
    assert_eq!(
        probe.pools,
        [PoolStatus { name: "ssd".into(), type_: "dir".into(), active: true, capacity_gib: 100, available_gib: 100 }]
    );
    assert_eq!(probe.foreign, ForeignDomains { domains: 2, memory_mib: 2560, vcpus: 3 });
    assert!(probed.ours.is_empty());

    // A defined domain of ours is ours, not foreign, running or not.
    let spec = spec("api", "api-01", "4b3c9d52-1111-4222-8333-444455556666");
    host.define(&spec.name, &render_domain(&spec)).unwrap();
    host.start(&spec.name).unwrap();
    let probed = host.probe().unwrap();
    assert_eq!(probed.probe.foreign, ForeignDomains { domains: 2, memory_mib: 2560, vcpus: 3 });
    assert_eq!(probed.ours.iter().map(|o| o.uid.as_str()).collect::<Vec<_>>(), [spec.owner.uid.as_str()]);
}

#[test]
fn a_domain_is_defined_given_its_volume_powered_and_removed() {
    let host = host();
    let spec = spec("api", "api-01", "4b3c9d52-1111-4222-8333-444455556666");
    assert_eq!(host.domain(&spec.name).unwrap(), None);

    host.define(&spec.name, &render_domain(&spec)).unwrap();
    let view = host.domain(&spec.name).unwrap().unwrap();
    assert_eq!(view.power, Observed::Off);
    assert_eq!(view.uuid, spec.uuid);
    let ownership = view.ownership.unwrap();
    assert_eq!((ownership.uid.as_str(), ownership.spec_hash), (spec.uuid.as_str(), spec.hash()));

    let volume = VolumeSpec { name: spec.disk.volume.clone(), capacity_gib: 20, qcow2: true };
    let created = host.ensure_volume("ssd", &volume).unwrap();
    assert_eq!(created.capacity_bytes, 20 << 30);
    assert!(created.path.ends_with(&spec.disk.volume), "{}", created.path);
    // Again: the same volume, not a second one.
    assert_eq!(host.ensure_volume("ssd", &volume).unwrap(), created);
    assert!(matches!(host.ensure_volume("nowhere", &volume), Err(LibvirtError::NoPool(p)) if p == "nowhere"));

    host.start(&spec.name).unwrap();
    assert_eq!(host.domain(&spec.name).unwrap().unwrap().power, Observed::On);
    host.shutdown(&spec.name).unwrap();
    assert_eq!(host.domain(&spec.name).unwrap().unwrap().power, Observed::Off, "the test driver's guests obey at once");
    host.start(&spec.name).unwrap();
    host.reset(&spec.name).unwrap();
    host.destroy(&spec.name).unwrap();
    assert_eq!(host.domain(&spec.name).unwrap().unwrap().power, Observed::Off);
    // Starting twice is libvirt's error, not a panic.
    host.start(&spec.name).unwrap();
    let again = host.start(&spec.name).unwrap_err();
    assert!(!again.is_unreachable(), "{again}");
    assert!(again.to_string().contains(&spec.name), "{again}");
    host.destroy(&spec.name).unwrap();

    // A redefinition with another size keeps the UUID and records the new digest.
    let mut bigger = spec.clone();
    bigger.memory_mib = 2048;
    host.define(&bigger.name, &render_domain(&bigger)).unwrap();
    let view = host.domain(&spec.name).unwrap().unwrap();
    assert_eq!(view.uuid, spec.uuid);
    assert_eq!(view.ownership.unwrap().spec_hash, bigger.hash());

    assert!(host.undefine(&spec.name, false).unwrap());
    assert!(!host.undefine(&spec.name, false).unwrap());
    assert_eq!(host.domain(&spec.name).unwrap(), None);
    assert!(host.delete_volume("ssd", &spec.disk.volume).unwrap());
    assert!(!host.delete_volume("ssd", &spec.disk.volume).unwrap());
    assert!(!host.delete_volume("nowhere", &spec.disk.volume).unwrap());
    let errors = host.start(&spec.name).unwrap_err();
    assert!(errors.to_string().contains("does not exist"), "{errors}");
}

#[test]
fn a_domain_without_our_metadata_is_seen_as_someone_elses() {
    let first = host();
    // The name a Machine would get, taken by a domain defined by hand.
    let name = domain_name("api", "api-02");
    let foreign = format!(
        "<domain type='qemu'><name>{name}</name><memory unit='MiB'>512</memory><vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os></domain>"
    );
    first.define(&name, &foreign).unwrap();
    let view = first.domain(&name).unwrap().unwrap();
    assert_eq!(view.ownership, None);

    // A domain of the same name with another Machine's uid is not this Machine's either.
    let other = host();
    let old = spec("api", "api-02", "00000000-0000-4000-8000-000000000001");
    other.define(&old.name, &render_domain(&old)).unwrap();
    let seen = other.domain(&old.name).unwrap().unwrap().ownership.unwrap();
    assert_ne!(seen.uid, "00000000-0000-4000-8000-000000000002");

    // Defining ours over a name held with another UUID fails rather than replacing it.
    let ours = spec("api", "api-02", "00000000-0000-4000-8000-000000000002");
    let refused = other.define(&ours.name, &render_domain(&ours)).unwrap_err();
    assert!(refused.to_string().contains("already exists"), "{refused}");
    assert_eq!(parse_ownership(&render_domain(&ours)).unwrap().uid, ours.uuid);
}

#[test]
fn an_unreachable_host_is_a_connect_error() {
    quiet_errors();
    let error = Host::connect("qemu+unix:///system?socket=/nonexistent/libvirt-sock").unwrap_err();
    assert!(error.is_unreachable(), "{error}");
    assert!(error.to_string().contains("/nonexistent/libvirt-sock"), "{error}");
    let error = Host::connect("test:///nonexistent/node.xml").unwrap_err();
    assert!(error.is_unreachable(), "{error}");
}
