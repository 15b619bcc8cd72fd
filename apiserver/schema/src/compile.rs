//! Compilation of an `openAPIV3Schema` into a [`Node`] tree, rejecting what the API server
//! rejects in a CustomResourceDefinition (non-structural schemas, unsupported keywords, invalid
//! list types, patterns, CEL rules and defaults), with its messages and schema paths.

use std::collections::HashSet;

use regex::{Regex, RegexBuilder};
use serde_json::{Map, Value};

use crate::cel;
use crate::decl;
use crate::errors::FieldError;
use crate::formats;
use crate::node::{Additional, Node, Pattern, Rule};
use crate::path::{child, index, key};
use crate::{MAX_DEPTH, prune, validate};

/// Compiled size limit of one `pattern`, against schemas that would take memory without bound.
const REGEX_SIZE_LIMIT: usize = 2 << 20;

/// The types a CRD schema may name.
const TYPES: [&str; 6] = ["array", "boolean", "integer", "number", "object", "string"];

/// The `reason`s a CEL rule may name.
const REASONS: [&str; 4] = ["FieldValueDuplicate", "FieldValueForbidden", "FieldValueInvalid", "FieldValueRequired"];

/// Where a schema node sits, for the level-dependent checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    Root,
    Item,
    Field,
}

/// What the checks of a node depend on above it.
#[derive(Clone, Debug)]
struct Ctx {
    level: Level,
    /// Inside `allOf`/`anyOf`/`oneOf`/`not`.
    nested: bool,
    /// Inside the schema of `metadata`, `apiVersion` or `kind` of a resource.
    inside_meta: bool,
    /// Why `default` is forbidden here, if it is.
    defaults_forbidden: Option<String>,
    /// The first ancestor where old and new values stop being correlatable (an array that is not
    /// a map list), where `oldSelf` may not be used below.
    uncorrelatable: Option<String>,
    depth: usize,
    /// This schema is an entry of the int-or-string `anyOf` pattern, whose `type` is allowed.
    int_or_string_branch: bool,
    /// The entries of this schema's `anyOf` may be the int-or-string pattern (first `allOf` entry
    /// of a structural node).
    int_or_string_any_of: bool,
}

/// Keywords read from a node that the checks need but the node does not keep.
struct Keywords {
    unique_items: bool,
    preserve: Option<bool>,
    description: String,
    title: String,
}

/// Collects the errors of a compilation.
#[derive(Default)]
struct Compiler {
    errors: Vec<FieldError>,
}

/// Compiles `schema`, rooted at the schema path `root` (e.g.
/// `spec.versions[0].schema.openAPIV3Schema`).
pub(crate) fn compile(schema: &Value, root: &str) -> Result<Node, Vec<FieldError>> {
    if let Some(too_deep) = deeper_than(schema, MAX_DEPTH * 3) {
        return Err(vec![FieldError::forbidden(
            root,
            format!("must not be nested more than {MAX_DEPTH} schemas deep (found {too_deep} levels of JSON)"),
        )]);
    }
    let mut compiler = Compiler::default();
    if schema.get("nullable").and_then(Value::as_bool) == Some(true) {
        compiler.errors.push(FieldError::forbidden(child(root, "nullable"), "nullable cannot be true at the root"));
    }
    let ctx = Ctx {
        level: Level::Root,
        nested: false,
        inside_meta: false,
        defaults_forbidden: None,
        uncorrelatable: None,
        depth: 0,
        int_or_string_branch: false,
        int_or_string_any_of: false,
    };
    let mut node = compiler.node(schema, root, &ctx);
    if compiler.errors.is_empty() {
        // Defaults are checked once the schema is known to be structural, as the API server does.
        let mut default_errors = Vec::new();
        check_defaults(&node, root, false, &mut default_errors);
        compiler.errors.extend(default_errors);
    }
    if compiler.errors.is_empty() {
        prune_defaults(&mut node);
        Ok(node)
    } else {
        let mut seen = HashSet::new();
        compiler.errors.retain(|e| seen.insert(e.message()));
        compiler.errors.sort_by_key(FieldError::message);
        Err(compiler.errors)
    }
}

/// The depth of a JSON value, if above `limit` (iteratively: the input may be hostile).
pub(crate) fn deeper_than(value: &Value, limit: usize) -> Option<usize> {
    let mut stack = vec![(value, 1usize)];
    while let Some((v, depth)) = stack.pop() {
        if depth > limit {
            return Some(depth);
        }
        match v {
            Value::Array(items) => stack.extend(items.iter().map(|i| (i, depth + 1))),
            Value::Object(map) => stack.extend(map.values().map(|i| (i, depth + 1))),
            _ => {}
        }
    }
    None
}

impl Compiler {
    fn push(&mut self, error: FieldError) {
        self.errors.push(error);
    }

