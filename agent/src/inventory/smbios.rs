//! The raw SMBIOS table (`/sys/firmware/dmi/tables/DMI`): memory devices (type 17).
//!
//! The table comes from firmware, so every offset is checked: a truncated or lying entry ends
//! the walk instead of reading out of bounds.

/// One SMBIOS type 17 entry: a memory slot, populated or not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryDevice {
    /// Handle of the physical memory array (type 16) the slot belongs to.
    pub array_handle: u16,
    /// Size in bytes; `None` for an empty slot or an unknown size.
    pub size_bytes: Option<u64>,
    /// Speed in MT/s (what lshw and dmidecode call MHz).
    pub speed_mts: Option<u32>,
    /// Device locator: the slot's silkscreen name (`DIMM_A1`).
    pub locator: Option<String>,
    /// Bank locator (`NODE 1`, `BANK 0`).
    pub bank_locator: Option<String>,
    /// Manufacturer.
    pub manufacturer: Option<String>,
    /// Serial number.
    pub serial: Option<String>,
    /// Part number.
    pub part_number: Option<String>,
}

const MEMORY_DEVICE: u8 = 17;
const END_OF_TABLE: u8 = 127;
const HEADER_LENGTH: usize = 4;

/// The memory devices of an SMBIOS structure table, in table order.
pub fn parse_memory_devices(table: &[u8]) -> Vec<MemoryDevice> {
    structures(table)
        .filter(|s| s.kind == MEMORY_DEVICE)
        .map(|s| MemoryDevice {
            array_handle: s.word(0x04).unwrap_or_default(),
            size_bytes: size(&s),
            speed_mts: speed(&s),
            locator: s.string(0x10),
            bank_locator: s.string(0x11),
            manufacturer: s.string(0x17),
            serial: s.string(0x18),
            part_number: s.string(0x1A),
        })
        .collect()
}

fn size(s: &Structure) -> Option<u64> {
    const MIB: u64 = 1024 * 1024;
    match s.word(0x0C)? {
        0 | 0xFFFF => None,
        // Too big for the short field: the size is in MiB in the extended field (SMBIOS 2.7).
        0x7FFF => Some(u64::from(s.dword(0x1C)? & 0x7FFF_FFFF) * MIB).filter(|&b| b > 0),
        kib if kib & 0x8000 != 0 => Some(u64::from(kib & 0x7FFF) * 1024),
        mib => Some(u64::from(mib) * MIB),
    }
}

fn speed(s: &Structure) -> Option<u32> {
    match s.word(0x15)? {
        0 => None,
        // Faster than 65534 MT/s: the extended field (SMBIOS 3.3).
        0xFFFF => s.dword(0x54).filter(|&v| v > 0),
        mts => Some(u32::from(mts)),
    }
}

/// One structure: its formatted area (header included) and its strings.
struct Structure<'a> {
    kind: u8,
    formatted: &'a [u8],
    strings: Vec<&'a [u8]>,
}

