//! The limiter's state and its one decision (SPEC 12): Olla's global bucket, a bucket per
//! client address for proxied requests and another per client address for `/internal/health`,
//! and the per-minute count that `X-RateLimit-Remaining` reports. Pure: the caller passes
//! `now` and the client's address; the middleware in `ratelimit.rs` holds it behind a lock.
//!
//! Memory is bounded: a client is forgotten once its state is as good as new (bucket full
//! again, its minute over), swept every `cleanup_interval`; and the table holds at most
//! `capacity` clients. When a flood of addresses (spoofed through a trusted proxy, or a
//! whole IPv6 prefix) fills it, the clients it cannot hold share one bucket per kind until a
//! sweep makes room: newcomers are limited together, and nobody is let through unlimited.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::bucket::TokenBucket;
use crate::config::RateLimitConfig;

/// The window `X-RateLimit-Remaining` counts in: Olla's limits are per minute.
const WINDOW: Duration = Duration::from_secs(60);

/// A full table is swept at most this often: a sweep walks every client, and a flood of new
/// addresses must not make every request pay for one.
const FULL_TABLE_SWEEP_GAP: Duration = Duration::from_secs(1);

/// Which of a client's buckets a request draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A request forwarded to a backend: the client's bucket and the global one.
    Proxied,
    /// `/internal/health`: a bucket of its own, and not the global one, so that a flood of
    /// proxied requests never makes a load balancer think Corral is down.
    Health,
}

/// What the limiter says about one request, with what the `X-RateLimit-*` headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub admitted: bool,
    /// Requests per minute of the bucket reported (the client's, or the global one when the
    /// client's is off).
    pub limit: u32,
    /// How many more requests it admits this minute; never more than it would admit right
    /// now, and 0 on a refusal.
    pub remaining: u32,
    /// Until the minute that `remaining` counts in is over.
    pub reset_in: Duration,
    /// On a refusal: until a request would be admitted.
    pub retry_after: Option<Duration>,
    /// This request found the table full for the first time since it last had room (log it).
    pub table_filled: bool,
}

/// One bucket and Olla's count of what it admitted this minute.
#[derive(Debug, Clone)]
struct Quota {
    bucket: TokenBucket,
    window_start: Instant,
    admitted: u32,
}

impl Quota {
    fn new(per_minute: u32, burst: u32, now: Instant) -> Self {
        Quota {
            bucket: TokenBucket::full(per_minute, burst, now),
            window_start: now,
            admitted: 0,
        }
    }

    /// Starts a new minute when the last one is over (as Olla does: from the first request
    /// after it).
    fn roll(&mut self, now: Instant) {
        if now.saturating_duration_since(self.window_start) >= WINDOW {
            self.window_start = now;
            self.admitted = 0;
        }
    }

    fn take(&mut self, now: Instant) {
        let taken = self.bucket.try_take(now);
        debug_assert!(taken.is_ok(), "take follows a zero wait");
        self.admitted = self.admitted.saturating_add(1);
    }

    fn remaining(&mut self, limit: u32, now: Instant) -> u32 {
        limit
            .saturating_sub(self.admitted)
            .min(self.bucket.whole_tokens(now))
    }

    fn reset_in(&self, now: Instant) -> Duration {
        (self.window_start + WINDOW).saturating_duration_since(now)
    }

    /// As good as a new one: forgetting it changes no answer.
    fn is_idle(&mut self, now: Instant) -> bool {
        now.saturating_duration_since(self.window_start) >= WINDOW && self.bucket.is_full(now)
    }
}

#[derive(Debug)]
pub struct Limiter {
    config: RateLimitConfig,
    global: Option<Quota>,
    clients: HashMap<(IpAddr, Kind), Quota>,
    /// Shared by the clients a full table cannot hold, one per kind.
    overflow_proxied: Quota,
    overflow_health: Quota,
    capacity: usize,
    last_sweep: Instant,
    full: bool,
}

impl Limiter {
    /// At most `capacity` clients are tracked one by one.
    pub fn new(config: RateLimitConfig, capacity: usize, now: Instant) -> Self {
        let global = (config.global_requests_per_minute > 0)
            .then(|| Quota::new(config.global_requests_per_minute, config.burst_size, now));
        Limiter {
            config,
            global,
            clients: HashMap::new(),
            overflow_proxied: Quota::new(config.per_ip_requests_per_minute, config.burst_size, now),
            overflow_health: Quota::new(config.health_requests_per_minute, config.burst_size, now),
            capacity,
            last_sweep: now,
            full: false,
        }
    }

    /// Clients tracked one by one now.
    pub fn tracked(&self) -> usize {
        self.clients.len()
    }

