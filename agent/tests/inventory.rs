//! Inventory of the fixture trees in `tests/fixtures/<shape>/` (built by `make_fixtures.py`):
//! targeted checks per shape, and the full item list against `<shape>.items.json`
//! (`MACHINIST_BLESS=1` rewrites those after a deliberate change).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use machinist_agent::inventory::{NicKind, Transport};
use machinist_agent::{Inventory, to_items};
use machinist_agent_protocol::report::Quad;
use machinist_agent_protocol::summary::{DiskSummary, NicSummary, summarize};

fn fixture(shape: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(shape)
}

fn collect(shape: &str) -> (Inventory, Vec<Quad>) {
    let inventory = Inventory::collect(&fixture(shape)).unwrap();
    let items = to_items(&inventory);
    check_golden(shape, &items);
    (inventory, items)
}

fn check_golden(shape: &str, items: &[Quad]) {
    let path = fixture(&format!("{shape}.items.json"));
    let rendered = items.iter().map(|q| serde_json::to_string(q).unwrap()).collect::<Vec<_>>().join(",\n");
    let rendered = format!("[\n{rendered}\n]\n");
    if std::env::var_os("MACHINIST_BLESS").is_some() {
        std::fs::write(&path, &rendered).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(expected == rendered, "{shape}: items differ from {}:\n{rendered}", path.display());
}

fn value<'a>(items: &'a [Quad], class: &str, r#type: &str, name: &str) -> Option<&'a str> {
    items.iter().find(|q| q.class == class && q.r#type == r#type && q.name == name).map(|q| q.value.as_str())
}

fn types<'a>(items: &'a [Quad], class: &str) -> Vec<&'a str> {
    let mut types: Vec<&str> = items.iter().filter(|q| q.class == class).map(|q| q.r#type.as_str()).collect();
    types.dedup();
    types
}

#[test]
fn qemu_vm() {
    let (inventory, items) = collect("qemu-vm");
    assert_eq!(value(&items, "system", "product", "vendor"), Some("QEMU"));
    assert_eq!(value(&items, "system", "product", "name"), Some("Standard PC (Q35 + ICH9, 2009)"));
    assert_eq!(value(&items, "system", "product", "uuid"), Some("1B4E28BA-2FA1-11D2-883F-0016D3CCA427"));
    assert_eq!(value(&items, "system", "product", "serial"), None, "empty serial is absent");
    assert_eq!(value(&items, "firmware", "bios", "vendor"), Some("SeaBIOS"));
    assert_eq!(value(&items, "firmware", "boot", "mode"), Some("bios"));
    assert_eq!(value(&items, "cpu", "physical", "number"), Some("1"));
    assert_eq!(value(&items, "cpu", "logical", "number"), Some("4"));
    assert_eq!(value(&items, "cpu", "physical_0", "product"), Some("QEMU Virtual CPU version 2.5+"));
    assert_eq!(value(&items, "memory", "total", "size"), Some("8589934592"), "the DIMM, not MemTotal");
    assert_eq!(value(&items, "memory", "bank:0", "vendor"), None, "lshw calls a lone DIMM `bank`: not reported");
    assert_eq!(types(&items, "disk"), vec!["logical", "vda"]);
    assert_eq!(value(&items, "disk", "vda", "size"), Some("21"));
    assert_eq!(value(&items, "disk", "vda", "vendor"), Some("0x1af4"));
    assert_eq!(value(&items, "disk", "vda", "transport"), Some("virtio"));
    assert_eq!(value(&items, "disk", "vda", "serial"), Some("machinist-root"));
    assert_eq!(value(&items, "network", "enp1s0", "serial"), Some("52:54:00:12:34:56"));
    assert_eq!(value(&items, "network", "enp1s0", "businfo"), Some("virtio@0"));
    assert_eq!(value(&items, "network", "enp1s0", "driver"), Some("virtio_net"));
    assert_eq!(value(&items, "network", "enp1s0", "link"), Some("yes"));
    assert_eq!(value(&items, "network", "enp1s0", "speed"), None, "speed -1 is unknown");
    assert_eq!(value(&items, "network", "enp1s0", "ipv4"), Some("192.168.122.10"));
    assert_eq!(value(&items, "network", "enp1s0", "ipv4-cidr"), Some("24"));
    assert_eq!(inventory.nics[0].pci_address.as_deref(), Some("0000:01:00.0"));
    assert_eq!(value(&items, "pci", "0000:01:00.0", "vendor"), Some("0x1af4"));
    let summary = summarize(&items);
    assert_eq!(summary.memory_mib, 8192);
    assert_eq!((summary.sockets, summary.cores, summary.threads), (1, 4, 4));
    assert_eq!(summary.disks, vec![DiskSummary { name: "vda".into(), size_bytes: 21474836480, rotational: true }]);
}

