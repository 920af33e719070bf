//! Tests of [`parse`] and [`load`] as a whole: defaults, the short form, Olla compatibility,
//! the shipped files, and one test per config error (asserting field path and reason).

use std::time::Duration;

use corral_actors::breaker::BreakerPolicy;
use corral_actors::profiles::EndpointType;

use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn ok(text: &str) -> Config {
    parse(text, "test.yaml", &no_env).unwrap_or_else(|e| panic!("{e}"))
}

fn err(text: &str) -> String {
    match parse(text, "test.yaml", &no_env) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

/// Asserts `test.yaml: <path>: <reason…>`, the reason given by its start.
fn assert_err(text: &str, path: &str, reason: &str) {
    let e = err(text);
    let want = format!("test.yaml: {path}: {reason}");
    assert!(e.starts_with(&want), "\n got: {e}\nwant: {want}…");
    assert!(!e.contains('\n'), "not one line: {e}");
}

/// A one-endpoint short-form config with `extra` (already indented) added to the endpoint.
fn one(extra: &str) -> String {
    format!("endpoints:\n  - url: http://localhost:11434\n{extra}")
}

const S: fn(u64) -> Duration = Duration::from_secs;

// ## Defaults

#[test]
fn an_empty_file_is_all_defaults() {
    for text in [
        "",
        "# nothing\n",
        "server:\nproxy:\nhealth:\ndiscovery:\nlogging:\n",
    ] {
        let c = ok(text);
        assert_eq!(c.server, ServerConfig::default());
        assert_eq!(c.proxy, ProxyConfig::default());
        assert_eq!(c.logging, LoggingConfig::default());
        assert!(c.endpoints.is_empty());
        assert_eq!(c.ignored_settings_warning(), None);
        assert_eq!(c.source, None);
    }
}

#[test]
fn defaults_are_the_documented_values() {
    let c = ok("");
    assert_eq!(c.server.host, "localhost");
    assert_eq!(c.server.port, 40114);
    assert_eq!(c.server.shutdown_timeout, S(10));
    assert_eq!(c.server.read_header_timeout, S(10));
    assert_eq!(c.server.read_timeout, S(30));
    assert_eq!(c.server.max_body_size, 100 * 1024 * 1024);
    assert_eq!(c.server.max_header_size, 64 * 1024);
    assert_eq!(c.server.internal_token, None);
    assert_eq!(c.proxy.load_balancer, LoadBalancer::Priority);
    assert_eq!(c.proxy.routing_strategy, RoutingStrategy::Strict);
    assert_eq!(c.proxy.connect_timeout, S(5));
    assert_eq!(c.proxy.response_header_timeout, S(120));
    assert_eq!(c.proxy.stream_idle_timeout, S(300));
    assert_eq!(c.proxy.max_attempts, 0);
    assert_eq!(c.proxy.retry_on_status, vec![429, 502, 503, 504]);
    assert_eq!(
        c.proxy.circuit_breaker,
        BreakerPolicy {
            failure_threshold: 5,
            open_duration: S(30)
        }
    );
    assert_eq!(c.logging.level, "info");
    assert_eq!(c.logging.format, LogFormat::Text);
}

#[test]
fn an_endpoint_with_only_a_url_gets_every_default() {
    let c = ok("discovery:\n  static:\n    endpoints:\n      - url: http://localhost:11434/\n");
    let e = &c.endpoints[0];
    assert_eq!(&*e.name, "localhost:11434");
    assert_eq!(e.url, "http://localhost:11434");
    assert_eq!(e.kind, EndpointType::Auto);
    assert_eq!(e.priority, 100);
    assert_eq!(e.health_url, "http://localhost:11434/");
    assert!(e.health_url_is_default);
    assert_eq!(e.model_url, "http://localhost:11434/v1/models");
    assert_eq!(e.check_interval, S(30));
    assert_eq!(e.check_timeout, S(5));
    assert_eq!(e.health.degraded_latency, S(2));
    assert_eq!(e.health.recovery_successes, 2);
    assert_eq!(e.max_backoff, S(60));
    assert_eq!(e.jitter, 0.0);
    assert_eq!(
        e.health_breaker,
        BreakerPolicy {
            failure_threshold: 3,
            open_duration: S(30)
        }
    );
    assert_eq!(
        e.proxy_breaker,
        BreakerPolicy {
            failure_threshold: 5,
            open_duration: S(30)
        }
    );
    assert!(!e.require_models);
    assert!(e.health_checks);
    assert!(e.headers.is_empty());
    assert_eq!(
        e.discovery,
        DiscoverySettings {
            enabled: true,
            interval: S(300),
            timeout: S(10)
        }
    );
}

#[test]
fn default_names_use_the_schemes_port() {
    let c = ok("endpoints:\n  - url: http://gpu-box\n  - url: https://api.example.com/v1\n");
    assert_eq!(&*c.endpoints[0].name, "gpu-box:80");
    assert_eq!(&*c.endpoints[1].name, "api.example.com:443");
}

#[test]
fn default_paths_follow_the_type() {
    let cases = [
        ("ollama", EndpointType::Ollama, "/", "/api/tags"),
        (
            "lm-studio",
            EndpointType::LmStudio,
            "/v1/models",
            "/api/v0/models",
        ),
        ("vllm", EndpointType::Vllm, "/health", "/v1/models"),
        ("llamacpp", EndpointType::LlamaCpp, "/health", "/v1/models"),
        ("sglang", EndpointType::Sglang, "/health", "/v1/models"),
        (
            "openai-compatible",
            EndpointType::OpenAiCompatible,
            "/v1/models",
            "/v1/models",
        ),
        (
            "openai",
            EndpointType::OpenAiCompatible,
            "/v1/models",
            "/v1/models",
        ),
        (
            "lemonade",
            EndpointType::Lemonade,
            "/api/v1/health",
            "/api/v1/models",
        ),
        ("litellm", EndpointType::LiteLlm, "/health", "/v1/models"),
        ("lmdeploy", EndpointType::LmDeploy, "/health", "/v1/models"),
        (
            "docker-model-runner",
            EndpointType::DockerModelRunner,
            "/engines/v1/models",
            "/engines/v1/models",
        ),
        (
            "dmr",
            EndpointType::DockerModelRunner,
            "/engines/v1/models",
            "/engines/v1/models",
        ),
        ("omlx", EndpointType::Omlx, "/health", "/v1/models"),
        ("vllm-mlx", EndpointType::VllmMlx, "/health", "/v1/models"),
        (
            "lm_studio",
            EndpointType::LmStudio,
            "/v1/models",
            "/api/v0/models",
        ),
        ("auto", EndpointType::Auto, "/", "/v1/models"),
    ];
    for (name, kind, health, models) in cases {
        let c = ok(&one(&format!("    type: {name}\n")));
        let e = &c.endpoints[0];
        assert_eq!(e.kind, kind, "{name}");
        assert_eq!(
            e.health_url,
            format!("http://localhost:11434{health}"),
            "{name}"
        );
        assert_eq!(
            e.model_url,
            format!("http://localhost:11434{models}"),
            "{name}"
        );
        assert!(e.health_url_is_default);
    }
}

#[test]
fn check_path_is_an_alias_of_health_check_url() {
    let c = ok(&one("    type: vllm\n    check_path: /ready\n"));
    assert_eq!(c.endpoints[0].health_url, "http://localhost:11434/ready");
    assert!(!c.endpoints[0].health_url_is_default);
    let c = ok(&one("    health_check_url: /ready\n"));
    assert_eq!(c.endpoints[0].health_url, "http://localhost:11434/ready");
    assert!(!c.endpoints[0].health_url_is_default);
}

#[test]
fn a_configured_default_path_still_counts_as_configured() {
    let c = ok(&one("    type: vllm\n    health_check_url: /health\n"));
    assert!(!c.endpoints[0].health_url_is_default);
}

#[test]
fn paths_join_under_a_base_path_and_absolute_urls_stay() {
    let c = ok(
        "endpoints:\n  - url: http://host:8080/api/\n    type: vllm\n    \
                model_url: models\n    health_check_url: http://monitor:9090/h\n",
    );
    let e = &c.endpoints[0];
    assert_eq!(e.url, "http://host:8080/api");
    assert_eq!(e.model_url, "http://host:8080/api/models");
    assert_eq!(e.health_url, "http://monitor:9090/h");
}

#[test]
fn health_section_sets_defaults_and_endpoints_override_them() {
    let c = ok(
        "health:\n  check_interval: 10s\n  check_timeout: 3s\n  degraded_latency: 1s\n  \
                recovery_successes: 3\n  max_backoff: 2m\n  jitter: 10%\n  \
                circuit_breaker: { failure_threshold: 4, open_duration: 1m }\n\
                endpoints:\n  - url: http://a:1\n  - url: http://b:1\n    check_interval: 2s\n    \
                check_timeout: 500ms\n    recovery_successes: 1\n    jitter: 0.25\n    \
                circuit_breaker: { failure_threshold: 7 }\n",
    );
    let a = &c.endpoints[0];
    assert_eq!((a.check_interval, a.check_timeout), (S(10), S(3)));
    assert_eq!(a.health.degraded_latency, S(1));
    assert_eq!(a.health.recovery_successes, 3);
    assert_eq!(a.max_backoff, S(120));
    assert_eq!(a.jitter, 0.1);
    assert_eq!(
        a.health_breaker,
        BreakerPolicy {
            failure_threshold: 4,
            open_duration: S(60)
        }
    );
    let b = &c.endpoints[1];
    assert_eq!(
        (b.check_interval, b.check_timeout),
        (S(2), Duration::from_millis(500))
    );
    assert_eq!(b.health.degraded_latency, S(1));
    assert_eq!(b.health.recovery_successes, 1);
    assert_eq!(b.jitter, 0.25);
    // A partial breaker override keeps the other key from `health:`.
    assert_eq!(
        b.health_breaker,
        BreakerPolicy {
            failure_threshold: 7,
            open_duration: S(60)
        }
    );
}

#[test]
fn proxy_and_discovery_settings_reach_every_endpoint() {
    let c = ok(
        "proxy:\n  circuit_breaker: { failure_threshold: 2, open_duration: 5s }\n\
                discovery:\n  model_discovery: { enabled: false, interval: 1m, timeout: 3s }\n  \
                static:\n    endpoints:\n      - url: http://a:1\n",
    );
    let e = &c.endpoints[0];
    assert_eq!(
        e.proxy_breaker,
        BreakerPolicy {
            failure_threshold: 2,
            open_duration: S(5)
        }
    );
    assert_eq!(c.proxy.circuit_breaker, e.proxy_breaker);
    assert_eq!(
        e.discovery,
        DiscoverySettings {
            enabled: false,
            interval: S(60),
            timeout: S(3)
        }
    );
}

#[test]
fn every_setting_is_read() {
    let c = ok("server:\n  host: 0.0.0.0\n  port: 0\n  shutdown_timeout: 1m30s\n  \
                max_body_size: 10MB\n  max_header_size: 16 KiB\n  internal_token: s3cret\n\
                proxy:\n  load_balancer: round-robin\n  routing_strategy: optimistic\n  \
                connect_timeout: 500ms\n  response_header_timeout: 1m\n  stream_idle_timeout: 30s\n  \
                max_attempts: 3\n  retry_on_status: [500, 503]\n\
                logging: { level: DEBUG, format: json }\n\
                endpoints:\n  - url: http://a:1\n    name: a\n    type: ollama\n    priority: 0\n    \
                require_models: true\n    health_checks: false\n    headers: { X-Team: ml, X-Version: 2 }\n");
    assert_eq!(c.server.host, "0.0.0.0");
    assert_eq!(c.server.port, 0);
    assert_eq!(c.server.shutdown_timeout, S(90));
    assert_eq!(c.server.max_body_size, 10_000_000);
    assert_eq!(c.server.max_header_size, 16_384);
    assert_eq!(c.server.internal_token.as_deref(), Some("s3cret"));
    assert_eq!(c.proxy.load_balancer, LoadBalancer::RoundRobin);
    assert_eq!(c.proxy.routing_strategy, RoutingStrategy::Optimistic);
    assert_eq!(c.proxy.connect_timeout, Duration::from_millis(500));
    assert_eq!(c.proxy.response_header_timeout, S(60));
    assert_eq!(c.proxy.stream_idle_timeout, S(30));
    assert_eq!(c.proxy.max_attempts, 3);
    assert_eq!(c.proxy.retry_on_status, vec![500, 503]);
    assert_eq!(c.logging.level, "debug");
    assert_eq!(c.logging.format, LogFormat::Json);
    let e = &c.endpoints[0];
    assert_eq!(e.priority, 0);
    assert!(e.require_models);
    assert!(!e.health_checks);
    assert_eq!(
        e.headers,
        vec![
            ("X-Team".to_string(), "ml".to_string()),
            ("X-Version".to_string(), "2".to_string())
        ]
    );
}

#[test]
fn an_empty_internal_token_means_none() {
    assert_eq!(
        ok("server:\n  internal_token: \"\"\n")
            .server
            .internal_token,
        None
    );
}

#[test]
fn enum_names_round_trip() {
    for name in LoadBalancer::NAMES {
        assert_eq!(LoadBalancer::from_name(name).unwrap().as_str(), *name);
    }
    for name in RoutingStrategy::NAMES {
        assert_eq!(RoutingStrategy::from_name(name).unwrap().as_str(), *name);
    }
    for name in LogFormat::NAMES {
        assert_eq!(LogFormat::from_name(name).unwrap().as_str(), *name);
    }
}

#[test]
fn endpoints_keep_file_order() {
    let c = ok(
        "endpoints:\n  - {url: http://c:1, name: c}\n  - {url: http://a:1, name: a}\n  \
                - {url: http://b:1, name: b}\n",
    );
    let names: Vec<&str> = c.endpoints.iter().map(|e| &*e.name).collect();
    assert_eq!(names, ["c", "a", "b"]);
}

// ## Short form

#[test]
fn the_short_form_is_discovery_static_endpoints() {
    let long =
        ok("discovery:\n  static:\n    endpoints:\n      - url: http://a:1\n        name: a\n");
    let short = ok("endpoints:\n  - url: http://a:1\n    name: a\n");
    assert_eq!(long, short);
}

#[test]
fn the_short_form_names_its_own_paths() {
    assert_err(
        &one("    priority: -1\n"),
        "endpoints[0].priority",
        "must be 0 or more",
    );
}

#[test]
fn both_forms_at_once_is_an_error() {
    assert_err(
        "endpoints:\n  - url: http://a:1\ndiscovery:\n  static:\n    endpoints:\n      - url: http://b:1\n",
        "endpoints",
        "both `endpoints` and `discovery.static.endpoints` are given; use one list",
    );
}

// ## Environment expansion

#[test]
fn header_values_expand_environment_variables() {
    let env = |name: &str| (name == "API_KEY").then(|| "sk-test".to_string());
    let text = one("    headers:\n      Authorization: \"Bearer ${API_KEY}\"\n");
    let c = parse(&text, "test.yaml", &env).unwrap();
    assert_eq!(
        c.endpoints[0].headers,
        vec![("Authorization".to_string(), "Bearer sk-test".to_string())]
    );
}

#[test]
fn an_unset_variable_names_the_field_and_the_variable() {
    assert_err(
        &one("    headers:\n      Authorization: \"Bearer ${MISSING_KEY}\"\n"),
        "endpoints[0].headers.Authorization",
        "environment variable `MISSING_KEY` is not set",
    );
}

#[test]
fn a_malformed_variable_reference_is_an_error() {
    assert_err(
        &one("    headers:\n      X-Key: \"${KEY\"\n"),
        "endpoints[0].headers.X-Key",
        "unterminated `${`",
    );
}

#[test]
fn an_invalid_header_name_is_an_error() {
    assert_err(
        &one("    headers:\n      \"Bad Header\": x\n"),
        "endpoints[0].headers.Bad Header",
        "`Bad Header` is not a valid HTTP header name",
    );
}

#[test]
fn an_invalid_header_value_is_an_error_that_does_not_echo_it() {
    let env = |_: &str| Some("line\nbreak".to_string());
    let text = one("    headers:\n      Authorization: \"${TOKEN}\"\n");
    let e = parse(&text, "test.yaml", &env).unwrap_err().to_string();
    assert!(
        e.starts_with(
            "test.yaml: endpoints[0].headers.Authorization: not a valid HTTP header value"
        ),
        "{e}"
    );
    assert!(!e.contains("line"), "{e}");
}

#[test]
fn a_header_given_twice_is_an_error() {
    assert_err(
        &one("    headers: { X-A: 1, x-a: 2 }\n"),
        "endpoints[0].headers",
        "header `x-a` is given twice",
    );
}

// ## Units

#[test]
fn sizes_in_every_unit() {
    for (text, bytes) in [
        ("1000", 1000),
        ("2KB", 2000),
        ("3MB", 3_000_000),
        ("1GB", 1_000_000_000),
        ("2KiB", 2048),
        ("3MiB", 3 << 20),
        ("1GiB", 1 << 30),
        ("7B", 7),
    ] {
        let c = ok(&format!("server:\n  max_body_size: {text}\n"));
        assert_eq!(c.server.max_body_size, bytes, "{text}");
    }
}

#[test]
fn a_bad_size_is_an_error_with_line_and_column() {
    let e = err("server:\n  max_body_size: 10XB\n");
    assert!(
        e.starts_with("test.yaml: server.max_body_size: invalid size `10XB`"),
        "{e}"
    );
    assert!(e.ends_with("at line 2 column 18"), "{e}");
}

#[test]
fn a_zero_size_is_an_error() {
    assert_err(
        "server:\n  max_header_size: 0\n",
        "server.max_header_size",
        "must be greater than 0",
    );
}

#[test]
fn jitter_as_percent_or_fraction() {
    assert_eq!(ok(&one("    jitter: 20%\n")).endpoints[0].jitter, 0.2);
    assert_eq!(ok(&one("    jitter: \"5%\"\n")).endpoints[0].jitter, 0.05);
    assert_eq!(ok(&one("    jitter: 0.5\n")).endpoints[0].jitter, 0.5);
}

#[test]
fn jitter_out_of_range_is_an_error() {
    assert_err(
        &one("    jitter: 150%\n"),
        "endpoints[0].jitter",
        "`150%` is out of range",
    );
    assert_err(
        "health:\n  jitter: 2\n",
        "health.jitter",
        "`2` is out of range",
    );
}

#[test]
fn durations_in_humantime_form() {
    let c = ok(&one(
        "    check_interval: 1m30s\n    check_timeout: 500ms\n    max_backoff: 2m\n",
    ));
    let e = &c.endpoints[0];
    assert_eq!(e.check_interval, S(90));
    assert_eq!(e.check_timeout, Duration::from_millis(500));
    assert_eq!(e.max_backoff, S(120));
}

#[test]
fn a_bad_duration_is_an_error_with_line_and_column() {
    let e = err(&one("    check_interval: 5x\n"));
    assert!(
        e.starts_with("test.yaml: endpoints[0].check_interval: invalid duration `5x`"),
        "{e}"
    );
    assert!(e.ends_with("at line 3 column 21"), "{e}");
}

#[test]
fn a_duration_without_unit_is_an_error() {
    assert_err(
        "proxy:\n  connect_timeout: 5\n",
        "proxy.connect_timeout",
        "invalid duration `5`: a duration needs a unit",
    );
}

// ## Unknown keys, syntax and types

#[test]
fn an_unknown_key_suggests_the_close_one() {
    let text = "server:\n  port: 40114\n\ndiscovery:\n  static:\n    endpoints:\n      - url: http://localhost:11434\n        name: a\n        chek_interval: 5s\n";
    assert_eq!(
        parse(text, "config.yaml", &no_env).unwrap_err().to_string(),
        "config.yaml: discovery.static.endpoints[0].chek_interval: unknown key \
         (did you mean `check_interval`?) at line 9 column 9"
    );
}

#[test]
fn an_unknown_key_far_from_any_lists_the_allowed_ones() {
    assert_err(
        "logging:\n  colour: red\n",
        "logging.colour",
        "unknown key (expected one of: level, format, output)",
    );
}

#[test]
fn an_unknown_top_level_key_is_an_error() {
    assert_err(
        "severs:\n  port: 1\n",
        "severs",
        "unknown key (did you mean `server`?)",
    );
}

#[test]
fn an_unknown_key_in_a_nested_section_is_an_error() {
    assert_err(
        "proxy:\n  circuit_breaker: { failure_treshold: 3 }\n",
        "proxy.circuit_breaker.failure_treshold",
        "unknown key (did you mean `failure_threshold`?)",
    );
}

#[test]
fn check_path_and_health_check_url_together_is_an_error() {
    assert_err(
        &one("    check_path: /a\n    health_check_url: /b\n"),
        "endpoints[0].health_check_url",
        "given twice (`check_path` is another name for `health_check_url`)",
    );
}

#[test]
fn a_yaml_syntax_error_reports_line_and_column() {
    let e = err("server:\n  port: 1\n host: x\n");
    assert!(e.starts_with("test.yaml: "), "{e}");
    assert!(e.contains("line 3 column"), "{e}");
    let e = err("proxy:\n  retry_on_status: [429, 502\n");
    assert!(e.contains("line 3 column"), "{e}");
}

#[test]
fn a_type_error_reports_path_line_and_column() {
    assert_eq!(
        err("proxy:\n  max_attempts: many\n"),
        "test.yaml: proxy.max_attempts: invalid type: string \"many\", expected an integer at line 2 column 17"
    );
    assert_eq!(
        err("server: 5\n"),
        "test.yaml: server: invalid type: integer `5`, expected a mapping at line 1 column 9"
    );
}

#[test]
fn an_unknown_endpoint_type_is_an_error() {
    let e = err(&one("    type: olama\n"));
    assert!(
        e.starts_with("test.yaml: endpoints[0].type: `olama` is not one of ollama, lm-studio"),
        "{e}"
    );
    assert!(
        e.contains("(did you mean `ollama`?) at line 3 column 11"),
        "{e}"
    );
}

// ## One test per semantic error

#[test]
fn a_missing_url_is_an_error() {
    assert_err("endpoints:\n  - name: x\n", "endpoints[0].url", "required");
}

#[test]
fn a_relative_url_is_an_error() {
    assert_err(
        "endpoints:\n  - url: localhost:11434\n",
        "endpoints[0].url",
        "`localhost:11434` must be an absolute http(s) URL",
    );
}

#[test]
fn a_non_http_url_is_an_error() {
    assert_err(
        "endpoints:\n  - url: ftp://host\n",
        "endpoints[0].url",
        "`ftp://host` must be an absolute http(s) URL",
    );
}

#[test]
fn a_url_with_credentials_is_an_error_that_hides_them() {
    let text = "endpoints:\n  - url: http://me:hunter2@host:1\n";
    assert_err(text, "endpoints[0].url", "must not contain user:password");
    assert!(!err(text).contains("hunter2"));
}

#[test]
fn a_url_without_host_is_an_error() {
    assert_err(
        "endpoints:\n  - url: \"http://:8080\"\n",
        "endpoints[0].url",
        "`http://:8080`",
    );
}

#[test]
fn duplicate_names_are_an_error() {
    assert_err(
        "endpoints:\n  - {url: http://a:1, name: x}\n  - {url: http://b:1, name: y}\n  - {url: http://c:1, name: x}\n",
        "endpoints[2].name",
        "duplicate endpoint name `x` (also endpoints[0])",
    );
}

#[test]
fn duplicate_default_names_are_an_error() {
    assert_err(
        "discovery:\n  static:\n    endpoints:\n      - url: http://a:1\n      - url: http://a:1/\n",
        "discovery.static.endpoints[1].name",
        "duplicate endpoint name `a:1` (also endpoints[0])",
    );
}

#[test]
fn an_empty_name_is_an_error() {
    assert_err(
        &one("    name: \"  \"\n"),
        "endpoints[0].name",
        "must not be empty",
    );
}

#[test]
fn a_check_interval_under_100ms_is_an_error() {
    assert_err(
        &one("    check_interval: 50ms\n"),
        "endpoints[0].check_interval",
        "must be at least 100ms (got 50ms)",
    );
}

#[test]
fn a_zero_check_timeout_is_an_error() {
    assert_err(
        &one("    check_timeout: 0s\n"),
        "endpoints[0].check_timeout",
        "must be greater than 0",
    );
}

#[test]
fn a_check_timeout_not_shorter_than_the_interval_is_an_error() {
    let text = "discovery:\n  static:\n    endpoints:\n      - url: http://a:1\n      - url: http://b:1\n      \
                - url: http://c:1\n        check_interval: 5s\n        check_timeout: 5s\n";
    assert_eq!(
        err(text),
        "test.yaml: discovery.static.endpoints[2].check_timeout: must be shorter than check_interval (5s)"
    );
}

#[test]
fn an_inherited_check_timeout_too_long_for_the_endpoints_interval_is_halved_with_a_warning() {
    // The reference's own advice for local servers, `check_interval: 2s` alone, loads.
    let c = ok(&one("    name: local\n    check_interval: 2s\n"));
    assert_eq!(c.endpoints[0].check_timeout, Duration::from_secs(1));
    assert_eq!(
        c.warnings,
        [
            "endpoints[0] (local): check_timeout 5s (the default) is not shorter than \
          check_interval 2s; using 1s (half the interval)"
        ]
    );
    let c = ok(&format!(
        "health:\n  check_timeout: 3s\n{}",
        one("    name: x\n    check_interval: 3s\n")
    ));
    assert_eq!(c.endpoints[0].check_timeout, Duration::from_millis(1500));
    assert_eq!(
        c.warnings,
        [
            "endpoints[0] (x): check_timeout 3s (from health.check_timeout) is not shorter than \
          check_interval 3s; using 1s 500ms (half the interval)"
        ]
    );
    // A `health:` interval the default timeout does not fit: each endpoint gets half of it.
    let c = ok(&format!(
        "health:\n  check_interval: 3s\n{}",
        one("    check_interval: 600ms\n")
    ));
    assert_eq!(c.endpoints[0].check_timeout, Duration::from_millis(300));
    // Shorter ones are kept, and say nothing.
    let c = ok(&one("    check_interval: 10s\n"));
    assert_eq!(c.endpoints[0].check_timeout, S(5));
    assert!(c.warnings.is_empty());
}

#[test]
fn an_endpoints_own_check_timeout_too_long_stays_an_error() {
    assert_eq!(
        err(&one("    check_interval: 2s\n    check_timeout: 2s\n")),
        "test.yaml: endpoints[0].check_timeout: must be shorter than check_interval (2s)"
    );
    assert_eq!(
        err(&format!(
            "health:\n  check_interval: 1s\n{}",
            one("    check_timeout: 3s\n")
        )),
        "test.yaml: endpoints[0].check_timeout: must be shorter than check_interval (1s)"
    );
}

#[test]
fn an_invalid_health_default_names_the_health_key() {
    // The endpoint does not override it, so the blame goes to where it is written.
    let text = format!("health:\n  recovery_successes: 0\n{}", one(""));
    assert_err(
        &text,
        "health.recovery_successes",
        "must be at least 1 (got 0)",
    );
    assert_err(
        "health:\n  check_interval: 3s\n  check_timeout: 3s\n",
        "health.check_timeout",
        "must be shorter than check_interval (3s)",
    );
    // The built-in default is fitted per endpoint instead (see the test above).
    assert!(ok("health:\n  check_interval: 3s\n").warnings.is_empty());
    assert_err(
        "health:\n  check_interval: 10ms\n",
        "health.check_interval",
        "must be at least 100ms",
    );
}

#[test]
fn a_negative_priority_is_an_error() {
    assert_err(
        &one("    priority: -5\n"),
        "endpoints[0].priority",
        "must be 0 or more",
    );
}

#[test]
fn zero_recovery_successes_is_an_error() {
    assert_err(
        &one("    recovery_successes: 0\n"),
        "endpoints[0].recovery_successes",
        "must be at least 1 (got 0)",
    );
}

#[test]
fn a_zero_failure_threshold_is_an_error() {
    assert_err(
        &one("    circuit_breaker: { failure_threshold: 0 }\n"),
        "endpoints[0].circuit_breaker.failure_threshold",
        "must be at least 1 (got 0)",
    );
    assert_err(
        "proxy:\n  circuit_breaker:\n    failure_threshold: -1\n",
        "proxy.circuit_breaker.failure_threshold",
        "must be at least 1 (got -1)",
    );
}

#[test]
fn a_zero_open_duration_is_an_error() {
    assert_err(
        "health:\n  circuit_breaker: { open_duration: 0s }\n",
        "health.circuit_breaker.open_duration",
        "must be greater than 0",
    );
}

#[test]
fn zero_degraded_latency_and_max_backoff_are_errors() {
    assert_err(
        &one("    degraded_latency: 0s\n"),
        "endpoints[0].degraded_latency",
        "must be greater than 0",
    );
    assert_err(
        &one("    max_backoff: 0s\n"),
        "endpoints[0].max_backoff",
        "must be greater than 0",
    );
}

#[test]
fn an_empty_health_check_url_is_an_error() {
    assert_err(
        &one("    health_check_url: \"\"\n"),
        "endpoints[0].health_check_url",
        "must not be empty",
    );
}

#[test]
fn a_non_http_model_url_is_an_error() {
    assert_err(
        &one("    model_url: ftp://x/models\n"),
        "endpoints[0].model_url",
        "`ftp://x/models` must be a path",
    );
}

#[test]
fn a_status_outside_100_599_is_an_error() {
    assert_err(
        "proxy:\n  retry_on_status: [429, 600]\n",
        "proxy.retry_on_status[1]",
        "600 is not an HTTP status code (100-599)",
    );
}

#[test]
fn a_negative_max_attempts_is_an_error() {
    assert_err(
        "proxy:\n  max_attempts: -1\n",
        "proxy.max_attempts",
        "-1 is out of range",
    );
}

#[test]
fn a_zero_proxy_timeout_is_an_error() {
    assert_err(
        "proxy:\n  connect_timeout: 0s\n",
        "proxy.connect_timeout",
        "must be greater than 0",
    );
    assert_err(
        "proxy:\n  response_header_timeout: 0s\n",
        "proxy.response_header_timeout",
        "must be greater than 0",
    );
    assert_err(
        "proxy:\n  stream_idle_timeout: 0s\n",
        "proxy.stream_idle_timeout",
        "must be greater than 0",
    );
}

#[test]
fn a_zero_discovery_interval_is_an_error() {
    assert_err(
        "discovery:\n  model_discovery: { interval: 0s }\n",
        "discovery.model_discovery.interval",
        "must be greater than 0",
    );
}

#[test]
fn an_unknown_load_balancer_lists_the_choices() {
    assert_err(
        "proxy:\n  load_balancer: round-robbin\n",
        "proxy.load_balancer",
        "`round-robbin` is not one of priority, round-robin, least-connections (did you mean `round-robin`?)",
    );
}

#[test]
fn an_unknown_routing_strategy_lists_the_choices() {
    assert_err(
        "proxy:\n  routing_strategy: eager\n",
        "proxy.routing_strategy",
        "`eager` is not one of strict, optimistic",
    );
}

#[test]
fn an_unknown_log_level_is_an_error() {
    assert_err(
        "logging:\n  level: verbose\n",
        "logging.level",
        "`verbose` is not one of trace, debug, info, warn, error",
    );
}

#[test]
fn an_unknown_log_format_is_an_error() {
    assert_err(
        "logging:\n  format: xml\n",
        "logging.format",
        "`xml` is not one of text, json",
    );
}

#[test]
fn a_port_out_of_range_is_an_error() {
    assert_err(
        "server:\n  port: 70000\n",
        "server.port",
        "70000 is out of range (0-65535",
    );
}

#[test]
fn an_empty_host_is_an_error() {
    assert_err(
        "server:\n  host: \"\"\n",
        "server.host",
        "must be a host name or address",
    );
}

#[test]
fn zero_endpoints_is_allowed() {
    assert!(ok("endpoints: []\n").endpoints.is_empty());
    assert!(ok("discovery:\n  static:\n    endpoints:\n")
        .endpoints
        .is_empty());
}

// ## The health breaker's open time (SPEC 9.4)

#[test]
fn health_breaker_open_time_follows_the_interval_by_default() {
    let c = ok(&one("    check_interval: 1s\n    check_timeout: 500ms\n"));
    assert_eq!(c.endpoints[0].health_breaker.open_duration, S(12));
    let c = ok(&one("    check_interval: 2s\n    check_timeout: 1s\n"));
    assert_eq!(c.endpoints[0].health_breaker.open_duration, S(24));
    let c = ok(&one("    check_interval: 5s\n    check_timeout: 1s\n"));
    assert_eq!(c.endpoints[0].health_breaker.open_duration, S(30));
    let c = ok(&one(""));
    assert_eq!(c.endpoints[0].health_breaker.open_duration, S(30));
}

#[test]
fn health_breaker_open_time_may_be_auto_or_fixed() {
    let c = ok(&format!(
        "health:\n  circuit_breaker: {{ open_duration: auto }}\n{}",
        one("    check_interval: 1s\n    check_timeout: 500ms\n")
    ));
    assert_eq!(c.endpoints[0].health_breaker.open_duration, S(12));
    let c = ok(&format!(
        "health:\n  circuit_breaker: {{ open_duration: 45s }}\n{}",
        one("    check_interval: 1s\n    check_timeout: 500ms\n")
    ));
    assert_eq!(
        c.endpoints[0].health_breaker.open_duration,
        S(45),
        "honoured as given"
    );
    assert_err(
        "health:\n  circuit_breaker: { open_duration: soon }\n",
        "health.circuit_breaker.open_duration",
        "invalid duration",
    );
}

// ## Olla compatibility

#[test]
fn request_deadlines_take_ollas_names() {
    let c = ok("server:\n  read_timeout: 5s\n  read_header_timeout: 2s\n");
    assert_eq!(c.server.read_timeout, S(5));
    assert_eq!(c.server.read_header_timeout, S(2));
    assert!(c.ignored_olla_settings.is_empty());
}

#[test]
fn request_deadlines_must_be_positive() {
    assert_err(
        "server:\n  read_timeout: 0s\n",
        "server.read_timeout",
        "must be greater than 0",
    );
    assert_err(
        "server:\n  read_header_timeout: 0s\n",
        "server.read_header_timeout",
        "must be greater than 0",
    );
}

// ## Rate limits (SPEC 12)

fn nets(list: &[&str]) -> Vec<ipnet::IpNet> {
    list.iter().map(|c| c.parse().unwrap()).collect()
}

#[test]
fn rate_limits_are_on_by_default_with_ollas_numbers() {
    let c = ok("");
    assert_eq!(c.server.rate_limits, RateLimitConfig::default());
    assert_eq!(
        (
            c.server.rate_limits.global_requests_per_minute,
            c.server.rate_limits.per_ip_requests_per_minute,
            c.server.rate_limits.health_requests_per_minute,
            c.server.rate_limits.burst_size,
            c.server.rate_limits.cleanup_interval,
        ),
        (1000, 100, 1000, 50, S(300))
    );
    assert!(!c.server.trust_proxy_headers);
    assert_eq!(
        c.server.trusted_proxy_cidrs,
        nets(&[
            "127.0.0.0/8",
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "::1/128"
        ])
    );
}

#[test]
fn rate_limits_take_ollas_keys() {
    let c = ok(
        "server:\n  rate_limits:\n    global_requests_per_minute: 0\n    \
                per_ip_requests_per_minute: 20\n    health_requests_per_minute: 60\n    \
                burst_size: 3\n    cleanup_interval: 1m\n    trust_proxy_headers: true\n    \
                trusted_proxy_cidrs: [\"10.1.2.3/8\", \"fd00::/8\", \"192.0.2.1\"]\n    \
                per_endpoint:\n      default_requests_per_minute: 200\n",
    );
    let r = c.server.rate_limits;
    assert_eq!(
        (
            r.global_requests_per_minute,
            r.per_ip_requests_per_minute,
            r.health_requests_per_minute,
            r.burst_size,
            r.cleanup_interval,
        ),
        (0, 20, 60, 3, S(60))
    );
    assert!(c.server.trust_proxy_headers);
    // Host bits dropped; a bare address is a network of one.
    assert_eq!(
        c.server.trusted_proxy_cidrs,
        nets(&["10.0.0.0/8", "fd00::/8", "192.0.2.1/32"])
    );
    assert_eq!(c.ignored_olla_settings, ["server.rate_limits.per_endpoint"]);
}

#[test]
fn trusted_proxies_take_corrals_spelling_too() {
    let c = ok("server:\n  trust_proxy_headers: true\n  trusted_proxy_cidrs: [\"::1/128\"]\n");
    assert!(c.server.trust_proxy_headers);
    assert_eq!(c.server.trusted_proxy_cidrs, nets(&["::1/128"]));
    assert_eq!(c.server.rate_limits, RateLimitConfig::default());
    assert_err(
        "server:\n  trust_proxy_headers: true\n  rate_limits: { trust_proxy_headers: false }\n",
        "server.rate_limits.trust_proxy_headers",
        "conflicts with `server.trust_proxy_headers`",
    );
    assert_err(
        "server:\n  trusted_proxy_cidrs: []\n  rate_limits: { trusted_proxy_cidrs: [] }\n",
        "server.rate_limits.trusted_proxy_cidrs",
        "conflicts with `server.trusted_proxy_cidrs`",
    );
}

#[test]
fn a_bad_cidr_is_named_with_its_position() {
    let e =
        err("server:\n  rate_limits:\n    trusted_proxy_cidrs: [\"10.0.0.0/8\", \"10.0.0/33\"]\n");
    assert!(
        e.starts_with(
            "test.yaml: server.rate_limits.trusted_proxy_cidrs[1]: invalid CIDR `10.0.0/33`"
        ),
        "{e}"
    );
    assert!(e.contains("line 3"), "{e}");
    let e = err("server:\n  trusted_proxy_cidrs: [\"::1/129\"]\n");
    assert!(
        e.starts_with("test.yaml: server.trusted_proxy_cidrs[0]: invalid CIDR `::1/129`"),
        "{e}"
    );
}

#[test]
fn no_trusted_proxy_while_trusting_their_headers_is_an_error() {
    assert_err(
        "server:\n  rate_limits: { trust_proxy_headers: true, trusted_proxy_cidrs: [] }\n",
        "server.rate_limits.trusted_proxy_cidrs",
        "is empty while trust_proxy_headers is on",
    );
    // Off, an empty list says what it means: nobody is trusted.
    let c = ok("server:\n  rate_limits: { trusted_proxy_cidrs: [] }\n");
    assert!(c.server.trusted_proxy_cidrs.is_empty());
}

#[test]
fn rate_limit_values_are_checked() {
    for key in [
        "global_requests_per_minute",
        "per_ip_requests_per_minute",
        "health_requests_per_minute",
        "burst_size",
    ] {
        assert_err(
            &format!("server:\n  rate_limits: {{ {key}: -1 }}\n"),
            &format!("server.rate_limits.{key}"),
            "must be 0 (off) to 60000000 (got -1)",
        );
    }
    assert_err(
        "server:\n  rate_limits: { burst_size: 0 }\n",
        "server.rate_limits.burst_size",
        "must be at least 1 while a limit is on",
    );
    // Every limit off: the burst does not matter.
    let c = ok("server:\n  rate_limits: { global_requests_per_minute: 0, \
                per_ip_requests_per_minute: 0, health_requests_per_minute: 0, burst_size: 0 }\n");
    assert!(c.server.rate_limits.is_off());
    assert_err(
        "server:\n  rate_limits: { cleanup_interval: 5 }\n",
        "server.rate_limits.cleanup_interval",
        "invalid duration `5`",
    );
    assert_err(
        "server:\n  rate_limits: { per_ip: 5 }\n",
        "server.rate_limits.per_ip",
        "unknown key",
    );
}

#[test]
fn olla_keys_are_ignored_and_named() {
    let c = ok("server:\n  write_timeout: 30s\n  cors: { enabled: true }\n\
                proxy:\n  engine: sherpa\n  max_retries: 3\n\
                discovery:\n  type: static\n  model_discovery: { concurrent_workers: 5 }\n  \
                static:\n    endpoints:\n      - url: http://a:1\n        preserve_path: true\n        \
                model_filter: { include: [\"llama*\"] }\n\
                model_registry: { type: memory }\nengineering: { show_nerdstats: false }\n\
                logging: { output: stdout }\n");
    assert_eq!(
        c.ignored_olla_settings,
        [
            "server.write_timeout",
            "server.cors",
            "proxy.engine",
            "proxy.max_retries",
            "discovery.type",
            "discovery.model_discovery.concurrent_workers",
            "discovery.static.endpoints[0].preserve_path",
            "discovery.static.endpoints[0].model_filter",
            "logging.output",
            "model_registry.type",
            "engineering",
        ]
    );
    assert!(c
        .ignored_settings_warning()
        .unwrap()
        .starts_with("ignored Olla settings: server.write_timeout, server.cors, proxy.engine,"));
}

#[test]
fn ollas_model_registry_routing_strategy_is_the_routing_strategy() {
    let strategy = |yaml: &str| ok(yaml).proxy.routing_strategy;
    let registry = |kind: &str, fallback: &str| {
        format!(
            "model_registry:\n  type: memory\n  routing_strategy:\n    type: {kind}\n    \
             options:\n      fallback_behavior: {fallback}\n"
        )
    };
    assert_eq!(
        strategy("model_registry:\n  routing_strategy:\n    type: optimistic\n"),
        RoutingStrategy::Strict,
        "Olla's optimistic without fallback_behavior: all rejects unknown models"
    );
    for (kind, fallback, want) in [
        ("strict", "all", RoutingStrategy::Strict),
        ("optimistic", "all", RoutingStrategy::Optimistic),
        ("optimistic", "compatible_only", RoutingStrategy::Strict),
        ("optimistic", "none", RoutingStrategy::Strict),
        ("discovery", "all", RoutingStrategy::Optimistic),
        ("discovery", "none", RoutingStrategy::Strict),
    ] {
        assert_eq!(
            strategy(&registry(kind, fallback)),
            want,
            "{kind} {fallback}"
        );
    }
    // The rest of the section is named in the warning.
    let c = ok(
        "model_registry:\n  type: memory\n  enable_unifier: true\n  unification: {}\n  \
                routing_strategy:\n    type: discovery\n    options:\n      \
                discovery_timeout: 2s\n      discovery_refresh_on_miss: false\n",
    );
    assert_eq!(
        c.ignored_olla_settings,
        [
            "model_registry.type",
            "model_registry.enable_unifier",
            "model_registry.unification",
            "model_registry.routing_strategy.options.discovery_timeout",
            "model_registry.routing_strategy.options.discovery_refresh_on_miss",
        ]
    );
    // No type: Olla's default, strict, which leaves proxy.routing_strategy free.
    assert_eq!(
        strategy("proxy:\n  routing_strategy: optimistic\nmodel_registry:\n  type: memory\n"),
        RoutingStrategy::Optimistic
    );
}

#[test]
fn bad_or_doubled_olla_routing_strategies_are_errors() {
    assert_err(
        "model_registry:\n  routing_strategy:\n    type: optimistc\n",
        "model_registry.routing_strategy.type",
        "`optimistc` is not one of strict, optimistic, discovery (did you mean `optimistic`?)",
    );
    assert_err(
        "model_registry:\n  routing_strategy:\n    options: { fallback_behavior: some }\n",
        "model_registry.routing_strategy.options.fallback_behavior",
        "`some` is not one of compatible_only, all, none",
    );
    assert_err(
        "proxy:\n  routing_strategy: strict\nmodel_registry:\n  routing_strategy: { type: strict }\n",
        "model_registry.routing_strategy.type",
        "conflicts with `proxy.routing_strategy`",
    );
    assert_err(
        "model_registry:\n  routing_strategy:\n    kind: strict\n",
        "model_registry.routing_strategy.kind",
        "unknown key",
    );
}

#[test]
fn one_ignored_key_reads_in_the_singular() {
    let c = ok("proxy:\n  engine: olla\n");
    assert_eq!(
        c.ignored_settings_warning().as_deref(),
        Some("ignored Olla setting: proxy.engine")
    );
    // A key set to null is still named.
    let c = ok("endpoints:\n  - url: http://a:1\n    preserve_path:\n");
    assert_eq!(c.ignored_olla_settings, ["endpoints[0].preserve_path"]);
}

// ## Endpoint auth (SPEC 12; the rules of each type are tested in endpoint_auth.rs)

#[test]
fn auth_becomes_the_last_header_and_wins_over_a_same_named_one() {
    let env = |v: &str| (v == "VLLM_KEY").then(|| "sk-vllm".to_string());
    let text = one(
        "    headers: { authorization: \"Bearer stale\", X-Tenant: acme }\n    \
         auth: { type: bearer, token: \"${VLLM_KEY}\" }\n",
    );
    let c = parse(&text, "test.yaml", &env).unwrap();
    assert_eq!(
        c.endpoints[0].headers,
        [
            ("X-Tenant".to_string(), "acme".to_string()),
            ("Authorization".to_string(), "Bearer sk-vllm".to_string()),
        ]
    );
    assert!(c.ignored_olla_settings.is_empty());
    let c = ok(&one(
        "    auth:\n      type: basic\n      username: admin\n      password: 1234\n",
    ));
    assert_eq!(
        c.endpoints[0].headers,
        [(
            "Authorization".to_string(),
            "Basic YWRtaW46MTIzNA==".to_string()
        )]
    );
}

#[test]
fn auth_errors_name_the_endpoints_field() {
    assert_err(
        &one("    auth: { type: bearer, token_file: /nonexistent/corral/token }\n"),
        "endpoints[0].auth.token_file",
        "cannot read `/nonexistent/corral/token`",
    );
    assert_err(
        &one("    auth: { type: bearer, tokn: x }\n"),
        "endpoints[0].auth.tokn",
        "unknown key (did you mean `token`?)",
    );
    let e = err(&one(
        "    auth: { type: basic, username: u, password: \"${PASS}\" }\n",
    ));
    assert_eq!(
        e,
        "test.yaml: endpoints[0].auth.password: environment variable `PASS` is not set"
    );
}

#[test]
fn a_url_with_credentials_points_to_auth() {
    let e = err(&one("").replace("localhost", "user:pw@localhost"));
    assert!(e.contains("`auth:` block"), "{e}");
    assert!(!e.contains("pw"), "{e}");
}

#[test]
fn olla_request_limits_set_the_sizes() {
    let c =
        ok("server:\n  request_limits:\n    max_body_size: 52428800\n    max_header_size: 1MB\n");
    assert_eq!(c.server.max_body_size, 52_428_800);
    assert_eq!(c.server.max_header_size, 1_000_000);
}

#[test]
fn both_spellings_of_a_size_is_an_error() {
    assert_err(
        "server:\n  max_body_size: 1MB\n  request_limits:\n    max_body_size: 2MB\n",
        "server.request_limits.max_body_size",
        "conflicts with `server.max_body_size`; set only one of them",
    );
}

#[test]
fn olla_connection_timeout_sets_connect_timeout() {
    assert_eq!(
        ok("proxy:\n  connection_timeout: 40s\n")
            .proxy
            .connect_timeout,
        S(40)
    );
}

#[test]
fn both_spellings_of_connect_timeout_is_an_error() {
    assert_err(
        "proxy:\n  connect_timeout: 5s\n  connection_timeout: 40s\n",
        "proxy.connection_timeout",
        "conflicts with `proxy.connect_timeout`; set only one of them",
    );
}

#[test]
fn olla_load_balancer_names_are_accepted() {
    assert_eq!(
        ok("proxy:\n  load_balancer: least_conn\n")
            .proxy
            .load_balancer,
        LoadBalancer::LeastConnections
    );
    assert_eq!(
        ok("proxy:\n  load_balancer: round_robin\n")
            .proxy
            .load_balancer,
        LoadBalancer::RoundRobin
    );
}

// ## Files

fn shipped(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config")
        .join(name)
}

fn parse_shipped(name: &str) -> Config {
    let path = shipped(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let env = |var: &str| (var == "OPENAI_API_KEY").then(|| "sk-test".to_string());
    parse(&text, &path.display().to_string(), &env).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn every_shipped_config_file_parses() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            parse_shipped(path.file_name().unwrap().to_str().unwrap());
            seen += 1;
        }
    }
    assert!(
        seen >= 3,
        "expected corral.yaml, example.yaml and olla-example.yaml"
    );
}

