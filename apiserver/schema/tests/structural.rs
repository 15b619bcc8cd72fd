//! Schemas the API server rejects in a CustomResourceDefinition, with its messages.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic

mod common;

use common::{compile, compile_errors, spec_schema};
use machinist_apiserver_schema::Schema;
use serde_json::json;

const SPEC: &str = "openAPIV3Schema.properties[spec]";

#[test]
fn types_are_required() {
    assert_eq!(
        compile_errors(json!({"properties": {}})),
        ["openAPIV3Schema.type: Required value: must not be empty at the root"]
    );
    assert_eq!(
        compile_errors(spec_schema(json!({"x": {"description": "no type"}, "l": {"type": "array", "items": {}}}))),
        [
            format!("{SPEC}.properties[l].items.type: Required value: must not be empty for specified array items"),
            format!("{SPEC}.properties[x].type: Required value: must not be empty for specified object fields"),
        ]
    );
    // int-or-string and preserve-unknown-fields need no type.
    compile(spec_schema(
        json!({"a": {"x-kubernetes-int-or-string": true}, "b": {"x-kubernetes-preserve-unknown-fields": true}}),
    ));
}

#[test]
fn invalid_types() {
    assert_eq!(
        compile_errors(spec_schema(json!({"x": {"type": "null"}, "y": {"type": "float"}}))),
        [
            format!(
                r#"{SPEC}.properties[x].type: Forbidden: type cannot be set to null, use nullable as an alternative"#
            ),
            format!(
                r#"{SPEC}.properties[x].type: Unsupported value: "null": supported values: "array", "boolean", "integer", "number", "object", "string""#
            ),
            format!(
                r#"{SPEC}.properties[y].type: Unsupported value: "float": supported values: "array", "boolean", "integer", "number", "object", "string""#
            ),
        ]
    );
    assert_eq!(
        compile_errors(json!({"type": "string"})),
        [r#"openAPIV3Schema.type: Invalid value: "string": must be object at the root"#]
    );
}

#[test]
fn unsupported_keywords() {
    assert_eq!(
        compile_errors(spec_schema(json!({
            "r": {"$ref": "#/definitions/x"},
            "u": {"type": "array", "items": {"type": "string"}, "uniqueItems": true},
            "p": {"type": "object", "patternProperties": {"a": {"type": "string"}}},
            "t": {"type": "array", "items": [{"type": "string"}]},
        }))),
        [
            format!("{SPEC}.properties[p].patternProperties: Forbidden: patternProperties is not supported"),
            format!("{SPEC}.properties[r].$ref: Forbidden: $ref is not supported"),
            format!("{SPEC}.properties[r].type: Required value: must not be empty for specified object fields"),
            format!("{SPEC}.properties[t].items: Forbidden: items must be a schema object and not an array"),
            format!(
                "{SPEC}.properties[u].uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic"
            ),
        ]
    );
}

#[test]
fn arrays_need_items() {
    assert_eq!(
        compile_errors(spec_schema(json!({"l": {"type": "array"}}))),
        [format!("{SPEC}.properties[l].items: Required value: must be specified")]
    );
}

#[test]
fn additional_properties_rules() {
    assert_eq!(
        compile_errors(json!({"type": "object", "additionalProperties": {"type": "string"}})),
        ["openAPIV3Schema.additionalProperties: Forbidden: must not be used at the root"]
    );
    assert_eq!(
        compile_errors(spec_schema(
            json!({"m": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "string"}}})
        )),
        [format!(
            "{SPEC}.properties[m].additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive"
        )]
    );
}

#[test]
fn value_validations_must_not_be_structural() {
    assert_eq!(
        compile_errors(spec_schema(json!({"x": {
            "type": "string",
            "anyOf": [{"type": "string", "minLength": 1}],
            "allOf": [{"default": "a", "description": "d", "nullable": true}],
            "oneOf": [{"x-kubernetes-validations": [{"rule": "true"}]}],
        }}))),
        [
            format!("{SPEC}.properties[x].allOf[0].default: Forbidden: must be undefined to be structural"),
            format!("{SPEC}.properties[x].allOf[0].description: Forbidden: must be empty to be structural"),
            format!("{SPEC}.properties[x].allOf[0].nullable: Forbidden: must be false to be structural"),
            format!("{SPEC}.properties[x].anyOf[0].type: Forbidden: must be empty to be structural"),
            format!(
                "{SPEC}.properties[x].oneOf[0].x-kubernetes-validations: Forbidden: must be empty to be structural"
            ),
        ]
    );
}

#[test]
fn value_validations_must_name_structural_fields() {
    assert_eq!(
        compile_errors(spec_schema(
            json!({"x": {"type": "object", "properties": {"a": {"type": "string"}}, "anyOf": [{"required": ["a"]}, {"properties": {"b": {"minLength": 1}}}]}})
        )),
        [format!(
            "{SPEC}.properties[x].properties[b]: Required value: because it is defined in {SPEC}.properties[x].anyOf[1].properties[b]"
        )]
    );
}

#[test]
fn int_or_string_patterns_may_name_types() {
    compile(spec_schema(json!({
        "a": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
        "b": {"x-kubernetes-int-or-string": true, "allOf": [{"anyOf": [{"type": "integer"}, {"type": "string"}]}, {"pattern": "^[0-9]+$"}]},
    })));
    assert_eq!(
        compile_errors(spec_schema(
            json!({"a": {"x-kubernetes-int-or-string": true, "x-kubernetes-preserve-unknown-fields": true}})
        )),
        [format!(
            "{SPEC}.properties[a].x-kubernetes-preserve-unknown-fields: Invalid value: true: must be false if x-kubernetes-int-or-string is true"
        )]
    );
}

