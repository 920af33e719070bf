//! The config file exactly as written (SPEC 3): one struct per YAML section, every key optional,
//! nothing defaulted or checked yet. `resolve.rs` turns this into [`super::Config`].
//!
//! Every struct denies unknown keys; Olla keys that Corral has no use for are declared as
//! [`Ignored`] so they load and can be named in the startup warning. Keeping "was it set?"
//! (`Option`) rather than defaults here is what lets validation blame the right line: an
//! endpoint's own `check_timeout`, or the `health:` default it inherited.

use std::collections::BTreeMap;
use std::fmt;

use corral_actors::profiles::EndpointType;
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

use super::units::{Cidr, Concurrency, Dur, Ignored, OpenDuration, Share, Size};

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    pub server: Option<ServerFile>,
    pub proxy: Option<ProxyFile>,
    pub health: Option<HealthFile>,
    pub discovery: Option<DiscoveryFile>,
    pub logging: Option<LoggingFile>,
    /// The short form of `discovery.static.endpoints`.
    pub endpoints: Option<Vec<EndpointFile>>,
    /// Olla's model registry: only `routing_strategy` means something to Corral.
    pub model_registry: Option<ModelRegistryFile>,
    #[serde(default)]
    pub translators: Ignored,
    #[serde(default)]
    pub engineering: Ignored,
    #[serde(default)]
    pub dashboard: Ignored,
    /// Alias → the native names it stands for (SPEC 12).
    pub model_aliases: Option<BTreeMap<String, Vec<String>>>,
    /// Olla's newer home for the model routing strategy.
    #[serde(default)]
    pub routing: Ignored,
}

/// Olla's `model_registry:` section.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModelRegistryFile {
    #[serde(default, rename = "type")]
    pub kind: Ignored,
    #[serde(default)]
    pub enable_unifier: Ignored,
    #[serde(default)]
    pub unification: Ignored,
    pub routing_strategy: Option<ModelRoutingFile>,
}

/// `model_registry.routing_strategy`: Olla's home for what Corral calls
/// `proxy.routing_strategy`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModelRoutingFile {
    /// `strict`, `optimistic` or `discovery`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub options: Option<ModelRoutingOptionsFile>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModelRoutingOptionsFile {
    /// `compatible_only`, `all` or `none`: whether an unknown model may go anywhere.
    pub fallback_behavior: Option<String>,
    #[serde(default)]
    pub discovery_timeout: Ignored,
    #[serde(default)]
    pub discovery_refresh_on_miss: Ignored,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServerFile {
    pub host: Option<String>,
    /// Signed so that `-1` gets a range message instead of a type error.
    pub port: Option<i64>,
    pub shutdown_timeout: Option<Dur>,
    pub max_body_size: Option<Size>,
    pub max_header_size: Option<Size>,
    pub internal_token: Option<String>,
    /// Olla's spelling of the two size limits.
    pub request_limits: Option<RequestLimitsFile>,
    /// The whole request body must arrive within this, from the end of the head (Olla's name).
    pub read_timeout: Option<Dur>,
    /// The request head must arrive within this, from its first byte (Olla's name).
    pub read_header_timeout: Option<Dur>,
    /// Olla's request rate limits (SPEC 12).
    pub rate_limits: Option<RateLimitsFile>,
    /// Corral's spelling of `rate_limits.trust_proxy_headers` (the client address is not
    /// only the rate limiter's business).
    pub trust_proxy_headers: Option<bool>,
    /// Corral's spelling of `rate_limits.trusted_proxy_cidrs`.
    pub trusted_proxy_cidrs: Option<Vec<Cidr>>,
    #[serde(default)]
    pub write_timeout: Ignored,
    #[serde(default)]
    pub idle_timeout: Ignored,
    #[serde(default)]
    pub request_logging: Ignored,
    #[serde(default)]
    pub cors: Ignored,
}

