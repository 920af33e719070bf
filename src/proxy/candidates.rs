//! Which endpoints a request may try, and in what order (SPEC 5.3, 10.2, 12): the routing
//! table's selection for the route and the model or alias asked for, then the session's
//! pinned endpoint (sticky sessions) and the best tier first, each tier in the balancer's
//! order (residency and load, from each endpoint's latest load report), cut to
//! `max_attempts`. `forward` and the wait queue call both.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use corral_actors::balance;
use corral_actors::routing::RoutingTable;
use corral_actors::select::{Decision, RouteClass, SelectError, Wanted};
use corral_actors::Candidate;

use crate::config::{LoadBalancer, ModelAliases, ProxyConfig, RoutingStrategy};
use crate::errors::ApiError;

/// What a request asks for, owned: a waiting request keeps it to be chosen for again.
#[derive(Debug, Clone, Default)]
pub struct WantedModel {
    name: Option<String>,
    /// `name` is a `model_aliases` alias: the native names it stands for.
    targets: Option<Arc<[String]>>,
}

impl WantedModel {
    /// The model a request names, resolved against the configured aliases.
    pub fn new(name: Option<String>, aliases: &ModelAliases) -> Self {
        let targets = name.as_deref().and_then(|n| aliases.get(n)).cloned();
        WantedModel { name, targets }
    }

    /// The name the client sent, if any.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    fn as_select(&self) -> Wanted<'_> {
        match (&self.name, &self.targets) {
            (None, _) => Wanted::Anything,
            (Some(alias), Some(targets)) => Wanted::Alias { alias, targets },
            (Some(model), None) => Wanted::Model(model),
        }
    }
}

/// The eligible candidates, and how the model decided them.
#[derive(Debug)]
pub struct Routed {
    pub tiers: Vec<Vec<Candidate>>,
    /// `None` when the request names no model.
    pub decision: Option<Decision>,
}

/// Rotates ties between equal candidates across requests.
static TURN: AtomicUsize = AtomicUsize::new(0);

/// The candidates by priority tier, best tier first; an error when no endpoint may serve.
/// These are the *eligible* endpoints (SPEC 10.3): some may be at their limit.
pub fn select(
    table: &RoutingTable,
    proxy: &ProxyConfig,
    route: RouteClass,
    wanted: &WantedModel,
) -> Result<Routed, ApiError> {
    let optimistic = proxy.routing_strategy == RoutingStrategy::Optimistic;
    let selection = table
        .select(route, wanted.as_select(), optimistic)
        .map_err(|e| match e {
            SelectError::NoHealthyEndpoints { route } => ApiError::NoHealthyEndpoints {
                route: route.to_string(),
            },
            SelectError::ModelNotFound { model } => ApiError::ModelNotFound { model },
            SelectError::ModelUnavailable { model } => ApiError::ModelUnavailable { model },
        })?;
    Ok(Routed {
        tiers: selection.tiers,
        decision: selection.decision,
    })
}

/// The *admissible* candidates (under their limit now): `pinned` first when it is one of
/// them (a sticky session's endpoint, whatever its tier), then best tier first, each tier in
/// the balancer's order for `model` at `now`; cut to `max_attempts` (0 = all).
pub fn order(
    tiers: &[Vec<Candidate>],
    proxy: &ProxyConfig,
    model: Option<&str>,
    now: Instant,
    pinned: Option<&str>,
) -> Vec<Candidate> {
    let policy = match proxy.load_balancer {
        LoadBalancer::Priority => balance::Policy::Priority,
        LoadBalancer::RoundRobin => balance::Policy::RoundRobin,
        LoadBalancer::LeastConnections => balance::Policy::LeastConnections,
    };
    let turn = TURN.fetch_add(1, Ordering::Relaxed);
    let mut ordered = Vec::new();
    let mut loads = Vec::new();
    for tier in tiers {
        loads.clear();
        loads.extend(tier.iter().map(|c| load(c, policy, model, now)));
        let picks = balance::order(&loads, policy, turn);
        ordered.extend(picks.into_iter().map(|i| tier[i].clone()));
    }
    if let Some(i) = pinned.and_then(|p| ordered.iter().position(|c| *c.settings.name == *p)) {
        let first = ordered.remove(i);
        ordered.insert(0, first);
    }
    if proxy.max_attempts > 0 {
        ordered.truncate(proxy.max_attempts as usize);
    }
    ordered
}

/// What the balancer knows of one candidate now: Corral's counts, and the backend's own
/// report while it is fresh (round-robin reads none of it).
fn load(
    c: &Candidate,
    policy: balance::Policy,
    model: Option<&str>,
    now: Instant,
) -> balance::Load {
    let counted = balance::Load::counted(c.status, c.counters.in_flight(), c.has_room());
    if policy == balance::Policy::RoundRobin {
        return counted;
    }
    let board = &c.counters.load;
    let max_age = c.settings.load_max_age();
    let fresh = board.fresh(now, max_age);
    balance::Load {
        reported: fresh.and_then(|f| f.busy),
        capacity: fresh.and_then(|f| f.capacity).unwrap_or(1),
        // An alias's endpoint is asked for its own name for the model.
        resident: c
            .native()
            .or(model)
            .is_none_or(|m| board.resident(m, now, max_age)),
        ..counted
    }
}
