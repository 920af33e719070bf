//! The `internal_token` guard (SPEC 3, 11): with `server.internal_token` set, `/internal/*`
//! (but `/internal/health`, which load balancers poll, and `/internal/ui`, a static page
//! that holds no data and asks for the token itself) needs `Authorization: Bearer <token>`.
//!
//! The check is made on the normalised path ([`route::normalise`]): no spelling of an
//! internal path (percent-encoding, doubled or trailing slashes) gets past it to a handler
//! that its plain spelling could not reach without the token.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::AUTHORIZATION;
use actix_web::middleware::Next;
use actix_web::web;

use crate::errors::ApiError;
use crate::proxy::route;
use crate::state::AppState;

/// Middleware: refuses an internal path without the right token (401).
pub async fn internal_token(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let expected = req
        .app_data::<web::Data<AppState>>()
        .and_then(|s| s.internal_token.clone());
    if let Some(token) = expected {
        if needs_token(&route::normalise(req.path())) {
            let given = req
                .headers()
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
                return Err(ApiError::Unauthorized.into());
            }
        }
    }
    next.call(req).await
}

/// Whether a normalised path is internal and not the open health check or the status page
/// (a browser cannot send a header to open it; every route it reads needs the token). Case-insensitive,
/// so that no spelling is left to the router's own rules.
fn needs_token(path: &str) -> bool {
    let path = path.to_ascii_lowercase();
    let internal = path == "/internal" || path.starts_with("/internal/");
    internal && path != "/internal/health" && path != "/internal/ui"
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }

    #[test]
    fn every_spelling_of_an_internal_path_needs_the_token() {
        for raw in [
            "/internal/status/endpoints",
            "/%69nternal/status/endpoints",
            "/%2Finternal/status/endpoints",
            "//internal/status/endpoints",
            "/internal//status/endpoints",
            "/internal/status/endpoints/",
            "/INTERNAL/status/endpoints",
            "/internal/%73tatus/endpoints",
            "/internal/%2573tatus/endpoints",
            "/internal",
            "/internal/health/../status",
            "/internal/ui/../events",
            "/internal/uix",
        ] {
            assert!(needs_token(&route::normalise(raw)), "{raw}");
        }
        for raw in [
            "/internal/health",
            "/internal/health/",
            "/internal/ui",
            "/v1/models",
            "/internalx",
        ] {
            assert!(!needs_token(&route::normalise(raw)), "{raw}");
        }
    }
}
