//! SPEC 10.3 end to end: admission control (`max_concurrency`) and the wait queue. Corral runs
//! in-process against mock backends. Limits are checked where they matter, at the backend: its
//! in-flight high-water mark, and which requests it received in which order. Refusals are
//! checked as the client sees them: status, `error`, `Retry-After`, and how long they took.
//!
//! Most tests hold an endpoint's one slot with a long stream ([`hold`]) and free it by hanging
//! up that stream ([`Holder::release`]), so the slot is busy for exactly as long as the test
//! needs, however fast or slow the machine is. Requests that must wait in a known order are
//! sent by hand ([`send_taken_in`]), so the test knows when Corral has taken each one in.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use house::client::Stream;
use house::mock::Seen;
use house::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);
const CHAT: &str = "/v1/chat/completions";

/// Time left after Corral has read a request for it to join the queue (see [`wait_taken_in`]).
const SETTLE: Duration = Duration::from_millis(25);

/// A chat request whose one message is `tag`, so the backend's log says who it came from.
fn tagged(tag: &str, stream: bool) -> Value {
    json!({ "model": "mock-model", "messages": [{ "role": "user", "content": tag }], "stream": stream })
}

fn tag_of(seen: &Seen) -> String {
    seen.json()["messages"][0]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The tags of the chat requests `m` received, in the order they arrived.
fn chats(m: &MockBackend) -> Vec<String> {
    m.requests()
        .iter()
        .filter(|s| s.path == CHAT)
        .map(tag_of)
        .collect()
}

/// A scenario whose backends see nothing but the tests' requests once they are up: the next
/// health check is 30 s away and load reads are off. For the tests that read a backend's
/// in-flight high-water mark, which counts every request the mock serves, checks included.
fn quiet() -> Scenario {
    Scenario::new()
        .health("check_interval", "30s")
        .health("load_interval", "0s")
}

/// Waits until every endpoint is healthy with its models known (discovery follows the first
/// check) and no mock has a request in flight, then clears the mocks' logs and high-water marks.
fn settle(corral: &Corral, mocks: &[&MockBackend]) {
    corral.wait_all_healthy(mocks.len(), WAIT);
    wait_until(WAIT, "models discovered, backends idle", || {
        corral
            .endpoints()
            .iter()
            .all(|e| e["models"].as_u64() > Some(0))
            && mocks.iter().all(|m| m.in_flight() == 0)
    });
    for m in mocks {
        m.clear_log();
    }
}

/// A stream that holds one slot of an endpoint until it is released.
struct Holder(Stream);

/// Starts a stream that holds `m`'s one slot: 200 chunks 50 ms apart, ten seconds, far longer
/// than any test keeps it (every later stream of `m` is that long too, unless the test says
/// otherwise). Corral sends the head with the first body byte (SPEC 9.2), so on return the
/// request is in flight at the backend.
fn hold(corral: &Corral, m: &MockBackend) -> Holder {
    m.set_chunks(200);
    m.set_chunk_delay(Duration::from_millis(50));
    let s = corral.stream_json(CHAT, &tagged("holder", true));
    assert_eq!(s.status, 200, "the holder's stream");
    assert_eq!(s.header("x-olla-endpoint"), Some(m.name()));
    Holder(s)
}

impl Holder {
    /// Hangs up: Corral drops the request and its slot frees.
    fn release(self) {
        self.0.disconnect();
    }
}

/// Sends a chat request on a connection of its own and returns once Corral has taken it in
/// (so a request sent after it is certain to arrive after it). The caller reads the answer.
fn send_taken_in(corral: &Corral, body: &Value) -> RawConn {
    let body = serde_json::to_vec(body).expect("serialise JSON");
    let mut c = RawConn::connect(corral.authority());
    let head = format!(
        "POST {CHAT} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        corral.authority(),
        body.len()
    );
    c.send(&[head.as_bytes(), &body].concat())
        .expect("send the request");
    wait_taken_in(corral, &c);
    c
}

/// Waits until Corral has read every byte sent on `conn`, then `SETTLE` more.
///
/// Why the kernel and not the status API: the queue is not in `/internal/status` or the
/// metrics yet, and a waiting request shows nowhere else (it holds no slot and reaches no
/// backend). The kernel does show it: once our socket has no unacknowledged bytes and
/// Corral's end of the connection no unread ones (`/proc/net/tcp`), a Corral worker has read
/// the whole request. What is left before it stands in line (parse, body, candidates, join)
/// is work in memory in that one task, with nothing to wait for; `SETTLE` covers a worker
/// descheduled in between. A bare stagger would have to cover the client's and Corral's
/// scheduling from connect to join as well, with no way to tell when it fell short.
fn wait_taken_in(corral: &Corral, conn: &RawConn) {
    let server: SocketAddr = corral.authority().parse().expect("Corral's address");
    let client = conn.local_addr();
    wait_until(WAIT, "Corral has read the whole request", || {
        let sockets = tcp_sockets();
        let ours = sockets
            .iter()
            .find(|s| (s.local, s.remote) == (client, server));
        let theirs = sockets
            .iter()
            .find(|s| (s.local, s.remote) == (server, client));
        // Acknowledged means Corral's end exists and holds the bytes, or has read them; an
        // end that is gone has been closed by Corral, after reading.
        ours.is_some_and(|s| s.tx_queue == 0) && theirs.is_none_or(|s| s.rx_queue == 0)
    });
    std::thread::sleep(SETTLE);
}

/// Waits until Corral has closed its end of the connection from `client`, which the client
/// has closed already: Corral's end is past `ESTABLISHED` (our FIN not yet in) and
/// `CLOSE_WAIT` (our FIN in, Corral's close not yet), or gone.
fn wait_closed_by_corral(corral: &Corral, client: SocketAddr) {
    const ESTABLISHED: u8 = 0x01;
    const CLOSE_WAIT: u8 = 0x08;
    let server: SocketAddr = corral.authority().parse().expect("Corral's address");
    wait_until(WAIT, "Corral closed the connection", || {
        let sockets = tcp_sockets();
        let theirs = sockets
            .iter()
            .find(|s| (s.local, s.remote) == (server, client));
        theirs.is_none_or(|s| !matches!(s.state, ESTABLISHED | CLOSE_WAIT))
    });
}

/// One IPv4 TCP socket of this network namespace.
struct TcpSocket {
    local: SocketAddr,
    remote: SocketAddr,
    /// The kernel's `TCP_*` state number (`0x01` established, `0x08` close-wait, ...).
    state: u8,
    /// Bytes sent and not yet acknowledged by the peer.
    tx_queue: u64,
    /// Bytes received and not yet read by the socket's owner.
    rx_queue: u64,
}

fn tcp_sockets() -> Vec<TcpSocket> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    // `sl local_address rem_address st tx_queue:rx_queue ...`; addresses as `0100007F:1F90`,
    // the IPv4 address being the in-memory (network order) bytes printed as a native u32.
    let addr = |field: &str| -> Option<SocketAddr> {
        let (ip, port) = field.split_once(':')?;
        let ip = u32::from_str_radix(ip, 16).ok()?.to_ne_bytes();
        let port = u16::from_str_radix(port, 16).ok()?;
        Some(SocketAddr::from((Ipv4Addr::from(ip), port)))
    };
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (tx, rx) = f.get(4)?.split_once(':')?;
            Some(TcpSocket {
                local: addr(f.get(1)?)?,
                remote: addr(f.get(2)?)?,
                state: u8::from_str_radix(f.get(3)?, 16).ok()?,
                tx_queue: u64::from_str_radix(tx, 16).ok()?,
                rx_queue: u64::from_str_radix(rx, 16).ok()?,
            })
        })
        .collect()
}

