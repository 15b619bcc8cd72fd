//! Benchmark of the operator on a fleet: N Machines (default 10,000) report their hardware
//! through the boot services, and the operator (`machinist-operator`, its own process, release
//! build) binds every one to a HardwareProfile and gives each a CMDB entry.
//!
//! The embedded API server runs as `machinist up --no-operator` (release build: `cargo build
//! --release -p machinist` first, or `MACHINIST_BENCH_UP=PATH`), a process of its own so that
//! its memory and CPU are its own. In this process: the boot services (HTTP only) as their
//! ServiceAccount `machinist-boot`, and the simulated agents, which post the QEMU fixture's
//! items with the agent's own client (`machinist_agent::sidecar::Sidecar`), 64 at a time. The
//! operator runs as a child process too, as its ServiceAccount `machinist-operator` (the
//! kubeconfigs `machinist up` writes).
//!
//! ```sh
//! cargo build --release -p machinist                                    # the API server
//! cargo bench -p machinist-operator --bench fleet                       # 10,000 Machines
//! cargo bench -p machinist-operator --bench fleet -- --machines 1000
//! cargo bench -p machinist-operator --bench fleet -- --concurrency 256  # the operator's --concurrency
//! ```
//!
//! `cargo bench` builds `machinist-operator` itself (with the bench profile, i.e. release)
//! and passes its path as `CARGO_BIN_EXE_machinist-operator`; `MACHINIST_BENCH_OPERATOR=PATH`
//! runs another binary.
//!
//! Figures (a Markdown table) and the final consistency checks go to stdout; progress goes to
//! stderr (Machines allocated every 10 s; the operator's metrics and both processes' memory
//! every 30 s). The run fails (exit code 1), after printing what the Machines left over look
//! like in the API server, if they are not all Allocated within 15 minutes of the first report
//! (`MACHINIST_BENCH_WITHIN_SECONDS` changes that), or if the final state is inconsistent.
//!
//! The operator's log goes to a file whose path is printed: `MACHINIST_BENCH_OPERATOR_LOG` sets
//! its `RUST_LOG` (e.g. `info,machinist_operator=debug,kube_runtime::watcher=debug`),
//! `MACHINIST_BENCH_LOGS=DIR` keeps it in DIR. This process logs warnings of the API server and
//! boot services on stderr (`RUST_LOG` changes that); `MACHINIST_BENCH_UP_LOG` is the API server's
//! `RUST_LOG` (`warn,machinist_apiserver::request=debug` logs every request with its time).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)] // a bench binary reports on stdout

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use machinist_agent::backoff::Backoff;
use machinist_agent::sidecar::Sidecar;
use machinist_agent_protocol::cmdline::{Args, Mode};
use machinist_agent_protocol::report::Report;
use machinist_crds::machine::MachinePhase;
use machinist_crds::{Cmdb, HardwareProfile, Machine, Quad};
use machinist_e2e::cluster::{BootServices, DEFAULT_TOKEN_NAMESPACE, MACHINE_ANNOTATION};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// mimalloc, not glibc malloc: allocation was a third of the API server's CPU under a fleet of
/// writes, and glibc fragments across many threads (see the workspace Cargo.toml).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Reports (and creates) in flight at once.
const IN_FLIGHT: usize = 64;

/// How long every wait may take: 15 minutes, or `MACHINIST_BENCH_WITHIN_SECONDS`.
fn within() -> Duration {
    let seconds = std::env::var("MACHINIST_BENCH_WITHIN_SECONDS").ok().and_then(|s| s.parse().ok());
    Duration::from_secs(seconds.unwrap_or(15 * 60))
}
/// Progress lines on stderr while waiting.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
const PROFILE: &str = "fleet";
const CMDB: &str = "pool";

struct Options {
    machines: usize,
    concurrency: Option<u16>,
}

impl Options {
    fn parse() -> Options {
        let usage = "usage: fleet [--machines N (1..=65536, default 10000)] [--concurrency N (the operator's)]";
        let mut options = Options { machines: 10_000, concurrency: None };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = |name: &str| -> usize {
                args.next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("{name} needs a positive number\n{usage}"))
            };
            match arg.as_str() {
                "--machines" => options.machines = value("--machines"),
                "--concurrency" => {
                    options.concurrency =
                        Some(u16::try_from(value("--concurrency")).expect("--concurrency below 65536"))
                }
                "--bench" => {} // cargo bench passes it
                other => panic!("unknown argument {other}\n{usage}"),
            }
        }
        // One generate block gives the Cmdb its entries, and a block stops at 65,536.
        assert!((1..=65_536).contains(&options.machines), "{usage}");
        options
    }
}

