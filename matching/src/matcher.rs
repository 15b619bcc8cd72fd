//! Matching a hardware report against a profile's rules with eDeploy's exact semantics.
//!
//! The reference (`hardware.matcher.match_all`) takes the rules in order; each consumes the
//! first remaining item that satisfies it (an item equal to the whole rule first, then the first
//! item whose elements match, captures consistent with earlier ones). When a rule finds nothing,
//! it backtracks: every earlier rule that captured a new variable left a *point*; the most recent
//! is retried first, with the item it took moved to the end of the list so that another one is
//! preferred, recursively, down to 50 levels. The captures and the verdict depend on that exact
//! order and on the depth limit, so this module reproduces the same search — but remembers the
//! states already known to fail (with the depth they failed at), cuts cycles that provably fail,
//! and stops at once when no assignment of distinct items to the rules exists. Those shortcuts
//! never change a result; a step budget bounds what hostile rules can cost.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use machinist_crds::Quad;

use crate::rule::{Element, Rule, RuleSet};

/// Deepest backtracking level the reference explores (its `level == 50` guard).
pub const MAX_LEVEL: u32 = 50;

/// What one match may cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most elementary steps (an item examined, a search state entered) before giving up.
    pub max_steps: u64,
    /// Remember failed states, cut provably failing cycles, give up early when no assignment of
    /// distinct items exists, and run the leading rules that capture nothing without a search.
    /// Turning it off gives the reference's plain (exponential) search, for testing that the
    /// shortcuts change nothing.
    pub shortcuts: bool,
    /// Backtracking depth: the reference's is [`MAX_LEVEL`]; other values diverge from it and
    /// are for diagnostics (1 means no backtracking at all).
    pub max_level: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_steps: 2_000_000, shortcuts: true, max_level: MAX_LEVEL }
    }
}

/// A hardware report, indexed for matching against many profiles.
#[derive(Debug)]
pub struct Hardware<'a> {
    items: &'a [Quad],
    /// Runs of consecutive items of one class, in report order (`hardware-detect` groups a
    /// class's items, so there are few).
    runs: Vec<(&'a str, u32, u32)>,
}

impl<'a> Hardware<'a> {
    /// Indexes the items of a report (`hardware-detect`'s list, in its order).
    pub fn new(items: &'a [Quad]) -> Self {
        let mut runs: Vec<(&'a str, u32, u32)> = Vec::with_capacity(16);
        for (index, item) in items.iter().enumerate() {
            let class = item.class.as_str();
            match runs.last_mut() {
                Some(run) if same(run.0, class) => run.2 = index as u32 + 1,
                _ => runs.push((class, index as u32, index as u32 + 1)),
            }
        }
        Self { items, runs }
    }

    /// The items.
    pub fn items(&self) -> &'a [Quad] {
        self.items
    }

    /// The items of `class`, in report order.
    fn class<'s>(&'s self, class: &'s str) -> impl Iterator<Item = u32> + 's {
        self.runs.iter().filter(move |(c, _, _)| same(c, class)).flat_map(|(_, start, end)| *start..*end)
    }
}

/// What a successful match captured.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Captures {
    /// Every captured variable, without dollars (`disk`, `eth`, `mac`…); where both `$x` and
    /// `$$x` were captured, the `$$x` value.
    pub variables: BTreeMap<String, String>,
    /// The `$$` variables only: the keys that select the CMDB entry.
    pub selectors: BTreeMap<String, String>,
}

/// Why a profile's rules did not match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch<'r> {
    /// Index of the rule that found no item on the first pass (before backtracking), when a
    /// rule is to blame.
    pub rule: Option<usize>,
    /// Explanation for people.
    pub reason: Cow<'r, str>,
}

/// The verdict of matching one report against one profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome<'r> {
    /// Every rule matched.
    Matched(Captures),
    /// Some rule did not.
    Mismatch(Mismatch<'r>),
}

impl Outcome<'_> {
    /// The captures, when matched.
    pub fn captures(&self) -> Option<&Captures> {
        match self {
            Outcome::Matched(c) => Some(c),
            Outcome::Mismatch(_) => None,
        }
    }
}

/// Matches a report against rules, within the default [`Limits`].
pub fn match_rules<'r>(rules: &'r RuleSet, hardware: &Hardware<'_>) -> Outcome<'r> {
    Matcher::new(hardware, Limits::default()).match_rules(rules)
}

/// Matches a report against rules, within `limits`. Running out of steps is a mismatch
/// that names no rule.
pub fn match_rules_with<'r>(rules: &'r RuleSet, hardware: &Hardware<'_>, limits: Limits) -> Outcome<'r> {
    Matcher::new(hardware, limits).match_rules(rules)
}

/// Matches one report against many profiles: what it learns about a rule on this report
/// (which items may satisfy it) is shared by every profile that has the same rule.
#[derive(Debug)]
pub struct Matcher<'r, 'c, 'h> {
    hardware: &'c Hardware<'h>,
    limits: Limits,
    cache: Cache<'r>,
    buffers: Buffers<'h>,
}

/// Vectors reused from one profile to the next.
#[derive(Debug, Default)]
struct Buffers<'h> {
    dead: Vec<u32>,
    bindings: Vec<Option<&'h str>>,
    slots: Vec<Option<usize>>,
    consumed: Vec<u32>,
    points: Vec<Point>,
    log: Vec<u32>,
    owner: Vec<u32>,
    seen: Vec<u32>,
}

