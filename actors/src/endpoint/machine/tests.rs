//! The endpoint machine, arm by arm: every rule of SPEC 4.2–4.5 that combines health, both
//! breakers, backoff and discovery, without actors, sockets or clocks — time is an `Instant`
//! the test moves by hand.

use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::profiles::{named_models as models, EndpointType};

const SLOW: Duration = Duration::from_secs(3);
const FAST: Duration = Duration::from_millis(1);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn settings(interval: u64) -> EndpointSettings {
    let mut s = EndpointSettings::new("ep", "http://127.0.0.1:9", EndpointType::Vllm);
    s.check_interval = secs(interval);
    s.check_timeout = secs(1);
    s
}

fn pass() -> CheckReport {
    pass_in(FAST)
}

fn pass_in(latency: Duration) -> CheckReport {
    CheckReport::new(ProbeOutcome::Passed { latency })
}

fn fail_with(reason: FailureReason) -> CheckReport {
    CheckReport::new(ProbeOutcome::Failed {
        reason,
        latency: FAST,
        retry_after: None,
    })
}

fn warming() -> CheckReport {
    CheckReport::new(ProbeOutcome::Warming { latency: FAST })
}

/// A check that timed out while the endpoint sent proxied bytes to `serving` requests.
fn busy(serving: u64) -> CheckReport {
    let mut report = CheckReport::new(ProbeOutcome::Failed {
        reason: FailureReason::Timeout,
        latency: secs(1),
        retry_after: None,
    });
    report.busy_serving = Some(serving);
    report
}

fn fail() -> CheckReport {
    fail_with(FailureReason::Http(503))
}

fn rate_limited(retry_after: Option<Duration>) -> CheckReport {
    CheckReport::new(ProbeOutcome::Failed {
        reason: FailureReason::RateLimited,
        latency: FAST,
        retry_after,
    })
}

/// A machine and the time it lives in; `step` runs the check cycle the actor would.
struct Bench {
    m: EndpointMachine,
    now: Instant,
    /// The timer the last effects asked for.
    timer: Option<Timer>,
    /// The probe under way.
    probe: Option<Probe>,
}

impl Bench {
    fn new(s: EndpointSettings) -> Self {
        let mut b = Bench {
            m: EndpointMachine::new(Arc::new(s), 0, 1),
            now: Instant::now(),
            timer: None,
            probe: None,
        };
        let fx = b.m.start(b.now);
        b.take(&fx);
        b
    }

    fn take(&mut self, fx: &Effects) {
        if fx.cancel_probe {
            self.probe = None;
        }
        if let Some(t) = fx.check_after {
            self.timer = Some(t);
        }
        if let Some(p) = fx.probe {
            assert!(self.probe.is_none(), "checks never overlap");
            self.probe = Some(p);
        }
    }

    /// The probe under way reports `report`; returns the effects.
    fn report(&mut self, report: CheckReport) -> Effects {
        let probe = self.probe.take().expect("a probe is under way");
        let fx = self.m.on_check(probe.generation, report, self.now);
        self.take(&fx);
        fx
    }

    /// Time runs to the pending check timer, which fires; returns the wait and effects.
    fn fire(&mut self) -> (Duration, Effects) {
        let t = self.timer.take().expect("a check is scheduled");
        self.now += t.wait;
        let fx = self.m.on_check_due(t.generation, self.now);
        self.take(&fx);
        (t.wait, fx)
    }

    /// Reports `report` for the probe under way, then fires the next check: the wait.
    fn cycle(&mut self, report: CheckReport) -> Duration {
        self.report(report);
        self.fire().0
    }

    /// A request that started just now ended this way.
    fn outcome(&mut self, outcome: RequestOutcome) -> Effects {
        self.outcome_of(outcome, self.now)
    }

    /// A request that started at `started` ended this way, now.
    fn outcome_of(&mut self, outcome: RequestOutcome, started: Instant) -> Effects {
        let fx = self.m.on_outcome(outcome, started, self.now);
        self.take(&fx);
        fx
    }

    fn status(&self) -> Status {
        self.m.status()
    }

    fn view(&self) -> EndpointView {
        self.m.view(self.now, SystemTime::UNIX_EPOCH)
    }
}

fn status_changes(fx: &Effects) -> Vec<(Status, Status)> {
    fx.notes
        .iter()
        .filter_map(|n| match n {
            Note::StatusChanged { from, to, .. } => Some((*from, *to)),
            _ => None,
        })
        .collect()
}

// ---- start ----

