//! Choosing a machine's HardwareProfile, as eDeploy walks its `state` file: profiles in
//! priority order, full ones skipped, the first whose rules all match wins.

use std::borrow::Cow;

use machinist_crds::machine::ProfileMismatch;
use machinist_crds::{HardwareProfileSpec, Quad};

use crate::matcher::{Captures, Hardware, Limits, Matcher, Outcome};
use crate::rule::{RuleSet, RulesError};

/// A profile offered to [`select_profile`].
#[derive(Clone, Copy, Debug)]
pub struct Candidate<'a> {
    /// The HardwareProfile's name.
    pub name: &'a str,
    /// Its `spec.priority` (lowest tried first; ties in name order).
    pub priority: i32,
    /// Its `spec.maxMachines` (`None`: unlimited).
    pub max_machines: Option<i32>,
    /// Machines bound to it now, not counting the machine being matched.
    pub bound: i32,
    /// Its rules, parsed with [`RuleSet::parse`].
    pub rules: &'a RuleSet,
}

/// A profile's spec with its rules parsed, ready to be offered many times.
#[derive(Clone, Debug)]
pub struct CompiledProfile {
    /// Name.
    pub name: String,
    /// `spec.priority`.
    pub priority: i32,
    /// `spec.maxMachines`.
    pub max_machines: Option<i32>,
    /// `spec.match`, parsed.
    pub rules: RuleSet,
}

impl CompiledProfile {
    /// Parses a HardwareProfile's rules.
    pub fn new(name: &str, spec: &HardwareProfileSpec) -> Result<Self, RulesError> {
        Ok(Self {
            name: name.to_owned(),
            priority: spec.priority,
            max_machines: spec.max_machines,
            rules: RuleSet::parse(&spec.rules)?,
        })
    }

    /// This profile as a candidate with `bound` machines.
    pub fn candidate(&self, bound: i32) -> Candidate<'_> {
        Candidate {
            name: &self.name,
            priority: self.priority,
            max_machines: self.max_machines,
            bound,
            rules: &self.rules,
        }
    }
}

/// The outcome of profile selection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection<'a> {
    /// The chosen profile, if any matched.
    pub profile: Option<&'a str>,
    /// What its rules captured (empty when none matched).
    pub captures: Captures,
    /// Why each profile tried before it (or every profile, when none matched) was passed over,
    /// in the order tried.
    pub mismatches: Vec<PassedOver<'a>>,
}

/// A profile that was tried and passed over, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassedOver<'a> {
    /// The profile.
    pub profile: &'a str,
    /// Index of the rule to blame, if a rule is.
    pub rule: Option<usize>,
    /// Why, for people.
    pub reason: Cow<'a, str>,
}

impl PassedOver<'_> {
    /// As the Machine's `status.profileMismatches` holds it.
    pub fn to_status(&self) -> ProfileMismatch {
        ProfileMismatch {
            profile: self.profile.to_owned(),
            rule: self.rule.and_then(|r| i32::try_from(r).ok()),
            reason: self.reason.clone().into_owned(),
        }
    }
}

impl Selection<'_> {
    /// The mismatches as the Machine's `status.profileMismatches` holds them.
    pub fn profile_mismatches(&self) -> Vec<ProfileMismatch> {
        self.mismatches.iter().map(PassedOver::to_status).collect()
    }
}

/// Tries the candidates in priority order (ties by name) against a hardware report.
pub fn select_profile<'a>(items: &[Quad], candidates: &[Candidate<'a>]) -> Selection<'a> {
    select_profile_with(items, candidates, Limits::default())
}

