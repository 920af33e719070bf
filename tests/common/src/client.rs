//! The tests' HTTP client: [`Api`], a thin layer over `ureq` bound to one base URL (a Corral
//! or a mock backend).
//!
//! Every request goes out on a fresh connection (no pool), so a test sees one exchange per
//! request and a stopping server is never held up by an idle connection of ours. 4xx and 5xx
//! are answers, not errors. [`Stream`] hands out body bytes as `ureq` reads them off the
//! socket, each with its arrival `Instant`, so tests can assert that streams are forwarded
//! chunk by chunk; [`sse_events`] and [`ndjson_lines`] split them into timed records.

use std::io::{self, Read};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use ureq::http;

/// Deadline for a whole exchange, and for each read of a stream.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// No stream in the tests runs longer than this.
const STREAM_DEADLINE: Duration = Duration::from_secs(60);

/// A complete response.
#[derive(Clone, Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    /// First value of a header, case-insensitive.
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
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

/// A client for one server: `http://host:port`, plus an optional bearer token for Corral's
/// `/internal/*` routes.
#[derive(Clone)]
pub struct Api {
    base: String,
    token: Option<String>,
    /// For whole exchanges: one deadline for everything.
    agent: ureq::Agent,
    /// For streams: a deadline per read, so a long stream is fine and a stalled one is not.
    stream_agent: ureq::Agent,
}

type AgentConfig = ureq::config::ConfigBuilder<ureq::typestate::AgentScope>;

fn agent(configure: impl FnOnce(AgentConfig) -> AgentConfig) -> ureq::Agent {
    let builder = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_idle_connections(0)
        .max_idle_connections_per_host(0)
        // The tests send bodies with any method they please (a GET with a body included).
        .allow_non_standard_methods(true);
    configure(builder).build().new_agent()
}

impl Api {
    /// A client for `base` (`http://127.0.0.1:PORT`) with the default deadline.
    pub fn new(base: &str) -> Api {
        Api::with_timeout(base, DEFAULT_TIMEOUT)
    }

    /// A client whose exchanges, and each read of a stream, must finish within `timeout`.
    pub fn with_timeout(base: &str, timeout: Duration) -> Api {
        Api {
            base: base.trim_end_matches('/').to_string(),
            token: None,
            agent: agent(|b| b.timeout_global(Some(timeout))),
            stream_agent: agent(|b| {
                b.timeout_global(Some(STREAM_DEADLINE))
                    .timeout_connect(Some(timeout))
                    .timeout_recv_response(Some(timeout))
                    .timeout_per_read(Some(timeout))
            }),
        }
    }

    /// The same client, sending `Authorization: Bearer <token>` unless a request sets its own.
    pub fn with_token(mut self, token: &str) -> Api {
        self.token = Some(token.to_string());
        self
    }

    /// `http://host:port`
    pub fn url(&self) -> &str {
        &self.base
    }

