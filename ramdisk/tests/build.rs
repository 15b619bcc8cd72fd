#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic
//! Builds the production RAM disk for real (the Debian kernel and firmware packages, the host's
//! static busybox, busybox again as a stand-in agent) twice, and checks its contents (drivers,
//! modprobe's index, firmware), its size and that the two builds are byte-identical. Needs
//! apt-get (the Debian archive the first time; the packages are then kept in the e2e boot
//! cache's `packages/`), dpkg, gzip and busybox-static: skipped without them, failing under
//! `MACHINIST_E2E=require`, which also wants the non-free firmware (`scripts/deps` adds
//! Debian's non-free-firmware component to apt's sources).

use std::path::Path;
use std::process::{Command, Stdio};

use machinist_e2e::{boot, prereq};
use machinist_ramdisk::{DOWNLOADS_DIR, RamdiskRecipe, build};

const PROGRAMS: &[&str] = &["apt-get", "apt-cache", "dpkg", "gzip", "busybox"];
/// The production initrd's size budget (docs/ramdisk.md, "Size"), agent included; busybox, the
/// stand-in agent here, is smaller than the real one.
const INITRD_BUDGET: u64 = 16 * 1024 * 1024;

fn list(initrd: &Path) -> Vec<String> {
    let mut gunzip = Command::new("gzip").arg("-dc").arg(initrd).stdout(Stdio::piped()).spawn().unwrap();
    let output = Command::new("busybox")
        .args(["cpio", "-t"])
        .stdin(gunzip.stdout.take().unwrap())
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(gunzip.wait().unwrap().success());
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap().lines().map(str::to_owned).collect()
}

