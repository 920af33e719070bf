//! Per-model request statistics (`/internal/stats/models`) and the requests to each endpoint
//! by model and status code (`/internal/metrics`), counted by the HTTP workers themselves with
//! atomics: a message to an actor per request would put a thread wake-up on every request
//! path, and counters kept here survive registry restarts.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use corral_actors::catalog::ModelCatalog;

/// Distinct model names tracked; beyond this (clients can send any name under the optimistic
/// strategy) new names are counted together under [`OTHER`], so memory stays bounded.
const MAX_MODELS: usize = 10_000;
/// Longer model names are counted under [`OTHER`] too (SPEC 11).
const MAX_NAME: usize = 256;
pub const OTHER: &str = "(other)";
/// The `model` label of a request that names no model.
pub const NO_MODEL: &str = "(none)";
/// Distinct (endpoint, model, code) series of [`AttemptTable`]; beyond this, new ones are
/// counted under the model [`OTHER`], so a scrape stays small whatever the catalog did.
const MAX_SERIES: usize = 10_000;

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

/// The request statistics the HTTP workers keep.
#[derive(Default)]
pub struct ModelStatsTable {
    models: RwLock<HashMap<String, Arc<Counters>>>,
    attempts: AttemptTable,
}

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

    /// One attempt on `endpoint` for a request with this `model` label ([`model_label`])
    /// ended with this HTTP status from the backend (`None`: no response head came).
    pub fn count_attempt(&self, endpoint: &Arc<str>, model: &str, code: Option<u16>) {
        self.attempts
            .count(endpoint, model, code.unwrap_or(NO_CODE));
    }

    /// Every attempt count, sorted by endpoint, model and code.
    pub fn attempts(&self) -> Vec<AttemptCount> {
        self.attempts.snapshot()
    }

    fn counters(&self, model: &str) -> Arc<Counters> {
        if let Some(c) = self
            .models
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(model)
        {
            return c.clone();
        }
        let mut map = self.models.write().unwrap_or_else(|e| e.into_inner());
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
        let map = self.models.read().unwrap_or_else(|e| e.into_inner());
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

/// The `model` label of a request's metrics (SPEC 7.2: label values are bounded): the
/// catalog's name for the model it asks for when some endpoint lists it, [`OTHER`] when none
/// does (the optimistic strategy forwards any name), [`NO_MODEL`] when it names none.
pub fn model_label<'a>(catalog: &'a ModelCatalog, model: Option<&str>) -> &'a str {
    let Some(wanted) = model else {
        return NO_MODEL;
    };
    // `catalog::model_matches`: `llama3` and `llama3:latest` are one model, so the listed
    // name is one of these two spellings (the catalog is sorted by name).
    let bare = wanted.strip_suffix(":latest").unwrap_or(wanted);
    let find = |name: &str| {
        catalog
            .models
            .binary_search_by(|m| m.name.as_str().cmp(name))
            .ok()
            .map(|i| catalog.models[i].name.as_str())
    };
    find(wanted)
        .or_else(|| find(bare))
        .or_else(|| find(&format!("{bare}:latest")))
        .unwrap_or(OTHER)
}

/// The status-code slot of an attempt that got no response head.
const NO_CODE: u16 = 0;

/// Attempts by endpoint, then model label, then status code. Nested maps, so that counting
/// an attempt that has a series already is a read lock and lookups by `&str`, no allocation.
type ByEndpoint = HashMap<Arc<str>, HashMap<Box<str>, HashMap<u16, AtomicU64>>>;

#[derive(Default)]
struct AttemptTable(RwLock<Series>);

#[derive(Default)]
struct Series {
    map: ByEndpoint,
    /// Series in `map`.
    len: usize,
}

impl Series {
    fn get(&self, endpoint: &str, model: &str, code: u16) -> Option<&AtomicU64> {
        self.map.get(endpoint)?.get(model)?.get(&code)
    }
}

/// One series of `corral_requests_total`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptCount {
    pub endpoint: Arc<str>,
    pub model: String,
    /// The backend's HTTP status; `None`: no response head came (a failed connection, a
    /// header timeout, a request that could not be sent).
    pub code: Option<u16>,
    pub count: u64,
}

