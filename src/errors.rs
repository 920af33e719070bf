//! Errors the HTTP layer answers with: always a JSON body `{"error": "<code>", "message": …}`
//! and a 4xx/5xx status, never a panic or an empty response.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the registry is restarting; try again")]
    RegistryUnavailable,
    #[error("missing or wrong bearer token for /internal")]
    Unauthorized,
    #[error("no route for {0}")]
    NotFound(String),
    #[error("no endpoint named `{0}`")]
    UnknownEndpoint(String),
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::RegistryUnavailable => "registry_unavailable",
            ApiError::Unauthorized => "unauthorized",
            ApiError::NotFound(_) => "not_found",
            ApiError::UnknownEndpoint(_) => "endpoint_not_found",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::RegistryUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) | ApiError::UnknownEndpoint(_) => StatusCode::NOT_FOUND,
        }
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(json!({
            "error": self.code(),
            "message": self.to_string(),
        }))
    }
}
