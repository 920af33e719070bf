//! The simulated LLM servers of `corral demo`: actix-web servers on free loopback ports, in
//! Corral's own process, that speak just enough of Ollama's and OpenAI's APIs for Corral to
//! check them, discover their models and stream their answers — at a pace a person can watch.
//!
//! The console (`super::console`) drives them: [`Backend::kill`] closes the listener, so
//! connections are refused, [`Backend::revive`] binds the same port again, and
//! [`Backend::toggle_slow`] makes health answers and tokens slow.

use std::convert::Infallible;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use actix_web::dev::ServerHandle;
use actix_web::web::{self, Bytes};
use actix_web::{App, HttpResponse, HttpServer};
use serde_json::{json, Value};

/// Time between two tokens: a small model on a good GPU.
const TOKEN_DELAY: Duration = Duration::from_millis(30);
/// ... and on an overloaded one (`slow NAME`).
const SLOW_TOKEN_DELAY: Duration = Duration::from_millis(250);
/// Health and model-list latency when slow: above the demo's `degraded_latency` (200ms), under
/// its `check_timeout` (500ms), so a slow backend shows as `degraded` rather than dead.
pub const SLOW_CHECK_LATENCY: Duration = Duration::from_millis(300);

/// Which API a simulated server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// `GET /`, `/api/tags`, `/api/chat` (NDJSON), and the OpenAI routes under `/v1`.
    Ollama,
    /// vLLM-like: `/health`, `/v1/models`, `/v1/chat/completions` (SSE or JSON).
    OpenAi,
}

/// What every worker of one simulated server shares.
struct Shared {
    name: &'static str,
    flavour: Flavour,
    models: &'static [&'static str],
    slow: AtomicBool,
}

impl Shared {
    fn token_delay(&self) -> Duration {
        if self.slow.load(Ordering::Relaxed) {
            SLOW_TOKEN_DELAY
        } else {
            TOKEN_DELAY
        }
    }

    async fn check_latency(&self) {
        if self.slow.load(Ordering::Relaxed) {
            actix_rt::time::sleep(SLOW_CHECK_LATENCY).await;
        }
    }

    /// The canned answer, one token per word, naming the server so failover shows in the text.
    fn tokens(&self) -> Vec<String> {
        let text = format!(
            "Hello from {}, a simulated {} server inside corral demo. Corral checks every backend \
             each second and sends your request to a healthy one. Try kill {} and ask again.",
            self.name,
            match self.flavour {
                Flavour::Ollama => "Ollama",
                Flavour::OpenAi => "vLLM",
            },
            self.name
        );
        text.split(' ')
            .enumerate()
            .map(|(i, w)| {
                if i == 0 {
                    w.to_string()
                } else {
                    format!(" {w}")
                }
            })
            .collect()
    }
}

/// One simulated server: its name, its fixed port, and its listener while it is alive.
pub struct Backend {
    shared: Arc<Shared>,
    port: u16,
    server: Mutex<Option<ServerHandle>>,
}

impl Backend {
    /// Starts serving on a free loopback port. Call inside an actix System.
    pub fn start(
        name: &'static str,
        flavour: Flavour,
        models: &'static [&'static str],
    ) -> std::io::Result<Backend> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            name,
            flavour,
            models,
            slow: AtomicBool::new(false),
        });
        let handle = serve(listener, shared.clone())?;
        Ok(Backend {
            shared,
            port,
            server: Mutex::new(Some(handle)),
        })
    }

    pub fn name(&self) -> &'static str {
        self.shared.name
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn models(&self) -> &'static [&'static str] {
        self.shared.models
    }

    /// Stops listening and drops every open connection; false if it was already down.
    pub async fn kill(&self) -> bool {
        let handle = self.server.lock().unwrap_or_else(|e| e.into_inner()).take();
        match handle {
            Some(handle) => {
                handle.stop(false).await;
                true
            }
            None => false,
        }
    }

    /// Serves again on the same port, at normal speed; false if it was already up.
    pub async fn revive(&self) -> std::io::Result<bool> {
        self.shared.slow.store(false, Ordering::Relaxed);
        if self.is_up() {
            return Ok(false);
        }
        // The old listener is closed by now, but its port may take a moment to be free.
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)) {
                Ok(l) => break l,
                Err(e) if tries >= 20 => return Err(e),
                Err(_) => tries += 1,
            }
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        };
        let handle = serve(listener, self.shared.clone())?;
        *self.server.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
        Ok(true)
    }

    /// Switches slow answers on or off; returns the new setting.
    pub fn toggle_slow(&self) -> bool {
        !self.shared.slow.fetch_xor(true, Ordering::Relaxed)
    }

    pub fn is_up(&self) -> bool {
        self.server
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }
}

