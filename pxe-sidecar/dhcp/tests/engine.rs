#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic
//! The pure engine, packet in → reply out: DORA, NAKs, relay, release/decline/inform, proxy
//! mode, persistence across a restart, malformed packets.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::sync::Arc;

use dhcproto::v4::{Architecture, DhcpOption, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Encodable};
use machinist_boot_dhcp::{
    BootPolicy, Engine, Inbound, LeaseStore, MacAddr, MachineBoot, NetworkSettings, Port, RawConfig, Reply,
    StaticDirectory,
};

const KNOWN: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 1]);
const OTHER: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 2]);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const RESERVED: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 42);
const NOW: u64 = 1_000_000;

fn engine_with(mode: &str, lease_file: Option<&Path>, serve_unknown: bool) -> Engine {
    let mut json = serde_json::json!({
        "interfaces": ["eth0"], "serverAddress": "10.0.0.1", "mode": mode, "leaseTimeSeconds": 600,
        "boot": {"ipxeScriptUrl": "http://10.0.0.1:8080/boot/{mac}.ipxe", "httpBaseUrl": "http://10.0.0.1:8080"},
        "leaseFile": lease_file,
    });
    if mode == "full" {
        json["dynamicRange"] = serde_json::json!({"start": "10.0.0.100", "end": "10.0.0.101", "netmask": "255.255.255.0", "gateway": "10.0.0.1"});
    }
    let config = serde_json::from_value::<RawConfig>(json).unwrap().validate().unwrap();
    let machine = MachineBoot {
        name: "node-1".into(),
        address: Some(RESERVED),
        hostname: Some("node-1".into()),
        network: NetworkSettings {
            netmask: Some(Ipv4Addr::new(255, 255, 255, 0)),
            gateway: Some(Ipv4Addr::new(10, 0, 0, 254)),
            dns_servers: vec![Ipv4Addr::new(10, 0, 0, 53)],
            domain: Some("lab".into()),
        },
        policy: BootPolicy::Network,
    };
    Engine::open(Arc::new(config), Arc::new(StaticDirectory::new([(KNOWN, machine)], serve_unknown))).unwrap()
}

fn full() -> Engine {
    engine_with("full", None, true)
}

fn request(mac: MacAddr, kind: MessageType) -> Message {
    let mut m = Message::new_with_id(
        7,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &mac.0,
    );
    m.opts_mut().insert(DhcpOption::MessageType(kind));
    m
}

fn pxe(mut m: Message, arch: u16) -> Message {
    m.opts_mut().insert(DhcpOption::ClassIdentifier(b"PXEClient:Arch:00000:UNDI:002001".to_vec()));
    m.opts_mut().insert(DhcpOption::ClientSystemArchitecture(Architecture::from(arch)));
    m
}

fn with(mut m: Message, opt: DhcpOption) -> Message {
    m.opts_mut().insert(opt);
    m
}

fn client() -> Inbound {
    Inbound { source: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68), port: Port::Dhcp }
}

fn send(engine: &Engine, m: &Message) -> Option<(Message, Reply)> {
    send_at(engine, m, client(), NOW)
}

fn send_at(engine: &Engine, m: &Message, inbound: Inbound, now: u64) -> Option<(Message, Reply)> {
    let reply = engine.handle(&m.to_vec().unwrap(), inbound, now)?;
    Some((Message::from_bytes(&reply.bytes).unwrap(), reply))
}

fn kind(m: &Message) -> MessageType {
    m.opts().msg_type().unwrap()
}

fn opt(m: &Message, code: OptionCode) -> Option<&DhcpOption> {
    m.opts().get(code)
}

/// DISCOVER → OFFER → REQUEST → ACK; returns the ACK.
fn dora(engine: &Engine, mac: MacAddr, now: u64) -> Message {
    let (offer, _) = send_at(engine, &request(mac, MessageType::Discover), client(), now).unwrap();
    assert_eq!(kind(&offer), MessageType::Offer);
    let req = with(
        with(request(mac, MessageType::Request), DhcpOption::RequestedIpAddress(offer.yiaddr())),
        DhcpOption::ServerIdentifier(SERVER),
    );
    let (ack, _) = send_at(engine, &req, client(), now).unwrap();
    assert_eq!(kind(&ack), MessageType::Ack);
    ack
}

