//! eDeploy's `generate()`: CMDB entries expanded from ranges, exactly as `hardware.generate`
//! expands them.
//!
//! A value matching `^(.*?)([0-9]+-[0-9]+(:([0-9]+-[0-9]+))*)(.*)$` is a range (`host03-07`,
//! `10-12:20-22`, descending `7-3`, zero-padded when the start begins with `0` — and, as in the
//! reference, anything else of that shape such as `2024-01`); an IPv4-looking one is expanded
//! octet by octet (`10.0.1-2.2-254`); any other string is copied into every entry; a list gives
//! its elements in turn. Expansion stops at the shortest range or list. A block with no range
//! and no list gives one entry, itself.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use machinist_crds::cmdb::GenerateBlock;
use regex::Regex;

use crate::python::{self, Int};

/// One CMDB entry: variable name → value.
pub type Entry = BTreeMap<String, String>;

/// Most entries one block, or one whole CMDB, may expand to (the Cmdb schema's limit on
/// written entries).
pub const MAX_ENTRIES: usize = 65_536;
/// Longest pattern, in bytes.
pub const MAX_PATTERN_LEN: usize = 4096;

static RANGE_RE: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"^(.*?)([0-9]+-[0-9]+(:([0-9]+-[0-9]+))*)(.*)$").ok());
static IPV4_RANGE_RE: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"^[0-9:\-.]+$").ok());

/// What is wrong with one pattern.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatternProblem {
    /// An IPv4 octet range with nothing before its `-` (`10.0.0-1.-5`); the reference raises
    /// `IndexError` when it reaches it.
    #[error("range {0:?} has no start")]
    NoRangeStart(String),
    /// A bound above 2^128.
    #[error("number {0:?} is too large")]
    NumberTooLarge(String),
    /// Longer than [`MAX_PATTERN_LEN`].
    #[error("pattern is {0} bytes long, more than {MAX_PATTERN_LEN}")]
    TooLong(usize),
}

/// Why a `generate` block does not expand.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// One pattern is bad.
    #[error("pattern {key}: {pattern:?}: {problem}")]
    Pattern {
        /// Variable.
        key: String,
        /// Its pattern.
        pattern: String,
        /// What is wrong.
        problem: PatternProblem,
    },
    /// The block would give more than [`MAX_ENTRIES`] entries.
    #[error("expands to {count} entries, more than {MAX_ENTRIES}")]
    TooMany {
        /// Entries it would give (saturated at 2^128 - 1).
        count: u128,
    },
    /// A variable is both in `patterns` and in `lists`.
    #[error("variable {0} is both a pattern and a list")]
    Duplicate(String),
}

/// A CMDB's entries do not expand.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GenerateError {
    /// One block does not.
    #[error("generate block {block}: {source}")]
    Block {
        /// Index in `spec.generate`.
        block: usize,
        /// Why.
        source: BlockError,
    },
    /// Written and generated entries together exceed [`MAX_ENTRIES`].
    #[error("{0} entries in all, more than {MAX_ENTRIES}")]
    TooMany(usize),
}

/// Whether `value` contains a range, by the reference's `_RANGE_REGEXP`.
pub fn is_range(value: &str) -> bool {
    RANGE_RE.as_ref().is_some_and(|re| python::captures_dollar(re, value).is_some())
}

/// Expands one block.
pub fn expand(block: &GenerateBlock) -> Result<Vec<Entry>, BlockError> {
    for key in block.lists.keys() {
        if block.patterns.contains_key(key) {
            return Err(BlockError::Duplicate(key.clone()));
        }
    }
    let mut plain: Vec<(&str, &str)> = Vec::new();
    let mut generators: Vec<(&str, Generator)> = Vec::new();
    for (key, pattern) in &block.patterns {
        if pattern.len() > MAX_PATTERN_LEN {
            return Err(BlockError::Pattern {
                key: key.clone(),
                pattern: pattern.clone(),
                problem: PatternProblem::TooLong(pattern.len()),
            });
        }
        match Generator::parse(pattern) {
            Ok(Some(g)) => generators.push((key, g)),
            Ok(None) => plain.push((key, pattern)),
            Err(problem) => return Err(BlockError::Pattern { key: key.clone(), pattern: pattern.clone(), problem }),
        }
    }
    for (key, list) in &block.lists {
        generators.push((key, Generator::List(list)));
    }
    if generators.is_empty() {
        return Ok(vec![block.patterns.clone()]);
    }
    // Python walks the keys in order and stops at the first generator that is exhausted —
    // or raises, if that generator raises instead of stopping.
    generators.sort_by(|a, b| a.0.cmp(b.0));
    let count = generators.iter().map(|(_, g)| g.len()).min().unwrap_or(0);
    if let Some((key, g)) = generators.iter().find(|(_, g)| g.len() == count)
        && let Some(problem) = g.failure()
    {
        let pattern = block.patterns.get(*key).cloned().unwrap_or_default();
        return Err(BlockError::Pattern { key: (*key).to_owned(), pattern, problem });
    }
    if count > MAX_ENTRIES as u128 {
        return Err(BlockError::TooMany { count });
    }
    let count = count as usize;
    let mut entries: Vec<Entry> =
        (0..count).map(|_| plain.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()).collect();
    for (key, generator) in &generators {
        for (entry, value) in entries.iter_mut().zip(generator.values(count)) {
            entry.insert((*key).to_owned(), value);
        }
    }
    Ok(entries)
}

