//! Retry timing: exponential backoff with full jitter (a random delay between zero and the
//! exponential bound), so that a rack of machines rebooted together does not retry in step.
//! Pure: the random fraction is passed in.

use std::time::Duration;

/// How retries are spaced and bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Bound of the first delay.
    pub base: Duration,
    /// Largest bound.
    pub cap: Duration,
    /// Attempts in all (the first included).
    pub attempts: u32,
}

impl Default for Backoff {
    /// 1 s doubling to 30 s, 40 attempts: a boot service down for ~10 minutes is waited for.
    fn default() -> Self {
        Self { base: Duration::from_secs(1), cap: Duration::from_secs(30), attempts: 40 }
    }
}

impl Backoff {
    /// The delay before retry number `retry` (0 for the first retry), `fraction` in [0, 1).
    pub fn delay(&self, retry: u32, fraction: f64) -> Duration {
        let bound = self.base.saturating_mul(2u32.saturating_pow(retry.min(31))).min(self.cap);
        bound.mul_f64(fraction.clamp(0.0, 1.0))
    }
}

/// A random fraction in [0, 1) (0.5 when the system has no randomness to give).
pub fn random_fraction() -> f64 {
    let mut bytes = [0u8; 4];
    match crate::random::fill(&mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0),
        Err(_) => 0.5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_and_are_jittered() {
        let b = Backoff::default();
        assert_eq!(b.delay(0, 0.999_999), Duration::from_secs(1).mul_f64(0.999_999));
        assert_eq!(b.delay(3, 0.5), Duration::from_secs(4));
        assert_eq!(b.delay(10, 0.5), Duration::from_secs(15), "capped at 30 s");
        assert_eq!(b.delay(u32::MAX, 1.0), Duration::from_secs(30));
        assert_eq!(b.delay(5, 0.0), Duration::ZERO);
        let f = random_fraction();
        assert!((0.0..1.0).contains(&f));
    }
}
