//! Writes a seed corpus of valid packets for both fuzz targets, built with Roost's own encoder:
//! every packet type in every version, with and without properties, one file per packet plus one
//! stream of all of them per version.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example make_seeds -- fuzz/seeds`
//! writes `fuzz/seeds/decode/*` and `fuzz/seeds/differential/*` (the committed seeds).

use bytes::{Bytes, BytesMut};
use roost::protocol::{
    Auth, ByteStr, ConnAck, Connect, Disconnect, Packet, Properties, Props, ProtocolVersion, PubResp,
    Publish, QoS, ReasonCode, RetainHandling, SubAck, Subscribe, Subscription, SubscriptionOptions,
    UnsubAck, Unsubscribe, Will,
};
use std::path::Path;

fn s(text: &'static str) -> ByteStr {
    ByteStr::from_static(text).expect("seed strings are valid")
}

fn props(v5: bool, f: impl FnOnce(&mut Properties)) -> Props {
    let mut p = Properties::default();
    if v5 {
        f(&mut p);
    }
    p.into()
}

/// A CONNECT with will, user name and password.
fn connect(v: ProtocolVersion) -> Packet {
    let v5 = v.is_v5();
    Packet::Connect(Box::new(Connect {
        protocol: v,
        clean_start: true,
        keep_alive: 60,
        properties: props(v5, |p| {
            p.session_expiry_interval = Some(3600);
            p.receive_maximum = Some(32);
            p.user_properties.push((s("k"), s("v")));
        }),
        client_id: s("sensor-17"),
        will: Some(Will {
            topic: s("status/sensor-17"),
            payload: Bytes::from_static(b"offline"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: props(v5, |p| {
                p.will_delay_interval = Some(5);
                p.content_type = Some(s("text/plain"));
            }),
        }),
        username: Some(s("alice")),
        password: Some(Bytes::from_static(b"s3cret")),
    }))
}

/// A bare CONNECT: empty client id; in 5.0 a binary password without a user name.
fn connect_bare(v: ProtocolVersion) -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol: v,
        clean_start: true,
        keep_alive: 0,
        properties: Default::default(),
        client_id: ByteStr::default(),
        will: None,
        username: None,
        password: v.is_v5().then(|| Bytes::from_static(b"\x00\xff")),
    }))
}

fn publishes(v: ProtocolVersion) -> Vec<Packet> {
    let v5 = v.is_v5();
    let mut q0 = Publish::new(s("a/b/c"), Bytes::from(vec![0x5A; 64]));
    q0.retain = true;
    let mut q1 = Publish::new(s("sensors/room-1/temp"), Bytes::from_static(b"21.5"));
    q1.qos = QoS::AtLeastOnce;
    q1.packet_id = 1;
    q1.properties = props(v5, |p| {
        p.payload_format_indicator = Some(1);
        p.message_expiry_interval = Some(30);
        p.response_topic = Some(s("reply/here"));
        p.correlation_data = Some(Bytes::from_static(b"\x00\x01"));
        p.user_properties.push((s("trace"), s("abc")));
        p.subscription_identifiers = vec![1, 300];
    });
    let mut q2 = Publish::new(s("caf\u{e9}/\u{1F600}"), Bytes::new());
    q2.qos = QoS::ExactlyOnce;
    q2.dup = true;
    q2.packet_id = 0xFFFF;
    let mut out = vec![q0, q1, q2];
    if v5 {
        // A Topic Alias standing in for the topic.
        let mut aliased = Publish::new(ByteStr::default(), Bytes::from_static(b"x"));
        aliased.properties.make_mut().topic_alias = Some(3);
        out.push(aliased);
    }
    out.into_iter().map(Packet::Publish).collect()
}

fn acks(v: ProtocolVersion) -> Vec<Packet> {
    let v5 = v.is_v5();
    let detailed = |code: u8| PubResp {
        packet_id: 7,
        reason: ReasonCode(code),
        properties: props(true, |p| p.reason_string = Some(s("why"))),
    };
    let mut out = vec![
        Packet::PubAck(PubResp::new(1)),
        Packet::PubRec(PubResp::new(2)),
        Packet::PubRel(PubResp::new(3)),
        Packet::PubComp(PubResp::new(4)),
    ];
    if v5 {
        out.push(Packet::PubAck(detailed(0x10)));
        out.push(Packet::PubRec(detailed(0x80)));
        out.push(Packet::PubRel(detailed(0x92)));
        out.push(Packet::PubComp(PubResp {
            packet_id: 9,
            reason: ReasonCode(0x92),
            properties: Default::default(),
        }));
    }
    out
}

