//! Placeholder until the parsers land (branch load-parsers): the report's shape only.
use serde::Serialize;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LoadReport {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kv_cache: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loaded_models: Option<Vec<String>>,
}
