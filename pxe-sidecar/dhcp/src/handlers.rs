//! The handlers of the standard chain, in order.

use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, HType, MAGIC, Message, MessageType, Opcode, OptionCode};

use crate::classify::ClientClass;
use crate::config::Mode;
use crate::counters::Counters;
use crate::directory::{BootPolicy, MachineBoot, NetworkSettings};
use crate::engine::{Context, Env, Flow, Handler, Port, Silence};
use crate::mac::MacAddr;

/// Largest request accepted: an Ethernet MTU's worth of UDP payload.
pub const MAX_REQUEST_LEN: usize = 1500;
/// Smallest: the fixed BOOTP header plus the magic cookie.
pub const MIN_REQUEST_LEN: usize = 240;
/// How long an offered address is held for the client's REQUEST, in seconds.
pub const OFFER_HOLD_SECONDS: u64 = 60;
/// Most relay hops accepted (RFC 1542 suggests 16).
pub const MAX_HOPS: u8 = 16;

/// Decodes the packet and checks it is a DHCP request from an Ethernet client.
#[derive(Debug)]
pub struct Parse;

impl Handler for Parse {
    fn name(&self) -> &'static str {
        "parse"
    }

    fn handle(&self, ctx: &mut Context<'_>, _env: &Env<'_>) -> Flow {
        let packet = ctx.packet;
        if packet.len() > MAX_REQUEST_LEN {
            return Flow::NoResponse(Silence::Malformed("oversized"));
        }
        if packet.len() < MIN_REQUEST_LEN {
            return Flow::NoResponse(Silence::Malformed("truncated"));
        }
        if packet.get(236..240) != Some(&MAGIC[..]) {
            return Flow::NoResponse(Silence::Malformed("bad magic cookie"));
        }
        if !options_well_formed(packet.get(MIN_REQUEST_LEN..).unwrap_or_default()) {
            return Flow::NoResponse(Silence::Malformed("bad options"));
        }
        // dhcproto is fuzzed, but a panic here must never take the server down.
        let decoded = std::panic::catch_unwind(|| <Message as dhcproto::Decodable>::from_bytes(packet));
        let message = match decoded {
            Ok(Ok(message)) => message,
            Ok(Err(_)) | Err(_) => return Flow::NoResponse(Silence::Malformed("bad options")),
        };
        if message.opcode() != Opcode::BootRequest {
            return Flow::NoResponse(Silence::NotForUs);
        }
        if message.htype() != HType::Eth || message.hlen() != 6 {
            return Flow::NoResponse(Silence::Malformed("not an Ethernet client"));
        }
        if message.hops() > MAX_HOPS {
            return Flow::NoResponse(Silence::Malformed("too many relay hops"));
        }
        if message.opts().msg_type().is_none() {
            return Flow::NoResponse(Silence::Malformed("no DHCP message type (BOOTP is not served)"));
        }
        ctx.mac = MacAddr::from_slice(message.chaddr());
        if ctx.mac.is_none() {
            return Flow::NoResponse(Silence::Malformed("bad chaddr"));
        }
        ctx.request = Some(message);
        Flow::Continue
    }
}

/// Whether the options area is a well-formed sequence of code/length/value triples: every
/// length fits in the packet (dhcproto alone tolerates a truncated last option).
pub fn options_well_formed(mut options: &[u8]) -> bool {
    loop {
        match options {
            [] | [255, ..] => return true,
            [0, rest @ ..] => options = rest,
            [_, len, rest @ ..] if rest.len() >= usize::from(*len) => options = &rest[usize::from(*len)..],
            _ => return false,
        }
    }
}

/// Classifies the client from options 60, 93 and 77.
#[derive(Debug)]
pub struct Classify;

impl Handler for Classify {
    fn name(&self) -> &'static str {
        "classify"
    }

    fn handle(&self, ctx: &mut Context<'_>, _env: &Env<'_>) -> Flow {
        ctx.class = ctx.request.as_ref().map(ClientClass::of);
        Flow::Continue
    }
}

/// Looks the MAC up in the directory.
#[derive(Debug)]
pub struct Lookup;

impl Handler for Lookup {
    fn name(&self) -> &'static str {
        "lookup"
    }

    fn handle(&self, ctx: &mut Context<'_>, env: &Env<'_>) -> Flow {
        let Some(mac) = ctx.mac else { return Flow::NoResponse(Silence::Malformed("no MAC")) };
        match env.directory.lookup(mac) {
            Some(machine) if machine.policy == BootPolicy::Ignore => Flow::NoResponse(Silence::Ignored),
            Some(machine) => {
                ctx.machine = Some(machine);
                Flow::Continue
            }
            None => {
                Counters::bump(&env.counters.unknown_clients);
                if env.directory.register_unknown(mac) {
                    ctx.machine = Some(MachineBoot::default());
                    Flow::Continue
                } else {
                    tracing::info!(%mac, "ignoring a DHCP request from an unknown MAC (auto-registration is off)");
                    Flow::NoResponse(Silence::UnknownIgnored)
                }
            }
        }
    }
}

