//! SUBSCRIBE, SUBACK, UNSUBSCRIBE and UNSUBACK (3.8-3.11): granted QoS, refused filters,
//! overlapping and replaced subscriptions, unsubscribing.

mod support;

use roost::protocol::ProtocolVersion::{self, V3_1_1, V5};
use roost::protocol::{ByteStr, Packet, QoS, ReasonCode, Unsubscribe};
use support::*;

const VERSIONS: [ProtocolVersion; 2] = [V3_1_1, V5];

/// Sends UNSUBSCRIBE for `filters` and returns the UNSUBACK's packet id and reason codes.
async fn unsubscribe(c: &mut Raw, packet_id: u16, filters: &[&str]) -> (u16, Vec<ReasonCode>) {
    c.send(&Packet::Unsubscribe(Unsubscribe {
        packet_id,
        properties: Default::default(),
        filters: filters
            .iter()
            .map(|f| ByteStr::try_from(*f).unwrap())
            .collect(),
    }))
    .await;
    match c.recv().await {
        Packet::UnsubAck(a) => (a.packet_id, a.reason_codes),
        other => panic!("expected UNSUBACK, got {other:?}"),
    }
}

#[tokio::test]
async fn suback_grants_the_minimum_of_requested_and_maximum_qos() {
    for (max_qos, granted) in [(2, [0, 1, 2]), (1, [0, 1, 1]), (0, [0, 0, 0])] {
        let b = start_with(|c| c.limits.max_qos = max_qos).await;
        for v in VERSIONS {
            let mut c = Raw::connect(b.addr, v, "granted", true).await;
            let filters = [
                ("g/0", sub_opts(QoS::AtMostOnce)),
                ("g/1", sub_opts(QoS::AtLeastOnce)),
                ("g/2", sub_opts(QoS::ExactlyOnce)),
            ];
            let ack = c.subscribe_with(42, &filters).await;
            // [MQTT-3.8.4-2] same id; one code per filter, in order [MQTT-3.8.4-5, MQTT-3.9.3-1].
            assert_eq!(ack.packet_id, 42);
            let codes: Vec<u8> = ack.reason_codes.iter().map(|r| r.0).collect();
            assert_eq!(codes, granted, "{v:?} max_qos {max_qos}");
            // The grant is what is delivered: a message at the highest QoS the broker accepts.
            let top = QoS::from_bits(max_qos).unwrap();
            let mut publisher = Raw::connect(b.addr, v, "granted-pub", true).await;
            publisher.publish_acked("g/2", b"x", top, false, 1).await;
            let p = c.expect_publish().await;
            assert_eq!(p.qos, QoS::from_bits(granted[2]).unwrap(), "{v:?}");
            c.ack(&p).await;
            c.disconnect().await;
        }
        b.server.shutdown().await;
    }
}

