//! Admission of objects against their schemas: CustomResourceDefinitions themselves, and the
//! custom resources they define (defaults, pruning, validation, CEL).

use serde_json::{Value, json};

use crate::semantics::errors::{self, ApiError, Cause};
use crate::semantics::meta;
use crate::semantics::request::{FieldValidation, Request};
use crate::semantics::state::Api;
use crate::store::{ObjectKey, ResourceKey};

fn pruned_message(paths: &[String]) -> String {
    paths.iter().map(|p| format!("unknown field \"{p}\"")).collect::<Vec<_>>().join(", ")
}

/// Admits a custom resource: prunes unknown fields, applies defaults, validates (schema and
/// CEL). Returns warnings.
pub fn admit(api: &Api, request: &Request, object: &mut Value, old: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let resource = &request.resource;
    let Some(schema) = resource.schemas.get(&request.version) else { return Ok(Vec::new()) };
    let crd_key = format!("{}/{}/{}", resource.group, resource.plural, request.version);
    let version_key = format!("{crd_key}@{}", api.crd_revision(&resource.group, &resource.plural));
    let compiled = api
        .schemas
        .get(&version_key, schema)
        .map_err(|e| ApiError::internal(format!("schema of {crd_key} does not compile: {e}")))?;
    let admission = match (request.subresource.as_deref(), old) {
        (Some("status"), Some(old)) => compiled.admit_status(object, old),
        _ => compiled.admit(object, old),
    };
    let name = meta::meta_str(object, "name").unwrap_or_default().to_owned();
    let mut warnings = admission.warnings.clone();
    if !admission.pruned.is_empty() {
        match request.field_validation {
            FieldValidation::Strict => {
                return Err(ApiError::bad_request(format!(
                    "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                    resource.kind,
                    request.version,
                    resource.kind,
                    pruned_message(&admission.pruned)
                )));
            }
            FieldValidation::Warn => warnings.push(pruned_message(&admission.pruned)),
            FieldValidation::Ignore => {}
        }
    }
    if !admission.errors.is_empty() {
        let causes = admission
            .errors
            .iter()
            .map(|e| Cause { reason: e.reason().to_owned(), message: e.message(), field: e.field.clone() })
            .collect();
        let mut error = ApiError::invalid(&resource.group, &resource.kind, &name, causes);
        // The cause messages already carry the field; the summary lists them like the API server.
        error.message = format!(
            "{} \"{name}\" is invalid: {}",
            errors::qualified(&resource.kind, &resource.group),
            if admission.errors.len() == 1 {
                admission.errors[0].message()
            } else {
                format!("[{}]", admission.errors.iter().map(|e| e.message()).collect::<Vec<_>>().join(", "))
            }
        );
        for cause in &mut error.details.causes {
            // `message` of a cause is the part after the field, as the API server sends it.
            if let Some(rest) = cause.message.strip_prefix(&format!("{}: ", cause.field)) {
                cause.message = rest.to_owned();
            }
        }
        return Err(error);
    }
    Ok(warnings)
}

fn crd_cause(field: &str, message: impl Into<String>) -> Cause {
    Cause { reason: "FieldValueInvalid".into(), message: message.into(), field: field.into() }
}

