//! The endpoint actor: one per configured endpoint, the only owner of that endpoint's health
//! state machine, circuit breakers, backoff and model list (SPEC 1, 4).
//!
//! It checks its backend on its own schedule (`run_later`, never a global tick), feeds each
//! result into the pure machines in `health`, `breaker` and `backoff`, and pushes the outcome
//! to the registry. Checks never overlap, and every timer and probe carries a generation
//! number so that a stale one is ignored. It runs under the fleet supervisor, which restarts
//! it (fresh state, same settings) if it stops or panics.

use std::hash::BuildHasher;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix::prelude::*;
use actix_rt::time::Instant;
use tracing::{debug, info, warn};

use crate::backoff::{self, JitterSource};
use crate::breaker::{BreakerState, BreakerTransition, CircuitBreaker};
use crate::counters::EndpointCounters;
use crate::display;
use crate::health::{self, HealthEvent, HealthState, Status};
use crate::lifeline::Lifeline;
use crate::messages::*;
use crate::probe::{self, CheckReport, CheckTarget, FailureReason, ProbeOutcome, Prober};
use crate::profiles::ModelInfo;
use crate::registry::RegistryHandle;
use crate::settings::EndpointSettings;

/// After a failed model discovery, try again no later than this (or the discovery interval).
const DISCOVERY_RETRY: Duration = Duration::from_secs(30);

pub struct EndpointActor {
    settings: Arc<EndpointSettings>,
    registry: RegistryHandle,
    counters: Arc<EndpointCounters>,
    /// How many times the supervisor has restarted this endpoint's actor.
    restarts: u32,
    lifeline: Lifeline,
    prober: Rc<dyn Prober>,
    addr: Option<Addr<Self>>,

    health: HealthState,
    health_breaker: CircuitBreaker,
    proxy_breaker: CircuitBreaker,
    /// Published status; compared with the machines' verdict to detect changes.
    status: Status,
    consecutive_failures: u32,
    /// Status changes since this incarnation started.
    status_changes: u64,
    checks_total: u64,
    checks_passed: u64,
    last_check: Option<SystemTime>,
    last_latency: Option<Duration>,
    last_error: Option<String>,
    checked: bool,

    /// Bumped whenever a check is scheduled; a timer or probe of another generation is stale.
    generation: u64,
    check_in_flight: bool,
    /// The probe under way, cancelled when a connect failure reschedules the check.
    check_handle: Option<SpawnHandle>,
    next_check_at: Option<Instant>,
    /// The default health path answered 404/405: probe `model_url` from now on (SPEC 4.1).
    probe_model_url: bool,
    jitter: JitterSource,

    models: Option<Arc<Vec<ModelInfo>>>,
    discovery_in_flight: bool,
    discovery_due_at: Option<Instant>,
    /// A recovery asks for a fresh model list whatever the schedule says.
    discovery_forced: bool,
}

impl EndpointActor {
    pub fn new(
        settings: Arc<EndpointSettings>,
        registry: RegistryHandle,
        counters: Arc<EndpointCounters>,
        restarts: u32,
        lifeline: Lifeline,
        prober: Rc<dyn Prober>,
    ) -> Self {
        let seed = std::collections::hash_map::RandomState::new().hash_one(&*settings.name);
        EndpointActor {
            health_breaker: CircuitBreaker::new(settings.health_breaker),
            proxy_breaker: CircuitBreaker::new(settings.proxy_breaker),
            settings,
            registry,
            counters,
            restarts,
            lifeline,
            prober,
            addr: None,
            health: HealthState::Unknown,
            status: Status::Unknown,
            consecutive_failures: 0,
            status_changes: 0,
            checks_total: 0,
            checks_passed: 0,
            last_check: None,
            last_latency: None,
            last_error: None,
            checked: false,
            generation: 0,
            check_in_flight: false,
            check_handle: None,
            next_check_at: None,
            probe_model_url: false,
            jitter: JitterSource::new(seed),
            models: None,
            discovery_in_flight: false,
            discovery_due_at: None,
            discovery_forced: false,
        }
    }