/// Asserts a 429 `queue_full` with `Retry-After: 1`.
fn assert_queue_full(r: &Resp) {
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["error"], "queue_full", "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"), "{:?}", r.headers);
}

/// 10 concurrent streams, two backends of one slot each: at no moment does either backend have
/// two requests in flight (each stream takes ~300 ms, so without the limit they would all
/// overlap), and every client still gets its whole stream.
#[test]
fn max_concurrency_one_never_puts_two_requests_on_a_backend() {
    let a = MockBackend::start_named(Persona::Vllm, "a");
    let b = MockBackend::start_named(Persona::Vllm, "b");
    for m in [&a, &b] {
        m.set_chunks(3);
        m.set_chunk_delay(Duration::from_millis(100));
    }
    let corral = quiet()
        .health("max_concurrency", "1")
        .mock(&a)
        .mock(&b)
        .start();
    settle(&corral, &[&a, &b]);

    let api: &Api = &corral;
    let results: Vec<(u16, Vec<String>)> = std::thread::scope(|s| {
        let clients: Vec<_> = (0..10)
            .map(|i| {
                s.spawn(move || {
                    let mut st = api.stream_json(CHAT, &tagged(&format!("client {i}"), true));
                    let events = sse_events(&st.chunks());
                    (st.status, events.into_iter().map(|e| e.text).collect())
                })
            })
            .collect();
        clients.into_iter().map(|c| c.join().unwrap()).collect()
    });

    for (i, (status, events)) in results.iter().enumerate() {
        assert_eq!(*status, 200, "client {i}: {events:?}");
        assert_eq!(
            events.len(),
            4,
            "client {i}: three chunks and [DONE]: {events:?}"
        );
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    }
    assert_eq!(a.peak_in_flight(), 1, "backend a had requests side by side");
    assert_eq!(b.peak_in_flight(), 1, "backend b had requests side by side");
    let (on_a, on_b) = (chats(&a).len(), chats(&b).len());
    assert_eq!(on_a + on_b, 10, "a: {:?}, b: {:?}", chats(&a), chats(&b));
}

