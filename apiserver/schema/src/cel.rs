//! CEL validation rules (`x-kubernetes-validations`), evaluated with kube-rs's `kube-cel`
//! function library on the `cel` interpreter it re-exports, the way the API server evaluates them
//! (`apiextensions-apiserver/pkg/apiserver/schema/cel`, Kubernetes 1.34):
//!
//! - rules run on non-null values only, with `self` (and `oldSelf` on update) bound to the value
//!   as CEL sees it: declared properties only (escaped names, `null` fields absent), map keys as
//!   they are, formatted strings as timestamps, durations or bytes, `apiVersion`, `kind` and
//!   `metadata.name`/`generateName` on resources;
//! - transition rules (using `oldSelf`) run only on update, where old and new correlate, unless
//!   `optionalOldSelf` makes `oldSelf` an optional;
//! - a failure reports the rule's `message`, `messageExpression` or `failed rule: …` at the
//!   node (or its `fieldPath`), with the node's type as value and the `reason`'s error type;
//! - unchanged values do not report failures of non-transition rules on update (ratcheting;
//!   they become warnings).
//!
//! `kube-cel`'s own `Validator` walks the whole schema and reports its own messages; the
//! API server's per-node, ratcheting and escaping semantics need the walk here instead.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use chrono::{TimeDelta, TimeZone as _, Utc};
use kube::core::cel::KubeCelExt as _;
use kube::core::cel::cel::objects::{Key, Map as CelMap, OptionalValue};
use kube::core::cel::cel::{Context, ExecutionError, Program, Value as CelValue};
use serde_json::Value;

use crate::cost::{self, PER_CALL_LIMIT, RUNTIME_CEL_COST_BUDGET};
use crate::errors::{FieldError, go_quote};
use crate::escaping::escape;
use crate::formats;
use crate::node::{Node, Rule};
use crate::path::{child, index, key, or_nil};
use crate::ratchet::{self, MapList};

/// Longest evaluated `messageExpression` the API server uses (`MaxEvaluatedMessageExpressionSizeBytes`).
const MAX_MESSAGE_EXPRESSION_BYTES: usize = 5 * 1024;

/// Longest interpreter error text copied into a message.
const MAX_ERROR_TEXT: usize = 256;

impl Rule {
    /// `ruleErrorString`: the message, else the rule.
    fn error_string(&self) -> &str {
        if self.message.is_empty() { self.rule.trim() } else { self.message.trim() }
    }

    /// `ruleMessageOrDefault`.
    fn message_or_default(&self) -> String {
        if self.message.is_empty() {
            format!("failed rule: {}", self.error_string())
        } else {
            self.message.trim().to_owned()
        }
    }
}

/// Parses a CEL expression; parser failures (even panics) become the error text.
pub(crate) fn compile_expression(source: &str) -> Result<Program, String> {
    match catch_unwind(|| Program::compile(source)) {
        Ok(Ok(program)) => Ok(program),
        Ok(Err(errors)) => Err(errors.to_string()),
        Err(_) => Err("the expression could not be parsed".to_owned()),
    }
}

/// Whether a program references `oldSelf`.
pub(crate) fn uses_old_self(program: &Program) -> bool {
    program.references().has_variable("oldSelf")
}

thread_local! {
    /// The standard and Kubernetes functions; building it registers a few hundred functions, so
    /// it is built once per thread.
    static BASE: Context<'static> = Context::default().with_all();
}

/// Evaluates the rules of `root` (and the nodes below) against `obj`, `old` being the stored
/// object on update. `path` is the field path of `obj` (empty for a whole object). Returns the
/// errors and the warnings (failures ratcheted away).
pub(crate) fn validate(
    root: &Node,
    obj: &Value,
    old: Option<&Value>,
    path: &str,
    ratcheting: bool,
    is_resource_root: bool,
) -> (Vec<FieldError>, Vec<String>) {
    let mut run = Run { errors: Vec::new(), warnings: Vec::new(), remaining: RUNTIME_CEL_COST_BUDGET, stopped: false };
    let corr = Corr {
        cur: if ratcheting { old.map(|old| Correlated { new: obj, old, schema: root }) } else { None },
        parent: None,
    };
    BASE.with(|base| run.walk(base, root, obj, old, path, corr, is_resource_root || root.embedded_resource));
    (run.errors, run.warnings)
}

