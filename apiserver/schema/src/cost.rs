//! Cost of CEL rules, as the API server estimates it before accepting a CRD and bounds it while
//! validating an object.
//!
//! The estimator follows cel-go's `checker/cost.go` (v0.26, Kubernetes 1.34) node for node —
//! identifiers and selects cost 1, constants 0, a comprehension its range's size times the cost
//! of one iteration, `matches` the string's length × 0.1 times the regex's length × 0.25… —
//! with Kubernetes' additions (`k8s.io/apiserver/pkg/cel/library/cost.go` for its functions and
//! the string library, `has()` costing nothing) and Kubernetes' sizes: a path from `self`
//! (`self.spec.entries.@items`) is looked up in the schema's [`DeclType`], whose bounds come from
//! `maxItems`, `maxProperties`, `maxLength`, or else from the 3 MiB request size.
//!
//! cel-go estimates on a type-checked expression; the `cel` crate has no checker, so the types
//! the estimator needs (which overload a call resolves to, whether a select is on a map or an
//! object) are inferred here from the schema and the literals, the way the checker would
//! resolve them for rules that type-check.
//!
//! At run time cel-go counts the cost of what it actually evaluates; the `cel` interpreter
//! counts nothing, so [`actual_cost`] runs the same estimator with the sizes of the actual
//! values instead of the schema's bounds. That is an upper bound of cel-go's count: it assumes
//! every iteration runs (no short-circuit) and every value at a path is as large as the largest.

use std::collections::HashMap;

use kube::core::cel::cel::common::ast::{CallExpr, ComprehensionExpr, EntryExpr, Expr, IdedExpr, LiteralValue};
use serde_json::Value;

use crate::node::{DeclKind, DeclType};

/// `StaticEstimatedCostLimit`: the most a rule may cost, times the times it may run in an object.
pub const STATIC_ESTIMATED_COST_LIMIT: u64 = 10_000_000;
/// `StaticEstimatedCRDCostLimit`: the most all the rules of a CRD version may cost together.
pub const STATIC_ESTIMATED_CRD_COST_LIMIT: u64 = 100_000_000;
/// `PerCallLimit`: the most one evaluation of a rule may cost.
pub const PER_CALL_LIMIT: u64 = 1_000_000;
/// `RuntimeCELCostBudget`: the most the evaluations of all rules may cost for one object.
pub const RUNTIME_CEL_COST_BUDGET: i64 = 10_000_000;

const SELECT_AND_IDENT_COST: u64 = 1;
const CONST_COST: u64 = 0;
const LIST_CREATE_BASE_COST: u64 = 10;
const MAP_CREATE_BASE_COST: u64 = 30;
const STRUCT_CREATE_BASE_COST: u64 = 40;
const STRING_TRAVERSAL_COST_FACTOR: f64 = 0.1;
const REGEX_STRING_LENGTH_COST_FACTOR: f64 = 0.25;
/// Kubernetes' `has()` costs nothing (`PresenceTestHasCost(false)`).
const PRESENCE_TEST_COST: u64 = 0;
/// `cel.MaxFormatSize`, `cel.MaxNameFormatRegexSize`.
const MAX_FORMAT_SIZE: u64 = 64;
const MAX_NAME_FORMAT_REGEX_SIZE: f64 = 128.0;

/// A range of costs or sizes; arithmetic saturates at `u64::MAX`, as cel-go's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Estimate {
    /// The least.
    pub min: u64,
    /// The most.
    pub max: u64,
}

impl Estimate {
    const UNKNOWN: Self = Self { min: 0, max: u64::MAX };

    fn fixed(n: u64) -> Self {
        Self { min: n, max: n }
    }

    fn add(self, o: Self) -> Self {
        Self { min: self.min.saturating_add(o.min), max: self.max.saturating_add(o.max) }
    }

    fn multiply(self, o: Self) -> Self {
        Self { min: self.min.saturating_mul(o.min), max: self.max.saturating_mul(o.max) }
    }

    /// `MultiplyByCostFactor`: each bound times `f`, rounded up.
    fn factor(self, f: f64) -> Self {
        Self { min: by_factor(self.min, f), max: by_factor(self.max, f) }
    }

    fn union(self, o: Self) -> Self {
        Self { min: self.min.min(o.min), max: self.max.max(o.max) }
    }
}

/// `multiplyByCostFactor`.
fn by_factor(x: u64, f: f64) -> u64 {
    let xf = x as f64;
    if xf > 0.0 && f > 0.0 && xf > u64::MAX as f64 / f {
        return u64::MAX;
    }
    let ceil = (xf * f).ceil();
    if ceil >= 18_446_744_073_709_551_616.0 { u64::MAX } else { ceil as u64 }
}

/// Where sizes of values come from.
pub(crate) trait Sizes {
    /// The size range of the values at `path` (a variable, then field names, `@items`,
    /// `@values`, `@keys`), if known.
    fn size(&self, path: &[String]) -> Option<Estimate>;

    /// The size of a value nothing bounds (the result of `string(x)`…).
    fn unknown(&self) -> Estimate {
        Estimate::UNKNOWN
    }
}

/// Kubernetes' `sizeEstimator`: the bounds of the schema, whatever the variable (`self` or
/// `oldSelf`).
pub(crate) struct SchemaSizes<'d> {
    pub root: &'d DeclType,
}

impl Sizes for SchemaSizes<'_> {
    fn size(&self, path: &[String]) -> Option<Estimate> {
        let (_, rest) = path.split_first()?;
        let mut node = self.root;
        for name in rest {
            node = match name.as_str() {
                "@items" | "@values" => node.elem.as_deref()?,
                "@keys" => node.key.as_deref()?,
                field => &node.fields.get(field)?.ty,
            };
        }
        Some(Estimate { min: 0, max: node.max_elements })
    }
}

/// The sizes of actual values: the smallest and largest of the values at a path. A value the
/// estimator cannot size (a function's result) is taken to be at most as large as `self` and
/// `oldSelf` in JSON together, instead of unbounded: strings and lists computed from them are
/// no larger, bar repetition.
pub(crate) struct ValueSizes<'v> {
    pub root: &'v DeclType,
    pub this: &'v Value,
    pub old: Option<&'v Value>,
    pub unknown: Estimate,
}

#[derive(Clone, Copy)]
enum Item<'v> {
    Value(&'v Value),
    Key(&'v str),
}

impl Sizes for ValueSizes<'_> {
    fn size(&self, path: &[String]) -> Option<Estimate> {
        let (var, rest) = path.split_first()?;
        let start = if var == "oldSelf" { self.old.unwrap_or(self.this) } else { self.this };
        let mut node = self.root;
        let mut items = vec![Item::Value(start)];
        for name in rest {
            let mut next = Vec::new();
            match name.as_str() {
                "@items" => {
                    node = node.elem.as_deref()?;
                    for item in &items {
                        if let Item::Value(Value::Array(values)) = item {
                            next.extend(values.iter().map(Item::Value));
                        }
                    }
                }
                "@values" => {
                    node = node.elem.as_deref()?;
                    for item in &items {
                        if let Item::Value(Value::Object(map)) = item {
                            next.extend(map.values().map(Item::Value));
                        }
                    }
                }
                "@keys" => {
                    node = node.key.as_deref()?;
                    for item in &items {
                        if let Item::Value(Value::Object(map)) = item {
                            next.extend(map.keys().map(|k| Item::Key(k)));
                        }
                    }
                }
                field => {
                    let decl = node.fields.get(field)?;
                    node = &decl.ty;
                    for item in &items {
                        if let Item::Value(Value::Object(map)) = item
                            && let Some(v) = map.get(&decl.json_name).filter(|v| !v.is_null())
                        {
                            next.push(Item::Value(v));
                        }
                    }
                }
            }
            items = next;
        }
        let sizes = items.iter().map(|item| actual_size(node.kind, *item));
        let (min, max) = sizes.fold((u64::MAX, 0), |(lo, hi), s| (lo.min(s), hi.max(s)));
        Some(if min > max { Estimate::fixed(0) } else { Estimate { min, max } })
    }

    fn unknown(&self) -> Estimate {
        self.unknown
    }
}

