//! Pruning of unknown fields and defaulting, in the API server's order (prune, then default).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic

mod common;

use common::{compile, messages, object, spec_schema};
use serde_json::json;

#[test]
fn unknown_fields_are_pruned_and_reported_sorted() {
    let schema = compile(spec_schema(json!({
        "a": {"type": "object", "properties": {"known": {"type": "string"}}},
        "items": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
        "m": {"type": "object", "additionalProperties": {"type": "object", "properties": {"v": {"type": "integer"}}}},
    })));
    let mut obj = object(json!({
        "a": {"known": "k", "b": {"deep": 1}},
        "items": [{"name": "x", "extra": true}, {"other": 1}],
        "m": {"k1": {"v": 1, "w": 2}},
        "zzz": 1,
    }));
    obj["unknownTop"] = json!("x");
    let admission = schema.admit(&mut obj, None);
    assert_eq!(
        admission.pruned,
        ["spec.a.b", "spec.items[0].extra", "spec.items[1].other", "spec.m.k1.w", "spec.zzz", "unknownTop"]
    );
    assert!(admission.errors.is_empty());
    assert_eq!(
        obj,
        json!({"apiVersion": "example.dev/v1", "kind": "Thing", "metadata": {"name": "a"}, "spec": {
            "a": {"known": "k"}, "items": [{"name": "x"}, {}], "m": {"k1": {"v": 1}},
        }})
    );
}

#[test]
fn root_type_and_object_meta_are_never_pruned() {
    let schema = compile(json!({"type": "object", "properties": {"spec": {"type": "object"}}}));
    let mut obj = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a", "whatever": 1}, "spec": {}});
    let admission = schema.admit(&mut obj, None);
    assert!(admission.pruned.is_empty(), "{:?}", admission.pruned);
    assert_eq!(obj["metadata"], json!({"name": "a", "whatever": 1}));
}

#[test]
fn preserve_unknown_fields_keeps_a_subtree() {
    let schema = compile(spec_schema(json!({
        "raw": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {
            "known": {"type": "object", "properties": {"x": {"type": "string"}}},
        }},
        "list": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
        "any": {"x-kubernetes-preserve-unknown-fields": true},
    })));
    let mut obj = object(json!({
        "raw": {"free": {"form": [1, 2]}, "known": {"x": "a", "y": "pruned"}},
        "list": [{"anything": {"goes": true}}],
        "any": {"a": [{"b": null}]},
    }));
    let admission = schema.admit(&mut obj, None);
    assert_eq!(admission.pruned, ["spec.raw.known.y"]);
    assert_eq!(obj["spec"]["raw"], json!({"free": {"form": [1, 2]}, "known": {"x": "a"}}));
    assert_eq!(obj["spec"]["list"], json!([{"anything": {"goes": true}}]));
    assert_eq!(obj["spec"]["any"], json!({"a": [{"b": null}]}));
    assert!(admission.errors.is_empty());
}

#[test]
fn embedded_resources_keep_type_and_object_meta() {
    let schema = compile(spec_schema(json!({
        "template": {"type": "object", "x-kubernetes-embedded-resource": true, "properties": {
            "spec": {"type": "object", "properties": {"replicas": {"type": "integer"}}},
        }},
    })));
    let mut obj = object(json!({"template": {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}, "bogus": 1, "annotations": {}},
        "spec": {"replicas": 2, "paused": true},
        "status": {},
    }}));
    let admission = schema.admit(&mut obj, None);
    assert_eq!(admission.pruned, ["spec.template.spec.paused", "spec.template.status", "spec.template.metadata.bogus"]);
    assert_eq!(
        obj["spec"]["template"],
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web"}}, "spec": {"replicas": 2}})
    );
    assert!(admission.errors.is_empty(), "{:?}", messages(&admission));
}

#[test]
fn embedded_metadata_of_the_wrong_type_is_rejected() {
    let schema = compile(spec_schema(json!({
        "template": {"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true},
    })));
    let mut obj = object(json!({"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": 5}}}));
    let admission = schema.admit(&mut obj, None);
    assert_eq!(
        messages(&admission),
        [
            r#"spec.template.metadata: Invalid value: {"name":5}: json: cannot unmarshal number into Go struct field ObjectMeta.name of type string"#
        ]
    );
}

