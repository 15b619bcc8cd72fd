//! What a VM's power calls for, pure: `spec.online` against what libvirt reports, with the
//! shutdown timeout (one ACPI request, then forced off once the timeout has passed since it).
//!
//! Power is level-triggered, as Metal3 drives hosts: while `online` is true a guest that
//! powered itself off is started again; to keep one off, set `online: false`.

use std::time::Duration;

/// What libvirt says of a domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observed {
    /// Running (or blocked on I/O).
    On,
    /// Shut off or crashed.
    Off,
    /// Going down after a shutdown request.
    ShuttingDown,
    /// Paused.
    Paused,
}

/// A power call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerAction {
    /// Nothing to do.
    None,
    /// Power on.
    Start,
    /// Resume a paused domain.
    Resume,
    /// Ask the guest to power off (ACPI power button).
    Shutdown,
    /// Power off at once.
    Destroy,
    /// Wait for the requested shutdown; look again after the given time.
    Wait(Duration),
}

/// What to do, given whether the VM should run, what libvirt reports, and how long ago a
/// shutdown was requested (`None`: not requested).
pub fn decide(
    online: bool,
    observed: Observed,
    shutdown_requested: Option<Duration>,
    timeout: Duration,
) -> PowerAction {
    match (online, observed) {
        (true, Observed::Off) => PowerAction::Start,
        (true, Observed::Paused) => PowerAction::Resume,
        (true, Observed::On | Observed::ShuttingDown) => PowerAction::None,
        (false, Observed::Off) => PowerAction::None,
        (false, Observed::On | Observed::ShuttingDown | Observed::Paused) => match shutdown_requested {
            None => PowerAction::Shutdown,
            Some(since) if since >= timeout => PowerAction::Destroy,
            // A paused guest cannot answer ACPI.
            Some(_) if observed == Observed::Paused => PowerAction::Destroy,
            Some(since) => PowerAction::Wait(timeout - since),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(120);

    fn secs(s: u64) -> Option<Duration> {
        Some(Duration::from_secs(s))
    }

    #[test]
    fn online_starts_and_resumes() {
        assert_eq!(decide(true, Observed::Off, None, TIMEOUT), PowerAction::Start);
        assert_eq!(decide(true, Observed::Paused, None, TIMEOUT), PowerAction::Resume);
        assert_eq!(decide(true, Observed::On, None, TIMEOUT), PowerAction::None);
        // A guest that powered itself off is started again (level-triggered).
        assert_eq!(decide(true, Observed::Off, secs(5), TIMEOUT), PowerAction::Start);
    }

    #[test]
    fn offline_asks_then_waits_then_forces() {
        assert_eq!(decide(false, Observed::On, None, TIMEOUT), PowerAction::Shutdown);
        assert_eq!(decide(false, Observed::On, secs(1), TIMEOUT), PowerAction::Wait(Duration::from_secs(119)));
        assert_eq!(
            decide(false, Observed::ShuttingDown, secs(110), TIMEOUT),
            PowerAction::Wait(Duration::from_secs(10))
        );
        assert_eq!(decide(false, Observed::On, secs(120), TIMEOUT), PowerAction::Destroy);
        assert_eq!(decide(false, Observed::On, secs(5), Duration::from_secs(3)), PowerAction::Destroy);
        assert_eq!(decide(false, Observed::Off, secs(5), TIMEOUT), PowerAction::None);
        assert_eq!(decide(false, Observed::Off, None, TIMEOUT), PowerAction::None);
    }

    #[test]
    fn a_paused_guest_is_forced_off_once_asked() {
        assert_eq!(decide(false, Observed::Paused, None, TIMEOUT), PowerAction::Shutdown);
        assert_eq!(decide(false, Observed::Paused, secs(1), TIMEOUT), PowerAction::Destroy);
    }
}
