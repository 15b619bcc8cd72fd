//! CEL costs: a CRD's rules over Kubernetes' limits are refused with its messages, and
//! evaluations over the runtime budget stop with its messages.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic

mod common;

use common::{compile, messages, object, spec_schema};
use machinist_apiserver_schema::Schema;
use serde_json::{Value, json};

const CRD_PATH: &str = "spec.validation.openAPIV3Schema";

fn cost_messages(schema: &Value) -> Vec<String> {
    let schema = Schema::compile_at(schema, CRD_PATH).unwrap();
    schema.cost_errors(true).iter().map(|e| e.message()).collect()
}

/// `validation_test.go`, "forbid validation rules where cost total exceeds total limit": a
/// `contains` on strings of up to 5,000 characters (20,000 bytes: 2,000 × 1 + 1 = 2,001 a call),
/// 100,000 times in the list (200,100,000), 1,000 times in the map (2,001,000), and a cheap rule
/// (4): the list's rule is over the per-expression limit (20.0x), both are over 1% of the total
/// limit, and the total, 202,101,004, is over it (2.0x).
#[test]
fn rules_over_the_limits_are_refused_with_kubernetes_messages() {
    let contains = json!([{"rule": "self.contains('keyword')"}]);
    let schema = json!({"type": "object", "properties": {
        "list": {"type": "array", "maxItems": 100000,
            "items": {"type": "string", "maxLength": 5000, "x-kubernetes-validations": contains}},
        "map": {"type": "object", "maxProperties": 1000,
            "additionalProperties": {"type": "string", "maxLength": 5000, "x-kubernetes-validations": contains}},
        "field": {"type": "integer", "x-kubernetes-validations": [{"rule": "self > 50 && self < 100"}]},
    }});
    let compiled = Schema::compile_at(&schema, CRD_PATH).unwrap();
    let report = compiled.estimated_costs();
    let totals: Vec<(&str, u64)> = report.expressions.iter().map(|e| (e.path.as_str(), e.total)).collect();
    assert_eq!(
        totals,
        [
            ("spec.validation.openAPIV3Schema.properties[field].x-kubernetes-validations[0].rule", 4),
            ("spec.validation.openAPIV3Schema.properties[list].items.x-kubernetes-validations[0].rule", 200_100_000),
            (
                "spec.validation.openAPIV3Schema.properties[map].additionalProperties.x-kubernetes-validations[0].rule",
                2_001_000
            ),
        ]
    );
    assert_eq!(report.total, 202_101_004);
    let advice = "(try simplifying the rule, or adding maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)";
    assert_eq!(
        cost_messages(&schema),
        [
            format!("spec.validation.openAPIV3Schema.properties[list].items.x-kubernetes-validations[0].rule: Forbidden: estimated rule cost exceeds budget by factor of 20.0x {advice}"),
            "spec.validation.openAPIV3Schema.properties[list].items.x-kubernetes-validations[0].rule: Forbidden: contributed to estimated rule cost total exceeding cost limit for entire OpenAPIv3 schema".to_owned(),
            "spec.validation.openAPIV3Schema.properties[map].additionalProperties.x-kubernetes-validations[0].rule: Forbidden: contributed to estimated rule cost total exceeding cost limit for entire OpenAPIv3 schema".to_owned(),
            format!("spec.validation.openAPIV3Schema: Forbidden: x-kubernetes-validations estimated rule cost total for entire OpenAPIv3 schema exceeds budget by factor of 2.0x {advice}"),
        ]
    );
    // An update that leaves the schema unchanged is not held to the per-expression limit.
    assert_eq!(compiled.cost_errors(false).len(), 3);
}

