//! Shared support for the actor tests: a scripted [`Prober`] that answers checks from a
//! script (then passes) and records when each check and discovery happened, so tests under
//! paused time can assert exact schedules without a socket.

use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_rt::time::Instant;
use corral_actors::outcome::{CheckReport, FailureReason, ProbeOutcome};
use corral_actors::probe::{CheckTarget, Prober, ProberFactory};
use corral_actors::profiles::ModelInfo;
use corral_actors::settings::EndpointSettings;
use futures_util::future::{ready, LocalBoxFuture};

#[derive(Default)]
pub struct ScriptState {
    /// Outcomes of the next checks, in order; once empty, every check passes.
    outcomes: VecDeque<ProbeOutcome>,
    checks: Vec<Instant>,
    discoveries: Vec<Instant>,
}

#[derive(Clone, Default)]
pub struct Script(Arc<Mutex<ScriptState>>);

impl Script {
    pub fn then(&self, outcomes: impl IntoIterator<Item = ProbeOutcome>) -> &Self {
        self.0.lock().unwrap().outcomes.extend(outcomes);
        self
    }

    /// Waits between consecutive checks, in whole seconds.
    pub fn gaps(&self) -> Vec<u64> {
        let s = self.0.lock().unwrap();
        s.checks
            .windows(2)
            .map(|w| (w[1] - w[0]).as_secs())
            .collect()
    }

    pub fn checks(&self) -> Vec<Instant> {
        self.0.lock().unwrap().checks.clone()
    }

    pub fn discoveries(&self) -> Vec<Instant> {
        self.0.lock().unwrap().discoveries.clone()
    }

    pub fn factory(&self) -> ProberFactory {
        let script = self.clone();
        Arc::new(move || Rc::new(Scripted(script.clone())) as Rc<dyn Prober>)
    }
}

struct Scripted(Script);

impl Prober for Scripted {
    fn check(&self, _: CheckTarget) -> LocalBoxFuture<'static, CheckReport> {
        let mut s = self.0 .0.lock().unwrap();
        s.checks.push(Instant::now());
        let outcome = s.outcomes.pop_front().unwrap_or_else(pass);
        Box::pin(ready(CheckReport::new(outcome)))
    }

    fn discover(
        &self,
        _: Arc<EndpointSettings>,
    ) -> LocalBoxFuture<'static, Result<Vec<ModelInfo>, FailureReason>> {
        let mut s = self.0 .0.lock().unwrap();
        s.discoveries.push(Instant::now());
        let n = s.discoveries.len();
        Box::pin(ready(Ok(vec![ModelInfo::named(format!("model-{n}"))])))
    }
}

pub fn pass() -> ProbeOutcome {
    ProbeOutcome::Passed {
        latency: Duration::from_millis(1),
    }
}

pub fn fail() -> ProbeOutcome {
    ProbeOutcome::Failed {
        reason: FailureReason::Http(503),
        latency: Duration::from_millis(1),
        retry_after: None,
    }
}

pub fn rate_limited(retry_after: Option<Duration>) -> ProbeOutcome {
    ProbeOutcome::Failed {
        reason: FailureReason::RateLimited,
        latency: Duration::from_millis(1),
        retry_after,
    }
}
