//! Network interfaces, from `/sys/class/net/*`, and their IPv4 addresses from
//! `/proc/net/fib_trie` and `/proc/net/route` (no netlink, no `ip` command).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// What kind of interface this is; only physical ones are hardware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NicKind {
    /// Backed by a device (PCI, virtio, USB…).
    Physical,
    /// A bonding master (`bonding/`).
    Bond,
    /// A bridge (`bridge/`).
    Bridge,
    /// An 802.1Q VLAN (`DEVTYPE=vlan`).
    Vlan,
    /// The loopback.
    Loopback,
    /// Any other software interface (tun, veth, ifb, dummy…).
    Virtual,
}

/// What sysfs shows about an interface's nature, to classify it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NicFacts {
    /// `device` exists.
    pub has_device: bool,
    /// `bonding/` exists.
    pub has_bonding: bool,
    /// `bridge/` exists.
    pub has_bridge: bool,
    /// `uevent` text.
    pub uevent: String,
    /// `type` (ARPHRD: 1 Ethernet, 772 loopback, 32 InfiniBand).
    pub arp_type: Option<u32>,
}

/// Classifies an interface.
pub fn classify(facts: &NicFacts) -> NicKind {
    let devtype = facts.uevent.lines().find_map(|l| l.strip_prefix("DEVTYPE=")).map(str::trim);
    if facts.arp_type == Some(772) {
        NicKind::Loopback
    } else if facts.has_bonding || devtype == Some("bond") {
        NicKind::Bond
    } else if facts.has_bridge || devtype == Some("bridge") {
        NicKind::Bridge
    } else if devtype == Some("vlan") {
        NicKind::Vlan
    } else if facts.has_device {
        NicKind::Physical
    } else {
        NicKind::Virtual
    }
}

/// An IPv4 address with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Net {
    /// The address.
    pub address: Ipv4Addr,
    /// Prefix length (0–32).
    pub prefix: u8,
}

impl Ipv4Net {
    /// The netmask (`255.255.255.0`).
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(mask(self.prefix))
    }

    /// The network address (`192.0.2.0`).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.address) & mask(self.prefix))
    }
}

fn mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix.min(32))).unwrap_or(0)
}

/// One network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    /// Kernel name.
    pub name: String,
    /// Kind.
    pub kind: NicKind,
    /// Current MAC (`address`), lower case. A bond slave shows the bond's MAC here.
    pub mac: Option<String>,
    /// Burned-in MAC of a bond slave (`bonding_slave/perm_hwaddr`).
    pub permanent_mac: Option<String>,
    /// `operstate` (`up`, `down`, `unknown`…).
    pub operstate: Option<String>,
    /// `carrier`: unreadable while the interface is administratively down.
    pub carrier: Option<bool>,
    /// `speed` in Mbit/s, when known (the kernel says -1 otherwise).
    pub speed_mbps: Option<u32>,
    /// `duplex` (`full`, `half`), when known.
    pub duplex: Option<String>,
    /// Driver (`device/driver` link name).
    pub driver: Option<String>,
    /// lshw-style bus info of the device (`pci@0000:00:03.0`, `virtio@2`).
    pub businfo: Option<String>,
    /// PCI address of the device or of the closest PCI ancestor.
    pub pci_address: Option<String>,
    /// Bond or bridge this interface is enslaved to (`master` link name).
    pub master: Option<String>,
    /// First IPv4 address.
    pub ipv4: Option<Ipv4Net>,
}

impl Nic {
    /// The MAC identifying the hardware: the permanent one when enslaved.
    pub fn hardware_mac(&self) -> Option<&str> {
        self.permanent_mac.as_deref().or(self.mac.as_deref())
    }
}

/// A colon-separated MAC address, lower-cased; anything else (InfiniBand's 20-byte addresses
/// included) is refused.
pub fn parse_mac(text: &str) -> Option<String> {
    let mac = text.trim().to_ascii_lowercase();
    let octets: Vec<&str> = mac.split(':').collect();
    let valid = octets.len() == 6 && octets.iter().all(|o| o.len() == 2 && o.bytes().all(|b| b.is_ascii_hexdigit()));
    valid.then_some(mac)
}

