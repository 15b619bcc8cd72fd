//! Validation of machinist objects as an API server would do it, without one: the CRD's
//! OpenAPI schema (types, required fields, patterns, enums, ranges), unknown fields (as
//! `kubectl --validate=strict`), the CEL rules (`x-kubernetes-validations`), object names,
//! and finally decoding into the Rust types the controllers use.
//!
//! Every problem is reported with the path of the field it is about, e.g.
//! `spec.interfaces[0].mac`, so people can find it.

use std::fmt;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::cel::{CompiledSchema, Validator as CelValidator, compile_schema};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{Cmdb, HardwareProfile, Hypervisor, LoadBalancerBackend, Machine, Role};

/// One problem with one field.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FieldError {
    /// Dotted path of the field (`spec.provider`, `spec.match[2]`); empty for the whole object.
    pub field: String,
    /// What is wrong, for people.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() { f.write_str(&self.message) } else { write!(f, "{}: {}", self.field, self.message) }
    }
}

/// An object that failed validation, with every problem found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {name:?} is invalid: {}", display_list(.errors))]
pub struct Invalid {
    /// Kind of the object (`Machine`), or what was found there.
    pub kind: String,
    /// `metadata.name`, or empty.
    pub name: String,
    /// Problems, sorted by field.
    pub errors: Vec<FieldError>,
}

fn display_list(errors: &[FieldError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Errors building the validators from the CRDs (a bug in the generated schemas, not bad input).
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The CRD has no `openAPIV3Schema`.
    #[error("CRD {0} has no openAPIV3Schema")]
    Missing(String),
    /// The schema is not valid JSON Schema.
    #[error("CRD {crd} has an invalid openAPIV3Schema: {message}")]
    Invalid {
        /// CRD name.
        crd: String,
        /// Cause.
        message: String,
    },
    /// A CEL rule does not compile.
    #[error("CRD {crd} has a CEL rule that does not compile: {message}")]
    Cel {
        /// CRD name.
        crd: String,
        /// Cause.
        message: String,
    },
    /// The CRD could not be serialized.
    #[error("CRD {crd} does not serialize: {source}")]
    Serialize {
        /// CRD name.
        crd: String,
        /// Cause.
        source: serde_json::Error,
    },
}

/// The validators of one kind, built once.
struct KindValidator {
    api_version: String,
    kind: String,
    schema: Value,
    json_schema: jsonschema::Validator,
    cel: CompiledSchema,
    decode: fn(Value) -> Result<(), FieldError>,
}

/// Validates machinist objects; build once, use many times.
pub struct Validator {
    kinds: Vec<KindValidator>,
    cel: CelValidator,
}

impl fmt::Debug for Validator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds: Vec<&str> = self.kinds.iter().map(|k| k.kind.as_str()).collect();
        f.debug_struct("Validator").field("kinds", &kinds).finish()
    }
}

fn decode_as<T: DeserializeOwned>(value: Value) -> Result<(), FieldError> {
    serde_path_to_error::deserialize::<_, T>(value).map(drop).map_err(|error| FieldError {
        field: error.path().to_string().trim_start_matches('.').replace(".[", "["),
        message: error.inner().to_string(),
    })
}

impl Validator {
    /// Validators for the six machinist kinds.
    pub fn machinist() -> Result<Self, SchemaError> {
        let crds = crate::all_crds();
        let decoders: [fn(Value) -> Result<(), FieldError>; 6] = [
            decode_as::<Machine>,
            decode_as::<HardwareProfile>,
            decode_as::<Cmdb>,
            decode_as::<Role>,
            decode_as::<LoadBalancerBackend>,
            decode_as::<Hypervisor>,
        ];
        let kinds =
            crds.iter().zip(decoders).map(|(crd, decode)| KindValidator::new(crd, decode)).collect::<Result<_, _>>()?;
        Ok(Self { kinds, cel: CelValidator::new() })
    }

    /// The `(apiVersion, kind)` pairs this validator knows.
    pub fn kinds(&self) -> impl Iterator<Item = (&str, &str)> {
        self.kinds.iter().map(|k| (k.api_version.as_str(), k.kind.as_str()))
    }

