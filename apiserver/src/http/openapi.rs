//! OpenAPI v3 documents (`/openapi/v3`, `/openapi/v3/{api|apis/group}/version`): the schemas
//! `kubectl explain` shows and the operations kubectl inspects to learn that the server
//! validates fields itself (`fieldValidation`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::authorization::v1 as authorization;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent, Namespace, Secret, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1 as rbac;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use schemars::JsonSchema;
use serde_json::{Map, Value, json};

use crate::semantics::registry::{Builtin, KUBERNETES_VERSION, Registry, Resource};

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// `api/v1` or `apis/{group}/{version}`.
pub fn group_version_path(group: &str, version: &str) -> String {
    if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") }
}

/// The schema name of a kind: the group reversed, as the API server names CRD schemas
/// (`example.com` → `com.example.v1alpha1.Widget`).
fn crd_schema_name(resource: &Resource, version: &str) -> String {
    let reversed: Vec<&str> = resource.group.split('.').rev().collect();
    format!("{}.{version}.{}", reversed.join("."), resource.kind)
}

/// FNV-1a, so a document's hash is the same in every run (kubectl caches by it).
fn fnv(text: &str) -> String {
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("{hash:016X}")
}

struct Schemas {
    generator: schemars::SchemaGenerator,
    named: BTreeMap<String, Value>,
}

impl Schemas {
    fn new() -> Self {
        Self { generator: schemars::generate::SchemaSettings::openapi3().into_generator(), named: BTreeMap::new() }
    }

    /// Adds a built-in type's schema; returns its name.
    fn builtin<T: JsonSchema>(&mut self) -> String {
        let reference = self.generator.subschema_for::<T>();
        let value = serde_json::to_value(reference).unwrap_or(Value::Null);
        value["$ref"].as_str().unwrap_or_default().trim_start_matches("#/components/schemas/").to_owned()
    }

    fn finish(mut self) -> Map<String, Value> {
        let mut out: Map<String, Value> = self.generator.take_definitions(true).into_iter().collect();
        out.extend(self.named);
        out
    }
}

fn gvk(resource: &Resource, version: &str) -> Value {
    json!([{"group": resource.group, "version": version, "kind": resource.kind}])
}

fn kind_schema(schemas: &mut Schemas, resource: &Resource, version: &str) -> String {
    let name = match resource.builtin {
        Some(Builtin::Namespace) => schemas.builtin::<Namespace>(),
        Some(Builtin::Secret) => schemas.builtin::<Secret>(),
        Some(Builtin::ConfigMap) => schemas.builtin::<ConfigMap>(),
        Some(Builtin::Event) => schemas.builtin::<CoreEvent>(),
        Some(Builtin::EventsV1) => schemas.builtin::<Event>(),
        Some(Builtin::Lease) => schemas.builtin::<Lease>(),
        Some(Builtin::CustomResourceDefinition) => schemas.builtin::<CustomResourceDefinition>(),
        Some(Builtin::ServiceAccount) => schemas.builtin::<ServiceAccount>(),
        Some(Builtin::Role) => schemas.builtin::<rbac::Role>(),
        Some(Builtin::ClusterRole) => schemas.builtin::<rbac::ClusterRole>(),
        Some(Builtin::RoleBinding) => schemas.builtin::<rbac::RoleBinding>(),
        Some(Builtin::ClusterRoleBinding) => schemas.builtin::<rbac::ClusterRoleBinding>(),
        Some(Builtin::Review) => match resource.kind.as_str() {
            "SelfSubjectAccessReview" => schemas.builtin::<authorization::SelfSubjectAccessReview>(),
            "SelfSubjectRulesReview" => schemas.builtin::<authorization::SelfSubjectRulesReview>(),
            "SubjectAccessReview" => schemas.builtin::<authorization::SubjectAccessReview>(),
            _ => schemas.builtin::<k8s_openapi::api::authentication::v1::SelfSubjectReview>(),
        },
        None => {
            schemas.builtin::<ObjectMeta>();
            let name = crd_schema_name(resource, version);
            let mut schema = resource.schemas.get(version).cloned().unwrap_or_else(|| json!({"type": "object"}));
            if let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) {
                properties.insert("apiVersion".into(), json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values."}));
                properties.insert("kind".into(), json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. In CamelCase."}));
                properties.insert("metadata".into(), json!({"description": "Standard object's metadata.", "allOf": [{"$ref": format!("#/components/schemas/{OBJECT_META}")}], "default": {}}));
            }
            schemas.named.insert(name.clone(), schema);
            name
        }
    };
    let extension = gvk(resource, version);
    let storage = schemas.named.get_mut(&name);
    match storage {
        Some(schema) => schema["x-kubernetes-group-version-kind"] = extension,
        None => {
            // Built-ins live in the generator until `finish`; mark them there.
            let mut definitions = schemas.generator.take_definitions(false);
            if let Some(schema) = definitions.get_mut(&name) {
                schema["x-kubernetes-group-version-kind"] = extension;
            }
            schemas.named.extend(definitions);
        }
    }
    name
}

fn parameter(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": "string", "uniqueItems": true}})
}

fn operation(
    id: &str,
    action: &str,
    resource: &Resource,
    version: &str,
    schema: &str,
    writes: bool,
    patch: bool,
) -> Value {
    let mut parameters = Vec::new();
    if writes {
        parameters.push(parameter(
            "dryRun",
            "When present, indicates that modifications should not be persisted. Valid value: All.",
        ));
        parameters.push(parameter(
            "fieldManager",
            "A name associated with the actor or entity that is making these changes.",
        ));
        parameters.push(parameter("fieldValidation", "Instructs the server on how to handle objects in the request containing unknown or duplicate fields: Ignore, Warn or Strict."));
    }
    if patch {
        parameters.push(json!({"name": "force", "in": "query", "description": "Force is going to \"force\" Apply requests.", "schema": {"type": "boolean", "uniqueItems": true}}));
    }
    let reference = json!({"$ref": format!("#/components/schemas/{schema}")});
    let mut op = json!({
        "operationId": id,
        "parameters": parameters,
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": reference}}}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": resource.group, "version": version, "kind": resource.kind},
    });
    if writes {
        let media = if patch {
            // kubectl picks a strategic merge patch when the operation offers one; custom
            // resources accept only the other three, as on a real API server.
            let mut types = json!({"application/apply-patch+yaml": {"schema": {"type": "object"}}, "application/json-patch+json": {"schema": {"type": "object"}}, "application/merge-patch+json": {"schema": {"type": "object"}}});
            if resource.builtin.is_some() {
                types["application/strategic-merge-patch+json"] = json!({"schema": {"type": "object"}});
            }
            types
        } else {
            json!({"application/json": {"schema": reference}})
        };
        op["requestBody"] = json!({"content": media, "required": true});
    }
    op
}

