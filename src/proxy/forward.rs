//! Forwarding one request (SPEC 5.2–5.4): choose candidates, try them in order with the
//! buffered body, fail over on connection failures and `retry_on_status` answers before any
//! byte reached the client, then stream the chosen response through chunk by chunk.
//!
//! Every outcome is reported to the endpoint's actor, which alone decides what it means for
//! the endpoint's health and breakers. Request bodies never travel through actors.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix_web::body::{BodyStream, SizedStream};
use actix_web::http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder};
use corral_actors::balance;
use corral_actors::counters::InFlight;
use corral_actors::display;
use corral_actors::health::Status;
use corral_actors::messages::{ReportOutcome, RequestOutcome};
use corral_actors::probe::{classify_send_error, FailureReason};
use corral_actors::select::{RouteClass, SelectError};
use corral_actors::Candidate;
use futures_util::StreamExt;
use serde_json::json;
use tracing::{debug, warn};

use super::{body, headers, UpstreamClient};
use crate::config::{LoadBalancer, RoutingStrategy};
use crate::errors::ApiError;
use crate::state::AppState;

/// Largest error body kept from a failed attempt, to return if no later attempt does better.
const KEPT_BODY_LIMIT: usize = 1024 * 1024;

/// Rotates ties between equal candidates across requests.
static TURN: AtomicUsize = AtomicUsize::new(0);

/// One failed attempt, for the 502 body.
struct Attempt {
    endpoint: String,
    error: String,
}

/// An upstream answer in `retry_on_status`, kept in case every later attempt fails.
struct KeptResponse {
    status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
    candidate: Candidate,
    elapsed: Duration,
}

