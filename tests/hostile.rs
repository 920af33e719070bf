//! SPEC 11 from a hostile client's side: odd methods, odd and duplicated headers, odd path
//! spellings, bodies that lie about their length, slow heads and bodies, and clients that
//! vanish at every stage of an exchange — all on raw sockets, against one in-process Corral
//! with two mock backends. After each group of cases every endpoint must look as if nothing
//! had happened (`healthy`, no failures, proxy breaker closed at 0), nothing may stay in
//! flight and `/internal/health` must answer; at the end the process's open descriptors must
//! be back near their count after warm-up.
//!
//! One test, so that nothing else in this binary opens descriptors meanwhile. Cases of a
//! group run concurrently (the slow ones take a deadline each), and every failure is
//! collected, so one run reports all of them.

use std::time::{Duration, Instant};

use house::wait::poll_until;
use house::*;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

/// How long a case waits for Corral to answer or close: the one-second read deadlines of
/// the scenario and a generous margin.
const CASE_DEADLINE: Duration = Duration::from_secs(4);

/// Corral must give up on a slow or silent client within this (its deadlines are 1s).
const LATE: Duration = Duration::from_secs(3);

/// Descriptors the process may hold beyond its warm-up count at the end (pooled upstream
/// connections come and go with the pool's own timers).
const FD_SLACK: usize = 8;

/// What every case can reach: Corral's address and the mocks that log what arrived.
struct Ctx {
    authority: String,
    backends: [MockBackend; 2],
}

impl Ctx {
    /// Every request the backends received, oldest first per backend.
    fn seen(&self) -> Vec<house::mock::Seen> {
        self.backends.iter().flat_map(|m| m.requests()).collect()
    }
}

type Outcome = Result<(), String>;

struct Case {
    name: String,
    run: Box<dyn Fn(&Ctx) -> Outcome + Send + Sync>,
}

fn case(name: impl Into<String>, run: impl Fn(&Ctx) -> Outcome + Send + Sync + 'static) -> Case {
    Case {
        name: name.into(),
        run: Box::new(run),
    }
}

/// How Corral reacted to what a case sent.
#[derive(Debug)]
enum Reaction {
    Answer(Resp),
    /// Closed (EOF or reset) without a response.
    Closed,
}

/// Corral's answer, or its close without one; an error when it does neither in time or
/// sends something that is not HTTP.
fn reaction(c: &mut RawConn) -> Result<Reaction, String> {
    match c.response(CASE_DEADLINE) {
        Ok(r) => Ok(Reaction::Answer(r)),
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            Err(format!("neither answered nor closed: {e}"))
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
            ) =>
        {
            Ok(Reaction::Closed)
        }
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            if e.to_string().ends_with("after \"\"") {
                Ok(Reaction::Closed)
            } else {
                Err(format!("closed mid-response: {e}"))
            }
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Send `bytes` on a new connection and take the reaction.
fn exchange(ctx: &Ctx, bytes: &[u8]) -> Result<Reaction, String> {
    let mut c = RawConn::connect(&ctx.authority);
    c.send(bytes).map_err(|e| format!("send: {e}"))?;
    reaction(&mut c)
}

/// A request head: `METHOD target HTTP/1.1`, `Host`, then `extra` lines (each ending
/// `\r\n`) and the blank line.
fn head(ctx: &Ctx, method: &str, target: &str, extra: &str) -> String {
    format!(
        "{method} {target} HTTP/1.1\r\nHost: {}\r\n{extra}\r\n",
        ctx.authority
    )
}

fn chat_body(stream: bool) -> String {
    json!({"model": "mock-model", "stream": stream,
           "messages": [{"role": "user", "content": "hi"}]})
    .to_string()
}

/// A JSON POST with an honest `Content-Length`.
fn post(ctx: &Ctx, method: &str, target: &str, extra: &str, body: &str) -> Vec<u8> {
    let extra = format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\n{extra}",
        body.len()
    );
    format!("{}{body}", head(ctx, method, target, &extra)).into_bytes()
}

/// Corral answered with a status that `ok` accepts.
fn answered(r: Result<Reaction, String>, ok: impl Fn(u16) -> bool) -> Outcome {
    match r? {
        Reaction::Answer(resp) if ok(resp.status) => Ok(()),
        Reaction::Answer(resp) => Err(format!("answered {} {}", resp.status, resp.text())),
        Reaction::Closed => Err("closed without an answer".to_string()),
    }
}

