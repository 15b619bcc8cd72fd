//! The demo's installed system (and the install tests'): a small raw disk image that boots
//! under BIOS (SeaBIOS) and UEFI (OVMF), built here without a container engine.
//!
//! Layout (MBR): partition 1, FAT16 `BOOT` (active): `syslinux` for BIOS (its boot sector,
//! `ldlinux.sys`, with syslinux's `mbr.bin` in the MBR) and `EFI/BOOT/BOOTX64.EFI` (syslinux's
//! EFI loader, with `ldlinux.e64`) for UEFI, both reading the same `syslinux.cfg`, which boots
//! the Debian kernel and an initramfs built by `machinist-ramdisk` around [`INIT_SCRIPT`];
//! partition 2, FAT12 `CIDATA`, empty: the agent writes the NoCloud seed there.
//!
//! The same system as a tree (`system.tar.gz`: `boot/vmlinuz-<release>`, `boot/initrd.img-<release>`)
//! is what Roles with `format: tar` install; the agent makes its partitions and boot loader.
//!
//! The init mounts `CIDATA` (or finds cloud-init's seed directory in an ext4 partition), takes its hostname from `meta-data`, gets its address by DHCP
//! (the boot services reserve the CMDB address), serves its hostname over HTTP on port 80, and
//! POSTs to the phone-home URL of `vendor-data` (as cloud-init's `phone_home` would), printing [`BOOTED`], [`NETWORK`] and
//! [`PHONED_HOME`] lines on the console.
//!
//! Host programs: those of `machinist-ramdisk` (the initramfs), and `mformat`, `mmd`, `mcopy`
//! (mtools), `syslinux` with `/usr/lib/syslinux/mbr/mbr.bin` (syslinux, syslinux-common),
//! `/usr/lib/SYSLINUX.EFI/efi64/syslinux.efi` (syslinux-efi), `gzip`, `sha256sum`
//! ([`PROGRAMS`]).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use machinist_ramdisk::{Init, RamdiskRecipe};

/// Host programs the image is built with.
pub const PROGRAMS: &[&str] = &["mformat", "mmd", "mcopy", "syslinux", "gzip", "sha256sum", "tar"];

/// Why the image could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SystemImageError {
    /// The initramfs could not be built.
    #[error("failed to build the system's initramfs: {0}")]
    Ramdisk(#[from] machinist_ramdisk::Error),
    /// A step failed.
    #[error("failed to build the system image: {what}: {why}")]
    Step {
        /// The step.
        what: String,
        /// Why.
        why: String,
    },
}

type Result<T> = std::result::Result<T, SystemImageError>;

/// Printed once the system's init runs.
pub const BOOTED: &str = "MACHINIST-SYSTEM-BOOTED";
/// Printed with `hostname=… address=…` once its network is up.
pub const NETWORK: &str = "MACHINIST-SYSTEM-NETWORK";
/// Printed once the phone-home was accepted.
pub const PHONED_HOME: &str = "MACHINIST-SYSTEM-PHONED-HOME";

/// Modules: the NIC and disk drivers, FAT for `CIDATA`, ext4 for a tree's seed directory.
const MODULES: &[&str] = &[
    "af_packet",
    "virtio_pci",
    "virtio_net",
    "virtio_blk",
    "e1000",
    "fat",
    "vfat",
    "nls_cp437",
    "nls_ascii",
    "nls_utf8",
    "nls_iso8859-1",
    "ext4",
    "crc32c_generic",
];

