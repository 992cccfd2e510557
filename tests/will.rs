//! Will messages (3.1.2.5 Will Flag, 3.1.2.6 Will QoS, 3.1.2.7 Will Retain, 3.14.4 DISCONNECT
//! actions): when the broker publishes a client's will, and when it must not.

mod support;

use bytes::Bytes;
use roost::Metrics;
use roost::protocol::ProtocolVersion::{self, V3_1_1, V5};
use roost::protocol::{ByteStr, Connect, Disconnect, Packet, QoS, ReasonCode, Will};
use support::*;

const VERSIONS: [ProtocolVersion; 2] = [V3_1_1, V5];

/// CONNECT (clean, keep alive 60) carrying a will on `will/<id>` with payload `gone:<id>`.
fn with_will(v: ProtocolVersion, id: &str, qos: QoS, retain: bool) -> Connect {
    let mut c = connect_packet(v, id, true);
    c.will = Some(Will {
        topic: ByteStr::try_from(format!("will/{id}")).unwrap(),
        payload: Bytes::from(format!("gone:{id}")),
        qos,
        retain,
        properties: Default::default(),
    });
    c
}

/// A client that left a QoS 0, non-retained will.
async fn will_client(b: &TestBroker, v: ProtocolVersion, id: &str) -> Raw {
    Raw::connect_with(b.addr, with_will(v, id, QoS::AtMostOnce, false))
        .await
        .0
}

/// A v5 client subscribed to `will/#` at QoS 2.
async fn watcher(b: &TestBroker) -> Raw {
    let mut w = Raw::connect(b.addr, V5, "watcher", true).await;
    assert_eq!(w.subscribe("will/#", QoS::ExactlyOnce).await, vec![2]);
    w
}

/// The next packet on `w` must be the will of `id`, as a non-retained message at `qos`.
async fn expect_will(w: &mut Raw, id: &str, qos: QoS) {
    let p = w.expect_publish().await;
    assert_eq!(p.topic.as_str(), format!("will/{id}"));
    assert_eq!(&p.payload[..], format!("gone:{id}").as_bytes());
    assert_eq!(p.qos, qos, "will QoS of {id}");
    assert!(
        !p.retain,
        "a live subscriber gets RETAIN 0 [5.0 MQTT-3.3.1-12]"
    );
    w.ack(&p).await;
}