#[test]
fn reserved_machine_gets_its_address_and_cmdb_options() {
    let engine = full();
    let (offer, reply) = send(&engine, &request(KNOWN, MessageType::Discover)).unwrap();
    assert_eq!(offer.yiaddr(), RESERVED);
    assert_eq!(reply.destination, SocketAddrV4::new(Ipv4Addr::BROADCAST, 68));
    assert_eq!(opt(&offer, OptionCode::ServerIdentifier), Some(&DhcpOption::ServerIdentifier(SERVER)));
    assert_eq!(opt(&offer, OptionCode::Router), Some(&DhcpOption::Router(vec![Ipv4Addr::new(10, 0, 0, 254)])));
    assert_eq!(opt(&offer, OptionCode::DomainName), Some(&DhcpOption::DomainName("lab".into())));
    assert_eq!(opt(&offer, OptionCode::Hostname), Some(&DhcpOption::Hostname("node-1".into())));
    assert_eq!(opt(&offer, OptionCode::AddressLeaseTime), Some(&DhcpOption::AddressLeaseTime(600)));
    assert_eq!(opt(&offer, OptionCode::ClassIdentifier), None, "not a PXE client: no boot options");
    let ack = dora(&engine, KNOWN, NOW);
    assert_eq!(ack.yiaddr(), RESERVED);
    let counters = engine.snapshot();
    assert_eq!((counters.offers, counters.acks, counters.received), (2, 1, 3));
}

#[test]
fn pxe_clients_get_boot_files_by_architecture() {
    let engine = full();
    for (arch, file) in [(0, "undionly.kpxe"), (7, "ipxe.efi"), (9, "ipxe.efi"), (11, "ipxe-arm64.efi")] {
        let (offer, _) = send(&engine, &pxe(request(KNOWN, MessageType::Discover), arch)).unwrap();
        assert_eq!(offer.fname_str().unwrap().unwrap().trim_end_matches('\0'), file, "arch {arch}");
        assert_eq!(offer.siaddr(), SERVER);
        assert_eq!(opt(&offer, OptionCode::ClassIdentifier), Some(&DhcpOption::ClassIdentifier(b"PXEClient".to_vec())));
        // Boot the file named here: no boot server discovery on port 4011, which nobody
        // answers in full mode.
        assert_eq!(
            opt(&offer, OptionCode::VendorExtensions),
            Some(&DhcpOption::VendorExtensions(vec![6, 1, 8, 255])),
            "arch {arch}"
        );
    }
    let ipxe = with(pxe(request(KNOWN, MessageType::Discover), 0), DhcpOption::UserClass(b"iPXE".to_vec()));
    let (offer, _) = send(&engine, &ipxe).unwrap();
    assert_eq!(
        offer.fname_str().unwrap().unwrap().trim_end_matches('\0'),
        "http://10.0.0.1:8080/boot/52:54:00:00:00:01.ipxe"
    );
    let mut http = request(KNOWN, MessageType::Discover);
    http.opts_mut().insert(DhcpOption::ClassIdentifier(b"HTTPClient:Arch:00016:UNDI:003001".to_vec()));
    http.opts_mut().insert(DhcpOption::ClientSystemArchitecture(Architecture::from(16)));
    let (offer, _) = send(&engine, &http).unwrap();
    assert_eq!(offer.fname_str().unwrap().unwrap().trim_end_matches('\0'), "http://10.0.0.1:8080/ipxe.efi");
    assert_eq!(opt(&offer, OptionCode::ClassIdentifier), Some(&DhcpOption::ClassIdentifier(b"HTTPClient".to_vec())));
    assert_eq!(opt(&offer, OptionCode::VendorExtensions), None, "PXE options are for PXE clients");
}

