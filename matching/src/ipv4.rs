//! IPv4 addresses and networks as Python's `ipaddress` reads them (`network()` rules).

use std::fmt;

/// Python's `ipaddress.IPv4Address(str)`: four decimal octets, no leading zeros, each ≤ 255.
pub fn parse_address(text: &str) -> Option<u32> {
    let mut value: u32 = 0;
    let mut count = 0;
    for octet in text.split('.') {
        count += 1;
        if count > 4 || octet.is_empty() || octet.len() > 3 || !octet.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if octet != "0" && octet.starts_with('0') {
            return None;
        }
        let n: u32 = octet.parse().ok()?;
        if n > 255 {
            return None;
        }
        value = (value << 8) | n;
    }
    (count == 4).then_some(value)
}

/// An IPv4 network, `ipaddress.IPv4Network(text)` with `strict=True`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    address: u32,
    prefix: u8,
}

impl Network {
    /// Parses `a.b.c.d`, `a.b.c.d/len`, `a.b.c.d/netmask` or `a.b.c.d/hostmask`; host bits
    /// must be zero, as in Python.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = text.split('/');
        let address_text = parts.next().unwrap_or_default();
        let mask_text = parts.next();
        if parts.next().is_some() {
            return Err("only one '/' permitted".into());
        }
        let address = parse_address(address_text).ok_or_else(|| format!("{address_text:?} is not an IPv4 address"))?;
        let prefix = match mask_text {
            None => 32,
            Some(mask) => prefix_from_mask(mask).ok_or_else(|| format!("{mask:?} is not a valid netmask"))?,
        };
        let network = Self { address, prefix };
        if address & !network.mask() != 0 {
            return Err(format!("{text} has host bits set"));
        }
        Ok(network)
    }

    fn mask(self) -> u32 {
        if self.prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(self.prefix)) }
    }

    /// Whether `address` is inside the network.
    pub fn contains(self, address: u32) -> bool {
        address & self.mask() == self.address
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d] = self.address.to_be_bytes();
        write!(f, "{a}.{b}.{c}.{d}/{}", self.prefix)
    }
}

/// `_make_netmask`: a decimal prefix length (leading zeros allowed), else a dotted netmask,
/// else a dotted hostmask.
fn prefix_from_mask(mask: &str) -> Option<u8> {
    if !mask.is_empty() && mask.bytes().all(|b| b.is_ascii_digit()) {
        let trimmed = mask.trim_start_matches('0');
        if trimmed.len() > 2 {
            return None;
        }
        let prefix: u8 = if trimmed.is_empty() { 0 } else { trimmed.parse().ok()? };
        return (prefix <= 32).then_some(prefix);
    }
    let value = parse_address(mask)?;
    prefix_from_int(value).or_else(|| prefix_from_int(!value))
}

/// A contiguous run of leading ones, or nothing.
fn prefix_from_int(value: u32) -> Option<u8> {
    let zeros = value.trailing_zeros();
    let prefix = 32 - zeros;
    let ones = if zeros == 32 { 0 } else { value >> zeros };
    let expected = if prefix == 0 { 0 } else { u32::MAX >> (32 - prefix) };
    (ones == expected).then_some(prefix as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_follow_python() {
        assert_eq!(parse_address("192.168.122.3"), Some(0xc0a8_7a03));
        assert_eq!(parse_address("0.0.0.0"), Some(0));
        for bad in ["", "1.2.3", "1.2.3.4.5", "01.2.3.4", "1.2.3.256", "1.2.3.-4", " 1.2.3.4", "1.2.3.4/32", "1..3.4"] {
            assert_eq!(parse_address(bad), None, "{bad}");
        }
    }

    #[test]
    fn networks_follow_python_strict_mode() -> Result<(), String> {
        let net = Network::parse("192.168.122.0/24")?;
        assert!(net.contains(0xc0a8_7a07));
        assert!(!net.contains(0xc0a8_7b07));
        assert_eq!(Network::parse("10.0.0.0/255.0.0.0")?, Network::parse("10.0.0.0/8")?);
        assert_eq!(Network::parse("10.0.0.0/0.255.255.255")?, Network::parse("10.0.0.0/8")?);
        assert_eq!(Network::parse("10.0.0.0/008")?, Network::parse("10.0.0.0/8")?);
        assert_eq!(Network::parse("0.0.0.0/0")?.to_string(), "0.0.0.0/0");
        assert_eq!(Network::parse("10.1.2.3")?.to_string(), "10.1.2.3/32");
        assert!(Network::parse("0.0.0.0/0")?.contains(u32::MAX));
        for bad in [
            "192.168.122.1/24",
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0.0/8/8",
            "10.0.0.0/255.0.255.0",
            "x/8",
            "10.0.0.0/+8",
        ] {
            assert!(Network::parse(bad).is_err(), "{bad}");
        }
        Ok(())
    }
}
