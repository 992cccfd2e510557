//! Retained messages (3.3.1.3 RETAIN, 5.0 3.8.3.1 Retain Handling and Retain As Published):
//! stored per topic, sent on subscribe, replaced, deleted, downgraded.

mod support;

use roost::protocol::ProtocolVersion::{self, V3_1_1, V5};
use roost::protocol::{QoS, RetainHandling, SubscriptionOptions};
use support::*;

const VERSIONS: [ProtocolVersion; 2] = [V3_1_1, V5];

/// (topic, payload, retain) of each PUBLISH, sorted by topic: the order of retained messages
/// sent for a wildcard subscription is not specified.
fn sorted(got: &[roost::protocol::Publish]) -> Vec<(String, String, bool)> {
    let mut v: Vec<_> = got
        .iter()
        .map(|p| {
            let payload = String::from_utf8_lossy(&p.payload).into_owned();
            (p.topic.to_string(), payload, p.retain)
        })
        .collect();
    v.sort();
    v
}

fn row(topic: &str, payload: &str) -> (String, String, bool) {
    (topic.into(), payload.into(), true)
}

/// Connects a new client, subscribes it to `filter` and returns what the subscribe brought.
async fn subscribe_fresh(b: &TestBroker, v: ProtocolVersion, filter: &str, qos: QoS) -> Raw {
    let mut s = Raw::connect(b.addr, v, "fresh", true).await;
    assert_eq!(s.subscribe(filter, qos).await, [qos as u8]);
    s
}

