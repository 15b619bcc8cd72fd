//! `onSuccess: kexec`: booting the installed system's kernel straight from the RAM disk, without
//! going through the firmware again. The agent looks for the installed system's boot entry on
//! the disk it has just written, in-process (no mount): the default entry of a syslinux or
//! extlinux configuration on a FAT or ext2/3/4 partition, or else the first top-level
//! `menuentry` of GRUB's `grub.cfg` on an ext2/3/4 partition. It reads that entry's kernel and
//! initrds, writes them to the RAM disk's `/tmp` and hands them to kexec-tools' `kexec -l`;
//! `reboot(2)` with `LINUX_REBOOT_CMD_KEXEC` then starts them. Whatever fails on the way leaves
//! the caller a firmware reboot, which boots the same disk (the install has succeeded).
//!
//! Paths in a syslinux configuration are relative to its directory unless absolute; paths in
//! `grub.cfg` are read from the partition holding it (GRUB's `$root` for the usual layouts:
//! `/boot` on the root file system, or a `/boot` partition of its own). GRUB variables (`$…`)
//! in the kernel's arguments are left out, `search` and `set root` are not followed.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::seed::{Slice, Span, partitions};

/// Where the RAM disk carries kexec-tools' `kexec`.
pub const KEXEC: &str = "/sbin/kexec";
/// Largest configuration file read.
const MAX_CONFIG: u64 = 1 << 20;
/// Largest kernel or initrd read (they are held in the RAM disk's memory).
const MAX_IMAGE: u64 = 512 << 20;

/// Configuration files looked for on a FAT partition (names are case-insensitive there).
const FAT_CONFIGS: &[&str] = &[
    "syslinux.cfg",
    "syslinux/syslinux.cfg",
    "boot/syslinux/syslinux.cfg",
    "extlinux.conf",
    "extlinux/extlinux.conf",
    "boot/extlinux/extlinux.conf",
    "EFI/BOOT/syslinux.cfg",
];
/// Configuration files looked for on an ext2/3/4 partition, syslinux's before GRUB's.
const EXT_CONFIGS: &[&str] = &[
    "/boot/extlinux/extlinux.conf",
    "/extlinux/extlinux.conf",
    "/boot/syslinux/syslinux.cfg",
    "/syslinux/syslinux.cfg",
    "/boot/grub/grub.cfg",
    "/grub/grub.cfg",
];

/// A boot entry: what to load and the kernel's command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootEntry {
    /// The kernel, a path on the partition (absolute).
    pub kernel: String,
    /// The initrds, in order (concatenated when more than one).
    pub initrds: Vec<String>,
    /// The kernel's command line.
    pub append: String,
}

