//! The status API (SPEC 6): `/internal/health`, `/internal/ready`, `/internal/status`,
//! `/internal/status/endpoints`, `/internal/status/models` and `/version`.
//!
//! Every handler asks the registry for a snapshot and renders it; nothing here keeps state.

pub mod json;

use std::time::Duration;

use actix_web::{web, HttpResponse};
use corral_actors::messages::{FleetSnapshot, ModelCatalog, SnapshotFleet, SnapshotModels};
use serde_json::json;

use crate::app::AppState;
use crate::errors::ApiError;
use json::{Counts, EndpointJson, ModelStatusJson};

/// How long a status query waits for the registry (which answers from memory at once).
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/internal/health", web::get().to(health))
        .route("/internal/ready", web::get().to(ready))
        .route("/internal/status", web::get().to(status))
        .route("/internal/status/endpoints", web::get().to(endpoints))
        .route("/internal/status/models", web::get().to(models))
        .route("/internal/stats/models", web::get().to(model_stats))
        .route("/version", web::get().to(version));
}

pub async fn fleet(state: &AppState) -> Result<FleetSnapshot, ApiError> {
    let registry = state.registry().await?;
    registry
        .send(SnapshotFleet)
        .timeout(QUERY_TIMEOUT)
        .await
        .map_err(|_| ApiError::RegistryUnavailable)
}

pub async fn catalog(state: &AppState) -> Result<ModelCatalog, ApiError> {
    let registry = state.registry().await?;
    registry
        .send(SnapshotModels)
        .timeout(QUERY_TIMEOUT)
        .await
        .map_err(|_| ApiError::RegistryUnavailable)
}

fn health_body(state: &AppState, fleet: Option<&FleetSnapshot>) -> serde_json::Value {
    let (status, counts) = match fleet {
        Some(f) => (state.fleet_status(f), Counts::of(f)),
        None => ("starting", Counts::default()),
    };
    json!({
        "status": status,
        "endpoints": counts,
        "uptime": state.uptime(),
        "version": env!("CARGO_PKG_VERSION"),
    })
}

/// Always 200 while the process runs, even in the instant the registry is being restarted.
async fn health(state: web::Data<AppState>) -> HttpResponse {
    let fleet = fleet(&state).await.ok();
    HttpResponse::Ok().json(health_body(&state, fleet.as_ref()))
}

/// 200 once every endpoint has been checked and at least one is routable, else 503.
async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let fleet = fleet(&state).await.ok();
    let body = health_body(&state, fleet.as_ref());
    if body["status"] == "healthy" {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn endpoints(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let fleet = fleet(&state).await?;
    let list: Vec<EndpointJson> = fleet.endpoints.iter().map(EndpointJson::from).collect();
    Ok(HttpResponse::Ok().json(json!({ "endpoints": list })))
}

async fn status(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let fleet = fleet(&state).await?;
    let details: Vec<EndpointJson> = fleet.endpoints.iter().map(EndpointJson::from).collect();
    let sum = |f: fn(&corral_actors::messages::EndpointSnapshot) -> u64| {
        fleet.endpoints.iter().map(f).sum::<u64>()
    };
    Ok(HttpResponse::Ok().json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime": state.uptime(),
        "started_at": json::rfc3339(state.started_at),
        "status": state.fleet_status(&fleet),
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
    let catalog = catalog(&state).await?;
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
    let catalog = catalog(&state).await?;
    let fleet = fleet(&state).await?;
    Ok(HttpResponse::Ok().json(json::model_stats(&stats, &catalog, &fleet)))
}
