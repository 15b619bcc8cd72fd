//! Debian packages: the kernel package (which one, downloading it once into a cache, unpacking
//! it, its module tree: `modules.builtin`, the `.ko` files, their `depends=`), and the firmware
//! packages (downloaded when apt has them, unpacked).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, Result, io};
use crate::modules::{module_name, normalize, parse_builtin};
use crate::recipe::KERNEL_METAPACKAGE;
use crate::run::run;

/// `linux-image-6.1.0-56-amd64` from `apt-cache depends linux-image-amd64`'s output.
pub fn parse_metapackage_depends(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|p| p.starts_with("linux-image-"))
        .map(str::to_owned)
}

/// The kernel package [`KERNEL_METAPACKAGE`] depends on (`apt-cache depends`).
pub fn default_kernel_package() -> Result<String> {
    let text = run(Command::new("apt-cache").args(["depends", KERNEL_METAPACKAGE]))?;
    parse_metapackage_depends(&text).ok_or_else(|| {
        Error::Kernel(format!(
            "`apt-cache depends {KERNEL_METAPACKAGE}` names no linux-image-* package (run `apt-get update`?): {text}"
        ))
    })
}

/// `downloads/<package>.deb`, downloaded with `apt-get download` the first time. Concurrent
/// callers download into their own temporary directories and rename into place.
pub fn fetch_package(package: &str, downloads: &Path) -> Result<PathBuf> {
    check_package_name(package)?;
    let deb = downloads.join(format!("{package}.deb"));
    if deb.is_file() {
        return Ok(deb);
    }
    std::fs::create_dir_all(downloads).map_err(io(format!("creating {}", downloads.display())))?;
    let scratch = tempfile::Builder::new()
        .prefix(".download-")
        .tempdir_in(downloads)
        .map_err(io(format!("creating a download directory in {}", downloads.display())))?;
    run(Command::new("apt-get").args(["download", package]).current_dir(scratch.path())).map_err(|e| {
        Error::Package(format!("downloading {package} (needs the Debian archive; try `apt-get update`): {e}"))
    })?;
    let downloaded = only_entry(scratch.path(), |name| name.ends_with(".deb"))?;
    std::fs::rename(&downloaded, &deb).map_err(io(format!(
        "renaming {} to {}",
        downloaded.display(),
        deb.display()
    )))?;
    Ok(deb)
}

fn check_package_name(package: &str) -> Result<()> {
    if package.is_empty() || !package.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.+_".contains(&b)) {
        return Err(Error::Package(format!("{package:?} is not a Debian package name")));
    }
    Ok(())
}

/// The `Candidate:` of `apt-cache policy`'s output; `None` for `(none)` or no such line (apt
/// knows no such package: its component is not in the sources, or it does not exist).
pub fn parse_policy_candidate(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Candidate:"))
        .map(str::trim)
        .find(|v| !v.is_empty() && *v != "(none)")
        .map(str::to_owned)
}

/// `downloads/<package>.deb` as [`fetch_package`] gives it, or `None` without downloading
/// when it is not there and apt has no candidate for it (`apt-cache policy`).
pub fn fetch_package_if_available(package: &str, downloads: &Path) -> Result<Option<PathBuf>> {
    check_package_name(package)?;
    if downloads.join(format!("{package}.deb")).is_file() {
        return fetch_package(package, downloads).map(Some);
    }
    let policy = run(Command::new("apt-cache").args(["policy", package]))?;
    match parse_policy_candidate(&policy) {
        Some(_) => fetch_package(package, downloads).map(Some),
        None => Ok(None),
    }
}

/// `dpkg -x deb into`, and the package's name and version (`firmware-bnx2x 20230210-5`).
pub fn extract(deb: &Path, into: &Path) -> Result<String> {
    std::fs::create_dir_all(into).map_err(io(format!("creating {}", into.display())))?;
    run(Command::new("dpkg").arg("-x").arg(deb).arg(into))?;
    let fields = run(Command::new("dpkg-deb").arg("--show").arg("--showformat=${Package} ${Version}").arg(deb))?;
    Ok(fields.trim().to_owned())
}

/// An unpacked kernel package.
#[derive(Clone, Debug)]
pub struct Unpacked {
    /// The kernel (`boot/vmlinuz-<release>`).
    pub vmlinuz: PathBuf,
    /// `6.1.0-56-amd64`.
    pub release: String,
    /// `lib/modules/<release>`.
    pub modules_dir: PathBuf,
}

/// `dpkg -x deb into`, and where the kernel and its modules are.
pub fn unpack(deb: &Path, into: &Path) -> Result<Unpacked> {
    std::fs::create_dir_all(into).map_err(io(format!("creating {}", into.display())))?;
    run(Command::new("dpkg").arg("-x").arg(deb).arg(into))?;
    let vmlinuz = only_entry(&into.join("boot"), |name| name.starts_with("vmlinuz-"))?;
    let release = vmlinuz
        .file_name()
        .and_then(OsStr::to_str)
        .and_then(|n| n.strip_prefix("vmlinuz-"))
        .map(str::to_owned)
        .ok_or_else(|| Error::Kernel(format!("unexpected kernel file name {}", vmlinuz.display())))?;
    let modules_dir = into.join("lib/modules").join(&release);
    Ok(Unpacked { vmlinuz, release, modules_dir })
}

