//! Admission control's wait queue (SPEC 10.3): a request whose eligible endpoints are all at
//! their `max_concurrency` waits here, first come first served, until a slot frees for it,
//! its `max_wait` runs out (503 `queue_timeout`), its client leaves, or every endpoint it
//! could use leaves rotation (503 as in 5.3). A full queue answers 429 `queue_full` at once.
//!
//! The rules live in the pure [`WaitList`]; this file adds the lock, the hand-over channel
//! and the two wake-ups: a freed slot ([`Admitted`] dropped) and a new routing table.
//!
//! A slot is handed over, not announced: the waker admits the waiter on its behalf, under
//! the queue's lock, and sends it the in-flight guard. So a request that arrives later can
//! never take the slot a waiter was woken for, and no request is admitted past a limit (the
//! admission itself is the endpoint counters' atomic `try_begin`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use corral_actors::counters::InFlight;
use corral_actors::routing::RoutingTable;
use corral_actors::select::RouteClass;
use corral_actors::waitlist::{Full, Left, Ticket, Verdict, WaitList};
use corral_actors::Candidate;
use serde::Serialize;
use tokio::sync::oneshot;

use super::candidates::{self, WantedModel};
use crate::config::ProxyConfig;
use crate::errors::ApiError;

/// Upper bounds (seconds) of the admitted requests' wait histogram.
pub const WAIT_BUCKETS: [f64; 10] = [0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// A request admitted to an endpoint: its in-flight count, and the queue to wake when it
/// ends. Lives as long as the upstream part of the request does.
#[derive(Debug)]
pub struct Admitted {
    in_flight: Option<InFlight>,
    queue: Arc<WaitQueue>,
}

impl Admitted {
    /// Body bytes of this request's response arrived at `at`.
    pub fn note_progress(&self, at: Instant) {
        if let Some(f) = &self.in_flight {
            f.note_progress(at);
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        // The count first, then the wake-up, so the waiter woken finds the slot free.
        drop(self.in_flight.take());
        self.queue.slot_freed();
    }
}

/// What a waiter gets when it leaves the queue.
enum Handed {
    Slot(Candidate, InFlight),
    Failed(ApiError),
}

struct Waiter {
    route: RouteClass,
    wanted: WantedModel,
    /// The eligible endpoints, by priority tier, as the latest routing table has them.
    tiers: Vec<Vec<Candidate>>,
    reply: Option<oneshot::Sender<Handed>>,
}

/// The queue's counters, for `/internal/status` and the metrics.
#[derive(Debug, Default)]
struct Tally {
    admitted: AtomicU64,
    /// Admitted requests by wait, per [`WAIT_BUCKETS`] bucket (not cumulative) and beyond.
    wait_buckets: [AtomicU64; WAIT_BUCKETS.len() + 1],
    wait_sum_micros: AtomicU64,
    rejected_full: AtomicU64,
    timed_out: AtomicU64,
    client_gone: AtomicU64,
    /// Left because every endpoint it could use left rotation.
    failed: AtomicU64,
}

/// The queue as `/internal/status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct QueueView {
    pub size: usize,
    pub max_wait: String,
    pub waiting: usize,
    pub admitted: u64,
    pub rejected_full: u64,
    pub timed_out: u64,
    pub client_gone: u64,
    pub failed: u64,
    /// Cumulative counts of admitted requests that waited at most each bound, for metrics.
    #[serde(skip)]
    pub wait_buckets: Vec<(f64, u64)>,
    #[serde(skip)]
    pub wait_sum: Duration,
}

pub struct WaitQueue {
    list: Mutex<WaitList<Waiter>>,
    /// Waiters plus requests about to decide whether to wait: read without the lock when a
    /// slot frees, so that an empty queue costs a freed slot one atomic load.
    waiting: AtomicUsize,
    proxy: ProxyConfig,
    tally: Tally,
}

impl std::fmt::Debug for WaitQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitQueue")
            .field("waiting", &self.waiting.load(Ordering::Relaxed))
            .finish()
    }
}

