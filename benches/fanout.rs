//! Fan-out routing micro-benchmark (issue 4): a run of QoS 0 messages on one topic routed to
//! 1,000 subscribed sessions, then every session's queue drained, all in one process. It times
//! the router's and the sessions' share of a delivery (matching, queueing a shared run to each
//! session, draining it as slices) without sockets, encoding or another process in the way, so a change to that path
//! can be judged here with far less noise than `roost-bench fanout` has on a shared machine.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use roost::bench_support::Fanout;

const SUBSCRIBERS: usize = 1_000;
/// Messages per run: what one read of a busy publisher's socket typically holds.
const RUN: usize = 64;

fn fanout(c: &mut Criterion) {
    let mut fanout = Fanout::new(SUBSCRIBERS, RUN);
    let mut g = c.benchmark_group("fanout");
    g.throughput(Throughput::Elements((SUBSCRIBERS * RUN) as u64));
    g.bench_function("route_64_to_1000_and_drain", |b| {
        b.iter(|| {
            let drained = fanout.route_and_drain();
            assert_eq!(drained, SUBSCRIBERS * RUN, "every delivery was queued");
        });
    });
    g.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
