//! The whole verdict of one endpoint (SPEC 4.2–4.5): its health state, both circuit breakers,
//! the backoff, the check schedule and the discovery schedule, and the rules that combine them.
//!
//! Pure: every event comes in with `now`, and what to do comes back as [`Effects`] (probe,
//! schedule, discover, publish, and [`Note`]s to log). The endpoint actor feeds it probe
//! reports, request outcomes and timers and carries the effects out; nothing here touches an
//! actor, a socket or a clock, so every rule is a unit test away.
//!
//! Timers and probes carry a generation number: scheduling a check makes every earlier timer
//! and probe stale, and a stale one is ignored. Checks never overlap.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix_rt::time::Instant;

use crate::backoff::{self, JitterSource};
use crate::breaker::{BreakerTransition, CircuitBreaker};
use crate::health::{self, HealthEvent, HealthState, Status};
use crate::outcome::{CheckReport, FailureReason, ProbeOutcome, RequestOutcome};
use crate::profiles::{self, ModelInfo};
use crate::settings::EndpointSettings;
use crate::view::{
    uptime_percentage, BreakerView, Breakers, CheckResult, CheckTally, EndpointView, Reason,
};

/// After a failed model discovery, try again no later than this (or the discovery interval).
pub const DISCOVERY_RETRY: Duration = Duration::from_secs(30);

/// What the actor must do after an event. Empty by default: most events change little.
#[derive(Debug, Default, PartialEq)]
pub struct Effects {
    /// Cancel the probe under way: a newer event decided the next check.
    pub cancel_probe: bool,
    /// Send a probe now; report it to [`EndpointMachine::on_check`] with this generation.
    pub probe: Option<Probe>,
    /// Call [`EndpointMachine::on_check_due`] with `generation` after `wait`.
    pub check_after: Option<Timer>,
    /// Call [`EndpointMachine::on_proxy_breaker_due`] after this wait.
    pub proxy_breaker_after: Option<Duration>,
    /// Fetch the model list; report it to [`EndpointMachine::on_discovered`].
    pub discover: bool,
    /// A changed model list to send to the registry.
    pub models: Option<Arc<Vec<ModelInfo>>>,
    /// Send the registry a fresh [`EndpointView`].
    pub publish: bool,
    /// What happened, for the log.
    pub notes: Vec<Note>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub generation: u64,
    /// Probe `model_url` instead of the health URL: the default health path was missing.
    pub use_model_url: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timer {
    pub wait: Duration,
    pub generation: u64,
}

/// Something worth a log line.
#[derive(Debug, Clone, PartialEq)]
pub enum Note {
    StatusChanged {
        from: Status,
        to: Status,
        reason: Reason,
        latency: Option<Duration>,
    },
    HealthBreakerOpened {
        failures: u32,
        open_for: Duration,
    },
    HealthBreakerHalfOpen,
    HealthBreakerClosed,
    ProxyBreakerOpened {
        failures: u32,
        open_for: Duration,
    },
    ProxyBreakerHalfOpen,
    ProxyBreakerClosed,
    /// The default health path answered 404/405; `model_url` is probed from now on.
    CheckingModelUrlInstead,
    /// The backend's model list was longer or odder than Corral keeps (noted once).
    ModelListTrimmed {
        dropped: usize,
    },
    ModelsDiscovered {
        count: usize,
        /// The first few names, for the log line.
        sample: Vec<String>,
    },
    DiscoveryFailed(FailureReason),
}

/// When the check and the discovery run, and whether one is under way.
#[derive(Debug, Clone, Default)]
struct Schedule {
    /// Bumped whenever a check is scheduled; a timer or probe of another generation is stale.
    generation: u64,
    check_in_flight: bool,
    next_check_at: Option<Instant>,
    discovery_in_flight: bool,
    discovery_due_at: Option<Instant>,
    /// A recovery asks for a fresh model list whatever the schedule says.
    discovery_forced: bool,
}

/// What the status API counts.
#[derive(Debug, Clone, Default)]
struct Record {
    status_changes: u64,
    checks_total: u64,
    checks_passed: u64,
    last_check: Option<Instant>,
    last_latency: Option<Duration>,
    /// Last failure, cleared by a pass.
    last_error: Option<FailureReason>,
    /// This incarnation has completed its first check (or needs none).
    checked: bool,
    /// Checks by result and latency, for the metrics.
    tally: CheckTally,
    /// The last model discovery that answered (its list may be unchanged).
    last_discovery: Option<Instant>,
}

pub struct EndpointMachine {
    settings: Arc<EndpointSettings>,
    restarts: u32,
    health: HealthState,
    health_breaker: CircuitBreaker,
    proxy_breaker: CircuitBreaker,
    /// The published status; compared with the verdict to detect changes.
    status: Status,
    /// The backoff's n: consecutive failed checks and failed connections.
    consecutive_failures: u32,
    /// The last check timed out while the endpoint was serving this many requests.
    busy: Option<u64>,
    /// When the endpoint last entered rotation: an outcome of a request that started before
    /// then is news from an earlier life and changes nothing (SPEC 11).
    routable_since: Option<Instant>,
    /// The default health path answered 404/405: probe `model_url` from now on (SPEC 4.1).
    probe_model_url: bool,
    models: Option<Arc<Vec<ModelInfo>>>,
    /// A model list was trimmed to its bounds once already (logged once).
    model_list_trimmed: bool,
    schedule: Schedule,
    record: Record,
    jitter: JitterSource,
}

impl EndpointMachine {
    /// A fresh incarnation: status `unknown`. `jitter_seed` makes the jitter differ between
    /// endpoints (tests pass a constant).
    pub fn new(settings: Arc<EndpointSettings>, restarts: u32, jitter_seed: u64) -> Self {
        EndpointMachine {
            health_breaker: CircuitBreaker::new(settings.health_breaker),
            proxy_breaker: CircuitBreaker::new(settings.proxy_breaker),
            settings,
            restarts,
            health: HealthState::Unknown,
            status: Status::Unknown,
            consecutive_failures: 0,
            routable_since: None,
            busy: None,
            probe_model_url: false,
            models: None,
            model_list_trimmed: false,
            schedule: Schedule::default(),
            record: Record::default(),
            jitter: JitterSource::new(jitter_seed),
        }
    }

