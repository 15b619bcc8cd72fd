//! The hardware inventory: pure parsers (one module per concept) and the I/O layer that feeds
//! them from a root directory.

pub mod cpu;
pub mod disk;
pub mod memory;
pub mod net;
pub mod pci;
mod read;
pub mod smbios;
pub mod system;

use std::path::{Path, PathBuf};

pub use cpu::Cpu;
pub use disk::{Disk, Transport};
pub use memory::Memory;
pub use net::{Ipv4Net, Nic, NicKind};
pub use pci::PciDevice;
use read::Root;
pub use read::{ATTRIBUTE_LIMIT, DIRECTORY_LIMIT, PROC_LIMIT, SMBIOS_LIMIT};
pub use smbios::MemoryDevice;
pub use system::{Dmi, Firmware, System};

/// Why no inventory could be taken at all (missing files are not errors: they are facts).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The root is not a readable directory.
    #[error("inventory root {path} is not a readable directory: {source}")]
    Root {
        /// The root.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// What the machine is made of.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inventory {
    /// Identity and firmware.
    pub system: System,
    /// Processors.
    pub cpu: Cpu,
    /// Memory.
    pub memory: Memory,
    /// Block devices hardware-detect reports (`sd*`, `hd*`, `vd*`, `nvme*`, size > 0), by name.
    pub disks: Vec<Disk>,
    /// Network interfaces except the loopback, by name.
    pub nics: Vec<Nic>,
    /// PCI functions, by address.
    pub pci: Vec<PciDevice>,
}

impl Inventory {
    /// Reads the inventory from the sysfs and procfs files under `root` (`/` on a machine, a
    /// fixture tree in tests). Never panics; a missing or odd file leaves its fact absent.
    pub fn collect(root: &Path) -> Result<Self, Error> {
        std::fs::read_dir(root).map_err(|source| Error::Root { path: root.to_owned(), source })?;
        let root = Root(root);
        Ok(Self {
            system: collect_system(root),
            cpu: collect_cpu(root),
            memory: collect_memory(root),
            disks: collect_disks(root),
            nics: collect_nics(root),
            pci: collect_pci(root),
        })
    }
}

fn collect_system(root: Root) -> System {
    System {
        dmi: Dmi::from_lookup(|file| root.text(&format!("/sys/class/dmi/id/{file}"), ATTRIBUTE_LIMIT)),
        firmware: Firmware::from_efi_dir(root.is_dir("/sys/firmware/efi")),
        arch: root.line("/proc/sys/kernel/arch"),
    }
}

fn collect_cpu(root: Root) -> Cpu {
    let mut cpu = root.text("/proc/cpuinfo", PROC_LIMIT).map(|t| cpu::parse_cpuinfo(&t)).unwrap_or_default();
    cpu.smt = root.line("/sys/devices/system/cpu/smt/control");
    cpu
}

fn collect_memory(root: Root) -> Memory {
    const BLOCKS: &str = "/sys/devices/system/memory";
    let hotplug_bytes = root
        .line(&format!("{BLOCKS}/block_size_bytes"))
        .and_then(|t| memory::parse_block_size(&t))
        .and_then(|block_size| {
            let states: Vec<String> = root
                .list(BLOCKS)
                .into_iter()
                .filter(|name| name.starts_with("memory"))
                .filter_map(|name| root.line(&format!("{BLOCKS}/{name}/state")))
                .collect();
            memory::hotplug_bytes(block_size, states.iter().map(String::as_str))
        });
    Memory {
        usable_bytes: root.text("/proc/meminfo", PROC_LIMIT).and_then(|t| memory::parse_meminfo_total(&t)),
        hotplug_bytes,
        dimms: root
            .bytes("/sys/firmware/dmi/tables/DMI", SMBIOS_LIMIT)
            .map(|table| smbios::parse_memory_devices(&table))
            .unwrap_or_default(),
    }
}

fn collect_disks(root: Root) -> Vec<Disk> {
    root.list("/sys/block")
        .into_iter()
        .filter(|name| disk::is_reported_disk(name))
        .filter_map(|name| collect_disk(root, name))
        .collect()
}