/// What went wrong preparing a kexec.
#[derive(Debug, thiserror::Error)]
pub enum KexecError {
    /// Reading the disk failed.
    #[error("reading {what}: {source}")]
    Io {
        /// What was being read.
        what: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// No partition holds a boot configuration this can read.
    #[error("no syslinux, extlinux or GRUB configuration with a kernel on the installed disk")]
    NoEntry,
    /// The entry names a file that is missing or too large.
    #[error("{0}")]
    File(String),
    /// `kexec -l` failed.
    #[error("`kexec -l` failed: {0}")]
    Load(String),
}

/// Where the entry came from and its files' contents.
#[derive(Debug)]
pub struct Found {
    /// The entry.
    pub entry: BootEntry,
    /// The partition's first byte on the disk.
    pub partition: u64,
    /// The configuration file it came from.
    pub config: String,
    /// The kernel's bytes.
    pub kernel: Vec<u8>,
    /// The initrds' bytes, concatenated.
    pub initrd: Vec<u8>,
}

/// The default entry of a syslinux/extlinux configuration read from `dir` (the directory of
/// the file, for relative paths): the label `DEFAULT` names, else the one marked
/// `MENU DEFAULT`, else the first; `APPEND` outside labels applies to labels without one.
/// Pure; `None` without a label that has a kernel.
pub fn syslinux_entry(config: &str, dir: &str) -> Option<BootEntry> {
    #[derive(Default)]
    struct Label {
        name: String,
        kernel: Option<String>,
        initrds: Vec<String>,
        append: Option<String>,
        menu_default: bool,
    }
    let (mut labels, mut default, mut global_append) = (Vec::<Label>::new(), None, None);
    for line in config.lines() {
        let line = line.trim();
        let (keyword, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let rest = rest.trim();
        match keyword.to_ascii_uppercase().as_str() {
            "DEFAULT" => default = rest.split_whitespace().next().map(str::to_owned),
            "LABEL" => labels.push(Label { name: rest.to_owned(), ..Label::default() }),
            "MENU" if rest.eq_ignore_ascii_case("DEFAULT") => {
                if let Some(label) = labels.last_mut() {
                    label.menu_default = true;
                }
            }
            "KERNEL" | "LINUX" => {
                if let Some(label) = labels.last_mut() {
                    label.kernel = rest.split_whitespace().next().map(str::to_owned);
                }
            }
            "INITRD" => {
                if let Some(label) = labels.last_mut() {
                    label.initrds =
                        rest.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_owned).collect();
                }
            }
            "APPEND" => match labels.last_mut() {
                Some(label) => label.append = Some(rest.to_owned()),
                None => global_append = Some(rest.to_owned()),
            },
            _ => {}
        }
    }
    let chosen = default
        .and_then(|name| labels.iter().position(|l| l.name == name))
        .or_else(|| labels.iter().position(|l| l.menu_default))
        .or_else(|| labels.iter().position(|l| l.kernel.is_some()))?;
    let label = labels.get(chosen)?;
    let kernel = label.kernel.as_deref()?;
    let mut append = label.append.clone().or(global_append).unwrap_or_default();
    if append == "-" {
        append.clear();
    }
    // `initrd=` in APPEND is syslinux's other way of naming initrds.
    let mut initrds = label.initrds.clone();
    let words: Vec<&str> = append.split_whitespace().collect();
    let mut kept = Vec::new();
    for word in words {
        match word.strip_prefix("initrd=") {
            Some(paths) => initrds.extend(paths.split(',').filter(|p| !p.is_empty()).map(str::to_owned)),
            None => kept.push(word),
        }
    }
    let resolve = |path: &str| if path.starts_with('/') { path.to_owned() } else { join(dir, path) };
    Some(BootEntry {
        kernel: resolve(kernel),
        initrds: initrds.iter().map(|p| resolve(p)).collect(),
        append: kept.join(" "),
    })
}

/// The first top-level `menuentry` of a `grub.cfg` with a `linux` line (submenus are skipped).
/// Pure; words with GRUB variables (`$…`) are left out of the command line.
pub fn grub_entry(config: &str) -> Option<BootEntry> {
    let (mut depth, mut inside, mut kernel, mut initrds, mut append) = (0usize, false, None, Vec::new(), Vec::new());
    for line in config.lines() {
        let line = line.trim();
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if depth == 0 && first == "menuentry" {
            inside = true;
            (kernel, initrds, append) = (None, Vec::new(), Vec::new());
        }
        if inside && depth == 1 {
            match first {
                "linux" | "linuxefi" | "linux16" => {
                    kernel = words.next().map(str::to_owned);
                    append = words.filter(|w| !w.contains('$')).map(str::to_owned).collect();
                }
                "initrd" | "initrdefi" | "initrd16" => initrds = words.map(str::to_owned).collect(),
                _ => {}
            }
        }
        // Braces outside quotes open and close blocks.
        let mut quote = None;
        for c in line.chars() {
            match (quote, c) {
                (None, '\'' | '"') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, '{') => depth += 1,
                (None, '}') => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 && inside {
                        inside = false;
                        if let Some(kernel) = kernel.take() {
                            return Some(BootEntry { kernel, initrds, append: append.join(" ") });
                        }
                    }
                }
                _ => {}
            }
        }
    }
    None
}

