//! Proves the end-to-end harness in `tests/common/` works, without Corral: the mock backends
//! serve each persona's routes and fail on command, the HTTP client decodes every framing and
//! timestamps streams, the polling helpers time out, and the process runner captures output,
//! finds the listening address, signals and reaps.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::corral::{parse_listen_addr, run_program, strip_ansi};
use common::http::{self, ndjson_lines, sse_events, Client};
use common::*;
use serde_json::{json, Value};

const SH: &str = "/bin/sh";

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
    let u = m.url();

    let r = get(&format!("{u}/"));
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "Ollama is running");
    assert_eq!(r.header("X-Mock-Backend"), Some("ollama"));

    let (s, v) = get_json(&format!("{u}/api/tags"));
    assert_eq!(s, 200);
    assert_eq!(v["models"][0]["name"], "llama3:8b");
    assert_eq!(v["models"][1]["model"], "qwen:7b");
    assert_eq!(v["models"][0]["size"], 1000);

    let (s, v) = get_json(&format!("{u}/v1/models"));
    assert_eq!(s, 200);
    assert_eq!(v["object"], "list");
    assert_eq!(ids(&v), ["llama3:8b", "qwen:7b"]);

    let v = post_json(&format!("{u}/api/chat"), &chat("qwen:7b", false)).json();
    assert_eq!(v["message"]["content"], "from ollama");
    assert_eq!(v["model"], "qwen:7b");
    assert_eq!(v["done"], true);

    // Ollama streams by default.
    let body = json!({"model": "llama3:8b", "messages": []});
    let r = post_json(&format!("{u}/api/chat"), &body);
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

    let v = post_json(
        &format!("{u}/api/generate"),
        &json!({"model": "llama3:8b", "prompt": "hi", "stream": false}),
    )
    .json();
    assert_eq!(v["response"], "from ollama");

    let v = post_json(
        &format!("{u}/v1/chat/completions"),
        &chat("llama3:8b", false),
    )
    .json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], "from ollama");
    assert_eq!(v["model"], "llama3:8b");

    assert_eq!(get(&format!("{u}/health")).status, 404);
    assert_eq!(get(&format!("{u}/nope")).status, 404);
    assert_eq!(
        http::request("POST", &format!("{u}/"), &[], b"").status,
        405
    );
}

#[test]
fn vllm_persona_serves_its_routes() {
    let m = MockBackend::start_named(Persona::Vllm, "vllm-a");
    assert_eq!(m.name(), "vllm-a");
    let u = m.url();

    let r = get(&format!("{u}/health"));
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({}));
    assert_eq!(r.header("x-mock-backend"), Some("vllm-a"));

    let (s, v) = get_json(&format!("{u}/v1/models"));
    assert_eq!(s, 200);
    assert_eq!(v["data"][0]["object"], "model");
    assert_eq!(ids(&v), ["mock-model"]);

    let v = post_json(&format!("{u}/v1/chat/completions"), &chat("x", false)).json();
    assert_eq!(v["choices"][0]["message"]["content"], "from vllm-a");
    assert_eq!(v["model"], "x");

    let v = post_json(
        &format!("{u}/v1/completions"),
        &json!({"model": "x", "prompt": "hi"}),
    )
    .json();
    assert_eq!(v["choices"][0]["text"], "from vllm-a");

    assert_eq!(get(&format!("{u}/")).status, 404);
    assert_eq!(get(&format!("{u}/api/tags")).status, 404);
}

