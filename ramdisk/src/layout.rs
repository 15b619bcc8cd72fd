//! Where everything goes in the image. Pure: from the bytes gathered by [`crate::build`].

use std::path::Path;

use crate::error::Result;
use crate::firmware::FIRMWARE_DIR;
use crate::image::{Entry, Image, image_path};
use crate::init::{AGENT_PATH, BUSYBOX_PATH, Init, MODULE_LIST_PATH, ModuleLoading, UDHCPC_SCRIPT, UDHCPC_SCRIPT_PATH};
use crate::recipe::ExtraFile;

/// What goes into the image.
#[derive(Clone, Debug)]
pub struct Parts<'a> {
    /// The static busybox.
    pub busybox: &'a [u8],
    /// Its applets as `busybox --list-full` prints them (`bin/sh`, `usr/sbin/udhcpd`…): each
    /// becomes a symbolic link to [`BUSYBOX_PATH`].
    pub applets: &'a [String],
    /// The agent, if any ([`AGENT_PATH`]).
    pub agent: Option<&'a [u8]>,
    /// Modules in load order: absolute path in the image and contents.
    pub modules: &'a [(String, Vec<u8>)],
    /// The modules `/init` loads besides those the PCI devices select.
    pub loading: &'a ModuleLoading,
    /// `modprobe`'s index files: absolute path in the image (`…/modules.dep`,
    /// `…/modules.alias`) and text.
    pub module_index: &'a [(String, String)],
    /// Dynamically linked programs, their loader and libraries: absolute path and contents.
    pub programs: &'a [(String, Vec<u8>)],
    /// Firmware files: name relative to [`FIRMWARE_DIR`] and contents.
    pub firmware: &'a [(String, Vec<u8>)],
    /// What `/init` does.
    pub init: &'a Init,
    /// Further files, which win over everything else.
    pub extra_files: &'a [ExtraFile],
}

/// The image: the base directories (`/dev` with a console node, `/proc`, `/sys`, `/run`,
/// `/tmp`, `/root`, `/etc`), busybox and its applet links, the agent, the programs, the modules and their
/// load order ([`MODULE_LIST_PATH`]) and `modprobe`'s index, the firmware under
/// [`FIRMWARE_DIR`], the `udhcpc` script, `/init`, then the extra files.
pub fn compose(parts: &Parts<'_>) -> Result<Image> {
    let mut image = Image::new();
    for dir in ["dev", "proc", "sys", "run", "root", "etc", "mnt", "var"] {
        image.dir(dir, 0o755);
    }
    image.dir("tmp", 0o1777);
    image.insert("dev/console", Entry::CharDevice { mode: 0o600, major: 5, minor: 1 });
    image.insert("dev/null", Entry::CharDevice { mode: 0o666, major: 1, minor: 3 });
    image.file(strip(BUSYBOX_PATH), parts.busybox, 0o755);
    if let Some(agent) = parts.agent {
        image.file(strip(AGENT_PATH), agent, 0o755);
    }
    for (path, data) in parts.programs {
        image.file(&image_path(Path::new(path))?, data.as_slice(), 0o755);
    }
    let module_paths: Vec<String> = parts.modules.iter().map(|(path, _)| path.clone()).collect();
    for (path, data) in parts.modules {
        image.file(strip(path), data.as_slice(), 0o644);
    }
    for (path, text) in parts.module_index {
        image.file(strip(path), text.as_str(), 0o644);
    }
    for (name, data) in parts.firmware {
        image.file(&format!("{}/{name}", strip(FIRMWARE_DIR)), data.as_slice(), 0o644);
    }
    let list: String = module_paths.iter().map(|p| format!("{p}\n")).collect();
    image.file(strip(MODULE_LIST_PATH), list, 0o644);
    image.file(strip(UDHCPC_SCRIPT_PATH), UDHCPC_SCRIPT, 0o755);
    image.file("init", parts.init.render(parts.loading), 0o755);
    for applet in parts.applets {
        let path = strip(applet);
        if !path.is_empty() && !path.contains("..") {
            image.symlink_if_absent(path, BUSYBOX_PATH);
        }
    }
    for (path, data, mode) in parts.extra_files {
        image.file(&image_path(path)?, data.as_slice(), *mode);
    }
    Ok(image)
}

