//! Supervision seen from outside (SPEC 1): a Corral built with `fault-injection` is told to
//! panic inside an endpoint actor, or inside the registry, and must restart it within a second
//! while the server keeps answering. In-process where the status API shows the restart; the
//! built binary where the log line is the only witness (a registry restart has no counter).
#![cfg(feature = "fault-injection")]

use std::time::{Duration, Instant};

use house::*;

const CORRAL: &str = env!("CARGO_BIN_EXE_corral");
const WAIT: Duration = Duration::from_secs(10);

fn scenario(a: &MockBackend, b: &MockBackend) -> Scenario {
    Scenario::new()
        .health("check_interval", "200ms")
        .health("check_timeout", "100ms")
        .mock(a)
        .mock(b)
}

#[test]
fn crashed_endpoint_actor_restarts_within_a_second() {
    let a = MockBackend::start_named(Persona::Vllm, "a");
    let b = MockBackend::start_named(Persona::Vllm, "b");
    let corral = scenario(&a, &b).start();
    corral.wait_status("a", "healthy", WAIT);
    let checks_before = a.count("/health");

    let crashed_at = Instant::now();
    let resp = corral.request("POST", "/internal/debug/crash/a", &[], b"");
    assert_eq!(resp.status, 202, "{}", resp.text());
    wait_until(Duration::from_secs(1), "restart counted within 1s", || {
        corral.endpoint("a")["restarts"] == 1
    });
    // One restarted actor does not send the whole instance back to `starting`.
    let (_, health) = corral.get_json("/internal/health");
    assert_eq!(health["status"], "healthy", "{health}");
    assert_eq!(corral.get("/internal/ready").status, 200);
    // The new incarnation checks at once rather than after an interval.
    wait_until(Duration::from_secs(1), "a re-checked", || {
        a.count("/health") > checks_before
    });
    assert!(crashed_at.elapsed() < Duration::from_secs(2));
    corral.wait_status("a", "healthy", WAIT);
    assert_eq!(corral.endpoint("b")["restarts"], 0, "b untouched");
    assert_eq!(corral.get("/internal/health").status, 200);

    // Twice more: the count keeps going up.
    for n in 2..=3 {
        std::thread::sleep(Duration::from_millis(600)); // past the crash-loop guard
        let resp = corral.request("POST", "/internal/debug/crash/a", &[], b"");
        assert_eq!(resp.status, 202);
        wait_until(WAIT, "restart counted", || {
            corral.endpoint("a")["restarts"] == n
        });
    }
    let resp = corral.request("POST", "/internal/debug/crash/nobody", &[], b"");
    assert_eq!(resp.status, 404);
    assert_eq!(resp.json()["error"], "endpoint_not_found");
}

#[test]
fn crashes_are_logged_and_a_crashed_registry_is_replaced_and_repopulated() {
    let a = MockBackend::start_named(Persona::Vllm, "a");
    a.set_models(&["m1"]);
    let b = MockBackend::start_named(Persona::Vllm, "b");
    b.set_models(&[]);
    let corral = scenario(&a, &b).spawn(CORRAL);
    wait_until(WAIT, "m1 known", || corral.model_names() == ["m1"]);

    let resp = corral.request("POST", "/internal/debug/crash/a", &[], b"");
    assert_eq!(resp.status, 202, "{}", resp.text());
    assert!(
        corral.wait_for_log("endpoint actor died; restarted", WAIT),
        "{}",
        corral.logs()
    );
    assert!(
        corral
            .logs()
            .contains("fault injection: crash requested for endpoint a"),
        "the panic is logged: {}",
        corral.logs()
    );

    let resp = corral.request("POST", "/internal/debug/crash-registry", &[], b"");
    assert_eq!(resp.status, 202);
    assert!(
        corral.wait_for_log("registry actor died; restarted", WAIT),
        "{}",
        corral.logs()
    );
    // Everything the old registry knew is back: both endpoints with status, and the models.
    wait_until(WAIT, "repopulated", || {
        let (code, body) = corral.get_json("/internal/status/endpoints");
        code == 200
            && body["endpoints"]
                .as_array()
                .is_some_and(|l| l.len() == 2 && l.iter().all(|e| e["status"] == "healthy"))
    });
    assert_eq!(corral.model_names(), ["m1"]);
    assert_eq!(corral.get_json("/internal/health").1["status"], "healthy");
}
