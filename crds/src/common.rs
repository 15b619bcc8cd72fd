//! Types shared by several kinds: references, the eDeploy four-element item, conditions.

use std::fmt;

use schemars::JsonSchema;
use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// RFC 1123 label: what Kubernetes, DNS and libvirt all accept as a short name.
pub const DNS_LABEL_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// RFC 1123 subdomain: the names of Secrets and most core objects.
pub const DNS_SUBDOMAIN_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A role or software version: eDeploy's `D7-F.1.0.0`, semver, dates.
pub const VERSION_PATTERN: &str = r"^[A-Za-z0-9][A-Za-z0-9._+-]*$";
/// Lower- or upper-case colon-separated EUI-48 address.
pub const MAC_PATTERN: &str = r"^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$";
/// A variable name as eDeploy rules and CMDB entries use it (`$disk`, `ip`, `hostname`).
pub const VARIABLE_NAME_PATTERN: &str = r"^[A-Za-z_][A-Za-z0-9_]*$";
/// Longest element of a rule or hardware item; longer values are not real hardware data.
pub const ITEM_ELEMENT_MAX_LENGTH: usize = 4096;

/// A reference to a software role and, optionally, the version it must have.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleRef {
    /// Name of the Role object, in the same namespace (eDeploy's role, the seeds' `base`, `api`…).
    #[schemars(pattern(DNS_LABEL_PATTERN), length(min = 1, max = 63))]
    pub name: String,
    /// Version the Role must have (its `spec.version`); absent: whatever version the Role has.
    /// A machine whose Role has another version is not installed (condition `Provisioned`,
    /// reason `PlanInvalid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(VERSION_PATTERN), length(min = 1, max = 128))]
    pub version: Option<String>,
}

/// A reference to another object of a known kind in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectRef {
    /// Name of the referenced object, in the same namespace.
    #[schemars(pattern(DNS_LABEL_PATTERN), length(min = 1, max = 63))]
    pub name: String,
}

/// A reference to a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Name of the Secret.
    #[schemars(pattern(DNS_SUBDOMAIN_PATTERN), length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the Secret; absent means the referring object's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DNS_LABEL_PATTERN), length(min = 1, max = 63))]
    pub namespace: Option<String>,
}

/// One `[class, type, name, value]` element, the shape of both eDeploy rules and
/// `hardware-detect` items. On the wire it is a four-element array, as in eDeploy's files,
/// so that rules and reports can be pasted between the two.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quad {
    /// Hardware class: `system`, `cpu`, `memory`, `disk`, `network`…
    pub class: String,
    /// Instance within the class: `physical`, `logical`, `sda`, `eth0`… (or a `$variable` in a rule).
    pub r#type: String,
    /// Attribute: `product`, `size`, `serial`, `ipv4`…
    pub name: String,
    /// Value, or in a rule a literal, a `$variable` or a function such as `gt(4)`.
    pub value: String,
}

impl Quad {
    /// Builds an item from its four elements.
    pub fn new(
        class: impl Into<String>,
        r#type: impl Into<String>,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        Self { class: class.into(), r#type: r#type.into(), name: name.into(), value: value.into() }
    }

    /// The four elements in wire order.
    pub fn elements(&self) -> [&str; 4] {
        [&self.class, &self.r#type, &self.name, &self.value]
    }
}

impl Serialize for Quad {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut tuple = serializer.serialize_tuple(4)?;
        for element in self.elements() {
            tuple.serialize_element(element)?;
        }
        tuple.end()
    }
}

impl<'de> Deserialize<'de> for Quad {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct QuadVisitor;
        impl<'de> Visitor<'de> for QuadVisitor {
            type Value = Quad;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of exactly four strings [class, type, name, value]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Quad, A::Error> {
                let mut elements: Vec<String> = Vec::with_capacity(4);
                while let Some(element) = seq.next_element::<String>()? {
                    if elements.len() == 4 {
                        return Err(de::Error::custom(
                            "expected exactly four elements [class, type, name, value], found more",
                        ));
                    }
                    elements.push(element);
                }
                match <[String; 4]>::try_from(elements) {
                    Ok([class, r#type, name, value]) => Ok(Quad { class, r#type, name, value }),
                    Err(found) => Err(de::Error::custom(format!(
                        "expected exactly four elements [class, type, name, value], found {}",
                        found.len()
                    ))),
                }
            }
        }
        deserializer.deserialize_seq(QuadVisitor)
    }
}

impl JsonSchema for Quad {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Quad".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "[class, type, name, value]",
            "type": "array",
            "items": { "type": "string", "maxLength": ITEM_ELEMENT_MAX_LENGTH },
            "minItems": 4,
            "maxItems": 4,
        })
    }
}

impl fmt::Display for Quad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({}, {}, {}, {})", self.class, self.r#type, self.name, self.value)
    }
}

/// Conditions as every kind reports them: a list keyed by `type`, so that server-side apply
/// merges them one by one.
pub type Conditions = Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>;

pub(crate) fn default_true() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quad_round_trips_as_a_four_element_array() -> Result<(), serde_json::Error> {
        let quad = Quad::new("disk", "$disk", "size", "gt(4)");
        let json = serde_json::to_value(&quad)?;
        assert_eq!(json, serde_json::json!(["disk", "$disk", "size", "gt(4)"]));
        assert_eq!(serde_json::from_value::<Quad>(json)?, quad);
        Ok(())
    }

    #[test]
    fn quad_rejects_wrong_arity_with_the_count() {
        let three = serde_json::from_value::<Quad>(serde_json::json!(["disk", "sda", "size"]));
        let message = three.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("exactly four elements") && message.contains("found 3"), "{message}");

        let five = serde_json::from_value::<Quad>(serde_json::json!(["a", "b", "c", "d", "e"]));
        let message = five.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("found more"), "{message}");
    }

    #[test]
    fn quad_rejects_non_string_elements() {
        let result = serde_json::from_value::<Quad>(serde_json::json!(["cpu", "logical", "number", 2]));
        assert!(result.is_err());
    }
}