fn strip(path: &str) -> &str {
    path.trim_start_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_has_init_busybox_agent_modules_and_scripts() -> Result<()> {
        let applets = vec!["bin/sh".to_owned(), "sbin/insmod".to_owned(), "bin/busybox".to_owned()];
        let modules = vec![
            ("/lib/modules/r/kernel/virtio.ko".to_owned(), b"ko1".to_vec()),
            ("/lib/modules/r/kernel/virtio_net.ko".to_owned(), b"ko2".to_vec()),
        ];
        let extra =
            vec![("/etc/machinist/extra".into(), b"x".to_vec(), 0o600), ("/bin/sh".into(), b"y".to_vec(), 0o755)];
        let image = compose(&Parts {
            busybox: b"busybox",
            applets: &applets,
            agent: Some(b"agent"),
            modules: &modules,
            loading: &ModuleLoading {
                always: vec!["/lib/modules/r/kernel/virtio_net.ko".to_owned()],
                companions: vec![],
            },
            module_index: &[("/lib/modules/r/modules.dep".to_owned(), "kernel/virtio.ko:\n".to_owned())],
            programs: &[("/sbin/kexec".to_owned(), b"elf".to_vec())],
            firmware: &[("tigon/tg3.bin".to_owned(), b"fw".to_vec())],
            init: &Init::Agent,
            extra_files: &extra,
        })?;
        let paths = image.paths();
        for expected in [
            "init",
            "bin/busybox",
            "bin/machinist-agent",
            "sbin/insmod",
            "dev/console",
            "tmp",
            "lib/modules/r/kernel/virtio_net.ko",
            "etc/machinist/modules",
            "etc/machinist/extra",
            "usr/share/udhcpc/default.script",
            "lib/firmware/tigon/tg3.bin",
            "lib/modules/r/modules.dep",
            "sbin/kexec",
        ] {
            assert!(paths.iter().any(|p| p == expected), "{expected} missing from {paths:?}");
        }
        assert_eq!(image.get("bin/busybox"), Some(&Entry::File { data: b"busybox".to_vec(), mode: 0o755 }));
        assert_eq!(image.get("sbin/insmod"), Some(&Entry::Symlink { target: "/bin/busybox".into() }));
        // Extra files win over applet links.
        assert_eq!(image.get("bin/sh"), Some(&Entry::File { data: b"y".to_vec(), mode: 0o755 }));
        let Some(Entry::File { data, .. }) = image.get("etc/machinist/modules") else { panic!("no module list") };
        assert_eq!(data, b"/lib/modules/r/kernel/virtio.ko\n/lib/modules/r/kernel/virtio_net.ko\n");
        let Some(Entry::File { data, mode }) = image.get("init") else { panic!("no init") };
        assert_eq!(*mode, 0o755);
        let init = String::from_utf8_lossy(data);
        assert!(init.contains("load /lib/modules/r/kernel/virtio_net.ko"));
        assert!(!init.contains("load /lib/modules/r/kernel/virtio.ko"), "only the modules loaded always");
        Ok(())
    }

    #[test]
    fn extra_files_must_stay_inside() {
        let extra = vec![("/../etc/passwd".into(), Vec::new(), 0o644)];
        let result = compose(&Parts {
            busybox: b"",
            applets: &[],
            agent: None,
            modules: &[],
            loading: &ModuleLoading::default(),
            module_index: &[],
            programs: &[],
            firmware: &[],
            init: &Init::Script(String::new()),
            extra_files: &extra,
        });
        assert!(result.is_err());
    }
}
