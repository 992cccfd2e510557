//! Malformed packets and protocol errors (2.1.3 / 2.2.2 fixed header flags, 1.5.4 UTF-8,
//! 3.3.2 topic names, 4.8 / 4.13 handling errors): each one closes only the connection that sent
//! it (5.0: after a DISCONNECT with the codec's reason code), and nothing a client sends makes
//! the broker panic.

mod support;

use bytes::{Bytes, BytesMut};
use roost::protocol::ProtocolVersion::{self, V3_1_1, V5};
use roost::protocol::{ByteStr, Packet, QoS, ReasonCode};
use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};
use support::*;
use tokio::io::AsyncWriteExt;

/// The largest packet the brokers in this file accept.
const MAX_PACKET: u32 = 1024;

fn encode(v: ProtocolVersion, p: &Packet) -> Vec<u8> {
    let mut out = BytesMut::new();
    p.encode(v, &mut out).expect("encode");
    out.to_vec()
}

fn publish(
    v: ProtocolVersion,
    topic: &str,
    payload: &[u8],
    f: impl FnOnce(&mut Packet),
) -> Vec<u8> {
    let mut p = Packet::Publish(roost::protocol::Publish::new(
        ByteStr::try_from(topic).unwrap(),
        Bytes::copy_from_slice(payload),
    ));
    f(&mut p);
    encode(v, &p)
}

/// One bad input: what it is, the bytes for 3.1.1 (if the rule exists there) and for 5.0, and
/// the reason code of the DISCONNECT a 5.0 client gets before the close.
struct Case {
    what: &'static str,
    v311: Option<Vec<u8>>,
    v5: Vec<u8>,
    reason: ReasonCode,
}