#[tokio::test]
async fn malformed_filters_are_refused_and_the_connection_stays_up() {
    let b = start().await;
    for (v, refused) in [(V3_1_1, 0x80), (V5, 0x8F)] {
        let mut c = Raw::connect(b.addr, v, "badfilter", true).await;
        let filters = [
            ("a/#/b", sub_opts(QoS::AtLeastOnce)),
            ("ok/+", sub_opts(QoS::AtLeastOnce)),
            ("a+", sub_opts(QoS::AtLeastOnce)),
            ("x#", sub_opts(QoS::AtMostOnce)),
        ];
        let ack = c.subscribe_with(3, &filters).await;
        let codes: Vec<u8> = ack.reason_codes.iter().map(|r| r.0).collect();
        // 3.1.1: 0x80 is the only failure code [MQTT-3.9.3-2]; 5.0: Topic Filter invalid.
        assert_eq!(codes, [refused, 1, refused, refused], "{v:?}");
        // The valid filter of the same packet works, and the connection is still open.
        let mut publisher = Raw::connect(b.addr, v, "badfilter-pub", true).await;
        publisher
            .publish_acked("ok/x", b"fine", QoS::AtLeastOnce, false, 1)
            .await;
        assert_eq!(payloads(&c.drain().await), ["fine"], "{v:?}");
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn v5_shared_subscriptions_are_refused_when_turned_off() {
    let b = start_with(|c| c.shared_subscriptions.available = false).await;
    let mut c = Raw::connect(b.addr, V5, "shared", true).await;
    let ack = c
        .subscribe_with(
            8,
            &[
                ("$share/g/t", sub_opts(QoS::AtLeastOnce)),
                ("t", sub_opts(QoS::AtLeastOnce)),
            ],
        )
        .await;
    assert_eq!(
        ack.reason_codes,
        [
            ReasonCode::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED,
            ReasonCode::GRANTED_QOS_1
        ]
    );
    let mut publisher = Raw::connect(b.addr, V5, "shared-pub", true).await;
    publisher
        .publish_acked("t", b"once", QoS::AtLeastOnce, false, 1)
        .await;
    assert_eq!(payloads(&c.drain().await), ["once"]);
    b.server.shutdown().await;
}

#[tokio::test]
async fn overlapping_subscriptions_deliver_one_copy_at_the_highest_qos() {
    let b = start().await;
    for v in VERSIONS {
        let mut c = Raw::connect(b.addr, v, "overlap", true).await;
        let ack = c
            .subscribe_with(
                1,
                &[
                    ("a/+", sub_opts(QoS::AtLeastOnce)),
                    ("a/#", sub_opts(QoS::ExactlyOnce)),
                    ("a/b", sub_opts(QoS::AtMostOnce)),
                ],
            )
            .await;
        assert_eq!(ack.reason_codes.len(), 3);
        let mut publisher = Raw::connect(b.addr, v, "overlap-pub", true).await;
        for qos in [QoS::ExactlyOnce, QoS::AtLeastOnce] {
            publisher.publish_acked("a/b", b"m", qos, false, 1).await;
            let got = c.drain().await;
            // [MQTT-3.3.5-1] of 3.1.1 / [MQTT-3.3.4-2] of 5.0.
            assert_eq!(got.len(), 1, "{v:?} {qos:?}: one copy, got {got:?}");
            assert_eq!(got[0].qos, qos, "{v:?}: the highest granted QoS");
        }
        c.disconnect().await;
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn v5_one_copy_carries_every_matching_subscription_identifier() {
    let b = start().await;
    let mut c = Raw::connect(b.addr, V5, "subids", true).await;
    for (id, filter) in [(11, "s/+"), (22, "s/#")] {
        let mut s = subscribe_packet(id as u16, &[(filter, sub_opts(QoS::AtLeastOnce))]);
        s.properties.make_mut().subscription_identifiers = vec![id];
        c.send(&Packet::Subscribe(s)).await;
        assert!(matches!(c.recv().await, Packet::SubAck(_)));
    }
    let mut publisher = Raw::connect(b.addr, V5, "subids-pub", true).await;
    publisher
        .publish_acked("s/x", b"m", QoS::AtLeastOnce, false, 1)
        .await;
    let got = c.drain().await;
    assert_eq!(got.len(), 1);
    let mut ids = got[0].properties.subscription_identifiers.clone();
    ids.sort();
    assert_eq!(ids, [11, 22], "[MQTT-3.3.4-3] [MQTT-3.3.4-4]");
    b.server.shutdown().await;
}

#[tokio::test]
async fn subscribing_again_replaces_the_qos() {
    let b = start().await;
    for v in VERSIONS {
        let mut c = Raw::connect(b.addr, v, "resub", true).await;
        let mut publisher = Raw::connect(b.addr, v, "resub-pub", true).await;
        for (granted, want) in [
            (QoS::ExactlyOnce, QoS::ExactlyOnce),
            (QoS::AtMostOnce, QoS::AtMostOnce),
            (QoS::AtLeastOnce, QoS::AtLeastOnce),
        ] {
            assert_eq!(c.subscribe("r/t", granted).await, [granted as u8]);
            publisher
                .publish_acked("r/t", b"m", QoS::ExactlyOnce, false, 1)
                .await;
            let got = c.drain().await;
            // [MQTT-3.8.4-3]: replaced, not added: one copy at the new QoS.
            assert_eq!(got.len(), 1, "{v:?} {granted:?}");
            assert_eq!(got[0].qos, want, "{v:?}");
        }
        c.disconnect().await;
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn unsubscribe_stops_delivery_and_unsuback_answers_each_filter() {
    let b = start().await;
    for v in VERSIONS {
        let mut c = Raw::connect(b.addr, v, "unsub", true).await;
        let ack = c
            .subscribe_with(
                1,
                &[
                    ("u/#", sub_opts(QoS::AtLeastOnce)),
                    ("u/keep", sub_opts(QoS::AtLeastOnce)),
                ],
            )
            .await;
        assert_eq!(ack.reason_codes.len(), 2);
        // `u/+` is compared character by character: it matches no subscription [MQTT-3.10.4-1].
        let (id, codes) = unsubscribe(&mut c, 77, &["u/#", "nope", "u/+"]).await;
        assert_eq!(id, 77, "{v:?}: [MQTT-3.10.4-4] / [MQTT-3.10.4-5]");
        if v.is_v5() {
            // [MQTT-3.11.3-1] [MQTT-3.11.3-2]
            assert_eq!(
                codes,
                [
                    ReasonCode::SUCCESS,
                    ReasonCode::NO_SUBSCRIPTION_EXISTED,
                    ReasonCode::NO_SUBSCRIPTION_EXISTED
                ]
            );
        } else {
            assert!(codes.is_empty(), "3.1.1 UNSUBACK has no payload");
        }
        let mut publisher = Raw::connect(b.addr, v, "unsub-pub", true).await;
        publisher
            .publish_acked("u/gone", b"no", QoS::AtLeastOnce, false, 1)
            .await;
        publisher
            .publish_acked("u/keep", b"yes", QoS::AtLeastOnce, false, 2)
            .await;
        // [MQTT-3.10.4-2]: `u/#` is gone; `u/keep` is still there.
        assert_eq!(payloads(&c.drain().await), ["yes"], "{v:?}");
        // Even when nothing is deleted the broker answers [MQTT-3.10.4-5].
        let (id, _) = unsubscribe(&mut c, 78, &["never/subscribed"]).await;
        assert_eq!(id, 78);
        c.disconnect().await;
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn v5_unsubscribe_reports_no_matching_subscribers_afterwards() {
    let b = start().await;
    let mut c = Raw::connect(b.addr, V5, "unsub5", true).await;
    c.subscribe("only/t", QoS::AtLeastOnce).await;
    let mut publisher = Raw::connect(b.addr, V5, "unsub5-pub", true).await;
    let reason = publisher
        .publish_acked("only/t", b"1", QoS::AtLeastOnce, false, 1)
        .await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    assert_eq!(payloads(&c.drain().await), ["1"]);
    let (_, codes) = unsubscribe(&mut c, 2, &["only/t"]).await;
    assert_eq!(codes, [ReasonCode::SUCCESS]);
    let reason = publisher
        .publish_acked("only/t", b"2", QoS::AtLeastOnce, false, 2)
        .await;
    assert_eq!(reason, ReasonCode::NO_MATCHING_SUBSCRIBERS);
    c.expect_nothing().await;
    b.server.shutdown().await;
}

#[tokio::test]
async fn unsubscribe_completes_a_qos2_delivery_already_started() {
    let b = start().await;
    for v in VERSIONS {
        let mut c = Raw::connect(b.addr, v, "midway", true).await;
        c.subscribe("mid/t", QoS::ExactlyOnce).await;
        let mut publisher = Raw::connect(b.addr, v, "midway-pub", true).await;
        publisher
            .publish_acked("mid/t", b"started", QoS::ExactlyOnce, false, 1)
            .await;
        let p = c.expect_publish().await;
        unsubscribe(&mut c, 2, &["mid/t"]).await;
        // [MQTT-3.10.4-3]: the QoS 2 exchange still runs to the end.
        c.ack(&p).await;
        publisher
            .publish_acked("mid/t", b"after", QoS::ExactlyOnce, false, 2)
            .await;
        c.expect_nothing().await;
        c.disconnect().await;
    }
    b.server.shutdown().await;
}
