//! The fixed header: incremental decoding, the maximum packet size, remaining-length rules,
//! and zero-copy slicing.

use crate::helpers::*;
use bytes::BytesMut;
use roost::protocol::error;
use roost::protocol::{DecodeLimits, Packet, ProtocolVersion::*, decode};

const PUBLISH_QOS1: &[u8] = &[
    0x32, 0x09, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x07, b'h', b'i',
];

#[test]
fn decodes_incrementally_one_byte_at_a_time() {
    let mut buf = BytesMut::new();
    for (i, &b) in PUBLISH_QOS1.iter().enumerate() {
        assert!(
            decode(&mut buf, V3_1_1, &DecodeLimits::default())
                .unwrap()
                .is_none(),
            "byte {i}"
        );
        buf.extend_from_slice(&[b]);
    }
    let p = decode(&mut buf, V3_1_1, &DecodeLimits::default())
        .unwrap()
        .unwrap();
    assert!(matches!(p, Packet::Publish(ref p) if &p.payload[..] == b"hi" && p.packet_id == 7));
    assert!(buf.is_empty());
}

#[test]
fn consumes_exactly_one_packet_per_call() {
    let mut buf = BytesMut::from(&cat(&[PUBLISH_QOS1, &[0xC0, 0x00], &[0x40]])[..]);
    let l = DecodeLimits::default();
    assert!(matches!(
        decode(&mut buf, V3_1_1, &l).unwrap(),
        Some(Packet::Publish(_))
    ));
    assert_eq!(decode(&mut buf, V3_1_1, &l).unwrap(), Some(Packet::PingReq));
    assert_eq!(decode(&mut buf, V3_1_1, &l).unwrap(), None);
    assert_eq!(&buf[..], &[0x40], "partial packet left untouched");
}

#[test]
fn maximum_packet_size_is_checked_from_the_fixed_header_alone() {
    // A PUBLISH announcing 2,097,152 bytes; only its 4-byte header has arrived.
    let mut buf = BytesMut::from(&[0x30, 0x80, 0x80, 0x80, 0x01][..]);
    let limits = DecodeLimits {
        max_packet_size: 1024,
        ..DecodeLimits::default()
    };
    assert_eq!(decode(&mut buf, V5, &limits), Err(error::PACKET_TOO_LARGE));
    assert!(
        buf.capacity() < 1024,
        "nothing was reserved for the refused packet"
    );
    // The limit counts the whole packet: 11 bytes pass a limit of 11 and fail a limit of 10.
    let ok = DecodeLimits {
        max_packet_size: 11,
        ..DecodeLimits::default()
    };
    assert!(
        decode(&mut BytesMut::from(PUBLISH_QOS1), V3_1_1, &ok)
            .unwrap()
            .is_some()
    );
    let small = DecodeLimits {
        max_packet_size: 10,
        ..DecodeLimits::default()
    };
    let mut buf = BytesMut::from(&PUBLISH_QOS1[..2]);
    assert_eq!(
        decode(&mut buf, V3_1_1, &small),
        Err(error::PACKET_TOO_LARGE)
    );
}

#[test]
fn buffer_is_grown_to_the_announced_size_once_it_is_allowed() {
    let mut buf = BytesMut::from(&[0x30, 0x80, 0x08][..]); // 1,024-byte body announced
    assert_eq!(decode(&mut buf, V3_1_1, &DecodeLimits::default()), Ok(None));
    assert!(buf.capacity() >= 1027);
}

#[test]
fn remaining_length_over_four_bytes_is_malformed() {
    let bytes = [0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01];
    assert_eq!(reject(V3_1_1, &bytes), error::REMAINING_LENGTH_TOO_LONG);
    assert_eq!(reject(V5, &bytes), error::REMAINING_LENGTH_TOO_LONG);
}

#[test]
fn non_minimal_remaining_length_is_malformed() {
    // PINGREQ with remaining length 0 written as two bytes.
    assert_eq!(
        reject(V5, &[0xC0, 0x80, 0x00]),
        error::NON_MINIMAL_VARIABLE_INTEGER
    );
    assert_eq!(
        reject(V3_1_1, &[0xC0, 0x80, 0x00]),
        error::NON_MINIMAL_VARIABLE_INTEGER
    );
}

#[test]
fn largest_remaining_lengths_of_each_width_are_accepted() {
    for (len, header) in [(127usize, 2usize), (128, 3), (16_383, 3), (16_384, 4)] {
        let body = cat(&[&s(b"t"), &vec![b'x'; len - 3]]);
        let bytes = frame(0x30, &body);
        assert_eq!(bytes.len(), header + len);
        canonical(V3_1_1, &bytes);
    }
}

#[test]
fn a_bad_first_byte_is_refused_before_the_rest_arrives() {
    for (first, err) in [
        (0x00, error::RESERVED_PACKET_TYPE),
        (0xF0, error::RESERVED_PACKET_TYPE),
        (0x80, error::RESERVED_FLAGS),
        (0x36, error::QOS_3),
        (0x38, error::DUP_WITH_QOS_0),
        (0xC1, error::RESERVED_FLAGS),
    ] {
        let mut buf = BytesMut::from(&[first][..]);
        assert_eq!(
            decode(&mut buf, V3_1_1, &DecodeLimits::default()),
            Err(err),
            "{first:#04x}"
        );
    }
}

