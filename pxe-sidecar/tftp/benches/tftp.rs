#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a benchmark failing is a panic
#![allow(clippy::print_stdout)] // the figures are this benchmark's output
//! TFTP throughput: a file fetched by `atftp` with windowsize 1, 8 and 32 (blksize 1428, tsize)
//! from machinist's server, tftpd-hpa (`in.tftpd`) and atftpd, in one run, printed side by side,
//! first on loopback (64 MiB), then through a link with a delay each way (4 MiB; 0.5 ms and
//! 2 ms by default), where a round trip costs what it costs on a LAN. Every transfer is checked
//! byte for byte.
//!
//! The delayed link: the servers in one network namespace, atftp in another, joined by a veth
//! pair. This kernel has no `netem` qdisc, so the delay is made in user space: iptables sends
//! every packet leaving or entering the client's veth to an NFQUEUE, and a thread of this
//! benchmark gives each packet back to the kernel (verdict accept) a fixed delay after it was
//! queued. The round trip actually seen (UDP echo, median of 200) is printed with the figures.
//!
//! `cargo bench -p machinist-boot-tftp --bench tftp`; the delayed links need root. Servers are
//! looked up in `MACHINIST_BENCH_TFTPD_HPA` / `MACHINIST_BENCH_ATFTPD`, then
//! `.tools/peers/tftpd-hpa` / `.tools/peers/atftpd` (`scripts/bench-peers` unpacks them there:
//! the Debian packages conflict, and installing them starts services), then `PATH` and
//! `/usr/sbin`; iptables in `MACHINIST_BENCH_IPTABLES`, `.tools/peers/iptables`, then `PATH`. A
//! missing server is reported and left out, or fails the run under `MACHINIST_E2E=require`.
//! `MACHINIST_BENCH_REPS` sets the runs per figure on loopback (3; the best is kept),
//! `MACHINIST_BENCH_MIB` the loopback file size (64), `MACHINIST_BENCH_DELAYS_MS` the one-way
//! delays (`0.5,2`; empty: loopback only), `MACHINIST_BENCH_DELAYED_MIB` (4) and
//! `MACHINIST_BENCH_DELAYED_REPS` (2) the file size and runs on the delayed links.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use machinist_boot_tftp::{TftpConfig, TftpMetrics, TftpServer};
use machinist_e2e::netns::{self, VethPair};
use machinist_e2e::prereq::{self, Missing, Mode, Verdict, find_program};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

const WINDOWS: [u16; 3] = [1, 8, 32];
const BLKSIZE: u16 = 1428;
const FILE: &str = "bench.bin";
/// How long one transfer may take before the benchmark gives up.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a server may take to answer its first request.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// The subnet of the delayed link: server .1, client .2.
const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 1);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 2);
/// The NFQUEUE of the delayed link (queues are per namespace).
const QUEUE: u16 = 0;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `/proc/loadavg`'s first three figures: other builds share these 2 cores.
fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// A peer binary: the override variable, then `.tools/peers/PACKAGE` (`scripts/bench-peers`),
/// then `PATH`, then `/usr/sbin`.
fn peer_binary(variable: &str, package: &str, program: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(variable) {
        return find_program(&path.to_string_lossy(), None);
    }
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/peers").join(package).join("usr/sbin");
    find_program(&tools.join(program).to_string_lossy(), None)
        .or_else(|| find_program(program, std::env::var_os("PATH").as_deref()))
        .or_else(|| find_program(&format!("/usr/sbin/{program}"), None))
}

/// `X/usr/lib/x86_64-linux-gnu:X/lib/x86_64-linux-gnu` for a binary `X/usr/sbin/NAME` unpacked
/// with `dpkg -x` (its libraries that the machine lacks are unpacked beside it).
fn lib_path(binary: &Path) -> String {
    let root = binary.parent().and_then(Path::parent).and_then(Path::parent).unwrap_or(Path::new("/"));
    format!("{}:{}", root.join("usr/lib/x86_64-linux-gnu").display(), root.join("lib/x86_64-linux-gnu").display())
}

/// Two namespaces joined by a veth pair (`srv0` SERVER_IP, `cli0` CLIENT_IP); removed on drop,
/// also when the benchmark panics.
struct NetnsPair {
    veth: VethPair,
}

