//! Hostile input: deep nesting is an error (not a stack overflow), big input costs linear time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic

mod common;

use std::time::{Duration, Instant};

use common::{compile, messages, object, spec_schema};
use machinist_apiserver_schema::{MAX_DEPTH, Schema};
use serde_json::{Value, json};

/// `{"a": {"a": … "leaf"}}`, built without `json!` (which serializes interpolated values
/// recursively).
fn nested_object(depth: usize) -> Value {
    let mut value = Value::from("leaf");
    for _ in 0..depth {
        let mut map = serde_json::Map::new();
        map.insert("a".to_owned(), value);
        value = Value::Object(map);
    }
    value
}

/// A custom resource whose `spec.free` is `value`.
fn with_free(value: Value) -> Value {
    let mut obj = object(json!({}));
    obj["spec"]["free"] = value;
    obj
}

fn nested_schema(depth: usize) -> Value {
    let mut schema = json!({"type": "string"});
    for _ in 0..depth {
        schema = json!({"type": "object", "properties": {"a": schema}, "x-kubernetes-validations": [{"rule": "has(self.a)"}]});
    }
    schema
}

#[test]
fn deep_objects_are_rejected() {
    let schema =
        compile(spec_schema(json!({"free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}})));
    let mut fine = with_free(nested_object(MAX_DEPTH - 5));
    assert!(schema.admit(&mut fine, None).is_valid());
    for depth in [MAX_DEPTH + 10, 100_000] {
        let mut deep = with_free(nested_object(depth));
        let admission = schema.admit(&mut deep, None);
        assert_eq!(admission.errors.len(), 1);
        assert!(
            admission.errors[0]
                .message()
                .ends_with("Forbidden: the object must not be nested more than 100 levels deep")
        );
        assert!(admission.errors[0].field.starts_with("spec.free.a.a.a"));
        // Dropping the value must not overflow either.
        std::mem::forget(deep);
    }
}

#[test]
fn deep_stored_objects_are_rejected() {
    let schema =
        compile(spec_schema(json!({"free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}})));
    let old = with_free(nested_object(MAX_DEPTH + 10));
    let mut new = object(json!({}));
    let admission = schema.admit(&mut new, Some(&old));
    assert!(admission.errors[0].message().ends_with("the stored object must not be nested more than 100 levels deep"));
}

#[test]
fn deep_schemas() {
    // The deepest accepted schema works, rules at every level included, within the 2 MiB stack
    // of a tokio worker (the CEL parser alone takes a few hundred KiB in debug builds).
    let handle = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(|| {
            let schema = compile(nested_schema(MAX_DEPTH - 2));
            let mut value = nested_object(MAX_DEPTH - 2);
            let old = value.clone();
            assert!(schema.admit(&mut value, None).is_valid());
            assert!(schema.admit(&mut value, Some(&old)).is_valid());
        })
        .unwrap();
    handle.join().unwrap();
    let error = Schema::compile(&nested_schema(MAX_DEPTH + 20)).unwrap_err();
    assert!(error.errors[0].message().ends_with("Forbidden: must not be nested more than 100 schemas deep"), "{error}");
    let deep_json = nested_object(10_000);
    let error = Schema::compile(&deep_json).unwrap_err();
    assert_eq!(error.errors.len(), 1);
    std::mem::forget(deep_json);
}

fn timed<T>(limit: Duration, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let result = f();
    assert!(start.elapsed() < limit, "took {:?}", start.elapsed());
    result
}

#[test]
fn big_lists_cost_linear_time() {
    let schema = compile(spec_schema(json!({
        "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string", "anyOf": [{"pattern": "^a"}, {"pattern": "^b"}, {"maxLength": 2}]}},
        "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["port"], "items": {
            "type": "object", "required": ["port"], "properties": {"port": {"type": "integer"}},
            "x-kubernetes-validations": [{"rule": "self.port >= 0"}],
        }},
    })));
    let n = 20_000;
    let tags: Vec<Value> = (0..n).map(|i| json!(format!("a{i}"))).collect();
    let ports: Vec<Value> = (0..n).map(|i| json!({"port": i})).collect();
    let mut obj = object(json!({"tags": tags, "ports": ports}));
    let old = obj.clone();
    timed(Duration::from_secs(20), || assert!(schema.admit(&mut obj, None).is_valid()));
    timed(Duration::from_secs(20), || assert!(schema.admit(&mut obj, Some(&old)).is_valid()));
    // Many errors are reported, each once, still in linear time.
    let bad: Vec<Value> = (0..n).map(|i| json!(format!("c{i:05}"))).collect();
    let mut obj = object(json!({"tags": bad}));
    let admission = timed(Duration::from_secs(20), || schema.admit(&mut obj, None));
    assert_eq!(admission.errors.len(), 2 * n);
}

#[test]
fn long_strings_and_patterns() {
    let schema = compile(spec_schema(json!({"s": {"type": "string", "pattern": "^(a|b)*c$"}})));
    let mut obj = object(json!({"s": "ab".repeat(500_000)}));
    let admission = timed(Duration::from_secs(20), || schema.admit(&mut obj, None));
    assert_eq!(messages(&admission).len(), 1);
    // A pattern whose automaton would be huge is refused at compile time.
    assert!(Schema::compile(&spec_schema(json!({"s": {"type": "string", "pattern": "^(a{1000}){1000}$"}}))).is_err());
}

#[test]
fn wide_objects() {
    let schema = compile(spec_schema(
        json!({"m": {"type": "object", "additionalProperties": {"type": "integer", "maximum": 5}}}),
    ));
    let map: serde_json::Map<String, Value> = (0..50_000).map(|i| (format!("k{i}"), json!(i % 7))).collect();
    let mut obj = object(json!({"m": map}));
    let admission = timed(Duration::from_secs(20), || schema.admit(&mut obj, None));
    assert_eq!(admission.errors.len(), (0..50_000).filter(|i| i % 7 == 6).count());
}