impl<'r, 'c, 'h> Matcher<'r, 'c, 'h> {
    /// A matcher for `hardware`, within `limits` (per profile).
    pub fn new(hardware: &'c Hardware<'h>, limits: Limits) -> Self {
        Self { hardware, limits, cache: Cache::with_capacity(32), buffers: Buffers::default() }
    }

    /// Matches the report against rules.
    pub fn match_rules(&mut self, rules: &'r RuleSet) -> Outcome<'r> {
        // Most profiles fail on one of their first rules, which capture nothing (another vendor,
        // another product, too few disks): the first pass over such rules needs no search.
        if self.limits.shortcuts
            && let Some(mismatch) = self.leading_rules(rules)
        {
            return Outcome::Mismatch(mismatch);
        }
        let mut search =
            Search::new(rules, self.hardware, self.limits, &mut self.cache, std::mem::take(&mut self.buffers));
        let outcome = match search.run(0, None, 0, None) {
            Ok(Some(bindings)) => {
                let captured = captures(rules, &bindings);
                search.buffers.bindings = bindings;
                Outcome::Matched(captured)
            }
            Ok(None) => Outcome::Mismatch(search.explain()),
            Err(Exhausted) => Outcome::Mismatch(Mismatch {
                rule: None,
                reason: Cow::Owned(format!(
                    "gave up after {} steps: the rules leave eDeploy's backtracking too many combinations to try",
                    self.limits.max_steps
                )),
            }),
        };
        self.buffers = std::mem::take(&mut search.buffers);
        outcome
    }
}

impl<'r> Matcher<'r, '_, '_> {
    /// The first pass over the rules before the first that captures: each takes the first
    /// item it allows (an item equal to it first). The mismatch, if one of them finds none.
    fn leading_rules(&mut self, rules: &'r RuleSet) -> Option<Mismatch<'r>> {
        let dead = &mut self.buffers.dead;
        dead.clear();
        for (j, rule) in rules.rules.iter().enumerate() {
            if rule.captures || dead.len() >= DEAD_LIST {
                return None;
            }
            let (slot, _) = self.cache.slot(rule, self.hardware);
            let (exact, candidates) = self.cache.view(slot);
            let free = |l: &&u32| !dead.contains(*l);
            let first = exact.iter().find(free).or_else(|| candidates.iter().map(|c| &c.line).find(free));
            match first {
                Some(&line) => dead.push(line),
                None => return Some(Mismatch { rule: Some(j), reason: Cow::Borrowed(&rule.unmatched) }),
            }
        }
        None
    }
}

fn captures(rules: &RuleSet, bindings: &[Option<&str>]) -> Captures {
    let mut out = Captures::default();
    for selector in [false, true] {
        for (variable, value) in rules.variables.iter().zip(bindings) {
            if variable.selector != selector {
                continue;
            }
            if let Some(value) = value {
                out.variables.insert(variable.name.clone(), (*value).to_owned());
                if selector {
                    out.selectors.insert(variable.name.clone(), (*value).to_owned());
                }
            }
        }
    }
    out
}

const DEAD: u32 = u32::MAX;

fn same_quad(a: &Quad, b: &Quad) -> bool {
    let (a, b) = (a.elements(), b.elements());
    (0..4).all(|e| same(a[e], b[e]))
}

/// String equality without a `memcmp` call for the short strings reports are made of.
#[inline]
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && (a.len() > 24 && a == b || a.len() <= 24 && a.iter().zip(b).all(|(x, y)| x == y))
}

/// The remaining items and their order, and the variables bound so far.
///
/// `pos[i]` orders the items still in the list (`DEAD` once consumed); items never moved keep
/// their index, items moved to the end get increasing positions from `items.len()` on. While
/// nothing has moved and few items are consumed (the first pass), `pos` is empty and `dead`
/// lists the consumed items.
#[derive(Clone, Debug)]
struct State<'h> {
    pos: Vec<u32>,
    dead: Vec<u32>,
    moved: bool,
    bindings: Vec<Option<&'h str>>,
}

/// Consumed items a state lists before it switches to `pos`.
const DEAD_LIST: usize = 16;

impl State<'_> {
    #[inline]
    fn at(&self, line: u32) -> u32 {
        if self.pos.is_empty() { if self.dead.contains(&line) { DEAD } else { line } } else { self.pos[line as usize] }
    }

    fn consume(&mut self, line: u32, items: usize) {
        if !self.pos.is_empty() {
            self.pos[line as usize] = DEAD;
        } else if self.dead.len() < DEAD_LIST {
            self.dead.push(line);
        } else {
            self.pos.extend(0..items as u32);
            for &l in &self.dead {
                self.pos[l as usize] = DEAD;
            }
            self.pos[line as usize] = DEAD;
        }
    }
}

/// A search state, as far as the outcome is concerned: the next rule, the remaining items in
/// order (which are alive, and the order of those moved to the end), and the bindings.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key<'h> {
    rule: usize,
    alive: Vec<u64>,
    moved: Vec<u32>,
    bindings: Vec<Option<&'h str>>,
}

/// A backtracking point: retry `rule` from the state before it, its item moved to the end.
/// The bindings before the rule are the final ones without the variables captured from
/// `captured` on in the call's capture log (captures only ever add bindings).
#[derive(Debug)]
struct Point {
    rule: usize,
    line: u32,
    captured: usize,
    consumed: usize,
}

/// An item that may satisfy a rule whatever the bindings: which elements capture.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    line: u32,
    captures: u8,
}