impl NetnsPair {
    fn new() -> Self {
        let tag = format!("mbtftp{}", std::process::id() % 100_000);
        let veth = VethPair::new(&tag, &format!("{SERVER_IP}/24"), Some(&format!("{CLIENT_IP}/24")), None).unwrap();
        Self { veth }
    }
}

/// Runs `f` on a new thread inside the namespace `ns` (none: this one).
fn thread_in<T: Send + 'static>(
    ns: Option<&str>,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<Option<T>> {
    match ns {
        Some(ns) => netns::spawn_in(&VethPair::path(ns), f).unwrap(),
        None => std::thread::spawn(move || Some(f())),
    }
}

/// The delay: every packet through the client's veth, both ways, is held `delay` in an NFQUEUE
/// by a thread of this process. Stopped on drop (held packets are let through).
struct DelayLine {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Option<()>>>,
}

impl DelayLine {
    fn start(pair: &NetnsPair, iptables: &Path, delay: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let s = stop.clone();
        let thread = thread_in(Some(pair.veth.client()), move || {
            // Wake-ups to the microsecond: the default 50 µs timer slack would add to the delay.
            nix::sys::prctl::set_timerslack(1_000).unwrap();
            let mut queue = nfq::Queue::open().unwrap();
            queue.bind(QUEUE).unwrap();
            queue.set_copy_range(QUEUE, 0).unwrap(); // metadata only: the packet stays in the kernel
            queue.set_queue_max_len(QUEUE, 65_536).unwrap();
            queue.set_nonblocking(true);
            ready_tx.send(()).unwrap();
            let mut held: VecDeque<(Instant, nfq::Message)> = VecDeque::new();
            loop {
                let stopping = s.load(Ordering::Relaxed);
                loop {
                    match queue.recv() {
                        Ok(message) => held.push_back((Instant::now() + delay, message)),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => panic!("nfqueue: {e}"),
                    }
                }
                let now = Instant::now();
                while held.front().is_some_and(|(due, _)| stopping || *due <= now) {
                    let (_, mut message) = held.pop_front().unwrap();
                    message.set_verdict(nfq::Verdict::Accept);
                    queue.verdict(message).unwrap();
                }
                if stopping {
                    return;
                }
                // Poll for new packets at least every 20 µs; the queue has no descriptor to wait on.
                let next =
                    held.front().map_or(Duration::from_micros(20), |(due, _)| due.saturating_duration_since(now));
                std::thread::sleep(next.min(Duration::from_micros(20)));
            }
        });
        ready_rx.recv_timeout(READY_TIMEOUT).unwrap();
        // With --queue-bypass, packets pass undelayed if the thread is gone (never dropped).
        let xtables = lib_path(iptables);
        for rule in [["-A", "OUTPUT", "-o", "cli0"], ["-A", "INPUT", "-i", "cli0"]] {
            let mut command = std::process::Command::new("ip");
            command.args(["netns", "exec", pair.veth.client()]).arg(iptables);
            if iptables.file_name().is_some_and(|n| n.to_string_lossy().starts_with("xtables-")) {
                command.arg("iptables"); // the multi-call binary, told which tool to be
            }
            let out = command
                .args(rule)
                .args(["-j", "NFQUEUE", "--queue-num", &QUEUE.to_string(), "--queue-bypass"])
                .env("LD_LIBRARY_PATH", &xtables)
                .env("XTABLES_LIBDIR", iptables_extensions(iptables))
                .output()
                .unwrap();
            assert!(out.status.success(), "iptables {rule:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Self { stop, thread: Some(thread) }
    }
}

/// Where iptables finds its extensions (`libxt_NFQUEUE.so`): beside an unpacked binary, or the
/// system's.
fn iptables_extensions(iptables: &Path) -> PathBuf {
    let root = iptables.parent().and_then(Path::parent).and_then(Path::parent).unwrap_or(Path::new("/"));
    let unpacked = root.join("usr/lib/x86_64-linux-gnu/xtables");
    if unpacked.is_dir() { unpacked } else { PathBuf::from("/usr/lib/x86_64-linux-gnu/xtables") }
}

impl Drop for DelayLine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Where the transfers run: loopback, or a namespace pair with a delay.
struct Link {
    label: String,
    server_ns: Option<String>,
    client_ns: Option<String>,
    host: Ipv4Addr,
    // Dropped in this order: the delay, then the namespaces.
    _delay: Option<DelayLine>,
    _pair: Option<NetnsPair>,
}

impl Link {
    fn loopback() -> Self {
        Self {
            label: "loopback".into(),
            server_ns: None,
            client_ns: None,
            host: Ipv4Addr::LOCALHOST,
            _delay: None,
            _pair: None,
        }
    }

    fn delayed(iptables: &Path, delay: Duration) -> Self {
        let pair = NetnsPair::new();
        let line = DelayLine::start(&pair, iptables, delay);
        Self {
            label: format!("veth between namespaces, {} ms each way", delay.as_secs_f64() * 1000.0),
            server_ns: Some(pair.veth.server().to_owned()),
            client_ns: Some(pair.veth.client().to_owned()),
            host: SERVER_IP,
            _delay: Some(line),
            _pair: Some(pair),
        }
    }

    /// `program` run where the client or server side lives.
    fn command(ns: Option<&str>, program: &Path) -> Command {
        match ns {
            None => Command::new(program),
            Some(ns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", ns]).arg(program);
                command
            }
        }
    }

    fn atftp(&self) -> Command {
        Self::command(self.client_ns.as_deref(), Path::new("atftp"))
    }

    /// The round trip between the two sides: UDP echo, median and 90th percentile of 200.
    fn round_trip(&self) -> (Duration, Duration) {
        let host = self.host;
        let echo =
            thread_in(self.server_ns.as_deref(), move || UdpSocket::bind((host, 0)).unwrap()).join().unwrap().unwrap();
        let port = echo.local_addr().unwrap().port();
        echo.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let echoer = std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while let Ok((n, from)) = echo.recv_from(&mut buf) {
                if &buf[..n] == b"stop" {
                    return;
                }
                let _ = echo.send_to(&buf[..n], from);
            }
        });
        let target = SocketAddr::from((self.host, port));
        let mut times = thread_in(self.client_ns.as_deref(), move || {
            let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
            socket.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut times = Vec::new();
            let mut buf = [0u8; 64];
            for _ in 0..200 {
                let start = Instant::now();
                socket.send_to(b"ping", target).unwrap();
                if socket.recv(&mut buf).is_ok() {
                    times.push(start.elapsed());
                }
            }
            let _ = socket.send_to(b"stop", target);
            times
        })
        .join()
        .unwrap()
        .unwrap();
        let _ = echoer.join();
        times.sort();
        assert!(!times.is_empty(), "no echo came back over {}", self.label);
        (times[times.len() / 2], times[times.len() * 9 / 10])
    }
}

