//! `sessions.overflow = "backpressure"` (issue 17): a connected QoS 1/2 subscriber whose queue
//! is full holds its publishers back, rather than have the broker acknowledge messages it then
//! drops. The wait is bounded, ends when the subscriber has room or goes offline, and a client
//! never waits for its own queue.

mod support;

use bytes::BytesMut;
use roost::Metrics;
use roost::config::Overflow;
use roost::protocol::ProtocolVersion::V3_1_1;
use roost::protocol::{Packet, PubResp, QoS};
use std::time::Duration;
use support::*;

const LIMIT: usize = 20;
const SENT: u16 = 500;
/// Most of one publisher's messages routed as one run: a run goes into a full queue whole, and
/// its publisher stops after it, so a queue exceeds its limit by about a run per publisher.
const RUN: usize = 256;

fn backpressure(max_wait_ms: u64) -> impl FnOnce(&mut roost::config::Config) {
    move |c| {
        c.sessions.max_queued_messages = LIMIT;
        c.sessions.overflow = Overflow::Backpressure;
        c.sessions.backpressure_max_wait_ms = max_wait_ms;
    }
}

/// QoS 1 PUBLISHes 1..=SENT to `topic`, payload = the packet id, in one write.
async fn flood(publisher: &mut Raw, topic: &str) {
    let mut out = BytesMut::new();
    for id in 1..=SENT {
        let p = publish_packet(topic, &id.to_be_bytes(), QoS::AtLeastOnce, false, id);
        Packet::Publish(p).encode(V3_1_1, &mut out).unwrap();
    }
    publisher.send_bytes(&out).await;
}

