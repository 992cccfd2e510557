//! Shared subscriptions, `$share/{group}/{filter}` (MQTT 5.0 section 4.8.2; offered to 3.1.1
//! clients too, as Mosquitto and EMQX do): each message goes to one member of each matching
//! group, a member that leaves hands its unfinished messages to another, and no retained
//! messages are sent on a shared subscribe.

mod support;

use roost::config::ShareStrategy;
use roost::protocol::ProtocolVersion::{V3_1_1, V5};
use roost::protocol::{Packet, QoS, ReasonCode};
use std::collections::BTreeSet;
use support::*;

/// The payloads a client got, as a set (members see interleaved subsets of one stream).
fn set(got: &[roost::protocol::Publish]) -> BTreeSet<String> {
    payloads(got).into_iter().collect()
}

fn numbered(n: usize) -> BTreeSet<String> {
    (0..n).map(|i| format!("m{i}")).collect()
}

/// Publishes `m0`..`m{n-1}` on `topic` at `qos`, each acknowledged before the next.
async fn publish_numbered(publisher: &mut Raw, topic: &str, n: usize, qos: QoS) {
    for i in 0..n {
        let id = u16::try_from(i + 1).unwrap();
        let reason = publisher
            .publish_acked(topic, format!("m{i}").as_bytes(), qos, false, id)
            .await;
        assert!(!reason.is_error(), "{reason:?}");
    }
}

#[tokio::test]
async fn each_message_goes_to_one_member_in_turn() {
    let b = start().await;
    let mut members = Vec::new();
    // Member 1 asked for QoS 0: its share arrives at QoS 0 [MQTT-4.8.2-3].
    let granted = [QoS::AtLeastOnce, QoS::AtMostOnce, QoS::AtLeastOnce];
    for (i, v) in [V5, V3_1_1, V5].into_iter().enumerate() {
        let mut m = Raw::connect(b.addr, v, &format!("member-{i}"), true).await;
        assert_eq!(
            m.subscribe("$share/workers/jobs/#", granted[i]).await,
            [granted[i] as u8]
        );
        members.push(m);
    }
    let mut publisher = Raw::connect(b.addr, V5, "publisher", true).await;
    publish_numbered(&mut publisher, "jobs/resize", 30, QoS::AtLeastOnce).await;
    let mut all = BTreeSet::new();
    for (i, m) in members.iter_mut().enumerate() {
        let got = m.drain().await;
        assert_eq!(got.len(), 10, "round-robin gives each member a third");
        for p in &got {
            assert_eq!(p.qos, granted[i], "member {i}");
            assert!(all.insert(String::from_utf8_lossy(&p.payload).into_owned()));
        }
    }
    assert_eq!(all, numbered(30), "every message once, none twice");
    b.server.shutdown().await;
}

#[tokio::test]
async fn every_group_gets_each_message_and_a_plain_subscription_gets_its_own_copy() {
    let b = start().await;
    // `both` is in group a and also subscribed plainly; `other` is in group a; `solo` is
    // alone in group b.
    let mut both = Raw::connect(b.addr, V5, "both", true).await;
    both.subscribe("$share/a/t/+", QoS::AtMostOnce).await;
    both.subscribe("t/+", QoS::AtMostOnce).await;
    let mut other = Raw::connect(b.addr, V5, "other", true).await;
    other.subscribe("$share/a/t/+", QoS::AtMostOnce).await;
    let mut solo = Raw::connect(b.addr, V3_1_1, "solo", true).await;
    solo.subscribe("$share/b/t/#", QoS::AtMostOnce).await;
    let mut publisher = Raw::connect(b.addr, V5, "publisher", true).await;
    publish_numbered(&mut publisher, "t/x", 10, QoS::AtMostOnce).await;

    assert_eq!(
        set(&solo.drain().await),
        numbered(10),
        "group b has one member"
    );
    let both_got = both.drain().await;
    let other_got = other.drain().await;
    // `both` gets every message through its plain subscription, plus group a's share.
    assert_eq!(both_got.len() + other_got.len(), 20);
    let mut group_a: Vec<String> = payloads(&other_got);
    let mut seen_plain = BTreeSet::new();
    for p in payloads(&both_got) {
        if !seen_plain.insert(p.clone()) {
            group_a.push(p); // the second copy came through the group
        }
    }
    assert_eq!(seen_plain, numbered(10));
    group_a.sort();
    let mut want: Vec<String> = numbered(10).into_iter().collect();
    want.sort();
    assert_eq!(group_a, want, "group a got each message once");
    b.server.shutdown().await;
}

