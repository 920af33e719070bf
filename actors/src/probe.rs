//! Health probes and model discovery over HTTP (SPEC 4.1, 4.5), and the classification of
//! what went wrong into the short reasons the status API and logs show.
//!
//! The endpoint actor builds a [`CheckTarget`], runs [`check`] or [`discover`] as a future and
//! feeds the result into its state machines. The deadline wraps the whole exchange (connect,
//! request, response, body) and is the endpoint's `check_timeout` exactly: the shared client
//! is built without timeouts of its own, so none cuts in earlier.

use std::cell::OnceCell;
use std::fmt;
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix_http::error::ParseError;
use actix_rt::time::{timeout, Instant};
use awc::error::{ConnectError, SendRequestError};
use awc::http::header::{HttpDate, RETRY_AFTER, USER_AGENT};
use awc::http::StatusCode;
use awc::{Client, Connector};

use futures_util::future::LocalBoxFuture;

use crate::profiles::{EndpointType, ModelInfo};
use crate::settings::EndpointSettings;

/// Largest body read from a health or model-list response.
const BODY_LIMIT: usize = 16 * 1024 * 1024;
/// Wait after a 429 that named no `Retry-After`.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(30);

thread_local! {
    static CLIENT: OnceCell<Client> = const { OnceCell::new() };
}

/// The probe client of this thread, shared by every endpoint actor on it: one connection pool
/// per arbiter instead of one per actor keeps thousands of endpoints cheap. `awc::Client` is
/// `!Send`, so it cannot be shared further.
pub fn thread_client() -> Client {
    CLIENT.with(|c| {
        c.get_or_init(|| {
            Client::builder()
                .connector(
                    Connector::new()
                        .limit(0)
                        // The probe's own deadline governs; this only must not cut in first.
                        .timeout(Duration::from_secs(3600))
                        .handshake_timeout(Duration::from_secs(3600)),
                )
                .disable_timeout()
                .disable_redirects()
                .finish()
        })
        .clone()
    })
}

/// Why a check (or a proxied request) failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureReason {
    ConnectionRefused,
    ConnectionReset,
    Timeout,
    /// The TCP (or TLS) connection was not established within `proxy.connect_timeout`.
    ConnectTimeout,
    Dns,
    Unreachable,
    Tls(String),
    /// A non-2xx status that says nothing more specific.
    Http(u16),
    /// 401 or 403: the backend is up but refuses our credentials.
    Credentials(u16),
    /// 429: the backend is up but asks us to slow down.
    RateLimited,
    /// `require_models` and the model list was empty or unreadable.
    NoModels(String),
    InvalidResponse(String),
    Other(String),
}

impl FailureReason {
    /// 401/403 and 429 come from a live backend refusing us: they make the endpoint unhealthy
    /// but are not evidence of a broken one, so they do not count towards the health breaker.
    pub fn counts_for_breaker(&self) -> bool {
        !matches!(
            self,
            FailureReason::Credentials(_) | FailureReason::RateLimited
        )
    }

    /// Failures where no request reached the backend: safe to retry elsewhere, and proof
    /// enough to mark the endpoint unhealthy at once (SPEC 4.2, 5.4).
    pub fn is_connect_failure(&self) -> bool {
        matches!(
            self,
            FailureReason::ConnectionRefused
                | FailureReason::ConnectionReset
                | FailureReason::ConnectTimeout
                | FailureReason::Dns
                | FailureReason::Unreachable
                | FailureReason::Tls(_)
        )
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureReason::ConnectionRefused => f.write_str("connection refused"),
            FailureReason::ConnectionReset => f.write_str("connection reset"),
            FailureReason::Timeout => f.write_str("timeout"),
            FailureReason::ConnectTimeout => f.write_str("connect timeout"),
            FailureReason::Dns => f.write_str("dns"),
            FailureReason::Unreachable => f.write_str("network unreachable"),
            FailureReason::Tls(e) => write!(f, "tls: {e}"),
            FailureReason::Http(code) => write!(f, "http {code}"),
            FailureReason::Credentials(code) => write!(f, "http {code} (check credentials)"),
            FailureReason::RateLimited => f.write_str("rate limited"),
            FailureReason::NoModels(why) => write!(f, "no models: {why}"),
            FailureReason::InvalidResponse(e) => write!(f, "invalid response: {e}"),
            FailureReason::Other(e) => f.write_str(e),
        }
    }
}