/// `server.rate_limits`, in Olla's names (SPEC 12). Counts are signed so that `-1` gets a
/// range message naming the field.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RateLimitsFile {
    pub global_requests_per_minute: Option<i64>,
    pub per_ip_requests_per_minute: Option<i64>,
    pub health_requests_per_minute: Option<i64>,
    pub burst_size: Option<i64>,
    pub cleanup_interval: Option<Dur>,
    pub trust_proxy_headers: Option<bool>,
    pub trusted_proxy_cidrs: Option<Vec<Cidr>>,
    #[serde(default)]
    pub per_endpoint: Ignored,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RequestLimitsFile {
    pub max_body_size: Option<Size>,
    pub max_header_size: Option<Size>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProxyFile {
    pub load_balancer: Option<String>,
    pub routing_strategy: Option<String>,
    pub connect_timeout: Option<Dur>,
    /// Olla's spelling of `connect_timeout`.
    pub connection_timeout: Option<Dur>,
    pub response_header_timeout: Option<Dur>,
    pub stream_idle_timeout: Option<Dur>,
    pub max_attempts: Option<i64>,
    pub retry_on_status: Option<Vec<i64>>,
    pub circuit_breaker: Option<BreakerFile>,
    pub queue: Option<QueueFile>,
    /// Pass the client's `Authorization`, `Cookie`, `X-Api-Key`, `X-Auth-Token` upstream.
    pub forward_client_credentials: Option<bool>,
    #[serde(default)]
    pub engine: Ignored,
    #[serde(default)]
    pub profile: Ignored,
    #[serde(default)]
    pub profile_filter: Ignored,
    #[serde(default)]
    pub connection_keep_alive: Ignored,
    #[serde(default)]
    pub response_timeout: Ignored,
    #[serde(default)]
    pub read_timeout: Ignored,
    #[serde(default)]
    pub tls_handshake_timeout: Ignored,
    #[serde(default)]
    pub stream_buffer_size: Ignored,
    pub sticky_sessions: Option<StickyFile>,
    #[serde(default)]
    pub retry: Ignored,
    #[serde(default)]
    pub max_retries: Ignored,
    #[serde(default)]
    pub retry_backoff: Ignored,
}

/// `proxy.sticky_sessions`: Olla's session affinity, in Olla's keys (SPEC 12).
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StickyFile {
    pub enabled: Option<bool>,
    pub idle_ttl_seconds: Option<i64>,
    pub max_sessions: Option<i64>,
    pub key_sources: Option<Vec<String>>,
    pub prefix_hash_bytes: Option<i64>,
}

/// `proxy.queue`: where requests wait when every candidate is at its limit (SPEC 10.3).
#[derive(Debug, Default, Clone, Copy, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct QueueFile {
    pub size: Option<i64>,
    pub max_wait: Option<Dur>,
}

#[derive(Debug, Default, Clone, Copy, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BreakerFile {
    pub failure_threshold: Option<i64>,
    pub open_duration: Option<OpenDuration>,
}

