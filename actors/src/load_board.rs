//! The latest load report of one endpoint (SPEC 10.1), shared between the endpoint's actor,
//! which posts each report it reads, and the proxy, which reads it on every request: atomics
//! for what picking needs (how busy, how many slots, when), the report itself behind a lock
//! for residency and the status API. A report older than the endpoint's `load_max_age` is
//! stale and reads as no report at all.
//!
//! Lives in the endpoint's [`EndpointCounters`](crate::counters::EndpointCounters), so it
//! survives actor restarts like the counts do.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::catalog::model_matches;
use crate::load::LoadReport;

/// No value in an atomic that holds an optional count.
const UNKNOWN: u64 = u64::MAX;

#[derive(Debug)]
pub struct LoadBoard {
    /// The origin of `read_at`.
    base: Instant,
    /// When the latest report was read, in nanoseconds after `base` plus one (0: none).
    read_at: AtomicU64,
    /// Running plus waiting requests, as reported.
    busy: AtomicU64,
    /// Slots, as reported.
    capacity: AtomicU64,
    /// The last slot count ever reported: `max_concurrency: auto` keeps it while reports
    /// are late (a server's slot count changes only with a restart).
    slots: AtomicU64,
    /// The report says which models are loaded (so residency needs a look at the list).
    lists_loaded: AtomicBool,
    report: RwLock<Option<Arc<LoadReport>>>,
}

/// A fresh report's figures, as picking uses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fresh {
    /// Running plus waiting, if the report has either.
    pub busy: Option<u64>,
    pub capacity: Option<u64>,
}

/// Everything picking reads of a board for one request, from one look: a stale report (or
/// none) reads as no figures and the model resident (no information, no penalty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signals {
    /// Running plus waiting, if a fresh report has either.
    pub busy: Option<u64>,
    pub capacity: Option<u64>,
    /// The requested model is in the backend's memory, or nothing fresh says it is not.
    pub resident: bool,
}

impl LoadBoard {
    pub fn new(base: Instant) -> Self {
        LoadBoard {
            base,
            read_at: AtomicU64::new(0),
            busy: AtomicU64::new(UNKNOWN),
            capacity: AtomicU64::new(UNKNOWN),
            slots: AtomicU64::new(UNKNOWN),
            lists_loaded: AtomicBool::new(false),
            report: RwLock::new(None),
        }
    }

    /// Posts a report read at `at`. Returns whether the slot count changed (admission
    /// under `max_concurrency: auto` follows it, so waiters may now fit).
    pub fn record(&self, report: LoadReport, at: Instant) -> bool {
        let busy = match (report.running, report.waiting) {
            (None, None) => UNKNOWN,
            (r, w) => r
                .unwrap_or(0)
                .saturating_add(w.unwrap_or(0))
                .min(UNKNOWN - 1),
        };
        let capacity = report.capacity.filter(|&c| c > 0).unwrap_or(UNKNOWN);
        let slots_changed = match report.capacity.filter(|&c| c > 0) {
            Some(c) => self.slots.swap(c, Ordering::AcqRel) != c,
            None => false,
        };
        self.lists_loaded
            .store(report.loaded_models.is_some(), Ordering::Release);
        *self.report.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(report));
        self.busy.store(busy, Ordering::Release);
        self.capacity.store(capacity, Ordering::Release);
        let nanos = at.saturating_duration_since(self.base).as_nanos() as u64 + 1;
        self.read_at.store(nanos, Ordering::Release);
        slots_changed
    }

    /// No report any more (the source was dropped, or the settings changed).
    pub fn forget(&self) {
        self.read_at.store(0, Ordering::Release);
        self.slots.store(UNKNOWN, Ordering::Release);
        self.lists_loaded.store(false, Ordering::Release);
        *self.report.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The slot count last reported, fresh or not.
    pub fn slots(&self) -> Option<u64> {
        known(self.slots.load(Ordering::Acquire))
    }

    /// How old the latest report is at `now`; `None` when there is none.
    pub fn age(&self, now: Instant) -> Option<Duration> {
        let at = self.read_at.load(Ordering::Acquire);
        let at = self.base + Duration::from_nanos(at.checked_sub(1)?);
        Some(now.saturating_duration_since(at))
    }

    fn is_fresh(&self, now: Instant, max_age: Option<Duration>) -> bool {
        match (self.age(now), max_age) {
            (Some(age), Some(max)) => age <= max,
            _ => false,
        }
    }

    /// The latest report's figures if it is no older than `max_age` (`None`: reads are off).
    pub fn fresh(&self, now: Instant, max_age: Option<Duration>) -> Option<Fresh> {
        if !self.is_fresh(now, max_age) {
            return None;
        }
        Some(Fresh {
            busy: known(self.busy.load(Ordering::Acquire)),
            capacity: known(self.capacity.load(Ordering::Acquire)),
        })
    }

    /// Whether `model` is in the backend's memory: only a fresh report that lists loaded
    /// models can say no (no information, no penalty).
    pub fn resident(&self, model: &str, now: Instant, max_age: Option<Duration>) -> bool {
        self.signals(Some(model), now, max_age).resident
    }

    /// What picking needs, with one freshness check: the figures of a fresh report and
    /// whether `model` is resident. The report's lock is taken only when it lists loaded
    /// models and a model is named; picking runs this for every candidate of every request.
    pub fn signals(&self, model: Option<&str>, now: Instant, max_age: Option<Duration>) -> Signals {
        let none = Signals {
            busy: None,
            capacity: None,
            resident: true,
        };
        if !self.is_fresh(now, max_age) {
            return none;
        }
        let resident = match model {
            Some(model) if self.lists_loaded.load(Ordering::Acquire) => {
                let report = self.report.read().unwrap_or_else(|e| e.into_inner());
                match report.as_deref().and_then(|r| r.loaded_models.as_ref()) {
                    Some(loaded) => loaded.iter().any(|m| model_matches(m, model)),
                    None => true,
                }
            }
            _ => true,
        };
        Signals {
            busy: known(self.busy.load(Ordering::Acquire)),
            capacity: known(self.capacity.load(Ordering::Acquire)),
            resident,
        }
    }

    /// The latest report and its age, stale or not (the status API shows both).
    pub fn latest(&self, now: Instant) -> Option<(Arc<LoadReport>, Duration)> {
        let report = self
            .report
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        Some((report, self.age(now)?))
    }
}