#[tokio::test]
async fn retained_messages_are_not_sent_on_a_shared_subscribe() {
    let b = start().await;
    let mut publisher = Raw::connect(b.addr, V5, "publisher", true).await;
    publisher
        .publish_acked("state/lamp", b"on", QoS::AtLeastOnce, true, 1)
        .await;
    let mut m = Raw::connect(b.addr, V5, "member", true).await;
    m.subscribe("$share/g/state/#", QoS::AtLeastOnce).await;
    m.expect_nothing().await;
    // A plain subscription on the same connection still gets it.
    m.subscribe("state/#", QoS::AtLeastOnce).await;
    assert_eq!(payloads(&m.drain().await), ["on"]);
    b.server.shutdown().await;
}

#[tokio::test]
async fn a_member_that_leaves_hands_its_unacknowledged_messages_to_another() {
    for clean in [true, false] {
        let b = start().await;
        // `leaver` takes its messages but never acknowledges them, then its connection drops.
        let mut leaver = Raw::connect(b.addr, V3_1_1, "leaver", clean).await;
        leaver.subscribe("$share/g/work", QoS::AtLeastOnce).await;
        let mut stayer = Raw::connect(b.addr, V5, "stayer", true).await;
        stayer.subscribe("$share/g/work", QoS::AtLeastOnce).await;
        let mut publisher = Raw::connect(b.addr, V5, "publisher", true).await;
        publish_numbered(&mut publisher, "work", 10, QoS::AtLeastOnce).await;

        let mut unacked = BTreeSet::new();
        while unacked.len() < 5 {
            let p = leaver.expect_publish().await;
            unacked.insert(String::from_utf8_lossy(&p.payload).into_owned());
        }
        drop(leaver); // no DISCONNECT: the network went away
        // The stayer gets its own five, then the leaver's five, each once.
        let mut got = BTreeSet::new();
        while got.len() < 10 {
            let p = stayer.expect_publish().await;
            stayer.ack(&p).await;
            let payload = String::from_utf8_lossy(&p.payload).into_owned();
            assert!(
                got.insert(payload),
                "a message arrived twice (clean {clean})"
            );
        }
        assert_eq!(got, numbered(10), "clean {clean}");
        assert!(unacked.is_subset(&got));
        stayer.expect_nothing().await;
        b.server.shutdown().await;
    }
}

#[tokio::test]
async fn a_connected_member_is_preferred_to_an_offline_one() {
    let b = start().await;
    let away = Raw::connect(b.addr, V3_1_1, "away", false).await;
    let mut away = away;
    away.subscribe("$share/g/work", QoS::AtLeastOnce).await;
    away.disconnect().await; // its session lives on, offline
    let mut here = Raw::connect(b.addr, V5, "here", true).await;
    here.subscribe("$share/g/work", QoS::AtLeastOnce).await;
    let mut publisher = Raw::connect(b.addr, V5, "publisher", true).await;
    publish_numbered(&mut publisher, "work", 6, QoS::AtLeastOnce).await;
    assert_eq!(set(&here.drain().await), numbered(6));
    assert_eq!(b.server.broker().queue_depth("away"), Some((0, 0)));
    b.server.shutdown().await;
}

#[tokio::test]
async fn hash_topic_keeps_each_topic_on_one_member() {
    let b = start_with(|c| c.shared_subscriptions.strategy = ShareStrategy::HashTopic).await;
    let mut members = Vec::new();
    for i in 0..3 {
        let mut m = Raw::connect(b.addr, V5, &format!("m{i}"), true).await;
        m.subscribe("$share/g/sensor/+", QoS::AtMostOnce).await;
        members.push(m);
    }
    let mut publisher = Raw::connect(b.addr, V5, "publisher", true).await;
    for round in 0..4 {
        for t in 0..8 {
            publisher
                .publish_acked(
                    &format!("sensor/{t}"),
                    format!("{t}:{round}").as_bytes(),
                    QoS::AtMostOnce,
                    false,
                    0,
                )
                .await;
        }
    }
    let mut owner = std::collections::HashMap::new();
    let mut total = 0;
    for (i, m) in members.iter_mut().enumerate() {
        for p in payloads(&m.drain().await) {
            let (topic, round) = p.split_once(':').unwrap();
            total += 1;
            let first = owner.entry(topic.to_string()).or_insert((i, 0));
            assert_eq!(first.0, i, "topic {topic} went to two members");
            assert_eq!(first.1.to_string(), round, "topic {topic} out of order");
            first.1 += 1;
        }
    }
    assert_eq!(total, 32);
    b.server.shutdown().await;
}