fn join(dir: &str, path: &str) -> String {
    let dir = dir.trim_matches('/');
    if dir.is_empty() { format!("/{path}") } else { format!("/{dir}/{path}") }
}

/// Finds the installed system's boot entry on `disk` and reads its files.
pub fn find(disk: &Path) -> Result<Found, KexecError> {
    let io_error = |what: String| move |source| KexecError::Io { what, source };
    let file = File::open(disk).map_err(io_error(disk.display().to_string()))?;
    let mut head = vec![0u8; 34 * 512];
    let read =
        read_prefix(&file, 0, &mut head).map_err(io_error(format!("the partition table of {}", disk.display())))?;
    head.truncate(read);
    for span in partitions(&head) {
        let reader = Slice::new(file.try_clone().map_err(io_error(disk.display().to_string()))?, span);
        let found = match filesystem(&file, span) {
            Some(Filesystem::Fat) => from_fat(reader)?,
            Some(Filesystem::Ext) => from_ext(reader)?,
            None => None,
        };
        if let Some((config, entry, kernel, initrd)) = found {
            return Ok(Found { entry, partition: span.start, config, kernel, initrd });
        }
    }
    Err(KexecError::NoEntry)
}

/// Loads `found` with `kexec -l` (`kexec`: the program), its files written under `scratch`.
pub fn load(found: &Found, kexec: &Path, scratch: &Path) -> Result<(), KexecError> {
    let io_error = |what: String| move |source| KexecError::Io { what, source };
    let kernel = scratch.join("machinist-kexec-kernel");
    std::fs::write(&kernel, &found.kernel).map_err(io_error(kernel.display().to_string()))?;
    let mut command = Command::new(kexec);
    command.arg("-l").arg(&kernel).arg(format!("--append={}", found.entry.append));
    if !found.initrd.is_empty() {
        let initrd = scratch.join("machinist-kexec-initrd");
        std::fs::write(&initrd, &found.initrd).map_err(io_error(initrd.display().to_string()))?;
        command.arg(format!("--initrd={}", initrd.display()));
    }
    let output = command.output().map_err(io_error(format!("running {}", kexec.display())))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(KexecError::Load(format!("{}: {}", output.status, String::from_utf8_lossy(&output.stderr).trim())))
    }
}

enum Filesystem {
    Fat,
    Ext,
}

/// What the partition holds, from its first sectors: ext2/3/4's superblock magic (0xEF53 at
/// byte 1080) or a FAT boot sector (0x55AA and a FAT type string).
fn filesystem(file: &File, span: Span) -> Option<Filesystem> {
    let mut head = [0u8; 2048];
    let read = read_prefix(file, span.start, &mut head).ok()?;
    if read < head.len() || span.len < 4096 {
        return None;
    }
    if head[1080..1082] == [0x53, 0xef] {
        return Some(Filesystem::Ext);
    }
    let fat = head[510..512] == [0x55, 0xaa] && (head[54..57] == *b"FAT" || head[82..87] == *b"FAT32");
    fat.then_some(Filesystem::Fat)
}

type Entry = (String, BootEntry, Vec<u8>, Vec<u8>);

fn from_fat(reader: Slice<File>) -> Result<Option<Entry>, KexecError> {
    let Ok(fs) = fatfs::FileSystem::new(reader, fatfs::FsOptions::new()) else { return Ok(None) };
    let root = fs.root_dir();
    let read = |path: &str, limit: u64| -> Result<Option<Vec<u8>>, KexecError> {
        let path = path.trim_start_matches('/');
        let Ok(mut file) = root.open_file(path) else { return Ok(None) };
        let mut bytes = Vec::new();
        (&mut file)
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| KexecError::Io { what: path.to_owned(), source })?;
        if bytes.len() as u64 > limit {
            return Err(KexecError::File(format!("{path} is larger than {limit} bytes")));
        }
        Ok(Some(bytes))
    };
    for config in FAT_CONFIGS {
        let Some(text) = read(config, MAX_CONFIG)? else { continue };
        let dir = config.rsplit_once('/').map_or("", |(dir, _)| dir);
        if let Some(entry) = syslinux_entry(&String::from_utf8_lossy(&text), dir) {
            return entry_files(format!("/{config}"), entry, |path| read(path, MAX_IMAGE)).map(Some);
        }
    }
    Ok(None)
}

