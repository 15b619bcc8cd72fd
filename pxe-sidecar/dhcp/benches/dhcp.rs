#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a benchmark failing is a panic
#![allow(clippy::print_stdout)] // the figures are this benchmark's output
//! DHCP exchange rate and latency: perfdhcp (Debian's `kea-admin`) in one network namespace
//! against machinist's server, dnsmasq and Kea's `kea-dhcp4` in another, joined by a veth pair,
//! all in one run, printed side by side. Every server hands out addresses from a dynamic range
//! of 65,024 addresses and keeps its leases in a file on disk: machinist in SQLite (one
//! transaction per binding, `synchronous=FULL`), dnsmasq in its lease file (rewritten and
//! fsync'd after each batch of changes), Kea in its memfile CSV (`persist: true`; appended,
//! not fsync'd). machinist runs a second time with its leases in memory only, which shows what
//! its engine and socket loop manage without the disk.
//!
//! For each server the rate steps up a ladder (250 to 32,000 four-way exchanges a second,
//! ×√2 each step); each step runs a fresh server on an empty lease file for
//! `MACHINIST_BENCH_DHCP_SECONDS` (2) seconds, at most 50,000 exchanges, under a timeout. The
//! figure is the highest rate at which fewer than 1% of the exchanges (DISCOVER sent, ACK not
//! received) were lost; a failing step is tried once more before the ladder stops. As perfdhcp
//! counts a reply as late only after 1 s, the table also gives the highest rate at which the
//! average delays stayed under 10 ms (the server kept up, no queue building). Latency is
//! measured apart, at 100 exchanges a second (perfdhcp's delay from DISCOVER to OFFER and from
//! REQUEST to ACK).
//!
//! `cargo bench -p machinist-boot-dhcp --bench dhcp`, as root (namespaces). `kea-dhcp4` is looked
//! up in `MACHINIST_BENCH_KEA_DHCP4`, then `.tools/peers/kea-dhcp4-server` (`scripts/bench-peers`
//! unpacks it there: installing the package would start a service), then `PATH` and `/usr/sbin`;
//! dnsmasq in `MACHINIST_BENCH_DNSMASQ`, `PATH`, `/usr/sbin`. A missing peer is reported and left
//! out, or fails the run under `MACHINIST_E2E=require`. `MACHINIST_BENCH_DHCP_MAX_RATE` caps the
//! ladder.

use std::fs::File;
use std::io::Read;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use machinist_boot_dhcp::{Engine, RawConfig, StaticDirectory};
use machinist_e2e::netns::{self, VethPair};
use machinist_e2e::prereq::{self, Mode, Verdict, find_program};
use tokio_util::sync::CancellationToken;

/// Target rates, four-way exchanges a second (×√2 a step).
const LADDER: [u32; 15] = [250, 350, 500, 700, 1000, 1400, 2000, 2800, 4000, 5600, 8000, 11300, 16000, 22600, 32000];
/// Exchanges per step at most (the range holds 65,024 addresses).
const MAX_EXCHANGES: u32 = 50_000;
/// A step passes with fewer lost exchanges than this.
const MAX_LOSS: f64 = 0.01;
/// perfdhcp waits this long after its last DISCOVER for replies still in flight (`-W`).
const EXIT_WAIT: Duration = Duration::from_millis(500);
/// A step "kept up" when perfdhcp's average delays stayed under this (ms): beyond it the
/// server is behind and a queue builds, even if it empties within perfdhcp's 1 s drop time.
const PROMPT_MS: f64 = 10.0;
/// The rate and count of the latency run.
const LATENCY_RATE: u32 = 100;
const LATENCY_EXCHANGES: u32 = 500;
/// How long a server may take to bind its port.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Simulated clients: random MACs drawn from this many, so repeats are rare.
const CLIENTS: &str = "1000000";

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Two namespaces joined by a veth pair: `srv0` (10.<n>.0.1/16) and `cli0` (10.<n>.0.2/16,
/// perfdhcp's relay address); removed on drop, also when the benchmark panics.
struct NetnsPair {
    veth: VethPair,
    subnet: u8,
}

impl NetnsPair {
    fn new() -> Self {
        let tag = format!("mbdhcp{}", std::process::id() % 100_000);
        let subnet = 77;
        let veth =
            VethPair::new(&tag, &format!("10.{subnet}.0.1/16"), Some(&format!("10.{subnet}.0.2/16")), None).unwrap();
        Self { veth, subnet }
    }

    fn ip(&self, third: u8, fourth: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, self.subnet, third, fourth)
    }

    fn in_server(&self, program: &Path) -> Command {
        VethPair::exec(self.veth.server(), program)
    }

    /// Whether something in the server namespace listens on UDP port 67.
    fn port_67_bound(&self) -> bool {
        let out = self.in_server(Path::new("ss")).args(["-Hlun", "sport = :67"]).output();
        out.map(|o| !o.stdout.is_empty()).unwrap_or(false)
    }
}

