//! Sticky sessions (SPEC 12, Olla's `proxy.sticky_sessions`): a conversation's next turn goes
//! to the endpoint that served its last one while that endpoint can take it, so the prompt
//! cache the backend kept is used again.
//!
//! A request's session key comes from the first of `key_sources` that gives one (Olla's
//! sources: `X-Olla-Session-ID`, the start of `messages`, `Authorization`, the client's
//! address), scoped to the model it names and hashed, so no header value is kept. The table
//! itself (bounds, idle expiry, least-recently-used eviction) is the pure
//! [`SessionTable`]; this file adds the lock, the keys, the headers and the statistics.
//!
//! `forward` asks for the [`Session`] of each request, puts its pinned endpoint first among
//! the candidates (`candidates::Order`), and tells the session where the request was served,
//! which answers the `X-Olla-Sticky-*` headers. The routing-table feed in `app` calls
//! [`Sticky::table_changed`], so pins to an endpoint that left rotation are dropped at once.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use actix_web::http::header::{HeaderValue, AUTHORIZATION};
use actix_web::{HttpRequest, HttpResponseBuilder};
use corral_actors::routing::RoutingTable;
use corral_actors::sessions::SessionTable;
use serde_json::{json, Value};

use super::body;
use crate::config::{KeySource, StickyConfig};

/// The client's own name for its conversation (Olla's header).
pub const SESSION_ID: &str = "x-olla-session-id";

/// The session table and how keys are made; one per Corral, shared by every worker.
pub struct Sticky {
    config: StickyConfig,
    table: Mutex<SessionTable<Arc<str>>>,
    /// The routable endpoints the table was last purged against, so that a new routing table
    /// that changes nothing routable costs no walk over the sessions.
    routable: Mutex<Vec<Arc<str>>>,
}

/// What a request's lookup found.
pub struct Session {
    /// `None`: the feature is off, or no key source gave a key.
    key: Option<(u64, KeySource)>,
    /// Where the session was served last, while it is alive.
    pinned: Option<Arc<str>>,
    /// The client's `X-Olla-Session-ID` when it was the key: echoed back, as Olla does.
    echo: Option<HeaderValue>,
}

/// What `X-Olla-Sticky-Session` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The session's endpoint served it.
    Hit,
    /// A new session, pinned where it was served.
    Miss,
    /// A known session served elsewhere (its endpoint left rotation, was at its
    /// `max_concurrency`, or failed), and pinned there now.
    Repin,
    /// No session: the feature is off or no key source gave a key.
    Disabled,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Miss => "miss",
            Outcome::Repin => "repin",
            Outcome::Disabled => "disabled",
        }
    }
}

/// The `X-Olla-Sticky-*` headers of one answer.
#[derive(Debug, Clone)]
pub struct Mark {
    outcome: Outcome,
    source: Option<KeySource>,
    echo: Option<HeaderValue>,
}

impl Mark {
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    pub fn apply(&self, b: &mut HttpResponseBuilder) {
        b.insert_header(("x-olla-sticky-session", self.outcome.as_str()));
        if let Some(source) = self.source {
            b.insert_header(("x-olla-sticky-key-source", source.as_str()));
        }
        if let Some(id) = &self.echo {
            b.insert_header((SESSION_ID, id.clone()));
        }
    }
}

impl Sticky {
    pub fn new(config: &StickyConfig) -> Self {
        Sticky {
            table: Mutex::new(SessionTable::new(config.max_sessions, config.idle_ttl)),
            config: config.clone(),
            routable: Mutex::new(Vec::new()),
        }
    }

    fn table(&self) -> MutexGuard<'_, SessionTable<Arc<str>>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The session of a request for `model` with this `body`, and the endpoint it is pinned
    /// to (renewing it).
    pub fn session(&self, req: &HttpRequest, body: &[u8], model: Option<&str>) -> Session {
        let off = Session {
            key: None,
            pinned: None,
            echo: None,
        };
        if !self.config.enabled {
            return off;
        }
        let Some((key, source)) = self.key(req, body, model.unwrap_or("")) else {
            return off;
        };
        let pinned = self.table().lookup(key, Instant::now());
        let echo = (source == KeySource::SessionHeader)
            .then(|| req.headers().get(SESSION_ID).cloned())
            .flatten();
        Session {
            key: Some((key, source)),
            pinned,
            echo,
        }
    }

    /// The first key source that gives a key: a hash of the source, its value and the model.
    fn key(&self, req: &HttpRequest, body: &[u8], model: &str) -> Option<(u64, KeySource)> {
        let header = |name| {
            req.headers()
                .get(name)
                .map(HeaderValue::as_bytes)
                .filter(|v| !v.is_empty())
        };
        self.config.key_sources.iter().find_map(|&source| {
            let mut h = DefaultHasher::new();
            source.as_str().hash(&mut h);
            match source {
                KeySource::SessionHeader => header(SESSION_ID)?.hash(&mut h),
                KeySource::PrefixHash => {
                    body::conversation_prefix(body, self.config.prefix_hash_bytes)?.hash(&mut h)
                }
                KeySource::AuthHeader => header(AUTHORIZATION.as_str())?.hash(&mut h),
                KeySource::Ip => req.peer_addr()?.ip().hash(&mut h),
            }
            model.hash(&mut h);
            Some((h.finish(), source))
        })
    }

    /// Drops the sessions pinned to endpoints that are not routable in `table`.
    pub fn table_changed(&self, table: &RoutingTable) {
        if !self.config.enabled {
            return;
        }
        let mut routable: Vec<Arc<str>> = table
            .entries()
            .iter()
            .filter(|e| e.candidate.status.is_routable())
            .map(|e| e.candidate.settings.name.clone())
            .collect();
        routable.sort();
        {
            let mut last = self.routable.lock().unwrap_or_else(|e| e.into_inner());
            if *last == routable {
                return;
            }
            *last = routable.clone();
        }
        let keep: HashSet<&str> = routable.iter().map(|n| n.as_ref()).collect();
        self.table()
            .retain_endpoints(|endpoint| keep.contains(endpoint.as_ref()));
    }

