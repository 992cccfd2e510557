//! PUBLISH and its acknowledgements (3.3-3.7, 4.3 QoS levels, 4.6 ordering, 5.0 3.3.4 Receive
//! Maximum): QoS 0, 1 and 2 end to end in both directions, for 3.1.1 and 5.0.

mod support;

use roost::Metrics;
use roost::protocol::ProtocolVersion::{self, V3_1_1, V5};
use roost::protocol::{Packet, PubResp, QoS, ReasonCode};
use support::*;

const VERSIONS: [ProtocolVersion; 2] = [V3_1_1, V5];

/// A publisher and a subscriber to `filter` at `qos`, both speaking `v`.
async fn pair(b: &TestBroker, v: ProtocolVersion, filter: &str, qos: QoS) -> (Raw, Raw) {
    let mut sub = Raw::connect(b.addr, v, &format!("sub-{v:?}"), true).await;
    assert_eq!(sub.subscribe(filter, qos).await, [qos as u8]);
    let publisher = Raw::connect(b.addr, v, &format!("pub-{v:?}"), true).await;
    (publisher, sub)
}

#[tokio::test]
async fn qos0_goes_out_with_qos0_no_packet_id_and_no_dup() {
    let b = start().await;
    for v in VERSIONS {
        let (mut publisher, mut sub) = pair(&b, v, "q0/#", QoS::ExactlyOnce).await;
        publisher
            .publish_acked("q0/t", b"zero", QoS::AtMostOnce, false, 0)
            .await;
        let p = sub.expect_publish().await;
        assert_eq!(p.topic.as_str(), "q0/t");
        assert_eq!(&p.payload[..], b"zero");
        assert_eq!(p.qos, QoS::AtMostOnce, "{v:?}: min(0, 2)");
        assert_eq!(p.packet_id, 0, "{v:?}: [MQTT-2.3.1-5] / [MQTT-2.2.1-2]");
        assert!(!p.dup, "{v:?}: [MQTT-4.3.1-1] DUP 0");
        sub.expect_nothing().await;
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn qos1_handshake_in_both_directions() {
    let b = start().await;
    for v in VERSIONS {
        let (mut publisher, mut sub) = pair(&b, v, "q1/#", QoS::AtLeastOnce).await;
        // Client -> server: PUBACK carries the PUBLISH's id [MQTT-2.3.1-6 / MQTT-2.2.1-5].
        let mut p = publish_packet("q1/t", b"one", QoS::AtLeastOnce, false, 7);
        p.dup = true; // the incoming DUP flag is not propagated [MQTT-3.3.1-3]
        publisher.send(&Packet::Publish(p)).await;
        let Packet::PubAck(ack) = publisher.recv().await else {
            panic!("expected PUBACK")
        };
        assert_eq!(
            (ack.packet_id, ack.reason),
            (7, ReasonCode::SUCCESS),
            "{v:?}"
        );
        // Server -> client: QoS 1, DUP 0, a non-zero id [MQTT-4.3.2-1 / MQTT-4.3.2-2].
        let got = sub.expect_publish().await;
        assert_eq!(
            (got.qos, got.dup, &got.payload[..]),
            (QoS::AtLeastOnce, false, &b"one"[..])
        );
        assert_ne!(got.packet_id, 0);
        sub.send(&Packet::PubAck(PubResp::new(got.packet_id))).await;
        sub.expect_nothing().await;
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn qos2_handshake_in_both_directions() {
    let b = start().await;
    for v in VERSIONS {
        let (mut publisher, mut sub) = pair(&b, v, "q2/#", QoS::ExactlyOnce).await;
        publisher
            .publish("q2/t", b"two", QoS::ExactlyOnce, false, 9)
            .await;
        let Packet::PubRec(rec) = publisher.recv().await else {
            panic!("expected PUBREC")
        };
        assert_eq!(
            (rec.packet_id, rec.reason),
            (9, ReasonCode::SUCCESS),
            "{v:?}"
        );
        publisher.send(&Packet::PubRel(PubResp::new(9))).await;
        let Packet::PubComp(comp) = publisher.recv().await else {
            panic!("expected PUBCOMP")
        };
        assert_eq!(comp.packet_id, 9, "{v:?}: [MQTT-4.3.3-11] of 5.0");

        let got = sub.expect_publish().await;
        assert_eq!(
            (got.qos, got.dup, &got.payload[..]),
            (QoS::ExactlyOnce, false, &b"two"[..])
        );
        assert_ne!(got.packet_id, 0, "{v:?}: [MQTT-4.3.3-1]");
        sub.send(&Packet::PubRec(PubResp::new(got.packet_id))).await;
        let Packet::PubRel(rel) = sub.recv().await else {
            panic!("expected PUBREL")
        };
        assert_eq!(rel.packet_id, got.packet_id, "{v:?}: [MQTT-4.3.3-4] of 5.0");
        sub.send(&Packet::PubComp(PubResp::new(got.packet_id)))
            .await;
        sub.expect_nothing().await;
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn delivered_qos_is_the_minimum_of_published_and_granted() {
    let b = start().await;
    let mut subs = Vec::new();
    for granted in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let v = VERSIONS[granted as usize % 2];
        let mut s = Raw::connect(b.addr, v, &format!("min-{}", granted as u8), true).await;
        assert_eq!(s.subscribe("min/t", granted).await, [granted as u8]);
        subs.push((granted, s));
    }
    let mut publisher = Raw::connect(b.addr, V5, "min-pub", true).await;
    for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        publisher
            .publish_acked("min/t", &[b'0' + qos as u8], qos, false, i as u16 + 1)
            .await;
    }
    for (granted, s) in &mut subs {
        let got: Vec<_> = s.drain().await.iter().map(|p| p.qos).collect();
        let want: Vec<_> = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
            .map(|q| q.min(*granted))
            .into();
        assert_eq!(
            got, want,
            "granted {granted:?}: [MQTT-3.8.4-6] / [MQTT-3.8.4-8]"
        );
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn rumqttc_clients_exchange_qos1_and_qos2() {
    use rumqttc::v5::mqttbytes::v5::Packet as P5;
    let b = start().await;
    let (sub5, mut ev5) = client_v5(b.addr, "rq-sub5", |_| {}).await;
    sub5.subscribe("rq/#", rumqttc::v5::mqttbytes::QoS::ExactlyOnce)
        .await
        .unwrap();
    next_v5(&mut ev5, |p| matches!(p, P5::SubAck(_)).then_some(())).await;
    let (sub4, mut ev4) = client_v4(b.addr, "rq-sub4", |_| {}).await;
    sub4.subscribe("rq/#", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    next_v4(&mut ev4, |p| {
        matches!(p, rumqttc::Packet::SubAck(_)).then_some(())
    })
    .await;

    let (pub4, mut pev4) = client_v4(b.addr, "rq-pub4", |_| {}).await;
    pub4.publish("rq/x", rumqttc::QoS::ExactlyOnce, false, "exactly")
        .await
        .unwrap();
    next_v4(&mut pev4, |p| {
        matches!(p, rumqttc::Packet::PubComp(_)).then_some(())
    })
    .await;
    let got5 = next_v5(&mut ev5, |p| match p {
        P5::Publish(p) => Some((p.qos, p.payload.clone())),
        _ => None,
    })
    .await;
    assert_eq!(
        got5,
        (rumqttc::v5::mqttbytes::QoS::ExactlyOnce, "exactly".into())
    );
    let got4 = next_v4(&mut ev4, |p| match p {
        rumqttc::Packet::Publish(p) => Some((p.qos, p.payload.clone())),
        _ => None,
    })
    .await;
    assert_eq!(
        got4,
        (rumqttc::QoS::AtLeastOnce, "exactly".into()),
        "min(2, 1)"
    );
    // The v5 client completes its side; the broker then answers its PUBREC with PUBREL.
    next_v5(&mut ev5, |p| matches!(p, P5::PubRel(_)).then_some(())).await;
    b.server.shutdown().await;
}

#[tokio::test]
async fn order_is_kept_per_topic_for_200_qos1_messages() {
    let b = start().await;
    for v in VERSIONS {
        let (mut publisher, mut sub) = pair(&b, v, "ord/t", QoS::AtLeastOnce).await;
        // Pipelined: all 200 PUBLISHes go out before any PUBACK is read.
        for i in 1..=200u16 {
            publisher
                .publish(
                    "ord/t",
                    i.to_string().as_bytes(),
                    QoS::AtLeastOnce,
                    false,
                    i,
                )
                .await;
        }
        for i in 1..=200u16 {
            match publisher.recv().await {
                Packet::PubAck(a) => assert_eq!(a.packet_id, i, "{v:?}"),
                other => panic!("expected PUBACK, got {other:?}"),
            }
        }
        for i in 1..=200u16 {
            let p = sub.expect_publish().await;
            assert_eq!(
                &p.payload[..],
                i.to_string().as_bytes(),
                "{v:?}: [MQTT-4.6.0-6] of 3.1.1 / [MQTT-4.6.0-5] [MQTT-4.6.0-6] of 5.0"
            );
            sub.send(&Packet::PubAck(PubResp::new(p.packet_id))).await;
        }
        sub.expect_nothing().await;
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn v311_inflight_window_holds_the_third_message_until_a_puback() {
    let b = start_with(|c| c.limits.max_inflight = 2).await;
    let (mut publisher, mut sub) = pair(&b, V3_1_1, "win/t", QoS::AtLeastOnce).await;
    for i in 1..=3u16 {
        publisher
            .publish_acked("win/t", &[b'0' + i as u8], QoS::AtLeastOnce, false, i)
            .await;
    }
    let first = sub.expect_publish().await;
    let second = sub.expect_publish().await;
    assert_eq!(payloads(&[first.clone(), second.clone()]), ["1", "2"]);
    sub.expect_nothing().await;
    sub.send(&Packet::PubAck(PubResp::new(first.packet_id)))
        .await;
    let third = sub.expect_publish().await;
    assert_eq!(&third.payload[..], b"3");
    assert_ne!(
        third.packet_id, second.packet_id,
        "[MQTT-2.3.1-4] id in flight"
    );
    sub.expect_nothing().await;
    b.server.shutdown().await;
}

#[tokio::test]
async fn v5_receive_maximum_limits_publishes_until_pubcomp() {
    let b = start().await;
    let mut connect = connect_packet(V5, "rm-sub", true);
    connect.properties.make_mut().receive_maximum = Some(2);
    let (mut sub, _) = Raw::connect_with(b.addr, connect).await;
    assert_eq!(sub.subscribe("rm/#", QoS::ExactlyOnce).await, [2]);
    let mut publisher = Raw::connect(b.addr, V5, "rm-pub", true).await;
    for i in 1..=3u16 {
        publisher
            .publish_acked("rm/t", &[b'0' + i as u8], QoS::ExactlyOnce, false, i)
            .await;
    }
    let first = sub.expect_publish().await;
    let second = sub.expect_publish().await;
    assert_eq!(payloads(&[first.clone(), second]), ["1", "2"]);
    // [MQTT-3.3.4-9] no third PUBLISH; [MQTT-3.3.4-10] other packets are not held back.
    sub.expect_nothing().await;
    let ack = sub
        .subscribe_with(5, &[("other", sub_opts(QoS::AtMostOnce))])
        .await;
    assert_eq!(ack.packet_id, 5);
    // A successful PUBREC does not free the slot: the PUBREL is still unacknowledged.
    sub.send(&Packet::PubRec(PubResp::new(first.packet_id)))
        .await;
    let Packet::PubRel(rel) = sub.recv().await else {
        panic!("expected PUBREL")
    };
    assert_eq!(rel.packet_id, first.packet_id);
    sub.expect_nothing().await;
    sub.send(&Packet::PubComp(PubResp::new(first.packet_id)))
        .await;
    assert_eq!(&sub.expect_publish().await.payload[..], b"3");
    b.server.shutdown().await;
}

#[tokio::test]
async fn packet_ids_are_never_reused_while_in_flight() {
    const BATCH: u16 = 1000;
    let b = start_with(|c| {
        c.limits.max_inflight = 50;
        c.sessions.max_queued_messages = usize::from(BATCH);
    })
    .await;
    let (mut publisher, mut sub) = pair(&b, V3_1_1, "ids/t", QoS::AtLeastOnce).await;
    publisher
        .publish_acked("ids/t", b"held", QoS::AtLeastOnce, false, 1)
        .await;
    // The first message stays unacknowledged while more than 65535 others go through, so the
    // ids wrap around and must step over it.
    let held = sub.expect_publish().await.packet_id;
    let (mut last, mut wrapped) = (held, false);
    for _ in 0..66 {
        for id in 1..=BATCH {
            publisher
                .publish("ids/t", b"m", QoS::AtLeastOnce, false, id)
                .await;
        }
        for id in 1..=BATCH {
            assert!(matches!(publisher.recv().await, Packet::PubAck(a) if a.packet_id == id));
        }
        for _ in 0..BATCH {
            let p = sub.expect_publish().await;
            // [MQTT-2.3.1-4] of 3.1.1 / [MQTT-2.2.1-4] of 5.0.
            assert!(
                p.packet_id != 0 && p.packet_id != held,
                "id {} reused",
                p.packet_id
            );
            wrapped |= p.packet_id < last;
            last = p.packet_id;
            sub.send(&Packet::PubAck(PubResp::new(p.packet_id))).await;
        }
    }
    assert!(wrapped, "the ids wrapped around");
    sub.expect_nothing().await;
    assert_eq!(
        Metrics::get(&b.server.broker().metrics().messages_dropped),
        0
    );
    b.server.shutdown().await;
}

#[tokio::test]
async fn inbound_qos2_duplicate_is_acknowledged_but_delivered_once() {
    let b = start().await;
    for v in VERSIONS {
        let (mut publisher, mut sub) = pair(&b, v, "once/t", QoS::AtMostOnce).await;
        publisher
            .publish("once/t", b"a", QoS::ExactlyOnce, false, 5)
            .await;
        assert!(matches!(publisher.recv().await, Packet::PubRec(r) if r.packet_id == 5));
        let mut dup = publish_packet("once/t", b"a", QoS::ExactlyOnce, false, 5);
        dup.dup = true;
        publisher.send(&Packet::Publish(dup)).await;
        // [MQTT-4.3.3-2] of 3.1.1 / [MQTT-4.3.3-10] of 5.0: PUBREC again, no second delivery.
        match publisher.recv().await {
            Packet::PubRec(r) => assert_eq!((r.packet_id, r.reason), (5, ReasonCode::SUCCESS)),
            other => panic!("{v:?}: expected PUBREC, got {other:?}"),
        }
        assert_eq!(payloads(&sub.drain().await), ["a"], "{v:?}");
        publisher.send(&Packet::PubRel(PubResp::new(5))).await;
        assert!(matches!(publisher.recv().await, Packet::PubComp(c) if c.packet_id == 5));
        // [MQTT-4.3.3-12] of 5.0: after PUBCOMP the id names a new message.
        publisher
            .publish_acked("once/t", b"b", QoS::ExactlyOnce, false, 5)
            .await;
        assert_eq!(payloads(&sub.drain().await), ["b"], "{v:?}");
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn v5_acks_say_no_matching_subscribers() {
    let b = start().await;
    let mut publisher = Raw::connect(b.addr, V5, "nm-pub", true).await;
    for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let reason = publisher.publish_acked("nm/t", b"x", qos, false, 1).await;
        assert_eq!(reason, ReasonCode::NO_MATCHING_SUBSCRIBERS, "{qos:?}");
    }
    let mut sub = Raw::connect(b.addr, V5, "nm-sub", true).await;
    sub.subscribe("nm/t", QoS::AtMostOnce).await;
    for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let reason = publisher.publish_acked("nm/t", b"x", qos, false, 1).await;
        assert_eq!(reason, ReasonCode::SUCCESS, "{qos:?}");
    }
    assert_eq!(sub.drain().await.len(), 2);
    b.server.shutdown().await;
}

#[tokio::test]
async fn v5_failed_acknowledgements_end_the_exchange_and_free_the_window() {
    let b = start().await;
    let mut connect = connect_packet(V5, "fail-sub", true);
    connect.properties.make_mut().receive_maximum = Some(1);
    let (mut sub, _) = Raw::connect_with(b.addr, connect).await;
    sub.subscribe("fail/#", QoS::ExactlyOnce).await;
    let mut publisher = Raw::connect(b.addr, V5, "fail-pub", true).await;
    for (i, qos) in [
        (1, QoS::ExactlyOnce),
        (2, QoS::AtLeastOnce),
        (3, QoS::AtLeastOnce),
    ] {
        publisher
            .publish_acked("fail/t", &[b'0' + i as u8], qos, false, i)
            .await;
    }
    let failed = |id| PubResp {
        reason: ReasonCode::UNSPECIFIED_ERROR,
        ..PubResp::new(id)
    };
    // A PUBREC of 0x80 or more: no PUBREL, and the slot is free [MQTT-3.3.4-9] [MQTT-4.4.0-2].
    let first = sub.expect_publish().await;
    sub.expect_nothing().await;
    sub.send(&Packet::PubRec(failed(first.packet_id))).await;
    let second = sub.expect_publish().await;
    assert_eq!(&second.payload[..], b"2", "no PUBREL before it");
    // A failed PUBACK frees the slot as well.
    sub.send(&Packet::PubAck(failed(second.packet_id))).await;
    assert_eq!(&sub.expect_publish().await.payload[..], b"3");
    b.server.shutdown().await;
}

#[tokio::test]
async fn pubrel_for_an_unknown_id_is_still_completed() {
    let b = start().await;
    for (v, reason) in [
        (V3_1_1, ReasonCode::SUCCESS),
        (V5, ReasonCode::PACKET_IDENTIFIER_NOT_FOUND),
    ] {
        let mut c = Raw::connect(b.addr, v, "unknown-rel", true).await;
        c.send(&Packet::PubRel(PubResp::new(33))).await;
        match c.recv().await {
            // [MQTT-4.3.3-11] of 5.0, with Packet Identifier not found [MQTT-3.7.2-1].
            Packet::PubComp(comp) => assert_eq!((comp.packet_id, comp.reason), (33, reason)),
            other => panic!("{v:?}: expected PUBCOMP, got {other:?}"),
        }
        c.expect_nothing().await;
    }
    b.server.shutdown().await;
}
