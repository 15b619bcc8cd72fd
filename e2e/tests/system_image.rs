#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic
//! The install tests' system image (`machinist_e2e::system`) boots from its disk under SeaBIOS
//! (syslinux) and under OVMF (syslinux's EFI loader from the removable-media path), and its
//! init runs. No network: it finds no seed and says so.

use std::process::{Command, Stdio};
use std::time::Duration;

use machinist_e2e::system::{BOOTED, NETWORK, SystemImage};

const WITHIN: Duration = Duration::from_secs(120);
const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// Boots a copy of the image with `firmware` arguments; the console up to the NETWORK line.
fn boot(image: &SystemImage, firmware: &[String], dir: &std::path::Path) -> String {
    let disk = dir.join("disk.raw");
    std::fs::copy(&image.raw, &disk).unwrap();
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-m", "512", "-nographic", "-no-reboot", "-net", "none"])
        .args(firmware)
        .args(["-drive", &format!("file={},format=raw,if=virtio", disk.display())])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = qemu.stdout.take().unwrap();
    let (lines, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    let mut console = String::new();
    let deadline = std::time::Instant::now() + WITHIN;
    let found = loop {
        match seen.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
            Ok(line) => {
                console.push_str(&line);
                console.push('\n');
                if line.contains(NETWORK) {
                    break true;
                }
            }
            Err(_) => break false,
        }
    };
    let _ = qemu.kill();
    let _ = qemu.wait();
    assert!(found, "no {NETWORK} line within {WITHIN:?}:\n{console}");
    console
}

#[test]
fn the_system_image_boots_from_its_disk_under_bios_and_uefi() {
    let programs = ["qemu-system-x86_64", "mformat", "mcopy", "syslinux", "gzip", "sha256sum", "busybox"];
    if !machinist_e2e::prereq::need_programs("the_system_image_boots_from_its_disk_under_bios_and_uefi", &programs)
        .unwrap()
    {
        return;
    }
    let image = machinist_e2e::system::get().unwrap();
    assert_eq!(image.gzip_sha256.len(), 64);
    let bios_dir = tempfile::tempdir().unwrap();
    let uefi_dir = tempfile::tempdir().unwrap();
    let vars = uefi_dir.path().join("vars.fd");
    std::fs::copy(OVMF_VARS, &vars).unwrap();
    let uefi = vec![
        "-drive".to_owned(),
        format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"),
        "-drive".to_owned(),
        format!("if=pflash,format=raw,file={}", vars.display()),
    ];
    let (bios, uefi) = std::thread::scope(|scope| {
        let bios = scope.spawn(|| boot(&image, &[], bios_dir.path()));
        let uefi = scope.spawn(|| boot(&image, &uefi, uefi_dir.path()));
        (bios.join().unwrap(), uefi.join().unwrap())
    });
    for (firmware, console) in [("BIOS", &bios), ("UEFI", &uefi)] {
        assert!(console.contains(BOOTED), "{firmware}:\n{console}");
        assert!(console.contains("seed=no"), "{firmware}: no CIDATA seed was written:\n{console}");
    }
    assert!(uefi.contains("EFI stub") || uefi.contains("efi:"), "booted through the firmware's EFI:\n{uefi}");
}
