//! Deep topics (issue 14, sections 0 and 5): a filter of thousands of levels once overflowed the
//! stack of the thread that removed it from the trie and aborted the whole broker. Topics and
//! filters deeper than `limits.max_topic_levels` are refused at the door, and with the limit
//! raised, a filter of 100,000 levels is subscribed, matched, unsubscribed and dropped by loops
//! that no depth can overflow.

mod support;

use roost::protocol::ProtocolVersion::{V3_1_1, V5};
use roost::protocol::{ByteStr, Packet, PubResp, QoS, ReasonCode, Unsubscribe};
use support::*;

/// `levels` levels of "a": "a/a/.../a".
fn deep(levels: usize) -> String {
    vec!["a"; levels].join("/")
}

/// Connects a client, publishes and receives one message: the broker still serves.
async fn still_serves(addr: std::net::SocketAddr) {
    let mut c = Raw::connect(addr, V5, "after", true).await;
    assert_eq!(c.subscribe("alive", QoS::AtLeastOnce).await, [1]);
    let reason = c
        .publish_acked("alive", b"yes", QoS::AtLeastOnce, false, 9)
        .await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    assert_eq!(payloads(&[c.expect_publish().await]), ["yes"]);
    c.disconnect().await;
}

fn unsubscribe(filter: &str) -> Packet {
    Packet::Unsubscribe(Unsubscribe {
        packet_id: 2,
        properties: Default::default(),
        filters: vec![ByteStr::try_from(filter).unwrap()],
    })
}

/// The regression of section 0: "a/" 7,000 times (a 14 KB SUBSCRIBE) is refused with the
/// version's failure code; unsubscribing it, and dropping the socket, leave the broker up.
#[tokio::test]
async fn a_filter_of_seven_thousand_levels_is_refused_and_the_broker_stays_up() {
    let broker = start().await;
    let filter = "a/".repeat(7_000);
    for (version, failure) in [(V3_1_1, 0x80), (V5, 0x8F)] {
        let mut c = Raw::connect(broker.addr, version, "deep", true).await;
        assert_eq!(c.subscribe(&filter, QoS::AtLeastOnce).await, [failure]);
        c.send(&unsubscribe(&filter)).await;
        assert!(matches!(c.recv().await, Packet::UnsubAck(_)));
        assert_eq!(c.subscribe(&filter, QoS::AtMostOnce).await, [failure]);
        drop(c); // the socket closes without DISCONNECT: the session ends
    }
    still_serves(broker.addr).await;
}