    fn per_client_limit(&self, kind: Kind) -> u32 {
        match kind {
            Kind::Proxied => self.config.per_ip_requests_per_minute,
            Kind::Health => self.config.health_requests_per_minute,
        }
    }

    /// Decides one request of `client`; `None` when no bucket applies to it (no headers
    /// either). A refused request takes no token from any bucket.
    pub fn check(&mut self, client: IpAddr, kind: Kind, now: Instant) -> Option<Decision> {
        let limit = self.per_client_limit(kind);
        let uses_global = kind == Kind::Proxied && self.global.is_some();
        if limit == 0 && !uses_global {
            return None;
        }
        let cleanup = self.config.cleanup_interval;
        if !cleanup.is_zero() && now.saturating_duration_since(self.last_sweep) >= cleanup {
            self.sweep(now);
        }
        let mut table_filled = false;
        let mut quota = if limit == 0 {
            None
        } else {
            let key = (client, kind);
            if !self.clients.contains_key(&key)
                && self.clients.len() >= self.capacity
                && now.saturating_duration_since(self.last_sweep) >= FULL_TABLE_SWEEP_GAP
            {
                self.sweep(now);
            }
            if self.clients.contains_key(&key) || self.clients.len() < self.capacity {
                let burst = self.config.burst_size;
                Some(
                    self.clients
                        .entry(key)
                        .or_insert_with(|| Quota::new(limit, burst, now)),
                )
            } else {
                table_filled = !self.full;
                self.full = true;
                Some(match kind {
                    Kind::Proxied => &mut self.overflow_proxied,
                    Kind::Health => &mut self.overflow_health,
                })
            }
        };
        let mut global = if uses_global {
            self.global.as_mut()
        } else {
            None
        };

        // ## both buckets have a token => admitted, one taken from each
        // ## either is empty => refused, nothing taken, retry when that one has a token
        let mut wait = Duration::ZERO;
        for q in [quota.as_deref_mut(), global.as_deref_mut()]
            .into_iter()
            .flatten()
        {
            q.roll(now);
            wait = wait.max(q.bucket.wait(now));
        }
        let admitted = wait.is_zero();
        if admitted {
            for q in [quota.as_deref_mut(), global.as_deref_mut()]
                .into_iter()
                .flatten()
            {
                q.take(now);
            }
        }
        let (reported, limit) = match quota {
            Some(q) => (q, limit),
            None => (
                global.expect("a bucket applies"),
                self.config.global_requests_per_minute,
            ),
        };
        Some(Decision {
            admitted,
            limit,
            remaining: if admitted {
                reported.remaining(limit, now)
            } else {
                0
            },
            reset_in: reported.reset_in(now),
            retry_after: (!admitted).then_some(wait),
            table_filled,
        })
    }

    /// Forgets every client whose state is as good as new.
    pub fn sweep(&mut self, now: Instant) {
        self.clients.retain(|_, q| !q.is_idle(now));
        self.last_sweep = now;
        if self.clients.len() < self.capacity {
            self.full = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(203, 0, 113, last))
    }

    fn config(global: u32, per_ip: u32, health: u32, burst: u32) -> RateLimitConfig {
        RateLimitConfig {
            global_requests_per_minute: global,
            per_ip_requests_per_minute: per_ip,
            health_requests_per_minute: health,
            burst_size: burst,
            cleanup_interval: S(300),
        }
    }

    /// The admitted/refused pattern of `n` requests at `now`.
    fn burst(l: &mut Limiter, client: IpAddr, kind: Kind, n: usize, now: Instant) -> Vec<bool> {
        (0..n)
            .map(|_| l.check(client, kind, now).unwrap().admitted)
            .collect()
    }

    #[test]
    fn the_defaults_are_ollas() {
        let d = RateLimitConfig::default();
        assert_eq!(
            (
                d.global_requests_per_minute,
                d.per_ip_requests_per_minute,
                d.health_requests_per_minute,
                d.burst_size,
                d.cleanup_interval,
            ),
            (1000, 100, 1000, 50, S(300))
        );
    }

    // ## per-IP bucket empty => refused, with the wait for its next token
    #[test]
    fn a_client_gets_its_burst_then_429_with_the_wait() {
        let t0 = Instant::now();
        let mut l = Limiter::new(config(0, 60, 0, 3), 100, t0);
        assert_eq!(
            burst(&mut l, ip(1), Kind::Proxied, 4, t0),
            [true, true, true, false]
        );
        let d = l.check(ip(1), Kind::Proxied, t0).unwrap();
        assert_eq!(d.retry_after, Some(S(1)));
        assert_eq!((d.limit, d.remaining), (60, 0));
        assert!(l.check(ip(1), Kind::Proxied, t0 + S(1)).unwrap().admitted);
    }

