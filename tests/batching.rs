//! Batching (issue 4): a connection routes the QoS 0/1 messages of one read in runs of one
//! topic, locking and waking each subscriber once per run, and sends the PUBACKs after the run
//! is routed. None of that may change what anyone observes: every subscriber gets its messages
//! in the publisher's order, and the publisher's acknowledgements come in order, each after the
//! packets sent before it were handled.

mod support;

use bytes::BytesMut;
use roost::protocol::ProtocolVersion::{V3_1_1, V5};
use roost::protocol::{Packet, Publish, QoS};
use support::*;

/// Messages in the one write: below the default queue limit (1,000), so nothing is dropped.
const MESSAGES: usize = 600;

/// Message `i`'s topic: runs of 7 on one topic, then the next of three topics.
fn topic(i: usize) -> &'static str {
    ["t/a", "t/b", "t/c"][(i / 7) % 3]
}

/// Message `i`'s QoS: mostly alternating 0 and 1, with a QoS 2 message (which ends a run) every
/// 50th.
fn qos(i: usize) -> QoS {
    match i {
        i if i % 50 == 49 => QoS::ExactlyOnce,
        i if i % 2 == 0 => QoS::AtMostOnce,
        _ => QoS::AtLeastOnce,
    }
}

fn packet_id(i: usize) -> u16 {
    if qos(i) == QoS::AtMostOnce {
        0
    } else {
        u16::try_from(i + 1).unwrap()
    }
}

/// The message numbers a subscriber must see, in order: those whose topic its filters match.
fn expected(matches: impl Fn(&str) -> bool) -> Vec<usize> {
    (0..MESSAGES).filter(|&i| matches(topic(i))).collect()
}

/// The message numbers received, in order. None of them was published retained, so none may
/// arrive with RETAIN set [MQTT-3.3.1-9].
fn numbers(got: &[Publish]) -> Vec<usize> {
    assert!(
        got.iter().all(|p| !p.retain),
        "RETAIN set on a live message"
    );
    got.iter()
        .map(|p| std::str::from_utf8(&p.payload).unwrap().parse().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_keep_every_subscribers_order_and_the_publishers_acks_in_order() {
    let b = start().await;
    // Four subscribers with different, overlapping views of the three topics.
    let mut all = Raw::connect(b.addr, V3_1_1, "all", true).await;
    all.subscribe("t/#", QoS::AtLeastOnce).await;
    let mut only_a = Raw::connect(b.addr, V3_1_1, "only-a", true).await;
    only_a.subscribe("t/a", QoS::AtMostOnce).await;
    let mut plus = Raw::connect(b.addr, V5, "plus", true).await;
    plus.subscribe("t/+", QoS::ExactlyOnce).await;
    let mut overlap = Raw::connect(b.addr, V5, "overlap", true).await;
    overlap.subscribe("t/b", QoS::AtLeastOnce).await;
    overlap.subscribe("t/#", QoS::AtMostOnce).await;
    overlap.subscribe("t/c", QoS::AtMostOnce).await;

    // Every message in one write, with a PINGREQ in the middle, so the broker reads many
    // packets at a time and routes them in runs.
    let mut publisher = Raw::connect(b.addr, V5, "publisher", true).await;
    let mut bytes = BytesMut::new();
    for i in 0..MESSAGES {
        if i == MESSAGES / 2 {
            Packet::PingReq.encode(V5, &mut bytes).unwrap();
        }
        let p = publish_packet(
            topic(i),
            i.to_string().as_bytes(),
            qos(i),
            false,
            packet_id(i),
        );
        Packet::Publish(p).encode(V5, &mut bytes).unwrap();
    }
    publisher.send_bytes(&bytes).await;

    // The publisher's answers: a PUBACK or PUBREC for each QoS 1 or 2 message, in order, and
    // the PINGRESP exactly where the PINGREQ was.
    let mut want = Vec::new();
    for i in 0..MESSAGES {
        if i == MESSAGES / 2 {
            want.push("PINGRESP".to_string());
        }
        match qos(i) {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => want.push(format!("PUBACK {}", packet_id(i))),
            QoS::ExactlyOnce => want.push(format!("PUBREC {}", packet_id(i))),
        }
    }
    let mut got = Vec::new();
    while got.len() < want.len() {
        got.push(match publisher.recv().await {
            Packet::PingResp => "PINGRESP".to_string(),
            Packet::PubAck(a) if !a.reason.is_error() => format!("PUBACK {}", a.packet_id),
            Packet::PubRec(a) if !a.reason.is_error() => {
                publisher
                    .send(&Packet::PubRel(roost::protocol::PubResp::new(a.packet_id)))
                    .await;
                format!("PUBREC {}", a.packet_id)
            }
            Packet::PubComp(_) => continue,
            other => panic!("unexpected {other:?}"),
        });
    }
    assert_eq!(got, want);

    assert_eq!(numbers(&all.drain().await), expected(|_| true));
    assert_eq!(numbers(&only_a.drain().await), expected(|t| t == "t/a"));
    assert_eq!(numbers(&plus.drain().await), expected(|_| true));
    // One copy per message even where two of its filters match (the spec allows one or one per
    // subscription; Roost sends one, at the highest QoS granted).
    let overlapping = overlap.drain().await;
    assert_eq!(numbers(&overlapping), expected(|_| true));
    for p in &overlapping {
        let i: usize = std::str::from_utf8(&p.payload).unwrap().parse().unwrap();
        let granted = if topic(i) == "t/b" {
            QoS::AtLeastOnce
        } else {
            QoS::AtMostOnce
        };
        assert_eq!(p.qos, qos(i).min(granted), "message {i}");
    }
}

/// A bad packet after a run of good ones: the good ones were accepted, so they are delivered,
/// and then the connection closes.
#[tokio::test]
async fn messages_before_a_malformed_packet_in_the_same_read_are_delivered() {
    let b = start().await;
    let mut sub = Raw::connect(b.addr, V3_1_1, "sub", true).await;
    sub.subscribe("t/a", QoS::AtMostOnce).await;
    let mut publisher = Raw::connect(b.addr, V3_1_1, "publisher", true).await;
    let mut bytes = BytesMut::new();
    for i in 0..5 {
        let p = publish_packet("t/a", i.to_string().as_bytes(), QoS::AtMostOnce, false, 0);
        Packet::Publish(p).encode(V3_1_1, &mut bytes).unwrap();
    }
    bytes.extend_from_slice(&[0x30, 0x03, 0x00, 0x01, b'#']); // a wildcard in a topic name
    publisher.send_bytes(&bytes).await;
    assert!(publisher.closed().await.is_empty());
    assert_eq!(numbers(&sub.drain().await), vec![0, 1, 2, 3, 4]);
}
