//! Changing the partition table of a disk an image was just written to: adding a `CIDATA`
//! partition at the end of the disk, growing the image's last partition. Pure: [`edit`] takes
//! the disk's first bytes and its size and returns the bytes to write where; [`crate::seed`]
//! reads and writes the disk.
//!
//! Sectors are 512 bytes (the images' and the agent's unit). New partitions and the end of a
//! grown one are placed on 1 MiB boundaries ([`ALIGN`]), except that a partition grown to the
//! disk's end (no `CIDATA` added) ends at the last usable sector.
//!
//! - **MBR**: the new partition takes a free primary slot, type `0x0e` (FAT16, LBA), at the end
//!   of the disk or of the first 2 TiB (what 32-bit sector numbers reach). An extended
//!   partition is never grown (its logical partitions are not read).
//! - **GPT**: the primary header and entries are checked (signature, CRC32 of both, entry
//!   size); the backup GPT, which an image carries at the image's end, is rewritten at the
//!   disk's end (entries, then header in the last sector), the old backup sectors zeroed, the
//!   primary's last usable sector and backup address updated, the CRCs recomputed and the
//!   protective MBR's `0xee` entry stretched to the new end when it covered the old one. The
//!   new entry is a Microsoft basic data partition named `CIDATA` with the partition GUID the
//!   caller gives (random in [`crate::seed`]).

/// Bytes per sector.
pub const SECTOR: u64 = 512;
/// Alignment of new partitions, in sectors (1 MiB).
pub const ALIGN: u64 = 2048;
/// How much of the disk's start [`edit`] wants: the MBR, and the GPT header and entries.
pub const HEAD: u64 = 1 << 20;
/// The GPT type GUID of a Microsoft basic data partition, `EBD0A0A2-B9E5-4433-87C0-68B6B72699C7`,
/// as stored (the first three fields little-endian).
pub const BASIC_DATA: [u8; 16] =
    [0xa2, 0xa0, 0xd0, 0xeb, 0xe5, 0xb9, 0x33, 0x44, 0x87, 0xc0, 0x68, 0xb6, 0xb7, 0x26, 0x99, 0xc7];
/// The MBR type of the new partition: FAT16, LBA-addressed.
pub const MBR_FAT16_LBA: u8 = 0x0e;
/// MBR types of extended partitions (containers of logical partitions).
const EXTENDED: [u8; 3] = [0x05, 0x0f, 0x85];
/// Most bytes of GPT entries accepted (128 entries of 128 bytes are 16 KiB).
const MAX_ENTRIES_BYTES: u64 = HEAD - 2 * SECTOR;

/// Why a table was left as it was.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// No MBR signature, or an MBR without partitions or with impossible entries.
    #[error("the disk has no usable partition table ({0})")]
    NoTable(&'static str),
    /// The GPT header or entries do not check out.
    #[error("the GPT is corrupt: {0}")]
    CorruptGpt(String),
    /// The table describes partitions or a backup GPT beyond the disk's end.
    #[error("the partition table reaches sector {table}, beyond the disk's last sector {disk}")]
    BeyondDisk {
        /// The last sector the table names.
        table: u64,
        /// The disk's last sector.
        disk: u64,
    },
    /// Every MBR primary slot is taken.
    #[error("all four MBR primary partition slots are used")]
    MbrFull,
    /// Every GPT entry is taken.
    #[error("all {0} GPT partition entries are used")]
    GptFull(u64),
    /// The new partition does not fit after the last one.
    #[error(
        "no room for a {need}-byte partition: the last partition ends at byte {end}, the usable disk at byte {limit}"
    )]
    NoRoom {
        /// Bytes wanted.
        need: u64,
        /// End (exclusive) of the last partition, in bytes.
        end: u64,
        /// End (exclusive) of the usable, aligned disk, in bytes.
        limit: u64,
    },
    /// The last partition is an MBR extended partition.
    #[error("the last partition is an extended partition (type {0:#04x}), which is not grown")]
    Extended(u8),
    /// There is nothing to grow.
    #[error("the table has no partition to grow")]
    NothingToGrow,
}

