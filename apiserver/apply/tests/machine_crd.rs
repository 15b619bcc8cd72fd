//! Server-side apply with the real Machine CRD of this repository.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic

use machinist_apiserver_apply::{ApplyError, Manager, TypeInfo, apply, update};
use serde_json::{Value, json};

const V: &str = "machinist.dev/v1alpha1";

fn crd() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../crds/manifests/machines.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    serde_saphyr::from_str::<Value>(&text).unwrap()
}

fn machine_types() -> TypeInfo {
    let crd = crd();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let from_schema = TypeInfo::from_schema(schema).unwrap();
    assert!(!from_schema.has_status_subresource());
    let types = TypeInfo::from_crd(&crd, "v1alpha1").unwrap();
    assert!(types.has_status_subresource());
    types
}

fn ident() -> Value {
    json!({
        "apiVersion": V,
        "kind": "Machine",
        "metadata": {"name": "m1", "namespace": "default"}
    })
}

fn with(mut base: Value, key: &str, value: Value) -> Value {
    base[key] = value;
    base
}

fn stored(mut obj: Value) -> Value {
    obj["metadata"]["uid"] = json!("6f1f7c3e-0000-4000-8000-000000000001");
    obj["metadata"]["resourceVersion"] = json!("7");
    obj
}

fn condition(kind: &str, status: &str, reason: &str) -> Value {
    json!({
        "type": kind,
        "status": status,
        "reason": reason,
        "message": format!("{kind} is {status}"),
        "lastTransitionTime": "2024-05-01T10:00:00Z"
    })
}

fn status_manager(name: &str) -> Manager<'_> {
    Manager::new(name, V).with_subresource("status")
}

