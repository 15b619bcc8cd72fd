//! `machinist up` runs the operator and the boot services each as its own ServiceAccount with
//! least privilege, and writes a kubeconfig for each beside the admin's: asked with kubectl as
//! each identity, the boot services cannot read a Secret that is not an agent token, cannot
//! write a Machine's spec and cannot touch another namespace; the operator reads no Secret.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

fn kubectl() -> PathBuf {
    let pinned = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/bin/kubectl");
    if pinned.is_file() { pinned } else { PathBuf::from("kubectl") }
}

struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `machinist up` with the operator and HTTP-only boot services; the admin's kubeconfig.
fn up(home: &Path) -> (Up, PathBuf) {
    let artifacts = home.join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let config = home.join("boot.yaml");
    std::fs::write(
        &config,
        format!(
            "namespace: default\nhttp:\n  listen: 127.0.0.1:0\n  publicUrl: http://boot.invalid:8080\n  artifactRoot: {}\n",
            artifacts.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_machinist"))
        .args(["up", "--listen", "127.0.0.1:0", "--operator-metrics", "127.0.0.1:0", "--home"])
        .arg(home.join("home"))
        .arg("--boot-config")
        .arg(&config)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut kubeconfig = None;
    // Bounded: `machinist up` says where its kubeconfig is, then that the boot services are up.
    for _ in 0..200 {
        let line = lines.next().expect("machinist up exited early").unwrap();
        if let Some(path) = line.trim().strip_prefix("export KUBECONFIG=") {
            kubeconfig = Some(PathBuf::from(path));
        }
        if line.starts_with("boot services are up") {
            break;
        }
    }
    // Keep draining its output so it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (Up(child), kubeconfig.expect("no kubeconfig announced"))
}

fn run(kubeconfig: &Path, args: &[&str]) -> (bool, String) {
    let output = Command::new(kubectl()).arg("--kubeconfig").arg(kubeconfig).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

fn can(kubeconfig: &Path, args: &[&str]) -> bool {
    let mut all = vec!["auth", "can-i"];
    all.extend_from_slice(args);
    let (yes, text) = run(kubeconfig, &all);
    assert!(text.starts_with("yes") || text.starts_with("no"), "kubectl auth can-i {args:?}: {text}");
    yes
}

#[test]
fn the_components_run_with_least_privilege_and_the_admin_token_stays_with_the_person() {
    if !kubectl().is_file()
        && !machinist_e2e::prereq::need_programs("the_components_run_with_least_privilege", &["kubectl"])
            .unwrap_or_else(|e| panic!("{e}"))
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_up, admin) = up(dir.path());
    let home = admin.parent().unwrap().to_path_buf();
    let boot = home.join("machinist-boot.kubeconfig");
    let operator = home.join("machinist-operator.kubeconfig");
    // Neither identity's kubeconfig holds the admin token.
    let admin_token = std::fs::read_to_string(home.join("token")).unwrap();
    for identity in [&boot, &operator] {
        assert!(!std::fs::read_to_string(identity).unwrap().contains(admin_token.trim()), "{}", identity.display());
    }

    // A Secret that is not an agent token, and a Machine, made by the person.
    let (ok, text) = run(&admin, &["create", "secret", "generic", "db-password", "--from-literal=password=hunter2"]);
    assert!(ok, "{text}");
    let machine = r#"{"apiVersion": "machinist.dev/v1alpha1", "kind": "Machine", "metadata": {"name": "m1"},
        "spec": {"interfaces": [{"mac": "52:54:00:00:00:01", "boot": true}], "provider": {"manual": {}}}}"#;
    let path = dir.path().join("m1.json");
    std::fs::write(&path, machine).unwrap();
    let (ok, text) = run(&admin, &["create", "-f", path.to_str().unwrap()]);
    assert!(ok, "{text}");

    // The boot services: agent tokens only, Machine status only, their namespaces only.
    let (ok, text) = run(&boot, &["get", "secret", "db-password", "-n", "default"]);
    assert!(!ok && text.contains("forbidden") && text.contains("cannot get resource \"secrets\""), "{text}");
    assert!(!can(&boot, &["list", "secrets", "-n", "default"]));
    assert!(!can(&boot, &["list", "secrets", "--all-namespaces"]));
    assert!(can(&boot, &["list", "secrets", "-n", "machinist-system"]));
    let (ok, text) = run(&boot, &["patch", "machine", "m1", "--type", "merge", "-p", r#"{"spec":{"online":false}}"#]);
    assert!(!ok && text.contains("forbidden"), "{text}");
    assert!(can(&boot, &["patch", "machines", "--subresource=status"]));
    assert!(can(&boot, &["create", "machines"]), "auto-registration");
    assert!(!can(&boot, &["get", "machines", "-n", "kube-system"]));
    assert!(!can(&boot, &["create", "namespaces"]));
    assert!(!can(&boot, &["create", "rolebindings", "-n", "default"]));
    let (ok, list) = run(&boot, &["auth", "can-i", "--list", "-n", "default"]);
    assert!(ok, "{list}");
    assert!(!list.lines().any(|l| l.starts_with("secrets ")), "{list}");
    assert!(
        list.lines().any(|l| l.starts_with("machines.machinist.dev ") && l.contains("[get list watch create]")),
        "{list}"
    );

    // The operator: every namespace's machinist objects and their status, no Secret anywhere.
    assert!(!can(&operator, &["get", "secrets", "--all-namespaces"]));
    assert!(!can(&operator, &["get", "secrets", "-n", "machinist-system"]));
    assert!(can(&operator, &["patch", "machines", "--all-namespaces"]), "finalizers");
    assert!(can(&operator, &["update", "cmdbs", "--subresource=status", "-n", "team-a"]));
    assert!(can(&operator, &["update", "leases", "-n", "machinist-system"]));
    assert!(!can(&operator, &["update", "leases", "-n", "default"]));
    assert!(!can(&operator, &["delete", "machines", "-n", "default"]));
    let (ok, list) = run(&operator, &["auth", "can-i", "--list", "-n", "machinist-system"]);
    assert!(ok, "{list}");
    assert!(list.lines().any(|l| l.starts_with("leases.coordination.k8s.io ")), "{list}");
    // Hypervisors: read where they live, their status written; nowhere else, never created.
    assert!(can(&operator, &["watch", "hypervisors", "-n", "machinist-system"]));
    assert!(can(&operator, &["update", "hypervisors", "--subresource=status", "-n", "machinist-system"]));
    assert!(!can(&operator, &["create", "hypervisors", "-n", "machinist-system"]));
    assert!(!can(&operator, &["get", "hypervisors", "-n", "default"]));
    assert!(!can(&boot, &["get", "hypervisors", "-n", "machinist-system"]));
    assert!(!list.lines().any(|l| l.starts_with("secrets ")), "{list}");

    // And the identities are who they say.
    let (ok, name) = run(&boot, &["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]);
    assert!(ok);
    assert_eq!(name, "system:serviceaccount:machinist-system:machinist-boot");
}