#[tokio::test]
async fn socket_closed_without_disconnect_publishes_the_will() {
    let b = start().await;
    let mut w = watcher(&b).await;
    for v in VERSIONS {
        let id = format!("drop-{v:?}");
        let c = will_client(&b, v, &id).await;
        drop(c);
        // [MQTT-3.1.2-8] closed without DISCONNECT: the will is published.
        expect_will(&mut w, &id, QoS::AtMostOnce).await;
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn protocol_error_publishes_the_will() {
    let b = start().await;
    let mut w = watcher(&b).await;
    for v in VERSIONS {
        let id = format!("bad-{v:?}");
        let mut c = will_client(&b, v, &id).await;
        c.send_bytes(&[0x36, 0x00]).await; // PUBLISH with QoS 3
        let before = c.closed().await;
        if v.is_v5() {
            assert!(
                matches!(before.as_slice(), [Packet::Disconnect(d)] if d.reason == ReasonCode::MALFORMED_PACKET),
                "{before:?}"
            );
        } else {
            assert!(before.is_empty(), "{before:?}");
        }
        expect_will(&mut w, &id, QoS::AtMostOnce).await;
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn keep_alive_timeout_publishes_the_will() {
    let b = start().await;
    let mut w = watcher(&b).await;
    for v in VERSIONS {
        let id = format!("silent-{v:?}");
        let mut connect = with_will(v, &id, QoS::AtMostOnce, false);
        connect.keep_alive = 1;
        let (mut c, _) = Raw::connect_with(b.addr, connect).await;
        // Nothing sent: closed after 1.5 s [MQTT-3.1.2-24 of 3.1.1, MQTT-3.1.2-22 of 5.0].
        c.closed().await;
        expect_will(&mut w, &id, QoS::AtMostOnce).await;
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn takeover_publishes_the_old_connections_will() {
    let b = start().await;
    let mut w = watcher(&b).await;
    for v in VERSIONS {
        let id = format!("taken-{v:?}");
        let mut old = will_client(&b, v, &id).await;
        let mut new = Raw::connect(b.addr, v, &id, true).await;
        old.closed().await;
        expect_will(&mut w, &id, QoS::AtMostOnce).await;
        // The new connection left no will: a normal DISCONNECT publishes nothing more.
        new.send(&Packet::PingReq).await;
        assert_eq!(new.recv().await, Packet::PingResp);
        new.disconnect().await;
        w.expect_nothing().await;
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn server_shutdown_publishes_the_will() {
    let b = start().await;
    let broker = b.server.broker().clone();
    let mut c = Raw::connect_with(b.addr, with_will(V5, "at-exit", QoS::AtLeastOnce, true))
        .await
        .0;
    assert_eq!(broker.retained_count(), 0);
    let shutdown = tokio::spawn(b.server.shutdown());
    let before = c.closed().await;
    assert!(
        matches!(before.as_slice(), [Packet::Disconnect(d)] if d.reason == ReasonCode::SERVER_SHUTTING_DOWN),
        "{before:?}"
    );
    shutdown.await.unwrap();
    // Every connection is closed by now, so no subscriber could receive it; the retained will
    // in the store and the counter show it was published before the server stopped.
    assert_eq!(Metrics::get(&broker.metrics().wills_published), 1);
    assert_eq!(broker.retained_count(), 1, "the retained will was stored");
}

#[tokio::test]
async fn normal_disconnect_discards_the_will() {
    let b = start().await;
    let mut w = watcher(&b).await;
    for v in VERSIONS {
        let id = format!("polite-{v:?}");
        let c = will_client(&b, v, &id).await;
        // [MQTT-3.14.4-3] DISCONNECT (0x00): the will is discarded, not published
        // [MQTT-3.1.2-10].
        c.disconnect().await;
        w.expect_nothing().await;
    }
    // A retained will discarded by DISCONNECT is not stored either.
    let mut c = Raw::connect_with(b.addr, with_will(V5, "polite-r", QoS::AtMostOnce, true))
        .await
        .0;
    c.send(&Packet::Disconnect(Disconnect {
        reason: ReasonCode::NORMAL_DISCONNECTION,
        properties: Default::default(),
    }))
    .await;
    assert!(c.closed().await.is_empty());
    w.expect_nothing().await;
    let broker = b.server.broker().clone();
    assert_eq!(Metrics::get(&broker.metrics().wills_published), 0);
    assert_eq!(broker.retained_count(), 0);
    b.server.shutdown().await;
}

#[tokio::test]
async fn v5_disconnect_with_will_message_publishes_it() {
    let b = start().await;
    let mut w = watcher(&b).await;
    let c = will_client(&b, V5, "leaving").await;
    disconnect_with(c, ReasonCode::DISCONNECT_WITH_WILL).await;
    // 5.0 [MQTT-3.1.2-8]: only DISCONNECT 0x00 deletes the will; 0x04 asks for it.
    expect_will(&mut w, "leaving", QoS::AtMostOnce).await;
    b.server.shutdown().await;
}

#[tokio::test]
async fn v5_disconnect_with_an_error_code_publishes_the_will() {
    let b = start().await;
    let mut w = watcher(&b).await;
    for (i, reason) in [
        ReasonCode::UNSPECIFIED_ERROR,
        ReasonCode::IMPLEMENTATION_SPECIFIC_ERROR,
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("failing-{i}");
        let c = will_client(&b, V5, &id).await;
        disconnect_with(c, reason).await;
        // 5.0 [MQTT-3.1.2-8] and [MQTT-3.14.4-3]: the will is discarded on 0x00 only.
        expect_will(&mut w, &id, QoS::AtMostOnce).await;
    }
    b.server.shutdown().await;
}

/// Sends a v5 DISCONNECT with `reason` and waits for the broker to close the connection.
async fn disconnect_with(mut c: Raw, reason: ReasonCode) {
    c.send(&Packet::Disconnect(Disconnect {
        reason,
        properties: Default::default(),
    }))
    .await;
    let rest = c.closed().await;
    assert!(rest.is_empty(), "packets after DISCONNECT: {rest:?}");
}

#[tokio::test]
async fn will_qos_is_honoured() {
    let b = start().await;
    let mut w = watcher(&b).await;
    for v in VERSIONS {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let id = format!("q{}-{v:?}", qos as u8);
            let c = Raw::connect_with(b.addr, with_will(v, &id, qos, false))
                .await
                .0;
            drop(c);
            // [MQTT-3.1.2-9] the Will QoS is used: the QoS 2 subscriber gets it at that QoS.
            expect_will(&mut w, &id, qos).await;
        }
    }
    // A subscription at QoS 0 downgrades it, as for any message.
    let mut low = Raw::connect(b.addr, V5, "low", true).await;
    low.subscribe("will/#", QoS::AtMostOnce).await;
    drop(
        Raw::connect_with(b.addr, with_will(V5, "q2-low", QoS::ExactlyOnce, false))
            .await
            .0,
    );
    let p = low.expect_publish().await;
    assert_eq!((p.topic.as_str(), p.qos), ("will/q2-low", QoS::AtMostOnce));
    expect_will(&mut w, "q2-low", QoS::ExactlyOnce).await;
    b.server.shutdown().await;
}

#[tokio::test]
async fn will_retain_is_honoured() {
    let b = start().await;
    let mut w = watcher(&b).await;
    for v in VERSIONS {
        let kept = format!("kept-{v:?}");
        let plain = format!("plain-{v:?}");
        drop(
            Raw::connect_with(b.addr, with_will(v, &kept, QoS::AtLeastOnce, true))
                .await
                .0,
        );
        expect_will(&mut w, &kept, QoS::AtLeastOnce).await;
        drop(
            Raw::connect_with(b.addr, with_will(v, &plain, QoS::AtLeastOnce, false))
                .await
                .0,
        );
        expect_will(&mut w, &plain, QoS::AtLeastOnce).await;

        // A later subscriber gets the retained will with RETAIN 1 [MQTT-3.1.2-17 of 3.1.1,
        // MQTT-3.1.2-15 of 5.0] and not the other [MQTT-3.1.2-16 / MQTT-3.1.2-14].
        let mut later = Raw::connect(b.addr, v, &format!("later-{v:?}"), true).await;
        let filters = [format!("will/{kept}"), format!("will/{plain}")];
        let ack = later
            .subscribe_with(
                1,
                &[
                    (&filters[0], sub_opts(QoS::AtLeastOnce)),
                    (&filters[1], sub_opts(QoS::AtLeastOnce)),
                ],
            )
            .await;
        assert_eq!(ack.reason_codes.len(), 2);
        let got = later.drain().await;
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].topic.as_str(), format!("will/{kept}"));
        assert_eq!(&got[0].payload[..], format!("gone:{kept}").as_bytes());
        assert!(
            got[0].retain,
            "retained will sent on subscribe with RETAIN 1"
        );
        assert_eq!(got[0].qos, QoS::AtLeastOnce);
    }
    b.server.shutdown().await;
}
