//! The inventory as `hardware-detect` items: `[class, type, name, value]`.

use machinist_agent_protocol::report::{ITEM_ELEMENT_MAX_LENGTH, Quad};

use crate::inventory::{Inventory, NicKind, system};

/// The inventory as hardware-detect items, in a fixed order: system, firmware, cpu, memory,
/// disk, network, pci; disks, NICs and PCI functions by name. Every element is cut to
/// [`ITEM_ELEMENT_MAX_LENGTH`] bytes.
pub fn to_items(inventory: &Inventory) -> Vec<Quad> {
    let mut items = Items::default();
    system_items(&mut items, inventory);
    cpu_items(&mut items, inventory);
    memory_items(&mut items, inventory);
    disk_items(&mut items, inventory);
    network_items(&mut items, inventory);
    pci_items(&mut items, inventory);
    items.0
}

#[derive(Default)]
struct Items(Vec<Quad>);

impl Items {
    fn push(&mut self, class: &str, r#type: &str, name: &str, value: impl AsRef<str>) {
        self.0.push(Quad::new(cut(class), cut(r#type), cut(name), cut(value.as_ref())));
    }

    fn push_some(&mut self, class: &str, r#type: &str, name: &str, value: Option<impl AsRef<str>>) {
        if let Some(value) = value {
            self.push(class, r#type, name, value);
        }
    }
}

/// The longest prefix of `value` within the element limit, on a character boundary.
fn cut(value: &str) -> String {
    if value.len() <= ITEM_ELEMENT_MAX_LENGTH {
        return value.to_owned();
    }
    let mut end = ITEM_ELEMENT_MAX_LENGTH;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value[..end].to_owned()
}

fn system_items(items: &mut Items, inventory: &Inventory) {
    let dmi = &inventory.system.dmi;
    let uuid = system::dmidecode_uuid(dmi);
    items.push_some("system", "product", "name", system::lshw_product_name(dmi));
    items.push_some("system", "product", "vendor", dmi.sys_vendor.as_deref());
    items.push_some("system", "product", "version", dmi.product_version.as_deref());
    // Like hardware-detect, a known-fake serial gives way to the UUID, the board serial or the
    // first MAC, in that order of confidence.
    let serial = dmi.product_serial.as_deref().map(|serial| {
        if !system::is_placeholder_serial(serial) {
            return serial.to_owned();
        }
        uuid.clone()
            .or_else(|| dmi.board_serial.clone())
            .or_else(|| physical_nics(inventory).find_map(|n| n.hardware_mac()).map(|m| m.replace(':', "")))
            .unwrap_or_else(|| serial.to_owned())
    });
    items.push_some("system", "product", "serial", serial);
    items.push_some("system", "product", "uuid", uuid);
    items.push_some("system", "motherboard", "name", dmi.board_name.as_deref());
    items.push_some("system", "motherboard", "vendor", dmi.board_vendor.as_deref());
    items.push_some("system", "motherboard", "version", dmi.board_version.as_deref());
    items.push_some("system", "motherboard", "serial", dmi.board_serial.as_deref());
    items.push_some("firmware", "bios", "version", dmi.bios_version.as_deref());
    items.push_some("firmware", "bios", "date", dmi.bios_date.as_deref());
    items.push_some("firmware", "bios", "vendor", dmi.bios_vendor.as_deref());
    items.push("firmware", "boot", "mode", inventory.system.firmware.as_str());
}

fn cpu_items(items: &mut Items, inventory: &Inventory) {
    let cpu = &inventory.cpu;
    if cpu.threads == 0 {
        return;
    }
    items.push("cpu", "physical", "number", cpu.sockets.to_string());
    items.push_some("cpu", "physical", "smt", cpu.smt.as_deref());
    // lscpu describes one socket and hardware-detect repeats it for each: so do we.
    let flags = cpu.flags.join(" ");
    for socket in 0..cpu.sockets {
        let physical = format!("physical_{socket}");
        items.push_some("cpu", &physical, "vendor", cpu.vendor.as_deref());
        items.push_some("cpu", &physical, "product", cpu.model_name.as_deref());
        items.push("cpu", &physical, "cores", cpu.cores_per_socket().to_string());
        items.push("cpu", &physical, "threads", (cpu.cores_per_socket() * cpu.threads_per_core()).to_string());
        items.push_some("cpu", &physical, "family", cpu.family.as_deref());
        items.push_some("cpu", &physical, "model", cpu.model.as_deref());
        items.push_some("cpu", &physical, "stepping", cpu.stepping.as_deref());
        items.push_some("cpu", &physical, "architecture", inventory.system.arch.as_deref());
        items.push_some("cpu", &physical, "flags", (!flags.is_empty()).then_some(flags.as_str()));
        items.push("cpu", &physical, "threads_per_core", cpu.threads_per_core().to_string());
    }
    items.push("cpu", "logical", "number", cpu.threads.to_string());
}

fn memory_items(items: &mut Items, inventory: &Inventory) {
    let memory = &inventory.memory;
    items.push_some("memory", "total", "size", memory.total_bytes().map(|b| b.to_string()));
    // lshw names banks `bank:N` within their array, `bank:A:N` when there are several arrays;
    // a lone bank is plain `bank`, which hardware-detect skips (and does not count).
    let mut arrays: Vec<(u16, usize)> = Vec::new();
    for dimm in &memory.dimms {
        match arrays.iter_mut().find(|(handle, _)| *handle == dimm.array_handle) {
            Some((_, count)) => *count += 1,
            None => arrays.push((dimm.array_handle, 1)),
        }
    }
    let mut seen = vec![0usize; arrays.len()];
    let mut banks = 0usize;
    for dimm in &memory.dimms {
        let Some(array) = arrays.iter().position(|&(handle, _)| handle == dimm.array_handle) else { continue };
        let Some(index) = seen.get_mut(array).map(|seen| std::mem::replace(seen, *seen + 1)) else { continue };
        if arrays.get(array).is_some_and(|&(_, count)| count < 2) {
            continue;
        }
        banks += 1;
        let bank = if arrays.len() > 1 { format!("bank:{array}:{index}") } else { format!("bank:{index}") };
        items.push_some("memory", &bank, "size", dimm.size_bytes.map(|b| b.to_string()));
        items.push_some("memory", &bank, "clock", dimm.speed_mts.map(|s| (u64::from(s) * 1_000_000).to_string()));
        items.push_some("memory", &bank, "vendor", dimm.manufacturer.as_deref());
        items.push_some("memory", &bank, "product", dimm.part_number.as_deref());
        items.push_some("memory", &bank, "serial", dimm.serial.as_deref());
        items.push_some("memory", &bank, "slot", dimm.locator.as_deref());
    }
    if banks > 0 {
        items.push("memory", "banks", "count", banks.to_string());
    }
}

fn disk_items(items: &mut Items, inventory: &Inventory) {
    items.push("disk", "logical", "count", inventory.disks.len().to_string());
    for disk in &inventory.disks {
        let name = disk.name.as_str();
        items.push("disk", name, "size", disk.size_gb().to_string());
        items.push_some("disk", name, "vendor", disk.vendor.as_deref());
        items.push_some("disk", name, "model", disk.model.as_deref());
        if let Some((key, revision)) = &disk.revision {
            items.push("disk", name, key, revision);
        }
        items.push_some("disk", name, "optimal_io_size", disk.optimal_io_size.as_deref());
        items.push_some("disk", name, "physical_block_size", disk.physical_block_size.as_deref());
        items.push_some("disk", name, "rotational", disk.rotational.map(flag));
        items.push_some("disk", name, "nr_requests", disk.nr_requests.as_deref());
        items.push_some("disk", name, "scheduler", disk.scheduler.as_deref());
        if let Some(cache_type) = &disk.cache_type {
            let (write_cache, read_cache_disabled) = crate::inventory::disk::cache_flags(cache_type);
            items.push("disk", name, "Write Cache Enable", flag(write_cache));
            items.push("disk", name, "Read Cache Disable", flag(read_cache_disabled));
        }
        // Not from hardware-detect: exact size and identity without smartctl.
        items.push("disk", name, "size_bytes", disk.size_bytes().to_string());
        items.push_some("disk", name, "serial", disk.serial.as_deref());
        items.push_some("disk", name, "wwid", disk.wwid.as_deref());
        items.push_some("disk", name, "transport", disk.transport.map(|t| t.as_str()));
    }
}

fn flag(value: bool) -> &'static str {
    if value { "1" } else { "0" }
}

/// Interfaces backed by hardware: bonds, bridges, VLANs and software interfaces are views of
/// them, and lshw (so hardware-detect) leaves them out too.
fn physical_nics(inventory: &Inventory) -> impl Iterator<Item = &crate::inventory::Nic> {
    inventory.nics.iter().filter(|n| n.kind == NicKind::Physical)
}

fn network_items(items: &mut Items, inventory: &Inventory) {
    for nic in physical_nics(inventory) {
        let name = nic.name.as_str();
        items.push_some("network", name, "businfo", nic.businfo.as_deref());
        if let Some(ipv4) = nic.ipv4 {
            items.push("network", name, "ipv4", ipv4.address.to_string());
            items.push("network", name, "ipv4-netmask", ipv4.netmask().to_string());
            items.push("network", name, "ipv4-cidr", ipv4.prefix.to_string());
            items.push("network", name, "ipv4-network", ipv4.network().to_string());
        }
        items.push("network", name, "link", if nic.carrier == Some(true) { "yes" } else { "no" });
        items.push_some("network", name, "driver", nic.driver.as_deref());
        items.push_some("network", name, "duplex", nic.duplex.as_deref());
        if let Some(mbps) = nic.speed_mbps {
            items.push("network", name, "speed", machinist_agent_protocol::speed::format(mbps));
            items.push("network", name, "size", (u64::from(mbps) * 1_000_000).to_string());
        }
        items.push_some("network", name, "serial", nic.hardware_mac());
        // Not from hardware-detect: which bond or bridge the port belongs to.
        items.push_some("network", name, "master", nic.master.as_deref());
    }
}

fn pci_items(items: &mut Items, inventory: &Inventory) {
    for device in &inventory.pci {
        let address = device.address.as_str();
        items.push_some("pci", address, "vendor", device.vendor.as_deref());
        items.push_some("pci", address, "device", device.device.as_deref());
        items.push_some("pci", address, "class", device.class.as_deref());
        items.push_some("pci", address, "driver", device.driver.as_deref());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn long_values_are_cut_on_a_character_boundary() {
        let long = "é".repeat(ITEM_ELEMENT_MAX_LENGTH);
        let value = cut(&long);
        assert!(value.len() <= ITEM_ELEMENT_MAX_LENGTH);
        assert_eq!(value.len(), ITEM_ELEMENT_MAX_LENGTH);
        assert_eq!(cut("short"), "short");
    }

    #[test]
    fn empty_inventory_still_says_what_it_knows() {
        let items = to_items(&Inventory::default());
        let keys: Vec<[&str; 4]> = items.iter().map(Quad::elements).collect();
        assert_eq!(keys, vec![["firmware", "boot", "mode", "bios"], ["disk", "logical", "count", "0"]]);
    }
}
