//! Internals the crate's own benchmarks (`benches/`) drive without a socket. Not an API: hidden
//! from the docs, and free to change with the code it measures.

use crate::broker::{Broker, Link};
use crate::config::Config;
use crate::protocol::{ByteStr, Props, QoS, RetainHandling, SubscriptionOptions};
use crate::session::{Message, Outgoing};
use bytes::Bytes;
use std::sync::Arc;
use std::task::Waker;
use std::time::Instant;

/// A broker with online sessions subscribed at QoS 0 to one topic, and a run of messages for it:
/// the router's and the sessions' share of a fan-out, as a connection drives it.
pub struct Fanout {
    broker: Broker,
    links: Vec<Link>,
    run: Vec<Arc<Message>>,
    batch: Vec<Outgoing>,
}

impl Fanout {
    /// `subscribers` sessions on `bench/fanout`, and a run of `run` 64-byte messages to it.
    pub fn new(subscribers: usize, run: usize) -> Self {
        let broker = Broker::new(Arc::new(Config::default()));
        let options = SubscriptionOptions {
            qos: QoS::AtMostOnce,
            no_local: false,
            retain_as_published: false,
            retain_handling: RetainHandling::DoNotSend,
        };
        let links = (0..subscribers)
            .map(|i| {
                let link = broker
                    .attach(
                        format!("sub-{i}").into(),
                        true,
                        100,
                        0,
                        crate::broker::Owner::anonymous(),
                    )
                    .link;
                let reason = link.subscribe("bench/fanout", options, None, None);
                assert_eq!(reason.map(|r| r.0), Ok(0), "subscription {i} granted QoS 0");
                link
            })
            .collect();
        let topic = ByteStr::from_static("bench/fanout").expect("a valid topic");
        let run = (0..run)
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
            .collect();
        Self {
            broker,
            links,
            run,
            batch: Vec::new(),
        }
    }

    /// Routes the run to every session, then drains every session's queue as its connection
    /// would (QoS 0 runs come out as slices, up to 64 KiB a turn); returns the deliveries
    /// drained.
    pub fn route_and_drain(&mut self) -> usize {
        let matched = self.broker.publish_run(std::hint::black_box(&self.run));
        debug_assert_eq!(matched, self.links.len());
        let now = Instant::now();
        let mut drained = 0;
        for link in &self.links {
            loop {
                let taken = link.take_outgoing(now, 64 * 1024, Waker::noop(), &mut self.batch);
                assert!(taken.is_ok(), "the session is attached");
                if self.batch.is_empty() {
                    break;
                }
                for o in self.batch.drain(..) {
                    drained += match &o {
                        Outgoing::Run(slice) => slice.messages().len(),
                        _ => 1,
                    };
                    std::hint::black_box(o);
                }
            }
        }
        drained
    }
}
