//! SPEC 11, point by point: hostile and odd input never reaches health. Each test drives
//! Corral through its HTTP surface (in-process; the built binary for signals) against mock
//! backends and asserts what the spec says the endpoints' health looks like afterwards. Raw
//! sockets ([`RawConn`]) where the bytes a client sends, or does not send, are the point.

use std::time::{Duration, Instant};

use house::*;
use serde_json::Value;

const CORRAL: &str = env!("CARGO_BIN_EXE_corral");
const WAIT: Duration = Duration::from_secs(10);

fn proxy_breaker(e: &Value) -> (String, u64) {
    let p = &e["circuit_breaker"]["proxy"];
    (
        p["state"].as_str().unwrap_or_default().to_string(),
        p["failures"].as_u64().unwrap_or(u64::MAX),
    )
}

/// `POST path` of a JSON `body` as raw bytes, with `extra` header lines (each ending `\r\n`).
fn raw_post(authority: &str, path: &str, extra: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
}

/// 11, first point: `Expect` is never forwarded; Corral answers `100-continue` itself and
/// ignores other expectations. Neither may show up as a failed backend.
#[test]
fn expectations_are_answered_by_corral_and_never_fail_a_backend() {
    let a = MockBackend::start_named(Persona::Vllm, "a");
    let b = MockBackend::start_named(Persona::Ollama, "b");
    let corral = Scenario::new().mock(&a).mock(&b).start();
    corral.wait_all_healthy(2, WAIT);
    let path = "/olla/proxy/v1/chat/completions";
    let body = chat("mock-model", false).to_string();
    for round in 1..=10 {
        // An expectation nobody can meet: ignored, never a 417.
        let mut c = RawConn::connect(corral.authority());
        c.send(raw_post(corral.authority(), path, "Expect: x\r\n", &body).as_bytes())
            .unwrap();
        let r = c
            .response(WAIT)
            .unwrap_or_else(|e| panic!("round {round}, Expect: x: {e}"));
        assert_eq!(r.status, 200, "round {round}, Expect: x: {}", r.text());
        assert!(
            r.header("x-mock-backend").is_some(),
            "round {round}, Expect: x: the backend's answer: {r:?}"
        );

        // 100-continue: Corral says `100 Continue` before the client sends the body.
        let mut c = RawConn::connect(corral.authority());
        let whole = raw_post(corral.authority(), path, "Expect: 100-continue\r\n", &body);
        let (head, rest) = whole.split_at(whole.len() - body.len());
        c.send(head.as_bytes()).unwrap();
        let interim = c
            .head(WAIT)
            .unwrap_or_else(|e| panic!("round {round}: no 100 Continue: {e}"));
        assert_eq!(interim.status, 100, "round {round}: {interim:?}");
        c.send(rest.as_bytes()).unwrap();
        let r = c
            .response(WAIT)
            .unwrap_or_else(|e| panic!("round {round}, Expect: 100-continue: {e}"));
        assert_eq!(
            r.status,
            200,
            "round {round}, Expect: 100-continue: {}",
            r.text()
        );
        assert!(r.header("x-mock-backend").is_some(), "{r:?}");
    }
    if let Err(touched) = corral.all_untouched() {
        panic!("an expectation counted against a backend:\n{touched}");
    }
    for m in [&a, &b] {
        let expects: Vec<_> = m
            .requests()
            .into_iter()
            .filter(|r| r.header("expect").is_some())
            .collect();
        assert!(expects.is_empty(), "{} saw Expect: {expects:?}", m.name());
    }
}