#[test]
fn start_probes_at_once_and_publishes_unknown() {
    let b = Bench::new(settings(5));
    assert!(b.probe.is_some(), "first check at once");
    assert_eq!(b.status(), Status::Unknown);
    assert!(!b.view().checked);
}

#[test]
fn without_health_checks_it_starts_healthy_and_discovers() {
    let mut s = settings(5);
    s.health_checks = false;
    let mut m = EndpointMachine::new(Arc::new(s), 0, 1);
    let fx = m.start(Instant::now());
    assert_eq!(m.status(), Status::Healthy);
    assert!(fx.probe.is_none() && fx.discover && fx.publish);
    assert_eq!(status_changes(&fx), [(Status::Unknown, Status::Healthy)]);
    assert!(m.view(Instant::now(), SystemTime::UNIX_EPOCH).checked);
}

// ---- checks: SPEC 4.2 through the machine ----

#[test]
fn first_pass_is_healthy_then_checks_every_interval_and_discovers() {
    let mut b = Bench::new(settings(5));
    let fx = b.report(pass());
    assert_eq!(b.status(), Status::Healthy);
    assert!(fx.discover, "models on the first pass");
    assert!(fx.publish);
    assert_eq!(fx.check_after.unwrap().wait, secs(5));
    assert_eq!(b.view().consecutive_failures, 0);
}

#[test]
fn every_reported_check_is_tallied_by_result_and_latency() {
    let mut b = Bench::new(settings(5));
    b.cycle(pass());
    b.cycle(fail());
    b.cycle(warming());
    b.cycle(pass_in(SLOW));
    b.cycle(busy(2));
    let tally = b.view().check_tally;
    let counts = CheckResult::ALL.map(|r| tally.count(r));
    assert_eq!(counts, [2, 1, 1, 1], "pass, fail, busy, warming");
    assert_eq!(tally.total(), b.view().checks_total);
    assert_eq!(tally.latency_sum, FAST * 3 + SLOW + secs(1));
    // A stale report changes nothing.
    let generation = b.probe.expect("a probe is under way").generation;
    b.m.on_check(generation + 7, pass(), b.now);
    assert_eq!(b.view().check_tally, tally);
}

#[test]
fn a_slow_pass_is_degraded() {
    let mut b = Bench::new(settings(5));
    b.report(pass_in(SLOW));
    assert_eq!(b.status(), Status::Degraded);
}

#[test]
fn a_failure_is_unhealthy_with_its_reason() {
    let mut b = Bench::new(settings(5));
    let fx = b.report(fail());
    assert_eq!(b.status(), Status::Unhealthy);
    assert!(matches!(
        &fx.notes[..],
        [Note::StatusChanged {
            reason: Reason::Failed(FailureReason::Http(503)),
            ..
        }]
    ));
    let v = b.view();
    assert_eq!(v.error, Some(Reason::Failed(FailureReason::Http(503))));
    assert_eq!(
        v.reason, v.error,
        "an unhealthy endpoint's reason is its failure"
    );
}

#[test]
fn recovery_needs_recovery_successes_passes() {
    let mut b = Bench::new(settings(5));
    b.cycle(fail());
    b.cycle(pass());
    assert_eq!(b.status(), Status::Recovering);
    b.cycle(pass());
    assert_eq!(b.status(), Status::Healthy);
}

#[test]
fn backoff_waits_follow_the_sequence_exactly() {
    let mut s = settings(5);
    s.health_breaker.failure_threshold = 100; // keep the breaker out of this test
    let mut b = Bench::new(s);
    let mut waits = vec![b.cycle(pass())];
    for _ in 0..6 {
        waits.push(b.cycle(fail()));
    }
    waits.push(b.cycle(pass()));
    let secs: Vec<u64> = waits.iter().map(Duration::as_secs).collect();
    assert_eq!(secs, [5, 5, 10, 20, 40, 60, 60, 5]);
    assert_eq!(b.view().consecutive_failures, 0, "a pass resets n");
}

#[test]
fn thirty_second_interval_caps_at_sixty() {
    let mut s = settings(30);
    s.health_breaker.failure_threshold = 100;
    let mut b = Bench::new(s);
    let waits: Vec<u64> = (0..4).map(|_| b.cycle(fail()).as_secs()).collect();
    assert_eq!(waits, [30, 60, 60, 60]);
}

