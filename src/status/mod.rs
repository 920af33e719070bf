//! The status API (SPEC 6): `/internal/health`, `/internal/ready`, `/internal/status`,
//! `/internal/status/endpoints`, `/internal/status/models` and `/version`; Olla's extras
//! (SPEC 12): `/internal/process`, `/internal/stats/sticky` and
//! `/internal/stats/translators`; and the metrics (SPEC 7.2, `/internal/metrics`), which
//! `metrics` renders.
//!
//! Every handler asks the registry for a snapshot and renders it; nothing here keeps state
//! but the warm-up latch in `AppState`. An endpoint's JSON is the control plane's read model
//! (`corral_actors::view::EndpointStatus`) serialised as it is.

pub mod fleet;
pub mod metrics;
pub mod models;
pub mod process;
pub mod sticky;

use std::time::SystemTime;

use actix_web::{web, HttpResponse};
use corral_actors::display;
use corral_actors::view::{EndpointStatus, FleetSnapshot};
use serde_json::json;

use crate::errors::ApiError;
use crate::state::AppState;
use fleet::FleetHealth;

pub fn routes(cfg: &mut web::ServiceConfig) {
    // Every method (Olla answers them all); actix sends a HEAD answer without its body.
    cfg.route("/internal/health", web::route().to(health))
        .route("/internal/ready", web::get().to(ready))
        .route("/internal/status", web::get().to(status))
        .route("/internal/status/endpoints", web::get().to(endpoints))
        .route("/internal/status/models", web::get().to(models))
        .route("/internal/stats/models", web::get().to(model_stats))
        .route("/internal/metrics", web::get().to(prometheus))
        .route("/internal/process", web::get().to(process))
        .route("/internal/stats/sticky", web::get().to(sticky_stats))
        .route(
            "/internal/stats/translators",
            web::get().to(translator_stats),
        )
        .route("/version", web::get().to(version));
}

/// The fleet's verdict for a snapshot; moves the warm-up latch as a side effect.
fn fleet_health(state: &AppState, fleet: &FleetSnapshot) -> FleetHealth {
    let warmed_up = state.warmed_up(fleet.first_checks_done(state.expected_endpoints));
    FleetHealth::of(&fleet.counts(), warmed_up)
}

/// The verdict and the body of `/internal/health`. Without a snapshot (the registry is
/// restarting) it reads `starting`, and the latch is left as it was.
fn health_body(
    state: &AppState,
    fleet: Option<&FleetSnapshot>,
) -> (FleetHealth, serde_json::Value) {
    let (health, counts) = match fleet {
        Some(f) => (fleet_health(state, f), f.counts()),
        None => (FleetHealth::Starting, Default::default()),
    };
    let body = json!({
        "status": health,
        "endpoints": counts,
        "uptime": state.uptime(),
        "version": env!("CARGO_PKG_VERSION"),
    });
    (health, body)
}

/// Always 200 while the process runs, even in the instant the registry is being restarted.
async fn health(state: web::Data<AppState>) -> HttpResponse {
    let fleet = state.fleet().await.ok();
    HttpResponse::Ok().json(health_body(&state, fleet.as_ref()).1)
}

/// 200 once every endpoint has been checked and at least one is routable, else 503.
async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let fleet = state.fleet().await.ok();
    match health_body(&state, fleet.as_ref()) {
        (FleetHealth::Healthy, body) => HttpResponse::Ok().json(body),
        (_, body) => HttpResponse::ServiceUnavailable().json(body),
    }
}

async fn endpoints(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let fleet = state.fleet().await?;
    Ok(HttpResponse::Ok().json(json!({ "endpoints": fleet.endpoints })))
}

async fn status(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let fleet = state.fleet().await?;
    let sum = |f: fn(&EndpointStatus) -> u64| fleet.endpoints.iter().map(f).sum::<u64>();
    Ok(HttpResponse::Ok().json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime": state.uptime(),
        "started_at": display::rfc3339(state.started_at),
        "status": fleet_health(&state, &fleet),
        "config": state.config_summary(),
        "endpoints": fleet.counts(),
        "requests": {
            "total": sum(|e| e.traffic.requests),
            "failed": sum(|e| e.traffic.failures),
            "retried": sum(|e| e.traffic.retries),
        },
        "queue": state.queue.view(),
        "endpoint_details": fleet.endpoints,
    })))
}

async fn models(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let published = state.published();
    let fleet = state.fleet().await?;
    let body = models::model_status(published.catalog(), &fleet, SystemTime::now());
    Ok(HttpResponse::Ok().json(body))
}

/// Corral's own process figures in Olla's outline (SPEC 12).
async fn process(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(process::body(state.started.elapsed(), SystemTime::now()))
}

async fn sticky_stats(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(sticky::stats(&state))
}

/// Corral translates no API yet (the Anthropic Messages API is not in SPEC 12): Olla's
/// answer shape with `enabled: false`, so tools that read it see no translator.
async fn translator_stats() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "enabled": false }))
}

async fn version() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "name": "corral", "version": env!("CARGO_PKG_VERSION") }))
}

/// Per model: requests, failures, average time to upstream headers, and availability across
/// endpoints; plus the fleet's endpoints by status and average check latency (SPEC 6).
async fn model_stats(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let stats = state.model_stats.snapshot();
    let published = state.published();
    let catalog = published.catalog();
    let fleet = state.fleet().await?;
    Ok(HttpResponse::Ok().json(models::model_stats(&stats, catalog, &fleet)))
}

/// The fleet in Prometheus's text format (SPEC 7.2). Behind `internal_token` like every
/// `/internal/` route but `/internal/health`.
async fn prometheus(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let fleet = state.fleet().await?;
    let attempts = state.model_stats.attempts();
    let text = metrics::render(&metrics::Scrape {
        fleet: &fleet,
        attempts: &attempts,
        uptime: state.started.elapsed(),
        process: metrics::ProcessStats::read(),
        queue: &state.queue.view(),
    });
    Ok(HttpResponse::Ok()
        .content_type(metrics::CONTENT_TYPE)
        .body(text))
}