/// What a server accepts from a client (issue 14, section 1): a packet type only a server
/// sends, a second CONNECT, and AUTH without a negotiated method are Protocol Errors decided
/// from the first byte alone, whatever the flags and body that follow; type 0 is one too.
#[test]
fn a_packet_type_the_receiver_never_accepts_is_a_protocol_error_from_the_first_byte() {
    use roost::protocol::{PacketTypes, ReasonCode};
    let server = |accepts| DecodeLimits {
        accepts,
        ..DecodeLimits::default()
    };
    let connected = server(PacketTypes::FROM_CLIENT.without_auth());
    for (first, err) in [
        // CONNACK, SUBACK, UNSUBACK, PINGRESP: valid flags, then bad ones.
        (0x20, error::PACKET_TYPE_NOT_ACCEPTED),
        (0x2F, error::PACKET_TYPE_NOT_ACCEPTED),
        (0x90, error::PACKET_TYPE_NOT_ACCEPTED),
        (0x92, error::PACKET_TYPE_NOT_ACCEPTED),
        (0xB0, error::PACKET_TYPE_NOT_ACCEPTED),
        (0xD0, error::PACKET_TYPE_NOT_ACCEPTED),
        (0xD3, error::PACKET_TYPE_NOT_ACCEPTED),
        (0x10, error::SECOND_CONNECT),
        (0x1F, error::SECOND_CONNECT),
        (0xF0, error::AUTH_NOT_NEGOTIATED),
        (0xF8, error::AUTH_NOT_NEGOTIATED),
        (0x00, error::RESERVED_PACKET_TYPE),
        (0x0F, error::RESERVED_PACKET_TYPE),
    ] {
        // The first byte alone decides: nothing else has arrived.
        let mut buf = BytesMut::from(&[first][..]);
        assert_eq!(decode(&mut buf, V5, &connected), Err(err), "{first:#04x}");
        assert_eq!(err.reason, ReasonCode::PROTOCOL_ERROR, "{first:#04x}");
        // Nor does a body that is itself malformed (truncated, bad remaining length) change it.
        for rest in [&[0x01, 0xFF][..], &[0xFF, 0xFF, 0xFF, 0xFF, 0x7F]] {
            let mut buf = BytesMut::from(&cat(&[&[first], rest])[..]);
            assert_eq!(decode(&mut buf, V5, &connected), Err(err), "{first:#04x}");
        }
    }
    // With a method negotiated AUTH is accepted; during the exchange only AUTH and DISCONNECT.
    let auth = [0xF0, 0x00];
    let with_method = server(PacketTypes::FROM_CLIENT);
    assert!(decode(&mut BytesMut::from(&auth[..]), V5, &with_method).is_ok());
    let exchange = server(PacketTypes::AUTH_EXCHANGE);
    assert!(decode(&mut BytesMut::from(&auth[..]), V5, &exchange).is_ok());
    assert!(decode(&mut BytesMut::from(&[0xE0, 0x00][..]), V5, &exchange).is_ok());
    let mut ping = BytesMut::from(&[0xC0, 0x00][..]);
    assert_eq!(
        decode(&mut ping, V5, &exchange),
        Err(error::PACKET_TYPE_NOT_ACCEPTED)
    );
    // 3.1.1 has no AUTH: type 15 is reserved there, whatever the set says.
    let mut buf = BytesMut::from(&auth[..]);
    assert_eq!(
        decode(&mut buf, V3_1_1, &with_method),
        Err(error::RESERVED_PACKET_TYPE)
    );
    // A client decodes what a server sends: every type but 0.
    assert!(
        decode(
            &mut BytesMut::from(&[0x20, 0x03, 0, 0, 0][..]),
            V5,
            &DecodeLimits::default()
        )
        .is_ok()
    );
}

#[test]
fn topic_and_payload_are_slices_of_the_received_buffer() {
    let buf = BytesMut::from(PUBLISH_QOS1);
    let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
    let mut buf = buf;
    let Some(Packet::Publish(p)) = decode(&mut buf, V3_1_1, &DecodeLimits::default()).unwrap()
    else {
        panic!("not a PUBLISH")
    };
    assert!(
        range.contains(&(p.payload.as_ptr() as usize)),
        "payload was copied"
    );
    assert!(
        range.contains(&(p.topic.as_ptr() as usize)),
        "topic was copied"
    );
}

#[test]
fn every_error_names_a_statement_and_a_failure_reason_code() {
    for (name, e) in error::ALL {
        assert!(
            e.v311.is_some() || e.v5.is_some(),
            "{name} cites no statement"
        );
        assert!(e.reason.is_error(), "{name} has a success reason code");
        assert!(!e.to_string().is_empty());
    }
    assert_eq!(
        error::RESERVED_FLAGS.to_string(),
        "[MQTT-2.2.2-2 | v5 MQTT-2.1.3-1] fixed header flags are not the values the packet type \
         requires (0x81 Malformed Packet)"
    );
}
