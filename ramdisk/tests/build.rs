#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic
//! Builds the production RAM disk for real (the Debian kernel package, the host's static
//! busybox, busybox again as a stand-in agent) twice, and checks its contents, its size and
//! that the two builds are byte-identical. Needs apt-get (the Debian archive the first time;
//! the package is then kept in the e2e boot cache's `packages/`), dpkg, gzip and
//! busybox-static: skipped without them, failing under `MACHINIST_E2E=require`.

use std::path::Path;
use std::process::{Command, Stdio};

use machinist_e2e::{boot, prereq};
use machinist_ramdisk::{DOWNLOADS_DIR, RamdiskRecipe, build};

const PROGRAMS: &[&str] = &["apt-get", "apt-cache", "dpkg", "gzip", "busybox"];
const MAX_INITRD: u64 = 40 * 1024 * 1024;

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
    assert!(manifest.initrd_size < MAX_INITRD, "initrd is {} bytes", manifest.initrd_size);
    assert_eq!(std::fs::metadata(&first.initrd).unwrap().len(), manifest.initrd_size);
    assert!(std::fs::metadata(&first.kernel).unwrap().len() > 1024 * 1024);

    let files = list(&first.initrd);
    assert_eq!(files, manifest.files);
    for expected in
        ["init", "bin/machinist-agent", "bin/busybox", "bin/sh", "usr/share/udhcpc/default.script", "dev/console"]
    {
        assert!(files.iter().any(|f| f == expected), "{expected} missing from the initrd");
    }
    for module in ["virtio_net", "nvme", "virtio_pci", "virtio", "virtio_ring", "net_failover", "failover", "nvme_core"]
    {
        assert!(manifest.modules.iter().any(|m| m == module), "{module} not in {:?}", manifest.modules);
        // File names keep the kernel's spelling (`nvme-core.ko`); module names use `_`.
        let file = format!("/{}.ko", module.replace('_', "-"));
        let in_image = |f: &String| f.ends_with(&format!("/{module}.ko")) || f.ends_with(&file);
        assert!(files.iter().any(in_image), "{module}.ko missing from the initrd");
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
