//! Differential tests of Roost's MQTT 3.1.1 codec against two independent codecs,
//! `rumqttc::mqttbytes::v4` and `mqttbytes::v4`, plus MQTT 3.1, which only Roost speaks.
//!
//! On valid packets: the oracle's encoding decodes in Roost to the same packet, Roost's encoding
//! decodes in the oracle to the same packet, and (3.1.1 leaving no choice in how to encode a
//! packet) the two encodings are the same bytes. On invalid packets,
//! [`oracles_accept_what_roost_rejects`] records what each oracle does, and where it accepts,
//! which statement of the spec makes Roost right. MQTT 5.0 is in `codec_differential_v5.rs`.

mod common;

use bytes::{Bytes, BytesMut};
use common::*;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use roost::protocol::ProtocolVersion::{V3_1, V3_1_1, V5};
use roost::protocol::*;
use rumqttc::mqttbytes as rq4;
use rumqttc::v5::mqttbytes as rq5;

fn connect() -> impl Strategy<Value = Packet> {
    let will =
        (topic(), payload(), qos(), any::<bool>()).prop_map(|(t, payload, qos, retain)| Will {
            topic: bs(&t),
            payload,
            qos,
            retain,
            properties: Default::default(),
        });
    // 3.1.1 has no password without a user name [MQTT-3.1.2-22]; the oracles hold it as a String.
    let login = (word(), option::of(word()));
    let fields = (any::<bool>(), any::<u16>(), text());
    (fields, option::of(will), option::of(login)).prop_map(
        |((clean, keep_alive, id), will, login)| {
            let (username, password) = match login {
                Some((u, p)) => (Some(bs(&u)), p.map(Bytes::from)),
                None => (None, None),
            };
            Packet::Connect(Box::new(Connect {
                protocol: V3_1_1,
                clean_start: clean,
                keep_alive,
                properties: Default::default(),
                client_id: bs(&id),
                will,
                username,
                password,
            }))
        },
    )
}

fn connack() -> impl Strategy<Value = Packet> {
    (0u8..6, any::<bool>()).prop_map(|(code, present)| {
        Packet::ConnAck(ConnAck {
            // Session present only with return code 0 [MQTT-3.2.2-4].
            session_present: present && code == 0,
            reason: ReasonCode::from_v3_connack(code).unwrap(),
            properties: Default::default(),
        })
    })
}

fn publish() -> impl Strategy<Value = Packet> {
    let flags = (qos(), any::<bool>(), any::<bool>());
    (flags, topic(), packet_id(), payload()).prop_map(|((qos, dup, retain), t, id, payload)| {
        let qos0 = qos == QoS::AtMostOnce;
        Packet::Publish(Publish {
            dup: dup && !qos0,
            qos,
            retain,
            topic: bs(&t),
            packet_id: if qos0 { 0 } else { id },
            properties: Default::default(),
            payload,
        })
    })
}

fn ack() -> impl Strategy<Value = Packet> {
    (0..7, packet_id()).prop_map(|(kind, id)| {
        let a = PubResp::new(id);
        let props = Properties::default();
        match kind {
            0 => Packet::PubAck(a),
            1 => Packet::PubRec(a),
            2 => Packet::PubRel(a),
            3 => Packet::PubComp(a),
            4 => Packet::UnsubAck(UnsubAck {
                packet_id: id,
                properties: props.into(),
                reason_codes: Vec::new(),
            }),
            5 => Packet::PingReq,
            _ => Packet::PingResp,
        }
    })
}

