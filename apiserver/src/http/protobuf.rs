//! Protobuf request bodies. client-go (kubectl) sends built-in kinds as
//! `application/vnd.kubernetes.protobuf`: the magic `k8s\0`, then a `runtime.Unknown` whose
//! `raw` is the object's message. This decodes the kinds this server stores into the JSON form
//! the rest of the server works with. Field numbers are those of Kubernetes' `generated.proto`.

use base64::Engine;
use serde_json::{Map, Value, json};

/// The protobuf media type.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8] = b"k8s\0";
/// Go writes every scalar, empty or not; these empty values mean "not set" (omitempty in JSON).
fn is_unset(field: &Field, value: &Value) -> bool {
    match value {
        Value::String(s) => s.is_empty(),
        Value::Null => true,
        Value::Number(n) => field.name == "generation" && n.as_i64() == Some(0),
        Value::Object(map) => map.is_empty() && matches!(field.kind, Kind::Message(_)),
        _ => false,
    }
}

/// Deepest message nesting these schemas have, with room to spare.
const MAX_DEPTH: usize = 8;

/// A body that is not a protobuf object this server understands.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtobufError {
    /// Not the Kubernetes envelope.
    #[error("the protobuf body does not start with the Kubernetes magic number")]
    NoMagic,
    /// Broken wire data.
    #[error("malformed protobuf: {0}")]
    Malformed(&'static str),
    /// A kind this decoder does not know.
    #[error("protobuf bodies of kind {0:?} are not supported; send JSON")]
    UnsupportedKind(String),
}

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Int,
    Bool,
    /// `metav1.Time` / `MicroTime` (seconds, nanos); `true` for microsecond precision.
    Time(bool),
    Message(&'static [Field]),
    RepeatedStr,
    RepeatedMessage(&'static [Field]),
    MapStrStr,
    /// Map of bytes, written base64 in JSON.
    MapStrBytes,
}

#[derive(Clone, Copy)]
struct Field {
    tag: u64,
    name: &'static str,
    kind: Kind,
}

const fn f(tag: u64, name: &'static str, kind: Kind) -> Field {
    Field { tag, name, kind }
}

const OWNER_REFERENCE: &[Field] = &[
    f(5, "apiVersion", Kind::Str),
    f(1, "kind", Kind::Str),
    f(3, "name", Kind::Str),
    f(4, "uid", Kind::Str),
    f(6, "controller", Kind::Bool),
    f(7, "blockOwnerDeletion", Kind::Bool),
];

const OBJECT_META: &[Field] = &[
    f(1, "name", Kind::Str),
    f(2, "generateName", Kind::Str),
    f(3, "namespace", Kind::Str),
    f(5, "uid", Kind::Str),
    f(6, "resourceVersion", Kind::Str),
    f(7, "generation", Kind::Int),
    f(8, "creationTimestamp", Kind::Time(false)),
    f(9, "deletionTimestamp", Kind::Time(false)),
    f(10, "deletionGracePeriodSeconds", Kind::Int),
    f(11, "labels", Kind::MapStrStr),
    f(12, "annotations", Kind::MapStrStr),
    f(13, "ownerReferences", Kind::RepeatedMessage(OWNER_REFERENCE)),
    f(14, "finalizers", Kind::RepeatedStr),
];

const NAMESPACE: &[Field] = &[
    f(1, "metadata", Kind::Message(OBJECT_META)),
    f(2, "spec", Kind::Message(&[f(1, "finalizers", Kind::RepeatedStr)])),
    f(3, "status", Kind::Message(&[f(1, "phase", Kind::Str)])),
];

const SECRET: &[Field] = &[
    f(1, "metadata", Kind::Message(OBJECT_META)),
    f(2, "data", Kind::MapStrBytes),
    f(3, "type", Kind::Str),
    f(4, "stringData", Kind::MapStrStr),
    f(5, "immutable", Kind::Bool),
];

const CONFIG_MAP: &[Field] = &[
    f(1, "metadata", Kind::Message(OBJECT_META)),
    f(2, "data", Kind::MapStrStr),
    f(3, "binaryData", Kind::MapStrBytes),
    f(4, "immutable", Kind::Bool),
];

const LEASE: &[Field] = &[
    f(1, "metadata", Kind::Message(OBJECT_META)),
    f(
        2,
        "spec",
        Kind::Message(&[
            f(1, "holderIdentity", Kind::Str),
            f(2, "leaseDurationSeconds", Kind::Int),
            f(3, "acquireTime", Kind::Time(true)),
            f(4, "renewTime", Kind::Time(true)),
            f(5, "leaseTransitions", Kind::Int),
            f(6, "strategy", Kind::Str),
            f(7, "preferredHolder", Kind::Str),
        ]),
    ),
];

const OBJECT_REFERENCE: &[Field] = &[
    f(1, "kind", Kind::Str),
    f(2, "namespace", Kind::Str),
    f(3, "name", Kind::Str),
    f(4, "uid", Kind::Str),
    f(5, "apiVersion", Kind::Str),
    f(6, "resourceVersion", Kind::Str),
    f(7, "fieldPath", Kind::Str),
];

const SERVICE_ACCOUNT: &[Field] = &[
    f(1, "metadata", Kind::Message(OBJECT_META)),
    f(2, "secrets", Kind::RepeatedMessage(OBJECT_REFERENCE)),
    f(3, "imagePullSecrets", Kind::RepeatedMessage(&[f(1, "name", Kind::Str)])),
    f(4, "automountServiceAccountToken", Kind::Bool),
];

const POLICY_RULE: &[Field] = &[
    f(1, "verbs", Kind::RepeatedStr),
    f(2, "apiGroups", Kind::RepeatedStr),
    f(3, "resources", Kind::RepeatedStr),
    f(4, "resourceNames", Kind::RepeatedStr),
    f(5, "nonResourceURLs", Kind::RepeatedStr),
];

const ROLE: &[Field] =
    &[f(1, "metadata", Kind::Message(OBJECT_META)), f(2, "rules", Kind::RepeatedMessage(POLICY_RULE))];

const BINDING: &[Field] = &[
    f(1, "metadata", Kind::Message(OBJECT_META)),
    f(
        2,
        "subjects",
        Kind::RepeatedMessage(&[
            f(1, "kind", Kind::Str),
            f(2, "apiGroup", Kind::Str),
            f(3, "name", Kind::Str),
            f(4, "namespace", Kind::Str),
        ]),
    ),
    f(3, "roleRef", Kind::Message(&[f(1, "apiGroup", Kind::Str), f(2, "kind", Kind::Str), f(3, "name", Kind::Str)])),
];

const RESOURCE_ATTRIBUTES: &[Field] = &[
    f(1, "namespace", Kind::Str),
    f(2, "verb", Kind::Str),
    f(3, "group", Kind::Str),
    f(4, "version", Kind::Str),
    f(5, "resource", Kind::Str),
    f(6, "subresource", Kind::Str),
    f(7, "name", Kind::Str),
];

const NON_RESOURCE_ATTRIBUTES: &[Field] = &[f(1, "path", Kind::Str), f(2, "verb", Kind::Str)];

const SELF_SUBJECT_ACCESS_REVIEW: &[Field] = &[
    f(1, "metadata", Kind::Message(OBJECT_META)),
    f(
        2,
        "spec",
        Kind::Message(&[
            f(1, "resourceAttributes", Kind::Message(RESOURCE_ATTRIBUTES)),
            f(2, "nonResourceAttributes", Kind::Message(NON_RESOURCE_ATTRIBUTES)),
        ]),
    ),
];

const SUBJECT_ACCESS_REVIEW: &[Field] = &[
    f(1, "metadata", Kind::Message(OBJECT_META)),
    f(
        2,
        "spec",
        Kind::Message(&[
            f(1, "resourceAttributes", Kind::Message(RESOURCE_ATTRIBUTES)),
            f(2, "nonResourceAttributes", Kind::Message(NON_RESOURCE_ATTRIBUTES)),
            f(3, "user", Kind::Str),
            f(4, "groups", Kind::RepeatedStr),
            f(6, "uid", Kind::Str),
        ]),
    ),
];

const SELF_SUBJECT_RULES_REVIEW: &[Field] =
    &[f(1, "metadata", Kind::Message(OBJECT_META)), f(2, "spec", Kind::Message(&[f(1, "namespace", Kind::Str)]))];

const SELF_SUBJECT_REVIEW: &[Field] = &[f(1, "metadata", Kind::Message(OBJECT_META))];

const TYPE_META: &[Field] = &[f(1, "apiVersion", Kind::Str), f(2, "kind", Kind::Str)];

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ProtobufError> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let (&byte, rest) = self.bytes.split_first().ok_or(ProtobufError::Malformed("truncated varint"))?;
            self.bytes = rest;
            if shift == 63 && byte > 1 {
                return Err(ProtobufError::Malformed("varint overflows 64 bits"));
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ProtobufError::Malformed("varint too long"))
    }

    fn bytes(&mut self) -> Result<&'a [u8], ProtobufError> {
        let length = usize::try_from(self.varint()?).map_err(|_| ProtobufError::Malformed("length too large"))?;
        if length > self.bytes.len() {
            return Err(ProtobufError::Malformed("length beyond the end of the body"));
        }
        let (head, rest) = self.bytes.split_at(length);
        self.bytes = rest;
        Ok(head)
    }

    fn skip(&mut self, wire: u64) -> Result<(), ProtobufError> {
        match wire {
            0 => self.varint().map(drop),
            1 => self.take(8),
            2 => self.bytes().map(drop),
            5 => self.take(4),
            _ => Err(ProtobufError::Malformed("unsupported wire type")),
        }
    }

    fn take(&mut self, n: usize) -> Result<(), ProtobufError> {
        if n > self.bytes.len() {
            return Err(ProtobufError::Malformed("truncated fixed-width field"));
        }
        self.bytes = &self.bytes[n..];
        Ok(())
    }
}

