//! The wait queue's rules (SPEC 10.3), without locks, channels or clocks: requests wait in
//! arrival order, at most `size` at once, each until its deadline; whenever a slot may have
//! freed, the waiters are offered it in arrival order and the earliest one that can use it
//! takes it, the others keeping their place.
//!
//! Generic over what a waiter carries, so that the proxy's queue (`src/proxy/queue.rs`) keeps
//! its channels and candidates in it while this file is tested with plain values.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A waiter's place, to leave the queue by (a disconnected client, a timer that fired).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ticket(u64);

/// The queue holds `size` waiters already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// What a waiter makes of the slots on offer.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict<R> {
    /// Nothing here for it: it keeps its place.
    Wait,
    /// It leaves the queue with this (a slot, or the error it fails with).
    Leave(R),
}

/// Why a waiter left the queue during [`WaitList::offer`].
#[derive(Debug, PartialEq, Eq)]
pub enum Left<R> {
    /// Its verdict.
    Served(R),
    /// Its deadline passed before anything could be given to it.
    TimedOut,
}

#[derive(Debug)]
struct Waiter<T> {
    ticket: Ticket,
    deadline: Instant,
    item: T,
}

#[derive(Debug)]
pub struct WaitList<T> {
    waiting: VecDeque<Waiter<T>>,
    next_ticket: u64,
    size: usize,
    max_wait: Duration,
}

