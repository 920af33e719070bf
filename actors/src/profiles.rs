//! Platform profiles (SPEC 4.1): what each backend type is called, where its health and model
//! endpoints live by default, and how its model list is shaped.
//!
//! Used by config loading (defaults, type names), by the endpoint actor (parsing discovered
//! model lists) and by routing (which provider routes an endpoint serves).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Which endpoints a route may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    /// `/olla/<provider>/…`: endpoints of exactly this type.
    Provider(EndpointType),
    /// `/olla/openai/…`, `/v1/…`: every endpoint that speaks the OpenAI API (all of them).
    OpenAi,
    /// `/olla/proxy/…`: any endpoint.
    Any,
}

impl RouteClass {
    pub fn accepts(self, kind: EndpointType) -> bool {
        match self {
            RouteClass::Provider(p) => p == kind,
            RouteClass::OpenAi | RouteClass::Any => true,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RouteClass::Provider(p) => p.as_str(),
            RouteClass::OpenAi => "openai",
            RouteClass::Any => "proxy",
        }
    }
}

impl fmt::Display for RouteClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of LLM server behind an endpoint: Olla's platform profiles, under Olla's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndpointType {
    Ollama,
    LmStudio,
    Vllm,
    LlamaCpp,
    Sglang,
    /// AMD's Lemonade server: everything lives under `/api/v1`.
    Lemonade,
    /// The LiteLLM gateway in front of other providers.
    LiteLlm,
    LmDeploy,
    /// Docker Model Runner: everything lives under `/engines` (Olla's prefix: `dmr`).
    DockerModelRunner,
    /// oMLX, an MLX server for Apple Silicon.
    Omlx,
    VllmMlx,
    OpenAiCompatible,
    Auto,
}

impl EndpointType {
    /// The names a config may write (the canonical ones, plus `openai`); [`FromStr`] also
    /// takes Olla's other spellings.
    pub const NAMES: &'static [&'static str] = &[
        "ollama",
        "lm-studio",
        "vllm",
        "llamacpp",
        "sglang",
        "lemonade",
        "litellm",
        "lmdeploy",
        "docker-model-runner",
        "omlx",
        "vllm-mlx",
        "openai-compatible",
        "openai",
        "auto",
    ];

    /// Every type, for tables and tests.
    pub const ALL: &'static [EndpointType] = &[
        EndpointType::Ollama,
        EndpointType::LmStudio,
        EndpointType::Vllm,
        EndpointType::LlamaCpp,
        EndpointType::Sglang,
        EndpointType::Lemonade,
        EndpointType::LiteLlm,
        EndpointType::LmDeploy,
        EndpointType::DockerModelRunner,
        EndpointType::Omlx,
        EndpointType::VllmMlx,
        EndpointType::OpenAiCompatible,
        EndpointType::Auto,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EndpointType::Ollama => "ollama",
            EndpointType::LmStudio => "lm-studio",
            EndpointType::Vllm => "vllm",
            EndpointType::LlamaCpp => "llamacpp",
            EndpointType::Sglang => "sglang",
            EndpointType::Lemonade => "lemonade",
            EndpointType::LiteLlm => "litellm",
            EndpointType::LmDeploy => "lmdeploy",
            EndpointType::DockerModelRunner => "docker-model-runner",
            EndpointType::Omlx => "omlx",
            EndpointType::VllmMlx => "vllm-mlx",
            EndpointType::OpenAiCompatible => "openai-compatible",
            EndpointType::Auto => "auto",
        }
    }

    /// The health path used when the config names none (Olla's profiles'
    /// `health_check_path`).
    pub fn default_health_path(self) -> &'static str {
        match self {
            EndpointType::Ollama | EndpointType::Auto => "/",
            EndpointType::LmStudio | EndpointType::OpenAiCompatible => "/v1/models",
            EndpointType::Lemonade => "/api/v1/health",
            // DMR has no health route of its own: its model list is its check.
            EndpointType::DockerModelRunner => "/engines/v1/models",
            EndpointType::Vllm
            | EndpointType::LlamaCpp
            | EndpointType::Sglang
            | EndpointType::LiteLlm
            | EndpointType::LmDeploy
            | EndpointType::Omlx
            | EndpointType::VllmMlx => "/health",
        }
    }

    /// The model-list path used when the config names none (Olla's profiles'
    /// `model_discovery_path`).
    pub fn default_model_path(self) -> &'static str {
        match self {
            EndpointType::Ollama => "/api/tags",
            EndpointType::LmStudio => "/api/v0/models",
            EndpointType::Lemonade => "/api/v1/models",
            EndpointType::DockerModelRunner => "/engines/v1/models",
            _ => "/v1/models",
        }
    }

    /// Parses a model list as this type serves it: Ollama's `models`, else the OpenAI list
    /// (every other type, the newer ones included, answers `{"data":[{"id":…}]}`).
    pub fn parse_models(self, body: &[u8]) -> Result<Vec<ModelInfo>, ModelListError> {
        match self {
            EndpointType::Ollama => parse_ollama(body),
            EndpointType::Auto => parse_ollama(body).or_else(|_| parse_openai(body)),
            _ => parse_openai(body),
        }
    }
}

