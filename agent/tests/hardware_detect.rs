//! Differential test: our inventory of this machine against the real `hardware-detect`
//! (eDeploy's `hardware` 0.33 in the workspace's `.venv`, which needs `lshw`).
//!
//! Every item we emit must be emitted by hardware-detect with the same value, and every item
//! hardware-detect emits in the classes we cover must be emitted by us — except the known
//! differences of [`DIFFERENCES`], which mirrors `docs/hardware-items.md`.
//!
//! Prerequisites follow `machinist_e2e::prereq`: skipped under `MACHINIST_E2E=auto` (default)
//! when `.venv/bin/hardware-detect` or `lshw` is missing, a failure under `require`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use machinist_agent::{Inventory, to_items};

/// Who emits a key the other does not, or why the values differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Difference {
    /// Only machinist emits it.
    OursOnly,
    /// Only hardware-detect emits it (we do not collect that fact).
    TheirsOnly,
}

/// Known differences: (class, type — `*` for any, name — a trailing `*` for a prefix, kind, why).
const DIFFERENCES: &[(&str, &str, &str, Difference, &str)] = &[
    ("firmware", "boot", "mode", Difference::OursOnly, "UEFI or BIOS boot, from /sys/firmware/efi"),
    ("disk", "*", "size_bytes", Difference::OursOnly, "exact size; hardware-detect rounds to GB"),
    ("disk", "*", "serial", Difference::OursOnly, "sysfs serial; hardware-detect needs smartctl (SMART/serial_number)"),
    ("disk", "*", "wwid", Difference::OursOnly, "sysfs wwid"),
    ("disk", "*", "transport", Difference::OursOnly, "nvme/sata/scsi/virtio/usb from the sysfs path"),
    ("network", "*", "master", Difference::OursOnly, "bond or bridge of the port"),
    ("pci", "*", "*", Difference::OursOnly, "PCI ids; hardware-detect has only lshw's names for NICs"),
    ("disk", "*", "SMART/*", Difference::TheirsOnly, "smartctl output"),
    ("disk", "*", "id", Difference::TheirsOnly, "/dev/disk/by-id names (udev)"),
    ("disk", "*", "wwn-id", Difference::TheirsOnly, "/dev/disk/by-id names (udev)"),
    ("disk", "*", "scsi-id", Difference::TheirsOnly, "/dev/disk/by-id names (udev)"),
    ("cpu", "*", "l1d cache", Difference::TheirsOnly, "lscpu cache summary"),
    ("cpu", "*", "l1i cache", Difference::TheirsOnly, "lscpu cache summary"),
    ("cpu", "*", "l2 cache", Difference::TheirsOnly, "lscpu cache summary"),
    ("cpu", "*", "l3 cache", Difference::TheirsOnly, "lscpu cache summary"),
    ("cpu", "*", "min_Mhz", Difference::TheirsOnly, "cpufreq limits through lscpu"),
    ("cpu", "*", "max_Mhz", Difference::TheirsOnly, "cpufreq limits through lscpu"),
    ("cpu", "*", "current_Mhz", Difference::TheirsOnly, "a momentary value (older lscpu only)"),
    ("cpu", "*", "boost", Difference::TheirsOnly, "cpufreq boost"),
    ("cpu", "*", "governor", Difference::TheirsOnly, "cpufreq governor per logical CPU"),
    ("memory", "*", "description", Difference::TheirsOnly, "lshw's prose (`DIMM DDR4 Synchronous 2666 MHz (0.4 ns)`)"),
    ("network", "*", "vendor", Difference::TheirsOnly, "pci.ids names through lshw"),
    ("network", "*", "product", Difference::TheirsOnly, "pci.ids names through lshw"),
    ("network", "*", "firmware", Difference::TheirsOnly, "ethtool driver info through lshw"),
    ("network", "*", "latency", Difference::TheirsOnly, "PCI latency timer through lshw"),
    ("network", "*", "autonegotiation", Difference::TheirsOnly, "ethtool link settings"),
    // Everything else hardware-detect puts under a NIC comes from `ethtool -k`/`-a`.
    ("network", "*", "*", Difference::TheirsOnly, "ethtool -k/-a offload and pause settings"),
];

/// hardware-detect names that are ethtool `-k`/`-a` features rather than lshw facts: anything
/// that is not one of the lshw/hardware-detect network names we reproduce.
const NETWORK_NAMES_WE_MATCH: &[&str] = &[
    "businfo",
    "ipv4",
    "ipv4-netmask",
    "ipv4-cidr",
    "ipv4-network",
    "link",
    "driver",
    "duplex",
    "speed",
    "size",
    "serial",
];