/// One slot, eight requests sent one after another while it is busy: when it frees, the backend
/// receives them one at a time in the order they came. Each is sent only once Corral has read
/// the one before (`send_taken_in`), so their order of arrival at Corral is known.
#[test]
fn waiters_reach_the_backend_in_their_order_of_arrival() {
    let m = MockBackend::start(Persona::Vllm);
    let corral = Scenario::new()
        .mock_with(&m, &[("max_concurrency", "1")])
        .start();
    corral.wait_all_healthy(1, WAIT);
    let holder = hold(&corral, &m);

    let waiters: Vec<RawConn> = (0..8)
        .map(|i| send_taken_in(&corral, &tagged(&format!("client {i}"), false)))
        .collect();
    assert_eq!(chats(&m), ["holder"], "a request went past the busy slot");
    holder.release();
    for (i, mut c) in waiters.into_iter().enumerate() {
        let r = c
            .response(WAIT)
            .unwrap_or_else(|e| panic!("client {i}: {e}"));
        assert_eq!(r.status, 200, "client {i}: {}", r.text());
    }

    let mut expected = vec!["holder".to_string()];
    expected.extend((0..8).map(|i| format!("client {i}")));
    assert_eq!(chats(&m), expected);
}

/// One slot busy and eight requests waiting (`size: 8`): a ninth gets 429 `queue_full` with
/// `Retry-After: 1` at once, and the eight are all served when the slot frees. The nine are
/// sent together; the first answer must be the refusal, since nothing can be served while the
/// slot is held, and a refusal means eight are waiting, so every request has arrived by then.
#[test]
fn a_full_queue_refuses_with_429_and_retry_after() {
    let m = MockBackend::start(Persona::Vllm);
    let corral = Scenario::new()
        .health("max_concurrency", "1")
        .proxy("queue", "{ size: 8, max_wait: 10s }")
        .mock(&m)
        .start();
    corral.wait_all_healthy(1, WAIT);
    let holder = hold(&corral, &m);

    let api: &Api = &corral;
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        for i in 0..9 {
            let tx = tx.clone();
            s.spawn(move || {
                let sent = Instant::now();
                let r = api.post_json(CHAT, &tagged(&format!("client {i}"), false));
                tx.send((i, r, sent.elapsed())).unwrap();
            });
        }
        let (refused, first, took) = rx.recv_timeout(WAIT).expect("an answer");
        assert_queue_full(&first);
        assert!(took < Duration::from_secs(2), "429 after {took:?}");
        assert_eq!(chats(&m), ["holder"]);

        holder.release();
        let mut served = Vec::new();
        for _ in 0..8 {
            let (i, r, _) = rx.recv_timeout(WAIT).expect("the waiters' answers");
            assert_eq!(r.status, 200, "client {i}: {}", r.text());
            served.push(format!("client {i}"));
        }
        assert!(!served.contains(&format!("client {refused}")));
        let mut seen = chats(&m);
        seen.sort();
        served.push("holder".into());
        served.sort();
        assert_eq!(
            seen, served,
            "the backend got exactly the holder and the eight"
        );
    });
}

/// `size: 0` turns queueing off: a request that finds its endpoint at the limit gets 429 at
/// once, and the endpoint serves again when the slot frees.
#[test]
fn queue_size_zero_refuses_at_once() {
    let m = MockBackend::start(Persona::Vllm);
    let corral = Scenario::new()
        .health("max_concurrency", "1")
        .proxy("queue", "{ size: 0 }")
        .mock(&m)
        .start();
    corral.wait_all_healthy(1, WAIT);
    let holder = hold(&corral, &m);

    let sent = Instant::now();
    let r = corral.post_json(CHAT, &tagged("refused", false));
    let took = sent.elapsed();
    assert_queue_full(&r);
    assert!(took < Duration::from_secs(1), "429 after {took:?}");

    holder.release();
    wait_until(WAIT, "the slot freed", || corral.in_flight_total() == 0);
    let r = corral.post_json(CHAT, &tagged("after", false));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(chats(&m), ["holder", "after"]);
}