/// The servers compared.
#[derive(Clone)]
enum Server {
    /// Leases in SQLite on disk (`true`), or in memory only (`false`: what the engine and
    /// socket loop manage without a disk write, next to Kea's unsynced CSV).
    Machinist(bool),
    Dnsmasq(PathBuf),
    Kea(PathBuf),
}

impl Server {
    fn name(&self) -> &'static str {
        match self {
            Server::Machinist(true) => "machinist",
            Server::Machinist(false) => "machinist, leases in memory (not durable)",
            Server::Dnsmasq(_) => "dnsmasq",
            Server::Kea(_) => "Kea kea-dhcp4",
        }
    }

    fn start(&self, pair: &NetnsPair, dir: &Path) -> Running {
        match self {
            Server::Machinist(durable) => {
                let lease_file = durable.then(|| dir.join("leases.sqlite"));
                Running::Thread(MachinistInNs::start(pair, lease_file.as_deref()))
            }
            Server::Dnsmasq(binary) => {
                let range = format!("--dhcp-range={},{},255.255.0.0,1h", pair.ip(1, 0), pair.ip(254, 254));
                let mut command = pair.in_server(binary);
                command.args([
                    "--keep-in-foreground",
                    "--conf-file=/dev/null",
                    "--port=0",
                    "--no-ping",
                    "--quiet-dhcp",
                    "--dhcp-authoritative",
                    "--interface=srv0",
                    "--bind-interfaces",
                    &range,
                    "--dhcp-lease-max=100000",
                ]);
                command.arg(format!("--dhcp-leasefile={}", dir.join("dnsmasq.leases").display()));
                command.arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()));
                command.arg(format!("--log-facility={}", dir.join("dnsmasq.log").display()));
                Running::spawn(command, pair, dir)
            }
            Server::Kea(binary) => {
                let config = serde_json::json!({"Dhcp4": {
                    "interfaces-config": {"interfaces": ["srv0"]}, // raw sockets (the default) see broadcasts
                    "lease-database": {"type": "memfile", "persist": true,
                                       "name": dir.join("kea-leases4.csv"), "lfc-interval": 0},
                    "valid-lifetime": 3600,
                    "subnet4": [{"id": 1, "subnet": format!("{}/16", pair.ip(0, 0)),
                                 "pools": [{"pool": format!("{} - {}", pair.ip(1, 0), pair.ip(254, 254))}],
                                 "option-data": [{"name": "routers", "data": pair.ip(0, 1).to_string()}]}],
                    "loggers": [{"name": "kea-dhcp4", "severity": "WARN",
                                 "output_options": [{"output": dir.join("kea.log")}]}],
                }});
                let path = dir.join("kea-dhcp4.json");
                std::fs::write(&path, config.to_string()).unwrap();
                let mut command = pair.in_server(binary);
                command.arg("-c").arg(&path);
                command
                    .env("KEA_PIDFILE_DIR", dir)
                    .env("KEA_LOCKFILE_DIR", dir)
                    .env("LD_LIBRARY_PATH", lib_path(binary));
                Running::spawn(command, pair, dir)
            }
        }
    }

    /// Leases the server wrote to disk, counted after it stopped.
    fn leases_on_disk(&self, dir: &Path) -> Option<usize> {
        match self {
            Server::Machinist(false) => None,
            Server::Machinist(true) => {
                let db = rusqlite::Connection::open(dir.join("leases.sqlite")).unwrap();
                Some(db.query_row("SELECT count(*) FROM leases", [], |r| r.get::<_, i64>(0)).unwrap() as usize)
            }
            Server::Dnsmasq(_) => Some(lines(&dir.join("dnsmasq.leases"))),
            // A header line, then one line per lease written.
            Server::Kea(_) => Some(lines(&dir.join("kea-leases4.csv")).saturating_sub(1)),
        }
    }
}

/// `/proc/loadavg`'s first three figures: other builds share these 2 cores.
fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map(|s| s.lines().count()).unwrap_or(0)
}

