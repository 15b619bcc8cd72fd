#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic
//! Failed reconciles are shown on the object as Events, on the embedded control plane: a
//! Warning with the error's reason for the first failure of a streak and not again on each
//! retry; a deletion waiting for its users as one Normal `InUse` Event.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{Fleet, qemu_items, wait_for};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client};
use machinist_crds::machine::MachinePhase;
use machinist_crds::{Cmdb, Machine};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const WITHIN: Duration = Duration::from_secs(60);

/// The operator in-process with its metrics port, where the failures are counted.
async fn start_operator(
    client: &Client,
) -> (CancellationToken, SocketAddr, tokio::task::JoinHandle<Result<(), machinist_operator::OperatorError>>) {
    let shutdown = CancellationToken::new();
    let config = machinist_operator::Config {
        namespace: Some("default".into()),
        metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..Default::default()
    };
    let started = machinist_operator::start(client.clone(), config, shutdown.clone()).await.unwrap();
    (shutdown, started.metrics.unwrap(), started.task)
}

async fn failures(metrics: SocketAddr, controller: &str, reason: &str) -> u64 {
    let mut stream = tokio::net::TcpStream::connect(metrics).await.unwrap();
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").await.unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.unwrap();
    let series =
        format!("machinist_operator_reconcile_failures_total{{controller=\"{controller}\",reason=\"{reason}\"}} ");
    reply.lines().find_map(|line| line.strip_prefix(&series)).map_or(0, |n| n.trim().parse().unwrap())
}

/// Waits until `controller` has failed at least `n` times with `reason`. The counter has no
/// watch: it is read every 100 ms, within a bound.
async fn wait_for_failures(metrics: SocketAddr, controller: &str, reason: &str, n: u64) {
    let waited = tokio::time::timeout(WITHIN, async {
        let mut every = tokio::time::interval(Duration::from_millis(100));
        loop {
            every.tick().await;
            if failures(metrics, controller, reason).await >= n {
                return;
            }
        }
    })
    .await;
    assert!(waited.is_ok(), "{controller} did not fail {n} times with {reason} within {WITHIN:?}");
}

async fn events_about(client: &Client, name: &str, reason: &str) -> Vec<Event> {
    let events: Api<Event> = Api::default_namespaced(client.clone());
    let all = events.list(&ListParams::default()).await.unwrap().items;
    all.into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .collect()
}

/// Type and note of each Event, for messages.
fn briefly(events: &[Event]) -> Vec<(Option<&str>, Option<&str>)> {
    events.iter().map(|e| (e.type_.as_deref(), e.note.as_deref())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_reconcile_shows_one_warning_with_its_reason() {
    let fleet = Fleet::start().await;
    // A machine bound (by its status) to a profile that does not exist: allocating fails with
    // NotCached on every retry.
    let names = fleet.create_machines("m", 0x900, 1).await;
    let status = json!({"status": {"phase": "Matched", "profile": "ghost"}});
    fleet.machines().patch_status(&names[0], &PatchParams::default(), &Patch::Merge(status)).await.unwrap();
    let (shutdown, metrics, operator) = start_operator(&fleet.operator).await;

    let events: Api<Event> = Api::default_namespaced(fleet.client.clone());
    wait_for(&events, WITHIN, "the NotCached Event", |es: &[Arc<Event>]| {
        es.iter().any(|e| e.reason.as_deref() == Some("NotCached"))
    })
    .await;
    // Retried with backoff (0.5–1 s, then 1–2 s, 2–4 s): four failures, one Event.
    wait_for_failures(metrics, "machine", "NotCached", 4).await;
    let shown = events_about(&fleet.client, &names[0], "NotCached").await;
    assert_eq!(shown.len(), 1, "{:?}", briefly(&shown));
    assert_eq!(shown[0].type_.as_deref(), Some("Warning"));
    let note = shown[0].note.as_deref().unwrap_or_default();
    assert!(note.contains("HardwareProfile ghost is not in the cache yet"), "{note}");

    shutdown.cancel();
    operator.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deletion_waiting_for_its_users_is_shown_once_and_is_not_a_warning() {
    let fleet = Fleet::start().await;
    let (shutdown, metrics, operator) = start_operator(&fleet.operator).await;
    fleet.apply_cmdb("pool", 1, 5).await;
    fleet.apply_profile("vm", 1, None, json!([["system", "product", "vendor", "QEMU"]]), Some("pool")).await;
    let names = fleet.create_machines("m", 0xa00, 1).await;
    fleet.report_all(&names, &qemu_items()).await;
    let machines = fleet.machines();
    wait_for(&machines, WITHIN, "allocated", |ms: &[Arc<Machine>]| {
        ms.iter().all(|m| m.status.as_ref().is_some_and(|s| s.phase == Some(MachinePhase::Allocated)))
    })
    .await;

    // Held: once when the deletion starts, again when the ledger writes `Deleting=True`.
    let cmdbs: Api<Cmdb> = Api::default_namespaced(fleet.client.clone());
    cmdbs.delete("pool", &DeleteParams::default()).await.unwrap();
    wait_for_failures(metrics, "cmdb", "InUse", 2).await;
    // The machine goes, and the Cmdb with it: the streak ends in a success.
    fleet.delete_machines(&names).await;
    wait_for(&cmdbs, WITHIN, "Cmdb gone", |cs: &[Arc<Cmdb>]| cs.is_empty()).await;

    let shown = events_about(&fleet.client, "pool", "InUse").await;
    assert_eq!(shown.len(), 1, "{:?}", briefly(&shown));
    assert_eq!(shown[0].type_.as_deref(), Some("Normal"));
    let note = shown[0].note.as_deref().unwrap_or_default();
    assert!(note.contains("Cmdb pool is still used by 1 machines"), "{note}");

    shutdown.cancel();
    operator.await.unwrap().unwrap();
}
