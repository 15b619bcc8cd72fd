//! The pure DHCP engine: an ordered chain of [`Handler`]s over a [`Context`]. No sockets, no
//! clocks: the server passes the packet, where it came from and the time in, and gets back
//! the reply to send, if any.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Mutex};

use dhcproto::v4::Message;

use crate::classify::ClientClass;
use crate::config::{Config, Mode};
use crate::counters::{Counters, CountersSnapshot};
use crate::directory::{Directory, MachineBoot, NetworkSettings};
use crate::handlers;
use crate::leases::{LeaseError, LeaseStore};
use crate::mac::MacAddr;

/// The UDP port a packet arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// 67, DHCP.
    Dhcp,
    /// 4011, the PXE boot server (proxyDHCP requests).
    PxeBoot,
}

/// Where a packet came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inbound {
    /// Source address and port.
    pub source: SocketAddrV4,
    /// The local port it arrived on.
    pub port: Port,
}

/// A reply to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The encoded DHCP message.
    pub bytes: Vec<u8>,
    /// Where to send it (a broadcast address needs `SO_BROADCAST`).
    pub destination: SocketAddrV4,
}

/// What a reply told a client, for whoever records boot steps ([`ReplyObserver`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplySummary {
    /// The client.
    pub mac: MacAddr,
    /// The Machine's name, when the directory knows the MAC.
    pub machine: Option<String>,
    /// OFFER, ACK, NAK (proxy replies are OFFER on port 67 and ACK on 4011).
    pub message_type: dhcproto::v4::MessageType,
    /// The address given (`yiaddr`), or the client's own (`ciaddr`) when none is given.
    pub address: Option<Ipv4Addr>,
    /// The boot file or URL sent, if any.
    pub boot_file: Option<String>,
}

/// Told about every reply the engine sends. Called on the packet's path: implementations must
/// not block (queue the summary and return).
pub trait ReplyObserver: Send + Sync {
    /// A reply is about to be sent.
    fn replied(&self, summary: ReplySummary);
}

/// Why a request gets no reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Silence {
    /// Not a valid DHCP request (counted as malformed).
    Malformed(&'static str),
    /// A valid message this server does not answer (another server's, a reply, a client
    /// that chose another server…).
    NotForUs,
    /// Proxy mode: not a PXE client, or no boot file for it.
    NotBooting,
    /// The machine's policy says not to answer.
    Ignored,
    /// An unknown MAC while auto-registration is off.
    UnknownIgnored,
    /// No free address (full mode).
    Exhausted,
    /// The reserved address is held by another client.
    Conflict,
    /// The lease database failed.
    Store,
    /// RELEASE/DECLINE: applied; DHCP sends no reply to them.
    Done,
}

/// What a handler decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Run the next handler.
    Continue,
    /// Send `ctx.reply` now, skipping the remaining handlers (except the final encoding).
    Respond,
    /// Send nothing.
    NoResponse(Silence),
}

/// Everything known about one packet as it goes down the chain.
#[derive(Debug)]
pub struct Context<'a> {
    /// The raw packet.
    pub packet: &'a [u8],
    /// Where it came from.
    pub inbound: Inbound,
    /// Unix seconds.
    pub now: u64,
    /// The parsed request (after [`handlers::Parse`]).
    pub request: Option<Message>,
    /// The client's MAC (after parsing).
    pub mac: Option<MacAddr>,
    /// Client class (after [`handlers::Classify`]).
    pub class: Option<ClientClass>,
    /// The machine (after [`handlers::Lookup`]); unknown-but-served clients get a default.
    pub machine: Option<MachineBoot>,
    /// Network settings to send with the address.
    pub network: Option<NetworkSettings>,
    /// The reply being built.
    pub reply: Option<Message>,
}

/// What handlers may use besides the context.
#[derive(Debug)]
pub struct Env<'a> {
    /// Runtime configuration.
    pub config: &'a Config,
    /// Machines by MAC.
    pub directory: &'a dyn Directory,
    /// Lease table.
    pub leases: &'a Mutex<LeaseStore>,
    /// Counters.
    pub counters: &'a Counters,
}

impl fmt::Debug for dyn Directory + '_ {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Directory")
    }
}

/// One step of the chain.
pub trait Handler: Send + Sync + fmt::Debug {
    /// A short name for logs.
    fn name(&self) -> &'static str;
    /// Looks at or adds to the context and decides what happens next.
    fn handle(&self, ctx: &mut Context<'_>, env: &Env<'_>) -> Flow;
}

/// The engine: configuration, directory, leases, counters and the handler chain.
#[derive(Debug)]
pub struct Engine {
    config: Arc<Config>,
    directory: Arc<dyn Directory>,
    leases: Mutex<LeaseStore>,
    counters: Counters,
    chain: Vec<Box<dyn Handler>>,
    observer: Option<Arc<dyn ReplyObserver>>,
}

impl fmt::Debug for dyn ReplyObserver + '_ {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReplyObserver")
    }
}

