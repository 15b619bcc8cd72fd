//! A new partition table for a disk a tree of files is unpacked onto (`tar` images): an MBR
//! or a GPT (protective MBR, header and 128 entries, their backup at the disk's end), with
//! syslinux's MBR code and the boot partition marked (MBR: active; GPT: the legacy BIOS
//! bootable attribute that syslinux's `gptmbr.bin` looks for). Pure: [`create`] returns the
//! bytes to write where.

use machinist_agent_protocol::install::{Filesystem, PartitionTable};

use crate::table::{SECTOR, Write, chs, header_crc, put_u32, put_u64};

/// GPT entries written (the usual 128 of 128 bytes: 32 sectors).
const ENTRIES: u64 = 128;
const ENTRY_SIZE: u64 = 128;
const ENTRIES_SECTORS: u64 = ENTRIES * ENTRY_SIZE / SECTOR;

/// One partition of the new table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fresh {
    /// First byte (a multiple of [`SECTOR`]).
    pub start: u64,
    /// Bytes (a multiple of [`SECTOR`]).
    pub len: u64,
    /// What it holds, which gives its type; an EFI system partition when `esp`.
    pub filesystem: Filesystem,
    /// Mounted at `/boot/efi`: an EFI system partition.
    pub esp: bool,
    /// The one the BIOS boot code boots.
    pub boot: bool,
    /// GPT unique partition GUID, as stored.
    pub guid: [u8; 16],
    /// GPT partition name.
    pub name: String,
}

/// Why no table could be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FreshError {
    /// A partition outside the disk or the table's reach, or overlapping the tables.
    #[error("partition {0} does not fit between the partition tables")]
    Outside(usize),
    /// More than four partitions on an MBR.
    #[error("an MBR holds four partitions")]
    TooMany,
}

/// A GUID as stored on disk from its canonical text (the first three fields little-endian).
pub fn guid(text: &str) -> [u8; 16] {
    let hex: Vec<u8> = text
        .bytes()
        .filter(u8::is_ascii_hexdigit)
        .map(|c| match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => c - b'A' + 10,
        })
        .collect();
    let mut bytes = [0u8; 16];
    for (i, pair) in hex.chunks(2).take(16).enumerate() {
        bytes[i] = pair[0] << 4 | pair.get(1).copied().unwrap_or(0);
    }
    bytes[..4].reverse();
    bytes[4..6].reverse();
    bytes[6..8].reverse();
    bytes
}