fn subscriptions() -> impl Strategy<Value = Packet> {
    let subs = vec((filter(), qos()), 1..4);
    let codes = vec(prop::sample::select(&[0u8, 1, 2, 0x80][..]), 1..4);
    (packet_id(), subs, codes, vec(filter(), 1..4)).prop_flat_map(|(id, subs, codes, filters)| {
        let subscribe = Packet::Subscribe(Subscribe {
            packet_id: id,
            properties: Default::default(),
            subscriptions: subs
                .into_iter()
                .map(|(filter, qos)| Subscription {
                    filter,
                    options: SubscriptionOptions {
                        qos,
                        ..Default::default()
                    },
                })
                .collect(),
        });
        let suback = Packet::SubAck(SubAck {
            packet_id: id,
            properties: Default::default(),
            reason_codes: codes.into_iter().map(ReasonCode).collect(),
        });
        let unsubscribe = Packet::Unsubscribe(Unsubscribe {
            packet_id: id,
            properties: Default::default(),
            filters,
        });
        prop::sample::select(vec![subscribe, suback, unsubscribe])
    })
}

/// Every 3.1.1 packet, valid.
fn packet() -> impl Strategy<Value = Packet> {
    prop_oneof![
        connect(),
        connack(),
        publish(),
        ack(),
        subscriptions(),
        Just(Packet::Disconnect(Disconnect::default())),
    ]
}