fn text(bytes: &[u8]) -> Result<String, ProtobufError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| ProtobufError::Malformed("string is not UTF-8"))
}

/// A `Time` of zero seconds is Go's zero time: unset.
fn time(bytes: &[u8], micro: bool) -> Result<Value, ProtobufError> {
    let (mut seconds, mut nanos) = (0i64, 0i64);
    let mut reader = Reader { bytes };
    while !reader.bytes.is_empty() {
        let key = reader.varint()?;
        match (key >> 3, key & 7) {
            (1, 0) => seconds = reader.varint()? as i64,
            (2, 0) => nanos = reader.varint()? as i64,
            (_, wire) => reader.skip(wire)?,
        }
    }
    if seconds == 0 && nanos == 0 {
        return Ok(Value::Null);
    }
    let timestamp = jiff::Timestamp::new(seconds, i32::try_from(nanos).unwrap_or(0))
        .map_err(|_| ProtobufError::Malformed("time out of range"))?;
    let format = if micro { "%Y-%m-%dT%H:%M:%S.%6fZ" } else { "%Y-%m-%dT%H:%M:%SZ" };
    Ok(Value::String(timestamp.strftime(format).to_string()))
}

fn map_entry(bytes: &[u8], bytes_value: bool) -> Result<(String, Value), ProtobufError> {
    let (mut key, mut value) = (String::new(), Value::String(String::new()));
    let mut reader = Reader { bytes };
    while !reader.bytes.is_empty() {
        let tag = reader.varint()?;
        match (tag >> 3, tag & 7) {
            (1, 2) => key = text(reader.bytes()?)?,
            (2, 2) => {
                let raw = reader.bytes()?;
                value = Value::String(if bytes_value {
                    base64::engine::general_purpose::STANDARD.encode(raw)
                } else {
                    text(raw)?
                });
            }
            (_, wire) => reader.skip(wire)?,
        }
    }
    Ok((key, value))
}

