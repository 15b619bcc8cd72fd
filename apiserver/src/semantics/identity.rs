//! ServiceAccount tokens: Secrets of type `kubernetes.io/service-account-token` get a token
//! when they are created, and a request bearing it authenticates as the ServiceAccount
//! (Kubernetes' legacy token Secrets, which its token controller fills).
//!
//! The token is `<base64url of namespace/secret>.<64 hex digits>`: the prefix lets
//! [`authenticate`] read the one Secret that can hold it instead of searching them, where
//! Kubernetes signs a JWT naming the Secret. A token is valid while its Secret holds it and
//! the ServiceAccount it was made for (same uid: not one re-created under the name) exists and
//! is not being deleted. The token and the ServiceAccount uid a Secret was made for never
//! change afterwards.

use base64::Engine;
use serde_json::{Value, json};

use crate::semantics::errors::{ApiError, Cause};
use crate::semantics::meta::meta_str;
use crate::semantics::rbac::User;
use crate::semantics::request::Request;
use crate::semantics::state::Api;
use crate::store::{ObjectKey, ResourceKey};

/// The Secret type that carries a ServiceAccount token.
pub const TOKEN_SECRET_TYPE: &str = "kubernetes.io/service-account-token";
/// The annotation naming the ServiceAccount of a token Secret.
pub const SERVICE_ACCOUNT_NAME: &str = "kubernetes.io/service-account.name";
/// The annotation holding the uid of the ServiceAccount a token Secret was made for.
pub const SERVICE_ACCOUNT_UID: &str = "kubernetes.io/service-account.uid";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

fn secrets() -> ResourceKey {
    ResourceKey::new("", "secrets")
}

fn service_accounts() -> ResourceKey {
    ResourceKey::new("", "serviceaccounts")
}

fn annotation<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object.pointer("/metadata/annotations")?.get(key)?.as_str()
}

fn is_token_secret(object: &Value) -> bool {
    object["type"] == TOKEN_SECRET_TYPE
}

fn data_text(secret: &Value, key: &str) -> Option<String> {
    let encoded = secret.get("data")?.get(key)?.as_str()?;
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded).ok()?).ok()
}

/// Gives a new ServiceAccount token Secret its token, `namespace` and ServiceAccount uid, and
/// keeps them (and the type) as they were on updates. Other Secrets pass unchanged.
pub fn admit_token_secret(
    api: &Api,
    request: &Request,
    object: &mut Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    let name = meta_str(object, "name").unwrap_or_default().to_owned();
    let invalid = |field: &str, message: String| {
        ApiError::invalid(
            "",
            "Secret",
            &name,
            vec![Cause { reason: "FieldValueInvalid".into(), message, field: field.into() }],
        )
    };
    if let Some(old) = old {
        if old["type"] != object["type"] && (is_token_secret(old) || is_token_secret(object)) {
            return Err(invalid("type", "Invalid value: field is immutable".into()));
        }
        if !is_token_secret(old) {
            return Ok(());
        }
        // What the server issued stays: a writer of the Secret cannot choose its token.
        for key in ["token", "namespace"] {
            match old.get("data").and_then(|d| d.get(key)) {
                Some(value) => object["data"][key] = value.clone(),
                None => {
                    if let Some(data) = object.get_mut("data").and_then(Value::as_object_mut) {
                        data.remove(key);
                    }
                }
            }
        }
        let uid = annotation(old, SERVICE_ACCOUNT_UID).map(str::to_owned);
        let annotations = &mut object["metadata"]["annotations"];
        match uid {
            Some(uid) => annotations[SERVICE_ACCOUNT_UID] = json!(uid),
            None => {
                if let Some(map) = annotations.as_object_mut() {
                    map.remove(SERVICE_ACCOUNT_UID);
                }
            }
        }
        return Ok(());
    }
    if !is_token_secret(object) {
        return Ok(());
    }
    let namespace = request.namespace.clone().unwrap_or_default();
    let Some(account) = annotation(object, SERVICE_ACCOUNT_NAME).filter(|n| !n.is_empty()).map(str::to_owned) else {
        return Err(ApiError::invalid(
            "",
            "Secret",
            &name,
            vec![Cause {
                reason: "FieldValueRequired".into(),
                message: "Required value".into(),
                field: format!("metadata.annotations[{SERVICE_ACCOUNT_NAME}]"),
            }],
        ));
    };
    let Some(service_account) = api.store.get(&service_accounts(), &ObjectKey::new(&namespace, &account)) else {
        return Err(invalid(
            &format!("metadata.annotations[{SERVICE_ACCOUNT_NAME}]"),
            format!("Invalid value: {account:?}: no ServiceAccount of this name in namespace {namespace:?}"),
        ));
    };
    let uid = meta_str(&service_account, "uid").unwrap_or_default().to_owned();
    let mut random = [0u8; 32];
    getrandom::fill(&mut random).map_err(|e| ApiError::internal(format!("no randomness for a token: {e}")))?;
    let secret_part: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let token = format!("{}.{secret_part}", B64.encode(format!("{namespace}/{name}")));
    let standard = base64::engine::general_purpose::STANDARD;
    if !object.get("data").is_some_and(Value::is_object) {
        object["data"] = json!({});
    }
    object["data"]["token"] = json!(standard.encode(&token));
    object["data"]["namespace"] = json!(standard.encode(&namespace));
    object["metadata"]["annotations"][SERVICE_ACCOUNT_UID] = json!(uid);
    Ok(())
}

/// The ServiceAccount a bearer token belongs to, if it is a valid ServiceAccount token.
pub fn authenticate(api: &Api, token: &str) -> Option<User> {
    let (prefix, _) = token.split_once('.')?;
    let named = String::from_utf8(B64.decode(prefix).ok()?).ok()?;
    let (namespace, secret_name) = named.split_once('/')?;
    let secret = api.store.get(&secrets(), &ObjectKey::new(namespace, secret_name))?;
    if !is_token_secret(&secret) {
        return None;
    }
    let stored = data_text(&secret, "token")?;
    if !constant_time_eq(stored.as_bytes(), token.as_bytes()) {
        return None;
    }
    let account = annotation(&secret, SERVICE_ACCOUNT_NAME)?;
    let service_account = api.store.get(&service_accounts(), &ObjectKey::new(namespace, account))?;
    let uid = meta_str(&service_account, "uid")?;
    if Some(uid) != annotation(&secret, SERVICE_ACCOUNT_UID)
        || service_account.pointer("/metadata/deletionTimestamp").is_some()
    {
        return None;
    }
    Some(User::service_account(namespace, account, uid))
}

/// Constant-time comparison, so a token cannot be guessed byte by byte from timings.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
