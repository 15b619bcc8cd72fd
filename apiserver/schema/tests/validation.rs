//! OpenAPI value validation: each keyword, with the API server's exact messages.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic

mod common;

use common::{assert_valid, compile, messages, object, spec_errors, spec_schema};
use machinist_apiserver_schema::ErrorKind;
use serde_json::json;

#[test]
fn integer_and_number_types() {
    let props = json!({"n": {"type": "integer"}, "f": {"type": "number"}});
    assert_valid(props.clone(), json!({"n": 2, "f": 5}));
    assert_valid(props.clone(), json!({"n": 2.0, "f": 1.5}));
    assert_eq!(
        spec_errors(props.clone(), json!({"n": 1.5})),
        [r#"spec.n: Invalid value: "number": spec.n in body must be of type integer: "number""#]
    );
    assert_eq!(
        spec_errors(props.clone(), json!({"n": "string"})),
        [r#"spec.n: Invalid value: "string": spec.n in body must be of type integer: "string""#]
    );
    assert_eq!(
        spec_errors(props, json!({"f": "1.5"})),
        [r#"spec.f: Invalid value: "string": spec.f in body must be of type number: "string""#]
    );
}

#[test]
fn vcpus_type_message_from_the_brief() {
    assert_eq!(
        spec_errors(json!({"vcpus": {"type": "integer"}}), json!({"vcpus": "string"})),
        [r#"spec.vcpus: Invalid value: "string": spec.vcpus in body must be of type integer: "string""#]
    );
}

#[test]
fn other_types() {
    let props = json!({"b": {"type": "boolean"}, "o": {"type": "object"}, "l": {"type": "array", "items": {"type": "string"}}, "s": {"type": "string"}});
    assert_eq!(
        spec_errors(props.clone(), json!({"b": "true", "o": [], "l": {}, "s": 1})),
        [
            r#"spec.b: Invalid value: "string": spec.b in body must be of type boolean: "string""#,
            r#"spec.l: Invalid value: "object": spec.l in body must be of type array: "object""#,
            r#"spec.o: Invalid value: "array": spec.o in body must be of type object: "array""#,
            r#"spec.s: Invalid value: "integer": spec.s in body must be of type string: "integer""#,
        ]
    );
    assert_eq!(
        spec_errors(props, json!({"l": ["a", null]})),
        [r#"spec.l[1]: Invalid value: "null": spec.l[1] in body must be of type string: "null""#]
    );
}

#[test]
fn int_or_string() {
    let props = json!({"port": {"x-kubernetes-int-or-string": true}});
    assert_valid(props.clone(), json!({"port": 8080}));
    assert_valid(props.clone(), json!({"port": "http"}));
    assert_eq!(
        spec_errors(props.clone(), json!({"port": true})),
        [r#"spec.port: Invalid value: "boolean": spec.port in body must be of type integer,string: "boolean""#]
    );
    assert_eq!(
        spec_errors(props.clone(), json!({"port": 1.5})),
        [r#"spec.port: Invalid value: "number": spec.port in body must be of type integer,string: "number""#]
    );
    // With the anyOf form kube-builder generates.
    let any_of = json!({"port": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}], "pattern": "^[0-9]+%?$"}});
    assert_valid(any_of.clone(), json!({"port": "50%"}));
    assert_valid(any_of.clone(), json!({"port": 3}));
    assert_eq!(
        spec_errors(any_of, json!({"port": "x"})),
        [r#"spec.port: Invalid value: "x": spec.port in body should match '^[0-9]+%?$'"#]
    );
}

#[test]
fn nulls() {
    let props = json!({
        "plain": {"type": "string"},
        "nullable": {"type": "string", "nullable": true},
        "defaulted": {"type": "string", "default": "d"},
        "required": {"type": "string"},
    });
    let schema = compile(
        json!({"type": "object", "properties": {"spec": {"type": "object", "properties": props, "required": ["required"]}}}),
    );
    let mut obj = object(json!({"plain": null, "nullable": null, "defaulted": null, "required": null}));
    let admission = schema.admit(&mut obj, None);
    // Non-nullable nulls without default are dropped, with a default they are defaulted.
    assert_eq!(obj["spec"], json!({"nullable": null, "defaulted": "d"}));
    assert_eq!(messages(&admission), ["spec.required: Required value"]);
    assert!(admission.pruned.is_empty(), "dropped nulls are not unknown fields");
}

#[test]
fn formats_the_api_server_checks() {
    let props = json!({
        "t": {"type": "string", "format": "date-time"},
        "d": {"type": "string", "format": "date"},
        "b": {"type": "string", "format": "byte"},
        "u": {"type": "string", "format": "uuid"},
        "dur": {"type": "string", "format": "duration"},
        "other": {"type": "string", "format": "kubernetes-thing"},
        "i32": {"type": "integer", "format": "int32"},
    });
    assert_valid(
        props.clone(),
        json!({"t": "2024-05-01T10:00:00Z", "d": "2024-05-01", "b": "aGVsbG8=", "u": "123e4567-e89b-12d3-a456-426614174000", "dur": "1h30m", "other": "anything", "i32": 3_000_000_000_i64}),
    );
    assert_eq!(
        spec_errors(props, json!({"t": "yesterday", "d": "2024-02-30", "b": "zz", "u": "x", "dur": "soon"})),
        [
            r#"spec.b: Invalid value: "zz": spec.b in body must be of type byte: "zz""#,
            r#"spec.d: Invalid value: "2024-02-30": spec.d in body must be of type date: "2024-02-30""#,
            r#"spec.dur: Invalid value: "soon": spec.dur in body must be of type duration: "soon""#,
            r#"spec.t: Invalid value: "yesterday": spec.t in body must be of type date-time: "yesterday""#,
            r#"spec.u: Invalid value: "x": spec.u in body must be of type uuid: "x""#,
        ]
    );
}

#[test]
fn format_errors_are_type_errors() {
    let schema = compile(spec_schema(json!({"t": {"type": "string", "format": "date-time"}})));
    let mut obj = object(json!({"t": "x"}));
    let admission = schema.admit(&mut obj, None);
    assert_eq!(admission.errors[0].kind, ErrorKind::TypeInvalid);
    assert_eq!(admission.errors[0].reason(), "FieldValueTypeInvalid");
}

#[test]
fn enums() {
    let props = json!({
        "mode": {"type": "string", "enum": ["http", "tcp"]},
        "n": {"type": "integer", "enum": [1, 2]},
        "m": {"type": "string", "nullable": true, "enum": ["a"]},
    });
    assert_valid(props.clone(), json!({"mode": "tcp", "n": 2}));
    assert_eq!(
        spec_errors(props.clone(), json!({"mode": "x"})),
        [r#"spec.mode: Unsupported value: "x": supported values: "http", "tcp""#]
    );
    assert_eq!(
        spec_errors(props.clone(), json!({"n": 3})),
        [r#"spec.n: Unsupported value: 3: supported values: "1", "2""#]
    );
    // The API server never matches null against an enum, nullable or not.
    assert_eq!(spec_errors(props, json!({"m": null})), [r#"spec.m: Unsupported value: null: supported values: "a""#]);
}

#[test]
fn patterns() {
    let props = json!({"interfaces": {"type": "array", "items": {"type": "object", "properties": {
        "mac": {"type": "string", "pattern": "^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$"},
    }}}, "digits": {"type": "string", "pattern": "^\\d+$"}});
    assert_valid(props.clone(), json!({"interfaces": [{"mac": "aa:bb:cc:dd:ee:ff"}], "digits": "42"}));
    assert_eq!(
        spec_errors(props.clone(), json!({"interfaces": [{"mac": "zz"}]})),
        [
            r#"spec.interfaces[0].mac: Invalid value: "zz": spec.interfaces[0].mac in body should match '^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$'"#
        ]
    );
    // Go's \d is ASCII only.
    assert_eq!(
        spec_errors(props, json!({"digits": "٤٢"})),
        [r#"spec.digits: Invalid value: "٤٢": spec.digits in body should match '^\d+$'"#]
    );
}

#[test]
fn numeric_bounds() {
    let props = json!({
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "exclusive": {"type": "integer", "minimum": 0, "exclusiveMinimum": true, "maximum": 10, "exclusiveMaximum": true},
        "ratio": {"type": "number", "maximum": 1.25},
        "big": {"type": "number", "maximum": 1_000_000},
    });
    assert_valid(props.clone(), json!({"port": 65535, "exclusive": 9, "ratio": 1.25}));
    assert_eq!(
        spec_errors(props.clone(), json!({"port": 70000})),
        ["spec.port: Invalid value: 70000: spec.port in body should be less than or equal to 65535"]
    );
    assert_eq!(
        spec_errors(props.clone(), json!({"port": 0})),
        ["spec.port: Invalid value: 0: spec.port in body should be greater than or equal to 1"]
    );
    assert_eq!(
        spec_errors(props.clone(), json!({"exclusive": 10})),
        ["spec.exclusive: Invalid value: 10: spec.exclusive in body should be less than 10"]
    );
    assert_eq!(
        spec_errors(props.clone(), json!({"exclusive": 0})),
        ["spec.exclusive: Invalid value: 0: spec.exclusive in body should be greater than 0"]
    );
    assert_eq!(
        spec_errors(props.clone(), json!({"ratio": 1.5})),
        ["spec.ratio: Invalid value: 1.5: spec.ratio in body should be less than or equal to 1.25"]
    );
    assert_eq!(
        spec_errors(props, json!({"big": 2.5e6})),
        ["spec.big: Invalid value: 2.5e+06: spec.big in body should be less than or equal to 1e+06"]
    );
}

#[test]
fn multiple_of() {
    let props = json!({"n": {"type": "integer", "multipleOf": 5}, "f": {"type": "number", "multipleOf": 0.1}});
    assert_valid(props.clone(), json!({"n": 15, "f": 0.3}));
    assert_eq!(
        spec_errors(props.clone(), json!({"n": 7})),
        ["spec.n: Invalid value: 7: spec.n in body should be a multiple of 5"]
    );
    assert_eq!(
        spec_errors(props, json!({"f": 0.35})),
        ["spec.f: Invalid value: 0.35: spec.f in body should be a multiple of 0.1"]
    );
}

#[test]
fn string_lengths_count_characters() {
    let props =
        json!({"name": {"type": "string", "minLength": 1, "maxLength": 3}, "one": {"type": "string", "maxLength": 1}});
    assert_valid(props.clone(), json!({"name": "ééé"}));
    assert_eq!(
        spec_errors(props.clone(), json!({"name": "abcd"})),
        ["spec.name: Too long: may not be more than 3 bytes"]
    );
    assert_eq!(spec_errors(props.clone(), json!({"one": "ab"})), ["spec.one: Too long: may not be more than 1 byte"]);
    assert_eq!(
        spec_errors(props, json!({"name": ""})),
        [r#"spec.name: Invalid value: "": spec.name in body should be at least 1 chars long"#]
    );
}

#[test]
fn array_sizes() {
    let props = json!({"l": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 2}, "one": {"type": "array", "items": {"type": "string"}, "maxItems": 1}});
    assert_valid(props.clone(), json!({"l": ["a"]}));
    assert_eq!(
        spec_errors(props.clone(), json!({"l": []})),
        ["spec.l: Invalid value: 0: spec.l in body should have at least 1 items"]
    );
    assert_eq!(
        spec_errors(props.clone(), json!({"l": ["a", "b", "c"]})),
        ["spec.l: Too many: 3: must have at most 2 items"]
    );
    assert_eq!(spec_errors(props, json!({"one": ["a", "b"]})), ["spec.one: Too many: 2: must have at most 1 item"]);
}

#[test]
fn object_sizes_and_required() {
    let schema = json!({"type": "object", "required": ["spec"], "properties": {"spec": {
        "type": "object",
        "required": ["selector"],
        "properties": {
            "selector": {"type": "string"},
            "m": {"type": "object", "additionalProperties": {"type": "string"}, "minProperties": 1, "maxProperties": 2},
        },
    }}});
    let schema = compile(schema);
    let admit = |spec: serde_json::Value| {
        let mut obj = object(spec);
        messages(&schema.admit(&mut obj, None))
    };
    assert_eq!(admit(json!({"selector": "x", "m": {"a": "1"}})), Vec::<String>::new());
    assert_eq!(admit(json!({"m": {"a": "1"}})), ["spec.selector: Required value"]);
    assert_eq!(
        admit(json!({"selector": "x", "m": {}})),
        ["spec.m: Invalid value: 0: spec.m in body should have at least 1 properties"]
    );
    assert_eq!(
        admit(json!({"selector": "x", "m": {"a": "1", "b": "2", "c": "3"}})),
        ["spec.m: Too many: 3: must have at most 2 items"]
    );
    let mut no_spec = serde_json::json!({"apiVersion": "example.dev/v1", "kind": "Thing", "metadata": {"name": "a"}});
    assert_eq!(messages(&schema.admit(&mut no_spec, None)), ["spec: Required value"]);
}

#[test]
fn map_values_use_dotted_paths_in_schema_errors() {
    assert_eq!(
        spec_errors(
            json!({"labels": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 3}}}),
            json!({"labels": {"app": 5, "tier": "frontend"}})
        ),
        [
            r#"spec.labels.app: Invalid value: "integer": spec.labels.app in body must be of type string: "integer""#,
            "spec.labels.tier: Too long: may not be more than 3 bytes",
        ]
    );
}

#[test]
fn any_of() {
    let props = json!({"n": {"type": "integer", "anyOf": [{"minimum": 10}, {"maximum": 0}]}});
    assert_valid(props.clone(), json!({"n": 12}));
    assert_valid(props.clone(), json!({"n": -1}));
    assert_eq!(
        spec_errors(props, json!({"n": 5})),
        [
            r#"<nil>: Invalid value: "": "spec.n" must validate at least one schema (anyOf)"#,
            "spec.n: Invalid value: 5: spec.n in body should be greater than or equal to 10",
        ]
    );
}

#[test]
fn one_of() {
    let props = json!({"n": {"type": "integer", "oneOf": [{"minimum": 10}, {"maximum": 20}]}});
    assert_valid(props.clone(), json!({"n": 25}));
    assert_eq!(
        spec_errors(props, json!({"n": 15})),
        [
            r#"<nil>: Invalid value: "": "spec.n" must validate one and only one schema (oneOf). Found 2 valid alternatives"#
        ]
    );
    let required = json!({"s": {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}, "oneOf": [{"required": ["a"]}, {"required": ["b"]}]}});
    assert_valid(required.clone(), json!({"s": {"a": "x"}}));
    assert_eq!(
        spec_errors(required, json!({"s": {}})),
        [
            r#"<nil>: Invalid value: "": "spec.s" must validate one and only one schema (oneOf). Found none valid"#,
            "spec.s.a: Required value",
        ]
    );
}

#[test]
fn all_of_and_not() {
    let props = json!({"n": {"type": "integer", "allOf": [{"minimum": 0}, {"maximum": 10}], "not": {"enum": [5]}}});
    assert_valid(props.clone(), json!({"n": 3}));
    assert_eq!(
        spec_errors(props.clone(), json!({"n": 11})),
        [
            "spec.n: Invalid value: 11: spec.n in body should be less than or equal to 10",
            r#"<nil>: Invalid value: "": "spec.n" must validate all the schemas (allOf)"#,
        ]
    );
    assert_eq!(
        spec_errors(props, json!({"n": 5})),
        [r#"<nil>: Invalid value: "": "spec.n" must not validate the schema (not)"#]
    );
    let none = json!({"n": {"type": "integer", "allOf": [{"minimum": 10}, {"minimum": 20}]}});
    assert_eq!(
        spec_errors(none, json!({"n": 1})),
        [
            "spec.n: Invalid value: 1: spec.n in body should be greater than or equal to 10",
            "spec.n: Invalid value: 1: spec.n in body should be greater than or equal to 20",
            r#"<nil>: Invalid value: "": "spec.n" must validate all the schemas (allOf). None validated"#,
        ]
    );
}

#[test]
fn list_type_set() {
    let props = json!({"tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}, "nums": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "number"}}});
    assert_valid(props.clone(), json!({"tags": ["a", "b"], "nums": [1, 1.5]}));
    // Only the second occurrence of each value is reported.
    assert_eq!(
        spec_errors(props.clone(), json!({"tags": ["a", "b", "a", "a", "b"]})),
        [r#"spec.tags[2]: Duplicate value: "a""#, r#"spec.tags[4]: Duplicate value: "b""#]
    );
    assert_eq!(spec_errors(props, json!({"nums": [1, 2, 1]})), ["spec.nums[2]: Duplicate value: 1"]);
}

#[test]
fn list_type_map() {
    let props = json!({
        "interfaces": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["mac"], "items": {
            "type": "object", "required": ["mac"], "properties": {"mac": {"type": "string"}, "name": {"type": "string"}},
        }},
        "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["port", "protocol"], "items": {
            "type": "object", "required": ["port"], "properties": {"port": {"type": "integer"}, "protocol": {"type": "string", "default": "TCP"}},
        }},
    });
    assert_valid(
        props.clone(),
        json!({"interfaces": [{"mac": "a"}, {"mac": "b"}], "ports": [{"port": 80}, {"port": 80, "protocol": "UDP"}]}),
    );
    assert_eq!(
        spec_errors(props.clone(), json!({"interfaces": [{"mac": "a", "name": "x"}, {"mac": "a", "name": "y"}]})),
        [r#"spec.interfaces[1]: Duplicate value: {"mac":"a"}"#]
    );
    // The defaulted key takes part in the tuple.
    assert_eq!(
        spec_errors(props.clone(), json!({"ports": [{"port": 80}, {"port": 80, "protocol": "TCP"}]})),
        [r#"spec.ports[1]: Duplicate value: {"port":80,"protocol":"TCP"}"#]
    );
    // Map keys are required by the item schema.
    assert_eq!(spec_errors(props, json!({"interfaces": [{"name": "x"}]})), ["spec.interfaces[0].mac: Required value"]);
}

#[test]
fn list_map_items_must_be_objects() {
    let props = json!({"l": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k"], "items": {
        "type": "object", "required": ["k"], "properties": {"k": {"type": "string"}},
    }}});
    assert_eq!(
        spec_errors(props, json!({"l": [{"k": "a"}, "x"]})),
        [
            r#"spec.l[1]: Invalid value: "string": spec.l[1] in body must be of type object: "string""#,
            r#"spec.l[1]: Invalid value: "x": must be an object for an array of list-type map"#,
        ]
    );
}

#[test]
fn embedded_resources_are_validated() {
    let props = json!({"template": {"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true}});
    assert_valid(
        props.clone(),
        json!({"template": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}}),
    );
    assert_eq!(
        spec_errors(props.clone(), json!({"template": {"metadata": {"name": "x"}}})),
        ["spec.template.apiVersion: Required value", "spec.template.kind: Required value"]
    );
    assert_eq!(
        spec_errors(
            props.clone(),
            json!({"template": {"apiVersion": "a/b/c", "kind": "Config_Map", "metadata": {"name": "a/b"}}})
        ),
        [
            r#"spec.template.apiVersion: Invalid value: "a/b/c": unexpected GroupVersion string: a/b/c"#,
            r#"spec.template.kind: Invalid value: "Config_Map": may have mixed case, but should otherwise match: a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"#,
            r#"spec.template.metadata.name: Invalid value: "a/b": may not contain '/'"#,
        ]
    );
    assert_eq!(
        spec_errors(props, json!({"template": {"apiVersion": 1, "kind": "X"}})),
        ["spec.template.apiVersion: Invalid value: 1: must be a string"]
    );
}

#[test]
fn status_subresource_paths_are_relative_to_status() {
    let schema = compile(json!({"type": "object", "properties": {
        "spec": {"type": "object", "properties": {"n": {"type": "integer", "maximum": 1}}},
        "status": {"type": "object", "properties": {"phase": {"type": "string", "enum": ["Ready"]}, "count": {"type": "integer", "maximum": 3}}},
    }}));
    let old = json!({"apiVersion": "example.dev/v1", "kind": "Thing", "metadata": {"name": "a"}, "spec": {"n": 5}});
    let mut new = old.clone();
    new["status"] = json!({"phase": "Nope", "count": 4});
    let admission = schema.admit_status(&mut new, &old);
    assert_eq!(
        messages(&admission),
        [
            "status.count: Invalid value: 4: count in body should be less than or equal to 3",
            r#"status.phase: Unsupported value: "Nope": supported values: "Ready""#,
        ]
    );
}