/// The most models one endpoint's list may keep (SPEC 11).
pub const MAX_MODELS: usize = 10_000;
/// The longest model name kept, in bytes (SPEC 11).
pub const MAX_MODEL_NAME: usize = 256;

/// What a backend sent, bounded before it is kept: names longer than [`MAX_MODEL_NAME`] and
/// models beyond [`MAX_MODELS`] are dropped. Returns the kept list and how many were dropped.
pub fn bound_models(models: Vec<ModelInfo>) -> (Vec<ModelInfo>, usize) {
    let total = models.len();
    let kept: Vec<ModelInfo> = models
        .into_iter()
        .filter(|m| !m.name.is_empty() && m.name.len() <= MAX_MODEL_NAME)
        .take(MAX_MODELS)
        .collect();
    let dropped = total - kept.len();
    (kept, dropped)
}

impl fmt::Display for EndpointType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EndpointType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "ollama" => EndpointType::Ollama,
            "lm-studio" | "lmstudio" | "lm_studio" => EndpointType::LmStudio,
            "vllm" => EndpointType::Vllm,
            "llamacpp" | "llama-cpp" | "llama.cpp" | "llama_cpp" => EndpointType::LlamaCpp,
            "sglang" => EndpointType::Sglang,
            "lemonade" => EndpointType::Lemonade,
            "litellm" => EndpointType::LiteLlm,
            "lmdeploy" => EndpointType::LmDeploy,
            // Olla accepts a profile's routing prefix as its type, so `dmr` too.
            "docker-model-runner" | "docker_model_runner" | "dmr" => {
                EndpointType::DockerModelRunner
            }
            "omlx" => EndpointType::Omlx,
            "vllm-mlx" | "vllm_mlx" | "vllmmlx" => EndpointType::VllmMlx,
            "openai-compatible" | "openai" | "openai_compatible" => EndpointType::OpenAiCompatible,
            "auto" | "" => EndpointType::Auto,
            other => {
                return Err(format!(
                    "unknown endpoint type `{other}` (expected one of: {})",
                    Self::NAMES.join(", ")
                ))
            }
        })
    }
}

impl<'de> Deserialize<'de> for EndpointType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for EndpointType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One model an endpoint offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelInfo {
    pub name: String,
    /// LM Studio's `loaded` / `not-loaded`; absent elsewhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Size in bytes where the backend reports it (Ollama).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// What else the backend says of the model (the catalog reads family, size and
    /// quantisation from here before it reads them from the name).
    #[serde(flatten)]
    pub details: ModelDetails,
}

/// What a backend reports of a model beyond its name, each field as the backend spells it
/// and only where it reports it. Bounded like the name: a string longer than
/// [`MAX_DETAIL`] is dropped, so a hostile list cannot make Corral keep more than a few
/// hundred bytes per model.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ModelDetails {
    /// Ollama `details.family`, LM Studio `arch`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    /// Ollama `details.parameter_size` (`8.0B`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter_size: Option<String>,
    /// Ollama `details.quantization_level`, LM Studio `quantization` (`Q4_K_M`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantization: Option<String>,
    /// Ollama `details.format`, LM Studio `compatibility_type` (`gguf`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// LM Studio `type`: `llm`, `vlm` or `embeddings`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// LM Studio `publisher`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publisher: Option<String>,
    /// Ollama `digest`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Ollama `modified_at`, as sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modified_at: Option<String>,
    /// In tokens: LM Studio `max_context_length`, vLLM `max_model_len`, llama.cpp
    /// `meta.n_ctx_train`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_context_length: Option<u64>,
}

/// The longest detail string kept, in bytes (a digest is 71).
pub const MAX_DETAIL: usize = 128;

