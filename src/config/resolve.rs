//! Defaults and validation: turns the file as written ([`FileConfig`]) into a [`Config`] whose
//! endpoints are ready-to-run [`EndpointSettings`], or names the first field that is wrong.
//!
//! A per-endpoint health value comes from the endpoint, else from `health:`, else from
//! [`EndpointSettings::new`]; each value is checked where it is written, so an invalid
//! `health:` default is reported as `health.<key>`, not once per endpoint.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use awc::http::header::{HeaderName, HeaderValue};
use awc::http::Uri;
use corral_actors::backoff;
use corral_actors::breaker::BreakerPolicy;
use corral_actors::health::HealthPolicy;
use corral_actors::profiles::EndpointType;
use corral_actors::settings::{DiscoverySettings, EndpointSettings, MaxConcurrency};

use super::endpoint_auth;
use super::error::{one_of, Invalid};
use super::file::{
    BreakerFile, EndpointFile, FileConfig, HealthFile, ModelDiscoveryFile, RateLimitsFile,
};
use super::units::{expand_env, show, Concurrency, Dur, OpenDuration, Size};
use super::{
    Config, LoadBalancer, LogFormat, LoggingConfig, ProxyConfig, RateLimitConfig, RoutingStrategy,
    ServerConfig,
};

/// Shorter checks would turn the prober into a load generator against the backend.
const MIN_CHECK_INTERVAL: Duration = Duration::from_millis(100);

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

pub(crate) fn resolve(mut file: FileConfig, env: Env) -> Result<Config, Invalid> {
    let nested = file
        .discovery
        .as_ref()
        .and_then(|d| d.static_.as_ref())
        .is_some_and(|s| s.endpoints.is_some());
    let prefix = match (file.endpoints.is_some(), nested) {
        (true, true) => {
            return Err(Invalid::new(
                "endpoints",
                "both `endpoints` and `discovery.static.endpoints` are given; use one list",
            ))
        }
        (true, false) => "endpoints",
        (false, _) => "discovery.static.endpoints",
    };
    let ignored = file.ignored_keys(prefix);
    let discovery_file = file.discovery.take().unwrap_or_default();
    let list = file
        .endpoints
        .take()
        .or_else(|| discovery_file.static_.and_then(|s| s.endpoints))
        .unwrap_or_default();

    let server = server(file.server.take().unwrap_or_default())?;
    let proxy_file = file.proxy.take().unwrap_or_default();
    let corral_strategy_set = proxy_file.routing_strategy.is_some();
    let mut proxy = proxy(proxy_file)?;
    if let Some(strategy) = olla_routing_strategy(file.model_registry.take())? {
        if corral_strategy_set {
            return Err(Invalid::new(
                "model_registry.routing_strategy.type",
                "conflicts with `proxy.routing_strategy`; set only one of them",
            ));
        }
        proxy.routing_strategy = strategy;
    }
    let health_file = file.health.take().unwrap_or_default();
    let health = Health::section(&health_file)?;
    let model_discovery = model_discovery(discovery_file.model_discovery.unwrap_or_default())?;
    let logging = logging(file.logging.take().unwrap_or_default())?;
    let model_aliases = super::routing::model_aliases(file.model_aliases.take())?;

    let shared = Shared {
        prefix,
        health,
        health_file: &health_file,
        proxy_breaker: proxy.circuit_breaker,
        discovery: model_discovery,
        env,
    };
    let mut endpoints: Vec<Arc<EndpointSettings>> = Vec::with_capacity(list.len());
    let mut warnings = Vec::new();
    // A map, not a scan: fleets of thousands of endpoints are a supported size.
    let mut seen: HashMap<Arc<str>, usize> = HashMap::with_capacity(list.len());
    for (i, e) in list.iter().enumerate() {
        let settings = endpoint(i, e, &shared, &mut warnings)?;
        if let Some(j) = seen.insert(settings.name.clone(), i) {
            return Err(Invalid::new(
                format!("{prefix}[{i}].name"),
                format!(
                    "duplicate endpoint name `{}` (also endpoints[{j}])",
                    settings.name
                ),
            ));
        }
        endpoints.push(Arc::new(settings));
    }

    Ok(Config {
        source: None,
        server,
        proxy,
        endpoints,
        logging,
        model_aliases,
        ignored_olla_settings: ignored,
        warnings,
    })
}