#[test]
fn unknown_clients_use_the_dynamic_range_until_it_is_exhausted() {
    let engine = full();
    let a = dora(&engine, OTHER, NOW).yiaddr();
    assert_eq!(a, Ipv4Addr::new(10, 0, 0, 100));
    assert_eq!(dora(&engine, OTHER, NOW).yiaddr(), a, "same client, same address");
    let b = dora(&engine, MacAddr([2, 0, 0, 0, 0, 3]), NOW).yiaddr();
    assert_eq!(b, Ipv4Addr::new(10, 0, 0, 101));
    assert!(send(&engine, &request(MacAddr([2, 0, 0, 0, 0, 4]), MessageType::Discover)).is_none());
    assert_eq!(engine.snapshot().exhausted, 1);
    // after expiry the address is free for someone else
    let later = NOW + 601;
    assert_eq!(dora(&engine, MacAddr([2, 0, 0, 0, 0, 4]), later).yiaddr(), Ipv4Addr::new(10, 0, 0, 100));
}

#[test]
fn unknown_clients_are_ignored_without_auto_registration() {
    let engine = engine_with("full", None, false);
    assert!(send(&engine, &request(OTHER, MessageType::Discover)).is_none());
    let counters = engine.snapshot();
    assert_eq!((counters.unknown_clients, counters.dropped), (1, 1));
}

#[test]
fn requests_for_wrong_addresses_are_naked() {
    let engine = full();
    let wrong = with(request(KNOWN, MessageType::Request), DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 0, 0, 43)));
    let (nak, reply) = send(&engine, &wrong).unwrap();
    assert_eq!(kind(&nak), MessageType::Nak);
    assert_eq!(nak.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(reply.destination, SocketAddrV4::new(Ipv4Addr::BROADCAST, 68));
    // outside the range for a dynamic client
    let out = with(request(OTHER, MessageType::Request), DhcpOption::RequestedIpAddress(Ipv4Addr::new(192, 168, 1, 5)));
    assert_eq!(kind(&send(&engine, &out).unwrap().0), MessageType::Nak);
    // an address another client holds
    let held = dora(&engine, MacAddr([2, 0, 0, 0, 0, 9]), NOW).yiaddr();
    let steal = with(request(OTHER, MessageType::Request), DhcpOption::RequestedIpAddress(held));
    assert_eq!(kind(&send(&engine, &steal).unwrap().0), MessageType::Nak);
    assert_eq!(engine.snapshot().naks, 3);
    // a REQUEST for another server's offer is not ours to answer
    let other_server = with(
        with(request(KNOWN, MessageType::Request), DhcpOption::RequestedIpAddress(RESERVED)),
        DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 0, 2)),
    );
    assert!(send(&engine, &other_server).is_none());
}

#[test]
fn renewals_are_unicast_and_relayed_requests_go_back_to_the_relay() {
    let engine = full();
    dora(&engine, KNOWN, NOW);
    let mut renew = request(KNOWN, MessageType::Request);
    renew.set_ciaddr(RESERVED);
    let (ack, reply) = send(&engine, &renew).unwrap();
    assert_eq!((kind(&ack), ack.yiaddr()), (MessageType::Ack, RESERVED));
    assert_eq!(reply.destination, SocketAddrV4::new(RESERVED, 68));
    let relay = Ipv4Addr::new(10, 0, 0, 254);
    let mut relayed = request(OTHER, MessageType::Discover);
    relayed.set_giaddr(relay);
    let (offer, reply) = send(&engine, &relayed).unwrap();
    assert_eq!(offer.giaddr(), relay);
    assert_eq!(reply.destination, SocketAddrV4::new(relay, 67));
    // a relay on another subnet gets nothing from the dynamic range
    let mut far = request(OTHER, MessageType::Discover);
    far.set_giaddr(Ipv4Addr::new(192, 168, 7, 1));
    assert!(send(&engine, &far).is_none());
}

