//! Model listings answered from the registry's catalog, not proxied (SPEC 5.1): the unified
//! catalog, OpenAI's `/v1/models` shape and Ollama's `/api/tags` shape — each listing only
//! models on routable endpoints of the route's provider class.

use actix_web::{web, HttpResponse};
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
    let data: Vec<Value> = catalog
        .models
        .iter()
        .filter(|m| m.available(route).next().is_some())
        .map(|m| json!({ "id": m.name, "object": "model", "created": 0, "owned_by": "corral" }))
        .collect();
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