/// `a` under Corral's name or `b` under Olla's, never both.
fn either<T>(a: Option<T>, a_path: &str, b: Option<T>, b_path: &str) -> Result<Option<T>, Invalid> {
    match (a, b) {
        (Some(_), Some(_)) => Err(Invalid::new(
            b_path,
            format!("conflicts with `{a_path}`; set only one of them"),
        )),
        (a, b) => Ok(a.or(b)),
    }
}

fn positive(d: Dur, path: &str) -> Result<Duration, Invalid> {
    if d.0.is_zero() {
        Err(Invalid::new(path, "must be greater than 0"))
    } else {
        Ok(d.0)
    }
}

fn server(s: super::file::ServerFile) -> Result<ServerConfig, Invalid> {
    let mut out = ServerConfig::default();
    if let Some(host) = s.host {
        if host.trim().is_empty() || host.contains(char::is_whitespace) {
            return Err(Invalid::new(
                "server.host",
                "must be a host name or address, like `localhost` or `0.0.0.0`",
            ));
        }
        out.host = host;
    }
    if let Some(port) = s.port {
        out.port = u16::try_from(port).map_err(|_| {
            Invalid::new(
                "server.port",
                format!("{port} is out of range (0-65535; 0 picks any free port)"),
            )
        })?;
    }
    if let Some(d) = s.shutdown_timeout {
        out.shutdown_timeout = d.0;
    }
    if let Some(d) = s.read_header_timeout {
        out.read_header_timeout = positive(d, "server.read_header_timeout")?;
    }
    if let Some(d) = s.read_timeout {
        out.read_timeout = positive(d, "server.read_timeout")?;
    }
    let limits = s.request_limits.unwrap_or_default();
    for (corral, olla, key, slot) in [
        (
            s.max_body_size,
            limits.max_body_size,
            "max_body_size",
            &mut out.max_body_size,
        ),
        (
            s.max_header_size,
            limits.max_header_size,
            "max_header_size",
            &mut out.max_header_size,
        ),
    ] {
        let corral_path = format!("server.{key}");
        let olla_path = format!("server.request_limits.{key}");
        if let Some(Size(n)) = either(corral, &corral_path, olla, &olla_path)? {
            if n == 0 {
                let path = if corral.is_some() {
                    corral_path
                } else {
                    olla_path
                };
                return Err(Invalid::new(path, "must be greater than 0"));
            }
            *slot = n;
        }
    }
    out.internal_token = match s.internal_token.map(|t| t.trim().to_string()) {
        Some(t) if t.is_empty() => None,
        Some(t) if HeaderValue::from_str(&format!("Bearer {t}")).is_err() => {
            return Err(Invalid::new(
                "server.internal_token",
                "must be printable ASCII (it is sent in an Authorization header)",
            ))
        }
        t => t,
    };
    let limits = s.rate_limits.unwrap_or_default();
    out.rate_limits = rate_limits(&limits)?;
    if let Some(on) = either(
        s.trust_proxy_headers,
        "server.trust_proxy_headers",
        limits.trust_proxy_headers,
        "server.rate_limits.trust_proxy_headers",
    )? {
        out.trust_proxy_headers = on;
    }
    let (cidrs_path, cidrs) = match (s.trusted_proxy_cidrs, limits.trusted_proxy_cidrs) {
        (Some(_), Some(_)) => {
            return Err(Invalid::new(
                "server.rate_limits.trusted_proxy_cidrs",
                "conflicts with `server.trusted_proxy_cidrs`; set only one of them",
            ))
        }
        (Some(c), None) => ("server.trusted_proxy_cidrs", Some(c)),
        (None, c) => ("server.rate_limits.trusted_proxy_cidrs", c),
    };
    if let Some(cidrs) = cidrs {
        // Olla falls back to its defaults for an empty list; trusting proxies nobody named
        // is not what an empty list says, so with the headers on it is an error instead.
        if cidrs.is_empty() && out.trust_proxy_headers {
            return Err(Invalid::new(
                cidrs_path,
                "is empty while trust_proxy_headers is on: no proxy would be trusted",
            ));
        }
        out.trusted_proxy_cidrs = cidrs.into_iter().map(|c| c.0).collect();
    }
    Ok(out)
}

