//! Ownership tracking for ordinary writes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic

mod common;

use common::*;
use machinist_apiserver_apply::{
    ANCIENT_CHANGES, Manager, TypeInfo, UpdateError, apply, restrict_to_subresource, try_update, update,
};
use serde_json::{Value, json};

#[test]
fn create_owns_everything_with_container_markers() {
    let mut obj = widget(json!({"replicas": 1, "ports": [{"port": 80, "name": "http"}]}));
    obj["metadata"]["labels"] = json!({"app": "w"});
    let created = update(None, &obj, mgr("kubectl-create"), &widget_types(), T1);
    assert_eq!(content(&created), obj);
    assert_eq!(
        managed(&created),
        vec![json!({
            "manager": "kubectl-create",
            "operation": "Update",
            "apiVersion": V,
            "time": T1,
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                "f:spec": {
                    ".": {},
                    "f:replicas": {},
                    "f:ports": {".": {}, "k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}, "f:name": {}}}
                }
            }
        })]
    );
}

#[test]
fn builtin_kinds_own_fields_of_their_structs() {
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "l", "namespace": "kube-system"},
        "spec": {"holderIdentity": "me", "leaseDurationSeconds": 15}
    });
    let types = TypeInfo::builtin("coordination.k8s.io", "v1", "Lease").unwrap();
    let created = update(None, &lease, Manager::new("ctl", "coordination.k8s.io/v1"), &types, T1);
    assert_eq!(
        fields(&created, "ctl", "Update"),
        json!({"f:spec": {"f:holderIdentity": {}, "f:leaseDurationSeconds": {}}})
    );

    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "shortNames": ["wd"]},
            "versions": [{"name": "v1", "served": true, "storage": true}]},
        "status": {"acceptedNames": {"kind": ""}}
    });
    let types = TypeInfo::builtin("apiextensions.k8s.io", "v1", "CustomResourceDefinition").unwrap();
    let created = update(None, &crd, Manager::new("kubectl", "apiextensions.k8s.io/v1"), &types, T1);
    assert_eq!(
        fields(&created, "kubectl", "Update"),
        json!({"f:spec": {
            "f:group": {}, "f:scope": {}, "f:versions": {},
            "f:names": {"f:kind": {}, "f:plural": {}, "f:shortNames": {}}
        }}),
        "status is the status subresource's; versions are atomic"
    );

    let event = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "e", "namespace": "default"},
        "involvedObject": {"kind": "Machine", "name": "m"},
        "reason": "Matched", "source": {"component": "operator"}, "count": 1
    });
    let types = TypeInfo::builtin("", "v1", "Event").unwrap();
    let created = update(None, &event, Manager::new("operator", "v1"), &types, T1);
    assert_eq!(
        fields(&created, "operator", "Update"),
        json!({
            "f:involvedObject": {"f:kind": {}, "f:name": {}},
            "f:reason": {}, "f:source": {"f:component": {}}, "f:count": {}
        })
    );
}

#[test]
fn updates_take_ownership_of_what_they_change() {
    let applied = stored(
        apply(None, &widget(json!({"replicas": 1, "image": "x"})), mgr("a"), false, &widget_types(), T1).unwrap(),
    );
    let mut edited = applied.clone();
    edited["spec"]["replicas"] = json!(2);
    let obj = stored(update(Some(&applied), &edited, mgr("kubectl-edit"), &widget_types(), T2));
    assert_eq!(fields(&obj, "a", "Apply"), json!({"f:spec": {"f:image": {}}}));
    assert_eq!(fields(&obj, "kubectl-edit", "Update"), json!({"f:spec": {"f:replicas": {}}}));
    assert_eq!(entry(&obj, "kubectl-edit", "Update").unwrap()["time"], T2);
    assert_eq!(entry(&obj, "a", "Apply").unwrap()["time"], T1);

    let err = apply(Some(&obj), &widget(json!({"replicas": 1, "image": "x"})), mgr("a"), false, &widget_types(), T3)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"Apply failed with 1 conflict: conflict with "kubectl-edit" using example.com/v1: .spec.replicas"#
    );
}

