//! Supervision seen from outside (SPEC 1): a binary built with `fault-injection` is told to
//! panic inside an endpoint actor, or inside the registry, and must restart it within a second
//! while the server keeps answering.
#![cfg(feature = "fault-injection")]

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);

fn config(a: &str, b: &str) -> String {
    format!(
        "server: {{ host: 127.0.0.1, port: 0 }}
health: {{ check_interval: 200ms, check_timeout: 100ms }}
endpoints:
  - {{ name: a, url: \"{a}\", type: vllm }}
  - {{ name: b, url: \"{b}\", type: vllm }}
"
    )
}

fn endpoint(corral: &Corral, name: &str) -> Value {
    let (code, body) = get_json(&format!("{}/internal/status/endpoints", corral.url()));
    assert_eq!(code, 200, "{body}");
    body["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .cloned()
        .unwrap()
}

#[test]
fn crashed_endpoint_actor_restarts_within_a_second() {
    let a = MockBackend::start_named(Persona::Vllm, "a");
    let b = MockBackend::start_named(Persona::Vllm, "b");
    let corral = Corral::start(&config(&a.url(), &b.url()));
    wait_until(WAIT, "a healthy", || {
        endpoint(&corral, "a")["status"] == "healthy"
    });
    let checks_before = a.count("/health");

    let crashed_at = Instant::now();
    let resp = http::request(
        "POST",
        &format!("{}/internal/debug/crash/a", corral.url()),
        &[],
        b"",
    );
    assert_eq!(resp.status, 202, "{}", resp.text());
    wait_until(Duration::from_secs(1), "restart counted within 1s", || {
        endpoint(&corral, "a")["restarts"] == 1
    });
    // One restarted actor does not send the whole instance back to `starting`.
    let (_, health) = get_json(&format!("{}/internal/health", corral.url()));
    assert_eq!(health["status"], "healthy", "{health}");
    assert_eq!(get_json(&format!("{}/internal/ready", corral.url())).0, 200);
    // The new incarnation checks at once rather than after an interval.
    wait_until(Duration::from_secs(1), "a re-checked", || {
        a.count("/health") > checks_before
    });
    assert!(crashed_at.elapsed() < Duration::from_secs(2));
    wait_until(WAIT, "a healthy again", || {
        endpoint(&corral, "a")["status"] == "healthy"
    });
    assert_eq!(endpoint(&corral, "b")["restarts"], 0, "b untouched");
    assert!(
        corral.wait_for_log("endpoint actor died; restarted", WAIT),
        "{}",
        corral.logs()
    );
    assert!(
        corral
            .logs()
            .contains("fault injection: crash requested for endpoint a"),
        "panic is logged"
    );
    assert_eq!(
        get_json(&format!("{}/internal/health", corral.url())).0,
        200
    );

    // Twice more: the count keeps going up.
    for n in 2..=3 {
        std::thread::sleep(Duration::from_millis(600)); // past the crash-loop guard
        let resp = http::request(
            "POST",
            &format!("{}/internal/debug/crash/a", corral.url()),
            &[],
            b"",
        );
        assert_eq!(resp.status, 202);
        wait_until(WAIT, "restart counted", || {
            endpoint(&corral, "a")["restarts"] == n
        });
    }
    let resp = http::request(
        "POST",
        &format!("{}/internal/debug/crash/nobody", corral.url()),
        &[],
        b"",
    );
    assert_eq!(resp.status, 404);
    assert_eq!(resp.json()["error"], "endpoint_not_found");
}

#[test]
fn crashed_registry_is_replaced_and_repopulated() {
    let a = MockBackend::start_named(Persona::Vllm, "a");
    a.set_models(&["m1"]);
    let b = MockBackend::start_named(Persona::Vllm, "b");
    b.set_models(&[]);
    let corral = Corral::start(&config(&a.url(), &b.url()));
    wait_until(WAIT, "m1 known", || {
        let (_, m) = get_json(&format!("{}/internal/status/models", corral.url()));
        m["models"].as_array().is_some_and(|l| l.len() == 1)
    });
    let resp = http::request(
        "POST",
        &format!("{}/internal/debug/crash-registry", corral.url()),
        &[],
        b"",
    );
    assert_eq!(resp.status, 202);
    assert!(
        corral.wait_for_log("registry actor died; restarted", WAIT),
        "{}",
        corral.logs()
    );
    // Everything the old registry knew is back: both endpoints with status, and the models.
    wait_until(WAIT, "repopulated", || {
        let (code, body) = get_json(&format!("{}/internal/status/endpoints", corral.url()));
        code == 200
            && body["endpoints"]
                .as_array()
                .is_some_and(|l| l.len() == 2 && l.iter().all(|e| e["status"] == "healthy"))
    });
    let (_, m) = get_json(&format!("{}/internal/status/models", corral.url()));
    assert_eq!(m["models"][0]["name"], "m1");
    assert_eq!(
        get_json(&format!("{}/internal/health", corral.url())).1["status"],
        "healthy"
    );
}
