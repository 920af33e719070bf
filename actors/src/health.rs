//! The health state machine of one endpoint (SPEC 4.2).
//!
//! Owned by the endpoint actor, which feeds it check results and proxied-request connect
//! failures; the whole machine is the single function [`next`], so every transition is a
//! unit test away. No clock and no network in here: latency arrives inside the event.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// What the status API and the router see of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Healthy,
    Degraded,
    Recovering,
    /// Up but loading a model (SPEC 9.3): not routable, not failing either.
    Warming,
    Unhealthy,
    Unknown,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Healthy,
        Status::Degraded,
        Status::Recovering,
        Status::Warming,
        Status::Unhealthy,
        Status::Unknown,
    ];

    /// Whether the router may send requests here at all (SPEC 4.2 table).
    pub fn is_routable(self) -> bool {
        matches!(
            self,
            Status::Healthy | Status::Degraded | Status::Recovering
        )
    }

    /// Share of traffic used by the weighted balancer. `recovering` gets test traffic only,
    /// which the balancer enforces with an in-flight limit rather than a weight.
    pub fn weight(self) -> f64 {
        match self {
            Status::Healthy => 1.0,
            Status::Degraded => 0.3,
            Status::Recovering => 0.1,
            Status::Warming | Status::Unhealthy | Status::Unknown => 0.0,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Healthy => "healthy",
            Status::Degraded => "degraded",
            Status::Recovering => "recovering",
            Status::Warming => "warming",
            Status::Unhealthy => "unhealthy",
            Status::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The machine's state. `Recovering` remembers how many consecutive passes it has seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthState {
    Unknown,
    Healthy,
    Degraded,
    Recovering { passes: u32 },
    Warming,
    Unhealthy,
}

impl HealthState {
    pub fn status(self) -> Status {
        match self {
            HealthState::Unknown => Status::Unknown,
            HealthState::Healthy => Status::Healthy,
            HealthState::Degraded => Status::Degraded,
            HealthState::Recovering { .. } => Status::Recovering,
            HealthState::Warming => Status::Warming,
            HealthState::Unhealthy => Status::Unhealthy,
        }
    }
}

/// What can happen to an endpoint's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthEvent {
    /// A health check answered 2xx within its deadline, taking `latency`.
    CheckPassed { latency: Duration },
    /// A health check failed (connect error, timeout, non-2xx, …).
    CheckFailed,
    /// A proxied request could not connect: treated exactly like a failed check.
    ConnectFailed,
    /// A check answered 503 "loading model" (SPEC 9.3).
    CheckWarming,
}

/// The knobs the machine needs; copied from the endpoint's resolved config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthPolicy {
    /// A passing check slower than this makes the endpoint `degraded`.
    pub degraded_latency: Duration,
    /// Consecutive passing checks needed to leave `recovering` (at least 1).
    pub recovery_successes: u32,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        HealthPolicy {
            degraded_latency: Duration::from_secs(2),
            recovery_successes: 2,
        }
    }
}

impl HealthPolicy {
    fn by_latency(&self, latency: Duration) -> HealthState {
        if latency > self.degraded_latency {
            HealthState::Degraded
        } else {
            HealthState::Healthy
        }
    }
}

/// The whole health state machine (SPEC 4.2).
pub fn next(state: HealthState, event: HealthEvent, policy: &HealthPolicy) -> HealthState {
    use HealthEvent::*;
    use HealthState::*;
    match (state, event) {
        // ## any => Warming: the server is up and loading a model; not a failure.
        (_, CheckWarming) => Warming,

        // ## any => Unhealthy: a failed check and a failed connection are the same news.
        (_, CheckFailed | ConnectFailed) => Unhealthy,

        // ## Unknown | Healthy | Degraded | Warming => (Healthy | Degraded), by latency: a
        // server that finished loading serves at once, without a recovery period.
        (Unknown | Healthy | Degraded | Warming, CheckPassed { latency }) => {
            policy.by_latency(latency)
        }

        // ## Unhealthy => Recovering (1 pass so far), or straight back when 1 pass suffices
        (Unhealthy, CheckPassed { latency }) => {
            if policy.recovery_successes <= 1 {
                policy.by_latency(latency)
            } else {
                Recovering { passes: 1 }
            }
        }

        // ## Recovering => Recovering (one more pass) | (Healthy | Degraded) at the threshold
        (Recovering { passes }, CheckPassed { latency }) => {
            let passes = passes + 1;
            if passes >= policy.recovery_successes {
                policy.by_latency(latency)
            } else {
                Recovering { passes }
            }
        }
    }
}

/// Whether going from `from` to `to` is a recovery, which triggers model discovery (SPEC 4.5,
/// 9.3: a server that finished loading may hold another model than before).
pub fn is_recovery(from: Status, to: Status) -> bool {
    matches!(from, Status::Unhealthy | Status::Warming) && to.is_routable()
}

#[cfg(test)]
mod tests {
    use super::HealthEvent::*;
    use super::HealthState::*;
    use super::*;

    const FAST: Duration = Duration::from_millis(10);
    const SLOW: Duration = Duration::from_secs(3);