#[test]
fn lmstudio_and_nohealth_personas_serve_their_routes() {
    let lm = MockBackend::start(Persona::LmStudio);
    lm.set_models(&["qwen2.5-7b"]);
    let (s, v) = get_json(&format!("{}/api/v0/models", lm.url()));
    assert_eq!(s, 200);
    assert_eq!(v["data"][0]["id"], "qwen2.5-7b");
    assert_eq!(v["data"][0]["type"], "llm");
    assert_eq!(v["data"][0]["state"], "loaded");
    let (s, v) = get_json(&format!("{}/v1/models", lm.url()));
    assert_eq!(s, 200);
    assert_eq!(ids(&v), ["qwen2.5-7b"]);
    let v = post_json(
        &format!("{}/v1/chat/completions", lm.url()),
        &chat("qwen2.5-7b", false),
    )
    .json();
    assert_eq!(v["choices"][0]["message"]["content"], "from lmstudio");
    assert_eq!(get(&format!("{}/health", lm.url())).status, 404);

    let oa = MockBackend::start(Persona::OpenAiNoHealth);
    assert_eq!(get(&format!("{}/health", oa.url())).status, 404);
    let (s, v) = get_json(&format!("{}/v1/models", oa.url()));
    assert_eq!(s, 200);
    assert_eq!(ids(&v), ["mock-model"]);
    let r = post_json(
        &format!("{}/v1/chat/completions", oa.url()),
        &chat("mock-model", false),
    );
    assert_eq!(r.header("x-mock-backend"), Some("openai-no-health"));
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        "from openai-no-health"
    );
}

#[test]
fn behaviours_apply_globally_and_per_prefix() {
    let m = MockBackend::start(Persona::Vllm);
    let u = m.url();

    m.set_behaviour(Behaviour::Status(503));
    let r = get(&format!("{u}/v1/models"));
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"]["code"], 503);
    assert_eq!(r.header("x-mock-backend"), Some("vllm"));
    assert_eq!(
        post_json(&format!("{u}/v1/chat/completions"), &chat("m", true)).status,
        503
    );

    m.set_behaviour(Behaviour::StatusWithRetryAfter(429, Some("2".into())));
    let r = get(&format!("{u}/health"));
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("2"));
    m.set_behaviour(Behaviour::StatusWithRetryAfter(429, None));
    let r = get(&format!("{u}/health"));
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), None);

    m.set_behaviour(Behaviour::Up);
    m.set_behaviour_for("/health", Behaviour::Status(500));
    assert_eq!(get(&format!("{u}/health")).status, 500);
    assert_eq!(get(&format!("{u}/v1/models")).status, 200);
    m.clear_behaviour_for("/health");
    assert_eq!(get(&format!("{u}/health")).status, 200);

    // An override beats the global behaviour; the longest prefix wins.
    m.set_behaviour(Behaviour::Status(502));
    m.set_behaviour_for("/v1", Behaviour::Up);
    m.set_behaviour_for("/v1/chat", Behaviour::Status(504));
    assert_eq!(get(&format!("{u}/v1/models")).status, 200);
    assert_eq!(get(&format!("{u}/health")).status, 502);
    assert_eq!(
        post_json(&format!("{u}/v1/chat/completions"), &chat("m", false)).status,
        504
    );
    m.clear_overrides();
    assert_eq!(get(&format!("{u}/v1/models")).status, 502);
}