/// The system's `/init`.
pub const INIT_SCRIPT: &str = r#"#!/bin/busybox sh
# machinist-e2e installed system (e2e/src/system.rs): seed, hostname, DHCP, HTTP, phone-home.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read -r module; do insmod "$module" 2>/dev/null; done < /etc/machinist/modules
echo "MACHINIST-SYSTEM-BOOTED"
mkdir -p /seed /www
# The seed: a FAT partition with meta-data (CIDATA), or cloud-init's seed directory in an
# ext4 root (trees unpacked by the agent).
seeded=no
seed=/seed
for try in 1 2 3 4 5 6 7 8 9 10; do
  for part in /dev/vd?[0-9] /dev/sd?[0-9]; do
    [ -b "$part" ] || continue
    if mount -t vfat -o ro "$part" /seed 2>/dev/null || mount -t ext4 -o ro "$part" /seed 2>/dev/null; then
      if [ -f /seed/meta-data ]; then seeded=yes; break 2; fi
      if [ -f /seed/var/lib/cloud/seed/nocloud/meta-data ]; then
        seed=/seed/var/lib/cloud/seed/nocloud; seeded=yes; break 2
      fi
      umount /seed
    fi
  done
  sleep 1
done
value() { sed -n "s/^ *$1: *\"\{0,1\}\([^\"]*\)\"\{0,1\} *$/\1/p" "$2" | head -n 1; }
name=$(value local-hostname $seed/meta-data)
url=$(value url $seed/vendor-data)
[ -n "$name" ] && hostname "$name"
ip link set lo up
ip link set eth0 up
udhcpc -i eth0 -n -q -t 30 -s /usr/share/udhcpc/default.script >/dev/null 2>&1
address=$(ip -4 -o addr show eth0 | sed -n 's/.* inet \([0-9.]*\)\/.*/\1/p')
echo "MACHINIST-SYSTEM-NETWORK seed=$seeded hostname=$(hostname) address=$address"
hostname > /www/index.html
httpd -p 80 -h /www
answer=none
for try in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
  if [ -n "$url" ] && wget -q -O /dev/null --post-data "instance_id=$name&hostname=$(hostname)" "$url"; then
    answer=ok
    break
  fi
  sleep 2
done
echo "MACHINIST-SYSTEM-PHONED-HOME $answer"
while :; do sleep 3600; done
"#;

/// The image and its checksum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemImage {
    /// The raw disk image.
    pub raw: PathBuf,
    /// The same, gzip-compressed (`gzip -9 -n`).
    pub gzip: PathBuf,
    /// SHA-256 of [`gzip`](Self::gzip), hex.
    pub gzip_sha256: String,
    /// Bytes of [`raw`](Self::raw).
    pub size: u64,
    /// The same system as a tree of files, for Roles with `format: tar`: `boot/vmlinuz-<release>`,
    /// `boot/initrd.img-<release>` and an empty `etc/`, gzip-compressed (`tar | gzip -9 -n`,
    /// owners root, times zero).
    pub tree: PathBuf,
    /// SHA-256 of [`tree`](Self::tree), hex.
    pub tree_sha256: String,
}

const MIB: u64 = 1024 * 1024;
const BOOT_START: u64 = MIB;
const BOOT_SIZE: u64 = 20 * MIB;
const CIDATA_START: u64 = BOOT_START + BOOT_SIZE;
const CIDATA_SIZE: u64 = 2 * MIB;
const IMAGE_SIZE: u64 = CIDATA_START + CIDATA_SIZE + MIB;

const SYSLINUX_CFG: &str = "DEFAULT system\nPROMPT 0\nTIMEOUT 0\nLABEL system\n  LINUX /vmlinuz\n  INITRD /initrd.gz\n  APPEND console=ttyS0 panic=-1\n";

/// The initramfs recipe.
pub fn recipe() -> RamdiskRecipe {
    RamdiskRecipe {
        kernel_package: None,
        modules: MODULES.iter().map(|m| (*m).to_owned()).collect(),
        agent: None,
        init: Init::Script(INIT_SCRIPT.to_owned()),
        extra_files: Vec::new(),
        firmware: machinist_ramdisk::FirmwareSources::none(),
        programs: Vec::new(),
        package_files: Vec::new(),
    }
}

