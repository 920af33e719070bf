//! One function per fuzz target: it feeds arbitrary bytes to one of Corral's parsers of
//! hostile input and panics when a promise of that parser (its doc comment, SPEC 11) breaks.
//!
//! Compiled twice: by the `corral-fuzz` crate for the libFuzzer binaries in
//! `fuzz/fuzz_targets/`, and by the workspace test `tests/fuzz_corpus.rs` (with `#[path]`),
//! which replays `fuzz/corpus/<target>/` on stable. So this file may use only what both
//! crates depend on: `corral`, `corral_actors`, `actix_rt`, `actix_web`, `serde_json`, std.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix_rt::time::Instant;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::http::Uri;
use corral::config::{Config, LoggingConfig};
use corral::proxy::{body, headers, route};
use corral_actors::backoff;
use corral_actors::breaker::BreakerPolicy;
use corral_actors::endpoint::{Effects, EndpointMachine};
use corral_actors::load::{prometheus, LoadReport, LoadSource, MAX_COUNT, MAX_LOAD_BODY};
use corral_actors::outcome::{CheckReport, FailureReason, ProbeOutcome, RequestOutcome};
use corral_actors::probe::parse_retry_after;
use corral_actors::profiles::{EndpointType, ModelInfo, MAX_MODELS, MAX_MODEL_NAME};
use corral_actors::settings::EndpointSettings;

/// A target's checks over one input.
pub type Check = fn(&[u8], Mode);

/// Every target, by the name of its binary and corpus directory.
pub const TARGETS: &[(&str, Check)] = &[
    ("config", config),
    ("request_model", request_model),
    ("route_path", route_path),
    ("model_list", model_list),
    ("headers", headers),
    ("retry_after", retry_after),
    ("load_report", load_report),
];

/// Checks that fail on the current code: bugs found by fuzzing, reported and not fixed yet.
/// Outside [`Mode::Strict`] they are skipped, so that the corpus replay stays green and long
/// runs explore past them. Whoever fixes one removes its id here (and un-ignores its
/// reproducer in `tests/fuzz_corpus.rs`).
pub const OPEN_BUGS: &[&str] = &[
    // None open: the four found so far are fixed (fuzz/README.md, "Found and fixed").
];

/// Whether the checks of [`OPEN_BUGS`] are asserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Strict,
    SkipOpenBugs,
}

impl Mode {
    fn asserts(self, id: &str) -> bool {
        self == Mode::Strict || !OPEN_BUGS.contains(&id)
    }
}

/// `ensure!(mode, "check-id", condition, "message {}", args)`: panics with the id unless the
/// condition holds or the check is an open bug being skipped. Formats only on failure.
macro_rules! ensure {
    ($mode:expr, $id:literal, $cond:expr, $($msg:tt)+) => {
        if !$cond && $mode.asserts($id) {
            panic!("[{}] {}", $id, format_args!($($msg)+));
        }
    };
}

/// Bytes as text the way a parser that takes `&str` would see them from the wire.
fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}

// ## config: YAML text => a validated Config or a one-line error naming the file

/// The origin every error message must start with.
const ORIGIN: &str = "fuzz.yaml";
/// What `${VAR}` expands to: header values, usually credentials, never echoed in errors.
const SECRET: &str = "s3cr3t-";

fn env(var: &str) -> Option<String> {
    match var.as_bytes().first() {
        Some(b'A'..=b'M') => Some(format!("{SECRET}{var}")),
        // Not a valid header value: must be refused, without echoing it.
        Some(b'N') => Some(format!("{SECRET}\nsecond line")),
        _ => None,
    }
}

/// `corral::config::parse` on arbitrary text: deterministic; a config it accepts holds every
/// bound that validation promises and runs through the endpoint machine without panicking; a
/// config it refuses gets one line starting with the origin that never echoes a secret.
pub fn config(data: &[u8], mode: Mode) {
    let text = text(data);
    let first = corral::config::parse(&text, ORIGIN, &env);
    let again = corral::config::parse(&text, ORIGIN, &env);
    ensure!(
        mode,
        "config-deterministic",
        first == again,
        "{first:?} then {again:?}"
    );
    match first {
        Ok(config) => valid_config(&config, mode),
        Err(e) => {
            let m = e.message();
            ensure!(
                mode,
                "config-error-origin",
                m.starts_with(ORIGIN) && m.len() > ORIGIN.len() + 2,
                "error does not start with the origin: {m:?}"
            );
            ensure!(
                mode,
                "config-error-one-line",
                !m.contains(['\n', '\r']),
                "error is not one line: {m:?}"
            );
            ensure!(
                mode,
                "config-error-no-secret",
                text.contains(SECRET) || !m.contains(SECRET),
                "error echoes an expanded ${{VAR}}: {m:?}"
            );
        }
    }
}

fn positive(d: Duration) -> bool {
    !d.is_zero()
}

fn valid_breaker(p: &BreakerPolicy) -> bool {
    p.failure_threshold >= 1 && positive(p.open_duration)
}

