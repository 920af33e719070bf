//! The endpoint actor (SPEC 1): the thin shell around one endpoint's [`EndpointMachine`].
//!
//! It reads the clock, feeds the machine probe reports, request outcomes and timers, and
//! carries out the [`Effects`] it returns: probes and discovery through the [`Prober`],
//! timers with `run_later`, news to the registry, and log lines. Every rule about what an
//! event means lives in the machine. It runs under the fleet supervisor, which restarts it
//! (fresh machine, same settings) if it stops or panics.

use std::hash::BuildHasher;
use std::rc::Rc;
use std::sync::Arc;
use std::time::SystemTime;

use actix::prelude::*;
use actix_rt::time::Instant;
use tracing::{debug, info};

use super::machine::{Effects, EndpointMachine};
use super::notes;
use crate::counters::EndpointCounters;
use crate::events::{Event, EventHub};
use crate::lifeline::Lifeline;
use crate::load::LoadSource;
use crate::load_reads::{LoadReads, LoadStep};
use crate::messages::*;
use crate::probe::{CheckTarget, Prober};
use crate::settings::EndpointSettings;

pub struct EndpointActor {
    settings: Arc<EndpointSettings>,
    machine: EndpointMachine,
    registry: RegistryInbox,
    /// Where status, breaker and model-list changes go for `/internal/events`.
    events: EventHub,
    counters: Arc<EndpointCounters>,
    incarnation: u64,
    lifeline: Lifeline,
    prober: Rc<dyn Prober>,
    outcomes: Option<Recipient<ReportOutcome>>,
    /// The probe under way, cancelled when the machine reschedules the check.
    probe: Option<SpawnHandle>,
    /// Which load source to read next (SPEC 10.1).
    load_reads: LoadReads,
    /// Tells the current chain of load reads from one a reconfiguration ended.
    load_generation: u64,
    /// Whether the endpoint was routable at the last load tick (a recovery gives dropped
    /// sources another chance).
    was_routable: bool,
}

impl EndpointActor {
    /// `incarnation` tells the registry this actor from an earlier one of the same endpoint;
    /// `restarts` is how many times the supervisor has restarted it.
    pub fn new(
        settings: Arc<EndpointSettings>,
        registry: RegistryInbox,
        events: EventHub,
        counters: Arc<EndpointCounters>,
        (incarnation, restarts): (u64, u32),
        lifeline: Lifeline,
        prober: Rc<dyn Prober>,
    ) -> Self {
        let seed = std::collections::hash_map::RandomState::new().hash_one(&*settings.name);
        let kind = settings.kind;
        EndpointActor {
            machine: EndpointMachine::new(settings.clone(), restarts, seed),
            settings,
            registry,
            events,
            counters,
            incarnation,
            lifeline,
            prober,
            outcomes: None,
            probe: None,
            load_reads: LoadReads::new(kind),
            load_generation: 0,
            was_routable: false,
        }
    }

    fn name(&self) -> &str {
        &self.settings.name
    }

    /// Carries out what the machine decided.
    fn apply(&mut self, fx: Effects, ctx: &mut Context<Self>) {
        for note in &fx.notes {
            notes::log(&self.settings, note);
            if let Some(event) = Event::from_note(&self.settings.name, note, SystemTime::now()) {
                self.events.publish(event);
            }
        }
        if fx.cancel_probe {
            if let Some(handle) = self.probe.take() {
                ctx.cancel_future(handle);
            }
        }
        if let Some(timer) = fx.check_after {
            ctx.run_later(timer.wait, move |act, ctx| {
                let fx = act.machine.on_check_due(timer.generation, Instant::now());
                act.apply(fx, ctx);
            });
        }
        if let Some(wait) = fx.proxy_breaker_after {
            ctx.run_later(wait, |act, ctx| {
                let fx = act.machine.on_proxy_breaker_due(Instant::now());
                act.apply(fx, ctx);
            });
        }
        if let Some(probe) = fx.probe {
            let check = self.prober.check(self.check_target(probe.use_model_url));
            let sent = Instant::now();
            let handle = ctx.spawn(check.into_actor(self).map(move |mut report, act, ctx| {
                act.probe = None;
                // Busy is not dead (SPEC 9.1): the machine must know whether the endpoint
                // was sending proxied bytes while this check waited, which only we can see.
                if report.timed_out() && act.counters.progressed_since(sent.into_std()) {
                    report.busy_serving = Some(act.counters.in_flight());
                }
                let fx = act
                    .machine
                    .on_check(probe.generation, report, Instant::now());
                act.apply(fx, ctx);
            }));
            self.probe = Some(handle);
        }
        if fx.discover {
            let discover = self.prober.discover(self.settings.clone());
            ctx.spawn(discover.into_actor(self).map(|result, act, ctx| {
                let fx = act.machine.on_discovered(result, Instant::now());
                act.apply(fx, ctx);
            }));
        }
        if let Some(models) = fx.models {
            self.registry.models.do_send(ModelsDiscovered {
                name: self.settings.name.clone(),
                models,
            });
        }
        if fx.publish {
            self.publish();
        }
    }

