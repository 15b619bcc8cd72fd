//! Who a request comes from and whether it may do what it asks: the admin token (group
//! `system:masters`), ServiceAccount tokens ([`identity`]), impersonation headers (as
//! `kubectl --as` sends them), and RBAC ([`crate::semantics::rbac`]) over the request's verb,
//! resource and namespace, as Kubernetes derives them from the method and path.

use axum::http::{HeaderMap, Method};

use crate::http::decode::{Query, truthy};
use crate::http::path::Target;
use crate::http::server::Server;
use crate::semantics::errors::ApiError;
use crate::semantics::identity::{self, constant_time_eq};
use crate::semantics::rbac::{
    AUTHENTICATED, Attributes, MASTERS, ResourceAttributes, Rule, SERVICE_ACCOUNT_PREFIX, User,
};

/// The admin's user name (the kubeconfig's user).
pub const ADMIN: &str = "machinist-admin";

/// The user a bearer token authenticates, if any.
pub fn authenticate(server: &Server, headers: &HeaderMap) -> Option<User> {
    let token = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())?;
    if constant_time_eq(token.as_bytes(), server.token.as_bytes()) {
        return Some(User {
            name: ADMIN.into(),
            uid: String::new(),
            groups: vec![MASTERS.into(), AUTHENTICATED.into()],
        });
    }
    identity::authenticate(&server.api, token)
}

/// The user the request acts as: `user`, or the one its `Impersonate-User` (and
/// `Impersonate-Group`) headers name when `user` may impersonate them.
pub fn impersonate(server: &Server, user: User, headers: &HeaderMap) -> Result<User, ApiError> {
    let header = |name: &str| headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).map(str::to_owned);
    let Some(name) = header("impersonate-user").next() else {
        if header("impersonate-group").next().is_some() {
            return Err(ApiError::bad_request("requested impersonation of groups without impersonating a user"));
        }
        return Ok(user);
    };
    let policy = server.api.policy();
    let may = |attributes: ResourceAttributes| {
        let attributes = Attributes::Resource(ResourceAttributes { verb: "impersonate".into(), ..attributes });
        if policy.authorize(&user, &attributes).allowed {
            Ok(())
        } else {
            let Attributes::Resource(a) = attributes else { unreachable!("built as a resource request") };
            Err(ApiError::denied(&user.name, "impersonate", &a.group, &a.resource, "", &a.namespace, &a.name))
        }
    };
    let mut impersonated = match name.strip_prefix(SERVICE_ACCOUNT_PREFIX).and_then(|n| n.split_once(':')) {
        Some((namespace, account)) => {
            may(ResourceAttributes {
                resource: "serviceaccounts".into(),
                namespace: namespace.into(),
                name: account.into(),
                ..Default::default()
            })?;
            User::service_account(namespace, account, "")
        }
        None => {
            may(ResourceAttributes { resource: "users".into(), name: name.clone(), ..Default::default() })?;
            User { name, uid: String::new(), groups: vec![AUTHENTICATED.into()] }
        }
    };
    for group in header("impersonate-group") {
        may(ResourceAttributes { resource: "groups".into(), name: group.clone(), ..Default::default() })?;
        if !impersonated.groups.contains(&group) {
            impersonated.groups.push(group);
        }
    }
    Ok(impersonated)
}

/// The verb Kubernetes derives from a request on a resource.
pub fn verb(method: &Method, target: &Target, query: &Query) -> String {
    let named = target.name.is_some();
    match method.as_str() {
        "GET" | "HEAD" if !named && truthy(query.get("watch")) => "watch",
        "GET" | "HEAD" if named => "get",
        "GET" | "HEAD" => "list",
        "POST" => "create",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" if named => "delete",
        "DELETE" => "deletecollection",
        other => return other.to_lowercase(),
    }
    .to_owned()
}

