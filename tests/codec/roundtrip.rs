//! Property tests: any valid packet encodes and decodes back equal, in every version; and
//! arbitrary bytes never panic the decoder nor make it read past what it was given.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use roost::protocol::*;

fn version() -> impl Strategy<Value = ProtocolVersion> {
    prop_oneof![
        Just(ProtocolVersion::V3_1),
        Just(ProtocolVersion::V3_1_1),
        Just(ProtocolVersion::V5)
    ]
}

/// Valid MQTT strings: any Unicode scalar except U+0000, controls and non-characters.
fn text() -> impl Strategy<Value = ByteStr> {
    "[^\\x00-\\x1f\\x7f-\\x9f\u{fdd0}-\u{fdef}\u{fffe}\u{ffff}]{0,12}"
        .prop_filter_map("non-character", |s: String| ByteStr::try_from(s).ok())
}

fn topic_name() -> impl Strategy<Value = ByteStr> {
    "[a-z0-9/$ \u{e9}\u{1F600}]{1,16}".prop_map(|s: String| ByteStr::try_from(s).expect("valid"))
}

fn topic_filter() -> impl Strategy<Value = ByteStr> {
    prop_oneof![
        topic_name(),
        Just(ByteStr::from_static("#").expect("valid")),
        Just(ByteStr::from_static("a/+/c").expect("valid")),
        Just(ByteStr::from_static("+").expect("valid")),
    ]
}

fn binary() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn packet_id() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}

fn user_properties() -> impl Strategy<Value = Vec<(ByteStr, ByteStr)>> {
    vec((text(), text()), 0..3)
}

/// Properties for a message (PUBLISH or will).
fn message_properties(will: bool) -> impl Strategy<Value = Properties> {
    (
        proptest::option::of(0u8..=1),
        proptest::option::of(any::<u32>()),
        proptest::option::of(text()),
        proptest::option::of(topic_name()),
        proptest::option::of(binary()),
        user_properties(),
        proptest::option::of(1u16..),
        vec(1u32..=268_435_455, 0..3),
        proptest::option::of(any::<u32>()),
    )
        .prop_map(
            move |(pfi, expiry, ct, rt, cd, up, alias, ids, delay)| Properties {
                payload_format_indicator: pfi,
                message_expiry_interval: expiry,
                content_type: ct,
                response_topic: rt,
                correlation_data: cd,
                user_properties: up,
                topic_alias: if will { None } else { alias },
                subscription_identifiers: if will { Vec::new() } else { ids },
                will_delay_interval: if will { delay } else { None },
                ..Properties::default()
            },
        )
}

fn reason_properties() -> impl Strategy<Value = Properties> {
    (proptest::option::of(text()), user_properties()).prop_map(|(rs, up)| Properties {
        reason_string: rs,
        user_properties: up,
        ..Properties::default()
    })
}

fn connect_properties() -> impl Strategy<Value = Properties> {
    (
        proptest::option::of(any::<u32>()),
        proptest::option::of(1u16..),
        proptest::option::of(1u32..),
        proptest::option::of(any::<u16>()),
        proptest::option::of(0u8..=1),
        proptest::option::of(0u8..=1),
        proptest::option::of((text(), proptest::option::of(binary()))),
        user_properties(),
    )
        .prop_map(|(sei, rm, mps, tam, rri, rpi, auth, up)| Properties {
            session_expiry_interval: sei,
            receive_maximum: rm,
            maximum_packet_size: mps,
            topic_alias_maximum: tam,
            request_response_information: rri,
            request_problem_information: rpi,
            authentication_method: auth.as_ref().map(|a| a.0.clone()),
            authentication_data: auth.and_then(|a| a.1),
            user_properties: up,
            ..Properties::default()
        })
}

