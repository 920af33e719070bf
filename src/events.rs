//! `GET /internal/events` (SPEC 7.3): the fleet's changes as Server-Sent Events.
//!
//! Each request subscribes to the control plane's [`EventHub`] and gets one SSE event per
//! change (`event: status`, `breaker` or `models`, the data one JSON object), a `: keep-alive`
//! comment every [`KEEP_ALIVE`] so that proxies keep the connection open, and, when it has
//! read too slowly and lost events, `event: lagged` followed by one `event: snapshot` with
//! every endpoint's status (the objects of `/internal/status/endpoints`). A slow reader only
//! ever falls behind in its own buffer: the actors publish without waiting for anyone.
//! It is an `/internal/*` route, so the `internal_token` guard covers it.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use actix_web::web::{self, Bytes};
use actix_web::HttpResponse;
use corral_actors::events::{Received, Subscription};
use futures_util::future::{select, Either};
use futures_util::Stream;
use serde_json::json;

use crate::state::AppState;

/// How often a comment line goes out when nothing else does (SPEC 7.3).
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/internal/events", web::get().to(events));
}

async fn events(state: web::Data<AppState>) -> HttpResponse {
    let subscription = state.events.subscribe();
    let snapshot = move || {
        let state = state.clone();
        async move {
            let fleet = state.fleet().await.ok()?;
            Some(json!({ "endpoints": fleet.endpoints }))
        }
    };
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        // nginx buffers responses unless told not to; an event feed must not wait.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(sse(subscription, KEEP_ALIVE, snapshot))
}

/// One SSE frame: `event: NAME` and one `data:` line (JSON has no raw newlines).
fn frame(event: &str, data: &str) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

struct Feed<F> {
    subscription: Subscription,
    keep_alive: Duration,
    tick: std::pin::Pin<Box<actix_rt::time::Sleep>>,
    pending: VecDeque<Bytes>,
    snapshot: F,
}

/// The body of one subscriber's response. `snapshot` gives `{"endpoints":[…]}` after a lag
/// (`None`: the registry did not answer; the subscriber then gets the lag notice alone).
pub fn sse<F, Fut>(
    subscription: Subscription,
    keep_alive: Duration,
    snapshot: F,
) -> impl Stream<Item = Result<Bytes, Infallible>>
where
    F: Fn() -> Fut + 'static,
    Fut: Future<Output = Option<serde_json::Value>>,
{
    let feed = Feed {
        subscription,
        keep_alive,
        tick: Box::pin(actix_rt::time::sleep(keep_alive)),
        pending: VecDeque::new(),
        snapshot,
    };
    futures_util::stream::unfold(feed, |mut feed| async move {
        loop {
            if let Some(bytes) = feed.pending.pop_front() {
                return Some((Ok(bytes), feed));
            }
            let next = std::pin::pin!(feed.subscription.next());
            match select(next, feed.tick.as_mut()).await {
                Either::Left((Received::Event(event), _)) => {
                    let data = serde_json::to_string(&*event).unwrap_or_default();
                    feed.pending.push_back(frame(event.kind(), &data));
                }
                Either::Left((Received::Lagged { missed }, _)) => {
                    let lagged = json!({ "missed": missed }).to_string();
                    feed.pending.push_back(frame("lagged", &lagged));
                    if let Some(snapshot) = (feed.snapshot)().await {
                        feed.pending
                            .push_back(frame("snapshot", &snapshot.to_string()));
                    }
                }
                Either::Left((Received::Closed, _)) => return None,
                Either::Right(((), _)) => {
                    let next = actix_rt::time::Instant::now() + feed.keep_alive;
                    feed.tick.as_mut().reset(next);
                    feed.pending
                        .push_back(Bytes::from_static(b": keep-alive\n\n"));
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::SystemTime;

    use corral_actors::events::{Event, ModelsChanged};
    use corral_actors::EventHub;
    use futures_util::StreamExt;

    use super::*;

    fn models(n: usize) -> Event {
        Event::Models(ModelsChanged {
            endpoint: Arc::from("gpu-1"),
            count: n,
            at: SystemTime::UNIX_EPOCH,
        })
    }

    async fn fake_snapshot() -> Option<serde_json::Value> {
        Some(json!({ "endpoints": [{ "name": "gpu-1", "status": "healthy" }] }))
    }

    async fn next_text(
        stream: &mut (impl Stream<Item = Result<Bytes, Infallible>> + Unpin),
    ) -> String {
        let bytes = actix_rt::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("a frame within 5s")
            .expect("the stream goes on")
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[actix_rt::test]
    async fn each_event_is_one_named_frame_with_its_json() {
        let hub = EventHub::default();
        let mut stream = Box::pin(sse(hub.subscribe(), KEEP_ALIVE, fake_snapshot));
        hub.publish(models(2));
        assert_eq!(
            next_text(&mut stream).await,
            "event: models\ndata: {\"endpoint\":\"gpu-1\",\"count\":2,\"at\":\"1970-01-01T00:00:00.000Z\"}\n\n"
        );
    }

    #[actix_rt::test]
    async fn a_quiet_feed_sends_a_comment_every_interval() {
        let hub = EventHub::default();
        let mut stream = Box::pin(sse(
            hub.subscribe(),
            Duration::from_millis(50),
            fake_snapshot,
        ));
        let started = std::time::Instant::now();
        assert_eq!(next_text(&mut stream).await, ": keep-alive\n\n");
        assert_eq!(next_text(&mut stream).await, ": keep-alive\n\n");
        assert!(started.elapsed() >= Duration::from_millis(100));
        // Events still come between the comments.
        hub.publish(models(1));
        assert!(next_text(&mut stream).await.starts_with("event: models\n"));
    }

    #[actix_rt::test]
    async fn a_lagging_reader_gets_lagged_then_a_snapshot_then_only_newer_events() {
        let hub = EventHub::new(4);
        let mut stream = Box::pin(sse(hub.subscribe(), KEEP_ALIVE, fake_snapshot));
        for n in 0..10 {
            hub.publish(models(n)); // nobody reads
        }
        assert_eq!(
            next_text(&mut stream).await,
            "event: lagged\ndata: {\"missed\":10}\n\n"
        );
        assert_eq!(
            next_text(&mut stream).await,
            "event: snapshot\ndata: {\"endpoints\":[{\"name\":\"gpu-1\",\"status\":\"healthy\"}]}\n\n"
        );
        hub.publish(models(42));
        assert!(next_text(&mut stream).await.contains("\"count\":42"));
    }

    #[actix_rt::test]
    async fn the_feed_ends_when_the_hub_is_gone() {
        let hub = EventHub::default();
        let mut stream = Box::pin(sse(hub.subscribe(), KEEP_ALIVE, fake_snapshot));
        drop(hub);
        assert!(stream.next().await.is_none());
    }
}