/// A value correlated with its old value, for ratcheting.
#[derive(Clone, Copy)]
struct Correlated<'a> {
    new: &'a Value,
    old: &'a Value,
    schema: &'a Node,
}

/// `ratchetingOptions`: the current correlation and the nearest correlated ancestor.
#[derive(Clone, Copy)]
struct Corr<'a> {
    cur: Option<Correlated<'a>>,
    parent: Option<Correlated<'a>>,
}

impl<'a> Corr<'a> {
    fn key(self, name: &str) -> Self {
        let Some(cur) = self.cur else { return self };
        if self.parent.is_none() && (name == "apiVersion" || name == "kind") {
            return Self { cur: None, parent: None };
        }
        let next = ratchet::key(Some(cur.old), cur.new, cur.schema, name)
            .and_then(|old| Some(Correlated { new: cur.new.get(name)?, old, schema: cur.schema.field(name)? }));
        Self { cur: next, parent: Some(cur) }
    }

    fn index(self, i: usize, old_items: &MapList<'a>) -> Self {
        let Some(cur) = self.cur else { return self };
        let next = cur
            .new
            .get(i)
            .and_then(|new| Some(Correlated { new, old: old_items.get(new)?, schema: cur.schema.items.as_deref()? }));
        Self { cur: next, parent: Some(cur) }
    }

    fn should_ratchet(self) -> bool {
        match (self.cur, self.parent) {
            (Some(c), _) | (None, Some(c)) => ratchet::deep_equal(c.new, c.old, Some(c.schema)),
            (None, None) => false,
        }
    }
}

/// The API server's message when the rules of an object cost more than
/// [`RUNTIME_CEL_COST_BUDGET`].
const OUT_OF_BUDGET: &str =
    "validation failed due to running out of cost budget, no further validation rules will be run";

struct Run {
    errors: Vec<FieldError>,
    warnings: Vec<String>,
    /// What is left of the object's cost budget.
    remaining: i64,
    /// The budget or a rule's limit was exceeded: no further rule runs.
    stopped: bool,
}

