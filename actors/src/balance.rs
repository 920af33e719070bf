//! The balancer within a priority tier (SPEC 5.3 step 4, 10.2): in which order this request
//! tries the tier's candidates. The first is the pick; the rest is the failover order.
//!
//! `priority` and `least-connections` put endpoints with the requested model in memory first,
//! then the least loaded: the busier of the backend's own report and Corral's in-flight
//! count, per slot (and, for `priority`, per unit of status weight). With no load signal
//! anywhere that is exactly Corral's in-flight order. `round-robin` ignores load.
//!
//! Pure: loads and a rotating `turn` come in, indices come out, best first, one at a time
//! ([`Ranking`]).

use crate::health::Status;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Weighted least-connections with the status weights (healthy 1.0, degraded 0.3).
    Priority,
    RoundRobin,
    /// Fewest requests in flight through Corral.
    LeastConnections,
}

/// What the balancer knows of one candidate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Load {
    pub status: Status,
    pub in_flight: u64,
    /// Whether the endpoint would admit one more request now (its in-flight limit); one
    /// without room is left out of the order.
    pub has_room: bool,
    /// Requests running and waiting as the backend itself last reported (fresh reports
    /// only); it counts other clients' work too.
    pub reported: Option<u64>,
    /// Requests the backend serves at once (its slots); 1 when unknown.
    pub capacity: u64,
    /// The requested model is in the backend's memory now, or nothing says it is not.
    pub resident: bool,
}

impl Load {
    /// No load report, no known capacity: what Corral knows from its own counts alone.
    pub fn counted(status: Status, in_flight: u64, has_room: bool) -> Load {
        Load {
            status,
            in_flight,
            has_room,
            reported: None,
            capacity: 1,
            resident: true,
        }
    }

    /// Requests on the backend, counting this one, per slot. The backend's report may lag
    /// behind Corral's own requests, and Corral does not see other clients': the larger of
    /// the two is the better guess.
    fn per_slot(&self) -> f64 {
        let busy = self.reported.unwrap_or(0).max(self.in_flight);
        (busy.saturating_add(1)) as f64 / self.capacity.max(1) as f64
    }

    /// Lower is better: load per slot per unit of status weight.
    fn score(&self) -> f64 {
        self.per_slot() / self.status.weight().max(f64::MIN_POSITIVE)
    }
}

/// One request's order over a tier, worked out only as far as it is asked for (issue 10).
/// Each candidate's key is computed once, when the tier is ranked; the best candidate takes
/// one pass over the keys, and the rest are sorted only when failover asks for a second.
/// Most requests are served by their first pick, so most never sort. `turn` rotates ties
/// (and is the round-robin position); candidates without room are left out.
///
/// One buffer, sized once per tier and reused for the next: picking allocates nothing per
/// candidate.
#[derive(Debug, Default)]
pub struct Ranking {
    /// The candidates with room; `keys[..next]` were handed out already.
    keys: Vec<Key>,
    next: usize,
    /// `keys[next..]` is in order (failover asked past the first).
    sorted: bool,
}

impl Ranking {
    pub fn new() -> Self {
        Ranking::default()
    }

    /// Starts over on a tier's `loads`.
    pub fn rank(
        &mut self,
        loads: impl ExactSizeIterator<Item = Load>,
        policy: Policy,
        turn: usize,
    ) {
        self.keys.clear();
        self.next = 0;
        self.sorted = false;
        let n = loads.len();
        if n == 0 {
            return;
        }
        self.keys.reserve(n);
        // Rotated by `turn`: candidate `turn % n` comes first among equals.
        let shift = n - turn % n;
        for (index, l) in loads.enumerate() {
            if !l.has_room {
                continue;
            }
            let rank = match policy {
                Policy::RoundRobin => Rank {
                    cold: false,
                    load: 0.0,
                },
                Policy::LeastConnections => Rank::new(&l, l.per_slot()),
                Policy::Priority => Rank::new(&l, l.score()),
            };
            self.keys.push(Key {
                rank,
                place: (index + shift) % n,
                index,
            });
        }
    }

    /// How many candidates are still to come.
    pub fn remaining(&self) -> usize {
        self.keys.len() - self.next
    }
}