    fn string(&mut self, map: &Map<String, Value>, name: &str, path: &str) -> Option<String> {
        match map.get(name) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                self.push(FieldError::invalid(child(path, name), other.clone(), "must be a string"));
                None
            }
        }
    }

    fn boolean(&mut self, map: &Map<String, Value>, name: &str, path: &str) -> Option<bool> {
        match map.get(name) {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(other) => {
                self.push(FieldError::invalid(child(path, name), other.clone(), "must be a boolean"));
                None
            }
        }
    }

    fn integer(&mut self, map: &Map<String, Value>, name: &str, path: &str) -> Option<i64> {
        match map.get(name) {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) if n.as_i64().is_some() => n.as_i64(),
            Some(other) => {
                self.push(FieldError::invalid(child(path, name), other.clone(), "must be an integer"));
                None
            }
        }
    }

    fn number(&mut self, map: &Map<String, Value>, name: &str, path: &str) -> Option<f64> {
        match map.get(name) {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => n.as_f64(),
            Some(other) => {
                self.push(FieldError::invalid(child(path, name), other.clone(), "must be a number"));
                None
            }
        }
    }

    fn strings(&mut self, map: &Map<String, Value>, name: &str, path: &str) -> Vec<String> {
        match map.get(name) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
                items.iter().filter_map(|i| i.as_str().map(str::to_owned)).collect()
            }
            Some(other) => {
                self.push(FieldError::invalid(child(path, name), other.clone(), "must be a list of strings"));
                Vec::new()
            }
        }
    }

    fn schemas(&mut self, map: &Map<String, Value>, name: &str, path: &str, ctx: &Ctx) -> Vec<Node> {
        match map.get(name) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => {
                let base = child(path, name);
                // The two int-or-string patterns whose branches may name a `type`: `anyOf` of a
                // structural node, and `anyOf` of the first `allOf` entry of a structural node.
                let typed_any_of =
                    name == "anyOf" && is_int_or_string_any_of(map) && (!ctx.nested || ctx.int_or_string_any_of);
                let typed_all_of = name == "allOf" && !ctx.nested && is_int_or_string_all_of(map);
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        let mut sub = nested(ctx);
                        sub.int_or_string_branch = typed_any_of;
                        sub.int_or_string_any_of = typed_all_of && i == 0;
                        self.node(item, &index(&base, i), &sub)
                    })
                    .collect()
            }
            Some(other) => {
                self.push(FieldError::invalid(child(path, name), other.clone(), "must be a list of schemas"));
                Vec::new()
            }
        }
    }

    /// Compiles one schema node at `path`.
    fn node(&mut self, value: &Value, path: &str, ctx: &Ctx) -> Node {
        let mut node = Node::default();
        let Value::Object(map) = value else {
            self.push(FieldError::invalid(path, value.clone(), "must be a schema object"));
            return node;
        };
        if ctx.depth > MAX_DEPTH {
            self.push(FieldError::forbidden(path, format!("must not be nested more than {MAX_DEPTH} schemas deep")));
            return node;
        }

        let extra = self.keywords(map, &mut node, path);
        self.check_openapi_keywords(map, &node, path, ctx, extra.unique_items, extra.preserve);
        self.children(map, &mut node, path, ctx);
        self.finish(map, &mut node, path, ctx, &extra);
        node
    }

    /// Reads the keywords of a schema node (not its sub-schemas).
    #[inline(never)]
    fn keywords(&mut self, map: &Map<String, Value>, node: &mut Node, path: &str) -> Keywords {
        node.ty = self.string(map, "type", path).unwrap_or_default();
        node.format = self.string(map, "format", path).unwrap_or_default();
        node.nullable = self.boolean(map, "nullable", path).unwrap_or(false);
        node.int_or_string = self.boolean(map, "x-kubernetes-int-or-string", path).unwrap_or(false);
        let preserve = self.boolean(map, "x-kubernetes-preserve-unknown-fields", path);
        node.preserve_unknown_fields = preserve == Some(true);
        node.embedded_resource = self.boolean(map, "x-kubernetes-embedded-resource", path).unwrap_or(false);
        node.list_type = self.string(map, "x-kubernetes-list-type", path);
        node.list_map_keys = self.strings(map, "x-kubernetes-list-map-keys", path);
        node.map_type = self.string(map, "x-kubernetes-map-type", path);
        node.maximum = self.number(map, "maximum", path);
        node.exclusive_maximum = self.boolean(map, "exclusiveMaximum", path).unwrap_or(false);
        node.minimum = self.number(map, "minimum", path);
        node.exclusive_minimum = self.boolean(map, "exclusiveMinimum", path).unwrap_or(false);
        node.max_length = self.integer(map, "maxLength", path);
        node.min_length = self.integer(map, "minLength", path);
        node.max_items = self.integer(map, "maxItems", path);
        node.min_items = self.integer(map, "minItems", path);
        let unique_items = self.boolean(map, "uniqueItems", path).unwrap_or(false);
        node.multiple_of = self.number(map, "multipleOf", path);
        node.max_properties = self.integer(map, "maxProperties", path);
        node.min_properties = self.integer(map, "minProperties", path);
        node.required = self.strings(map, "required", path);
        node.default = map.get("default").filter(|d| !d.is_null()).cloned();
        match map.get("enum") {
            None | Some(Value::Null) => {}
            Some(Value::Array(values)) => node.enumeration = values.clone(),
            Some(other) => self.push(FieldError::invalid(child(path, "enum"), other.clone(), "must be a list")),
        }
        node.checked_format = checked_format(&node.format);
        Keywords {
            unique_items,
            preserve,
            description: self.string(map, "description", path).unwrap_or_default(),
            title: self.string(map, "title", path).unwrap_or_default(),
        }
    }

    /// Compiles the sub-schemas: properties, additionalProperties, items, allOf, oneOf, anyOf,
    /// not.
    #[inline(never)]
    fn children(&mut self, map: &Map<String, Value>, node: &mut Node, path: &str, ctx: &Ctx) {
        let properties = match map.get("properties") {
            None | Some(Value::Null) => None,
            Some(Value::Object(properties)) => Some(properties),
            Some(other) => {
                self.push(FieldError::invalid(child(path, "properties"), other.clone(), "must be a map of schemas"));
                None
            }
        };
        let is_resource = ctx.level == Level::Root || node.embedded_resource;
        if let Some(properties) = properties {
            let base = child(path, "properties");
            for (name, sub) in properties {
                let mut sub_ctx = field_ctx(ctx);
                if !matches!(node.map_type.as_deref(), None | Some("granular" | "atomic"))
                    && sub_ctx.uncorrelatable.is_none()
                {
                    sub_ctx.uncorrelatable = Some(path.to_owned());
                }
                if is_resource && !ctx.nested && matches!(name.as_str(), "metadata" | "kind" | "apiVersion") {
                    sub_ctx.inside_meta = true;
                    if ctx.level == Level::Root {
                        sub_ctx.defaults_forbidden = Some(format!("in top-level {name}"));
                    }
                }
                self.property(node, name, sub, key(&base, name), sub_ctx);
            }
        }
        match map.get("additionalProperties") {
            None | Some(Value::Null) => {}
            Some(Value::Bool(b)) => node.additional_properties = Some(Additional::Allows(*b)),
            Some(sub @ Value::Object(_)) => {
                let mut sub_ctx = field_ctx(ctx);
                if ctx.inside_meta {
                    sub_ctx.defaults_forbidden = Some("inside additionalProperties applying to object metadata".into());
                }
                node.additional_properties =
                    Some(Additional::Schema(self.boxed(sub, child(path, "additionalProperties"), sub_ctx)));
            }
            Some(other) => self.push(FieldError::invalid(
                child(path, "additionalProperties"),
                other.clone(),
                "must be a boolean or a schema",
            )),
        }
        match map.get("items") {
            None | Some(Value::Null) => {}
            Some(Value::Array(_)) => {
                self.push(FieldError::forbidden(child(path, "items"), "items must be a schema object and not an array"))
            }
            Some(sub) => {
                let mut sub_ctx = ctx.clone();
                sub_ctx.level = if ctx.nested { ctx.level } else { Level::Item };
                sub_ctx.depth += 1;
                sub_ctx.int_or_string_branch = false;
                sub_ctx.int_or_string_any_of = false;
                if node.list_type.as_deref() != Some("map") && sub_ctx.uncorrelatable.is_none() {
                    sub_ctx.uncorrelatable = Some(path.to_owned());
                }
                node.items = Some(self.boxed(sub, child(path, "items"), sub_ctx));
            }
        }
        node.all_of = self.schemas(map, "allOf", path, ctx);
        node.one_of = self.schemas(map, "oneOf", path, ctx);
        node.any_of = self.schemas(map, "anyOf", path, ctx);
        match map.get("not") {
            None | Some(Value::Null) => {}
            Some(sub) => node.not = Some(self.boxed(sub, child(path, "not"), nested(ctx))),
        }
    }

    /// Compiles a property into `node` (a function of its own, to keep the frames of the
    /// recursion small).
    #[inline(never)]
    fn property(&mut self, node: &mut Node, name: &str, sub: &Value, path: String, ctx: Ctx) {
        let compiled = self.node(sub, &path, &ctx);
        node.properties.insert(name.to_owned(), compiled);
    }

    /// Compiles a sub-schema onto the heap.
    #[inline(never)]
    fn boxed(&mut self, sub: &Value, path: String, ctx: Ctx) -> Box<Node> {
        Box::new(self.node(sub, &path, &ctx))
    }

    /// The checks that need the sub-schemas, and the CEL rules.
    #[inline(never)]
    fn finish(&mut self, map: &Map<String, Value>, node: &mut Node, path: &str, ctx: &Ctx, extra: &Keywords) {
        self.check_pattern(map, node, path);
        self.check_extensions(node, path, ctx);
        self.check_list_type(node, path);
        if ctx.nested {
            self.check_nested(map, node, path, ctx, &extra.description, &extra.title);
        } else {
            self.check_structural(map, node, path, ctx);
            for (i, branch) in node.all_of.iter().enumerate() {
                check_complete(node, branch, path, &index(&child(path, "allOf"), i), &mut self.errors);
            }
            for (i, branch) in node.any_of.iter().enumerate() {
                check_complete(node, branch, path, &index(&child(path, "anyOf"), i), &mut self.errors);
            }
            for (i, branch) in node.one_of.iter().enumerate() {
                check_complete(node, branch, path, &index(&child(path, "oneOf"), i), &mut self.errors);
            }
            if let Some(not) = &node.not {
                check_complete(node, not, path, &child(path, "not"), &mut self.errors);
            }
        }
        node.rules = self.rules(map, node, path, ctx);
        if !node.rules.is_empty() {
            node.decl = decl::decl_type(node, ctx.level == Level::Root || node.embedded_resource);
        }
        node.has_rules = !node.rules.is_empty()
            || node.properties.values().any(|p| p.has_rules)
            || node.items.as_deref().is_some_and(|i| i.has_rules)
            || node.additional_schema().is_some_and(|a| a.has_rules);
    }

    /// The checks of `specStandardValidatorV3.validate` and of the keyword part of
    /// `ValidateCustomResourceDefinitionOpenAPISchema`.
    fn check_openapi_keywords(
        &mut self,
        map: &Map<String, Value>,
        node: &Node,
        path: &str,
        ctx: &Ctx,
        unique_items: bool,
        preserve: Option<bool>,
    ) {
        if !node.ty.is_empty() && !TYPES.contains(&node.ty.as_str()) {
            let supported: Vec<String> = TYPES.iter().map(|t| (*t).to_owned()).collect();
            self.push(FieldError::not_supported(child(path, "type"), Value::from(node.ty.clone()), &supported));
        }
        if node.default.is_some()
            && let Some(reason) = &ctx.defaults_forbidden
        {
            self.push(FieldError::forbidden(child(path, "default"), format!("must not be set {reason}")));
        }
        for (keyword, detail) in [
            ("id", "id is not supported"),
            ("additionalItems", "additionalItems is not supported"),
            ("patternProperties", "patternProperties is not supported"),
            ("definitions", "definitions is not supported"),
            ("dependencies", "dependencies is not supported"),
            ("$ref", "$ref is not supported"),
        ] {
            if map.get(keyword).is_some_and(|v| !is_zero(v)) {
                self.push(FieldError::forbidden(child(path, keyword), detail));
            }
        }
        if node.ty == "null" {
            self.push(FieldError::forbidden(
                child(path, "type"),
                "type cannot be set to null, use nullable as an alternative",
            ));
        }
        if ctx.inside_meta && node.embedded_resource {
            self.push(FieldError::forbidden(
                child(path, "x-kubernetes-embedded-resource"),
                "must not be used inside of resource meta",
            ));
        }
        if unique_items {
            self.push(FieldError::forbidden(
                child(path, "uniqueItems"),
                "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
            ));
        }
        let has_properties = map.get("properties").and_then(Value::as_object).is_some_and(|p| !p.is_empty());
        if has_properties && matches!(map.get("additionalProperties"), Some(Value::Bool(false) | Value::Object(_))) {
            self.push(FieldError::forbidden(
                child(path, "additionalProperties"),
                "additionalProperties and properties are mutual exclusive",
            ));
        }
        if preserve == Some(false) {
            self.push(FieldError::invalid(
                child(path, "x-kubernetes-preserve-unknown-fields"),
                Value::Bool(false),
                "must be true or undefined",
            ));
        }
    }

    /// `x-kubernetes-map-type`, `x-kubernetes-list-type` and `x-kubernetes-list-map-keys`.
    fn check_list_type(&mut self, node: &Node, path: &str) {
        if let Some(map_type) = &node.map_type {
            if node.ty != "object" {
                self.push(type_error(path, &node.ty, "must be object if x-kubernetes-map-type is specified"));
            }
            if map_type != "atomic" && map_type != "granular" {
                self.push(FieldError::not_supported(
                    child(path, "x-kubernetes-map-type"),
                    Value::from(map_type.clone()),
                    &["atomic".to_owned(), "granular".to_owned()],
                ));
            }
        }
        if let Some(list_type) = &node.list_type {
            if node.ty != "array" {
                self.push(type_error(path, &node.ty, "must be array if x-kubernetes-list-type is specified"));
            } else if list_type == "set"
                && let Some(items) = &node.items
            {
                if items.ty == "array" && items.list_type.as_deref().is_some_and(|t| t != "atomic") {
                    self.push(FieldError::invalid(
                        child(&child(path, "items"), "x-kubernetes-list-type"),
                        Value::from(items.list_type.clone()),
                        "must be atomic as item of a list with x-kubernetes-list-type=set",
                    ));
                }
                if items.ty == "object" && items.map_type.as_deref() != Some("atomic") {
                    self.push(FieldError::invalid(
                        child(&child(path, "items"), "x-kubernetes-map-type"),
                        Value::from(items.list_type.clone()),
                        "must be atomic as item of a list with x-kubernetes-list-type=set",
                    ));
                }
            }
            if !matches!(list_type.as_str(), "atomic" | "set" | "map") {
                self.push(FieldError::not_supported(
                    child(path, "x-kubernetes-list-type"),
                    Value::from(list_type.clone()),
                    &["atomic".to_owned(), "set".to_owned(), "map".to_owned()],
                ));
            }
        }
        if !node.list_map_keys.is_empty() {
            match node.list_type.as_deref() {
                None => self.push(FieldError::required(
                    child(path, "x-kubernetes-list-type"),
                    "must be map if x-kubernetes-list-map-keys is non-empty",
                )),
                Some("map") => {}
                Some(other) => self.push(FieldError::invalid(
                    child(path, "x-kubernetes-list-type"),
                    Value::from(other),
                    "must be map if x-kubernetes-list-map-keys is non-empty",
                )),
            }
        }
        if node.list_type.as_deref() == Some("map") {
            if node.list_map_keys.is_empty() {
                self.push(FieldError::required(
                    child(path, "x-kubernetes-list-map-keys"),
                    "must not be empty if x-kubernetes-list-type is map",
                ));
            }
            match &node.items {
                None => self.push(FieldError::required(
                    child(path, "items"),
                    "must have a schema if x-kubernetes-list-type is map",
                )),
                Some(items) if items.ty != "object" => self.push(FieldError::invalid(
                    child(&child(path, "items"), "type"),
                    Value::from(items.ty.clone()),
                    "must be object if parent array's x-kubernetes-list-type is map",
                )),
                Some(items) => {
                    let mut seen = HashSet::new();
                    let keys = Value::from(node.list_map_keys.clone());
                    for k in &node.list_map_keys {
                        match items.properties.get(k) {
                            Some(prop) if prop.ty == "array" || prop.ty == "object" => self.push(FieldError::invalid(
                                child(&key(&child(&child(path, "items"), "properties"), k), "type"),
                                Value::from(items.ty.clone()),
                                "must be a scalar type if parent array's x-kubernetes-list-type is map",
                            )),
                            Some(_) => {}
                            None => self.push(FieldError::invalid(
                                child(path, "x-kubernetes-list-map-keys"),
                                keys.clone(),
                                "entries must all be names of item properties",
                            )),
                        }
                        if !seen.insert(k) {
                            self.push(FieldError::invalid(
                                child(path, "x-kubernetes-list-map-keys"),
                                keys.clone(),
                                "must not contain duplicate entries",
                            ));
                        }
                    }
                }
            }
        }
        // validateMapListKeysMapSet
        if let (Some(list_type @ ("set" | "map")), Some(items)) = (node.list_type.as_deref(), &node.items) {
            if items.nullable {
                self.push(FieldError::forbidden(
                    child(&child(path, "items"), "nullable"),
                    format!("cannot be nullable when x-kubernetes-list-type is {list_type}"),
                ));
            }
            if list_type == "map" {
                for k in &node.list_map_keys {
                    let Some(prop) = items.properties.get(k) else { continue };
                    let prop_path = key(&child(&child(path, "items"), "properties"), k);
                    if !items.required.contains(k) && prop.default.is_none() {
                        self.push(FieldError::required(
                            child(&prop_path, "default"),
                            "this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property",
                        ));
                    }
                    if prop.nullable {
                        self.push(FieldError::forbidden(
                            child(&prop_path, "nullable"),
                            "this property is in x-kubernetes-list-map-keys, so it cannot be nullable",
                        ));
                    }
                }
            }
        }
    }

    fn check_pattern(&mut self, map: &Map<String, Value>, node: &mut Node, path: &str) {
        let Some(source) = self.string(map, "pattern", path) else { return };
        if source.is_empty() {
            return;
        }
        match go_regex(&source) {
            Ok(regex) => node.pattern = Some(Pattern { source, regex }),
            Err(error) => self.push(FieldError::invalid(
                child(path, "pattern"),
                Value::from(source),
                format!("must be a valid regular expression, but isn't: {error}"),
            )),
        }
    }

    /// `validateExtensions`.
    fn check_extensions(&mut self, node: &Node, path: &str, ctx: &Ctx) {
        if ctx.nested {
            return;
        }
        if node.int_or_string && node.preserve_unknown_fields {
            self.push(FieldError::invalid(
                child(path, "x-kubernetes-preserve-unknown-fields"),
                Value::Bool(true),
                "must be false if x-kubernetes-int-or-string is true",
            ));
        }
        if node.int_or_string && node.embedded_resource {
            self.push(FieldError::invalid(
                child(path, "x-kubernetes-embedded-resource"),
                Value::Bool(true),
                "must be false if x-kubernetes-int-or-string is true",
            ));
        }
    }

    /// The structural invariants of a node on the structural spine (`validateStructuralInvariants`).
    fn check_structural(&mut self, map: &Map<String, Value>, node: &Node, path: &str, ctx: &Ctx) {
        if node.ty == "array" && node.items.is_none() && !map.get("items").is_some_and(Value::is_array) {
            self.push(FieldError::required(child(path, "items"), "must be specified"));
        }
        if node.additional_properties.is_some() {
            if ctx.level == Level::Root {
                self.push(FieldError::forbidden(child(path, "additionalProperties"), "must not be used at the root"));
            }
            if node.embedded_resource {
                self.push(FieldError::forbidden(
                    child(path, "additionalProperties"),
                    "must not be used if x-kubernetes-embedded-resource is set",
                ));
            }
        }
        if node.embedded_resource && node.ty != "object" {
            self.push(type_error(path, &node.ty, "must be object if x-kubernetes-embedded-resource is true"));
        } else if node.ty.is_empty() && !node.int_or_string && !node.preserve_unknown_fields {
            let detail = match ctx.level {
                Level::Root => "must not be empty at the root",
                Level::Item => "must not be empty for specified array items",
                Level::Field => "must not be empty for specified object fields",
            };
            self.push(FieldError::required(child(path, "type"), detail));
        }
        if ctx.level == Level::Root && !node.ty.is_empty() && node.ty != "object" {
            self.push(FieldError::invalid(
                child(path, "type"),
                Value::from(node.ty.clone()),
                "must be object at the root",
            ));
        }
        let check_metadata = ctx.level == Level::Root || node.embedded_resource;
        let properties_path = child(path, "properties");
        if check_metadata {
            for name in ["kind", "apiVersion"] {
                if let Some(prop) = node.properties.get(name)
                    && prop.ty != "string"
                {
                    self.push(FieldError::invalid(
                        child(&key(&properties_path, name), "type"),
                        Value::from(prop.ty.clone()),
                        "must be string",
                    ));
                }
            }
        }
        if let Some(metadata) = node.properties.get("metadata") {
            let metadata_path = key(&properties_path, "metadata");
            if check_metadata && metadata.ty != "object" {
                self.push(FieldError::invalid(
                    child(&metadata_path, "type"),
                    Value::from(metadata.ty.clone()),
                    "must be object",
                ));
            }
            if ctx.level == Level::Root
                && let Some(raw) = map.get("properties").and_then(|p| p.get("metadata"))
                && !root_metadata_allowed(raw)
            {
                self.push(FieldError::forbidden(
                    metadata_path,
                    "must not specify anything other than name and generateName, but metadata is implicitly specified",
                ));
            }
        }
        if node.embedded_resource && !node.preserve_unknown_fields && node.properties.is_empty() {
            self.push(FieldError::required(
                properties_path,
                "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
            ));
        }
    }

    /// What a schema inside `allOf`/`anyOf`/`oneOf`/`not` may not say (`validateNestedValueValidation`).
    fn check_nested(
        &mut self,
        map: &Map<String, Value>,
        node: &Node,
        path: &str,
        ctx: &Ctx,
        description: &str,
        title: &str,
    ) {
        if !node.ty.is_empty() && !ctx.int_or_string_branch {
            self.push(FieldError::forbidden(child(path, "type"), "must be empty to be structural"));
        }
        if node.additional_properties.is_some() {
            self.push(FieldError::forbidden(child(path, "additionalProperties"), "must be undefined to be structural"));
        }
        if node.default.is_some() {
            self.push(FieldError::forbidden(child(path, "default"), "must be undefined to be structural"));
        }
        if !title.is_empty() {
            self.push(FieldError::forbidden(child(path, "title"), "must be empty to be structural"));
        }
        if !description.is_empty() {
            self.push(FieldError::forbidden(child(path, "description"), "must be empty to be structural"));
        }
        if node.nullable {
            self.push(FieldError::forbidden(child(path, "nullable"), "must be false to be structural"));
        }
        for (flag, name) in [
            (node.preserve_unknown_fields, "x-kubernetes-preserve-unknown-fields"),
            (node.embedded_resource, "x-kubernetes-embedded-resource"),
            (node.int_or_string, "x-kubernetes-int-or-string"),
        ] {
            if flag {
                self.push(FieldError::forbidden(child(path, name), "must be false to be structural"));
            }
        }
        if !node.list_map_keys.is_empty() {
            self.push(FieldError::forbidden(
                child(path, "x-kubernetes-list-map-keys"),
                "must be empty to be structural",
            ));
        }
        if node.list_type.is_some() {
            self.push(FieldError::forbidden(
                child(path, "x-kubernetes-list-type"),
                "must be undefined to be structural",
            ));
        }
        if node.map_type.is_some() {
            self.push(FieldError::forbidden(
                child(path, "x-kubernetes-map-type"),
                "must be undefined to be structural",
            ));
        }
        if map.get("x-kubernetes-validations").and_then(Value::as_array).is_some_and(|r| !r.is_empty()) {
            self.push(FieldError::forbidden(child(path, "x-kubernetes-validations"), "must be empty to be structural"));
        }
        if node.properties.contains_key("metadata") {
            self.push(FieldError::forbidden(
                key(&child(path, "properties"), "metadata"),
                "must not be specified in a nested context",
            ));
        }
    }

    /// `x-kubernetes-validations`: the rule checks, CEL compilation and `oldSelf` restrictions.
    fn rules(&mut self, map: &Map<String, Value>, node: &Node, path: &str, ctx: &Ctx) -> Vec<Rule> {
        let rules = match map.get("x-kubernetes-validations") {
            None | Some(Value::Null) => return Vec::new(),
            Some(Value::Array(rules)) => rules,
            Some(other) => {
                self.push(FieldError::invalid(
                    child(path, "x-kubernetes-validations"),
                    other.clone(),
                    "must be a list of rules",
                ));
                return Vec::new();
            }
        };
        if ctx.nested {
            // Reported by check_nested; nested rules never run.
            return Vec::new();
        }
        let base = child(path, "x-kubernetes-validations");
        let mut compiled = Vec::new();
        for (i, raw) in rules.iter().enumerate() {
            let rule_path = index(&base, i);
            let Value::Object(fields) = raw else {
                self.push(FieldError::invalid(rule_path, raw.clone(), "must be an object"));
                continue;
            };
            let rule = self.string(fields, "rule", &rule_path).unwrap_or_default();
            let message = self.string(fields, "message", &rule_path).unwrap_or_default();
            let message_expression = self.string(fields, "messageExpression", &rule_path).unwrap_or_default();
            let reason = self.string(fields, "reason", &rule_path);
            let field_path = self.string(fields, "fieldPath", &rule_path).unwrap_or_default();
            let optional_old_self = self.boolean(fields, "optionalOldSelf", &rule_path);

            let trimmed_rule = rule.trim();
            let trimmed_message = message.trim();
            if trimmed_rule.is_empty() {
                self.push(FieldError::required(child(&rule_path, "rule"), "rule is not specified"));
            } else if !message.is_empty() && trimmed_message.is_empty() {
                self.push(FieldError::invalid(
                    child(&rule_path, "message"),
                    Value::from(message.clone()),
                    "must be non-empty if specified",
                ));
            } else if trimmed_message.contains(['\n', '\r']) {
                self.push(FieldError::invalid(
                    child(&rule_path, "message"),
                    Value::from(message.clone()),
                    "must not contain line breaks",
                ));
            } else if trimmed_rule.contains(['\n', '\r']) && trimmed_message.is_empty() {
                self.push(FieldError::required(
                    child(&rule_path, "message"),
                    "message must be specified if rule contains line breaks",
                ));
            }
            if !message_expression.is_empty() && message_expression.trim().is_empty() {
                self.push(FieldError::required(
                    child(&rule_path, "messageExpression"),
                    "messageExpression must be non-empty if specified",
                ));
            }
            if let Some(reason) = &reason
                && !REASONS.contains(&reason.as_str())
            {
                let supported: Vec<String> = REASONS.iter().map(|r| (*r).to_owned()).collect();
                self.push(FieldError::not_supported(
                    child(&rule_path, "reason"),
                    Value::from(reason.clone()),
                    &supported,
                ));
            }
            let mut normalized_field_path = None;
            if !field_path.is_empty() {
                if field_path.trim().is_empty() {
                    self.push(FieldError::invalid(
                        child(&rule_path, "fieldPath"),
                        Value::from(field_path.clone()),
                        "must be non-empty if specified",
                    ));
                }
                if field_path.contains(['\n', '\r']) {
                    self.push(FieldError::invalid(
                        child(&rule_path, "fieldPath"),
                        Value::from(field_path.clone()),
                        "must not contain line breaks",
                    ));
                }
                match cel::valid_field_path(&field_path, node) {
                    Some(normalized) => normalized_field_path = Some(normalized),
                    None => self.push(FieldError::invalid(
                        child(&rule_path, "fieldPath"),
                        Value::from(field_path.clone()),
                        "must be a valid path",
                    )),
                }
            }

            let mut program = None;
            let mut message_program = None;
            let mut uses_old_self = false;
            if !trimmed_rule.is_empty() {
                match cel::compile_expression(&rule) {
                    Ok(p) => {
                        uses_old_self = cel::uses_old_self(&p);
                        program = Some(p);
                    }
                    Err(error) => self.push(FieldError::invalid(
                        child(&rule_path, "rule"),
                        raw.clone(),
                        format!("compilation failed: {error}"),
                    )),
                }
                if program.is_some() && !message_expression.is_empty() && !message_expression.trim().is_empty() {
                    match cel::compile_expression(&message_expression) {
                        Ok(p) => message_program = Some(p),
                        Err(error) => self.push(FieldError::invalid(
                            child(&rule_path, "messageExpression"),
                            raw.clone(),
                            format!("messageExpression compilation failed: {error}"),
                        )),
                    }
                }
                if program.is_some() {
                    if uses_old_self {
                        if let Some(uncorrelatable) = &ctx.uncorrelatable {
                            self.push(FieldError::invalid(
                                child(&rule_path, "rule"),
                                Value::from(rule.clone()),
                                format!(
                                    "oldSelf cannot be used on the uncorrelatable portion of the schema within {uncorrelatable}"
                                ),
                            ));
                        }
                    } else if let Some(optional) = optional_old_self {
                        self.push(FieldError::invalid(
                            child(&rule_path, "optionalOldSelf"),
                            Value::Bool(optional),
                            "may not be set if oldSelf is not used in rule",
                        ));
                    }
                }
            }
            compiled.push(Rule {
                rule,
                message,
                reason,
                optional_old_self: optional_old_self.unwrap_or(false),
                program,
                message_expression,
                message_program,
                uses_old_self,
                normalized_field_path,
            });
        }
        compiled
    }
}

