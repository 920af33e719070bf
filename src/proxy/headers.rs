//! Header rewriting for forwarded requests and responses (SPEC 5.2): hop-by-hop headers and
//! those named in `Connection` are dropped both ways, `X-Forwarded-*` and `Via` are added,
//! upstream `X-Olla-*` headers are dropped, request IDs are checked or made.

use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION};

/// Headers that describe one connection, never forwarded (RFC 9110 7.6.1, plus the common
/// non-standard `proxy-connection`).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Request headers that Corral sets itself, or that would change how Corral's own client
/// talks upstream (SPEC 11: the body is buffered and framed by Corral, and Corral answers
/// `Expect: 100-continue` itself), so the client's are not copied.
const SET_BY_CORRAL: &[&str] = &[
    "host",
    "content-length",
    "expect",
    "x-forwarded-proto",
    "x-forwarded-host",
];

fn named_in_connection(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(CONNECTION)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// The client's headers that go upstream.
pub fn request_headers(headers: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
    let extra = named_in_connection(headers);
    headers
        .iter()
        .filter(|(name, _)| {
            let n = name.as_str();
            !HOP_BY_HOP.contains(&n) && !SET_BY_CORRAL.contains(&n) && !extra.iter().any(|e| e == n)
        })
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect()
}

/// The longest header value Corral passes on from a backend (SPEC 11); longer ones are
/// dropped rather than kept.
pub const MAX_HEADER_VALUE: usize = 8 * 1024;

/// The upstream's headers that go back to the client.
pub fn response_headers(headers: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
    let extra = named_in_connection(headers);
    headers
        .iter()
        .filter(|(name, value)| {
            let n = name.as_str();
            !HOP_BY_HOP.contains(&n)
                && n != "content-length"
                && !n.starts_with("x-olla-")
                && !extra.iter().any(|e| e == n)
                && value.len() <= MAX_HEADER_VALUE
        })
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect()
}

/// `X-Forwarded-For` with the client's address appended to what earlier proxies wrote.
pub fn forwarded_for(existing: Option<&str>, peer: Option<&str>) -> Option<String> {
    match (existing.map(str::trim).filter(|e| !e.is_empty()), peer) {
        (Some(e), Some(p)) => Some(format!("{e}, {p}")),
        (Some(e), None) => Some(e.to_string()),
        (None, Some(p)) => Some(p.to_string()),
        (None, None) => None,
    }
}

/// `Via` with this hop appended.
pub fn via(existing: Option<&str>) -> String {
    match existing.map(str::trim).filter(|e| !e.is_empty()) {
        Some(e) => format!("{e}, 1.1 corral"),
        None => "1.1 corral".to_string(),
    }
}

/// The client's `X-Request-ID` when it is a sane token, else a fresh one.
pub fn request_id(client: Option<&str>) -> String {
    match client {
        Some(id) if is_sane_id(id) => id.to_string(),
        _ => fresh_id(),
    }
}

fn is_sane_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

fn fresh_id() -> String {
    use std::hash::BuildHasher;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static SEED: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let hash = SEED.get_or_init(Default::default).hash_one(n);
    format!("{hash:016x}{n:08x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn names(v: Vec<(HeaderName, HeaderValue)>) -> Vec<String> {
        let mut n: Vec<String> = v.into_iter().map(|(k, _)| k.to_string()).collect();
        n.sort();
        n
    }

    #[test]
    fn request_drops_hop_by_hop_and_connection_named() {
        let h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("host", "corral:40114"),
            ("content-length", "10"),
            ("authorization", "Bearer a"),
            ("content-type", "application/json"),
            ("x-forwarded-for", "10.0.0.1"),
        ]);
        assert_eq!(
            names(request_headers(&h)),
            vec!["authorization", "content-type", "x-forwarded-for"]
        );
    }

    #[test]
    fn response_drops_hop_by_hop_and_upstream_olla_headers() {
        let h = map(&[
            ("transfer-encoding", "chunked"),
            ("content-type", "text/event-stream"),
            ("x-olla-endpoint", "spoofed"),
            ("content-length", "5"),
            ("x-request-id", "abc"),
        ]);
        assert_eq!(
            names(response_headers(&h)),
            vec!["content-type", "x-request-id"]
        );
    }

    #[test]
    fn forwarded_for_appends() {
        assert_eq!(
            forwarded_for(Some("10.0.0.1"), Some("127.0.0.1")).as_deref(),
            Some("10.0.0.1, 127.0.0.1")
        );
        assert_eq!(
            forwarded_for(None, Some("127.0.0.1")).as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(forwarded_for(None, None), None);
        assert_eq!(via(None), "1.1 corral");
        assert_eq!(via(Some("1.1 nginx")), "1.1 nginx, 1.1 corral");
    }

    #[test]
    fn request_ids_are_kept_when_sane() {
        assert_eq!(request_id(Some("req-123_abc.9")), "req-123_abc.9");
        let made = request_id(Some("bad id with spaces"));
        assert_eq!(made.len(), 24);
        assert_ne!(request_id(None), request_id(None));
        assert_ne!(request_id(Some(&"x".repeat(129))).len(), 129);
    }
}