    pub fn status(&self) -> Status {
        self.status
    }

    /// How many times the supervisor restarted this endpoint's actor before this incarnation.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    pub fn models(&self) -> Option<&Arc<Vec<ModelInfo>>> {
        self.models.as_ref()
    }

    // ## Start => check at once | (no health checks) Healthy, discover

    pub fn start(&mut self, now: Instant) -> Effects {
        let mut fx = Effects {
            publish: true,
            ..Effects::default()
        };
        if self.settings.health_checks {
            self.check_due(self.schedule.generation, now, &mut fx);
        } else {
            self.health = HealthState::Healthy;
            self.record.checked = true;
            self.settle(Reason::HealthChecksDisabled, None, now, &mut fx);
            self.maybe_discover(now, &mut fx);
        }
        fx
    }

    // ## a check timer fired => probe | wait out an open health breaker | admit test traffic

    pub fn on_check_due(&mut self, generation: u64, now: Instant) -> Effects {
        let mut fx = Effects::default();
        self.check_due(generation, now, &mut fx);
        fx
    }

    fn check_due(&mut self, generation: u64, now: Instant, fx: &mut Effects) {
        if generation != self.schedule.generation || self.schedule.check_in_flight {
            return;
        }
        self.schedule.next_check_at = None;
        if !self.settings.health_checks {
            // Nothing to probe: once the backoff after a failed request has passed, let one
            // test request find out (SPEC 4.2 `recovering`).
            if self.health == HealthState::Unhealthy {
                self.health = HealthState::Recovering { passes: 0 };
                self.settle(Reason::TestTrafficAdmitted, None, now, fx);
                fx.publish = true;
            }
            return;
        }
        if let Some(BreakerTransition::HalfOpened) = self.health_breaker.poll(now) {
            fx.notes.push(Note::HealthBreakerHalfOpen);
        }
        if let Some(until) = self.health_breaker.half_open_at() {
            // Never probe through an open breaker; come back when it half-opens.
            self.schedule_check(until.saturating_duration_since(now), now, fx);
            return;
        }
        self.schedule.check_in_flight = true;
        fx.probe = Some(Probe {
            generation,
            use_model_url: self.probe_model_url,
        });
    }