fn cases() -> Vec<Case> {
    let both = |what, bytes: Vec<u8>, reason| Case {
        what,
        v311: Some(bytes.clone()),
        v5: bytes,
        reason,
    };
    let with_props = |f: fn(&mut roost::protocol::Properties)| {
        publish(V5, "m/a", b"x", |p| {
            if let Packet::Publish(p) = p {
                f(p.properties.make_mut());
            }
        })
    };
    vec![
        // [MQTT-2.2.2-2 of 3.1.1, MQTT-2.1.3-1 of 5.0]
        both(
            "PINGREQ flags 0x1",
            vec![0xC1, 0x00],
            ReasonCode::MALFORMED_PACKET,
        ),
        both(
            "SUBSCRIBE flags 0x0",
            vec![0x80, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00],
            ReasonCode::MALFORMED_PACKET,
        ),
        // [MQTT-3.3.1-4]
        both(
            "PUBLISH QoS 3",
            vec![0x36, 0x05, 0x00, 0x01, b'a', 0x00, 0x01],
            ReasonCode::MALFORMED_PACKET,
        ),
        // 2.2.3 of 3.1.1, 1.5.5 of 5.0
        both(
            "remaining length over 4 bytes",
            vec![0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
            ReasonCode::MALFORMED_PACKET,
        ),
        // [MQTT-3.3.2-2]
        Case {
            what: "wildcard in a PUBLISH topic",
            v311: Some(publish(V3_1_1, "m/+", b"x", |_| {})),
            v5: publish(V5, "m/#", b"x", |_| {}),
            reason: ReasonCode::PROTOCOL_ERROR,
        },
        // [MQTT-1.5.3-2 of 3.1.1, MQTT-1.5.4-2 of 5.0]
        Case {
            what: "U+0000 in a topic",
            v311: Some(vec![0x30, 0x05, 0x00, 0x03, b'm', 0x00, b'a']),
            v5: vec![0x30, 0x06, 0x00, 0x03, b'm', 0x00, b'a', 0x00],
            reason: ReasonCode::MALFORMED_PACKET,
        },
        // 5.0 3.1.2.11.4 / [MQTT-3.2.2-15]: larger than the Maximum Packet Size announced.
        Case {
            what: "packet over limits.max_packet_size",
            v311: Some(publish(
                V3_1_1,
                "m/big",
                &[7; 2 * MAX_PACKET as usize],
                |_| {},
            )),
            v5: publish(V5, "m/big", &[7; 2 * MAX_PACKET as usize], |_| {}),
            reason: ReasonCode::PACKET_TOO_LARGE,
        },
        // 5.0 [MQTT-3.3.2-9]: above the Topic Alias Maximum announced (10 by default).
        Case {
            what: "Topic Alias above the maximum",
            v311: None,
            v5: with_props(|p| p.topic_alias = Some(11)),
            reason: ReasonCode::TOPIC_ALIAS_INVALID,
        },
        // 5.0 [MQTT-3.3.2-8]: 0 is not a Topic Alias.
        Case {
            what: "Topic Alias 0",
            v311: None,
            v5: with_props(|p| p.topic_alias = Some(0)),
            reason: ReasonCode::TOPIC_ALIAS_INVALID,
        },
        // 5.0 section 3.3.2.3.4: an empty topic needs an alias set earlier on the connection.
        Case {
            what: "empty topic with an alias never set",
            v311: None,
            v5: vec![0x30, 0x07, 0x00, 0x00, 0x03, 0x23, 0x00, 0x05, b'a'],
            reason: ReasonCode::PROTOCOL_ERROR,
        },
        // 5.0 [MQTT-3.3.4-6]
        Case {
            what: "Subscription Identifier in a client PUBLISH",
            v311: None,
            v5: with_props(|p| p.subscription_identifiers = vec![5]),
            reason: ReasonCode::PROTOCOL_ERROR,
        },
        // A packet only a server sends [MQTT-4.8.0-1 of 3.1.1, MQTT-4.13.1-1 of 5.0].
        Case {
            what: "CONNACK from a client",
            v311: Some(vec![0x20, 0x02, 0x00, 0x00]),
            v5: vec![0x20, 0x03, 0x00, 0x00, 0x00],
            reason: ReasonCode::PROTOCOL_ERROR,
        },
    ]
}

/// A publisher and a subscriber that must keep working whatever other clients do.
struct Healthy {
    publisher: Raw,
    subscriber: Raw,
    sent: u16,
}

impl Healthy {
    async fn connect(b: &TestBroker) -> Self {
        let mut subscriber = Raw::connect(b.addr, V3_1_1, "healthy-sub", true).await;
        subscriber.subscribe("healthy/#", QoS::AtLeastOnce).await;
        let publisher = Raw::connect(b.addr, V5, "healthy-pub", true).await;
        Self {
            publisher,
            subscriber,
            sent: 0,
        }
    }

    /// One QoS 1 message from the publisher to the subscriber, in full.
    async fn exchange(&mut self) {
        self.sent += 1;
        let payload = self.sent.to_string();
        let reason = self
            .publisher
            .publish_acked(
                "healthy/x",
                payload.as_bytes(),
                QoS::AtLeastOnce,
                false,
                self.sent,
            )
            .await;
        assert_eq!(reason, ReasonCode::SUCCESS);
        let p = self.subscriber.expect_publish().await;
        assert_eq!(
            &p.payload[..],
            payload.as_bytes(),
            "healthy messages in order"
        );
        self.subscriber.ack(&p).await;
    }
}

#[tokio::test]
async fn each_malformed_input_closes_only_its_connection() {
    let b = start_with(|c| c.limits.max_packet_size = MAX_PACKET).await;
    let mut healthy = Healthy::connect(&b).await;
    for (i, case) in cases().into_iter().enumerate() {
        for (v, bytes) in [(V3_1_1, case.v311), (V5, Some(case.v5))] {
            let Some(bytes) = bytes else { continue };
            let (mut bad, ack) =
                Raw::connect_with(b.addr, connect_packet(v, &format!("bad-{i}-{v:?}"), true)).await;
            if v.is_v5() {
                assert_eq!(ack.properties.maximum_packet_size, Some(MAX_PACKET));
                assert_eq!(ack.properties.topic_alias_maximum, Some(10));
            }
            healthy.exchange().await;
            bad.send_bytes(&bytes).await;
            healthy.exchange().await; // while the bad connection is being closed
            let before = bad.closed().await;
            if v.is_v5() {
                assert!(
                    matches!(before.as_slice(), [Packet::Disconnect(d)] if d.reason == case.reason),
                    "{}: v5 DISCONNECT {} then close, got {before:?}",
                    case.what,
                    case.reason
                );
            } else {
                assert!(
                    before.is_empty(),
                    "{}: 3.1.1 simply closed, got {before:?}",
                    case.what
                );
            }
            healthy.exchange().await;
        }
    }
    b.server.shutdown().await;
}

/// Panics seen on the fuzz test's thread. `#[tokio::test]` runs the broker's tasks on the
/// test's own thread, and a panicking task would otherwise only look like a closed socket.
static FUZZ_PANICS: AtomicUsize = AtomicUsize::new(0);
const FUZZ_TEST: &str = "random_garbage_after_connect_never_breaks_the_broker";

fn count_fuzz_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() == Some(FUZZ_TEST) {
                FUZZ_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
    });
}

/// xorshift64*: a small seeded generator, so a failing case can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

