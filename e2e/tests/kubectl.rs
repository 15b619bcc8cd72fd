//! The real `kubectl` against machinist's embedded API server: apply (client-side and
//! server-side), get in every output format and watch, describe with events, explain from the
//! CRD schemas, edit, patch, label, annotate, delete with finalizers, wait, namespaces and
//! secrets, discovery and version, and validation errors as a real cluster reports them.
//!
//! Each test starts its own server. kubectl is `.tools/bin/kubectl` (`scripts/deps`) or the one
//! on `PATH`; without it the tests skip, or fail under `MACHINIST_E2E=require`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic

#[path = "kubectl/harness.rs"]
mod harness;

use std::collections::{BTreeMap, BTreeSet};

use harness::{
    Cluster, applied, cell, content, differences, edit_document, example_args, example_objects, flat, now, now_micro,
    repo_path, row, table,
};
use serde_json::{Value, json};

/// Kind/namespace/name → resourceVersion of the objects of a `kubectl get … -o json` list.
fn versions(list: &Value) -> BTreeMap<String, String> {
    list["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|o| {
            let key = format!(
                "{}/{}/{}",
                o["kind"].as_str().unwrap_or_default(),
                o["metadata"]["namespace"].as_str().unwrap_or_default(),
                o["metadata"]["name"].as_str().unwrap_or_default()
            );
            (key, o["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_owned())
        })
        .collect()
}

/// Objects of a `kubectl get … -o json` list by name.
fn by_name(list: &Value) -> BTreeMap<String, Value> {
    list["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|o| (o["metadata"]["name"].as_str().unwrap_or_default().to_owned(), o.clone()))
        .collect()
}

/// The names `kubectl … -o name` printed.
fn names(stdout: &str) -> BTreeSet<String> {
    stdout.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// The columns `kubectl get` shows for a CRD of `crds/manifests`, from its printer columns:
/// NAME, then those of priority 0 (and, for `-o wide`, the others).
fn printer_columns(file: &str, wide: bool) -> Vec<String> {
    let text = std::fs::read_to_string(repo_path(&format!("crds/manifests/{file}"))).unwrap();
    let crd: Value = serde_saphyr::from_str(&text).unwrap();
    let columns = crd["spec"]["versions"][0]["additionalPrinterColumns"].as_array().cloned().unwrap_or_default();
    let mut header = vec!["NAME".to_owned()];
    header.extend(
        columns
            .iter()
            .filter(|c| wide || c["priority"].as_i64().unwrap_or(0) == 0)
            .map(|c| c["name"].as_str().unwrap_or_default().to_uppercase()),
    );
    header
}

/// A Machine powered by hand, labelled `app: web`.
fn machine_yaml(name: &str, namespace: &str, mac: &str) -> String {
    format!(
        "apiVersion: machinist.dev/v1alpha1\nkind: Machine\nmetadata:\n  name: {name}\n  namespace: {namespace}\n  labels:\n    app: web\nspec:\n  interfaces:\n    - mac: \"{mac}\"\n  provider:\n    manual: {{}}\n"
    )
}

const CRD_NAMES: [&str; 6] = [
    "customresourcedefinition.apiextensions.k8s.io/cmdbs.machinist.dev",
    "customresourcedefinition.apiextensions.k8s.io/hardwareprofiles.machinist.dev",
    "customresourcedefinition.apiextensions.k8s.io/hypervisors.machinist.dev",
    "customresourcedefinition.apiextensions.k8s.io/loadbalancerbackends.machinist.dev",
    "customresourcedefinition.apiextensions.k8s.io/machines.machinist.dev",
    "customresourcedefinition.apiextensions.k8s.io/roles.machinist.dev",
];

/// `kubectl apply -f` (client-side): the CRDs the server installed at start apply as the same
/// objects, the examples are created with the last-applied annotation, a second apply changes
/// nothing, and a changed file patches only what changed (three-way: fields others set survive,
/// fields dropped from the file go).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_side_apply_is_a_three_way_merge_and_idempotent() {
    let Some(cluster) = Cluster::start("client_side_apply_is_a_three_way_merge_and_idempotent").await else {
        return;
    };
    let crds = repo_path("crds/manifests");

    // The CRDs: the files describe what the server installed; applying them twice is a no-op.
    let installed = cluster.json(&["get", "crd", "machines.machinist.dev"]).await;
    let first = cluster.run(&["apply", "-f", &crds]).await;
    assert!(first.status.success(), "applying the CRDs failed:\n{first}");
    assert_eq!(applied(&first.stdout).keys().cloned().collect::<BTreeSet<_>>(), set(&CRD_NAMES), "{first}");
    let after = cluster.json(&["get", "crd", "machines.machinist.dev"]).await;
    assert_eq!(
        differences(&content(&installed), &content(&after)),
        Vec::<String>::new(),
        "applying crds/manifests changed the installed CRD beyond the last-applied annotation"
    );
    assert!(
        after["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"].is_string(),
        "no last-applied annotation on the CRD: {after}"
    );
    let crd_versions = versions(&cluster.json(&["get", "crds"]).await);
    let again = cluster.run(&["apply", "-f", &crds]).await;
    assert!(again.status.success(), "{again}");
    assert!(applied(&again.stdout).values().all(|v| v == "unchanged"), "re-applying the CRDs changed them:\n{again}");
    assert_eq!(applied(&again.stdout).len(), 6, "{again}");
    assert_eq!(versions(&cluster.json(&["get", "crds"]).await), crd_versions, "re-applying bumped resourceVersions");

    // The examples: created, with the file as last-applied configuration.
    let created = cluster.load_examples().await;
    let verbs = applied(&created.stdout);
    assert_eq!(
        verbs.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        example_objects(),
        "kubectl apply did not report every example object:\n{created}"
    );
    assert!(verbs.values().all(|v| v == "created"), "{created}");
    let web1 = cluster.json(&["get", "machine", "web-1", "-n", "web"]).await;
    let last = web1["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .unwrap_or_else(|| panic!("no last-applied annotation: {web1}"));
    let last: Value = serde_json::from_str(last).unwrap();
    assert_eq!(last["spec"]["provider"]["libvirt"]["memoryMiB"], 1024, "{last}");
    assert_eq!(last["spec"]["onSuccess"], Value::Null, "the annotation holds the file, not the defaults: {last}");
    assert_eq!(web1["spec"]["onSuccess"], "reboot", "the server applied the schema defaults: {web1}");

    // Applying the same files again changes nothing.
    let before = versions(&cluster.json(&["get", "machinist,secrets", "-A"]).await);
    let again = cluster.run(&example_args(&["apply"])).await;
    assert!(again.status.success(), "{again}");
    let verbs = applied(&again.stdout);
    assert_eq!(verbs.len(), example_objects().len(), "{again}");
    // kubectl always reports a Secret applied from stringData as configured (its patch sets
    // stringData again, kubernetes/kubernetes#87736); the server must find nothing to change.
    assert!(
        verbs.iter().all(|(object, v)| v == "unchanged" || (object == "secret/bmc-hp-01" && v == "configured")),
        "re-applying the examples changed objects:\n{again}"
    );
    assert_eq!(
        versions(&cluster.json(&["get", "machinist,secrets", "-A"]).await),
        before,
        "re-applying bumped resourceVersions"
    );

    // A changed file: only the changed field changes, only on the changed object.
    let web = std::fs::read_to_string(repo_path("examples/web-farm/web.yaml")).unwrap();
    let changed = edit_document(&web, "web-1", "memoryMiB: 1024", "memoryMiB: 2048");
    let file = cluster.write("web.yaml", &changed);
    let before_list = cluster.json(&["get", "machinist", "-n", "web"]).await;
    let run = cluster.run(&["apply", "-f", &file]).await;
    assert!(run.status.success(), "{run}");
    let verbs = applied(&run.stdout);
    assert_eq!(verbs.get("machine.machinist.dev/web-1").map(String::as_str), Some("configured"), "{run}");
    assert!(
        verbs.iter().filter(|(k, _)| k.as_str() != "machine.machinist.dev/web-1").all(|(_, v)| v == "unchanged"),
        "{run}"
    );
    assert_eq!(verbs.len(), 8, "{run}");
    let after_list = cluster.json(&["get", "machinist", "-n", "web"]).await;
    let (before_objects, after_objects) = (by_name(&before_list), by_name(&after_list));
    let web1_before = &before_objects["web-1"];
    let web1_after = &after_objects["web-1"];
    assert_eq!(
        differences(&content(web1_before), &content(web1_after)),
        vec!["spec.provider.libvirt.memoryMiB".to_owned()],
        "before: {web1_before}\nafter: {web1_after}"
    );
    assert_eq!(web1_after["spec"]["provider"]["libvirt"]["memoryMiB"], 2048);
    assert_eq!(web1_after["metadata"]["generation"], 2, "{web1_after}");
    let mut unchanged_before = versions(&before_list);
    let mut unchanged_after = versions(&after_list);
    unchanged_before.remove("Machine/web/web-1");
    unchanged_after.remove("Machine/web/web-1");
    assert_eq!(unchanged_before, unchanged_after, "objects the change did not touch were written");

    // Three-way: what others set survives; what the file no longer says goes.
    cluster.ok(&["annotate", "machine", "web-1", "-n", "web", "ops.example.org/owner=alice"]).await;
    cluster.ok(&["patch", "machine", "web-1", "-n", "web", "--type=merge", "-p", r#"{"spec":{"debug":true}}"#]).await;
    let unlabelled = edit_document(&changed, "web-1", "  labels:\n    app: web\n", "");
    let file = cluster.write("web-unlabelled.yaml", &unlabelled);
    let before = cluster.json(&["get", "machine", "web-1", "-n", "web"]).await;
    let run = cluster.run(&["apply", "-f", &file]).await;
    assert!(run.status.success(), "{run}");
    assert_eq!(
        applied(&run.stdout).get("machine.machinist.dev/web-1").map(String::as_str),
        Some("configured"),
        "{run}"
    );
    let after = cluster.json(&["get", "machine", "web-1", "-n", "web"]).await;
    let changes = differences(&content(&before), &content(&after));
    assert!(
        changes.len() == 1 && changes[0].starts_with("metadata.labels"),
        "dropping the label from the file should remove it and nothing else, changed: {changes:?}\n{after}"
    );
    assert_eq!(after["metadata"]["labels"]["app"], Value::Null, "{after}");
    assert_eq!(after["metadata"]["annotations"]["ops.example.org/owner"], "alice", "{after}");
    assert_eq!(after["spec"]["debug"], true, "a field the file never set was reset: {after}");
    let selected = cluster.ok(&["get", "machines", "-n", "web", "-l", "app=web", "-o", "name"]).await;
    assert_eq!(names(&selected), set(&["machine.machinist.dev/web-2", "machine.machinist.dev/web-3"]));

    // The GitOps examples name kinds this server does not serve: kubectl says so.
    let gitops = cluster.fails(&["apply", "-f", &repo_path("examples/gitops")]).await;
    assert!(
        gitops.stderr.contains(r#"no matches for kind "Application" in version "argoproj.io/v1alpha1""#)
            && gitops.stderr.contains("ensure CRDs are installed first"),
        "{gitops}"
    );
    cluster.stop().await;
}

/// `kubectl apply --server-side`: the CRDs and examples apply, a second apply writes nothing,
/// a changed file changes only its field, kubectl owns the fields it applied, and a field
/// another manager changed is a conflict until `--force-conflicts`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_owns_fields_and_reports_conflicts() {
    let Some(cluster) = Cluster::start("server_side_apply_owns_fields_and_reports_conflicts").await else {
        return;
    };
    let crds = repo_path("crds/manifests");
    let installed = cluster.json(&["get", "crd", "machines.machinist.dev"]).await;
    let first = cluster.run(&["apply", "--server-side", "-f", &crds]).await;
    assert!(first.status.success(), "{first}");
    assert_eq!(applied(&first.stdout).keys().cloned().collect::<BTreeSet<_>>(), set(&CRD_NAMES), "{first}");
    assert!(applied(&first.stdout).values().all(|v| v == "serverside-applied"), "{first}");
    let after = cluster.json(&["get", "crd", "machines.machinist.dev"]).await;
    assert_eq!(differences(&content(&installed), &content(&after)), Vec::<String>::new(), "{after}");
    let crd_versions = versions(&cluster.json(&["get", "crds"]).await);
    let again = cluster.run(&["apply", "--server-side", "-f", &crds]).await;
    assert!(again.status.success(), "{again}");
    assert_eq!(versions(&cluster.json(&["get", "crds"]).await), crd_versions, "re-applying the CRDs wrote them");

    for namespace in ["api", "edeploy", "web", "machinist-system"] {
        cluster.ok(&["create", "namespace", namespace]).await;
    }
    let run = cluster.run(&example_args(&["apply", "--server-side"])).await;
    assert!(run.status.success(), "{run}");
    let verbs = applied(&run.stdout);
    assert_eq!(verbs.keys().map(String::as_str).collect::<BTreeSet<_>>(), example_objects(), "{run}");
    assert!(verbs.values().all(|v| v == "serverside-applied"), "{run}");
    let web1 = cluster.json(&["get", "machine", "web-1", "-n", "web", "--show-managed-fields"]).await;
    let managers: Vec<(String, String)> = web1["metadata"]["managedFields"]
        .as_array()
        .unwrap_or_else(|| panic!("no managedFields: {web1}"))
        .iter()
        .map(|m| {
            (
                m["manager"].as_str().unwrap_or_default().to_owned(),
                m["operation"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(managers, vec![("kubectl".to_owned(), "Apply".to_owned())], "{web1}");
    assert!(
        web1["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"].is_null(),
        "server-side apply does not write the last-applied annotation: {web1}"
    );

    let before = versions(&cluster.json(&["get", "machinist,secrets", "-A"]).await);
    let again = cluster.run(&example_args(&["apply", "--server-side"])).await;
    assert!(again.status.success(), "{again}");
    assert_eq!(versions(&cluster.json(&["get", "machinist,secrets", "-A"]).await), before, "re-applying wrote objects");

    // A changed file changes that field only.
    let web = std::fs::read_to_string(repo_path("examples/web-farm/web.yaml")).unwrap();
    let changed = edit_document(&web, "web-1", "memoryMiB: 1024", "memoryMiB: 2048");
    let file = cluster.write("web.yaml", &changed);
    let before_list = cluster.json(&["get", "machinist", "-n", "web"]).await;
    let run = cluster.run(&["apply", "--server-side", "-f", &file]).await;
    assert!(run.status.success(), "{run}");
    let after_list = cluster.json(&["get", "machinist", "-n", "web"]).await;
    let (before_objects, after_objects) = (by_name(&before_list), by_name(&after_list));
    assert_eq!(
        differences(&content(&before_objects["web-1"]), &content(&after_objects["web-1"])),
        vec!["spec.provider.libvirt.memoryMiB".to_owned()],
        "{}",
        after_objects["web-1"]
    );
    let mut unchanged_before = versions(&before_list);
    let mut unchanged_after = versions(&after_list);
    unchanged_before.remove("Machine/web/web-1");
    unchanged_after.remove("Machine/web/web-1");
    assert_eq!(unchanged_before, unchanged_after, "objects the change did not touch were written");

    // A field the applier no longer lists, and owns alone, is removed.
    let unlabelled = edit_document(&changed, "web-1", "  labels:\n    app: web\n", "");
    let file = cluster.write("web-unlabelled.yaml", &unlabelled);
    let run = cluster.run(&["apply", "--server-side", "-f", &file]).await;
    assert!(run.status.success(), "{run}");
    let after = cluster.json(&["get", "machine", "web-1", "-n", "web"]).await;
    assert_eq!(after["metadata"]["labels"]["app"], Value::Null, "{after}");

    // Another manager takes a field over: applying the old value is a conflict.
    cluster
        .ok(&[
            "patch",
            "machine",
            "web-1",
            "-n",
            "web",
            "--type=merge",
            "-p",
            r#"{"spec":{"provider":{"libvirt":{"memoryMiB":4096}}}}"#,
        ])
        .await;
    let conflict = cluster.fails(&["apply", "--server-side", "-f", &file]).await;
    assert!(
        conflict.stderr.contains("Apply failed with 1 conflict")
            && conflict.stderr.contains(r#"conflict with "kubectl-patch""#)
            && conflict.stderr.contains(".spec.provider.libvirt.memoryMiB"),
        "{conflict}"
    );
    let forced = cluster.run(&["apply", "--server-side", "--force-conflicts", "-f", &file]).await;
    assert!(forced.status.success(), "{forced}");
    let memory = cluster
        .ok(&["get", "machine", "web-1", "-n", "web", "-o", "jsonpath={.spec.provider.libvirt.memoryMiB}"])
        .await;
    assert_eq!(memory, "2048");
    cluster.stop().await;
}

/// `kubectl get`: the CRDs' printer columns (the server answers with Tables), `-o wide`,
/// `-o yaml`, `-o jsonpath`, `-o name`, `-l`, `--field-selector`, `-A`, the `machinist`
/// category and short names, and the built-in kinds' columns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_prints_printer_columns_and_every_output_format() {
    let Some(cluster) = Cluster::start("get_prints_printer_columns_and_every_output_format").await else {
        return;
    };
    cluster.load_examples().await;
    let status = json!({"status": {
        "phase": "Ready",
        "profile": "web-vm",
        "ip": "10.20.0.11",
        "hostname": "web11",
        "role": {"name": "web"},
        "hardware": {"summary": {"threads": 8, "cores": 4, "sockets": 1, "memoryMiB": 16384}},
    }});
    let patch = status.to_string();
    let out = cluster
        .ok(&["patch", "machine", "web-1", "-n", "web", "--subresource=status", "--type=merge", "-p", &patch])
        .await;
    assert_eq!(out.trim(), "machine.machinist.dev/web-1 patched");

    // Printer columns, as the CRD declares them.
    let out = cluster.ok(&["get", "machines", "-n", "web"]).await;
    let (header, rows) = table(&out);
    assert_eq!(header, printer_columns("machines.yaml", false), "{out}");
    assert_eq!(header, ["NAME", "PHASE", "PROFILE", "IP", "HOSTNAME", "ROLE", "AGE"], "{out}");
    assert_eq!(rows.len(), 3, "{out}");
    let web1 = row(&header, &rows, "NAME", "web-1").unwrap_or_else(|| panic!("no web-1:\n{out}"));
    assert_eq!(
        [cell(&header, web1, "PHASE"), cell(&header, web1, "PROFILE"), cell(&header, web1, "IP")],
        ["Ready", "web-vm", "10.20.0.11"],
        "{out}"
    );
    assert_eq!([cell(&header, web1, "HOSTNAME"), cell(&header, web1, "ROLE")], ["web11", "web"], "{out}");
    assert!(cell(&header, web1, "AGE").ends_with('s') || cell(&header, web1, "AGE").ends_with('m'), "{out}");
    let web2 = row(&header, &rows, "NAME", "web-2").unwrap_or_else(|| panic!("no web-2:\n{out}"));
    assert_eq!(cell(&header, web2, "PHASE"), "", "{out}");

    // -o wide adds the priority-1 columns.
    let out = cluster.ok(&["get", "machines", "-n", "web", "-o", "wide"]).await;
    let (header, rows) = table(&out);
    assert_eq!(header, printer_columns("machines.yaml", true), "{out}");
    assert_eq!(header[7..], ["MAC", "CPUS", "MEMORY"], "{out}");
    let web1 = row(&header, &rows, "NAME", "web-1").unwrap_or_else(|| panic!("no web-1:\n{out}"));
    assert_eq!(
        [cell(&header, web1, "MAC"), cell(&header, web1, "CPUS"), cell(&header, web1, "MEMORY")],
        ["52:54:00:20:00:01", "8", "16384"],
        "{out}"
    );
    let web3 = row(&header, &rows, "NAME", "web-3").unwrap_or_else(|| panic!("no web-3:\n{out}"));
    assert_eq!(cell(&header, web3, "MAC"), "52:54:00:20:00:03", "{out}");

    // One object, by name (a Table of one row).
    let out = cluster.ok(&["get", "machine", "web-1", "-n", "web"]).await;
    let (header, rows) = table(&out);
    assert_eq!(header, printer_columns("machines.yaml", false), "{out}");
    assert_eq!(rows.len(), 1, "{out}");
    assert_eq!(rows[0][0], "web-1", "{out}");

    // The other kinds show their own columns.
    for (resource, file, namespace, expected) in [
        ("roles.machinist.dev", "roles.yaml", "api", 5),
        ("cmdbs", "cmdbs.yaml", "edeploy", 2),
        ("hardwareprofiles", "hardwareprofiles.yaml", "edeploy", 2),
        ("loadbalancerbackends", "loadbalancerbackends.yaml", "api", 1),
    ] {
        let out = cluster.ok(&["get", resource, "-n", namespace]).await;
        let (header, rows) = table(&out);
        assert_eq!(header, printer_columns(file, false), "{out}");
        assert_eq!(rows.len(), expected, "{out}");
        let out = cluster.ok(&["get", resource, "-n", namespace, "-o", "wide"]).await;
        assert_eq!(table(&out).0, printer_columns(file, true), "{out}");
    }
    let out = cluster.ok(&["get", "roles.machinist.dev", "-n", "edeploy"]).await;
    let (header, rows) = table(&out);
    let mysql = row(&header, &rows, "NAME", "mysql").unwrap_or_else(|| panic!("{out}"));
    assert_eq!([cell(&header, mysql, "VERSION"), cell(&header, mysql, "METHOD")], ["D7-F.1.0.0", "Image"], "{out}");

    // --show-labels uses the objects' metadata carried in the Table rows.
    let out = cluster.ok(&["get", "machines", "-n", "web", "--show-labels"]).await;
    let (header, rows) = table(&out);
    assert_eq!(header.last().map(String::as_str), Some("LABELS"), "{out}");
    assert!(rows.iter().all(|r| r.last().is_some_and(|l| l == "app=web")), "{out}");

    // Every namespace.
    let out = cluster.ok(&["get", "machines", "-A"]).await;
    let (header, rows) = table(&out);
    assert_eq!(header[0], "NAMESPACE", "{out}");
    assert_eq!(header[1..], printer_columns("machines.yaml", false)[..], "{out}");
    assert_eq!(rows.len(), 8, "{out}");
    assert_eq!(rows.iter().map(|r| r[0].as_str()).collect::<BTreeSet<_>>(), BTreeSet::from(["api", "edeploy", "web"]));
    let out = cluster.ok(&["get", "machines", "--all-namespaces", "-o", "name"]).await;
    assert_eq!(names(&out).len(), 8, "{out}");

    // -o yaml, of one object and of a list.
    let out = cluster.ok(&["get", "machine", "api-01", "-n", "api", "-o", "yaml"]).await;
    let object: Value = serde_saphyr::from_str(&out).unwrap_or_else(|e| panic!("{e}:\n{out}"));
    assert_eq!(object["kind"], "Machine", "{out}");
    assert_eq!(object["metadata"]["name"], "api-01", "{out}");
    assert_eq!(object["spec"]["interfaces"][0]["mac"], "52:54:00:0a:01:01", "{out}");
    assert_eq!(object["spec"]["bootMenu"]["roles"], json!(["base", "ui", "ui-test", "api", "api-test"]), "{out}");
    let out = cluster.ok(&["get", "machines", "-n", "api", "-o", "yaml"]).await;
    let list: Value = serde_saphyr::from_str(&out).unwrap_or_else(|e| panic!("{e}:\n{out}"));
    assert_eq!(list["kind"], "List", "{out}");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(2), "{out}");

    // -o jsonpath.
    let out = cluster
        .ok(&[
            "get",
            "machine",
            "api-02",
            "-n",
            "api",
            "-o",
            "jsonpath={.spec.provider.libvirt.pool}/{.spec.role.version}",
        ])
        .await;
    assert_eq!(out, "libvirt-sata/bookworm-1");
    let out = cluster
        .ok(&[
            "get",
            "machines",
            "-n",
            "web",
            "-o",
            r#"jsonpath={range .items[*]}{.metadata.name}={.spec.interfaces[0].mac}{"\n"}{end}"#,
        ])
        .await;
    assert_eq!(out, "web-1=52:54:00:20:00:01\nweb-2=52:54:00:20:00:02\nweb-3=52:54:00:20:00:03\n");
    let out = cluster
        .ok(&["get", "machines", "-n", "web", "-o", "custom-columns=NAME:.metadata.name,MAC:.spec.interfaces[0].mac"])
        .await;
    let (header, rows) = table(&out);
    assert_eq!(header, ["NAME", "MAC"], "{out}");
    assert_eq!(rows[1], ["web-2", "52:54:00:20:00:02"], "{out}");

    // Label selectors, across namespaces too.
    let out = cluster.ok(&["get", "machines", "-A", "-l", "app=api", "-o", "name"]).await;
    assert_eq!(names(&out), set(&["machine.machinist.dev/api-01", "machine.machinist.dev/api-02"]), "{out}");
    let out = cluster.ok(&["get", "machines", "-A", "-l", "app in (api,web)", "-o", "name"]).await;
    assert_eq!(names(&out).len(), 5, "{out}");
    let out = cluster.ok(&["get", "machines", "-A", "-l", "!app", "-o", "name"]).await;
    assert_eq!(names(&out).len(), 3, "the edeploy machines have no app label:\n{out}");
    let none = cluster.run(&["get", "machines", "-n", "web", "-l", "app=nothing"]).await;
    assert!(none.status.success(), "{none}");
    assert_eq!(none.stdout, "", "{none}");
    assert!(none.stderr.contains("No resources found in web namespace."), "{none}");

    // The CRD's selectable field.
    let out = cluster.ok(&["get", "machines", "-A", "--field-selector", "status.phase=Ready", "-o", "name"]).await;
    assert_eq!(names(&out), set(&["machine.machinist.dev/web-1"]), "{out}");

    // The category and the short names.
    let everything = set(&[
        "cmdb.machinist.dev/web",
        "hardwareprofile.machinist.dev/web-vm",
        "loadbalancerbackend.machinist.dev/web",
        "machine.machinist.dev/web-1",
        "machine.machinist.dev/web-2",
        "machine.machinist.dev/web-3",
        "role.machinist.dev/web",
    ]);
    let out = cluster.ok(&["get", "machinist", "-n", "web", "-o", "name"]).await;
    assert_eq!(names(&out), everything, "{out}");
    let out = cluster.ok(&["get", "mach,hwp,lbb,cmdb,roles.machinist.dev", "-n", "web", "-o", "name"]).await;
    assert_eq!(names(&out), everything, "{out}");
    let out = cluster.ok(&["get", "machinist", "-n", "web"]).await;
    for kind in ["machine.machinist.dev/web-1", "role.machinist.dev/web", "cmdb.machinist.dev/web"] {
        assert!(out.contains(kind), "{out}");
    }
    assert!(out.contains("PHASE") && out.contains("PRIORITY") && out.contains("FRONTEND"), "{out}");
    for spelling in ["machine", "Machine", "machines.machinist.dev", "machines.v1alpha1.machinist.dev", "mach"] {
        let out = cluster.ok(&["get", spelling, "-n", "api", "-o", "name"]).await;
        assert_eq!(names(&out).len(), 2, "kubectl get {spelling}:\n{out}");
    }

    // Built-in kinds: their tables as a real API server prints them.
    let out = cluster.ok(&["get", "secrets", "-n", "edeploy"]).await;
    let (header, rows) = table(&out);
    assert_eq!(header, ["NAME", "TYPE", "DATA", "AGE"], "{out}");
    let secret = row(&header, &rows, "NAME", "bmc-hp-01").unwrap_or_else(|| panic!("{out}"));
    assert_eq!([cell(&header, secret, "TYPE"), cell(&header, secret, "DATA")], ["Opaque", "2"], "{out}");
    let out = cluster.ok(&["get", "namespaces"]).await;
    let (header, rows) = table(&out);
    assert_eq!(header, ["NAME", "STATUS", "AGE"], "{out}");
    let web = row(&header, &rows, "NAME", "web").unwrap_or_else(|| panic!("{out}"));
    assert_eq!(cell(&header, web, "STATUS"), "Active", "{out}");
    let out = cluster.ok(&["get", "crds"]).await;
    let (header, rows) = table(&out);
    assert_eq!(header, ["NAME", "CREATED AT"], "{out}");
    assert_eq!(rows.len(), 6, "{out}");
    cluster.stop().await;
}

/// `kubectl get -w` prints the list, then each change as it happens (with
/// `--output-watch-events`, its type), following label selectors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_watch_prints_changes_as_they_happen() {
    let Some(cluster) = Cluster::start("get_watch_prints_changes_as_they_happen").await else {
        return;
    };
    cluster.load_examples().await;
    let mut watch = cluster.spawn(&["get", "machines", "-n", "web", "-w"]);
    let mut events = cluster.spawn(&["get", "machines", "-n", "web", "-l", "app=web", "-w", "--output-watch-events"]);
    let header = watch.line("the header", |l| l.starts_with("NAME")).await;
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["NAME", "PHASE", "PROFILE", "IP", "HOSTNAME", "ROLE", "AGE"]
    );
    for name in ["web-1", "web-2", "web-3"] {
        watch.line(name, |l| l.starts_with(name)).await;
        events.line(&format!("ADDED {name}"), |l| l.split_whitespace().take(2).eq(["ADDED", name])).await;
    }

    // A status change.
    let patch = r#"{"status":{"phase":"Inspecting"}}"#;
    cluster.ok(&["patch", "machine", "web-2", "-n", "web", "--subresource=status", "--type=merge", "-p", patch]).await;
    let line = watch.line("web-2 Inspecting", |l| l.starts_with("web-2") && l.contains("Inspecting")).await;
    assert_eq!(line.split_whitespace().nth(1), Some("Inspecting"), "{line}");
    events.line("MODIFIED web-2", |l| l.split_whitespace().take(3).eq(["MODIFIED", "web-2", "Inspecting"])).await;

    // A new object.
    let file = cluster.write("web-4.yaml", &machine_yaml("web-4", "web", "52:54:00:20:00:04"));
    cluster.ok(&["apply", "-f", &file]).await;
    watch.line("web-4", |l| l.starts_with("web-4")).await;
    events.line("ADDED web-4", |l| l.split_whitespace().take(2).eq(["ADDED", "web-4"])).await;

    // Leaving the selection is a deletion for the selecting watch.
    cluster.ok(&["label", "machine", "web-4", "-n", "web", "app-"]).await;
    events.line("DELETED web-4", |l| l.split_whitespace().take(2).eq(["DELETED", "web-4"])).await;

    // A deletion.
    cluster.ok(&["delete", "machine", "web-3", "-n", "web"]).await;
    events.line("DELETED web-3", |l| l.split_whitespace().take(2).eq(["DELETED", "web-3"])).await;
    assert!(watch.running() && events.running(), "a watch ended:\n{:?}\n{:?}", watch.seen(), events.seen());
    watch.stop().await;
    events.stop().await;
    cluster.stop().await;
}

/// `kubectl describe` shows the object and its Events (core/v1 and events.k8s.io/v1 both);
/// `kubectl get events --field-selector` selects them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_shows_events_and_field_selectors_select_them() {
    let Some(cluster) = Cluster::start("describe_shows_events_and_field_selectors_select_them").await else {
        return;
    };
    cluster.load_examples().await;
    let uid = cluster.ok(&["get", "machine", "api-01", "-n", "api", "-o", "jsonpath={.metadata.uid}"]).await;
    let other = cluster.ok(&["get", "machine", "api-02", "-n", "api", "-o", "jsonpath={.metadata.uid}"]).await;
    let core = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "api-01.inspected", "namespace": "api"},
        "involvedObject": {"apiVersion": "machinist.dev/v1alpha1", "kind": "Machine", "name": "api-01", "namespace": "api", "uid": uid},
        "reason": "Inspected",
        "message": "hardware report received from the agent",
        "type": "Normal",
        "source": {"component": "machinist-operator"},
        "firstTimestamp": now(),
        "lastTimestamp": now(),
        "count": 1,
    });
    let modern = json!({
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": "api-01.matched", "namespace": "api"},
        "regarding": {"apiVersion": "machinist.dev/v1alpha1", "kind": "Machine", "name": "api-01", "namespace": "api", "uid": uid},
        "eventTime": now_micro(),
        "reportingController": "machinist.dev/operator",
        "reportingInstance": "operator-0",
        "action": "Match",
        "reason": "Matched",
        "note": "bound to hardware profile api-vm",
        "type": "Normal",
    });
    let unrelated = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "api-02.failed", "namespace": "api"},
        "involvedObject": {"apiVersion": "machinist.dev/v1alpha1", "kind": "Machine", "name": "api-02", "namespace": "api", "uid": other},
        "reason": "InstallFailed",
        "message": "the installer exited with status 1",
        "type": "Warning",
        "source": {"component": "machinist-operator"},
        "firstTimestamp": now(),
        "lastTimestamp": now(),
        "count": 2,
    });
    for (name, event) in [("core", &core), ("modern", &modern), ("unrelated", &unrelated)] {
        let file = cluster.write(&format!("{name}.json"), &event.to_string());
        cluster.ok(&["create", "-f", &file]).await;
    }

    let out = cluster.ok(&["describe", "machine", "api-01", "-n", "api"]).await;
    let field = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{name}:")))
            .map(|l| l[name.len() + 1..].trim().to_owned())
            .unwrap_or_else(|| panic!("no {name}: in\n{out}"))
    };
    assert_eq!(field("Name"), "api-01", "{out}");
    assert_eq!(field("Namespace"), "api", "{out}");
    assert_eq!(field("Labels"), "app=api", "{out}");
    assert_eq!(field("API Version"), "machinist.dev/v1alpha1", "{out}");
    assert_eq!(field("Kind"), "Machine", "{out}");
    assert!(flat(&out).contains("Pool: libvirt-ssd"), "{out}");
    let events = out.split_once("\nEvents:").map(|(_, e)| e).unwrap_or_else(|| panic!("no Events section:\n{out}"));
    let (header, rows) = table(events);
    assert_eq!(header, ["Type", "Reason", "Age", "From", "Message"], "{out}");
    let inspected = row(&header, &rows, "Reason", "Inspected").unwrap_or_else(|| panic!("no Inspected event:\n{out}"));
    assert_eq!(cell(&header, inspected, "Type"), "Normal", "{out}");
    assert_eq!(cell(&header, inspected, "From"), "machinist-operator", "{out}");
    assert_eq!(cell(&header, inspected, "Message"), "hardware report received from the agent", "{out}");
    let matched = row(&header, &rows, "Reason", "Matched").unwrap_or_else(|| panic!("no Matched event:\n{out}"));
    assert_eq!(cell(&header, matched, "Message"), "bound to hardware profile api-vm", "{out}");
    assert!(!out.contains("InstallFailed"), "another machine's event:\n{out}");

    // describe of a kind and namespace describes each object, with its own events.
    let out = cluster.ok(&["describe", "machines", "-n", "api"]).await;
    assert!(out.contains("InstallFailed") && out.contains("Inspected"), "{out}");

    // kubectl get events, selected by field.
    let out = cluster.ok(&["get", "events", "-n", "api", "--field-selector", "involvedObject.name=api-01"]).await;
    let (header, rows) = table(&out);
    assert_eq!(header, ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"], "{out}");
    assert_eq!(rows.len(), 2, "{out}");
    assert!(rows.iter().all(|r| cell(&header, r, "OBJECT") == "machine/api-01"), "{out}");
    let out = cluster.ok(&["get", "events", "-A", "--field-selector", "type=Warning", "-o", "name"]).await;
    assert_eq!(names(&out), set(&["event/api-02.failed"]), "{out}");
    let out = cluster
        .ok(&[
            "get",
            "events",
            "-n",
            "api",
            "--field-selector",
            "involvedObject.kind=Machine,reason=Matched",
            "-o",
            "name",
        ])
        .await;
    assert_eq!(names(&out), set(&["event/api-01.matched"]), "{out}");
    let out = cluster
        .ok(&[
            "get",
            "events.v1.events.k8s.io",
            "-n",
            "api",
            "api-01.inspected",
            "-o",
            "jsonpath={.regarding.name}/{.note}",
        ])
        .await;
    assert_eq!(out, "api-01/hardware report received from the agent");
    cluster.stop().await;
}

