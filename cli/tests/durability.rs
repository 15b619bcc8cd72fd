//! `machinist up` keeps every acknowledged write through `kill -9`, and resourceVersions stay
//! monotonic across the restart; a watch resumes from the last resourceVersion, or is told it
//! is gone and relists.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use kube::api::{ListParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, ResourceExt};
use machinist_crds::Machine;
use serde_json::json;

/// Starts `machinist up` and returns it with the kubeconfig it announced.
fn up(home: &Path) -> (Child, PathBuf) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_machinist"))
        // Only the control plane: this test counts revisions, and controllers would add their own.
        .args(["up", "--listen", "127.0.0.1:0", "--no-operator", "--home"])
        .arg(home)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let kubeconfig = loop {
        let line = lines.next().expect("machinist up exited before announcing its kubeconfig").unwrap();
        if let Some(path) = line.trim().strip_prefix("export KUBECONFIG=") {
            break PathBuf::from(path);
        }
    };
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, kubeconfig)
}

async fn client(kubeconfig: &Path) -> Client {
    let config =
        kube::Config::from_custom_kubeconfig(Kubeconfig::read_from(kubeconfig).unwrap(), &KubeConfigOptions::default())
            .await
            .unwrap();
    Client::try_from(config).unwrap()
}

fn machine(i: usize) -> Machine {
    serde_json::from_value(json!({
        "apiVersion": "machinist.dev/v1alpha1", "kind": "Machine",
        "metadata": {"name": format!("m{i:04}")},
        "spec": {"interfaces": [{"mac": format!("52:54:00:00:{:02x}:{:02x}", i / 256, i % 256)}], "provider": {"manual": {}}}
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    const COUNT: usize = 1000;
    let home = tempfile::tempdir().unwrap();
    let (mut first, kubeconfig) = up(home.path());
    let machines: Api<Machine> = Api::default_namespaced(client(&kubeconfig).await);
    let first_version = machines.create(&PostParams::default(), &machine(0)).await.unwrap().resource_version().unwrap();
    futures::stream::iter(1..COUNT)
        .map(|i| {
            let machines = machines.clone();
            async move { machines.create(&PostParams::default(), &machine(i)).await.map(drop) }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await
        .unwrap();
    let before = machines.list(&ListParams::default()).await.unwrap();
    assert_eq!(before.items.len(), COUNT);
    let last_version: u64 = before.metadata.resource_version.clone().unwrap().parse().unwrap();

    first.kill().unwrap(); // SIGKILL: no shutdown path runs
    first.wait().unwrap();

    let (mut second, kubeconfig) = up(home.path());
    let machines: Api<Machine> = Api::default_namespaced(client(&kubeconfig).await);
    let after = machines.list(&ListParams::default()).await.unwrap();
    assert_eq!(after.items.len(), COUNT, "every acknowledged create is still there");
    assert_eq!(after.metadata.resource_version.clone().unwrap().parse::<u64>().unwrap(), last_version);

    // A watch from the last resourceVersion resumes: the next change arrives, numbered after it.
    let mut events =
        machines.watch(&WatchParams::default().timeout(20), &last_version.to_string()).await.unwrap().boxed();
    let created = machines.create(&PostParams::default(), &machine(COUNT)).await.unwrap();
    assert!(created.resource_version().unwrap().parse::<u64>().unwrap() > last_version, "revisions stay monotonic");
    match tokio::time::timeout(Duration::from_secs(20), events.try_next()).await.unwrap().unwrap() {
        Some(WatchEvent::Added(machine)) => assert_eq!(machine.name_any(), format!("m{COUNT:04}")),
        other => panic!("expected the new machine, got {other:?}"),
    }

    // A watch from before the restart cannot be resumed: 410 Gone, and a relist has everything.
    let mut old = machines.watch(&WatchParams::default().timeout(5), &first_version).await.unwrap().boxed();
    match tokio::time::timeout(Duration::from_secs(10), old.try_next()).await.unwrap().unwrap() {
        Some(WatchEvent::Error(status)) => assert_eq!(status.code, 410),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
    assert_eq!(machines.list(&ListParams::default()).await.unwrap().items.len(), COUNT + 1);

    second.kill().unwrap();
    second.wait().unwrap();
}