/// The values one pattern expands to (up to `limit`), or `None` for a value copied as is.
pub fn expand_pattern(pattern: &str, limit: usize) -> Result<Option<Vec<String>>, PatternProblem> {
    Ok(Generator::parse(pattern)?.map(|g| g.values(limit)))
}

/// One item of `_generate_range`'s output for one `a-b` (or the whole argument).
#[derive(Clone, Debug)]
enum Piece {
    /// `start` to `end` inclusive, in the direction of `end`, zero-padded to `width`.
    Numbers { start: u128, end: u128, width: usize },
    /// The whole argument of `_generate_range`, yielded once.
    Whole,
}

impl Piece {
    fn len(&self) -> u128 {
        match self {
            Piece::Numbers { start, end, .. } => start.abs_diff(*end).saturating_add(1),
            Piece::Whole => 1,
        }
    }
}

/// `_generate_range(num_range)`: its pieces, and whether it raises after them.
#[derive(Clone, Debug)]
struct RangeSeq {
    text: String,
    pieces: Vec<Piece>,
    failure: Option<PatternProblem>,
}

impl RangeSeq {
    fn parse(num_range: &str) -> Result<Self, PatternProblem> {
        let mut pieces = Vec::new();
        let mut failure = None;
        for rang in num_range.split(':') {
            let bounds: Vec<&str> = rang.split('-').collect();
            let [first, second] = bounds[..] else {
                pieces.push(Piece::Whole);
                continue;
            };
            if first.is_empty() {
                failure = Some(PatternProblem::NoRangeStart(rang.to_owned()));
                break;
            }
            let width = if first.starts_with('0') { first.chars().count() } else { 0 };
            match (python::int(first), python::int(second)) {
                (Int::TooLarge, _) => return Err(PatternProblem::NumberTooLarge(first.to_owned())),
                (Int::Value(_), Int::TooLarge) => return Err(PatternProblem::NumberTooLarge(second.to_owned())),
                (Int::Value(start), Int::Value(end)) => pieces.push(Piece::Numbers { start, end, width }),
                _ => pieces.push(Piece::Whole),
            }
        }
        Ok(Self { text: num_range.to_owned(), pieces, failure })
    }

    fn len(&self) -> u128 {
        self.pieces.iter().fold(0u128, |n, p| n.saturating_add(p.len()))
    }

    fn iter(&self) -> impl Iterator<Item = String> + '_ {
        self.pieces.iter().flat_map(move |piece| -> Box<dyn Iterator<Item = String> + '_> {
            match *piece {
                Piece::Whole => Box::new(std::iter::once(self.text.clone())),
                Piece::Numbers { start, end, width } => {
                    let format = move |n: u128| format!("{n:0width$}");
                    if end >= start {
                        Box::new((start..=end).map(format))
                    } else {
                        Box::new((end..=start).rev().map(format))
                    }
                }
            }
        })
    }
}

/// One key's sequence of values.
#[derive(Clone, Debug)]
enum Generator<'a> {
    /// A Python list.
    List(&'a [String]),
    /// `head` + each number + `foot`.
    Range { head: String, foot: String, numbers: RangeSeq },
    /// Four octets, each a `_generate_range`, in nested loops.
    Ipv4([RangeSeq; 4]),
}

