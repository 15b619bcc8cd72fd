//! The RAM disk's file list and its `newc` cpio archive. Pure: entries are kept sorted by path
//! (parents before children), owned by root, with mtime 0 and inode numbers by position, so the
//! same entries always give the same bytes.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Component, Path};

use crate::Error;

/// One entry of the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A directory with its permission bits.
    Dir {
        /// Permission bits (`0o755`).
        mode: u32,
    },
    /// A regular file.
    File {
        /// Its contents.
        data: Vec<u8>,
        /// Permission bits.
        mode: u32,
    },
    /// A symbolic link.
    Symlink {
        /// Where it points.
        target: String,
    },
    /// A character device node (`/dev/console`, so that the kernel opens a console for init
    /// before devtmpfs is mounted).
    CharDevice {
        /// Permission bits.
        mode: u32,
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
}

/// The files of a RAM disk, by path relative to its root (`bin/busybox`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Image {
    entries: BTreeMap<String, Entry>,
}

/// `bin/busybox` from `/bin/busybox` or `bin/busybox`; an error for empty paths and `..`.
pub fn image_path(path: &Path) -> Result<String, Error> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => {
                parts.push(part.to_str().ok_or_else(|| Error::BadPath(path.to_path_buf()))?.to_owned())
            }
            Component::ParentDir | Component::Prefix(_) => return Err(Error::BadPath(path.to_path_buf())),
        }
    }
    if parts.is_empty() {
        return Err(Error::BadPath(path.to_path_buf()));
    }
    Ok(parts.join("/"))
}

impl Image {
    /// An empty image.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) `entry` at `path`, adding missing parent directories (`0o755`).
    pub fn insert(&mut self, path: &str, entry: Entry) {
        let mut parent = String::new();
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let Some((last, parents)) = parts.split_last() else { return };
        for part in parents {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(part);
            self.entries.entry(parent.clone()).or_insert(Entry::Dir { mode: 0o755 });
        }
        let full = if parent.is_empty() { (*last).to_owned() } else { format!("{parent}/{last}") };
        self.entries.insert(full, entry);
    }

    /// Adds a directory.
    pub fn dir(&mut self, path: &str, mode: u32) {
        self.insert(path, Entry::Dir { mode });
    }

    /// Adds a regular file.
    pub fn file(&mut self, path: &str, data: impl Into<Vec<u8>>, mode: u32) {
        self.insert(path, Entry::File { data: data.into(), mode });
    }

    /// Adds a symbolic link, unless something is already at `path`.
    pub fn symlink_if_absent(&mut self, path: &str, target: &str) {
        if !self.entries.contains_key(path) {
            self.insert(path, Entry::Symlink { target: target.to_owned() });
        }
    }

    /// The entry at `path`.
    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries.get(path)
    }

    /// Every path, sorted (the archive's order).
    pub fn paths(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    /// Writes the image as a `newc` cpio archive (what the kernel unpacks as initramfs).
    pub fn write_newc(&self, out: &mut impl Write) -> std::io::Result<()> {
        for (index, (path, entry)) in self.entries.iter().enumerate() {
            let (mode, nlink, data, rdev): (u32, u32, &[u8], (u32, u32)) = match entry {
                Entry::Dir { mode } => (0o040_000 | (mode & 0o7777), 2, &[], (0, 0)),
                Entry::File { data, mode } => (0o100_000 | (mode & 0o7777), 1, data, (0, 0)),
                Entry::Symlink { target } => (0o120_777, 1, target.as_bytes(), (0, 0)),
                Entry::CharDevice { mode, major, minor } => (0o020_000 | (mode & 0o7777), 1, &[], (*major, *minor)),
            };
            let ino = u32::try_from(index + 1).unwrap_or(u32::MAX);
            write_record(out, path, ino, mode, nlink, data, rdev)?;
        }
        write_record(out, "TRAILER!!!", 0, 0, 1, &[], (0, 0))
    }
}

/// One `newc` record: the 110-byte header, the name (NUL-terminated, padded to 4), the data
/// (padded to 4).
fn write_record(
    out: &mut impl Write,
    name: &str,
    ino: u32,
    mode: u32,
    nlink: u32,
    data: &[u8],
    (rdev_major, rdev_minor): (u32, u32),
) -> std::io::Result<()> {
    let size = u32::try_from(data.len()).map_err(|_| std::io::Error::other(format!("{name} is over 4 GiB")))?;
    let name_size = u32::try_from(name.len() + 1).map_err(|_| std::io::Error::other("name too long"))?;
    // ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
    let fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev_major, rdev_minor, name_size, 0];
    let mut header = String::with_capacity(110);
    header.push_str("070701");
    for field in fields {
        header.push_str(&format!("{field:08x}"));
    }
    out.write_all(header.as_bytes())?;
    out.write_all(name.as_bytes())?;
    out.write_all(&[0])?;
    out.write_all(&[0; 3][..padding(110 + name.len() + 1)])?;
    out.write_all(data)?;
    out.write_all(&[0; 3][..padding(data.len())])
}

fn padding(length: usize) -> usize {
    (4 - length % 4) % 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_are_added_and_sorted_first() {
        let mut image = Image::new();
        image.file("usr/share/udhcpc/default.script", "x", 0o755);
        image.file("bin/busybox", "y", 0o755);
        image.symlink_if_absent("bin/sh", "/bin/busybox");
        image.symlink_if_absent("bin/busybox", "/nowhere");
        image.file("bin-extra", "z", 0o644);
        assert_eq!(
            image.paths(),
            [
                "bin",
                "bin-extra",
                "bin/busybox",
                "bin/sh",
                "usr",
                "usr/share",
                "usr/share/udhcpc",
                "usr/share/udhcpc/default.script"
            ]
        );
        assert!(matches!(image.get("bin/busybox"), Some(Entry::File { .. })));
    }

    #[test]
    fn paths_in_the_image_are_relative_and_stay_inside() {
        assert_eq!(image_path(Path::new("/etc/machinist/x")).ok().as_deref(), Some("etc/machinist/x"));
        assert_eq!(image_path(Path::new("./init")).ok().as_deref(), Some("init"));
        assert!(image_path(Path::new("/etc/../../x")).is_err());
        assert!(image_path(Path::new("/")).is_err());
    }

    #[test]
    fn newc_records_are_aligned_and_deterministic() -> std::io::Result<()> {
        let mut image = Image::new();
        image.file("init", "#!/bin/sh\n", 0o755);
        image.insert("dev/console", Entry::CharDevice { mode: 0o600, major: 5, minor: 1 });
        let mut first = Vec::new();
        image.write_newc(&mut first)?;
        let mut second = Vec::new();
        image.clone().write_newc(&mut second)?;
        assert_eq!(first, second);
        assert_eq!(first.len() % 4, 0);
        let text = String::from_utf8_lossy(&first);
        // dev (dir), dev/console, init, trailer.
        assert_eq!(text.matches("070701").count(), 4);
        assert!(text.starts_with("07070100000001000041ed00000000000000000000000200000000"));
        assert!(text.contains("TRAILER!!!"));
        // The console: mode 020600, rdev 5:1.
        let console = text.find("dev/console").map(|end| &text[end - 110..end]).unwrap_or_default();
        assert_eq!(&console[14..22], "00002180");
        assert_eq!(&console[78..94], "0000000500000001");
        Ok(())
    }
}
