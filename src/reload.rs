//! Hot reload (SPEC 2): SIGHUP and `POST /internal/reload` re-read the config file and make the
//! fleet match it — endpoints added, removed, replaced or re-configured by the supervisor —
//! while untouched endpoints keep their state, counters and traffic.
//!
//! An invalid file is rejected with its reason (logged, and a 400 for the POST) and the running
//! config stays. Settings outside the endpoints (the listen address first of all) cannot
//! change under a running server: they are named in a warning and apply after a restart.

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use corral_actors::messages::{ApplyEndpoints, FleetChanges};
use serde_json::json;
use tracing::{info, warn};

use crate::config::{self, Config};
use crate::errors::ApiError;
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/internal/reload", web::post().to(post));
}

async fn post(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let reloaded = reload(&state, "POST /internal/reload").await?;
    Ok(HttpResponse::Ok().json(reloaded.to_json()))
}

/// What a reload did.
pub struct Reloaded {
    pub changes: FleetChanges,
    /// Settings that changed in the file but apply only after a restart.
    pub not_applied: Vec<&'static str>,
}

impl Reloaded {
    fn to_json(&self) -> serde_json::Value {
        let names = |v: &[Arc<str>]| v.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let c = &self.changes;
        json!({
            "reloaded": true,
            "added": names(&c.added),
            "removed": names(&c.removed),
            "replaced": names(&c.replaced),
            "reconfigured": names(&c.reconfigured),
            "unchanged": c.unchanged,
            "not_applied_until_restart": self.not_applied,
        })
    }
}

/// Re-reads the config file and applies it; `trigger` says what asked (for the log).
pub async fn reload(state: &AppState, trigger: &str) -> Result<Reloaded, ApiError> {
    // One reload at a time: two files applied in a race could leave either.
    let _one = state.reloading.lock().await;
    let Some(path) = state.config_path.clone() else {
        let reason = "Corral was started without a config file".to_string();
        warn!(trigger, %reason, "reload rejected");
        return Err(ApiError::ReloadRejected(reason));
    };
    let new = match config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            warn!(trigger, file = %path.display(), reason = %e, "reload rejected; the running config stays");
            return Err(ApiError::ReloadRejected(e.to_string()));
        }
    };
    let running = state.running();
    let not_applied = not_applied(&running, &new);
    let changes = state
        .supervisor
        .send(ApplyEndpoints(new.endpoints.clone()))
        .await
        .map_err(|_| ApiError::ReloadRejected("the control plane is not answering".into()))?;
    if let Some(warning) = new.ignored_settings_warning() {
        warn!("{warning}");
    }
    for warning in &new.warnings {
        warn!("{warning}");
    }
    if !not_applied.is_empty() {
        warn!(settings = ?not_applied, "these settings changed but apply only after a restart");
    }
    info!(
        trigger,
        added = changes.added.len(),
        removed = changes.removed.len(),
        replaced = changes.replaced.len(),
        reconfigured = changes.reconfigured.len(),
        unchanged = changes.unchanged,
        "config reloaded"
    );
    state.set_running(new);
    Ok(Reloaded {
        changes,
        not_applied,
    })
}

/// The settings outside the endpoints that differ: they cannot change under a running server.
fn not_applied(running: &Config, new: &Config) -> Vec<&'static str> {
    let (a, b) = (&running.server, &new.server);
    let mut out = Vec::new();
    if a.host != b.host || a.port != b.port {
        out.push("server.host/port (the listen address)");
    }
    if (&a.shutdown_timeout, &a.max_body_size, &a.max_header_size)
        != (&b.shutdown_timeout, &b.max_body_size, &b.max_header_size)
        || (&a.internal_token, &a.read_header_timeout, &a.read_timeout)
            != (&b.internal_token, &b.read_header_timeout, &b.read_timeout)
    {
        out.push("server (limits, timeouts, internal_token)");
    }
    if (
        &a.rate_limits,
        a.trust_proxy_headers,
        &a.trusted_proxy_cidrs,
    ) != (
        &b.rate_limits,
        b.trust_proxy_headers,
        &b.trusted_proxy_cidrs,
    ) {
        out.push("server.rate_limits (and trusted proxies)");
    }
    if running.proxy != new.proxy {
        out.push("proxy");
    }
    if running.logging != new.logging {
        out.push("logging");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        config::parse(text, "test.yaml", &|_| None).unwrap()
    }

    #[test]
    fn only_settings_outside_the_endpoints_are_named() {
        let a = parse("endpoints:\n  - url: http://a:1\n");
        let b = parse("endpoints:\n  - url: http://b:1\n");
        assert!(not_applied(&a, &b).is_empty(), "endpoints reload");
        let moved = parse("server: { port: 1234 }\n");
        assert_eq!(
            not_applied(&a, &moved),
            ["server.host/port (the listen address)"]
        );
        let other = parse("proxy: { max_attempts: 2 }\nlogging: { level: debug }\n");
        assert_eq!(not_applied(&a, &other), ["proxy", "logging"]);
        let limited = parse("server: { rate_limits: { per_ip_requests_per_minute: 5 } }\n");
        assert_eq!(
            not_applied(&a, &limited),
            ["server.rate_limits (and trusted proxies)"]
        );
    }
}
