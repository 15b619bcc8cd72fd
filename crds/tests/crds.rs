//! The generated CRDs have what people and the API server need, and the committed manifests and
//! reference match what the code generates.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic

mod support;

use machinist_crds::{all_crds, generated};
use serde_json::Value;

fn crds_json() -> Vec<Value> {
    all_crds().iter().map(|crd| serde_json::to_value(crd).unwrap()).collect()
}

#[test]
fn every_kind_has_names_category_status_and_columns() {
    let expected = [
        ("Machine", "mach", &["Phase", "Profile", "IP", "Hostname", "Role", "Age"][..]),
        ("HardwareProfile", "hwp", &["Priority", "Bound", "Max", "Role", "Age"][..]),
        ("Cmdb", "cmdb", &["Entries", "Free", "Age"][..]),
        ("Role", "role", &["Version", "Method", "Age"][..]),
        ("LoadBalancerBackend", "lbb", &["Frontend", "Port", "Ready", "Total", "Age"][..]),
        ("Hypervisor", "hv", &["Reachable", "Accelerator", "Memory", "Committed", "VMs", "Age"][..]),
    ];
    let crds = crds_json();
    assert_eq!(crds.len(), expected.len());
    for (crd, (kind, short, columns)) in crds.iter().zip(expected) {
        let names = &crd["spec"]["names"];
        assert_eq!(names["kind"], kind);
        assert_eq!(crd["spec"]["group"], "machinist.dev");
        assert_eq!(crd["spec"]["scope"], "Namespaced");
        assert_eq!(names["shortNames"], serde_json::json!([short]), "{kind}");
        assert_eq!(names["categories"], serde_json::json!(["machinist"]), "{kind}");
        let version = &crd["spec"]["versions"][0];
        assert_eq!(version["name"], "v1alpha1");
        assert_eq!(version["subresources"]["status"], serde_json::json!({}), "{kind} has a status subresource");
        let shown: Vec<&str> = version["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["priority"].as_i64().unwrap_or(0) == 0)
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(shown, columns, "{kind} printer columns");
    }
}

/// Calls `check` on every schema node with its path.
fn visit(schema: &Value, path: &str, check: &mut impl FnMut(&str, &Value)) {
    check(path, schema);
    if let Some(properties) = schema["properties"].as_object() {
        for (name, child) in properties {
            visit(child, &format!("{path}.{name}"), check);
        }
    }
    if schema["items"].is_object() {
        visit(&schema["items"], &format!("{path}[]"), check);
    }
    if schema["additionalProperties"].is_object() {
        visit(&schema["additionalProperties"], &format!("{path}.<key>"), check);
    }
}

#[test]
fn every_field_has_a_description() {
    let mut undocumented = Vec::new();
    for crd in crds_json() {
        let kind = crd["spec"]["names"]["kind"].as_str().unwrap().to_owned();
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        for section in ["spec", "status"] {
            visit(&schema["properties"][section], &format!("{kind}.{section}"), &mut |path, node| {
                if let Some(properties) = node["properties"].as_object() {
                    for (name, child) in properties {
                        if child["description"].as_str().is_none_or(str::is_empty) {
                            undocumented.push(format!("{path}.{name}"));
                        }
                    }
                }
            });
        }
    }
    assert!(undocumented.is_empty(), "fields without a description (kubectl explain shows nothing): {undocumented:#?}");
}

/// The API server accepts only structural schemas: every node typed, no references, and
/// logical junctors without types or defaults.
#[test]
fn schemas_are_structural() {
    let mut problems = Vec::new();
    for crd in crds_json() {
        let kind = crd["spec"]["names"]["kind"].as_str().unwrap().to_owned();
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        visit(schema, &kind, &mut |path, node| {
            let preserves = node["x-kubernetes-preserve-unknown-fields"] == true;
            let int_or_string = node["x-kubernetes-int-or-string"] == true;
            if node["type"].as_str().is_none() && !preserves && !int_or_string {
                problems.push(format!("{path}: no type"));
            }
            for forbidden in ["$ref", "definitions", "$defs", "$schema"] {
                if node.get(forbidden).is_some() {
                    problems.push(format!("{path}: {forbidden}"));
                }
            }
            for junctor in ["allOf", "anyOf", "oneOf", "not"] {
                let branches = match &node[junctor] {
                    Value::Array(items) => items.clone(),
                    Value::Null => Vec::new(),
                    other => vec![other.clone()],
                };
                for branch in branches {
                    for key in ["type", "default", "description", "nullable", "properties"] {
                        if branch.get(key).is_some() && !(key == "properties" && only_validations(&branch[key])) {
                            problems.push(format!("{path}: {junctor} branch has {key}"));
                        }
                    }
                }
            }
            if node["type"] == "array" && !node["items"].is_object() {
                problems.push(format!("{path}: array without items"));
            }
        });
    }
    assert!(problems.is_empty(), "non-structural schema nodes: {problems:#?}");
}

fn only_validations(properties: &Value) -> bool {
    properties.as_object().is_some_and(|p| p.values().all(|v| v.get("type").is_none()))
}

#[test]
fn enums_are_plain_string_enums() {
    // kubectl explain and the API server show enums from `enum`; a oneOf of consts would hide them.
    let machine = &crds_json()[0];
    let phase =
        &machine["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["phase"];
    let values: Vec<&str> = phase["enum"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(
        values,
        [
            "Registered",
            "Inspecting",
            "Matched",
            "Allocated",
            "Provisioning",
            "Provisioned",
            "Ready",
            "Deprovisioning",
            "Failed"
        ]
    );
}

#[test]
fn committed_generated_files_match_the_code() {
    let drifts = generated::drift(&support::repo_root()).unwrap();
    assert!(
        drifts.is_empty(),
        "generated files are stale; run `cargo run -p machinist -- crds generate`:\n{}",
        drifts.iter().map(|d| format!("{}: {}", d.path.display(), d.detail)).collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn drift_is_detected() {
    let dir = std::env::temp_dir().join(format!("machinist-drift-{}", std::process::id()));
    for file in generated::files().unwrap() {
        let path = dir.join(&file.path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &file.contents).unwrap();
    }
    assert_eq!(generated::drift(&dir).unwrap(), vec![]);

    let edited = dir.join("crds/manifests/machines.yaml");
    let text = std::fs::read_to_string(&edited).unwrap().replace("name: Phase", "name: State");
    std::fs::write(&edited, text).unwrap();
    std::fs::remove_file(dir.join("docs/reference/cmdb.md")).unwrap();
    std::fs::write(dir.join("charts/machinist/crds/virtualmachines.yaml"), "kind: CustomResourceDefinition\n").unwrap();
    let drifted: Vec<String> =
        generated::drift(&dir).unwrap().into_iter().map(|d| format!("{}: {}", d.path.display(), d.detail)).collect();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(drifted.len(), 3, "{drifted:?}");
    assert!(drifted[0].starts_with("charts/machinist/crds/virtualmachines.yaml: not generated"), "{drifted:?}");
    assert!(drifted[1].starts_with("crds/manifests/machines.yaml: differs from line"), "{drifted:?}");
    assert_eq!(drifted[2], "docs/reference/cmdb.md: missing");
}

#[test]
fn manifests_parse_back_into_the_same_crds() {
    for crd in all_crds() {
        let yaml = generated::crd_yaml(&crd).unwrap();
        let parsed: Value = machinist_crds::manifest::parse_documents(&yaml).unwrap().remove(0);
        assert_eq!(parsed, normalized(serde_json::to_value(&crd).unwrap()), "{:?}", crd.metadata.name);
    }
}

/// Integral floats (schema bounds) are written as integers.
fn normalized(value: Value) -> Value {
    match value {
        Value::Number(n) if n.is_f64() && n.as_f64().unwrap().fract() == 0.0 => Value::from(n.as_f64().unwrap() as i64),
        Value::Array(items) => Value::Array(items.into_iter().map(normalized).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, normalized(v))).collect()),
        other => other,
    }
}