/// [`select_profile`] with explicit matching limits (per profile).
pub fn select_profile_with<'a>(items: &[Quad], candidates: &[Candidate<'a>], limits: Limits) -> Selection<'a> {
    let hardware = Hardware::new(items);
    let mut matcher = Matcher::new(&hardware, limits);
    let in_order = |a: &Candidate<'_>, b: &Candidate<'_>| a.priority.cmp(&b.priority).then_with(|| a.name.cmp(b.name));
    let mut sorted: Vec<&Candidate<'a>> = Vec::new();
    let order: &[Candidate<'a>] = if candidates.is_sorted_by(|a, b| in_order(a, b).is_le()) {
        candidates
    } else {
        sorted.extend(candidates.iter());
        sorted.sort_by(|a, b| in_order(a, b));
        &[]
    };
    let mut selection = Selection { mismatches: Vec::with_capacity(candidates.len()), ..Selection::default() };
    for candidate in order.iter().chain(sorted.iter().copied()) {
        if let Some(max) = candidate.max_machines
            && candidate.bound >= max
        {
            selection.mismatches.push(PassedOver {
                profile: candidate.name,
                rule: None,
                reason: Cow::Owned(format!("maxMachines reached ({} of {max} bound)", candidate.bound)),
            });
            continue;
        }
        match matcher.match_rules(candidate.rules) {
            Outcome::Matched(captures) => {
                selection.profile = Some(candidate.name);
                selection.captures = captures;
                return selection;
            }
            Outcome::Mismatch(m) => {
                selection.mismatches.push(PassedOver { profile: candidate.name, rule: m.rule, reason: m.reason })
            }
        }
    }
    selection
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(list: &[[&str; 4]]) -> RuleSet {
        RuleSet::parse(&list.iter().map(|[c, t, n, v]| Quad::new(*c, *t, *n, *v)).collect::<Vec<_>>()).unwrap()
    }

    fn vm_items() -> Vec<Quad> {
        vec![
            Quad::new("disk", "vda", "size", "20"),
            Quad::new("network", "eth0", "serial", "52:54:00:88:17:3c"),
            Quad::new("network", "eth0", "ipv4", "192.168.122.42"),
            Quad::new("system", "product", "vendor", "QEMU"),
        ]
    }

    #[test]
    fn seed_example_picks_vm_after_hp_fails() {
        let hp = rules(&[["system", "product", "vendor", "Hewlett-Packard"], ["disk", "$disk", "size", "gt(100)"]]);
        let vm = rules(&[
            ["disk", "$disk", "size", "gt(4)"],
            ["network", "$eth", "ipv4", "network(192.168.122.0/24)"],
            ["network", "$eth", "serial", "$mac"],
        ]);
        let candidates = [
            Candidate { name: "vm", priority: 20, max_machines: None, bound: 100, rules: &vm },
            Candidate { name: "hp", priority: 10, max_machines: Some(4), bound: 0, rules: &hp },
        ];
        let s = select_profile(&vm_items(), &candidates);
        assert_eq!(s.profile, Some("vm"));
        assert_eq!(s.captures.variables.get("mac").map(String::as_str), Some("52:54:00:88:17:3c"));
        assert_eq!(s.captures.variables.get("eth").map(String::as_str), Some("eth0"));
        assert_eq!(s.captures.variables.get("disk").map(String::as_str), Some("vda"));
        assert_eq!(s.mismatches.len(), 1);
        assert_eq!(s.mismatches[0].profile, "hp");
        assert_eq!(s.mismatches[0].rule, Some(0));
        assert!(s.mismatches[0].reason.contains("Hewlett-Packard"), "{}", s.mismatches[0].reason);
    }

    #[test]
    fn full_profiles_are_skipped_and_ties_go_by_name() {
        let any = rules(&[]);
        let candidates = [
            Candidate { name: "b", priority: 1, max_machines: None, bound: 0, rules: &any },
            Candidate { name: "a", priority: 1, max_machines: Some(2), bound: 2, rules: &any },
            Candidate { name: "z", priority: 0, max_machines: Some(0), bound: 0, rules: &any },
        ];
        let s = select_profile(&vm_items(), &candidates);
        assert_eq!(s.profile, Some("b"));
        let skipped: Vec<(&str, Option<usize>)> = s.mismatches.iter().map(|m| (m.profile, m.rule)).collect();
        assert_eq!(skipped, [("z", None), ("a", None)]);
        assert!(s.mismatches[1].reason.contains("maxMachines reached (2 of 2"), "{}", s.mismatches[1].reason);
    }

    #[test]
    fn no_match_reports_every_profile() {
        let never = rules(&[["cpu", "logical", "number", "ge(64)"]]);
        let spec = HardwareProfileSpec {
            priority: 5,
            max_machines: None,
            rules: vec![Quad::new("disk", "$d", "size", "gt(1000)")],
            cmdb_ref: None,
            role: None,
            install: None,
        };
        let compiled = CompiledProfile::new("big", &spec).unwrap();
        let candidates = [
            Candidate { name: "never", priority: 1, max_machines: None, bound: 0, rules: &never },
            compiled.candidate(0),
        ];
        let s = select_profile(&vm_items(), &candidates);
        assert_eq!(s.profile, None);
        assert_eq!(s.captures, Captures::default());
        assert_eq!(s.mismatches.iter().map(|m| m.profile).collect::<Vec<_>>(), ["never", "big"]);
        let status = s.profile_mismatches();
        assert_eq!((status[1].profile.as_str(), status[1].rule), ("big", Some(0)));
        assert!(status[1].reason.contains("gt(1000)"), "{}", status[1].reason);
    }
}
