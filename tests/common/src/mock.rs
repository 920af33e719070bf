//! Controllable mock LLM backends for the end-to-end tests.
//!
//! A [`MockBackend`] is a real HTTP/1.1 server on `127.0.0.1` (actix-web, one worker, in its own
//! thread with its own `actix_rt::System`) that speaks the routes of one backend family
//! ([`Persona`]) and can be told, from the test thread, to fail in the ways real backends fail:
//! answer a status, hang, be slow, stop listening (connections refused) and come back on the
//! same port, freeze as a stopped process does, die after a response head, queue its health
//! route behind the streams it serves, or say that it is loading a model. It records every
//! request it sees so tests can assert what Corral sent and when.
//!
//! Every control takes `&self` and is effective for the next request; `refuse()` and
//! `restore()` block until the change can be observed from outside.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use actix_web::dev::{Extensions, ServerHandle};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value};

/// How long `refuse()`/`restore()`/start may take before the harness gives up.
const CONTROL_DEADLINE: Duration = Duration::from_secs(10);

/// A `Hang` handler sleeps this long; far beyond any test, short of forever so nothing leaks
/// for the life of a long-running process.
const HANG_FOR: Duration = Duration::from_secs(3600);

/// The backend family a mock imitates: which routes exist and what their bodies look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persona {
    /// `GET /` "Ollama is running", `/api/tags`, `/api/chat`, `/api/generate`, plus `/v1/*`.
    Ollama,
    /// vLLM (and llama.cpp / SGLang): `GET /health` 200 `{}`, OpenAI `/v1/*`.
    Vllm,
    /// LM Studio: OpenAI `/v1/*` and `GET /api/v0/models` with `state`.
    LmStudio,
    /// An OpenAI-compatible server without `/health` (llama-cpp-python): `/health` is 404.
    OpenAiNoHealth,
}

impl Persona {
    /// The default mock name (also the `X-Mock-Backend` header) for this persona.
    pub fn name(self) -> &'static str {
        match self {
            Persona::Ollama => "ollama",
            Persona::Vllm => "vllm",
            Persona::LmStudio => "lmstudio",
            Persona::OpenAiNoHealth => "openai-no-health",
        }
    }

    /// The `type:` to write in a Corral endpoint config for this persona.
    pub fn corral_type(self) -> &'static str {
        match self {
            Persona::Ollama => "ollama",
            Persona::Vllm => "vllm",
            Persona::LmStudio => "lm-studio",
            Persona::OpenAiNoHealth => "openai-compatible",
        }
    }
}

/// What the mock does with a request, before routing it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Serve the persona's routes normally.
    Up,
    /// Answer this status with a small JSON body, whatever the route.
    Status(u16),
    /// As `Status`, plus `Retry-After: <value>` when `Some`.
    StatusWithRetryAfter(u16, Option<String>),
    /// Never answer (the connection stays open; the handler sleeps for an hour).
    Hang,
    /// Serve normally after this delay (delays the response headers).
    Slow(Duration),
    /// Read the request, then close the connection without sending a byte of a response:
    /// the EOF a crashing backend leaves where its answer should be.
    Close,
    /// Send a `200` head at once, then close the connection before any body byte: a backend
    /// that answers before it works and dies before its first token (SPEC 9.2).
    HeadThenClose,
    /// Serve normally, but only once no stream of this mock is in progress: the health route
    /// of a server that queues it behind the generation (llama-cpp-python's `/v1/models`).
    WaitWhileStreaming,
    /// `503` with llama.cpp's body while it loads a model:
    /// `{"error":{"code":503,"message":"Loading model","type":"unavailable_error"}}`.
    Loading,
    /// Answer exactly this status, content type and body, whatever the route: a load report
    /// (`/api/ps`, `/slots`, `/metrics`) or any other canned answer.
    Canned {
        status: u16,
        content_type: &'static str,
        body: String,
    },
}

