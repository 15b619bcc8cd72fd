#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a benchmark failing is a panic
#![allow(clippy::print_stdout)] // the figures are this benchmark's output
//! Artifact download throughput: a 256 MiB file under `/artifacts/` fetched by curl from
//! machinist's HTTP router (`http::router` + `http::serve`, on a two-worker runtime as
//! `#[tokio::main]` gives on these 2 cores) and from nginx (`sendfile on`, Debian's default
//! `worker_processes auto`), both on 127.0.0.1, in one run, printed side by side: one download
//! at a time, and four at once. Runs alternate between the servers; the best of
//! `MACHINIST_BENCH_REPS` (10) is kept after one warm-up download each. Every download's size is
//! checked, and one download from each server is compared byte for byte with the file.
//!
//! `cargo bench -p machinist-boot --bench http`. nginx is looked up in `MACHINIST_BENCH_NGINX`,
//! then `.tools/peers/nginx` (`scripts/bench-peers` unpacks it there: installing the package
//! would start a service), then `PATH` and `/usr/sbin`; without it machinist alone is measured
//! (or the run fails under `MACHINIST_E2E=require`). `MACHINIST_BENCH_MIB` sets the file size,
//! `MACHINIST_BENCH_PARALLEL` the concurrent downloads (4).

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use machinist_boot::http::{self, HttpConfig};
use machinist_boot::machines::InMemoryMachines;
use machinist_e2e::prereq::{self, Mode, Verdict, find_program};
use tokio_util::sync::CancellationToken;

/// How long one download may take before the benchmark gives up.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a server may take to answer its first request.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
const FILE: &str = "bench.bin";

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `/proc/loadavg`'s first three figures: other builds share these 2 cores.
fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// Machinist's server on its own runtime thread; stopped and joined on drop.
struct Machinist {
    addr: SocketAddr,
    token: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Machinist {
    fn start(root: &Path) -> Self {
        let listener = StdListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let config: HttpConfig = serde_json::from_value(serde_json::json!({
            "listen": addr.to_string(),
            "publicUrl": format!("http://{addr}"),
            "artifactRoot": root,
            "ramdisk": {"kernel": "vmlinuz", "initrd": "initrd"},
        }))
        .unwrap();
        let settings = config.validate().unwrap();
        let machines = Arc::new(InMemoryMachines::new());
        let token = CancellationToken::new();
        let t = token.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let router = http::router(settings, machines.clone(), machines);
                http::serve(listener, router, t).await.unwrap();
            });
        });
        Self { addr, token, thread: Some(thread) }
    }
}

