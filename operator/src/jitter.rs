//! Random spread for retry delays, so that objects (or replicas) that failed together do not
//! retry in step. Used by the reconcile backoff ([`crate::controllers::Backoff`]) and by leader
//! election ([`crate::leader`]).

use std::time::Duration;

/// A delay drawn uniformly from `low..=high` (`low` when `high` is not above it).
pub fn between(low: Duration, high: Duration) -> Duration {
    scale(low, high, fraction())
}

/// The point `fraction` (0 to 1) of the way from `low` to `high`.
fn scale(low: Duration, high: Duration, fraction: f64) -> Duration {
    let span = high.saturating_sub(low);
    low.saturating_add(span.mul_f64(fraction.clamp(0.0, 1.0)))
}

/// A number in [0, 1]; the middle if the system has no randomness to give (never seen on
/// Linux, but not worth failing a retry over).
fn fraction() -> f64 {
    let mut bytes = [0u8; 4];
    if getrandom::fill(&mut bytes).is_err() {
        return 0.5;
    }
    f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_span_the_whole_range_and_stay_in_it() {
        let (low, high) = (Duration::from_millis(500), Duration::from_secs(1));
        assert_eq!(scale(low, high, 0.0), low);
        assert_eq!(scale(low, high, 1.0), high);
        assert_eq!(scale(low, high, 0.5), Duration::from_millis(750));
        assert_eq!(scale(high, low, 0.7), high, "an empty range gives its start");
        let drawn: Vec<Duration> = (0..200).map(|_| between(low, high)).collect();
        assert!(drawn.iter().all(|d| (low..=high).contains(d)), "{drawn:?}");
        // 200 draws from a 500 ms range: identical ones would mean no spread at all.
        assert!(drawn.iter().any(|d| *d != drawn[0]), "{drawn:?}");
    }
}