/// The context of a schema inside `allOf`/`anyOf`/`oneOf`/`not`.
fn nested(ctx: &Ctx) -> Ctx {
    let mut sub = ctx.clone();
    sub.nested = true;
    sub.depth += 1;
    sub.int_or_string_branch = false;
    sub.int_or_string_any_of = false;
    sub
}

/// The context of a property or `additionalProperties` schema.
fn field_ctx(ctx: &Ctx) -> Ctx {
    let mut sub = ctx.clone();
    sub.level = Level::Field;
    sub.depth += 1;
    sub.int_or_string_branch = false;
    sub.int_or_string_any_of = false;
    sub
}

/// `Required(type)` when empty, else `Invalid(type)`.
fn type_error(path: &str, ty: &str, detail: &str) -> FieldError {
    if ty.is_empty() {
        FieldError::required(child(path, "type"), detail)
    } else {
        FieldError::invalid(child(path, "type"), Value::from(ty), detail)
    }
}

/// The format the API server validates: supported formats kept, others blanked (1.34 strips by
/// name, whatever the type).
fn checked_format(format: &str) -> String {
    if format.is_empty() || !formats::supported(format) { String::new() } else { format.to_owned() }
}

fn is_zero(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
    }
}

/// `anyOf: [{type: integer}, {type: string}]` exactly.
fn is_int_or_string_any_of(map: &Map<String, Value>) -> bool {
    let Some(Value::Array(any_of)) = map.get("anyOf") else { return false };
    let [integer, string] = any_of.as_slice() else { return false };
    let only_type = |schema: &Value, ty: &str| {
        schema.as_object().is_some_and(|o| o.len() == 1 && o.get("type").and_then(Value::as_str) == Some(ty))
    };
    only_type(integer, "integer") && only_type(string, "string")
}

