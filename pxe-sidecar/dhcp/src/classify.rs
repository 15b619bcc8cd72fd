//! Client classification from options 60 (vendor class), 93 (architecture) and 77 (user
//! class).

use dhcproto::v4::{DhcpOption, Message, OptionCode};

/// Option 93 values this service distinguishes (RFC 4578, IANA "Processor Architecture
/// Types").
pub mod arch {
    /// x86 BIOS.
    pub const BIOS: u16 = 0;
    /// x86-64 UEFI (EFI BC; real firmware sends 7).
    pub const UEFI_X86_64_BC: u16 = 7;
    /// x86-64 UEFI.
    pub const UEFI_X86_64: u16 = 9;
    /// arm64 UEFI.
    pub const UEFI_ARM64: u16 = 11;
    /// x86-64 UEFI HTTP boot.
    pub const HTTP_X86_64: u16 = 16;
    /// arm64 UEFI HTTP boot.
    pub const HTTP_ARM64: u16 = 19;
}

/// The vendor class a client announced (option 60).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vendor {
    /// No option 60 or another vendor: a plain DHCP client (OS, udhcpc, dhclient).
    Other,
    /// `PXEClient…`: a PXE ROM (or iPXE, which keeps sending it).
    Pxe,
    /// `HTTPClient…`: UEFI HTTP boot.
    Http,
}

/// What kind of client sent a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientClass {
    /// From option 60.
    pub vendor: Vendor,
    /// Option 93, when sent.
    pub arch: Option<u16>,
    /// User class (option 77) `iPXE`: the client already runs iPXE.
    pub ipxe: bool,
}

impl ClientClass {
    /// Classifies a request.
    pub fn of(message: &Message) -> Self {
        let opts = message.opts();
        let vendor = match opts.get(OptionCode::ClassIdentifier) {
            Some(DhcpOption::ClassIdentifier(v)) if v.starts_with(b"PXEClient") => Vendor::Pxe,
            Some(DhcpOption::ClassIdentifier(v)) if v.starts_with(b"HTTPClient") => Vendor::Http,
            _ => Vendor::Other,
        };
        let arch = match opts.get(OptionCode::ClientSystemArchitecture) {
            Some(DhcpOption::ClientSystemArchitecture(a)) => Some(u16::from(*a)),
            _ => None,
        };
        // iPXE sends the bare string; RFC 3004 clients prefix each class with its length.
        let ipxe = match opts.get(OptionCode::UserClass) {
            Some(DhcpOption::UserClass(v)) => v.windows(4).any(|w| w == b"iPXE"),
            _ => false,
        };
        Self { vendor, arch, ipxe }
    }

    /// Whether the client is network booting (wants boot options).
    pub fn is_booting(&self) -> bool {
        self.ipxe || self.vendor != Vendor::Other
    }
}