/// Requests per minute are capped where a bucket's arithmetic stays exact and no real
/// deployment is near (a million a second).
const MAX_REQUESTS_PER_MINUTE: i64 = 60_000_000;

fn rate_limits(r: &RateLimitsFile) -> Result<RateLimitConfig, Invalid> {
    let mut out = RateLimitConfig::default();
    for (value, key, slot) in [
        (
            r.global_requests_per_minute,
            "global_requests_per_minute",
            &mut out.global_requests_per_minute,
        ),
        (
            r.per_ip_requests_per_minute,
            "per_ip_requests_per_minute",
            &mut out.per_ip_requests_per_minute,
        ),
        (
            r.health_requests_per_minute,
            "health_requests_per_minute",
            &mut out.health_requests_per_minute,
        ),
        (r.burst_size, "burst_size", &mut out.burst_size),
    ] {
        if let Some(n) = value {
            if !(0..=MAX_REQUESTS_PER_MINUTE).contains(&n) {
                return Err(Invalid::new(
                    format!("server.rate_limits.{key}"),
                    format!("must be 0 (off) to {MAX_REQUESTS_PER_MINUTE} (got {n})"),
                ));
            }
            *slot = n as u32;
        }
    }
    // Olla warns and then refuses every request; nobody means that.
    if out.burst_size == 0 && !out.is_off() {
        return Err(Invalid::new(
            "server.rate_limits.burst_size",
            "must be at least 1 while a limit is on (0 would refuse every request)",
        ));
    }
    if let Some(d) = r.cleanup_interval {
        out.cleanup_interval = d.0;
    }
    Ok(out)
}

fn proxy(p: super::file::ProxyFile) -> Result<ProxyConfig, Invalid> {
    let mut out = ProxyConfig::default();
    if let Some(name) = p.load_balancer {
        out.load_balancer = LoadBalancer::from_name(&name).ok_or_else(|| {
            Invalid::new("proxy.load_balancer", one_of(&name, LoadBalancer::NAMES))
        })?;
    }
    if let Some(name) = p.routing_strategy {
        out.routing_strategy = RoutingStrategy::from_name(&name).ok_or_else(|| {
            Invalid::new(
                "proxy.routing_strategy",
                one_of(&name, RoutingStrategy::NAMES),
            )
        })?;
    }
    let connect = either(
        p.connect_timeout,
        "proxy.connect_timeout",
        p.connection_timeout,
        "proxy.connection_timeout",
    )?;
    if let Some(d) = connect {
        let path = if p.connect_timeout.is_some() {
            "proxy.connect_timeout"
        } else {
            "proxy.connection_timeout"
        };
        out.connect_timeout = positive(d, path)?;
    }
    if let Some(d) = p.response_header_timeout {
        out.response_header_timeout = positive(d, "proxy.response_header_timeout")?;
    }
    if let Some(d) = p.stream_idle_timeout {
        out.stream_idle_timeout = positive(d, "proxy.stream_idle_timeout")?;
    }
    if let Some(n) = p.max_attempts {
        out.max_attempts = u32::try_from(n).map_err(|_| {
            Invalid::new(
                "proxy.max_attempts",
                format!("{n} is out of range (0 tries every candidate once)"),
            )
        })?;
    }
    if let Some(codes) = p.retry_on_status {
        out.retry_on_status = codes
            .iter()
            .enumerate()
            .map(|(i, &code)| match u16::try_from(code) {
                Ok(c) if (100..=599).contains(&c) => Ok(c),
                _ => Err(Invalid::new(
                    format!("proxy.retry_on_status[{i}]"),
                    format!("{code} is not an HTTP status code (100-599)"),
                )),
            })
            .collect::<Result<_, _>>()?;
    }
    out.circuit_breaker = breaker(
        BreakerPolicy::PROXY_DEFAULT,
        p.circuit_breaker.as_ref(),
        "proxy.circuit_breaker",
    )?;
    out.sticky_sessions = super::routing::sticky_sessions(p.sticky_sessions)?;
    if let Some(b) = p.forward_client_credentials {
        out.forward_client_credentials = b;
    }
    if let Some(q) = p.queue {
        if let Some(n) = q.size {
            out.queue.size = usize::try_from(n)
                .ok()
                .filter(|&n| n <= MAX_QUEUE_SIZE)
                .ok_or_else(|| {
                    Invalid::new(
                        "proxy.queue.size",
                        format!("must be 0 (no queue) to {MAX_QUEUE_SIZE} (got {n})"),
                    )
                })?;
        }
        if let Some(d) = q.max_wait {
            out.queue.max_wait = positive(d, "proxy.queue.max_wait")?;
        }
    }
    Ok(out)
}

