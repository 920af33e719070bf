//! A tiny blocking HTTP/1.1 client for the end-to-end tests.
//!
//! Plain `std::net::TcpStream`, one connection per request, `Connection: close`, so a test sees
//! exactly what went over the wire: no pooling, no retries, no decompression, no redirects.
//! Bodies framed by `Content-Length`, `Transfer-Encoding: chunked` or end-of-file are decoded;
//! [`StreamResp`] hands out body bytes as they arrive, each with its arrival `Instant`, so tests
//! can assert that Corral forwards streams chunk by chunk.
//!
//! Functions without `try_` panic on transport errors (with the URL in the message); the
//! `try_` forms and [`Client`] return `io::Result` for tests that expect refusals or timeouts.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Default connect, write and whole-response deadline.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest response head the client accepts.
const MAX_HEAD: usize = 1 << 20;

/// A complete response.
#[derive(Clone, Debug)]
pub struct Resp {
    pub status: u16,
    /// In arrival order, names as sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    /// First value of a header, case-insensitive.
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// Every value of a header, case-insensitive.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the status and body when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}): status {} body {:?}",
                self.status,
                self.text()
            )
        })
    }
}

/// A piece of a response body and when it was read off the socket.
#[derive(Clone, Debug)]
pub struct Chunk {
    pub at: Instant,
    pub data: Vec<u8>,
}

/// A text record (SSE event data or NDJSON line) and when its last byte arrived.
#[derive(Clone, Debug)]
pub struct Timed {
    pub at: Instant,
    pub text: String,
}

/// A client with its own deadline: for `request`, a deadline for the whole exchange; for
/// `stream`, the longest wait for the head and for each next piece of the body.
#[derive(Clone, Copy, Debug)]
pub struct Client {
    pub timeout: Duration,
}

