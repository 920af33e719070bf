//! Streaming-latency client (used by `scripts/bench.sh`): how long an SSE chunk takes from
//! leaving the backend to reaching the client.
//!
//! POSTs a streaming chat completion to URL `--requests` times (one after another, each on a
//! fresh connection unless `--keep-alive`), reads the body as it arrives (with `ureq`, a
//! blocking HTTP/1.1 client whose body reader returns each read as it comes off the socket;
//! nothing is buffered beyond one `read`), and for every SSE event that
//! carries `"sent_ns"` (see `examples/bench_backend.rs`) computes arrival time minus
//! `sent_ns`. Both clocks are this machine's `SystemTime`. Run it against the backend directly
//! and through a proxy: the difference is what the proxy adds per chunk.
//!
//!     cargo run --release --example stream_latency -- http://127.0.0.1:8000/v1/chat/completions
//!
//! Options: `--requests K` (20), `--model NAME` (bench), `--timeout-secs N` (30, per read),
//! `--verbose` (print every event's delay as `request event delay_us`), `--keep-alive` (send
//! every request on one persistent connection, as SDK clients with a connection pool do,
//! instead of a fresh connection each).
//! Prints a human summary and one `BENCH_STREAM key=value …` line (microseconds) for scripts.
//! Exit code 1 if a request fails or no event carried `sent_ns`.

use std::io::Read;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

struct Options {
    url: String,
    requests: usize,
    model: String,
    timeout: Duration,
    verbose: bool,
    keep_alive: bool,
}

fn parse_args() -> Options {
    let mut url = None;
    let mut o = Options {
        url: String::new(),
        requests: 20,
        model: "bench".into(),
        timeout: Duration::from_secs(30),
        verbose: false,
        keep_alive: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| die(&format!("{name} needs a value")))
        };
        match a.as_str() {
            "--requests" => o.requests = num(&value("--requests")) as usize,
            "--model" => o.model = value("--model"),
            "--timeout-secs" => o.timeout = Duration::from_secs(num(&value("--timeout-secs"))),
            "--verbose" => o.verbose = true,
            "--keep-alive" => o.keep_alive = true,
            "-h" | "--help" => {
                println!(
                    "usage: stream_latency URL [--requests K] [--model NAME] [--timeout-secs N] [--verbose] [--keep-alive]"
                );
                std::process::exit(0);
            }
            _ if !a.starts_with('-') && url.is_none() => url = Some(a),
            _ => die(&format!("unexpected argument {a}")),
        }
    }
    o.url = url
        .unwrap_or_else(|| die("a URL is needed, e.g. http://127.0.0.1:8000/v1/chat/completions"));
    o
}

fn num(s: &str) -> u64 {
    s.parse()
        .unwrap_or_else(|_| die(&format!("not a number: {s}")))
}

fn die(msg: &str) -> ! {
    eprintln!("stream_latency: {msg}");
    std::process::exit(1);
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as i128
}

