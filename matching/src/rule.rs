//! eDeploy rules `[class, type, name, value]`, parsed once into a typed form.
//!
//! Each element is a literal, a capture (`$var`, or `$$var` which also selects the CMDB
//! entry), a function call (`gt(4)`, `network(10.0.0.0/8)`, `and(gt(1), lt(9))`…) or a capture
//! guarded by a function (`$size=gt(20)`). Function calls are split exactly as the reference
//! splits them (its `_FUNC_REGEXP`, comma splitting, quote stripping), so that every rule means
//! what it meant to eDeploy; what the reference would only discover by raising an exception
//! while matching (wrong arity, a bound that is not a number, a bad CIDR or regex) is an error
//! here, before any machine is matched.

use std::fmt;
use std::sync::LazyLock;

use machinist_crds::Quad;
use machinist_crds::cmdb::is_variable_name;
use regex::Regex;

use crate::ipv4::{self, Network};
use crate::python;

/// Most rules in one profile (as the HardwareProfile schema allows).
pub const MAX_RULES: usize = 512;
/// Longest rule element, in bytes (as the HardwareProfile schema allows).
pub const MAX_ELEMENT_LEN: usize = 4096;
/// Longest `regexp()` pattern, in bytes.
pub const MAX_REGEX_LEN: usize = 1024;
/// Most compiled size of one `regexp()` pattern, in bytes.
pub const MAX_REGEX_SIZE: usize = 1 << 20;
/// Deepest nesting of function calls (`not(and(gt(1), …))`).
pub const MAX_CALL_DEPTH: usize = 16;

/// `_FUNC_REGEXP` of the reference, with Python's `\s`.
static FUNC_RE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    let s = python::SPACE_CLASS;
    Regex::new(&format!(r"^([^(]+)\({s}*([^,]+)(?:{s}*,{s}*(.+))?\)$")).ok()
});
/// The separator of the reference's optional arguments, `\s*,\s*`.
static COMMA_RE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    let s = python::SPACE_CLASS;
    Regex::new(&format!(r"{s}*,{s}*")).ok()
});

/// Names the reference resolves as `'_' + name` among its module's globals: the eleven
/// functions and the helpers and dunders that happen to share the prefix.
const REFERENCE_GLOBALS: [&str; 24] = [
    "FUNC_REGEXP",
    "_builtins__",
    "_cached__",
    "_doc__",
    "_file__",
    "_loader__",
    "_name__",
    "_package__",
    "_spec__",
    "adder",
    "and",
    "appender",
    "call_func",
    "extract_result",
    "ge",
    "gt",
    "in",
    "le",
    "lt",
    "network",
    "not",
    "or",
    "range",
    "regexp",
];

/// One position in a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    /// First element.
    Class,
    /// Second element.
    Type,
    /// Third element.
    Name,
    /// Fourth element.
    Value,
}

impl Position {
    const ALL: [Position; 4] = [Position::Class, Position::Type, Position::Name, Position::Value];
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Position::Class => "class",
            Position::Type => "type",
            Position::Name => "name",
            Position::Value => "value",
        })
    }
}

