//! What load-aware picking adds to each request (issue 10, SPEC 10.2): `select` and the
//! first pick, as `forward` runs them, at 10, 100 and 1,000 endpoints in one tier, without
//! any load signal (today's order) and with a fresh load report on every endpoint. The difference is the
//! added cost. `least-connections` and `round-robin` at 100 endpoints for comparison, and
//! the whole failover order at 1,000 (what a request that fails over everywhere pays).
//!
//! `cargo bench --bench picking` (about a minute); README "Load-aware picking" has figures.

use std::hint::black_box;
use std::time::{Duration, Instant};

use corral::config::{LoadBalancer, ProxyConfig};
use corral::proxy::candidates::{self, Order, WantedModel};
use corral_actors::routing::RoutingTable;
use corral_actors::select::RouteClass;
use corral_actors::Candidate;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

mod common;

/// One request's picking, as `forward` does it: the eligible tiers, then the first
/// candidate (cloned); the rest of the order is worked out only on failover.
fn pick(table: &RoutingTable, proxy: &ProxyConfig, wanted: &WantedModel) -> Option<Candidate> {
    let routed = candidates::select(table, proxy, RouteClass::OpenAi, wanted).expect("candidates");
    let mut order = Order::new(&routed.tiers, proxy, wanted.name(), Instant::now(), None);
    order.next(&routed.tiers).cloned()
}

/// How many candidates the whole order holds (every one should be admissible).
fn ordered(table: &RoutingTable, proxy: &ProxyConfig, wanted: &WantedModel) -> usize {
    let routed = candidates::select(table, proxy, RouteClass::OpenAi, wanted).expect("candidates");
    let mut order = Order::new(&routed.tiers, proxy, wanted.name(), Instant::now(), None);
    std::iter::from_fn(|| order.next(&routed.tiers)).count()
}

fn proxy(balancer: LoadBalancer) -> ProxyConfig {
    ProxyConfig {
        load_balancer: balancer,
        ..ProxyConfig::default()
    }
}

fn case(c: &mut Criterion, balancer: LoadBalancer, label: &str, sizes: &[usize]) {
    let outcomes = common::outcomes();
    let proxy = proxy(balancer);
    let wanted = common::wanted();
    let mut group = c.benchmark_group(format!("picking/{label}"));
    for &n in sizes {
        for (signals, name) in [(false, "no-signal"), (true, "signals")] {
            let table = common::fleet(n, signals, &outcomes, Instant::now());
            assert_eq!(
                ordered(&table, &proxy, &wanted),
                n,
                "every endpoint is admissible"
            );
            assert_eq!(common::all_fresh(&table, Instant::now()), signals);
            group.bench_with_input(BenchmarkId::new(name, n), &table, |b, table| {
                b.iter(|| pick(black_box(table), &proxy, &wanted))
            });
        }
    }
    group.finish();
}

/// A request that fails over through every candidate: the whole order, at 1,000 endpoints.
fn whole_order(c: &mut Criterion) {
    let outcomes = common::outcomes();
    let proxy = proxy(LoadBalancer::Priority);
    let wanted = common::wanted();
    let mut group = c.benchmark_group("picking/priority-whole-order");
    for (signals, name) in [(false, "no-signal"), (true, "signals")] {
        let table = common::fleet(1000, signals, &outcomes, Instant::now());
        group.bench_with_input(BenchmarkId::new(name, 1000), &table, |b, table| {
            b.iter(|| ordered(black_box(table), &proxy, &wanted))
        });
    }
    group.finish();
}

fn picking(c: &mut Criterion) {
    case(c, LoadBalancer::Priority, "priority", &[10, 100, 1000]);
    case(
        c,
        LoadBalancer::LeastConnections,
        "least-connections",
        &[100],
    );
    case(c, LoadBalancer::RoundRobin, "round-robin", &[100]);
}

criterion_group! {
    name = benches;
    // Short runs: twelve cases in well under two minutes; the spread stays small at these sizes.
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = picking, whole_order
}
criterion_main!(benches);