/// Olla's `model_registry.routing_strategy`, as the Corral strategy that behaves the same
/// (SPEC 3): Olla's `optimistic` and `discovery` send a request for a model nobody lists
/// anywhere only with `fallback_behavior: all`; with `compatible_only` (its default) or `none`
/// they reject it, as Corral's `strict` does. (`discovery` also refreshes the model lists
/// before it rejects; Corral counts an endpoint whose list is unknown as listing the model,
/// and refreshes lists on recovery and every `model_discovery.interval`.)
fn olla_routing_strategy(
    registry: Option<super::file::ModelRegistryFile>,
) -> Result<Option<RoutingStrategy>, Invalid> {
    const TYPES: &[&str] = &["strict", "optimistic", "discovery"];
    const FALLBACKS: &[&str] = &["compatible_only", "all", "none"];
    let Some(routing) = registry.and_then(|r| r.routing_strategy) else {
        return Ok(None);
    };
    let fallback = routing.options.and_then(|o| o.fallback_behavior);
    let falls_back = match fallback.as_deref().map(str::to_ascii_lowercase) {
        None => false,
        Some(f) if FALLBACKS.contains(&f.as_str()) => f == "all",
        Some(_) => {
            let f = fallback.unwrap_or_default();
            return Err(Invalid::new(
                "model_registry.routing_strategy.options.fallback_behavior",
                one_of(&f, FALLBACKS),
            ));
        }
    };
    // Without a type Olla routes strictly, which is Corral's default too.
    let Some(kind) = routing.kind else {
        return Ok(None);
    };
    match kind.to_ascii_lowercase().as_str() {
        "strict" => Ok(Some(RoutingStrategy::Strict)),
        "optimistic" | "discovery" if falls_back => Ok(Some(RoutingStrategy::Optimistic)),
        "optimistic" | "discovery" => Ok(Some(RoutingStrategy::Strict)),
        _ => Err(Invalid::new(
            "model_registry.routing_strategy.type",
            one_of(&kind, TYPES),
        )),
    }
}

/// Each waiting request holds its buffered body (up to `server.max_body_size`): a bound
/// on the queue is a bound on memory.
const MAX_QUEUE_SIZE: usize = 1_000_000;

fn breaker(
    base: BreakerPolicy,
    over: Option<&BreakerFile>,
    path: &str,
) -> Result<BreakerPolicy, Invalid> {
    let mut out = base;
    let Some(over) = over else { return Ok(out) };
    if let Some(n) = over.failure_threshold {
        out.failure_threshold = u32::try_from(n).ok().filter(|&n| n >= 1).ok_or_else(|| {
            Invalid::new(
                format!("{path}.failure_threshold"),
                format!("must be at least 1 (got {n})"),
            )
        })?;
    }
    if let Some(OpenDuration::Fixed(d)) = over.open_duration {
        out.open_duration = positive(d, &format!("{path}.open_duration"))?;
    }
    Ok(out)
}