    /// The OpenAPI v3 schema of a kind.
    pub fn schema(&self, kind: &str) -> Option<&Value> {
        self.kinds.iter().find(|k| k.kind == kind).map(|k| &k.schema)
    }

    /// Validates one object (as JSON). Returns every problem found, not just the first.
    pub fn validate(&self, object: &Value) -> Result<(), Invalid> {
        let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_owned();
        let api_version = object.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
        let kind = object.get("kind").and_then(Value::as_str).unwrap_or_default();
        let invalid = |errors: Vec<FieldError>| Invalid { kind: kind.to_owned(), name: name.clone(), errors };

        let Some(validator) = self.kinds.iter().find(|k| k.kind == kind) else {
            let known: Vec<&str> = self.kinds.iter().map(|k| k.kind.as_str()).collect();
            return Err(invalid(vec![FieldError {
                field: "kind".into(),
                message: format!("unknown kind {kind:?}; expected one of {}", known.join(", ")),
            }]));
        };
        let mut errors = Vec::new();
        if api_version != validator.api_version {
            errors.push(FieldError {
                field: "apiVersion".into(),
                message: format!("must be {:?}, found {api_version:?}", validator.api_version),
            });
        }
        errors.extend(metadata_errors(object));
        errors.extend(validator.schema_errors(object));
        errors.extend(unknown_fields(&validator.schema, object, ""));
        // CEL rules and decoding assume the structure is right; run them only then, so people
        // see the cause rather than its consequences.
        if errors.is_empty()
            && let Err(cel_errors) = self.cel.validate_compiled(&validator.cel, object, None)
        {
            errors.extend(
                cel_errors.into_iter().map(|e| FieldError { field: e.field_path.clone(), message: e.message.clone() }),
            );
        }
        if errors.is_empty()
            && let Err(error) = (validator.decode)(object.clone())
        {
            errors.push(error);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            errors.sort();
            errors.dedup();
            Err(invalid(errors))
        }
    }
}

impl KindValidator {
    fn new(crd: &CustomResourceDefinition, decode: fn(Value) -> Result<(), FieldError>) -> Result<Self, SchemaError> {
        let crd_name = crd.metadata.name.clone().unwrap_or_default();
        let version = crd.spec.versions.first().ok_or_else(|| SchemaError::Missing(crd_name.clone()))?;
        let schema = version
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .ok_or_else(|| SchemaError::Missing(crd_name.clone()))?;
        let schema =
            serde_json::to_value(schema).map_err(|source| SchemaError::Serialize { crd: crd_name.clone(), source })?;
        let json_schema = jsonschema::draft4::options()
            .should_validate_formats(false)
            .build(&schema)
            .map_err(|e| SchemaError::Invalid { crd: crd_name.clone(), message: e.to_string() })?;
        let cel = compile_schema(&schema);
        if cel.has_errors() {
            let message = cel.compilation_errors().iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
            return Err(SchemaError::Cel { crd: crd_name, message });
        }
        Ok(Self {
            api_version: format!("{}/{}", crd.spec.group, version.name),
            kind: crd.spec.names.kind.clone(),
            schema,
            json_schema,
            cel,
            decode,
        })
    }

    fn schema_errors(&self, object: &Value) -> Vec<FieldError> {
        self.json_schema
            .iter_errors(object)
            .map(|error| FieldError {
                field: field_path(object, &error.instance_path().to_string()),
                message: schema_message(&error),
            })
            .collect()
    }
}

/// Longest rendering of an offending value quoted in a message; longer ones are elided so a
/// hostile object cannot make the error huge.
const MAX_QUOTED_VALUE: usize = 80;

/// The message of a schema error: the value quoted when short, and for enums every
/// supported value (as the API server says it).
fn schema_message(error: &jsonschema::ValidationError<'_>) -> String {
    let quoted = error.instance().to_string();
    if let jsonschema::error::ValidationErrorKind::Enum { options } = error.kind() {
        let supported = options
            .as_array()
            .map(|values| values.iter().filter(|v| !v.is_null()).map(Value::to_string).collect::<Vec<_>>().join(", "))
            .unwrap_or_default();
        let value = if quoted.len() <= MAX_QUOTED_VALUE { quoted } else { "value".to_owned() };
        return format!("unsupported value {value}: supported values: {supported}");
    }
    if quoted.len() <= MAX_QUOTED_VALUE { error.to_string() } else { error.masked().to_string() }
}