fn valid_url(u: &str) -> bool {
    let lower = u.get(..8).unwrap_or(u).to_ascii_lowercase();
    (lower.starts_with("http://") || lower.starts_with("https://")) && u.parse::<Uri>().is_ok()
}

fn valid_config(c: &Config, mode: Mode) {
    let s = &c.server;
    ensure!(
        mode,
        "config-server",
        !s.host.trim().is_empty()
            && !s.host.contains(char::is_whitespace)
            && s.max_body_size > 0
            && s.max_header_size > 0,
        "{s:?}"
    );
    if let Some(t) = &s.internal_token {
        ensure!(
            mode,
            "config-token",
            !t.is_empty() && t.trim() == t && HeaderValue::from_str(&format!("Bearer {t}")).is_ok(),
            "internal_token {t:?}"
        );
    }
    let p = &c.proxy;
    ensure!(
        mode,
        "config-proxy",
        positive(p.connect_timeout)
            && positive(p.response_header_timeout)
            && positive(p.stream_idle_timeout)
            && p.retry_on_status.iter().all(|s| (100..=599).contains(s))
            && valid_breaker(&p.circuit_breaker),
        "{p:?}"
    );
    ensure!(
        mode,
        "config-logging",
        LoggingConfig::LEVELS.contains(&c.logging.level.as_str()),
        "{:?}",
        c.logging
    );
    ensure!(
        mode,
        "config-ignored-warning",
        c.ignored_settings_warning().is_none() == c.ignored_olla_settings.is_empty(),
        "{:?}",
        c.ignored_olla_settings
    );
    let mut names = std::collections::HashSet::new();
    for e in &c.endpoints {
        ensure!(
            mode,
            "config-endpoint-name",
            !e.name.is_empty()
                && e.name.trim() == &*e.name
                && !e.name.chars().any(char::is_control)
                && names.insert(e.name.clone()),
            "name {:?} empty, untrimmed, with control characters or a duplicate",
            e.name
        );
        valid_endpoint(e, c, mode);
    }
    // Run what validation accepted: a value it lets through must not panic an actor later.
    // A few endpoints are enough (each one runs the same code); fleets can be thousands.
    for e in c.endpoints.iter().take(4) {
        run_machine(e.clone(), mode);
    }
}

fn valid_endpoint(e: &EndpointSettings, c: &Config, mode: Mode) {
    ensure!(
        mode,
        "config-endpoint-urls",
        valid_url(&e.url)
            && !e.url.ends_with('/')
            && valid_url(&e.health_url)
            && valid_url(&e.model_url),
        "{} {} {}",
        e.url,
        e.health_url,
        e.model_url
    );
    ensure!(
        mode,
        "config-endpoint-health",
        e.check_interval >= Duration::from_millis(100)
            && positive(e.check_timeout)
            && e.check_timeout < e.check_interval
            && positive(e.health.degraded_latency)
            && e.health.recovery_successes >= 1
            && positive(e.max_backoff)
            && e.jitter.is_finite()
            && (0.0..=1.0).contains(&e.jitter)
            && valid_breaker(&e.health_breaker)
            && e.proxy_breaker == c.proxy.circuit_breaker
            && positive(e.discovery.interval)
            && positive(e.discovery.timeout),
        "{e:?}"
    );
    for (name, value) in &e.headers {
        ensure!(
            mode,
            "config-endpoint-headers",
            HeaderName::from_bytes(name.as_bytes()).is_ok() && HeaderValue::from_str(value).is_ok(),
            "header {name:?} of {}",
            e.name
        );
    }
}

/// Whether every duration of these settings can be added to an `Instant` the way the endpoint
/// machine does (`now + open_duration`, `now + discovery.interval`, a doubled jittered wait).
fn durations_fit(s: &EndpointSettings) -> bool {
    let now = Instant::now();
    let fits = |d: Duration| {
        d.checked_mul(24)
            .is_some_and(|d| now.checked_add(d).is_some())
    };
    [
        s.check_interval,
        s.max_backoff,
        s.health_breaker.open_duration,
        s.proxy_breaker.open_duration,
        s.discovery.interval,
        s.discovery.timeout,
    ]
    .into_iter()
    .all(fits)
}

fn failed(reason: FailureReason, retry_after: Option<Duration>) -> CheckReport {
    CheckReport::new(ProbeOutcome::Failed {
        reason,
        latency: Duration::from_millis(1),
        retry_after,
    })
}

