//! Every message that crosses an actor boundary, in one place: the contract between the
//! endpoint actors, the registry, the supervisor and the HTTP layer in the `corral` crate.
//!
//! Commands are imperative (`SelectCandidates`, `RetireEndpoint`); events are past tense
//! (`EndpointUpdated`, `ModelsDiscovered`).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix::prelude::*;

use crate::counters::EndpointCounters;
use crate::endpoint::EndpointActor;
use crate::health::Status;
use crate::probe::FailureReason;
use crate::profiles::{EndpointType, ModelInfo};
use crate::settings::EndpointSettings;

/// What the outside world may know of one endpoint at one moment.
#[derive(Debug, Clone)]
pub struct EndpointView {
    pub name: Arc<str>,
    pub status: Status,
    /// Wall-clock time the last check finished.
    pub last_check: Option<SystemTime>,
    pub last_latency: Option<Duration>,
    pub consecutive_failures: u32,
    /// Status changes since this incarnation started.
    pub status_changes: u64,
    pub checks_total: u64,
    pub checks_passed: u64,
    /// Last failure reason, cleared by a pass.
    pub error: Option<String>,
    pub next_check: Option<SystemTime>,
    pub backoff_multiplier: u32,
    pub health_breaker: BreakerView,
    pub proxy_breaker: BreakerView,
    /// Number of models in the last discovered list (`None`: not known yet).
    pub model_count: Option<usize>,
    pub restarts: u32,
    /// Whether this incarnation has completed its first check (or needs none).
    pub checked: bool,
    pub health_checks: bool,
}

impl EndpointView {
    /// Share of passing checks since start, in percent; 100 before any check.
    pub fn uptime_percentage(&self) -> f64 {
        if self.checks_total == 0 {
            return 100.0;
        }
        let pct = self.checks_passed as f64 * 100.0 / self.checks_total as f64;
        (pct * 10.0).round() / 10.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerView {
    pub state: BreakerStateName,
    pub failures: u32,
    pub half_open_at: Option<SystemTime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerStateName {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerStateName {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerStateName::Closed => "closed",
            BreakerStateName::Open => "open",
            BreakerStateName::HalfOpen => "half-open",
        }
    }
}

// ---- endpoint actor -> registry (events) ----

/// An endpoint's view changed (after every check, breaker move or re-announcement).
#[derive(Message)]
#[rtype(result = "()")]
pub struct EndpointUpdated {
    pub view: EndpointView,
    pub addr: Addr<EndpointActor>,
    pub settings: Arc<EndpointSettings>,
    pub counters: Arc<EndpointCounters>,
}

/// An endpoint's model list was fetched (the list may be unchanged).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ModelsDiscovered {
    pub name: Arc<str>,
    pub models: Arc<Vec<ModelInfo>>,
}

/// An endpoint was removed from the configuration.
#[derive(Message)]
#[rtype(result = "()")]
pub struct EndpointRetired {
    pub name: Arc<str>,
}

// ---- HTTP layer -> registry (queries) ----

/// The whole fleet, for the status API.
#[derive(Message)]
#[rtype(result = "FleetSnapshot")]
pub struct SnapshotFleet;

#[derive(Debug, Clone, Default)]
pub struct FleetSnapshot {
    /// Sorted by priority (highest first), then name.
    pub endpoints: Vec<EndpointSnapshot>,
}

#[derive(Debug, Clone)]
pub struct EndpointSnapshot {
    pub settings: Arc<EndpointSettings>,
    pub view: EndpointView,
    pub models: Option<Arc<Vec<ModelInfo>>>,
    pub in_flight: u64,
    pub requests: u64,
    pub failures: u64,
    pub retries: u64,
}

/// The unified model catalog, for the status API and model listings.
#[derive(Message)]
#[rtype(result = "ModelCatalog")]
pub struct SnapshotModels;

/// Every known model with the endpoints that list it.
#[derive(Debug, Clone, Default)]
pub struct ModelCatalog {
    /// Sorted by model name.
    pub models: Vec<CatalogModel>,
}

#[derive(Debug, Clone)]
pub struct CatalogModel {
    pub name: String,
    pub sources: Vec<ModelSource>,
}

/// One endpoint's listing of one model.
#[derive(Debug, Clone)]
pub struct ModelSource {
    pub endpoint: Arc<str>,
    pub kind: EndpointType,
    pub status: Status,
    pub info: ModelInfo,
}

impl CatalogModel {
    pub fn endpoints(&self) -> impl Iterator<Item = &Arc<str>> {
        self.sources.iter().map(|s| &s.endpoint)
    }

    pub fn routable_endpoints(&self) -> impl Iterator<Item = &Arc<str>> {
        self.sources
            .iter()
            .filter(|s| s.status.is_routable())
            .map(|s| &s.endpoint)
    }
}

// ---- to an endpoint actor (commands) ----

/// What became of a proxied request, as far as the endpoint is concerned (SPEC 4.2, 4.4).
#[derive(Debug, Clone, PartialEq)]
pub enum RequestOutcome {
    /// The upstream answered with a status outside `retry_on_status`.
    Succeeded,
    /// No connection: refused, reset before a response, connect timeout, unreachable.
    ConnectFailed(FailureReason),
    /// A status in `retry_on_status`, or no response headers in time.
    Failed(FailureReason),
    /// The client went away before a verdict: counts for nothing.
    Abandoned,
}

/// The proxy reports; the endpoint actor decides.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReportOutcome(pub RequestOutcome);

/// Send the full state (view and models) to the registry again: a new registry asks this.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Announce;

/// Stop for good (the endpoint left the configuration): no restart follows.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retire;

/// Panic inside a handler, to prove supervision (cargo feature `fault-injection`).
#[cfg(feature = "fault-injection")]
#[derive(Message)]
#[rtype(result = "()")]
pub struct Crash;

// ---- to the supervisor ----

/// An endpoint actor is gone (stopped or panicked): sent by its lifeline when dropped.
#[derive(Message)]
#[rtype(result = "()")]
pub struct EndpointDied {
    pub name: Arc<str>,
    pub incarnation: u64,
}

/// The registry actor is gone.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RegistryDied {
    pub incarnation: u64,
}

/// Start supervising a new endpoint.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AddEndpoint(pub Arc<EndpointSettings>);

/// Stop supervising an endpoint and stop its actor.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct RetireEndpoint {
    pub name: Arc<str>,
}

/// Make an endpoint's actor panic (fault injection). False when no such endpoint.
#[cfg(feature = "fault-injection")]
#[derive(Message)]
#[rtype(result = "bool")]
pub struct CrashEndpoint {
    pub name: String,
}

/// Make the registry panic (fault injection).
#[cfg(feature = "fault-injection")]
#[derive(Message)]
#[rtype(result = "()")]
pub struct CrashRegistry;