/// The indices (in the ranked loads) of the candidates, best first.
impl Iterator for Ranking {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let rest = &mut self.keys[self.next..];
        if rest.is_empty() {
            return None;
        }
        if !self.sorted {
            if self.next == 0 {
                // ## first pick => one pass for the best
                let best = (1..rest.len()).fold(0, |best, i| {
                    if rest[i].cmp(&rest[best]).is_lt() {
                        i
                    } else {
                        best
                    }
                });
                rest.swap(0, best);
            } else {
                // ## failover => sort the rest once. Keys are unique (the place breaks every
                // tie), so the unstable sort, which takes no scratch, gives the one order.
                rest.sort_unstable_by(Key::cmp);
                self.sorted = true;
            }
        }
        self.next += 1;
        Some(rest[0].index)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining(), Some(self.remaining()))
    }
}

/// A candidate's key: its rank, then its place in this request's rotation.
#[derive(Debug, Clone, Copy)]
struct Key {
    rank: Rank,
    place: usize,
    index: usize,
}

impl Key {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank
            .cmp(&other.rank)
            .then(self.place.cmp(&other.place))
    }
}

/// Where a candidate sorts: residency first (loading a model costs seconds to minutes, more
/// than any queue here), then its load, lower first.
#[derive(Debug, Clone, Copy)]
struct Rank {
    cold: bool,
    load: f64,
}

impl Rank {
    fn new(l: &Load, load: f64) -> Self {
        Rank {
            cold: !l.resident,
            load,
        }
    }
}

impl Ord for Rank {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.cold
            .cmp(&other.cold)
            .then(self.load.total_cmp(&other.load))
    }
}

impl PartialOrd for Rank {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Rank {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Rank {}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(status: Status, in_flight: u64) -> Load {
        Load::counted(status, in_flight, true)
    }

    /// The whole order, as [`Ranking`] hands it out.
    fn order(loads: &[Load], policy: Policy, turn: usize) -> Vec<usize> {
        let mut ranking = Ranking::new();
        ranking.rank(loads.iter().copied(), policy, turn);
        let mut out = Vec::new();
        while let Some(i) = ranking.next() {
            out.push(i);
            assert_eq!(ranking.remaining(), ranking.keys.len() - out.len());
        }
        out
    }

    /// The reference: the rotation, stably sorted by rank, without the candidates that have
    /// no room (the balancer before it ranked lazily).
    fn full_order(loads: &[Load], policy: Policy, turn: usize) -> Vec<usize> {
        let n = loads.len();
        if n == 0 {
            return Vec::new();
        }
        let mut idx: Vec<usize> = (0..n).map(|i| (i + turn) % n).collect();
        match policy {
            Policy::RoundRobin => {}
            Policy::LeastConnections => {
                idx.sort_by_cached_key(|&i| Rank::new(&loads[i], loads[i].per_slot()))
            }
            Policy::Priority => idx.sort_by_cached_key(|&i| Rank::new(&loads[i], loads[i].score())),
        }
        idx.retain(|&i| loads[i].has_room);
        idx
    }

    #[test]
    fn the_first_pick_sorts_nothing_and_failover_sorts_once() {
        let l: Vec<Load> = [3, 0, 2, 0, 1]
            .into_iter()
            .map(|n| load(Status::Healthy, n))
            .collect();
        let mut ranking = Ranking::new();
        ranking.rank(l.iter().copied(), Policy::LeastConnections, 2);
        assert_eq!(
            ranking.next(),
            Some(3),
            "the idle one at the rotation's front"
        );
        assert!(!ranking.sorted);
        assert_eq!(ranking.next(), Some(1));
        assert!(ranking.sorted);
        assert_eq!(ranking.by_ref().collect::<Vec<_>>(), vec![4, 2, 0]);
        assert_eq!(ranking.next(), None);
        // Ranked again, it starts over.
        ranking.rank(l[..2].iter().copied(), Policy::LeastConnections, 0);
        assert_eq!((ranking.next(), ranking.next()), (Some(1), Some(0)));
    }

    #[test]
    fn round_robin_rotates() {
        let l = vec![load(Status::Healthy, 0); 3];
        assert_eq!(order(&l, Policy::RoundRobin, 0), vec![0, 1, 2]);
        assert_eq!(order(&l, Policy::RoundRobin, 1), vec![1, 2, 0]);
        assert_eq!(order(&l, Policy::RoundRobin, 5), vec![2, 0, 1]);
    }