fn connack_properties() -> impl Strategy<Value = Properties> {
    (
        (
            proptest::option::of(any::<u32>()),
            proptest::option::of(text()),
            proptest::option::of(any::<u16>()),
        ),
        (
            proptest::option::of(text()),
            proptest::option::of(text()),
            proptest::option::of(text()),
        ),
        (
            proptest::option::of(1u16..),
            proptest::option::of(any::<u16>()),
            proptest::option::of(0u8..=1),
        ),
        (
            proptest::option::of(0u8..=1),
            proptest::option::of(1u32..),
            proptest::option::of(0u8..=1),
        ),
        (
            proptest::option::of(0u8..=1),
            proptest::option::of(0u8..=1),
            reason_properties(),
        ),
    )
        .prop_map(
            |((sei, aci, ska), (ri, sr, am), (rm, tam, mq), (ra, mps, wsa), (sia, ssa, rp))| {
                Properties {
                    session_expiry_interval: sei,
                    assigned_client_identifier: aci,
                    server_keep_alive: ska,
                    response_information: ri,
                    server_reference: sr,
                    authentication_method: am,
                    receive_maximum: rm,
                    topic_alias_maximum: tam,
                    maximum_qos: mq,
                    retain_available: ra,
                    maximum_packet_size: mps,
                    wildcard_subscription_available: wsa,
                    subscription_identifier_available: sia,
                    shared_subscription_available: ssa,
                    ..rp
                }
            },
        )
}

/// Properties only a v5 packet carries; empty for older versions.
fn v5_only(v: ProtocolVersion, p: Properties) -> Properties {
    if v.is_v5() { p } else { Properties::default() }
}

fn reason(v: ProtocolVersion, codes: &'static [u8]) -> impl Strategy<Value = ReasonCode> {
    proptest::sample::select(codes).prop_map(move |c| {
        if v.is_v5() {
            ReasonCode(c)
        } else {
            ReasonCode(0)
        }
    })
}

fn publish(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        topic_name(),
        packet_id(),
        message_properties(false),
        binary(),
    )
        .prop_map(move |(qos, dup, retain, topic, id, props, payload)| {
            Packet::Publish(Publish {
                dup: dup && qos != QoS::AtMostOnce,
                qos,
                retain,
                topic,
                packet_id: if qos == QoS::AtMostOnce { 0 } else { id },
                properties: v5_only(v, props).into(),
                payload,
            })
        })
}

fn connect(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let will = (
        topic_name(),
        binary(),
        qos(),
        any::<bool>(),
        message_properties(true),
    )
        .prop_map(move |(topic, payload, qos, retain, p)| Will {
            topic,
            payload,
            qos,
            retain,
            properties: v5_only(v, p).into(),
        });
    (
        any::<bool>(),
        any::<u16>(),
        connect_properties(),
        text(),
        proptest::option::of(will),
        proptest::option::of(text()),
        proptest::option::of(binary()),
    )
        .prop_map(
            move |(clean_start, keep_alive, props, client_id, will, username, password)| {
                // Before 5.0 a password needs a user name.
                let password = if v.is_v5() || username.is_some() {
                    password
                } else {
                    None
                };
                Packet::Connect(Box::new(Connect {
                    protocol: v,
                    clean_start,
                    keep_alive,
                    properties: v5_only(v, props).into(),
                    client_id,
                    will,
                    username,
                    password,
                }))
            },
        )
}

fn ack(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    const PUBACK: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
    const PUBREL: &[u8] = &[0x00, 0x92];
    (
        0..4usize,
        packet_id(),
        reason(v, PUBACK),
        reason(v, PUBREL),
        reason_properties(),
    )
        .prop_map(move |(kind, packet_id, r1, r2, p)| {
            let resp = |reason| PubResp {
                packet_id,
                reason,
                properties: v5_only(v, p.clone()).into(),
            };
            match kind {
                0 => Packet::PubAck(resp(r1)),
                1 => Packet::PubRec(resp(r1)),
                2 => Packet::PubRel(resp(r2)),
                _ => Packet::PubComp(resp(r2)),
            }
        })
}

fn options(v: ProtocolVersion) -> impl Strategy<Value = SubscriptionOptions> {
    (qos(), any::<bool>(), any::<bool>(), 0..3u8).prop_map(move |(qos, nl, rap, rh)| {
        let retain_handling = match rh {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNew,
            _ => RetainHandling::DoNotSend,
        };
        if v.is_v5() {
            SubscriptionOptions {
                qos,
                no_local: nl,
                retain_as_published: rap,
                retain_handling,
            }
        } else {
            SubscriptionOptions {
                qos,
                ..Default::default()
            }
        }
    })
}