fn collect_disk(root: Root, name: String) -> Option<Disk> {
    let base = format!("/sys/block/{name}");
    let sectors = root.line(&format!("{base}/size")).and_then(|t| disk::parse_sectors(&t))?;
    // Hidden devices are NVMe multipath paths: the disk is the `nvmeXnY` head.
    if sectors == 0 || root.line(&format!("{base}/hidden")).and_then(|t| disk::parse_flag(&t)) == Some(true) {
        return None;
    }
    // hardware-detect's lookup: `device/X`, else `device/device/X` (NVMe controllers keep the
    // PCI ids one level down).
    let attribute = |file: &str| root.line(&format!("{base}/{file}"));
    let device_attribute = |leaf: &str| {
        root.line(&format!("{base}/device/{leaf}")).or_else(|| root.line(&format!("{base}/device/device/{leaf}")))
    };
    let revision = match root.line(&format!("{base}/device/rev")) {
        Some(rev) => Some(("rev", rev)),
        None => root.line(&format!("{base}/device/device/revision")).map(|rev| ("revision", rev)),
    };
    let cache_type = root
        .link_name(&format!("{base}/device"))
        .and_then(|scsi| root.line(&format!("{base}/device/scsi_disk/{scsi}/cache_type")));
    let serial =
        root.line(&format!("{base}/serial")).or_else(|| root.line(&format!("{base}/device/serial"))).or_else(|| {
            root.bytes(&format!("{base}/device/vpd_pg80"), ATTRIBUTE_LIMIT).and_then(|p| disk::parse_vpd_pg80(&p))
        });
    let transport = root.resolve(&base).map(|path| disk::transport(&path, &name));
    Some(Disk {
        sectors,
        rotational: attribute("queue/rotational").and_then(|t| disk::parse_flag(&t)),
        removable: root.line(&format!("{base}/removable")).and_then(|t| disk::parse_flag(&t)),
        vendor: device_attribute("vendor"),
        model: device_attribute("model"),
        revision,
        optimal_io_size: attribute("queue/optimal_io_size"),
        physical_block_size: attribute("queue/physical_block_size"),
        nr_requests: attribute("queue/nr_requests"),
        scheduler: root.line(&format!("{base}/queue/scheduler")).and_then(|t| disk::parse_scheduler(&t)),
        cache_type,
        serial,
        wwid: root.line(&format!("{base}/wwid")).or_else(|| root.line(&format!("{base}/device/wwid"))),
        transport,
        name,
    })
}

fn collect_nics(root: Root) -> Vec<Nic> {
    let ipv4 = net::assign_ipv4(
        &root.text("/proc/net/fib_trie", PROC_LIMIT).map(|t| net::parse_fib_trie_locals(&t)).unwrap_or_default(),
        &root.text("/proc/net/route", PROC_LIMIT).map(|t| net::parse_routes(&t)).unwrap_or_default(),
    );
    root.list("/sys/class/net")
        .into_iter()
        .filter_map(|name| {
            let base = format!("/sys/class/net/{name}");
            let facts = net::NicFacts {
                has_device: root.exists(&format!("{base}/device")),
                has_bonding: root.is_dir(&format!("{base}/bonding")),
                has_bridge: root.is_dir(&format!("{base}/bridge")),
                uevent: root.text(&format!("{base}/uevent"), ATTRIBUTE_LIMIT).unwrap_or_default(),
                arp_type: root.line(&format!("{base}/type")).and_then(|t| net::parse_arp_type(&t)),
            };
            let kind = net::classify(&facts);
            if kind == NicKind::Loopback {
                return None;
            }
            let (businfo, pci_address) =
                root.resolve(&format!("{base}/device")).map(|p| net::bus_of_device_path(&p)).unwrap_or_default();
            Some(Nic {
                kind,
                mac: root.line(&format!("{base}/address")).and_then(|t| net::parse_mac(&t)),
                permanent_mac: root.line(&format!("{base}/bonding_slave/perm_hwaddr")).and_then(|t| net::parse_mac(&t)),
                operstate: root.line(&format!("{base}/operstate")),
                carrier: root.line(&format!("{base}/carrier")).and_then(|t| disk::parse_flag(&t)),
                speed_mbps: root.line(&format!("{base}/speed")).and_then(|t| net::parse_speed(&t)),
                duplex: root.line(&format!("{base}/duplex")).and_then(|t| net::parse_duplex(&t)),
                driver: root.link_name(&format!("{base}/device/driver")),
                businfo,
                pci_address,
                master: root.link_name(&format!("{base}/master")),
                ipv4: ipv4.get(&name).copied(),
                name,
            })
        })
        .collect()
}

fn collect_pci(root: Root) -> Vec<PciDevice> {
    root.list("/sys/bus/pci/devices")
        .into_iter()
        .filter(|address| net::is_pci_address(address))
        .map(|address| {
            let base = format!("/sys/bus/pci/devices/{address}");
            PciDevice {
                vendor: root.line(&format!("{base}/vendor")).and_then(|t| pci::parse_id(&t, 4)),
                device: root.line(&format!("{base}/device")).and_then(|t| pci::parse_id(&t, 4)),
                class: root.line(&format!("{base}/class")).and_then(|t| pci::parse_id(&t, 6)),
                driver: root.link_name(&format!("{base}/driver")),
                address,
            }
        })
        .collect()
}
