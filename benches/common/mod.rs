//! A routing table of N endpoints for measuring picking (issue 10): the picking benchmark
//! (`benches/picking.rs`) and the allocation test (`tests/picking_alloc.rs`) share it, so
//! both look at the same fleet.
//!
//! One priority tier, every endpoint healthy and listing the requested model among four.
//! With `signals`, every endpoint has a fresh load report (running, waiting, slots), and half
//! of them also say which three models they have loaded: the requested one on every other of
//! those, so residency is checked and matters. Without, load reads are off and nothing was
//! ever recorded: the order is Corral's own in-flight order, as before load signals existed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, Context, Handler, Recipient};
use corral::config::ModelAliases;
use corral::proxy::candidates::WantedModel;
use corral_actors::catalog::ModelCatalog;
use corral_actors::counters::EndpointCounters;
use corral_actors::health::Status;
use corral_actors::load::LoadReport;
use corral_actors::messages::ReportOutcome;
use corral_actors::profiles::{EndpointType, ModelInfo};
use corral_actors::routing::{RouteEntry, RoutingTable};
use corral_actors::settings::EndpointSettings;
use corral_actors::Candidate;

/// The model every request names.
pub const MODEL: &str = "qwen2.5:7b";

/// What every request asks for: [`MODEL`], no aliases configured.
pub fn wanted() -> WantedModel {
    WantedModel::new(Some(MODEL.to_string()), &ModelAliases::default())
}

const LISTED: [&str; 4] = ["llama3:8b", "qwen2.5:7b", "phi3:mini", "mistral:7b"];

/// Long enough that a report recorded when the fleet is built stays fresh (three intervals)
/// through a whole benchmark run.
const LOAD_INTERVAL: Duration = Duration::from_secs(60);

/// Takes the outcomes nobody reports here: a `Candidate` needs somewhere to send them.
struct Sink;

impl Actor for Sink {
    type Context = Context<Self>;
}

impl Handler<ReportOutcome> for Sink {
    type Result = ();

    fn handle(&mut self, _: ReportOutcome, _: &mut Context<Self>) {}
}

/// A recipient for the candidates' outcomes. The system stops when this returns; nothing in
/// picking sends to it.
pub fn outcomes() -> Recipient<ReportOutcome> {
    actix::System::new().block_on(async { Sink.start().recipient() })
}

/// A table of `n` endpoints, with fresh load reports as of `now` when `signals` is set.
pub fn fleet(
    n: usize,
    signals: bool,
    outcomes: &Recipient<ReportOutcome>,
    now: Instant,
) -> RoutingTable {
    let listed: Arc<Vec<ModelInfo>> =
        Arc::new(LISTED.iter().map(|&m| ModelInfo::named(m)).collect());
    let entries = (0..n)
        .map(|i| {
            let resident_list = signals && i % 2 == 0;
            let kind = if resident_list {
                EndpointType::Ollama
            } else {
                EndpointType::LlamaCpp
            };
            let mut settings =
                EndpointSettings::new(&format!("ep-{i}"), &format!("http://10.0.0.{i}:8080"), kind);
            settings.load_interval = if signals {
                LOAD_INTERVAL
            } else {
                Duration::ZERO
            };
            let counters = Arc::new(EndpointCounters::new(now));
            if signals {
                let loaded = if i % 4 == 0 {
                    ["llama3:8b", MODEL, "phi3:mini"]
                } else {
                    ["llama3:8b", "phi3:mini", "mistral:7b"]
                };
                counters.load.record(
                    LoadReport {
                        running: Some(i as u64 % 3),
                        waiting: Some(i as u64 % 2),
                        capacity: Some(4),
                        loaded_models: resident_list
                            .then(|| loaded.iter().map(|m| m.to_string()).collect()),
                        ..LoadReport::default()
                    },
                    now,
                );
            }
            RouteEntry {
                candidate: Candidate::new(
                    Arc::new(settings),
                    Status::Healthy,
                    counters,
                    outcomes.clone(),
                ),
                models: Some(listed.clone()),
            }
        })
        .collect();
    // `select` reads the entries only; the catalog labels listings and metrics.
    RoutingTable::new(entries, ModelCatalog::default())
}

/// Whether every endpoint's load report reads as fresh at `now` (so the signals are really
/// in play where they should be).
pub fn all_fresh(table: &RoutingTable, now: Instant) -> bool {
    table.entries().iter().all(|e| {
        let c = &e.candidate;
        c.counters
            .load
            .signals(None, now, c.settings.load_max_age())
            .busy
            .is_some()
    })
}
