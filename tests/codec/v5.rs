//! MQTT 5.0 (level 5): every packet, valid and invalid, with the short forms of the reason code
//! packets.

use crate::helpers::*;
use bytes::Bytes;
use roost::protocol::ProtocolVersion::V5;
use roost::protocol::error;
use roost::protocol::*;

fn connect5(flags: u8, props: &[u8], payload: &[u8]) -> Vec<u8> {
    frame(
        0x10,
        &cat(&[&s(b"MQTT"), &[5, flags, 0x00, 0x0A], props, payload]),
    )
}

#[test]
fn connect_with_properties_and_will_properties() {
    // In identifier order, the order Roost encodes them in, so the packet is canonical.
    let conn_props = props(&[
        &[0x11, 0, 0, 0x0E, 0x10], // session expiry 3600
        &[0x17, 0x00],             // request problem information 0
        &[0x19, 0x01],             // request response information
        &[0x21, 0x00, 0x14],       // receive maximum 20
        &[0x22, 0x00, 0x0A],       // topic alias maximum 10
        &[0x26],
        &s(b"k"),
        &s(b"v"),                        // user property
        &[0x27, 0x00, 0x01, 0x00, 0x00], // maximum packet size 65536
    ]);
    let will_props = props(&[&[0x01, 0x01], &[0x02, 0, 0, 0, 9], &[0x18, 0, 0, 0, 5]]);
    let payload = cat(&[
        &s(b"c1"),
        &will_props,
        &s(b"w/t"),
        &s(b"bye"),
        &s(b"u"),
        &s(b"p"),
    ]);
    let Packet::Connect(c) = canonical(V5, &connect5(0xC4 | 0x02, &conn_props, &payload)) else {
        panic!()
    };
    assert_eq!(c.protocol, V5);
    let p = &c.properties;
    assert_eq!(p.session_expiry_interval, Some(3600));
    assert_eq!(p.receive_maximum, Some(20));
    assert_eq!(p.maximum_packet_size, Some(65536));
    assert_eq!(p.topic_alias_maximum, Some(10));
    assert_eq!(
        (
            p.request_response_information,
            p.request_problem_information
        ),
        (Some(1), Some(0))
    );
    assert_eq!(p.user_properties[0].0.as_str(), "k");
    let w = c.will.unwrap();
    assert_eq!(w.properties.will_delay_interval, Some(5));
    assert_eq!(w.properties.payload_format_indicator, Some(1));
    assert_eq!(w.properties.message_expiry_interval, Some(9));
}

#[test]
fn connect_v5_allows_a_password_without_a_user_name() {
    let Packet::Connect(c) = canonical(V5, &connect5(0x42, &[0], &cat(&[&s(b""), &s(b"token")])))
    else {
        panic!()
    };
    assert_eq!(
        (c.username, c.password),
        (None, Some(Bytes::from_static(b"token")))
    );
    assert!(
        c.client_id.is_empty(),
        "an empty client id is decoded; the broker decides"
    );
}

#[test]
fn connect_v5_enhanced_authentication() {
    let props = props(&[&[0x15], &s(b"SCRAM-SHA-256"), &[0x16], &s(b"\x01\x02")]);
    let Packet::Connect(c) = canonical(V5, &connect5(0x02, &props, &s(b"a"))) else {
        panic!()
    };
    assert_eq!(
        c.properties.authentication_method.as_deref(),
        Some("SCRAM-SHA-256")
    );
    let data_only = cat(&[&[0x05], &[0x16], &s(b"\x01\x02")]);
    assert_eq!(
        reject(V5, &connect5(0x02, &data_only, &s(b"a"))),
        error::AUTH_DATA_WITHOUT_METHOD
    );
}

#[test]
fn connect_v5_invalid() {
    assert_eq!(
        reject(V5, &connect5(0x03, &[0], &s(b"a"))),
        error::CONNECT_RESERVED_FLAG
    );
    assert_eq!(
        reject(V5, &connect5(0x12, &[0], &s(b"a"))),
        error::WILL_QOS_WITHOUT_WILL
    );
    assert_eq!(
        reject(V5, &connect5(0x22, &[0], &s(b"a"))),
        error::WILL_RETAIN_WITHOUT_WILL
    );
    // Will properties may not carry a Topic Alias.
    let will = cat(&[&s(b"a"), &[3, 0x23, 0, 1], &s(b"t"), &s(b"m")]);
    assert_eq!(
        reject(V5, &connect5(0x06, &[0], &will)),
        error::PROPERTY_NOT_ALLOWED
    );
    // A CONNECT without its property length is cut short.
    assert_eq!(
        reject(V5, &frame(0x10, &cat(&[&s(b"MQTT"), &[5, 2, 0, 10]]))),
        error::TRUNCATED
    );
}