/// Corral refused it (4xx) or closed the connection; nothing is forwarded as a success
/// and nothing is a server error.
fn refused(r: Result<Reaction, String>) -> Outcome {
    match r? {
        Reaction::Answer(resp) if (400..500).contains(&resp.status) => Ok(()),
        Reaction::Answer(resp) => Err(format!("answered {} {}", resp.status, resp.text())),
        Reaction::Closed => Ok(()),
    }
}

/// Anything but a server error (or silence): a request the client got wrong is the
/// client's problem, never a 5xx.
fn not_5xx(r: Result<Reaction, String>) -> Outcome {
    match r? {
        Reaction::Answer(resp) if resp.status >= 500 => {
            Err(format!("answered {} {}", resp.status, resp.text()))
        }
        _ => Ok(()),
    }
}

fn odd_methods() -> Vec<Case> {
    ["PROPFIND", "FOO", "CONNECT", "TRACE", "OPTIONS"]
        .into_iter()
        .map(|method| {
            case(format!("{method} to the proxy"), move |ctx| {
                let req = post(
                    ctx,
                    method,
                    "/olla/proxy/v1/chat/completions",
                    "",
                    &chat_body(false),
                );
                not_5xx(exchange(ctx, &req))
            })
        })
        .chain([case("PROPFIND on a listing", |ctx| {
            not_5xx(exchange(
                ctx,
                head(ctx, "PROPFIND", "/v1/models", "").as_bytes(),
            ))
        })])
        .collect()
}

fn odd_headers() -> Vec<Case> {
    let chat = "/olla/proxy/v1/chat/completions";
    vec![
        case("two Content-Length", move |ctx| {
            let body = chat_body(false);
            let extra = format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\nContent-Length: {}\r\n",
                body.len(),
                body.len() - 5
            );
            let req = format!("{}{body}", head(ctx, "POST", chat, &extra));
            refused(exchange(ctx, req.as_bytes()))
        }),
        case(
            "Transfer-Encoding: chunked and Content-Length",
            move |ctx| {
                let body = chat_body(false);
                let extra = format!(
                    "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\
                 Content-Length: {}\r\n",
                    body.len()
                );
                let req = format!(
                    "{}{:x}\r\n{body}\r\n0\r\n\r\n",
                    head(ctx, "POST", chat, &extra),
                    body.len()
                );
                not_5xx(exchange(ctx, req.as_bytes()))
            },
        ),
        case("Connection: close, x-foo", move |ctx| {
            let req = post(
                ctx,
                "POST",
                chat,
                "Connection: close, x-foo\r\nX-Foo: secret\r\nX-Case: connection-names\r\n",
                &chat_body(false),
            );
            let mut c = RawConn::connect(&ctx.authority);
            c.send(&req).map_err(|e| e.to_string())?;
            answered(reaction(&mut c), |s| s == 200)?;
            if c.wait_closed(CASE_DEADLINE).is_none() {
                return Err("the connection stayed open after Connection: close".into());
            }
            let seen = ctx
                .seen()
                .into_iter()
                .find(|r| r.header("x-case") == Some("connection-names"))
                .ok_or("the request never reached the backend")?;
            match seen.header("x-foo") {
                Some(v) => Err(format!("X-Foo, named in Connection, was forwarded: {v}")),
                None => Ok(()),
            }
        }),
        case("Expect: x", move |ctx| {
            let req = post(ctx, "POST", chat, "Expect: x\r\n", &chat_body(false));
            answered(exchange(ctx, &req), |s| s == 200)
        }),
        case("Expect: 100-continue, body sent at once", move |ctx| {
            let extra = "Expect: 100-continue\r\n";
            let req = post(ctx, "POST", chat, extra, &chat_body(false));
            answered(exchange(ctx, &req), |s| s == 200)
        }),
        case("Upgrade: websocket", move |ctx| {
            let extra = "Connection: Upgrade\r\nUpgrade: websocket\r\n";
            let req = post(ctx, "POST", chat, extra, &chat_body(false));
            not_5xx(exchange(ctx, &req))
        }),
        case("TE, Keep-Alive and Proxy-Connection", move |ctx| {
            let extra = "Connection: TE, Keep-Alive\r\nTE: trailers, deflate\r\n\
                         Keep-Alive: timeout=1\r\nProxy-Connection: keep-alive\r\n";
            let req = post(ctx, "POST", chat, extra, &chat_body(false));
            answered(exchange(ctx, &req), |s| s == 200)
        }),
        case("100 duplicated X-A headers", move |ctx| {
            // Far below max_header_size, but actix parses at most 96 headers: 431 is fair.
            let extra: String = (0..100).map(|i| format!("X-A: {i}\r\n")).collect();
            let req = post(ctx, "POST", chat, &extra, &chat_body(false));
            answered(exchange(ctx, &req), |s| s == 200 || s == 431)
        }),
        case("non-UTF-8 header bytes", move |ctx| {
            let mut req = head(ctx, "GET", "/olla/proxy/health", "X-Bin: ").into_bytes();
            req.truncate(req.len() - 2);
            req.extend_from_slice(b"\xff\xfe\x80 \xc3\x28\r\n\r\n");
            not_5xx(exchange(ctx, &req))
        }),
        case("Host with port 99999", move |ctx| {
            let req = b"GET /olla/proxy/health HTTP/1.1\r\nHost: 127.0.0.1:99999\r\n\r\n";
            not_5xx(exchange(ctx, req))
        }),
        case("a folded header line", move |ctx| {
            let req = head(ctx, "GET", "/olla/proxy/health", "X-Fold: a\r\n b\r\n");
            not_5xx(exchange(ctx, req.as_bytes()))
        }),
        case("Content-Length: -1", move |ctx| {
            let req = head(ctx, "POST", chat, "Content-Length: -1\r\n");
            refused(exchange(ctx, req.as_bytes()))
        }),
        case("Content-Length beyond u64", move |ctx| {
            let req = head(
                ctx,
                "POST",
                chat,
                "Content-Length: 99999999999999999999999\r\n",
            );
            refused(exchange(ctx, req.as_bytes()))
        }),
    ]
}

