//! What an LLM server says of its own load (SPEC 10.1): which of its endpoints to read for each
//! backend type, and how to turn the body into a [`LoadReport`]. Pure: the endpoint actor does
//! the GET (with [`MAX_LOAD_BODY`] as its read limit) and calls [`LoadSource::parse`]; what
//! is made of a report (ordering, admission: SPEC 10.2, 10.3) is not decided here.
//!
//! Every parser treats the body as hostile: any bytes give a report or a [`LoadParseError`],
//! never a panic; counts are whole, non-negative and at most [`MAX_COUNT`]; the KV-cache use is
//! a fraction; model lists keep the bounds of [`crate::profiles`]. A body that is well formed
//! but not what the source serves (another server's `/metrics`, a JSON error object) is an
//! error too, so that the actor drops the source rather than trusting a report of nothing.
//!
//! The sample payloads the tests read are real ones: `fixtures/README.md` says where each came
//! from.

pub mod prometheus;

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::profiles::{EndpointType, MAX_MODELS, MAX_MODEL_NAME};

/// What a backend says of its own load at one read. Fields the source lacks are None.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LoadReport {
    /// Requests the backend is working on now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running: Option<u64>,
    /// Requests the backend has accepted and queued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<u64>,
    /// Requests the backend serves at once (llama.cpp slots).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u64>,
    /// KV-cache use, 0.0..=1.0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kv_cache: Option<f64>,
    /// Models in memory now (Ollama /api/ps, LM Studio state=loaded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loaded_models: Option<Vec<String>>,
}

/// Where a backend's own view of its load is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoadSource {
    LlamaCppSlots,
    LlamaCppMetrics,
    VllmMetrics,
    SglangMetrics,
    OllamaPs,
    LmStudioModels,
}

/// Bodies longer than this are not read (the actor enforces it while reading).
pub const MAX_LOAD_BODY: usize = 1 << 20;

/// The largest count a report holds (running, waiting, capacity). Far above any real server,
/// and low enough that sums of a few counts never overflow a `u64` in the code that ranks
/// endpoints.
pub const MAX_COUNT: u64 = 1 << 32;

impl LoadSource {
    pub const ALL: &'static [LoadSource] = &[
        LoadSource::LlamaCppSlots,
        LoadSource::LlamaCppMetrics,
        LoadSource::VllmMetrics,
        LoadSource::SglangMetrics,
        LoadSource::OllamaPs,
        LoadSource::LmStudioModels,
    ];

    /// The sources for a type, in order of preference (llamacpp: slots then metrics); empty
    /// for the types SPEC 10.1 names no source for (openai-compatible, auto, and Olla's
    /// newer types: lemonade, litellm, lmdeploy, docker-model-runner, omlx, vllm-mlx).
    pub fn for_type(kind: EndpointType) -> &'static [LoadSource] {
        match kind {
            EndpointType::LlamaCpp => &[LoadSource::LlamaCppSlots, LoadSource::LlamaCppMetrics],
            EndpointType::Vllm => &[LoadSource::VllmMetrics],
            EndpointType::Sglang => &[LoadSource::SglangMetrics],
            EndpointType::Ollama => &[LoadSource::OllamaPs],
            EndpointType::LmStudio => &[LoadSource::LmStudioModels],
            EndpointType::Lemonade
            | EndpointType::LiteLlm
            | EndpointType::LmDeploy
            | EndpointType::DockerModelRunner
            | EndpointType::Omlx
            | EndpointType::VllmMlx
            | EndpointType::OpenAiCompatible
            | EndpointType::Auto => &[],
        }
    }

    /// The path to GET.
    pub fn path(self) -> &'static str {
        match self {
            LoadSource::LlamaCppSlots => "/slots",
            LoadSource::LlamaCppMetrics | LoadSource::VllmMetrics | LoadSource::SglangMetrics => {
                "/metrics"
            }
            LoadSource::OllamaPs => "/api/ps",
            LoadSource::LmStudioModels => "/api/v0/models",
        }
    }

    /// Short name for logs and status.
    pub fn name(self) -> &'static str {
        match self {
            LoadSource::LlamaCppSlots => "llamacpp /slots",
            LoadSource::LlamaCppMetrics => "llamacpp /metrics",
            LoadSource::VllmMetrics => "vllm /metrics",
            LoadSource::SglangMetrics => "sglang /metrics",
            LoadSource::OllamaPs => "ollama /api/ps",
            LoadSource::LmStudioModels => "lm-studio /api/v0/models",
        }
    }

    /// Parses a 2xx body. Never panics, on any bytes.
    pub fn parse(self, body: &[u8]) -> Result<LoadReport, LoadParseError> {
        if body.len() > MAX_LOAD_BODY {
            return Err(LoadParseError::TooLarge {
                src: self,
                len: body.len(),
            });
        }
        // JSON and the exposition format are both UTF-8; serde_json would not check the parts
        // it skips, so check it all here.
        let text = std::str::from_utf8(body).map_err(|_| LoadParseError::NotUtf8 { src: self })?;
        match self {
            LoadSource::LlamaCppSlots => parse_slots(text),
            LoadSource::OllamaPs => parse_ollama_ps(text),
            LoadSource::LmStudioModels => parse_lm_studio(text),
            LoadSource::LlamaCppMetrics | LoadSource::VllmMetrics | LoadSource::SglangMetrics => {
                parse_metrics(self, text)
            }
        }
    }
}

