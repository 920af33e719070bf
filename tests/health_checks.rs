//! End-to-end health checking (SPEC 4): Corral in-process against mock backends on
//! 127.0.0.1:0, observed only through its HTTP API and the requests the mocks see; the built
//! binary where the log line is what is tested.

use std::time::{Duration, Instant};

use house::*;

const CORRAL: &str = env!("CARGO_BIN_EXE_corral");
const WAIT: Duration = Duration::from_secs(10);

fn gaps(times: &[Instant]) -> Vec<Duration> {
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

fn median(mut d: Vec<Duration>) -> Duration {
    d.sort();
    d[d.len() / 2]
}

/// (name, status) of every endpoint, by name.
fn statuses(corral: &Corral) -> Vec<(String, String)> {
    let mut s: Vec<(String, String)> = corral
        .endpoints()
        .iter()
        .map(|e| {
            let field = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (field("name"), field("status"))
        })
        .collect();
    s.sort();
    s
}

#[test]
fn first_check_is_immediate_and_each_endpoint_keeps_its_own_interval() {
    let fast = MockBackend::start_named(Persona::Vllm, "fast");
    let slow = MockBackend::start_named(Persona::Vllm, "slow");
    let lazy = MockBackend::start_named(Persona::Vllm, "lazy");
    let corral = Scenario::new()
        .mock_with(
            &fast,
            &[("check_interval", "100ms"), ("check_timeout", "50ms")],
        )
        .mock_with(
            &slow,
            &[("check_interval", "300ms"), ("check_timeout", "50ms")],
        )
        .mock_with(&lazy, &[("check_interval", "30s"), ("check_timeout", "1s")])
        .start();
    wait_until(WAIT, "every endpoint healthy", || {
        statuses(&corral)
            == vec![
                ("fast".into(), "healthy".into()),
                ("lazy".into(), "healthy".into()),
                ("slow".into(), "healthy".into()),
            ]
    });
    assert_eq!(
        lazy.count("/health"),
        1,
        "one immediate check, the next one 30s later"
    );

    wait_until(WAIT, "12 checks of the slow endpoint", || {
        slow.count("/health") >= 12
    });
    let fast_gaps = gaps(&fast.times("/health"));
    let slow_gaps = gaps(&slow.times("/health"));
    assert!(
        fast_gaps.len() >= 20,
        "fast endpoint checked ~3x as often: {}",
        fast_gaps.len()
    );
    assert!(
        fast_gaps.iter().all(|g| *g >= Duration::from_millis(95)),
        "never early: {fast_gaps:?}"
    );
    assert!(
        slow_gaps.iter().all(|g| *g >= Duration::from_millis(295)),
        "never early: {slow_gaps:?}"
    );
    let (fm, sm) = (median(fast_gaps), median(slow_gaps));
    assert!(fm < Duration::from_millis(170), "fast median {fm:?}");
    assert!(sm < Duration::from_millis(400), "slow median {sm:?}");
}

#[test]
fn failing_backend_backs_off_exponentially() {
    let mock = MockBackend::start(Persona::Vllm);
    let corral = Scenario::new()
        .endpoint_with(
            "b",
            &mock.url(),
            "vllm",
            &[
                ("check_interval", "100ms"),
                ("check_timeout", "50ms"),
                (
                    "circuit_breaker",
                    "{ failure_threshold: 20, open_duration: 1s }",
                ),
            ],
        )
        .start();
    corral.wait_status("b", "healthy", WAIT);
    mock.set_behaviour(Behaviour::Status(503));
    corral.wait_status("b", "unhealthy", WAIT);
    mock.clear_log();
    // After the log was cleared the failures continue: 2nd..6th failures wait 200, 400, 800, 1200, 1200.
    wait_until(WAIT, "5 more failed checks", || mock.count("/health") >= 5);
    let g = gaps(&mock.times("/health"));
    let waits: Vec<u128> = g.iter().map(|d| d.as_millis()).collect();
    // Every gap is one of the sequence's steps (100·{1,2,4,8,12}) plus a little latency, and
    // each is at least as long as the one before.
    let steps = [100u128, 200, 400, 800, 1200];
    for w in &waits {
        assert!(
            steps.iter().any(|s| *w >= *s && *w < s + s / 2 + 60),
            "gap {w}ms is no backoff step: {waits:?}"
        );
    }
    assert!(
        waits.windows(2).all(|p| p[1] + 20 >= p[0]),
        "non-decreasing: {waits:?}"
    );
    assert!(
        *waits.last().unwrap() >= 800,
        "reaches the long waits: {waits:?}"
    );

    let e = corral.endpoint("b");
    assert_eq!(e["error"], "http 503");
    assert!(e["consecutive_failures"].as_u64().unwrap() >= 5);
    assert_eq!(e["backoff_multiplier"], 12);
}

#[test]
fn recovery_goes_through_recovering_and_refreshes_models() {
    let mock = MockBackend::start(Persona::Vllm);
    mock.set_models(&["old-model"]);
    let corral = Scenario::new()
        .endpoint_with(
            "b",
            &mock.url(),
            "vllm",
            &[
                ("check_interval", "100ms"),
                ("check_timeout", "50ms"),
                ("max_backoff", "300ms"),
            ],
        )
        .spawn(CORRAL);
    wait_until(WAIT, "old-model discovered", || {
        corral.model_names() == vec!["old-model"]
    });
    mock.refuse();
    corral.wait_status("b", "unhealthy", WAIT);
    assert_eq!(corral.endpoint("b")["error"], "connection refused");
    mock.set_models(&["new-model"]);
    let models_fetches_before = mock.count("/v1/models");
    mock.restore();
    corral.wait_status("b", "healthy", WAIT);
    assert!(
        corral.wait_for_log("from=unhealthy to=recovering", WAIT),
        "{}",
        corral.logs()
    );
    assert!(
        corral.wait_for_log("from=recovering to=healthy", WAIT),
        "{}",
        corral.logs()
    );
    // The discovery interval is 5m: only the recovery can have fetched the list again.
    wait_until(WAIT, "new-model after recovery", || {
        corral.model_names() == vec!["new-model"]
    });
    assert!(mock.count("/v1/models") > models_fetches_before);
}

#[test]
fn health_breaker_opens_after_three_failures_then_half_opens() {
    let mock = MockBackend::start(Persona::Vllm);
    mock.set_behaviour(Behaviour::Status(500));
    let corral = Scenario::new()
        .endpoint_with(
            "b",
            &mock.url(),
            "vllm",
            &[
                ("check_interval", "100ms"),
                ("check_timeout", "50ms"),
                (
                    "circuit_breaker",
                    "{ failure_threshold: 3, open_duration: 1500ms }",
                ),
            ],
        )
        .spawn(CORRAL);
    let e = wait_for(WAIT, "breaker open", || {
        let e = corral.endpoint("b");
        (e["circuit_breaker"]["health"]["state"] == "open").then_some(e)
    });
    assert_eq!(e["circuit_breaker"]["health"]["failures"], 3);
    assert!(
        e["circuit_breaker"]["health"]["half_open_at"].is_string(),
        "{e}"
    );
    assert_eq!(e["status"], "unhealthy");
    wait_until(WAIT, "the half-open probe", || mock.count("/health") >= 4);
    let g = gaps(&mock.times("/health"));
    // Failures 1 and 2 back off (100, 200 ms); the third opens the breaker: no probe for 1.5s.
    assert!(
        g[2] >= Duration::from_millis(1500),
        "no probe while open: {g:?}"
    );
    mock.set_behaviour(Behaviour::Up);
    wait_until(WAIT, "breaker closed", || {
        let e = corral.endpoint("b");
        e["circuit_breaker"]["health"]["state"] == "closed" && e["status"] != "unhealthy"
    });
    assert!(corral.wait_for_log("health breaker closed", WAIT));
}

#[test]
fn slow_checks_are_degraded_and_timeouts_are_exact() {
    let slow = MockBackend::start_named(Persona::Vllm, "slow");
    slow.set_behaviour(Behaviour::Slow(Duration::from_millis(150)));
    let hang = MockBackend::start_named(Persona::Vllm, "hang");
    hang.set_behaviour(Behaviour::Hang);
    let corral = Scenario::new()
        .mock_with(
            &slow,
            &[
                ("check_interval", "300ms"),
                ("check_timeout", "250ms"),
                ("degraded_latency", "50ms"),
            ],
        )
        .mock_with(
            &hang,
            &[("check_interval", "1s"), ("check_timeout", "250ms")],
        )
        .start();
    corral.wait_status("slow", "degraded", WAIT);
    let h = wait_for(WAIT, "hang timed out", || {
        let e = corral.endpoint("hang");
        (e["status"] == "unhealthy").then_some(e)
    });
    assert_eq!(h["error"], "timeout");
    let latency = humantime::parse_duration(h["last_latency"].as_str().unwrap()).unwrap();
    assert!(
        latency >= Duration::from_millis(250) && latency < Duration::from_millis(450),
        "deadline held exactly: {latency:?}"
    );
    slow.set_behaviour(Behaviour::Up);
    corral.wait_status("slow", "healthy", WAIT);
    assert_eq!(
        slow.peak_in_flight(),
        1,
        "checks of one endpoint never overlap"
    );
    let ua = slow.requests()[0].header("user-agent").map(str::to_string);
    assert_eq!(
        ua.as_deref(),
        Some(concat!("corral-health/", env!("CARGO_PKG_VERSION")))
    );
}

#[test]
fn models_are_refreshed_every_discovery_interval_while_routable() {
    let mock = MockBackend::start(Persona::Vllm);
    mock.set_models(&["first"]);
    let corral = Scenario::new()
        .discovery("model_discovery", "{ interval: 300ms, timeout: 200ms }")
        .endpoint_with(
            "b",
            &mock.url(),
            "vllm",
            &[("check_interval", "100ms"), ("check_timeout", "50ms")],
        )
        .spawn(CORRAL);
    wait_until(WAIT, "first", || corral.model_names() == vec!["first"]);
    mock.set_models(&["second", "third"]);
    // No recovery happens here: only the periodic refresh can bring the new list.
    wait_until(WAIT, "refreshed list", || {
        corral.model_names() == vec!["second", "third"]
    });
    assert_eq!(corral.endpoint("b")["status"], "healthy");
    assert_eq!(corral.count_log("models discovered"), 2);
}

#[test]
fn credentials_and_rate_limits_do_not_trip_the_breaker() {
    let auth = MockBackend::start_named(Persona::Vllm, "auth");
    auth.set_behaviour(Behaviour::Status(401));
    let limited = MockBackend::start_named(Persona::Vllm, "limited");
    limited.set_behaviour(Behaviour::StatusWithRetryAfter(429, Some("1".into())));
    let corral = Scenario::new()
        .mock_with(
            &auth,
            &[
                ("check_interval", "100ms"),
                ("check_timeout", "50ms"),
                ("max_backoff", "200ms"),
            ],
        )
        .mock_with(
            &limited,
            &[("check_interval", "100ms"), ("check_timeout", "50ms")],
        )
        .start();
    wait_until(WAIT, "5 failed credential checks", || {
        auth.count("/health") >= 5
    });
    let a = corral.endpoint("auth");
    assert_eq!(a["status"], "unhealthy");
    assert_eq!(a["error"], "http 401 (check credentials)");
    assert_eq!(a["circuit_breaker"]["health"]["state"], "closed");
    assert_eq!(a["circuit_breaker"]["health"]["failures"], 0);

    wait_until(WAIT, "a second rate-limited probe", || {
        limited.count("/health") >= 2
    });
    let l = corral.endpoint("limited");
    assert_eq!(l["error"], "rate limited");
    let g = gaps(&limited.times("/health"));
    assert!(
        g[0] >= Duration::from_secs(1),
        "waited for Retry-After, not the 100ms interval: {g:?}"
    );
}

#[test]
fn missing_default_health_path_falls_back_to_model_url() {
    let guessed = MockBackend::start_named(Persona::OpenAiNoHealth, "guessed");
    let configured = MockBackend::start_named(Persona::OpenAiNoHealth, "configured");
    let corral = Scenario::new()
        .endpoint_with(
            "guessed",
            &guessed.url(),
            "llamacpp",
            &[("check_interval", "100ms"), ("check_timeout", "50ms")],
        )
        .endpoint_with(
            "configured",
            &configured.url(),
            "llamacpp",
            &[
                ("check_interval", "100ms"),
                ("check_timeout", "50ms"),
                ("health_check_url", "/health"),
            ],
        )
        .spawn(CORRAL);
    corral.wait_status("guessed", "healthy", WAIT);
    assert!(
        corral.wait_for_log(
            "endpoint guessed: no /health here; checking /v1/models instead",
            WAIT
        ),
        "{}",
        corral.logs()
    );
    let e = wait_for(WAIT, "configured unhealthy", || {
        let e = corral.endpoint("configured");
        (e["status"] == "unhealthy").then_some(e)
    });
    assert_eq!(
        e["error"], "http 404",
        "a configured path is never second-guessed"
    );
    // The fallback is logged once, and later probes go straight to the model list.
    let before = guessed.count("/health");
    wait_until(WAIT, "more probes", || {
        guessed.count("/v1/models") >= before + 3
    });
    assert_eq!(guessed.count("/health"), before);
    assert_eq!(corral.logs().matches("no /health here").count(), 1);
}

#[test]
fn models_are_discovered_in_each_format() {
    let ollama = MockBackend::start(Persona::Ollama);
    ollama.set_models(&["llama3:8b", "shared"]);
    let lmstudio = MockBackend::start(Persona::LmStudio);
    lmstudio.set_models(&["qwen2-7b", "shared"]);
    let vllm = MockBackend::start(Persona::Vllm);
    vllm.set_models(&["Qwen/Qwen2.5-7B"]);
    let corral = Scenario::new()
        .endpoint_with(
            "ollama",
            &ollama.url(),
            "ollama",
            &[("check_interval", "200ms"), ("check_timeout", "100ms")],
        )
        .endpoint_with(
            "lmstudio",
            &lmstudio.url(),
            "lm-studio",
            &[("check_interval", "200ms"), ("check_timeout", "100ms")],
        )
        .endpoint_with(
            "vllm",
            &vllm.url(),
            "vllm",
            &[("check_interval", "200ms"), ("check_timeout", "100ms")],
        )
        .start();
    wait_until(WAIT, "all models", || corral.model_names().len() == 4);
    let (_, body) = corral.get_json("/internal/status/models");
    let shared = body["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "shared")
        .unwrap();
    assert_eq!(
        shared["endpoints"],
        serde_json::json!(["lmstudio", "ollama"])
    );
    assert_eq!(
        shared["routable_endpoints"],
        serde_json::json!(["lmstudio", "ollama"])
    );
    assert!(ollama.count("/api/tags") >= 1);
    assert!(lmstudio.count("/api/v0/models") >= 1);
    assert_eq!(corral.endpoint("ollama")["models"], 2);
}

#[test]
fn require_models_and_disabled_health_checks() {
    let empty = MockBackend::start_named(Persona::Vllm, "empty");
    empty.set_models(&[]);
    let remote = MockBackend::start_named(Persona::Vllm, "remote");
    remote.set_models(&["gpt-remote"]);
    let corral = Scenario::new()
        .mock_with(
            &empty,
            &[
                ("check_interval", "100ms"),
                ("check_timeout", "50ms"),
                ("require_models", "true"),
                ("max_backoff", "200ms"),
            ],
        )
        .endpoint_with(
            "remote",
            &remote.url(),
            "openai-compatible",
            &[
                ("check_interval", "100ms"),
                ("check_timeout", "50ms"),
                ("health_checks", "false"),
            ],
        )
        .start();
    let e = wait_for(WAIT, "empty unhealthy", || {
        let e = corral.endpoint("empty");
        (e["status"] == "unhealthy").then_some(e)
    });
    assert!(e["error"].as_str().unwrap().starts_with("no models"), "{e}");
    empty.set_models(&["arrived"]);
    wait_until(WAIT, "empty passes once a model is listed", || {
        corral.status_of("empty") != "unhealthy"
    });

    assert_eq!(corral.status_of("remote"), "healthy");
    wait_until(WAIT, "remote's models discovered", || {
        corral.model_names().contains(&"gpt-remote".to_string())
    });
    assert!(
        remote.requests().iter().all(|r| r.path == "/v1/models"),
        "never probed, only listed"
    );
    assert_eq!(corral.endpoint("remote")["health_checks"], false);
}

#[test]
fn status_api_reports_every_field() {
    let up = MockBackend::start_named(Persona::Vllm, "up");
    let down = MockBackend::start_named(Persona::Vllm, "down");
    down.refuse();
    let corral = Scenario::new()
        .mock_with(
            &up,
            &[
                ("check_interval", "150ms"),
                ("check_timeout", "100ms"),
                ("priority", "50"),
            ],
        )
        .mock_with(
            &down,
            &[
                ("check_interval", "150ms"),
                ("check_timeout", "100ms"),
                ("priority", "100"),
            ],
        )
        .start();
    wait_until(WAIT, "first checks", || {
        let (_, h) = corral.get_json("/internal/health");
        h["status"] == "healthy"
    });
    let (code, health) = corral.get_json("/internal/health");
    assert_eq!(code, 200);
    assert_eq!(health["endpoints"]["healthy"], 1);
    assert_eq!(health["endpoints"]["unhealthy"], 1);
    assert_eq!(health["endpoints"]["total"], 2);
    assert!(health["uptime"].is_string() && health["version"].is_string());
    assert_eq!(corral.get_json("/internal/ready").0, 200);

    let (_, body) = corral.get_json("/internal/status/endpoints");
    let list = body["endpoints"].as_array().unwrap();
    assert_eq!(list[0]["name"], "down", "sorted by priority, highest first");
    let u = &list[1];
    for field in [
        "name",
        "url",
        "type",
        "priority",
        "status",
        "last_check",
        "last_latency",
        "consecutive_failures",
        "uptime_percentage",
        "next_check",
        "check_interval",
        "check_timeout",
        "backoff_multiplier",
        "circuit_breaker",
        "models",
        "in_flight",
        "requests",
        "restarts",
    ] {
        assert!(!u[field].is_null(), "field {field} missing in {u}");
    }
    assert!(
        u.get("error").is_none(),
        "no error field while healthy: {u}"
    );
    assert_eq!(u["type"], "vllm");
    assert_eq!(u["check_interval"], "150ms");
    assert_eq!(u["uptime_percentage"], 100.0);
    assert!(humantime::parse_rfc3339(u["last_check"].as_str().unwrap()).is_ok());
    assert!(humantime::parse_rfc3339(u["next_check"].as_str().unwrap()).is_ok());
    assert_eq!(u["circuit_breaker"]["proxy"]["state"], "closed");
    let d = &list[0];
    assert_eq!(d["error"], "connection refused");
    assert_eq!(d["uptime_percentage"], 0.0);

    let (_, status) = corral.get_json("/internal/status");
    for field in [
        "version",
        "uptime",
        "started_at",
        "config",
        "endpoints",
        "requests",
        "endpoint_details",
    ] {
        assert!(
            !status[field].is_null(),
            "field {field} missing in {status}"
        );
    }
    assert_eq!(status["config"]["load_balancer"], "priority");
    assert_eq!(status["endpoint_details"].as_array().unwrap().len(), 2);
    let (_, version) = corral.get_json("/version");
    assert_eq!(version["name"], "corral");

    up.refuse();
    wait_until(WAIT, "none routable", || {
        corral.get_json("/internal/ready").0 == 503
    });
    let (code, health) = corral.get_json("/internal/health");
    assert_eq!((code, health["status"].as_str()), (200, Some("unhealthy")));
}
