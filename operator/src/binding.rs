//! Binding decisions, pure: the slots of a HardwareProfile and the entries of a Cmdb, as lists
//! in their statuses that requests are applied to in order.
//!
//! These lists are the source of truth for `maxMachines` and for who holds which entry. The
//! [`crate::ledger`] applies a batch of requests to the freshest copy of the object and writes
//! the result with the object's `resourceVersion` as a precondition: if anyone wrote in between,
//! the write is refused (409) and the batch is applied again to what they wrote. So a count is
//! never exceeded and an entry never given twice, whatever the number of machines, operator
//! replicas or restarts — no lock in memory is relied on.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use machinist_crds::cmdb::CmdbAllocationRecord;
use machinist_crds::{CmdbStatus, HardwareProfileSpec, HardwareProfileStatus};
use machinist_matching::cmdb::{Holdings, duplicates, free_count};
use machinist_matching::{AllocationError, Captures, Choice, Entry, GenerateError, RuleSet, RulesError};

use crate::conditions::{self, Desired};

/// A request on a profile's slots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SlotRequest {
    /// Take a slot for the machine (kept if it holds one already).
    Bind(String),
    /// Give the machine's slot back (nothing if it holds none).
    Unbind(String),
}

/// What became of a [`SlotRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SlotOutcome {
    /// The machine holds a slot.
    Bound,
    /// `maxMachines` is reached: no slot.
    Full {
        /// Machines bound.
        bound: usize,
        /// `maxMachines`.
        max: i32,
    },
    /// The machine holds no slot.
    Unbound,
}

/// Applies slot requests in order to `bound` (kept sorted) under `max_machines`.
pub fn apply_slots(bound: &mut Vec<String>, max_machines: Option<i32>, requests: &[SlotRequest]) -> Vec<SlotOutcome> {
    requests
        .iter()
        .map(|request| match request {
            SlotRequest::Bind(machine) => match bound.binary_search(machine) {
                Ok(_) => SlotOutcome::Bound,
                Err(at) => match max_machines {
                    Some(max) if bound.len() >= usize::try_from(max).unwrap_or(0) => {
                        SlotOutcome::Full { bound: bound.len(), max }
                    }
                    _ => {
                        bound.insert(at, machine.clone());
                        SlotOutcome::Bound
                    }
                },
            },
            SlotRequest::Unbind(machine) => {
                if let Ok(at) = bound.binary_search(machine) {
                    bound.remove(at);
                }
                SlotOutcome::Unbound
            }
        })
        .collect()
}

/// A profile's status around its bound list: count, `Valid`, `Full`, and `Deleting` while a
/// deletion waits for its machines.
pub fn profile_status(
    spec: &HardwareProfileSpec,
    prior: &HardwareProfileStatus,
    mut bound: Vec<String>,
    generation: Option<i64>,
    deleting: bool,
    now: &Time,
) -> HardwareProfileStatus {
    bound.sort();
    bound.dedup();
    let mut status = HardwareProfileStatus {
        bound_count: i32::try_from(bound.len()).unwrap_or(i32::MAX),
        bound_machines: bound,
        conditions: prior.conditions.clone(),
        observed_generation: generation,
    };
    let conditions = &mut status.conditions;
    let valid = match RuleSet::parse(&spec.rules) {
        Ok(rules) => Desired::yes("Valid", "RulesParsed", format!("{} rules", rules.len())),
        Err(error) => Desired::no("Valid", "InvalidRules", rules_error_message(&error)),
    };
    conditions::set(conditions, valid, generation, now);
    let full = match spec.max_machines {
        Some(max) if status.bound_count >= max => {
            Desired::yes("Full", "MaxMachinesReached", format!("{} of {max} machines bound", status.bound_count))
        }
        Some(max) => Desired::no("Full", "HasRoom", format!("{} of {max} machines bound", status.bound_count)),
        None => Desired::no("Full", "Unlimited", format!("{} machines bound, no maximum", status.bound_count)),
    };
    conditions::set(conditions, full, generation, now);
    set_deleting(conditions, deleting, "machine", &status.bound_machines, generation, now);
    status
}