/// `max_wait: 300ms`: a request that waits behind a ten-second stream gets 503 `queue_timeout`
/// after 300 ms (not before, and not when the stream ends), and never reaches the backend.
#[test]
fn a_waiter_gets_503_queue_timeout_after_max_wait() {
    let m = MockBackend::start(Persona::Vllm);
    let corral = Scenario::new()
        .health("max_concurrency", "1")
        .proxy("queue", "{ max_wait: 300ms }")
        .mock(&m)
        .start();
    corral.wait_all_healthy(1, WAIT);
    let holder = hold(&corral, &m);

    let sent = Instant::now();
    let r = corral.post_json(CHAT, &tagged("late", false));
    let waited = sent.elapsed();
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"], "queue_timeout", "{}", r.text());
    assert!(
        waited >= Duration::from_millis(300),
        "gave up after {waited:?}"
    );
    assert!(
        waited < Duration::from_millis(1500),
        "gave up after {waited:?}"
    );
    assert_eq!(corral.in_flight_total(), 1, "the holder still streams");
    assert_eq!(chats(&m), ["holder"]);
    holder.release();
}

/// A client that hangs up while it waits leaves the queue and takes no slot: the backend never
/// sees its request, and the request queued behind it gets the freed slot.
#[test]
fn a_client_that_leaves_the_queue_takes_no_slot() {
    let m = MockBackend::start(Persona::Vllm);
    let corral = Scenario::new()
        .health("max_concurrency", "1")
        .proxy("queue", "{ max_wait: 5s }")
        .mock(&m)
        .start();
    corral.wait_all_healthy(1, WAIT);
    let holder = hold(&corral, &m);

    let gone = send_taken_in(&corral, &tagged("gone", false));
    let mut next = send_taken_in(&corral, &tagged("next", false));
    let gone_at = gone.local_addr();
    drop(gone);
    // Corral closing its end says the request is over (`h1_allow_half_closed(false)` ends it
    // on the client's FIN): from then on the slot freed next cannot be offered to it.
    wait_closed_by_corral(&corral, gone_at);

    holder.release();
    let r = next.response(WAIT).expect("the next waiter's answer");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(chats(&m), ["holder", "next"]);
    // The slot is free again, not leaked to the client that left.
    wait_until(WAIT, "the slot freed", || corral.in_flight_total() == 0);
    let r = corral.post_json(CHAT, &tagged("after", false));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(chats(&m), ["holder", "next", "after"]);
}

/// The only endpoint is busy and fails its health checks while requests wait for it: they fail
/// at once as in 5.3 (503; `no_healthy_endpoints` for a request without a model, the same error
/// a new request gets for one with a model), long before `max_wait`.
#[test]
fn waiters_fail_at_once_when_their_endpoints_leave_rotation() {
    let m = MockBackend::start(Persona::Vllm);
    let corral = Scenario::new()
        .health("max_concurrency", "1")
        .proxy("queue", "{ max_wait: 20s }")
        .mock(&m)
        .start();
    corral.wait_all_healthy(1, WAIT);
    let holder = hold(&corral, &m);

    let no_model =
        json!({ "messages": [{ "role": "user", "content": "no model" }], "stream": false });
    let mut without = send_taken_in(&corral, &no_model);
    let mut with = send_taken_in(&corral, &tagged("with model", false));
    let failing = Instant::now();
    m.set_behaviour_for("/health", Behaviour::Status(500));

    let r = without.response(WAIT).expect("an answer");
    let took = failing.elapsed();
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"], "no_healthy_endpoints", "{}", r.text());
    assert!(took < Duration::from_secs(5), "failed after {took:?}");
    let r = with.response(WAIT).expect("an answer");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(corral.status_of(m.name()), "unhealthy");
    let fresh = corral.post_json(CHAT, &tagged("fresh", false));
    assert_eq!(fresh.status, 503, "{}", fresh.text());
    assert_eq!(r.json()["error"], fresh.json()["error"], "{}", r.text());
    assert_eq!(chats(&m), ["holder"]);
    holder.release();
}

