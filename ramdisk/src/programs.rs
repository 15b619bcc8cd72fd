//! Dynamically linked programs the RAM disk carries with the libraries they need
//! (kexec-tools' `kexec`: Debian builds it dynamically, with Xen support, against glibc and
//! Xen's control libraries),
//! every file from Debian packages: the program's package and its libraries' packages, each
//! downloaded once and unpacked (`dpkg -x`, no maintainer scripts), never the host's files.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use crate::elf::dynamic_needs;
use crate::error::{Error, Result, io};
use crate::kernel::{extract, fetch_package};

/// Where libraries are looked up in the unpacked packages, and where they go in the image
/// (the first): the dynamic loader's default directories on Debian x86-64.
pub const LIBRARY_DIRS: &[&str] = &["lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu"];

/// A file for the image: absolute path and contents.
pub type ImageFile = (String, Vec<u8>);

/// A dynamically linked program and the packages its libraries come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    /// The Debian package holding it (`kexec-tools`).
    pub package: String,
    /// Its path in the package and in the image, relative (`sbin/kexec`).
    pub path: String,
    /// The packages its libraries (and the dynamic loader) are taken from.
    pub library_packages: Vec<String>,
}

impl Program {
    /// kexec-tools' `kexec` (loads the installed kernel for `onSuccess: kexec`): Debian
    /// bookworm's needs glibc and `libxenctrl` (Xen support), which needs Xen's small tool
    /// libraries (~300 KiB together).
    pub fn kexec() -> Self {
        let libraries = [
            "libc6",
            "libxenmisc4.17",
            "libxentoollog1",
            "libxentoolcore1",
            "libxencall1",
            "libxenevtchn1",
            "libxengnttab1",
            "libxenforeignmemory1",
            "libxendevicemodel1",
        ];
        Self {
            package: "kexec-tools".into(),
            path: "sbin/kexec".into(),
            library_packages: libraries.iter().map(|p| (*p).to_owned()).collect(),
        }
    }
}

/// A file taken as it is from a Debian package (a boot loader's code: syslinux's `mbr.bin`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageFile {
    /// The package (`syslinux-common`).
    pub package: String,
    /// Its path in the package and in the image, relative (`usr/lib/syslinux/mbr/mbr.bin`).
    pub path: String,
}