fn rules_error_message(error: &RulesError) -> String {
    error.to_string()
}

/// `Deleting=True, reason InUse` while a deletion waits for the objects still using it.
fn set_deleting(
    conditions: &mut machinist_crds::common::Conditions,
    deleting: bool,
    what: &str,
    users: &[String],
    generation: Option<i64>,
    now: &Time,
) {
    if !deleting {
        conditions::remove(conditions, "Deleting");
        return;
    }
    let desired = if users.is_empty() {
        Desired::yes("Deleting", "Released", format!("no {what} uses it any more"))
    } else {
        const SHOWN: usize = 10;
        let mut names = users.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
        if users.len() > SHOWN {
            names.push_str(&format!(" and {} more", users.len() - SHOWN));
        }
        Desired::yes(
            "Deleting",
            "InUse",
            format!(
                "deletion waits until no {what} uses it: {} ({names}); delete them or bind them elsewhere",
                users.len()
            ),
        )
    };
    conditions::set(conditions, desired, generation, now);
}

/// A request on a Cmdb's entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryRequest {
    /// Reserve an entry for the machine, chosen with its captured variables (its own entry if
    /// it holds one already).
    Allocate {
        /// The Machine.
        machine: String,
        /// What its profile's rules captured.
        captures: Captures,
    },
    /// Give the machine's entry back.
    Release(String),
}

/// What became of an [`EntryRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryOutcome {
    /// The machine holds this entry.
    Allocated(Choice),
    /// No entry could be given.
    Refused(AllocationError),
    /// The Cmdb's entries do not expand: nothing can be given.
    Invalid(String),
    /// The machine holds no entry.
    Released,
}

/// Applies entry requests in order to `allocations` over the expanded `entries` (indexed once
/// per batch: one request costs one decision, not a copy of every record).
pub fn apply_entries(
    entries: Result<&[Entry], &GenerateError>,
    allocations: &mut Vec<CmdbAllocationRecord>,
    requests: &[EntryRequest],
) -> Vec<EntryOutcome> {
    let total = entries.map_or(0, <[Entry]>::len);
    let mut holdings = Holdings::from_records(total, std::mem::take(allocations));
    let outcomes = requests
        .iter()
        .map(|request| match request {
            EntryRequest::Release(machine) => {
                holdings.release(machine);
                EntryOutcome::Released
            }
            EntryRequest::Allocate { machine, captures } => match entries {
                Err(error) => EntryOutcome::Invalid(error.to_string()),
                Ok(entries) => match holdings.allocate(entries, machine, captures) {
                    Ok(choice) => EntryOutcome::Allocated(choice),
                    Err(error) => EntryOutcome::Refused(error),
                },
            },
        })
        .collect();
    *allocations = holdings.into_records();
    outcomes
}

