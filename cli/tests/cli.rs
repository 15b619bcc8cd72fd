//! The `machinist` binary, run as people run it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn machinist(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_machinist")).args(args).current_dir(dir).output().unwrap()
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn validate_accepts_the_examples() {
    let output = machinist(&["validate", "examples"], &repo_root());
    assert!(output.status.success(), "{}", stderr(&output));
    let summary = stderr(&output);
    assert!(summary.contains(" valid, 0 invalid,"), "{summary}");
}

#[test]
fn validate_reports_every_problem_with_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        r#"
apiVersion: machinist.dev/v1alpha1
kind: Machine
metadata: {name: vm-1}
spec:
  interfaces: [{mac: "52:54:00:zz:00:01"}]
  provider: {manual: {}, bmc: {driver: ipmi, address: "10.0.0.1", credentialsSecretRef: {name: b}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: not-ours}
---
apiVersion: machinist.dev/v1alpha1
kind: HardwareProfile
metadata: {name: hp}
spec: {priority: 1, maxMachines: -4, match: [[disk, $disk, size]]}
"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("broken.yml"), "kind: [unclosed\n").unwrap();
    let output = machinist(&["validate", "."], dir.path());
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    for expected in [
        "./bad.yaml: Machine \"vm-1\" is invalid:",
        "spec.interfaces[0].mac:",
        "./bad.yaml: HardwareProfile \"hp\" is invalid:",
        "spec.maxMachines: -4 is less than the minimum of 0",
        "spec.match[0]:",
        "./broken.yml: not valid YAML",
        "0 valid, 3 invalid, 1 not machinist objects",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn validate_reports_cel_rules_once_the_structure_is_right() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("two-providers.yaml"),
        r#"
apiVersion: machinist.dev/v1alpha1
kind: Machine
metadata: {name: vm-1}
spec:
  interfaces: [{mac: "52:54:00:00:00:01"}]
  provider: {manual: {}, bmc: {driver: ipmi, address: "10.0.0.1", credentialsSecretRef: {name: b}}}
"#,
    )
    .unwrap();
    let output = machinist(&["validate", "two-providers.yaml"], dir.path());
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("spec.provider: exactly one of provider.libvirt, provider.bmc or provider.manual")
    );
}

#[test]
fn crds_print_emits_the_six_kinds() {
    let output = machinist(&["crds"], &repo_root());
    assert!(output.status.success());
    let yaml = String::from_utf8(output.stdout).unwrap();
    let documents = machinist_crds_documents(&yaml);
    let names: Vec<&str> = documents.iter().filter_map(|d| d["metadata"]["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "machines.machinist.dev",
            "hardwareprofiles.machinist.dev",
            "cmdbs.machinist.dev",
            "roles.machinist.dev",
            "loadbalancerbackends.machinist.dev",
            "hypervisors.machinist.dev"
        ]
    );
}

fn machinist_crds_documents(yaml: &str) -> Vec<serde_json::Value> {
    serde_saphyr::from_multiple(yaml).unwrap()
}

#[test]
fn crds_check_passes_on_the_repository_and_fails_on_drift() {
    let output = machinist(&["crds", "check"], &repo_root());
    assert!(output.status.success(), "{}", stderr(&output));

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let output = machinist(&["crds", "generate", "--root", root], dir.path());
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(machinist(&["crds", "check", "--root", root], dir.path()).status.success());

    let reference = dir.path().join("docs/reference/role.md");
    std::fs::write(&reference, "hand-edited\n").unwrap();
    let output = machinist(&["crds", "check", "--root", root], dir.path());
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("docs/reference/role.md: differs from line 1"), "{}", stderr(&output));
    assert!(stderr(&output).contains("run `machinist crds generate`"));

    assert!(machinist(&["crds", "generate", "--root", root], dir.path()).status.success());
    assert!(machinist(&["crds", "check", "--root", root], dir.path()).status.success());
}

#[test]
fn import_edeploy_writes_manifests_that_validate() {
    let fixture = repo_root().join("matching/tests/fixtures/edeploy");
    let output = machinist(&["import", "edeploy", fixture.to_str().unwrap(), "--namespace", "edeploy"], &repo_root());
    assert!(output.status.success(), "{}", stderr(&output));
    let yaml = String::from_utf8(output.stdout).unwrap();
    assert!(yaml.contains("note: vm.configure present, not executed"), "{yaml}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("imported.yaml"), &yaml).unwrap();
    let validated = machinist(&["validate", "imported.yaml"], dir.path());
    assert!(validated.status.success(), "{}", stderr(&validated));
    assert!(stderr(&validated).contains("4 valid, 0 invalid"), "{}", stderr(&validated));
    let objects: Vec<serde_json::Value> = serde_saphyr::from_multiple(&yaml).unwrap();
    let vm = objects.iter().find(|o| o["kind"] == "HardwareProfile" && o["metadata"]["name"] == "vm").unwrap();
    assert!(vm["spec"].get("maxMachines").is_none(), "'*' in state means unlimited");
    let hp = objects.iter().find(|o| o["kind"] == "HardwareProfile" && o["metadata"]["name"] == "hp").unwrap();
    assert_eq!(hp["spec"]["maxMachines"], 4);
    assert!(hp["spec"]["priority"].as_i64() < vm["spec"]["priority"].as_i64());
}

#[test]
fn import_edeploy_points_at_the_broken_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("state"), "[('vm', '*')]\n").unwrap();
    std::fs::write(
        dir.path().join("vm.specs"),
        "[\n    ('disk', '$disk', 'size', 'gt(4)'),\n    ('network', '$eth'\n]\n",
    )
    .unwrap();
    let output = machinist(&["import", "edeploy", dir.path().to_str().unwrap()], dir.path());
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("vm.specs:4:1: expected ',' or ')', found ']'"), "{message}");
}

#[test]
fn up_refuses_a_bad_boot_config_before_starting_anything() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("boot.yaml");
    std::fs::write(&config, "namespace: default\ndhcp:\n  interfaces: [br0]\n  severAddress: 10.0.0.1\n").unwrap();
    let home = dir.path().join("home");
    let output = machinist(
        &["up", "--listen", "127.0.0.1:0", "--home", home.to_str().unwrap(), "--boot-config", config.to_str().unwrap()],
        dir.path(),
    );
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("boot.yaml") && message.contains("severAddress"), "{message}");
    assert!(!home.exists(), "nothing is created when the configuration is wrong");
}