#[test]
fn connack_v5() {
    // Deliberately out of identifier order, as another server might send them.
    let props = props(&[
        &[0x12],
        &s(b"auto-1"),                         // assigned client identifier
        &[0x13, 0x00, 0x1E],                   // server keep alive 30
        &[0x21, 0x00, 0x64],                   // receive maximum 100
        &[0x24, 0x01],                         // maximum QoS 1
        &[0x25, 0x00],                         // retain not available
        &[0x28, 0x01, 0x29, 0x00, 0x2A, 0x01], // wildcard, sub ids, shared
        &[0x22, 0x00, 0x05],                   // topic alias maximum 5
        &[0x11, 0, 0, 0, 0],                   // session expiry 0
    ]);
    let bytes = frame(0x20, &cat(&[&[0x00, 0x00], &props]));
    let Packet::ConnAck(a) = decode_one(V5, &bytes).unwrap() else {
        panic!()
    };
    assert_eq!(
        a.properties.assigned_client_identifier.as_deref(),
        Some("auto-1")
    );
    assert_eq!(a.properties.server_keep_alive, Some(30));
    assert_eq!(a.properties.maximum_qos, Some(1));
    assert_eq!(a.properties.shared_subscription_available, Some(1));
    assert!(!a.session_present);
    // Re-encoding writes properties in identifier order, so compare by decoding again.
    assert_eq!(
        decode_one(V5, &encode(V5, &Packet::ConnAck(a.clone()))).unwrap(),
        Packet::ConnAck(a)
    );

    let Packet::ConnAck(a) = canonical(V5, &[0x20, 0x03, 0x00, 0x8A, 0x00]) else {
        panic!()
    };
    assert_eq!(a.reason, ReasonCode::BANNED);
    assert_eq!(
        reject(V5, &[0x20, 0x03, 0x00, 0x10, 0x00]),
        error::INVALID_RETURN_CODE
    );
    assert_eq!(
        reject(V5, &[0x20, 0x03, 0x01, 0x80, 0x00]),
        error::SESSION_PRESENT_WITH_ERROR
    );
    assert_eq!(reject(V5, &[0x20, 0x02, 0x00, 0x00]), error::TRUNCATED);
    assert_eq!(
        reject(V5, &[0x20, 0x05, 0x00, 0x00, 0x02, 0x23, 0x01]),
        error::PROPERTY_NOT_ALLOWED
    );
}

#[test]
fn publish_v5_properties_pass_through_in_order() {
    let props = cat(&[
        &[0x01, 0x01],
        &[0x02, 0, 0, 0, 60],
        &[0x03],
        &s(b"application/json"),
        &[0x08],
        &s(b"reply/here"),
        &[0x09],
        &s(b"\x00corr"),
        &[0x0B, 0x80, 0x01], // subscription identifier 128
        &[0x0B, 0x05],
        &[0x23, 0x00, 0x07],
        &[0x26],
        &s(b"b"),
        &s(b"2"),
        &[0x26],
        &s(b"a"),
        &s(b"1"),
        &[0x26],
        &s(b"b"),
        &s(b"3"),
    ]);
    let body = cat(&[
        &s(b"t/1"),
        &[0x00, 0x05],
        &[props.len() as u8],
        &props,
        b"{}",
    ]);
    let Packet::Publish(p) = canonical(V5, &frame(0x32, &body)) else {
        panic!()
    };
    let pr = &p.properties;
    assert_eq!(pr.payload_format_indicator, Some(1));
    assert_eq!(pr.content_type.as_deref(), Some("application/json"));
    assert_eq!(pr.correlation_data.as_deref(), Some(&b"\x00corr"[..]));
    assert_eq!(pr.subscription_identifiers, [128, 5]);
    assert_eq!(pr.topic_alias, Some(7));
    let users: Vec<_> = pr
        .user_properties
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(users, [("b", "2"), ("a", "1"), ("b", "3")]);
    assert_eq!(&p.payload[..], b"{}");
}