fn odd_paths() -> Vec<Case> {
    let traversal = [
        "/v1/../v1/models",
        "/v1/%2e%2e/v1/models",
        "/olla/proxy/v1/%2E%2E/%2E%2E/internal/status",
        "/olla/proxy/..%2f..%2finternal/status",
    ];
    let odd = [
        "//v1//models".to_string(),
        "/olla/%70roxy/health".to_string(),
        "/olla/proxy/%00".to_string(),
        format!("/olla/proxy/{}", "a".repeat(10 * 1024)),
    ];
    let mut cases: Vec<Case> = traversal
        .into_iter()
        .map(|path| {
            case(format!("GET {path}"), move |ctx| {
                answered(exchange(ctx, head(ctx, "GET", path, "").as_bytes()), |s| {
                    s == 400
                })
            })
        })
        .collect();
    cases.extend(odd.into_iter().map(|path| {
        let name = format!("GET {}", &path[..path.len().min(40)]);
        case(name, move |ctx| {
            not_5xx(exchange(ctx, head(ctx, "GET", &path, "").as_bytes()))
        })
    }));
    cases.push(case("POST /olla/proxy/v1/chat%00/completions", |ctx| {
        let req = post(
            ctx,
            "POST",
            "/olla/proxy/v1/chat%00/completions",
            "",
            &chat_body(false),
        );
        not_5xx(exchange(ctx, &req))
    }));
    cases
}