/// `speed`: positive Mbit/s only (-1 and 0 mean unknown).
pub fn parse_speed(text: &str) -> Option<u32> {
    text.trim().parse::<i64>().ok().and_then(|s| u32::try_from(s).ok()).filter(|&s| s > 0)
}

/// `duplex`: `full` or `half` only.
pub fn parse_duplex(text: &str) -> Option<String> {
    let duplex = text.trim();
    matches!(duplex, "full" | "half").then(|| duplex.to_owned())
}

/// `type`.
pub fn parse_arp_type(text: &str) -> Option<u32> {
    text.trim().parse().ok()
}

/// Whether a path component is a PCI address (`0000:00:03.0`).
pub fn is_pci_address(component: &str) -> bool {
    let b = component.as_bytes();
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && b.iter().enumerate().all(|(i, c)| matches!(i, 4 | 7 | 10) || c.is_ascii_hexdigit())
}

/// lshw's bus info and the PCI address from an interface's resolved `device` path
/// (`/sys/devices/pci0000:00/0000:00:03.0/virtio2` → `virtio@2`, `0000:00:03.0`).
pub fn bus_of_device_path(device_path: &str) -> (Option<String>, Option<String>) {
    let components: Vec<&str> = device_path.split('/').filter(|c| !c.is_empty()).collect();
    let pci = components.iter().rev().find(|c| is_pci_address(c)).map(|c| (*c).to_owned());
    let last = components.last().copied().unwrap_or_default();
    let businfo = if is_pci_address(last) {
        Some(format!("pci@{last}"))
    } else {
        last.strip_prefix("virtio")
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .map(|n| format!("virtio@{n}"))
    };
    (businfo, pci)
}

/// The local (assigned) IPv4 addresses in `/proc/net/fib_trie`, loopback excluded, in order.
pub fn parse_fib_trie_locals(text: &str) -> Vec<Ipv4Addr> {
    let mut last: Option<Ipv4Addr> = None;
    let mut locals = Vec::new();
    for line in text.lines() {
        let line = line.trim_start_matches([' ', '|', '+', '-', '\t']);
        if let Ok(address) = line.trim().parse::<Ipv4Addr>() {
            last = Some(address);
        } else if line.starts_with("/32 host LOCAL")
            && let Some(address) = last
            && !address.is_loopback()
            && !locals.contains(&address)
        {
            locals.push(address);
        }
    }
    locals
}

/// One on-link route of `/proc/net/route`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Interface.
    pub iface: String,
    /// Destination network.
    pub destination: Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
}

/// The on-link (no gateway) routes of `/proc/net/route`. Addresses there are the raw
/// network-order words printed in host order, hence `to_ne_bytes`.
pub fn parse_routes(text: &str) -> Vec<Route> {
    const RTF_GATEWAY: u32 = 0x2;
    let hex = |s: &str| u32::from_str_radix(s, 16).ok();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let iface = (*f.first()?).to_owned();
            let (destination, flags, mask) = (hex(f.get(1)?)?, hex(f.get(3)?)?, hex(f.get(7)?)?);
            let mask = u32::from(Ipv4Addr::from(mask.to_ne_bytes()));
            // Only contiguous masks are real prefixes.
            let prefix = u8::try_from(mask.leading_ones()).ok()?;
            (flags & RTF_GATEWAY == 0 && mask.count_ones() == mask.leading_ones() && prefix > 0).then(|| Route {
                iface,
                destination: Ipv4Addr::from(destination.to_ne_bytes()),
                prefix,
            })
        })
        .collect()
}

