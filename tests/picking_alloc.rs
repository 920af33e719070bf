//! Picking must not allocate per candidate (issue 10): one request's `select`, its first
//! pick and its whole failover order, with fresh load signals and a model named, make as
//! many allocations at 1,000 endpoints as at 10. Counted by a global allocator that counts on this thread while asked to (the test
//! harness's other threads allocate meanwhile); a reallocation counts too, so a vector that
//! grows with the fleet shows.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::time::Instant;

use corral::config::{LoadBalancer, ModelAliases, ProxyConfig};
use corral::proxy::candidates::{self, Order, WantedModel};
use corral_actors::routing::RoutingTable;
use corral_actors::select::RouteClass;

#[path = "../benches/common/mod.rs"]
mod common;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    // `try_with`: the allocator may run while this thread's locals are being torn down.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

// SAFETY: every call is passed on to `System` unchanged; counting touches no memory it hands out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations (and reallocations) made on this thread by `f`.
fn allocations<R>(f: impl FnOnce() -> R) -> (u64, R) {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|on| on.set(true));
    let r = f();
    COUNTING.with(|on| on.set(false));
    (ALLOCATIONS.with(Cell::get), r)
}

/// One request's picking, as `forward` does it (the eligible tiers, the first candidate,
/// cloned), then the whole failover order; returns how many candidates it ordered.
fn pick(table: &RoutingTable, proxy: &ProxyConfig, wanted: &WantedModel) -> usize {
    let routed = candidates::select(table, proxy, RouteClass::OpenAi, wanted).expect("candidates");
    let mut order = Order::new(&routed.tiers, proxy, wanted.name(), Instant::now(), None);
    let first = order.next(&routed.tiers).cloned();
    let mut ordered = usize::from(first.is_some());
    while order.next(&routed.tiers).is_some() {
        ordered += 1;
    }
    ordered
}

#[test]
fn picking_allocates_the_same_for_10_and_1000_endpoints() {
    let outcomes = common::outcomes();
    let wanted = common::wanted();
    for balancer in [
        LoadBalancer::Priority,
        LoadBalancer::LeastConnections,
        LoadBalancer::RoundRobin,
    ] {
        let proxy = ProxyConfig {
            load_balancer: balancer,
            ..ProxyConfig::default()
        };
        let counts: Vec<u64> = [10, 1000]
            .into_iter()
            .map(|n| {
                let table = common::fleet(n, true, &outcomes, Instant::now());
                assert!(common::all_fresh(&table, Instant::now()));
                pick(&table, &proxy, &wanted); // warm: anything done once per thread is done now
                let (count, picked) = allocations(|| pick(&table, &proxy, &wanted));
                assert_eq!(picked, n);
                count
            })
            .collect();
        eprintln!("{balancer:?}: allocations per pick at 10 and 1000 endpoints: {counts:?}");
        assert_eq!(
            counts[0], counts[1],
            "{balancer:?}: allocations grow with the fleet"
        );
    }
}

#[test]
fn picking_for_an_alias_allocates_the_same_for_10_and_1000_endpoints() {
    let outcomes = common::outcomes();
    let aliases: ModelAliases = [(
        "nick".to_string(),
        Arc::from(vec!["absent".to_string(), common::MODEL.to_string()]),
    )]
    .into_iter()
    .collect();
    let wanted = WantedModel::new(Some("nick".to_string()), &aliases);
    let proxy = ProxyConfig::default();
    let counts: Vec<u64> = [10, 1000]
        .into_iter()
        .map(|n| {
            let table = common::fleet(n, true, &outcomes, Instant::now());
            pick(&table, &proxy, &wanted);
            let (count, picked) = allocations(|| pick(&table, &proxy, &wanted));
            assert_eq!(picked, n);
            count
        })
        .collect();
    eprintln!("alias: allocations per pick at 10 and 1000 endpoints: {counts:?}");
    assert_eq!(counts[0], counts[1], "allocations grow with the fleet");
}
