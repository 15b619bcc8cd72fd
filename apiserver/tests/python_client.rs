//! The official Python Kubernetes client lists, watches, creates and patches through the
//! embedded control plane.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic

mod support;

use std::path::{Path, PathBuf};

use machinist_e2e::prereq::{Mode, Verdict};
use serde_json::{Value, json};
use support::TestServer;

fn python() -> PathBuf {
    std::env::var_os("MACHINIST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python"))
}

#[tokio::test]
async fn the_python_client_lists_watches_and_patches() {
    let interpreter = python();
    let usable =
        std::process::Command::new(&interpreter).args(["-c", "import kubernetes"]).status().is_ok_and(|s| s.success());
    let missing = if usable {
        Vec::new()
    } else {
        vec![machinist_e2e::prereq::Missing::Program {
            program: format!("{} with the kubernetes package", interpreter.display()),
        }]
    };
    match Mode::from_env().unwrap().verdict(&missing) {
        Verdict::Run => {}
        Verdict::Skip(reason) => return eprintln!("skipping: {reason}"),
        Verdict::Fail(reason) => panic!("{reason}"),
    }
    let server = TestServer::start().await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/client.py");
    let kubeconfig = server.kubeconfig();
    let output = tokio::process::Command::new(&interpreter).arg(&script).arg(&kubeconfig).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "python client failed:\n{stderr}");
    let seen: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)));
    assert_eq!(seen["namespaces"], json!(["default", "kube-node-lease", "kube-public", "kube-system"]));
    assert_eq!(seen["configmap"], json!({"a": "1"}));
    assert_eq!(seen["events"], json!([["ADDED", "a"], ["ADDED", "b"], ["MODIFIED", "a"], ["MODIFIED", "b"]]));
    assert_eq!(seen["selected"], json!(["b"]));
    assert_eq!(seen["a"], json!({"debug": true, "generation": 2, "online": true}));
    assert_eq!(seen["b_phase"], "Inspecting");
    assert_eq!(seen["duplicate"], json!({"status": 409, "reason": "AlreadyExists"}));
    assert_eq!(seen["after_delete"], json!(["b"]));
    server.stop().await;
}