/// Drives one endpoint's machine through what its actor would: failed checks until the health
/// breaker opens, a 429 with a huge `Retry-After`, a pass with models, failed requests until
/// the proxy breaker opens, discoveries. Time stands still; only the arithmetic runs.
fn run_machine(settings: Arc<EndpointSettings>, mode: Mode) {
    if !durations_fit(&settings) && !mode.asserts("config-huge-durations") {
        return;
    }
    let now = Instant::now();
    let mut m = EndpointMachine::new(settings.clone(), 0, 7);
    let mut pending = m.start(now);
    // Answers the probe the machine asked for, then fires the check timer it set.
    let cycle = |m: &mut EndpointMachine, fx: Effects, report: CheckReport| -> Effects {
        let mut fx = fx;
        if let Some(t) = fx.check_after {
            fx = m.on_check_due(t.generation, now);
        }
        match fx.probe {
            Some(p) => m.on_check(p.generation, report, now),
            None => fx,
        }
    };
    let threshold = settings.health_breaker.failure_threshold.min(16) + 1;
    for _ in 0..threshold {
        pending = cycle(&mut m, pending, failed(FailureReason::Http(503), None));
    }
    pending = cycle(
        &mut m,
        pending,
        failed(FailureReason::RateLimited, Some(Duration::MAX)),
    );
    let mut pass = CheckReport::new(ProbeOutcome::Passed {
        latency: Duration::from_millis(1),
    });
    pass.models = Some(vec![ModelInfo::named("m")]);
    let _ = cycle(&mut m, pending, pass);
    for _ in 0..settings.proxy_breaker.failure_threshold.min(16) + 1 {
        m.on_outcome(
            RequestOutcome::ConnectFailed(FailureReason::ConnectionRefused),
            now,
            now,
        );
    }
    m.on_outcome(RequestOutcome::Succeeded, now, now);
    m.on_discovered(Ok(vec![ModelInfo::named("m")]), now);
    m.on_discovered(Err(FailureReason::Timeout), now);
    m.on_discovery_due(now);
    let _ = m.view(now, SystemTime::now());
}

// ## request_model: Content-Type line + body => the requested model, or 400 for bad JSON

/// Input: the `Content-Type` up to the first `\n` (a leading `\0` byte: no header), then the body.
pub fn request_model(data: &[u8], mode: Mode) {
    let (content_type, body) = match data.split_first() {
        Some((0, rest)) => (None, rest),
        _ => match data.iter().position(|&b| b == b'\n') {
            Some(i) => (Some(text(&data[..i])), &data[i + 1..]),
            None => (None, data),
        },
    };
    let content_type = content_type.as_deref();
    let requested = body::requested_model(content_type, body);
    let of = body::model_of(body);

    // The reference reading. `Value` refuses valid JSON that `model_of` rightly skips over
    // unread (nesting past serde_json's recursion limit, numbers beyond f64 like `5e888000`):
    // no verdict on those.
    let value = match serde_json::from_slice::<serde_json::Value>(body) {
        Err(e)
            if e.to_string().starts_with("recursion limit exceeded")
                || e.to_string().starts_with("number out of range") =>
        {
            None
        }
        parsed => Some(parsed.ok()),
    };
    if let (Ok(found), Some(value)) = (&of, &value) {
        // JSON is UTF-8 (RFC 8259); serde_json checks that only in what it reads, not in
        // what `IgnoredAny` skips.
        if std::str::from_utf8(body).is_err() {
            ensure!(
                mode,
                "model-invalid-utf8",
                false,
                "model_of accepted JSON that is not UTF-8: {found:?}"
            );
        }
        ensure!(
            mode,
            "model-of-ok-is-json",
            value.is_some() || std::str::from_utf8(body).is_err(),
            "model_of accepted a body that is not JSON"
        );
        if let Some(m) = found {
            ensure!(mode, "model-non-empty", !m.is_empty(), "empty model");
        }
        if let (Some(m), Some(value)) = (found, value) {
            let top = value.get("model").and_then(|v| v.as_str());
            ensure!(
                mode,
                "model-is-top-level",
                top == Some(m.as_str()),
                "model_of found {m:?}, the JSON's top-level \"model\" is {top:?}"
            );
        }
    }
    let declared_json = content_type.is_some_and(|ct| ct.to_ascii_lowercase().contains("json"));
    match &requested {
        Ok(None) | Err(_) if body.is_empty() => {
            ensure!(
                mode,
                "model-empty-body",
                matches!(requested, Ok(None)),
                "empty body gave {requested:?}"
            );
        }
        Err(_) => ensure!(
            mode,
            "model-only-declared-json-fails",
            declared_json,
            "a body not declared JSON was refused ({content_type:?})"
        ),
        Ok(found) => {
            if declared_json {
                ensure!(
                    mode,
                    "model-declared-json-is-model-of",
                    of.as_ref().ok() == Some(found),
                    "requested {found:?}, model_of {of:?}"
                );
            } else if let Some(m) = found {
                ensure!(
                    mode,
                    "model-undeclared-is-model-of",
                    of.as_ref().ok() == Some(&Some(m.clone())),
                    "requested {m:?}, model_of {of:?}"
                );
            }
        }
    }
}

// ## route_path: a raw request path => provider class, upstream path, traversal verdict