/// Why a rule does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// An element is empty (the reference raises `IndexError`).
    #[error("empty element")]
    Empty,
    /// An element is longer than [`MAX_ELEMENT_LEN`].
    #[error("element is {0} bytes long, more than {MAX_ELEMENT_LEN}")]
    TooLong(usize),
    /// A call to a function that does not exist.
    #[error("unknown function {0}(); known: gt ge lt le range in regexp network and or not")]
    UnknownFunction(String),
    /// A function called with the wrong number of arguments.
    #[error("{function}() takes {expected}, {found} given")]
    Arity {
        /// Function.
        function: &'static str,
        /// What it takes.
        expected: &'static str,
        /// Arguments given.
        found: usize,
    },
    /// A numeric bound that Python's `float()` rejects.
    #[error("{function}() argument {argument:?} is not a number")]
    NotANumber {
        /// Function.
        function: &'static str,
        /// Argument, quotes stripped.
        argument: String,
    },
    /// A `network()` argument that is not an IPv4 network.
    #[error("network() argument {argument:?} is not an IPv4 network: {reason}")]
    BadNetwork {
        /// Argument.
        argument: String,
        /// What is wrong.
        reason: String,
    },
    /// A `regexp()` pattern that does not compile.
    #[error("regexp() pattern {pattern:?} does not compile: {reason}")]
    BadRegex {
        /// Pattern.
        pattern: String,
        /// Compiler message.
        reason: String,
    },
    /// A `regexp()` pattern longer than [`MAX_REGEX_LEN`].
    #[error("regexp() pattern is {0} bytes long, more than {MAX_REGEX_LEN}")]
    RegexTooLong(usize),
    /// A call given where only a plain argument makes sense.
    #[error("{function}() argument {argument:?} must be a plain value, not a function call")]
    CallNotAllowed {
        /// Function.
        function: &'static str,
        /// Argument.
        argument: String,
    },
    /// Calls nested deeper than [`MAX_CALL_DEPTH`].
    #[error("function calls nested more than {MAX_CALL_DEPTH} deep")]
    TooDeep,
    /// `$name` where `name` is not a variable name.
    #[error("{0:?} is not a variable name (letters, digits and _, not starting with a digit)")]
    BadVariable(String),
    /// `$var=` followed by something that is not a function call.
    #[error("after {variable}= a function call such as gt(4) is expected, found {found:?}")]
    ExpectedFunction {
        /// The variable part.
        variable: String,
        /// What follows `=`.
        found: String,
    },
}

/// A rule that does not parse, with the rule, the element and the reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("rule {rule} {quad}: {position} {element:?}: {problem}")]
pub struct RuleError {
    /// Index of the rule in the profile's list.
    pub rule: usize,
    /// The rule, as written.
    pub quad: Box<Quad>,
    /// The element at fault.
    pub position: Position,
    /// Its text.
    pub element: String,
    /// What is wrong with it.
    pub problem: Problem,
}

/// Too many rules in one profile.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    /// One rule does not parse.
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// More than [`MAX_RULES`] rules.
    #[error("{0} rules, more than {MAX_RULES}")]
    TooMany(usize),
}

/// A captured variable: its name and whether it was written `$$name` (it then also selects
/// the CMDB entry). `$x` and `$$x` are distinct variables while matching, as in the reference;
/// the `$$` one wins in the result.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Variable {
    /// Name, without the dollars.
    pub name: String,
    /// Written `$$name`.
    pub selector: bool,
}

impl fmt::Display for Variable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", if self.selector { "$$" } else { "$" }, self.name)
    }
}

/// A numeric comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cmp {
    Gt,
    Ge,
    Lt,
    Le,
}

/// A function call, arguments resolved.
#[derive(Clone, Debug)]
pub(crate) enum Expr {
    /// `gt(n)`, `ge(n)`, `lt(n)`, `le(n)`: `float(value) <op> float(n)`.
    Compare(Cmp, Num),
    /// `range(a, b)`: `float(a) <= float(value) <= float(b)`.
    Range(Num, Num),
    /// `in(a, b, …)`: the value equals one of the arguments.
    In(Vec<Member>),
    /// `regexp(re)`: `re.search(re, value)`.
    Regexp(Box<Regex>),
    /// `network(cidr)`: the value is an IPv4 address inside the network.
    Network(Network),
    /// `not(x)`: `not x`.
    Not(Truth),
    /// `and(x, y)`.
    And(Truth, Truth),
    /// `or(x, y)`.
    Or(Truth, Truth),
}

/// A numeric argument: a constant, or a nested call whose `True`/`False` Python turns into 1/0.
#[derive(Clone, Debug)]
pub(crate) enum Num {
    Const(f64),
    Call(Box<Expr>),
}

/// A boolean argument: a literal (true when non-empty) or a nested call.
#[derive(Clone, Debug)]
pub(crate) enum Truth {
    Const(bool),
    Call(Box<Expr>),
}

/// An `in()` member: a string, or a nested call (evaluated, never equal to a string).
#[derive(Clone, Debug)]
pub(crate) enum Member {
    Str(String),
    Call(Box<Expr>),
}

/// Evaluating a function on an item value failed where the reference raises (a value that is
/// not a number for `gt()`, not an address for `network()`, or that itself looks like a call).
/// The item then does not satisfy the rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Unevaluable;