/// One request as the mock received it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// When the request (head and body) had been read.
    pub at: Instant,
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// Query string without `?` ("" when none).
    pub query: String,
    /// Header names are lowercase.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    /// First value of a header, case-insensitive.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON (`Value::Null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

struct Ctl {
    behaviour: Behaviour,
    /// (path prefix, behaviour); the longest matching prefix wins over `behaviour`.
    overrides: Vec<(String, Behaviour)>,
    models: Vec<String>,
    chunk_delay: Duration,
    /// Pause between a stream's head and its first chunk.
    first_chunk_delay: Duration,
    chunks: usize,
    break_after: Option<usize>,
    /// (path prefix, header name, value) added to every response on a matching path.
    extra_headers: Vec<(String, String, String)>,
    /// (header name, value) every request must carry, else 401: a backend started with an
    /// API key (`vllm --api-key`, `llama-server --api-key`).
    required_header: Option<(String, String)>,
}

struct Shared {
    name: String,
    persona: Persona,
    ctl: Mutex<Ctl>,
    log: Mutex<Vec<Seen>>,
    /// Open TCP connections (so `refuse()` can wait until keep-alive connections are closed).
    conns: Arc<AtomicUsize>,
    /// Requests inside a handler or still streaming their body.
    in_flight: AtomicUsize,
    peak_in_flight: AtomicUsize,
    /// Streaming bodies dropped before their end (the client went away).
    streams_cancelled: AtomicUsize,
    /// Streaming bodies alive right now (`WaitWhileStreaming` waits for none).
    streams_active: AtomicUsize,
    peak_streams: AtomicUsize,
    /// When each stream's first content chunk was handed to actix, oldest first.
    first_chunks: Mutex<Vec<Instant>>,
    /// Set by `freeze()`: nothing is answered and no stream byte flows until `thaw()`.
    frozen: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not poison the mock for Drop and the other assertions.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Running {
    handle: ServerHandle,
    thread: JoinHandle<()>,
}

/// A running mock backend. Dropping it stops the server and joins its thread.
pub struct MockBackend {
    shared: Arc<Shared>,
    port: u16,
    running: Mutex<Option<Running>>,
}

impl MockBackend {
    /// Start a mock named after its persona.
    pub fn start(persona: Persona) -> MockBackend {
        Self::start_named(persona, persona.name())
    }

