//! The few Python built-ins the reference's decisions hinge on, reproduced exactly:
//! `float(str)`, `int(str)` on digit strings, `str.strip` of quotes and whitespace, and the
//! trailing-newline behaviour of `re`'s `$`.

use std::borrow::Cow;

/// Python's `str.isspace()` for one character (what `float()`, `int()` and `\s` skip).
pub(crate) fn is_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n'
            | '\x0b'
            | '\x0c'
            | '\r'
            | '\x1c'..='\x1f'
            | ' '
            | '\u{85}'
            | '\u{a0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200a}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202f}'
            | '\u{205f}'
            | '\u{3000}'
    )
}

/// The character class of Python's `\s` in a `str` pattern, in `regex` syntax.
pub(crate) const SPACE_CLASS: &str = r"[\s\x1c-\x1f]";

/// `s.strip('\'"')`: the reference strips quote characters from every function argument and
/// from the item value a function is applied to.
pub(crate) fn strip_quotes(s: &str) -> &str {
    s.trim_matches(|c| c == '\'' || c == '"')
}

/// Python's `float(s)` for a `str`: surrounding whitespace, a sign, `_` between digits,
/// `inf`/`infinity`/`nan` in any case. `None` where Python raises `ValueError`.
/// Non-ASCII digits, which Python also accepts, are not numbers here.
pub fn float(s: &str) -> Option<f64> {
    let cleaned: Cow<'_, str> = if s.contains('_') { Cow::Owned(remove_underscores(s)?) } else { Cow::Borrowed(s) };
    let text = cleaned.trim_matches(is_space);
    if !is_python_float_syntax(text) {
        return None;
    }
    text.parse::<f64>().ok()
}

/// PEP 515: an underscore is allowed only between two digits.
fn remove_underscores(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut prev = '\0';
    for c in s.chars() {
        if c == '_' {
            if !prev.is_ascii_digit() {
                return None;
            }
        } else {
            if prev == '_' && !c.is_ascii_digit() {
                return None;
            }
            out.push(c);
        }
        prev = c;
    }
    if prev == '_' {
        return None;
    }
    Some(out)
}

/// `[sign] (inf | infinity | nan | digits [. digits] [e [sign] digits] | . digits [...])`.
fn is_python_float_syntax(text: &str) -> bool {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    if ["inf", "infinity", "nan"].iter().any(|w| unsigned.eq_ignore_ascii_case(w)) {
        return true;
    }
    let bytes = unsigned.as_bytes();
    let mut i = 0;
    let mut digits = 0;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
        digits += 1;
    }
    if i < bytes.len() && bytes[i] == b'.' {
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
            digits += 1;
        }
    }
    if digits == 0 {
        return false;
    }
    if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
        i += 1;
        if i < bytes.len() && (bytes[i] == b'+' || bytes[i] == b'-') {
            i += 1;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    i == bytes.len()
}

/// Python's `int(s)` for the digit strings `generate()` feeds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Int {
    /// A value.
    Value(u128),
    /// Python raises `ValueError`.
    Invalid,
    /// Python would accept it but it does not fit in 128 bits.
    TooLarge,
}

/// `int(s)` where `s` holds ASCII digits and possibly surrounding whitespace (no sign, no `_`:
/// `generate()`'s callers never pass them).
pub(crate) fn int(s: &str) -> Int {
    let t = s.trim_matches(is_space);
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Int::Invalid;
    }
    match t.parse::<u128>() {
        Ok(v) => Int::Value(v),
        Err(_) => Int::TooLarge,
    }
}

/// `re.search` of a pattern anchored with `^…$` whose other parts cannot match a newline: in
/// Python, `$` also matches just before a final `\n`, so the text without that newline is
/// tried as well.
pub(crate) fn captures_dollar<'t>(re: &regex::Regex, text: &'t str) -> Option<regex::Captures<'t>> {
    re.captures(text).or_else(|| text.strip_suffix('\n').and_then(|t| re.captures(t)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_accepts_what_python_accepts() {
        for (text, value) in [
            ("4", 4.0),
            (" 10.5\n", 10.5),
            ("1_000", 1000.0),
            ("1.", 1.0),
            (".5", 0.5),
            ("+1e3", 1000.0),
            ("-2E-2", -0.02),
            ("InFiNiTy", f64::INFINITY),
            ("-inf", f64::NEG_INFINITY),
            ("1e400", f64::INFINITY),
            ("\u{a0}7\u{3000}", 7.0),
        ] {
            assert_eq!(float(text), Some(value), "{text:?}");
        }
        assert!(float("nan").is_some_and(f64::is_nan));
        assert!(float("-NaN").is_some_and(f64::is_nan));
    }

    #[test]
    fn float_rejects_what_python_rejects() {
        for text in
            ["", " ", ".", "1e", "e5", "0x10", "1__0", "_1", "1_", "1_.5", "1000GB", "1,5", "in f", "infinit", "٣"]
        {
            assert_eq!(float(text), None, "{text:?}");
        }
    }

    #[test]
    fn int_reads_digits_and_surrounding_whitespace() {
        assert_eq!(int("007"), Int::Value(7));
        assert_eq!(int("5\n"), Int::Value(5));
        assert_eq!(int(""), Int::Invalid);
        assert_eq!(int("1-2"), Int::Invalid);
        assert_eq!(int(&"9".repeat(40)), Int::TooLarge);
    }

    #[test]
    fn quotes_are_stripped_from_both_ends_only() {
        assert_eq!(strip_quotes("'sda'"), "sda");
        assert_eq!(strip_quotes("\"'a'b'\""), "a'b");
        assert_eq!(strip_quotes("a' "), "a' ");
    }

    #[test]
    fn dollar_matches_before_a_final_newline() -> Result<(), regex::Error> {
        let re = regex::Regex::new(r"^a(.*)$")?;
        assert!(captures_dollar(&re, "ab\n").is_some());
        assert!(captures_dollar(&re, "a\nb").is_none());
        Ok(())
    }
}
