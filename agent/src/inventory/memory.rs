//! Memory: the kernel's view (`/proc/meminfo`, memory blocks) and the DIMMs (SMBIOS).

use super::smbios::MemoryDevice;

/// The memory part of the inventory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memory {
    /// `MemTotal` of `/proc/meminfo`, in bytes: what the kernel manages, below installed.
    pub usable_bytes: Option<u64>,
    /// Online memory blocks × block size (`/sys/devices/system/memory`), in bytes: installed
    /// memory as the hotplug code sees it, what lshw reports on machines without DMI.
    pub hotplug_bytes: Option<u64>,
    /// SMBIOS type 17 entries, populated or not, in table order.
    pub dimms: Vec<MemoryDevice>,
}

impl Memory {
    /// Installed memory as lshw (so hardware-detect) computes it: the sum of the DIMMs when
    /// SMBIOS lists any, else the online memory blocks when they exceed `MemTotal`, else
    /// `MemTotal`.
    pub fn total_bytes(&self) -> Option<u64> {
        let dimms: u64 = self.dimms.iter().filter_map(|d| d.size_bytes).fold(0, u64::saturating_add);
        if dimms > 0 {
            return Some(dimms);
        }
        match (self.hotplug_bytes, self.usable_bytes) {
            (Some(hotplug), Some(usable)) if hotplug > usable => Some(hotplug),
            (hotplug, None) => hotplug,
            (_, usable) => usable,
        }
    }
}

/// `MemTotal` from `/proc/meminfo`, in bytes.
pub fn parse_meminfo_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut words = line["MemTotal:".len()..].split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    let unit = match words.next() {
        Some("kB") => 1024,
        None => 1,
        Some(_) => return None,
    };
    value.checked_mul(unit)
}

/// `/sys/devices/system/memory/block_size_bytes`: hexadecimal without `0x`.
pub fn parse_block_size(text: &str) -> Option<u64> {
    let text = text.trim();
    u64::from_str_radix(text.strip_prefix("0x").unwrap_or(text), 16).ok().filter(|&size| size > 0)
}

/// Installed bytes from the block size and the `state` of each `memoryN` block.
pub fn hotplug_bytes<'a>(block_size: u64, states: impl IntoIterator<Item = &'a str>) -> Option<u64> {
    let online = states.into_iter().filter(|s| s.trim() == "online").count();
    let online = u64::try_from(online).ok()?;
    (online > 0).then(|| block_size.saturating_mul(online))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn meminfo_total_is_in_bytes() {
        assert_eq!(parse_meminfo_total("MemTotal:       24684084 kB\nMemFree: 1 kB\n"), Some(24684084 * 1024));
        assert_eq!(parse_meminfo_total("MemFree: 1 kB\n"), None);
        assert_eq!(parse_meminfo_total("MemTotal: lots kB\n"), None);
        assert_eq!(parse_meminfo_total("MemTotal: 1 MB\n"), None);
        assert_eq!(parse_meminfo_total("MemTotal: 99999999999999999 kB\n"), None);
    }

    #[test]
    fn hotplug_counts_online_blocks() {
        assert_eq!(parse_block_size("8000000\n"), Some(0x800_0000));
        assert_eq!(parse_block_size("zz"), None);
        assert_eq!(hotplug_bytes(0x800_0000, ["online\n", "offline\n", "online"]), Some(2 * 0x800_0000));
        assert_eq!(hotplug_bytes(0x800_0000, ["offline"]), None);
    }

    #[test]
    fn total_prefers_dimms_then_hotplug_then_meminfo() {
        let mut memory = Memory { usable_bytes: Some(100), hotplug_bytes: Some(128), dimms: Vec::new() };
        assert_eq!(memory.total_bytes(), Some(128));
        memory.hotplug_bytes = Some(64);
        assert_eq!(memory.total_bytes(), Some(100));
        memory.dimms = vec![
            MemoryDevice { size_bytes: Some(1 << 30), ..MemoryDevice::default() },
            MemoryDevice::default(),
            MemoryDevice { size_bytes: Some(1 << 30), ..MemoryDevice::default() },
        ];
        assert_eq!(memory.total_bytes(), Some(2 << 30));
        assert_eq!(Memory::default().total_bytes(), None);
    }
}