fn entry_fields(obj: &Value, manager: &str) -> Value {
    obj["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == manager)
        .map(|e| e["fieldsV1"].clone())
        .unwrap_or(Value::Null)
}

fn conditions(obj: &Value) -> Vec<(String, String)> {
    obj["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["type"].as_str().unwrap().to_owned(), c["status"].as_str().unwrap().to_owned()))
        .collect()
}

fn created(types: &TypeInfo) -> Value {
    let machine = with(
        ident(),
        "spec",
        json!({
            "interfaces": [{"mac": "52:54:00:00:00:01", "name": "eth0"}],
            "provider": {"manual": {}}
        }),
    );
    stored(update(None, &machine, Manager::new("machinist", V), types, "2024-05-01T10:00:00Z"))
}

#[test]
fn controllers_applying_different_conditions_do_not_clobber_each_other() {
    let types = machine_types();
    let obj = created(&types);
    assert_eq!(
        entry_fields(&obj, "machinist"),
        json!({"f:spec": {
            ".": {},
            "f:interfaces": {".": {}, "k:{\"mac\":\"52:54:00:00:00:01\"}": {".": {}, "f:mac": {}, "f:name": {}}},
            "f:provider": {".": {}, "f:manual": {}}
        }})
    );

    // kube-rs `Patch::Apply` on /status with force, as controllers do.
    let ready = with(ident(), "status", json!({"conditions": [condition("Ready", "False", "Booting")]}));
    let obj = stored(
        apply(Some(&obj), &ready, status_manager("ready-controller"), true, &types, "2024-05-01T10:00:01Z").unwrap(),
    );
    let matched = with(ident(), "status", json!({"conditions": [condition("Matched", "True", "Rules")]}));
    let obj =
        stored(apply(Some(&obj), &matched, status_manager("matcher"), true, &types, "2024-05-01T10:00:02Z").unwrap());
    assert_eq!(conditions(&obj), [("Ready".into(), "False".into()), ("Matched".into(), "True".into())]);

    // Each re-applies its own condition only; the other's stays.
    let ready = with(ident(), "status", json!({"conditions": [condition("Ready", "True", "Up")]}));
    let obj = stored(
        apply(Some(&obj), &ready, status_manager("ready-controller"), true, &types, "2024-05-01T10:00:03Z").unwrap(),
    );
    assert_eq!(conditions(&obj), [("Ready".into(), "True".into()), ("Matched".into(), "True".into())]);
    let matched = with(ident(), "status", json!({"conditions": [condition("Matched", "False", "NoProfile")]}));
    let obj =
        stored(apply(Some(&obj), &matched, status_manager("matcher"), true, &types, "2024-05-01T10:00:04Z").unwrap());
    assert_eq!(conditions(&obj), [("Ready".into(), "True".into()), ("Matched".into(), "False".into())]);

    let key = |t: &str| format!("k:{{\"type\":\"{t}\"}}");
    let owned = |t: &str| {
        json!({"f:status": {"f:conditions": {key(t): {
            ".": {}, "f:type": {}, "f:status": {}, "f:reason": {}, "f:message": {}, "f:lastTransitionTime": {}
        }}}})
    };
    assert_eq!(entry_fields(&obj, "ready-controller"), owned("Ready"));
    assert_eq!(entry_fields(&obj, "matcher"), owned("Matched"));
    let entries = obj["metadata"]["managedFields"].as_array().unwrap();
    assert!(entries.iter().filter(|e| e["operation"] == "Apply").all(|e| e["subresource"] == "status"));
    // The spec was never touched.
    assert_eq!(entry_fields(&obj, "machinist"), entry_fields(&created(&types), "machinist"));

    // A controller that stops reporting its condition removes it, and only it.
    let obj = apply(
        Some(&obj),
        &with(ident(), "status", json!({"conditions": []})),
        status_manager("matcher"),
        true,
        &types,
        "2024-05-01T10:00:05Z",
    )
    .unwrap();
    assert_eq!(conditions(&obj), [("Ready".into(), "True".into())]);
}

#[test]
fn status_fields_conflict_without_force() {
    let types = machine_types();
    let obj = created(&types);
    let phase = |p: &str| with(ident(), "status", json!({"phase": p}));
    let obj = stored(
        apply(Some(&obj), &phase("Matched"), status_manager("a"), false, &types, "2024-05-01T10:00:01Z").unwrap(),
    );
    let err =
        apply(Some(&obj), &phase("Failed"), status_manager("b"), false, &types, "2024-05-01T10:00:02Z").unwrap_err();
    let ApplyError::Conflicts(c) = &err else { panic!("{err:?}") };
    assert_eq!(
        c.message(),
        r#"Apply failed with 1 conflict: conflict with "a" with subresource "status": .status.phase"#
    );
    assert_eq!(c.0[0].cause()["field"], ".status.phase");
    let forced =
        apply(Some(&obj), &phase("Failed"), status_manager("b"), true, &types, "2024-05-01T10:00:02Z").unwrap();
    assert_eq!(forced["status"]["phase"], "Failed");
    assert_eq!(entry_fields(&forced, "a"), Value::Null);
}

#[test]
fn interfaces_merge_by_mac() {
    let types = machine_types();
    let obj = created(&types);
    let spec = |ifaces: Value| with(ident(), "spec", json!({"interfaces": ifaces}));
    let obj = stored(
        apply(
            Some(&obj),
            &spec(json!([{"mac": "52:54:00:00:00:02", "name": "ipmi"}])),
            Manager::new("inventory", V),
            false,
            &types,
            "2024-05-01T10:00:01Z",
        )
        .unwrap(),
    );
    let macs = |o: &Value| -> Vec<String> {
        o["spec"]["interfaces"].as_array().unwrap().iter().map(|i| i["mac"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(macs(&obj), ["52:54:00:00:00:01", "52:54:00:00:00:02"]);

    // Renaming the creator's interface conflicts with the creator…
    let err = apply(
        Some(&obj),
        &spec(json!([{"mac": "52:54:00:00:00:01", "name": "boot"}, {"mac": "52:54:00:00:00:02", "name": "ipmi"}])),
        Manager::new("inventory", V),
        false,
        &types,
        "2024-05-01T10:00:02Z",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"Apply failed with 1 conflict: conflict with "machinist" using machinist.dev/v1alpha1: .spec.interfaces[mac="52:54:00:00:00:01"].name"#
    );
    // …and dropping its own interface removes only that one.
    let obj = apply(
        Some(&obj),
        &with(ident(), "spec", json!({})),
        Manager::new("inventory", V),
        false,
        &types,
        "2024-05-01T10:00:03Z",
    )
    .unwrap();
    assert_eq!(macs(&obj), ["52:54:00:00:00:01"]);
    assert_eq!(obj["spec"]["provider"], json!({"manual": {}}));
}
