//! OpenAPI value validation as the API server runs it for custom resources: kube-openapi's
//! `validate.SchemaValidator` (as vendored by Kubernetes 1.34) and the conversion of its results
//! to field errors (`apiextensions-apiserver/pkg/apiserver/validation.kubeOpenAPIResultToFieldErrors`).
//!
//! The emulation keeps kube-openapi's structure where it shows: the order validators run in,
//! that errors with equal messages are reported once, and the "match count" by which the errors
//! of the best failing `anyOf`/`oneOf` branch are chosen.

use std::collections::HashSet;

use serde_json::{Map, Number, Value};

use crate::errors::{FieldError, go_float_v, go_json, go_quote};
use crate::formats;
use crate::node::{Additional, Node};
use crate::path::{child, or_nil};
use crate::ratchet::{self, MapList};

/// Validates `data` against `node`. With `old` (an update), errors of unchanged correlatable
/// values are dropped (ratcheting). `prefix` is the field path the API server puts before the
/// kube-openapi paths: none for a whole object, `status` for the status subresource, the
/// `….default` path of a schema default.
pub(crate) fn validate(node: &Node, data: &Value, old: Option<&Value>, prefix: Option<&str>) -> Vec<FieldError> {
    let validator = Validator { prefix: prefix.unwrap_or(""), ratcheting: old.is_some() };
    validator.value(node, data, "", old).errors.into_iter().map(|found| found.error).collect()
}

/// A kube-openapi error: its message (by which duplicates are dropped) and the field error it
/// becomes.
struct Found {
    message: String,
    error: FieldError,
}

/// A kube-openapi `Result`.
#[derive(Default)]
struct Res {
    errors: Vec<Found>,
    seen: HashSet<String>,
    /// `MatchCount`: how many checks passed, to pick the best failing branch.
    count: i64,
}

impl Res {
    fn error(found: Found) -> Self {
        let mut res = Self::default();
        res.add(found);
        res
    }

    fn add(&mut self, found: Found) {
        if self.seen.insert(found.message.clone()) {
            self.errors.push(found);
        }
    }

    fn merge(&mut self, other: Res) {
        for found in other.errors {
            self.add(found);
        }
        self.count += other.count;
    }

    fn inc(&mut self) {
        self.count += 1;
    }

    fn valid(&self) -> bool {
        self.errors.is_empty()
    }
}

/// A JSON number as Go decodes it into an unstructured object.
#[derive(Clone, Copy)]
enum Num {
    Int(i64),
    Float(f64),
}

fn num(n: &Number) -> Num {
    match n.as_i64() {
        Some(i) => Num::Int(i),
        None => Num::Float(n.as_f64().unwrap_or(0.0)),
    }
}

/// Go's `int64(f)` on amd64: truncation, and the minimum for what does not fit.
pub(crate) fn go_f64_to_i64(f: f64) -> i64 {
    if f.is_nan() || !(-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f) {
        i64::MIN
    } else {
        f as i64
    }
}

/// `swag.IsFloat64AJSONInteger`.
pub(crate) fn is_json_integer(f: f64) -> bool {
    const MAX: f64 = 9_007_199_254_740_991.0;
    if !f.is_finite() || !(-MAX..=MAX).contains(&f) {
        return false;
    }
    if f.fract() == 0.0 {
        return true;
    }
    // A relative tolerance, which only ever applies to positive values.
    let g = f.trunc();
    f > 0.0 && g != 0.0 && (f - g).abs() / (f.abs() + g.abs()) < 1e-9
}

/// The JSON type name and Go format kube-openapi infers from a value.
fn type_info(data: &Value) -> (&'static str, &'static str) {
    match data {
        Value::Null => ("null", ""),
        Value::Bool(_) => ("boolean", ""),
        Value::String(_) => ("string", ""),
        Value::Number(n) => match num(n) {
            Num::Int(_) => ("integer", "int64"),
            Num::Float(_) => ("number", "float64"),
        },
        Value::Array(_) => ("array", ""),
        Value::Object(_) => ("object", ""),
    }
}

/// `basicCommonValidator`: Go's `ConvertibleTo` + `DeepEqual` comparison with an enum value.
fn enum_matches(data: &Value, allowed: &Value) -> bool {
    match (data, allowed) {
        (_, Value::Null) | (Value::Null, _) => false,
        (Value::Number(d), Value::Number(a)) => match (num(d), num(a)) {
            (Num::Int(d), Num::Int(a)) => d == a,
            (Num::Float(d), Num::Int(a)) => go_f64_to_i64(d) == a,
            (Num::Int(d), Num::Float(a)) => d as f64 == a,
            (Num::Float(d), Num::Float(a)) => d == a,
        },
        // Go converts an integer to a string as a rune.
        (Value::Number(d), Value::String(a)) => match num(d) {
            Num::Int(i) => {
                let c = u32::try_from(i).ok().and_then(char::from_u32).unwrap_or('\u{FFFD}');
                a.chars().eq(std::iter::once(c))
            }
            Num::Float(_) => false,
        },
        _ => data == allowed,
    }
}