/// 11, third point: breaker counts are consecutive — a success resets the proxy breaker's
/// count — and consecutive failures still open it.
#[test]
fn the_proxy_breaker_counts_consecutive_failures_only() {
    let m = MockBackend::start_named(Persona::Vllm, "gpu");
    let corral = Scenario::new()
        .proxy(
            "circuit_breaker",
            "{ failure_threshold: 5, open_duration: 30s }",
        )
        .proxy("retry_on_status", "[429, 502, 503, 504]")
        .mock(&m)
        .start();
    corral.wait_all_healthy(1, WAIT);
    let post = || corral.post_json("/v1/chat/completions", &chat("mock-model", false));
    let failures = || proxy_breaker(&corral.endpoint("gpu")).1;
    // Checks keep passing: only the chat route answers 429.
    for round in 1..=3 {
        m.set_behaviour_for("/v1/chat", Behaviour::Status(429));
        for i in 1..=4 {
            let r = post();
            assert_eq!(
                r.status,
                429,
                "round {round}, failure {i}: {} / {}",
                r.text(),
                corral.endpoint("gpu")
            );
        }
        wait_until(WAIT, &format!("round {round}: 4 failures counted"), || {
            failures() == 4
        });
        m.clear_behaviour_for("/v1/chat");
        let r = post();
        assert_eq!(r.status, 200, "round {round}: {}", r.text());
        wait_until(WAIT, &format!("round {round}: the success resets"), || {
            failures() == 0
        });
        let e = corral.endpoint("gpu");
        assert_eq!(proxy_breaker(&e).0, "closed", "round {round}: {e}");
        assert_eq!(e["status"], "healthy", "round {round}: {e}");
    }

    m.set_behaviour_for("/v1/chat", Behaviour::Status(429));
    for i in 1..=5 {
        let r = post();
        assert_eq!(r.status, 429, "failure {i}: {}", r.text());
    }
    let e = wait_for(WAIT, "five in a row open the breaker", || {
        let e = corral.endpoint("gpu");
        (proxy_breaker(&e).0 == "open").then_some(e)
    });
    assert_eq!(e["status"], "unhealthy", "{e}");
    assert_eq!(e["reason"], "circuit open", "{e}");
}

/// A raw `GET path` (with `Authorization: Bearer token` when given) and its response.
fn raw_get(corral: &Corral, path: &str, token: Option<&str>) -> Resp {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let mut c = RawConn::connect(corral.authority());
    c.send(
        format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n{auth}\r\n",
            corral.authority()
        )
        .as_bytes(),
    )
    .unwrap();
    c.response(WAIT)
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// 11, fourth point: the token check is made on the path routing uses, so no spelling of a
/// guarded path gets past it.
#[test]
fn no_spelling_of_an_internal_path_skips_the_token() {
    let m = MockBackend::start_named(Persona::Vllm, "gpu");
    let corral = Scenario::new()
        .server("internal_token", "s3cret")
        .mock(&m)
        .start();
    let spellings = [
        "/%69nternal/status/endpoints",
        "/%2Finternal/status/endpoints",
        "//internal/status/endpoints",
        "/internal//status/endpoints",
        "/internal/status/endpoints/",
        "/INTERNAL/status/endpoints",
        "/internal/%73tatus/endpoints",
    ];
    let let_through: Vec<String> = spellings
        .iter()
        .map(|path| (path, raw_get(&corral, path, None)))
        .filter(|(_, r)| !matches!(r.status, 401 | 404))
        .map(|(path, r)| format!("{path}: {} {}", r.status, r.text()))
        .collect();
    assert!(
        let_through.is_empty(),
        "answered other than 401/404 without a token:\n{}",
        let_through.join("\n")
    );
    let r = raw_get(&corral, "/internal/status/endpoints", Some("s3cret"));
    assert_eq!(r.status, 200, "{}", r.text());
    let r = raw_get(&corral, "/internal/health", None);
    assert_eq!(r.status, 200, "{}", r.text());
}