#[test]
fn the_view_shows_the_backoff_and_the_next_check() {
    let mut s = settings(5);
    s.health_breaker.failure_threshold = 100;
    let mut b = Bench::new(s);
    b.cycle(fail());
    b.cycle(fail());
    b.report(fail());
    let v = b.view();
    assert_eq!(v.backoff_multiplier, 4);
    assert_eq!(v.consecutive_failures, 3);
    assert_eq!(
        v.next_check,
        Some(SystemTime::UNIX_EPOCH + secs(20)),
        "the wall time of the pending check"
    );
    assert_eq!(v.checks_total, 3);
    assert_eq!(v.uptime_percentage, 0.0);
}

#[test]
fn a_stale_probe_report_is_ignored() {
    let mut b = Bench::new(settings(5));
    let stale = b.probe.unwrap();
    // A failed connection reschedules the check: the probe under way is cancelled.
    let fx = b.outcome(RequestOutcome::ConnectFailed(
        FailureReason::ConnectionRefused,
    ));
    assert!(fx.cancel_probe);
    let fx = b.m.on_check(stale.generation, pass(), b.now);
    assert_eq!(fx, Effects::default());
    assert_eq!(b.status(), Status::Unhealthy);
}

#[test]
fn a_stale_timer_is_ignored_and_checks_never_overlap() {
    let mut b = Bench::new(settings(5));
    b.report(pass());
    let timer = b.timer.unwrap();
    let fx = b.m.on_check_due(timer.generation + 1, b.now);
    assert!(fx.probe.is_none(), "a timer of another generation");
    b.fire();
    assert!(b.probe.is_some());
    let fx = b.m.on_check_due(timer.generation, b.now);
    assert!(fx.probe.is_none(), "a check is already under way");
}

// ---- SPEC 9.1: busy is not dead ----

#[test]
fn a_timeout_while_serving_is_busy_not_dead() {
    let mut b = Bench::new(settings(5));
    b.report(pass());
    b.fire();
    let fx = b.report(busy(2));
    assert_eq!(b.status(), Status::Degraded);
    assert!(matches!(
        &fx.notes[..],
        [Note::StatusChanged {
            reason: Reason::Busy { serving: 2 },
            ..
        }]
    ));
    let v = b.view();
    assert_eq!(
        v.reason.map(|r| r.to_string()).as_deref(),
        Some("busy (serving 2 requests)")
    );
    assert_eq!(v.consecutive_failures, 0, "nothing escalates");
    assert_eq!(v.circuit_breaker.health.failures, 0);
    assert_eq!(
        b.timer.unwrap().wait,
        secs(5),
        "next check at check_interval"
    );
    b.fire();
    b.report(pass());
    assert_eq!(b.status(), Status::Healthy, "a pass ends it");
    assert_eq!(b.view().reason, None);
}

#[test]
fn a_busy_check_of_an_unroutable_endpoint_changes_nothing() {
    let mut b = Bench::new(settings(5));
    b.report(fail());
    b.fire();
    b.report(busy(1));
    assert_eq!(
        b.status(),
        Status::Unhealthy,
        "neither a pass nor a failure"
    );
    assert_eq!(b.view().consecutive_failures, 1);
    assert_eq!(b.timer.unwrap().wait, secs(5));
}

#[test]
fn a_timeout_without_traffic_is_a_failure() {
    let mut b = Bench::new(settings(5));
    b.report(pass());
    b.fire();
    b.report(fail_with(FailureReason::Timeout));
    assert_eq!(
        b.status(),
        Status::Unhealthy,
        "a frozen server sends no bytes"
    );
}

// ---- SPEC 9.3: warming ----

#[test]
fn a_loading_server_is_warming_and_nothing_escalates() {
    let mut b = Bench::new(settings(5));
    b.report(pass());
    b.fire();
    b.report(fail());
    b.fire();
    let fx = b.report(warming());
    assert_eq!(b.status(), Status::Warming);
    assert!(!b.status().is_routable());
    assert!(matches!(
        &fx.notes[..],
        [Note::StatusChanged {
            reason: Reason::LoadingModel,
            ..
        }]
    ));
    let v = b.view();
    assert_eq!(v.reason, Some(Reason::LoadingModel));
    assert_eq!(v.consecutive_failures, 1, "kept as it was");
    assert_eq!(v.circuit_breaker.health.failures, 1);
    assert_eq!(
        b.timer.unwrap().wait,
        secs(5),
        "checked every interval, no backoff"
    );
}

#[test]
fn warming_passes_straight_to_healthy_and_discovers_again() {
    let mut b = Bench::new(settings(5));
    b.report(pass());
    b.m.on_discovered(Ok(models(&["a"])), b.now);
    b.fire();
    b.report(warming());
    b.fire();
    let fx = b.report(pass());
    assert_eq!(
        b.status(),
        Status::Healthy,
        "no recovery period after a load"
    );
    assert!(fx.discover, "the server may hold another model now");
}