/// A reply skeleton for `request`.
pub fn reply_to(request: &Message, kind: MessageType, server: Ipv4Addr) -> Message {
    let mut reply = Message::default();
    reply
        .set_opcode(Opcode::BootReply)
        .set_htype(request.htype())
        .set_xid(request.xid())
        .set_flags(request.flags())
        .set_giaddr(request.giaddr())
        .set_chaddr(request.chaddr());
    reply.opts_mut().insert(DhcpOption::MessageType(kind));
    reply.opts_mut().insert(DhcpOption::ServerIdentifier(server));
    reply
}

fn requested_ip(request: &Message) -> Option<Ipv4Addr> {
    match request.opts().get(OptionCode::RequestedIpAddress) {
        Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
        _ => None,
    }
}

fn server_id(request: &Message) -> Option<Ipv4Addr> {
    match request.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
        _ => None,
    }
}

fn add_network(reply: &mut Message, network: &NetworkSettings, hostname: Option<&str>) {
    let opts = reply.opts_mut();
    if let Some(mask) = network.netmask {
        opts.insert(DhcpOption::SubnetMask(mask));
    }
    if let Some(gateway) = network.gateway {
        opts.insert(DhcpOption::Router(vec![gateway]));
    }
    if !network.dns_servers.is_empty() {
        opts.insert(DhcpOption::DomainNameServer(network.dns_servers.clone()));
    }
    if let Some(domain) = &network.domain {
        opts.insert(DhcpOption::DomainName(domain.clone()));
    }
    if let Some(hostname) = hostname {
        opts.insert(DhcpOption::Hostname(hostname.to_owned()));
    }
}

fn add_lease_times(reply: &mut Message, lease_time: u32) {
    let opts = reply.opts_mut();
    opts.insert(DhcpOption::AddressLeaseTime(lease_time));
    opts.insert(DhcpOption::Renewal(lease_time / 2));
    opts.insert(DhcpOption::Rebinding(lease_time / 8 * 7));
}

/// Full mode: address assignment (reservation first, then the dynamic range) and the
/// DISCOVER/REQUEST/RELEASE/DECLINE/INFORM state machine.
#[derive(Debug)]
pub struct Lease;

/// The address a client should have, and the settings that go with it.
enum Target {
    Reserved(Ipv4Addr),
    Dynamic,
    None,
}

impl Lease {
    fn target(ctx: &Context<'_>, env: &Env<'_>, request: &Message) -> (Target, NetworkSettings) {
        let machine = ctx.machine.as_ref();
        if let Some(ip) = machine.and_then(|m| m.address) {
            return (Target::Reserved(ip), machine.map(|m| m.network.clone()).unwrap_or_default());
        }
        match &env.config.dynamic_range {
            Some(range) if request.giaddr().is_unspecified() || range.same_subnet(request.giaddr()) => {
                (Target::Dynamic, range.network.clone())
            }
            _ => (Target::None, NetworkSettings::default()),
        }
    }
}