impl Drop for Machinist {
    fn drop(&mut self) {
        self.token.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// nginx in the foreground with a generated configuration in `dir`; killed on drop.
struct Nginx {
    addr: SocketAddr,
    child: Child,
}

impl Nginx {
    fn start(binary: &Path, dir: &Path, root: &Path) -> Self {
        let port = StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let d = dir.display();
        let config = format!(
            "daemon off;\n\
             worker_processes auto;\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n\
             \x20 access_log off;\n\
             \x20 sendfile on;\n\
             \x20 tcp_nopush on;\n\
             \x20 default_type application/octet-stream;\n\
             \x20 client_body_temp_path {d}/body;\n\
             \x20 proxy_temp_path {d}/proxy;\n\
             \x20 fastcgi_temp_path {d}/fastcgi;\n\
             \x20 uwsgi_temp_path {d}/uwsgi;\n\
             \x20 scgi_temp_path {d}/scgi;\n\
             \x20 server {{\n\
             \x20   listen {addr};\n\
             \x20   location /artifacts/ {{ alias {}/; }}\n\
             \x20 }}\n\
             }}\n",
            root.display()
        );
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config).unwrap();
        let lib = binary.parent().and_then(Path::parent).and_then(Path::parent).unwrap_or(Path::new("/"));
        let child = Command::new(binary)
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf)
            .env(
                "LD_LIBRARY_PATH",
                format!(
                    "{}:{}",
                    lib.join("usr/lib/x86_64-linux-gnu").display(),
                    lib.join("lib/x86_64-linux-gnu").display()
                ),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("failed to start {}: {e}", binary.display()));
        Self { addr, child }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers; SIGKILL after a grace period.
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts curl fetching `url` into `out` (`/dev/null` when timing).
fn curl(url: &str, out: &Path) -> Child {
    Command::new("curl")
        .args(["-sS", "--fail", "--max-time", &DOWNLOAD_TIMEOUT.as_secs().to_string(), "-w", "%{size_download}"])
        .arg("-o")
        .arg(out)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for a curl started by [`curl`] and checks it received `len` bytes.
fn finish(child: Child, len: u64) -> Result<(), String> {
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let got: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
    if !out.status.success() || got != len {
        return Err(format!("curl got {got} of {len} bytes: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(())
}

/// `parallel` downloads at once; returns the wall time until the last one ended.
fn timed(url: &str, parallel: usize, len: u64) -> Result<Duration, String> {
    let start = Instant::now();
    let children: Vec<Child> = (0..parallel).map(|_| curl(url, Path::new("/dev/null"))).collect();
    let mut result = Ok(());
    for child in children {
        let r = finish(child, len);
        if result.is_ok() {
            result = r;
        }
    }
    result.map(|()| start.elapsed())
}

/// One download into a file, compared with `want` byte for byte.
fn verified(url: &str, dir: &Path, want: &Path) -> Result<(), String> {
    let out = dir.join("verify.bin");
    let len = std::fs::metadata(want).map_err(|e| e.to_string())?.len();
    finish(curl(url, &out), len)?;
    let same = std::fs::read(&out).map_err(|e| e.to_string())? == std::fs::read(want).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&out);
    if same { Ok(()) } else { Err(format!("{url}: the bytes differ from the file")) }
}

/// Waits until `url` answers (a readiness probe, retried until a deadline).
fn await_ready(url: &str) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let ok = Command::new("curl")
            .args(["-sS", "--fail", "--max-time", "1", "-o", "/dev/null", url])
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{url} not answering within {READY_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(50)); // polling interval
    }
}

/// A peer binary: the override variable, then `.tools/peers/PACKAGE` (`scripts/bench-peers`),
/// then `PATH`, then `/usr/sbin`.
fn peer_binary(variable: &str, package: &str, program: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(variable) {
        return find_program(&path.to_string_lossy(), None);
    }
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/peers").join(package).join("usr/sbin");
    find_program(&tools.join(program).to_string_lossy(), None)
        .or_else(|| find_program(program, std::env::var_os("PATH").as_deref()))
        .or_else(|| find_program(&format!("/usr/sbin/{program}"), None))
}

struct Row {
    server: &'static str,
    url: String,
    single: Result<Duration, String>,
    parallel: Result<Duration, String>,
}

fn keep_best(best: &mut Result<Duration, String>, run: Result<Duration, String>) {
    match (best.as_ref(), run) {
        (Err(e), _) if e != "no run" => {}
        (_, Err(e)) => *best = Err(e),
        (Ok(b), Ok(t)) => *best = Ok((*b).min(t)),
        (Err(_), Ok(t)) => *best = Ok(t),
    }
}

fn main() -> Result<(), String> {
    let mode = Mode::from_env().map_err(|e| e.to_string())?;
    if !prereq::need_programs("http benchmark", &["curl"])? {
        return Ok(());
    }
    let reps = env_number("MACHINIST_BENCH_REPS", 10).max(1);
    let mib = env_number("MACHINIST_BENCH_MIB", 256).max(1);
    let parallel = env_number("MACHINIST_BENCH_PARALLEL", 4).max(2);
    let len = (mib * 1024 * 1024) as u64;

    // nginx's workers run as `nobody`: the served tree is world-readable.
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let root = dir.path().join("root");
    std::fs::create_dir(&root).map_err(|e| e.to_string())?;
    let file = root.join(FILE);
    let block: Vec<u8> = (0..1024 * 1024u64).map(|i| i.wrapping_mul(2_654_435_761).rotate_right(13) as u8).collect();
    {
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::fs::File::create(&file).map_err(|e| e.to_string())?);
        for i in 0..mib {
            // Each MiB differs (its index in the first bytes), so a misplaced chunk shows.
            out.write_all(&(i as u64).to_le_bytes()).map_err(|e| e.to_string())?;
            out.write_all(&block[8..]).map_err(|e| e.to_string())?;
        }
        out.flush().map_err(|e| e.to_string())?;
    }
    for path in [dir.path(), root.as_path()] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    }
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).map_err(|e| e.to_string())?;