/// What to change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// Add a partition at the end of the disk.
    pub add: Option<NewPartition>,
    /// Grow the partition that ends last up to the added one, or to the last usable sector.
    pub grow: bool,
}

/// The partition to add.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewPartition {
    /// Its size in sectors (a multiple of [`ALIGN`] keeps its end aligned too).
    pub sectors: u64,
    /// Its GPT unique partition GUID, as stored; unused on an MBR disk.
    pub guid: [u8; 16],
}

/// Bytes to put at a byte offset of the disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    /// First byte.
    pub offset: u64,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// A grown partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grown {
    /// Its number (MBR slot 1–4, GPT entry index + 1), as `sgdisk`, `sfdisk` and Linux count.
    pub number: u64,
    /// Its first byte.
    pub start: u64,
    /// Its bytes before.
    pub from: u64,
    /// Its bytes now (equal to `from` when it already reached the end).
    pub to: u64,
}

/// The changes [`edit`] computed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Edit {
    /// Zeros over the old backup GPT, outside every partition: to write first.
    pub scrub: Vec<Write>,
    /// The tables: to write once the new partition has its file system, backup GPT before
    /// primary.
    pub table: Vec<Write>,
    /// The added partition: first byte and bytes.
    pub added: Option<crate::seed::Span>,
    /// The grown partition.
    pub grown: Option<Grown>,
}

/// Computes the table changes `request` asks for on a disk of `disk_size` bytes whose first
/// bytes are `head` (at least [`HEAD`] bytes, or the whole disk when it is smaller).
pub fn edit(head: &[u8], disk_size: u64, request: &Request) -> Result<Edit, TableError> {
    let mbr = head.get(..SECTOR as usize).ok_or(TableError::NoTable("shorter than a sector"))?;
    if mbr[510..512] != [0x55, 0xaa] {
        return Err(TableError::NoTable("no MBR signature"));
    }
    let disk_sectors = disk_size / SECTOR;
    let entries = mbr_entries(mbr);
    if entries.iter().any(|e| e.kind == 0xee) {
        gpt_edit(head, disk_sectors, request)
    } else {
        mbr_edit(mbr, &entries, disk_sectors, request)
    }
}

#[derive(Clone, Copy, Debug)]
struct MbrEntry {
    status: u8,
    kind: u8,
    start: u64,
    count: u64,
}

impl MbrEntry {
    fn used(&self) -> bool {
        self.kind != 0 && self.count > 0
    }
}

fn mbr_entries(mbr: &[u8]) -> [MbrEntry; 4] {
    std::array::from_fn(|i| {
        let e = &mbr[446 + i * 16..446 + (i + 1) * 16];
        MbrEntry {
            status: e[0],
            kind: e[4],
            start: u64::from(u32::from_le_bytes([e[8], e[9], e[10], e[11]])),
            count: u64::from(u32::from_le_bytes([e[12], e[13], e[14], e[15]])),
        }
    })
}

fn align_down(sector: u64) -> u64 {
    sector - sector % ALIGN
}

/// CHS of an LBA sector in the usual 255 heads × 63 sectors geometry; `fe ff ff` past it.
pub(crate) fn chs(lba: u64) -> [u8; 3] {
    let (heads, sectors) = (255, 63);
    let cylinder = lba / (heads * sectors);
    if cylinder > 1023 {
        return [0xfe, 0xff, 0xff];
    }
    let head = (lba / sectors) % heads;
    let sector = lba % sectors + 1;
    // Lossless: head < 255, sector <= 63, cylinder <= 1023.
    [head as u8, (sector as u8) | (((cylinder >> 8) as u8) << 6), (cylinder & 0xff) as u8]
}

