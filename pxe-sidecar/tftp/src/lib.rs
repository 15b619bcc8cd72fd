//! Read-only, confined TFTP for the iPXE binaries.
//!
//! The first file a PXE client fetches comes from here: `undionly.kpxe` (BIOS), `ipxe.efi`
//! (x86-64 UEFI) or an arm64 iPXE binary, laid out in the served root by [`install_ipxe`]
//! from Debian's `ipxe` package. Transfers are done by [async-tftp] with a custom handler
//! ([`ConfinedHandler`]) that serves only regular files under one root and refuses writes.
//!
//! ```no_run
//! # async fn example() -> Result<(), machinist_boot_tftp::TftpError> {
//! use std::sync::Arc;
//! use machinist_boot_tftp::{install_ipxe, TftpConfig, TftpMetrics, TftpServer, DEBIAN_IPXE_DIR};
//! use tokio_util::sync::CancellationToken;
//!
//! let layout = install_ipxe(DEBIAN_IPXE_DIR.as_ref(), "/srv/tftp".as_ref())?;
//! let config = TftpConfig::new("/srv/tftp").with_bind(([0, 0, 0, 0], 69).into());
//! let cancel = CancellationToken::new();
//! if let Some(server) = TftpServer::bind(&config, Arc::new(TftpMetrics::default())).await? {
//!     server.serve(cancel.clone()).await?;
//! }
//! # Ok(()) }
//! ```
//!
//! # Options
//!
//! Clients negotiate options with an OACK (RFC 2347); the server grants what they ask for up
//! to its configured limit ([`TftpConfig`]).
//!
//! | Option (wire name) | Default without the option | Server limit (config field, default)     | RFC      |
//! |--------------------|----------------------------|------------------------------------------|----------|
//! | `blksize`          | 512 bytes                  | `block_size_limit`, 1468 (8–65464)       | RFC 2348 |
//! | `tsize`            | not sent                   | — (a client sending `tsize 0` gets the file size) | RFC 2349 |
//! | `timeout`          | `timeout`, 3 s             | client may ask 1–255 s                   | RFC 2349 |
//! | `windowsize`       | 1 (lock-step, RFC 1350)    | `window_size_limit`, 64 (≥ 1)            | RFC 7440 |
//! | (listen address)   | `bind`, none: TFTP off     | —                                        | —        |
//! | (retries)          | `max_send_retries`, 10     | ≥ 1                                      | —        |
//!
//! The default block size limit is the largest that fits a 1500-byte Ethernet frame without
//! IP fragmentation; raise it only on jumbo-frame networks.
//!
//! # Confinement
//!
//! Every read request goes through [`confine::open_confined`]:
//!
//! 1. A name containing a NUL byte, a `..` component anywhere, or naming only the root
//!    (`""`, `/`, `.`) is refused with TFTP error 2 ("access violation").
//! 2. A leading `/` means the root, as with `in.tftpd --secure`: `/undionly.kpxe` is
//!    `ROOT/undionly.kpxe`, and `/etc/passwd` is `ROOT/etc/passwd` — never the host's file.
//!    `.` components and repeated slashes are dropped.
//! 3. The name is joined to the canonical root and canonicalized (every symbolic link
//!    resolved); a result that is not strictly under the root — a link out — is refused with
//!    error 2. Links that stay inside the root are followed.
//! 4. The file is opened read-only and must be a regular file (else error 1, "file not
//!    found", as for missing names); on Linux the opened descriptor's path
//!    (`/proc/self/fd`) is checked against the root again, catching a link swapped in after
//!    step 3.
//! 5. Write requests are refused with error 2: the server is read-only.
//!
//! Each refusal is logged (`tracing`, with the client, the name and the reason) and counted in
//! [`TftpMetrics`]: access violations and write requests at warn level, I/O failures at error
//! level, a missing file at info level — at warn level when it is one of the [`IPXE_BINARIES`] (a client of that
//! architecture cannot boot; [`install_ipxe`] said at start which ones are not served).
//!
//! # Shutdown
//!
//! [`TftpServer::serve`] returns when its [`CancellationToken`](tokio_util::sync::CancellationToken)
//! fires: the socket is closed and transfers in flight are dropped (clients retry).
//!
//! [async-tftp]: https://docs.rs/async-tftp/0.4

mod config;
pub mod confine;
mod ipxe;
mod metrics;
mod server;

use std::net::SocketAddr;
use std::path::PathBuf;

pub use config::{
    DEFAULT_BLOCK_SIZE_LIMIT, DEFAULT_MAX_SEND_RETRIES, DEFAULT_TIMEOUT, DEFAULT_WINDOW_SIZE_LIMIT, MAX_BLOCK_SIZE,
    MAX_TIMEOUT, MIN_BLOCK_SIZE, TftpConfig,
};
pub use confine::Refusal;
pub use ipxe::{
    ClientArch, DEBIAN_IPXE_DIR, IPXE_BINARIES, InstalledBinary, IpxeBinary, IpxeLayout, install_ipxe,
    ipxe_binary_named,
};
pub use metrics::{TftpCounters, TftpMetrics};
pub use server::{ConfinedHandler, TftpServer, TransferObserver, run};

/// Errors of the TFTP service.
#[derive(Debug, thiserror::Error)]
pub enum TftpError {
    /// A configuration option is outside its limits.
    #[error("invalid tftp option {option}: {reason}")]
    InvalidOption {
        /// The option (the [`TftpConfig`] field).
        option: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The root is missing or is not a directory.
    #[error("failed to use {} as the tftp root", root.display())]
    Root {
        /// The configured root.
        root: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The listen address could not be bound.
    #[error("failed to bind tftp to {addr}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// async-tftp failed to set up or to receive.
    #[error("tftp server failed")]
    Server {
        /// The cause.
        #[source]
        source: async_tftp::Error,
    },
    /// Laying out the iPXE binaries failed.
    #[error("failed to lay out {}", path.display())]
    Layout {
        /// The file being written.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}
