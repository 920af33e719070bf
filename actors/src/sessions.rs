//! The sticky-session table (SPEC 12, Olla's `proxy.sticky_sessions`), without locks or
//! clocks: which endpoint each conversation was last served by, so that its next turn goes
//! where its prompt is cached. Bounded twice over: at most `capacity` sessions (the least
//! recently used goes first), and a session unused for `idle_ttl` is forgotten. Time comes in
//! as `now`.
//!
//! Sessions are keyed by a 64-bit hash of whatever identifies the conversation (the shell in
//! `src/proxy/sticky.rs` derives it), so a client's header values are never stored. Generic
//! over the endpoint handle so that it is tested with plain values.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// One remembered session.
#[derive(Debug)]
struct Slot<E> {
    endpoint: E,
    last_used: Instant,
    /// Its place in the use order: larger is more recent.
    tick: u64,
}

/// What the table has done since it was made (Olla's `/internal/stats/sticky` counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionCounts {
    /// Sessions added (a new key; re-pinning a known key is not one).
    pub insertions: u64,
    /// Look-ups that found a live session.
    pub hits: u64,
    /// Look-ups that found none (or one that had expired).
    pub misses: u64,
    /// Sessions removed: least recently used at capacity, idle past `idle_ttl`, or pinned
    /// to an endpoint that left rotation.
    pub evictions: u64,
}

#[derive(Debug)]
pub struct SessionTable<E> {
    slots: HashMap<u64, Slot<E>>,
    /// tick → key, oldest use first. Every use moves a session to the back, so the front is
    /// both the least recently used and the first to expire.
    by_use: BTreeMap<u64, u64>,
    next_tick: u64,
    capacity: usize,
    idle_ttl: Option<Duration>,
    counts: SessionCounts,
}

