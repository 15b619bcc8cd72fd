//! Arbitrary bytes as a DHCP packet into the pure engine of `machinist-boot-dhcp`, through four
//! engines-and-ports: full mode (a dynamic range, reservations, unknown clients served) and
//! proxy mode, each on port 67 and on port 4011.
//!
//! Properties: the engine never panics, and every reply it returns decodes as a DHCP message
//! that answers the packet (BOOTREPLY, same `xid` and `chaddr`, well-formed options; no
//! address in proxy mode; answered to the sender on port 4011).
//!
//! The engines are built once and keep their lease tables from one input to the next, as a
//! server does, with a clock that advances one second per input so that offers and leases
//! expire; they are rebuilt every [`RUNS_PER_ENGINE`] inputs so the tables stay small. A crash
//! that needs earlier inputs may therefore not reproduce alone: find the packets it needs and
//! make the sequence a test of the engine.
#![no_main]
#![allow(clippy::panic)] // a broken property is a panic

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use dhcproto::Decodable;
use dhcproto::v4::{Message, Opcode};
use libfuzzer_sys::fuzz_target;
use machinist_boot_dhcp::handlers::options_well_formed;
use machinist_boot_dhcp::{
    BootPolicy, Directory, Engine, Inbound, MacAddr, MachineBoot, NetworkSettings, Port, RawConfig, Reply,
    StaticDirectory,
};

/// Unix time of the first input.
const START: u64 = 1_700_000_000;
/// Inputs handled by one set of engines before they are rebuilt with empty lease tables.
const RUNS_PER_ENGINE: u64 = 100_000;

/// The machines the directory knows: a reserved one that boots (the seeds use its MAC), one
/// that gets an address only, one that is ignored.
const RESERVED: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 1]);
const ADDRESS_ONLY: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 3]);
const IGNORED: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 4]);

/// The known machines, and every unknown MAC served from the dynamic range. Unlike
/// [`StaticDirectory`], remembers no unknown MAC: that list would grow with every input.
struct Machines(StaticDirectory);

impl Directory for Machines {
    fn lookup(&self, mac: MacAddr) -> Option<MachineBoot> {
        self.0.lookup(mac)
    }

    fn register_unknown(&self, _mac: MacAddr) -> bool {
        true
    }
}

fn machines() -> Arc<Machines> {
    let network = NetworkSettings {
        netmask: Some(Ipv4Addr::new(255, 255, 255, 0)),
        gateway: Some(Ipv4Addr::new(10, 0, 0, 254)),
        dns_servers: vec![Ipv4Addr::new(10, 0, 0, 53)],
        domain: Some("lab".into()),
    };
    let machine = |name: &str, address: [u8; 4], policy| MachineBoot {
        name: name.into(),
        address: Some(Ipv4Addr::from(address)),
        hostname: Some(name.into()),
        network: network.clone(),
        policy,
    };
    Arc::new(Machines(StaticDirectory::new(
        [
            (RESERVED, machine("node-1", [10, 0, 0, 42], BootPolicy::Network)),
            (ADDRESS_ONLY, machine("node-3", [10, 0, 0, 43], BootPolicy::AddressOnly)),
            (IGNORED, machine("node-4", [10, 0, 0, 44], BootPolicy::Ignore)),
        ],
        true,
    )))
}

fn engine(mode: &str) -> Engine {
    let mut json = serde_json::json!({
        "interfaces": ["eth0"], "serverAddress": "10.0.0.1", "mode": mode, "leaseTimeSeconds": 600,
        "boot": {"ipxeScriptUrl": "http://10.0.0.1:8080/boot/{mac}.ipxe", "httpBaseUrl": "http://10.0.0.1:8080"},
    });
    if mode == "full" {
        json["dynamicRange"] = serde_json::json!({
            "start": "10.0.0.100", "end": "10.0.0.103", "netmask": "255.255.255.0", "gateway": "10.0.0.1",
            "dnsServers": ["10.0.0.53"], "domain": "lab",
        });
    }
    let config = match serde_json::from_value::<RawConfig>(json).map(RawConfig::validate) {
        Ok(Ok(config)) => config,
        other => panic!("the fuzz target's {mode} configuration is invalid: {other:?}"),
    };
    match Engine::open(Arc::new(config), machines()) {
        Ok(engine) => engine,
        Err(error) => panic!("in-memory lease store: {error}"),
    }
}