impl ModelDetails {
    /// Ollama's `/api/tags` entry: `digest`, `modified_at` and `details{…}`.
    fn from_ollama(m: &serde_json::Value) -> Self {
        let d = m.get("details");
        let inner = |key: &str| d.and_then(|d| bounded_str(d, key));
        ModelDetails {
            family: inner("family"),
            parameter_size: inner("parameter_size"),
            quantization: inner("quantization_level"),
            format: inner("format"),
            digest: bounded_str(m, "digest"),
            modified_at: bounded_str(m, "modified_at"),
            ..ModelDetails::default()
        }
    }

    /// An OpenAI-shaped entry with whatever extras the server adds: LM Studio's `arch`,
    /// `type`, `quantization`, `publisher`, `compatibility_type`, `max_context_length`;
    /// vLLM's `max_model_len`; llama.cpp's `meta.n_ctx_train`.
    fn from_openai(m: &serde_json::Value) -> Self {
        let context = ["max_context_length", "max_model_len"]
            .iter()
            .find_map(|k| m.get(*k).and_then(|v| v.as_u64()))
            .or_else(|| m.pointer("/meta/n_ctx_train").and_then(|v| v.as_u64()));
        ModelDetails {
            family: bounded_str(m, "arch"),
            quantization: bounded_str(m, "quantization"),
            format: bounded_str(m, "compatibility_type"),
            kind: bounded_str(m, "type"),
            publisher: bounded_str(m, "publisher"),
            max_context_length: context.filter(|n| *n > 0),
            ..ModelDetails::default()
        }
    }
}

/// A non-empty string field no longer than [`MAX_DETAIL`].
fn bounded_str(v: &serde_json::Value, key: &str) -> Option<String> {
    let s = v.get(key)?.as_str()?.trim();
    (!s.is_empty() && s.len() <= MAX_DETAIL).then(|| s.to_string())
}

impl ModelInfo {
    /// A model known by name only.
    pub fn named(name: impl Into<String>) -> Self {
        ModelInfo {
            name: name.into(),
            state: None,
            size: None,
            details: ModelDetails::default(),
        }
    }
}