pub async fn forward(
    req: HttpRequest,
    payload: actix_web::web::Payload,
    state: &AppState,
    client: &UpstreamClient,
    route: RouteClass,
) -> Result<HttpResponse, ApiError> {
    let raw_path = req.uri().path();
    if super::route::is_traversal(raw_path) {
        return Err(ApiError::PathTraversal);
    }
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    if header_bytes as u64 > state.limits.max_header_size {
        return Err(ApiError::HeadersTooLarge {
            limit: state.limits.max_header_size,
        });
    }
    let announced = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body = body::read_limited(payload, announced, state.limits.max_body_size).await?;
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let model = body::requested_model(content_type, &body)?;

    let optimistic = state.proxy.routing_strategy == RoutingStrategy::Optimistic;
    let selection = state
        .registry
        .routing()
        .select(route, model.as_deref(), optimistic)
        .map_err(|e| match e {
            SelectError::NoHealthyEndpoints { route } => ApiError::NoHealthyEndpoints {
                route: route.to_string(),
            },
            SelectError::ModelNotFound { model } => ApiError::ModelNotFound { model },
            SelectError::ModelUnavailable { model } => ApiError::ModelUnavailable { model },
        })?;
    let candidates = order(
        selection.tiers,
        state.proxy.load_balancer,
        state.proxy.max_attempts,
    );
    if candidates.is_empty() {
        // Every candidate is a recovering endpoint already busy with its one test request.
        return Err(ApiError::NoHealthyEndpoints {
            route: route.to_string(),
        });
    }

    let request_id = headers::request_id(
        req.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
    );
    let upstream_path = super::route::upstream_path(raw_path);
    let forwarded = Forwarded::of(&req);
    let mut attempts: Vec<Attempt> = Vec::new();
    let mut kept: Option<KeptResponse> = None;
    let total = candidates.len();

    for (i, candidate) in candidates.into_iter().enumerate() {
        let is_last = i + 1 == total;
        let Some(in_flight) = begin(&candidate) else {
            continue;
        };
        let url = match req.uri().query() {
            Some(q) => format!("{}{}?{}", candidate.settings.url, upstream_path, q),
            None => format!("{}{}", candidate.settings.url, upstream_path),
        };
        let mut upstream = client.0.request(req.method().clone(), &url);
        for (name, value) in headers::request_headers(req.headers()) {
            upstream = upstream.append_header((name, value));
        }
        forwarded.apply(&mut upstream);
        for (name, value) in &candidate.settings.headers {
            upstream = upstream.insert_header((name.as_str(), value.as_str()));
        }
        let started = Instant::now();
        let sent = actix_rt::time::timeout(
            state.proxy.response_header_timeout,
            upstream.send_body(body.clone()),
        )
        .await;
        let elapsed = started.elapsed();
        let name = candidate.settings.name.to_string();
        let response = match sent {
            Err(_) => {
                // Not failed over: the backend may still be working on it (SPEC 5.4).
                report(&candidate, RequestOutcome::Failed(FailureReason::Timeout));
                candidate.counters.count_failure();
                record(state, &model, elapsed, true);
                warn!(endpoint = %name, timeout = %display::duration(state.proxy.response_header_timeout), "no response headers in time");
                return Err(ApiError::UpstreamTimeout { endpoint: name });
            }
            Ok(Err(err)) => {
                let reason = classify_send_error(&err);
                candidate.counters.count_failure();
                if reason.is_connect_failure() {
                    report(&candidate, RequestOutcome::ConnectFailed(reason.clone()));
                    if !is_last {
                        candidate.counters.count_retry();
                    }
                    debug!(endpoint = %name, %reason, "connect failed; trying the next endpoint");
                    attempts.push(Attempt {
                        endpoint: name,
                        error: reason.to_string(),
                    });
                    continue;
                }
                report(&candidate, RequestOutcome::Failed(reason.clone()));
                record(state, &model, elapsed, true);
                return Err(ApiError::UpstreamError {
                    endpoint: name,
                    error: reason.to_string(),
                });
            }
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        if state.proxy.retry_on_status.contains(&status.as_u16()) {
            report(
                &candidate,
                RequestOutcome::Failed(FailureReason::Http(status.as_u16())),
            );
            candidate.counters.count_failure();
            if !is_last {
                candidate.counters.count_retry();
                attempts.push(Attempt {
                    endpoint: name,
                    error: format!("http {}", status.as_u16()),
                });
                kept = Some(keep(response, candidate.clone(), elapsed).await);
                drop(in_flight);
                continue;
            }
            record(state, &model, elapsed, true);
        } else {
            if candidate.status == Status::Recovering || candidate.counters.success_is_news() {
                report(&candidate, RequestOutcome::Succeeded);
            }
            record(state, &model, elapsed, false);
        }
        debug!(method = %req.method(), path = raw_path, endpoint = %name, status = status.as_u16(), latency = %display::duration(elapsed), attempts = attempts.len() + 1, "proxied");
        let meta = Meta {
            candidate: &candidate,
            model: model.as_deref(),
            request_id: &request_id,
            elapsed,
        };
        return Ok(stream_response(
            response,
            meta,
            in_flight,
            state.proxy.stream_idle_timeout,
        ));
    }

    if attempts.is_empty() && kept.is_none() {
        // Every candidate was a recovering endpoint that took another test request meanwhile.
        return Err(ApiError::NoHealthyEndpoints {
            route: route.to_string(),
        });
    }
    record(state, &model, Duration::ZERO, true);
    if let Some(k) = kept {
        let mut builder = HttpResponse::build(k.status);
        for (n, v) in k.headers {
            builder.append_header((n, v));
        }
        let meta = Meta {
            candidate: &k.candidate,
            model: model.as_deref(),
            request_id: &request_id,
            elapsed: k.elapsed,
        };
        meta.apply(&mut builder);
        return Ok(builder.body(k.body));
    }
    Err(ApiError::AllEndpointsFailed {
        attempts: attempts
            .into_iter()
            .map(|a| json!({ "endpoint": a.endpoint, "error": a.error }))
            .collect(),
    })
}

/// Best tier first, each tier in the balancer's order, cut to `max_attempts` (0 = all).
fn order(tiers: Vec<Vec<Candidate>>, policy: LoadBalancer, max_attempts: u32) -> Vec<Candidate> {
    let policy = match policy {
        LoadBalancer::Priority => balance::Policy::Priority,
        LoadBalancer::RoundRobin => balance::Policy::RoundRobin,
        LoadBalancer::LeastConnections => balance::Policy::LeastConnections,
    };
    let turn = TURN.fetch_add(1, Ordering::Relaxed);
    let mut ordered = Vec::new();
    for tier in tiers {
        let loads: Vec<balance::Load> = tier
            .iter()
            .map(|c| balance::Load {
                status: c.status,
                in_flight: c.counters.in_flight(),
            })
            .collect();
        let picks = balance::order(&loads, policy, turn);
        let mut tier: Vec<Option<Candidate>> = tier.into_iter().map(Some).collect();
        ordered.extend(picks.into_iter().filter_map(|i| tier[i].take()));
    }
    if max_attempts > 0 {
        ordered.truncate(max_attempts as usize);
    }
    ordered
}

/// Counts the request in flight; a `recovering` endpoint takes one at a time.
fn begin(candidate: &Candidate) -> Option<InFlight> {
    if candidate.status == Status::Recovering {
        candidate.counters.begin_exclusive()
    } else {
        Some(candidate.counters.begin())
    }
}

fn report(candidate: &Candidate, outcome: RequestOutcome) {
    // `try_send`: on the request path a full mailbox must not block; the next outcome or
    // health check will tell the actor the same story.
    let _ = candidate.addr.try_send(ReportOutcome(outcome));
}

fn record(state: &AppState, model: &Option<String>, latency: Duration, failed: bool) {
    if let Some(model) = model {
        state.model_stats.record(model, latency, failed);
    }
}

async fn keep(
    mut response: awc::ClientResponse,
    candidate: Candidate,
    elapsed: Duration,
) -> KeptResponse {
    let headers = headers::response_headers(response.headers());
    let body = actix_rt::time::timeout(
        Duration::from_secs(5),
        response.body().limit(KEPT_BODY_LIMIT),
    )
    .await
    .ok()
    .and_then(Result::ok)
    .unwrap_or_default();
    KeptResponse {
        status: response.status(),
        headers,
        body,
        candidate,
        elapsed,
    }
}

/// The `X-Forwarded-*` facts of the client connection.
struct Forwarded {
    for_: Option<String>,
    host: Option<String>,
    via: String,
}

impl Forwarded {
    fn of(req: &HttpRequest) -> Self {
        let h = req.headers();
        let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok());
        let peer = req.peer_addr().map(|a| a.ip().to_string());
        Forwarded {
            for_: headers::forwarded_for(get("x-forwarded-for"), peer.as_deref()),
            host: get("host").map(str::to_string),
            via: headers::via(get("via")),
        }
    }

    fn apply(&self, req: &mut awc::ClientRequest) {
        if let Some(f) = &self.for_ {
            req.headers_mut()
                .insert(HeaderName::from_static("x-forwarded-for"), hv(f));
        }
        req.headers_mut().insert(
            HeaderName::from_static("x-forwarded-proto"),
            HeaderValue::from_static("http"),
        );
        if let Some(host) = &self.host {
            req.headers_mut()
                .insert(HeaderName::from_static("x-forwarded-host"), hv(host));
        }
        req.headers_mut()
            .insert(HeaderName::from_static("via"), hv(&self.via));
    }
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// What the `X-Olla-*` response headers say.
struct Meta<'a> {
    candidate: &'a Candidate,
    model: Option<&'a str>,
    request_id: &'a str,
    elapsed: Duration,
}

