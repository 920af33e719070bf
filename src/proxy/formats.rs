//! The model list shapes of Olla's catalogue (SPEC 12): `unified` (Olla's own, the default of
//! `/olla/models`) and each platform's native list — OpenAI, Ollama's `/api/tags`, LM
//! Studio's `/api/v0/models`, vLLM, SGLang, llama.cpp, Lemonade, LMDeploy, Docker Model
//! Runner, vLLM-MLX — and Olla's one-model summary of `/olla/models/{id}`.
//!
//! Pure: `listing` picks the models and their sources from the published catalog; this
//! module only renders them. Field names and defaults are Olla's.

use std::time::SystemTime;

use corral_actors::catalog::{CatalogModel, ModelSource};
use corral_actors::display;
use corral_actors::model_facts::{ollama_quantization, ModelFacts};
use corral_actors::profiles::EndpointType;
use serde_json::{json, Map, Value};

/// Which platform's list shape a listing answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Unified,
    OpenAi,
    Ollama,
    LmStudio,
    Vllm,
    Sglang,
    LlamaCpp,
    Lemonade,
    LmDeploy,
    DockerModelRunner,
    VllmMlx,
}

impl Format {
    pub const ALL: [Format; 11] = [
        Format::Unified,
        Format::OpenAi,
        Format::Ollama,
        Format::LmStudio,
        Format::Vllm,
        Format::Sglang,
        Format::LlamaCpp,
        Format::Lemonade,
        Format::LmDeploy,
        Format::DockerModelRunner,
        Format::VllmMlx,
    ];

    /// The name `?format=` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Unified => "unified",
            Format::OpenAi => "openai",
            Format::Ollama => "ollama",
            Format::LmStudio => "lmstudio",
            Format::Vllm => "vllm",
            Format::Sglang => "sglang",
            Format::LlamaCpp => "llamacpp",
            Format::Lemonade => "lemonade",
            Format::LmDeploy => "lmdeploy",
            Format::DockerModelRunner => "docker-model-runner",
            Format::VllmMlx => "vllm-mlx",
        }
    }

    pub fn parse(s: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.as_str() == s)
    }

    /// Whether the format lists the models of an endpoint of this type: `unified` and
    /// `openai` list every endpoint's (every type speaks OpenAI's API, SPEC 5.1), a
    /// platform's format only its own. Matched on the type's name, so that backend types
    /// added to the profiles later join their format without an edit here.
    pub fn admits(self, kind: EndpointType) -> bool {
        let names: &[&str] = match self {
            Format::Unified | Format::OpenAi => return true,
            Format::Ollama => &["ollama"],
            Format::LmStudio => &["lm-studio"],
            Format::Vllm => &["vllm"],
            Format::Sglang => &["sglang"],
            Format::LlamaCpp => &["llamacpp"],
            Format::Lemonade => &["lemonade"],
            Format::LmDeploy => &["lmdeploy"],
            Format::DockerModelRunner => &["docker-model-runner", "dmr"],
            Format::VllmMlx => &["vllm-mlx"],
        };
        names.contains(&kind.as_str())
    }
}

/// One model as a listing shows it.
pub struct Listed<'a> {
    pub model: &'a CatalogModel,
    /// The sources the listing admits, routable ones first (in endpoint order within each);
    /// never empty. The first gives the per-endpoint fields (size, state, digest).
    pub sources: Vec<&'a ModelSource>,
}

impl Listed<'_> {
    fn first(&self) -> &ModelSource {
        self.sources[0]
    }
}

/// What is the same for every entry of one answer.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    /// Unix seconds written as `created` (Corral's start: stable from one poll to the next).
    pub created: u64,
    /// Written where a platform's shape wants a time the backend did not report.
    pub fallback_time: SystemTime,
}