    /// Start a mock whose `X-Mock-Backend` header and reply contents carry `name`.
    pub fn start_named(persona: Persona, name: &str) -> MockBackend {
        let shared = Arc::new(Shared {
            name: name.to_string(),
            persona,
            ctl: Mutex::new(Ctl {
                behaviour: Behaviour::Up,
                overrides: Vec::new(),
                models: vec!["mock-model".to_string()],
                chunk_delay: Duration::ZERO,
                first_chunk_delay: Duration::ZERO,
                chunks: 3,
                break_after: None,
                extra_headers: Vec::new(),
                required_header: None,
            }),
            log: Mutex::new(Vec::new()),
            conns: Arc::new(AtomicUsize::new(0)),
            in_flight: AtomicUsize::new(0),
            peak_in_flight: AtomicUsize::new(0),
            streams_cancelled: AtomicUsize::new(0),
            streams_active: AtomicUsize::new(0),
            peak_streams: AtomicUsize::new(0),
            first_chunks: Mutex::new(Vec::new()),
            frozen: AtomicBool::new(false),
        });
        let running = launch(shared.clone(), 0)
            .unwrap_or_else(|e| panic!("mock {name}: cannot bind 127.0.0.1:0: {e}"));
        let port = running.1;
        MockBackend {
            shared,
            port,
            running: Mutex::new(Some(running.0)),
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    pub fn persona(&self) -> Persona {
        self.shared.persona
    }

    /// Behaviour for every route (path overrides from `set_behaviour_for` still win).
    pub fn set_behaviour(&self, b: Behaviour) {
        lock(&self.shared.ctl).behaviour = b;
    }

    /// Behaviour for paths starting with `path_prefix`; the longest matching prefix wins.
    pub fn set_behaviour_for(&self, path_prefix: &str, b: Behaviour) {
        let mut ctl = lock(&self.shared.ctl);
        ctl.overrides.retain(|(p, _)| p != path_prefix);
        ctl.overrides.push((path_prefix.to_string(), b));
    }

    /// Remove the override for exactly this prefix.
    pub fn clear_behaviour_for(&self, path_prefix: &str) {
        lock(&self.shared.ctl)
            .overrides
            .retain(|(p, _)| p != path_prefix);
    }

    /// Remove every path override.
    pub fn clear_overrides(&self) {
        lock(&self.shared.ctl).overrides.clear();
    }

    /// Models served by every model-list route (default: `["mock-model"]`).
    pub fn set_models(&self, models: &[&str]) {
        lock(&self.shared.ctl).models = models.iter().map(|m| m.to_string()).collect();
    }

    /// Pause between streamed chunks (default 0). The first chunk goes out at once; the
    /// pause comes before each later chunk and before the terminator.
    pub fn set_chunk_delay(&self, d: Duration) {
        lock(&self.shared.ctl).chunk_delay = d;
    }

    /// Pause between a stream's response head and its first chunk (default 0): a model that
    /// takes its time over the first token after the server has answered.
    pub fn set_first_chunk_delay(&self, d: Duration) {
        lock(&self.shared.ctl).first_chunk_delay = d;
    }

    /// Number of content chunks in a streamed reply (default 3), not counting the terminator.
    pub fn set_chunks(&self, n: usize) {
        lock(&self.shared.ctl).chunks = n;
    }

    /// `Some(k)`: streams break (connection aborted, no terminator) after k content chunks,
    /// like a backend dying mid-generation. `None` (default): streams complete.
    pub fn set_stream_break_after(&self, k: Option<usize>) {
        lock(&self.shared.ctl).break_after = k;
    }

    /// Add `name: value` to every response on a path starting with `path_prefix` (values of
    /// any length, as a misbehaving backend might send).
    pub fn set_response_header(&self, path_prefix: &str, name: &str, value: &str) {
        lock(&self.shared.ctl).extra_headers.push((
            path_prefix.to_string(),
            name.to_string(),
            value.to_string(),
        ));
    }

    /// From now on, every request without `name: value` gets `401` with
    /// `WWW-Authenticate: Bearer realm="mock"`, whatever the route (health included).
    pub fn require_header(&self, name: &str, value: &str) {
        lock(&self.shared.ctl).required_header = Some((name.to_string(), value.to_string()));
    }

    /// Stop listening: from return on, connects are refused and every connection that was
    /// open (keep-alive or mid-request) has been closed. No-op if already refusing.
    pub fn refuse(&self) {
        let running = lock(&self.running).take();
        if let Some(r) = running {
            r.stop();
        }
        let conns = &self.shared.conns;
        let deadline = Instant::now() + CONTROL_DEADLINE;
        while conns.load(Ordering::SeqCst) != 0 {
            assert!(
                Instant::now() < deadline,
                "mock {}: {} connections still open after stop",
                self.name(),
                conns.load(Ordering::SeqCst)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        loop {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
                _ => assert!(
                    Instant::now() < deadline,
                    "mock {}: port {} still accepts connections after stop",
                    self.name(),
                    self.port
                ),
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Listen again on the same port. Returns once connects succeed. No-op if listening.
    pub fn restore(&self) {
        let mut running = lock(&self.running);
        if running.is_some() {
            return;
        }
        let deadline = Instant::now() + CONTROL_DEADLINE;
        let r = loop {
            match launch(self.shared.clone(), self.port) {
                Ok((r, _)) => break r,
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "mock {}: cannot re-bind port {}: {e}",
                        self.name(),
                        self.port
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        };
        *running = Some(r);
    }

    /// Stop as SIGSTOP stops a process: from return on, no request is answered (each waits)
    /// and no stream sends another byte, until `thaw()`. Connections stay open.
    pub fn freeze(&self) {
        self.shared.frozen.store(true, Ordering::SeqCst);
    }

    /// Undo `freeze()`: waiting requests are answered and streams go on where they stopped.
    pub fn thaw(&self) {
        self.shared.frozen.store(false, Ordering::SeqCst);
    }

    /// True between `refuse()` and `restore()`.
    pub fn is_refusing(&self) -> bool {
        lock(&self.running).is_none()
    }

    /// Every request seen since start or the last `clear_log()`, oldest first.
    pub fn requests(&self) -> Vec<Seen> {
        lock(&self.shared.log).clone()
    }

    /// Requests whose path (without query) equals `path`.
    pub fn count(&self, path: &str) -> usize {
        lock(&self.shared.log)
            .iter()
            .filter(|s| s.path == path)
            .count()
    }

    /// Requests whose path starts with `prefix`.
    pub fn count_prefix(&self, prefix: &str) -> usize {
        lock(&self.shared.log)
            .iter()
            .filter(|s| s.path.starts_with(prefix))
            .count()
    }

    /// Total requests seen.
    pub fn total(&self) -> usize {
        lock(&self.shared.log).len()
    }

    /// Arrival times of requests whose path equals `path`.
    pub fn times(&self, path: &str) -> Vec<Instant> {
        lock(&self.shared.log)
            .iter()
            .filter(|s| s.path == path)
            .map(|s| s.at)
            .collect()
    }

    /// When each stream's first content chunk was handed to the server to send, oldest
    /// first (since start or `clear_log()`): the moment a first token leaves the backend.
    pub fn first_chunk_times(&self) -> Vec<Instant> {
        lock(&self.shared.first_chunks).clone()
    }

    /// Forget the request log and reset the in-flight high-water mark and cancel count.
    pub fn clear_log(&self) {
        lock(&self.shared.log).clear();
        lock(&self.shared.first_chunks).clear();
        let s = &self.shared;
        s.peak_in_flight
            .store(s.in_flight.load(Ordering::SeqCst), Ordering::SeqCst);
        s.streams_cancelled.store(0, Ordering::SeqCst);
    }

    /// Requests currently inside a handler or still streaming their body.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    /// Highest `in_flight()` since start or `clear_log()`.
    pub fn peak_in_flight(&self) -> usize {
        self.shared.peak_in_flight.load(Ordering::SeqCst)
    }

    /// Most streaming replies in progress at once since start (health checks and load
    /// reads, which `peak_in_flight` also counts, never stream).
    pub fn peak_streams(&self) -> usize {
        self.shared.peak_streams.load(Ordering::SeqCst)
    }

    /// Streaming replies whose body was dropped before its end (client disconnected).
    pub fn streams_cancelled(&self) -> usize {
        self.shared.streams_cancelled.load(Ordering::SeqCst)
    }

    /// Open TCP connections to the mock right now.
    pub fn open_connections(&self) -> usize {
        self.shared.conns.load(Ordering::SeqCst)
    }
}

impl Drop for MockBackend {
    fn drop(&mut self) {
        let running = lock(&self.running).take();
        if let Some(r) = running {
            r.stop();
        }
    }
}

impl Running {
    fn stop(self) {
        // `stop` sends the command eagerly; the returned future only reports completion,
        // which `join` (the server future ends the thread's `block_on`) also gives us.
        drop(self.handle.stop(false));
        let _ = self.thread.join();
    }
}

/// Decrements the open-connection count when actix drops the connection's data.
struct ConnGuard(Arc<AtomicUsize>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Start a server thread on `127.0.0.1:port` (0 = any); returns it and the bound port.
fn launch(shared: Arc<Shared>, port: u16) -> std::io::Result<(Running, u16)> {
    let (tx, rx) = std::sync::mpsc::channel::<std::io::Result<(ServerHandle, u16)>>();
    let thread_name = format!("mock-{}", shared.name);
    let thread = std::thread::Builder::new()
        .name(thread_name)
        .spawn(move || {
            let system = actix_rt::System::new();
            system.block_on(async move {
                let conns = shared.conns.clone();
                let data = web::Data::from(shared);
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(data.clone())
                        .app_data(web::PayloadConfig::new(256 << 20))
                        .default_service(web::to(handle))
                })
                .workers(1)
                .disable_signals()
                .shutdown_timeout(1)
                // Longer than any client pool's idle timeout, so Corral never reuses a
                // connection the mock is closing (Go servers, like Ollama, never time out).
                .keep_alive(Duration::from_secs(300))
                .on_connect(move |_, ext: &mut Extensions| {
                    conns.fetch_add(1, Ordering::SeqCst);
                    ext.insert(ConnGuard(conns.clone()));
                })
                .bind(("127.0.0.1", port));
                let server = match server {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let bound = server.addrs().first().map(|a| a.port()).unwrap_or(port);
                let server = server.run();
                let _ = tx.send(Ok((server.handle(), bound)));
                let _ = server.await;
            });
        })?;
    match rx.recv_timeout(CONTROL_DEADLINE) {
        Ok(Ok((handle, bound))) => Ok((Running { handle, thread }, bound)),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => Err(std::io::Error::other("mock server thread did not start")),
    }
}

/// Counts a request in flight for as long as it lives (moved into streaming bodies).
struct FlightGuard {
    shared: web::Data<Shared>,
    /// Set when a stream reached its natural end, so Drop can tell a cancel from a finish.
    finished: bool,
    streaming: bool,
}

impl FlightGuard {
    fn new(shared: web::Data<Shared>) -> FlightGuard {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.peak_in_flight.fetch_max(now, Ordering::SeqCst);
        FlightGuard {
            shared,
            finished: false,
            streaming: false,
        }
    }
}

impl FlightGuard {
    /// The stream reached its planned end (or planned break): not a cancel.
    fn finish(&mut self) {
        self.finished = true;
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        if self.streaming {
            self.shared.streams_active.fetch_sub(1, Ordering::SeqCst);
        }
        if self.streaming && !self.finished {
            self.shared.streams_cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A snapshot of the controls taken when the request arrived.
struct Plan {
    behaviour: Behaviour,
    extra_headers: Vec<(String, String)>,
    models: Vec<String>,
    chunk_delay: Duration,
    first_chunk_delay: Duration,
    chunks: usize,
    break_after: Option<usize>,
}

/// Sleep in small steps while `cond` holds (at most `HANG_FOR`).
async fn wait_while(cond: impl Fn() -> bool) {
    let deadline = Instant::now() + HANG_FOR;
    while cond() && Instant::now() < deadline {
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn handle(req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let shared = req
        .app_data::<web::Data<Shared>>()
        .expect("mock state")
        .clone();
    let path = req.path().to_string();
    shared_log(&shared, &req, &body);
    let plan = {
        let ctl = lock(&shared.ctl);
        let behaviour = ctl
            .overrides
            .iter()
            .filter(|(p, _)| path.starts_with(p.as_str()))
            .max_by_key(|(p, _)| p.len())
            .map(|(_, b)| b.clone())
            .unwrap_or_else(|| ctl.behaviour.clone());
        let extra_headers = ctl
            .extra_headers
            .iter()
            .filter(|(p, _, _)| path.starts_with(p.as_str()))
            .map(|(_, k, v)| (k.clone(), v.clone()))
            .collect();
        Plan {
            behaviour,
            extra_headers,
            models: ctl.models.clone(),
            chunk_delay: ctl.chunk_delay,
            first_chunk_delay: ctl.first_chunk_delay,
            chunks: ctl.chunks,
            break_after: ctl.break_after,
        }
    };
    wait_while(|| shared.frozen.load(Ordering::SeqCst)).await;
    let required = lock(&shared.ctl).required_header.clone();
    if let Some((name, value)) = required {
        let given = req.headers().get(name.as_str()).map(|v| v.as_bytes());
        if given != Some(value.as_bytes()) {
            return HttpResponse::Unauthorized()
                .insert_header(("www-authenticate", "Bearer realm=\"mock\""))
                .insert_header(("x-mock-backend", shared.name.as_str()))
                .json(json!({"error": {"message": "mock: credentials required", "code": 401}}));
        }
    }
    // Moved into a streaming body, so in-flight covers the body's whole life.
    let mut guard = Some(FlightGuard::new(shared.clone()));
    let mut resp = match &plan.behaviour {
        Behaviour::Up => route(&shared, &req, &body, &plan, &mut guard),
        Behaviour::Status(code) => status_reply(*code, None),
        Behaviour::StatusWithRetryAfter(code, retry_after) => {
            status_reply(*code, retry_after.as_deref())
        }
        Behaviour::Hang => {
            actix_rt::time::sleep(HANG_FOR).await;
            status_reply(504, None)
        }
        Behaviour::Slow(d) => {
            actix_rt::time::sleep(*d).await;
            route(&shared, &req, &body, &plan, &mut guard)
        }
        Behaviour::Close => close_without_response(),
        Behaviour::HeadThenClose => head_then_close(),
        Behaviour::WaitWhileStreaming => {
            wait_while(|| shared.streams_active.load(Ordering::SeqCst) > 0).await;
            route(&shared, &req, &body, &plan, &mut guard)
        }
        Behaviour::Loading => HttpResponse::ServiceUnavailable().json(json!({"error": {
            "code": 503, "message": "Loading model", "type": "unavailable_error",
        }})),
        Behaviour::Canned {
            status,
            content_type,
            body,
        } => HttpResponse::build(
            StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        )
        .content_type(*content_type)
        .body(body.clone()),
    };
    for (k, v) in &plan.extra_headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k.as_str()), HeaderValue::from_str(v)) {
            resp.headers_mut().append(k, v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&shared.name) {
        resp.headers_mut()
            .insert(HeaderName::from_static("x-mock-backend"), v);
    }
    resp
}

fn shared_log(shared: &Shared, req: &HttpRequest, body: &[u8]) {
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    lock(&shared.log).push(Seen {
        at: Instant::now(),
        method: req.method().as_str().to_string(),
        path: req.path().to_string(),
        query: req.query_string().to_string(),
        headers,
        body: body.to_vec(),
    });
}

/// A body that fails at its first poll, before actix has flushed the head it queued: actix
/// then drops the connection with the head unsent, so the client reads EOF and no byte.
fn close_without_response() -> HttpResponse {
    let failed = std::io::Error::other("mock closes without a response on purpose");
    HttpResponse::Ok().streaming(futures_util::stream::iter([Err::<web::Bytes, _>(failed)]))
}

/// A body that waits before it fails: the wait lets actix flush the `200` head it queued,
/// and the failure then drops the connection before any body byte (chunked, so the client
/// knows the body is missing rather than empty).
fn head_then_close() -> HttpResponse {
    let body = futures_util::stream::once(async {
        actix_rt::time::sleep(Duration::from_millis(50)).await;
        Err::<web::Bytes, _>(std::io::Error::other("mock dies after its head on purpose"))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .streaming(body)
}

fn status_reply(code: u16, retry_after: Option<&str>) -> HttpResponse {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut b = HttpResponse::build(status);
    if let Some(ra) = retry_after {
        b.insert_header(("retry-after", ra));
    }
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return b.finish();
    }
    b.json(json!({"error": {"message": format!("mock status {code}"), "code": code}}))
}

fn not_found(req: &HttpRequest) -> HttpResponse {
    HttpResponse::NotFound().json(json!({"error": {
        "message": format!("mock: no route for {} {}", req.method(), req.path()),
        "code": 404,
    }}))
}

fn openai_list(models: &[String]) -> Value {
    let data: Vec<Value> = models
        .iter()
        .map(|m| json!({"id": m, "object": "model", "created": 0, "owned_by": "mock"}))
        .collect();
    json!({"object": "list", "data": data})
}

#[derive(PartialEq, Eq)]
enum Want {
    Get,
    Post,
}

fn route(
    shared: &web::Data<Shared>,
    req: &HttpRequest,
    body: &[u8],
    plan: &Plan,
    guard: &mut Option<FlightGuard>,
) -> HttpResponse {
    let persona = shared.persona;
    let path = req.path();
    let want = match (persona, path) {
        (_, "/v1/models") => Want::Get,
        (_, "/v1/chat/completions" | "/v1/completions") => Want::Post,
        (Persona::Ollama, "/" | "/api/tags" | "/api/version") => Want::Get,
        (Persona::Ollama, "/api/chat" | "/api/generate") => Want::Post,
        (Persona::Vllm, "/health") => Want::Get,
        (Persona::LmStudio, "/api/v0/models") => Want::Get,
        _ => return not_found(req),
    };
    let method = req.method();
    let allowed = match want {
        Want::Get => method == Method::GET || method == Method::HEAD,
        Want::Post => method == Method::POST,
    };
    if !allowed {
        return HttpResponse::MethodNotAllowed()
            .json(json!({"error": {"message": "mock: method not allowed", "code": 405}}));
    }
    let models = &plan.models;
    let name = shared.name.as_str();
    match path {
        "/" => HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .body("Ollama is running"),
        "/health" => HttpResponse::Ok().json(json!({})),
        "/api/version" => HttpResponse::Ok().json(json!({"version": "0.0.0-mock"})),
        "/v1/models" => HttpResponse::Ok().json(openai_list(models)),
        "/api/tags" => {
            let list: Vec<Value> = models
                .iter()
                .map(|m| json!({"name": m, "model": m, "size": 1000}))
                .collect();
            HttpResponse::Ok().json(json!({"models": list}))
        }
        "/api/v0/models" => {
            let list: Vec<Value> = models
                .iter()
                .map(|m| json!({"id": m, "object": "model", "type": "llm", "state": "loaded"}))
                .collect();
            HttpResponse::Ok().json(json!({"object": "list", "data": list}))
        }
        _ => {
            let req_json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let model = req_json
                .get("model")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| models.first().cloned())
                .unwrap_or_default();
            let is_ollama = path.starts_with("/api/");
            // Ollama streams unless told not to; OpenAI does not unless told to.
            let stream = match req_json.get("stream").and_then(Value::as_bool) {
                Some(s) => s,
                None => is_ollama,
            };
            let kind = match path {
                "/v1/chat/completions" => Kind::Chat,
                "/v1/completions" => Kind::Completion,
                "/api/chat" => Kind::OllamaChat,
                _ => Kind::OllamaGenerate,
            };
            if stream {
                let guard = guard
                    .take()
                    .unwrap_or_else(|| FlightGuard::new(shared.clone()));
                streamed(guard, kind, model, plan)
            } else {
                HttpResponse::Ok().json(whole(kind, name, &model))
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Completion,
    OllamaChat,
    OllamaGenerate,
}

const CREATED_AT: &str = "2024-01-01T00:00:00Z";

fn whole(kind: Kind, name: &str, model: &str) -> Value {
    let content = format!("from {name}");
    match kind {
        Kind::Chat => json!({
            "id": format!("chatcmpl-{name}"),
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
        }),
        Kind::Completion => json!({
            "id": format!("cmpl-{name}"),
            "object": "text_completion",
            "created": 1_700_000_000,
            "model": model,
            "choices": [{"index": 0, "text": content, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
        }),
        Kind::OllamaChat => json!({
            "model": model, "created_at": CREATED_AT,
            "message": {"role": "assistant", "content": content},
            "done": true, "done_reason": "stop",
        }),
        Kind::OllamaGenerate => json!({
            "model": model, "created_at": CREATED_AT, "response": content,
            "done": true, "done_reason": "stop",
        }),
    }
}

/// Piece `i` of a stream of `n` content pieces; `i == n` is the terminator.
fn piece(kind: Kind, name: &str, model: &str, i: usize, n: usize) -> String {
    let tok = format!("tok{i} ");
    let last = i + 1 == n;
    match kind {
        Kind::Chat if i == n => "data: [DONE]\n\n".to_string(),
        Kind::Completion if i == n => "data: [DONE]\n\n".to_string(),
        Kind::Chat => {
            let v = json!({
                "id": format!("chatcmpl-{name}"),
                "object": "chat.completion.chunk",
                "created": 1_700_000_000,
                "model": model,
                "choices": [{"index": 0, "delta": {"content": tok},
                             "finish_reason": if last { Some("stop") } else { None }}],
            });
            format!("data: {v}\n\n")
        }
        Kind::Completion => {
            let v = json!({
                "id": format!("cmpl-{name}"),
                "object": "text_completion",
                "created": 1_700_000_000,
                "model": model,
                "choices": [{"index": 0, "text": tok,
                             "finish_reason": if last { Some("stop") } else { None }}],
            });
            format!("data: {v}\n\n")
        }
        Kind::OllamaChat => {
            let v = if i == n {
                json!({"model": model, "created_at": CREATED_AT,
                       "message": {"role": "assistant", "content": ""},
                       "done": true, "done_reason": "stop"})
            } else {
                json!({"model": model, "created_at": CREATED_AT,
                       "message": {"role": "assistant", "content": tok}, "done": false})
            };
            format!("{v}\n")
        }
        Kind::OllamaGenerate => {
            let v = if i == n {
                json!({"model": model, "created_at": CREATED_AT, "response": "",
                       "done": true, "done_reason": "stop"})
            } else {
                json!({"model": model, "created_at": CREATED_AT, "response": tok,
                       "done": false})
            };
            format!("{v}\n")
        }
    }
}

struct StreamState {
    guard: FlightGuard,
    kind: Kind,
    model: String,
    next: usize,
    n: usize,
    delay: Duration,
    first_delay: Duration,
    break_after: Option<usize>,
}

fn streamed(mut guard: FlightGuard, kind: Kind, model: String, plan: &Plan) -> HttpResponse {
    // A drop of the body before its end counts as a cancel.
    guard.streaming = true;
    let now = guard.shared.streams_active.fetch_add(1, Ordering::SeqCst) + 1;
    guard.shared.peak_streams.fetch_max(now, Ordering::SeqCst);
    let state = StreamState {
        guard,
        kind,
        model,
        next: 0,
        n: plan.chunks,
        delay: plan.chunk_delay,
        first_delay: plan.first_chunk_delay,
        break_after: plan.break_after,
    };
    let body = futures_util::stream::unfold(state, |mut st| async move {
        if st.next > st.n {
            st.guard.finish();
            return None;
        }
        if st.break_after == Some(st.next) && st.next < st.n {
            // Yield once first, so actix flushes what came before instead of discarding it
            // with the connection.
            actix_rt::time::sleep(st.delay.max(Duration::from_millis(10))).await;
            st.guard.finish();
            st.next = st.n + 1;
            let err = std::io::Error::other("mock stream broken on purpose");
            return Some((Err(err), st));
        }
        if st.next > 0 && !st.delay.is_zero() {
            actix_rt::time::sleep(st.delay).await;
        }
        if st.next == 0 && !st.first_delay.is_zero() {
            actix_rt::time::sleep(st.first_delay).await;
        }
        let shared = &st.guard.shared;
        wait_while(|| shared.frozen.load(Ordering::SeqCst)).await;
        if st.next == 0 {
            lock(&shared.first_chunks).push(Instant::now());
        }
        let text = piece(st.kind, &shared.name, &st.model, st.next, st.n);
        st.next += 1;
        Some((Ok::<_, std::io::Error>(web::Bytes::from(text)), st))
    });
    let content_type = match kind {
        Kind::Chat | Kind::Completion => "text/event-stream",
        Kind::OllamaChat | Kind::OllamaGenerate => "application/x-ndjson",
    };
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("cache-control", "no-cache"))
        .streaming(body)
}
