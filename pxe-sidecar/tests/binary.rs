#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic
//! The `machinist-boot` binary: configuration checks at its edge.

use std::process::Command;

fn machinist_boot(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_machinist-boot")).args(args).output().unwrap()
}

#[test]
fn configurations_are_checked_with_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        "dhcp:\n  interfaces: [br0]\n  serverAddress: 10.0.0.1\n  dynamicRange: {start: 10.0.0.100, end: 10.0.0.150, netmask: 255.255.255.0}\nhttp:\n  publicUrl: http://10.0.0.1:8080\n  ramdisk: {kernel: vmlinuz, initrd: initrd.gz}\n",
    )
    .unwrap();
    let output = machinist_boot(&["--check", "--config", good.to_str().unwrap()]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    for (body, expected) in [
        ("dhcp: {interfaces: [br0]}\n", "serverAddress is required"),
        ("dhcp: {interfaces: [br0], serverAddress: 10.0.0.300}\n", "not an IPv4 address"),
        ("http: {publicUrl: 'ftp://x', ramdisk: {kernel: k, initrd: i}}\n", "publicUrl"),
        ("tftp: {root: /srv, windowSize: 8}\n", "windowSize"),
        ("- not a mapping\n", "bad.yaml"),
    ] {
        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, body).unwrap();
        let output = machinist_boot(&["--check", "--config", bad.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{body} was accepted");
        assert!(stderr.contains(expected), "{body}: {stderr}");
    }
    let missing = machinist_boot(&["--check", "--config", "/nonexistent/boot.yaml"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("failed to read /nonexistent/boot.yaml"));
}