/// A model's state on one endpoint, as Olla's `availability` writes it: `offline` while the
/// endpoint is out of rotation, else what the backend reports (LM Studio's `loaded`,
/// `not-loaded`), else `available`.
pub fn source_state(s: &ModelSource) -> &str {
    if !s.status.is_routable() {
        return "offline";
    }
    s.info.state.as_deref().unwrap_or("available")
}

/// The whole answer in `format`'s shape.
pub fn render(format: Format, listed: &[Listed<'_>], cx: Context) -> Value {
    let entries: Vec<Value> = listed.iter().map(|l| entry(format, l, cx)).collect();
    match format {
        Format::Ollama => json!({ "models": entries }),
        _ => json!({ "object": "list", "data": entries }),
    }
}

fn entry(format: Format, l: &Listed<'_>, cx: Context) -> Value {
    let id = l.model.name.as_str();
    let f = &l.model.facts;
    let base = |owner: &str| json!({ "id": id, "object": "model", "created": cx.created, "owned_by": owner });
    match format {
        Format::Unified => unified(l, cx),
        Format::OpenAi => base("olla"),
        Format::Ollama => ollama(l, cx),
        Format::LmStudio => lm_studio(l),
        Format::Vllm => {
            let mut v = base(&owner(id, "vllm"));
            v["root"] = json!(id);
            if let Some(n) = f.max_context_length {
                v["max_model_len"] = json!(n);
            }
            v["permission"] = json!([permission(id, cx.created)]);
            v
        }
        Format::Sglang => {
            let mut v = base(&owner(id, "sglang"));
            v["root"] = json!(id);
            if let Some(n) = f.max_context_length {
                v["max_model_len"] = json!(n);
            }
            if f.capabilities.contains(&"vision") {
                v["supports_vision"] = json!(true);
            }
            v
        }
        Format::LlamaCpp => base(&owner(id, "llamacpp")),
        Format::Lemonade => {
            let mut v = base(&owner(id, "lemonade"));
            v["checkpoint"] = json!("");
            v["recipe"] = json!("");
            // Lemonade lists downloaded models by default; a listed model is one.
            v["downloaded"] = json!(true);
            v
        }
        Format::LmDeploy => {
            let mut v = base(&owner(id, "lmdeploy"));
            v["permission"] = json!([permission(id, cx.created)]);
            v
        }
        Format::DockerModelRunner => base(&owner(id, "docker")),
        Format::VllmMlx => base(&owner(id, "vllm-mlx")),
    }
}

/// Olla's unified entry: OpenAI's four fields and Olla's extension.
fn unified(l: &Listed<'_>, cx: Context) -> Value {
    let f = &l.model.facts;
    let availability: Vec<Value> = l
        .sources
        .iter()
        .map(|s| json!({ "endpoint": s.endpoint.as_ref(), "state": source_state(s) }))
        .collect();
    let mut olla = json!({
        "family": f.family,
        "variant": f.variant,
        "parameter_size": f.parameter_size,
        "quantization": f.quantization,
        // Filled by `model_aliases`.
        "aliases": [],
        "availability": availability,
        "capabilities": f.capabilities,
    });
    if let Some(n) = f.max_context_length {
        olla["max_context_length"] = json!(n);
    }
    json!({
        "id": l.model.name,
        "object": "model",
        "owned_by": "olla",
        "created": cx.created,
        "olla": olla,
    })
}

/// The quantisation as Ollama and LM Studio spell it: the backend's own words, else the
/// normalised form turned back (`q4km` → `Q4_K_M`); empty when unknown.
fn platform_quantization(f: &ModelFacts) -> String {
    match &f.reported_quantization {
        Some(q) => q.clone(),
        None if f.quantization.is_empty() => String::new(),
        None => ollama_quantization(&f.quantization),
    }
}

/// Ollama's `/api/tags` entry.
fn ollama(l: &Listed<'_>, cx: Context) -> Value {
    let f = &l.model.facts;
    let s = l.first();
    let d = &s.info.details;
    json!({
        "name": l.model.name,
        "model": l.model.name,
        "modified_at": d.modified_at.clone().unwrap_or_else(|| display::rfc3339(cx.fallback_time)),
        "size": s.info.size.unwrap_or(0),
        "digest": d.digest.as_deref().unwrap_or(""),
        "details": {
            "family": f.family,
            "parameter_size": f.reported_parameter_size.as_deref().unwrap_or(&f.parameter_size),
            "quantization_level": platform_quantization(f),
        },
    })
}

/// LM Studio's `/api/v0/models` entry.
fn lm_studio(l: &Listed<'_>) -> Value {
    let f = &l.model.facts;
    let s = l.first();
    let mut v = Map::new();
    v.insert("id".into(), json!(l.model.name));
    v.insert("object".into(), json!("model"));
    v.insert("type".into(), json!(f.kind.as_str()));
    if let Some(p) = &s.info.details.publisher {
        v.insert("publisher".into(), json!(p));
    }
    if !f.family.is_empty() {
        v.insert("arch".into(), json!(f.family));
    }
    let quant = platform_quantization(f);
    if !quant.is_empty() {
        v.insert("quantization".into(), json!(quant));
    }
    v.insert(
        "state".into(),
        json!(s.info.state.as_deref().unwrap_or("not-loaded")),
    );
    if let Some(n) = f.max_context_length {
        v.insert("max_context_length".into(), json!(n));
    }
    Value::Object(v)
}

/// The permission vLLM and LMDeploy attach to a model (theirs by default: sampling,
/// logprobs and view allowed).
fn permission(id: &str, created: u64) -> Value {
    json!({
        "id": format!("modelperm-olla-{}", id.replace('/', "-")),
        "object": "model_permission",
        "created": created,
        "allow_create_engine": false,
        "allow_sampling": true,
        "allow_logprobs": true,
        "allow_search_indices": false,
        "allow_view": true,
        "allow_fine_tuning": false,
        "organization": "*",
        "group": null,
        "is_blocking": false,
    })
}

/// Organisations whose name leads a model name (`meta-llama-3`): Olla's list.
const ORGANISATIONS: &[&str] = &[
    "openai",
    "anthropic",
    "google",
    "meta",
    "microsoft",
    "amazon",
    "xai",
    "apple",
    "cohere",
    "ai21",
    "databricks",
    "snowflake",
    "ibm",
    "salesforce",
    "nvidia",
    "mistral",
    "qwen",
    "alibaba",
    "deepseek",
    "zhipuai",
    "tii",
    "01ai",
    "baichuan",
    "stability",
    "eleutherai",
    "mosaicml",
    "bigcode",
    "servicenow",
    "cerebras",
    "nomic",
    "huggingface",
    "openrouter",
    "together",
    "replicate",
    "fireworks",
    "perplexity",
    "groq",
];

/// A platform's `owned_by` for a model: the organisation of `org/model`, or a known
/// organisation leading the name (`meta-llama-3-8b` → `meta`), else the platform's default.
pub fn owner(id: &str, default: &str) -> String {
    if let Some((org, _)) = id.split_once('/') {
        if !org.is_empty() {
            return org.to_string();
        }
    }
    match id.split_once('-') {
        Some((first, _)) if ORGANISATIONS.contains(&first.to_ascii_lowercase().as_str()) => {
            first.to_string()
        }
        _ => default.to_string(),
    }
}

/// Olla's summary of one model (`GET /olla/models/{id}`). `last_seen`: when a model
/// discovery last listed it, if known.
pub fn summary(model: &CatalogModel, last_seen: Option<SystemTime>, now: SystemTime) -> Value {
    let f = &model.facts;
    let disk: u64 = model.sources.iter().find_map(|s| s.info.size).unwrap_or(0);
    let loaded: Vec<&str> = model
        .sources
        .iter()
        .filter(|s| s.status.is_routable() && s.info.state.as_deref() == Some("loaded"))
        .map(|s| s.endpoint.as_ref())
        .collect();
    let mut v = json!({
        "id": model.name,
        "family": f.family,
        "variant": f.variant,
        "parameter_size": f.parameter_size,
        "quantization": f.quantization,
        "format": f.format,
        "total_disk_size": display::bytes(disk),
        "last_seen": last_seen.map_or_else(|| "never".to_string(), |t| display::ago(t, now)),
        "aliases": [],
        "endpoints": model.endpoints().map(|e| e.as_ref()).collect::<Vec<_>>(),
        "loaded_endpoints": loaded,
        "capabilities": f.capabilities,
        "parameter_count": f.parameter_count,
        "availability": model
            .sources
            .iter()
            .map(|s| json!({ "endpoint": s.endpoint.as_ref(), "state": source_state(s) }))
            .collect::<Vec<_>>(),
    });
    if let Some(n) = f.max_context_length {
        v["max_context_length"] = json!(n);
    }
    v
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use corral_actors::catalog::{Listing, ModelCatalog};
    use corral_actors::health::Status;
    use corral_actors::profiles::{ModelDetails, ModelInfo};

    use super::*;

    const CX: Context = Context {
        created: 1_700_000_000,
        fallback_time: SystemTime::UNIX_EPOCH,
    };

    /// One Ollama endpoint with a detailed model and one LM Studio endpoint.
    fn catalog() -> ModelCatalog {
        let (o, l): (Arc<str>, Arc<str>) = ("ollama-1".into(), "lms-1".into());
        let mut llama = ModelInfo::named("llama3.1:8b");
        llama.size = Some(4_920_753_328);
        llama.details = ModelDetails {
            family: Some("llama".into()),
            parameter_size: Some("8.0B".into()),
            quantization: Some("Q4_K_M".into()),
            digest: Some("sha256:abc".into()),
            modified_at: Some("2024-08-01T10:00:00Z".into()),
            ..ModelDetails::default()
        };
        let mut phi = ModelInfo::named("microsoft/phi-3-mini-4k-instruct");
        phi.state = Some("loaded".into());
        phi.details.max_context_length = Some(4096);
        phi.details.kind = Some("llm".into());
        let ollama = vec![llama];
        let lms = vec![phi];
        ModelCatalog::build([
            Listing {
                endpoint: &o,
                kind: EndpointType::Ollama,
                status: Status::Healthy,
                models: Some(&ollama),
            },
            Listing {
                endpoint: &l,
                kind: EndpointType::LmStudio,
                status: Status::Healthy,
                models: Some(&lms),
            },
        ])
    }

    fn all(c: &ModelCatalog) -> Vec<Listed<'_>> {
        c.models
            .iter()
            .map(|m| Listed {
                model: m,
                sources: m.sources.iter().collect(),
            })
            .collect()
    }

    #[test]
    fn unified_is_olla_s_shape() {
        let c = catalog();
        let v = render(Format::Unified, &all(&c), CX);
        assert_eq!(v["object"], "list");
        let llama = &v["data"][0];
        assert_eq!(llama["id"], "llama3.1:8b");
        assert_eq!(llama["object"], "model");
        assert_eq!(llama["owned_by"], "olla");
        assert_eq!(llama["created"], 1_700_000_000);
        assert_eq!(
            llama["olla"],
            json!({
                "family": "llama", "variant": "3.1", "parameter_size": "8b",
                "quantization": "q4km", "aliases": [],
                "availability": [{ "endpoint": "ollama-1", "state": "available" }],
                "capabilities": ["chat", "completion", "text-generation"],
            })
        );
        assert_eq!(v["data"][1]["olla"]["max_context_length"], 4096);
        assert_eq!(v["data"][1]["olla"]["availability"][0]["state"], "loaded");
    }

    #[test]
    fn ollama_and_lm_studio_speak_their_own_spelling() {
        let c = catalog();
        let listed = all(&c);
        let v = render(Format::Ollama, &listed[..1], CX);
        assert_eq!(
            v,
            json!({ "models": [{
                "name": "llama3.1:8b", "model": "llama3.1:8b",
                "modified_at": "2024-08-01T10:00:00Z", "size": 4_920_753_328u64,
                "digest": "sha256:abc",
                "details": { "family": "llama", "parameter_size": "8.0B", "quantization_level": "Q4_K_M" },
            }]})
        );
        let v = render(Format::LmStudio, &listed[1..], CX);
        assert_eq!(
            v["data"][0],
            json!({
                "id": "microsoft/phi-3-mini-4k-instruct", "object": "model", "type": "llm",
                "arch": "phi", "state": "loaded", "max_context_length": 4096,
            })
        );
    }

    #[test]
    fn vllm_family_shapes_carry_their_extras() {
        let c = catalog();
        let listed = all(&c);
        let v = render(Format::Vllm, &listed[1..], CX);
        let m = &v["data"][0];
        assert_eq!(m["owned_by"], "microsoft");
        assert_eq!(m["root"], "microsoft/phi-3-mini-4k-instruct");
        assert_eq!(m["max_model_len"], 4096);
        assert_eq!(
            m["permission"][0]["id"],
            "modelperm-olla-microsoft-phi-3-mini-4k-instruct"
        );
        assert_eq!(m["permission"][0]["group"], Value::Null);
        let v = render(Format::LlamaCpp, &listed[..1], CX);
        assert_eq!(
            v["data"][0],
            json!({ "id": "llama3.1:8b", "object": "model", "created": 1_700_000_000, "owned_by": "llamacpp" })
        );
        let v = render(Format::Lemonade, &listed[..1], CX);
        assert_eq!(v["data"][0]["downloaded"], true);
        let v = render(Format::DockerModelRunner, &listed[..1], CX);
        assert_eq!(v["data"][0]["owned_by"], "docker");
        let v = render(Format::OpenAi, &listed, CX);
        assert_eq!(v["data"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn formats_admit_their_own_types() {
        assert!(Format::OpenAi.admits(EndpointType::Ollama));
        assert!(Format::Unified.admits(EndpointType::Vllm));
        assert!(Format::Ollama.admits(EndpointType::Ollama));
        assert!(!Format::Ollama.admits(EndpointType::Vllm));
        assert!(Format::LmStudio.admits(EndpointType::LmStudio));
        assert!(!Format::Lemonade.admits(EndpointType::OpenAiCompatible));
        for f in Format::ALL {
            assert_eq!(Format::parse(f.as_str()), Some(f));
        }
        assert_eq!(Format::parse("OLLAMA"), None);
    }

    #[test]
    fn owners_as_olla_reads_them() {
        assert_eq!(owner("Qwen/Qwen2.5-7B", "vllm"), "Qwen");
        assert_eq!(owner("meta-llama-3-8b", "vllm"), "meta");
        assert_eq!(owner("llama3:8b", "vllm"), "vllm");
        assert_eq!(owner("/odd", "x"), "x");
    }

    #[test]
    fn the_summary_is_olla_s() {
        let c = catalog();
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(100);
        let v = summary(
            &c.models[0],
            Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(40)),
            now,
        );
        assert_eq!(v["id"], "llama3.1:8b");
        assert_eq!(v["total_disk_size"], "4.58 GB");
        assert_eq!(v["last_seen"], "1m ago");
        assert_eq!(v["endpoints"], json!(["ollama-1"]));
        assert_eq!(v["loaded_endpoints"], json!([]));
        assert_eq!(v["parameter_count"], 8_000_000_000u64);
        assert_eq!(
            summary(&c.models[1], None, now)["loaded_endpoints"],
            json!(["lms-1"])
        );
    }
}