impl Handler for Lease {
    fn name(&self) -> &'static str {
        "lease"
    }

    fn handle(&self, ctx: &mut Context<'_>, env: &Env<'_>) -> Flow {
        let (Some(request), Some(mac)) = (ctx.request.as_ref(), ctx.mac) else {
            return Flow::NoResponse(Silence::Malformed("no request"));
        };
        let Ok(mut leases) = env.leases.lock() else { return Flow::NoResponse(Silence::Store) };
        let config = env.config;
        let server = config.server_address;
        let now = ctx.now;
        let (target, network) = Self::target(ctx, env, request);
        let hostname = ctx.machine.as_ref().and_then(|m| m.hostname.clone());
        let kind = request.opts().msg_type();
        match kind {
            Some(MessageType::Discover) => {
                let ip = match target {
                    Target::Reserved(ip) if leases.available_for(ip, mac, now) => ip,
                    Target::Reserved(_) => return Flow::NoResponse(Silence::Conflict),
                    Target::None => return Flow::NoResponse(Silence::Exhausted),
                    Target::Dynamic => {
                        let Some(range) = &config.dynamic_range else {
                            return Flow::NoResponse(Silence::Exhausted);
                        };
                        let wanted = requested_ip(request)
                            .filter(|ip| range.contains(*ip) && leases.available_for(*ip, mac, now));
                        match wanted.or_else(|| leases.pick(range, mac, now)) {
                            Some(ip) => ip,
                            None => return Flow::NoResponse(Silence::Exhausted),
                        }
                    }
                };
                leases.offer(ip, mac, now + OFFER_HOLD_SECONDS, now);
                let mut reply = reply_to(request, MessageType::Offer, server);
                reply.set_yiaddr(ip);
                add_lease_times(&mut reply, config.lease_time);
                add_network(&mut reply, &network, hostname.as_deref());
                Counters::bump(&env.counters.offers);
                ctx.reply = Some(reply);
                ctx.network = Some(network);
                Flow::Continue
            }
            Some(MessageType::Request) => {
                if server_id(request).is_some_and(|id| id != server) {
                    return Flow::NoResponse(Silence::NotForUs);
                }
                let Some(wanted) = requested_ip(request).or(Some(request.ciaddr())).filter(|ip| !ip.is_unspecified())
                else {
                    return Flow::NoResponse(Silence::Malformed("REQUEST without an address"));
                };
                let acceptable = match target {
                    Target::Reserved(ip) => ip == wanted && leases.available_for(ip, mac, now),
                    Target::Dynamic => {
                        config.dynamic_range.as_ref().is_some_and(|r| r.contains(wanted))
                            && leases.available_for(wanted, mac, now)
                    }
                    Target::None => false,
                };
                if !acceptable {
                    let mut reply = reply_to(request, MessageType::Nak, server);
                    reply.set_flags(request.flags().set_broadcast());
                    Counters::bump(&env.counters.naks);
                    tracing::debug!(%mac, %wanted, "DHCPNAK");
                    ctx.reply = Some(reply);
                    return Flow::Respond;
                }
                let expires = now + u64::from(config.lease_time);
                let (_, pending) = leases.bind_deferred(wanted, mac, expires);
                // Wait for durability without the lock: other packets go on, and this binding
                // shares its fsync with the others queued meanwhile.
                drop(leases);
                if let Err(error) = pending.wait() {
                    Counters::bump(&env.counters.store_errors);
                    tracing::warn!(%mac, ip = %wanted, %error, "failed to record a lease");
                    return Flow::NoResponse(Silence::Store);
                }
                let mut reply = reply_to(request, MessageType::Ack, server);
                reply.set_yiaddr(wanted).set_ciaddr(request.ciaddr());
                add_lease_times(&mut reply, config.lease_time);
                add_network(&mut reply, &network, hostname.as_deref());
                Counters::bump(&env.counters.acks);
                tracing::debug!(%mac, ip = %wanted, "DHCPACK");
                ctx.reply = Some(reply);
                ctx.network = Some(network);
                Flow::Continue
            }
            Some(MessageType::Release) => {
                match leases.release(request.ciaddr(), mac, now) {
                    Ok(true) => Counters::bump(&env.counters.releases),
                    Ok(false) => return Flow::NoResponse(Silence::NotForUs),
                    Err(error) => {
                        Counters::bump(&env.counters.store_errors);
                        tracing::warn!(%mac, %error, "failed to record a release");
                        return Flow::NoResponse(Silence::Store);
                    }
                }
                Flow::NoResponse(Silence::Done)
            }
            Some(MessageType::Decline) => {
                let Some(ip) = requested_ip(request) else {
                    return Flow::NoResponse(Silence::Malformed("DECLINE without an address"));
                };
                match leases.decline(ip, mac, now + u64::from(config.lease_time), now) {
                    Ok(true) => {
                        Counters::bump(&env.counters.declines);
                        tracing::warn!(%mac, %ip, "a client declined an address: quarantined for a lease time");
                    }
                    Ok(false) => return Flow::NoResponse(Silence::NotForUs),
                    Err(error) => {
                        Counters::bump(&env.counters.store_errors);
                        tracing::warn!(%mac, %error, "failed to record a decline");
                        return Flow::NoResponse(Silence::Store);
                    }
                }
                Flow::NoResponse(Silence::Done)
            }
            Some(MessageType::Inform) => {
                let mut reply = reply_to(request, MessageType::Ack, server);
                reply.set_ciaddr(request.ciaddr());
                add_network(&mut reply, &network, hostname.as_deref());
                Counters::bump(&env.counters.acks);
                ctx.reply = Some(reply);
                ctx.network = Some(network);
                Flow::Continue
            }
            _ => Flow::NoResponse(Silence::NotForUs),
        }
    }
}

/// Proxy mode: PXE clients only, no address; OFFER on port 67 for a DISCOVER, ACK on port
/// 4011 for the boot server REQUEST (PXE specification 2.1, §2.2).
#[derive(Debug)]
pub struct Proxy;