/// The first local address of each interface: an address belongs to the interface whose
/// on-link route contains it (the longest such prefix wins).
pub fn assign_ipv4(locals: &[Ipv4Addr], routes: &[Route]) -> BTreeMap<String, Ipv4Net> {
    let mut assigned = BTreeMap::new();
    for &address in locals {
        let best = routes
            .iter()
            .filter(|r| u32::from(address) & mask(r.prefix) == u32::from(r.destination))
            .max_by_key(|r| r.prefix);
        if let Some(route) = best {
            assigned.entry(route.iface.clone()).or_insert(Ipv4Net { address, prefix: route.prefix });
        }
    }
    assigned
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn kinds() {
        let facts = |has_device, has_bonding, has_bridge, uevent: &str, arp_type| NicFacts {
            has_device,
            has_bonding,
            has_bridge,
            uevent: uevent.to_owned(),
            arp_type: Some(arp_type),
        };
        assert_eq!(classify(&facts(false, false, false, "INTERFACE=lo\n", 772)), NicKind::Loopback);
        assert_eq!(classify(&facts(true, false, false, "INTERFACE=eth0\n", 1)), NicKind::Physical);
        assert_eq!(classify(&facts(false, true, false, "DEVTYPE=bond\n", 1)), NicKind::Bond);
        assert_eq!(classify(&facts(false, false, true, "DEVTYPE=bridge\n", 1)), NicKind::Bridge);
        assert_eq!(classify(&facts(false, false, false, "DEVTYPE=vlan\nINTERFACE=eth0.10\n", 1)), NicKind::Vlan);
        assert_eq!(classify(&facts(false, false, false, "INTERFACE=ifb0\n", 1)), NicKind::Virtual);
    }

    #[test]
    fn macs_speeds_duplex() {
        assert_eq!(parse_mac("02:FC:00:00:00:01\n").as_deref(), Some("02:fc:00:00:00:01"));
        assert_eq!(parse_mac("80:00:02:08:fe:80:00:00:00:00:00:00:00:02:c9:03:00:0a:1b:2c"), None);
        assert_eq!(parse_mac("zz:00:00:00:00:00"), None);
        assert_eq!(parse_speed("-1\n"), None);
        assert_eq!(parse_speed("10000\n"), Some(10000));
        assert_eq!(parse_duplex("unknown"), None);
        assert_eq!(parse_duplex("full\n").as_deref(), Some("full"));
    }

    #[test]
    fn bus_info() {
        assert_eq!(
            bus_of_device_path("/sys/devices/pci0000:00/0000:00:03.0/virtio2"),
            (Some("virtio@2".into()), Some("0000:00:03.0".into()))
        );
        assert_eq!(
            bus_of_device_path("/sys/devices/pci0000:00/0000:00:1c.0/0000:3b:00.1"),
            (Some("pci@0000:3b:00.1".into()), Some("0000:3b:00.1".into()))
        );
        assert_eq!(bus_of_device_path("/sys/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0").0, None);
        assert_eq!(bus_of_device_path(""), (None, None));
    }

    const FIB_TRIE: &str = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n\
        \x20    +-- 127.0.0.0/8 2 0 2\n           |-- 127.0.0.1\n              /32 host LOCAL\n\
        \x20    +-- 192.0.2.0/24 2 0 2\n           |-- 192.0.2.0\n              /24 link UNICAST\n\
        \x20          |-- 192.0.2.2\n              /32 host LOCAL\n        |-- 192.0.2.255\n           /32 link BROADCAST\n\
        Local:\n           |-- 192.0.2.2\n              /32 host LOCAL\n           |-- 10.1.0.7\n              /32 host LOCAL\n";

    const ROUTE: &str = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
        eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
        eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
        bond0\t0000010A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";

    #[test]
    fn ipv4_from_fib_trie_and_routes() {
        let locals = parse_fib_trie_locals(FIB_TRIE);
        assert_eq!(locals, vec![Ipv4Addr::new(192, 0, 2, 2), Ipv4Addr::new(10, 1, 0, 7)]);
        let routes = parse_routes(ROUTE);
        assert_eq!(routes.len(), 2, "the default route has a gateway");
        let assigned = assign_ipv4(&locals, &routes);
        let eth0 = assigned["eth0"];
        assert_eq!((eth0.address, eth0.prefix), (Ipv4Addr::new(192, 0, 2, 2), 24));
        assert_eq!(eth0.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(eth0.network(), Ipv4Addr::new(192, 0, 2, 0));
        assert_eq!(assigned["bond0"].address, Ipv4Addr::new(10, 1, 0, 7));
        assert_eq!(assigned["bond0"].prefix, 16);
        assert!(parse_routes("garbage\nx y z\n").is_empty());
    }
}
