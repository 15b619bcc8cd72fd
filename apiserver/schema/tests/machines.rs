//! The Machine CRD of this repository, compiled and admitting Machines.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic

mod common;

use common::messages;
use machinist_apiserver_schema::Schema;
use serde_json::{Value, json};

fn machine_schema() -> Schema {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../crds/manifests/machines.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let crd: Value = serde_saphyr::from_str(&text).unwrap();
    Schema::compile_at(
        &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"],
        "spec.versions[0].schema.openAPIV3Schema",
    )
    .unwrap_or_else(|e| panic!("machines.yaml does not compile: {e}"))
}

fn machine(spec: Value) -> Value {
    json!({"apiVersion": "machinist.dev/v1alpha1", "kind": "Machine", "metadata": {"name": "m1", "namespace": "default"}, "spec": spec})
}

fn manual() -> Value {
    json!({"interfaces": [{"mac": "52:54:00:12:34:56", "name": "eth0"}], "provider": {"manual": {}}})
}

#[test]
fn a_valid_machine_is_admitted_with_defaults() {
    let schema = machine_schema();
    let mut object = machine(manual());
    let admission = schema.admit(&mut object, None);
    assert_eq!(messages(&admission), Vec::<String>::new());
    assert!(admission.pruned.is_empty());
    assert_eq!(object["spec"]["online"], true);
    assert_eq!(object["spec"]["onSuccess"], "reboot");
    assert_eq!(object["spec"]["debug"], false);
}

#[test]
fn libvirt_defaults_and_rules() {
    let schema = machine_schema();
    let mut spec = manual();
    spec["provider"] = json!({"libvirt": {"host": "hv1", "network": "default", "pool": "ssd", "vcpus": 2, "memoryMiB": 2048, "diskGiB": 20}});
    let mut object = machine(spec.clone());
    let admission = schema.admit(&mut object, None);
    assert_eq!(messages(&admission), Vec::<String>::new());
    assert_eq!(object["spec"]["provider"]["libvirt"]["firmware"], "bios");
    assert_eq!(object["spec"]["provider"]["libvirt"]["diskFormat"], "qcow2");

    spec["provider"]["libvirt"]["bridge"] = json!("br0");
    spec["provider"]["libvirt"]["host"] = json!("qemu:///system");
    let mut object = machine(spec);
    assert_eq!(
        messages(&schema.admit(&mut object, None)),
        // Schema errors come before CEL's.
        [
            r#"spec.provider.libvirt.host: Invalid value: "qemu:///system": spec.provider.libvirt.host in body should match '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'"#,
            r#"spec.provider.libvirt: Invalid value: "object": exactly one of network or bridge must be set"#,
        ]
    );
}

#[test]
fn unknown_fields_are_pruned_and_reported() {
    let schema = machine_schema();
    let mut spec = manual();
    spec["powerState"] = json!("on");
    spec["interfaces"][0]["vlan"] = json!(12);
    let mut object = machine(spec);
    let admission = schema.admit(&mut object, None);
    assert_eq!(admission.pruned, ["spec.interfaces[0].vlan", "spec.powerState"]);
    assert!(admission.is_valid());
    assert!(object["spec"].get("powerState").is_none());
}

#[test]
fn two_providers_fail_the_provider_rule() {
    let schema = machine_schema();
    let mut spec = manual();
    spec["provider"]["bmc"] =
        json!({"address": "https://10.0.0.5", "driver": "redfish", "credentialsSecretRef": {"name": "bmc"}});
    let mut object = machine(spec);
    let admission = schema.admit(&mut object, None);
    assert_eq!(admission.errors.len(), 1, "{:?}", messages(&admission));
    let error = &admission.errors[0];
    assert_eq!(error.field, "spec.provider");
    assert_eq!(error.detail, "exactly one of provider.libvirt, provider.bmc or provider.manual must be set");
    assert_eq!(error.reason(), "FieldValueInvalid");
    assert_eq!(
        error.message(),
        r#"spec.provider: Invalid value: "object": exactly one of provider.libvirt, provider.bmc or provider.manual must be set"#
    );
    // The bmc defaults were applied too.
    assert_eq!(object["spec"]["provider"]["bmc"]["insecureSkipVerify"], false);
}

#[test]
fn interface_rules() {
    let schema = machine_schema();
    let mut spec = manual();
    spec["interfaces"] = json!([
        {"mac": "52:54:00:12:34:56", "boot": true},
        {"mac": "52:54:00:12:34:56"},
        {"mac": "52:54:00:AB:CD:EF", "boot": true},
        {"mac": "52:54:00:ab:cd:ef"},
    ]);
    let mut object = machine(spec);
    // A duplicate in a map list does not block the CEL rules.
    assert_eq!(
        messages(&schema.admit(&mut object, None)),
        [
            r#"spec.interfaces[1]: Duplicate value: {"mac":"52:54:00:12:34:56"}"#,
            r#"spec.interfaces: Invalid value: "array": interface MAC addresses must be unique"#,
            r#"spec.interfaces: Invalid value: "array": at most one interface may have boot: true"#,
        ]
    );
}

#[test]
fn schema_errors_block_cel() {
    let schema = machine_schema();
    let mut spec = manual();
    spec["interfaces"][0]["mac"] = json!("zz");
    spec["onSuccess"] = json!("explode");
    spec["provider"]["bmc"] =
        json!({"address": "10.0.0.5:623", "driver": "ipmi", "credentialsSecretRef": {"name": "bmc"}});
    let mut object = machine(spec);
    assert_eq!(
        messages(&schema.admit(&mut object, None)),
        [
            r#"spec.interfaces[0].mac: Invalid value: "zz": spec.interfaces[0].mac in body should match '^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$'"#,
            r#"spec.onSuccess: Unsupported value: "explode": supported values: "reboot", "kexec", "halt", "console""#,
            "<nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
        ]
    );
}

#[test]
fn status_updates() {
    let schema = machine_schema();
    let mut stored = machine(manual());
    assert!(schema.admit(&mut stored, None).is_valid());
    let mut object = stored.clone();
    object["status"] = json!({"phase": "Ready", "allocation": {"cmdb": "lab", "entry": 1, "variables": {"ip": "10.0.0.9", "bad-name": "x"}}});
    let admission = schema.admit_status(&mut object, &stored);
    assert_eq!(
        messages(&admission),
        [r#"status.allocation.variables: Invalid value: "object": variable names are letters, digits and underscores"#]
    );
}