impl Program {
    /// e2fsprogs' `mke2fs` (the agent makes ext4 file systems for `tar` images).
    pub fn mke2fs() -> Self {
        let libraries = ["libc6", "libext2fs2", "libcom-err2", "libblkid1", "libuuid1"];
        Self {
            package: "e2fsprogs".into(),
            path: "sbin/mke2fs".into(),
            library_packages: libraries.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    /// syslinux's `extlinux` (the agent installs it as the boot loader of `tar` images).
    pub fn extlinux() -> Self {
        Self { package: "extlinux".into(), path: "usr/bin/extlinux".into(), library_packages: vec!["libc6".into()] }
    }
}

impl PackageFile {
    /// The boot loader files the agent installs for `tar` images: syslinux's MBR codes (MBR
    /// and GPT) and its UEFI loader with its core module.
    pub fn boot_loader() -> Vec<Self> {
        [
            ("syslinux-common", "usr/lib/syslinux/mbr/mbr.bin"),
            ("syslinux-common", "usr/lib/syslinux/mbr/gptmbr.bin"),
            ("syslinux-common", "usr/lib/syslinux/modules/efi64/ldlinux.e64"),
            ("syslinux-efi", "usr/lib/SYSLINUX.EFI/efi64/syslinux.efi"),
        ]
        .iter()
        .map(|(package, path)| Self { package: (*package).to_owned(), path: (*path).to_owned() })
        .collect()
    }
}

/// The files `binary` needs, itself first at `/{path}`: its interpreter at the path its
/// `PT_INTERP` names, and every library its `DT_NEEDED` entries name, transitively, under
/// `/`[`LIBRARY_DIRS`]`[0]`; `library(name)` gives a library's bytes. Pure.
pub fn closure(path: &str, binary: Vec<u8>, library: impl Fn(&str) -> Option<Vec<u8>>) -> Result<Vec<ImageFile>> {
    let elf_error = |what: &str, e: crate::elf::ElfError| Error::Program(format!("{what}: {e}"));
    let needs = dynamic_needs(&binary).map_err(|e| elf_error(path, e))?;
    let path = path.trim_start_matches('/');
    if path.is_empty() || path.split('/').any(|part| part == ".." || part.is_empty()) {
        return Err(Error::BadPath(PathBuf::from(path)));
    }
    let missing =
        |name: &str, by: &str| Error::Program(format!("{by} needs {name}, which none of its library packages holds"));
    let mut files = vec![(format!("/{path}"), binary)];
    if let Some(interpreter) = &needs.interpreter {
        let name = interpreter.rsplit('/').next().unwrap_or(interpreter);
        let bytes = library(name).ok_or_else(|| missing(name, path))?;
        files.push((interpreter.clone(), bytes));
    }
    let mut seen = BTreeSet::new();
    let mut queue: VecDeque<(String, String)> = needs.needed.into_iter().map(|n| (n, path.to_owned())).collect();
    while let Some((name, by)) = queue.pop_front() {
        if name.contains('/') {
            return Err(Error::Program(format!("{by} needs {name:?}, a path rather than a library name")));
        }
        if !seen.insert(name.clone()) {
            continue;
        }
        let bytes = library(&name).ok_or_else(|| missing(&name, &by))?;
        let needs = dynamic_needs(&bytes).map_err(|e| elf_error(&name, e))?;
        queue.extend(needs.needed.into_iter().map(|n| (n, name.clone())));
        files.push((format!("/{}/{name}", LIBRARY_DIRS[0]), bytes));
    }
    Ok(files)
}

/// The files of `programs` ([`closure`] of each) and of `files`, their packages downloaded
/// into `downloads` (once) and unpacked under `scratch`; and the packages used, as `name version`.
pub fn gather(
    programs: &[Program],
    files: &[PackageFile],
    downloads: &Path,
    scratch: &Path,
) -> Result<(Vec<ImageFile>, Vec<String>)> {
    let files_wanted = files;
    let mut unpacked: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut versions = Vec::new();
    let mut unpack = |package: &str| -> Result<PathBuf> {
        if let Some(dir) = unpacked.get(package) {
            return Ok(dir.clone());
        }
        let deb = fetch_package(package, downloads)?;
        let dir = scratch.join(package);
        versions.push(extract(&deb, &dir)?);
        unpacked.insert(package.to_owned(), dir.clone());
        Ok(dir)
    };
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for program in programs {
        let tree = unpack(&program.package)?;
        let trees: Vec<PathBuf> = program.library_packages.iter().map(|p| unpack(p)).collect::<Result<_>>()?;
        let binary = read_in_tree(&tree, Path::new(&program.path))?
            .ok_or_else(|| Error::Program(format!("package {} has no {}", program.package, program.path)))?;
        let library = |name: &str| {
            trees
                .iter()
                .flat_map(|tree| LIBRARY_DIRS.iter().map(move |dir| (tree, Path::new(dir).join(name))))
                .find_map(|(tree, relative)| read_in_tree(tree, &relative).ok().flatten())
        };
        files.extend(closure(&program.path, binary, library)?);
    }
    for file in files_wanted {
        let tree = unpack(&file.package)?;
        let bytes = read_in_tree(&tree, Path::new(&file.path))?
            .ok_or_else(|| Error::Program(format!("package {} has no {}", file.package, file.path)))?;
        files.insert(format!("/{}", file.path.trim_start_matches('/')), bytes);
    }
    Ok((files.into_iter().collect(), versions))
}

/// The bytes of `relative` inside the unpacked tree `tree`, following symbolic links inside the
/// tree (an absolute target is taken as relative to the tree, never the host's file); `None`
/// when there is no such file.
fn read_in_tree(tree: &Path, relative: &Path) -> Result<Option<Vec<u8>>> {
    let mut current = relative.to_path_buf();
    for _ in 0..16 {
        let full = tree.join(&current);
        let metadata = match std::fs::symlink_metadata(&full) {
            Ok(metadata) => metadata,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(format!("reading {}", full.display()))(e)),
        };
        if !metadata.file_type().is_symlink() {
            return std::fs::read(&full).map(Some).map_err(io(format!("reading {}", full.display())));
        }
        let target = std::fs::read_link(&full).map_err(io(format!("reading the link {}", full.display())))?;
        current = match target.strip_prefix("/") {
            Ok(absolute) => absolute.to_path_buf(),
            Err(_) => current.parent().unwrap_or(Path::new("")).join(target),
        };
        if current.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            // Resolve `..` lexically, staying inside the tree.
            let mut resolved = PathBuf::new();
            for component in current.components() {
                match component {
                    std::path::Component::ParentDir => {
                        resolved.pop();
                    }
                    std::path::Component::Normal(part) => resolved.push(part),
                    _ => {}
                }
            }
            current = resolved;
        }
    }
    Err(Error::Program(format!("{}: too many levels of symbolic links", relative.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_program_needs_its_loader_and_libraries_transitively() {
        // Debian's ls (coreutils, essential) needs libselinux and libc; libselinux needs
        // libpcre2-8, which ls does not name.
        let binary = std::fs::read("/bin/ls").expect("/bin/ls");
        let host = |name: &str| std::fs::read(Path::new("/lib/x86_64-linux-gnu").join(name)).ok();
        let files = closure("bin/ls", binary, host).unwrap_or_else(|e| panic!("{e}"));
        let paths: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths[0], "/bin/ls");
        for expected in [
            "/lib64/ld-linux-x86-64.so.2",
            "/lib/x86_64-linux-gnu/libselinux.so.1",
            "/lib/x86_64-linux-gnu/libpcre2-8.so.0",
            "/lib/x86_64-linux-gnu/libc.so.6",
        ] {
            assert!(paths.contains(&expected), "{expected} missing from {paths:?}");
        }
        assert_eq!(paths.iter().filter(|p| p.ends_with("libc.so.6")).count(), 1, "each library once");
    }

    #[test]
    fn a_missing_library_or_a_hostile_path_is_an_error() {
        let binary = std::fs::read("/bin/ls").expect("/bin/ls");
        let none = |_: &str| None;
        let error = closure("bin/ls", binary.clone(), none).map(|_| ()).unwrap_err().to_string();
        assert!(error.contains("needs ld-linux-x86-64.so.2"), "{error}");
        assert!(matches!(closure("../etc/x", binary, none), Err(Error::BadPath(_))));
        assert!(matches!(closure("bin/x", b"#!/bin/sh\n".to_vec(), none), Err(Error::Program(_))));
    }

    #[test]
    fn links_resolve_inside_the_tree() -> Result<()> {
        let tree = tempfile::tempdir().map_err(io("tempdir"))?;
        let lib = tree.path().join("lib/x86_64-linux-gnu");
        std::fs::create_dir_all(&lib).map_err(io("mkdir"))?;
        std::fs::create_dir_all(tree.path().join("lib64")).map_err(io("mkdir"))?;
        std::fs::write(lib.join("libz.so.1.2.13"), b"zlib").map_err(io("write"))?;
        std::os::unix::fs::symlink("libz.so.1.2.13", lib.join("libz.so.1")).map_err(io("link"))?;
        // An absolute target means the tree's file, not the host's.
        std::os::unix::fs::symlink("/lib/x86_64-linux-gnu/libz.so.1", tree.path().join("lib64/z"))
            .map_err(io("link"))?;
        std::os::unix::fs::symlink("../lib/x86_64-linux-gnu/libz.so.1", tree.path().join("lib64/r"))
            .map_err(io("link"))?;
        std::os::unix::fs::symlink("loop", tree.path().join("lib64/loop")).map_err(io("link"))?;
        assert_eq!(read_in_tree(tree.path(), Path::new("lib/x86_64-linux-gnu/libz.so.1"))?, Some(b"zlib".to_vec()));
        assert_eq!(read_in_tree(tree.path(), Path::new("lib64/z"))?, Some(b"zlib".to_vec()));
        assert_eq!(read_in_tree(tree.path(), Path::new("lib64/r"))?, Some(b"zlib".to_vec()));
        assert_eq!(read_in_tree(tree.path(), Path::new("lib64/none"))?, None);
        assert!(read_in_tree(tree.path(), Path::new("lib64/loop")).is_err());
        Ok(())
    }
}