#[test]
fn slow_delays_and_hang_never_answers() {
    let m = MockBackend::start(Persona::Vllm);
    let u = m.url();

    m.set_behaviour(Behaviour::Slow(Duration::from_millis(300)));
    let t = Instant::now();
    assert_eq!(get(&format!("{u}/health")).status, 200);
    assert!(
        t.elapsed() >= Duration::from_millis(280),
        "{:?}",
        t.elapsed()
    );

    m.set_behaviour(Behaviour::Up);
    m.set_behaviour_for("/v1/chat", Behaviour::Hang);
    let t = Instant::now();
    let err = Client::with_timeout(Duration::from_millis(300))
        .post_json(&format!("{u}/v1/chat/completions"), &chat("m", false))
        .expect_err("a hanging backend must not answer");
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    // The hang does not block the server: other routes still answer at once.
    let t = Instant::now();
    assert_eq!(get(&format!("{u}/v1/models")).status, 200);
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
    let health = format!("{}/health", m.url());

    for round in 0..2 {
        let mut idle = keep_alive_conn(port);

        // A request hanging inside the mock when it stops listening.
        m.set_behaviour(Behaviour::Hang);
        let hung_url = health.clone();
        let hung = std::thread::spawn(move || {
            let t = Instant::now();
            let r = Client::with_timeout(Duration::from_secs(5)).get(&hung_url);
            (r, t.elapsed())
        });
        wait_until(
            Duration::from_secs(3),
            "hung request reaches the mock",
            || m.in_flight() == 1,
        );

        m.refuse();
        assert!(m.is_refusing());
        let err = http::try_get(&health).expect_err("refusing");
        assert_eq!(
            err.kind(),
            ErrorKind::ConnectionRefused,
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
        assert_ne!(e.kind(), ErrorKind::TimedOut, "{e}");
        assert!(took < Duration::from_secs(4), "{took:?}");

        m.set_behaviour(Behaviour::Up);
        m.restore();
        assert!(!m.is_refusing());
        assert_eq!(m.port(), port);
        let r = get(&health);
        assert_eq!(r.status, 200, "round {round}");
        assert_eq!(m.url(), format!("http://127.0.0.1:{port}"));
    }
}

#[test]
fn sse_chunks_arrive_spaced_by_the_chunk_delay() {
    let m = MockBackend::start(Persona::Vllm);
    m.set_chunk_delay(Duration::from_millis(100));
    m.set_chunks(5);
    let t = Instant::now();
    let mut s = http::stream_json(
        &format!("{}/v1/chat/completions", m.url()),
        &chat("m", true),
    );
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
    let mut s = http::stream_json(
        &format!("{}/api/generate", m.url()),
        &json!({"model": "llama3", "prompt": "hi"}),
    );
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
    let mut s = http::stream_json(
        &format!("{}/v1/completions", m.url()),
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
    let mut s = http::stream_json(
        &format!("{}/v1/chat/completions", m.url()),
        &chat("m", true),
    );
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
    let u = m.url();
    let t0 = Instant::now();
    for _ in 0..3 {
        get(&format!("{u}/v1/models"));
    }
    let body = serde_json::to_vec(&chat("llama", false)).unwrap();
    http::request(
        "POST",
        &format!("{u}/v1/chat/completions?a=1&b=two"),
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

/// Serve one canned reply per accepted connection, recording each request head.
fn canned_server(replies: Vec<&'static [u8]>) -> (u16, std::thread::JoinHandle<Vec<String>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let mut heads = Vec::new();
        for reply in replies {
            let (mut s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0);
                got.extend_from_slice(&buf[..n]);
            }
            heads.push(String::from_utf8_lossy(&got).into_owned());
            s.write_all(reply).unwrap();
            // Half-close, then drain what the client still sends, so closing never resets.
            s.shutdown(std::net::Shutdown::Write).unwrap();
            while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
        }
        heads
    });
    (port, h)
}

#[test]
fn client_decodes_every_framing() {
    let (port, server) = canned_server(vec![
        b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\nuntil eof",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n\
          5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n",
        b"HTTP/1.1 202 Accepted\r\nContent-Length: 3\r\n\r\nabcIGNORED",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
    ]);
    let base = format!("http://127.0.0.1:{port}");
    let r = get(&base);
    assert_eq!((r.status, r.text().as_str()), (200, "until eof"));
    assert_eq!(r.header("x-a"), Some("1"));
    let r = http::request("PUT", &format!("{base}/p?q=1"), &[("X-B", "2")], b"xyz");
    assert_eq!((r.status, r.text().as_str()), (201, "hello, world"));
    let r = get(&format!("{base}/len"));
    assert_eq!((r.status, r.text().as_str()), (202, "abc"));
    let err = http::try_get(&base).expect_err("truncated chunked body");
    assert_eq!(err.kind(), ErrorKind::UnexpectedEof);

    let heads = server.join().unwrap();
    assert!(heads[0].starts_with("GET / HTTP/1.1\r\n"), "{}", heads[0]);
    assert!(heads[0].contains(&format!("Host: 127.0.0.1:{port}\r\n")));
    assert!(heads[0].contains("Connection: close\r\n"));
    assert!(
        heads[1].starts_with("PUT /p?q=1 HTTP/1.1\r\n"),
        "{}",
        heads[1]
    );
    assert!(heads[1].contains("Content-Length: 3\r\n"));
    assert!(heads[1].contains("X-B: 2\r\n"));
}

#[test]
fn wait_helpers_poll_until_true() {
    let mut n = 0;
    wait_until(Duration::from_secs(1), "third call", || {
        n += 1;
        n >= 3
    });
    assert_eq!(n, 3);
    let t = Instant::now();
    let v = wait_for(Duration::from_secs(1), "a value", || {
        (t.elapsed() >= Duration::from_millis(50)).then_some(7)
    });
    assert_eq!(v, 7);
    assert!(!poll_until(Duration::from_millis(50), || false));
}

#[test]
#[should_panic(expected = "waiting for: the impossible")]
fn wait_until_panics_with_its_description() {
    wait_until(Duration::from_millis(100), "the impossible", || false);
}

#[test]
fn listen_address_is_found_in_text_json_and_colour() {
    assert_eq!(
        parse_listen_addr("2024-01-01T00:00:00Z  INFO corral: listening on http://127.0.0.1:40114")
            .as_deref(),
        Some("127.0.0.1:40114")
    );
    assert_eq!(
        parse_listen_addr(
            r#"{"level":"INFO","fields":{"message":"listening on http://[::1]:8080"}}"#
        )
        .as_deref(),
        Some("[::1]:8080")
    );
    assert_eq!(
        parse_listen_addr("listening on http://localhost:99.").as_deref(),
        Some("localhost:99")
    );
    assert_eq!(parse_listen_addr("listening on 127.0.0.1:1"), None);
    let coloured =
        "\u{1b}[2m2024\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m listening on http://127.0.0.1:5";
    assert_eq!(
        strip_ansi(coloured),
        "2024  INFO listening on http://127.0.0.1:5"
    );
}

#[test]
fn process_runner_captures_signals_and_reaps() {
    let script = r#"echo starting; echo "{\"fields\":{\"message\":\"listening on http://127.0.0.1:4321\"}}"; echo "oops $FOO" >&2; exec sleep 30"#;
    let c = Corral::start_program(Path::new(SH), &["-c", script], &[("FOO", "bar")]);
    assert_eq!(c.url(), "http://127.0.0.1:4321");
    assert_eq!(c.base(), "127.0.0.1:4321");
    assert!(
        c.wait_for_log("oops bar", Duration::from_secs(5)),
        "{}",
        c.logs()
    );
    assert!(c.log_lines().iter().any(|l| l == "starting"));
    assert!(c.is_running());
    assert_eq!(c.wait_exit(Duration::from_millis(50)), None);
    c.signal("SIGTERM");
    assert_eq!(c.wait_exit(Duration::from_secs(5)), Some(128 + 15));
    assert!(!c.is_running());
    c.signal("TERM"); // a no-op once exited
}

#[test]
#[should_panic(expected = "bad config here")]
fn process_runner_reports_an_early_exit_with_its_output() {
    Corral::start_program(
        Path::new(SH),
        &["-c", "echo 'bad config here' >&2; exit 1"],
        &[],
    );
}

#[test]
fn one_shot_runs_capture_output_and_time_out() {
    let o = run_program(
        Path::new(SH),
        &[
            "-c",
            "echo out; echo err >&2; echo \"nc=$NO_COLOR\"; exit 3",
        ],
        &[],
        None,
        Duration::from_secs(5),
    );
    assert_eq!(o.code, Some(3));
    assert_eq!(o.stdout, "out\nnc=1");
    assert_eq!(o.stderr, "err");
    assert!(!o.timed_out);

    let t = Instant::now();
    let o = run_program(
        Path::new(SH),
        &["-c", "exec sleep 30"],
        &[],
        None,
        Duration::from_millis(200),
    );
    assert!(o.timed_out);
    assert_eq!(o.code, None);
    assert!(t.elapsed() < Duration::from_secs(3));

    // The corral binary path is wired in (its behaviour is tested elsewhere).
    assert!(Path::new(common::corral::CORRAL_BIN).exists());
}