/// `actualSize`: characters of strings, elements of lists and maps, 1 for anything else.
fn actual_size(kind: DeclKind, item: Item<'_>) -> u64 {
    match item {
        Item::Key(k) => k.chars().count() as u64,
        Item::Value(v) => match (kind, v) {
            (DeclKind::Duration | DeclKind::Timestamp, _) => 1,
            (DeclKind::Bytes, Value::String(s)) => (s.len() as u64).div_ceil(4) * 3,
            (_, Value::String(s)) => s.chars().count() as u64,
            (_, Value::Array(a)) => a.len() as u64,
            (_, Value::Object(o)) => o.len() as u64,
            _ => 1,
        },
    }
}

/// The estimated cost of `expr` with `self` (and `oldSelf`) of type `root`, sizes from `sizes`.
/// `optional_old_self` makes `oldSelf` an optional.
pub(crate) fn estimate(expr: &IdedExpr, root: &DeclType, sizes: &dyn Sizes, optional_old_self: bool) -> Estimate {
    let root_ty = Ty::of(root);
    let old_ty = if optional_old_self { Ty::Optional(Box::new(root_ty.clone())) } else { root_ty.clone() };
    let mut coster = Coster {
        sizes,
        root: root_ty,
        old_root: old_ty,
        paths: HashMap::new(),
        types: HashMap::new(),
        computed: HashMap::new(),
        entries: HashMap::new(),
        locals: HashMap::new(),
    };
    coster.cost(expr)
}

/// The cost of evaluating `expr` on actual values: [`estimate`] with their sizes, its maximum.
pub(crate) fn actual_cost(
    expr: &IdedExpr,
    root: &DeclType,
    this: &Value,
    old: Option<&Value>,
    optional_old_self: bool,
) -> u64 {
    let json_len = |v: &Value| serde_json::to_string(v).map_or(u64::MAX, |s| s.len() as u64);
    let unknown = Estimate { min: 0, max: json_len(this).saturating_add(old.map_or(0, json_len)) };
    estimate(expr, root, &ValueSizes { root, this, old, unknown }, optional_old_self).max
}

/// `maxCardinality`: how many times data of at least `min_size` bytes fits in a request.
pub(crate) fn max_cardinality(min_size: i64) -> u64 {
    let per = min_size.saturating_add(1).max(1);
    u64::try_from(crate::decl::MAX_REQUEST_SIZE_BYTES / per).unwrap_or(0)
}

/// `multiplyWithOverflowGuard`.
pub(crate) fn multiply_guarded(cost: u64, cardinality: u64) -> u64 {
    cost.saturating_mul(cardinality)
}

/// `getCostErrorMessage`.
pub(crate) fn cost_error_message(cost_name: &str, cost: u64, limit: u64) -> String {
    let factor = cost as f64 / limit as f64;
    let factor = if factor > 100.0 {
        "more than 100x".to_owned()
    } else if factor < 1.5 {
        format!("{factor:.6}x")
    } else {
        format!("{factor:.1}x")
    };
    format!(
        "{cost_name} exceeds budget by factor of {factor} (try simplifying the rule, or adding maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)"
    )
}

/// Types from the `k8s.io/apiserver/pkg/cel` libraries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ext {
    Url,
    Quantity,
    Ip,
    Cidr,
    Semver,
    Format,
}

/// The type of an expression, as the checker would give it.
#[derive(Clone, Debug, PartialEq)]
enum Ty<'d> {
    Bool,
    Int,
    Uint,
    Double,
    String,
    Bytes,
    Duration,
    Timestamp,
    Null,
    Type,
    Dyn,
    List(Box<Ty<'d>>),
    Map(Box<Ty<'d>>, Box<Ty<'d>>),
    Object(&'d DeclType),
    Optional(Box<Ty<'d>>),
    Ext(Ext),
}

impl<'d> Ty<'d> {
    fn of(decl: &'d DeclType) -> Self {
        match decl.kind {
            DeclKind::Bool => Self::Bool,
            DeclKind::Int => Self::Int,
            DeclKind::Double => Self::Double,
            DeclKind::String => Self::String,
            DeclKind::Bytes => Self::Bytes,
            DeclKind::Duration => Self::Duration,
            DeclKind::Timestamp => Self::Timestamp,
            DeclKind::Dyn => Self::Dyn,
            DeclKind::List => Self::List(Box::new(decl.elem.as_deref().map_or(Self::Dyn, Self::of))),
            DeclKind::Map => {
                Self::Map(Box::new(Self::String), Box::new(decl.elem.as_deref().map_or(Self::Dyn, Self::of)))
            }
            DeclKind::Object => Self::Object(decl),
        }
    }

    /// `isScalar`: a type whose size is 1.
    fn is_scalar(&self) -> bool {
        match self {
            Self::Bool | Self::Double | Self::Duration | Self::Int | Self::Timestamp | Self::Uint => true,
            Self::Optional(inner) => inner.is_scalar(),
            _ => false,
        }
    }

    /// Whether a select on a value of this type costs (maps and objects, `MapKind`/`StructKind`).
    fn select_costs(&self) -> bool {
        matches!(self, Self::Map(..) | Self::Object(_))
            || matches!(self, Self::Ext(e) if *e != Ext::Ip && *e != Ext::Cidr)
    }

    /// Whether a value of this type can be of type `other` (dyn can be anything).
    fn may_be(&self, other: &Ty<'d>) -> bool {
        matches!(self, Self::Dyn)
            || matches!(other, Ty::Dyn)
            || std::mem::discriminant(self) == std::mem::discriminant(other)
    }

    fn elem(&self) -> Ty<'d> {
        match self {
            Self::List(e) | Self::Map(_, e) | Self::Optional(e) => (**e).clone(),
            _ => Self::Dyn,
        }
    }

    fn is_numeric(&self) -> bool {
        matches!(self, Self::Int | Self::Uint | Self::Double | Self::Dyn)
    }
}

/// The more specific of two types (dyn, and lists of dyn, give way).
fn join<'d>(a: Ty<'d>, b: Ty<'d>) -> Ty<'d> {
    match (&a, &b) {
        (Ty::Dyn, _) => b,
        (Ty::List(x), Ty::List(_)) if **x == Ty::Dyn => b,
        _ => a,
    }
}

/// The overloads whose costs cel-go distinguishes; everything else costs 1 plus its arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Overload {
    Other,
    Equals,
    CompareString,
    CompareBytes,
    AddString,
    AddBytes,
    AddList,
    IndexList,
    IndexMap,
    InList,
    Matches,
    Contains,
    StartsOrEndsWith,
    StringToBytes,
    BytesToString,
    ExtFormatString,
    ExtQuoteString,
    LogicalAndOr,
    Conditional,
    SetsContainsOrIntersects,
    SetsEquivalent,
    CidrIp,
    ContainsIpString,
    ContainsCidrString,
}

