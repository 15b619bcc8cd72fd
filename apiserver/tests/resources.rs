//! Any CRD is served at once and gone with its objects when deleted; the scale subresource;
//! Events seen through both APIs; Leases as leader election uses them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic

mod support;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Event as CoreEvent;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::wait::conditions;
use kube::{Api, ResourceExt};
use serde_json::json;
use support::{TestServer, raw, wait_for};

fn widget_crd() -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"replicas": {"type": "integer", "minimum": 0}, "size": {"type": "string", "default": "small"}}},
                    "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}}
                }}}
            }]
        }
    }))
    .unwrap()
}

#[tokio::test]
async fn a_crd_is_served_at_once_and_removed_with_its_objects() {
    let server = TestServer::start().await;
    let crds: Api<CustomResourceDefinition> = Api::all(server.client.clone());
    let crd = crds.create(&PostParams::default(), &widget_crd()).await.unwrap();
    let established = crd
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Established" && c.status == "True"));
    assert!(established, "{:?}", crd.status);

    let resource = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("example.com", "v1", "Widget"), "widgets");
    let widgets: Api<DynamicObject> = Api::namespaced_with(server.client.clone(), "default", &resource);
    let widget: DynamicObject = serde_json::from_value(
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"}, "spec": {"replicas": 1}}),
    )
    .unwrap();
    let created = widgets.create(&PostParams::default(), &widget).await.unwrap();
    assert_eq!(created.data["spec"]["size"], "small", "defaults from the CRD's schema");

    // Scale subresource.
    let (code, scale) = raw(
        &server.client,
        "GET",
        "/apis/example.com/v1/namespaces/default/widgets/w1/scale",
        "application/json",
        Vec::new(),
    )
    .await;
    assert_eq!((code, scale["kind"].as_str(), scale["spec"]["replicas"].as_i64()), (200, Some("Scale"), Some(1)));
    let (code, scaled) = raw(
        &server.client,
        "PATCH",
        "/apis/example.com/v1/namespaces/default/widgets/w1/scale",
        "application/merge-patch+json",
        br#"{"spec":{"replicas":3}}"#.to_vec(),
    )
    .await;
    assert_eq!((code, scaled["spec"]["replicas"].as_i64()), (200, Some(3)));
    assert_eq!(widgets.get("w1").await.unwrap().data["spec"]["replicas"], 3);

    // Deleting the CRD takes the resource and its objects away.
    crds.delete("widgets.example.com", &DeleteParams::default()).await.unwrap();
    wait_for(&crds, "widgets.example.com", conditions::is_deleted(&crd.uid().unwrap())).await;
    let (code, _) =
        raw(&server.client, "GET", "/apis/example.com/v1/namespaces/default/widgets", "application/json", Vec::new())
            .await;
    assert_eq!(code, 404);
    crds.create(&PostParams::default(), &widget_crd()).await.unwrap();
    assert!(
        widgets.list(&ListParams::default()).await.unwrap().items.is_empty(),
        "objects of a deleted CRD do not come back"
    );

    // A CRD that cannot be served is refused with its reasons.
    let mut bad = widget_crd();
    bad.metadata.name = Some("gadgets.example.com".into());
    bad.spec.names.plural = "Gadgets".into();
    let error = crds.create(&PostParams::default(), &bad).await.unwrap_err();
    assert!(
        matches!(error, kube::Error::Api(ref s) if s.code == 422 && s.message.contains("spec.names.plural")),
        "{error:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn events_written_through_either_api_are_seen_through_both() {
    let server = TestServer::start().await;
    let events: Api<Event> = Api::default_namespaced(server.client.clone());
    let event: Event = serde_json::from_value(json!({
        "metadata": {"name": "m1.matched"},
        "eventTime": "2026-11-21T10:00:00.000000Z",
        "reportingController": "machinist.dev/operator", "reportingInstance": "operator-0",
        "action": "Bind", "reason": "Matched", "type": "Normal", "note": "bound to profile vm",
        "regarding": {"apiVersion": "machinist.dev/v1alpha1", "kind": "Machine", "name": "m1", "namespace": "default", "uid": "u-1"}
    }))
    .unwrap();
    events.create(&PostParams::default(), &event).await.unwrap();
    let core: Api<CoreEvent> = Api::default_namespaced(server.client.clone());
    let seen =
        core.list(&ListParams::default().fields("involvedObject.name=m1,involvedObject.kind=Machine")).await.unwrap();
    assert_eq!(seen.items.len(), 1);
    let first = &seen.items[0];
    assert_eq!((first.reason.as_deref(), first.message.as_deref()), (Some("Matched"), Some("bound to profile vm")));
    assert_eq!(first.source.as_ref().and_then(|s| s.component.as_deref()), Some("machinist.dev/operator"));
    let back = events.get("m1.matched").await.unwrap();
    assert_eq!(back.note.as_deref(), Some("bound to profile vm"));
    assert_eq!(back.regarding.and_then(|r| r.name).as_deref(), Some("m1"));
    server.stop().await;
}

