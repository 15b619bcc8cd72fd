//! String formats: which ones the API server checks, and how.
//!
//! A CRD may name any `format`; the API server (1.34) keeps only the formats of
//! `apiextensions-apiserver/pkg/apiserver/validation/formats.go` and ignores the others, then
//! checks string values with kube-openapi's `strfmt` registry. Names are normalized by dropping
//! dashes (`date-time` is `datetime`), as go-openapi does.

use std::net::Ipv6Addr;
use std::sync::LazyLock;

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone as _, Utc};
use regex::Regex;

/// The normalized names of the formats a 1.34 API server validates in CRD schemas.
const SUPPORTED: &[&str] = &[
    "bsonobjectid",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
    "uuid3",
    "uuid4",
    "uuid5",
    "isbn",
    "isbn10",
    "isbn13",
    "creditcard",
    "ssn",
    "hexcolor",
    "rgbcolor",
    "byte",
    "password",
    "date",
    "duration",
    "datetime",
    "k8sshortname",
    "k8slongname",
];

/// go-openapi's format name normalization.
pub(crate) fn normalize(format: &str) -> String {
    format.replace('-', "")
}

/// Whether the API server keeps (and checks) this format; it blanks the others.
pub(crate) fn supported(format: &str) -> bool {
    SUPPORTED.contains(&normalize(format).as_str())
}

fn regex(pattern: &str) -> Option<Regex> {
    Regex::new(pattern).ok()
}

fn matches(re: &LazyLock<Option<Regex>>, s: &str) -> bool {
    re.as_ref().is_some_and(|re| re.is_match(s))
}

