//! The fleet's change feed (SPEC 7.3): one [`Event`] per endpoint status change, breaker move
//! and model-list change, fanned out to every subscriber of `/internal/events`.
//!
//! The endpoint actors publish into an [`EventHub`] (the supervisor hands each one a clone at
//! spawn); the HTTP layer subscribes. Publishing never waits: the hub is a
//! `tokio::sync::broadcast` channel, so each subscriber has its own window of
//! [`SUBSCRIBER_BUFFER`] events, and a subscriber that falls further behind loses the oldest
//! ones and is told so ([`Received::Lagged`]) instead of slowing the actors. What it missed
//! is then made good by a full snapshot, which the HTTP layer sends.
//!
//! The event types are plain data serialised with serde; nothing here touches a socket.

use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::display;
use crate::endpoint::Note;
use crate::health::Status;

/// Events a subscriber may fall behind by before it is told it lagged (SPEC 7.3).
pub const SUBSCRIBER_BUFFER: usize = 256;

/// One change in the fleet, as a subscriber reads it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Event {
    Status(StatusChanged),
    Breaker(BreakerChanged),
    Models(ModelsChanged),
}

/// An endpoint's status changed: `{"endpoint","from","to","reason","at"}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusChanged {
    pub endpoint: Arc<str>,
    pub from: Status,
    pub to: Status,
    /// Why it has its new status, as `/internal/status/endpoints` writes `reason`.
    pub reason: String,
    #[serde(serialize_with = "serialize_time")]
    pub at: SystemTime,
}

/// One of an endpoint's two circuit breakers moved: `{"endpoint","breaker","state","at"}`
/// (`failures` when it opened).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakerChanged {
    pub endpoint: Arc<str>,
    pub breaker: Breaker,
    /// The new state, spelled as in the status API: `closed`, `open` or `half-open`.
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failures: Option<u32>,
    #[serde(serialize_with = "serialize_time")]
    pub at: SystemTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Breaker {
    Health,
    Proxy,
}

/// An endpoint's model list changed (the first list counts): `{"endpoint","count","at"}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelsChanged {
    pub endpoint: Arc<str>,
    pub count: usize,
    #[serde(serialize_with = "serialize_time")]
    pub at: SystemTime,
}

fn serialize_time<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&display::rfc3339(*t))
}

impl Event {
    /// The SSE event name: `status`, `breaker` or `models`.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Status(_) => "status",
            Event::Breaker(_) => "breaker",
            Event::Models(_) => "models",
        }
    }

    /// The event a machine's note stands for, if a subscriber cares (log-only notes such as
    /// a failed discovery have none).
    pub fn from_note(endpoint: &Arc<str>, note: &Note, at: SystemTime) -> Option<Event> {
        let endpoint = endpoint.clone();
        let breaker = |breaker, state, failures| {
            Some(Event::Breaker(BreakerChanged {
                endpoint: endpoint.clone(),
                breaker,
                state,
                failures,
                at,
            }))
        };
        match note {
            Note::StatusChanged {
                from, to, reason, ..
            } => Some(Event::Status(StatusChanged {
                endpoint: endpoint.clone(),
                from: *from,
                to: *to,
                reason: reason.to_string(),
                at,
            })),
            Note::HealthBreakerOpened { failures, .. } => {
                breaker(Breaker::Health, "open", Some(*failures))
            }
            Note::HealthBreakerHalfOpen => breaker(Breaker::Health, "half-open", None),
            Note::HealthBreakerClosed => breaker(Breaker::Health, "closed", None),
            Note::ProxyBreakerOpened { failures, .. } => {
                breaker(Breaker::Proxy, "open", Some(*failures))
            }
            Note::ProxyBreakerHalfOpen => breaker(Breaker::Proxy, "half-open", None),
            Note::ProxyBreakerClosed => breaker(Breaker::Proxy, "closed", None),
            Note::ModelsDiscovered { count, .. } => Some(Event::Models(ModelsChanged {
                endpoint: endpoint.clone(),
                count: *count,
                at,
            })),
            Note::CheckingModelUrlInstead
            | Note::ModelListTrimmed { .. }
            | Note::DiscoveryFailed(_) => None,
        }
    }
}