impl Run {
    #[allow(clippy::too_many_arguments)]
    fn walk<'a>(
        &mut self,
        base: &Context<'static>,
        node: &'a Node,
        obj: &'a Value,
        old: Option<&'a Value>,
        path: &str,
        corr: Corr<'a>,
        is_resource_root: bool,
    ) {
        if obj.is_null() || !node.has_rules || self.stopped {
            return;
        }
        if !node.rules.is_empty() {
            self.rules(base, node, obj, old, path, corr, is_resource_root);
        }
        match obj {
            Value::Array(items) => {
                let Some(items_schema) = node.items.as_deref() else { return };
                let old_items = MapList::new(node, old);
                for (i, item) in items.iter().enumerate() {
                    let item_old = old_items.get(item);
                    let item_corr = corr.index(i, &old_items);
                    let item_path = index(path, i);
                    self.walk(
                        base,
                        items_schema,
                        item,
                        item_old,
                        &item_path,
                        item_corr,
                        items_schema.embedded_resource,
                    );
                }
            }
            Value::Object(map) => {
                let correlatable = matches!(node.map_type.as_deref(), None | Some("granular" | "atomic"));
                let old_map = if correlatable { old.and_then(Value::as_object) } else { None };
                if let Some(schema) = node.additional_schema() {
                    for (k, v) in map {
                        let v_old = old_map.and_then(|o| o.get(k));
                        self.walk(base, schema, v, v_old, &key(path, k), corr.key(k), schema.embedded_resource);
                    }
                }
                for (k, v) in map {
                    if let Some(prop) = node.properties.get(k) {
                        let v_old = old_map.and_then(|o| o.get(k));
                        self.walk(base, prop, v, v_old, &child(path, k), corr.key(k), prop.embedded_resource);
                    }
                }
            }
            _ => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn rules(
        &mut self,
        base: &Context<'static>,
        node: &Node,
        obj: &Value,
        old: Option<&Value>,
        path: &str,
        corr: Corr<'_>,
        is_resource_root: bool,
    ) {
        let ty = Value::from(node.ty.clone());
        if self.remaining <= 0 {
            self.errors.push(FieldError::invalid(or_nil(path), ty, OUT_OF_BUDGET));
            self.stopped = true;
            return;
        }
        // `oldSelf` is bound only when a rule of the node uses it, as the API server's activation;
        // rules with `optionalOldSelf` get an optional instead. (The values converted here hold
        // no functions, so binding them cannot fail.)
        let uses_old_self = node.rules.iter().any(|r| r.uses_old_self);
        let old_value = old.filter(|o| uses_old_self && !o.is_null()).map(|o| to_cel(o, Some(node), is_resource_root));
        let has_old = old_value.is_some();
        let mut scope = base.new_inner_scope();
        scope.add_variable_from_value("self", to_cel(obj, Some(node), is_resource_root));
        let optional_old = node.rules.iter().any(|r| r.optional_old_self).then(|| {
            CelValue::Opaque(Arc::new(
                old_value.as_ref().map_or_else(OptionalValue::none, |v| OptionalValue::of(v.clone())),
            ))
        });
        if let Some(old_value) = old_value {
            scope.add_variable_from_value("oldSelf", old_value);
        }
        let mut optional_scope = scope.new_inner_scope();
        if let Some(optional_old) = optional_old {
            optional_scope.add_variable_from_value("oldSelf", optional_old);
        }
        for rule in &node.rules {
            let Some(program) = &rule.program else { continue };
            if rule.uses_old_self && !has_old && !rule.optional_old_self {
                continue;
            }
            let rule_scope = if rule.optional_old_self { &optional_scope } else { &scope };
            // cel-go counts the cost while it evaluates and cancels past the per-call limit; the
            // `cel` interpreter counts nothing, so the cost is estimated from the actual values
            // first (an upper bound of cel-go's count).
            if let Some(decl) = &node.decl {
                let cost = cost::actual_cost(program.expression(), decl, obj, old, rule.optional_old_self);
                if let Err(detail) = self.charge(cost) {
                    let detail = detail.unwrap_or_else(|| {
                        format!(
                            "'operation cancelled: actual cost limit exceeded': no further validation rules will be run due to call cost exceeds limit for rule: {}",
                            rule.error_string()
                        )
                    });
                    self.errors.push(FieldError::invalid(or_nil(path), ty.clone(), detail));
                    return;
                }
            }
            let result = catch_unwind(AssertUnwindSafe(|| program.execute(rule_scope)));
            let detail = match result {
                Ok(Ok(CelValue::Bool(true))) => continue,
                Ok(Ok(CelValue::Bool(false))) => None,
                Ok(Ok(other)) => Some(format!(
                    "cel expression must evaluate to a bool, got {} evaluating rule: {}",
                    other.type_of(),
                    rule.error_string()
                )),
                Ok(Err(error)) => Some(evaluation_error(&error, rule)),
                Err(_) => Some(format!("internal error evaluating rule: {}", rule.error_string())),
            };
            if let Some(detail) = detail {
                self.errors.push(FieldError::invalid(or_nil(path), ty.clone(), detail));
                continue;
            }
            let field = match &rule.normalized_field_path {
                Some(p) if !p.is_empty() => or_nil(&child(path, p)),
                _ => or_nil(path),
            };
            let mut message = None;
            if let Some(program) = &rule.message_program {
                let cost = node
                    .decl
                    .as_ref()
                    .map_or(0, |decl| cost::actual_cost(program.expression(), decl, obj, old, rule.optional_old_self));
                if let Err(detail) = self.charge(cost) {
                    let detail = detail.map_or_else(
                        || {
                            format!(
                                "no further validation rules will be run due to call cost exceeds limit for messageExpression: {}",
                                go_quote(&rule.message_expression)
                            )
                        },
                        |_| "messageExpression evaluation failed due to running out of cost budget, no further validation rules will be run".to_owned(),
                    );
                    let error = FieldError::invalid(field, ty.clone(), detail);
                    if !rule.uses_old_self && corr.should_ratchet() {
                        self.warnings.push(error.message());
                    } else {
                        self.errors.push(error);
                    }
                    return;
                }
                message = message_expression(program, &scope);
            }
            let message = message.unwrap_or_else(|| rule.message_or_default());
            let error = match rule.reason.as_deref() {
                Some("FieldValueForbidden") => FieldError::forbidden(field, message),
                Some("FieldValueRequired") => FieldError::required(field, message),
                Some("FieldValueDuplicate") => FieldError::duplicate(field, ty.clone()),
                _ => FieldError::invalid(field, ty.clone(), message),
            };
            if !rule.uses_old_self && corr.should_ratchet() {
                self.warnings.push(error.message());
            } else {
                self.errors.push(error);
            }
        }
    }
}

impl Run {
    /// Charges the cost of one evaluation to the budget. Past [`PER_CALL_LIMIT`] cel-go cancels
    /// the evaluation, having counted just over the limit: `Err(None)` unless that is over the
    /// budget too. Over the budget: `Err(Some(message))`. Either way no further rule runs.
    fn charge(&mut self, cost: u64) -> Result<(), Option<String>> {
        let counted = cost.min(PER_CALL_LIMIT + 1);
        let over_budget = i64::try_from(counted).map_or(true, |c| c > self.remaining);
        if over_budget || cost > PER_CALL_LIMIT {
            self.stopped = true;
            self.remaining = -1;
            return Err(over_budget.then(|| OUT_OF_BUDGET.to_owned()));
        }
        self.remaining -= i64::try_from(counted).unwrap_or(i64::MAX);
        Ok(())
    }
}

/// The message of a failing rule from its `messageExpression`, unless that fails or gives an
/// empty, multi-line or too long string (then the API server falls back to `message`).
fn message_expression(program: &Program, scope: &Context<'_>) -> Option<String> {
    match catch_unwind(AssertUnwindSafe(|| program.execute(scope))) {
        Ok(Ok(CelValue::String(s))) => {
            let trimmed = s.trim();
            (!trimmed.is_empty() && trimmed.len() <= MAX_MESSAGE_EXPRESSION_BYTES && !trimmed.contains('\n'))
                .then(|| trimmed.to_owned())
        }
        _ => None,
    }
}

/// The detail of a rule that failed to evaluate, worded like cel-go's errors are.
fn evaluation_error(error: &ExecutionError, rule: &Rule) -> String {
    match error {
        ExecutionError::NoSuchOverload
        | ExecutionError::UnsupportedBinaryOperator(..)
        | ExecutionError::UnsupportedUnaryOperator(..)
        | ExecutionError::ValuesNotComparable(..)
        | ExecutionError::UnexpectedType { .. } => format!(
            "'no such overload': call arguments did not match a supported operator, function or macro signature for rule: {}",
            rule.error_string()
        ),
        ExecutionError::NoSuchKey(name) => format!("no such key: {name} evaluating rule: {}", rule.error_string()),
        other => {
            let mut text = other.to_string();
            if let Some(first) = text.get(..1) {
                text = first.to_lowercase() + &text[1..];
            }
            if text.len() > MAX_ERROR_TEXT {
                let mut end = MAX_ERROR_TEXT;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text.truncate(end);
                text.push('…');
            }
            format!("{text} evaluating rule: {}", rule.error_string())
        }
    }
}

fn cel_map(entries: HashMap<Key, CelValue>) -> CelValue {
    CelValue::Map(CelMap { map: Arc::new(entries) })
}

fn cel_string(s: &str) -> CelValue {
    CelValue::String(Arc::new(s.to_owned()))
}

/// A JSON value as CEL sees it under a schema (`UnstructuredToVal`).
pub(crate) fn to_cel(value: &Value, node: Option<&Node>, is_resource: bool) -> CelValue {
    let Some(node) = node else { return plain(value) };
    if value.is_null() {
        return CelValue::Null;
    }
    if node.int_or_string {
        return plain(value);
    }
    match (node.ty.as_str(), value) {
        // A resource: its declared fields, plus `apiVersion`, `kind` and `metadata.name` and
        // `generateName` (`WithTypeAndObjectMeta`).
        (_, Value::Object(map)) if is_resource || node.embedded_resource => {
            let mut entries = object_fields(map, node);
            for name in ["apiVersion", "kind"] {
                if let Some(Value::String(s)) = map.get(name) {
                    entries.insert(Key::String(Arc::new(name.to_owned())), cel_string(s));
                }
            }
            let mut meta = HashMap::new();
            if let Some(Value::Object(metadata)) = map.get("metadata") {
                for name in ["name", "generateName"] {
                    if let Some(Value::String(s)) = metadata.get(name) {
                        meta.insert(Key::String(Arc::new(name.to_owned())), cel_string(s));
                    }
                }
                entries.insert(Key::String(Arc::new("metadata".to_owned())), cel_map(meta));
            }
            cel_map(entries)
        }
        ("object", Value::Object(map)) => {
            if !node.properties.is_empty() {
                cel_map(object_fields(map, node))
            } else if let Some(schema) = node.additional_schema() {
                cel_map(
                    map.iter()
                        .map(|(k, v)| {
                            (Key::String(Arc::new(k.clone())), to_cel(v, Some(schema), schema.embedded_resource))
                        })
                        .collect(),
                )
            } else {
                // Neither properties nor a value schema: CEL sees no field.
                cel_map(HashMap::new())
            }
        }
        ("array", Value::Array(items)) => {
            let items_schema = node.items.as_deref();
            CelValue::List(Arc::new(
                items
                    .iter()
                    .map(|i| to_cel(i, items_schema, items_schema.is_some_and(|s| s.embedded_resource)))
                    .collect(),
            ))
        }
        ("string", Value::String(s)) => formatted_string(s, &node.format),
        ("number", Value::Number(n)) => CelValue::Float(n.as_f64().unwrap_or(0.0)),
        ("integer", Value::Number(n)) => match n.as_i64() {
            Some(i) => CelValue::Int(i),
            None => match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => CelValue::Int(f as i64),
                Some(f) => CelValue::Float(f),
                None => CelValue::Null,
            },
        },
        _ => plain(value),
    }
}