/// `X/usr/lib/x86_64-linux-gnu:X/lib/x86_64-linux-gnu` for a binary `X/usr/sbin/NAME` unpacked
/// with `dpkg -x` (its libraries that the machine lacks are unpacked beside it).
fn lib_path(binary: &Path) -> String {
    let root = binary.parent().and_then(Path::parent).and_then(Path::parent).unwrap_or(Path::new("/"));
    format!("{}:{}", root.join("usr/lib/x86_64-linux-gnu").display(), root.join("lib/x86_64-linux-gnu").display())
}

/// Our server on a thread that entered the server namespace (a two-worker runtime, as
/// `#[tokio::main]` gives on these 2 cores); stopped and joined on drop.
struct MachinistInNs {
    token: CancellationToken,
    thread: Option<std::thread::JoinHandle<Option<()>>>,
}

impl MachinistInNs {
    fn start(pair: &NetnsPair, lease_file: Option<&Path>) -> Self {
        let json = serde_json::json!({
            "interfaces": ["srv0"],
            "serverAddress": pair.ip(0, 1).to_string(),
            "dynamicRange": {"start": pair.ip(1, 0).to_string(), "end": pair.ip(254, 254).to_string(),
                             "netmask": "255.255.0.0", "gateway": pair.ip(0, 1).to_string()},
            "leaseTimeSeconds": 3600,
            "leaseFile": lease_file,
        });
        let config = serde_json::from_value::<RawConfig>(json).unwrap().validate().unwrap();
        let engine = Arc::new(Engine::open(Arc::new(config), Arc::new(StaticDirectory::new([], true))).unwrap());
        let token = CancellationToken::new();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let t = token.clone();
        let thread = netns::spawn_in(&VethPair::path(pair.veth.server()), move || {
            // Worker threads are spawned from this thread and so share its namespace.
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                let server = tokio::spawn(machinist_boot_dhcp::run(engine, t));
                tokio::task::yield_now().await;
                ready_tx.send(()).unwrap();
                server.await.unwrap().unwrap();
            });
        })
        .unwrap();
        ready_rx.recv_timeout(READY_TIMEOUT).unwrap();
        Self { token, thread: Some(thread) }
    }
}