impl<T> WaitList<T> {
    /// A queue of at most `size` waiters (0: nobody waits), each for at most `max_wait`.
    pub fn new(size: usize, max_wait: Duration) -> Self {
        WaitList {
            waiting: VecDeque::new(),
            next_ticket: 0,
            size,
            max_wait,
        }
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Queues `item` behind everyone waiting, until `now + max_wait`.
    pub fn join(&mut self, item: T, now: Instant) -> Result<(Ticket, Instant), Full> {
        if self.waiting.len() >= self.size {
            return Err(Full);
        }
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        let deadline = now + self.max_wait;
        self.waiting.push_back(Waiter {
            ticket,
            deadline,
            item,
        });
        Ok((ticket, deadline))
    }

    /// Takes a waiter out of the queue (its client left, or its timer fired). `None`: it has
    /// left already, served or timed out by an [`offer`](Self::offer).
    pub fn leave(&mut self, ticket: Ticket) -> Option<T> {
        let at = self.waiting.iter().position(|w| w.ticket == ticket)?;
        self.waiting.remove(at).map(|w| w.item)
    }

    /// Offers whatever is free now to the waiters in arrival order: `decide` sees each one
    /// whose deadline has not passed and says whether it leaves (served) or waits. Waiters
    /// past their deadline leave timed out and are never served. Returns who left, in
    /// arrival order.
    pub fn offer<R>(
        &mut self,
        now: Instant,
        mut decide: impl FnMut(&mut T) -> Verdict<R>,
    ) -> Vec<(Ticket, T, Left<R>)> {
        let mut left = Vec::new();
        let mut kept = VecDeque::with_capacity(self.waiting.len());
        for mut w in self.waiting.drain(..) {
            if now >= w.deadline {
                left.push((w.ticket, w.item, Left::TimedOut));
                continue;
            }
            match decide(&mut w.item) {
                Verdict::Wait => kept.push_back(w),
                Verdict::Leave(r) => left.push((w.ticket, w.item, Left::Served(r))),
            }
        }
        self.waiting = kept;
        left
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(size: usize) -> (WaitList<&'static str>, Instant) {
        (WaitList::new(size, Duration::from_secs(30)), Instant::now())
    }

    /// One free slot at `endpoint`: the first waiter for it takes it.
    fn one_slot(endpoint: char) -> impl FnMut(&mut &'static str) -> Verdict<char> {
        let mut free = true;
        move |wants: &mut &'static str| {
            if free && wants.contains(endpoint) {
                free = false;
                Verdict::Leave(endpoint)
            } else {
                Verdict::Wait
            }
        }
    }

    fn served<R: Copy>(left: &[(Ticket, &'static str, Left<R>)]) -> Vec<(&'static str, R)> {
        left.iter()
            .filter_map(|(_, item, l)| match l {
                Left::Served(r) => Some((*item, *r)),
                Left::TimedOut => None,
            })
            .collect()
    }

    #[test]
    fn waiters_are_served_in_arrival_order() {
        let (mut q, t0) = list(8);
        for who in ["first:a", "second:a", "third:a"] {
            q.join(who, t0).unwrap();
        }
        for expected in ["first:a", "second:a", "third:a"] {
            let left = q.offer(t0, one_slot('a'));
            assert_eq!(served(&left), vec![(expected, 'a')]);
        }
        assert!(q.is_empty());
    }

    #[test]
    fn a_freed_slot_goes_to_the_earliest_waiter_that_can_use_it_and_the_others_keep_their_place() {
        let (mut q, t0) = list(8);
        q.join("x only", t0).unwrap();
        q.join("a-or-b", t0).unwrap();
        q.join("b only", t0).unwrap();
        let left = q.offer(t0, one_slot('b'));
        assert_eq!(served(&left), vec![("a-or-b", 'b')]);
        let left = q.offer(t0, one_slot('b'));
        assert_eq!(served(&left), vec![("b only", 'b')]);
        assert_eq!(q.len(), 1, "the x waiter is still first in line");
    }

    #[test]
    fn the_queue_holds_at_most_size_waiters() {
        let (mut q, t0) = list(2);
        q.join("a", t0).unwrap();
        q.join("a", t0).unwrap();
        assert_eq!(q.join("a", t0), Err(Full));
        q.offer(t0, one_slot('a'));
        assert!(q.join("a", t0).is_ok(), "a place freed");
        let (mut none, _) = list(0);
        assert_eq!(none.join("a", t0), Err(Full), "size 0: nobody waits");
    }

    #[test]
    fn a_waiter_past_its_deadline_times_out_and_is_never_served() {
        let (mut q, t0) = list(8);
        let (_, deadline) = q.join("early:a", t0).unwrap();
        assert_eq!(deadline, t0 + Duration::from_secs(30));
        q.join("late:a", t0 + Duration::from_secs(10)).unwrap();
        let left = q.offer(deadline, one_slot('a'));
        assert!(matches!(left[0], (_, "early:a", Left::TimedOut)));
        assert_eq!(served(&left), vec![("late:a", 'a')]);
        // Just before the deadline it is still served.
        let (mut q, t0) = list(8);
        let (_, deadline) = q.join("a", t0).unwrap();
        let left = q.offer(deadline - Duration::from_millis(1), one_slot('a'));
        assert_eq!(served(&left), vec![("a", 'a')]);
    }

    #[test]
    fn a_waiter_that_leaves_is_never_served_and_frees_its_place() {
        let (mut q, t0) = list(2);
        let (gone, _) = q.join("gone:a", t0).unwrap();
        q.join("stays:a", t0).unwrap();
        assert_eq!(q.leave(gone), Some("gone:a"));
        assert_eq!(q.leave(gone), None, "leaving twice is harmless");
        assert!(q.join("new:a", t0).is_ok());
        let left = q.offer(t0, one_slot('a'));
        assert_eq!(served(&left), vec![("stays:a", 'a')]);
    }

    #[test]
    fn a_served_waiter_cannot_leave_again() {
        let (mut q, t0) = list(2);
        let (t, _) = q.join("a", t0).unwrap();
        q.offer(t0, one_slot('a'));
        assert_eq!(q.leave(t), None);
    }

    #[test]
    fn waiters_may_leave_failed() {
        // A waiter whose candidates all left rotation leaves with an error at once.
        let (mut q, t0) = list(4);
        q.join("a", t0).unwrap();
        q.join("gone", t0).unwrap();
        let left = q.offer(t0, |w: &mut &str| {
            if *w == "gone" {
                Verdict::Leave("no_healthy_endpoints")
            } else {
                Verdict::Wait
            }
        });
        assert_eq!(served(&left), vec![("gone", "no_healthy_endpoints")]);
        assert_eq!(q.len(), 1);
    }

    proptest::proptest! {
        /// However joins, leaves and offers interleave: never more than `size` wait, every
        /// ticket leaves at most once, and the served come out in arrival order.
        #[test]
        fn fifo_bounded_and_each_waiter_leaves_once(
            ops in proptest::collection::vec((0u8..3, 0usize..16), 1..60),
            size in 0usize..6,
        ) {
            let t0 = Instant::now();
            let mut q: WaitList<usize> = WaitList::new(size, Duration::from_secs(30));
            let mut tickets = Vec::new();
            let mut gone = std::collections::HashSet::new();
            let mut last_served = None;
            for (n, (op, arg)) in ops.into_iter().enumerate() {
                match op {
                    0 => {
                        if let Ok((t, _)) = q.join(n, t0) { tickets.push(t) }
                    }
                    1 => {
                        if let Some(&t) = tickets.get(arg) {
                            if q.leave(t).is_some() { proptest::prop_assert!(gone.insert(t)) }
                        }
                    }
                    _ => {
                        let mut budget = arg % 3;
                        for (t, item, _) in q.offer(t0, |_| {
                            if budget > 0 { budget -= 1; Verdict::Leave(()) } else { Verdict::Wait }
                        }) {
                            proptest::prop_assert!(gone.insert(t));
                            proptest::prop_assert!(last_served.is_none_or(|l| l < item));
                            last_served = Some(item);
                        }
                    }
                }
                proptest::prop_assert!(q.len() <= size);
            }
        }
    }
}
