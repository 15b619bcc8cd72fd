//! The Python literals eDeploy's configuration files are written in: strings (all quote forms,
//! escapes, raw and adjacent concatenation), numbers, `True`/`False`/`None`, tuples, lists,
//! dicts, comments — what `ast.literal_eval` reads — plus calls such as `generate({...})` and
//! `+` between values, which eDeploy's CMDB files use. Errors give line and column.

use std::fmt;

/// Deepest nesting of containers and calls.
pub const MAX_DEPTH: usize = 64;
/// Largest input, in bytes.
pub const MAX_INPUT: usize = 32 << 20;

/// A place in the text: 1-based line and column (in characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A value and where it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Where the value starts.
    pub pos: Pos,
    /// The value.
    pub value: Value,
}

/// A Python value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `'text'`.
    Str(String),
    /// An integer, in decimal (`-12`, `255` for `0xff`).
    Int(String),
    /// A float.
    Float(f64),
    /// `True` / `False`.
    Bool(bool),
    /// `None`.
    None,
    /// `[a, b]`.
    List(Vec<Node>),
    /// `(a, b)`.
    Tuple(Vec<Node>),
    /// `{k: v}`, in written order.
    Dict(Vec<(Node, Node)>),
    /// `name(arg, …)`.
    Call {
        /// The function.
        name: String,
        /// Positional arguments.
        args: Vec<Node>,
    },
    /// `a + b + …`.
    Sum(Vec<Node>),
}

impl Value {
    /// What the value is, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Str(_) => "a string",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Bool(_) => "a boolean",
            Value::None => "None",
            Value::List(_) => "a list",
            Value::Tuple(_) => "a tuple",
            Value::Dict(_) => "a dict",
            Value::Call { .. } => "a call",
            Value::Sum(_) => "a sum",
        }
    }

    /// Python's `str()` of a scalar: the text for strings, `12`, `1.5`, `True`, `None`.
    pub fn scalar_text(&self) -> Option<String> {
        match self {
            Value::Str(s) | Value::Int(s) => Some(s.clone()),
            Value::Float(f) => Some(float_repr(*f)),
            Value::Bool(b) => Some(if *b { "True" } else { "False" }.to_owned()),
            Value::None => Some("None".to_owned()),
            _ => None,
        }
    }
}

/// Python's `repr(float)`: shortest round-trip digits, scientific below 1e-4 and from 1e16.
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    let sci = format!("{f:e}");
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if (-4..16).contains(&exponent) {
        let point = exponent + 1;
        let body = if point <= 0 {
            format!("0.{}{digits}", "0".repeat((-point) as usize))
        } else if point as usize >= digits.len() {
            format!("{digits}{}.0", "0".repeat(point as usize - digits.len()))
        } else {
            format!("{}.{}", &digits[..point as usize], &digits[point as usize..])
        };
        format!("{sign}{body}")
    } else {
        let rest = &digits[1..];
        let mantissa = if rest.is_empty() { digits[..1].to_owned() } else { format!("{}.{rest}", &digits[..1]) };
        format!("{sign}{mantissa}e{}{:02}", if exponent < 0 { '-' } else { '+' }, exponent.abs())
    }
}

/// A text that is not a Python literal of the supported kind.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{pos}: {message}")]
pub struct SyntaxError {
    /// Where.
    pub pos: Pos,
    /// What.
    pub message: String,
}

/// Parses one literal (the whole text).
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    if text.len() > MAX_INPUT {
        return Err(SyntaxError {
            pos: Pos { line: 1, column: 1 },
            message: format!("input is larger than {MAX_INPUT} bytes"),
        });
    }
    let mut parser = Parser { chars: text.chars().collect(), i: 0, line: 1, column: 1, depth: 0 };
    let node = parser.expression()?;
    parser.skip_blank()?;
    if parser.i < parser.chars.len() {
        return Err(parser.error(format!("unexpected {:?} after the value", parser.chars[parser.i])));
    }
    Ok(node)
}

struct Parser {
    chars: Vec<char>,
    i: usize,
    line: usize,
    column: usize,
    depth: usize,
}

impl Parser {
    fn pos(&self) -> Pos {
        Pos { line: self.line, column: self.column }
    }