/// Fetches `remote` with atftp; returns the elapsed time, after checking the bytes.
async fn fetch(link: &Link, port: u16, window: u16, local: &Path, want: &[u8]) -> Result<Duration, String> {
    let _ = std::fs::remove_file(local);
    let (blksize, windowsize) = (format!("blksize {BLKSIZE}"), format!("windowsize {window}"));
    let mut command = link.atftp();
    command
        .args(["--option", &blksize, "--option", "tsize 0", "--option", &windowsize, "-g", "-r", FILE])
        .args(["-l", local.to_str().unwrap(), &link.host.to_string(), &port.to_string()])
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
async fn await_ready(link: &Link, port: u16, dir: &Path) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let probe = dir.join("probe.out");
    loop {
        let output = link
            .atftp()
            .args(["--tftp-timeout", "1", "-g", "-r", "probe.bin", "-l", probe.to_str().unwrap()])
            .args([link.host.to_string(), port.to_string()])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| e.to_string())?;
        if output.status.success() && std::fs::read(&probe).map(|b| b == b"ready").unwrap_or(false) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("server on {}:{port} not ready within {READY_TIMEOUT:?}", link.host));
        }
    }
}

/// One row of a table: a server's best time per window size.
struct Row {
    server: String,
    times: Vec<Result<Duration, String>>,
}

