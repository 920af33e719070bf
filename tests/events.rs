//! End-to-end `GET /internal/events` (SPEC 7.3): Corral in-process against mock backends,
//! the feed read as a client reads it (ureq, chunk by chunk), and a subscriber that never
//! reads held open on a raw socket. What a lagging subscriber is sent (`lagged`, then a
//! `snapshot`) is tested where it can be forced without flooding a socket: in `src/events.rs`
//! (the response body) and `actors/src/events.rs` (the hub).

use std::io::Read;
use std::time::{Duration, Instant};

use house::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);

/// One subscriber of `/internal/events`, reading frames as they arrive.
struct Feed {
    reader: ureq::BodyReader<'static>,
    buf: Vec<u8>,
}

/// One SSE frame: its `event:` name (empty for a comment) and its data.
#[derive(Debug)]
struct Frame {
    event: String,
    data: String,
}

impl Frame {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {:?}", self.data))
    }
}

impl Feed {
    fn open(api: &Api, token: Option<&str>) -> Feed {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_recv_response(Some(Duration::from_secs(5)))
            // Longer than any wait below; a stalled feed fails the read, not the test run.
            .timeout_per_read(Some(Duration::from_secs(20)))
            .build()
            .new_agent();
        let mut req = agent.get(api.url_for("/internal/events"));
        if let Some(token) = token {
            req = req.header("Authorization", format!("Bearer {token}"));
        }
        let resp = req.call().expect("GET /internal/events");
        assert_eq!(resp.status(), 200);
        let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert_eq!(content_type, "text/event-stream");
        Feed {
            reader: resp.into_body().into_reader(),
            buf: Vec::new(),
        }
    }

    /// The next frame, comments included.
    fn next(&mut self) -> Frame {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let raw: Vec<u8> = self.buf.drain(..end + 2).collect();
                return parse_frame(&String::from_utf8_lossy(&raw));
            }
            let mut chunk = [0u8; 8192];
            let n = self.reader.read(&mut chunk).expect("read the event feed");
            assert!(n > 0, "the event feed ended");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The first event named `event` whose data satisfies `pred`, within `timeout` (events
    /// before it are skipped; each read has its own deadline, so a feed that is quiet for
    /// good fails at the agent's read timeout, and a busy one here).
    fn wait_for(&mut self, timeout: Duration, event: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            assert!(
                Instant::now() < deadline,
                "no `{event}` event as expected within {timeout:?}"
            );
            let frame = self.next();
            if frame.event == event {
                let data = frame.json();
                if pred(&data) {
                    return data;
                }
            }
        }
    }
}

fn parse_frame(text: &str) -> Frame {
    let mut frame = Frame {
        event: String::new(),
        data: String::new(),
    };
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("event: ") {
            frame.event = v.to_string();
        } else if let Some(v) = line.strip_prefix("data: ") {
            frame.data = v.to_string();
        }
    }
    frame
}

fn is_rfc3339_utc(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == 24 && s.ends_with('Z') && s.as_bytes()[10] == b'T')
}

#[test]
fn a_dying_backend_and_a_new_model_list_reach_every_subscriber() {
    let mock = MockBackend::start_named(Persona::Vllm, "gpu-1");
    mock.set_models(&["llama3"]);
    let corral = Scenario::new()
        .discovery("model_discovery", "{ interval: 200ms, timeout: 150ms }")
        .mock_with(
            &mock,
            &[("check_interval", "100ms"), ("check_timeout", "80ms")],
        )
        .start();
    corral.wait_status("gpu-1", "healthy", WAIT);
    wait_until(WAIT, "llama3 discovered", || {
        corral.model_names() == vec!["llama3"]
    });
    let mut feeds = [Feed::open(&corral, None), Feed::open(&corral, None)];

    mock.set_models(&["llama3", "qwen"]);
    for feed in &mut feeds {
        let models = feed.wait_for(WAIT, "models", |d| d["endpoint"] == "gpu-1");
        assert_eq!(models["count"], 2, "{models}");
        assert!(is_rfc3339_utc(&models["at"]), "{models}");
    }

    mock.refuse();
    for feed in &mut feeds {
        let change = feed.wait_for(WAIT, "status", |d| d["endpoint"] == "gpu-1");
        assert_eq!(change["from"], "healthy", "{change}");
        assert_eq!(change["to"], "unhealthy", "{change}");
        assert_eq!(change["reason"], "connection refused", "{change}");
        assert!(is_rfc3339_utc(&change["at"]), "{change}");
    }
}