    #[test]
    fn least_connections_prefers_the_idle_and_rotates_ties() {
        let l = vec![
            load(Status::Healthy, 3),
            load(Status::Healthy, 0),
            load(Status::Healthy, 0),
        ];
        assert_eq!(order(&l, Policy::LeastConnections, 0), vec![1, 2, 0]);
        assert_eq!(order(&l, Policy::LeastConnections, 2), vec![2, 1, 0]);
    }

    #[test]
    fn priority_weighs_degraded_at_a_third() {
        // Idle: healthy first.
        let l = vec![load(Status::Degraded, 0), load(Status::Healthy, 0)];
        assert_eq!(order(&l, Policy::Priority, 0), vec![1, 0]);
        // Healthy with 3 in flight scores 4; degraded with none scores 3.3: degraded wins.
        let l = vec![load(Status::Degraded, 0), load(Status::Healthy, 3)];
        assert_eq!(order(&l, Policy::Priority, 0), vec![0, 1]);
        // Healthy with 2 in flight scores 3: still ahead of an idle degraded one.
        let l = vec![load(Status::Degraded, 0), load(Status::Healthy, 2)];
        assert_eq!(order(&l, Policy::Priority, 0), vec![1, 0]);
    }

    #[test]
    fn priority_rotates_equal_scores() {
        let l = vec![load(Status::Healthy, 0), load(Status::Healthy, 0)];
        assert_eq!(order(&l, Policy::Priority, 0), vec![0, 1]);
        assert_eq!(order(&l, Policy::Priority, 1), vec![1, 0]);
    }

    #[test]
    fn endpoints_without_room_are_left_out() {
        let l = vec![load(Status::Recovering, 0), load(Status::Healthy, 0)];
        assert_eq!(order(&l, Policy::RoundRobin, 0), vec![0, 1]);
        let full = Load {
            has_room: false,
            ..load(Status::Recovering, 1)
        };
        let busy = vec![full, load(Status::Healthy, 0)];
        for policy in [
            Policy::Priority,
            Policy::RoundRobin,
            Policy::LeastConnections,
        ] {
            assert_eq!(order(&busy, policy, 0), vec![1], "{policy:?}");
        }
    }

    fn reported(status: Status, in_flight: u64, reported: u64, capacity: u64) -> Load {
        Load {
            reported: Some(reported),
            capacity,
            ..load(status, in_flight)
        }
    }

    #[test]
    fn a_resident_model_beats_an_idle_endpoint_that_must_load_it() {
        let cold = Load {
            resident: false,
            ..load(Status::Healthy, 0)
        };
        let warm_busy = reported(Status::Healthy, 2, 5, 1);
        for policy in [Policy::Priority, Policy::LeastConnections] {
            assert_eq!(
                order(&[cold, warm_busy], policy, 0),
                vec![1, 0],
                "{policy:?}"
            );
        }
        assert_eq!(
            order(&[cold, warm_busy], Policy::RoundRobin, 0),
            vec![0, 1],
            "round-robin ignores residency"
        );
    }

    #[test]
    fn the_backends_own_report_counts_when_it_exceeds_corrals() {
        // Corral has nothing in flight at either, but the first backend says 3 are waiting.
        let l = vec![reported(Status::Healthy, 0, 3, 1), load(Status::Healthy, 0)];
        for turn in 0..4 {
            assert_eq!(order(&l, Policy::Priority, turn), vec![1, 0]);
            assert_eq!(order(&l, Policy::LeastConnections, turn), vec![1, 0]);
        }
        // A report that lags behind Corral's own in-flight count does not hide it.
        let l = vec![reported(Status::Healthy, 4, 0, 1), load(Status::Healthy, 1)];
        assert_eq!(order(&l, Policy::Priority, 0), vec![1, 0]);
    }

    #[test]
    fn load_is_per_slot() {
        // Two busy of four slots (3/4 with this one) beats one busy of one slot (2/1).
        let l = vec![
            reported(Status::Healthy, 1, 1, 1),
            reported(Status::Healthy, 2, 2, 4),
        ];
        assert_eq!(order(&l, Policy::Priority, 0), vec![1, 0]);
        assert_eq!(order(&l, Policy::LeastConnections, 0), vec![1, 0]);
    }

