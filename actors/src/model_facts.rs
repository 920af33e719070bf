//! What a model is (SPEC 12): family, variant, parameter size, quantisation, type and
//! capabilities, read first from what its backends report ([`ModelDetails`]) and then from
//! its name (`llama3.1:8b-instruct-q4_K_M`, `Qwen/Qwen2.5-7B-Instruct`,
//! `mistral-7b-instruct-v0.2.Q4_K_M.gguf`). The values are in the normalised spelling of
//! Olla's unified catalogue (`llama`, `3.1`, `8b`, `q4km`); [`ollama_quantization`] gives
//! the platforms' own spelling back.
//!
//! The catalog computes these once per publication; the listings only render them. Pure and
//! total: any name, however odd, gives facts (perhaps empty ones), never a panic.

use std::collections::BTreeSet;

use crate::profiles::ModelDetails;

/// Everything the catalogue says of one model beyond its name and where it is served.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelFacts {
    /// `llama`, `qwen`, …; empty when neither a backend nor the name says.
    pub family: String,
    /// The family's version: `3.1` in `llama3.1`, `2.5` in `Qwen2.5-7B`; empty when none.
    pub variant: String,
    /// `8b`, `0.5b`, `135m`, `8x7b`; empty when unknown.
    pub parameter_size: String,
    /// Parameters, from [`ModelFacts::parameter_size`]; 0 when unknown.
    pub parameter_count: u64,
    /// `q4km`, `q8`, `f16`, …; empty when unknown.
    pub quantization: String,
    /// The backend's own spelling of the quantisation, when one reported it (`Q4_K_M`).
    pub reported_quantization: Option<String>,
    /// The backend's own spelling of the size, when one reported it (`8.0B`).
    pub reported_parameter_size: Option<String>,
    /// `gguf`, `safetensors`, … as a backend reported it; empty when none did.
    pub format: String,
    pub kind: ModelKind,
    /// Sorted, no duplicates.
    pub capabilities: Vec<&'static str>,
    pub max_context_length: Option<u64>,
}

/// What a model does, as Olla's `type` filter names it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum ModelKind {
    /// Generates text (the default: a model nobody says otherwise of is a text model).
    #[default]
    Llm,
    /// Reads images too.
    Vlm,
    Embeddings,
}

impl ModelKind {
    pub const NAMES: &'static [&'static str] = &["llm", "vlm", "embeddings"];

    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Llm => "llm",
            ModelKind::Vlm => "vlm",
            ModelKind::Embeddings => "embeddings",
        }
    }

    pub fn parse(s: &str) -> Option<ModelKind> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "llm" => ModelKind::Llm,
            "vlm" => ModelKind::Vlm,
            "embeddings" | "embedding" => ModelKind::Embeddings,
            _ => return None,
        })
    }
}

/// Family names recognised in model names (Olla's list of families, plus a few common
/// ones). Matched at the start of a name's token, longest first, so `codellama` is not
/// `llama` and `gpt-oss` is not `gpt`.
const FAMILIES: &[&str] = &[
    "codellama",
    "codestral",
    "command-r",
    "deepseek",
    "devstral",
    "exaone",
    "falcon",
    "gemma",
    "glm",
    "gpt-oss",
    "gpt",
    "granite",
    "hunyuan",
    "internlm",
    "kimi",
    "llama",
    "llava",
    "magistral",
    "minimax",
    "ministral",
    "mistral",
    "mixtral",
    "nemotron",
    "olmo",
    "phi",
    "qwen",
    "seed-oss",
    "smollm",
    "starcoder",
    "tinyllama",
    "vicuna",
    "yi",
];

/// Context lengths from which a model gets Olla's context capabilities.
const EXTENDED_CONTEXT: u64 = 32_000;
const LONG_CONTEXT: u64 = 100_000;
const ULTRA_LONG_CONTEXT: u64 = 1_000_000;

