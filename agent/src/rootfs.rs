//! Installing a tree of files (`format: tar`, eDeploy's way) onto the partitions of the plan's
//! layout, then a boot loader, since a tree has none.
//!
//! 1. The partitions are placed ([`machinist_agent_protocol::install::layout::place`]) and a new table written
//!    ([`crate::fresh_table`]): syslinux's `mbr.bin` (MBR) or `gptmbr.bin` (GPT) as boot
//!    code, the partition holding `/boot` (else `/`) marked bootable.
//! 2. The kernel re-reads the table (`blockdev --rereadpt`); the partitions get their file
//!    systems: ext4 by `mke2fs` (without the `64bit` feature on the boot file system, which
//!    syslinux cannot read), FAT in-process (`fatfs`), swap by `mkswap`.
//! 3. The ext4 and FAT file systems with a mount point are mounted under [`TARGET`], the tree
//!    is unpacked as it streams (hashed, decompressed, permissions and owners kept, nothing
//!    outside the target), and its sha256 checked.
//! 4. `/etc/fstab` (by `PARTUUID`), `/etc/hostname` and cloud-init's seed directory
//!    (`/var/lib/cloud/seed/nocloud/`) are written into it.
//! 5. The boot loader: `extlinux --install` into the boot file system's `extlinux/` with an
//!    `extlinux.conf` booting the tree's newest `/boot/vmlinuz-*` (and its `initrd.img-*`) with
//!    `root=PARTUUID=…`; and, when a FAT partition is mounted at `/boot/efi`, syslinux's EFI
//!    loader as `EFI/BOOT/BOOTX64.EFI` with that kernel and initrd copied beside it.
//! 6. Everything is unmounted; a FAT partition labelled `CIDATA` gets the NoCloud seed too
//!    ([`crate::seed`]).

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use machinist_agent_protocol::install::PlannedLayout;
use machinist_agent_protocol::install::layout::place;
use machinist_agent_protocol::install::{Compression, ImageSource};
use machinist_agent_protocol::install::{Filesystem, PartitionTable};
use machinist_agent_protocol::seed::NoCloud;
use sha2::Digest;

use crate::fresh_table::{Fresh, create, partuuid};
use crate::install::{Hashing, InstallError, Written};

/// Where the installed system's file systems are mounted while the tree is unpacked.
pub const TARGET: &str = "/run/machinist-target";

/// Where the RAM disk carries the programs and files this uses.
#[derive(Clone, Debug)]
pub struct Tools {
    /// e2fsprogs' `mke2fs`.
    pub mke2fs: PathBuf,
    /// syslinux's `extlinux`.
    pub extlinux: PathBuf,
    /// syslinux's MBR code for an MBR disk.
    pub mbr: PathBuf,
    /// syslinux's MBR code for a GPT disk.
    pub gptmbr: PathBuf,
    /// syslinux's EFI loader.
    pub syslinux_efi: PathBuf,
    /// Its core module.
    pub ldlinux_e64: PathBuf,
    /// Where the file systems are mounted.
    pub target: PathBuf,
}

impl Default for Tools {
    fn default() -> Self {
        Self {
            mke2fs: "/sbin/mke2fs".into(),
            extlinux: "/usr/bin/extlinux".into(),
            mbr: "/usr/lib/syslinux/mbr/mbr.bin".into(),
            gptmbr: "/usr/lib/syslinux/mbr/gptmbr.bin".into(),
            syslinux_efi: "/usr/lib/SYSLINUX.EFI/efi64/syslinux.efi".into(),
            ldlinux_e64: "/usr/lib/syslinux/modules/efi64/ldlinux.e64".into(),
            target: TARGET.into(),
        }
    }
}

/// The kernel's command line besides `root=`: the serial and the screen consoles.
const CONSOLES: &str = "console=tty0 console=ttyS0,115200n8";

fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> InstallError {
    let what = what.into();
    move |source| InstallError::Io { what, source }
}

fn step(what: impl Into<String>) -> impl FnOnce(String) -> InstallError {
    let what = what.into();
    move |why| InstallError::Io { what, source: io::Error::other(why) }
}

/// The device node of partition `number` (from 1) of `disk`: `/dev/vda1`, `/dev/nvme0n1p1`.
pub fn partition_device(disk: &Path, number: usize) -> PathBuf {
    let name = disk.as_os_str().to_string_lossy();
    if name.ends_with(|c: char| c.is_ascii_digit()) {
        PathBuf::from(format!("{name}p{number}"))
    } else {
        PathBuf::from(format!("{name}{number}"))
    }
}

