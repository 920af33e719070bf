//! Proves what the end-to-end tests rely on in the test house (`tests/common`): the mock
//! backends serve each persona's routes, fail on command, stream at the pace they are told
//! and see a client go away; an in-process Corral lets go of its port when dropped.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use house::*;
use serde_json::{json, Value};

fn ids(v: &Value) -> Vec<String> {
    v["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data array in {v}"))
        .iter()
        .map(|m| m["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn chat(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

#[test]
fn ollama_persona_serves_its_routes() {
    let m = MockBackend::start(Persona::Ollama);
    m.set_models(&["llama3:8b", "qwen:7b"]);
    let api = Api::new(&m.url());

    let r = api.get("/");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "Ollama is running");
    assert_eq!(r.header("X-Mock-Backend"), Some("ollama"));

    let (s, v) = api.get_json("/api/tags");
    assert_eq!(s, 200);
    assert_eq!(v["models"][0]["name"], "llama3:8b");
    assert_eq!(v["models"][1]["model"], "qwen:7b");
    assert_eq!(v["models"][0]["size"], 1000);

    let (s, v) = api.get_json("/v1/models");
    assert_eq!(s, 200);
    assert_eq!(v["object"], "list");
    assert_eq!(ids(&v), ["llama3:8b", "qwen:7b"]);

    let v = api.post_json("/api/chat", &chat("qwen:7b", false)).json();
    assert_eq!(v["message"]["content"], "from ollama");
    assert_eq!(v["model"], "qwen:7b");
    assert_eq!(v["done"], true);

    // Ollama streams by default.
    let body = json!({"model": "llama3:8b", "messages": []});
    let r = api.post_json("/api/chat", &body);
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    let lines: Vec<Value> = r
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).expect("NDJSON line"))
        .collect();
    assert_eq!(lines.len(), 4, "3 tokens and the final line: {lines:?}");
    assert_eq!(lines[0]["message"]["content"], "tok0 ");
    assert_eq!(lines[0]["done"], false);
    assert_eq!(lines[3]["done"], true);

    let v = api
        .post_json(
            "/api/generate",
            &json!({"model": "llama3:8b", "prompt": "hi", "stream": false}),
        )
        .json();
    assert_eq!(v["response"], "from ollama");

    let v = api
        .post_json("/v1/chat/completions", &chat("llama3:8b", false))
        .json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], "from ollama");
    assert_eq!(v["model"], "llama3:8b");

    assert_eq!(api.get("/health").status, 404);
    assert_eq!(api.get("/nope").status, 404);
    assert_eq!(api.request("POST", "/", &[], b"").status, 405);
}

#[test]
fn vllm_persona_serves_its_routes() {
    let m = MockBackend::start_named(Persona::Vllm, "vllm-a");
    assert_eq!(m.name(), "vllm-a");
    let api = Api::new(&m.url());

    let r = api.get("/health");
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({}));
    assert_eq!(r.header("x-mock-backend"), Some("vllm-a"));

    let (s, v) = api.get_json("/v1/models");
    assert_eq!(s, 200);
    assert_eq!(v["data"][0]["object"], "model");
    assert_eq!(ids(&v), ["mock-model"]);

    let v = api
        .post_json("/v1/chat/completions", &chat("x", false))
        .json();
    assert_eq!(v["choices"][0]["message"]["content"], "from vllm-a");
    assert_eq!(v["model"], "x");

    let v = api
        .post_json("/v1/completions", &json!({"model": "x", "prompt": "hi"}))
        .json();
    assert_eq!(v["choices"][0]["text"], "from vllm-a");

    assert_eq!(api.get("/").status, 404);
    assert_eq!(api.get("/api/tags").status, 404);
}

