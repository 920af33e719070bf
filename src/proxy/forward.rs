//! Forwarding one request (SPEC 5.2–5.4, 12), top to bottom: check the input, buffer the body
//! and read its model (or alias), choose and order the candidates (the sticky session's
//! endpoint first), then for each one `attempt`, `settle`, and either `stream` the response
//! through or fail over to the next. Once the model's routing is known, every answer carries
//! the `X-Olla-Routing-*` headers, a rejection too.
//!
//! The proxy handler in `proxy/mod.rs` calls [`forward`]. The flow is all this file holds:
//! an attempt lives in `attempt`, its bookkeeping in `settle`, the response in `stream`.
//! Request bodies never travel through actors.

use actix_web::http::header::{HeaderName, CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::web::{Bytes, Payload};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use corral_actors::display;
use corral_actors::select::RouteClass;
use serde_json::{json, Value};
use tracing::debug;

use std::sync::Arc;
use std::time::Instant;

use corral_actors::Candidate;

use super::attempt::{Outgoing, UpstreamClient};
use super::candidates::WantedModel;
use super::queue::Admitted;
use super::settle::{Ledger, Next};
use super::stream::{self, Kept, Meta, Routing};
use super::{body, candidates, headers, route};
use crate::errors::ApiError;
use crate::state::{AppState, Limits};

pub async fn forward(
    req: HttpRequest,
    payload: Payload,
    state: &AppState,
    client: &UpstreamClient,
    route: RouteClass,
) -> Result<HttpResponse, ApiError> {
    let received = std::time::Instant::now();
    check(&req, state.limits)?;
    let (body, model) = read(&req, payload, state.limits).await?;
    let wanted = WantedModel::new(model, &state.running().model_aliases);
    let mut routing = None;
    match dispatch(
        &req,
        body,
        &wanted,
        state,
        client,
        route,
        received,
        &mut routing,
    )
    .await
    {
        Ok(response) => Ok(response),
        // A request that names a model says how it was routed, rejections included (SPEC 12).
        Err(error) => match routing {
            Some(routing) => {
                let mut response = error.error_response();
                for (name, value) in routing.headers() {
                    response
                        .headers_mut()
                        .insert(HeaderName::from_static(name), value);
                }
                Ok(response)
            }
            None => Err(error),
        },
    }
}

/// Chooses, admits and tries the candidates for a request whose body is read. `routing` is
/// filled in as soon as the model's routing is known, so that an error says it too.
#[allow(clippy::too_many_arguments)]
async fn dispatch(
    req: &HttpRequest,
    body: Bytes,
    wanted: &WantedModel,
    state: &AppState,
    client: &UpstreamClient,
    route: RouteClass,
    received: std::time::Instant,
    routing: &mut Option<Routing>,
) -> Result<HttpResponse, ApiError> {
    // One publication for the whole request: candidates and the catalog that labels its model.
    let table = state.published();
    let strategy = state.proxy.routing_strategy.as_str();
    let refuse = |routing: &mut Option<Routing>, error: ApiError| {
        if wanted.name().is_some() {
            let strategy = routing.as_ref().map_or(strategy, Routing::strategy);
            *routing = Some(Routing::rejected(strategy, error.code()));
        }
        error
    };
    let routed = match candidates::select(&table, &state.proxy, route, wanted) {
        Ok(routed) => routed,
        Err(error) => return Err(refuse(routing, error)),
    };
    *routing = routed.decision.as_ref().map(Routing::of);
    let session = state.sticky.session(req, &body, wanted.name());
    let Admission {
        first,
        admitted,
        tiers,
        mut order,
    } = match admit(state, route, wanted, routed.tiers, session.pinned()).await {
        Ok(admission) => admission,
        Err(error) => return Err(refuse(routing, error)),
    };

    let request_id = request_id(req);
    let mut meta = Meta {
        model: wanted.name(),
        request_id: &request_id,
        received,
        routing: routing.as_ref(),
        sticky: None,
    };
    let outgoing = Outgoing::new(req, body, &state.proxy);
    let ledger = Ledger::new(state, table.catalog(), wanted.name());
    let mut failures: Vec<Value> = Vec::new();
    let mut kept: Option<Kept> = None;
    let mut last_native: Option<Arc<str>> = None;
    // The first candidate was admitted already; failover never waits (SPEC 10.3).
    let mut next = Some((first, admitted));
    loop {
        let (candidate, in_flight) = match next.take() {
            Some(admitted) => admitted,
            None => match order.admit_next(&tiers) {
                Some((candidate, f)) => (candidate, state.queue.admitted(f)),
                None => break,
            },
        };
        last_native = candidate.native().map(Arc::from);
        let (attempt, origin) = outgoing.send(client, &candidate, &state.proxy).await;
        let last = !order.has_next(&tiers);
        match ledger.settle(&candidate, attempt, &origin, last) {
            Next::Respond(response, head) => {
                debug!(method = %req.method(), path = req.uri().path(), endpoint = %origin.endpoint, status = response.status().as_u16(), latency = %display::duration(origin.elapsed), attempts = failures.len() + 1, "proxied");
                meta.sticky = Some(session.served(&state.sticky, &origin.endpoint));
                let idle = state.proxy.stream_idle_timeout;
                return Ok(stream::respond(
                    response,
                    head,
                    &meta,
                    origin,
                    in_flight,
                    idle,
                    &candidate.settings.headers,
                ));
            }
            Next::FailOver { error, answer } => {
                failures.push(json!({ "endpoint": origin.endpoint.as_ref(), "error": error }));
                if let Some(answer) = answer {
                    let configured = &candidate.settings.headers;
                    kept = Some(stream::keep(answer, origin, configured).await);
                }
            }
            Next::GiveUp(error) => return Err(error),
        }
    }

    if failures.is_empty() {
        // Every candidate was a recovering endpoint that took another test request meanwhile.
        return Err(refuse(routing, no_healthy_endpoints(route)));
    }
    ledger.exhausted(last_native.as_deref());
    match kept {
        Some(kept) => {
            meta.sticky = Some(session.mark(kept.endpoint()));
            Ok(kept.respond(&meta))
        }
        None => Err(ApiError::AllEndpointsFailed { attempts: failures }),
    }
}

/// A request's first candidate, admitted, and the order of the rest (for failover).
struct Admission<'m> {
    first: Candidate,
    admitted: Admitted,
    /// The tiers `order` was made for.
    tiers: Vec<Vec<Candidate>>,
    order: candidates::Order<'m>,
}

