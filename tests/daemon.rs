//! The daemon's behaviour as an operator sees it (SPEC 2, 6): log lines, JSON logging and
//! signals from the built binary; the internal token from Corral in-process.

use std::time::Duration;

use house::*;

const CORRAL: &str = env!("CARGO_BIN_EXE_corral");
const WAIT: Duration = Duration::from_secs(10);

/// One vLLM endpoint, `gpu-1`, checked every 100ms.
fn one_endpoint(mock: &MockBackend) -> Scenario {
    Scenario::new().endpoint_with(
        "gpu-1",
        &mock.url(),
        "vllm",
        &[
            ("check_interval", "100ms"),
            ("check_timeout", "50ms"),
            ("max_backoff", "200ms"),
        ],
    )
}

#[test]
fn state_changes_are_logged_with_endpoint_statuses_reason_and_latency() {
    let mock = MockBackend::start(Persona::Vllm);
    let corral = one_endpoint(&mock).spawn(CORRAL);
    assert!(corral.wait_for_log("to=healthy", WAIT));
    mock.set_behaviour(Behaviour::Status(503));
    assert!(corral.wait_for_log("to=unhealthy", WAIT));
    let line = corral
        .logs()
        .lines()
        .find(|l| l.contains("to=unhealthy"))
        .unwrap()
        .to_string();
    for part in [
        "WARN",
        "health",
        "endpoint=gpu-1",
        "from=healthy",
        "to=unhealthy",
        "reason=\"http 503\"",
        "latency=",
    ] {
        assert!(line.contains(part), "`{part}` missing in: {line}");
    }
    let up = corral
        .logs()
        .lines()
        .find(|l| l.contains("from=unknown to=healthy"))
        .unwrap()
        .to_string();
    assert!(up.contains("INFO"), "recoveries log at info: {up}");
}

#[test]
fn json_logging_emits_one_object_per_line() {
    let mock = MockBackend::start(Persona::Vllm);
    let corral = one_endpoint(&mock).logging("format", "json").spawn(CORRAL);
    assert!(
        corral.wait_for_log("\"to\":\"healthy\"", WAIT),
        "{}",
        corral.logs()
    );
    for line in corral.logs().lines().filter(|l| l.starts_with('{')) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
    }
}

#[test]
fn internal_token_guards_everything_but_health() {
    let mock = MockBackend::start(Persona::Vllm);
    let corral = one_endpoint(&mock)
        .server("internal_token", "s3cret")
        .start();
    assert_eq!(corral.get("/internal/health").status, 200);
    let denied = corral.get("/internal/status/endpoints");
    assert_eq!(denied.status, 401);
    assert_eq!(denied.json()["error"], "unauthorized");
    let wrong = corral.request(
        "GET",
        "/internal/status",
        &[("Authorization", "Bearer nope")],
        b"",
    );
    assert_eq!(wrong.status, 401);
    let ok = corral.request(
        "GET",
        "/internal/status",
        &[("Authorization", "Bearer s3cret")],
        b"",
    );
    assert_eq!(ok.status, 200);
    let with_token = Api::new(corral.url()).with_token("s3cret");
    assert_eq!(
        with_token.endpoints().len(),
        1,
        "the token opens the status API"
    );
    let missing = corral.get("/no/such/route");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"], "not_found");
}

#[test]
fn sigterm_and_sigint_shut_down_cleanly() {
    for signal in ["TERM", "INT"] {
        let mock = MockBackend::start(Persona::Vllm);
        let corral = one_endpoint(&mock)
            .server("shutdown_timeout", "2s")
            .spawn(CORRAL);
        assert!(corral.wait_for_log("to=healthy", WAIT));
        corral.signal(signal);
        assert_eq!(
            corral.wait_exit(WAIT),
            Some(0),
            "SIG{signal}: {}",
            corral.logs()
        );
        assert!(
            corral.logs().contains("shut down cleanly"),
            "{}",
            corral.logs()
        );
    }
}
