//! Startup and shutdown of the daemon: the control plane on its own thread, the actix-web
//! server on the given listener, and the routes. `main.rs` and the tests call [`run`].
//!
//! Assembly only: the handlers live in `proxy`, `status` and `debug`, and what they share in
//! `state`; none of them imports this module.

use std::future::Future;

use futures_util::{Stream, StreamExt};
use std::net::TcpListener;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use actix::Arbiter;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpRequest, HttpServer};
use corral_actors::messages::{AddEndpoint, SnapshotFleet};
use corral_actors::probe::HttpProber;
use corral_actors::{EventHub, FleetSupervisor, RegistryHandle};
use tracing::{info, warn};

use crate::config::Config;
use crate::errors::ApiError;
use crate::proxy::queue::WaitQueue;
use crate::proxy::sticky::Sticky;
use crate::proxy::{self, UpstreamClient};
use crate::ratelimit::RateLimiter;
use crate::state::{AppState, Limits};
use crate::{auth, debug, events, ratelimit, reload, status, ui};

/// How coarse actix's cached clock is (its date service refreshes every 500 ms).
const ACTIX_CLOCK_GRANULARITY: Duration = Duration::from_millis(500);

/// Runs Corral on `listener` until `shutdown` completes, then drains in-flight requests
/// (streams included) for up to `server.shutdown_timeout`. Tests pass their own future, so
/// Corral runs in-process beside them; `POST /internal/reload` reloads.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + 'static,
) -> std::io::Result<()> {
    run_with_reloads(config, listener, shutdown, futures_util::stream::pending()).await
}

/// As [`run`], and every item of `reloads` re-reads the config file (SPEC 2). `main` passes
/// SIGHUP here and SIGINT/SIGTERM as `shutdown`.
pub async fn run_with_reloads(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + 'static,
    reloads: impl Stream<Item = ()> + 'static,
) -> std::io::Result<()> {
    let control_plane = Arbiter::new();
    let events = EventHub::default();
    let (supervisor, registry) = FleetSupervisor::start_with(
        &control_plane.handle(),
        HttpProber::factory(),
        events.clone(),
    );
    for endpoint in &config.endpoints {
        supervisor
            .send(AddEndpoint(endpoint.clone()))
            .await
            .map_err(|e| std::io::Error::other(format!("control plane did not start: {e}")))?;
    }
    await_announcements(&registry, config.endpoints.len()).await;
    if config.endpoints.is_empty() {
        warn!("no endpoints configured: every request will get 503 until some are added");
    }
    let queue = WaitQueue::new(&config.proxy);
    let sticky = Arc::new(Sticky::new(&config.proxy.sticky_sessions));
    spawn_table_followers(&registry, queue.clone(), sticky.clone());
    let state = web::Data::new(AppState {
        registry,
        supervisor,
        events: events.clone(),
        started_at: SystemTime::now(),
        started: Instant::now(),
        expected_endpoints: config.endpoints.len(),
        config_path: config.source.clone(),
        running: RwLock::new(Arc::new(config.clone())),
        reloading: Default::default(),
        internal_token: config.server.internal_token.clone(),
        warmed_up: Default::default(),
        proxy: config.proxy.clone(),
        model_stats: Default::default(),
        queue,
        sticky,
        limits: Limits {
            max_body_size: config.server.max_body_size,
            max_header_size: config.server.max_header_size,
            read_timeout: config.server.read_timeout,
        },
    });
    let proxy_config = config.proxy.clone();
    let reload_state = state.clone();
    let addr = listener.local_addr()?;
    // Its own app data, not a field of `AppState`: the middleware needs nothing else.
    let rate_limiter = web::Data::new(RateLimiter::new(&config.server));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(rate_limiter.clone())
            .app_data(web::Data::new(UpstreamClient::new(&proxy_config)))
            .app_data(web::PayloadConfig::new(usize::MAX))
            .wrap(from_fn(auth::internal_token))
            // Outermost: a polled-too-often health check is refused before anything else
            // runs. The proxy's own routes carry `ratelimit::proxied`.
            .wrap(from_fn(ratelimit::health))
            .configure(status::routes)
            .configure(events::routes)
            .configure(ui::routes)
            .configure(debug::routes)
            .configure(reload::routes)
            .configure(proxy::routes)
            .default_service(web::to(not_found))
    })
    .listen(listener)?
    .disable_signals()
    // Stream chunks leave as they come: with Nagle on, a kept-alive client saw chunks
    // held back ~30 ms waiting for its delayed ACK.
    .tcp_nodelay(true)
    // actix counts whole seconds: round up, so `500ms` still gives in-flight requests a grace.
    .shutdown_timeout(config.server.shutdown_timeout.as_secs_f64().ceil() as u64)
    // The request head's deadline (SPEC 11), from the connection's start: actix answers a
    // late head with 408 and closes the connection. actix reads a clock it refreshes every
    // 500 ms, so its deadline can fire that much early: the margin gives a client at least
    // the whole `read_header_timeout`.
    .client_request_timeout(config.server.read_header_timeout + ACTIX_CLOCK_GRANULARITY)
    // A client that closes its side has gone (as Go's net/http, and so Olla, take it): the
    // request is dropped, so a queued one leaves the queue and a pending one frees its slot.
    .h1_allow_half_closed(false)
    .run();
    let handle = server.handle();
    actix_rt::spawn(async move {
        shutdown.await;
        // Event feeds never end by themselves: end them, or each would hold the drain up.
        events.close();
        handle.stop(true).await;
    });
    actix_rt::spawn(async move {
        let mut reloads = std::pin::pin!(reloads);
        while reloads.next().await.is_some() {
            // Errors are logged by `reload` itself; the running config stays.
            let _ = reload::reload(&reload_state, "SIGHUP").await;
        }
    });
    info!(
        endpoints = config.endpoints.len(),
        "listening on http://{addr}"
    );
    server.await?;
    info!("shut down cleanly");
    control_plane.stop();
    Ok(())
}

/// Offers each new routing table to the wait queue (an endpoint that joined, left or changed
/// its limit changes what the waiters may have) and to the sticky sessions (a session pinned
/// to an endpoint that left rotation is dropped).
fn spawn_table_followers(registry: &RegistryHandle, queue: Arc<WaitQueue>, sticky: Arc<Sticky>) {
    let mut publications = registry.publications();
    let registry = registry.clone();
    actix_rt::spawn(async move {
        while publications.changed().await.is_ok() {
            let table = registry.routing();
            queue.table_changed(&table);
            sticky.table_changed(&table);
        }
    });
}

/// Waits (briefly) until every endpoint actor has announced itself, so that the status API
/// lists every configured endpoint — as `unknown` until checked — from its first answer.
async fn await_announcements(registry: &RegistryHandle, expected: usize) {
    for _ in 0..250 {
        if let Some(addr) = registry.get() {
            if let Ok(fleet) = addr.send(SnapshotFleet).await {
                if fleet.endpoints.len() >= expected && registry.routing().len() >= expected {
                    return;
                }
            }
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    warn!(
        expected,
        "not every endpoint actor announced itself within 5s; serving anyway"
    );
}

async fn not_found(req: HttpRequest) -> actix_web::HttpResponse {
    use actix_web::ResponseError;
    ApiError::NotFound(req.path().to_string()).error_response()
}