    #[test]
    fn remaining_counts_down_and_never_promises_more_than_the_bucket_holds() {
        let t0 = Instant::now();
        let mut l = Limiter::new(config(0, 100, 0, 3), 100, t0);
        let rem: Vec<u32> = (0..3)
            .map(|_| l.check(ip(1), Kind::Proxied, t0).unwrap().remaining)
            .collect();
        // Olla would say 99, 98, 97: its count of the minute, not what the bucket admits.
        assert_eq!(rem, [2, 1, 0]);
        let mut l = Limiter::new(config(0, 4, 0, 50), 100, t0);
        let rem: Vec<u32> = (0..4)
            .map(|_| l.check(ip(1), Kind::Proxied, t0).unwrap().remaining)
            .collect();
        assert_eq!(rem, [3, 2, 1, 0], "the minute's count, when it is lower");
    }

    #[test]
    fn reset_is_the_end_of_the_minute_that_remaining_counts_in() {
        let t0 = Instant::now();
        let mut l = Limiter::new(config(0, 100, 0, 50), 100, t0);
        assert_eq!(l.check(ip(1), Kind::Proxied, t0).unwrap().reset_in, S(60));
        assert_eq!(
            l.check(ip(1), Kind::Proxied, t0 + S(20)).unwrap().reset_in,
            S(40)
        );
        // A new minute starts with the first request after the last one ended.
        let d = l.check(ip(1), Kind::Proxied, t0 + S(70)).unwrap();
        assert_eq!(d.reset_in, S(60));
        assert_eq!(d.remaining, 49);
    }

    // ## clients are isolated
    #[test]
    fn each_address_has_its_own_bucket() {
        let t0 = Instant::now();
        let mut l = Limiter::new(config(0, 60, 0, 2), 100, t0);
        assert_eq!(
            burst(&mut l, ip(1), Kind::Proxied, 3, t0),
            [true, true, false]
        );
        assert_eq!(
            burst(&mut l, ip(2), Kind::Proxied, 3, t0),
            [true, true, false]
        );
    }

    // ## health => its own bucket, never the global one
    #[test]
    fn health_has_its_own_bucket_and_ignores_the_global_one() {
        let t0 = Instant::now();
        let mut l = Limiter::new(config(60, 60, 120, 2), 100, t0);
        assert_eq!(
            burst(&mut l, ip(1), Kind::Proxied, 3, t0),
            [true, true, false]
        );
        assert_eq!(
            burst(&mut l, ip(1), Kind::Health, 3, t0),
            [true, true, false]
        );
        let d = l.check(ip(1), Kind::Health, t0).unwrap();
        assert_eq!(
            (d.limit, d.retry_after),
            (120, Some(Duration::from_millis(500)))
        );
        // The global bucket is empty for proxied traffic, and health still answers.
        assert!(!l.check(ip(2), Kind::Proxied, t0).unwrap().admitted);
        assert!(l.check(ip(2), Kind::Health, t0).unwrap().admitted);
    }

    // ## global bucket empty => refused, and the client's token stays
    #[test]
    fn the_global_bucket_limits_everyone_together() {
        let t0 = Instant::now();
        let mut l = Limiter::new(config(60, 600, 0, 3), 100, t0);
        let admitted = (1..=5)
            .filter(|&i| l.check(ip(i), Kind::Proxied, t0).unwrap().admitted)
            .count();
        assert_eq!(admitted, 3);
        let d = l.check(ip(9), Kind::Proxied, t0).unwrap();
        assert_eq!(
            (d.limit, d.remaining),
            (600, 0),
            "the client's bucket is reported"
        );
        assert_eq!(d.retry_after, Some(S(1)), "the global bucket's wait");
        // ip(9) was refused by the global bucket: its own burst is intact.
        assert_eq!(
            burst(&mut l, ip(9), Kind::Proxied, 3, t0 + S(3)),
            [true, true, true]
        );
    }

    #[test]
    fn a_client_refused_by_its_own_bucket_costs_the_others_nothing() {
        let t0 = Instant::now();
        let mut l = Limiter::new(config(60, 6, 0, 3), 100, t0);
        // One client hammers for 3 s: its burst of 3, then refusals (6/min is one in 10 s).
        let hammered: Vec<bool> = (0..30)
            .map(|i| {
                let at = t0 + Duration::from_millis(i * 100);
                l.check(ip(1), Kind::Proxied, at).unwrap().admitted
            })
            .collect();
        assert_eq!(hammered.iter().filter(|&&a| a).count(), 3);
        // Meanwhile the global bucket refilled, untouched by the refusals (Olla's took a
        // global token for each of them as it came back): another client has its burst.
        assert_eq!(
            burst(&mut l, ip(2), Kind::Proxied, 3, t0 + S(3)),
            [true, true, true]
        );
    }

