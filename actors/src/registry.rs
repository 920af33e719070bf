//! The registry actor: the single source of truth for routing and status (SPEC 1).
//!
//! Endpoint actors push their views and model lists here (fire and forget); the HTTP layer
//! asks it for status snapshots, and reads the routing table and model catalog it publishes. Every handler is synchronous and cheap, so a query never waits behind network
//! I/O. If the registry dies, the supervisor starts a fresh one and every endpoint actor
//! re-announces itself to it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix::prelude::*;

use crate::catalog::{Listing, ModelCatalog};
use crate::counters::EndpointCounters;
use crate::lifeline::Lifeline;
use crate::messages::*;
use crate::profiles::ModelInfo;
use crate::routing::{Candidate, RouteEntry, RoutingTable};
use crate::settings::EndpointSettings;
use crate::view::{EndpointStatus, EndpointView, FleetSnapshot};

/// Room for bursts of status pushes from thousands of endpoints and queries from every worker.
const MAILBOX_CAPACITY: usize = 65_536;

struct Entry {
    view: EndpointView,
    incarnation: u64,
    outcomes: Recipient<ReportOutcome>,
    settings: Arc<EndpointSettings>,
    counters: Arc<EndpointCounters>,
    models: Option<Arc<Vec<ModelInfo>>>,
}

pub struct RegistryActor {
    entries: HashMap<Arc<str>, Entry>,
    /// Where the routing table is published (shared with the proxy).
    handle: RegistryHandle,
    /// A routing fact changed since the last publication.
    dirty: bool,
    publish_scheduled: bool,
    /// A restarted registry keeps the previous table published until this many endpoints
    /// have re-announced themselves (or [`REANNOUNCE_GRACE`] has passed), so that routing
    /// never sees a half-empty fleet.
    awaiting: usize,
    _lifeline: Lifeline,
}

impl RegistryActor {
    /// Where endpoint actors send their news to the registry at `addr`.
    pub fn inbox(addr: &Addr<Self>) -> RegistryInbox {
        RegistryInbox {
            updates: addr.clone().recipient(),
            models: addr.clone().recipient(),
            retired: addr.clone().recipient(),
        }
    }

    /// `awaiting`: endpoints expected to announce themselves before the first publication.
    pub fn new(lifeline: Lifeline, handle: RegistryHandle, awaiting: usize) -> Self {
        RegistryActor {
            entries: HashMap::new(),
            handle,
            dirty: false,
            publish_scheduled: false,
            awaiting,
            _lifeline: lifeline,
        }
    }

    /// Notes that routing changed; the table is rebuilt once for a burst of changes.
    fn routing_changed(&mut self, ctx: &mut Context<Self>) {
        self.dirty = true;
        if self.publish_scheduled || self.entries.len() < self.awaiting {
            return;
        }
        self.publish_scheduled = true;
        ctx.run_later(PUBLISH_COALESCE, |act, _| {
            act.publish_scheduled = false;
            act.publish();
        });
    }

    /// Publishes a pending change now rather than at the end of the coalescing window.
    fn flush(&mut self) {
        if self.entries.len() >= self.awaiting {
            self.publish();
        }
    }

    fn publish(&mut self) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        self.awaiting = 0;
        let entries = self
            .entries
            .values()
            .map(|e| RouteEntry {
                candidate: Candidate::new(
                    e.settings.clone(),
                    e.view.status,
                    e.counters.clone(),
                    e.outcomes.clone(),
                ),
                models: e.models.clone(),
            })
            .collect();
        let listings = self.entries.values().map(|e| Listing {
            endpoint: &e.view.name,
            kind: e.settings.kind,
            status: e.view.status,
            models: e.models.as_deref().map(Vec::as_slice),
        });
        // Built here, once per change, not per listing request: a flood of cheap model-list
        // requests must not load the control-plane thread (SPEC 11).
        let catalog = ModelCatalog::build(listings);
        self.handle.publish(RoutingTable::new(entries, catalog));
    }
}

/// How long a burst of routing changes is gathered before one table is built: short enough
/// that a failed endpoint leaves rotation at once, long enough that 10,000 endpoints passing
/// their first checks cost a few rebuilds, not 10,000.
const PUBLISH_COALESCE: Duration = Duration::from_millis(1);
/// How long a restarted registry waits for re-announcements before publishing what it has.
const REANNOUNCE_GRACE: Duration = Duration::from_secs(1);

impl Actor for RegistryActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        if self.awaiting > 0 {
            ctx.run_later(REANNOUNCE_GRACE, |act, ctx| {
                act.awaiting = 0;
                if act.dirty {
                    act.routing_changed(ctx);
                }
            });
        }
    }
}