fn known(n: u64) -> Option<u64> {
    (n != UNKNOWN).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX_AGE: Option<Duration> = Some(Duration::from_secs(6));

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    fn slots(capacity: u64, running: u64) -> LoadReport {
        LoadReport {
            running: Some(running),
            capacity: Some(capacity),
            ..LoadReport::default()
        }
    }

    fn loaded(models: &[&str]) -> LoadReport {
        LoadReport {
            loaded_models: Some(models.iter().map(|m| m.to_string()).collect()),
            ..LoadReport::default()
        }
    }

    #[test]
    fn nothing_posted_is_no_signal() {
        let t0 = Instant::now();
        let b = LoadBoard::new(t0);
        assert_eq!(b.fresh(t0, MAX_AGE), None);
        assert_eq!(b.slots(), None);
        assert!(b.resident("x", t0, MAX_AGE));
        assert!(b.latest(t0).is_none());
    }

    #[test]
    fn a_report_is_fresh_until_it_is_older_than_max_age() {
        let t0 = Instant::now();
        let b = LoadBoard::new(t0);
        b.record(
            LoadReport {
                waiting: Some(3),
                ..slots(2, 2)
            },
            at(t0, 1000),
        );
        let fresh = Fresh {
            busy: Some(5),
            capacity: Some(2),
        };
        assert_eq!(b.fresh(at(t0, 7000), MAX_AGE), Some(fresh));
        assert_eq!(b.fresh(at(t0, 7001), MAX_AGE), None, "stale");
        assert_eq!(b.fresh(at(t0, 1000), None), None, "reads are off");
        assert_eq!(b.slots(), Some(2), "slots outlive freshness");
        let (report, age) = b.latest(at(t0, 9000)).unwrap();
        assert_eq!((report.running, age), (Some(2), Duration::from_secs(8)));
    }

    #[test]
    fn only_a_fresh_list_of_loaded_models_says_a_model_is_not_resident() {
        let t0 = Instant::now();
        let b = LoadBoard::new(t0);
        b.record(loaded(&["llama3:latest"]), t0);
        assert!(b.resident("llama3", t0, MAX_AGE));
        assert!(!b.resident("qwen", t0, MAX_AGE));
        assert!(
            b.resident("qwen", at(t0, 6001), MAX_AGE),
            "stale: no penalty"
        );
        b.record(slots(1, 0), t0);
        assert!(b.resident("qwen", t0, MAX_AGE), "no list: no penalty");
    }

    #[test]
    fn signals_read_figures_and_residency_in_one_look() {
        let t0 = Instant::now();
        let b = LoadBoard::new(t0);
        let none = Signals {
            busy: None,
            capacity: None,
            resident: true,
        };
        assert_eq!(b.signals(Some("qwen"), t0, MAX_AGE), none, "no report");
        b.record(
            LoadReport {
                waiting: Some(1),
                ..LoadReport {
                    loaded_models: Some(vec!["llama3:latest".into()]),
                    ..slots(4, 2)
                }
            },
            t0,
        );
        let fresh = |resident| Signals {
            busy: Some(3),
            capacity: Some(4),
            resident,
        };
        assert_eq!(b.signals(Some("qwen"), t0, MAX_AGE), fresh(false));
        assert_eq!(b.signals(Some("llama3"), t0, MAX_AGE), fresh(true));
        assert_eq!(b.signals(None, t0, MAX_AGE), fresh(true), "no model named");
        assert_eq!(
            b.signals(Some("qwen"), at(t0, 6001), MAX_AGE),
            none,
            "stale"
        );
        assert_eq!(b.signals(Some("qwen"), t0, None), none, "reads are off");
    }

    #[test]
    fn record_tells_when_the_slot_count_changes() {
        let t0 = Instant::now();
        let b = LoadBoard::new(t0);
        assert!(b.record(slots(2, 0), t0));
        assert!(!b.record(slots(2, 1), t0));
        assert!(!b.record(LoadReport::default(), t0), "no count: no change");
        assert_eq!(b.slots(), Some(2));
        assert!(b.record(slots(4, 0), t0));
    }

    #[test]
    fn forget_drops_everything() {
        let t0 = Instant::now();
        let b = LoadBoard::new(t0);
        b.record(slots(2, 1), t0);
        b.forget();
        assert_eq!((b.fresh(t0, MAX_AGE), b.slots()), (None, None));
        assert!(b.latest(t0).is_none());
    }

    #[test]
    fn absurd_counts_do_not_overflow() {
        let t0 = Instant::now();
        let b = LoadBoard::new(t0);
        b.record(
            LoadReport {
                running: Some(u64::MAX),
                waiting: Some(u64::MAX),
                ..LoadReport::default()
            },
            t0,
        );
        assert_eq!(b.fresh(t0, MAX_AGE).unwrap().busy, Some(u64::MAX - 1));
    }
}