#[test]
fn the_default_config_runs_three_local_servers() {
    let c = parse_shipped("corral.yaml");
    assert_eq!(
        (c.server.host.as_str(), c.server.port),
        ("localhost", 40114)
    );
    let got: Vec<_> = c
        .endpoints
        .iter()
        .map(|e| {
            (
                &*e.name,
                e.url.as_str(),
                e.kind,
                e.priority,
                e.check_interval,
                e.check_timeout,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "local-ollama",
                "http://localhost:11434",
                EndpointType::Ollama,
                100,
                S(5),
                S(2)
            ),
            (
                "local-vllm",
                "http://localhost:8000",
                EndpointType::Vllm,
                80,
                S(5),
                S(2)
            ),
            (
                "lm-studio",
                "http://localhost:1234",
                EndpointType::LmStudio,
                50,
                S(5),
                S(2)
            ),
        ]
    );
    assert!(c.ignored_olla_settings.is_empty());
}

#[test]
fn the_example_shows_the_defaults() {
    let c = parse_shipped("example.yaml");
    let d = ok("");
    assert_eq!(
        (c.server, c.proxy, c.logging),
        (d.server, d.proxy, d.logging)
    );
    let first = &c.endpoints[0];
    let mut expected = EndpointSettings::new(
        "local-ollama",
        "http://localhost:11434",
        EndpointType::Ollama,
    );
    expected.health_url_is_default = false; // the example spells the path out
    assert_eq!(**first, expected);
    let api = &c.endpoints[1];
    assert_eq!(api.kind, EndpointType::OpenAiCompatible);
    assert!(!api.health_checks);
    assert_eq!(
        api.headers,
        vec![("Authorization".to_string(), "Bearer sk-test".to_string())]
    );
    assert!(c.ignored_olla_settings.is_empty());
}

