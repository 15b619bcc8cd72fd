//! The reviews the server answers without storing anything: SelfSubjectAccessReview (`kubectl
//! auth can-i`), SelfSubjectRulesReview (`kubectl auth can-i --list`), SubjectAccessReview
//! (the same question about another user) and SelfSubjectReview (`kubectl auth whoami`).

use serde_json::{Value, json};

use crate::http::server::Server;
use crate::semantics::errors::ApiError;
use crate::semantics::rbac::{Attributes, ResourceAttributes, Rule, User};

fn text(value: &Value, key: &str) -> String {
    value[key].as_str().unwrap_or_default().to_owned()
}

/// The attributes a review's `spec` asks about.
fn attributes(spec: &Value) -> Result<Attributes, ApiError> {
    if let Some(resource) = spec.get("resourceAttributes").filter(|r| r.is_object()) {
        return Ok(Attributes::Resource(ResourceAttributes {
            verb: text(resource, "verb"),
            group: text(resource, "group"),
            resource: text(resource, "resource"),
            subresource: text(resource, "subresource"),
            namespace: text(resource, "namespace"),
            name: text(resource, "name"),
        }));
    }
    if let Some(path) = spec.get("nonResourceAttributes").filter(|r| r.is_object()) {
        return Ok(Attributes::NonResource { verb: text(path, "verb"), path: text(path, "path") });
    }
    Err(ApiError::invalid(
        "authorization.k8s.io",
        "SelfSubjectAccessReview",
        "",
        vec![crate::semantics::errors::Cause {
            reason: "FieldValueRequired".into(),
            message: "Required value: exactly one of nonResourceAttributes or resourceAttributes must be specified"
                .into(),
            field: "spec.resourceAttributes".into(),
        }],
    ))
}

fn answer(kind: &str, group: &str, review: &Value, status: Value) -> Value {
    json!({
        "kind": kind,
        "apiVersion": format!("{group}/v1"),
        "metadata": {"creationTimestamp": null},
        "spec": review.get("spec").cloned().unwrap_or_else(|| json!({})),
        "status": status,
    })
}

fn access_status(server: &Server, user: &User, spec: &Value) -> Result<Value, ApiError> {
    let decision = server.api.policy().authorize(user, &attributes(spec)?);
    let mut status = json!({"allowed": decision.allowed});
    if !decision.reason.is_empty() {
        status["reason"] = json!(decision.reason);
    }
    Ok(status)
}

/// Answers a review of `kind` posted by `user`.
pub fn answer_review(server: &Server, user: &User, kind: &str, review: &Value) -> Result<Value, ApiError> {
    let spec = review.get("spec").cloned().unwrap_or(Value::Null);
    match kind {
        "SelfSubjectAccessReview" => {
            Ok(answer(kind, "authorization.k8s.io", review, access_status(server, user, &spec)?))
        }
        "SubjectAccessReview" => {
            let subject = User {
                name: text(&spec, "user"),
                uid: text(&spec, "uid"),
                groups: spec["groups"]
                    .as_array()
                    .map(|g| g.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                    .unwrap_or_default(),
            };
            Ok(answer(kind, "authorization.k8s.io", review, access_status(server, &subject, &spec)?))
        }
        "SelfSubjectRulesReview" => {
            let namespace = text(&spec, "namespace");
            let (resource_rules, non_resource_rules) = server.api.policy().rules_for(user, &namespace);
            let list = |rules: Vec<Rule>| rules.iter().map(Rule::to_json).collect::<Vec<_>>();
            let status = json!({
                "resourceRules": list(resource_rules),
                "nonResourceRules": list(non_resource_rules),
                "incomplete": false,
            });
            Ok(answer(kind, "authorization.k8s.io", review, status))
        }
        "SelfSubjectReview" => {
            let mut info = json!({"username": user.name, "groups": user.groups});
            if !user.uid.is_empty() {
                info["uid"] = json!(user.uid);
            }
            Ok(json!({
                "kind": kind,
                "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"creationTimestamp": null},
                "status": {"userInfo": info},
            }))
        }
        other => Err(ApiError::method_not_allowed(format!("POST {other}"))),
    }
}
