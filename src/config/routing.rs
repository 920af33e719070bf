//! The two routing settings Olla users bring (SPEC 12): `model_aliases` (one name for a model
//! that each backend knows by its own) and `proxy.sticky_sessions` (a conversation stays on
//! the endpoint that holds its prompt cache). Their defaults and validation, in Olla's keys;
//! `resolve.rs` calls [`model_aliases`] and [`sticky_sessions`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::error::{one_of, Invalid};
use super::file::StickyFile;

/// Longest alias or native name: the bound SPEC 11 puts on model names a backend reports.
const MAX_NAME: usize = 256;
/// Aliases in one file: as many model names as the statistics keep (SPEC 11).
const MAX_ALIASES: usize = 10_000;
/// Native names per alias: one per backend family is the use; this only bounds a typo.
const MAX_TARGETS: usize = 1_000;
/// Largest session table: each session is a few dozen bytes, so this bounds it near 100 MB.
const MAX_SESSIONS: usize = 1_000_000;

/// `model_aliases`: alias → its native names, in preference order, without repeats.
pub type ModelAliases = BTreeMap<String, Arc<[String]>>;

/// `proxy.sticky_sessions`, with Olla's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StickyConfig {
    pub enabled: bool,
    /// A session unused this long is forgotten; `None` (`idle_ttl_seconds: 0`): only
    /// `max_sessions` and endpoints leaving rotation end sessions.
    pub idle_ttl: Option<Duration>,
    /// Sessions remembered at once; the least recently used goes first.
    pub max_sessions: usize,
    /// Where a request's session key comes from: the first source that gives one.
    pub key_sources: Vec<KeySource>,
    /// How many leading bytes of `messages` (or `prompt`) `prefix_hash` reads; 0: all.
    pub prefix_hash_bytes: usize,
}

impl Default for StickyConfig {
    fn default() -> Self {
        StickyConfig {
            enabled: false,
            idle_ttl: Some(Duration::from_secs(600)),
            max_sessions: 10_000,
            key_sources: vec![
                KeySource::SessionHeader,
                KeySource::PrefixHash,
                KeySource::AuthHeader,
            ],
            prefix_hash_bytes: 512,
        }
    }
}

/// One of Olla's session key sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// The client's `X-Olla-Session-ID`.
    SessionHeader,
    /// The start of the conversation: the first bytes of `messages` (or `prompt`).
    PrefixHash,
    /// The client's `Authorization` (hashed; one user, one session per model).
    AuthHeader,
    /// The client's address (the TCP peer).
    Ip,
}

impl KeySource {
    pub const NAMES: &'static [&'static str] =
        &["session_header", "prefix_hash", "auth_header", "ip"];

    pub fn as_str(self) -> &'static str {
        match self {
            KeySource::SessionHeader => "session_header",
            KeySource::PrefixHash => "prefix_hash",
            KeySource::AuthHeader => "auth_header",
            KeySource::Ip => "ip",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "session_header" => Some(KeySource::SessionHeader),
            "prefix_hash" => Some(KeySource::PrefixHash),
            "auth_header" => Some(KeySource::AuthHeader),
            "ip" => Some(KeySource::Ip),
            _ => None,
        }
    }
}

/// Checks every alias and native name. Olla's rules: an alias may also be a model's real name
/// (the alias wins) and may list itself; a repeated native name is dropped (Olla warns).
pub(crate) fn model_aliases(
    file: Option<BTreeMap<String, Vec<String>>>,
) -> Result<ModelAliases, Invalid> {
    let file = file.unwrap_or_default();
    if file.len() > MAX_ALIASES {
        return Err(Invalid::new(
            "model_aliases",
            format!("at most {MAX_ALIASES} aliases (got {})", file.len()),
        ));
    }
    let mut out = ModelAliases::new();
    for (alias, targets) in file {
        let path = format!("model_aliases.{alias}");
        if let Some(reason) = bad_name(&alias) {
            return Err(Invalid::new(&path, format!("the alias name {reason}")));
        }
        if targets.is_empty() {
            return Err(Invalid::new(
                &path,
                "lists no model names (give the names each backend knows the model by)",
            ));
        }
        if targets.len() > MAX_TARGETS {
            return Err(Invalid::new(
                &path,
                format!("at most {MAX_TARGETS} model names (got {})", targets.len()),
            ));
        }
        let mut kept: Vec<String> = Vec::with_capacity(targets.len());
        for (i, target) in targets.into_iter().enumerate() {
            if let Some(reason) = bad_name(&target) {
                return Err(Invalid::new(format!("{path}[{i}]"), reason));
            }
            if !kept.contains(&target) {
                kept.push(target);
            }
        }
        out.insert(alias, kept.into());
    }
    Ok(out)
}

