//! The machinist CRDs through the server's registry, OpenAPI documents and Tables: what
//! `machinist up` serves (it hands the server `machinist_crds::all_crds()`), checked on the
//! real CRDs rather than the generic ones of the unit tests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic

use machinist_apiserver::http::openapi::{documents, index};
use machinist_apiserver::http::table::{Include, render};
use machinist_apiserver::semantics::registry::{Builtin, Registry};
use serde_json::{Value, json};

fn registry() -> Registry {
    let crds: Vec<Value> = machinist_crds::all_crds().iter().map(|c| serde_json::to_value(c).unwrap()).collect();
    Registry::with_crds(&crds)
}

#[test]
fn machinist_crds_are_served_with_their_names() {
    let registry = registry();
    let machines = registry.find("machinist.dev", "v1alpha1", "machines").unwrap();
    assert_eq!(machines.kind, "Machine");
    assert!(machines.namespaced && machines.status);
    assert_eq!(machines.short_names, ["mach"]);
    assert_eq!(machines.categories, ["machinist"]);
    assert!(machines.field_selectable("status.phase"));
    assert!(!machines.field_selectable("spec.online"));
    assert!(registry.find("machinist.dev", "v1", "machines").is_none());
    assert!(registry.groups().iter().any(|(g, v)| g == "machinist.dev" && v == &["v1alpha1"]));
    assert_eq!(registry.find("", "v1", "namespaces").unwrap().builtin, Some(Builtin::Namespace));
}

#[test]
fn machinist_documents_carry_schemas_and_patch_operations() {
    let documents = documents(&registry());
    let machinist = &documents["apis/machinist.dev/v1alpha1"];
    let machine = &machinist["components"]["schemas"]["dev.machinist.v1alpha1.Machine"];
    assert_eq!(machine["x-kubernetes-group-version-kind"][0]["kind"], "Machine");
    assert!(
        machine["properties"]["spec"]["properties"]["provider"]["description"]
            .as_str()
            .unwrap()
            .contains("exactly one")
    );
    assert!(machinist["components"]["schemas"].get("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta").is_some());
    let patch = &machinist["paths"]["/apis/machinist.dev/v1alpha1/namespaces/{namespace}/machines/{name}"]["patch"];
    assert!(patch["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "fieldValidation"));
    let core = &documents["api/v1"];
    assert_eq!(
        core["components"]["schemas"]["io.k8s.api.core.v1.Namespace"]["x-kubernetes-group-version-kind"][0]["kind"],
        "Namespace"
    );
    let index = index(&documents);
    assert!(
        index["paths"]["apis/machinist.dev/v1alpha1"]["serverRelativeURL"]
            .as_str()
            .unwrap()
            .starts_with("/openapi/v3/apis/machinist.dev/v1alpha1?hash=")
    );
}

#[test]
fn machines_get_their_printer_columns() {
    let registry = registry();
    let machines = registry.find("machinist.dev", "v1alpha1", "machines").unwrap();
    let machine = json!({"metadata": {"name": "m1", "creationTimestamp": "2020-01-01T00:00:00Z"}, "spec": {"interfaces": [{"mac": "52:54:00:00:00:01"}]}, "status": {"phase": "Ready", "ip": "10.0.0.5"}});
    let table = render(&machines, "v1alpha1", &[machine], Include::Metadata, json!({}));
    let names: Vec<&str> =
        table["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Name", "Phase", "Profile", "IP", "Hostname", "Role", "Age", "MAC", "CPUs", "Memory"]);
    let cells = &table["rows"][0]["cells"];
    assert_eq!(
        (cells[0].as_str(), cells[1].as_str(), cells[3].as_str(), cells[7].as_str()),
        (Some("m1"), Some("Ready"), Some("10.0.0.5"), Some("52:54:00:00:00:01"))
    );
    assert!(cells[2].is_null());
    assert!(cells[6].as_str().unwrap().contains('y'), "{}", cells[6]);
    assert_eq!(table["rows"][0]["object"]["kind"], "PartialObjectMetadata");
}

/// Every CEL rule of the machinist CRDs within Kubernetes' cost limits, as the API server
/// estimates them (`--nocapture` prints the figures): a real cluster accepts the CRDs.
#[test]
fn machinist_crd_rules_are_within_the_cost_limits() {
    use machinist_apiserver_schema::{STATIC_ESTIMATED_COST_LIMIT, STATIC_ESTIMATED_CRD_COST_LIMIT, Schema};
    let mut over = Vec::new();
    for crd in machinist_crds::all_crds() {
        let name = crd.metadata.name.clone().unwrap();
        for (i, version) in crd.spec.versions.iter().enumerate() {
            let schema =
                serde_json::to_value(version.schema.as_ref().unwrap().open_api_v3_schema.as_ref().unwrap()).unwrap();
            let compiled = Schema::compile_at(&schema, &format!("spec.versions[{i}].schema.openAPIV3Schema")).unwrap();
            let report = compiled.estimated_costs();
            println!("{name} {}: total {} (limit {STATIC_ESTIMATED_CRD_COST_LIMIT})", version.name, report.total);
            for e in &report.expressions {
                println!("  {} × {} = {}  {}  {}", e.cost, e.cardinality, e.total, e.path, e.expression);
                if e.total > STATIC_ESTIMATED_COST_LIMIT {
                    over.push(format!("{name}: {} costs {}", e.path, e.total));
                }
            }
            if report.total > STATIC_ESTIMATED_CRD_COST_LIMIT {
                over.push(format!("{name}: the rules cost {} together", report.total));
            }
            over.extend(compiled.cost_errors(true).iter().map(|e| e.message()));
        }
    }
    assert!(over.is_empty(), "over the limits:\n{}", over.join("\n"));
}