impl fmt::Display for LoadSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a body is not a load report. One line, naming the source; never quotes the body.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LoadParseError {
    #[error("{src}: body of {len} bytes is over the {MAX_LOAD_BODY}-byte limit")]
    TooLarge { src: LoadSource, len: usize },
    #[error("{src}: body is not UTF-8")]
    NotUtf8 { src: LoadSource },
    #[error("{src}: body is not JSON (line {line}, column {column})")]
    NotJson {
        src: LoadSource,
        line: usize,
        column: usize,
    },
    #[error("{src}: body is not {expected} (line {line}, column {column})")]
    Shape {
        src: LoadSource,
        expected: &'static str,
        line: usize,
        column: usize,
    },
    #[error("{src}: an empty list of slots")]
    NoSlots { src: LoadSource },
    #[error("{src}: slot {index} has neither `is_processing` nor `state`")]
    UnknownSlot { src: LoadSource, index: usize },
    #[error("{src}: {error}")]
    Metrics {
        src: LoadSource,
        error: prometheus::PromError,
    },
    #[error("{src}: line {line}: `{metric}` is {value}, not a count")]
    NotACount {
        src: LoadSource,
        metric: &'static str,
        line: usize,
        value: f64,
    },
    #[error("{src}: `{metric}` adds up to more than {MAX_COUNT}")]
    CountTooLarge {
        src: LoadSource,
        metric: &'static str,
    },
    #[error("{src}: line {line}: `{metric}` is {value}, not a fraction")]
    NotAFraction {
        src: LoadSource,
        metric: &'static str,
        line: usize,
        value: f64,
    },
    #[error("{src}: none of the metrics it reads is there (another server's /metrics?)")]
    NoMetrics { src: LoadSource },
}

impl LoadParseError {
    /// The source whose body this is.
    pub fn source_of(&self) -> LoadSource {
        match self {
            LoadParseError::TooLarge { src, .. }
            | LoadParseError::NotUtf8 { src }
            | LoadParseError::NotJson { src, .. }
            | LoadParseError::Shape { src, .. }
            | LoadParseError::NoSlots { src }
            | LoadParseError::UnknownSlot { src, .. }
            | LoadParseError::Metrics { src, .. }
            | LoadParseError::NotACount { src, .. }
            | LoadParseError::CountTooLarge { src, .. }
            | LoadParseError::NotAFraction { src, .. }
            | LoadParseError::NoMetrics { src } => *src,
        }
    }
}

// ## JSON sources

/// Reads `text` as `T`, telling a body that is not JSON from JSON of another shape. The
/// serde message is left out: it can quote an arbitrarily long string of the body.
fn from_json<'a, T: Deserialize<'a>>(
    src: LoadSource,
    expected: &'static str,
    text: &'a str,
) -> Result<T, LoadParseError> {
    serde_json::from_str(text).map_err(|e| {
        let (line, column) = (e.line(), e.column());
        match e.classify() {
            serde_json::error::Category::Data => LoadParseError::Shape {
                src,
                expected,
                line,
                column,
            },
            _ => LoadParseError::NotJson { src, line, column },
        }
    })
}

/// One llama.cpp slot: recent servers say `is_processing`; older ones a `state` that is 0 when
/// idle and 1 (later 1 to 3: prompt, prompt done, generating) when busy.
#[derive(Deserialize)]
struct Slot {
    #[serde(default)]
    is_processing: Option<bool>,
    #[serde(default)]
    state: Option<u64>,
}