#[test]
fn publish_v5_empty_topic_needs_a_topic_alias() {
    let Packet::Publish(p) = canonical(V5, &frame(0x30, &cat(&[&s(b""), &[3, 0x23, 0, 1], b"x"])))
    else {
        panic!()
    };
    assert!(p.topic.is_empty());
    assert_eq!(
        reject(V5, &frame(0x30, &cat(&[&s(b""), &[0], b"x"]))),
        error::EMPTY_TOPIC
    );
}

#[test]
fn publish_v5_invalid_properties() {
    let bad = |props: &[u8]| {
        reject(
            V5,
            &frame(0x30, &cat(&[&s(b"t"), &[props.len() as u8], props])),
        )
    };
    assert_eq!(bad(&[0x23, 0, 0]), error::TOPIC_ALIAS_ZERO);
    assert_eq!(bad(&[0x0B, 0x00]), error::SUBSCRIPTION_IDENTIFIER_ZERO);
    assert_eq!(bad(&[0x01, 0x02]), error::PROPERTY_VALUE);
    assert_eq!(bad(&[0x11, 0, 0, 0, 1]), error::PROPERTY_NOT_ALLOWED);
    assert_eq!(
        bad(&[0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 2]),
        error::DUPLICATE_PROPERTY
    );
    assert_eq!(bad(&[0x03, 0x00, 0x01, 0x00]), error::UTF8_NULL);
    assert_eq!(bad(&[0x08, 0x00, 0x01, 0xC0]), error::INVALID_UTF8);
    assert_eq!(
        bad(&[0x08, 0x00, 0x03, b'a', b'/', b'+']),
        error::WILDCARD_IN_TOPIC_NAME
    );
}

#[test]
fn payload_format_indicator_check_is_available_to_the_broker() {
    let body = cat(&[&s(b"t"), &[2, 0x01, 0x01], b"\xff"]);
    let Packet::Publish(p) = decode_one(V5, &frame(0x30, &body)).unwrap() else {
        panic!()
    };
    assert_eq!(p.check_payload_format(), Err(error::PAYLOAD_NOT_UTF8));
    assert_eq!(
        error::PAYLOAD_NOT_UTF8.reason,
        ReasonCode::PAYLOAD_FORMAT_INVALID
    );
}

#[test]
fn acknowledgements_short_and_long_forms() {
    for (first, codes) in [
        (
            0x40u8,
            &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99][..],
        ),
        (
            0x50,
            &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99][..],
        ),
        (0x62, &[0x00, 0x92][..]),
        (0x70, &[0x00, 0x92][..]),
    ] {
        // Success with no properties is sent as the 2-byte form.
        let short = decode_one(V5, &[first, 0x02, 0x00, 0x01]).unwrap();
        assert_eq!(encode(V5, &short), [first, 0x02, 0x00, 0x01]);
        assert_eq!(
            decode_one(V5, &[first, 0x03, 0x00, 0x01, 0x00]).unwrap(),
            short
        );
        assert_eq!(
            decode_one(V5, &[first, 0x04, 0x00, 0x01, 0x00, 0x00]).unwrap(),
            short
        );
        for &code in codes.iter().skip(1) {
            canonical(V5, &[first, 0x03, 0x00, 0x01, code]);
        }
        let with_reason = cat(&[&[first, 0x0A, 0x00, 0x01, codes[1], 0x06, 0x1F], &s(b"no!")]);
        canonical(V5, &with_reason);
        assert_eq!(
            reject(V5, &[first, 0x03, 0x00, 0x01, 0x01]),
            error::INVALID_RETURN_CODE
        );
        assert_eq!(
            reject(V5, &[first, 0x03, 0x00, 0x00, 0x00]),
            error::PACKET_ID_ZERO
        );
        assert_eq!(
            reject(V5, &[first, 0x06, 0x00, 0x01, 0x00, 0x02, 0x1F, 0x00]),
            error::TRUNCATED
        );
        assert_eq!(
            reject(V5, &[first, 0x07, 0x00, 0x01, 0x00, 0x03, 0x23, 0x00, 0x01]),
            error::PROPERTY_NOT_ALLOWED
        );
    }
}