static HOSTNAME: LazyLock<Option<Regex>> = LazyLock::new(|| {
    regex(
        r"^([a-zA-Z0-9\p{S}\p{L}]((-?[a-zA-Z0-9\p{S}\p{L}]{0,62})?)|([a-zA-Z0-9\p{S}\p{L}](([a-zA-Z0-9\-\p{S}\p{L}]{0,61}[a-zA-Z0-9\p{S}\p{L}])?)(\.)){1,}([a-zA-Z\p{L}]){2,63})$",
    )
});
static UUID: LazyLock<Option<Regex>> =
    LazyLock::new(|| regex(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$"));
static UUID3: LazyLock<Option<Regex>> =
    LazyLock::new(|| regex(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?3[0-9a-f]{3}-?[0-9a-f]{4}-?[0-9a-f]{12}$"));
static UUID4: LazyLock<Option<Regex>> =
    LazyLock::new(|| regex(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?4[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$"));
static UUID5: LazyLock<Option<Regex>> =
    LazyLock::new(|| regex(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?5[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$"));
static BSON_OBJECT_ID: LazyLock<Option<Regex>> = LazyLock::new(|| regex(r"^[0-9a-fA-F]{24}$"));
static CREDIT_CARD: LazyLock<Option<Regex>> = LazyLock::new(|| {
    regex(
        r"^(?:4[0-9]{12}(?:[0-9]{3})?|5[1-5][0-9]{14}|6(?:011|5[0-9][0-9])[0-9]{12}|3[47][0-9]{13}|3(?:0[0-5]|[68][0-9])[0-9]{11}|(?:2131|1800|35[0-9]{3})[0-9]{11})$",
    )
});
static SSN: LazyLock<Option<Regex>> = LazyLock::new(|| regex(r"^[0-9]{3}[- ]?[0-9]{2}[- ]?[0-9]{4}$"));
static HEX_COLOR: LazyLock<Option<Regex>> = LazyLock::new(|| regex(r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$"));
static RGB_COLOR: LazyLock<Option<Regex>> = LazyLock::new(|| {
    let c = r"(0|[1-9][0-9]?|1[0-9][0-9]?|2[0-4][0-9]|25[0-5])";
    let ws = r"[\t\n\f\r ]*";
    regex(&format!(r"^rgb\({ws}{c}{ws},{ws}{c}{ws},{ws}{c}{ws}\)$"))
});
static BASE64: LazyLock<Option<Regex>> =
    LazyLock::new(|| regex(r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})$"));
static DATE_TIME_TAIL: LazyLock<Option<Regex>> =
    LazyLock::new(|| regex(r"^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))$"));
static DURATION_PART: LazyLock<Option<Regex>> = LazyLock::new(|| regex(r"(([0-9]+)[\t\n\f\r ]*([A-Za-zµ]+))"));
static SHORT_NAME: LazyLock<Option<Regex>> = LazyLock::new(|| regex(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"));
static LONG_NAME: LazyLock<Option<Regex>> =
    LazyLock::new(|| regex(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"));

/// Whether `s` is valid for the (normalized) format; formats outside the registry validate
/// nothing.
pub(crate) fn validates(normalized: &str, s: &str) -> bool {
    match normalized {
        "bsonobjectid" => matches(&BSON_OBJECT_ID, s),
        "uri" => is_request_uri(s),
        "email" => is_email(s),
        "hostname" => matches(&HOSTNAME, s) && s.len() <= 255 && s.split('.').all(|p| p.len() <= 63),
        "ipv4" => s.contains('.') && parse_ip_sloppy(s),
        "ipv6" => s.contains(':') && s.parse::<Ipv6Addr>().is_ok(),
        "cidr" => is_cidr(s),
        "mac" => is_mac(s),
        "uuid" => matches(&UUID, s),
        "uuid3" => matches(&UUID3, s),
        "uuid4" => matches(&UUID4, s),
        "uuid5" => matches(&UUID5, s),
        "isbn" => is_isbn10(s) || is_isbn13(s),
        "isbn10" => is_isbn10(s),
        "isbn13" => is_isbn13(s),
        "creditcard" => is_credit_card(s),
        "ssn" => s.len() == 11 && matches(&SSN, s),
        "hexcolor" => matches(&HEX_COLOR, s),
        "rgbcolor" => matches(&RGB_COLOR, s),
        "byte" => matches(&BASE64, s),
        "password" => true,
        "date" => parse_date(s).is_some(),
        "duration" => parse_duration(s).is_some(),
        "datetime" => is_date_time(s),
        "k8sshortname" => s.len() <= 63 && matches(&SHORT_NAME, s),
        "k8slongname" => s.len() <= 253 && matches(&LONG_NAME, s),
        _ => true,
    }
}

/// Whether the (normalized) format is in kube-openapi's registry, so that string values get
/// checked at all.
pub(crate) fn known(normalized: &str) -> bool {
    SUPPORTED.contains(&normalized)
}

/// Go's `url.ParseRequestURI` succeeding, approximately: an absolute URI or an absolute path, no
/// control characters, well-formed percent escapes and port.
fn is_request_uri(s: &str) -> bool {
    if s.is_empty() || s.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return false;
    }
    if s == "*" {
        return true;
    }
    let (scheme, rest) = match split_scheme(s) {
        Some(split) => split,
        None => return false,
    };
    let rest = rest.split_once('?').map_or(rest, |(before, _)| before);
    if !rest.starts_with('/') {
        return !scheme.is_empty() && valid_escapes(rest);
    }
    let path = if !scheme.is_empty() && rest.starts_with("//") {
        let authority_and_path = &rest[2..];
        let (authority, path) = match authority_and_path.find('/') {
            Some(i) => (&authority_and_path[..i], &authority_and_path[i..]),
            None => (authority_and_path, ""),
        };
        if !valid_authority(authority) {
            return false;
        }
        path
    } else {
        rest
    };
    valid_escapes(path)
}

/// Splits `scheme:rest` as Go's `getScheme` does; `None` for "missing protocol scheme".
fn split_scheme(s: &str) -> Option<(&str, &str)> {
    for (i, c) in s.char_indices() {
        match c {
            'a'..='z' | 'A'..='Z' => {}
            '0'..='9' | '+' | '-' | '.' if i > 0 => {}
            ':' => {
                if i == 0 {
                    return None;
                }
                return Some((&s[..i], &s[i + 1..]));
            }
            _ => return Some(("", s)),
        }
    }
    Some(("", s))
}

fn valid_escapes(s: &str) -> bool {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

fn valid_authority(authority: &str) -> bool {
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    if let Some(bracketed) = host.strip_prefix('[') {
        let Some((_, after)) = bracketed.split_once(']') else { return false };
        return after.is_empty() || after.strip_prefix(':').is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()));
    }
    match host.rsplit_once(':') {
        Some((_, port)) => port.bytes().all(|b| b.is_ascii_digit()),
        None => valid_escapes(host),
    }
}

/// `net/mail.ParseAddress` accepting the address, approximately: `local@domain` or
/// `Display Name <local@domain>`.
fn is_email(s: &str) -> bool {
    let s = s.trim_matches([' ', '\t']);
    let addr = match (s.rfind('<'), s.ends_with('>')) {
        (Some(open), true) => &s[open + 1..s.len() - 1],
        (None, false) => s,
        _ => return false,
    };
    let Some((local, domain)) = addr.rsplit_once('@') else { return false };
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii();
    let dot_atom = |s: &str| !s.is_empty() && s.split('.').all(|part| !part.is_empty() && part.chars().all(atext));
    let local_ok = dot_atom(local) || (local.len() >= 2 && local.starts_with('"') && local.ends_with('"'));
    let domain_ok = dot_atom(domain) || (domain.starts_with('[') && domain.ends_with(']'));
    local_ok && domain_ok
}

/// `netutils.ParseIPSloppy` succeeding: IPv4 with leading zeros allowed, or IPv6.
fn parse_ip_sloppy(s: &str) -> bool {
    parse_ipv4_sloppy(s) || (s.contains(':') && s.parse::<Ipv6Addr>().is_ok())
}

fn parse_ipv4_sloppy(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u32>().is_ok_and(|n| n <= 255))
}

/// `netutils.ParseCIDRSloppy` succeeding.
fn is_cidr(s: &str) -> bool {
    let Some((addr, prefix)) = s.split_once('/') else { return false };
    let bits = if parse_ipv4_sloppy(addr) {
        32
    } else if addr.contains(':') && addr.parse::<Ipv6Addr>().is_ok() {
        128
    } else {
        return false;
    };
    !prefix.is_empty() && prefix.bytes().all(|b| b.is_ascii_digit()) && prefix.parse::<u32>().is_ok_and(|n| n <= bits)
}

/// Go's `net.ParseMAC` succeeding: 6, 8 or 20 octets as `xx:xx…`, `xx-xx…` or `xxxx.xxxx…`.
fn is_mac(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 14 {
        return false;
    }
    let hex = |bytes: &[u8]| bytes.iter().all(u8::is_ascii_hexdigit);
    if b[2] == b':' || b[2] == b'-' {
        if !(b.len() + 1).is_multiple_of(3) {
            return false;
        }
        let n = (b.len() + 1) / 3;
        if n != 6 && n != 8 && n != 20 {
            return false;
        }
        let sep = b[2];
        (0..n).all(|i| {
            let x = i * 3;
            hex(&b[x..x + 2]) && (i == n - 1 || b[x + 2] == sep)
        })
    } else if b[4] == b'.' {
        if !(b.len() + 1).is_multiple_of(5) {
            return false;
        }
        let n = 2 * (b.len() + 1) / 5;
        if n != 6 && n != 8 && n != 20 {
            return false;
        }
        (0..n / 2).all(|i| {
            let x = i * 5;
            hex(&b[x..x + 4]) && (i == n / 2 - 1 || b[x + 4] == b'.')
        })
    } else {
        false
    }
}

fn without_spaces_and_dashes(s: &str) -> String {
    s.chars().filter(|c| !matches!(c, '\t' | '\n' | '\u{c}' | '\r' | ' ' | '-')).collect()
}

fn is_isbn10(s: &str) -> bool {
    let s = without_spaces_and_dashes(s);
    let b = s.as_bytes();
    if b.len() != 10 || !b[..9].iter().all(u8::is_ascii_digit) || !(b[9].is_ascii_digit() || b[9] == b'X') {
        return false;
    }
    let mut sum: u32 = (0..9).map(|i| (i as u32 + 1) * u32::from(b[i] - b'0')).sum();
    sum += 10 * if b[9] == b'X' { 10 } else { u32::from(b[9] - b'0') };
    sum.is_multiple_of(11)
}

fn is_isbn13(s: &str) -> bool {
    let s = without_spaces_and_dashes(s);
    let b = s.as_bytes();
    if b.len() != 13 || !b.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = (0..12).map(|i| if i % 2 == 0 { 1 } else { 3 } * u32::from(b[i] - b'0')).sum();
    u32::from(b[12] - b'0') == (10 - sum % 10) % 10
}

fn is_credit_card(s: &str) -> bool {
    let digits: String = s.chars().filter(char::is_ascii_digit).collect();
    if !matches(&CREDIT_CARD, &digits) {
        return false;
    }
    let mut sum = 0;
    for (i, c) in digits.bytes().rev().enumerate() {
        let mut d = u32::from(c - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d >= 10 {
                d = d % 10 + 1;
            }
        }
        sum += d;
    }
    sum % 10 == 0
}

/// `strfmt.IsDateTime`: the date, then the time after the first `t` (case-insensitively).
fn is_date_time(s: &str) -> bool {
    if s.len() < 4 {
        return false;
    }
    let lower = s.to_lowercase();
    let mut parts = lower.split('t');
    let (Some(date), Some(time)) = (parts.next(), parts.next()) else { return false };
    if parse_date(date).is_none() {
        return false;
    }
    let Some(re) = DATE_TIME_TAIL.as_ref() else { return false };
    let Some(caps) = re.captures(time) else { return false };
    let field = |i: usize| caps.get(i).map_or("", |m| m.as_str());
    field(1) <= "23" && field(2) <= "59" && field(3) <= "59"
}

/// `time.Parse("2006-01-02", s)`.
pub(crate) fn parse_date(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok()).flatten()
    };
    NaiveDate::from_ymd_opt(digits(0..4)? as i32, digits(5..7)?, digits(8..10)?)
}

/// `strfmt.ParseDateTime`: RFC 3339 with optional fraction, or a local time taken as UTC.
pub(crate) fn parse_date_time(s: &str) -> Option<DateTime<FixedOffset>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t);
    }
    let naive = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S").ok()?;
    Some(Utc.from_utc_datetime(&naive).fixed_offset())
}

/// `strfmt.ParseDuration`, in nanoseconds: Go's `time.ParseDuration`, else the lenient
/// `5 seconds` / `3d` forms.
pub(crate) fn parse_duration(s: &str) -> Option<i128> {
    if let Some(d) = parse_go_duration(s) {
        return Some(d);
    }
    let re = DURATION_PART.as_ref()?;
    const UNITS: &[(&[&str], i128)] = &[
        (&["ns", "nano"], 1),
        (&["us", "µs", "micro"], 1_000),
        (&["ms", "milli"], 1_000_000),
        (&["s", "sec"], 1_000_000_000),
        (&["m", "min"], 60_000_000_000),
        (&["h", "hr", "hour"], 3_600_000_000_000),
        (&["d", "day"], 86_400_000_000_000),
        (&["w", "wk", "week"], 604_800_000_000_000),
    ];
    let mut total: i128 = 0;
    let mut ok = false;
    for caps in re.captures_iter(s) {
        let factor: i128 = caps.get(2)?.as_str().parse::<i64>().ok()?.into();
        let unit = caps.get(3).map_or(String::new(), |m| m.as_str().trim().to_lowercase());
        for (variants, multiplier) in UNITS {
            let last = variants.len() - 1;
            for (i, variant) in variants.iter().enumerate() {
                if (i == last && unit.starts_with(variant)) || variant.eq_ignore_ascii_case(&unit) {
                    ok = true;
                    total = total.saturating_add(factor.saturating_mul(*multiplier));
                }
            }
        }
    }
    ok.then_some(total)
}

/// Go's `time.ParseDuration`, in nanoseconds.
fn parse_go_duration(s: &str) -> Option<i128> {
    let (negative, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number = &rest[..number_end];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return None;
        }
        let value: f64 = number.parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let multiplier: f64 = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 6e10,
            "h" => 3.6e12,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += value * multiplier;
    }
    if total > i64::MAX as f64 {
        return None;
    }
    let nanos = total.round() as i128;
    Some(if negative { -nanos } else { nanos })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(format: &str, valid: &[&str], invalid: &[&str]) {
        let normalized = normalize(format);
        for v in valid {
            assert!(validates(&normalized, v), "{format}: {v:?} should be valid");
        }
        for v in invalid {
            assert!(!validates(&normalized, v), "{format}: {v:?} should be invalid");
        }
    }

    #[test]
    fn supported_formats_are_the_api_servers() {
        for f in ["date-time", "datetime", "date", "duration", "byte", "uuid", "k8s-short-name", "ipv4", "password"] {
            assert!(supported(f), "{f}");
        }
        for f in ["int32", "int64", "float", "double", "foo", "quantity"] {
            assert!(!supported(f), "{f}");
        }
    }

    #[test]
    fn dates_and_times() {
        check("date", &["2024-02-29", "1999-12-31"], &["2023-02-29", "2024-1-01", "2024-13-01", "20240101", ""]);
        check(
            "date-time",
            &["2024-01-01T10:00:00Z", "2024-01-01t10:00:00.123+02:00", "2024-01-01T23:59:59-07:00"],
            &["2024-01-01", "2024-01-01T24:00:00Z", "2024-01-01T10:00:00", "yesterday", "2024-01-01T10:60:00Z"],
        );
        check(
            "duration",
            &["1h", "1h30m", "-1.5s", "300ms", "0", "3 days", "5 seconds", "2w"],
            &["", "1x", "abc", "h"],
        );
        assert_eq!(parse_duration("1h30m"), Some(5_400_000_000_000));
        assert_eq!(parse_duration("3d"), Some(3 * 86_400_000_000_000));
        assert!(parse_date_time("2024-01-01T10:00:00Z").is_some());
    }

    #[test]
    fn encodings_and_identifiers() {
        check("byte", &["aGVsbG8=", "aGVsbG8h", "YQ=="], &["", "zz", "aGVsbG8", "a b="]);
        check(
            "uuid",
            &["123e4567-e89b-12d3-a456-426614174000", "123E4567E89B12D3A456426614174000"],
            &["123e4567", "g23e4567-e89b-12d3-a456-426614174000"],
        );
        check("uuid4", &["123e4567-e89b-42d3-a456-426614174000"], &["123e4567-e89b-12d3-a456-426614174000"]);
        check("bsonobjectid", &["507f1f77bcf86cd799439011"], &["507f1f77bcf86cd79943901", "zzzf1f77bcf86cd799439011"]);
        check("k8s-short-name", &["web-1", "a"], &["Web", "-a", "a-", &"a".repeat(64)]);
        check("k8s-long-name", &["a.b-c.d"], &["a..b", "A.b", ".a"]);
        check("password", &["", "anything"], &[]);
        check("hexcolor", &["#fff", "ABCDEF"], &["#ffff", "#ggg"]);
        check("rgbcolor", &["rgb(0, 128,255)"], &["rgb(256,0,0)", "rgb(1,2)"]);
        check("ssn", &["123-45-6789", "123 45 6789"], &["123456789", "123-456-789"]);
        check("isbn10", &["0321751043", "0-321-75104-3"], &["0321751044"]);
        check("isbn13", &["978-0321751041"], &["9780321751042"]);
        check("isbn", &["0321751043", "978-0321751041"], &["123"]);
        check("creditcard", &["4111 1111 1111 1111", "5500-0000-0000-0004"], &["4111111111111112", "1234"]);
    }

    #[test]
    fn network_formats() {
        check("ipv4", &["10.0.0.1", "010.0.0.1", "::ffff:1.2.3.4"], &["10.0.0", "256.0.0.1", "::1", "a.b.c.d"]);
        check("ipv6", &["::1", "fe80::1", "::ffff:1.2.3.4"], &["10.0.0.1", "fe80::1%eth0", ":::"]);
        check("cidr", &["10.0.0.0/8", "fd00::/64"], &["10.0.0.0/33", "10.0.0.0", "fd00::/129"]);
        check(
            "mac",
            &["aa:bb:cc:dd:ee:ff", "AA-BB-CC-DD-EE-FF", "aabb.ccdd.eeff", "00:00:5e:00:53:01:02:03"],
            &["aa:bb:cc:dd:ee", "aa:bb-cc:dd:ee:ff", "zz:bb:cc:dd:ee:ff"],
        );
        check(
            "hostname",
            &["example.com", "a", "my-host.example.org"],
            &["-a.com", "a..b", &format!("{}.com", "a".repeat(64))],
        );
        check(
            "email",
            &["a@example.com", "Jo <jo@example.com>", "first.last+tag@sub.example.org"],
            &["no-at", "@example.com", "a@", "a..b@c.d"],
        );
        check(
            "uri",
            &["https://example.com/path?q=1", "mailto:a@b.c", "/absolute/path", "http://[::1]:8080/"],
            &["", "relative/path", "http://host:port/", "https://x/%zz", "://x"],
        );
    }
}
