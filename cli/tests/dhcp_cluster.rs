//! The reservation path with real peers: the operator allocates a CMDB address to a Machine on
//! the embedded control plane, and ISC dhclient, with that Machine's MAC, gets the address
//! from the boot services' DHCP, which reads Machines and Cmdbs through `ClusterMachines`.
//! All DHCP traffic stays in a pair of network namespaces created here and removed on drop.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::Api;
use kube::api::PostParams;
use machinist_boot::cluster::ClusterMachines;
use machinist_boot::config::BootConfig;
use machinist_boot::machines::{HardwareReport, MacAddr, ReportSink};
use machinist_boot::service::dhcp_defaults;
use machinist_boot::timeline::{Timeline, run_writer};
use machinist_boot_dhcp::{Directory, Engine};
use machinist_crds::machine::MachinePhase;
use machinist_crds::{Cmdb, HardwareProfile, Machine, Quad};
use machinist_e2e::cluster::ControlPlane;
use machinist_e2e::netns::{self, VethPair};
use machinist_e2e::prereq;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const MACHINE_MAC: &str = "52:54:00:dc:00:01";
/// The operator's work (match, allocate) and the caches' catching up, bounded.
const WITHIN: Duration = Duration::from_secs(120);

/// `ip …`, which must succeed.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The boot services' DHCP engine serving on `srv0`, from a thread that entered the server
/// namespace (its sockets are bound there); stopped and joined on drop.
struct DhcpInNs {
    token: CancellationToken,
    thread: Option<std::thread::JoinHandle<Option<()>>>,
}

impl DhcpInNs {
    fn start(ns: &str, engine: Arc<Engine>) -> Self {
        let token = CancellationToken::new();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let stop = token.clone();
        let thread = netns::spawn_in(&VethPair::path(ns), move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let server = tokio::spawn(machinist_boot_dhcp::run(engine, stop));
                // `run` binds before its first await that could park; yield once so it does.
                tokio::task::yield_now().await;
                ready_tx.send(()).unwrap();
                server.await.unwrap().unwrap();
            });
        })
        .unwrap();
        ready_rx.recv_timeout(Duration::from_secs(10)).expect("the DHCP server started");
        Self { token, thread: Some(thread) }
    }
}

impl Drop for DhcpInNs {
    fn drop(&mut self) {
        self.token.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The dhclient daemon a successful `dhclient -1` left behind, found by its pid file and
/// stopped (SIGTERM, then waited for, bounded) on drop.
struct Daemon {
    pid: u32,
}

impl Daemon {
    /// The daemon named in `pid_file`: after the parent exits, its child writes its own pid
    /// there; wait (bounded) until the file names a live dhclient using that pid file.
    fn find(pid_file: &Path, parent: u32) -> Self {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pid = std::fs::read_to_string(pid_file).ok().and_then(|t| t.trim().parse::<u32>().ok());
            if let Some(pid) = pid.filter(|p| *p != parent) {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cmdline = String::from_utf8_lossy(&cmdline);
                if cmdline.contains("dhclient") && cmdline.contains(pid_file.to_str().unwrap()) {
                    return Self { pid };
                }
            }
            assert!(Instant::now() < deadline, "no dhclient daemon in {}", pid_file.display());
            std::thread::sleep(Duration::from_millis(20)); // polling interval, not synchronisation
        }
    }

    /// SIGTERM, then waits (bounded) until it is gone; whether it is.
    fn stop(&mut self) -> bool {
        let pid = std::mem::take(&mut self.pid);
        if pid == 0 {
            return true;
        }
        let _ = Command::new("kill").arg(pid.to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20)); // polling interval, not synchronisation
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What one `dhclient -1` run left.
struct Run {
    got_lease: bool,
    output: String,
    /// The last lease in the lease file, if any.
    lease: Option<String>,
    daemon: Option<Daemon>,
}

/// `dhclient -4 -1 -sf /bin/true -cf … -lf <lease_file> -pf … cli0` in the client namespace,
/// giving up after `timeout_seconds` (its `timeout` statement), its run bounded by ours.
async fn dhclient(pair: &VethPair, dir: &Path, name: &str, lease_file: &Path, timeout_seconds: u64) -> Run {
    let (conf, pid_file) = (dir.join(format!("{name}.conf")), dir.join(format!("{name}.pid")));
    std::fs::write(
        &conf,
        format!(
            "timeout {timeout_seconds};\nrequest subnet-mask, routers, domain-name-servers, domain-name, host-name;\n"
        ),
    )
    .unwrap();
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    let child = tokio::process::Command::new("ip")
        .args(["netns", "exec", pair.client(), "dhclient", "-4", "-1", "-v", "-sf", "/bin/true"])
        .args(["-cf", &path(&conf), "-lf", &path(lease_file), "-pf", &path(&pid_file), "cli0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let parent = child.id().unwrap();
    let limit = Duration::from_secs(timeout_seconds + 10);
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("dhclient {name} did not finish within {limit:?}"))
        .unwrap();
    let output = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // dhclient forked a daemon once it had a lease: stop it by its pid file.
    let daemon = out.status.success().then(|| Daemon::find(&pid_file, parent));
    let lease =
        std::fs::read_to_string(lease_file).ok().and_then(|text| text.rfind("lease {").map(|at| text[at..].to_owned()));
    Run { got_lease: out.status.success(), output, lease, daemon }
}

/// The value of `key` in a dhclient lease (`fixed-address 10.0.0.1;` → `10.0.0.1`).
fn field<'l>(lease: &'l str, key: &str) -> Option<&'l str> {
    lease.lines().find_map(|l| l.trim().strip_prefix(key)?.strip_prefix(' ')?.strip_suffix(';'))
}

/// ISC dhclient, with the Machine's MAC on its interface, in three stages of the Machine's
/// life: before the Machine exists (auto-registration off: the MAC is ignored, no lease);
/// known but not allocated (an address from `dynamicRange`, with the range's network, as
/// docs/boot-services.md says); and Allocated by the operator — for real: it matches the
/// hardware report against a HardwareProfile and reserves the Cmdb entry — when it gets
/// `status.ip` as `fixed-address`, `status.hostname` as option 12 and the Cmdb's netmask,
/// gateway, DNS servers and domain, although the lease it still holds from discovery asks
/// for the dynamic address.
///
/// The DHCP engine is built as `machinist_boot::service::start` builds it (the `dhcp`
/// section of a boot.yaml, `dhcp_defaults`, `Engine::open` over `ClusterMachines`, the boot
/// timeline as its observer), but here, so that it can serve from the server namespace while
/// the control plane, the operator and the caches stay on this process's loopback, and so
/// that the test can wait on the boot services' own cache. The hardware report goes through
/// `ClusterMachines`' `ReportSink`, the writer behind the HTTP report endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dhclient_gets_the_cmdb_address_once_the_operator_allocated_it() {
    let test = "dhclient_gets_the_cmdb_address_once_the_operator_allocated_it";
    if !prereq::need_root_and_programs(test, &["ip", "dhclient"]).unwrap() {
        return;
    }
    // The namespaces' own network: nothing outside them sees it.
    let net = |host: u8| Ipv4Addr::new(10, 77, 0, host);
    // The client's interface gets no address (dhclient's script is /bin/true) and no MAC yet.
    let pair =
        VethPair::new(&format!("mdhcpk{}-", std::process::id() % 100_000), &format!("{}/24", net(1)), None, None)
            .unwrap();
    ip(&["-n", pair.client(), "link", "set", "dev", "cli0", "address", MACHINE_MAC]);
    let dir = tempfile::tempdir().unwrap();

