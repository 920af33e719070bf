//! `server.rate_limits` (SPEC 12): Olla's request rate limits as actix-web middleware.
//!
//! Olla limits the requests it forwards and, with a bucket of its own, `/internal/health`;
//! its status, stats and model-list routes are not limited. So here: [`proxied`] wraps the
//! proxy's forwarding resources (`proxy::routes`), [`health`] wraps the app and acts on
//! `/internal/health` alone, in every spelling that could reach it. An admitted request
//! carries `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` (Unix
//! seconds) on its answer; a refused one gets 429 `rate_limited` with the same headers and
//! `Retry-After`, before any handler runs: it never reaches a backend and never counts
//! against one.
//!
//! The decision is the pure [`table::Limiter`]; the client's address comes from
//! [`client_ip::TrustedProxies`]. One lock over the table is shared by every worker: it is
//! held for a hash-map look-up, a few float operations, and every `cleanup_interval` a
//! sweep.

mod bucket;
pub mod client_ip;
pub mod table;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;
use tracing::{debug, warn};

use crate::config::ServerConfig;
use crate::errors::ApiError;
use crate::proxy::route;
use client_ip::TrustedProxies;
use table::{Decision, Kind, Limiter};

/// The most clients tracked one by one. An entry is about a hundred bytes, so this bounds
/// the table near 10 MB; past it, new clients share one bucket (see [`table`]).
pub const MAX_TRACKED_CLIENTS: usize = 100_000;

/// The limiter and whose forwarding headers to believe; shared by every worker.
#[derive(Debug)]
pub struct RateLimiter {
    /// `None` when every limit is off: no lock taken, no headers written.
    limiter: Option<Mutex<Limiter>>,
    proxies: TrustedProxies,
}

impl RateLimiter {
    pub fn new(server: &ServerConfig) -> Self {
        let limits = server.rate_limits;
        RateLimiter {
            limiter: (!limits.is_off())
                .then(|| Mutex::new(Limiter::new(limits, MAX_TRACKED_CLIENTS, Instant::now()))),
            proxies: TrustedProxies::new(
                server.trust_proxy_headers,
                server.trusted_proxy_cidrs.clone(),
            ),
        }
    }

    /// Whether any limit is on.
    pub fn is_active(&self) -> bool {
        self.limiter.is_some()
    }

    /// The client's address: the peer's, or the one a trusted proxy forwarded.
    pub fn client(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> IpAddr {
        let peer = peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let forwarded: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .collect();
        let real_ip = headers.get("x-real-ip").and_then(|v| v.to_str().ok());
        self.proxies.client(peer, &forwarded, real_ip)
    }

    fn check(&self, client: IpAddr, kind: Kind) -> Option<Decision> {
        let limiter = self.limiter.as_ref()?;
        let mut limiter = limiter.lock().unwrap_or_else(|e| e.into_inner());
        let decision = limiter.check(client, kind, Instant::now())?;
        if decision.table_filled {
            warn!(
                tracked = limiter.tracked(),
                "rate limiter: too many clients to track one by one; new clients share one bucket until quiet ones are forgotten"
            );
        }
        Some(decision)
    }
}

/// Middleware for the proxy's forwarding routes: the client's bucket and the global one.
pub async fn proxied(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    limit(req, next, Kind::Proxied).await
}

/// Middleware for the whole app that limits `/internal/health` with its own bucket and lets
/// everything else by.
pub async fn health(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let active = req
        .app_data::<web::Data<RateLimiter>>()
        .is_some_and(|limiter| limiter.is_active());
    if active && is_health(req.path()) {
        limit(req, next, Kind::Health).await
    } else {
        next.call(req).await
    }
}

/// `/internal/health` in any spelling the router could take for it (SPEC 11).
fn is_health(path: &str) -> bool {
    route::normalise(path).eq_ignore_ascii_case("/internal/health")
}

async fn limit<B: MessageBody>(
    req: ServiceRequest,
    next: Next<B>,
    kind: Kind,
) -> Result<ServiceResponse<B>, actix_web::Error> {
    let decision = req
        .app_data::<web::Data<RateLimiter>>()
        .and_then(|limiter| {
            let client = limiter.client(req.peer_addr().map(|a| a.ip()), req.headers());
            let decision = limiter.check(client, kind)?;
            if !decision.admitted {
                debug!(%client, path = req.path(), limit = decision.limit, "rate limited");
            }
            Some(decision)
        });
    let Some(decision) = decision else {
        return next.call(req).await;
    };
    let headers = Headers::of(&decision, SystemTime::now());
    if let Some(wait) = decision.retry_after {
        return Err(ApiError::RateLimited {
            limit: headers.limit,
            reset: headers.reset,
            retry_after: whole_seconds(wait),
        }
        .into());
    }
    let mut res = next.call(req).await?;
    headers.write(res.headers_mut());
    Ok(res)
}

/// The `X-RateLimit-*` values of one decision, in Olla's format.
struct Headers {
    limit: u32,
    remaining: u32,
    /// Unix seconds, rounded up: the first second at which the minute is surely over.
    reset: u64,
}

impl Headers {
    fn of(d: &Decision, now: SystemTime) -> Self {
        let reset_at = (now + d.reset_in)
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Headers {
            limit: d.limit,
            remaining: d.remaining,
            reset: whole_seconds(reset_at),
        }
    }

    fn write(&self, headers: &mut HeaderMap) {
        for (name, value) in [
            ("x-ratelimit-limit", u64::from(self.limit)),
            ("x-ratelimit-remaining", u64::from(self.remaining)),
            ("x-ratelimit-reset", self.reset),
        ] {
            headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
        }
    }
}

/// Seconds, rounded up, and at least 1: `Retry-After: 0` would invite an immediate retry
/// that is refused again.
fn whole_seconds(d: Duration) -> u64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    s.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(whole_seconds(Duration::ZERO), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_secs(3)), 3);
        assert_eq!(whole_seconds(Duration::from_millis(3001)), 4);
    }

    #[test]
    fn headers_carry_ollas_names_and_unix_seconds() {
        let d = Decision {
            admitted: true,
            limit: 100,
            remaining: 42,
            reset_in: Duration::from_millis(59_500),
            retry_after: None,
            table_filled: false,
        };
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut map = HeaderMap::new();
        Headers::of(&d, now).write(&mut map);
        let get = |n: &str| map.get(n).unwrap().to_str().unwrap().to_string();
        assert_eq!(get("x-ratelimit-limit"), "100");
        assert_eq!(get("x-ratelimit-remaining"), "42");
        assert_eq!(get("x-ratelimit-reset"), "1700000060");
    }

    #[test]
    fn every_spelling_of_the_health_path_is_limited_as_health() {
        for p in [
            "/internal/health",
            "/internal/health/",
            "//internal//health",
            "/%69nternal/health",
            "/INTERNAL/Health",
        ] {
            assert!(is_health(p), "{p}");
        }
        for p in ["/internal/healthz", "/internal/status", "/v1/health", "/"] {
            assert!(!is_health(p), "{p}");
        }
    }
}
