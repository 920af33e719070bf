//! SPEC 12, `server.rate_limits`: Olla's request rate limits as an Olla user's tools see them
//! (its `test/scripts/security/test-request-rate-limits.sh` reads the same headers and
//! statuses). In-process Corral against mock backends; every test talks from 127.0.0.1, and
//! slow rates (6 a minute: one token in 10 s) keep the buckets from refilling mid-test.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use house::*;

const WAIT: Duration = Duration::from_secs(10);
const CHAT: &str = "/olla/proxy/v1/chat/completions";

fn post_chat(corral: &Corral, headers: &[(&str, &str)]) -> Resp {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    corral.request(
        "POST",
        CHAT,
        &all,
        chat("mock-model", false).to_string().as_bytes(),
    )
}

fn statuses(corral: &Corral, headers: &[(&str, &str)], n: usize) -> Vec<u16> {
    (0..n).map(|_| post_chat(corral, headers).status).collect()
}

fn number(r: &Resp, name: &str) -> u64 {
    let v = r
        .header(name)
        .unwrap_or_else(|| panic!("no {name} on {} {:?}", r.status, r.headers));
    v.parse()
        .unwrap_or_else(|_| panic!("{name}: {v:?} is not a whole number"))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// One vLLM mock behind a Corral with these `server.rate_limits`, healthy.
fn limited(rate_limits: &str) -> (MockBackend, Corral) {
    let vllm = MockBackend::start(Persona::Vllm);
    let corral = Scenario::new()
        .server("rate_limits", rate_limits)
        .mock(&vllm)
        .start();
    corral.wait_all_healthy(1, WAIT);
    (vllm, corral)
}

#[test]
fn a_burst_over_the_limit_gets_429_with_retry_after_and_the_headers() {
    let (vllm, corral) =
        limited("{ global_requests_per_minute: 0, per_ip_requests_per_minute: 6, burst_size: 3 }");
    let answers: Vec<Resp> = (0..5).map(|_| post_chat(&corral, &[])).collect();
    let got: Vec<u16> = answers.iter().map(|r| r.status).collect();
    assert_eq!(got, [200, 200, 200, 429, 429]);

    // Under the limit: the backend's answer, with the headers counting down.
    let remaining: Vec<u64> = answers[..3]
        .iter()
        .map(|r| number(r, "x-ratelimit-remaining"))
        .collect();
    assert_eq!(remaining, [2, 1, 0]);
    for r in &answers[..3] {
        assert!(r.header("x-mock-backend").is_some(), "{:?}", r.headers);
        assert_eq!(number(r, "x-ratelimit-limit"), 6);
        assert!(r.header("retry-after").is_none());
    }

    // Over it: 429 from Corral, in Corral's error shape, with when to come back.
    for r in &answers[3..] {
        assert_eq!(r.json()["error"], "rate_limited", "{}", r.text());
        assert!(r.json()["message"].as_str().unwrap().contains("6 a minute"));
        assert!(r.header("x-mock-backend").is_none());
        assert_eq!(number(r, "x-ratelimit-limit"), 6);
        assert_eq!(number(r, "x-ratelimit-remaining"), 0);
        // One token in 10 s: the wait is at most that, in whole seconds.
        let retry = number(r, "retry-after");
        assert!((1..=10).contains(&retry), "Retry-After: {retry}");
    }

    // Reset: Unix seconds, the end of the minute the count is in.
    let now = unix_now();
    for r in &answers {
        let reset = number(r, "x-ratelimit-reset");
        assert!(
            (now..=now + 61).contains(&reset),
            "X-RateLimit-Reset {reset}, now {now}"
        );
    }

    // Nothing refused reached the backend or counted against it.
    assert_eq!(vllm.count("/v1/chat/completions"), 3);
    corral.all_untouched().unwrap();
}

#[test]
fn olla_defaults_apply_when_the_section_names_no_values() {
    let (_vllm, corral) = limited("{}");
    let answers: Vec<Resp> = (0..3).map(|_| post_chat(&corral, &[])).collect();
    for (i, r) in answers.iter().enumerate() {
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(number(r, "x-ratelimit-limit"), 100);
        // Burst 50: the bucket, not the minute's 100, is what is left right now.
        assert_eq!(number(r, "x-ratelimit-remaining"), 49 - i as u64);
    }
}

#[test]
fn a_flood_from_one_client_never_reaches_the_backend_or_its_health() {
    let (vllm, corral) =
        limited("{ global_requests_per_minute: 0, per_ip_requests_per_minute: 6, burst_size: 2 }");
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let api = Api::clone(&corral);
            std::thread::spawn(move || {
                (0..10)
                    .map(|_| {
                        api.request(
                            "POST",
                            CHAT,
                            &[("Content-Type", "application/json")],
                            chat("mock-model", false).to_string().as_bytes(),
                        )
                        .status
                    })
                    .collect::<Vec<u16>>()
            })
        })
        .collect();
    let all: Vec<u16> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert_eq!(all.iter().filter(|&&s| s == 200).count(), 2, "{all:?}");
    assert_eq!(all.iter().filter(|&&s| s == 429).count(), 78, "{all:?}");
    assert_eq!(vllm.count("/v1/chat/completions"), 2);
    corral.all_untouched().unwrap();
    assert_eq!(corral.endpoint(vllm.name())["status"], "healthy");
}

