//! MQTT 5.0 property rules (section 2.2.2): which packet may carry which property, repetition,
//! forbidden values, and the encoding of identifiers and lengths.

use crate::helpers::*;
use roost::protocol::ProtocolVersion::V5;
use roost::protocol::error;
use roost::protocol::{DecodeError, Packet};

/// A v5 CONNECT carrying `p` as its property section.
fn connect_with(p: &[u8]) -> Vec<u8> {
    frame(
        0x10,
        &cat(&[&s(b"MQTT"), &[5, 0x02, 0, 0], &props(&[p]), &s(b"id")]),
    )
}

/// A v5 CONNACK carrying `p`.
fn connack_with(p: &[u8]) -> Vec<u8> {
    frame(0x20, &cat(&[&[0, 0], &props(&[p])]))
}

#[test]
fn connect_property_values() {
    let cases: &[(&[u8], DecodeError)] = &[
        (&[0x21, 0, 0], error::RECEIVE_MAXIMUM_ZERO),
        (&[0x27, 0, 0, 0, 0], error::MAXIMUM_PACKET_SIZE_ZERO),
        (&[0x17, 2], error::PROPERTY_VALUE),
        (&[0x19, 2], error::PROPERTY_VALUE),
        (
            &[0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 1],
            error::DUPLICATE_PROPERTY,
        ),
        (&[0x21, 0, 1, 0x21, 0, 1], error::DUPLICATE_PROPERTY),
        (
            &[0x15, 0, 1, b'a', 0x15, 0, 1, b'b'],
            error::DUPLICATE_PROPERTY,
        ),
        (&[0x23, 0, 1], error::PROPERTY_NOT_ALLOWED),
        (&[0x12, 0, 1, b'a'], error::PROPERTY_NOT_ALLOWED),
        (&[0x01, 0], error::PROPERTY_NOT_ALLOWED),
        (&[0x00, 0], error::UNKNOWN_PROPERTY),
        (&[0x7F, 0], error::UNKNOWN_PROPERTY),
        (&[0x80, 0x01, 0], error::UNKNOWN_PROPERTY),
        (
            &[0x91, 0x00, 0, 0, 0, 1],
            error::NON_MINIMAL_VARIABLE_INTEGER,
        ),
        (&[0x11, 0, 0], error::TRUNCATED),
        (&[0x26, 0, 1, b'k'], error::TRUNCATED),
    ];
    for (p, expected) in cases {
        assert_eq!(reject(V5, &connect_with(p)), *expected, "{p:02x?}");
    }
}

#[test]
fn user_properties_repeat_and_keep_their_order() {
    let p = cat(&[&[0x26], &s(b"x"), &s(b"1"), &[0x26], &s(b"x"), &s(b"1")]);
    let Packet::Connect(c) = canonical(V5, &connect_with(&p)) else {
        panic!()
    };
    assert_eq!(
        c.properties.user_properties.len(),
        2,
        "identical pairs are both kept"
    );
}

#[test]
fn connack_flag_properties_are_zero_or_one() {
    for pid in [0x24, 0x25, 0x28, 0x29, 0x2A] {
        assert!(decode_one(V5, &connack_with(&[pid, 1])).is_ok());
        assert_eq!(
            reject(V5, &connack_with(&[pid, 2])),
            error::PROPERTY_VALUE,
            "{pid:#x}"
        );
        assert_eq!(
            reject(V5, &connack_with(&[pid, 0, pid, 0])),
            error::DUPLICATE_PROPERTY
        );
    }
}

#[test]
fn property_length_must_fit_in_the_packet() {
    // CONNACK whose property length (5) runs past the end of the packet.
    assert_eq!(
        reject(V5, &[0x20, 0x04, 0x00, 0x00, 0x05, 0x24]),
        error::TRUNCATED
    );
    // A property length written in two bytes where one would do.
    assert_eq!(
        reject(V5, &[0x20, 0x04, 0x00, 0x00, 0x80, 0x00]),
        error::NON_MINIMAL_VARIABLE_INTEGER
    );
}

#[test]
fn each_packet_refuses_a_property_of_another_packet() {
    // Session Expiry Interval (0x11) belongs to CONNECT, CONNACK and DISCONNECT only.
    let sei = [0x05, 0x11, 0, 0, 0, 1];
    let cases: Vec<Vec<u8>> = vec![
        frame(0x30, &cat(&[&s(b"t"), &sei])),
        frame(0x40, &cat(&[&[0, 1, 0], &sei])),
        frame(0x62, &cat(&[&[0, 1, 0], &sei])),
        frame(0x82, &cat(&[&[0, 1], &sei, &s(b"t"), &[0]])),
        frame(0x90, &cat(&[&[0, 1], &sei, &[0]])),
        frame(0xA2, &cat(&[&[0, 1], &sei, &s(b"t")])),
        frame(0xB0, &cat(&[&[0, 1], &sei, &[0]])),
        frame(0xF0, &cat(&[&[0], &sei])),
    ];
    for bytes in cases {
        assert_eq!(
            reject(V5, &bytes),
            error::PROPERTY_NOT_ALLOWED,
            "{bytes:02x?}"
        );
    }
    // And where it belongs, it is accepted.
    assert!(decode_one(V5, &frame(0xE0, &cat(&[&[0], &sei]))).is_ok());
    assert!(decode_one(V5, &connack_with(&sei[1..])).is_ok());
}

#[test]
fn subscription_identifier_repeats_only_in_publish() {
    let publish = frame(0x30, &cat(&[&s(b"t"), &[4, 0x0B, 1, 0x0B, 2]]));
    assert!(decode_one(V5, &publish).is_ok());
    let largest = frame(0x30, &cat(&[&s(b"t"), &[5, 0x0B, 0xFF, 0xFF, 0xFF, 0x7F]]));
    let Packet::Publish(p) = canonical(V5, &largest) else {
        panic!()
    };
    assert_eq!(p.properties.subscription_identifiers, [268_435_455]);
}