/// Sorts a status code into pass, plain failure, or one of the special failures.
pub fn classify_status(status: u16) -> Option<FailureReason> {
    match status {
        200..=299 => None,
        401 | 403 => Some(FailureReason::Credentials(status)),
        429 => Some(FailureReason::RateLimited),
        other => Some(FailureReason::Http(other)),
    }
}

/// Sorts an awc error into a reason.
pub fn classify_send_error(err: &SendRequestError) -> FailureReason {
    match err {
        SendRequestError::Connect(c) => classify_connect_error(c),
        SendRequestError::Timeout => FailureReason::Timeout,
        SendRequestError::Send(e) => classify_io(e),
        // A reset before a response head arrived is a connection failure, not a bad answer.
        SendRequestError::Response(ParseError::Io(e)) => classify_io(e),
        SendRequestError::Response(ParseError::Incomplete) => FailureReason::ConnectionReset,
        SendRequestError::Response(e) => FailureReason::InvalidResponse(e.to_string()),
        SendRequestError::Url(e) => FailureReason::Other(format!("bad url: {e}")),
        other => FailureReason::Other(other.to_string().to_lowercase()),
    }
}

fn classify_connect_error(err: &ConnectError) -> FailureReason {
    match err {
        ConnectError::Io(e) => match classify_io(e) {
            FailureReason::Timeout => FailureReason::ConnectTimeout,
            other => other,
        },
        ConnectError::Timeout => FailureReason::ConnectTimeout,
        ConnectError::Resolver(_) | ConnectError::NoRecords | ConnectError::Unresolved => {
            FailureReason::Dns
        }
        ConnectError::Disconnected => FailureReason::ConnectionReset,
        ConnectError::SslIsNotSupported => FailureReason::Tls("not supported".into()),
        other => {
            let text = other.to_string().to_lowercase();
            if text.contains("ssl") || text.contains("tls") || text.contains("certificate") {
                FailureReason::Tls(text)
            } else {
                FailureReason::Other(text)
            }
        }
    }
}

fn classify_io(err: &io::Error) -> FailureReason {
    use io::ErrorKind::*;
    match err.kind() {
        ConnectionRefused => FailureReason::ConnectionRefused,
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => {
            FailureReason::ConnectionReset
        }
        TimedOut => FailureReason::Timeout,
        NetworkUnreachable | HostUnreachable | AddrNotAvailable => FailureReason::Unreachable,
        _ => FailureReason::Other(err.to_string().to_lowercase()),
    }
}

/// The longest a `Retry-After` may keep an endpoint unprobed: beyond this a misconfigured
/// backend (`Retry-After: 86400`) would hide a recovery for a day.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The wait after a 429: the backend's `Retry-After` (30s when absent), never shorter than
/// the check interval (`Retry-After: 0` must not turn checks into a busy loop) and never
/// longer than [`MAX_RETRY_AFTER`].
pub fn rate_limit_wait(retry_after: Option<Duration>, check_interval: Duration) -> Duration {
    retry_after
        .unwrap_or(DEFAULT_RETRY_AFTER)
        .clamp(check_interval, MAX_RETRY_AFTER.max(check_interval))
}

/// Parses `Retry-After`: delta seconds or an HTTP date (a date in the past means "now").
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let date: HttpDate = value.parse().ok()?;
    let at: SystemTime = date.into();
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// How an endpoint actor reaches its backend. [`HttpProber`] in production; tests script it
/// to drive an actor through exact sequences under paused time (`actors/tests/`).
pub trait Prober {
    /// One health check (see [`check`]).
    fn check(&self, target: CheckTarget) -> LocalBoxFuture<'static, CheckReport>;
    /// One model-list fetch of `settings.model_url` (see [`discover`]).
    fn discover(
        &self,
        settings: Arc<EndpointSettings>,
    ) -> LocalBoxFuture<'static, Result<Vec<ModelInfo>, FailureReason>>;
}

/// Makes the prober of each new endpoint actor (called on the control-plane thread).
pub type ProberFactory = Arc<dyn Fn() -> Rc<dyn Prober> + Send + Sync>;

/// The real thing: HTTP over this thread's shared awc client.
pub struct HttpProber(Client);

impl HttpProber {
    pub fn factory() -> ProberFactory {
        Arc::new(|| Rc::new(HttpProber(thread_client())))
    }
}

