//! Names of a Machine's libvirt objects and its generated MAC address.
//!
//! A domain is `<namespace>_<name>`: `_` never occurs in a Kubernetes name, so two Machines
//! never share a domain name. Long names keep a readable prefix and a hash of the whole.

use sha2::{Digest, Sha256};

/// Longest domain name written whole; longer ones are shortened with a hash.
const MAX_PLAIN: usize = 100;
/// Characters of a long Machine name kept before the hash.
const KEPT: usize = 70;

/// The libvirt domain name of Machine `name` in `namespace`.
pub fn domain_name(namespace: &str, name: &str) -> String {
    let plain = format!("{namespace}_{name}");
    if plain.len() <= MAX_PLAIN {
        return plain;
    }
    let digest = Sha256::digest(format!("{namespace}/{name}").as_bytes());
    let kept: String = name.chars().take(KEPT).collect();
    format!("{namespace}_{kept}-{}", hex(&digest[..4]))
}

/// The volume holding the disk of domain `domain`, with the extension of its format.
pub fn volume_name(domain: &str, qcow2: bool) -> String {
    format!("{domain}.{}", if qcow2 { "qcow2" } else { "img" })
}

/// Where the serial console of domain `domain` is logged in `dir`.
pub fn console_log(dir: &str, domain: &str) -> String {
    format!("{}/{domain}-serial.log", dir.trim_end_matches('/'))
}

/// The `attempt`-th candidate MAC of the Machine with uid `uid`: QEMU's `52:54` prefix (locally
/// administered, unicast) and four bytes of `sha256(uid ‖ attempt)`. The caller moves to the
/// next attempt while a candidate is taken by another Machine.
pub fn generated_mac(uid: &str, attempt: u32) -> String {
    let mut hasher = Sha256::new();
    hasher.update(uid.as_bytes());
    hasher.update(attempt.to_be_bytes());
    let digest = hasher.finalize();
    format!("52:54:{:02x}:{:02x}:{:02x}:{:02x}", digest[0], digest[1], digest[2], digest[3])
}

/// The first candidate MAC of `uid` that `taken` does not hold (compared case-insensitively).
pub fn free_mac(uid: &str, taken: impl Fn(&str) -> bool) -> String {
    (0..)
        .map(|attempt| generated_mac(uid, attempt))
        .find(|mac| !taken(mac))
        .unwrap_or_else(|| generated_mac(uid, u32::MAX))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_namespace_underscore_name() {
        assert_eq!(domain_name("api", "api-01"), "api_api-01");
        assert_ne!(domain_name("a-b", "c"), domain_name("a", "b-c"));
    }

    #[test]
    fn long_names_keep_a_prefix_and_stay_distinct() {
        let long = "x".repeat(200);
        let other = format!("{}y", "x".repeat(199));
        let (a, b) = (domain_name("default", &long), domain_name("default", &other));
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("default_{}", "x".repeat(70))));
        assert_eq!(a.len(), "default_".len() + 70 + 1 + 8);
        assert_eq!(domain_name("default", &long), a, "stable");
    }

    #[test]
    fn macs_are_stable_local_unicast_and_move_past_taken_ones() {
        let mac = generated_mac("uid-1", 0);
        assert_eq!(mac, generated_mac("uid-1", 0));
        assert_ne!(mac, generated_mac("uid-2", 0));
        assert!(mac.starts_with("52:54:"));
        assert_eq!(mac.len(), 17);
        let first = free_mac("uid-1", |_| false);
        assert_eq!(first, mac);
        let second = free_mac("uid-1", |m| m == mac);
        assert_eq!(second, generated_mac("uid-1", 1));
    }

    #[test]
    fn volume_and_log_names() {
        assert_eq!(volume_name("api_api-01", true), "api_api-01.qcow2");
        assert_eq!(volume_name("api_api-01", false), "api_api-01.img");
        assert_eq!(console_log("/var/log/libvirt/qemu/", "api_api-01"), "/var/log/libvirt/qemu/api_api-01-serial.log");
    }
}