fn message(bytes: &[u8], fields: &[Field], depth: usize) -> Result<Value, ProtobufError> {
    if depth > MAX_DEPTH {
        return Err(ProtobufError::Malformed("nesting too deep"));
    }
    let mut out = Map::new();
    let mut reader = Reader { bytes };
    while !reader.bytes.is_empty() {
        let key = reader.varint()?;
        let (tag, wire) = (key >> 3, key & 7);
        let Some(field) = fields.iter().find(|f| f.tag == tag) else {
            reader.skip(wire)?;
            continue;
        };
        let expect =
            |want: u64| if wire == want { Ok(()) } else { Err(ProtobufError::Malformed("unexpected wire type")) };
        match field.kind {
            Kind::Str | Kind::Int | Kind::Bool | Kind::Time(_) | Kind::Message(_) => {
                let value = match field.kind {
                    Kind::Str => {
                        expect(2)?;
                        Value::String(text(reader.bytes()?)?)
                    }
                    Kind::Int => {
                        expect(0)?;
                        json!(reader.varint()? as i64)
                    }
                    Kind::Bool => {
                        expect(0)?;
                        json!(reader.varint()? != 0)
                    }
                    Kind::Time(micro) => {
                        expect(2)?;
                        time(reader.bytes()?, micro)?
                    }
                    Kind::Message(inner) => {
                        expect(2)?;
                        message(reader.bytes()?, inner, depth + 1)?
                    }
                    _ => Value::Null,
                };
                if is_unset(field, &value) {
                    out.remove(field.name);
                } else {
                    out.insert(field.name.into(), value);
                }
            }
            Kind::RepeatedStr => {
                expect(2)?;
                let item = Value::String(text(reader.bytes()?)?);
                push(&mut out, field.name, item);
            }
            Kind::RepeatedMessage(inner) => {
                expect(2)?;
                let item = message(reader.bytes()?, inner, depth + 1)?;
                push(&mut out, field.name, item);
            }
            Kind::MapStrStr | Kind::MapStrBytes => {
                expect(2)?;
                let (k, v) = map_entry(reader.bytes()?, matches!(field.kind, Kind::MapStrBytes))?;
                let map = out.entry(field.name).or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(map) = map {
                    map.insert(k, v);
                }
            }
        }
    }
    Ok(Value::Object(out))
}

