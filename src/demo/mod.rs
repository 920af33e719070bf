//! `corral demo` (SPEC 7.5): Corral with three simulated LLM servers in the same process, so a
//! machine with no LLM server still sees the whole product work — health checks, model
//! discovery, streaming, failover and recovery.
//!
//! [`run`] starts the servers (`backend`), builds Corral's config for them in code, prints what
//! to try once they are healthy, and reads commands from stdin (`console`) until end of input
//! or `interrupt`. `main.rs` calls it for `corral demo [--port N]`.

mod backend;
mod console;

use std::future::Future;
use std::io::{self, BufRead};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{abortable, pending, select, AbortHandle};
use tracing::info;

use crate::config::{self, Config, LoggingConfig};
use backend::{Backend, Flavour};
use console::Command;

/// The port `corral demo` listens on without `--port`: Corral's usual one.
pub const DEFAULT_PORT: u16 = 40114;

/// The model the printed chat command asks for; every backend serves it.
const CHAT_MODEL: &str = "llama3.2:3b";
const GPU_MODELS: &[&str] = &[CHAT_MODEL, "qwen2.5-coder:7b"];
const OLLAMA_MODELS: &[&str] = &[CHAT_MODEL, "phi3:mini"];

/// How long the banner waits for the first checks before it is printed anyway.
const BANNER_DEADLINE: Duration = Duration::from_secs(5);

/// The demo's backends: name, flavour, Corral endpoint type, priority.
const FLEET: &[(&str, Flavour, &str, u32)] = &[
    ("gpu-a", Flavour::OpenAi, "vllm", 100),
    ("gpu-b", Flavour::OpenAi, "openai-compatible", 100),
    ("ollama-local", Flavour::Ollama, "ollama", 50),
];

/// Logging for the demo: info, without actix-server's line per started or stopped server
/// (there is one each time a simulated backend is killed or revived). `RUST_LOG` overrides.
pub fn logging() -> LoggingConfig {
    LoggingConfig {
        level: "info,actix_server=warn".into(),
        ..LoggingConfig::default()
    }
}

/// Runs the demo on `listener` until stdin ends or `interrupt` completes. Call inside an
/// actix System.
pub async fn run(
    listener: TcpListener,
    interrupt: impl Future<Output = ()> + 'static,
) -> io::Result<()> {
    let addr = listener.local_addr()?;
    let backends = FLEET
        .iter()
        .map(|&(name, flavour, _, _)| {
            let models = match flavour {
                Flavour::OpenAi => GPU_MODELS,
                Flavour::Ollama => OLLAMA_MODELS,
            };
            Backend::start(name, flavour, models)
        })
        .collect::<io::Result<Vec<_>>>()?;
    let backends = Arc::new(backends);
    let config = demo_config(addr.port(), &backends).map_err(io::Error::other)?;
    let (end_of_input, closed) = abortable(pending::<()>());
    read_console(backends.clone(), closed);
    actix_rt::spawn(print_banner(addr, backends.clone()));
    let shutdown = async move {
        if let futures_util::future::Either::Right(_) =
            select(Box::pin(interrupt), end_of_input).await
        {
            info!("end of input; shutting the demo down");
        }
    };
    crate::run(config, listener, shutdown).await?;
    for backend in backends.iter() {
        backend.kill().await;
    }
    Ok(())
}

/// Corral's config for the demo fleet: checks every second, so changes show at once.
fn demo_config(port: u16, backends: &[Backend]) -> Result<Config, config::ConfigError> {
    let mut yaml = format!(
        "server:\n  host: 127.0.0.1\n  port: {port}\n  shutdown_timeout: 2s\n\
         health:\n  check_interval: 1s\n  check_timeout: 500ms\n  degraded_latency: 200ms\n  \
         max_backoff: 2s\n\
         discovery:\n  static:\n    endpoints:\n"
    );
    for (backend, (_, _, kind, priority)) in backends.iter().zip(FLEET) {
        yaml.push_str(&format!(
            "      - {{ name: {}, url: \"{}\", type: {kind}, priority: {priority} }}\n",
            backend.name(),
            backend.url()
        ));
    }
    config::parse(&yaml, "corral demo", &|_| None)
}

/// Reads stdin on a thread of its own (a blocking read must not hold an actix thread), runs
/// each command on the demo's System, one at a time, and prints its answer. End of input
/// fires `closed`.
fn read_console(backends: Arc<Vec<Backend>>, closed: AbortHandle) {
    let system = actix_rt::Arbiter::current();
    std::thread::spawn(move || {
        for line in io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            let command = match Command::parse(&line) {
                Ok(Command::Nothing) => continue,
                Ok(command) => command,
                Err(hint) => {
                    println!("[demo] {hint}");
                    continue;
                }
            };
            let (tx, rx) = std::sync::mpsc::channel();
            let backends = backends.clone();
            system.spawn_fn(move || {
                actix_rt::spawn(async move {
                    let _ = tx.send(console::execute(command, &backends).await);
                });
            });
            match rx.recv() {
                Ok(answer) => println!("[demo] {answer}"),
                // The System is gone: the demo is ending.
                Err(_) => return,
            }
        }
        closed.abort();
    });
}

/// Waits (bounded) until Corral reports every backend healthy, then prints what to try.
async fn print_banner(addr: SocketAddr, backends: Arc<Vec<Backend>>) {
    let client = awc::Client::default();
    let url = format!("http://{addr}/internal/status/endpoints");
    let deadline = actix_rt::time::Instant::now() + BANNER_DEADLINE;
    while actix_rt::time::Instant::now() < deadline {
        if let Ok(mut resp) = client.get(&url).send().await {
            if let Ok(v) = resp.json::<serde_json::Value>().await {
                let all = v["endpoints"].as_array().cloned().unwrap_or_default();
                if all.len() == backends.len() && all.iter().all(|e| e["status"] == "healthy") {
                    break;
                }
            }
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    println!("{}", banner(addr, &backends));
}

/// The text printed once the demo is up.
fn banner(addr: SocketAddr, backends: &[Backend]) -> String {
    let base = format!("http://{addr}");
    let mut text =
        format!("\nCorral demo: three simulated LLM servers behind Corral at {base}\n\n");
    for (backend, (_, _, kind, priority)) in backends.iter().zip(FLEET) {
        text.push_str(&format!(
            "  {:<13} {:<18} {}  priority {:<3}  {}\n",
            backend.name(),
            kind,
            backend.url(),
            priority,
            backend.models().join(", ")
        ));
    }
    text.push_str(&format!(
        "\nTry, in another terminal:\n\
         \x20 curl -N {base}/v1/chat/completions -H 'Content-Type: application/json' \\\n\
         \x20   -d '{{\"model\":\"{CHAT_MODEL}\",\"stream\":true,\"messages\":[{{\"role\":\"user\",\"content\":\"Hello!\"}}]}}'\n\
         \x20 curl {base}/v1/models\n\
         \x20 curl {base}/internal/status/endpoints\n\
         \x20 curl -N {base}/internal/events\n\n\
         Status page: {base}/internal/ui\n\n\
         {}\n",
        console::HELP
    ));
    text
}