/// With `limits.max_topic_levels` raised, the broker serves the deepest topics a client can
/// send end to end: subscribe, match (exact, `+` and `#`), retained lookup, unsubscribe, and the
/// end of the session, all without recursion. An MQTT string holds at most 65,535 bytes, so the
/// deepest topic is 65,535 separators: 65,536 empty levels. (The trie's and the retained tree's
/// own tests, and the broker test below, go to 100,000 levels.)
#[tokio::test]
async fn the_deepest_topic_a_client_can_send_works_with_the_limit_raised() {
    let broker = start_with(|c| {
        c.limits.max_topic_levels = 200_000;
        c.limits.max_topic_length = 65_535;
    })
    .await;
    let topic = "/".repeat(65_535);
    let wild = format!("{}#", "+/".repeat(32_000));
    let mut publisher = Raw::connect(broker.addr, V5, "pub", true).await;
    let reason = publisher
        .publish_acked(&topic, b"kept", QoS::AtLeastOnce, true, 1)
        .await;
    assert_eq!(reason, ReasonCode::NO_MATCHING_SUBSCRIBERS);

    let mut sub = Raw::connect(broker.addr, V5, "sub", true).await;
    let ack = sub
        .subscribe_with(
            1,
            &[
                (&topic, sub_opts(QoS::AtLeastOnce)),
                (&wild, sub_opts(QoS::AtMostOnce)),
            ],
        )
        .await;
    assert_eq!(ack.reason_codes, [ReasonCode(1), ReasonCode(0)]);
    // One retained copy per subscription.
    let got = sub.drain().await;
    assert_eq!(payloads(&got), ["kept", "kept"]);
    assert!(got.iter().all(|p| p.retain && *p.topic == topic));

    let reason = publisher
        .publish_acked(&topic, b"live", QoS::AtLeastOnce, false, 2)
        .await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    // Overlapping subscriptions: one copy at the highest QoS.
    let p = sub.expect_publish().await;
    assert_eq!((&*p.payload, p.qos), (&b"live"[..], QoS::AtLeastOnce));
    sub.ack(&p).await;

    sub.send(&unsubscribe(&topic)).await;
    assert!(
        matches!(sub.recv().await, Packet::UnsubAck(a) if a.reason_codes == [ReasonCode::SUCCESS])
    );
    sub.send(&unsubscribe(&wild)).await;
    assert!(
        matches!(sub.recv().await, Packet::UnsubAck(a) if a.reason_codes == [ReasonCode::SUCCESS])
    );
    let reason = publisher
        .publish_acked(&topic, b"none", QoS::AtLeastOnce, false, 3)
        .await;
    assert_eq!(reason, ReasonCode::NO_MATCHING_SUBSCRIBERS);

    // Subscribed again and dropped with the socket: the session's end removes it.
    assert_eq!(sub.subscribe(&wild, QoS::AtMostOnce).await, [0]);
    assert_eq!(sub.drain().await.len(), 1, "the retained message again");
    drop(sub);
    // Deleting the retained message prunes its 100,000 levels.
    publisher
        .publish_acked(&topic, b"", QoS::AtLeastOnce, true, 4)
        .await;
    assert_eq!(broker.server.broker().retained_count(), 0);
    publisher.disconnect().await;
    still_serves(broker.addr).await;
}

/// Section 5: a PUBLISH to a topic deeper than the limit is refused (v5: in its PUBACK or
/// PUBREC, by DISCONNECT at QoS 0; 3.1.1: closed); the limit itself is accepted.
#[tokio::test]
async fn a_publish_deeper_than_the_limit_is_refused() {
    let broker = start().await;
    let (at_limit, over) = (deep(200), deep(201));
    let mut c = Raw::connect(broker.addr, V5, "v5", true).await;
    for (qos, id) in [(QoS::AtLeastOnce, 1), (QoS::ExactlyOnce, 2)] {
        c.publish(&over, b"x", qos, false, id).await;
        let reason = match c.recv().await {
            Packet::PubAck(a) | Packet::PubRec(a) if a.packet_id == id => a.reason,
            other => panic!("expected PUBACK or PUBREC {id}, got {other:?}"),
        };
        assert_eq!(reason, ReasonCode::TOPIC_NAME_INVALID, "{qos:?}");
    }
    // A refused QoS 2 message was never received: its id is free, and nothing awaits PUBREL.
    c.send(&Packet::PubRel(PubResp::new(2))).await;
    assert!(
        matches!(c.recv().await, Packet::PubComp(a) if a.reason == ReasonCode::PACKET_IDENTIFIER_NOT_FOUND)
    );
    let reason = c
        .publish_acked(&at_limit, b"x", QoS::AtLeastOnce, false, 3)
        .await;
    assert_eq!(
        reason,
        ReasonCode::NO_MATCHING_SUBSCRIBERS,
        "200 levels pass"
    );
    c.publish(&over, b"x", QoS::AtMostOnce, false, 0).await;
    c.expect_disconnect(ReasonCode::TOPIC_NAME_INVALID).await;

    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
        let mut c = Raw::connect(broker.addr, V3_1_1, "v3", true).await;
        c.publish(&over, b"x", qos, false, 1).await;
        assert_eq!(c.closed().await, [], "3.1.1 has no reason codes: closed");
    }
    still_serves(broker.addr).await;
}