/// Admits a CustomResourceDefinition: names, versions, schemas (structural and compilable), and
/// sets its status (accepted names, Established).
pub fn admit_crd(
    api: &Api,
    request: &Request,
    object: &mut Value,
    old: Option<&Value>,
) -> Result<Vec<String>, ApiError> {
    let name = meta::meta_str(object, "name").unwrap_or_default().to_owned();
    let spec = object.get("spec").cloned().unwrap_or(Value::Null);
    let mut causes = Vec::new();
    let group = spec["group"].as_str().unwrap_or_default();
    let plural = spec.pointer("/names/plural").and_then(Value::as_str).unwrap_or_default();
    let kind = spec.pointer("/names/kind").and_then(Value::as_str).unwrap_or_default();
    if group.is_empty() || !group.contains('.') || meta::dns_subdomain_problem(group).is_some() {
        causes.push(crd_cause(
            "spec.group",
            format!("Invalid value: {group:?}: should be a domain with at least one dot"),
        ));
    }
    if let Some(problem) = meta::dns_label_problem(plural) {
        causes.push(crd_cause("spec.names.plural", problem));
    }
    if kind.is_empty()
        || !kind.starts_with(|c: char| c.is_ascii_uppercase())
        || !kind.chars().all(|c| c.is_ascii_alphanumeric())
    {
        causes.push(crd_cause(
            "spec.names.kind",
            format!("Invalid value: {kind:?}: must be a CamelCase name starting with an upper-case letter"),
        ));
    }
    if name != format!("{plural}.{group}") {
        causes.push(crd_cause(
            "metadata.name",
            format!("Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    if !matches!(spec["scope"].as_str(), Some("Namespaced" | "Cluster")) {
        causes.push(Cause {
            reason: "FieldValueNotSupported".into(),
            message: format!("Unsupported value: {}: supported values: \"Cluster\", \"Namespaced\"", spec["scope"]),
            field: "spec.scope".into(),
        });
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions.is_empty() {
        causes.push(Cause {
            reason: "FieldValueRequired".into(),
            message: "Required value: must have exactly one version marked as storage version".into(),
            field: "spec.versions".into(),
        });
    }
    if versions.iter().filter(|v| v["storage"].as_bool() == Some(true)).count() != 1 && !versions.is_empty() {
        causes
            .push(crd_cause("spec.versions", "Invalid value: must have exactly one version marked as storage version"));
    }
    for (i, version) in versions.iter().enumerate() {
        let version_name = version["name"].as_str().unwrap_or_default();
        if let Some(problem) = meta::dns_label_problem(version_name) {
            causes.push(crd_cause(&format!("spec.versions[{i}].name"), problem));
        }
        match version.pointer("/schema/openAPIV3Schema") {
            None => causes.push(Cause {
                reason: "FieldValueRequired".into(),
                message: "Required value: schemas are required".into(),
                field: format!("spec.versions[{i}].schema.openAPIV3Schema"),
            }),
            Some(schema) => {
                if let Err(error) = machinist_apiserver_schema::Schema::compile(schema) {
                    causes.push(crd_cause(
                        &format!("spec.versions[{i}].schema.openAPIV3Schema"),
                        format!("Invalid value: {error}"),
                    ));
                }
            }
        }
    }
    causes.extend(cost_causes(&versions, old));
    if !causes.is_empty() {
        return Err(ApiError::invalid(&request.resource.group, &request.resource.kind, &name, causes));
    }
    // Names of another CRD in the same group must not be taken.
    let registry = api.registry();
    if old.is_none()
        && let Some(existing) = registry.all().iter().find(|r| r.group == group && r.kind == kind && r.plural != plural)
    {
        return Err(ApiError::invalid(
            &request.resource.group,
            &request.resource.kind,
            &name,
            vec![crd_cause(
                "spec.names.kind",
                format!("Invalid value: {kind:?}: kind is already in use by {}.{}", existing.plural, existing.group),
            )],
        ));
    }
    let storage = versions
        .iter()
        .find(|v| v["storage"].as_bool() == Some(true))
        .and_then(|v| v["name"].as_str())
        .unwrap_or_default();
    let mut stored: Vec<Value> =
        old.and_then(|o| o.pointer("/status/storedVersions")).and_then(Value::as_array).cloned().unwrap_or_default();
    if !stored.iter().any(|v| v == storage) {
        stored.push(json!(storage));
    }
    let now = meta::now();
    let condition = |kind: &str, reason: &str, message: &str| {
        let since = old
            .and_then(|o| o.pointer("/status/conditions"))
            .and_then(Value::as_array)
            .and_then(|c| c.iter().find(|x| x["type"] == kind && x["status"] == "True"))
            .and_then(|x| x.get("lastTransitionTime").cloned())
            .unwrap_or_else(|| json!(now));
        json!({"type": kind, "status": "True", "reason": reason, "message": message, "lastTransitionTime": since})
    };
    // Other conditions (Terminating, set while the CRD is deleted) are kept as written, but a
    // new CRD starts with none.
    let others = old
        .and(object.pointer("/status/conditions"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| c["type"] != "NamesAccepted" && c["type"] != "Established")
        .cloned();
    let conditions: Vec<Value> = [
        condition("NamesAccepted", "NoConflicts", "no conflicts found"),
        condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
    ]
    .into_iter()
    .chain(others)
    .collect();
    object["status"] = json!({
        "acceptedNames": spec["names"],
        "conditions": conditions,
        "storedVersions": stored,
    });
    Ok(Vec::new())
}

/// The API server's errors for CEL rules whose estimated cost is over its limits, per schema:
/// one schema shared by every version is reported under `spec.validation.openAPIV3Schema` (the
/// API server's internal version moves it there), else each under its version. On update, the
/// per-expression limit does not apply to a version whose schema is unchanged (so that CRDs
/// stored before a limit changed stay updatable); the total still does.
fn cost_causes(versions: &[Value], old: Option<&Value>) -> Vec<Cause> {
    let old_versions = old.and_then(|o| o.pointer("/spec/versions")).and_then(Value::as_array);
    let unchanged = |version: &Value| {
        old_versions.is_some_and(|olds| {
            olds.iter().any(|o| o["name"] == version["name"] && o.get("schema") == version.get("schema"))
        })
    };
    let shared = versions.first().is_some_and(|first| versions.iter().all(|v| v.get("schema") == first.get("schema")));
    let checks: Vec<(&Value, String)> = if shared {
        versions.first().map(|v| (v, "spec.validation.openAPIV3Schema".to_owned())).into_iter().collect()
    } else {
        versions.iter().enumerate().map(|(i, v)| (v, format!("spec.versions[{i}].schema.openAPIV3Schema"))).collect()
    };
    let mut causes = Vec::new();
    for (version, path) in checks {
        let Some(schema) = version.pointer("/schema/openAPIV3Schema") else { continue };
        let Ok(compiled) = machinist_apiserver_schema::Schema::compile_at(schema, &path) else { continue };
        for error in compiled.cost_errors(!unchanged(version)) {
            let message = error.message();
            causes.push(Cause {
                reason: error.reason().to_owned(),
                message: message.strip_prefix(&format!("{}: ", error.field)).unwrap_or(&message).to_owned(),
                field: error.field,
            });
        }
    }
    causes
}

impl Api {
    /// The resourceVersion of the CRD serving a resource (0 if none), to key compiled schemas.
    pub fn crd_revision(&self, group: &str, plural: &str) -> u64 {
        let key = ResourceKey::new("apiextensions.k8s.io", "customresourcedefinitions");
        // Read beside the stored text: every custom resource write asks, and a CRD is large.
        self.store.get_stored(&key, &ObjectKey::new("", &format!("{plural}.{group}"))).map_or(0, |crd| crd.revision())
    }
}