/// The same conversion, writer and reader for both 3.1.1 oracles: their packet types have the
/// same names and fields. `$base` is the crate (or module) that holds `QoS` and `v4`.
macro_rules! v4_oracle {
    ($name:ident, $base:ident, $read:path) => {
        mod $name {
            use super::*;
            use $base::v4 as o;

            fn qos(q: QoS) -> $base::QoS {
                match q {
                    QoS::AtMostOnce => $base::QoS::AtMostOnce,
                    QoS::AtLeastOnce => $base::QoS::AtLeastOnce,
                    QoS::ExactlyOnce => $base::QoS::ExactlyOnce,
                }
            }

            fn utf8(b: &Bytes) -> String {
                String::from_utf8(b.to_vec()).unwrap()
            }

            /// The 3.1.1 CONNACK return codes of table 3.1, named as MQTT 5.0 names them.
            fn return_code(r: ReasonCode) -> o::ConnectReturnCode {
                use o::ConnectReturnCode::*;
                match r {
                    ReasonCode::SUCCESS => Success,
                    ReasonCode::UNSUPPORTED_PROTOCOL_VERSION => RefusedProtocolVersion,
                    ReasonCode::CLIENT_IDENTIFIER_NOT_VALID => BadClientId,
                    ReasonCode::SERVER_UNAVAILABLE => ServiceUnavailable,
                    ReasonCode::BAD_USER_NAME_OR_PASSWORD => BadUserNamePassword,
                    ReasonCode::NOT_AUTHORIZED => NotAuthorized,
                    other => unreachable!("{other:?} is not generated"),
                }
            }

            pub fn to_oracle(p: &Packet) -> o::Packet {
                let s = |b: &ByteStr| b.to_string();
                match p {
                    Packet::Connect(c) => o::Packet::Connect(o::Connect {
                        protocol: $base::Protocol::V4,
                        keep_alive: c.keep_alive,
                        client_id: s(&c.client_id),
                        clean_session: c.clean_start,
                        last_will: c.will.as_ref().map(|w| o::LastWill {
                            topic: s(&w.topic),
                            message: w.payload.clone(),
                            qos: qos(w.qos),
                            retain: w.retain,
                        }),
                        login: c.username.as_ref().map(|u| o::Login {
                            username: s(u),
                            password: c.password.as_ref().map(utf8).unwrap_or_default(),
                        }),
                    }),
                    Packet::ConnAck(c) => o::Packet::ConnAck(o::ConnAck {
                        session_present: c.session_present,
                        code: return_code(c.reason),
                    }),
                    Packet::Publish(p) => o::Packet::Publish(o::Publish {
                        dup: p.dup,
                        qos: qos(p.qos),
                        retain: p.retain,
                        topic: s(&p.topic),
                        pkid: p.packet_id,
                        payload: p.payload.clone(),
                    }),
                    Packet::PubAck(a) => o::Packet::PubAck(o::PubAck { pkid: a.packet_id }),
                    Packet::PubRec(a) => o::Packet::PubRec(o::PubRec { pkid: a.packet_id }),
                    Packet::PubRel(a) => o::Packet::PubRel(o::PubRel { pkid: a.packet_id }),
                    Packet::PubComp(a) => o::Packet::PubComp(o::PubComp { pkid: a.packet_id }),
                    Packet::Subscribe(sub) => o::Packet::Subscribe(o::Subscribe {
                        pkid: sub.packet_id,
                        filters: (sub.subscriptions.iter())
                            .map(|f| o::SubscribeFilter {
                                path: s(&f.filter),
                                qos: qos(f.options.qos),
                            })
                            .collect(),
                    }),
                    Packet::SubAck(a) => o::Packet::SubAck(o::SubAck {
                        pkid: a.packet_id,
                        return_codes: (a.reason_codes.iter())
                            .map(|c| match QoS::from_bits(c.0) {
                                Some(q) => o::SubscribeReasonCode::Success(qos(q)),
                                None => o::SubscribeReasonCode::Failure,
                            })
                            .collect(),
                    }),
                    Packet::Unsubscribe(u) => o::Packet::Unsubscribe(o::Unsubscribe {
                        pkid: u.packet_id,
                        topics: u.filters.iter().map(s).collect(),
                    }),
                    Packet::UnsubAck(a) => o::Packet::UnsubAck(o::UnsubAck { pkid: a.packet_id }),
                    Packet::PingReq => o::Packet::PingReq,
                    Packet::PingResp => o::Packet::PingResp,
                    Packet::Disconnect(_) => o::Packet::Disconnect,
                    Packet::Auth(_) => unreachable!("no AUTH in 3.1.1"),
                }
            }

            pub fn write(p: &o::Packet) -> Vec<u8> {
                let mut b = BytesMut::new();
                let written = match p {
                    o::Packet::Connect(c) => c.write(&mut b),
                    o::Packet::ConnAck(c) => c.write(&mut b),
                    o::Packet::Publish(c) => c.write(&mut b),
                    o::Packet::PubAck(c) => c.write(&mut b),
                    o::Packet::PubRec(c) => c.write(&mut b),
                    o::Packet::PubRel(c) => c.write(&mut b),
                    o::Packet::PubComp(c) => c.write(&mut b),
                    o::Packet::Subscribe(c) => c.write(&mut b),
                    o::Packet::SubAck(c) => c.write(&mut b),
                    o::Packet::Unsubscribe(c) => c.write(&mut b),
                    o::Packet::UnsubAck(c) => c.write(&mut b),
                    o::Packet::PingReq => o::PingReq.write(&mut b),
                    o::Packet::PingResp => o::PingResp.write(&mut b),
                    o::Packet::Disconnect => o::Disconnect.write(&mut b),
                };
                written.unwrap_or_else(|e| panic!("{p:?}: {e:?}"));
                b.to_vec()
            }

            /// The packet, or the oracle's error by name. Asserts the whole input was read.
            pub fn read(bytes: &[u8]) -> Result<o::Packet, String> {
                let mut b = BytesMut::from(bytes);
                let p = $read(&mut b, usize::MAX).map_err(|e| format!("{e:?}"))?;
                assert!(b.is_empty(), "{} bytes left after {p:?}", b.len());
                Ok(p)
            }

            pub fn agrees(p: &Packet) -> Result<(), TestCaseError> {
                let theirs = to_oracle(p);
                let their_bytes = write(&theirs);
                prop_assert_eq!(decode_one(V3_1_1, &their_bytes), Ok(p.clone()));
                let ours = encode(V3_1_1, p);
                prop_assert_eq!(&ours, &their_bytes);
                prop_assert_eq!(read(&ours), Ok(theirs));
                Ok(())
            }
        }
    };
}

v4_oracle!(rumqttc4, rq4, rq4::v4::Packet::read);
v4_oracle!(mqttbytes4, mqttbytes, mqttbytes::v4::read);