/// 11, seventh point: SIGHUP never ends the process; SIGTERM still drains it.
#[test]
fn sighup_never_ends_the_process() {
    let m = MockBackend::start_named(Persona::Vllm, "gpu");
    let corral = Scenario::new().mock(&m).spawn(CORRAL);
    corral.wait_all_healthy(1, WAIT);
    for n in 1..=2 {
        corral.signal("HUP");
        let r = corral
            .try_request("GET", "/internal/health", &[], b"")
            .unwrap_or_else(|e| panic!("after SIGHUP {n}: {e}\n{}", corral.logs()));
        assert_eq!(r.status, 200, "after SIGHUP {n}");
    }
    corral.signal("TERM");
    // A SIGHUP that had ended the process would show here as 129 (128 + SIGHUP).
    assert_eq!(corral.wait_exit(WAIT), Some(0), "{}", corral.logs());
}

/// 4.2 with 11's third point: for an endpoint without health checks a served request is the
/// pass, so after an outage it resets the failure count and the next outage backs off
/// from 1x again.
#[test]
fn without_health_checks_a_served_request_resets_the_failures() {
    let m = MockBackend::start_named(Persona::Vllm, "remote");
    let corral = Scenario::new()
        .mock_with(
            &m,
            &[
                ("health_checks", "false"),
                ("check_interval", "300ms"),
                ("check_timeout", "200ms"),
                ("max_backoff", "2s"),
            ],
        )
        .start();
    corral.wait_all_healthy(1, WAIT);
    let post = || corral.post_json("/v1/chat/completions", &chat("mock-model", false));
    let failures = || {
        corral.endpoint("remote")["consecutive_failures"]
            .as_u64()
            .unwrap_or(0)
    };
    m.refuse();
    // Unhealthy for its backoff wait, then recovering: the next request is its test.
    wait_until(WAIT, "two failed requests in a row", || {
        post();
        failures() >= 2
    });
    m.restore();
    wait_until(WAIT, "a request is served again", || post().status == 200);
    let e = wait_for(WAIT, "the served request resets the count", || {
        let e = corral.endpoint("remote");
        (e["consecutive_failures"] == 0).then_some(e)
    });
    assert_ne!(e["status"], "unhealthy", "{e}");
    wait_until(
        WAIT,
        "healthy after recovery_successes served requests",
        || {
            post();
            corral.status_of("remote") == "healthy"
        },
    );

    m.refuse();
    let r = post();
    assert_eq!(r.status, 502, "{}", r.text());
    let e = wait_for(WAIT, "the new outage counted", || {
        let e = corral.endpoint("remote");
        (e["status"] == "unhealthy").then_some(e)
    });
    assert_eq!(e["consecutive_failures"], 1, "{e}");
    assert_eq!(e["backoff_multiplier"], 1, "backoff starts over: {e}");
}

/// 11, opening: health is the backend's behaviour as it is now. A request that started
/// before the endpoint's recovery and times out after it does not count against the
/// recovered endpoint (its outcome is stale).
#[test]
fn a_timeout_that_started_before_a_recovery_does_not_count() {
    let m = MockBackend::start_named(Persona::Vllm, "gpu");
    let corral = Scenario::new()
        .proxy("response_header_timeout", "2s")
        .mock_with(
            &m,
            &[
                ("check_interval", "100ms"),
                ("check_timeout", "80ms"),
                ("max_backoff", "200ms"),
            ],
        )
        .start();
    corral.wait_all_healthy(1, WAIT);
    m.set_behaviour_for("/v1/chat", Behaviour::Hang);
    let api = Api::clone(&corral);
    let hung = std::thread::spawn(move || {
        let r = api.post_json("/v1/chat/completions", &chat("mock-model", false));
        (r, Instant::now())
    });
    wait_until(WAIT, "the chat request reached the backend", || {
        m.count("/v1/chat/completions") == 1
    });
    m.set_behaviour_for("/health", Behaviour::Status(503));
    corral.wait_status("gpu", "unhealthy", WAIT);
    m.clear_behaviour_for("/health");
    corral.wait_status("gpu", "healthy", WAIT);
    let recovered = Instant::now();
    let (resp, ended) = hung.join().unwrap();
    assert_eq!(resp.status, 504, "{}", resp.text());
    assert!(
        recovered < ended,
        "the premise: the endpoint recovered before the request timed out"
    );
    // A marker failure after the timeout: the endpoint's actor takes reports in order, so
    // once the marker is counted the timeout's report has been handled too.
    m.set_behaviour_for("/v1/chat", Behaviour::Status(429));
    assert_eq!(
        corral
            .post_json("/v1/chat/completions", &chat("mock-model", false))
            .status,
        429
    );
    let e = wait_for(WAIT, "the marker counted", || {
        let e = corral.endpoint("gpu");
        (proxy_breaker(&e).1 >= 1).then_some(e)
    });
    assert_eq!(
        proxy_breaker(&e).1,
        1,
        "only the marker counts, not the stale timeout: {e}"
    );
    assert_eq!(e["status"], "healthy", "{e}");
}