#[test]
fn warming_then_failing_is_unhealthy() {
    let mut b = Bench::new(settings(5));
    b.report(warming());
    b.fire();
    b.report(fail());
    assert_eq!(b.status(), Status::Unhealthy);
}

// ---- SPEC 4.1: 401/403 and 429 ----

#[test]
fn rate_limits_wait_for_retry_after_within_bounds() {
    let mut b = Bench::new(settings(5));
    let waits: Vec<u64> = [
        rate_limited(Some(secs(7))),
        rate_limited(None),
        rate_limited(Some(Duration::ZERO)),
        rate_limited(Some(secs(1_000_000))),
    ]
    .into_iter()
    .map(|r| b.cycle(r).as_secs())
    .collect();
    // 7s as asked; 30s when unsaid; never faster than the interval; at most an hour.
    assert_eq!(waits, [7, 30, 5, 3600]);
    assert_eq!(b.status(), Status::Unhealthy);
    assert_eq!(
        b.view().circuit_breaker.health.failures,
        0,
        "429 spares the breaker"
    );
}

#[test]
fn credential_failures_spare_the_health_breaker() {
    let mut b = Bench::new(settings(5));
    for _ in 0..5 {
        b.cycle(fail_with(FailureReason::Credentials(401)));
    }
    assert_eq!(b.status(), Status::Unhealthy);
    assert_eq!(b.view().circuit_breaker.health.state, "closed");
}

// ---- SPEC 4.4: the health breaker ----

#[test]
fn health_breaker_holds_probes_for_its_open_duration() {
    let mut b = Bench::new(settings(5));
    assert_eq!(b.cycle(fail()), secs(5));
    assert_eq!(b.cycle(fail()), secs(10));
    let fx = b.report(fail());
    assert!(fx
        .notes
        .iter()
        .any(|n| matches!(n, Note::HealthBreakerOpened { failures: 3, .. })));
    // Opened at the third failure: the next probe waits out max(backoff 20s, open 30s).
    assert_eq!(b.timer.unwrap().wait, secs(30));
    assert_eq!(b.view().circuit_breaker.health.state, "open");
    let (_, fx) = b.fire();
    assert!(fx.notes.contains(&Note::HealthBreakerHalfOpen));
    assert!(fx.probe.is_some(), "exactly one test probe");
    let fx = b.report(pass());
    assert!(fx.notes.contains(&Note::HealthBreakerClosed));
    assert_eq!(b.status(), Status::Recovering);
}

#[test]
fn an_early_timer_never_probes_through_an_open_breaker() {
    let mut b = Bench::new(settings(5));
    for _ in 0..2 {
        b.cycle(fail());
    }
    b.report(fail());
    // Something else (a reload, a restart of the schedule) fires a check before the breaker
    // half-opens: it is put off until then, without a probe.
    b.now += secs(10);
    let generation = b.timer.unwrap().generation;
    let fx = b.m.on_check_due(generation, b.now);
    assert!(fx.probe.is_none());
    assert_eq!(fx.check_after.unwrap().wait, secs(20));
}

#[test]
fn a_failed_half_open_probe_opens_the_breaker_again() {
    let mut b = Bench::new(settings(5));
    for _ in 0..3 {
        b.cycle(fail());
    }
    let fx = b.report(fail());
    assert!(fx
        .notes
        .iter()
        .any(|n| matches!(n, Note::HealthBreakerOpened { .. })));
    assert_eq!(b.view().circuit_breaker.health.state, "open");
}

// ---- SPEC 4.2, 4.4: proxied requests ----

#[test]
fn a_failed_connection_is_unhealthy_at_once_and_restarts_the_backoff() {
    let mut b = Bench::new(settings(10));
    b.report(pass());
    let fx = b.outcome(RequestOutcome::ConnectFailed(
        FailureReason::ConnectionRefused,
    ));
    assert_eq!(b.status(), Status::Unhealthy);
    assert_eq!(
        fx.check_after.unwrap().wait,
        secs(10),
        "n = 1: one interval"
    );
    let v = b.view();
    assert_eq!(v.consecutive_failures, 1);
    assert_eq!(
        v.error,
        Some(Reason::Failed(FailureReason::ConnectionRefused))
    );
    assert_eq!(
        v.circuit_breaker.proxy.failures, 1,
        "the proxy breaker counts it"
    );
    assert_eq!(
        v.circuit_breaker.health.failures, 0,
        "the health breaker counts checks"
    );
}