/// The items of a QEMU virtual machine, as the agent reports them.
fn qemu_items() -> Vec<Quad> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../agent/tests/fixtures/qemu-vm.items.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The embedded API server in a process of its own (`machinist up --no-operator`, release
/// build), so that its resident memory is its own; the boot services in this process, as its
/// ServiceAccount `machinist-boot` (the identity `machinist up` gives them).
struct Cluster {
    /// The operator's ServiceAccount kubeconfig, written by `machinist up`.
    operator_kubeconfig: PathBuf,
    /// The admin's client (the bench creates the pool and the Machines as a person would).
    client: Client,
    http: String,
    api_server: Child,
    _boot: BootServices,
    /// Its home, logs and artifacts; removed when done.
    dir: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.api_server.kill();
        let _ = self.api_server.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `machinist` binary: `MACHINIST_BENCH_UP`, else the one beside this bench's build
/// (`cargo build --release -p machinist`).
fn machinist_binary() -> PathBuf {
    let binary = std::env::var_os("MACHINIST_BENCH_UP").map_or_else(
        || {
            let exe = std::env::current_exe().unwrap();
            // target/release/deps/fleet-… → target/release/machinist
            exe.parent().and_then(Path::parent).unwrap().join("machinist")
        },
        PathBuf::from,
    );
    assert!(
        binary.is_file(),
        "{} is missing: build it with `cargo build --release -p machinist` (or set MACHINIST_BENCH_UP)",
        binary.display()
    );
    binary
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = std::env::temp_dir().join(format!("machinist-fleet-run-{}", std::process::id()));
        let home = dir.join("home");
        let mut api_server = Command::new(machinist_binary())
            .args(["up", "--no-operator", "--listen", "127.0.0.1:0", "--home"])
            .arg(&home)
            // `MACHINIST_BENCH_UP_LOG`: the API server's RUST_LOG (its request log:
            // `warn,machinist_apiserver::request=debug`).
            .env("RUST_LOG", std::env::var("MACHINIST_BENCH_UP_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = api_server.stderr.take().unwrap();
        let (found, announced) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut found = Some(found);
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                match line.trim().strip_prefix("export KUBECONFIG=") {
                    Some(path) => {
                        if let Some(found) = found.take() {
                            let _ = found.send(PathBuf::from(path));
                        }
                    }
                    None => eprintln!("machinist up: {line}"),
                }
            }
        });
        let kubeconfig = tokio::time::timeout(Duration::from_secs(60), announced)
            .await
            .expect("machinist up did not announce its kubeconfig within 60 s")
            .expect("machinist up exited before announcing its kubeconfig");
        // 10,000 Machines' writes queue behind each other: a long read timeout.
        let client = machinist_e2e::cluster::client_for(&kubeconfig, Duration::from_secs(120)).await.unwrap();
        let artifacts = dir.join("artifacts");
        std::fs::create_dir_all(&artifacts).unwrap();
        let boot_client =
            machinist_e2e::cluster::client_for(&home.join("machinist-boot.kubeconfig"), Duration::from_secs(120))
                .await
                .unwrap();
        let boot = BootServices::start_as(boot_client, &BootServices::http_only(&artifacts)).await.unwrap();
        let http = boot.http_url().unwrap();
        Cluster {
            operator_kubeconfig: home.join("machinist-operator.kubeconfig"),
            client,
            http,
            api_server,
            _boot: boot,
            dir,
        }
    }

    /// The API server's resident memory.
    fn api_server_status(&self) -> ProcStatus {
        ProcStatus::read(self.api_server.id())
    }

    /// The agent token Secrets.
    fn token_secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), DEFAULT_TOKEN_NAMESPACE)
    }

    fn api<K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>>(&self) -> Api<K> {
        Api::default_namespaced(self.client.clone())
    }

    /// An unlimited profile whose one rule every QEMU report passes, and a Cmdb of exactly `n`
    /// generated entries (distinct addresses and host names).
    async fn apply_pool(&self, n: usize) {
        let profile: HardwareProfile = serde_json::from_value(json!({
            "apiVersion": "machinist.dev/v1alpha1", "kind": "HardwareProfile", "metadata": {"name": PROFILE},
            "spec": {"priority": 1, "match": [["disk", "$disk", "size", "gt(1)"]], "cmdbRef": {"name": CMDB}},
        }))
        .unwrap();
        self.api::<HardwareProfile>().create(&PostParams::default(), &profile).await.unwrap();
        // The address pattern gives 16 million; the host names stop the block at `n`.
        let cmdb: Cmdb = serde_json::from_value(json!({
            "apiVersion": "machinist.dev/v1alpha1", "kind": "Cmdb", "metadata": {"name": CMDB},
            "spec": {
                "generate": [{"patterns": {"ip": "10.0-255.0-255.1-250", "hostname": format!("node1-{n}")}}],
                "network": {"netmask": "255.0.0.0", "gateway": "10.0.0.254"},
            },
        }))
        .unwrap();
        self.api::<Cmdb>().create(&PostParams::default(), &cmdb).await.unwrap();
    }

    /// Machines `m00000`…, created `IN_FLIGHT` at a time.
    async fn create_machines(&self, n: usize) -> Vec<String> {
        let api = self.api::<Machine>();
        let names: Vec<String> = (0..n).map(|i| format!("m{i:05}")).collect();
        futures::stream::iter(names.iter().enumerate())
            .map(|(i, name)| {
                let api = api.clone();
                let machine: Machine = serde_json::from_value(json!({
                    "apiVersion": "machinist.dev/v1alpha1", "kind": "Machine", "metadata": {"name": name},
                    "spec": {"interfaces": [{"mac": format!("52:54:00:{:02x}:{:02x}:{:02x}", i >> 16 & 0xff, i >> 8 & 0xff, i & 0xff)}],
                             "provider": {"manual": {}}},
                }))
                .unwrap();
                async move { api.create(&PostParams::default(), &machine).await.unwrap() }
            })
            .buffer_unordered(IN_FLIGHT)
            .for_each(|_| async {})
            .await;
        names
    }
}

