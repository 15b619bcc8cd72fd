#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic
//! The boot services as `machinist-boot` runs them, against the embedded control plane, driven
//! by curl: agent tokens created for Machines, auto-registration from an iPXE request, the
//! agent's report, progress and log, the TFTP chain script (fetched with tftp-hpa), the iPXE
//! binaries over HTTP for UEFI HTTP boot, the boot timeline (`status.lastBoot` and Events), and
//! `/metrics` on its own port.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Event, Secret};
use kube::Api;
use kube::api::{ListParams, PostParams, ResourceExt};
use kube::runtime::wait::await_condition;
use machinist_boot::cluster::{
    DEFAULT_TOKEN_NAMESPACE, LOG_KEY, MACHINE_ANNOTATION, MACHINE_NAMESPACE_LABEL, MACHINE_UID_ANNOTATION, TOKEN_KEY,
    TOKEN_LABEL, log_config_map_name, token_secret_name,
};
use machinist_crds::Machine;
use machinist_crds::machine::{BootStepKind, MachinePhase};
use machinist_e2e::cluster::{BootServices, ControlPlane};
use serde_json::json;

mod common;
use common::{curl, expect_status};

const WAIT: Duration = Duration::from_secs(20);

async fn wait<K, F>(api: &Api<K>, name: &str, what: &str, condition: F) -> K
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    F: Fn(Option<&K>) -> bool,
{
    tokio::time::timeout(WAIT, await_condition(api.clone(), name, condition))
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {WAIT:?}"))
        .unwrap()
        .unwrap_or_else(|| panic!("{what}: {name} is gone"))
}

fn secret_token(secret: &Secret) -> String {
    String::from_utf8(secret.data.as_ref().unwrap()[TOKEN_KEY].0.clone()).unwrap()
}

