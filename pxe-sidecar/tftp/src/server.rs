//! The server: async-tftp with a confining, read-only handler, bound on demand and stopped by a
//! cancellation token.

use std::fmt;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_tftp::packet;
use async_tftp::server::{Handler, TftpServerBuilder};
use blocking::Unblock;
use tokio_util::sync::CancellationToken;

use crate::confine::{self, Refusal};
use crate::{TftpConfig, TftpError, TftpMetrics};

/// The async-tftp handler: read requests are resolved under the root ([`confine`]), write
/// requests refused. Every refusal or failure is logged and counted.
pub struct ConfinedHandler {
    root: PathBuf,
    metrics: Arc<TftpMetrics>,
    observer: Option<Arc<dyn TransferObserver>>,
}

impl fmt::Debug for ConfinedHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfinedHandler").field("root", &self.root).finish_non_exhaustive()
    }
}

/// Told about every file a transfer starts sending (the sidecar records it on the machine's
/// boot timeline). Called on the request's path: implementations must not block.
pub trait TransferObserver: Send + Sync {
    /// `client` was sent the start of `file` (as requested), `size` bytes long.
    fn sending(&self, client: SocketAddr, file: &Path, size: u64);
}

impl ConfinedHandler {
    /// A handler serving `root` (canonicalized here; it must be a directory).
    pub fn new(root: &Path, metrics: Arc<TftpMetrics>) -> Result<Self, TftpError> {
        let root =
            confine::canonical_root(root).map_err(|source| TftpError::Root { root: root.to_path_buf(), source })?;
        Ok(Self { root, metrics, observer: None })
    }

    /// The same handler, telling `observer` about each transfer.
    pub fn with_observer(mut self, observer: Option<Arc<dyn TransferObserver>>) -> Self {
        self.observer = observer;
        self
    }

    /// The canonical root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Answers a refusal: a log line, a counter, and the TFTP error the client gets.
    fn refuse(&self, client: &SocketAddr, requested: &Path, refusal: &Refusal) -> packet::Error {
        let reason = refusal.reason();
        if refusal.is_violation() {
            self.metrics.refused();
            tracing::warn!(%client, requested = %requested.display(), reason, error = %refusal, "tftp request refused");
            packet::Error::PermissionDenied
        } else if let Refusal::Io { .. } = refusal {
            self.metrics.error();
            tracing::error!(%client, requested = %requested.display(), reason, error = %refusal, "tftp request failed");
            packet::Error::UnknownError
        } else {
            self.metrics.not_found();
            if let Some(binary) = crate::ipxe_binary_named(requested) {
                // Not served since start (install_ipxe said so at info level); now it matters.
                tracing::warn!(
                    %client,
                    requested = %requested.display(),
                    arch = %binary.arch,
                    looked_for = %binary.candidates.join(", "),
                    "a client asked for the iPXE binary of its architecture, which is not in the TFTP root, so \
                     it cannot boot: put one there under the requested name (or at one of looked_for in \
                     tftp.ipxeSource, then restart)",
                );
            } else {
                tracing::info!(%client, requested = %requested.display(), reason, "tftp file not found");
            }
            packet::Error::FileNotFound
        }
    }
}

impl Handler for ConfinedHandler {
    type Reader = Unblock<std::fs::File>;
    type Writer = refused_writer::Refused;

    async fn read_req_open(
        &mut self,
        client: &SocketAddr,
        path: &Path,
    ) -> Result<(Self::Reader, Option<u64>), packet::Error> {
        let root = self.root.clone();
        let requested = path.to_path_buf();
        // Opening touches the disk: off the async threads, as async-tftp's own handler does.
        match blocking::unblock(move || confine::open_confined(&root, &requested)).await {
            Ok((file, size)) => {
                self.metrics.served();
                tracing::info!(%client, file = %path.display(), size, "tftp sending file");
                if let Some(observer) = &self.observer {
                    observer.sending(*client, path, size);
                }
                Ok((Unblock::new(file), Some(size)))
            }
            Err(refusal) => Err(self.refuse(client, path, &refusal)),
        }
    }