/// `entrySizeEstimate`: the sizes of the keys (indexes) and values of a literal list or map.
#[derive(Clone, Copy, Debug)]
struct EntrySize {
    is_list: bool,
    key: Estimate,
    val: Estimate,
}

impl EntrySize {
    fn union(a: Option<Self>, b: Option<Self>) -> Option<Self> {
        let (a, b) = (a?, b?);
        Some(Self { is_list: a.is_list, key: a.key.union(b.key), val: a.val.union(b.val) })
    }
}

/// A variable in scope: an iteration variable or an accumulator.
#[derive(Clone)]
struct Local<'d> {
    path: Vec<String>,
    size: Option<Estimate>,
    entry: Option<EntrySize>,
    ty: Ty<'d>,
}

/// `AstNode`: what a function's estimate knows of an argument.
#[derive(Clone)]
struct Arg<'d> {
    path: Vec<String>,
    ty: Ty<'d>,
    computed: Option<Estimate>,
    int_literal: Option<i64>,
}

struct CallEstimate {
    cost: Estimate,
    result_size: Option<Estimate>,
}

impl CallEstimate {
    fn cost(cost: Estimate) -> Self {
        Self { cost, result_size: None }
    }
}

struct Coster<'s, 'd> {
    sizes: &'s dyn Sizes,
    root: Ty<'d>,
    old_root: Ty<'d>,
    paths: HashMap<u64, Vec<String>>,
    types: HashMap<u64, Ty<'d>>,
    computed: HashMap<u64, Estimate>,
    entries: HashMap<u64, EntrySize>,
    locals: HashMap<String, Vec<Local<'d>>>,
}

fn is_accumulator(name: &str) -> bool {
    name == "@result" || name == "__result__"
}

