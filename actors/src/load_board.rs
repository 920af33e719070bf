//! The latest load report of one endpoint (SPEC 10.1), shared between the endpoint's actor,
//! which posts each report it reads, and the proxy, which reads it on every request: atomics
//! for what picking needs (how busy, how many slots, when), the report itself behind a lock
//! for residency and the status API. A report older than the endpoint's `load_max_age` is
//! stale and reads as no report at all.
//!
//! Lives in the endpoint's [`EndpointCounters`](crate::counters::EndpointCounters), so it
//! survives actor restarts like the counts do.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::catalog::{model_matches, strip_latest};
use crate::load::LoadReport;

/// No value in an atomic that holds an optional count.
const UNKNOWN: u64 = u64::MAX;

/// How many loaded models residency checks by their [`ModelKey`] hashes, without the
/// report's lock. Backends keep a few models in memory at most (Ollama's default is three
/// per GPU); a longer list is read under the lock.
const LOADED_KEYS: usize = 4;

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
    /// How many models the report lists as loaded ([`UNKNOWN`]: it does not say).
    loaded_len: AtomicU64,
    /// Their [`ModelKey`] hashes, when there are at most [`LOADED_KEYS`] of them: picking
    /// reads these on every request, so residency costs no lock.
    loaded_keys: [AtomicU64; LOADED_KEYS],
    report: RwLock<Option<Arc<LoadReport>>>,
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

/// A model name as residency compares it: with a hash of the name as [`model_matches`]
/// sees it (`:latest` left off), worked out once per request rather than per candidate.
/// Two names that match have the same hash; two that do not could share one only by a
/// 64-bit collision, which would count a model resident that is not (a ranking hint wrong
/// once in 2^64 comparisons).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelKey<'a> {
    pub name: &'a str,
    hash: u64,
}

impl<'a> ModelKey<'a> {
    pub fn new(name: &'a str) -> Self {
        // FNV-1a: a handful of bytes, no setup, and stable across processes and threads.
        let hash = strip_latest(name)
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325, |h: u64, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
            });
        ModelKey { name, hash }
    }
}

