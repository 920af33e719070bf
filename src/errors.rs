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
    #[error("unknown provider `{0}` (use ollama, lmstudio, vllm, llamacpp, sglang, openai, openai-compatible or proxy)")]
    UnknownProvider(String),
    #[error("path traversal is not allowed")]
    PathTraversal,
    #[error("request body larger than {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("request headers larger than {limit} bytes")]
    HeadersTooLarge { limit: u64 },
    #[error("the request body did not arrive within {}", corral_actors::display::duration(*limit))]
    RequestTimeout { limit: std::time::Duration },
    #[error("reload rejected: {0}")]
    ReloadRejected(String),
    #[error("malformed JSON body: {0}")]
    InvalidJson(String),
    #[error("could not read the request body: {0}")]
    BadRequestBody(String),
    #[error("invalid value `{value}` for query parameter `{parameter}` (expected {expected})")]
    InvalidQuery {
        parameter: String,
        value: String,
        expected: String,
    },
    #[error("no endpoint lists model `{model}`")]
    ModelNotFound { model: String },
    #[error("model `{model}` is listed only on endpoints that cannot serve now")]
    ModelUnavailable { model: String },
    #[error("no healthy endpoint for route `{route}`")]
    NoHealthyEndpoints { route: String },
    #[error("every endpoint that can serve this is at its concurrency limit and {waiting} requests are waiting already")]
    QueueFull { waiting: usize },
    #[error("waited {} for a free endpoint; none became free", corral_actors::display::duration(*waited))]
    QueueTimeout { waited: std::time::Duration },
    #[error("every endpoint tried failed")]
    AllEndpointsFailed { attempts: Vec<serde_json::Value> },
    #[error("endpoint `{endpoint}` sent no response headers in time")]
    UpstreamTimeout { endpoint: String },
    #[error("the request cannot be forwarded as sent: {error}")]
    Unforwardable { error: String },
    #[error("internal error: {error}")]
    Internal { error: String },
    /// Over `server.rate_limits` (SPEC 12); the fields are the `X-RateLimit-*` headers'.
    #[error("too many requests: at most {limit} a minute; retry in {retry_after}s")]
    RateLimited {
        limit: u32,
        /// Unix seconds at which the minute that the limit counts in is over.
        reset: u64,
        /// Whole seconds until a request would be admitted.
        retry_after: u64,
    },
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::RegistryUnavailable => "registry_unavailable",
            ApiError::Unauthorized => "unauthorized",
            ApiError::NotFound(_) => "not_found",
            ApiError::UnknownEndpoint(_) => "endpoint_not_found",
            ApiError::UnknownProvider(_) => "unknown_provider",
            ApiError::PathTraversal => "path_traversal",
            ApiError::BodyTooLarge { .. } => "body_too_large",
            ApiError::HeadersTooLarge { .. } => "headers_too_large",
            ApiError::RequestTimeout { .. } => "request_timeout",
            ApiError::ReloadRejected(_) => "reload_rejected",
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::BadRequestBody(_) => "bad_request_body",
            ApiError::InvalidQuery { .. } => "invalid_query",
            ApiError::ModelNotFound { .. } => "model_not_found",
            ApiError::ModelUnavailable { .. } => "model_unavailable",
            ApiError::NoHealthyEndpoints { .. } => "no_healthy_endpoints",
            ApiError::AllEndpointsFailed { .. } => "all_endpoints_failed",
            ApiError::QueueFull { .. } => "queue_full",
            ApiError::QueueTimeout { .. } => "queue_timeout",
            ApiError::UpstreamTimeout { .. } => "upstream_timeout",
            ApiError::Unforwardable { .. } => "unforwardable_request",
            ApiError::Internal { .. } => "internal_error",
            ApiError::RateLimited { .. } => "rate_limited",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::RegistryUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_)
            | ApiError::UnknownEndpoint(_)
            | ApiError::UnknownProvider(_)
            | ApiError::ModelNotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::PathTraversal
            | ApiError::InvalidJson(_)
            | ApiError::BadRequestBody(_)
            | ApiError::InvalidQuery { .. }
            | ApiError::Unforwardable { .. }
            | ApiError::ReloadRejected(_) => StatusCode::BAD_REQUEST,
            ApiError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::ModelUnavailable { .. }
            | ApiError::NoHealthyEndpoints { .. }
            | ApiError::QueueTimeout { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::QueueFull { .. } | ApiError::RateLimited { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::AllEndpointsFailed { .. } => StatusCode::BAD_GATEWAY,
            ApiError::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut body = json!({
            "error": self.code(),
            "message": self.to_string(),
        });
        match self {
            ApiError::NoHealthyEndpoints { route } => body["route"] = json!(route),
            ApiError::ModelNotFound { model } | ApiError::ModelUnavailable { model } => {
                body["model"] = json!(model)
            }
            ApiError::AllEndpointsFailed { attempts } => body["attempts"] = json!(attempts),
            ApiError::UpstreamTimeout { endpoint } => body["endpoint"] = json!(endpoint),
            ApiError::InvalidQuery { parameter, .. } => body["parameter"] = json!(parameter),
            _ => {}
        }
        let mut response = HttpResponse::build(self.status_code());
        if matches!(self, ApiError::QueueFull { .. }) {
            response.insert_header(("retry-after", "1"));
        }
        if let ApiError::RateLimited {
            limit,
            reset,
            retry_after,
        } = self
        {
            response
                .insert_header(("retry-after", retry_after.to_string()))
                .insert_header(("x-ratelimit-limit", limit.to_string()))
                .insert_header(("x-ratelimit-remaining", "0"))
                .insert_header(("x-ratelimit-reset", reset.to_string()));
        }
        if matches!(self, ApiError::RequestTimeout { .. }) {
            // The rest of a late body may still come; the connection cannot be reused.
            response.force_close();
        }
        response.json(body)
    }
}