#[test]
fn removed_fields_leave_every_manager() {
    let applied = stored(
        apply(None, &widget(json!({"replicas": 1, "image": "x"})), mgr("a"), false, &widget_types(), T1).unwrap(),
    );
    let mut edited = applied.clone();
    edited["spec"].as_object_mut().unwrap().remove("image");
    let obj = update(Some(&applied), &edited, mgr("kubectl-edit"), &widget_types(), T2);
    assert_eq!(fields(&obj, "a", "Apply"), json!({"f:spec": {"f:replicas": {}}}));
    assert_eq!(entry(&obj, "kubectl-edit", "Update"), None, "removing owns nothing");
}

#[test]
fn a_managers_updates_merge_and_time_moves_on_change_only() {
    let t = widget_types();
    let created = stored(update(None, &widget(json!({"replicas": 1})), mgr("creator"), &t, T1));
    let mut v2 = created.clone();
    v2["spec"]["replicas"] = json!(2);
    let s2 = stored(update(Some(&created), &v2, mgr("u"), &t, T2));
    let mut v3 = s2.clone();
    v3["spec"]["image"] = json!("y");
    let s3 = stored(update(Some(&s2), &v3, mgr("u"), &t, T3));
    let s4 = update(Some(&s3), &s3, mgr("u"), &t, T4);
    let u = entry(&s4, "u", "Update").unwrap();
    assert_eq!(u["fieldsV1"], json!({"f:spec": {"f:replicas": {}, "f:image": {}}}));
    assert_eq!(u["time"], T3);
    assert_eq!(fields(&s4, "creator", "Update"), json!({"f:spec": {}}));
    // Different API versions are different entries.
    let mut v5 = s4.clone();
    v5["spec"]["image"] = json!("z");
    let s5 = update(Some(&s4), &v5, Manager::new("u", "example.com/v2"), &t, T5);
    assert_eq!(managed(&s5).iter().filter(|e| e["manager"] == "u").count(), 2);
    // No name: "unknown".
    let mut v6 = s5.clone();
    v6["spec"]["replicas"] = json!(7);
    let s6 = update(Some(&s5), &v6, mgr(""), &t, T5);
    assert!(entry(&s6, "unknown", "Update").is_some());
}

#[test]
fn update_managers_are_capped_at_ten() {
    let t = widget_types();
    let at = |i: usize| format!("2024-05-01T10:00:{i:02}Z");
    let mut obj = stored(update(None, &widget(json!({"settings": {"k0": "v"}})), mgr("m0"), &t, &at(0)));
    for i in 1..=11 {
        let mut next = obj.clone();
        next["spec"]["settings"][format!("k{i}")] = json!("v");
        let name = format!("m{i}");
        obj = stored(update(Some(&obj), &next, mgr(&name), &t, &at(i)));
    }
    let entries = managed(&obj);
    assert_eq!(entries.len(), 10);
    let names: Vec<&str> = entries.iter().map(|e| e["manager"].as_str().unwrap()).collect();
    assert_eq!(names, [ANCIENT_CHANGES, "m3", "m4", "m5", "m6", "m7", "m8", "m9", "m10", "m11"]);
    assert_eq!(
        entries[0],
        json!({
            "manager": ANCIENT_CHANGES,
            "operation": "Update",
            "apiVersion": V,
            "time": at(2),
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {".": {}, "f:settings": {".": {}, "f:k0": {}, "f:k1": {}, "f:k2": {}}}}
        })
    );
    // Apply entries do not count.
    let applied = apply(Some(&obj), &widget(json!({"replicas": 1})), mgr("a"), false, &t, &at(20)).unwrap();
    assert_eq!(managed(&applied).len(), 11);
}

