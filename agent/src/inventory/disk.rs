//! Disks, from `/sys/block/*`.

/// How a disk is attached, from where it hangs in the sysfs device tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// NVMe.
    Nvme,
    /// SATA/PATA through libata.
    Sata,
    /// SCSI or SAS host adapter (also virtio-scsi).
    Scsi,
    /// virtio-blk.
    Virtio,
    /// USB mass storage.
    Usb,
    /// SD/eMMC.
    Mmc,
    /// Xen virtual block device.
    Xen,
    /// Anything else.
    Unknown,
}

impl Transport {
    /// The item value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Nvme => "nvme",
            Self::Sata => "sata",
            Self::Scsi => "scsi",
            Self::Virtio => "virtio",
            Self::Usb => "usb",
            Self::Mmc => "mmc",
            Self::Xen => "xen",
            Self::Unknown => "unknown",
        }
    }
}

/// One disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Disk {
    /// Kernel name (`sda`, `nvme0n1`, `vda`).
    pub name: String,
    /// `size`: 512-byte sectors, whatever the logical block size.
    pub sectors: u64,
    /// `queue/rotational`.
    pub rotational: Option<bool>,
    /// `removable`.
    pub removable: Option<bool>,
    /// `device/vendor` (for NVMe and virtio, the PCI/virtio vendor id, as hardware-detect reads it).
    pub vendor: Option<String>,
    /// `device/model`.
    pub model: Option<String>,
    /// `device/rev` (key `rev`) or the fallback hardware-detect reads (key `revision`).
    pub revision: Option<(&'static str, String)>,
    /// `queue/optimal_io_size`, verbatim.
    pub optimal_io_size: Option<String>,
    /// `queue/physical_block_size`, verbatim.
    pub physical_block_size: Option<String>,
    /// `queue/nr_requests`, verbatim.
    pub nr_requests: Option<String>,
    /// The selected I/O scheduler.
    pub scheduler: Option<String>,
    /// SCSI `cache_type` (`write back`, `write through`…).
    pub cache_type: Option<String>,
    /// Serial number: `serial`, `device/serial` or SCSI VPD page 0x80.
    pub serial: Option<String>,
    /// World-wide id: `wwid` or `device/wwid`.
    pub wwid: Option<String>,
    /// Attachment.
    pub transport: Option<Transport>,
}

impl Disk {
    /// Size in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.sectors.saturating_mul(512)
    }

    /// Size in GB (10⁹ bytes, rounded down), as hardware-detect computes it.
    pub fn size_gb(&self) -> u64 {
        self.size_bytes() / 1_000_000_000
    }
}

/// Whether hardware-detect reports a block device: `sd*`, `hd*`, `vd*` and `nvme*`. Loop, RAM,
/// zram, device-mapper and md devices are views of other disks, not hardware.
pub fn is_reported_disk(name: &str) -> bool {
    let bytes = name.as_bytes();
    (bytes.len() > 2 && bytes[1] == b'd' && matches!(bytes[0], b's' | b'h' | b'v')) || name.starts_with("nvme")
}

