//! Per-endpoint request counters shared between the proxy (which counts) and the registry and
//! balancer (which read), and the in-flight limit that admits a request or not. They live in the supervisor's slot for the endpoint, so they survive
//! actor restarts; atomics, because the HTTP workers count on their own threads.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::load_board::LoadBoard;

/// The request counts of one endpoint at one moment, as the status API shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Traffic {
    pub in_flight: u64,
    pub requests: u64,
    pub failures: u64,
    pub retries: u64,
}

#[derive(Debug)]
pub struct EndpointCounters {
    /// The origin of `progress_at`.
    base: Instant,
    /// When proxied body bytes from the endpoint last arrived, in nanoseconds after `base`
    /// plus one (0: never). A check that times out while bytes flow is busy, not dead (9.1).
    progress_at: AtomicU64,
    in_flight: AtomicU64,
    requests: AtomicU64,
    failures: AtomicU64,
    retries: AtomicU64,
    /// The endpoint actor has been told of a failed request since it last heard of a
    /// success. Not a breaker count (the machine keeps that): only whether the next success
    /// is news worth a message, so that a steady stream of successes costs no messages.
    failure_reported: AtomicBool,
    /// What the backend last said of its own load (SPEC 10.1).
    pub load: LoadBoard,
}

impl Default for EndpointCounters {
    fn default() -> Self {
        EndpointCounters::new(Instant::now())
    }
}

impl EndpointCounters {
    /// Counters whose progress times are measured from `base`.
    pub fn new(base: Instant) -> Self {
        EndpointCounters {
            base,
            progress_at: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            failure_reported: AtomicBool::new(false),
            load: LoadBoard::new(base),
        }
    }

    /// Proxied body bytes from the endpoint arrived at `at`.
    pub fn note_progress(&self, at: Instant) {
        let nanos = at.saturating_duration_since(self.base).as_nanos() as u64 + 1;
        self.progress_at.fetch_max(nanos, Ordering::Relaxed);
    }

    /// Whether proxied body bytes arrived at or after `since`.
    pub fn progressed_since(&self, since: Instant) -> bool {
        let at = self.progress_at.load(Ordering::Relaxed);
        at > since.saturating_duration_since(self.base).as_nanos() as u64
    }

    pub fn traffic(&self) -> Traffic {
        Traffic {
            in_flight: self.in_flight(),
            requests: self.requests(),
            failures: self.failures(),
            retries: self.retries(),
        }
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Counts a request as started unless `limit` requests are in flight already; the
    /// returned guard ends it when dropped, so an aborted client never leaves a phantom
    /// in-flight request behind. Atomic, so two workers cannot both take the last place.
    pub fn try_begin(self: &Arc<Self>, limit: Option<u64>) -> Option<InFlight> {
        match limit {
            None => {
                self.in_flight.fetch_add(1, Ordering::AcqRel);
            }
            Some(limit) => {
                self.in_flight
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                        (n < limit).then_some(n + 1)
                    })
                    .ok()?;
            }
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        Some(InFlight(self.clone()))
    }

    pub fn count_failure(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    /// A failure was reported to the endpoint actor.
    pub fn note_failure_reported(&self) {
        self.failure_reported.store(true, Ordering::Release);
    }

    /// Whether a success is news to the endpoint actor: only after a reported failure (the
    /// proxy breaker counts *consecutive* failures, so the success must reset its count).
    pub fn success_is_news(&self) -> bool {
        self.failure_reported.swap(false, Ordering::AcqRel)
    }

    pub fn count_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }
}

/// One request in flight to an endpoint.
#[derive(Debug)]
pub struct InFlight(Arc<EndpointCounters>);

impl InFlight {
    /// Body bytes of this request's response arrived at `at`.
    pub fn note_progress(&self, at: Instant) {
        self.0.note_progress(at);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_guard_counts_and_uncounts() {
        let c = Arc::new(EndpointCounters::default());
        let a = c.try_begin(None);
        let b = c.try_begin(None);
        assert_eq!((c.in_flight(), c.requests()), (2, 2));
        drop(a);
        drop(b);
        assert_eq!((c.in_flight(), c.requests()), (0, 2));
    }

    #[test]
    fn a_success_is_news_only_after_a_reported_failure() {
        let c = EndpointCounters::default();
        assert!(!c.success_is_news());
        c.note_failure_reported();
        c.note_failure_reported();
        assert!(c.success_is_news());
        assert!(!c.success_is_news(), "the reset was reported");
    }

    #[test]
    fn progress_is_seen_from_its_moment_on() {
        let base = Instant::now();
        let c = EndpointCounters::new(base);
        let t = |ms| base + std::time::Duration::from_millis(ms);
        assert!(!c.progressed_since(base), "nothing yet");
        c.note_progress(t(100));
        assert!(c.progressed_since(t(50)));
        assert!(c.progressed_since(t(100)));
        assert!(!c.progressed_since(t(101)));
        c.note_progress(t(80));
        assert!(
            c.progressed_since(t(100)),
            "an older note never hides a newer one"
        );
    }

    #[test]
    fn a_limit_admits_that_many() {
        let c = Arc::new(EndpointCounters::default());
        let first = c.try_begin(Some(1)).expect("idle endpoint admits one");
        assert!(c.try_begin(Some(1)).is_none());
        assert_eq!(c.requests(), 1, "a refused request is not counted");
        drop(first);
        assert!(c.try_begin(Some(1)).is_some());
    }
}
