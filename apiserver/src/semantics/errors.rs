//! API errors as Kubernetes `Status` objects: the code, reason and message clients act on.

use serde_json::{Value, json};

/// One cause of an `Invalid` error (a field and what is wrong with it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldManagerConflict`…
    pub reason: String,
    /// What is wrong.
    pub message: String,
    /// `spec.port`, `metadata.name`…
    pub field: String,
}

/// An error answered to the client as a `Status`.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// Machine-readable reason (`NotFound`, `Conflict`, `Invalid`…).
    pub reason: &'static str,
    /// For people.
    pub message: String,
    /// `details` (boxed: errors travel through every `Result` of the server).
    pub details: Box<Details>,
}

/// The `details` of a `Status`.
#[derive(Clone, Debug, Default)]
pub struct Details {
    /// `details.name`.
    pub name: Option<String>,
    /// `details.group`.
    pub group: Option<String>,
    /// `details.kind` (the resource or kind).
    pub kind: Option<String>,
    /// `details.causes`.
    pub causes: Vec<Cause>,
    /// `details.retryAfterSeconds`.
    pub retry_after: Option<u32>,
}

/// `resource.group` as the API server names a resource in messages (`widgets.example.com`,
/// `secrets`).
pub fn qualified(resource: &str, group: &str) -> String {
    if group.is_empty() { resource.to_owned() } else { format!("{resource}.{group}") }
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self { code, reason, message: message.into(), details: Box::default() }
    }

    fn about(mut self, group: &str, kind: &str, name: &str) -> Self {
        self.details.group = Some(group.to_owned());
        self.details.kind = Some(kind.to_owned());
        self.details.name = (!name.is_empty()).then(|| name.to_owned());
        self
    }

    /// The field causes.
    pub fn causes(&self) -> &[Cause] {
        &self.details.causes
    }

    /// 404: the object does not exist.
    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{} \"{name}\" not found", qualified(resource, group)))
            .about(group, resource, name)
    }

    /// 404 for a path that names nothing the server serves.
    pub fn no_route(path: &str) -> Self {
        Self::new(404, "NotFound", format!("the server could not find the requested resource ({path})"))
    }

    /// 409: the object exists already.
    pub fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        Self::new(409, "AlreadyExists", format!("{} \"{name}\" already exists", qualified(resource, group)))
            .about(group, resource, name)
    }

    /// 409: the object changed since the client read it.
    pub fn conflict(group: &str, resource: &str, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                qualified(resource, group)
            ),
        )
        .about(group, resource, name)
    }

    /// 409 with a custom message (precondition failures, apply conflicts).
    pub fn conflict_with(group: &str, resource: &str, name: &str, message: String, causes: Vec<Cause>) -> Self {
        let mut error = Self::new(409, "Conflict", message).about(group, resource, name);
        error.details.causes = causes;
        error
    }

    /// 422: the object is invalid; one cause per field.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<Cause>) -> Self {
        let list: Vec<String> = causes
            .iter()
            .map(|c| if c.field.is_empty() { c.message.clone() } else { format!("{}: {}", c.field, c.message) })
            .collect();
        let joined = if list.len() == 1 { list.join("") } else { format!("[{}]", list.join(", ")) };
        let message = format!("{} \"{name}\" is invalid: {joined}", qualified(kind, group));
        let mut error = Self::new(422, "Invalid", message).about(group, kind, name);
        error.details.causes = causes;
        error
    }

    /// 400: the request cannot be understood.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 401: no or wrong credentials.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// 403: the operation is not allowed on this object.
    pub fn forbidden(group: &str, resource: &str, name: &str, why: impl Into<String>) -> Self {
        let message = format!("{} \"{name}\" is forbidden: {}", qualified(resource, group), why.into());
        Self::new(403, "Forbidden", message).about(group, resource, name)
    }

    /// 403: RBAC does not allow the request (Kubernetes' wording: `secrets "s" is forbidden:
    /// User "u" cannot get resource "secrets" in API group "" in the namespace "ns"`).
    pub fn denied(
        user: &str,
        verb: &str,
        group: &str,
        resource: &str,
        subresource: &str,
        namespace: &str,
        name: &str,
    ) -> Self {
        let what = if subresource.is_empty() { resource.to_owned() } else { format!("{resource}/{subresource}") };
        let scope = if namespace.is_empty() {
            "at the cluster scope".to_owned()
        } else {
            format!("in the namespace \"{namespace}\"")
        };
        let subject = if name.is_empty() {
            format!("{} is forbidden", qualified(resource, group))
        } else {
            format!("{} \"{name}\" is forbidden", qualified(resource, group))
        };
        let message =
            format!("{subject}: User \"{user}\" cannot {verb} resource \"{what}\" in API group \"{group}\" {scope}");
        Self::new(403, "Forbidden", message).about(group, resource, name)
    }

    /// 403: RBAC does not allow a request on a path that names no resource.
    pub fn denied_path(user: &str, verb: &str, path: &str) -> Self {
        Self::new(403, "Forbidden", format!("forbidden: User \"{user}\" cannot {verb} path \"{path}\""))
    }

    /// 405: the verb is not served for this resource.
    pub fn method_not_allowed(what: impl Into<String>) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({})", what.into()),
        )
    }

    /// 429: too many of something at once; the client retries later.
    pub fn too_many_requests(message: impl Into<String>) -> Self {
        Self::new(429, "TooManyRequests", message)
    }

    /// 410: the requested resourceVersion is older than the history kept.
    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 413: the body is larger than the server accepts.
    pub fn too_large(limit: usize) -> Self {
        Self::new(413, "RequestEntityTooLarge", format!("Request entity too large: limit is {limit}"))
    }

    /// 415: a patch or body type the server does not understand.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/merge-patch+json, application/json-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml (got {content_type:?})"
            ),
        )
    }

    /// 415 for a patch type the resource does not take, listing the ones it does (custom
    /// resources take no strategic merge patch), worded as the API server words it.
    pub fn unsupported_patch(strategic: bool) -> Self {
        let accepted = if strategic {
            "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml"
        } else {
            "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
        };
        Self::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: {accepted}"),
        )
    }

    /// 422 without an object: a patch that cannot be applied (a failed JSON-patch `test`).
    pub fn unprocessable(detail: impl std::fmt::Display) -> Self {
        Self::new(422, "Invalid", format!("the server rejected our request due to an error in our request: {detail}"))
    }

    /// 500: a fault of the server; logged with its cause.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", format!("Internal error occurred: {}", message.into()))
    }

    /// 503: the server is not ready (shutting down).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        let mut details = serde_json::Map::new();
        let Details { name, group, kind, causes, retry_after } = &*self.details;
        if let Some(name) = name {
            details.insert("name".into(), json!(name));
        }
        if let Some(group) = group {
            details.insert("group".into(), json!(group));
        }
        if let Some(kind) = kind {
            details.insert("kind".into(), json!(kind));
        }
        if !causes.is_empty() {
            let causes: Vec<Value> =
                causes.iter().map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field})).collect();
            details.insert("causes".into(), Value::Array(causes));
        }
        if let Some(seconds) = retry_after {
            details.insert("retryAfterSeconds".into(), json!(seconds));
        }
        if !details.is_empty() {
            status["details"] = Value::Object(details);
        }
        status
    }
}

/// A `Status` for a successful delete of an object without finalizers (what `kubectl delete`
/// prints from).
pub fn success_status(group: &str, resource: &str, name: &str, uid: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": name, "group": group, "kind": resource, "uid": uid},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_as_the_api_server_writes_them() {
        assert_eq!(ApiError::not_found("", "secrets", "s1").message, "secrets \"s1\" not found");
        assert_eq!(ApiError::not_found("example.com", "widgets", "m1").message, "widgets.example.com \"m1\" not found");
        let invalid = ApiError::invalid(
            "example.com",
            "Widget",
            "m1",
            vec![
                Cause {
                    reason: "FieldValueRequired".into(),
                    message: "Required value".into(),
                    field: "spec.provider".into(),
                },
                Cause {
                    reason: "FieldValueInvalid".into(),
                    message: "Invalid value".into(),
                    field: "spec.port".into(),
                },
            ],
        );
        assert_eq!(
            invalid.message,
            "Widget.example.com \"m1\" is invalid: [spec.provider: Required value, spec.port: Invalid value]"
        );
        let status = invalid.to_status();
        assert_eq!(status["code"], 422);
        assert_eq!(status["details"]["causes"][1]["field"], "spec.port");
    }
}
