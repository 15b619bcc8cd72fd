//! The estimator against the figures of Kubernetes' own tests: every case of
//! `TestCostEstimation` in `apiextensions-apiserver/pkg/apiserver/schema/cel/compilation_test.go`
//! (Kubernetes 1.34), named as there, each with its cost without bounds (`expectedCalcCost`) and
//! with the case's bound (`expectedSetCost`); and the CRD-level cases of
//! `apis/apiextensions/validation/validation_test.go`.

use serde_json::{Value, json};

use super::*;
use crate::compile::compile;

/// The schema `f` under an object root, so that any type can be the node with the rule.
fn with_rule(mut schema: Value, rule: &str) -> Value {
    schema["x-kubernetes-validations"] = json!([{"rule": rule}]);
    json!({"type": "object", "properties": {"f": schema}})
}

/// The estimated (maximum) cost of the one rule of `f`.
fn cost_of(root: &Value) -> u64 {
    let node = compile(root, "s").unwrap_or_else(|e| panic!("{e:?}"));
    let f = &node.properties["f"];
    let decl = f.decl.as_ref().expect("a CEL declaration");
    let program = f.rules[0].program.as_ref().expect("a compiled rule");
    estimate(program.expression(), decl, &SchemaSizes { root: decl }, false).max
}

fn scalar(ty: &str) -> Value {
    match ty {
        "duration" | "date" | "date-time" => json!({"type": "string", "format": ty}),
        "int-or-string" => json!({"x-kubernetes-int-or-string": true}),
        _ => json!({"type": ty}),
    }
}

fn bound(mut schema: Value, keyword: &str, max: Option<i64>) -> Value {
    if let Some(max) = max {
        schema[keyword] = json!(max);
    }
    schema
}

fn array(ty: &str) -> impl Fn(Option<i64>) -> Value {
    let ty = ty.to_owned();
    move |max| bound(json!({"type": "array", "items": scalar(&ty)}), "maxItems", max)
}

fn array_of(items: Value) -> impl Fn(Option<i64>) -> Value {
    move |max| bound(json!({"type": "array", "items": items.clone()}), "maxItems", max)
}

fn map(ty: &str) -> impl Fn(Option<i64>) -> Value {
    let ty = ty.to_owned();
    move |max| bound(json!({"type": "object", "additionalProperties": scalar(&ty)}), "maxProperties", max)
}

fn map_of(values: Value) -> impl Fn(Option<i64>) -> Value {
    move |max| bound(json!({"type": "object", "additionalProperties": values.clone()}), "maxProperties", max)
}

fn string(max: Option<i64>) -> Value {
    bound(json!({"type": "string"}), "maxLength", max)
}

fn required_object() -> Value {
    json!({"type": "object", "required": ["required"], "properties": {
        "required": {"type": "string"}, "optional": {"type": "string"},
    }})
}

/// One case: the schema for a bound (`None`: unbounded), the rule, the cost unbounded (`None`:
/// over 100,000,000, as the case says), the bound and the cost with it.
struct Case {
    name: &'static str,
    schema: Box<dyn Fn(Option<i64>) -> Value>,
    rule: &'static str,
    calc: Option<u64>,
    set_max: i64,
    set: u64,
}

fn case(
    name: &'static str,
    schema: impl Fn(Option<i64>) -> Value + 'static,
    rule: &'static str,
    calc: Option<u64>,
    set_max: i64,
    set: u64,
) -> Case {
    Case { name, schema: Box::new(schema), rule, calc, set_max, set }
}

