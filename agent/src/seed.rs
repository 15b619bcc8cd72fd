//! Writing the NoCloud seed the plan carries ([`machinist_agent_protocol::seed`]) into the
//! installed image: the agent finds, among the partitions of the disk it wrote (MBR or GPT), a
//! FAT file system labelled `CIDATA` (cloud-init's NoCloud label) and writes `meta-data`,
//! `user-data`, `vendor-data` and `network-config` there, in-process (no mount).
//!
//! An image without such a partition (Debian's and Ubuntu's cloud images) gets one: the agent
//! adds an [`ADDED_SIZE`] partition at the end of the disk, after the image (the disk is larger
//! than the image), formats it FAT16 labelled `CIDATA` with `fatfs` and writes the seed into it,
//! then changes the table ([`crate::table`]: a free MBR primary slot of type `0x0e`, or a GPT
//! basic data entry named `CIDATA` with the backup GPT moved to the disk's end). A table that
//! cannot take it (no MBR or GPT, a corrupt GPT, no free slot or entry, no room for
//! [`ADDED_SIZE`] between the last partition and the usable disk's last 1 MiB boundary) is left
//! as it was: no seed, and [`Written`] says why; the install still succeeds. A reinstall writes
//! the image's own table again, so the partition is added, and formatted, afresh.
//!
//! When the Role asks (`image.growLastPartition`), the partition that ends last is grown in
//! the table up to the added `CIDATA` partition, or else to the last usable sector; its file
//! system is left to the installed system (cloud-init's `growpart` and `resize_rootfs`).

use std::borrow::Borrow;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

use machinist_agent_protocol::seed::NoCloud;

use crate::table::{self, Grown, NewPartition, Request, TableError};

/// Bytes per sector of partition tables.
const SECTOR: u64 = 512;
/// The NoCloud volume label.
pub const LABEL: &str = "CIDATA";

/// A partition: byte offset and length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// First byte.
    pub start: u64,
    /// Bytes.
    pub len: u64,
}

/// The partitions of a disk whose first 34 sectors are `head` (the MBR, and for a protective
/// MBR the GPT header and entries that follow). Pure; empty when there is no table.
pub fn partitions(head: &[u8]) -> Vec<Span> {
    if head.len() < 512 || head[510..512] != [0x55, 0xaa] {
        return Vec::new();
    }
    let entries: Vec<(u8, u64, u64)> = (0..4)
        .map(|i| {
            let e = &head[446 + i * 16..446 + (i + 1) * 16];
            let start = u32::from_le_bytes([e[8], e[9], e[10], e[11]]);
            let count = u32::from_le_bytes([e[12], e[13], e[14], e[15]]);
            (e[4], u64::from(start), u64::from(count))
        })
        .collect();
    if entries.iter().any(|(kind, _, _)| *kind == 0xee) {
        return gpt(head);
    }
    entries
        .into_iter()
        .filter(|(kind, _, count)| *kind != 0 && *count > 0)
        .map(|(_, start, count)| Span { start: start * SECTOR, len: count * SECTOR })
        .collect()
}

fn gpt(head: &[u8]) -> Vec<Span> {
    let header = match head.get(512..604) {
        Some(h) if &h[..8] == b"EFI PART" => h,
        _ => return Vec::new(),
    };
    let u64_at = |b: &[u8], at: usize| {
        b.get(at..at + 8).map_or(0, |s| u64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]))
    };
    let u32_at = |b: &[u8], at: usize| b.get(at..at + 4).map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]));
    let entries_lba = u64_at(header, 72);
    let count = u32_at(header, 80).min(128) as usize;
    let size = u32_at(header, 84) as usize;
    if size < 128 {
        return Vec::new();
    }
    let Some(base) = entries_lba.checked_mul(SECTOR).and_then(|b| usize::try_from(b).ok()) else {
        return Vec::new();
    };
    (0..count)
        .filter_map(|i| head.get(base + i * size..base + (i + 1) * size))
        .filter(|e| e[..16].iter().any(|b| *b != 0))
        .filter_map(|e| {
            let (first, last) = (u64_at(e, 32), u64_at(e, 40));
            (last >= first).then(|| Span { start: first * SECTOR, len: (last - first + 1) * SECTOR })
        })
        .collect()
}

/// A partition of a disk file, as a stream of its own (positioned reads and writes, so a
/// shared `&File` will do): the seed's FAT here, the boot partitions [`crate::kexec`] reads.
pub(crate) struct Slice<F> {
    /// The disk: `&File`, or an owned `File` where the reader must be `'static`.
    pub(crate) file: F,
    /// The partition.
    pub(crate) span: Span,
    /// Where the stream is, from the partition's start.
    pub(crate) position: u64,
}

