//! MQTT 3.1.1 (level 4) and 3.1 (MQIsdp, level 3): every packet, valid and invalid.

use crate::helpers::*;
use roost::protocol::ProtocolVersion::{V3_1, V3_1_1, V5};
use roost::protocol::error;
use roost::protocol::*;

fn connect_body(name: &[u8], level: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    cat(&[&s(name), &[level, flags, 0x00, 0x3C], payload])
}

fn connect(flags: u8, payload: &[u8]) -> Vec<u8> {
    frame(0x10, &connect_body(b"MQTT", 4, flags, payload))
}

#[test]
fn connect_minimal() {
    let p = canonical(V3_1_1, &connect(0x02, &s(b"dev-1")));
    let Packet::Connect(c) = p else { panic!() };
    assert_eq!(c.protocol, V3_1_1);
    assert!(c.clean_start);
    assert_eq!(c.keep_alive, 60);
    assert_eq!(c.client_id.as_str(), "dev-1");
    assert!(c.will.is_none() && c.username.is_none() && c.password.is_none());
}

#[test]
fn connect_with_will_username_password() {
    // will QoS 1, will retain, username, password
    let payload = cat(&[
        &s(b"id"),
        &s(b"status/id"),
        &s(b"gone"),
        &s(b"user"),
        &s(b"\x00\xffpw"),
    ]);
    let p = canonical(V3_1_1, &connect(0xC0 | 0x20 | 0x08 | 0x04, &payload));
    let Packet::Connect(c) = p else { panic!() };
    let w = c.will.as_ref().unwrap();
    assert_eq!(
        (w.topic.as_str(), &w.payload[..], w.qos, w.retain),
        ("status/id", &b"gone"[..], QoS::AtLeastOnce, true)
    );
    assert_eq!(c.username.as_deref(), Some("user"));
    assert_eq!(
        c.password.as_deref(),
        Some(&b"\x00\xffpw"[..]),
        "password is binary"
    );
    assert!(!c.clean_start);
}

#[test]
fn connect_mqtt_3_1() {
    let bytes = frame(0x10, &connect_body(b"MQIsdp", 3, 0x02, &s(b"old-client")));
    let Packet::Connect(c) = canonical(V3_1_1, &bytes) else {
        panic!()
    };
    assert_eq!(c.protocol, V3_1);
}

#[test]
fn connect_is_decoded_in_its_own_version_whatever_the_connection_says() {
    let Packet::Connect(c) = canonical(V5, &connect(0x02, &s(b"x"))) else {
        panic!()
    };
    assert_eq!(c.protocol, V3_1_1);
}

#[test]
fn connect_invalid() {
    let id = s(b"id");
    let cases: Vec<(Vec<u8>, DecodeError)> = vec![
        (
            frame(0x10, &connect_body(b"MQTX", 4, 2, &id)),
            error::PROTOCOL_NAME,
        ),
        (
            frame(0x10, &connect_body(b"MQTT", 6, 2, &id)),
            error::UNSUPPORTED_PROTOCOL_VERSION,
        ),
        (
            frame(0x10, &connect_body(b"MQTT", 3, 2, &id)),
            error::UNSUPPORTED_PROTOCOL_VERSION,
        ),
        (
            frame(0x10, &connect_body(b"MQIsdp", 4, 2, &id)),
            error::UNSUPPORTED_PROTOCOL_VERSION,
        ),
        (connect(0x03, &id), error::CONNECT_RESERVED_FLAG),
        (connect(0x0A, &id), error::WILL_QOS_WITHOUT_WILL),
        (connect(0x22, &id), error::WILL_RETAIN_WITHOUT_WILL),
        (
            connect(0x1E, &cat(&[&id, &s(b"t"), &s(b"m")])),
            error::WILL_QOS_3,
        ),
        (
            connect(0x42, &cat(&[&id, &s(b"pw")])),
            error::PASSWORD_WITHOUT_USERNAME,
        ),
        (
            connect(0x06, &cat(&[&id, &s(b"t/#"), &s(b"m")])),
            error::WILDCARD_IN_TOPIC_NAME,
        ),
        (
            connect(0x06, &cat(&[&id, &s(b""), &s(b"m")])),
            error::EMPTY_TOPIC,
        ),
        (connect(0x02, &s(b"a\0b")), error::UTF8_NULL),
        (connect(0x02, &s(b"\xED\xA0\x80")), error::INVALID_UTF8),
        (
            connect(0x82, &cat(&[&id, &s(b"\xff")])),
            error::INVALID_UTF8,
        ),
        (connect(0x02, &cat(&[&id, b"x"])), error::TRAILING_BYTES),
        (connect(0x82, &id), error::TRUNCATED),
        (
            frame(0x11, &connect_body(b"MQTT", 4, 2, &id)),
            error::RESERVED_FLAGS,
        ),
    ];
    for (bytes, expected) in cases {
        assert_eq!(reject(V3_1_1, &bytes), expected, "{bytes:02x?}");
    }
}

