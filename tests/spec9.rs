//! SPEC 9, rule by rule: what real LLM servers do that the reference never meets. Each test
//! runs Corral in-process against mock backends that behave as the servers the spec names —
//! busy behind a generation, frozen, dying after a response head, loading a model, answering
//! garbage, closing every keep-alive connection — and asserts, through the HTTP API only, what
//! the client and the status API see.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use house::wait::POLL;
use house::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);
/// The scenario's defaults (`Scenario::new`): checks every 200 ms, 150 ms deadline.
const CHECK_INTERVAL: Duration = Duration::from_millis(200);
const CHECK_TIMEOUT: Duration = Duration::from_millis(150);
const CHAT: &str = "/v1/chat/completions";

fn chat(stream: bool) -> Value {
    json!({ "model": "mock-model", "messages": [{ "role": "user", "content": "hi" }], "stream": stream })
}

fn health_breaker(e: &Value) -> (String, u64) {
    let h = &e["circuit_breaker"]["health"];
    (
        h["state"].as_str().unwrap_or_default().to_string(),
        h["failures"].as_u64().unwrap_or(u64::MAX),
    )
}

fn status(e: &Value) -> &str {
    e["status"].as_str().unwrap_or_default()
}

/// An RFC 3339 time of the status API.
fn wall(v: &Value) -> SystemTime {
    let s = v.as_str().unwrap_or_else(|| panic!("not a time: {v}"));
    humantime::parse_rfc3339(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// Waits for endpoint `name` to have status `want` and returns its status object.
fn wait_endpoint(corral: &Corral, name: &str, want: &str, timeout: Duration) -> Value {
    wait_for(timeout, &format!("endpoint {name} {want}"), || {
        let e = corral.endpoint(name);
        (status(&e) == want).then_some(e)
    })
}

/// 9.1, first point: a check that times out while the endpoint's streams are sending bytes
/// is `busy`, not a failure. The mock's health route waits behind every stream in progress
/// (as llama-cpp-python's `/v1/models` does), far longer than `check_timeout`.
#[test]
fn a_busy_backend_stays_in_rotation() {
    let m = MockBackend::start_named(Persona::Vllm, "busy");
    m.set_behaviour_for("/health", Behaviour::WaitWhileStreaming);
    m.set_chunks(40);
    m.set_chunk_delay(Duration::from_millis(50));
    let corral = Scenario::new().mock(&m).start();
    corral.wait_all_healthy(1, WAIT);

    let streams: Vec<_> = (0..2)
        .map(|_| {
            let api: Api = (*corral).clone();
            std::thread::spawn(move || {
                let mut s = api.stream_json(CHAT, &chat(true));
                let (chunks, err) = s.try_chunks();
                (
                    s.status,
                    s.header("x-olla-endpoint").map(str::to_string),
                    chunks,
                    err,
                )
            })
        })
        .collect();
    let deadline = Instant::now() + WAIT;
    let mut reasons = BTreeSet::new();
    let mut plain_requests = 0;
    let mut last_plain = Instant::now();
    while !streams.iter().all(|t| t.is_finished()) {
        assert!(Instant::now() < deadline, "the streams did not end");
        let e = corral.endpoint("busy");
        assert!(
            matches!(status(&e), "healthy" | "degraded"),
            "a busy endpoint left rotation: {e}"
        );
        assert_eq!(e["consecutive_failures"], 0, "{e}");
        assert_eq!(health_breaker(&e), ("closed".to_string(), 0), "{e}");
        if let Some(r) = e["reason"].as_str() {
            reasons.insert(r.to_string());
        }
        if last_plain.elapsed() >= CHECK_INTERVAL {
            let r = corral.post_json(CHAT, &chat(false));
            assert_eq!(r.status, 200, "while busy: {}", r.text());
            assert_eq!(served_by(&r), "busy");
            plain_requests += 1;
            last_plain = Instant::now();
        }
        std::thread::sleep(POLL);
    }
    assert!(
        reasons.iter().any(|r| r.starts_with("busy (serving ")),
        "no busy reason seen while two streams ran; reasons seen: {reasons:?}"
    );
    assert!(plain_requests >= 3, "only {plain_requests} requests sent");
    for t in streams {
        let (code, endpoint, chunks, err) = t.join().expect("stream thread");
        assert_eq!(code, 200);
        assert_eq!(endpoint.as_deref(), Some("busy"));
        assert!(err.is_none(), "a stream broke: {err:?}");
        let events = sse_events(&chunks);
        assert_eq!(events.len(), 41, "40 chunks and [DONE]: {events:?}");
        assert_eq!(events.last().map(|e| e.text.as_str()), Some("[DONE]"));
    }
    let e = wait_endpoint(&corral, "busy", "healthy", WAIT);
    assert_eq!(e["consecutive_failures"], 0, "{e}");
}

/// 9.1, second point: the contrast. The same backend frozen (health hangs and its stream
/// sends nothing, as under SIGSTOP) is out of rotation within `check_interval +
/// check_timeout`, though a request to it is still in flight.
#[test]
fn a_frozen_backend_leaves_rotation_within_interval_and_timeout() {
    let m = MockBackend::start_named(Persona::Vllm, "frozen");
    m.set_behaviour_for("/health", Behaviour::WaitWhileStreaming);
    m.set_chunks(40);
    m.set_chunk_delay(Duration::from_millis(50));
    let corral = Scenario::new().mock(&m).start();
    corral.wait_all_healthy(1, WAIT);
    let api: Api = (*corral).clone();
    let stream = std::thread::spawn(move || {
        let mut s = api.stream_json(CHAT, &chat(true));
        s.try_chunks()
    });
    // First the busy case, so that what follows is the frozen one and nothing else.
    wait_until(WAIT, "frozen: busy while its stream flows", || {
        corral.endpoint("frozen")["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("busy"))
    });
    m.freeze();
    let frozen_at = Instant::now();
    let e = wait_endpoint(&corral, "frozen", "unhealthy", WAIT);
    let took = frozen_at.elapsed();
    let slack = Duration::from_millis(500);
    assert!(
        took <= CHECK_INTERVAL + CHECK_TIMEOUT + slack,
        "a frozen backend took {took:?} to leave rotation (interval {CHECK_INTERVAL:?} + \
         timeout {CHECK_TIMEOUT:?} + slack {slack:?}): {e}"
    );
    assert_eq!(e["reason"], "timeout", "{e}");
    assert!(
        e["in_flight"].as_u64() >= Some(1),
        "the stream is in flight: {e}"
    );
    m.thaw();
    let (chunks, err) = stream.join().expect("stream thread");
    assert!(!chunks.is_empty(), "the stream never started: {err:?}");
}

/// 9.2, second point: a backend that sends `200` and its headers, then dies before its first
/// body byte, is a connection failure: the request fails over and the client gets a whole
/// answer from the next endpoint, never a `200` with an empty or broken body.
#[test]
fn a_backend_that_dies_after_its_head_fails_over() {
    let broken = MockBackend::start_named(Persona::Vllm, "dies-after-head");
    broken.set_behaviour_for("/v1/chat", Behaviour::HeadThenClose);
    // The mock as promised: a 200 head, then the close, not one body byte.
    let mut c = RawConn::connect(broken.url().trim_start_matches("http://"));
    c.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        .unwrap();
    let head = c.response_head(WAIT).expect("the mock's head");
    assert_eq!(head.status, 200, "{head:?}");
    assert_eq!(
        c.wait_closed(WAIT),
        Some(Vec::new()),
        "no body byte, then EOF"
    );
    broken.clear_log();

    let good = MockBackend::start_named(Persona::Vllm, "good");
    let corral = Scenario::new()
        .mock_with(&broken, &[("priority", "200"), ("check_interval", "500ms")])
        .mock_with(&good, &[("priority", "100")])
        .start();
    for stream in [false, true] {
        corral.wait_all_healthy(2, WAIT);
        let tried = broken.count(CHAT);
        let r = corral.post_json(CHAT, &chat(stream));
        assert_eq!(r.status, 200, "stream {stream}: {}", r.text());
        assert_eq!(served_by(&r), "good", "stream {stream}: {r:?}");
        if stream {
            let text = r.text();
            assert!(
                text.contains("chatcmpl-good") && text.ends_with("data: [DONE]\n\n"),
                "a broken stream: {text:?}"
            );
        } else {
            assert_eq!(
                r.json()["choices"][0]["message"]["content"],
                "from good",
                "{}",
                r.text()
            );
        }
        assert!(
            broken.count(CHAT) > tried,
            "stream {stream}: the first attempt never went to the higher-priority endpoint"
        );
        let e = wait_endpoint(
            &corral,
            "dies-after-head",
            "unhealthy",
            Duration::from_secs(2),
        );
        assert!(e["consecutive_failures"].as_u64() >= Some(1), "{e}");
    }
}

/// 9.2, first point: the response is held until its first body byte, and that byte is not
/// delayed: the mock sends its head at once and its first chunk 300 ms later.
#[test]
fn the_first_token_releases_the_response_at_once() {
    let m = MockBackend::start_named(Persona::Vllm, "thinker");
    m.set_first_chunk_delay(Duration::from_millis(300));
    let corral = Scenario::new().mock(&m).start();
    corral.wait_all_healthy(1, WAIT);
    let mut s = corral.stream_json(CHAT, &chat(true));
    let head_at = Instant::now();
    let first = s
        .next_chunk()
        .expect("the first body bytes")
        .expect("a body");
    let mut chunks = vec![first.clone()];
    chunks.extend(s.chunks());
    let asked = m
        .requests()
        .iter()
        .rev()
        .find(|r| r.path == CHAT)
        .expect("the mock saw the request")
        .at;
    let released = m.first_chunk_times();
    assert_eq!(released.len(), 1, "{released:?}");
    let released = released[0];
    assert!(
        released >= asked + Duration::from_millis(290),
        "the mock sent its first chunk after {:?}",
        released - asked
    );
    assert!(
        head_at >= released,
        "the response was committed before its first body byte: head {:?} after the \
         request reached the backend, first byte sent after {:?}",
        head_at.saturating_duration_since(asked),
        released - asked
    );
    let lag = first.at.saturating_duration_since(released);
    assert!(
        lag <= Duration::from_millis(50),
        "the first token reached the client {lag:?} after the backend sent it"
    );
    let events = sse_events(&chunks);
    assert_eq!(events.len(), 4, "{events:?}");
    assert_eq!(events.last().map(|e| e.text.as_str()), Some("[DONE]"));
}

/// 9.3: a `503` "Loading model" makes the endpoint `warming` — not routable, nothing
/// escalates, checked every `check_interval` — and the first pass makes it `healthy` at once,
/// never `recovering`, and fetches its models again.
#[test]
fn a_loading_backend_is_warming_then_healthy() {
    let m = MockBackend::start_named(Persona::Vllm, "loader");
    let corral = Scenario::new().mock(&m).start();
    corral.wait_all_healthy(1, WAIT);
    wait_until(WAIT, "mock-model discovered", || {
        corral.model_names().contains(&"mock-model".to_string())
    });
    // While it loads, the server swaps its model.
    m.set_models(&["bigger-model"]);
    m.set_behaviour_for("/health", Behaviour::Loading);
    let e = wait_endpoint(&corral, "loader", "warming", WAIT);
    assert_eq!(e["reason"], "loading model", "{e}");
    let lists = m.count("/v1/models");
    let checks = m.count("/health");
    let hold = Instant::now() + Duration::from_secs(1);
    while Instant::now() < hold {
        let e = corral.endpoint("loader");
        assert_eq!(status(&e), "warming", "{e}");
        assert_eq!(e["reason"], "loading model", "{e}");
        assert_eq!(e["consecutive_failures"], 0, "{e}");
        assert_eq!(health_breaker(&e), ("closed".to_string(), 0), "{e}");
        std::thread::sleep(POLL);
    }
    let checked = m.count("/health") - checks;
    assert!(
        checked >= 4,
        "{checked} checks in 1 s at a 200 ms interval: warming must not back off"
    );
    let (code, h) = corral.get_json("/internal/health");
    assert_eq!(code, 200);
    assert_eq!(h["endpoints"]["warming"], 1, "{h}");
    assert_eq!(h["status"], "unhealthy", "nothing is routable: {h}");
    let no_model = json!({ "messages": [{ "role": "user", "content": "hi" }] });
    let r = corral.post_json(CHAT, &no_model);
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"], "no_healthy_endpoints", "{}", r.text());
    let r = corral.post_json(CHAT, &chat(false));
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(m.count(CHAT), 0, "a warming endpoint was sent a request");

    m.clear_behaviour_for("/health");
    let mut seen = BTreeSet::new();
    let e = wait_for(WAIT, "loader healthy", || {
        let e = corral.endpoint("loader");
        seen.insert(status(&e).to_string());
        (status(&e) == "healthy").then_some(e)
    });
    assert!(
        !seen.contains("recovering") && !seen.contains("unhealthy"),
        "statuses seen on the way from warming: {seen:?}"
    );
    // unknown -> healthy -> warming -> healthy, and nothing in between.
    assert_eq!(e["status_changes"], 3, "{e}");
    assert_eq!(e["consecutive_failures"], 0, "{e}");
    wait_until(WAIT, "the model list fetched again", || {
        m.count("/v1/models") > lists
    });
    wait_until(WAIT, "bigger-model in the catalog", || {
        corral.model_names().contains(&"bigger-model".to_string())
    });
    let r = corral.post_json(CHAT, &json!({ "model": "bigger-model", "messages": [] }));
    assert_eq!(r.status, 200, "{}", r.text());
}

/// 9.4: with `check_interval: 100ms` the health breaker's automatic open time is
/// min(30 s, 12 × 100 ms) = 1.2 s, and a backend back after the outage is routable again
/// within about 2 s.
#[test]
fn the_health_breaker_opens_for_a_time_that_follows_the_interval() {
    let m = MockBackend::start_named(Persona::Vllm, "flaky");
    let corral = Scenario::new()
        .health("check_interval", "100ms")
        .health("check_timeout", "50ms")
        .mock(&m)
        .start();
    corral.wait_all_healthy(1, WAIT);
    m.set_behaviour_for("/health", Behaviour::Status(500));
    let e = wait_for(WAIT, "the health breaker open", || {
        let e = corral.endpoint("flaky");
        (health_breaker(&e).0 == "open").then_some(e)
    });
    assert_eq!(status(&e), "unhealthy", "{e}");
    assert_eq!(health_breaker(&e).1, 3, "{e}");
    // The third failed check opened it: its finish is the last check while open.
    let opened = wall(&e["last_check"]);
    let half_open_at = wall(&e["circuit_breaker"]["health"]["half_open_at"]);
    let open_for = half_open_at
        .duration_since(opened)
        .unwrap_or_else(|_| panic!("half-opens before it opened: {e}"));
    assert!(
        open_for >= Duration::from_millis(1100) && open_for <= Duration::from_millis(1300),
        "open for {open_for:?}, not 1.2 s: {e}"
    );

    m.clear_behaviour_for("/health");
    let back = Instant::now();
    wait_until(Duration::from_secs(2), "flaky routable again", || {
        corral.post_json(CHAT, &chat(false)).status == 200
    });
    let e = corral.endpoint("flaky");
    assert!(
        matches!(status(&e), "recovering" | "healthy"),
        "after {:?}: {e}",
        back.elapsed()
    );
}

fn openai_models() -> Value {
    json!({ "object": "list", "data": [{ "id": "mock-model", "object": "model" }] })
}

/// 9.5: a malformed answer, an EOF, or a head cut short, before any response byte reached
/// the client, is a connection failure that fails over like a refused connect.
#[test]
fn every_failure_before_the_first_byte_fails_over() {
    let chat_reply: Arc<Mutex<Vec<u8>>> = Arc::new(Mutex::new(Vec::new()));
    let odd = {
        let chat_reply = chat_reply.clone();
        OneShotServer::start(move |req: &OneShotRequest| {
            match (req.method.as_str(), req.path.as_str()) {
                ("GET", "/health") => json_response(200, &json!({})),
                ("GET", "/v1/models") => json_response(200, &openai_models()),
                _ => chat_reply.lock().unwrap().clone(),
            }
        })
    };
    let good = MockBackend::start_named(Persona::Vllm, "good");
    let corral = Scenario::new()
        .endpoint_with(
            "odd",
            &odd.url(),
            "vllm",
            &[("priority", "200"), ("check_interval", "500ms")],
        )
        .mock_with(&good, &[("priority", "100")])
        .start();
    let answers: [(&str, &[u8]); 3] = [
        ("garbage", b"garbage\r\n\r\n"),
        ("EOF", b""),
        ("a head cut short", b"HTTP/1.1 200 OK\r\nContent-Le"),
    ];
    for (what, bytes) in answers {
        corral.wait_all_healthy(2, WAIT);
        *chat_reply.lock().unwrap() = bytes.to_vec();
        let tried = odd.count(CHAT);
        let r = corral.post_json(CHAT, &chat(false));
        assert_eq!(r.status, 200, "{what}: {}", r.text());
        assert_eq!(served_by(&r), "good", "{what}: {r:?}");
        assert_eq!(r.json()["choices"][0]["message"]["content"], "from good");
        assert!(odd.count(CHAT) > tried, "{what}: odd was never tried");
        let e = wait_endpoint(&corral, "odd", "unhealthy", Duration::from_secs(2));
        assert!(e["consecutive_failures"].as_u64() >= Some(1), "{what}: {e}");
    }
    let bodies: Vec<Value> = odd
        .requests()
        .iter()
        .filter(|r| r.path == CHAT)
        .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
        .collect();
    assert!(
        bodies.iter().all(|b| b["model"] == "mock-model"),
        "the request went out whole every time: {bodies:?}"
    );
}

/// 9.6: a server that closes every connection after its response, without
/// `Connection: close`, is not a dead server: as the primary of two, under 8 concurrent
/// clients, it serves (nearly) everything and is never marked `unhealthy`; its checks pass.
/// Here it closes at once, so a client usually sees the close before it reuses the
/// connection.
#[test]
fn a_server_that_closes_every_connection_stays_healthy() {
    closing_server_stays_healthy(Duration::ZERO);
}

/// 9.6, the harder case: the server closes 20 ms after its response, so a connection is
/// often reused before the close and the request sent on it is lost with it.
#[test]
fn a_server_that_closes_every_connection_a_moment_later_stays_healthy() {
    closing_server_stays_healthy(Duration::from_millis(20));
}

fn closing_server_stays_healthy(close_after: Duration) {
    let closer = OneShotServer::start_closing_after(close_after, |req: &OneShotRequest| {
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/health") => json_response(200, &json!({})),
            ("GET", "/v1/models") => json_response(200, &openai_models()),
            ("POST", CHAT) => json_response(
                200,
                &json!({
                    "id": "chatcmpl-closer", "object": "chat.completion",
                    "created": 1_700_000_000, "model": "mock-model",
                    "choices": [{ "index": 0, "finish_reason": "stop",
                                  "message": { "role": "assistant", "content": "from closer" } }],
                }),
            ),
            _ => json_response(404, &json!({ "error": "no route" })),
        }
    });
    let backup = MockBackend::start_named(Persona::Vllm, "backup");
    let corral = Scenario::new()
        .endpoint_with(
            "closer",
            &closer.url(),
            "vllm",
            // A roomy deadline: a check slowed by a loaded machine is not what this is about.
            &[
                ("priority", "200"),
                ("check_interval", "300ms"),
                ("check_timeout", "250ms"),
            ],
        )
        .mock_with(&backup, &[("priority", "100")])
        .start();
    corral.wait_all_healthy(2, WAIT);
    let checks_before = closer.count("/health");

    const CLIENTS: usize = 8;
    const EACH: usize = 25;
    let stop = AtomicBool::new(false);
    let api: &Api = &corral;
    let (results, odd_looks) = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let mut odd = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let e = api.endpoint("closer");
                if status(&e) != "healthy" || e["consecutive_failures"] != 0 {
                    odd.push(e.to_string());
                }
                std::thread::sleep(POLL);
            }
            odd
        });
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                s.spawn(|| {
                    (0..EACH)
                        .map(|_| api.post_json(CHAT, &chat(false)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let results: Vec<Resp> = clients
            .into_iter()
            .flat_map(|c| c.join().expect("client thread"))
            .collect();
        stop.store(true, Ordering::SeqCst);
        (results, watcher.join().expect("watcher thread"))
    });

    let failed: Vec<String> = results
        .iter()
        .filter(|r| r.status != 200)
        .map(|r| format!("{} {}", r.status, r.text()))
        .collect();
    assert!(failed.is_empty(), "failed requests: {failed:?}");
    let by_primary = results.iter().filter(|r| served_by(r) == "closer").count();
    assert!(
        by_primary * 10 >= results.len() * 9,
        "only {by_primary} of {} requests were served by the primary",
        results.len()
    );
    assert!(
        odd_looks.is_empty(),
        "the primary looked unwell during the run:\n{}",
        odd_looks.join("\n")
    );
    // Its checks pass too: a few more of them, on connections the server closes each time.
    wait_until(WAIT, "three more checks of closer", || {
        closer.count("/health") >= checks_before + 3
    });
    let e = corral.endpoint("closer");
    assert_eq!(status(&e), "healthy", "{e}");
    assert_eq!(e["status_changes"], 1, "{e}");
    assert_eq!(e["consecutive_failures"], 0, "{e}");
    assert_eq!(e["uptime_percentage"], 100.0, "a check failed: {e}");
    if !close_after.is_zero() {
        assert!(
            closer.swallowed() > 0,
            "no request was sent on a connection about to close: 9.6's case never happened"
        );
    }
}
