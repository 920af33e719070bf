//! Which endpoints a request may try, and in what order (SPEC 5.3, 10.2, 12): the routing
//! table's selection for the route and the model or alias asked for, then the session's
//! pinned endpoint (sticky sessions) and the best tier first, each tier in the balancer's
//! order (residency and load, from each endpoint's latest load report), cut to
//! `max_attempts`: an [`Order`] that works out only as much of that as a request asks for.
//! `forward` and the wait queue call both.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use corral_actors::balance;
use corral_actors::counters::InFlight;
use corral_actors::load_board::ModelKey;
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

/// A tried candidate's place: its tier and its index there.
type Spot = (usize, usize);

/// One request's *admissible* candidates (under their limit when asked for), in order:
/// `pinned` first when it is one of them (a sticky session's endpoint, whatever its tier),
/// then best tier first, each tier in the balancer's order for the model at `now`; at most
/// `max_attempts` of them (0 = all).
///
/// Worked out only as far as the request asks (issue 10): a tier is ranked when the order
/// reaches it, reading each candidate's load board once, and only its best candidate is
/// found unless failover asks for more. Holds places, not candidates: [`Order::next`] is
/// handed the tiers the order was made for, and lends the candidate, so that only those a
/// request tries are ever cloned.
#[derive(Debug)]
pub struct Order<'m> {
    policy: balance::Policy,
    /// The model the request names, hashed once for residency.
    model: Option<ModelKey<'m>>,
    now: Instant,
    turn: usize,
    /// Handed out first, out of its tier's turn: the sticky session's endpoint.
    front: Option<Spot>,
    /// Left out of its tier's ranking: the pinned endpoint, or the one a waiting request
    /// was handed already.
    skip: Option<Spot>,
    /// The tier `ranking` holds; `None` before the first is reached.
    tier: Option<usize>,
    ranking: balance::Ranking,
    /// Candidates still to hand out (`max_attempts`).
    left: usize,
}

impl<'m> Order<'m> {
    pub fn new(
        tiers: &[Vec<Candidate>],
        proxy: &ProxyConfig,
        model: Option<&'m str>,
        now: Instant,
        pinned: Option<&str>,
    ) -> Self {
        let policy = match proxy.load_balancer {
            LoadBalancer::Priority => balance::Policy::Priority,
            LoadBalancer::RoundRobin => balance::Policy::RoundRobin,
            LoadBalancer::LeastConnections => balance::Policy::LeastConnections,
        };
        let pinned = pinned
            .and_then(|name| find(tiers, name))
            .filter(|&(t, i)| tiers[t][i].has_room());
        Order {
            policy,
            model: model.map(ModelKey::new),
            now,
            turn: TURN.fetch_add(1, Ordering::Relaxed),
            front: pinned,
            skip: pinned,
            tier: None,
            ranking: balance::Ranking::new(),
            left: match proxy.max_attempts {
                0 => usize::MAX,
                n => n as usize,
            },
        }
    }

    /// The order after `name` (the candidate a waiting request was handed): without it, and
    /// with one attempt fewer.
    pub fn after(mut self, tiers: &[Vec<Candidate>], name: &str) -> Self {
        self.skip = find(tiers, name);
        self.left = self.left.saturating_sub(1);
        self
    }

    /// The next candidate to try.
    pub fn next<'t>(&mut self, tiers: &'t [Vec<Candidate>]) -> Option<&'t Candidate> {
        if self.left == 0 {
            return None;
        }
        let (t, i) = match self.front.take() {
            Some(spot) => spot,
            None => self.advance(tiers)?,
        };
        self.left -= 1;
        Some(&tiers[t][i])
    }

    /// The next candidate that admits one more request now, with the request counted in
    /// flight there. One taken meanwhile by a request on another worker is passed over,
    /// never waited for (failover never queues, SPEC 10.3); only the one admitted is cloned.
    pub fn admit_next(&mut self, tiers: &[Vec<Candidate>]) -> Option<(Candidate, InFlight)> {
        while let Some(candidate) = self.next(tiers) {
            if let Some(in_flight) = candidate.admit() {
                return Some((candidate.clone(), in_flight));
            }
        }
        None
    }

    /// Whether another candidate would follow (the last one's failure is answered, not
    /// failed over). Ranks nothing new: a tier not reached yet counts if any of its
    /// candidates has room.
    pub fn has_next(&self, tiers: &[Vec<Candidate>]) -> bool {
        if self.left == 0 {
            return false;
        }
        if self.front.is_some() || self.ranking.remaining() > 0 {
            return true;
        }
        let from = self.tier.map_or(0, |t| t + 1);
        tiers.iter().enumerate().skip(from).any(|(t, tier)| {
            tier.iter()
                .enumerate()
                .any(|(i, c)| self.skip != Some((t, i)) && c.has_room())
        })
    }

    /// The next-best place in the current tier, ranking the next tiers as they are reached.
    fn advance(&mut self, tiers: &[Vec<Candidate>]) -> Option<Spot> {
        loop {
            if let Some(t) = self.tier {
                if let Some(i) = self.ranking.next() {
                    return Some((t, i));
                }
            }
            let t = self.tier.map_or(0, |t| t + 1);
            let tier = tiers.get(t)?;
            self.tier = Some(t);
            let skip = self.skip.filter(|&(st, _)| st == t).map(|(_, i)| i);
            let (policy, model, now) = (self.policy, self.model, self.now);
            let loads = tier.iter().enumerate().map(|(i, c)| balance::Load {
                // Tried already, or first: not again in its tier's turn.
                has_room: Some(i) != skip && c.has_room(),
                ..load(c, policy, model, now)
            });
            self.ranking.rank(loads, policy, self.turn);
        }
    }
}