/// Turns a JSON pointer (`/spec/interfaces/0/mac`) into a field path (`spec.interfaces[0].mac`),
/// using the object to tell list indices from map keys.
pub fn field_path(object: &Value, pointer: &str) -> String {
    let mut path = String::new();
    let mut current = Some(object);
    for token in pointer.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        match current {
            Some(Value::Array(items)) => {
                path.push_str(&format!("[{token}]"));
                current = token.parse::<usize>().ok().and_then(|i| items.get(i));
            }
            other => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&token);
                current = other.and_then(|v| v.get(&token));
            }
        }
    }
    path
}

/// Fields the schema does not declare. An API server prunes them silently, which turns a typo
/// (`maxMachine`) into a setting that does nothing; strict validation reports them instead.
fn unknown_fields(schema: &Value, value: &Value, path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return errors;
    }
    match value {
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (key, child) in map {
                let child_path = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                // The API server declares these for every kind; CRD schemas leave them out.
                if path.is_empty() && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if let Some(child_schema) = properties.and_then(|p| p.get(key)) {
                    errors.extend(unknown_fields(child_schema, child, &child_path));
                } else if let Some(child_schema) = additional {
                    errors.extend(unknown_fields(child_schema, child, &child_path));
                } else if properties.is_some() {
                    errors.push(FieldError { field: child_path, message: "unknown field".into() });
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    errors.extend(unknown_fields(item_schema, item, &format!("{path}[{i}]")));
                }
            }
        }
        _ => {}
    }
    errors
}

const DNS_SUBDOMAIN_MAX: usize = 253;

/// `metadata.name` (or `generateName`) and `metadata.namespace` as the API server checks them.
fn metadata_errors(object: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let Some(metadata) = object.get("metadata").and_then(Value::as_object) else {
        errors.push(FieldError { field: "metadata".into(), message: "required".into() });
        return errors;
    };
    match (metadata.get("name").and_then(Value::as_str), metadata.get("generateName")) {
        (Some(name), _) => {
            if let Some(message) = dns_subdomain_problem(name) {
                errors.push(FieldError { field: "metadata.name".into(), message });
            }
        }
        (None, Some(_)) => {}
        (None, None) => errors
            .push(FieldError { field: "metadata.name".into(), message: "required (or metadata.generateName)".into() }),
    }
    if let Some(namespace) = metadata.get("namespace").and_then(Value::as_str)
        && let Some(message) = dns_label_problem(namespace)
    {
        errors.push(FieldError { field: "metadata.namespace".into(), message });
    }
    errors
}

fn dns_label_problem(value: &str) -> Option<String> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    (!ok).then(|| {
        format!(
            "invalid value {value:?}: a DNS-1123 label must consist of lower case alphanumeric characters or '-', start and end with an alphanumeric character, and be at most 63 characters"
        )
    })
}

fn dns_subdomain_problem(value: &str) -> Option<String> {
    let ok = !value.is_empty()
        && value.len() <= DNS_SUBDOMAIN_MAX
        && value.split('.').all(|label| dns_label_problem(label).is_none());
    (!ok).then(|| {
        format!(
            "invalid value {value:?}: a DNS-1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', start and end with an alphanumeric character, and be at most 253 characters"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_paths_tell_indices_from_keys() {
        let object = json!({"spec": {"interfaces": [{"mac": "x"}], "vars": {"0": "a"}}});
        assert_eq!(field_path(&object, "/spec/interfaces/0/mac"), "spec.interfaces[0].mac");
        assert_eq!(field_path(&object, "/spec/vars/0"), "spec.vars.0");
        assert_eq!(field_path(&object, ""), "");
    }

    #[test]
    fn names_follow_dns_1123() {
        assert!(dns_subdomain_problem("api-01.example").is_none());
        assert!(dns_subdomain_problem("API").is_some());
        assert!(dns_subdomain_problem("-a").is_some());
        assert!(dns_subdomain_problem("").is_some());
        assert!(dns_label_problem(&"a".repeat(64)).is_some());
    }
}
