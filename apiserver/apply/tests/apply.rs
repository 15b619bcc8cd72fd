//! Server-side apply scenarios.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic

mod common;

use common::*;
use machinist_apiserver_apply::{
    ApplyError, BEFORE_FIRST_APPLY, LAST_APPLIED_ANNOTATION, Manager, TypeInfo, apply, update,
};
use serde_json::{Value, json};

fn ok(live: Option<&Value>, config: &Value, manager: &str, force: bool, now: &str) -> Value {
    apply(live, config, mgr(manager), force, &widget_types(), now).unwrap()
}

fn conflicts(err: ApplyError) -> (String, Value) {
    match &err {
        ApplyError::Conflicts(c) => (c.message(), c.to_status()),
        other => panic!("expected conflicts, got {other:?}"),
    }
}

#[test]
fn apply_creates_the_object_and_owns_its_fields() {
    let mut config = widget(json!({
        "replicas": 1,
        "ports": [{"port": 80, "name": "http"}],
        "tags": ["a"]
    }));
    config["metadata"]["labels"] = json!({"app": "w"});
    let obj = ok(None, &config, "ctl", false, T1);
    assert_eq!(content(&obj), config);
    assert_eq!(
        managed(&obj),
        vec![json!({
            "manager": "ctl",
            "operation": "Apply",
            "apiVersion": V,
            "time": T1,
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:replicas": {},
                    "f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}, "f:name": {}}},
                    "f:tags": {"v:\"a\"": {}}
                }
            }
        })]
    );
}

#[test]
fn reapplying_the_same_config_changes_nothing() {
    let config = widget(json!({"replicas": 1, "tags": ["a", "b"], "settings": {"k": "v"}}));
    let first = stored(ok(None, &config, "ctl", false, T1));
    let again = ok(Some(&first), &config, "ctl", false, T2);
    assert_eq!(again, first, "object and managedFields (time included) unchanged");
}

#[test]
fn removing_a_field_from_the_config_deletes_it() {
    let first = stored(ok(
        None,
        &widget(json!({"replicas": 1, "image": "x", "tags": ["a"], "settings": {"k": "v", "l": "w"}})),
        "ctl",
        false,
        T1,
    ));
    let second = ok(Some(&first), &widget(json!({"replicas": 1, "settings": {"k": "v"}})), "ctl", false, T2);
    assert_eq!(second["spec"], json!({"replicas": 1, "settings": {"k": "v"}}));
    assert_eq!(second["metadata"]["uid"], first["metadata"]["uid"]);
    assert_eq!(fields(&second, "ctl", "Apply"), json!({"f:spec": {"f:replicas": {}, "f:settings": {"f:k": {}}}}));
    assert_eq!(entry(&second, "ctl", "Apply").unwrap()["time"], T2);

    // Applying nothing but the identity gives up everything, and the entry goes.
    let third = ok(Some(&stored(second)), &ident(), "ctl", false, T3);
    assert_eq!(third.get("spec"), None);
    assert!(managed(&third).is_empty());
    assert_eq!(third["metadata"]["name"], "w");
}

#[test]
fn shared_ownership_keeps_the_value_when_one_owner_leaves() {
    let a = stored(ok(None, &widget(json!({"replicas": 1, "image": "x"})), "a", false, T1));
    // Same value: no conflict, both own it.
    let b = ok(Some(&a), &widget(json!({"replicas": 1})), "b", false, T2);
    assert_eq!(fields(&b, "a", "Apply"), json!({"f:spec": {"f:replicas": {}, "f:image": {}}}));
    assert_eq!(fields(&b, "b", "Apply"), json!({"f:spec": {"f:replicas": {}}}));
    // b changed nothing: its new entry gets no time, as upstream.
    assert_eq!(entry(&b, "b", "Apply").unwrap().get("time"), None);

    let a2 = ok(Some(&b), &widget(json!({"image": "x"})), "a", false, T3);
    assert_eq!(a2["spec"], json!({"replicas": 1, "image": "x"}));
    assert_eq!(fields(&a2, "a", "Apply"), json!({"f:spec": {"f:image": {}}}));
    assert_eq!(fields(&a2, "b", "Apply"), json!({"f:spec": {"f:replicas": {}}}));

    // Once b lets go too, the field goes.
    let b2 = ok(Some(&a2), &ident(), "b", false, T4);
    assert_eq!(b2["spec"], json!({"image": "x"}));
    assert_eq!(entry(&b2, "b", "Apply"), None);
}

