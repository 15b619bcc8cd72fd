#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic
//! Real clients (busybox udhcpc, ISC dhclient, perfdhcp) against the server, all inside
//! network namespaces created here and removed in `Drop`.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use machinist_boot_dhcp::{
    BootPolicy, Config, Engine, MacAddr, MachineBoot, NetworkSettings, RawConfig, StaticDirectory,
};
use machinist_e2e::netns::{self, VethPair};
use machinist_e2e::prereq;
use tokio_util::sync::CancellationToken;

const CLIENT_MAC: &str = "52:54:00:aa:bb:01";

fn run(args: &[&str]) -> Output {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Two namespaces joined by a veth pair: `srv0` (10.<n>.0.1/24) and `cli0` (the client's MAC).
struct NetnsPair {
    veth: VethPair,
    subnet: u8,
}

impl NetnsPair {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tag = format!("mdhcp{}-{n}", std::process::id() % 100_000);
        let subnet = 80 + n as u8;
        let veth = VethPair::new(&tag, &format!("10.{subnet}.0.1/24"), None, Some(CLIENT_MAC)).unwrap();
        Self { veth, subnet }
    }

    fn ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, self.subnet, 0, host)
    }

    /// A command run inside the client namespace.
    fn client_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = VethPair::exec(self.veth.client(), args[0]);
        cmd.args(&args[1..]);
        cmd
    }
}

/// Our server on a thread that entered the server namespace; stopped and joined on drop.
struct ServerInNs {
    token: CancellationToken,
    thread: Option<std::thread::JoinHandle<Option<()>>>,
}

impl ServerInNs {
    fn start(ns: &str, engine: Arc<Engine>) -> Self {
        let token = CancellationToken::new();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (t, e) = (token.clone(), engine);
        let thread = netns::spawn_in(&VethPair::path(ns), move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let server = tokio::spawn(machinist_boot_dhcp::run(e, t));
                // `run` binds before its first await that could park; yield once so it does.
                tokio::task::yield_now().await;
                ready_tx.send(()).unwrap();
                server.await.unwrap().unwrap();
            });
        })
        .unwrap();
        ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Self { token, thread: Some(thread) }
    }
}