#[tokio::test]
async fn leases_work_as_leader_election_uses_them() {
    let server = TestServer::start().await;
    let leases: Api<Lease> = Api::namespaced(server.client.clone(), "kube-system");
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "machinist-operator"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15, "acquireTime": "2026-11-21T10:00:00.000000Z", "renewTime": "2026-11-21T10:00:00.000000Z", "leaseTransitions": 0}
    }))
    .unwrap();
    let held = leases.create(&PostParams::default(), &lease).await.unwrap();
    // Two candidates race to take it over from the same version: exactly one wins.
    let take = |holder: &str| {
        let mut next = held.clone();
        next.spec.as_mut().unwrap().holder_identity = Some(holder.into());
        next.spec.as_mut().unwrap().lease_transitions = Some(1);
        let leases = leases.clone();
        async move { leases.replace("machinist-operator", &PostParams::default(), &next).await }
    };
    let (b, c) = tokio::join!(take("b"), take("c"));
    assert_eq!(u8::from(b.is_ok()) + u8::from(c.is_ok()), 1, "one replace wins, the other conflicts");
    let renewed = leases
        .patch("machinist-operator", &PatchParams::apply("elector").force(), &Patch::Apply(json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "spec": {"renewTime": "2026-11-21T10:00:05.000000Z"}
        })))
        .await
        .unwrap();
    assert_eq!(renewed.spec.unwrap().lease_transitions, Some(1));
    server.stop().await;
}

fn gizmo_crd(finalizers: &[&str]) -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gizmos.example.com", "finalizers": finalizers},
        "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"plural": "gizmos", "singular": "gizmo", "kind": "Gizmo"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}
            }]
        }
    }))
    .unwrap()
}

fn gizmos(server: &TestServer) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("example.com", "v1", "Gizmo"), "gizmos");
    Api::namespaced_with(server.client.clone(), "default", &resource)
}

fn gizmo(name: &str, finalizers: &[&str]) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Gizmo",
        "metadata": {"name": name, "finalizers": finalizers}, "spec": {"size": 1}
    }))
    .unwrap()
}

fn terminating_condition(crd: &CustomResourceDefinition) -> Option<(String, String)> {
    let conditions = crd.status.as_ref()?.conditions.as_ref()?;
    let condition = conditions.iter().find(|c| c.type_ == "Terminating")?;
    Some((condition.status.clone(), condition.reason.clone().unwrap_or_default()))
}

