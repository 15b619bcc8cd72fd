//! The boot services' HTTP server — `machinist-boot`'s real router and handlers — over
//! [`InMemoryMachines`] on loopback (feature `boot-http`): for the agent's tests and benchmarks,
//! which are synchronous and need no API server. It serves from a thread with a tokio runtime of
//! its own, so a blocking client can call it from the test's thread.
//!
//! ```no_run
//! # fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use machinist_boot::machines::InMemoryMachines;
//! use machinist_e2e::boot_http::BootHttp;
//! let machines = InMemoryMachines::new(); // insert the machines first: requests may come at once
//! let server = BootHttp::start(std::net::TcpListener::bind("127.0.0.1:0")?, machines, None)?;
//! let report_url = format!("{}/machines/vm-1/report", server.url());
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use machinist_boot::http::{self, HttpConfig, RamDisk};
use machinist_boot::machines::InMemoryMachines;
use tokio_util::sync::CancellationToken;

/// What went wrong starting the server.
#[derive(Debug, thiserror::Error)]
pub enum BootHttpError {
    /// The listener or the runtime could not be set up.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP configuration was refused (an artifact root that is not a directory).
    #[error("the boot services' HTTP configuration is invalid: {0}")]
    Config(#[from] http::ConfigError),
}

/// The server; it stops when dropped (in-flight requests finish, then the listener closes).
#[derive(Debug)]
pub struct BootHttp {
    /// Where it listens.
    pub address: SocketAddr,
    /// The machines it serves (a clone: what a test sets or reads here, the server sees).
    pub machines: InMemoryMachines,
    shutdown: CancellationToken,
    thread: Option<JoinHandle<()>>,
}

impl BootHttp {
    /// Serves `machines` on `listener` (bound by the caller, so a test can pick the port before
    /// anything listens), with artifacts from `artifact_root` when given. The public URL is the
    /// listener's address; the RAM disk's kernel and initrd are placeholders.
    pub fn start(
        listener: std::net::TcpListener,
        machines: InMemoryMachines,
        artifact_root: Option<&Path>,
    ) -> Result<Self, BootHttpError> {
        let io = |what: &str| {
            let what = what.to_owned();
            move |source| BootHttpError::Io { what, source }
        };
        let address = listener.local_addr().map_err(io("the listener's address"))?;
        let config = HttpConfig {
            listen: Some(address),
            public_url: format!("http://{address}"),
            artifact_root: artifact_root.map(Path::to_owned),
            ramdisk: RamDisk { kernel: "k".into(), initrd: "i".into(), args: vec![] },
            report_limit: http::DEFAULT_REPORT_LIMIT,
            log_limit: http::DEFAULT_LOG_LIMIT,
        };
        let router = http::router(config.validate()?, Arc::new(machines.clone()), Arc::new(machines.clone()));
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(io("the server's runtime"))?;
        listener.set_nonblocking(true).map_err(io("a non-blocking listener"))?;
        let listener = {
            let _context = runtime.enter(); // tokio's listener registers with this runtime's reactor
            tokio::net::TcpListener::from_std(listener).map_err(io("the server's listener"))?
        };
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let thread = std::thread::spawn(move || {
            if let Err(error) = runtime.block_on(http::serve(listener, router, stop)) {
                // A test sees the failure as requests that fail; say why on its output.
                eprintln!("the in-memory boot services failed: {error}");
            }
        });
        Ok(Self { address, machines, shutdown, thread: Some(thread) })
    }

    /// `http://<address>`, the URL agents are given.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }
}

impl Drop for BootHttp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
