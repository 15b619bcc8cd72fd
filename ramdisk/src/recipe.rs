//! What a RAM disk is made of, and the hash that keys its cache. Pure.

use std::path::PathBuf;

use crate::firmware::FirmwareSources;
use crate::init::Init;
use crate::programs::{PackageFile, Program};

/// The metapackage whose dependency names the kernel package when none is given.
pub const KERNEL_METAPACKAGE: &str = "linux-image-amd64";

/// The drivers of the production RAM disk, NICs then storage (docs/ramdisk.md says why each
/// is there and what is left out). Their dependencies are added; names the kernel lacks are
/// warnings.
pub const PRODUCTION_MODULES: &[&str] = &[
    // Paravirtual and emulated NICs: QEMU/KVM (virtio), VMware (vmxnet3), Hyper-V (hv_netvsc),
    // QEMU's and libvirt's rtl8139 model (8139cp).
    "virtio_pci",
    "virtio_net",
    "vmxnet3",
    "hv_netvsc",
    "8139cp",
    // Intel: PRO/1000 (e1000, also VMware's and VirtualBox's E1000), 82574/I217-I219 (e1000e),
    // I350/I210 (igb), I225/I226 (igc), 82599/X540/X550 (ixgbe), X710/XL710/XXV710 (i40e),
    // E810 (ice).
    "e1000",
    "e1000e",
    "igb",
    "igc",
    "ixgbe",
    "i40e",
    "ice",
    // Broadcom: NetXtreme (tg3), NetXtreme II 10 GbE (bnx2x), NetXtreme-C/E (bnxt_en).
    "tg3",
    "bnx2x",
    "bnxt_en",
    // NVIDIA Mellanox ConnectX-3 (mlx4_en, with mlx4_core) and ConnectX-4 and later (mlx5_core).
    "mlx4_en",
    "mlx5_core",
    // Emulex OneConnect (be2net), QLogic FastLinQ 41000/45000 (qede).
    "be2net",
    "qede",
    // Realtek RTL8111/8168/8125 (r8169): small servers and desktop-class boards.
    "r8169",
    // Paravirtual and emulated storage: virtio, VMware PVSCSI, LSI Logic Parallel and SAS
    // (VMware's default SCSI controllers; QEMU's mptsas1068), Hyper-V, QEMU's lsi53c895a.
    "virtio_blk",
    "virtio_scsi",
    "vmw_pvscsi",
    "mptspi",
    "mptsas",
    "hv_storvsc",
    "sym53c8xx",
    // SATA (AHCI; PIIX IDE: QEMU's `pc` machine, Hyper-V generation 1, legacy-mode SATA), NVMe.
    "ahci",
    "ata_piix",
    "nvme",
    // RAID controllers and HBAs: Broadcom MegaRAID and Dell PERC (megaraid_sas), Broadcom SAS
    // HBAs (mpt3sas), HPE Smart Array (hpsa, smartpqi), Adaptec (aacraid), Intel C600 SAS (isci).
    "megaraid_sas",
    "mpt3sas",
    "hpsa",
    "smartpqi",
    "aacraid",
    "isci",
    // SCSI disks (everything behind the SCSI, SAS, SATA and RAID drivers above).
    "sd_mod",
    // File systems the agent makes and mounts to unpack `tar` images: ext4 (with the crc32c
    // its metadata checksums ask the crypto API for, not a declared dependency), and FAT (EFI
    // system partitions) with the code page and I/O character set Debian's kernel defaults to (437, ascii).
    "ext4",
    "crc32c_generic",
    "vfat",
    "nls_cp437",
    "nls_ascii",
];

/// The Debian packages the production RAM disk takes its modules' firmware from (the files
/// each module's `firmware=` fields name, not the whole packages): `isci` (firmware-linux-free,
/// in `main`); `bnx2x` (firmware-bnx2x), `qed` for qede (firmware-qlogic), `tg3` and the `ice`
/// DDP package (firmware-misc-nonfree), `r8169` (firmware-realtek), in `non-free-firmware`.
pub const PRODUCTION_FIRMWARE_PACKAGES: &[&str] =
    &["firmware-linux-free", "firmware-bnx2x", "firmware-qlogic", "firmware-misc-nonfree", "firmware-realtek"];

/// Bumped when the RAM disk's construction changes in a way the recipe does not show.
pub const BUILDER_VERSION: &str = "3";

