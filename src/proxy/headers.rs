//! Header rewriting for forwarded requests and responses (SPEC 5.2, 12): hop-by-hop headers
//! and those named in `Connection` are dropped both ways, the client's credentials are not
//! forwarded (unless `proxy.forward_client_credentials`), `X-Forwarded-*` and `Via` are added,
//! upstream `X-Olla-*`, cookies, credentials and the endpoint's own configured headers are not
//! passed back, request IDs are checked or made.

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

/// A client's credentials (Olla's list, SPEC 12): by default they never reach a backend. A
/// request may fail over to any endpoint of its route, a third party's API included, and the
/// endpoint's own `headers` and `auth` are what a backend is meant to see.
/// (`proxy-authorization` is hop-by-hop, so never forwarded either way.)
const CLIENT_CREDENTIALS: &[&str] = &["authorization", "cookie", "x-api-key", "x-auth-token"];

/// Upstream response headers never passed back (SPEC 12): credentials a backend reflects
/// (Olla's list), cookies (a cookie of one backend means nothing to the next request, which
/// may go elsewhere), and authentication challenges (the client authenticates to Corral's
/// endpoints' configuration, not to a backend it cannot choose).
const NEVER_DOWNSTREAM: &[&str] = &[
    "authorization",
    "set-cookie",
    "x-api-key",
    "x-auth-token",
    "www-authenticate",
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

/// The client's headers that go upstream; its credentials only with `forward_credentials`
/// (`proxy.forward_client_credentials`). The endpoint's own headers are set over these.
pub fn request_headers(
    headers: &HeaderMap,
    forward_credentials: bool,
) -> Vec<(HeaderName, HeaderValue)> {
    let extra = named_in_connection(headers);
    headers
        .iter()
        .filter(|(name, _)| {
            let n = name.as_str();
            !HOP_BY_HOP.contains(&n)
                && !SET_BY_CORRAL.contains(&n)
                && (forward_credentials || !CLIENT_CREDENTIALS.contains(&n))
                && !extra.iter().any(|e| e == n)
        })
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect()
}

/// The longest header value Corral passes on from a backend (SPEC 11); longer ones are
/// dropped rather than kept.
pub const MAX_HEADER_VALUE: usize = 8 * 1024;

/// The upstream's headers that go back to the client. `configured` is the endpoint's own
/// header list (its `headers` and `auth`): a backend that echoes one back must not hand the
/// client a credential Corral added (Olla's reflection guard).
pub fn response_headers(
    headers: &HeaderMap,
    configured: &[(String, String)],
) -> Vec<(HeaderName, HeaderValue)> {
    let extra = named_in_connection(headers);
    headers
        .iter()
        .filter(|(name, value)| {
            let n = name.as_str();
            !HOP_BY_HOP.contains(&n)
                && !NEVER_DOWNSTREAM.contains(&n)
                && n != "content-length"
                && !n.starts_with("x-olla-")
                && !extra.iter().any(|e| e == n)
                && !configured.iter().any(|(c, _)| c.eq_ignore_ascii_case(n))
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
            names(request_headers(&h, false)),
            vec!["content-type", "x-forwarded-for"]
        );
    }

    #[test]
    fn client_credentials_go_upstream_only_when_asked() {
        let h = map(&[
            ("authorization", "Bearer client"),
            ("cookie", "session=1"),
            ("x-api-key", "k"),
            ("X-Auth-Token", "t"),
            ("proxy-authorization", "Basic x"),
            ("x-tenant", "acme"),
        ]);
        assert_eq!(names(request_headers(&h, false)), vec!["x-tenant"]);
        assert_eq!(
            names(request_headers(&h, true)),
            vec![
                "authorization",
                "cookie",
                "x-api-key",
                "x-auth-token",
                "x-tenant"
            ]
        );
    }

    #[test]
    fn response_drops_cookies_credentials_challenges_and_configured_names() {
        let h = map(&[
            ("set-cookie", "a=1"),
            ("www-authenticate", "Bearer realm=\"x\""),
            ("proxy-authenticate", "Basic"),
            ("authorization", "Bearer echoed"),
            ("x-api-key", "echoed"),
            ("x-auth-token", "echoed"),
            ("x-custom-auth", "echoed"),
            ("content-type", "application/json"),
        ]);
        let configured = [("X-Custom-Auth".to_string(), "secret".to_string())];
        assert_eq!(
            names(response_headers(&h, &configured)),
            vec!["content-type"]
        );
        assert_eq!(
            names(response_headers(&h, &[])),
            vec!["content-type", "x-custom-auth"]
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
            names(response_headers(&h, &[])),
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