#[test]
fn the_olla_example_loads_with_a_warning() {
    let c = parse_shipped("olla-example.yaml");
    let warning = c.ignored_settings_warning().expect("a warning");
    assert!(
        warning.starts_with("ignored Olla settings: server.write_timeout,"),
        "{warning}"
    );
    assert!(
        warning.contains("discovery.static.endpoints[1].preserve_path"),
        "{warning}"
    );
    assert_eq!(c.server.max_body_size, 52_428_800);
    assert_eq!(c.server.max_header_size, 512 * 1024);
    assert_eq!(c.proxy.connect_timeout, S(30));
    assert_eq!(c.proxy.load_balancer, LoadBalancer::LeastConnections);
    assert_eq!(
        c.endpoints[1].health_url,
        "http://192.168.0.10:8000/api/health"
    );
    assert_eq!(c.endpoints[1].discovery.timeout, S(30));
    // Honoured, the keys it leaves out at Olla's defaults.
    assert_eq!(
        c.server.rate_limits,
        RateLimitConfig {
            global_requests_per_minute: 1000,
            per_ip_requests_per_minute: 100,
            ..RateLimitConfig::default()
        }
    );
    assert!(!warning.contains("rate_limits"), "{warning}");
    assert_eq!(
        c.endpoints[1].headers,
        [("Authorization".to_string(), "Bearer sk-local".to_string())]
    );
}

