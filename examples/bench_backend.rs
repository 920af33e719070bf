//! A fast local LLM backend for benchmarking the proxy (used by `scripts/bench.sh`).
//!
//! Speaks just enough of vLLM's OpenAI API for Corral to check, discover and route to it:
//!
//! - `GET /health` → 200
//! - `GET /v1/models` → an OpenAI list with one model, `bench`
//! - `POST /v1/chat/completions` → a small fixed chat completion; with `"stream": true` an SSE
//!   stream of `--chunks` events spaced by `--chunk-delay-ms` (the first goes out at once),
//!   then `data: [DONE]`. Every event's JSON carries `"sent_ns"`: the wall-clock time
//!   (`SystemTime`, ns since the Unix epoch) taken just before the event is handed to the
//!   socket writer, so a client on the same machine can tell how long the chunk travelled.
//!
//!     cargo run --release --example bench_backend -- --port 0 --workers 1
//!
//! Options: `--port N` (0 = any free port; the chosen one is printed as
//! `listening http://127.0.0.1:PORT`), `--workers N` (1), `--chunks N` (20),
//! `--chunk-delay-ms N` (10), `--max-seconds N` (900: the process exits by itself then),
//! `--nagle` (leave Nagle's algorithm on for accepted connections, actix-web's default; by
//! default TCP_NODELAY is set, as uvicorn — vLLM's server — does).
//! Listens on 127.0.0.1 only.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::header::{CacheControl, CacheDirective, ContentType};
use actix_web::web::{self, Bytes};
use actix_web::{App, HttpResponse, HttpServer};

#[derive(Clone, Copy)]
struct Options {
    port: u16,
    workers: usize,
    chunks: usize,
    chunk_delay: Duration,
    max_seconds: u64,
    nagle: bool,
}

fn parse_args() -> Options {
    let mut o = Options {
        port: 0,
        workers: 1,
        chunks: 20,
        chunk_delay: Duration::from_millis(10),
        max_seconds: 900,
        nagle: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--nagle" {
            o.nagle = true;
            continue;
        }
        if flag == "--help" || flag == "-h" {
            println!("usage: bench_backend [--port N] [--workers N] [--chunks N] [--chunk-delay-ms N] [--max-seconds N] [--nagle]");
            std::process::exit(0);
        }
        let value = args
            .next()
            .unwrap_or_else(|| die(&format!("{flag} needs a value")));
        let num = || -> u64 {
            value
                .parse()
                .unwrap_or_else(|_| die(&format!("{flag}: not a number: {value}")))
        };
        match flag.as_str() {
            "--port" => o.port = num() as u16,
            "--workers" => o.workers = num().max(1) as usize,
            "--chunks" => o.chunks = num() as usize,
            "--chunk-delay-ms" => o.chunk_delay = Duration::from_millis(num()),
            "--max-seconds" => o.max_seconds = num(),
            _ => die(&format!("unknown option {flag}")),
        }
    }
    o
}

fn die(msg: &str) -> ! {
    eprintln!("bench_backend: {msg}");
    std::process::exit(2);
}

const COMPLETION: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the bench backend."},"finish_reason":"stop"}],"usage":{"prompt_tokens":8,"completion_tokens":6,"total_tokens":14}}"#;

const MODELS: &str = r#"{"object":"list","data":[{"id":"bench","object":"model","created":1700000000,"owned_by":"bench"}]}"#;

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

fn event(i: usize, last: bool) -> Bytes {
    let finish = if last { r#""stop""# } else { "null" };
    // Taken as late as possible: the stream yields this chunk straight to the writer.
    let sent = now_ns();
    Bytes::from(format!(
        "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"bench\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"tok{i} \"}},\"finish_reason\":{finish}}}],\"sent_ns\":{sent}}}\n\n"
    ))
}

async fn chat(body: Bytes, opts: web::Data<Options>) -> HttpResponse {
    let stream = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("stream").and_then(|s| s.as_bool()))
        .unwrap_or(false);
    if !stream {
        return HttpResponse::Ok()
            .content_type(ContentType::json())
            .body(COMPLETION);
    }
    let (chunks, delay) = (opts.chunks, opts.chunk_delay);
    // State: index of the next event; `chunks` = the [DONE] marker; beyond = end.
    let events = futures_util::stream::unfold(0usize, move |i| async move {
        if i > chunks {
            return None;
        }
        if i > 0 && !delay.is_zero() {
            actix_rt::time::sleep(delay).await;
        }
        let bytes = if i == chunks {
            Bytes::from_static(b"data: [DONE]\n\n")
        } else {
            event(i, i + 1 == chunks)
        };
        Some((Ok::<_, std::io::Error>(bytes), i + 1))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(CacheControl(vec![CacheDirective::NoCache]))
        .streaming(events)
}

fn main() -> std::io::Result<()> {
    let opts = parse_args();
    let max = Duration::from_secs(opts.max_seconds);
    std::thread::spawn(move || {
        std::thread::sleep(max);
        eprintln!("bench_backend: --max-seconds reached; exiting");
        std::process::exit(0);
    });
    actix_rt::System::new().block_on(async move {
        let listener = std::net::TcpListener::bind(("127.0.0.1", opts.port))?;
        let port = listener.local_addr()?.port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(opts))
                .app_data(web::PayloadConfig::new(16 * 1024 * 1024))
                .route(
                    "/health",
                    web::get().to(|| async {
                        HttpResponse::Ok()
                            .content_type(ContentType::json())
                            .body(r#"{"status":"ok"}"#)
                    }),
                )
                .route(
                    "/v1/models",
                    web::get().to(|| async {
                        HttpResponse::Ok()
                            .content_type(ContentType::json())
                            .body(MODELS)
                    }),
                )
                .route("/v1/chat/completions", web::post().to(chat))
        })
        .workers(opts.workers)
        // Like real LLM servers (uvicorn, for one, sets TCP_NODELAY): every SSE chunk goes out
        // at once. actix-web leaves Nagle's algorithm on unless told.
        .tcp_nodelay(!opts.nagle)
        .backlog(4096)
        .listen(listener)?
        .run();
        println!("listening http://127.0.0.1:{port}");
        use std::io::Write;
        std::io::stdout().flush()?;
        server.await
    })
}