/// `allOf: [{anyOf: [{type: integer}, {type: string}]}, ...]`.
fn is_int_or_string_all_of(map: &Map<String, Value>) -> bool {
    let Some(Value::Array(all_of)) = map.get("allOf") else { return false };
    all_of.first().and_then(Value::as_object).is_some_and(is_int_or_string_any_of)
}

/// Whether the schema of `metadata` at the root only restricts `name` and `generateName`
/// (`validateStructuralMetadataInvariants`).
fn root_metadata_allowed(raw: &Value) -> bool {
    let Some(map) = raw.as_object() else { return true };
    map.iter().all(|(k, v)| match k.as_str() {
        "type" | "default" | "example" | "externalDocs" => true,
        "properties" => match v.as_object() {
            Some(props) => {
                props.is_empty() || (props.len() <= 2 && props.keys().all(|p| p == "name" || p == "generateName"))
            }
            None => is_zero(v),
        },
        _ => is_zero(v),
    })
}

/// `validateStructuralCompleteness`: every property or items a nested schema constrains must
/// exist on the structural spine.
fn check_complete(spine: &Node, nested: &Node, s_path: &str, v_path: &str, errors: &mut Vec<FieldError>) {
    for (i, branch) in nested.all_of.iter().enumerate() {
        check_complete(spine, branch, s_path, &index(&child(v_path, "allOf"), i), errors);
    }
    for (i, branch) in nested.any_of.iter().enumerate() {
        check_complete(spine, branch, s_path, &index(&child(v_path, "anyOf"), i), errors);
    }
    for (i, branch) in nested.one_of.iter().enumerate() {
        check_complete(spine, branch, s_path, &index(&child(v_path, "oneOf"), i), errors);
    }
    if let Some(not) = &nested.not {
        check_complete(spine, not, s_path, &child(v_path, "not"), errors);
    }
    if let Some(items) = &nested.items {
        let s_items = child(s_path, "items");
        let v_items = child(v_path, "items");
        match &spine.items {
            Some(spine_items) => check_complete(spine_items, items, &s_items, &v_items, errors),
            None => errors.push(FieldError::required(s_items, format!("because it is defined in {v_items}"))),
        }
    }
    for (name, prop) in &nested.properties {
        let s_prop = key(&child(s_path, "properties"), name);
        let v_prop = key(&child(v_path, "properties"), name);
        match spine.properties.get(name) {
            Some(spine_prop) => check_complete(spine_prop, prop, &s_prop, &v_prop, errors),
            None => errors.push(FieldError::required(s_prop, format!("because it is defined in {v_prop}"))),
        }
    }
}