#[test]
fn connack() {
    let Packet::ConnAck(a) = canonical(V3_1_1, &[0x20, 0x02, 0x01, 0x00]) else {
        panic!()
    };
    assert!(a.session_present);
    assert_eq!(a.reason, ReasonCode::SUCCESS);
    for (code, reason) in [
        (1, ReasonCode::UNSUPPORTED_PROTOCOL_VERSION),
        (2, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID),
        (3, ReasonCode::SERVER_UNAVAILABLE),
        (4, ReasonCode::BAD_USER_NAME_OR_PASSWORD),
        (5, ReasonCode::NOT_AUTHORIZED),
    ] {
        let Packet::ConnAck(a) = canonical(V3_1_1, &[0x20, 0x02, 0x00, code]) else {
            panic!()
        };
        assert_eq!(a.reason, reason);
    }
    assert_eq!(
        reject(V3_1_1, &[0x20, 0x02, 0x00, 0x06]),
        error::INVALID_RETURN_CODE
    );
    assert_eq!(
        reject(V3_1_1, &[0x20, 0x02, 0x02, 0x00]),
        error::CONNACK_RESERVED_FLAGS
    );
    assert_eq!(
        reject(V3_1_1, &[0x20, 0x02, 0x01, 0x05]),
        error::SESSION_PRESENT_WITH_ERROR
    );
    assert_eq!(
        reject(V3_1_1, &[0x20, 0x03, 0x00, 0x00, 0x00]),
        error::TRAILING_BYTES
    );
    assert_eq!(reject(V3_1_1, &[0x20, 0x01, 0x00]), error::TRUNCATED);
}

#[test]
fn connack_reason_without_a_3_1_1_code_cannot_be_encoded() {
    let a = Packet::ConnAck(ConnAck {
        session_present: false,
        reason: ReasonCode::BANNED,
        properties: Default::default(),
    });
    let mut out = bytes::BytesMut::from(&b"kept"[..]);
    assert_eq!(
        a.encode(V3_1_1, &mut out),
        Err(EncodeError::InvalidReasonCode(ReasonCode::BANNED))
    );
    assert_eq!(
        &out[..],
        b"kept",
        "a failed encode leaves the buffer as it was"
    );
}

#[test]
fn publish_each_qos_and_flag() {
    let Packet::Publish(p) = canonical(V3_1_1, &frame(0x30, &cat(&[&s(b"a/b"), b"payload"])))
    else {
        panic!()
    };
    assert_eq!(
        (p.qos, p.packet_id, p.retain, p.dup),
        (QoS::AtMostOnce, 0, false, false)
    );
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("a/b", &b"payload"[..]));
    let Packet::Publish(p) = canonical(V3_1_1, &frame(0x3B, &cat(&[&s(b"a"), &[0, 9], b"x"])))
    else {
        panic!()
    };
    assert_eq!(
        (p.qos, p.packet_id, p.retain, p.dup),
        (QoS::AtLeastOnce, 9, true, true)
    );
    let Packet::Publish(p) = canonical(V3_1_1, &frame(0x34, &cat(&[&s(b"a"), &[0xFF, 0xFF]])))
    else {
        panic!()
    };
    assert_eq!(
        (p.qos, p.packet_id, p.payload.len()),
        (QoS::ExactlyOnce, 0xFFFF, 0)
    );
}

#[test]
fn publish_topics_may_hold_any_valid_unicode() {
    // U+FEFF (a byte order mark) is an ordinary character: kept, never stripped [MQTT-1.5.3-3].
    let topic = "\u{FEFF}caf\u{e9}/\u{1F600}/$x/ /";
    let bytes = frame(0x30, &cat(&[&s(topic.as_bytes()), b"p"]));
    let Packet::Publish(p) = canonical(V3_1_1, &bytes) else {
        panic!()
    };
    assert_eq!(p.topic.as_str(), topic);
}