    /// `/internal/stats/sticky`, in Olla's shape.
    pub fn stats(&self) -> Value {
        if !self.config.enabled {
            return json!({ "enabled": false });
        }
        let table = self.table();
        let counts = table.counts();
        json!({
            "enabled": true,
            "active_sessions": table.len(),
            "insertions": counts.insertions,
            "hits": counts.hits,
            "misses": counts.misses,
            "evictions": counts.evictions,
            "max_sessions": self.config.max_sessions,
            "idle_ttl_seconds": self.config.idle_ttl.map_or(0, |d| d.as_secs()),
        })
    }
}

impl Session {
    /// The endpoint to try first.
    pub fn pinned(&self) -> Option<&str> {
        self.pinned.as_deref()
    }

    /// `endpoint` answered this request: the session is pinned there now, and the answer's
    /// headers say how that went.
    pub fn served(&self, sticky: &Sticky, endpoint: &Arc<str>) -> Mark {
        if let Some((key, _)) = self.key {
            sticky.table().pin(key, endpoint.clone(), Instant::now());
        }
        self.mark(endpoint)
    }

    /// The headers of an answer from `endpoint` that does not move the session: the kept
    /// error answer of a request whose every attempt failed.
    pub fn mark(&self, endpoint: &Arc<str>) -> Mark {
        let Some((_, source)) = self.key else {
            return Mark {
                outcome: Outcome::Disabled,
                source: None,
                echo: None,
            };
        };
        let outcome = match &self.pinned {
            Some(p) if p == endpoint => Outcome::Hit,
            Some(_) => Outcome::Repin,
            None => Outcome::Miss,
        };
        Mark {
            outcome,
            source: Some(source),
            echo: self.echo.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn enabled(sources: &[KeySource]) -> Sticky {
        Sticky::new(&StickyConfig {
            enabled: true,
            key_sources: sources.to_vec(),
            ..StickyConfig::default()
        })
    }

    const CHAT: &[u8] = br#"{"model":"m","messages":[{"role":"system","content":"be brief"}]}"#;

    #[test]
    fn off_means_no_session_and_a_disabled_mark() {
        let sticky = Sticky::new(&StickyConfig::default());
        let req = TestRequest::default()
            .insert_header((SESSION_ID, "s1"))
            .to_http_request();
        let session = sticky.session(&req, CHAT, Some("m"));
        assert_eq!(session.pinned(), None);
        let mark = session.served(&sticky, &Arc::from("a"));
        assert_eq!(mark.outcome(), Outcome::Disabled);
        assert_eq!(mark.source, None);
        assert_eq!(sticky.stats(), json!({ "enabled": false }));
    }

    #[test]
    fn a_session_misses_then_hits_then_moves() {
        let sticky = enabled(&[KeySource::SessionHeader]);
        let req = TestRequest::default()
            .insert_header((SESSION_ID, "s1"))
            .to_http_request();
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let first = sticky.session(&req, CHAT, Some("m"));
        let mark = first.served(&sticky, &a);
        assert_eq!(mark.outcome(), Outcome::Miss);
        assert_eq!(mark.source, Some(KeySource::SessionHeader));
        assert_eq!(mark.echo.as_ref().map(|v| v.as_bytes()), Some(&b"s1"[..]));
        let second = sticky.session(&req, CHAT, Some("m"));
        assert_eq!(second.pinned(), Some("a"));
        assert_eq!(second.served(&sticky, &a).outcome(), Outcome::Hit);
        let third = sticky.session(&req, CHAT, Some("m"));
        assert_eq!(third.served(&sticky, &b).outcome(), Outcome::Repin);
        assert_eq!(sticky.session(&req, CHAT, Some("m")).pinned(), Some("b"));
        // Another model is another session.
        assert_eq!(sticky.session(&req, CHAT, Some("n")).pinned(), None);
        let stats = sticky.stats();
        assert_eq!(stats["enabled"], true);
        assert_eq!(stats["active_sessions"], 1);
        assert_eq!(stats["insertions"], 1);
        assert_eq!(stats["hits"], 3);
        assert_eq!(stats["misses"], 2);
        assert_eq!(stats["max_sessions"], 10_000);
        assert_eq!(stats["idle_ttl_seconds"], 600);
    }

    #[test]
    fn the_first_source_that_gives_a_key_wins() {
        let sticky = enabled(&[KeySource::SessionHeader, KeySource::PrefixHash]);
        let plain = TestRequest::default().to_http_request();
        let session = sticky.session(&plain, CHAT, Some("m"));
        let mark = session.served(&sticky, &Arc::from("a"));
        assert_eq!(mark.source, Some(KeySource::PrefixHash));
        assert_eq!(mark.echo, None, "only a session header is echoed");
        // The same conversation start is the same session, whoever sends it.
        assert_eq!(sticky.session(&plain, CHAT, Some("m")).pinned(), Some("a"));
        let other = br#"{"model":"m","messages":[{"role":"system","content":"be long"}]}"#;
        assert_eq!(sticky.session(&plain, other, Some("m")).pinned(), None);
        // No source gives a key: no session.
        let only_auth = enabled(&[KeySource::AuthHeader]);
        let session = only_auth.session(&plain, CHAT, Some("m"));
        assert_eq!(
            session.served(&only_auth, &Arc::from("a")).outcome(),
            Outcome::Disabled
        );
    }
}
