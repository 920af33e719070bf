//! Circuit breakers (SPEC 4.4). One type serves both of an endpoint's breakers: the health
//! breaker counts consecutive failed checks (threshold 3), the proxy breaker consecutive
//! failed proxied requests (threshold 5). Both belong to the endpoint machine; nothing else
//! changes them.
//!
//! `now` is always passed in; transitions come back as `Option<BreakerTransition>` so the
//! machine can turn a `Some` into a note (a log line) and a status change.

use std::time::Duration;

use actix_rt::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// How long an open breaker keeps traffic (or probes) away before a trial.
    pub open_duration: Duration,
}

impl BreakerPolicy {
    pub const HEALTH_DEFAULT: BreakerPolicy = BreakerPolicy {
        failure_threshold: 3,
        open_duration: Duration::from_secs(30),
    };
    pub const PROXY_DEFAULT: BreakerPolicy = BreakerPolicy {
        failure_threshold: 5,
        open_duration: Duration::from_secs(30),
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Traffic flows; `failures` consecutive failures so far.
    Closed { failures: u32 },
    /// Nothing is sent until `until`.
    Open { failures: u32, until: Instant },
    /// Trials may pass (a `recovering` endpoint takes one request at a time, SPEC 4.2); the
    /// first verdict closes or reopens the breaker.
    HalfOpen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerTransition {
    Opened { until: Instant },
    HalfOpened,
    Closed,
}

#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    policy: BreakerPolicy,
    state: BreakerState,
}

impl CircuitBreaker {
    pub fn new(policy: BreakerPolicy) -> Self {
        CircuitBreaker {
            policy,
            state: BreakerState::Closed { failures: 0 },
        }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    pub fn policy(&self) -> BreakerPolicy {
        self.policy
    }

    /// New knobs for the same breaker (a reload): its state and count stay; they apply from
    /// the next transition on.
    pub fn set_policy(&mut self, policy: BreakerPolicy) {
        self.policy = policy;
    }

    /// The state's name in the status API: `closed`, `open` or `half-open`.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            BreakerState::Closed { .. } => "closed",
            BreakerState::Open { .. } => "open",
            BreakerState::HalfOpen => "half-open",
        }
    }

    pub fn is_open(&self) -> bool {
        matches!(self.state, BreakerState::Open { .. })
    }

    pub fn is_half_open(&self) -> bool {
        matches!(self.state, BreakerState::HalfOpen)
    }

    /// Consecutive failures counted so far (the threshold's worth once open).
    pub fn failures(&self) -> u32 {
        match self.state {
            BreakerState::Closed { failures } | BreakerState::Open { failures, .. } => failures,
            BreakerState::HalfOpen => self.policy.failure_threshold,
        }
    }

    /// When an open breaker will let a trial through.
    pub fn half_open_at(&self) -> Option<Instant> {
        match self.state {
            BreakerState::Open { until, .. } => Some(until),
            _ => None,
        }
    }

    pub fn record_failure(&mut self, now: Instant) -> Option<BreakerTransition> {
        match self.state {
            // ## Closed => Closed (one more failure) | Open at the threshold
            BreakerState::Closed { failures } => {
                let failures = failures + 1;
                if failures >= self.policy.failure_threshold {
                    self.open(failures, now)
                } else {
                    self.state = BreakerState::Closed { failures };
                    None
                }
            }
            // ## HalfOpen => Open: the trial failed
            BreakerState::HalfOpen => self.open(self.policy.failure_threshold, now),
            // ## Open => Open: a late report from before it opened changes nothing
            BreakerState::Open { .. } => None,
        }
    }

    pub fn record_success(&mut self) -> Option<BreakerTransition> {
        match self.state {
            // ## Closed => Closed, count reset: the count is of *consecutive* failures (SPEC 11)
            BreakerState::Closed { .. } => {
                self.state = BreakerState::Closed { failures: 0 };
                None
            }
            // ## HalfOpen => Closed: the trial passed
            BreakerState::HalfOpen => {
                self.state = BreakerState::Closed { failures: 0 };
                Some(BreakerTransition::Closed)
            }
            // ## Open => Open: a success that started before it opened proves nothing
            BreakerState::Open { .. } => None,
        }
    }