impl Prober for HttpProber {
    fn check(&self, target: CheckTarget) -> LocalBoxFuture<'static, CheckReport> {
        let client = self.0.clone();
        Box::pin(async move { check(&client, &target).await })
    }

    fn discover(
        &self,
        s: Arc<EndpointSettings>,
    ) -> LocalBoxFuture<'static, Result<Vec<ModelInfo>, FailureReason>> {
        let client = self.0.clone();
        Box::pin(async move {
            discover(
                &client,
                &s.model_url,
                &s.headers,
                s.kind,
                s.discovery.timeout,
            )
            .await
        })
    }
}

/// Everything one check needs, cloned out of the actor so the future owns it.
#[derive(Debug, Clone)]
pub struct CheckTarget {
    pub url: String,
    /// Probed instead when `url` is a default path that answers 404/405 (SPEC 4.1).
    pub fallback_url: Option<String>,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    /// `require_models`: the model list must also name at least one model.
    pub require_models: Option<(String, EndpointType)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ProbeOutcome {
    Passed {
        latency: Duration,
    },
    Failed {
        reason: FailureReason,
        latency: Duration,
        /// From a 429's `Retry-After`.
        retry_after: Option<Duration>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    pub outcome: ProbeOutcome,
    /// The default health path was missing and `fallback_url` answered instead.
    pub switched_to_fallback: bool,
    /// The model list, when the check fetched it (`require_models`).
    pub models: Option<Vec<ModelInfo>>,
}

struct Answer {
    status: u16,
    retry_after: Option<Duration>,
    body: Vec<u8>,
}

async fn fetch(
    client: &Client,
    url: &str,
    headers: &[(String, String)],
) -> Result<Answer, FailureReason> {
    let mut req = client.get(url).insert_header((
        USER_AGENT,
        concat!("corral-health/", env!("CARGO_PKG_VERSION")),
    ));
    for (name, value) in headers {
        req = req.insert_header((name.as_str(), value.as_str()));
    }
    let mut resp = req.send().await.map_err(|e| classify_send_error(&e))?;
    let status = resp.status();
    let retry_after = if status == StatusCode::TOO_MANY_REQUESTS {
        resp.headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()))
    } else {
        None
    };
    let body = resp
        .body()
        .limit(BODY_LIMIT)
        .await
        .map_err(|e| FailureReason::InvalidResponse(e.to_string().to_lowercase()))?;
    Ok(Answer {
        status: status.as_u16(),
        retry_after,
        body: body.to_vec(),
    })
}

/// One health check: GET the health URL within `timeout` (fallback and model list included).
pub async fn check(client: &Client, target: &CheckTarget) -> CheckReport {
    let started = Instant::now();
    match timeout(target.timeout, check_inner(client, target)).await {
        Ok(mut report) => {
            set_latency(&mut report.outcome, started.elapsed());
            report
        }
        Err(_) => CheckReport {
            outcome: ProbeOutcome::Failed {
                reason: FailureReason::Timeout,
                latency: started.elapsed(),
                retry_after: None,
            },
            switched_to_fallback: false,
            models: None,
        },
    }
}

fn set_latency(outcome: &mut ProbeOutcome, elapsed: Duration) {
    match outcome {
        ProbeOutcome::Passed { latency } | ProbeOutcome::Failed { latency, .. } => {
            *latency = elapsed
        }
    }
}

fn failed(reason: FailureReason, retry_after: Option<Duration>) -> ProbeOutcome {
    ProbeOutcome::Failed {
        reason,
        latency: Duration::ZERO,
        retry_after,
    }
}

async fn check_inner(client: &Client, target: &CheckTarget) -> CheckReport {
    let mut report = CheckReport {
        outcome: ProbeOutcome::Passed {
            latency: Duration::ZERO,
        },
        switched_to_fallback: false,
        models: None,
    };
    let mut answer = match fetch(client, &target.url, &target.headers).await {
        Ok(a) => a,
        Err(reason) => {
            report.outcome = failed(reason, None);
            return report;
        }
    };
    if matches!(answer.status, 404 | 405) {
        if let Some(fallback) = &target.fallback_url {
            report.switched_to_fallback = true;
            answer = match fetch(client, fallback, &target.headers).await {
                Ok(a) => a,
                Err(reason) => {
                    report.outcome = failed(reason, None);
                    return report;
                }
            };
        }
    }
    if let Some(reason) = classify_status(answer.status) {
        report.outcome = failed(reason, answer.retry_after);
        return report;
    }
    if let Some((model_url, kind)) = &target.require_models {
        match discover_inner(client, model_url, &target.headers, *kind).await {
            Ok(models) if !models.is_empty() => report.models = Some(models),
            Ok(_) => {
                report.outcome = failed(FailureReason::NoModels("empty model list".into()), None)
            }
            Err(reason) => {
                report.outcome = failed(FailureReason::NoModels(reason.to_string()), None)
            }
        }
    }
    report
}