/// Decodes each `%XX` once, as an upstream server would.
fn decode_once(s: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' && i + 2 < s.len() {
            if let (Some(h), Some(l)) = (hex(s[i + 1]), hex(s[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

fn has_dot_dot_segment(s: &[u8]) -> bool {
    s.split(|&b| b == b'/' || b == b'\\')
        .any(|seg| seg == b"..")
}

/// `route` on arbitrary text: `upstream_path` returns a suffix of its input that starts with
/// `/` for `/olla/` paths, a `..` segment that an upstream could see after decoding once or
/// twice is always caught, and the upstream path is never a traversal its whole path is not.
pub fn route_path(data: &[u8], mode: Mode) {
    let path = text(data);
    let path = path.as_ref();
    let up = route::upstream_path(path);
    ensure!(
        mode,
        "route-upstream-suffix",
        path.ends_with(up)
            || (up == "/"
                && path
                    .strip_prefix("/olla/")
                    .is_some_and(|p| !p.contains('/'))),
        "{up:?} is not a suffix of {path:?}"
    );
    if path.starts_with("/olla/") {
        ensure!(
            mode,
            "route-upstream-slash",
            up.starts_with('/'),
            "{up:?} from {path:?}"
        );
    } else {
        ensure!(
            mode,
            "route-alias-unchanged",
            up == path,
            "{up:?} from {path:?}"
        );
    }
    let traversal = route::is_traversal(path);
    let once = decode_once(path.as_bytes());
    let twice = decode_once(&once);
    ensure!(
        mode,
        "route-traversal-caught",
        traversal
            || !(has_dot_dot_segment(path.as_bytes())
                || has_dot_dot_segment(&once)
                || has_dot_dot_segment(&twice)),
        "{path:?} decodes to a `..` segment but is_traversal said no"
    );
    ensure!(
        mode,
        "route-upstream-no-new-traversal",
        traversal || !route::is_traversal(up),
        "upstream {up:?} is a traversal, {path:?} was not"
    );
    for segment in path.split('/') {
        if let Some(class) = route::provider_class(segment) {
            ensure!(
                mode,
                "route-provider-known",
                segment
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'-' || b == b'_'),
                "{segment:?} named {class:?}"
            );
        }
    }
}

// ## model_list: a backend's model-list body => models, per endpoint type

const ALL_TYPES: &[EndpointType] = EndpointType::ALL;

/// `parse_models` for every type: an accepted body is JSON with the type's array, and every
/// model is one of its entries (names and sizes as written); the OpenAI-shaped types agree,
/// and `auto` is Ollama's reading, else OpenAI's.
pub fn model_list(data: &[u8], mode: Mode) {
    let results: Vec<_> = ALL_TYPES.iter().map(|t| t.parse_models(data)).collect();
    let json: Option<serde_json::Value> = serde_json::from_slice(data).ok();
    for (kind, result) in ALL_TYPES.iter().zip(&results) {
        let Ok(models) = result else { continue };
        let json = json.as_ref();
        ensure!(
            mode,
            "models-ok-is-json",
            json.is_some(),
            "{kind}: accepted a body that is not JSON"
        );
        let ollama = json
            .and_then(|j| j.get("models"))
            .and_then(|m| m.as_array());
        let openai = json.and_then(|j| j.get("data")).and_then(|m| m.as_array());
        let entries = match (kind, ollama) {
            (EndpointType::Ollama, _) | (EndpointType::Auto, Some(_)) => ollama,
            _ => openai,
        };
        let Some(entries) = entries else {
            ensure!(
                mode,
                "models-array",
                false,
                "{kind}: accepted a body without its array"
            );
            continue;
        };
        ensure!(
            mode,
            "models-at-most-entries",
            models.len() <= entries.len(),
            "{kind}: {} models from {} entries",
            models.len(),
            entries.len()
        );
        for model in models {
            let from_entry = entries.iter().any(|e| {
                let name = e
                    .get("name")
                    .or_else(|| e.get("model"))
                    .and_then(|n| n.as_str());
                let id = e.get("id").and_then(|n| n.as_str());
                name == Some(model.name.as_str()) || id == Some(model.name.as_str())
            });
            ensure!(
                mode,
                "models-from-entries",
                from_entry,
                "{kind}: {:?} is no entry's name",
                model.name
            );
        }
    }
    let of = |kind: EndpointType| {
        let i = ALL_TYPES.iter().position(|t| *t == kind);
        &results[i.expect("every type is in ALL_TYPES")]
    };
    let (ollama, openai, auto) = (
        of(EndpointType::Ollama),
        of(EndpointType::OpenAiCompatible),
        of(EndpointType::Auto),
    );
    for kind in ALL_TYPES {
        if matches!(kind, EndpointType::Ollama | EndpointType::Auto) {
            continue;
        }
        let other = of(*kind);
        ensure!(
            mode,
            "models-openai-types-agree",
            other == openai,
            "{kind}: {other:?} != {openai:?}"
        );
    }
    let expected = if ollama.is_ok() { ollama } else { openai };
    ensure!(
        mode,
        "models-auto",
        auto.as_ref().ok() == expected.as_ref().ok(),
        "auto {auto:?}, expected {expected:?}"
    );
}

// ## headers: header lines => what is forwarded each way (client credentials with and without
// passthrough), X-Forwarded-For, Via, request IDs

/// Hop-by-hop headers (RFC 9110 7.6.1, plus `proxy-connection`): never forwarded either way.
/// Written out here, not taken from the code under test, so that the check is independent.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Never forwarded upstream besides the hop-by-hop ones (SPEC 5.2, 11): those Corral sets itself.
const SET_UPSTREAM_BY_CORRAL: &[&str] = &[
    "host",
    "content-length",
    "x-forwarded-proto",
    "x-forwarded-host",
];

fn never_upstream(name: &str) -> bool {
    HOP_BY_HOP.contains(&name) || SET_UPSTREAM_BY_CORRAL.contains(&name)
}

/// A client's credentials (SPEC 12): upstream only with `proxy.forward_client_credentials`.
const CLIENT_CREDENTIALS: &[&str] = &["authorization", "cookie", "x-api-key", "x-auth-token"];

/// Never passed back to the client: hop-by-hop headers, the length Corral frames itself, and
/// (SPEC 12) cookies, reflected credentials and authentication challenges.
fn never_downstream(name: &str) -> bool {
    HOP_BY_HOP.contains(&name)
        || name == "content-length"
        || [
            "set-cookie",
            "authorization",
            "x-api-key",
            "x-auth-token",
            "www-authenticate",
        ]
        .contains(&name)
}

/// Input: `name: value` lines (split at the first `:`); lines that `HeaderName::from_bytes` or
/// `HeaderValue::from_bytes` refuse are skipped, as the HTTP parser would have refused them.
pub fn headers(data: &[u8], mode: Mode) {
    let mut map = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let value = line[colon + 1..].trim_ascii();
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(value),
        ) {
            map.append(n, v);
        }
    }
    let connection_named: Vec<String> = map
        .get_all("connection")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();

    let up = headers::request_headers(&map, false);
    let up_with_credentials = headers::request_headers(&map, true);
    for (forward, up) in [(false, &up), (true, &up_with_credentials)] {
        for (name, _) in up {
            let n = name.as_str();
            ensure!(
                mode,
                "headers-hop-by-hop-upstream",
                !never_upstream(n) && !connection_named.iter().any(|c| c == n),
                "{n} forwarded upstream"
            );
            ensure!(
                mode,
                "headers-expect-upstream",
                n != "expect",
                "expect forwarded upstream (SPEC 11: Corral answers Expect itself)"
            );
            ensure!(
                mode,
                "headers-credentials-upstream",
                forward || !CLIENT_CREDENTIALS.contains(&n),
                "the client's {n} forwarded upstream"
            );
        }
    }
    // Passthrough on: the client's credentials are what it adds, and nothing else changes.
    let added: Vec<&str> = up_with_credentials
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| !up.iter().any(|(u, _)| u == n))
        .collect();
    ensure!(
        mode,
        "headers-credentials-passthrough",
        added.iter().all(|n| CLIENT_CREDENTIALS.contains(n))
            && CLIENT_CREDENTIALS.iter().all(|c| {
                map.get(*c).is_none()
                    || connection_named.iter().any(|n| n == c)
                    || up_with_credentials.iter().any(|(n, _)| n == c)
            }),
        "passthrough added {added:?}"
    );
    // An endpoint configured with the input's first header name never sees it echoed back.
    let configured: Vec<(String, String)> = map
        .keys()
        .next()
        .map(|n| (n.as_str().to_ascii_uppercase(), String::new()))
        .into_iter()
        .collect();
    let down = headers::response_headers(&map, &configured);
    for (name, _) in &down {
        let n = name.as_str();
        ensure!(
            mode,
            "headers-hop-by-hop-downstream",
            !never_downstream(n)
                && !n.starts_with("x-olla-")
                && !connection_named.iter().any(|c| c == n),
            "{n} passed back to the client"
        );
        ensure!(
            mode,
            "headers-configured-downstream",
            !configured.iter().any(|(c, _)| c.eq_ignore_ascii_case(n)),
            "the endpoint's own {n} passed back to the client"
        );
    }
    // What is not filtered is passed on whole: every value of every kept name, in order.
    for (kept, name) in [
        (&up, "request"),
        (&up_with_credentials, "request"),
        (&down, "response"),
    ] {
        let mut seen = std::collections::HashSet::new();
        for (n, _) in kept.iter() {
            if seen.insert(n.clone()) {
                let ours: Vec<_> = kept
                    .iter()
                    .filter(|(k, _)| k == n)
                    .map(|(_, v)| v)
                    .collect();
                let theirs: Vec<_> = map.get_all(n).collect();
                ensure!(
                    mode,
                    "headers-values-kept",
                    ours == theirs,
                    "{name} values of {n} changed"
                );
            }
        }
    }

    let get = |n: &str| map.get(n).and_then(|v| v.to_str().ok());
    let values: Vec<&str> = map.iter().filter_map(|(_, v)| v.to_str().ok()).collect();
    let peers = [None, Some("127.0.0.1"), Some("::1")];
    for existing in [get("x-forwarded-for"), values.first().copied()] {
        for peer in peers {
            if let Some(f) = headers::forwarded_for(existing, peer) {
                ensure!(
                    mode,
                    "headers-forwarded-for-valid",
                    f.is_ascii() && HeaderValue::from_str(&f).is_ok(),
                    "X-Forwarded-For {f:?}"
                );
                if let Some(p) = peer {
                    ensure!(
                        mode,
                        "headers-forwarded-for-appends",
                        f.ends_with(p),
                        "{f:?} does not end with the peer {p}"
                    );
                }
            }
        }
    }
    for existing in [get("via"), values.last().copied(), None] {
        let v = headers::via(existing);
        ensure!(
            mode,
            "headers-via",
            v.ends_with("1.1 corral") && v.is_ascii() && HeaderValue::from_str(&v).is_ok(),
            "Via {v:?}"
        );
    }
    let candidates = [get("x-request-id"), None]
        .into_iter()
        .chain(values.iter().map(|v| Some(*v)))
        .take(64);
    for client in candidates {
        let id = headers::request_id(client);
        ensure!(
            mode,
            "headers-request-id",
            (1..=128).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b)),
            "request id {id:?} from {client:?}"
        );
        if let Some(c) = client {
            if c == id {
                continue;
            }
            ensure!(
                mode,
                "headers-request-id-fresh",
                id.len() == 24,
                "a refused id {c:?} became {id:?}, not a fresh one"
            );
        }
    }
    let own = text(data);
    let id = headers::request_id(Some(&own));
    ensure!(
        mode,
        "headers-request-id",
        (1..=128).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b)),
        "request id {id:?} from the whole input"
    );
}