/// What one streamed response yielded.
struct StreamResult {
    /// Arrival minus `sent_ns` for every event, in ns, in arrival order.
    delays: Vec<i128>,
    /// From sending the request to the first event's arrival.
    first_event_after: Option<Duration>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The client: a pool of one connection with `--keep-alive`, else none (a fresh connection
/// per request). No redirects; a non-200 is reported, not followed.
fn agent(opts: &Options) -> ureq::Agent {
    let idle = if opts.keep_alive { 1 } else { 0 };
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .no_delay(true)
        .max_idle_connections(idle)
        .max_idle_connections_per_host(idle)
        .timeout_connect(Some(opts.timeout))
        .timeout_recv_response(Some(opts.timeout))
        .timeout_per_read(Some(opts.timeout))
        .build()
        .new_agent()
}

fn one_stream(opts: &Options, agent: &ureq::Agent) -> Result<StreamResult, String> {
    let body = format!(
        r#"{{"model":"{}","stream":true,"messages":[{{"role":"user","content":"Say hello."}}]}}"#,
        opts.model
    );
    let started = Instant::now();
    let mut resp = agent
        .post(&opts.url)
        .header("Content-Type", "application/json")
        .header("Accept", "text/event-stream")
        .send(body.as_str())
        .map_err(|e| format!("request: {e}"))?;
    if resp.status() != 200 {
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        let text: String = text.chars().take(300).collect();
        return Err(format!("status {}: {text}", resp.status()));
    }
    // ureq's reader returns the body (de-chunked) as it arrives: one `read`, one timestamp.
    let mut reader = resp.into_body().into_reader();
    let mut buf = vec![0u8; 64 * 1024];
    let mut events: Vec<u8> = Vec::new(); // body not yet split into events
    let mut result = StreamResult {
        delays: Vec::new(),
        first_event_after: None,
    };
    loop {
        let n = reader.read(&mut buf).map_err(|e| format!("read: {e}"))?;
        let arrived = now_ns();
        let arrived_at = started.elapsed();
        if n == 0 {
            return Ok(result);
        }
        events.extend_from_slice(&buf[..n]);
        // Every complete SSE event ("\n\n"-terminated) that arrived with this read.
        while let Some(end) = find(&events, b"\n\n") {
            let event: Vec<u8> = events.drain(..end + 2).collect();
            if let Some(sent) = sent_ns(&event) {
                if result.first_event_after.is_none() {
                    result.first_event_after = Some(arrived_at);
                }
                result.delays.push(arrived - sent);
            }
        }
    }
}

fn sent_ns(event: &[u8]) -> Option<i128> {
    let key = b"\"sent_ns\":";
    let at = find(event, key)? + key.len();
    let digits: String = event[at..]
        .iter()
        .skip_while(|b| **b == b' ')
        .take_while(|b| b.is_ascii_digit())
        .map(|b| *b as char)
        .collect();
    digits.parse().ok()
}

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[i128], p: f64) -> i128 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn us(ns: i128) -> f64 {
    ns as f64 / 1000.0
}

fn main() {
    let opts = parse_args();
    let agent = agent(&opts);
    let mut all = Vec::new();
    let mut firsts = Vec::new();
    let mut ttfe = Vec::new();
    for i in 0..opts.requests {
        match one_stream(&opts, &agent) {
            Ok(r) => {
                if opts.verbose {
                    for (j, d) in r.delays.iter().enumerate() {
                        println!("{} {} {:.1}", i + 1, j, us(*d));
                    }
                }
                if let Some(first) = r.delays.first() {
                    firsts.push(*first);
                }
                if let Some(t) = r.first_event_after {
                    ttfe.push(t.as_nanos() as i128);
                }
                all.extend(r.delays);
            }
            Err(e) => die(&format!("request {} to {}: {e}", i + 1, opts.url)),
        }
    }
    if all.is_empty() {
        die("no event carried \"sent_ns\"; is the URL the bench backend (or a proxy of it)?");
    }
    all.sort_unstable();
    firsts.sort_unstable();
    ttfe.sort_unstable();
    // The figures, once; printed for people and then as one parseable line for the script.
    let (p50, p99, max) = (
        us(pct(&all, 50.0)),
        us(pct(&all, 99.0)),
        us(*all.last().unwrap()),
    );
    let (first_p50, first_max) = (us(pct(&firsts, 50.0)), us(*firsts.last().unwrap_or(&0)));
    let ttfe_p50 = us(pct(&ttfe, 50.0));
    println!(
        "{}: {} streams{}, {} events; chunk delay (arrival - sent_ns) p50 {p50:.1} us, p99 {p99:.1} us, max {max:.1} us; \
         first chunk p50 {first_p50:.1} us, max {first_max:.1} us; request to first event p50 {ttfe_p50:.1} us",
        opts.url,
        opts.requests,
        if opts.keep_alive { " on one connection" } else { "" },
        all.len(),
    );
    println!(
        "BENCH_STREAM events={} p50_us={p50:.1} p99_us={p99:.1} max_us={max:.1} first_p50_us={first_p50:.1} \
         first_max_us={first_max:.1} ttfe_p50_us={ttfe_p50:.1}",
        all.len(),
    );
}
