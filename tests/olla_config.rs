//! End-to-end: an Olla user's config behaves as it does in Olla (SPEC 3 as sharpened, SPEC 12):
//! Olla's own files load, `model_registry.routing_strategy` routes, endpoint `auth` reaches
//! backends that need it on every path, client credentials stay with Corral (unless
//! `proxy.forward_client_credentials`), and every Olla backend type and provider prefix
//! works with its default paths. Corral in-process between the test's client and mock
//! backends; the built binary where its stderr is the point.

use std::time::Duration;

use house::*;

const CORRAL: &str = env!("CARGO_BIN_EXE_corral");
const WAIT: Duration = Duration::from_secs(10);

/// The last request the mock saw on `path`.
fn last(mock: &MockBackend, path: &str) -> house::mock::Seen {
    mock.requests()
        .into_iter()
        .rev()
        .find(|r| r.path == path)
        .unwrap_or_else(|| panic!("{} saw no {path}", mock.name()))
}

fn chat_body(model: &str) -> Vec<u8> {
    chat(model, false).to_string().into_bytes()
}

// ## Endpoint auth (SPEC 12)

#[test]
fn bearer_auth_is_sent_on_checks_discovery_and_proxied_requests() {
    // Two backends started with an API key; only the one Corral is given the key for works.
    let keyed = MockBackend::start_named(Persona::Vllm, "keyed");
    keyed.require_header("authorization", "Bearer tok-1");
    keyed.set_models(&["secret-model"]);
    let keyless = MockBackend::start_named(Persona::Vllm, "keyless");
    keyless.require_header("authorization", "Bearer tok-2");
    let corral = Scenario::new()
        .mock_with(&keyed, &[("auth", "{ type: bearer, token: \"${TOKEN}\" }")])
        .mock(&keyless)
        .env("TOKEN", "tok-1")
        .start();
    corral.wait_status("keyed", "healthy", WAIT);
    corral.wait_status("keyless", "unhealthy", WAIT);
    wait_until(WAIT, "the keyed model list is discovered", || {
        corral.model_names().contains(&"secret-model".to_string())
    });

    // The client brings a key of its own: it is not what the backend sees.
    let resp = corral.request(
        "POST",
        "/v1/chat/completions",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", "Bearer client-key"),
        ],
        &chat_body("secret-model"),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(served_by(&resp), "keyed");
    let seen = keyed.requests();
    for path in ["/health", "/v1/models", "/v1/chat/completions"] {
        assert!(seen.iter().any(|r| r.path == path), "no {path} seen");
    }
    for r in &seen {
        assert_eq!(
            r.header("authorization"),
            Some("Bearer tok-1"),
            "{} {}",
            r.method,
            r.path
        );
    }
    // The key of the other endpoint's config is nowhere: it had none.
    assert!(keyless
        .requests()
        .iter()
        .all(|r| r.header("authorization").is_none()));
}

#[test]
fn api_key_from_a_file_and_basic_auth_reach_their_backends() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("key"), "k-from-file\n").unwrap();
    std::fs::write(dir.path().join("pass"), "s3cr3t\n").unwrap();
    let gateway = MockBackend::start_named(Persona::Vllm, "gateway");
    gateway.require_header("x-goog-api-key", "k-from-file");
    gateway.set_models(&["gw-model"]);
    let basic = MockBackend::start_named(Persona::Vllm, "basic");
    // base64("admin:s3cr3t")
    basic.require_header("authorization", "Basic YWRtaW46czNjcjN0");
    basic.set_models(&["basic-model"]);
    let corral = Scenario::new()
        .mock_with(
            &gateway,
            &[
                ("headers", "{ X-Tenant: acme, x-goog-api-key: stale }"),
                (
                    "auth",
                    "{ type: api_key, key_file: \"${SECRETS}/key\", header: x-goog-api-key }",
                ),
            ],
        )
        .mock_with(
            &basic,
            &[(
                "auth",
                "{ type: basic, username: admin, password_file: \"${SECRETS}/pass\" }",
            )],
        )
        .env("SECRETS", dir.path().to_str().unwrap())
        .start();
    corral.wait_all_healthy(2, WAIT);
    for (model, mock) in [("gw-model", &gateway), ("basic-model", &basic)] {
        wait_until(WAIT, "models known", || {
            corral.model_names().contains(&model.to_string())
        });
        let resp = corral.post_json("/v1/chat/completions", &chat(model, false));
        assert_eq!(resp.status, 200, "{model}: {}", resp.text());
        assert_eq!(served_by(&resp), mock.name());
    }
    let seen = last(&gateway, "/v1/chat/completions");
    assert_eq!(seen.header("x-tenant"), Some("acme"), "headers still sent");
    assert_eq!(
        seen.header("x-goog-api-key"),
        Some("k-from-file"),
        "auth wins over a same-named header"
    );
}