/// `kubectl explain` reads the OpenAPI the server builds from the CRD schemas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_shows_the_crd_schemas() {
    let Some(cluster) = Cluster::start("explain_shows_the_crd_schemas").await else {
        return;
    };
    let out = cluster.ok(&["explain", "machine"]).await;
    let text = flat(&out);
    for expected in [
        "GROUP: machinist.dev",
        "KIND: Machine",
        "VERSION: v1alpha1",
        "DESCRIPTION: A server or virtual machine that machinist inspects, matches to a hardware profile, gives a CMDB entry and installs with its role (a raw image streamed to its disk) until the installed system phones home and the machine is Ready. A libvirt machine's VM is created, powered and removed by the operator; BMC power and adding machines to load balancers are not built yet.",
        "spec <Object> -required-",
        "status <Object>",
        "metadata <ObjectMeta>",
    ] {
        assert!(text.contains(expected), "explain machine lacks {expected:?}:\n{out}");
    }

    let out = cluster.ok(&["explain", "machine.spec"]).await;
    let text = flat(&out);
    for expected in [
        "KIND: Machine",
        "FIELD: spec <Object>",
        "Desired state of a machine: how to reach and power it, and what it should become.",
        "interfaces <[]Object>",
        "provider <Object> -required-",
        "online <boolean>",
        "Whether the machine should be powered on (false: off, without deprovisioning it). A libvirt VM is started while true",
    ] {
        assert!(text.contains(expected), "explain machine.spec lacks {expected:?}:\n{out}");
    }

    let out = cluster.ok(&["explain", "machine.spec.provider.libvirt"]).await;
    let text = flat(&out);
    for expected in [
        "FIELD: libvirt <Object>",
        "A virtual machine the operator places on a Hypervisor, defines with its volume, powers from `online` and removes when the Machine is deleted.",
        "memoryMiB <integer>",
        "Memory, in MiB.",
        "bridge <string>",
        "Host bridge the interfaces attach to (e.g. `br0`), instead of a libvirt network.",
        "hostSelector <map[string]string>",
        "diskGiB <integer>",
    ] {
        assert!(text.contains(expected), "explain machine.spec.provider.libvirt lacks {expected:?}:\n{out}");
    }

    // Short name, a list's items, and a leaf.
    let out = cluster.ok(&["explain", "mach.spec.interfaces.mac"]).await;
    let text = flat(&out);
    assert!(text.contains("FIELD: mac <string>"), "{out}");
    assert!(text.contains("MAC address, `aa:bb:cc:dd:ee:ff` (either case)."), "{out}");
    let out = cluster.ok(&["explain", "machines.status.conditions"]).await;
    assert!(flat(&out).contains("FIELD: conditions <[]Object>") && out.contains("lastTransitionTime"), "{out}");
    let out = cluster.ok(&["explain", "roles.machinist.dev.spec", "--recursive"]).await;
    assert!(out.contains("install") && out.contains("debianInstaller") && out.contains("preseed"), "{out}");
    let out = cluster.ok(&["explain", "hardwareprofiles.spec.install"]).await;
    assert!(flat(&out).contains("KIND: HardwareProfile"), "{out}");

    let missing = cluster.fails(&["explain", "machine.spec.onlin"]).await;
    assert!(missing.stderr.contains(r#"field "onlin" does not exist"#), "{missing}");
    cluster.stop().await;
}

/// `kubectl edit` (with `KUBE_EDITOR` a script), `kubectl patch` (merge, JSON, status
/// subresource), `kubectl label` and `kubectl annotate`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_patch_label_and_annotate_change_objects() {
    let Some(cluster) = Cluster::start("edit_patch_label_and_annotate_change_objects").await else {
        return;
    };
    cluster.load_examples().await;
    let get = |jsonpath: &'static str| {
        let cluster = &cluster;
        async move { cluster.ok(&["get", "machine", "api-01", "-n", "api", "-o", &format!("jsonpath={jsonpath}")]).await }
    };

    // edit: the editor script rewrites the memory.
    let editor = cluster.script("editor.sh", "#!/bin/sh\nsed -i 's/memoryMiB: 4096/memoryMiB: 8192/' \"$1\"\n");
    let edit = cluster.run_with(&["edit", "machine", "api-01", "-n", "api"], &[("KUBE_EDITOR", &editor)]).await;
    assert!(edit.status.success(), "{edit}");
    assert_eq!(edit.stdout.trim(), "machine.machinist.dev/api-01 edited", "{edit}");
    assert_eq!(get("{.spec.provider.libvirt.memoryMiB}").await, "8192");
    // An editor that changes nothing: kubectl says so.
    let unchanged = cluster.run_with(&["edit", "machine", "api-01", "-n", "api"], &[("KUBE_EDITOR", "true")]).await;
    assert!(unchanged.status.success(), "{unchanged}");
    assert!(unchanged.all().contains("Edit cancelled, no changes made."), "{unchanged}");

    // Merge patch.
    let generation = get("{.metadata.generation}").await;
    let out = cluster
        .ok(&["patch", "machine", "api-01", "-n", "api", "--type=merge", "-p", r#"{"spec":{"debug":true}}"#])
        .await;
    assert_eq!(out.trim(), "machine.machinist.dev/api-01 patched");
    assert_eq!(get("{.spec.debug}").await, "true");
    assert_ne!(get("{.metadata.generation}").await, generation);
    let version = get("{.metadata.resourceVersion}").await;
    let out = cluster
        .ok(&["patch", "machine", "api-01", "-n", "api", "--type=merge", "-p", r#"{"spec":{"debug":true}}"#])
        .await;
    assert_eq!(out.trim(), "machine.machinist.dev/api-01 patched (no change)");
    assert_eq!(get("{.metadata.resourceVersion}").await, version, "a no-op patch wrote the object");

    // JSON patch.
    let patch = r#"[{"op":"replace","path":"/spec/onSuccess","value":"halt"},{"op":"add","path":"/spec/bootMenu/roles/-","value":"extra"}]"#;
    let out = cluster.ok(&["patch", "machine", "api-01", "-n", "api", "--type=json", "-p", patch]).await;
    assert_eq!(out.trim(), "machine.machinist.dev/api-01 patched");
    assert_eq!(get("{.spec.onSuccess} {.spec.bootMenu.roles[5]}").await, "halt extra");
    // The status subresource: status changes through it, and only there.
    let status = json!({"status": {"phase": "Ready", "ip": "10.10.10.21"}, "spec": {"debug": false}}).to_string();
    let out = cluster
        .ok(&["patch", "machine", "api-01", "-n", "api", "--subresource=status", "--type=merge", "-p", &status])
        .await;
    assert_eq!(out.trim(), "machine.machinist.dev/api-01 patched");
    assert_eq!(get("{.status.phase} {.status.ip} {.spec.debug}").await, "Ready 10.10.10.21 true");
    let out = cluster
        .ok(&["patch", "machine", "api-01", "-n", "api", "--type=merge", "-p", r#"{"status":{"phase":"Failed"}}"#])
        .await;
    assert_eq!(out.trim(), "machine.machinist.dev/api-01 patched (no change)", "the main resource ignores status");
    assert_eq!(get("{.status.phase}").await, "Ready");
    let out = cluster
        .ok(&[
            "patch",
            "machine",
            "api-01",
            "-n",
            "api",
            "--subresource=status",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/status/phase","value":"Provisioned"}]"#,
        ])
        .await;
    assert_eq!(out.trim(), "machine.machinist.dev/api-01 patched");
    assert_eq!(get("{.status.phase}").await, "Provisioned");

    // label.
    let out = cluster.ok(&["label", "machine", "api-01", "-n", "api", "tier=front"]).await;
    assert_eq!(out.trim(), "machine.machinist.dev/api-01 labeled");
    let out = cluster.ok(&["get", "machines", "-n", "api", "-l", "tier=front", "-o", "name"]).await;
    assert_eq!(names(&out), set(&["machine.machinist.dev/api-01"]));
    let refused = cluster.fails(&["label", "machine", "api-01", "-n", "api", "tier=back"]).await;
    assert!(refused.stderr.contains("'tier' already has a value (front), and --overwrite is false"), "{refused}");
    cluster.ok(&["label", "machine", "api-01", "-n", "api", "tier=back", "--overwrite"]).await;
    assert_eq!(get("{.metadata.labels.tier}").await, "back");
    let out = cluster.ok(&["label", "machine", "api-01", "-n", "api", "tier-"]).await;
    assert_eq!(out.trim(), "machine.machinist.dev/api-01 unlabeled");
    assert_eq!(get("{.metadata.labels}").await, r#"{"app":"api"}"#);
    let out = cluster.ok(&["label", "machines", "--all", "-n", "web", "rack=r1"]).await;
    assert_eq!(out.lines().count(), 3, "{out}");
    let out = cluster.ok(&["get", "machines", "-A", "-l", "rack=r1", "-o", "name"]).await;
    assert_eq!(names(&out).len(), 3, "{out}");

    // annotate.
    let out = cluster.ok(&["annotate", "machine", "api-01", "-n", "api", "machinist.dev/note=rack 4, slot 2"]).await;
    assert_eq!(out.trim(), "machine.machinist.dev/api-01 annotated");
    assert_eq!(get(r"{.metadata.annotations.machinist\.dev/note}").await, "rack 4, slot 2");
    cluster.ok(&["annotate", "machine", "api-01", "-n", "api", "machinist.dev/note-"]).await;
    assert_eq!(get(r"{.metadata.annotations.machinist\.dev/note}").await, "");

    // The default (strategic merge) patch is not for custom resources: kubectl says so, with
    // the patch types a custom resource accepts.
    let strategic =
        cluster.fails(&["patch", "machine", "api-01", "-n", "api", "-p", r#"{"spec":{"debug":false}}"#]).await;
    assert!(
        strategic.stderr.contains(
            "error: application/strategic-merge-patch+json is not supported by machinist.dev/v1alpha1, Kind=Machine: \
             the body of the request was in an unknown format - accepted media types include: \
             application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
        ),
        "{strategic}"
    );

    // A failed test operation: 422, reported as on a real cluster.
    let failed = cluster
        .fails(&[
            "patch",
            "machine",
            "api-01",
            "-n",
            "api",
            "--type=json",
            "-p",
            r#"[{"op":"test","path":"/spec/onSuccess","value":"reboot"}]"#,
        ])
        .await;
    assert!(
        failed
            .stderr
            .contains("The request is invalid: the server rejected our request due to an error in our request"),
        "{failed}"
    );
    cluster.stop().await;
}

/// `kubectl delete`: at once without finalizers; with one pending, `--wait=false` returns and
/// leaves the object terminating until the finalizer goes, and a waiting delete returns when
/// it does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_waits_for_finalizers() {
    let Some(cluster) = Cluster::start("delete_waits_for_finalizers").await else {
        return;
    };
    cluster.load_examples().await;
    let finalizer = r#"{"metadata":{"finalizers":["machinist.dev/test"]}}"#;
    let release = r#"{"metadata":{"finalizers":null}}"#;

    // No finalizer: gone when kubectl returns.
    let out = cluster.ok(&["delete", "machine", "web-3", "-n", "web"]).await;
    assert_eq!(out.trim(), r#"machine.machinist.dev "web-3" deleted from web namespace"#);
    let gone = cluster.fails(&["get", "machine", "web-3", "-n", "web"]).await;
    assert!(
        gone.stderr.contains(r#"Error from server (NotFound): machines.machinist.dev "web-3" not found"#),
        "{gone}"
    );

    // --wait=false: returns at once, the object stays, terminating, until the finalizer goes.
    cluster.ok(&["patch", "machine", "web-1", "-n", "web", "--type=merge", "-p", finalizer]).await;
    let started = std::time::Instant::now();
    let out = cluster.ok(&["delete", "machine", "web-1", "-n", "web", "--wait=false"]).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "--wait=false waited");
    assert_eq!(out.trim(), r#"machine.machinist.dev "web-1" deleted from web namespace"#);
    let terminating = cluster.json(&["get", "machine", "web-1", "-n", "web"]).await;
    assert!(terminating["metadata"]["deletionTimestamp"].is_string(), "{terminating}");
    assert_eq!(terminating["metadata"]["finalizers"], json!(["machinist.dev/test"]), "{terminating}");
    let out = cluster.ok(&["patch", "machine", "web-1", "-n", "web", "--type=merge", "-p", release]).await;
    assert_eq!(out.trim(), "machine.machinist.dev/web-1 patched");
    let gone = cluster.fails(&["get", "machine", "web-1", "-n", "web"]).await;
    assert!(gone.stderr.contains("NotFound"), "{gone}");

    // A waiting delete times out while the finalizer stays…
    cluster.ok(&["patch", "machine", "web-2", "-n", "web", "--type=merge", "-p", finalizer]).await;
    let timeout = cluster.fails(&["delete", "machine", "web-2", "-n", "web", "--timeout=2s"]).await;
    assert!(timeout.stdout.contains(r#""web-2" deleted"#), "{timeout}");
    assert!(timeout.stderr.contains("timed out waiting for the condition on machines/web-2"), "{timeout}");

    // …and returns once the test removes it while kubectl waits.
    cluster.ok(&["patch", "machine", "api-01", "-n", "api", "--type=merge", "-p", finalizer]).await;
    let mut delete = cluster.spawn(&["delete", "machine", "api-01", "-n", "api", "--timeout=25s"]);
    delete.line("the deletion", |l| l.contains(r#""api-01" deleted"#)).await;
    let waiting = cluster.json(&["get", "machine", "api-01", "-n", "api"]).await;
    assert!(waiting["metadata"]["deletionTimestamp"].is_string(), "{waiting}");
    assert!(delete.running(), "kubectl delete returned while the finalizer was pending");
    cluster.ok(&["patch", "machine", "api-01", "-n", "api", "--type=merge", "-p", release]).await;
    let run = delete.finish().await;
    assert!(run.status.success(), "the waiting delete failed once the finalizer went:\n{run}");
    let gone = cluster.fails(&["get", "machine", "api-01", "-n", "api"]).await;
    assert!(gone.stderr.contains("NotFound"), "{gone}");

    // By label, and a namespace with what is in it.
    let out = cluster.ok(&["delete", "machines", "-n", "api", "-l", "app=api"]).await;
    assert_eq!(out.trim(), r#"machine.machinist.dev "api-02" deleted from api namespace"#);
    let out = cluster.ok(&["delete", "namespace", "edeploy", "--timeout=25s"]).await;
    assert_eq!(out.trim(), r#"namespace "edeploy" deleted"#);
    let gone = cluster.fails(&["get", "namespace", "edeploy"]).await;
    assert!(gone.stderr.contains("NotFound"), "{gone}");
    let out = cluster.run(&["get", "machinist,secrets", "-n", "edeploy", "-o", "name"]).await;
    assert_eq!(out.stdout.trim(), "", "objects of the deleted namespace remain:\n{out}");
    cluster.stop().await;
}

/// `kubectl wait --for=condition=Ready` and `--for=jsonpath=…`, met while kubectl waits or
/// already, and timing out otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_returns_when_conditions_are_met() {
    let Some(cluster) = Cluster::start("wait_returns_when_conditions_are_met").await else {
        return;
    };
    cluster.load_examples().await;

    let timeout = cluster.fails(&["wait", "--for=condition=Ready", "machine/web-1", "-n", "web", "--timeout=1s"]).await;
    assert!(timeout.stderr.contains("timed out waiting for the condition on machines/web-1"), "{timeout}");

    // Ready becomes True while kubectl waits.
    let mut wait = cluster.spawn(&["wait", "--for=condition=Ready", "machine/web-1", "-n", "web", "--timeout=25s"]);
    let ready = json!({"status": {"conditions": [{
        "type": "Ready", "status": "True", "reason": "Installed", "message": "the role is installed",
        "lastTransitionTime": now(),
    }]}})
    .to_string();
    // Not ready yet: another condition first.
    let other = json!({"status": {"conditions": [{
        "type": "Ready", "status": "False", "reason": "Installing", "message": "the installer runs",
        "lastTransitionTime": now(),
    }]}})
    .to_string();
    cluster.ok(&["patch", "machine", "web-1", "-n", "web", "--subresource=status", "--type=merge", "-p", &other]).await;
    assert!(wait.running(), "kubectl wait returned while Ready was False");
    cluster.ok(&["patch", "machine", "web-1", "-n", "web", "--subresource=status", "--type=merge", "-p", &ready]).await;
    let run = wait.finish().await;
    assert!(run.status.success(), "{run}");
    assert_eq!(run.stdout.trim(), "machine.machinist.dev/web-1 condition met", "{run}");

    // Already met.
    let out = cluster.ok(&["wait", "--for=condition=Ready", "machine/web-1", "-n", "web", "--timeout=5s"]).await;
    assert_eq!(out.trim(), "machine.machinist.dev/web-1 condition met");

    // A JSONPath value, reached while kubectl waits.
    let mut wait =
        cluster.spawn(&["wait", "--for=jsonpath={.status.phase}=Ready", "machine/web-2", "-n", "web", "--timeout=25s"]);
    let phase = |phase: &str| json!({"status": {"phase": phase}}).to_string();
    cluster
        .ok(&[
            "patch",
            "machine",
            "web-2",
            "-n",
            "web",
            "--subresource=status",
            "--type=merge",
            "-p",
            &phase("Provisioning"),
        ])
        .await;
    assert!(wait.running(), "kubectl wait returned while the phase was Provisioning");
    cluster
        .ok(&["patch", "machine", "web-2", "-n", "web", "--subresource=status", "--type=merge", "-p", &phase("Ready")])
        .await;
    let run = wait.finish().await;
    assert!(run.status.success(), "{run}");
    assert_eq!(run.stdout.trim(), "machine.machinist.dev/web-2 condition met", "{run}");
    let out = cluster
        .ok(&[
            "wait",
            "--for=jsonpath={.spec.onSuccess}=reboot",
            "machines",
            "-l",
            "app=web",
            "-n",
            "web",
            "--timeout=5s",
        ])
        .await;
    assert_eq!(out.lines().count(), 3, "{out}");
    let timeout = cluster
        .fails(&["wait", "--for=jsonpath={.status.phase}=Ready", "machine/web-3", "-n", "web", "--timeout=1s"])
        .await;
    assert!(timeout.stderr.contains("timed out waiting for the condition on machines/web-3"), "{timeout}");

    // Deletion, held by a finalizer until the test lets it go. (kubectl may start after the
    // object went; it then succeeds without a word, so only a printed line is checked.)
    let finalizer = r#"{"metadata":{"finalizers":["machinist.dev/test"]}}"#;
    cluster.ok(&["patch", "machine", "web-3", "-n", "web", "--type=merge", "-p", finalizer]).await;
    let mut wait = cluster.spawn(&["wait", "--for=delete", "machine/web-3", "-n", "web", "--timeout=25s"]);
    cluster.ok(&["delete", "machine", "web-3", "-n", "web", "--wait=false"]).await;
    assert!(wait.running(), "kubectl wait --for=delete returned while the finalizer was pending");
    cluster
        .ok(&["patch", "machine", "web-3", "-n", "web", "--type=merge", "-p", r#"{"metadata":{"finalizers":null}}"#])
        .await;
    let run = wait.finish().await;
    assert!(run.status.success(), "{run}");
    assert!(matches!(run.stdout.trim(), "" | "machine.machinist.dev/web-3 condition met"), "{run}");
    cluster.stop().await;
}

/// `kubectl create namespace` and `kubectl create secret generic` (which send protobuf),
/// `kubectl api-resources` and `kubectl version`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_namespace_and_secret_and_discovery() {
    let Some(cluster) = Cluster::start("create_namespace_and_secret_and_discovery").await else {
        return;
    };
    let out = cluster.ok(&["create", "namespace", "team-a"]).await;
    assert_eq!(out.trim(), "namespace/team-a created");
    let namespace = cluster.json(&["get", "namespace", "team-a"]).await;
    assert_eq!(namespace["status"]["phase"], "Active", "{namespace}");
    assert_eq!(namespace["spec"]["finalizers"], json!(["kubernetes"]), "{namespace}");
    assert!(namespace["metadata"].get("generateName").is_none(), "{namespace}");
    let again = cluster.fails(&["create", "namespace", "team-a"]).await;
    assert!(
        again.stderr.contains(r#"Error from server (AlreadyExists): namespaces "team-a" already exists"#),
        "{again}"
    );

    let out = cluster
        .ok(&[
            "create",
            "secret",
            "generic",
            "bmc",
            "-n",
            "team-a",
            "--from-literal=username=admin",
            "--from-literal=password=s3cr3t!",
        ])
        .await;
    assert_eq!(out.trim(), "secret/bmc created");
    let secret = cluster.json(&["get", "secret", "bmc", "-n", "team-a"]).await;
    // kubectl sent protobuf: fields it left empty are absent, and the type defaults to Opaque.
    assert_eq!(secret["type"], "Opaque", "{secret}");
    assert!(secret["metadata"].get("generateName").is_none(), "{secret}");
    assert_eq!(secret["data"], json!({"username": "YWRtaW4=", "password": "czNjcjN0IQ=="}), "{secret}");
    let file = cluster.write("ca.crt", "-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----\n");
    let out = cluster
        .ok(&["create", "secret", "generic", "tls-ca", "-n", "team-a", &format!("--from-file=ca.crt={file}")])
        .await;
    assert_eq!(out.trim(), "secret/tls-ca created");
    let out = cluster.ok(&["create", "configmap", "settings", "-n", "team-a", "--from-literal=site=gra"]).await;
    assert_eq!(out.trim(), "configmap/settings created");
    assert_eq!(
        cluster.ok(&["get", "configmap", "settings", "-n", "team-a", "-o", "jsonpath={.data.site}"]).await,
        "gra"
    );
    // --dry-run=server writes nothing.
    let out = cluster.ok(&["create", "namespace", "team-b", "--dry-run=server"]).await;
    assert_eq!(out.trim(), "namespace/team-b created (server dry run)");
    assert!(cluster.fails(&["get", "namespace", "team-b"]).await.stderr.contains("NotFound"));

    // api-resources.
    let out = cluster.ok(&["api-resources"]).await;
    let (header, rows) = table(&out);
    assert_eq!(header, ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"], "{out}");
    for expected in [
        ["machines", "mach", "machinist.dev/v1alpha1", "true", "Machine"],
        ["hardwareprofiles", "hwp", "machinist.dev/v1alpha1", "true", "HardwareProfile"],
        ["loadbalancerbackends", "lbb", "machinist.dev/v1alpha1", "true", "LoadBalancerBackend"],
        ["cmdbs", "cmdb", "machinist.dev/v1alpha1", "true", "Cmdb"],
        ["roles", "role", "machinist.dev/v1alpha1", "true", "Role"],
        ["hypervisors", "hv", "machinist.dev/v1alpha1", "true", "Hypervisor"],
        ["namespaces", "ns", "v1", "false", "Namespace"],
        ["customresourcedefinitions", "crd,crds", "apiextensions.k8s.io/v1", "false", "CustomResourceDefinition"],
    ] {
        assert!(rows.iter().any(|r| r == &expected), "api-resources lacks {expected:?}:\n{out}");
    }
    let out = cluster.ok(&["api-resources", "--api-group=machinist.dev", "-o", "name"]).await;
    assert_eq!(
        names(&out),
        set(&[
            "cmdbs.machinist.dev",
            "hardwareprofiles.machinist.dev",
            "hypervisors.machinist.dev",
            "loadbalancerbackends.machinist.dev",
            "machines.machinist.dev",
            "roles.machinist.dev",
        ]),
        "{out}"
    );
    let out = cluster.ok(&["api-resources", "--categories=machinist", "-o", "name"]).await;
    assert_eq!(names(&out).len(), 6, "{out}");
    let out = cluster.ok(&["api-resources", "--namespaced=false", "-o", "name"]).await;
    assert!(names(&out).contains("namespaces") && !names(&out).contains("machines.machinist.dev"), "{out}");
    let out = cluster.ok(&["api-resources", "--api-group=machinist.dev", "-o", "wide"]).await;
    let (header, rows) = table(&out);
    let machines = row(&header, &rows, "NAME", "machines").unwrap_or_else(|| panic!("{out}"));
    assert_eq!(cell(&header, machines, "VERBS"), "create,delete,deletecollection,get,list,patch,update,watch", "{out}");
    assert_eq!(cell(&header, machines, "CATEGORIES"), "machinist", "{out}");
    let out = cluster.ok(&["api-versions"]).await;
    for version in ["v1", "machinist.dev/v1alpha1", "apiextensions.k8s.io/v1", "events.k8s.io/v1"] {
        assert!(out.lines().any(|l| l == version), "api-versions lacks {version}:\n{out}");
    }

    // version.
    let version = cluster.json(&["version"]).await;
    let server = &version["serverVersion"];
    assert_eq!(server["major"], "1", "{version}");
    assert!(
        server["gitVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with(&format!("v1.{}.", server["minor"].as_str().unwrap_or("?")))),
        "{version}"
    );
    let out = cluster.run(&["version"]).await;
    assert!(out.status.success(), "{out}");
    assert!(out.stdout.contains("Server Version: v1."), "{out}");
    assert!(!out.stderr.contains("WARNING"), "kubectl warns about the server's version:\n{out}");
    cluster.stop().await;
}

/// Invalid objects are refused with kubectl's usual messages: unknown fields under
/// `--validate=strict` (the default), reported under `--validate=warn`, dropped under
/// `--validate=false`; schema errors with their field paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_errors_read_as_on_a_real_cluster() {
    let Some(cluster) = Cluster::start("validation_errors_read_as_on_a_real_cluster").await else {
        return;
    };
    let machine = |name: &str, spec: &str| {
        format!(
            "apiVersion: machinist.dev/v1alpha1\nkind: Machine\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n{spec}"
        )
    };
    let good_spec = "  interfaces:\n    - mac: \"52:54:00:00:00:01\"\n  provider:\n    manual: {}\n";

    // An unknown field: refused by default and under --validate=strict, client- or server-side.
    let misspelt = cluster.write("misspelt.yaml", &machine("misspelt", &format!("  onlin: false\n{good_spec}")));
    for extra in [None, Some("--validate=strict"), Some("--server-side")] {
        let mut args = vec!["apply", "-f", misspelt.as_str()];
        args.extend(extra);
        let run = cluster.fails(&args).await;
        assert!(run.stderr.contains("Error from server (BadRequest)"), "{run}");
        assert!(run.stderr.contains(r#"strict decoding error: unknown field "spec.onlin""#), "{run}");
    }
    let run = cluster.fails(&["create", "-f", &misspelt]).await;
    assert!(run.stderr.contains(r#"strict decoding error: unknown field "spec.onlin""#), "{run}");
    let absent = cluster.fails(&["get", "machine", "misspelt"]).await;
    assert!(absent.stderr.contains(r#"machines.machinist.dev "misspelt" not found"#), "{absent}");

    // --validate=warn: created, with a warning; --validate=false: created, silently.
    let run = cluster.run(&["apply", "--validate=warn", "-f", &misspelt]).await;
    assert!(run.status.success(), "{run}");
    assert!(run.stderr.contains(r#"Warning: unknown field "spec.onlin""#), "{run}");
    assert_eq!(cluster.ok(&["get", "machine", "misspelt", "-o", "jsonpath={.spec.online}"]).await, "true");
    let quiet = cluster.write("quiet.yaml", &machine("quiet", &format!("  onlin: false\n{good_spec}")));
    let run = cluster.run(&["apply", "--validate=false", "-f", &quiet]).await;
    assert!(run.status.success(), "{run}");
    assert!(!run.stderr.contains("onlin"), "{run}");

    // Schema errors, with their field paths.
    let bad_mac = cluster.write(
        "bad-mac.yaml",
        &machine("x", "  interfaces:\n    - mac: \"52:54:00:00:00:zz\"\n  provider:\n    manual: {}\n"),
    );
    let run = cluster.fails(&["apply", "-f", &bad_mac]).await;
    assert!(
        run.stderr.contains(r#"The Machine "x" is invalid: spec.interfaces[0].mac: Invalid value: "52:54:00:00:00:zz": spec.interfaces[0].mac in body should match '^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$'"#),
        "{run}"
    );
    let run = cluster.fails(&["apply", "--server-side", "-f", &bad_mac]).await;
    assert!(
        run.stderr
            .contains(r#"The Machine "x" is invalid: spec.interfaces[0].mac: Invalid value: "52:54:00:00:00:zz""#),
        "{run}"
    );

    let two = cluster.write(
        "two.yaml",
        &machine(
            "two",
            "  onSuccess: explode\n  interfaces:\n    - mac: \"52:54:00:00:00:zz\"\n  provider:\n    manual: {}\n",
        ),
    );
    let run = cluster.fails(&["apply", "-f", &two]).await;
    assert!(run.stderr.contains(r#"The Machine "two" is invalid: "#), "{run}");
    assert!(run.stderr.contains(r#"* spec.interfaces[0].mac: Invalid value: "52:54:00:00:00:zz""#), "{run}");
    assert!(
        run.stderr.contains(
            r#"* spec.onSuccess: Unsupported value: "explode": supported values: "reboot", "kexec", "halt", "console""#
        ),
        "{run}"
    );

    let no_provider =
        cluster.write("no-provider.yaml", &machine("bare", "  interfaces:\n    - mac: \"52:54:00:00:00:01\"\n"));
    let run = cluster.fails(&["apply", "-f", &no_provider]).await;
    // A required field missing blocks the CEL rules, and the API server says so.
    assert!(run.stderr.contains(r#"The Machine "bare" is invalid: "#), "{run}");
    assert!(run.stderr.contains("* spec.provider: Required value"), "{run}");
    assert!(
        run.stderr.contains("* <nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation"),
        "{run}"
    );

    let menu = cluster.write(
        "menu.yaml",
        &machine("menu", &format!("{good_spec}  bootMenu:\n    roles: [base, api]\n    default: web\n")),
    );
    let run = cluster.fails(&["apply", "-f", &menu]).await;
    assert!(
        run.stderr.contains(r#"The Machine "menu" is invalid: spec.bootMenu: Invalid value: "object": bootMenu.default must be one of bootMenu.roles"#),
        "{run}"
    );

    // Patches are validated too.
    let good = cluster.write("good.yaml", &machine("good", good_spec));
    cluster.ok(&["apply", "-f", &good]).await;
    let run = cluster
        .fails(&[
            "patch",
            "machine",
            "good",
            "--type=merge",
            "-p",
            r#"{"spec":{"provider":{"manual":null,"libvirt":{"memoryMiB":1}}}}"#,
        ])
        .await;
    assert!(run.stderr.contains(r#"The Machine "good" is invalid: "#), "{run}");
    assert!(
        run.stderr.contains("spec.provider.libvirt.memoryMiB: Invalid value: 1: spec.provider.libvirt.memoryMiB in body should be greater than or equal to 128"),
        "{run}"
    );
    let run = cluster.fails(&["patch", "machine", "good", "--type=merge", "-p", r#"{"spec":{"debug":"yes"}}"#]).await;
    assert!(
        run.stderr
            .contains(r#"spec.debug: Invalid value: "string": spec.debug in body must be of type boolean: "string""#),
        "{run}"
    );
    cluster.stop().await;
}
