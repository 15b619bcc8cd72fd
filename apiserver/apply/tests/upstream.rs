//! Scenarios from structured-merge-diff's own merge tests (`merge/set_test.go`,
//! `merge/leaf_test.go`, `merge/multiple_appliers_test.go`), replayed through this crate to
//! check that objects and ownership come out as upstream expects.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic

use machinist_apiserver_apply::{ApplyError, Manager, TypeInfo, apply, update};
use serde_json::{Value, json};

const V: &str = "test.io/v1";
const NOW: &str = "2024-05-01T10:00:00Z";

fn types() -> TypeInfo {
    TypeInfo::from_schema(&json!({
        "type": "object",
        "properties": {
            "list": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "listOfLists": {"type": "array", "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "properties": {
                    "name": {"type": "string"},
                    "value": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}
                }}},
            "struct": {"type": "object", "properties": {
                "name": {"type": "string"}, "scalarField": {"type": "string"}}},
            "numeric": {"type": "integer"},
            "string": {"type": "string"},
            "bool": {"type": "boolean"}
        }
    }))
    .unwrap()
}

/// A replay of operations on one object.
struct Replay {
    types: TypeInfo,
    live: Option<Value>,
}

impl Replay {
    fn new() -> Self {
        Replay { types: types(), live: None }
    }

    fn object(body: Value) -> Value {
        let mut obj = json!({"apiVersion": V, "kind": "T", "metadata": {"name": "t"}});
        for (k, v) in body.as_object().unwrap() {
            obj[k] = v.clone();
        }
        obj
    }

    fn apply(&mut self, manager: &str, body: Value) -> Result<(), ApplyError> {
        self.apply_with(manager, body, false)
    }

    fn apply_with(&mut self, manager: &str, body: Value, force: bool) -> Result<(), ApplyError> {
        let out = apply(self.live.as_ref(), &Self::object(body), Manager::new(manager, V), force, &self.types, NOW)?;
        self.live = Some(with_uid(out));
        Ok(())
    }

    fn update(&mut self, manager: &str, body: Value) {
        let mut new = Self::object(body);
        if let Some(live) = &self.live {
            new["metadata"] = live["metadata"].clone();
        }
        let out = update(self.live.as_ref(), &new, Manager::new(manager, V), &self.types, NOW);
        self.live = Some(with_uid(out));
    }

    fn content(&self) -> Value {
        let mut obj = self.live.clone().unwrap();
        obj.as_object_mut().unwrap().remove("metadata");
        obj.as_object_mut().unwrap().remove("apiVersion");
        obj.as_object_mut().unwrap().remove("kind");
        obj
    }

    fn owned(&self) -> Value {
        let mut out = serde_json::Map::new();
        for e in self.live.as_ref().unwrap()["metadata"]["managedFields"].as_array().unwrap() {
            out.insert(e["manager"].as_str().unwrap().to_owned(), e["fieldsV1"].clone());
        }
        Value::Object(out)
    }
}

fn with_uid(mut obj: Value) -> Value {
    obj["metadata"]["uid"] = json!("uid-1");
    obj
}

fn key(name: &str) -> String {
    format!("k:{{\"name\":\"{name}\"}}")
}

#[test]
fn set_apply_update_apply_without_overlap() {
    let mut r = Replay::new();
    r.apply("default", json!({"list": ["a", "c"]})).unwrap();
    r.update("controller", json!({"list": ["a", "b", "c", "d"]}));
    r.apply("default", json!({"list": ["a", "aprime", "c", "cprime"]})).unwrap();
    assert_eq!(r.content(), json!({"list": ["a", "b", "aprime", "c", "d", "cprime"]}));
    assert_eq!(
        r.owned(),
        json!({
            "default": {"f:list": {"v:\"a\"": {}, "v:\"aprime\"": {}, "v:\"c\"": {}, "v:\"cprime\"": {}}},
            "controller": {"f:list": {"v:\"b\"": {}, "v:\"d\"": {}}}
        })
    );
}

#[test]
fn set_apply_update_apply_with_overlap() {
    let mut r = Replay::new();
    r.apply("default", json!({"list": ["a", "c"]})).unwrap();
    r.update("controller", json!({"list": ["a", "b", "c", "d"]}));
    r.apply("default", json!({"list": ["a", "b", "c"]})).unwrap();
    assert_eq!(r.content(), json!({"list": ["a", "b", "c", "d"]}));
    assert_eq!(
        r.owned(),
        json!({
            "default": {"f:list": {"v:\"a\"": {}, "v:\"b\"": {}, "v:\"c\"": {}}},
            "controller": {"f:list": {"v:\"b\"": {}, "v:\"d\"": {}}}
        })
    );
}

