//! The end-to-end tests' mock LLM backends as a standalone process, for checks that live
//! outside `cargo test` (the Python client-compatibility check in `scripts/clients/`).
//!
//!     cargo run --release --example mock_backend -- ollama vllm lmstudio
//!
//! Starts one mock per persona argument (`ollama`, `vllm`, `lmstudio`/`lm-studio`,
//! `openai-no-health`) on `127.0.0.1`, port chosen by the OS, and prints one line per mock,
//! `<persona> http://127.0.0.1:PORT`, in argument order. Each persona serves its own model name
//! (see [`model_for`]) so a client can tell the backends apart through Corral. Runs until stdin
//! closes, SIGINT or SIGTERM, or `--max-seconds N` (default 600) have passed, whichever comes
//! first, so a forgotten process cannot outlive its script for long.
//!
//! The mocks are the very code the tests use (the test house in `tests/common`, a
//! dev-dependency), so what the clients are checked against is what the tests check against.

use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::Duration;

use house::{MockBackend, Persona};

const USAGE: &str = "usage: mock_backend [--max-seconds N] PERSONA...\n\
                     personas: ollama, vllm, lmstudio (lm-studio), openai-no-health";

fn main() {
    let (personas, max_seconds) = match parse_args(std::env::args().skip(1)) {
        Ok(parsed) => parsed,
        Err(msg) => {
            eprintln!("mock_backend: {msg}\n{USAGE}");
            std::process::exit(2);
        }
    };

    let mocks: Vec<MockBackend> = personas
        .iter()
        .map(|&p| {
            let m = MockBackend::start(p);
            m.set_models(&[model_for(p)]);
            m
        })
        .collect();
    {
        let mut out = std::io::stdout().lock();
        for m in &mocks {
            // A reader that went away is no reason to stop serving; the other exits apply.
            let _ = writeln!(out, "{} {}", m.name(), m.url());
        }
        let _ = out.flush();
    }

    let reason = wait_for_exit(Duration::from_secs(max_seconds));
    eprintln!("mock_backend: {reason}; stopping");
    drop(mocks);
}

/// The model each persona lists and answers as: distinct, so the listings through Corral show
/// which backends are in the catalog.
fn model_for(p: Persona) -> &'static str {
    match p {
        Persona::Ollama => "llama3:8b",
        Persona::Vllm => "qwen2.5-7b",
        Persona::LmStudio => "phi-3-mini",
        Persona::OpenAiNoHealth => "tinyllama-1.1b",
    }
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<(Vec<Persona>, u64), String> {
    let mut personas = Vec::new();
    let mut max_seconds = 600;
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let persona = match arg.as_str() {
            "--max-seconds" => {
                let v = args.next().ok_or("--max-seconds needs a value")?;
                max_seconds = v
                    .parse()
                    .map_err(|_| format!("--max-seconds: not a number of seconds: {v}"))?;
                continue;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "ollama" => Persona::Ollama,
            "vllm" => Persona::Vllm,
            "lmstudio" | "lm-studio" => Persona::LmStudio,
            "openai-no-health" => Persona::OpenAiNoHealth,
            other => return Err(format!("unknown persona: {other}")),
        };
        personas.push(persona);
    }
    if personas.is_empty() {
        return Err("name at least one persona".to_string());
    }
    Ok((personas, max_seconds))
}

/// Blocks until stdin reaches EOF, SIGINT or SIGTERM arrives, or `max` has passed; says which.
fn wait_for_exit(max: Duration) -> String {
    let (tx, rx) = mpsc::channel::<String>();

    let stdin_tx = tx.clone();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 256];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let _ = stdin_tx.send("stdin closed".to_string());
    });

    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            use actix_rt::signal::unix::{signal, SignalKind};
            use futures_util::future::{select, Either};
            // Without a SIGTERM watch the other exits still apply; do not stop because of it.
            let mut term = match signal(SignalKind::terminate()) {
                Ok(term) => term,
                Err(e) => {
                    eprintln!("mock_backend: cannot watch SIGTERM: {e}");
                    return;
                }
            };
            let reason =
                match select(Box::pin(term.recv()), Box::pin(actix_rt::signal::ctrl_c())).await {
                    Either::Left(_) => "SIGTERM",
                    Either::Right(_) => "SIGINT",
                };
            let _ = tx.send(reason.to_string());
        });
    });

    rx.recv_timeout(max)
        .unwrap_or_else(|_| format!("--max-seconds {} reached", max.as_secs()))
}
