//! Choosing a machine's CMDB entry, as eDeploy's `update_cmdb` does, and giving it back.
//!
//! eDeploy first looks for an entry that already holds the machine's variables — only its `$$`
//! variables when the rules have some, all of them otherwise — and reuses it; failing that (and
//! only when there are no `$$` variables) it takes the first entry without `used`. The chosen
//! entry is merged with the machine's variables (the machine's win) and marked used. Here an
//! entry is *used* when a [`CmdbAllocationRecord`] holds it or when it carries a `used`
//! variable (entries imported from an eDeploy CMDB that had already given them out); the
//! record keeps the machine's variables, so that the entry "holds" them as eDeploy's does.
//! Unlike eDeploy, an entry held by another machine is never given out a second time.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use machinist_crds::cmdb::CmdbAllocationRecord;

use crate::generate::Entry;
use crate::matcher::Captures;

/// The variable that marks an entry as given out (eDeploy's `'used': 1`).
pub const USED: &str = "used";

/// The entry chosen for a machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    /// Index in the expanded entry list.
    pub entry: usize,
    /// The entry's variables merged with the machine's (the machine's win), without `used`:
    /// what the machine's `status.variables` should hold.
    pub variables: BTreeMap<String, String>,
    /// The record to keep in the Cmdb's `status.allocations`.
    pub record: CmdbAllocationRecord,
    /// The machine already held this entry.
    pub reused: bool,
}

/// No entry can be given.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AllocationError {
    /// The rules have `$$` variables and no free entry carries their values (eDeploy: "No entry
    /// matched in the CMDB").
    #[error("no entry of the CMDB has {selectors}{}", held_note(.held_by))]
    NoEntryMatched {
        /// The `$$` variables, `name=value, …`.
        selectors: String,
        /// Entries that carry them but are held by other machines: (entry, machine).
        held_by: Vec<(usize, String)>,
    },
    /// Every entry is used (eDeploy: "No more entry in the CMDB").
    #[error("no free entry left in the CMDB ({total} entries, all used)")]
    Exhausted {
        /// Entries in the CMDB.
        total: usize,
    },
}

fn held_note(held: &[(usize, String)]) -> String {
    if held.is_empty() {
        return String::new();
    }
    let list: Vec<String> = held.iter().map(|(e, m)| format!("entry {e} held by {m}")).collect();
    format!(" free ({})", list.join(", "))
}

/// Picks the entry for `machine`, whose rules captured `captures`, given the CMDB's entries
/// (from [`crate::generate::expand_cmdb`]) and its current allocations.
pub fn choose_entry(
    entries: &[Entry],
    allocations: &[CmdbAllocationRecord],
    machine: &str,
    captures: &Captures,
) -> Result<Choice, AllocationError> {
    Holdings::new(entries.len(), allocations).choose(entries, machine, captures)
}

/// [`choose_entry`], then the allocations with the machine's records replaced by the new one
/// (what the Cmdb's `status.allocations` becomes).
pub fn allocate(
    entries: &[Entry],
    allocations: &[CmdbAllocationRecord],
    machine: &str,
    captures: &Captures,
) -> Result<(Vec<CmdbAllocationRecord>, Choice), AllocationError> {
    let mut holdings = Holdings::new(entries.len(), allocations);
    let choice = holdings.allocate(entries, machine, captures)?;
    Ok((holdings.into_records(), choice))
}

/// The allocations without `machine`'s (on deprovision).
pub fn release(allocations: &[CmdbAllocationRecord], machine: &str) -> Vec<CmdbAllocationRecord> {
    allocations.iter().filter(|r| r.machine != machine).cloned().collect()
}

/// A Cmdb's allocations, indexed by entry and by machine, for a batch of decisions: each
/// [`Holdings::allocate`] or [`Holdings::release`] costs what one decision needs, not a copy of
/// every record (a Cmdb of 10,000 entries takes batches of hundreds of requests).
#[derive(Clone, Debug, Default)]
pub struct Holdings {
    by_entry: HashMap<usize, CmdbAllocationRecord>,
    by_machine: HashMap<String, BTreeSet<usize>>,
    /// Records naming no entry of the current expansion (the Cmdb shrank): kept as they are.
    stray: Vec<CmdbAllocationRecord>,
}

impl Holdings {
    /// The allocations of a Cmdb of `total` entries.
    pub fn new(total: usize, allocations: &[CmdbAllocationRecord]) -> Self {
        Self::from_records(total, allocations.to_vec())
    }

