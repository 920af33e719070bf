//! The resolved settings of one endpoint: everything its actor needs, with every default
//! applied and every URL made absolute. Built by the config loader in the `corral` crate,
//! shared read-only (`Arc`) by the supervisor and each incarnation of the endpoint's actor.

use std::sync::Arc;
use std::time::Duration;

use crate::breaker::BreakerPolicy;
use crate::health::HealthPolicy;
use crate::profiles::EndpointType;

#[derive(Debug, Clone, PartialEq)]
pub struct EndpointSettings {
    /// Unique name; the key everywhere (registry, logs, status API).
    pub name: Arc<str>,
    /// Base URL without a trailing slash, e.g. `http://localhost:11434`.
    pub url: String,
    pub kind: EndpointType,
    /// Higher wins; the first attempt goes to the highest tier with a candidate.
    pub priority: u32,
    /// Absolute URL probed by health checks.
    pub health_url: String,
    /// True when `health_url` is the type's default: then a 404/405 there falls back to
    /// `model_url` (SPEC 4.1) instead of leaving the endpoint unhealthy for ever.
    pub health_url_is_default: bool,
    /// Absolute URL of the model list.
    pub model_url: String,
    pub check_interval: Duration,
    pub check_timeout: Duration,
    pub health: HealthPolicy,
    pub max_backoff: Duration,
    /// Share (0.0–1.0) by which each wait is spread.
    pub jitter: f64,
    pub health_breaker: BreakerPolicy,
    pub proxy_breaker: BreakerPolicy,
    /// A check passes only if `model_url` lists at least one model.
    pub require_models: bool,
    /// False: never probed, assumed healthy until requests fail.
    pub health_checks: bool,
    /// Sent on checks, discovery and proxied requests; `${VAR}` already expanded.
    pub headers: Vec<(String, String)>,
    pub discovery: DiscoverySettings,
    /// How often the backend's own load report is read (SPEC 10.1); zero: never.
    pub load_interval: Duration,
    /// How many of Corral's requests may be in flight here at once (SPEC 10.3).
    pub max_concurrency: MaxConcurrency,
}

/// An endpoint's admission limit (SPEC 10.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MaxConcurrency {
    /// `0`: no limit.
    #[default]
    Unlimited,
    /// At most this many (never zero).
    Fixed(u64),
    /// The slot count the backend reports (llama.cpp `/slots`); no limit until it is known.
    Auto,
}

impl MaxConcurrency {
    /// The limit in force, given the slot count the backend last reported.
    pub fn limit(self, reported_slots: Option<u64>) -> Option<u64> {
        match self {
            MaxConcurrency::Unlimited => None,
            MaxConcurrency::Fixed(n) => Some(n),
            MaxConcurrency::Auto => reported_slots.filter(|&n| n > 0),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscoverySettings {
    pub enabled: bool,
    /// How often a routable endpoint's model list is refreshed.
    pub interval: Duration,
    pub timeout: Duration,
}

impl Default for DiscoverySettings {
    fn default() -> Self {
        DiscoverySettings {
            enabled: true,
            interval: Duration::from_secs(300),
            timeout: Duration::from_secs(10),
        }
    }
}

impl EndpointSettings {
    /// A load report older than this is stale and ignored (SPEC 10.1); `None` when load
    /// reads are off.
    pub fn load_max_age(&self) -> Option<Duration> {
        (!self.load_interval.is_zero()).then(|| self.load_interval.saturating_mul(3))
    }

    /// Settings with the reference's defaults for an endpoint at `url`; the config loader and
    /// tests start from here.
    pub fn new(name: &str, url: &str, kind: EndpointType) -> Self {
        let url = url.trim_end_matches('/').to_string();
        EndpointSettings {
            name: Arc::from(name),
            health_url: format!("{url}{}", kind.default_health_path()),
            health_url_is_default: true,
            model_url: format!("{url}{}", kind.default_model_path()),
            url,
            kind,
            priority: 100,
            check_interval: Duration::from_secs(30),
            check_timeout: Duration::from_secs(5),
            health: HealthPolicy::default(),
            max_backoff: Duration::from_secs(60),
            jitter: 0.0,
            health_breaker: BreakerPolicy::HEALTH_DEFAULT,
            proxy_breaker: BreakerPolicy::PROXY_DEFAULT,
            require_models: false,
            health_checks: true,
            headers: Vec::new(),
            discovery: DiscoverySettings::default(),
            load_interval: Duration::from_secs(2),
            max_concurrency: MaxConcurrency::Unlimited,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_limits_only_once_slots_are_known() {
        assert_eq!(MaxConcurrency::Auto.limit(None), None);
        assert_eq!(MaxConcurrency::Auto.limit(Some(0)), None);
        assert_eq!(MaxConcurrency::Auto.limit(Some(2)), Some(2));
        assert_eq!(MaxConcurrency::Fixed(3).limit(Some(2)), Some(3));
        assert_eq!(MaxConcurrency::Unlimited.limit(Some(2)), None);
    }

    #[test]
    fn loads_go_stale_after_three_intervals() {
        let mut s = EndpointSettings::new("a", "http://x", EndpointType::LlamaCpp);
        assert_eq!(s.load_max_age(), Some(Duration::from_secs(6)));
        s.load_interval = Duration::ZERO;
        assert_eq!(s.load_max_age(), None);
    }
}