#[test]
fn a_burst_of_failed_connections_is_one_failure() {
    let mut b = Bench::new(settings(10));
    b.report(pass());
    for _ in 0..20 {
        b.outcome(RequestOutcome::ConnectFailed(
            FailureReason::ConnectionReset,
        ));
    }
    assert_eq!(b.view().consecutive_failures, 1);
}

#[test]
fn proxy_breaker_opens_half_opens_and_closes() {
    let mut b = Bench::new(settings(5));
    b.report(pass());
    let mut last = Effects::default();
    for _ in 0..5 {
        last = b.outcome(RequestOutcome::Failed(FailureReason::Http(502)));
    }
    assert_eq!(last.proxy_breaker_after, Some(secs(30)));
    assert_eq!(b.status(), Status::Unhealthy);
    let v = b.view();
    assert_eq!(v.error, Some(Reason::CircuitOpen));
    assert_eq!(v.reason, Some(Reason::CircuitOpen));
    assert_eq!(
        v.circuit_breaker.proxy.half_open_at,
        Some(SystemTime::UNIX_EPOCH + secs(30))
    );
    // Passing checks do not override an open proxy breaker.
    b.fire();
    b.report(pass());
    assert_eq!(b.status(), Status::Unhealthy);
    // Not before its time.
    assert_eq!(b.m.on_proxy_breaker_due(b.now), Effects::default());
    b.now += secs(30);
    let fx = b.m.on_proxy_breaker_due(b.now);
    assert!(fx.notes.contains(&Note::ProxyBreakerHalfOpen));
    assert_eq!(b.status(), Status::Recovering, "test traffic only");
    let fx = b.outcome(RequestOutcome::Succeeded);
    assert!(fx.notes.contains(&Note::ProxyBreakerClosed));
    assert_eq!(b.status(), Status::Healthy, "what the latest check said");
}

#[test]
fn a_passing_probe_closes_a_half_open_proxy_breaker() {
    let mut b = Bench::new(settings(5));
    b.report(pass());
    for _ in 0..5 {
        b.outcome(RequestOutcome::Failed(FailureReason::Timeout));
    }
    b.now += secs(30);
    b.m.on_proxy_breaker_due(b.now);
    b.fire();
    b.report(pass());
    assert_eq!(b.view().circuit_breaker.proxy.state, "closed");
    assert_eq!(b.status(), Status::Healthy);
}

#[test]
fn the_proxy_breaker_counts_consecutive_failures_only() {
    let mut b = Bench::new(settings(5));
    b.report(pass());
    for _ in 0..3 {
        for _ in 0..4 {
            b.outcome(RequestOutcome::Failed(FailureReason::Http(429)));
        }
        b.outcome(RequestOutcome::Succeeded);
    }
    let v = b.view();
    assert_eq!(v.circuit_breaker.proxy.state, "closed");
    assert_eq!(v.circuit_breaker.proxy.failures, 0);
    assert_eq!(b.status(), Status::Healthy);
}

#[test]
fn without_health_checks_a_failed_request_waits_out_the_backoff_then_tests() {
    let mut s = settings(5);
    s.health_checks = false;
    let mut b = Bench::new(s);
    b.outcome(RequestOutcome::ConnectFailed(
        FailureReason::ConnectionRefused,
    ));
    assert_eq!(b.status(), Status::Unhealthy);
    let (wait, fx) = b.fire();
    assert_eq!(wait, secs(5));
    assert!(fx.probe.is_none(), "never probed");
    assert_eq!(
        b.status(),
        Status::Recovering,
        "the next request is its test"
    );
    b.outcome(RequestOutcome::Succeeded);
    assert_eq!(
        b.status(),
        Status::Recovering,
        "a pass; recovery_successes is 2"
    );
    assert_eq!(
        b.view().consecutive_failures,
        0,
        "a served request resets n"
    );
    b.outcome(RequestOutcome::Succeeded);
    assert_eq!(b.status(), Status::Healthy);
}

#[test]
fn without_health_checks_a_later_outage_starts_its_backoff_afresh() {
    let mut s = settings(5);
    s.health_checks = false;
    let mut b = Bench::new(s);
    for _ in 0..3 {
        b.outcome(RequestOutcome::ConnectFailed(
            FailureReason::ConnectionRefused,
        ));
        b.fire();
        b.outcome(RequestOutcome::ConnectFailed(
            FailureReason::ConnectionRefused,
        ));
        b.fire();
        b.outcome(RequestOutcome::Succeeded);
        b.outcome(RequestOutcome::Succeeded);
    }
    assert_eq!(b.status(), Status::Healthy);
    let fx = b.outcome(RequestOutcome::ConnectFailed(
        FailureReason::ConnectionRefused,
    ));
    assert_eq!(fx.check_after.unwrap().wait, secs(5), "n = 1 again, not 12");
}