fn lying_bodies() -> Vec<Case> {
    let chat = "/olla/proxy/v1/chat/completions";
    let chunked = "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n";
    vec![
        case("a body shorter than Content-Length, then EOF", move |ctx| {
            let mut c = RawConn::connect(&ctx.authority);
            let head = head(ctx, "POST", chat, "Content-Length: 100\r\n");
            c.send(format!("{head}{{\"model\":").as_bytes())
                .map_err(|e| e.to_string())?;
            c.finish_sending();
            refused(reaction(&mut c))
        }),
        case("a body longer than Content-Length", move |ctx| {
            let mut c = RawConn::connect(&ctx.authority);
            let head = head(ctx, "POST", chat, "Content-Length: 10\r\n");
            // Ten bytes of JSON, then what would be the next request.
            c.send(format!("{head}{{\"a\":1234}}GARBAGE / HTTP/9.9\r\n\r\n").as_bytes())
                .map_err(|e| e.to_string())?;
            not_5xx(reaction(&mut c))?;
            refused(reaction(&mut c))
        }),
        case("a chunk size that is not hex", move |ctx| {
            let req = format!(
                "{}zz\r\nhello\r\n0\r\n\r\n",
                head(ctx, "POST", chat, chunked)
            );
            refused(exchange(ctx, req.as_bytes()))
        }),
        case("a chunk longer than its size", move |ctx| {
            let req = format!(
                "{}3\r\nhello world\r\n0\r\n\r\n",
                head(ctx, "POST", chat, chunked)
            );
            refused(exchange(ctx, req.as_bytes()))
        }),
        case("a chunk size beyond u64", move |ctx| {
            let req = format!(
                "{}fffffffffffffffffffff\r\nab\r\n",
                head(ctx, "POST", chat, chunked)
            );
            refused(exchange(ctx, req.as_bytes()))
        }),
        case(
            "a body shorter than Content-Length, then silence",
            move |ctx| {
                let mut c = RawConn::connect(&ctx.authority);
                let head = head(ctx, "POST", chat, "Content-Length: 1000\r\n");
                c.send(format!("{head}{{\"model\":").as_bytes())
                    .map_err(|e| e.to_string())?;
                late_408(&mut c, Instant::now())
            },
        ),
    ]
}

/// A 408 within `LATE` of `since`, then the connection closed.
fn late_408(c: &mut RawConn, since: Instant) -> Outcome {
    let r = answered(reaction(c), |s| s == 408);
    let took = since.elapsed();
    r.map_err(|e| format!("after {took:?}: {e}"))?;
    if took > LATE {
        return Err(format!("408 only after {took:?}"));
    }
    match c.wait_closed(CASE_DEADLINE) {
        Some(_) => Ok(()),
        None => Err("the connection stayed open after the 408".into()),
    }
}

/// Send `bytes` one at a time, `every` apart, until Corral closes the connection (or
/// `CASE_DEADLINE` passes). The time from the first byte to the close, and what Corral sent
/// before it.
fn trickle(c: &mut RawConn, bytes: &[u8], every: Duration) -> Result<(Duration, Vec<u8>), String> {
    let started = Instant::now();
    for b in bytes {
        if started.elapsed() > CASE_DEADLINE {
            break;
        }
        if c.send(&[*b]).is_err() {
            let got = c
                .wait_closed(Duration::from_millis(500))
                .unwrap_or_default();
            return Ok((started.elapsed(), got));
        }
        if let Some(got) = c.wait_closed(every) {
            return Ok((started.elapsed(), got));
        }
    }
    Err(format!(
        "still open after trickling for {:?}",
        started.elapsed()
    ))
}

fn slow_clients() -> Vec<Case> {
    let every = Duration::from_millis(100);
    vec![
        case("a head trickled byte by byte", move |ctx| {
            let mut c = RawConn::connect(&ctx.authority);
            let req = head(
                ctx,
                "GET",
                "/internal/health",
                "X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
            );
            let (took, got) = trickle(&mut c, req.as_bytes(), every)?;
            if took > LATE {
                return Err(format!("closed only after {took:?}"));
            }
            match status_in(&got) {
                Some(s @ 200..=299) => Err(format!("a trickled head got {s}")),
                _ => Ok(()),
            }
        }),
        case("a body trickled byte by byte", move |ctx| {
            let mut c = RawConn::connect(&ctx.authority);
            let body = format!("{:<200}", chat_body(false));
            c.send(
                head(
                    ctx,
                    "POST",
                    "/olla/proxy/v1/chat/completions",
                    "Content-Length: 200\r\n",
                )
                .as_bytes(),
            )
            .map_err(|e| e.to_string())?;
            let (took, got) = trickle(&mut c, body.as_bytes(), every)?;
            match status_in(&got) {
                Some(408) if took <= LATE => Ok(()),
                _ => Err(format!(
                    "after {took:?}: {:?} (want a 408, then the close)",
                    String::from_utf8_lossy(&got)
                )),
            }
        }),
        case("half a head, then silence", move |ctx| {
            let mut c = RawConn::connect(&ctx.authority);
            c.send(b"GET /internal/health HTTP/1.1\r\nHost: 12")
                .map_err(|e| e.to_string())?;
            let since = Instant::now();
            let got = c.wait_closed(CASE_DEADLINE);
            let took = since.elapsed();
            match got {
                None => Err(format!("still open after {took:?}")),
                Some(_) if took > LATE => Err(format!("closed only after {took:?}")),
                Some(got) => match status_in(&got) {
                    Some(s @ 200..=299) => Err(format!("a half head got {s}")),
                    _ => Ok(()),
                },
            }
        }),
        case("a whole head, then silence", move |ctx| {
            let mut c = RawConn::connect(&ctx.authority);
            c.send(
                head(
                    ctx,
                    "POST",
                    "/olla/proxy/v1/chat/completions",
                    "Content-Length: 50\r\n",
                )
                .as_bytes(),
            )
            .map_err(|e| e.to_string())?;
            late_408(&mut c, Instant::now())
        }),
    ]
}