#[test]
fn load_reads_the_file_and_records_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, "endpoints:\n  - url: http://a:1\n").unwrap();
    let c = load(&path).unwrap();
    assert_eq!(c.source.as_deref(), Some(path.as_path()));
    assert_eq!(c.endpoints.len(), 1);
}

#[test]
fn load_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.yaml");
    let e = load(&missing).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("{}: cannot read:", missing.display())),
        "{e}"
    );
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "proxy:\n  max_attempts: -1\n").unwrap();
    let e = load(&bad).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("{}: proxy.max_attempts:", bad.display())),
        "{e}"
    );
}

#[test]
fn load_interval_and_max_concurrency_inherit_and_override() {
    use corral_actors::settings::MaxConcurrency;
    let c = ok("
health:
  load_interval: 500ms
  max_concurrency: auto
endpoints:
  - url: http://a:1
  - url: http://b:1
    load_interval: 0s
    max_concurrency: 4
  - url: http://c:1
    max_concurrency: 0
");
    let e = &c.endpoints;
    assert_eq!(
        (e[0].load_interval, e[0].max_concurrency),
        (Duration::from_millis(500), MaxConcurrency::Auto)
    );
    assert_eq!(
        (e[1].load_interval, e[1].max_concurrency),
        (Duration::ZERO, MaxConcurrency::Fixed(4))
    );
    assert_eq!(e[2].max_concurrency, MaxConcurrency::Unlimited);
    let d = &ok("endpoints:\n  - url: http://a:1\n").endpoints[0];
    assert_eq!(
        (d.load_interval, d.max_concurrency),
        (S(2), MaxConcurrency::Unlimited)
    );
}

#[test]
fn bad_load_and_concurrency_values_name_the_field() {
    assert_err(
        "endpoints:\n  - url: http://a:1\n    max_concurrency: -1\n",
        "endpoints[0].max_concurrency",
        "must be 0 (no limit), a positive number or `auto` (got -1)",
    );
    let e = err("health:\n  max_concurrency: many\n");
    assert!(
        e.contains("health.max_concurrency") && e.contains("`auto`"),
        "{e}"
    );
    assert_err(
        "health:\n  load_interval: 10ms\n",
        "health.load_interval",
        "must be 0s (off) or at least 100ms",
    );
}

#[test]
fn the_queue_has_defaults_and_limits() {
    let d = ok("");
    assert_eq!((d.proxy.queue.size, d.proxy.queue.max_wait), (256, S(30)));
    let c = ok("proxy:\n  queue:\n    size: 0\n    max_wait: 5s\n");
    assert_eq!((c.proxy.queue.size, c.proxy.queue.max_wait), (0, S(5)));
    assert_err(
        "proxy:\n  queue:\n    size: -3\n",
        "proxy.queue.size",
        "must be 0 (no queue) to",
    );
    assert_err(
        "proxy:\n  queue:\n    max_wait: 0s\n",
        "proxy.queue.max_wait",
        "",
    );
    let e = err("proxy:\n  queue:\n    length: 3\n");
    assert!(e.contains("length"), "{e}");
}

// ## Olla's own configs load unchanged (SPEC 3, 12; fixtures in src/config/fixtures/)

fn fixture(name: &str, env: &dyn Fn(&str) -> Option<String>) -> Config {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/config/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    parse(&text, name, env).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn ollas_default_config_loads_with_its_settings_honoured() {
    let c = fixture("olla-default.yaml", &no_env);
    assert_eq!(
        c.server.max_body_size, 104_857_600,
        "bare integers are bytes"
    );
    assert_eq!(c.server.max_header_size, 1_048_576);
    assert_eq!(c.server.read_timeout, S(30));
    assert_eq!(c.server.read_header_timeout, S(10));
    assert_eq!(c.proxy.connect_timeout, S(60));
    assert_eq!(c.proxy.response_header_timeout, S(30));
    assert_eq!(c.proxy.load_balancer, LoadBalancer::LeastConnections);
    assert_eq!(c.proxy.routing_strategy, RoutingStrategy::Strict);
    assert!(!c.proxy.forward_client_credentials);
    assert_eq!(c.logging.format, LogFormat::Json);
    let got: Vec<_> = c
        .endpoints
        .iter()
        .map(|e| (&*e.name, e.kind, e.check_interval, e.check_timeout))
        .collect();
    assert_eq!(
        got,
        [
            ("local-ollama", EndpointType::Ollama, S(2), S(1)),
            ("local-lm-studio", EndpointType::LmStudio, S(2), S(1)),
            ("local-vllm", EndpointType::Vllm, S(5), S(2)),
        ]
    );
    assert_eq!(c.endpoints[1].health_url, "http://localhost:1234/");
    assert_eq!(c.endpoints[0].discovery.timeout, S(30));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let warning = c.ignored_settings_warning().unwrap();
    for key in [
        "server.write_timeout",
        "server.cors",
        "server.rate_limits",
        "proxy.engine",
        "proxy.profile",
        "proxy.connection_keep_alive",
        "proxy.tls_handshake_timeout",
        "proxy.retry",
        "discovery.health_check",
        "discovery.model_discovery.concurrent_workers",
        "model_registry.type",
        "model_registry.unification",
        "model_registry.routing_strategy.options.discovery_timeout",
        "logging.output",
        "translators",
        "engineering",
        "dashboard",
    ] {
        assert!(warning.contains(key), "{key} not named in: {warning}");
    }
}

#[test]
fn ollas_remaining_keys_load_too() {
    // Keys Olla has that its default file leaves out.
    let c = ok("server:\n  idle_timeout: 60s\n  max_body_size: 52428800\n\
                proxy:\n  profile_filter: { include: [ollama] }\n  stream_buffer_size: 8192\n  \
                max_retries: 3\n  retry_backoff: 500ms\n\
                discovery:\n  static:\n    endpoints:\n      - url: http://a:1\n        \
                preserve_path: true\n        model_filter: { exclude: [\"*embed*\"] }\n");
    assert_eq!(c.server.max_body_size, 52_428_800);
    assert_eq!(
        c.ignored_olla_settings,
        [
            "server.idle_timeout",
            "proxy.profile_filter",
            "proxy.stream_buffer_size",
            "proxy.max_retries",
            "proxy.retry_backoff",
            "discovery.static.endpoints[0].preserve_path",
            "discovery.static.endpoints[0].model_filter",
        ]
    );
}

#[test]
fn ollas_auth_config_loads_every_type() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("user"), "admin\n").unwrap();
    std::fs::write(dir.path().join("pass"), "  s3cr3t  \n").unwrap();
    let secrets = dir.path().to_str().unwrap().to_string();
    let env = move |var: &str| match var {
        "AUTH_TOKEN" => Some("tok-1".to_string()),
        "ANALYTICS_API_KEY" => Some("an-key".to_string()),
        "SECRETS" => Some(secrets.clone()),
        _ => None,
    };
    let c = fixture("olla-auth.yaml", &env);
    let headers: Vec<_> = c.endpoints.iter().map(|e| e.headers.clone()).collect();
    let h = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(
        headers,
        [
            h(&[("Authorization", "Bearer tok-1")]),
            h(&[("X-Tenant-ID", "acme"), ("X-Api-Key", "an-key")]),
            h(&[("x-goog-api-key", "sk-default")]),
            h(&[("Authorization", "Basic YWRtaW46czNjcjN0")]),
        ]
    );
    // optimistic with fallback_behavior: all is Corral's optimistic.
    assert_eq!(c.proxy.routing_strategy, RoutingStrategy::Optimistic);
    assert_eq!(c.endpoints[2].kind, EndpointType::LiteLlm);
}

