//! The client's response, built from an upstream one (SPEC 5.2): the upstream's headers less
//! hop-by-hop and `X-Olla-*`, Corral's own `X-Olla-*` headers (the routing and sticky-session
//! ones of SPEC 12 included), and the body passed through chunk by chunk as the upstream
//! produces it, ended when it idles too long.
//!
//! `forward` calls [`respond`] with the response it settled on, or keeps a `retry_on_status`
//! answer with [`keep`] while it tries the next candidate, to send if nothing does better.

use std::time::Duration;

use actix_web::body::{BodyStream, SizedStream};
use actix_web::http::header::{HeaderName, HeaderValue, CONTENT_LENGTH};
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{HttpResponse, HttpResponseBuilder};
use awc::ClientResponse;
use corral_actors::select::{Action, Decision};
use futures_util::StreamExt;

use super::attempt::Origin;
use super::headers;
use super::queue::Admitted;
use super::relay::{FirstChunk, Relay};
use super::sticky::Mark;

/// Largest error body kept from a failed attempt, to return if no later attempt does better.
const KEPT_BODY_LIMIT: usize = 1024 * 1024;

/// How long a kept answer's body may take to arrive; past that it is kept empty.
const KEPT_BODY_TIMEOUT: Duration = Duration::from_secs(5);

/// The request's part of the `X-Olla-*` headers; [`Origin`] has the attempt's part.
pub struct Meta<'a> {
    pub model: Option<&'a str>,
    pub request_id: &'a str,
    /// When Corral received the request.
    pub received: std::time::Instant,
    /// How the model was routed; `None` when the request names no model.
    pub routing: Option<&'a Routing>,
    /// The sticky session's headers for the endpoint that answered.
    pub sticky: Option<Mark>,
}

/// The `X-Olla-Routing-*` headers of one request (SPEC 12): Olla's strategy, decision and
/// reason. Every value is ASCII.
#[derive(Debug, Clone)]
pub struct Routing {
    strategy: &'static str,
    decision: &'static str,
    reason: String,
}

impl Routing {
    pub fn of(decision: &Decision) -> Self {
        Routing {
            strategy: decision.strategy.as_str(),
            decision: decision.action.as_str(),
            reason: decision.reason.to_string(),
        }
    }

    /// The request was not forwarded: `reason` is the error's code (`model_not_found`,
    /// `queue_full`, …), and the strategy the one that was at play.
    pub fn rejected(strategy: &'static str, reason: &str) -> Self {
        Routing {
            strategy,
            decision: Action::Rejected.as_str(),
            reason: reason.to_string(),
        }
    }

    pub fn strategy(&self) -> &'static str {
        self.strategy
    }

    pub fn headers(&self) -> [(&'static str, HeaderValue); 3] {
        let value = |s: &str| {
            HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
        };
        [
            (
                "x-olla-routing-strategy",
                HeaderValue::from_static(self.strategy),
            ),
            (
                "x-olla-routing-decision",
                HeaderValue::from_static(self.decision),
            ),
            ("x-olla-routing-reason", value(&self.reason)),
        ]
    }
}

impl Meta<'_> {
    fn apply(&self, origin: &Origin, b: &mut HttpResponseBuilder) {
        b.insert_header(("x-olla-endpoint", origin.endpoint.as_ref()));
        b.insert_header(("x-olla-backend-type", origin.backend_type));
        if let Some(model) = self.model {
            if let Ok(v) = HeaderValue::from_str(model) {
                b.insert_header(("x-olla-model", v));
            }
        }
        b.insert_header(("x-olla-request-id", self.request_id));
        // Olla's format and meaning (SPEC 12): whole milliseconds, truncated, from the request's
        // start to its first response byte sent; ASCII, as every header value Corral writes.
        // The head is built here only once the upstream's first body chunk is in hand (SPEC
        // 9.2), and it leaves with that chunk: this moment is the first byte's.
        let ms = self.received.elapsed().as_millis();
        b.insert_header(("x-olla-response-time", format!("{ms}ms")));
        if let Some(routing) = self.routing {
            for header in routing.headers() {
                b.insert_header(header);
            }
        }
        if let Some(sticky) = &self.sticky {
            sticky.apply(b);
        }
    }
}

/// Streams the upstream body through as it arrives ([`Relay`]). `guard` (the endpoint's
/// in-flight count) lives as long as the upstream part of the stream; a client that goes
/// away, or stops reading, ends it and with it the upstream connection. `configured` is the
/// endpoint's own header list, never passed back.
pub fn respond(
    response: ClientResponse,
    first: FirstChunk,
    meta: &Meta<'_>,
    origin: Origin,
    guard: Admitted,
    idle: Duration,
    configured: &[(String, String)],
) -> HttpResponse {
    let mut builder = HttpResponse::build(response.status());
    for (name, value) in headers::response_headers(response.headers(), configured) {
        builder.append_header((name, value));
    }
    meta.apply(&origin, &mut builder);
    let length = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let chunks = Relay::new(
        response,
        length.is_none(),
        first,
        guard,
        origin.endpoint,
        idle,
    );
    match length {
        Some(len) => builder.body(SizedStream::new(len, chunks.boxed_local())),
        None => builder.body(BodyStream::new(chunks.boxed_local())),
    }
}

/// An upstream answer in `retry_on_status`, kept in case every later attempt fails. Its body
/// is read before the next attempt starts: it is small (an error page) or cut short.
pub struct Kept {
    status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
    origin: Origin,
}

pub async fn keep(
    mut response: ClientResponse,
    origin: Origin,
    configured: &[(String, String)],
) -> Kept {
    let headers = headers::response_headers(response.headers(), configured);
    let body = actix_rt::time::timeout(KEPT_BODY_TIMEOUT, response.body().limit(KEPT_BODY_LIMIT))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    Kept {
        status: response.status(),
        headers,
        body,
        origin,
    }
}

impl Kept {
    /// The endpoint that gave this answer.
    pub fn endpoint(&self) -> &std::sync::Arc<str> {
        &self.origin.endpoint
    }

    pub fn respond(self, meta: &Meta<'_>) -> HttpResponse {
        let mut builder = HttpResponse::build(self.status);
        for (n, v) in self.headers {
            builder.append_header((n, v));
        }
        meta.apply(&self.origin, &mut builder);
        builder.body(self.body)
    }
}