struct Validator<'a> {
    prefix: &'a str,
    ratcheting: bool,
}

impl Validator<'_> {
    /// The field of a kube-openapi validation error named `name`.
    fn field(&self, name: &str) -> String {
        if name.is_empty() || name == "." {
            return or_nil(self.prefix);
        }
        or_nil(&child(self.prefix, name.strip_prefix('.').unwrap_or(name)))
    }

    /// An error kube-openapi reports without a path (composite errors, plain `error`s).
    fn plain(&self, message: String) -> Found {
        let error = FieldError::invalid(or_nil(self.prefix), Value::from(""), message.clone());
        Found { message, error }
    }

    fn invalid_type(&self, path: &str, type_name: &str, value: &str) -> Found {
        let message = format!("{path} in body must be of type {type_name}: {}", go_quote(value));
        let error = FieldError::type_invalid(self.field(path), Value::from(value), message.clone());
        Found { message, error }
    }

    fn invalid(&self, path: &str, value: Value, message: String) -> Found {
        let error = FieldError::invalid(self.field(path), value, message.clone());
        Found { message, error }
    }

    /// `SchemaValidator.Validate`, with ratcheting when the value is correlated with an old one.
    fn value(&self, s: &Node, data: &Value, path: &str, old: Option<&Value>) -> Res {
        let mut res = self.inner(s, data, path, old);
        if self.ratcheting
            && !res.valid()
            && let Some(old) = old
            && ratchet::deep_equal(data, old, Some(s))
        {
            // kube-openapi turns them into warnings, which the API server drops.
            res.errors.clear();
            res.seen.clear();
        }
        res
    }

    fn inner(&self, s: &Node, data: &Value, path: &str, old: Option<&Value>) -> Res {
        let mut res = Res::default();
        if data.is_null() {
            res.merge(self.type_check(s, data, path));
            res.merge(self.enum_check(s, data, path));
            return res;
        }
        if !s.types().is_empty() || !s.checked_format.is_empty() {
            res.merge(self.type_check(s, data, path));
            res.inc();
        }
        res.merge(self.schema_props(s, data, path, old));
        res.inc();
        match data {
            Value::String(text) => {
                res.merge(self.string_check(s, text, path));
                res.inc();
                let normalized = formats::normalize(&s.checked_format);
                if !s.checked_format.is_empty() && formats::known(&normalized) {
                    if !formats::validates(&normalized, text) {
                        res.merge(Res::error(self.invalid_type(path, &s.checked_format, text)));
                    }
                    res.inc();
                }
            }
            Value::Number(n) => {
                res.merge(self.number_check(s, data, num(n), path));
                res.inc();
            }
            Value::Array(items) => {
                res.merge(self.slice_check(s, items, path, old));
                res.inc();
            }
            _ => {}
        }
        res.merge(self.enum_check(s, data, path));
        res.inc();
        if let Value::Object(map) = data {
            res.merge(self.object_check(s, data, map, path, old));
            res.inc();
        }
        res.inc();
        res
    }

    /// `typeValidator`.
    fn type_check(&self, s: &Node, data: &Value, path: &str) -> Res {
        let types = s.types();
        let mut ok = Res::default();
        ok.inc();
        if data.is_null() {
            if !types.is_empty() && !s.nullable {
                return Res::error(self.invalid_type(path, &types.join(","), "null"));
            }
            return ok;
        }
        let (sch_type, format) = type_info(data);
        let format_of_schema = s.checked_format.as_str();
        let is_float_int = match data {
            Value::Number(n) => matches!(num(n), Num::Float(f) if is_json_integer(f)) && types.contains(&"integer"),
            _ => false,
        };
        let is_int_float = sch_type == "integer" && types.contains(&"number");
        let string_or_slice = data.is_string() || data.is_array();
        let type_matches = types.contains(&sch_type) || is_float_int || is_int_float;
        if !string_or_slice && !format_of_schema.is_empty() && !type_matches && format != format_of_schema {
            return Res::error(self.invalid_type(path, format_of_schema, format));
        }
        let numeric = types.contains(&"number") || types.contains(&"integer");
        if string_or_slice && !numeric && !format_of_schema.is_empty() {
            return ok;
        }
        if !type_matches {
            return Res::error(self.invalid_type(path, &types.join(","), sch_type));
        }
        ok
    }

    /// `schemaPropsValidator`: `anyOf`, `oneOf`, `allOf`, `not`.
    fn schema_props(&self, s: &Node, data: &Value, path: &str, old: Option<&Value>) -> Res {
        let mut main = Res::default();
        if !s.any_of.is_empty() {
            let mut best: Option<Res> = None;
            let mut success: Option<Res> = None;
            for branch in &s.any_of {
                let result = self.inner(branch, data, path, old);
                if result.valid() {
                    best = None;
                    success = Some(result);
                    break;
                }
                if best.as_ref().is_none_or(|b| result.count > b.count) {
                    best = Some(result);
                }
            }
            if success.is_none() {
                main.add(self.plain(format!("{} must validate at least one schema (anyOf)", go_quote(path))));
            }
            if let Some(best) = best {
                main.merge(best);
            } else if let Some(success) = success {
                main.merge(success);
            }
        }
        if !s.one_of.is_empty() {
            let mut best: Option<Res> = None;
            let mut success: Option<Res> = None;
            let mut validated = 0;
            for branch in &s.one_of {
                let result = self.inner(branch, data, path, old);
                if result.valid() {
                    validated += 1;
                    best = None;
                    if success.is_none() {
                        success = Some(result);
                    }
                    continue;
                }
                if validated == 0 && best.as_ref().is_none_or(|b| result.count > b.count) {
                    best = Some(result);
                }
            }
            if validated != 1 {
                let detail = if validated == 0 {
                    "Found none valid".to_owned()
                } else {
                    format!("Found {validated} valid alternatives")
                };
                main.add(
                    self.plain(format!("{} must validate one and only one schema (oneOf). {detail}", go_quote(path))),
                );
                if let Some(best) = best {
                    main.merge(best);
                }
            } else if let Some(success) = success {
                main.merge(success);
            }
        }
        if !s.all_of.is_empty() {
            let mut validated = 0;
            for branch in &s.all_of {
                let result = self.inner(branch, data, path, old);
                if result.valid() {
                    validated += 1;
                }
                main.merge(result);
            }
            if validated != s.all_of.len() {
                let detail = if validated == 0 { ". None validated" } else { "" };
                main.add(self.plain(format!("{} must validate all the schemas (allOf){detail}", go_quote(path))));
            }
        }
        if let Some(not) = &s.not
            && self.inner(not, data, path, old).valid()
        {
            main.add(self.plain(format!("{} must not validate the schema (not)", go_quote(path))));
        }
        main.inc();
        main
    }

    /// `stringValidator`: the first failing of `maxLength`, `minLength`, `pattern`.
    fn string_check(&self, s: &Node, text: &str, path: &str) -> Res {
        let length = || text.chars().count() as i64;
        if let Some(max) = s.max_length
            && length() > max
        {
            let message = format!("{path} in body should be at most {max} chars long");
            return Res::error(Found { error: FieldError::too_long(self.field(path), max), message });
        }
        if let Some(min) = s.min_length
            && length() < min
        {
            let message = format!("{path} in body should be at least {min} chars long");
            return Res::error(self.invalid(path, Value::from(text), message));
        }
        if let Some(pattern) = &s.pattern
            && !pattern.regex.is_match(text)
        {
            let message = format!("{path} in body should match '{}'", pattern.source);
            return Res::error(self.invalid(path, Value::from(text), message));
        }
        Res::default()
    }

    /// `numberValidator` (1.34: no range check of the number's format).
    fn number_check(&self, s: &Node, data: &Value, n: Num, path: &str) -> Res {
        let mut res = Res::default();
        let mut multiple = Res::default();
        let mut minimum = Res::default();
        let mut maximum = Res::default();
        if let Some(factor) = s.multiple_of {
            match n {
                Num::Int(i) => {
                    let f = go_f64_to_i64(factor);
                    if f <= 0 {
                        let message = format!("factor MultipleOf declared for {path} must be positive: {f}");
                        multiple.add(self.invalid(path, Value::from(f), message));
                    } else if i.wrapping_div(f).wrapping_mul(f) != i {
                        let message = format!("{path} in body should be a multiple of {f}");
                        multiple.add(self.invalid(path, data.clone(), message));
                    }
                }
                Num::Float(x) => {
                    if factor <= 0.0 {
                        let message =
                            format!("factor MultipleOf declared for {path} must be positive: {}", go_float_v(factor));
                        multiple.add(self.invalid(path, float_value(factor), message));
                    } else {
                        let mult = if factor < 1.0 { 1.0 / factor * x } else { x / factor };
                        if !is_json_integer(mult) {
                            let message = format!("{path} in body should be a multiple of {}", go_float_v(factor));
                            multiple.add(self.invalid(path, data.clone(), message));
                        }
                    }
                }
            }
        }
        if let Some(max) = s.maximum {
            let exclusive = s.exclusive_maximum;
            let words = if exclusive { "less than" } else { "less than or equal to" };
            let (fails, bound) = match n {
                Num::Int(i) => {
                    let m = go_f64_to_i64(max);
                    ((!exclusive && i > m) || (exclusive && i >= m), m.to_string())
                }
                Num::Float(x) => ((!exclusive && x > max) || (exclusive && x >= max), go_float_v(max)),
            };
            if fails {
                maximum.add(self.invalid(path, data.clone(), format!("{path} in body should be {words} {bound}")));
            }
        }
        if let Some(min) = s.minimum {
            let exclusive = s.exclusive_minimum;
            let words = if exclusive { "greater than" } else { "greater than or equal to" };
            let (fails, bound) = match n {
                Num::Int(i) => {
                    let m = go_f64_to_i64(min);
                    ((!exclusive && i < m) || (exclusive && i <= m), m.to_string())
                }
                Num::Float(x) => ((!exclusive && x < min) || (exclusive && x <= min), go_float_v(min)),
            };
            if fails {
                minimum.add(self.invalid(path, data.clone(), format!("{path} in body should be {words} {bound}")));
            }
        }
        res.merge(multiple);
        res.merge(minimum);
        res.merge(maximum);
        res.inc();
        res
    }

    /// `schemaSliceValidator`.
    fn slice_check(&self, s: &Node, items: &[Value], path: &str, old: Option<&Value>) -> Res {
        let mut res = Res::default();
        if let Some(items_schema) = s.items.as_deref() {
            let old_items = if self.ratcheting { MapList::new(s, old) } else { MapList::default() };
            for (i, item) in items.iter().enumerate() {
                res.merge(self.value(items_schema, item, &format!("{path}[{i}]"), old_items.get(item)));
            }
        }
        let size = items.len() as i64;
        if let Some(min) = s.min_items
            && size < min
        {
            res.add(self.invalid(path, Value::from(size), format!("{path} in body should have at least {min} items")));
        }
        if let Some(max) = s.max_items
            && size > max
        {
            let message = format!("{path} in body should have at most {max} items");
            res.add(Found { error: FieldError::too_many(self.field(path), size, max), message });
        }
        res.inc();
        res
    }

    /// `basicCommonValidator`: `enum`.
    fn enum_check(&self, s: &Node, data: &Value, path: &str) -> Res {
        if s.enumeration.is_empty() || s.enumeration.iter().any(|allowed| enum_matches(data, allowed)) {
            return Res::default();
        }
        let supported: Vec<String> = s
            .enumeration
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => go_json(other),
            })
            .collect();
        let message = format!("{path} in body should be one of [{}]", supported.join(" "));
        let error = FieldError::not_supported(self.field(path), data.clone(), &supported);
        Res::error(Found { message, error })
    }

    /// `objectValidator`.
    fn object_check(&self, s: &Node, data: &Value, map: &Map<String, Value>, path: &str, old: Option<&Value>) -> Res {
        let mut res = Res::default();
        let size = map.len() as i64;
        if let Some(min) = s.min_properties
            && size < min
        {
            res.add(self.invalid(
                path,
                Value::from(size),
                format!("{path} in body should have at least {min} properties"),
            ));
        }
        if let Some(max) = s.max_properties
            && size > max
        {
            let message = format!("{path} in body should have at most {max} properties");
            res.add(Found { error: FieldError::too_many(self.field(path), size, max), message });
        }
        match &s.additional_properties {
            Some(Additional::Allows(false)) => {
                for k in map.keys() {
                    if !s.properties.contains_key(k) {
                        let message = format!("{path}.{k} in body is a forbidden property");
                        res.add(self.invalid(path, Value::from(k.clone()), message));
                    }
                }
            }
            Some(Additional::Schema(schema)) => {
                for (k, v) in map {
                    if !s.properties.contains_key(k) {
                        let child_old = self.child_old(old, data, s, path, k);
                        res.merge(self.value(schema, v, &format!("{path}.{k}"), child_old));
                    }
                }
            }
            _ => {}
        }
        for (name, prop) in &s.properties {
            if let Some(v) = map.get(name) {
                let child_path = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
                let child_old = self.child_old(old, data, s, path, name);
                res.merge(self.value(prop, v, &child_path, child_old));
            }
        }
        for k in &s.required {
            if !map.contains_key(k) {
                let name = format!("{path}.{k}");
                let message = format!("{name} in body is required");
                res.add(Found { error: FieldError::required(self.field(&name), ""), message });
            }
        }
        res
    }

    /// The old value a field is validated against for ratcheting, if correlatable (never the
    /// `apiVersion` and `kind` of the root, which conversion may have changed).
    fn child_old<'o>(
        &self,
        old: Option<&'o Value>,
        new: &Value,
        s: &Node,
        path: &str,
        name: &str,
    ) -> Option<&'o Value> {
        if !self.ratcheting || (path.is_empty() && (name == "apiVersion" || name == "kind")) {
            return None;
        }
        ratchet::key(old, new, s, name)
    }
}

fn float_value(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}