#[test]
fn credentials_never_show_in_the_status_api_or_errors() {
    let mock = MockBackend::start_named(Persona::Vllm, "keyed");
    mock.require_header("authorization", "Bearer very-secret-token");
    let corral = Scenario::new()
        .mock_with(
            &mock,
            &[
                ("auth", "{ type: bearer, token: very-secret-token }"),
                ("headers", "{ X-Other: also-secret-value }"),
            ],
        )
        .start();
    corral.wait_all_healthy(1, WAIT);
    // A request that fails upstream, so that errors are produced too.
    mock.set_behaviour(Behaviour::Status(502));
    let failed = corral.post_json("/v1/chat/completions", &chat("mock-model", false));
    assert_eq!(failed.status, 502);
    mock.set_behaviour(Behaviour::Up);
    for path in [
        "/internal/status",
        "/internal/status/endpoints",
        "/internal/status/models",
        "/internal/stats/models",
        "/internal/metrics",
        "/olla/models",
    ] {
        let body = corral.get(path).text();
        for secret in ["very-secret-token", "also-secret-value"] {
            assert!(!body.contains(secret), "{path} shows {secret}: {body}");
        }
    }
    for secret in ["very-secret-token", "also-secret-value"] {
        assert!(!failed.text().contains(secret), "{}", failed.text());
        assert!(
            failed.headers.iter().all(|(_, v)| !v.contains(secret)),
            "{:?}",
            failed.headers
        );
    }
}

#[test]
fn a_missing_secret_file_exits_1_naming_the_field() {
    let f = write_config(
        "endpoints:\n  - url: http://127.0.0.1:1\n    \
         auth: { type: bearer, token_file: /nonexistent/corral-token }\n",
    );
    let path = f.to_str().unwrap();
    let out = run_corral(CORRAL, &["--check-config", path], &[], WAIT);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "endpoints[0].auth.token_file: cannot read `/nonexistent/corral-token`: No such file"
        ),
        "{}",
        out.stderr
    );
}

// ## Client credentials stay with Corral (SPEC 12)

const CLIENT_CREDENTIALS: &[(&str, &str)] = &[
    ("Authorization", "Bearer client-key"),
    ("Cookie", "session=client"),
    ("X-Api-Key", "client-api-key"),
    ("X-Auth-Token", "client-token"),
];

fn with_credentials<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut h = vec![("Content-Type", "application/json")];
    h.extend_from_slice(CLIENT_CREDENTIALS);
    h.extend_from_slice(extra);
    h
}