#[test]
fn int_or_string_values_are_kept_objects_are_emptied() {
    let schema = compile(spec_schema(json!({"port": {"x-kubernetes-int-or-string": true}})));
    let mut obj = object(json!({"port": "http"}));
    assert!(schema.admit(&mut obj, None).pruned.is_empty());
    assert_eq!(obj["spec"]["port"], "http");
    let mut obj = object(json!({"port": {"a": 1}}));
    let admission = schema.admit(&mut obj, None);
    assert_eq!(admission.pruned, ["spec.port.a"]);
    assert_eq!(
        messages(&admission),
        [r#"spec.port: Invalid value: "object": spec.port in body must be of type integer,string: "object""#]
    );
}

#[test]
fn additional_properties_true_keeps_keys_not_their_content() {
    let schema = compile(spec_schema(json!({"m": {"type": "object", "additionalProperties": true}})));
    let mut obj = object(json!({"m": {"a": {"b": 1}, "c": 2}}));
    let admission = schema.admit(&mut obj, None);
    assert_eq!(admission.pruned, ["spec.m.a.b"]);
    assert_eq!(obj["spec"]["m"], json!({"a": {}, "c": 2}));
}

#[test]
fn defaults_fill_absent_fields_recursively() {
    let schema = compile(spec_schema(json!({
        "online": {"type": "boolean", "default": true},
        "mode": {"type": "string", "default": "reboot"},
        "nested": {"type": "object", "default": {}, "properties": {
            "timeout": {"type": "integer", "default": 600},
            "inner": {"type": "object", "default": {"x": "given"}, "properties": {"x": {"type": "string"}, "y": {"type": "string", "default": "y"}}},
        }},
    })));
    let mut obj = object(json!({"mode": "halt"}));
    let admission = schema.admit(&mut obj, None);
    assert!(admission.errors.is_empty());
    assert_eq!(
        obj["spec"],
        json!({"online": true, "mode": "halt", "nested": {"timeout": 600, "inner": {"x": "given", "y": "y"}}})
    );
}

#[test]
fn defaults_in_array_items_and_map_values() {
    let schema = compile(spec_schema(json!({
        "items": {"type": "array", "items": {"type": "object", "properties": {"weight": {"type": "integer", "default": 1}}}},
        "strings": {"type": "array", "items": {"type": "string", "default": "none"}},
        "map": {"type": "object", "additionalProperties": {"type": "object", "properties": {"on": {"type": "boolean", "default": false}}}},
    })));
    let mut obj =
        object(json!({"items": [{}, {"weight": 5}], "strings": ["a", null], "map": {"x": {}, "y": {"on": true}}}));
    let admission = schema.admit(&mut obj, None);
    assert!(admission.errors.is_empty(), "{:?}", messages(&admission));
    assert_eq!(
        obj["spec"],
        json!({"items": [{"weight": 1}, {"weight": 5}], "strings": ["a", "none"], "map": {"x": {"on": false}, "y": {"on": true}}})
    );
}

#[test]
fn defaults_do_not_replace_nullable_nulls() {
    let schema = compile(spec_schema(json!({
        "nullable": {"type": "string", "nullable": true, "default": "d"},
        "plain": {"type": "string", "default": "d"},
        "obj": {"type": "object", "nullable": true, "properties": {"inner": {"type": "string", "default": "i"}}},
    })));
    let mut obj = object(json!({"nullable": null, "plain": null, "obj": null}));
    let admission = schema.admit(&mut obj, None);
    assert!(admission.errors.is_empty());
    assert_eq!(obj["spec"], json!({"nullable": null, "plain": "d", "obj": null}));
}

#[test]
fn defaults_apply_after_pruning() {
    // A field pruned as unknown is not there any more when defaults are applied, so the default
    // replaces what the client sent under a wrong name... and the default itself is pruned.
    let schema = compile(spec_schema(json!({
        "settings": {"type": "object", "properties": {"level": {"type": "string", "default": "info"}}},
    })));
    let mut obj = object(json!({"settings": {"Level": "debug"}}));
    let admission = schema.admit(&mut obj, None);
    assert_eq!(admission.pruned, ["spec.settings.Level"]);
    assert_eq!(obj["spec"]["settings"], json!({"level": "info"}));
}

#[test]
fn defaulted_values_are_validated() {
    let schema = compile(json!({"type": "object", "properties": {"spec": {
        "type": "object",
        "required": ["mode"],
        "properties": {"mode": {"type": "string", "default": "a", "enum": ["a", "b"]}},
    }}}));
    let mut obj = object(json!({}));
    assert!(schema.admit(&mut obj, None).errors.is_empty(), "the default satisfies required");
    assert_eq!(obj["spec"]["mode"], "a");
}

#[test]
fn decode_normalizes_without_validating() {
    let schema = compile(spec_schema(json!({"n": {"type": "integer", "maximum": 1, "default": 1}})));
    let mut obj = object(json!({"x": 1}));
    assert_eq!(schema.decode(&mut obj).unwrap(), ["spec.x"]);
    assert_eq!(obj["spec"], json!({"n": 1}));
    let mut obj = object(json!({"x": 1}));
    assert_eq!(schema.prune(&mut obj), ["spec.x"]);
    schema.apply_defaults(&mut obj);
    assert_eq!(obj["spec"], json!({"n": 1}));
}