/// A Cmdb's status around its allocations: `total`, `free`, `Valid`, `Exhausted`, `Duplicates`
/// (two entries with the same `ip`), and `Deleting` while a deletion waits for its machines.
pub fn cmdb_status(
    entries: Result<&[Entry], &GenerateError>,
    prior: &CmdbStatus,
    mut allocations: Vec<CmdbAllocationRecord>,
    generation: Option<i64>,
    deleting: bool,
    now: &Time,
) -> CmdbStatus {
    allocations.sort_by_key(|r| r.entry);
    let mut conditions = prior.conditions.clone();
    let (total, free) = match entries {
        Ok(entries) => {
            conditions::set(
                &mut conditions,
                Desired::yes("Valid", "Expanded", format!("{} entries", entries.len())),
                generation,
                now,
            );
            let dups = duplicates(entries, "ip");
            let desired = if dups.is_empty() {
                Desired::no("Duplicates", "UniqueAddresses", "no two entries share an ip")
            } else {
                let list: Vec<String> = dups
                    .iter()
                    .take(5)
                    .map(|(ip, at)| {
                        let at: Vec<String> = at.iter().map(usize::to_string).collect();
                        format!("{ip} in entries {}", at.join(", "))
                    })
                    .collect();
                Desired::yes("Duplicates", "DuplicateAddresses", format!("entries share an ip: {}", list.join("; ")))
            };
            conditions::set(&mut conditions, desired, generation, now);
            (entries.len(), free_count(entries, &allocations))
        }
        Err(error) => {
            conditions::set(
                &mut conditions,
                Desired::no("Valid", "InvalidEntries", error.to_string()),
                generation,
                now,
            );
            conditions::remove(&mut conditions, "Duplicates");
            (0, 0)
        }
    };
    let exhausted = if free == 0 {
        Desired::yes("Exhausted", "NoFreeEntry", format!("all {total} entries are allocated"))
    } else {
        Desired::no("Exhausted", "FreeEntries", format!("{free} of {total} entries free"))
    };
    conditions::set(&mut conditions, exhausted, generation, now);
    let users: Vec<String> = allocations.iter().map(|r| r.machine.clone()).collect();
    set_deleting(&mut conditions, deleting, "machine", &users, generation, now);
    CmdbStatus {
        total: i32::try_from(total).unwrap_or(i32::MAX),
        free: i32::try_from(free).unwrap_or(i32::MAX),
        allocations,
        conditions,
        observed_generation: generation,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use machinist_crds::CmdbSpec;
    use machinist_matching::expand_cmdb;

    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn now() -> Time {
        Time(jiff::Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn slots_never_exceed_max_machines() {
        let mut bound = names(&["a", "b"]);
        let requests: Vec<SlotRequest> = ["c", "a", "d"].iter().map(|m| SlotRequest::Bind((*m).to_owned())).collect();
        let outcomes = apply_slots(&mut bound, Some(3), &requests);
        assert_eq!(outcomes, [SlotOutcome::Bound, SlotOutcome::Bound, SlotOutcome::Full { bound: 3, max: 3 }]);
        assert_eq!(bound, names(&["a", "b", "c"]));
    }

    #[test]
    fn an_unbind_makes_room_for_a_later_bind_in_the_same_batch() {
        let mut bound = names(&["a"]);
        let requests = [SlotRequest::Bind("b".into()), SlotRequest::Unbind("a".into()), SlotRequest::Bind("b".into())];
        let outcomes = apply_slots(&mut bound, Some(1), &requests);
        assert_eq!(outcomes, [SlotOutcome::Full { bound: 1, max: 1 }, SlotOutcome::Unbound, SlotOutcome::Bound]);
        assert_eq!(bound, names(&["b"]));
    }

    #[test]
    fn zero_max_machines_disables_and_absent_is_unlimited() {
        let mut bound = Vec::new();
        assert_eq!(
            apply_slots(&mut bound, Some(0), &[SlotRequest::Bind("a".into())]),
            [SlotOutcome::Full { bound: 0, max: 0 }]
        );
        let many: Vec<SlotRequest> = (0..500).map(|i| SlotRequest::Bind(format!("m{i:03}"))).collect();
        assert!(apply_slots(&mut bound, None, &many).iter().all(|o| *o == SlotOutcome::Bound));
        assert_eq!(bound.len(), 500);
        assert!(bound.is_sorted());
    }

    #[test]
    fn profile_status_reports_invalid_rules_and_fullness() {
        let spec: HardwareProfileSpec = serde_json::from_value(serde_json::json!({
            "priority": 1, "maxMachines": 2, "match": [["disk", "$disk", "size", "gtt(4)"]]
        }))
        .unwrap_or_else(|e| unreachable!("{e}"));
        let status = profile_status(&spec, &Default::default(), names(&["b", "a"]), Some(3), false, &now());
        assert_eq!(status.bound_machines, names(&["a", "b"]));
        assert_eq!(status.bound_count, 2);
        let valid = conditions::find(&status.conditions, "Valid").cloned().unwrap_or_else(|| unreachable!());
        assert_eq!((valid.status.as_str(), valid.reason.as_str()), ("False", "InvalidRules"));
        assert!(valid.message.contains("gtt(4)"), "{}", valid.message);
        assert!(conditions::is_true(&status.conditions, "Full"));
        assert!(conditions::find(&status.conditions, "Deleting").is_none());

        let held = profile_status(&spec, &status, names(&["a"]), Some(3), true, &now());
        let deleting = conditions::find(&held.conditions, "Deleting").cloned().unwrap_or_else(|| unreachable!());
        assert_eq!(deleting.reason, "InUse");
        assert!(deleting.message.contains("1 (a)"), "{}", deleting.message);
    }

    fn cmdb(n: usize) -> CmdbSpec {
        serde_json::from_value(serde_json::json!({
            "generate": [{"patterns": {"ip": format!("10.0.0.1-{n}"), "hostname": format!("host1-{n}")}}],
        }))
        .unwrap_or_else(|e| unreachable!("{e}"))
    }

    fn allocate_request(machine: &str) -> EntryRequest {
        EntryRequest::Allocate { machine: machine.into(), captures: Captures::default() }
    }

    #[test]
    fn entries_are_never_given_twice_and_come_back_on_release() {
        let spec = cmdb(2);
        let entries = expand_cmdb(&spec).unwrap_or_else(|e| unreachable!("{e}"));
        let mut allocations = Vec::new();
        let requests = [allocate_request("a"), allocate_request("b"), allocate_request("c"), allocate_request("a")];
        let outcomes = apply_entries(Ok(&entries), &mut allocations, &requests);
        let given: Vec<Option<usize>> = outcomes
            .iter()
            .map(|o| match o {
                EntryOutcome::Allocated(choice) => Some(choice.entry),
                _ => None,
            })
            .collect();
        assert_eq!(given, [Some(0), Some(1), None, Some(0)]);
        assert!(matches!(outcomes[2], EntryOutcome::Refused(AllocationError::Exhausted { total: 2 })));
        let status = cmdb_status(Ok(&entries), &Default::default(), allocations.clone(), Some(1), false, &now());
        assert_eq!((status.total, status.free), (2, 0));
        assert!(conditions::is_true(&status.conditions, "Exhausted"));

        let outcomes =
            apply_entries(Ok(&entries), &mut allocations, &[EntryRequest::Release("a".into()), allocate_request("c")]);
        assert!(matches!(&outcomes[1], EntryOutcome::Allocated(choice) if choice.entry == 0));
        let owners: BTreeMap<i32, String> = allocations.iter().map(|r| (r.entry, r.machine.clone())).collect();
        assert_eq!(owners, BTreeMap::from([(0, "c".to_owned()), (1, "b".to_owned())]));
    }

    #[test]
    fn cmdb_status_flags_duplicate_addresses_and_bad_patterns() {
        let spec: CmdbSpec = serde_json::from_value(serde_json::json!({
            "entries": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "10.0.0.1"}],
        }))
        .unwrap_or_else(|e| unreachable!("{e}"));
        let entries = expand_cmdb(&spec).unwrap_or_else(|e| unreachable!("{e}"));
        let status = cmdb_status(Ok(&entries), &Default::default(), Vec::new(), None, false, &now());
        let dup = conditions::find(&status.conditions, "Duplicates").cloned().unwrap_or_else(|| unreachable!());
        assert_eq!(dup.status, "True");
        assert!(dup.message.contains("10.0.0.1 in entries 0, 2"), "{}", dup.message);

        let bad: CmdbSpec = serde_json::from_value(serde_json::json!({
            "generate": [{"patterns": {"a": "1-2"}, "lists": {"a": ["x"]}}],
        }))
        .unwrap_or_else(|e| unreachable!("{e}"));
        let error = expand_cmdb(&bad).err().unwrap_or_else(|| unreachable!());
        let status = cmdb_status(Err(&error), &Default::default(), Vec::new(), None, false, &now());
        assert!(!conditions::is_true(&status.conditions, "Valid"));
        let mut allocations = Vec::new();
        let outcomes = apply_entries(Err(&error), &mut allocations, &[allocate_request("a")]);
        assert!(matches!(&outcomes[0], EntryOutcome::Invalid(message) if !message.is_empty()));
    }
}

/// A HardwareProfile as profile selection sees it.
#[derive(Clone, Debug)]
pub struct ProfileView {
    /// Name.
    pub name: String,
    /// Its rules, parsed (or why they do not parse).
    pub compiled: std::sync::Arc<Result<machinist_matching::CompiledProfile, RulesError>>,
    /// How many machines other than the one choosing are bound, as last seen.
    pub others: usize,
    /// Whether the machine choosing is among them (a slot it may have to give back).
    pub holds: bool,
    /// Being deleted: takes no new machine.
    pub deleting: bool,
}

impl ProfileView {
    /// The view `machine` has of a profile whose `status.boundMachines` is `bound` (counted,
    /// not copied: a profile of a large fleet lists thousands).
    pub fn new(
        name: String,
        compiled: std::sync::Arc<Result<machinist_matching::CompiledProfile, RulesError>>,
        bound: &[String],
        machine: &str,
        deleting: bool,
    ) -> Self {
        let holds = bound.iter().any(|m| m == machine);
        let others = bound.iter().filter(|m| m.as_str() != machine).count();
        Self { name, compiled, others, holds, deleting }
    }
}

/// The profile chosen for a machine, or why none was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selected {
    /// Bind to this profile.
    Profile {
        /// The profile.
        name: String,
        /// What its rules captured.
        captures: Captures,
        /// Profiles tried before it, and why they were passed over.
        mismatches: Vec<machinist_crds::machine::ProfileMismatch>,
    },
    /// No profile matched (or those that did were full).
    NoneMatched(Vec<machinist_crds::machine::ProfileMismatch>),
    /// The pinned profile does not exist (or is being deleted).
    PinnedMissing,
    /// The pinned profile's rules do not parse.
    PinnedInvalid,
    /// The pinned profile's rules do not match the hardware.
    PinnedMismatch(machinist_crds::machine::ProfileMismatch),
    /// The pinned profile is full.
    PinnedFull,
}