// ---- SPEC 11: stale outcomes ----

#[test]
fn an_outcome_from_before_a_recovery_changes_nothing() {
    let mut b = Bench::new(settings(5));
    b.report(pass());
    let before = b.now;
    b.now += secs(1);
    b.outcome(RequestOutcome::ConnectFailed(
        FailureReason::ConnectionRefused,
    ));
    b.fire();
    b.cycle(pass());
    assert_eq!(b.status(), Status::Recovering);
    // A request sent before the outage times out now: it says nothing of the recovered backend.
    let fx = b.outcome_of(RequestOutcome::Failed(FailureReason::Timeout), before);
    assert_eq!(fx, Effects::default());
    let fx = b.outcome_of(
        RequestOutcome::ConnectFailed(FailureReason::ConnectTimeout),
        before,
    );
    assert_eq!(fx, Effects::default());
    assert_eq!(b.status(), Status::Recovering);
    assert_eq!(
        b.view().circuit_breaker.proxy.failures,
        1,
        "only the real failure"
    );
}

#[test]
fn a_late_failure_does_not_reopen_a_half_open_proxy_breaker() {
    let mut b = Bench::new(settings(5));
    b.report(pass());
    let early = b.now;
    for _ in 0..5 {
        b.outcome(RequestOutcome::Failed(FailureReason::Http(502)));
    }
    b.now += secs(30);
    b.m.on_proxy_breaker_due(b.now);
    assert_eq!(b.status(), Status::Recovering);
    b.outcome_of(RequestOutcome::Failed(FailureReason::Http(502)), early);
    assert_eq!(b.view().circuit_breaker.proxy.state, "half-open");
}

// ---- SPEC 4.5: discovery ----

#[test]
fn recovery_fetches_models_again() {
    let mut b = Bench::new(settings(5));
    let fx = b.report(pass());
    assert!(fx.discover);
    b.m.on_discovered(Ok(models(&["a"])), b.now);
    b.fire();
    assert!(
        !b.report(fail()).discover,
        "an unhealthy endpoint is not asked"
    );
    b.fire();
    let fx = b.report(pass());
    assert_eq!(b.status(), Status::Recovering);
    assert!(
        fx.discover,
        "a recovery asks, whatever the 5m interval says"
    );
}

#[test]
fn discovery_is_due_every_interval_while_routable() {
    let mut s = settings(5);
    s.discovery.interval = secs(60);
    let mut b = Bench::new(s);
    b.report(pass());
    b.m.on_discovered(Ok(models(&["a"])), b.now);
    let mut asked = 0;
    for _ in 0..12 {
        b.fire();
        if b.report(pass()).discover {
            asked += 1;
            b.m.on_discovered(Ok(models(&["a"])), b.now);
        }
    }
    assert_eq!(asked, 1, "once in 60s of 5s checks");
}

#[test]
fn a_changed_list_goes_to_the_registry_and_an_unchanged_one_does_not() {
    let mut b = Bench::new(settings(5));
    b.report(pass());
    let fx = b.m.on_discovered(Ok(models(&["a", "b"])), b.now);
    assert_eq!(fx.models.as_deref(), Some(&models(&["a", "b"])));
    assert!(fx
        .notes
        .iter()
        .any(|n| matches!(n, Note::ModelsDiscovered { count: 2, .. })));
    let fx = b.m.on_discovered(Ok(models(&["a", "b"])), b.now);
    assert!(fx.models.is_none());
    assert_eq!(b.view().model_count, 2);
}

#[test]
fn an_oversized_model_list_is_trimmed_and_noted_once() {
    let mut b = Bench::new(settings(5));
    b.report(pass());
    let mut list = models(&["a"]);
    list.push(ModelInfo::named("n".repeat(300)));
    let fx = b.m.on_discovered(Ok(list.clone()), b.now);
    assert!(fx.notes.contains(&Note::ModelListTrimmed { dropped: 1 }));
    assert_eq!(fx.models.as_deref(), Some(&models(&["a"])));
    let fx = b.m.on_discovered(Ok(list), b.now);
    assert!(!fx
        .notes
        .iter()
        .any(|n| matches!(n, Note::ModelListTrimmed { .. })));
}

