//! The balancer within a priority tier (SPEC 5.3 step 4): in which order this request tries
//! the tier's candidates. The first is the pick; the rest is the failover order.
//!
//! Pure: loads and a rotating `turn` come in, an order of indices goes out.

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
}

impl Load {
    /// Lower is better: in-flight requests (counting this one) per unit of weight.
    fn score(&self) -> f64 {
        (self.in_flight + 1) as f64 / self.status.weight().max(f64::MIN_POSITIVE)
    }
}

/// The order in which to try `loads`; `turn` rotates ties (and is the round-robin position).
pub fn order(loads: &[Load], policy: Policy, turn: usize) -> Vec<usize> {
    let n = loads.len();
    if n == 0 {
        return Vec::new();
    }
    let mut idx: Vec<usize> = (0..n).map(|i| (i + turn) % n).collect();
    match policy {
        Policy::RoundRobin => {}
        // Stable sorts: among equals the rotation decides, so ties take turns.
        Policy::LeastConnections => idx.sort_by_key(|&i| loads[i].in_flight),
        Policy::Priority => idx.sort_by(|&a, &b| loads[a].score().total_cmp(&loads[b].score())),
    }
    idx.retain(|&i| loads[i].has_room);
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(status: Status, in_flight: u64) -> Load {
        Load {
            status,
            in_flight,
            has_room: true,
        }
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

    #[test]
    fn empty_tier_orders_nothing() {
        assert!(order(&[], Policy::Priority, 3).is_empty());
    }
}