/// What `follow` keeps of each object, and whether it counts towards the goal.
trait Tracked: Send + 'static {
    fn hit(&self) -> bool;
}

impl Tracked for Option<MachinePhase> {
    fn hit(&self) -> bool {
        *self == Some(MachinePhase::Allocated)
    }
}

impl Tracked for String {
    fn hit(&self) -> bool {
        true
    }
}

/// What `follow` saw.
struct Followed<V> {
    /// When the target was reached; `None`: not within the time allowed.
    done: Option<Instant>,
    /// The last value of every object, by name.
    kept: HashMap<String, V>,
    /// When each object first became a hit.
    hit_at: HashMap<String, Instant>,
}

/// Follows `api` with a watcher (which lists again when its watch expires), keeping
/// `entry(object)` by name, until `target` of them are hits or the time allowed is over.
/// `ready` is told once the first list is in. The count is kept as events arrive (no scan per
/// event), and progress goes to stderr.
async fn follow<K, V>(
    api: Api<K>,
    what: &str,
    target: usize,
    entry: impl Fn(&K) -> Option<(String, V)>,
    ready: Option<tokio::sync::oneshot::Sender<()>>,
) -> Followed<V>
where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    V: Tracked + std::fmt::Debug,
{
    let mut events = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
    let mut kept: HashMap<String, V> = HashMap::new();
    let mut hits = 0usize;
    let mut hit_at: HashMap<String, Instant> = HashMap::new();
    let mut listing: Option<HashMap<String, V>> = None;
    let mut listed = false;
    let mut ready = ready;
    let mut progress = tokio::time::interval(PROGRESS_EVERY);
    progress.tick().await;
    let deadline = tokio::time::sleep(within());
    let mut deadline = std::pin::pin!(deadline);
    let started = Instant::now();
    loop {
        let event = tokio::select! {
            event = events.next() => event,
            _ = progress.tick() => {
                eprintln!("  [{:>5.0} s] {what}: {hits} of {target}", started.elapsed().as_secs_f64());
                continue;
            }
            () = &mut deadline => return Followed { done: None, kept, hit_at },
        };
        match event {
            None => panic!("{what}: the watch ended"),
            Some(Err(error)) => {
                eprintln!("  {what}: watch error (retried): {error}");
                continue;
            }
            Some(Ok(watcher::Event::Init)) => listing = Some(HashMap::new()),
            Some(Ok(watcher::Event::InitApply(object))) => {
                if let (Some(listing), Some((name, value))) = (listing.as_mut(), entry(&object)) {
                    listing.insert(name, value);
                }
            }
            Some(Ok(watcher::Event::InitDone)) => {
                kept = listing.take().unwrap_or_default();
                hits = kept.values().filter(|v| v.hit()).count();
                let now = Instant::now();
                for (name, _) in kept.iter().filter(|(_, v)| v.hit()) {
                    hit_at.entry(name.clone()).or_insert(now);
                }
                listed = true;
                if let Some(ready) = ready.take() {
                    let _ = ready.send(());
                }
            }
            Some(Ok(watcher::Event::Apply(object))) => {
                if let Some((name, value)) = entry(&object) {
                    hits += usize::from(value.hit());
                    if value.hit() {
                        hit_at.entry(name.clone()).or_insert_with(Instant::now);
                    }
                    if let Some(old) = kept.insert(name, value) {
                        hits -= usize::from(old.hit());
                    }
                }
            }
            Some(Ok(watcher::Event::Delete(object))) => {
                if let Some((name, _)) = entry(&object)
                    && let Some(old) = kept.remove(&name)
                {
                    hits -= usize::from(old.hit());
                }
            }
        }
        if listed && hits >= target {
            return Followed { done: Some(Instant::now()), kept, hit_at };
        }
    }
}

