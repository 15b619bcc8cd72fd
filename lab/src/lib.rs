//! A boot network on one host, apart from the host's own interfaces: a network namespace with
//! a bridge, programs and threads inside it, and QEMU VMs on taps of the bridge that boot from
//! the network. `machinist up --demo` runs its boot services and VMs in one; the end-to-end
//! tests (`machinist-e2e`) build on the same pieces.
//!
//! - [`Lab`]: a network namespace (`machinist-lab-<pid>-<n>`) with `lo` up and a bridge
//!   [`BRIDGE`] holding an IPv4 /24 address and the IPv6 ULA [`BRIDGE_IPV6`]. Programs run
//!   inside with [`Lab::command`] and [`Lab::spawn`], Rust code (to bind sockets there) with
//!   [`Lab::spawn_thread`] or [`Lab::run_inside`]. The namespace is deleted when the last
//!   handle to it is dropped.
//! - [`Process`]: a program started in the lab (or anywhere), its stdout and stderr kept as a
//!   transcript and matched line by line with bounded waits; killed when dropped.
//! - [`Vm`]: `qemu-system-x86_64 -accel tcg` on a new tap of the lab, booting from the
//!   network with QEMU's iPXE ROM (`-boot n`), its serial console read as a [`Process`].
//! - [`LabHypervisor`]: a private `libvirtd` in the lab (its own mount and PID namespaces), for
//!   VMs that libvirt starts on the lab's bridge.
//! - [`system`]: the image the demo's machines install: a raw disk that boots under BIOS and
//!   UEFI, whose init takes the NoCloud seed, serves its hostname over HTTP and phones home.
//! - [`host`]: what a lab needs from the host (root, `ip`, QEMU and its iPXE ROMs), checked
//!   before starting one.
//!
//! Nothing here panics; every step that can fail returns an [`Error`] saying what failed.
//! Cleanup that cannot report (in `Drop`) logs its failures with `tracing`.

pub mod host;
mod lab;
mod libvirt;
mod namespace;
mod process;
pub mod system;
mod vm;

use std::time::Duration;

pub use lab::{BRIDGE, BRIDGE_IPV6, Lab, LabThread, NAMESPACE_PREFIX};
pub use libvirt::{LabHypervisor, POOL};
pub use namespace::spawn_in;
pub use process::{ECHO_VARIABLE, Process};
pub use vm::{Nic, Vm, VmConfig};

/// What went wrong in a lab.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A host command (`ip`) failed or is not installed.
    #[error(transparent)]
    Host(#[from] machinist_ramdisk::Error),
    /// A program could not be started.
    #[error("failed to start {name} (`{command}`)")]
    Start {
        /// The name given to the process.
        name: String,
        /// The command line.
        command: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Waiting for a process to end failed.
    #[error("failed to wait for {process}")]
    Wait {
        /// The process.
        process: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A thread could not be created.
    #[error("failed to start a thread for network namespace {namespace}")]
    Thread {
        /// The namespace (its path).
        namespace: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A thread could not enter the namespace (opening its file or `setns` failed).
    #[error("failed to enter network namespace {namespace}")]
    Enter {
        /// The namespace (its path).
        namespace: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The thread for the namespace ended before it could enter it.
    #[error("the thread for network namespace {namespace} ended before entering it")]
    NotEntered {
        /// The namespace.
        namespace: String,
    },
    /// Code run inside the namespace panicked.
    #[error("the thread inside network namespace {namespace} panicked: {message}")]
    Panicked {
        /// The namespace.
        namespace: String,
        /// The panic's message, when it was a string.
        message: String,
    },
    /// A bounded wait ran out.
    #[error("timed out after {} s waiting for {what} from {process}; its last lines:\n{tail}", timeout.as_secs_f64())]
    Timeout {
        /// The process.
        process: String,
        /// What was awaited.
        what: String,
        /// The bound.
        timeout: Duration,
        /// The last lines of its transcript.
        tail: String,
    },
    /// The process's output ended (it exited) before what was awaited appeared.
    #[error("{process} ended its output before {what}; its last lines:\n{tail}")]
    Ended {
        /// The process.
        process: String,
        /// What was awaited.
        what: String,
        /// The last lines of its transcript.
        tail: String,
    },
    /// The host lacks what a lab needs ([`host::check`]).
    #[error("{}", host::describe(missing))]
    Missing {
        /// What is missing.
        missing: Vec<host::Missing>,
    },
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