/// Deleting a CRD deletes its instances the normal way, as Kubernetes' `customresourcecleanup`
/// finalizer does: an instance with a finalizer waits for its controller, the CRD waits for its
/// instances (Terminating, refusing new ones), and only then the kind goes.
#[tokio::test]
async fn deleting_a_crd_lets_its_instances_finalizers_run_first() {
    let server = TestServer::start().await;
    let crds: Api<CustomResourceDefinition> = Api::all(server.client.clone());
    let crd = crds.create(&PostParams::default(), &gizmo_crd(&[])).await.unwrap();
    let gizmos = gizmos(&server);
    let held = gizmos.create(&PostParams::default(), &gizmo("held", &["example.com/cleanup"])).await.unwrap();
    let free = gizmos.create(&PostParams::default(), &gizmo("free", &[])).await.unwrap();

    crds.delete("gizmos.example.com", &DeleteParams::default()).await.unwrap();
    // The instance without a finalizer goes; the one with a finalizer is marked and stays.
    wait_for(&gizmos, "free", conditions::is_deleted(&free.uid().unwrap())).await;
    let marked = wait_for(&gizmos, "held", |g: Option<&DynamicObject>| {
        g.is_some_and(|g| g.metadata.deletion_timestamp.is_some())
    })
    .await
    .unwrap();
    assert_eq!(marked.finalizers(), ["example.com/cleanup"]);
    // The CRD waits for it, Terminating.
    let terminating = wait_for(&crds, "gizmos.example.com", |c: Option<&CustomResourceDefinition>| {
        c.and_then(terminating_condition).is_some_and(|(_, reason)| reason == "InstanceDeletionInProgress")
    })
    .await
    .unwrap();
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert_eq!(terminating.finalizers(), ["customresourcecleanup.apiextensions.k8s.io"]);
    assert_eq!(terminating_condition(&terminating).unwrap().0, "True");
    assert!(gizmos.get("held").await.is_ok(), "the instance is still served while its finalizer runs");

    // No new instance while terminating, by create or by apply.
    for error in [
        gizmos.create(&PostParams::default(), &gizmo("late", &[])).await.unwrap_err(),
        gizmos.patch("late", &PatchParams::apply("test").force(), &Patch::Apply(gizmo("late", &[]))).await.unwrap_err(),
    ] {
        assert!(
            matches!(&error, kube::Error::Api(s) if s.code == 403 && s.reason == "Forbidden"
                && s.message.ends_with("create not allowed while custom resource definition is terminating")),
            "{error:?}"
        );
    }

    // The instance's controller finishes: the instance goes, then the CRD and its kind.
    gizmos
        .patch("held", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}})))
        .await
        .unwrap();
    wait_for(&gizmos, "held", conditions::is_deleted(&held.uid().unwrap())).await;
    wait_for(&crds, "gizmos.example.com", conditions::is_deleted(&crd.uid().unwrap())).await;
    for path in
        ["/apis/example.com/v1/namespaces/default/gizmos", "/apis/example.com/v1/namespaces/default/gizmos/held"]
    {
        let (code, _) = raw(&server.client, "GET", path, "application/json", Vec::new()).await;
        assert_eq!(code, 404, "{path}");
    }
    let (code, _) = raw(&server.client, "GET", "/apis/example.com/v1", "application/json", Vec::new()).await;
    assert_eq!(code, 404, "discovery no longer lists the kind");
    server.stop().await;
}

/// A CRD kept by a finalizer of its own goes when that finalizer is removed: its kind is no
/// longer served and no instance of it is left in the store.
#[tokio::test]
async fn a_crd_kept_by_a_finalizer_takes_its_kind_when_the_finalizer_goes() {
    let server = TestServer::start().await;
    let crds: Api<CustomResourceDefinition> = Api::all(server.client.clone());
    let crd = crds.create(&PostParams::default(), &gizmo_crd(&["example.com/keep"])).await.unwrap();
    let gizmos = gizmos(&server);
    let instance = gizmos.create(&PostParams::default(), &gizmo("g1", &[])).await.unwrap();

    crds.delete("gizmos.example.com", &DeleteParams::default()).await.unwrap();
    wait_for(&gizmos, "g1", conditions::is_deleted(&instance.uid().unwrap())).await;
    // The server's own finalizer goes once no instance is left; the CRD's own one keeps it.
    let kept = wait_for(&crds, "gizmos.example.com", |c: Option<&CustomResourceDefinition>| {
        c.is_some_and(|c| c.finalizers() == ["example.com/keep"])
    })
    .await
    .unwrap();
    assert_eq!(
        terminating_condition(&kept),
        Some(("False".to_owned(), "InstanceDeletionCompleted".to_owned())),
        "{:?}",
        kept.status
    );

    crds.patch("gizmos.example.com", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}})))
        .await
        .unwrap();
    wait_for(&crds, "gizmos.example.com", conditions::is_deleted(&crd.uid().unwrap())).await;
    let (code, _) =
        raw(&server.client, "GET", "/apis/example.com/v1/namespaces/default/gizmos", "application/json", Vec::new())
            .await;
    assert_eq!(code, 404, "the kind is no longer served");
    let storage = machinist_apiserver::store::ResourceKey::new("example.com", "gizmos");
    assert!(server.running.api.store.list(&storage, None, None).1.is_empty());
    server.stop().await;
}

