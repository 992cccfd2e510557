//! CONNECT and CONNACK (3.1 of both specs): versions, client ids, session present, refusals.

mod support;

use roost::protocol::ProtocolVersion::{V3_1, V3_1_1, V5};
use roost::protocol::{Packet, QoS, ReasonCode};
use support::*;

#[tokio::test]
async fn every_version_connects() {
    let b = start().await;
    for (v, id) in [(V3_1, "c31"), (V3_1_1, "c311"), (V5, "c5")] {
        let mut c = Raw::connect(b.addr, v, id, true).await;
        c.send(&Packet::PingReq).await;
        assert_eq!(c.recv().await, Packet::PingResp);
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn rumqttc_v4_and_v5_exchange_a_message() {
    let b = start().await;
    let (sub, mut sub_events) = client_v5(b.addr, "sub5", |_| {}).await;
    sub.subscribe("greet/#", rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
        .await
        .unwrap();
    next_v5(&mut sub_events, |p| {
        matches!(p, rumqttc::v5::mqttbytes::v5::Packet::SubAck(_)).then_some(())
    })
    .await;
    let (publisher, mut pub_events) = client_v4(b.addr, "pub4", |_| {}).await;
    next_v4(&mut pub_events, |p| {
        matches!(p, rumqttc::Packet::ConnAck(_)).then_some(())
    })
    .await;
    publisher
        .publish("greet/world", rumqttc::QoS::AtLeastOnce, false, "hello")
        .await
        .unwrap();
    let got = next_v5(&mut sub_events, |p| match p {
        rumqttc::v5::mqttbytes::v5::Packet::Publish(p) => {
            Some((p.topic.clone(), p.payload.clone(), p.qos))
        }
        _ => None,
    })
    .await;
    assert_eq!(&got.0[..], b"greet/world");
    assert_eq!(&got.1[..], b"hello");
    assert_eq!(got.2, rumqttc::v5::mqttbytes::QoS::AtLeastOnce);
    b.server.shutdown().await;
}

#[tokio::test]
async fn empty_client_id_v311_needs_clean_session() {
    let b = start().await;
    let mut c = Raw::open(b.addr, V3_1_1).await;
    c.send(&Packet::Connect(Box::new(connect_packet(
        V3_1_1, "", false,
    ))))
    .await;
    let Packet::ConnAck(a) = c.recv().await else {
        panic!()
    };
    assert_eq!(
        a.reason,
        ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
        "[MQTT-3.1.3-8] return code 2"
    );
    assert!(c.closed().await.is_empty());
    // With a clean session it is accepted.
    let mut c = Raw::open(b.addr, V3_1_1).await;
    c.send(&Packet::Connect(Box::new(connect_packet(V3_1_1, "", true))))
        .await;
    let Packet::ConnAck(a) = c.recv().await else {
        panic!()
    };
    assert_eq!(a.reason, ReasonCode::SUCCESS);
    b.server.shutdown().await;
}

#[tokio::test]
async fn empty_client_id_v5_gets_an_assigned_one() {
    let b = start().await;
    let mut c = Raw::open(b.addr, V5).await;
    c.send(&Packet::Connect(Box::new(connect_packet(V5, "", true))))
        .await;
    let Packet::ConnAck(a) = c.recv().await else {
        panic!()
    };
    assert_eq!(a.reason, ReasonCode::SUCCESS);
    let assigned = a
        .properties
        .assigned_client_identifier
        .clone()
        .expect("[MQTT-3.2.2-16] assigned id");
    assert!(!assigned.is_empty());
    assert!(
        b.server.broker().has_session(&assigned),
        "the session is registered under it"
    );
    b.server.shutdown().await;
}

#[tokio::test]
async fn session_present_reflects_a_kept_session() {
    let b = start().await;
    let mut c = Raw::connect(b.addr, V3_1_1, "keeper", false).await;
    c.subscribe("k/#", QoS::AtLeastOnce).await;
    c.send(&Packet::Disconnect(Default::default())).await;
    c.closed().await;
    let mut c = Raw::open(b.addr, V3_1_1).await;
    c.send(&Packet::Connect(Box::new(connect_packet(
        V3_1_1, "keeper", false,
    ))))
    .await;
    let Packet::ConnAck(a) = c.recv().await else {
        panic!()
    };
    assert!(
        a.session_present,
        "[MQTT-3.2.2-2] persistent session resumed"
    );
    c.send(&Packet::Disconnect(Default::default())).await;
    c.closed().await;
    let mut c = Raw::open(b.addr, V3_1_1).await;
    c.send(&Packet::Connect(Box::new(connect_packet(
        V3_1_1, "keeper", true,
    ))))
    .await;
    let Packet::ConnAck(a) = c.recv().await else {
        panic!()
    };
    assert!(
        !a.session_present,
        "[MQTT-3.2.2-1] clean session: session present 0"
    );
    b.server.shutdown().await;
}

#[tokio::test]
async fn unsupported_protocol_level_gets_return_code_1() {
    let b = start().await;
    let mut c = Raw::open(b.addr, V3_1_1).await;
    // CONNECT "MQTT" level 6
    c.send_bytes(&[
        0x10, 0x0D, 0, 4, b'M', b'Q', b'T', b'T', 6, 2, 0, 60, 0, 1, b'x',
    ])
    .await;
    let Packet::ConnAck(a) = c.recv().await else {
        panic!()
    };
    assert_eq!(
        a.reason,
        ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
        "[MQTT-3.1.2-2]"
    );
    assert!(c.closed().await.is_empty());
    b.server.shutdown().await;
}

#[tokio::test]
async fn anonymous_refused_when_configured() {
    let b = start_with(|c| c.auth.allow_anonymous = false).await;
    for (v, code) in [
        (V3_1_1, ReasonCode::NOT_AUTHORIZED),
        (V5, ReasonCode::NOT_AUTHORIZED),
    ] {
        let mut c = Raw::open(b.addr, v).await;
        c.send(&Packet::Connect(Box::new(connect_packet(v, "anon", true))))
            .await;
        let Packet::ConnAck(a) = c.recv().await else {
            panic!()
        };
        assert_eq!(a.reason, code);
        assert!(c.closed().await.is_empty());
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn a_will_the_server_cannot_honour_is_refused() {
    let b = start_with(|c| {
        c.limits.max_qos = 1;
        c.limits.retain_available = false;
    })
    .await;
    let will = |qos, retain| roost::protocol::Will {
        topic: roost::protocol::ByteStr::try_from("w").unwrap(),
        payload: bytes::Bytes::from_static(b"gone"),
        qos,
        retain,
        properties: Default::default(),
    };
    for (v, w, code) in [
        (
            V5,
            will(QoS::ExactlyOnce, false),
            ReasonCode::QOS_NOT_SUPPORTED,
        ),
        (
            V5,
            will(QoS::AtMostOnce, true),
            ReasonCode::RETAIN_NOT_SUPPORTED,
        ),
        (
            V3_1_1,
            will(QoS::ExactlyOnce, false),
            ReasonCode::NOT_AUTHORIZED,
        ),
    ] {
        let mut c = Raw::open(b.addr, v).await;
        let mut connect = connect_packet(v, "willful", true);
        connect.will = Some(w);
        c.send(&Packet::Connect(Box::new(connect))).await;
        let Packet::ConnAck(a) = c.recv().await else {
            panic!()
        };
        assert_eq!(a.reason, code, "[MQTT-3.2.2-12] / [MQTT-3.2.2-13] of 5.0");
        assert!(c.closed().await.is_empty());
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn first_packet_must_be_connect() {
    let b = start().await;
    let mut c = Raw::open(b.addr, V3_1_1).await;
    c.send(&Packet::PingReq).await;
    assert!(
        c.closed().await.is_empty(),
        "[MQTT-3.1.0-1] closed without an answer"
    );
    b.server.shutdown().await;
}

#[tokio::test]
async fn second_connect_is_a_protocol_error() {
    let b = start().await;
    let mut c = Raw::connect(b.addr, V5, "twice", true).await;
    c.send(&Packet::Connect(Box::new(connect_packet(
        V5, "twice", true,
    ))))
    .await;
    let before = c.closed().await;
    assert!(
        matches!(before.as_slice(), [Packet::Disconnect(d)] if d.reason == ReasonCode::PROTOCOL_ERROR),
        "[MQTT-3.1.0-2] DISCONNECT 0x82 then close: {before:?}"
    );
    b.server.shutdown().await;
}

#[tokio::test]
async fn connect_timeout_closes_a_silent_connection() {
    let b = start_with(|c| c.limits.connect_timeout_secs = 1).await;
    let mut c = Raw::open(b.addr, V3_1_1).await;
    assert!(c.closed().await.is_empty());
    b.server.shutdown().await;
}

#[tokio::test]
async fn shutdown_sends_v5_clients_server_shutting_down() {
    let b = start().await;
    let mut c = Raw::connect(b.addr, V5, "bye", true).await;
    let shutdown = tokio::spawn(b.server.shutdown());
    let before = c.closed().await;
    assert!(
        matches!(before.as_slice(), [Packet::Disconnect(d)] if d.reason == ReasonCode::SERVER_SHUTTING_DOWN),
        "{before:?}"
    );
    shutdown.await.unwrap();
}