/// Whether `user` may make the request on `target`; the 403 to answer when not.
pub fn authorize_resource(
    server: &Server,
    user: &User,
    method: &Method,
    target: &Target,
    query: &Query,
) -> Result<(), ApiError> {
    if user.is_master() {
        return Ok(());
    }
    let mut namespace = target.namespace.clone().unwrap_or_default();
    // A namespace is its own namespace: a RoleBinding in it may grant reading it.
    if target.group.is_empty()
        && target.resource == "namespaces"
        && target.subresource.is_none()
        && let Some(name) = &target.name
    {
        namespace = name.clone();
    }
    let attributes = ResourceAttributes {
        verb: verb(method, target, query),
        group: target.group.clone(),
        resource: target.resource.clone(),
        subresource: target.subresource.clone().unwrap_or_default(),
        namespace,
        name: target.name.clone().unwrap_or_default(),
    };
    let decision = server.api.policy().authorize(user, &Attributes::Resource(attributes.clone()));
    if decision.allowed {
        return Ok(());
    }
    Err(ApiError::denied(
        &user.name,
        &attributes.verb,
        &attributes.group,
        &attributes.resource,
        &attributes.subresource,
        &attributes.namespace,
        &attributes.name,
    ))
}

/// Whether `user` may make a request on a path that names no resource (discovery, OpenAPI,
/// `/version`).
pub fn authorize_path(server: &Server, user: &User, method: &Method, path: &str) -> Result<(), ApiError> {
    if user.is_master() {
        return Ok(());
    }
    let verb = method.as_str().to_lowercase();
    let attributes = Attributes::NonResource { verb: verb.clone(), path: path.to_owned() };
    if server.api.policy().authorize(user, &attributes).allowed {
        Ok(())
    } else {
        Err(ApiError::denied_path(&user.name, &verb, path))
    }
}

/// Kubernetes' escalation check on a write of a Role, ClusterRole or binding by `user`: it may
/// only grant what it holds itself (in the object's namespace), unless it has the `escalate`
/// verb on the role (for Roles and ClusterRoles) or `bind` on the role referred to (for
/// bindings). `object` is the object written; `None` for patches, which then need `escalate`
/// or `bind` (the patched object is not known here).
pub fn check_escalation(
    server: &Server,
    user: &User,
    target: &Target,
    object: Option<&serde_json::Value>,
) -> Result<(), ApiError> {
    if user.is_master() {
        return Ok(());
    }
    let namespace = target.namespace.clone().unwrap_or_default();
    let policy = server.api.policy();
    let binding = matches!(target.resource.as_str(), "rolebindings" | "clusterrolebindings");
    let (verb, role_kind, role_name) = if binding {
        let role_ref = object.map(|o| &o["roleRef"]);
        let kind = role_ref.and_then(|r| r["kind"].as_str()).unwrap_or_default().to_owned();
        let name = role_ref.and_then(|r| r["name"].as_str()).unwrap_or_default().to_owned();
        ("bind", kind, name)
    } else {
        let kind = if target.resource == "roles" { "Role" } else { "ClusterRole" };
        let name = object
            .and_then(|o| o.pointer("/metadata/name"))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .or_else(|| target.name.clone())
            .unwrap_or_default();
        ("escalate", kind.to_owned(), name)
    };
    let role_resource = if role_kind == "Role" { "roles" } else { "clusterroles" };
    let special = Attributes::Resource(ResourceAttributes {
        verb: verb.into(),
        group: "rbac.authorization.k8s.io".into(),
        resource: role_resource.into(),
        subresource: String::new(),
        namespace: if role_kind == "Role" { namespace.clone() } else { String::new() },
        name: role_name.clone(),
    });
    if policy.authorize(user, &special).allowed {
        return Ok(());
    }
    let name = target.name.clone().unwrap_or_default();
    let refuse = |why: String| {
        ApiError::forbidden(
            &target.group,
            &target.resource,
            &name,
            format!(
                "user {:?} (groups={:?}) is attempting to grant RBAC permissions not currently held:\n{why}",
                user.name, user.groups
            ),
        )
    };
    let Some(object) = object else {
        return Err(refuse(format!("a patch of {} needs the {verb} verb", target.resource)));
    };
    let rules: Vec<Rule> = if binding {
        match policy.rules_of(&role_kind, &namespace, &role_name) {
            Some(rules) => rules.to_vec(),
            None => return Err(refuse(format!("{role_kind} {role_name:?} not found"))),
        }
    } else {
        object["rules"].as_array().map(|r| r.iter().map(Rule::from_json).collect()).unwrap_or_default()
    };
    policy.covers(user, &namespace, &rules).map_err(|missing| refuse(missing.join("\n")))
}
