//! The status read model (SPEC 6): one shape of an endpoint's status, from the endpoint
//! machine to the JSON of `/internal/status/endpoints`.
//!
//! The machine builds an [`EndpointView`]; the registry adds the settings and traffic counts
//! into an [`EndpointStatus`]; the status API serialises that as it is. Durations read as
//! `15ms`, times as RFC 3339 UTC, and reasons stay typed ([`Reason`]) until serialised.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::counters::Traffic;
use crate::display::{
    serialize_duration, serialize_opt_display, serialize_opt_duration, serialize_opt_time,
};
use crate::health::Status;
use crate::outcome::FailureReason;
use crate::profiles::{EndpointType, ModelInfo};
use crate::settings::EndpointSettings;

/// Why an endpoint has its status, or what last went wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    CheckPassed,
    /// A check, or a proxied request's connection, failed this way.
    Failed(FailureReason),
    /// A proxied request failed (in the log of the status change it caused).
    RequestFailed(FailureReason),
    RequestSucceeded,
    /// The proxy breaker is open: no traffic until it half-opens.
    CircuitOpen,
    ProxyBreakerHalfOpen,
    ProxyBreakerClosed,
    HealthChecksDisabled,
    /// `health_checks: false` and the backoff after a failed request has passed.
    TestTrafficAdmitted,
    /// A check answered 503 "loading model" (SPEC 9.3).
    LoadingModel,
    /// A check timed out while the endpoint was sending proxied bytes (SPEC 9.1).
    Busy {
        serving: u64,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::CheckPassed => f.write_str("check passed"),
            Reason::Failed(r) => write!(f, "{r}"),
            Reason::RequestFailed(r) => write!(f, "request failed: {r}"),
            Reason::RequestSucceeded => f.write_str("request succeeded"),
            Reason::CircuitOpen => f.write_str("circuit open"),
            Reason::ProxyBreakerHalfOpen => f.write_str("proxy breaker half-open"),
            Reason::ProxyBreakerClosed => f.write_str("proxy breaker closed"),
            Reason::HealthChecksDisabled => {
                f.write_str("health checks disabled; assumed healthy until requests fail")
            }
            Reason::TestTrafficAdmitted => f.write_str("backoff elapsed; admitting test traffic"),
            Reason::LoadingModel => f.write_str("loading model"),
            Reason::Busy { serving } => write!(f, "busy (serving {serving} requests)"),
        }
    }
}

/// What the outside world may know of one endpoint's health at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointView {
    #[serde(skip)]
    pub name: Arc<str>,
    pub status: Status,
    /// Why the status is what it is; omitted for a plain pass.
    #[serde(
        serialize_with = "serialize_opt_display",
        skip_serializing_if = "Option::is_none"
    )]
    pub reason: Option<Reason>,
    /// Wall-clock time the last check finished.
    #[serde(serialize_with = "serialize_opt_time")]
    pub last_check: Option<SystemTime>,
    #[serde(serialize_with = "serialize_opt_duration")]
    pub last_latency: Option<Duration>,
    pub consecutive_failures: u32,
    /// Status changes since this incarnation started.
    pub status_changes: u64,
    #[serde(rename = "checks")]
    pub checks_total: u64,
    /// Share of passing checks since start, in percent (one decimal); 100 before any check.
    pub uptime_percentage: f64,
    /// Last failure, cleared by a pass; `circuit open` while the proxy breaker is.
    #[serde(
        serialize_with = "serialize_opt_display",
        skip_serializing_if = "Option::is_none"
    )]
    pub error: Option<Reason>,
    #[serde(serialize_with = "serialize_opt_time")]
    pub next_check: Option<SystemTime>,
    pub backoff_multiplier: u32,
    pub circuit_breaker: Breakers,
    /// Models in the last discovered list (0 until one is known).
    #[serde(rename = "models")]
    pub model_count: usize,
    pub restarts: u32,
    /// Whether this incarnation has completed its first check (or needs none).
    #[serde(skip)]
    pub checked: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Breakers {
    pub health: BreakerView,
    pub proxy: BreakerView,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BreakerView {
    /// `closed`, `open` or `half-open`.
    pub state: &'static str,
    pub failures: u32,
    #[serde(
        serialize_with = "serialize_opt_time",
        skip_serializing_if = "Option::is_none"
    )]
    pub half_open_at: Option<SystemTime>,
}