impl LoadBoard {
    pub fn new(base: Instant) -> Self {
        LoadBoard {
            base,
            read_at: AtomicU64::new(0),
            busy: AtomicU64::new(UNKNOWN),
            capacity: AtomicU64::new(UNKNOWN),
            slots: AtomicU64::new(UNKNOWN),
            loaded_len: AtomicU64::new(UNKNOWN),
            loaded_keys: Default::default(),
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
        // Keys first, then the count that says how many to read: a request that reads in
        // between sees a mix of two lists, a hint no worse than a report a moment older.
        let loaded_len = match &report.loaded_models {
            Some(loaded) => {
                for (slot, name) in self.loaded_keys.iter().zip(loaded) {
                    slot.store(ModelKey::new(name).hash, Ordering::Release);
                }
                loaded.len() as u64
            }
            None => UNKNOWN,
        };
        self.loaded_len.store(loaded_len, Ordering::Release);
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
        self.loaded_len.store(UNKNOWN, Ordering::Release);
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

    /// Whether the latest report is no older than `max_age` at `now`: one subtraction of
    /// instants, the rest in nanoseconds (every candidate of every request asks).
    fn is_fresh(&self, now: Instant, max_age: Option<Duration>) -> bool {
        let Some(max_age) = max_age else {
            return false;
        };
        let at = self.read_at.load(Ordering::Acquire);
        if at == 0 {
            return false;
        }
        let since_base = now.saturating_duration_since(self.base).as_nanos();
        let age = (since_base + 1).saturating_sub(u128::from(at));
        age <= max_age.as_nanos()
    }

    /// What picking needs, with one freshness check: the figures of a fresh report and
    /// whether `model` is resident. Picking runs this for every candidate of every request:
    /// residency compares hashes, and takes the report's lock only when it lists more
    /// loaded models than [`LOADED_KEYS`].
    pub fn signals(
        &self,
        model: Option<&ModelKey<'_>>,
        now: Instant,
        max_age: Option<Duration>,
    ) -> Signals {
        if !self.is_fresh(now, max_age) {
            return Signals {
                busy: None,
                capacity: None,
                resident: true,
            };
        }
        Signals {
            busy: known(self.busy.load(Ordering::Acquire)),
            capacity: known(self.capacity.load(Ordering::Acquire)),
            resident: model.is_none_or(|m| self.holds(m)),
        }
    }

    /// Whether the report says `model` is loaded, or does not say.
    fn holds(&self, model: &ModelKey<'_>) -> bool {
        let len = self.loaded_len.load(Ordering::Acquire);
        if len == UNKNOWN {
            return true;
        }
        if len <= LOADED_KEYS as u64 {
            return self.loaded_keys[..len as usize]
                .iter()
                .any(|k| k.load(Ordering::Acquire) == model.hash);
        }
        let report = self.report.read().unwrap_or_else(|e| e.into_inner());
        match report.as_deref().and_then(|r| r.loaded_models.as_ref()) {
            Some(loaded) => loaded.iter().any(|m| model_matches(m, model.name)),
            None => true,
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

    /// A fresh report's figures (busy, capacity), or `None` when there is no fresh report.
    fn figures(
        b: &LoadBoard,
        now: Instant,
        max_age: Option<Duration>,
    ) -> Option<(Option<u64>, Option<u64>)> {
        b.is_fresh(now, max_age).then(|| {
            let s = b.signals(None, now, max_age);
            (s.busy, s.capacity)
        })
    }

    /// Whether `model` reads as resident: only a fresh list of loaded models can say no.
    fn resident(b: &LoadBoard, model: &str, now: Instant, max_age: Option<Duration>) -> bool {
        b.signals(Some(&ModelKey::new(model)), now, max_age)
            .resident
    }

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
        assert_eq!(figures(&b, t0, MAX_AGE), None);
        assert_eq!(b.slots(), None);
        assert!(resident(&b, "x", t0, MAX_AGE));
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
        let fresh = (Some(5), Some(2));
        assert_eq!(figures(&b, at(t0, 7000), MAX_AGE), Some(fresh));
        assert_eq!(figures(&b, at(t0, 7001), MAX_AGE), None, "stale");
        assert_eq!(figures(&b, at(t0, 1000), None), None, "reads are off");
        assert_eq!(b.slots(), Some(2), "slots outlive freshness");
        let (report, age) = b.latest(at(t0, 9000)).unwrap();
        assert_eq!((report.running, age), (Some(2), Duration::from_secs(8)));
    }

    #[test]
    fn only_a_fresh_list_of_loaded_models_says_a_model_is_not_resident() {
        let t0 = Instant::now();
        let b = LoadBoard::new(t0);
        b.record(loaded(&["llama3:latest"]), t0);
        assert!(resident(&b, "llama3", t0, MAX_AGE));
        assert!(!resident(&b, "qwen", t0, MAX_AGE));
        assert!(
            resident(&b, "qwen", at(t0, 6001), MAX_AGE),
            "stale: no penalty"
        );
        b.record(slots(1, 0), t0);
        assert!(resident(&b, "qwen", t0, MAX_AGE), "no list: no penalty");
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
        assert_eq!(
            b.signals(Some(&ModelKey::new("qwen")), t0, MAX_AGE),
            none,
            "no report"
        );
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
        assert_eq!(
            b.signals(Some(&ModelKey::new("qwen")), t0, MAX_AGE),
            fresh(false)
        );
        assert_eq!(
            b.signals(Some(&ModelKey::new("llama3")), t0, MAX_AGE),
            fresh(true)
        );
        assert_eq!(b.signals(None, t0, MAX_AGE), fresh(true), "no model named");
        assert_eq!(
            b.signals(Some(&ModelKey::new("qwen")), at(t0, 6001), MAX_AGE),
            none,
            "stale"
        );
        assert_eq!(
            b.signals(Some(&ModelKey::new("qwen")), t0, None),
            none,
            "reads are off"
        );
    }

    #[test]
    fn residency_reads_a_long_list_of_loaded_models_too() {
        let t0 = Instant::now();
        let b = LoadBoard::new(t0);
        let names: Vec<String> = (0..LOADED_KEYS + 2).map(|i| format!("m{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        b.record(loaded(&names), t0);
        for name in &names {
            assert!(resident(&b, name, t0, MAX_AGE), "{name}");
        }
        assert!(!resident(&b, "other", t0, MAX_AGE));
        // A shorter list afterwards: the keys of the longer one no longer count.
        b.record(loaded(&["m5:latest"]), t0);
        assert!(resident(&b, "m5", t0, MAX_AGE));
        assert!(!resident(&b, "m0", t0, MAX_AGE));
        b.record(loaded(&[]), t0);
        assert!(
            !resident(&b, "m5", t0, MAX_AGE),
            "an empty list: nothing loaded"
        );
    }

    #[test]
    fn model_keys_match_as_model_names_do() {
        let key = |n| ModelKey::new(n).hash;
        assert_eq!(key("llama3"), key("llama3:latest"));
        assert_ne!(key("llama3"), key("llama3:8b"));
        assert_ne!(key("qwen"), key("llama3"));
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
        assert_eq!((figures(&b, t0, MAX_AGE), b.slots()), (None, None));
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
        assert_eq!(figures(&b, t0, MAX_AGE).unwrap().0, Some(u64::MAX - 1));
    }
}
