//! The CRDs a caller hands the server are installed at start: none by default, updated when a
//! newer caller changes them, and left alone (no new revision) when unchanged.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic

mod support;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use serde_json::json;
use support::client_for;

fn gadget_crd(short_names: &[&str]) -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.example.com"},
        "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget", "shortNames": short_names},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}
            }]
        }
    }))
    .unwrap()
}

async fn start(home: &std::path::Path, crds: Vec<CustomResourceDefinition>) -> machinist_apiserver::Running {
    let config = machinist_apiserver::Config { crds, ..support::config(home) };
    machinist_apiserver::start(config).await.unwrap()
}

#[tokio::test]
async fn without_crds_only_the_built_in_kinds_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let config = machinist_apiserver::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..machinist_apiserver::Config::new(dir.path())
    };
    assert!(config.crds.is_empty());
    let running = machinist_apiserver::start(config).await.unwrap();
    let client = client_for(&running.kubeconfig).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    assert!(crds.list(&ListParams::default()).await.unwrap().items.is_empty());
    let namespaces: Api<Namespace> = Api::all(client);
    let names: Vec<String> =
        namespaces.list(&ListParams::default()).await.unwrap().items.iter().map(|n| n.name_any()).collect();
    assert_eq!(names, ["default", "kube-node-lease", "kube-public", "kube-system"]);
    running.stop().await;
}

#[tokio::test]
async fn given_crds_are_installed_updated_when_changed_and_left_alone_when_not() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path(), vec![gadget_crd(&["gd"])]).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client_for(&running.kubeconfig).await);
    let first = crds.get("gadgets.example.com").await.unwrap();
    assert_eq!(first.spec.names.short_names.as_deref(), Some(&["gd".to_owned()][..]));
    assert_eq!(first.managed_fields().first().and_then(|m| m.manager.as_deref()), Some("machinist"));
    running.stop().await;

    // The same CRDs again: nothing written.
    let running = start(dir.path(), vec![gadget_crd(&["gd"])]).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client_for(&running.kubeconfig).await);
    let unchanged = crds.get("gadgets.example.com").await.unwrap();
    assert_eq!(unchanged.resource_version(), first.resource_version());
    running.stop().await;

    // A newer caller's CRD replaces it.
    let running = start(dir.path(), vec![gadget_crd(&["gd", "gdt"])]).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client_for(&running.kubeconfig).await);
    let updated = crds.get("gadgets.example.com").await.unwrap();
    assert_ne!(updated.resource_version(), first.resource_version());
    assert_eq!(updated.spec.names.short_names.as_deref(), Some(&["gd".to_owned(), "gdt".to_owned()][..]));
    running.stop().await;
}