fn subscriptions(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    const SUBACK: &[u8] = &[
        0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
    ];
    const SUBACK_V3: &[u8] = &[0x00, 0x01, 0x02, 0x80];
    const UNSUBACK: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
    let subs = vec((topic_filter(), options(v)), 1..4);
    let codes = vec(
        proptest::sample::select(if v.is_v5() { SUBACK } else { SUBACK_V3 }).prop_map(ReasonCode),
        1..4,
    );
    let unsub_codes = vec(
        proptest::sample::select(UNSUBACK).prop_map(ReasonCode),
        1..4,
    );
    let sub_id = proptest::option::of(1u32..=268_435_455);
    (
        0..4usize,
        packet_id(),
        subs,
        codes,
        unsub_codes,
        reason_properties(),
        user_properties(),
        sub_id,
    )
        .prop_map(
            move |(kind, packet_id, subs, codes, unsub_codes, rp, up, sub_id)| match kind {
                0 => Packet::Subscribe(Subscribe {
                    packet_id,
                    properties: v5_only(
                        v,
                        Properties {
                            subscription_identifiers: sub_id.into_iter().collect(),
                            user_properties: up,
                            ..Properties::default()
                        },
                    )
                    .into(),
                    subscriptions: subs
                        .into_iter()
                        .map(|(filter, options)| Subscription { filter, options })
                        .collect(),
                }),
                1 => Packet::SubAck(SubAck {
                    packet_id,
                    properties: v5_only(v, rp).into(),
                    reason_codes: codes,
                }),
                2 => Packet::Unsubscribe(Unsubscribe {
                    packet_id,
                    properties: v5_only(
                        v,
                        Properties {
                            user_properties: up,
                            ..Properties::default()
                        },
                    )
                    .into(),
                    filters: subs.into_iter().map(|(f, _)| f).collect(),
                }),
                _ => Packet::UnsubAck(UnsubAck {
                    packet_id,
                    properties: v5_only(v, rp).into(),
                    reason_codes: if v.is_v5() { unsub_codes } else { Vec::new() },
                }),
            },
        )
}

fn control(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    const CONNACK: &[u8] = &[
        0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95,
        0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
    ];
    const CONNACK_V3: &[u8] = &[0x00, 0x84, 0x85, 0x88, 0x86, 0x87];
    const DISCONNECT: &[u8] = &[
        0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94,
        0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
    ];
    const AUTH: &[u8] = &[0x00, 0x18, 0x19];
    let connack_code = proptest::sample::select(if v.is_v5() { CONNACK } else { CONNACK_V3 });
    let disconnect_props = (
        reason_properties(),
        proptest::option::of(any::<u32>()),
        proptest::option::of(text()),
    )
        .prop_map(|(p, sei, sr)| Properties {
            session_expiry_interval: sei,
            server_reference: sr,
            ..p
        });
    let auth_props = (
        reason_properties(),
        proptest::option::of(text()),
        proptest::option::of(binary()),
    )
        .prop_map(|(p, m, d)| Properties {
            authentication_method: m,
            authentication_data: d,
            ..p
        });
    let kinds = if v.is_v5() { 5 } else { 4 };
    (
        0..kinds,
        any::<bool>(),
        connack_code,
        connack_properties(),
        reason(v, DISCONNECT),
        disconnect_props,
        proptest::sample::select(AUTH),
        auth_props,
    )
        .prop_map(move |(kind, sp, cc, cp, dr, dp, ar, ap)| match kind {
            0 => Packet::PingReq,
            1 => Packet::PingResp,
            2 => Packet::ConnAck(ConnAck {
                session_present: sp && cc == 0,
                reason: ReasonCode(cc),
                properties: v5_only(v, cp).into(),
            }),
            3 => Packet::Disconnect(Disconnect {
                reason: dr,
                properties: v5_only(v, dp).into(),
            }),
            _ => Packet::Auth(Auth {
                reason: ReasonCode(ar),
                properties: ap.into(),
            }),
        })
}

fn any_packet() -> impl Strategy<Value = (ProtocolVersion, Packet)> {
    version().prop_flat_map(|v| {
        let p = prop_oneof![connect(v), publish(v), ack(v), subscriptions(v), control(v)];
        (Just(v), p)
    })
}

