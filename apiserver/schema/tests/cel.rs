//! CEL validation rules (`x-kubernetes-validations`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic

mod common;

use common::{compile, compile_errors, messages, object, spec_schema};
use machinist_apiserver_schema::{ErrorKind, Schema};
use serde_json::{Value, json};

fn spec_with_rules(properties: Value, rules: Value) -> Schema {
    compile(
        json!({"type": "object", "properties": {"spec": {"type": "object", "properties": properties, "x-kubernetes-validations": rules}}}),
    )
}

fn create(schema: &Schema, spec: Value) -> Vec<String> {
    let mut obj = object(spec);
    messages(&schema.admit(&mut obj, None))
}

fn update(schema: &Schema, old_spec: Value, spec: Value) -> Vec<String> {
    let old = object(old_spec);
    let mut obj = object(spec);
    messages(&schema.admit(&mut obj, Some(&old)))
}

#[test]
fn failing_rule_reports_message_at_the_node_with_its_type() {
    let schema = spec_with_rules(
        json!({"min": {"type": "integer"}, "max": {"type": "integer"}}),
        json!([{"rule": "self.min <= self.max", "message": "min must not exceed max"}]),
    );
    assert_eq!(create(&schema, json!({"min": 1, "max": 2})), Vec::<String>::new());
    assert_eq!(
        create(&schema, json!({"min": 3, "max": 2})),
        [r#"spec: Invalid value: "object": min must not exceed max"#]
    );
}

#[test]
fn default_message_is_the_rule() {
    let schema = spec_with_rules(json!({"a": {"type": "integer"}}), json!([{"rule": "self.a > 0"}]));
    assert_eq!(create(&schema, json!({"a": 0})), [r#"spec: Invalid value: "object": failed rule: self.a > 0"#]);
}

#[test]
fn scalar_rules_report_the_type_not_the_value() {
    let schema = compile(spec_schema(
        json!({"name": {"type": "string", "x-kubernetes-validations": [{"rule": "self.startsWith('a')", "message": "must start with a"}]}}),
    ));
    assert_eq!(create(&schema, json!({"name": "bob"})), [r#"spec.name: Invalid value: "string": must start with a"#]);
}

#[test]
fn message_expression() {
    let schema = spec_with_rules(
        json!({"replicas": {"type": "integer"}, "max": {"type": "integer"}}),
        json!([
            {"rule": "self.replicas <= self.max", "messageExpression": "'replicas must be at most ' + string(self.max)", "message": "static"},
            {"rule": "self.replicas >= 0", "messageExpression": "''", "message": "replicas must not be negative"},
            {"rule": "self.replicas != 7", "messageExpression": "self.missing", "message": "not seven"},
        ]),
    );
    assert_eq!(
        create(&schema, json!({"replicas": 9, "max": 5})),
        [r#"spec: Invalid value: "object": replicas must be at most 5"#]
    );
    // An empty or failing messageExpression falls back to the message.
    assert_eq!(
        create(&schema, json!({"replicas": -1, "max": 5})),
        [r#"spec: Invalid value: "object": replicas must not be negative"#]
    );
    assert_eq!(create(&schema, json!({"replicas": 7, "max": 9})), [r#"spec: Invalid value: "object": not seven"#]);
}

#[test]
fn reasons_choose_the_error_type() {
    let schema = spec_with_rules(
        json!({"a": {"type": "integer"}}),
        json!([
            {"rule": "self.a != 1", "message": "forbidden", "reason": "FieldValueForbidden"},
            {"rule": "self.a != 2", "message": "required", "reason": "FieldValueRequired"},
            {"rule": "self.a != 3", "message": "duplicate", "reason": "FieldValueDuplicate"},
            {"rule": "self.a != 4", "message": "invalid", "reason": "FieldValueInvalid"},
        ]),
    );
    assert_eq!(create(&schema, json!({"a": 1})), ["spec: Forbidden: forbidden"]);
    assert_eq!(create(&schema, json!({"a": 2})), ["spec: Required value: required"]);
    assert_eq!(create(&schema, json!({"a": 3})), [r#"spec: Duplicate value: "object""#]);
    assert_eq!(create(&schema, json!({"a": 4})), [r#"spec: Invalid value: "object": invalid"#]);
    let mut obj = object(json!({"a": 1}));
    assert_eq!(schema.admit(&mut obj, None).errors[0].kind, ErrorKind::Forbidden);
}

#[test]
fn field_path_moves_the_error() {
    let schema = spec_with_rules(
        json!({"replicas": {"type": "integer"}, "labels": {"type": "object", "additionalProperties": {"type": "string"}}}),
        json!([
            {"rule": "self.replicas > 0", "message": "positive", "fieldPath": ".replicas"},
            {"rule": "!has(self.labels) || !('bad.key' in self.labels)", "message": "no bad key", "fieldPath": ".labels['bad.key']"},
        ]),
    );
    assert_eq!(create(&schema, json!({"replicas": 0})), [r#"spec.replicas: Invalid value: "object": positive"#]);
    assert_eq!(
        create(&schema, json!({"replicas": 1, "labels": {"bad.key": "x"}})),
        [r#"spec.labels[bad.key]: Invalid value: "object": no bad key"#]
    );
}

#[test]
fn rules_on_map_values_and_list_items_name_them() {
    let schema = compile(spec_schema(json!({
        "labels": {"type": "object", "additionalProperties": {"type": "string", "x-kubernetes-validations": [{"rule": "self.size() <= 3", "message": "short"}]}},
        "list": {"type": "array", "items": {"type": "integer", "x-kubernetes-validations": [{"rule": "self % 2 == 0", "message": "even"}]}},
    })));
    assert_eq!(
        create(&schema, json!({"labels": {"ok": "abc", "no": "abcd"}, "list": [2, 3]})),
        [r#"spec.labels[no]: Invalid value: "string": short"#, r#"spec.list[1]: Invalid value: "integer": even"#]
    );
}

#[test]
fn root_rules_have_a_nil_path_and_see_type_and_name() {
    let schema = compile(json!({
        "type": "object",
        "properties": {"spec": {"type": "object", "properties": {"prefix": {"type": "string"}}}},
        "x-kubernetes-validations": [
            {"rule": "self.metadata.name.startsWith(self.spec.prefix)", "message": "name must start with the prefix"},
            {"rule": "self.kind == 'Thing' && self.apiVersion == 'example.dev/v1'", "message": "type"},
        ],
    }));
    assert_eq!(create(&schema, json!({"prefix": "a"})), Vec::<String>::new());
    assert_eq!(
        create(&schema, json!({"prefix": "b"})),
        [r#"<nil>: Invalid value: "object": name must start with the prefix"#]
    );
}

#[test]
fn escaped_property_names() {
    let schema = spec_with_rules(
        json!({"x-y": {"type": "integer"}, "namespace": {"type": "string"}, "a_b": {"type": "integer"}}),
        json!([{"rule": "self.x__dash__y == self.a_b && self.__namespace__ == 'ns'", "message": "escaped"}]),
    );
    assert_eq!(create(&schema, json!({"x-y": 1, "a_b": 1, "namespace": "ns"})), Vec::<String>::new());
    assert_eq!(
        create(&schema, json!({"x-y": 1, "a_b": 2, "namespace": "ns"})),
        [r#"spec: Invalid value: "object": escaped"#]
    );
}

#[test]
fn null_and_absent_fields() {
    let schema = spec_with_rules(
        json!({
            "opt": {"type": "object", "nullable": true, "x-kubernetes-validations": [{"rule": "false", "message": "never on null"}], "properties": {}},
            "a": {"type": "string", "nullable": true},
        }),
        json!([{"rule": "!has(self.a)", "message": "a must be unset"}]),
    );
    // Rules do not run on null values, and null fields are absent in CEL.
    assert_eq!(create(&schema, json!({"opt": null, "a": null})), Vec::<String>::new());
    assert_eq!(create(&schema, json!({"a": "x"})), [r#"spec: Invalid value: "object": a must be unset"#]);
}

#[test]
fn formats_become_cel_types() {
    let schema = spec_with_rules(
        json!({
            "t": {"type": "string", "format": "date-time"},
            "d": {"type": "string", "format": "duration"},
            "q": {"x-kubernetes-int-or-string": true},
        }),
        json!([
            {"rule": "self.t < timestamp('2030-01-01T00:00:00Z')", "message": "before 2030"},
            {"rule": "self.d <= duration('1h')", "message": "at most an hour"},
            {"rule": "self.q != 0 && self.q != '0%'", "message": "q"},
        ]),
    );
    assert_eq!(create(&schema, json!({"t": "2024-01-01T00:00:00Z", "d": "30m", "q": "5%"})), Vec::<String>::new());
    assert_eq!(
        create(&schema, json!({"t": "2031-01-01T00:00:00Z", "d": "2h", "q": 0})),
        [
            r#"spec: Invalid value: "object": before 2030"#,
            r#"spec: Invalid value: "object": at most an hour"#,
            r#"spec: Invalid value: "object": q"#,
        ]
    );
}

#[test]
fn kubernetes_functions_are_available() {
    let schema = spec_with_rules(
        json!({"name": {"type": "string"}, "url": {"type": "string"}, "ips": {"type": "array", "items": {"type": "string"}}}),
        json!([
            {"rule": "self.name.lowerAscii() == self.name", "message": "lowercase"},
            {"rule": "isURL(self.url) && url(self.url).getScheme() == 'https'", "message": "https"},
            {"rule": "self.ips.all(i, isIP(i))", "message": "ips"},
            {"rule": "quantity('1Gi').isGreaterThan(quantity('1Mi'))", "message": "quantity"},
        ]),
    );
    assert_eq!(create(&schema, json!({"name": "a", "url": "https://x", "ips": ["10.0.0.1"]})), Vec::<String>::new());
    assert_eq!(
        create(&schema, json!({"name": "A", "url": "http://x", "ips": ["nope"]})),
        [
            r#"spec: Invalid value: "object": lowercase"#,
            r#"spec: Invalid value: "object": https"#,
            r#"spec: Invalid value: "object": ips"#
        ]
    );
}

#[test]
fn evaluation_errors_are_errors_not_panics() {
    let schema = spec_with_rules(
        json!({"a": {"type": "integer"}, "b": {"type": "integer"}}),
        json!([
            {"rule": "self.b > 0", "message": "b positive"},
            {"rule": "self.a / 0 == 1"},
            {"rule": "self.a + 'x' == 1"},
        ]),
    );
    let errors = create(&schema, json!({"a": 1}));
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert_eq!(errors[0], r#"spec: Invalid value: "object": no such key: b evaluating rule: b positive"#);
    assert!(
        errors[1].starts_with(r#"spec: Invalid value: "object": "#)
            && errors[1].ends_with("evaluating rule: self.a / 0 == 1"),
        "{}",
        errors[1]
    );
    assert_eq!(
        errors[2],
        r#"spec: Invalid value: "object": 'no such overload': call arguments did not match a supported operator, function or macro signature for rule: self.a + 'x' == 1"#
    );
}

#[test]
fn blocking_errors_skip_cel() {
    let schema = spec_with_rules(
        json!({"mode": {"type": "string", "enum": ["a"]}, "name": {"type": "string", "pattern": "^x"}}),
        json!([{"rule": "false", "message": "always fails"}]),
    );
    assert_eq!(
        create(&schema, json!({"mode": "b"})),
        [
            r#"spec.mode: Unsupported value: "b": supported values: "a""#,
            "<nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
        ]
    );
    // A pattern mismatch (Invalid) is not blocking.
    assert_eq!(
        create(&schema, json!({"name": "y"})),
        [
            r#"spec.name: Invalid value: "y": spec.name in body should match '^x'"#,
            r#"spec: Invalid value: "object": always fails"#
        ]
    );
}

#[test]
fn transition_rules_run_on_update_only() {
    let schema = compile(spec_schema(json!({
        "name": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "is immutable"}]},
        "size": {"type": "integer", "x-kubernetes-validations": [{"rule": "self >= oldSelf", "message": "may only grow", "reason": "FieldValueForbidden"}]},
    })));
    assert_eq!(create(&schema, json!({"name": "a", "size": 1})), Vec::<String>::new());
    assert_eq!(update(&schema, json!({"name": "a", "size": 2}), json!({"name": "a", "size": 3})), Vec::<String>::new());
    assert_eq!(
        update(&schema, json!({"name": "a", "size": 2}), json!({"name": "b", "size": 1})),
        [r#"spec.name: Invalid value: "string": is immutable"#, "spec.size: Forbidden: may only grow"]
    );
    // A field absent from the old object has no oldSelf: the rule does not run.
    assert_eq!(update(&schema, json!({}), json!({"name": "b"})), Vec::<String>::new());
}

#[test]
fn optional_old_self() {
    let schema = compile(spec_schema(json!({
        "size": {"type": "integer", "x-kubernetes-validations": [{
            "rule": "!oldSelf.hasValue() ? self <= 10 : self >= oldSelf.value()",
            "message": "starts at most 10, then only grows",
            "optionalOldSelf": true,
        }]},
    })));
    assert_eq!(create(&schema, json!({"size": 5})), Vec::<String>::new());
    assert_eq!(
        create(&schema, json!({"size": 11})),
        [r#"spec.size: Invalid value: "integer": starts at most 10, then only grows"#]
    );
    assert_eq!(update(&schema, json!({"size": 5}), json!({"size": 20})), Vec::<String>::new());
    assert_eq!(
        update(&schema, json!({"size": 20}), json!({"size": 6})),
        [r#"spec.size: Invalid value: "integer": starts at most 10, then only grows"#]
    );
}

#[test]
fn map_list_items_correlate_by_key() {
    let schema = compile(spec_schema(json!({
        "disks": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"], "items": {
            "type": "object", "required": ["name"],
            "properties": {"name": {"type": "string"}, "size": {"type": "integer"}},
            "x-kubernetes-validations": [{"rule": "self.size >= oldSelf.size", "message": "disks cannot shrink"}],
        }},
    })));
    let old = json!({"disks": [{"name": "a", "size": 10}, {"name": "b", "size": 20}]});
    // Reordered and grown: fine; a new disk has no old value.
    assert_eq!(
        update(
            &schema,
            old.clone(),
            json!({"disks": [{"name": "b", "size": 30}, {"name": "c", "size": 1}, {"name": "a", "size": 10}]})
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        update(&schema, old, json!({"disks": [{"name": "b", "size": 5}, {"name": "a", "size": 10}]})),
        [r#"spec.disks[0]: Invalid value: "object": disks cannot shrink"#]
    );
}

#[test]
fn ratcheting_keeps_unchanged_invalid_values() {
    // A stored object valid under an older schema: unchanged fields stay accepted on update.
    let schema = compile(spec_schema(json!({
        "name": {"type": "string", "maxLength": 3},
        "other": {"type": "string"},
        "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
        "limit": {"type": "integer", "x-kubernetes-validations": [{"rule": "self <= 5", "message": "at most 5"}]},
    })));
    let old = json!({"name": "toolong", "tags": ["a", "a"], "limit": 9});
    let mut obj = object(json!({"name": "toolong", "tags": ["a", "a"], "limit": 9, "other": "changed"}));
    let stored = object(old.clone());
    let admission = schema.admit(&mut obj, Some(&stored));
    assert_eq!(messages(&admission), Vec::<String>::new());
    assert_eq!(admission.warnings, [r#"spec.limit: Invalid value: "integer": at most 5"#]);
    // Changing them is validated again.
    assert_eq!(
        update(&schema, old.clone(), json!({"name": "toolong", "tags": ["a", "a"], "limit": 8})),
        [r#"spec.limit: Invalid value: "integer": at most 5"#]
    );
    assert_eq!(
        update(&schema, old.clone(), json!({"name": "toolong", "tags": ["b", "b"], "limit": 9})),
        Vec::<String>::new(),
        "the stored list had duplicates already"
    );
    assert_eq!(
        update(&schema, old, json!({"name": "stilltoolong", "limit": 9})),
        [
            "spec.name: Too long: may not be more than 3 bytes",
            "<nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
        ]
    );
}

#[test]
fn cel_errors_are_reported_at_compile_time() {
    let errors = compile_errors(
        json!({"type": "object", "properties": {"spec": {"type": "object", "x-kubernetes-validations": [
            {"rule": "self.a >"},
        ]}}}),
    );
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with(r#"openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule: Invalid value: {"rule":"self.a \u003e"}: compilation failed: ERROR: <input>:1:9: Syntax error: "#),
        "{}",
        errors[0]
    );
}

#[test]
fn rule_definitions_are_checked() {
    let errors = compile_errors(json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "a": {"type": "integer"},
        "list": {"type": "array", "items": {"type": "integer", "x-kubernetes-validations": [{"rule": "self >= oldSelf"}]}},
    }, "x-kubernetes-validations": [
        {"rule": " "},
        {"rule": "true", "message": "two\nlines"},
        {"rule": "true", "reason": "Nope"},
        {"rule": "true", "fieldPath": ".b"},
        {"rule": "true", "optionalOldSelf": true},
        {"rule": "true", "messageExpression": "'unterminated"},
    ]}}}));
    let p = "openAPIV3Schema.properties[spec]";
    assert_eq!(
        errors,
        [
            format!(r#"{p}.properties[list].items.x-kubernetes-validations[0].rule: Invalid value: "self >= oldSelf": oldSelf cannot be used on the uncorrelatable portion of the schema within {p}.properties[list]"#),
            format!(r#"{p}.x-kubernetes-validations[0].rule: Required value: rule is not specified"#),
            format!(r#"{p}.x-kubernetes-validations[1].message: Invalid value: "two\nlines": must not contain line breaks"#),
            format!(r#"{p}.x-kubernetes-validations[2].reason: Unsupported value: "Nope": supported values: "FieldValueDuplicate", "FieldValueForbidden", "FieldValueInvalid", "FieldValueRequired""#),
            format!(r#"{p}.x-kubernetes-validations[3].fieldPath: Invalid value: ".b": must be a valid path"#),
            format!(r#"{p}.x-kubernetes-validations[4].optionalOldSelf: Invalid value: true: may not be set if oldSelf is not used in rule"#),
        ]
        .into_iter()
        .chain(errors.iter().filter(|e| e.contains("messageExpression compilation failed")).cloned())
        .collect::<Vec<_>>()
    );
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with(&format!("{p}.x-kubernetes-validations[5].messageExpression: Invalid value: ")))
    );
}

#[test]
fn defaults_are_checked_against_rules() {
    let errors = compile_errors(spec_schema(json!({
        "size": {"type": "integer", "default": 20, "x-kubernetes-validations": [{"rule": "self <= 10", "message": "at most 10"}]},
    })));
    assert_eq!(
        errors,
        [r#"openAPIV3Schema.properties[spec].properties[size].default: Invalid value: "integer": at most 10"#]
    );
}

#[test]
fn root_rule_field_path() {
    let schema = compile(json!({
        "type": "object",
        "properties": {"spec": {"type": "object", "properties": {"replicas": {"type": "integer"}}}},
        "x-kubernetes-validations": [{"rule": "self.spec.replicas < 10", "message": "too many", "fieldPath": ".spec.replicas"}],
    }));
    assert_eq!(create(&schema, json!({"replicas": 20})), [r#"spec.replicas: Invalid value: "object": too many"#]);
}

#[test]
fn prior_errors_come_first_and_can_block_cel() {
    use machinist_apiserver_schema::{AdmitOptions, FieldError};
    let schema = spec_with_rules(json!({"a": {"type": "integer"}}), json!([{"rule": "false", "message": "fails"}]));
    let admit = |prior: FieldError| {
        let mut obj = object(json!({"a": 1}));
        messages(&schema.admit_with(&mut obj, AdmitOptions { prior_errors: vec![prior], ..AdmitOptions::default() }))
    };
    assert_eq!(
        admit(FieldError::invalid("metadata.name", json!("A"), "bad name")),
        [r#"metadata.name: Invalid value: "A": bad name"#, r#"spec: Invalid value: "object": fails"#]
    );
    assert_eq!(
        admit(FieldError::required("metadata.name", "name or generateName is required")),
        [
            "metadata.name: Required value: name or generateName is required",
            "<nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
        ]
    );
}

#[test]
fn embedded_resources_are_resources_in_cel() {
    let schema = compile(spec_schema(json!({
        "template": {
            "type": "object",
            "x-kubernetes-embedded-resource": true,
            "x-kubernetes-preserve-unknown-fields": true,
            "x-kubernetes-validations": [{"rule": "self.kind == 'ConfigMap' && self.metadata.name.startsWith('cm-')", "message": "a cm- ConfigMap"}],
        },
    })));
    assert_eq!(
        create(&schema, json!({"template": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm-a"}}})),
        Vec::<String>::new()
    );
    assert_eq!(
        create(&schema, json!({"template": {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cm-a"}}})),
        [r#"spec.template: Invalid value: "object": a cm- ConfigMap"#]
    );
}
