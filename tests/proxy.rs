//! End-to-end proxying (SPEC 5): routes, forwarding, streaming, endpoint choice, failover and
//! the proxy breaker — Corral in-process between the test's client and mock backends; the
//! built binary where a log line or a signal is the point.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use house::*;
use serde_json::{json, Value};

const CORRAL: &str = env!("CARGO_BIN_EXE_corral");
const WAIT: Duration = Duration::from_secs(10);

#[test]
fn each_route_reaches_its_backend_type_and_listings_come_from_the_registry() {
    let ollama = MockBackend::start_named(Persona::Ollama, "ollama-1");
    ollama.set_models(&["llama3:8b"]);
    let vllm = MockBackend::start_named(Persona::Vllm, "vllm-1");
    vllm.set_models(&["qwen"]);
    let lms = MockBackend::start_named(Persona::LmStudio, "lms-1");
    lms.set_models(&["phi"]);
    let corral = Scenario::new().mock(&ollama).mock(&vllm).mock(&lms).start();
    corral.wait_all_healthy(3, WAIT);
    wait_until(WAIT, "models known", || {
        corral.get_json("/v1/models").1["data"]
            .as_array()
            .is_some_and(|d| d.len() == 3)
    });

    let cases = [
        (
            "/olla/ollama/api/chat",
            "llama3:8b",
            "ollama-1",
            "/api/chat",
        ),
        ("/api/chat", "llama3:8b", "ollama-1", "/api/chat"),
        (
            "/olla/vllm/v1/chat/completions",
            "qwen",
            "vllm-1",
            "/v1/chat/completions",
        ),
        (
            "/olla/lmstudio/v1/chat/completions",
            "phi",
            "lms-1",
            "/v1/chat/completions",
        ),
        (
            "/olla/lm-studio/v1/chat/completions",
            "phi",
            "lms-1",
            "/v1/chat/completions",
        ),
        (
            "/v1/chat/completions",
            "qwen",
            "vllm-1",
            "/v1/chat/completions",
        ),
        (
            "/olla/openai/v1/chat/completions",
            "llama3:8b",
            "ollama-1",
            "/v1/chat/completions",
        ),
        (
            "/olla/openai-compatible/v1/chat/completions",
            "phi",
            "lms-1",
            "/v1/chat/completions",
        ),
        (
            "/olla/proxy/v1/chat/completions",
            "phi",
            "lms-1",
            "/v1/chat/completions",
        ),
    ];
    for (path, model, backend, upstream) in cases {
        let before = [&ollama, &vllm, &lms]
            .iter()
            .map(|m| m.count(upstream))
            .sum::<usize>();
        let resp = corral.post_json(path, &chat(model, false));
        assert_eq!(resp.status, 200, "{path}: {}", resp.text());
        assert_eq!(served_by(&resp), backend, "{path}");
        assert_eq!(resp.header("x-mock-backend"), Some(backend), "{path}");
        let after = [&ollama, &vllm, &lms]
            .iter()
            .map(|m| m.count(upstream))
            .sum::<usize>();
        assert_eq!(after, before + 1, "{path} arrived as {upstream}");
    }
    // A provider route never crosses to another type, even for a model it lacks.
    let resp = corral.post_json("/olla/vllm/v1/chat/completions", &chat("phi", false));
    assert_eq!(resp.status, 404, "{}", resp.text());
    assert_eq!(resp.json()["error"], "model_not_found");
    let resp = corral.post_json("/olla/bogus/v1/chat/completions", &chat("phi", false));
    assert_eq!(resp.status, 404);
    assert_eq!(resp.json()["error"], "unknown_provider");

    // Listings: from the registry, per provider, in each format.
    let ids = |v: Value| -> Vec<String> {
        let mut ids: Vec<String> = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(
        ids(corral.get_json("/v1/models").1),
        vec!["llama3:8b", "phi", "qwen"]
    );
    assert_eq!(ids(corral.get_json("/olla/vllm/v1/models").1), vec!["qwen"]);
    assert_eq!(
        ids(corral.get_json("/olla/lmstudio/v1/models").1),
        vec!["phi"]
    );
    let tags = corral.get_json("/api/tags").1;
    assert_eq!(tags["models"].as_array().unwrap().len(), 1);
    assert_eq!(tags["models"][0]["name"], "llama3:8b");
    assert_eq!(corral.get_json("/olla/ollama/api/tags").1, tags);
    let unified = corral.get_json("/olla/models").1;
    assert_eq!(unified["data"].as_array().unwrap().len(), 3);
    assert_eq!(
        ollama.count("/api/tags"),
        ollama.count("/api/tags"),
        "listings are not proxied"
    );
    let tags_fetches = ollama.count("/api/tags");
    corral.get("/api/tags");
    assert_eq!(
        ollama.count("/api/tags"),
        tags_fetches,
        "listings are answered by Corral"
    );

    // Only routable endpoints' models are listed.
    vllm.refuse();
    corral.wait_status("vllm-1", "unhealthy", WAIT);
    assert_eq!(
        ids(corral.get_json("/v1/models").1),
        vec!["llama3:8b", "phi"]
    );
}

#[test]
fn headers_are_rewritten_both_ways() {
    let mock = MockBackend::start_named(Persona::Vllm, "gpu");
    let corral = Scenario::new()
        .mock_with(
            &mock,
            &[("headers", "{ Authorization: \"Bearer ${GPU_KEY}\" }")],
        )
        .env("GPU_KEY", "k-123")
        .start();
    corral.wait_all_healthy(1, WAIT);
    let resp = corral.request(
        "POST",
        "/v1/chat/completions?trace=1",
        &[
            ("Content-Type", "application/json"),
            ("Connection", "keep-alive, X-Drop-Me"),
            ("X-Drop-Me", "secret"),
            ("Keep-Alive", "timeout=5"),
            ("X-Forwarded-For", "10.1.2.3"),
            ("Authorization", "Bearer client"),
            ("X-Request-ID", "req-42"),
            ("X-Custom", "kept"),
        ],
        chat("mock-model", false).to_string().as_bytes(),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = mock
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.path == "/v1/chat/completions")
        .unwrap();
    assert_eq!(seen.query, "trace=1");
    assert_eq!(
        seen.header("host"),
        Some(format!("127.0.0.1:{}", mock.port()).as_str())
    );
    assert_eq!(seen.header("x-forwarded-for"), Some("10.1.2.3, 127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("x-forwarded-host"), Some(corral.authority()));
    assert_eq!(seen.header("via"), Some("1.1 corral"));
    assert_eq!(
        seen.header("authorization"),
        Some("Bearer k-123"),
        "endpoint headers win"
    );
    assert_eq!(seen.header("x-custom"), Some("kept"));
    assert_eq!(seen.header("x-drop-me"), None, "named in Connection");
    assert_eq!(seen.header("keep-alive"), None, "hop-by-hop");
    assert_eq!(seen.json()["model"], "mock-model", "body forwarded intact");

    assert_eq!(resp.header("x-olla-endpoint"), Some("gpu"));
    assert_eq!(resp.header("x-olla-backend-type"), Some("vllm"));
    assert_eq!(resp.header("x-olla-model"), Some("mock-model"));
    assert_eq!(resp.header("x-olla-request-id"), Some("req-42"));
    let took = resp.header("x-olla-response-time").unwrap();
    assert!(humantime::parse_duration(took).is_ok(), "{took}");
    let generated = corral.request("GET", "/v1/anything", &[("X-Request-ID", "bad id!")], b"");
    assert_ne!(generated.header("x-olla-request-id"), Some("bad id!"));
    assert!(generated
        .header("x-olla-request-id")
        .is_some_and(|id| id.len() >= 16));
}

#[test]
fn bad_requests_get_json_4xx() {
    let mock = MockBackend::start_named(Persona::Vllm, "gpu");
    let corral = Scenario::new()
        .server("max_body_size", "64KiB")
        .server("max_header_size", "8KiB")
        .mock(&mock)
        .start();
    corral.wait_all_healthy(1, WAIT);
    let before = mock.count_prefix("/v1/chat");

    let big = vec![b'x'; 70 * 1024];
    let resp = corral.request(
        "POST",
        "/v1/chat/completions",
        &[("Content-Type", "text/plain")],
        &big,
    );
    assert_eq!(resp.status, 413);
    assert_eq!(resp.json()["error"], "body_too_large");

    let huge_header = "h".repeat(9 * 1024);
    let resp = corral.request(
        "GET",
        "/v1/models/x",
        &[("X-Big", huge_header.as_str())],
        b"",
    );
    assert_eq!(resp.status, 431);
    assert_eq!(resp.json()["error"], "headers_too_large");

    let resp = corral.request(
        "POST",
        "/v1/chat/completions",
        &[("Content-Type", "application/json")],
        br#"{"model": "x",,}"#,
    );
    assert_eq!(resp.status, 400);
    assert_eq!(resp.json()["error"], "invalid_json");

    for path in [
        "/olla/vllm/%2e%2e/etc/passwd",
        "/v1/..%2Fsecret",
        "/olla/proxy/a/%252e%252e/b",
    ] {
        let resp = corral.request("GET", path, &[], b"");
        assert_eq!(resp.status, 400, "{path}: {}", resp.text());
        assert_eq!(resp.json()["error"], "path_traversal", "{path}");
    }
    assert_eq!(
        mock.count_prefix("/v1/chat"),
        before,
        "nothing bad reached the backend"
    );
    assert_eq!(corral.get("/internal/health").status, 200, "still serving");
}

#[test]
fn model_routing_strict_and_optimistic() {
    let a = MockBackend::start_named(Persona::Vllm, "a");
    a.set_models(&["alpha"]);
    let b = MockBackend::start_named(Persona::Vllm, "b");
    b.set_models(&["beta"]);
    let corral = Scenario::new().mock(&a).mock(&b).start();
    corral.wait_all_healthy(2, WAIT);
    wait_until(WAIT, "models known", || {
        corral.get_json("/v1/models").1["data"]
            .as_array()
            .is_some_and(|d| d.len() == 2)
    });
    for _ in 0..4 {
        let resp = corral.post_json("/v1/chat/completions", &chat("beta", false));
        assert_eq!((resp.status, served_by(&resp)), (200, "b".to_string()));
    }
    // `curl -d` labels JSON as a form: the model is still read and routed on.
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let body = chat("beta", false).to_string();
    let resp = corral.request("POST", "/v1/chat/completions", &form, body.as_bytes());
    assert_eq!((resp.status, served_by(&resp)), (200, "b".to_string()));
    let resp = corral.post_json("/v1/chat/completions", &chat("gamma", false));
    assert_eq!(resp.status, 404);
    assert_eq!(resp.json()["error"], "model_not_found");
    assert_eq!(resp.json()["model"], "gamma");
    b.refuse();
    corral.wait_status("b", "unhealthy", WAIT);
    let resp = corral.post_json("/v1/chat/completions", &chat("beta", false));
    assert_eq!(resp.status, 503);
    assert_eq!(resp.json()["error"], "model_unavailable");
    a.refuse();
    corral.wait_status("a", "unhealthy", WAIT);
    let started = Instant::now();
    let resp = corral.request("GET", "/v1/whatever", &[], b"");
    assert_eq!(resp.status, 503);
    assert_eq!(resp.json()["error"], "no_healthy_endpoints");
    assert_eq!(resp.json()["route"], "openai");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "answered at once"
    );

    // Optimistic: a model nobody lists still goes to a routable endpoint.
    let c = MockBackend::start_named(Persona::Vllm, "c");
    c.set_models(&["gamma"]);
    let opt = Scenario::new()
        .proxy("routing_strategy", "optimistic")
        .mock(&c)
        .start();
    opt.wait_all_healthy(1, WAIT);
    let resp = opt.post_json("/v1/chat/completions", &chat("unlisted", false));
    assert_eq!((resp.status, served_by(&resp)), (200, "c".to_string()));
}

#[test]
fn priority_backup_takes_over_with_zero_errors_and_traffic_returns() {
    let primary = MockBackend::start_named(Persona::Vllm, "primary");
    let backup = MockBackend::start_named(Persona::Vllm, "backup");
    let corral = Scenario::new()
        // Checks 2 s apart: the first request after the crash, not a check, is what finds it
        // (a 200 ms check could beat the request and leave nothing to fail over).
        .mock_with(
            &primary,
            &[
                ("priority", "100"),
                ("check_interval", "2s"),
                ("check_timeout", "1s"),
                ("recovery_successes", "1"),
            ],
        )
        .mock_with(&backup, &[("priority", "50")])
        .start();
    corral.wait_all_healthy(2, WAIT);
    for _ in 0..5 {
        assert_eq!(
            served_by(&corral.post_json("/v1/chat/completions", &chat("mock-model", false))),
            "primary"
        );
    }
    primary.refuse();
    // The first request after the crash fails over and marks the primary unhealthy at once.
    let resp = corral.post_json("/v1/chat/completions", &chat("mock-model", false));
    assert_eq!((resp.status, served_by(&resp)), (200, "backup".to_string()));
    let p = corral.endpoint("primary");
    assert_eq!(p["status"], "unhealthy", "{p}");
    assert_eq!(p["error"], "connection refused");
    for _ in 0..10 {
        let resp = corral.post_json("/v1/chat/completions", &chat("mock-model", false));
        assert_eq!((resp.status, served_by(&resp)), (200, "backup".to_string()));
    }
    primary.restore();
    corral.wait_status("primary", "healthy", WAIT);
    let resp = corral.post_json("/v1/chat/completions", &chat("mock-model", false));
    assert_eq!(
        served_by(&resp),
        "primary",
        "traffic returns to the primary"
    );
    let (_, status) = corral.get_json("/internal/status");
    assert!(
        status["requests"]["retried"].as_u64().unwrap() >= 1,
        "{status}"
    );
}

#[test]
fn retryable_statuses_fail_over_and_all_failures_are_reported() {
    let a = MockBackend::start_named(Persona::Vllm, "a");
    let b = MockBackend::start_named(Persona::Vllm, "b");
    // Checks every 30s: after the first (immediate) one, only requests change what Corral
    // knows, so both endpoints are still candidates when they start refusing below.
    let corral = Scenario::new()
        .proxy("load_balancer", "round-robin")
        .health("check_interval", "30s")
        .health("check_timeout", "1s")
        .mock(&a)
        .mock(&b)
        .start();
    corral.wait_all_healthy(2, WAIT);
    // Only the chat route answers 503; health checks keep passing.
    a.set_behaviour_for("/v1/chat", Behaviour::Status(503));
    for _ in 0..4 {
        let resp = corral.post_json("/v1/chat/completions", &chat("mock-model", false));
        assert_eq!(
            (resp.status, served_by(&resp)),
            (200, "b".to_string()),
            "{}",
            resp.text()
        );
    }
    // Every candidate answers 503: the client gets the last upstream answer.
    b.set_behaviour_for("/v1/chat", Behaviour::Status(503));
    let resp = corral.post_json("/v1/chat/completions", &chat("mock-model", false));
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert!(resp.header("x-olla-endpoint").is_some());
    // Every candidate refuses: 502 with the attempts.
    a.clear_overrides();
    b.clear_overrides();
    a.refuse();
    b.refuse();
    // Both are still candidates (no check has run since the first), so both are tried:
    // SPEC 5.4, no upstream response at all -> 502 with the attempts.
    let resp = corral.post_json("/v1/chat/completions", &chat("mock-model", false));
    assert_eq!(resp.status, 502, "{}", resp.text());
    let body = resp.json();
    assert_eq!(body["error"], "all_endpoints_failed");
    assert!(!body["attempts"].as_array().unwrap().is_empty(), "{body}");
    // Each refusal marks its endpoint unhealthy (4.2; no check runs for 30s), and then the
    // model is listed only on endpoints out of rotation (5.3).
    for name in ["a", "b"] {
        corral.wait_status(name, "unhealthy", WAIT);
    }
    let resp = corral.post_json("/v1/chat/completions", &chat("mock-model", false));
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert_eq!(resp.json()["error"], "model_unavailable");
}

#[test]
fn proxy_breaker_opens_after_five_failures_and_closes_after_a_test_request() {
    let flaky = MockBackend::start_named(Persona::Vllm, "flaky");
    let steady = MockBackend::start_named(Persona::Vllm, "steady");
    let corral = Scenario::new()
        .proxy(
            "circuit_breaker",
            "{ failure_threshold: 5, open_duration: 1500ms }",
        )
        .mock_with(&flaky, &[("priority", "100")])
        .mock_with(&steady, &[("priority", "50")])
        .spawn(CORRAL);
    corral.wait_all_healthy(2, WAIT);
    flaky.set_behaviour_for("/v1/chat", Behaviour::Status(502));
    // Each request meets flaky's 502 first and fails over; the fifth failure opens the breaker.
    let f = wait_for(WAIT, "breaker open", || {
        let resp = corral.post_json("/v1/chat/completions", &chat("mock-model", false));
        assert_eq!((resp.status, served_by(&resp)), (200, "steady".to_string()));
        let f = corral.endpoint("flaky");
        (f["circuit_breaker"]["proxy"]["state"] == "open").then_some(f)
    });
    assert_eq!(f["status"], "unhealthy");
    assert_eq!(f["error"], "circuit open");
    assert_eq!(f["circuit_breaker"]["proxy"]["failures"], 5);
    assert!(f["circuit_breaker"]["proxy"]["half_open_at"].is_string());
    assert!(corral.wait_for_log("proxy breaker open", WAIT));
    // While open, the endpoint gets no traffic at all (and no 502 because of it).
    let hits = flaky.count("/v1/chat/completions");
    for _ in 0..5 {
        let resp = corral.post_json("/v1/chat/completions", &chat("mock-model", false));
        assert_eq!((resp.status, served_by(&resp)), (200, "steady".to_string()));
    }
    assert_eq!(flaky.count("/v1/chat/completions"), hits);
    // It heals; after open_duration the breaker half-opens and one success closes it.
    flaky.clear_overrides();
    wait_until(WAIT, "breaker closed", || {
        corral.endpoint("flaky")["circuit_breaker"]["proxy"]["state"] == "closed"
    });
    wait_until(WAIT, "flaky serves again", || {
        served_by(&corral.post_json("/v1/chat/completions", &chat("mock-model", false))) == "flaky"
    });
    assert!(corral.wait_for_log("proxy breaker closed", WAIT));
}

#[test]
fn response_header_timeout_is_504_and_not_retried() {
    let slow = MockBackend::start_named(Persona::Vllm, "slow");
    let spare = MockBackend::start_named(Persona::Vllm, "spare");
    let corral = Scenario::new()
        .proxy("response_header_timeout", "300ms")
        .mock_with(&slow, &[("priority", "100")])
        .mock_with(&spare, &[("priority", "10")])
        .start();
    corral.wait_all_healthy(2, WAIT);
    slow.set_behaviour_for("/v1/chat", Behaviour::Hang);
    let started = Instant::now();
    let resp = corral.post_json("/v1/chat/completions", &chat("mock-model", false));
    assert_eq!(resp.status, 504, "{}", resp.text());
    assert_eq!(resp.json()["error"], "upstream_timeout");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        spare.count("/v1/chat/completions"),
        0,
        "a timeout is not failed over"
    );
}

#[test]
fn sse_and_ndjson_stream_through_chunk_by_chunk() {
    let vllm = MockBackend::start_named(Persona::Vllm, "vllm");
    vllm.set_chunks(4);
    vllm.set_chunk_delay(Duration::from_millis(200));
    let ollama = MockBackend::start_named(Persona::Ollama, "ollama");
    ollama.set_chunks(4);
    ollama.set_chunk_delay(Duration::from_millis(200));
    let corral = Scenario::new().mock(&vllm).mock(&ollama).start();
    corral.wait_all_healthy(2, WAIT);

    let mut s = corral.stream_json("/olla/vllm/v1/chat/completions", &chat("mock-model", true));
    assert_eq!(s.status, 200);
    assert!(s
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    let chunks = s.chunks();
    let events = sse_events(&chunks);
    assert!(events.len() >= 5, "4 deltas and [DONE]: {events:?}");
    assert_eq!(events.last().unwrap().text, "[DONE]");
    for pair in events.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(150),
            "each event arrives when sent, not at the end: {gap:?}"
        );
    }

    let mut s = corral.stream_json(
        "/api/chat",
        &json!({ "model": "mock-model", "messages": [] }),
    );
    assert_eq!(s.status, 200);
    let lines = ndjson_lines(&s.chunks());
    assert!(lines.len() >= 5, "{lines:?}");
    for pair in lines.windows(2) {
        assert!(
            pair[1].at - pair[0].at >= Duration::from_millis(150),
            "NDJSON line by line"
        );
    }
    assert!(lines.last().unwrap().text.contains("\"done\":true"));
}