/// Section 5: a filter deeper than the limit gets SUBACK 0x8F (3.1.1: 0x80), shared or not,
/// and a will topic deeper than it refuses the CONNECT.
#[tokio::test]
async fn a_filter_or_will_deeper_than_the_limit_is_refused() {
    let broker = start().await;
    let over = [
        deep(201),
        format!("{}/#", deep(200)),
        format!("{}/+", deep(200)),
        format!("$share/g/{}", deep(201)),
    ];
    let at_limit = [
        deep(200),
        format!("{}/#", deep(199)),
        format!("$share/g/{}", deep(200)),
    ];
    for (version, failure) in [(V3_1_1, 0x80), (V5, 0x8F)] {
        let mut c = Raw::connect(broker.addr, version, "subscriber", true).await;
        for filter in &over {
            let got = c.subscribe(filter, QoS::AtLeastOnce).await;
            assert_eq!(got, [failure], "{version:?} {}", &filter[..12]);
        }
        for filter in &at_limit {
            let got = c.subscribe(filter, QoS::AtLeastOnce).await;
            assert_eq!(got, [1], "{version:?} {}", &filter[..12]);
        }
        c.disconnect().await;
    }
    // 3.1.1's return code 5 reads as 0x87.
    for (version, refusal) in [
        (V3_1_1, ReasonCode::NOT_AUTHORIZED),
        (V5, ReasonCode::TOPIC_NAME_INVALID),
    ] {
        let mut connect = connect_packet(version, "will", true);
        connect.will = Some(roost::protocol::Will {
            qos: QoS::AtMostOnce,
            retain: false,
            topic: ByteStr::try_from(deep(201)).unwrap(),
            payload: Default::default(),
            properties: Default::default(),
        });
        let mut c = Raw::open(broker.addr, version).await;
        c.send(&Packet::Connect(Box::new(connect))).await;
        match c.closed().await.as_slice() {
            [Packet::ConnAck(a)] => assert_eq!(a.reason, refusal, "{version:?}"),
            other => panic!("{version:?}: expected CONNACK {refusal}, got {other:?}"),
        }
    }
}

/// The level count splits on every `/`: empty levels count, and a topic of `max` levels made
/// of separators alone passes while one more does not.
#[test]
fn levels_are_counted_as_the_spec_splits_them() {
    use roost::topic::too_deep;
    assert!(!too_deep("a/b/c", 3));
    assert!(too_deep("a/b/c", 2));
    assert!(!too_deep("//", 3), "three empty levels");
    assert!(too_deep("///", 3));
    assert!(!too_deep("", 1));
    assert!(too_deep(&"/".repeat(200), 200));
    assert!(!too_deep(&"/".repeat(199), 200));
}

/// `limits.max_topic_length`: a topic name or filter longer than it (in bytes) is refused as a
/// deep one is: PUBACK 0x90, SUBACK 0x8F (3.1.1: 0x80); one at the limit passes.
#[tokio::test]
async fn a_topic_or_filter_longer_than_the_limit_is_refused() {
    let broker = start_with(|c| c.limits.max_topic_length = 64).await;
    let (at_limit, over) = ("t".repeat(64), "t".repeat(65));
    let mut c = Raw::connect(broker.addr, V5, "long", true).await;
    let reason = c
        .publish_acked(&over, b"x", QoS::AtLeastOnce, false, 1)
        .await;
    assert_eq!(reason, ReasonCode::TOPIC_NAME_INVALID);
    let reason = c
        .publish_acked(&at_limit, b"x", QoS::AtLeastOnce, false, 2)
        .await;
    assert_eq!(reason, ReasonCode::NO_MATCHING_SUBSCRIBERS);
    assert_eq!(
        c.subscribe(&format!("{over}/#"), QoS::AtMostOnce).await,
        [0x8F]
    );
    assert_eq!(c.subscribe(&at_limit, QoS::AtMostOnce).await, [0]);
    let mut old = Raw::connect(broker.addr, V3_1_1, "long-3", true).await;
    assert_eq!(old.subscribe(&over, QoS::AtMostOnce).await, [0x80]);
    still_serves(broker.addr).await;
}