fn model_discovery(m: ModelDiscoveryFile) -> Result<DiscoverySettings, Invalid> {
    let mut out = DiscoverySettings::default();
    if let Some(enabled) = m.enabled {
        out.enabled = enabled;
    }
    if let Some(d) = m.interval {
        out.interval = positive(d, "discovery.model_discovery.interval")?;
    }
    if let Some(d) = m.timeout {
        out.timeout = positive(d, "discovery.model_discovery.timeout")?;
    }
    Ok(out)
}

fn logging(l: super::file::LoggingFile) -> Result<LoggingConfig, Invalid> {
    let mut out = LoggingConfig::default();
    if let Some(level) = l.level {
        let lower = level.to_ascii_lowercase();
        if !LoggingConfig::LEVELS.contains(&lower.as_str()) {
            return Err(Invalid::new(
                "logging.level",
                one_of(&level, LoggingConfig::LEVELS),
            ));
        }
        out.level = lower;
    }
    if let Some(format) = l.format {
        out.format = LogFormat::from_name(&format)
            .ok_or_else(|| Invalid::new("logging.format", one_of(&format, LogFormat::NAMES)))?;
    }
    Ok(out)
}

/// The health keys with every default applied.
#[derive(Debug, Clone, Copy)]
struct Health {
    check_interval: Duration,
    check_timeout: Duration,
    degraded_latency: Duration,
    recovery_successes: u32,
    max_backoff: Duration,
    jitter: f64,
    breaker: BreakerPolicy,
    /// The health breaker's open time is `auto`: it follows the interval (SPEC 9.4).
    breaker_open_auto: bool,
    load_interval: Duration,
    max_concurrency: MaxConcurrency,
}

impl Health {
    /// The `health:` section over the built-in defaults (those of [`EndpointSettings::new`]).
    fn section(over: &HealthFile) -> Result<Health, Invalid> {
        let d = EndpointSettings::new("defaults", "http://localhost", EndpointType::Auto);
        let defaults = Health {
            check_interval: d.check_interval,
            check_timeout: d.check_timeout,
            degraded_latency: d.health.degraded_latency,
            recovery_successes: d.health.recovery_successes,
            max_backoff: d.max_backoff,
            jitter: d.jitter,
            breaker: d.health_breaker,
            breaker_open_auto: true,
            load_interval: d.load_interval,
            max_concurrency: d.max_concurrency,
        };
        let h = defaults.with(over, "health")?;
        // Only a timeout written here is checked here: the built-in default is adjusted per
        // endpoint, where the interval it must fit is known.
        if over.check_timeout.is_some() && h.check_timeout >= h.check_interval {
            return Err(Invalid::new(
                "health.check_timeout",
                format!(
                    "must be shorter than check_interval ({})",
                    show(h.check_interval)
                ),
            ));
        }
        Ok(h)
    }