    fn name(&self) -> &str {
        &self.settings.name
    }

    /// What the machines say together: an open proxy breaker overrides a passing check, and
    /// a half-open one admits test traffic only (SPEC 4.4).
    fn effective_status(&self) -> Status {
        let health = self.health.status();
        match self.proxy_breaker.state() {
            BreakerState::Open { .. } => Status::Unhealthy,
            BreakerState::HalfOpen { .. } if health.is_routable() => Status::Recovering,
            _ => health,
        }
    }

    // ---- checks ----

    fn run_check(&mut self, generation: u64, ctx: &mut Context<Self>) {
        if generation != self.generation || self.check_in_flight {
            return;
        }
        if !self.settings.health_checks {
            self.admit_test_traffic();
            return;
        }
        let now = Instant::now();
        if let Some(BreakerTransition::HalfOpened) = self.health_breaker.poll(now) {
            info!(target: "corral::health", endpoint = %self.name(), "health breaker half-open: sending one test probe");
        }
        if let Some(until) = self.health_breaker.half_open_at() {
            // Never probe through an open breaker; come back when it half-opens.
            self.schedule(until.saturating_duration_since(now), ctx);
            return;
        }
        self.check_in_flight = true;
        self.next_check_at = None;
        let target = self.check_target();
        let fut = self.prober.check(target);
        let handle = ctx.spawn(fut.into_actor(self).map(move |report, act, ctx| {
            act.check_in_flight = false;
            act.check_handle = None;
            if generation == act.generation {
                act.on_check(report, ctx);
            }
        }));
        self.check_handle = Some(handle);
    }

    /// Without health checks there is nothing to probe: once the backoff after a failed
    /// connection has passed, let one test request find out (SPEC 4.2 `recovering`).
    fn admit_test_traffic(&mut self) {
        self.next_check_at = None;
        if self.health == HealthState::Unhealthy {
            self.health = HealthState::Recovering { passes: 0 };
            self.settle("backoff elapsed; admitting test traffic", None);
            self.publish();
        }
    }

    fn check_target(&self) -> CheckTarget {
        let s = &self.settings;
        let use_models = self.probe_model_url;
        let can_fall_back = s.health_url_is_default && !use_models && s.model_url != s.health_url;
        CheckTarget {
            url: if use_models {
                s.model_url.clone()
            } else {
                s.health_url.clone()
            },
            fallback_url: can_fall_back.then(|| s.model_url.clone()),
            headers: s.headers.clone(),
            timeout: s.check_timeout,
            require_models: s.require_models.then(|| (s.model_url.clone(), s.kind)),
        }
    }