#[tokio::test]
async fn random_and_client_hash_strategies_deliver_each_message_once() {
    for strategy in [
        ShareStrategy::Random,
        ShareStrategy::HashClientId,
        ShareStrategy::Local,
    ] {
        let b = start_with(|c| c.shared_subscriptions.strategy = strategy).await;
        let mut members = Vec::new();
        for i in 0..2 {
            let mut m = Raw::connect(b.addr, V5, &format!("m{i}"), true).await;
            m.subscribe("$share/g/q", QoS::AtLeastOnce).await;
            members.push(m);
        }
        let mut publisher = Raw::connect(b.addr, V5, "publisher", true).await;
        publish_numbered(&mut publisher, "q", 20, QoS::AtLeastOnce).await;
        let mut got = Vec::new();
        for m in &mut members {
            got.extend(payloads(&m.drain().await));
        }
        got.sort();
        let mut want: Vec<String> = numbered(20).into_iter().collect();
        want.sort();
        assert_eq!(got, want, "{strategy:?}");
        b.server.shutdown().await;
    }
}

#[tokio::test]
async fn unsubscribing_leaves_the_group() {
    let b = start().await;
    let mut a = Raw::connect(b.addr, V5, "a", true).await;
    a.subscribe("$share/g/q", QoS::AtMostOnce).await;
    let mut z = Raw::connect(b.addr, V5, "z", true).await;
    z.subscribe("$share/g/q", QoS::AtMostOnce).await;
    a.send(&Packet::Unsubscribe(roost::protocol::Unsubscribe {
        packet_id: 2,
        properties: Default::default(),
        filters: vec![roost::protocol::ByteStr::from_static("$share/g/q").unwrap()],
    }))
    .await;
    match a.recv().await {
        Packet::UnsubAck(u) => assert_eq!(u.reason_codes, [ReasonCode::SUCCESS]),
        other => panic!("expected UNSUBACK, got {other:?}"),
    }
    let mut publisher = Raw::connect(b.addr, V5, "publisher", true).await;
    publish_numbered(&mut publisher, "q", 4, QoS::AtMostOnce).await;
    a.expect_nothing().await;
    assert_eq!(set(&z.drain().await), numbered(4));
    b.server.shutdown().await;
}

#[tokio::test]
async fn malformed_share_filters_are_refused_and_connack_announces_the_feature() {
    let b = start().await;
    let (mut c, ack) = Raw::connect_with(b.addr, connect_packet(V5, "c", true)).await;
    // Absent means available [MQTT 5.0 3.2.2.3.14].
    assert_eq!(ack.properties.shared_subscription_available, None);
    let bad = ["$share/g", "$share//t", "$share/g+/t", "$share/g/t/#/x"];
    let filters: Vec<_> = bad
        .iter()
        .map(|f| (*f, sub_opts(QoS::AtMostOnce)))
        .collect();
    let suback = c.subscribe_with(3, &filters).await;
    assert_eq!(suback.reason_codes, [ReasonCode::TOPIC_FILTER_INVALID; 4]);
    b.server.shutdown().await;

    let b = start_with(|c| c.shared_subscriptions.available = false).await;
    let (_c, ack) = Raw::connect_with(b.addr, connect_packet(V5, "c", true)).await;
    assert_eq!(ack.properties.shared_subscription_available, Some(0));
    b.server.shutdown().await;
}

#[tokio::test]
async fn no_local_on_a_shared_subscription_is_a_protocol_error() {
    let b = start().await;
    let mut c = Raw::connect(b.addr, V5, "c", true).await;
    let options = roost::protocol::SubscriptionOptions {
        no_local: true,
        ..sub_opts(QoS::AtMostOnce)
    };
    c.send(&Packet::Subscribe(subscribe_packet(
        1,
        &[("$share/g/t", options)],
    )))
    .await;
    c.expect_disconnect(ReasonCode::PROTOCOL_ERROR).await;
    b.server.shutdown().await;
}

#[tokio::test]
async fn a_message_refused_by_its_member_is_discarded_not_passed_on() {
    let b = start().await;
    let mut refuser = Raw::connect(b.addr, V5, "refuser", true).await;
    refuser.subscribe("$share/g/q", QoS::AtLeastOnce).await;
    let mut other = Raw::connect(b.addr, V5, "other", true).await;
    other.subscribe("$share/g/q", QoS::AtLeastOnce).await;
    let mut publisher = Raw::connect(b.addr, V5, "publisher", true).await;
    publish_numbered(&mut publisher, "q", 1, QoS::AtLeastOnce).await;
    // Round-robin starts with the first member to join.
    let p = refuser.expect_publish().await;
    let mut nack = roost::protocol::PubResp::new(p.packet_id);
    nack.reason = ReasonCode::UNSPECIFIED_ERROR;
    refuser.send(&Packet::PubAck(nack)).await;
    refuser.expect_nothing().await;
    // Leaving would hand an unfinished message to `other`; once `disconnect` returns, the
    // session has been detached (see `Raw::disconnect`).
    refuser.disconnect().await;
    // [MQTT-4.8.2-6] not sent to any other subscriber.
    other.expect_nothing().await;
    b.server.shutdown().await;
}