// ## retry_after: a Retry-After value => a wait, bounded once it is scheduled

/// `parse_retry_after` on arbitrary text: delta seconds are taken as they are, dates count down
/// from `now` (never below zero) and the wait scheduled from either stays within
/// [check interval, max(`MAX_RETRY_AFTER`, check interval)] and survives jitter.
pub fn retry_after(data: &[u8], mode: Mode) {
    let value = text(data);
    let value = value.as_ref();
    let early = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let late = early + Duration::from_secs(86_400 * 400);
    let at_early = parse_retry_after(value, early);
    let at_late = parse_retry_after(value, late);
    let _ = parse_retry_after(value, SystemTime::now());
    let _ = parse_retry_after(value, SystemTime::UNIX_EPOCH);
    if let Ok(secs) = value.trim().parse::<u64>() {
        ensure!(
            mode,
            "retry-after-seconds",
            at_early == Some(Duration::from_secs(secs)) && at_late == at_early,
            "{value:?} gave {at_early:?}"
        );
    }
    match (at_early, at_late) {
        (Some(e), Some(l)) => ensure!(
            mode,
            "retry-after-counts-down",
            l <= e,
            "{value:?}: {e:?} from an earlier now, {l:?} from a later one"
        ),
        (None, None) => {}
        _ => ensure!(
            mode,
            "retry-after-independent-of-now",
            false,
            "{value:?}: {at_early:?} then {at_late:?}"
        ),
    }
    for interval in [
        Duration::from_millis(100),
        Duration::from_secs(30),
        Duration::from_secs(7200),
    ] {
        let wait = backoff::rate_limit_wait(at_early, interval);
        ensure!(
            mode,
            "retry-after-bounded",
            wait >= interval && wait <= backoff::MAX_RETRY_AFTER.max(interval),
            "{value:?} every {interval:?}: waits {wait:?}"
        );
        for unit in [-1.0, 0.0, 1.0] {
            let j = backoff::jittered(wait, 1.0, unit);
            ensure!(
                mode,
                "retry-after-jitter",
                j <= wait * 2,
                "{wait:?} jittered to {j:?}"
            );
        }
    }
}

