//! Slow consumers (4.5 message receipt, 4.9 flow control; Roost's bounded session queue): a
//! subscriber that stops reading fills only its own queue. Its messages are dropped and counted;
//! the publisher and the other subscribers carry on at full speed and lose nothing.

mod support;

use bytes::BytesMut;
use roost::Metrics;
use roost::protocol::ProtocolVersion::{V3_1_1, V5};
use roost::protocol::{Packet, QoS, ReasonCode};
use std::time::Duration;
use support::*;

/// Messages published in all.
const MESSAGES: usize = 20_000;
/// QoS 0 messages sent in one write, followed by one QoS 1 message for a PUBACK. Below the
/// queue limit, so the healthy subscriber, read between bursts, never loses one.
const BURST: usize = 50;
const QUEUE_LIMIT: usize = 100;
const PAYLOAD: usize = 1024;

/// The payload of message `n`: its number, padded to 1 KiB.
fn payload(n: usize) -> Vec<u8> {
    let mut p = format!("{n:08}").into_bytes();
    p.resize(PAYLOAD, b'.');
    p
}

/// The message number a payload carries.
fn number(p: &roost::protocol::Publish) -> usize {
    std::str::from_utf8(&p.payload[..8])
        .unwrap()
        .parse()
        .unwrap()
}

/// A subscriber to `flood/#` that will never read: a small receive buffer, so its socket is
/// full after a few KiB and everything else waits in the broker.
async fn stalled_subscriber(b: &TestBroker) -> Raw {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(b.addr).await.unwrap();
    let mut raw = Raw::from_stream(stream, V3_1_1);
    raw.send(&Packet::Connect(Box::new(connect_packet(
        V3_1_1, "stalled", true,
    ))))
    .await;
    assert!(matches!(raw.recv().await, Packet::ConnAck(a) if !a.reason.is_error()));
    assert_eq!(raw.subscribe("flood/#", QoS::AtMostOnce).await, vec![0]);
    raw
}

#[tokio::test]
async fn a_stalled_subscriber_fills_only_its_own_queue() {
    let b = start_with(|c| c.sessions.max_queued_messages = QUEUE_LIMIT).await;
    let broker = b.server.broker().clone();
    let mut stalled = stalled_subscriber(&b).await;
    let mut healthy = Raw::connect(b.addr, V5, "healthy", true).await;
    healthy.subscribe("flood/#", QoS::AtMostOnce).await;
    let mut publisher = Raw::connect(b.addr, V5, "flooder", true).await;

    let flood = async {
        let mut received = 0;
        let mut packet_id = 0u16;
        let mut out = BytesMut::new();
        for burst in 0..MESSAGES / BURST {
            out.clear();
            for n in burst * BURST..(burst + 1) * BURST {
                let p = publish_packet("flood/data", &payload(n), QoS::AtMostOnce, false, 0);
                Packet::Publish(p).encode(V5, &mut out).unwrap();
            }
            publisher.send_bytes(&out).await;
            // The publisher's QoS 1 message is acknowledged at once: the stalled subscriber
            // holds nothing up. (No one subscribes to `flow/#`: v5 PUBACK 0x10.)
            packet_id += 1;
            let reason = publisher
                .publish_acked("flow/mark", b"m", QoS::AtLeastOnce, false, packet_id)
                .await;
            assert_eq!(reason, ReasonCode::NO_MATCHING_SUBSCRIBERS);
            // The healthy subscriber gets the whole burst, in order.
            for _ in 0..BURST {
                let p = healthy.expect_publish().await;
                assert_eq!(number(&p), received, "healthy subscriber: in order, no gap");
                received += 1;
            }
        }
        received
    };
    let received = tokio::time::timeout(Duration::from_secs(20), flood)
        .await
        .expect("the flood finishes within 20 s");
    assert_eq!(received, MESSAGES);
    healthy.expect_nothing().await;

    let dropped = Metrics::get(&broker.metrics().messages_dropped) as usize;
    assert!(dropped > 0, "the stalled subscriber's queue overflowed");
    // Now read what the stalled subscriber was sent: an in-order subsequence, and together with
    // the drops (all of them its own: the healthy one got everything) every message once.
    let got = tokio::time::timeout(Duration::from_secs(20), stalled.drain())
        .await
        .expect("the backlog drains within 20 s");
    let numbers: Vec<usize> = got.iter().map(number).collect();
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "in order, gaps only"
    );
    assert!(numbers.len() < MESSAGES, "some were dropped");
    assert_eq!(
        numbers.len() + dropped,
        MESSAGES,
        "every message delivered or counted"
    );
    b.server.shutdown().await;
}

