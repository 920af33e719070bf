//! One upstream attempt (SPEC 5.2): the client's request rebuilt for one candidate — its
//! headers filtered, `X-Forwarded-*` and `Via` added, the endpoint's own headers set — sent
//! with the response-header deadline, and the result sorted into an [`Attempt`].
//!
//! `forward` calls it once per candidate and hands the [`Attempt`] to `settle`: nothing here
//! reports, counts or records, so an attempt can be read without the bookkeeping around it.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::web::Bytes;
use actix_web::HttpRequest;
use awc::error::SendRequestError;
use awc::ClientResponse;
use corral_actors::outcome::{Blame, FailureReason};
use corral_actors::transport::{blame_of, classify_send_error};
use corral_actors::Candidate;

use super::{headers, route};
use crate::config::ProxyConfig;

/// One per HTTP worker (`awc::Client` is `!Send`): its own connection pool to the backends.
pub struct UpstreamClient(pub awc::Client);

impl UpstreamClient {
    pub fn new(proxy: &ProxyConfig) -> Self {
        let connector = awc::Connector::new()
            .timeout(proxy.connect_timeout)
            .limit(0)
            .conn_keep_alive(Duration::from_secs(60));
        UpstreamClient(
            awc::Client::builder()
                .connector(connector)
                // Deadlines are Corral's own: response headers, then per-chunk idleness.
                .disable_timeout()
                .disable_redirects()
                .no_default_headers()
                .finish(),
        )
    }
}

/// How one attempt ended, before anyone decides what that means.
pub enum Attempt {
    /// Response headers with a status outside `retry_on_status`.
    Answered(ClientResponse),
    /// Response headers with a status in `retry_on_status`.
    RetryableStatus(ClientResponse, u16),
    /// The backend failed before any byte of a response head: refused, reset, EOF, a
    /// malformed head, connect timeout, unreachable. A connection failure (SPEC 4.2, 9.5):
    /// the request is replayed elsewhere.
    ConnectFailed(FailureReason),
    /// The request could not be sent as the client made it (or Corral failed): nothing
    /// about the backend, so nobody is told and nothing is retried.
    Unsendable { blame: Blame, reason: FailureReason },
    /// No response headers within `response_header_timeout`.
    HeaderTimeout,
}

/// Who answered and how fast: what the `X-Olla-*` headers and the statistics need.
#[derive(Clone)]
pub struct Origin {
    pub endpoint: Arc<str>,
    pub backend_type: &'static str,
    /// When the attempt began: the endpoint's machine ignores outcomes older than its last
    /// recovery.
    pub started: actix_rt::time::Instant,
    /// From sending the request to its response headers.
    pub elapsed: Duration,
}

/// The client's request as every attempt sends it: built once, replayed per candidate.
pub struct Outgoing<'a> {
    req: &'a HttpRequest,
    path: &'a str,
    forwarded: Forwarded,
    body: Bytes,
}

impl<'a> Outgoing<'a> {
    pub fn new(req: &'a HttpRequest, body: Bytes) -> Self {
        Outgoing {
            req,
            path: route::upstream_path(req.uri().path()),
            forwarded: Forwarded::of(req),
            body,
        }
    }

    /// Sends the request to `candidate` and waits for its response headers.
    pub async fn send(
        &self,
        client: &UpstreamClient,
        candidate: &Candidate,
        proxy: &ProxyConfig,
    ) -> (Attempt, Origin) {
        let upstream = self.request(client, candidate);
        let started = actix_rt::time::Instant::now();
        let sent = actix_rt::time::timeout(
            proxy.response_header_timeout,
            upstream.send_body(self.body.clone()),
        )
        .await;
        let elapsed = started.elapsed();
        let origin = Origin {
            endpoint: candidate.settings.name.clone(),
            backend_type: candidate.settings.kind.as_str(),
            started,
            elapsed,
        };
        (Attempt::of(sent.ok(), &proxy.retry_on_status), origin)
    }

    fn request(&self, client: &UpstreamClient, candidate: &Candidate) -> awc::ClientRequest {
        let url = match self.req.uri().query() {
            Some(q) => format!("{}{}?{}", candidate.settings.url, self.path, q),
            None => format!("{}{}", candidate.settings.url, self.path),
        };
        let mut upstream = client.0.request(self.req.method().clone(), &url);
        for (name, value) in headers::request_headers(self.req.headers()) {
            upstream = upstream.append_header((name, value));
        }
        self.forwarded.apply(&mut upstream);
        for (name, value) in &candidate.settings.headers {
            upstream = upstream.insert_header((name.as_str(), value.as_str()));
        }
        upstream
    }
}

impl Attempt {
    /// `sent` is `None` when the response-header deadline passed first.
    fn of(
        sent: Option<Result<ClientResponse, SendRequestError>>,
        retry_on_status: &[u16],
    ) -> Attempt {
        match sent {
            None => Attempt::HeaderTimeout,
            Some(Err(err)) => {
                let reason = classify_send_error(&err);
                match blame_of(&err) {
                    Blame::Backend => Attempt::ConnectFailed(reason),
                    blame => Attempt::Unsendable { blame, reason },
                }
            }
            Some(Ok(response)) => {
                let status = response.status().as_u16();
                if retry_on_status.contains(&status) {
                    Attempt::RetryableStatus(response, status)
                } else {
                    Attempt::Answered(response)
                }
            }
        }
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