#[test]
fn subscribe_v5_options() {
    // no local + retain as published + retain handling 2 + QoS 1; subscription identifier 42
    let body = cat(&[
        &[0x00, 0x01, 0x02, 0x0B, 42],
        &s(b"a/#"),
        &[0x2D],
        &s(b"b"),
        &[0x10],
    ]);
    let Packet::Subscribe(sub) = canonical(V5, &frame(0x82, &body)) else {
        panic!()
    };
    assert_eq!(sub.properties.subscription_identifiers, [42]);
    let o = sub.subscriptions[0].options;
    assert_eq!(
        (o.qos, o.no_local, o.retain_as_published, o.retain_handling),
        (QoS::AtLeastOnce, true, true, RetainHandling::DoNotSend)
    );
    assert_eq!(
        sub.subscriptions[1].options.retain_handling,
        RetainHandling::SendIfNew
    );
}

#[test]
fn subscribe_v5_invalid() {
    let sub = |props: &[u8], opts: u8| frame(0x82, &cat(&[&[0, 1], props, &s(b"a"), &[opts]]));
    assert_eq!(
        reject(V5, &sub(&[0], 0x40)),
        error::SUBSCRIPTION_RESERVED_BITS
    );
    assert_eq!(reject(V5, &sub(&[0], 0x30)), error::RETAIN_HANDLING_3);
    assert_eq!(reject(V5, &sub(&[0], 0x03)), error::SUBSCRIPTION_QOS_3);
    assert_eq!(
        reject(V5, &sub(&[4, 0x0B, 1, 0x0B, 2], 0)),
        error::DUPLICATE_PROPERTY
    );
    assert_eq!(
        reject(V5, &sub(&[2, 0x0B, 0], 0)),
        error::SUBSCRIPTION_IDENTIFIER_ZERO
    );
    assert_eq!(
        reject(V5, &frame(0x82, &[0, 1, 0])),
        error::NO_TOPIC_FILTERS
    );
}

#[test]
fn suback_unsubscribe_unsuback_v5() {
    let Packet::SubAck(a) = canonical(V5, &[0x90, 0x06, 0x00, 0x01, 0x00, 0x01, 0x9E, 0xA2]) else {
        panic!()
    };
    assert_eq!(
        a.reason_codes,
        [
            ReasonCode(1),
            ReasonCode::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED,
            ReasonCode::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED
        ]
    );
    assert_eq!(
        reject(V5, &[0x90, 0x04, 0x00, 0x01, 0x00, 0x93]),
        error::INVALID_RETURN_CODE
    );
    assert_eq!(
        reject(V5, &[0x90, 0x03, 0x00, 0x01, 0x00]),
        error::NO_RETURN_CODES
    );

    let body = cat(&[&[0x00, 0x03, 0x05, 0x26], &s(b""), &s(b""), &s(b"x/y")]);
    let Packet::Unsubscribe(u) = canonical(V5, &frame(0xA2, &body)) else {
        panic!()
    };
    assert_eq!(u.properties.user_properties.len(), 1);
    assert_eq!(
        reject(V5, &frame(0xA2, &[0, 3, 2, 0x0B, 1, 0, 1, b'a'])),
        error::PROPERTY_NOT_ALLOWED
    );

    let Packet::UnsubAck(a) = canonical(V5, &[0xB0, 0x05, 0x00, 0x03, 0x00, 0x00, 0x11]) else {
        panic!()
    };
    assert_eq!(
        a.reason_codes,
        [ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED]
    );
    assert_eq!(
        reject(V5, &[0xB0, 0x04, 0x00, 0x03, 0x00, 0x02]),
        error::INVALID_RETURN_CODE
    );
    assert_eq!(
        reject(V5, &[0xB0, 0x03, 0x00, 0x03, 0x00]),
        error::NO_RETURN_CODES
    );
}