/// Corral with one vLLM endpoint `gpu` and one-second deadlines on reading the request
/// head, the request body and streams.
fn short_deadlines(m: &MockBackend) -> Corral {
    let corral = Scenario::new()
        .server("read_timeout", "1s")
        .server("read_header_timeout", "1s")
        .proxy("stream_idle_timeout", "1s")
        .mock(m)
        .start();
    corral.wait_all_healthy(1, WAIT);
    corral
}

/// What "within about a second" allows either side of the one-second deadlines.
const SOON: Duration = Duration::from_millis(900);
const LATE: Duration = Duration::from_secs(3);

/// 11, fifth point: the whole body within `read_timeout` of the head's end, else 408 and
/// the connection is closed.
#[test]
fn a_late_request_body_gets_408_and_a_close() {
    let m = MockBackend::start_named(Persona::Vllm, "gpu");
    let corral = short_deadlines(&m);
    // A complete head promising 1000 bytes, then a few.
    let mut c = RawConn::connect(corral.authority());
    c.send(
        format!(
            "POST /olla/proxy/v1/chat/completions HTTP/1.1\r\nHost: {}\r\n\
             Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"model\":",
            corral.authority()
        )
        .as_bytes(),
    )
    .unwrap();
    let sent = Instant::now();
    let r = c.response(LATE + Duration::from_secs(1));
    let took = sent.elapsed();
    let r = r.unwrap_or_else(|e| panic!("no answer to a late body after {took:?}: {e}"));
    assert_eq!(r.status, 408, "{}", r.text());
    assert!(SOON <= took && took <= LATE, "408 after {took:?}");
    assert!(
        c.wait_closed(Duration::from_secs(2)).is_some(),
        "the connection is closed after the 408"
    );
}

/// 11, fifth point: the whole head within `read_header_timeout` of its first byte, else
/// the connection is closed without a response.
#[test]
fn a_half_request_head_is_closed_without_a_response() {
    let m = MockBackend::start_named(Persona::Vllm, "gpu");
    let corral = short_deadlines(&m);
    let mut c = RawConn::connect(corral.authority());
    c.send(b"GET /internal/health HTTP/1.1\r\nHost: 127.0")
        .unwrap();
    let sent = Instant::now();
    let got = c.wait_closed(LATE + Duration::from_secs(1));
    let took = sent.elapsed();
    let got = got.unwrap_or_else(|| panic!("a half head still open after {took:?}"));
    // Not before the deadline either: a client that sends its head within it is served.
    assert!(SOON <= took && took <= LATE, "closed after {took:?}");
    assert!(
        !matches!(status_in(&got), Some(200..=299)),
        "a half head got {:?}",
        String::from_utf8_lossy(&got)
    );
}