    /// `self` with the keys set in `over` replaced, each checked under `path.<key>`.
    fn with(self, over: &HealthFile, path: &str) -> Result<Health, Invalid> {
        let mut h = self;
        if let Some(d) = over.check_interval {
            if d.0 < MIN_CHECK_INTERVAL {
                return Err(Invalid::new(
                    format!("{path}.check_interval"),
                    format!("must be at least 100ms (got {})", show(d.0)),
                ));
            }
            h.check_interval = d.0;
        }
        if let Some(d) = over.check_timeout {
            h.check_timeout = positive(d, &format!("{path}.check_timeout"))?;
        }
        if let Some(d) = over.degraded_latency {
            h.degraded_latency = positive(d, &format!("{path}.degraded_latency"))?;
        }
        if let Some(n) = over.recovery_successes {
            h.recovery_successes = u32::try_from(n).ok().filter(|&n| n >= 1).ok_or_else(|| {
                Invalid::new(
                    format!("{path}.recovery_successes"),
                    format!("must be at least 1 (got {n})"),
                )
            })?;
        }
        if let Some(d) = over.max_backoff {
            h.max_backoff = positive(d, &format!("{path}.max_backoff"))?;
        }
        if let Some(j) = over.jitter {
            h.jitter = j.0;
        }
        h.breaker = breaker(
            h.breaker,
            over.circuit_breaker.as_ref(),
            &format!("{path}.circuit_breaker"),
        )?;
        if let Some(d) = over.load_interval {
            if !d.0.is_zero() && d.0 < MIN_CHECK_INTERVAL {
                return Err(Invalid::new(
                    format!("{path}.load_interval"),
                    format!("must be 0s (off) or at least 100ms (got {})", show(d.0)),
                ));
            }
            h.load_interval = d.0;
        }
        if let Some(c) = over.max_concurrency {
            h.max_concurrency = match c {
                Concurrency::Auto => MaxConcurrency::Auto,
                Concurrency::Count(0) => MaxConcurrency::Unlimited,
                Concurrency::Count(n) if n > 0 => MaxConcurrency::Fixed(n as u64),
                Concurrency::Count(n) => {
                    return Err(Invalid::new(
                        format!("{path}.max_concurrency"),
                        format!("must be 0 (no limit), a positive number or `auto` (got {n})"),
                    ))
                }
            };
        }
        match over.circuit_breaker.and_then(|b| b.open_duration) {
            Some(OpenDuration::Auto) => h.breaker_open_auto = true,
            Some(OpenDuration::Fixed(_)) => h.breaker_open_auto = false,
            None => {}
        }
        Ok(h)
    }
}

/// What every endpoint inherits.
struct Shared<'a> {
    prefix: &'static str,
    health: Health,
    health_file: &'a HealthFile,
    proxy_breaker: BreakerPolicy,
    discovery: DiscoverySettings,
    env: Env<'a>,
}

