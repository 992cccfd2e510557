//! What a v5 CONNACK announces from the configuration, and the server's side of it (MQTT 5.0
//! sections 3.2.2.3 and 4.10-4.11): Server Keep Alive, Wildcard Subscription Available,
//! Subscription Identifiers Available, Response Information, Server Reference, and the Reason
//! String a server-sent DISCONNECT carries.

mod support;

use roost::protocol::ProtocolVersion::{V3_1_1, V5};
use roost::protocol::{ByteStr, Packet, QoS, ReasonCode};
use support::*;

#[tokio::test]
async fn server_keep_alive_caps_what_a_client_asks_for() {
    let b = start_with(|c| c.limits.max_keepalive = 30).await;
    for (asked, told) in [(60, Some(30)), (0, Some(30)), (20, None)] {
        let mut c = connect_packet(V5, "ka", true);
        c.keep_alive = asked;
        let (_c, ack) = Raw::connect_with(b.addr, c).await;
        // [MQTT-3.2.2-21] the client must then use the server's value.
        assert_eq!(ack.properties.server_keep_alive, told, "asked {asked}");
    }
    // 3.1.1 has no way to tell the client: above the limit is refused, as in Mosquitto.
    let mut c = connect_packet(V3_1_1, "ka-old", true);
    c.keep_alive = 60;
    let mut raw = Raw::open(b.addr, V3_1_1).await;
    raw.send(&Packet::Connect(Box::new(c))).await;
    match raw.recv().await {
        Packet::ConnAck(a) => assert_eq!(a.reason, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID),
        other => panic!("expected CONNACK 0x02, got {other:?}"),
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn a_client_told_a_shorter_keep_alive_is_held_to_it() {
    let b = start_with(|c| c.limits.max_keepalive = 1).await;
    let mut c = connect_packet(V5, "quiet", true);
    c.keep_alive = 60;
    let (mut quiet, ack) = Raw::connect_with(b.addr, c).await;
    assert_eq!(ack.properties.server_keep_alive, Some(1));
    // Silent for 1.5 s: DISCONNECT 0x8D, with a Reason String.
    match quiet.closed().await.as_slice() {
        [Packet::Disconnect(d)] => {
            assert_eq!(d.reason, ReasonCode::KEEP_ALIVE_TIMEOUT);
            assert!(d.properties.reason_string.is_some());
        }
        other => panic!("expected DISCONNECT 0x8D, got {other:?}"),
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn turned_off_wildcards_and_subscription_identifiers_are_announced_and_refused() {
    let b = start_with(|c| {
        c.limits.wildcard_subscription_available = false;
        c.limits.subscription_identifier_available = false;
    })
    .await;
    let (mut c, ack) = Raw::connect_with(b.addr, connect_packet(V5, "c", true)).await;
    assert_eq!(ack.properties.wildcard_subscription_available, Some(0));
    assert_eq!(ack.properties.subscription_identifier_available, Some(0));
    let filters = [
        ("a/+", sub_opts(QoS::AtMostOnce)),
        ("a/#", sub_opts(QoS::AtMostOnce)),
        ("$share/g/a/+", sub_opts(QoS::AtMostOnce)),
        ("a/b", sub_opts(QoS::AtMostOnce)),
    ];
    let suback = c.subscribe_with(1, &filters).await;
    let refused = ReasonCode::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED;
    assert_eq!(
        suback.reason_codes,
        [refused, refused, refused, ReasonCode::GRANTED_QOS_0]
    );
    // A Subscription Identifier is then a protocol error: DISCONNECT 0xA1.
    let mut s = subscribe_packet(2, &[("b", sub_opts(QoS::AtMostOnce))]);
    s.properties.make_mut().subscription_identifiers = vec![7];
    c.send(&Packet::Subscribe(s)).await;
    c.expect_disconnect(ReasonCode::SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED)
        .await;
    b.server.shutdown().await;
}

#[tokio::test]
async fn response_information_answers_only_a_client_that_asks() {
    let b = start_with(|c| c.mqtt5.response_information_prefix = "responses/".into()).await;
    let mut asks = connect_packet(V5, "asker", true);
    asks.properties.make_mut().request_response_information = Some(1);
    let (_c, ack) = Raw::connect_with(b.addr, asks).await;
    assert_eq!(
        ack.properties.response_information.as_deref(),
        Some("responses/asker/")
    );
    let (_c, ack) = Raw::connect_with(b.addr, connect_packet(V5, "silent", true)).await;
    assert_eq!(ack.properties.response_information, None, "[MQTT-3.1.2-28]");
    b.server.shutdown().await;
}

#[tokio::test]
async fn request_response_round_trip_through_the_broker() {
    // The pattern of 5.0 section 4.10: the requester subscribes to its response topic and
    // sends it with correlation data; the responder answers there, echoing the data.
    let b = start_with(|c| c.mqtt5.response_information_prefix = "responses/".into()).await;
    let mut asks = connect_packet(V5, "requester", true);
    asks.properties.make_mut().request_response_information = Some(1);
    let (mut requester, ack) = Raw::connect_with(b.addr, asks).await;
    let base = ack.properties.response_information.clone().unwrap();
    let reply_to = format!("{base}time");
    requester.subscribe(&reply_to, QoS::AtLeastOnce).await;
    let mut responder = Raw::connect(b.addr, V5, "responder", true).await;
    responder.subscribe("service/time", QoS::AtLeastOnce).await;

    let mut request = publish_packet("service/time", b"now?", QoS::AtLeastOnce, false, 1);
    request.properties.make_mut().response_topic = Some(reply_to.as_str().try_into().unwrap());
    request.properties.make_mut().correlation_data = Some(bytes::Bytes::from_static(b"req-1"));
    requester.send(&Packet::Publish(request)).await;
    let req = responder.expect_publish().await;
    responder.ack(&req).await;
    let topic = req.properties.response_topic.clone().unwrap();
    let mut reply = publish_packet(&topic, b"12:00", QoS::AtLeastOnce, false, 1);
    reply.properties.make_mut().correlation_data = req.properties.correlation_data.clone();
    responder.send(&Packet::Publish(reply)).await;

    // The requester sees its PUBACK and the reply, in either order.
    let mut got_reply = None;
    for _ in 0..2 {
        match requester.recv().await {
            Packet::PubAck(_) => {}
            Packet::Publish(p) => got_reply = Some(p),
            other => panic!("unexpected {other:?}"),
        }
    }
    let got = got_reply.expect("the reply");
    assert_eq!(&got.payload[..], b"12:00");
    assert_eq!(
        got.properties.correlation_data.as_deref(),
        Some(&b"req-1"[..])
    );
    b.server.shutdown().await;
}

#[tokio::test]
async fn a_reason_string_explains_a_server_disconnect_unless_the_client_declined() {
    let b = start().await;
    for (problem_info, want_string) in [(None, true), (Some(0), false)] {
        let mut c = connect_packet(V5, "c", true);
        c.properties.make_mut().request_problem_information = problem_info;
        let (mut raw, _) = Raw::connect_with(b.addr, c).await;
        // A second CONNECT is a protocol error.
        raw.send(&Packet::Connect(Box::new(connect_packet(V5, "c", true))))
            .await;
        match raw.closed().await.as_slice() {
            [Packet::Disconnect(d)] => {
                assert_eq!(d.reason, ReasonCode::PROTOCOL_ERROR);
                assert_eq!(d.properties.reason_string.is_some(), want_string);
            }
            other => panic!("expected DISCONNECT 0x82, got {other:?}"),
        }
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn a_refused_connack_says_why_unless_the_client_declined() {
    let b = start_with(|c| c.auth.allow_anonymous = false).await;
    for (problem_info, max_packet, want_string) in [
        (None, None, true),
        (Some(0), None, false),
        // [MQTT-3.2.2-19] not if it would exceed the client's Maximum Packet Size.
        (None, Some(16), false),
    ] {
        let mut c = connect_packet(V5, "anon", true);
        c.properties.make_mut().request_problem_information = problem_info;
        c.properties.make_mut().maximum_packet_size = max_packet;
        let mut raw = Raw::open(b.addr, V5).await;
        raw.send(&Packet::Connect(Box::new(c))).await;
        match raw.recv().await {
            Packet::ConnAck(a) => {
                assert_eq!(a.reason, ReasonCode::NOT_AUTHORIZED);
                assert_eq!(
                    a.properties.reason_string.is_some(),
                    want_string,
                    "{problem_info:?} {max_packet:?}"
                );
            }
            other => panic!("expected CONNACK 0x87, got {other:?}"),
        }
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn nothing_after_a_refused_connect_is_processed() {
    let passwords = std::env::temp_dir().join(format!("roost-watcher-{}", std::process::id()));
    roost::passwords::set_password(&passwords, "watcher", "w").unwrap();
    let b = start_with(|c| {
        c.auth.allow_anonymous = false;
        c.auth.password_file = passwords.clone();
    })
    .await;
    std::fs::remove_file(&passwords).ok();
    let mut c = connect_packet(V5, "watcher", true);
    c.username = Some(ByteStr::try_from("watcher").unwrap());
    c.password = Some(bytes::Bytes::from_static(b"w"));
    let (mut watcher, _) = Raw::connect_with(b.addr, c).await;
    watcher.subscribe("t", QoS::AtMostOnce).await;
    // An anonymous CONNECT and a PUBLISH right behind it, in one write.
    let mut bytes = bytes::BytesMut::new();
    Packet::Connect(Box::new(connect_packet(V5, "anon", true)))
        .encode(V5, &mut bytes)
        .unwrap();
    Packet::Publish(publish_packet("t", b"sneaky", QoS::AtMostOnce, false, 0))
        .encode(V5, &mut bytes)
        .unwrap();
    let mut raw = Raw::open(b.addr, V5).await;
    raw.send_bytes(&bytes).await;
    match raw.closed().await.as_slice() {
        [Packet::ConnAck(a)] => assert_eq!(a.reason, ReasonCode::NOT_AUTHORIZED),
        other => panic!("expected CONNACK 0x87 then close, got {other:?}"),
    }
    // [MQTT-3.1.4-6]
    watcher.expect_nothing().await;
    b.server.shutdown().await;
}
