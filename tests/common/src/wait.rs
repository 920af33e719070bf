//! Bounded polling: the only way end-to-end tests wait for something.
//!
//! A test never sleeps a fixed time and hopes; it states the condition it is waiting for and a
//! deadline, and fails with that description (and how long it waited) when the deadline passes.

use std::time::{Duration, Instant};

/// How often conditions are re-evaluated.
pub const POLL: Duration = Duration::from_millis(20);

/// Poll `pred` every 20 ms until it holds; panic with `what` after `timeout`.
/// `pred` is always evaluated at least once, and once more at the deadline.
pub fn wait_until(timeout: Duration, what: &str, mut pred: impl FnMut() -> bool) {
    wait_for(timeout, what, || pred().then_some(()))
}

/// Poll `f` every 20 ms until it returns `Some`; panic with `what` after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    let deadline = start + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        let now = Instant::now();
        if now >= deadline {
            // One last look: the condition may have become true while we slept.
            if let Some(v) = f() {
                return v;
            }
            panic!("timed out after {:?} waiting for: {what}", start.elapsed());
        }
        std::thread::sleep(POLL.min(deadline - now));
    }
}

/// Like `wait_until` but returns whether the condition held instead of panicking.
pub fn poll_until(timeout: Duration, mut pred: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if pred() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return pred();
        }
        std::thread::sleep(POLL.min(deadline - now));
    }
}