    /// Moves an open breaker whose time is up to half-open.
    pub fn poll(&mut self, now: Instant) -> Option<BreakerTransition> {
        match self.state {
            // ## Open => HalfOpen once `until` has come
            BreakerState::Open { until, .. } if now >= until => {
                self.state = BreakerState::HalfOpen;
                Some(BreakerTransition::HalfOpened)
            }
            _ => None,
        }
    }

    fn open(&mut self, failures: u32, now: Instant) -> Option<BreakerTransition> {
        let until = now + self.policy.open_duration;
        self.state = BreakerState::Open { failures, until };
        Some(BreakerTransition::Opened { until })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(BreakerPolicy::HEALTH_DEFAULT)
    }

    fn open_breaker(now: Instant) -> CircuitBreaker {
        let mut b = breaker();
        for _ in 0..3 {
            b.record_failure(now);
        }
        b
    }

    #[test]
    fn closed_counts_failures_below_threshold() {
        let now = Instant::now();
        let mut b = breaker();
        assert_eq!(b.record_failure(now), None);
        assert_eq!(b.record_failure(now), None);
        assert_eq!(b.state(), BreakerState::Closed { failures: 2 });
    }

    #[test]
    fn closed_opens_at_threshold() {
        let now = Instant::now();
        let mut b = breaker();
        b.record_failure(now);
        b.record_failure(now);
        let until = now + Duration::from_secs(30);
        assert_eq!(
            b.record_failure(now),
            Some(BreakerTransition::Opened { until })
        );
        assert!(b.is_open());
        assert_eq!(b.half_open_at(), Some(until));
        assert_eq!(b.failures(), 3);
    }

    #[test]
    fn success_resets_closed_count() {
        let now = Instant::now();
        let mut b = breaker();
        b.record_failure(now);
        b.record_failure(now);
        assert_eq!(b.record_success(), None);
        assert_eq!(b.record_failure(now), None);
        assert_eq!(b.failures(), 1);
    }

    #[test]
    fn open_stays_open_before_duration() {
        let now = Instant::now();
        let mut b = open_breaker(now);
        assert_eq!(b.poll(now + Duration::from_secs(29)), None);
        assert!(b.is_open());
    }

    #[test]
    fn open_half_opens_after_duration() {
        let now = Instant::now();
        let mut b = open_breaker(now);
        assert_eq!(
            b.poll(now + Duration::from_secs(30)),
            Some(BreakerTransition::HalfOpened)
        );
        assert!(b.is_half_open());
    }

    #[test]
    fn open_ignores_late_reports() {
        let now = Instant::now();
        let mut b = open_breaker(now);
        assert_eq!(b.record_success(), None);
        assert_eq!(b.record_failure(now + Duration::from_secs(5)), None);
        assert_eq!(b.half_open_at(), Some(now + Duration::from_secs(30)));
    }

    #[test]
    fn half_open_success_closes() {
        let now = Instant::now();
        let mut b = open_breaker(now);
        b.poll(now + Duration::from_secs(30));
        assert_eq!(b.record_success(), Some(BreakerTransition::Closed));
        assert_eq!(b.state(), BreakerState::Closed { failures: 0 });
    }

    #[test]
    fn half_open_failure_reopens() {
        let now = Instant::now();
        let mut b = open_breaker(now);
        let later = now + Duration::from_secs(30);
        b.poll(later);
        let until = later + Duration::from_secs(30);
        assert_eq!(
            b.record_failure(later),
            Some(BreakerTransition::Opened { until })
        );
        assert!(b.is_open());
    }

    #[test]
    fn proxy_default_threshold_is_five() {
        let now = Instant::now();
        let mut b = CircuitBreaker::new(BreakerPolicy::PROXY_DEFAULT);
        for _ in 0..4 {
            assert_eq!(b.record_failure(now), None);
        }
        assert!(matches!(
            b.record_failure(now),
            Some(BreakerTransition::Opened { .. })
        ));
    }
}