impl Engine {
    /// An engine with the standard chain for the configured mode: parse → classify → look up
    /// → lease (full) or proxy → boot options → requested options (option 55).
    pub fn new(config: Arc<Config>, directory: Arc<dyn Directory>, leases: LeaseStore) -> Self {
        let mut chain: Vec<Box<dyn Handler>> =
            vec![Box::new(handlers::Parse), Box::new(handlers::Classify), Box::new(handlers::Lookup)];
        match config.mode {
            Mode::Full => chain.push(Box::new(handlers::Lease)),
            Mode::Proxy => chain.push(Box::new(handlers::Proxy)),
        }
        chain.push(Box::new(handlers::BootOptions));
        chain.push(Box::new(handlers::RequestedOptions));
        Self { config, directory, leases: Mutex::new(leases), counters: Counters::default(), chain, observer: None }
    }

    /// The same engine, telling `observer` about every reply.
    pub fn with_observer(mut self, observer: Arc<dyn ReplyObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// [`Engine::new`] with the lease database of the configuration (in memory when none).
    pub fn open(config: Arc<Config>, directory: Arc<dyn Directory>) -> Result<Self, LeaseError> {
        let leases = match &config.lease_file {
            Some(path) => LeaseStore::open(path)?,
            None => LeaseStore::in_memory()?,
        };
        Ok(Self::new(config, directory, leases))
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The live counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> CountersSnapshot {
        self.counters.snapshot()
    }

    /// Handles one packet received at `now` (Unix seconds). Never panics on bad input: a
    /// malformed packet is logged, counted and answered with nothing.
    pub fn handle(&self, packet: &[u8], inbound: Inbound, now: u64) -> Option<Reply> {
        Counters::bump(&self.counters.received);
        let env =
            Env { config: &self.config, directory: &*self.directory, leases: &self.leases, counters: &self.counters };
        let mut ctx = Context {
            packet,
            inbound,
            now,
            request: None,
            mac: None,
            class: None,
            machine: None,
            network: None,
            reply: None,
        };
        for handler in &self.chain {
            match handler.handle(&mut ctx, &env) {
                Flow::Continue => {}
                Flow::Respond => break,
                Flow::NoResponse(why) => {
                    self.silence(handler.name(), why, &ctx);
                    return None;
                }
            }
        }
        let reply = ctx.reply.take()?;
        let request = ctx.request.as_ref()?;
        let destination = destination(request, &reply, inbound);
        match dhcproto::Encodable::to_vec(&reply) {
            Ok(bytes) => {
                if let (Some(observer), Some(mac)) = (&self.observer, ctx.mac) {
                    observer.replied(summarize(&reply, mac, ctx.machine.as_ref()));
                }
                Some(Reply { bytes, destination })
            }
            Err(error) => {
                tracing::warn!(%error, "failed to encode a DHCP reply");
                Counters::bump(&self.counters.malformed);
                None
            }
        }
    }

    fn silence(&self, handler: &str, why: Silence, ctx: &Context<'_>) {
        let mac = ctx.mac.map(|m| m.to_string()).unwrap_or_default();
        match why {
            Silence::Malformed(reason) => {
                Counters::bump(&self.counters.malformed);
                tracing::debug!(handler, reason, source = %ctx.inbound.source, "dropped a malformed DHCP packet");
            }
            Silence::Done => {}
            Silence::Exhausted => {
                Counters::bump(&self.counters.exhausted);
                Counters::bump(&self.counters.dropped);
                tracing::warn!(handler, %mac, "no free address in the dynamic range");
            }
            Silence::Store | Silence::Conflict => {
                Counters::bump(&self.counters.dropped);
                tracing::warn!(handler, %mac, ?why, "DHCP request left unanswered");
            }
            other => {
                Counters::bump(&self.counters.dropped);
                tracing::debug!(handler, %mac, why = ?other, "DHCP request left unanswered");
            }
        }
    }
}

fn summarize(reply: &Message, mac: MacAddr, machine: Option<&MachineBoot>) -> ReplySummary {
    let address = [reply.yiaddr(), reply.ciaddr()].into_iter().find(|a| !a.is_unspecified());
    let boot_file = match reply.opts().get(dhcproto::v4::OptionCode::BootfileName) {
        Some(dhcproto::v4::DhcpOption::BootfileName(name)) => Some(String::from_utf8_lossy(name).into_owned()),
        _ => Some(String::from_utf8_lossy(reply.fname().unwrap_or_default()).into_owned()).filter(|f| !f.is_empty()),
    };
    ReplySummary {
        mac,
        machine: machine.map(|m| m.name.clone()).filter(|n| !n.is_empty()),
        message_type: reply.opts().msg_type().unwrap_or(dhcproto::v4::MessageType::Unknown(0)),
        address,
        boot_file,
    }
}

/// Where a reply goes (RFC 2131 §4.1; PXE spec for port 4011).
pub fn destination(request: &Message, reply: &Message, inbound: Inbound) -> SocketAddrV4 {
    const SERVER: u16 = 67;
    const CLIENT: u16 = 68;
    if inbound.port == Port::PxeBoot {
        return inbound.source;
    }
    if !request.giaddr().is_unspecified() {
        return SocketAddrV4::new(request.giaddr(), SERVER);
    }
    let nak = reply.opts().has_msg_type(dhcproto::v4::MessageType::Nak);
    if !nak && !request.ciaddr().is_unspecified() {
        return SocketAddrV4::new(request.ciaddr(), CLIENT);
    }
    // Unicasting to yiaddr before the client has it would need an ARP entry written for it;
    // broadcasting is always correct.
    SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT)
}
