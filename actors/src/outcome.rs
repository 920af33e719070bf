//! What went wrong, and who caused it (SPEC 4.1, 4.2, 11): the typed failure reasons of checks
//! and proxied requests, the outcome of a proxied request as the endpoint actor hears it, and
//! the sorting of HTTP statuses and I/O errors into reasons.
//!
//! Pure: the shells (`probe`, the proxy) map their transport's errors into these types first
//! (awc's errors through [`transport`](crate::transport)); the endpoint machine decides what a
//! reason means for health. Reasons stay typed until the JSON and log edge, where `Display`
//! writes them as SPEC spells them (`connection refused`, `http 401 (check credentials)`).

use std::fmt;
use std::io;
use std::time::Duration;

use crate::profiles::ModelInfo;

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

/// Who caused a failure (SPEC 11). Only the backend's failures are news to its endpoint: a
/// request the upstream client refuses to send, or a fault of Corral's own, says nothing about
/// the backend's health and must never count against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    Backend,
    Client,
    Corral,
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

/// Sorts an I/O error into a reason.
pub fn classify_io(err: &io::Error) -> FailureReason {
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

/// How one health check went.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeOutcome {
    Passed {
        latency: Duration,
    },
    /// 503 with a body that says a model is loading (SPEC 9.3): up, not failing.
    Warming {
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
    /// The check timed out while proxied body bytes from the endpoint arrived during its
    /// wait: how many requests Corral had in flight there at the deadline (SPEC 9.1). Set by
    /// the actor, which sees the traffic; the probe cannot.
    pub busy_serving: Option<u64>,
}

impl CheckReport {
    pub fn new(outcome: ProbeOutcome) -> Self {
        CheckReport {
            outcome,
            switched_to_fallback: false,
            models: None,
            busy_serving: None,
        }
    }

    /// A timeout: the one failure that busy traffic can explain.
    pub fn timed_out(&self) -> bool {
        matches!(
            self.outcome,
            ProbeOutcome::Failed {
                reason: FailureReason::Timeout,
                ..
            }
        )
    }
}

/// Whether a 503 answer's body says the server is loading a model (llama.cpp:
/// `{"error":{"code":503,"message":"Loading model",…}}`; SPEC 9.3: any 503 body containing
/// `loading`, case-insensitive).
pub fn says_loading(status: u16, body: &[u8]) -> bool {
    status == 503 && body.windows(7).any(|w| w.eq_ignore_ascii_case(b"loading"))
}

/// What became of a proxied request, as far as the endpoint is concerned (SPEC 4.2, 4.4).
/// A request abandoned by its client is no news about the backend and is never reported.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestOutcome {
    /// The upstream answered with a status outside `retry_on_status`.
    Succeeded,
    /// No connection: refused, reset before a response, connect timeout, unreachable.
    ConnectFailed(FailureReason),
    /// A status in `retry_on_status`, or no response headers in time.
    Failed(FailureReason),
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
    fn a_503_that_says_loading_is_warming() {
        let llama =
            br#"{"error":{"code":503,"message":"Loading model","type":"unavailable_error"}}"#;
        assert!(says_loading(503, llama));
        assert!(says_loading(503, b"model LOADING, try later"));
        assert!(!says_loading(503, b"overloaded"));
        assert!(!says_loading(500, llama));
    }

    #[test]
    fn io_errors_classify() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(classify_io(&refused), FailureReason::ConnectionRefused);
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(classify_io(&reset), FailureReason::ConnectionReset);
        let unreachable = io::Error::from(io::ErrorKind::NetworkUnreachable);
        assert_eq!(classify_io(&unreachable), FailureReason::Unreachable);
    }
}
