//! Errors of building a RAM disk.

use std::path::PathBuf;

/// What went wrong building a RAM disk.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A command ran and failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// How it ended.
        status: String,
        /// Its stderr (trimmed).
        stderr: String,
    },
    /// A program the build needs is not installed.
    #[error("{program} is not installed (not found on PATH): {hint}")]
    MissingProgram {
        /// The program.
        program: String,
        /// What to install.
        hint: String,
    },
    /// A binary for the image is dynamically linked (the RAM disk has no libraries).
    #[error("{0} is not a statically linked x86-64 ELF binary (the RAM disk has no shared libraries)")]
    NotStatic(PathBuf),
    /// A path in the image is empty or leaves the image (`..`).
    #[error("{0:?} is not a path inside the image")]
    BadPath(PathBuf),
    /// The kernel package is not what was expected.
    #[error("{0}")]
    Kernel(String),
    /// A Debian package cannot be named, downloaded or unpacked.
    #[error("{0}")]
    Package(String),
    /// A dynamically linked program cannot be carried (not ELF, a library missing).
    #[error("{0}")]
    Program(String),
    /// A cached image's manifest cannot be read.
    #[error("{path}: {detail}")]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Wraps an I/O error with what was being done.
pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}
