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
use crate::load::LoadReport;
use crate::load_board::LoadBoard;
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
    /// When a model discovery last answered (Olla's `last_model_sync_at`): the time the
    /// models of this endpoint were last seen. Omitted until one has.
    #[serde(
        serialize_with = "serialize_opt_time",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_model_sync_at: Option<SystemTime>,
    pub restarts: u32,
    /// Whether this incarnation has completed its first check (or needs none).
    #[serde(skip)]
    pub checked: bool,
    /// This incarnation's checks by result and latency, for `/internal/metrics`.
    #[serde(skip)]
    pub check_tally: CheckTally,
}

/// Upper bounds of the check-latency histogram's buckets, in seconds: Prometheus's default
/// buckets, which span a local server's few milliseconds to a remote API's seconds (a check
/// never lasts longer than its `check_timeout`).
pub const CHECK_LATENCY_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// What one check came to, as the metrics count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckResult {
    Pass,
    Fail,
    /// Timed out while the endpoint was serving proxied bytes (SPEC 9.1).
    Busy,
    /// Answered 503 "loading model" (SPEC 9.3).
    Warming,
}

impl CheckResult {
    pub const ALL: [CheckResult; 4] = [
        CheckResult::Pass,
        CheckResult::Fail,
        CheckResult::Busy,
        CheckResult::Warming,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CheckResult::Pass => "pass",
            CheckResult::Fail => "fail",
            CheckResult::Busy => "busy",
            CheckResult::Warming => "warming",
        }
    }
}

/// Every check of one incarnation, by result, with a histogram of their latencies. Counted
/// by the machine, which sees every check report; a restarted actor starts from zero, which
/// Prometheus's `rate()` reads as the counter reset it is.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CheckTally {
    /// Indexed as [`CheckResult::ALL`].
    results: [u64; 4],
    /// Checks whose latency was at most each bound of [`CHECK_LATENCY_BUCKETS`]: cumulative,
    /// as Prometheus writes buckets (the `+Inf` bucket is [`CheckTally::total`]).
    pub buckets: [u64; CHECK_LATENCY_BUCKETS.len()],
    pub latency_sum: Duration,
}

impl CheckTally {
    pub fn observe(&mut self, result: CheckResult, latency: Duration) {
        self.results[result as usize] += 1;
        let secs = latency.as_secs_f64();
        for (bound, count) in CHECK_LATENCY_BUCKETS.iter().zip(&mut self.buckets) {
            if secs <= *bound {
                *count += 1;
            }
        }
        self.latency_sum += latency;
    }

    pub fn count(&self, result: CheckResult) -> u64 {
        self.results[result as usize]
    }

    /// Every check observed.
    pub fn total(&self) -> u64 {
        self.results.iter().sum()
    }
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
    /// The backend's own report of its load (SPEC 10.1); absent until one is read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load: Option<LoadShown>,
    /// Corral's requests admitted here at once at most (SPEC 10.3); `null`: no limit.
    pub max_concurrency: Option<u64>,
    #[serde(skip)]
    pub models: Option<Arc<Vec<ModelInfo>>>,
    /// Olla's name for `models` (SPEC 12), for the tools that read Olla's status.
    pub model_count: usize,
    /// Olla's `success_rate`: see [`success_rate`].
    pub success_rate: String,
}

/// Olla's `success_rate` of an endpoint: the share of its finished proxied requests that
/// succeeded, written as Olla writes a percentage (`100%`, `66.7%`, `0%`), or `N/A` before
/// any has finished. A request still in flight has not finished either way.
pub fn success_rate(traffic: &Traffic) -> String {
    let finished = traffic.requests.saturating_sub(traffic.in_flight);
    if finished == 0 {
        return "N/A".to_string();
    }
    let succeeded = finished.saturating_sub(traffic.failures);
    match succeeded {
        0 => "0%".to_string(),
        n if n == finished => "100%".to_string(),
        n => format!("{:.1}%", n as f64 * 100.0 / finished as f64),
    }
}

/// An endpoint's latest load report as the status API shows it: the report's own fields
/// (those the source lacks are left out), how old it is, and whether that is too old to
/// count.
#[derive(Debug, Clone, Serialize)]
pub struct LoadShown {
    #[serde(flatten)]
    pub report: Arc<LoadReport>,
    #[serde(serialize_with = "serialize_duration")]
    pub age: Duration,
    pub stale: bool,
}

impl EndpointStatus {
    pub fn new(
        settings: &EndpointSettings,
        view: EndpointView,
        traffic: Traffic,
        models: Option<Arc<Vec<ModelInfo>>>,
        load: &LoadBoard,
        now: std::time::Instant,
    ) -> Self {
        let max_age = settings.load_max_age();
        let load_shown = load.latest(now).map(|(report, age)| LoadShown {
            report,
            age,
            stale: max_age.is_none_or(|max| age > max),
        });
        let (model_count, success_rate) = (view.model_count, success_rate(&traffic));
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
            load: load_shown,
            max_concurrency: settings.max_concurrency.limit(load.slots()),
            models,
            model_count,
            success_rate,
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
    fn success_rate_reads_as_olla_writes_it() {
        let t = |requests, failures, in_flight| Traffic {
            requests,
            failures,
            in_flight,
            retries: 0,
        };
        assert_eq!(success_rate(&t(0, 0, 0)), "N/A");
        assert_eq!(success_rate(&t(1, 0, 1)), "N/A", "still in flight");
        assert_eq!(success_rate(&t(4, 0, 0)), "100%");
        assert_eq!(success_rate(&t(3, 1, 0)), "66.7%");
        assert_eq!(success_rate(&t(2, 2, 0)), "0%");
        assert_eq!(success_rate(&t(5, 1, 2)), "66.7%", "of the 3 finished");
    }

    #[test]
    fn the_tally_counts_results_and_cumulative_buckets() {
        let mut t = CheckTally::default();
        t.observe(CheckResult::Pass, Duration::from_millis(3));
        t.observe(CheckResult::Pass, Duration::from_millis(10));
        t.observe(CheckResult::Fail, Duration::from_secs(30));
        t.observe(CheckResult::Warming, Duration::from_millis(200));
        assert_eq!(t.count(CheckResult::Pass), 2);
        assert_eq!(t.count(CheckResult::Fail), 1);
        assert_eq!(t.count(CheckResult::Busy), 0);
        assert_eq!(t.total(), 4);
        // 5ms, 10ms (a bound is inclusive), ..., 250ms takes the warming check, 10s not the 30s one.
        assert_eq!(t.buckets, [1, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3]);
        assert_eq!(t.latency_sum, Duration::from_millis(30_213));
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