fn from_ext(reader: Slice<File>) -> Result<Option<Entry>, KexecError> {
    let Ok(fs) = ext4_view::Ext4::load(Box::new(reader)) else { return Ok(None) };
    let read = |path: &str, limit: u64| -> Result<Option<Vec<u8>>, KexecError> {
        match fs.metadata(path) {
            Ok(metadata) if metadata.len() > limit => {
                Err(KexecError::File(format!("{path} is larger than {limit} bytes")))
            }
            Ok(_) => fs.read(path).map(Some).map_err(|e| KexecError::File(format!("{path}: {e}"))),
            Err(_) => Ok(None),
        }
    };
    for config in EXT_CONFIGS {
        let Some(text) = read(config, MAX_CONFIG)? else { continue };
        let text = String::from_utf8_lossy(&text);
        let entry = if config.ends_with("grub.cfg") {
            grub_entry(&text)
        } else {
            syslinux_entry(&text, config.rsplit_once('/').map_or("", |(dir, _)| dir))
        };
        if let Some(entry) = entry {
            return entry_files((*config).to_owned(), entry, |path| read(path, MAX_IMAGE)).map(Some);
        }
    }
    Ok(None)
}

fn entry_files(
    config: String,
    entry: BootEntry,
    read: impl Fn(&str) -> Result<Option<Vec<u8>>, KexecError>,
) -> Result<Entry, KexecError> {
    let missing = |path: &str| KexecError::File(format!("{config} names {path}, which is not on its partition"));
    let kernel = read(&entry.kernel)?.ok_or_else(|| missing(&entry.kernel))?;
    let mut initrd = Vec::new();
    for path in &entry.initrds {
        initrd.extend(read(path)?.ok_or_else(|| missing(path))?);
    }
    Ok((config, entry, kernel, initrd))
}

/// Reads as much of `buf` as the file has from `at`.
fn read_prefix(file: &File, at: u64, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], at + filled as u64)? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// ext4-view reads a boot partition through the same [`Slice`] the seed is written with
/// (owned: the file system keeps its reader).
impl ext4_view::Ext4Read for Slice<File> {
    fn read(&mut self, start: u64, dst: &mut [u8]) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        let end = start.checked_add(dst.len() as u64).filter(|end| *end <= self.span.len);
        if end.is_none() {
            return Err("read past the end of the partition".into());
        }
        Ok(self.file.read_exact_at(dst, self.span.start + start)?)
    }
}