/// The declared, escapable, non-null properties of an object.
fn object_fields(map: &serde_json::Map<String, Value>, node: &Node) -> HashMap<Key, CelValue> {
    let mut entries = HashMap::new();
    for (k, v) in map {
        if v.is_null() {
            continue;
        }
        let (Some(prop), Some(name)) = (node.properties.get(k), escape(k)) else { continue };
        entries.insert(Key::String(Arc::new(name)), to_cel(v, Some(prop), prop.embedded_resource));
    }
    entries
}

/// A string of a schema `format` CEL gives a type to; unparseable ones stay strings.
fn formatted_string(s: &str, format: &str) -> CelValue {
    match format {
        "duration" => match formats::parse_duration(s).and_then(|n| i64::try_from(n).ok()) {
            Some(nanos) => CelValue::Duration(TimeDelta::nanoseconds(nanos)),
            None => cel_string(s),
        },
        "date" => match formats::parse_date(s).and_then(|d| d.and_hms_opt(0, 0, 0)) {
            Some(t) => CelValue::Timestamp(Utc.from_utc_datetime(&t).fixed_offset()),
            None => cel_string(s),
        },
        "date-time" => match formats::parse_date_time(s) {
            Some(t) => CelValue::Timestamp(t),
            None => cel_string(s),
        },
        "byte" => {
            use base64::Engine as _;
            let engines = [&base64::engine::general_purpose::URL_SAFE, &base64::engine::general_purpose::STANDARD];
            match engines.iter().find_map(|e| e.decode(s).ok()) {
                Some(bytes) => CelValue::Bytes(Arc::new(bytes)),
                None => cel_string(s),
            }
        }
        _ => cel_string(s),
    }
}