/// 11, fifth point: a client that stops reading a stream is let go after
/// `stream_idle_timeout`, and that is nothing against the backend.
#[test]
fn a_client_that_stops_reading_a_stream_is_let_go() {
    let m = MockBackend::start_named(Persona::Vllm, "gpu");
    // A stream far longer than any socket buffer, as fast as the mock can write it.
    m.set_chunks(1_000_000);
    // The mock spends its CPU writing that stream: its health answers get slow on a loaded
    // machine, which says nothing about what this test is about.
    let corral = Scenario::new()
        .proxy("stream_idle_timeout", "1s")
        .mock_with(&m, &[("check_interval", "1s"), ("check_timeout", "900ms")])
        .start();
    corral.wait_all_healthy(1, WAIT);
    let mut c = RawConn::connect(corral.authority());
    let body = chat("mock-model", true).to_string();
    c.send(raw_post(corral.authority(), "/v1/chat/completions", "", &body).as_bytes())
        .unwrap();
    let head = c.response_head(WAIT).unwrap();
    assert_eq!(head.status, 200, "{head:?}");
    // From here on the client reads nothing, and keeps its socket open.
    let stopped = Instant::now();
    wait_until(
        LATE + Duration::from_secs(3),
        "in_flight back to 0 after the client stopped reading",
        || corral.in_flight_total() == 0,
    );
    eprintln!(
        "in_flight 0 {:?} after the client stopped reading",
        stopped.elapsed()
    );
    if let Err(touched) = corral.all_untouched() {
        panic!("a client that stopped reading counted against the backend:\n{touched}");
    }
    drop(c);
}