impl Handler<EndpointUpdated> for RegistryActor {
    type Result = ();

    fn handle(&mut self, msg: EndpointUpdated, ctx: &mut Self::Context) {
        let name = msg.view.name.clone();
        let routing_changed = match self.entries.get(&name) {
            Some(e) => {
                msg.limit_changed
                    || e.incarnation != msg.incarnation
                    || e.view.status != msg.view.status
                    || !Arc::ptr_eq(&e.settings, &msg.settings)
            }
            None => true,
        };
        let models = match self.entries.remove(&name) {
            // A new incarnation starts without a model list of its own.
            Some(old) if old.incarnation == msg.incarnation => old.models,
            _ => None,
        };
        self.entries.insert(
            name,
            Entry {
                view: msg.view,
                incarnation: msg.incarnation,
                outcomes: msg.outcomes,
                settings: msg.settings,
                counters: msg.counters,
                models,
            },
        );
        if routing_changed {
            self.routing_changed(ctx);
        }
    }
}

impl Handler<ModelsDiscovered> for RegistryActor {
    type Result = ();

    fn handle(&mut self, msg: ModelsDiscovered, ctx: &mut Self::Context) {
        if let Some(entry) = self.entries.get_mut(&msg.name) {
            entry.models = Some(msg.models);
            self.routing_changed(ctx);
        }
    }
}

impl Handler<EndpointRetired> for RegistryActor {
    type Result = ();

    fn handle(&mut self, msg: EndpointRetired, ctx: &mut Self::Context) {
        // Only the retired incarnation's entry: a replacement under the same name may have
        // announced itself already.
        let retired = self
            .entries
            .get(&msg.name)
            .is_some_and(|e| e.incarnation == msg.incarnation);
        if retired {
            self.entries.remove(&msg.name);
            self.routing_changed(ctx);
        }
    }
}

impl Handler<SnapshotFleet> for RegistryActor {
    type Result = MessageResult<SnapshotFleet>;

    fn handle(&mut self, _: SnapshotFleet, _: &mut Self::Context) -> Self::Result {
        // What the status API shows, routing already knows.
        self.flush();
        let now = std::time::Instant::now();
        let mut endpoints: Vec<EndpointStatus> = self
            .entries
            .values()
            .map(|e| {
                EndpointStatus::new(
                    &e.settings,
                    e.view.clone(),
                    e.counters.traffic(),
                    e.models.clone(),
                    &e.counters.load,
                    now,
                )
            })
            .collect();
        endpoints.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then_with(|| a.name.cmp(&b.name))
        });
        MessageResult(FleetSnapshot { endpoints })
    }
}

#[cfg(feature = "fault-injection")]
impl Handler<CrashRegistry> for RegistryActor {
    type Result = ();

    fn handle(&mut self, _: CrashRegistry, _: &mut Self::Context) {
        panic!("fault injection: registry crash requested");
    }
}

/// What the registry publishes for the HTTP layer, whose workers cannot receive messages: the
/// latest routing table, and where to send status queries. The supervisor swaps in a new
/// address when the registry is restarted. (Endpoint actors are told of a new registry by
/// [`Announce`] instead.)
#[derive(Clone)]
pub struct RegistryHandle {
    addr: Arc<RwLock<Option<Addr<RegistryActor>>>>,
    routing: Arc<RwLock<Arc<RoutingTable>>>,
    /// Counts publications, for whoever must act on a new table (the proxy's wait queue).
    published: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Default for RegistryHandle {
    fn default() -> Self {
        RegistryHandle {
            addr: Default::default(),
            routing: Default::default(),
            published: Arc::new(tokio::sync::watch::channel(0).0),
        }
    }
}

impl RegistryHandle {
    /// The latest routing table the registry published (cheap: a read lock and a clone of
    /// an `Arc`); survives registry restarts.
    pub fn routing(&self) -> Arc<RoutingTable> {
        self.routing
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn publish(&self, table: RoutingTable) {
        *self.routing.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
        self.published.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes whenever a new routing table is published.
    pub fn publications(&self) -> tokio::sync::watch::Receiver<u64> {
        self.published.subscribe()
    }

    /// The live registry, or `None` in the moment between its death and its restart.
    pub fn get(&self) -> Option<Addr<RegistryActor>> {
        self.addr
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .filter(|a| a.connected())
    }

    pub(crate) fn set(&self, addr: Addr<RegistryActor>) {
        *self.addr.write().unwrap_or_else(|e| e.into_inner()) = Some(addr);
    }
}
