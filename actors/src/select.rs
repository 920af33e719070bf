//! Which endpoints may serve a request (SPEC 5.3 steps 1–3, 5; 12): the route's provider
//! class, routability (an open breaker makes an endpoint `unhealthy`), the requested model
//! under the strict or optimistic strategy or a `model_aliases` name, and priority tiers. The
//! routing table calls [`select`] with its entries; the proxy balances within the first tier
//! and fails over through the rest.
//!
//! Every selection that concerned a model also says how it was decided ([`Decision`]): the
//! `X-Olla-Routing-*` headers of the answer.
//!
//! Generic over the entry payload so that it is tested without actors.

use std::fmt;

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

/// What a request asks for.
#[derive(Debug, Clone, Copy)]
pub enum Wanted<'a> {
    /// No model named: any routable endpoint of the route, and no routing strategy at play.
    Anything,
    /// A model, by the name the client sent.
    Model(&'a str),
    /// A `model_aliases` name and the native names it stands for, in preference order.
    Alias {
        alias: &'a str,
        targets: &'a [String],
    },
}

impl<'a> Wanted<'a> {
    /// The name the client sent, if any.
    pub fn name(&self) -> Option<&'a str> {
        match *self {
            Wanted::Anything => None,
            Wanted::Model(m) => Some(m),
            Wanted::Alias { alias, .. } => Some(alias),
        }
    }
}

/// The candidates, best priority tier first; never empty.
#[derive(Debug, Clone)]
pub struct Selection<T> {
    pub tiers: Vec<Vec<T>>,
    /// How the model decided the candidates; `None` when the request names no model.
    pub decision: Option<Decision>,
}

/// How a request's model was routed, in Olla's words (`X-Olla-Routing-Strategy`,
/// `-Decision`, `-Reason`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub strategy: Strategy,
    pub action: Action,
    pub reason: Reason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Strict,
    Optimistic,
    /// A `model_aliases` name resolved to endpoints serving one of its native names.
    Alias,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Strict => "strict",
            Strategy::Optimistic => "optimistic",
            Strategy::Alias => "alias",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// To endpoints that list the model.
    Routed,
    /// Optimistic: nobody routable lists it, so to every routable candidate.
    Fallback,
    /// Not forwarded at all.
    Rejected,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Routed => "routed",
            Action::Fallback => "fallback",
            Action::Rejected => "rejected",
        }
    }
}

/// Olla's reason strings for a request that was forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    ModelFound,
    ModelNotFound,
    ModelUnavailable,
    /// Optimistic, and nobody lists the model.
    ModelNotFoundFallback,
    /// Optimistic, and only non-routable endpoints list the model.
    AllHealthyFallback,
    /// `alias "<alias>" resolved to <endpoints> endpoint(s)`, as Olla words it.
    AliasResolved {
        alias: String,
        endpoints: usize,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::ModelFound => "model_found",
            Reason::ModelNotFound => "model_not_found",
            Reason::ModelUnavailable => "model_unavailable",
            Reason::ModelNotFoundFallback => "model_not_found_fallback",
            Reason::AllHealthyFallback => "all_healthy_fallback",
            Reason::AliasResolved { alias, endpoints } => {
                // Escaped to ASCII: it becomes a header value.
                let alias = alias.escape_default();
                return write!(f, "alias \"{alias}\" resolved to {endpoints} endpoint(s)");
            }
        })
    }
}

impl Decision {
    fn new(strategy: Strategy, action: Action, reason: Reason) -> Self {
        Decision {
            strategy,
            action,
            reason,
        }
    }
}

fn model_strategy(optimistic: bool) -> Strategy {
    if optimistic {
        Strategy::Optimistic
    } else {
        Strategy::Strict
    }
}

/// The native name an endpoint with this model list is sent for an alias: the first of
/// `targets` it lists. An endpoint whose list is not known yet serves none (nothing says which
/// name it would know).
pub fn native_name<'t>(models: Option<&[ModelInfo]>, targets: &'t [String]) -> Option<&'t str> {
    native_index(models, targets).map(|i| targets[i].as_str())
}