    fn error(&self, message: impl Into<String>) -> SyntaxError {
        SyntaxError { pos: self.pos(), message: message.into() }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).copied()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.chars.get(self.i + n).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.get(self.i).copied()?;
        self.i += 1;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    /// Whitespace, newlines, comments and backslash continuations.
    fn skip_blank(&mut self) -> Result<(), SyntaxError> {
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' | '\n' | '\r' | '\x0c' => {
                    self.bump();
                }
                '#' => {
                    while self.peek().is_some_and(|c| c != '\n') {
                        self.bump();
                    }
                }
                '\\' if matches!(self.peek_at(1), Some('\n')) => {
                    self.bump();
                    self.bump();
                }
                '\\' if matches!((self.peek_at(1), self.peek_at(2)), (Some('\r'), Some('\n'))) => {
                    self.bump();
                    self.bump();
                    self.bump();
                }
                _ => break,
            }
        }
        Ok(())
    }

    fn enter(&mut self) -> Result<(), SyntaxError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(format!("values nested more than {MAX_DEPTH} deep")));
        }
        Ok(())
    }

    /// `unary ('+' unary)*`
    fn expression(&mut self) -> Result<Node, SyntaxError> {
        self.skip_blank()?;
        let first = self.unary()?;
        self.skip_blank()?;
        if self.peek() != Some('+') {
            return Ok(first);
        }
        let pos = first.pos;
        let mut terms = vec![first];
        while {
            self.skip_blank()?;
            self.peek() == Some('+')
        } {
            self.bump();
            self.skip_blank()?;
            terms.push(self.unary()?);
        }
        Ok(Node { pos, value: Value::Sum(terms) })
    }

    fn unary(&mut self) -> Result<Node, SyntaxError> {
        self.skip_blank()?;
        let pos = self.pos();
        match self.peek() {
            Some(sign @ ('-' | '+')) => {
                self.bump();
                self.enter()?;
                let operand = self.unary()?;
                self.depth -= 1;
                let value = match (sign, operand.value) {
                    ('+', v @ (Value::Int(_) | Value::Float(_))) => v,
                    ('-', Value::Int(s)) => Value::Int(match s.strip_prefix('-') {
                        Some(positive) => positive.to_owned(),
                        None if s == "0" => s,
                        None => format!("-{s}"),
                    }),
                    ('-', Value::Float(f)) => Value::Float(-f),
                    (_, other) => {
                        return Err(SyntaxError {
                            pos,
                            message: format!("{sign} applies to numbers only, not to {}", other.kind()),
                        });
                    }
                };
                Ok(Node { pos, value })
            }
            _ => self.atom(),
        }
    }

    fn atom(&mut self) -> Result<Node, SyntaxError> {
        self.skip_blank()?;
        let pos = self.pos();
        let Some(c) = self.peek() else {
            return Err(self.error("expected a value, found the end of the file"));
        };
        let value = match c {
            '[' => {
                self.bump();
                self.enter()?;
                let items = self.sequence(']')?.0;
                self.depth -= 1;
                Value::List(items)
            }
            '(' => {
                self.bump();
                self.enter()?;
                let (mut items, trailing_comma) = self.sequence(')')?;
                self.depth -= 1;
                if items.len() == 1 && !trailing_comma {
                    return Ok(items.remove(0));
                }
                Value::Tuple(items)
            }
            '{' => {
                self.bump();
                self.enter()?;
                let dict = self.dict()?;
                self.depth -= 1;
                dict
            }
            '\'' | '"' => self.strings()?,
            c if c.is_ascii_digit() || (c == '.' && self.peek_at(1).is_some_and(|d| d.is_ascii_digit())) => {
                self.number()?
            }
            c if c.is_alphabetic() || c == '_' => {
                let mut name = String::new();
                while let Some(c) = self.peek().filter(|c| c.is_alphanumeric() || *c == '_') {
                    name.push(c);
                    self.bump();
                }
                if matches!(self.peek(), Some('\'' | '"')) {
                    return self.prefixed_string(pos, &name);
                }
                match name.as_str() {
                    "True" => Value::Bool(true),
                    "False" => Value::Bool(false),
                    "None" => Value::None,
                    _ => {
                        self.skip_blank()?;
                        if self.peek() == Some('=') {
                            return Err(self.error("keyword arguments are not supported"));
                        }
                        if self.peek() != Some('(') {
                            return Err(SyntaxError { pos, message: format!("{name} is not a literal value") });
                        }
                        self.bump();
                        self.enter()?;
                        let (args, _) = self.sequence(')')?;
                        self.depth -= 1;
                        Value::Call { name, args }
                    }
                }
            }
            other => return Err(self.error(format!("unexpected {other:?}"))),
        };
        Ok(Node { pos, value })
    }

    /// Comma-separated expressions up to `close`; whether a comma preceded it.
    fn sequence(&mut self, close: char) -> Result<(Vec<Node>, bool), SyntaxError> {
        let mut items = Vec::new();
        let mut trailing = false;
        loop {
            self.skip_blank()?;
            if self.peek() == Some(close) {
                self.bump();
                return Ok((items, trailing));
            }
            if !items.is_empty() && !trailing {
                return Err(match self.peek() {
                    Some(c) => self.error(format!("expected ',' or {close:?}, found {c:?}")),
                    None => self.error(format!("expected {close:?}, found the end of the file")),
                });
            }
            let item = self.expression()?;
            self.skip_blank()?;
            if self.peek() == Some('=') {
                return Err(self.error("keyword arguments are not supported"));
            }
            items.push(item);
            trailing = false;
            if self.peek() == Some(',') {
                self.bump();
                trailing = true;
            }
        }
    }

    fn dict(&mut self) -> Result<Value, SyntaxError> {
        let mut pairs = Vec::new();
        loop {
            self.skip_blank()?;
            if self.peek() == Some('}') {
                self.bump();
                return Ok(Value::Dict(pairs));
            }
            let key = self.expression()?;
            self.skip_blank()?;
            match self.peek() {
                Some(':') => {
                    self.bump();
                }
                Some(',' | '}') if pairs.is_empty() => {
                    return Err(SyntaxError { pos: key.pos, message: "sets are not supported".into() });
                }
                Some(c) => return Err(self.error(format!("expected ':', found {c:?}"))),
                None => return Err(self.error("expected ':', found the end of the file")),
            }
            let value = self.expression()?;
            pairs.push((key, value));
            self.skip_blank()?;
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some('}') => {}
                Some(c) => return Err(self.error(format!("expected ',' or '}}', found {c:?}"))),
                None => return Err(self.error("expected '}', found the end of the file")),
            }
        }
    }

    /// One or more adjacent string literals.
    fn strings(&mut self) -> Result<Value, SyntaxError> {
        let mut text = self.string_literal(false)?;
        loop {
            let save = (self.i, self.line, self.column);
            self.skip_blank()?;
            match self.peek() {
                Some('\'' | '"') => text.push_str(&self.string_literal(false)?),
                Some(c) if c.is_alphabetic() && self.string_prefix_len().is_some() => {
                    let pos = self.pos();
                    let mut prefix = String::new();
                    while let Some(c) = self.peek().filter(|c| c.is_alphabetic()) {
                        prefix.push(c);
                        self.bump();
                    }
                    match self.prefixed_string(pos, &prefix)? {
                        Node { value: Value::Str(s), .. } => text.push_str(&s),
                        _ => return Err(SyntaxError { pos, message: "expected a string".into() }),
                    }
                }
                _ => {
                    (self.i, self.line, self.column) = save;
                    return Ok(Value::Str(text));
                }
            }
        }
    }

    /// Letters directly followed by a quote, when they form a string prefix.
    fn string_prefix_len(&self) -> Option<usize> {
        let mut n = 0;
        while self.peek_at(n).is_some_and(|c| c.is_ascii_alphabetic()) {
            n += 1;
        }
        (n > 0 && n <= 2 && matches!(self.peek_at(n), Some('\'' | '"'))).then_some(n)
    }

    fn prefixed_string(&mut self, pos: Pos, prefix: &str) -> Result<Node, SyntaxError> {
        let lower = prefix.to_ascii_lowercase();
        let raw = match lower.as_str() {
            "r" => true,
            "u" => false,
            "b" | "br" | "rb" => return Err(SyntaxError { pos, message: "bytes literals are not supported".into() }),
            "f" | "fr" | "rf" => return Err(SyntaxError { pos, message: "f-strings are not supported".into() }),
            _ => return Err(SyntaxError { pos, message: format!("{prefix} is not a literal value") }),
        };
        let first = self.string_literal(raw)?;
        // Later adjacent strings join it.
        let rest = self.strings_after()?;
        Ok(Node { pos, value: Value::Str(first + &rest) })
    }

    fn strings_after(&mut self) -> Result<String, SyntaxError> {
        let save = (self.i, self.line, self.column);
        self.skip_blank()?;
        if (matches!(self.peek(), Some('\'' | '"')) || self.string_prefix_len().is_some())
            && let Value::Str(s) = self.strings()?
        {
            return Ok(s);
        }
        (self.i, self.line, self.column) = save;
        Ok(String::new())
    }

    fn string_literal(&mut self, raw: bool) -> Result<String, SyntaxError> {
        let start = self.pos();
        let quote = self.bump().ok_or_else(|| self.error("expected a string"))?;
        let triple = self.peek() == Some(quote) && self.peek_at(1) == Some(quote);
        if triple {
            self.bump();
            self.bump();
        }
        let mut out = String::new();
        loop {
            let Some(c) = self.bump() else {
                return Err(SyntaxError { pos: start, message: "unterminated string".into() });
            };
            if c == quote {
                if !triple {
                    return Ok(out);
                }
                if self.peek() == Some(quote) && self.peek_at(1) == Some(quote) {
                    self.bump();
                    self.bump();
                    return Ok(out);
                }
                out.push(c);
                continue;
            }
            if c == '\n' && !triple {
                return Err(SyntaxError { pos: start, message: "unterminated string (end of line)".into() });
            }
            if c != '\\' {
                out.push(c);
                continue;
            }
            let escape_pos = Pos { line: self.line, column: self.column - 1 };
            let Some(e) = self.bump() else {
                return Err(SyntaxError { pos: start, message: "unterminated string".into() });
            };
            if raw {
                out.push('\\');
                out.push(e);
                continue;
            }
            match e {
                '\n' => {}
                '\\' => out.push('\\'),
                '\'' => out.push('\''),
                '"' => out.push('"'),
                'a' => out.push('\x07'),
                'b' => out.push('\x08'),
                'f' => out.push('\x0c'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'v' => out.push('\x0b'),
                '0'..='7' => {
                    let mut value = e.to_digit(8).unwrap_or(0);
                    for _ in 0..2 {
                        match self.peek().and_then(|c| c.to_digit(8)) {
                            Some(d) => {
                                value = value * 8 + d;
                                self.bump();
                            }
                            None => break,
                        }
                    }
                    out.push(
                        char::from_u32(value)
                            .ok_or_else(|| SyntaxError { pos: escape_pos, message: "bad octal escape".into() })?,
                    );
                }
                'x' | 'u' | 'U' => {
                    let len = match e {
                        'x' => 2,
                        'u' => 4,
                        _ => 8,
                    };
                    let mut value = 0u32;
                    for _ in 0..len {
                        let digit = self.peek().and_then(|c| c.to_digit(16)).ok_or_else(|| SyntaxError {
                            pos: escape_pos,
                            message: format!("truncated \\{e} escape"),
                        })?;
                        value = value.saturating_mul(16).saturating_add(digit);
                        self.bump();
                    }
                    out.push(char::from_u32(value).ok_or_else(|| SyntaxError {
                        pos: escape_pos,
                        message: format!("\\{e} escape {value:#x} is not a character"),
                    })?);
                }
                'N' => {
                    return Err(SyntaxError { pos: escape_pos, message: "\\N{...} escapes are not supported".into() });
                }
                other => {
                    out.push('\\');
                    out.push(other);
                }
            }
        }
    }

    fn number(&mut self) -> Result<Value, SyntaxError> {
        let pos = self.pos();
        let mut text = String::new();
        while let Some(c) = self.peek().filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.') {
            // An exponent sign belongs to the number.
            text.push(c);
            self.bump();
            if matches!(c, 'e' | 'E')
                && !text.starts_with("0x")
                && !text.starts_with("0X")
                && let Some(sign @ ('+' | '-')) = self.peek()
            {
                text.push(sign);
                self.bump();
            }
        }
        let bad = |what: &str| SyntaxError { pos, message: format!("{text:?} is not a valid {what}") };
        if text.ends_with(['j', 'J']) {
            return Err(SyntaxError { pos, message: "complex numbers are not supported".into() });
        }
        let lower = text.to_ascii_lowercase();
        for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
            if let Some(digits) = lower.strip_prefix(prefix) {
                let digits = digits.strip_prefix('_').unwrap_or(digits);
                let clean = without_underscores(digits).ok_or_else(|| bad("integer"))?;
                let value = u128::from_str_radix(&clean, radix).map_err(|_| bad("integer (or is too large)"))?;
                return Ok(Value::Int(value.to_string()));
            }
        }
        let clean = without_underscores(&text).ok_or_else(|| bad("number"))?;
        if clean.bytes().all(|b| b.is_ascii_digit()) {
            let trimmed = clean.trim_start_matches('0');
            if trimmed.len() != clean.len() && !trimmed.is_empty() {
                return Err(SyntaxError {
                    pos,
                    message: format!("{text:?}: leading zeros in decimal integers are not permitted"),
                });
            }
            return Ok(Value::Int(if trimmed.is_empty() { "0".into() } else { trimmed.to_owned() }));
        }
        crate::python::float(&clean)
            .filter(|_| !clean.contains(['i', 'n', 'I', 'N']))
            .map(Value::Float)
            .ok_or_else(|| bad("number"))
    }
}