/// Validates the defaults of the structural spine against their schemas (`ValidateDefaults`):
/// pruned, valid by the OpenAPI rules, and by the CEL rules.
fn check_defaults(node: &Node, path: &str, inside_meta: bool, errors: &mut Vec<FieldError>) {
    if let Some(default) = &node.default
        && !inside_meta
    {
        let default_path = child(path, "default");
        let mut pruned = default.clone();
        prune::prune(&mut pruned, node, node.embedded_resource);
        if &pruned != default {
            errors.push(FieldError::invalid(default_path.clone(), default.clone(), "must not have unknown fields"));
        }
        let schema_errors = validate::validate(node, default, None, Some(&default_path));
        if !schema_errors.is_empty() {
            errors.extend(schema_errors);
        } else if node.has_rules {
            let (cel_errors, _) =
                cel::validate(node, default, Some(default), &default_path, false, node.embedded_resource);
            if cel_errors.is_empty() {
                let (cel_errors, _) = cel::validate(node, default, None, &default_path, false, node.embedded_resource);
                errors.extend(cel_errors);
            } else {
                errors.extend(cel_errors);
            }
        }
    }
    if let Some(items) = &node.items {
        check_defaults(items, &child(path, "items"), inside_meta, errors);
    }
    for (name, prop) in &node.properties {
        let meta =
            inside_meta || (node.embedded_resource && matches!(name.as_str(), "metadata" | "apiVersion" | "kind"));
        check_defaults(prop, &key(&child(path, "properties"), name), meta, errors);
    }
}

