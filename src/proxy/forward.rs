//! Forwarding one request (SPEC 5.2–5.4), top to bottom: check the input, buffer the body
//! and read its model, choose and order the candidates, then for each one `attempt`,
//! `settle`, and either `stream` the response through or fail over to the next.
//!
//! The proxy handler in `proxy/mod.rs` calls [`forward`]. The flow is all this file holds:
//! an attempt lives in `attempt`, its bookkeeping in `settle`, the response in `stream`.
//! Request bodies never travel through actors.

use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::web::{Bytes, Payload};
use actix_web::{HttpRequest, HttpResponse};
use corral_actors::display;
use corral_actors::select::RouteClass;
use serde_json::{json, Value};
use tracing::debug;

use std::time::Instant;

use corral_actors::Candidate;

use super::attempt::{Outgoing, UpstreamClient};
use super::queue::Admitted;
use super::settle::{Ledger, Next};
use super::stream::{self, Kept, Meta};
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
    // One publication for the whole request: candidates and the catalog that labels its model.
    let table = state.published();
    let tiers = candidates::select(&table, &state.proxy, route, model.as_deref())?;
    let (candidates, mut admitted) = admit(state, route, model.as_deref(), tiers).await?;

    let request_id = request_id(&req);
    let meta = Meta {
        model: model.as_deref(),
        request_id: &request_id,
        received,
    };
    let outgoing = Outgoing::new(&req, body, &state.proxy);
    let ledger = Ledger::new(state, table.catalog(), model.as_deref());
    let mut failures: Vec<Value> = Vec::new();
    let mut kept: Option<Kept> = None;
    let total = candidates.len();
    for (i, candidate) in candidates.into_iter().enumerate() {
        // The first candidate was admitted already; failover never waits (SPEC 10.3).
        let in_flight = match admitted.take() {
            Some(a) => a,
            None => match candidate.admit() {
                Some(f) => state.queue.admitted(f),
                None => continue,
            },
        };
        let (attempt, origin) = outgoing.send(client, &candidate, &state.proxy).await;
        match ledger.settle(&candidate, attempt, &origin, i + 1 == total) {
            Next::Respond(response, first) => {
                debug!(method = %req.method(), path = req.uri().path(), endpoint = %origin.endpoint, status = response.status().as_u16(), latency = %display::duration(origin.elapsed), attempts = failures.len() + 1, "proxied");
                let idle = state.proxy.stream_idle_timeout;
                return Ok(stream::respond(
                    response,
                    first,
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
        return Err(no_healthy_endpoints(route));
    }
    ledger.exhausted();
    match kept {
        Some(kept) => Ok(kept.respond(&meta)),
        None => Err(ApiError::AllEndpointsFailed { attempts: failures }),
    }
}

/// The candidates to try, in order, the first one admitted already: at once if one is
/// under its limit, else after a wait in the queue (SPEC 10.3).
async fn admit(
    state: &AppState,
    route: RouteClass,
    model: Option<&str>,
    tiers: Vec<Vec<Candidate>>,
) -> Result<(Vec<Candidate>, Option<Admitted>), ApiError> {
    let mut ordered = candidates::order(&tiers, &state.proxy, model, Instant::now());
    while !ordered.is_empty() {
        if let Some(f) = ordered[0].admit() {
            return Ok((ordered, Some(state.queue.admitted(f))));
        }
        // Taken by a request on another worker since the balancer looked.
        ordered.remove(0);
    }
    if !tiers.iter().flatten().any(Candidate::may_queue) {
        // Every candidate is a recovering endpoint already busy with its one test request.
        return Err(no_healthy_endpoints(route));
    }
    let (first, admitted) = state.queue.wait(route, model, tiers).await?;
    // Failover candidates as things stand now, after the wait.
    let table = state.published();
    let mut rest = candidates::select(&table, &state.proxy, route, model)
        .map(|tiers| candidates::order(&tiers, &state.proxy, model, Instant::now()))
        .unwrap_or_default();
    rest.retain(|c| c.settings.name != first.settings.name);
    let mut ordered = vec![first];
    ordered.extend(rest);
    if state.proxy.max_attempts > 0 {
        ordered.truncate(state.proxy.max_attempts as usize);
    }
    Ok((ordered, Some(admitted)))
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
