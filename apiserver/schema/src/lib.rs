//! Structural-schema admission, as the Kubernetes API server does it for custom resources.
//!
//! A [`Schema`] is compiled once per CRD version from its `openAPIV3Schema` and rejects what the
//! API server rejects in a CRD (non-structural schemas, unsupported keywords, invalid list types,
//! patterns, defaults and CEL rules). [`Schema::admit`] then does to a custom resource what the
//! API server (Kubernetes 1.34, the version the embedded server reports) does between decoding
//! the request and storing it:
//!
//! 1. prune unknown fields (recording their paths for `fieldValidation=Strict/Warn`), drop
//!    `null`s the schema does not allow, coerce the metadata of embedded resources;
//! 2. apply `default`s;
//! 3. validate with kube-openapi's rules (type, format, enum, pattern, bounds, lengths, sizes,
//!    required, `allOf`/`anyOf`/`oneOf`/`not`), the embedded resources' type and object meta, and
//!    the uniqueness of `set` and `map` lists;
//! 4. unless a "blocking" error was found, evaluate the CEL rules (`x-kubernetes-validations`),
//!    including transition rules on update.
//!
//! On update, errors of values the update left unchanged are dropped (validation ratcheting).
//! Errors are [`FieldError`]s whose [`FieldError::message`] is the API server's, byte for byte.
//!
//! ```
//! use machinist_apiserver_schema::Schema;
//! use serde_json::json;
//!
//! let schema = Schema::compile(&json!({
//!     "type": "object",
//!     "properties": {"spec": {"type": "object", "properties": {
//!         "port": {"type": "integer", "maximum": 65535, "default": 80},
//!     }}},
//! }))
//! .unwrap();
//! let mut object = json!({"apiVersion": "x.dev/v1", "kind": "X", "spec": {"port": 70000, "foo": 1}});
//! let admission = schema.admit(&mut object, None);
//! assert_eq!(admission.pruned, ["spec.foo"]);
//! assert_eq!(
//!     admission.errors[0].message(),
//!     "spec.port: Invalid value: 70000: spec.port in body should be less than or equal to 65535"
//! );
//! ```

mod cel;
mod compile;
mod cost;
mod decl;
mod default;
mod errors;
mod escaping;
mod formats;
mod listtype;
mod node;
mod objectmeta;
mod path;
mod prune;
mod ratchet;
mod validate;

use serde_json::Value;

pub use cost::{
    CostReport, ExpressionCost, PER_CALL_LIMIT, RUNTIME_CEL_COST_BUDGET, STATIC_ESTIMATED_COST_LIMIT,
    STATIC_ESTIMATED_CRD_COST_LIMIT,
};
pub use decl::MAX_REQUEST_SIZE_BYTES;
pub use errors::{ErrorKind, FieldError, SchemaError, aggregate};

/// The deepest nesting accepted, of schemas and of objects: deeper input is an error, not a
/// stack overflow.
pub const MAX_DEPTH: usize = 100;

/// The schema path compiled schemas are reported under by [`Schema::compile`].
pub const DEFAULT_SCHEMA_PATH: &str = "openAPIV3Schema";

/// The error the API server adds when it skips the CEL rules because of other errors.
const CEL_SKIPPED: &str = "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation";

/// A compiled structural schema of one CRD version. `Send + Sync`: compile once, share.
#[derive(Debug)]
pub struct Schema {
    root: node::Node,
    /// The schema path it was compiled at.
    path: String,
}

/// What admission decided about an object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Admission {
    /// Paths of the unknown fields pruned (`spec.foo`, `spec.items[0].bar`, map keys joined with
    /// dots), sorted; the API server reports them as `unknown field "spec.foo"` (warnings, or an
    /// error with `fieldValidation=Strict`).
    pub pruned: Vec<String>,
    /// The validation errors; the object is invalid unless empty.
    pub errors: Vec<FieldError>,
    /// Failures of CEL rules on values the update did not change (ratcheted); the API server
    /// returns them as warnings.
    pub warnings: Vec<String>,
}

impl Admission {
    /// Whether the object is valid.
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }
}

/// The less common knobs of [`Schema::admit_with`].
#[derive(Clone, Debug, Default)]
pub struct AdmitOptions<'a> {
    /// The stored object, on update.
    pub old: Option<&'a Value>,
    /// An update of the `status` subresource: only `status` is schema-validated (its paths in
    /// messages relative to it, as the API server words them), CEL rules still run on the whole
    /// object. Requires `old`.
    pub status: bool,
    /// Errors the caller found before (type and object meta of the root): reported first, and
    /// they make CEL rules skipped when blocking, as in the API server.
    pub prior_errors: Vec<FieldError>,
}

impl Schema {
    /// Compiles an `openAPIV3Schema`, reporting problems under the path `openAPIV3Schema`.
    pub fn compile(open_api_v3_schema: &Value) -> Result<Self, SchemaError> {
        Self::compile_at(open_api_v3_schema, DEFAULT_SCHEMA_PATH)
    }

    /// Compiles an `openAPIV3Schema`, reporting problems under `path`, e.g.
    /// `spec.versions[0].schema.openAPIV3Schema` as the API server does for a CRD.
    pub fn compile_at(open_api_v3_schema: &Value, path: &str) -> Result<Self, SchemaError> {
        match compile::compile(open_api_v3_schema, path) {
            Ok(root) => Ok(Self { root, path: path.to_owned() }),
            Err(errors) => Err(SchemaError { errors }),
        }
    }