/// The publishing side, cheap to clone: every endpoint actor holds one, and the HTTP layer
/// subscribes through one.
#[derive(Clone)]
pub struct EventHub {
    sender: broadcast::Sender<Arc<Event>>,
    /// Set by [`EventHub::close`]: every subscription ends, though actors still hold senders.
    closed: Arc<watch::Sender<bool>>,
}

impl Default for EventHub {
    fn default() -> Self {
        EventHub::new(SUBSCRIBER_BUFFER)
    }
}

impl EventHub {
    /// A hub whose subscribers may fall `buffer` events behind.
    pub fn new(buffer: usize) -> Self {
        EventHub {
            sender: broadcast::channel(buffer).0,
            closed: Arc::new(watch::channel(false).0),
        }
    }

    /// Ends every subscription, present and future (the server is shutting down: an open
    /// feed must not hold the drain up for its whole grace period).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Hands the event to every current subscriber; never waits, and with no subscriber
    /// costs a lock and nothing else.
    pub fn publish(&self, event: Event) {
        if self.sender.receiver_count() > 0 {
            let _ = self.sender.send(Arc::new(event));
        }
    }

    /// A new subscriber, which sees every event published from now on.
    pub fn subscribe(&self) -> Subscription {
        Subscription {
            receiver: self.sender.subscribe(),
            closed: self.closed.subscribe(),
        }
    }

    pub fn subscribers(&self) -> usize {
        self.sender.receiver_count()
    }
}

/// One subscriber's place in the feed.
pub struct Subscription {
    receiver: broadcast::Receiver<Arc<Event>>,
    closed: watch::Receiver<bool>,
}

/// What [`Subscription::next`] gives.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    Event(Arc<Event>),
    /// The subscriber fell more than its buffer behind and `missed` events are lost. The
    /// subscription has skipped to the present: what follows is newer than anything a
    /// snapshot taken now could miss.
    Lagged {
        missed: u64,
    },
    /// The hub was closed (shutdown) or is gone (the control plane stopped).
    Closed,
}