fn vanishing_clients() -> Vec<Case> {
    let chat = "/olla/proxy/v1/chat/completions";
    let gone = |ctx: &Ctx, bytes: &[u8]| -> Outcome {
        let mut c = RawConn::connect(&ctx.authority);
        c.send(bytes).map_err(|e| e.to_string())
    };
    vec![
        case("gone before the head ends", move |ctx| {
            gone(
                ctx,
                b"POST /olla/proxy/v1/chat/completions HTTP/1.1\r\nHost: 1",
            )
        }),
        case("gone after the head, before the body", move |ctx| {
            gone(
                ctx,
                head(ctx, "POST", chat, "Content-Length: 100\r\n").as_bytes(),
            )
        }),
        case("gone mid-body", move |ctx| {
            let req = post(ctx, "POST", chat, "", &chat_body(false));
            gone(ctx, &req[..req.len() - 10])
        }),
        case("gone right after the request", move |ctx| {
            // The mock takes 500ms over completions: the client leaves before any answer.
            let body = r#"{"model":"mock-model","prompt":"hi"}"#;
            gone(ctx, &post(ctx, "POST", "/v1/completions", "", body))
        }),
        case("gone after the response head", move |ctx| {
            let mut c = RawConn::connect(&ctx.authority);
            c.send(&post(ctx, "POST", chat, "", &chat_body(true)))
                .map_err(|e| e.to_string())?;
            answered(
                c.response_head(CASE_DEADLINE)
                    .map(Reaction::Answer)
                    .map_err(|e| e.to_string()),
                |s| s == 200,
            )
        }),
        case("gone mid-stream (SSE)", move |ctx| {
            let mut c = RawConn::connect(&ctx.authority);
            c.send(&post(ctx, "POST", chat, "", &chat_body(true)))
                .map_err(|e| e.to_string())?;
            mid_stream(&mut c)
        }),
        case("gone mid-stream (NDJSON)", move |ctx| {
            let mut c = RawConn::connect(&ctx.authority);
            let body = r#"{"model":"mock-model","messages":[]}"#;
            c.send(&post(ctx, "POST", "/api/chat", "", body))
                .map_err(|e| e.to_string())?;
            mid_stream(&mut c)
        }),
    ]
}

