#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic
//! The operator as a process (`machinist-operator`): killed with SIGKILL at random points of a
//! 500-machine run and restarted, it never over-binds a profile, never gives an entry twice,
//! and leaves nothing stuck; two replicas elect one leader, and the standby takes over when the
//! leader is killed.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{Fleet, condition, phases, qemu_items, wait_for};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use machinist_crds::machine::MachinePhase;
use machinist_crds::{Cmdb, HardwareProfile, Machine};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WITHIN: Duration = Duration::from_secs(300);

struct Operator {
    child: Child,
    metrics: String,
    identity: String,
}

impl Operator {
    /// Starts a replica and waits (on its log, not a timer) until its metrics port listens. Its
    /// lease lasts 10 s: shorter ones get lost on a loaded 2-core machine (renewals queue behind
    /// hundreds of writes), and every loss restarts the controllers.
    async fn spawn(fleet: &Fleet, identity: &str) -> Operator {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let metrics = format!("127.0.0.1:{port}");
        // MACHINIST_TEST_LOGS=dir keeps the operators' logs after the test.
        let logs = std::env::var_os("MACHINIST_TEST_LOGS").map_or_else(|| fleet.scratch("logs"), Into::into);
        let mut log = std::fs::File::create(logs.join(format!("{identity}.log"))).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_machinist-operator"))
            .args(["--kubeconfig", fleet.kubeconfig.to_str().unwrap(), "--namespace", "default"])
            .args(["--metrics-listen", &metrics, "--identity", identity, "--lease-duration-seconds", "10"])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A thread copies the log to its file and says when the port is bound.
        let stderr = child.stderr.take().unwrap();
        let (bound, listening) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut bound = Some(bound);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("metrics, healthz and readyz listening")
                    && let Some(bound) = bound.take()
                {
                    let _ = bound.send(());
                }
                let _ = writeln!(log, "{line}");
            }
        });
        match tokio::time::timeout(Duration::from_secs(60), listening).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => panic!("{identity} exited before listening on {metrics}"),
            Err(_) => panic!("{identity} did not listen on {metrics} within 60 s"),
        }
        Operator { child, metrics, identity: identity.to_owned() }
    }

    /// SIGKILL: no lease release, no graceful anything.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    async fn get(&self, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(&self.metrics)
            .await
            .unwrap_or_else(|e| panic!("{} does not answer on {}: {e}", self.identity, self.metrics));
        stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await.unwrap();
        reply
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn phase(m: &Machine) -> Option<MachinePhase> {
    m.status.as_ref().and_then(|s| s.phase)
}

fn random_below(n: u64) -> u64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).unwrap();
    u64::from_le_bytes(bytes) % n
}

