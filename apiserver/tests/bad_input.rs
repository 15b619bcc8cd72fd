//! Bad input gets the right status code and a clear message, and loses nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic

mod support;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};
use support::{TestServer, raw};

const MACHINES: &str = "/apis/machinist.dev/v1alpha1/namespaces/default/machines";

fn machine(name: &str) -> Value {
    json!({
        "apiVersion": "machinist.dev/v1alpha1", "kind": "Machine",
        "metadata": {"name": name},
        "spec": {"interfaces": [{"mac": "52:54:00:00:00:01"}], "provider": {"manual": {}}}
    })
}

fn body(value: &Value) -> Vec<u8> {
    value.to_string().into_bytes()
}

fn message(status: &Value) -> String {
    status["message"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn requests_without_the_right_token_are_unauthorized() {
    let server = TestServer::start().await;
    for client in [server.client_with_token(None).await, server.client_with_token(Some("not-the-token")).await] {
        let (code, status) = raw(&client, "GET", "/api/v1/namespaces", "application/json", Vec::new()).await;
        assert_eq!((code, status["reason"].as_str()), (401, Some("Unauthorized")));
        let (code, _) = raw(&client, "POST", MACHINES, "application/json", body(&machine("m1"))).await;
        assert_eq!(code, 401);
    }
    // Nothing was written.
    let (code, list) = raw(&server.client, "GET", MACHINES, "application/json", Vec::new()).await;
    assert_eq!((code, list["items"].as_array().map(Vec::len)), (200, Some(0)));
    // Health endpoints answer without credentials, as probes need.
    let (code, _) = raw(&server.client_with_token(None).await, "GET", "/readyz", "application/json", Vec::new()).await;
    assert_eq!(code, 200);
    server.stop().await;
}

#[tokio::test]
async fn malformed_bodies_are_bad_requests() {
    let server = TestServer::start().await;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("application/json", b"{\"apiVersion\": ".to_vec(), "not valid JSON"),
        ("application/yaml", b"kind: [unclosed\n".to_vec(), "not valid YAML"),
        ("application/json", b"[1, 2]".to_vec(), "must be a JSON or YAML object"),
        ("application/json", vec![0xff, 0xfe], "not UTF-8"),
        ("text/plain", b"hello".to_vec(), "unknown format"),
    ];
    for (content_type, payload, expected) in cases {
        let (code, status) = raw(&server.client, "POST", MACHINES, content_type, payload).await;
        assert!(matches!(code, 400 | 415), "{content_type}: {code} {status}");
        assert!(message(&status).contains(expected), "{content_type}: {status}");
    }
    let (code, status) = raw(
        &server.client,
        "POST",
        MACHINES,
        "application/json",
        body(&json!({"apiVersion": "v1", "kind": "Machine", "metadata": {"name": "x"}})),
    )
    .await;
    assert_eq!(code, 400);
    assert!(message(&status).contains("does not match the expected API version"), "{status}");
    server.stop().await;
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let server = TestServer::start_with(|config| config.limits.max_body_bytes = 64 * 1024).await;
    let mut huge = machine("huge");
    huge["metadata"]["annotations"] = json!({"blob": "x".repeat(100 * 1024)});
    let (code, status) = raw(&server.client, "POST", MACHINES, "application/json", body(&huge)).await;
    assert_eq!((code, status["reason"].as_str()), (413, Some("RequestEntityTooLarge")), "{status}");
    server.stop().await;
}

#[tokio::test]
async fn invalid_names_and_stale_versions() {
    let server = TestServer::start().await;
    let (code, status) = raw(&server.client, "POST", MACHINES, "application/json", body(&machine("Not_A_Name"))).await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(status["details"]["causes"][0]["field"], "metadata.name");
    assert!(message(&status).contains("RFC 1123 subdomain"), "{status}");

    let (code, _) = raw(&server.client, "POST", MACHINES, "application/json", body(&machine("m1"))).await;
    assert_eq!(code, 201);
    let (code, status) = raw(&server.client, "POST", MACHINES, "application/json", body(&machine("m1"))).await;
    assert_eq!((code, status["reason"].as_str()), (409, Some("AlreadyExists")));

    let mut stale = machine("m1");
    stale["metadata"]["resourceVersion"] = json!("1");
    let (code, status) = raw(&server.client, "PUT", &format!("{MACHINES}/m1"), "application/json", body(&stale)).await;
    assert_eq!((code, status["reason"].as_str()), (409, Some("Conflict")), "{status}");
    assert!(message(&status).contains("the object has been modified"));

    let (code, status) =
        raw(&server.client, "PUT", &format!("{MACHINES}/m1"), "application/json", body(&machine("m1"))).await;
    assert_eq!(code, 422, "an update of a custom resource needs a resourceVersion: {status}");

    let (code, status) =
        raw(&server.client, "GET", &format!("{MACHINES}/absent"), "application/json", Vec::new()).await;
    assert_eq!((code, message(&status).as_str()), (404, "machines.machinist.dev \"absent\" not found"));

    let (code, status) = raw(
        &server.client,
        "POST",
        "/apis/machinist.dev/v1alpha1/namespaces/nowhere/machines",
        "application/json",
        body(&machine("m2")),
    )
    .await;
    assert_eq!((code, message(&status).as_str()), (404, "namespaces \"nowhere\" not found"));

    let (code, _) = raw(&server.client, "GET", "/apis/machinist.dev/v9/machines", "application/json", Vec::new()).await;
    assert_eq!(code, 404);
    let (code, status) =
        raw(&server.client, "GET", &format!("{MACHINES}?labelSelector=a%20in%20b"), "application/json", Vec::new())
            .await;
    assert_eq!(code, 400, "{status}");
    let (code, status) = raw(
        &server.client,
        "GET",
        &format!("{MACHINES}?fieldSelector=spec.online%3Dtrue"),
        "application/json",
        Vec::new(),
    )
    .await;
    assert_eq!(code, 400, "{status}");
    assert!(message(&status).contains("field label not supported: spec.online"));

    // The stored object is intact after all of that.
    let (code, stored) = raw(&server.client, "GET", &format!("{MACHINES}/m1"), "application/json", Vec::new()).await;
    assert_eq!((code, stored["spec"]["interfaces"][0]["mac"].as_str()), (200, Some("52:54:00:00:00:01")));
    server.stop().await;
}

#[tokio::test]
async fn schema_violations_are_invalid_with_field_causes() {
    let server = TestServer::start().await;
    let cases = [
        ("/spec/interfaces/0/mac", json!("52:54"), "spec.interfaces[0].mac"),
        (
            "/spec/provider/libvirt",
            json!({"host": "hv1", "pool": "p", "diskGiB": "big", "memoryMiB": 512, "vcpus": 1, "network": "n"}),
            "spec.provider.libvirt.diskGiB",
        ),
        ("/spec/onSuccess", json!("explode"), "spec.onSuccess"),
        // Only a libvirt machine may leave its interfaces out (a rule on the spec).
        ("/spec/interfaces", json!([]), "spec"),
    ];
    for (pointer, value, field) in cases {
        let mut object = machine("bad");
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        object.pointer_mut(parent).unwrap()[key] = value;
        let (code, status) = raw(&server.client, "POST", MACHINES, "application/json", body(&object)).await;
        assert_eq!(code, 422, "{pointer}: {status}");
        let fields: Vec<&str> =
            status["details"]["causes"].as_array().unwrap().iter().filter_map(|c| c["field"].as_str()).collect();
        assert!(fields.contains(&field), "{pointer}: {status}");
    }
    // Missing required field.
    let mut object = machine("bad");
    object["spec"].as_object_mut().unwrap().remove("provider");
    let (code, status) = raw(&server.client, "POST", MACHINES, "application/json", body(&object)).await;
    assert_eq!(code, 422, "{status}");
    assert!(message(&status).contains("spec.provider: Required value"), "{status}");
    // CEL rule.
    let mut object = machine("bad");
    object["spec"]["provider"]["bmc"] =
        json!({"driver": "ipmi", "address": "10.0.0.1", "credentialsSecretRef": {"name": "s"}});
    let (code, status) = raw(&server.client, "POST", MACHINES, "application/json", body(&object)).await;
    assert_eq!(code, 422, "{status}");
    assert!(message(&status).contains("exactly one of provider.libvirt, provider.bmc or provider.manual"), "{status}");
    // Unknown fields: rejected under strict validation, pruned with a warning otherwise.
    let mut object = machine("typo");
    object["spec"]["onlin"] = json!(true);
    let (code, status) =
        raw(&server.client, "POST", &format!("{MACHINES}?fieldValidation=Strict"), "application/json", body(&object))
            .await;
    assert_eq!(code, 400, "{status}");
    assert!(message(&status).contains("unknown field \"spec.onlin\""), "{status}");
    let (code, created) = raw(&server.client, "POST", MACHINES, "application/json", body(&object)).await;
    assert_eq!(code, 201, "{created}");
    assert!(created["spec"].get("onlin").is_none());
    assert_eq!(created["spec"]["online"], true, "defaults are applied");
    server.stop().await;
}

#[tokio::test]
async fn secrets_reject_bad_data_and_fold_string_data() {
    let server = TestServer::start().await;
    let secrets = "/api/v1/namespaces/default/secrets";
    let bad =
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"password": "not base64!"}});
    let (code, status) = raw(&server.client, "POST", secrets, "application/json", body(&bad)).await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(status["details"]["causes"][0]["field"], "data[password]");
    let good =
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"password": "hunter2"}});
    let (code, created) = raw(&server.client, "POST", secrets, "application/json", body(&good)).await;
    assert_eq!(
        (code, created["data"]["password"].as_str(), created.get("stringData")),
        (201, Some("aHVudGVyMg=="), None)
    );
    // A ConfigMap through kube's typed API still works after the failures.
    let maps: Api<ConfigMap> = Api::default_namespaced(server.client.clone());
    maps.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "ok"}})).unwrap())
        .await
        .unwrap();
    server.stop().await;
}
