//! The boot file table: which file or URL a booting client gets (see the crate docs).

use crate::classify::{ClientClass, Vendor, arch};
use crate::mac::MacAddr;

/// The configurable file names and URLs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootFiles {
    /// BIOS (arch 0, or no option 93) PXE clients, over TFTP.
    pub bios: String,
    /// x86-64 UEFI (arch 7, 9), over TFTP.
    pub uefi_x86_64: String,
    /// arm64 UEFI (arch 11), over TFTP.
    pub uefi_arm64: String,
    /// Base of HTTP URLs (`http://host:port`), for UEFI HTTP boot clients.
    pub http_base_url: Option<String>,
    /// The iPXE script URL for clients running iPXE; `{mac}` is replaced by the client's MAC.
    pub ipxe_script_url: Option<String>,
}

impl Default for BootFiles {
    fn default() -> Self {
        Self {
            bios: "undionly.kpxe".into(),
            uefi_x86_64: "ipxe.efi".into(),
            uefi_arm64: "ipxe-arm64.efi".into(),
            http_base_url: None,
            ipxe_script_url: None,
        }
    }
}

/// What a booting client is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootChoice {
    /// `file` field (and option 67): a TFTP path or an HTTP URL.
    pub filename: String,
    /// Option 60 to send back (`PXEClient` or `HTTPClient`), if any.
    pub vendor_class: Option<&'static str>,
}

impl BootFiles {
    /// The boot file for a client, or `None` when it gets no boot options (not booting, or an
    /// architecture or HTTP URL this configuration does not have).
    pub fn choose(&self, class: &ClientClass, mac: MacAddr) -> Option<BootChoice> {
        let echo = match class.vendor {
            Vendor::Pxe => Some("PXEClient"),
            Vendor::Http => Some("HTTPClient"),
            Vendor::Other => None,
        };
        if class.ipxe {
            let url = self.ipxe_script_url.as_ref()?.replace("{mac}", &mac.to_string());
            return Some(BootChoice { filename: url, vendor_class: echo });
        }
        let filename = match (class.vendor, class.arch) {
            (Vendor::Other, _) => return None,
            (Vendor::Http, Some(arch::HTTP_X86_64)) => self.http(&self.uefi_x86_64)?,
            (Vendor::Http, Some(arch::HTTP_ARM64)) => self.http(&self.uefi_arm64)?,
            (Vendor::Http, _) => return None,
            (Vendor::Pxe, None | Some(arch::BIOS)) => self.bios.clone(),
            (Vendor::Pxe, Some(arch::UEFI_X86_64_BC | arch::UEFI_X86_64)) => self.uefi_x86_64.clone(),
            (Vendor::Pxe, Some(arch::UEFI_ARM64)) => self.uefi_arm64.clone(),
            (Vendor::Pxe, Some(_)) => return None,
        };
        Some(BootChoice { filename, vendor_class: echo })
    }

    fn http(&self, file: &str) -> Option<String> {
        let base = self.http_base_url.as_ref()?;
        Some(format!("{}/{}", base.trim_end_matches('/'), file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: MacAddr = MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]);

    fn files() -> BootFiles {
        BootFiles {
            http_base_url: Some("http://10.0.0.1:8080/".into()),
            ipxe_script_url: Some("http://10.0.0.1:8080/boot/{mac}.ipxe".into()),
            ..BootFiles::default()
        }
    }

    fn pick(vendor: Vendor, arch: Option<u16>, ipxe: bool) -> Option<BootChoice> {
        files().choose(&ClientClass { vendor, arch, ipxe }, MAC)
    }

    fn file(vendor: Vendor, arch: Option<u16>, ipxe: bool) -> Option<String> {
        pick(vendor, arch, ipxe).map(|c| c.filename)
    }

    #[test]
    fn table_matches_the_documentation() {
        assert_eq!(file(Vendor::Pxe, Some(0), false).as_deref(), Some("undionly.kpxe"));
        assert_eq!(file(Vendor::Pxe, None, false).as_deref(), Some("undionly.kpxe"));
        assert_eq!(file(Vendor::Pxe, Some(7), false).as_deref(), Some("ipxe.efi"));
        assert_eq!(file(Vendor::Pxe, Some(9), false).as_deref(), Some("ipxe.efi"));
        assert_eq!(file(Vendor::Pxe, Some(11), false).as_deref(), Some("ipxe-arm64.efi"));
        assert_eq!(file(Vendor::Pxe, Some(2), false), None);
        assert_eq!(file(Vendor::Http, Some(16), false).as_deref(), Some("http://10.0.0.1:8080/ipxe.efi"));
        assert_eq!(file(Vendor::Http, Some(19), false).as_deref(), Some("http://10.0.0.1:8080/ipxe-arm64.efi"));
        assert_eq!(file(Vendor::Http, Some(0), false), None);
        assert_eq!(
            file(Vendor::Pxe, Some(0), true).as_deref(),
            Some("http://10.0.0.1:8080/boot/52:54:00:12:34:56.ipxe")
        );
        assert_eq!(file(Vendor::Other, None, false), None);
    }

    #[test]
    fn vendor_class_is_echoed() {
        assert_eq!(pick(Vendor::Pxe, Some(0), false).and_then(|c| c.vendor_class), Some("PXEClient"));
        assert_eq!(pick(Vendor::Http, Some(16), false).and_then(|c| c.vendor_class), Some("HTTPClient"));
    }

    #[test]
    fn http_clients_need_a_base_url() {
        let files = BootFiles::default();
        let class = ClientClass { vendor: Vendor::Http, arch: Some(16), ipxe: false };
        assert_eq!(files.choose(&class, MAC), None);
        let class = ClientClass { vendor: Vendor::Pxe, arch: Some(0), ipxe: true };
        assert_eq!(files.choose(&class, MAC), None);
    }
}