/// Chooses a machine's profile for its reported `items` among the machine's views of them: only
/// `pinned` if set, else every valid profile not being deleted, in priority order. A profile's
/// count leaves the machine itself out (it may hold its slot already); profiles in `found_full`
/// (refused by the ledger in this reconcile, fresher than the view) count as full.
pub fn choose_profile(
    items: &[machinist_crds::Quad],
    profiles: &[ProfileView],
    pinned: Option<&str>,
    found_full: &std::collections::HashSet<String>,
) -> Selected {
    let offered: Vec<&ProfileView> = match pinned {
        Some(name) => match profiles.iter().find(|p| p.name == name && !p.deleting) {
            None => return Selected::PinnedMissing,
            Some(p) if p.compiled.is_err() => return Selected::PinnedInvalid,
            Some(p) => vec![p],
        },
        None => profiles.iter().filter(|p| !p.deleting && p.compiled.is_ok()).collect(),
    };
    let candidates: Vec<machinist_matching::Candidate<'_>> = offered
        .iter()
        .filter_map(|p| {
            let compiled = p.compiled.as_ref().as_ref().ok()?;
            let mut bound = i32::try_from(p.others).unwrap_or(i32::MAX);
            if found_full.contains(&p.name) {
                bound = bound.max(compiled.max_machines.unwrap_or(i32::MAX));
            }
            Some(compiled.candidate(bound))
        })
        .collect();
    let selection = machinist_matching::select_profile(items, &candidates);
    let mismatches = selection.profile_mismatches();
    match (selection.profile, pinned) {
        (Some(name), _) => Selected::Profile { name: name.to_owned(), captures: selection.captures, mismatches },
        (None, None) => Selected::NoneMatched(mismatches),
        (None, Some(_)) => match mismatches.into_iter().next() {
            Some(m) if m.rule.is_none() => Selected::PinnedFull,
            Some(m) => Selected::PinnedMismatch(m),
            None => Selected::PinnedMissing,
        },
    }
}

