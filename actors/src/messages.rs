//! Every message that crosses an actor boundary, in one place: the contract between the
//! endpoint actors, the registry, the supervisor and the HTTP layer in the `corral` crate.
//!
//! Commands are imperative (`ReportOutcome`, `RetireEndpoint`); events are past tense
//! (`EndpointUpdated`, `ModelsDiscovered`). Messages carry plain data and `Recipient`s, never
//! a concrete actor's address, so the contract imports no actor.

use std::sync::Arc;

use actix::prelude::*;
use actix_rt::time::Instant;

use crate::counters::EndpointCounters;
use crate::outcome::RequestOutcome;
use crate::profiles::ModelInfo;
use crate::settings::EndpointSettings;
use crate::view::{EndpointView, FleetSnapshot};

// ---- endpoint actor -> registry (events) ----

/// An endpoint's view changed (after every check, breaker move or re-announcement).
#[derive(Message)]
#[rtype(result = "()")]
pub struct EndpointUpdated {
    pub view: EndpointView,
    /// Which incarnation of the endpoint's actor sent it: a new one starts without models.
    pub incarnation: u64,
    /// Where the proxy reports request outcomes for this endpoint.
    pub outcomes: Recipient<ReportOutcome>,
    pub settings: Arc<EndpointSettings>,
    pub counters: Arc<EndpointCounters>,
    /// The endpoint's admission limit changed (a new slot count under `max_concurrency:
    /// auto`): the table must be published again even if nothing else changed, so that
    /// requests waiting for a slot look again.
    pub limit_changed: bool,
}

/// An endpoint's model list was fetched (the list may be unchanged).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ModelsDiscovered {
    pub name: Arc<str>,
    pub models: Arc<Vec<ModelInfo>>,
}

/// An endpoint was removed from the configuration (or replaced by a fresh actor).
#[derive(Message)]
#[rtype(result = "()")]
pub struct EndpointRetired {
    pub name: Arc<str>,
    pub incarnation: u64,
}

// ---- HTTP layer -> registry (queries) ----

/// The whole fleet, for the status API.
#[derive(Message)]
#[rtype(result = "FleetSnapshot")]
pub struct SnapshotFleet;

// ---- to an endpoint actor (commands) ----

/// The proxy reports; the endpoint actor decides.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReportOutcome {
    pub outcome: RequestOutcome,
    /// When the request began: an outcome from before the endpoint's last recovery is stale.
    pub started: Instant,
}

/// Send the full state (view and models) to this registry from now on: a new registry asks
/// this of every endpoint.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Announce(pub RegistryInbox);

/// Where an endpoint actor sends its news: the registry's recipients, handed to each actor
/// when it starts and again by [`Announce`] when the registry is restarted.
#[derive(Clone)]
pub struct RegistryInbox {
    pub updates: Recipient<EndpointUpdated>,
    pub models: Recipient<ModelsDiscovered>,
    pub retired: Recipient<EndpointRetired>,
}

/// New settings for the same backend (a reload): the actor keeps its state.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reconfigure(pub Arc<EndpointSettings>);

/// Stop for good (the endpoint left the configuration): no restart follows.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retire;

/// Panic inside a handler, to prove supervision (cargo feature `fault-injection`).
#[cfg(feature = "fault-injection")]
#[derive(Message)]
#[rtype(result = "()")]
pub struct Crash;

// ---- to the supervisor ----

/// An endpoint actor is gone (stopped or panicked): sent by its lifeline when dropped.
#[derive(Message)]
#[rtype(result = "()")]
pub struct EndpointDied {
    pub name: Arc<str>,
    pub incarnation: u64,
}

/// The registry actor is gone.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RegistryDied {
    pub incarnation: u64,
}

/// Start supervising a new endpoint.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AddEndpoint(pub Arc<EndpointSettings>);

/// Make the fleet the configured one (a reload): add, retire, replace and reconfigure
/// endpoint actors by name. Answers what was done, by endpoint name.
#[derive(Message)]
#[rtype(result = "FleetChanges")]
pub struct ApplyEndpoints(pub Vec<Arc<EndpointSettings>>);

/// What a reload changed, by endpoint name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetChanges {
    pub added: Vec<Arc<str>>,
    pub removed: Vec<Arc<str>>,
    /// Another backend behind the same name: a fresh actor.
    pub replaced: Vec<Arc<str>>,
    /// Same backend, new settings, state kept.
    pub reconfigured: Vec<Arc<str>>,
    pub unchanged: usize,
}

/// Stop supervising an endpoint and stop its actor.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct RetireEndpoint {
    pub name: Arc<str>,
}

/// Make an endpoint's actor panic (fault injection). False when no such endpoint.
#[cfg(feature = "fault-injection")]
#[derive(Message)]
#[rtype(result = "bool")]
pub struct CrashEndpoint {
    pub name: String,
}

/// Make the registry panic (fault injection).
#[cfg(feature = "fault-injection")]
#[derive(Message)]
#[rtype(result = "()")]
pub struct CrashRegistry;