/// MQTT 3.1 differs from 3.1.1 on the wire only in CONNECT's protocol name and level:
/// `MQIsdp` 3 for `MQTT` 4. Returns the 3.1 encoding of a packet from its 3.1.1 encoding.
fn as_mqtt_3_1(v311: &[u8]) -> Vec<u8> {
    if v311[0] != 0x10 {
        return v311.to_vec();
    }
    let header = 1 + v311[1..].iter().position(|b| b & 0x80 == 0).unwrap() + 1;
    let body = &v311[header..];
    assert_eq!(&body[..7], b"\x00\x04MQTT\x04");
    frame(0x10, &[b"\x00\x06MQIsdp\x03", &body[7..]].concat())
}

proptest! {
    #[test]
    fn rumqttc_v4_and_roost_agree_on_valid_packets(p in packet()) {
        rumqttc4::agrees(&p)?;
    }

    #[test]
    fn mqttbytes_v4_and_roost_agree_on_valid_packets(p in packet()) {
        mqttbytes4::agrees(&p)?;
    }

    /// No oracle speaks 3.1: the 3.1.1 bytes the oracles agreed on above, with the protocol
    /// name and level swapped, must be what Roost writes for 3.1 and decode back to the packet.
    #[test]
    fn mqtt_3_1_is_3_1_1_with_mqisdp(p in packet()) {
        let p31 = match p.clone() {
            Packet::Connect(mut c) => {
                c.protocol = V3_1;
                Packet::Connect(c)
            }
            other => other,
        };
        let expected = as_mqtt_3_1(&rumqttc4::write(&rumqttc4::to_oracle(&p)));
        let ours = encode(V3_1, &p31);
        prop_assert_eq!(&ours, &expected);
        prop_assert_eq!(decode_one(V3_1, &ours), Ok(p31));
    }
}

/// A length-prefixed string or binary field.
fn s(b: &[u8]) -> Vec<u8> {
    [&(b.len() as u16).to_be_bytes()[..], b].concat()
}

/// A v5 property section: the properties behind their variable-length length.
fn props(parts: &[&[u8]]) -> Vec<u8> {
    frame(0, &parts.concat())[1..].to_vec()
}

/// A CONNECT with `flags` and everything after the keep alive.
fn connect_bytes(level: u8, flags: u8, rest: &[&[u8]]) -> Vec<u8> {
    frame(
        0x10,
        &[&s(b"MQTT"), &[level, flags, 0, 10][..], &rest.concat()].concat(),
    )
}

