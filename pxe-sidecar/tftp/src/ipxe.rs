//! Laying out the served root with the iPXE binaries from Debian's `ipxe` package.

use std::fmt;
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

impl fmt::Display for ClientArch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Bios => "BIOS",
            Self::X86_64Uefi => "x86-64 UEFI",
            Self::Arm64Uefi => "arm64 UEFI",
        })
    }
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
/// builds put one. A binary found nowhere is not an error: [`install_ipxe`] says at start which
/// architectures are served, and the server warns when a client asks for a missing one
/// ([`ipxe_binary_named`]).
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

/// What [`install_ipxe`] found. Displayed, it says which architectures are served and from
/// where, and which are not: `serving BIOS (undionly.kpxe, from /usr/lib/ipxe/undionly.kpxe);
/// not serving arm64 UEFI (none of arm64-efi/ipxe.efi, … in /usr/lib/ipxe)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpxeLayout {
    /// The directory the binaries were looked for in.
    pub source_dir: PathBuf,
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

    /// The architectures served and where each binary came from: `BIOS (undionly.kpxe, from
    /// /usr/lib/ipxe/undionly.kpxe), …`; `none` when none is.
    pub fn served(&self) -> String {
        if self.installed.is_empty() {
            return "none".to_owned();
        }
        let served: Vec<String> = self
            .installed
            .iter()
            .map(|b| format!("{} ({}, from {})", b.arch, b.served_name, b.source.display()))
            .collect();
        served.join(", ")
    }

    /// The architectures not served and where their binaries were looked for: `arm64 UEFI
    /// (none of arm64-efi/ipxe.efi, ipxe-arm64.efi, arm64/ipxe.efi in /usr/lib/ipxe)`; `none`
    /// when every one is served.
    pub fn not_served(&self) -> String {
        if self.missing.is_empty() {
            return "none".to_owned();
        }
        let missing: Vec<String> = self
            .missing
            .iter()
            .map(|b| format!("{} (none of {} in {})", b.arch, b.candidates.join(", "), self.source_dir.display()))
            .collect();
        missing.join(", ")
    }
}

impl fmt::Display for IpxeLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "serving {}", self.served())?;
        if !self.missing.is_empty() {
            write!(f, "; not serving {}", self.not_served())?;
        }
        Ok(())
    }
}

/// The iPXE binary a TFTP request names (`ipxe-arm64.efi`, `/undionly.kpxe`), if it names one
/// of [`IPXE_BINARIES`]: the server says which architecture a client was left without when
/// such a file is missing.
pub fn ipxe_binary_named(requested: &Path) -> Option<IpxeBinary> {
    let name = requested.to_str()?.trim_start_matches('/');
    IPXE_BINARIES.into_iter().find(|b| b.served_name == name)
}

/// Copies the [`IPXE_BINARIES`] found under `source_dir` (normally [`DEBIAN_IPXE_DIR`]) into
/// `root`, and reports which were found; logs once, at info level, which architectures are
/// served and which are not (a missing one is not an error: the server warns if a client of it
/// asks). Files are copied, not linked: a link from the root to `/usr/lib/ipxe` would lead
/// outside the root and be refused. Each copy is written beside its final name and renamed
/// into place, so a running server never sends half a file.
pub fn install_ipxe(source_dir: &Path, root: &Path) -> Result<IpxeLayout, TftpError> {
    let mut layout = IpxeLayout { source_dir: source_dir.to_path_buf(), ..IpxeLayout::default() };
    for binary in IPXE_BINARIES {
        if !is_plain_name(binary.served_name) {
            return Err(TftpError::Layout {
                path: root.join(binary.served_name),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "served name is not a plain file name"),
            });
        }
        let Some(source) = binary.candidates.iter().map(|c| source_dir.join(c)).find(|p| p.is_file()) else {
            layout.missing.push(binary);
            continue;
        };
        let target = root.join(binary.served_name);
        let partial = root.join(format!(".{}.partial", binary.served_name));
        let size = fs::copy(&source, &partial).map_err(|e| TftpError::Layout { path: partial.clone(), source: e })?;
        fs::rename(&partial, &target).map_err(|e| TftpError::Layout { path: target.clone(), source: e })?;
        layout.installed.push(InstalledBinary { arch: binary.arch, served_name: binary.served_name, source, size });
    }
    if layout.missing.is_empty() {
        tracing::info!(root = %root.display(), served = %layout.served(), "iPXE binaries copied into the TFTP root");
    } else {
        tracing::info!(
            root = %root.display(),
            served = %layout.served(),
            not_served = %layout.not_served(),
            "iPXE binaries copied into the TFTP root; clients of the architectures not served get no boot file",
        );
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
        // What the start-up line says: served from where, and what is not, looked for where.
        let from = source.path().display();
        assert_eq!(
            layout.to_string(),
            format!(
                "serving BIOS (undionly.kpxe, from {from}/undionly.kpxe), arm64 UEFI (ipxe-arm64.efi, from \
                 {from}/arm64-efi/ipxe.efi); not serving x86-64 UEFI (none of ipxe.efi in {from})"
            )
        );
        assert_eq!(fs::read(root.path().join("ipxe-arm64.efi")).unwrap(), b"arm64!");
        assert_eq!(fs::read(root.path().join("undionly.kpxe")).unwrap(), b"bios");
        // Copies, not links, and no partial files left behind.
        assert!(!fs::symlink_metadata(root.path().join("undionly.kpxe")).unwrap().file_type().is_symlink());
        assert_eq!(fs::read_dir(root.path()).unwrap().count(), 2);
    }

    #[test]
    fn everything_served_says_so() {
        let source = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        for name in ["undionly.kpxe", "ipxe.efi", "ipxe-arm64.efi"] {
            fs::write(source.path().join(name), name).unwrap();
        }
        let layout = install_ipxe(source.path(), root.path()).unwrap();
        assert!(layout.missing.is_empty());
        assert_eq!(layout.not_served(), "none");
        assert!(!layout.to_string().contains("not serving"), "{layout}");
        assert_eq!(IpxeLayout::default().served(), "none");
    }

    #[test]
    fn requests_for_ipxe_binaries_are_recognised() {
        assert_eq!(ipxe_binary_named(Path::new("ipxe-arm64.efi")).map(|b| b.arch), Some(ClientArch::Arm64Uefi));
        assert_eq!(ipxe_binary_named(Path::new("/undionly.kpxe")).map(|b| b.arch), Some(ClientArch::Bios));
        assert_eq!(ipxe_binary_named(Path::new("machinist.ipxe")), None);
        assert_eq!(ipxe_binary_named(Path::new("arm64-efi/ipxe.efi")), None, "a candidate, not a served name");
    }
}