impl Slot {
    fn busy(&self) -> Option<bool> {
        self.is_processing.or(self.state.map(|s| s != 0))
    }
}

/// llama.cpp `GET /slots`: one object per slot.
fn parse_slots(text: &str) -> Result<LoadReport, LoadParseError> {
    const SRC: LoadSource = LoadSource::LlamaCppSlots;
    const EXPECTED: &str = "an array of slots with `is_processing` or `state`";
    let slots: Vec<Slot> = from_json(SRC, EXPECTED, text)?;
    if slots.is_empty() {
        // A capacity of 0 would divide by zero downstream; no llama-server has no slot.
        return Err(LoadParseError::NoSlots { src: SRC });
    }
    let mut running = 0u64;
    for (index, slot) in slots.iter().enumerate() {
        match slot.busy() {
            Some(true) => running += 1,
            Some(false) => {}
            None => return Err(LoadParseError::UnknownSlot { src: SRC, index }),
        }
    }
    // At most MAX_LOAD_BODY / 2 slots fit in a body (`{}` each), well under MAX_COUNT.
    Ok(LoadReport {
        running: Some(running),
        capacity: Some(slots.len() as u64),
        ..LoadReport::default()
    })
}

#[derive(Deserialize)]
struct OllamaPs<'a> {
    #[serde(borrow)]
    models: Vec<OllamaModel<'a>>,
}

#[derive(Deserialize)]
struct OllamaModel<'a> {
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
}

/// Ollama `GET /api/ps`: `{"models":[{"name":…,"model":…}]}`, the models in memory now.
fn parse_ollama_ps(text: &str) -> Result<LoadReport, LoadParseError> {
    let ps: OllamaPs = from_json(
        LoadSource::OllamaPs,
        "an object with a `models` array",
        text,
    )?;
    let names = ps.models.into_iter().filter_map(|m| {
        // `name` as in /api/tags (what the model catalog keys on), else `model`.
        m.name.filter(|n| !n.is_empty()).or(m.model)
    });
    Ok(LoadReport {
        loaded_models: Some(bound_names(names)),
        ..LoadReport::default()
    })
}

#[derive(Deserialize)]
struct LmStudioModels<'a> {
    #[serde(borrow)]
    data: Vec<LmStudioModel<'a>>,
}

#[derive(Deserialize)]
struct LmStudioModel<'a> {
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    state: Option<Cow<'a, str>>,
}

/// LM Studio `GET /api/v0/models`: every model it has, with `state` `loaded` or `not-loaded`.
fn parse_lm_studio(text: &str) -> Result<LoadReport, LoadParseError> {
    let list: LmStudioModels = from_json(
        LoadSource::LmStudioModels,
        "an object with a `data` array",
        text,
    )?;
    let names = list
        .data
        .into_iter()
        .filter(|m| m.state.as_deref() == Some("loaded"))
        .filter_map(|m| m.id);
    Ok(LoadReport {
        loaded_models: Some(bound_names(names)),
        ..LoadReport::default()
    })
}

/// The rule of [`crate::profiles::bound_models`] for bare names: empty names and names longer
/// than [`MAX_MODEL_NAME`] bytes are dropped, and at most [`MAX_MODELS`] are kept. Only the
/// kept ones are copied out of the body.
fn bound_names<'a>(names: impl Iterator<Item = Cow<'a, str>>) -> Vec<String> {
    names
        .filter(|n| !n.is_empty() && n.len() <= MAX_MODEL_NAME)
        .take(MAX_MODELS)
        .map(Cow::into_owned)
        .collect()
}

// ## Prometheus sources

/// The metrics a source reads, each in order of preference (a newer name before an older one).
struct MetricNames {
    running: &'static [&'static str],
    waiting: &'static [&'static str],
    kv_cache: &'static [&'static str],
}

fn metric_names(src: LoadSource) -> MetricNames {
    match src {
        LoadSource::LlamaCppMetrics => MetricNames {
            running: &["llamacpp:requests_processing"],
            waiting: &["llamacpp:requests_deferred"],
            // Served by llama-server until late 2024, gone since; read while it is there.
            kv_cache: &["llamacpp:kv_cache_usage_ratio"],
        },
        LoadSource::VllmMetrics => MetricNames {
            running: &["vllm:num_requests_running"],
            waiting: &["vllm:num_requests_waiting"],
            // vLLM 0.10 renamed the gauge and still serves the old name, deprecated, beside it.
            kv_cache: &["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"],
        },
        LoadSource::SglangMetrics => MetricNames {
            running: &["sglang:num_running_reqs"],
            waiting: &["sglang:num_queue_reqs"],
            kv_cache: &["sglang:token_usage"],
        },
        _ => MetricNames {
            running: &[],
            waiting: &[],
            kv_cache: &[],
        },
    }
}

