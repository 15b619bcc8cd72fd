//! What a build made: `manifest.json` beside `vmlinuz` and `initrd.gz`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::build::{INITRD_FILE, KERNEL_FILE};
use crate::error::{Error, Result, io};

/// The manifest's file name in an output directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// What is in a built RAM disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// The Debian kernel package (`linux-image-6.1.0-56-amd64`).
    pub kernel_package: String,
    /// The kernel release (`6.1.0-56-amd64`).
    pub release: String,
    /// The recipe hash (16 hex digits), the cache key with the package.
    pub recipe_hash: String,
    /// The modules in the image, in load order.
    pub modules: Vec<String>,
    /// Their paths in the image, in the same order (also in `/etc/machinist/modules`).
    pub module_paths: Vec<String>,
    /// Wanted modules and dependencies built into the kernel (nothing to load).
    pub builtin: Vec<String>,
    /// Wanted modules and dependencies the kernel package does not have.
    pub missing: Vec<String>,
    /// Firmware files in the image, relative to `/lib/firmware` (`bnx2x/bnx2x-e2-7.13.21.0.fw`).
    #[serde(default)]
    pub firmware: Vec<String>,
    /// Firmware files a module names and no source had, as `module: file`.
    #[serde(default)]
    pub missing_firmware: Vec<String>,
    /// The firmware packages used, as `package version` (`firmware-bnx2x 20230210-5`).
    #[serde(default)]
    pub firmware_packages: Vec<String>,
    /// The packages the programs and their libraries come from, as `name version`.
    #[serde(default)]
    pub program_packages: Vec<String>,
    /// Missing modules and firmware, unavailable firmware packages and dependency cycles, in
    /// words.
    pub warnings: Vec<String>,
    /// Every path in the image, sorted (the archive's order).
    pub files: Vec<String>,
    /// Size of `vmlinuz` in bytes.
    pub kernel_size: u64,
    /// Size of `initrd.gz` in bytes.
    pub initrd_size: u64,
    /// Size of the cpio archive before compression.
    pub uncompressed_size: u64,
}

impl Manifest {
    pub(crate) fn write(&self, path: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::Manifest { path: path.to_path_buf(), detail: e.to_string() })?;
        text.push('\n');
        std::fs::write(path, text).map_err(io(format!("writing {}", path.display())))
    }
}

/// A built kernel and RAM disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Built {
    /// The kernel (`<dir>/vmlinuz`).
    pub kernel: PathBuf,
    /// The RAM disk, a gzip'd `newc` cpio archive (`<dir>/initrd.gz`).
    pub initrd: PathBuf,
    /// What is in it.
    pub manifest: Manifest,
}

impl Built {
    /// The build in `dir`, `None` when its manifest, kernel or RAM disk is absent.
    pub fn load(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(MANIFEST_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(format!("reading {}", path.display()))(e)),
        };
        let manifest: Manifest =
            serde_json::from_str(&text).map_err(|e| Error::Manifest { path: path.clone(), detail: e.to_string() })?;
        let built = Self { kernel: dir.join(KERNEL_FILE), initrd: dir.join(INITRD_FILE), manifest };
        Ok((built.kernel.is_file() && built.initrd.is_file()).then_some(built))
    }
}