/// The newest kernel of a tree's `/boot` (`vmlinuz-<version>`, versions compared by their
/// numbers) and its `initrd.img-<version>` when there is one. Pure over the file names.
pub fn newest_kernel(names: &[String]) -> Option<(String, Option<String>)> {
    let key = |version: &str| -> Vec<u64> {
        version.split(|c: char| !c.is_ascii_digit()).filter(|p| !p.is_empty()).filter_map(|p| p.parse().ok()).collect()
    };
    let version = names.iter().filter_map(|n| n.strip_prefix("vmlinuz-")).max_by_key(|v| key(v))?;
    let initrd = format!("initrd.img-{version}");
    Some((format!("vmlinuz-{version}"), names.contains(&initrd).then_some(initrd)))
}

/// Installs the tree `body` onto `disk` (its path `disk_path`) as `layout` says.
#[allow(clippy::too_many_arguments)]
pub fn install(
    body: impl Read + Send + 'static,
    image: &ImageSource,
    layout: &PlannedLayout,
    hostname: Option<&str>,
    seed: &NoCloud,
    disk_path: &Path,
    disk: &mut File,
    tools: &Tools,
    on_progress: impl FnMut(u64),
) -> Result<(Written, String), InstallError> {
    let disk_name = disk_path.display().to_string();
    let disk_size =
        crate::install::size_of(disk).map_err(io_error(format!("failed to read the size of {disk_name}")))?;
    let placed = place(layout.partition_table, &layout.partitions, disk_size)
        .map_err(|why| step(format!("the partitions do not go on {disk_name}"))(why.to_string()))?;
    let mount_of = |i: usize| layout.partitions[i].mount_point.as_deref();
    let boot = (0..placed.len())
        .find(|i| mount_of(*i) == Some("/boot"))
        .or_else(|| (0..placed.len()).find(|i| mount_of(*i) == Some("/")));
    let root = (0..placed.len()).find(|i| mount_of(*i) == Some("/")).ok_or_else(|| step("layout")("no root".into()))?;
    let fresh: Vec<Fresh> = layout
        .partitions
        .iter()
        .zip(&placed)
        .enumerate()
        .map(|(i, (p, (start, len)))| {
            Ok(Fresh {
                start: *start,
                len: *len,
                filesystem: p.filesystem,
                esp: p.mount_point.as_deref() == Some("/boot/efi"),
                boot: Some(i) == boot,
                guid: crate::random::guid().map_err(io_error("failed to read /dev/urandom for a partition GUID"))?,
                name: p.label.clone().unwrap_or_else(|| format!("part{}", i + 1)),
            })
        })
        .collect::<Result<_, InstallError>>()?;
    let disk_guid = crate::random::guid().map_err(io_error("failed to read /dev/urandom for a partition GUID"))?;
    let code_path = match layout.partition_table {
        PartitionTable::Msdos => &tools.mbr,
        PartitionTable::Gpt => &tools.gptmbr,
    };
    let code = std::fs::read(code_path).map_err(io_error(format!("failed to read {}", code_path.display())))?;
    let tables = create(layout.partition_table, &fresh, disk_size, disk_guid, &code)
        .map_err(|why| step("failed to make the partition table")(why.to_string()))?;

    // Old signatures at both ends go first, then the tables.
    crate::install::wipe(disk);
    let tail = disk_size.saturating_sub(1 << 20);
    disk.seek(SeekFrom::Start(tail))
        .and_then(|_| disk.write_all(&vec![0u8; usize::try_from(disk_size - tail).unwrap_or(0)]))
        .map_err(io_error(format!("failed to clear the end of {disk_name}")))?;
    for write in &tables {
        disk.seek(SeekFrom::Start(write.offset))
            .and_then(|_| disk.write_all(&write.bytes))
            .map_err(io_error(format!("failed to write the partition table of {disk_name}")))?;
    }
    disk.sync_all().map_err(io_error(format!("failed to flush {disk_name}")))?;
    tracing::info!(disk = %disk_name, partitions = placed.len(), table = ?layout.partition_table, "partition table written");
    run(Command::new("blockdev").arg("--rereadpt").arg(disk_path))
        .map_err(step(format!("the kernel did not take the new partition table of {disk_name}")))?;
    let devices: Vec<PathBuf> = (1..=placed.len()).map(|n| partition_device(disk_path, n)).collect();
    wait_for_nodes(&devices, Duration::from_secs(10))?;
    tracing::info!(devices = ?devices, "partitions re-read");

    for (i, (partition, device)) in layout.partitions.iter().zip(&devices).enumerate() {
        match partition.filesystem {
            Filesystem::Ext4 => {
                let mut command = Command::new(&tools.mke2fs);
                command.args(["-t", "ext4", "-F", "-q"]);
                if Some(i) == boot {
                    command.args(["-O", "^64bit"]);
                }
                if let Some(label) = &partition.label {
                    command.args(["-L", label]);
                }
                run(command.arg(device)).map_err(step(format!("mke2fs {}", device.display())))?;
                tracing::info!(device = %device.display(), "ext4 made");
            }
            Filesystem::Vfat => {
                let mut options = fatfs::FormatVolumeOptions::new();
                if let Some(label) = &partition.label {
                    let mut name = [b' '; 11];
                    for (slot, byte) in name.iter_mut().zip(label.to_ascii_uppercase().bytes()) {
                        *slot = byte;
                    }
                    options = options.volume_label(name);
                }
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(device)
                    .map_err(io_error(format!("failed to open {}", device.display())))?;
                fatfs::format_volume(file, options)
                    .map_err(io_error(format!("failed to make FAT on {}", device.display())))?;
            }
            Filesystem::Swap => {
                let mut command = Command::new("mkswap");
                if let Some(label) = &partition.label {
                    command.args(["-L", label]);
                }
                run(command.arg(device)).map_err(step(format!("mkswap {}", device.display())))?;
            }
            Filesystem::Xfs => return Err(InstallError::Format("xfs file systems")),
        }
    }

    tracing::info!("file systems made");
    // Mount points, the root first, parents before children.
    let mut mounts: Vec<(usize, &str)> = (0..placed.len())
        .filter_map(|i| mount_of(i).map(|m| (i, m)))
        .filter(|(i, _)| layout.partitions[*i].filesystem != Filesystem::Swap)
        .collect();
    mounts.sort_by_key(|(_, m)| (m.matches('/').count(), m.len()));
    let mut mounted = Mounted { points: Vec::new() };
    for (i, point) in &mounts {
        let at = tools.target.join(point.trim_start_matches('/'));
        std::fs::create_dir_all(&at).map_err(io_error(format!("failed to create {}", at.display())))?;
        let kind = if layout.partitions[*i].filesystem == Filesystem::Vfat { "vfat" } else { "ext4" };
        // The drivers are modules: busybox modprobe loads them (no harm if built in).
        let _ = Command::new("modprobe").arg(kind).output();
        nix::mount::mount(
            Some(devices[*i].as_path()),
            at.as_path(),
            Some(kind),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|e| step(format!("failed to mount {} on {}", devices[*i].display(), at.display()))(e.to_string()))?;
        mounted.points.push(at);
    }

    tracing::info!(mounted = ?mounted.points, "file systems mounted; unpacking the tree");
    let (unpacked, downloaded, actual) = unpack(body, image, &tools.target, on_progress)?;
    tracing::info!(unpacked, downloaded, "tree unpacked");
    if !actual.eq_ignore_ascii_case(&image.sha256) {
        drop(mounted);
        crate::install::wipe(disk);
        return Err(InstallError::Checksum { expected: image.sha256.clone(), actual });
    }

    let target = &tools.target;
    let root_partuuid = partuuid(layout.partition_table, &fresh, root, &disk_guid);
    let fstab: String = (0..placed.len())
        .filter_map(|i| {
            let uuid = partuuid(layout.partition_table, &fresh, i, &disk_guid);
            match (layout.partitions[i].filesystem, mount_of(i)) {
                (Filesystem::Swap, _) => Some(format!("PARTUUID={uuid} none swap sw 0 0\n")),
                (Filesystem::Ext4, Some("/")) => Some(format!("PARTUUID={uuid} / ext4 errors=remount-ro 0 1\n")),
                (Filesystem::Ext4, Some(m)) => Some(format!("PARTUUID={uuid} {m} ext4 defaults 0 2\n")),
                (Filesystem::Vfat, Some(m)) => Some(format!("PARTUUID={uuid} {m} vfat umask=0077 0 1\n")),
                _ => None,
            }
        })
        .collect();
    write_file(&target.join("etc/fstab"), format!("# written by machinist\n{fstab}").as_bytes())?;
    if let Some(hostname) = hostname {
        write_file(&target.join("etc/hostname"), format!("{hostname}\n").as_bytes())?;
    }
    let seed_dir = target.join("var/lib/cloud/seed/nocloud");
    write_file(&seed_dir.join("meta-data"), seed.meta_data.as_bytes())?;
    write_file(&seed_dir.join("user-data"), seed.user_data.as_bytes())?;
    write_file(&seed_dir.join("vendor-data"), seed.vendor_data.as_bytes())?;
    if let Some(network) = &seed.network_config {
        write_file(&seed_dir.join("network-config"), network.as_bytes())?;
    }

    // The boot loader.
    let boot_dir = target.join("boot");
    let names: Vec<String> = std::fs::read_dir(&boot_dir)
        .map_err(io_error(format!("the tree has no /boot ({})", boot_dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    let (kernel, initrd) = newest_kernel(&names)
        .ok_or_else(|| step("no boot loader installed")("the tree has no /boot/vmlinuz-<version>".into()))?;
    let separate_boot = boot.is_some_and(|b| mount_of(b) == Some("/boot"));
    let prefix = if separate_boot { "" } else { "/boot" };
    let append = format!("root=PARTUUID={root_partuuid} ro {CONSOLES}");
    let entry = |kernel: &str, initrd: Option<&str>| {
        let initrd = initrd.map(|i| format!("  INITRD {i}\n")).unwrap_or_default();
        format!("DEFAULT linux\nPROMPT 0\nTIMEOUT 0\nLABEL linux\n  LINUX {kernel}\n{initrd}  APPEND {append}\n")
    };
    let extlinux_dir = boot_dir.join("extlinux");
    std::fs::create_dir_all(&extlinux_dir).map_err(io_error(format!("failed to create {}", extlinux_dir.display())))?;
    let config = entry(&format!("{prefix}/{kernel}"), initrd.as_deref().map(|i| format!("{prefix}/{i}")).as_deref());
    write_file(&extlinux_dir.join("extlinux.conf"), config.as_bytes())?;
    run(Command::new(&tools.extlinux).arg("--install").arg(&extlinux_dir))
        .map_err(step("failed to install extlinux"))?;
    tracing::info!(dir = %extlinux_dir.display(), "extlinux installed");
    let mut message = format!("{} partitions, tree unpacked, extlinux boots {prefix}/{kernel}", placed.len());
    if mounts.iter().any(|(_, m)| *m == "/boot/efi") {
        let esp = target.join("boot/efi");
        let efi = esp.join("EFI/BOOT");
        std::fs::create_dir_all(&efi).map_err(io_error(format!("failed to create {}", efi.display())))?;
        copy(&tools.syslinux_efi, &efi.join("BOOTX64.EFI"))?;
        copy(&tools.ldlinux_e64, &efi.join("ldlinux.e64"))?;
        copy(&boot_dir.join(&kernel), &esp.join("vmlinuz"))?;
        if let Some(initrd) = &initrd {
            copy(&boot_dir.join(initrd), &esp.join("initrd.img"))?;
        }
        let config = entry("/vmlinuz", initrd.as_ref().map(|_| "/initrd.img"));
        write_file(&efi.join("syslinux.cfg"), config.as_bytes())?;
        message.push_str(", EFI/BOOT/BOOTX64.EFI on the EFI system partition");
    }
    drop(mounted);
    let cidata = layout.partitions.iter().any(|p| {
        p.filesystem == Filesystem::Vfat
            && p.label.as_deref().is_some_and(|l| l.eq_ignore_ascii_case(crate::seed::LABEL))
    });
    if cidata {
        let written = crate::seed::write(disk, seed, false)
            .map_err(io_error(format!("failed to write the NoCloud seed on {disk_name}")))?;
        message.push_str(&format!("; {written}"));
    }
    disk.sync_all().map_err(io_error(format!("failed to flush {disk_name}")))?;
    Ok((Written { bytes: unpacked, downloaded }, message))
}

/// Mounted file systems, unmounted (children first) when dropped.
struct Mounted {
    points: Vec<PathBuf>,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        nix::unistd::sync();
        for point in self.points.iter().rev() {
            if let Err(error) = nix::mount::umount(point.as_path()) {
                tracing::warn!(%error, point = %point.display(), "failed to unmount");
            }
        }
    }
}

/// Streams the tree into `into`: hashed as downloaded, decompressed, unpacked. Returns the
/// tree's bytes, the bytes downloaded and the sha256.
fn unpack(
    body: impl Read + Send + 'static,
    image: &ImageSource,
    into: &Path,
    mut on_progress: impl FnMut(u64),
) -> Result<(u64, u64, String), InstallError> {
    let hashing = Hashing::new(body);
    let mut last = Instant::now();
    let mut counted = 0u64;
    let mut extract = |reader: &mut dyn Read| -> io::Result<()> {
        let counting = Counting { inner: reader, count: &mut counted, on_progress: &mut on_progress, last: &mut last };
        let mut archive = tar::Archive::new(counting);
        archive.set_preserve_permissions(true);
        archive.set_preserve_ownerships(true);
        archive.set_preserve_mtime(true);
        archive.set_overwrite(true);
        archive.unpack(into)
    };
    let failed = |source: io::Error| InstallError::Io { what: "failed to unpack the tree".into(), source };
    let mut hashing = match image.compression {
        Compression::None => {
            let mut hashing = hashing;
            extract(&mut hashing).map_err(failed)?;
            hashing
        }
        Compression::Gzip => {
            let mut decoder = flate2::read::MultiGzDecoder::new(hashing);
            extract(&mut decoder).map_err(failed)?;
            decoder.into_inner()
        }
        Compression::Zstd => {
            let mut hashing = hashing;
            let mut decoder = ruzstd::decoding::StreamingDecoder::new(&mut hashing)
                .map_err(|e| failed(io::Error::new(io::ErrorKind::InvalidData, e.to_string())))?;
            extract(&mut decoder).map_err(failed)?;
            drop(decoder);
            hashing
        }
        Compression::Xz => {
            // lzma-rs writes what it decodes: a thread decodes into a pipe the tree is read from.
            let (reader, mut writer) = io::pipe().map_err(io_error("failed to make a pipe"))?;
            let decoding = std::thread::spawn(move || {
                let mut buffered = BufReader::new(hashing);
                let result = lzma_rs::xz_decompress(&mut buffered, &mut writer);
                drop(writer);
                (result, buffered.into_inner())
            });
            let mut reader = reader;
            let extracted = extract(&mut reader);
            // Whatever the tree left unread, so that the decoder finishes.
            let _ = io::copy(&mut reader, &mut io::sink());
            let (decoded, hashing) = decoding.join().map_err(|_| step("xz")("the decoder panicked".into()))?;
            decoded.map_err(|e| failed(io::Error::new(io::ErrorKind::InvalidData, e.to_string())))?;
            extracted.map_err(failed)?;
            hashing
        }
    };
    // The hash covers the whole file (a tar's trailing zeros, anything after them).
    io::copy(&mut hashing, &mut io::sink()).map_err(io_error("failed to read the rest of the image"))?;
    let actual = crate::install::hex(&hashing.hasher.finalize());
    Ok((counted, hashing.read, actual))
}

struct Counting<'a, R: ?Sized, F> {
    inner: &'a mut R,
    count: &'a mut u64,
    on_progress: &'a mut F,
    last: &'a mut Instant,
}

impl<R: Read + ?Sized, F: FnMut(u64)> Read for Counting<'_, R, F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        *self.count += n as u64;
        if self.last.elapsed() >= Duration::from_secs(1) {
            *self.last = Instant::now();
            (self.on_progress)(*self.count);
        }
        Ok(n)
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), InstallError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_error(format!("failed to create {}", parent.display())))?;
    }
    std::fs::write(path, bytes).map_err(io_error(format!("failed to write {}", path.display())))
}