    fn on_check(&mut self, report: CheckReport, ctx: &mut Context<Self>) {
        let now = Instant::now();
        self.checks_total += 1;
        self.last_check = Some(SystemTime::now());
        self.checked = true;
        if report.switched_to_fallback {
            self.probe_model_url = true;
            let path = self
                .settings
                .health_url
                .trim_start_matches(&self.settings.url);
            info!(
                target: "corral::health",
                endpoint = %self.name(),
                "endpoint {}: no {} here; checking {} instead",
                self.name(),
                path,
                self.settings.model_url.trim_start_matches(&self.settings.url)
            );
        }
        let fresh_models = report.models.is_some();
        let (wait, reason, latency) = match report.outcome {
            ProbeOutcome::Passed { latency } => {
                self.checks_passed += 1;
                self.consecutive_failures = 0;
                self.last_latency = Some(latency);
                self.last_error = None;
                if let Some(BreakerTransition::Closed) = self.health_breaker.record_success() {
                    info!(target: "corral::health", endpoint = %self.name(), "health breaker closed");
                }
                // A passing probe is as good a test as a request for a half-open proxy breaker.
                if self.proxy_breaker.is_half_open() {
                    self.close_proxy_breaker();
                }
                self.health = health::next(
                    self.health,
                    HealthEvent::CheckPassed { latency },
                    &self.settings.health,
                );
                if let Some(models) = report.models {
                    self.discovery_due_at = Some(now + self.settings.discovery.interval);
                    self.set_models(models);
                }
                (
                    self.settings.check_interval,
                    "check passed".to_string(),
                    latency,
                )
            }
            ProbeOutcome::Failed {
                reason,
                latency,
                retry_after,
            } => {
                self.consecutive_failures += 1;
                self.last_latency = Some(latency);
                self.last_error = Some(reason.to_string());
                if reason.counts_for_breaker() {
                    let transition = self.health_breaker.record_failure(now);
                    self.observe_health_breaker(transition);
                }
                self.health =
                    health::next(self.health, HealthEvent::CheckFailed, &self.settings.health);
                let mut wait = match reason {
                    FailureReason::RateLimited => {
                        probe::rate_limit_wait(retry_after, self.settings.check_interval)
                    }
                    _ => self.backoff_wait(),
                };
                if let Some(until) = self.health_breaker.half_open_at() {
                    wait = wait.max(until.saturating_duration_since(now));
                }
                (wait, reason.to_string(), latency)
            }
        };
        self.settle(&reason, Some(latency));
        if fresh_models {
            self.discovery_forced = false;
        }
        self.maybe_discover(ctx);
        let wait = backoff::jittered(wait, self.settings.jitter, self.jitter.next_unit());
        self.schedule(wait, ctx);
        self.publish();
    }

    fn observe_health_breaker(&self, transition: Option<BreakerTransition>) {
        if let Some(BreakerTransition::Opened { until }) = transition {
            warn!(
                target: "corral::health",
                endpoint = %self.name(),
                failures = self.health_breaker.failures(),
                open_for = %display::duration(until.saturating_duration_since(Instant::now())),
                "health breaker open: no probes until it half-opens"
            );
        }
    }

    fn backoff_wait(&self) -> Duration {
        backoff::wait(
            self.settings.check_interval,
            self.consecutive_failures,
            self.settings.max_backoff,
        )
    }

    fn schedule(&mut self, wait: Duration, ctx: &mut Context<Self>) {
        if let Some(handle) = self.check_handle.take() {
            // A newer event decided the next check; the probe under way has nothing to add.
            ctx.cancel_future(handle);
            self.check_in_flight = false;
        }
        self.generation += 1;
        let generation = self.generation;
        self.next_check_at = Some(Instant::now() + wait);
        ctx.run_later(wait, move |act, ctx| act.run_check(generation, ctx));
    }

    /// Compares the machines' verdict with the published status; logs and counts a change.
    fn settle(&mut self, reason: &str, latency: Option<Duration>) {
        let new = self.effective_status();
        let old = self.status;
        if new == old {
            return;
        }
        self.status = new;
        self.status_changes += 1;
        let latency = latency.map(display::duration).unwrap_or_default();
        if new.is_routable() {
            info!(target: "corral::health", endpoint = %self.name(), from = %old, to = %new, reason, latency = %latency, "health status changed");
        } else {
            warn!(target: "corral::health", endpoint = %self.name(), from = %old, to = %new, reason, latency = %latency, "health status changed");
        }
        if health::is_recovery(old, new) {
            self.discovery_forced = true;
        }
    }

    // ---- proxied request outcomes ----