/// A stored GUID in canonical text (`0fc63daf-8483-4772-8e79-3d69d8477de4`).
pub fn guid_text(bytes: &[u8; 16]) -> String {
    let mut b = *bytes;
    b[..4].reverse();
    b[4..6].reverse();
    b[6..8].reverse();
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

fn gpt_type(partition: &Fresh) -> [u8; 16] {
    match (partition.filesystem, partition.esp) {
        (_, true) => guid("C12A7328-F81F-11D2-BA4B-00A0C93EC93B"),
        (Filesystem::Swap, _) => guid("0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"),
        (Filesystem::Vfat, _) => guid("EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"),
        _ => guid("0FC63DAF-8483-4772-8E79-3D69D8477DE4"),
    }
}

fn mbr_type(partition: &Fresh) -> u8 {
    match (partition.filesystem, partition.esp) {
        (_, true) => 0xef,
        (Filesystem::Swap, _) => 0x82,
        (Filesystem::Vfat, _) => 0x0c,
        _ => 0x83,
    }
}

/// The `PARTUUID` Linux gives partition `index` (from 0): the GPT partition GUID, or the MBR
/// disk signature and the partition number.
pub fn partuuid(table: PartitionTable, partitions: &[Fresh], index: usize, disk_guid: &[u8; 16]) -> String {
    match table {
        PartitionTable::Gpt => partitions.get(index).map(|p| guid_text(&p.guid)).unwrap_or_default(),
        PartitionTable::Msdos => format!("{:08x}-{:02x}", signature(disk_guid), index + 1),
    }
}

fn signature(disk_guid: &[u8; 16]) -> u32 {
    u32::from_le_bytes([disk_guid[0], disk_guid[1], disk_guid[2], disk_guid[3]])
}

/// The tables for `partitions` on a disk of `disk_size` bytes: the MBR (with `boot_code`, up to
/// 440 bytes) and, for GPT, the primary header and entries and their backup.
pub fn create(
    table: PartitionTable,
    partitions: &[Fresh],
    disk_size: u64,
    disk_guid: [u8; 16],
    boot_code: &[u8],
) -> Result<Vec<Write>, FreshError> {
    let sectors = disk_size / SECTOR;
    let mut mbr = vec![0u8; SECTOR as usize];
    let code = boot_code.len().min(440);
    mbr[..code].copy_from_slice(&boot_code[..code]);
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    let entry = |mbr: &mut [u8], slot: usize, status: u8, kind: u8, first: u64, count: u64| {
        let e = &mut mbr[446 + slot * 16..446 + (slot + 1) * 16];
        e[0] = status;
        e[1..4].copy_from_slice(&chs(first));
        e[4] = kind;
        e[5..8].copy_from_slice(&chs(first + count.saturating_sub(1)));
        put_u32(e, 8, u32::try_from(first).unwrap_or(u32::MAX));
        put_u32(e, 12, u32::try_from(count).unwrap_or(u32::MAX));
    };
    match table {
        PartitionTable::Msdos => {
            if partitions.len() > 4 {
                return Err(FreshError::TooMany);
            }
            put_u32(&mut mbr, 440, signature(&disk_guid));
            for (i, p) in partitions.iter().enumerate() {
                let (first, count) = (p.start / SECTOR, p.len / SECTOR);
                if first < 1 || first + count > sectors.min(u64::from(u32::MAX)) {
                    return Err(FreshError::Outside(i + 1));
                }
                entry(&mut mbr, i, if p.boot { 0x80 } else { 0 }, mbr_type(p), first, count);
            }
            Ok(vec![Write { offset: 0, bytes: mbr }])
        }
        PartitionTable::Gpt => {
            let last = sectors.saturating_sub(1);
            let (first_usable, last_usable) = (2 + ENTRIES_SECTORS, last.saturating_sub(ENTRIES_SECTORS + 1));
            entry(&mut mbr, 0, 0, 0xee, 1, last.min(u64::from(u32::MAX)));
            let mut entries = vec![0u8; (ENTRIES * ENTRY_SIZE) as usize];
            for (i, p) in partitions.iter().enumerate() {
                let (first, end) = (p.start / SECTOR, (p.start + p.len) / SECTOR);
                if i >= ENTRIES as usize || first < first_usable || end == 0 || end - 1 > last_usable {
                    return Err(FreshError::Outside(i + 1));
                }
                let e = &mut entries[i * ENTRY_SIZE as usize..(i + 1) * ENTRY_SIZE as usize];
                e[..16].copy_from_slice(&gpt_type(p));
                e[16..32].copy_from_slice(&p.guid);
                put_u64(e, 32, first);
                put_u64(e, 40, end - 1);
                // Bit 2: legacy BIOS bootable, what gptmbr.bin boots.
                put_u64(e, 48, if p.boot { 1 << 2 } else { 0 });
                for (j, unit) in p.name.encode_utf16().take(36).enumerate() {
                    e[56 + 2 * j..58 + 2 * j].copy_from_slice(&unit.to_le_bytes());
                }
            }
            let mut header = vec![0u8; SECTOR as usize];
            header[..8].copy_from_slice(b"EFI PART");
            put_u32(&mut header, 8, 0x0001_0000);
            put_u32(&mut header, 12, 92);
            put_u64(&mut header, 24, 1);
            put_u64(&mut header, 32, last);
            put_u64(&mut header, 40, first_usable);
            put_u64(&mut header, 48, last_usable);
            header[56..72].copy_from_slice(&disk_guid);
            put_u64(&mut header, 72, 2);
            put_u32(&mut header, 80, ENTRIES as u32);
            put_u32(&mut header, 84, ENTRY_SIZE as u32);
            put_u32(&mut header, 88, crc32fast::hash(&entries));
            let mut backup = header.clone();
            let crc = header_crc(&header, 92);
            put_u32(&mut header, 16, crc);
            put_u64(&mut backup, 24, last);
            put_u64(&mut backup, 32, 1);
            put_u64(&mut backup, 72, last - ENTRIES_SECTORS);
            let crc = header_crc(&backup, 92);
            put_u32(&mut backup, 16, crc);
            Ok(vec![
                Write { offset: (last - ENTRIES_SECTORS) * SECTOR, bytes: entries.clone() },
                Write { offset: last * SECTOR, bytes: backup },
                Write { offset: 0, bytes: mbr },
                Write { offset: SECTOR, bytes: header },
                Write { offset: 2 * SECTOR, bytes: entries },
            ])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_round_trip_in_mixed_endianness() {
        let linux = guid("0FC63DAF-8483-4772-8E79-3D69D8477DE4");
        assert_eq!(linux[..4], [0xaf, 0x3d, 0xc6, 0x0f]);
        assert_eq!(guid_text(&linux), "0fc63daf-8483-4772-8e79-3d69d8477de4");
        assert_eq!(guid("EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"), crate::table::BASIC_DATA);
    }
}
