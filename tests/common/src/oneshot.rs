//! [`OneShotServer`]: a backend written by hand over `TcpListener` that answers one request
//! per connection and then closes it without saying so (no `Connection: close`), as
//! llama.cpp's server and uvicorn drop keep-alive connections whenever they like (SPEC 9.6).
//! What it answers is whatever bytes the test's function returns for the request, so it can
//! also send what no HTTP library would: a garbage head, a head cut short, nothing (9.5).
//!
//! The close may come a moment after the answer ([`OneShotServer::start_closing_after`]): a
//! client that reuses the connection meanwhile has its next request swallowed by the close,
//! which is the case a client's own check of an idle connection cannot catch.
//!
//! One thread accepts; each connection gets a thread of its own that reads one request (head
//! and `Content-Length` body, with a deadline), writes the answer and closes. Dropping the
//! server stops the accept loop and joins it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

/// Deadline for reading a request and for writing its answer.
const IO_DEADLINE: Duration = Duration::from_secs(5);

/// How often the accept loop looks at the stop flag while nobody connects.
const ACCEPT_POLL: Duration = Duration::from_millis(5);

/// A request as the server read it.
#[derive(Clone, Debug)]
pub struct OneShotRequest {
    pub method: String,
    /// The request target as sent (path and query).
    pub path: String,
    pub body: Vec<u8>,
}

type Answer = dyn Fn(&OneShotRequest) -> Vec<u8> + Send + Sync;

struct Shared {
    answer: Box<Answer>,
    /// How long a connection stays open after its answer, reading nothing.
    close_after: Duration,
    /// Requests (or parts of them) that were on a connection when it closed, unread.
    swallowed: AtomicUsize,
    log: Mutex<Vec<OneShotRequest>>,
    stop: AtomicBool,
}

/// A running one-request-per-connection server on `127.0.0.1`.
pub struct OneShotServer {
    shared: Arc<Shared>,
    port: u16,
    accept: Option<JoinHandle<()>>,
}

impl OneShotServer {
    /// Listen on `127.0.0.1:0`; every request gets the bytes `answer` returns for it, then its
    /// connection is closed.
    pub fn start(answer: impl Fn(&OneShotRequest) -> Vec<u8> + Send + Sync + 'static) -> Self {
        Self::start_closing_after(Duration::ZERO, answer)
    }

    /// As [`OneShotServer::start`], but each connection is closed `close_after` its answer;
    /// a request sent on it meanwhile is never read (the close then resets it).
    pub fn start_closing_after(
        close_after: Duration,
        answer: impl Fn(&OneShotRequest) -> Vec<u8> + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local address").port();
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let shared = Arc::new(Shared {
            answer: Box::new(answer),
            close_after,
            swallowed: AtomicUsize::new(0),
            log: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let accept = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("oneshot-{port}"))
                .spawn(move || accept_loop(listener, shared))
                .expect("spawn the accept thread")
        };
        OneShotServer {
            shared,
            port,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Requests whose target (without query) equals `path`.
    pub fn count(&self, path: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.path.split('?').next() == Some(path))
            .count()
    }

    /// Connections that carried the start of a further request when they closed: requests
    /// a client sent on a connection it reused just before the close, lost with it.
    pub fn swallowed(&self) -> usize {
        self.shared.swallowed.load(Ordering::SeqCst)
    }

    /// Every request read so far, oldest first.
    pub fn requests(&self) -> Vec<OneShotRequest> {
        self.shared
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for OneShotServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// A complete response with `Content-Length` and no `Connection` header: nothing in it says
/// that the connection is about to close.
fn http_response(status: u16, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        reason_phrase(status),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// [`http_response`] of a JSON body.
pub fn json_response(status: u16, body: &Value) -> Vec<u8> {
    http_response(status, "application/json", body.to_string().as_bytes())
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let shared = shared.clone();
                // Each connection lives at most two I/O deadlines; nothing to join.
                let _ = std::thread::Builder::new()
                    .name("oneshot-conn".to_string())
                    .spawn(move || serve_one(stream, &shared));
            }
            // WouldBlock (nobody is connecting) and errors alike: look again shortly.
            Err(_) => std::thread::sleep(ACCEPT_POLL),
        }
    }
}

/// Read one request, write its answer, close.
fn serve_one(mut stream: TcpStream, shared: &Shared) {
    let prepared = stream.set_nonblocking(false).is_ok()
        && stream.set_read_timeout(Some(IO_DEADLINE)).is_ok()
        && stream.set_write_timeout(Some(IO_DEADLINE)).is_ok();
    if !prepared {
        return;
    }
    let Some(req) = read_request(&mut stream) else {
        return;
    };
    shared
        .log
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(req.clone());
    let answer = (shared.answer)(&req);
    let _ = stream.write_all(&answer);
    let _ = stream.flush();
    // The whole request was read, so an immediate close is a FIN, not a reset.
    if !shared.close_after.is_zero() {
        std::thread::sleep(shared.close_after);
        // Peek, not read: bytes left unread make the close a reset, as a real server's does.
        let mut one = [0u8; 1];
        if stream.set_nonblocking(true).is_ok() && matches!(stream.peek(&mut one), Ok(n) if n > 0) {
            shared.swallowed.fetch_add(1, Ordering::SeqCst);
        }
    }
    drop(stream);
}

/// The request head and its `Content-Length` body; `None` on EOF, error or deadline.
fn read_request(stream: &mut TcpStream) -> Option<OneShotRequest> {
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&got[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_string();
    let path = first.next().unwrap_or_default().to_string();
    let length = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = got.split_off(head_end);
    while body.len() < length {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => body.extend_from_slice(&buf[..n]),
        }
    }
    body.truncate(length);
    Some(OneShotRequest { method, path, body })
}