/// Read a streamed response's head and a few pieces of its body, then return (the caller
/// drops the connection).
fn mid_stream(c: &mut RawConn) -> Outcome {
    let head = c.response_head(CASE_DEADLINE).map_err(|e| e.to_string())?;
    if head.status != 200 {
        return Err(format!("stream answered {}", head.status));
    }
    for _ in 0..2 {
        c.read_some(CASE_DEADLINE).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// After a group: nothing in flight, Corral answering, every endpoint untouched.
fn settled(corral: &Corral) -> Outcome {
    if !poll_until(Duration::from_secs(5), || corral.in_flight_total() == 0) {
        return Err(format!(
            "{} requests still in flight after 5s",
            corral.in_flight_total()
        ));
    }
    match corral.try_request("GET", "/internal/health", &[], b"") {
        Ok(r) if r.status == 200 => {}
        Ok(r) => return Err(format!("/internal/health answered {}", r.status)),
        Err(e) => return Err(format!("/internal/health: {e}")),
    }
    corral.all_untouched()
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// Ordinary traffic that opens the connections a healthy run keeps: concurrent chats (the
/// upstream pools), whole streams of both kinds, listings.
fn warm_up(corral: &Corral) {
    std::thread::scope(|s| {
        for _ in 0..12 {
            s.spawn(|| {
                let r = corral.post_json(
                    "/olla/proxy/v1/chat/completions",
                    &serde_json::from_str(&chat_body(false)).unwrap(),
                );
                assert_eq!(r.status, 200, "warm-up: {}", r.text());
            });
        }
    });
    let mut s = corral.stream_json(
        "/v1/chat/completions",
        &serde_json::from_str(&chat_body(true)).unwrap(),
    );
    s.chunks();
    let mut s = corral.stream_json("/api/chat", &json!({"model": "mock-model", "messages": []}));
    s.chunks();
    assert_eq!(corral.get("/v1/models").status, 200);
}

#[test]
fn hostile_clients_never_reach_health() {
    let vllm = MockBackend::start_named(Persona::Vllm, "vllm");
    let ollama = MockBackend::start_named(Persona::Ollama, "ollama");
    for m in [&vllm, &ollama] {
        // Streams long enough that a client can leave in the middle.
        m.set_chunks(40);
        m.set_chunk_delay(Duration::from_millis(50));
        // A client can leave before the answer: see "gone right after the request".
        m.set_behaviour_for(
            "/v1/completions",
            Behaviour::Slow(Duration::from_millis(500)),
        );
    }
    let corral = Scenario::new()
        .server("read_header_timeout", "1s")
        .server("read_timeout", "1s")
        .proxy("stream_idle_timeout", "1s")
        // Checks with headroom: a slow check on a busy machine is not what this is about.
        .health("check_interval", "1s")
        .health("check_timeout", "900ms")
        .mock(&vllm)
        .mock(&ollama)
        .start();
    corral.wait_all_healthy(2, WAIT);
    warm_up(&corral);
    if let Err(e) = settled(&corral) {
        panic!("not settled after the warm-up: {e}");
    }
    let baseline = open_fds();

    let ctx = Ctx {
        authority: corral.authority().to_string(),
        backends: [vllm, ollama],
    };
    let groups = [
        ("odd methods", odd_methods()),
        ("odd headers", odd_headers()),
        ("odd paths", odd_paths()),
        ("lying bodies", lying_bodies()),
        ("slow clients", slow_clients()),
        ("vanishing clients", vanishing_clients()),
    ];
    let mut failures = Vec::new();
    let mut total = 0;
    let started = Instant::now();
    for (group, cases) in &groups {
        total += cases.len();
        let results: Vec<(String, Outcome)> = std::thread::scope(|s| {
            let running: Vec<_> = cases
                .iter()
                .map(|c| (c.name.clone(), s.spawn(|| (c.run)(&ctx))))
                .collect();
            running
                .into_iter()
                .map(|(name, t)| {
                    let r = t.join().unwrap_or_else(|_| Err("the case panicked".into()));
                    (name, r)
                })
                .collect()
        });
        for (name, r) in results {
            if let Err(e) = r {
                failures.push(format!("{group} / {name}: {e}"));
            }
        }
        if let Err(e) = settled(&corral) {
            failures.push(format!("after {group}: {e}"));
        }
    }
    eprintln!("{total} cases in {:?}", started.elapsed());
    // SPEC 11: headers that would change how Corral talks upstream never get there.
    for seen in ctx.seen() {
        for name in [
            "expect",
            "upgrade",
            "te",
            "keep-alive",
            "proxy-connection",
            "x-foo",
        ] {
            if let Some(v) = seen.header(name) {
                failures.push(format!("the backend saw {name}: {v} on {}", seen.path));
            }
        }
    }

    let fds_settled = poll_until(WAIT, || open_fds() <= baseline + FD_SLACK);
    if !fds_settled {
        failures.push(format!(
            "open descriptors: {} after the cases, {baseline} after warm-up",
            open_fds()
        ));
    }
    assert!(
        failures.is_empty(),
        "{} failures in {total} cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
