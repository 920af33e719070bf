//! The upstream body relayed to the client chunk by chunk, with a deadline on both sides
//! (SPEC 5.2, 11): an upstream that sends nothing for `stream_idle_timeout` ends the stream,
//! and so does a client that reads nothing for as long.
//!
//! actix polls a response body only while the client's socket takes bytes, so a client that
//! stops reading simply stops the polls — and with them any deadline kept inside the stream.
//! A small watchdog task therefore looks from outside: when a chunk was handed over and the
//! stream has not been polled again for `idle`, it drops the upstream response and the
//! endpoint's in-flight guard (for a `recovering` endpoint, its only test slot). The watchdog
//! ends with the stream.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use super::queue::Admitted;
use actix_rt::time::{sleep, Instant, Sleep};
use actix_web::web::Bytes;
use awc::ClientResponse;
use corral_actors::display;
use futures_util::future::{AbortHandle, Abortable};
use futures_util::{Stream, StreamExt};
use tracing::warn;

/// What the attempt already read of the body before the response was committed.
pub enum FirstChunk {
    /// The first chunk (SPEC 9.2: the byte that released the response).
    Read(Bytes),
    /// The body was empty.
    Empty,
    /// Nothing read yet (a `retry_on_status` answer sent as it is).
    NotRead,
}

/// What the relay and its watchdog share.
struct Slot {
    /// The upstream response and the in-flight guard; `None` once the stream is over.
    upstream: Option<(ClientResponse, Admitted)>,
    /// When the last chunk was handed to actix, while actix has not asked for the next.
    handed_over: Option<Instant>,
    /// Why the watchdog ended the stream, for the next poll to report.
    cut: bool,
}

pub struct Relay {
    slot: Rc<RefCell<Slot>>,
    /// The first chunk, read before the response was committed, still to hand over.
    first: Option<Bytes>,
    /// The upstream's deadline for its next chunk.
    /// Made at the first wait for the upstream (most short answers never wait), then reset
    /// at every chunk.
    upstream_idle: Option<Pin<Box<Sleep>>>,
    idle: Duration,
    endpoint: Arc<str>,
    /// `None` for a body of known length: it is small next to socket buffers, so a client
    /// that stops reading cannot hold it for long, and a task per request would cost every
    /// short answer (the streaming answers are the ones without a length).
    watchdog: Option<AbortHandle>,
}

impl Relay {
    /// Relays `response` after `first`; `guard` lives as long as the upstream part of the
    /// stream does, and hears of every chunk (busy is not dead, SPEC 9.1). `watch_reader`:
    /// also end it when the client stops reading.
    pub fn new(
        response: ClientResponse,
        watch_reader: bool,
        first: FirstChunk,
        guard: Admitted,
        endpoint: Arc<str>,
        idle: Duration,
    ) -> Self {
        let (upstream, first) = match first {
            FirstChunk::Read(bytes) => {
                guard.note_progress(std::time::Instant::now());
                (Some((response, guard)), Some(bytes))
            }
            FirstChunk::NotRead => (Some((response, guard)), None),
            FirstChunk::Empty => (None, None),
        };
        let slot = Rc::new(RefCell::new(Slot {
            upstream,
            handed_over: None,
            cut: false,
        }));
        let watchdog = watch_reader.then(|| {
            let (watchdog, registration) = AbortHandle::new_pair();
            let watch = watch(Rc::downgrade(&slot), idle, endpoint.clone());
            actix_rt::spawn(Abortable::new(watch, registration));
            watchdog
        });
        Relay {
            slot,
            first,
            upstream_idle: None,
            idle,
            endpoint,
            watchdog,
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(watchdog) = &self.watchdog {
            watchdog.abort();
        }
    }
}

/// Checks every `idle` whether the client has stopped reading.
async fn watch(slot: Weak<RefCell<Slot>>, idle: Duration, endpoint: Arc<str>) {
    loop {
        sleep(idle).await;
        let Some(slot) = slot.upgrade() else { return };
        let mut slot = slot.borrow_mut();
        if slot.upstream.is_none() {
            return;
        }
        if slot.handed_over.is_some_and(|at| at.elapsed() >= idle) {
            warn!(endpoint = %endpoint, idle = %display::duration(idle), "client stopped reading the stream; closing it");
            slot.upstream = None;
            slot.cut = true;
            return;
        }
    }
}

impl Stream for Relay {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let mut slot = this.slot.borrow_mut();
        if let Some(first) = this.first.take() {
            slot.handed_over = Some(Instant::now());
            return Poll::Ready(Some(Ok(first)));
        }
        slot.handed_over = None;
        let Some((response, _)) = slot.upstream.as_mut() else {
            return Poll::Ready(slot.cut.then(|| {
                slot.cut = false;
                Err(std::io::Error::other("client stopped reading"))
            }));
        };
        match response.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                let now = Instant::now();
                if let Some((_, guard)) = &slot.upstream {
                    guard.note_progress(now.into_std());
                }
                if let Some(deadline) = this.upstream_idle.as_mut() {
                    deadline.as_mut().reset(now + this.idle);
                }
                slot.handed_over = Some(now);
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Ready(None) => {
                slot.upstream = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                warn!(endpoint = %this.endpoint, error = %e, "upstream stream broke; closing the response");
                slot.upstream = None;
                Poll::Ready(Some(Err(std::io::Error::other(e.to_string()))))
            }
            Poll::Pending => match this
                .upstream_idle
                .get_or_insert_with(|| Box::pin(sleep(this.idle)))
                .as_mut()
                .poll(cx)
            {
                Poll::Ready(()) => {
                    warn!(endpoint = %this.endpoint, idle = %display::duration(this.idle), "upstream stream idle too long; closing the response");
                    slot.upstream = None;
                    Poll::Ready(Some(Err(std::io::Error::other("stream idle timeout"))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}
