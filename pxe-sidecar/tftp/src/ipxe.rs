//! Laying out the served root with the iPXE binaries from Debian's `ipxe` package.

use std::fs;
use std::path::{Path, PathBuf};

use crate::TftpError;
use crate::confine::is_plain_name;

/// Where Debian's `ipxe` package installs its binaries.
pub const DEBIAN_IPXE_DIR: &str = "/usr/lib/ipxe";

/// The firmware a client boots with (DHCP option 93 picks among these).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientArch {
    /// Legacy BIOS PXE (option 93 value 0).
    Bios,
    /// x86-64 UEFI (option 93 values 7 and 9).
    X86_64Uefi,
    /// arm64 UEFI (option 93 value 11).
    Arm64Uefi,
}

/// One iPXE binary the root should hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpxeBinary {
    /// The firmware it is for.
    pub arch: ClientArch,
    /// Its name in the served root (what the DHCP boot file names).
    pub served_name: &'static str,
    /// Where to look for it, relative to the source directory, first match wins.
    pub candidates: &'static [&'static str],
}

/// The binaries machinist serves. Debian bookworm's `ipxe` package (amd64) ships
/// `undionly.kpxe` and `ipxe.efi` but no arm64 binary; the arm64 candidates are where other
/// builds put one, and its absence is reported by [`install_ipxe`], not an error.
pub const IPXE_BINARIES: [IpxeBinary; 3] = [
    IpxeBinary { arch: ClientArch::Bios, served_name: "undionly.kpxe", candidates: &["undionly.kpxe"] },
    IpxeBinary { arch: ClientArch::X86_64Uefi, served_name: "ipxe.efi", candidates: &["ipxe.efi"] },
    IpxeBinary {
        arch: ClientArch::Arm64Uefi,
        served_name: "ipxe-arm64.efi",
        candidates: &["arm64-efi/ipxe.efi", "ipxe-arm64.efi", "arm64/ipxe.efi"],
    },
];

/// A binary copied into the root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstalledBinary {
    /// The firmware it is for.
    pub arch: ClientArch,
    /// Its name in the root.
    pub served_name: &'static str,
    /// Where it was copied from.
    pub source: PathBuf,
    /// Its size in bytes.
    pub size: u64,
}

/// What [`install_ipxe`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpxeLayout {
    /// The binaries now in the root.
    pub installed: Vec<InstalledBinary>,
    /// The binaries found nowhere among their candidates.
    pub missing: Vec<IpxeBinary>,
}

impl IpxeLayout {
    /// Whether the binary for `arch` is in the root.
    pub fn has(&self, arch: ClientArch) -> bool {
        self.installed.iter().any(|b| b.arch == arch)
    }
}

/// Copies the [`IPXE_BINARIES`] found under `source_dir` (normally [`DEBIAN_IPXE_DIR`]) into
/// `root`, and reports which were found. Files are copied, not linked: a link from the root to
/// `/usr/lib/ipxe` would lead outside the root and be refused. Each copy is written beside its
/// final name and renamed into place, so a running server never sends half a file.
pub fn install_ipxe(source_dir: &Path, root: &Path) -> Result<IpxeLayout, TftpError> {
    let mut layout = IpxeLayout::default();
    for binary in IPXE_BINARIES {
        if !is_plain_name(binary.served_name) {
            return Err(TftpError::Layout {
                path: root.join(binary.served_name),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "served name is not a plain file name"),
            });
        }
        let Some(source) = binary.candidates.iter().map(|c| source_dir.join(c)).find(|p| p.is_file()) else {
            tracing::warn!(arch = ?binary.arch, name = binary.served_name, source_dir = %source_dir.display(), "ipxe binary not found");
            layout.missing.push(binary);
            continue;
        };
        let target = root.join(binary.served_name);
        let partial = root.join(format!(".{}.partial", binary.served_name));
        let size = fs::copy(&source, &partial).map_err(|e| TftpError::Layout { path: partial.clone(), source: e })?;
        fs::rename(&partial, &target).map_err(|e| TftpError::Layout { path: target.clone(), source: e })?;
        tracing::info!(arch = ?binary.arch, name = binary.served_name, source = %source.display(), size, "ipxe binary installed");
        layout.installed.push(InstalledBinary { arch: binary.arch, served_name: binary.served_name, source, size });
    }
    Ok(layout)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic
    use super::*;

    #[test]
    fn copies_what_exists_and_reports_the_rest() {
        let source = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        fs::write(source.path().join("undionly.kpxe"), b"bios").unwrap();
        fs::create_dir(source.path().join("arm64-efi")).unwrap();
        fs::write(source.path().join("arm64-efi/ipxe.efi"), b"arm64!").unwrap();

        let layout = install_ipxe(source.path(), root.path()).unwrap();
        assert!(layout.has(ClientArch::Bios) && layout.has(ClientArch::Arm64Uefi));
        assert!(!layout.has(ClientArch::X86_64Uefi));
        assert_eq!(layout.missing.iter().map(|b| b.served_name).collect::<Vec<_>>(), ["ipxe.efi"]);
        assert_eq!(fs::read(root.path().join("ipxe-arm64.efi")).unwrap(), b"arm64!");
        assert_eq!(fs::read(root.path().join("undionly.kpxe")).unwrap(), b"bios");
        // Copies, not links, and no partial files left behind.
        assert!(!fs::symlink_metadata(root.path().join("undionly.kpxe")).unwrap().file_type().is_symlink());
        assert_eq!(fs::read_dir(root.path()).unwrap().count(), 2);
    }
}