/// A file added to the image: its path in the image, contents, permission bits.
pub type ExtraFile = (PathBuf, Vec<u8>, u32);

/// What goes into a RAM disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RamdiskRecipe {
    /// The Debian kernel package (`linux-image-6.1.0-56-amd64`); `None`: the one
    /// [`KERNEL_METAPACKAGE`] depends on.
    pub kernel_package: Option<String>,
    /// Modules wanted; their dependencies are added, built-in ones skipped.
    pub modules: Vec<String>,
    /// A statically linked binary installed as `/bin/machinist-agent`.
    pub agent: Option<PathBuf>,
    /// What `/init` does.
    pub init: Init,
    /// Further files: path in the image, contents, mode. They win over generated files.
    pub extra_files: Vec<ExtraFile>,
    /// Where the modules' firmware comes from; [`FirmwareSources::none`]: no firmware.
    pub firmware: FirmwareSources,
    /// Dynamically linked programs, carried with their libraries.
    pub programs: Vec<Program>,
    /// Files taken as they are from Debian packages.
    pub package_files: Vec<PackageFile>,
}

impl RamdiskRecipe {
    /// The production RAM disk: [`PRODUCTION_MODULES`], [`Init::Agent`], `agent` as the agent,
    /// firmware from [`PRODUCTION_FIRMWARE_PACKAGES`], `kexec`, `mke2fs` and `extlinux`
    /// ([`Program`]) and syslinux's boot loader files ([`PackageFile::boot_loader`]).
    pub fn production(agent: Option<PathBuf>) -> Self {
        Self {
            kernel_package: None,
            modules: PRODUCTION_MODULES.iter().map(|m| (*m).to_owned()).collect(),
            agent,
            init: Init::Agent,
            extra_files: Vec::new(),
            firmware: FirmwareSources {
                packages: PRODUCTION_FIRMWARE_PACKAGES.iter().map(|p| (*p).to_owned()).collect(),
                dirs: Vec::new(),
            },
            programs: vec![Program::kexec(), Program::mke2fs(), Program::extlinux()],
            package_files: PackageFile::boot_loader(),
        }
    }
}

/// The contents a build reads besides the recipe, hashed with it.
#[derive(Clone, Copy, Debug)]
pub struct HashInputs<'a> {
    /// The kernel package actually used.
    pub kernel_package: &'a str,
    /// The busybox binary.
    pub busybox: &'a [u8],
    /// The agent binary, if any.
    pub agent: Option<&'a [u8]>,
}

/// FNV-1a (64 bits) over everything that makes the image: [`BUILDER_VERSION`], the kernel
/// package, the modules, the init, the busybox and agent bytes, the extra files and the
/// firmware sources (package names and directory paths, not their contents), each
/// length-prefixed so that no two different recipes concatenate alike.
pub fn recipe_hash(recipe: &RamdiskRecipe, inputs: HashInputs<'_>) -> u64 {
    let mut hash = Fnv::new();
    hash.part(BUILDER_VERSION.as_bytes());
    hash.part(inputs.kernel_package.as_bytes());
    hash.part(&(recipe.modules.len() as u64).to_le_bytes());
    for module in &recipe.modules {
        hash.part(module.as_bytes());
    }
    match &recipe.init {
        Init::Agent => hash.part(b"init:agent"),
        Init::Script(script) => {
            hash.part(b"init:script");
            hash.part(script.as_bytes());
        }
    }
    hash.part(inputs.busybox);
    match inputs.agent {
        Some(agent) => {
            hash.part(b"agent");
            hash.part(agent);
        }
        None => hash.part(b"no agent"),
    }
    hash.part(&(recipe.extra_files.len() as u64).to_le_bytes());
    for (path, data, mode) in &recipe.extra_files {
        hash.part(path.to_string_lossy().as_bytes());
        hash.part(data);
        hash.part(&mode.to_le_bytes());
    }
    hash.part(&(recipe.firmware.packages.len() as u64).to_le_bytes());
    for package in &recipe.firmware.packages {
        hash.part(package.as_bytes());
    }
    hash.part(&(recipe.firmware.dirs.len() as u64).to_le_bytes());
    for dir in &recipe.firmware.dirs {
        hash.part(dir.to_string_lossy().as_bytes());
    }
    hash.part(&(recipe.programs.len() as u64).to_le_bytes());
    for program in &recipe.programs {
        hash.part(program.package.as_bytes());
        hash.part(program.path.as_bytes());
        hash.part(&(program.library_packages.len() as u64).to_le_bytes());
        for package in &program.library_packages {
            hash.part(package.as_bytes());
        }
    }
    hash.part(&(recipe.package_files.len() as u64).to_le_bytes());
    for file in &recipe.package_files {
        hash.part(file.package.as_bytes());
        hash.part(file.path.as_bytes());
    }
    hash.0
}

struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn part(&mut self, bytes: &[u8]) {
        self.bytes(&(bytes.len() as u64).to_le_bytes());
        self.bytes(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INPUTS: HashInputs<'static> =
        HashInputs { kernel_package: "linux-image-6.1.0-56-amd64", busybox: b"busybox", agent: None };

    #[test]
    fn the_hash_is_stable_for_the_same_inputs() {
        let recipe = RamdiskRecipe::production(None);
        assert_eq!(recipe_hash(&recipe, INPUTS), recipe_hash(&recipe.clone(), INPUTS));
    }

    #[test]
    fn the_hash_changes_with_every_input() {
        let base = RamdiskRecipe::production(None);
        let reference = recipe_hash(&base, INPUTS);
        let mut changed = Vec::new();

        let mut recipe = base.clone();
        recipe.modules.push("e100".into());
        changed.push(recipe_hash(&recipe, INPUTS));
        let mut recipe = base.clone();
        recipe.modules.reverse();
        changed.push(recipe_hash(&recipe, INPUTS));
        let mut recipe = base.clone();
        recipe.init = Init::Script("#!/bin/sh\n".into());
        changed.push(recipe_hash(&recipe, INPUTS));
        let mut recipe = base.clone();
        recipe.extra_files.push(("/etc/x".into(), b"x".to_vec(), 0o644));
        changed.push(recipe_hash(&recipe, INPUTS));
        let mut other = recipe.clone();
        other.extra_files[0].2 = 0o755;
        changed.push(recipe_hash(&other, INPUTS));
        let mut recipe = base.clone();
        recipe.firmware.packages.pop();
        changed.push(recipe_hash(&recipe, INPUTS));
        let mut recipe = base.clone();
        recipe.firmware.dirs.push("/lib/firmware".into());
        changed.push(recipe_hash(&recipe, INPUTS));
        let mut recipe = base.clone();
        recipe.programs.clear();
        changed.push(recipe_hash(&recipe, INPUTS));
        let mut recipe = base.clone();
        recipe.programs[0].library_packages.pop();
        changed.push(recipe_hash(&recipe, INPUTS));
        let mut recipe = base.clone();
        recipe.package_files.pop();
        changed.push(recipe_hash(&recipe, INPUTS));
        changed.push(recipe_hash(&base, HashInputs { kernel_package: "linux-image-6.1.0-57-amd64", ..INPUTS }));
        changed.push(recipe_hash(&base, HashInputs { busybox: b"busybox2", ..INPUTS }));
        changed.push(recipe_hash(&base, HashInputs { agent: Some(b"agent"), ..INPUTS }));
        changed.push(recipe_hash(&base, HashInputs { agent: Some(b"agent2"), ..INPUTS }));

        let mut all = changed.clone();
        all.push(reference);
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), changed.len() + 1, "some input does not change the hash");
    }

    #[test]
    fn the_production_lists_name_each_driver_and_package_once() {
        let mut modules = PRODUCTION_MODULES.to_vec();
        modules.sort_unstable();
        modules.dedup();
        assert_eq!(modules.len(), PRODUCTION_MODULES.len());
        let mut packages = PRODUCTION_FIRMWARE_PACKAGES.to_vec();
        packages.sort_unstable();
        packages.dedup();
        assert_eq!(packages.len(), PRODUCTION_FIRMWARE_PACKAGES.len());
        let recipe = RamdiskRecipe::production(None);
        assert_eq!(recipe.firmware.packages, PRODUCTION_FIRMWARE_PACKAGES);
        assert!(recipe.firmware.dirs.is_empty());
    }

    #[test]
    fn boundaries_between_parts_count() {
        let mut a = RamdiskRecipe::production(None);
        a.modules = vec!["ab".into(), "c".into()];
        let mut b = a.clone();
        b.modules = vec!["a".into(), "bc".into()];
        assert_ne!(recipe_hash(&a, INPUTS), recipe_hash(&b, INPUTS));
    }
}