#[test]
fn lmstudio_and_nohealth_personas_serve_their_routes() {
    let lm = MockBackend::start(Persona::LmStudio);
    lm.set_models(&["qwen2.5-7b"]);
    let (s, v) = Api::new(&lm.url()).get_json("/api/v0/models");
    assert_eq!(s, 200);
    assert_eq!(v["data"][0]["id"], "qwen2.5-7b");
    assert_eq!(v["data"][0]["type"], "llm");
    assert_eq!(v["data"][0]["state"], "loaded");
    let (s, v) = Api::new(&lm.url()).get_json("/v1/models");
    assert_eq!(s, 200);
    assert_eq!(ids(&v), ["qwen2.5-7b"]);
    let v = Api::new(&lm.url())
        .post_json("/v1/chat/completions", &chat("qwen2.5-7b", false))
        .json();
    assert_eq!(v["choices"][0]["message"]["content"], "from lmstudio");
    assert_eq!(Api::new(&lm.url()).get("/health").status, 404);

    let oa = MockBackend::start(Persona::OpenAiNoHealth);
    assert_eq!(Api::new(&oa.url()).get("/health").status, 404);
    let (s, v) = Api::new(&oa.url()).get_json("/v1/models");
    assert_eq!(s, 200);
    assert_eq!(ids(&v), ["mock-model"]);
    let r = Api::new(&oa.url()).post_json("/v1/chat/completions", &chat("mock-model", false));
    assert_eq!(r.header("x-mock-backend"), Some("openai-no-health"));
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        "from openai-no-health"
    );
}

#[test]
fn behaviours_apply_globally_and_per_prefix() {
    let m = MockBackend::start(Persona::Vllm);
    let api = Api::new(&m.url());

    m.set_behaviour(Behaviour::Status(503));
    let r = api.get("/v1/models");
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"]["code"], 503);
    assert_eq!(r.header("x-mock-backend"), Some("vllm"));
    assert_eq!(
        api.post_json("/v1/chat/completions", &chat("m", true))
            .status,
        503
    );

    m.set_behaviour(Behaviour::StatusWithRetryAfter(429, Some("2".into())));
    let r = api.get("/health");
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("2"));
    m.set_behaviour(Behaviour::StatusWithRetryAfter(429, None));
    let r = api.get("/health");
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), None);

    m.set_behaviour(Behaviour::Up);
    m.set_behaviour_for("/health", Behaviour::Status(500));
    assert_eq!(api.get("/health").status, 500);
    assert_eq!(api.get("/v1/models").status, 200);
    m.clear_behaviour_for("/health");
    assert_eq!(api.get("/health").status, 200);

    // An override beats the global behaviour; the longest prefix wins.
    m.set_behaviour(Behaviour::Status(502));
    m.set_behaviour_for("/v1", Behaviour::Up);
    m.set_behaviour_for("/v1/chat", Behaviour::Status(504));
    assert_eq!(api.get("/v1/models").status, 200);
    assert_eq!(api.get("/health").status, 502);
    assert_eq!(
        api.post_json("/v1/chat/completions", &chat("m", false))
            .status,
        504
    );
    m.clear_overrides();
    assert_eq!(api.get("/v1/models").status, 502);
}

