//! A compiled schema: the tree of [`Node`]s that [`crate::compile`] builds from an
//! `openAPIV3Schema` and that pruning, defaulting, validation and CEL read. Data only, so those
//! passes and the compiler (which runs some of them on defaults) do not depend on each other
//! through it.

use std::collections::BTreeMap;

use kube::core::cel::cel::Program;
use regex::Regex;
use serde_json::Value;

/// `additionalProperties`: a boolean or a schema.
#[derive(Debug)]
pub(crate) enum Additional {
    /// `true` (anything goes, and is pruned to nothing) or `false` (forbidden).
    Allows(bool),
    /// A schema for every value of the map.
    Schema(Box<Node>),
}

/// A compiled `pattern`: the source for messages, the regex for matching.
#[derive(Debug)]
pub(crate) struct Pattern {
    /// The pattern as written in the schema.
    pub source: String,
    /// Compiled with Go's (RE2, ASCII `\d`, `\w`, `\s`, `\b`) semantics.
    pub regex: Regex,
}

/// One node of a compiled schema: the structural part (type, properties, items…), the value
/// validations, and the CEL rules.
#[derive(Debug, Default)]
pub(crate) struct Node {
    /// `type`, or empty.
    pub ty: String,
    /// `x-kubernetes-int-or-string`.
    pub int_or_string: bool,
    /// `nullable`.
    pub nullable: bool,
    /// `format` as written (CEL conversions use it).
    pub format: String,
    /// `format` as the validator sees it: blank when the API server does not support it.
    pub checked_format: String,
    /// `default`, pruned like the API server prunes defaults.
    pub default: Option<Value>,
    /// `properties`.
    pub properties: BTreeMap<String, Node>,
    /// `additionalProperties`.
    pub additional_properties: Option<Additional>,
    /// `items`.
    pub items: Option<Box<Node>>,
    /// `x-kubernetes-preserve-unknown-fields: true`.
    pub preserve_unknown_fields: bool,
    /// `x-kubernetes-embedded-resource: true`.
    pub embedded_resource: bool,
    /// `x-kubernetes-list-type`.
    pub list_type: Option<String>,
    /// `x-kubernetes-list-map-keys`.
    pub list_map_keys: Vec<String>,
    /// `x-kubernetes-map-type`.
    pub map_type: Option<String>,
    /// `maximum`.
    pub maximum: Option<f64>,
    /// `exclusiveMaximum`.
    pub exclusive_maximum: bool,
    /// `minimum`.
    pub minimum: Option<f64>,
    /// `exclusiveMinimum`.
    pub exclusive_minimum: bool,
    /// `maxLength`.
    pub max_length: Option<i64>,
    /// `minLength`.
    pub min_length: Option<i64>,
    /// `pattern`.
    pub pattern: Option<Pattern>,
    /// `maxItems`.
    pub max_items: Option<i64>,
    /// `minItems`.
    pub min_items: Option<i64>,
    /// `multipleOf`.
    pub multiple_of: Option<f64>,
    /// `enum`.
    pub enumeration: Vec<Value>,
    /// `maxProperties`.
    pub max_properties: Option<i64>,
    /// `minProperties`.
    pub min_properties: Option<i64>,
    /// `required`.
    pub required: Vec<String>,
    /// `allOf`.
    pub all_of: Vec<Node>,
    /// `oneOf`.
    pub one_of: Vec<Node>,
    /// `anyOf`.
    pub any_of: Vec<Node>,
    /// `not`.
    pub not: Option<Box<Node>>,
    /// `x-kubernetes-validations`.
    pub rules: Vec<Rule>,
    /// Whether this node or one below it on the structural spine has CEL rules.
    pub has_rules: bool,
    /// How CEL declares this node (`self` of its rules), for cost estimation; set on nodes with
    /// rules.
    pub decl: Option<DeclType>,
}

impl Node {
    /// The types the validator checks: `integer,string` for int-or-string, else the `type`.
    pub fn types(&self) -> Vec<&str> {
        if self.int_or_string {
            vec!["integer", "string"]
        } else if self.ty.is_empty() {
            Vec::new()
        } else {
            vec![self.ty.as_str()]
        }
    }

    /// The schema of the value under `name` in an object: its property, else the
    /// `additionalProperties` schema.
    pub fn field(&self, name: &str) -> Option<&Node> {
        self.properties.get(name).or(match &self.additional_properties {
            Some(Additional::Schema(s)) => Some(s),
            _ => None,
        })
    }

    /// The `additionalProperties` schema, if a schema.
    pub fn additional_schema(&self) -> Option<&Node> {
        match &self.additional_properties {
            Some(Additional::Schema(s)) => Some(s),
            _ => None,
        }
    }
}

/// A compiled `x-kubernetes-validations` rule.
#[derive(Debug)]
pub(crate) struct Rule {
    /// `rule`.
    pub rule: String,
    /// `message`.
    pub message: String,
    /// `reason`.
    pub reason: Option<String>,
    /// `optionalOldSelf`.
    pub optional_old_self: bool,
    /// The compiled rule; `None` for an empty rule.
    pub program: Option<Program>,
    /// `messageExpression`.
    pub message_expression: String,
    /// The compiled `messageExpression`.
    pub message_program: Option<Program>,
    /// Whether the rule references `oldSelf` (a transition rule).
    pub uses_old_self: bool,
    /// `fieldPath` as a field path relative to the node (`spec.x`, `[key]`).
    pub normalized_field_path: Option<String>,
}

/// How CEL declares a schema node, for cost estimation: Kubernetes' `DeclType` reduced to
/// what the estimator reads (built by `crate::decl`).
/// What a value is, as CEL types it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DeclKind {
    Bool,
    Int,
    Double,
    String,
    Bytes,
    Duration,
    Timestamp,
    /// `x-kubernetes-int-or-string`.
    Dyn,
    List,
    Map,
    Object,
}

/// A schema node as CEL declares it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct DeclType {
    pub kind: DeclKind,
    /// The most characters (strings, ×4 for `maxLength` as the API server counts bytes), items or
    /// properties; 0 for scalars and objects.
    pub max_elements: u64,
    /// The fewest bytes the value takes in JSON.
    pub min_serialized_size: i64,
    /// Object fields by their CEL (escaped) name.
    pub fields: BTreeMap<String, DeclField>,
    /// List items, map values.
    pub elem: Option<Box<DeclType>>,
    /// Map keys.
    pub key: Option<Box<DeclType>>,
}

/// A field of an object.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct DeclField {
    /// The property name in JSON.
    pub json_name: String,
    pub ty: DeclType,
}
