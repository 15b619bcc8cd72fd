//! Field errors, formatted the way `k8s.io/apimachinery/pkg/util/validation/field` formats them.
//!
//! The API server renders a bad value with Go's `%v` (numbers, booleans), `%q` (strings) or
//! `encoding/json` (everything else); [`FieldError::message`] reproduces those renderings so the
//! messages kubectl prints are the same byte for byte.

use std::fmt::{self, Write as _};

use serde_json::Value;

/// Why a field is invalid: one of the `field.ErrorType` values of the API server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A value is missing (`FieldValueRequired`).
    Required,
    /// A value is malformed (`FieldValueInvalid`).
    Invalid,
    /// A value is not one of an enumeration (`FieldValueNotSupported`).
    NotSupported,
    /// A value collides with another one that must be unique (`FieldValueDuplicate`).
    Duplicate,
    /// A string is too long (`FieldValueTooLong`).
    TooLong,
    /// A list or map has too many items (`FieldValueTooMany`).
    TooMany,
    /// A value does not have the type (or string format) of its schema (`FieldValueTypeInvalid`).
    TypeInvalid,
    /// A value is not permitted (`FieldValueForbidden`).
    Forbidden,
    /// The server failed, not the value (`InternalError`).
    Internal,
}

impl ErrorKind {
    /// The `reason` of a `Status` cause: `FieldValueRequired`, `FieldValueInvalid`…
    pub fn reason(self) -> &'static str {
        match self {
            Self::Required => "FieldValueRequired",
            Self::Invalid => "FieldValueInvalid",
            Self::NotSupported => "FieldValueNotSupported",
            Self::Duplicate => "FieldValueDuplicate",
            Self::TooLong => "FieldValueTooLong",
            Self::TooMany => "FieldValueTooMany",
            Self::TypeInvalid => "FieldValueTypeInvalid",
            Self::Forbidden => "FieldValueForbidden",
            Self::Internal => "InternalError",
        }
    }

    /// The words the API server starts an error body with (`ErrorType.String()`).
    pub fn words(self) -> &'static str {
        match self {
            Self::Required => "Required value",
            Self::Invalid | Self::TypeInvalid => "Invalid value",
            Self::NotSupported => "Unsupported value",
            Self::Duplicate => "Duplicate value",
            Self::TooLong => "Too long",
            Self::TooMany => "Too many",
            Self::Forbidden => "Forbidden",
            Self::Internal => "Internal error",
        }
    }

    /// Whether the API server skips CEL rules when an error of this kind is present
    /// (`hasBlockingErr` in the custom resource strategy).
    pub fn blocks_cel(self) -> bool {
        matches!(self, Self::NotSupported | Self::Required | Self::TooLong | Self::TooMany | Self::TypeInvalid)
    }
}

/// One invalid field, as `field.Error` of the API server.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    /// Path of the field: `spec.interfaces[0].mac`, `spec.labels[key]`; `<nil>` where the API
    /// server reports no path (its root-level and schema-combinator errors).
    pub field: String,
    /// What is wrong.
    pub kind: ErrorKind,
    /// The value shown after the kind (`Invalid value: 70000`); `None` when the API server omits
    /// it. Not shown for [`ErrorKind::Required`], [`ErrorKind::Forbidden`],
    /// [`ErrorKind::TooLong`] and [`ErrorKind::Internal`].
    pub bad_value: Option<Value>,
    /// The explanation after the value.
    pub detail: String,
}

impl FieldError {
    /// Builds an error.
    pub fn new(field: impl Into<String>, kind: ErrorKind, bad_value: Option<Value>, detail: impl Into<String>) -> Self {
        Self { field: field.into(), kind, bad_value, detail: detail.into() }
    }