impl Subscription {
    /// The next event, waiting for one if need be. Cancel-safe.
    pub async fn next(&mut self) -> Received {
        let received = {
            let closing = std::pin::pin!(self.closed.wait_for(|closed| *closed));
            let next = std::pin::pin!(self.receiver.recv());
            match futures_util::future::select(next, closing).await {
                futures_util::future::Either::Left((received, _)) => received,
                futures_util::future::Either::Right(_) => return Received::Closed,
            }
        };
        match received {
            Ok(event) => Received::Event(event),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                // The buffer still holds events older than the snapshot the subscriber is
                // about to get; replaying them after it would undo newer news. Skip them.
                let skipped = self.receiver.len() as u64;
                self.receiver = self.receiver.resubscribe();
                Received::Lagged {
                    missed: missed + skipped,
                }
            }
            Err(broadcast::error::RecvError::Closed) => Received::Closed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::FailureReason;
    use crate::view::Reason;
    use std::time::Duration;

    fn at() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)
    }

    fn status(n: u32) -> Event {
        Event::Models(ModelsChanged {
            endpoint: format!("gpu-{n}").into(),
            count: n as usize,
            at: at(),
        })
    }

    #[test]
    fn a_status_change_reads_endpoint_from_to_reason_at() {
        let note = Note::StatusChanged {
            from: Status::Healthy,
            to: Status::Unhealthy,
            reason: Reason::Failed(FailureReason::ConnectionRefused),
            latency: None,
        };
        let event = Event::from_note(&"gpu-1".into(), &note, at()).unwrap();
        assert_eq!(event.kind(), "status");
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            serde_json::json!({"endpoint":"gpu-1","from":"healthy","to":"unhealthy",
                "reason":"connection refused","at":"2023-11-14T22:13:20.123Z"})
        );
    }

    #[test]
    fn breaker_moves_name_the_breaker_and_its_new_state() {
        let opened = Note::ProxyBreakerOpened {
            failures: 5,
            open_for: Duration::from_secs(30),
        };
        let event = Event::from_note(&"a".into(), &opened, at()).unwrap();
        assert_eq!(event.kind(), "breaker");
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            serde_json::json!({"endpoint":"a","breaker":"proxy","state":"open","failures":5,
                "at":"2023-11-14T22:13:20.123Z"})
        );
        let half = Event::from_note(&"a".into(), &Note::HealthBreakerHalfOpen, at()).unwrap();
        assert_eq!(
            serde_json::to_value(&half).unwrap(),
            serde_json::json!({"endpoint":"a","breaker":"health","state":"half-open",
                "at":"2023-11-14T22:13:20.123Z"})
        );
    }

    #[test]
    fn a_changed_model_list_reads_its_count_and_log_only_notes_are_no_event() {
        let note = Note::ModelsDiscovered {
            count: 3,
            sample: vec!["a".into()],
        };
        let event = Event::from_note(&"a".into(), &note, at()).unwrap();
        assert_eq!(event.kind(), "models");
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            serde_json::json!({"endpoint":"a","count":3,"at":"2023-11-14T22:13:20.123Z"})
        );
        assert_eq!(
            Event::from_note(&"a".into(), &Note::CheckingModelUrlInstead, at()),
            None
        );
        assert_eq!(
            Event::from_note(&"a".into(), &Note::ModelListTrimmed { dropped: 1 }, at()),
            None
        );
    }

    #[actix_rt::test]
    async fn every_subscriber_gets_every_event_in_order() {
        let hub = EventHub::default();
        let (mut a, mut b) = (hub.subscribe(), hub.subscribe());
        hub.publish(status(1));
        hub.publish(status(2));
        for sub in [&mut a, &mut b] {
            assert_eq!(sub.next().await, Received::Event(Arc::new(status(1))));
            assert_eq!(sub.next().await, Received::Event(Arc::new(status(2))));
        }
    }

    #[actix_rt::test]
    async fn a_subscriber_past_its_buffer_is_told_it_lagged_then_gets_only_newer_events() {
        let hub = EventHub::new(4);
        let mut slow = hub.subscribe();
        let mut fast = hub.subscribe();
        for n in 0..10 {
            hub.publish(status(n));
            // The fast one keeps up, whatever the slow one does.
            assert_eq!(fast.next().await, Received::Event(Arc::new(status(n))));
        }
        // Ten published, four kept: all ten are behind the present, so all are reported
        // missed, and nothing older than the lag notice follows it.
        assert_eq!(slow.next().await, Received::Lagged { missed: 10 });
        hub.publish(status(10));
        assert_eq!(slow.next().await, Received::Event(Arc::new(status(10))));
    }

    #[actix_rt::test]
    async fn publishing_never_waits_for_subscribers() {
        let hub = EventHub::default();
        let _never_reads = hub.subscribe();
        for n in 0..(SUBSCRIBER_BUFFER as u32 * 10) {
            hub.publish(status(n)); // a full buffer drops the oldest; it does not block
        }
        assert_eq!(hub.subscribers(), 1);
    }

    #[actix_rt::test]
    async fn closing_the_hub_ends_every_subscription_though_publishers_remain() {
        let hub = EventHub::default();
        let publisher = hub.clone();
        let mut before = hub.subscribe();
        hub.close();
        assert_eq!(before.next().await, Received::Closed);
        assert_eq!(hub.subscribe().next().await, Received::Closed);
        publisher.publish(status(1));
    }

    #[actix_rt::test]
    async fn a_dropped_hub_closes_its_subscriptions() {
        let hub = EventHub::default();
        let mut sub = hub.subscribe();
        drop(hub);
        assert_eq!(sub.next().await, Received::Closed);
    }
}