impl<E: Clone + PartialEq> SessionTable<E> {
    /// At most `capacity` sessions (at least one is kept), each forgotten after `idle_ttl`
    /// unused (`None`: never for idleness).
    pub fn new(capacity: usize, idle_ttl: Option<Duration>) -> Self {
        SessionTable {
            slots: HashMap::new(),
            by_use: BTreeMap::new(),
            next_tick: 0,
            capacity: capacity.max(1),
            idle_ttl,
            counts: SessionCounts::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn counts(&self) -> SessionCounts {
        self.counts
    }

    /// The endpoint `key` is pinned to, if its session is alive; using it renews it.
    pub fn lookup(&mut self, key: u64, now: Instant) -> Option<E> {
        self.expire(now);
        let tick = self.tick();
        match self.slots.get_mut(&key) {
            Some(slot) => {
                self.by_use.remove(&slot.tick);
                self.by_use.insert(tick, key);
                slot.tick = tick;
                slot.last_used = now;
                self.counts.hits += 1;
                Some(slot.endpoint.clone())
            }
            None => {
                self.counts.misses += 1;
                None
            }
        }
    }

    /// Pins `key` to `endpoint` (a new session, or a known one moved), making room first by
    /// forgetting the least recently used session when the table is full.
    pub fn pin(&mut self, key: u64, endpoint: E, now: Instant) {
        self.expire(now);
        let tick = self.tick();
        if let Some(slot) = self.slots.get_mut(&key) {
            self.by_use.remove(&slot.tick);
            *slot = Slot {
                endpoint,
                last_used: now,
                tick,
            };
            self.by_use.insert(tick, key);
            return;
        }
        while self.slots.len() >= self.capacity {
            if !self.evict_oldest() {
                break;
            }
        }
        self.slots.insert(
            key,
            Slot {
                endpoint,
                last_used: now,
                tick,
            },
        );
        self.by_use.insert(tick, key);
        self.counts.insertions += 1;
    }

    /// Forgets every session pinned to an endpoint that `keep` refuses (one that left
    /// rotation); returns how many went.
    pub fn retain_endpoints(&mut self, mut keep: impl FnMut(&E) -> bool) -> usize {
        let gone: Vec<(u64, u64)> = self
            .slots
            .iter()
            .filter(|(_, s)| !keep(&s.endpoint))
            .map(|(&k, s)| (k, s.tick))
            .collect();
        for (key, tick) in &gone {
            self.slots.remove(key);
            self.by_use.remove(tick);
        }
        self.counts.evictions += gone.len() as u64;
        gone.len()
    }

    /// Forgets the sessions idle for `idle_ttl` or longer, oldest first.
    fn expire(&mut self, now: Instant) {
        let Some(ttl) = self.idle_ttl else { return };
        while let Some((_, &key)) = self.by_use.first_key_value() {
            let idle = self
                .slots
                .get(&key)
                .map(|s| now.saturating_duration_since(s.last_used));
            match idle {
                Some(idle) if idle < ttl => return,
                _ => {
                    self.evict_oldest();
                }
            }
        }
    }

    /// Removes the least recently used session; false when there is none.
    fn evict_oldest(&mut self) -> bool {
        let Some((_, key)) = self.by_use.pop_first() else {
            return false;
        };
        if self.slots.remove(&key).is_some() {
            self.counts.evictions += 1;
        }
        true
    }

    fn tick(&mut self) -> u64 {
        self.next_tick += 1;
        self.next_tick
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TTL: Duration = Duration::from_secs(600);

    fn table(capacity: usize) -> SessionTable<&'static str> {
        SessionTable::new(capacity, Some(TTL))
    }

    #[test]
    fn an_unknown_key_misses_and_a_pinned_one_hits() {
        let now = Instant::now();
        let mut t = table(10);
        assert_eq!(t.lookup(1, now), None);
        t.pin(1, "a", now);
        assert_eq!(t.lookup(1, now), Some("a"));
        assert_eq!(
            t.counts(),
            SessionCounts {
                insertions: 1,
                hits: 1,
                misses: 1,
                evictions: 0
            }
        );
    }

    #[test]
    fn pinning_a_known_key_moves_it_without_a_new_session() {
        let now = Instant::now();
        let mut t = table(10);
        t.pin(1, "a", now);
        t.pin(1, "b", now);
        assert_eq!(t.lookup(1, now), Some("b"));
        assert_eq!(t.len(), 1);
        assert_eq!(t.counts().insertions, 1);
    }

    #[test]
    fn a_full_table_forgets_the_least_recently_used() {
        let now = Instant::now();
        let mut t = table(2);
        t.pin(1, "a", now);
        t.pin(2, "b", now);
        // Using 1 makes 2 the least recently used.
        assert_eq!(t.lookup(1, now), Some("a"));
        t.pin(3, "c", now);
        assert_eq!(t.len(), 2);
        assert_eq!(t.lookup(2, now), None);
        assert_eq!(t.lookup(1, now), Some("a"));
        assert_eq!(t.lookup(3, now), Some("c"));
        assert_eq!(t.counts().evictions, 1);
    }

    #[test]
    fn an_idle_session_expires_and_use_renews_it() {
        let start = Instant::now();
        let mut t = table(10);
        t.pin(1, "a", start);
        t.pin(2, "b", start);
        let later = start + TTL - Duration::from_secs(1);
        assert_eq!(t.lookup(1, later), Some("a"), "used just in time: renewed");
        let after = start + TTL;
        assert_eq!(t.lookup(2, after), None, "idle for the whole ttl");
        assert_eq!(t.lookup(1, after), Some("a"));
        assert_eq!(t.len(), 1);
        assert_eq!(t.counts().evictions, 1);
    }

    #[test]
    fn without_a_ttl_only_capacity_forgets() {
        let start = Instant::now();
        let mut t: SessionTable<&str> = SessionTable::new(10, None);
        t.pin(1, "a", start);
        let much_later = start + Duration::from_secs(86_400 * 365);
        assert_eq!(t.lookup(1, much_later), Some("a"));
    }

    #[test]
    fn sessions_of_an_endpoint_that_left_are_dropped() {
        let now = Instant::now();
        let mut t = table(10);
        t.pin(1, "a", now);
        t.pin(2, "b", now);
        t.pin(3, "a", now);
        assert_eq!(t.retain_endpoints(|e| *e != "a"), 2);
        assert_eq!(t.lookup(1, now), None);
        assert_eq!(t.lookup(2, now), Some("b"));
        assert_eq!(t.counts().evictions, 2);
        // The use order stays consistent: filling up evicts what is really there.
        t.pin(4, "c", now);
        assert_eq!(t.len(), 2);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Pin(u64, u8),
        Lookup(u64),
        Drop(u8),
        Wait(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u64..40, 0u8..4).prop_map(|(k, e)| Op::Pin(k, e)),
            (0u64..40).prop_map(Op::Lookup),
            (0u8..4).prop_map(Op::Drop),
            (0u64..400).prop_map(Op::Wait),
        ]
    }

    proptest! {
        /// Whatever happens, the table never holds more than its capacity, its use order
        /// always names exactly its sessions, and a look-up never returns an idle session.
        #[test]
        fn the_table_stays_bounded_and_consistent(
            capacity in 1usize..12,
            ops in proptest::collection::vec(op(), 0..300),
        ) {
            let ttl = Duration::from_secs(100);
            let mut t: SessionTable<u8> = SessionTable::new(capacity, Some(ttl));
            let mut now = Instant::now();
            let mut last_use: HashMap<u64, Instant> = HashMap::new();
            for op in ops {
                match op {
                    Op::Pin(k, e) => {
                        t.pin(k, e, now);
                        last_use.insert(k, now);
                    }
                    Op::Lookup(k) => {
                        if t.lookup(k, now).is_some() {
                            let used = last_use[&k];
                            prop_assert!(now.duration_since(used) < ttl);
                            last_use.insert(k, now);
                        }
                    }
                    Op::Drop(e) => {
                        t.retain_endpoints(|x| *x != e);
                    }
                    Op::Wait(s) => now += Duration::from_secs(s),
                }
                prop_assert!(t.len() <= capacity);
                prop_assert_eq!(t.by_use.len(), t.slots.len());
                for (tick, key) in &t.by_use {
                    prop_assert_eq!(t.slots[key].tick, *tick);
                }
            }
        }
    }
}