impl Drop for MachinistInNs {
    fn drop(&mut self) {
        self.token.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A server running for one step; stopped on drop.
enum Running {
    Thread(#[allow(dead_code)] MachinistInNs), // held for its drop
    Process(Child),
}

impl Running {
    fn spawn(mut command: Command, pair: &NetnsPair, dir: &Path) -> Self {
        let stderr = File::create(dir.join("server.stderr")).unwrap();
        let child = command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr).spawn().unwrap();
        let mut running = Running::Process(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Running::Process(child) = &mut running
                && let Some(status) = child.try_wait().unwrap()
            {
                let mut why = String::new();
                let _ = File::open(dir.join("server.stderr")).and_then(|mut f| f.read_to_string(&mut why));
                panic!("{command:?} exited ({status}): {why}");
            }
            if pair.port_67_bound() {
                return running;
            }
            assert!(Instant::now() < deadline, "{command:?} did not bind port 67 within {READY_TIMEOUT:?}");
            std::thread::sleep(Duration::from_millis(50)); // polling interval
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Running::Process(child) = self {
            // SIGTERM (servers write their lease files on the way out), then SIGKILL.
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// perfdhcp's figures for one run.
#[derive(Clone, Debug, Default)]
struct Figures {
    target: u32,
    discovers: u64,
    acks: u64,
    /// Exchanges completed per second of sending (perfdhcp's rate, its exit wait taken out).
    achieved: f64,
    /// DISCOVER→OFFER and REQUEST→ACK: (min, avg, max) in ms.
    offer_delay: (f64, f64, f64),
    ack_delay: (f64, f64, f64),
    non_unique: u64,
}

impl Figures {
    fn loss(&self) -> f64 {
        if self.discovers == 0 { 1.0 } else { 1.0 - self.acks as f64 / self.discovers as f64 }
    }

    fn passed(&self) -> bool {
        self.loss() < MAX_LOSS && self.achieved >= 0.9 * f64::from(self.target) && self.non_unique == 0
    }
}

fn parse(text: &str, target: u32) -> Result<Figures, String> {
    let mut figures = Figures { target, ..Figures::default() };
    let mut section = "";
    let number = |s: &str| s.split_whitespace().next().and_then(|n| n.parse::<f64>().ok());
    let mut rate = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with("***Statistics for: ") {
            section = if line.contains("DISCOVER-OFFER") { "do" } else { "ra" };
        }
        if let Some(r) = line.strip_prefix("Rate: ") {
            rate = number(r);
        }
        let field = |name: &str| line.strip_prefix(name).and_then(number);
        match section {
            "do" => {
                if let Some(n) = field("sent packets: ") {
                    figures.discovers = n as u64;
                }
                if let Some(n) = field("min delay: ") {
                    figures.offer_delay.0 = n;
                }
                if let Some(n) = field("avg delay: ") {
                    figures.offer_delay.1 = n;
                }
                if let Some(n) = field("max delay: ") {
                    figures.offer_delay.2 = n;
                }
            }
            "ra" => {
                if let Some(n) = field("received packets: ") {
                    figures.acks = n as u64;
                }
                if let Some(n) = field("min delay: ") {
                    figures.ack_delay.0 = n;
                }
                if let Some(n) = field("avg delay: ") {
                    figures.ack_delay.1 = n;
                }
                if let Some(n) = field("max delay: ") {
                    figures.ack_delay.2 = n;
                }
            }
            _ => {}
        }
        if let Some(n) = field("non unique addresses: ") {
            figures.non_unique += n as u64;
        }
    }
    let rate = rate.ok_or_else(|| format!("no rate in perfdhcp's output:\n{text}"))?;
    // perfdhcp's rate is ACKs over the whole run, its exit wait included: take the wait out.
    if rate > 0.0 {
        let run = figures.acks as f64 / rate;
        figures.achieved = figures.acks as f64 / (run - EXIT_WAIT.as_secs_f64()).max(1e-3);
    }
    Ok(figures)
}

/// One perfdhcp run at `rate` for `exchanges`, bounded by a timeout.
fn perfdhcp(pair: &NetnsPair, rate: u32, exchanges: u32) -> Result<Figures, String> {
    let seconds = u64::from(exchanges.div_ceil(rate)) + 1;
    let (r, n, p, w) =
        (rate.to_string(), exchanges.to_string(), (seconds + 5).to_string(), EXIT_WAIT.as_micros().to_string());
    let child = Command::new("ip")
        .args(["netns", "exec", pair.veth.client(), "perfdhcp", "-4", "-l", "cli0", "-R", CLIENTS])
        .args(["-r", &r, "-n", &n, "-p", &p, "-W", &w])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let out = wait_bounded(child, Duration::from_secs(seconds + 30))?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse(&text, rate).map_err(|e| format!("{e}{}", String::from_utf8_lossy(&out.stderr)))
}

/// Waits for a child with a deadline, killing it if it overruns.
fn wait_bounded(mut child: Child, limit: Duration) -> Result<Output, String> {
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().map_err(|e| e.to_string())?.is_some() {
            return child.wait_with_output().map_err(|e| e.to_string());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("perfdhcp did not finish within {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(20)); // polling interval
    }
}

/// One step: a fresh server on an empty lease file, one perfdhcp run.
fn step(server: &Server, pair: &NetnsPair, rate: u32, exchanges: u32) -> Result<(Figures, Option<usize>), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let running = server.start(pair, dir.path());
    let figures = perfdhcp(pair, rate, exchanges);
    drop(running);
    Ok((figures?, server.leases_on_disk(dir.path())))
}

struct Row {
    server: &'static str,
    best: Option<(Figures, Option<usize>)>,
    /// The highest passing step whose average delays both stayed under [`PROMPT_MS`].
    prompt: Option<Figures>,
    first_failure: Option<Figures>,
    latency: Result<Figures, String>,
}

fn measure(server: &Server, pair: &NetnsPair, seconds: u64, max_rate: u32) -> Row {
    println!("{}:", server.name());
    let latency = step(server, pair, LATENCY_RATE, LATENCY_EXCHANGES).map(|(f, _)| f);
    let mut best = None;
    let mut prompt = None;
    let mut first_failure = None;
    for rate in LADDER.into_iter().filter(|r| *r <= max_rate) {
        let exchanges = (u64::from(rate) * seconds).min(u64::from(MAX_EXCHANGES)) as u32;
        let mut result = step(server, pair, rate, exchanges);
        if !matches!(&result, Ok((f, _)) if f.passed()) {
            result = step(server, pair, rate, exchanges); // a second try before the ladder stops
        }
        match result {
            Ok((figures, on_disk)) => {
                println!(
                    "  {rate:>6}/s: {:>6} exchanges, {:>5.2}% lost, {:>8.0}/s achieved, \
                     offer {:.2} ms, ack {:.2} ms (avg), {} leases on disk{}",
                    figures.discovers,
                    100.0 * figures.loss(),
                    figures.achieved,
                    figures.offer_delay.1,
                    figures.ack_delay.1,
                    on_disk.map_or("no".into(), |n| n.to_string()),
                    if figures.non_unique > 0 {
                        format!(", {} NON-UNIQUE addresses", figures.non_unique)
                    } else {
                        String::new()
                    }
                );
                if figures.passed() {
                    if figures.offer_delay.1 < PROMPT_MS && figures.ack_delay.1 < PROMPT_MS {
                        prompt = Some(figures.clone());
                    }
                    best = Some((figures, on_disk));
                } else {
                    first_failure = Some(figures);
                    break;
                }
            }
            Err(e) => {
                println!("  {rate:>6}/s: failed: {e}");
                break;
            }
        }
    }
    Row { server: server.name(), best, prompt, first_failure, latency }
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

fn main() -> Result<(), String> {
    if !prereq::need_root_and_programs("the DHCP benchmark", &["ip", "ss", "perfdhcp"])? {
        return Ok(());
    }
    let mode = Mode::from_env().map_err(|e| e.to_string())?;
    let seconds = env_number("MACHINIST_BENCH_DHCP_SECONDS", 2).max(1);
    let max_rate = u32::try_from(env_number("MACHINIST_BENCH_DHCP_MAX_RATE", u64::from(u32::MAX))).unwrap_or(u32::MAX);

    let mut servers = vec![Server::Machinist(true), Server::Machinist(false)];
    for (name, variable, package, program) in [
        ("dnsmasq", "MACHINIST_BENCH_DNSMASQ", "dnsmasq-base", "dnsmasq"),
        ("kea-dhcp4", "MACHINIST_BENCH_KEA_DHCP4", "kea-dhcp4-server", "kea-dhcp4"),
    ] {
        match peer_binary(variable, package, program) {
            Some(binary) if name == "dnsmasq" => servers.push(Server::Dnsmasq(binary)),
            Some(binary) => servers.push(Server::Kea(binary)),
            None => {
                let reason = format!("{program} not found ({variable}, .tools/peers/{package}, PATH, /usr/sbin)");
                match mode.verdict(&[prereq::Missing::Program { program: reason.clone() }]) {
                    Verdict::Fail(reason) => return Err(reason),
                    _ => println!("{name}: left out, {reason}"),
                }
            }
        }
    }

    let pair = NetnsPair::new();
    println!("load average before: {}", load_average());
    println!(
        "DHCP: perfdhcp (relay, random MACs) -> server over a veth pair between two namespaces; steps of \
         {seconds} s (at most {MAX_EXCHANGES} exchanges), each on a fresh server and empty lease file"
    );
    let rows: Vec<Row> = servers.iter().map(|s| measure(s, &pair, seconds, max_rate)).collect();
    drop(pair);
    println!("load average after: {}", load_average());
    print_table(&rows);
    Ok(())
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "| server | highest rate with < 1% lost | lost there | avg delay there (offer / ack) | \
         leases on disk | next step | highest rate with avg delays < {PROMPT_MS} ms | \
         latency at {LATENCY_RATE}/s: offer min/avg/max | ack min/avg/max |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        let (rate, lost, delay, disk) = match &row.best {
            Some((f, disk)) => (
                format!("{:.0} /s (target {})", f.achieved, f.target),
                format!("{:.2}%", 100.0 * f.loss()),
                format!("{:.2} / {:.2} ms", f.offer_delay.1, f.ack_delay.1),
                disk.map_or("-".into(), |n| n.to_string()),
            ),
            None => ("none".into(), "-".into(), "-".into(), "-".into()),
        };
        let next = match &row.first_failure {
            Some(f) => format!("{}/s: {:.1}% lost, {:.0}/s achieved", f.target, 100.0 * f.loss(), f.achieved),
            None => "ladder's top reached".into(),
        };
        let (offer, ack) = match &row.latency {
            Ok(f) if f.acks == 0 => ("nothing received".into(), "-".into()),
            Ok(f) => (
                format!("{:.2} / {:.2} / {:.2} ms", f.offer_delay.0, f.offer_delay.1, f.offer_delay.2),
                format!("{:.2} / {:.2} / {:.2} ms", f.ack_delay.0, f.ack_delay.1, f.ack_delay.2),
            ),
            Err(e) => (format!("failed: {}", e.lines().next().unwrap_or_default()), "-".into()),
        };
        let prompt = match &row.prompt {
            Some(f) => format!("{:.0} /s ({:.2} / {:.2} ms)", f.achieved, f.offer_delay.1, f.ack_delay.1),
            None => "none".into(),
        };
        println!("| {} | {rate} | {lost} | {delay} | {disk} | {next} | {prompt} | {offer} | {ack} |", row.server);
    }
}