/// Fetches and parses the model list within `timeout`.
pub async fn discover(
    client: &Client,
    url: &str,
    headers: &[(String, String)],
    kind: EndpointType,
    limit: Duration,
) -> Result<Vec<ModelInfo>, FailureReason> {
    timeout(limit, discover_inner(client, url, headers, kind))
        .await
        .unwrap_or(Err(FailureReason::Timeout))
}

async fn discover_inner(
    client: &Client,
    url: &str,
    headers: &[(String, String)],
    kind: EndpointType,
) -> Result<Vec<ModelInfo>, FailureReason> {
    let answer = fetch(client, url, headers).await?;
    if let Some(reason) = classify_status(answer.status) {
        return Err(reason);
    }
    kind.parse_models(&answer.body)
        .map_err(|e| FailureReason::InvalidResponse(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_classify() {
        assert_eq!(classify_status(200), None);
        assert_eq!(classify_status(204), None);
        assert_eq!(classify_status(503), Some(FailureReason::Http(503)));
        assert_eq!(classify_status(404), Some(FailureReason::Http(404)));
        assert_eq!(classify_status(401), Some(FailureReason::Credentials(401)));
        assert_eq!(classify_status(403), Some(FailureReason::Credentials(403)));
        assert_eq!(classify_status(429), Some(FailureReason::RateLimited));
    }

    #[test]
    fn reasons_read_as_the_spec_writes_them() {
        assert_eq!(
            FailureReason::ConnectionRefused.to_string(),
            "connection refused"
        );
        assert_eq!(FailureReason::Http(503).to_string(), "http 503");
        assert_eq!(
            FailureReason::Credentials(401).to_string(),
            "http 401 (check credentials)"
        );
        assert_eq!(
            FailureReason::Credentials(403).to_string(),
            "http 403 (check credentials)"
        );
        assert_eq!(FailureReason::RateLimited.to_string(), "rate limited");
        assert_eq!(FailureReason::Timeout.to_string(), "timeout");
    }

    #[test]
    fn credentials_and_rate_limits_spare_the_breaker() {
        assert!(!FailureReason::Credentials(401).counts_for_breaker());
        assert!(!FailureReason::RateLimited.counts_for_breaker());
        assert!(FailureReason::Http(500).counts_for_breaker());
        assert!(FailureReason::Timeout.counts_for_breaker());
    }

    #[test]
    fn io_errors_classify() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(classify_io(&refused), FailureReason::ConnectionRefused);
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(classify_io(&reset), FailureReason::ConnectionReset);
        let unreachable = io::Error::from(io::ErrorKind::NetworkUnreachable);
        assert_eq!(classify_io(&unreachable), FailureReason::Unreachable);
        assert!(FailureReason::ConnectionRefused.is_connect_failure());
        assert!(!FailureReason::Timeout.is_connect_failure());
        assert!(FailureReason::ConnectTimeout.is_connect_failure());
    }

    #[test]
    fn connect_errors_classify() {
        assert_eq!(
            classify_send_error(&SendRequestError::Connect(ConnectError::Timeout)),
            FailureReason::ConnectTimeout
        );
        assert_eq!(
            classify_send_error(&SendRequestError::Connect(ConnectError::Unresolved)),
            FailureReason::Dns
        );
        assert_eq!(
            classify_send_error(&SendRequestError::Timeout),
            FailureReason::Timeout
        );
    }

    #[test]
    fn rate_limit_waits_are_bounded() {
        let i = Duration::from_secs(5);
        assert_eq!(rate_limit_wait(None, i), Duration::from_secs(30));
        assert_eq!(
            rate_limit_wait(Some(Duration::from_secs(7)), i),
            Duration::from_secs(7)
        );
        assert_eq!(rate_limit_wait(Some(Duration::ZERO), i), i, "no busy loop");
        assert_eq!(
            rate_limit_wait(Some(Duration::from_secs(86_400)), i),
            MAX_RETRY_AFTER
        );
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        let later = HttpDate::from(now + Duration::from_secs(90)).to_string();
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(90))
        );
        let past = HttpDate::from(now - Duration::from_secs(90)).to_string();
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