/// The operator, as its own process.
struct Operator {
    child: Child,
    metrics: String,
    log: PathBuf,
}

impl Operator {
    fn spawn(cluster: &Cluster, logs: &Path, concurrency: Option<u16>) -> Operator {
        let binary = std::env::var_os("MACHINIST_BENCH_OPERATOR")
            .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_machinist-operator")), PathBuf::from);
        assert!(
            binary.is_file(),
            "{} is missing: run the bench with `cargo bench -p machinist-operator --bench fleet` (which builds it), \
             or build it with `cargo build --release -p machinist-operator`",
            binary.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let metrics = format!("127.0.0.1:{port}");
        let log = logs.join("operator.log");
        let mut command = Command::new(&binary);
        command.args(["--kubeconfig", cluster.operator_kubeconfig.to_str().unwrap(), "--namespace", "default"]);
        command.args(["--metrics-listen", &metrics, "--no-leader-election"]);
        if let Some(concurrency) = concurrency {
            command.args(["--concurrency", &concurrency.to_string()]);
        }
        match std::env::var_os("MACHINIST_BENCH_OPERATOR_LOG") {
            Some(filter) => command.env("RUST_LOG", filter),
            None => command.env_remove("RUST_LOG"), // the operator's default: info,kube_runtime=warn
        };
        let child = command
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("failed to start {}: {e}", binary.display()));
        Operator { child, metrics, log }
    }

    async fn get(&self, path: &str) -> Option<String> {
        http_get(&self.metrics, path).await
    }

    /// Waits until `/readyz` says it leads (caches synced).
    async fn wait_ready(&mut self) {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(120) {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the operator exited ({status}); see {}", self.log.display());
            }
            if self.get("/readyz").await.is_some_and(|r| r.contains(" 200 ")) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the operator was not ready within 120 s; see {}", self.log.display());
    }

    async fn metrics(&self) -> Samples {
        Samples::parse(&self.get("/metrics").await.expect("the operator's /metrics did not answer"))
    }

    /// Every 30 s, on stderr: what the operator's metrics and both processes' memory say.
    fn sample_every_30_s(&self, api_server: u32) -> tokio::task::JoinHandle<()> {
        let (address, pid, started) = (self.metrics.clone(), self.child.id(), Instant::now());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(reply) = http_get(&address, "/metrics").await else { continue };
                let m = Samples::parse(&reply);
                let phases: Vec<String> = m
                    .matching("machinist_operator_machines", &[])
                    .map(|(l, v)| format!("{}={v}", l.get("phase").map_or("", String::as_str)))
                    .collect();
                let (operator, server, bench) =
                    (ProcStatus::read(pid), ProcStatus::read(api_server), ProcStatus::read(std::process::id()));
                eprintln!(
                    "  [{:>5.0} s] operator: {} machine reconciles, cache {}, ledger writes {} Cmdb / {} HardwareProfile, \
                     failures {}; resident {} (operator), {} (API server), {} (boot services + agents); load {}",
                    started.elapsed().as_secs_f64(),
                    m.get("machinist_operator_reconciles_total", &[("controller", "machine")]),
                    phases.join(" "),
                    m.get("machinist_operator_ledger_writes_total", &[("kind", "Cmdb")]),
                    m.get("machinist_operator_ledger_writes_total", &[("kind", "HardwareProfile")]),
                    m.get("machinist_operator_reconcile_failures_total", &[]),
                    mib(operator.rss_kib),
                    mib(server.rss_kib),
                    mib(bench.rss_kib),
                    load_average()
                );
            }
        })
    }

    fn status(&self) -> ProcStatus {
        ProcStatus::read(self.child.id())
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn http_get(address: &str, path: &str) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes()).await.ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.ok()?;
    Some(reply)
}

/// Memory and CPU time of a process, from /proc.
#[derive(Clone, Copy, Default)]
struct ProcStatus {
    rss_kib: u64,
    hwm_kib: u64,
    cpu_seconds: f64,
}