/// An invalid packet and what each side makes of it.
struct Row {
    what: &'static str,
    version: ProtocolVersion,
    bytes: Vec<u8>,
    /// The error Roost must return.
    roost: DecodeError,
    /// rumqttc then mqttbytes (their v4 codecs for 3.1.1 rows, v5 for 5.0 rows), as observed:
    /// "accepts", or the error they return.
    oracles: [&'static str; 2],
    /// The statement Roost enforces (`roost.v311` or `roost.v5`): where an oracle accepts, the
    /// reason Roost is right to refuse.
    statement: &'static str,
}

#[rustfmt::skip] // A table: one row is two lines, the verdicts and then the bytes.
fn rows() -> Vec<Row> {
    use roost::protocol::error::*;
    let row = |what, version, roost, oracles, statement, bytes| Row { what, version, bytes, roost, oracles, statement };
    let publish = |first: u8, topic: &[u8], tail: &[u8]| frame(first, &[&s(topic), tail].concat());
    let subscribe = |head: &[u8], options: u8| frame(0x82, &[head, &s(b"a/b"), &[options]].concat());
    let (acc, surrogate) = ("accepts", &[0xED, 0xA0, 0x80][..]);
    vec![
        row("SUBSCRIBE with flags 0000", V3_1_1, RESERVED_FLAGS, [acc, acc], "MQTT-2.2.2-2",
            frame(0x80, &[&[0, 1], &s(b"a/b")[..], &[0]].concat())),
        row("PUBREL with flags 0000", V3_1_1, RESERVED_FLAGS, [acc, acc], "MQTT-2.2.2-2",
            vec![0x60, 2, 0, 1]),
        row("PINGREQ with flags 0001", V3_1_1, RESERVED_FLAGS, [acc, acc], "MQTT-2.2.2-2",
            vec![0xC1, 0]),
        row("U+0000 in a topic", V3_1_1, UTF8_NULL, [acc, acc], "MQTT-1.5.3-2",
            publish(0x30, b"a\0b", b"x")),
        row("U+0000 in a client id", V3_1_1, UTF8_NULL, [acc, acc], "MQTT-1.5.3-2",
            connect_bytes(4, 0x02, &[&s(b"c\0d")])),
        row("surrogate U+D800 in a topic", V3_1_1, INVALID_UTF8, ["TopicNotUtf8", "TopicNotUtf8"], "MQTT-1.5.3-1",
            publish(0x30, surrogate, b"x")),
        row("wildcard in a PUBLISH topic", V3_1_1, WILDCARD_IN_TOPIC_NAME, [acc, acc], "MQTT-3.3.2-2",
            publish(0x30, b"a/+", b"x")),
        row("empty PUBLISH topic", V3_1_1, EMPTY_TOPIC, [acc, acc], "MQTT-4.7.3-1",
            publish(0x30, b"", b"x")),
        row("DUP with QoS 0", V3_1_1, DUP_WITH_QOS_0, [acc, acc], "MQTT-3.3.1-2",
            publish(0x38, b"a/b", b"x")),
        row("remaining length 6 as 0x86 0x00", V3_1_1, NON_MINIMAL_VARIABLE_INTEGER, [acc, acc], "2.2.3",
            [&[0x30, 0x86, 0x00][..], &s(b"a/b"), b"x"].concat()),
        row("reserved CONNECT flag", V3_1_1, CONNECT_RESERVED_FLAG, [acc, acc], "MQTT-3.1.2-3",
            connect_bytes(4, 0x03, &[&s(b"c")])),
        row("will QoS without will flag", V3_1_1, WILL_QOS_WITHOUT_WILL, ["IncorrectPacketFormat", "IncorrectPacketFormat"], "MQTT-3.1.2-13",
            connect_bytes(4, 0x0A, &[&s(b"c")])),
        row("will retain without will flag", V3_1_1, WILL_RETAIN_WITHOUT_WILL, ["IncorrectPacketFormat", "IncorrectPacketFormat"], "MQTT-3.1.2-15",
            connect_bytes(4, 0x22, &[&s(b"c")])),
        row("password without user name", V3_1_1, PASSWORD_WITHOUT_USERNAME, [acc, acc], "MQTT-3.1.2-22",
            connect_bytes(4, 0x42, &[&s(b"c"), &s(b"pw")])),
        row("packet id 0 on a QoS 1 PUBLISH", V3_1_1, PACKET_ID_ZERO, ["PacketIdZero", "PacketIdZero"], "MQTT-2.3.1-1",
            publish(0x32, b"a/b", b"\0\0x")),
        row("SUBSCRIBE with no topic filter", V3_1_1, NO_TOPIC_FILTERS, ["EmptySubscription", acc], "MQTT-3.8.3-3",
            vec![0x82, 2, 0, 1]),
        row("reserved subscription option bits", V3_1_1, SUBSCRIPTION_RESERVED_BITS, [acc, acc], "MQTT-3.8.3-4",
            subscribe(&[0, 1], 0x04)),
        row("CONNACK reserved flag", V3_1_1, CONNACK_RESERVED_FLAGS, [acc, acc], "3.2.2.1",
            vec![0x20, 2, 0x02, 0]),
        row("session present with return code 5", V3_1_1, SESSION_PRESENT_WITH_ERROR, [acc, acc], "MQTT-3.2.2-4",
            vec![0x20, 2, 0x01, 5]),
        row("trailing byte after PINGREQ", V3_1_1, TRAILING_BYTES, [acc, acc], "MQTT-4.8.0-1",
            vec![0xC0, 1, 0]),
        row("trailing byte after PUBACK", V3_1_1, TRAILING_BYTES, [acc, acc], "MQTT-4.8.0-1",
            vec![0x40, 3, 0, 1, 0]),
        row("Message Expiry Interval twice", V5, DUPLICATE_PROPERTY, [acc, acc], "2.2.2.2",
            publish(0x30, b"a/b", &[&props(&[&[2, 0, 0, 0, 1], &[2, 0, 0, 0, 2]])[..], b"x"].concat())),
        row("Topic Alias 0", V5, TOPIC_ALIAS_ZERO, [acc, acc], "MQTT-3.3.2-8",
            publish(0x30, b"a/b", &[&props(&[&[0x23, 0, 0]])[..], b"x"].concat())),
        row("Subscription Identifier 0", V5, SUBSCRIPTION_IDENTIFIER_ZERO, [acc, acc], "3.8.2.1.2",
            subscribe(&[&[0, 1][..], &props(&[&[0x0B, 0]])].concat(), 0)),
        row("Receive Maximum 0", V5, RECEIVE_MAXIMUM_ZERO, [acc, acc], "3.1.2.11.3",
            connect_bytes(5, 0x02, &[&props(&[&[0x21, 0, 0]]), &s(b"c")])),
        row("surrogate U+D800 in a v5 topic", V5, INVALID_UTF8, [acc, "TopicNotUtf8"], "MQTT-1.5.4-1",
            publish(0x30, surrogate, b"\0x")),
        row("wildcard in a v5 PUBLISH topic", V5, WILDCARD_IN_TOPIC_NAME, [acc, acc], "MQTT-3.3.2-2",
            publish(0x30, b"a/#", b"\0x")),
        row("reserved v5 subscription option bits", V5, SUBSCRIPTION_RESERVED_BITS, [acc, acc], "MQTT-3.8.3-5",
            subscribe(&[0, 1, 0], 0x40)),
        row("trailing byte after a v5 PUBACK", V5, TRAILING_BYTES, [acc, acc], "4.13",
            vec![0x40, 5, 0, 1, 0x10, 0, 0xFF]),
    ]
}

/// What the two oracles of `v`'s generation do with `bytes`: "accepts" or their error.
fn oracles(v: ProtocolVersion, bytes: &[u8]) -> [String; 2] {
    fn seen<P: std::fmt::Debug, E: std::fmt::Debug>(
        bytes: &[u8],
        read: impl FnOnce(&mut BytesMut) -> Result<P, E>,
    ) -> String {
        let mut b = BytesMut::from(bytes);
        match read(&mut b) {
            Ok(p) => {
                assert!(b.is_empty(), "{} bytes left after {p:?}", b.len());
                "accepts".to_string()
            }
            Err(e) => format!("{e:?}"),
        }
    }
    if v.is_v5() {
        [
            seen(bytes, |b| rq5::v5::Packet::read(b, None)),
            seen(bytes, |b| mqttbytes::v5::read(b, usize::MAX)),
        ]
    } else {
        [
            seen(bytes, |b| rq4::v4::Packet::read(b, usize::MAX)),
            seen(bytes, |b| mqttbytes::v4::read(b, usize::MAX)),
        ]
    }
}

#[test]
fn oracles_accept_what_roost_rejects() {
    let mut wrong = Vec::new();
    for row in rows() {
        let roost = decode_one(row.version, &row.bytes);
        let observed = oracles(row.version, &row.bytes);
        let statement = if row.version.is_v5() {
            row.roost.v5
        } else {
            row.roost.v311
        };
        if roost != Err(row.roost) || observed != row.oracles || statement != Some(row.statement) {
            wrong.push(format!(
                "{}: Roost {roost:?}, oracles {observed:?}, statement {statement:?}",
                row.what
            ));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}
