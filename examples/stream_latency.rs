//! Streaming-latency client (used by `scripts/bench.sh`): how long an SSE chunk takes from
//! leaving the backend to reaching the client.
//!
//! POSTs a streaming chat completion to URL `--requests` times (one after another, each on a
//! fresh connection unless `--keep-alive`), reads the body as it arrives over a raw blocking TCP socket (HTTP/1.1,
//! chunked or not; nothing is buffered beyond one `read`), and for every SSE event that
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

use std::io::{Read, Write};
use std::net::TcpStream;
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

/// `http://host:port/path` → (`host:port`, `/path`).
fn split_url(url: &str) -> (String, String) {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| die("only http:// URLs are supported"));
    match rest.find('/') {
        Some(i) => (rest[..i].to_string(), rest[i..].to_string()),
        None => (rest.to_string(), "/".to_string()),
    }
}

/// What one streamed response yielded.
struct StreamResult {
    /// Arrival minus `sent_ns` for every event, in ns, in arrival order.
    delays: Vec<i128>,
    /// From writing the request to the first event's arrival.
    first_event_after: Option<Duration>,
    /// The server will close the connection after this response.
    closes: bool,
}

enum Framing {
    Chunked(ChunkState),
    Length(usize),
    UntilClose,
}

enum ChunkState {
    Size,
    Data(usize),
    DataEnd,
    Done,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn one_stream(
    opts: &Options,
    authority: &str,
    path: &str,
    conn: &mut Option<TcpStream>,
) -> Result<StreamResult, String> {
    let body = format!(
        r#"{{"model":"{}","stream":true,"messages":[{{"role":"user","content":"Say hello."}}]}}"#,
        opts.model
    );
    if conn.is_none() {
        let sock = TcpStream::connect(authority).map_err(|e| format!("connect: {e}"))?;
        sock.set_nodelay(true).ok();
        sock.set_read_timeout(Some(opts.timeout)).ok();
        *conn = Some(sock);
    }
    let sock = conn.as_mut().unwrap();
    let connection = if opts.keep_alive {
        "keep-alive"
    } else {
        "close"
    };
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nAccept: text/event-stream\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n{body}",
        body.len()
    );
    let started = Instant::now();
    sock.write_all(request.as_bytes())
        .map_err(|e| format!("write: {e}"))?;

    let mut buf = vec![0u8; 64 * 1024];
    let mut head: Vec<u8> = Vec::new(); // bytes before the end of the response head
    let mut framing: Option<Framing> = None;
    let mut pending: Vec<u8> = Vec::new(); // undecoded transfer bytes
    let mut events: Vec<u8> = Vec::new(); // decoded body not yet split into events
    let mut result = StreamResult {
        delays: Vec::new(),
        first_event_after: None,
        closes: false,
    };
    loop {
        let n = sock.read(&mut buf).map_err(|e| format!("read: {e}"))?;
        let arrived = now_ns();
        let arrived_at = started.elapsed();
        if n == 0 {
            result.closes = true;
            return match framing {
                Some(Framing::UntilClose) | Some(Framing::Chunked(ChunkState::Done)) => Ok(result),
                Some(Framing::Length(0)) => Ok(result),
                _ => Err("connection closed before the response ended".into()),
            };
        }
        let mut data = &buf[..n];
        if framing.is_none() {
            head.extend_from_slice(data);
            // The last CRLF of the previous chunked response on this connection, if late.
            while head.starts_with(b"\r\n") {
                head.drain(..2);
            }
            let Some(end) = find(&head, b"\r\n\r\n") else {
                continue;
            };
            let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
            let status = text.split_whitespace().nth(1).unwrap_or("");
            if status != "200" {
                return Err(format!(
                    "status {status}: {}",
                    String::from_utf8_lossy(&head)
                        .chars()
                        .take(300)
                        .collect::<String>()
                ));
            }
            let header = |name: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
            };
            result.closes = header("connection:").is_some_and(|v| v.contains("close"));
            framing = Some(
                if header("transfer-encoding:").is_some_and(|v| v.contains("chunked")) {
                    Framing::Chunked(ChunkState::Size)
                } else if let Some(len) = header("content-length:") {
                    Framing::Length(len.parse().map_err(|_| "bad content-length")?)
                } else {
                    Framing::UntilClose
                },
            );
            pending = head.split_off(end + 4);
            data = &[];
        }
        pending.extend_from_slice(data);
        match framing.as_mut().unwrap() {
            Framing::UntilClose => events.append(&mut pending),
            Framing::Length(left) => {
                let take = pending.len().min(*left);
                events.extend(pending.drain(..take));
                *left -= take;
            }
            Framing::Chunked(state) => decode_chunked(state, &mut pending, &mut events)?,
        }
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
        let finished = matches!(
            framing.as_ref().unwrap(),
            Framing::Chunked(ChunkState::Done) | Framing::Length(0)
        );
        if finished {
            return Ok(result);
        }
    }
}

fn decode_chunked(
    state: &mut ChunkState,
    pending: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    loop {
        match state {
            ChunkState::Size => {
                let Some(eol) = find(pending, b"\r\n") else {
                    return Ok(());
                };
                let line = String::from_utf8_lossy(&pending[..eol]).to_string();
                let hex = line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(hex, 16)
                    .map_err(|_| format!("bad chunk size line {line:?}"))?;
                pending.drain(..eol + 2);
                *state = if size == 0 {
                    ChunkState::Done
                } else {
                    ChunkState::Data(size)
                };
            }
            ChunkState::Data(left) => {
                if pending.is_empty() {
                    return Ok(());
                }
                let take = pending.len().min(*left);
                out.extend(pending.drain(..take));
                *left -= take;
                if *left == 0 {
                    *state = ChunkState::DataEnd;
                }
            }
            ChunkState::DataEnd => {
                if pending.len() < 2 {
                    return Ok(());
                }
                pending.drain(..2);
                *state = ChunkState::Size;
            }
            // Trailers, if any, are of no interest.
            ChunkState::Done => return Ok(()),
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
    let (authority, path) = split_url(&opts.url);
    let mut all = Vec::new();
    let mut firsts = Vec::new();
    let mut ttfe = Vec::new();
    let mut conn = None;
    for i in 0..opts.requests {
        if !opts.keep_alive {
            conn = None;
        }
        match one_stream(&opts, &authority, &path, &mut conn) {
            Ok(r) => {
                if r.closes {
                    conn = None;
                }
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