/// Which of `targets` [`native_name`] picks, by its index.
pub fn native_index(models: Option<&[ModelInfo]>, targets: &[String]) -> Option<usize> {
    let list = models?;
    targets
        .iter()
        .position(|t| list.iter().any(|m| model_matches(&m.name, t)))
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

    fn serves_alias(&self, targets: &[String]) -> bool {
        native_name(self.models, targets).is_some()
    }
}

pub fn select<'a, T>(
    entries: impl IntoIterator<Item = Entry<'a, T>>,
    route: RouteClass,
    wanted: Wanted<'_>,
    optimistic: bool,
) -> Result<Selection<T>, SelectError> {
    // Sized once from the entries and narrowed in place: every request runs this, and its
    // allocations must not grow with the fleet (issue 10).
    let entries = entries.into_iter();
    let mut chosen: Vec<Entry<'a, T>> = Vec::with_capacity(entries.size_hint().0);
    chosen.extend(entries.filter(|e| route.accepts(e.kind)));
    let decision = match wanted {
        Wanted::Anything => {
            chosen.retain(Entry::usable);
            None
        }
        Wanted::Model(model) => Some(by_model(&mut chosen, model, false, optimistic)?),
        Wanted::Alias { alias, targets } => {
            // ## Alias => (endpoints serving a native name | the alias as a plain model name)
            // Olla's rule: the alias wins over a model of the same name; when no routable
            // endpoint serves any of its names, the alias name is routed as a model name.
            let serves = |e: &Entry<'a, T>| e.usable() && e.serves_alias(targets);
            if chosen.iter().any(serves) {
                chosen.retain(serves);
                let reason = Reason::AliasResolved {
                    alias: alias.to_string(),
                    endpoints: chosen.len(),
                };
                Some(Decision::new(Strategy::Alias, Action::Routed, reason))
            } else {
                let listed = chosen.iter().any(|e| e.serves_alias(targets));
                Some(by_model(&mut chosen, alias, listed, optimistic)?)
            }
        }
    };
    if chosen.is_empty() {
        return Err(SelectError::NoHealthyEndpoints { route });
    }
    Ok(Selection {
        tiers: into_tiers(chosen),
        decision,
    })
}

