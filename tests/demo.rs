//! `corral demo` (SPEC 7.5) as a newcomer runs it: the built binary with its simulated
//! backends, driven through stdin, observed through Corral's public HTTP API and its output.

use std::time::Duration;

use house::*;
use serde_json::{json, Value};

const CORRAL: &str = env!("CARGO_BIN_EXE_corral");
const WAIT: Duration = Duration::from_secs(15);
const BACKENDS: [&str; 3] = ["gpu-a", "gpu-b", "ollama-local"];

fn demo() -> CorralProcess {
    let demo = CorralProcess::start_args(CORRAL.as_ref(), &["demo", "--port", "0"]);
    for name in BACKENDS {
        demo.wait_status(name, "healthy", WAIT);
    }
    demo
}

/// A streaming chat through `/v1/chat/completions`: the endpoint that served it and its text.
fn chat(demo: &CorralProcess) -> (String, String) {
    let body = json!({
        "model": "llama3.2:3b", "stream": true,
        "messages": [{"role": "user", "content": "Hello!"}]
    });
    let mut stream = demo.stream_json("/v1/chat/completions", &body);
    assert_eq!(stream.status, 200);
    let endpoint = stream
        .header("x-olla-endpoint")
        .unwrap_or_default()
        .to_string();
    let events = sse_events(&stream.chunks());
    assert_eq!(events.last().map(|e| e.text.as_str()), Some("[DONE]"));
    let tokens: Vec<String> = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(&e.text).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(String::from)
        })
        .collect();
    assert!(
        tokens.len() >= 20,
        "a short answer of many tokens: {tokens:?}"
    );
    (endpoint, tokens.concat())
}

#[test]
fn demo_serves_fails_over_recovers_and_ends_with_its_input() {
    let demo = demo();
    assert!(demo.wait_for_log(
        &format!("Status page: http://{}/internal/ui", demo.authority()),
        WAIT
    ));
    assert!(demo.logs().contains("curl -N http://"));

    let (status, models) = demo.get_json("/v1/models");
    assert_eq!(status, 200);
    let ids: Vec<&str> = models["data"]
        .as_array()
        .expect("a data array")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    for model in ["llama3.2:3b", "qwen2.5-coder:7b", "phi3:mini"] {
        assert!(ids.contains(&model), "{model} in {ids:?}");
    }

    let (endpoint, text) = chat(&demo);
    assert!(
        text.starts_with(&format!("Hello from {endpoint},")),
        "{text}"
    );

    demo.send_line("kill gpu-a");
    assert!(demo.wait_for_log("[demo] gpu-a killed", WAIT));
    for _ in 0..3 {
        let (endpoint, text) = chat(&demo);
        assert_ne!(endpoint, "gpu-a");
        assert!(
            text.starts_with(&format!("Hello from {endpoint},")),
            "{text}"
        );
    }
    demo.wait_status("gpu-a", "unhealthy", WAIT);
    assert!(demo.wait_for_log("to=unhealthy", WAIT));

    demo.send_line("revive gpu-a");
    assert!(demo.wait_for_log("[demo] gpu-a revived", WAIT));
    demo.wait_status("gpu-a", "healthy", WAIT);

    demo.close_stdin();
    assert_eq!(demo.wait_exit(WAIT), Some(0), "{}", demo.logs());
    assert!(demo.logs().contains("end of input"));
}

#[test]
fn demo_slows_a_backend_answers_help_and_ends_on_sigint() {
    let demo = demo();
    demo.send_line("slow gpu-b");
    assert!(demo.wait_for_log("[demo] gpu-b is slow now", WAIT));
    demo.wait_status("gpu-b", "degraded", WAIT);
    demo.send_line("slow gpu-b");
    assert!(demo.wait_for_log("[demo] gpu-b is back at normal speed", WAIT));
    demo.wait_status("gpu-b", "healthy", WAIT);

    demo.send_line("help");
    assert!(demo.wait_for_log("[demo] Commands: kill NAME", WAIT));
    demo.send_line("reboot gpu-a");
    assert!(demo.wait_for_log("[demo] unknown command `reboot gpu-a`; type help", WAIT));
    demo.send_line("kill gpu-z");
    assert!(demo.wait_for_log("[demo] no backend `gpu-z`; try one of: gpu-a, gpu-b", WAIT));

    demo.signal("INT");
    assert_eq!(demo.wait_exit(WAIT), Some(0), "{}", demo.logs());
}