/// The modules of a kernel: which are built in, where each module file is.
#[derive(Clone, Debug)]
pub struct ModuleTree {
    dir: PathBuf,
    /// Built-in modules (`modules.builtin`), normalized names.
    pub builtin: BTreeSet<String>,
    /// Module files by normalized name, relative to the tree (`kernel/drivers/net/virtio_net.ko`).
    pub files: BTreeMap<String, PathBuf>,
}

impl ModuleTree {
    /// Reads `modules.builtin` and lists `kernel/` under `dir` (`lib/modules/<release>`).
    pub fn read(dir: &Path) -> Result<Self> {
        let builtin_path = dir.join("modules.builtin");
        let builtin = match std::fs::read_to_string(&builtin_path) {
            Ok(text) => parse_builtin(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(e) => return Err(io(format!("reading {}", builtin_path.display()))(e)),
        };
        let mut files = BTreeMap::new();
        let mut pending = vec![PathBuf::from("kernel")];
        while let Some(relative) = pending.pop() {
            let absolute = dir.join(&relative);
            let entries = match std::fs::read_dir(&absolute) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && relative == Path::new("kernel") => break,
                Err(e) => return Err(io(format!("listing {}", absolute.display()))(e)),
            };
            for entry in entries {
                let entry = entry.map_err(io(format!("listing {}", absolute.display())))?;
                let file_type = entry.file_type().map_err(io(format!("listing {}", absolute.display())))?;
                let name = entry.file_name();
                if file_type.is_dir() {
                    pending.push(relative.join(&name));
                } else if let Some(module) = name.to_str().and_then(module_name) {
                    files.insert(normalize(module), relative.join(&name));
                }
            }
        }
        Ok(Self { dir: dir.to_path_buf(), builtin, files })
    }

    /// A module's bytes, decompressed (busybox `insmod` takes plain `.ko` files), and its path
    /// in the image relative to the module directory (always ending in `.ko`).
    pub fn read_module(&self, name: &str) -> Result<Option<(PathBuf, Vec<u8>)>> {
        let Some(relative) = self.files.get(name) else { return Ok(None) };
        let path = self.dir.join(relative);
        let text = relative.to_string_lossy();
        let plain = module_name(&text).map(|stem| PathBuf::from(format!("{stem}.ko"))).unwrap_or(relative.clone());
        let tool = if text.ends_with(".xz") {
            "xz"
        } else if text.ends_with(".zst") {
            "zstd"
        } else if text.ends_with(".gz") {
            "gzip"
        } else {
            let bytes = std::fs::read(&path).map_err(io(format!("reading {}", path.display())))?;
            return Ok(Some((plain, bytes)));
        };
        let output = Command::new(tool)
            .arg("-dc")
            .arg(&path)
            .stdin(Stdio::null())
            .output()
            .map_err(io(format!("running {tool} to decompress {}", path.display())))?;
        if !output.status.success() {
            return Err(Error::Command {
                command: format!("{tool} -dc {}", path.display()),
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        Ok(Some((plain, output.stdout)))
    }
}

/// The single entry of `dir` whose name passes `pick`.
fn only_entry(dir: &Path, pick: impl Fn(&str) -> bool) -> Result<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(format!("listing {}", dir.display())))? {
        let entry = entry.map_err(io(format!("listing {}", dir.display())))?;
        if entry.file_name().to_str().is_some_and(&pick) {
            found.push(entry.path());
        }
    }
    match <[PathBuf; 1]>::try_from(found) {
        Ok([path]) => Ok(path),
        Err(found) => Err(Error::Kernel(format!("expected one match in {}, found {found:?}", dir.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metapackage_names_the_kernel_package() {
        let text = "linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n  Recommends: firmware\n";
        assert_eq!(parse_metapackage_depends(text).as_deref(), Some("linux-image-6.1.0-56-amd64"));
        assert_eq!(parse_metapackage_depends("linux-image-amd64\n"), None);
    }

    #[test]
    fn the_policy_names_the_candidate_or_none() {
        let known = "firmware-bnx2x:\n  Installed: (none)\n  Candidate: 20230210-5\n  Version table:\n";
        assert_eq!(parse_policy_candidate(known).as_deref(), Some("20230210-5"));
        let unavailable = "firmware-bnx2x:\n  Installed: (none)\n  Candidate: (none)\n  Version table:\n";
        assert_eq!(parse_policy_candidate(unavailable), None);
        assert_eq!(parse_policy_candidate(""), None, "apt-cache policy prints nothing for an unknown name");
    }
}