#[test]
fn breaker_moves_are_events() {
    let mock = MockBackend::start_named(Persona::Vllm, "gpu-1");
    let corral = Scenario::new()
        .mock_with(
            &mock,
            &[
                ("check_interval", "100ms"),
                ("check_timeout", "80ms"),
                ("max_backoff", "100ms"),
            ],
        )
        .start();
    corral.wait_status("gpu-1", "healthy", WAIT);
    let mut feed = Feed::open(&corral, None);
    mock.refuse();
    // The health breaker opens after the third failed check in a row (the default).
    let opened = feed.wait_for(WAIT, "breaker", |d| d["state"] == "open");
    assert_eq!(opened["endpoint"], "gpu-1", "{opened}");
    assert_eq!(opened["breaker"], "health", "{opened}");
    assert!(is_rfc3339_utc(&opened["at"]), "{opened}");
}

#[test]
fn a_subscriber_that_never_reads_delays_neither_the_others_nor_the_checks() {
    let mock = MockBackend::start_named(Persona::Vllm, "gpu-1");
    let corral = Scenario::new()
        .mock_with(
            &mock,
            &[
                ("check_interval", "100ms"),
                ("check_timeout", "80ms"),
                ("max_backoff", "100ms"),
                ("recovery_successes", "1"),
            ],
        )
        .start();
    corral.wait_status("gpu-1", "healthy", WAIT);

    // Subscribes, then never reads a byte until the end.
    let mut stalled = RawConn::connect(corral.authority());
    stalled
        .send(b"GET /internal/events HTTP/1.1\r\nHost: corral\r\n\r\n")
        .unwrap();
    let mut reader = Feed::open(&corral, None);

    // Down and up again, ten times: the reader sees every change as it happens, and the
    // checks keep their pace, whatever the stalled subscriber does.
    let started = Instant::now();
    for round in 0..10 {
        mock.set_behaviour(Behaviour::Status(503));
        let down = reader.wait_for(Duration::from_secs(3), "status", |d| d["to"] == "unhealthy");
        assert_eq!(down["reason"], "http 503", "round {round}: {down}");
        mock.set_behaviour(Behaviour::Up);
        reader.wait_for(Duration::from_secs(3), "status", |d| d["to"] == "healthy");
    }
    // Each round is two checks (and their waits), about 0.2–0.5 s: nothing held them up.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "ten rounds took {:?}",
        started.elapsed()
    );

    // The stalled subscriber's events waited for it, in order, on its own connection.
    let head = stalled.response_head(WAIT).expect("its response head");
    assert_eq!(head.status, 200);
    let mut text = String::new();
    let deadline = Instant::now() + WAIT;
    while text.matches("event: status").count() < 20 && Instant::now() < deadline {
        let bytes = stalled.read_some(WAIT).expect("its events");
        text.push_str(&String::from_utf8_lossy(&bytes));
    }
    assert!(
        text.matches("event: status").count() >= 20,
        "the stalled subscriber got: {text}"
    );
}

#[test]
fn the_feed_is_an_internal_route_behind_the_token() {
    let mock = MockBackend::start_named(Persona::Vllm, "gpu-1");
    let corral = Scenario::new()
        .server("internal_token", "s3cret")
        .mock_with(
            &mock,
            &[("check_interval", "100ms"), ("check_timeout", "80ms")],
        )
        .start();
    let denied = corral.get("/internal/events");
    assert_eq!(denied.status, 401, "{}", denied.text());
    let authed = (*corral).clone().with_token("s3cret");
    authed.wait_status("gpu-1", "healthy", WAIT);
    let mut feed = Feed::open(&authed, Some("s3cret"));
    mock.refuse();
    let change = feed.wait_for(WAIT, "status", |d| d["to"] == "unhealthy");
    assert_eq!(change["endpoint"], "gpu-1");
}

#[test]
fn an_open_feed_does_not_hold_up_shutdown() {
    let mock = MockBackend::start_named(Persona::Vllm, "gpu-1");
    let corral = Scenario::new()
        .server("shutdown_timeout", "8s")
        .mock(&mock)
        .start();
    let mut feed = Feed::open(&corral, None);
    let stopping = Instant::now();
    drop(corral); // stops Corral and waits for its thread
    assert!(
        stopping.elapsed() < Duration::from_secs(4),
        "shutdown took {:?} with a feed open (grace 8s)",
        stopping.elapsed()
    );
    // The feed ended as a feed ends: its body closed.
    let mut rest = Vec::new();
    let ended = feed.reader.read_to_end(&mut rest);
    assert!(ended.is_ok(), "the feed was cut, not ended: {ended:?}");
}