/// Prunes every default against its own schema, as the API server does when it loads a CRD.
fn prune_defaults(node: &mut Node) {
    if let Some(mut default) = node.default.take() {
        prune::prune(&mut default, node, node.embedded_resource);
        node.default = Some(default);
    }
    for prop in node.properties.values_mut() {
        prune_defaults(prop);
    }
    if let Some(items) = &mut node.items {
        prune_defaults(items);
    }
    if let Some(Additional::Schema(schema)) = &mut node.additional_properties {
        prune_defaults(schema);
    }
}

/// Compiles a pattern with Go's `regexp` semantics: the `regex` crate has RE2's syntax, but its
/// Perl classes and word boundaries are Unicode-aware where Go's are ASCII, so those are
/// rewritten.
pub(crate) fn go_regex(pattern: &str) -> Result<Regex, regex::Error> {
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut chars = pattern.chars();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('d') => out.push_str("[0-9]"),
                Some('D') => out.push_str("[^0-9]"),
                Some('w') => out.push_str("[0-9A-Za-z_]"),
                Some('W') => out.push_str("[^0-9A-Za-z_]"),
                Some('s') => out.push_str(r"[\t\n\f\r ]"),
                Some('S') => out.push_str(r"[^\t\n\f\r ]"),
                Some('b') if !in_class => out.push_str(r"(?-u:\b)"),
                Some('B') if !in_class => out.push_str(r"(?-u:\B)"),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            },
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                // A leading `]` (or `^]`) is a literal in both syntaxes.
                let rest = chars.as_str();
                if let Some(stripped) = rest.strip_prefix("^]") {
                    out.push_str("^\\]");
                    chars = stripped.chars();
                } else if let Some(stripped) = rest.strip_prefix(']') {
                    out.push_str("\\]");
                    chars = stripped.chars();
                } else if let Some(stripped) = rest.strip_prefix('^') {
                    out.push('^');
                    chars = stripped.chars();
                }
            }
            '[' if in_class => {
                // `[:alpha:]` classes are ASCII in both syntaxes; a bare `[` is a literal in Go.
                let rest = chars.as_str();
                match rest.strip_prefix(':').and_then(|r| r.find(":]")) {
                    Some(end) => {
                        out.push('[');
                        out.push_str(&rest[..end + 3]);
                        chars = rest[end + 3..].chars();
                    }
                    None => out.push_str("\\["),
                }
            }
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            other => out.push(other),
        }
    }
    RegexBuilder::new(&out).size_limit(REGEX_SIZE_LIMIT).dfa_size_limit(REGEX_SIZE_LIMIT).build()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::TimeDelta;
    use kube::core::cel::cel::Value as CelValue;
    use kube::core::cel::cel::objects::Key;
    use serde_json::json;

    use super::*;
    use crate::cel::{to_cel, valid_field_path};

    #[test]
    fn patterns_have_go_semantics() {
        let digits = go_regex(r"^\d+$").unwrap();
        assert!(digits.is_match("123"));
        assert!(!digits.is_match("١٢٣"), "Go's \\d is ASCII");
        let word = go_regex(r"^\w+$").unwrap();
        assert!(!word.is_match("é"));
        let class = go_regex(r"^[\d-]+$").unwrap();
        assert!(class.is_match("1-2"));
        let posix = go_regex(r"^[[:alpha:]]+$").unwrap();
        assert!(posix.is_match("abc") && !posix.is_match("ab1"));
        let bracket = go_regex(r"^[]a]+$").unwrap();
        assert!(bracket.is_match("]a"));
        let boundary = go_regex(r"\bfoo\b").unwrap();
        assert!(boundary.is_match("a foo b"));
        assert!(go_regex(r"(").is_err());
        assert!(go_regex(r"^(a{1000}){1000}$").is_err(), "size limit");
    }

    #[test]
    fn cel_field_paths_normalize_against_the_compiled_schema() {
        let schema = json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {"x": {"type": "string"}}},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        }});
        let node = compile(&schema, "s").unwrap();
        assert_eq!(valid_field_path(".spec.x", &node).as_deref(), Some("spec.x"));
        assert_eq!(valid_field_path(".spec['x']", &node).as_deref(), Some("spec.x"));
        assert_eq!(valid_field_path(".labels['a.b/c']", &node).as_deref(), Some("labels[a.b/c]"));
        assert_eq!(valid_field_path(".labels.k", &node).as_deref(), Some("labels[k]"));
        assert_eq!(valid_field_path(".spec.y", &node), None);
        assert_eq!(valid_field_path("spec.x", &node), None);
        assert_eq!(valid_field_path(".spec[x]", &node), None);
        assert_eq!(valid_field_path(".spec.x.y", &node), None);
    }

    #[test]
    fn values_convert_to_cel_with_their_compiled_schema() {
        let schema = json!({"type": "object", "properties": {
            "n": {"type": "number"},
            "t": {"type": "string", "format": "date-time"},
            "d": {"type": "string", "format": "duration"},
            "b": {"type": "string", "format": "byte"},
            "nul": {"type": "string", "nullable": true},
        }});
        let node = compile(&schema, "s").unwrap();
        let value = to_cel(
            &json!({"n": 1, "t": "2024-01-01T00:00:00Z", "d": "1h", "b": "aGk=", "nul": null, "unknown": 1}),
            Some(&node),
            false,
        );
        let CelValue::Map(map) = value else { panic!("{value:?}") };
        let get = |k: &str| map.map.get(&Key::String(Arc::new(k.to_owned()))).cloned();
        assert_eq!(get("n"), Some(CelValue::Float(1.0)));
        assert!(matches!(get("t"), Some(CelValue::Timestamp(_))));
        assert_eq!(get("d"), Some(CelValue::Duration(TimeDelta::hours(1))));
        assert_eq!(get("b"), Some(CelValue::Bytes(Arc::new(b"hi".to_vec()))));
        assert_eq!(get("nul"), None, "null fields of objects are absent");
        assert_eq!(get("unknown"), None, "undeclared fields are not visible");
    }
}