impl Handler for Proxy {
    fn name(&self) -> &'static str {
        "proxy"
    }

    fn handle(&self, ctx: &mut Context<'_>, env: &Env<'_>) -> Flow {
        let Some(request) = ctx.request.as_ref() else {
            return Flow::NoResponse(Silence::Malformed("no request"));
        };
        if !ctx.class.is_some_and(|c| c.is_booting()) {
            return Flow::NoResponse(Silence::NotBooting);
        }
        let kind = match (ctx.inbound.port, request.opts().msg_type()) {
            (Port::Dhcp, Some(MessageType::Discover)) => MessageType::Offer,
            (Port::PxeBoot, Some(MessageType::Request | MessageType::Inform)) => MessageType::Ack,
            _ => return Flow::NoResponse(Silence::NotForUs),
        };
        let mut reply = reply_to(request, kind, env.config.server_address);
        reply.set_ciaddr(request.ciaddr());
        ctx.reply = Some(reply);
        Flow::Continue
    }
}

/// PXE vendor options (option 43) of a reply to a PXE client: discovery control (6) = 8, "boot
/// the file in this packet, no boot server discovery". Without it a UEFI firmware's own PXE
/// client (OVMF's, with no iPXE ROM) that sees option 60 `PXEClient` asks a boot server on port
/// 4011 and, in full mode where none answers, gives up (PXE-E16).
pub const PXE_VENDOR_OPTIONS: [u8; 4] = [6, 1, 8, 255];

/// Adds `siaddr`, the boot file (table in the crate docs) and the echoed vendor class to
/// offers and acks for booting clients. In proxy mode a client without a boot file gets no
/// reply at all.
#[derive(Debug)]
pub struct BootOptions;

impl Handler for BootOptions {
    fn name(&self) -> &'static str {
        "boot-options"
    }

    fn handle(&self, ctx: &mut Context<'_>, env: &Env<'_>) -> Flow {
        let proxy = env.config.mode == Mode::Proxy;
        let (Some(reply), Some(class), Some(mac)) = (ctx.reply.as_mut(), ctx.class, ctx.mac) else {
            return Flow::Continue;
        };
        let policy = ctx.machine.as_ref().map(|m| m.policy).unwrap_or_default();
        let choice = match policy {
            BootPolicy::Network => env.config.boot.choose(&class, mac),
            BootPolicy::AddressOnly | BootPolicy::Ignore => None,
        };
        let Some(choice) = choice else {
            return if proxy { Flow::NoResponse(Silence::NotBooting) } else { Flow::Continue };
        };
        reply.set_siaddr(env.config.tftp_server);
        reply.set_fname_str(&choice.filename);
        let opts = reply.opts_mut();
        opts.insert(DhcpOption::BootfileName(choice.filename.clone().into_bytes()));
        if let Some(vendor) = choice.vendor_class {
            opts.insert(DhcpOption::ClassIdentifier(vendor.as_bytes().to_vec()));
        }
        if proxy || choice.vendor_class == Some("PXEClient") {
            opts.insert(DhcpOption::VendorExtensions(PXE_VENDOR_OPTIONS.to_vec()));
        }
        tracing::debug!(%mac, file = %choice.filename, "boot options");
        Flow::Continue
    }
}

/// Options sent whether or not the client asked for them: the protocol's own (RFC 2131 §4.3.1:
/// message type, server identifier, lease times, subnet mask) and the PXE ones a booting client
/// needs but does not always list (vendor class, vendor options, boot file name).
pub const ALWAYS_SENT: [u8; 8] = [1, 43, 51, 53, 54, 58, 59, 60];

/// Keeps, of the options built, only those the client asked for in its parameter request list
/// (option 55) and [`ALWAYS_SENT`]; the boot file name (67) stays whenever a boot file is set.
/// A client without option 55 gets every option (RFC 2132 §9.8 leaves the choice to the server).
#[derive(Debug)]
pub struct RequestedOptions;

impl Handler for RequestedOptions {
    fn name(&self) -> &'static str {
        "requested-options"
    }

    fn handle(&self, ctx: &mut Context<'_>, _env: &Env<'_>) -> Flow {
        let (Some(request), Some(reply)) = (ctx.request.as_ref(), ctx.reply.as_mut()) else {
            return Flow::Continue;
        };
        let Some(DhcpOption::ParameterRequestList(requested)) = request.opts().get(OptionCode::ParameterRequestList)
        else {
            return Flow::Continue;
        };
        let wanted: Vec<u8> = requested.iter().map(|code| u8::from(*code)).collect();
        let drop: Vec<OptionCode> = reply
            .opts()
            .iter()
            .map(|(code, _)| *code)
            .filter(|code| {
                let number = u8::from(*code);
                !(ALWAYS_SENT.contains(&number) || number == 67 || wanted.contains(&number))
            })
            .collect();
        for code in drop {
            reply.opts_mut().remove(code);
        }
        Flow::Continue
    }
}