fn push(out: &mut Map<String, Value>, name: &str, item: Value) {
    let list = out.entry(name).or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(list) = list {
        list.push(item);
    }
}

/// Decodes a protobuf body into the object's JSON form.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let envelope = body.strip_prefix(MAGIC).ok_or(ProtobufError::NoMagic)?;
    let (mut type_meta, mut raw) = (Value::Null, None);
    let mut reader = Reader { bytes: envelope };
    while !reader.bytes.is_empty() {
        let key = reader.varint()?;
        match (key >> 3, key & 7) {
            (1, 2) => type_meta = message(reader.bytes()?, TYPE_META, 0)?,
            (2, 2) => raw = Some(reader.bytes()?),
            (_, wire) => reader.skip(wire)?,
        }
    }
    let api_version = type_meta["apiVersion"].as_str().unwrap_or_default().to_owned();
    let kind = type_meta["kind"].as_str().unwrap_or_default().to_owned();
    let fields = match (api_version.as_str(), kind.as_str()) {
        ("v1", "Namespace") => NAMESPACE,
        ("v1", "Secret") => SECRET,
        ("v1", "ConfigMap") => CONFIG_MAP,
        ("coordination.k8s.io/v1", "Lease") => LEASE,
        ("v1", "ServiceAccount") => SERVICE_ACCOUNT,
        ("rbac.authorization.k8s.io/v1", "Role" | "ClusterRole") => ROLE,
        ("rbac.authorization.k8s.io/v1", "RoleBinding" | "ClusterRoleBinding") => BINDING,
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => SELF_SUBJECT_ACCESS_REVIEW,
        ("authorization.k8s.io/v1", "SubjectAccessReview") => SUBJECT_ACCESS_REVIEW,
        ("authorization.k8s.io/v1", "SelfSubjectRulesReview") => SELF_SUBJECT_RULES_REVIEW,
        ("authentication.k8s.io/v1", "SelfSubjectReview") => SELF_SUBJECT_REVIEW,
        _ => return Err(ProtobufError::UnsupportedKind(format!("{api_version}/{kind}"))),
    };
    let mut object = message(raw.unwrap_or_default(), fields, 0)?;
    if let Value::Object(map) = &mut object {
        map.insert("apiVersion".into(), Value::String(api_version));
        map.insert("kind".into(), Value::String(kind));
    }
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(tag: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![(tag << 3 | 2) as u8, payload.len() as u8];
        out.extend_from_slice(payload);
        out
    }

    fn entry(key: &str, value: &[u8]) -> Vec<u8> {
        [field(1, key.as_bytes()), field(2, value)].concat()
    }

    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let type_meta = [field(1, api_version.as_bytes()), field(2, kind.as_bytes())].concat();
        [MAGIC.to_vec(), field(1, &type_meta), field(2, raw)].concat()
    }

    #[test]
    fn decodes_a_secret_as_kubectl_sends_it() {
        let meta = [field(1, b"creds"), field(3, b"edeploy"), field(11, &entry("app", b"bmc"))].concat();
        let raw = [field(1, &meta), field(2, &entry("password", b"hunter2")), field(3, b"Opaque")].concat();
        let secret = decode(&envelope("v1", "Secret", &raw)).unwrap();
        assert_eq!(
            secret,
            json!({
                "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": "creds", "namespace": "edeploy", "labels": {"app": "bmc"}},
                "data": {"password": "aHVudGVyMg=="}
            })
        );
    }

    #[test]
    fn decodes_a_namespace_with_times() {
        let mut created = vec![8u8]; // field 1 (seconds), varint
        let mut seconds: u64 = 1_760_000_000;
        while seconds >= 0x80 {
            created.push((seconds as u8 & 0x7f) | 0x80);
            seconds >>= 7;
        }
        created.push(seconds as u8);
        let meta = [field(1, b"lab"), field(8, &created)].concat();
        let namespace = decode(&envelope("v1", "Namespace", &field(1, &meta))).unwrap();
        assert_eq!(namespace["metadata"]["name"], "lab");
        assert_eq!(namespace["metadata"]["creationTimestamp"], "2025-10-09T08:53:20Z");
    }

    #[test]
    fn go_zero_values_are_unset() {
        // What client-go writes for `kubectl create namespace lab`: empty strings, generation 0,
        // an empty creationTimestamp.
        let meta = [field(1, b"lab"), field(2, b""), field(3, b""), vec![7 << 3, 0], field(8, b"")].concat();
        let raw = [field(1, &meta), field(2, b""), field(3, &field(1, b""))].concat();
        let namespace = decode(&envelope("v1", "Namespace", &raw)).unwrap();
        assert_eq!(namespace, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "lab"}}));
    }

    #[test]
    fn rejects_what_it_cannot_read() {
        assert_eq!(decode(b"{}"), Err(ProtobufError::NoMagic));
        assert!(matches!(decode(&envelope("apps/v1", "Deployment", b"")), Err(ProtobufError::UnsupportedKind(_))));
        let truncated = [MAGIC.to_vec(), vec![0x0a, 0x40, 0x01]].concat();
        assert!(matches!(decode(&truncated), Err(ProtobufError::Malformed(_))));
        let bad_utf8 = envelope("v1", "ConfigMap", &field(1, &field(1, &[0xff, 0xfe])));
        assert!(matches!(decode(&bad_utf8), Err(ProtobufError::Malformed(_))));
    }
}