#[test]
fn resource_metadata() {
    assert_eq!(
        compile_errors(
            json!({"type": "object", "properties": {"metadata": {"type": "object", "properties": {"labels": {"type": "object"}}}}})
        ),
        [
            "openAPIV3Schema.properties[metadata]: Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified"
        ]
    );
    compile(
        json!({"type": "object", "properties": {"metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20}}}}}),
    );
    assert_eq!(
        compile_errors(
            json!({"type": "object", "properties": {"metadata": {"type": "object", "properties": {"name": {"type": "string", "default": "x"}}}}})
        ),
        [
            "openAPIV3Schema.properties[metadata].properties[name].default: Forbidden: must not be set in top-level metadata"
        ]
    );
    assert_eq!(
        compile_errors(json!({"type": "object", "properties": {"kind": {"type": "integer"}}})),
        [r#"openAPIV3Schema.properties[kind].type: Invalid value: "integer": must be string"#]
    );
}

#[test]
fn embedded_resources() {
    assert_eq!(
        compile_errors(spec_schema(
            json!({"e": {"x-kubernetes-embedded-resource": true}, "f": {"type": "object", "x-kubernetes-embedded-resource": true}})
        )),
        [
            format!(
                "{SPEC}.properties[e].properties: Required value: must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields"
            ),
            format!(
                "{SPEC}.properties[e].type: Required value: must be object if x-kubernetes-embedded-resource is true"
            ),
            format!(
                "{SPEC}.properties[f].properties: Required value: must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields"
            ),
        ]
    );
}

#[test]
fn extension_values() {
    assert_eq!(
        compile_errors(spec_schema(json!({"a": {"type": "string", "x-kubernetes-preserve-unknown-fields": false}}))),
        [format!(
            "{SPEC}.properties[a].x-kubernetes-preserve-unknown-fields: Invalid value: false: must be true or undefined"
        )]
    );
    assert_eq!(
        compile_errors(json!({"type": "object", "nullable": true})),
        ["openAPIV3Schema.nullable: Forbidden: nullable cannot be true at the root"]
    );
}

#[test]
fn list_types() {
    assert_eq!(
        compile_errors(spec_schema(json!({
            "a": {"type": "string", "x-kubernetes-list-type": "set"},
            "b": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "bag"},
            "c": {"type": "array", "items": {"type": "object", "properties": {"k": {"type": "string"}}}, "x-kubernetes-list-type": "map"},
            "d": {"type": "array", "items": {"type": "object", "properties": {"k": {"type": "string"}}}, "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k", "z"]},
            "e": {"type": "array", "items": {"type": "string", "nullable": true}, "x-kubernetes-list-type": "set"},
        }))),
        [
            format!(
                r#"{SPEC}.properties[a].type: Invalid value: "string": must be array if x-kubernetes-list-type is specified"#
            ),
            format!(
                r#"{SPEC}.properties[b].x-kubernetes-list-type: Unsupported value: "bag": supported values: "atomic", "set", "map""#
            ),
            format!(
                "{SPEC}.properties[c].x-kubernetes-list-map-keys: Required value: must not be empty if x-kubernetes-list-type is map"
            ),
            format!(
                r#"{SPEC}.properties[d].items.properties[k].default: Required value: this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property"#
            ),
            format!(
                r#"{SPEC}.properties[d].x-kubernetes-list-map-keys: Invalid value: ["k","z"]: entries must all be names of item properties"#
            ),
            format!(
                "{SPEC}.properties[e].items.nullable: Forbidden: cannot be nullable when x-kubernetes-list-type is set"
            ),
        ]
    );
}

#[test]
fn patterns_must_compile() {
    let errors = compile_errors(spec_schema(json!({"a": {"type": "string", "pattern": "(unclosed"}})));
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with(&format!(r#"{SPEC}.properties[a].pattern: Invalid value: "(unclosed": must be a valid regular expression, but isn't: "#)),
        "{}",
        errors[0]
    );
}

#[test]
fn defaults_must_be_valid_and_pruned() {
    assert_eq!(
        compile_errors(spec_schema(json!({
            "port": {"type": "integer", "maximum": 65535, "default": 70000},
            "obj": {"type": "object", "properties": {"a": {"type": "string"}}, "default": {"a": "x", "b": 1}},
        }))),
        [
            format!(
                r#"{SPEC}.properties[obj].default: Invalid value: {{"a":"x","b":1}}: must not have unknown fields"#
            ),
            format!(
                "{SPEC}.properties[port].default: Invalid value: 70000:  in body should be less than or equal to 65535"
            ),
        ]
    );
}

#[test]
fn compile_at_names_the_crd_path() {
    let error = Schema::compile_at(&json!({"properties": {}}), "spec.versions[0].schema.openAPIV3Schema").unwrap_err();
    assert_eq!(
        error.to_string(),
        "spec.versions[0].schema.openAPIV3Schema.type: Required value: must not be empty at the root"
    );
    let error = Schema::compile(&json!({"type": "array"})).unwrap_err();
    assert_eq!(
        error.to_string(),
        r#"[openAPIV3Schema.items: Required value: must be specified, openAPIV3Schema.type: Invalid value: "array": must be object at the root]"#
    );
}

#[test]
fn malformed_keywords() {
    assert_eq!(
        compile_errors(spec_schema(json!({"a": {"type": "string", "maxLength": "ten"}, "b": "not a schema"}))),
        [
            format!(r#"{SPEC}.properties[a].maxLength: Invalid value: "ten": must be an integer"#),
            format!(r#"{SPEC}.properties[b]: Invalid value: "not a schema": must be a schema object"#),
        ]
    );
}