    /// `host:port`
    pub fn authority(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// `url()` + `path` (path starts with `/`).
    pub fn url_for(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET path`; panics on transport errors.
    pub fn get(&self, path: &str) -> Resp {
        self.request("GET", path, &[], b"")
    }

    /// `GET path` and the body as JSON (`Null` if it is not JSON).
    pub fn get_json(&self, path: &str) -> (u16, Value) {
        let r = self.get(path);
        let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        (r.status, v)
    }

    /// `POST path` with a JSON body; panics on transport errors.
    pub fn post_json(&self, path: &str, body: &Value) -> Resp {
        let bytes = serde_json::to_vec(body).expect("serialise JSON");
        self.request(
            "POST",
            path,
            &[("Content-Type", "application/json")],
            &bytes,
        )
    }

    /// Any request; panics on transport errors.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        self.try_request(method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {}: {e}", self.url_for(path)))
    }

    /// Any request, returning transport errors (refused, timed out, reset).
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Resp, ureq::Error> {
        let mut resp = self.agent.run(self.build(method, path, headers, body))?;
        let out = resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()?;
        Ok(Resp {
            status: resp.status().as_u16(),
            headers: headers_of(resp.headers()),
            body: out,
        })
    }

    /// `POST path` with a JSON body; returns once the response head is in. Panics if it
    /// does not come.
    pub fn stream_json(&self, path: &str, body: &Value) -> Stream {
        let bytes = serde_json::to_vec(body).expect("serialise JSON");
        let req = self.build(
            "POST",
            path,
            &[("Content-Type", "application/json")],
            &bytes,
        );
        let resp = self
            .stream_agent
            .run(req)
            .unwrap_or_else(|e| panic!("POST {}: {e}", self.url_for(path)));
        let (parts, body) = resp.into_parts();
        Stream {
            status: parts.status.as_u16(),
            headers: headers_of(&parts.headers),
            reader: body.into_reader(),
            complete: false,
        }
    }

    fn build(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> http::Request<Vec<u8>> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(self.url_for(path));
        let has_auth = headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("authorization"));
        if let (Some(token), false) = (&self.token, has_auth) {
            req = req.header("Authorization", format!("Bearer {token}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(body.to_vec())
            .unwrap_or_else(|e| panic!("bad request {method} {path}: {e}"))
    }
}

/// Corral's status API (SPEC 6), for Corral in-process or as a process alike.
impl Api {
    /// `GET /internal/status/endpoints` -> the `endpoints` array.
    pub fn endpoints(&self) -> Vec<Value> {
        let (status, v) = self.get_json("/internal/status/endpoints");
        assert_eq!(status, 200, "GET /internal/status/endpoints: {v}");
        v.get("endpoints")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_else(|| panic!("no endpoints array in {v}"))
    }

    /// The status object of the endpoint named `name`; panics if there is none.
    pub fn endpoint(&self, name: &str) -> Value {
        self.endpoints()
            .into_iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no endpoint {name}"))
    }

    /// The `status` of endpoint `name` (`healthy`, `unhealthy`, ...).
    pub fn status_of(&self, name: &str) -> String {
        self.endpoint(name)["status"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Wait until endpoint `name` has status `status`.
    pub fn wait_status(&self, name: &str, status: &str, timeout: Duration) {
        crate::wait_until(timeout, &format!("endpoint {name} {status}"), || {
            self.status_of(name) == status
        });
    }

    /// Wait until exactly `n` endpoints are configured and every one is `healthy`.
    pub fn wait_all_healthy(&self, n: usize, timeout: Duration) {
        crate::wait_until(timeout, &format!("{n} endpoints healthy"), || {
            let e = self.endpoints();
            e.len() == n && e.iter().all(|e| e["status"] == "healthy")
        });
    }

    /// Requests in flight through Corral, summed over every endpoint.
    pub fn in_flight_total(&self) -> u64 {
        self.endpoints()
            .iter()
            .map(|e| e["in_flight"].as_u64().unwrap_or(0))
            .sum()
    }

    /// `Ok` when every endpoint looks as if nothing had happened to it: `healthy`, no
    /// consecutive failures, proxy breaker closed with no failures counted. Otherwise the
    /// status of each endpoint that does not.
    pub fn all_untouched(&self) -> Result<(), String> {
        let touched: Vec<String> = self
            .endpoints()
            .into_iter()
            .filter(|e| {
                e["status"] != "healthy"
                    || e["consecutive_failures"] != 0
                    || e["circuit_breaker"]["proxy"]["state"] != "closed"
                    || e["circuit_breaker"]["proxy"]["failures"] != 0
            })
            .map(|e| e.to_string())
            .collect();
        if touched.is_empty() {
            Ok(())
        } else {
            Err(touched.join("\n"))
        }
    }

    /// Model names in `GET /internal/status/models`, in the order Corral lists them.
    pub fn model_names(&self) -> Vec<String> {
        let (_, body) = self.get_json("/internal/status/models");
        body["models"]
            .as_array()
            .map(|m| {
                m.iter()
                    .map(|m| m["name"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
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

/// A response whose head has arrived and whose body is read piece by piece.
pub struct Stream {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    reader: ureq::BodyReader<'static>,
    complete: bool,
}

impl Stream {
    /// First value of a header, case-insensitive.
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// True once the body ended as framed; false for a body cut short or not read to its end.
    pub fn complete(&self) -> bool {
        self.complete
    }

    /// The next body bytes, as soon as any arrive; `Ok(None)` at the end of the body. A body
    /// cut short, or a read past the deadline, is an error.
    pub fn next_chunk(&mut self) -> io::Result<Option<Chunk>> {
        if self.complete {
            return Ok(None);
        }
        let mut buf = vec![0u8; 16 * 1024];
        let n = self.reader.read(&mut buf)?;
        if n == 0 {
            self.complete = true;
            return Ok(None);
        }
        buf.truncate(n);
        Ok(Some(Chunk {
            at: Instant::now(),
            data: buf,
        }))
    }

    /// Read to the end; panics on errors (including a body cut short).
    pub fn chunks(&mut self) -> Vec<Chunk> {
        let (chunks, err) = self.try_chunks();
        if let Some(e) = err {
            panic!(
                "stream failed after {} pieces ({:?}): {e}",
                chunks.len(),
                String::from_utf8_lossy(
                    &chunks
                        .iter()
                        .flat_map(|c| c.data.clone())
                        .collect::<Vec<_>>()
                )
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

    /// Hang up now, as a client that goes away mid-stream: an unfinished body's connection
    /// is closed, never pooled.
    pub fn disconnect(self) {
        drop(self.reader);
    }
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

/// Split a body into records ending in `sep` (a trailing unterminated record is kept).
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

fn headers_of(map: &http::HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// An OpenAI-style chat request body for `model`.
pub fn chat(model: &str, stream: bool) -> Value {
    json!({ "model": model, "messages": [{ "role": "user", "content": "hi" }], "stream": stream })
}

/// The endpoint that served a proxied answer (`X-Olla-Endpoint`), or "" when none did.
pub fn served_by(resp: &Resp) -> String {
    resp.header("x-olla-endpoint")
        .unwrap_or_default()
        .to_string()
}