    fn on_outcome(&mut self, outcome: RequestOutcome, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let reason = match outcome {
            RequestOutcome::Succeeded => {
                if self.proxy_breaker.is_half_open() {
                    self.close_proxy_breaker();
                }
                if !self.settings.health_checks
                    && matches!(self.health, HealthState::Recovering { .. })
                {
                    self.health = HealthState::Healthy;
                }
                "request succeeded".to_string()
            }
            RequestOutcome::ConnectFailed(_) if self.health == HealthState::Unhealthy => {
                // Requests sent before the news spread: one crash is one failure, not one per
                // request in flight, or a burst would push the backoff straight to its cap.
                return;
            }
            RequestOutcome::ConnectFailed(reason) => {
                // ## any => Unhealthy at once, and the backoff starts as after a failed check.
                self.consecutive_failures += 1;
                self.last_error = Some(reason.to_string());
                self.health = health::next(
                    self.health,
                    HealthEvent::ConnectFailed,
                    &self.settings.health,
                );
                self.proxy_failure(now, ctx);
                let wait = backoff::jittered(
                    self.backoff_wait(),
                    self.settings.jitter,
                    self.jitter.next_unit(),
                );
                self.schedule(wait, ctx);
                format!("request failed: {reason}")
            }
            RequestOutcome::Failed(reason) => {
                self.proxy_failure(now, ctx);
                if self.proxy_breaker.is_open() {
                    "circuit open".to_string()
                } else {
                    format!("request failed: {reason}")
                }
            }
            RequestOutcome::Abandoned => {
                self.proxy_breaker.abandon_trial();
                return;
            }
        };
        self.settle(&reason, None);
        self.maybe_discover(ctx);
        self.publish();
    }

    fn proxy_failure(&mut self, now: Instant, ctx: &mut Context<Self>) {
        if let Some(BreakerTransition::Opened { until }) = self.proxy_breaker.record_failure(now) {
            self.last_error = Some("circuit open".into());
            warn!(
                target: "corral::health",
                endpoint = %self.name(),
                failures = self.proxy_breaker.failures(),
                open_for = %display::duration(until - now),
                "proxy breaker open: no traffic until it half-opens"
            );
            ctx.run_later(until - now, |act, _| act.half_open_proxy_breaker());
        }
    }

    fn half_open_proxy_breaker(&mut self) {
        if let Some(BreakerTransition::HalfOpened) = self.proxy_breaker.poll(Instant::now()) {
            info!(target: "corral::health", endpoint = %self.name(), "proxy breaker half-open: one test request at a time");
            self.settle("proxy breaker half-open", None);
            self.publish();
        }
    }

    fn close_proxy_breaker(&mut self) {
        if let Some(BreakerTransition::Closed) = self.proxy_breaker.record_success() {
            info!(target: "corral::health", endpoint = %self.name(), "proxy breaker closed");
            self.settle("proxy breaker closed", None);
        }
    }

    // ---- model discovery ----

    fn maybe_discover(&mut self, ctx: &mut Context<Self>) {
        let d = self.settings.discovery;
        if !d.enabled || self.discovery_in_flight || !self.status.is_routable() {
            return;
        }
        let now = Instant::now();
        let due = self.discovery_forced || self.discovery_due_at.is_none_or(|t| now >= t);
        if !due {
            return;
        }
        self.discovery_forced = false;
        self.discovery_in_flight = true;
        let fut = self.prober.discover(self.settings.clone());
        ctx.spawn(fut.into_actor(self).map(|result, act, _| {
            act.discovery_in_flight = false;
            let interval = act.settings.discovery.interval;
            match result {
                Ok(models) => {
                    act.discovery_due_at = Some(Instant::now() + interval);
                    act.set_models(models);
                    act.publish();
                }
                Err(reason) => {
                    act.discovery_due_at = Some(Instant::now() + interval.min(DISCOVERY_RETRY));
                    warn!(endpoint = %act.name(), %reason, url = %act.settings.model_url, "model discovery failed; keeping the previous list");
                }
            }
        }));
    }

    fn set_models(&mut self, models: Vec<ModelInfo>) {
        if self.models.as_deref() == Some(&models) {
            return;
        }
        let names: Vec<&str> = models.iter().take(8).map(|m| m.name.as_str()).collect();
        info!(endpoint = %self.name(), count = models.len(), models = ?names, "models discovered");
        let models = Arc::new(models);
        self.models = Some(models.clone());
        self.registry.tell(ModelsDiscovered {
            name: self.settings.name.clone(),
            models,
        });
    }