/// Runs a property on a thread with a large stack: the packet strategies nest deeply enough to
/// overflow the 2 MiB test thread in unoptimised builds.
fn check<S: Strategy + Send + 'static>(
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError> + Send + 'static,
) {
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || {
            let mut runner = TestRunner::new(ProptestConfig::with_cases(cases));
            if let Err(e) = runner.run(&strategy, test) {
                panic!("{e}");
            }
        })
        .expect("spawn test thread")
        .join()
        .expect("property failed");
}

#[test]
fn any_valid_packet_round_trips() {
    check(2000, any_packet(), |(v, packet)| {
        let mut buf = BytesMut::new();
        packet.encode(v, &mut buf).unwrap();
        prop_assert_eq!(buf.len(), packet.encoded_len(v));
        let decoded = decode(&mut buf, v, &DecodeLimits::default()).unwrap();
        prop_assert_eq!(decoded, Some(packet));
        prop_assert!(buf.is_empty());
        Ok(())
    });
}

/// The fan-out encoder writes from borrowed parts; it must write exactly what the full encoder
/// writes for the same PUBLISH without properties.
#[test]
fn plain_publish_encodes_as_publish_does() {
    let strategy = (
        version(),
        topic_name(),
        binary(),
        qos(),
        packet_id(),
        any::<(bool, bool)>(),
    );
    check(
        1000,
        strategy,
        |(v, topic, payload, qos, id, (dup, retain))| {
            let packet_id = if qos == QoS::AtMostOnce { 0 } else { id };
            let full = Publish {
                dup,
                qos,
                retain,
                topic: topic.clone(),
                packet_id,
                properties: Props::NONE,
                payload: payload.clone(),
            };
            let plain = PlainPublish {
                dup,
                qos,
                retain,
                topic: &topic,
                packet_id,
                payload: &payload,
            };
            let (mut want, mut got) = (BytesMut::new(), BytesMut::new());
            full.encode(v, &mut want).unwrap();
            plain.encode(v, &mut got).unwrap();
            prop_assert_eq!(&got, &want);
            prop_assert_eq!(plain.encoded_len(v), want.len());
            Ok(())
        },
    );
}

#[test]
fn arbitrary_bytes_never_panic_or_over_read() {
    let max = prop_oneof![Just(u32::MAX), 2u32..600];
    check(
        5000,
        (version(), vec(any::<u8>(), 0..512), max),
        |(v, bytes, max)| {
            let limits = DecodeLimits {
                max_packet_size: max,
                ..DecodeLimits::default()
            };
            let mut buf = BytesMut::from(&bytes[..]);
            loop {
                let before = buf.len();
                match decode(&mut buf, v, &limits) {
                    Ok(Some(_)) => prop_assert!(buf.len() < before, "a packet consumed nothing"),
                    Ok(None) => {
                        prop_assert_eq!(buf.len(), before);
                        return Ok(());
                    }
                    Err(e) => {
                        prop_assert!(e.reason.is_error());
                        return Ok(());
                    }
                }
            }
        },
    );
}

#[test]
fn valid_packets_mutated_never_panic() {
    let flips = vec((any::<prop::sample::Index>(), any::<u8>()), 1..4);
    check(3000, (any_packet(), flips), |((v, packet), flips)| {
        let mut buf = BytesMut::new();
        packet.encode(v, &mut buf).unwrap();
        for (at, byte) in flips {
            let i = at.index(buf.len());
            buf[i] ^= byte;
        }
        let len = buf.len();
        if let Ok(Some(p)) = decode(&mut buf, v, &DecodeLimits::default()) {
            // Whatever is accepted must itself encode and decode back to the same packet.
            prop_assert!(buf.len() < len);
            let mut again = BytesMut::new();
            let enc_v = if let Packet::Connect(c) = &p {
                c.protocol
            } else {
                v
            };
            p.encode(enc_v, &mut again).unwrap();
            prop_assert_eq!(
                decode(&mut again, enc_v, &DecodeLimits::default()).unwrap(),
                Some(p)
            );
        }
        Ok(())
    });
}