/// The facts of the model `name`, given what its backends report (in order of preference:
/// the first report of a field wins).
pub fn facts<'a>(name: &str, reported: impl IntoIterator<Item = &'a ModelDetails>) -> ModelFacts {
    let mut merged = ModelDetails::default();
    for d in reported {
        merge(&mut merged, d);
    }
    let parts = parse_name(name);

    let reported_family = merged.family.as_deref().map(normalise_family);
    let (family, variant) = match (reported_family, parts.family) {
        // The name's variant only goes with the name's own family.
        (Some(reported), Some((named, variant))) if reported == named => (reported, variant),
        (Some(reported), _) => (reported, String::new()),
        (None, Some((named, variant))) => (named, variant),
        (None, None) => (String::new(), String::new()),
    };

    let reported_size = merged
        .parameter_size
        .as_deref()
        .and_then(normalise_parameter_size);
    let (parameter_size, parameter_count) = reported_size
        .or_else(|| {
            parts
                .parameter_size
                .as_deref()
                .and_then(normalise_parameter_size)
        })
        .unwrap_or_default();

    let quantization = merged
        .quantization
        .as_deref()
        .map(normalise_quantization)
        .or(parts.quantization)
        .unwrap_or_default();

    let kind = merged
        .kind
        .as_deref()
        .and_then(ModelKind::parse)
        .unwrap_or_else(|| kind_from_name(name, &family));

    let capabilities = capabilities(kind, name, merged.max_context_length);
    ModelFacts {
        family,
        variant,
        parameter_size,
        parameter_count,
        quantization,
        reported_quantization: merged.quantization,
        reported_parameter_size: merged.parameter_size,
        format: merged.format.unwrap_or_default().to_ascii_lowercase(),
        kind,
        capabilities,
        max_context_length: merged.max_context_length,
    }
}

fn merge(into: &mut ModelDetails, from: &ModelDetails) {
    fn first<T: Clone>(a: &mut Option<T>, b: &Option<T>) {
        if a.is_none() {
            a.clone_from(b);
        }
    }
    first(&mut into.family, &from.family);
    first(&mut into.parameter_size, &from.parameter_size);
    first(&mut into.quantization, &from.quantization);
    first(&mut into.format, &from.format);
    first(&mut into.kind, &from.kind);
    first(&mut into.publisher, &from.publisher);
    first(&mut into.digest, &from.digest);
    first(&mut into.modified_at, &from.modified_at);
    first(&mut into.max_context_length, &from.max_context_length);
}

/// What a model's name says of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameParts {
    /// The family and its variant (empty when none).
    pub family: Option<(String, String)>,
    /// As written (`8b`, `0.5b`, `8x7b`), not yet normalised.
    pub parameter_size: Option<String>,
    /// Normalised (`q4km`).
    pub quantization: Option<String>,
}

/// Separators between the tokens of a model name.
fn is_separator(c: char) -> bool {
    matches!(c, '-' | '_' | ':' | '/' | ' ')
}

/// Reads family, variant, size and quantisation from a name such as
/// `llama3.1:8b-instruct-q4_K_M` or `mistral-7b-instruct-v0.2.Q4_K_M.gguf`.
pub fn parse_name(name: &str) -> NameParts {
    let lower = name.trim().to_ascii_lowercase();
    let lower = lower.strip_suffix(".gguf").unwrap_or(&lower);
    // The model's own name, after an organisation (`Qwen/…`, `mlx-community/…`).
    let own = lower.rsplit('/').next().unwrap_or(lower);
    let tokens: Vec<(usize, &str)> = token_spans(own);
    NameParts {
        family: family_in(own, &tokens),
        parameter_size: tokens
            .iter()
            .map(|(_, t)| *t)
            .find(|t| is_size_token(t))
            .map(str::to_string),
        quantization: quantization_in(own),
    }
}

/// The tokens of `s` with their byte offsets.
fn token_spans(s: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in s.char_indices() {
        if is_separator(c) {
            if i > start {
                out.push((start, &s[start..i]));
            }
            start = i + c.len_utf8();
        }
    }
    if start < s.len() {
        out.push((start, &s[start..]));
    }
    out
}