impl Structure<'_> {
    fn byte(&self, offset: usize) -> Option<u8> {
        self.formatted.get(offset).copied()
    }

    fn word(&self, offset: usize) -> Option<u16> {
        let bytes = self.formatted.get(offset..offset.checked_add(2)?)?;
        Some(u16::from_le_bytes([bytes[0], bytes[1]]))
    }

    fn dword(&self, offset: usize) -> Option<u32> {
        let bytes = self.formatted.get(offset..offset.checked_add(4)?)?;
        Some(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// The string a byte at `offset` points to (1-based; 0 means none), trimmed.
    fn string(&self, offset: usize) -> Option<String> {
        let index = usize::from(self.byte(offset)?).checked_sub(1)?;
        let raw = self.strings.get(index)?;
        let text = String::from_utf8_lossy(raw);
        let text = text.trim();
        (!text.is_empty()).then(|| text.to_owned())
    }
}

fn structures(table: &[u8]) -> impl Iterator<Item = Structure<'_>> {
    let mut rest = table;
    std::iter::from_fn(move || {
        let kind = *rest.first()?;
        let length = usize::from(*rest.get(1)?);
        if length < HEADER_LENGTH || length > rest.len() {
            rest = &[];
            return None;
        }
        let (formatted, tail) = rest.split_at(length);
        // The string set ends with two NULs (just two NULs when there are no strings).
        let Some(end) = tail.windows(2).position(|w| w == [0, 0]) else {
            rest = &[];
            return None;
        };
        let strings = if end == 0 { Vec::new() } else { tail[..end].split(|&b| b == 0).collect() };
        rest = &tail[end + 2..];
        if kind == END_OF_TABLE {
            rest = &[];
        }
        Some(Structure { kind, formatted, strings })
    })
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// An SMBIOS 3.x type 17 entry (length 0x28) with strings locator, bank, maker, serial, part.
    pub(crate) fn type17(handle: u16, size_field: u16, extended_mib: u32, speed: u16, strings: [&str; 5]) -> Vec<u8> {
        let mut s = vec![0u8; 0x28];
        s[0] = 17;
        s[1] = 0x28;
        s[2..4].copy_from_slice(&handle.to_le_bytes());
        s[4..6].copy_from_slice(&0x1000u16.to_le_bytes());
        s[0x0C..0x0E].copy_from_slice(&size_field.to_le_bytes());
        s[0x15..0x17].copy_from_slice(&speed.to_le_bytes());
        s[0x1C..0x20].copy_from_slice(&extended_mib.to_le_bytes());
        // SMBIOS has no empty strings: an absent one is index 0.
        let mut text = Vec::new();
        let mut index = 0;
        for (offset, string) in [0x10, 0x11, 0x17, 0x18, 0x1A].into_iter().zip(strings) {
            if !string.is_empty() {
                index += 1;
                s[offset] = index;
                text.extend_from_slice(string.as_bytes());
                text.push(0);
            }
        }
        if text.is_empty() {
            text.push(0);
        }
        text.push(0);
        s.extend(text);
        s
    }

    pub(crate) fn end_of_table() -> Vec<u8> {
        vec![127, 4, 0xFF, 0xFF, 0, 0]
    }

    #[test]
    fn reads_populated_and_empty_slots() {
        let mut table = vec![0, 0x18, 0, 0];
        table.resize(0x18, 0);
        table.extend_from_slice(b"SeaBIOS\0\0");
        table.extend(type17(
            0x1100,
            16384,
            0,
            2666,
            ["DIMM_A1", "NODE 1", "Samsung", "1234ABCD", "M393A2K43BB1-CTD  "],
        ));
        table.extend(type17(0x1101, 0, 0, 0, ["DIMM_A2", "NODE 1", "NO DIMM", "NO DIMM", "NO DIMM"]));
        table.extend(type17(0x1102, 0x7FFF, 65536, 3200, ["DIMM_B1", "", "Micron", "", ""]));
        table.extend(type17(0x1103, 0x8000 | 512, 0, 0xFFFF, ["DIMM_B2", "", "", "", ""]));
        table.extend(end_of_table());
        table.extend(type17(0x1104, 1024, 0, 0, ["after end", "", "", "", ""]));
        let dimms = parse_memory_devices(&table);
        assert_eq!(dimms.len(), 4);
        assert_eq!(dimms[0].size_bytes, Some(16 << 30));
        assert_eq!(dimms[0].speed_mts, Some(2666));
        assert_eq!(dimms[0].locator.as_deref(), Some("DIMM_A1"));
        assert_eq!(dimms[0].part_number.as_deref(), Some("M393A2K43BB1-CTD"));
        assert_eq!(dimms[1].size_bytes, None);
        assert_eq!(dimms[2].size_bytes, Some(64 << 30));
        assert_eq!(dimms[2].serial, None);
        assert_eq!(dimms[3].size_bytes, Some(512 * 1024));
        assert_eq!(dimms[3].speed_mts, None, "0xFFFF with no extended field");
    }

    #[test]
    fn truncated_and_lying_tables_stop_the_walk() {
        let full = type17(1, 1024, 0, 0, ["A", "B", "C", "D", "E"]);
        for cut in 0..full.len() {
            let dimms = parse_memory_devices(&full[..cut]);
            assert!(dimms.is_empty(), "cut at {cut}");
        }
        // A length below the header, and one beyond the table.
        assert!(parse_memory_devices(&[17, 2, 0, 0, 0, 0]).is_empty());
        assert!(parse_memory_devices(&[17, 200, 0, 0, 0, 0]).is_empty());
        // A short (SMBIOS 2.0) entry: fields past its length are absent, not garbage.
        let mut short = full[..0x15].to_vec();
        short[1] = 0x15;
        short.extend_from_slice(b"A\0B\0\0");
        let dimms = parse_memory_devices(&short);
        assert_eq!(dimms.len(), 1);
        assert_eq!(dimms[0].speed_mts, None);
        assert_eq!(dimms[0].manufacturer, None);
        assert_eq!(dimms[0].locator.as_deref(), Some("A"));
    }

    #[test]
    fn string_indexes_out_of_range_are_absent() {
        let mut entry = type17(1, 1024, 0, 0, ["A", "", "", "", ""]);
        entry[0x17] = 9;
        let dimms = parse_memory_devices(&entry);
        assert_eq!(dimms[0].manufacturer, None);
    }
}