/// A JSON value without a schema (preserved unknown fields).
fn plain(value: &Value) -> CelValue {
    match value {
        Value::Null => CelValue::Null,
        Value::Bool(b) => CelValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => CelValue::Int(i),
            None => CelValue::Float(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => cel_string(s),
        Value::Array(items) => CelValue::List(Arc::new(items.iter().map(plain).collect())),
        Value::Object(map) => cel_map(map.iter().map(|(k, v)| (Key::String(Arc::new(k.clone())), plain(v))).collect()),
    }
}

/// `ValidFieldPath`: a rule's `fieldPath` (`.spec.x`, `.labels['a.b']`) checked against the
/// schema and normalized to a field path (`spec.x`, `labels[a.b]`).
pub(crate) fn valid_field_path(json_path: &str, node: &Node) -> Option<String> {
    let tokens = field_path_tokens(json_path);
    let mut tokens = tokens.into_iter();
    let mut path = String::new();
    let mut schema = node;
    while let Some(token) = tokens.next() {
        let name = match token.as_str() {
            "[" => {
                let quoted = tokens.next()?;
                if quoted.len() < 2 || !quoted.starts_with('\'') || !quoted.ends_with('\'') {
                    return None;
                }
                let name = unescape_single_quote(&quoted[1..quoted.len() - 1])?;
                if tokens.next()? != "]" {
                    return None;
                }
                name
            }
            "." => tokens.next()?,
            _ => return None,
        };
        if !schema.properties.is_empty() {
            schema = schema.properties.get(&name)?;
            path = child(&path, &name);
        } else if schema.additional_properties.is_some() {
            schema = schema.additional_schema()?;
            path = key(&path, &name);
        } else {
            return None;
        }
    }
    Some(path)
}

/// Splits a JSON path into `.`, `[`, `]`, single-quoted strings and names.
fn field_path_tokens(path: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if rest.starts_with('\'') {
            let bytes = rest.as_bytes();
            let end = (1..bytes.len()).find(|&i| bytes[i] == b'\'' && bytes[i - 1] != b'\\');
            let len = end.map_or(rest.len(), |e| e + 1);
            tokens.push(rest[..len].to_owned());
            rest = &rest[len..];
            continue;
        }
        let len = match rest.find(['.', '[', ']']) {
            Some(0) => 1,
            Some(i) => i,
            None => rest.len(),
        };
        tokens.push(rest[..len].to_owned());
        rest = &rest[len..];
    }
    tokens
}

