//! The routing table the registry publishes for the proxy (SPEC 5.3).
//!
//! Asking the registry actor for candidates on every request costs two thread wake-ups on
//! the request path (the control plane runs on its own thread). Instead, the registry answers
//! ahead of time: whenever a fact that routing depends on changes (an endpoint's status, its
//! proxy breaker opening or closing, its model list, its address after a restart), it builds
//! a new immutable table and publishes it behind an `Arc`. HTTP workers take the latest table
//! — a read lock and a reference count — and run the same pure [`select`](crate::select) on
//! it. The registry stays the single source of truth; nothing else writes the table.

use std::sync::Arc;

use crate::profiles::ModelInfo;
use crate::registry::Candidate;
use crate::select::{self, RouteClass, SelectError, Selection};

/// One endpoint as routing sees it.
#[derive(Debug, Clone)]
pub struct RouteEntry {
    pub candidate: Candidate,
    pub proxy_breaker_open: bool,
    /// `None`: not known yet (counts as listing every model).
    pub models: Option<Arc<Vec<ModelInfo>>>,
}

#[derive(Debug, Clone, Default)]
pub struct RoutingTable {
    entries: Vec<RouteEntry>,
}

impl RoutingTable {
    pub fn new(entries: Vec<RouteEntry>) -> Self {
        RoutingTable { entries }
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

    /// Routable candidates for a route and model, best priority tier first.
    pub fn select(
        &self,
        route: RouteClass,
        model: Option<&str>,
        optimistic: bool,
    ) -> Result<Selection, SelectError> {
        let entries = self.entries.iter().map(|e| select::Entry {
            kind: e.candidate.settings.kind,
            priority: e.candidate.settings.priority,
            status: e.candidate.status,
            proxy_breaker_open: e.proxy_breaker_open,
            models: e.models.as_deref().map(Vec::as_slice),
            item: e.candidate.clone(),
        });
        select::select(entries, route, model, optimistic)
    }
}