/// The strict or optimistic strategy for one model name: narrows `class` (the route's
/// endpoints) to the chosen ones. `listed_elsewhere`: a non-routable endpoint is known to
/// serve the request under another name (an alias's native names).
fn by_model<T>(
    class: &mut Vec<Entry<'_, T>>,
    model: &str,
    listed_elsewhere: bool,
    optimistic: bool,
) -> Result<Decision, SelectError> {
    let strategy = model_strategy(optimistic);
    let serves = |e: &Entry<'_, T>| e.usable() && e.may_list(model);
    // ## serving => Routed
    if class.iter().any(serves) {
        class.retain(serves);
        return Ok(Decision::new(strategy, Action::Routed, Reason::ModelFound));
    }
    let listed_anywhere = listed_elsewhere || class.iter().any(|e| e.may_list(model));
    // ## none serving, optimistic => Fallback to every routable candidate
    if optimistic {
        let reason = if listed_anywhere {
            Reason::AllHealthyFallback
        } else {
            Reason::ModelNotFoundFallback
        };
        class.retain(Entry::usable);
        return Ok(Decision::new(strategy, Action::Fallback, reason));
    }
    // ## none serving, strict => ModelUnavailable | ModelNotFound
    let model = model.to_string();
    Err(if listed_anywhere {
        SelectError::ModelUnavailable { model }
    } else {
        SelectError::ModelNotFound { model }
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
        let s = select(e, RouteClass::Provider(Vllm), Wanted::Anything, false).unwrap();
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
            select(e(), RouteClass::OpenAi, Wanted::Anything, false)
                .unwrap()
                .tiers[0]
                .len(),
            2
        );
        assert_eq!(
            select(e(), RouteClass::Any, Wanted::Anything, false)
                .unwrap()
                .tiers[0]
                .len(),
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
        let s = select(e, RouteClass::Any, Wanted::Anything, false).unwrap();
        assert_eq!(s.tiers, vec![vec!["r", "d"]]);
    }

    #[test]
    fn nothing_routable_is_no_healthy_endpoints() {
        let e = vec![entry("u", Ollama, 100, Status::Unhealthy, None)];
        assert_eq!(
            select(e, RouteClass::Provider(Ollama), Wanted::Anything, false).unwrap_err(),
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
        let s = select(e, RouteClass::Any, Wanted::Anything, false).unwrap();
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
        let s = select(mixed, RouteClass::Any, Wanted::Anything, false).unwrap();
        assert_eq!(s.tiers, vec![vec!["a", "c"], vec!["b", "d"], vec!["e"]]);
        let sorted = e(&[("a", 100), ("c", 100), ("b", 50), ("e", 10)]);
        let s = select(sorted, RouteClass::Any, Wanted::Anything, false).unwrap();
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
        let s = select(e, RouteClass::Any, Wanted::Model("phi3"), false).unwrap();
        assert_eq!(s.tiers, vec![vec!["b"]]);
    }

    #[test]
    fn unknown_list_counts_as_listing() {
        let a = models(&["llama3"]);
        let e = vec![
            entry("a", Ollama, 100, Status::Healthy, Some(&a)),
            entry("new", Ollama, 100, Status::Healthy, None),
        ];
        let s = select(e, RouteClass::Any, Wanted::Model("phi3"), false).unwrap();
        assert_eq!(s.tiers, vec![vec!["new"]]);
    }

    #[test]
    fn strict_model_on_no_endpoint_is_not_found() {
        let a = models(&["llama3"]);
        let e = vec![entry("a", Ollama, 100, Status::Healthy, Some(&a))];
        assert_eq!(
            select(e, RouteClass::Any, Wanted::Model("gpt-9"), false).unwrap_err(),
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
            select(e, RouteClass::Any, Wanted::Model("phi3"), false).unwrap_err(),
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
            select(e, RouteClass::Any, Wanted::Model("phi3"), false),
            Err(SelectError::ModelUnavailable { .. })
        ));
    }

    #[test]
    fn optimistic_falls_back_to_every_candidate() {
        let a = models(&["llama3"]);
        let e = vec![entry("a", Ollama, 100, Status::Healthy, Some(&a))];
        let s = select(e, RouteClass::Any, Wanted::Model("gpt-9"), true).unwrap();
        assert_eq!(s.tiers, vec![vec!["a"]]);
    }

    fn decision(s: Strategy, a: Action, r: Reason) -> Option<Decision> {
        Some(Decision::new(s, a, r))
    }

    #[test]
    fn decisions_say_how_the_model_routed() {
        let a = models(&["llama3"]);
        let b = models(&["phi3"]);
        let e = || {
            vec![
                entry("a", Ollama, 100, Status::Healthy, Some(&a)),
                entry("b", Ollama, 100, Status::Unhealthy, Some(&b)),
            ]
        };
        let any = select(e(), RouteClass::Any, Wanted::Anything, false).unwrap();
        assert_eq!(any.decision, None, "no model, no strategy");
        let found = select(e(), RouteClass::Any, Wanted::Model("llama3"), false).unwrap();
        use Action::*;
        use Strategy::*;
        assert_eq!(found.decision, decision(Strict, Routed, Reason::ModelFound));
        let found = select(e(), RouteClass::Any, Wanted::Model("llama3"), true).unwrap();
        assert_eq!(
            found.decision,
            decision(Optimistic, Routed, Reason::ModelFound)
        );
        let nobody = select(e(), RouteClass::Any, Wanted::Model("gpt-9"), true).unwrap();
        assert_eq!(nobody.tiers, vec![vec!["a"]]);
        assert_eq!(
            nobody.decision,
            decision(Optimistic, Fallback, Reason::ModelNotFoundFallback)
        );
        let unroutable = select(e(), RouteClass::Any, Wanted::Model("phi3"), true).unwrap();
        assert_eq!(
            unroutable.decision,
            decision(Optimistic, Fallback, Reason::AllHealthyFallback)
        );
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn an_alias_goes_only_to_endpoints_serving_one_of_its_names() {
        let o = models(&["llama3.1:8b"]);
        let l = models(&["llama-3.1-8b-instruct"]);
        let other = models(&["phi3"]);
        let e = vec![
            entry("ollama", Ollama, 100, Status::Healthy, Some(&o)),
            entry("lms", LmStudio, 50, Status::Healthy, Some(&l)),
            entry("other", Ollama, 100, Status::Healthy, Some(&other)),
            entry("unknown", Ollama, 100, Status::Healthy, None),
        ];
        let targets = names(&["llama3.1:8b", "llama-3.1-8b-instruct"]);
        let alias = Wanted::Alias {
            alias: "my-llama",
            targets: &targets,
        };
        let s = select(e, RouteClass::Any, alias, false).unwrap();
        assert_eq!(s.tiers, vec![vec!["ollama"], vec!["lms"]]);
        let reason = Reason::AliasResolved {
            alias: "my-llama".into(),
            endpoints: 2,
        };
        assert_eq!(
            reason.to_string(),
            r#"alias "my-llama" resolved to 2 endpoint(s)"#
        );
        assert_eq!(
            s.decision,
            decision(Strategy::Alias, Action::Routed, reason)
        );
    }

    #[test]
    fn the_native_name_is_the_first_target_an_endpoint_lists() {
        let both = models(&["b", "a:latest"]);
        let targets = names(&["a", "b"]);
        assert_eq!(native_name(Some(&both), &targets), Some("a"));
        assert_eq!(native_name(Some(&models(&["b"])), &targets), Some("b"));
        assert_eq!(native_name(Some(&models(&["c"])), &targets), None);
        assert_eq!(native_name(None, &targets), None, "unknown list: no guess");
    }

    #[test]
    fn an_alias_nobody_serves_routes_as_a_plain_model_name() {
        let real = models(&["my-llama"]);
        let targets = names(&["absent"]);
        let alias = Wanted::Alias {
            alias: "my-llama",
            targets: &targets,
        };
        // The alias name is itself a model somewhere: routed to it, unrewritten.
        let e = vec![entry("a", Ollama, 100, Status::Healthy, Some(&real))];
        let s = select(e, RouteClass::Any, alias, false).unwrap();
        assert_eq!(s.tiers, vec![vec!["a"]]);
        assert_eq!(
            s.decision,
            decision(Strategy::Strict, Action::Routed, Reason::ModelFound)
        );
        // Nobody knows either name: 404, or under optimistic any routable endpoint.
        let other = models(&["phi3"]);
        let e = || vec![entry("a", Ollama, 100, Status::Healthy, Some(&other))];
        assert_eq!(
            select(e(), RouteClass::Any, alias, false).unwrap_err(),
            SelectError::ModelNotFound {
                model: "my-llama".into()
            }
        );
        let s = select(e(), RouteClass::Any, alias, true).unwrap();
        assert_eq!(s.tiers, vec![vec!["a"]]);
        assert_eq!(
            s.decision,
            decision(
                Strategy::Optimistic,
                Action::Fallback,
                Reason::ModelNotFoundFallback
            )
        );
    }

    #[test]
    fn an_alias_served_only_by_unroutable_endpoints_is_unavailable() {
        let listed = models(&["native"]);
        let targets = names(&["native"]);
        let alias = Wanted::Alias {
            alias: "nick",
            targets: &targets,
        };
        let e = vec![entry("a", Ollama, 100, Status::Unhealthy, Some(&listed))];
        assert_eq!(
            select(e, RouteClass::Any, alias, false).unwrap_err(),
            SelectError::ModelUnavailable {
                model: "nick".into()
            }
        );
    }

    #[test]
    fn an_alias_respects_the_route_class() {
        let listed = models(&["native"]);
        let targets = names(&["native"]);
        let alias = Wanted::Alias {
            alias: "nick",
            targets: &targets,
        };
        let e = vec![
            entry("o", Ollama, 100, Status::Healthy, Some(&listed)),
            entry("v", Vllm, 100, Status::Healthy, Some(&listed)),
        ];
        let s = select(e, RouteClass::Provider(Vllm), alias, false).unwrap();
        assert_eq!(s.tiers, vec![vec!["v"]]);
    }
}