    let control = ControlPlane::start().await.unwrap();
    let client = control.client.clone();
    let shutdown = CancellationToken::new();
    let started = machinist_operator::start(
        client.clone(),
        machinist_operator::Config { namespace: Some("default".into()), ..Default::default() },
        shutdown.clone(),
    )
    .await
    .unwrap();

    // The boot services' DHCP, full mode, on the server end of the pair.
    let yaml = format!(
        "namespace: default\nautoRegister: false\ndhcp:\n  interfaces: [srv0]\n  serverAddress: {server}\n  \
         dynamicRange: {{start: {start}, end: {end}, netmask: 255.255.255.0, gateway: {server}, \
         dnsServers: [{server}], domain: discovery.example}}\n  leaseTimeSeconds: 600\n",
        server = net(1),
        start = net(100),
        end = net(199),
    );
    let config = BootConfig::parse(&yaml, Path::new("dhcp_cluster boot.yaml")).unwrap();
    let cluster = ClusterMachines::start(client.clone(), config.cluster(), shutdown.clone()).await.unwrap();
    let (timeline, steps) = Timeline::new();
    let writer = tokio::spawn(run_writer(
        steps,
        Arc::new(cluster.clone()),
        timeline.counters_handle(),
        config.flush_interval(),
        shutdown.clone(),
    ));
    let dhcp_config = Arc::new(dhcp_defaults(config.dhcp.clone(), None, false).validate().unwrap());
    let engine =
        Arc::new(Engine::open(dhcp_config, Arc::new(cluster.clone())).unwrap().with_observer(Arc::new(timeline)));
    let dhcp = DhcpInNs::start(pair.server(), engine.clone());

    // A Cmdb of one entry with its network, and a profile of QEMU machines that allocates from it.
    let cmdb: Cmdb = serde_json::from_value(json!({
        "apiVersion": "machinist.dev/v1alpha1", "kind": "Cmdb", "metadata": {"name": "lab"},
        "spec": {"entries": [{"ip": net(42).to_string(), "hostname": "node-42"}],
                 "network": {"netmask": "255.255.255.0", "gateway": net(254).to_string(),
                             "dnsServers": [net(53).to_string(), net(54).to_string()], "domain": "lab.example"}},
    }))
    .unwrap();
    Api::<Cmdb>::default_namespaced(client.clone()).create(&PostParams::default(), &cmdb).await.unwrap();
    let profile: HardwareProfile = serde_json::from_value(json!({
        "apiVersion": "machinist.dev/v1alpha1", "kind": "HardwareProfile", "metadata": {"name": "vm"},
        "spec": {"priority": 1, "match": [["system", "product", "vendor", "QEMU"]], "cmdbRef": {"name": "lab"}},
    }))
    .unwrap();
    Api::<HardwareProfile>::default_namespaced(client.clone()).create(&PostParams::default(), &profile).await.unwrap();