    // ---- registry ----

    fn view(&self) -> EndpointView {
        let now = Instant::now();
        let wall = SystemTime::now();
        let to_wall = |at: Instant| wall + at.saturating_duration_since(now);
        let breaker_view = |b: &CircuitBreaker| BreakerView {
            state: match b.state() {
                BreakerState::Closed { .. } => BreakerStateName::Closed,
                BreakerState::Open { .. } => BreakerStateName::Open,
                BreakerState::HalfOpen { .. } => BreakerStateName::HalfOpen,
            },
            failures: b.failures(),
            half_open_at: b.half_open_at().map(to_wall),
        };
        let interval = self.settings.check_interval;
        EndpointView {
            name: self.settings.name.clone(),
            status: self.status,
            last_check: self.last_check,
            last_latency: self.last_latency,
            consecutive_failures: self.consecutive_failures,
            status_changes: self.status_changes,
            checks_total: self.checks_total,
            checks_passed: self.checks_passed,
            error: if self.proxy_breaker.is_open() {
                Some("circuit open".into())
            } else {
                self.last_error.clone()
            },
            next_check: self.next_check_at.map(to_wall),
            backoff_multiplier: (self.backoff_wait().as_nanos() / interval.as_nanos().max(1))
                as u32,
            health_breaker: breaker_view(&self.health_breaker),
            proxy_breaker: breaker_view(&self.proxy_breaker),
            model_count: self.models.as_ref().map(|m| m.len()),
            restarts: self.restarts,
            checked: self.checked,
            health_checks: self.settings.health_checks,
        }
    }

    fn publish(&self) {
        let Some(addr) = self.addr.clone() else {
            return;
        };
        self.registry.tell(EndpointUpdated {
            view: self.view(),
            addr,
            settings: self.settings.clone(),
            counters: self.counters.clone(),
        });
    }
}

impl Actor for EndpointActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.addr = Some(ctx.address());
        if self.restarts > 0 {
            info!(endpoint = %self.name(), restarts = self.restarts, "endpoint actor restarted; checking at once");
        }
        if self.settings.health_checks {
            self.publish();
            self.run_check(self.generation, ctx);
        } else {
            self.health = HealthState::Healthy;
            self.checked = true;
            self.settle(
                "health checks disabled; assumed healthy until requests fail",
                None,
            );
            self.publish();
            self.maybe_discover(ctx);
            ctx.run_interval(self.settings.check_interval, |act, ctx| {
                act.maybe_discover(ctx)
            });
        }
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        debug!(endpoint = %self.name(), "endpoint actor stopped");
    }
}

impl Handler<ReportOutcome> for EndpointActor {
    type Result = ();

    fn handle(&mut self, msg: ReportOutcome, ctx: &mut Self::Context) {
        self.on_outcome(msg.0, ctx);
    }
}

impl Handler<Announce> for EndpointActor {
    type Result = ();

    fn handle(&mut self, _: Announce, _: &mut Self::Context) {
        self.publish();
        if let Some(models) = &self.models {
            self.registry.tell(ModelsDiscovered {
                name: self.settings.name.clone(),
                models: models.clone(),
            });
        }
    }
}

impl Handler<Retire> for EndpointActor {
    type Result = ();

    fn handle(&mut self, _: Retire, ctx: &mut Self::Context) {
        info!(endpoint = %self.name(), "endpoint retired");
        // Sent from here, after every update this actor sent, so the registry cannot see
        // an update of a retired endpoint after its retirement.
        self.registry.tell(EndpointRetired {
            name: self.settings.name.clone(),
        });
        self.lifeline.disarm();
        ctx.stop();
    }
}

#[cfg(feature = "fault-injection")]
impl Handler<Crash> for EndpointActor {
    type Result = ();

    fn handle(&mut self, _: Crash, _: &mut Self::Context) {
        panic!(
            "fault injection: crash requested for endpoint {}",
            self.name()
        );
    }
}