#[test]
fn production_ramdisk_builds_reproducibly() -> Result<(), String> {
    if !prereq::need_programs("production_ramdisk_builds_reproducibly", PROGRAMS)? {
        return Ok(());
    }
    let busybox = prereq::find_program("busybox", std::env::var_os("PATH").as_deref()).unwrap();
    let downloads = boot::cache_root().join(DOWNLOADS_DIR);
    let recipe = RamdiskRecipe::production(Some(busybox));
    let first_dir = tempfile::tempdir().unwrap();
    let second_dir = tempfile::tempdir().unwrap();

    let first = build(&recipe, first_dir.path(), &downloads).map_err(|e| e.to_string())?;
    let manifest = &first.manifest;
    eprintln!(
        "{}: initrd {} bytes ({} uncompressed), kernel {} bytes; modules {:?}; built in {:?}; missing {:?}",
        manifest.kernel_package,
        manifest.initrd_size,
        manifest.uncompressed_size,
        manifest.kernel_size,
        manifest.modules,
        manifest.builtin,
        manifest.missing
    );
    assert!(manifest.initrd_size <= INITRD_BUDGET, "initrd is {} bytes", manifest.initrd_size);
    assert_eq!(std::fs::metadata(&first.initrd).unwrap().len(), manifest.initrd_size);
    assert!(std::fs::metadata(&first.kernel).unwrap().len() > 1024 * 1024);

    let files = list(&first.initrd);
    assert_eq!(files, manifest.files);
    for expected in [
        "init",
        "bin/machinist-agent",
        "bin/busybox",
        "bin/sh",
        "usr/share/udhcpc/default.script",
        "dev/console",
        // kexec with its loader and libraries, from Debian's packages.
        "sbin/kexec",
        "lib64/ld-linux-x86-64.so.2",
        "lib/x86_64-linux-gnu/libc.so.6",
        "lib/x86_64-linux-gnu/libxenctrl.so.4.17",
        // What tar trees need: mke2fs (and its libraries), extlinux, syslinux's boot code.
        "sbin/mke2fs",
        "lib/x86_64-linux-gnu/libext2fs.so.2",
        "usr/bin/extlinux",
        "usr/lib/syslinux/mbr/mbr.bin",
        "usr/lib/syslinux/mbr/gptmbr.bin",
        "usr/lib/SYSLINUX.EFI/efi64/syslinux.efi",
        "usr/lib/syslinux/modules/efi64/ldlinux.e64",
    ] {
        assert!(files.iter().any(|f| f == expected), "{expected} missing from the initrd");
    }
    assert!(manifest.program_packages.iter().any(|p| p.starts_with("kexec-tools ")), "{:?}", manifest.program_packages);
    for module in ["virtio_net", "nvme", "virtio_pci", "virtio", "virtio_ring", "net_failover", "failover", "nvme_core"]
    {
        assert!(manifest.modules.iter().any(|m| m == module), "{module} not in {:?}", manifest.modules);
        // File names keep the kernel's spelling (`nvme-core.ko`); module names use `_`.
        let file = format!("/{}.ko", module.replace('_', "-"));
        let in_image = |f: &String| f.ends_with(&format!("/{module}.ko")) || f.ends_with(&file);
        assert!(files.iter().any(in_image), "{module}.ko missing from the initrd");
    }
    // Every server NIC and storage driver, with its dependencies.
    for module in machinist_ramdisk::PRODUCTION_MODULES {
        assert!(manifest.modules.iter().any(|m| m == module), "{module} not in {:?}", manifest.modules);
    }
    for dependency in
        ["mlx4_core", "qed", "hv_vmbus", "libata", "mptbase", "scsi_transport_sas", "libsas", "jbd2", "fat"]
    {
        assert!(manifest.modules.iter().any(|m| m == dependency), "{dependency} not in {:?}", manifest.modules);
    }
    assert!(manifest.missing.is_empty(), "missing modules: {:?}", manifest.missing);
    // modprobe's index: every module, and the PCI aliases /init matches devices against.
    let modules_dir = format!("lib/modules/{}", manifest.release);
    for index in ["modules.dep", "modules.alias"] {
        assert!(files.contains(&format!("{modules_dir}/{index}")), "{index} missing from the initrd");
    }
    // Firmware: isci's from main always; the non-free packages' when apt has them.
    assert!(files.iter().any(|f| f == "lib/firmware/isci/isci_firmware.bin"), "{:?}", manifest.firmware);
    let non_free = ["bnx2x/bnx2x-e2-7.13.21.0.fw", "qed/qed_init_values_zipped-8.59.1.0.bin", "intel/ice/ddp/ice.pkg"];
    let have_non_free = manifest.firmware_packages.iter().any(|p| p.starts_with("firmware-bnx2x "));
    if have_non_free {
        for firmware in non_free.iter().chain(&["tigon/tg3.bin", "rtl_nic/rtl8168h-2.fw"]) {
            assert!(manifest.firmware.iter().any(|f| f == firmware), "{firmware} not in {:?}", manifest.firmware);
            assert!(files.contains(&format!("lib/firmware/{firmware}")), "{firmware} missing from the initrd");
        }
        assert!(manifest.missing_firmware.is_empty(), "{:?}", manifest.missing_firmware);
    } else {
        assert!(
            manifest.warnings.iter().any(|w| w.contains("firmware-bnx2x is not available")),
            "{:?}",
            manifest.warnings
        );
        assert!(manifest.missing_firmware.iter().any(|f| f.starts_with("bnx2x: ")), "{:?}", manifest.missing_firmware);
        let why = "apt has no firmware-bnx2x: run scripts/deps (it adds Debian's non-free-firmware component)";
        match prereq::Mode::from_env().map_err(|e| e.to_string())? {
            prereq::Mode::Require => panic!("{why}"),
            _ => eprintln!("without the non-free firmware: {why}"),
        }
    }
    // Dependencies load first.
    let position = |name: &str| manifest.modules.iter().position(|m| m == name).unwrap();
    assert!(position("virtio_ring") < position("virtio_net"));
    assert!(position("nvme_core") < position("nvme"));
    assert_eq!(manifest.module_paths.len(), manifest.modules.len());

    let second = build(&recipe, second_dir.path(), &downloads).map_err(|e| e.to_string())?;
    assert_eq!(second.manifest, first.manifest);
    let (a, b) = (std::fs::read(&first.initrd).unwrap(), std::fs::read(&second.initrd).unwrap());
    assert!(a == b, "two builds of the same recipe differ");
    Ok(())
}