/// Valid packets a client may send, for the generator to start from and damage.
fn templates(v: ProtocolVersion) -> Vec<Vec<u8>> {
    use roost::protocol::{PubResp, Unsubscribe};
    let mut out = vec![
        publish(v, "fz/a", b"hello", |_| {}),
        publish(v, "fz/b", b"q1", |p| {
            if let Packet::Publish(p) = p {
                (p.qos, p.packet_id) = (QoS::AtLeastOnce, 3);
            }
        }),
        publish(v, "fz/c", b"q2", |p| {
            if let Packet::Publish(p) = p {
                (p.qos, p.packet_id, p.retain) = (QoS::ExactlyOnce, 4, true);
            }
        }),
        encode(
            v,
            &Packet::Subscribe(subscribe_packet(5, &[("fz/#", sub_opts(QoS::ExactlyOnce))])),
        ),
        encode(
            v,
            &Packet::Unsubscribe(Unsubscribe {
                packet_id: 6,
                properties: Default::default(),
                filters: vec![ByteStr::try_from("fz/#").unwrap()],
            }),
        ),
        encode(v, &Packet::PubAck(PubResp::new(7))),
        encode(v, &Packet::PubRel(PubResp::new(4))),
        encode(v, &Packet::PingReq),
    ];
    if v.is_v5() {
        out.push(publish(v, "fz/p", b"{}", |p| {
            if let Packet::Publish(p) = p {
                p.properties.make_mut().payload_format_indicator = Some(1);
                p.properties.make_mut().content_type = Some(ByteStr::try_from("json").unwrap());
                p.properties.make_mut().message_expiry_interval = Some(30);
            }
        }));
    }
    out
}

/// Random bytes, a valid packet with a few bytes damaged or cut short, a valid packet followed
/// by random bytes, or a run of valid packets (the control group: the connection goes on).
fn garbage(rng: &mut Rng, v: ProtocolVersion) -> Vec<u8> {
    let templates = templates(v);
    let random = |rng: &mut Rng, n: usize| (0..n).map(|_| rng.byte()).collect::<Vec<u8>>();
    match rng.below(4) {
        0 => {
            let n = 1 + rng.below(48);
            random(rng, n)
        }
        1 => {
            let mut bytes = templates[rng.below(templates.len())].clone();
            for _ in 0..1 + rng.below(3) {
                let i = rng.below(bytes.len());
                bytes[i] = rng.byte();
            }
            if rng.below(4) == 0 {
                bytes.truncate(1 + rng.below(bytes.len()));
            }
            bytes
        }
        2 => {
            let mut bytes = templates[rng.below(templates.len())].clone();
            let n = 1 + rng.below(16);
            bytes.extend(random(rng, n));
            bytes
        }
        _ => (0..1 + rng.below(4))
            .flat_map(|_| templates[rng.below(templates.len())].clone())
            .collect(),
    }
}

#[tokio::test]
async fn random_garbage_after_connect_never_breaks_the_broker() {
    count_fuzz_panics();
    let b = start_with(|c| c.limits.max_packet_size = MAX_PACKET).await;
    let mut healthy = Healthy::connect(&b).await;
    let seed = 0x5EED_B10C_F00D_u64;
    let mut rng = Rng(seed);
    let (mut answered, mut refused) = (0, 0);
    for case in 0..200 {
        let v = if case % 2 == 0 { V3_1_1 } else { V5 };
        let mut bytes = garbage(&mut rng, v);
        let what = format!("seed {seed:#x} case {case} {v:?}: {bytes:02x?}");
        // A PINGREQ after the garbage shows whether the connection still works; one write, so
        // the broker reads everything before it decides.
        bytes.extend([0xC0, 0x00]);
        let mut c = Raw::connect(b.addr, v, &format!("fuzz-{case}"), true).await;
        c.send_bytes(&bytes).await;
        // Half-close: a connection waiting for the rest of a packet ends too.
        let _ = c.stream.shutdown().await;
        // Every packet the broker sends decodes (Raw panics otherwise), and it always closes.
        let got = c.closed().await;
        if got.contains(&Packet::PingResp) {
            answered += 1;
        } else {
            refused += 1;
        }
        if let Some(i) = got.iter().position(|p| matches!(p, Packet::Disconnect(_))) {
            let Packet::Disconnect(d) = &got[i] else {
                unreachable!()
            };
            assert!(v.is_v5(), "{what}: a DISCONNECT sent to a 3.1.1 client");
            assert_eq!(
                i,
                got.len() - 1,
                "{what}: packets after DISCONNECT: {got:?}"
            );
            assert!(d.reason.is_error(), "{what}: DISCONNECT {}", d.reason);
        }
        if case % 20 == 0 {
            healthy.exchange().await;
        }
    }
    assert_eq!(FUZZ_PANICS.load(Ordering::SeqCst), 0, "the broker panicked");
    // Both outcomes were common: the cases reached past the first byte, and into the broker.
    assert!(
        answered > 40 && refused > 40,
        "answered {answered}, refused {refused}"
    );
    healthy.exchange().await;
    let mut fresh = Raw::connect(b.addr, V5, "after-fuzz", true).await;
    fresh.send(&Packet::PingReq).await;
    assert_eq!(fresh.recv().await, Packet::PingResp);
    b.server.shutdown().await;
}