impl ProcStatus {
    fn read(pid: u32) -> ProcStatus {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let kib = |key: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        // utime and stime are the 14th and 15th fields, in clock ticks (USER_HZ, 100 on Linux).
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
        ProcStatus {
            rss_kib: kib("VmRSS:"),
            hwm_kib: kib("VmHWM:"),
            cpu_seconds: (ticks(11) + ticks(12)) as f64 / 100.0,
        }
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Samples of the Prometheus text format: name, labels, value.
struct Samples(Vec<(String, BTreeMap<String, String>, f64)>);

impl Samples {
    fn parse(reply: &str) -> Samples {
        let body = reply.split_once("\r\n\r\n").map_or(reply, |(_, body)| body);
        let mut samples = Vec::new();
        for line in body.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let Some((series, value)) = line.rsplit_once(' ') else { continue };
            let Ok(value) = value.parse::<f64>() else { continue };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let labels = rest
                        .trim_end_matches('}')
                        .split(',')
                        .filter_map(|pair| {
                            let (k, v) = pair.split_once('=')?;
                            Some((k.to_owned(), v.trim_matches('"').to_owned()))
                        })
                        .collect();
                    (name.to_owned(), labels)
                }
                None => (series.to_owned(), BTreeMap::new()),
            };
            samples.push((name, labels, value));
        }
        Samples(samples)
    }

    /// The sum of the samples of `name` carrying every label of `labels`.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).fold(0.0, |sum, (_, v)| sum + v)
    }

    fn matching<'s>(
        &'s self,
        name: &'s str,
        labels: &'s [(&'s str, &'s str)],
    ) -> impl Iterator<Item = (&'s BTreeMap<String, String>, f64)> + 's {
        self.0
            .iter()
            .filter(move |(n, l, _)| n == name && labels.iter().all(|(k, v)| l.get(*k).is_some_and(|x| x == v)))
            .map(|(_, l, v)| (l, *v))
    }

    /// Quantile `q` of the observations between `before` and `self` of histogram `name`
    /// (upper bound of the bucket it falls in).
    fn quantile(&self, before: &Samples, name: &str, labels: &[(&str, &str)], q: f64) -> Option<f64> {
        let bucket = format!("{name}_bucket");
        let buckets = |s: &Samples| -> Vec<(f64, f64)> {
            let mut b: Vec<(f64, f64)> =
                s.matching(&bucket, labels).filter_map(|(l, v)| Some((l.get("le")?.parse::<f64>().ok()?, v))).collect();
            b.sort_by(|x, y| x.0.total_cmp(&y.0));
            b
        };
        let (now, then) = (buckets(self), buckets(before));
        let count = |i: usize| now[i].1 - then.iter().find(|(le, _)| *le == now[i].0).map_or(0.0, |(_, v)| *v);
        let total = count(now.len().checked_sub(1)?);
        (0..now.len()).find(|&i| count(i) >= q * total && total > 0.0).map(|i| now[i].0)
    }
}

fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

/// The `p` quantile of sorted `samples` (zero if there are none).
fn at(samples: &[Duration], p: f64) -> Duration {
    let Some(last) = samples.len().checked_sub(1) else { return Duration::ZERO };
    samples[(last as f64 * p).round() as usize]
}

