//! The endpoint actor's schedule and transitions under paused time, with a scripted prober:
//! no sockets, no wall clock, exact waits (STYLE: "Actor behaviour: actors/tests/, with a
//! scripted prober and paused time").

mod support;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_rt::time::{sleep, Instant};
use corral_actors::health::Status;
use corral_actors::messages::*;
use corral_actors::outcome::{FailureReason, RequestOutcome};
use corral_actors::profiles::EndpointType;
use corral_actors::settings::EndpointSettings;
use corral_actors::view::EndpointView;
use corral_actors::Candidate;
use corral_actors::{FleetSupervisor, RegistryHandle};
use support::{fail, pass, rate_limited, Script};

fn settings(interval_secs: u64) -> EndpointSettings {
    let mut s = EndpointSettings::new("ep", "http://127.0.0.1:9", EndpointType::Vllm);
    s.check_interval = Duration::from_secs(interval_secs);
    s.check_timeout = Duration::from_secs(1);
    s
}

async fn start(
    script: &Script,
    settings: EndpointSettings,
) -> (Addr<FleetSupervisor>, RegistryHandle) {
    tokio::time::pause();
    let (sup, registry) =
        FleetSupervisor::start_with_prober(&actix_rt::Arbiter::current(), script.factory());
    sup.send(AddEndpoint(Arc::new(settings))).await.unwrap();
    (sup, registry)
}

async fn view(registry: &RegistryHandle) -> EndpointView {
    let fleet = registry.get().unwrap().send(SnapshotFleet).await.unwrap();
    fleet.endpoints[0].view.clone()
}

async fn candidate(registry: &RegistryHandle) -> Candidate {
    sleep(Duration::from_millis(5)).await; // let the routing table be published
    registry.routing().entries()[0].candidate.clone()
}

/// Lets paused time run to `at` after the test began.
async fn until(start: Instant, at: Duration) {
    let target = start + at;
    let now = Instant::now();
    if target > now {
        sleep(target - now).await;
    }
}

#[actix_rt::test]
async fn backoff_waits_follow_the_sequence_exactly() {
    let script = Script::default();
    script.then([
        pass(),
        fail(),
        fail(),
        fail(),
        fail(),
        fail(),
        fail(),
        pass(),
    ]);
    let mut s = settings(5);
    s.health_breaker.failure_threshold = 100; // keep the breaker out of this test
    let (_sup, registry) = start(&script, s).await;
    sleep(Duration::from_secs(300)).await;
    // pass → 5; failures 1..6 → 5, 10, 20, 40, 60, 60; pass → 5 …
    assert_eq!(&script.gaps()[..8], &[5, 5, 10, 20, 40, 60, 60, 5]);
    assert_eq!(view(&registry).await.status, Status::Healthy);
}

#[actix_rt::test]
async fn thirty_second_interval_caps_at_sixty() {
    let script = Script::default();
    script.then([fail(), fail(), fail(), fail()]);
    let mut s = settings(30);
    s.health_breaker.failure_threshold = 100;
    let _fleet = start(&script, s).await;
    sleep(Duration::from_secs(400)).await;
    assert_eq!(&script.gaps()[..4], &[30, 60, 60, 60]);
}

#[actix_rt::test]
async fn health_breaker_holds_probes_for_its_open_duration() {
    let script = Script::default();
    script.then([fail(), fail(), fail()]);
    let (_sup, registry) = start(&script, settings(5)).await;
    let t0 = Instant::now();
    until(t0, Duration::from_secs(16)).await;
    // Third failure at 15s opened the breaker: no probe before 15 + 30 = 45s.
    let v = view(&registry).await;
    assert_eq!(v.circuit_breaker.health.state, "open");
    assert_eq!(v.status, Status::Unhealthy);
    until(t0, Duration::from_secs(44)).await;
    assert_eq!(script.checks().len(), 3, "no probe while open");
    until(t0, Duration::from_secs(46)).await;
    // The half-open probe passed: breaker closed, endpoint recovering; one more pass heals it.
    let v = view(&registry).await;
    assert_eq!(v.circuit_breaker.health.state, "closed");
    assert_eq!(v.status, Status::Recovering);
    until(t0, Duration::from_secs(51)).await;
    assert_eq!(view(&registry).await.status, Status::Healthy);
    assert_eq!(&script.gaps()[..4], &[5, 10, 30, 5]);
}