#[test]
fn two_socket_server() {
    let (inventory, items) = collect("two-socket");
    assert_eq!(value(&items, "system", "product", "name"), Some("SYS-2029U-TR4 (To be filled by O.E.M.)"));
    assert_eq!(
        value(&items, "system", "product", "serial"),
        Some("00000000-0000-0000-0000-AC1F6B2C3D4E"),
        "the fake serial gives way to the UUID"
    );
    assert_eq!(value(&items, "system", "motherboard", "serial"), Some("ZM19AS012345"));
    assert_eq!(value(&items, "firmware", "boot", "mode"), Some("uefi"));
    assert_eq!(value(&items, "cpu", "physical", "number"), Some("2"));
    assert_eq!(value(&items, "cpu", "physical", "smt"), Some("on"));
    assert_eq!(value(&items, "cpu", "physical_1", "cores"), Some("16"));
    assert_eq!(value(&items, "cpu", "physical_1", "threads"), Some("32"));
    assert_eq!(value(&items, "cpu", "logical", "number"), Some("64"));
    assert_eq!(inventory.cpu.features(), vec!["vmx", "aes", "avx", "avx2", "avx512f"]);
    assert_eq!(value(&items, "memory", "total", "size"), Some("274877906944"), "4 × 64 GiB");
    assert_eq!(value(&items, "memory", "banks", "count"), Some("8"));
    assert_eq!(value(&items, "memory", "bank:1:2", "slot"), Some("P2-DIMMC1"));
    assert_eq!(value(&items, "memory", "bank:1:2", "clock"), Some("2666000000"));
    assert_eq!(value(&items, "memory", "bank:0:1", "size"), None, "empty slot");
    assert_eq!(types(&items, "disk"), vec!["logical", "nvme0n1", "sda", "sdb"]);
    assert_eq!(value(&items, "disk", "logical", "count"), Some("3"));
    assert_eq!(value(&items, "disk", "sda", "size"), Some("480"));
    assert_eq!(value(&items, "disk", "sda", "model"), Some("SAMSUNG MZ7LH480"));
    assert_eq!(value(&items, "disk", "sda", "serial"), Some("S45PNA0M512345"));
    assert_eq!(value(&items, "disk", "sda", "Write Cache Enable"), Some("1"));
    assert_eq!(value(&items, "disk", "sdb", "rotational"), Some("1"));
    assert_eq!(value(&items, "disk", "nvme0n1", "vendor"), Some("0x144d"));
    assert_eq!(value(&items, "disk", "nvme0n1", "revision"), Some("0x00"));
    assert_eq!(value(&items, "disk", "nvme0n1", "scheduler"), Some("none"));
    assert_eq!(value(&items, "disk", "nvme0n1", "serial"), Some("S4EWNX0R123456"));
    let transports: Vec<_> = inventory.disks.iter().map(|d| d.transport).collect();
    assert_eq!(transports, vec![Some(Transport::Nvme), Some(Transport::Sata), Some(Transport::Sata)]);
    // Bond ports keep their burned-in MACs; the bond, its VLAN and the bridge are not hardware.
    assert_eq!(types(&items, "network"), vec!["eno3", "eth0", "eth1"]);
    assert_eq!(value(&items, "network", "eth0", "serial"), Some("3c:fd:fe:aa:bb:00"));
    assert_eq!(value(&items, "network", "eth1", "serial"), Some("3c:fd:fe:aa:bb:01"));
    assert_eq!(value(&items, "network", "eth1", "master"), Some("bond0"));
    assert_eq!(value(&items, "network", "eth1", "speed"), Some("10Gbit/s"));
    assert_eq!(value(&items, "network", "eth1", "businfo"), Some("pci@0000:18:00.1"));
    assert_eq!(value(&items, "network", "eno3", "link"), Some("no"));
    let kinds: Vec<_> = inventory.nics.iter().map(|n| (n.name.as_str(), n.kind)).collect();
    assert_eq!(
        kinds,
        vec![
            ("bond0", NicKind::Bond),
            ("bond0.100", NicKind::Vlan),
            ("br0", NicKind::Bridge),
            ("eno3", NicKind::Physical),
            ("eth0", NicKind::Physical),
            ("eth1", NicKind::Physical),
        ]
    );
    assert_eq!(inventory.nics[0].ipv4.map(|ip| ip.address.to_string()).as_deref(), Some("10.0.0.5"));
    let summary = summarize(&items);
    assert_eq!((summary.sockets, summary.cores, summary.threads), (2, 32, 64));
    assert_eq!(summary.memory_mib, 262144);
    assert_eq!(summary.disks.len(), 3);
    assert_eq!(
        summary.nics[1],
        NicSummary { name: "eth0".into(), mac: "3c:fd:fe:aa:bb:00".into(), speed_mbps: Some(10000) }
    );
    assert_eq!(summary.nics[0].speed_mbps, None);
}

