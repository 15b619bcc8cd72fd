//! Bounded, panic-free reads of files under the inventory root.
//!
//! Everything here answers `None` (or an empty list) instead of failing: a missing or
//! unreadable file is a fact about the machine, not an error of the agent.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Largest sysfs attribute we read; real ones are one short line.
pub const ATTRIBUTE_LIMIT: u64 = 64 * 1024;
/// Largest procfs table we read (`/proc/cpuinfo` of a 512-thread machine is about 1 MiB).
pub const PROC_LIMIT: u64 = 8 * 1024 * 1024;
/// Largest raw SMBIOS table we read; SMBIOS 3 allows more, no real table comes close.
pub const SMBIOS_LIMIT: u64 = 1024 * 1024;
/// Most entries we look at in one directory (a 4096-disk JBOD is already absurd).
pub const DIRECTORY_LIMIT: usize = 4096;

/// The directory that stands for `/`: `/` in production, a fixture tree in tests.
#[derive(Debug, Clone, Copy)]
pub struct Root<'a>(pub &'a Path);

impl Root<'_> {
    /// `rel` (an absolute-looking path such as `/sys/block`) under the root.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel.trim_start_matches('/'))
    }

    /// Up to `limit` bytes of a regular file. Directories, FIFOs and devices are refused so
    /// that a strange root cannot make the agent block.
    pub fn bytes(&self, rel: &str, limit: u64) -> Option<Vec<u8>> {
        let path = self.path(rel);
        if !fs::metadata(&path).ok()?.is_file() {
            return None;
        }
        let mut data = Vec::new();
        fs::File::open(&path).ok()?.take(limit).read_to_end(&mut data).ok()?;
        Some(data)
    }

    /// A text file (lossy UTF-8), bounded by `limit`.
    pub fn text(&self, rel: &str, limit: u64) -> Option<String> {
        self.bytes(rel, limit).map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// The first line of a sysfs attribute, trimmed; `None` when missing or empty.
    pub fn line(&self, rel: &str) -> Option<String> {
        let text = self.text(rel, ATTRIBUTE_LIMIT)?;
        let line = text.lines().next().unwrap_or_default().trim_matches(|c: char| c.is_whitespace() || c == '\0');
        (!line.is_empty()).then(|| line.to_owned())
    }

    /// Whether the path exists (following symlinks).
    pub fn exists(&self, rel: &str) -> bool {
        self.path(rel).exists()
    }

    /// Whether the path is a directory (following symlinks).
    pub fn is_dir(&self, rel: &str) -> bool {
        self.path(rel).is_dir()
    }

    /// Sorted names in a directory, at most [`DIRECTORY_LIMIT`] of them.
    pub fn list(&self, rel: &str) -> Vec<String> {
        let Ok(entries) = fs::read_dir(self.path(rel)) else {
            return Vec::new();
        };
        let mut names: Vec<String> =
            entries.take(DIRECTORY_LIMIT).filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
        names.sort();
        names
    }

    /// The last component of a symlink's target (`device/driver` → `e1000e`).
    pub fn link_name(&self, rel: &str) -> Option<String> {
        let path = self.path(rel);
        let target = fs::read_link(&path).ok()?;
        // A target such as `../..` names no file: ask where it really leads.
        let name = match target.file_name() {
            Some(name) => name.to_owned(),
            None => fs::canonicalize(&path).ok()?.file_name()?.to_owned(),
        };
        name.to_str().map(str::to_owned)
    }

    /// Where a path really is, as an absolute path inside the root (`/sys/devices/pci…`);
    /// sysfs classifies devices by where they hang in this tree.
    pub fn resolve(&self, rel: &str) -> Option<String> {
        let real = fs::canonicalize(self.path(rel)).ok()?;
        let base = fs::canonicalize(self.0).ok()?;
        let inside = real.strip_prefix(&base).ok()?;
        Some(format!("/{}", inside.to_str()?))
    }
}