#[test]
fn leaf_apply_update_apply_with_conflict_then_force() {
    let mut r = Replay::new();
    r.apply("default", json!({"numeric": 1, "string": "string"})).unwrap();
    r.update("controller", json!({"numeric": 1, "string": "controller string", "bool": true}));
    let err = r.apply("default", json!({"numeric": 2, "string": "user string"})).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"Apply failed with 1 conflict: conflict with "controller" using test.io/v1: .string"#
    );
    r.apply_with("default", json!({"numeric": 2, "string": "user string"}), true).unwrap();
    assert_eq!(r.content(), json!({"numeric": 2, "string": "user string", "bool": true}));
    assert_eq!(
        r.owned(),
        json!({
            "default": {"f:numeric": {}, "f:string": {}},
            "controller": {"f:bool": {}}
        })
    );
}

#[test]
fn nested_remove_one_keep_one_with_dangling_subitem() {
    let mut r = Replay::new();
    r.apply("apply-one", json!({"listOfLists": [{"name": "a"}, {"name": "b", "value": ["c"]}]})).unwrap();
    r.apply("apply-two", json!({"listOfLists": [{"name": "b", "value": ["d"]}]})).unwrap();
    r.update("controller", json!({"listOfLists": [{"name": "a"}, {"name": "b", "value": ["c", "d", "e"]}]}));
    r.apply("apply-one", json!({"listOfLists": [{"name": "a"}]})).unwrap();
    assert_eq!(r.content(), json!({"listOfLists": [{"name": "a"}, {"name": "b", "value": ["d", "e"]}]}));
    assert_eq!(
        r.owned(),
        json!({
            "apply-one": {"f:listOfLists": {key("a"): {".": {}, "f:name": {}}}},
            "apply-two": {"f:listOfLists": {key("b"): {".": {}, "f:name": {}, "f:value": {"v:\"d\"": {}}}}},
            "controller": {"f:listOfLists": {key("b"): {"f:value": {"v:\"e\"": {}}}}}
        })
    );
}

#[test]
fn nested_remove_one_with_dangling_subitem_keep_one() {
    let mut r = Replay::new();
    r.apply("apply-one", json!({"listOfLists": [{"name": "a"}, {"name": "b", "value": ["c"]}]})).unwrap();
    r.apply("apply-two", json!({"listOfLists": [{"name": "a", "value": ["b"]}]})).unwrap();
    r.update("controller", json!({"listOfLists": [{"name": "a", "value": ["b"]}, {"name": "b", "value": ["c", "d"]}]}));
    r.apply("apply-one", json!({"listOfLists": [{"name": "a"}]})).unwrap();
    // Item b goes whole, the controller's sub-item with it.
    assert_eq!(r.content(), json!({"listOfLists": [{"name": "a", "value": ["b"]}]}));
    assert_eq!(
        r.owned(),
        json!({
            "apply-one": {"f:listOfLists": {key("a"): {".": {}, "f:name": {}}}},
            "apply-two": {"f:listOfLists": {key("a"): {".": {}, "f:name": {}, "f:value": {"v:\"b\"": {}}}}}
        })
    );
}

#[test]
fn unset_scalar_shared_with_updater() {
    let mut r = Replay::new();
    r.update("updater", json!({"struct": {"name": "a", "scalarField": "a"}}));
    r.apply("applier", json!({"struct": {"name": "a", "scalarField": "a"}})).unwrap();
    r.apply("applier", json!({"struct": {"name": "a"}})).unwrap();
    assert_eq!(r.content(), json!({"struct": {"name": "a", "scalarField": "a"}}));
    assert_eq!(
        r.owned(),
        json!({
            "applier": {"f:struct": {"f:name": {}}},
            "updater": {"f:struct": {".": {}, "f:name": {}, "f:scalarField": {}}}
        })
    );
}

#[test]
fn unset_complex_sole_owner() {
    let mut r = Replay::new();
    r.apply(
        "apply-one",
        json!({"struct": {"name": "a", "scalarField": "x"}, "listOfLists": [{"name": "b", "value": ["c"]}]}),
    )
    .unwrap();
    r.apply("apply-one", json!({"struct": {"name": "a"}})).unwrap();
    assert_eq!(r.content(), json!({"struct": {"name": "a"}}));
    assert_eq!(r.owned(), json!({"apply-one": {"f:struct": {"f:name": {}}}}));
}