#[tokio::test]
async fn retained_messages_are_sent_on_subscribe_with_retain_set() {
    let b = start().await;
    let mut publisher = Raw::connect(b.addr, V3_1_1, "ret-pub", true).await;
    for (i, (topic, retain)) in [
        ("r/a", true),
        ("r/b", true),
        ("r/c/d", true),
        ("r/e", false),
        ("other", true),
    ]
    .into_iter()
    .enumerate()
    {
        publisher
            .publish_acked(
                topic,
                topic.as_bytes(),
                QoS::AtLeastOnce,
                retain,
                i as u16 + 1,
            )
            .await;
    }
    assert_eq!(b.server.broker().retained_count(), 4);
    for v in VERSIONS {
        for (filter, want) in [
            (
                "r/#",
                vec![row("r/a", "r/a"), row("r/b", "r/b"), row("r/c/d", "r/c/d")],
            ),
            ("r/+", vec![row("r/a", "r/a"), row("r/b", "r/b")]),
            ("r/c/d", vec![row("r/c/d", "r/c/d")]),
            ("r/e", vec![]),
        ] {
            let mut s = subscribe_fresh(&b, v, filter, QoS::AtLeastOnce).await;
            // 3.1.1 [MQTT-3.3.1-5] [MQTT-3.3.1-6] [MQTT-3.3.1-8]; 5.0 [MQTT-3.3.1-9].
            assert_eq!(sorted(&s.drain().await), want, "{v:?} {filter:?}");
            s.disconnect().await;
        }
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn delivery_to_an_existing_subscription_clears_retain() {
    let b = start().await;
    for v in VERSIONS {
        let topic = format!("live/{v:?}");
        let mut existing = Raw::connect(b.addr, v, "existing", true).await;
        existing.subscribe(&topic, QoS::AtLeastOnce).await;
        let mut publisher = Raw::connect(b.addr, v, "live-pub", true).await;
        publisher
            .publish_acked(&topic, b"now", QoS::AtLeastOnce, true, 1)
            .await;
        let got = existing.drain().await;
        // 3.1.1 [MQTT-3.3.1-9]; 5.0 [MQTT-3.3.1-12] (Retain As Published 0).
        assert_eq!(got.len(), 1);
        assert!(!got[0].retain, "{v:?}");
        // It was stored all the same: a new subscription gets it with RETAIN set.
        let mut s = subscribe_fresh(&b, v, &topic, QoS::AtLeastOnce).await;
        assert_eq!(sorted(&s.drain().await), [row(&topic, "now")], "{v:?}");
        s.disconnect().await;
        existing.disconnect().await;
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn a_newer_retained_message_replaces_the_old_one() {
    let b = start().await;
    let mut publisher = Raw::connect(b.addr, V5, "repl-pub", true).await;
    publisher
        .publish_acked("repl/t", b"old", QoS::AtLeastOnce, true, 1)
        .await;
    // A QoS 0 retained message replaces it too (3.1.1 [MQTT-3.3.1-7]; 5.0 [MQTT-3.3.1-5]).
    publisher
        .publish_acked("repl/t", b"new", QoS::AtMostOnce, true, 0)
        .await;
    // A non-retained message leaves it alone (3.1.1 [MQTT-3.3.1-12]; 5.0 [MQTT-3.3.1-8]).
    publisher
        .publish_acked("repl/t", b"transient", QoS::AtLeastOnce, false, 2)
        .await;
    assert_eq!(b.server.broker().retained_count(), 1);
    for v in VERSIONS {
        let mut s = subscribe_fresh(&b, v, "repl/#", QoS::ExactlyOnce).await;
        let got = s.drain().await;
        assert_eq!(sorted(&got), [row("repl/t", "new")], "{v:?}");
        assert_eq!(
            got[0].qos,
            QoS::AtMostOnce,
            "the retained message keeps its QoS"
        );
        s.disconnect().await;
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn an_empty_retained_payload_deletes_the_retained_message() {
    let b = start().await;
    for v in VERSIONS {
        let mut publisher = Raw::connect(b.addr, v, "del-pub", true).await;
        publisher
            .publish_acked("del/t", b"x", QoS::AtLeastOnce, true, 1)
            .await;
        assert_eq!(b.server.broker().retained_count(), 1);
        let mut existing = subscribe_fresh(&b, v, "del/t", QoS::AtLeastOnce).await;
        assert_eq!(sorted(&existing.drain().await), [row("del/t", "x")]);
        publisher
            .publish_acked("del/t", b"", QoS::AtLeastOnce, true, 2)
            .await;
        // The empty message is still delivered as normal (3.1.1 [MQTT-3.3.1-10]) ...
        let got = existing.drain().await;
        assert_eq!(got.len(), 1, "{v:?}");
        assert!(got[0].payload.is_empty());
        existing.disconnect().await;
        // ... but is not stored, and the old one is gone (3.1.1 [MQTT-3.3.1-10] [MQTT-3.3.1-11];
        // 5.0 [MQTT-3.3.1-6] [MQTT-3.3.1-7]).
        assert_eq!(b.server.broker().retained_count(), 0, "{v:?}");
        let mut s = subscribe_fresh(&b, v, "del/#", QoS::AtLeastOnce).await;
        s.expect_nothing().await;
        s.disconnect().await;
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn retained_qos_is_downgraded_to_the_granted_qos() {
    let b = start().await;
    let mut publisher = Raw::connect(b.addr, V3_1_1, "dq-pub", true).await;
    publisher
        .publish_acked("dq/t", b"two", QoS::ExactlyOnce, true, 1)
        .await;
    for v in VERSIONS {
        for granted in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let mut s = subscribe_fresh(&b, v, "dq/t", granted).await;
            let got = s.drain().await;
            assert_eq!(got.len(), 1);
            // 3.1.1 [MQTT-3.8.4-6]; 5.0 [MQTT-3.8.4-8].
            assert_eq!(got[0].qos, granted, "{v:?}");
            assert!(got[0].retain);
            s.disconnect().await;
        }
    }
    b.server.shutdown().await;
}

fn retain_opts(handling: RetainHandling, as_published: bool) -> SubscriptionOptions {
    SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        retain_handling: handling,
        retain_as_published: as_published,
        ..Default::default()
    }
}

#[tokio::test]
async fn v5_retain_handling() {
    let b = start().await;
    let mut publisher = Raw::connect(b.addr, V5, "rh-pub", true).await;
    publisher
        .publish_acked("rh/t", b"kept", QoS::AtLeastOnce, true, 1)
        .await;
    let mut s = Raw::connect(b.addr, V5, "rh-sub", true).await;
    for (handling, first, again) in [
        // [MQTT-3.3.1-9] and [MQTT-3.8.4-4]: 0 sends them on every SUBSCRIBE.
        (RetainHandling::SendAtSubscribe, 1, 1),
        // [MQTT-3.3.1-10]: 1 only when the subscription is new.
        (RetainHandling::SendIfNew, 1, 0),
        // [MQTT-3.3.1-11]: 2 never.
        (RetainHandling::DoNotSend, 0, 0),
    ] {
        let opts = retain_opts(handling, false);
        s.subscribe_with(1, &[("rh/t", opts)]).await;
        assert_eq!(s.drain().await.len(), first, "{handling:?} first subscribe");
        s.subscribe_with(2, &[("rh/t", opts)]).await;
        assert_eq!(s.drain().await.len(), again, "{handling:?} subscribe again");
        s.send(&roost::protocol::Packet::Unsubscribe(
            roost::protocol::Unsubscribe {
                packet_id: 3,
                properties: Default::default(),
                filters: vec!["rh/t".try_into().unwrap()],
            },
        ))
        .await;
        assert!(matches!(
            s.recv().await,
            roost::protocol::Packet::UnsubAck(_)
        ));
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn v5_retain_as_published() {
    let b = start().await;
    let mut rap = Raw::connect(b.addr, V5, "rap-1", true).await;
    let opts = retain_opts(RetainHandling::DoNotSend, true);
    rap.subscribe_with(1, &[("rap/t", opts)]).await;
    let mut plain = Raw::connect(b.addr, V5, "rap-0", true).await;
    let opts = retain_opts(RetainHandling::DoNotSend, false);
    plain.subscribe_with(1, &[("rap/t", opts)]).await;
    let mut publisher = Raw::connect(b.addr, V5, "rap-pub", true).await;
    for (id, retain) in [(1, true), (2, false)] {
        publisher
            .publish_acked("rap/t", b"m", QoS::AtLeastOnce, retain, id)
            .await;
        let got = rap.drain().await;
        // [MQTT-3.3.1-13]: the flag as received.
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].retain, retain);
        let got = plain.drain().await;
        // [MQTT-3.3.1-12]: cleared.
        assert_eq!(got.len(), 1);
        assert!(!got[0].retain);
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn retained_messages_outlive_the_publishers_session() {
    let b = start().await;
    let mut publisher = Raw::connect(b.addr, V3_1_1, "gone-pub", true).await;
    publisher
        .publish_acked("gone/t", b"still here", QoS::AtLeastOnce, true, 1)
        .await;
    publisher.disconnect().await;
    assert!(!b.server.broker().has_session("gone-pub"));
    // 3.1.1 [MQTT-3.1.2-7]: retained messages are not session state.
    let mut s = subscribe_fresh(&b, V5, "gone/t", QoS::AtLeastOnce).await;
    assert_eq!(sorted(&s.drain().await), [row("gone/t", "still here")]);
    b.server.shutdown().await;
}