impl Meta<'_> {
    fn apply(&self, b: &mut HttpResponseBuilder) {
        b.insert_header(("x-olla-endpoint", self.candidate.settings.name.as_ref()));
        b.insert_header(("x-olla-backend-type", self.candidate.settings.kind.as_str()));
        if let Some(model) = self.model {
            if let Ok(v) = HeaderValue::from_str(model) {
                b.insert_header(("x-olla-model", v));
            }
        }
        b.insert_header(("x-olla-request-id", self.request_id));
        b.insert_header(("x-olla-response-time", display::duration(self.elapsed)));
    }
}

/// Streams the upstream body through as it arrives. The in-flight guard lives as long as the
/// stream; a client that goes away drops the stream and with it the upstream connection.
fn stream_response(
    response: awc::ClientResponse,
    meta: Meta<'_>,
    in_flight: InFlight,
    idle: Duration,
) -> HttpResponse {
    let mut builder = HttpResponse::build(response.status());
    for (name, value) in headers::response_headers(response.headers()) {
        builder.append_header((name, value));
    }
    meta.apply(&mut builder);
    let length = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let endpoint = meta.candidate.settings.name.clone();
    let chunks = futures_util::stream::unfold(Some((response, in_flight)), move |state| {
        let endpoint = endpoint.clone();
        async move {
            let (mut response, in_flight) = state?;
            match actix_rt::time::timeout(idle, response.next()).await {
                Ok(Some(Ok(bytes))) => Some((Ok(bytes), Some((response, in_flight)))),
                Ok(None) => None,
                Ok(Some(Err(e))) => {
                    warn!(endpoint = %endpoint, error = %e, "upstream stream broke; closing the response");
                    Some((Err(std::io::Error::other(e.to_string())), None))
                }
                Err(_) => {
                    warn!(endpoint = %endpoint, idle = %display::duration(idle), "upstream stream idle too long; closing the response");
                    Some((Err(std::io::Error::other("stream idle timeout")), None))
                }
            }
        }
    });
    match length {
        Some(len) => builder.body(SizedStream::new(len, chunks.boxed_local())),
        None => builder.body(BodyStream::new(chunks.boxed_local())),
    }
}