    /// One load tick (SPEC 10.1): read the next source if the endpoint is routable, then
    /// schedule the next tick `load_interval` after this read ends, so reads never overlap.
    /// A reconfiguration starts a new chain; the old one ends at its next tick.
    fn load_tick(&mut self, generation: u64, ctx: &mut Context<Self>) {
        let interval = self.settings.load_interval;
        if generation != self.load_generation || interval.is_zero() {
            return;
        }
        let routable = self.machine.status().is_routable();
        if routable && !self.was_routable {
            self.load_reads.on_recovery();
        }
        self.was_routable = routable;
        let source = match self.load_reads.next() {
            Some(source) if routable => source,
            _ => {
                ctx.run_later(interval, move |act, ctx| act.load_tick(generation, ctx));
                return;
            }
        };
        let read = self.prober.load(self.settings.clone(), source);
        ctx.spawn(read.into_actor(self).map(move |read, act, ctx| {
            if generation != act.load_generation {
                return;
            }
            match act.load_reads.on_read(source, read) {
                LoadStep::Post(report) => {
                    if act.counters.load.record(report, std::time::Instant::now()) {
                        // Admission under `max_concurrency: auto` follows the slot count:
                        // a new table wakes the requests waiting for a slot.
                        act.publish_update(true);
                    }
                }
                LoadStep::Nothing => {}
                LoadStep::Dropped {
                    source,
                    why,
                    none_left,
                } => {
                    let next = act.load_reads.next().map(LoadSource::name);
                    info!(endpoint = %act.name(), source = source.name(), %why, next = next.unwrap_or("none"), "load source dropped until the endpoint recovers or is reloaded");
                    if none_left {
                        act.counters.load.forget();
                    }
                }
            }
            ctx.run_later(interval, move |act, ctx| act.load_tick(generation, ctx));
        }));
    }

    fn check_target(&self, use_model_url: bool) -> CheckTarget {
        let s = &self.settings;
        let can_fall_back =
            s.health_url_is_default && !use_model_url && s.model_url != s.health_url;
        CheckTarget {
            url: if use_model_url {
                s.model_url.clone()
            } else {
                s.health_url.clone()
            },
            fallback_url: can_fall_back.then(|| s.model_url.clone()),
            headers: s.headers.clone(),
            timeout: s.check_timeout,
            require_models: s.require_models.then(|| (s.model_url.clone(), s.kind)),
        }
    }

    fn publish(&self) {
        self.publish_update(false);
    }

    fn publish_update(&self, limit_changed: bool) {
        let Some(outcomes) = self.outcomes.clone() else {
            return;
        };
        self.registry.updates.do_send(EndpointUpdated {
            view: self.machine.view(Instant::now(), SystemTime::now()),
            incarnation: self.incarnation,
            outcomes,
            settings: self.settings.clone(),
            counters: self.counters.clone(),
            limit_changed,
        });
    }
}

impl Actor for EndpointActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.outcomes = Some(ctx.address().recipient());
        if self.machine.restarts() > 0 {
            info!(endpoint = %self.name(), restarts = self.machine.restarts(), "endpoint actor restarted; checking at once");
        }
        let fx = self.machine.start(Instant::now());
        self.apply(fx, ctx);
        self.load_tick(self.load_generation, ctx);
        if !self.settings.health_checks {
            ctx.run_interval(self.settings.check_interval, |act, ctx| {
                let fx = act.machine.on_discovery_due(Instant::now());
                act.apply(fx, ctx);
            });
        }
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        debug!(endpoint = %self.name(), "endpoint actor stopped");
    }
}

impl Handler<ReportOutcome> for EndpointActor {
    type Result = ();

    fn handle(&mut self, msg: ReportOutcome, ctx: &mut Self::Context) {
        let fx = self
            .machine
            .on_outcome(msg.outcome, msg.started, Instant::now());
        self.apply(fx, ctx);
    }
}

impl Handler<Announce> for EndpointActor {
    type Result = ();

    fn handle(&mut self, Announce(registry): Announce, _: &mut Self::Context) {
        self.registry = registry;
        self.publish();
        if let Some(models) = self.machine.models() {
            self.registry.models.do_send(ModelsDiscovered {
                name: self.settings.name.clone(),
                models: models.clone(),
            });
        }
    }
}

impl Handler<Reconfigure> for EndpointActor {
    type Result = ();

    fn handle(&mut self, Reconfigure(settings): Reconfigure, ctx: &mut Self::Context) {
        info!(endpoint = %self.name(), "endpoint reconfigured; its state is kept");
        self.settings = settings.clone();
        let fx = self.machine.reconfigure(settings, Instant::now());
        self.apply(fx, ctx);
        // Load reads start over: sources, report and slot count may all have changed.
        self.load_reads = LoadReads::new(self.settings.kind);
        self.counters.load.forget();
        self.load_generation += 1;
        self.load_tick(self.load_generation, ctx);
    }
}

impl Handler<Retire> for EndpointActor {
    type Result = ();

    fn handle(&mut self, _: Retire, ctx: &mut Self::Context) {
        info!(endpoint = %self.name(), "endpoint retired");
        // Sent from here, after every update this actor sent, so the registry cannot see
        // an update of a retired endpoint after its retirement.
        self.registry.retired.do_send(EndpointRetired {
            name: self.settings.name.clone(),
            incarnation: self.incarnation,
        });
        self.lifeline.disarm();
        ctx.stop();
    }
}

#[cfg(feature = "fault-injection")]
impl Handler<Crash> for EndpointActor {
    type Result = ();

    fn handle(&mut self, _: Crash, _: &mut Self::Context) {
        panic!(
            "fault injection: crash requested for endpoint {}",
            self.name()
        );
    }
}
