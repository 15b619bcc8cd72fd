#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic
//! The workspace's crate edges keep the architecture (docs/architecture.md): each forbidden
//! edge named here fails the test when a Cargo.toml adds it, saying which rule it breaks.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// How a crate uses another, as Cargo.toml declares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Normal,
    Build,
    Dev,
}

/// One declared dependency between two crates of the workspace.
#[derive(Debug)]
struct Edge {
    from: String,
    to: String,
    kind: Kind,
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
    command
}

/// The workspace's crates and the edges between them.
fn workspace() -> (Vec<String>, Vec<Edge>) {
    let output = cargo().args(["metadata", "--format-version", "1", "--no-deps", "--offline"]).output().unwrap();
    assert!(output.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&output.stderr));
    let metadata: Value = serde_json::from_slice(&output.stdout).unwrap();
    let packages = metadata["packages"].as_array().unwrap();
    let ours: Vec<String> = packages.iter().map(|p| p["name"].as_str().unwrap().to_owned()).collect();
    let mut edges = Vec::new();
    for package in packages {
        let from = package["name"].as_str().unwrap();
        for dependency in package["dependencies"].as_array().unwrap() {
            let to = dependency["name"].as_str().unwrap();
            if !ours.iter().any(|name| name == to) || to == from {
                continue; // third-party crates; a crate's own dev-dependency on itself (features)
            }
            let kind = match dependency["kind"].as_str() {
                None => Kind::Normal,
                Some("build") => Kind::Build,
                Some("dev") => Kind::Dev,
                Some(other) => panic!("unknown dependency kind {other}"),
            };
            edges.push(Edge { from: from.to_owned(), to: to.to_owned(), kind });
        }
    }
    (ours, edges)
}

/// Which edges break which rule.
fn violations(ours: &[String], edges: &[Edge]) -> Vec<String> {
    let shipped = |kind: Kind| kind != Kind::Dev;
    let apiserver = ["machinist-apiserver", "machinist-apiserver-schema", "machinist-apiserver-apply"];
    let mut broken = Vec::new();
    for edge in edges {
        let (from, to) = (edge.from.as_str(), edge.to.as_str());
        let rule = if from == "machinist-boot" && to == "machinist-agent" {
            Some("the boot services meet the agent only through machinist-agent-protocol")
        } else if to == "machinist-e2e" && from != "machinist-e2e" && shipped(edge.kind) {
            Some("machinist-e2e is test support: no production crate depends on it")
        } else if apiserver.contains(&from) && to == "machinist-crds" && shipped(edge.kind) {
            Some("the embedded control plane is generic: the caller hands it the CRDs")
        } else if from == "machinist-crds" && shipped(edge.kind) {
            Some("machinist-crds is the bottom layer: it depends on nothing of ours")
        } else if (from == "machinist-operator" && to == "machinist-boot")
            || (from == "machinist-boot" && to == "machinist-operator")
        {
            Some("the operator and the boot services meet only through the API (tests through machinist-e2e)")
        } else if from == "machinist-agent" && shipped(edge.kind) && to != "machinist-agent-protocol" {
            Some("the agent links only the contract, so the RAM disk stays small")
        } else if from == "machinist-agent-protocol" && to != "machinist-crds" {
            Some("the contract depends on the API types alone")
        } else {
            None
        };
        if let Some(rule) = rule {
            broken.push(format!("{from} → {to} ({:?}): {rule}", edge.kind));
        }
    }
    for name in ["machinist-agent-protocol", "machinist-lab"] {
        if !ours.iter().any(|ours| ours == name) {
            broken.push(format!("{name} is not in the workspace"));
        }
    }
    broken
}

#[test]
fn crate_edges_keep_the_architecture() {
    let (ours, edges) = workspace();
    assert!(edges.len() > 20, "cargo metadata listed too few edges to be the workspace: {edges:?}");
    let broken = violations(&ours, &edges);
    assert!(broken.is_empty(), "forbidden crate edges:\n{}", broken.join("\n"));
}

#[test]
fn each_rule_catches_its_edge() {
    let ours: Vec<String> = [
        "machinist-agent",
        "machinist-agent-protocol",
        "machinist-apiserver",
        "machinist-boot",
        "machinist-crds",
        "machinist-e2e",
        "machinist-lab",
        "machinist-operator",
        "machinist",
    ]
    .map(String::from)
    .to_vec();
    let edge = |from: &str, to: &str, kind: Kind| Edge { from: from.into(), to: to.into(), kind };
    let caught = |edge: Edge| !violations(&ours, &[edge]).is_empty();
    for (from, to, kind) in [
        ("machinist-boot", "machinist-agent", Kind::Normal),
        ("machinist-boot", "machinist-agent", Kind::Dev),
        ("machinist", "machinist-e2e", Kind::Normal),
        ("machinist-apiserver", "machinist-crds", Kind::Normal),
        ("machinist-crds", "machinist-matching", Kind::Normal),
        ("machinist-operator", "machinist-boot", Kind::Dev),
        ("machinist-boot", "machinist-operator", Kind::Normal),
        ("machinist-agent", "machinist-crds", Kind::Normal),
        ("machinist-agent-protocol", "machinist-matching", Kind::Normal),
    ] {
        assert!(caught(edge(from, to, kind)), "{from} → {to} ({kind:?}) went through");
    }
    for (from, to, kind) in [
        ("machinist", "machinist-e2e", Kind::Dev),
        ("machinist-apiserver", "machinist-crds", Kind::Dev),
        ("machinist-operator", "machinist-e2e", Kind::Dev),
        ("machinist-e2e", "machinist-boot", Kind::Normal),
        ("machinist-boot", "machinist-agent-protocol", Kind::Normal),
        ("machinist-agent", "machinist-boot", Kind::Dev),
    ] {
        assert!(!caught(edge(from, to, kind)), "{from} → {to} ({kind:?}) was refused");
    }
}

/// The RAM disk's agent links neither JSON Schema validation, nor CEL, nor a Kubernetes client,
/// nor an async runtime: none of them is any use in a RAM disk.
#[test]
fn the_agent_links_nothing_heavy() {
    let output = cargo()
        .args(["tree", "--locked", "--offline", "-p", "machinist-agent", "-e", "normal", "--prefix", "none"])
        .args(["--target", "x86_64-unknown-linux-gnu"])
        .output()
        .unwrap();
    assert!(output.status.success(), "cargo tree: {}", String::from_utf8_lossy(&output.stderr));
    let mut crates: BTreeMap<String, ()> = BTreeMap::new();
    for line in String::from_utf8(output.stdout).unwrap().lines() {
        if let Some(name) = line.split_whitespace().next() {
            crates.insert(name.to_owned(), ());
        }
    }
    assert!(crates.contains_key("machinist-agent-protocol"), "not the agent's tree: {crates:?}");
    for heavy in ["jsonschema", "cel", "kube-client", "tokio", "serde-saphyr", "hyper", "rustls"] {
        assert!(!crates.contains_key(heavy), "the agent links {heavy}");
    }
    // 81 distinct names when the contract crate was split out (down from 176 when the agent
    // linked machinist-crds whole); 100 with the image install's checksum, pure-Rust
    // decompressors and FAT writer (sha2, flate2, ruzstd, lzma-rs, fatfs); 101 with ext4-view
    // (kexec reads the installed kernel); 102 with tar and filetime (trees), getrandom gone.
    assert!(crates.len() < 110, "the agent links {} crates: {:?}", crates.len(), crates.keys());
}