impl<'a> Generator<'a> {
    /// `None` for a string without a range (copied into every entry).
    fn parse(pattern: &str) -> Result<Option<Self>, PatternProblem> {
        let Some(caps) = RANGE_RE.as_ref().and_then(|re| python::captures_dollar(re, pattern)) else {
            return Ok(None);
        };
        let parts: Vec<&str> = pattern.split('.').collect();
        let ipv4 = IPV4_RANGE_RE.as_ref().is_some_and(|re| python::captures_dollar(re, pattern).is_some());
        if ipv4 && parts.len() == 4 && (pattern.contains(':') || pattern.contains('-')) {
            let [a, b, c, d] = [parts[0], parts[1], parts[2], parts[3]].map(RangeSeq::parse);
            return Ok(Some(Generator::Ipv4([a?, b?, c?, d?])));
        }
        let text = |i: usize| caps.get(i).map_or("", |m| m.as_str()).to_owned();
        Ok(Some(Generator::Range { head: text(1), foot: text(5), numbers: RangeSeq::parse(&text(2))? }))
    }

    /// Values it gives before it stops or fails (saturated).
    fn len(&self) -> u128 {
        match self {
            Generator::List(list) => list.len() as u128,
            Generator::Range { numbers, .. } => numbers.len(),
            Generator::Ipv4(parts) => ipv4_shape(parts).0,
        }
    }

    /// What it raises once its values run out, if it raises rather than stops.
    fn failure(&self) -> Option<PatternProblem> {
        match self {
            Generator::List(_) => None,
            Generator::Range { numbers, .. } => numbers.failure.clone(),
            Generator::Ipv4(parts) => ipv4_shape(parts).1,
        }
    }

    fn values(&self, limit: usize) -> Vec<String> {
        match self {
            Generator::List(list) => list.iter().take(limit).cloned().collect(),
            Generator::Range { head, foot, numbers } => {
                numbers.iter().take(limit).map(|n| format!("{head}{n}{foot}")).collect()
            }
            Generator::Ipv4([a, b, c, d]) => {
                let mut out = Vec::new();
                'done: for w in a.iter() {
                    for x in b.iter() {
                        for y in c.iter() {
                            for z in d.iter() {
                                if out.len() >= limit {
                                    break 'done;
                                }
                                out.push(format!("{w}.{x}.{y}.{z}"));
                            }
                        }
                    }
                }
                out
            }
        }
    }
}

/// How many addresses the nested loops yield before they end, and whether they end by raising:
/// the innermost failing octet raises first, after one pass of the loops inside it.
fn ipv4_shape(parts: &[RangeSeq; 4]) -> (u128, Option<PatternProblem>) {
    let mut total: u128 = 1;
    let mut failure: Option<(u128, PatternProblem)> = None;
    for part in parts.iter().rev() {
        let n = part.len();
        failure = match (n, failure, &part.failure) {
            (0, _, Some(p)) => Some((0, p.clone())),
            (0, _, None) => None,
            (_, Some(inner), _) => Some(inner),
            (_, None, Some(p)) => Some((n.saturating_mul(total), p.clone())),
            (_, None, None) => None,
        };
        total = n.saturating_mul(total);
    }
    match failure {
        Some((at, p)) => (at, Some(p)),
        None => (total, None),
    }
}

