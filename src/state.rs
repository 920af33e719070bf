//! What every handler reads: [`AppState`], shared by all HTTP workers, with the registry handle,
//! the routing table behind it, the proxy settings and limits, and the per-model statistics.
//!
//! `app` builds it once; the proxy, status and debug handlers take it as `web::Data`. The
//! registry queries live here because handlers on both sides of the house need them.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use corral_actors::display;
use corral_actors::messages::SnapshotFleet;
use corral_actors::routing::RoutingTable;
use corral_actors::view::FleetSnapshot;
use corral_actors::{EventHub, FleetSupervisor, RegistryActor, RegistryHandle};

use crate::config::{Config, ProxyConfig};
use crate::errors::ApiError;
use crate::proxy::queue::WaitQueue;
use crate::proxy::sticky::Sticky;
use crate::stats::ModelStatsTable;

/// How long a snapshot query waits for the registry (which answers from memory at once).
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// Shared by every HTTP worker.
pub struct AppState {
    pub registry: RegistryHandle,
    pub supervisor: Addr<FleetSupervisor>,
    /// The endpoint actors' change feed; `/internal/events` subscribes to it.
    pub events: EventHub,
    pub started_at: SystemTime,
    pub started: Instant,
    /// Endpoints configured: `starting` lasts until this many have been checked.
    pub expected_endpoints: usize,
    /// The file a reload re-reads (`None`: started from text, nothing to reload).
    pub config_path: Option<PathBuf>,
    /// The config in force: the last one loaded or reloaded.
    pub running: RwLock<Arc<Config>>,
    /// One reload at a time.
    pub reloading: futures_util::lock::Mutex<()>,
    pub internal_token: Option<String>,
    /// Set once every endpoint's first check is done; `starting` never comes back after,
    /// not even while a restarted endpoint actor has its first check still to do.
    pub warmed_up: AtomicBool,
    pub proxy: ProxyConfig,
    pub limits: Limits,
    pub model_stats: ModelStatsTable,
    /// Requests waiting for an endpoint under its `max_concurrency` (SPEC 10.3).
    pub queue: Arc<WaitQueue>,
    /// Conversations and the endpoints they are pinned to (SPEC 12 sticky sessions).
    pub sticky: Arc<Sticky>,
}

/// What a client's request may cost (SPEC 3 `server`, 11): its size and how long its body
/// may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_size: u64,
    pub max_header_size: u64,
    /// The whole body must arrive within this, from the end of the head.
    pub read_timeout: Duration,
}

impl AppState {
    /// The live registry; waits out a registry restart (which takes a moment) before giving up.
    pub async fn registry(&self) -> Result<Addr<RegistryActor>, ApiError> {
        for _ in 0..50 {
            if let Some(addr) = self.registry.get() {
                return Ok(addr);
            }
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        Err(ApiError::RegistryUnavailable)
    }

    /// Every endpoint as the registry last heard of it.
    pub async fn fleet(&self) -> Result<FleetSnapshot, ApiError> {
        self.registry()
            .await?
            .send(SnapshotFleet)
            .timeout(QUERY_TIMEOUT)
            .await
            .map_err(|_| ApiError::RegistryUnavailable)
    }

    /// The registry's latest publication: routing candidates and the model catalog (no
    /// message: listings are cheap, unauthenticated and may come in floods).
    pub fn published(&self) -> Arc<RoutingTable> {
        self.registry.routing()
    }

    /// The warm-up latch: `first_checks_done` is what the latest snapshot says; once it has
    /// said yes, the answer stays yes.
    pub fn warmed_up(&self, first_checks_done: bool) -> bool {
        if first_checks_done {
            self.warmed_up.store(true, Ordering::Relaxed);
        }
        self.warmed_up.load(Ordering::Relaxed)
    }

    pub fn running(&self) -> Arc<Config> {
        self.running
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_running(&self, config: Config) {
        *self.running.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
    }

    /// The main settings in force, for `/internal/status`.
    pub fn config_summary(&self) -> serde_json::Value {
        let config = self.running();
        serde_json::json!({
            "config_file": config.source.as_ref().map(|p| p.display().to_string()),
            "load_balancer": config.proxy.load_balancer.as_str(),
            "routing_strategy": config.proxy.routing_strategy.as_str(),
            "endpoints": config.endpoints.len(),
            "max_attempts": config.proxy.max_attempts,
            "retry_on_status": config.proxy.retry_on_status,
        })
    }

    pub fn uptime(&self) -> String {
        display::duration(Duration::from_secs(self.started.elapsed().as_secs()))
    }
}
