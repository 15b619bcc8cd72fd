//! Confinement: every requested path resolves under one root, or is refused.
//!
//! These are plain functions over the file system, with no network in them, so the rules can
//! be tested on their own.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Why a request was refused or could not be served.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The name is empty, or names the root itself.
    #[error("empty file name")]
    Empty,
    /// The name contains a NUL byte.
    #[error("file name contains a NUL byte")]
    NulByte,
    /// The name has a `..` component.
    #[error("file name has a `..` component")]
    ParentComponent,
    /// The name resolves (through a symbolic link) to a file outside the root.
    #[error("{resolved} is outside the root")]
    OutsideRoot {
        /// Where the name led.
        resolved: PathBuf,
    },
    /// A write request: the server is read-only.
    #[error("write requests are refused: the server is read-only")]
    Write,
    /// Nothing by that name under the root.
    #[error("no such file under the root")]
    NotFound,
    /// The name resolves to something other than a regular file (a directory, a device).
    #[error("{resolved} is not a regular file")]
    NotAFile {
        /// Where the name led.
        resolved: PathBuf,
    },
    /// The file exists but could not be read.
    #[error("failed to open {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl Refusal {
    /// Whether this is a confinement refusal (as opposed to a missing or unreadable file):
    /// these are counted as `refused` and answered with TFTP error 2, "access violation".
    pub fn is_violation(&self) -> bool {
        matches!(self, Self::Empty | Self::NulByte | Self::ParentComponent | Self::OutsideRoot { .. } | Self::Write)
    }

    /// A short, stable name for logs and counters.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::NulByte => "nul_byte",
            Self::ParentComponent => "parent_component",
            Self::OutsideRoot { .. } => "outside_root",
            Self::Write => "write",
            Self::NotFound => "not_found",
            Self::NotAFile { .. } => "not_a_file",
            Self::Io { .. } => "io",
        }
    }
}

/// Turns a requested name into a path relative to the root, without touching the file system.
///
/// A leading `/` means the root (as `in.tftpd --secure` does), `.` components are dropped, and
/// a `..` component anywhere, a NUL byte, or a name that is only the root, is refused.
pub fn relative_name(requested: &Path) -> Result<PathBuf, Refusal> {
    if requested.as_os_str().as_bytes().contains(&0) {
        return Err(Refusal::NulByte);
    }
    let mut relative = PathBuf::new();
    for component in requested.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => return Err(Refusal::ParentComponent),
            Component::Normal(part) => relative.push(part),
            // Windows drive prefixes do not exist on Unix; refuse rather than guess.
            Component::Prefix(_) => return Err(Refusal::ParentComponent),
        }
    }
    if relative.as_os_str().is_empty() {
        return Err(Refusal::Empty);
    }
    Ok(relative)
}

/// Resolves a requested name under `root` (which must already be canonical: see
/// [`canonical_root`]): the name is made relative ([`relative_name`]), joined to the root,
/// and every symbolic link in it resolved; a result outside the root is refused.
pub fn resolve(root: &Path, requested: &Path) -> Result<PathBuf, Refusal> {
    let joined = root.join(relative_name(requested)?);
    let resolved = match joined.canonicalize() {
        Ok(resolved) => resolved,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Refusal::NotFound),
        Err(source) => return Err(Refusal::Io { path: joined, source }),
    };
    if !resolved.starts_with(root) || resolved == root {
        return Err(Refusal::OutsideRoot { resolved });
    }
    Ok(resolved)
}

/// Opens a requested name read-only under `root`: [`resolve`], then open, then check that
/// what was opened is a regular file and (on Linux, through `/proc/self/fd`) still lies under
/// the root — so a link swapped in between the check and the open is caught too.
/// Returns the file and its length (for the `tsize` option).
pub fn open_confined(root: &Path, requested: &Path) -> Result<(File, u64), Refusal> {
    let resolved = resolve(root, requested)?;
    let file = File::open(&resolved).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => Refusal::NotFound,
        _ => Refusal::Io { path: resolved.clone(), source },
    })?;
    let metadata = file.metadata().map_err(|source| Refusal::Io { path: resolved.clone(), source })?;
    if !metadata.is_file() {
        return Err(Refusal::NotAFile { resolved });
    }
    if let Some(opened) = opened_path(&file)
        && !opened.starts_with(root)
    {
        return Err(Refusal::OutsideRoot { resolved: opened });
    }
    Ok((file, metadata.len()))
}