fn paths(resource: &Resource, version: &str, schema: &str, out: &mut Map<String, Value>) {
    let base = format!("/{}", group_version_path(&resource.group, version));
    let collection = if resource.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", resource.plural)
    } else {
        format!("{base}/{}", resource.plural)
    };
    let id = |verb: &str| format!("{verb}{}{}", resource.kind, if resource.namespaced { "Namespaced" } else { "" });
    out.insert(
        collection.clone(),
        json!({
            "get": operation(&id("list"), "list", resource, version, schema, false, false),
            "post": operation(&id("create"), "post", resource, version, schema, true, false),
        }),
    );
    let item = json!({
        "get": operation(&id("read"), "get", resource, version, schema, false, false),
        "put": operation(&id("replace"), "put", resource, version, schema, true, false),
        "patch": operation(&id("patch"), "patch", resource, version, schema, true, true),
        "delete": operation(&id("delete"), "delete", resource, version, schema, false, false),
    });
    out.insert(format!("{collection}/{{name}}"), item);
    if resource.status {
        out.insert(
            format!("{collection}/{{name}}/status"),
            json!({
                "get": operation(&format!("{}Status", id("read")), "get", resource, version, schema, false, false),
                "put": operation(&format!("{}Status", id("replace")), "put", resource, version, schema, true, false),
                "patch": operation(&format!("{}Status", id("patch")), "patch", resource, version, schema, true, true),
            }),
        );
    }
}

/// Every group version's document, by `api/v1` / `apis/group/version`.
pub fn documents(registry: &Registry) -> BTreeMap<String, Value> {
    let mut by_group_version: BTreeMap<String, Vec<(&Resource, &str)>> = BTreeMap::new();
    for resource in registry.all() {
        for version in &resource.versions {
            by_group_version.entry(group_version_path(&resource.group, version)).or_default().push((resource, version));
        }
    }
    by_group_version
        .into_iter()
        .map(|(path, resources)| {
            let mut schemas = Schemas::new();
            let mut operations = Map::new();
            for (resource, version) in resources {
                let schema = kind_schema(&mut schemas, resource, version);
                paths(resource, version, &schema, &mut operations);
            }
            let document = json!({
                "openapi": "3.0.0",
                "info": {"title": "Kubernetes", "version": format!("v{}.{}.0", KUBERNETES_VERSION.0, KUBERNETES_VERSION.1)},
                "paths": operations,
                "components": {"schemas": schemas.finish()},
            });
            (path, document)
        })
        .collect()
}