/// Why a name cannot be an alias or native name, if it cannot.
fn bad_name(name: &str) -> Option<String> {
    if name.is_empty() {
        Some("must not be empty".into())
    } else if name.trim() != name {
        Some(format!("`{name}` has leading or trailing whitespace"))
    } else if name.chars().any(char::is_control) {
        Some("must not contain control characters".into())
    } else if name.len() > MAX_NAME {
        Some(format!(
            "is {} bytes long; model names are at most {MAX_NAME}",
            name.len()
        ))
    } else {
        None
    }
}

pub(crate) fn sticky_sessions(file: Option<StickyFile>) -> Result<StickyConfig, Invalid> {
    let mut out = StickyConfig::default();
    let Some(f) = file else { return Ok(out) };
    let path = |key: &str| format!("proxy.sticky_sessions.{key}");
    if let Some(enabled) = f.enabled {
        out.enabled = enabled;
    }
    if let Some(n) = f.idle_ttl_seconds {
        let secs = u64::try_from(n).map_err(|_| {
            Invalid::new(
                path("idle_ttl_seconds"),
                format!("must be 0 (no idle expiry) or more seconds (got {n})"),
            )
        })?;
        out.idle_ttl = (secs > 0).then(|| Duration::from_secs(secs));
    }
    if let Some(n) = f.max_sessions {
        out.max_sessions = usize::try_from(n)
            .ok()
            .filter(|n| (1..=MAX_SESSIONS).contains(n))
            .ok_or_else(|| {
                Invalid::new(
                    path("max_sessions"),
                    format!("must be 1 to {MAX_SESSIONS} (got {n})"),
                )
            })?;
    }
    if let Some(names) = f.key_sources {
        if names.is_empty() {
            return Err(Invalid::new(
                path("key_sources"),
                format!("must name at least one of {}", KeySource::NAMES.join(", ")),
            ));
        }
        out.key_sources.clear();
        for (i, name) in names.iter().enumerate() {
            let source = KeySource::from_name(name).ok_or_else(|| {
                Invalid::new(
                    format!("{}[{i}]", path("key_sources")),
                    one_of(name, KeySource::NAMES),
                )
            })?;
            if !out.key_sources.contains(&source) {
                out.key_sources.push(source);
            }
        }
    }
    if let Some(n) = f.prefix_hash_bytes {
        out.prefix_hash_bytes = usize::try_from(n).map_err(|_| {
            Invalid::new(
                path("prefix_hash_bytes"),
                format!("must be 0 (the whole field) or more bytes (got {n})"),
            )
        })?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;

    fn ok(text: &str) -> super::super::Config {
        parse(text, "test.yaml", &|_| None).unwrap_or_else(|e| panic!("{e}"))
    }

    fn assert_err(text: &str, path: &str, reason: &str) {
        let e = parse(text, "test.yaml", &|_| None).unwrap_err().to_string();
        let want = format!("test.yaml: {path}: {reason}");
        assert!(e.starts_with(&want), "\n got: {e}\nwant: {want}…");
    }

    #[test]
    fn aliases_load_in_order_without_repeats() {
        let c = ok(
            "model_aliases:\n  my-llama:\n    - \"llama3.1:8b\"\n    - llama-3.1-8b-instruct\n    \
                    - \"llama3.1:8b\"\n  gpt-oss-120b: [\"gpt-oss:120b\", gpt-oss-120b]\n",
        );
        let names = |a: &str| c.model_aliases[a].to_vec();
        assert_eq!(names("my-llama"), ["llama3.1:8b", "llama-3.1-8b-instruct"]);
        // An alias may list itself (Olla: the endpoint that knows that name keeps it).
        assert_eq!(names("gpt-oss-120b"), ["gpt-oss:120b", "gpt-oss-120b"]);
        assert!(c.ignored_olla_settings.is_empty());
        assert!(ok("").model_aliases.is_empty());
    }

    #[test]
    fn alias_errors_name_the_alias() {
        assert_err(
            "model_aliases:\n  empty: []\n",
            "model_aliases.empty",
            "lists no model names",
        );
        assert_err(
            "model_aliases:\n  \"\": [a]\n",
            "model_aliases.",
            "the alias name must not be empty",
        );
        assert_err(
            "model_aliases:\n  \" padded\": [a]\n",
            "model_aliases. padded",
            "the alias name ` padded` has leading or trailing whitespace",
        );
        assert_err(
            "model_aliases:\n  a: [x, \"\"]\n",
            "model_aliases.a[1]",
            "must not be empty",
        );
        let long = "x".repeat(257);
        assert_err(
            &format!("model_aliases:\n  a: [{long}]\n"),
            "model_aliases.a[0]",
            "is 257 bytes long; model names are at most 256",
        );
    }

    #[test]
    fn sticky_sessions_default_to_ollas() {
        let c = ok("");
        let s = &c.proxy.sticky_sessions;
        assert!(!s.enabled);
        assert_eq!(s.idle_ttl, Some(Duration::from_secs(600)));
        assert_eq!(s.max_sessions, 10_000);
        assert_eq!(
            s.key_sources,
            [
                KeySource::SessionHeader,
                KeySource::PrefixHash,
                KeySource::AuthHeader
            ]
        );
        assert_eq!(s.prefix_hash_bytes, 512);
    }

    #[test]
    fn sticky_sessions_take_ollas_keys() {
        let c = ok(
            "proxy:\n  sticky_sessions:\n    enabled: true\n    idle_ttl_seconds: 0\n    \
                    max_sessions: 5\n    key_sources: [ip, session_header, ip]\n    \
                    prefix_hash_bytes: 64\n",
        );
        let s = &c.proxy.sticky_sessions;
        assert!(s.enabled);
        assert_eq!(s.idle_ttl, None);
        assert_eq!(s.max_sessions, 5);
        assert_eq!(s.key_sources, [KeySource::Ip, KeySource::SessionHeader]);
        assert_eq!(s.prefix_hash_bytes, 64);
        assert!(c.ignored_olla_settings.is_empty());
    }

    #[test]
    fn sticky_session_errors_name_the_key() {
        let at = |k: &str| format!("proxy:\n  sticky_sessions:\n    {k}\n");
        assert_err(
            &at("max_sessions: 0"),
            "proxy.sticky_sessions.max_sessions",
            "must be 1 to 1000000 (got 0)",
        );
        assert_err(
            &at("idle_ttl_seconds: -1"),
            "proxy.sticky_sessions.idle_ttl_seconds",
            "must be 0 (no idle expiry) or more seconds (got -1)",
        );
        assert_err(
            &at("key_sources: []"),
            "proxy.sticky_sessions.key_sources",
            "must name at least one of session_header, prefix_hash, auth_header, ip",
        );
        assert_err(
            &at("key_sources: [session_header, cookie]"),
            "proxy.sticky_sessions.key_sources[1]",
            "`cookie` is not one of",
        );
        assert_err(
            &at("prefix_hash_bytes: -5"),
            "proxy.sticky_sessions.prefix_hash_bytes",
            "must be 0 (the whole field) or more bytes (got -5)",
        );
        let e = parse(&at("ttl: 5"), "test.yaml", &|_| None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("ttl"), "{e}");
    }
}