struct Engines {
    full: Engine,
    proxy: Engine,
    runs: u64,
}

impl Engines {
    fn new() -> Self {
        Self { full: engine("full"), proxy: engine("proxy"), runs: 0 }
    }
}

static ENGINES: LazyLock<Mutex<Engines>> = LazyLock::new(|| Mutex::new(Engines::new()));

/// The engine's parser runs dhcproto under `catch_unwind` and drops what it panics on (with
/// debug assertions, as here, dhcproto 0.14 trips a `debug_assert!` on some options), but
/// libFuzzer's panic hook aborts on every panic, caught or not. So decode here first, with the
/// hook silenced: an input dhcproto panics on is one the engine survives, and is skipped (the
/// first one is printed, for dhcproto's maintainers).
fn dhcproto_panics(packet: &[u8]) -> bool {
    static TOLD: AtomicBool = AtomicBool::new(false);
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let panicked = std::panic::catch_unwind(|| Message::from_bytes(packet)).is_err();
    std::panic::set_hook(hook);
    if panicked && !TOLD.swap(true, Ordering::Relaxed) {
        let hex = packet.iter().fold(String::new(), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        });
        eprintln!("dhcp_engine: dhcproto panics decoding (the engine drops it; inputs like it are skipped): {hex}");
    }
    panicked
}

/// Checks a reply against the packet it answers.
fn check(packet: &[u8], reply: Option<Reply>, inbound: Inbound, proxy: bool) {
    let Some(reply) = reply else { return };
    let what = format!("{} mode, {:?} port", if proxy { "proxy" } else { "full" }, inbound.port);
    let message = match Message::from_bytes(&reply.bytes) {
        Ok(message) => message,
        Err(error) => panic!("{what}: the reply does not decode: {error}"),
    };
    assert_eq!(message.opcode(), Opcode::BootReply, "{what}: the reply is not a BOOTREPLY");
    assert!(message.opts().msg_type().is_some(), "{what}: the reply has no DHCP message type");
    assert_eq!(reply.bytes.get(4..8), packet.get(4..8), "{what}: the reply's xid is not the request's");
    assert_eq!(Some(message.chaddr()), packet.get(28..34), "{what}: the reply's chaddr is not the request's");
    assert!(
        options_well_formed(reply.bytes.get(240..).unwrap_or_default()),
        "{what}: the reply's options are not well formed"
    );
    if proxy {
        assert!(message.yiaddr().is_unspecified(), "{what}: a proxy reply gives an address");
    }
    if inbound.port == Port::PxeBoot {
        assert_eq!(reply.destination, inbound.source, "{what}: a boot server reply not sent back to its sender");
    }
}

fuzz_target!(|packet: &[u8]| {
    if dhcproto_panics(packet) {
        return;
    }
    let mut engines = ENGINES.lock().unwrap_or_else(PoisonError::into_inner);
    if engines.runs == RUNS_PER_ENGINE {
        *engines = Engines::new();
    }
    engines.runs += 1;
    let now = START + engines.runs;
    let dhcp = Inbound { source: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68), port: Port::Dhcp };
    let boot = Inbound { source: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 150), 4011), port: Port::PxeBoot };
    for inbound in [dhcp, boot] {
        check(packet, engines.full.handle(packet, inbound, now), inbound, false);
        check(packet, engines.proxy.handle(packet, inbound, now), inbound, true);
    }
});