    /// `field.Required(path, detail)`.
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(field, ErrorKind::Required, None, detail)
    }

    /// `field.Invalid(path, value, detail)`.
    pub fn invalid(field: impl Into<String>, value: Value, detail: impl Into<String>) -> Self {
        Self::new(field, ErrorKind::Invalid, Some(value), detail)
    }

    /// `field.Forbidden(path, detail)`.
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(field, ErrorKind::Forbidden, None, detail)
    }

    /// `field.NotSupported(path, value, supported)`: the detail lists the supported values quoted.
    pub fn not_supported(field: impl Into<String>, value: Value, supported: &[String]) -> Self {
        let detail = if supported.is_empty() {
            String::new()
        } else {
            format!("supported values: {}", supported.iter().map(|s| go_quote(s)).collect::<Vec<_>>().join(", "))
        };
        Self::new(field, ErrorKind::NotSupported, Some(value), detail)
    }

    /// `field.Duplicate(path, value)`.
    pub fn duplicate(field: impl Into<String>, value: Value) -> Self {
        Self::new(field, ErrorKind::Duplicate, Some(value), "")
    }

    /// `field.TooLong(path, _, max)`: `may not be more than 63 bytes`.
    pub fn too_long(field: impl Into<String>, max: i64) -> Self {
        let detail = if max >= 0 {
            format!("may not be more than {max} {}", if max == 1 { "byte" } else { "bytes" })
        } else {
            "value is too long".to_owned()
        };
        Self::new(field, ErrorKind::TooLong, None, detail)
    }

    /// `field.TooMany(path, actual, max)`: `Too many: 33: must have at most 32 items`.
    pub fn too_many(field: impl Into<String>, actual: i64, max: i64) -> Self {
        let detail = if max >= 0 {
            format!("must have at most {max} {}", if max == 1 { "item" } else { "items" })
        } else {
            "has too many items".to_owned()
        };
        Self::new(field, ErrorKind::TooMany, (actual >= 0).then(|| Value::from(actual)), detail)
    }

    /// `field.TypeInvalid(path, value, detail)`.
    pub fn type_invalid(field: impl Into<String>, value: Value, detail: impl Into<String>) -> Self {
        Self::new(field, ErrorKind::TypeInvalid, Some(value), detail)
    }

    /// `field.InternalError(path, err)`.
    pub fn internal(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(field, ErrorKind::Internal, None, detail)
    }

    /// The `reason` of a `Status` cause (`FieldValueInvalid`…).
    pub fn reason(&self) -> &'static str {
        self.kind.reason()
    }

    /// The message without the field (`ErrorBody()`): `Invalid value: 70000: spec.port in body…`.
    pub fn body(&self) -> String {
        let mut body = self.kind.words().to_owned();
        let shows_value =
            !matches!(self.kind, ErrorKind::Required | ErrorKind::Forbidden | ErrorKind::TooLong | ErrorKind::Internal);
        if shows_value && let Some(value) = &self.bad_value {
            body.push_str(": ");
            body.push_str(&go_value(value));
        }
        if !self.detail.is_empty() {
            body.push_str(": ");
            body.push_str(&self.detail);
        }
        body
    }

    /// The whole message, as `field.Error.Error()`: `spec.port: Invalid value: 70000: …`.
    pub fn message(&self) -> String {
        format!("{}: {}", self.field, self.body())
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for FieldError {}

/// A schema the API server would not accept in a CustomResourceDefinition.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{}", aggregate(.errors))]
pub struct SchemaError {
    /// Every problem found, with paths such as
    /// `openAPIV3Schema.properties[spec].properties[port].type`.
    pub errors: Vec<FieldError>,
}

/// Renders errors the way `utilerrors.NewAggregate(...).Error()` does: one message alone, several
/// between brackets separated by commas (duplicates dropped).
pub fn aggregate(errors: &[FieldError]) -> String {
    let mut seen = std::collections::HashSet::new();
    let messages: Vec<String> = errors.iter().map(FieldError::message).filter(|m| seen.insert(m.clone())).collect();
    match messages.as_slice() {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// Renders a bad value as `field.Error.ErrorBody` does: numbers and booleans with `%v`, strings
/// with `%q`, anything else as JSON.
pub fn go_value(value: &Value) -> String {
    match value {
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => go_number_v(n),
        Value::String(s) => go_quote(s),
        other => go_json(other),
    }
}

/// A JSON number as Go prints an `int64` or `float64` with `%v`.
pub fn go_number_v(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        i.to_string()
    } else if let Some(u) = n.as_u64() {
        // Go decodes integers beyond int64 as float64.
        go_float_v(u as f64)
    } else {
        go_float_v(n.as_f64().unwrap_or(0.0))
    }
}

/// Splits a finite float into its shortest decimal digits and exponent: `65535.0` gives
/// `("65535", 4)` (the value is `6.5535e4`).
fn shortest_digits(f: f64) -> (String, i32) {
    let formatted = format!("{:e}", f.abs());
    let (mantissa, exponent) = formatted.split_once('e').unwrap_or((formatted.as_str(), "0"));
    (mantissa.replace('.', ""), exponent.parse().unwrap_or(0))
}

/// A float as Go's `%v` prints it (`strconv.FormatFloat(f, 'g', -1, 64)`): `65535`, `1.5`,
/// `1e+06`, `1e-05`.
pub fn go_float_v(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf".to_owned() } else { "-Inf".to_owned() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0".to_owned() } else { "0".to_owned() };
    }
    let (digits, exp) = shortest_digits(f);
    let sign = if f < 0.0 { "-" } else { "" };
    // strconv's 'g' with the shortest precision switches to the exponent form below 1e-4 and
    // from 1e6 on ("if precision was the shortest possible, use precision 6 for this decision").
    if !(-4..6).contains(&exp) {
        let mut out = String::from(sign);
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
        return out;
    }
    format!("{sign}{}", fixed(&digits, exp))
}

