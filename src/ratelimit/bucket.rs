//! One token bucket, with the semantics of Go's `golang.org/x/time/rate.Limiter` that Olla's
//! limits are made of: at most `burst` tokens, refilled continuously at `per_minute / 60` a
//! second, full at the start; a request takes one whole token or is refused, and a refused
//! request takes nothing. Pure: the caller passes `now`.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct TokenBucket {
    per_second: f64,
    burst: f64,
    /// Tokens at `last`; fractional between refills.
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket. `per_minute` and `burst` are at least 1 (config validation sees to it).
    pub fn full(per_minute: u32, burst: u32, now: Instant) -> Self {
        TokenBucket {
            per_second: f64::from(per_minute.max(1)) / 60.0,
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            last: now,
        }
    }

    /// Adds what accrued since the last look. A `now` before it (another worker took its
    /// clock reading first but the lock second) adds nothing: time never runs backwards here.
    fn refill(&mut self, now: Instant) {
        if now > self.last {
            let elapsed = now.duration_since(self.last).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
            self.last = now;
        }
    }

    /// How long until a whole token is there: zero when one is there now.
    pub fn wait(&mut self, now: Instant) -> Duration {
        self.refill(now);
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.per_second)
        }
    }

    /// Takes a token if one is there; else the wait until one is, and nothing taken.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        match self.wait(now) {
            Duration::ZERO => {
                self.tokens -= 1.0;
                Ok(())
            }
            wait => Err(wait),
        }
    }

    /// Whole tokens there now: how many requests would be admitted at once.
    pub fn whole_tokens(&mut self, now: Instant) -> u32 {
        self.refill(now);
        self.tokens.floor() as u32
    }

    /// Full again: the bucket is as good as a new one, so forgetting it loses nothing.
    pub fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    // ## full => burst admitted at once, then refused
    #[test]
    fn a_full_bucket_admits_its_burst_at_once_then_refuses() {
        let t0 = Instant::now();
        let mut b = TokenBucket::full(60, 3, t0);
        assert_eq!(b.whole_tokens(t0), 3);
        for _ in 0..3 {
            assert_eq!(b.try_take(t0), Ok(()));
        }
        // 60/min is one a second: the next token is a second away.
        assert_eq!(b.try_take(t0), Err(Duration::from_secs(1)));
        assert_eq!(b.whole_tokens(t0), 0);
    }

    // ## empty => refilled at per_minute / 60 a second
    #[test]
    fn tokens_come_back_at_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::full(120, 1, t0);
        assert_eq!(b.try_take(t0), Ok(()));
        let wait = b.try_take(t0 + MS(200)).unwrap_err();
        assert!(
            wait.abs_diff(MS(300)) < Duration::from_micros(1),
            "{wait:?}"
        );
        assert_eq!(b.try_take(t0 + MS(500)), Ok(()));
    }

    // ## refused => nothing taken
    #[test]
    fn a_refused_request_takes_nothing() {
        let t0 = Instant::now();
        let mut b = TokenBucket::full(60, 1, t0);
        assert_eq!(b.try_take(t0), Ok(()));
        for i in 1..10 {
            assert!(b.try_take(t0 + MS(i * 50)).is_err());
        }
        assert_eq!(b.try_take(t0 + MS(1000)), Ok(()));
    }

    // ## never more than burst
    #[test]
    fn a_long_quiet_spell_fills_no_more_than_the_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::full(6000, 5, t0);
        for _ in 0..5 {
            b.try_take(t0).unwrap();
        }
        assert!(!b.is_full(t0));
        let later = t0 + Duration::from_secs(3600);
        assert!(b.is_full(later));
        assert_eq!(b.whole_tokens(later), 5);
    }

    #[test]
    fn a_clock_reading_from_before_the_last_adds_nothing() {
        let t0 = Instant::now();
        let mut b = TokenBucket::full(60, 1, t0 + MS(1000));
        assert_eq!(b.try_take(t0 + MS(1000)), Ok(()));
        assert!(b.try_take(t0).is_err());
        assert_eq!(b.try_take(t0 + MS(2000)), Ok(()));
    }

    proptest::proptest! {
        /// Olla's promise, whatever the timing: over any span from the start, a bucket
        /// admits at most `burst + rate × elapsed` requests.
        #[test]
        fn never_more_than_burst_plus_rate_times_elapsed(
            per_minute in 1u32..100_000,
            burst in 1u32..200,
            gaps in proptest::collection::vec(0u64..5_000, 1..400),
        ) {
            let t0 = Instant::now();
            let mut b = TokenBucket::full(per_minute, burst, t0);
            let (mut now, mut admitted) = (t0, 0u64);
            for gap in gaps {
                now += Duration::from_micros(gap * 100);
                if b.try_take(now).is_ok() {
                    admitted += 1;
                }
                let elapsed = now.duration_since(t0).as_secs_f64();
                let bound = f64::from(burst) + f64::from(per_minute) / 60.0 * elapsed;
                proptest::prop_assert!(
                    admitted as f64 <= bound + 1e-6,
                    "admitted {} > bound {}", admitted, bound
                );
            }
        }

        /// ... and it admits what it owes: after a refusal, waiting the wait it named is
        /// enough, and not much more than needed.
        #[test]
        fn the_named_wait_is_enough_and_no_longer(
            per_minute in 1u32..100_000,
            burst in 1u32..20,
            spent in 0u64..10_000,
        ) {
            let t0 = Instant::now();
            let mut b = TokenBucket::full(per_minute, burst, t0);
            let now = t0 + Duration::from_micros(spent);
            let wait = loop {
                if let Err(w) = b.try_take(now) {
                    break w;
                }
            };
            // A nanosecond of slack for the float-to-duration rounding.
            let early = now + wait.saturating_sub(Duration::from_micros(1));
            if wait > Duration::from_micros(1) {
                proptest::prop_assert!(b.try_take(early).is_err());
            }
            proptest::prop_assert!(b.try_take(now + wait + Duration::from_nanos(1)).is_ok());
        }
    }
}