/// Share of passing checks in percent, one decimal; 100 before any check.
pub fn uptime_percentage(checks_total: u64, checks_passed: u64) -> f64 {
    if checks_total == 0 {
        return 100.0;
    }
    let pct = checks_passed as f64 * 100.0 / checks_total as f64;
    (pct * 10.0).round() / 10.0
}

/// One row of `/internal/status/endpoints`: the endpoint's settings, health and traffic.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointStatus {
    pub name: Arc<str>,
    pub url: String,
    #[serde(rename = "type")]
    pub kind: EndpointType,
    pub priority: u32,
    #[serde(flatten)]
    pub view: EndpointView,
    #[serde(serialize_with = "serialize_duration")]
    pub check_interval: Duration,
    #[serde(serialize_with = "serialize_duration")]
    pub check_timeout: Duration,
    pub health_checks: bool,
    #[serde(flatten)]
    pub traffic: Traffic,
    #[serde(skip)]
    pub models: Option<Arc<Vec<ModelInfo>>>,
}

impl EndpointStatus {
    pub fn new(
        settings: &EndpointSettings,
        view: EndpointView,
        traffic: Traffic,
        models: Option<Arc<Vec<ModelInfo>>>,
    ) -> Self {
        EndpointStatus {
            name: settings.name.clone(),
            url: settings.url.clone(),
            kind: settings.kind,
            priority: settings.priority,
            view,
            check_interval: settings.check_interval,
            check_timeout: settings.check_timeout,
            health_checks: settings.health_checks,
            traffic,
            models,
        }
    }
}

/// The whole fleet, for the status API.
#[derive(Debug, Clone, Default)]
pub struct FleetSnapshot {
    /// Sorted by priority (highest first), then name.
    pub endpoints: Vec<EndpointStatus>,
}

impl FleetSnapshot {
    pub fn counts(&self) -> StatusCounts {
        let mut c = StatusCounts {
            total: self.endpoints.len(),
            ..StatusCounts::default()
        };
        for e in &self.endpoints {
            match e.view.status {
                Status::Healthy => c.healthy += 1,
                Status::Degraded => c.degraded += 1,
                Status::Recovering => c.recovering += 1,
                Status::Warming => c.warming += 1,
                Status::Unhealthy => c.unhealthy += 1,
                Status::Unknown => c.unknown += 1,
            }
        }
        c
    }

    /// Whether every configured endpoint has been checked (or needs no check).
    pub fn first_checks_done(&self, expected_endpoints: usize) -> bool {
        self.endpoints.len() >= expected_endpoints && self.endpoints.iter().all(|e| e.view.checked)
    }
}

/// Endpoint counts by status, as `/internal/health` shows them.
#[derive(Serialize, Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusCounts {
    pub healthy: usize,
    pub degraded: usize,
    pub recovering: usize,
    pub warming: usize,
    pub unhealthy: usize,
    pub unknown: usize,
    pub total: usize,
}

impl StatusCounts {
    pub fn routable(&self) -> usize {
        self.healthy + self.degraded + self.recovering
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_is_the_share_of_passing_checks() {
        assert_eq!(uptime_percentage(0, 0), 100.0);
        assert_eq!(uptime_percentage(3, 2), 66.7);
        assert_eq!(uptime_percentage(4, 4), 100.0);
    }

    #[test]
    fn reasons_read_as_the_status_api_shows_them() {
        assert_eq!(
            Reason::Failed(FailureReason::Http(503)).to_string(),
            "http 503"
        );
        assert_eq!(
            Reason::RequestFailed(FailureReason::ConnectionRefused).to_string(),
            "request failed: connection refused"
        );
        assert_eq!(Reason::CircuitOpen.to_string(), "circuit open");
    }
}