#[test]
fn release_decline_and_inform() {
    let engine = full();
    let ip = dora(&engine, OTHER, NOW).yiaddr();
    let mut release = request(OTHER, MessageType::Release);
    release.set_ciaddr(ip);
    assert!(send(&engine, &release).is_none());
    assert_eq!(engine.snapshot().releases, 1);
    let decline = with(request(OTHER, MessageType::Decline), DhcpOption::RequestedIpAddress(ip));
    assert!(send(&engine, &decline).is_none());
    assert_eq!(engine.snapshot().declines, 1);
    let (offer, _) = send(&engine, &request(OTHER, MessageType::Discover)).unwrap();
    assert_ne!(offer.yiaddr(), ip, "a declined address is quarantined");
    let mut inform = request(KNOWN, MessageType::Inform);
    inform.set_ciaddr(RESERVED);
    let (ack, reply) = send(&engine, &inform).unwrap();
    assert_eq!((kind(&ack), ack.yiaddr()), (MessageType::Ack, Ipv4Addr::UNSPECIFIED));
    assert_eq!(opt(&ack, OptionCode::AddressLeaseTime), None);
    assert_eq!(opt(&ack, OptionCode::DomainName), Some(&DhcpOption::DomainName("lab".into())));
    assert_eq!(reply.destination, SocketAddrV4::new(RESERVED, 68));
}

#[test]
fn leases_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("leases.sqlite");
    let first = dora(&engine_with("full", Some(&file), true), OTHER, NOW).yiaddr();
    let engine = engine_with("full", Some(&file), true);
    let newcomer = MacAddr([2, 0, 0, 0, 0, 7]);
    let (offer, _) = send(&engine, &request(newcomer, MessageType::Discover)).unwrap();
    assert_ne!(offer.yiaddr(), first, "the address bound before the restart is still taken");
    let steal = with(request(newcomer, MessageType::Request), DhcpOption::RequestedIpAddress(first));
    assert_eq!(kind(&send(&engine, &steal).unwrap().0), MessageType::Nak);
    let store = LeaseStore::open(&file).unwrap();
    assert_eq!(store.lease_of(OTHER).map(|l| (l.ip, l.expires)), Some((first, NOW + 600)));
}

#[test]
fn proxy_mode_answers_pxe_clients_with_boot_options_only() {
    let engine = engine_with("proxy", None, true);
    assert!(send(&engine, &request(KNOWN, MessageType::Discover)).is_none(), "not a PXE client");
    let (offer, reply) = send(&engine, &pxe(request(KNOWN, MessageType::Discover), 7)).unwrap();
    assert_eq!(kind(&offer), MessageType::Offer);
    assert_eq!(offer.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(offer.fname_str().unwrap().unwrap().trim_end_matches('\0'), "ipxe.efi");
    assert_eq!(opt(&offer, OptionCode::ClassIdentifier), Some(&DhcpOption::ClassIdentifier(b"PXEClient".to_vec())));
    assert!(opt(&offer, OptionCode::VendorExtensions).is_some());
    assert_eq!(opt(&offer, OptionCode::AddressLeaseTime), None);
    assert_eq!(reply.destination.port(), 68);
    // the DHCP server's REQUEST on port 67 is not ours
    let req67 = with(pxe(request(KNOWN, MessageType::Request), 7), DhcpOption::RequestedIpAddress(RESERVED));
    assert!(send(&engine, &req67).is_none());
    // the boot server request on 4011 gets an ACK, unicast back
    let mut boot = pxe(request(KNOWN, MessageType::Request), 7);
    boot.set_ciaddr(Ipv4Addr::new(10, 0, 0, 150));
    let from = Inbound { source: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 150), 4011), port: Port::PxeBoot };
    let (ack, reply) = send_at(&engine, &boot, from, NOW).unwrap();
    assert_eq!((kind(&ack), ack.yiaddr()), (MessageType::Ack, Ipv4Addr::UNSPECIFIED));
    assert_eq!(ack.fname_str().unwrap().unwrap().trim_end_matches('\0'), "ipxe.efi");
    assert_eq!(reply.destination, from.source);
    // unsupported architecture: nothing to offer, no reply
    assert!(send(&engine, &pxe(request(KNOWN, MessageType::Discover), 2)).is_none());
}

