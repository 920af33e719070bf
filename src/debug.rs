//! Fault injection (cargo feature `fault-injection`, never on by default): routes that make an
//! endpoint actor or the registry panic inside a handler, so that the end-to-end tests can
//! prove supervision from outside. Without the feature this module adds no routes.

use actix_web::web;

#[cfg(feature = "fault-injection")]
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/internal/debug/crash/{name}",
        web::post().to(handlers::crash_endpoint),
    )
    .route(
        "/internal/debug/crash-registry",
        web::post().to(handlers::crash_registry),
    );
}

#[cfg(not(feature = "fault-injection"))]
pub fn routes(_: &mut web::ServiceConfig) {}

#[cfg(feature = "fault-injection")]
mod handlers {
    use actix_web::{web, HttpResponse};
    use corral_actors::messages::{CrashEndpoint, CrashRegistry};
    use serde_json::json;

    use crate::errors::ApiError;
    use crate::state::AppState;

    pub async fn crash_endpoint(
        state: web::Data<AppState>,
        name: web::Path<String>,
    ) -> Result<HttpResponse, ApiError> {
        let name = name.into_inner();
        let found = state
            .supervisor
            .send(CrashEndpoint { name: name.clone() })
            .await
            .unwrap_or(false);
        if !found {
            return Err(ApiError::UnknownEndpoint(name));
        }
        Ok(HttpResponse::Accepted().json(json!({ "crashed": name })))
    }

    pub async fn crash_registry(state: web::Data<AppState>) -> HttpResponse {
        state.supervisor.do_send(CrashRegistry);
        HttpResponse::Accepted().json(json!({ "crashed": "registry" }))
    }
}
