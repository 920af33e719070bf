//! The fleet supervisor (SPEC 1): starts the registry and one actor per endpoint, restarts
//! any of them that dies — stopped or panicked — and adds or retires endpoints at run time.
//!
//! Deaths are reported by each actor's [`Lifeline`] (see `lifeline.rs` for why actix's own
//! `Supervisor` is not enough). A restarted endpoint actor gets the same settings and its
//! request counters back, but fresh health state: status `unknown`, checked at once. A
//! restarted registry is empty, so every endpoint actor is asked to announce itself again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_rt::time::Instant;
use tracing::{error, info, warn};

use crate::counters::EndpointCounters;
use crate::endpoint::EndpointActor;
use crate::events::EventHub;
use crate::lifeline::Lifeline;
use crate::messages::*;
use crate::probe::{HttpProber, ProberFactory};
use crate::registry::{RegistryActor, RegistryHandle};
use crate::reload;
use crate::settings::EndpointSettings;

/// An actor that dies again this soon after a restart is restarted after this delay instead
/// of at once, so that a crash loop cannot spin the control-plane thread.
const CRASH_LOOP_DELAY: Duration = Duration::from_millis(500);

struct Slot {
    settings: Arc<EndpointSettings>,
    addr: Addr<EndpointActor>,
    incarnation: u64,
    restarts: u32,
    last_start: Instant,
    counters: Arc<EndpointCounters>,
}

pub struct FleetSupervisor {
    registry: RegistryHandle,
    registry_incarnation: u64,
    registry_restarts: u32,
    slots: HashMap<Arc<str>, Slot>,
    next_incarnation: u64,
    prober: ProberFactory,
    /// Where new endpoint actors send their news (set when the registry starts).
    inbox: Option<RegistryInbox>,
    /// Where every endpoint actor publishes its changes for `/internal/events`.
    events: EventHub,
}

impl FleetSupervisor {
    /// Starts the supervisor, and through it the registry, on `arbiter` (the control-plane
    /// thread). The handle finds the registry from the moment the supervisor has started.
    pub fn start_on(arbiter: &ArbiterHandle) -> (Addr<Self>, RegistryHandle) {
        Self::start_with_prober(arbiter, HttpProber::factory())
    }

    /// As [`start_on`](Self::start_on), with endpoint actors probing through `prober`
    /// (tests script it).
    pub fn start_with_prober(
        arbiter: &ArbiterHandle,
        prober: ProberFactory,
    ) -> (Addr<Self>, RegistryHandle) {
        Self::start_with(arbiter, prober, EventHub::default())
    }

    /// As [`start_with_prober`](Self::start_with_prober), with every endpoint actor
    /// publishing its status, breaker and model-list changes on `events`; the caller keeps a
    /// clone to subscribe (`/internal/events`).
    pub fn start_with(
        arbiter: &ArbiterHandle,
        prober: ProberFactory,
        events: EventHub,
    ) -> (Addr<Self>, RegistryHandle) {
        let registry = RegistryHandle::default();
        let handle = registry.clone();
        let addr = FleetSupervisor::start_in_arbiter(arbiter, move |_| FleetSupervisor {
            registry: handle,
            registry_incarnation: 0,
            registry_restarts: 0,
            slots: HashMap::new(),
            next_incarnation: 0,
            prober,
            inbox: None,
            events,
        });
        (addr, registry)
    }

    fn start_registry(&mut self, ctx: &mut Context<Self>) -> RegistryInbox {
        self.registry_incarnation += 1;
        let lifeline = Lifeline::new(
            ctx.address().recipient(),
            RegistryDied {
                incarnation: self.registry_incarnation,
            },
        );
        // A restarted registry keeps the old routing table published until every endpoint
        // has re-announced itself.
        let awaiting = if self.registry_incarnation > 1 {
            self.slots.len()
        } else {
            0
        };
        let addr = RegistryActor::new(lifeline, self.registry.clone(), awaiting).start();
        let inbox = RegistryActor::inbox(&addr);
        self.inbox = Some(inbox.clone());
        self.registry.set(addr);
        inbox
    }

    fn spawn_endpoint(
        &mut self,
        settings: Arc<EndpointSettings>,
        restarts: u32,
        counters: Arc<EndpointCounters>,
        ctx: &mut Context<Self>,
    ) {
        self.next_incarnation += 1;
        let incarnation = self.next_incarnation;
        let lifeline = Lifeline::new(
            ctx.address().recipient(),
            EndpointDied {
                name: settings.name.clone(),
                incarnation,
            },
        );
        let Some(inbox) = self.inbox.clone() else {
            return; // not yet started: cannot happen, the registry starts in `started`
        };
        let addr = EndpointActor::new(
            settings.clone(),
            inbox,
            self.events.clone(),
            counters.clone(),
            (incarnation, restarts),
            lifeline,
            (self.prober)(),
        )
        .start();
        self.slots.insert(
            settings.name.clone(),
            Slot {
                settings,
                addr,
                incarnation,
                restarts,
                last_start: Instant::now(),
                counters,
            },
        );
    }

