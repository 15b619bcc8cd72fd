#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a benchmark failing is a panic
#![allow(clippy::print_stdout)] // the figures are this benchmark's output
//! TFTP throughput: a 64 MiB file fetched by `atftp` with windowsize 1, 8 and 32 (blksize
//! 1428, tsize) from machinist's server, tftpd-hpa (`in.tftpd`) and atftpd, in one run, printed
//! side by side. All on loopback; every transfer is checked byte for byte.
//!
//! `cargo bench -p machinist-boot-tftp --bench tftp`. Servers are looked up on `PATH` and in
//! `/usr/sbin`; `MACHINIST_BENCH_TFTPD_HPA` and `MACHINIST_BENCH_ATFTPD` name the binaries
//! otherwise (Debian's `tftpd-hpa` and `atftpd` packages conflict: install one, `apt-get
//! download` + `dpkg -x` the other). A missing server is reported and left out, or fails the
//! run under `MACHINIST_E2E=require`. `MACHINIST_BENCH_REPS` sets the runs per figure (3;
//! the best is kept), `MACHINIST_BENCH_MIB` the file size (64).

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use machinist_boot_tftp::{TftpConfig, TftpMetrics, TftpServer};
use machinist_e2e::prereq::{Mode, Verdict, find_program};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

const WINDOWS: [u16; 3] = [1, 8, 32];
const BLKSIZE: u16 = 1428;
const FILE: &str = "bench.bin";
/// How long one transfer may take before the benchmark gives up.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a server may take to answer its first request.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A server binary: the override variable, then `PATH`, then `/usr/sbin`.
fn server_binary(variable: &str, program: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(variable) {
        return find_program(&path.to_string_lossy(), None);
    }
    find_program(program, std::env::var_os("PATH").as_deref())
        .or_else(|| find_program(&format!("/usr/sbin/{program}"), None))
}

/// A free UDP port on loopback for a server we start as a child process.
fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Fetches `remote` with atftp; returns the elapsed time, after checking the bytes.
async fn fetch(addr: SocketAddr, window: u16, remote: &str, local: &Path, want: &[u8]) -> Result<Duration, String> {
    let _ = std::fs::remove_file(local);
    let port = addr.port().to_string();
    let (blksize, windowsize) = (format!("blksize {BLKSIZE}"), format!("windowsize {window}"));
    let mut command = Command::new("atftp");
    command
        .args(["--option", &blksize, "--option", "tsize 0", "--option", &windowsize, "-g", "-r", remote])
        .args(["-l", local.to_str().unwrap(), "127.0.0.1", &port])
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let start = Instant::now();
    let output = tokio::time::timeout(TRANSFER_TIMEOUT, command.output())
        .await
        .map_err(|_| format!("atftp did not finish within {TRANSFER_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
    let elapsed = start.elapsed();
    let got = std::fs::read(local).unwrap_or_default();
    if !output.status.success() || got != want {
        return Err(format!(
            "atftp failed or received {} of {} bytes: {}{}",
            got.len(),
            want.len(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(elapsed)
}

/// Waits until the server answers a tiny request (a readiness probe, retried until a deadline).
async fn await_ready(addr: SocketAddr, dir: &Path) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let probe = dir.join("probe.out");
    loop {
        let output = Command::new("atftp")
            .args(["--tftp-timeout", "1", "-g", "-r", "probe.bin", "-l", probe.to_str().unwrap(), "127.0.0.1"])
            .arg(addr.port().to_string())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| e.to_string())?;
        if output.status.success() && std::fs::read(&probe).map(|b| b == b"ready").unwrap_or(false) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("server on {addr} not ready within {READY_TIMEOUT:?}"));
        }
    }
}

/// One row of the table: a server's best time per window size.
struct Row {
    server: String,
    times: Vec<Result<Duration, String>>,
}

async fn measure(server: &str, addr: SocketAddr, dir: &Path, want: &[u8], reps: usize) -> Row {
    let mut times = Vec::new();
    for window in WINDOWS {
        let mut best: Result<Duration, String> = Err("no run".into());
        for _ in 0..reps {
            match fetch(addr, window, FILE, &dir.join("out.bin"), want).await {
                Ok(t) => best = Ok(best.as_ref().map_or(t, |b| (*b).min(t))),
                Err(e) => {
                    best = Err(e);
                    break;
                }
            }
        }
        times.push(best);
    }
    Row { server: server.to_string(), times }
}

fn spawn(program: &Path, args: &[String]) -> Child {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("failed to start {}: {e}", program.display()))
}

async fn stop(mut child: Child) {
    let _ = child.kill().await;
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), String> {
    let mode = Mode::from_env().map_err(|e| e.to_string())?;
    if !machinist_e2e::prereq::need_programs("tftp benchmark", &["atftp"])? {
        return Ok(());
    }
    let reps = env_number("MACHINIST_BENCH_REPS", 3).max(1);
    let mib = env_number("MACHINIST_BENCH_MIB", 64).max(1);

    // The served directory is read by atftpd and tftpd-hpa as `nobody`: world-readable.
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let root = dir.path().join("root");
    std::fs::create_dir(&root).map_err(|e| e.to_string())?;
    let want: Vec<u8> =
        (0..mib * 1024 * 1024).map(|i| (i as u64).wrapping_mul(2_654_435_761).rotate_right(13) as u8).collect();
    std::fs::write(root.join(FILE), &want).map_err(|e| e.to_string())?;
    std::fs::write(root.join("probe.bin"), b"ready").map_err(|e| e.to_string())?;
    for path in [dir.path(), root.as_path()] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    }

    println!("TFTP: {mib} MiB to atftp (blksize {BLKSIZE}, tsize), best of {reps}, loopback");
    let mut rows = Vec::new();

    // machinist: window size limit raised so every requested window is granted.
    {
        let metrics = Arc::new(TftpMetrics::default());
        let config =
            TftpConfig { window_size_limit: 64, ..TftpConfig::new(&root).with_bind(([127, 0, 0, 1], 0).into()) };
        let server = TftpServer::bind(&config, metrics).await.map_err(|e| e.to_string())?.ok_or("not bound")?;
        let addr = server.local_addr();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(server.serve(cancel.clone()));
        await_ready(addr, dir.path()).await?;
        rows.push(measure("machinist (async-tftp)", addr, dir.path(), &want, reps).await);
        cancel.cancel();
        task.await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
    }

    let root_arg = root.to_str().ok_or("root is not UTF-8")?.to_string();
    let peers = [
        ("tftpd-hpa (in.tftpd)", "MACHINIST_BENCH_TFTPD_HPA", "in.tftpd"),
        ("atftpd", "MACHINIST_BENCH_ATFTPD", "atftpd"),
    ];
    for (name, variable, program) in peers {
        let Some(binary) = server_binary(variable, program) else {
            let reason = format!("{program} not found (PATH, /usr/sbin, {variable})");
            match mode.verdict(&[machinist_e2e::prereq::Missing::Program { program: reason.clone() }]) {
                Verdict::Fail(reason) => return Err(reason),
                _ => {
                    println!("{name}: left out, {reason}");
                    continue;
                }
            }
        };
        let port = free_port();
        let child = spawn(&binary, &peer_args(program, port, &root_arg));
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let ready = await_ready(addr, dir.path()).await;
        if let Err(e) = ready {
            stop(child).await;
            return Err(format!("{name}: {e}"));
        }
        rows.push(measure(name, addr, dir.path(), &want, reps).await);
        stop(child).await;
    }

    print_table(&rows, mib);
    Ok(())
}