#[actix_rt::test]
async fn rate_limits_wait_for_retry_after_within_bounds() {
    let script = Script::default();
    script.then([
        rate_limited(Some(Duration::from_secs(7))),
        rate_limited(None),
        rate_limited(Some(Duration::ZERO)),
        rate_limited(Some(Duration::from_secs(1_000_000))),
    ]);
    let (_sup, registry) = start(&script, settings(5)).await;
    sleep(Duration::from_secs(5000)).await;
    // 7s as asked; 30s when unsaid; never faster than the interval; at most an hour.
    assert_eq!(&script.gaps()[..4], &[7, 30, 5, 3600]);
    assert_eq!(
        view(&registry).await.circuit_breaker.health.failures,
        0,
        "429 spares the breaker"
    );
}

#[actix_rt::test]
async fn recovery_fetches_models_again() {
    let script = Script::default();
    script.then([pass(), fail(), pass(), pass()]);
    let (_sup, registry) = start(&script, settings(5)).await;
    let t0 = Instant::now();
    until(t0, Duration::from_secs(11)).await;
    assert_eq!(view(&registry).await.status, Status::Recovering);
    let checks = script.checks();
    let discoveries = script.discoveries();
    // First pass at 0s, recovery at 10s; the 5m interval alone would allow neither twice.
    assert_eq!(discoveries.len(), 2, "{discoveries:?}");
    assert_eq!(discoveries[0], checks[0]);
    assert_eq!(discoveries[1], checks[2]);
    let fleet = registry.get().unwrap().send(SnapshotFleet).await.unwrap();
    assert_eq!(
        fleet.endpoints[0].models.as_ref().unwrap()[0].name,
        "model-2"
    );
}

#[actix_rt::test]
async fn a_failed_connection_makes_the_endpoint_unhealthy_and_restarts_the_backoff() {
    let script = Script::default();
    let (_sup, registry) = start(&script, settings(10)).await;
    let t0 = Instant::now();
    until(t0, Duration::from_secs(2)).await;
    assert_eq!(view(&registry).await.status, Status::Healthy);
    let endpoint = candidate(&registry).await;
    let failed_at = Instant::now();
    for _ in 0..20 {
        endpoint.report(
            RequestOutcome::ConnectFailed(FailureReason::ConnectionRefused),
            Instant::now(),
        );
    }
    sleep(Duration::from_millis(1)).await;
    let v = view(&registry).await;
    assert_eq!(v.status, Status::Unhealthy, "at once");
    assert_eq!(v.consecutive_failures, 1, "one crash, one failure");
    assert_eq!(
        v.error.map(|e| e.to_string()).as_deref(),
        Some("connection refused")
    );
    until(t0, Duration::from_secs(30)).await;
    let checks = script.checks();
    // The check due at 10s was replaced by one a backoff wait (1 × 10s) after the failure.
    // (tokio timers fire on the next millisecond tick at the latest.)
    let wait = checks[1] - failed_at;
    assert!(
        wait >= Duration::from_secs(10) && wait <= Duration::from_millis(10_001),
        "{wait:?}"
    );
}

#[actix_rt::test]
async fn proxy_breaker_opens_half_opens_and_closes() {
    let script = Script::default();
    let (_sup, registry) = start(&script, settings(5)).await;
    let t0 = Instant::now();
    until(t0, Duration::from_secs(1)).await;
    let endpoint = candidate(&registry).await;
    for _ in 0..5 {
        endpoint.report(
            RequestOutcome::Failed(FailureReason::Http(502)),
            Instant::now(),
        );
    }
    sleep(Duration::from_millis(1)).await;
    let v = view(&registry).await;
    assert_eq!(v.circuit_breaker.proxy.state, "open");
    assert_eq!(
        v.status,
        Status::Unhealthy,
        "passing checks do not override an open breaker"
    );
    assert_eq!(
        v.error.map(|e| e.to_string()).as_deref(),
        Some("circuit open")
    );
    until(t0, Duration::from_secs(30)).await;
    assert_eq!(
        view(&registry).await.status,
        Status::Unhealthy,
        "still open at 30s"
    );
    until(t0, Duration::from_millis(31_100)).await;
    let v = view(&registry).await;
    assert_eq!(v.circuit_breaker.proxy.state, "half-open");
    assert_eq!(v.status, Status::Recovering);
    // The table now shows the endpoint `recovering`: its success is a test, and news.
    candidate(&registry)
        .await
        .report(RequestOutcome::Succeeded, Instant::now());
    sleep(Duration::from_millis(1)).await;
    let v = view(&registry).await;
    assert_eq!(v.circuit_breaker.proxy.state, "closed");
    assert_eq!(v.status, Status::Healthy);
}
