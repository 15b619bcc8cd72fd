//! The network side: one UDP socket per configured interface and port, bound with
//! `SO_BINDTODEVICE`, feeding the [`Engine`] under a per-packet timeout, stopped by a
//! [`CancellationToken`].

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Mode;
use crate::counters::Counters;
use crate::engine::{Engine, Inbound, Port};

/// DHCP server port.
pub const DHCP_PORT: u16 = 67;
/// PXE boot server port (proxy mode).
pub const PXE_PORT: u16 = 4011;
/// How long shutdown waits for packets being handled.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// A server error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A socket could not be set up.
    #[error("failed to bind UDP port {port} on interface {interface}: {source}")]
    Bind {
        /// The interface.
        interface: String,
        /// The port.
        port: u16,
        /// The cause.
        source: std::io::Error,
    },
}

fn bind(interface: &str, port: u16) -> Result<UdpSocket, ServerError> {
    let err = |source| ServerError::Bind { interface: interface.to_owned(), port, source };
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
    socket.set_reuse_address(true).map_err(err)?;
    socket.set_broadcast(true).map_err(err)?;
    socket.bind_device(Some(interface.as_bytes())).map_err(err)?;
    socket.set_nonblocking(true).map_err(err)?;
    socket.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into()).map_err(err)?;
    UdpSocket::from_std(socket.into()).map_err(err)
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Serves DHCP on the engine's configured interfaces until `shutdown` is cancelled, then
/// waits up to [`SHUTDOWN_GRACE`] for packets in flight. With no interface configured it
/// binds nothing and returns at once (DHCP off).
pub async fn run(engine: Arc<Engine>, shutdown: CancellationToken) -> Result<(), ServerError> {
    let config = engine.config();
    if !config.enabled() {
        tracing::info!("no DHCP interface configured: DHCP is off");
        return Ok(());
    }
    let mut ports = vec![(DHCP_PORT, Port::Dhcp)];
    if config.mode == Mode::Proxy {
        ports.push((PXE_PORT, Port::PxeBoot));
    }
    let mut sockets = Vec::new();
    for interface in &config.interfaces {
        for (number, port) in &ports {
            sockets.push((Arc::new(bind(interface, *number)?), *port, interface.clone()));
        }
    }
    let tracker = TaskTracker::new();
    let loops = TaskTracker::new();
    for (socket, port, interface) in sockets {
        tracing::info!(%interface, ?port, mode = ?engine.config().mode, "DHCP listening");
        loops.spawn(serve(socket, port, engine.clone(), tracker.clone(), shutdown.clone()));
    }
    loops.close();
    loops.wait().await;
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait()).await.is_err() {
        tracing::warn!(in_flight = tracker.len(), "DHCP shutdown: packets still being handled were abandoned");
    }
    Ok(())
}

async fn serve(
    socket: Arc<UdpSocket>,
    port: Port,
    engine: Arc<Engine>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let mut buf = vec![0u8; 2048];
    loop {
        let received = tokio::select! {
            () = shutdown.cancelled() => return,
            r = socket.recv_from(&mut buf) => r,
        };
        let (len, source) = match received {
            Ok((len, SocketAddr::V4(source))) => (len, source),
            Ok((_, SocketAddr::V6(_))) => continue,
            Err(error) => {
                tracing::warn!(%error, "DHCP receive failed");
                continue;
            }
        };
        let packet = buf.get(..len).map(<[u8]>::to_vec).unwrap_or_default();
        let (engine, socket) = (engine.clone(), socket.clone());
        tracker.spawn(async move {
            let timeout = engine.config().packet_timeout;
            let inbound = Inbound { source, port };
            let worker = engine.clone();
            let work = tokio::task::spawn_blocking(move || worker.handle(&packet, inbound, unix_now()));
            let reply = match tokio::time::timeout(timeout, work).await {
                Ok(Ok(reply)) => reply,
                Ok(Err(error)) => {
                    tracing::warn!(%error, "DHCP handler task failed");
                    None
                }
                Err(_) => {
                    Counters::bump(&engine.counters().timeouts);
                    tracing::warn!(%source, ?timeout, "DHCP packet handling timed out");
                    None
                }
            };
            if let Some(reply) = reply
                && let Err(error) = socket.send_to(&reply.bytes, SocketAddr::V4(reply.destination)).await
            {
                Counters::bump(&engine.counters().send_errors);
                tracing::warn!(%error, destination = %reply.destination, "failed to send a DHCP reply");
            }
        });
    }
}