/// A non-negative count or rate, rounded, with thousands separators.
fn thousands(n: f64) -> String {
    let digits = format!("{:.0}", n.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// What the Machines not Allocated look like in the API server (not in a watch), and where the
/// operator's log is kept.
async fn diagnose(cluster: &Cluster, kept: &HashMap<String, Option<MachinePhase>>, metrics: &Samples, log: &Path) {
    let mut seen = BTreeMap::<String, usize>::new();
    for phase in kept.values() {
        *seen.entry(format!("{phase:?}")).or_default() += 1;
    }
    eprintln!("phases as the bench's watch saw them: {seen:?}");
    let machines = cluster.api::<Machine>().list(&ListParams::default()).await.unwrap().items;
    let mut kinds = BTreeMap::<String, Vec<&Machine>>::new();
    for m in &machines {
        let status = m.status.clone().unwrap_or_default();
        if status.phase == Some(MachinePhase::Allocated) {
            continue;
        }
        let kind = format!(
            "phase {:?}, finalizer {}, hardware {}, profile {}, allocation {}",
            status.phase,
            !m.finalizers().is_empty(),
            status.hardware.is_some(),
            status.profile.is_some(),
            status.allocation.is_some()
        );
        kinds.entry(kind).or_default().push(m);
    }
    let allocated = machines.len() - kinds.values().map(Vec::len).sum::<usize>();
    eprintln!("in the API server: {allocated} of {} Allocated; the others:", machines.len());
    for (kind, stuck) in &kinds {
        eprintln!("  {:>6}  {kind}", stuck.len());
        for m in stuck.iter().take(3) {
            let status = m.status.clone().unwrap_or_default();
            let conditions: Vec<String> =
                status.conditions.iter().map(|c| format!("{}={} {}", c.type_, c.status, c.reason)).collect();
            eprintln!(
                "          e.g. {} (resourceVersion {}, finalizers {:?}, conditions {conditions:?})",
                m.name_any(),
                m.resource_version().unwrap_or_default(),
                m.finalizers()
            );
        }
    }
    let failures: Vec<String> = metrics
        .matching("machinist_operator_reconcile_failures_total", &[])
        .map(|(l, v)| format!("{l:?} {v}"))
        .collect();
    let cache: Vec<String> = metrics
        .matching("machinist_operator_machines", &[])
        .map(|(l, v)| format!("{}={v}", l.get("phase").map_or("", String::as_str)))
        .collect();
    eprintln!("operator: reconcile failures {failures:?}; its Machine cache: {}", cache.join(" "));
    if std::env::var_os("MACHINIST_BENCH_LOGS").is_none() {
        let kept_dir = std::env::temp_dir().join(format!("machinist-fleet-{}", std::process::id()));
        std::fs::create_dir_all(&kept_dir).unwrap();
        std::fs::copy(log, kept_dir.join("operator.log")).unwrap();
        eprintln!("operator log kept in {}", kept_dir.display());
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let options = Options::parse();
    let n = options.machines;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let load_start = load_average();
    let cluster = Cluster::start().await;
    let logs = std::env::var_os("MACHINIST_BENCH_LOGS").map_or_else(|| cluster.dir.join("logs"), PathBuf::from);
    std::fs::create_dir_all(&logs).unwrap();
    cluster.apply_pool(n).await;
    let mut operator = Operator::spawn(&cluster, &logs, options.concurrency);
    eprintln!("fleet: {n} Machines; operator log: {}", operator.log.display());
    operator.wait_ready().await;
    let idle = operator.status();

    // Machines and their agent tokens (the boot services make them).
    let t = Instant::now();
    let names = cluster.create_machines(n).await;
    let creates = t.elapsed();
    let tokens = follow(
        cluster.token_secrets(),
        "agent tokens",
        n,
        |secret: &Secret| {
            let machine = secret.annotations().get(MACHINE_ANNOTATION)?.clone();
            let token = String::from_utf8(secret.data.as_ref()?.get("token")?.0.clone()).ok()?;
            Some((machine, token))
        },
        None,
    )
    .await;
    assert!(tokens.done.is_some(), "agent tokens: {} of {n} within {:?}", tokens.kept.len(), within());
    let tokens = tokens.kept;
    let tokens_ready = t.elapsed();
    assert!(names.iter().all(|name| tokens.contains_key(name)));

    // Follow the Machines from before the first report.
    let (ready, listed) = tokio::sync::oneshot::channel();
    let allocated = tokio::spawn(follow(
        cluster.api::<Machine>(),
        "Machines allocated",
        n,
        |m: &Machine| Some((m.name_any(), m.status.as_ref().and_then(|s| s.phase))),
        Some(ready),
    ));
    listed.await.unwrap();
    let sampler = operator.sample_every_30_s(cluster.api_server.id());
    let before_metrics = operator.metrics().await;
    let before = operator.status();
    let bench_before = ProcStatus::read(std::process::id());
    let server_before = cluster.api_server_status();

    // Every Machine reports, IN_FLIGHT at a time, through the agent's client.
    let report = Arc::new(Report { items: qemu_items() });
    let first_report = Instant::now();
    let posted: Vec<(String, Duration, u32, Instant)> = futures::stream::iter(tokens)
        .map(|(machine, token)| {
            let (url, report) = (cluster.http.clone(), report.clone());
            tokio::task::spawn_blocking(move || {
                let args = Args {
                    url,
                    machine: machine.clone(),
                    token,
                    mac: String::new(),
                    mode: Mode::Discovery,
                    on_success: machinist_crds::machine::OnSuccess::Halt,
                    debug: false,
                    role: None,
                };
                let backoff = Backoff { base: Duration::from_millis(50), cap: Duration::from_secs(1), attempts: 20 };
                let mut retries = 0u32;
                let t = Instant::now();
                Sidecar::new(&args, backoff)
                    .report(&report, |_, _| retries += 1)
                    .unwrap_or_else(|e| panic!("report of {machine}: {e}"));
                (machine, t.elapsed(), retries, Instant::now())
            })
        })
        .buffer_unordered(IN_FLIGHT)
        .map(|joined| joined.unwrap())
        .collect()
        .await;
    let reports_done = first_report.elapsed();
    eprintln!("  all {n} reports posted after {:.1} s", reports_done.as_secs_f64());

    let outcome = allocated.await.unwrap();
    sampler.abort();
    let after_metrics = operator.metrics().await;
    let after = operator.status();
    let bench_after = ProcStatus::read(std::process::id());
    let server_after = cluster.api_server_status();
    let all_allocated = match outcome.done {
        Some(at) => at.duration_since(first_report),
        None => {
            diagnose(&cluster, &outcome.kept, &after_metrics, &operator.log).await;
            eprintln!("not every Machine was Allocated within {:?} after the first report", within());
            drop(operator);
            drop(cluster);
            std::process::exit(1);
        }
    };
    let machines = cluster.api::<Machine>().list(&ListParams::default()).await.unwrap().items;
    // Each Machine's wait: its report acknowledged → Allocated seen.
    let mut waits: Vec<Duration> = posted
        .iter()
        .filter_map(|(machine, _, _, acked)| Some(outcome.hit_at.get(machine)?.saturating_duration_since(*acked)))
        .collect();
    waits.sort();
    let load_end = load_average();

    // The final state: every Machine allocated once, from the pool, through the profile.
    let mut checks: Vec<(String, bool)> = Vec::new();
    let status = |m: &Machine| m.status.clone().unwrap_or_default();
    let allocated_count = machines.iter().filter(|m| status(m).phase == Some(MachinePhase::Allocated)).count();
    checks.push((format!("{allocated_count} of {n} Machines Allocated"), allocated_count == n));
    let bound = machines.iter().filter(|m| status(m).profile.as_deref() == Some(PROFILE)).count();
    checks.push((format!("{bound} Machines bound to profile {PROFILE}"), bound == n));
    let entries: BTreeSet<i32> =
        machines.iter().filter_map(|m| status(m).allocation.filter(|a| a.cmdb == CMDB).map(|a| a.entry)).collect();
    checks.push((format!("{} distinct CMDB entries held by the Machines", entries.len()), entries.len() == n));
    let ips: BTreeSet<String> = machines.iter().filter_map(|m| status(m).ip).collect();
    checks.push((format!("{} distinct addresses in status.ip", ips.len()), ips.len() == n));
    let cmdb_object = cluster.api::<Cmdb>().get(CMDB).await.unwrap();
    let cmdb_bytes = serde_json::to_vec(&cmdb_object).unwrap().len();
    let cmdb = cmdb_object.status.unwrap_or_default();
    let records: BTreeSet<i32> = cmdb.allocations.iter().map(|r| r.entry).collect();
    checks.push((
        format!(
            "Cmdb {CMDB}: total {}, free {}, {} allocation records ({} distinct entries, same as the Machines': {})",
            cmdb.total,
            cmdb.free,
            cmdb.allocations.len(),
            records.len(),
            records == entries
        ),
        cmdb.total as usize == n && cmdb.free == 0 && cmdb.allocations.len() == n && records == entries,
    ));
    let profile_object = cluster.api::<HardwareProfile>().get(PROFILE).await.unwrap();
    let profile_bytes = serde_json::to_vec(&profile_object).unwrap().len();
    let profile = profile_object.status.unwrap_or_default();
    checks.push((
        format!(
            "HardwareProfile {PROFILE}: boundCount {}, {} in boundMachines",
            profile.bound_count,
            profile.bound_machines.len()
        ),
        profile.bound_count as usize == n && profile.bound_machines.len() == n,
    ));

    // Figures.
    let window = all_allocated.as_secs_f64();
    let machine = [("controller", "machine")];
    let reconciles = after_metrics.get("machinist_operator_reconciles_total", &machine)
        - before_metrics.get("machinist_operator_reconciles_total", &machine);
    let duration = "machinist_operator_reconcile_duration_seconds";
    let duration_sum = after_metrics.get(&format!("{duration}_sum"), &machine)
        - before_metrics.get(&format!("{duration}_sum"), &machine);
    let duration_count = after_metrics.get(&format!("{duration}_count"), &machine)
        - before_metrics.get(&format!("{duration}_count"), &machine);
    let quantile = |q: f64| {
        after_metrics
            .quantile(&before_metrics, duration, &machine, q)
            .map_or("-".to_owned(), |s| format!("≤ {:.1} ms", s * 1e3))
    };
    let mut latencies: Vec<Duration> = posted.iter().map(|(_, d, _, _)| *d).collect();
    latencies.sort();
    let percentile = |p: f64| at(&latencies, p).as_secs_f64() * 1e3;
    let retries: u32 = posted.iter().map(|(_, _, r, _)| r).sum();
    let delta =
        |name: &str, labels: &[(&str, &str)]| after_metrics.get(name, labels) - before_metrics.get(name, labels);
    let concurrency = options.concurrency.map_or("128 (default)".to_owned(), |c| c.to_string());

    println!("fleet benchmark: {n} Machines reporting through the boot services; operator --concurrency {concurrency}");
    println!(
        "  (API server and operator in processes of their own, boot services and agents in the bench; {IN_FLIGHT} reports in flight)"
    );
    println!("| measure | figure |");
    println!("|---|---|");
    println!(
        "| Machines created ({IN_FLIGHT} at a time) | {:.1} s ({} /s); all agent tokens after {:.1} s |",
        creates.as_secs_f64(),
        thousands(n as f64 / creates.as_secs_f64()),
        tokens_ready.as_secs_f64()
    );
    println!(
        "| reports posted (204 from the boot services) | {} /s ({n} in {:.1} s); latency p50 {:.1} ms, p99 {:.1} ms, max {:.0} ms; {retries} retries |",
        thousands(n as f64 / reports_done.as_secs_f64()),
        reports_done.as_secs_f64(),
        percentile(0.5),
        percentile(0.99),
        percentile(1.0)
    );
    println!("| first report → all {n} Allocated | {window:.1} s ({} Machines/s) |", thousands(n as f64 / window));
    println!(
        "| each Machine: report acknowledged → Allocated | p50 {:.1} s, p90 {:.1} s, p99 {:.1} s, max {:.1} s |",
        at(&waits, 0.5).as_secs_f64(),
        at(&waits, 0.9).as_secs_f64(),
        at(&waits, 0.99).as_secs_f64(),
        at(&waits, 1.0).as_secs_f64()
    );
    println!(
        "| machine reconciles in that window | {} ({} /s, {:.1} per Machine); mean {:.1} ms, p50 {}, p99 {} |",
        thousands(reconciles),
        thousands(reconciles / window),
        reconciles / n as f64,
        if duration_count > 0.0 { duration_sum / duration_count * 1e3 } else { 0.0 },
        quantile(0.5),
        quantile(0.99)
    );
    for (labels, _) in after_metrics.matching("machinist_operator_reconciles_total", &[]) {
        let controller = labels.get("controller").map_or("", String::as_str);
        if controller != "machine" {
            let count = delta("machinist_operator_reconciles_total", &[("controller", controller)]);
            println!("| {controller} reconciles in that window | {} |", thousands(count));
        }
    }
    let failures: Vec<String> = after_metrics
        .matching("machinist_operator_reconcile_failures_total", &[])
        .map(|(l, _)| {
            let labels: Vec<(&str, &str)> = l.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let count = delta("machinist_operator_reconcile_failures_total", &labels);
            format!(
                "{} {}: {}",
                l.get("controller").cloned().unwrap_or_default(),
                l.get("reason").cloned().unwrap_or_default(),
                count
            )
        })
        .collect();
    println!(
        "| reconcile failures in that window | {} |",
        if failures.is_empty() { "none".to_owned() } else { failures.join(", ") }
    );
    for kind in ["HardwareProfile", "Cmdb"] {
        let k = [("kind", kind)];
        let writes = delta("machinist_operator_ledger_writes_total", &k);
        let requests = delta("machinist_operator_ledger_requests_total", &k);
        let conflicts = delta("machinist_operator_ledger_conflicts_total", &k);
        println!(
            "| ledger writes, {kind} | {} writes carrying {} requests ({:.1} per write), {} conflicts (409) |",
            thousands(writes),
            thousands(requests),
            if writes > 0.0 { requests / writes } else { 0.0 },
            thousands(conflicts)
        );
    }
    println!(
        "| operator resident memory | {} idle (before the Machines); {} before the reports; peak (VmHWM) {}; {} at the end |",
        mib(idle.rss_kib),
        mib(before.rss_kib),
        mib(after.hwm_kib),
        mib(after.rss_kib)
    );
    println!(
        "| CPU time in that window | operator {:.1} s ({:.0}% of one core); API server {:.1} s ({:.0}%); boot services + agents {:.1} s ({:.0}%) |",
        after.cpu_seconds - before.cpu_seconds,
        (after.cpu_seconds - before.cpu_seconds) / window * 100.0,
        server_after.cpu_seconds - server_before.cpu_seconds,
        (server_after.cpu_seconds - server_before.cpu_seconds) / window * 100.0,
        bench_after.cpu_seconds - bench_before.cpu_seconds,
        (bench_after.cpu_seconds - bench_before.cpu_seconds) / window * 100.0
    );
    println!(
        "| API server resident memory | {} before the reports; peak (VmHWM) {}; {} at the end |",
        mib(server_before.rss_kib),
        mib(server_after.hwm_kib),
        mib(server_after.rss_kib)
    );
    println!(
        "| boot services + simulated agents (this process), resident | peak (VmHWM) {}; {} at the end |",
        mib(bench_after.hwm_kib),
        mib(bench_after.rss_kib)
    );
    println!(
        "| ledger objects at the end (JSON) | Cmdb {CMDB} {:.0} KiB, HardwareProfile {PROFILE} {:.0} KiB |",
        cmdb_bytes as f64 / 1024.0,
        profile_bytes as f64 / 1024.0
    );
    println!("| load average (1, 5, 15 min) | {load_start} at the start, {load_end} at the end |");
    println!();
    let mut consistent = true;
    for (check, ok) in &checks {
        println!("  {} {check}", if *ok { "ok    " } else { "FAILED" });
        consistent &= ok;
    }
    drop(operator);
    drop(cluster);
    if !consistent {
        std::process::exit(1);
    }
}