impl<F> Slice<F> {
    /// The partition `span` of `file`, from its start.
    pub(crate) fn new(file: F, span: Span) -> Self {
        Self { file, span, position: 0 }
    }

    fn left(&self) -> usize {
        usize::try_from(self.span.len.saturating_sub(self.position)).unwrap_or(usize::MAX)
    }
}

impl<F: Borrow<File>> Read for Slice<F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.left());
        let read = self.file.borrow().read_at(&mut buf[..n], self.span.start + self.position)?;
        self.position += read as u64;
        Ok(read)
    }
}

impl<F: Borrow<File>> Write for Slice<F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(self.left());
        if n == 0 && !buf.is_empty() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "end of the partition"));
        }
        let written = self.file.borrow().write_at(&buf[..n], self.span.start + self.position)?;
        self.position += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<F> Seek for Slice<F> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(at) => Some(at),
            SeekFrom::End(delta) => self.span.len.checked_add_signed(delta),
            SeekFrom::Current(delta) => self.position.checked_add_signed(delta),
        };
        self.position = target.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek out of range"))?;
        Ok(self.position)
    }
}

/// The size of a `CIDATA` partition the agent adds: 8 MiB, FAT16. A seed is at most about
/// 3 MiB (the `user-data`, `meta-data` and `network-config` templates render to at most 1 MiB
/// each; `vendor-data` is machinist's few lines).
pub const ADDED_SIZE: u64 = 8 << 20;

/// Where the seed went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seeded {
    /// Into the image's own `CIDATA` partition, starting at this byte.
    Partition(u64),
    /// Into a `CIDATA` partition the agent added at the end of the disk, starting at this byte.
    Added(u64),
    /// Nowhere: the image has no `CIDATA` partition and none could be added, for this reason.
    NotAdded(TableError),
}

/// What [`write()`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// Where the seed went.
    pub seed: Seeded,
    /// The last partition's growth, when it was asked for.
    pub grown: Option<Result<Grown, TableError>>,
}

impl std::fmt::Display for Written {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.seed {
            Seeded::Partition(at) => write!(f, "NoCloud seed written (CIDATA at byte {at})")?,
            Seeded::Added(at) => write!(f, "CIDATA partition added at byte {at}, NoCloud seed written")?,
            Seeded::NotAdded(why) => {
                write!(f, "the image has no CIDATA partition and none could be added ({why}): no seed")?;
            }
        }
        match &self.grown {
            None => Ok(()),
            Some(Ok(grown)) if grown.to == grown.from => {
                write!(f, "; partition {} already reaches the end ({} bytes)", grown.number, grown.to)
            }
            Some(Ok(grown)) => write!(
                f,
                "; partition {} grown from {} to {} bytes (its file system is grown by the installed system)",
                grown.number, grown.from, grown.to
            ),
            Some(Err(why)) => write!(f, "; the last partition was not grown: {why}"),
        }
    }
}

/// Writes `seed` into the disk's `CIDATA` partition; when the image has none, adds one at the
/// end of the disk ([`ADDED_SIZE`], FAT16) if its MBR or GPT allows. `grow` grows the image's
/// last partition in the table ([`crate::table`]). A table that cannot be changed is said so in
/// the result, not an error; errors are the disk's.
pub fn write(disk: &mut File, seed: &NoCloud, grow: bool) -> io::Result<Written> {
    let disk_size = disk.seek(SeekFrom::End(0))?;
    let mut head = vec![0u8; usize::try_from(disk_size.min(table::HEAD)).unwrap_or(0)];
    disk.seek(SeekFrom::Start(0))?;
    disk.read_exact(&mut head)?;
    if let Some(span) = find_cidata(disk, &head) {
        fill(disk, span, seed)?;
        let grown = if grow { Some(change(disk, &head, disk_size, &Request { add: None, grow })?) } else { None };
        return Ok(Written { seed: Seeded::Partition(span.start), grown });
    }
    let add = NewPartition { sectors: ADDED_SIZE / table::SECTOR, guid: crate::random::guid()? };
    let both = match table::edit(&head, disk_size, &Request { add: Some(add), grow }) {
        Ok(edit) => {
            let at = add_partition(disk, &edit, add, seed)?;
            return Ok(Written { seed: Seeded::Added(at), grown: edit.grown.map(Ok) });
        }
        Err(why) if !grow => return Ok(Written { seed: Seeded::NotAdded(why), grown: None }),
        Err(why) => why,
    };
    // One of the two cannot be done: each alone.
    match table::edit(&head, disk_size, &Request { add: Some(add), grow: false }) {
        Ok(edit) => {
            let at = add_partition(disk, &edit, add, seed)?;
            Ok(Written { seed: Seeded::Added(at), grown: Some(Err(both)) })
        }
        Err(why) => {
            let grown = change(disk, &head, disk_size, &Request { add: None, grow })?;
            Ok(Written { seed: Seeded::NotAdded(why), grown: Some(grown) })
        }
    }
}

