//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::panic)] // helpers fail the test that calls them

use machinist_apiserver_schema::{Admission, Schema};
use serde_json::{Value, json};

/// A root schema whose `spec` has these properties.
pub fn spec_schema(properties: Value) -> Value {
    json!({"type": "object", "properties": {"spec": {"type": "object", "properties": properties}}})
}

/// Compiles or fails the test with the compilation errors.
pub fn compile(schema: Value) -> Schema {
    match Schema::compile(&schema) {
        Ok(schema) => schema,
        Err(error) => panic!("schema does not compile: {error}"),
    }
}

/// The compilation error messages of a schema that must not compile.
pub fn compile_errors(schema: Value) -> Vec<String> {
    match Schema::compile(&schema) {
        Ok(_) => panic!("schema compiles"),
        Err(error) => error.errors.iter().map(|e| e.message()).collect(),
    }
}

/// A custom resource with this spec.
pub fn object(spec: Value) -> Value {
    json!({"apiVersion": "example.dev/v1", "kind": "Thing", "metadata": {"name": "a"}, "spec": spec})
}

/// The error messages of an admission.
pub fn messages(admission: &Admission) -> Vec<String> {
    admission.errors.iter().map(|e| e.message()).collect()
}

/// Admits `spec` (a create) against a schema of `spec` properties; returns the messages.
pub fn spec_errors(properties: Value, spec: Value) -> Vec<String> {
    let schema = compile(spec_schema(properties));
    let mut obj = object(spec);
    messages(&schema.admit(&mut obj, None))
}

/// Asserts the spec is admitted without errors.
pub fn assert_valid(properties: Value, spec: Value) {
    assert_eq!(spec_errors(properties, spec.clone()), Vec::<String>::new(), "spec {spec}");
}