    /// The estimated costs of the CEL rules (and `messageExpression`s), as the API server
    /// estimates them when a CRD is created or updated (see the `cost` module), with paths
    /// under the path the schema was compiled at.
    pub fn estimated_costs(&self) -> CostReport {
        cost::report(&self.root, &self.path)
    }

    /// The errors the API server reports for CEL costs over its limits
    /// ([`STATIC_ESTIMATED_COST_LIMIT`] per expression, [`STATIC_ESTIMATED_CRD_COST_LIMIT`] in
    /// total); empty when within them. `per_expression: false` skips the per-expression limit,
    /// as the API server does for a version whose schema an update leaves unchanged.
    pub fn cost_errors(&self, per_expression: bool) -> Vec<FieldError> {
        cost::errors(&self.estimated_costs(), &self.path, per_expression)
    }

    /// Admits a create (`old` is `None`) or an update of the whole object: prunes, defaults and
    /// validates `object` in place.
    pub fn admit(&self, object: &mut Value, old: Option<&Value>) -> Admission {
        self.admit_with(object, AdmitOptions { old, ..AdmitOptions::default() })
    }

    /// Admits an update through the `status` subresource (`object` being the stored object with
    /// the new status).
    pub fn admit_status(&self, object: &mut Value, old: &Value) -> Admission {
        self.admit_with(object, AdmitOptions { old: Some(old), status: true, ..AdmitOptions::default() })
    }

    /// [`Schema::admit`] with options.
    pub fn admit_with(&self, object: &mut Value, options: AdmitOptions<'_>) -> Admission {
        let mut admission = Admission::default();
        for (value, what) in [(Some(&*object), "object"), (options.old, "stored object")] {
            if let Some(value) = value
                && let Some(path) = too_deep(value)
            {
                admission.errors.push(FieldError::forbidden(
                    path,
                    format!("the {what} must not be nested more than {MAX_DEPTH} levels deep"),
                ));
                return admission;
            }
        }

        match self.decode(object) {
            Ok(pruned) => admission.pruned = pruned,
            Err(error) => {
                admission.errors.push(error);
                return admission;
            }
        }
        // The stored object is read through the same decoding.
        let old = options.old.map(|old| {
            let mut old = old.clone();
            let _ = self.decode(&mut old);
            old
        });
        let old = old.as_ref();

        let mut errors = options.prior_errors;
        if options.status {
            if let (Some(status), Some(schema)) = (object.get("status"), self.root.properties.get("status")) {
                let old_status = old.and_then(|o| o.get("status"));
                errors.extend(validate::validate(schema, status, old_status, Some("status")));
            }
        } else {
            errors.extend(validate::validate(&self.root, object, old, None));
            objectmeta::validate(object, &self.root, "", &mut errors);
        }
        // Set and map lists: on update only if the stored object obeyed them (ratcheting).
        if old.is_none_or(|old| listtype::validate(old, &self.root).is_empty()) {
            errors.extend(listtype::validate(object, &self.root));
        }

        if self.root.has_rules {
            if errors.iter().any(|e| e.kind.blocks_cel()) {
                errors.push(FieldError::invalid("<nil>", Value::Null, CEL_SKIPPED));
            } else {
                let (cel_errors, warnings) = cel::validate(&self.root, object, old, "", old.is_some(), true);
                errors.extend(cel_errors);
                admission.warnings = warnings;
            }
        }
        admission.errors = errors;
        admission
    }

    /// What decoding a request body does to it in the API server: prune unknown fields (their
    /// paths returned), drop disallowed `null`s, coerce embedded resources' metadata, apply
    /// defaults. Also what reading a stored object does, so objects stored under an older
    /// schema come out as the current one says.
    pub fn decode(&self, object: &mut Value) -> Result<Vec<String>, FieldError> {
        if let Some(path) = too_deep(object) {
            return Err(FieldError::forbidden(path, format!("must not be nested more than {MAX_DEPTH} levels deep")));
        }
        let mut pruned = prune::prune(object, &self.root, true);
        prune::prune_nulls(object, Some(&self.root));
        let mut unknown_metadata = Vec::new();
        objectmeta::coerce(object, &self.root, "", &mut unknown_metadata)?;
        unknown_metadata.sort();
        pruned.extend(unknown_metadata);
        default::apply(object, &self.root);
        Ok(pruned)
    }

    /// Prunes the unknown fields of `object` (not `apiVersion`, `kind`, `metadata` at its root)
    /// and returns their paths, sorted.
    pub fn prune(&self, object: &mut Value) -> Vec<String> {
        if too_deep(object).is_some() {
            return Vec::new();
        }
        prune::prune(object, &self.root, true)
    }

    /// Applies the schema's defaults to `object`.
    pub fn apply_defaults(&self, object: &mut Value) {
        if too_deep(object).is_none() {
            default::apply(object, &self.root);
        }
    }
}

/// The path where `value` is nested deeper than [`MAX_DEPTH`], if it is (found iteratively).
fn too_deep(value: &Value) -> Option<String> {
    compile::deeper_than(value, MAX_DEPTH + 1)?;
    let mut stack = vec![(value, 1usize, String::new())];
    while let Some((v, depth, path)) = stack.pop() {
        if depth > MAX_DEPTH + 1 {
            return Some(path::or_nil(&path));
        }
        match v {
            Value::Array(items) => {
                stack.extend(items.iter().enumerate().map(|(i, item)| (item, depth + 1, path::index(&path, i))));
            }
            Value::Object(map) => {
                stack.extend(map.iter().map(|(k, item)| (item, depth + 1, path::child(&path, k))));
            }
            _ => {}
        }
    }
    Some("<nil>".to_owned())
}