#[test]
fn machine_without_dmi() {
    let (inventory, items) = collect("no-dmi");
    assert!(inventory.system.dmi.is_empty());
    assert!(items.iter().all(|q| q.class != "system"));
    assert_eq!(value(&items, "cpu", "physical", "number"), Some("1"));
    assert_eq!(value(&items, "cpu", "physical_0", "cores"), Some("4"));
    assert_eq!(value(&items, "cpu", "physical_0", "architecture"), Some("aarch64"));
    assert_eq!(value(&items, "cpu", "physical_0", "flags"), Some("fp asimd evtstrm crc32 cpuid"));
    assert_eq!(value(&items, "memory", "total", "size"), Some("3973701632"), "MemTotal when nothing else");
    assert_eq!(types(&items, "disk"), vec!["logical", "sda"], "mmcblk0 is not reported, like hardware-detect");
    assert_eq!(value(&items, "disk", "sda", "transport"), Some("usb"));
    assert_eq!(value(&items, "disk", "sda", "Write Cache Enable"), Some("0"));
    assert_eq!(value(&items, "network", "eth0", "businfo"), None, "platform device");
    assert_eq!(value(&items, "network", "eth0", "driver"), Some("bcmgenet"));
    assert_eq!(value(&items, "network", "eth0", "speed"), Some("1Gbit/s"));
    let summary = summarize(&items);
    assert_eq!(summary.vendor, None);
    assert_eq!(summary.nics.len(), 1);
}

#[test]
fn machine_without_disks_and_an_odd_nic() {
    let (inventory, items) = collect("no-disks");
    assert!(inventory.disks.is_empty());
    assert_eq!(value(&items, "disk", "logical", "count"), Some("0"));
    assert_eq!(types(&items, "network"), vec!["enx0123456789ab"]);
    assert_eq!(value(&items, "network", "enx0123456789ab", "serial"), Some("01:23:45:67:89:ab"));
    assert_eq!(value(&items, "network", "enx0123456789ab", "driver"), Some("r8152"));
    assert_eq!(value(&items, "network", "enx0123456789ab", "ipv4"), None, "no /proc/net in this tree");
    assert_eq!(value(&items, "cpu", "physical_0", "threads_per_core"), Some("2"));
    assert_eq!(value(&items, "cpu", "physical", "smt"), None);
    assert!(summarize(&items).disks.is_empty());
}

#[test]
fn this_machine_capture() {
    let (inventory, items) = collect("this-machine");
    // Captured on a Firecracker VM: no DMI, one virtio disk, one virtio NIC and two ifb.
    assert!(inventory.system.dmi.is_empty());
    assert_eq!(types(&items, "disk"), vec!["logical", "vda"]);
    assert_eq!(types(&items, "network"), vec!["eth0"]);
    assert_eq!(value(&items, "memory", "total", "size"), Some("25769803776"), "online memory blocks, like lshw");
}

#[test]
fn missing_and_empty_roots() {
    assert!(Inventory::collect(Path::new("/nonexistent/machinist")).is_err());
    let empty = std::env::temp_dir().join(format!("machinist-agent-empty-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let inventory = Inventory::collect(&empty).unwrap();
    assert_eq!(inventory, Inventory::default());
    std::fs::remove_dir_all(&empty).unwrap();
}