#[test]
fn slow_delays_and_hang_never_answers() {
    let m = MockBackend::start(Persona::Vllm);
    let api = Api::new(&m.url());

    m.set_behaviour(Behaviour::Slow(Duration::from_millis(300)));
    let t = Instant::now();
    assert_eq!(api.get("/health").status, 200);
    assert!(
        t.elapsed() >= Duration::from_millis(280),
        "{:?}",
        t.elapsed()
    );

    m.set_behaviour(Behaviour::Up);
    m.set_behaviour_for("/v1/chat", Behaviour::Hang);
    let t = Instant::now();
    let body = chat("m", false).to_string();
    let err = Api::with_timeout(&m.url(), Duration::from_millis(300))
        .try_request("POST", "/v1/chat/completions", &[], body.as_bytes())
        .expect_err("a hanging backend must not answer");
    assert!(matches!(err, ureq::Error::Timeout(_)), "{err}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    // The hang does not block the server: other routes still answer at once.
    let t = Instant::now();
    assert_eq!(api.get("/v1/models").status, 200);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
}

/// Send one keep-alive request on a raw socket and read its whole (small) reply.
fn keep_alive_conn(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"{}") {
        let n = s.read(&mut buf).expect("keep-alive reply");
        assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    s
}

#[test]
fn refuse_and_restore_on_the_same_port_repeatedly() {
    let m = MockBackend::start(Persona::Vllm);
    let port = m.port();
    let api = Api::with_timeout(&m.url(), Duration::from_secs(5));

    for round in 0..2 {
        let mut idle = keep_alive_conn(port);

        // A request hanging inside the mock when it stops listening.
        m.set_behaviour(Behaviour::Hang);
        let hung_api = api.clone();
        let hung = std::thread::spawn(move || {
            let t = Instant::now();
            let r = hung_api.try_request("GET", "/health", &[], b"");
            (r, t.elapsed())
        });
        wait_until(
            Duration::from_secs(3),
            "hung request reaches the mock",
            || m.in_flight() == 1,
        );

        m.refuse();
        assert!(m.is_refusing());
        let err = api
            .try_request("GET", "/health", &[], b"")
            .expect_err("refusing");
        assert!(
            matches!(&err, ureq::Error::Io(e) if e.kind() == ErrorKind::ConnectionRefused),
            "round {round}: {err}"
        );
        assert_eq!(m.open_connections(), 0);

        // The idle keep-alive connection was closed: EOF or reset, not a timeout.
        let mut buf = [0u8; 64];
        match idle.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => panic!("unexpected {n} bytes on a closed connection"),
            Err(e) => assert!(
                !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
                "keep-alive connection still open: {e}"
            ),
        }
        // The hanging request's connection was closed too.
        let (r, took) = hung.join().unwrap();
        let e = r.expect_err("hung request cannot succeed");
        assert!(!matches!(e, ureq::Error::Timeout(_)), "{e}");
        assert!(took < Duration::from_secs(4), "{took:?}");

        m.set_behaviour(Behaviour::Up);
        m.restore();
        assert!(!m.is_refusing());
        assert_eq!(m.port(), port);
        assert_eq!(api.get("/health").status, 200, "round {round}");
        assert_eq!(m.url(), format!("http://127.0.0.1:{port}"));
    }
}

#[test]
fn sse_chunks_arrive_spaced_by_the_chunk_delay() {
    let m = MockBackend::start(Persona::Vllm);
    m.set_chunk_delay(Duration::from_millis(100));
    m.set_chunks(5);
    let t = Instant::now();
    let mut s = Api::new(&m.url()).stream_json("/v1/chat/completions", &chat("m", true));
    assert_eq!(s.status, 200);
    assert_eq!(s.header("content-type"), Some("text/event-stream"));
    assert_eq!(s.header("x-mock-backend"), Some("vllm"));
    let chunks = s.chunks();
    assert!(s.complete());
    let events = sse_events(&chunks);
    assert_eq!(events.len(), 6, "5 chunks and [DONE]: {events:?}");
    for (i, e) in events[..5].iter().enumerate() {
        let v: Value = serde_json::from_str(&e.text).expect("chunk JSON");
        assert_eq!(v["choices"][0]["delta"]["content"], format!("tok{i} "));
        assert_eq!(v["model"], "m");
    }
    assert_eq!(events[5].text, "[DONE]");
    for w in events.windows(2) {
        let gap = w[1].at - w[0].at;
        assert!(gap >= Duration::from_millis(60), "gap {gap:?}");
    }
    assert!(t.elapsed() < Duration::from_secs(3));
}

