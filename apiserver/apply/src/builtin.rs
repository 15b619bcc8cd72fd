//! Schemas of the built-in kinds the server stores, reduced to what matters for merging
//! (struct fields, list and map types), taken from the Kubernetes API types' markers
//! (`+listType`, `+listMapKey`, `+patchMergeKey`).

use serde_json::{Value, json};

/// `(schema, empty-object template, has status subresource)` for a built-in kind.
///
/// The template holds the nested structs that the empty Go object of the kind serializes as
/// `{}`: a creator does not own those containers as a whole, only their fields.
pub(crate) fn schema(group: &str, version: &str, kind: &str) -> Option<(Value, Value, bool)> {
    let string = json!({"type": "string"});
    let integer = json!({"type": "integer"});
    let boolean = json!({"type": "boolean"});
    let string_map = json!({"type": "object", "additionalProperties": {"type": "string"}});
    let atomic_strings = json!({"type": "array", "items": {"type": "string"}});
    let object_reference = json!({"type": "object", "properties": {
        "kind": string, "namespace": string, "name": string, "uid": string,
        "apiVersion": string, "resourceVersion": string, "fieldPath": string
    }});
    let condition = |extra: Value| {
        let mut props = json!({
            "type": string, "status": string, "lastTransitionTime": string,
            "reason": string, "message": string
        });
        if let (Value::Object(p), Value::Object(e)) = (&mut props, extra) {
            p.extend(e);
        }
        json!({
            "type": "array",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
            "items": {"type": "object", "properties": props}
        })
    };
    let object = |props: Value| json!({"type": "object", "properties": props});

    Some(match (group, version, kind) {
        ("", "v1", "Namespace") => (
            object(json!({
                "spec": object(json!({"finalizers": atomic_strings})),
                "status": object(json!({"phase": string, "conditions": condition(json!({}))}))
            })),
            json!({"spec": {}, "status": {}}),
            true,
        ),
        ("", "v1", "ConfigMap") => {
            (object(json!({"data": string_map, "binaryData": string_map, "immutable": boolean})), json!({}), false)
        }
        ("", "v1", "Secret") => (
            object(json!({
                "data": string_map, "stringData": string_map, "type": string, "immutable": boolean
            })),
            json!({}),
            false,
        ),
        ("", "v1", "Event") => (
            object(json!({
                "involvedObject": object_reference,
                "reason": string, "message": string,
                "source": object(json!({"component": string, "host": string})),
                "firstTimestamp": string, "lastTimestamp": string, "count": integer,
                "type": string, "eventTime": string,
                "series": object(json!({"count": integer, "lastObservedTime": string})),
                "action": string, "related": object_reference,
                "reportingComponent": string, "reportingInstance": string
            })),
            json!({"involvedObject": {}, "source": {}}),
            false,
        ),
        ("events.k8s.io", "v1", "Event") => (
            object(json!({
                "eventTime": string,
                "series": object(json!({"count": integer, "lastObservedTime": string})),
                "reportingController": string, "reportingInstance": string,
                "action": string, "reason": string,
                "regarding": object_reference, "related": object_reference,
                "note": string, "type": string,
                "deprecatedSource": object(json!({"component": string, "host": string})),
                "deprecatedFirstTimestamp": string, "deprecatedLastTimestamp": string,
                "deprecatedCount": integer
            })),
            json!({"regarding": {}, "deprecatedSource": {}}),
            false,
        ),
        ("coordination.k8s.io", "v1", "Lease") => (
            object(json!({"spec": object(json!({
                "holderIdentity": string, "leaseDurationSeconds": integer,
                "acquireTime": string, "renewTime": string, "leaseTransitions": integer,
                "strategy": string, "preferredHolder": string
            }))})),
            json!({"spec": {}}),
            false,
        ),
        ("apiextensions.k8s.io", "v1", "CustomResourceDefinition") => {
            let names = object(json!({
                "plural": string, "singular": string, "shortNames": atomic_strings,
                "kind": string, "listKind": string, "categories": atomic_strings
            }));
            (
                object(json!({
                    "spec": object(json!({
                        "group": string,
                        "names": names,
                        "scope": string,
                        // `+listType=atomic` in apiextensions/v1: the versions (schemas
                        // included) are owned as one field.
                        "versions": {"type": "array", "x-kubernetes-list-type": "atomic"},
                        "conversion": object(json!({
                            "strategy": string,
                            "webhook": object(json!({
                                "clientConfig": object(json!({
                                    "url": string, "caBundle": string,
                                    "service": object(json!({
                                        "namespace": string, "name": string,
                                        "path": string, "port": integer
                                    }))
                                })),
                                "conversionReviewVersions": atomic_strings
                            }))
                        })),
                        "preserveUnknownFields": boolean
                    })),
                    "status": object(json!({
                        "conditions": condition(json!({"observedGeneration": integer})),
                        "acceptedNames": names,
                        "storedVersions": atomic_strings,
                        "observedGeneration": integer
                    }))
                })),
                json!({"spec": {"names": {}}, "status": {"acceptedNames": {}}}),
                true,
            )
        }
        _ => return None,
    })
}
