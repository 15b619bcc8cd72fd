//! Conditions as every controller writes them: one per type, a transition time that moves only
//! when the status does, and the generation they were computed from.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use machinist_crds::common::Conditions;

/// One condition to set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired<'a> {
    /// `Ready`, `Matched`, `Allocated`, `Valid`…
    pub type_: &'a str,
    /// Its status.
    pub status: bool,
    /// PascalCase cause.
    pub reason: &'a str,
    /// For people.
    pub message: String,
}

impl<'a> Desired<'a> {
    /// A condition that holds.
    pub fn yes(type_: &'a str, reason: &'a str, message: impl Into<String>) -> Self {
        Self { type_, status: true, reason, message: message.into() }
    }

    /// A condition that does not hold.
    pub fn no(type_: &'a str, reason: &'a str, message: impl Into<String>) -> Self {
        Self { type_, status: false, reason, message: message.into() }
    }
}

fn status_word(status: bool) -> &'static str {
    if status { "True" } else { "False" }
}

/// Sets a condition; returns whether its status changed (a transition, worth an Event). The
/// transition time is kept when only the reason or message changes.
pub fn set(conditions: &mut Conditions, desired: Desired<'_>, generation: Option<i64>, now: &Time) -> bool {
    let status = status_word(desired.status);
    match conditions.iter_mut().find(|c| c.type_ == desired.type_) {
        Some(existing) => {
            let transition = existing.status != status;
            if transition {
                existing.last_transition_time = now.clone();
                existing.status = status.to_owned();
            }
            existing.reason = desired.reason.to_owned();
            existing.message = desired.message;
            existing.observed_generation = generation;
            transition
        }
        None => {
            conditions.push(Condition {
                type_: desired.type_.to_owned(),
                status: status.to_owned(),
                reason: desired.reason.to_owned(),
                message: desired.message,
                last_transition_time: now.clone(),
                observed_generation: generation,
            });
            conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
            true
        }
    }
}

/// Removes a condition (it no longer applies).
pub fn remove(conditions: &mut Conditions, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

/// The condition of this type.
pub fn find<'c>(conditions: &'c Conditions, type_: &str) -> Option<&'c Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of this type is `True`.
pub fn is_true(conditions: &Conditions, type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Time {
        Time(jiff::Timestamp::from_second(seconds).unwrap_or_default())
    }

    #[test]
    fn transition_time_moves_only_with_the_status() {
        let mut conditions = Conditions::new();
        assert!(set(&mut conditions, Desired::no("Matched", "NoProfileMatched", "none"), Some(1), &at(10)));
        assert!(!set(&mut conditions, Desired::no("Matched", "ProfileFull", "full"), Some(2), &at(20)));
        let c = find(&conditions, "Matched").cloned().unwrap_or_else(|| unreachable!());
        assert_eq!(
            (c.reason.as_str(), c.last_transition_time, c.observed_generation),
            ("ProfileFull", at(10), Some(2))
        );
        assert!(set(&mut conditions, Desired::yes("Matched", "Matched", "bound to vm"), Some(2), &at(30)));
        assert_eq!(find(&conditions, "Matched").map(|c| c.last_transition_time.clone()), Some(at(30)));
        assert!(is_true(&conditions, "Matched"));
        remove(&mut conditions, "Matched");
        assert!(conditions.is_empty());
    }

    #[test]
    fn conditions_stay_sorted_by_type() {
        let mut conditions = Conditions::new();
        for type_ in ["Ready", "Allocated", "Matched"] {
            set(&mut conditions, Desired::no(type_, "Waiting", ""), None, &at(1));
        }
        let types: Vec<&str> = conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["Allocated", "Matched", "Ready"]);
    }
}