#[test]
fn every_olla_backend_type_loads_with_its_default_paths() {
    let c = fixture("olla-backends.yaml", &no_env);
    for e in &c.endpoints {
        assert_eq!(
            e.health_url,
            format!("{}{}", e.url, e.kind.default_health_path()),
            "{}",
            e.name
        );
        assert_eq!(
            e.model_url,
            format!("{}{}", e.url, e.kind.default_model_path()),
            "{}",
            e.name
        );
    }
    let kinds: Vec<_> = c.endpoints.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "ollama",
            "lm-studio",
            "lm-studio",
            "vllm",
            "llamacpp",
            "sglang",
            "lemonade",
            "litellm",
            "lmdeploy",
            "docker-model-runner",
            "docker-model-runner",
            "omlx",
            "vllm-mlx",
            "openai-compatible",
        ]
    );
    let dmr = &c.endpoints[10];
    assert_eq!(dmr.health_url, "http://127.0.0.1:12435/engines/v1/models");
    let lemonade = &c.endpoints[6];
    assert_eq!(lemonade.health_url, "http://127.0.0.1:8001/api/v1/health");
    assert_eq!(lemonade.model_url, "http://127.0.0.1:8001/api/v1/models");
}

/// Every config example of the reference's health-checking page (its lists of endpoints
/// under the short form where the page shows the list alone).
#[test]
fn the_references_health_checking_examples_load() {
    let examples = [
        "endpoints:\n  - url: \"http://localhost:11434\"\n    check_interval: 30s\n    check_timeout: 5s\n",
        "discovery:\n  static:\n    endpoints:\n      - url: \"http://localhost:11434\"\n        \
         name: \"local-ollama\"\n        type: \"ollama\"\n        health_check_url: \"/\"\n        \
         check_interval: 5s\n        check_timeout: 2s\n",
        "endpoints:\n  - url: \"http://localhost:11434\"\n    check_interval: 5s\n\n  \
         - url: \"http://remote:11434\"\n    check_interval: 30s\n",
        "endpoints:\n  - url: \"http://fast-server:11434\"\n    check_timeout: 1s\n\n  \
         - url: \"http://slow-server:11434\"\n    check_timeout: 5s\n",
        "endpoints:\n  - url: \"http://localhost:11434\"\n    health_check_url: \"/\"\n",
        "endpoints:\n  - url: \"http://localhost:11434\"\n    type: \"ollama\"\n    model_url: \"/api/tags\"\n",
        "endpoints:\n  - url: \"http://localhost:11434\"\n    check_interval: 10s\n",
        "endpoints:\n  - url: \"http://localhost:11434\"\n    check_interval: 2s\n",
        "endpoints:\n  - url: \"http://localhost:11434\"\n    check_interval: 5s\n\n  \
         - url: \"http://remote:11434\"\n    check_interval: 60s\n",
        "endpoints:\n  - url: \"http://localhost:11434\"\n    health_check_url: \"/api/tags\"\n",
        "endpoints:\n  - url: \"http://localhost:11434\"\n    check_timeout: 1s\n\n  \
         - url: \"https://api.example.com\"\n    check_timeout: 5s\n",
        "endpoints:\n  - url: \"http://primary:11434\"\n    priority: 100\n    check_interval: 5s\n\n  \
         - url: \"http://backup:11434\"\n    priority: 50\n    check_interval: 15s\n",
    ];
    for text in examples {
        let c = ok(text);
        for e in &c.endpoints {
            assert!(e.check_timeout < e.check_interval, "{text}");
        }
    }
    // "Local endpoints: 2-5 seconds": the inherited 5s timeout is halved, with a warning.
    let c = ok("endpoints:\n  - url: \"http://localhost:11434\"\n    check_interval: 5s\n");
    assert_eq!(c.endpoints[0].check_timeout, Duration::from_millis(2500));
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
}

#[test]
fn max_concurrency_auto_without_a_slot_count_warns() {
    let c = ok("
health:
  max_concurrency: auto
endpoints:
  - url: http://a:1
    name: llama
    type: llamacpp
  - url: http://b:1
    name: ollama
    type: ollama
  - url: http://c:1
    name: blind
    type: llamacpp
    load_interval: 0s
");
    let w = c.warnings.join("\n");
    assert!(!w.contains("(llama)"), "{w}");
    assert!(
        w.contains("endpoints[1] (ollama): max_concurrency: auto has nothing to follow (type ollama reports no slot count); no limit"),
        "{w}"
    );
    assert!(
        w.contains("(blind)") && w.contains("load_interval is 0s"),
        "{w}"
    );
}
