//! `/internal/stats/sticky` (SPEC 12): Olla's sticky-session statistics.
//!
//! Until sticky sessions exist this is Olla's own answer when they are off,
//! `{"enabled":false}`: tools branch on `enabled`, not on the status code. Sticky sessions
//! fill [`stats`] with Olla's fields when they are on (`enabled: true`, `hits`, `misses`,
//! `evictions`, `active_sessions`, …).

use serde_json::{json, Value};

use crate::state::AppState;

/// The body of `/internal/stats/sticky`.
pub fn stats(_state: &AppState) -> Value {
    json!({ "enabled": false })
}