fn copy(from: &Path, to: &Path) -> Result<(), InstallError> {
    std::fs::copy(from, to).map(drop).map_err(io_error(format!(
        "failed to copy {} to {}",
        from.display(),
        to.display()
    )))
}

fn wait_for_nodes(devices: &[PathBuf], limit: Duration) -> Result<(), InstallError> {
    let started = Instant::now();
    while let Some(missing) = devices.iter().find(|d| !d.exists()) {
        if started.elapsed() > limit {
            return Err(step("the new partitions did not appear")(format!("no {} after {limit:?}", missing.display())));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("{command:?}: {}: {}", output.status, String::from_utf8_lossy(&output.stderr).trim()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_kernel_and_its_initrd() {
        let names: Vec<String> = [
            "config-6.1.0-9-amd64",
            "vmlinuz-6.1.0-9-amd64",
            "vmlinuz-6.1.0-28-amd64",
            "initrd.img-6.1.0-28-amd64",
            "grub",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        assert_eq!(
            newest_kernel(&names),
            Some(("vmlinuz-6.1.0-28-amd64".into(), Some("initrd.img-6.1.0-28-amd64".into())))
        );
        assert_eq!(newest_kernel(&names[..2]), Some(("vmlinuz-6.1.0-9-amd64".into(), None)));
        assert_eq!(newest_kernel(&["grub".to_owned()]), None);
    }

    /// A tar entry whose name is written raw (the builder refuses hostile names).
    fn raw_entry(archive: &mut Vec<u8>, name: &str, kind: tar::EntryType, link: &str, data: &[u8]) {
        let mut header = tar::Header::new_old();
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_entry_type(kind);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(data.len() as u64);
        header.set_cksum();
        archive.extend_from_slice(header.as_bytes());
        archive.extend_from_slice(data);
        archive.resize(archive.len().div_ceil(512) * 512, 0);
    }

    fn source(bytes: &[u8]) -> ImageSource {
        let sha256 = crate::install::hex(&sha2::Sha256::digest(bytes));
        ImageSource {
            url: "http://x/tree.tar".into(),
            sha256,
            format: machinist_agent_protocol::install::ImageFormat::Tar,
            compression: Compression::None,
            grow_last_partition: false,
        }
    }

    #[test]
    fn a_hostile_tree_writes_nothing_outside_the_target() {
        let outside = tempfile::tempdir().unwrap();
        let escape = outside.path().join("escaped");
        let absolute = escape.display().to_string();
        let dir = outside.path().display().to_string();
        type Entry<'a> = (&'a str, tar::EntryType, &'a str);
        let cases: [&[Entry<'_>]; 3] = [
            &[("../escaped", tar::EntryType::Regular, "")],
            // An absolute name lands inside the target (its leading `/` dropped), as GNU tar does.
            &[(absolute.as_str(), tar::EntryType::Regular, "")],
            &[("link", tar::EntryType::Symlink, dir.as_str()), ("link/escaped", tar::EntryType::Regular, "")],
        ];
        for case in cases {
            let target = tempfile::tempdir().unwrap();
            let mut archive = Vec::new();
            raw_entry(&mut archive, "boot/vmlinuz-1", tar::EntryType::Regular, "", b"kernel");
            for (name, kind, link) in case {
                raw_entry(&mut archive, name, *kind, link, b"x");
            }
            archive.extend_from_slice(&[0; 1024]);
            let image = source(&archive);
            let outcome = unpack(std::io::Cursor::new(archive), &image, target.path(), |_| {});
            assert!(!escape.exists(), "{case:?} escaped the target ({:?})", outcome.map(|_| ()));
            assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "{case:?}");
            assert_eq!(std::fs::read(target.path().join("boot/vmlinuz-1")).unwrap(), b"kernel");
        }
    }

    #[test]
    fn the_tree_is_hashed_as_downloaded_and_corrupt_archives_fail() {
        let target = tempfile::tempdir().unwrap();
        let mut archive = Vec::new();
        raw_entry(&mut archive, "etc/hostname", tar::EntryType::Regular, "", b"web\n");
        archive.extend_from_slice(&[0; 1024]);
        let image = source(&archive);
        let (bytes, downloaded, sha) =
            unpack(std::io::Cursor::new(archive.clone()), &image, target.path(), |_| {}).unwrap();
        assert_eq!((sha, downloaded), (image.sha256.clone(), archive.len() as u64));
        assert!(bytes >= 512 * 2, "{bytes}");
        let mut gzip = image.clone();
        gzip.compression = Compression::Gzip;
        let error = unpack(std::io::Cursor::new(archive), &gzip, target.path(), |_| {}).unwrap_err();
        assert!(error.to_string().contains("failed to unpack the tree"), "{error}");
    }

    #[test]
    fn partition_nodes_follow_the_kernel_names() {
        assert_eq!(partition_device(Path::new("/dev/vda"), 2), Path::new("/dev/vda2"));
        assert_eq!(partition_device(Path::new("/dev/nvme0n1"), 1), Path::new("/dev/nvme0n1p1"));
        assert_eq!(partition_device(Path::new("/dev/loop3"), 1), Path::new("/dev/loop3p1"));
    }
}
