//! Configuration (SPEC 3): finding the file, reading it, and turning it into a validated
//! [`Config`] — every default applied, every endpoint resolved into the
//! [`EndpointSettings`] its actor runs with. Startup and reload call [`locate`] and [`load`];
//! nothing is served from a config that failed here.
//!
//! The work is split by mechanism: `file.rs` is the YAML as written, `units.rs` the value
//! languages (durations, sizes, percentages, `${VAR}`), `resolve.rs` the defaults and
//! validation, `error.rs` the one-line messages, `locate.rs` the search order. Defaults live
//! in the `Default` impls below, and for per-endpoint health settings in
//! [`EndpointSettings::new`].

mod endpoint_auth;
mod error;
mod file;
mod locate;
mod resolve;
mod routing;
mod units;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use corral_actors::breaker::BreakerPolicy;
pub use corral_actors::settings::{DiscoverySettings, EndpointSettings};

pub use error::ConfigError;
pub use locate::{locate, CONFIG_ENV, DEFAULT_PATHS};
pub use routing::{KeySource, ModelAliases, StickyConfig};

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    /// The file it came from; `None` when parsed from text (tests) or built in code.
    pub source: Option<PathBuf>,
    pub server: ServerConfig,
    pub proxy: ProxyConfig,
    /// In file order; names are unique.
    pub endpoints: Vec<Arc<EndpointSettings>>,
    pub logging: LoggingConfig,
    /// Alias → the native names it stands for (SPEC 12).
    pub model_aliases: ModelAliases,
    /// Olla keys that were present and are ignored, as dotted paths (`proxy.engine`,
    /// `discovery.static.endpoints[0].preserve_path`); see [`Config::ignored_settings_warning`].
    pub ignored_olla_settings: Vec<String>,
    /// What loading adjusted, one line each, for the startup log (an inherited
    /// `check_timeout` halved to fit an endpoint's `check_interval`, ...).
    pub warnings: Vec<String>,
}

impl Config {
    /// The one startup warning that names every ignored Olla key, if there are any.
    pub fn ignored_settings_warning(&self) -> Option<String> {
        match self.ignored_olla_settings.as_slice() {
            [] => None,
            [one] => Some(format!("ignored Olla setting: {one}")),
            many => Some(format!("ignored Olla settings: {}", many.join(", "))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub host: String,
    /// 0 asks the OS for any free port (tests).
    pub port: u16,
    /// How long in-flight requests (streams included) may run on after SIGINT/SIGTERM.
    pub shutdown_timeout: Duration,
    /// Larger request bodies get 413.
    pub max_body_size: u64,
    /// Larger request heads get 431.
    pub max_header_size: u64,
    /// When set, `/internal/*` (except `/internal/health`) needs `Authorization: Bearer <token>`.
    pub internal_token: Option<String>,
    /// A client must send its request head within this, from its first byte (SPEC 11).
    pub read_header_timeout: Duration,
    /// ... and its whole body within this, from the end of the head; else 408 (SPEC 11).
    pub read_timeout: Duration,
    /// Olla's request rate limits (SPEC 12).
    pub rate_limits: RateLimitConfig,
    /// Whether a client's address may come from `X-Forwarded-For` / `X-Real-IP`; only
    /// ever when the connection itself comes from one of `trusted_proxy_cidrs`.
    pub trust_proxy_headers: bool,
    /// The proxies whose forwarding headers are believed (host bits dropped).
    pub trusted_proxy_cidrs: Vec<ipnet::IpNet>,
}

/// Olla's default trusted proxies (loopback and the private IPv4 ranges), plus IPv6 loopback
/// (`::1`), the same machine over the other protocol.
pub const DEFAULT_TRUSTED_PROXY_CIDRS: &[&str] = &[
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "::1/128",
];

/// `server.rate_limits` (SPEC 12): Olla's token buckets, one for all proxied traffic, one per
/// client address for proxied requests, and one per client address for `/internal/health`.
/// A rate of 0 turns that bucket off. The defaults are Olla's, and as in Olla they are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// All proxied requests together, per minute.
    pub global_requests_per_minute: u32,
    /// Proxied requests from one client address, per minute.
    pub per_ip_requests_per_minute: u32,
    /// `/internal/health` requests from one client address, per minute (a bucket of its own,
    /// so that monitoring keeps working while a client is being limited).
    pub health_requests_per_minute: u32,
    /// How many requests each bucket admits at once after a quiet spell.
    pub burst_size: u32,
    /// How often clients that have gone quiet are forgotten; 0: only when the table is full.
    pub cleanup_interval: Duration,
}

impl RateLimitConfig {
    /// Every bucket off: no limits and no `X-RateLimit-*` headers.
    pub const OFF: RateLimitConfig = RateLimitConfig {
        global_requests_per_minute: 0,
        per_ip_requests_per_minute: 0,
        health_requests_per_minute: 0,
        burst_size: 0,
        cleanup_interval: Duration::ZERO,
    };

    pub fn is_off(&self) -> bool {
        self.global_requests_per_minute == 0
            && self.per_ip_requests_per_minute == 0
            && self.health_requests_per_minute == 0
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            global_requests_per_minute: 1000,
            per_ip_requests_per_minute: 100,
            health_requests_per_minute: 1000,
            burst_size: 50,
            cleanup_interval: Duration::from_secs(5 * 60),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: "localhost".into(),
            port: 40114,
            shutdown_timeout: Duration::from_secs(10),
            max_body_size: 100 * 1024 * 1024,
            max_header_size: 64 * 1024,
            internal_token: None,
            read_header_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            rate_limits: RateLimitConfig::default(),
            trust_proxy_headers: false,
            trusted_proxy_cidrs: DEFAULT_TRUSTED_PROXY_CIDRS
                .iter()
                .map(|c| c.parse().expect("a valid built-in CIDR"))
                .collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    pub load_balancer: LoadBalancer,
    pub routing_strategy: RoutingStrategy,
    pub connect_timeout: Duration,
    /// Time to the first response byte; cold model loads are slow, hence the generous default.
    pub response_header_timeout: Duration,
    /// A stream with no bytes from upstream for this long is ended.
    pub stream_idle_timeout: Duration,
    /// Attempts per request; 0 tries every candidate once.
    pub max_attempts: u32,
    /// Statuses that fail over to the next candidate while no byte has reached the client.
    pub retry_on_status: Vec<u16>,
    /// The per-endpoint proxy breaker (also copied into each `EndpointSettings.proxy_breaker`).
    pub circuit_breaker: BreakerPolicy,
    /// Where requests wait while every candidate is at its `max_concurrency` (SPEC 10.3).
    pub queue: QueueConfig,
    /// Conversations kept on the endpoint that served them (SPEC 12).
    pub sticky_sessions: StickyConfig,
    /// The client's `Authorization`, `Cookie`, `X-Api-Key` and `X-Auth-Token` reach backends
    /// (SPEC 12); off, as in Olla, so that a request that fails over to another endpoint
    /// never carries one client's key to a third party.
    pub forward_client_credentials: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    /// Requests that may wait at once; 0: none wait (429 at once).
    pub size: usize,
    /// How long one request may wait for a free slot before it gets 503 `queue_timeout`.
    pub max_wait: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            size: 256,
            max_wait: Duration::from_secs(30),
        }
    }
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            load_balancer: LoadBalancer::Priority,
            routing_strategy: RoutingStrategy::Strict,
            connect_timeout: Duration::from_secs(5),
            response_header_timeout: Duration::from_secs(120),
            stream_idle_timeout: Duration::from_secs(300),
            max_attempts: 0,
            retry_on_status: vec![429, 502, 503, 504],
            circuit_breaker: BreakerPolicy::PROXY_DEFAULT,
            queue: QueueConfig::default(),
            sticky_sessions: StickyConfig::default(),
            forward_client_credentials: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggingConfig {
    /// One of [`LoggingConfig::LEVELS`], lower case.
    pub level: String,
    pub format: LogFormat,
}

impl LoggingConfig {
    pub const LEVELS: &'static [&'static str] = &["trace", "debug", "info", "warn", "error"];
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// How a request picks among the routable candidates of the best tier (SPEC 5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadBalancer {
    Priority,
    RoundRobin,
    LeastConnections,
}

impl LoadBalancer {
    pub const NAMES: &'static [&'static str] = &["priority", "round-robin", "least-connections"];

