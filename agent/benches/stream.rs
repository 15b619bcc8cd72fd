//! Install streaming throughput: `machinist-agent` in install mode (release build) writing an
//! image from the boot services' HTTP server to a file that stands for the disk, against
//! `curl | dd` (and `curl | gunzip | dd` for the gzip image) of the same image from the same
//! server, in the same run.
//!
//! ```sh
//! cargo bench -p machinist-agent --bench stream                 # a 512 MiB image
//! cargo bench -p machinist-agent --bench stream -- --mib 1024
//! ```
//!
//! The boot services are machinist-boot's HTTP router with in-memory machines (no API server:
//! the plan is set directly), on loopback (`machinist_e2e::boot_http`, a thread and runtime of
//! their own). The image is pseudo-random (incompressible: the gzip
//! variant measures decompression at about the same size). The disk file is written in place
//! and flushed by both sides (`dd conv=fsync`, the agent's `sync_all`); each run starts with a
//! dropped page cache for the disk file where the kernel allows it. Figures go to stdout as a
//! Markdown table: seconds and MiB/s of each, best of three.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)] // a bench binary reports on stdout

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use machinist_agent_protocol::cmdline::{Args, Mode, OnSuccess};
use machinist_agent_protocol::install::InstallPlan;
use machinist_boot::machines::{BootRecord, InMemoryMachines, InstallView};
use machinist_crds::machine::{InstallStatus, MachinePhase};
use machinist_e2e::boot_http::BootHttp;
use serde_json::json;
use sha2::Digest as _;

const TOKEN: &str = "bench-token";
const RUNS: usize = 3;

fn serve(artifacts: &Path) -> BootHttp {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let machines = InMemoryMachines::new();
    let record = BootRecord {
        name: "bench".into(),
        boot_target: None,
        boot_menu: None,
        token: TOKEN.into(),
        on_success: OnSuccess::Halt,
        debug: false,
        installed: false,
    };
    machines.insert("52:54:00:be:00:01".parse().unwrap(), record);
    BootHttp::start(listener, machines, Some(artifacts)).unwrap()
}

fn plan(server: &BootHttp, file: &str, sha256: &str, compression: &str) {
    let plan: InstallPlan = serde_json::from_value(json!({
        "role": {"name": "bench", "version": "1"},
        "image": {"url": format!("http://{}/artifacts/{file}", server.address), "sha256": sha256,
            "format": "raw", "compression": compression},
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
    server.machines.set_install("bench", view, "phone-home");
}

fn drop_cache(path: &Path) {
    // Best effort: `dd … iflag=nocache` drops the file's pages where supported.
    let _ = Command::new("dd")
        .args([&format!("if={}", path.display()), "iflag=nocache", "count=0", "status=none"])
        .status();
}

fn agent(dir: &Path, server: &BootHttp) -> Duration {
    let cmdline = dir.join("cmdline");
    let args = Args {
        url: format!("http://{}", server.address),
        machine: "bench".into(),
        token: TOKEN.into(),
        mac: "52:54:00:be:00:01".into(),
        mode: Mode::Install,
        on_success: OnSuccess::Halt,
        debug: false,
        role: None,
    };
    std::fs::write(&cmdline, args.to_words().join(" ")).unwrap();
    let started = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_machinist-agent"))
        .args(["--cmdline", cmdline.to_str().unwrap(), "--no-network", "--no-power", "--dev-root"])
        .arg(dir.join("dev"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    let elapsed = started.elapsed();
    assert!(status.success(), "the agent failed");
    elapsed
}

fn curl_dd(dir: &Path, server: &BootHttp, file: &str, gunzip: bool) -> Duration {
    let url = format!("http://{}/artifacts/{file}", server.address);
    let disk = dir.join("dev/vda");
    let pipeline = if gunzip {
        format!(
            "curl -sf {url} | gunzip | dd of={} bs=4M conv=notrunc,fsync iflag=fullblock status=none",
            disk.display()
        )
    } else {
        format!("curl -sf {url} | dd of={} bs=4M conv=notrunc,fsync iflag=fullblock status=none", disk.display())
    };
    let started = Instant::now();
    let status = Command::new("bash").args(["-o", "pipefail", "-c", &pipeline]).status().unwrap();
    let elapsed = started.elapsed();
    assert!(status.success(), "{pipeline} failed");
    elapsed
}

fn best(mut run: impl FnMut() -> Duration) -> Duration {
    (0..RUNS).map(|_| run()).min().unwrap()
}

fn main() {
    let mib: u64 = std::env::args()
        .skip_while(|a| a != "--mib")
        .nth(1)
        .map(|v| v.parse().expect("--mib takes a number"))
        .unwrap_or(512);
    let dir = tempfile::tempdir().unwrap();
    let artifacts = dir.path().join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::create_dir_all(dir.path().join("dev")).unwrap();
    let raw = artifacts.join("image.raw");
    let status = Command::new("dd")
        .args(["if=/dev/urandom", &format!("of={}", raw.display()), "bs=1M", &format!("count={mib}"), "status=none"])
        .status()
        .unwrap();
    assert!(status.success());
    let gz = artifacts.join("image.raw.gz");
    let status =
        Command::new("sh").args(["-c", &format!("gzip -1 -c {} > {}", raw.display(), gz.display())]).status().unwrap();
    assert!(status.success());
    let sha = |path: &Path| -> String {
        let bytes = std::fs::read(path).unwrap();
        sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect()
    };
    let (raw_sha, gz_sha) = (sha(&raw), sha(&gz));
    let disk = dir.path().join("dev/vda");
    std::fs::File::create(&disk).unwrap().set_len((mib + 16) << 20).unwrap();
    let server = serve(&artifacts);

    let mut rows = Vec::new();
    for (label, file, sum, compression) in
        [("raw", "image.raw", &raw_sha, "none"), ("gzip", "image.raw.gz", &gz_sha, "gzip")]
    {
        plan(&server, file, sum, compression);
        let ours = best(|| {
            drop_cache(&disk);
            agent(dir.path(), &server)
        });
        let theirs = best(|| {
            drop_cache(&disk);
            curl_dd(dir.path(), &server, file, compression == "gzip")
        });
        rows.push((label, ours, theirs));
    }
    println!(
        "| {mib} MiB image, best of {RUNS} | machinist-agent | curl | dd (same server, same run) | agent / curl |"
    );
    println!("|---|---|---|---|");
    for (label, ours, theirs) in rows {
        let rate = |d: Duration| mib as f64 / d.as_secs_f64();
        println!(
            "| {label} | {:.2} s ({:.0} MiB/s) | {:.2} s ({:.0} MiB/s) | {:.2} |",
            ours.as_secs_f64(),
            rate(ours),
            theirs.as_secs_f64(),
            rate(theirs),
            ours.as_secs_f64() / theirs.as_secs_f64()
        );
    }
}