impl Expr {
    /// Evaluates the call on an item value whose quotes are already stripped.
    fn eval(&self, value: &str) -> Result<bool, Unevaluable> {
        match self {
            Expr::Compare(op, bound) => {
                let bound = bound.eval(value)?;
                let v = python::float(value).ok_or(Unevaluable)?;
                Ok(match op {
                    Cmp::Gt => v > bound,
                    Cmp::Ge => v >= bound,
                    Cmp::Lt => v < bound,
                    Cmp::Le => v <= bound,
                })
            }
            Expr::Range(low, high) => {
                let low = low.eval(value)?;
                let high = high.eval(value)?;
                let v = python::float(value).ok_or(Unevaluable)?;
                Ok(low <= v && v <= high)
            }
            Expr::In(members) => {
                let mut found = false;
                for member in members {
                    match member {
                        Member::Str(s) => found |= s == value,
                        Member::Call(call) => {
                            call.eval(value)?;
                        }
                    }
                }
                Ok(found)
            }
            Expr::Regexp(re) => Ok(re.is_match(value)),
            Expr::Network(net) => Ok(net.contains(ipv4::parse_address(value).ok_or(Unevaluable)?)),
            Expr::Not(x) => Ok(!x.eval(value)?),
            Expr::And(x, y) => {
                let (x, y) = (x.eval(value)?, y.eval(value)?);
                Ok(x && y)
            }
            Expr::Or(x, y) => {
                let (x, y) = (x.eval(value)?, y.eval(value)?);
                Ok(x || y)
            }
        }
    }

    /// Evaluates the call on a raw item value, as the reference does: quotes stripped, and a
    /// value that is itself a call of a name the reference resolves makes it recurse forever.
    pub(crate) fn test(&self, raw_value: &str) -> Result<bool, Unevaluable> {
        let value = python::strip_quotes(raw_value);
        if (value.ends_with(')') || value.ends_with(")\n"))
            && let Some(name) = call_name(value)
            && REFERENCE_GLOBALS.contains(&name)
        {
            return Err(Unevaluable);
        }
        self.eval(value)
    }
}

impl Num {
    fn eval(&self, value: &str) -> Result<f64, Unevaluable> {
        match self {
            Num::Const(n) => Ok(*n),
            Num::Call(call) => Ok(if call.eval(value)? { 1.0 } else { 0.0 }),
        }
    }
}

impl Truth {
    fn eval(&self, value: &str) -> Result<bool, Unevaluable> {
        match self {
            Truth::Const(b) => Ok(*b),
            Truth::Call(call) => call.eval(value),
        }
    }
}

/// How one element of a rule is matched.
#[derive(Clone, Debug)]
pub(crate) enum Element {
    /// Equal to the text.
    Literal,
    /// Text that looks like a call of something that is not a function name (`DIMM … (0.6 ns)`):
    /// the reference only matches it when the whole item equals the whole rule.
    Opaque,
    /// `$var` / `$$var`: index into [`RuleSet::variables`].
    Capture(usize),
    /// A function call.
    Test(Expr),
    /// `$var=call(…)`: captured when the call holds; otherwise the reference compares the item
    /// with the element's text.
    CaptureIf(usize, Expr),
}

/// One parsed rule.
#[derive(Clone, Debug)]
pub struct Rule {
    /// The rule as written.
    pub quad: Quad,
    pub(crate) elements: [Element; 4],
    /// The variable of each capturing element (0 for the others).
    pub(crate) vars: [u32; 4],
    /// A hash of the text, to share what is learnt about a rule between profiles.
    pub(crate) hash: u64,
    /// `no remaining item satisfies rule N (…)`, the start of its mismatch reason.
    pub(crate) unmatched: String,
    /// Some element captures a variable.
    pub(crate) captures: bool,
    /// A hash of class, type and name, when the three are literals: rules sharing them look at
    /// the same items.
    pub(crate) prefix: Option<u64>,
}

/// A profile's rules, parsed.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    pub(crate) rules: Vec<Rule>,
    pub(crate) variables: Vec<Variable>,
}

