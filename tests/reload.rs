//! Hot reload (SPEC 2): `POST /internal/reload` and SIGHUP re-read the config file; endpoints
//! come and go; untouched ones keep their state, counters and traffic; an invalid file changes
//! nothing; settings that cannot change at run time are named; and no request fails across
//! reloads under load.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use house::*;
use serde_json::{json, Value};

const CORRAL: &str = env!("CARGO_BIN_EXE_corral");
const WAIT: Duration = Duration::from_secs(10);

fn chat() -> Value {
    json!({ "model": "mock-model", "messages": [{ "role": "user", "content": "hi" }] })
}

fn names(corral: &Api) -> Vec<String> {
    let mut n: Vec<String> = corral
        .endpoints()
        .iter()
        .map(|e| e["name"].as_str().unwrap_or_default().to_string())
        .collect();
    n.sort();
    n
}

fn fast() -> [(&'static str, &'static str); 2] {
    [("check_interval", "100ms"), ("check_timeout", "50ms")]
}

#[test]
fn a_reload_adds_removes_and_reconfigures_and_keeps_what_it_keeps() {
    let (a, b, c) = (
        MockBackend::start_named(Persona::Vllm, "a"),
        MockBackend::start_named(Persona::Vllm, "b"),
        MockBackend::start_named(Persona::Vllm, "c"),
    );
    let corral = Scenario::new()
        .mock_with(&a, &fast())
        .mock_with(&b, &fast())
        .start_from_file();
    corral.wait_all_healthy(2, WAIT);
    for _ in 0..3 {
        let r = corral.post_json("/olla/vllm/v1/chat/completions", &chat());
        assert_eq!(r.status, 200);
    }
    let before = corral.endpoint("a");

    // a: same backend, other settings; b: gone; c: new.
    let next = Scenario::new()
        .mock_with(
            &a,
            &[
                ("check_interval", "200ms"),
                ("check_timeout", "50ms"),
                ("priority", "7"),
            ],
        )
        .mock_with(&c, &fast());
    corral.rewrite_config(&next.yaml());
    let r = corral.request("POST", "/internal/reload", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body["added"], json!(["c"]));
    assert_eq!(body["removed"], json!(["b"]));
    assert_eq!(body["reconfigured"], json!(["a"]));
    assert_eq!(body["not_applied_until_restart"], json!([]));

    wait_until(WAIT, "a and c only", || names(&corral) == ["a", "c"]);
    corral.wait_status("c", "healthy", WAIT);
    let after = corral.endpoint("a");
    assert_eq!(after["priority"], 7, "new settings are in force");
    assert_eq!(after["check_interval"], "200ms");
    assert_eq!(after["requests"], before["requests"], "counters kept");
    assert_eq!(
        after["status_changes"], before["status_changes"],
        "state kept"
    );
    assert_eq!(after["status"], "healthy");
    assert_eq!(after["restarts"], 0, "the same actor");
}

#[test]
fn an_invalid_file_is_rejected_and_the_running_config_stays() {
    let a = MockBackend::start_named(Persona::Vllm, "a");
    let corral = Scenario::new().mock_with(&a, &fast()).start_from_file();
    corral.wait_all_healthy(1, WAIT);
    corral.rewrite_config(
        "endpoints:\n  - url: http://127.0.0.1:1\n    check_interval: 1s\n    check_timeout: 2s\n",
    );
    let r = corral.request("POST", "/internal/reload", &[], b"");
    assert_eq!(r.status, 400, "{}", r.text());
    let body = r.json();
    assert_eq!(body["error"], "reload_rejected");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("check_timeout"),
        "names the field: {message}"
    );
    assert_eq!(names(&corral), ["a"]);
    assert_eq!(corral.status_of("a"), "healthy");
}

#[test]
fn settings_that_cannot_change_at_run_time_are_named() {
    let a = MockBackend::start_named(Persona::Vllm, "a");
    let scenario = Scenario::new().mock_with(&a, &fast());
    let corral = scenario.start_from_file();
    corral.wait_all_healthy(1, WAIT);
    let moved = scenario
        .clone()
        .server("port", "1")
        .proxy("max_attempts", "2");
    corral.rewrite_config(&moved.yaml());
    let r = corral.request("POST", "/internal/reload", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let named = r.json()["not_applied_until_restart"].to_string();
    assert!(named.contains("listen address"), "{named}");
    assert!(named.contains("proxy"), "{named}");
}

#[test]
fn no_request_fails_across_twenty_reloads_under_load() {
    let (a, b, c) = (
        MockBackend::start_named(Persona::Vllm, "a"),
        MockBackend::start_named(Persona::Vllm, "b"),
        MockBackend::start_named(Persona::Vllm, "c"),
    );
    let base = Scenario::new()
        .mock_with(&a, &fast())
        .mock_with(&b, &fast());
    let corral = Arc::new(base.start_from_file());
    corral.wait_all_healthy(2, WAIT);
    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (corral, stop) = (corral.clone(), stop.clone());
            let (served, failed) = (served.clone(), failed.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let r = corral.post_json("/olla/vllm/v1/chat/completions", &chat());
                    if r.status == 200 {
                        served.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                        eprintln!("failed during reloads: {} {}", r.status, r.text());
                    }
                }
            })
        })
        .collect();
    for round in 0..20 {
        // Add c, change a's interval, remove c, change it back: a and b always stay.
        let interval = if round % 4 < 2 { "100ms" } else { "150ms" };
        let mut next = Scenario::new()
            .mock_with(
                &a,
                &[("check_interval", interval), ("check_timeout", "50ms")],
            )
            .mock_with(&b, &fast());
        if round % 2 == 0 {
            next = next.mock_with(&c, &fast());
        }
        corral.rewrite_config(&next.yaml());
        let r = corral.request("POST", "/internal/reload", &[], b"");
        assert_eq!(r.status, 200, "round {round}: {}", r.text());
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    for t in clients {
        t.join().expect("client thread");
    }
    let (served, failed) = (
        served.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    assert!(served > 20, "traffic flowed: {served}");
    assert_eq!(
        failed, 0,
        "no request failed across 20 reloads ({served} served)"
    );
    assert_eq!(corral.status_of("a"), "healthy");
    assert_eq!(corral.status_of("b"), "healthy");
}

#[test]
fn sighup_reloads_the_file() {
    let (a, b) = (
        MockBackend::start_named(Persona::Vllm, "a"),
        MockBackend::start_named(Persona::Vllm, "b"),
    );
    let corral = Scenario::new().mock_with(&a, &fast()).spawn(CORRAL);
    corral.wait_all_healthy(1, WAIT);
    let next = Scenario::new()
        .mock_with(&a, &fast())
        .mock_with(&b, &fast());
    corral.rewrite_config(&next.yaml());
    corral.signal("HUP");
    assert!(
        corral.wait_for_log("config reloaded", WAIT),
        "{}",
        corral.logs()
    );
    wait_until(WAIT, "b added", || names(&corral) == ["a", "b"]);
    corral.wait_status("b", "healthy", WAIT);
    // A broken file on the next SIGHUP is logged and changes nothing.
    corral.rewrite_config("endpoints: [");
    corral.signal("HUP");
    assert!(
        corral.wait_for_log("reload rejected", WAIT),
        "{}",
        corral.logs()
    );
    assert_eq!(names(&corral), ["a", "b"]);
}
