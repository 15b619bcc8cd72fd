//! What a lab needs from the host: root (network namespaces, a bridge, taps), the programs
//! [`PROGRAMS`], and QEMU's iPXE ROMs ([`QEMU_IPXE_ROMS`]). `scripts/deps` installs them all.

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The programs a lab runs: `ip` (namespaces, the bridge, taps) and `qemu-system-x86_64` (VMs).
pub const PROGRAMS: &[&str] = &["ip", "qemu-system-x86_64"];

/// Where QEMU's iPXE option ROMs are (Debian package `ipxe-qemu`): a [`Vm`](crate::Vm)'s NIC
/// boots from the network with one of them.
pub const QEMU_IPXE_ROMS: &str = "/usr/lib/ipxe/qemu";

/// Something a lab needs that this host does not have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Missing {
    /// This process does not run as root.
    Root,
    /// A program is not on `PATH`.
    Program(String),
    /// No [`QEMU_IPXE_ROMS`] directory.
    QemuIpxeRoms,
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Root => f.write_str("root (to create a network namespace, a bridge and taps)"),
            Self::Program(program) => write!(f, "{program} (not found on PATH)"),
            Self::QemuIpxeRoms => write!(f, "QEMU's iPXE ROMs ({QEMU_IPXE_ROMS}, Debian package ipxe-qemu)"),
        }
    }
}

/// What this host lacks of what a lab needs; empty when it has everything.
pub fn missing() -> Vec<Missing> {
    let path = std::env::var_os("PATH");
    let mut missing: Vec<Missing> = PROGRAMS
        .iter()
        .filter(|program| find_program(program, path.as_deref()).is_none())
        .map(|program| Missing::Program((*program).to_owned()))
        .collect();
    if !Path::new(QEMU_IPXE_ROMS).is_dir() {
        missing.push(Missing::QemuIpxeRoms);
    }
    if !is_root() {
        missing.insert(0, Missing::Root);
    }
    missing
}

/// `Ok` when the host has what a lab needs, else [`Error::Missing`] listing what it lacks.
pub fn check() -> Result<()> {
    let missing = missing();
    if missing.is_empty() { Ok(()) } else { Err(Error::Missing { missing }) }
}

/// One sentence listing `missing`, with what installs it.
pub fn describe(missing: &[Missing]) -> String {
    let list: Vec<String> = missing.iter().map(ToString::to_string).collect();
    let install = if missing.iter().any(|m| *m != Missing::Root) { "; scripts/deps installs the programs" } else { "" };
    format!("this needs {}{install}", list.join(", "))
}

/// Whether this process runs as (effective) root, from `/proc/self/status`.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:").and_then(|ids| ids.split_whitespace().nth(1)))
                .map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

/// Finds an executable `program` on a `PATH`-style search path (a name with a `/` is taken
/// as a path and only checked).
pub fn find_program(program: &str, search_path: Option<&OsStr>) -> Option<PathBuf> {
    if program.contains('/') {
        return is_executable(Path::new(program)).then(|| PathBuf::from(program));
    }
    std::env::split_paths(search_path?).map(|dir| dir.join(program)).find(|path| is_executable(path))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic
    use super::*;

    #[test]
    fn programs_are_found_only_when_executable() -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("machinist-lab-host-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let tool = dir.join("tool");
        std::fs::write(&tool, "#!/bin/sh\n")?;
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o644))?;
        let search = dir.as_os_str();
        assert_eq!(find_program("tool", Some(search)), None);
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755))?;
        assert_eq!(find_program("tool", Some(search)), Some(tool.clone()));
        assert_eq!(find_program("absent", Some(search)), None);
        assert_eq!(find_program(tool.to_str().unwrap(), None), Some(tool.clone()));
        std::fs::remove_dir_all(&dir)
    }

    #[test]
    fn what_is_missing_reads_as_a_sentence() {
        let missing = [Missing::Root, Missing::Program("qemu-system-x86_64".into()), Missing::QemuIpxeRoms];
        assert_eq!(
            describe(&missing),
            "this needs root (to create a network namespace, a bridge and taps), qemu-system-x86_64 (not found \
             on PATH), QEMU's iPXE ROMs (/usr/lib/ipxe/qemu, Debian package ipxe-qemu); scripts/deps installs \
             the programs"
        );
        assert_eq!(describe(&[Missing::Root]), "this needs root (to create a network namespace, a bridge and taps)");
    }
}
