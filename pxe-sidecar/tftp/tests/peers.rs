#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic
//! The TFTP server against real peers on loopback: the tftp-hpa client (`tftp`, RFC 1350 only)
//! and atftp (`atftp`, with blksize, tsize and windowsize), plus the confinement rules seen
//! from the wire. Tests needing a client skip without it, and fail under
//! `MACHINIST_E2E=require`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use machinist_boot_tftp::{ClientArch, TftpConfig, TftpCounters, TftpMetrics, TftpServer};
use machinist_e2e::prereq::need_programs;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long any one client run may take.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// The files served, by name and size: small, several blocks, exact multiples of the block
/// sizes used (512 and 1428, so the transfer ends with an empty block), and a few MiB.
const FILES: &[(&str, usize)] = &[
    ("small.bin", 100),
    ("multi.bin", 5_000),
    ("exact512.bin", 512 * 8),
    ("exact1428.bin", 1428 * 6),
    ("big.bin", 3 * 1024 * 1024 + 7),
];

/// Deterministic, non-repeating-looking content (an xorshift stream), so a misplaced block
/// shows up as a difference.
fn content(size: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// A server on 127.0.0.1 with a random port, serving a temporary root that holds [`FILES`],
/// with a secret file beside the root and a symlink pointing at it from inside.
struct Fixture {
    dir: tempfile::TempDir,
    root: PathBuf,
    secret: PathBuf,
    addr: SocketAddr,
    metrics: Arc<TftpMetrics>,
    cancel: CancellationToken,
    task: Option<JoinHandle<Result<(), machinist_boot_tftp::TftpError>>>,
}

impl Fixture {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        for (i, (name, size)) in FILES.iter().enumerate() {
            std::fs::write(root.join(name), content(*size, i as u64 + 1)).unwrap();
        }
        std::fs::write(root.join("sub/nested.bin"), content(2000, 99)).unwrap();
        let secret = dir.path().join("secret.txt");
        std::fs::write(&secret, b"outside the root\n").unwrap();
        std::os::unix::fs::symlink(&secret, root.join("link-out")).unwrap();
        std::os::unix::fs::symlink("sub/nested.bin", root.join("link-in")).unwrap();

        let metrics = Arc::new(TftpMetrics::default());
        let config = TftpConfig::new(&root).with_bind(([127, 0, 0, 1], 0).into());
        let server = TftpServer::bind(&config, metrics.clone()).await.unwrap().expect("an address is configured");
        let addr = server.local_addr();
        let cancel = CancellationToken::new();
        let task = Some(tokio::spawn(server.serve(cancel.clone())));
        Self { dir, root, secret, addr, metrics, cancel, task }
    }

    fn out(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("out-{name}"))
    }

    fn counters(&self) -> TftpCounters {
        self.metrics.snapshot()
    }

    /// Stops the server and checks it stopped cleanly, within a bound.
    async fn stop(mut self) {
        self.cancel.cancel();
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(5), task).await.expect("server stops").unwrap().unwrap();
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn run(program: &str, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(program);
    command.args(args).kill_on_drop(true).stdin(std::process::Stdio::null());
    tokio::time::timeout(CLIENT_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("{program} {args:?} did not finish within {CLIENT_TIMEOUT:?}"))
        .unwrap()
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// `tftp -m binary 127.0.0.1 PORT -c get REMOTE LOCAL` (tftp-hpa negotiates no options).
async fn tftp_hpa_get(addr: SocketAddr, remote: &str, local: &Path) -> Output {
    let port = addr.port().to_string();
    run("tftp", &["-m", "binary", "127.0.0.1", &port, "-c", "get", remote, local.to_str().unwrap()]).await
}

/// `atftp --option … -g -r REMOTE -l LOCAL 127.0.0.1 PORT`, with `--trace` so the OACK shows.
async fn atftp_get(addr: SocketAddr, options: &[String], remote: &str, local: &Path) -> Output {
    let port = addr.port().to_string();
    let mut args: Vec<&str> = vec!["--trace"];
    for option in options {
        args.extend(["--option", option.as_str()]);
    }
    args.extend(["-g", "-r", remote, "-l", local.to_str().unwrap(), "127.0.0.1", &port]);
    run("atftp", &args).await
}

/// The options of the OACK in an `atftp --trace` log, normalised to `name: value, …,`
/// (atftp prints `received OACK <tsize: 5000, windowsize: 8, blksize: 1428, >`).
fn oack(log: &str) -> String {
    let line = log.lines().find(|l| l.starts_with("received OACK")).unwrap_or_else(|| panic!("no OACK: {log}"));
    line.trim_start_matches("received OACK <").trim_end_matches('>').trim().to_string()
}

fn assert_same(fixture: &Fixture, name: &str, local: &Path, output: &Output) {
    let want = std::fs::read(fixture.root.join(name)).unwrap();
    let got = std::fs::read(local).unwrap_or_else(|e| panic!("{name}: no local file ({e}): {}", text(output)));
    assert!(
        got == want,
        "{name}: {} bytes received, {} served, contents differ: {}",
        got.len(),
        want.len(),
        text(output)
    );
}

#[tokio::test]
async fn tftp_hpa_downloads_files_byte_identical() -> Result<(), String> {
    if !need_programs("tftp_hpa_downloads_files_byte_identical", &["tftp"])? {
        return Ok(());
    }
    let fixture = Fixture::start().await;
    let mut names: Vec<&str> = FILES.iter().map(|(n, _)| *n).collect();
    names.extend(["sub/nested.bin", "/small.bin", "link-in"]);
    for name in &names {
        let local = fixture.out(&name.replace('/', "_"));
        let output = tftp_hpa_get(fixture.addr, name, &local).await;
        assert!(output.status.success(), "tftp get {name}: {}", text(&output));
        let served = name.trim_start_matches('/');
        assert_same(&fixture, served, &local, &output);
    }
    assert_eq!(fixture.counters().served, names.len() as u64);
    assert_eq!(fixture.counters().refused, 0);
    fixture.stop().await;
    Ok(())
}

#[tokio::test]
async fn atftp_downloads_with_blksize_tsize_and_windowsize() -> Result<(), String> {
    if !need_programs("atftp_downloads_with_blksize_tsize_and_windowsize", &["atftp"])? {
        return Ok(());
    }
    let fixture = Fixture::start().await;
    // (blksize, windowsize): the brief's 1428/8, lock-step 512, the RFC 2348 default size
    // with a window, and a window of 32 at the Ethernet-sized limit.
    let settings = [(1428, 8), (512, 1), (512, 4), (1468, 32)];
    let mut transfers = 0;
    for (blksize, windowsize) in settings {
        let options = [format!("blksize {blksize}"), "tsize 0".to_string(), format!("windowsize {windowsize}")];
        for (name, size) in FILES {
            let local = fixture.out(&format!("{blksize}-{windowsize}-{name}"));
            let output = atftp_get(fixture.addr, &options, name, &local).await;
            let log = text(&output);
            assert!(output.status.success(), "atftp {options:?} {name}: {log}");
            assert_same(&fixture, name, &local, &output);
            // The OACK granted what was asked, and tsize carried the file's size.
            let oack = oack(&log);
            for wanted in
                [format!("blksize: {blksize},"), format!("tsize: {size},"), format!("windowsize: {windowsize},")]
            {
                assert!(oack.contains(&wanted), "atftp {options:?} {name}: OACK lacks {wanted:?}: {oack}");
            }
            transfers += 1;
        }
    }
    assert_eq!(fixture.counters().served, transfers);
    fixture.stop().await;
    Ok(())
}

#[tokio::test]
async fn options_above_the_limits_are_lowered() -> Result<(), String> {
    if !need_programs("options_above_the_limits_are_lowered", &["atftp"])? {
        return Ok(());
    }
    let fixture = Fixture::start().await;
    let options = ["blksize 9000".to_string(), "windowsize 500".to_string(), "tsize 0".to_string()];
    let local = fixture.out("limited");
    let output = atftp_get(fixture.addr, &options, "big.bin", &local).await;
    let log = text(&output);
    assert!(output.status.success(), "{log}");
    assert_same(&fixture, "big.bin", &local, &output);
    let oack = oack(&log);
    assert!(oack.contains("blksize: 1468,") && oack.contains("windowsize: 64,"), "limits not applied: {oack}");
    fixture.stop().await;
    Ok(())
}

/// Names that must be refused (TFTP error 2) or not found (error 1), never served.
fn escaping_names(fixture: &Fixture) -> Vec<(String, u16)> {
    vec![
        ("../secret.txt".into(), 2),
        ("sub/../../secret.txt".into(), 2),
        ("..".into(), 2),
        ("link-out".into(), 2),
        // Absolute paths mean the root: the host's file is never what is looked up.
        (fixture.secret.to_str().unwrap().into(), 1),
        ("/etc/passwd".into(), 1),
        ("/".into(), 2),
        ("sub".into(), 1),
    ]
}

#[tokio::test]
async fn escapes_are_refused_with_a_tftp_error_for_tftp_hpa() -> Result<(), String> {
    if !need_programs("escapes_are_refused_with_a_tftp_error_for_tftp_hpa", &["tftp"])? {
        return Ok(());
    }
    let fixture = Fixture::start().await;
    let names = escaping_names(&fixture);
    for (i, (name, code)) in names.iter().enumerate() {
        let local = fixture.out(&format!("escape-{i}"));
        let output = tftp_hpa_get(fixture.addr, name, &local).await;
        let log = text(&output);
        // tftp-hpa exits 0 even when the server answers with an error: read its message.
        assert!(log.contains(&format!("Error code {code}")), "tftp get {name}: expected TFTP error {code}: {log}");
        let received = std::fs::read(&local).unwrap_or_default();
        assert!(received.is_empty(), "tftp get {name}: received {} bytes", received.len());
    }
    let counters = fixture.counters();
    assert_eq!(counters.served, 0);
    assert_eq!(counters.refused, names.iter().filter(|(_, c)| *c == 2).count() as u64);
    assert_eq!(counters.not_found, names.iter().filter(|(_, c)| *c == 1).count() as u64);
    fixture.stop().await;
    Ok(())
}

#[tokio::test]
async fn escapes_are_refused_with_a_tftp_error_for_atftp() -> Result<(), String> {
    if !need_programs("escapes_are_refused_with_a_tftp_error_for_atftp", &["atftp"])? {
        return Ok(());
    }
    let fixture = Fixture::start().await;
    let names = escaping_names(&fixture);
    let options = ["blksize 1428".to_string(), "tsize 0".to_string(), "windowsize 8".to_string()];
    for (i, (name, code)) in names.iter().enumerate() {
        let local = fixture.out(&format!("escape-{i}"));
        let output = atftp_get(fixture.addr, &options, name, &local).await;
        let log = text(&output);
        assert!(!output.status.success(), "atftp get {name} succeeded: {log}");
        let message = if *code == 2 { "Permission denied" } else { "File not found" };
        assert!(log.contains(message), "atftp get {name}: expected {message:?}: {log}");
        let received = std::fs::read(&local).unwrap_or_default();
        assert!(received.is_empty(), "atftp get {name}: received {} bytes", received.len());
    }
    assert_eq!(fixture.counters().served, 0);
    fixture.stop().await;
    Ok(())
}

#[tokio::test]
async fn write_requests_are_refused() -> Result<(), String> {
    if !need_programs("write_requests_are_refused", &["tftp", "atftp"])? {
        return Ok(());
    }
    let fixture = Fixture::start().await;
    let upload = fixture.out("upload");
    std::fs::write(&upload, b"should never land").unwrap();
    let port = fixture.addr.port().to_string();

    let output =
        run("tftp", &["-m", "binary", "127.0.0.1", &port, "-c", "put", upload.to_str().unwrap(), "new.bin"]).await;
    assert!(text(&output).contains("Error code 2"), "tftp put: {}", text(&output));
    let output = run("atftp", &["-p", "-l", upload.to_str().unwrap(), "-r", "small.bin", "127.0.0.1", &port]).await;
    assert!(!output.status.success() && text(&output).contains("Permission denied"), "atftp put: {}", text(&output));

    assert!(!fixture.root.join("new.bin").exists());
    assert_eq!(std::fs::read(fixture.root.join("small.bin")).unwrap(), content(100, 1));
    assert_eq!(fixture.counters().refused, 2);
    fixture.stop().await;
    Ok(())
}

#[tokio::test]
async fn nothing_is_bound_without_an_address() {
    let dir = tempfile::tempdir().unwrap();
    let config = TftpConfig::new(dir.path());
    let metrics = Arc::new(TftpMetrics::default());
    assert!(TftpServer::bind(&config, metrics.clone()).await.unwrap().is_none());
    // `run` returns at once rather than waiting for a cancellation that never comes.
    let run = machinist_boot_tftp::run(&config, metrics, CancellationToken::new());
    tokio::time::timeout(Duration::from_secs(5), run).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_missing_root_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = TftpConfig::new(dir.path().join("absent")).with_bind(([127, 0, 0, 1], 0).into());
    let result = TftpServer::bind(&config, Arc::new(TftpMetrics::default())).await;
    assert!(matches!(result, Err(machinist_boot_tftp::TftpError::Root { .. })), "{result:?}");
}

#[tokio::test]
async fn cancellation_stops_the_server_and_frees_the_port() {
    let fixture = Fixture::start().await;
    let addr = fixture.addr;
    fixture.stop().await;
    // The socket is closed: the same port binds again.
    std::net::UdpSocket::bind(addr).unwrap();
}

/// Whether Debian's `ipxe` package is there: skip without it, fail under `MACHINIST_E2E=require`.
fn need_ipxe_package(test: &str) -> Result<bool, String> {
    use machinist_e2e::prereq::{Missing, Mode, Verdict};
    let mode = Mode::from_env().map_err(|e| e.to_string())?;
    let missing: Vec<Missing> = ["undionly.kpxe", "ipxe.efi"]
        .iter()
        .filter(|f| !Path::new(machinist_boot_tftp::DEBIAN_IPXE_DIR).join(f).is_file())
        .map(|f| Missing::Program {
            program: format!("{}/{f} (Debian package ipxe)", machinist_boot_tftp::DEBIAN_IPXE_DIR),
        })
        .collect();
    match mode.verdict(&missing) {
        Verdict::Run => Ok(true),
        Verdict::Skip(reason) => {
            eprintln!("skipping {test}: {reason}");
            Ok(false)
        }
        Verdict::Fail(reason) => Err(format!("{test}: {reason}")),
    }
}

#[tokio::test]
async fn debian_ipxe_binaries_are_laid_out_and_served() -> Result<(), String> {
    let test = "debian_ipxe_binaries_are_laid_out_and_served";
    if !need_programs(test, &["atftp"])? || !need_ipxe_package(test)? {
        return Ok(());
    }
    let fixture = Fixture::start().await;
    let layout = machinist_boot_tftp::install_ipxe(machinist_boot_tftp::DEBIAN_IPXE_DIR.as_ref(), &fixture.root)
        .map_err(|e| e.to_string())?;
    assert!(layout.has(ClientArch::Bios) && layout.has(ClientArch::X86_64Uefi), "{layout:?}");
    if !layout.has(ClientArch::Arm64Uefi) {
        eprintln!("{test}: no arm64 iPXE binary in {}", machinist_boot_tftp::DEBIAN_IPXE_DIR);
    }
    // iPXE's own ROM asks for blksize 1432 and tsize.
    let options = ["blksize 1432".to_string(), "tsize 0".to_string(), "windowsize 8".to_string()];
    for binary in &layout.installed {
        let local = fixture.out(binary.served_name);
        let output = atftp_get(fixture.addr, &options, binary.served_name, &local).await;
        assert!(output.status.success(), "{}: {}", binary.served_name, text(&output));
        let want = std::fs::read(&binary.source).unwrap();
        assert!(
            std::fs::read(&local).unwrap() == want,
            "{} differs from {}",
            binary.served_name,
            binary.source.display()
        );
    }
    fixture.stop().await;
    Ok(())
}