/// The command line that runs `program` in the foreground on 127.0.0.1:`port`, serving `root`.
fn peer_args(program: &str, port: u16, root: &str) -> Vec<String> {
    let args: Vec<&str> = match program {
        "in.tftpd" => return ["-L", "-a", &format!("127.0.0.1:{port}"), "-s", root].map(str::to_string).to_vec(),
        _ => vec!["--daemon", "--no-fork", "--bind-address", "127.0.0.1", "--logfile", "/dev/null", "--port"],
    };
    let mut args: Vec<String> = args.into_iter().map(str::to_string).collect();
    args.extend([port.to_string(), root.to_string()]);
    args
}

fn print_table(rows: &[Row], mib: usize) {
    let header: Vec<String> = WINDOWS.iter().map(|w| format!("windowsize {w}")).collect();
    println!();
    println!("| server | {} |", header.join(" | "));
    println!("|---|{}", "---|".repeat(WINDOWS.len()));
    for row in rows {
        let cells: Vec<String> = row
            .times
            .iter()
            .map(|t| match t {
                Ok(t) => format!("{:.2} s, {:.1} MiB/s", t.as_secs_f64(), mib as f64 / t.as_secs_f64()),
                Err(e) => format!("failed: {}", e.lines().next().unwrap_or_default()),
            })
            .collect();
        println!("| {} | {} |", row.server, cells.join(" | "));
    }
    // The goal: machinist with a window at least 5× tftpd-hpa (which has no windowsize).
    let best = |prefix: &str| {
        rows.iter()
            .find(|r| r.server.starts_with(prefix))
            .and_then(|r| r.times.iter().filter_map(|t| t.as_ref().ok()).min().copied())
    };
    let hpa = rows
        .iter()
        .find(|r| r.server.starts_with("tftpd-hpa"))
        .and_then(|r| r.times.first().and_then(|t| t.as_ref().ok()).copied());
    if let (Some(ours), Some(hpa)) = (best("machinist"), hpa) {
        println!();
        println!(
            "machinist's best window vs tftpd-hpa (lock-step): {:.1}x (goal: at least 5x)",
            hpa.as_secs_f64() / ours.as_secs_f64()
        );
    }
}