impl SystemImage {
    /// The image under the cache `root` (where `machinist_ramdisk::build_cached` keeps the
    /// initramfs), built the first time. Concurrent builders each build in a scratch directory
    /// and rename it into place.
    pub fn build_cached(root: &Path) -> Result<Self> {
        let built = machinist_ramdisk::build_cached(&recipe(), root)?;
        let dir = built.initrd.parent().unwrap_or(root).join("system-image");
        let raw = dir.join("system.raw");
        let gzip = dir.join("system.raw.gz");
        let sum = dir.join("system.raw.gz.sha256");
        let tree = dir.join("system.tar.gz");
        let tree_sum = dir.join("system.tar.gz.sha256");
        if !(raw.is_file() && gzip.is_file() && sum.is_file() && tree.is_file() && tree_sum.is_file()) {
            let scratch = tempfile::Builder::new()
                .prefix(".system-")
                .tempdir_in(built.initrd.parent().unwrap_or(root))
                .map_err(|e| setup("a scratch directory", e))?;
            let image = scratch.path().join("system.raw");
            assemble(&image, &built.kernel, &built.initrd, scratch.path())?;
            run(Command::new("gzip").args(["-9", "-n", "-k"]).arg(&image))?;
            let out = run(Command::new("sha256sum").arg(scratch.path().join("system.raw.gz")))?;
            let hex = out.split_whitespace().next().unwrap_or_default().to_owned();
            std::fs::write(scratch.path().join("system.raw.gz.sha256"), &hex).map_err(|e| setup("the checksum", e))?;
            pack_tree(scratch.path(), &built.kernel, &built.initrd, &built.manifest.release)?;
            // Another process may have finished first (or an older build without the tree):
            // theirs is replaced only when incomplete.
            if !(dir.join("system.tar.gz.sha256").is_file()) {
                let _ = std::fs::remove_dir_all(&dir);
            }
            let _ = std::fs::rename(scratch.path(), &dir);
        }
        let gzip_sha256 = std::fs::read_to_string(&sum).map_err(|e| setup("the checksum", e))?.trim().to_owned();
        let size = std::fs::metadata(&raw).map_err(|e| setup("the image", e))?.len();
        let tree_sha256 =
            std::fs::read_to_string(&tree_sum).map_err(|e| setup("the tree's checksum", e))?.trim().to_owned();
        Ok(Self { raw, gzip, gzip_sha256, size, tree, tree_sha256 })
    }
}

/// `system.tar.gz` and its checksum in `scratch`: the kernel and initramfs under `boot/` as a
/// Debian system names them.
fn pack_tree(scratch: &Path, kernel: &Path, initrd: &Path, release: &str) -> Result<()> {
    let root = scratch.join("tree");
    std::fs::create_dir_all(root.join("boot")).map_err(|e| setup("the tree", e))?;
    std::fs::create_dir_all(root.join("etc")).map_err(|e| setup("the tree", e))?;
    std::fs::copy(kernel, root.join(format!("boot/vmlinuz-{release}"))).map_err(|e| setup("the tree's kernel", e))?;
    std::fs::copy(initrd, root.join(format!("boot/initrd.img-{release}")))
        .map_err(|e| setup("the tree's initramfs", e))?;
    let tar = scratch.join("system.tar");
    run(Command::new("tar")
        .args(["--sort=name", "--owner=0", "--group=0", "--numeric-owner", "--mtime=@0", "-cf"])
        .arg(&tar)
        .arg("-C")
        .arg(&root)
        .args(["boot", "etc"]))?;
    run(Command::new("gzip").args(["-9", "-n"]).arg(&tar))?;
    let out = run(Command::new("sha256sum").arg(scratch.join("system.tar.gz")))?;
    let hex = out.split_whitespace().next().unwrap_or_default().to_owned();
    std::fs::write(scratch.join("system.tar.gz.sha256"), &hex).map_err(|e| setup("the tree's checksum", e))?;
    std::fs::remove_dir_all(&root).map_err(|e| setup("the tree", e))
}

