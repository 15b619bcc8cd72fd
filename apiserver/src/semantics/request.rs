//! What a request is about, whoever makes it (a client over HTTP, or the server's own
//! bootstrap and controllers): the resource, version, object, subresource, writer, and how
//! strictly unknown fields are treated.

use std::sync::Arc;

use crate::semantics::errors::ApiError;
use crate::semantics::registry::Resource;
use crate::store::ObjectKey;

/// What to do with fields the schema does not know (`fieldValidation`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FieldValidation {
    /// Drop them silently.
    Ignore,
    /// Drop them and warn (the API server's default).
    #[default]
    Warn,
    /// Reject the request (`kubectl --validate=strict`).
    Strict,
}

impl FieldValidation {
    /// Reads the query parameter.
    pub fn parse(value: Option<&str>) -> Result<Self, ApiError> {
        match value {
            None | Some("") | Some("Warn") => Ok(Self::Warn),
            Some("Strict") => Ok(Self::Strict),
            Some("Ignore") => Ok(Self::Ignore),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation must be one of Ignore, Warn or Strict, got {other:?}"
            ))),
        }
    }
}

/// What a request is about.
#[derive(Clone, Debug)]
pub struct Request {
    /// The resource.
    pub resource: Arc<Resource>,
    /// The version the client speaks.
    pub version: String,
    /// Namespace (namespaced resources).
    pub namespace: Option<String>,
    /// Object name, when the request names one.
    pub name: Option<String>,
    /// `status`, `scale`, `finalize`…
    pub subresource: Option<String>,
    /// Validate and answer, but store nothing.
    pub dry_run: bool,
    /// Who is writing (managedFields).
    pub field_manager: String,
    /// What to do with unknown fields.
    pub field_validation: FieldValidation,
}

impl Request {
    /// Where the object `name` of this request's namespace is stored.
    pub fn key(&self, name: &str) -> ObjectKey {
        ObjectKey::new(self.namespace.as_deref().unwrap_or_default(), name)
    }

    /// The resource's group.
    pub fn group(&self) -> &str {
        &self.resource.group
    }

    /// The resource's plural name.
    pub fn plural(&self) -> &str {
        &self.resource.plural
    }

    /// The 404 for object `name` of this resource.
    pub fn not_found(&self, name: &str) -> ApiError {
        ApiError::not_found(self.group(), self.plural(), name)
    }

    /// Whether the request is aimed at the status subresource.
    pub fn is_status(&self) -> bool {
        self.subresource.as_deref() == Some("status")
    }
}
