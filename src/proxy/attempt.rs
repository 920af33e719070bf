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
use corral_actors::transport::{blame_of, classify_send_error, may_be_stale_connection};
use corral_actors::Candidate;
use futures_util::StreamExt;

use super::relay::FirstChunk;
use super::{body, headers, route};
use crate::config::ProxyConfig;

/// One per HTTP worker (`awc::Client` is `!Send`): its own connection pool to the backends,
/// and a client that keeps no connection, for sending a request again on a new connection
/// when a reused one turned out closed (SPEC 9.6).
pub struct UpstreamClient {
    pooled: awc::Client,
    fresh: awc::Client,
}

impl UpstreamClient {
    pub fn new(proxy: &ProxyConfig) -> Self {
        let client = |keep_alive: Duration| {
            let connector = awc::Connector::new()
                .timeout(proxy.connect_timeout)
                .limit(0)
                .conn_keep_alive(keep_alive);
            awc::Client::builder()
                .connector(connector)
                // Deadlines are Corral's own: the first body byte, then per-chunk idleness.
                .disable_timeout()
                .disable_redirects()
                .no_default_headers()
                .finish()
        };
        UpstreamClient {
            pooled: client(Duration::from_secs(60)),
            fresh: client(Duration::ZERO),
        }
    }
}

/// How one attempt ended, before anyone decides what that means.
pub enum Attempt {
    /// A status outside `retry_on_status`, and the first chunk of its body (`None`: the body
    /// was empty). Nothing has been sent to the client yet (SPEC 9.2).
    Answered(ClientResponse, FirstChunk),
    /// Response headers with a status in `retry_on_status`.
    RetryableStatus(ClientResponse, u16),
    /// The backend failed before any byte of a response head: refused, reset, EOF, a
    /// malformed head, connect timeout, unreachable. A connection failure (SPEC 4.2, 9.5):
    /// the request is replayed elsewhere.
    ConnectFailed(FailureReason),
    /// The request could not be sent as the client made it (or Corral failed): nothing
    /// about the backend, so nobody is told and nothing is retried.
    Unsendable { blame: Blame, reason: FailureReason },
    /// No response head and first body byte within `response_header_timeout`.
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
    /// `proxy.forward_client_credentials`: the client's `Authorization`, `Cookie`, ... go too.
    forward_credentials: bool,
}

impl<'a> Outgoing<'a> {
    pub fn new(req: &'a HttpRequest, body: Bytes, proxy: &ProxyConfig) -> Self {
        Outgoing {
            req,
            path: route::upstream_path(req.uri().path()),
            forwarded: Forwarded::of(req),
            body,
            forward_credentials: proxy.forward_client_credentials,
        }
    }

    /// Sends the request to `candidate` and waits, within `response_header_timeout`, for its
    /// response head and the first byte of its body: the commit point (SPEC 9.2).
    pub async fn send(
        &self,
        client: &UpstreamClient,
        candidate: &Candidate,
        proxy: &ProxyConfig,
    ) -> (Attempt, Origin) {
        let started = actix_rt::time::Instant::now();
        // An alias's endpoint gets the request under its own name for the model (SPEC 12).
        let body = match candidate.native() {
            Some(native) => body::with_model(&self.body, native),
            None => self.body.clone(),
        };
        let exchange = self.exchange(client, candidate, body, &proxy.retry_on_status);
        let attempt = actix_rt::time::timeout(proxy.response_header_timeout, exchange)
            .await
            .unwrap_or(Attempt::HeaderTimeout);
        let origin = Origin {
            endpoint: candidate.settings.name.clone(),
            backend_type: candidate.settings.kind.as_str(),
            started,
            elapsed: started.elapsed(),
        };
        (attempt, origin)
    }

    /// The head, then the first body byte; a request that failed on a reused connection before
    /// any response byte is sent once more on a new one (SPEC 9.6).
    async fn exchange(
        &self,
        client: &UpstreamClient,
        candidate: &Candidate,
        body: Bytes,
        retry_on_status: &[u16],
    ) -> Attempt {
        let sent = match self
            .request(&client.pooled, candidate)
            .send_body(body.clone())
            .await
        {
            Err(e) if may_be_stale_connection(&e) => {
                self.request(&client.fresh, candidate).send_body(body).await
            }
            other => other,
        };
        let mut response = match sent {
            Err(err) => return Attempt::failed(&err),
            Ok(response) => response,
        };
        let status = response.status().as_u16();
        if retry_on_status.contains(&status) {
            return Attempt::RetryableStatus(response, status);
        }
        match response.next().await {
            None => Attempt::Answered(response, FirstChunk::Empty),
            Some(Ok(first)) => Attempt::Answered(response, FirstChunk::Read(first)),
            // The backend died between its head and its first byte: nothing reached the
            // client, so this is a connection failure and the request fails over (SPEC 9.2).
            Some(Err(e)) => Attempt::ConnectFailed(FailureReason::InvalidResponse(format!(
                "body broke before its first byte: {e}"
            ))),
        }
    }

    fn request(&self, client: &awc::Client, candidate: &Candidate) -> awc::ClientRequest {
        let url = match self.req.uri().query() {
            Some(q) => format!("{}{}?{}", candidate.settings.url, self.path, q),
            None => format!("{}{}", candidate.settings.url, self.path),
        };
        let mut upstream = client.request(self.req.method().clone(), &url);
        for (name, value) in headers::request_headers(self.req.headers(), self.forward_credentials)
        {
            upstream = upstream.append_header((name, value));
        }
        self.forwarded.apply(&mut upstream);
        // Last, so the endpoint's `headers` and `auth` win a clash with the client's.
        for (name, value) in &candidate.settings.headers {
            upstream = upstream.insert_header((name.as_str(), value.as_str()));
        }
        upstream
    }
}

impl Attempt {
    /// A send error, sorted by who caused it.
    fn failed(err: &SendRequestError) -> Attempt {
        let reason = classify_send_error(err);
        match blame_of(err) {
            Blame::Backend => Attempt::ConnectFailed(reason),
            blame => Attempt::Unsendable { blame, reason },
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
