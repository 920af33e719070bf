//! The routing table the registry publishes for the proxy (SPEC 5.3), and the [`Candidate`]
//! a request may go to.
//!
//! Asking the registry actor for candidates on every request costs two thread wake-ups on
//! the request path (the control plane runs on its own thread). Instead, the registry answers
//! ahead of time: whenever a fact that routing depends on changes (an endpoint's status, its
//! model list, its actor after a restart), it builds a new immutable table and publishes it
//! behind an `Arc`. HTTP workers take the latest table — a read lock and a reference count —
//! and run the pure [`select`](crate::select) on it. The registry stays the single source of
//! truth; nothing else writes the table.

use std::sync::Arc;

use actix::Recipient;
use actix_rt::time::Instant;

use crate::catalog::ModelCatalog;
use crate::counters::{EndpointCounters, InFlight};
use crate::health::Status;
use crate::messages::ReportOutcome;
use crate::outcome::RequestOutcome;
use crate::profiles::ModelInfo;
use crate::select::{self, RouteClass, SelectError, Selection, Wanted};
use crate::settings::EndpointSettings;

/// One endpoint a request may go to, as the routing table saw it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub settings: Arc<EndpointSettings>,
    pub status: Status,
    pub counters: Arc<EndpointCounters>,
    /// Shared: a candidate is cloned into every request's selection, and cloning a
    /// `Recipient` allocates.
    outcomes: Arc<Recipient<ReportOutcome>>,
    /// The model name this endpoint is sent when the request named a `model_aliases` alias
    /// (SPEC 12); `None` otherwise.
    native: Option<Arc<str>>,
}

impl Candidate {
    pub fn new(
        settings: Arc<EndpointSettings>,
        status: Status,
        counters: Arc<EndpointCounters>,
        outcomes: Recipient<ReportOutcome>,
    ) -> Self {
        Candidate {
            settings,
            status,
            counters,
            outcomes: Arc::new(outcomes),
            native: None,
        }
    }

    /// The name this endpoint knows the requested alias by, when the request named one.
    pub fn native(&self) -> Option<&str> {
        self.native.as_deref()
    }

    /// How many requests may be in flight here at once: a `recovering` endpoint takes test
    /// traffic only, one request at a time (SPEC 4.2); otherwise `max_concurrency` (SPEC
    /// 10.3), if any.
    pub fn in_flight_limit(&self) -> Option<u64> {
        if self.status == Status::Recovering {
            return Some(1);
        }
        let slots = self.counters.load.slots();
        self.settings.max_concurrency.limit(slots)
    }

    /// Requests may wait in the queue for this endpoint (SPEC 10.3): not for a
    /// `recovering` one, whose one test request is all it takes.
    pub fn may_queue(&self) -> bool {
        self.status != Status::Recovering
    }

    /// Whether a request would be admitted now (the balancer skips those that would not).
    pub fn has_room(&self) -> bool {
        self.in_flight_limit()
            .is_none_or(|limit| self.counters.in_flight() < limit)
    }

    /// Counts a request in flight if the endpoint admits it now.
    pub fn admit(&self) -> Option<InFlight> {
        self.counters.try_begin(self.in_flight_limit())
    }

    /// Tells the endpoint's actor what became of a request. Failures are always news; a
    /// success only when it ends a streak of reported failures or tests a `recovering`
    /// endpoint, so that a healthy endpoint's traffic costs no messages. `try_send`: on the
    /// request path a full mailbox must not block; the next outcome or check tells the same.
    pub fn report(&self, outcome: RequestOutcome, started: Instant) {
        let news = match outcome {
            RequestOutcome::Succeeded => {
                // Both sides run: the flag is consumed even when the status alone decides.
                let after_failures = self.counters.success_is_news();
                after_failures || self.status == Status::Recovering
            }
            RequestOutcome::ConnectFailed(_) | RequestOutcome::Failed(_) => {
                self.counters.note_failure_reported();
                true
            }
        };
        if news {
            let _ = self.outcomes.try_send(ReportOutcome { outcome, started });
        }
    }
}

/// One endpoint as routing sees it.
#[derive(Debug, Clone)]
pub struct RouteEntry {
    pub candidate: Candidate,
    /// `None`: not known yet (counts as listing every model).
    pub models: Option<Arc<Vec<ModelInfo>>>,
}

/// One publication of the registry: the candidates and the model catalog built from the same
/// facts, so a request that routes and labels its model reads one consistent snapshot.
#[derive(Debug, Clone, Default)]
pub struct RoutingTable {
    entries: Vec<RouteEntry>,
    catalog: ModelCatalog,
}

impl RoutingTable {
    pub fn new(entries: Vec<RouteEntry>, catalog: ModelCatalog) -> Self {
        RoutingTable { entries, catalog }
    }

    /// Every model and the endpoints that list it (model listings, status, metrics labels).
    pub fn catalog(&self) -> &ModelCatalog {
        &self.catalog
    }

    pub fn entries(&self) -> &[RouteEntry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Routable candidates for a route and what the request wants, best priority tier first.
    /// For an alias, each candidate that serves one of its names carries that name
    /// ([`Candidate::native`]).
    pub fn select(
        &self,
        route: RouteClass,
        wanted: Wanted<'_>,
        optimistic: bool,
    ) -> Result<Selection<Candidate>, SelectError> {
        // An alias's native names, made shareable once per request: each candidate that
        // serves one gets a reference, not an allocation of its own (issue 10).
        let natives: Vec<Arc<str>> = match wanted {
            Wanted::Alias { targets, .. } => {
                targets.iter().map(|t| Arc::from(t.as_str())).collect()
            }
            _ => Vec::new(),
        };
        let entries = self.entries.iter().map(|e| {
            let models = e.models.as_deref().map(Vec::as_slice);
            let mut item = e.candidate.clone();
            if let Wanted::Alias { targets, .. } = wanted {
                item.native = select::native_index(models, targets).map(|i| natives[i].clone());
            }
            select::Entry {
                kind: e.candidate.settings.kind,
                priority: e.candidate.settings.priority,
                status: e.candidate.status,
                models,
                item,
            }
        });
        select::select(entries, route, wanted, optimistic)
    }
}