impl Default for Client {
    fn default() -> Self {
        Client {
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl Client {
    pub fn with_timeout(timeout: Duration) -> Client {
        Client { timeout }
    }

    pub fn get(&self, url: &str) -> io::Result<Resp> {
        self.request("GET", url, &[], b"")
    }

    pub fn post_json(&self, url: &str, body: &Value) -> io::Result<Resp> {
        let bytes = serde_json::to_vec(body).expect("serialise JSON");
        self.request("POST", url, &[("Content-Type", "application/json")], &bytes)
    }

    /// One whole exchange within `self.timeout`. Timeouts come back as `ErrorKind::TimedOut`.
    pub fn request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Resp> {
        let deadline = Instant::now() + self.timeout;
        let mut s = open(method, url, headers, body, self.timeout, Some(deadline))?;
        let mut out = Vec::new();
        while let Some(c) = s.next_chunk()? {
            out.extend_from_slice(&c.data);
        }
        Ok(Resp {
            status: s.status,
            headers: s.headers,
            body: out,
        })
    }

    /// Send a request and return once the response head is in; read the body with
    /// [`StreamResp::next_chunk`]. `self.timeout` bounds each wait, not the whole stream.
    pub fn stream(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<StreamResp> {
        open(method, url, headers, body, self.timeout, None)
    }
}

/// `GET url`; panics on transport errors.
pub fn get(url: &str) -> Resp {
    request("GET", url, &[], b"")
}

/// `GET url` returning transport errors.
pub fn try_get(url: &str) -> io::Result<Resp> {
    Client::default().get(url)
}

/// `GET url` and parse the body as JSON (`Value::Null` if it is not JSON).
pub fn get_json(url: &str) -> (u16, Value) {
    let r = get(url);
    let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.status, v)
}

/// `POST url` with a JSON body; panics on transport errors.
pub fn post_json(url: &str, body: &Value) -> Resp {
    Client::default()
        .post_json(url, body)
        .unwrap_or_else(|e| panic!("POST {url}: {e}"))
}

/// Any request; panics on transport errors.
pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    try_request(method, url, headers, body).unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

/// Any request, returning transport errors.
pub fn try_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Resp> {
    Client::default().request(method, url, headers, body)
}

/// Start a streaming request; panics if the head does not arrive.
pub fn stream(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> StreamResp {
    Client::default()
        .stream(method, url, headers, body)
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

/// `POST url` with a JSON body, streaming the reply; panics if the head does not arrive.
pub fn stream_json(url: &str, body: &Value) -> StreamResp {
    let bytes = serde_json::to_vec(body).expect("serialise JSON");
    stream("POST", url, &[("Content-Type", "application/json")], &bytes)
}

enum Framing {
    /// No body (HEAD, 204, 304).
    Empty,
    Length(u64),
    Chunked(ChunkState),
    /// Read until the server closes.
    Eof,
}

enum ChunkState {
    /// Expecting a size line.
    Size,
    /// Inside chunk data; this many bytes left.
    Data(u64),
    /// Expecting the CRLF after chunk data.
    DataEnd,
    /// After the last (zero) chunk: trailer lines until an empty one.
    Trailers,
}

/// A response whose head has arrived and whose body is read piece by piece.
pub struct StreamResp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    sock: TcpStream,
    buf: Vec<u8>,
    /// When the bytes now in `buf` were read.
    buf_at: Instant,
    framing: Framing,
    done: bool,
    complete: bool,
    idle: Duration,
    deadline: Option<Instant>,
}

impl StreamResp {
    /// First value of a header, case-insensitive.
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// Longest wait for the next piece from now on.
    pub fn set_idle_timeout(&mut self, d: Duration) {
        self.idle = d;
    }

    /// True once the body ended as framed (last chunk or full length, or EOF when the
    /// response had no framing). False for a body cut short.
    pub fn complete(&self) -> bool {
        self.complete
    }

    /// The next decoded body bytes, as soon as any arrive; `Ok(None)` at the end of a body.
    /// A body cut short gives `ErrorKind::UnexpectedEof`; a wait past the timeout `TimedOut`.
    pub fn next_chunk(&mut self) -> io::Result<Option<Chunk>> {
        loop {
            if self.done {
                return Ok(None);
            }
            let data = self.decode()?;
            if !data.is_empty() {
                return Ok(Some(Chunk {
                    at: self.buf_at,
                    data,
                }));
            }
            if self.done {
                return Ok(None);
            }
            if self.fill()? == 0 {
                self.done = true;
                if matches!(self.framing, Framing::Eof) {
                    self.complete = true;
                    return Ok(None);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before the end of the body",
                ));
            }
        }
    }

    /// Read to the end; panics on errors (including a body cut short).
    pub fn chunks(&mut self) -> Vec<Chunk> {
        let (chunks, err) = self.try_chunks();
        if let Some(e) = err {
            panic!(
                "stream failed after {} pieces ({:?}): {e}",
                chunks.len(),
                String::from_utf8_lossy(&body_of(&chunks))
            );
        }
        chunks
    }

    /// Read to the end or the first error; returns what arrived and the error, if any.
    pub fn try_chunks(&mut self) -> (Vec<Chunk>, Option<io::Error>) {
        let mut out = Vec::new();
        loop {
            match self.next_chunk() {
                Ok(Some(c)) => out.push(c),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
        }
    }

    /// Hang up now, as a client that goes away mid-stream.
    pub fn disconnect(self) {
        let _ = self.sock.shutdown(Shutdown::Both);
    }

    /// Read more bytes into `buf`; 0 at EOF.
    fn fill(&mut self) -> io::Result<usize> {
        let mut wait = self.idle;
        if let Some(d) = self.deadline {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(timed_out(self.idle));
            }
            wait = wait.min(left);
        }
        self.sock
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
        let mut tmp = [0u8; 16 * 1024];
        loop {
            match self.sock.read(&mut tmp) {
                Ok(n) => {
                    self.buf_at = Instant::now();
                    self.buf.extend_from_slice(&tmp[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    return Err(timed_out(wait));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Decode as much body as `buf` holds.
    fn decode(&mut self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        match &mut self.framing {
            Framing::Empty => {
                self.done = true;
                self.complete = true;
            }
            Framing::Eof => out = std::mem::take(&mut self.buf),
            Framing::Length(left) => {
                let n = (*left).min(self.buf.len() as u64) as usize;
                out = self.buf.drain(..n).collect();
                *left -= n as u64;
                if *left == 0 {
                    self.done = true;
                    self.complete = true;
                }
            }
            Framing::Chunked(state) => loop {
                match state {
                    ChunkState::Size => {
                        let Some(line) = take_line(&mut self.buf) else {
                            break;
                        };
                        let hex = line.split(';').next().unwrap_or("").trim();
                        let size = u64::from_str_radix(hex, 16).map_err(|_| {
                            io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!("bad chunk size line {line:?}"),
                            )
                        })?;
                        *state = if size == 0 {
                            ChunkState::Trailers
                        } else {
                            ChunkState::Data(size)
                        };
                    }
                    ChunkState::Data(left) => {
                        if self.buf.is_empty() {
                            break;
                        }
                        let n = (*left).min(self.buf.len() as u64) as usize;
                        out.extend(self.buf.drain(..n));
                        *left -= n as u64;
                        if *left == 0 {
                            *state = ChunkState::DataEnd;
                        }
                    }
                    ChunkState::DataEnd => {
                        let Some(line) = take_line(&mut self.buf) else {
                            break;
                        };
                        if !line.is_empty() {
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                "chunk data not followed by CRLF",
                            ));
                        }
                        *state = ChunkState::Size;
                    }
                    ChunkState::Trailers => {
                        let Some(line) = take_line(&mut self.buf) else {
                            break;
                        };
                        if line.is_empty() {
                            self.done = true;
                            self.complete = true;
                            break;
                        }
                    }
                }
            },
        }
        Ok(out)
    }
}

/// Body pieces as they arrive; ends after the body or after the first error.
impl Iterator for StreamResp {
    type Item = io::Result<Chunk>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_chunk() {
            Ok(c) => c.map(Ok),
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Concatenated body of some chunks.
pub fn body_of(chunks: &[Chunk]) -> Vec<u8> {
    chunks.iter().flat_map(|c| c.data.iter().copied()).collect()
}

/// Server-sent events in a body: each event's `data:` payload (multi-line data joined with
/// `\n`) and the arrival time of the piece that completed the event. Events without data
/// (comments, keep-alives) are skipped.
pub fn sse_events(chunks: &[Chunk]) -> Vec<Timed> {
    split_records(chunks, b"\n\n")
        .into_iter()
        .filter_map(|r| {
            let data: Vec<&str> = r
                .text
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            (!data.is_empty()).then(|| Timed {
                at: r.at,
                text: data.join("\n"),
            })
        })
        .collect()
}

/// Non-empty lines of an NDJSON body, each with the arrival time of its newline.
pub fn ndjson_lines(chunks: &[Chunk]) -> Vec<Timed> {
    split_records(chunks, b"\n")
        .into_iter()
        .filter(|r| !r.text.trim().is_empty())
        .collect()
}

/// Split a chunked body into records ending in `sep` (a trailing unterminated record is kept).
/// `\r\n` is normalised to `\n` first.
fn split_records(chunks: &[Chunk], sep: &[u8]) -> Vec<Timed> {
    let mut out = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    let mut last_at = None;
    for c in chunks {
        last_at = Some(c.at);
        for &b in &c.data {
            if b == b'\r' {
                continue;
            }
            cur.push(b);
            if cur.ends_with(sep) {
                cur.truncate(cur.len() - sep.len());
                out.push(Timed {
                    at: c.at,
                    text: String::from_utf8_lossy(&cur).into_owned(),
                });
                cur.clear();
            }
        }
    }
    if let (false, Some(at)) = (cur.is_empty(), last_at) {
        out.push(Timed {
            at,
            text: String::from_utf8_lossy(&cur).into_owned(),
        });
    }
    out
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn timed_out(after: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no response data within {after:?}"),
    )
}

/// Pop one CRLF- (or LF-) terminated line off the front of `buf`, without the terminator.
fn take_line(buf: &mut Vec<u8>) -> Option<String> {
    let pos = buf.iter().position(|&b| b == b'\n')?;
    let mut line: Vec<u8> = buf.drain(..=pos).collect();
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Some(String::from_utf8_lossy(&line).into_owned())
}

/// `http://host[:port][/path][?query]` -> (host for the Host header, addr to connect, target).
fn parse_url(url: &str) -> io::Result<(String, String, String)> {
    let bad = || io::Error::new(io::ErrorKind::InvalidInput, format!("bad URL {url:?}"));
    let rest = url.strip_prefix("http://").ok_or_else(bad)?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(end);
    if authority.is_empty() {
        return Err(bad());
    }
    let target = match target.chars().next() {
        None => "/".to_string(),
        Some('?') => format!("/{target}"),
        Some(_) => target.to_string(),
    };
    let has_port = match authority.strip_prefix('[') {
        Some(v6) => v6.contains("]:"),
        None => authority.contains(':'),
    };
    let addr = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok((authority.to_string(), addr, target))
}

fn connect(addr: &str, timeout: Duration) -> io::Result<TcpStream> {
    let mut last = None;
    for a in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{addr} resolves to nothing"),
        )
    }))
}

fn open(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
    deadline: Option<Instant>,
) -> io::Result<StreamResp> {
    let (host, addr, target) = parse_url(url)?;
    let sock = connect(&addr, timeout)?;
    sock.set_write_timeout(Some(timeout))?;
    let _ = sock.set_nodelay(true);

    let has = |n: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    let mut head = format!("{method} {target} HTTP/1.1\r\n");
    if !has("host") {
        head.push_str(&format!("Host: {host}\r\n"));
    }
    if !has("connection") {
        head.push_str("Connection: close\r\n");
    }
    if !has("content-length")
        && !has("transfer-encoding")
        && (!body.is_empty() || !matches!(method, "GET" | "HEAD" | "DELETE" | "OPTIONS"))
    {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");

    let mut msg = head.into_bytes();
    msg.extend_from_slice(body);
    let mut sock_w = &sock;
    if let Err(e) = sock_w.write_all(&msg) {
        // A server may answer (413, 431) and close before reading the whole request: read the
        // answer if there is one rather than reporting the broken pipe.
        if !matches!(
            e.kind(),
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
        ) {
            return Err(e);
        }
    }

    let mut s = StreamResp {
        status: 0,
        headers: Vec::new(),
        sock,
        buf: Vec::new(),
        buf_at: Instant::now(),
        framing: Framing::Eof,
        done: false,
        complete: false,
        idle: timeout,
        deadline,
    };
    loop {
        let end = loop {
            if let Some(p) = s.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p;
            }
            if s.buf.len() > MAX_HEAD {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "response head too large",
                ));
            }
            if s.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "connection closed before a response head ({} bytes: {:?})",
                        s.buf.len(),
                        String::from_utf8_lossy(&s.buf)
                    ),
                ));
            }
        };
        let head: Vec<u8> = s.buf.drain(..end + 4).collect();
        let head = String::from_utf8_lossy(&head[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad status line {status_line:?}"),
                )
            })?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        if (100..200).contains(&status) && status != 101 {
            continue; // interim response (100 Continue): the real one follows
        }
        let chunked = find_header(&headers, "transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let length = find_header(&headers, "content-length").and_then(|v| v.parse::<u64>().ok());
        s.framing = if method.eq_ignore_ascii_case("HEAD") || status == 204 || status == 304 {
            Framing::Empty
        } else if chunked {
            Framing::Chunked(ChunkState::Size)
        } else if let Some(n) = length {
            Framing::Length(n)
        } else {
            Framing::Eof
        };
        s.status = status;
        s.headers = headers;
        return Ok(s);
    }
}