    #[test]
    fn an_idle_degraded_endpoint_takes_traffic_once_healthy_ones_are_loaded() {
        let idle_degraded = load(Status::Degraded, 0);
        assert_eq!(
            order(
                &[idle_degraded, load(Status::Healthy, 0)],
                Policy::Priority,
                0
            ),
            vec![1, 0]
        );
        let loaded = reported(Status::Healthy, 0, 4, 1);
        assert_eq!(
            order(&[idle_degraded, loaded], Policy::Priority, 0),
            vec![0, 1]
        );
        // least-connections does not weigh status.
        assert_eq!(
            order(
                &[idle_degraded, load(Status::Healthy, 0)],
                Policy::LeastConnections,
                0
            ),
            vec![0, 1]
        );
    }

    /// The order before load signals existed (issue 10 must not change it without signals).
    fn counted_order(loads: &[Load], policy: Policy, turn: usize) -> Vec<usize> {
        let n = loads.len();
        let mut idx: Vec<usize> = (0..n).map(|i| (i + turn) % n.max(1)).collect();
        match policy {
            Policy::RoundRobin => {}
            Policy::LeastConnections => idx.sort_by_key(|&i| loads[i].in_flight),
            Policy::Priority => idx.sort_by(|&a, &b| {
                let s =
                    |l: &Load| (l.in_flight + 1) as f64 / l.status.weight().max(f64::MIN_POSITIVE);
                s(&loads[a]).total_cmp(&s(&loads[b]))
            }),
        }
        idx.retain(|&i| loads[i].has_room);
        idx
    }

    proptest::proptest! {
        #[test]
        fn without_signals_the_order_is_corrals_own(
            raw in proptest::collection::vec((0u8..4, 0u64..6, proptest::bool::ANY), 0..8),
            turn in 0usize..20,
        ) {
            let status = |s: u8| [Status::Healthy, Status::Degraded, Status::Recovering, Status::Healthy][s as usize];
            let loads: Vec<Load> = raw.iter().map(|&(s, n, room)| Load::counted(status(s), n, room)).collect();
            for policy in [Policy::Priority, Policy::RoundRobin, Policy::LeastConnections] {
                proptest::prop_assert_eq!(order(&loads, policy, turn), counted_order(&loads, policy, turn));
            }
        }

        #[test]
        fn the_lazy_order_is_the_full_order(
            raw in proptest::collection::vec(
                (0u8..4, 0u64..6, proptest::option::of(0u64..9), 0u64..5, proptest::bool::ANY, proptest::bool::ANY),
                0..12,
            ),
            turn in 0usize..40,
        ) {
            let status = |s: u8| [Status::Healthy, Status::Degraded, Status::Recovering, Status::Unknown][s as usize];
            let loads: Vec<Load> = raw.iter().map(|&(s, in_flight, reported, capacity, resident, has_room)| Load {
                status: status(s), in_flight, has_room, reported, capacity, resident,
            }).collect();
            for policy in [Policy::Priority, Policy::RoundRobin, Policy::LeastConnections] {
                proptest::prop_assert_eq!(order(&loads, policy, turn), full_order(&loads, policy, turn), "{:?}", policy);
            }
        }

        #[test]
        fn residency_always_comes_first(
            raw in proptest::collection::vec((0u64..6, proptest::option::of(0u64..9), 1u64..5, proptest::bool::ANY), 1..8),
            turn in 0usize..20,
        ) {
            let loads: Vec<Load> = raw.iter().map(|&(n, reported, capacity, resident)| Load {
                reported, capacity, resident, ..Load::counted(Status::Healthy, n, true)
            }).collect();
            for policy in [Policy::Priority, Policy::LeastConnections] {
                let o = order(&loads, policy, turn);
                proptest::prop_assert_eq!(o.len(), loads.len());
                let first_cold = o.iter().position(|&i| !loads[i].resident).unwrap_or(o.len());
                proptest::prop_assert!(o[first_cold..].iter().all(|&i| !loads[i].resident));
            }
        }
    }

    #[test]
    fn empty_tier_orders_nothing() {
        assert!(order(&[], Policy::Priority, 3).is_empty());
    }
}
