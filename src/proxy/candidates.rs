//! Which endpoints a request may try, and in what order (SPEC 5.3): the routing table's
//! selection for the route and model, then the best tier first, each tier in the balancer's
//! order, cut to `max_attempts`. `forward` calls both before its first attempt.

use std::sync::atomic::{AtomicUsize, Ordering};

use corral_actors::balance;
use corral_actors::routing::RoutingTable;
use corral_actors::select::{RouteClass, SelectError};
use corral_actors::Candidate;

use crate::config::{LoadBalancer, ProxyConfig, RoutingStrategy};
use crate::errors::ApiError;
use crate::state::AppState;

/// Rotates ties between equal candidates across requests.
static TURN: AtomicUsize = AtomicUsize::new(0);

/// The candidates by priority tier, best tier first; an error when no endpoint may serve.
pub fn select(
    table: &RoutingTable,
    state: &AppState,
    route: RouteClass,
    model: Option<&str>,
) -> Result<Vec<Vec<Candidate>>, ApiError> {
    let optimistic = state.proxy.routing_strategy == RoutingStrategy::Optimistic;
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

/// Best tier first, each tier in the balancer's order, cut to `max_attempts` (0 = all).
pub fn order(tiers: Vec<Vec<Candidate>>, proxy: &ProxyConfig) -> Vec<Candidate> {
    let policy = match proxy.load_balancer {
        LoadBalancer::Priority => balance::Policy::Priority,
        LoadBalancer::RoundRobin => balance::Policy::RoundRobin,
        LoadBalancer::LeastConnections => balance::Policy::LeastConnections,
    };
    let turn = TURN.fetch_add(1, Ordering::Relaxed);
    let mut ordered = Vec::new();
    for tier in tiers {
        let loads: Vec<balance::Load> = tier
            .iter()
            .map(|c| balance::Load {
                status: c.status,
                in_flight: c.counters.in_flight(),
                has_room: c.has_room(),
            })
            .collect();
        let picks = balance::order(&loads, policy, turn);
        let mut tier: Vec<Option<Candidate>> = tier.into_iter().map(Some).collect();
        ordered.extend(picks.into_iter().filter_map(|i| tier[i].take()));
    }
    if proxy.max_attempts > 0 {
        ordered.truncate(proxy.max_attempts as usize);
    }
    ordered
}
