//! Per-endpoint request counters shared between the proxy (which counts) and the registry and
//! balancer (which read). They live in the supervisor's slot for the endpoint, so they survive
//! actor restarts; atomics, because the HTTP workers count on their own threads.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct EndpointCounters {
    in_flight: AtomicU64,
    requests: AtomicU64,
    failures: AtomicU64,
    retries: AtomicU64,
    /// Failures reported to the endpoint actor since the last reported success.
    failure_streak: std::sync::atomic::AtomicU32,
}

impl EndpointCounters {
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

    /// Counts a request as started; the returned guard ends it when dropped, so an aborted
    /// client never leaves a phantom in-flight request behind.
    pub fn begin(self: &std::sync::Arc<Self>) -> InFlight {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Starts a request only if none is in flight: the test traffic a `recovering` endpoint
    /// takes (SPEC 4.2). Atomic, so two workers cannot both send the one test request.
    pub fn begin_exclusive(self: &std::sync::Arc<Self>) -> Option<InFlight> {
        self.in_flight
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Relaxed)
            .ok()?;
        self.requests.fetch_add(1, Ordering::Relaxed);
        Some(InFlight(self.clone()))
    }

    pub fn count_failure(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.failure_streak.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether a success is news to the endpoint actor: only when failures came before it
    /// (the proxy breaker counts *consecutive* failures). Telling the actor about every
    /// success would cost a cross-thread message per request for nothing.
    pub fn success_is_news(&self) -> bool {
        self.failure_streak.swap(0, Ordering::AcqRel) > 0
    }

    pub fn count_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }
}

/// One request in flight to an endpoint.
#[derive(Debug)]
pub struct InFlight(std::sync::Arc<EndpointCounters>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn in_flight_guard_counts_and_uncounts() {
        let c = Arc::new(EndpointCounters::default());
        let a = c.begin();
        let b = c.begin();
        assert_eq!((c.in_flight(), c.requests()), (2, 2));
        drop(a);
        drop(b);
        assert_eq!((c.in_flight(), c.requests()), (0, 2));
    }

    #[test]
    fn a_success_is_news_only_after_failures() {
        let c = EndpointCounters::default();
        assert!(!c.success_is_news());
        c.count_failure();
        c.count_failure();
        assert!(c.success_is_news());
        assert!(!c.success_is_news(), "the streak was reported");
        assert_eq!(c.failures(), 2);
    }

    #[test]
    fn exclusive_begin_admits_one() {
        let c = Arc::new(EndpointCounters::default());
        let first = c.begin_exclusive().expect("idle endpoint admits one");
        assert!(c.begin_exclusive().is_none());
        drop(first);
        assert!(c.begin_exclusive().is_some());
    }
}