    let machinist = Machinist::start(&root);
    let mut rows = vec![Row {
        server: "machinist",
        url: format!("http://{}/artifacts/{FILE}", machinist.addr),
        single: Err("no run".into()),
        parallel: Err("no run".into()),
    }];
    let nginx_dir = dir.path().join("nginx");
    std::fs::create_dir(&nginx_dir).map_err(|e| e.to_string())?;
    let nginx = match peer_binary("MACHINIST_BENCH_NGINX", "nginx", "nginx") {
        Some(binary) => {
            let nginx = Nginx::start(&binary, &nginx_dir, &root);
            rows.push(Row {
                server: "nginx",
                url: format!("http://{}/artifacts/{FILE}", nginx.addr),
                single: Err("no run".into()),
                parallel: Err("no run".into()),
            });
            Some(nginx)
        }
        None => {
            let reason = "nginx not found (MACHINIST_BENCH_NGINX, .tools/peers/nginx, PATH, /usr/sbin)".to_string();
            match mode.verdict(&[prereq::Missing::Program { program: reason.clone() }]) {
                Verdict::Fail(reason) => return Err(reason),
                _ => println!("nginx: left out, {reason}"),
            }
            None
        }
    };

    println!(
        "HTTP: a {mib} MiB artifact to curl on 127.0.0.1, one download and {parallel} at once, best of {reps}, \
         servers alternating"
    );
    println!("load average before: {}", load_average());
    for row in &rows {
        await_ready(&row.url)?;
        verified(&row.url, dir.path(), &file)?;
        timed(&row.url, 1, len)?; // warm-up
    }
    for _ in 0..reps {
        for row in &mut rows {
            keep_best(&mut row.single, timed(&row.url, 1, len));
            keep_best(&mut row.parallel, timed(&row.url, parallel, len));
        }
    }
    drop(nginx);
    drop(machinist);
    println!("load average after: {}", load_average());
    print_table(&rows, mib, parallel);
    Ok(())
}

fn print_table(rows: &[Row], mib: usize, parallel: usize) {
    let speed = |t: &Result<Duration, String>, n: usize| match t {
        Ok(t) => format!("{:.0} MiB/s ({:.2} s)", (mib * n) as f64 / t.as_secs_f64(), t.as_secs_f64()),
        Err(e) => format!("failed: {}", e.lines().next().unwrap_or_default()),
    };
    println!();
    println!("| server | one download | {parallel} downloads at once (total) |");
    println!("|---|---|---|");
    for row in rows {
        println!("| {} | {} | {} |", row.server, speed(&row.single, 1), speed(&row.parallel, parallel));
    }
    let ratio = |pick: fn(&Row) -> &Result<Duration, String>| {
        let ours = rows.iter().find(|r| r.server == "machinist").and_then(|r| pick(r).as_ref().ok())?;
        let theirs = rows.iter().find(|r| r.server == "nginx").and_then(|r| pick(r).as_ref().ok())?;
        Some(theirs.as_secs_f64() / ours.as_secs_f64())
    };
    if let (Some(single), Some(par)) = (ratio(|r| &r.single), ratio(|r| &r.parallel)) {
        println!();
        println!(
            "machinist / nginx: {:.0}% one download, {:.0}% {parallel} at once (goal: at least 80%)",
            100.0 * single,
            100.0 * par
        );
    }
}