fn endpoint(
    i: usize,
    e: &EndpointFile,
    shared: &Shared,
    warnings: &mut Vec<String>,
) -> Result<EndpointSettings, Invalid> {
    let path = format!("{}[{i}]", shared.prefix);
    let at = |key: &str| format!("{path}.{key}");

    let url = e.url.as_deref().ok_or_else(|| {
        Invalid::new(
            at("url"),
            "required (the endpoint's base URL, like `http://localhost:11434`)",
        )
    })?;
    let base = base_url(url).map_err(|reason| Invalid::new(at("url"), reason))?;
    let name = match &e.name {
        Some(n) if n.trim().is_empty() => {
            return Err(Invalid::new(at("name"), "must not be empty"))
        }
        Some(n) if n.chars().any(char::is_control) => {
            return Err(Invalid::new(
                at("name"),
                "must not contain control characters",
            ))
        }
        Some(n) => n.trim().to_string(),
        None => base.default_name.clone(),
    };
    let kind = e.kind.map_or(EndpointType::Auto, |k| k.0);
    let mut s = EndpointSettings::new(&name, &base.url, kind);

    if let Some(n) = e.priority {
        s.priority = u32::try_from(n).map_err(|_| {
            Invalid::new(
                at("priority"),
                format!("must be 0 or more, up to {} (got {n})", u32::MAX),
            )
        })?;
    }
    if let Some(v) = &e.health_check_url {
        s.health_url = join_url(&s.url, v).map_err(|r| Invalid::new(at("health_check_url"), r))?;
        s.health_url_is_default = false;
    }
    if let Some(v) = &e.model_url {
        s.model_url = join_url(&s.url, v).map_err(|r| Invalid::new(at("model_url"), r))?;
    }

    let own = e.health();
    let mut h = shared.health.with(&own, &path)?;
    if h.check_timeout >= h.check_interval {
        if own.check_timeout.is_some() {
            return Err(Invalid::new(
                at("check_timeout"),
                format!(
                    "must be shorter than check_interval ({})",
                    show(h.check_interval)
                ),
            ));
        }
        // An inherited timeout the endpoint's own interval cannot hold: the reference's own
        // examples set `check_interval: 2s` alone, and they must load (SPEC 3).
        let from = if shared.health_file.check_timeout.is_some() {
            "from health.check_timeout"
        } else {
            "the default"
        };
        let half = h.check_interval / 2;
        warnings.push(format!(
            "{path} ({name}): check_timeout {} ({from}) is not shorter than check_interval {}; \
             using {} (half the interval)",
            show(h.check_timeout),
            show(h.check_interval),
            show(half)
        ));
        h.check_timeout = half;
    }
    s.check_interval = h.check_interval;
    s.check_timeout = h.check_timeout;
    s.health = HealthPolicy {
        degraded_latency: h.degraded_latency,
        recovery_successes: h.recovery_successes,
    };
    s.max_backoff = h.max_backoff;
    s.jitter = h.jitter;
    s.health_breaker = h.breaker;
    if h.breaker_open_auto {
        s.health_breaker.open_duration =
            backoff::auto_open_duration(h.check_interval, h.max_backoff);
    }
    s.load_interval = h.load_interval;
    s.max_concurrency = h.max_concurrency;
    if s.max_concurrency == MaxConcurrency::Auto {
        // `auto` follows the slot count llama.cpp's `/slots` reports; with nothing to follow it
        // is no limit at all, which an operator should hear of at startup, not under load.
        let why = if kind != EndpointType::LlamaCpp {
            Some(format!("type {kind} reports no slot count"))
        } else if s.load_interval.is_zero() {
            Some("load_interval is 0s, so /slots is never read".to_string())
        } else {
            None
        };
        if let Some(why) = why {
            warnings.push(format!(
                "{path} ({name}): max_concurrency: auto has nothing to follow ({why}); no limit"
            ));
        }
    }
    s.proxy_breaker = shared.proxy_breaker;
    if let Some(b) = e.require_models {
        s.require_models = b;
    }
    if let Some(b) = e.health_checks {
        s.health_checks = b;
    }
    if let Some(headers) = &e.headers {
        s.headers = headers
            .0
            .iter()
            .map(|(name, value)| header(name, value, &at("headers"), shared.env))
            .collect::<Result<_, _>>()?;
    }
    if let Some(auth) = &e.auth {
        // Last, and instead of a same-named `headers:` entry: the credential wins (Olla's order).
        let (name, value) = endpoint_auth::header(auth, &at("auth"), shared.env, warnings)?;
        s.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
        s.headers.push((name, value));
    }
    s.discovery = shared.discovery;
    Ok(s)
}

/// One header, checked as HTTP and with `${VAR}` expanded. Values are never echoed: they are
/// usually credentials.
fn header(name: &str, value: &str, path: &str, env: Env) -> Result<(String, String), Invalid> {
    let path = format!("{path}.{name}");
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| Invalid::new(&path, format!("`{name}` is not a valid HTTP header name")))?;
    let expanded = expand_env(value, env).map_err(|e| Invalid::new(&path, e.to_string()))?;
    HeaderValue::from_str(&expanded).map_err(|_| {
        Invalid::new(
            &path,
            "not a valid HTTP header value (control characters or non-ASCII text)",
        )
    })?;
    Ok((name.to_string(), expanded))
}

#[derive(Debug)]
struct BaseUrl {
    /// As written, without a trailing slash.
    url: String,
    /// `host:port`, the port being the scheme's default when the URL names none.
    default_name: String,
}

const URL_HELP: &str = "must be an absolute http(s) URL, like `http://localhost:11434`";

/// Checks an endpoint's base URL: http(s), a host, no credentials, no query or fragment.
fn base_url(raw: &str) -> Result<BaseUrl, String> {
    let s = raw.trim();
    let uri = absolute(s)?;
    if uri.query().is_some() || s.contains('#') {
        return Err("must not have a query string or #fragment".into());
    }
    let authority = uri.authority().expect("checked by absolute()");
    let port = authority.port_u16().unwrap_or(match uri.scheme_str() {
        Some(scheme) if scheme.eq_ignore_ascii_case("https") => 443,
        _ => 80,
    });
    Ok(BaseUrl {
        url: s.trim_end_matches('/').to_string(),
        default_name: format!("{}:{port}", authority.host()),
    })
}