/// The path the kernel has for an open file, where `/proc` is mounted.
fn opened_path(file: &File) -> Option<PathBuf> {
    use std::os::fd::AsRawFd;
    let link = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()?;
    // A deleted file reads as "PATH (deleted)"; it is still the file that was checked.
    Some(link)
}

/// Canonicalizes the root directory and checks it is a directory.
pub fn canonical_root(root: &Path) -> io::Result<PathBuf> {
    let canonical = root.canonicalize()?;
    if !canonical.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            format!("{} is not a directory", canonical.display()),
        ));
    }
    Ok(canonical)
}

/// Whether a name is plain (one normal component, no separators), as the iPXE layout wants.
pub(crate) fn is_plain_name(name: &str) -> bool {
    let path = Path::new(name);
    matches!(path.components().collect::<Vec<_>>().as_slice(), [Component::Normal(n)] if *n == OsStr::new(name))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic
    use super::*;

    #[test]
    fn names_become_relative_to_the_root() {
        assert_eq!(relative_name(Path::new("undionly.kpxe")).unwrap(), Path::new("undionly.kpxe"));
        assert_eq!(relative_name(Path::new("/undionly.kpxe")).unwrap(), Path::new("undionly.kpxe"));
        assert_eq!(relative_name(Path::new("./a/./b")).unwrap(), Path::new("a/b"));
        assert_eq!(relative_name(Path::new("//a//b")).unwrap(), Path::new("a/b"));
    }

    #[test]
    fn parent_components_nul_bytes_and_empty_names_are_refused() {
        for name in ["..", "../etc/passwd", "a/../../b", "a/..", "/../x"] {
            assert!(matches!(relative_name(Path::new(name)), Err(Refusal::ParentComponent)), "{name}");
        }
        assert!(matches!(relative_name(Path::new(OsStr::from_bytes(b"a\0b"))), Err(Refusal::NulByte)));
        for name in ["", "/", ".", "./"] {
            assert!(matches!(relative_name(Path::new(name)), Err(Refusal::Empty)), "{name:?}");
        }
    }

    #[test]
    fn symlinks_inside_are_followed_and_links_out_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/file"), b"in").unwrap();
        std::fs::write(dir.path().join("secret"), b"out").unwrap();
        std::os::unix::fs::symlink("sub/file", root.join("inside")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("outside")).unwrap();
        std::os::unix::fs::symlink("../..", root.join("sub/up")).unwrap();
        let root = canonical_root(&root).unwrap();

        assert_eq!(resolve(&root, Path::new("inside")).unwrap(), root.join("sub/file"));
        assert_eq!(open_confined(&root, Path::new("/sub/file")).unwrap().1, 2);
        assert!(matches!(resolve(&root, Path::new("outside")), Err(Refusal::OutsideRoot { .. })));
        assert!(matches!(resolve(&root, Path::new("sub/up/secret")), Err(Refusal::OutsideRoot { .. })));
        assert!(matches!(resolve(&root, Path::new("sub/up")), Err(Refusal::OutsideRoot { .. })));
        assert!(matches!(open_confined(&root, Path::new("sub")), Err(Refusal::NotAFile { .. })));
        assert!(matches!(open_confined(&root, Path::new("missing")), Err(Refusal::NotFound)));
        // An absolute path means the root: the file outside is not what is looked up.
        let secret = dir.path().join("secret");
        assert!(matches!(open_confined(&root, &secret), Err(Refusal::NotFound)));
    }

    #[test]
    fn plain_names() {
        assert!(is_plain_name("ipxe.efi"));
        assert!(!is_plain_name("a/b"));
        assert!(!is_plain_name(".."));
        assert!(!is_plain_name("/x"));
        assert!(!is_plain_name(""));
    }
}