fn mbr_edit(mbr: &[u8], entries: &[MbrEntry; 4], disk_sectors: u64, request: &Request) -> Result<Edit, TableError> {
    if entries.iter().any(|e| e.status != 0 && e.status != 0x80) {
        return Err(TableError::NoTable("an MBR entry has an invalid status byte"));
    }
    let used: Vec<(usize, &MbrEntry)> = entries.iter().enumerate().filter(|(_, e)| e.used()).collect();
    if used.is_empty() {
        return Err(TableError::NoTable("the MBR has no partitions"));
    }
    if used.iter().any(|(_, e)| e.start == 0) {
        return Err(TableError::NoTable("an MBR partition starts at sector 0"));
    }
    let (last_index, last) = used
        .iter()
        .copied()
        .max_by_key(|(_, e)| e.start + e.count)
        .ok_or(TableError::NoTable("the MBR has no partitions"))?;
    let end = last.start + last.count;
    if end > disk_sectors {
        return Err(TableError::BeyondDisk { table: end - 1, disk: disk_sectors.saturating_sub(1) });
    }
    // 32-bit sector numbers: nothing ends past 2 TiB.
    let limit = disk_sectors.min(1 << 32);
    let mut sector = mbr.to_vec();
    let mut edit = Edit::default();
    let mut grow_to = limit;
    if let Some(new) = request.add {
        let slot = entries.iter().position(|e| e.kind == 0).ok_or(TableError::MbrFull)?;
        let stop = align_down(limit);
        let start = stop
            .checked_sub(new.sectors)
            .filter(|start| *start >= end && *start >= ALIGN)
            .ok_or(TableError::NoRoom { need: new.sectors * SECTOR, end: end * SECTOR, limit: stop * SECTOR })?;
        let e = &mut sector[446 + slot * 16..446 + (slot + 1) * 16];
        e[0] = 0;
        e[1..4].copy_from_slice(&chs(start));
        e[4] = MBR_FAT16_LBA;
        e[5..8].copy_from_slice(&chs(stop - 1));
        // Both below 2^32: stop <= limit <= 2^32.
        e[8..12].copy_from_slice(&u32::try_from(start).map_err(|_| TableError::NoTable("start"))?.to_le_bytes());
        e[12..16].copy_from_slice(&u32::try_from(new.sectors).map_err(|_| TableError::NoTable("size"))?.to_le_bytes());
        edit.added = Some(crate::seed::Span { start: start * SECTOR, len: new.sectors * SECTOR });
        grow_to = start;
    }
    if request.grow {
        if EXTENDED.contains(&last.kind) {
            return Err(TableError::Extended(last.kind));
        }
        let count = grow_to.max(end) - last.start;
        let e = &mut sector[446 + last_index * 16..446 + (last_index + 1) * 16];
        e[5..8].copy_from_slice(&chs(last.start + count - 1));
        let count32 = u32::try_from(count).map_err(|_| TableError::NoTable("size"))?;
        e[12..16].copy_from_slice(&count32.to_le_bytes());
        edit.grown = Some(Grown {
            number: last_index as u64 + 1,
            start: last.start * SECTOR,
            from: last.count * SECTOR,
            to: count * SECTOR,
        });
    }
    edit.table.push(Write { offset: 0, bytes: sector });
    Ok(edit)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    bytes.get(at..at + 4).map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    bytes.get(at..at + 8).map_or(0, |s| u64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]))
}

pub(crate) fn put_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

