#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic
//! Install to Ready on the embedded control plane, without a VM: the operator, the boot
//! services and the agent's own install code (what `machinist-agent` runs in install mode),
//! writing to a file that stands for the target disk. The image comes from the boot services'
//! artifact root, its sha256 from `sha256sum`; the boot script is read with `curl`, the
//! phone-home is `curl`'s, and `kubectl wait --for=condition=Ready` has the last word.
//!
//! - A machine matched by eDeploy rules that capture `$disk` is allocated, planned
//!   (`status.install.plan`), installed (the file holds the image byte for byte), boots its local
//!   disk, phones home with its own credential and is Ready.
//! - A wrong checksum fails the install (`Failed`, `InstallFailed`, the agent's reason); a
//!   reinstall annotation after the Role is fixed installs it as attempt 2; a report of attempt
//!   1 is then refused, as are a plan request with another machine's token and a report that goes
//!   back.
//! - A disk smaller than the image is refused before anything is written.
//! - A Role template that does not render (here: it runs out of fuel) fails the install with
//!   the reason, before the agent writes anything.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::{Fleet, condition, qemu_items, start_operator, wait_for};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use machinist_agent::backoff::Backoff;
use machinist_agent::install::{self, InstallError};
use machinist_agent::sidecar::{SendError, Sidecar};
use machinist_agent_protocol::cmdline::{Args, Mode};
use machinist_agent_protocol::install::{InstallPhase, InstallReport};
use machinist_crds::machine::{BootTarget, MachinePhase};
use machinist_crds::{HardwareProfile, Machine, Role};
use serde_json::json;

const WITHIN: Duration = Duration::from_secs(120);
const IMAGE_BYTES: usize = 3 * 1024 * 1024 + 512;

fn kubectl() -> PathBuf {
    let pinned = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/bin/kubectl");
    if pinned.is_file() { pinned } else { PathBuf::from("kubectl") }
}

/// The programs these tests drive; `false` (skip) when missing outside CI.
fn peers(test: &str) -> bool {
    let mut programs = vec!["curl", "sha256sum"];
    if !kubectl().is_file() {
        programs.push("kubectl");
    }
    machinist_e2e::prereq::need_programs(test, &programs).unwrap_or_else(|e| panic!("{e}"))
}