/// What a rule's text allows on one report: items equal to the whole rule, and items whose
/// non-variable elements match (ranges of [`Cache::exact`] and [`Cache::candidates`]).
#[derive(Debug, Default, Clone, Copy)]
struct Prepared {
    exact: (usize, usize),
    candidates: (usize, usize),
}

/// [`Prepared`] rules of one report, by rule text.
#[derive(Debug, Default)]
struct Cache<'c> {
    entries: Vec<(&'c Quad, Prepared)>,
    index: HashMap<u64, usize, std::hash::BuildHasherDefault<HashOfHash>>,
    exact: Vec<u32>,
    candidates: Vec<Candidate>,
    /// Items by literal class, type and name (a rule having them, and the range of
    /// `prefix_lines`), shared by rules that differ in their value only.
    prefixes: HashMap<u64, (&'c Quad, usize, usize), std::hash::BuildHasherDefault<HashOfHash>>,
    prefix_lines: Vec<u32>,
}

/// The rules' keys are already hashes.
#[derive(Debug, Default)]
struct HashOfHash(u64);

impl std::hash::Hasher for HashOfHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl<'c> Cache<'c> {
    fn with_capacity(rules: usize) -> Self {
        Self {
            entries: Vec::with_capacity(rules),
            index: HashMap::with_capacity_and_hasher(rules, Default::default()),
            exact: Vec::with_capacity(rules),
            candidates: Vec::with_capacity(2 * rules),
            prefixes: HashMap::with_capacity_and_hasher(rules, Default::default()),
            prefix_lines: Vec::with_capacity(2 * rules),
        }
    }

    /// The items equal to the rule of `slot`, and its candidates.
    fn view(&self, slot: usize) -> (&[u32], &[Candidate]) {
        let p = self.entries[slot].1;
        (&self.exact[p.exact.0..p.exact.1], &self.candidates[p.candidates.0..p.candidates.1])
    }

    /// The entry of `rule`, computed unless a rule with the same text was; and the steps it
    /// took.
    fn slot(&mut self, rule: &'c Rule, hardware: &Hardware<'_>) -> (usize, u64) {
        if let Some(&i) = self.index.get(&rule.hash)
            && same_quad(self.entries[i].0, &rule.quad)
        {
            return (i, 1);
        }
        let mut steps = 0;
        let lines = match rule.prefix {
            Some(hash) => {
                let (first, start, end) = match self.prefixes.get(&hash) {
                    Some(&(q, a, b))
                        if same(q.class.as_str(), &rule.quad.class)
                            && same(q.r#type.as_str(), &rule.quad.r#type)
                            && same(q.name.as_str(), &rule.quad.name) =>
                    {
                        (false, a, b)
                    }
                    _ => {
                        let start = self.prefix_lines.len();
                        for l in hardware.class(&rule.quad.class) {
                            steps += 1;
                            let v = hardware.items[l as usize].elements();
                            if same(v[2], &rule.quad.name) && same(v[1], &rule.quad.r#type) {
                                self.prefix_lines.push(l);
                            }
                        }
                        (true, start, self.prefix_lines.len())
                    }
                };
                if first {
                    self.prefixes.entry(hash).or_insert((&rule.quad, start, end));
                }
                Lines::Prefix(&self.prefix_lines[start..end])
            }
            None => Lines::Class,
        };
        let (prepared, more) = compute(rule, hardware, lines, &mut self.exact, &mut self.candidates);
        steps += more;
        self.entries.push((&rule.quad, prepared));
        let i = self.entries.len() - 1;
        self.index.entry(rule.hash).or_insert(i);
        (i, steps)
    }
}

/// The items a rule is checked against.
enum Lines<'a> {
    /// Items whose class, type and name equal the rule's (all three literal).
    Prefix(&'a [u32]),
    /// The items of the rule's class (and all items for pass 2 if the class is not literal).
    Class,
}

/// What `rule` allows on `hardware` (appended to `exact` and `candidates`), and the steps it
/// took.
fn compute(
    rule: &Rule,
    hardware: &Hardware<'_>,
    lines: Lines<'_>,
    exact: &mut Vec<u32>,
    candidates: &mut Vec<Candidate>,
) -> (Prepared, u64) {
    let items = hardware.items;
    let raw = rule.quad.elements();
    let mut steps = 1;
    let mut out = Prepared { exact: (exact.len(), exact.len()), candidates: (candidates.len(), candidates.len()) };
    // An item equal to the whole rule is of the rule's class; the name is the most telling
    // element.
    let equal = |v: &[&str; 4]| same(v[2], raw[2]) && same(v[1], raw[1]) && same(v[3], raw[3]);
    let literal = |e: usize, v: &str| !matches!(rule.elements[e], Element::Literal) || same(v, raw[e]);
    // A rule of literals only is matched by equal items alone; a rule with an opaque element
    // only by equal items too.
    let only_equal = rule.elements.iter().all(|e| matches!(e, Element::Literal))
        || rule.elements.iter().any(|e| matches!(e, Element::Opaque));
    let class_literal = matches!(rule.elements[0], Element::Literal);
    let mut pass2 = |l: u32, values: &[&str; 4], class_checked: bool| {
        if !(literal(2, values[2])
            && literal(1, values[1])
            && literal(3, values[3])
            && (class_checked || literal(0, values[0])))
        {
            return;
        }
        let mut captures = 0u8;
        for (e, element) in rule.elements.iter().enumerate() {
            match element {
                Element::Literal | Element::Opaque => {}
                Element::Capture(_) => captures |= 1 << e,
                Element::Test(expr) => {
                    if expr.test(values[e]) != Ok(true) {
                        return;
                    }
                }
                Element::CaptureIf(_, expr) => match expr.test(values[e]) {
                    Ok(true) => captures |= 1 << e,
                    Ok(false) if same(values[e], raw[e]) => {}
                    _ => return,
                },
            }
        }
        candidates.push(Candidate { line: l, captures });
    };
    if let Lines::Prefix(lines) = lines {
        // Class, type and name are known equal: only the value is left to check.
        for &l in lines {
            steps += 1;
            let values = items[l as usize].elements();
            if same(values[3], raw[3]) {
                exact.push(l);
            }
            if !only_equal {
                pass2(l, &values, true);
            }
        }
        out.exact.1 = exact.len();
        out.candidates.1 = candidates.len();
        return (out, steps);
    }
    for l in hardware.class(raw[0]) {
        steps += 1;
        let values = items[l as usize].elements();
        if equal(&values) {
            exact.push(l);
        }
        if class_literal && !only_equal {
            pass2(l, &values, true);
        }
    }
    if !class_literal && !only_equal {
        steps += items.len() as u64;
        for (l, item) in items.iter().enumerate() {
            pass2(l as u32, &item.elements(), false);
        }
    }
    out.exact.1 = exact.len();
    out.candidates.1 = candidates.len();
    (out, steps)
}

/// Up to four captures of one rule on one item, in element order.
#[derive(Clone, Copy)]
struct Caps<'h> {
    len: usize,
    items: [(u32, &'h str); 4],
}

impl<'h> Caps<'h> {
    const EMPTY: Caps<'h> = Caps { len: 0, items: [(0, ""); 4] };

    fn as_slice(&self) -> &[(u32, &'h str)] {
        &self.items[..self.len]
    }
}

#[derive(Debug)]
struct Exhausted;

struct Search<'m, 'r, 'c, 'h> {
    rules: &'r RuleSet,
    items: &'h [Quad],
    hardware: &'c Hardware<'h>,
    cache: &'m mut Cache<'r>,
    /// Per rule (`slots`), its entry in the cache once prepared; the first pass's vectors.
    buffers: Buffers<'h>,
    limits: Limits,
    steps: u64,
    next_pos: u32,
    memo: HashMap<Key<'h>, u32>,
    /// Frames of the current recursion (levels ≥ 1): their key and whether they are trying
    /// their last point.
    stack: Vec<(Key<'h>, bool)>,
    /// Where the first pass failed: the rule, the values bound to its variables, and whether
    /// there were points to backtrack to.
    failure: Option<(usize, [Option<&'h str>; 4], bool)>,
}

impl<'m, 'r, 'c, 'h> Search<'m, 'r, 'c, 'h> {
    fn new(
        rules: &'r RuleSet,
        hardware: &'c Hardware<'h>,
        limits: Limits,
        cache: &'m mut Cache<'r>,
        mut buffers: Buffers<'h>,
    ) -> Self {
        buffers.slots.clear();
        buffers.slots.resize(rules.rules.len(), None);
        Self {
            rules,
            items: hardware.items,
            hardware,
            cache,
            buffers,
            limits,
            steps: 0,
            next_pos: hardware.items.len() as u32,
            memo: HashMap::new(),
            stack: Vec::new(),
            failure: None,
        }
    }

    fn tick(&mut self, n: u64) -> Result<(), Exhausted> {
        self.steps += n;
        if self.steps > self.limits.max_steps { Err(Exhausted) } else { Ok(()) }
    }

    /// `match_all` from rule `first` on `start` (`None`: the whole report, nothing bound), at
    /// backtracking `level`.
    fn run(
        &mut self,
        level: u32,
        start: Option<&State<'h>>,
        first: usize,
        key: Option<Key<'h>>,
    ) -> Result<Option<Vec<Option<&'h str>>>, Exhausted> {
        if level >= self.limits.max_level {
            return Ok(None);
        }
        self.tick(1)?;
        let budget = self.limits.max_level - level;
        if let Some(k) = &key
            && self.memo.get(k).is_some_and(|failed| *failed >= budget)
        {
            return Ok(None);
        }
        let mut cur = match start {
            Some(state) => state.clone(),
            None => {
                let mut dead = std::mem::take(&mut self.buffers.dead);
                dead.clear();
                let mut bindings = std::mem::take(&mut self.buffers.bindings);
                bindings.clear();
                bindings.resize(self.rules.variables.len(), None);
                State { pos: Vec::new(), dead, moved: false, bindings }
            }
        };
        let result = self.forward(level, start, first, key, budget, &mut cur);
        if start.is_none() {
            self.buffers.dead = std::mem::take(&mut cur.dead);
        }
        if result? {
            Ok(Some(cur.bindings))
        } else {
            if start.is_none() {
                self.buffers.bindings = cur.bindings;
            }
            Ok(None)
        }
    }

    /// The rules from `first` on, then backtracking; whether they all matched (`cur` then
    /// holds the bindings).
    fn forward(
        &mut self,
        level: u32,
        start: Option<&State<'h>>,
        first: usize,
        key: Option<Key<'h>>,
        budget: u32,
        cur: &mut State<'h>,
    ) -> Result<bool, Exhausted> {
        let (mut consumed, mut points, mut log) = if level == 0 {
            let mut taken = (
                std::mem::take(&mut self.buffers.consumed),
                std::mem::take(&mut self.buffers.points),
                std::mem::take(&mut self.buffers.log),
            );
            taken.0.clear();
            taken.1.clear();
            taken.2.clear();
            taken
        } else {
            (Vec::new(), Vec::new(), Vec::new())
        };
        let matched = self.first_pass(level, start, first, key, budget, cur, &mut consumed, &mut points, &mut log);
        if level == 0 {
            self.buffers.consumed = consumed;
            self.buffers.points = points;
            self.buffers.log = log;
        }
        matched
    }

    /// [`Self::forward`] with its vectors.
    #[allow(clippy::too_many_arguments)]
    fn first_pass(
        &mut self,
        level: u32,
        start: Option<&State<'h>>,
        first: usize,
        key: Option<Key<'h>>,
        budget: u32,
        cur: &mut State<'h>,
        consumed: &mut Vec<u32>,
        points: &mut Vec<Point>,
        log: &mut Vec<u32>,
    ) -> Result<bool, Exhausted> {
        for j in first..self.rules.rules.len() {
            let Some((line, caps)) = self.match_rule(j, cur)? else {
                if level == 0 {
                    let mut bound = [None; 4];
                    for (slot, element) in bound.iter_mut().zip(&self.rules.rules[j].elements) {
                        if let Element::Capture(v) | Element::CaptureIf(v, _) = element {
                            *slot = cur.bindings[*v];
                        }
                    }
                    self.failure = Some((j, bound, !points.is_empty()));
                    if points.is_empty() || (self.limits.shortcuts && self.infeasible()?) {
                        return Ok(false);
                    }
                }
                let result =
                    self.backtrack(level, start, consumed, std::mem::take(points), (&cur.bindings, log), key.clone())?;
                return Ok(match result {
                    Some(bindings) => {
                        cur.bindings = bindings;
                        true
                    }
                    None => {
                        if let Some(k) = key {
                            let failed = self.memo.entry(k).or_insert(0);
                            *failed = (*failed).max(budget);
                        }
                        false
                    }
                });
            };
            cur.consume(line, self.items.len());
            consumed.push(line);
            if caps.len > 0 {
                points.push(Point { rule: j, line, captured: log.len(), consumed: consumed.len() - 1 });
            }
            for &(var, value) in caps.as_slice() {
                cur.bindings[var as usize] = Some(value);
                log.push(var);
            }
        }
        Ok(true)
    }

    /// Retries the points, most recent first.
    fn backtrack(
        &mut self,
        level: u32,
        start: Option<&State<'h>>,
        consumed: &[u32],
        mut points: Vec<Point>,
        (bindings, log): (&[Option<&'h str>], &[u32]),
        key: Option<Key<'h>>,
    ) -> Result<Option<Vec<Option<&'h str>>>, Exhausted> {
        let framed = key.is_some();
        if let Some(k) = key {
            self.stack.push((k, false));
        }
        let mut result = None;
        while let Some(point) = points.pop() {
            let last = points.is_empty();
            if let Some(frame) = self.stack.last_mut().filter(|_| framed) {
                frame.1 = last;
            }
            let mut before = bindings.to_vec();
            for &v in &log[point.captured..] {
                before[v as usize] = None;
            }
            let child = self.rebuild(start, &consumed[..point.consumed], point.line, before)?;
            let child_key = if self.limits.shortcuts {
                self.tick(1)?;
                Some(key_of(&child, point.rule, self.items.len()))
            } else {
                None
            };
            if last && child_key.as_ref().is_some_and(|k| self.closes_failing_cycle(k)) {
                continue;
            }
            if let Some(found) = self.run(level + 1, Some(&child), point.rule, child_key)? {
                result = Some(found);
                break;
            }
        }
        if framed {
            self.stack.pop();
        }
        Ok(result)
    }

    /// Whether `key` is the state of a frame on the stack such that it and every frame above
    /// it are trying their last point: the search would then go round the same cycle of
    /// states, each of whose other points already failed with more depth to spare, until the
    /// depth limit — it fails.
    fn closes_failing_cycle(&self, key: &Key<'h>) -> bool {
        for (frame_key, at_last) in self.stack.iter().rev() {
            if !at_last {
                return false;
            }
            if frame_key == key {
                return true;
            }
        }
        false
    }

    fn rebuild(
        &mut self,
        start: Option<&State<'h>>,
        consumed: &[u32],
        line: u32,
        bindings: Vec<Option<&'h str>>,
    ) -> Result<State<'h>, Exhausted> {
        self.tick(1 + self.items.len() as u64 / 64)?;
        let mut pos = match start {
            Some(state) => state.pos.clone(),
            None => (0..self.items.len() as u32).collect(),
        };
        for &l in consumed {
            pos[l as usize] = DEAD;
        }
        pos[line as usize] = self.next_pos;
        self.next_pos = self.next_pos.checked_add(1).ok_or(Exhausted)?;
        Ok(State { pos, dead: Vec::new(), moved: true, bindings })
    }

    /// Whether the rules cannot all match whatever the bindings: each rule consumes an item of
    /// its own, among those that may satisfy it, so if no assignment of distinct items to all
    /// the rules exists (Kuhn's bipartite matching), no search can succeed.
    fn infeasible(&mut self) -> Result<bool, Exhausted> {
        let n = self.rules.rules.len();
        let mut slots = Vec::with_capacity(n);
        for j in 0..n {
            let slot = self.prepare(j)?;
            let (exact, candidates) = self.cache.view(slot);
            if exact.is_empty() && candidates.is_empty() {
                return Ok(true);
            }
            slots.push(slot);
        }
        let mut owner = std::mem::take(&mut self.buffers.owner);
        let mut seen = std::mem::take(&mut self.buffers.seen);
        owner.clear();
        owner.resize(self.items.len(), u32::MAX);
        seen.clear();
        seen.resize(self.items.len(), 0);
        let budget = self.limits.max_steps.saturating_sub(self.steps);
        let mut steps = 0;
        let mut result = Ok(false);
        for j in 0..n {
            match augment(self.cache, &slots, j, &mut owner, &mut seen, j as u32 + 1, &mut steps, budget) {
                Ok(true) => {}
                Ok(false) => {
                    result = Ok(true);
                    break;
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.buffers.owner = owner;
        self.buffers.seen = seen;
        self.tick(steps)?;
        result
    }

    /// What rule `j` allows on this report, from the cache when another profile had the same
    /// rule.
    fn prepare(&mut self, j: usize) -> Result<usize, Exhausted> {
        let slot = match self.buffers.slots[j] {
            Some(slot) => slot,
            None => {
                let (slot, steps) = self.cache.slot(&self.rules.rules[j], self.hardware);
                self.tick(steps)?;
                self.buffers.slots[j] = Some(slot);
                slot
            }
        };
        Ok(slot)
    }

    /// `match_spec`: the item rule `j` takes from `state`, with its new captures.
    fn match_rule(&mut self, j: usize, state: &State<'h>) -> Result<Option<(u32, Caps<'h>)>, Exhausted> {
        let items = self.items;
        let vars = &self.rules.rules[j].vars;
        let slot = self.prepare(j)?;
        let (exact, candidates) = self.cache.view(slot);
        let mut steps = 0u64;
        // An item equal to the whole rule comes first; it captures nothing.
        let mut best: Option<(u32, u32)> = None;
        for &l in exact {
            steps += 1;
            let p = state.at(l);
            if p == DEAD {
                continue;
            }
            if !state.moved {
                best = Some((p, l));
                break;
            }
            if best.is_none_or(|(bp, _)| p < bp) {
                best = Some((p, l));
            }
        }
        if let Some((_, l)) = best {
            self.tick(steps)?;
            return Ok(Some((l, Caps::EMPTY)));
        }
        let mut found: Option<(u32, u32, Caps<'h>)> = None;
        for candidate in candidates {
            steps += 1;
            let p = state.at(candidate.line);
            if p == DEAD || found.is_some_and(|(bp, _, _)| p > bp) {
                continue;
            }
            let values = items[candidate.line as usize].elements();
            let mut caps = Caps::EMPTY;
            let mut consistent = true;
            for (e, value) in values.into_iter().enumerate() {
                if candidate.captures & (1 << e) == 0 {
                    continue;
                }
                let var = vars[e];
                match state.bindings[var as usize] {
                    Some(bound) if !same(bound, value) => {
                        consistent = false;
                        break;
                    }
                    Some(_) => {}
                    None => {
                        caps.items[caps.len] = (var, value);
                        caps.len += 1;
                    }
                }
            }
            if consistent {
                found = Some((p, candidate.line, caps));
                if !state.moved {
                    break;
                }
            }
        }
        self.tick(steps)?;
        Ok(found.map(|(_, l, caps)| (l, caps)))
    }

    fn explain(&self) -> Mismatch<'r> {
        let Some((j, bindings, backtracked)) = &self.failure else {
            return Mismatch { rule: None, reason: Cow::Borrowed("no match") };
        };
        let rule: &'r Rule = &self.rules.rules[*j];
        if !*backtracked && bindings.iter().all(Option::is_none) {
            return Mismatch { rule: Some(*j), reason: Cow::Borrowed(&rule.unmatched) };
        }
        let mut reason = rule.unmatched.clone();
        let mut first = true;
        let mut seen: [Option<usize>; 4] = [None; 4];
        for (n, (element, value)) in rule.elements.iter().zip(bindings).enumerate() {
            if let Element::Capture(v) | Element::CaptureIf(v, _) = element
                && let Some(value) = value
                && !seen[..n].contains(&Some(*v))
            {
                seen[n] = Some(*v);
                reason.push_str(if first { " with " } else { ", " });
                first = false;
                let _ = write!(reason, "{}={value}", self.rules.variables[*v]);
            }
        }
        if *backtracked {
            reason.push_str("; other choices of items for the earlier rules were tried too");
        }
        Mismatch { rule: Some(*j), reason: Cow::Owned(reason) }
    }
}

/// Kuhn's augmenting path from rule `j`: rule `j` gets an item, possibly taking it from
/// another rule that can move to another item.
#[allow(clippy::too_many_arguments)]
fn augment(
    cache: &Cache<'_>,
    slots: &[usize],
    j: usize,
    owner: &mut [u32],
    seen: &mut [u32],
    round: u32,
    steps: &mut u64,
    budget: u64,
) -> Result<bool, Exhausted> {
    let (exact, candidates) = cache.view(slots[j]);
    for line in exact.iter().copied().chain(candidates.iter().map(|c| c.line)) {
        *steps += 1;
        if *steps > budget {
            return Err(Exhausted);
        }
        let l = line as usize;
        if seen[l] == round {
            continue;
        }
        seen[l] = round;
        if owner[l] == u32::MAX || augment(cache, slots, owner[l] as usize, owner, seen, round, steps, budget)? {
            owner[l] = j as u32;
            return Ok(true);
        }
    }
    Ok(false)
}

fn key_of<'h>(state: &State<'h>, rule: usize, n: usize) -> Key<'h> {
    let mut alive = vec![0u64; n.div_ceil(64)];
    let mut moved: Vec<(u32, u32)> = Vec::new();
    for (line, &p) in state.pos.iter().enumerate() {
        if p == DEAD {
            continue;
        }
        alive[line / 64] |= 1 << (line % 64);
        if p as usize >= n {
            moved.push((p, line as u32));
        }
    }
    moved.sort_unstable();
    Key { rule, alive, moved: moved.into_iter().map(|(_, l)| l).collect(), bindings: state.bindings.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quads(list: &[(&str, &str, &str, &str)]) -> Vec<Quad> {
        list.iter().map(|(c, t, n, v)| Quad::new(*c, *t, *n, *v)).collect()
    }

    fn run(lines: &[(&str, &str, &str, &str)], specs: &[(&str, &str, &str, &str)]) -> Outcome<'static> {
        let items = quads(lines);
        let rules = RuleSet::parse(&quads(specs)).unwrap();
        let fast = match_rules(&rules, &Hardware::new(&items));
        let plain = match_rules_with(
            &rules,
            &Hardware::new(&items),
            Limits { max_steps: u64::MAX, shortcuts: false, ..Limits::default() },
        );
        assert_eq!(fast, plain, "shortcuts changed the outcome");
        match fast {
            Outcome::Matched(c) => Outcome::Matched(c),
            Outcome::Mismatch(m) => {
                Outcome::Mismatch(Mismatch { rule: m.rule, reason: Cow::Owned(m.reason.into_owned()) })
            }
        }
    }

    fn vars(outcome: &Outcome<'_>) -> Vec<(String, String)> {
        outcome.captures().map(|c| c.variables.clone().into_iter().collect()).unwrap_or_default()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    const DISKS: &[(&str, &str, &str, &str)] = &[
        ("disk", "vda", "size", "8"),
        ("disk", "vda", "type", "a"),
        ("disk", "vdb", "size", "8"),
        ("disk", "vdb", "type", "b"),
    ];

    #[test]
    fn literal_and_variables() {
        let o = run(&[("system", "product", "serial", "CZJ31402CD")], &[("system", "product", "serial", "CZJ31402CD")]);
        assert!(o.captures().is_some());
        let o = run(&[("system", "product", "serial", "CZJ31402CD")], &[("system", "product", "serial", "CZJ31402CE")]);
        assert!(matches!(o, Outcome::Mismatch(Mismatch { rule: Some(0), .. })));
        let o = run(&[("disk", "vda", "size", "8")], &[("disk", "$disk", "size", "$size")]);
        assert_eq!(vars(&o), pairs(&[("disk", "vda"), ("size", "8")]));
    }

    #[test]
    fn empty_rules_match_everything() {
        assert_eq!(run(&[], &[]), Outcome::Matched(Captures::default()));
    }

    #[test]
    fn already_bound_variables_must_agree() {
        let o = run(
            &[
                ("disk", "1I:1:2", "size", "100GB"),
                ("disk", "1I:1:1", "size", "1000GB"),
                ("disk", "1I:1:1", "control", "hpa"),
                ("disk", "1I:1:2", "control", "hpa"),
            ],
            &[
                ("disk", "$disk1", "size", "100GB"),
                ("disk", "$disk1", "control", "hpa"),
                ("disk", "$disk2", "size", "1000GB"),
            ],
        );
        assert_eq!(vars(&o), pairs(&[("disk1", "1I:1:2"), ("disk2", "1I:1:1")]));
    }

    #[test]
    fn an_item_is_used_once() {
        let specs = [("disk", "vda", "size", "8"), ("disk", "vdb", "size", "16")];
        let specs2 = [("disk", "vda", "size", "8"), ("disk", "vdb", "size", "8")];
        let lines = [("disk", "vda", "size", "8"), ("disk", "vdb", "size", "8")];
        assert!(run(&lines, &specs).captures().is_none());
        assert!(run(&lines, &specs2).captures().is_some());
        assert!(run(&lines[..1], &[("disk", "vda", "size", "8"), ("disk", "vda", "size", "8")]).captures().is_none());
    }

    #[test]
    fn backtracking_retries_earlier_captures() {
        let o = run(DISKS, &[("disk", "$disk", "size", "8"), ("disk", "$disk", "type", "b")]);
        assert_eq!(vars(&o), pairs(&[("disk", "vdb")]));
        let o = run(
            DISKS,
            &[("disk", "$disk", "size", "8"), ("disk", "$disk", "type", "b"), ("disk", "$disk2", "size", "8")],
        );
        assert_eq!(vars(&o), pairs(&[("disk", "vdb"), ("disk2", "vda")]));
        let o = run(
            DISKS,
            &[("disk", "$disk", "size", "8"), ("disk", "$disk", "type", "c"), ("disk", "$disk2", "size", "8")],
        );
        let Outcome::Mismatch(m) = o else { panic!("matched") };
        assert_eq!(m.rule, Some(1));
        assert!(
            m.reason.contains("rule 1") && m.reason.contains("$disk=vda") && m.reason.contains("tried"),
            "{}",
            m.reason
        );
    }

    #[test]
    fn double_dollar_variables_are_selectors_and_win() {
        let o = run(&[("disk", "vda", "size", "8")], &[("disk", "$$disk", "size", "$size")]);
        let c = o.captures().unwrap();
        assert_eq!(c.variables.clone().into_iter().collect::<Vec<_>>(), pairs(&[("disk", "vda"), ("size", "8")]));
        assert_eq!(c.selectors.clone().into_iter().collect::<Vec<_>>(), pairs(&[("disk", "vda")]));
        // `$x` and `$$x` are distinct while matching; the `$$` value is reported.
        let o = run(
            &[("disk", "vda", "size", "8"), ("disk", "vdb", "type", "ssd")],
            &[("disk", "$x", "size", "8"), ("disk", "$$x", "type", "ssd")],
        );
        assert_eq!(vars(&o), pairs(&[("x", "vdb")]));
    }

    #[test]
    fn a_variable_twice_in_one_rule_is_not_compared_and_the_last_wins() {
        let o = run(&[("disk", "sda", "size", "10")], &[("disk", "$x", "size", "$x")]);
        assert_eq!(vars(&o), pairs(&[("x", "10")]));
    }

    #[test]
    fn combined_capture_falls_back_to_literal_comparison() {
        let o = run(&[("disk", "vda", "size", "20")], &[("disk", "$disk", "size", "$size=le(20)")]);
        assert_eq!(vars(&o), pairs(&[("disk", "vda"), ("size", "20")]));
        let o = run(&[("disk", "vda", "size", "30")], &[("disk", "$disk", "size", "$size=le(20)")]);
        assert!(o.captures().is_none());
        let o = run(
            &[("network", "eth0", "serial", "20:d2:44:1b:0a:8b")],
            &[("network", "$eth", "serial", "$mac=not(regexp(^28:d2:))")],
        );
        assert_eq!(vars(&o), pairs(&[("eth", "eth0"), ("mac", "20:d2:44:1b:0a:8b")]));
    }

    #[test]
    fn an_exact_item_is_preferred_and_captures_nothing() {
        // The rule equals the second item exactly: it is taken before the first, which would
        // have matched through the capture.
        let o = run(&[("a", "x", "c", "d"), ("a", "$v", "c", "d")], &[("a", "$v", "c", "d")]);
        assert_eq!(vars(&o), Vec::<(String, String)>::new());
    }

    #[test]
    fn opaque_elements_match_only_a_whole_equal_item() {
        let dimm = "DIMM DDR3 Synchronous 1600 MHz (0.6 ns)";
        let lines = [("memory", "bank:0:0", "description", dimm)];
        assert!(run(&lines, &[("memory", "bank:0:0", "description", dimm)]).captures().is_some());
        assert!(run(&lines, &[("memory", "$bank", "description", dimm)]).captures().is_none());
    }

    #[test]
    fn non_numeric_values_do_not_satisfy_numeric_functions() {
        let o = run(
            &[("disk", "sr0", "size", "unknown"), ("disk", "sda", "size", "500")],
            &[("disk", "$disk", "size", "gt(100)")],
        );
        assert_eq!(vars(&o), pairs(&[("disk", "sda")]));
    }

    #[test]
    fn depth_limit_of_the_reference_is_kept() {
        // 60 disks, only the last one has the wanted type: reaching it needs 59 retries, more
        // than the reference's 50 levels, so the reference (and we) say no.
        let mut lines = Vec::new();
        for i in 0..60 {
            lines.push(("disk".to_owned(), format!("d{i:02}"), "size".to_owned(), "8".to_owned()));
        }
        for i in 0..60 {
            let t = if i == 59 { "ssd" } else { "hdd" };
            lines.push(("disk".to_owned(), format!("d{i:02}"), "type".to_owned(), t.to_owned()));
        }
        let items: Vec<Quad> = lines.iter().map(|(c, t, n, v)| Quad::new(c, t, n, v)).collect();
        let rules = RuleSet::parse(&quads(&[("disk", "$d", "size", "8"), ("disk", "$d", "type", "ssd")])).unwrap();
        assert!(match_rules(&rules, &Hardware::new(&items)).captures().is_none());
        // With 50 disks the last one is reached at level 49 (checked against the reference);
        // with 51 it is not.
        let fifty: Vec<Quad> = items.iter().filter(|q| q.r#type.as_str() >= "d10").cloned().collect();
        let found = match_rules(&rules, &Hardware::new(&fifty));
        assert_eq!(found.captures().and_then(|c| c.variables.get("d")).map(String::as_str), Some("d59"));
        let fifty_one: Vec<Quad> = items.iter().filter(|q| q.r#type.as_str() >= "d09").cloned().collect();
        assert!(match_rules(&rules, &Hardware::new(&fifty_one)).captures().is_none());
    }

    #[test]
    fn a_step_budget_bounds_the_search() {
        let mut lines = Vec::new();
        for i in 0..12 {
            lines.push(Quad::new("disk", format!("d{i}"), "size", "8"));
        }
        let mut specs: Vec<Quad> = (0..10).map(|i| Quad::new("disk", format!("$d{i}"), "size", "8")).collect();
        specs.push(Quad::new("disk", "none", "size", "9"));
        specs.push(Quad::new("disk", "$x", "size", "$y"));
        let rules = RuleSet::parse(&specs).unwrap();
        // A rule no item satisfies: decided at once.
        let Outcome::Mismatch(m) = match_rules(&rules, &Hardware::new(&lines)) else { panic!() };
        assert_eq!(m.rule, Some(10));
        // Without the shortcut, the exhaustive search runs out of steps.
        let limits = Limits { max_steps: 100_000, shortcuts: false, ..Limits::default() };
        let Outcome::Mismatch(m) = match_rules_with(&rules, &Hardware::new(&lines), limits) else { panic!() };
        assert_eq!(m.rule, None);
        assert!(m.reason.contains("gave up"), "{}", m.reason);
    }
}
