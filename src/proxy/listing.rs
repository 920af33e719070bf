//! Model listings answered from the registry's catalog, not proxied (SPEC 5.1): the unified
//! catalog, OpenAI's `/v1/models` shape and Ollama's `/api/tags` shape — each listing only
//! models on routable endpoints of the route's provider class. The OpenAI shape lists the
//! `model_aliases` that such an endpoint serves, too (SPEC 12).

use actix_web::{web, HttpResponse};
use corral_actors::catalog::{model_matches, ModelCatalog};
use corral_actors::profiles::{EndpointType, RouteClass};
use serde_json::{json, Value};

use crate::errors::ApiError;
use crate::state::AppState;

pub async fn unified(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let published = state.published();
    let catalog = published.catalog();
    let models: Vec<Value> = catalog
        .models
        .iter()
        .filter_map(|m| {
            let sources: Vec<Value> = m.available(RouteClass::Any)
                .map(|s| json!({ "endpoint": s.endpoint.as_ref(), "type": s.kind.as_str(), "status": s.status }))
                .collect();
            (!sources.is_empty()).then(|| json!({ "name": m.name, "endpoints": sources }))
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "models": models })))
}

pub async fn openai(state: &AppState, route: RouteClass) -> Result<HttpResponse, ApiError> {
    let published = state.published();
    let catalog = published.catalog();
    let mut data: Vec<Value> = catalog
        .models
        .iter()
        .filter(|m| m.available(route).next().is_some())
        .map(|m| json!({ "id": m.name, "object": "model", "created": 0, "owned_by": "corral" }))
        .collect();
    for alias in served_aliases(&state.running().model_aliases, catalog, route) {
        if !data.iter().any(|m| m["id"] == alias) {
            data.push(
                json!({ "id": alias, "object": "model", "created": 0, "owned_by": "corral" }),
            );
        }
    }
    Ok(HttpResponse::Ok().json(json!({ "object": "list", "data": data })))
}

pub async fn ollama_tags(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let published = state.published();
    let catalog = published.catalog();
    let route = RouteClass::Provider(EndpointType::Ollama);
    let models: Vec<Value> = catalog
        .models
        .iter()
        .filter_map(|m| {
            let source = m.available(route).next()?;
            Some(json!({
                "name": m.name,
                "model": m.name,
                "size": source.info.size.unwrap_or(0),
                "details": {},
            }))
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "models": models })))
}

/// The aliases that a request on `route` could use now: those with a native name listed on
/// a routable endpoint of the route (what the alias would route to).
fn served_aliases<'a>(
    aliases: &'a crate::config::ModelAliases,
    catalog: &ModelCatalog,
    route: RouteClass,
) -> Vec<&'a str> {
    aliases
        .iter()
        .filter(|(_, targets)| {
            catalog.models.iter().any(|m| {
                targets.iter().any(|t| model_matches(&m.name, t))
                    && m.available(route).next().is_some()
            })
        })
        .map(|(alias, _)| alias.as_str())
        .collect()
}