/// Waits (polling the counter) until a publisher has been held back.
async fn until_paused(b: &TestBroker) {
    let metrics = b.server.broker().metrics();
    tokio::time::timeout(Duration::from_secs(10), async {
        while Metrics::get(&metrics.publishers_paused) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the publisher is held back");
}

/// Reads `n` PUBACKs, in order from 1, answering nothing else.
async fn pubacks(publisher: &mut Raw, n: u16) {
    for id in 1..=n {
        match publisher.recv().await {
            Packet::PubAck(a) => assert_eq!(a.packet_id, id),
            other => panic!("expected PUBACK {id}, got {other:?}"),
        }
    }
}

/// Reads and acknowledges the SENT messages of one [`flood`], checking each arrives in order;
/// `pause`, if given, after every tenth (a slow reader).
async fn take_in_order(sub: &mut Raw, pause: Option<Duration>) {
    for id in 1..=SENT {
        let p = sub.expect_publish().await;
        assert_eq!(p.payload[..], id.to_be_bytes(), "in order, none lost");
        sub.send(&Packet::PubAck(PubResp::new(p.packet_id))).await;
        if let Some(pause) = pause.filter(|_| id % 10 == 0) {
            tokio::time::sleep(pause).await;
        }
    }
}

#[tokio::test]
async fn a_slow_subscriber_gets_every_message_its_publisher_was_told_was_accepted() {
    // The wait's bound is far off: only the subscriber's room lets the publisher go on.
    let b = start_with(backpressure(60_000)).await;
    let broker = b.server.broker().clone();
    let mut slow = Raw::connect(b.addr, V3_1_1, "slow", true).await;
    slow.subscribe("bp/#", QoS::AtLeastOnce).await;
    let mut publisher = Raw::connect(b.addr, V3_1_1, "fast", true).await;
    flood(&mut publisher, "bp/x").await;
    until_paused(&b).await;
    // Held back with the subscriber's queue over its limit by at most two runs (the one that
    // found it full, and the one being read then), nothing dropped.
    let (queued, _) = broker.queue_depth("slow").unwrap();
    assert!(queued <= LIMIT + 2 * RUN, "{queued} queued");
    assert_eq!(Metrics::get(&broker.metrics().messages_dropped), 0);
    // The subscriber reads (and acknowledges) at last: everything, in order.
    tokio::time::timeout(Duration::from_secs(20), take_in_order(&mut slow, None))
        .await
        .expect("all delivered within 20 s");
    pubacks(&mut publisher, SENT).await;
    assert_eq!(Metrics::get(&broker.metrics().messages_dropped), 0);
    b.server.shutdown().await;
}

#[tokio::test]
async fn a_subscriber_that_takes_nothing_holds_its_publisher_for_the_bound_only() {
    let b = start_with(backpressure(100)).await;
    let broker = b.server.broker().clone();
    let mut stalled = Raw::connect(b.addr, V3_1_1, "stalled", true).await;
    stalled.subscribe("bp/#", QoS::AtLeastOnce).await;
    let mut publisher = Raw::connect(b.addr, V3_1_1, "fast", true).await;
    flood(&mut publisher, "bp/x").await;
    // Every message is answered though the subscriber reads nothing: past the bound it is
    // stalled, the publisher is read again, and the messages it has no room for are dropped,
    // counted.
    tokio::time::timeout(Duration::from_secs(20), pubacks(&mut publisher, SENT))
        .await
        .expect("the publisher is read again");
    assert!(Metrics::get(&broker.metrics().publishers_paused) >= 1);
    let (queued, _) = broker.queue_depth("stalled").unwrap();
    assert!(queued <= LIMIT + 2 * RUN, "{queued} queued");
    assert!(Metrics::get(&broker.metrics().dropped_queue_full) > 0);
    drop(stalled);
    b.server.shutdown().await;
}

#[tokio::test]
async fn a_subscriber_going_offline_lets_its_publishers_go_on() {
    let b = start_with(backpressure(60_000)).await;
    let mut slow = Raw::connect(b.addr, V3_1_1, "leaving", true).await;
    slow.subscribe("bp/#", QoS::AtLeastOnce).await;
    let mut publisher = Raw::connect(b.addr, V3_1_1, "fast", true).await;
    flood(&mut publisher, "bp/x").await;
    until_paused(&b).await;
    // Its unread messages are not read: DISCONNECT, and gone.
    slow.send(&Packet::Disconnect(Default::default())).await;
    drop(slow);
    tokio::time::timeout(Duration::from_secs(20), pubacks(&mut publisher, SENT))
        .await
        .expect("the publisher goes on once no one drains the queue");
    b.server.shutdown().await;
}

#[tokio::test]
async fn a_client_is_never_held_back_by_its_own_queue() {
    // Held back by its own full queue, it would stop reading the PUBACKs that drain it: full,
    // its own queue drops instead.
    let b = start_with(backpressure(60_000)).await;
    let broker = b.server.broker().clone();
    let mut me = Raw::connect(b.addr, V3_1_1, "me", true).await;
    me.subscribe("me/#", QoS::AtLeastOnce).await;
    flood(&mut me, "me/x").await;
    let (mut acks, mut delivered) = (0u16, Vec::new());
    let read = async {
        while acks < SENT {
            match me.recv().await {
                Packet::PubAck(a) => {
                    acks += 1;
                    assert_eq!(a.packet_id, acks);
                }
                Packet::Publish(p) => {
                    delivered.push(u16::from_be_bytes([p.payload[0], p.payload[1]]));
                    me.send(&Packet::PubAck(PubResp::new(p.packet_id))).await;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        for p in me.drain().await {
            delivered.push(u16::from_be_bytes([p.payload[0], p.payload[1]]));
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("no wait on itself");
    assert!(delivered.windows(2).all(|w| w[0] < w[1]), "in order");
    let dropped = Metrics::get(&broker.metrics().dropped_queue_full);
    assert_eq!(delivered.len() as u64 + dropped, u64::from(SENT));
    assert_eq!(Metrics::get(&broker.metrics().publishers_paused), 0);
    b.server.shutdown().await;
}

#[tokio::test]
async fn publishers_waiting_on_a_draining_subscriber_lose_nothing_past_the_bound() {
    // Four publishers, one subscriber that keeps taking messages but more slowly than they
    // come, for longer in all than the wait's bound: the bound counts from the subscriber's
    // last progress, not from the first wait, so no publisher gives up on it.
    const PUBLISHERS: u16 = 4;
    const BOUND_MS: u64 = 300;
    let b = start_with(backpressure(BOUND_MS)).await;
    let broker = b.server.broker().clone();
    let mut slow = Raw::connect(b.addr, V3_1_1, "slow", true).await;
    slow.subscribe("bp/#", QoS::AtLeastOnce).await;
    let mut publishers = Vec::new();
    for i in 0..PUBLISHERS {
        let mut p = Raw::connect(b.addr, V3_1_1, &format!("pub{i}"), true).await;
        flood(&mut p, &format!("bp/{i}")).await;
        publishers.push(p);
    }
    let started = std::time::Instant::now();
    let read = async {
        let mut next = vec![1u16; usize::from(PUBLISHERS)];
        for n in 0..u32::from(SENT) * u32::from(PUBLISHERS) {
            let Some(Packet::Publish(p)) = slow.try_recv_for(Duration::from_secs(2)).await else {
                panic!(
                    "after {n}: dropped {} paused {} {:?}",
                    Metrics::get(&broker.metrics().messages_dropped),
                    Metrics::get(&broker.metrics().publishers_paused),
                    broker.queue_depth("slow")
                );
            };
            let i: usize = p.topic[3..].parse().unwrap();
            assert_eq!(
                p.payload[..],
                next[i].to_be_bytes(),
                "per publisher in order"
            );
            next[i] += 1;
            slow.send(&Packet::PubAck(PubResp::new(p.packet_id))).await;
            if n % 10 == 0 {
                // A slow reader: about 1,000 messages a second at most, so the ~1,000 that
                // filled the queue take longer than the bound to drain (the publishers wait
                // through several bounds); the bound is long enough that a busy machine does
                // not leave this reader without a turn for all of one.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("all delivered within 30 s");
    assert!(
        started.elapsed() > Duration::from_millis(BOUND_MS),
        "the subscriber took longer than the bound"
    );
    for p in &mut publishers {
        pubacks(p, SENT).await;
    }
    assert!(Metrics::get(&broker.metrics().publishers_paused) > 0);
    assert_eq!(Metrics::get(&broker.metrics().messages_dropped), 0);
    b.server.shutdown().await;
}

#[tokio::test]
async fn a_message_no_connection_sent_holds_no_one_back_and_grows_no_queue() {
    // `Broker::publish` (wills, an embedder's messages) has no publisher to hold back: a full
    // queue drops it, as with "drop_new", rather than take it beyond its limit for nothing.
    let b = start_with(backpressure(60_000)).await;
    let broker = b.server.broker().clone();
    let mut stalled = Raw::connect(b.addr, V3_1_1, "stalled", true).await;
    stalled.subscribe("bp/#", QoS::AtLeastOnce).await;
    for n in 0..500u16 {
        broker.publish(roost::Message {
            topic: roost::protocol::ByteStr::from_static("bp/x").unwrap(),
            payload: n.to_be_bytes().to_vec().into(),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Default::default(),
            publisher: "".into(),
            expires_at: None,
        });
    }
    let (queued, inflight) = broker.queue_depth("stalled").unwrap();
    assert!(queued <= LIMIT, "{queued} queued");
    assert_eq!(
        queued + inflight + Metrics::get(&broker.metrics().dropped_queue_full) as usize,
        500
    );
    assert_eq!(Metrics::get(&broker.metrics().publishers_paused), 0);
    drop(stalled);
    b.server.shutdown().await;
}

#[tokio::test]
async fn a_publisher_held_back_longer_than_its_keep_alive_is_not_cut_off() {
    // Keep alive 1 s: the broker closes a client it has not heard from for 1.5 s. A held-back
    // publisher is not read, so it is marked heard from while it waits (the bound is at most
    // half its grace), here for the 2.4 s a slow subscriber takes to drain the first run that
    // filled its queue.
    let b = start_with(backpressure(60_000)).await;
    let broker = b.server.broker().clone();
    let mut slow = Raw::connect(b.addr, V3_1_1, "slow", true).await;
    slow.subscribe("bp/#", QoS::AtLeastOnce).await;
    let mut publisher = Raw::open(b.addr, V3_1_1).await;
    let mut connect = connect_packet(V3_1_1, "brief", true);
    connect.keep_alive = 1;
    publisher.send(&Packet::Connect(Box::new(connect))).await;
    assert!(matches!(publisher.recv().await, Packet::ConnAck(a) if !a.reason.is_error()));
    flood(&mut publisher, "bp/x").await;
    until_paused(&b).await;
    let started = std::time::Instant::now();
    // About 100 messages a second: 5 s for the 500.
    let read = take_in_order(&mut slow, Some(Duration::from_millis(100)));
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("all delivered within 30 s");
    assert!(
        started.elapsed() > Duration::from_millis(1500),
        "held past its grace"
    );
    pubacks(&mut publisher, SENT).await;
    assert_eq!(Metrics::get(&broker.metrics().messages_dropped), 0);
    b.server.shutdown().await;
}

#[tokio::test]
async fn a_shared_member_leaving_hands_its_messages_to_a_full_one_without_loss() {
    // The leaving member's unfinished messages were accepted already: a full member takes them
    // past its limit (there is no publisher to hold back for them) rather than drop them.
    let b = start_with(backpressure(60_000)).await;
    let broker = b.server.broker().clone();
    let mut stay = Raw::connect(b.addr, V3_1_1, "stay", true).await;
    stay.subscribe("$share/g/bp/#", QoS::AtLeastOnce).await;
    let mut leave = Raw::connect(b.addr, V3_1_1, "leave", true).await;
    leave.subscribe("$share/g/bp/#", QoS::AtLeastOnce).await;
    let mut publisher = Raw::connect(b.addr, V3_1_1, "fast", true).await;
    flood(&mut publisher, "bp/x").await;
    until_paused(&b).await;
    let (left, _) = broker.queue_depth("leave").unwrap();
    assert!(left > 0, "the leaving member holds some");
    leave.send(&Packet::Disconnect(Default::default())).await;
    drop(leave);
    let read = async {
        let mut got = Vec::new();
        while got.len() < usize::from(SENT) {
            let p = stay.expect_publish().await;
            got.push(u16::from_be_bytes([p.payload[0], p.payload[1]]));
            stay.send(&Packet::PubAck(PubResp::new(p.packet_id))).await;
        }
        got
    };
    let mut got = tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("every message reaches the member that stayed");
    got.sort_unstable();
    got.dedup();
    assert_eq!(got.len(), usize::from(SENT), "each message at least once");
    pubacks(&mut publisher, SENT).await;
    assert_eq!(Metrics::get(&broker.metrics().messages_dropped), 0);
    b.server.shutdown().await;
}