    // ## a probe reported => pass | fail, then the next check

    pub fn on_check(&mut self, generation: u64, report: CheckReport, now: Instant) -> Effects {
        let mut fx = Effects::default();
        if generation != self.schedule.generation {
            return fx; // stale: a newer event rescheduled the check meanwhile
        }
        self.schedule.check_in_flight = false;
        self.record.checks_total += 1;
        self.record.last_check = Some(now);
        self.record.checked = true;
        if report.switched_to_fallback && !self.probe_model_url {
            self.probe_model_url = true;
            fx.notes.push(Note::CheckingModelUrlInstead);
        }
        let fresh_models = report.models.is_some();
        let busy = report.busy_serving.filter(|_| report.timed_out());
        self.busy = None;
        let (wait, reason, latency, result) = match report.outcome {
            // ## timed out while serving => Degraded (busy) | unchanged; nothing escalates
            ProbeOutcome::Failed { latency, .. } if busy.is_some() => {
                let serving = busy.unwrap_or_default();
                self.check_busy(serving, latency);
                let reason = Reason::Busy { serving };
                let wait = self.settings.check_interval;
                (wait, reason, latency, CheckResult::Busy)
            }
            // ## 503 "loading model" => Warming; nothing escalates
            ProbeOutcome::Warming { latency } => {
                self.record.last_latency = Some(latency);
                self.health = health::next(
                    self.health,
                    HealthEvent::CheckWarming,
                    &self.settings.health,
                );
                let wait = self.settings.check_interval;
                (wait, Reason::LoadingModel, latency, CheckResult::Warming)
            }
            ProbeOutcome::Passed { latency } => {
                self.check_passed(latency, report.models, now, &mut fx);
                let wait = self.settings.check_interval;
                (wait, Reason::CheckPassed, latency, CheckResult::Pass)
            }
            ProbeOutcome::Failed {
                reason,
                latency,
                retry_after,
            } => {
                let wait = self.check_failed(&reason, latency, retry_after, now, &mut fx);
                (wait, Reason::Failed(reason), latency, CheckResult::Fail)
            }
        };
        self.record.tally.observe(result, latency);
        self.settle(reason, Some(latency), now, &mut fx);
        if fresh_models {
            self.schedule.discovery_forced = false;
        }
        self.maybe_discover(now, &mut fx);
        let wait = backoff::jittered(wait, self.settings.jitter, self.jitter.next_unit());
        self.schedule_check(wait, now, &mut fx);
        fx.publish = true;
        fx
    }

    /// A check that timed out while the endpoint was sending proxied bytes (SPEC 9.1): a
    /// serving endpoint is `degraded`, any other keeps its status; the backoff count, the
    /// health breaker and `consecutive_failures` are untouched.
    fn check_busy(&mut self, serving: u64, latency: Duration) {
        self.busy = Some(serving);
        self.record.last_latency = Some(latency);
        if matches!(self.health, HealthState::Healthy | HealthState::Degraded) {
            self.health = HealthState::Degraded;
        }
    }

    fn check_passed(
        &mut self,
        latency: Duration,
        models: Option<Vec<ModelInfo>>,
        now: Instant,
        fx: &mut Effects,
    ) {
        self.record.checks_passed += 1;
        self.record.last_latency = Some(latency);
        self.record.last_error = None;
        self.consecutive_failures = 0;
        if let Some(BreakerTransition::Closed) = self.health_breaker.record_success() {
            fx.notes.push(Note::HealthBreakerClosed);
        }
        // A passing probe is as good a test as a request for a half-open proxy breaker.
        if self.proxy_breaker.is_half_open() {
            self.record_proxy_success(now, fx);
        }
        self.health = health::next(
            self.health,
            HealthEvent::CheckPassed { latency },
            &self.settings.health,
        );
        if let Some(models) = models {
            self.schedule.discovery_due_at = Some(now + self.settings.discovery.interval);
            self.set_models(models, fx);
        }
    }