#[test]
fn publish_invalid() {
    let cases: Vec<(Vec<u8>, DecodeError)> = vec![
        (frame(0x36, &cat(&[&s(b"a"), &[0, 1]])), error::QOS_3),
        (frame(0x38, &s(b"a")), error::DUP_WITH_QOS_0),
        (
            frame(0x32, &cat(&[&s(b"a"), &[0, 0]])),
            error::PACKET_ID_ZERO,
        ),
        (frame(0x30, &s(b"a/+/b")), error::WILDCARD_IN_TOPIC_NAME),
        (frame(0x30, &s(b"a/#")), error::WILDCARD_IN_TOPIC_NAME),
        (frame(0x30, &s(b"")), error::EMPTY_TOPIC),
        (frame(0x30, &s(b"a\0")), error::UTF8_NULL),
        (
            frame(0x30, &s(b"tab\there")),
            error::UTF8_DISALLOWED_CODE_POINT,
        ),
        (
            frame(0x30, &s("a\u{FFFE}".as_bytes())),
            error::UTF8_DISALLOWED_CODE_POINT,
        ),
        (frame(0x30, &s(b"\xED\xBF\xBF")), error::INVALID_UTF8),
        (frame(0x30, &[0x00, 0x05, b'a']), error::TRUNCATED),
        (frame(0x32, &s(b"a")), error::TRUNCATED),
    ];
    for (bytes, expected) in cases {
        assert_eq!(reject(V3_1_1, &bytes), expected, "{bytes:02x?}");
    }
}

#[test]
fn publish_acknowledgements() {
    for (first, make) in [
        (0x40u8, Packet::PubAck as fn(PubResp) -> Packet),
        (0x50, Packet::PubRec),
        (0x62, Packet::PubRel),
        (0x70, Packet::PubComp),
    ] {
        assert_eq!(
            canonical(V3_1_1, &[first, 0x02, 0x12, 0x34]),
            make(PubResp::new(0x1234))
        );
        assert_eq!(
            reject(V3_1_1, &[first, 0x02, 0x00, 0x00]),
            error::PACKET_ID_ZERO
        );
        assert_eq!(
            reject(V3_1_1, &[first, 0x03, 0x00, 0x01, 0x00]),
            error::TRAILING_BYTES
        );
        assert_eq!(reject(V3_1_1, &[first, 0x01, 0x00]), error::TRUNCATED);
        assert_eq!(
            reject(V3_1_1, &[first ^ 0x02, 0x02, 0x00, 0x01]),
            error::RESERVED_FLAGS
        );
    }
}

#[test]
fn subscribe() {
    let body = cat(&[
        &[0x00, 0x0A],
        &s(b"a/+"),
        &[0x01],
        &s(b"#"),
        &[0x02],
        &s(b"x"),
        &[0x00],
    ]);
    let Packet::Subscribe(sub) = canonical(V3_1_1, &frame(0x82, &body)) else {
        panic!()
    };
    assert_eq!(sub.packet_id, 10);
    let got: Vec<_> = sub
        .subscriptions
        .iter()
        .map(|s| (s.filter.as_str(), s.options.qos))
        .collect();
    assert_eq!(
        got,
        [
            ("a/+", QoS::AtLeastOnce),
            ("#", QoS::ExactlyOnce),
            ("x", QoS::AtMostOnce)
        ]
    );
}

#[test]
fn subscribe_invalid() {
    let cases: Vec<(Vec<u8>, DecodeError)> = vec![
        (
            frame(0x80, &cat(&[&[0, 1], &s(b"a"), &[0]])),
            error::RESERVED_FLAGS,
        ),
        (frame(0x82, &[0, 1]), error::NO_TOPIC_FILTERS),
        (
            frame(0x82, &cat(&[&[0, 0], &s(b"a"), &[0]])),
            error::PACKET_ID_ZERO,
        ),
        (
            frame(0x82, &cat(&[&[0, 1], &s(b"a"), &[3]])),
            error::SUBSCRIPTION_QOS_3,
        ),
        (
            frame(0x82, &cat(&[&[0, 1], &s(b"a"), &[0x04]])),
            error::SUBSCRIPTION_RESERVED_BITS,
        ),
        (
            frame(0x82, &cat(&[&[0, 1], &s(b"a"), &[0x80]])),
            error::SUBSCRIPTION_RESERVED_BITS,
        ),
        (
            frame(0x82, &cat(&[&[0, 1], &s(b""), &[0]])),
            error::EMPTY_TOPIC,
        ),
        (
            frame(0x82, &cat(&[&[0, 1], &s(b"a\0"), &[0]])),
            error::UTF8_NULL,
        ),
        (frame(0x82, &cat(&[&[0, 1], &s(b"a")])), error::TRUNCATED),
    ];
    for (bytes, expected) in cases {
        assert_eq!(reject(V3_1_1, &bytes), expected, "{bytes:02x?}");
    }
}