#[test]
fn ndjson_lines_arrive_spaced_by_the_chunk_delay() {
    let m = MockBackend::start(Persona::Ollama);
    m.set_chunk_delay(Duration::from_millis(100));
    m.set_chunks(3);
    let mut s = Api::new(&m.url())
        .stream_json("/api/generate", &json!({"model": "llama3", "prompt": "hi"}));
    assert_eq!(s.status, 200);
    let lines = ndjson_lines(&s.chunks());
    assert_eq!(lines.len(), 4, "{lines:?}");
    let last: Value = serde_json::from_str(&lines[3].text).unwrap();
    assert_eq!(last["done"], true);
    for w in lines.windows(2) {
        let gap = w[1].at - w[0].at;
        assert!(gap >= Duration::from_millis(60), "gap {gap:?}");
    }
}

#[test]
fn streams_can_break_and_client_disconnects_are_seen() {
    let m = MockBackend::start(Persona::Vllm);
    m.set_chunks(5);
    m.set_stream_break_after(Some(2));
    let mut s = Api::new(&m.url()).stream_json(
        "/v1/completions",
        &json!({"model": "m", "prompt": "x", "stream": true}),
    );
    let (chunks, err) = s.try_chunks();
    let err = err.expect("a broken stream ends in an error");
    assert_eq!(err.kind(), ErrorKind::UnexpectedEof, "{err}");
    assert!(!s.complete());
    assert_eq!(sse_events(&chunks).len(), 2);

    m.set_stream_break_after(None);
    m.set_chunks(50);
    m.set_chunk_delay(Duration::from_millis(50));
    m.clear_log();
    let mut s = Api::new(&m.url()).stream_json("/v1/chat/completions", &chat("m", true));
    assert!(s.next_chunk().unwrap().is_some());
    assert_eq!(m.in_flight(), 1);
    s.disconnect();
    wait_until(
        Duration::from_secs(3),
        "mock sees the stream cancelled",
        || m.streams_cancelled() == 1,
    );
    assert_eq!(m.in_flight(), 0);
    assert_eq!(m.peak_in_flight(), 1);
}

#[test]
fn request_log_records_what_arrived() {
    let m = MockBackend::start(Persona::Vllm);
    let api = Api::new(&m.url());
    let t0 = Instant::now();
    for _ in 0..3 {
        api.get("/v1/models");
    }
    let body = serde_json::to_vec(&chat("llama", false)).unwrap();
    api.request(
        "POST",
        "/v1/chat/completions?a=1&b=two",
        &[("Content-Type", "application/json"), ("X-Test", "yes")],
        &body,
    );
    assert_eq!(m.count("/v1/models"), 3);
    assert_eq!(m.count("/v1/chat/completions"), 1);
    assert_eq!(m.count_prefix("/v1/"), 4);
    assert_eq!(m.total(), 4);
    let times = m.times("/v1/models");
    assert_eq!(times.len(), 3);
    assert!(times[0] >= t0 && times.windows(2).all(|w| w[0] <= w[1]));

    let last = m.requests().pop().unwrap();
    assert_eq!(last.method, "POST");
    assert_eq!(last.path, "/v1/chat/completions");
    assert_eq!(last.query, "a=1&b=two");
    assert_eq!(last.header("x-test"), Some("yes"));
    assert_eq!(
        last.header("Host"),
        Some(m.url().trim_start_matches("http://"))
    );
    assert_eq!(last.json()["model"], "llama");

    m.clear_log();
    assert_eq!(m.total(), 0);
    assert!(m.times("/v1/models").is_empty());
}

#[test]
fn an_in_process_corral_serves_and_lets_go_of_its_port_when_dropped() {
    let m = MockBackend::start_named(Persona::Vllm, "gpu");
    let corral = Scenario::new().mock(&m).start();
    corral.wait_all_healthy(1, Duration::from_secs(10));
    let resp = corral.post_json("/v1/chat/completions", &chat("mock-model", false));
    assert_eq!(resp.header("x-mock-backend"), Some("gpu"));
    let api = Api::clone(&corral);
    let t = Instant::now();
    drop(corral);
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    let err = api
        .try_request("GET", "/internal/health", &[], b"")
        .expect_err("stopped");
    assert!(
        matches!(&err, ureq::Error::Io(e) if e.kind() == ErrorKind::ConnectionRefused),
        "{err}"
    );
}