fn serve(listener: TcpListener, shared: Arc<Shared>) -> std::io::Result<ServerHandle> {
    let flavour = shared.flavour;
    let data = web::Data::from(shared);
    let server = HttpServer::new(move || {
        let app = App::new()
            .app_data(data.clone())
            .route("/v1/models", web::get().to(openai_models))
            .route("/v1/chat/completions", web::post().to(openai_chat));
        match flavour {
            Flavour::Ollama => app
                .route("/", web::get().to(ollama_root))
                .route("/api/tags", web::get().to(ollama_tags))
                .route("/api/version", web::get().to(ollama_version))
                .route("/api/chat", web::post().to(ollama_chat)),
            Flavour::OpenAi => app.route("/health", web::get().to(health)),
        }
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    let handle = server.handle();
    actix_rt::spawn(server);
    Ok(handle)
}

type State = web::Data<Shared>;

async fn health(s: State) -> HttpResponse {
    s.check_latency().await;
    HttpResponse::Ok().finish()
}

async fn ollama_root(s: State) -> HttpResponse {
    s.check_latency().await;
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("Ollama is running")
}

async fn ollama_version() -> HttpResponse {
    HttpResponse::Ok().json(json!({"version": "0.5.7"}))
}

async fn ollama_tags(s: State) -> HttpResponse {
    s.check_latency().await;
    let models: Vec<Value> = s
        .models
        .iter()
        .map(|m| {
            json!({
                "name": m, "model": m, "modified_at": "2025-01-01T00:00:00Z",
                "size": 2019393189u64, "digest": "a80c4f17acd5",
                "details": {"format": "gguf", "family": "llama", "parameter_size": "3.2B",
                            "quantization_level": "Q4_K_M"}
            })
        })
        .collect();
    HttpResponse::Ok().json(json!({ "models": models }))
}

async fn openai_models(s: State) -> HttpResponse {
    s.check_latency().await;
    let data: Vec<Value> = s
        .models
        .iter()
        .map(|m| json!({"id": m, "object": "model", "created": 1735689600, "owned_by": s.name}))
        .collect();
    HttpResponse::Ok().json(json!({"object": "list", "data": data}))
}

/// The request's model and whether it asked for a stream (`default` when it did not say).
fn read_request(body: &Value, default_stream: bool) -> (String, bool) {
    let model = body["model"].as_str().unwrap_or("unknown").to_string();
    let stream = body["stream"].as_bool().unwrap_or(default_stream);
    (model, stream)
}

/// Items of `make(token)`, one per token, `delay` apart, then `last`.
fn paced(
    tokens: Vec<String>,
    delay: Duration,
    make: impl Fn(&str) -> String + 'static,
    last: String,
) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> {
    let items: Vec<String> = tokens
        .iter()
        .map(|t| make(t))
        .chain(std::iter::once(last))
        .collect();
    futures_util::stream::unfold(items.into_iter(), move |mut items| async move {
        let item = items.next()?;
        actix_rt::time::sleep(delay).await;
        Some((Ok(Bytes::from(item)), items))
    })
}

async fn openai_chat(s: State, body: web::Json<Value>) -> HttpResponse {
    let (model, stream) = read_request(&body, false);
    let tokens = s.tokens();
    let delay = s.token_delay();
    let created = unix_now();
    if !stream {
        actix_rt::time::sleep(delay * tokens.len() as u32).await;
        return HttpResponse::Ok().json(json!({
            "id": "chatcmpl-demo", "object": "chat.completion", "created": created,
            "model": model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": tokens.concat()}}],
            "usage": {"prompt_tokens": 12, "completion_tokens": tokens.len(),
                      "total_tokens": 12 + tokens.len()}
        }));
    }
    let chunk = {
        let model = model.clone();
        move |delta: Value, finish: Value| {
            let c = json!({
                "id": "chatcmpl-demo", "object": "chat.completion.chunk", "created": created,
                "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
            });
            format!("data: {c}\n\n")
        }
    };
    let last = format!("{}data: [DONE]\n\n", chunk(json!({}), json!("stop")));
    let first = std::cell::Cell::new(true);
    let body = paced(
        tokens,
        delay,
        move |t| {
            let delta = if first.replace(false) {
                json!({"role": "assistant", "content": t})
            } else {
                json!({"content": t})
            };
            chunk(delta, Value::Null)
        },
        last,
    );
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .streaming(body)
}

async fn ollama_chat(s: State, body: web::Json<Value>) -> HttpResponse {
    let (model, stream) = read_request(&body, true);
    let tokens = s.tokens();
    let delay = s.token_delay();
    let at = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    let done = |content: &str| {
        json!({
            "model": model, "created_at": at,
            "message": {"role": "assistant", "content": content},
            "done": true, "done_reason": "stop", "eval_count": tokens.len()
        })
    };
    if !stream {
        actix_rt::time::sleep(delay * tokens.len() as u32).await;
        return HttpResponse::Ok().json(done(&tokens.concat()));
    }
    let last = format!("{}\n", done(""));
    let (model, at) = (model.clone(), at.clone());
    let body = paced(
        tokens,
        delay,
        move |t| {
            let line = json!({
                "model": model, "created_at": at,
                "message": {"role": "assistant", "content": t}, "done": false
            });
            format!("{line}\n")
        },
        last,
    );
    HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .streaming(body)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}
