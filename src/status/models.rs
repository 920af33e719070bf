//! The model views of the status API (SPEC 6): `/internal/status/models` and
//! `/internal/stats/models`, built from the registry's catalog and the workers' statistics.
//! (Endpoints need no shape of their own here: the control plane's read model serialises
//! itself.)

use std::collections::BTreeMap;
use std::time::Duration;

use corral_actors::catalog::{CatalogModel, ModelCatalog};
use corral_actors::display;
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