    fn policy() -> HealthPolicy {
        HealthPolicy::default()
    }

    fn pass(latency: Duration) -> HealthEvent {
        CheckPassed { latency }
    }

    #[test]
    fn unknown_pass_fast_is_healthy() {
        assert_eq!(next(Unknown, pass(FAST), &policy()), Healthy);
    }

    #[test]
    fn unknown_pass_slow_is_degraded() {
        assert_eq!(next(Unknown, pass(SLOW), &policy()), Degraded);
    }

    #[test]
    fn unknown_fail_is_unhealthy() {
        assert_eq!(next(Unknown, CheckFailed, &policy()), Unhealthy);
    }

    #[test]
    fn latency_equal_to_threshold_is_still_healthy() {
        assert_eq!(
            next(Unknown, pass(Duration::from_secs(2)), &policy()),
            Healthy
        );
    }

    #[test]
    fn healthy_moves_by_latency() {
        assert_eq!(next(Healthy, pass(FAST), &policy()), Healthy);
        assert_eq!(next(Healthy, pass(SLOW), &policy()), Degraded);
    }

    #[test]
    fn degraded_moves_by_latency() {
        assert_eq!(next(Degraded, pass(SLOW), &policy()), Degraded);
        assert_eq!(next(Degraded, pass(FAST), &policy()), Healthy);
    }

    #[test]
    fn healthy_and_degraded_fail_to_unhealthy() {
        assert_eq!(next(Healthy, CheckFailed, &policy()), Unhealthy);
        assert_eq!(next(Degraded, CheckFailed, &policy()), Unhealthy);
    }

    #[test]
    fn connect_failure_is_unhealthy_from_every_state() {
        for state in [
            Unknown,
            Healthy,
            Degraded,
            Recovering { passes: 1 },
            Unhealthy,
        ] {
            assert_eq!(
                next(state, ConnectFailed, &policy()),
                Unhealthy,
                "from {state:?}"
            );
        }
    }

    #[test]
    fn unhealthy_pass_begins_recovery() {
        assert_eq!(
            next(Unhealthy, pass(FAST), &policy()),
            Recovering { passes: 1 }
        );
        assert_eq!(
            next(Unhealthy, pass(SLOW), &policy()),
            Recovering { passes: 1 }
        );
    }

    #[test]
    fn unhealthy_fail_stays_unhealthy() {
        assert_eq!(next(Unhealthy, CheckFailed, &policy()), Unhealthy);
    }

    #[test]
    fn recovering_completes_after_recovery_successes() {
        let p = policy();
        let one = next(Unhealthy, pass(FAST), &p);
        assert_eq!(next(one, pass(FAST), &p), Healthy);
        assert_eq!(next(one, pass(SLOW), &p), Degraded);
    }

    #[test]
    fn recovering_counts_passes_below_threshold() {
        let p = HealthPolicy {
            recovery_successes: 3,
            ..policy()
        };
        let s = next(Unhealthy, pass(FAST), &p);
        let s = next(s, pass(FAST), &p);
        assert_eq!(s, Recovering { passes: 2 });
        assert_eq!(next(s, pass(FAST), &p), Healthy);
    }

    #[test]
    fn recovering_fail_is_unhealthy() {
        assert_eq!(
            next(Recovering { passes: 1 }, CheckFailed, &policy()),
            Unhealthy
        );
    }

    #[test]
    fn one_recovery_success_skips_recovering() {
        let p = HealthPolicy {
            recovery_successes: 1,
            ..policy()
        };
        assert_eq!(next(Unhealthy, pass(FAST), &p), Healthy);
    }

    #[test]
    fn a_loading_server_is_warming_from_every_state() {
        for state in [
            Unknown,
            Healthy,
            Degraded,
            Recovering { passes: 1 },
            Unhealthy,
            Warming,
        ] {
            assert_eq!(
                next(state, CheckWarming, &policy()),
                Warming,
                "from {state:?}"
            );
        }
    }

    #[test]
    fn warming_passes_straight_to_service_and_fails_to_unhealthy() {
        assert_eq!(next(Warming, pass(FAST), &policy()), Healthy);
        assert_eq!(next(Warming, pass(SLOW), &policy()), Degraded);
        assert_eq!(next(Warming, CheckFailed, &policy()), Unhealthy);
        assert!(!Status::Warming.is_routable());
        assert!(is_recovery(Status::Warming, Status::Healthy));
    }

    #[test]
    fn routable_statuses() {
        assert!(Status::Healthy.is_routable());
        assert!(Status::Degraded.is_routable());
        assert!(Status::Recovering.is_routable());
        assert!(!Status::Unhealthy.is_routable());
        assert!(!Status::Unknown.is_routable());
    }

    #[test]
    fn recovery_is_leaving_unhealthy_for_a_routable_status() {
        assert!(is_recovery(Status::Unhealthy, Status::Recovering));
        assert!(is_recovery(Status::Unhealthy, Status::Healthy));
        assert!(!is_recovery(Status::Unknown, Status::Healthy));
        assert!(!is_recovery(Status::Recovering, Status::Healthy));
    }
}
