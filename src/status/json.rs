//! The JSON shapes of the status API (SPEC 6), built from registry snapshots.
//! Durations read as `"15ms"`, times as RFC 3339 UTC.

use std::time::SystemTime;

use corral_actors::display;
use corral_actors::health::Status;
use corral_actors::messages::{
    BreakerView, CatalogModel, EndpointSnapshot, FleetSnapshot, ModelCatalog,
};
use serde::Serialize;

use crate::stats::ModelRequestStats;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[derive(Serialize)]
pub struct EndpointJson {
    name: String,
    url: String,
    #[serde(rename = "type")]
    kind: &'static str,
    priority: u32,
    status: Status,
    last_check: Option<String>,
    last_latency: Option<String>,
    consecutive_failures: u32,
    status_changes: u64,
    checks: u64,
    uptime_percentage: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    next_check: Option<String>,
    check_interval: String,
    check_timeout: String,
    backoff_multiplier: u32,
    circuit_breaker: BreakersJson,
    /// Number of models in the last discovered list (0 until one is known).
    models: usize,
    health_checks: bool,
    in_flight: u64,
    requests: u64,
    failures: u64,
    retries: u64,
    restarts: u32,
}

#[derive(Serialize)]
struct BreakersJson {
    health: BreakerJson,
    proxy: BreakerJson,
}

#[derive(Serialize)]
struct BreakerJson {
    state: &'static str,
    failures: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    half_open_at: Option<String>,
}

impl From<&BreakerView> for BreakerJson {
    fn from(b: &BreakerView) -> Self {
        BreakerJson {
            state: b.state.as_str(),
            failures: b.failures,
            half_open_at: b.half_open_at.map(rfc3339),
        }
    }
}

impl From<&EndpointSnapshot> for EndpointJson {
    fn from(e: &EndpointSnapshot) -> Self {
        let (s, v) = (&e.settings, &e.view);
        EndpointJson {
            name: s.name.to_string(),
            url: s.url.clone(),
            kind: s.kind.as_str(),
            priority: s.priority,
            status: v.status,
            last_check: v.last_check.map(rfc3339),
            last_latency: v.last_latency.map(display::duration),
            consecutive_failures: v.consecutive_failures,
            status_changes: v.status_changes,
            checks: v.checks_total,
            uptime_percentage: v.uptime_percentage(),
            error: v.error.clone(),
            next_check: v.next_check.map(rfc3339),
            check_interval: display::duration(s.check_interval),
            check_timeout: display::duration(s.check_timeout),
            backoff_multiplier: v.backoff_multiplier,
            circuit_breaker: BreakersJson {
                health: (&v.health_breaker).into(),
                proxy: (&v.proxy_breaker).into(),
            },
            models: v.model_count.unwrap_or(0),
            health_checks: v.health_checks,
            in_flight: e.in_flight,
            requests: e.requests,
            failures: e.failures,
            retries: e.retries,
            restarts: v.restarts,
        }
    }
}

/// Endpoint counts by status, as `/internal/health` shows them.
#[derive(Serialize, Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub healthy: usize,
    pub degraded: usize,
    pub recovering: usize,
    pub unhealthy: usize,
    pub unknown: usize,
    pub total: usize,
}

impl Counts {
    pub fn of(fleet: &FleetSnapshot) -> Counts {
        let mut c = Counts {
            total: fleet.endpoints.len(),
            ..Counts::default()
        };
        for e in &fleet.endpoints {
            match e.view.status {
                Status::Healthy => c.healthy += 1,
                Status::Degraded => c.degraded += 1,
                Status::Recovering => c.recovering += 1,
                Status::Unhealthy => c.unhealthy += 1,
                Status::Unknown => c.unknown += 1,
            }
        }
        c
    }

    pub fn routable(&self) -> usize {
        self.healthy + self.degraded + self.recovering
    }
}

/// Whether every configured endpoint has been checked (or needs no check).
pub fn first_checks_done(fleet: &FleetSnapshot, expected_endpoints: usize) -> bool {
    fleet.endpoints.len() >= expected_endpoints && fleet.endpoints.iter().all(|e| e.view.checked)
}

/// `starting` until the first checks are done, then `healthy` while at least one endpoint is
/// routable, else `unhealthy`.
pub fn fleet_status(routable: usize, warmed_up: bool) -> &'static str {
    match (warmed_up, routable) {
        (false, _) => "starting",
        (true, 0) => "unhealthy",
        (true, _) => "healthy",
    }
}

#[derive(Serialize)]
pub struct ModelStatusJson {
    name: String,
    endpoints: Vec<String>,
    routable_endpoints: Vec<String>,
}

impl From<&CatalogModel> for ModelStatusJson {
    fn from(m: &CatalogModel) -> Self {
        ModelStatusJson {
            name: m.name.clone(),
            endpoints: m.endpoints().map(|e| e.to_string()).collect(),
            routable_endpoints: m.routable_endpoints().map(|e| e.to_string()).collect(),
        }
    }
}

/// The body of `/internal/stats/models`: every model known from the catalog or from traffic.
pub fn model_stats(
    stats: &[ModelRequestStats],
    catalog: &ModelCatalog,
    fleet: &FleetSnapshot,
) -> Value {
    let mut models: BTreeMap<&str, Value> = BTreeMap::new();
    for m in &catalog.models {
        models.insert(
            &m.name,
            json!({
                "name": m.name,
                "requests": 0,
                "failures": 0,
                "avg_latency": null,
                "endpoints": {
                    "total": m.sources.len(),
                    "routable": m.routable_endpoints().count(),
                    "names": m.endpoints().map(|e| e.to_string()).collect::<Vec<_>>(),
                },
            }),
        );
    }
    for s in stats {
        let avg = s.avg_latency.map(display::duration);
        let entry = models.entry(&s.name).or_insert_with(
            || json!({ "name": s.name, "endpoints": { "total": 0, "routable": 0, "names": [] } }),
        );
        entry["requests"] = json!(s.requests);
        entry["failures"] = json!(s.failures);
        entry["avg_latency"] = json!(avg);
    }
    let latencies: Vec<Duration> = fleet
        .endpoints
        .iter()
        .filter_map(|e| e.view.last_latency)
        .collect();
    let avg_check = (!latencies.is_empty())
        .then(|| display::duration(latencies.iter().sum::<Duration>() / latencies.len() as u32));
    json!({
        "models": models.into_values().collect::<Vec<_>>(),
        "endpoints_by_status": Counts::of(fleet),
        "avg_check_latency": avg_check,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn fleet_status_starts_then_follows_routability() {
        assert_eq!(fleet_status(3, false), "starting");
        assert_eq!(fleet_status(0, true), "unhealthy");
        assert_eq!(fleet_status(1, true), "healthy");
    }

    #[test]
    fn times_are_rfc3339_utc() {
        let t = UNIX_EPOCH + Duration::from_millis(1_705_314_645_123);
        assert_eq!(rfc3339(t), "2024-01-15T10:30:45.123Z");
    }
}