/// `validation_test.go`: "x-kubernetes-validations rule with lowerAscii check should be within
/// estimated cost limit", and the two cases of a `messageExpression` over the limits.
#[test]
fn message_expressions_count_and_bounded_rules_pass() {
    let within = json!({"type": "object", "properties": {"f": {
        "type": "array", "maxItems": 5, "items": {"type": "string", "maxLength": 5},
        "x-kubernetes-validations": [{"rule": "self.all(x, self.exists_one(y, x.lowerAscii() == y.lowerAscii()))"}],
    }}});
    assert_eq!(cost_messages(&within), Vec::<String>::new());

    let message = |expression: &str| {
        json!({"type": "object", "properties": {"f": {
            "type": "array", "items": {"type": "string"},
            "x-kubernetes-validations": [{"rule": "true", "messageExpression": expression}],
        }}})
    };
    let path = "spec.validation.openAPIV3Schema.properties[f].x-kubernetes-validations[0].messageExpression";
    let errors =
        cost_messages(&message("self[0] + self[1] + self[2] + self[3] + self[4] + self[5] + self[6] + self[7]"));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0]
            .starts_with(&format!("{path}: Forbidden: estimated messageExpression cost exceeds budget by factor of ")),
        "{errors:?}"
    );

    let errors = cost_messages(&message("string(self[0]) + string(self[1]) + string(self[2])"));
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors[0].starts_with(&format!(
        "{path}: Forbidden: estimated messageExpression cost exceeds budget by factor of more than 100x"
    )));
    assert_eq!(
        errors[1],
        format!(
            "{path}: Forbidden: contributed to estimated rule cost total exceeding cost limit for entire OpenAPIv3 schema"
        )
    );
    assert!(errors[2].starts_with("spec.validation.openAPIV3Schema: Forbidden: x-kubernetes-validations estimated rule cost total for entire OpenAPIv3 schema exceeds budget by factor of more than 100x"));
}

/// Unique names: `2 + 6n + 5n²` for n names of up to 4 characters; at most 2,003,002 by the
/// schema (500 names of up to 40 bytes), within the limits.
const UNIQUE: &str = "self.all(i, self.exists_one(j, j == i))";

fn names_schema() -> Value {
    json!({"type": "array", "maxItems": 500, "items": {"type": "string", "maxLength": 10},
        "x-kubernetes-validations": [{"rule": UNIQUE}]})
}

fn names(n: usize) -> Value {
    Value::from((0..n).map(|i| format!("n{i:03}")).collect::<Vec<_>>())
}

#[test]
fn an_evaluation_over_the_per_call_limit_stops_validation() {
    let schema = compile(spec_schema(json!({"names": names_schema(), "other": names_schema()})));
    // 400 names: 802,402.
    let mut fine = object(json!({"names": names(400)}));
    assert_eq!(messages(&schema.admit(&mut fine, None)), Vec::<String>::new());
    // 500 names: 1,253,002, over 1,000,000; the other list's failing rule is not run.
    let mut costly = object(json!({"names": names(500), "other": ["a", "a"]}));
    assert_eq!(
        messages(&schema.admit(&mut costly, None)),
        [format!(
            "spec.names: Invalid value: \"array\": 'operation cancelled: actual cost limit exceeded': no further validation rules will be run due to call cost exceeds limit for rule: {UNIQUE}"
        )]
    );
}

#[test]
fn evaluations_over_the_budget_stop_validation() {
    // Fifteen lists: 30,045,030 by the schema, within 100,000,000. With 400 names each, twelve
    // evaluations cost 9,628,824; the thirteenth would pass 10,000,000.
    let properties: serde_json::Map<String, Value> = (0..15).map(|i| (format!("l{i:02}"), names_schema())).collect();
    let schema = compile(spec_schema(Value::Object(properties)));
    assert_eq!(schema.cost_errors(true), []);
    let spec = |lists: usize| Value::Object((0..lists).map(|i| (format!("l{i:02}"), names(400))).collect());
    assert_eq!(messages(&schema.admit(&mut object(spec(12)), None)), Vec::<String>::new());
    assert_eq!(
        messages(&schema.admit(&mut object(spec(15)), None)),
        [
            "spec.l12: Invalid value: \"array\": validation failed due to running out of cost budget, no further validation rules will be run"
        ]
    );
}