impl Drop for ServerInNs {
    fn drop(&mut self) {
        self.token.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn need(test: &str, programs: &[&str]) -> bool {
    prereq::need_root_and_programs(test, programs).unwrap()
}

fn config(pair: &NetnsPair, lease_file: Option<&Path>) -> Config {
    let json = serde_json::json!({
        "interfaces": ["srv0"],
        "serverAddress": pair.ip(1).to_string(),
        "dynamicRange": {"start": pair.ip(100).to_string(), "end": pair.ip(250).to_string(),
                         "netmask": "255.255.255.0", "gateway": pair.ip(1).to_string()},
        "leaseTimeSeconds": 600,
        "leaseFile": lease_file,
    });
    serde_json::from_value::<RawConfig>(json).unwrap().validate().unwrap()
}

fn reserved_directory(pair: &NetnsPair) -> StaticDirectory {
    let machine = MachineBoot {
        name: "node-1".into(),
        address: Some(pair.ip(42)),
        hostname: Some("node-1".into()),
        network: NetworkSettings {
            netmask: Some(Ipv4Addr::new(255, 255, 255, 0)),
            gateway: Some(pair.ip(254)),
            dns_servers: vec![pair.ip(53), pair.ip(54)],
            domain: Some("lab.example".into()),
        },
        policy: BootPolicy::Network,
    };
    StaticDirectory::new([(CLIENT_MAC.parse::<MacAddr>().unwrap(), machine)], true)
}

/// Waits for a child with a deadline, killing it if it overruns.
fn wait_bounded(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "timed out after {limit:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50)); // polling interval, not synchronisation
    }
}

#[test]
fn udhcpc_gets_the_reserved_address_and_options() {
    if !need("udhcpc_gets_the_reserved_address_and_options", &["ip", "busybox"]) {
        return;
    }
    let pair = NetnsPair::new();
    let engine = Arc::new(Engine::open(Arc::new(config(&pair, None)), Arc::new(reserved_directory(&pair))).unwrap());
    let _server = ServerInNs::start(pair.veth.server(), engine.clone());
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script.sh");
    let env_out = dir.path().join("env");
    std::fs::write(&script, format!("#!/bin/sh\n[ \"$1\" = bound ] && env > {}\nexit 0\n", env_out.display())).unwrap();
    run(&["chmod", "+x", script.to_str().unwrap()]);
    let child = pair
        .client_cmd(&[
            "busybox",
            "udhcpc",
            "-i",
            "cli0",
            "-n",
            "-q",
            "-f",
            "-t",
            "5",
            "-T",
            "1",
            "-s",
            script.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_bounded(child, Duration::from_secs(20));
    assert!(out.status.success(), "udhcpc: {}", String::from_utf8_lossy(&out.stderr));
    let env = std::fs::read_to_string(&env_out).unwrap();
    let var = |k: &str| env.lines().find_map(|l| l.strip_prefix(&format!("{k}="))).map(str::to_owned);
    assert_eq!(var("ip"), Some(pair.ip(42).to_string()), "{env}");
    assert_eq!(var("subnet").as_deref(), Some("255.255.255.0"));
    assert_eq!(var("router"), Some(pair.ip(254).to_string()));
    assert_eq!(var("dns"), Some(format!("{} {}", pair.ip(53), pair.ip(54))));
    assert_eq!(var("domain").as_deref(), Some("lab.example"));
    assert_eq!(var("hostname").as_deref(), Some("node-1"));
    let counters = engine.snapshot();
    assert!(counters.offers >= 1 && counters.acks >= 1, "{counters:?}");
}

#[test]
fn dhclient_gets_the_reserved_address_and_options() {
    if !need("dhclient_gets_the_reserved_address_and_options", &["ip", "dhclient"]) {
        return;
    }
    let pair = NetnsPair::new();
    let engine = Arc::new(Engine::open(Arc::new(config(&pair, None)), Arc::new(reserved_directory(&pair))).unwrap());
    let _server = ServerInNs::start(pair.veth.server(), engine);
    let dir = tempfile::tempdir().unwrap();
    let (lf, pf, cf) = (dir.path().join("leases"), dir.path().join("pid"), dir.path().join("dhclient.conf"));
    std::fs::write(&cf, "timeout 15;\nrequest subnet-mask, routers, domain-name-servers, domain-name, host-name;\n")
        .unwrap();
    let child = pair
        .client_cmd(&[
            "dhclient",
            "-4",
            "-1",
            "-sf",
            "/bin/true",
            "-cf",
            cf.to_str().unwrap(),
            "-lf",
            lf.to_str().unwrap(),
            "-pf",
            pf.to_str().unwrap(),
            "cli0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_bounded(child, Duration::from_secs(25));
    // dhclient forked a daemon: stop it by its pid file.
    if let Ok(pid) = std::fs::read_to_string(&pf) {
        let _ = Command::new("kill").arg(pid.trim()).status();
    }
    assert!(out.status.success(), "dhclient: {}", String::from_utf8_lossy(&out.stderr));
    let lease = std::fs::read_to_string(&lf).unwrap();
    assert!(lease.contains(&format!("fixed-address {};", pair.ip(42))), "{lease}");
    assert!(lease.contains(&format!("option routers {};", pair.ip(254))), "{lease}");
    assert!(lease.contains(&format!("option domain-name-servers {},{};", pair.ip(53), pair.ip(54))), "{lease}");
    assert!(lease.contains("option domain-name \"lab.example\";"), "{lease}");
    assert!(lease.contains("option host-name \"node-1\";"), "{lease}");
    assert!(lease.contains("option dhcp-lease-time 600;"), "{lease}");
}

#[test]
fn perfdhcp_bounded_load_has_no_drops() {
    if !need("perfdhcp_bounded_load_has_no_drops", &["ip", "perfdhcp"]) {
        return;
    }
    let pair = NetnsPair::new();
    // -W: wait 1 s after the last exchange so replies in flight are not counted as drops.
    // perfdhcp acts as a relay: it needs an address on its side (giaddr).
    run(&["ip", "-n", pair.veth.client(), "addr", "add", &format!("{}/24", pair.ip(2)), "dev", "cli0"]);
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(
        Engine::open(
            Arc::new(config(&pair, Some(&dir.path().join("leases.sqlite")))),
            Arc::new(StaticDirectory::new([], true)),
        )
        .unwrap(),
    );
    let _server = ServerInNs::start(pair.veth.server(), engine.clone());
    let child = pair
        .client_cmd(&[
            "perfdhcp", "-4", "-l", "cli0", "-r", "100", "-R", "100", "-n", "200", "-p", "10", "-W", "1000000",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_bounded(child, Duration::from_secs(30));
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    let drops: Vec<u64> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("drops: "))
        .map(|d| d.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(drops.len(), 2, "DISCOVER-OFFER and REQUEST-ACK stats expected:\n{text}");
    let counters = engine.snapshot();
    assert!(drops.iter().all(|d| *d == 0), "drops {drops:?}, server counters {counters:?}:\n{text}");
    assert_eq!(counters.malformed, 0, "{counters:?}");
    assert!(counters.acks >= 190, "{counters:?}");
}
