//! Which endpoints a request may try, and in what order (SPEC 5.3, 10.2): the routing
//! table's selection for the route and model, then the best tier first, each tier in the
//! balancer's order (residency and load, from each endpoint's latest load report), cut to
//! `max_attempts`. `forward` and the wait queue call both.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use corral_actors::balance;
use corral_actors::routing::RoutingTable;
use corral_actors::select::{RouteClass, SelectError};
use corral_actors::Candidate;

use crate::config::{LoadBalancer, ProxyConfig, RoutingStrategy};
use crate::errors::ApiError;

/// Rotates ties between equal candidates across requests.
static TURN: AtomicUsize = AtomicUsize::new(0);

/// The candidates by priority tier, best tier first; an error when no endpoint may serve.
/// These are the *eligible* endpoints (SPEC 10.3): some may be at their limit.
pub fn select(
    table: &RoutingTable,
    proxy: &ProxyConfig,
    route: RouteClass,
    model: Option<&str>,
) -> Result<Vec<Vec<Candidate>>, ApiError> {
    let optimistic = proxy.routing_strategy == RoutingStrategy::Optimistic;
    let selection = table
        .select(route, model, optimistic)
        .map_err(|e| match e {
            SelectError::NoHealthyEndpoints { route } => ApiError::NoHealthyEndpoints {
                route: route.to_string(),
            },
            SelectError::ModelNotFound { model } => ApiError::ModelNotFound { model },
            SelectError::ModelUnavailable { model } => ApiError::ModelUnavailable { model },
        })?;
    Ok(selection.tiers)
}

/// The *admissible* candidates (under their limit now): best tier first, each tier in the
/// balancer's order for `model` at `now`, cut to `max_attempts` (0 = all).
pub fn order(
    tiers: &[Vec<Candidate>],
    proxy: &ProxyConfig,
    model: Option<&str>,
    now: Instant,
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
        resident: model.is_none_or(|m| board.resident(m, now, max_age)),
        ..counted
    }
}
