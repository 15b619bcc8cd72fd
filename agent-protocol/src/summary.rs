//! The typed digest of a report (`status.hardware.summary`), computed from its items alone so
//! that it works the same for machinist's agent and for the real hardware-detect.

pub use machinist_crds::machine::{DiskSummary, HardwareSummary, NicSummary};

use crate::report::Quad;

/// Digests items into a [`HardwareSummary`]. Unknown or malformed values are left out (or 0):
/// a report is data from the machine, not something to trust.
pub fn summarize(items: &[Quad]) -> HardwareSummary {
    let get = |class: &str, r#type: &str, name: &str| {
        items.iter().find(|q| q.class == class && q.r#type == r#type && q.name == name).map(|q| q.value.clone())
    };
    let number =
        |class: &str, r#type: &str, name: &str| get(class, r#type, name).and_then(|v| v.trim().parse::<i64>().ok());
    let int = |value: Option<i64>| value.and_then(|v| i32::try_from(v).ok()).unwrap_or_default();

    let sockets = number("cpu", "physical", "number");
    // hardware-detect gives cores per socket, under physical_0, physical_1…
    let cores = items
        .iter()
        .filter(|q| q.class == "cpu" && q.r#type.starts_with("physical_") && q.name == "cores")
        .filter_map(|q| q.value.trim().parse::<i64>().ok())
        .fold(0i64, i64::saturating_add);

    HardwareSummary {
        vendor: get("system", "product", "vendor"),
        product: get("system", "product", "name"),
        serial: get("system", "product", "serial"),
        uuid: get("system", "product", "uuid"),
        cpu_model: get("cpu", "physical_0", "product"),
        sockets: int(sockets),
        cores: int(Some(cores)),
        threads: int(number("cpu", "logical", "number")),
        memory_mib: number("memory", "total", "size").map(|b| b / (1024 * 1024)).unwrap_or_default(),
        disks: disks(items),
        nics: nics(items),
    }
}

/// Names of a class's instances, in order of first appearance, `logical` and the like excluded.
fn instances<'a>(items: &'a [Quad], class: &str, attribute: &str) -> Vec<&'a str> {
    let mut names: Vec<&str> = Vec::new();
    for q in items.iter().filter(|q| q.class == class && q.name == attribute) {
        if !names.contains(&q.r#type.as_str()) {
            names.push(&q.r#type);
        }
    }
    names
}

fn value<'a>(items: &'a [Quad], class: &str, r#type: &str, name: &str) -> Option<&'a str> {
    items.iter().find(|q| q.class == class && q.r#type == r#type && q.name == name).map(|q| q.value.as_str())
}

fn disks(items: &[Quad]) -> Vec<DiskSummary> {
    instances(items, "disk", "size")
        .into_iter()
        .filter(|name| *name != "logical")
        .filter_map(|name| {
            // Our exact size when present, else hardware-detect's whole GB.
            let size_bytes = match value(items, "disk", name, "size_bytes").and_then(|v| v.parse::<i64>().ok()) {
                Some(bytes) => bytes,
                None => value(items, "disk", name, "size")?.parse::<i64>().ok()?.checked_mul(1_000_000_000)?,
            };
            Some(DiskSummary {
                name: name.to_owned(),
                size_bytes,
                rotational: value(items, "disk", name, "rotational") == Some("1"),
            })
        })
        .collect()
}

fn nics(items: &[Quad]) -> Vec<NicSummary> {
    instances(items, "network", "serial")
        .into_iter()
        .filter_map(|name| {
            let mac = value(items, "network", name, "serial")?.to_owned();
            let link_up = value(items, "network", name, "link") != Some("no");
            let speed_mbps = value(items, "network", name, "speed")
                .filter(|_| link_up)
                .and_then(crate::speed::parse)
                .and_then(|s| i32::try_from(s).ok());
            Some(NicSummary { name: name.to_owned(), mac, speed_mbps })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn q(class: &str, r#type: &str, name: &str, value: &str) -> Quad {
        Quad::new(class, r#type, name, value)
    }

    #[test]
    fn digest_of_real_hardware_detect_items() {
        let items = vec![
            q("disk", "logical", "count", "2"),
            q("disk", "sda", "size", "480"),
            q("disk", "sda", "rotational", "0"),
            q("disk", "sdb", "size", "4000"),
            q("disk", "sdb", "rotational", "1"),
            q("system", "product", "name", "ProLiant DL360 Gen9 (755258-B21)"),
            q("system", "product", "vendor", "HP"),
            q("system", "product", "serial", "CZJ1234"),
            q("system", "product", "uuid", "30393137-3136-5A43-4A35-303430304638"),
            q("memory", "total", "size", "137438953472"),
            q("network", "eno1", "serial", "94:18:82:01:02:03"),
            q("network", "eno1", "link", "yes"),
            q("network", "eno1", "speed", "1Gbit/s"),
            q("network", "eno2", "serial", "94:18:82:01:02:04"),
            q("network", "eno2", "link", "no"),
            q("network", "eno2", "speed", "1Gbit/s"),
            q("cpu", "physical", "number", "2"),
            q("cpu", "physical_0", "product", "Intel(R) Xeon(R) CPU E5-2630 v3 @ 2.40GHz"),
            q("cpu", "physical_0", "cores", "8"),
            q("cpu", "physical_1", "cores", "8"),
            q("cpu", "logical", "number", "32"),
        ];
        let summary = summarize(&items);
        assert_eq!(summary.vendor.as_deref(), Some("HP"));
        assert_eq!(summary.product.as_deref(), Some("ProLiant DL360 Gen9 (755258-B21)"));
        assert_eq!(summary.serial.as_deref(), Some("CZJ1234"));
        assert_eq!((summary.sockets, summary.cores, summary.threads), (2, 16, 32));
        assert_eq!(summary.memory_mib, 131072);
        assert_eq!(summary.cpu_model.as_deref(), Some("Intel(R) Xeon(R) CPU E5-2630 v3 @ 2.40GHz"));
        assert_eq!(
            summary.disks,
            vec![
                DiskSummary { name: "sda".into(), size_bytes: 480_000_000_000, rotational: false },
                DiskSummary { name: "sdb".into(), size_bytes: 4_000_000_000_000, rotational: true },
            ]
        );
        assert_eq!(
            summary.nics,
            vec![
                NicSummary { name: "eno1".into(), mac: "94:18:82:01:02:03".into(), speed_mbps: Some(1000) },
                NicSummary { name: "eno2".into(), mac: "94:18:82:01:02:04".into(), speed_mbps: None },
            ]
        );
    }

    #[test]
    fn exact_sizes_win_and_garbage_is_ignored() {
        let items = vec![
            q("disk", "vda", "size", "274"),
            q("disk", "vda", "size_bytes", "274877906944"),
            q("disk", "vdb", "size", "huge"),
            q("cpu", "physical", "number", "99999999999"),
            q("memory", "total", "size", "-"),
        ];
        let summary = summarize(&items);
        assert_eq!(summary.disks.len(), 1);
        assert_eq!(summary.disks[0].size_bytes, 274877906944);
        assert_eq!(summary.sockets, 0);
        assert_eq!(summary.memory_mib, 0);
        assert_eq!(summarize(&[]), HardwareSummary::default());
    }
}
