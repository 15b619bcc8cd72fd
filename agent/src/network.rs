//! Bringing up the interface the machine booted from: found by the MAC on the kernel command
//! line, configured by busybox's `udhcpc` with the RAM disk's default script (address, route,
//! resolver). The pure part picks the interface from `/sys/class/net`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Bringing the network up failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NetworkError(pub String);

/// The interface under `sys_class_net` whose `address` is `mac` (case-insensitive).
pub fn interface_with_mac(sys_class_net: &Path, mac: &str) -> Option<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(sys_class_net).ok()?.filter_map(|entry| entry.ok()?.file_name().into_string().ok()).collect();
    names.sort();
    names.into_iter().find(|name| {
        std::fs::read_to_string(sys_class_net.join(name).join("address"))
            .is_ok_and(|address| address.trim().eq_ignore_ascii_case(mac))
    })
}

/// Waits (up to `timeout`: drivers are still probing right after boot) for the interface
/// with `mac`, then brings it up and runs DHCP on it. Returns the interface's name.
pub fn bring_up(mac: &str, timeout: Duration) -> Result<String, NetworkError> {
    let deadline = Instant::now() + timeout;
    let interface = loop {
        if let Some(name) = interface_with_mac(Path::new("/sys/class/net"), mac) {
            break name;
        }
        if Instant::now() > deadline {
            return Err(NetworkError(format!("no network interface with MAC {mac} appeared within {timeout:?}")));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    run(&["ip", "link", "set", "dev", &interface, "up"])?;
    run(&["udhcpc", "-i", &interface, "-n", "-q", "-t", "10", "-T", "2", "-s", "/usr/share/udhcpc/default.script"])?;
    Ok(interface)
}

fn run(args: &[&str]) -> Result<(), NetworkError> {
    let output = Command::new("busybox")
        .args(args)
        .output()
        .map_err(|e| NetworkError(format!("busybox {}: {e}", args.join(" "))))?;
    if output.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(NetworkError(format!("busybox {} failed: {}", args.join(" "), stderr.trim())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_boot_interface_is_found_by_its_mac() {
        let dir = tempfile::tempdir().unwrap();
        for (name, mac) in
            [("lo", "00:00:00:00:00:00"), ("enp1s0", "52:54:00:ab:00:01"), ("enp2s0", "52:54:00:ab:00:02")]
        {
            std::fs::create_dir(dir.path().join(name)).unwrap();
            std::fs::write(dir.path().join(name).join("address"), format!("{mac}\n")).unwrap();
        }
        assert_eq!(interface_with_mac(dir.path(), "52:54:00:AB:00:02").as_deref(), Some("enp2s0"));
        assert_eq!(interface_with_mac(dir.path(), "52:54:00:ab:00:09"), None);
        assert_eq!(interface_with_mac(&dir.path().join("missing"), "52:54:00:ab:00:01"), None);
    }
}
