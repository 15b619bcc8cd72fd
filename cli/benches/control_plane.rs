//! Benchmark of the embedded control plane, run as users run it (`machinist up`, a separate
//! process) and driven by kube-rs: 10,000 Machines created, get and list latencies, delivery to
//! 10 concurrent watchers, the server's resident memory and its database size.
//!
//! `cargo bench -p machinist --bench control_plane` prints the figures; nothing is asserted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)] // a bench binary reports on stdout

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use kube::api::{ListParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use machinist_crds::Machine;
use serde_json::json;

const MACHINES: usize = 10_000;
const WATCHERS: usize = 10;
const CONCURRENCY: usize = 64;

fn machine(i: usize) -> Machine {
    serde_json::from_value(json!({
        "apiVersion": "machinist.dev/v1alpha1", "kind": "Machine",
        "metadata": {"name": format!("m{i:05}"), "labels": {"rack": format!("r{}", i % 40)}},
        "spec": {"interfaces": [{"mac": format!("52:54:00:{:02x}:{:02x}:{:02x}", i >> 16, (i >> 8) & 0xff, i & 0xff)}],
                 "provider": {"libvirt": {"host": "hv1", "pool": "default", "diskGiB": 20, "memoryMiB": 2048, "vcpus": 2, "network": "default"}}}
    }))
    .unwrap()
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index]
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn disk_bytes(home: &Path) -> u64 {
    ["state.db", "state.db-wal", "state.db-shm"]
        .iter()
        .filter_map(|f| std::fs::metadata(home.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let home = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_machinist"))
        .args(["up", "--listen", "127.0.0.1:0", "--home"])
        .arg(home.path())
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let kubeconfig: PathBuf = loop {
        let line = lines.next().unwrap().unwrap();
        if let Some(path) = line.trim().strip_prefix("export KUBECONFIG=") {
            break path.into();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&kubeconfig).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let client = Client::try_from(config).unwrap();
    let machines: Api<Machine> = Api::default_namespaced(client.clone());
    let rss_idle = rss_kib(child.id());

    // Watchers first, from the current revision.
    let start_version =
        machines.list(&ListParams::default().limit(1)).await.unwrap().metadata.resource_version.unwrap();
    let mut watchers = Vec::new();
    for _ in 0..WATCHERS {
        let machines = machines.clone();
        let version = start_version.clone();
        watchers.push(tokio::spawn(async move {
            let mut stream = machines.watch(&WatchParams::default().timeout(600), &version).await.unwrap().boxed();
            let mut seen = 0;
            while seen < MACHINES {
                match stream.try_next().await.unwrap() {
                    Some(WatchEvent::Added(_)) => seen += 1,
                    Some(WatchEvent::Error(e)) => panic!("watch failed: {e:?}"),
                    Some(_) => {}
                    None => panic!("watch ended after {seen} events"),
                }
            }
            Instant::now()
        }));
    }

    let create_started = Instant::now();
    futures::stream::iter(0..MACHINES)
        .map(|i| {
            let machines = machines.clone();
            async move { machines.create(&PostParams::default(), &machine(i)).await.map(drop) }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await
        .unwrap();
    let create_elapsed = create_started.elapsed();
    let last_ack = Instant::now();
    let mut delivered = Vec::new();
    for watcher in watchers {
        delivered.push(watcher.await.unwrap());
    }
    let all_delivered = delivered.iter().max().copied().unwrap_or(last_ack);
    let rss_loaded = rss_kib(child.id());

    let mut gets = Vec::new();
    for i in (0..MACHINES).step_by(5) {
        let t = Instant::now();
        machines.get(&format!("m{i:05}")).await.unwrap();
        gets.push(t.elapsed());
    }
    let mut lists = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let list = machines.list(&ListParams::default()).await.unwrap();
        assert_eq!(list.items.len(), MACHINES);
        lists.push(t.elapsed());
    }
    let mut selected = Vec::new();
    for rack in 0..20 {
        let t = Instant::now();
        let list = machines.list(&ListParams::default().labels(&format!("rack=r{rack}"))).await.unwrap();
        assert_eq!(list.items.len(), MACHINES / 40);
        selected.push(t.elapsed());
    }
    let mut pages = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        machines.list(&ListParams::default().limit(500)).await.unwrap();
        pages.push(t.elapsed());
    }
    let rss_after = rss_kib(child.id());
    let database = disk_bytes(home.path());

    println!(
        "control plane benchmark ({MACHINES} Machines, {CONCURRENCY} concurrent creates, {WATCHERS} watchers, 2 cores)"
    );
    println!(
        "  creates                 {:>10.0} /s   ({:.2} s total, each fsynced)",
        MACHINES as f64 / create_elapsed.as_secs_f64(),
        create_elapsed.as_secs_f64()
    );
    println!(
        "  watch delivery          all {WATCHERS} watchers had all {MACHINES} events {:.0} ms after the last create was acknowledged",
        all_delivered.saturating_duration_since(last_ack).as_secs_f64() * 1000.0
    );
    println!(
        "  get                     p50 {:>7.2} ms   p99 {:>7.2} ms   ({} gets)",
        percentile(&mut gets, 0.5).as_secs_f64() * 1e3,
        percentile(&mut gets, 0.99).as_secs_f64() * 1e3,
        gets.len()
    );
    println!(
        "  list all {MACHINES}         p50 {:>7.1} ms   p99 {:>7.1} ms",
        percentile(&mut lists, 0.5).as_secs_f64() * 1e3,
        percentile(&mut lists, 0.99).as_secs_f64() * 1e3
    );
    println!(
        "  list by label (250)     p50 {:>7.2} ms   p99 {:>7.2} ms",
        percentile(&mut selected, 0.5).as_secs_f64() * 1e3,
        percentile(&mut selected, 0.99).as_secs_f64() * 1e3
    );
    println!(
        "  list page of 500        p50 {:>7.2} ms   p99 {:>7.2} ms",
        percentile(&mut pages, 0.5).as_secs_f64() * 1e3,
        percentile(&mut pages, 0.99).as_secs_f64() * 1e3
    );
    println!(
        "  server RSS              idle {} MiB, after creates {} MiB, after reads {} MiB",
        rss_idle / 1024,
        rss_loaded / 1024,
        rss_after / 1024
    );
    println!("  database                {:.1} MiB (state.db + WAL)", database as f64 / 1048576.0);
    child.kill().unwrap();
    child.wait().unwrap();
}
