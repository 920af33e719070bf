//! The status API (SPEC 6): `/internal/health`, `/internal/ready`, `/internal/status`,
//! `/internal/status/endpoints`, `/internal/status/models` and `/version`.
//!
//! Every handler asks the registry for a snapshot and renders it; nothing here keeps state.

pub mod fleet;
pub mod json;

use actix_web::{web, HttpResponse};
use corral_actors::messages::{EndpointSnapshot, FleetSnapshot};
use serde_json::json;

use crate::errors::ApiError;
use crate::state::AppState;
use fleet::FleetHealth;
use json::{Counts, EndpointJson, ModelStatusJson};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/internal/health", web::get().to(health))
        .route("/internal/ready", web::get().to(ready))
        .route("/internal/status", web::get().to(status))
        .route("/internal/status/endpoints", web::get().to(endpoints))
        .route("/internal/status/models", web::get().to(models))
        .route("/internal/stats/models", web::get().to(model_stats))
        .route("/version", web::get().to(version));
}

/// The fleet's verdict for a snapshot; moves the warm-up latch as a side effect.
fn fleet_health(state: &AppState, fleet: &FleetSnapshot) -> FleetHealth {
    let warmed_up = state.warmed_up(json::first_checks_done(fleet, state.expected_endpoints));
    FleetHealth::of(&Counts::of(fleet), warmed_up)
}

/// The verdict and the body of `/internal/health`. Without a snapshot (the registry is
/// restarting) it reads `starting`, and the latch is left as it was.
fn health_body(
    state: &AppState,
    fleet: Option<&FleetSnapshot>,
) -> (FleetHealth, serde_json::Value) {
    let (health, counts) = match fleet {
        Some(f) => (fleet_health(state, f), Counts::of(f)),
        None => (FleetHealth::Starting, Counts::default()),
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
    let list: Vec<EndpointJson> = fleet.endpoints.iter().map(EndpointJson::from).collect();
    Ok(HttpResponse::Ok().json(json!({ "endpoints": list })))
}

async fn status(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let fleet = state.fleet().await?;
    let details: Vec<EndpointJson> = fleet.endpoints.iter().map(EndpointJson::from).collect();
    let sum = |f: fn(&EndpointSnapshot) -> u64| fleet.endpoints.iter().map(f).sum::<u64>();
    Ok(HttpResponse::Ok().json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime": state.uptime(),
        "started_at": json::rfc3339(state.started_at),
        "status": fleet_health(&state, &fleet),
        "config": state.config_summary,
        "endpoints": Counts::of(&fleet),
        "requests": {
            "total": sum(|e| e.requests),
            "failed": sum(|e| e.failures),
            "retried": sum(|e| e.retries),
        },
        "endpoint_details": details,
    })))
}

async fn models(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let catalog = state.catalog().await?;
    let list: Vec<ModelStatusJson> = catalog.models.iter().map(ModelStatusJson::from).collect();
    Ok(HttpResponse::Ok().json(json!({ "models": list })))
}

async fn version() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "name": "corral", "version": env!("CARGO_PKG_VERSION") }))
}

/// Per model: requests, failures, average time to upstream headers, and availability across
/// endpoints; plus the fleet's endpoints by status and average check latency (SPEC 6).
async fn model_stats(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let stats = state.model_stats.snapshot();
    let catalog = state.catalog().await?;
    let fleet = state.fleet().await?;
    Ok(HttpResponse::Ok().json(json::model_stats(&stats, &catalog, &fleet)))
}