#[cfg(test)]
mod selection_tests {
    use std::collections::HashSet;
    use std::sync::Arc;

    use machinist_crds::Quad;
    use machinist_matching::CompiledProfile;

    use super::*;

    fn profile(name: &str, priority: i32, max: Option<i32>, rules: serde_json::Value, bound: &[&str]) -> ProfileView {
        let spec: HardwareProfileSpec =
            serde_json::from_value(serde_json::json!({"priority": priority, "maxMachines": max, "match": rules}))
                .unwrap_or_else(|e| unreachable!("{e}"));
        let bound: Vec<String> = bound.iter().map(|s| (*s).to_owned()).collect();
        ProfileView::new(name.into(), Arc::new(CompiledProfile::new(name, &spec)), &bound, "m", false)
    }

    fn items() -> Vec<Quad> {
        vec![Quad::new("disk", "vda", "size", "20"), Quad::new("system", "product", "name", "KVM")]
    }

    #[test]
    fn the_first_profile_with_room_wins_and_captures() {
        let profiles = [
            profile("small", 1, Some(1), serde_json::json!([["disk", "$disk", "size", "gt(10)"]]), &["other"]),
            profile("any", 2, None, serde_json::json!([["disk", "$disk", "size", "gt(10)"]]), &[]),
        ];
        let Selected::Profile { name, captures, mismatches } =
            choose_profile(&items(), &profiles, None, &HashSet::new())
        else {
            unreachable!()
        };
        assert_eq!(name, "any");
        assert_eq!(captures.variables.get("disk").map(String::as_str), Some("vda"));
        assert_eq!(mismatches.len(), 1);
        assert!(mismatches[0].reason.contains("maxMachines"), "{}", mismatches[0].reason);
    }

