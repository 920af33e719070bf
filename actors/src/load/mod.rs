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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoadSource {
    LlamaCppSlots,
    LlamaCppMetrics,
    VllmMetrics,
    SglangMetrics,
    OllamaPs,
    LmStudioModels,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("placeholder")]
pub struct LoadParseError;

pub const MAX_LOAD_BODY: usize = 1 << 20;

impl LoadSource {
    pub fn for_type(kind: crate::profiles::EndpointType) -> &'static [LoadSource] {
        use crate::profiles::EndpointType::*;
        match kind {
            LlamaCpp => &[LoadSource::LlamaCppSlots, LoadSource::LlamaCppMetrics],
            Vllm => &[LoadSource::VllmMetrics],
            Sglang => &[LoadSource::SglangMetrics],
            Ollama => &[LoadSource::OllamaPs],
            LmStudio => &[LoadSource::LmStudioModels],
            OpenAiCompatible | Auto => &[],
        }
    }
    pub fn path(self) -> &'static str {
        "/"
    }
    pub fn name(self) -> &'static str {
        "x"
    }
    pub fn parse(self, _body: &[u8]) -> Result<LoadReport, LoadParseError> {
        Err(LoadParseError)
    }
}
