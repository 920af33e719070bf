//! Per-model request statistics (`/internal/stats/models`), counted by the HTTP workers
//! themselves with atomics: a message to an actor per request would put a thread wake-up on
//! every request path, and counters kept here survive registry restarts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Distinct model names tracked; beyond this (clients can send any name under the optimistic
/// strategy) new names are counted together under [`OTHER`], so memory stays bounded.
const MAX_MODELS: usize = 10_000;
/// Longer model names are counted under [`OTHER`] too (SPEC 11).
const MAX_NAME: usize = 256;
pub const OTHER: &str = "(other)";

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    failures: AtomicU64,
    /// Sum of time to upstream headers over successful requests, in microseconds.
    latency_us: AtomicU64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRequestStats {
    pub name: String,
    pub requests: u64,
    pub failures: u64,
    /// Mean time to upstream headers of the successful requests.
    pub avg_latency: Option<Duration>,
}

#[derive(Default)]
pub struct ModelStatsTable(RwLock<HashMap<String, Arc<Counters>>>);

impl ModelStatsTable {
    pub fn record(&self, model: &str, latency: Duration, failed: bool) {
        let counters = self.counters(model);
        counters.requests.fetch_add(1, Ordering::Relaxed);
        if failed {
            counters.failures.fetch_add(1, Ordering::Relaxed);
        } else {
            counters
                .latency_us
                .fetch_add(latency.as_micros() as u64, Ordering::Relaxed);
        }
    }

    fn counters(&self, model: &str) -> Arc<Counters> {
        if let Some(c) = self.0.read().unwrap_or_else(|e| e.into_inner()).get(model) {
            return c.clone();
        }
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        let key = if model.len() > MAX_NAME || (map.len() >= MAX_MODELS && !map.contains_key(model))
        {
            OTHER
        } else {
            model
        };
        map.entry(key.to_string()).or_default().clone()
    }

    /// Every model seen, sorted by name.
    pub fn snapshot(&self) -> Vec<ModelRequestStats> {
        let map = self.0.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<ModelRequestStats> = map
            .iter()
            .map(|(name, c)| {
                let requests = c.requests.load(Ordering::Relaxed);
                let failures = c.failures.load(Ordering::Relaxed);
                let ok = requests.saturating_sub(failures);
                ModelRequestStats {
                    name: name.clone(),
                    requests,
                    failures,
                    avg_latency: (ok > 0)
                        .then(|| Duration::from_micros(c.latency_us.load(Ordering::Relaxed) / ok)),
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_requests_failures_and_mean_latency() {
        let t = ModelStatsTable::default();
        t.record("m", Duration::from_millis(10), false);
        t.record("m", Duration::from_millis(30), false);
        t.record("m", Duration::from_secs(9), true);
        t.record("a", Duration::from_millis(1), true);
        let s = t.snapshot();
        assert_eq!(
            s[0],
            ModelRequestStats {
                name: "a".into(),
                requests: 1,
                failures: 1,
                avg_latency: None
            }
        );
        assert_eq!(s[1].requests, 3);
        assert_eq!(s[1].failures, 1);
        assert_eq!(s[1].avg_latency, Some(Duration::from_millis(20)));
    }

    #[test]
    fn overlong_names_are_pooled() {
        let t = ModelStatsTable::default();
        t.record(&"m".repeat(MAX_NAME + 1), Duration::ZERO, false);
        let s = t.snapshot();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].name, OTHER);
    }

    #[test]
    fn names_beyond_the_cap_are_pooled() {
        let t = ModelStatsTable::default();
        for i in 0..MAX_MODELS + 5 {
            t.record(&format!("m{i}"), Duration::ZERO, false);
        }
        let s = t.snapshot();
        assert_eq!(s.len(), MAX_MODELS + 1);
        assert_eq!(s.iter().find(|m| m.name == OTHER).unwrap().requests, 5);
    }
}