/// The content type of a protobuf OpenAPI v2 document. Clients ask for
/// `…spec.v2@v1.0+protobuf`, but `@` is not a token character and Go's `mime.ParseMediaType`
/// (client-go reads every response's type with it) rejects it, so the answer names it with a dot.
pub const V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// `/openapi/v2`: a document without definitions. Clients use OpenAPI v3 here; kubectl only
/// reads v2 to validate kinds it finds nowhere else, and skips kinds v2 does not describe.
/// As JSON, or as the gnostic `openapi.v2.Document` protobuf (`swagger` = 1, `info` = 2 with
/// `title` = 1 and `version` = 2).
pub fn v2(protobuf: bool) -> (Vec<u8>, &'static str) {
    let version = format!("v{}.{}.0", KUBERNETES_VERSION.0, KUBERNETES_VERSION.1);
    if !protobuf {
        let document = json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": version}, "paths": {}, "definitions": {}});
        return (document.to_string().into_bytes(), "application/json");
    }
    fn string_field(tag: u8, text: &str) -> Vec<u8> {
        let mut out = vec![tag << 3 | 2, u8::try_from(text.len()).unwrap_or(0)];
        out.extend_from_slice(text.as_bytes());
        out
    }
    let info = [string_field(1, "Kubernetes"), string_field(2, &version)].concat();
    let mut out = string_field(1, "2.0");
    out.push(2 << 3 | 2);
    out.push(u8::try_from(info.len()).unwrap_or(0));
    out.extend_from_slice(&info);
    (out, V2_PROTOBUF)
}

/// The OpenAPI v3 documents of one registry and their index, built together.
#[derive(Debug, Default)]
pub struct OpenApi {
    /// Documents by `api/v1` / `apis/group/version`.
    pub documents: BTreeMap<String, Value>,
    /// The `/openapi/v3` index.
    pub index: Value,
}

impl OpenApi {
    /// Builds every document of `registry` and the index over them.
    pub fn build(registry: &Registry) -> Self {
        let documents = documents(registry);
        let index = index(&documents);
        Self { documents, index }
    }
}

/// The documents of the registry they were built from, rebuilt when the registry changes (a
/// CRD was written or deleted) and only then: kubectl fetches them for every `apply`.
#[derive(Debug, Default)]
pub struct OpenApiCache(Mutex<Option<(Arc<Registry>, Arc<OpenApi>)>>);

impl OpenApiCache {
    /// The documents of `registry`, built now if the cached ones are of another registry.
    pub fn get(&self, registry: &Arc<Registry>) -> Arc<OpenApi> {
        // A panic while building leaves no half-built documents behind: the slot is replaced whole.
        let mut slot = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((built_from, documents)) = slot.as_ref()
            && Arc::ptr_eq(built_from, registry)
        {
            return Arc::clone(documents);
        }
        let documents = Arc::new(OpenApi::build(registry));
        *slot = Some((Arc::clone(registry), Arc::clone(&documents)));
        documents
    }
}

/// `/openapi/v3`: where each group version's document is, with its hash.
pub fn index(documents: &BTreeMap<String, Value>) -> Value {
    let paths: Map<String, Value> = documents
        .iter()
        .map(|(path, document)| {
            (
                path.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={}", fnv(&document.to_string()))}),
            )
        })
        .collect();
    json!({"paths": paths})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::semantics::registry::tests::widget_crd;

    #[test]
    fn crd_documents_carry_schemas_and_patch_operations() {
        let documents = documents(&Registry::with_crds(&[widget_crd()]));
        let example = &documents["apis/example.com/v1alpha1"];
        let widget = &example["components"]["schemas"]["com.example.v1alpha1.Widget"];
        assert_eq!(widget["x-kubernetes-group-version-kind"][0]["kind"], "Widget");
        assert!(widget["properties"]["spec"]["properties"]["size"]["description"].as_str().unwrap().contains("units"));
        assert!(example["components"]["schemas"].get(OBJECT_META).is_some());
        let patch = &example["paths"]["/apis/example.com/v1alpha1/namespaces/{namespace}/widgets/{name}"]["patch"];
        assert!(patch["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "fieldValidation"));
        let core = &documents["api/v1"];
        assert_eq!(
            core["components"]["schemas"]["io.k8s.api.core.v1.Namespace"]["x-kubernetes-group-version-kind"][0]["kind"],
            "Namespace"
        );
        let index = index(&documents);
        assert!(
            index["paths"]["apis/example.com/v1alpha1"]["serverRelativeURL"]
                .as_str()
                .unwrap()
                .starts_with("/openapi/v3/apis/example.com/v1alpha1?hash=")
        );
    }

    #[test]
    fn documents_are_rebuilt_only_for_another_registry() {
        let cache = OpenApiCache::default();
        let first = Arc::new(Registry::with_crds(&[]));
        let built = cache.get(&first);
        assert!(Arc::ptr_eq(&built, &cache.get(&first)), "same registry, same documents");
        let second = Arc::new(Registry::with_crds(&[widget_crd()]));
        let rebuilt = cache.get(&second);
        assert!(!Arc::ptr_eq(&built, &rebuilt));
        assert!(rebuilt.documents.contains_key("apis/example.com/v1alpha1"));
        assert!(!built.documents.contains_key("apis/example.com/v1alpha1"));
    }
}
