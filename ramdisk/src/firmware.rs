//! Firmware: the files the image's modules name in their `firmware=` fields, found in firmware
//! directories or unpacked Debian firmware packages, and put under `/lib/firmware` in the
//! image, where the kernel's loader reads them directly (no udev, no helper). Choosing is pure
//! ([`select`]); [`FirmwareRoots`] reads the files.

use std::path::{Component, Path, PathBuf};

use crate::error::{Result, io};

/// Where firmware files go in the image: the kernel looks there for `request_firmware(name)`.
pub const FIRMWARE_DIR: &str = "/lib/firmware";

/// Where a build takes firmware from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FirmwareSources {
    /// Debian packages (`firmware-bnx2x`), downloaded with `apt-get download` into the build's
    /// package cache and unpacked; their `lib/firmware` and `usr/lib/firmware` are searched. A
    /// package apt does not know (its component is not in the apt sources) is a warning.
    pub packages: Vec<String>,
    /// Directories searched before the packages (e.g. the host's `/lib/firmware`): a file found
    /// here wins.
    pub dirs: Vec<PathBuf>,
}

impl FirmwareSources {
    /// No firmware at all.
    pub fn none() -> Self {
        Self::default()
    }
}

/// A firmware name as modules give it is a relative path that stays inside `/lib/firmware`.
pub fn valid_name(name: &str) -> bool {
    let path = Path::new(name);
    !name.is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)))
}

/// The firmware chosen for an image.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// Files found: name (relative to [`FIRMWARE_DIR`]) and contents, sorted by name, each once.
    pub files: Vec<(String, Vec<u8>)>,
    /// Files named by a module and found nowhere, as `module: name`, sorted.
    pub missing: Vec<String>,
    /// One line per module with missing firmware, and per invalid name.
    pub warnings: Vec<String>,
}

/// Chooses the firmware of `modules` (each module's name and its `firmware=` files, in load
/// order): `lookup(name)` gives a file's contents, `None` when no source has it. A name that
/// is not a relative path inside the firmware directory is refused with a warning.
pub fn select<F>(modules: &[(String, Vec<String>)], mut lookup: F) -> Result<Selection>
where
    F: FnMut(&str) -> Result<Option<Vec<u8>>>,
{
    let mut found = std::collections::BTreeMap::new();
    let mut selection = Selection::default();
    for (module, names) in modules {
        let mut absent = Vec::new();
        for name in names {
            if !valid_name(name) {
                selection
                    .warnings
                    .push(format!("module {module}: firmware name {name:?} refused (not a relative path)"));
                continue;
            }
            if found.contains_key(name) {
                continue;
            }
            match lookup(name)? {
                Some(bytes) => {
                    found.insert(name.clone(), bytes);
                }
                None => absent.push(name.as_str()),
            }
        }
        if !absent.is_empty() {
            selection.warnings.push(format!(
                "module {module}: {} of its {} firmware files found nowhere: {}",
                absent.len(),
                names.len(),
                absent.join(" ")
            ));
            selection.missing.extend(absent.iter().map(|name| format!("{module}: {name}")));
        }
    }
    selection.missing.sort();
    selection.files = found.into_iter().collect();
    Ok(selection)
}

/// Directories to read firmware from, in order; a symbolic link is followed only while it
/// stays inside the tree it was found in.
#[derive(Clone, Debug, Default)]
pub struct FirmwareRoots {
    /// (the tree a file must stay inside, the firmware directory in it).
    roots: Vec<(PathBuf, PathBuf)>,
}

impl FirmwareRoots {
    /// No directories.
    pub fn new() -> Self {
        Self::default()
    }

    /// A firmware directory (`/lib/firmware`).
    pub fn add_dir(&mut self, dir: &Path) {
        self.roots.push((dir.to_path_buf(), dir.to_path_buf()));
    }

    /// An unpacked package: its `lib/firmware` and `usr/lib/firmware`.
    pub fn add_package(&mut self, unpacked: &Path) {
        for sub in ["lib/firmware", "usr/lib/firmware"] {
            self.roots.push((unpacked.to_path_buf(), unpacked.join(sub)));
        }
    }

