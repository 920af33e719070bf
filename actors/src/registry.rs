//! The registry actor: the single source of truth for routing and status (SPEC 1).
//!
//! Endpoint actors push their views and model lists here (fire and forget); the HTTP layer
//! asks it for status snapshots, the model catalog and routing candidates. Every handler is
//! synchronous and cheap, so a query never waits behind network I/O. If the registry dies,
//! the supervisor starts a fresh one and every endpoint actor re-announces itself.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use actix::prelude::*;

use crate::counters::EndpointCounters;
use crate::endpoint::EndpointActor;
use crate::health::Status;
use crate::lifeline::Lifeline;
use crate::messages::*;
use crate::profiles::ModelInfo;
use crate::select::{self, SelectError, Selection};
use crate::settings::EndpointSettings;

/// Room for bursts of status pushes from thousands of endpoints and queries from every worker.
const MAILBOX_CAPACITY: usize = 65_536;

/// One endpoint a request may go to.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub settings: Arc<EndpointSettings>,
    pub status: Status,
    pub addr: Addr<EndpointActor>,
    pub counters: Arc<EndpointCounters>,
}

struct Entry {
    view: EndpointView,
    addr: Addr<EndpointActor>,
    settings: Arc<EndpointSettings>,
    counters: Arc<EndpointCounters>,
    models: Option<Arc<Vec<ModelInfo>>>,
}

pub struct RegistryActor {
    entries: HashMap<Arc<str>, Entry>,
    /// Per-model request counters (kept since this registry started).
    model_stats: BTreeMap<String, ModelRequestStats>,
    _lifeline: Lifeline,
}

impl RegistryActor {
    pub fn new(lifeline: Lifeline) -> Self {
        RegistryActor {
            entries: HashMap::new(),
            model_stats: BTreeMap::new(),
            _lifeline: lifeline,
        }
    }
}

impl Actor for RegistryActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
    }
}

impl Handler<EndpointUpdated> for RegistryActor {
    type Result = ();

    fn handle(&mut self, msg: EndpointUpdated, _: &mut Self::Context) {
        let name = msg.view.name.clone();
        match self.entries.get_mut(&name) {
            Some(entry) => {
                if entry.addr != msg.addr {
                    // A new incarnation starts without a model list of its own.
                    entry.models = None;
                }
                entry.view = msg.view;
                entry.addr = msg.addr;
                entry.settings = msg.settings;
                entry.counters = msg.counters;
            }
            None => {
                self.entries.insert(
                    name,
                    Entry {
                        view: msg.view,
                        addr: msg.addr,
                        settings: msg.settings,
                        counters: msg.counters,
                        models: None,
                    },
                );
            }
        }
    }
}

impl Handler<ModelsDiscovered> for RegistryActor {
    type Result = ();

    fn handle(&mut self, msg: ModelsDiscovered, _: &mut Self::Context) {
        if let Some(entry) = self.entries.get_mut(&msg.name) {
            entry.models = Some(msg.models);
        }
    }
}

impl Handler<EndpointRetired> for RegistryActor {
    type Result = ();

    fn handle(&mut self, msg: EndpointRetired, _: &mut Self::Context) {
        self.entries.remove(&msg.name);
    }
}

impl Handler<SnapshotFleet> for RegistryActor {
    type Result = MessageResult<SnapshotFleet>;

    fn handle(&mut self, _: SnapshotFleet, _: &mut Self::Context) -> Self::Result {
        let mut endpoints: Vec<EndpointSnapshot> = self
            .entries
            .values()
            .map(|e| EndpointSnapshot {
                settings: e.settings.clone(),
                view: e.view.clone(),
                models: e.models.clone(),
                in_flight: e.counters.in_flight(),
                requests: e.counters.requests(),
                failures: e.counters.failures(),
                retries: e.counters.retries(),
            })
            .collect();
        endpoints.sort_by(|a, b| {
            b.settings
                .priority
                .cmp(&a.settings.priority)
                .then_with(|| a.view.name.cmp(&b.view.name))
        });
        MessageResult(FleetSnapshot { endpoints })
    }
}

