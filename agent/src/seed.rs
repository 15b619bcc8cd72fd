//! Writing the NoCloud seed the plan carries ([`machinist_agent_protocol::seed`]) into the
//! installed image: the agent finds, among the partitions of the disk it wrote (MBR or GPT), a
//! FAT file system labelled `CIDATA` (cloud-init's NoCloud label) and writes `meta-data`,
//! `user-data`, `vendor-data` and `network-config` there, in-process (no mount). An image without such a partition gets no
//! seed (adding one at the end of the disk is not built yet).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

use machinist_agent_protocol::seed::NoCloud;

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

/// A partition of a file, as a stream of its own.
struct Slice<'a> {
    file: &'a mut File,
    span: Span,
    position: u64,
}

impl Read for Slice<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.span.len.saturating_sub(self.position);
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        self.file.seek(SeekFrom::Start(self.span.start + self.position))?;
        let read = self.file.read(&mut buf[..n])?;
        self.position += read as u64;
        Ok(read)
    }
}

impl Write for Slice<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let left = self.span.len.saturating_sub(self.position);
        if left == 0 && !buf.is_empty() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "end of the partition"));
        }
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        self.file.seek(SeekFrom::Start(self.span.start + self.position))?;
        let written = self.file.write(&buf[..n])?;
        self.position += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Seek for Slice<'_> {
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

/// Where the seed went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Written {
    /// Into the partition starting at this byte.
    Partition(u64),
    /// The image has no `CIDATA` partition.
    NoPartition,
}

/// Writes `seed` into the disk's `CIDATA` partition, if it has one.
pub fn write(disk: &mut File, seed: &NoCloud) -> io::Result<Written> {
    let mut head = vec![0u8; 34 * SECTOR as usize];
    disk.seek(SeekFrom::Start(0))?;
    let mut filled = 0;
    while filled < head.len() {
        match disk.read(&mut head[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    head.truncate(filled);
    for span in partitions(&head) {
        let slice = Slice { file: disk, span, position: 0 };
        let Ok(fs) = fatfs::FileSystem::new(slice, fatfs::FsOptions::new()) else {
            continue; // not FAT
        };
        if !fs.volume_label().trim().eq_ignore_ascii_case(LABEL) {
            continue;
        }
        {
            let root = fs.root_dir();
            let mut files = vec![
                ("meta-data", &seed.meta_data),
                ("user-data", &seed.user_data),
                ("vendor-data", &seed.vendor_data),
            ];
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
        disk.sync_all()?;
        return Ok(Written::Partition(span.start));
    }
    Ok(Written::NoPartition)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
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
        let slice = Slice { file: &mut handle, span, position: 0 };
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
        assert_eq!(write(&mut disk, &seed()).unwrap(), Written::Partition(4096 * 512));
        // Written again (a reinstall): replaced, not appended.
        write(&mut disk, &seed()).unwrap();
        let span = Span { start: 4096 * 512, len: 4096 * 512 };
        let fs = fatfs::FileSystem::new(Slice { file: &mut disk, span, position: 0 }, fatfs::FsOptions::new()).unwrap();
        let mut text = String::new();
        fs.root_dir().open_file("meta-data").unwrap().read_to_string(&mut text).unwrap();
        assert_eq!(text, "m\n");
        let mut network = String::new();
        fs.root_dir().open_file("network-config").unwrap().read_to_string(&mut network).unwrap();
        assert_eq!(network, "n\n");
    }

    #[test]
    fn an_image_without_cidata_gets_no_seed() {
        let (_file, mut disk) = disk_with("BOOT");
        assert_eq!(write(&mut disk, &seed()).unwrap(), Written::NoPartition);
    }
}