/// Parses an absolute http(s) URL with a host and without user:password.
fn absolute(s: &str) -> Result<Uri, String> {
    // Checked before parsing so that a password never ends up in a message.
    let authority = s
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(""));
    if authority.is_some_and(|a| a.contains('@')) {
        return Err(
            "must not contain user:password (put credentials in an `auth:` block: \
             type: basic, username, password)"
                .into(),
        );
    }
    let uri: Uri = s.parse().map_err(|_| format!("`{s}` {URL_HELP}"))?;
    match uri.scheme_str() {
        Some(scheme)
            if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") => {}
        _ => return Err(format!("`{s}` {URL_HELP}")),
    }
    match uri.authority() {
        Some(a) if !a.host().is_empty() => Ok(uri),
        _ => Err(format!("`{s}` has no host; it {URL_HELP}")),
    }
}

/// A health or model URL: an absolute http(s) URL used as is, or a path joined to `base`
/// (so a base path such as `/api` is kept).
fn join_url(base: &str, value: &str) -> Result<String, String> {
    let v = value.trim();
    if v.is_empty() {
        return Err("must not be empty (leave the key out to use the type's default)".into());
    }
    if v.contains("://") {
        return absolute(v).map(|_| v.to_string()).map_err(|_| {
            format!("`{v}` must be a path like `/health` or an absolute http(s) URL without user:password")
        });
    }
    let joined = if v.starts_with('/') {
        format!("{base}{v}")
    } else {
        format!("{base}/{v}")
    };
    joined
        .parse::<Uri>()
        .map(|_| joined.clone())
        .map_err(|_| format!("`{v}` is not a valid URL path"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_default_names_use_the_schemes_port() {
        let b = base_url("http://localhost:11434/").unwrap();
        assert_eq!(b.url, "http://localhost:11434");
        assert_eq!(b.default_name, "localhost:11434");
        assert_eq!(
            base_url("http://gpu-box").unwrap().default_name,
            "gpu-box:80"
        );
        assert_eq!(
            base_url("https://api.openai.com/v1").unwrap().default_name,
            "api.openai.com:443"
        );
        assert_eq!(
            base_url("https://api.openai.com/v1").unwrap().url,
            "https://api.openai.com/v1"
        );
    }

    #[test]
    fn base_urls_must_be_absolute_http_without_credentials() {
        assert!(base_url("localhost:11434").unwrap_err().contains(URL_HELP));
        assert!(base_url("ftp://host").unwrap_err().contains(URL_HELP));
        assert!(base_url("/relative").unwrap_err().contains(URL_HELP));
        let e = base_url("http://user:secret@host:1").unwrap_err();
        assert!(e.contains("user:password"), "{e}");
        assert!(!e.contains("secret"), "{e}");
        assert!(base_url("http://host/?a=1").unwrap_err().contains("query"));
        assert!(base_url("http://host/#x").is_err());
        assert!(base_url("http://").is_err());
    }

    #[test]
    fn urls_join_paths_and_keep_absolute_ones() {
        let base = "http://localhost:8080/api";
        assert_eq!(
            join_url(base, "/health").unwrap(),
            "http://localhost:8080/api/health"
        );
        assert_eq!(
            join_url(base, "health").unwrap(),
            "http://localhost:8080/api/health"
        );
        assert_eq!(join_url(base, "/").unwrap(), "http://localhost:8080/api/");
        assert_eq!(
            join_url(base, "http://monitor:9090/h").unwrap(),
            "http://monitor:9090/h"
        );
        assert!(join_url(base, "").is_err());
        assert!(join_url(base, "ftp://x/h").is_err());
        assert!(join_url(base, "/a b")
            .unwrap_err()
            .contains("not a valid URL path"));
    }
}