fn run(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> String {
    let output = Command::new(program.as_ref()).args(args).output().unwrap();
    assert!(output.status.success(), "{:?} {args:?}: {}", program.as_ref(), String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// A raw image of `IMAGE_BYTES` under the artifact root, and its sha256 by `sha256sum`.
fn image(fleet: &Fleet) -> (Vec<u8>, String) {
    let bytes: Vec<u8> = (0..IMAGE_BYTES).map(|i| (i * 7 % 251) as u8).collect();
    let dir = fleet.scratch("artifacts").join("images");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("base.raw");
    std::fs::write(&path, &bytes).unwrap();
    let sum = run("sha256sum", &[path.to_str().unwrap()]);
    (bytes, sum.split_whitespace().next().unwrap().to_owned())
}

async fn apply_role(fleet: &Fleet, sha256: &str) {
    apply_role_with(fleet, sha256, json!({"userData": "#cloud-config\nfqdn: {{ hostname }}.{{ machine }}.example\n"}))
        .await;
}

/// Role `base` with the image `base.raw` and the `cloudInit` templates given.
async fn apply_role_with(fleet: &Fleet, sha256: &str, cloud_init: serde_json::Value) {
    let role: Role = serde_json::from_value(json!({
        "apiVersion": "machinist.dev/v1alpha1", "kind": "Role", "metadata": {"name": "base"},
        "spec": {"version": "1.0", "install": {"method": "Image", "image": {
            "url": format!("{}/artifacts/images/base.raw", fleet.http), "sha256": sha256, "format": "raw"}},
            "cloudInit": cloud_init},
    }))
    .unwrap();
    let params = PatchParams::apply("install-test").force();
    Api::<Role>::default_namespaced(fleet.client.clone()).patch("base", &params, &Patch::Apply(&role)).await.unwrap();
}

/// eDeploy's `vm` profile (a virtio disk captured as `$disk`), the Cmdb `pool`, Role `base`.
async fn apply_profile(fleet: &Fleet) {
    fleet.apply_cmdb("pool", 7, 4).await;
    let profile: HardwareProfile = serde_json::from_value(json!({
        "apiVersion": "machinist.dev/v1alpha1", "kind": "HardwareProfile", "metadata": {"name": "vm"},
        "spec": {
            "priority": 1,
            "match": [["disk", "$disk", "size", "gt(1)"], ["system", "product", "vendor", "QEMU"]],
            "cmdbRef": {"name": "pool"},
            "role": {"name": "base"},
            "install": {"targetDisk": "$disk", "network": {"interface": "eth0", "mode": "static"}},
        },
    }))
    .unwrap();
    Api::<HardwareProfile>::default_namespaced(fleet.client.clone())
        .create(&PostParams::default(), &profile)
        .await
        .unwrap();
}

fn sidecar(fleet: &Fleet, machine: &str, token: &str) -> Sidecar {
    let args = Args {
        url: fleet.http.clone(),
        machine: machine.to_owned(),
        token: token.to_owned(),
        mac: String::new(),
        mode: Mode::Install,
        on_success: machinist_crds::machine::OnSuccess::Reboot,
        debug: false,
        role: None,
    };
    Sidecar::new(&args, Backoff { base: Duration::from_millis(50), cap: Duration::from_millis(500), attempts: 5 })
}

/// A directory standing for `/dev`, with a `vda` of `size` bytes.
fn devices(fleet: &Fleet, name: &str, size: u64) -> PathBuf {
    let dev = fleet.scratch(name);
    let disk = std::fs::File::create(dev.join("vda")).unwrap();
    disk.set_len(size).unwrap();
    dev
}

async fn install_in_background(
    fleet: &Fleet,
    machine: &str,
    token: &str,
    dev: PathBuf,
) -> Result<(machinist_agent_protocol::install::PlanResponse, install::Written), InstallError> {
    let sidecar = sidecar(fleet, machine, token);
    tokio::task::spawn_blocking(move || install::install(&sidecar, &dev, 2)).await.unwrap()
}

fn phase(m: &Machine) -> Option<MachinePhase> {
    m.status.as_ref().and_then(|s| s.phase)
}

async fn wait_phase(fleet: &Fleet, name: &str, wanted: MachinePhase) -> Arc<Machine> {
    let what = format!("{name} {wanted:?}");
    let machines = wait_for(&fleet.machines(), WITHIN, &what, |ms: &[Arc<Machine>]| {
        ms.iter().any(|m| m.name_any() == name && phase(m) == Some(wanted))
    })
    .await;
    machines.into_iter().find(|m| m.name_any() == name).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_allocated_machine_is_installed_boots_its_disk_and_phones_home_to_ready() {
    if !peers("an_allocated_machine_is_installed_boots_its_disk_and_phones_home_to_ready") {
        return;
    }
    let fleet = Fleet::start().await;
    let (shutdown, operator) = start_operator(&fleet.operator).await;
    let (bytes, sha256) = image(&fleet);
    apply_role(&fleet, &sha256).await;
    apply_profile(&fleet).await;
    let names = fleet.create_machines("web", 0x300, 1).await;
    let name = names[0].clone();
    fleet.report_all(&names, &qemu_items()).await;

    let machine = wait_phase(&fleet, &name, MachinePhase::Provisioning).await;
    let status = machine.status.clone().unwrap();
    assert_eq!(status.boot_target, Some(BootTarget::Install));
    let install = status.install.clone().unwrap();
    assert_eq!(install.attempt, 1);
    let plan = &install.plan;
    assert_eq!(plan.target_disk, "/dev/vda", "$disk resolved from the captures");
    assert_eq!((plan.role.name.as_str(), plan.role.version.as_deref()), ("base", Some("1.0")));
    assert_eq!(plan.hostname.as_deref(), Some("pool-00000"));
    let network = plan.network.clone().unwrap();
    assert_eq!((network.interface.as_str(), network.address.as_deref()), ("eth0", Some("10.7.0.1/16")));

    let token = fleet.tokens(&names).await[&name].clone();
    let dev = devices(&fleet, "dev-ok", 8 << 20);
    let (plan, written) = install_in_background(&fleet, &name, &token, dev.clone()).await.unwrap();
    assert_eq!(written.bytes, IMAGE_BYTES as u64);
    // The seed came with the plan: the Role's template rendered over the machine.
    assert_eq!(plan.seed.user_data, "#cloud-config\nfqdn: pool-00000.web-0000.example\n");
    assert!(plan.seed.vendor_data.contains("phone-home?token="), "{}", plan.seed.vendor_data);
    let disk = std::fs::read(dev.join("vda")).unwrap();
    assert_eq!(&disk[..IMAGE_BYTES], bytes.as_slice(), "the image, byte for byte");
    assert!(disk[IMAGE_BYTES..].iter().all(|b| *b == 0), "nothing past it");

    let machine = wait_phase(&fleet, &name, MachinePhase::Provisioned).await;
    let status = machine.status.clone().unwrap();
    assert_eq!(status.boot_target, Some(BootTarget::LocalDisk));
    let progress = status.install_progress.clone().unwrap();
    assert_eq!((progress.attempt, progress.phase), (1, InstallPhase::Succeeded));
    assert_eq!(progress.bytes_written, IMAGE_BYTES as i64);
    assert_eq!(condition(&machine, "Provisioned").map(|c| c.status.as_str()), Some("True"));
    // Its next network boot goes to its disk.
    let mac = machine.spec.interfaces[0].mac.clone();
    let script = run("curl", &["-sf", &format!("{}/ipxe/{mac}", fleet.http)]);
    assert!(script.lines().any(|l| l.trim() == "exit"), "{script}");
    // The agent's token is not the installed system's.
    // At the boot services' public URL (a name machines resolve; the test reaches them on
    // loopback).
    let path = format!("/machines/{name}/phone-home");
    assert_eq!(plan.phone_home.url, format!("http://boot.invalid:8080{path}"));
    let phone_home = format!("{}{path}", fleet.http);
    let wrong = format!("Authorization: Bearer {token}");
    let refused =
        run("curl", &["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-H", &wrong, &phone_home]);
    assert_eq!(refused, "401");
    let wrong_query = format!("{phone_home}?token={token}");
    let refused = run("curl", &["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", &wrong_query]);
    assert_eq!(refused, "401", "nor in the query, where cloud-init's phone_home puts it");
    let right = format!("Authorization: Bearer {}", plan.phone_home.token);
    let accepted =
        run("curl", &["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-H", &right, &phone_home]);
    assert_eq!(accepted, "204");

    let kubeconfig = fleet.kubeconfig.to_str().unwrap().to_owned();
    let machine_ref = format!("machine/{name}");
    run(kubectl(), &["--kubeconfig", &kubeconfig, "wait", "--for=condition=Ready", &machine_ref, "--timeout=60s"]);
    let ready = fleet.machines().get(&name).await.unwrap();
    assert_eq!(phase(&ready), Some(MachinePhase::Ready));
    assert!(ready.status.as_ref().unwrap().provisioned_time.is_some());
    assert_eq!(ready.status.as_ref().unwrap().install_progress.as_ref().map(|p| p.phase), Some(InstallPhase::Booted));

    shutdown.cancel();
    operator.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_installs_say_why_and_a_reinstall_is_a_new_attempt() {
    if !peers("failed_installs_say_why_and_a_reinstall_is_a_new_attempt") {
        return;
    }
    let fleet = Fleet::start().await;
    let (shutdown, operator) = start_operator(&fleet.operator).await;
    let (bytes, sha256) = image(&fleet);
    apply_role(&fleet, &"0".repeat(64)).await;
    apply_profile(&fleet).await;
    let names = fleet.create_machines("db", 0x400, 2).await;
    fleet.report_all(&names, &qemu_items()).await;
    let (first, second) = (names[0].clone(), names[1].clone());
    wait_phase(&fleet, &first, MachinePhase::Provisioning).await;
    wait_phase(&fleet, &second, MachinePhase::Provisioning).await;
    let tokens = fleet.tokens(&names).await;

    // Another machine's token gets no plan.
    let crossed = sidecar(&fleet, &first, &tokens[&second]);
    let refused = tokio::task::spawn_blocking(move || crossed.plan()).await.unwrap();
    assert!(matches!(refused, Err(SendError::Refused { status: 401, .. })), "{refused:?}");

    // The checksum does not match: the install fails, the machine says why.
    let dev = devices(&fleet, "dev-bad", 8 << 20);
    let error = install_in_background(&fleet, &first, &tokens[&first], dev.clone()).await.unwrap_err();
    assert!(matches!(error, InstallError::Checksum { .. }), "{error}");
    let failed = wait_phase(&fleet, &first, MachinePhase::Failed).await;
    let failure = failed.status.as_ref().unwrap().failure.clone().unwrap();
    assert_eq!(failure.reason, "InstallFailed");
    assert!(failure.message.contains("sha256 mismatch"), "{}", failure.message);
    assert_eq!(failed.status.as_ref().unwrap().boot_target, Some(BootTarget::None));
    assert_eq!(condition(&failed, "Provisioned").map(|c| c.reason.as_str()), Some("InstallFailed"));
    let disk = std::fs::read(dev.join("vda")).unwrap();
    assert!(disk[..1 << 20].iter().all(|b| *b == 0), "the start of the disk is wiped");

    // A disk smaller than the image is refused before anything is written.
    let small = devices(&fleet, "dev-small", 1 << 20);
    std::fs::write(small.join("vda"), vec![0xee; 1 << 20]).unwrap();
    let error = install_in_background(&fleet, &second, &tokens[&second], small.clone()).await.unwrap_err();
    assert!(matches!(error, InstallError::TooSmall { disk_size: 1_048_576, .. }), "{error}");
    assert_eq!(std::fs::read(small.join("vda")).unwrap(), vec![0xee; 1 << 20], "untouched");
    let failed = wait_phase(&fleet, &second, MachinePhase::Failed).await;
    let message = &failed.status.as_ref().unwrap().failure.as_ref().unwrap().message;
    assert!(message.contains("does not fit"), "{message}");

    // Fixed Role, reinstall asked for: attempt 2 installs.
    apply_role(&fleet, &sha256).await;
    let machines = fleet.machines();
    let annotate = json!({"metadata": {"annotations": {"machinist.dev/reinstall": "1"}}});
    machines.patch(&first, &PatchParams::default(), &Patch::Merge(&annotate)).await.unwrap();
    let retried = wait_phase(&fleet, &first, MachinePhase::Provisioning).await;
    assert_eq!(retried.status.as_ref().unwrap().install.as_ref().map(|i| i.attempt), Some(2));
    assert_eq!(retried.status.as_ref().unwrap().failure, None);
    let dev = devices(&fleet, "dev-retry", 8 << 20);
    let (plan, written) = install_in_background(&fleet, &first, &tokens[&first], dev.clone()).await.unwrap();
    assert_eq!((plan.attempt, written.bytes), (2, IMAGE_BYTES as u64));
    assert_eq!(&std::fs::read(dev.join("vda")).unwrap()[..IMAGE_BYTES], bytes.as_slice());
    wait_phase(&fleet, &first, MachinePhase::Provisioned).await;
    // A late report of attempt 1 is refused (the boot services know attempt 2: they served its plan).
    let late = sidecar(&fleet, &first, &tokens[&first]);
    let stale = tokio::task::spawn_blocking(move || {
        late.install_report(&InstallReport::new(1, InstallPhase::Succeeded, 1, None, "late"))
    })
    .await
    .unwrap();
    assert!(
        matches!(&stale, Err(SendError::Refused { status: 409, body, .. }) if body.contains("attempt 1")),
        "{stale:?}"
    );
    // Going back after success is refused.
    let backwards = sidecar(&fleet, &first, &tokens[&first]);
    let refused = tokio::task::spawn_blocking(move || {
        backwards.install_report(&InstallReport::new(2, InstallPhase::Writing, 10, None, ""))
    })
    .await
    .unwrap();
    assert!(matches!(&refused, Err(SendError::Refused { status: 409, .. })), "{refused:?}");

    shutdown.cancel();
    operator.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_template_that_does_not_render_fails_the_install() {
    if !peers("a_template_that_does_not_render_fails_the_install") {
        return;
    }
    let fleet = Fleet::start().await;
    let (shutdown, operator) = start_operator(&fleet.operator).await;
    let (_, sha256) = image(&fleet);
    let looping = "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}";
    apply_role_with(&fleet, &sha256, json!({"userData": looping})).await;
    apply_profile(&fleet).await;
    let names = fleet.create_machines("loop", 0x500, 1).await;
    fleet.report_all(&names, &qemu_items()).await;
    let name = names[0].clone();
    wait_phase(&fleet, &name, MachinePhase::Provisioning).await;
    let token = fleet.tokens(&names).await[&name].clone();
    let dev = devices(&fleet, "dev-loop", 8 << 20);
    std::fs::write(dev.join("vda"), vec![0x5a; 8 << 20]).unwrap();
    let error = install_in_background(&fleet, &name, &token, dev.clone()).await.unwrap_err();
    assert!(matches!(&error, InstallError::Plan(SendError::Refused { status: 422, .. })), "{error}");
    let failed = wait_phase(&fleet, &name, MachinePhase::Failed).await;
    let message = &failed.status.as_ref().unwrap().failure.as_ref().unwrap().message;
    assert!(message.contains("spec.cloudInit.userData") && message.contains("fuel"), "{message}");
    assert_eq!(std::fs::read(dev.join("vda")).unwrap(), vec![0x5a; 8 << 20], "nothing written");
    shutdown.cancel();
    operator.await.unwrap().unwrap();
}