    #[test]
    fn a_machine_holding_its_slot_is_not_counted_against_it() {
        let profiles = [profile("small", 1, Some(1), serde_json::json!([]), &["m"])];
        assert!(matches!(choose_profile(&items(), &profiles, None, &HashSet::new()), Selected::Profile { .. }));
        let full = HashSet::from(["small".to_owned()]);
        assert!(matches!(choose_profile(&items(), &profiles, None, &full), Selected::NoneMatched(_)));
    }

    #[test]
    fn pinned_profiles_are_checked_not_chosen() {
        let profiles = [
            profile("hp", 1, None, serde_json::json!([["system", "product", "name", "ProLiant"]]), &[]),
            profile("vm", 2, Some(0), serde_json::json!([]), &[]),
            profile("bad", 3, None, serde_json::json!([["disk", "$d", "size", "gtt(4)"]]), &[]),
        ];
        let none = HashSet::new();
        assert!(
            matches!(choose_profile(&items(), &profiles, Some("hp"), &none), Selected::PinnedMismatch(m) if m.rule == Some(0))
        );
        assert_eq!(choose_profile(&items(), &profiles, Some("vm"), &none), Selected::PinnedFull);
        assert_eq!(choose_profile(&items(), &profiles, Some("bad"), &none), Selected::PinnedInvalid);
        assert_eq!(choose_profile(&items(), &profiles, Some("nope"), &none), Selected::PinnedMissing);
        let Selected::NoneMatched(mismatches) = choose_profile(&items(), &profiles, None, &none) else {
            unreachable!()
        };
        assert_eq!(
            mismatches.iter().map(|m| m.profile.as_str()).collect::<Vec<_>>(),
            ["hp", "vm"],
            "invalid profiles are not offered"
        );
    }
}