impl WaitQueue {
    pub fn new(proxy: &ProxyConfig) -> Arc<WaitQueue> {
        Arc::new(WaitQueue {
            list: Mutex::new(WaitList::new(proxy.queue.size, proxy.queue.max_wait)),
            waiting: AtomicUsize::new(0),
            proxy: proxy.clone(),
            tally: Tally::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WaitList<Waiter>> {
        self.list.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `in_flight` on `candidate`, with this queue to wake when it ends.
    pub fn admitted(self: &Arc<Self>, in_flight: InFlight) -> Admitted {
        Admitted {
            in_flight: Some(in_flight),
            queue: self.clone(),
        }
    }

    /// Waits for a slot at one of `tiers` (all at their limit when the caller looked).
    /// Dropping the future (the client went away) leaves the queue at once, taking no slot.
    pub async fn wait(
        self: &Arc<Self>,
        route: RouteClass,
        wanted: &WantedModel,
        tiers: Vec<Vec<Candidate>>,
    ) -> Result<(Candidate, Admitted), ApiError> {
        let joined = Instant::now();
        let (reply, answer) = oneshot::channel();
        let (ticket, deadline) = {
            let mut list = self.lock();
            // Counted before the last look: a slot freed from here on sees a waiter and
            // takes the lock, which this request holds until it is in line.
            self.waiting.fetch_add(1, Ordering::SeqCst);
            if let Some((candidate, in_flight)) = self.admit_one(&tiers, wanted.name()) {
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                return Ok((candidate, self.admitted(in_flight)));
            }
            let waiter = Waiter {
                route,
                wanted: wanted.clone(),
                tiers,
                reply: Some(reply),
            };
            match list.join(waiter, joined) {
                Ok(place) => place,
                Err(Full) => {
                    self.waiting.fetch_sub(1, Ordering::SeqCst);
                    self.tally.rejected_full.fetch_add(1, Ordering::Relaxed);
                    return Err(ApiError::QueueFull {
                        waiting: list.len(),
                    });
                }
            }
        };
        let mut place = Place {
            queue: self,
            ticket,
            answer,
            done: false,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let handed = match actix_rt::time::timeout(left, &mut place.answer).await {
            Ok(handed) => handed.ok(),
            Err(_) => {
                // Out of line first; then whatever was handed over meanwhile still counts.
                place.leave();
                place.answer.try_recv().ok()
            }
        };
        // Out of the queue now, whatever happened: nothing to leave on drop.
        place.done = true;
        drop(place);
        match handed {
            Some(Handed::Slot(candidate, in_flight)) => {
                self.note_admitted(joined.elapsed());
                Ok((candidate, self.admitted(in_flight)))
            }
            Some(Handed::Failed(e)) => Err(e),
            None => {
                self.tally.timed_out.fetch_add(1, Ordering::Relaxed);
                Err(ApiError::QueueTimeout {
                    waited: joined.elapsed(),
                })
            }
        }
    }

    /// The first candidate, in the balancer's order, that admits a request now.
    fn admit_one(
        &self,
        tiers: &[Vec<Candidate>],
        model: Option<&str>,
    ) -> Option<(Candidate, InFlight)> {
        candidates::Order::new(tiers, &self.proxy, model, Instant::now(), None).admit_next(tiers)
    }

    /// A slot may have freed: offer it to the waiters in arrival order.
    pub fn slot_freed(&self) {
        if self.waiting.load(Ordering::SeqCst) == 0 {
            return;
        }
        self.offer(
            |queue, w| match queue.admit_one(&w.tiers, w.wanted.name()) {
                Some((c, f)) => Verdict::Leave(Handed::Slot(c, f)),
                None => Verdict::Wait,
            },
        );
    }

    /// A new routing table: each waiter's endpoints are chosen again (an endpoint may have
    /// left rotation, joined, or changed its limit), and a waiter with none left that it may
    /// wait for fails at once.
    pub fn table_changed(&self, table: &RoutingTable) {
        if self.waiting.load(Ordering::SeqCst) == 0 {
            return;
        }
        self.offer(|queue, w| {
            let tiers = match candidates::select(table, &queue.proxy, w.route, &w.wanted) {
                Ok(routed) => routed.tiers,
                Err(e) => return Verdict::Leave(Handed::Failed(e)),
            };
            if !tiers.iter().flatten().any(Candidate::may_queue) {
                return Verdict::Leave(Handed::Failed(ApiError::NoHealthyEndpoints {
                    route: w.route.to_string(),
                }));
            }
            w.tiers = tiers;
            match queue.admit_one(&w.tiers, w.wanted.name()) {
                Some((c, f)) => Verdict::Leave(Handed::Slot(c, f)),
                None => Verdict::Wait,
            }
        });
    }

    /// Runs one offer round under the lock and hands over what it decided. A slot whose
    /// waiter vanished meanwhile is freed after the lock is released, and offered again.
    fn offer(&self, mut decide: impl FnMut(&Self, &mut Waiter) -> Verdict<Handed>) {
        loop {
            let mut undelivered = Vec::new();
            {
                let mut list = self.lock();
                let left = list.offer(Instant::now(), |w| decide(self, w));
                for (_, mut waiter, how) in left {
                    self.waiting.fetch_sub(1, Ordering::SeqCst);
                    let Some(reply) = waiter.reply.take() else {
                        continue;
                    };
                    match how {
                        Left::Served(handed) => {
                            if let Handed::Failed(_) = handed {
                                self.tally.failed.fetch_add(1, Ordering::Relaxed);
                            }
                            if let Err(Handed::Slot(_, in_flight)) = reply.send(handed) {
                                undelivered.push(in_flight);
                            }
                        }
                        // Its own timer answers it (and counts it).
                        Left::TimedOut => drop(reply),
                    }
                }
            }
            if undelivered.is_empty() {
                return;
            }
            drop(undelivered);
        }
    }

    fn note_admitted(&self, waited: Duration) {
        let t = &self.tally;
        t.admitted.fetch_add(1, Ordering::Relaxed);
        let secs = waited.as_secs_f64();
        let bucket = WAIT_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(WAIT_BUCKETS.len());
        t.wait_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
        t.wait_sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub fn view(&self) -> QueueView {
        let t = &self.tally;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut cumulative = 0;
        let wait_buckets = WAIT_BUCKETS
            .iter()
            .zip(&t.wait_buckets)
            .map(|(&bound, n)| {
                cumulative += get(n);
                (bound, cumulative)
            })
            .collect();
        QueueView {
            size: self.proxy.queue.size,
            max_wait: corral_actors::display::duration(self.proxy.queue.max_wait),
            waiting: self.lock().len(),
            admitted: get(&t.admitted),
            rejected_full: get(&t.rejected_full),
            timed_out: get(&t.timed_out),
            client_gone: get(&t.client_gone),
            failed: get(&t.failed),
            wait_buckets,
            wait_sum: Duration::from_micros(get(&t.wait_sum_micros)),
        }
    }
}

/// A waiter's place in line while its request waits: dropped early (the client went away),
/// it leaves the line, and a slot handed over in the same moment is freed again.
struct Place<'a> {
    queue: &'a Arc<WaitQueue>,
    ticket: Ticket,
    answer: oneshot::Receiver<Handed>,
    /// The wait is over (served, failed or timed out): nothing to undo.
    done: bool,
}

impl Place<'_> {
    fn leave(&mut self) {
        if self.queue.lock().leave(self.ticket).is_some() {
            self.queue.waiting.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.leave();
        self.queue.tally.client_gone.fetch_add(1, Ordering::Relaxed);
        if let Ok(Handed::Slot(_, in_flight)) = self.answer.try_recv() {
            drop(in_flight);
            self.queue.slot_freed();
        }
    }
}