    /// Returns the wait before the next check.
    fn check_failed(
        &mut self,
        reason: &FailureReason,
        latency: Duration,
        retry_after: Option<Duration>,
        now: Instant,
        fx: &mut Effects,
    ) -> Duration {
        self.consecutive_failures += 1;
        self.record.last_latency = Some(latency);
        self.record.last_error = Some(reason.clone());
        if reason.counts_for_breaker() {
            if let Some(BreakerTransition::Opened { until }) =
                self.health_breaker.record_failure(now)
            {
                fx.notes.push(Note::HealthBreakerOpened {
                    failures: self.health_breaker.failures(),
                    open_for: until.saturating_duration_since(now),
                });
            }
        }
        self.health = health::next(self.health, HealthEvent::CheckFailed, &self.settings.health);
        let wait = match reason {
            FailureReason::RateLimited => {
                backoff::rate_limit_wait(retry_after, self.settings.check_interval)
            }
            _ => self.backoff_wait(),
        };
        match self.health_breaker.half_open_at() {
            Some(until) => wait.max(until.saturating_duration_since(now)),
            None => wait,
        }
    }

    // ## a proxied request ended => the proxy breaker counts; a failed connection is a failed check

    /// `started`: when the request began. One that began before the endpoint last entered
    /// rotation is stale, like a probe of an old generation, and is ignored.
    pub fn on_outcome(
        &mut self,
        outcome: RequestOutcome,
        started: Instant,
        now: Instant,
    ) -> Effects {
        let mut fx = Effects::default();
        if self.routable_since.is_some_and(|since| started < since) {
            return fx;
        }
        let reason = match outcome {
            RequestOutcome::Succeeded => {
                self.record_proxy_success(now, &mut fx);
                if !self.settings.health_checks {
                    // Without checks a served request is the pass (SPEC 4.2): n resets, and it
                    // counts towards `recovery_successes`.
                    self.consecutive_failures = 0;
                    self.health = health::next(
                        self.health,
                        HealthEvent::CheckPassed {
                            latency: Duration::ZERO,
                        },
                        &self.settings.health,
                    );
                }
                Reason::RequestSucceeded
            }
            RequestOutcome::ConnectFailed(_) if self.health == HealthState::Unhealthy => {
                // Requests sent before the news spread: one crash is one failure, not one per
                // request in flight, or a burst would push the backoff straight to its cap.
                return fx;
            }
            RequestOutcome::ConnectFailed(reason) => {
                self.consecutive_failures += 1;
                self.record.last_error = Some(reason.clone());
                self.health = health::next(
                    self.health,
                    HealthEvent::ConnectFailed,
                    &self.settings.health,
                );
                self.record_proxy_failure(now, &mut fx);
                let wait = backoff::jittered(
                    self.backoff_wait(),
                    self.settings.jitter,
                    self.jitter.next_unit(),
                );
                self.schedule_check(wait, now, &mut fx);
                Reason::RequestFailed(reason)
            }
            RequestOutcome::Failed(reason) => {
                self.record_proxy_failure(now, &mut fx);
                if self.proxy_breaker.is_open() {
                    Reason::CircuitOpen
                } else {
                    Reason::RequestFailed(reason)
                }
            }
        };
        self.settle(reason, None, now, &mut fx);
        self.maybe_discover(now, &mut fx);
        fx.publish = true;
        fx
    }

    fn record_proxy_success(&mut self, now: Instant, fx: &mut Effects) {
        if let Some(BreakerTransition::Closed) = self.proxy_breaker.record_success() {
            fx.notes.push(Note::ProxyBreakerClosed);
            self.settle(Reason::ProxyBreakerClosed, None, now, fx);
        }
    }