impl Handler<SnapshotModels> for RegistryActor {
    type Result = MessageResult<SnapshotModels>;

    fn handle(&mut self, _: SnapshotModels, _: &mut Self::Context) -> Self::Result {
        let mut by_name: BTreeMap<&str, Vec<ModelSource>> = BTreeMap::new();
        for entry in self.entries.values() {
            for info in entry.models.iter().flat_map(|m| m.iter()) {
                by_name.entry(&info.name).or_default().push(ModelSource {
                    endpoint: entry.view.name.clone(),
                    kind: entry.settings.kind,
                    status: entry.view.status,
                    info: info.clone(),
                });
            }
        }
        let models = by_name
            .into_iter()
            .map(|(name, mut sources)| {
                sources.sort_by(|a, b| a.endpoint.cmp(&b.endpoint));
                CatalogModel {
                    name: name.to_string(),
                    sources,
                }
            })
            .collect();
        MessageResult(ModelCatalog { models })
    }
}

impl Handler<SelectCandidates> for RegistryActor {
    type Result = MessageResult<SelectCandidates>;

    fn handle(&mut self, msg: SelectCandidates, _: &mut Self::Context) -> Self::Result {
        let entries = self.entries.values().map(|e| select::Entry {
            kind: e.settings.kind,
            priority: e.settings.priority,
            status: e.view.status,
            proxy_breaker_open: e.view.proxy_breaker.state == BreakerStateName::Open,
            models: e.models.as_deref().map(Vec::as_slice),
            item: Candidate {
                settings: e.settings.clone(),
                status: e.view.status,
                addr: e.addr.clone(),
                counters: e.counters.clone(),
            },
        });
        let result: Result<Selection, SelectError> =
            select::select(entries, msg.route, msg.model.as_deref(), msg.optimistic);
        MessageResult(result)
    }
}

impl Handler<RequestRecorded> for RegistryActor {
    type Result = ();

    fn handle(&mut self, msg: RequestRecorded, _: &mut Self::Context) {
        let Some(model) = msg.model else { return };
        let stats = self
            .model_stats
            .entry(model.clone())
            .or_insert_with(|| ModelRequestStats {
                name: model,
                ..ModelRequestStats::default()
            });
        stats.requests += 1;
        if msg.failed {
            stats.failures += 1;
        } else {
            stats.total_latency += msg.latency;
        }
    }
}

impl Handler<SnapshotModelStats> for RegistryActor {
    type Result = MessageResult<SnapshotModelStats>;

    fn handle(&mut self, _: SnapshotModelStats, _: &mut Self::Context) -> Self::Result {
        MessageResult(ModelStats {
            models: self.model_stats.values().cloned().collect(),
        })
    }
}

#[cfg(feature = "fault-injection")]
impl Handler<CrashRegistry> for RegistryActor {
    type Result = ();

    fn handle(&mut self, _: CrashRegistry, _: &mut Self::Context) {
        panic!("fault injection: registry crash requested");
    }
}

/// Where the current registry is. The supervisor swaps in a new address when the registry is
/// restarted; endpoint actors and HTTP handlers read it on every use.
#[derive(Clone, Default)]
pub struct RegistryHandle(Arc<RwLock<Option<Addr<RegistryActor>>>>);

impl RegistryHandle {
    /// The live registry, or `None` in the moment between its death and its restart.
    pub fn get(&self) -> Option<Addr<RegistryActor>> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .filter(|a| a.connected())
    }

    pub(crate) fn set(&self, addr: Addr<RegistryActor>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(addr);
    }

    /// Fire-and-forget delivery; a message sent while the registry is restarting is dropped,
    /// which is harmless because every endpoint re-announces itself to the new registry.
    pub fn tell<M>(&self, msg: M)
    where
        M: Message + Send + 'static,
        M::Result: Send,
        RegistryActor: Handler<M>,
    {
        if let Some(addr) = self.get() {
            addr.do_send(msg);
        }
    }
}
