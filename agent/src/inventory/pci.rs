//! PCI functions, from `/sys/bus/pci/devices/*`.

/// One PCI function.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PciDevice {
    /// Address (`0000:3b:00.0`).
    pub address: String,
    /// Vendor id (`0x8086`).
    pub vendor: Option<String>,
    /// Device id (`0x1572`).
    pub device: Option<String>,
    /// Class code (`0x020000`: Ethernet controller).
    pub class: Option<String>,
    /// Bound driver, if any.
    pub driver: Option<String>,
}

/// A hexadecimal id file (`0x8086`), normalised to lower case with its `0x`; `digits` is the
/// width the id has (4 for vendor/device, 6 for class).
pub fn parse_id(text: &str, digits: usize) -> Option<String> {
    let text = text.trim().to_ascii_lowercase();
    let hex = text.strip_prefix("0x")?;
    (hex.len() == digits && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| format!("0x{hex}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn ids() {
        assert_eq!(parse_id("0x8086\n", 4).as_deref(), Some("0x8086"));
        assert_eq!(parse_id("0x1AF4", 4).as_deref(), Some("0x1af4"));
        assert_eq!(parse_id("0x020000\n", 6).as_deref(), Some("0x020000"));
        assert_eq!(parse_id("8086", 4), None);
        assert_eq!(parse_id("0x80861", 4), None);
        assert_eq!(parse_id("0xzzzz", 4), None);
    }
}