    fn record_proxy_failure(&mut self, now: Instant, fx: &mut Effects) {
        if let Some(BreakerTransition::Opened { until }) = self.proxy_breaker.record_failure(now) {
            let open_for = until.saturating_duration_since(now);
            fx.notes.push(Note::ProxyBreakerOpened {
                failures: self.proxy_breaker.failures(),
                open_for,
            });
            fx.proxy_breaker_after = Some(open_for);
        }
    }

    // ## the proxy breaker's open time is up => HalfOpen: `recovering`, test traffic

    pub fn on_proxy_breaker_due(&mut self, now: Instant) -> Effects {
        let mut fx = Effects::default();
        if let Some(BreakerTransition::HalfOpened) = self.proxy_breaker.poll(now) {
            fx.notes.push(Note::ProxyBreakerHalfOpen);
            self.settle(Reason::ProxyBreakerHalfOpen, None, now, &mut fx);
            fx.publish = true;
        }
        fx
    }

    // ## discovery => keep the list | on failure keep the previous one and retry sooner

    /// The periodic discovery tick of an endpoint without health checks.
    pub fn on_discovery_due(&mut self, now: Instant) -> Effects {
        let mut fx = Effects::default();
        self.maybe_discover(now, &mut fx);
        fx
    }

    pub fn on_discovered(
        &mut self,
        result: Result<Vec<ModelInfo>, FailureReason>,
        now: Instant,
    ) -> Effects {
        let mut fx = Effects::default();
        self.schedule.discovery_in_flight = false;
        let interval = self.settings.discovery.interval;
        match result {
            Ok(models) => {
                self.schedule.discovery_due_at = Some(now + interval);
                self.record.last_discovery = Some(now);
                self.set_models(models, &mut fx);
                fx.publish = true;
            }
            Err(reason) => {
                self.schedule.discovery_due_at = Some(now + interval.min(DISCOVERY_RETRY));
                fx.notes.push(Note::DiscoveryFailed(reason));
            }
        }
        fx
    }

    fn maybe_discover(&mut self, now: Instant, fx: &mut Effects) {
        let d = self.settings.discovery;
        if !d.enabled || self.schedule.discovery_in_flight || !self.status.is_routable() {
            return;
        }
        let due = self.schedule.discovery_forced
            || self.schedule.discovery_due_at.is_none_or(|t| now >= t);
        if due {
            self.schedule.discovery_forced = false;
            self.schedule.discovery_in_flight = true;
            fx.discover = true;
        }
    }

    fn set_models(&mut self, models: Vec<ModelInfo>, fx: &mut Effects) {
        let (models, dropped) = profiles::bound_models(models);
        if dropped > 0 && !self.model_list_trimmed {
            self.model_list_trimmed = true;
            fx.notes.push(Note::ModelListTrimmed { dropped });
        }
        if self.models.as_deref() == Some(&models) {
            return;
        }
        fx.notes.push(Note::ModelsDiscovered {
            count: models.len(),
            sample: models.iter().take(8).map(|m| m.name.clone()).collect(),
        });
        let models = Arc::new(models);
        self.models = Some(models.clone());
        fx.models = Some(models);
    }

    // ## a reload => new settings for the same backend; state stays, the schedule follows

    /// The same backend with other settings (SPEC 2): status, breakers, counts and models
    /// stay. A changed `check_interval` reschedules the pending check from the last check's
    /// time, as if the new interval had always been in force.
    pub fn reconfigure(&mut self, settings: Arc<EndpointSettings>, now: Instant) -> Effects {
        let mut fx = Effects {
            publish: true,
            ..Effects::default()
        };
        let interval_changed = settings.check_interval != self.settings.check_interval
            || settings.max_backoff != self.settings.max_backoff;
        self.health_breaker.set_policy(settings.health_breaker);
        self.proxy_breaker.set_policy(settings.proxy_breaker);
        self.settings = settings;
        let pending = self.schedule.next_check_at.is_some() && !self.schedule.check_in_flight;
        if interval_changed && pending && self.settings.health_checks {
            if let Some(last) = self.record.last_check {
                let due = last + self.backoff_wait();
                let due = match self.health_breaker.half_open_at() {
                    Some(until) => due.max(until),
                    None => due,
                };
                self.schedule_check(due.saturating_duration_since(now), now, &mut fx);
            }
        }
        fx
    }