/// `size` (512-byte sectors).
pub fn parse_sectors(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// A `0`/`1` sysfs flag.
pub fn parse_flag(text: &str) -> Option<bool> {
    match text.trim() {
        "0" => Some(false),
        "1" => Some(true),
        _ => None,
    }
}

/// The selected scheduler of `queue/scheduler` (`mq-deadline kyber [bfq] none` → `bfq`).
pub fn parse_scheduler(text: &str) -> Option<String> {
    let start = text.find('[')? + 1;
    let end = start + text[start..].find(']')?;
    Some(text[start..end].to_owned()).filter(|s| !s.is_empty())
}

/// hardware-detect's `Write Cache Enable` and `Read Cache Disable` from a SCSI `cache_type`.
pub fn cache_flags(cache_type: &str) -> (bool, bool) {
    match cache_type {
        "write through" => (false, false),
        "none" => (false, true),
        daft if daft.contains("daft") => (true, true),
        _ => (true, false),
    }
}

/// The serial number in a SCSI VPD page 0x80 (unit serial number): a 4-byte header whose last
/// two bytes are the length, then ASCII.
pub fn parse_vpd_pg80(page: &[u8]) -> Option<String> {
    if page.len() < 4 || page[1] != 0x80 {
        return None;
    }
    let length = usize::from(u16::from_be_bytes([page[2], page[3]]));
    let serial = page.get(4..4 + length).or_else(|| page.get(4..))?;
    let serial = String::from_utf8_lossy(serial);
    let serial = serial.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    (!serial.is_empty()).then(|| serial.to_owned())
}

/// The attachment of a disk from its resolved sysfs path
/// (`/sys/devices/pci0000:00/0000:00:17.0/ata3/host2/target2:0:0/2:0:0:0/block/sda`).
pub fn transport(device_path: &str, name: &str) -> Transport {
    let has = |part: &str| device_path.split('/').any(|c| c.starts_with(part));
    if has("usb") {
        Transport::Usb
    } else if name.starts_with("nvme") || has("nvme") {
        Transport::Nvme
    } else if has("ata") {
        Transport::Sata
    } else if has("host") {
        Transport::Scsi
    } else if has("virtio") {
        Transport::Virtio
    } else if has("mmc") {
        Transport::Mmc
    } else if has("vbd-") {
        Transport::Xen
    } else {
        Transport::Unknown
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn names_follow_hardware_detect() {
        for name in ["sda", "sdaa", "hda", "vda", "nvme0n1", "nvme1n1"] {
            assert!(is_reported_disk(name), "{name}");
        }
        for name in ["loop0", "ram0", "zram0", "dm-0", "md0", "sr0", "mmcblk0", "xvda", "sd"] {
            assert!(!is_reported_disk(name), "{name}");
        }
    }

    #[test]
    fn sizes_are_gb_rounded_down() {
        let disk = Disk { sectors: 536870912, ..Disk::default() };
        assert_eq!(disk.size_bytes(), 274877906944);
        assert_eq!(disk.size_gb(), 274);
        assert_eq!(parse_sectors("536870912\n"), Some(536870912));
        assert_eq!(parse_sectors("-1"), None);
    }

    #[test]
    fn scheduler_flags_and_cache() {
        assert_eq!(parse_scheduler("[mq-deadline] kyber bfq none\n").as_deref(), Some("mq-deadline"));
        assert_eq!(parse_scheduler("[none] mq-deadline").as_deref(), Some("none"));
        assert_eq!(parse_scheduler("none"), None);
        assert_eq!(parse_scheduler("[broken"), None);
        assert_eq!(parse_flag("1\n"), Some(true));
        assert_eq!(parse_flag("x"), None);
        assert_eq!(cache_flags("write back"), (true, false));
        assert_eq!(cache_flags("write through"), (false, false));
        assert_eq!(cache_flags("none"), (false, true));
        assert_eq!(cache_flags("write back, no read (daft)"), (true, true));
    }

    #[test]
    fn vpd_page_80_serial() {
        let mut page = vec![0x00, 0x80, 0x00, 0x0A];
        page.extend_from_slice(b"  S3Z9NB0K");
        assert_eq!(parse_vpd_pg80(&page).as_deref(), Some("S3Z9NB0K"));
        assert_eq!(parse_vpd_pg80(&[0, 0x83, 0, 1, b'x']), None);
        assert_eq!(parse_vpd_pg80(&[0, 0x80, 0, 50, b'A', b'B']).as_deref(), Some("AB"));
        assert_eq!(parse_vpd_pg80(&[0, 0x80]), None);
    }

    #[test]
    fn transports_from_device_paths() {
        let cases = [
            ("/sys/devices/pci0000:00/0000:00:17.0/ata3/host2/target2:0:0/2:0:0:0/block/sda", "sda", Transport::Sata),
            ("/sys/devices/pci0000:00/0000:00:1d.0/0000:3b:00.0/nvme/nvme0/nvme0n1", "nvme0n1", Transport::Nvme),
            ("/sys/devices/pci0000:00/0000:00:02.0/virtio1/block/vda", "vda", Transport::Virtio),
            (
                "/sys/devices/pci0000:00/0000:00:05.0/virtio3/host0/target0:0:0/0:0:0:0/block/sda",
                "sda",
                Transport::Scsi,
            ),
            (
                "/sys/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0/block/sdb",
                "sdb",
                Transport::Usb,
            ),
            ("/sys/devices/pci0000:00/0000:18:00.0/host0/target0:2:0/0:2:0:0/block/sda", "sda", Transport::Scsi),
            ("/sys/devices/virtual/block/loop0", "loop0", Transport::Unknown),
        ];
        for (path, name, expected) in cases {
            assert_eq!(transport(path, name), expected, "{path}");
        }
    }
}
