#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic
//! The `machinist-agent` binary in install mode against the real boot-services HTTP server
//! (machinist-boot's router, in-memory machines holding an install plan), writing to a file
//! that stands for the target disk (`--dev-root`):
//!
//! - a gzip-compressed image lands on the disk byte for byte, the phases are reported in
//!   order, the agent exits 0;
//! - an image the server does not have fails the install: `Failed` with the reason, the log
//!   uploaded, exit code 1;
//! - an image server that never answers is retried, then the install fails (the library, with
//!   a short backoff).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use machinist_agent::backoff::Backoff;
use machinist_agent::install::{self, InstallError};
use machinist_agent::sidecar::{SendError, Sidecar};
use machinist_agent_protocol::cmdline::{Args, Mode, OnSuccess};
use machinist_agent_protocol::install::{InstallPhase, InstallPlan};
use machinist_boot::machines::{BootRecord, InMemoryMachines, InstallView, MachineSource as _};
use machinist_crds::machine::{InstallStatus, MachinePhase};
use machinist_e2e::boot_http::BootHttp;
use serde_json::json;
use sha2::Digest as _;

const TOKEN: &str = "agent-token";
const PHONE_HOME: &str = "phone-home-token";

fn args(address: SocketAddr) -> Args {
    Args {
        url: format!("http://{address}"),
        machine: "vm-1".into(),
        token: TOKEN.into(),
        mac: "52:54:00:ab:00:01".into(),
        mode: Mode::Install,
        on_success: OnSuccess::Halt,
        debug: false,
        role: None,
    }
}

/// The boot services serving `artifacts`, with machine vm-1 Provisioning `image_url`.
fn boot_services(
    artifacts: &Path,
    image_url: impl FnOnce(SocketAddr) -> String,
    sha256: &str,
    compression: &str,
) -> BootHttp {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let machines = InMemoryMachines::new();
    let record = BootRecord {
        name: "vm-1".into(),
        boot_target: None,
        boot_menu: None,
        token: TOKEN.into(),
        on_success: OnSuccess::Halt,
        debug: false,
        installed: false,
    };
    machines.insert("52:54:00:ab:00:01".parse().unwrap(), record);
    let plan: InstallPlan = serde_json::from_value(json!({
        "role": {"name": "base", "version": "1"},
        "image": {"url": image_url(address), "sha256": sha256, "format": "raw", "compression": compression},
        "targetDisk": "/dev/vda",
    }))
    .unwrap();
    let install = InstallStatus { attempt: 1, plan, retry: None, started_time: None };
    let view = InstallView {
        phase: Some(MachinePhase::Provisioning),
        install: Some(install),
        progress: None,
        variables: Default::default(),
        templates: None,
        namespace: "default".into(),
    };
    machines.set_install("vm-1", view, PHONE_HOME);
    BootHttp::start(listener, machines, Some(artifacts)).unwrap()
}

/// What vm-1 reported of its install last.
fn progress(services: &BootHttp) -> Option<(i32, InstallPhase, i64, String)> {
    let view = services.machines.install("vm-1")?;
    view.progress.map(|p| (p.attempt, p.phase, p.bytes_written, p.message))
}

fn image() -> Vec<u8> {
    (0..2 * 1024 * 1024 + 99).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 23) as u8).collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn hex_sha256(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs the binary in install mode; its exit status and what it printed.
fn agent(dir: &Path, address: SocketAddr) -> (std::process::ExitStatus, String) {
    let cmdline = dir.join("cmdline");
    std::fs::write(&cmdline, args(address).to_words().join(" ")).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_machinist-agent"))
        .args(["--cmdline", cmdline.to_str().unwrap(), "--no-network", "--no-power"])
        .args(["--dev-root", dir.join("dev").to_str().unwrap()])
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status, text)
}

fn disk(dir: &Path, size: u64) {
    std::fs::create_dir_all(dir.join("dev")).unwrap();
    std::fs::File::create(dir.join("dev/vda")).unwrap().set_len(size).unwrap();
}

#[test]
fn the_binary_streams_a_gzip_image_to_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let artifacts = dir.path().join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let raw = image();
    let compressed = gzip(&raw);
    std::fs::write(artifacts.join("base.raw.gz"), &compressed).unwrap();
    let url = |address: SocketAddr| format!("http://{address}/artifacts/base.raw.gz");
    let services = boot_services(&artifacts, url, &hex_sha256(&compressed), "gzip");
    disk(dir.path(), 4 << 20);

    let (status, output) = agent(dir.path(), services.address);
    assert!(status.success(), "{output}");
    let written = std::fs::read(dir.path().join("dev/vda")).unwrap();
    assert_eq!(&written[..raw.len()], raw.as_slice());
    let (attempt, phase, bytes, _) = progress(&services).unwrap();
    assert_eq!((attempt, phase, bytes), (1, InstallPhase::Succeeded, raw.len() as i64));
    assert_eq!(services.machines.log("vm-1"), None, "no log upload when it worked");
}

#[test]
fn a_missing_image_fails_the_install_with_its_reason_and_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let artifacts = dir.path().join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let url = |address: SocketAddr| format!("http://{address}/artifacts/missing.raw");
    let services = boot_services(&artifacts, url, &"0".repeat(64), "none");
    disk(dir.path(), 1 << 20);

    let (status, output) = agent(dir.path(), services.address);
    assert_eq!(status.code(), Some(1), "{output}");
    let (_, phase, _, message) = progress(&services).unwrap();
    assert_eq!(phase, InstallPhase::Failed);
    assert!(message.contains("404") && message.contains("missing.raw"), "{message}");
    let log = services.machines.log("vm-1").expect("the log is uploaded");
    assert!(log.contains("failed to download the image"), "{log}");
}

#[test]
fn an_image_server_that_never_answers_is_retried_then_the_install_fails() {
    let dir = tempfile::tempdir().unwrap();
    let artifacts = dir.path().join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let url = move |_: SocketAddr| format!("http://{closed}/image.raw");
    let services = boot_services(&artifacts, url, &"0".repeat(64), "none");
    disk(dir.path(), 1 << 20);
    let quick = Backoff { base: Duration::from_millis(20), cap: Duration::from_millis(100), attempts: 5 };
    let sidecar = Sidecar::new(&args(services.address), quick);
    let error = install::install(&sidecar, &dir.path().join("dev"), 3).unwrap_err();
    assert!(matches!(error, InstallError::Download(SendError::GaveUp { attempts: 3, .. })), "{error}");
    let (_, phase, _, message) = progress(&services).unwrap();
    assert_eq!(phase, InstallPhase::Failed);
    assert!(message.contains("gave up") && message.contains("3 attempts"), "{message}");
    // The disk was opened but nothing was written.
    assert!(std::fs::read(dir.path().join("dev/vda")).unwrap().iter().all(|b| *b == 0));
}
