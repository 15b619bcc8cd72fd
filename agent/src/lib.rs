//! machinist's RAM-disk agent (`machinist-agent`): hardware inventory, report, install.
//!
//! The binary (the kernel command line → [`network`] → inventory → [`sidecar`] with
//! [`backoff`], its log kept by [`logbuf`]) runs in the discovery RAM disk. What it reads from
//! the command line and sends to the boot services is the contract of
//! [`machinist_agent_protocol`]; the boot services digest its items into the typed summary
//! (`machinist_agent_protocol::summary`).
//!
//! This library takes the inventory. [`Inventory::collect`] reads sysfs and procfs under a
//! root directory (`/` on a machine, a fixture tree in tests) and feeds pure parsers, one
//! module per concept under [`inventory`]; [`to_items`] turns the result into eDeploy
//! `hardware-detect` items `[class, type, name, value]`, spelled as hardware-detect spells them
//! where both report the same fact.
//!
//! ```no_run
//! let inventory = machinist_agent::Inventory::collect(std::path::Path::new("/"))?;
//! let items = machinist_agent::to_items(&inventory);
//! # Ok::<(), machinist_agent::inventory::Error>(())
//! ```
//!
//! # Items
//!
//! `=` means hardware-detect (0.33, with lshw B.02.19) emits the same key with the same value
//! on the same machine; `≈` the same key, a value computed the same way but from another source
//! (checked where this repository's test machine allows); `+` machinist only. The differences
//! are in `docs/hardware-items.md` and in `tests/hardware_detect.rs`.
//!
//! | class | type | name | value | source | |
//! |---|---|---|---|---|---|
//! | system | product | name | `product_name`, with ` (product_sku)` like lshw | DMI | ≈ |
//! | system | product | vendor / version | `sys_vendor` / `product_version` | DMI | ≈ |
//! | system | product | serial | `product_serial`; `0123456789`/`0000000000` replaced by uuid, board serial, first MAC | DMI | ≈ |
//! | system | product | uuid | `product_uuid`, upper case like dmidecode | DMI | ≈ |
//! | system | motherboard | name / vendor / version / serial | `board_*` | DMI | ≈ |
//! | firmware | bios | version / date / vendor | `bios_*` | DMI | ≈ |
//! | firmware | boot | mode | `uefi` when `/sys/firmware/efi` exists, else `bios` | sysfs | + |
//! | cpu | physical | number | distinct `physical id`s | cpuinfo | = |
//! | cpu | physical | smt | `/sys/devices/system/cpu/smt/control` | sysfs | = |
//! | cpu | physical_N | vendor / product / family / model / stepping | `vendor_id` / `model name` / … | cpuinfo | = |
//! | cpu | physical_N | cores / threads / threads_per_core | per socket, like lscpu | cpuinfo | = |
//! | cpu | physical_N | architecture | `/proc/sys/kernel/arch` | procfs | = |
//! | cpu | physical_N | flags | `flags` (`Features` on ARM) | cpuinfo | = |
//! | cpu | logical | number | `processor` entries (online CPUs) | cpuinfo | = |
//! | memory | total | size | bytes: DIMM sum, else online memory blocks if above MemTotal, else MemTotal (lshw's rule) | SMBIOS, sysfs, meminfo | = |
//! | memory | bank:N | size / clock / vendor / product / serial / slot | type 17: bytes, Hz, maker, part number, serial, locator | SMBIOS | ≈ |
//! | memory | banks | count | type 17 entries | SMBIOS | ≈ |
//! | disk | logical | count | reported disks | sysfs | = |
//! | disk | NAME | size | GB (10⁹), rounded down | sysfs | = |
//! | disk | NAME | vendor / model / rev (or revision) | `device/…`, else `device/device/…` | sysfs | = |
//! | disk | NAME | optimal_io_size / physical_block_size / rotational / nr_requests | `queue/…` | sysfs | = |
//! | disk | NAME | scheduler | the bracketed `queue/scheduler` | sysfs | = |
//! | disk | NAME | Write Cache Enable / Read Cache Disable | SCSI `cache_type` | sysfs | = |
//! | disk | NAME | size_bytes / serial / wwid / transport | exact size; `serial`, `device/serial`, VPD 0x80; `wwid`; nvme, sata, scsi, virtio, usb… | sysfs | + |
//! | network | NAME | serial | MAC, lower case (a bond port's permanent MAC) | sysfs | = |
//! | network | NAME | link | `yes` when `carrier` is 1, else `no` | sysfs | = |
//! | network | NAME | driver | `device/driver` link | sysfs | = |
//! | network | NAME | businfo | `pci@0000:…` or `virtio@N` | sysfs | = |
//! | network | NAME | speed / size / duplex | `1Gbit/s` like lshw / bit/s / `full`, when known | sysfs | ≈ |
//! | network | NAME | ipv4 / ipv4-netmask / ipv4-cidr / ipv4-network | first local address and its on-link route | fib_trie, route | = |
//! | network | NAME | master | bond or bridge the port belongs to | sysfs | + |
//! | pci | ADDRESS | vendor / device / class / driver | ids as sysfs prints them (`0x8086`) | sysfs | + |
//!
//! Disks are `sd*`, `hd*`, `vd*`, `nvme*` of non-zero size, as hardware-detect chooses them
//! (no loop, ram, zram, dm, md, mmcblk; hidden NVMe multipath paths neither). Network items are
//! for interfaces backed by a device: bonds, bridges, VLANs and software interfaces are in
//! [`Inventory::nics`] but not in the items, as lshw leaves them out. Every element is cut to
//! [`ITEM_ELEMENT_MAX_LENGTH`](machinist_agent_protocol::report::ITEM_ELEMENT_MAX_LENGTH) bytes.

pub mod backoff;
pub mod fresh_table;
pub mod install;
pub mod inventory;
mod items;
pub mod kexec;
pub mod logbuf;
pub mod network;
pub mod random;
pub mod rootfs;
pub mod seed;
pub mod sidecar;
pub mod table;

pub use inventory::Inventory;
pub use items::to_items;
