//! Differential fuzzing of Roost's decoder against rumqttc's `mqttbytes` codecs: whenever Roost
//! accepts a packet, rumqttc must accept the same frame too, as the same packet type (for
//! PUBLISH and SUBSCRIBE, with the same fields). Roost is meant to be stricter, never looser.
//! The reverse (rumqttc accepts, Roost refuses) is expected and not checked.
//!
//! Input layout: byte 0, bit 0 picks the version (0 = 3.1.1 against `rumqttc::mqttbytes::v4`,
//! 1 = 5.0 against `rumqttc::v5::mqttbytes::v5`); the rest is the stream. Roost decodes the
//! stream packet by packet; each frame it accepts is handed to the oracle on its own.
//!
//! A CONNECT carries its own version and goes to the oracle for that version. An MQTT 3.1
//! (`MQIsdp`, level 3) CONNECT is outside both oracles' domain and is skipped.
//!
//! Where rumqttc refuses something the spec allows, the case is listed in [`oracle_is_wrong`]
//! with the section or statement it breaks, and not counted as a disagreement. One rumqttc bug
//! changes a field rather than the verdict (its Subscription Identifier miscount); it is handled
//! where the fields are compared, in `check_v5`.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use roost::protocol::{DecodeLimits, Packet, ProtocolVersion, QoS, decode};
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::v5;

/// rumqttc's own size cap, set above anything Roost's default limit admits.
const ORACLE_MAX: u32 = u32::MAX;

fuzz_target!(|data: &[u8]| {
    let [config, stream @ ..] = data else {
        return;
    };
    let version = if config & 0x01 == 0 {
        ProtocolVersion::V3_1_1
    } else {
        ProtocolVersion::V5
    };
    let mut buf = BytesMut::from(stream);
    loop {
        let before = buf.clone();
        let packet = match decode(&mut buf, version, &DecodeLimits::default()) {
            Ok(Some(packet)) => packet,
            Ok(None) | Err(_) => return,
        };
        let frame = &before[..before.len() - buf.len()];
        let v = match &packet {
            Packet::Connect(c) => c.protocol,
            _ => version,
        };
        if v == ProtocolVersion::V3_1 || oracle_is_wrong(&packet, v, frame).is_some() {
            continue;
        }
        match v {
            ProtocolVersion::V5 => check_v5(&packet, frame),
            _ => check_v4(&packet, frame),
        }
    }
});

/// The cases where rumqttc refuses a packet the spec allows. Each returns the clause rumqttc
/// gets wrong. Every one was confirmed by running this target, with the case removed, on the
/// minimal frame kept as `fuzz/seeds/differential/exception-*` (listed in `fuzz/README.md`).
fn oracle_is_wrong(packet: &Packet, v: ProtocolVersion, frame: &[u8]) -> Option<&'static str> {
    match packet {
        // rumqttc reads the password with `read_mqtt_string` (both readers), so a password that
        // is not UTF-8 fails. The password is Binary Data: 3.1.1 section 3.1.3.5 ("0 to 65535
        // bytes of binary data"), 5.0 section 3.1.3.6.
        Packet::Connect(c)
            if c.password
                .as_ref()
                .is_some_and(|p| std::str::from_utf8(p).is_err()) =>
        {
            Some("3.1.1 s3.1.3.5 / 5.0 s3.1.3.6: the password is binary data")
        }
        // rumqttc's v5 reader has no AUTH packet at all (type 15 is InvalidPacketType).
        Packet::Auth(_) => Some("5.0 s2.1.2, s3.15: AUTH is packet type 15"),
        // rumqttc's v5 reader refuses a DISCONNECT with remaining length 0 (PayloadRequired)
        // and, with remaining length 1, requires a property length. 5.0 s3.14.2.1: "The Reason
        // Code and Property Length can be omitted if the Reason Code is 0x00 ... and there are
        // no Properties. In this case the DISCONNECT has a Remaining Length of 0." s3.14.2.2.1:
        // "If the Remaining Length is less than 2, a value of 0 is used."
        Packet::Disconnect(_) if v == ProtocolVersion::V5 && remaining_len(frame) < 2 => {
            Some("5.0 s3.14.2.1 / s3.14.2.2.1: reason code and property length may be omitted")
        }
        _ => None,
    }
}

/// The remaining length of a well-formed frame: the bytes after the fixed header.
fn remaining_len(frame: &[u8]) -> usize {
    let len_bytes = frame[1..].iter().position(|b| b & 0x80 == 0).unwrap_or(3) + 1;
    frame.len() - 1 - len_bytes
}