    /// The contents of firmware `name` from the first directory that has it.
    pub fn read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        for (tree, dir) in &self.roots {
            let path = dir.join(name);
            let Ok(real) = path.canonicalize() else { continue };
            let inside = tree.canonicalize().map(|tree| real.starts_with(tree)).unwrap_or(false);
            if !inside || !real.is_file() {
                continue;
            }
            return std::fs::read(&real).map(Some).map_err(io(format!("reading {}", real.display())));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn module(name: &str, files: &[&str]) -> (String, Vec<String>) {
        (name.to_owned(), files.iter().map(|f| (*f).to_owned()).collect())
    }

    #[test]
    fn found_files_are_taken_once_and_missing_ones_named() -> Result<()> {
        let store: BTreeMap<&str, &[u8]> =
            [("tigon/tg3.bin", &b"tg3"[..]), ("isci/isci_firmware.bin", &b"isci"[..])].into_iter().collect();
        let modules = [
            module("tg3", &["tigon/tg3_tso.bin", "tigon/tg3.bin"]),
            module("isci", &["isci/isci_firmware.bin"]),
            module("other", &["tigon/tg3.bin"]),
            module("e1000", &[]),
        ];
        let mut asked = Vec::new();
        let selection = select(&modules, |name| {
            asked.push(name.to_owned());
            Ok(store.get(name).map(|b| b.to_vec()))
        })?;
        assert_eq!(
            selection.files,
            [("isci/isci_firmware.bin".to_owned(), b"isci".to_vec()), ("tigon/tg3.bin".to_owned(), b"tg3".to_vec())]
        );
        assert_eq!(selection.missing, ["tg3: tigon/tg3_tso.bin"]);
        assert_eq!(selection.warnings, ["module tg3: 1 of its 2 firmware files found nowhere: tigon/tg3_tso.bin"]);
        assert_eq!(asked.iter().filter(|n| *n == "tigon/tg3.bin").count(), 1, "read once: {asked:?}");
        Ok(())
    }

    #[test]
    fn names_leaving_the_firmware_directory_are_refused() -> Result<()> {
        for bad in ["../etc/shadow", "/etc/shadow", "a/../../b", "", "./x"] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert!(valid_name("intel/ice/ddp/ice.pkg"));
        let selection = select(&[module("evil", &["../../etc/shadow"])], |_| panic!("looked up"))?;
        assert!(selection.files.is_empty() && selection.missing.is_empty());
        assert_eq!(selection.warnings.len(), 1);
        Ok(())
    }

    #[test]
    fn roots_are_searched_in_order_and_links_stay_inside() -> Result<()> {
        let base = tempfile::tempdir().map_err(io("tempdir"))?;
        let dir = base.path().join("dir");
        let package = base.path().join("pkg");
        let write = |path: PathBuf, data: &[u8]| {
            std::fs::create_dir_all(path.parent().unwrap_or(Path::new("/"))).map_err(io("mkdir"))?;
            std::fs::write(path, data).map_err(io("write"))
        };
        write(dir.join("a.bin"), b"from dir")?;
        write(package.join("lib/firmware/a.bin"), b"from package")?;
        write(package.join("lib/firmware/intel/ice/ddp/ice-1.3.30.0.pkg"), b"ddp")?;
        write(package.join("usr/lib/firmware/b.bin"), b"usr")?;
        write(base.path().join("secret"), b"secret")?;
        std::os::unix::fs::symlink("ice-1.3.30.0.pkg", package.join("lib/firmware/intel/ice/ddp/ice.pkg"))
            .map_err(io("symlink"))?;
        std::os::unix::fs::symlink("../../secret", package.join("lib/firmware/escape.bin")).map_err(io("symlink"))?;
        let mut roots = FirmwareRoots::new();
        roots.add_dir(&dir);
        roots.add_package(&package);
        assert_eq!(roots.read("a.bin")?.as_deref(), Some(&b"from dir"[..]));
        assert_eq!(roots.read("intel/ice/ddp/ice.pkg")?.as_deref(), Some(&b"ddp"[..]));
        assert_eq!(roots.read("b.bin")?.as_deref(), Some(&b"usr"[..]));
        assert_eq!(roots.read("escape.bin")?, None);
        assert_eq!(roots.read("intel")?, None, "a directory is not a file");
        assert_eq!(roots.read("nothing.bin")?, None);
        Ok(())
    }
}