/// The candidate to try first, admitted: at once if one is under its limit (the sticky
/// session's `pinned` endpoint first), else after a wait in the queue (SPEC 10.3).
async fn admit<'m>(
    state: &AppState,
    route: RouteClass,
    wanted: &'m WantedModel,
    tiers: Vec<Vec<Candidate>>,
    pinned: Option<&str>,
) -> Result<Admission<'m>, ApiError> {
    let model = wanted.name();
    let mut order = candidates::Order::new(&tiers, &state.proxy, model, Instant::now(), pinned);
    if let Some((first, f)) = order.admit_next(&tiers) {
        return Ok(Admission {
            first,
            admitted: state.queue.admitted(f),
            tiers,
            order,
        });
    }
    if !tiers.iter().flatten().any(Candidate::may_queue) {
        // Every candidate is a recovering endpoint already busy with its one test request.
        return Err(no_healthy_endpoints(route));
    }
    let (first, admitted) = state.queue.wait(route, wanted, tiers).await?;
    // Failover candidates as things stand now, after the wait.
    let table = state.published();
    let tiers = candidates::select(&table, &state.proxy, route, wanted)
        .map(|routed| routed.tiers)
        .unwrap_or_default();
    let order = candidates::Order::new(&tiers, &state.proxy, model, Instant::now(), None)
        .after(&tiers, &first.settings.name);
    Ok(Admission {
        first,
        admitted,
        tiers,
        order,
    })
}

/// Refuses what must not reach a backend: path traversal and oversized headers.
fn check(req: &HttpRequest, limits: Limits) -> Result<(), ApiError> {
    if route::is_traversal(req.uri().path()) {
        return Err(ApiError::PathTraversal);
    }
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    if header_bytes as u64 > limits.max_header_size {
        return Err(ApiError::HeadersTooLarge {
            limit: limits.max_header_size,
        });
    }
    Ok(())
}

/// The whole body, buffered so that it can be replayed on failover, and the model it asks for.
async fn read(
    req: &HttpRequest,
    payload: Payload,
    limits: Limits,
) -> Result<(Bytes, Option<String>), ApiError> {
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    let announced = header(CONTENT_LENGTH).and_then(|v| v.parse().ok());
    let reading = body::read_limited(payload, announced, limits.max_body_size);
    let body = actix_rt::time::timeout(limits.read_timeout, reading)
        .await
        .map_err(|_| ApiError::RequestTimeout {
            limit: limits.read_timeout,
        })??;
    let model = body::requested_model(header(CONTENT_TYPE), &body)?;
    Ok((body, model))
}

/// The client's `X-Request-ID` if it is a sane one, else a new one.
fn request_id(req: &HttpRequest) -> String {
    let client = req.headers().get("x-request-id");
    headers::request_id(client.and_then(|v| v.to_str().ok()))
}

fn no_healthy_endpoints(route: RouteClass) -> ApiError {
    ApiError::NoHealthyEndpoints {
        route: route.to_string(),
    }
}
