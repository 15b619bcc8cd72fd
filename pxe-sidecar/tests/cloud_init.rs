#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic
//! The NoCloud seeds the boot services render, checked by cloud-init itself (Debian's 22.4,
//! unpacked as a tool by `scripts/deps` into `.tools/cloud-init`, run through
//! `.tools/bin/cloud-init`): `cloud-init schema` accepts every `#cloud-config` user-data and
//! the vendor-data of every Role in `examples/` and of the defaults, and `cloud-init devel
//! net-convert` turns every network-config into netplan with the planned address. A broken
//! cloud-config is refused by the same check, so the check can fail.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use machinist_agent_protocol::seed::NoCloud;
use machinist_boot::nocloud::{SeedInputs, render};
use machinist_crds::machine::InstallPlan;
use machinist_crds::role::CloudInit;
use serde_json::{Value, json};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `.tools/bin/cloud-init`, or `None` (after saying why) when the test should skip; a panic
/// when it is missing under `MACHINIST_E2E=require`.
fn cloud_init() -> Option<PathBuf> {
    let tool = workspace().join(".tools/bin/cloud-init");
    if tool.is_file() {
        return Some(tool);
    }
    let why = "no .tools/bin/cloud-init: run scripts/deps";
    match machinist_e2e::prereq::Mode::from_env().unwrap() {
        machinist_e2e::prereq::Mode::Require => panic!("{why}"),
        _ => eprintln!("skipping: {why}"),
    }
    None
}

/// The Roles' `spec.cloudInit` of every example manifest.
fn example_templates() -> Vec<(String, CloudInit)> {
    let mut found = Vec::new();
    let mut dirs = vec![workspace().join("examples")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                let text = std::fs::read_to_string(&path).unwrap();
                let documents: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap_or_default();
                for document in documents.into_iter().filter(|d| d["kind"] == "Role") {
                    if let Some(templates) = document["spec"].get("cloudInit") {
                        let name = format!("{}:{}", path.display(), document["metadata"]["name"]);
                        found.push((name, serde_json::from_value(templates.clone()).unwrap()));
                    }
                }
            }
        }
    }
    found
}

fn plan() -> InstallPlan {
    serde_json::from_value(json!({
        "role": {"name": "web", "version": "1.0"},
        "image": {"url": "http://192.168.122.1:8080/artifacts/web.raw.gz", "sha256": "a".repeat(64), "format": "raw"},
        "targetDisk": "/dev/vda",
        "hostname": "host03",
        "network": {"interface": "eth0", "mode": "static", "address": "192.168.122.3/24",
            "gateway": "192.168.122.1", "dns": ["192.168.122.1"]},
    }))
    .unwrap()
}

/// A machine's variables as eDeploy's `vm` profile and `generate()` CMDB give them.
fn variables() -> BTreeMap<String, String> {
    [
        ("disk", "vda"),
        ("eth", "eth0"),
        ("mac", "52:54:00:12:34:56"),
        ("ip", "192.168.122.3"),
        ("hostname", "host03"),
        ("netmask", "255.255.255.0"),
        ("gateway", "192.168.122.1"),
        ("dns_servers", "192.168.122.1"),
        ("domain", "lab.example"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn seed_of(templates: Option<&CloudInit>) -> NoCloud {
    let plan = plan();
    let variables = variables();
    render(SeedInputs {
        machine: "vm-1",
        namespace: "edeploy",
        attempt: 1,
        plan: &plan,
        variables: &variables,
        templates,
        phone_home_url: "http://192.168.122.1:8080/machines/vm-1/phone-home?token=0123abcd",
    })
    .unwrap()
}

fn run(tool: &Path, args: &[&str]) -> (bool, String) {
    let output = Command::new(tool).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

fn schema(tool: &Path, dir: &Path, name: &str, text: &str) -> (bool, String) {
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    run(tool, &["schema", "--config-file", file.to_str().unwrap()])
}

#[test]
fn cloud_init_accepts_every_rendered_seed() {
    let Some(tool) = cloud_init() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let examples = example_templates();
    assert!(
        examples.len() >= 2,
        "the examples' Roles with cloudInit: {:?}",
        examples.iter().map(|e| &e.0).collect::<Vec<_>>()
    );
    let mut seeds: Vec<(String, NoCloud)> = vec![("defaults".into(), seed_of(None))];
    seeds.extend(examples.iter().map(|(name, templates)| (name.clone(), seed_of(Some(templates)))));
    for (i, (name, seed)) in seeds.iter().enumerate() {
        for (file, text) in [("user-data", &seed.user_data), ("vendor-data", &seed.vendor_data)] {
            if !text.starts_with("#cloud-config") {
                continue; // a script or MIME: not cloud-config, nothing for the schema to check
            }
            let (ok, output) = schema(&tool, dir.path(), &format!("{i}-{file}"), text);
            assert!(ok, "{name}: cloud-init schema refuses its {file}:\n{text}\n{output}");
        }
        let network = seed.network_config.as_ref().unwrap_or_else(|| panic!("{name}: no network-config"));
        let input = dir.path().join(format!("{i}-network-config"));
        std::fs::write(&input, network).unwrap();
        let out = dir.path().join(format!("{i}-netplan"));
        let args = ["devel", "net-convert", "--network-data", input.to_str().unwrap(), "--kind", "yaml"];
        let (ok, output) = run(
            &tool,
            &[&args[..], &["--distro", "debian", "--output-kind", "netplan", "--directory", out.to_str().unwrap()]]
                .concat(),
        );
        assert!(ok, "{name}: net-convert refuses its network-config:\n{network}\n{output}");
        let netplan = std::fs::read_to_string(out.join("etc/netplan/50-cloud-init.yaml")).unwrap();
        assert!(netplan.contains("192.168.122.3/24") && netplan.contains("eth0"), "{name}:\n{netplan}");
    }
    // The check can fail: a hostname that is not a string is refused.
    let (ok, output) = schema(&tool, dir.path(), "broken", "#cloud-config\nhostname: 5\nphone_home: {url: 3}\n");
    assert!(!ok, "cloud-init schema accepted a broken cloud-config:\n{output}");
}