/// A CRD whose rule walks a list of maps: unbounded, as Kubernetes estimates it (over a
/// million maps of some 390,000 keys), it is refused with Kubernetes' messages; bounded (1,000
/// maps of 16 keys: 165,002), it is served.
#[tokio::test]
async fn crds_with_rules_over_the_cost_limits_are_refused() {
    let server = TestServer::start().await;
    let crds: Api<CustomResourceDefinition> = Api::all(server.client.clone());
    let crd = |entries_max: Option<i64>, keys_max: Option<i64>| -> CustomResourceDefinition {
        let mut values = json!({"type": "object", "additionalProperties": {"type": "string"}});
        if let Some(max) = keys_max {
            values["maxProperties"] = json!(max);
        }
        let mut entries = json!({"type": "array", "items": values, "x-kubernetes-validations": [
            {"rule": "self.all(e, e.all(k, k.matches('^[A-Za-z_][A-Za-z0-9_]*$')))"}
        ]});
        if let Some(max) = entries_max {
            entries["maxItems"] = json!(max);
        }
        serde_json::from_value(json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "pools.example.com"},
            "spec": {
                "group": "example.com", "scope": "Namespaced",
                "names": {"plural": "pools", "singular": "pool", "kind": "Pool"},
                "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                    "type": "object", "properties": {"spec": {"type": "object", "properties": {"entries": entries}}},
                }}}],
            },
        }))
        .unwrap()
    };
    let error = crds.create(&PostParams::default(), &crd(None, None)).await.unwrap_err();
    let kube::Error::Api(status) = error else { panic!("{error:?}") };
    let advice = "(try simplifying the rule, or adding maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)";
    let rule = "spec.validation.openAPIV3Schema.properties[spec].properties[entries].x-kubernetes-validations[0].rule";
    assert_eq!(status.code, 422);
    assert_eq!(
        status.message,
        format!(
            "CustomResourceDefinition.apiextensions.k8s.io \"pools.example.com\" is invalid: [\
             {rule}: Forbidden: estimated rule cost exceeds budget by factor of more than 100x {advice}, \
             {rule}: Forbidden: contributed to estimated rule cost total exceeding cost limit for entire OpenAPIv3 schema, \
             spec.validation.openAPIV3Schema: Forbidden: x-kubernetes-validations estimated rule cost total for entire OpenAPIv3 schema exceeds budget by factor of more than 100x {advice}]"
        )
    );
    crds.create(&PostParams::default(), &crd(Some(1000), Some(16))).await.unwrap();
    // Unbounding the maps again on update is refused too.
    let mut unbounded = crd(Some(1000), None);
    unbounded.metadata.resource_version = crds.get("pools.example.com").await.unwrap().metadata.resource_version;
    let error = crds.replace("pools.example.com", &PostParams::default(), &unbounded).await.unwrap_err();
    assert!(
        matches!(error, kube::Error::Api(ref s) if s.code == 422 && s.message.contains("estimated rule cost exceeds budget")),
        "{error:?}"
    );
}
