//! Supervision without HTTP servers: endpoint actors pointed at a closed loopback port are
//! crashed (cargo feature `fault-injection`) and must come back with `restarts` counted.
#![cfg(feature = "fault-injection")]

use std::sync::Arc;
use std::time::Duration;

use corral_actors::health::Status;
use corral_actors::messages::*;
use corral_actors::profiles::EndpointType;
use corral_actors::settings::EndpointSettings;
use corral_actors::view::FleetSnapshot;
use corral_actors::{FleetSupervisor, RegistryHandle};

/// A loopback port nothing listens on: bind one, then let it go.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn settings(name: &str) -> Arc<EndpointSettings> {
    let mut s = EndpointSettings::new(
        name,
        &format!("http://127.0.0.1:{}", closed_port()),
        EndpointType::Vllm,
    );
    s.check_interval = Duration::from_millis(100);
    s.check_timeout = Duration::from_millis(50);
    Arc::new(s)
}

async fn fleet(registry: &RegistryHandle) -> FleetSnapshot {
    registry
        .get()
        .expect("registry up")
        .send(SnapshotFleet)
        .await
        .unwrap()
}

async fn wait_for(
    registry: &RegistryHandle,
    what: &str,
    pred: impl Fn(&FleetSnapshot) -> bool,
) -> FleetSnapshot {
    for _ in 0..200 {
        if registry.get().is_some() {
            let snap = fleet(registry).await;
            if pred(&snap) {
                return snap;
            }
        }
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[actix_rt::test]
async fn crashed_endpoint_actor_is_restarted_with_status_unknown() {
    let (sup, registry) = FleetSupervisor::start_on(&actix_rt::Arbiter::current());
    sup.send(AddEndpoint(settings("a"))).await.unwrap();
    sup.send(AddEndpoint(settings("b"))).await.unwrap();
    wait_for(&registry, "both unhealthy", |s| {
        s.endpoints.len() == 2
            && s.endpoints
                .iter()
                .all(|e| e.view.status == Status::Unhealthy)
    })
    .await;

    assert!(sup.send(CrashEndpoint { name: "a".into() }).await.unwrap());
    let snap = wait_for(&registry, "a restarted", |s| {
        s.endpoints
            .iter()
            .any(|e| &*e.view.name == "a" && e.view.restarts == 1)
    })
    .await;
    let b = snap
        .endpoints
        .iter()
        .find(|e| &*e.view.name == "b")
        .unwrap();
    assert_eq!(b.view.restarts, 0, "the other endpoint is untouched");
    // The new incarnation checks at once and finds the port still closed.
    wait_for(&registry, "a re-checked", |s| {
        s.endpoints.iter().any(|e| {
            &*e.view.name == "a" && e.view.restarts == 1 && e.view.status == Status::Unhealthy
        })
    })
    .await;
    assert!(!sup
        .send(CrashEndpoint {
            name: "nope".into()
        })
        .await
        .unwrap());
}

#[actix_rt::test]
async fn crashed_registry_is_restarted_and_repopulated() {
    let (sup, registry) = FleetSupervisor::start_on(&actix_rt::Arbiter::current());
    sup.send(AddEndpoint(settings("a"))).await.unwrap();
    wait_for(&registry, "a known", |s| s.endpoints.len() == 1).await;
    let before = registry.get().unwrap();
    sup.send(CrashRegistry).await.unwrap();
    let snap = wait_for(&registry, "new registry with a", |s| s.endpoints.len() == 1).await;
    assert!(registry.get().unwrap() != before, "a new registry actor");
    assert_eq!(&*snap.endpoints[0].view.name, "a");
}

#[actix_rt::test]
async fn retired_endpoint_is_not_restarted() {
    let (sup, registry) = FleetSupervisor::start_on(&actix_rt::Arbiter::current());
    sup.send(AddEndpoint(settings("a"))).await.unwrap();
    wait_for(&registry, "a known", |s| s.endpoints.len() == 1).await;
    assert!(sup.send(RetireEndpoint { name: "a".into() }).await.unwrap());
    wait_for(&registry, "a gone", |s| s.endpoints.is_empty()).await;
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    assert!(
        fleet(&registry).await.endpoints.is_empty(),
        "no restart after retirement"
    );
}

#[actix_rt::test]
async fn routing_table_survives_a_registry_restart_whole() {
    let (sup, registry) = FleetSupervisor::start_on(&actix_rt::Arbiter::current());
    for name in ["a", "b", "c"] {
        sup.send(AddEndpoint(settings(name))).await.unwrap();
    }
    wait_for(&registry, "three known", |s| s.endpoints.len() == 3).await;
    assert_eq!(registry.routing().len(), 3);
    sup.send(CrashRegistry).await.unwrap();
    // While the new registry collects re-announcements, routing keeps the whole old table.
    for _ in 0..60 {
        assert_eq!(registry.routing().len(), 3, "never a half-empty fleet");
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    wait_for(&registry, "repopulated", |s| s.endpoints.len() == 3).await;
    assert_eq!(registry.routing().len(), 3);
}