/// 11, through 5.1: model listings are answered from the published catalog, so a flood of
/// them does not hold up the control plane, whose health checks keep their schedule and
/// their latency.
///
/// The catalog is large (3,000 models of an endpoint out of rotation) while each answer is
/// small (the one model of the routable endpoint): a listing that consults the control plane
/// costs it the whole catalog, and the flood stays quick to serve.
#[test]
fn a_flood_of_model_listings_does_not_delay_health_checks() {
    let gpu = MockBackend::start_named(Persona::Vllm, "gpu");
    let gone = MockBackend::start_named(Persona::Vllm, "gone");
    let names: Vec<String> = (0..3_000).map(|i| format!("old-{i:04}")).collect();
    gone.set_models(&names.iter().map(String::as_str).collect::<Vec<_>>());
    let interval = Duration::from_millis(100);
    let corral = Scenario::new()
        .mock_with(
            &gpu,
            &[("check_interval", "100ms"), ("check_timeout", "90ms")],
        )
        .mock_with(
            &gone,
            &[("check_interval", "1s"), ("check_timeout", "500ms")],
        )
        .start();
    corral.wait_all_healthy(2, WAIT);
    wait_until(WAIT, "the big catalog known", || {
        corral.model_names().len() == 3_001
    });
    gone.refuse();
    corral.wait_status("gone", "unhealthy", WAIT);
    let listed = corral.get_json("/v1/models").1["data"]
        .as_array()
        .map(Vec::len);
    assert_eq!(
        listed,
        Some(1),
        "only the routable endpoint's model is listed"
    );
    assert_eq!(
        corral.model_names().len(),
        3_001,
        "the catalog keeps the rest"
    );

    let checks_before = corral.endpoint("gpu")["checks"].as_u64().unwrap();
    let started = Instant::now();
    let flood: Vec<_> = (0..8)
        .map(|_| {
            let api = Api::clone(&corral);
            std::thread::spawn(move || {
                (0..250)
                    .filter(|_| api.get("/v1/models").status != 200)
                    .count()
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    let mut not_healthy = Vec::new();
    wait_until(Duration::from_secs(120), "the flood ends", || {
        let e = corral.endpoint("gpu");
        if let Some(l) = e["last_latency"].as_str() {
            let l = humantime::parse_duration(l).unwrap_or_else(|err| panic!("{l}: {err}"));
            slowest = slowest.max(l);
        }
        if e["status"] != "healthy" {
            not_healthy.push(e);
        }
        flood.iter().all(|t| t.is_finished())
    });
    let took = started.elapsed();
    let failed: usize = flood.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(failed, 0, "listings that were not 200");
    let checks = corral.endpoint("gpu")["checks"].as_u64().unwrap() - checks_before;
    let due = took.as_millis() / interval.as_millis();
    assert!(
        u128::from(checks) * 2 >= due,
        "{checks} checks ran during the {took:?} flood; {due} were due"
    );
    // Coarse on purpose (the check count above is what catches a busy control plane): a
    // loaded 2-core machine delays a check by tens of milliseconds on its own.
    assert!(
        slowest < Duration::from_millis(250),
        "a check took {slowest:?} during the flood"
    );
    assert!(not_healthy.is_empty(), "{not_healthy:?}");
}

/// 11, sixth point: what a backend sends is bounded before it is kept — 10,000 models of
/// at most 256 bytes, header values of at most 8 KiB.
#[test]
fn what_a_backend_sends_is_bounded() {
    let m = MockBackend::start_named(Persona::Vllm, "gpu");
    let long = "x".repeat(300);
    let names: Vec<String> = std::iter::once(long.clone())
        .chain((0..11_999).map(|i| format!("m-{i:05}")))
        .collect();
    m.set_models(&names.iter().map(String::as_str).collect::<Vec<_>>());
    m.set_response_header("/v1/chat", "x-big", &"a".repeat(9 * 1024));
    let corral = Scenario::new().mock(&m).start();
    corral.wait_all_healthy(1, WAIT);
    let e = wait_for(WAIT, "models discovered", || {
        let e = corral.endpoint("gpu");
        (e["models"].as_u64().unwrap_or(0) > 0).then_some(e)
    });
    assert_eq!(e["models"], 10_000, "{}", e["models"]);
    let (status, listing) = corral.get_json("/v1/models");
    assert_eq!(status, 200);
    let ids = listing["data"].as_array().unwrap();
    assert!(ids.len() <= 10_000, "{} listed", ids.len());
    assert!(
        !ids.iter().any(|m| m["id"] == long.as_str()),
        "the 300-byte name is listed"
    );

    let r = corral.post_json("/v1/chat/completions", &chat("m-00001", false));
    assert_eq!(r.status, 200, "{}", r.text());
    let big = r.header("x-big").map(str::len);
    assert!(
        big.is_none_or(|n| n <= 8 * 1024),
        "a {big:?}-byte header value reached the client"
    );
}

/// 9.5 and 11's last point: a backend that reads the request and closes without a byte is
/// a connection failure that fails over; `X-Olla-Response-Time` is ASCII whole milliseconds.
#[test]
fn an_eof_instead_of_a_response_fails_over() {
    let broken = MockBackend::start_named(Persona::Vllm, "broken");
    let good = MockBackend::start_named(Persona::Vllm, "good");
    broken.set_behaviour_for("/v1/chat", Behaviour::Close);
    // The premise: the broken mock reads the request and sends nothing at all.
    let authority = format!("127.0.0.1:{}", broken.port());
    let mut c = RawConn::connect(&authority);
    let body = chat("mock-model", false).to_string();
    c.send(raw_post(&authority, "/v1/chat/completions", "", &body).as_bytes())
        .unwrap();
    assert_eq!(
        c.wait_closed(WAIT)
            .map(|b| String::from_utf8_lossy(&b).into_owned()),
        Some(String::new()),
        "the mock closes without a response byte"
    );
    broken.clear_log();

    let corral = Scenario::new()
        .mock_with(&broken, &[("priority", "100")])
        .mock_with(&good, &[("priority", "50")])
        .start();
    corral.wait_all_healthy(2, WAIT);
    let r = corral.post_json("/v1/chat/completions", &chat("mock-model", false));
    assert_eq!(
        (r.status, served_by(&r)),
        (200, "good".to_string()),
        "{}",
        r.text()
    );
    assert!(
        broken.count("/v1/chat/completions") >= 1,
        "the broken endpoint was tried first"
    );
    let took = r.header("x-olla-response-time").unwrap_or_default();
    let digits = took.strip_suffix("ms").unwrap_or_default();
    assert!(
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()),
        "X-Olla-Response-Time: {took:?}"
    );
}