fn setup(what: &str, error: impl std::fmt::Display) -> SystemImageError {
    SystemImageError::Step { what: what.to_owned(), why: error.to_string() }
}

fn run(command: &mut Command) -> Result<String> {
    let output = command.output().map_err(|e| setup(&format!("{command:?}"), e))?;
    if !output.status.success() {
        return Err(setup(&format!("{command:?}"), String::from_utf8_lossy(&output.stderr)));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// One MBR partition entry (CHS fields unused: LBA only).
fn entry(active: bool, kind: u8, start: u64, size: u64) -> [u8; 16] {
    let mut e = [0u8; 16];
    e[0] = if active { 0x80 } else { 0 };
    e[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]);
    e[4] = kind;
    e[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
    e[8..12].copy_from_slice(&u32::try_from(start / 512).unwrap_or(u32::MAX).to_le_bytes());
    e[12..16].copy_from_slice(&u32::try_from(size / 512).unwrap_or(u32::MAX).to_le_bytes());
    e
}

fn assemble(image: &Path, kernel: &Path, initrd: &Path, scratch: &Path) -> Result<()> {
    let mbr_code = std::fs::read("/usr/lib/syslinux/mbr/mbr.bin").map_err(|e| setup("syslinux's mbr.bin", e))?;
    let mut mbr = vec![0u8; 512];
    let code = mbr_code.len().min(440);
    mbr[..code].copy_from_slice(&mbr_code[..code]);
    mbr[440..444].copy_from_slice(&0x4d41_4348u32.to_le_bytes()); // disk signature
    mbr[446..462].copy_from_slice(&entry(true, 0x06, BOOT_START, BOOT_SIZE)); // FAT16
    mbr[462..478].copy_from_slice(&entry(false, 0x01, CIDATA_START, CIDATA_SIZE)); // FAT12
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    let mut file = std::fs::File::create(image).map_err(|e| setup("the image", e))?;
    file.set_len(IMAGE_SIZE).map_err(|e| setup("the image", e))?;
    file.write_all(&mbr).map_err(|e| setup("the image", e))?;
    drop(file);
    let at = |offset: u64| format!("{}@@{offset}", image.display());
    let boot = at(BOOT_START);
    run(Command::new("mformat").args(["-i", &boot, "-T", &(BOOT_SIZE / 512).to_string(), "-v", "BOOT", "::"]))?;
    let cidata = at(CIDATA_START);
    run(Command::new("mformat").args(["-i", &cidata, "-T", &(CIDATA_SIZE / 512).to_string(), "-v", "CIDATA", "::"]))?;
    run(Command::new("syslinux").args(["--offset", &BOOT_START.to_string(), "--install"]).arg(image))?;
    let cfg = scratch.join("syslinux.cfg");
    std::fs::write(&cfg, SYSLINUX_CFG).map_err(|e| setup("syslinux.cfg", e))?;
    std::fs::copy(kernel, scratch.join("vmlinuz")).map_err(|e| setup("the kernel", e))?;
    std::fs::copy(initrd, scratch.join("initrd.gz")).map_err(|e| setup("the initramfs", e))?;
    let file = |name: &str| scratch.join(name).display().to_string();
    run(Command::new("mcopy").args(["-i", &boot, &file("vmlinuz"), &file("initrd.gz"), &file("syslinux.cfg"), "::"]))?;
    run(Command::new("mmd").args(["-i", &boot, "::/EFI", "::/EFI/BOOT"]))?;
    run(Command::new("mcopy").args([
        "-i",
        &boot,
        "/usr/lib/SYSLINUX.EFI/efi64/syslinux.efi",
        "::/EFI/BOOT/BOOTX64.EFI",
    ]))?;
    run(Command::new("mcopy").args([
        "-i",
        &boot,
        "/usr/lib/syslinux/modules/efi64/ldlinux.e64",
        &file("syslinux.cfg"),
        "::/EFI/BOOT/",
    ]))?;
    Ok(())
}