    pub fn as_str(self) -> &'static str {
        match self {
            LoadBalancer::Priority => "priority",
            LoadBalancer::RoundRobin => "round-robin",
            LoadBalancer::LeastConnections => "least-connections",
        }
    }

    /// Accepts Olla's spellings too (`round_robin`, `least_conn`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().replace('_', "-").as_str() {
            "priority" => Some(LoadBalancer::Priority),
            "round-robin" => Some(LoadBalancer::RoundRobin),
            "least-connections" | "least-conn" => Some(LoadBalancer::LeastConnections),
            _ => None,
        }
    }
}

/// What happens when no routable endpoint is known to have the requested model (SPEC 5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoutingStrategy {
    Strict,
    Optimistic,
}

impl RoutingStrategy {
    pub const NAMES: &'static [&'static str] = &["strict", "optimistic"];

    pub fn as_str(self) -> &'static str {
        match self {
            RoutingStrategy::Strict => "strict",
            RoutingStrategy::Optimistic => "optimistic",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "strict" => Some(RoutingStrategy::Strict),
            "optimistic" => Some(RoutingStrategy::Optimistic),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    pub const NAMES: &'static [&'static str] = &["text", "json"];

    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}

/// Reads and validates the file at `path`, expanding `${VAR}` from the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(format!("{}: cannot read: {e}", path.display())))?;
    let mut config = parse(&text, &path.display().to_string(), &|var| {
        std::env::var(var).ok()
    })?;
    config.source = Some(path.to_path_buf());
    Ok(config)
}

/// Parses and validates config text. `origin` (normally the file path) starts every error
/// message; `env` answers `${VAR}` look-ups. The only files read are those an endpoint's
/// `auth:` names (`token_file`, ...).
pub fn parse(
    text: &str,
    origin: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let file = file::parse(text).map_err(|e| error::from_yaml(origin, &e))?;
    resolve::resolve(file, env).map_err(|invalid| ConfigError::at(origin, invalid))
}