impl<'d> Coster<'_, 'd> {
    fn cost(&mut self, e: &IdedExpr) -> Estimate {
        match &e.expr {
            Expr::Literal(lit) => {
                let ty = match lit {
                    LiteralValue::Boolean(_) => Ty::Bool,
                    LiteralValue::Bytes(_) => Ty::Bytes,
                    LiteralValue::Double(_) => Ty::Double,
                    LiteralValue::Int(_) => Ty::Int,
                    LiteralValue::Null => Ty::Null,
                    LiteralValue::String(_) => Ty::String,
                    LiteralValue::UInt(_) => Ty::Uint,
                };
                self.types.insert(e.id, ty);
                Estimate::fixed(CONST_COST)
            }
            Expr::Ident(name) => self.cost_ident(e.id, name),
            Expr::Select(select) => {
                if select.test {
                    self.types.insert(e.id, Ty::Bool);
                    return Estimate::fixed(PRESENCE_TEST_COST).add(self.cost(&select.operand));
                }
                let mut sum = self.cost(&select.operand);
                let operand_ty = self.ty(select.operand.id);
                if operand_ty.select_costs() {
                    sum = sum.add(Estimate::fixed(SELECT_AND_IDENT_COST));
                }
                let field_ty = match &operand_ty {
                    Ty::Object(decl) => decl.fields.get(&select.field).map_or(Ty::Dyn, |f| Ty::of(&f.ty)),
                    Ty::Map(_, v) => (**v).clone(),
                    _ => Ty::Dyn,
                };
                self.types.insert(e.id, field_ty);
                let mut path = self.path(&select.operand);
                path.push(select.field.clone());
                self.paths.insert(e.id, path);
                sum
            }
            Expr::Call(call) => self.cost_call(e, call),
            Expr::List(list) => {
                let mut sum = Estimate::fixed(0);
                let mut item = Estimate { min: u64::MAX, max: 0 };
                if list.elements.is_empty() {
                    item.min = 0;
                }
                let mut elem_ty = Ty::Dyn;
                for element in &list.elements {
                    sum = sum.add(self.cost(element));
                    item = item.union(self.size_or_unknown(element));
                    elem_ty = join(elem_ty, self.ty(element.id));
                }
                self.entries.insert(e.id, EntrySize { is_list: true, key: Estimate::fixed(1), val: item });
                self.types.insert(e.id, Ty::List(Box::new(elem_ty)));
                sum.add(Estimate::fixed(LIST_CREATE_BASE_COST))
            }
            Expr::Map(map) => {
                let mut sum = Estimate::fixed(0);
                let mut key = Estimate { min: u64::MAX, max: 0 };
                let mut val = Estimate { min: u64::MAX, max: 0 };
                if map.entries.is_empty() {
                    key.min = 0;
                    val.min = 0;
                }
                let (mut key_ty, mut val_ty) = (Ty::Dyn, Ty::Dyn);
                for entry in &map.entries {
                    if let EntryExpr::MapEntry(entry) = &entry.expr {
                        sum = sum.add(self.cost(&entry.key)).add(self.cost(&entry.value));
                        key = key.union(self.size_or_unknown(&entry.key));
                        val = val.union(self.size_or_unknown(&entry.value));
                        key_ty = join(key_ty, self.ty(entry.key.id));
                        val_ty = join(val_ty, self.ty(entry.value.id));
                    }
                }
                self.entries.insert(e.id, EntrySize { is_list: false, key, val });
                self.types.insert(e.id, Ty::Map(Box::new(key_ty), Box::new(val_ty)));
                sum.add(Estimate::fixed(MAP_CREATE_BASE_COST))
            }
            Expr::Struct(st) => {
                let mut sum = Estimate::fixed(0);
                for entry in &st.entries {
                    if let EntryExpr::StructField(field) = &entry.expr {
                        sum = sum.add(self.cost(&field.value));
                    }
                }
                self.types.insert(e.id, Ty::Dyn);
                sum.add(Estimate::fixed(STRUCT_CREATE_BASE_COST))
            }
            Expr::Comprehension(comp) => {
                if is_bind(comp) {
                    self.cost_bind(e.id, comp)
                } else {
                    self.cost_comprehension(e.id, comp)
                }
            }
            Expr::Unspecified => Estimate::fixed(0),
        }
    }

    fn ty(&self, id: u64) -> Ty<'d> {
        self.types.get(&id).cloned().unwrap_or(Ty::Dyn)
    }

    fn cost_ident(&mut self, id: u64, name: &str) -> Estimate {
        if let Some(local) = self.locals.get(name).and_then(|s| s.last()) {
            self.paths.insert(id, local.path.clone());
            self.types.insert(id, local.ty.clone());
        } else {
            self.paths.insert(id, vec![name.to_owned()]);
            let ty = match name {
                "self" => self.root.clone(),
                "oldSelf" => self.old_root.clone(),
                _ => Ty::Dyn,
            };
            self.types.insert(id, ty);
        }
        Estimate::fixed(SELECT_AND_IDENT_COST)
    }

    /// `getPath`.
    fn path(&self, e: &IdedExpr) -> Vec<String> {
        if let Expr::Ident(name) = &e.expr
            && let Some(local) = self.locals.get(name).and_then(|s| s.last())
        {
            return local.path.clone();
        }
        self.paths.get(&e.id).cloned().unwrap_or_default()
    }

    /// `computeSize`.
    fn size(&mut self, e: &IdedExpr) -> Option<Estimate> {
        if let Some(size) = self.computed.get(&e.id) {
            return Some(*size);
        }
        if let Some(size) = expr_size(e) {
            return Some(size);
        }
        let path = self.path(e);
        if !path.is_empty()
            && let Some(size) = self.sizes.size(&path)
        {
            self.computed.insert(e.id, size);
            return Some(size);
        }
        if self.ty(e.id).is_scalar() {
            return Some(Estimate::fixed(1));
        }
        if let Expr::Ident(name) = &e.expr
            && let Some(local) = self.locals.get(name).and_then(|s| s.last())
        {
            return local.size;
        }
        None
    }

    fn size_or_unknown(&mut self, e: &IdedExpr) -> Estimate {
        self.size(e).unwrap_or_else(|| self.sizes.unknown())
    }

    /// `computeEntrySize`.
    fn entry(&self, e: &IdedExpr) -> Option<EntrySize> {
        if let Some(entry) = self.entries.get(&e.id) {
            return Some(*entry);
        }
        if let Expr::Ident(name) = &e.expr {
            return self.locals.get(name).and_then(|s| s.last()).and_then(|l| l.entry);
        }
        None
    }

    /// `newAstNode`.
    fn arg(&mut self, e: &IdedExpr) -> Arg<'d> {
        let mut path = self.path(e);
        if path.first().is_some_and(|p| is_accumulator(p)) {
            path.clear();
        }
        let int_literal = match &e.expr {
            Expr::Literal(LiteralValue::Int(i)) => Some(*i.inner()),
            _ => None,
        };
        Arg { path, ty: self.ty(e.id), computed: self.size(e), int_literal }
    }

    fn push_local(&mut self, name: &str, local: Local<'d>) {
        self.locals.entry(name.to_owned()).or_default().push(local);
    }

    fn pop_local(&mut self, name: &str) {
        if let Some(stack) = self.locals.get_mut(name) {
            stack.pop();
        }
    }

    fn cost_comprehension(&mut self, id: u64, comp: &ComprehensionExpr) -> Estimate {
        let mut sum = self.cost(&comp.iter_range);
        sum = sum.add(self.cost(&comp.accu_init));
        let accu = Local {
            path: self.path(&comp.accu_init),
            size: self.size(&comp.accu_init),
            entry: self.entry(&comp.accu_init),
            ty: self.ty(comp.accu_init.id),
        };
        self.push_local(&comp.accu_var, accu);

        let range_entry = self.entry(&comp.iter_range);
        let range_ty = self.ty(comp.iter_range.id);
        let is_list = range_entry.map_or(matches!(range_ty, Ty::List(_)), |e| e.is_list);
        let mut path = self.path(&comp.iter_range);
        let (size, elem_ty) = if is_list {
            path.push("@items".to_owned());
            (range_entry.map(|e| e.val), range_ty.elem())
        } else {
            path.push("@keys".to_owned());
            let key_ty = match &range_ty {
                Ty::Map(k, _) => (**k).clone(),
                _ => Ty::Dyn,
            };
            (range_entry.map(|e| e.key), key_ty)
        };
        self.push_local(&comp.iter_var, Local { path, size, entry: None, ty: elem_ty });

        let loop_cost = self.cost(&comp.loop_cond);
        let step_cost = self.cost(&comp.loop_step);
        self.pop_local(&comp.iter_var);

        // The accumulator has the type the step gives it (a filter's `[]` becomes a list of the
        // range's elements).
        let step_ty = self.ty(comp.loop_step.id);
        if let Some(local) = self.locals.get_mut(&comp.accu_var).and_then(|s| s.last_mut()) {
            local.ty = join(local.ty.clone(), step_ty);
        }
        sum = sum.add(self.cost(&comp.result));
        let result_ty = self.ty(comp.result.id);
        self.pop_local(&comp.accu_var);
        self.types.insert(id, result_ty);

        let range_count = self.size_or_unknown(&comp.iter_range);
        sum = sum.add(range_count.multiply(step_cost.add(loop_cost)));

        match &comp.accu_init.expr {
            Expr::Literal(_) => {
                if let Some(size) = self.size(&comp.accu_init) {
                    self.computed.insert(id, size);
                }
            }
            Expr::List(_) | Expr::Map(_) => {
                self.computed.insert(id, range_count);
                if let Some(entry) = self.entry(&comp.loop_step) {
                    self.entries.insert(id, entry);
                }
            }
            _ => {}
        }
        sum
    }

    fn cost_bind(&mut self, id: u64, comp: &ComprehensionExpr) -> Estimate {
        let mut sum = self.cost(&comp.iter_range);
        sum = sum.add(self.cost(&comp.accu_init));
        let local = Local {
            path: self.path(&comp.accu_init),
            size: self.size(&comp.accu_init),
            entry: self.entry(&comp.accu_init),
            ty: self.ty(comp.accu_init.id),
        };
        self.push_local(&comp.accu_var, local);
        sum = sum.add(self.cost(&comp.result));
        self.pop_local(&comp.accu_var);
        let ty = self.ty(comp.result.id);
        self.types.insert(id, ty);
        if let Some(size) = self.size(&comp.result) {
            self.computed.insert(id, size);
        }
        if let Some(entry) = self.entry(&comp.result) {
            self.entries.insert(id, entry);
        }
        sum
    }

    fn cost_call(&mut self, e: &IdedExpr, call: &CallExpr) -> Estimate {
        if call.func_name == "dyn" && call.target.is_none() && call.args.len() == 1 {
            let arg = &call.args[0];
            let cost = self.cost(arg);
            if let Some(size) = self.size(arg) {
                self.computed.insert(e.id, size);
            }
            if let Some(entry) = self.entry(arg) {
                self.entries.insert(e.id, entry);
            }
            self.types.insert(e.id, Ty::Dyn);
            return Estimate::fixed(1).add(cost);
        }
        let mut arg_costs = Vec::with_capacity(call.args.len());
        let mut args = Vec::with_capacity(call.args.len());
        for arg in &call.args {
            arg_costs.push(self.cost(arg));
            args.push(self.arg(arg));
        }
        let mut sum = Estimate::fixed(0);
        let target = match &call.target {
            Some(t) => {
                sum = sum.add(self.cost(t));
                Some(self.arg(t))
            }
            None => None,
        };
        let (overloads, result_ty) = resolve(&call.func_name, target.as_ref().map(|t| &t.ty), &args);
        self.types.insert(e.id, result_ty);
        let mut fn_cost = Estimate { min: u64::MAX, max: 0 };
        let mut result_size: Option<Estimate> = None;
        for overload in overloads {
            let estimate = self.function_cost(e, call, overload, target.as_ref(), &args, &arg_costs);
            fn_cost = fn_cost.union(estimate.cost);
            if let Some(size) = estimate.result_size {
                result_size = Some(result_size.map_or(size, |r| r.union(size)));
            }
            match overload {
                Overload::IndexList | Overload::IndexMap if !call.args.is_empty() => {
                    result_size = self.entry(&call.args[0]).map(|entry| entry.val);
                    let mut path = self.path(&call.args[0]);
                    path.push(if overload == Overload::IndexList { "@items" } else { "@values" }.to_owned());
                    self.paths.insert(e.id, path);
                }
                _ => {}
            }
            if result_size.is_none() {
                result_size = self.size(e);
            }
        }
        if let Some(size) = result_size {
            self.computed.insert(e.id, size);
        }
        sum.add(fn_cost)
    }

    /// `sizeEstimate` of Kubernetes' estimator: the computed size, else the schema's.
    fn k8s_size(&self, arg: &Arg<'_>) -> Estimate {
        if let Some(size) = arg.computed {
            return size;
        }
        if !arg.path.is_empty()
            && let Some(size) = self.sizes.size(&arg.path)
        {
            return size;
        }
        self.sizes.unknown()
    }

    /// `listElementNode`: the items of a list, for their size.
    fn list_element(&self, list: &Arg<'d>) -> Option<Arg<'d>> {
        let Ty::List(elem) = &list.ty else { return None };
        let path = if list.path.is_empty() {
            Vec::new()
        } else {
            let mut p = list.path.clone();
            p.push("@items".to_owned());
            p
        };
        Some(Arg { path, ty: (**elem).clone(), computed: None, int_literal: None })
    }

    /// Kubernetes' `EstimateCallCost`, by function name.
    fn k8s_call_cost(
        &self,
        function: &str,
        overload: Overload,
        target: Option<&Arg<'d>>,
        args: &[Arg<'d>],
    ) -> Option<CallEstimate> {
        let traversal = |size: Estimate| size.factor(STRING_TRAVERSAL_COST_FACTOR);
        match function {
            "check" => Some(CallEstimate::cost(Estimate::fixed(350_000))),
            "serviceAccount" | "path" | "group" | "resource" | "subresource" | "namespace" | "name" | "allowed"
            | "reason" | "error" | "errored" => Some(CallEstimate::cost(Estimate::fixed(1))),
            "fieldSelector" | "labelSelector" if args.len() == 1 => {
                let length = self.k8s_size(&args[0]);
                let parse = traversal(length);
                let requirements = length.factor(0.5).factor((LIST_CREATE_BASE_COST + STRUCT_CREATE_BASE_COST) as f64);
                Some(CallEstimate::cost(Estimate::fixed(LIST_CREATE_BASE_COST).add(parse).add(requirements)))
            }
            "isSorted" | "sum" | "max" | "min" | "indexOf" | "lastIndexOf" => {
                let target = target?;
                match self.list_element(target) {
                    Some(elem) => {
                        let mut el_cost = Estimate::fixed(1);
                        if matches!(elem.ty, Ty::String | Ty::Bytes) {
                            el_cost = el_cost.add(traversal(self.k8s_size(&elem)));
                        }
                        Some(CallEstimate::cost(self.k8s_size(target).multiply(el_cost)))
                    }
                    None => Some(CallEstimate::cost(traversal(self.k8s_size(target)))),
                }
            }
            "url" | "jsonpatch.escapeKey" if args.len() == 1 => {
                let size = self.k8s_size(&args[0]);
                Some(CallEstimate { cost: traversal(size), result_size: Some(size) })
            }
            "lowerAscii" | "upperAscii" | "substring" | "trim" => {
                let size = self.k8s_size(target?);
                Some(CallEstimate { cost: traversal(size), result_size: Some(size) })
            }
            "replace" if target.is_some() && args.len() >= 2 => {
                let size = self.k8s_size(target?);
                let to_replace = self.k8s_size(&args[0]);
                let with = self.k8s_size(&args[1]);
                let mut count = Estimate::fixed(0);
                let mut retained = Estimate::fixed(0);
                if to_replace.min == 0 {
                    count.max = if size.max < u64::MAX { size.max + 1 } else { size.max };
                    retained.max = size.max;
                } else if with.max <= to_replace.min {
                    retained.max = size.max;
                } else {
                    count.max = (size.max as f64 / to_replace.min as f64).ceil() as u64;
                }
                if to_replace.max == 0 {
                    count.min = if size.min < u64::MAX { size.min + 1 } else { size.min };
                    retained.min = size.min;
                } else if to_replace.max <= with.min {
                    retained.min = size.min;
                } else {
                    count.min = (size.min as f64 / to_replace.max as f64).ceil() as u64;
                }
                let result = count.multiply(with).add(retained);
                Some(CallEstimate { cost: size.factor(2.0 * STRING_TRAVERSAL_COST_FACTOR), result_size: Some(result) })
            }
            "split" => {
                let size = self.k8s_size(target?);
                let mut max = size.max;
                if let Some(limit) = args.get(1).and_then(|a| a.int_literal) {
                    max = limit as u64;
                }
                Some(CallEstimate {
                    cost: size.factor(2.0 * STRING_TRAVERSAL_COST_FACTOR),
                    result_size: Some(Estimate { min: 0, max }),
                })
            }
            "join" => {
                let target = target?;
                let list = self.k8s_size(target);
                let mut size = Estimate::fixed(0);
                if let Some(elem) = self.list_element(target) {
                    size = list.multiply(self.k8s_size(&elem));
                }
                if let Some(sep) = args.first() {
                    let separators = Estimate { min: list.min.saturating_sub(1), max: list.max.saturating_sub(1) };
                    size = size.add(self.k8s_size(sep).multiply(separators));
                }
                Some(CallEstimate { cost: traversal(size), result_size: Some(size) })
            }
            "find" | "findAll" if target.is_some() && !args.is_empty() => {
                let size = self.k8s_size(target?);
                let str_cost = traversal(size.add(Estimate::fixed(1)));
                let regex_cost = self.k8s_size(&args[0]).factor(REGEX_STRING_LENGTH_COST_FACTOR);
                Some(CallEstimate {
                    cost: str_cost.multiply(regex_cost),
                    result_size: Some(Estimate { min: 0, max: size.max }),
                })
            }
            "cidr" | "isIP" | "isCIDR" | "quantity" | "isQuantity" | "semver" | "isSemver" if !args.is_empty() => {
                Some(CallEstimate::cost(traversal(self.k8s_size(&args[0]))))
            }
            "ip" => {
                if overload == Overload::CidrIp {
                    return Some(CallEstimate::cost(Estimate::fixed(1)));
                }
                Some(CallEstimate::cost(traversal(self.k8s_size(args.first()?))))
            }
            "ip.isCanonical" if !args.is_empty() => {
                Some(CallEstimate::cost(self.k8s_size(&args[0]).factor(2.0 * STRING_TRAVERSAL_COST_FACTOR)))
            }
            "masked"
            | "prefixLength"
            | "family"
            | "isUnspecified"
            | "isLoopback"
            | "isLinkLocalMulticast"
            | "isLinkLocalUnicast"
            | "isGlobalUnicast"
            | "format.named"
            | "sign"
            | "asInteger"
            | "isInteger"
            | "asApproximateFloat"
            | "isGreaterThan"
            | "isLessThan"
            | "compareTo"
            | "add"
            | "sub"
            | "major"
            | "minor"
            | "patch"
            | "getScheme"
            | "getHostname"
            | "getHost"
            | "getPort"
            | "getEscapedPath"
            | "getQuery" => Some(CallEstimate::cost(Estimate::fixed(1))),
            "containsIP" | "containsCIDR" if !args.is_empty() => {
                let bytes = Estimate { min: 4, max: 16 };
                let mut cost = traversal(bytes.add(bytes));
                if function == "containsCIDR" {
                    cost = cost.add(traversal(bytes)).add(Estimate::fixed(1));
                }
                if matches!(overload, Overload::ContainsIpString | Overload::ContainsCidrString) {
                    cost = cost.add(traversal(self.k8s_size(&args[0])));
                }
                Some(CallEstimate::cost(cost))
            }
            "validate" if !args.is_empty() => Some(CallEstimate::cost(
                traversal(self.k8s_size(&args[0])).factor(MAX_NAME_FORMAT_REGEX_SIZE * REGEX_STRING_LENGTH_COST_FACTOR),
            )),
            "_==_" if args.len() == 2 && args[0].ty == args[1].ty => match args[0].ty {
                Ty::Ext(Ext::Ip | Ext::Cidr | Ext::Quantity | Ext::Semver) => {
                    Some(CallEstimate::cost(Estimate::fixed(1)))
                }
                Ty::Ext(Ext::Format) => Some(CallEstimate::cost(traversal(Estimate { min: 1, max: MAX_FORMAT_SIZE }))),
                Ty::Ext(Ext::Url) => {
                    // As Kubernetes does, the right-hand side's size for both sides.
                    let size = args[1].computed.unwrap_or(Estimate::fixed(1));
                    Some(CallEstimate::cost(traversal(Estimate { min: 1, max: size.max })))
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// `functionCost`.
    fn function_cost(
        &mut self,
        e: &IdedExpr,
        call: &CallExpr,
        overload: Overload,
        target: Option<&Arg<'d>>,
        args: &[Arg<'d>],
        arg_costs: &[Estimate],
    ) -> CallEstimate {
        let arg_sum = arg_costs.iter().fold(Estimate::fixed(0), |s, c| s.add(*c));
        let unknown = self.sizes.unknown();
        let size = |a: &Arg<'_>| a.computed.unwrap_or(unknown);
        let traversal = |size: Estimate| size.factor(STRING_TRAVERSAL_COST_FACTOR);
        // ext.Sets' own estimators come first (`OverloadCostEstimate`).
        if matches!(overload, Overload::SetsContainsOrIntersects | Overload::SetsEquivalent) && args.len() == 2 {
            let factor = if overload == Overload::SetsEquivalent { 2.0 } else { 1.0 };
            let cost = self.k8s_size(&args[0]).multiply(self.k8s_size(&args[1])).factor(factor).add(Estimate::fixed(1));
            return CallEstimate::cost(cost.add(arg_sum));
        }
        if let Some(estimate) = self.k8s_call_cost(&call.func_name, overload, target, args) {
            return CallEstimate { cost: estimate.cost.add(arg_sum), result_size: estimate.result_size };
        }
        match overload {
            Overload::ExtFormatString => {
                if let Some(target) = target {
                    return CallEstimate::cost(traversal(size(target)).add(arg_sum));
                }
            }
            Overload::StringToBytes if args.len() == 1 => {
                let sz = size(&args[0]);
                return CallEstimate {
                    cost: traversal(sz).add(arg_sum),
                    result_size: Some(Estimate { min: sz.min, max: sz.max.wrapping_mul(4) }),
                };
            }
            Overload::BytesToString if args.len() == 1 => {
                let sz = size(&args[0]);
                return CallEstimate {
                    cost: traversal(sz).add(arg_sum),
                    result_size: Some(Estimate { min: sz.min / 4, max: sz.max }),
                };
            }
            Overload::ExtQuoteString if args.len() == 1 => {
                let sz = size(&args[0]);
                return CallEstimate {
                    cost: traversal(sz).add(arg_sum),
                    result_size: Some(Estimate {
                        min: sz.min.wrapping_add(2),
                        max: sz.max.wrapping_mul(2).wrapping_add(2),
                    }),
                };
            }
            Overload::StartsOrEndsWith if args.len() == 1 => {
                return CallEstimate::cost(traversal(size(&args[0])).add(arg_sum));
            }
            Overload::InList if args.len() == 2 => {
                return CallEstimate::cost(size(&args[1]).factor(1.0).add(arg_sum));
            }
            Overload::Matches if args.len() == 1 => {
                if let Some(target) = target {
                    let str_cost = traversal(size(target).add(Estimate::fixed(1)));
                    let regex_cost = size(&args[0]).factor(REGEX_STRING_LENGTH_COST_FACTOR);
                    return CallEstimate::cost(str_cost.multiply(regex_cost).add(arg_sum));
                }
            }
            Overload::Contains if args.len() == 1 => {
                if let Some(target) = target {
                    let str_cost = traversal(size(target));
                    let substr_cost = traversal(size(&args[0]));
                    return CallEstimate::cost(str_cost.multiply(substr_cost).add(arg_sum));
                }
            }
            Overload::LogicalAndOr if arg_costs.len() == 2 => {
                let (lhs, rhs) = (arg_costs[0], arg_costs[1]);
                return CallEstimate::cost(Estimate { min: lhs.min, max: lhs.add(rhs).max });
            }
            Overload::Conditional if args.len() == 3 => {
                let result = size(&args[1]).union(size(&args[2]));
                if let Some(entry) = EntrySize::union(self.entry(&call.args[1]), self.entry(&call.args[2])) {
                    self.entries.insert(e.id, entry);
                }
                let cost = arg_costs[0].add(arg_costs[1].union(arg_costs[2]));
                return CallEstimate { cost, result_size: Some(result) };
            }
            Overload::AddString | Overload::AddBytes | Overload::AddList if args.len() == 2 => {
                let result = size(&args[0]).add(size(&args[1]));
                if let Some(entry) = EntrySize::union(self.entry(&call.args[0]), self.entry(&call.args[1])) {
                    self.entries.insert(e.id, entry);
                }
                let cost = if overload == Overload::AddList { Estimate::fixed(1) } else { traversal(result) };
                return CallEstimate { cost: cost.add(arg_sum), result_size: Some(result) };
            }
            Overload::CompareString | Overload::CompareBytes | Overload::Equals if args.len() == 2 => {
                let smallest_max = size(&args[0]).max.min(size(&args[1]).max);
                let min = u64::from(smallest_max > 0);
                return CallEstimate::cost(traversal(Estimate { min, max: smallest_max }).add(arg_sum));
            }
            _ => {}
        }
        CallEstimate::cost(Estimate::fixed(1).add(arg_sum))
    }
}

/// `isBind`: `cel.bind(x, init, result)`, a comprehension over nothing.
fn is_bind(comp: &ComprehensionExpr) -> bool {
    matches!(&comp.iter_range.expr, Expr::List(l) if l.elements.is_empty())
        && matches!(&comp.loop_cond.expr, Expr::Literal(LiteralValue::Boolean(b)) if !*b.inner())
        && !is_accumulator(&comp.accu_var)
}

/// `computeExprSize`: the size of a literal.
fn expr_size(e: &IdedExpr) -> Option<Estimate> {
    let n = match &e.expr {
        Expr::Literal(LiteralValue::String(s)) => s.inner().chars().count() as u64,
        Expr::Literal(LiteralValue::Bytes(b)) => b.inner().len() as u64,
        Expr::Literal(_) => 1,
        Expr::List(l) => l.elements.len() as u64,
        Expr::Map(m) => m.entries.len() as u64,
        _ => return None,
    };
    Some(Estimate::fixed(n))
}

/// The overloads a call resolves to (every one an argument of type dyn may select) and its
/// result type.
fn resolve<'d>(function: &str, target: Option<&Ty<'d>>, args: &[Arg<'d>]) -> (Vec<Overload>, Ty<'d>) {
    use Overload as O;
    let arg = |i: usize| args.get(i).map_or(Ty::Dyn, |a| a.ty.clone());
    let one = |o: Overload, ty: Ty<'d>| (vec![o], ty);
    match (function, target) {
        ("_==_" | "_!=_", None) => one(O::Equals, Ty::Bool),
        ("_<_" | "_<=_" | "_>_" | "_>=_", None) => {
            let (l, r) = (arg(0), arg(1));
            let mut overloads = Vec::new();
            if l.may_be(&Ty::String) && r.may_be(&Ty::String) {
                overloads.push(O::CompareString);
            }
            if l.may_be(&Ty::Bytes) && r.may_be(&Ty::Bytes) {
                overloads.push(O::CompareBytes);
            }
            if overloads.is_empty() || matches!(l, Ty::Dyn) || matches!(r, Ty::Dyn) {
                overloads.push(O::Other);
            }
            (overloads, Ty::Bool)
        }
        ("_&&_" | "_||_", None) => one(O::LogicalAndOr, Ty::Bool),
        ("_?_:_", None) => one(O::Conditional, join(arg(1), arg(2))),
        ("_+_", None) => {
            let (l, r) = (arg(0), arg(1));
            let mut overloads = Vec::new();
            let mut ty = Ty::Dyn;
            if l.may_be(&Ty::String) && r.may_be(&Ty::String) {
                overloads.push(O::AddString);
                ty = Ty::String;
            }
            if l.may_be(&Ty::Bytes) && r.may_be(&Ty::Bytes) {
                overloads.push(O::AddBytes);
                ty = Ty::Bytes;
            }
            if matches!(l, Ty::List(_) | Ty::Dyn) && matches!(r, Ty::List(_) | Ty::Dyn) {
                overloads.push(O::AddList);
                ty = join(l.clone(), r.clone());
            }
            let numeric_or_time = |t: &Ty<'_>| t.is_numeric() || matches!(t, Ty::Duration | Ty::Timestamp);
            if numeric_or_time(&l) && numeric_or_time(&r) {
                overloads.push(O::Other);
                ty = match (&l, &r) {
                    (Ty::Timestamp, _) | (_, Ty::Timestamp) => Ty::Timestamp,
                    (Ty::Dyn, other) => other.clone(),
                    (other, _) => other.clone(),
                };
            }
            if overloads.len() > 1 {
                ty = Ty::Dyn;
            }
            if overloads.is_empty() {
                overloads.push(O::Other);
            }
            (overloads, ty)
        }
        ("_-_", None) => {
            let ty = match (arg(0), arg(1)) {
                (Ty::Timestamp, Ty::Timestamp) => Ty::Duration,
                (Ty::Dyn, other) => other,
                (other, _) => other,
            };
            one(O::Other, ty)
        }
        ("_*_" | "_/_" | "_%_" | "-_", None) => {
            one(O::Other, join(arg(0), args.get(1).map_or(Ty::Dyn, |a| a.ty.clone())))
        }
        ("!_" | "@not_strictly_false", None) => one(O::Other, Ty::Bool),
        ("_[_]", None) => match arg(0) {
            Ty::List(e) => one(O::IndexList, *e),
            Ty::Map(_, v) => one(O::IndexMap, *v),
            Ty::Dyn => (vec![O::IndexList, O::IndexMap], Ty::Dyn),
            _ => one(O::Other, Ty::Dyn),
        },
        ("_[?_]", None) => one(O::Other, Ty::Optional(Box::new(arg(0).elem()))),
        ("_?._", None) => {
            let ty = match arg(0) {
                Ty::Map(_, v) => *v,
                _ => Ty::Dyn,
            };
            one(O::Other, Ty::Optional(Box::new(ty)))
        }
        ("@in", None) => match arg(1) {
            Ty::List(_) => one(O::InList, Ty::Bool),
            Ty::Map(..) => one(O::Other, Ty::Bool),
            _ => (vec![O::InList, O::Other], Ty::Bool),
        },
        ("size", _) => one(O::Other, Ty::Int),
        ("matches", Some(_)) => one(O::Matches, Ty::Bool),
        ("contains", Some(_)) => one(O::Contains, Ty::Bool),
        ("startsWith" | "endsWith", Some(_)) => one(O::StartsOrEndsWith, Ty::Bool),
        ("string", None) => match arg(0) {
            Ty::Bytes => one(O::BytesToString, Ty::String),
            Ty::Dyn => (vec![O::BytesToString, O::Other], Ty::String),
            _ => one(O::Other, Ty::String),
        },
        ("bytes", None) => match arg(0) {
            Ty::String => one(O::StringToBytes, Ty::Bytes),
            Ty::Dyn => (vec![O::StringToBytes, O::Other], Ty::Bytes),
            _ => one(O::Other, Ty::Bytes),
        },
        ("format", Some(_)) => one(O::ExtFormatString, Ty::String),
        ("strings.quote", None) => one(O::ExtQuoteString, Ty::String),
        ("int", None) => one(O::Other, Ty::Int),
        ("uint", None) => one(O::Other, Ty::Uint),
        ("double", None) => one(O::Other, Ty::Double),
        ("bool", None) => one(O::Other, Ty::Bool),
        ("duration", None) => one(O::Other, Ty::Duration),
        ("timestamp", None) => one(O::Other, Ty::Timestamp),
        ("type", None) => one(O::Other, Ty::Type),
        ("sets.contains" | "sets.intersects", None) => one(O::SetsContainsOrIntersects, Ty::Bool),
        ("sets.equivalent", None) => one(O::SetsEquivalent, Ty::Bool),
        ("ip", Some(Ty::Ext(Ext::Cidr))) => one(O::CidrIp, Ty::Ext(Ext::Ip)),
        ("ip", _) => one(O::Other, Ty::Ext(Ext::Ip)),
        ("cidr", _) | ("masked", _) => one(O::Other, Ty::Ext(Ext::Cidr)),
        ("containsIP", _) => one(if arg(0) == Ty::String { O::ContainsIpString } else { O::Other }, Ty::Bool),
        ("containsCIDR", _) => one(if arg(0) == Ty::String { O::ContainsCidrString } else { O::Other }, Ty::Bool),
        ("url", _) => one(O::Other, Ty::Ext(Ext::Url)),
        ("quantity", _) | ("add" | "sub", Some(Ty::Ext(Ext::Quantity))) => one(O::Other, Ty::Ext(Ext::Quantity)),
        ("semver", _) => one(O::Other, Ty::Ext(Ext::Semver)),
        ("format.named", _) => one(O::Other, Ty::Optional(Box::new(Ty::Ext(Ext::Format)))),
        (
            "charAt" | "lowerAscii" | "upperAscii" | "replace" | "substring" | "trim" | "join" | "find" | "reverse"
            | "getScheme" | "getHostname" | "getHost" | "getPort" | "getEscapedPath",
            Some(_),
        ) => one(O::Other, Ty::String),
        ("split" | "findAll", Some(_)) => one(O::Other, Ty::List(Box::new(Ty::String))),
        (
            "indexOf" | "lastIndexOf" | "sign" | "asInteger" | "compareTo" | "major" | "minor" | "patch" | "family"
            | "prefixLength" | "getFullYear" | "getMonth" | "getDayOfYear" | "getDayOfMonth" | "getDate"
            | "getDayOfWeek" | "getHours" | "getMinutes" | "getSeconds" | "getMilliseconds",
            _,
        ) => one(O::Other, Ty::Int),
        ("asApproximateFloat", _) => one(O::Other, Ty::Double),
        ("min" | "max" | "sum", Some(t)) => one(O::Other, t.elem()),
        ("value" | "orValue" | "or", Some(t)) => one(O::Other, t.elem()),
        ("optional.of" | "optional.ofNonZeroValue", None) => one(O::Other, Ty::Optional(Box::new(arg(0)))),
        _ if function.starts_with("is") || function == "hasValue" => one(O::Other, Ty::Bool),
        _ => one(O::Other, Ty::Dyn),
    }
}

/// The estimated cost of one CEL expression of a schema (a rule, or a rule's
/// `messageExpression`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpressionCost {
    /// Schema path of the expression, as the API server reports it:
    /// `openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule`.
    pub path: String,
    /// The expression.
    pub expression: String,
    /// The most one evaluation may cost.
    pub cost: u64,
    /// The most times it may be evaluated for one object: the product of the `maxItems` and
    /// `maxProperties` of the lists and maps above it, or, when one is unbounded, how many of the
    /// smallest value fit in a request. 1 for a `messageExpression`, as the API server counts it.
    pub cardinality: u64,
    /// `cost × cardinality`: what the per-expression limit and the total apply to.
    pub total: u64,
}

/// The estimated costs of the CEL expressions of a schema.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CostReport {
    /// Every expression, children before their parents (the API server's order).
    pub expressions: Vec<ExpressionCost>,
    /// The sum of their totals, saturating.
    pub total: u64,
}

/// The costs of the rules of `root` (compiled at `path`).
pub(crate) fn report(root: &crate::node::Node, path: &str) -> CostReport {
    let mut report = CostReport::default();
    walk(root, path, Some(1), &mut report);
    report.total = report.expressions.iter().fold(0u64, |sum, e| sum.saturating_add(e.total));
    report
}

/// `extractMaxElements`: how many of its children a node may hold (`None`: unbounded).
fn max_elements(node: &crate::node::Node) -> Option<u64> {
    let bound = |m: Option<i64>| m.map(|m| u64::try_from(m).unwrap_or(0));
    match node.ty.as_str() {
        "object" if node.additional_properties.is_some() => bound(node.max_properties),
        "array" => bound(node.max_items),
        _ => Some(1),
    }
}

fn walk(node: &crate::node::Node, path: &str, cardinality: Option<u64>, report: &mut CostReport) {
    use crate::path::{child, index, key};
    let children = cardinality.and_then(|c| max_elements(node).map(|m| multiply_guarded(c, m)));
    if let Some(crate::node::Additional::Schema(values)) = &node.additional_properties {
        walk(values, &child(path, "additionalProperties"), children, report);
    }
    for (name, prop) in &node.properties {
        walk(prop, &key(&child(path, "properties"), name), children, report);
    }
    if let Some(items) = &node.items {
        walk(items, &child(path, "items"), children, report);
    }
    let Some(decl) = &node.decl else { return };
    let sizes = SchemaSizes { root: decl };
    let base = child(path, "x-kubernetes-validations");
    for (i, rule) in node.rules.iter().enumerate() {
        let rule_path = index(&base, i);
        if let Some(program) = &rule.program {
            let cost = estimate(program.expression(), decl, &sizes, rule.optional_old_self).max;
            let cardinality = cardinality.unwrap_or_else(|| max_cardinality(decl.min_serialized_size));
            report.expressions.push(ExpressionCost {
                path: child(&rule_path, "rule"),
                expression: rule.rule.clone(),
                cost,
                cardinality,
                total: multiply_guarded(cost, cardinality),
            });
        }
        if let Some(program) = &rule.message_program {
            let cost = estimate(program.expression(), decl, &sizes, rule.optional_old_self).max;
            report.expressions.push(ExpressionCost {
                path: child(&rule_path, "messageExpression"),
                expression: rule.message_expression.clone(),
                cost,
                cardinality: 1,
                total: cost,
            });
        }
    }
}

/// The API server's errors for costs over the limits: each expression over
/// [`STATIC_ESTIMATED_COST_LIMIT`] (unless `per_expression` is false, as for a version whose
/// schema an update leaves unchanged), and, when the total is over
/// [`STATIC_ESTIMATED_CRD_COST_LIMIT`], the (up to four) expressions costing 1% of it or more
/// and the total, at `root_path`.
pub(crate) fn errors(report: &CostReport, root_path: &str, per_expression: bool) -> Vec<crate::errors::FieldError> {
    use crate::errors::FieldError;
    let mut errors = Vec::new();
    let mut expensive: Vec<&ExpressionCost> = Vec::new();
    for e in &report.expressions {
        let what = if e.path.ends_with(".messageExpression") {
            "estimated messageExpression cost"
        } else {
            "estimated rule cost"
        };
        if per_expression && e.total > STATIC_ESTIMATED_COST_LIMIT {
            errors.push(FieldError::forbidden(
                e.path.clone(),
                cost_error_message(what, e.total, STATIC_ESTIMATED_COST_LIMIT),
            ));
        }
        if e.total >= STATIC_ESTIMATED_CRD_COST_LIMIT / 100 {
            expensive.push(e);
            expensive.sort_by_key(|e| std::cmp::Reverse(e.total));
            expensive.truncate(4);
        }
    }
    if report.total > STATIC_ESTIMATED_CRD_COST_LIMIT {
        for e in expensive {
            errors.push(FieldError::forbidden(
                e.path.clone(),
                "contributed to estimated rule cost total exceeding cost limit for entire OpenAPIv3 schema",
            ));
        }
        errors.push(FieldError::forbidden(
            root_path,
            cost_error_message(
                "x-kubernetes-validations estimated rule cost total for entire OpenAPIv3 schema",
                report.total,
                STATIC_ESTIMATED_CRD_COST_LIMIT,
            ),
        ));
    }
    errors
}

#[cfg(test)]
#[path = "cost_tests.rs"]
mod tests;