/// Failover skips an endpoint at its limit and never waits for it. `a` (preferred) answers
/// 503, `b` streams: while `b` serves one request, another fails over from `a`, finds `b` full
/// and gets `a`'s 503 at once (it would get `b`'s 200 late if failover waited). Then ten
/// concurrent clients: neither backend ever has two requests in flight.
#[test]
fn failover_never_queues_and_never_exceeds_a_limit() {
    let a = MockBackend::start_named(Persona::Vllm, "a");
    let b = MockBackend::start_named(Persona::Vllm, "b");
    a.set_behaviour_for(CHAT, Behaviour::Status(503));
    b.set_chunks(20);
    b.set_chunk_delay(Duration::from_millis(100));
    let corral = quiet()
        .health("max_concurrency", "1")
        // Every 503 counts against `a`'s proxy breaker; it must stay in rotation throughout.
        .proxy("circuit_breaker", "{ failure_threshold: 1000 }")
        .mock_with(&a, &[("priority", "100")])
        .mock_with(&b, &[("priority", "50")])
        .start();
    settle(&corral, &[&a, &b]);

    let mut first = corral.stream_json(CHAT, &tagged("first", true));
    assert_eq!(first.status, 200);
    assert_eq!(first.header("x-olla-endpoint"), Some("b"));
    let second = corral.post_json(CHAT, &tagged("second", false));
    assert_eq!(second.status, 503, "{}", second.text());
    assert_eq!(served_by(&second), "a", "{:?}", second.headers);
    assert_eq!(
        corral.endpoint("b")["in_flight"],
        1,
        "answered before b was free"
    );
    first.chunks();
    assert_eq!(chats(&b), ["first"]);
    assert_eq!(chats(&a), ["first", "second"]);

    b.set_chunks(3);
    wait_until(WAIT, "backends idle", || {
        a.in_flight() == 0 && b.in_flight() == 0
    });
    a.clear_log();
    b.clear_log();
    let api: &Api = &corral;
    let results: Vec<Resp> = std::thread::scope(|s| {
        let clients: Vec<_> = (0..10)
            .map(|i| s.spawn(move || api.post_json(CHAT, &tagged(&format!("c{i}"), true))))
            .collect();
        clients.into_iter().map(|c| c.join().unwrap()).collect()
    });
    for r in &results {
        match (r.status, served_by(r).as_str()) {
            (200, "b") | (503, "a") => {}
            _ => panic!("{} from {:?}: {}", r.status, served_by(r), r.text()),
        }
    }
    assert!(results.iter().any(|r| r.status == 200));
    assert_eq!(a.peak_in_flight(), 1, "backend a had requests side by side");
    assert_eq!(b.peak_in_flight(), 1, "backend b had requests side by side");
}

/// Refusals and timeouts of the queue are the clients' business, not the backend's: after a
/// burst of 429s and `queue_timeout`s, and the slot holder hanging up, the endpoint is as if
/// nothing had happened (healthy, no failed checks, proxy breaker closed with no failures).
#[test]
fn queueing_leaves_endpoint_health_untouched() {
    let m = MockBackend::start(Persona::Vllm);
    let corral = Scenario::new()
        .health("max_concurrency", "1")
        .proxy("queue", "{ size: 2, max_wait: 300ms }")
        .mock(&m)
        .start();
    corral.wait_all_healthy(1, WAIT);
    let holder = hold(&corral, &m);

    let api: &Api = &corral;
    let results: Vec<Resp> = std::thread::scope(|s| {
        let clients: Vec<_> = (0..6)
            .map(|i| s.spawn(move || api.post_json(CHAT, &tagged(&format!("c{i}"), false))))
            .collect();
        clients.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let errors = |status| {
        results
            .iter()
            .filter(|r| r.status == status)
            .map(|r| r.json()["error"].as_str().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(errors(429), ["queue_full"; 4]);
    assert_eq!(errors(503), ["queue_timeout"; 2]);
    assert_eq!(chats(&m), ["holder"]);

    // Outcomes reach the endpoint's actor as messages: a check that ends after the burst
    // (and after the holder left) comes after anything the burst could have reported.
    let untouched_after_a_check = |what: &str| {
        let before = corral.endpoint(m.name())["last_check"].clone();
        wait_until(WAIT, &format!("a check after {what}"), || {
            corral.endpoint(m.name())["last_check"] != before
        });
        if let Err(e) = corral.all_untouched() {
            panic!("after {what}: {e}");
        }
    };
    untouched_after_a_check("the burst");
    holder.release();
    wait_until(WAIT, "the slot freed", || corral.in_flight_total() == 0);
    untouched_after_a_check("the holder left");
    let r = corral.post_json(CHAT, &tagged("after", false));
    assert_eq!(r.status, 200, "{}", r.text());
}