/// What one pass gathers of one metric.
#[derive(Debug, Default, Clone, Copy)]
struct Gathered {
    /// Named by a sample, `# HELP` or `# TYPE`.
    seen: bool,
    /// Summed over label sets, for counts.
    sum: Option<u64>,
    /// The largest over label sets, for fractions.
    max: Option<f64>,
}

/// A server's `/metrics`, read in one pass over the text.
///
/// Counts are summed over label sets: vLLM writes one set per engine (`engine="0"`, …) with
/// data parallelism, SGLang one per data-parallel rank, and each set counts its own requests.
/// The KV-cache fraction is the largest over label sets, not the mean: an engine whose cache is
/// full queues (or preempts) what it is sent even while another has room, and Corral cannot
/// steer a request to one engine inside a server.
///
/// Counts must be whole and non-negative (servers write `2.0`); the sum at most [`MAX_COUNT`].
/// A fraction must be a number from 0 up; above 1 it is taken as 1 (full is full), while a
/// negative, NaN or infinite one is an error, as it means a broken exporter rather than load.
/// A metric named only by `# HELP`/`# TYPE` lines (vLLM before its first stats) is there
/// without a value: its field is None. A text that names none of the metrics is an error.
fn parse_metrics(src: LoadSource, text: &str) -> Result<LoadReport, LoadParseError> {
    let names = metric_names(src);
    let wanted: Vec<&'static str> = names
        .running
        .iter()
        .chain(names.waiting)
        .chain(names.kv_cache)
        .copied()
        .collect();
    let is_count = |name: &str| names.running.contains(&name) || names.waiting.contains(&name);
    let mut gathered = vec![Gathered::default(); wanted.len()];
    for line in prometheus::lines(text) {
        let line = line.map_err(|error| LoadParseError::Metrics { src, error })?;
        let name = match &line {
            prometheus::Line::Sample(s) => s.name,
            prometheus::Line::Help { name, .. } | prometheus::Line::Type { name, .. } => name,
        };
        let Some(i) = wanted.iter().position(|w| *w == name) else {
            continue;
        };
        let metric = wanted[i];
        let g = &mut gathered[i];
        g.seen = true;
        let prometheus::Line::Sample(sample) = line else {
            continue;
        };
        let v = sample.value;
        if is_count(metric) {
            if !(v.is_finite() && v >= 0.0 && v.fract() == 0.0) {
                return Err(LoadParseError::NotACount {
                    src,
                    metric,
                    line: sample.line,
                    value: v,
                });
            }
            // Compared as floats first: `as u64` saturates, so a huge value cannot wrap.
            let sum = if v > MAX_COUNT as f64 {
                None
            } else {
                g.sum.unwrap_or(0).checked_add(v as u64)
            };
            match sum {
                Some(s) if s <= MAX_COUNT => g.sum = Some(s),
                _ => return Err(LoadParseError::CountTooLarge { src, metric }),
            }
        } else {
            if !(v.is_finite() && v >= 0.0) {
                return Err(LoadParseError::NotAFraction {
                    src,
                    metric,
                    line: sample.line,
                    value: v,
                });
            }
            let v = v.min(1.0);
            g.max = Some(g.max.map_or(v, |m| m.max(v)));
        }
    }
    if !gathered.iter().any(|g| g.seen) {
        return Err(LoadParseError::NoMetrics { src });
    }
    // The first name of the list that has samples (for vLLM's KV gauge: the newer name).
    let of = |list: &[&str]| {
        list.iter()
            .filter_map(|n| wanted.iter().position(|w| w == n))
            .map(|i| gathered[i])
            .find(|g| g.sum.is_some() || g.max.is_some())
    };
    Ok(LoadReport {
        running: of(names.running).and_then(|g| g.sum),
        waiting: of(names.waiting).and_then(|g| g.sum),
        kv_cache: of(names.kv_cache).and_then(|g| g.max),
        ..LoadReport::default()
    })
}

#[cfg(test)]
mod tests;