#[test]
fn each_forwarded_client_has_its_own_bucket_behind_a_trusted_proxy() {
    let (vllm, corral) = limited(
        "{ global_requests_per_minute: 0, per_ip_requests_per_minute: 6, burst_size: 2, \
         trust_proxy_headers: true, trusted_proxy_cidrs: [\"127.0.0.0/8\"] }",
    );
    let a = [("X-Forwarded-For", "203.0.113.1")];
    let b = [("X-Forwarded-For", "203.0.113.2")];
    assert_eq!(statuses(&corral, &a, 3), [200, 200, 429]);
    assert_eq!(statuses(&corral, &b, 3), [200, 200, 429]);
    // X-Real-IP, when there is no X-Forwarded-For.
    assert_eq!(
        statuses(&corral, &[("X-Real-IP", "203.0.113.3")], 3),
        [200, 200, 429]
    );
    // A client that adds its own X-Forwarded-For entry in front of what our proxy wrote
    // is still the address our proxy saw.
    assert_eq!(
        statuses(
            &corral,
            &[("X-Forwarded-For", "198.51.100.9, 203.0.113.1")],
            1
        ),
        [429]
    );
    assert_eq!(vllm.count("/v1/chat/completions"), 6);
}

#[test]
fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
    // 127.0.0.1, the peer, is outside the trusted networks: every request is its own.
    let (_vllm, corral) = limited(
        "{ global_requests_per_minute: 0, per_ip_requests_per_minute: 6, burst_size: 2, \
         trust_proxy_headers: true, trusted_proxy_cidrs: [\"10.0.0.0/8\", \"fd00::/8\"] }",
    );
    assert_eq!(
        statuses(&corral, &[("X-Forwarded-For", "203.0.113.1")], 2),
        [200, 200]
    );
    assert_eq!(
        statuses(&corral, &[("X-Forwarded-For", "203.0.113.2")], 1),
        [429]
    );
    assert_eq!(statuses(&corral, &[("X-Real-IP", "203.0.113.3")], 1), [429]);
}

#[test]
fn forwarding_headers_are_ignored_unless_trusted() {
    // The peer is inside the (default) trusted networks, but trust_proxy_headers is off.
    let (_vllm, corral) =
        limited("{ global_requests_per_minute: 0, per_ip_requests_per_minute: 6, burst_size: 2 }");
    assert_eq!(
        statuses(&corral, &[("X-Forwarded-For", "203.0.113.1")], 2),
        [200, 200]
    );
    assert_eq!(
        statuses(&corral, &[("X-Forwarded-For", "203.0.113.2")], 1),
        [429]
    );
}

#[test]
fn health_has_its_own_bucket_apart_from_the_proxy_and_the_global_one() {
    let (_vllm, corral) = limited(
        "{ global_requests_per_minute: 6, per_ip_requests_per_minute: 60, \
         health_requests_per_minute: 12, burst_size: 3 }",
    );
    // The global bucket runs dry.
    assert_eq!(statuses(&corral, &[], 4), [200, 200, 200, 429]);
    // /internal/health draws on its own bucket (start-up took one of its tokens).
    let first = corral.get("/internal/health");
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(number(&first, "x-ratelimit-limit"), 12);
    let mut answers = vec![first];
    for _ in 0..3 {
        answers.push(corral.get("/internal/health"));
    }
    let last = answers.last().unwrap();
    assert_eq!(last.status, 429, "{:?}", answers.iter().map(|r| r.status));
    assert_eq!(last.json()["error"], "rate_limited");
    assert_eq!(number(last, "x-ratelimit-limit"), 12);
    // 12 a minute: a token in 5 s.
    assert!((1..=5).contains(&number(last, "retry-after")));
}

#[test]
fn status_and_listings_are_not_limited() {
    let (_vllm, corral) =
        limited("{ global_requests_per_minute: 0, per_ip_requests_per_minute: 6, burst_size: 1 }");
    assert_eq!(statuses(&corral, &[], 2), [200, 429]);
    for path in [
        "/v1/models",
        "/olla/models",
        "/internal/status",
        "/internal/status/endpoints",
    ] {
        for _ in 0..3 {
            let r = corral.get(path);
            assert_eq!(r.status, 200, "{path}: {}", r.text());
            assert!(r.header("x-ratelimit-limit").is_none(), "{path}");
        }
    }
}

#[test]
fn with_every_limit_off_nothing_is_limited_and_no_headers_are_sent() {
    // The test house's default.
    let vllm = MockBackend::start(Persona::Vllm);
    let corral = Scenario::new().mock(&vllm).start();
    corral.wait_all_healthy(1, WAIT);
    for _ in 0..60 {
        let r = post_chat(&corral, &[]);
        assert_eq!(r.status, 200);
        assert!(r.header("x-ratelimit-limit").is_none());
    }
    assert!(corral
        .get("/internal/health")
        .header("x-ratelimit-limit")
        .is_none());
}

#[test]
fn a_refused_request_body_is_never_read_as_the_next_request() {
    let (vllm, corral) =
        limited("{ global_requests_per_minute: 0, per_ip_requests_per_minute: 6, burst_size: 1 }");
    assert_eq!(statuses(&corral, &[], 1), [200]);
    // A refused POST whose body is a request of its own, on a kept-alive connection.
    let authority = corral.authority();
    let smuggled = format!("GET /internal/status HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    let mut c = RawConn::connect(authority);
    c.send(
        format!(
            "POST {CHAT} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{smuggled}",
            smuggled.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let refused = c.response(WAIT).unwrap();
    assert_eq!(refused.status, 429, "{}", refused.text());
    // Then: either the connection is closed, or what comes next is read as the next
    // request, never the body that was refused.
    let next = format!("GET /v1/models HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    if c.send(next.as_bytes()).is_ok() {
        if let Ok(r) = c.response(WAIT) {
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(r.json()["object"], "list", "{}", r.text());
        }
    }
    assert_eq!(vllm.count("/v1/chat/completions"), 1);
}
