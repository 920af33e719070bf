//! The log lines of an endpoint's [`Note`]s: what the machine says happened, written where
//! an operator greps for it (`corral::health` for the health story, SPEC 2).

use tracing::{info, warn};

use super::machine::Note;
use crate::display;
use crate::profiles;
use crate::settings::EndpointSettings;

pub fn log(settings: &EndpointSettings, note: &Note) {
    let endpoint: &str = &settings.name;
    match note {
        Note::StatusChanged {
            from,
            to,
            reason,
            latency,
        } => {
            let latency = latency.map(display::duration).unwrap_or_default();
            if to.is_routable() {
                info!(target: "corral::health", endpoint = %endpoint, %from, %to, reason = reason.to_string().as_str(), %latency, "health status changed");
            } else {
                warn!(target: "corral::health", endpoint = %endpoint, %from, %to, reason = reason.to_string().as_str(), %latency, "health status changed");
            }
        }
        Note::HealthBreakerOpened { failures, open_for } => {
            warn!(target: "corral::health", endpoint = %endpoint, failures, open_for = %display::duration(*open_for), "health breaker open: no probes until it half-opens");
        }
        Note::HealthBreakerHalfOpen => {
            info!(target: "corral::health", endpoint = %endpoint, "health breaker half-open: sending one test probe");
        }
        Note::HealthBreakerClosed => {
            info!(target: "corral::health", endpoint = %endpoint, "health breaker closed");
        }
        Note::ProxyBreakerOpened { failures, open_for } => {
            warn!(target: "corral::health", endpoint = %endpoint, failures, open_for = %display::duration(*open_for), "proxy breaker open: no traffic until it half-opens");
        }
        Note::ProxyBreakerHalfOpen => {
            info!(target: "corral::health", endpoint = %endpoint, "proxy breaker half-open: one test request at a time");
        }
        Note::ProxyBreakerClosed => {
            info!(target: "corral::health", endpoint = %endpoint, "proxy breaker closed");
        }
        Note::CheckingModelUrlInstead => {
            let s = settings;
            let health = s.health_url.trim_start_matches(&s.url);
            let models = s.model_url.trim_start_matches(&s.url);
            info!(target: "corral::health", endpoint = %endpoint, "endpoint {endpoint}: no {health} here; checking {models} instead");
        }
        Note::ModelsDiscovered { count, sample } => {
            info!(endpoint = %endpoint, count, models = ?sample, "models discovered");
        }
        Note::ModelListTrimmed { dropped } => {
            warn!(
                endpoint,
                dropped,
                max_models = profiles::MAX_MODELS,
                max_name_bytes = profiles::MAX_MODEL_NAME,
                "model list trimmed to its limits; the rest dropped (logged once)"
            );
        }
        Note::DiscoveryFailed(reason) => {
            warn!(endpoint = %endpoint, %reason, url = %settings.model_url, "model discovery failed; keeping the previous list");
        }
    }
}