fn subscriptions(v: ProtocolVersion) -> Vec<Packet> {
    let v5 = v.is_v5();
    let opts = |qos, extra: bool| SubscriptionOptions {
        qos,
        no_local: extra && v5,
        retain_as_published: extra && v5,
        retain_handling: if extra && v5 {
            RetainHandling::DoNotSend
        } else {
            RetainHandling::SendAtSubscribe
        },
    };
    let subscribe = Subscribe {
        packet_id: 10,
        properties: props(v5, |p| p.subscription_identifiers = vec![42]),
        subscriptions: vec![
            Subscription {
                filter: s("sensors/+/temp"),
                options: opts(QoS::AtMostOnce, false),
            },
            Subscription {
                filter: s("alerts/#"),
                options: opts(QoS::AtLeastOnce, true),
            },
            Subscription {
                filter: s("$share/g/jobs"),
                options: opts(QoS::ExactlyOnce, false),
            },
        ],
    };
    let codes: &[u8] = if v5 {
        &[0, 1, 2, 0x8F]
    } else {
        &[0, 1, 2, 0x80]
    };
    let suback = SubAck {
        packet_id: 10,
        properties: props(v5, |p| p.user_properties.push((s("a"), s("b")))),
        reason_codes: codes.iter().map(|&c| ReasonCode(c)).collect(),
    };
    let unsubscribe = Unsubscribe {
        packet_id: 11,
        properties: props(v5, |p| p.user_properties.push((s("a"), s("b")))),
        filters: vec![s("sensors/+/temp"), s("alerts/#")],
    };
    let unsuback = UnsubAck {
        packet_id: 11,
        properties: Default::default(),
        reason_codes: if v5 {
            vec![ReasonCode(0x00), ReasonCode(0x11)]
        } else {
            Vec::new()
        },
    };
    vec![
        Packet::Subscribe(subscribe),
        Packet::SubAck(suback),
        Packet::Unsubscribe(unsubscribe),
        Packet::UnsubAck(unsuback),
    ]
}

fn session_end(v: ProtocolVersion) -> Vec<Packet> {
    let v5 = v.is_v5();
    let mut out = vec![
        Packet::ConnAck(ConnAck {
            session_present: true,
            reason: ReasonCode::SUCCESS,
            properties: props(v5, |p| {
                p.assigned_client_identifier = Some(s("auto-1"));
                p.maximum_qos = Some(1);
                p.topic_alias_maximum = Some(10);
            }),
        }),
        Packet::PingReq,
        Packet::PingResp,
        Packet::Disconnect(Disconnect::default()),
    ];
    if v5 {
        out.push(Packet::Disconnect(Disconnect {
            reason: ReasonCode::DISCONNECT_WITH_WILL,
            properties: props(true, |p| p.session_expiry_interval = Some(0)),
        }));
        out.push(Packet::Disconnect(Disconnect {
            reason: ReasonCode(0x8E),
            properties: Default::default(),
        }));
        out.push(Packet::Auth(Auth {
            reason: ReasonCode::CONTINUE_AUTHENTICATION,
            properties: props(true, |p| {
                p.authentication_method = Some(s("SCRAM-SHA-1"));
                p.authentication_data = Some(Bytes::from_static(b"\x01\x02"));
            }),
        }));
    }
    out
}

fn all(v: ProtocolVersion) -> Vec<Packet> {
    let mut out = vec![connect(v), connect_bare(v)];
    out.extend(publishes(v));
    out.extend(acks(v));
    out.extend(subscriptions(v));
    out.extend(session_end(v));
    out
}

fn encode(v: ProtocolVersion, p: &Packet) -> Vec<u8> {
    let mut out = BytesMut::new();
    p.encode(v, &mut out).expect("seed packets encode");
    out.to_vec()
}

fn write(dir: &Path, name: String, header: &[u8], body: &[u8]) {
    let mut bytes = header.to_vec();
    bytes.extend_from_slice(body);
    std::fs::write(dir.join(name), bytes).expect("write seed");
}

fn main() {
    let root = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fuzz/seeds".into());
    let decode_dir = Path::new(&root).join("decode");
    let diff_dir = Path::new(&root).join("differential");
    std::fs::create_dir_all(&decode_dir).expect("create seed dir");
    std::fs::create_dir_all(&diff_dir).expect("create seed dir");
    let versions = [
        (ProtocolVersion::V3_1, "v31", 0u8),
        (ProtocolVersion::V3_1_1, "v311", 1),
        (ProtocolVersion::V5, "v5", 2),
    ];
    for (v, tag, selector) in versions {
        let mut stream = Vec::new();
        for (i, p) in all(v).iter().enumerate() {
            let bytes = encode(v, p);
            let name = format!("{tag}-{i:02}-{}", p.name().to_lowercase());
            // decode: version selector, protocol limit, whole-buffer decoding.
            write(&decode_dir, name.clone(), &[selector, 0xFF], &bytes);
            if v != ProtocolVersion::V3_1 {
                write(&diff_dir, name, &[u8::from(v.is_v5())], &bytes);
            }
            stream.extend_from_slice(&bytes);
        }
        // The whole session as one stream, fed byte by byte under a small limit (bits 2, 3).
        write(
            &decode_dir,
            format!("{tag}-stream"),
            &[selector | 0x0C, 0xFF],
            &stream,
        );
        if v != ProtocolVersion::V3_1 {
            write(
                &diff_dir,
                format!("{tag}-stream"),
                &[u8::from(v.is_v5())],
                &stream,
            );
        }
    }
}