/// The `health:` section; the same keys may appear on each endpoint.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HealthFile {
    pub check_interval: Option<Dur>,
    pub check_timeout: Option<Dur>,
    pub degraded_latency: Option<Dur>,
    pub recovery_successes: Option<i64>,
    pub max_backoff: Option<Dur>,
    pub jitter: Option<Share>,
    pub circuit_breaker: Option<BreakerFile>,
    pub load_interval: Option<Dur>,
    pub max_concurrency: Option<Concurrency>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DiscoveryFile {
    pub model_discovery: Option<ModelDiscoveryFile>,
    #[serde(rename = "static")]
    pub static_: Option<StaticFile>,
    #[serde(default, rename = "type")]
    pub kind: Ignored,
    #[serde(default)]
    pub refresh_interval: Ignored,
    #[serde(default)]
    pub health_check: Ignored,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModelDiscoveryFile {
    pub enabled: Option<bool>,
    pub interval: Option<Dur>,
    pub timeout: Option<Dur>,
    #[serde(default)]
    pub concurrent_workers: Ignored,
    #[serde(default)]
    pub retry_attempts: Ignored,
    #[serde(default)]
    pub retry_backoff: Ignored,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StaticFile {
    pub endpoints: Option<Vec<EndpointFile>>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EndpointFile {
    pub url: Option<String>,
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<Kind>,
    pub priority: Option<i64>,
    /// `check_path` is the reference's name for it.
    #[serde(alias = "check_path")]
    pub health_check_url: Option<String>,
    pub model_url: Option<String>,
    // The keys of `health:` (serde's `flatten` cannot be combined with deny_unknown_fields).
    pub check_interval: Option<Dur>,
    pub check_timeout: Option<Dur>,
    pub degraded_latency: Option<Dur>,
    pub recovery_successes: Option<i64>,
    pub max_backoff: Option<Dur>,
    pub jitter: Option<Share>,
    pub circuit_breaker: Option<BreakerFile>,
    pub load_interval: Option<Dur>,
    pub max_concurrency: Option<Concurrency>,
    pub require_models: Option<bool>,
    pub health_checks: Option<bool>,
    pub headers: Option<Headers>,
    #[serde(default)]
    pub preserve_path: Ignored,
    #[serde(default)]
    pub model_filter: Ignored,
    /// Olla's credentials block (SPEC 12), resolved into one more header.
    pub auth: Option<AuthFile>,
}

/// An endpoint's `auth:` as written (Olla's keys). Values are kept as text, so that an
/// unquoted `password: 1234` is the string it looks like.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuthFile {
    /// `bearer`, `api_key` or `basic`.
    #[serde(rename = "type")]
    pub kind: Option<Scalar>,
    pub token: Option<Scalar>,
    pub token_file: Option<Scalar>,
    pub key: Option<Scalar>,
    pub key_file: Option<Scalar>,
    /// The header `api_key` is sent in (default `X-Api-Key`).
    pub header: Option<Scalar>,
    pub username: Option<Scalar>,
    pub username_file: Option<Scalar>,
    pub password: Option<Scalar>,
    pub password_file: Option<Scalar>,
}

impl EndpointFile {
    /// The endpoint's overrides of the `health:` keys, as a `health:` section of its own.
    pub fn health(&self) -> HealthFile {
        HealthFile {
            check_interval: self.check_interval,
            check_timeout: self.check_timeout,
            degraded_latency: self.degraded_latency,
            recovery_successes: self.recovery_successes,
            max_backoff: self.max_backoff,
            jitter: self.jitter,
            circuit_breaker: self.circuit_breaker,
            load_interval: self.load_interval,
            max_concurrency: self.max_concurrency,
        }
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoggingFile {
    pub level: Option<String>,
    pub format: Option<String>,
    /// Olla's log destination; Corral always logs to stdout.
    #[serde(default)]
    pub output: Ignored,
}

/// Header name → value, in file order (the order they are sent in). Scalar values are taken
/// as written, so `X-Api-Version: 2` needs no quotes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Headers(pub Vec<(String, String)>);

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Headers;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of header names to values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Headers, A::Error> {
                let mut out: Vec<(String, String)> = Vec::new();
                while let Some((name, value)) = map.next_entry::<String, Scalar>()? {
                    if out.iter().any(|(n, _)| n.eq_ignore_ascii_case(&name)) {
                        return Err(de::Error::custom(format!(
                            "header `{name}` is given twice (names are case-insensitive)"
                        )));
                    }
                    out.push((name, value.0));
                }
                Ok(Headers(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// An endpoint type. Parsed inside the YAML deserializer (rather than through
/// `EndpointType`'s own `Deserialize`) so that an error carries the `type` key's path and line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Kind(pub EndpointType);

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Kind;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "one of {}", EndpointType::NAMES.join(", "))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Kind, E> {
                s.parse()
                    .map(Kind)
                    .map_err(|_| E::custom(super::error::one_of(s, EndpointType::NAMES)))
            }
        }
        d.deserialize_str(V)
    }
}

/// A string, number or boolean, kept as its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Scalar, E> {
                Ok(Scalar(s.to_string()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Scalar, E> {
                Ok(Scalar(n.to_string()))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Scalar, E> {
                Ok(Scalar(n.to_string()))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Scalar, E> {
                Ok(Scalar(n.to_string()))
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Scalar, E> {
                Ok(Scalar(b.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Appends `prefix.key` for every ignored key that was set.
pub(crate) fn note_ignored(out: &mut Vec<String>, prefix: &str, keys: &[(&str, Ignored)]) {
    for (key, Ignored(set)) in keys {
        if *set {
            out.push(if prefix.is_empty() {
                key.to_string()
            } else {
                format!("{prefix}.{key}")
            });
        }
    }
}

impl FileConfig {
    /// The ignored Olla keys of every section, as dotted paths, in file-section order.
    pub fn ignored_keys(&self, endpoints_prefix: &str) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(s) = &self.server {
            note_ignored(
                &mut out,
                "server",
                &[
                    ("write_timeout", s.write_timeout),
                    ("idle_timeout", s.idle_timeout),
                    ("request_logging", s.request_logging),
                    ("cors", s.cors),
                ],
            );
            if let Some(r) = &s.rate_limits {
                note_ignored(
                    &mut out,
                    "server.rate_limits",
                    &[("per_endpoint", r.per_endpoint)],
                );
            }
        }
        if let Some(p) = &self.proxy {
            note_ignored(
                &mut out,
                "proxy",
                &[
                    ("engine", p.engine),
                    ("profile", p.profile),
                    ("profile_filter", p.profile_filter),
                    ("connection_keep_alive", p.connection_keep_alive),
                    ("response_timeout", p.response_timeout),
                    ("read_timeout", p.read_timeout),
                    ("tls_handshake_timeout", p.tls_handshake_timeout),
                    ("stream_buffer_size", p.stream_buffer_size),
                    ("retry", p.retry),
                    ("max_retries", p.max_retries),
                    ("retry_backoff", p.retry_backoff),
                ],
            );
        }
        if let Some(d) = &self.discovery {
            note_ignored(
                &mut out,
                "discovery",
                &[
                    ("type", d.kind),
                    ("refresh_interval", d.refresh_interval),
                    ("health_check", d.health_check),
                ],
            );
            if let Some(m) = &d.model_discovery {
                note_ignored(
                    &mut out,
                    "discovery.model_discovery",
                    &[
                        ("concurrent_workers", m.concurrent_workers),
                        ("retry_attempts", m.retry_attempts),
                        ("retry_backoff", m.retry_backoff),
                    ],
                );
            }
        }
        let endpoints = self.endpoints.as_ref().or_else(|| {
            self.discovery
                .as_ref()
                .and_then(|d| d.static_.as_ref())
                .and_then(|s| s.endpoints.as_ref())
        });
        for (i, e) in endpoints.into_iter().flatten().enumerate() {
            note_ignored(
                &mut out,
                &format!("{endpoints_prefix}[{i}]"),
                &[
                    ("preserve_path", e.preserve_path),
                    ("model_filter", e.model_filter),
                ],
            );
        }
        if let Some(l) = &self.logging {
            note_ignored(&mut out, "logging", &[("output", l.output)]);
        }
        if let Some(r) = &self.model_registry {
            note_ignored(
                &mut out,
                "model_registry",
                &[
                    ("type", r.kind),
                    ("enable_unifier", r.enable_unifier),
                    ("unification", r.unification),
                ],
            );
            if let Some(o) = r.routing_strategy.as_ref().and_then(|s| s.options.as_ref()) {
                note_ignored(
                    &mut out,
                    "model_registry.routing_strategy.options",
                    &[
                        ("discovery_timeout", o.discovery_timeout),
                        ("discovery_refresh_on_miss", o.discovery_refresh_on_miss),
                    ],
                );
            }
        }
        note_ignored(
            &mut out,
            "",
            &[
                ("routing", self.routing),
                ("translators", self.translators),
                ("engineering", self.engineering),
                ("dashboard", self.dashboard),
            ],
        );
        out
    }
}

/// Parses the document; an empty one (or one holding only comments) is all defaults.
pub(crate) fn parse(text: &str) -> Result<FileConfig, serde_yaml::Error> {
    serde_yaml::from_str::<Option<FileConfig>>(text).map(Option::unwrap_or_default)
}