#[test]
fn disconnect_v5() {
    assert_eq!(
        canonical(V5, &[0xE0, 0x00]),
        Packet::Disconnect(Disconnect::default())
    );
    assert_eq!(
        decode_one(V5, &[0xE0, 0x01, 0x00]).unwrap(),
        Packet::Disconnect(Disconnect::default())
    );
    let Packet::Disconnect(d) = canonical(V5, &[0xE0, 0x01, 0x8B]) else {
        panic!()
    };
    assert_eq!(d.reason, ReasonCode::SERVER_SHUTTING_DOWN);
    let Packet::Disconnect(d) = canonical(V5, &[0xE0, 0x07, 0x04, 0x05, 0x11, 0, 0, 0, 0]) else {
        panic!()
    };
    assert_eq!(
        (d.reason, d.properties.session_expiry_interval),
        (ReasonCode::DISCONNECT_WITH_WILL, Some(0))
    );
    let with_ref = cat(&[&[0xE0, 0x08, 0x9C, 0x06, 0x1C], &s(b"b:1")]);
    canonical(V5, &with_ref);
    assert_eq!(reject(V5, &[0xE0, 0x01, 0x01]), error::INVALID_RETURN_CODE);
    assert_eq!(
        reject(V5, &[0xE0, 0x03, 0x00, 0x00, 0x00]),
        error::TRAILING_BYTES
    );
    assert_eq!(
        reject(V5, &[0xE0, 0x04, 0x00, 0x02, 0x11, 0x00]),
        error::TRUNCATED
    );
    assert_eq!(
        reject(V5, &[0xE0, 0x05, 0x00, 0x03, 0x21, 0x00, 0x01]),
        error::PROPERTY_NOT_ALLOWED
    );
}

#[test]
fn auth_v5() {
    assert_eq!(canonical(V5, &[0xF0, 0x00]), Packet::Auth(Auth::default()));
    let body = cat(&[&[0x18, 0x0C, 0x15], &s(b"SCRAM"), &[0x16], &s(b"\x01")]);
    let Packet::Auth(a) = canonical(V5, &frame(0xF0, &body)) else {
        panic!()
    };
    assert_eq!(a.reason, ReasonCode::CONTINUE_AUTHENTICATION);
    assert_eq!(
        a.properties.authentication_data.as_deref(),
        Some(&[1u8][..])
    );
    // An empty property section is dropped on re-encoding: the 1-byte form is canonical.
    let reauth = decode_one(V5, &[0xF0, 0x02, 0x19, 0x00]).unwrap();
    assert_eq!(canonical(V5, &[0xF0, 0x01, 0x19]), reauth);
    assert_eq!(reject(V5, &[0xF0, 0x01, 0x87]), error::INVALID_RETURN_CODE);
    assert_eq!(reject(V5, &[0xF1, 0x00]), error::RESERVED_FLAGS);
    assert_eq!(
        reject(V5, &[0xF0, 0x04, 0x18, 0x02, 0x15, 0x00]),
        error::TRUNCATED
    );
}

#[test]
fn pings_v5() {
    assert_eq!(canonical(V5, &[0xC0, 0x00]), Packet::PingReq);
    assert_eq!(canonical(V5, &[0xD0, 0x00]), Packet::PingResp);
    assert_eq!(reject(V5, &[0xC0, 0x01, 0x00]), error::TRAILING_BYTES);
}

/// `Packet::within`: a packet for a peer's Maximum Packet Size keeps its Reason String and User
/// Properties while they fit, loses them first when they do not, and is `None` when even that
/// is too large (issue 14, section 7).
#[test]
fn within_a_maximum_packet_size_the_optional_properties_go_first() {
    use roost::protocol::{ByteStr, Disconnect, ReasonCode};
    let mut d = Disconnect {
        reason: ReasonCode::PROTOCOL_ERROR,
        properties: Default::default(),
    };
    d.properties.make_mut().reason_string = Some(ByteStr::try_from("why").unwrap());
    d.properties.make_mut().user_properties = vec![(
        ByteStr::try_from("k").unwrap(),
        ByteStr::try_from("v").unwrap(),
    )];
    let full = Packet::Disconnect(d.clone());
    let len = full.encoded_len(V5) as u32;
    assert_eq!(full.clone().within(V5, len), Some(full.clone()));
    let bare = Packet::Disconnect(Disconnect {
        properties: Default::default(),
        ..d
    });
    assert_eq!(full.clone().within(V5, len - 1), Some(bare.clone()));
    assert_eq!(bare.encoded_len(V5), 3);
    assert_eq!(full.clone().within(V5, 3), Some(bare));
    assert_eq!(full.within(V5, 2), None);
    // A PUBLISH has nothing optional to drop: it fits or it does not.
    let p = Packet::Publish(roost::protocol::Publish::new(
        ByteStr::try_from("t").unwrap(),
        bytes::Bytes::from_static(b"payload"),
    ));
    let len = p.encoded_len(V5) as u32;
    assert_eq!(p.clone().within(V5, len), Some(p.clone()));
    assert_eq!(p.within(V5, len - 1), None);
}
