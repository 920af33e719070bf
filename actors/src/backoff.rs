//! Check scheduling arithmetic (SPEC 4.1, 4.3): how long an endpoint waits before its next
//! check, given how many checks in a row have failed or what a 429 asked for.
//!
//! Pure functions; the actor passes in the failure count and, for jitter, a random number.

use std::time::Duration;

/// How many check intervals to wait after the `n`-th consecutive failure: 1, 2, 4, 8, 12, 12, …
/// (the reference's doubling, held at its 12× cap).
pub fn multiplier(consecutive_failures: u32) -> u32 {
    match consecutive_failures {
        0 | 1 => 1,
        2 => 2,
        3 => 4,
        4 => 8,
        _ => 12,
    }
}

/// The wait before the next check. After a pass (`consecutive_failures == 0`) it is the
/// interval; after the n-th failure `interval × m(n)`, capped at `min(12 × interval,
/// max_backoff)`. A cap below the interval never shortens the wait below the interval.
pub fn wait(
    check_interval: Duration,
    consecutive_failures: u32,
    max_backoff: Duration,
) -> Duration {
    let wanted = check_interval.saturating_mul(multiplier(consecutive_failures));
    wanted.min(cap(check_interval, max_backoff))
}

/// The longest wait between checks: `min(12 × interval, max_backoff)`, never below the
/// interval itself.
pub fn cap(check_interval: Duration, max_backoff: Duration) -> Duration {
    check_interval
        .saturating_mul(12)
        .min(max_backoff)
        .max(check_interval)
}

/// The health breaker's default open time (SPEC 9.4): `min(30s, backoff cap)`, so that a
/// backend back after a short outage is routable within one backoff slot, not 30 s later.
pub fn auto_open_duration(check_interval: Duration, max_backoff: Duration) -> Duration {
    cap(check_interval, max_backoff).min(Duration::from_secs(30))
}

/// Wait after a 429 that named no `Retry-After`.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(30);

/// The longest a `Retry-After` may keep an endpoint unprobed: beyond this a misconfigured
/// backend (`Retry-After: 86400`) would hide a recovery for a day.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The wait after a 429: the backend's `Retry-After` (30s when absent), never shorter than
/// the check interval (`Retry-After: 0` must not turn checks into a busy loop) and never
/// longer than [`MAX_RETRY_AFTER`].
pub fn rate_limit_wait(retry_after: Option<Duration>, check_interval: Duration) -> Duration {
    retry_after
        .unwrap_or(DEFAULT_RETRY_AFTER)
        .clamp(check_interval, MAX_RETRY_AFTER.max(check_interval))
}

/// Spreads `wait` by up to ± `jitter` (a share, 0.0–1.0) of itself. `unit` is a random number
/// in [-1.0, 1.0] supplied by the caller, so this stays deterministic under test.
pub fn jittered(wait: Duration, jitter: f64, unit: f64) -> Duration {
    if jitter <= 0.0 {
        return wait;
    }
    let factor = 1.0 + jitter.min(1.0) * unit.clamp(-1.0, 1.0);
    wait.mul_f64(factor.max(0.0))
}

/// A small xorshift generator for jitter: no need for cryptographic quality, and no crate.
#[derive(Debug, Clone)]
pub struct JitterSource(u64);

impl JitterSource {
    pub fn new(seed: u64) -> Self {
        JitterSource(seed | 1)
    }

    /// The next number in [-1.0, 1.0].
    pub fn next_unit(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn multipliers_follow_the_reference() {
        let m: Vec<u32> = (1..=7).map(multiplier).collect();
        assert_eq!(m, vec![1, 2, 4, 8, 12, 12, 12]);
    }

    #[test]
    fn pass_waits_one_interval() {
        assert_eq!(wait(secs(5), 0, secs(60)), secs(5));
    }

    #[test]
    fn five_second_interval_sequence() {
        let waits: Vec<u64> = (1..=6)
            .map(|n| wait(secs(5), n, secs(60)).as_secs())
            .collect();
        assert_eq!(waits, vec![5, 10, 20, 40, 60, 60]);
    }

    #[test]
    fn thirty_second_interval_is_capped_at_sixty() {
        let waits: Vec<u64> = (1..=4)
            .map(|n| wait(secs(30), n, secs(60)).as_secs())
            .collect();
        assert_eq!(waits, vec![30, 60, 60, 60]);
    }

    #[test]
    fn short_interval_is_capped_at_twelve_intervals() {
        let i = Duration::from_millis(100);
        assert_eq!(wait(i, 5, secs(60)), Duration::from_millis(1200));
        assert_eq!(wait(i, 50, secs(60)), Duration::from_millis(1200));
    }

    #[test]
    fn max_backoff_caps_below_twelve_intervals() {
        assert_eq!(wait(secs(5), 4, secs(30)), secs(30));
    }

    #[test]
    fn cap_below_interval_keeps_the_interval() {
        assert_eq!(wait(secs(120), 3, secs(60)), secs(120));
    }

    #[test]
    fn the_health_breaker_open_time_follows_the_interval() {
        let open = |i: u64| auto_open_duration(secs(i), secs(60));
        assert_eq!(open(1), secs(12));
        assert_eq!(open(2), secs(24));
        assert_eq!(open(5), secs(30));
        assert_eq!(open(30), secs(30));
        assert_eq!(
            auto_open_duration(secs(1), secs(5)),
            secs(5),
            "a lower max_backoff lowers the cap"
        );
    }

    #[test]
    fn rate_limit_waits_are_bounded() {
        let i = Duration::from_secs(5);
        assert_eq!(rate_limit_wait(None, i), Duration::from_secs(30));
        assert_eq!(
            rate_limit_wait(Some(Duration::from_secs(7)), i),
            Duration::from_secs(7)
        );
        assert_eq!(rate_limit_wait(Some(Duration::ZERO), i), i, "no busy loop");
        assert_eq!(
            rate_limit_wait(Some(Duration::from_secs(86_400)), i),
            MAX_RETRY_AFTER
        );
    }

    #[test]
    fn no_jitter_is_exact() {
        assert_eq!(jittered(secs(10), 0.0, 0.9), secs(10));
    }

    #[test]
    fn jitter_spreads_within_bounds() {
        assert_eq!(jittered(secs(10), 0.1, 1.0), secs(11));
        assert_eq!(jittered(secs(10), 0.1, -1.0), secs(9));
        assert_eq!(jittered(secs(10), 0.1, 0.0), secs(10));
    }

    #[test]
    fn jitter_source_stays_in_range_and_varies() {
        let mut j = JitterSource::new(42);
        let draws: Vec<f64> = (0..1000).map(|_| j.next_unit()).collect();
        assert!(draws.iter().all(|u| (-1.0..=1.0).contains(u)));
        assert!(draws.iter().any(|u| *u > 0.5) && draws.iter().any(|u| *u < -0.5));
    }
}