#[test]
fn a_failed_discovery_keeps_the_list_and_retries_sooner() {
    let mut b = Bench::new(settings(5));
    b.report(pass());
    b.m.on_discovered(Ok(models(&["a"])), b.now);
    b.now += secs(300);
    b.fire();
    assert!(b.report(pass()).discover);
    let fx = b.m.on_discovered(Err(FailureReason::Timeout), b.now);
    assert!(fx.models.is_none());
    assert!(fx
        .notes
        .contains(&Note::DiscoveryFailed(FailureReason::Timeout)));
    assert_eq!(b.view().model_count, 1, "the previous list stays");
    b.now += DISCOVERY_RETRY;
    b.fire();
    assert!(b.report(pass()).discover, "again after 30s, not 5m");
}

#[test]
fn models_fetched_by_the_check_itself_count_as_discovered() {
    let mut s = settings(5);
    s.require_models = true;
    let mut b = Bench::new(s);
    let mut report = pass();
    report.models = Some(models(&["x"]));
    let fx = b.report(report);
    assert!(!fx.discover, "the check brought the list");
    assert_eq!(fx.models.as_deref(), Some(&models(&["x"])));
}

#[test]
fn a_missing_default_health_path_switches_to_the_model_url_once() {
    let mut b = Bench::new(settings(5));
    let mut report = pass();
    report.switched_to_fallback = true;
    let fx = b.report(report);
    assert!(fx.notes.contains(&Note::CheckingModelUrlInstead));
    let (_, fx) = b.fire();
    assert!(fx.probe.unwrap().use_model_url);
}

// ---- invariants over any sequence of events ----

#[derive(Debug, Clone)]
enum Event {
    /// A request that started this many seconds ago failed to connect.
    LateConnectFailed(u64),
    Pass(u64),
    Fail,
    Warming,
    Busy(u64),
    RateLimited(u64),
    Credentials,
    ConnectFailed,
    RequestFailed,
    RequestSucceeded,
    /// Time passes by this many seconds; due timers fire.
    Wait(u64),
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (0..3000u64).prop_map(Event::Pass),
        Just(Event::Fail),
        Just(Event::Warming),
        (0..8u64).prop_map(Event::Busy),
        (0..100_000u64).prop_map(Event::RateLimited),
        Just(Event::Credentials),
        Just(Event::ConnectFailed),
        Just(Event::RequestFailed),
        Just(Event::RequestSucceeded),
        (0..120u64).prop_map(Event::Wait),
        (1..200u64).prop_map(Event::LateConnectFailed),
    ]
}