    /// [`Holdings::new`] taking the records rather than copying them.
    pub fn from_records(total: usize, allocations: Vec<CmdbAllocationRecord>) -> Self {
        let mut holdings = Self::default();
        for record in allocations {
            match usize::try_from(record.entry).ok().filter(|e| *e < total) {
                Some(entry) => {
                    holdings.by_machine.entry(record.machine.clone()).or_default().insert(entry);
                    let machine = record.machine.clone();
                    // Two records of one entry (a status edited by hand): the last holds it,
                    // the other is kept as it is.
                    if let Some(earlier) = holdings.by_entry.insert(entry, record) {
                        if let Some(own) = holdings.by_machine.get_mut(&earlier.machine)
                            && earlier.machine != machine
                        {
                            own.remove(&entry);
                        }
                        holdings.stray.push(earlier);
                    }
                }
                None => holdings.stray.push(record),
            }
        }
        holdings
    }

    /// [`choose_entry`] over these holdings.
    pub fn choose(&self, entries: &[Entry], machine: &str, captures: &Captures) -> Result<Choice, AllocationError> {
        let held = &self.by_entry;
        let forced = !captures.selectors.is_empty();
        let wanted = if forced { &captures.selectors } else { &captures.variables };
        // What eDeploy's entry would hold: the entry, overwritten by its holder's variables.
        let value = |i: usize, key: &str| -> Option<&str> {
            held.get(&i).and_then(|r| r.variables.get(key)).or_else(|| entries[i].get(key)).map(String::as_str)
        };
        let includes = |i: usize| wanted.iter().all(|(k, v)| value(i, k) == Some(v.as_str()));
        let held_by_other = |i: usize| held.get(&i).is_some_and(|r| r.machine != machine);
        let choose = |i: usize, reused: bool| {
            let mut variables: BTreeMap<String, String> = entries[i].clone();
            if let Some(r) = held.get(&i).filter(|r| r.machine == machine) {
                variables.extend(r.variables.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            variables.extend(captures.variables.iter().map(|(k, v)| (k.clone(), v.clone())));
            variables.remove(USED);
            Choice {
                entry: i,
                variables,
                record: CmdbAllocationRecord {
                    entry: i32::try_from(i).unwrap_or(i32::MAX),
                    machine: machine.to_owned(),
                    variables: captures.variables.clone(),
                },
                reused,
            }
        };

        // The machine's own entry, if it still fits its `$$` variables.
        if let Some(&i) = self.by_machine.get(machine).and_then(|own| own.first())
            && (!forced || includes(i))
        {
            return Ok(choose(i, true));
        }
        // eDeploy's first pass: an entry already holding the machine's variables. With no
        // variable at all every entry would qualify (eDeploy hands entry 0 to every such
        // machine): skip.
        if !wanted.is_empty()
            && let Some(i) = (0..entries.len()).find(|&i| !held_by_other(i) && includes(i))
        {
            return Ok(choose(i, false));
        }
        if forced {
            let held_by = (0..entries.len())
                .filter(|&i| held_by_other(i) && includes(i))
                .filter_map(|i| held.get(&i).map(|r| (i, r.machine.clone())))
                .collect();
            let selectors = wanted.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ");
            return Err(AllocationError::NoEntryMatched { selectors, held_by });
        }
        // eDeploy's second pass: the first entry nobody uses.
        (0..entries.len())
            .find(|&i| !held.contains_key(&i) && !entries[i].contains_key(USED))
            .map(|i| choose(i, false))
            .ok_or(AllocationError::Exhausted { total: entries.len() })
    }

    /// Chooses `machine`'s entry and records it in place of whatever the machine held.
    pub fn allocate(
        &mut self,
        entries: &[Entry],
        machine: &str,
        captures: &Captures,
    ) -> Result<Choice, AllocationError> {
        let choice = self.choose(entries, machine, captures)?;
        self.release(machine);
        self.by_machine.entry(machine.to_owned()).or_default().insert(choice.entry);
        self.by_entry.insert(choice.entry, choice.record.clone());
        Ok(choice)
    }

    /// Gives back every entry `machine` holds.
    pub fn release(&mut self, machine: &str) {
        for entry in self.by_machine.remove(machine).unwrap_or_default() {
            self.by_entry.remove(&entry);
        }
        self.stray.retain(|r| r.machine != machine);
    }

    /// The records, ordered by entry (what the Cmdb's `status.allocations` holds).
    pub fn into_records(self) -> Vec<CmdbAllocationRecord> {
        let mut records: Vec<CmdbAllocationRecord> = self.by_entry.into_values().chain(self.stray).collect();
        records.sort_by_key(|r| r.entry);
        records
    }
}

/// Entries neither held nor marked `used` (the Cmdb's `status.free`).
pub fn free_count(entries: &[Entry], allocations: &[CmdbAllocationRecord]) -> usize {
    let held: std::collections::HashSet<usize> =
        allocations.iter().filter_map(|r| usize::try_from(r.entry).ok()).collect();
    (0..entries.len()).filter(|i| !held.contains(i) && !entries[*i].contains_key(USED)).count()
}

/// Values of `key` that several entries share, with those entries (the `Duplicates`
/// condition, e.g. for `ip`).
pub fn duplicates(entries: &[Entry], key: &str) -> Vec<(String, Vec<usize>)> {
    let mut seen: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, entry) in entries.iter().enumerate() {
        if let Some(v) = entry.get(key) {
            seen.entry(v).or_default().push(i);
        }
    }
    seen.into_iter().filter(|(_, v)| v.len() > 1).map(|(k, v)| (k.to_owned(), v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holdings_decide_a_batch_as_one_allocate_after_another() {
        let entries: Vec<Entry> = (0..6).map(|i| map(&[("ip", &format!("10.0.0.{i}"))])).collect();
        let captures = Captures::default();
        let mut one_by_one =
            vec![CmdbAllocationRecord { entry: 9, machine: "gone".into(), variables: BTreeMap::new() }];
        let mut holdings = Holdings::new(entries.len(), &one_by_one);
        for machine in ["a", "b", "a", "c"] {
            let (next, expected) = allocate(&entries, &one_by_one, machine, &captures).unwrap();
            one_by_one = next;
            assert_eq!(holdings.allocate(&entries, machine, &captures).unwrap(), expected);
        }
        one_by_one = release(&one_by_one, "b");
        holdings.release("b");
        let (next, expected) = allocate(&entries, &one_by_one, "d", &captures).unwrap();
        assert_eq!(holdings.allocate(&entries, "d", &captures).unwrap(), expected);
        assert_eq!(expected.entry, 1, "b's entry is the first free one again");
        assert_eq!(holdings.into_records(), next, "same records, stray one kept, in entry order");
    }

    #[test]
    fn a_doubly_held_entry_keeps_both_records_and_the_last_holds_it() {
        let entries: Vec<Entry> = (0..3).map(|i| map(&[("ip", &format!("10.0.0.{i}"))])).collect();
        let record =
            |machine: &str| CmdbAllocationRecord { entry: 0, machine: machine.into(), variables: BTreeMap::new() };
        let holdings = Holdings::new(entries.len(), &[record("x"), record("y")]);
        let choice = holdings.choose(&entries, "x", &Captures::default()).unwrap();
        assert_eq!(choice.entry, 1, "x's record was overwritten: x gets a free entry");
        assert_eq!(holdings.choose(&entries, "y", &Captures::default()).unwrap().entry, 0);
        assert_eq!(holdings.into_records().len(), 2);
    }
    use crate::generate::{expand, expand_cmdb};
    use machinist_crds::cmdb::GenerateBlock;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn captures(vars: &[(&str, &str)], selectors: &[(&str, &str)]) -> Captures {
        let mut variables = map(vars);
        variables.extend(map(selectors));
        Captures { variables, selectors: map(selectors) }
    }

    fn seed_vm() -> Vec<Entry> {
        let block = GenerateBlock {
            patterns: map(&[("ip", "192.168.122.3-7"), ("hostname", "host03-07")]),
            lists: BTreeMap::new(),
        };
        expand(&block).unwrap()
    }

    #[test]
    fn first_unused_entry_then_release() {
        let entries = seed_vm();
        let vm1 = captures(&[("disk", "vda"), ("eth", "eth0"), ("mac", "52:54:00:88:17:3c")], &[]);
        let (allocations, choice) = allocate(&entries, &[], "vm1", &vm1).unwrap();
        assert_eq!(choice.entry, 0);
        assert!(!choice.reused);
        assert_eq!(
            choice.variables,
            map(&[
                ("disk", "vda"),
                ("eth", "eth0"),
                ("hostname", "host03"),
                ("ip", "192.168.122.3"),
                ("mac", "52:54:00:88:17:3c"),
            ])
        );
        let vm2 = captures(&[("disk", "vda"), ("eth", "eth0"), ("mac", "52:54:00:00:00:02")], &[]);
        let (allocations, choice2) = allocate(&entries, &allocations, "vm2", &vm2).unwrap();
        assert_eq!(choice2.entry, 1);
        assert_eq!(free_count(&entries, &allocations), 3);
        // Reconciling again keeps the same entry.
        let again = choose_entry(&entries, &allocations, "vm1", &vm1).unwrap();
        assert_eq!((again.entry, again.reused), (0, true));
        // Deprovisioned: entry 0 is free again and goes to the next machine.
        let allocations = release(&allocations, "vm1");
        assert_eq!(free_count(&entries, &allocations), 4);
        let vm3 = captures(&[("mac", "52:54:00:00:00:03")], &[]);
        assert_eq!(choose_entry(&entries, &allocations, "vm3", &vm3).unwrap().entry, 0);
    }

    #[test]
    fn exhausted() {
        let entries = seed_vm();
        let mut allocations = Vec::new();
        for i in 0..5 {
            let c = captures(&[("mac", &format!("m{i}"))], &[]);
            allocations = allocate(&entries, &allocations, &format!("vm{i}"), &c).unwrap().0;
        }
        let err = choose_entry(&entries, &allocations, "vm9", &captures(&[("mac", "m9")], &[])).unwrap_err();
        assert_eq!(err, AllocationError::Exhausted { total: 5 });
    }

    #[test]
    fn an_entry_already_holding_the_variables_is_reused() {
        // An eDeploy CMDB after one install (seed 002): entry 0 holds the machine's variables.
        let entries = vec![
            map(&[
                ("disk", "vda"),
                ("eth", "eth0"),
                ("hostname", "host3"),
                ("ip", "192.168.122.3"),
                ("mac", "52:54:00:88:17:3c"),
                ("used", "1"),
            ]),
            map(&[("ip", "192.168.122.4"), ("hostname", "host04")]),
        ];
        let same = captures(&[("disk", "vda"), ("eth", "eth0"), ("mac", "52:54:00:88:17:3c")], &[]);
        let c = choose_entry(&entries, &[], "mac-52-54-00-88-17-3c", &same).unwrap();
        assert_eq!(c.entry, 0);
        assert_eq!(c.variables.get("hostname").map(String::as_str), Some("host3"));
        assert!(!c.variables.contains_key("used"));
        let other = captures(&[("disk", "vda"), ("eth", "eth0"), ("mac", "52:54:00:00:00:09")], &[]);
        assert_eq!(choose_entry(&entries, &[], "other", &other).unwrap().entry, 1);
        assert_eq!(free_count(&entries, &[]), 1);
    }

    #[test]
    fn selectors_pick_the_entry_and_only_they_are_compared() {
        let block = GenerateBlock {
            patterns: map(&[("ip", "192.168.122.3-5"), ("hostname", "host3-5")]),
            lists: [("tag".to_owned(), vec!["TAG1".to_owned(), "TAG2".to_owned(), "TAG3".to_owned()])].into(),
        };
        let entries = expand(&block).unwrap();
        let m = captures(&[("eth", "eth0"), ("mac", "aa")], &[("tag", "TAG2")]);
        let (allocations, c) = allocate(&entries, &[], "m2", &m).unwrap();
        assert_eq!((c.entry, c.variables.get("hostname").map(String::as_str)), (1, Some("host4")));
        // Same machine, new NIC: still its entry (only $$ variables are compared).
        let m_new_nic = captures(&[("eth", "eth1"), ("mac", "bb")], &[("tag", "TAG2")]);
        assert_eq!(choose_entry(&entries, &allocations, "m2", &m_new_nic).unwrap().entry, 1);
        // Another machine with the same tag: the entry is held.
        let err = choose_entry(&entries, &allocations, "intruder", &m).unwrap_err();
        assert_eq!(
            err,
            AllocationError::NoEntryMatched { selectors: "tag=TAG2".into(), held_by: vec![(1, "m2".into())] }
        );
        assert!(err.to_string().contains("entry 1 held by m2"), "{err}");
        // A tag no entry has: no fallback to a free entry.
        let unknown = captures(&[], &[("tag", "TAG9")]);
        assert!(matches!(
            choose_entry(&entries, &allocations, "m9", &unknown),
            Err(AllocationError::NoEntryMatched { .. })
        ));
        // A machine whose tag changed leaves its old entry for the right one.
        let moved = captures(&[], &[("tag", "TAG3")]);
        let (allocations, c) = allocate(&entries, &allocations, "m2", &moved).unwrap();
        assert_eq!(c.entry, 2);
        assert_eq!(allocations.iter().map(|r| r.entry).collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn machines_without_variables_take_the_first_free_entry() {
        let entries = seed_vm();
        let none = Captures::default();
        let (allocations, c) = allocate(&entries, &[], "a", &none).unwrap();
        assert_eq!(c.entry, 0);
        assert_eq!(choose_entry(&entries, &allocations, "b", &none).unwrap().entry, 1);
    }

    #[test]
    fn duplicates_are_found() {
        let spec = machinist_crds::CmdbSpec {
            entries: vec![map(&[("ip", "192.168.122.4")])],
            generate: vec![GenerateBlock { patterns: map(&[("ip", "192.168.122.3-5")]), lists: BTreeMap::new() }],
            network: None,
        };
        let entries = expand_cmdb(&spec).unwrap();
        assert_eq!(duplicates(&entries, "ip"), [("192.168.122.4".to_owned(), vec![0, 2])]);
    }
}