    #[test]
    fn with_per_ip_off_the_global_bucket_is_reported() {
        let t0 = Instant::now();
        let mut l = Limiter::new(config(120, 0, 0, 2), 100, t0);
        let d = l.check(ip(1), Kind::Proxied, t0).unwrap();
        assert_eq!((d.admitted, d.limit, d.remaining), (true, 120, 1));
        assert_eq!(
            l.tracked(),
            0,
            "no per-client state when that bucket is off"
        );
        // Health has neither its own bucket nor the global one: no limit, no headers.
        assert_eq!(l.check(ip(1), Kind::Health, t0), None);
    }

    #[test]
    fn everything_off_decides_nothing() {
        let t0 = Instant::now();
        let mut l = Limiter::new(RateLimitConfig::OFF, 100, t0);
        assert_eq!(l.check(ip(1), Kind::Proxied, t0), None);
        assert_eq!(l.check(ip(1), Kind::Health, t0), None);
    }

    // ## sweep => clients as good as new are forgotten, the others kept
    #[test]
    fn a_sweep_forgets_only_clients_whose_state_is_as_good_as_new() {
        let t0 = Instant::now();
        let mut l = Limiter::new(config(0, 60, 0, 10), 100, t0);
        burst(&mut l, ip(1), Kind::Proxied, 10, t0);
        l.check(ip(2), Kind::Proxied, t0 + S(59));
        assert_eq!(l.tracked(), 2);
        // At 61s: ip(1)'s minute is over and its bucket refilled; ip(2)'s minute is not.
        l.sweep(t0 + S(61));
        assert_eq!(l.tracked(), 1);
        // At 120s ip(2) is idle too.
        l.sweep(t0 + S(120));
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn a_client_still_refilling_is_kept() {
        let t0 = Instant::now();
        // 1 a minute, burst 5: five minutes to refill.
        let mut l = Limiter::new(config(0, 1, 0, 5), 100, t0);
        burst(&mut l, ip(1), Kind::Proxied, 5, t0);
        l.sweep(t0 + S(120));
        assert_eq!(l.tracked(), 1, "forgetting it would hand it a fresh burst");
        l.sweep(t0 + S(300));
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn the_sweep_runs_every_cleanup_interval() {
        let t0 = Instant::now();
        let mut l = Limiter::new(config(0, 60, 0, 1), 100, t0);
        l.check(ip(1), Kind::Proxied, t0);
        l.check(ip(2), Kind::Proxied, t0 + S(299));
        assert_eq!(l.tracked(), 2);
        l.check(ip(2), Kind::Proxied, t0 + S(300));
        assert_eq!(l.tracked(), 1, "ip(1) swept at the cleanup interval");
    }

    // ## table full => newcomers share one bucket; never unbounded, never unlimited
    #[test]
    fn a_flood_of_addresses_never_grows_the_table_past_its_capacity() {
        let t0 = Instant::now();
        let mut l = Limiter::new(config(0, 60, 60, 5), 50, t0);
        let mut filled = 0;
        let mut admitted = 0;
        for i in 0..10_000u32 {
            let client = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            let d = l.check(client, Kind::Proxied, t0).unwrap();
            filled += usize::from(d.table_filled);
            admitted += usize::from(d.admitted);
            assert!(l.tracked() <= 50);
        }
        assert_eq!(filled, 1, "logged once");
        // 50 tracked clients with their own burst, and the rest share one burst of 5.
        assert_eq!(admitted, 50 + 5);
        // A client tracked before the flood keeps its own bucket: 5, less two.
        let first = IpAddr::V4(Ipv4Addr::from(0x0a00_0000));
        let d = l.check(first, Kind::Proxied, t0).unwrap();
        assert_eq!((d.admitted, d.remaining), (true, 3));
    }

    #[test]
    fn a_full_table_makes_room_once_its_clients_go_quiet() {
        let t0 = Instant::now();
        let mut l = Limiter::new(config(0, 60, 0, 1), 2, t0);
        l.check(ip(1), Kind::Proxied, t0);
        l.check(ip(2), Kind::Proxied, t0);
        let d = l.check(ip(3), Kind::Proxied, t0).unwrap();
        assert!(d.table_filled && d.admitted);
        assert!(
            !l.check(ip(4), Kind::Proxied, t0).unwrap().admitted,
            "shared"
        );
        // A minute on, the first two are as good as new: a full table sweeps and has room.
        let d = l.check(ip(4), Kind::Proxied, t0 + S(61)).unwrap();
        assert!(d.admitted && !d.table_filled);
        assert_eq!(l.tracked(), 1);
    }
}