/// Writes `digits × 10^exp` without an exponent.
fn fixed(digits: &str, exp: i32) -> String {
    let n = digits.len() as i32;
    if exp < 0 {
        format!("0.{}{}", "0".repeat((-exp - 1) as usize), digits)
    } else if exp + 1 >= n {
        format!("{}{}", digits, "0".repeat((exp + 1 - n) as usize))
    } else {
        let split = (exp + 1) as usize;
        format!("{}.{}", &digits[..split], &digits[split..])
    }
}

/// A float as Go's `encoding/json` writes it: fixed notation, exponent form below 1e-6 and from
/// 1e21 on (`1e+21`, `1e-7`).
pub fn go_json_float(f: f64) -> String {
    if !f.is_finite() {
        return "null".to_owned();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0".to_owned() } else { "0".to_owned() };
    }
    let abs = f.abs();
    let sign = if f < 0.0 { "-" } else { "" };
    let (digits, exp) = shortest_digits(f);
    if !(1e-6..1e21).contains(&abs) {
        let mut out = String::from(sign);
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{}", if exp < 0 { '-' } else { '+' }, exp.abs());
        return out;
    }
    format!("{sign}{}", fixed(&digits, exp))
}

/// JSON as Go's `encoding/json` writes it: sorted keys, no spaces, `<`, `>` and `&` escaped.
pub fn go_json(value: &Value) -> String {
    let mut out = String::new();
    write_go_json(&mut out, value);
    out
}

