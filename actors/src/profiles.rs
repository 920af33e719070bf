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
}

impl ModelInfo {
    /// A model known by name only.
    pub fn named(name: impl Into<String>) -> Self {
        ModelInfo {
            name: name.into(),
            state: None,
            size: None,
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

/// Ollama: `{"models":[{"name":…,"size":…}]}`.
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
            })
        })
        .collect())
}

/// OpenAI and LM Studio: `{"data":[{"id":…,"state":…}]}`.
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
                state: m.get("state").and_then(|s| s.as_str()).map(str::to_string),
                size: None,
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