#[test]
fn client_disconnect_cancels_the_upstream_stream() {
    let mock = MockBackend::start_named(Persona::Vllm, "gpu");
    mock.set_chunks(50);
    mock.set_chunk_delay(Duration::from_millis(100));
    let corral = Scenario::new().mock(&mock).start();
    corral.wait_all_healthy(1, WAIT);
    let mut s = corral.stream_json("/v1/chat/completions", &chat("mock-model", true));
    assert!(s.next_chunk().unwrap().is_some());
    s.disconnect();
    wait_until(WAIT, "upstream stream cancelled", || {
        mock.streams_cancelled() >= 1
    });
    wait_until(WAIT, "nothing in flight", || {
        corral.endpoint("gpu")["in_flight"] == 0
    });
    let e = corral.endpoint("gpu");
    assert_eq!(
        e["circuit_breaker"]["proxy"]["failures"], 0,
        "a client abort never counts"
    );
}

#[test]
fn burst_of_200_concurrent_requests_survives_a_flapping_backend() {
    let steady = MockBackend::start_named(Persona::Vllm, "steady");
    let flapping = Arc::new(MockBackend::start_named(Persona::Vllm, "flapping"));
    let corral = Scenario::new()
        // The steady endpoint's checks get real headroom: under a 200-thread burst on two
        // cores a short deadline can lapse, and that is not what this test is about.
        .mock_with(
            &steady,
            &[("check_interval", "1s"), ("check_timeout", "900ms")],
        )
        .mock_with(&flapping, &[("max_backoff", "300ms")])
        .start();
    corral.wait_all_healthy(2, WAIT);
    let api = Api::clone(&corral);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flipper = {
        let (flapping, stop) = (flapping.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut flips = 0;
            while !stop.load(Ordering::SeqCst) && flips < 60 {
                std::thread::sleep(Duration::from_millis(300));
                if flapping.is_refusing() {
                    flapping.restore();
                } else {
                    flapping.refuse();
                }
                flips += 1;
            }
            flips
        })
    };
    let failures = Arc::new(AtomicUsize::new(0));
    let served_by_flapping = Arc::new(AtomicUsize::new(0));
    let mut total = 0;
    let deadline = Instant::now() + Duration::from_secs(4);
    while Instant::now() < deadline {
        let barrier = Arc::new(Barrier::new(200));
        let threads: Vec<_> = (0..200)
            .map(|_| {
                let (api, barrier, failures, by_flapping) = (
                    api.clone(),
                    barrier.clone(),
                    failures.clone(),
                    served_by_flapping.clone(),
                );
                std::thread::spawn(move || {
                    barrier.wait();
                    match api.try_request(
                        "POST",
                        "/v1/chat/completions",
                        &[("Content-Type", "application/json")],
                        chat("mock-model", false).to_string().as_bytes(),
                    ) {
                        Ok(r) if r.status == 200 => {
                            if r.header("x-olla-endpoint") == Some("flapping") {
                                by_flapping.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        Ok(r) => {
                            eprintln!("failed: {} {}", r.status, r.text());
                            failures.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e) => {
                            eprintln!("failed: {e}");
                            failures.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        total += 200;
    }
    stop.store(true, Ordering::SeqCst);
    let flips = flipper.join().unwrap();
    assert!(flips >= 5, "the backend flipped {flips} times");
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "zero client-visible failures out of {total}"
    );
    assert!(
        served_by_flapping.load(Ordering::SeqCst) > 0,
        "the flapping backend served while up"
    );
}

#[test]
fn request_stats_per_endpoint_and_model() {
    let mock = MockBackend::start_named(Persona::Vllm, "gpu");
    mock.set_models(&["m1"]);
    let corral = Scenario::new().mock(&mock).start();
    corral.wait_all_healthy(1, WAIT);
    wait_until(WAIT, "m1 known", || {
        corral.get_json("/v1/models").1["data"]
            .as_array()
            .is_some_and(|d| d.len() == 1)
    });
    for _ in 0..3 {
        assert_eq!(
            corral
                .post_json("/v1/chat/completions", &chat("m1", false))
                .status,
            200
        );
    }
    let e = corral.endpoint("gpu");
    assert_eq!(e["requests"], 3);
    assert_eq!(e["in_flight"], 0);
    let (_, stats) = wait_for(WAIT, "stats recorded", || {
        let (c, s) = corral.get_json("/internal/stats/models");
        (s["models"][0]["requests"] == 3).then_some((c, s))
    });
    let m = &stats["models"][0];
    assert_eq!(m["name"], "m1");
    assert_eq!(m["failures"], 0);
    assert!(m["avg_latency"].is_string(), "{stats}");
    assert_eq!(m["endpoints"]["routable"], 1);
    assert_eq!(stats["endpoints_by_status"]["healthy"], 1);
    assert!(stats["avg_check_latency"].is_string());
}

#[test]
fn sigterm_lets_an_in_flight_stream_finish() {
    let mock = MockBackend::start_named(Persona::Vllm, "gpu");
    mock.set_chunks(6);
    mock.set_chunk_delay(Duration::from_millis(150));
    let corral = Scenario::new()
        .server("shutdown_timeout", "5s")
        .mock(&mock)
        .spawn(CORRAL);
    corral.wait_all_healthy(1, WAIT);
    let mut s = corral.stream_json("/v1/chat/completions", &chat("mock-model", true));
    assert!(s.next_chunk().unwrap().is_some());
    corral.signal("TERM");
    let rest = s.chunks();
    let events = sse_events(&rest);
    assert_eq!(
        events.last().map(|e| e.text.as_str()),
        Some("[DONE]"),
        "the stream ran to its end: {events:?}"
    );
    assert_eq!(corral.wait_exit(WAIT), Some(0));
    assert!(
        corral.logs().contains("SIGTERM received; draining"),
        "{}",
        corral.logs()
    );
}

#[test]
fn a_burst_of_failed_connections_counts_as_one_failure() {
    let down = MockBackend::start_named(Persona::Vllm, "down");
    let up = MockBackend::start_named(Persona::Vllm, "up");
    let corral = Scenario::new()
        .mock_with(
            &down,
            &[
                ("priority", "100"),
                ("check_interval", "2s"),
                ("check_timeout", "1s"),
            ],
        )
        .mock_with(&up, &[("priority", "50")])
        .start();
    corral.wait_all_healthy(2, WAIT);
    down.refuse();
    let api = Api::clone(&corral);
    let barrier = Arc::new(Barrier::new(20));
    let threads: Vec<_> = (0..20)
        .map(|_| {
            let (api, barrier) = (api.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                api.try_request(
                    "POST",
                    "/v1/chat/completions",
                    &[("Content-Type", "application/json")],
                    chat("mock-model", false).to_string().as_bytes(),
                )
                .map(|r| r.status)
                .unwrap_or(0)
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 200);
    }
    let d = wait_for(WAIT, "down unhealthy", || {
        let d = corral.endpoint("down");
        (d["status"] == "unhealthy").then_some(d)
    });
    assert_eq!(d["consecutive_failures"], 1, "{d}");
    assert_eq!(
        d["backoff_multiplier"], 1,
        "the next check comes after one interval: {d}"
    );
}

#[test]
fn a_stream_that_goes_quiet_is_closed_after_the_idle_timeout() {
    let mock = MockBackend::start_named(Persona::Vllm, "gpu");
    mock.set_chunks(5);
    mock.set_chunk_delay(Duration::from_millis(1500));
    let corral = Scenario::new()
        .proxy("stream_idle_timeout", "300ms")
        .mock(&mock)
        .spawn(CORRAL);
    corral.wait_all_healthy(1, WAIT);
    let started = Instant::now();
    let mut s = corral.stream_json("/v1/chat/completions", &chat("mock-model", true));
    assert_eq!(s.status, 200);
    let (chunks, _) = s.try_chunks();
    let events = sse_events(&chunks);
    assert!(
        !events.iter().any(|e| e.text == "[DONE]"),
        "cut off before the end: {events:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1400),
        "closed at the idle timeout, not the next chunk: {:?}",
        started.elapsed()
    );
    assert!(
        corral.wait_for_log("stream idle too long", WAIT),
        "{}",
        corral.logs()
    );
}

#[test]
fn round_robin_spreads_requests_across_a_tier() {
    let a = MockBackend::start_named(Persona::Vllm, "a");
    let b = MockBackend::start_named(Persona::Vllm, "b");
    let c = MockBackend::start_named(Persona::Vllm, "c");
    let corral = Scenario::new()
        .proxy("load_balancer", "round-robin")
        .mock(&a)
        .mock(&b)
        .mock(&c)
        .start();
    corral.wait_all_healthy(3, WAIT);
    for _ in 0..30 {
        assert_eq!(
            corral
                .post_json("/v1/chat/completions", &chat("mock-model", false))
                .status,
            200
        );
    }
    for m in [&a, &b, &c] {
        assert_eq!(
            m.count("/v1/chat/completions"),
            10,
            "{} got an even share",
            m.name()
        );
    }
}