    // ---- the verdict ----

    /// What the machines say together: an open proxy breaker overrides a passing check, and
    /// a half-open one admits test traffic only (SPEC 4.4).
    fn verdict(&self) -> Status {
        let health = self.health.status();
        if self.proxy_breaker.is_open() {
            Status::Unhealthy
        } else if self.proxy_breaker.is_half_open() && health.is_routable() {
            Status::Recovering
        } else {
            health
        }
    }

    /// Compares the verdict with the published status; notes and counts a change.
    fn settle(
        &mut self,
        reason: Reason,
        latency: Option<Duration>,
        now: Instant,
        fx: &mut Effects,
    ) {
        let (from, to) = (self.status, self.verdict());
        if from == to {
            return;
        }
        if to.is_routable() && !from.is_routable() {
            self.routable_since = Some(now);
        }
        self.status = to;
        self.record.status_changes += 1;
        if health::is_recovery(from, to) {
            self.schedule.discovery_forced = true;
        }
        fx.notes.push(Note::StatusChanged {
            from,
            to,
            reason,
            latency,
        });
    }

    fn backoff_wait(&self) -> Duration {
        backoff::wait(
            self.settings.check_interval,
            self.consecutive_failures,
            self.settings.max_backoff,
        )
    }

    fn schedule_check(&mut self, wait: Duration, now: Instant, fx: &mut Effects) {
        if self.schedule.check_in_flight {
            self.schedule.check_in_flight = false;
            fx.cancel_probe = true;
        }
        self.schedule.generation += 1;
        self.schedule.next_check_at = Some(now + wait);
        fx.check_after = Some(Timer {
            wait,
            generation: self.schedule.generation,
        });
    }

    // ---- the read model ----

    /// The endpoint as the status API shows it; `wall` is the wall-clock time at `now`.
    pub fn view(&self, now: Instant, wall: SystemTime) -> EndpointView {
        let to_wall = |at: Instant| {
            if at >= now {
                wall + (at - now)
            } else {
                wall - (now - at)
            }
        };
        let breaker = |b: &CircuitBreaker| BreakerView {
            state: b.state_name(),
            failures: b.failures(),
            half_open_at: b.half_open_at().map(to_wall),
        };
        let error = if self.proxy_breaker.is_open() {
            Some(Reason::CircuitOpen)
        } else {
            self.record.last_error.clone().map(Reason::Failed)
        };
        let reason = match self.status {
            _ if self.proxy_breaker.is_open() => Some(Reason::CircuitOpen),
            Status::Recovering if self.proxy_breaker.is_half_open() => {
                Some(Reason::ProxyBreakerHalfOpen)
            }
            Status::Unhealthy => error.clone(),
            Status::Warming => Some(Reason::LoadingModel),
            Status::Degraded => self.busy.map(|serving| Reason::Busy { serving }),
            _ => None,
        };
        let interval = self.settings.check_interval;
        EndpointView {
            name: self.settings.name.clone(),
            status: self.status,
            reason,
            last_check: self.record.last_check.map(to_wall),
            last_latency: self.record.last_latency,
            consecutive_failures: self.consecutive_failures,
            status_changes: self.record.status_changes,
            checks_total: self.record.checks_total,
            uptime_percentage: uptime_percentage(
                self.record.checks_total,
                self.record.checks_passed,
            ),
            error,
            next_check: self.schedule.next_check_at.map(to_wall),
            backoff_multiplier: (self.backoff_wait().as_nanos() / interval.as_nanos().max(1))
                as u32,
            circuit_breaker: Breakers {
                health: breaker(&self.health_breaker),
                proxy: breaker(&self.proxy_breaker),
            },
            model_count: self.models.as_ref().map_or(0, |m| m.len()),
            last_model_sync_at: self.record.last_discovery.map(to_wall),
            restarts: self.restarts,
            checked: self.record.checked,
            check_tally: self.record.tally,
        }
    }
}

#[cfg(test)]
mod tests;