async fn measure(server: &str, link: &Link, port: u16, dir: &Path, want: &[u8], reps: usize) -> Row {
    let mut times = Vec::new();
    for window in WINDOWS {
        let mut best: Result<Duration, String> = Err("no run".into());
        for _ in 0..reps {
            match fetch(link, port, window, &dir.join("out.bin"), want).await {
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

/// Machinist's server on its own thread (and runtime), inside the link's server namespace.
struct Machinist {
    port: u16,
    cancel: CancellationToken,
    thread: Option<std::thread::JoinHandle<Option<()>>>,
}

impl Machinist {
    fn start(link: &Link, root: &Path) -> Self {
        let cancel = CancellationToken::new();
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        // Window size limit raised so every requested window is granted.
        let config = TftpConfig { window_size_limit: 64, ..TftpConfig::new(root).with_bind((link.host, 0).into()) };
        let c = cancel.clone();
        let thread = thread_in(link.server_ns.as_deref(), move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let metrics = Arc::new(TftpMetrics::default());
                let server = TftpServer::bind(&config, metrics).await.unwrap().expect("bound");
                port_tx.send(server.local_addr().port()).unwrap();
                server.serve(c).await.unwrap();
            });
        });
        let port = port_rx.recv_timeout(READY_TIMEOUT).unwrap();
        Self { port, cancel, thread: Some(thread) }
    }
}

impl Drop for Machinist {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Peer {
    name: &'static str,
    program: &'static str,
    binary: PathBuf,
}

/// Measures every server over `link`.
async fn measure_link(link: &Link, peers: &[Peer], root: &Path, dir: &Path, want: &[u8], reps: usize) -> Vec<Row> {
    let mut rows = Vec::new();
    {
        let server = Machinist::start(link, root);
        await_ready(link, server.port, dir).await.unwrap();
        rows.push(measure("machinist (async-tftp)", link, server.port, dir, want, reps).await);
    }
    let root_arg = root.to_str().unwrap().to_string();
    for peer in peers {
        let port = match &link.server_ns {
            None => UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port(),
            Some(_) => 6969, // a fresh namespace: nothing else listens there
        };
        let mut child = spawn(link, &peer.binary, &peer_args(peer.program, link.host, port, &root_arg));
        if let Err(e) = await_ready(link, port, dir).await {
            let _ = child.kill().await;
            panic!("{}: {e}", peer.name);
        }
        rows.push(measure(peer.name, link, port, dir, want, reps).await);
        let _ = child.kill().await;
    }
    rows
}

fn spawn(link: &Link, program: &Path, args: &[String]) -> Child {
    Link::command(link.server_ns.as_deref(), program)
        .args(args)
        .env("LD_LIBRARY_PATH", lib_path(program))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("failed to start {}: {e}", program.display()))
}

/// The command line that runs `program` in the foreground on `host:port`, serving `root`.
fn peer_args(program: &str, host: Ipv4Addr, port: u16, root: &str) -> Vec<String> {
    let args: Vec<String> = match program {
        "in.tftpd" => return ["-L", "-a", &format!("{host}:{port}"), "-s", root].map(str::to_string).to_vec(),
        _ => ["--daemon", "--no-fork", "--bind-address", &host.to_string(), "--logfile", "/dev/null", "--port"]
            .map(str::to_string)
            .to_vec(),
    };
    let mut args = args;
    args.extend([port.to_string(), root.to_string()]);
    args
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), String> {
    let mode = Mode::from_env().map_err(|e| e.to_string())?;
    if !machinist_e2e::prereq::need_programs("tftp benchmark", &["atftp"])? {
        return Ok(());
    }
    let reps = env_number("MACHINIST_BENCH_REPS", 3).max(1);
    let mib = env_number("MACHINIST_BENCH_MIB", 64).max(1);
    let delayed_reps = env_number("MACHINIST_BENCH_DELAYED_REPS", 2).max(1);
    let delayed_mib = env_number("MACHINIST_BENCH_DELAYED_MIB", 4).max(1);
    let delays: Vec<Duration> = std::env::var("MACHINIST_BENCH_DELAYS_MS")
        .unwrap_or_else(|_| "0.5,2".into())
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim().parse::<f64>().map(|ms| Duration::from_secs_f64(ms / 1000.0)).map_err(|e| format!("{s}: {e}"))
        })
        .collect::<Result<_, _>>()?;

    let mut peers = Vec::new();
    for (name, variable, package, program) in [
        ("tftpd-hpa (in.tftpd)", "MACHINIST_BENCH_TFTPD_HPA", "tftpd-hpa", "in.tftpd"),
        ("atftpd", "MACHINIST_BENCH_ATFTPD", "atftpd", "atftpd"),
    ] {
        match peer_binary(variable, package, program) {
            Some(binary) => peers.push(Peer { name, program, binary }),
            None => {
                let reason = format!("{program} not found ({variable}, .tools/peers/{package}, PATH, /usr/sbin)");
                match mode.verdict(&[Missing::Program { program: reason.clone() }]) {
                    Verdict::Fail(reason) => return Err(reason),
                    _ => println!("{name}: left out, {reason}"),
                }
            }
        }
    }
    // The delayed links need root (namespaces) and iptables.
    let iptables = peer_binary("MACHINIST_BENCH_IPTABLES", "iptables", "xtables-nft-multi")
        .or_else(|| find_program("iptables", std::env::var_os("PATH").as_deref()));
    let mut missing = Vec::new();
    if !delays.is_empty() {
        if !prereq::is_root() {
            missing.push(Missing::Root);
        }
        if iptables.is_none() {
            missing.push(Missing::Program {
                program: "iptables (MACHINIST_BENCH_IPTABLES, .tools/peers/iptables, PATH)".into(),
            });
        }
    }
    let delays = match mode.verdict(&missing) {
        Verdict::Run => delays,
        Verdict::Fail(reason) => return Err(reason),
        Verdict::Skip(reason) => {
            println!("delayed links left out: {reason}");
            Vec::new()
        }
    };

    // The served directory is read by atftpd and tftpd-hpa as `nobody`: world-readable.
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let root = dir.path().join("root");
    std::fs::create_dir(&root).map_err(|e| e.to_string())?;
    std::fs::write(root.join("probe.bin"), b"ready").map_err(|e| e.to_string())?;
    for path in [dir.path(), root.as_path()] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    }
    let content = |mib: usize| -> Vec<u8> {
        (0..mib * 1024 * 1024).map(|i| (i as u64).wrapping_mul(2_654_435_761).rotate_right(13) as u8).collect()
    };

    println!("load average before: {}", load_average());
    let mut tables = Vec::new();
    {
        let want = content(mib);
        std::fs::write(root.join(FILE), &want).map_err(|e| e.to_string())?;
        let link = Link::loopback();
        println!("TFTP: {mib} MiB to atftp (blksize {BLKSIZE}, tsize), best of {reps}, {}", link.label);
        let rows = measure_link(&link, &peers, &root, dir.path(), &want, reps).await;
        tables.push((link.label.clone(), None, mib, rows));
    }
    if let Some(iptables) = &iptables {
        let want = content(delayed_mib);
        std::fs::write(root.join(FILE), &want).map_err(|e| e.to_string())?;
        for delay in delays {
            let link = Link::delayed(iptables, delay);
            let rtt = link.round_trip();
            println!(
                "TFTP: {delayed_mib} MiB to atftp, best of {delayed_reps}, {} \
                 (round trip: median {:.2} ms, p90 {:.2} ms)",
                link.label,
                rtt.0.as_secs_f64() * 1000.0,
                rtt.1.as_secs_f64() * 1000.0
            );
            let rows = measure_link(&link, &peers, &root, dir.path(), &want, delayed_reps).await;
            tables.push((link.label.clone(), Some(rtt), delayed_mib, rows));
        }
    }
    println!("load average after: {}", load_average());
    for (label, rtt, mib, rows) in &tables {
        println!();
        match rtt {
            None => println!("{mib} MiB, {label}:"),
            Some((median, _)) => {
                println!("{mib} MiB, {label} (measured round trip {:.2} ms):", median.as_secs_f64() * 1000.0)
            }
        }
        print_table(rows, *mib);
    }
    Ok(())
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