    fn restart_endpoint(&mut self, name: &Arc<str>, ctx: &mut Context<Self>) {
        let Some(slot) = self.slots.get(name) else {
            return;
        };
        let (settings, restarts, counters) = (
            slot.settings.clone(),
            slot.restarts + 1,
            slot.counters.clone(),
        );
        warn!(target: "corral::health", endpoint = %name, restarts, "endpoint actor died; restarted with status unknown");
        self.spawn_endpoint(settings, restarts, counters, ctx);
    }
}

impl Actor for FleetSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(65_536);
        self.start_registry(ctx);
    }
}

impl Handler<AddEndpoint> for FleetSupervisor {
    type Result = ();

    fn handle(&mut self, msg: AddEndpoint, ctx: &mut Self::Context) {
        let settings = msg.0;
        let counters = match self.slots.remove(&settings.name) {
            Some(old) => {
                old.addr.do_send(Retire);
                old.counters
            }
            None => Arc::new(EndpointCounters::default()),
        };
        self.spawn_endpoint(settings, 0, counters, ctx);
    }
}

impl Handler<ApplyEndpoints> for FleetSupervisor {
    type Result = MessageResult<ApplyEndpoints>;

    fn handle(
        &mut self,
        ApplyEndpoints(wanted): ApplyEndpoints,
        ctx: &mut Self::Context,
    ) -> Self::Result {
        let plan = reload::plan(self.slots.values().map(|s| &s.settings), &wanted);
        let names = |v: &[Arc<EndpointSettings>]| v.iter().map(|s| s.name.clone()).collect();
        let changes = FleetChanges {
            added: names(&plan.add),
            removed: plan.remove.clone(),
            replaced: names(&plan.replace),
            reconfigured: names(&plan.reconfigure),
            unchanged: plan.keep,
        };
        for name in plan.remove {
            if let Some(slot) = self.slots.remove(&name) {
                slot.addr.do_send(Retire);
            }
        }
        for settings in plan.replace {
            // A new backend under an old name starts afresh, counters included.
            if let Some(old) = self.slots.remove(&settings.name) {
                old.addr.do_send(Retire);
            }
            self.spawn_endpoint(settings, 0, Arc::new(EndpointCounters::default()), ctx);
        }
        for settings in plan.add {
            self.spawn_endpoint(settings, 0, Arc::new(EndpointCounters::default()), ctx);
        }
        for settings in plan.reconfigure {
            if let Some(slot) = self.slots.get_mut(&settings.name) {
                slot.settings = settings.clone();
                slot.addr.do_send(Reconfigure(settings));
            }
        }
        MessageResult(changes)
    }
}

impl Handler<RetireEndpoint> for FleetSupervisor {
    type Result = bool;

    fn handle(&mut self, msg: RetireEndpoint, _: &mut Self::Context) -> bool {
        match self.slots.remove(&msg.name) {
            Some(slot) => {
                slot.addr.do_send(Retire);
                true
            }
            None => false,
        }
    }
}

impl Handler<EndpointDied> for FleetSupervisor {
    type Result = ();

    fn handle(&mut self, msg: EndpointDied, ctx: &mut Self::Context) {
        let Some(slot) = self.slots.get(&msg.name) else {
            return;
        };
        if slot.incarnation != msg.incarnation {
            return; // an older incarnation, already replaced
        }
        if slot.last_start.elapsed() < CRASH_LOOP_DELAY {
            error!(target: "corral::health", endpoint = %msg.name, "endpoint actor died right after starting; restarting after a pause");
            let name = msg.name.clone();
            let incarnation = msg.incarnation;
            ctx.run_later(CRASH_LOOP_DELAY, move |act, ctx| {
                if act
                    .slots
                    .get(&name)
                    .is_some_and(|s| s.incarnation == incarnation)
                {
                    act.restart_endpoint(&name, ctx);
                }
            });
            return;
        }
        self.restart_endpoint(&msg.name, ctx);
    }
}

impl Handler<RegistryDied> for FleetSupervisor {
    type Result = ();

    fn handle(&mut self, msg: RegistryDied, ctx: &mut Self::Context) {
        if msg.incarnation != self.registry_incarnation {
            return;
        }
        self.registry_restarts += 1;
        warn!(
            restarts = self.registry_restarts,
            "registry actor died; restarted, endpoints re-announcing"
        );
        let inbox = self.start_registry(ctx);
        for slot in self.slots.values() {
            slot.addr.do_send(Announce(inbox.clone()));
        }
        info!(
            endpoints = self.slots.len(),
            "asked every endpoint to re-announce"
        );
    }
}

#[cfg(feature = "fault-injection")]
impl Handler<CrashEndpoint> for FleetSupervisor {
    type Result = bool;

    fn handle(&mut self, msg: CrashEndpoint, _: &mut Self::Context) -> bool {
        match self.slots.get(msg.name.as_str()) {
            Some(slot) => {
                warn!(endpoint = %msg.name, "fault injection: crashing endpoint actor");
                slot.addr.do_send(Crash);
                true
            }
            None => false,
        }
    }
}

#[cfg(feature = "fault-injection")]
impl Handler<CrashRegistry> for FleetSupervisor {
    type Result = ();

    fn handle(&mut self, _: CrashRegistry, _: &mut Self::Context) {
        warn!("fault injection: crashing the registry");
        if let Some(registry) = self.registry.get() {
            registry.do_send(CrashRegistry);
        }
    }
}
