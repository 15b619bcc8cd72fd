//! Kubernetes Events as machinist's components write them (`events.k8s.io/v1`, one object per
//! occurrence: they are published on transitions, so there is no series to aggregate).

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};

/// What happened to an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// A Warning rather than a Normal Event.
    pub warning: bool,
    /// PascalCase reason.
    pub reason: String,
    /// Human-readable note.
    pub note: String,
    /// What the controller was doing (`Reconcile`, `Deprovision`).
    pub action: String,
}

/// The Event about `regarding`, from `controller` (replica `instance`), named as client-go names them (`<object>.<nanoseconds in hex>`).
pub fn event(
    regarding: &ObjectReference,
    notice: Notice,
    controller: &str,
    instance: &str,
    now: jiff::Timestamp,
) -> Event {
    let object = regarding.name.clone().unwrap_or_else(|| controller.to_owned());
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{object}.{:x}", now.as_nanosecond())),
            namespace: regarding.namespace.clone(),
            ..ObjectMeta::default()
        },
        action: Some(notice.action),
        reason: Some(notice.reason),
        note: Some(notice.note),
        type_: Some(if notice.warning { "Warning" } else { "Normal" }.to_owned()),
        event_time: Some(MicroTime(now)),
        regarding: Some(regarding.clone()),
        reporting_controller: Some(controller.to_owned()),
        reporting_instance: Some(instance.to_owned()),
        ..Event::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_name_their_object_and_reporter() {
        let regarding = ObjectReference {
            kind: Some("Machine".into()),
            name: Some("m-1".into()),
            namespace: Some("lab".into()),
            ..ObjectReference::default()
        };
        let now = jiff::Timestamp::from_nanosecond(0x1234).unwrap_or_else(|e| unreachable!("{e}"));
        let notice = Notice {
            warning: true,
            reason: "CmdbExhausted".into(),
            note: "pool is exhausted".into(),
            action: "Reconcile".into(),
        };
        let event = event(&regarding, notice, "machinist-operator", "replica-a", now);
        assert_eq!(event.metadata.name.as_deref(), Some("m-1.1234"));
        assert_eq!(event.metadata.namespace.as_deref(), Some("lab"));
        assert_eq!(event.type_.as_deref(), Some("Warning"));
        assert_eq!(event.reason.as_deref(), Some("CmdbExhausted"));
        assert_eq!(event.regarding, Some(regarding));
        assert_eq!(event.reporting_controller.as_deref(), Some("machinist-operator"));
        assert_eq!(event.reporting_instance.as_deref(), Some("replica-a"));
    }
}