/// The entries of a CMDB in index order: written entries first, then each block's, then the
/// shared `network` settings added where an entry does not set them (`netmask`, `gateway`,
/// `dns_servers` comma-separated, `domain`).
pub fn expand_cmdb(spec: &machinist_crds::CmdbSpec) -> Result<Vec<Entry>, GenerateError> {
    let mut entries: Vec<Entry> = spec.entries.clone();
    for (block, generate) in spec.generate.iter().enumerate() {
        let expanded = expand(generate).map_err(|source| GenerateError::Block { block, source })?;
        entries.extend(expanded);
        if entries.len() > MAX_ENTRIES {
            return Err(GenerateError::TooMany(entries.len()));
        }
    }
    if entries.len() > MAX_ENTRIES {
        return Err(GenerateError::TooMany(entries.len()));
    }
    if let Some(network) = &spec.network {
        let mut shared: Vec<(&str, String)> = Vec::new();
        if let Some(v) = &network.netmask {
            shared.push(("netmask", v.clone()));
        }
        if let Some(v) = &network.gateway {
            shared.push(("gateway", v.clone()));
        }
        if !network.dns_servers.is_empty() {
            shared.push(("dns_servers", network.dns_servers.join(",")));
        }
        if let Some(v) = &network.domain {
            shared.push(("domain", v.clone()));
        }
        for entry in &mut entries {
            for (key, value) in &shared {
                entry.entry((*key).to_owned()).or_insert_with(|| value.clone());
            }
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(patterns: &[(&str, &str)], lists: &[(&str, &[&str])]) -> GenerateBlock {
        GenerateBlock {
            patterns: patterns.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            lists: lists.iter().map(|(k, v)| ((*k).to_owned(), v.iter().map(|s| (*s).to_owned()).collect())).collect(),
        }
    }

    fn column(entries: &[Entry], key: &str) -> Vec<String> {
        entries.iter().map(|e| e.get(key).cloned().unwrap_or_default()).collect()
    }

    fn values(pattern: &str) -> Vec<String> {
        expand_pattern(pattern, 100_000).unwrap().unwrap()
    }

    #[test]
    fn seed_example() {
        let entries = expand(&block(&[("ip", "192.168.122.3-7"), ("hostname", "host03-07")], &[])).unwrap();
        assert_eq!(
            column(&entries, "ip"),
            ["192.168.122.3", "192.168.122.4", "192.168.122.5", "192.168.122.6", "192.168.122.7"]
        );
        assert_eq!(column(&entries, "hostname"), ["host03", "host04", "host05", "host06", "host07"]);
    }

    #[test]
    fn ranges_as_the_reference_writes_them() {
        assert_eq!(values("10-12"), ["10", "11", "12"]);
        assert_eq!(values("001-003"), ["001", "002", "003"]);
        assert_eq!(values("1-3:10-12"), ["1", "2", "3", "10", "11", "12"]);
        assert_eq!(values("100-100:94-90"), ["100", "94", "93", "92", "91", "90"]);
        assert_eq!(values("host10-12"), ["host10", "host11", "host12"]);
        assert_eq!(values("a7-5b"), ["a7b", "a6b", "a5b"]);
        assert_eq!(values("07-3"), ["07", "06", "05", "04", "03"]);
        assert_eq!(values("ceph001-006").last().map(String::as_str), Some("ceph006"));
        assert_eq!(expand_pattern("host", 10).unwrap(), None);
        assert_eq!(expand_pattern("D7-H.1.0.0", 10).unwrap(), None);
    }

    #[test]
    fn dates_expand_too() {
        let v = values("2024-01-15");
        assert_eq!(v.len(), 2024);
        assert_eq!(&v[..2], ["2024-15", "2023-15"]);
        assert_eq!(v.last().map(String::as_str), Some("1-15"));
    }

    #[test]
    fn ipv4_octets() {
        assert_eq!(values("10.0.1-2.2-254").len(), 2 * 253);
        assert_eq!(&values("10.0.1-2.253-254")[..], ["10.0.1.253", "10.0.1.254", "10.0.2.253", "10.0.2.254"]);
        assert_eq!(values("10.0.0.1-2:5"), ["10.0.0.1", "10.0.0.2", "10.0.0.1-2:5"]);
        assert_eq!(values("1.2.3.1-2:5-"), ["1.2.3.1", "1.2.3.2", "1.2.3.1-2:5-"]);
        assert_eq!(values("1.2.3.4-5\n"), ["1.2.3.4", "1.2.3.5"]);
        // An octet without a range is kept, once per `:`-separated part.
        assert_eq!(values("10.0.0-1.1:2"), ["10.0.0.1:2", "10.0.0.1:2", "10.0.1.1:2", "10.0.1.1:2"]);
    }

    #[test]
    fn ipv4_range_without_start_fails_when_reached() {
        let b = block(&[("ip", "1.2-3.3.-5")], &[]);
        assert!(matches!(expand(&b), Err(BlockError::Pattern { problem: PatternProblem::NoRangeStart(_), .. })));
        // Not reached when a list as short, earlier in key order, stops first.
        let b = block(&[("z", "1.2.3.1-2:-5")], &[("a", &["a", "b"])]);
        assert_eq!(expand(&b).unwrap().len(), 2);
        let b = block(&[("a", "1.2.3.1-2:-5")], &[("z", &["a", "b"])]);
        assert!(expand(&b).is_err());
        let b = block(&[("a", "1.2.3.1-2:-5")], &[("z", &["a"])]);
        assert_eq!(expand(&b).unwrap().len(), 1);
    }

    #[test]
    fn shortest_wins_plain_values_copied_lists_zip() {
        let b = block(
            &[("gw", "192.168.1.1"), ("ip", "192.168.1.10-12"), ("hostname", "host10-11")],
            &[("tag", &["a", "b", "c"])],
        );
        let entries = expand(&b).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(column(&entries, "gw"), ["192.168.1.1", "192.168.1.1"]);
        assert_eq!(column(&entries, "tag"), ["a", "b"]);
        let lists_only = expand(&block(&[], &[("hostname", &["hosta", "hostb", "hostc"])])).unwrap();
        assert_eq!(column(&lists_only, "hostname"), ["hosta", "hostb", "hostc"]);
        assert_eq!(expand(&block(&[("ip", "10.0.0.1-9")], &[("tag", &[])])).unwrap(), Vec::<Entry>::new());
    }

    #[test]
    fn no_range_gives_the_model_once() {
        let b = block(&[("gateway", "10.66.6.1"), ("ip", "10.66.6.100"), ("hostname", "hp-grid")], &[]);
        assert_eq!(expand(&b).unwrap(), vec![b.patterns.clone()]);
        assert_eq!(expand(&GenerateBlock::default()).unwrap(), vec![Entry::new()]);
    }

    #[test]
    fn expansion_is_capped() {
        let err = expand(&block(&[("ip", "10.0-255.0-255.0-255")], &[])).unwrap_err();
        assert_eq!(err, BlockError::TooMany { count: 256 * 256 * 256 });
        assert!(err.to_string().contains("16777216"), "{err}");
        let huge = format!("n1-{}", "9".repeat(38));
        assert!(matches!(expand(&block(&[("n", &huge)], &[])), Err(BlockError::TooMany { .. })));
        // A huge range zipped with a short list is fine.
        assert_eq!(expand(&block(&[("n", &huge)], &[("t", &["x"])])).unwrap().len(), 1);
        let too_big = format!("n1-{}", "9".repeat(40));
        assert!(matches!(
            expand(&block(&[("n", &too_big)], &[])),
            Err(BlockError::Pattern { problem: PatternProblem::NumberTooLarge(_), .. })
        ));
        let long = format!("h{}1-2", "x".repeat(MAX_PATTERN_LEN));
        assert!(matches!(
            expand(&block(&[("h", &long)], &[])),
            Err(BlockError::Pattern { problem: PatternProblem::TooLong(_), .. })
        ));
        assert_eq!(expand(&block(&[("a", "1-2")], &[("a", &["x"])])), Err(BlockError::Duplicate("a".into())));
    }

    #[test]
    fn cmdb_expansion_orders_entries_and_adds_network() {
        let spec = machinist_crds::CmdbSpec {
            entries: vec![
                [("ip".to_owned(), "10.0.0.2".to_owned()), ("netmask".to_owned(), "255.0.0.0".to_owned())].into(),
            ],
            generate: vec![block(&[("ip", "10.0.0.3-4")], &[])],
            network: Some(machinist_crds::cmdb::CmdbNetwork {
                netmask: Some("255.255.255.0".into()),
                gateway: Some("10.0.0.1".into()),
                dns_servers: vec!["10.0.0.53".into(), "10.0.0.54".into()],
                domain: None,
            }),
        };
        let entries = expand_cmdb(&spec).unwrap();
        assert_eq!(column(&entries, "ip"), ["10.0.0.2", "10.0.0.3", "10.0.0.4"]);
        assert_eq!(column(&entries, "netmask"), ["255.0.0.0", "255.255.255.0", "255.255.255.0"]);
        assert_eq!(column(&entries, "dns_servers")[1], "10.0.0.53,10.0.0.54");
        let named = machinist_crds::CmdbSpec {
            generate: vec![block(&[("ip", "10.0.0.1-2")], &[]), block(&[("ip", "1.2-3.3.-5")], &[])],
            ..spec.clone()
        };
        assert_eq!(
            expand_cmdb(&named).unwrap_err().to_string(),
            "generate block 1: pattern ip: \"1.2-3.3.-5\": range \"-5\" has no start"
        );
        let bad = machinist_crds::CmdbSpec {
            generate: vec![block(&[("n", "0-40000")], &[]), block(&[("n", "0-40000")], &[])],
            ..spec
        };
        assert!(matches!(expand_cmdb(&bad), Err(GenerateError::TooMany(_))));
    }
}
