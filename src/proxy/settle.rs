//! The proxy's bookkeeping, all of it (SPEC 4.2, 5.4, 6, 7.2): settling each attempt — what it tells the endpoint's actor, what it adds to the
//! endpoint's counters, the per-model statistics and the metrics' count of attempts by
//! endpoint, model and status code, and what the request does next.
//!
//! `forward` asks the candidate to admit the request before an attempt (the in-flight rule
//! lives with the `Candidate`) and calls [`Ledger::settle`] after it, for every attempt, and [`Ledger::exhausted`] when no candidate is left. Keeping the rules here means
//! every branch counts in the same order, and the actor alone decides what an outcome means
//! for the endpoint's health and breakers.

use std::time::Duration;

use awc::ClientResponse;
use corral_actors::catalog::ModelCatalog;
use corral_actors::display;
use corral_actors::outcome::{Blame, FailureReason, RequestOutcome};
use corral_actors::Candidate;
use tracing::{debug, warn};

use super::attempt::{Attempt, Origin};
use super::relay::FirstChunk;
use crate::errors::ApiError;
use crate::state::AppState;
use crate::stats;

/// What the request does after an attempt.
pub enum Next {
    /// Send this response to the client.
    Respond(ClientResponse, FirstChunk),
    /// Try the next candidate. `error` goes into the 502 body if none does better; `answer`
    /// is a `retry_on_status` response to send if no later attempt gets one.
    FailOver {
        error: String,
        answer: Option<ClientResponse>,
    },
    /// Answer the client with this error, trying no one else.
    GiveUp(ApiError),
}

/// The bookkeeping of one request.
pub struct Ledger<'a> {
    state: &'a AppState,
    catalog: &'a ModelCatalog,
    model: Option<&'a str>,
    /// The request's `model` label in the metrics: a name some endpoint lists, or one of a
    /// bounded few (`stats::model_label`).
    model_label: String,
}

impl<'a> Ledger<'a> {
    /// `catalog`: the one the request was routed with.
    pub fn new(state: &'a AppState, catalog: &'a ModelCatalog, model: Option<&'a str>) -> Self {
        let model_label = stats::model_label(catalog, model).to_string();
        Ledger {
            state,
            catalog,
            model,
            model_label,
        }
    }

    /// Books one attempt on `candidate` — its status code in the metrics, the endpoint
    /// counters, then the actor's report, then the model statistics once the request ends
    /// here — and says what happens next.
    /// `last`: no candidate is left after this one.
    pub fn settle(
        &self,
        candidate: &Candidate,
        attempt: Attempt,
        origin: &Origin,
        last: bool,
    ) -> Next {
        let code = match &attempt {
            Attempt::Answered(response, _) => Some(response.status().as_u16()),
            Attempt::RetryableStatus(_, status) => Some(*status),
            _ => None,
        };
        // An alias is counted under the name its endpoint knows the model by (SPEC 12).
        let native = candidate.native();
        let label = match native {
            Some(n) => stats::model_label(self.catalog, Some(n)),
            None => &self.model_label,
        };
        self.state
            .model_stats
            .count_attempt(&origin.endpoint, label, code);
        let (outcome, next) = self.verdict(attempt, origin, last);
        let failed = !matches!(outcome, Some(RequestOutcome::Succeeded));
        let fails_over = matches!(next, Next::FailOver { .. });
        // Only what the backend did is the endpoint's business (SPEC 11).
        if let Some(outcome) = outcome {
            if failed {
                candidate.counters.count_failure();
                if fails_over && !last {
                    candidate.counters.count_retry();
                }
            }
            candidate.report(outcome, origin.started);
        }
        // The model statistics count requests, not attempts: one that fails over is
        // counted where it ends.
        if !fails_over {
            self.record(native, origin.elapsed, failed);
        }
        next
    }

    /// Every candidate was tried and none answered well enough: the request failed. `native`:
    /// the last candidate's name for an alias.
    pub fn exhausted(&self, native: Option<&str>) {
        self.record(native, Duration::ZERO, true);
    }

    /// What the attempt means for the endpoint (`None`: nothing, it was not the backend's
    /// doing) and what the request does next.
    fn verdict(
        &self,
        attempt: Attempt,
        origin: &Origin,
        last: bool,
    ) -> (Option<RequestOutcome>, Next) {
        let endpoint = &origin.endpoint;
        match attempt {
            // ## Answered => Respond
            Attempt::Answered(response, first) => (
                Some(RequestOutcome::Succeeded),
                Next::Respond(response, first),
            ),
            // ## RetryableStatus => FailOver with the answer kept | Respond when none is left
            Attempt::RetryableStatus(response, status) => {
                let outcome = Some(RequestOutcome::Failed(FailureReason::Http(status)));
                if last {
                    return (outcome, Next::Respond(response, FirstChunk::NotRead));
                }
                let error = format!("http {status}");
                let answer = Some(response);
                (outcome, Next::FailOver { error, answer })
            }
            // ## ConnectFailed => FailOver: no response head came, so nothing reached the
            // client and the request can be replayed (SPEC 5.4, 9.5)
            Attempt::ConnectFailed(reason) => {
                debug!(%endpoint, %reason, "connection failed; trying the next endpoint");
                let error = reason.to_string();
                let next = Next::FailOver {
                    error,
                    answer: None,
                };
                (Some(RequestOutcome::ConnectFailed(reason)), next)
            }
            // ## Unsendable => GiveUp, telling nobody: the backend did nothing wrong (SPEC 11)
            Attempt::Unsendable { blame, reason } => {
                debug!(%endpoint, %reason, ?blame, "request could not be sent upstream");
                let error = reason.to_string();
                let next = Next::GiveUp(match blame {
                    Blame::Client => ApiError::Unforwardable { error },
                    Blame::Backend | Blame::Corral => ApiError::Internal { error },
                });
                (None, next)
            }
            // ## HeaderTimeout => GiveUp: the backend may still be working on it (SPEC 5.4)
            Attempt::HeaderTimeout => {
                let timeout = display::duration(self.state.proxy.response_header_timeout);
                warn!(%endpoint, %timeout, "no response headers in time");
                let endpoint = endpoint.to_string();
                let next = Next::GiveUp(ApiError::UpstreamTimeout { endpoint });
                (Some(RequestOutcome::Failed(FailureReason::Timeout)), next)
            }
        }
    }

    fn record(&self, native: Option<&str>, latency: Duration, failed: bool) {
        if let Some(model) = native.or(self.model) {
            self.state.model_stats.record(model, latency, failed);
        }
    }
}