fn unescape_single_quote(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next() {
            Some('a') => '\u{7}',
            Some('b') => '\u{8}',
            Some('f') => '\u{c}',
            Some('n') => '\n',
            Some('r') => '\r',
            Some('t') => '\t',
            Some('v') => '\u{b}',
            Some('\'') => '\'',
            Some('\\') => '\\',
            Some(other) => {
                // Go's `\\.` matcher needs a character after the backslash; others are errors.
                let _ = other;
                return None;
            }
            None => '\\',
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_the_api_server() {
        assert_eq!(escape("replicas").as_deref(), Some("replicas"));
        assert_eq!(escape("my_field").as_deref(), Some("my_field"));
        assert_eq!(escape("a__b").as_deref(), Some("a__underscores__b"));
        assert_eq!(escape("x-y").as_deref(), Some("x__dash__y"));
        assert_eq!(escape("app.kubernetes.io/name").as_deref(), Some("app__dot__kubernetes__dot__io__slash__name"));
        assert_eq!(escape("namespace").as_deref(), Some("__namespace__"));
        assert_eq!(escape("in").as_deref(), Some("__in__"));
        assert_eq!(escape("1abc"), None);
        assert_eq!(escape("a b"), None);
        assert_eq!(escape(""), None);
    }

    #[test]
    fn field_paths_split_into_tokens() {
        assert_eq!(field_path_tokens(".a['b.c']"), [".", "a", "[", "'b.c'", "]"]);
    }

    #[test]
    fn compile_errors_are_errors() {
        assert!(compile_expression("self.a >").unwrap_err().starts_with("ERROR: <input>:1:"));
        assert!(uses_old_self(&compile_expression("self == oldSelf").unwrap()));
        assert!(!uses_old_self(&compile_expression("self.all(x, x > 0)").unwrap()));
    }
}