// ## load_report: a backend's own load report => a bounded LoadReport per source, or one line

/// What each metrics source sums into `running` and `waiting`, and reads `kv_cache` from
/// (SPEC 10.1). Written out here, not taken from the code under test.
fn load_metric_names(
    src: LoadSource,
) -> Option<(
    [&'static str; 1],
    [&'static str; 1],
    &'static [&'static str],
)> {
    match src {
        LoadSource::LlamaCppMetrics => Some((
            ["llamacpp:requests_processing"],
            ["llamacpp:requests_deferred"],
            &["llamacpp:kv_cache_usage_ratio"],
        )),
        LoadSource::VllmMetrics => Some((
            ["vllm:num_requests_running"],
            ["vllm:num_requests_waiting"],
            &["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"],
        )),
        LoadSource::SglangMetrics => Some((
            ["sglang:num_running_reqs"],
            ["sglang:num_queue_reqs"],
            &["sglang:token_usage"],
        )),
        _ => None,
    }
}

fn prom_metric_name(n: &str) -> bool {
    let mut b = n.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

fn prom_label_name(n: &str) -> bool {
    let mut b = n.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// The Prometheus reader on arbitrary text: line numbers rise and stay within the text, names
/// keep their grammar, errors are one line, and a sample written back reads as itself.
/// Returns whether some line was refused.
fn prometheus_reader(text: &str, mode: Mode) -> bool {
    let line_count = text.split('\n').count();
    let mut last = 0;
    let mut malformed = false;
    let mut written_back = 0;
    for item in prometheus::lines(text) {
        let line = match &item {
            Ok(prometheus::Line::Sample(s)) => s.line,
            Ok(prometheus::Line::Help { line, .. } | prometheus::Line::Type { line, .. }) => *line,
            Err(e) => e.line,
        };
        ensure!(
            mode,
            "prom-line-numbers",
            line > last && line <= line_count,
            "line {line} after {last}, of {line_count}"
        );
        last = line;
        match item {
            Err(e) => {
                malformed = true;
                let m = e.to_string();
                ensure!(
                    mode,
                    "prom-error-one-line",
                    m.starts_with(&format!("line {line}: ")) && !m.contains(['\n', '\r']),
                    "{m:?}"
                );
            }
            Ok(prometheus::Line::Help { name, .. } | prometheus::Line::Type { name, .. }) => {
                ensure!(mode, "prom-names", prom_metric_name(name), "{name:?}");
            }
            Ok(prometheus::Line::Sample(s)) => {
                let labels: Vec<(&str, String)> =
                    s.labels().map(|(n, v)| (n, v.into_owned())).collect();
                ensure!(
                    mode,
                    "prom-names",
                    prom_metric_name(s.name) && labels.iter().all(|(n, _)| prom_label_name(n)),
                    "{:?} {labels:?}",
                    s.name
                );
                // Each write-back allocates: the first 64 samples of an input are enough.
                if written_back < 64 {
                    written_back += 1;
                    let written = s.to_string();
                    let again: Vec<_> = prometheus::samples(&written).collect();
                    let same = match &again[..] {
                        [Ok(a)] => {
                            a.name == s.name
                                && a.labels()
                                    .map(|(n, v)| (n, v.into_owned()))
                                    .eq(labels.iter().cloned())
                                && a.value.to_bits() == s.value.to_bits()
                                && a.timestamp == s.timestamp
                        }
                        _ => false,
                    };
                    ensure!(
                        mode,
                        "prom-round-trip",
                        same,
                        "{:?} written as {written:?} reads as {again:?}",
                        s
                    );
                }
            }
        }
    }
    malformed
}

/// Every `LoadSource::parse` on the same bytes: deterministic, never a panic; a report obeys
/// its bounds (counts at most `MAX_COUNT`, a KV fraction in 0..=1, at most `MAX_MODELS` names
/// of 1..=`MAX_MODEL_NAME` bytes), has only its source's fields, and agrees with the body read
/// independently (serde_json for the JSON sources, the Prometheus reader's samples for the
/// metrics ones); a text with a malformed line is never a report; an error is one line naming
/// its source. The Prometheus reader's own promises are checked on the same bytes.
pub fn load_report(data: &[u8], mode: Mode) {
    let utf8 = std::str::from_utf8(data).ok();
    let lossy = text(data);
    let malformed = prometheus_reader(&lossy, mode);
    // `Value` refuses some JSON that a typed reading takes (deep nesting, numbers past f64);
    // there the independent reading can say nothing.
    let json = match utf8.map(serde_json::from_str::<serde_json::Value>) {
        Some(Ok(v)) => Some(Some(v)),
        Some(Err(e))
            if e.to_string().starts_with("recursion limit exceeded")
                || e.to_string().starts_with("number out of range") =>
        {
            None
        }
        _ => Some(None),
    };
    for &src in LoadSource::ALL {
        let first = src.parse(data);
        let again = src.parse(data);
        ensure!(
            mode,
            "load-deterministic",
            format!("{first:?}") == format!("{again:?}"),
            "{src}: {first:?} then {again:?}"
        );
        let report = match first {
            Err(e) => {
                let m = e.to_string();
                ensure!(
                    mode,
                    "load-error-one-line",
                    m.starts_with(src.name())
                        && !m.contains(['\n', '\r'])
                        && m.len() <= 512
                        && e.source_of() == src,
                    "{src}: {m:?}"
                );
                continue;
            }
            Ok(report) => report,
        };
        ensure!(
            mode,
            "load-ok-is-utf8-and-small",
            utf8.is_some() && data.len() <= MAX_LOAD_BODY,
            "{src}: accepted {} bytes, UTF-8: {}",
            data.len(),
            utf8.is_some()
        );
        load_report_bounds(src, &report, mode);
        match src {
            LoadSource::LlamaCppSlots => {
                if let Some(json) = &json {
                    slots_agree(json.as_ref(), &report, mode)
                }
            }
            LoadSource::OllamaPs | LoadSource::LmStudioModels => {
                if let Some(json) = &json {
                    models_agree(src, json.as_ref(), &report, mode)
                }
            }
            _ => {
                ensure!(
                    mode,
                    "load-metrics-strict",
                    !malformed,
                    "{src}: accepted a text with a malformed line: {report:?}"
                );
                if let Some(text) = utf8 {
                    metrics_agree(src, text, &report, mode);
                }
            }
        }
    }
}

fn load_report_bounds(src: LoadSource, r: &LoadReport, mode: Mode) {
    let counts = [r.running, r.waiting, r.capacity];
    ensure!(
        mode,
        "load-counts-bounded",
        counts.iter().flatten().all(|c| *c <= MAX_COUNT),
        "{src}: {r:?}"
    );
    if let Some(kv) = r.kv_cache {
        ensure!(
            mode,
            "load-kv-fraction",
            (0.0..=1.0).contains(&kv),
            "{src}: kv_cache {kv}"
        );
    }
    if let Some(models) = &r.loaded_models {
        ensure!(
            mode,
            "load-models-bounded",
            models.len() <= MAX_MODELS
                && models
                    .iter()
                    .all(|m| !m.is_empty() && m.len() <= MAX_MODEL_NAME),
            "{src}: {} models, longest {:?}",
            models.len(),
            models.iter().map(String::len).max()
        );
    }
    let fields = [
        r.running.is_some(),
        r.waiting.is_some(),
        r.capacity.is_some(),
        r.kv_cache.is_some(),
        r.loaded_models.is_some(),
    ];
    let allowed = match src {
        LoadSource::LlamaCppSlots => [true, false, true, false, false],
        LoadSource::OllamaPs | LoadSource::LmStudioModels => [false, false, false, false, true],
        _ => [true, true, false, true, false],
    };
    ensure!(
        mode,
        "load-fields-of-source",
        fields.iter().zip(allowed).all(|(has, may)| may || !has),
        "{src}: {r:?}"
    );
}

fn slots_agree(json: Option<&serde_json::Value>, r: &LoadReport, mode: Mode) {
    let slots = json.and_then(|j| j.as_array());
    let Some(slots) = slots else {
        ensure!(
            mode,
            "slots-ok-is-array",
            false,
            "accepted {r:?} from no JSON array"
        );
        return;
    };
    let busy = slots
        .iter()
        .filter(|s| match s.get("is_processing").and_then(|b| b.as_bool()) {
            Some(b) => b,
            None => s
                .get("state")
                .and_then(|n| n.as_u64())
                .is_some_and(|n| n != 0),
        })
        .count() as u64;
    ensure!(
        mode,
        "slots-counted",
        r.capacity == Some(slots.len() as u64) && r.capacity != Some(0) && r.running == Some(busy),
        "{r:?} from {} slots, {busy} busy",
        slots.len()
    );
}

fn models_agree(src: LoadSource, json: Option<&serde_json::Value>, r: &LoadReport, mode: Mode) {
    let key = if src == LoadSource::OllamaPs {
        "models"
    } else {
        "data"
    };
    let Some(entries) = json.and_then(|j| j.get(key)).and_then(|e| e.as_array()) else {
        ensure!(
            mode,
            "models-ok-has-array",
            false,
            "{src}: accepted {r:?} without `{key}`"
        );
        return;
    };
    let models = r.loaded_models.as_deref().unwrap_or_default();
    ensure!(
        mode,
        "loaded-at-most-entries",
        models.len() <= entries.len(),
        "{src}: {} from {} entries",
        models.len(),
        entries.len()
    );
    for model in models {
        let from_entry = entries.iter().any(|e| {
            let field = |k: &str| e.get(k).and_then(|v| v.as_str());
            if src == LoadSource::OllamaPs {
                field("name") == Some(model) || field("model") == Some(model)
            } else {
                field("id") == Some(model) && field("state") == Some("loaded")
            }
        });
        ensure!(
            mode,
            "loaded-from-entries",
            from_entry,
            "{src}: {model:?} is no loaded entry's name"
        );
    }
}

fn metrics_agree(src: LoadSource, text: &str, r: &LoadReport, mode: Mode) {
    let Some((running, waiting, kv)) = load_metric_names(src) else {
        return;
    };
    let values = |names: &[&str]| -> Vec<f64> {
        prometheus::samples(text)
            .filter_map(Result::ok)
            .filter(|s| names.contains(&s.name))
            .map(|s| s.value)
            .collect()
    };
    for (field, names, got) in [
        ("running", running, r.running),
        ("waiting", waiting, r.waiting),
    ] {
        let vs = values(&names);
        let sum: f64 = vs.iter().sum();
        let expected = (!vs.is_empty()).then_some(sum);
        ensure!(
            mode,
            "metrics-sums",
            got.map(|g| g as f64) == expected,
            "{src}: {field} {got:?}, the samples add up to {expected:?}"
        );
    }
    let newest = kv.iter().map(|n| values(&[n])).find(|vs| !vs.is_empty());
    let expected = newest.map(|vs| vs.iter().fold(0.0_f64, |m, v| m.max(v.min(1.0))));
    ensure!(
        mode,
        "metrics-kv-max",
        r.kv_cache == expected,
        "{src}: kv_cache {:?}, expected {expected:?}",
        r.kv_cache
    );
}