fn write_go_json(out: &mut String, value: &Value) {
    // Iterative, so hostile nesting cannot overflow the stack.
    enum Step<'a> {
        Value(&'a Value),
        Raw(&'static str),
        Key(&'a str),
    }
    let mut stack = vec![Step::Value(value)];
    while let Some(step) = stack.pop() {
        match step {
            Step::Raw(s) => out.push_str(s),
            Step::Key(k) => {
                write_go_json_string(out, k);
                out.push(':');
            }
            Step::Value(v) => match v {
                Value::Null => out.push_str("null"),
                Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
                Value::Number(n) => {
                    if let Some(i) = n.as_i64() {
                        out.push_str(&i.to_string());
                    } else if let Some(u) = n.as_u64() {
                        out.push_str(&go_json_float(u as f64));
                    } else {
                        out.push_str(&go_json_float(n.as_f64().unwrap_or(0.0)));
                    }
                }
                Value::String(s) => write_go_json_string(out, s),
                Value::Array(items) => {
                    out.push('[');
                    stack.push(Step::Raw("]"));
                    for (i, item) in items.iter().enumerate().rev() {
                        stack.push(Step::Value(item));
                        if i > 0 {
                            stack.push(Step::Raw(","));
                        }
                    }
                }
                Value::Object(map) => {
                    out.push('{');
                    stack.push(Step::Raw("}"));
                    let mut keys: Vec<&String> = map.keys().collect();
                    keys.sort();
                    for (i, key) in keys.iter().enumerate().rev() {
                        if let Some(item) = map.get(key.as_str()) {
                            stack.push(Step::Value(item));
                        }
                        stack.push(Step::Key(key));
                        if i > 0 {
                            stack.push(Step::Raw(","));
                        }
                    }
                }
            },
        }
    }
}

fn write_go_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A string quoted as Go's `%q` (`strconv.Quote`) quotes it.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if go_is_print(c) => out.push(c),
            c if (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

/// An approximation of Go's `unicode.IsPrint`: graphic characters and the ASCII space; not
/// control, format, private-use, non-character or other space characters.
fn go_is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let u = c as u32;
    !matches!(u,
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x180E | 0x200B..=0x200F | 0x202A..=0x202E
        | 0x2060..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB | 0xE000..=0xF8FF | 0xFFFE | 0xFFFF
        | 0xF0000.. | 0xE0001 | 0xE0020..=0xE007F)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn floats_print_like_go_percent_v() {
        for (f, want) in [
            (65535.0, "65535"),
            (1.5, "1.5"),
            (123456.0, "123456"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5, "-2.5"),
            (1e21, "1e+21"),
            (0.1, "0.1"),
            (0.0, "0"),
        ] {
            assert_eq!(go_float_v(f), want, "{f}");
        }
    }

    #[test]
    fn floats_print_like_go_json() {
        for (f, want) in
            [(1.5, "1.5"), (1e20, "100000000000000000000"), (1e21, "1e+21"), (1e-7, "1e-7"), (1e-6, "0.000001")]
        {
            assert_eq!(go_json_float(f), want, "{f}");
        }
    }

    #[test]
    fn strings_quote_like_go_percent_q() {
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote("line\nfeed\ttab"), r#""line\nfeed\ttab""#);
        assert_eq!(go_quote("\u{1}\u{7f}"), r#""\x01\x7f""#);
        assert_eq!(go_quote("héllo ✓"), "\"héllo ✓\"");
        assert_eq!(go_quote("zero\u{200b}width"), r#""zero\u200bwidth""#);
    }

    #[test]
    fn json_like_go_encoding_json() {
        assert_eq!(
            go_json(&json!({"b": 1, "a": "<x>&", "c": [1.5, null, true]})),
            r#"{"a":"\u003cx\u003e\u0026","b":1,"c":[1.5,null,true]}"#
        );
        assert_eq!(go_json(&json!({})), "{}");
        assert_eq!(go_json(&json!([])), "[]");
    }

    #[test]
    fn messages_like_field_error_error() {
        let cases = [
            (FieldError::required("spec.selector", ""), "spec.selector: Required value"),
            (FieldError::required("spec.x", "must be set"), "spec.x: Required value: must be set"),
            (FieldError::forbidden("spec.x", "not allowed"), "spec.x: Forbidden: not allowed"),
            (FieldError::too_long("spec.x", 63), "spec.x: Too long: may not be more than 63 bytes"),
            (FieldError::too_long("spec.x", 1), "spec.x: Too long: may not be more than 1 byte"),
            (FieldError::too_many("spec.l", 33, 32), "spec.l: Too many: 33: must have at most 32 items"),
            (FieldError::too_many("spec.l", 2, 1), "spec.l: Too many: 2: must have at most 1 item"),
            (
                FieldError::not_supported("spec.mode", json!("x"), &["http".into(), "tcp".into()]),
                r#"spec.mode: Unsupported value: "x": supported values: "http", "tcp""#,
            ),
            (FieldError::duplicate("spec.l[2]", json!({"mac": "aa"})), r#"spec.l[2]: Duplicate value: {"mac":"aa"}"#),
            (FieldError::invalid("spec.port", json!(70000), "too big"), "spec.port: Invalid value: 70000: too big"),
            (FieldError::invalid("spec.f", json!(2e6), "too big"), "spec.f: Invalid value: 2e+06: too big"),
            (FieldError::invalid("<nil>", Value::Null, "skipped"), "<nil>: Invalid value: null: skipped"),
            (FieldError::invalid("spec.b", json!(true), "no"), "spec.b: Invalid value: true: no"),
            (FieldError::new("spec.o", ErrorKind::Invalid, None, "omitted"), "spec.o: Invalid value: omitted"),
            (FieldError::type_invalid("spec.n", json!("string"), "bad"), r#"spec.n: Invalid value: "string": bad"#),
            (FieldError::internal("spec", "boom"), "spec: Internal error: boom"),
        ];
        for (error, want) in cases {
            assert_eq!(error.message(), want);
        }
    }

    #[test]
    fn reasons() {
        let kinds = [
            (ErrorKind::Required, "FieldValueRequired"),
            (ErrorKind::Invalid, "FieldValueInvalid"),
            (ErrorKind::NotSupported, "FieldValueNotSupported"),
            (ErrorKind::Duplicate, "FieldValueDuplicate"),
            (ErrorKind::TooLong, "FieldValueTooLong"),
            (ErrorKind::TooMany, "FieldValueTooMany"),
            (ErrorKind::TypeInvalid, "FieldValueTypeInvalid"),
            (ErrorKind::Forbidden, "FieldValueForbidden"),
            (ErrorKind::Internal, "InternalError"),
        ];
        for (kind, reason) in kinds {
            assert_eq!(FieldError::new("f", kind, None, "").reason(), reason);
        }
    }

    #[test]
    fn aggregates_like_utilerrors() {
        let one = FieldError::required("a", "");
        let two = FieldError::forbidden("b", "no");
        assert_eq!(aggregate(std::slice::from_ref(&one)), "a: Required value");
        assert_eq!(aggregate(&[one.clone(), two, one]), "[a: Required value, b: Forbidden: no]");
    }
}