    // 1. No Machine has this MAC: ignored (auto-registration is off), so no lease at all.
    let run = dhclient(&pair, dir.path(), "unknown", &dir.path().join("unknown.leases"), 4).await;
    assert!(!run.got_lease && run.lease.is_none(), "an unknown MAC got a lease: {:?}\n{}", run.lease, run.output);
    let counters = engine.snapshot();
    assert!(counters.unknown_clients >= 1 && counters.offers == 0, "the server saw it and ignored it: {counters:?}");

    // 2. The Machine exists but is not allocated (no hardware report yet): a discovery address.
    let mac: MacAddr = MACHINE_MAC.parse().unwrap();
    let machines: Api<Machine> = Api::default_namespaced(client.clone());
    let machine: Machine = serde_json::from_value(json!({
        "apiVersion": "machinist.dev/v1alpha1", "kind": "Machine", "metadata": {"name": "node"},
        "spec": {"interfaces": [{"mac": MACHINE_MAC}], "provider": {"manual": {}}},
    }))
    .unwrap();
    machines.create(&PostParams::default(), &machine).await.unwrap();
    let known = cluster.wait_for(WITHIN, |c| Directory::lookup(c, mac)).await.expect("the Machine reached the cache");
    assert_eq!(known.address, None);
    let leases = dir.path().join("node.leases");
    let mut run = dhclient(&pair, dir.path(), "discovery", &leases, 15).await;
    assert!(run.got_lease, "dhclient: {}", run.output);
    let lease = run.lease.clone().unwrap();
    let dynamic: Ipv4Addr = field(&lease, "fixed-address").unwrap().parse().unwrap();
    assert!((net(100)..=net(199)).contains(&dynamic), "not from dynamicRange: {lease}");
    assert_eq!(field(&lease, "option routers"), Some(net(1).to_string().as_str()), "{lease}");
    assert_eq!(field(&lease, "option domain-name"), Some("\"discovery.example\""), "{lease}");
    assert_eq!(field(&lease, "option host-name"), None, "{lease}");
    assert!(run.daemon.take().unwrap().stop(), "dhclient did not stop");

    // 3. Its hardware report: the operator matches it against the profile and allocates the
    // Cmdb entry; wait until the boot services' cache has the reservation with its network.
    let items: Vec<Quad> = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../agent/tests/fixtures/qemu-vm.items.json"))
            .unwrap(),
    )
    .unwrap();
    cluster.hardware_report("node", HardwareReport { items, received: jiff::Timestamp::now() }).await.unwrap();
    let reserved = cluster
        .wait_for(WITHIN, |c| Directory::lookup(c, mac).filter(|b| b.address.is_some() && b.network.gateway.is_some()))
        .await
        .expect("the operator allocated the Machine and the boot services' cache has it");
    let status = machines.get("node").await.unwrap().status.unwrap();
    assert_eq!(status.phase, Some(MachinePhase::Allocated));
    assert_eq!(status.ip, Some(net(42).to_string()), "the operator reserved the Cmdb entry");
    assert_eq!(status.allocation.as_ref().map(|a| a.cmdb.as_str()), Some("lab"));
    assert_eq!(reserved.address, Some(net(42)));

    // 4. The same client again, with the same lease file: it asks for its discovery address
    // first (INIT-REBOOT), and ends up with status.ip and the Cmdb's network.
    let mut run = dhclient(&pair, dir.path(), "allocated", &leases, 15).await;
    assert!(run.got_lease, "dhclient: {}", run.output);
    let lease = run.lease.clone().unwrap();
    assert_eq!(field(&lease, "fixed-address"), Some(net(42).to_string().as_str()), "{lease}");
    assert_eq!(field(&lease, "option subnet-mask"), Some("255.255.255.0"), "{lease}");
    assert_eq!(field(&lease, "option routers"), Some(net(254).to_string().as_str()), "{lease}");
    let dns = format!("{},{}", net(53), net(54));
    assert_eq!(field(&lease, "option domain-name-servers"), Some(dns.as_str()), "{lease}");
    assert_eq!(field(&lease, "option domain-name"), Some("\"lab.example\""), "{lease}");
    assert_eq!(field(&lease, "option host-name"), Some("\"node-42\""), "status.hostname as option 12: {lease}");
    assert_eq!(field(&lease, "option dhcp-server-identifier"), Some(net(1).to_string().as_str()), "{lease}");
    assert_eq!(field(&lease, "option dhcp-lease-time"), Some("600"), "{lease}");
    assert!(run.daemon.take().unwrap().stop(), "dhclient did not stop");
    let counters = engine.snapshot();
    assert!(counters.naks >= 1, "its request for the discovery address was refused: {counters:?}");

    drop(dhcp);
    shutdown.cancel();
    started.task.await.unwrap().unwrap();
    writer.await.unwrap();
    control.stop().await;
}