#[test]
fn suback() {
    let Packet::SubAck(a) = canonical(V3_1_1, &[0x90, 0x06, 0x00, 0x01, 0x00, 0x01, 0x02, 0x80])
    else {
        panic!()
    };
    assert_eq!(
        a.reason_codes,
        [
            ReasonCode(0),
            ReasonCode(1),
            ReasonCode(2),
            ReasonCode(0x80)
        ]
    );
    assert_eq!(
        reject(V3_1_1, &[0x90, 0x03, 0x00, 0x01, 0x03]),
        error::INVALID_RETURN_CODE
    );
    assert_eq!(
        reject(V3_1_1, &[0x90, 0x03, 0x00, 0x01, 0x87]),
        error::INVALID_RETURN_CODE
    );
    assert_eq!(
        reject(V3_1_1, &[0x90, 0x02, 0x00, 0x01]),
        error::NO_RETURN_CODES
    );
}

#[test]
fn unsubscribe_and_unsuback() {
    let body = cat(&[&[0x00, 0x02], &s(b"a/#"), &s(b"b")]);
    let Packet::Unsubscribe(u) = canonical(V3_1_1, &frame(0xA2, &body)) else {
        panic!()
    };
    assert_eq!(
        u.filters.iter().map(|f| f.as_str()).collect::<Vec<_>>(),
        ["a/#", "b"]
    );
    assert_eq!(reject(V3_1_1, &frame(0xA0, &body)), error::RESERVED_FLAGS);
    assert_eq!(
        reject(V3_1_1, &frame(0xA2, &[0, 2])),
        error::NO_TOPIC_FILTERS
    );
    assert_eq!(
        reject(V3_1_1, &frame(0xA2, &cat(&[&[0, 2], &s(b"")]))),
        error::EMPTY_TOPIC
    );
    let Packet::UnsubAck(a) = canonical(V3_1_1, &[0xB0, 0x02, 0x00, 0x02]) else {
        panic!()
    };
    assert!(a.reason_codes.is_empty());
    assert_eq!(
        reject(V3_1_1, &[0xB0, 0x03, 0x00, 0x02, 0x00]),
        error::TRAILING_BYTES
    );
}

#[test]
fn ping_and_disconnect() {
    assert_eq!(canonical(V3_1_1, &[0xC0, 0x00]), Packet::PingReq);
    assert_eq!(canonical(V3_1_1, &[0xD0, 0x00]), Packet::PingResp);
    assert_eq!(
        canonical(V3_1_1, &[0xE0, 0x00]),
        Packet::Disconnect(Disconnect::default())
    );
    assert_eq!(reject(V3_1_1, &[0xC0, 0x01, 0x00]), error::TRAILING_BYTES);
    assert_eq!(reject(V3_1_1, &[0xD0, 0x01, 0x00]), error::TRAILING_BYTES);
    assert_eq!(reject(V3_1_1, &[0xE0, 0x01, 0x00]), error::TRAILING_BYTES);
    assert_eq!(reject(V3_1_1, &[0xE1, 0x00]), error::RESERVED_FLAGS);
    assert_eq!(reject(V3_1_1, &[0xD2, 0x00]), error::RESERVED_FLAGS);
}

#[test]
fn auth_does_not_exist_before_5() {
    assert_eq!(reject(V3_1_1, &[0xF0, 0x00]), error::RESERVED_PACKET_TYPE);
    let auth = Packet::Auth(Auth::default());
    let mut out = bytes::BytesMut::new();
    assert_eq!(
        auth.encode(V3_1_1, &mut out),
        Err(EncodeError::NotInVersion("AUTH"))
    );
}

#[test]
fn mqtt_3_1_accepts_dup_on_retransmitted_pubrel_and_subscribe() {
    assert!(decode_one(V3_1, &[0x6A, 0x02, 0x00, 0x01]).is_ok());
    assert!(decode_one(V3_1, &frame(0x8A, &cat(&[&[0, 1], &s(b"a"), &[0]]))).is_ok());
    assert_eq!(
        reject(V3_1_1, &[0x6A, 0x02, 0x00, 0x01]),
        error::RESERVED_FLAGS
    );
}

#[test]
fn v5_only_fields_cannot_be_encoded_in_3_1_1() {
    let mut ack = PubResp::new(1);
    ack.reason = ReasonCode::NO_MATCHING_SUBSCRIBERS;
    let mut out = bytes::BytesMut::new();
    assert!(Packet::PubAck(ack).encode(V3_1_1, &mut out).is_err());
    let mut d = Disconnect::default();
    d.properties.make_mut().session_expiry_interval = Some(1);
    assert!(Packet::Disconnect(d).encode(V3_1_1, &mut out).is_err());
    assert!(out.is_empty());
}