#[test]
fn client_credentials_reach_no_backend_even_on_failover() {
    let first = MockBackend::start_named(Persona::Vllm, "first");
    let third_party = MockBackend::start_named(Persona::Vllm, "third-party");
    let corral = Scenario::new()
        .mock_with(&first, &[("priority", "100")])
        .mock_with(
            &third_party,
            &[("priority", "50"), ("headers", "{ X-Tenant: acme }")],
        )
        .start();
    corral.wait_all_healthy(2, WAIT);
    first.set_behaviour_for("/v1/chat", Behaviour::Status(503));
    // The backend answers with cookies, a challenge and echoes of credentials.
    for (name, value) in [
        ("Set-Cookie", "backend=1"),
        ("WWW-Authenticate", "Bearer realm=\"backend\""),
        ("Authorization", "Bearer reflected"),
        ("X-Api-Key", "reflected"),
        ("X-Auth-Token", "reflected"),
        ("X-Tenant", "reflected"),
        ("X-Backend-Note", "kept"),
    ] {
        third_party.set_response_header("/v1/chat", name, value);
    }
    let resp = corral.request(
        "POST",
        "/v1/chat/completions",
        &with_credentials(&[("X-Custom", "kept")]),
        &chat_body("mock-model"),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(served_by(&resp), "third-party", "failed over");
    for mock in [&first, &third_party] {
        let seen = last(mock, "/v1/chat/completions");
        for (name, _) in CLIENT_CREDENTIALS {
            assert_eq!(
                seen.header(name),
                None,
                "{} got the client's {name}",
                mock.name()
            );
        }
        assert_eq!(seen.header("x-custom"), Some("kept"));
    }
    for name in [
        "set-cookie",
        "www-authenticate",
        "authorization",
        "x-api-key",
        "x-auth-token",
        "x-tenant",
    ] {
        assert_eq!(resp.header(name), None, "{name} passed back");
    }
    assert_eq!(resp.header("x-backend-note"), Some("kept"));
}

#[test]
fn forward_client_credentials_passes_them_but_the_endpoints_auth_still_wins() {
    let mock = MockBackend::start_named(Persona::Vllm, "gpu");
    let corral = Scenario::new()
        .proxy("forward_client_credentials", "true")
        .mock_with(&mock, &[("auth", "{ type: bearer, token: endpoint-key }")])
        .start();
    corral.wait_all_healthy(1, WAIT);
    let resp = corral.request(
        "POST",
        "/v1/chat/completions",
        &with_credentials(&[]),
        &chat_body("mock-model"),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = last(&mock, "/v1/chat/completions");
    assert_eq!(seen.header("authorization"), Some("Bearer endpoint-key"));
    assert_eq!(seen.header("cookie"), Some("session=client"));
    assert_eq!(seen.header("x-api-key"), Some("client-api-key"));
    assert_eq!(seen.header("x-auth-token"), Some("client-token"));
}

// ## Olla's routing strategy (SPEC 3)

#[test]
fn ollas_routing_strategy_decides_what_an_unknown_model_gets() {
    let mock = MockBackend::start_named(Persona::Vllm, "gpu");
    let ask = |registry: &str| {
        let yaml = format!(
            "{}model_registry:\n  routing_strategy:\n{registry}",
            Scenario::new().mock(&mock).yaml()
        );
        let config = corral::config::parse(&yaml, "test", &|_| None).unwrap();
        let corral = Corral::start(config);
        corral.wait_all_healthy(1, WAIT);
        wait_until(WAIT, "models known", || !corral.model_names().is_empty());
        corral
            .post_json("/v1/chat/completions", &chat("nobody-has-this", false))
            .status
    };
    assert_eq!(ask("    type: strict\n"), 404);
    // Olla's optimistic rejects an unknown model unless it may fall back to every endpoint.
    assert_eq!(ask("    type: optimistic\n"), 404);
    assert_eq!(
        ask("    type: optimistic\n    options: { fallback_behavior: all }\n"),
        200
    );
}

// ## Every Olla backend type and provider prefix (SPEC 12)

/// A mock of `kind` built from the vLLM persona: routes at its root (`/health`, `/v1/*`) are
/// the persona's; the type's own health and model paths answer as that server does.
fn backend(kind: &str) -> MockBackend {
    let mock = MockBackend::start_named(Persona::Vllm, kind);
    let list = |model: &str| Behaviour::Canned {
        status: 200,
        content_type: "application/json",
        body: format!(r#"{{"object":"list","data":[{{"id":"{model}","object":"model"}}]}}"#),
    };
    let model = format!("{kind}-model");
    mock.set_models(&[model.as_str()]);
    match kind {
        "lemonade" => {
            mock.set_behaviour_for(
                "/api/v1/health",
                Behaviour::Canned {
                    status: 200,
                    content_type: "application/json",
                    body: r#"{"status":"ok"}"#.to_string(),
                },
            );
            mock.set_behaviour_for("/api/v1/models", list(&model));
        }
        "docker-model-runner" => mock.set_behaviour_for("/engines/v1/models", list(&model)),
        _ => {}
    }
    mock
}

#[test]
fn every_olla_backend_type_is_checked_discovered_and_routed_by_its_prefix() {
    // (type as written, provider prefix, health path, model path)
    let types = [
        ("lemonade", "lemonade", "/api/v1/health", "/api/v1/models"),
        ("litellm", "litellm", "/health", "/v1/models"),
        ("lmdeploy", "lmdeploy", "/health", "/v1/models"),
        ("dmr", "dmr", "/engines/v1/models", "/engines/v1/models"),
        ("omlx", "omlx", "/health", "/v1/models"),
        ("vllm-mlx", "vllm-mlx", "/health", "/v1/models"),
    ];
    let mocks: Vec<MockBackend> = types
        .iter()
        .map(|(kind, ..)| {
            backend(if *kind == "dmr" {
                "docker-model-runner"
            } else {
                kind
            })
        })
        .collect();
    let lm_studio = MockBackend::start_named(Persona::LmStudio, "lm-studio");
    lm_studio.set_models(&["lm-studio-model"]);
    let mut scenario = Scenario::new().discovery("model_discovery", "{ interval: 1s }");
    for ((kind, ..), mock) in types.iter().zip(&mocks) {
        scenario = scenario.endpoint(mock.name(), &mock.url(), kind);
    }
    let scenario = scenario.endpoint(lm_studio.name(), &lm_studio.url(), "lm_studio");
    let corral = scenario.start();
    corral.wait_all_healthy(types.len() + 1, WAIT);
    wait_until(WAIT, "every model list is discovered", || {
        corral.model_names().len() == types.len() + 1
    });

    for ((_, prefix, health, models), mock) in types.iter().zip(&mocks) {
        assert!(
            mock.count(health) > 0,
            "{}: no check on {health}",
            mock.name()
        );
        assert!(
            mock.count(models) > 0,
            "{}: no model list from {models}",
            mock.name()
        );
        let model = format!("{}-model", mock.name());
        let resp = corral.post_json(
            &format!("/olla/{prefix}/v1/chat/completions"),
            &chat(&model, false),
        );
        assert_eq!(resp.status, 200, "/olla/{prefix}: {}", resp.text());
        assert_eq!(served_by(&resp), mock.name(), "/olla/{prefix}");
        let kind = if mock.name() == "docker-model-runner" {
            "docker-model-runner"
        } else {
            mock.name()
        };
        assert_eq!(resp.header("x-olla-backend-type"), Some(kind));
    }
    // Olla's `lm_studio` spelling, as a type and as a prefix.
    let resp = corral.post_json(
        "/olla/lm_studio/v1/chat/completions",
        &chat("lm-studio-model", false),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(served_by(&resp), "lm-studio");
    assert_eq!(resp.header("x-olla-backend-type"), Some("lm-studio"));
    let endpoint = corral.endpoint("lm-studio");
    assert_eq!(endpoint["type"], "lm-studio", "{endpoint}");
    // A provider route never leaves its type: lemonade's model is not served under vllm-mlx.
    let resp = corral.post_json(
        "/olla/vllm-mlx/v1/chat/completions",
        &chat("lemonade-model", false),
    );
    assert_eq!(resp.status, 404, "{}", resp.text());
}

// ## Olla's own files (SPEC 3): the real ones, when a copy of Olla's repository is at hand

/// Olla's config files, from `$OLLA_REPO` (a checkout, or a bare mirror read with `git show`),
/// else the mirror this project's machines keep; `None` when neither is there.
fn olla_file(path: &str) -> Option<String> {
    let repo = std::env::var("OLLA_REPO")
        .unwrap_or_else(|_| "/work/.mirror/thushan+olla/repo".to_string());
    let repo = std::path::Path::new(&repo);
    if let Ok(text) = std::fs::read_to_string(repo.join(path)) {
        return Some(text);
    }
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["show", &format!("HEAD:{path}")])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn ollas_shipped_and_test_configs_load_when_available() {
    let files = [
        "config/config.yaml",
        "config.yaml",
        "test/manual/config.yaml",
        "test/manual/config.auth.yaml",
        "test/manual/config.sticky.yaml",
        "test/validate/config.validate.yaml",
        "test/validate/config.validate.limits.yaml",
    ];
    let env = |var: &str| (var == "AUTH_TOKEN").then(|| "tok".to_string());
    let mut loaded = 0;
    for path in files {
        let Some(text) = olla_file(path) else {
            continue;
        };
        let config = corral::config::parse(&text, path, &env).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            config
                .ignored_settings_warning()
                .is_some_and(|w| w.starts_with("ignored Olla setting")),
            "{path}"
        );
        loaded += 1;
    }
    if loaded == 0 {
        eprintln!("skipped: no copy of Olla's repository (set OLLA_REPO)");
    }
}

#[test]
fn ollas_default_file_starts_and_names_what_it_ignores() {
    let Some(text) = olla_file("config/config.yaml") else {
        eprintln!("skipped: no copy of Olla's repository (set OLLA_REPO)");
        return;
    };
    let f = write_config(&text);
    let out = run_corral(CORRAL, &["--check-config", f.to_str().unwrap()], &[], WAIT);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    for key in ["logging.output", "proxy.profile", "server.rate_limits"] {
        assert!(out.stderr.contains(key), "{key}: {}", out.stderr);
    }
}

#[test]
fn a_short_check_interval_alone_loads_with_a_warning() {
    // The reference's advice for local servers.
    let f = write_config(
        "endpoints:\n  - url: http://127.0.0.1:1\n    name: local\n    check_interval: 2s\n",
    );
    let out = run_corral(CORRAL, &["--check-config", f.to_str().unwrap()], &[], WAIT);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "warning: endpoints[0] (local): check_timeout 5s (the default) is not shorter than \
             check_interval 2s; using 1s (half the interval)"
        ),
        "{}",
        out.stderr
    );
    // An endpoint's own timeout that does not fit is still an error.
    let f = write_config(
        "endpoints:\n  - url: http://127.0.0.1:1\n    check_interval: 2s\n    check_timeout: 2s\n",
    );
    let out = run_corral(CORRAL, &["--check-config", f.to_str().unwrap()], &[], WAIT);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("endpoints[0].check_timeout: must be shorter than check_interval (2s)"),
        "{}",
        out.stderr
    );
}