/// Removes `_` found between digits; `None` when one is misplaced.
fn without_underscores(text: &str) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    for (i, c) in chars.iter().enumerate() {
        if *c == '_' {
            let ok = i > 0
                && chars[i - 1].is_ascii_alphanumeric()
                && chars.get(i + 1).is_some_and(|n| n.is_ascii_alphanumeric());
            if !ok {
                return None;
            }
        } else {
            out.push(*c);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> Value {
        parse(text).unwrap().value
    }

    fn s(text: &str) -> Value {
        Value::Str(text.into())
    }

    fn err(text: &str) -> SyntaxError {
        parse(text).unwrap_err()
    }

    #[test]
    fn seed_specs_and_state() {
        let specs = "[\n    ('disk', '$disk', 'size', 'gt(4)'),\n    ('network', '$eth', 'ipv4', 'network(192.168.122.0/24)'),\n    ('network', '$eth', 'serial', '$mac'),\n]\n";
        let Value::List(rules) = value(specs) else { panic!() };
        assert_eq!(rules.len(), 3);
        assert_eq!(rules[1].pos, Pos { line: 3, column: 5 });
        assert_eq!(
            rules[0].value,
            Value::Tuple(vec![
                Node { pos: Pos { line: 2, column: 6 }, value: s("disk") },
                Node { pos: Pos { line: 2, column: 14 }, value: s("$disk") },
                Node { pos: Pos { line: 2, column: 23 }, value: s("size") },
                Node { pos: Pos { line: 2, column: 31 }, value: s("gt(4)") },
            ])
        );
        let Value::List(state) = value("[('hp', 4), ('vm', '*')]") else { panic!() };
        assert_eq!(
            state[0].value,
            Value::Tuple(vec![
                Node { pos: Pos { line: 1, column: 3 }, value: s("hp") },
                Node { pos: Pos { line: 1, column: 9 }, value: Value::Int("4".into()) },
            ])
        );
    }

    #[test]
    fn strings() {
        assert_eq!(value(r#"'a\'b'"#), s("a'b"));
        assert_eq!(value(r#""tab\tnew\nline""#), s("tab\tnew\nline"));
        assert_eq!(value(r"'\x41\101\u00e9\U0001F600\d'"), s("AAé😀\\d"));
        assert_eq!(value(r"r'\d+\''"), s("\\d+\\'"));
        assert_eq!(value("u'x' \"y\"\n  'z'"), s("xyz"));
        assert_eq!(value("('a'\n 'b')"), s("ab"));
        assert_eq!(value("'''multi\nline'''"), s("multi\nline"));
        assert_eq!(value("\"\"\"q\"q\"\"\""), s("q\"q"));
        assert_eq!(value("'a\\\nb'"), s("ab"));
    }

    #[test]
    fn numbers_and_constants() {
        assert_eq!(value("42"), Value::Int("42".into()));
        assert_eq!(value("-7"), Value::Int("-7".into()));
        assert_eq!(value("1_000"), Value::Int("1000".into()));
        assert_eq!(value("0xff"), Value::Int("255".into()));
        assert_eq!(value("0o17"), Value::Int("15".into()));
        assert_eq!(value("0b101"), Value::Int("5".into()));
        assert_eq!(value("000"), Value::Int("0".into()));
        assert_eq!(value("1.5"), Value::Float(1.5));
        assert_eq!(value("-.5e-3"), Value::Float(-0.0005));
        assert_eq!(value("1E3"), Value::Float(1000.0));
        assert_eq!(value("True"), Value::Bool(true));
        assert_eq!(value("None"), Value::None);
        assert_eq!(value("99999999999999999999999999999"), Value::Int("99999999999999999999999999999".into()));
    }

    #[test]
    fn float_text_is_python_repr() {
        for (f, text) in [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (1e16, "1e+16"),
            (1e-5, "1e-05"),
            (123.456, "123.456"),
            (-2.5e-7, "-2.5e-07"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
        ] {
            assert_eq!(float_repr(f), text);
        }
    }

    #[test]
    fn containers_calls_sums_comments() {
        assert_eq!(value("()"), Value::Tuple(vec![]));
        assert_eq!(value("(1)"), Value::Int("1".into()));
        assert!(matches!(value("(1,)"), Value::Tuple(v) if v.len() == 1));
        assert!(matches!(value("[1, 2,]"), Value::List(v) if v.len() == 2));
        assert!(matches!(value("{}"), Value::Dict(v) if v.is_empty()));
        let text =
            "# eDeploy CMDB\n[{'ip': '10.0.0.1'}] + generate({'ip': '10.0.0.2-3',  # two\n 'hostname': ('a', 'b')})";
        let Value::Sum(terms) = value(text) else { panic!() };
        assert!(matches!(&terms[0].value, Value::List(v) if v.len() == 1));
        let Value::Call { name, args } = &terms[1].value else { panic!() };
        assert_eq!((name.as_str(), args.len()), ("generate", 1));
        assert_eq!(terms[1].pos, Pos { line: 2, column: 24 });
    }

    #[test]
    fn errors_point_at_line_and_column() {
        assert_eq!(err("[('a', 'b'),\n ('c' 'd', )\n ('e')]").pos, Pos { line: 3, column: 2 });
        let e = err("[{'hostname': 'test1', 'mac':}]");
        assert_eq!(e.pos, Pos { line: 1, column: 30 });
        assert!(e.to_string().starts_with("1:30:"), "{e}");
        assert!(err("['a").message.contains("unterminated"));
        assert!(err("'a\nb'").message.contains("end of line"));
        assert!(err("{1, 2}").message.contains("sets"));
        // A call parses (nothing runs); the conversion accepts only generate().
        assert!(matches!(value("__import__('os')"), Value::Call { name, .. } if name == "__import__"));
        assert!(err("os.system('x')").message.contains("os is not a literal value"));
        assert!(err("b'x'").message.contains("bytes"));
        assert!(err("f'{x}'").message.contains("f-strings"));
        assert!(err("1j").message.contains("complex"));
        assert!(err("012").message.contains("leading zeros"));
        assert!(err("1__0").message.contains("not a valid"));
        assert!(err("-'a'").message.contains("numbers only"));
        assert!(err("generate({}, prefix='=')").message.contains("keyword"));
        assert!(err("[1] [2]").message.contains("after the value"));
        assert!(err("").message.contains("end of the file"));
        assert!(err(&format!("{}1{}", "[".repeat(100), "]".repeat(100))).message.contains("nested"));
        assert!(err("[\n\n   $]").pos == Pos { line: 3, column: 4 });
    }
}
