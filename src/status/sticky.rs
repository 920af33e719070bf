//! `/internal/stats/sticky` (SPEC 12): Olla's sticky-session statistics — `{"enabled":false}`
//! while `proxy.sticky_sessions` is off (tools branch on `enabled`, not on the status code),
//! else Olla's fields (`active_sessions`, `hits`, `misses`, `evictions`, …) from the session
//! table in `proxy::sticky`.

use serde_json::Value;

use crate::state::AppState;

/// The body of `/internal/stats/sticky`.
pub fn stats(state: &AppState) -> Value {
    state.sticky.stats()
}