/// Classes we cover; hardware-detect's others (`system os`, `hw auxv`, `numa`, `lldp`,
/// `ipmi`…) are out of scope of the inventory.
const CLASSES: &[&str] = &["system", "firmware", "cpu", "memory", "disk", "network"];
/// System types we cover (`os`, `kernel`, `rtc` are software, not hardware).
const SYSTEM_TYPES: &[&str] = &["product", "motherboard"];

fn matches(pattern: &str, value: &str) -> bool {
    match pattern {
        "*" => true,
        _ => match pattern.strip_suffix('*') {
            Some(prefix) => value.starts_with(prefix),
            None => pattern == value,
        },
    }
}

fn known(class: &str, r#type: &str, name: &str, kind: Difference) -> bool {
    if kind == Difference::TheirsOnly && class == "network" && NETWORK_NAMES_WE_MATCH.contains(&name) {
        return false;
    }
    DIFFERENCES.iter().any(|&(c, t, n, k, _)| k == kind && c == class && matches(t, r#type) && matches(n, name))
}

type Key = (String, String, String);

fn hardware_detect() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/hardware-detect")
}

fn theirs(program: &Path) -> BTreeMap<Key, Vec<String>> {
    let output = Command::new(program).output().expect("run hardware-detect");
    assert!(output.status.success(), "hardware-detect failed: {}", String::from_utf8_lossy(&output.stderr));
    let items: Vec<Vec<serde_json::Value>> = serde_json::from_slice(&output.stdout).expect("hardware-detect JSON");
    let mut map: BTreeMap<Key, Vec<String>> = BTreeMap::new();
    for item in items {
        let text = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let [class, r#type, name, value] = <[serde_json::Value; 4]>::try_from(item).expect("four elements");
        map.entry((text(&class), text(&r#type), text(&name))).or_default().push(text(&value));
    }
    map
}

#[test]
fn items_agree_with_hardware_detect_on_this_machine() -> Result<(), String> {
    let program = hardware_detect();
    let program_name = program.to_string_lossy().into_owned();
    if !machinist_e2e::prereq::need_programs("hardware_detect", &[&program_name, "lshw"])? {
        return Ok(());
    }
    let theirs = theirs(&program);
    let ours = to_items(&Inventory::collect(Path::new("/")).expect("inventory of /"));
    let mut problems = Vec::new();
    let mut agreed = 0;

    for item in &ours {
        let key = (item.class.clone(), item.r#type.clone(), item.name.clone());
        if known(&item.class, &item.r#type, &item.name, Difference::OursOnly) {
            continue;
        }
        match theirs.get(&key) {
            Some(values) if values.contains(&item.value) => agreed += 1,
            Some(values) => problems.push(format!("{item}: hardware-detect says {values:?}")),
            None => problems.push(format!("{item}: hardware-detect does not emit it")),
        }
    }
    let our_keys: Vec<Key> = ours.iter().map(|q| (q.class.clone(), q.r#type.clone(), q.name.clone())).collect();
    for ((class, r#type, name), values) in &theirs {
        let covered =
            CLASSES.contains(&class.as_str()) && (class != "system" || SYSTEM_TYPES.contains(&r#type.as_str()));
        if !covered || known(class, r#type, name, Difference::TheirsOnly) {
            continue;
        }
        if !our_keys.contains(&(class.clone(), r#type.clone(), name.clone())) {
            problems
                .push(format!("({class}, {type}, {name}, {values:?}): only hardware-detect emits it", type = r#type));
        }
    }
    eprintln!("{agreed} items agree with hardware-detect");
    assert!(agreed > 10, "suspiciously few items in common ({agreed})");
    assert!(problems.is_empty(), "differences not in the table:\n{}", problems.join("\n"));
    Ok(())
}

#[test]
fn difference_patterns() {
    assert!(known("disk", "sda", "SMART/health", Difference::TheirsOnly));
    assert!(known("network", "eth0", "tx-checksumming/tx-checksum-ipv4", Difference::TheirsOnly));
    assert!(!known("network", "eth0", "ipv4-cidr", Difference::TheirsOnly));
    assert!(!known("network", "eth0", "serial", Difference::TheirsOnly));
    assert!(known("pci", "0000:00:03.0", "vendor", Difference::OursOnly));
    assert!(!known("disk", "sda", "size", Difference::OursOnly));
}