/// The first known family that starts a token, with its variant: the rest of that token
/// when it starts with a digit (`llama3.1`), else the next token when it is a version
/// (`gemma-2-9b`, `deepseek-r1`).
fn family_in(own: &str, tokens: &[(usize, &str)]) -> Option<(String, String)> {
    for (i, (offset, _)) in tokens.iter().enumerate() {
        let rest = &own[*offset..];
        let Some(family) = FAMILIES.iter().find(|f| {
            rest.strip_prefix(**f).is_some_and(|after| {
                after.is_empty()
                    || after.starts_with(is_separator)
                    || after.starts_with(|c: char| c.is_ascii_digit())
            })
        }) else {
            continue;
        };
        // A hyphenated family (`gpt-oss`) spans tokens: read on after its end.
        let end = offset + family.len();
        let after = &own[end..];
        let token_rest = after.split(is_separator).next().unwrap_or_default();
        let variant = if !token_rest.is_empty() {
            token_rest.to_string()
        } else {
            tokens
                .iter()
                .skip(i + 1)
                .find(|(o, _)| *o > end)
                .map(|(_, t)| *t)
                .filter(|t| is_version(t))
                .unwrap_or_default()
                .to_string()
        };
        return Some((family.to_string(), variant));
    }
    None
}

/// `3`, `3.1`, `v0.2`, `r1`.
fn is_version(t: &str) -> bool {
    let digits = t.strip_prefix(['v', 'r']).unwrap_or(t);
    !digits.is_empty()
        && digits.starts_with(|c: char| c.is_ascii_digit())
        && digits
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// `8b`, `0.5b`, `135m`, `8x7b`.
fn is_size_token(t: &str) -> bool {
    let Some(number) = t.strip_suffix(['b', 'm']) else {
        return false;
    };
    let number = match number.split_once('x') {
        Some((experts, each)) if is_number(experts) => each,
        Some(_) => return false,
        None => number,
    };
    is_number(number)
}

fn is_number(s: &str) -> bool {
    !s.is_empty()
        && s.starts_with(|c: char| c.is_ascii_digit())
        && s.parse::<f64>().is_ok_and(|n| n.is_finite() && n > 0.0)
}

/// A parameter size in Olla's spelling with its parameter count: `8.0B` → `8b`, `7.6B` →
/// `7.6b`, `0.5B` → `0.5b`, `494.03M` → `494m`, `1500M` → `1.5b`, `8x7b` → `8x7b`. `None`
/// for anything else.
pub fn normalise_parameter_size(s: &str) -> Option<(String, u64)> {
    let s = s.trim().to_ascii_lowercase();
    let (number, unit) = match s.strip_suffix('b') {
        Some(n) => (n, 1e9),
        None => match s.strip_suffix('m') {
            Some(n) => (n, 1e6),
            None => (s.as_str(), 1e9),
        },
    };
    let number = number.trim();
    if let Some((experts, each)) = number.split_once('x') {
        let (e, n) = (experts.parse::<u64>().ok()?, each.parse::<f64>().ok()?);
        if e == 0 || !n.is_finite() || n <= 0.0 || n > 1e6 {
            return None;
        }
        return Some((s, (e as f64 * n * unit) as u64));
    }
    let n: f64 = number.parse().ok()?;
    if !n.is_finite() || n <= 0.0 || n > 1e6 {
        return None;
    }
    let count = (n * unit) as u64;
    let billions = n * unit / 1e9;
    // Billions stay billions (`0.5b`); millions become billions from a thousand on.
    let text = if unit == 1e9 || billions >= 1.0 {
        trim_zero(format!("{billions:.1}")) + "b"
    } else {
        format!("{n:.0}m")
    };
    Some((text, count))
}

fn trim_zero(s: String) -> String {
    match s.strip_suffix(".0") {
        Some(t) => t.to_string(),
        None => s,
    }
}

/// Olla's canonical spelling of a quantisation: `Q4_K_M` → `q4km`, `Q8_0` → `q8`, `Q4_1`
/// → `q4_1`, `Q6_K` → `q6k`, `FP16` → `f16`, `IQ4_XS` → `iq4xs`; anything else lowercased.
pub fn normalise_quantization(q: &str) -> String {
    let lower = q.trim().to_ascii_lowercase();
    quantization_at(&lower)
        .filter(|(_, len)| *len == lower.len())
        .map(|(n, _)| n)
        .unwrap_or(lower)
}

/// The first quantisation that starts a token of `s` (lowercase), normalised.
fn quantization_in(s: &str) -> Option<String> {
    let mut boundary = true;
    for (i, c) in s.char_indices() {
        if boundary {
            if let Some((q, _)) = quantization_at(&s[i..]) {
                return Some(q);
            }
        }
        boundary = is_separator(c) || c == '.';
    }
    None
}

/// A quantisation at the start of `s` (lowercase) that ends where a token does: its
/// normalised spelling and its length in `s`.
fn quantization_at(s: &str) -> Option<(String, usize)> {
    let ends = |len: usize| {
        s[len..]
            .chars()
            .next()
            .is_none_or(|c| is_separator(c) || c == '.')
    };
    for plain in ["mxfp4", "nvfp4", "bf16", "int4", "int8", "awq", "gptq"] {
        if s.starts_with(plain) && ends(plain.len()) {
            return Some((plain.to_string(), plain.len()));
        }
    }
    for (spelling, canonical) in [
        ("fp16", "f16"),
        ("f16", "f16"),
        ("fp32", "f32"),
        ("f32", "f32"),
    ] {
        if s.starts_with(spelling) && ends(spelling.len()) {
            return Some((canonical.to_string(), spelling.len()));
        }
    }
    let (prefix, rest) = if let Some(r) = s.strip_prefix("iq") {
        ("iq", r)
    } else {
        ("q", s.strip_prefix('q')?)
    };
    let bits_len = rest.bytes().take_while(u8::is_ascii_digit).count();
    if bits_len == 0 {
        return None;
    }
    let bits = &rest[..bits_len];
    let mut len = prefix.len() + bits_len;
    let mut canonical = format!("{prefix}{bits}");
    // Suffix groups: `_k`, `_k_m`, `_0`, `_1`, `_xs`, `_k_xl`.
    let mut groups = 0;
    while groups < 2 {
        let Some(group) = s[len..].strip_prefix('_') else {
            break;
        };
        let g_len = group.bytes().take_while(u8::is_ascii_alphanumeric).count();
        if g_len == 0 || g_len > 2 {
            break;
        }
        let g = &group[..g_len];
        if !ends(len + 1 + g_len) && !group[g_len..].starts_with('_') {
            break;
        }
        if g.bytes().all(|b| b.is_ascii_digit()) {
            // `q8_0` → `q8`, `q4_1` → `q4_1` (Olla's spelling).
            if g != "0" {
                canonical.push('_');
                canonical.push_str(g);
            }
        } else {
            canonical.push_str(g);
        }
        len += 1 + g_len;
        groups += 1;
    }
    ends(len).then_some((canonical, len))
}

/// Ollama's and LM Studio's spelling of a normalised quantisation: `q4km` → `Q4_K_M`,
/// `q6k` → `Q6_K`, `q8` → `Q8_0`, `q4_1` → `Q4_1`, `f16` → `F16`; others uppercased.
pub fn ollama_quantization(normalised: &str) -> String {
    let q = normalised.to_ascii_lowercase();
    if let Some(rest) = q.strip_prefix('q') {
        let bits_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        if bits_len > 0 {
            let (bits, tail) = rest.split_at(bits_len);
            return match tail {
                "" => format!("Q{bits}_0"),
                "k" => format!("Q{bits}_K"),
                t if t.starts_with('k') => format!("Q{bits}_K_{}", t[1..].to_ascii_uppercase()),
                t if t.starts_with('_') => format!("Q{bits}{}", t.to_ascii_uppercase()),
                t => format!("Q{bits}_{}", t.to_ascii_uppercase()),
            };
        }
    }
    q.to_ascii_uppercase()
}

/// A reported family in the catalogue's spelling: a known family with a version or
/// mixture-of-experts suffix is that family (`qwen2` → `qwen`, `qwen3moe` → `qwen`,
/// `phi3` → `phi`); anything else is kept, lowercased (`nomic-bert`).
fn normalise_family(reported: &str) -> String {
    let lower = reported.trim().to_ascii_lowercase();
    let tokens = token_spans(&lower);
    match family_in(&lower, &tokens) {
        Some((family, _)) if lower.starts_with(&family) => family,
        _ => lower,
    }
}

/// The kind a name implies when no backend reports one.
fn kind_from_name(name: &str, family: &str) -> ModelKind {
    let lower = name.to_ascii_lowercase();
    if lower.contains("embed") || family.contains("bert") {
        ModelKind::Embeddings
    } else if ["vision", "vlm", "llava", "-vl"]
        .iter()
        .any(|p| lower.contains(p))
    {
        ModelKind::Vlm
    } else {
        ModelKind::Llm
    }
}

/// Olla's capability names: from the kind, the name's hints and the context length.
fn capabilities(kind: ModelKind, name: &str, context: Option<u64>) -> Vec<&'static str> {
    let mut caps = BTreeSet::new();
    match kind {
        ModelKind::Llm => caps.extend(["text-generation", "chat", "completion"]),
        ModelKind::Vlm => caps.extend([
            "text-generation",
            "vision",
            "multimodal",
            "image-understanding",
        ]),
        ModelKind::Embeddings => caps.extend(["embeddings", "similarity", "vector-search"]),
    }
    let lower = name.to_ascii_lowercase();
    let hints: [(&[&str], &[&'static str]); 5] = [
        (
            &["code", "coder", "codegen", "starcoder"],
            &["code-generation", "programming", "code-completion"],
        ),
        (
            &["instruct", "chat", "assistant"],
            &["instruction-following", "chat"],
        ),
        (&["reasoning", "think"], &["reasoning", "logic"]),
        (&["math"], &["mathematics", "problem-solving"]),
        (
            &["vision", "vlm", "llava"],
            &["vision", "multimodal", "image-understanding"],
        ),
    ];
    if kind != ModelKind::Embeddings {
        for (words, adds) in hints {
            if words.iter().any(|w| lower.contains(w)) {
                caps.extend(adds.iter().copied());
            }
        }
    }
    match context {
        Some(n) if n >= ULTRA_LONG_CONTEXT => caps.extend(["ultra-long-context", "long-context"]),
        Some(n) if n >= LONG_CONTEXT => {
            caps.insert("long-context");
        }
        Some(n) if n >= EXTENDED_CONTEXT => {
            caps.insert("extended-context");
        }
        _ => {}
    }
    caps.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str) -> ModelFacts {
        facts(name, [])
    }

    #[test]
    fn names_give_family_variant_size_and_quantisation() {
        let cases = [
            ("llama3.1:8b-instruct-q4_K_M", "llama", "3.1", "8b", "q4km"),
            ("Qwen/Qwen2.5-7B-Instruct", "qwen", "2.5", "7b", ""),
            (
                "mistral-7b-instruct-v0.2.Q4_K_M.gguf",
                "mistral",
                "",
                "7b",
                "q4km",
            ),
            (
                "Qwen2.5-0.5B-Instruct-Q8_0.gguf",
                "qwen",
                "2.5",
                "0.5b",
                "q8",
            ),
            ("phi3:latest", "phi", "3", "", ""),
            ("gemma-2-9b-it-IQ4_XS", "gemma", "2", "9b", "iq4xs"),
            (
                "meta-llama/Meta-Llama-3-8B-Instruct",
                "llama",
                "3",
                "8b",
                "",
            ),
            (
                "mixtral:8x7b-instruct-v0.1-q6_K",
                "mixtral",
                "",
                "8x7b",
                "q6k",
            ),
            (
                "deepseek-r1:14b-qwen-distill-fp16",
                "deepseek",
                "r1",
                "14b",
                "f16",
            ),
            ("gpt-oss:20b", "gpt-oss", "", "20b", ""),
            ("SmolLM2-135M-Instruct-Q4_1", "smollm", "2", "135m", "q4_1"),
            ("codellama:13b", "codellama", "", "13b", ""),
            ("mock-model", "", "", "", ""),
            ("", "", "", "", ""),
            ("qwen", "qwen", "", "", ""),
        ];
        for (name, family, variant, size, quant) in cases {
            let f = named(name);
            assert_eq!(
                (
                    f.family.as_str(),
                    f.variant.as_str(),
                    f.parameter_size.as_str(),
                    f.quantization.as_str()
                ),
                (family, variant, size, quant),
                "{name}"
            );
        }
    }

    #[test]
    fn a_backends_report_wins_over_the_name() {
        let ollama = ModelDetails {
            family: Some("qwen2".into()),
            parameter_size: Some("7.6B".into()),
            quantization: Some("Q4_K_M".into()),
            format: Some("GGUF".into()),
            ..ModelDetails::default()
        };
        let f = facts("qwen2.5:7b", [&ollama]);
        assert_eq!(f.family, "qwen");
        assert_eq!(f.variant, "2.5", "the name's variant of the same family");
        assert_eq!(f.parameter_size, "7.6b");
        assert_eq!(f.parameter_count, 7_600_000_000);
        assert_eq!(f.quantization, "q4km");
        assert_eq!(f.reported_quantization.as_deref(), Some("Q4_K_M"));
        assert_eq!(f.format, "gguf");

        let other = ModelDetails {
            family: Some("nomic-bert".into()),
            ..ModelDetails::default()
        };
        let f = facts("nomic-embed-text:latest", [&other]);
        assert_eq!((f.family.as_str(), f.variant.as_str()), ("nomic-bert", ""));
        assert_eq!(f.kind, ModelKind::Embeddings);
    }

    #[test]
    fn the_first_report_of_a_field_wins() {
        let a = ModelDetails {
            max_context_length: Some(8192),
            ..ModelDetails::default()
        };
        let b = ModelDetails {
            max_context_length: Some(4096),
            kind: Some("vlm".into()),
            ..ModelDetails::default()
        };
        let f = facts("x", [&a, &b]);
        assert_eq!(f.max_context_length, Some(8192));
        assert_eq!(f.kind, ModelKind::Vlm);
    }

    #[test]
    fn parameter_sizes_normalise_as_olla_writes_them() {
        let cases = [
            ("8.0B", Some(("8b", 8_000_000_000))),
            ("7.6B", Some(("7.6b", 7_600_000_000))),
            ("494.03M", Some(("494m", 494_030_000))),
            ("1500M", Some(("1.5b", 1_500_000_000))),
            ("70b", Some(("70b", 70_000_000_000))),
            ("0.5B", Some(("0.5b", 500_000_000))),
            ("8x7b", Some(("8x7b", 56_000_000_000))),
            ("big", None),
            ("-3B", None),
            ("NaNB", None),
            ("1e300B", None),
        ];
        for (input, want) in cases {
            let got = normalise_parameter_size(input);
            assert_eq!(got.as_ref().map(|(s, n)| (s.as_str(), *n)), want, "{input}");
        }
    }

    #[test]
    fn quantisations_round_trip_between_spellings() {
        for (reported, canonical) in [
            ("Q4_K_M", "q4km"),
            ("Q4_K_S", "q4ks"),
            ("Q6_K", "q6k"),
            ("Q8_0", "q8"),
            ("Q4_0", "q4"),
            ("Q4_1", "q4_1"),
            ("F16", "f16"),
        ] {
            assert_eq!(normalise_quantization(reported), canonical);
            assert_eq!(ollama_quantization(canonical), reported);
        }
        assert_eq!(normalise_quantization("FP16"), "f16");
        assert_eq!(normalise_quantization("BF16"), "bf16");
        assert_eq!(normalise_quantization("Q4_K_XL"), "q4kxl");
        assert_eq!(normalise_quantization("something"), "something");
        assert_eq!(ollama_quantization("bf16"), "BF16");
    }

    #[test]
    fn kinds_and_capabilities() {
        let f = named("llama3:8b-instruct");
        assert_eq!(f.kind, ModelKind::Llm);
        assert_eq!(
            f.capabilities,
            [
                "chat",
                "completion",
                "instruction-following",
                "text-generation"
            ]
        );
        let f = named("nomic-embed-text");
        assert_eq!(f.kind, ModelKind::Embeddings);
        assert_eq!(
            f.capabilities,
            ["embeddings", "similarity", "vector-search"]
        );
        assert_eq!(named("llava:7b").kind, ModelKind::Vlm);
        assert_eq!(named("Qwen2.5-VL-7B").kind, ModelKind::Vlm);
        let long = ModelDetails {
            max_context_length: Some(131_072),
            ..ModelDetails::default()
        };
        assert!(facts("qwen2.5-coder", [&long])
            .capabilities
            .contains(&"long-context"));
        assert_eq!(ModelKind::parse("Embedding"), Some(ModelKind::Embeddings));
        assert_eq!(ModelKind::parse("tts"), None);
    }

    #[test]
    fn odd_names_never_panic() {
        for name in [
            "q",
            "q_",
            "q4_",
            "q4__k",
            "iq",
            "::",
            "/",
            "x/",
            "ä-8b-ö",
            "llama\u{0}3",
            "8x",
            "xb",
            "q4_k_m_x_y",
            "0b",
            ".gguf",
            "Q4_K_M",
        ] {
            let _ = named(name);
        }
        assert_eq!(named("Q4_K_M").quantization, "q4km");
    }
}