/// Applies an edit that adds a partition: zeroes the old backup GPT, formats the new partition
/// (FAT16, labelled `CIDATA`, its volume id from the partition GUID) and writes the seed into
/// it, then writes the tables. Returns its first byte.
fn add_partition(disk: &mut File, edit: &table::Edit, add: NewPartition, seed: &NoCloud) -> io::Result<u64> {
    let Some(span) = edit.added else {
        return Err(io::Error::other("the partition table edit added no partition"));
    };
    put(disk, &edit.scrub)?;
    let mut label = [b' '; 11];
    label[..LABEL.len()].copy_from_slice(LABEL.as_bytes());
    let options = fatfs::FormatVolumeOptions::new()
        .volume_label(label)
        .volume_id(u32::from_le_bytes([add.guid[0], add.guid[1], add.guid[2], add.guid[3]]))
        .fat_type(fatfs::FatType::Fat16);
    fatfs::format_volume(Slice::new(&*disk, span), options)?;
    fill(disk, span, seed)?;
    put(disk, &edit.table)?;
    disk.sync_all()?;
    Ok(span.start)
}

/// The first FAT partition labelled `CIDATA`.
fn find_cidata(disk: &mut File, head: &[u8]) -> Option<Span> {
    partitions(head).into_iter().find(|span| {
        let slice = Slice::new(&*disk, *span);
        fatfs::FileSystem::new(slice, fatfs::FsOptions::new())
            .is_ok_and(|fs| fs.volume_label().trim().eq_ignore_ascii_case(LABEL))
    })
}

/// Writes the seed's files into the FAT file system of `span`, replacing them.
fn fill(disk: &mut File, span: Span, seed: &NoCloud) -> io::Result<()> {
    let fs = fatfs::FileSystem::new(Slice::new(&*disk, span), fatfs::FsOptions::new())?;
    {
        let root = fs.root_dir();
        let mut files =
            vec![("meta-data", &seed.meta_data), ("user-data", &seed.user_data), ("vendor-data", &seed.vendor_data)];
        if let Some(network) = &seed.network_config {
            files.push(("network-config", network));
        }
        for (name, text) in files {
            let mut file = root.create_file(name)?;
            file.truncate()?;
            file.write_all(text.as_bytes())?;
            file.flush()?;
        }
    }
    fs.unmount()?;
    disk.sync_all()
}

/// Applies a table change that adds nothing; a table that cannot change is the `Err`.
fn change(disk: &mut File, head: &[u8], disk_size: u64, request: &Request) -> io::Result<Result<Grown, TableError>> {
    let edit = match table::edit(head, disk_size, request) {
        Ok(edit) => edit,
        Err(why) => return Ok(Err(why)),
    };
    put(disk, &edit.scrub)?;
    put(disk, &edit.table)?;
    disk.sync_all()?;
    Ok(edit.grown.ok_or(TableError::NothingToGrow))
}

fn put(disk: &mut File, writes: &[table::Write]) -> io::Result<()> {
    for w in writes {
        disk.seek(SeekFrom::Start(w.offset))?;
        disk.write_all(&w.bytes)?;
    }
    Ok(())
}