/// Every profile's list and every Cmdb's allocations agree with the machines: no slot or entry
/// leaked, none held twice, no maximum exceeded.
async fn assert_consistent(fleet: &Fleet, machines: &[Arc<Machine>]) {
    let profiles = common::list(&Api::<HardwareProfile>::default_namespaced(fleet.client.clone())).await;
    for profile in &profiles {
        let name = profile.metadata.name.clone().unwrap();
        let status = profile.status.clone().unwrap_or_default();
        let listed: BTreeSet<String> = status.bound_machines.iter().cloned().collect();
        assert_eq!(listed.len(), status.bound_machines.len(), "{name}: a machine listed twice");
        let bound: BTreeSet<String> = machines
            .iter()
            .filter(|m| m.status.as_ref().and_then(|s| s.profile.as_deref()) == Some(name.as_str()))
            .map(|m| m.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(listed, bound, "{name}: its list and the machines bound to it differ");
        if let Some(max) = profile.spec.max_machines {
            assert!(bound.len() <= max as usize, "{name}: {} bound, max {max}", bound.len());
        }
    }
    let cmdbs = common::list(&Api::<Cmdb>::default_namespaced(fleet.client.clone())).await;
    for cmdb in &cmdbs {
        let name = cmdb.metadata.name.clone().unwrap();
        let status = cmdb.status.clone().unwrap_or_default();
        let records: BTreeMap<i32, String> = status.allocations.iter().map(|r| (r.entry, r.machine.clone())).collect();
        assert_eq!(records.len(), status.allocations.len(), "{name}: an entry recorded twice");
        let holders: BTreeSet<&String> = records.values().collect();
        assert_eq!(holders.len(), records.len(), "{name}: a machine holds two entries");
        let held: BTreeMap<i32, String> = machines
            .iter()
            .filter_map(|m| {
                let a = m.status.as_ref()?.allocation.as_ref()?;
                (a.cmdb == name).then(|| (a.entry, m.metadata.name.clone().unwrap()))
            })
            .collect();
        assert_eq!(records, held, "{name}: its allocations and the machines holding entries differ");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_at_random_points_of_a_500_machine_run_loses_and_duplicates_nothing() {
    let fleet = Fleet::start().await;
    fleet.apply_cmdb("pool-a", 1, 100).await;
    fleet.apply_cmdb("pool-b", 2, 400).await;
    fleet.apply_profile("small", 1, Some(50), json!([["system", "product", "vendor", "QEMU"]]), Some("pool-a")).await;
    fleet.apply_profile("big", 2, None, json!([["disk", "$disk", "size", "gt(1)"]]), Some("pool-b")).await;
    let mut operator = Operator::spawn(&fleet, "first").await;
    let names = fleet.create_machines("m", 0x300, 500).await;
    let reports = {
        let items = qemu_items();
        let fleet = &fleet;
        async move { fleet.report_all(&names, &items).await }
    };
    // Kill points: random progress counts (machines past Inspecting), printed to reproduce.
    let mut points: Vec<usize> = (0..3).map(|_| 20 + random_below(420) as usize).collect();
    points.sort_unstable();
    eprintln!("killing the operator when {points:?} machines have been bound");
    let kills = async {
        for (i, point) in points.iter().enumerate() {
            wait_for(&fleet.machines(), WITHIN, &format!("{point} machines bound"), |ms: &[Arc<Machine>]| {
                ms.iter().filter(|m| m.status.as_ref().is_some_and(|s| s.profile.is_some())).count() >= *point
            })
            .await;
            std::mem::replace(&mut operator, Operator::spawn(&fleet, &format!("restart-{i}")).await).kill();
        }
    };
    tokio::join!(reports, kills);

    let settled = |ms: &[Arc<Machine>]| {
        let allocated = ms.iter().filter(|m| phase(m) == Some(MachinePhase::Allocated)).count();
        let exhausted = ms
            .iter()
            .filter(|m| phase(m) == Some(MachinePhase::Matched))
            .filter(|m| condition(m, "Allocated").is_some_and(|c| c.reason == "CmdbExhausted"))
            .count();
        (allocated, exhausted)
    };
    let machines = wait_for(&fleet.machines(), WITHIN, "450 allocated and 50 waiting for pool-b", |ms| {
        ms.len() == 500 && settled(ms) == (450, 50)
    })
    .await;
    eprintln!("settled: {:?}", phases(&machines));
    assert_consistent(&fleet, &machines).await;
    let small = machines.iter().filter(|m| m.status.as_ref().unwrap().profile.as_deref() == Some("small")).count();
    assert_eq!(small, 50, "exactly maxMachines in the small profile");
    drop(operator);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_elect_one_leader_and_the_standby_takes_over() {
    let fleet = Fleet::start().await;
    fleet.apply_cmdb("pool", 1, 100).await;
    fleet.apply_profile("vm", 1, None, json!([]), Some("pool")).await;
    let a = Operator::spawn(&fleet, "replica-a").await;
    let b = Operator::spawn(&fleet, "replica-b").await;
    let leases: Api<Lease> = Api::default_namespaced(fleet.client.clone());
    let held = wait_for(&leases, WITHIN, "a leader", |ls: &[Arc<Lease>]| {
        ls.iter().any(|l| {
            l.spec.as_ref().and_then(|s| s.holder_identity.as_deref()).is_some_and(|h| h.starts_with("replica-"))
        })
    })
    .await;
    let lease = held.iter().find(|l| l.metadata.name.as_deref() == Some("machinist-operator")).unwrap();
    let leader_name = lease.spec.as_ref().unwrap().holder_identity.clone().unwrap();
    let transitions = lease.spec.as_ref().unwrap().lease_transitions.unwrap_or(0);
    let (leader, standby) = if leader_name == a.identity { (a, b) } else { (b, a) };

    let first = fleet.create_machines("first", 0x400, 20).await;
    fleet.report_all(&first, &qemu_items()).await;
    wait_for(&fleet.machines(), WITHIN, "20 machines allocated by the leader", |ms: &[Arc<Machine>]| {
        ms.iter().filter(|m| phase(m) == Some(MachinePhase::Allocated)).count() == 20
    })
    .await;
    let standby_ready = standby.get("/readyz").await;
    assert!(standby_ready.contains("200") && standby_ready.contains("standby"), "{standby_ready}");
    assert!(standby.get("/metrics").await.contains("machinist_operator_leader 0"));
    assert!(leader.get("/metrics").await.contains("machinist_operator_leader 1"));
    let standby_reconciles = standby.get("/metrics").await;
    assert!(
        !standby_reconciles.contains("machinist_operator_reconciles_total{controller=\"machine\"}"),
        "only the leader reconciles"
    );

    let standby_name = standby.identity.clone();
    leader.kill();
    let second = fleet.create_machines("second", 0x500, 20).await;
    fleet.report_all(&second, &qemu_items()).await;
    let machines =
        wait_for(&fleet.machines(), WITHIN, "40 machines allocated after failover", |ms: &[Arc<Machine>]| {
            ms.iter().filter(|m| phase(m) == Some(MachinePhase::Allocated)).count() == 40
        })
        .await;
    assert_consistent(&fleet, &machines).await;
    let lease = leases.get("machinist-operator").await.unwrap();
    let spec = lease.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some(standby_name.as_str()));
    assert!(spec.lease_transitions.unwrap_or(0) > transitions);
    assert!(standby.get("/readyz").await.contains("leading"));
    drop(standby);
}