#[test]
fn estimates_match_kubernetes_test_cost_estimation() {
    let cases = [
        case("number array with all", array("number"), "self.all(x, true)", Some(4_718_591), 10, 32),
        case("string array with all", array("string"), "self.all(x, true)", Some(3_145_727), 20, 62),
        case("boolean array with all", array("boolean"), "self.all(x, true)", Some(1_887_437), 5, 17),
        case(
            "array of number arrays with all",
            array_of(json!({"type": "array", "items": {"type": "number"}})),
            "self.all(x, true)",
            Some(3_145_727),
            100,
            302,
        ),
        case("array of objects with all", array_of(required_object()), "self.all(x, true)", Some(555_128), 50, 152),
        case("map of numbers with all", map("number"), "self.all(x, true)", Some(1_348_169), 10, 32),
        case("map of strings with all", map("string"), "self.all(x, true)", Some(1_179_647), 3, 11),
        case("map of booleans with all", map("boolean"), "self.all(x, true)", Some(943_718), 100, 302),
        case("string with contains", string, "self.contains('test')", Some(314_574), 10, 5),
        case("string with startsWith", string, "self.startsWith('test')", Some(2), 15, 2),
        case("string with endsWith", string, "self.endsWith('test')", Some(2), 30, 2),
        case("concat string", string, r#"size(self + "hello") > size("hello")"#, Some(314_578), 4, 7),
        case("index of array with numbers", array("number"), "self[1] == 0.0", Some(2), 5000, 2),
        case("index of array with strings", array("string"), "self[1] == self[1]", Some(314_577), 8, 314_577),
        case("O(n^2) loop with numbers", array("number"), "self.all(x, self.all(y, true))", None, 10, 352),
        case(
            "O(n^3) loop with numbers",
            array("number"),
            "self.all(x, self.all(y, self.all(z, true)))",
            None,
            10,
            3552,
        ),
        case("regex matches simple", string, r#"self.matches("x")"#, Some(314_574), 50, 22),
        case("regex matches empty string", string, r#""".matches("(((((((((())))))))))[0-9]")"#, Some(7), 10, 7),
        case("regex matches empty regex", string, r#"self.matches("")"#, Some(1), 100, 1),
        case(
            "map of strings with value length",
            |max| bound(json!({"type": "object", "additionalProperties": string(max)}), "maxProperties", max),
            "self.all(x, x.contains(self[x]))",
            Some(2_752_507),
            10,
            72,
        ),
        case("set array maxLength to zero", array("number"), "self[3] == 0.0", Some(2), 0, 2),
        case("set map maxLength to zero", map("number"), r#"self["x"] == 0.0"#, Some(2), 0, 2),
        case("set string maxLength to zero", string, r#"self == "x""#, Some(2), 0, 1),
        case(
            "set bytes maxLength to zero",
            |max| bound(json!({"type": "string", "format": "byte"}), "maxLength", max),
            r#"self == b"x""#,
            Some(2),
            0,
            1,
        ),
        case(
            "set maxLength greater than estimated maxLength",
            array("number"),
            "self.all(x, x == 0.0)",
            Some(6_291_454),
            3 * 1024 * 2048,
            25_165_826,
        ),
        case(
            "nested types with root rule with all supporting maxLength",
            |max| {
                let inner = bound(required_object(), "maxProperties", max);
                let items = bound(json!({"type": "object", "additionalProperties": inner}), "maxProperties", max);
                bound(json!({"type": "array", "items": items}), "maxItems", max)
            },
            r#"self.all(x, x["y"].required == "z")"#,
            Some(7_340_027),
            10,
            72,
        ),
        case(
            "nested types with root rule with one supporting maxLength",
            |max| {
                let items =
                    bound(json!({"type": "object", "additionalProperties": required_object()}), "maxProperties", max);
                json!({"type": "array", "items": items})
            },
            r#"self.all(x, x["y"].required == "z")"#,
            Some(7_340_027),
            10,
            7_340_027,
        ),
        case("int-or-string array with all", array("int-or-string"), "self.all(x, true)", Some(4_718_591), 10, 32),
        case("index of array with int-or-strings", array("int-or-string"), "self[0] == 5", Some(3), 10, 3),
        case("index of array with booleans", array("boolean"), "self[0] == false", Some(2), 25, 2),
        case("index of array of objects", array_of(required_object()), "self[0] == null", Some(2), 422, 2),
        case(
            "index of array of array of numnbers",
            array_of(json!({"type": "array", "items": {"type": "number"}})),
            "self[0][0] == -1.0",
            Some(3),
            51,
            3,
        ),
        case(
            "array of number maps with all",
            array_of(json!({"type": "object", "additionalProperties": {"type": "number"}})),
            "self.all(x, x.y == 25.2)",
            Some(6_291_452),
            12,
            74,
        ),
        case(
            "index of array of number maps",
            array_of(json!({"type": "object", "additionalProperties": {"type": "number"}})),
            "self[0].x > 2.0",
            Some(4),
            3000,
            4,
        ),
        case("duration array with all", array("duration"), "self.all(x, true)", Some(2_359_295), 5, 17),
        case("index of duration array", array("duration"), "self[0].getHours() == 2", Some(4), 525, 4),
        case("date array with all", array("date"), "self.all(x, true)", Some(725_936), 15, 47),
        case("index of date array", array("date"), "self[2].getDayOfMonth() == 13", Some(4), 42, 4),
        case("date-time array with all", array("date-time"), "self.all(x, true)", Some(428_963), 25, 77),
        case("index of date-time array", array("date-time"), "self[2].getMinutes() == 45", Some(4), 99, 4),
        case("map of int-or-strings with all", map("int-or-string"), "self.all(x, true)", Some(1_348_169), 15, 47),
        case("map of objects with all", map_of(required_object()), "self.all(x, true)", Some(428_963), 20, 62),
        case(
            "map of number maps with all",
            map_of(json!({"type": "object", "additionalProperties": {"type": "number"}})),
            "self.all(x, true)",
            Some(1_179_647),
            10,
            32,
        ),
        case(
            "map of number arrays with all",
            map_of(json!({"type": "array", "items": {"type": "number"}})),
            "self.all(x, true)",
            Some(1_179_647),
            25,
            77,
        ),
        case("map of durations with all", map("duration"), "self.all(x, true)", Some(1_048_577), 5, 17),
        case("map of dates with all", map("date"), "self.all(x, true)", Some(524_288), 10, 32),
        case("map of date-times with all", map("date-time"), "self.all(x, true)", Some(349_526), 25, 77),
        case("extended library regex find", string, "self.find('[0-9]+') == ''", Some(629_147), 10, 11),
        case(
            "extended library join",
            |max| {
                bound(
                    json!({"type": "array", "x-kubernetes-list-type": "atomic", "items": string(max)}),
                    "maxItems",
                    max,
                )
            },
            "self.join(' ') == 'aa bb'",
            Some(329_853_068_905),
            10,
            43,
        ),
        case(
            "extended library isSorted",
            |max| {
                bound(
                    json!({"type": "array", "x-kubernetes-list-type": "atomic", "items": string(max)}),
                    "maxItems",
                    max,
                )
            },
            "self.isSorted() == true",
            Some(329_854_432_052),
            10,
            52,
        ),
        case(
            "extended library replace",
            |max| {
                json!({"type": "object", "properties": {
                    "str": string(max), "before": string(Some(2)), "after": string(Some(4)),
                }})
            },
            "self.str.replace(self.before, self.after) == 'does not matter'",
            Some(629_154),
            4,
            12,
        ),
        case(
            "extended library split",
            |max| json!({"type": "object", "properties": {"str": string(max), "separator": string(max)}}),
            "self.str.split(self.separator) == []",
            Some(629_160),
            10,
            22,
        ),
        case("extended library lowerAscii", string, "self.lowerAscii() == 'lower!'", Some(314_575), 10, 6),
        case("check cost of size call", map("integer"), "oldSelf.size() == self.size()", Some(5), 10, 5),
        case("check cost of timestamp comparison", map("date-time"), r#"self["a"] == self["b"]"#, Some(8), 7, 8),
        case("check cost of duration comparison", map("duration"), r#"self["c"] == self["d"]"#, Some(8), 42, 8),
        case(
            "enums with maxLength equals to the longest possible value",
            |max| bound(json!({"type": "string", "enum": ["A", "B", "C", "LongValue"]}), "maxLength", max),
            "self.contains('A')",
            Some(2),
            1000,
            401,
        ),
        case(
            "IntOrString type with quantity rule",
            |max| bound(json!({"x-kubernetes-int-or-string": true}), "maxLength", max),
            "isQuantity(self)",
            Some(314_574),
            20,
            9,
        ),
    ];
    let mut failures = Vec::new();
    for c in &cases {
        let calc = cost_of(&with_rule((c.schema)(None), c.rule));
        match c.calc {
            Some(expected) if calc != expected => {
                failures.push(format!("{} (unbounded): {calc}, want {expected}", c.name))
            }
            None if calc < 100_000_000 => failures.push(format!("{} (unbounded): {calc}, want > 100000000", c.name)),
            _ => {}
        }
        let set = cost_of(&with_rule((c.schema)(Some(c.set_max)), c.rule));
        if set != c.set {
            failures.push(format!("{} (max {}): {set}, want {}", c.name, c.set_max, c.set));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn actual_costs_use_the_sizes_of_the_values() {
    // Unique names: O(n²). With n names of at most 4 characters, one evaluation costs
    // 2 + n × (6 + n × (ceil(4 × 0.1) + 4)) = 2 + 6n + 5n².
    let root = with_rule(
        json!({"type": "array", "maxItems": 500, "items": {"type": "string", "maxLength": 10}}),
        "self.all(i, self.exists_one(j, j == i))",
    );
    let node = compile(&root, "s").unwrap_or_else(|e| panic!("{e:?}"));
    let f = &node.properties["f"];
    let decl = f.decl.as_ref().expect("a CEL declaration");
    let program = f.rules[0].program.as_ref().expect("a compiled rule");
    let names = |n: usize| Value::from((0..n).map(|i| format!("n{i:03}")).collect::<Vec<_>>());
    for n in [0, 1, 10, 400, 500] {
        let expected = 2 + 6 * n as u64 + 5 * (n as u64).pow(2);
        assert_eq!(actual_cost(program.expression(), decl, &names(n), None, false), expected, "{n} names");
    }
    // The schema's bounds: 500 names of up to 10 characters, 40 bytes (ceil(40 × 0.1) = 4).
    assert_eq!(
        estimate(program.expression(), decl, &SchemaSizes { root: decl }, false).max,
        2 + 6 * 500 + 8 * 500 * 500
    );
}

#[test]
fn cost_error_messages_word_the_factor_as_kubernetes() {
    let message = |cost| cost_error_message("estimated rule cost", cost, STATIC_ESTIMATED_COST_LIMIT);
    assert!(message(10_000_001).contains("by factor of 1.000000x (try simplifying"), "{}", message(10_000_001));
    assert!(message(200_100_000).contains("by factor of 20.0x"));
    assert!(message(u64::MAX).contains("by factor of more than 100x"));
}

#[test]
fn cardinality_multiplies_bounds_and_unbounded_uses_the_request_size() {
    // `TestCostInfo`: a map of at most 5 holding arrays of at most 5: 25 strings; an unbounded
    // array below a bounded map: unbounded, so the rule's own `maxCardinality`.
    let schema = json!({"type": "object", "properties": {
        "m": {"type": "object", "maxProperties": 5, "additionalProperties": {
            "type": "array", "maxItems": 5, "items": {"type": "string", "maxLength": 1,
                "x-kubernetes-validations": [{"rule": "self == 'a'"}]}}},
        "u": {"type": "object", "maxProperties": 5, "additionalProperties": {
            "type": "array", "items": {"type": "string", "maxLength": 1,
                "x-kubernetes-validations": [{"rule": "self == 'a'"}]}}},
    }});
    let node = compile(&schema, "s").unwrap_or_else(|e| panic!("{e:?}"));
    let report = report(&node, "s");
    let cardinalities: Vec<u64> = report.expressions.iter().map(|e| e.cardinality).collect();
    // A string is at least `""`: 3 MiB / 3.
    assert_eq!(cardinalities, [25, 3 * 1024 * 1024 / 3]);
}