fn check_v4(packet: &Packet, frame: &[u8]) {
    let mut stream = BytesMut::from(frame);
    let theirs = match v4::Packet::read(&mut stream, ORACLE_MAX as usize) {
        Ok(p) => p,
        Err(e) => panic!("Roost accepted, rumqttc v4 refused ({e:?}): {packet:?} {frame:02x?}"),
    };
    assert!(stream.is_empty(), "rumqttc v4 framed a different length");
    assert_eq!(v4_name(&theirs), packet.name(), "packet type: {theirs:?}");
    match (packet, &theirs) {
        (Packet::Publish(ours), v4::Packet::Publish(t)) => {
            assert_eq!(ours.topic.as_str(), t.topic, "topic");
            assert_eq!(ours.payload, t.payload, "payload");
            assert_eq!(ours.packet_id, t.pkid, "packet id");
            assert_eq!(qos(ours.qos), t.qos as u8, "QoS");
            assert_eq!((ours.dup, ours.retain), (t.dup, t.retain), "dup, retain");
        }
        (Packet::Subscribe(ours), v4::Packet::Subscribe(t)) => {
            assert_eq!(ours.packet_id, t.pkid, "packet id");
            let ours: Vec<_> = ours
                .subscriptions
                .iter()
                .map(|s| (s.filter.as_str(), qos(s.options.qos)))
                .collect();
            let theirs: Vec<_> = t
                .filters
                .iter()
                .map(|f| (f.path.as_str(), f.qos as u8))
                .collect();
            assert_eq!(ours, theirs, "filters");
        }
        _ => {}
    }
}

fn check_v5(packet: &Packet, frame: &[u8]) {
    let mut stream = BytesMut::from(frame);
    let theirs = match v5::Packet::read(&mut stream, Some(ORACLE_MAX)) {
        Ok(p) => p,
        Err(e) => panic!("Roost accepted, rumqttc v5 refused ({e:?}): {packet:?} {frame:02x?}"),
    };
    assert!(stream.is_empty(), "rumqttc v5 framed a different length");
    assert_eq!(v5_name(&theirs), packet.name(), "packet type: {theirs:?}");
    match (packet, &theirs) {
        (Packet::Publish(ours), v5::Packet::Publish(t)) => {
            assert_eq!(ours.topic.as_bytes(), &t.topic, "topic");
            assert_eq!(ours.packet_id, t.pkid, "packet id");
            assert_eq!(qos(ours.qos), t.qos as u8, "QoS");
            assert_eq!((ours.dup, ours.retain), (t.dup, t.retain), "dup, retain");
            // rumqttc counts each Subscription Identifier one byte too long (`cursor += 1 +
            // id_len` after the identifier byte was already counted), so with two or more it
            // stops reading properties early and hands the rest to the payload. A property is
            // its identifier plus its value, and the Property Length covers exactly the
            // properties (5.0 s2.2.2.1, s2.2.2.2, s3.3.2.3.8); Roost's reading is the spec's.
            if ours.properties.subscription_identifiers.len() < 2 {
                assert_eq!(ours.payload, t.payload, "payload");
                let alias = t.properties.as_ref().and_then(|p| p.topic_alias);
                assert_eq!(ours.properties.topic_alias, alias, "topic alias");
            }
        }
        (Packet::Subscribe(ours), v5::Packet::Subscribe(t)) => {
            assert_eq!(ours.packet_id, t.pkid, "packet id");
            let ours: Vec<_> = ours
                .subscriptions
                .iter()
                .map(|s| (s.filter.as_str(), qos(s.options.qos), s.options.no_local))
                .collect();
            let theirs: Vec<_> = t
                .filters
                .iter()
                .map(|f| (f.path.as_str(), f.qos as u8, f.nolocal))
                .collect();
            assert_eq!(ours, theirs, "filters");
        }
        _ => {}
    }
}

fn qos(q: QoS) -> u8 {
    q as u8
}

fn v4_name(p: &v4::Packet) -> &'static str {
    match p {
        v4::Packet::Connect(_) => "CONNECT",
        v4::Packet::ConnAck(_) => "CONNACK",
        v4::Packet::Publish(_) => "PUBLISH",
        v4::Packet::PubAck(_) => "PUBACK",
        v4::Packet::PubRec(_) => "PUBREC",
        v4::Packet::PubRel(_) => "PUBREL",
        v4::Packet::PubComp(_) => "PUBCOMP",
        v4::Packet::Subscribe(_) => "SUBSCRIBE",
        v4::Packet::SubAck(_) => "SUBACK",
        v4::Packet::Unsubscribe(_) => "UNSUBSCRIBE",
        v4::Packet::UnsubAck(_) => "UNSUBACK",
        v4::Packet::PingReq => "PINGREQ",
        v4::Packet::PingResp => "PINGRESP",
        v4::Packet::Disconnect => "DISCONNECT",
    }
}

fn v5_name(p: &v5::Packet) -> &'static str {
    match p {
        v5::Packet::Auth(_) => "AUTH",
        v5::Packet::Connect(..) => "CONNECT",
        v5::Packet::ConnAck(_) => "CONNACK",
        v5::Packet::Publish(_) => "PUBLISH",
        v5::Packet::PubAck(_) => "PUBACK",
        v5::Packet::PubRec(_) => "PUBREC",
        v5::Packet::PubRel(_) => "PUBREL",
        v5::Packet::PubComp(_) => "PUBCOMP",
        v5::Packet::Subscribe(_) => "SUBSCRIBE",
        v5::Packet::SubAck(_) => "SUBACK",
        v5::Packet::Unsubscribe(_) => "UNSUBSCRIBE",
        v5::Packet::UnsubAck(_) => "UNSUBACK",
        v5::Packet::PingReq(_) => "PINGREQ",
        v5::Packet::PingResp(_) => "PINGRESP",
        v5::Packet::Disconnect(_) => "DISCONNECT",
    }
}