proptest! {
    #[test]
    fn invariants_hold_for_any_sequence(events in prop::collection::vec(event(), 1..80)) {
        let mut b = Bench::new(settings(5));
        let mut proxy_due: Option<Instant> = None;
        for e in events {
            let e_was_pass = matches!(e, Event::Pass(_)) && b.probe.is_some();
            let fx = match e {
                Event::Pass(ms) if b.probe.is_some() => b.report(pass_in(Duration::from_millis(ms))),
                Event::Fail if b.probe.is_some() => {
                    let fx = b.report(fail());
                    // A failed check waits at most the backoff cap, or until an open health
                    // breaker half-opens (SPEC 4.3, 4.4).
                    let s = settings(5);
                    let cap = crate::backoff::cap(s.check_interval, s.max_backoff)
                        .max(s.health_breaker.open_duration);
                    if let Some(t) = fx.check_after {
                        prop_assert!(t.wait <= cap, "{:?} > {:?}", t.wait, cap);
                    }
                    fx
                }
                Event::Warming if b.probe.is_some() => {
                    let before = b.view();
                    let fx = b.report(warming());
                    // Loading is not failing: nothing escalates (SPEC 9.3).
                    prop_assert_eq!(b.view().consecutive_failures, before.consecutive_failures);
                    prop_assert_eq!(
                        b.view().circuit_breaker.health.failures,
                        before.circuit_breaker.health.failures
                    );
                    fx
                }
                Event::Busy(n) if b.probe.is_some() => {
                    let before = b.view();
                    let fx = b.report(busy(n));
                    // Busy is not dead: nothing escalates (SPEC 9.1).
                    prop_assert_eq!(b.view().consecutive_failures, before.consecutive_failures);
                    prop_assert!(!matches!(
                        (before.status, b.view().status),
                        (Status::Healthy | Status::Degraded, Status::Unhealthy)
                    ) || before.circuit_breaker.proxy.state == "open");
                    fx
                }
                Event::RateLimited(s) if b.probe.is_some() => b.report(rate_limited(Some(secs(s)))),
                Event::Credentials if b.probe.is_some() => {
                    b.report(fail_with(FailureReason::Credentials(403)))
                }
                Event::ConnectFailed => {
                    b.outcome(RequestOutcome::ConnectFailed(FailureReason::ConnectionRefused))
                }
                Event::RequestFailed => b.outcome(RequestOutcome::Failed(FailureReason::Http(502))),
                Event::RequestSucceeded => {
                    let fx = b.outcome(RequestOutcome::Succeeded);
                    // A success resets the proxy breaker's count of consecutive failures.
                    let v = b.view();
                    if v.circuit_breaker.proxy.state == "closed" {
                        prop_assert_eq!(v.circuit_breaker.proxy.failures, 0);
                    }
                    fx
                }
                Event::LateConnectFailed(ago) => {
                    let started = b.now.checked_sub(secs(ago)).unwrap_or(b.now);
                    let stale = b.m.routable_since.is_some_and(|since| started < since);
                    let before = b.view();
                    let fx = b.outcome_of(
                        RequestOutcome::ConnectFailed(FailureReason::ConnectionRefused),
                        started,
                    );
                    if stale {
                        // Stale events change nothing.
                        prop_assert_eq!(&fx, &Effects::default());
                        prop_assert_eq!(before.status, b.view().status);
                        prop_assert_eq!(before.consecutive_failures, b.view().consecutive_failures);
                    }
                    fx
                }
                Event::Wait(s) => {
                    b.now += secs(s);
                    if proxy_due.is_some_and(|t| b.now >= t) {
                        proxy_due = None;
                        let fx = b.m.on_proxy_breaker_due(b.now);
                        b.take(&fx);
                    }
                    match b.timer {
                        Some(t) if b.probe.is_none() => {
                            b.timer = None;
                            let fx = b.m.on_check_due(t.generation, b.now);
                            b.take(&fx);
                            fx
                        }
                        _ => Effects::default(),
                    }
                }
                _ => Effects::default(),
            };
            if let Some(wait) = fx.proxy_breaker_after {
                proxy_due = Some(b.now + wait);
            }
            let v = b.view();
            // An open proxy breaker keeps the endpoint out of rotation (SPEC 4.4).
            if v.circuit_breaker.proxy.state == "open" {
                prop_assert_eq!(v.status, Status::Unhealthy);
            }
            // A pass resets n.
            if e_was_pass {
                prop_assert_eq!(v.consecutive_failures, 0);
            }
            // Every wait is bounded: by the backoff cap, the breaker's open time or an hour.
            if let Some(t) = fx.check_after {
                prop_assert!(t.wait <= crate::backoff::MAX_RETRY_AFTER, "{:?}", t.wait);
            }
            // There is always a way forward: a probe under way or a check scheduled.
            prop_assert!(b.probe.is_some() || b.timer.is_some());
            // Status changes are counted, one by one.
            prop_assert!(v.status_changes >= status_changes(&fx).len() as u64);
        }
    }
}

// ---- SPEC 2: reload ----

#[test]
fn a_reload_keeps_the_state_and_reschedules_from_the_last_check() {
    let mut b = Bench::new(settings(30));
    b.report(pass());
    let checked_at = b.now;
    b.now += secs(10);
    let mut faster = settings(5);
    faster.priority = 7;
    let fx = b.m.reconfigure(Arc::new(faster), b.now);
    b.take(&fx);
    assert!(fx.publish);
    assert_eq!(b.status(), Status::Healthy, "state stays");
    assert_eq!(
        fx.check_after.map(|t| t.wait),
        Some(Duration::ZERO),
        "5s after the last check is already past: check now"
    );
    let mut slower = settings(60);
    slower.check_timeout = secs(1);
    let fx = b.m.reconfigure(Arc::new(slower), b.now);
    assert_eq!(
        fx.check_after.map(|t| t.wait),
        Some(checked_at + secs(60) - b.now),
        "60s after the last check"
    );
}

#[test]
fn a_reload_keeps_the_breakers_and_takes_their_new_knobs() {
    let mut b = Bench::new(settings(5));
    b.report(pass());
    for _ in 0..3 {
        b.outcome(RequestOutcome::Failed(FailureReason::Http(502)));
    }
    let mut s = settings(5);
    s.proxy_breaker.failure_threshold = 4;
    b.m.reconfigure(Arc::new(s), b.now);
    assert_eq!(
        b.view().circuit_breaker.proxy.failures,
        3,
        "the count stays"
    );
    b.outcome(RequestOutcome::Failed(FailureReason::Http(502)));
    assert_eq!(
        b.view().circuit_breaker.proxy.state,
        "open",
        "the new threshold applies"
    );
}
