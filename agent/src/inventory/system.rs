//! The system's identity: DMI strings (`/sys/class/dmi/id/*`) and the firmware type.

/// DMI identity strings, as the kernel exposes them in `/sys/class/dmi/id/`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dmi {
    /// `sys_vendor`.
    pub sys_vendor: Option<String>,
    /// `product_name`.
    pub product_name: Option<String>,
    /// `product_version`.
    pub product_version: Option<String>,
    /// `product_serial` (readable by root only).
    pub product_serial: Option<String>,
    /// `product_uuid` (readable by root only), lower case as the kernel prints it.
    pub product_uuid: Option<String>,
    /// `product_sku`: lshw appends it to the product name.
    pub product_sku: Option<String>,
    /// `board_vendor`.
    pub board_vendor: Option<String>,
    /// `board_name`.
    pub board_name: Option<String>,
    /// `board_version`.
    pub board_version: Option<String>,
    /// `board_serial`.
    pub board_serial: Option<String>,
    /// `bios_vendor`.
    pub bios_vendor: Option<String>,
    /// `bios_version`.
    pub bios_version: Option<String>,
    /// `bios_date`, verbatim (`04/01/2014`).
    pub bios_date: Option<String>,
}

/// The DMI attribute files [`Dmi::from_lookup`] asks for, in `/sys/class/dmi/id/`.
pub const DMI_FILES: [&str; 13] = [
    "sys_vendor",
    "product_name",
    "product_version",
    "product_serial",
    "product_uuid",
    "product_sku",
    "board_vendor",
    "board_name",
    "board_version",
    "board_serial",
    "bios_vendor",
    "bios_version",
    "bios_date",
];

impl Dmi {
    /// Builds the identity from a lookup of raw attribute contents by file name (pure: the
    /// caller decides where the contents come from).
    pub fn from_lookup(mut lookup: impl FnMut(&str) -> Option<String>) -> Self {
        let mut get = |file: &str| lookup(file).as_deref().and_then(clean_dmi_string);
        Self {
            sys_vendor: get("sys_vendor"),
            product_name: get("product_name"),
            product_version: get("product_version"),
            product_serial: get("product_serial"),
            product_uuid: get("product_uuid"),
            product_sku: get("product_sku"),
            board_vendor: get("board_vendor"),
            board_name: get("board_name"),
            board_version: get("board_version"),
            board_serial: get("board_serial"),
            bios_vendor: get("bios_vendor"),
            bios_version: get("bios_version"),
            bios_date: get("bios_date"),
        }
    }

    /// Whether the machine has DMI at all (VMs without SMBIOS, most ARM boards do not).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Trims a DMI string (firmware pads with spaces and NULs); an empty one is absent.
pub fn clean_dmi_string(raw: &str) -> Option<String> {
    let value = raw.lines().next().unwrap_or_default().trim_matches(|c: char| c.is_whitespace() || c == '\0');
    (!value.is_empty()).then(|| value.to_owned())
}

/// How the machine booted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// UEFI (`/sys/firmware/efi` exists).
    Uefi,
    /// Legacy BIOS boot (or a firmware the kernel did not expose as EFI).
    Bios,
}

impl Firmware {
    /// From whether `/sys/firmware/efi` exists.
    pub fn from_efi_dir(efi_dir_exists: bool) -> Self {
        if efi_dir_exists { Self::Uefi } else { Self::Bios }
    }

    /// The item value: `uefi` or `bios`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Uefi => "uefi",
            Self::Bios => "bios",
        }
    }
}

/// The system part of the inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct System {
    /// DMI identity.
    pub dmi: Dmi,
    /// Boot firmware type.
    pub firmware: Firmware,
    /// CPU architecture (`/proc/sys/kernel/arch`: `x86_64`, `aarch64`).
    pub arch: Option<String>,
}

impl Default for System {
    fn default() -> Self {
        Self { dmi: Dmi::default(), firmware: Firmware::Bios, arch: None }
    }
}

/// The product name as lshw (so hardware-detect) reports it: `name (sku)` when there is a SKU.
pub fn lshw_product_name(dmi: &Dmi) -> Option<String> {
    let name = dmi.product_name.as_deref()?;
    Some(match dmi.product_sku.as_deref() {
        Some(sku) => format!("{name} ({sku})"),
        None => name.to_owned(),
    })
}

/// The UUID as dmidecode prints it (upper case), which is what hardware-detect reports.
pub fn dmidecode_uuid(dmi: &Dmi) -> Option<String> {
    dmi.product_uuid.as_deref().map(str::to_uppercase)
}

/// Serial numbers TYAN and Supermicro boards ship instead of a real one; hardware-detect
/// replaces them (by the UUID, the board serial, then the first MAC).
pub fn is_placeholder_serial(serial: &str) -> bool {
    matches!(serial, "0123456789" | "0000000000")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn dmi(files: &[(&str, &str)]) -> Dmi {
        Dmi::from_lookup(|name| files.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned()))
    }

    #[test]
    fn strings_are_trimmed_and_empty_ones_dropped() {
        let d = dmi(&[("sys_vendor", "QEMU\n"), ("product_name", "  \n"), ("bios_date", "04/01/2014 \0\n")]);
        assert_eq!(d.sys_vendor.as_deref(), Some("QEMU"));
        assert_eq!(d.product_name, None);
        assert_eq!(d.bios_date.as_deref(), Some("04/01/2014"));
        assert!(!d.is_empty());
        assert!(dmi(&[]).is_empty());
    }

    #[test]
    fn product_name_carries_the_sku_like_lshw() {
        let d = dmi(&[("product_name", "ProLiant DL360 Gen9"), ("product_sku", "755258-B21")]);
        assert_eq!(lshw_product_name(&d).as_deref(), Some("ProLiant DL360 Gen9 (755258-B21)"));
        let d = dmi(&[("product_name", "Standard PC (Q35 + ICH9, 2009)")]);
        assert_eq!(lshw_product_name(&d).as_deref(), Some("Standard PC (Q35 + ICH9, 2009)"));
    }

    #[test]
    fn uuid_is_upper_case_and_placeholders_are_known() {
        let d = dmi(&[("product_uuid", "4c4c4544-0038-3010-8048-b4c04f4d4232")]);
        assert_eq!(dmidecode_uuid(&d).as_deref(), Some("4C4C4544-0038-3010-8048-B4C04F4D4232"));
        assert!(is_placeholder_serial("0123456789"));
        assert!(!is_placeholder_serial("CZ1234"));
        assert_eq!(Firmware::from_efi_dir(true).as_str(), "uefi");
        assert_eq!(Firmware::from_efi_dir(false).as_str(), "bios");
    }
}
