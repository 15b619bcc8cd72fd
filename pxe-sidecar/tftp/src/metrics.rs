//! Counters for the TFTP service. They live in a value the caller owns and passes in (no
//! process-global registry); the sidecar exports them on `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters, shared between the server and whoever reports them.
#[derive(Debug, Default)]
pub struct TftpMetrics {
    served: AtomicU64,
    refused: AtomicU64,
    not_found: AtomicU64,
    errors: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TftpCounters {
    /// Read requests whose file was opened and whose transfer started.
    pub served: u64,
    /// Requests refused by the confinement rules, and write requests.
    pub refused: u64,
    /// Read requests for names that do not exist under the root, or are not regular files.
    pub not_found: u64,
    /// Read requests that failed on an I/O error while opening the file.
    pub errors: u64,
}

impl TftpMetrics {
    /// A transfer started.
    pub(crate) fn served(&self) {
        self.served.fetch_add(1, Ordering::Relaxed);
    }

    /// A request was refused.
    pub(crate) fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// A request named nothing servable.
    pub(crate) fn not_found(&self) {
        self.not_found.fetch_add(1, Ordering::Relaxed);
    }

    /// A request failed on an I/O error.
    pub(crate) fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> TftpCounters {
        TftpCounters {
            served: self.served.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            not_found: self.not_found.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}