#[test]
fn conflict_with_another_applier() {
    let a = stored(ok(None, &widget(json!({"replicas": 1})), "a", false, T1));
    let err = apply(Some(&a), &widget(json!({"replicas": 2})), mgr("b"), false, &widget_types(), T2).unwrap_err();
    assert_eq!(err.code(), 409);
    let (message, status) = conflicts(err);
    assert_eq!(message, r#"Apply failed with 1 conflict: conflict with "a": .spec.replicas"#);
    assert_eq!(
        status,
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "Apply failed with 1 conflict: conflict with \"a\": .spec.replicas",
            "reason": "Conflict",
            "details": {"causes": [{
                "type": "FieldManagerConflict",
                "message": "conflict with \"a\"",
                "field": ".spec.replicas"
            }]},
            "code": 409
        })
    );
}

#[test]
fn conflict_with_an_update_manager() {
    let types = TypeInfo::builtin("", "v1", "ConfigMap").unwrap();
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "default"},
        "data": {"a": "1"}
    });
    let created = stored(update(None, &cm, Manager::new("kubectl-client-side-apply", "v1"), &types, T1));
    assert_eq!(fields(&created, "kubectl-client-side-apply", "Update"), json!({"f:data": {".": {}, "f:a": {}}}));
    let mut config = cm.clone();
    config["data"]["a"] = json!("2");
    let err = apply(Some(&created), &config, Manager::new("ctl", "v1"), false, &types, T2).unwrap_err();
    let (message, status) = conflicts(err);
    assert_eq!(message, r#"Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using v1: .data.a"#);
    assert_eq!(
        status["details"]["causes"],
        json!([{
            "type": "FieldManagerConflict",
            "message": "conflict with \"kubectl-client-side-apply\" using v1",
            "field": ".data.a"
        }])
    );
    // The same value is shared, not a conflict.
    let shared = apply(Some(&created), &cm, Manager::new("ctl", "v1"), false, &types, T2).unwrap();
    assert_eq!(fields(&shared, "ctl", "Apply"), json!({"f:data": {"f:a": {}}}));
    assert_eq!(fields(&shared, "kubectl-client-side-apply", "Update"), json!({"f:data": {".": {}, "f:a": {}}}));
}

#[test]
fn several_conflicts_are_grouped_by_manager() {
    let a = stored(ok(None, &widget(json!({"replicas": 1, "image": "x", "settings": {"z": "1"}})), "a", false, T1));
    let mut edited = a.clone();
    edited["spec"]["settings"]["k"] = json!("v");
    let u = stored(update(Some(&a), &edited, mgr("kubectl-edit"), &widget_types(), T2));
    let config = widget(json!({"replicas": 2, "image": "y", "settings": {"k": "w", "z": "2"}}));
    let err = apply(Some(&u), &config, mgr("b"), false, &widget_types(), T3).unwrap_err();
    let (message, status) = conflicts(err);
    assert_eq!(
        message,
        "Apply failed with 4 conflicts: conflicts with \"a\":\n- .spec.image\n- .spec.replicas\n- .spec.settings.z\nconflicts with \"kubectl-edit\" using example.com/v1:\n- .spec.settings.k"
    );
    let fields: Vec<&str> =
        status["details"]["causes"].as_array().unwrap().iter().map(|c| c["field"].as_str().unwrap()).collect();
    assert_eq!(fields, [".spec.image", ".spec.replicas", ".spec.settings.z", ".spec.settings.k"]);
}