fn script_arg<'a>(script: &'a str, key: &str) -> &'a str {
    script
        .split_whitespace()
        .find_map(|word| word.strip_prefix(key))
        .unwrap_or_else(|| panic!("{key} not in the script:\n{script}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_and_machines_through_the_boot_services() {
    if !machinist_e2e::prereq::need_programs("agents_and_machines_through_the_boot_services", &["curl", "tftp"])
        .unwrap()
    {
        return;
    }
    let control = ControlPlane::start().await.unwrap();
    let client = control.client.clone();
    let machines: Api<Machine> = Api::default_namespaced(client.clone());
    // The fixture creates the token namespace before it starts the boot services.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), DEFAULT_TOKEN_NAMESPACE);
    let declared: Machine = serde_json::from_value(json!({
        "apiVersion": "machinist.dev/v1alpha1", "kind": "Machine", "metadata": {"name": "vm-1"},
        "spec": {"interfaces": [{"mac": "52:54:00:ab:00:01"}], "provider": {"manual": {}}},
    }))
    .unwrap();
    let declared = machines.create(&PostParams::default(), &declared).await.unwrap();

    let artifacts = control.scratch("artifacts").unwrap();
    std::fs::write(artifacts.join("vmlinuz"), vec![7u8; 4096]).unwrap();
    let yaml = format!(
        r#"
namespace: default
autoRegister: true
http:
  listen: 127.0.0.1:0
  publicUrl: http://boot.invalid:8080
  artifactRoot: {}
  ramdisk: {{kernel: vmlinuz, initrd: initrd.gz, args: [console=ttyS0]}}
  logLimit: 1024
tftp:
  listen: 127.0.0.1:0
  root: {}
  ipxeSource: /usr/lib/ipxe
metrics:
  listen: 127.0.0.1:0
timeline:
  flushMillis: 100
"#,
        artifacts.display(),
        control.scratch("tftp").unwrap().display(),
    );
    let boot = BootServices::start(&control, &yaml).await.unwrap();
    let http = boot.http_url().unwrap();
    let metrics = boot.metrics_url().unwrap();

    // The token keeper gives the declared Machine its token, in the token namespace, naming
    // its Machine (ownerReferences cannot cross namespaces).
    let secret =
        wait(&secrets, &token_secret_name("default", "vm-1"), "token Secret", |s: Option<&Secret>| s.is_some()).await;
    let token = secret_token(&secret);
    assert_eq!(token.len(), 64);
    assert!(secret.owner_references().is_empty());
    assert_eq!(secret.labels()[TOKEN_LABEL], "true");
    assert_eq!(secret.labels()[MACHINE_NAMESPACE_LABEL], "default");
    assert_eq!(secret.annotations()[MACHINE_ANNOTATION], "vm-1");
    assert_eq!(secret.annotations()[MACHINE_UID_ANNOTATION], declared.uid().unwrap());

    // Its script carries its name and token.
    let script = curl(&[&format!("{http}/ipxe/52:54:00:AB:00:01")]).await.unwrap();
    expect_status(&script, 200, "script of vm-1").unwrap();
    let text = script.text();
    assert_eq!(script_arg(&text, "machinist.machine="), "vm-1");
    assert_eq!(script_arg(&text, "machinist.token="), token);
    assert_eq!(script_arg(&text, "machinist.mode="), "discovery");

    // An unknown MAC is registered by its first script request.
    let script = curl(&[&format!("{http}/ipxe/52:54:00:99:00:01")]).await.unwrap();
    expect_status(&script, 200, "script of an unknown machine").unwrap();
    let text = script.text();
    assert_eq!(script_arg(&text, "machinist.machine="), "mac-52-54-00-99-00-01");
    let registered = machines.get("mac-52-54-00-99-00-01").await.unwrap();
    assert_eq!(registered.status.as_ref().unwrap().phase, Some(MachinePhase::Registered));
    assert_eq!(registered.spec.interfaces[0].mac, "52:54:00:99:00:01");
    assert_eq!(registered.labels()["machinist.dev/auto-registered"], "true");
    let registered_secret = secrets.get(&token_secret_name("default", "mac-52-54-00-99-00-01")).await.unwrap();
    assert_eq!(script_arg(&text, "machinist.token="), secret_token(&registered_secret));
    // Asking again registers nothing new.
    expect_status(&curl(&[&format!("{http}/ipxe/52:54:00:99:00:01")]).await.unwrap(), 200, "again").unwrap();
    assert_eq!(machines.list(&ListParams::default()).await.unwrap().items.len(), 2);

    // The agent of vm-1: report, progress, log.
    let auth = format!("Authorization: Bearer {token}");
    let post = |path: &str, body: &str, auth: &str| {
        let url = format!("{http}/machines/vm-1/{path}");
        let (body, auth) = (body.to_owned(), auth.to_owned());
        async move { curl(&["-X", "POST", "-H", &auth, "--data-binary", &body, &url]).await.unwrap() }
    };
    let report = r#"{"items": [["system","product","name","QEMU"],["cpu","logical","number","2"]]}"#;
    expect_status(&post("report", report, "Authorization: Bearer wrong").await, 401, "wrong token").unwrap();
    expect_status(&post("report", report, &auth).await, 204, "report").unwrap();
    expect_status(&post("progress", r#"{"step": "partition", "message": "vda"}"#, &auth).await, 204, "progress")
        .unwrap();
    let failed = r#"{"step": "install", "message": "no space left", "level": "error"}"#;
    expect_status(&post("progress", failed, &auth).await, 204, "error progress").unwrap();
    expect_status(&post("progress", r#"{"step": "bad step"}"#, &auth).await, 400, "bad progress").unwrap();
    expect_status(&post("progress", r#"{"step": "x"}"#, "X-No: auth").await, 401, "progress without token").unwrap();
    expect_status(&post("log", "line one\n", &auth).await, 204, "log").unwrap();
    expect_status(&post("log", "line two\n", &auth).await, 204, "log again").unwrap();
    expect_status(&post("log", &"x".repeat(2048), &auth).await, 413, "oversized log").unwrap();
    let logs: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let log = logs.get(&log_config_map_name("vm-1")).await.unwrap();
    assert_eq!(log.data.as_ref().unwrap()[LOG_KEY], "line one\nline two\n");
    assert_eq!(log.owner_references()[0].name, "vm-1");

    // The timeline: status.lastBoot lists the steps, and Events tell them.
    let has = |machine: Option<&Machine>, kinds: &[BootStepKind]| {
        let steps = machine.and_then(|m| m.status.as_ref()?.last_boot.clone()).map(|b| b.steps).unwrap_or_default();
        kinds.iter().all(|kind| steps.iter().any(|s| s.kind == *kind))
    };
    use BootStepKind::{HardwareReport, LogUpload, Progress, Script};
    let vm = wait(&machines, "vm-1", "vm-1's boot timeline", move |m: Option<&Machine>| {
        has(m, &[Script, HardwareReport, Progress, LogUpload])
    })
    .await;
    let status = vm.status.unwrap();
    assert_eq!(status.hardware.unwrap().items.len(), 2, "the report and the timeline both stay");
    let progress: Vec<_> =
        status.last_boot.unwrap().steps.into_iter().filter(|s| s.kind == Progress).map(|s| s.detail).collect();
    assert_eq!(progress, ["partition: vda", "install: no space left"]);
    let events: Api<Event> = Api::default_namespaced(client.clone());
    let about_vm1 = events.list(&ListParams::default()).await.unwrap().items;
    let reasons: Vec<_> = about_vm1
        .iter()
        .filter(|e| e.involved_object.name.as_deref() == Some("vm-1"))
        .filter_map(|e| e.reason.clone())
        .collect();
    assert!(reasons.iter().any(|r| r == "BootProgress"), "{reasons:?}");
    assert!(reasons.iter().any(|r| r == "BootProblem"), "{reasons:?}");

    // An artifact fetched from the address that last asked for a script joins that machine's
    // boot (the unknown machine's, here both came from 127.0.0.1).
    expect_status(&curl(&[&format!("{http}/artifacts/vmlinuz")]).await.unwrap(), 200, "kernel").unwrap();
    // So does a TFTP transfer: the chain script that sends iPXE clients on to HTTP.
    let tftp = boot.bound().tftp.unwrap();
    let fetched = control.scratch("client").unwrap().join("fetched.ipxe");
    let output = tokio::process::Command::new("tftp")
        .args(["-m", "binary", &tftp.ip().to_string(), &tftp.port().to_string(), "-c", "get", "machinist.ipxe"])
        .arg(&fetched)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(WAIT, output).await.unwrap().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(std::fs::read_to_string(&fetched).unwrap(), "#!ipxe\nchain http://boot.invalid:8080/ipxe/${netX/mac}\n");
    // UEFI HTTP boot clients get the same iPXE binary over HTTP; nothing else of the TFTP root.
    let efi = curl(&[&format!("{http}/ipxe-binaries/ipxe.efi")]).await.unwrap();
    expect_status(&efi, 200, "ipxe.efi over HTTP").unwrap();
    assert_eq!(efi.body, std::fs::read("/usr/lib/ipxe/ipxe.efi").unwrap());
    for refused in ["machinist.ipxe", "..%2Fetc%2Fpasswd", "ipxe.efi%00"] {
        let reply = curl(&[&format!("{http}/ipxe-binaries/{refused}")]).await.unwrap();
        expect_status(&reply, 404, refused).unwrap();
    }
    let registered = "mac-52-54-00-99-00-01";
    wait(&machines, registered, "artifact and TFTP steps", |m: Option<&Machine>| {
        has(m, &[Script, BootStepKind::Artifact, BootStepKind::TftpFile])
    })
    .await;

    // Metrics and health on their own port, not on the boot port.
    let scraped = curl(&[&format!("{metrics}/metrics")]).await.unwrap();
    expect_status(&scraped, 200, "metrics").unwrap();
    let text = scraped.text();
    for line in [
        "machinist_boot_http_scripts_total 3",
        "machinist_boot_http_registered_total 1",
        "machinist_boot_http_reports_accepted_total 1",
        "machinist_boot_http_reports_refused_total 1",
        "machinist_boot_timeline_dropped_total 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
    }
    expect_status(&curl(&[&format!("{metrics}/healthz")]).await.unwrap(), 200, "healthz").unwrap();
    expect_status(&curl(&[&format!("{http}/metrics")]).await.unwrap(), 404, "metrics on the boot port").unwrap();

    tokio::time::timeout(WAIT, boot.stop()).await.unwrap().unwrap();
    control.stop().await;
}
