//! The unified model catalog (SPEC 4.5, 5.1, 5.3, 12): which endpoint lists which model and
//! what the model is ([`ModelFacts`]), built by the registry from the lists the endpoint
//! actors discovered, and read by the model listings and the status API. Also the one rule
//! for when a listed name is the name a client asked for.
//!
//! Pure: the registry hands in its entries; no actor or socket in here.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::health::Status;
use crate::model_facts::{self, ModelFacts};
use crate::profiles::{EndpointType, ModelInfo, RouteClass};

/// Every known model with the endpoints that list it.
#[derive(Debug, Clone, Default)]
pub struct ModelCatalog {
    /// Sorted by model name.
    pub models: Vec<CatalogModel>,
}

#[derive(Debug, Clone)]
pub struct CatalogModel {
    pub name: String,
    /// Sorted by endpoint name.
    pub sources: Vec<ModelSource>,
    /// Read once here, from the sources' reports (in endpoint order) and the name, so that
    /// a listing only renders them.
    pub facts: ModelFacts,
}

/// One endpoint's listing of one model.
#[derive(Debug, Clone)]
pub struct ModelSource {
    pub endpoint: Arc<str>,
    pub kind: EndpointType,
    pub status: Status,
    pub info: ModelInfo,
}

/// One endpoint's contribution to the catalog.
pub struct Listing<'a> {
    pub endpoint: &'a Arc<str>,
    pub kind: EndpointType,
    pub status: Status,
    /// `None`: not discovered yet (contributes nothing).
    pub models: Option<&'a [ModelInfo]>,
}

impl ModelCatalog {
    pub fn build<'a>(listings: impl IntoIterator<Item = Listing<'a>>) -> Self {
        let mut by_name: BTreeMap<&str, Vec<ModelSource>> = BTreeMap::new();
        for listing in listings {
            for info in listing.models.unwrap_or_default() {
                by_name.entry(&info.name).or_default().push(ModelSource {
                    endpoint: listing.endpoint.clone(),
                    kind: listing.kind,
                    status: listing.status,
                    info: info.clone(),
                });
            }
        }
        let models = by_name
            .into_iter()
            .map(|(name, mut sources)| {
                sources.sort_by(|a, b| a.endpoint.cmp(&b.endpoint));
                let facts = model_facts::facts(name, sources.iter().map(|s| &s.info.details));
                CatalogModel {
                    name: name.to_string(),
                    sources,
                    facts,
                }
            })
            .collect();
        ModelCatalog { models }
    }
}

impl ModelCatalog {
    /// The model a client names: the listed name itself, else the same model under Ollama's
    /// other spelling (`llama3` for `llama3:latest`).
    pub fn find(&self, wanted: &str) -> Option<&CatalogModel> {
        let exact = self
            .models
            .binary_search_by(|m| m.name.as_str().cmp(wanted))
            .ok()
            .map(|i| &self.models[i]);
        exact.or_else(|| self.models.iter().find(|m| model_matches(&m.name, wanted)))
    }
}

impl CatalogModel {
    pub fn endpoints(&self) -> impl Iterator<Item = &Arc<str>> {
        self.sources.iter().map(|s| &s.endpoint)
    }

    pub fn routable_endpoints(&self) -> impl Iterator<Item = &Arc<str>> {
        self.sources
            .iter()
            .filter(|s| s.status.is_routable())
            .map(|s| &s.endpoint)
    }

    /// The model's listings on routable endpoints that `route` may use: what a listing for
    /// that route shows (SPEC 5.1).
    pub fn available(&self, route: RouteClass) -> impl Iterator<Item = &ModelSource> {
        self.sources
            .iter()
            .filter(move |s| s.status.is_routable() && route.accepts(s.kind))
    }
}

/// Whether a listed model name is the one a client asked for: Ollama names `llama3` and
/// `llama3:latest` the same model.
pub fn model_matches(listed: &str, wanted: &str) -> bool {
    listed == wanted || strip_latest(listed) == strip_latest(wanted)
}

pub(crate) fn strip_latest(name: &str) -> &str {
    name.strip_suffix(":latest").unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiles::named_models as models;

    #[test]
    fn catalog_groups_by_model_and_sorts() {
        let (a, b): (Arc<str>, Arc<str>) = ("b-end".into(), "a-end".into());
        let la = models(&["phi3", "llama3"]);
        let lb = models(&["llama3"]);
        let catalog = ModelCatalog::build([
            Listing {
                endpoint: &a,
                kind: EndpointType::Ollama,
                status: Status::Healthy,
                models: Some(&la),
            },
            Listing {
                endpoint: &b,
                kind: EndpointType::Vllm,
                status: Status::Unhealthy,
                models: Some(&lb),
            },
        ]);
        let names: Vec<&str> = catalog.models.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["llama3", "phi3"]);
        let llama = &catalog.models[0];
        let ends: Vec<&str> = llama.endpoints().map(|e| e.as_ref()).collect();
        assert_eq!(ends, ["a-end", "b-end"]);
        let routable: Vec<&str> = llama.routable_endpoints().map(|e| e.as_ref()).collect();
        assert_eq!(routable, ["b-end"]);
        let vllm = RouteClass::Provider(EndpointType::Vllm);
        assert_eq!(
            llama.available(vllm).count(),
            0,
            "the vLLM one is unhealthy"
        );
        assert_eq!(llama.available(RouteClass::OpenAi).count(), 1);
    }

    #[test]
    fn models_are_found_by_either_spelling_and_know_their_facts() {
        let a: Arc<str> = "a".into();
        let mut listed = models(&["llama3:latest", "qwen2.5:7b-instruct-q4_K_M"]);
        listed[0].details.family = Some("llama".into());
        listed[0].details.parameter_size = Some("8.0B".into());
        let catalog = ModelCatalog::build([Listing {
            endpoint: &a,
            kind: EndpointType::Ollama,
            status: Status::Healthy,
            models: Some(&listed),
        }]);
        let llama = catalog.find("llama3").unwrap();
        assert_eq!(llama.name, "llama3:latest");
        assert_eq!(
            (llama.facts.family.as_str(), llama.facts.variant.as_str()),
            ("llama", "3")
        );
        assert_eq!(llama.facts.parameter_size, "8b");
        let qwen = catalog.find("qwen2.5:7b-instruct-q4_K_M").unwrap();
        assert_eq!(qwen.facts.quantization, "q4km");
        assert!(catalog.find("phi3").is_none());
    }

    #[test]
    fn latest_tag_is_the_bare_name() {
        assert!(model_matches("llama3:latest", "llama3"));
        assert!(model_matches("llama3", "llama3:latest"));
        assert!(!model_matches("llama3:8b", "llama3"));
    }
}