#[tokio::test]
async fn an_unthrottled_qos1_publisher_cannot_grow_a_stalled_sessions_queue() {
    // 2,000 QoS 1 messages of 1 KiB in one write, as fast as the broker reads them, to a
    // subscriber that reads nothing: the broker keeps at most QUEUE_LIMIT of them queued (plus
    // its in-flight window) and drops the rest, and the publisher is acknowledged throughout.
    const SENT: u16 = 2_000;
    let b = start_with(|c| c.sessions.max_queued_messages = QUEUE_LIMIT).await;
    let broker = b.server.broker().clone();
    let mut stalled = stalled_subscriber(&b).await;
    stalled.subscribe("flood/#", QoS::AtLeastOnce).await;
    let mut publisher = Raw::connect(b.addr, V3_1_1, "unthrottled", true).await;
    let mut out = BytesMut::new();
    for id in 1..=SENT {
        let p = publish_packet("flood/q1", &payload(id.into()), QoS::AtLeastOnce, false, id);
        Packet::Publish(p).encode(V3_1_1, &mut out).unwrap();
    }
    publisher.send_bytes(&out).await;
    // Every PUBLISH is acknowledged, in order, while the subscriber is stalled.
    for id in 1..=SENT {
        match publisher.recv().await {
            Packet::PubAck(a) => assert_eq!(a.packet_id, id),
            other => panic!("expected PUBACK {id}, got {other:?}"),
        }
    }
    let (queued, inflight) = broker.queue_depth("stalled").expect("session exists");
    let max_inflight = usize::from(broker.config().limits.max_inflight);
    assert!(queued <= QUEUE_LIMIT, "queue bounded: {queued} queued");
    assert!(
        inflight <= max_inflight,
        "window bounded: {inflight} in flight"
    );
    let dropped = Metrics::get(&broker.metrics().messages_dropped) as usize;
    assert!(
        dropped >= usize::from(SENT) - QUEUE_LIMIT - max_inflight - 100,
        "the rest was dropped and counted ({dropped}); at most ~100 fit in socket buffers"
    );
    drop(stalled);
    b.server.shutdown().await;
}

/// `sessions.overflow = "drop_oldest"`: an offline session's full queue keeps the newest
/// messages, in order, and the drops are counted as queue-full ones.
#[tokio::test]
async fn drop_oldest_keeps_the_newest_messages_of_an_absence() {
    let b = start_with(|c| {
        c.sessions.max_queued_messages = 3;
        c.sessions.overflow = roost::config::Overflow::DropOldest;
    })
    .await;
    let mut dev = Raw::connect(b.addr, V3_1_1, "away", false).await;
    dev.subscribe("state/#", QoS::AtLeastOnce).await;
    dev.disconnect().await;
    let mut p = Raw::connect(b.addr, V5, "pub", true).await;
    for n in 0..10usize {
        p.publish_acked(
            "state/x",
            &payload(n),
            QoS::AtLeastOnce,
            false,
            n as u16 + 1,
        )
        .await;
    }
    let mut dev = Raw::connect(b.addr, V3_1_1, "away", false).await;
    let got: Vec<usize> = dev.drain().await.iter().map(number).collect();
    assert_eq!(got, [7, 8, 9], "the latest three");
    assert_eq!(
        Metrics::get(&b.server.broker().metrics().dropped_queue_full),
        7
    );
}
