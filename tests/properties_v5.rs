//! Message properties a v5 publisher sets reach v5 subscribers untouched (MQTT 5.0 section
//! 3.3.2.3): User Properties in order [MQTT-3.3.2-17, -18], Payload Format Indicator
//! [MQTT-3.3.2-4], Content Type [MQTT-3.3.2-20], Response Topic and Correlation Data
//! [MQTT-3.3.2-15, -16]. A payload that contradicts its Payload Format Indicator is refused
//! with 0x99.

mod support;

use bytes::Bytes;
use roost::protocol::ProtocolVersion::V5;
use roost::protocol::{ByteStr, Packet, Publish, QoS, ReasonCode};
use support::*;

fn text(s: &str) -> ByteStr {
    ByteStr::try_from(s).unwrap()
}

#[tokio::test]
async fn message_properties_are_forwarded_untouched() {
    let b = start().await;
    let mut sub = Raw::connect(b.addr, V5, "sub", true).await;
    sub.subscribe("p/#", QoS::AtLeastOnce).await;
    let mut publisher = Raw::connect(b.addr, V5, "publisher", true).await;
    let mut p = publish_packet("p/1", "héllo".as_bytes(), QoS::AtLeastOnce, false, 1);
    let props = p.properties.make_mut();
    props.payload_format_indicator = Some(1);
    props.content_type = Some(text("text/plain; charset=utf-8"));
    props.response_topic = Some(text("replies/publisher"));
    props.correlation_data = Some(Bytes::from_static(&[0, 1, 2, 0xFF]));
    props.user_properties = vec![
        (text("b"), text("2")),
        (text("a"), text("1")),
        (text("b"), text("again")),
    ];
    let sent = p.properties.clone();
    assert!(!publish_acked_packet(&mut publisher, p).await.is_error());
    let got = sub.drain().await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].properties, sent,
        "every property, user properties in order"
    );
    b.server.shutdown().await;
}

#[tokio::test]
async fn a_payload_that_is_not_utf8_despite_its_format_indicator_is_refused() {
    let b = start().await;
    let mut sub = Raw::connect(b.addr, V5, "sub", true).await;
    sub.subscribe("p/#", QoS::AtLeastOnce).await;
    let mut publisher = Raw::connect(b.addr, V5, "publisher", true).await;
    let bad = |qos, id| {
        let mut p = publish_packet("p/1", &[0xC3, 0x28], qos, false, id);
        p.properties.make_mut().payload_format_indicator = Some(1);
        p
    };
    for (qos, id) in [(QoS::AtLeastOnce, 1), (QoS::ExactlyOnce, 2)] {
        assert_eq!(
            publish_acked_packet(&mut publisher, bad(qos, id)).await,
            ReasonCode::PAYLOAD_FORMAT_INVALID
        );
    }
    sub.expect_nothing().await;
    // At QoS 0 there is no acknowledgement to carry the refusal: DISCONNECT 0x99.
    publisher
        .send(&Packet::Publish(bad(QoS::AtMostOnce, 0)))
        .await;
    publisher
        .expect_disconnect(ReasonCode::PAYLOAD_FORMAT_INVALID)
        .await;
    sub.expect_nothing().await;
    b.server.shutdown().await;
}

/// Publishes a prepared packet and returns the reason code of its PUBACK or PUBREC (finishing
/// a successful QoS 2 exchange).
async fn publish_acked_packet(raw: &mut Raw, p: Publish) -> ReasonCode {
    let (qos, id) = (p.qos, p.packet_id);
    raw.send(&Packet::Publish(p)).await;
    match (qos, raw.recv().await) {
        (QoS::AtLeastOnce, Packet::PubAck(a)) if a.packet_id == id => a.reason,
        (QoS::ExactlyOnce, Packet::PubRec(a)) if a.packet_id == id => {
            if !a.reason.is_error() {
                raw.send(&Packet::PubRel(roost::protocol::PubResp::new(id)))
                    .await;
                assert!(matches!(raw.recv().await, Packet::PubComp(_)));
            }
            a.reason
        }
        (_, other) => panic!("expected the acknowledgement of {id}, got {other:?}"),
    }
}

#[tokio::test]
async fn a_wills_user_properties_keep_their_order() {
    let b = start().await;
    let mut sub = Raw::connect(b.addr, V5, "sub", true).await;
    sub.subscribe("will/#", QoS::AtLeastOnce).await;
    let mut c = connect_packet(V5, "leaver", true);
    let mut will = roost::protocol::Will {
        topic: text("will/leaver"),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
    };
    let users = vec![
        (text("z"), text("1")),
        (text("a"), text("2")),
        (text("z"), text("3")),
    ];
    will.properties.make_mut().user_properties = users.clone();
    c.will = Some(will);
    let (leaver, _) = Raw::connect_with(b.addr, c).await;
    drop(leaver);
    let p = sub.expect_publish().await;
    // [MQTT-3.1.3-10]
    assert_eq!(p.properties.user_properties, users);
    sub.ack(&p).await;
    b.server.shutdown().await;
}