#[test]
fn machines_with_boot_target_none_get_no_answer() {
    let config =
        serde_json::from_value::<RawConfig>(serde_json::json!({"interfaces":["eth0"],"serverAddress":"10.0.0.1"}))
            .unwrap()
            .validate()
            .unwrap();
    let machine = MachineBoot { address: Some(RESERVED), policy: BootPolicy::Ignore, ..MachineBoot::default() };
    let engine = Engine::open(Arc::new(config), Arc::new(StaticDirectory::new([(KNOWN, machine)], true))).unwrap();
    assert!(send(&engine, &request(KNOWN, MessageType::Discover)).is_none());
}

#[test]
fn malformed_packets_are_dropped_and_counted() {
    let engine = full();
    let good = request(KNOWN, MessageType::Discover).to_vec().unwrap();
    let mut bad_magic = good.clone();
    bad_magic[236] = 0;
    let mut bad_options = good[..240].to_vec();
    bad_options.extend_from_slice(&[53, 1, 1, 51, 4, 0, 0]); // lease time option cut short
    let mut no_type = good[..240].to_vec();
    no_type.push(255);
    let mut bad_hlen = good.clone();
    bad_hlen[2] = 200; // would make chaddr() panic if trusted
    let mut reply_op = good.clone();
    reply_op[0] = 2;
    let cases: Vec<Vec<u8>> = vec![
        vec![],
        good[..100].to_vec(),
        good[..239].to_vec(),
        bad_magic,
        bad_options,
        no_type,
        bad_hlen,
        vec![1; 4000],
        [good.clone(), vec![0; 1500]].concat(),
    ];
    for (i, case) in cases.iter().enumerate() {
        assert!(engine.handle(case, client(), NOW).is_none(), "case {i}");
    }
    assert!(engine.handle(&reply_op, client(), NOW).is_none());
    let counters = engine.snapshot();
    assert_eq!(counters.malformed, cases.len() as u64, "{counters:?}");
    assert_eq!(counters.dropped, 1, "a BOOTREPLY is valid but not for us");
    assert!(engine.handle(&good, client(), NOW).is_some(), "still serving");
}

#[test]
fn random_bytes_never_panic() {
    let engine = full();
    let good = pxe(request(KNOWN, MessageType::Discover), 0).to_vec().unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for _ in 0..5000 {
        let mut packet = good.clone();
        for _ in 0..8 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let at = (seed as usize) % packet.len();
            packet[at] = (seed >> 32) as u8;
        }
        packet.truncate(240 + (seed as usize >> 40) % (packet.len() - 239));
        let _ = engine.handle(&packet, client(), NOW);
    }
}

#[test]
fn only_requested_options_are_sent_when_the_client_lists_them() {
    let engine = full();
    // No option 55: everything configured is sent.
    let (all, _) = send(&engine, &request(KNOWN, MessageType::Discover)).unwrap();
    for code in [OptionCode::Router, OptionCode::DomainNameServer, OptionCode::DomainName, OptionCode::Hostname] {
        assert!(opt(&all, code).is_some(), "{code:?} missing without a request list");
    }
    // Asking for the router only: no DNS, domain or hostname, but the protocol's own options.
    let asked = with(
        request(KNOWN, MessageType::Discover),
        DhcpOption::ParameterRequestList(vec![OptionCode::SubnetMask, OptionCode::Router]),
    );
    let (offer, _) = send(&engine, &asked).unwrap();
    assert_eq!(offer.yiaddr(), RESERVED);
    assert!(opt(&offer, OptionCode::Router).is_some());
    for code in [OptionCode::DomainNameServer, OptionCode::DomainName, OptionCode::Hostname] {
        assert!(opt(&offer, code).is_none(), "{code:?} sent unasked");
    }
    for code in [OptionCode::MessageType, OptionCode::ServerIdentifier, OptionCode::AddressLeaseTime] {
        assert!(opt(&offer, code).is_some(), "{code:?} must always be sent");
    }
    // A PXE client that does not list the boot file name still gets it, with its vendor class.
    let booting = with(pxe(request(OTHER, MessageType::Discover), 0), DhcpOption::ParameterRequestList(vec![]));
    let (offer, _) = send(&engine, &booting).unwrap();
    assert!(opt(&offer, OptionCode::BootfileName).is_some());
    assert!(opt(&offer, OptionCode::ClassIdentifier).is_some());
}
