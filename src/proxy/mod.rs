//! The proxy (SPEC 5): routes, model listings and forwarding.
//!
//! A handler asks the registry for candidates, forwards with its own worker's awc client, and
//! reports each outcome to the endpoint's actor. `route`, `headers` and `body` are pure;
//! `forward` is the request flow, which walks `candidates` → `attempt` → `settle` → `stream`,
//! with `sticky` keeping conversations on their endpoint; `listing` answers model lists from
//! the registry.

pub mod attempt;
pub mod body;
pub mod candidates;
pub mod formats;
pub mod forward;
pub mod headers;
pub mod listing;
pub mod queue;
pub mod relay;
pub mod route;
pub mod settle;
pub mod sticky;
pub mod stream;

use actix_web::middleware::from_fn;
use actix_web::{web, HttpRequest, HttpResponse};
use corral_actors::profiles::EndpointType;
use corral_actors::select::RouteClass;

pub use attempt::UpstreamClient;

use crate::errors::ApiError;
use crate::ratelimit;
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    let lm_studio_v1 = |s: web::Data<AppState>| async move {
        listing::openai(&s, RouteClass::Provider(EndpointType::LmStudio)).await
    };
    cfg.route("/olla/models", web::get().to(listing::catalogue))
        // Model names may hold slashes (`Qwen/Qwen2.5-7B`): the rest of the path is the id.
        .route("/olla/models/{id:.*}", web::get().to(listing::model))
        // LM Studio's own listing paths (Olla answers them from its catalogue too).
        .route(
            "/olla/lmstudio/api/v0/models",
            web::get().to(listing::lm_studio),
        )
        .route(
            "/olla/lm-studio/api/v0/models",
            web::get().to(listing::lm_studio),
        )
        .route(
            "/olla/lmstudio/api/v1/tags",
            web::get().to(listing::lm_studio_tags),
        )
        .route(
            "/olla/lm-studio/api/v1/tags",
            web::get().to(listing::lm_studio_tags),
        )
        .route("/olla/lmstudio/api/v1/models", web::get().to(lm_studio_v1))
        .route("/olla/lm-studio/api/v1/models", web::get().to(lm_studio_v1))
        .route(
            "/v1/models",
            web::get().to(|s: web::Data<AppState>| async move {
                listing::openai(&s, RouteClass::OpenAi).await
            }),
        )
        .route("/api/tags", web::get().to(listing::ollama_tags))
        .route("/olla/ollama/api/tags", web::get().to(listing::ollama_tags))
        .route("/olla/{provider}/v1/models", web::get().to(provider_models));
    // Only what is forwarded is rate limited (as in Olla): listings are answered from memory.
    for path in [
        "/olla/{provider}/{tail:.*}",
        "/olla/{provider}",
        "/v1/{tail:.*}",
        "/api/{tail:.*}",
    ] {
        cfg.service(
            web::resource(path)
                .wrap(from_fn(ratelimit::proxied))
                .to(proxy),
        );
    }
}

fn class_of(provider: &str) -> Result<RouteClass, ApiError> {
    route::provider_class(provider).ok_or_else(|| ApiError::UnknownProvider(provider.to_string()))
}

async fn provider_models(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    listing::openai(&state, class_of(&path)?).await
}

/// Every proxied path: the route class comes from the path itself (`/olla/<provider>/…`,
/// root `/v1/…` as the OpenAI class, root `/api/…` as Ollama).
async fn proxy(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    client: web::Data<UpstreamClient>,
) -> Result<HttpResponse, ApiError> {
    let class = match req.match_info().get("provider") {
        Some(provider) => class_of(provider)?,
        None if req.path().starts_with("/api/") => RouteClass::Provider(EndpointType::Ollama),
        None => RouteClass::OpenAi,
    };
    forward::forward(req, payload, &state, &client, class).await
}