/// The scratch directory for the kernel and initrd handed to kexec: the RAM disk's `/tmp`.
pub fn scratch_dir() -> PathBuf {
    std::env::temp_dir()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::FileExt;

    #[test]
    fn syslinux_default_label_and_relative_paths() {
        let config = "DEFAULT system\nPROMPT 0\nTIMEOUT 0\nLABEL rescue\n  LINUX /rescue\nLABEL system\n  LINUX vmlinuz\n  INITRD /initrd.gz,extra.img\n  APPEND console=ttyS0 panic=-1\n";
        assert_eq!(
            syslinux_entry(config, "boot/syslinux"),
            Some(BootEntry {
                kernel: "/boot/syslinux/vmlinuz".into(),
                initrds: vec!["/initrd.gz".into(), "/boot/syslinux/extra.img".into()],
                append: "console=ttyS0 panic=-1".into(),
            })
        );
    }

    #[test]
    fn syslinux_menu_default_global_append_and_initrd_in_append() {
        let config = "UI menu.c32\nAPPEND quiet\nlabel a\n kernel /a\nlabel b\n menu default\n kernel /b\n append root=/dev/sda1 initrd=/b.img ro\nlabel c\n kernel /c\n";
        let entry = syslinux_entry(config, "").unwrap();
        assert_eq!(
            (entry.kernel.as_str(), entry.initrds.as_slice(), entry.append.as_str()),
            ("/b", &["/b.img".to_owned()][..], "root=/dev/sda1 ro")
        );
        let first = syslinux_entry("APPEND quiet\nLABEL a\n KERNEL /a\n", "").unwrap();
        assert_eq!(first.append, "quiet", "a label without APPEND takes the global one");
        assert_eq!(syslinux_entry("DEFAULT x\nPROMPT 1\n", ""), None, "no label");
        assert_eq!(syslinux_entry("LABEL a\n APPEND x\n", ""), None, "no kernel");
    }

    #[test]
    fn grub_first_top_level_entry() {
        let config = r#"
set default="0"
if [ x"${feature_menuentry_id}" = xy ]; then
  menuentry_id_option="--id"
fi
function load_video {
  insmod all_video
}
menuentry 'Debian GNU/Linux' --class debian $menuentry_id_option 'gnulinux-simple-1' {
	load_video
	insmod ext2
	search --no-floppy --fs-uuid --set=root 1234
	echo	'Loading Linux 6.1.0-28-cloud-amd64 ...'
	linux	/boot/vmlinuz-6.1.0-28-cloud-amd64 root=PARTUUID=abcd ro console=ttyS0 $vt_handoff
	initrd	/boot/initrd.img-6.1.0-28-cloud-amd64
}
submenu 'Advanced options' {
	menuentry 'Debian, recovery' {
		linux /boot/other
	}
}
"#;
        assert_eq!(
            grub_entry(config),
            Some(BootEntry {
                kernel: "/boot/vmlinuz-6.1.0-28-cloud-amd64".into(),
                initrds: vec!["/boot/initrd.img-6.1.0-28-cloud-amd64".into()],
                append: "root=PARTUUID=abcd ro console=ttyS0".into(),
            })
        );
        assert_eq!(grub_entry("submenu 'x' {\n menuentry 'y' {\n  linux /k\n }\n}\n"), None, "submenus are skipped");
        assert_eq!(grub_entry("menuentry 'no kernel' {\n chainloader +1\n}\n"), None);
    }

    /// A disk file of `size` bytes with an MBR of `(type, start sector, sectors)` entries.
    fn disk(size: u64, entries: &[(u8, u32, u32)]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        file.as_file().set_len(size).unwrap();
        let mut mbr = [0u8; 512];
        for (i, (kind, start, count)) in entries.iter().enumerate() {
            let e = &mut mbr[446 + i * 16..446 + (i + 1) * 16];
            e[4] = *kind;
            e[8..12].copy_from_slice(&start.to_le_bytes());
            e[12..16].copy_from_slice(&count.to_le_bytes());
        }
        mbr[510..].copy_from_slice(&[0x55, 0xaa]);
        file.as_file().write_all_at(&mbr, 0).unwrap();
        file
    }

    fn fat_with(disk: &tempfile::NamedTempFile, start: u32, count: u32, files: &[(&str, &[u8])]) {
        // Made apart, then copied into the disk at its partition.
        let image = tempfile::NamedTempFile::new().unwrap();
        image.as_file().set_len(u64::from(count) * 512).unwrap();
        fatfs::format_volume(image.reopen().unwrap(), fatfs::FormatVolumeOptions::new()).unwrap();
        let fs = fatfs::FileSystem::new(image.reopen().unwrap(), fatfs::FsOptions::new()).unwrap();
        for (path, bytes) in files {
            let mut dir = fs.root_dir();
            let parts: Vec<&str> = path.split('/').collect();
            for part in &parts[..parts.len() - 1] {
                dir = dir.create_dir(part).unwrap();
            }
            dir.create_file(parts[parts.len() - 1]).unwrap().write_all(bytes).unwrap();
        }
        fs.unmount().unwrap();
        disk.as_file().write_all_at(&std::fs::read(image.path()).unwrap(), u64::from(start) * 512).unwrap();
    }

    /// An ext4 file system made by Debian's `mkfs.ext4 -d` from `files`, copied into the disk.
    fn ext4_with(disk: &tempfile::NamedTempFile, start: u32, count: u32, files: &[(&str, &[u8])]) {
        let tree = tempfile::tempdir().unwrap();
        for (path, bytes) in files {
            let at = tree.path().join(path.trim_start_matches('/'));
            std::fs::create_dir_all(at.parent().unwrap()).unwrap();
            std::fs::write(at, bytes).unwrap();
        }
        let image = tempfile::NamedTempFile::new().unwrap();
        let output = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-d"])
            .arg(tree.path())
            .arg(image.path())
            .arg(format!("{}k", u64::from(count) / 2))
            .output()
            .expect("mkfs.ext4 (e2fsprogs)");
        assert!(output.status.success(), "mkfs.ext4: {}", String::from_utf8_lossy(&output.stderr));
        let bytes = std::fs::read(image.path()).unwrap();
        disk.as_file().write_all_at(&bytes, u64::from(start) * 512).unwrap();
    }

    #[test]
    fn the_syslinux_entry_of_a_fat_boot_partition_is_found_and_read() {
        let disk = disk(8 << 20, &[(0x0e, 2048, 8192), (0x0c, 10240, 4096)]);
        let cfg =
            b"DEFAULT system\nLABEL system\n  LINUX /vmlinuz\n  INITRD /initrd.gz\n  APPEND console=ttyS0 panic=-1\n";
        fat_with(&disk, 2048, 8192, &[("syslinux.cfg", cfg), ("vmlinuz", b"KERNEL"), ("initrd.gz", b"INITRD")]);
        fat_with(&disk, 10240, 4096, &[]);
        let found = find(disk.path()).unwrap();
        assert_eq!((found.partition, found.config.as_str()), (2048 * 512, "/syslinux.cfg"));
        assert_eq!((found.kernel.as_slice(), found.initrd.as_slice()), (&b"KERNEL"[..], &b"INITRD"[..]));
        assert_eq!(found.entry.append, "console=ttyS0 panic=-1");
    }

    #[test]
    fn grub_on_ext4_after_an_empty_efi_partition() {
        let disk = disk(24 << 20, &[(0xef, 2048, 4096), (0x83, 8192, 32768)]);
        fat_with(&disk, 2048, 4096, &[("EFI/BOOT/BOOTX64.EFI", b"MZ")]);
        let grub =
            b"menuentry 'Debian' {\n\tlinux /boot/vmlinuz-6.1 root=LABEL=root ro\n\tinitrd /boot/initrd.img-6.1\n}\n";
        ext4_with(
            &disk,
            8192,
            32768,
            &[("/boot/grub/grub.cfg", grub), ("/boot/vmlinuz-6.1", b"K61"), ("/boot/initrd.img-6.1", b"I61")],
        );
        let found = find(disk.path()).unwrap();
        assert_eq!((found.partition, found.config.as_str()), (8192 * 512, "/boot/grub/grub.cfg"));
        assert_eq!((found.kernel.as_slice(), found.initrd.as_slice()), (&b"K61"[..], &b"I61"[..]));
        assert_eq!(found.entry.append, "root=LABEL=root ro");
    }

    #[test]
    fn a_missing_kernel_or_no_configuration_says_so() {
        let disk1 = disk(8 << 20, &[(0x0c, 2048, 8192)]);
        fat_with(&disk1, 2048, 8192, &[("syslinux.cfg", b"LABEL a\n LINUX /gone\n")]);
        let error = find(disk1.path()).unwrap_err().to_string();
        assert!(error.contains("/gone"), "{error}");
        let disk2 = disk(8 << 20, &[(0x83, 2048, 8192)]);
        assert!(matches!(find(disk2.path()), Err(KexecError::NoEntry)), "a partition of zeros");
        let bare = tempfile::NamedTempFile::new().unwrap();
        assert!(matches!(find(bare.path()), Err(KexecError::NoEntry)), "no partition table");
    }
}
