//! Which endpoints may serve a request (SPEC 5.3 steps 1–3, 5): the route's provider class,
//! routability (an open breaker makes an endpoint `unhealthy`), the requested model under the strict or optimistic strategy,
//! and priority tiers. The routing table calls [`select`] with its entries; the proxy
//! balances within the first tier and fails over through the rest.
//!
//! Generic over the entry payload so that it is tested without actors.

use crate::catalog::model_matches;
use crate::health::Status;
pub use crate::profiles::RouteClass;
use crate::profiles::{EndpointType, ModelInfo};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectError {
    /// No routable endpoint for the route (503 `no_healthy_endpoints`).
    NoHealthyEndpoints { route: RouteClass },
    /// Nobody lists the model (404 `model_not_found`).
    ModelNotFound { model: String },
    /// Only non-routable endpoints list it (503 `model_unavailable`).
    ModelUnavailable { model: String },
}

/// The candidates, best priority tier first; never empty.
#[derive(Debug, Clone)]
pub struct Selection<T> {
    pub tiers: Vec<Vec<T>>,
}

/// What selection needs to know of one endpoint.
#[derive(Debug, Clone)]
pub struct Entry<'a, T> {
    pub kind: EndpointType,
    pub priority: u32,
    /// Already `unhealthy` while the proxy breaker is open (the endpoint machine sees to it).
    pub status: Status,
    /// `None`: the list is not known yet, which counts as listing every model.
    pub models: Option<&'a [ModelInfo]>,
    pub item: T,
}

impl<T> Entry<'_, T> {
    fn usable(&self) -> bool {
        self.status.is_routable()
    }

    fn may_list(&self, model: &str) -> bool {
        match self.models {
            None => true,
            Some(list) => list.iter().any(|m| model_matches(&m.name, model)),
        }
    }
}

pub fn select<'a, T>(
    entries: impl IntoIterator<Item = Entry<'a, T>>,
    route: RouteClass,
    model: Option<&str>,
    optimistic: bool,
) -> Result<Selection<T>, SelectError> {
    // Sized once from the entries and narrowed in place: every request runs this, and its
    // allocations must not grow with the fleet (issue 10).
    let entries = entries.into_iter();
    let mut chosen: Vec<Entry<'a, T>> = Vec::with_capacity(entries.size_hint().0);
    chosen.extend(entries.filter(|e| route.accepts(e.kind)));
    match model {
        None => chosen.retain(Entry::usable),
        Some(model) => {
            let serves = |e: &Entry<'a, T>| e.usable() && e.may_list(model);
            if chosen.iter().any(serves) {
                chosen.retain(serves);
            } else if optimistic {
                chosen.retain(Entry::usable);
            } else if chosen.iter().any(|e| e.may_list(model)) {
                return Err(SelectError::ModelUnavailable {
                    model: model.to_string(),
                });
            } else {
                return Err(SelectError::ModelNotFound {
                    model: model.to_string(),
                });
            }
        }
    }
    if chosen.is_empty() {
        return Err(SelectError::NoHealthyEndpoints { route });
    }
    Ok(Selection {
        tiers: into_tiers(chosen),
    })
}

