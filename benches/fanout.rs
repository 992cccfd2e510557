//! Fan-out routing micro-benchmark (issue 4): a run of QoS 0 messages on one topic routed to
//! 1,000 subscribed sessions, then every session's queue drained, all in one process. It times
//! the router's and the sessions' share of a delivery (matching, queueing a shared run to each
//! session, draining it as slices) without sockets, encoding or another process in the way, so a change to that path
//! can be judged here with far less noise than `roost-bench fanout` has on a shared machine.

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use roost::broker::{Broker, Link};
use roost::config::Config;
use roost::protocol::{ByteStr, Props, QoS, RetainHandling, SubscriptionOptions};
use roost::session::{Message, Outgoing};
use std::hint::black_box;
use std::sync::Arc;
use std::task::Waker;
use std::time::Instant;

const SUBSCRIBERS: usize = 1_000;
/// Messages per run: what one read of a busy publisher's socket typically holds.
const RUN: usize = 64;

/// A broker with `SUBSCRIBERS` online sessions subscribed to `bench/fanout` at QoS 0.
fn broker() -> (Broker, Vec<Link>) {
    let broker = Broker::new(Arc::new(Config::default()));
    let options = SubscriptionOptions {
        qos: QoS::AtMostOnce,
        no_local: false,
        retain_as_published: false,
        retain_handling: RetainHandling::DoNotSend,
    };
    let links = (0..SUBSCRIBERS)
        .map(|i| {
            let link = broker.attach(format!("sub-{i}").into(), true, 100, 0).link;
            let reason = link.subscribe("bench/fanout", options, None);
            assert_eq!(reason.map(|r| r.0), Ok(0), "subscription {i} granted QoS 0");
            link
        })
        .collect();
    (broker, links)
}

/// A run of 64-byte messages on the benchmark's topic.
fn run() -> Vec<Arc<Message>> {
    let topic = ByteStr::from_static("bench/fanout").expect("a valid topic");
    (0..RUN)
        .map(|i| {
            Arc::new(Message {
                topic: topic.clone(),
                payload: Bytes::from(vec![i as u8; 64]),
                qos: QoS::AtMostOnce,
                retain: false,
                properties: Props::default(),
                publisher: Arc::from("pub"),
                expires_at: None,
            })
        })
        .collect()
}

fn fanout(c: &mut Criterion) {
    let (broker, links) = broker();
    let mut batch = Vec::new();
    let run = run();
    let mut g = c.benchmark_group("fanout");
    g.throughput(Throughput::Elements((SUBSCRIBERS * RUN) as u64));
    g.bench_function("route_64_to_1000_and_drain", |b| {
        b.iter(|| {
            let matched = broker.publish_run(black_box(&run));
            debug_assert_eq!(matched, SUBSCRIBERS);
            let now = Instant::now();
            let mut drained = 0;
            for link in &links {
                // As a connection drains: QoS 0 runs come out as slices, up to 64 KiB a turn.
                loop {
                    let taken = link.take_outgoing(now, 64 * 1024, Waker::noop(), &mut batch);
                    assert!(taken.is_ok(), "the session is attached");
                    if batch.is_empty() {
                        break;
                    }
                    for o in batch.drain(..) {
                        drained += match &o {
                            Outgoing::Run(slice) => slice.messages().len(),
                            _ => 1,
                        };
                        black_box(o);
                    }
                }
            }
            assert_eq!(drained, SUBSCRIBERS * RUN, "every delivery was queued");
        });
    });
    g.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