impl RuleSet {
    /// Parses a profile's rules; the first rule that does not parse is the error.
    pub fn parse(quads: &[Quad]) -> Result<Self, RulesError> {
        if quads.len() > MAX_RULES {
            return Err(RulesError::TooMany(quads.len()));
        }
        let mut set = RuleSet::default();
        for (index, quad) in quads.iter().enumerate() {
            let rule = set.parse_rule(index, quad)?;
            set.rules.push(rule);
        }
        Ok(set)
    }

    /// Every problem of every rule, for reporting all at once.
    pub fn check(quads: &[Quad]) -> Vec<RuleError> {
        let mut set = RuleSet::default();
        quads.iter().enumerate().filter_map(|(index, quad)| set.parse_rule(index, quad).err()).collect()
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The variables the rules capture, in order of first appearance.
    pub fn variables(&self) -> &[Variable] {
        &self.variables
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// No rules: every machine matches.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    fn parse_rule(&mut self, index: usize, quad: &Quad) -> Result<Rule, RuleError> {
        let texts = quad.elements();
        let mut elements: [Element; 4] = [Element::Literal, Element::Literal, Element::Literal, Element::Literal];
        for (slot, (position, text)) in elements.iter_mut().zip(Position::ALL.into_iter().zip(texts)) {
            *slot = self.parse_element(text).map_err(|problem| RuleError {
                rule: index,
                quad: Box::new(quad.clone()),
                position,
                element: text.to_owned(),
                problem,
            })?;
        }
        let mut vars = [0u32; 4];
        for (slot, element) in vars.iter_mut().zip(&elements) {
            if let Element::Capture(v) | Element::CaptureIf(v, _) = element {
                *slot = *v as u32;
            }
        }
        let mut hasher = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(quad, &mut hasher);
        let hash = std::hash::Hasher::finish(&hasher);
        let unmatched = format!("no remaining item satisfies rule {index} {quad}");
        let captures = elements.iter().any(|e| matches!(e, Element::Capture(_) | Element::CaptureIf(..)));
        let prefix = elements[..3].iter().all(|e| matches!(e, Element::Literal)).then(|| {
            let mut hasher = std::hash::DefaultHasher::new();
            std::hash::Hash::hash(&[&quad.class, &quad.r#type, &quad.name], &mut hasher);
            std::hash::Hasher::finish(&hasher)
        });
        Ok(Rule { quad: quad.clone(), elements, vars, hash, unmatched, captures, prefix })
    }

    fn parse_element(&mut self, text: &str) -> Result<Element, Problem> {
        if text.is_empty() {
            return Err(Problem::Empty);
        }
        if text.len() > MAX_ELEMENT_LEN {
            return Err(Problem::TooLong(text.len()));
        }
        if text.starts_with('$') {
            let parts: Vec<&str> = text.split('=').collect();
            if let [variable, function] = parts[..] {
                let var = self.variable(variable)?;
                return match top_level_call(function)? {
                    Some(expr) => Ok(Element::CaptureIf(var, expr)),
                    None => {
                        Err(Problem::ExpectedFunction { variable: variable.to_owned(), found: function.to_owned() })
                    }
                };
            }
            return Ok(Element::Capture(self.variable(text)?));
        }
        if text.ends_with(')')
            && let Some(name) = call_name(text)
        {
            return match known_function(name) {
                Some(_) => Ok(Element::Test(parse_call(text, 0)?)),
                None if looks_like_function_name(name) => Err(Problem::UnknownFunction(name.to_owned())),
                None => Ok(Element::Opaque),
            };
        }
        Ok(Element::Literal)
    }

    /// The slot of `$name` or `$$name`, added on first use.
    fn variable(&mut self, text: &str) -> Result<usize, Problem> {
        let (name, selector) = match text.strip_prefix("$$") {
            Some(name) => (name, true),
            None => (text.strip_prefix('$').unwrap_or(text), false),
        };
        if !is_variable_name(name) {
            return Err(Problem::BadVariable(text.to_owned()));
        }
        let variable = Variable { name: name.to_owned(), selector };
        Ok(match self.variables.iter().position(|v| *v == variable) {
            Some(slot) => slot,
            None => {
                self.variables.push(variable);
                self.variables.len() - 1
            }
        })
    }
}

/// What follows `=` in `$var=…`: a call of a known function, or `None` for anything the
/// reference would compare literally (which never matches a real item).
fn top_level_call(text: &str) -> Result<Option<Expr>, Problem> {
    if text.ends_with(')')
        && let Some(name) = call_name(text)
    {
        return match known_function(name) {
            Some(_) => Ok(Some(parse_call(text, 0)?)),
            None => Err(Problem::UnknownFunction(name.to_owned())),
        };
    }
    Ok(None)
}

/// The name in `name(…)` when the reference's `_FUNC_REGEXP` matches `text`.
fn call_name(text: &str) -> Option<&str> {
    let re = FUNC_RE.as_ref()?;
    python::captures_dollar(re, text).and_then(|c| c.get(1)).map(|m| m.as_str())
}

/// A name typed as a function (`gtt`, `regex`), as opposed to text that merely contains
/// parentheses (`Intel(R)`, `DIMM DDR3 1600 MHz (0.6 ns)`).
fn looks_like_function_name(name: &str) -> bool {
    let name = name.trim_matches(python::is_space);
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_lowercase())
        && chars.all(|c| c == '_' || c.is_ascii_lowercase() || c.is_ascii_digit())
}

/// The eleven matching functions.
fn known_function(name: &str) -> Option<&'static str> {
    ["gt", "ge", "lt", "le", "range", "in", "regexp", "network", "not", "and", "or"].into_iter().find(|f| *f == name)
}

/// An argument after quote stripping: a nested call, or plain text.
enum Arg {
    Text(String),
    /// The call and its text.
    Call(Expr, String),
}

/// Parses `name(args)` the way `_call_func` splits it.
fn parse_call(text: &str, depth: usize) -> Result<Expr, Problem> {
    if depth >= MAX_CALL_DEPTH {
        return Err(Problem::TooDeep);
    }
    let Some(caps) = FUNC_RE.as_ref().and_then(|re| python::captures_dollar(re, text)) else {
        return Err(Problem::UnknownFunction(text.to_owned()));
    };
    let name = caps.get(1).map_or("", |m| m.as_str());
    let Some(function) = known_function(name) else {
        return Err(Problem::UnknownFunction(name.to_owned()));
    };
    let mut raw: Vec<&str> = vec![caps.get(2).map_or("", |m| m.as_str())];
    if let Some(rest) = caps.get(3).map(|m| m.as_str()).filter(|s| !s.is_empty()) {
        match COMMA_RE.as_ref() {
            Some(comma) => raw.extend(comma.split(rest)),
            None => raw.push(rest),
        }
    }
    let mut args = Vec::with_capacity(raw.len());
    for a in raw {
        let a = python::strip_quotes(a);
        let arg = match FUNC_RE.as_ref().and_then(|re| python::captures_dollar(re, a)) {
            Some(c) => {
                let inner = c.get(1).map_or("", |m| m.as_str());
                if known_function(inner).is_some() {
                    Arg::Call(parse_call(a, depth + 1)?, a.to_owned())
                } else if REFERENCE_GLOBALS.contains(&inner) {
                    return Err(Problem::UnknownFunction(inner.to_owned()));
                } else {
                    Arg::Text(a.to_owned())
                }
            }
            None => Arg::Text(a.to_owned()),
        };
        args.push(arg);
    }
    build(function, args)
}

fn build(function: &'static str, args: Vec<Arg>) -> Result<Expr, Problem> {
    let expected = match function {
        "in" => None,
        "range" | "and" | "or" => Some((2, "2 arguments")),
        _ => Some((1, "1 argument")),
    };
    if let Some((count, text)) = expected
        && args.len() != count
    {
        return Err(Problem::Arity { function, expected: text, found: args.len() });
    }
    let num = |arg: Arg| -> Result<Num, Problem> {
        match arg {
            Arg::Call(e, _) => Ok(Num::Call(Box::new(e))),
            Arg::Text(t) => match python::float(&t) {
                Some(n) => Ok(Num::Const(n)),
                None => Err(Problem::NotANumber { function, argument: t }),
            },
        }
    };
    let truth = |arg: Arg| -> Truth {
        match arg {
            Arg::Call(e, _) => Truth::Call(Box::new(e)),
            Arg::Text(t) => Truth::Const(!t.is_empty()),
        }
    };
    let plain = |arg: Arg| -> Result<String, Problem> {
        match arg {
            Arg::Text(t) => Ok(t),
            Arg::Call(_, text) => Err(Problem::CallNotAllowed { function, argument: text }),
        }
    };
    let mut args = args.into_iter();
    let mut next = || args.next().unwrap_or(Arg::Text(String::new()));
    Ok(match function {
        "gt" | "ge" | "lt" | "le" => {
            let op = match function {
                "gt" => Cmp::Gt,
                "ge" => Cmp::Ge,
                "lt" => Cmp::Lt,
                _ => Cmp::Le,
            };
            Expr::Compare(op, num(next())?)
        }
        "range" => {
            let low = num(next())?;
            Expr::Range(low, num(next())?)
        }
        "regexp" => {
            let pattern = plain(next())?;
            Expr::Regexp(Box::new(compile_regex(&pattern)?))
        }
        "network" => {
            let cidr = plain(next())?;
            Expr::Network(Network::parse(&cidr).map_err(|reason| Problem::BadNetwork { argument: cidr, reason })?)
        }
        "not" => Expr::Not(truth(next())),
        "and" => {
            let x = truth(next());
            Expr::And(x, truth(next()))
        }
        "or" => {
            let x = truth(next());
            Expr::Or(x, truth(next()))
        }
        _ => Expr::In(
            args.map(|a| match a {
                Arg::Text(t) => Member::Str(t),
                Arg::Call(e, _) => Member::Call(Box::new(e)),
            })
            .collect(),
        ),
    })
}

fn compile_regex(pattern: &str) -> Result<Regex, Problem> {
    if pattern.len() > MAX_REGEX_LEN {
        return Err(Problem::RegexTooLong(pattern.len()));
    }
    regex::RegexBuilder::new(pattern)
        .size_limit(MAX_REGEX_SIZE)
        .dfa_size_limit(MAX_REGEX_SIZE)
        .nest_limit(64)
        .build()
        .map_err(|e| Problem::BadRegex { pattern: pattern.to_owned(), reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(c: &str, t: &str, n: &str, v: &str) -> Quad {
        Quad::new(c, t, n, v)
    }

    fn value_expr(v: &str) -> Expr {
        let set = RuleSet::parse(&[q("disk", "sda", "size", v)]).unwrap();
        match &set.rules[0].elements[3] {
            Element::Test(e) | Element::CaptureIf(_, e) => e.clone(),
            other => panic!("{v}: not a call: {other:?}"),
        }
    }

    fn holds(v: &str, value: &str) -> Result<bool, Unevaluable> {
        value_expr(v).test(value)
    }

    fn problem(quad: Quad) -> Problem {
        RuleSet::parse(&[quad])
            .err()
            .and_then(|e| if let RulesError::Rule(r) = e { Some(r.problem) } else { None })
            .unwrap()
    }

    #[test]
    fn elements_are_classified_as_the_reference_does() {
        let set = RuleSet::parse(&[
            q("disk", "$disk", "size", "gt(4)"),
            q("system", "product", "serial", "$$tag"),
            q("disk", "$disk", "size", "$size=gt(20)"),
            q("memory", "bank:0:0", "description", "DIMM DDR3 Synchronous 1600 MHz (0.6 ns)"),
            q("cpu", "physical_0", "product", "Intel(R) Xeon(R)"),
            q("a", "b", "c", "foo)"),
            q("a", "b", "c", "gt()"),
        ])
        .unwrap();
        assert!(matches!(set.rules[0].elements[1], Element::Capture(0)));
        assert!(matches!(set.rules[0].elements[3], Element::Test(Expr::Compare(Cmp::Gt, Num::Const(n))) if n == 4.0));
        assert!(matches!(set.rules[1].elements[3], Element::Capture(1)));
        assert!(matches!(set.rules[2].elements[1], Element::Capture(0)));
        assert!(matches!(set.rules[2].elements[3], Element::CaptureIf(2, _)));
        assert!(matches!(set.rules[3].elements[3], Element::Opaque));
        assert!(matches!(set.rules[4].elements[3], Element::Opaque));
        assert!(matches!(set.rules[5].elements[3], Element::Literal));
        assert!(matches!(set.rules[6].elements[3], Element::Literal));
        let names: Vec<String> = set.variables().iter().map(ToString::to_string).collect();
        assert_eq!(names, ["$disk", "$$tag", "$size"]);
    }

    #[test]
    fn comparisons_use_python_float() {
        assert_eq!(holds("gt(10)", "20"), Ok(true));
        assert_eq!(holds("ge(10.1)", "10.5"), Ok(true));
        assert_eq!(holds("lt(30)", "20"), Ok(true));
        assert_eq!(holds("le(20)", "20"), Ok(true));
        assert_eq!(holds("gt(4)", " 1_000 "), Ok(true));
        assert_eq!(holds("gt(4)", "'8'"), Ok(true), "quotes stripped from the value");
        assert_eq!(holds("gt(4)", "1000GB"), Err(Unevaluable));
        assert_eq!(holds("gt('4')", "5"), Ok(true), "quotes stripped from the argument");
        assert_eq!(holds("lt(inf)", "1e308"), Ok(true));
        assert_eq!(holds("gt(1)", "nan"), Ok(false));
    }

    #[test]
    fn range_in_regexp_network() {
        assert_eq!(holds("range(20, 25)", "20"), Ok(true));
        assert_eq!(holds("range(11.9, 12.2)", "12.14"), Ok(true));
        assert_eq!(holds("range(11.9, 12.2)", "12.3"), Ok(false));
        assert_eq!(holds("in(10, 20, 30)", "20"), Ok(true));
        assert_eq!(holds("in('vda', \"vdb\")", "vdb"), Ok(true));
        assert_eq!(holds("in(10, 20, 30)", "25"), Ok(false));
        assert_eq!(holds("in(a , b)", "a"), Ok(false), "the first argument keeps its trailing space");
        assert_eq!(holds("in(a , b)", "a "), Ok(true));
        assert_eq!(holds("in(a, b )", "b "), Ok(true), "the last argument keeps its trailing space");
        assert_eq!(holds("regexp(^28:d2:)", "28:d2:44:1b:0a:8b"), Ok(true));
        assert_eq!(holds("regexp(^(sd|vd))", "vda"), Ok(true));
        assert_eq!(holds("regexp(^28:d2:)", "20:d2:44:1b:0a:8b"), Ok(false));
        assert_eq!(holds("network(192.168.2.0/24)", "192.168.2.2"), Ok(true));
        assert_eq!(holds("network(192.168.2.0/24)", "192.168.3.2"), Ok(false));
        assert_eq!(holds("network(192.168.2.0/24)", "fe80::1"), Err(Unevaluable));
    }

    #[test]
    fn logic_functions_follow_python_truthiness() {
        assert_eq!(holds("not(regexp(^28:d2:))", "20:d2:44:1b:0a:8b"), Ok(true));
        assert_eq!(holds("and(gt(20), lt(50))", "40"), Ok(true));
        assert_eq!(holds("and(gt(20), lt(50))", "60"), Ok(false));
        assert_eq!(holds("or(lt(20), gt(30))", "40"), Ok(true));
        assert_eq!(holds("or(lt(20), gt(30))", "25"), Ok(false));
        // A literal argument is a truth value: non-empty strings are true.
        assert_eq!(holds("not(foo)", "anything"), Ok(false));
        assert_eq!(holds("not('')", "anything"), Ok(true));
        // Every argument is evaluated: a non-number fails even when the other side decides.
        assert_eq!(holds("or(in(x), gt(3))", "x"), Err(Unevaluable));
        // A call used as a number is 1 or 0.
        assert_eq!(holds("gt(lt(5))", "2"), Ok(true));
        assert_eq!(holds("gt(lt(5))", "0.5"), Ok(false));
    }

    #[test]
    fn values_that_look_like_calls_are_unevaluable() {
        assert_eq!(holds("in(gt(3))", "gt(3)"), Err(Unevaluable));
        assert_eq!(holds("in(foo(3))", "foo(3)"), Ok(true));
    }

    #[test]
    fn combined_capture_and_function() {
        let set = RuleSet::parse(&[q("disk", "$disk=in(\"vda\", \"vdb\")", "size", "20")]).unwrap();
        assert!(matches!(set.rules[0].elements[1], Element::CaptureIf(0, Expr::In(_))));
    }

    #[test]
    fn bad_rules_name_the_rule_the_element_and_the_problem() {
        let err =
            RuleSet::parse(&[q("disk", "$disk", "size", "gt(4)"), q("disk", "$disk", "size", "gtt(4)")]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("rule 1") && text.contains("gtt") && text.contains("value"), "{text}");

        assert_eq!(problem(q("a", "b", "c", "gtt(4)")), Problem::UnknownFunction("gtt".into()));
        assert_eq!(problem(q("a", "b", "c", "adder(4)")), Problem::UnknownFunction("adder".into()));
        assert!(matches!(problem(q("a", "b", "c", "gt(1, 2)")), Problem::Arity { function: "gt", found: 2, .. }));
        assert!(matches!(problem(q("a", "b", "c", "range(1)")), Problem::Arity { function: "range", found: 1, .. }));
        assert!(matches!(
            problem(q("a", "b", "c", "and(range(1,5), lt(10))")),
            Problem::Arity { function: "and", found: 3, .. }
        ));
        assert!(matches!(problem(q("a", "b", "c", "regexp(a{1,3})")), Problem::Arity { function: "regexp", .. }));
        assert!(matches!(problem(q("a", "b", "c", "gt(big)")), Problem::NotANumber { function: "gt", .. }));
        assert!(matches!(problem(q("a", "b", "c", "network(192.168.1.1/24)")), Problem::BadNetwork { .. }));
        assert!(matches!(problem(q("a", "b", "c", "network(10.0.0.0/33)")), Problem::BadNetwork { .. }));
        assert!(matches!(problem(q("a", "b", "c", "regexp(^(?=x))")), Problem::BadRegex { .. }));
        assert!(matches!(problem(q("a", "b", "c", r"regexp(x\Z)")), Problem::BadRegex { .. }));
        assert_eq!(
            problem(q("a", "b", "c", "regexp(gt(3))")),
            Problem::CallNotAllowed { function: "regexp", argument: "gt(3)".into() }
        );
        assert!(matches!(
            problem(q("a", "b", "c", &format!("regexp({})", "a".repeat(2000)))),
            Problem::RegexTooLong(_)
        ));
        assert_eq!(problem(q("a", "", "c", "d")), Problem::Empty);
        assert_eq!(problem(q("a", "$", "c", "d")), Problem::BadVariable("$".into()));
        assert_eq!(problem(q("a", "$x-y", "c", "d")), Problem::BadVariable("$x-y".into()));
        assert_eq!(problem(q("a", "$$$x", "c", "d")), Problem::BadVariable("$$$x".into()));
        assert!(matches!(problem(q("a", "b", "c", "$x=foo")), Problem::ExpectedFunction { .. }));
        assert!(matches!(problem(q("a", "b", "c", "$x=")), Problem::ExpectedFunction { .. }));
        assert_eq!(problem(q("a", "b", "c", "$x=foo(1)")), Problem::UnknownFunction("foo".into()));
        let deep = format!("{}1{}", "not(".repeat(20), ")".repeat(20));
        assert_eq!(problem(q("a", "b", "c", &deep)), Problem::TooDeep);
        assert!(matches!(problem(q("a", "b", "c", &"x".repeat(5000))), Problem::TooLong(5000)));
        let many: Vec<Quad> = (0..=MAX_RULES).map(|_| q("a", "b", "c", "d")).collect();
        assert_eq!(RuleSet::parse(&many).unwrap_err(), RulesError::TooMany(MAX_RULES + 1));
    }

    #[test]
    fn check_reports_every_bad_rule() {
        let errors = RuleSet::check(&[q("a", "b", "c", "gtt(1)"), q("a", "b", "c", "d"), q("a", "$", "c", "d")]);
        assert_eq!(errors.iter().map(|e| e.rule).collect::<Vec<_>>(), [0, 2]);
    }
}