/// Models known by name only (test fixtures across the crate).
#[cfg(test)]
pub(crate) fn named_models(names: &[&str]) -> Vec<ModelInfo> {
    names.iter().map(|n| ModelInfo::named(*n)).collect()
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModelListError {
    #[error("model list is not JSON: {0}")]
    NotJson(String),
    #[error("model list has no `{0}` array")]
    MissingArray(&'static str),
}

fn parse_json(body: &[u8]) -> Result<serde_json::Value, ModelListError> {
    serde_json::from_slice(body).map_err(|e| ModelListError::NotJson(e.to_string()))
}

/// Ollama: `{"models":[{"name":…,"size":…,"digest":…,"details":{…}}]}`.
fn parse_ollama(body: &[u8]) -> Result<Vec<ModelInfo>, ModelListError> {
    let json = parse_json(body)?;
    let list = json
        .get("models")
        .and_then(|m| m.as_array())
        .ok_or(ModelListError::MissingArray("models"))?;
    Ok(list
        .iter()
        .filter_map(|m| {
            let name = m.get("name").or_else(|| m.get("model"))?.as_str()?;
            Some(ModelInfo {
                name: name.to_string(),
                state: None,
                size: m.get("size").and_then(|s| s.as_u64()),
                details: ModelDetails::from_ollama(m),
            })
        })
        .collect())
}

/// OpenAI and LM Studio: `{"data":[{"id":…,"state":…}]}`, with the extras of
/// [`ModelDetails::from_openai`].
fn parse_openai(body: &[u8]) -> Result<Vec<ModelInfo>, ModelListError> {
    let json = parse_json(body)?;
    let list = json
        .get("data")
        .and_then(|m| m.as_array())
        .ok_or(ModelListError::MissingArray("data"))?;
    Ok(list
        .iter()
        .filter_map(|m| {
            Some(ModelInfo {
                name: m.get("id")?.as_str()?.to_string(),
                state: bounded_str(m, "state"),
                size: None,
                details: ModelDetails::from_openai(m),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_lists_are_bounded_before_they_are_kept() {
        let mut models = named_models(&["ok"]);
        models.push(ModelInfo::named("x".repeat(MAX_MODEL_NAME + 1)));
        models.push(ModelInfo::named(""));
        models.extend((0..MAX_MODELS + 5).map(|i| ModelInfo::named(format!("m{i}"))));
        let (kept, dropped) = bound_models(models);
        assert_eq!(kept.len(), MAX_MODELS);
        assert_eq!(kept[0].name, "ok");
        assert_eq!(dropped, 2 + 6);
    }

    #[test]
    fn default_paths_match_the_table() {
        use EndpointType::*;
        let table = [
            (Ollama, "/", "/api/tags"),
            (LmStudio, "/v1/models", "/api/v0/models"),
            (Vllm, "/health", "/v1/models"),
            (LlamaCpp, "/health", "/v1/models"),
            (Sglang, "/health", "/v1/models"),
            (Lemonade, "/api/v1/health", "/api/v1/models"),
            (LiteLlm, "/health", "/v1/models"),
            (LmDeploy, "/health", "/v1/models"),
            (
                DockerModelRunner,
                "/engines/v1/models",
                "/engines/v1/models",
            ),
            (Omlx, "/health", "/v1/models"),
            (VllmMlx, "/health", "/v1/models"),
            (OpenAiCompatible, "/v1/models", "/v1/models"),
            (Auto, "/", "/v1/models"),
        ];
        assert_eq!(table.len(), EndpointType::ALL.len());
        for (t, health, models) in table {
            assert_eq!(t.default_health_path(), health, "{t}");
            assert_eq!(t.default_model_path(), models, "{t}");
        }
    }

    #[test]
    fn type_names_and_aliases_parse() {
        assert_eq!(
            "openai".parse::<EndpointType>(),
            Ok(EndpointType::OpenAiCompatible)
        );
        assert_eq!(
            "lmstudio".parse::<EndpointType>(),
            Ok(EndpointType::LmStudio)
        );
        assert_eq!(
            "LM-Studio".parse::<EndpointType>(),
            Ok(EndpointType::LmStudio)
        );
        assert_eq!(
            "llama.cpp".parse::<EndpointType>(),
            Ok(EndpointType::LlamaCpp)
        );
        for name in EndpointType::NAMES {
            assert!(name.parse::<EndpointType>().is_ok(), "{name}");
        }
        for t in EndpointType::ALL {
            assert_eq!(t.as_str().parse::<EndpointType>(), Ok(*t));
        }
        for (name, t) in [
            ("lm_studio", EndpointType::LmStudio),
            ("dmr", EndpointType::DockerModelRunner),
            ("Docker-Model-Runner", EndpointType::DockerModelRunner),
            ("vllm_mlx", EndpointType::VllmMlx),
            ("LiteLLM", EndpointType::LiteLlm),
        ] {
            assert_eq!(name.parse::<EndpointType>(), Ok(t), "{name}");
        }
        let err = "olama".parse::<EndpointType>().unwrap_err();
        assert!(err.contains("unknown endpoint type `olama`"), "{err}");
    }

    #[test]
    fn parses_ollama_tags() {
        let body = br#"{"models":[{"name":"llama3:8b","size":4661224676},{"name":"phi3"}]}"#;
        let models = EndpointType::Ollama.parse_models(body).unwrap();
        assert_eq!(models.len(), 2);
        assert_eq!(models[0].name, "llama3:8b");
        assert_eq!(models[0].size, Some(4661224676));
    }

    #[test]
    fn keeps_what_ollama_reports_of_a_model() {
        let body = br#"{"models":[{"name":"llama3.1:8b","model":"llama3.1:8b","size":4920753328,
            "digest":"sha256:46e0c10c039e019119339687c3c1757cc81b9da49709a3b3924863ba87ca666e",
            "modified_at":"2024-08-01T10:00:00.123+10:00",
            "details":{"parent_model":"","format":"gguf","family":"llama","families":["llama"],
            "parameter_size":"8.0B","quantization_level":"Q4_K_M"}}]}"#;
        let m = &EndpointType::Ollama.parse_models(body).unwrap()[0];
        let d = &m.details;
        assert_eq!(d.family.as_deref(), Some("llama"));
        assert_eq!(d.parameter_size.as_deref(), Some("8.0B"));
        assert_eq!(d.quantization.as_deref(), Some("Q4_K_M"));
        assert_eq!(d.format.as_deref(), Some("gguf"));
        assert_eq!(d.digest.as_deref().map(str::len), Some(71));
        assert_eq!(
            d.modified_at.as_deref(),
            Some("2024-08-01T10:00:00.123+10:00")
        );
    }

    #[test]
    fn keeps_what_openai_shaped_lists_add() {
        let lm_studio = br#"{"data":[{"id":"qwen2-vl-7b-instruct","object":"model","type":"vlm",
            "publisher":"mlx-community","arch":"qwen2_vl","compatibility_type":"mlx",
            "quantization":"4bit","state":"not-loaded","max_context_length":32768}]}"#;
        let d = &EndpointType::LmStudio.parse_models(lm_studio).unwrap()[0].details;
        assert_eq!(d.kind.as_deref(), Some("vlm"));
        assert_eq!(d.family.as_deref(), Some("qwen2_vl"));
        assert_eq!(d.publisher.as_deref(), Some("mlx-community"));
        assert_eq!(d.format.as_deref(), Some("mlx"));
        assert_eq!(d.quantization.as_deref(), Some("4bit"));
        assert_eq!(d.max_context_length, Some(32768));
        let vllm = br#"{"data":[{"id":"m","max_model_len":8192}]}"#;
        let d = &EndpointType::Vllm.parse_models(vllm).unwrap()[0].details;
        assert_eq!(d.max_context_length, Some(8192));
        let llamacpp = br#"{"data":[{"id":"m","meta":{"n_ctx_train":131072,"n_params":8e9}}]}"#;
        let d = &EndpointType::LlamaCpp.parse_models(llamacpp).unwrap()[0].details;
        assert_eq!(d.max_context_length, Some(131072));
    }

    #[test]
    fn details_are_bounded_and_typed() {
        let long = "x".repeat(MAX_DETAIL + 1);
        let body = format!(
            r#"{{"data":[{{"id":"m","arch":"{long}","type":7,"state":"","max_model_len":-1}}]}}"#
        );
        let m = &EndpointType::Vllm.parse_models(body.as_bytes()).unwrap()[0];
        assert_eq!(m.details, ModelDetails::default());
        assert_eq!(m.state, None);
    }

    #[test]
    fn parses_openai_models() {
        let body = br#"{"object":"list","data":[{"id":"Qwen/Qwen2.5-7B","object":"model"}]}"#;
        let models = EndpointType::Vllm.parse_models(body).unwrap();
        assert_eq!(models[0].name, "Qwen/Qwen2.5-7B");
    }

    #[test]
    fn the_newer_types_read_openai_lists() {
        // Lemonade adds `checkpoint`, `recipe`, `downloaded`; DMR `owned_by: docker`.
        let body = br#"{"object":"list","data":[{"id":"Qwen2.5-0.5B-Instruct-CPU","checkpoint":"amd/Qwen2.5","recipe":"oga-cpu","downloaded":true},{"id":"ai/smollm2","owned_by":"docker"}]}"#;
        for t in [
            EndpointType::Lemonade,
            EndpointType::LiteLlm,
            EndpointType::LmDeploy,
            EndpointType::DockerModelRunner,
            EndpointType::Omlx,
            EndpointType::VllmMlx,
        ] {
            let names: Vec<_> = t
                .parse_models(body)
                .unwrap()
                .into_iter()
                .map(|m| m.name)
                .collect();
            assert_eq!(names, ["Qwen2.5-0.5B-Instruct-CPU", "ai/smollm2"], "{t}");
        }
    }

    #[test]
    fn parses_lm_studio_state() {
        let body =
            br#"{"data":[{"id":"qwen2-7b","state":"loaded"},{"id":"e5","state":"not-loaded"}]}"#;
        let models = EndpointType::LmStudio.parse_models(body).unwrap();
        assert_eq!(models[0].state.as_deref(), Some("loaded"));
        assert_eq!(models[1].state.as_deref(), Some("not-loaded"));
    }

    #[test]
    fn auto_tries_ollama_then_openai() {
        let ollama = br#"{"models":[{"name":"a"}]}"#;
        let openai = br#"{"data":[{"id":"b"}]}"#;
        assert_eq!(
            EndpointType::Auto.parse_models(ollama).unwrap()[0].name,
            "a"
        );
        assert_eq!(
            EndpointType::Auto.parse_models(openai).unwrap()[0].name,
            "b"
        );
    }

    #[test]
    fn rejects_wrong_shapes() {
        assert_eq!(
            EndpointType::Ollama.parse_models(br#"{"data":[]}"#),
            Err(ModelListError::MissingArray("models"))
        );
        assert!(matches!(
            EndpointType::Vllm.parse_models(b"Ollama is running"),
            Err(ModelListError::NotJson(_))
        ));
    }
}