/// A random (version 4) GUID, as GPT stores it (the first three fields little-endian).
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn mbr(entries: &[(u8, u32, u32)]) -> Vec<u8> {
        let mut head = vec![0u8; 34 * 512];
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

    #[test]
    fn mbr_and_gpt_partitions_are_found() {
        let head = mbr(&[(0x0c, 2048, 4096), (0, 0, 0), (0x83, 8192, 100)]);
        assert_eq!(
            partitions(&head),
            [Span { start: 2048 * 512, len: 4096 * 512 }, Span { start: 8192 * 512, len: 100 * 512 }]
        );
        assert!(partitions(&vec![0u8; 1024]).is_empty(), "no signature, no table");
        let mut gpt = mbr(&[(0xee, 1, 0xffff_ffff)]);
        gpt[512..520].copy_from_slice(b"EFI PART");
        gpt[512 + 72..512 + 80].copy_from_slice(&2u64.to_le_bytes());
        gpt[512 + 80..512 + 84].copy_from_slice(&128u32.to_le_bytes());
        gpt[512 + 84..512 + 88].copy_from_slice(&128u32.to_le_bytes());
        let entry = 1024 + 128; // the second entry; the first is unused
        gpt[entry] = 0xaf;
        gpt[entry + 32..entry + 40].copy_from_slice(&2048u64.to_le_bytes());
        gpt[entry + 40..entry + 48].copy_from_slice(&4095u64.to_le_bytes());
        assert_eq!(partitions(&gpt), [Span { start: 2048 * 512, len: 2048 * 512 }]);
        let mut hostile = gpt.clone();
        hostile[512 + 72..512 + 80].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(partitions(&hostile).is_empty(), "entries beyond what was read are ignored");
    }

    fn disk_with(label: &str) -> (tempfile::NamedTempFile, File) {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut handle = file.reopen().unwrap();
        handle.set_len(4 << 20).unwrap();
        handle.write_all(&mbr(&[(0x83, 2048, 2048), (0x0c, 4096, 4096)])).unwrap();
        let mut name = [b' '; 11];
        name[..label.len()].copy_from_slice(label.as_bytes());
        let span = Span { start: 4096 * 512, len: 4096 * 512 };
        let slice = Slice::new(&handle, span);
        fatfs::format_volume(slice, fatfs::FormatVolumeOptions::new().volume_label(name)).unwrap();
        (file, handle)
    }

    fn seed() -> NoCloud {
        NoCloud {
            meta_data: "m\n".into(),
            user_data: "#cloud-config\n".into(),
            vendor_data: "#cloud-config\nphone_home: {}\n".into(),
            network_config: Some("n\n".into()),
        }
    }

    #[test]
    fn the_seed_goes_into_the_cidata_partition() {
        let (_file, mut disk) = disk_with("CIDATA");
        assert_eq!(
            write(&mut disk, &seed(), false).unwrap(),
            Written { seed: Seeded::Partition(4096 * 512), grown: None }
        );
        // Written again (a reinstall): replaced, not appended.
        write(&mut disk, &seed(), false).unwrap();
        let span = Span { start: 4096 * 512, len: 4096 * 512 };
        let fs = fatfs::FileSystem::new(Slice::new(&disk, span), fatfs::FsOptions::new()).unwrap();
        let mut text = String::new();
        fs.root_dir().open_file("meta-data").unwrap().read_to_string(&mut text).unwrap();
        assert_eq!(text, "m\n");
        let mut network = String::new();
        fs.root_dir().open_file("network-config").unwrap().read_to_string(&mut network).unwrap();
        assert_eq!(network, "n\n");
    }

    #[test]
    fn an_image_without_cidata_gets_one_added_when_there_is_room() {
        let (_file, mut disk) = disk_with("BOOT");
        let written = write(&mut disk, &seed(), true).unwrap();
        let Seeded::NotAdded(why) = &written.seed else { panic!("{written:?}") };
        assert!(matches!(why, TableError::NoRoom { .. }), "{why}");
        assert!(written.to_string().contains("no seed"), "{written}");
        assert_eq!(written.grown.as_ref().unwrap().as_ref().unwrap().to, 4096 * 512, "already at the end");

        disk.set_len(16 << 20).unwrap();
        let written = write(&mut disk, &seed(), true).unwrap();
        assert_eq!(written.seed, Seeded::Added(8 << 20), "8 MiB at the end of 16");
        assert_eq!(written.grown.as_ref().unwrap().as_ref().unwrap().to, 6 << 20, "grown up to the new one");
        assert_eq!(
            written.to_string(),
            "CIDATA partition added at byte 8388608, NoCloud seed written; partition 2 grown from 2097152 to 6291456 \
             bytes (its file system is grown by the installed system)"
        );
        // Installed again over the same disk: the added partition is found, not added twice.
        let again = write(&mut disk, &seed(), false).unwrap();
        assert_eq!(again, Written { seed: Seeded::Partition(8 << 20), grown: None });
        let span = Span { start: 8 << 20, len: ADDED_SIZE };
        let fs = fatfs::FileSystem::new(Slice::new(&disk, span), fatfs::FsOptions::new()).unwrap();
        assert_eq!(fs.fat_type(), fatfs::FatType::Fat16);
        let mut text = String::new();
        fs.root_dir().open_file("user-data").unwrap().read_to_string(&mut text).unwrap();
        assert_eq!(text, "#cloud-config\n");
    }

    #[test]
    fn a_partition_that_cannot_grow_does_not_stop_the_seed() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut disk = file.reopen().unwrap();
        disk.set_len(16 << 20).unwrap();
        disk.write_all(&mbr(&[(0x83, 2048, 2048), (0x05, 4096, 4096)])).unwrap();
        let written = write(&mut disk, &seed(), true).unwrap();
        assert_eq!(written.seed, Seeded::Added(8 << 20));
        assert_eq!(written.grown, Some(Err(TableError::Extended(5))));
        assert!(written.to_string().ends_with("; the last partition was not grown: the last partition is an extended partition (type 0x05), which is not grown"), "{written}");
    }
}
