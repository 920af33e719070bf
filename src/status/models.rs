//! The model views of the status API (SPEC 6, 12): `/internal/status/models` (with Olla's
//! `recent_models` and family grouping) and `/internal/stats/models`, built from the
//! registry's catalog and the workers' statistics. (Endpoints need no shape of their own
//! here: the control plane's read model serialises itself.)

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use corral_actors::catalog::{CatalogModel, ModelCatalog};
use corral_actors::display;
use corral_actors::model_facts::ollama_quantization;
use corral_actors::view::FleetSnapshot;
use serde::Serialize;
use serde_json::{json, Value};

use crate::stats::ModelRequestStats;

#[derive(Serialize)]
pub struct ModelStatusJson {
    name: String,
    endpoints: Vec<String>,
    routable_endpoints: Vec<String>,
}

impl From<&CatalogModel> for ModelStatusJson {
    fn from(m: &CatalogModel) -> Self {
        ModelStatusJson {
            name: m.name.clone(),
            endpoints: m.endpoints().map(|e| e.to_string()).collect(),
            routable_endpoints: m.routable_endpoints().map(|e| e.to_string()).collect(),
        }
    }
}

/// The most models `recent_models` lists (Olla's limit).
pub const RECENT_MODELS: usize = 10;

/// The family Olla groups a model under when nothing says which it is.
const UNKNOWN_FAMILY: &str = "unknown";

/// One entry of Olla's `recent_models`, with Olla's field names.
#[derive(Debug, Serialize)]
pub struct ModelSummaryJson {
    name: String,
    /// The type of the first endpoint that lists the model, so that a tool can match a
    /// model to its backends by type (Olla's own value here varies by backend).
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    family: String,
    /// Disk size as Olla writes it (`4.58 GB`), where a backend reports one.
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<String>,
    /// Parameter size: the backend's own spelling where it reports one (`8.0B`).
    #[serde(skip_serializing_if = "String::is_empty")]
    params: String,
    /// Quantisation in Ollama's spelling (`Q4_K_M`).
    #[serde(skip_serializing_if = "String::is_empty")]
    quant: String,
    /// `2m30s ago`, or `never`.
    last_seen: String,
    #[serde(
        serialize_with = "display::serialize_opt_time",
        skip_serializing_if = "Option::is_none"
    )]
    last_seen_at: Option<SystemTime>,
    /// Endpoint names.
    endpoints: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    aliases: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    capabilities: Vec<&'static str>,
}

/// When a model was last seen: the newest model discovery among the endpoints that list it.
fn last_seen(m: &CatalogModel, seen: &HashMap<&str, SystemTime>) -> Option<SystemTime> {
    m.endpoints()
        .filter_map(|e| seen.get(e.as_ref()).copied())
        .max()
}

fn summary(m: &CatalogModel, last: Option<SystemTime>, now: SystemTime) -> ModelSummaryJson {
    let f = &m.facts;
    let quant = f
        .reported_quantization
        .clone()
        .or_else(|| (!f.quantization.is_empty()).then(|| ollama_quantization(&f.quantization)))
        .unwrap_or_default();
    ModelSummaryJson {
        name: m.name.clone(),
        kind: m.sources.first().map_or("", |s| s.kind.as_str()),
        family: f.family.clone(),
        size: m
            .sources
            .iter()
            .find_map(|s| s.info.size)
            .map(display::bytes),
        params: f
            .reported_parameter_size
            .clone()
            .unwrap_or_else(|| f.parameter_size.clone()),
        quant,
        last_seen: last.map_or_else(|| "never".to_string(), |t| display::ago(t, now)),
        last_seen_at: last,
        endpoints: m.endpoints().map(|e| e.to_string()).collect(),
        aliases: Vec::new(),
        capabilities: f.capabilities.clone(),
    }
}

/// The body of `/internal/status/models`: Corral's per-model list, and Olla's
/// `recent_models` (at most [`RECENT_MODELS`], newest first, then by name),
/// `models_by_family` and totals.
pub fn model_status(catalog: &ModelCatalog, fleet: &FleetSnapshot, now: SystemTime) -> Value {
    let seen: HashMap<&str, SystemTime> = fleet
        .endpoints
        .iter()
        .filter_map(|e| Some((e.name.as_ref(), e.view.last_model_sync_at?)))
        .collect();
    let list: Vec<ModelStatusJson> = catalog.models.iter().map(ModelStatusJson::from).collect();
    let mut by_time: Vec<(Option<SystemTime>, &CatalogModel)> = catalog
        .models
        .iter()
        .map(|m| (last_seen(m, &seen), m))
        .collect();
    // Newest first; the catalog is sorted by name, and the sort is stable.
    by_time.sort_by_key(|(last, _)| std::cmp::Reverse(*last));
    let recent: Vec<ModelSummaryJson> = by_time
        .into_iter()
        .take(RECENT_MODELS)
        .map(|(last, m)| summary(m, last, now))
        .collect();
    let mut by_family: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for m in &catalog.models {
        let family = match m.facts.family.as_str() {
            "" => UNKNOWN_FAMILY,
            f => f,
        };
        by_family.entry(family).or_default().push(&m.name);
    }
    let with_models = fleet
        .endpoints
        .iter()
        .filter(|e| e.models.is_some())
        .count();
    json!({
        "timestamp": display::rfc3339(now),
        "models": list,
        "recent_models": recent,
        "models_by_family": by_family,
        "total_models": catalog.models.len(),
        "total_families": by_family.len(),
        "total_endpoints": with_models,
    })
}

/// The body of `/internal/stats/models`: every model known from the catalog or from traffic.
pub fn model_stats(
    stats: &[ModelRequestStats],
    catalog: &ModelCatalog,
    fleet: &FleetSnapshot,
) -> Value {
    let mut models: BTreeMap<&str, Value> = BTreeMap::new();
    for m in &catalog.models {
        models.insert(
            &m.name,
            json!({
                "name": m.name,
                "requests": 0,
                "failures": 0,
                "avg_latency": null,
                "endpoints": {
                    "total": m.sources.len(),
                    "routable": m.routable_endpoints().count(),
                    "names": m.endpoints().map(|e| e.to_string()).collect::<Vec<_>>(),
                },
            }),
        );
    }
    for s in stats {
        let avg = s.avg_latency.map(display::duration);
        let entry = models.entry(&s.name).or_insert_with(
            || json!({ "name": s.name, "endpoints": { "total": 0, "routable": 0, "names": [] } }),
        );
        entry["requests"] = json!(s.requests);
        entry["failures"] = json!(s.failures);
        entry["avg_latency"] = json!(avg);
    }
    let latencies: Vec<Duration> = fleet
        .endpoints
        .iter()
        .filter_map(|e| e.view.last_latency)
        .collect();
    let avg_check = (!latencies.is_empty())
        .then(|| display::duration(latencies.iter().sum::<Duration>() / latencies.len() as u32));
    json!({
        "models": models.into_values().collect::<Vec<_>>(),
        "endpoints_by_status": fleet.counts(),
        "avg_check_latency": avg_check,
    })
}