#[test]
fn untracked_objects_stay_untracked_and_sent_managed_fields_win() {
    let t = widget_types();
    let untracked = stored(widget(json!({"replicas": 1})));
    let mut next = untracked.clone();
    next["spec"]["replicas"] = json!(2);
    let out = update(Some(&untracked), &next, mgr("u"), &t, T2);
    assert!(managed(&out).is_empty());
    assert!(out["metadata"].get("managedFields").is_none());

    let tracked = stored(update(None, &widget(json!({"replicas": 1})), mgr("c"), &t, T1));
    let mut reset = tracked.clone();
    reset["metadata"]["managedFields"] = json!([]);
    let out = update(Some(&tracked), &reset, mgr("u"), &t, T2);
    assert!(out["metadata"].get("managedFields").is_none(), "[] clears them");

    let mut edited = tracked.clone();
    let sent = json!([{"manager": "x", "operation": "Update", "apiVersion": V,
        "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]);
    edited["metadata"]["managedFields"] = sent.clone();
    let out = update(Some(&tracked), &edited, mgr("u"), &t, T2);
    assert_eq!(managed(&out), sent.as_array().unwrap().clone());

    // Through a subresource, sent managedFields are ignored.
    let out = update(Some(&tracked), &edited, Manager::new("u", V).with_subresource("status"), &t, T2);
    assert_eq!(managed(&out), managed(&tracked));
}

#[test]
fn status_is_tracked_through_the_status_subresource_only() {
    let t = widget_types();
    let created = stored(update(None, &widget(json!({"replicas": 1})), mgr("c"), &t, T1));
    let mut next = created.clone();
    next["status"] = json!({"phase": "Running"});
    next["spec"]["replicas"] = json!(5);
    let ctl = Manager::new("ctl", V).with_subresource("status");
    let out = stored(update(Some(&created), &next, ctl, &t, T2));
    assert_eq!(
        entry(&out, "ctl", "Update").unwrap(),
        json!({
            "manager": "ctl",
            "operation": "Update",
            "apiVersion": V,
            "time": T2,
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:status": {".": {}, "f:phase": {}}},
            "subresource": "status"
        })
    );
    assert_eq!(fields(&out, "c", "Update"), fields(&created, "c", "Update"));

    // The main resource does not track status.
    let mut main = out.clone();
    main["status"]["phase"] = json!("Failed");
    main["spec"]["image"] = json!("i");
    let out2 = update(Some(&out), &main, mgr("m"), &t, T3);
    assert_eq!(fields(&out2, "m", "Update"), json!({"f:spec": {"f:image": {}}}));
    assert_eq!(fields(&out2, "ctl", "Update"), json!({"f:status": {".": {}, "f:phase": {}}}));

    // What the server persists.
    assert_eq!(restrict_to_subresource(&out, &main, &t, None)["status"]["phase"], "Running");
    let persisted = restrict_to_subresource(&created, &next, &t, Some("status"));
    assert_eq!(persisted["spec"]["replicas"], 1);
    assert_eq!(persisted["status"]["phase"], "Running");
}

#[test]
fn objects_that_do_not_fit_their_types_keep_their_managed_fields() {
    let t = widget_types();
    let created = stored(update(None, &widget(json!({"replicas": 1})), mgr("c"), &t, T1));
    let mut bad = created.clone();
    bad["spec"]["tags"] = json!([{"a set": "of maps"}]);
    bad["metadata"].as_object_mut().unwrap().remove("managedFields");
    let err = try_update(Some(&created), &bad, mgr("u"), &t, T2).unwrap_err();
    assert!(matches!(err, UpdateError::Typed(_)), "{err}");
    let out = update(Some(&created), &bad, mgr("u"), &t, T2);
    assert_eq!(managed(&out), managed(&created));
    assert_eq!(out["spec"]["tags"], bad["spec"]["tags"]);
    assert!(matches!(try_update(None, &json!([]), mgr("u"), &t, T2), Err(UpdateError::NotAnObject)));
}

#[test]
fn managed_fields_round_trip_through_the_server() {
    // What the server stores is what the next write reads back.
    let t = widget_types();
    let created = stored(update(None, &widget(json!({"replicas": 1})), mgr("c"), &t, T1));
    let text = serde_json::to_string(&created).unwrap();
    let back: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(update(Some(&back), &back, mgr("c"), &t, T2), created);
}