fn find(tiers: &[Vec<Candidate>], name: &str) -> Option<Spot> {
    tiers.iter().enumerate().find_map(|(t, tier)| {
        tier.iter()
            .position(|c| *c.settings.name == *name)
            .map(|i| (t, i))
    })
}

/// What the balancer knows of one candidate now: Corral's counts, and the backend's own
/// report while it is fresh, read in one look (round-robin reads none of it).
fn load(
    c: &Candidate,
    policy: balance::Policy,
    model: Option<ModelKey<'_>>,
    now: Instant,
) -> balance::Load {
    let counted = balance::Load::counted(c.status, c.counters.in_flight(), true);
    if policy == balance::Policy::RoundRobin {
        return counted;
    }
    // An alias's endpoint is asked for its own name for the model.
    let model = c.native().map(ModelKey::new).or(model);
    let signals = c
        .counters
        .load
        .signals(model.as_ref(), now, c.settings.load_max_age());
    balance::Load {
        reported: signals.busy,
        capacity: signals.capacity.unwrap_or(1),
        resident: signals.resident,
        ..counted
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use actix::{Actor, Context, Handler};
    use corral_actors::counters::{EndpointCounters, InFlight};
    use corral_actors::health::Status;
    use corral_actors::messages::ReportOutcome;
    use corral_actors::profiles::EndpointType;
    use corral_actors::settings::{EndpointSettings, MaxConcurrency};

    use super::*;

    struct Sink;

    impl Actor for Sink {
        type Context = Context<Self>;
    }

    impl Handler<ReportOutcome> for Sink {
        type Result = ();

        fn handle(&mut self, _: ReportOutcome, _: &mut Context<Self>) {}
    }

    /// Endpoints by tier, each `(name, requests in flight, limit)`; the guards keep the
    /// counts up.
    fn tiers(spec: &[&[(&str, u64, u64)]]) -> (Vec<Vec<Candidate>>, Vec<InFlight>) {
        let outcomes = actix::System::new().block_on(async { Sink.start().recipient() });
        let mut guards = Vec::new();
        let tiers = spec
            .iter()
            .map(|tier| {
                tier.iter()
                    .map(|&(name, busy, limit)| {
                        let mut settings =
                            EndpointSettings::new(name, "http://127.0.0.1:1", EndpointType::Vllm);
                        settings.load_interval = Duration::ZERO;
                        settings.max_concurrency = MaxConcurrency::Fixed(limit);
                        let counters = Arc::new(EndpointCounters::new(Instant::now()));
                        guards.extend((0..busy).filter_map(|_| counters.try_begin(None)));
                        Candidate::new(
                            Arc::new(settings),
                            Status::Healthy,
                            counters,
                            outcomes.clone(),
                        )
                    })
                    .collect()
            })
            .collect();
        (tiers, guards)
    }

    fn proxy(max_attempts: u32) -> ProxyConfig {
        ProxyConfig {
            max_attempts,
            ..ProxyConfig::default()
        }
    }

    /// The names `order` hands out, and whether `has_next` said another would follow
    /// before each.
    fn walk(tiers: &[Vec<Candidate>], mut order: Order<'_>) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        while order.has_next(tiers) {
            let c = order.next(tiers).expect("has_next promised one");
            out.push((c.settings.name.to_string(), order.has_next(tiers)));
        }
        assert!(order.next(tiers).is_none());
        out
    }

    fn names(walked: &[(String, bool)]) -> Vec<&str> {
        walked.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn tiers_in_turn_least_loaded_first_and_full_ones_left_out() {
        let (t, _guards) = tiers(&[
            &[("a", 2, 9), ("b", 0, 9), ("full", 1, 1)],
            &[("c", 1, 9), ("d", 0, 9)],
        ]);
        let walked = walk(&t, Order::new(&t, &proxy(0), None, Instant::now(), None));
        assert_eq!(names(&walked), ["b", "a", "d", "c"]);
        let last: Vec<bool> = walked.iter().map(|(_, more)| *more).collect();
        assert_eq!(last, [true, true, true, false]);
    }

    #[test]
    fn the_pinned_endpoint_comes_first_once_and_counts_as_an_attempt() {
        let (t, _guards) = tiers(&[&[("a", 1, 9), ("b", 0, 9)], &[("c", 0, 9)]]);
        let order = Order::new(&t, &proxy(0), None, Instant::now(), Some("c"));
        assert_eq!(names(&walk(&t, order)), ["c", "b", "a"]);
        let order = Order::new(&t, &proxy(2), None, Instant::now(), Some("a"));
        assert_eq!(names(&walk(&t, order)), ["a", "b"]);
        // At its limit, the pinned endpoint is no candidate at all.
        let (t, _guards) = tiers(&[&[("a", 0, 9), ("p", 1, 1)]]);
        let order = Order::new(&t, &proxy(0), None, Instant::now(), Some("p"));
        assert_eq!(names(&walk(&t, order)), ["a"]);
    }

    #[test]
    fn after_a_waiters_slot_the_rest_follow_within_max_attempts() {
        let (t, _guards) = tiers(&[&[("a", 1, 9), ("b", 0, 9), ("c", 2, 9)]]);
        let order = Order::new(&t, &proxy(0), None, Instant::now(), None).after(&t, "b");
        assert_eq!(names(&walk(&t, order)), ["a", "c"]);
        let order = Order::new(&t, &proxy(2), None, Instant::now(), None).after(&t, "b");
        assert_eq!(names(&walk(&t, order)), ["a"]);
        let order = Order::new(&t, &proxy(1), None, Instant::now(), None).after(&t, "b");
        assert!(walk(&t, order).is_empty());
    }
}