impl AttemptTable {
    fn count(&self, endpoint: &Arc<str>, model: &str, code: u16) {
        {
            let series = self.0.read().unwrap_or_else(|e| e.into_inner());
            let full = series.len >= MAX_SERIES;
            let slot = series
                .get(endpoint, model, code)
                .or_else(|| full.then(|| series.get(endpoint, OTHER, code)).flatten());
            if let Some(n) = slot {
                n.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let mut series = self.0.write().unwrap_or_else(|e| e.into_inner());
        // Another worker may have made the series meanwhile.
        let room = series.len < MAX_SERIES || series.get(endpoint, model, code).is_some();
        let model = if room { model } else { OTHER };
        let Series { map, len } = &mut *series;
        let codes = map
            .entry(endpoint.clone())
            .or_default()
            .entry(model.into())
            .or_default();
        match codes.entry(code) {
            Entry::Occupied(n) => {
                n.get().fetch_add(1, Ordering::Relaxed);
            }
            Entry::Vacant(slot) => {
                slot.insert(AtomicU64::new(1));
                *len += 1;
            }
        }
    }

    fn snapshot(&self) -> Vec<AttemptCount> {
        let series = self.0.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<AttemptCount> = series
            .map
            .iter()
            .flat_map(|(endpoint, models)| {
                models.iter().flat_map(move |(model, codes)| {
                    codes.iter().map(move |(code, n)| AttemptCount {
                        endpoint: endpoint.clone(),
                        model: model.to_string(),
                        code: (*code != NO_CODE).then_some(*code),
                        count: n.load(Ordering::Relaxed),
                    })
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.endpoint, &a.model, a.code).cmp(&(&b.endpoint, &b.model, b.code)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_actors::catalog::Listing;
    use corral_actors::health::Status;
    use corral_actors::profiles::{EndpointType, ModelInfo};

    fn catalog(names: &[&str]) -> ModelCatalog {
        let endpoint: Arc<str> = "a".into();
        let models: Vec<ModelInfo> = names.iter().map(|n| ModelInfo::named(*n)).collect();
        ModelCatalog::build([Listing {
            endpoint: &endpoint,
            kind: EndpointType::Ollama,
            status: Status::Healthy,
            models: Some(&models),
        }])
    }

    #[test]
    fn model_labels_are_listed_names_or_a_bounded_few() {
        let c = catalog(&["llama3:latest", "phi3", "qwen:7b"]);
        assert_eq!(model_label(&c, Some("phi3")), "phi3");
        assert_eq!(model_label(&c, Some("llama3")), "llama3:latest");
        assert_eq!(model_label(&c, Some("phi3:latest")), "phi3");
        assert_eq!(model_label(&c, Some("qwen:7b")), "qwen:7b");
        assert_eq!(model_label(&c, Some("qwen")), OTHER);
        assert_eq!(model_label(&c, Some("made-up")), OTHER);
        assert_eq!(model_label(&c, None), NO_MODEL);
    }

    #[test]
    fn attempts_are_counted_by_endpoint_model_and_code() {
        let t = ModelStatsTable::default();
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        t.count_attempt(&b, "m", Some(200));
        t.count_attempt(&a, "m", Some(200));
        t.count_attempt(&a, "m", Some(200));
        t.count_attempt(&a, "m", None);
        t.count_attempt(&a, NO_MODEL, Some(503));
        let got: Vec<String> = t
            .attempts()
            .iter()
            .map(|c| format!("{} {} {:?} {}", c.endpoint, c.model, c.code, c.count))
            .collect();
        assert_eq!(
            got,
            [
                "a (none) Some(503) 1",
                "a m None 1",
                "a m Some(200) 2",
                "b m Some(200) 1"
            ]
        );
    }

    #[test]
    fn attempt_series_beyond_the_cap_are_pooled() {
        let t = AttemptTable::default();
        let a: Arc<str> = "a".into();
        for i in 0..MAX_SERIES + 5 {
            t.count(&a, &format!("m{i}"), 200);
        }
        t.count(&a, "m0", 200);
        let s = t.snapshot();
        assert_eq!(s.len(), MAX_SERIES + 1);
        assert_eq!(s.iter().find(|c| c.model == OTHER).unwrap().count, 5);
        assert_eq!(s.iter().find(|c| c.model == "m0").unwrap().count, 2);
    }

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