pub(crate) fn put_u64(bytes: &mut [u8], at: usize, value: u64) {
    bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

/// The CRC32 of a GPT header: over its `size` bytes, its own CRC field taken as zero.
pub(crate) fn header_crc(header: &[u8], size: usize) -> u32 {
    let mut copy = header[..size].to_vec();
    copy[16..20].fill(0);
    crc32fast::hash(&copy)
}

fn corrupt(why: impl Into<String>) -> TableError {
    TableError::CorruptGpt(why.into())
}

fn gpt_edit(head: &[u8], disk_sectors: u64, request: &Request) -> Result<Edit, TableError> {
    let sector = SECTOR as usize;
    let header = head.get(sector..2 * sector).ok_or_else(|| corrupt("no header sector"))?;
    if &header[..8] != b"EFI PART" {
        return Err(corrupt("no `EFI PART` signature in sector 1"));
    }
    let header_size = u32_at(header, 12) as usize;
    if !(92..=sector).contains(&header_size) {
        return Err(corrupt(format!("header size {header_size} is not between 92 and 512")));
    }
    let stored = u32_at(header, 16);
    let computed = header_crc(header, header_size);
    if stored != computed {
        return Err(corrupt(format!("header CRC32 is {stored:#010x}, the header's is {computed:#010x}")));
    }
    if u64_at(header, 24) != 1 {
        return Err(corrupt("the primary header does not say it is in sector 1"));
    }
    let alternate = u64_at(header, 32);
    let first_usable = u64_at(header, 40);
    let last_usable = u64_at(header, 48);
    let entries_lba = u64_at(header, 72);
    let count = u64::from(u32_at(header, 80));
    let entry_size = u64::from(u32_at(header, 84));
    if entry_size < 128 || !entry_size.is_power_of_two() {
        return Err(corrupt(format!("entry size {entry_size} is not 128 times a power of two")));
    }
    let entries_bytes = count * entry_size;
    if count == 0 || entries_bytes > MAX_ENTRIES_BYTES {
        return Err(corrupt(format!("{count} entries of {entry_size} bytes")));
    }
    let entries_sectors = entries_bytes.div_ceil(SECTOR);
    if entries_lba < 2 || entries_lba + entries_sectors > first_usable || first_usable > last_usable {
        return Err(corrupt(format!(
            "entries at sector {entries_lba}, usable sectors {first_usable} to {last_usable}"
        )));
    }
    if alternate <= last_usable {
        return Err(corrupt(format!("backup header sector {alternate} is not after the usable sectors")));
    }
    let entries_start = usize::try_from(entries_lba * SECTOR).map_err(|_| corrupt("entries address"))?;
    let entries_end = entries_start + entries_bytes as usize;
    let entries = head
        .get(entries_start..entries_end)
        .ok_or_else(|| corrupt(format!("entries end past the first {} bytes", head.len())))?;
    let stored = u32_at(header, 88);
    let computed = crc32fast::hash(entries);
    if stored != computed {
        return Err(corrupt(format!("entries CRC32 is {stored:#010x}, the entries' is {computed:#010x}")));
    }
    if disk_sectors == 0 || alternate > disk_sectors - 1 {
        return Err(TableError::BeyondDisk { table: alternate, disk: disk_sectors.saturating_sub(1) });
    }

    let size = entry_size as usize;
    let used = |e: &[u8]| e[..16].iter().any(|b| *b != 0);
    let mut entries = entries.to_vec();
    let mut last: Option<(usize, u64, u64)> = None; // index, first, last
    for (i, e) in entries.chunks_exact(size).enumerate() {
        if !used(e) {
            continue;
        }
        let (first, end) = (u64_at(e, 32), u64_at(e, 40));
        if first > end || first < first_usable || end > last_usable {
            return Err(corrupt(format!(
                "entry {} spans sectors {first} to {end}, outside the usable {first_usable} to {last_usable}",
                i + 1
            )));
        }
        if last.is_none_or(|(_, _, l)| end > l) {
            last = Some((i, first, end));
        }
    }
    let highest = last.map_or(first_usable - 1, |(_, _, l)| l);

    // The new layout: backup entries, then the backup header in the disk's last sector.
    let last_lba = disk_sectors - 1;
    let backup_entries = last_lba
        .checked_sub(entries_sectors)
        .filter(|b| *b > last_usable)
        .ok_or(TableError::BeyondDisk { table: alternate, disk: last_lba })?;
    let new_last_usable = backup_entries - 1;

    let mut edit = Edit::default();
    let mut grow_to = new_last_usable;
    if let Some(new) = request.add {
        let slot = entries.chunks_exact(size).position(|e| !used(e)).ok_or(TableError::GptFull(count))?;
        let stop = align_down(new_last_usable + 1);
        let start = stop.checked_sub(new.sectors).filter(|start| *start > highest && *start >= first_usable).ok_or(
            TableError::NoRoom { need: new.sectors * SECTOR, end: (highest + 1) * SECTOR, limit: stop * SECTOR },
        )?;
        let e = &mut entries[slot * size..(slot + 1) * size];
        e.fill(0);
        e[..16].copy_from_slice(&BASIC_DATA);
        e[16..32].copy_from_slice(&new.guid);
        put_u64(e, 32, start);
        put_u64(e, 40, stop - 1);
        for (i, unit) in crate::seed::LABEL.encode_utf16().enumerate() {
            e[56 + 2 * i..58 + 2 * i].copy_from_slice(&unit.to_le_bytes());
        }
        edit.added = Some(crate::seed::Span { start: start * SECTOR, len: new.sectors * SECTOR });
        grow_to = start - 1;
    }
    if request.grow {
        let (index, first, end) = last.ok_or(TableError::NothingToGrow)?;
        let new_end = grow_to.max(end);
        put_u64(&mut entries[index * size..(index + 1) * size], 40, new_end);
        edit.grown = Some(Grown {
            number: index as u64 + 1,
            start: first * SECTOR,
            from: (end - first + 1) * SECTOR,
            to: (new_end - first + 1) * SECTOR,
        });
    }

    let entries_crc = crc32fast::hash(&entries);
    let mut primary = header.to_vec();
    put_u64(&mut primary, 32, last_lba);
    put_u64(&mut primary, 48, new_last_usable);
    put_u32(&mut primary, 88, entries_crc);
    let crc = header_crc(&primary, header_size);
    put_u32(&mut primary, 16, crc);
    let mut backup = primary.clone();
    put_u64(&mut backup, 24, last_lba);
    put_u64(&mut backup, 32, 1);
    put_u64(&mut backup, 72, backup_entries);
    let crc = header_crc(&backup, header_size);
    put_u32(&mut backup, 16, crc);

    // The old backup (where images keep it: entries, then the header in the image's last
    // sector), past every partition: zeroed, so that nothing finds a stale GPT there.
    if alternate != last_lba {
        let from = alternate.saturating_sub(entries_sectors).max(last_usable + 1);
        let zeros = usize::try_from((alternate + 1 - from) * SECTOR).map_err(|_| corrupt("backup size"))?;
        edit.scrub.push(Write { offset: from * SECTOR, bytes: vec![0; zeros] });
    }

    let mut padded = entries;
    padded.resize((entries_sectors * SECTOR) as usize, 0);
    edit.table.push(Write { offset: backup_entries * SECTOR, bytes: padded.clone() });
    edit.table.push(Write { offset: last_lba * SECTOR, bytes: backup });
    edit.table.push(Write { offset: entries_lba * SECTOR, bytes: padded });
    edit.table.push(Write { offset: SECTOR, bytes: primary });

    // The protective MBR's 0xee entry covers the disk (or 2 TiB): stretched when it covered
    // the old end, left alone otherwise (a hybrid MBR).
    let mut mbr = head[..sector].to_vec();
    let old_cover = alternate.min(u64::from(u32::MAX));
    let new_cover = u32::try_from(last_lba.min(u64::from(u32::MAX))).unwrap_or(u32::MAX);
    if let Some(slot) = mbr_entries(&mbr).iter().position(|e| e.kind == 0xee && e.start == 1 && e.count == old_cover) {
        let e = &mut mbr[446 + slot * 16..446 + (slot + 1) * 16];
        e[5..8].copy_from_slice(&chs(u64::from(new_cover)));
        e[12..16].copy_from_slice(&new_cover.to_le_bytes());
        edit.table.push(Write { offset: 0, bytes: mbr });
    }
    Ok(edit)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// An MBR sector with these (type, start, count) entries.
    fn mbr(entries: &[(u8, u32, u32)]) -> Vec<u8> {
        let mut head = vec![0u8; 512];
        for (i, (kind, start, count)) in entries.iter().enumerate() {
            let e = &mut head[446 + i * 16..446 + (i + 1) * 16];
            e[4] = *kind;
            e[8..12].copy_from_slice(&start.to_le_bytes());
            e[12..16].copy_from_slice(&count.to_le_bytes());
        }
        head[510] = 0x55;
        head[511] = 0xaa;
        head
    }

    const MIB: u64 = 1 << 20;
    const ADD: NewPartition = NewPartition { sectors: 8 * 2048, guid: [7; 16] };

    fn apply(disk: &mut [u8], edit: &Edit) {
        for w in edit.scrub.iter().chain(&edit.table) {
            let at = w.offset as usize;
            disk[at..at + w.bytes.len()].copy_from_slice(&w.bytes);
        }
    }

    #[test]
    fn mbr_gets_a_partition_in_a_free_slot_at_the_aligned_end() {
        let head = mbr(&[(0x83, 2048, 2048), (0, 0, 0), (0x0c, 4096, 4096)]);
        // 64 MiB and a half sector: the end is rounded down to a MiB.
        let disk = 64 * MIB + 256;
        let edit = edit(&head, disk, &Request { add: Some(ADD), grow: true }).unwrap();
        let start = 64 * 2048 - 8 * 2048;
        assert_eq!(edit.added, Some(crate::seed::Span { start: start * 512, len: 8 * MIB }));
        assert_eq!(
            edit.grown,
            Some(Grown { number: 3, start: 4096 * 512, from: 4096 * 512, to: (start - 4096) * 512 })
        );
        assert_eq!(edit.table.len(), 1);
        let entries = mbr_entries(&edit.table[0].bytes);
        assert_eq!((entries[1].kind, entries[1].start, entries[1].count), (MBR_FAT16_LBA, start, 8 * 2048));
        assert_eq!((entries[2].start, entries[2].count), (4096, start - 4096));
        assert_eq!((entries[0].start, entries[0].count), (2048, 2048), "other entries untouched");
        assert_eq!(edit.table[0].bytes[..446], head[..446], "boot code untouched");
    }

    #[test]
    fn mbr_growth_alone_reaches_the_disk_end() {
        let head = mbr(&[(0x83, 2048, 2048)]);
        let edit = edit(&head, 10 * MIB + 512, &Request { add: None, grow: true }).unwrap();
        assert_eq!(edit.grown.unwrap().to, (10 * 2048 + 1 - 2048) * 512, "to the last sector, unaligned");
    }

    #[test]
    fn mbr_refusals_say_why() {
        let full = mbr(&[(0x83, 2048, 2048), (0x83, 4096, 2048), (0x83, 6144, 2048), (0x83, 8192, 2048)]);
        let request = Request { add: Some(ADD), grow: false };
        assert_eq!(edit(&full, 64 * MIB, &request), Err(TableError::MbrFull));
        let tight = mbr(&[(0x83, 2048, 60 * 2048)]);
        assert!(matches!(edit(&tight, 64 * MIB, &request), Err(TableError::NoRoom { need, .. }) if need == 8 * MIB));
        assert!(matches!(edit(&tight, 32 * MIB, &request), Err(TableError::BeyondDisk { .. })));
        let extended = mbr(&[(0x83, 2048, 2048), (0x05, 4096, 2048)]);
        assert_eq!(edit(&extended, 64 * MIB, &Request { add: None, grow: true }), Err(TableError::Extended(5)));
        assert!(matches!(edit(&mbr(&[]), 64 * MIB, &request), Err(TableError::NoTable(_))));
        assert!(matches!(edit(&[0; 512], 64 * MIB, &request), Err(TableError::NoTable(_))));
        let mut bad_status = mbr(&[(0x83, 2048, 2048)]);
        bad_status[446] = 0x12;
        assert!(matches!(edit(&bad_status, 64 * MIB, &request), Err(TableError::NoTable(_))));
    }

    #[test]
    fn mbr_partitions_stay_below_two_tebibytes() {
        let head = mbr(&[(0x83, 2048, 2048)]);
        let edit = edit(&head, 3 << 40, &Request { add: Some(ADD), grow: true }).unwrap();
        let added = edit.added.unwrap();
        assert_eq!(added.start + added.len, 2 << 40);
        assert_eq!(edit.grown.unwrap().to, added.start - 2048 * 512);
        assert_eq!(chs(u64::from(u32::MAX)), [0xfe, 0xff, 0xff]);
        assert_eq!(chs(2048), [32, 33, 0], "sector 2048 is C/H/S 0/32/33");
    }

    /// A GPT image of `sectors` sectors, as in memory, with (type byte, first, last) entries at
    /// these indices; the backup at the image's end.
    fn gpt_image(sectors: u64, parts: &[(usize, u8, u64, u64)]) -> Vec<u8> {
        let mut disk = vec![0u8; (sectors * 512) as usize];
        disk[..512].copy_from_slice(&mbr(&[(0xee, 1, (sectors - 1) as u32)]));
        let mut entries = vec![0u8; 128 * 128];
        for (index, kind, first, last) in parts {
            let e = &mut entries[index * 128..(index + 1) * 128];
            e[..16].fill(*kind);
            e[16..32].fill(0x40 + *index as u8);
            put_u64(e, 32, *first);
            put_u64(e, 40, *last);
        }
        let mut header = vec![0u8; 92];
        header[..8].copy_from_slice(b"EFI PART");
        put_u32(&mut header, 8, 0x0001_0000);
        put_u32(&mut header, 12, 92);
        put_u64(&mut header, 24, 1);
        put_u64(&mut header, 32, sectors - 1);
        put_u64(&mut header, 40, 34);
        put_u64(&mut header, 48, sectors - 34);
        header[56..72].fill(0x99);
        put_u64(&mut header, 72, 2);
        put_u32(&mut header, 80, 128);
        put_u32(&mut header, 84, 128);
        put_u32(&mut header, 88, crc32fast::hash(&entries));
        let crc = header_crc(&header, 92);
        put_u32(&mut header, 16, crc);
        let mut backup = header.clone();
        put_u64(&mut backup, 24, sectors - 1);
        put_u64(&mut backup, 32, 1);
        put_u64(&mut backup, 72, sectors - 33);
        let crc = header_crc(&backup, 92);
        put_u32(&mut backup, 16, crc);
        disk[512..604].copy_from_slice(&header);
        disk[1024..1024 + entries.len()].copy_from_slice(&entries);
        let at = ((sectors - 33) * 512) as usize;
        disk[at..at + entries.len()].copy_from_slice(&entries);
        let at = ((sectors - 1) * 512) as usize;
        disk[at..at + 92].copy_from_slice(&backup);
        disk
    }

    /// Checks a GPT as firmware would: both headers, both CRCs, each where the other says.
    fn check_gpt(disk: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let sectors = disk.len() as u64 / 512;
        let primary = &disk[512..1024];
        assert_eq!(u32_at(primary, 16), header_crc(primary, 92), "primary header CRC");
        assert_eq!(u64_at(primary, 32), sectors - 1, "backup in the last sector");
        let backup = &disk[disk.len() - 512..];
        assert_eq!(&backup[..8], b"EFI PART");
        assert_eq!(u32_at(backup, 16), header_crc(backup, 92), "backup header CRC");
        assert_eq!((u64_at(backup, 24), u64_at(backup, 32)), (sectors - 1, 1));
        let entries = &disk[1024..1024 + 128 * 128];
        assert_eq!(u32_at(primary, 88), crc32fast::hash(entries));
        let at = (u64_at(backup, 72) * 512) as usize;
        assert_eq!(&disk[at..at + 128 * 128], entries, "backup entries equal the primary's");
        assert_eq!(u64_at(primary, 48), u64_at(backup, 72) - 1, "last usable sector before the backup entries");
        (primary.to_vec(), entries.to_vec())
    }

    #[test]
    fn gpt_backup_moves_to_the_disk_end_with_the_new_partition_before_it() {
        // Debian's layout: root (entry 1) last, BIOS boot (14) and EFI (15) first.
        let image_sectors = 16 * 2048;
        let image = gpt_image(image_sectors, &[(13, 0x14, 2048, 4095), (14, 0x15, 4096, 8191), (0, 0x83, 8192, 32734)]);
        let mut disk = image.clone();
        disk.resize(64 * MIB as usize, 0);
        let edit = edit(&disk[..HEAD as usize], 64 * MIB, &Request { add: Some(ADD), grow: true }).unwrap();
        apply(&mut disk, &edit);
        let (primary, entries) = check_gpt(&disk);
        let added = edit.added.unwrap();
        // The backup GPT takes the disk's last MiB boundary: the partition ends at 63 MiB.
        assert_eq!(added, crate::seed::Span { start: 55 * MIB, len: 8 * MIB });
        let e = &entries[128..256];
        assert_eq!(&e[..16], &BASIC_DATA);
        assert_eq!(&e[16..32], &[7; 16]);
        assert_eq!((u64_at(e, 32), u64_at(e, 40)), (55 * 2048, 63 * 2048 - 1));
        assert_eq!(&e[56..68], "CIDATA".encode_utf16().flat_map(u16::to_le_bytes).collect::<Vec<_>>().as_slice());
        assert_eq!(u64_at(&entries[..128], 40), 55 * 2048 - 1, "root grown up to CIDATA");
        assert_eq!(
            edit.grown,
            Some(Grown { number: 1, start: 8192 * 512, from: 24543 * 512, to: (55 * 2048 - 8192) * 512 })
        );
        assert_eq!(entries[13 * 128..15 * 128], image[1024 + 13 * 128..1024 + 15 * 128], "other entries untouched");
        assert_eq!(primary[56..72], [0x99; 16], "disk GUID kept");
        let old_backup = ((image_sectors - 33) * 512) as usize;
        assert!(disk[old_backup..image.len()].iter().all(|b| *b == 0), "old backup zeroed");
        let pmbr = mbr_entries(&disk[..512]);
        assert_eq!(pmbr[0].count, 64 * 2048 - 1, "protective MBR covers the disk");
    }

    #[test]
    fn gpt_growth_alone_reaches_the_last_usable_sector() {
        let mut disk = gpt_image(16 * 2048, &[(0, 0x83, 2048, 32734)]);
        disk.resize(32 * MIB as usize, 0);
        let edit = edit(&disk[..HEAD as usize], 32 * MIB, &Request { add: None, grow: true }).unwrap();
        assert_eq!(edit.added, None);
        apply(&mut disk, &edit);
        let (_, entries) = check_gpt(&disk);
        assert_eq!(u64_at(&entries, 40), 32 * 2048 - 34);
    }

    #[test]
    fn gpt_on_a_disk_of_the_image_size_keeps_its_backup_in_place() {
        let mut disk = gpt_image(16 * 2048, &[(0, 0x83, 2048, 4095)]);
        let edit = edit(&disk.clone(), 16 * MIB, &Request { add: Some(ADD), grow: false }).unwrap();
        assert!(edit.scrub.is_empty());
        apply(&mut disk, &edit);
        check_gpt(&disk);
        // The last usable sector is 33 before the end: the partition ends at 15 MiB.
        assert_eq!(edit.added, Some(crate::seed::Span { start: 7 * MIB, len: 8 * MIB }));
    }

    #[test]
    fn gpt_refusals_say_why() {
        let request = Request { add: Some(ADD), grow: true };
        let image = gpt_image(16 * 2048, &[(0, 0x83, 2048, 32734)]);
        let mut bad_header = image.clone();
        bad_header[512 + 40] ^= 1;
        assert!(
            matches!(edit(&bad_header, 64 * MIB, &request), Err(TableError::CorruptGpt(why)) if why.contains("header CRC32"))
        );
        let mut bad_entries = image.clone();
        bad_entries[1024 + 40] ^= 1;
        assert!(
            matches!(edit(&bad_entries, 64 * MIB, &request), Err(TableError::CorruptGpt(why)) if why.contains("entries CRC32"))
        );
        assert!(matches!(edit(&image, 4 * MIB, &request), Err(TableError::BeyondDisk { .. })));
        assert!(matches!(edit(&image, 16 * MIB, &request), Err(TableError::NoRoom { .. })), "the image fills the disk");
        let full: Vec<_> = (0..128).map(|i| (i, 0x83, 2048 + i as u64 * 16, 2048 + i as u64 * 16 + 15)).collect();
        let full = gpt_image(16 * 2048, &full);
        assert_eq!(edit(&full, 64 * MIB, &request), Err(TableError::GptFull(128)));
        let empty = gpt_image(16 * 2048, &[]);
        assert_eq!(edit(&empty, 64 * MIB, &Request { add: None, grow: true }), Err(TableError::NothingToGrow));
        let mut short = image.clone();
        short.truncate(2048);
        assert!(
            matches!(edit(&short, 64 * MIB, &request), Err(TableError::CorruptGpt(why)) if why.contains("entries end"))
        );
    }
}