    async fn write_req_open(
        &mut self,
        client: &SocketAddr,
        path: &Path,
        _size: Option<u64>,
    ) -> Result<Self::Writer, packet::Error> {
        Err(self.refuse(client, path, &Refusal::Write))
    }
}

/// A writer that is never built: write requests are refused before one would be needed.
mod refused_writer {
    use std::io;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// Never constructed; exists because async-tftp's `Handler` names a writer type.
    #[derive(Debug)]
    pub enum Refused {}

    impl futures_lite::AsyncWrite for Refused {
        fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
            match *self {}
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            match *self {}
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            match *self {}
        }
    }
}

/// A bound TFTP server, ready to [`serve`](Self::serve).
pub struct TftpServer {
    inner: async_tftp::server::TftpServer<ConfinedHandler>,
    local_addr: SocketAddr,
    root: PathBuf,
}

impl fmt::Debug for TftpServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TftpServer").field("local_addr", &self.local_addr).field("root", &self.root).finish()
    }
}

impl TftpServer {
    /// Validates `config`, checks the root, and binds its address. Returns `Ok(None)` when no
    /// address is configured: TFTP stays off and nothing is bound.
    pub async fn bind(config: &TftpConfig, metrics: Arc<TftpMetrics>) -> Result<Option<Self>, TftpError> {
        Self::bind_observed(config, metrics, None).await
    }

    /// [`bind`](Self::bind), telling `observer` about each transfer.
    pub async fn bind_observed(
        config: &TftpConfig,
        metrics: Arc<TftpMetrics>,
        observer: Option<Arc<dyn TransferObserver>>,
    ) -> Result<Option<Self>, TftpError> {
        config.validate()?;
        let Some(addr) = config.bind else {
            tracing::info!("tftp is off: no bind address configured");
            return Ok(None);
        };
        let handler = ConfinedHandler::new(&config.root, metrics)?.with_observer(observer);
        let root = handler.root().to_path_buf();
        let socket = UdpSocket::bind(addr).map_err(|source| TftpError::Bind { addr, source })?;
        let local_addr = socket.local_addr().map_err(|source| TftpError::Bind { addr, source })?;
        let inner = TftpServerBuilder::with_handler(handler)
            .std_socket(socket)
            .map_err(|source| TftpError::Server { source })?
            .timeout(config.timeout)
            .block_size_limit(config.block_size_limit)
            .window_size_limit(config.window_size_limit)
            .max_send_retries(config.max_send_retries)
            .build()
            .await
            .map_err(|source| TftpError::Server { source })?;
        tracing::info!(%local_addr, root = %root.display(), "tftp listening");
        Ok(Some(Self { inner, local_addr, root }))
    }

    /// The address actually bound (with the port the system chose, when it was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The canonical root served.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Serves until `cancel` fires (then returns `Ok`) or the socket fails. On cancellation
    /// the socket is closed and transfers in flight are abandoned at once: TFTP clients
    /// retry or restart a transfer, and there is nothing to flush on a read-only server.
    pub async fn serve(self, cancel: CancellationToken) -> Result<(), TftpError> {
        let local_addr = self.local_addr;
        tokio::select! {
            result = self.inner.serve() => result.map_err(|source| TftpError::Server { source }),
            () = cancel.cancelled() => {
                tracing::info!(%local_addr, "tftp stopped");
                Ok(())
            }
        }
    }
}

/// Binds (if an address is configured) and serves until `cancel` fires. With no address
/// configured it returns `Ok(())` at once.
pub async fn run(config: &TftpConfig, metrics: Arc<TftpMetrics>, cancel: CancellationToken) -> Result<(), TftpError> {
    match TftpServer::bind(config, metrics).await? {
        Some(server) => server.serve(cancel).await,
        None => Ok(()),
    }
}