#[test]
fn force_takes_ownership() {
    let a = stored(ok(None, &widget(json!({"replicas": 1, "image": "x"})), "a", false, T1));
    let b = ok(Some(&a), &widget(json!({"replicas": 2})), "b", true, T2);
    assert_eq!(b["spec"], json!({"replicas": 2, "image": "x"}));
    assert_eq!(fields(&b, "a", "Apply"), json!({"f:spec": {"f:image": {}}}));
    assert_eq!(fields(&b, "b", "Apply"), json!({"f:spec": {"f:replicas": {}}}));
    // a no longer owns replicas: leaving it out does not remove it.
    let a2 = ok(Some(&stored(b)), &widget(json!({"image": "x"})), "a", false, T3);
    assert_eq!(a2["spec"]["replicas"], 2);
    // And a taking it back without force conflicts with b.
    let err = apply(Some(&a2), &widget(json!({"image": "x", "replicas": 3})), mgr("a"), false, &widget_types(), T4)
        .unwrap_err();
    assert_eq!(conflicts(err).0, r#"Apply failed with 1 conflict: conflict with "b": .spec.replicas"#);
}

#[test]
fn keyed_lists_merge_by_key() {
    let a = stored(ok(
        None,
        &widget(json!({"ports": [{"port": 80, "name": "http"}, {"port": 53, "protocol": "UDP"}]})),
        "a",
        false,
        T1,
    ));
    let b = ok(
        Some(&a),
        &widget(json!({"ports": [{"port": 443, "name": "https"}, {"port": 53, "protocol": "UDP", "name": "dns"}]})),
        "b",
        false,
        T2,
    );
    assert_eq!(
        b["spec"]["ports"],
        json!([
            {"port": 80, "name": "http"},
            {"port": 443, "name": "https"},
            {"port": 53, "protocol": "UDP", "name": "dns"}
        ])
    );
    assert_eq!(
        fields(&b, "b", "Apply"),
        json!({"f:spec": {"f:ports": {
            "k:{\"port\":443,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}, "f:name": {}},
            "k:{\"port\":53,\"protocol\":\"UDP\"}": {".": {}, "f:port": {}, "f:protocol": {}, "f:name": {}}
        }}})
    );
    // a drops port 53: b still owns that item, so it stays; a drops port 80: it goes.
    let a2 = ok(Some(&stored(b)), &widget(json!({"ports": []})), "a", false, T3);
    assert_eq!(
        a2["spec"]["ports"],
        json!([{"port": 443, "name": "https"}, {"port": 53, "protocol": "UDP", "name": "dns"}])
    );
    assert_eq!(entry(&a2, "a", "Apply"), None);
}

#[test]
fn duplicate_keys_in_a_config_are_refused() {
    let err = apply(
        None,
        &widget(json!({"ports": [{"port": 80}, {"port": 80, "protocol": "TCP"}]})),
        mgr("a"),
        false,
        &widget_types(),
        T1,
    )
    .unwrap_err();
    assert_eq!(err.code(), 400);
    assert_eq!(
        err.to_string(),
        r#"failed to create typed patch object: .spec.ports: duplicate entries for key [port=80,protocol="TCP"]"#
    );
}

#[test]
fn set_lists_union_and_prune_per_value() {
    let mut ca = widget(json!({"tags": ["x", "y"]}));
    ca["metadata"]["finalizers"] = json!(["a.example.com/f"]);
    let a = stored(ok(None, &ca, "a", false, T1));
    let mut cb = widget(json!({"tags": ["y", "z"]}));
    cb["metadata"]["finalizers"] = json!(["b.example.com/f"]);
    let b = stored(ok(Some(&a), &cb, "b", false, T2));
    assert_eq!(b["spec"]["tags"], json!(["x", "y", "z"]));
    assert_eq!(b["metadata"]["finalizers"], json!(["a.example.com/f", "b.example.com/f"]));
    let mut ca2 = widget(json!({"tags": []}));
    ca2["metadata"]["finalizers"] = json!([]);
    let a2 = ok(Some(&b), &ca2, "a", false, T3);
    assert_eq!(a2["spec"]["tags"], json!(["y", "z"]), "y is still b's");
    assert_eq!(a2["metadata"]["finalizers"], json!(["b.example.com/f"]));
    assert_eq!(a2["metadata"]["uid"], b["metadata"]["uid"], "unowned metadata survives");
    assert_eq!(a2["metadata"]["resourceVersion"], "1");
}

#[test]
fn atomic_lists_and_maps_are_replaced_whole() {
    let a = stored(ok(None, &widget(json!({"args": ["a", "b"], "selector": {"x": "1", "y": "2"}})), "a", false, T1));
    assert_eq!(fields(&a, "a", "Apply"), json!({"f:spec": {"f:args": {}, "f:selector": {}}}));
    let config = widget(json!({"args": ["c"], "selector": {"z": "3"}}));
    let err = apply(Some(&a), &config, mgr("b"), false, &widget_types(), T2).unwrap_err();
    assert_eq!(
        conflicts(err).0,
        "Apply failed with 2 conflicts: conflicts with \"a\":\n- .spec.args\n- .spec.selector"
    );
    let b = ok(Some(&a), &config, "b", true, T2);
    assert_eq!(b["spec"], json!({"args": ["c"], "selector": {"z": "3"}}));
    assert_eq!(entry(&b, "a", "Apply"), None);
    // The owner's own re-apply replaces the list whole too.
    let b2 = ok(Some(&stored(b)), &widget(json!({"args": ["d", "c"], "selector": {"z": "3"}})), "b", false, T3);
    assert_eq!(b2["spec"]["args"], json!(["d", "c"]));
}

#[test]
fn granular_maps_merge_key_by_key() {
    let a = stored(ok(None, &widget(json!({"settings": {"a": "1"}})), "a", false, T1));
    let b = ok(Some(&a), &widget(json!({"settings": {"b": "2"}})), "b", false, T2);
    assert_eq!(b["spec"]["settings"], json!({"a": "1", "b": "2"}));
    let mut labelled = ident();
    labelled["metadata"]["labels"] = json!({"team": "x"});
    labelled["metadata"]["annotations"] = json!({"note": "y"});
    let c = ok(Some(&stored(b)), &labelled, "c", false, T3);
    assert_eq!(c["spec"]["settings"], json!({"a": "1", "b": "2"}));
    assert_eq!(
        fields(&c, "c", "Apply"),
        json!({"f:metadata": {"f:labels": {"f:team": {}}, "f:annotations": {"f:note": {}}}})
    );
}

#[test]
fn status_subresource_applies_only_status() {
    let types = widget_types();
    let created = stored(ok(None, &widget(json!({"replicas": 1})), "owner", false, T1));
    let mut config = widget(json!({"replicas": 9}));
    config["status"] = json!({"phase": "Ready"});
    let ctl = Manager::new("ctl", V).with_subresource("status");
    let obj = apply(Some(&created), &config, ctl, true, &types, T2).unwrap();
    assert_eq!(obj["spec"], json!({"replicas": 1}), "spec is not written through /status");
    assert_eq!(obj["status"], json!({"phase": "Ready"}));
    assert_eq!(
        entry(&obj, "ctl", "Apply").unwrap(),
        json!({
            "manager": "ctl",
            "operation": "Apply",
            "apiVersion": V,
            "time": T2,
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:status": {"f:phase": {}}},
            "subresource": "status"
        })
    );
    // The main resource ignores status in a config.
    let main = ok(Some(&stored(obj)), &config, "owner", true, T3);
    assert_eq!(main["spec"], json!({"replicas": 9}));
    assert_eq!(main["status"], json!({"phase": "Ready"}));
    assert_eq!(fields(&main, "owner", "Apply"), json!({"f:spec": {"f:replicas": {}}}));

    // A status conflict names the subresource.
    let mut other = ident();
    other["status"] = json!({"phase": "Failed"});
    let err =
        apply(Some(&main), &other, Manager::new("other", V).with_subresource("status"), false, &types, T4).unwrap_err();
    assert_eq!(
        conflicts(err).0,
        r#"Apply failed with 1 conflict: conflict with "ctl" with subresource "status": .status.phase"#
    );
}

#[test]
fn first_apply_to_an_untracked_object() {
    let live = stored(widget(json!({"replicas": 1, "image": "x"})));
    let obj = ok(Some(&live), &widget(json!({"image": "x"})), "ctl", false, T2);
    let names: Vec<(String, String)> = managed(&obj)
        .iter()
        .map(|e| (e["manager"].as_str().unwrap().to_owned(), e["operation"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(names, [("ctl".to_owned(), "Apply".to_owned()), (BEFORE_FIRST_APPLY.to_owned(), "Update".to_owned())]);
    assert_eq!(
        fields(&obj, BEFORE_FIRST_APPLY, "Update"),
        json!({"f:spec": {".": {}, "f:replicas": {}, "f:image": {}}})
    );
    let err = apply(Some(&live), &widget(json!({"replicas": 2})), mgr("ctl"), false, &widget_types(), T2).unwrap_err();
    assert_eq!(
        conflicts(err).0,
        r#"Apply failed with 1 conflict: conflict with "before-first-apply" using example.com/v1: .spec.replicas"#
    );
}

#[test]
fn kubectl_takes_over_from_client_side_apply() {
    let types = widget_types();
    let config = widget(json!({"replicas": 1}));
    let mut sent = config.clone();
    sent["metadata"]["annotations"] = json!({LAST_APPLIED_ANNOTATION: config.to_string()});
    let created = stored(update(None, &sent, mgr("kubectl-client-side-apply"), &types, T1));
    let ssa = widget(json!({"replicas": 2}));
    let obj = apply(Some(&created), &ssa, mgr("kubectl"), false, &types, T2).unwrap();
    assert_eq!(obj["spec"]["replicas"], 2);
    assert_eq!(fields(&obj, "kubectl", "Apply"), json!({"f:spec": {"f:replicas": {}}}));
    let annotation = obj["metadata"]["annotations"][LAST_APPLIED_ANNOTATION].as_str().unwrap();
    assert_eq!(serde_json::from_str::<Value>(annotation).unwrap(), ssa);
    // Any other manager conflicts.
    let err = apply(Some(&created), &ssa, mgr("other"), false, &types, T2).unwrap_err();
    assert_eq!(err.code(), 409);
}

#[test]
fn invalid_configs_are_refused() {
    let types = widget_types();
    let live = stored(ok(None, &widget(json!({"replicas": 1})), "a", false, T1));
    let cases = [
        (json!({"kind": "Widget", "metadata": {"name": "w"}}), "apiVersion must be set"),
        (json!({"apiVersion": V, "metadata": {"name": "w"}}), "kind must be set"),
        (
            json!({"apiVersion": V, "kind": "Widget", "metadata": {"name": "other"}}),
            "the name of the object (other) does not match the name on the URL (w)",
        ),
        (
            json!({"apiVersion": V, "kind": "Widget", "metadata": {"name": "w", "managedFields": []}}),
            "metadata.managedFields must be nil",
        ),
        (
            json!({"apiVersion": "example.com/v2", "kind": "Widget", "metadata": {"name": "w"}}),
            "Incorrect version specified in apply patch. Specified patch version: example.com/v2, expected: example.com/v1",
        ),
        (
            json!({"apiVersion": V, "kind": "Gadget", "metadata": {"name": "w"}}),
            "invalid object type: example.com/v1, Kind=Gadget",
        ),
        (json!([1]), "must be an object"),
    ];
    for (config, expected) in cases {
        let err = apply(Some(&live), &config, mgr("b"), false, &types, T2).unwrap_err();
        assert_eq!(err.code(), 400, "{config}");
        assert!(err.to_string().contains(expected), "{err} vs {expected}");
        assert_eq!(err.to_status()["reason"], "BadRequest");
    }
    let err = apply(Some(&live), &ident(), Manager::new("", V), false, &types, T2).unwrap_err();
    assert!(err.to_string().contains("fieldManager: Required value"));
}

#[test]
fn broken_managed_fields_are_an_internal_error() {
    let mut live = stored(ok(None, &widget(json!({"replicas": 1})), "a", false, T1));
    live["metadata"]["managedFields"] = json!([{"manager": "a", "operation": "Bogus"}]);
    let err = apply(Some(&live), &ident(), mgr("b"), false, &widget_types(), T2).unwrap_err();
    assert_eq!(err.code(), 500);
    assert_eq!(err.to_status()["reason"], "InternalError");
}

#[test]
fn deduced_types_without_a_schema() {
    let types = TypeInfo::deduced();
    let config = json!({
        "apiVersion": "x.io/v1", "kind": "Thing", "metadata": {"name": "t"},
        "spec": {"list": [1, 2], "map": {"a": {"b": 1}}}
    });
    let obj = apply(None, &config, Manager::new("ctl", "x.io/v1"), false, &types, T1).unwrap();
    assert_eq!(
        fields(&obj, "ctl", "Apply"),
        json!({"f:spec": {".": {}, "f:list": {}, "f:map": {".": {}, "f:a": {".": {}, "f:b": {}}}}})
    );
}

#[test]
fn hostile_nesting_is_refused_not_overflowed() {
    let mut deep = json!("x");
    for _ in 0..(machinist_apiserver_apply::MAX_DEPTH + 10) {
        deep = json!({ "n": deep });
    }
    let types = TypeInfo::deduced();
    let config = json!({"apiVersion": V, "kind": "Widget", "metadata": {"name": "w"}, "spec": deep});
    let err = apply(None, &config, mgr("a"), false, &types, T1).unwrap_err();
    assert_eq!(err.code(), 400);
    assert!(err.to_string().contains("nested deeper"), "{err}");

    // A stored object that deep cannot be tracked: managedFields are left as they were.
    let out = update(None, &config, mgr("a"), &types, T1);
    assert!(managed(&out).is_empty());

    // Nor can a hostile fieldsV1.
    let mut fields = json!({});
    for _ in 0..(machinist_apiserver_apply::MAX_DEPTH + 10) {
        fields = json!({ "f:n": fields });
    }
    let mut live = stored(widget(json!({"replicas": 1})));
    live["metadata"]["managedFields"] = json!([{"manager": "m", "operation": "Update",
        "apiVersion": V, "fieldsType": "FieldsV1", "fieldsV1": fields}]);
    let err = apply(Some(&live), &ident(), mgr("a"), false, &widget_types(), T2).unwrap_err();
    assert_eq!(err.code(), 500);
}