/// Highest priority first, the given order kept within a tier (the balancer rotates over
/// it); one allocation per tier. The stable sort takes a scratch buffer the size of the
/// fleet, so it runs only when the priorities are out of order (a one-tier fleet never is).
fn into_tiers<T>(mut entries: Vec<Entry<'_, T>>) -> Vec<Vec<T>> {
    let key = |e: &Entry<'_, T>| std::cmp::Reverse(e.priority);
    if !entries.is_sorted_by_key(key) {
        entries.sort_by_key(key);
    }
    let mut rest = entries.into_iter();
    let mut tiers = Vec::new();
    while let Some(p) = rest.as_slice().first().map(|e| e.priority) {
        let len = rest
            .as_slice()
            .iter()
            .take_while(|e| e.priority == p)
            .count();
        tiers.push(rest.by_ref().take(len).map(|e| e.item).collect());
    }
    tiers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiles::named_models as models;
    use EndpointType::*;

    fn entry<'a>(
        name: &'static str,
        kind: EndpointType,
        priority: u32,
        status: Status,
        list: Option<&'a [ModelInfo]>,
    ) -> Entry<'a, &'static str> {
        Entry {
            kind,
            priority,
            status,
            models: list,
            item: name,
        }
    }

    #[test]
    fn provider_route_keeps_its_type_only() {
        let e = vec![
            entry("o", Ollama, 100, Status::Healthy, None),
            entry("v", Vllm, 100, Status::Healthy, None),
        ];
        let s = select(e, RouteClass::Provider(Vllm), None, false).unwrap();
        assert_eq!(s.tiers, vec![vec!["v"]]);
    }

    #[test]
    fn openai_and_any_routes_take_every_type() {
        let e = || {
            vec![
                entry("o", Ollama, 100, Status::Healthy, None),
                entry("v", Vllm, 100, Status::Healthy, None),
            ]
        };
        assert_eq!(
            select(e(), RouteClass::OpenAi, None, false).unwrap().tiers[0].len(),
            2
        );
        assert_eq!(
            select(e(), RouteClass::Any, None, false).unwrap().tiers[0].len(),
            2
        );
    }

    #[test]
    fn unroutable_endpoints_are_skipped() {
        let e = vec![
            entry("u", Ollama, 100, Status::Unhealthy, None),
            entry("k", Ollama, 100, Status::Unknown, None),
            entry("r", Ollama, 100, Status::Recovering, None),
            entry("d", Ollama, 100, Status::Degraded, None),
        ];
        let s = select(e, RouteClass::Any, None, false).unwrap();
        assert_eq!(s.tiers, vec![vec!["r", "d"]]);
    }

    #[test]
    fn nothing_routable_is_no_healthy_endpoints() {
        let e = vec![entry("u", Ollama, 100, Status::Unhealthy, None)];
        assert_eq!(
            select(e, RouteClass::Provider(Ollama), None, false).unwrap_err(),
            SelectError::NoHealthyEndpoints {
                route: RouteClass::Provider(Ollama)
            }
        );
    }

    #[test]
    fn tiers_by_priority_highest_first() {
        let e = vec![
            entry("backup", Ollama, 50, Status::Healthy, None),
            entry("primary-a", Ollama, 100, Status::Healthy, None),
            entry("primary-b", Ollama, 100, Status::Healthy, None),
        ];
        let s = select(e, RouteClass::Any, None, false).unwrap();
        assert_eq!(
            s.tiers,
            vec![vec!["primary-a", "primary-b"], vec!["backup"]]
        );
    }

    #[test]
    fn tiers_keep_the_given_order_within_each_tier() {
        let e = |names: &[(&'static str, u32)]| -> Vec<_> {
            names
                .iter()
                .map(|&(n, p)| entry(n, Ollama, p, Status::Healthy, None))
                .collect()
        };
        let mixed = e(&[("a", 100), ("b", 50), ("c", 100), ("d", 50), ("e", 10)]);
        let s = select(mixed, RouteClass::Any, None, false).unwrap();
        assert_eq!(s.tiers, vec![vec!["a", "c"], vec!["b", "d"], vec!["e"]]);
        let sorted = e(&[("a", 100), ("c", 100), ("b", 50), ("e", 10)]);
        let s = select(sorted, RouteClass::Any, None, false).unwrap();
        assert_eq!(s.tiers, vec![vec!["a", "c"], vec!["b"], vec!["e"]]);
    }

    #[test]
    fn strict_keeps_endpoints_listing_the_model() {
        let a = models(&["llama3"]);
        let b = models(&["phi3"]);
        let e = vec![
            entry("a", Ollama, 100, Status::Healthy, Some(&a)),
            entry("b", Ollama, 100, Status::Healthy, Some(&b)),
        ];
        let s = select(e, RouteClass::Any, Some("phi3"), false).unwrap();
        assert_eq!(s.tiers, vec![vec!["b"]]);
    }

    #[test]
    fn unknown_list_counts_as_listing() {
        let a = models(&["llama3"]);
        let e = vec![
            entry("a", Ollama, 100, Status::Healthy, Some(&a)),
            entry("new", Ollama, 100, Status::Healthy, None),
        ];
        let s = select(e, RouteClass::Any, Some("phi3"), false).unwrap();
        assert_eq!(s.tiers, vec![vec!["new"]]);
    }

    #[test]
    fn strict_model_on_no_endpoint_is_not_found() {
        let a = models(&["llama3"]);
        let e = vec![entry("a", Ollama, 100, Status::Healthy, Some(&a))];
        assert_eq!(
            select(e, RouteClass::Any, Some("gpt-9"), false).unwrap_err(),
            SelectError::ModelNotFound {
                model: "gpt-9".into()
            }
        );
    }

    #[test]
    fn strict_model_only_on_unroutable_is_unavailable() {
        let a = models(&["llama3"]);
        let b = models(&["phi3"]);
        let e = vec![
            entry("a", Ollama, 100, Status::Healthy, Some(&a)),
            entry("b", Ollama, 100, Status::Unhealthy, Some(&b)),
        ];
        assert_eq!(
            select(e, RouteClass::Any, Some("phi3"), false).unwrap_err(),
            SelectError::ModelUnavailable {
                model: "phi3".into()
            }
        );
    }

    #[test]
    fn strict_unknown_list_on_unroutable_is_unavailable() {
        let a = models(&["llama3"]);
        let e = vec![
            entry("a", Ollama, 100, Status::Healthy, Some(&a)),
            entry("b", Ollama, 100, Status::Unknown, None),
        ];
        assert!(matches!(
            select(e, RouteClass::Any, Some("phi3"), false),
            Err(SelectError::ModelUnavailable { .. })
        ));
    }

    #[test]
    fn optimistic_falls_back_to_every_candidate() {
        let a = models(&["llama3"]);
        let e = vec![entry("a", Ollama, 100, Status::Healthy, Some(&a))];
        let s = select(e, RouteClass::Any, Some("gpt-9"), true).unwrap();
        assert_eq!(s.tiers, vec![vec!["a"]]);
    }
}
