//! Codec micro-benchmarks: Roost's strict codec against rumqttc's `mqttbytes` codecs, on the
//! same bytes in the same run. Each criterion group is one packet shape and one direction, with
//! a `roost` and a `rumqttc` function, so the report shows the two side by side.
//!
//! Decoding starts from a `BytesMut` holding exactly one frame, cloned per iteration outside the
//! timed part (`iter_batched`), so both codecs pay for splitting the frame out of the buffer and
//! neither pays for the copy. Encoding writes into a reused buffer with enough capacity, cleared
//! per iteration; rumqttc is called through each packet's own `write` (its `Packet::write` adds a
//! size check that Roost's `Publish::encode` does not make).
//!
//! Every input is encoded by Roost, and setup asserts that rumqttc decodes it too, so both
//! sides always work on the same, valid bytes. Results: `docs/benchmarks.md`.

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use roost::protocol::{
    ByteStr, Connect, DecodeLimits, Packet, Properties, ProtocolVersion, Publish, QoS, Subscribe,
    Subscription, SubscriptionOptions, Will, decode,
};
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::v5;
use std::hint::black_box;

const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;
/// rumqttc's v4 size cap; far above every frame here.
const RUMQTTC_MAX: usize = 1 << 20;

fn s(text: &'static str) -> ByteStr {
    ByteStr::from_static(text).expect("valid literal")
}

fn publish(qos: QoS, payload_len: usize, properties: Properties) -> Packet {
    let mut p = Publish::new(
        s("sensors/room-1/temperature"),
        Bytes::from(vec![0xA5; payload_len]),
    );
    if qos != QoS::AtMostOnce {
        p.qos = qos;
        p.packet_id = 42;
    }
    p.properties = properties.into();
    Packet::Publish(p)
}

/// Message Expiry Interval and one User Property: the usual shape of a v5 application message.
fn v5_properties() -> Properties {
    Properties {
        message_expiry_interval: Some(3600),
        user_properties: vec![(s("trace-id"), s("4bf92f3577b34da6"))],
        ..Properties::default()
    }
}

fn connect() -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol: V4,
        clean_start: true,
        keep_alive: 60,
        properties: Default::default(),
        client_id: s("sensor-17-a1b2c3"),
        will: Some(Will {
            topic: s("status/sensor-17-a1b2c3"),
            payload: Bytes::from_static(b"offline"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Default::default(),
        }),
        username: Some(s("alice")),
        password: Some(Bytes::from_static(b"correct horse battery staple")),
    }))
}

fn subscribe() -> Packet {
    let sub = |filter, qos| Subscription {
        filter: s(filter),
        options: SubscriptionOptions {
            qos,
            ..SubscriptionOptions::default()
        },
    };
    Packet::Subscribe(Subscribe {
        packet_id: 7,
        properties: Default::default(),
        subscriptions: vec![
            sub("sensors/+/temperature", QoS::AtMostOnce),
            sub("alerts/#", QoS::AtLeastOnce),
            sub("devices/sensor-17/cmd", QoS::ExactlyOnce),
        ],
    })
}

fn encode(v: ProtocolVersion, p: &Packet) -> BytesMut {
    let mut out = BytesMut::new();
    p.encode(v, &mut out).expect("benchmark packets encode");
    out
}

fn rumqttc_v4(frame: &BytesMut) -> v4::Packet {
    v4::Packet::read(&mut frame.clone(), RUMQTTC_MAX).expect("rumqttc v4 decodes the input")
}

fn rumqttc_v5(frame: &BytesMut) -> v5::Packet {
    v5::Packet::read(&mut frame.clone(), None).expect("rumqttc v5 decodes the input")
}

/// One decode group: both codecs split and parse the same frame, and the packet and the emptied
/// buffer are dropped inside the timed routine. Returning them instead would make criterion
/// store every output in a fresh vector, and the page faults of writing Roost's larger packet
/// value there (472 bytes against rumqttc's 144) would dominate the measurement.
fn bench_decode<T>(
    c: &mut Criterion,
    name: &str,
    v: ProtocolVersion,
    frame: &BytesMut,
    theirs: impl Fn(&mut BytesMut) -> T,
) {
    let limits = DecodeLimits::default();
    let mut g = c.benchmark_group(format!("decode/{name}"));
    g.bench_function("roost", |b| {
        b.iter_batched(
            || frame.clone(),
            |mut buf| {
                black_box(decode(&mut buf, v, &limits).expect("valid frame"));
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("rumqttc", |b| {
        b.iter_batched(
            || frame.clone(),
            |mut buf| {
                black_box(theirs(&mut buf));
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// One encode group: both codecs write the same packet into a reused buffer.
fn bench_encode(
    c: &mut Criterion,
    name: &str,
    ours: impl Fn(&mut BytesMut),
    theirs: impl Fn(&mut BytesMut),
) {
    let mut g = c.benchmark_group(format!("encode/{name}"));
    let mut out = BytesMut::with_capacity(4096);
    g.bench_function("roost", |b| {
        b.iter(|| {
            out.clear();
            ours(&mut out);
            black_box(out.len())
        })
    });
    g.bench_function("rumqttc", |b| {
        b.iter(|| {
            out.clear();
            theirs(&mut out);
            black_box(out.len())
        })
    });
    g.finish();
}

fn v4_cases(c: &mut Criterion) {
    let cases = [
        (
            "publish_qos0_64B",
            publish(QoS::AtMostOnce, 64, Properties::default()),
        ),
        (
            "publish_qos1_64B",
            publish(QoS::AtLeastOnce, 64, Properties::default()),
        ),
        (
            "publish_qos0_1KiB",
            publish(QoS::AtMostOnce, 1024, Properties::default()),
        ),
        (
            "publish_qos1_1KiB",
            publish(QoS::AtLeastOnce, 1024, Properties::default()),
        ),
        ("connect_will_login", connect()),
        ("subscribe_3_filters", subscribe()),
    ];
    for (name, packet) in cases {
        let frame = encode(V4, &packet);
        let theirs = rumqttc_v4(&frame);
        bench_decode(c, name, V4, &frame, |buf| {
            v4::Packet::read(buf, RUMQTTC_MAX).expect("valid frame")
        });
        let ours = |out: &mut BytesMut| match &packet {
            Packet::Publish(p) => p.encode(V4, out).expect("encodes"),
            p => p.encode(V4, out).expect("encodes"),
        };
        let theirs = |out: &mut BytesMut| {
            match &theirs {
                v4::Packet::Publish(p) => p.write(out),
                v4::Packet::Connect(p) => p.write(out),
                v4::Packet::Subscribe(p) => p.write(out),
                other => unreachable!("no benchmark for {other:?}"),
            }
            .expect("encodes");
        };
        assert_eq!(
            encoded(&ours),
            encoded(&theirs),
            "{name}: same bytes on the wire"
        );
        bench_encode(c, name, ours, theirs);
    }
}

fn v5_cases(c: &mut Criterion) {
    let cases = [
        (
            "v5_publish_qos1_props_64B",
            publish(QoS::AtLeastOnce, 64, v5_properties()),
        ),
        (
            "v5_publish_qos1_props_1KiB",
            publish(QoS::AtLeastOnce, 1024, v5_properties()),
        ),
    ];
    for (name, packet) in cases {
        let frame = encode(V5, &packet);
        let v5::Packet::Publish(theirs) = rumqttc_v5(&frame) else {
            unreachable!("a PUBLISH decodes as a PUBLISH");
        };
        bench_decode(c, name, V5, &frame, |buf| {
            v5::Packet::read(buf, None).expect("valid frame")
        });
        let Packet::Publish(ours) = &packet else {
            unreachable!("only PUBLISH here");
        };
        let ours = |out: &mut BytesMut| ours.encode(V5, out).expect("encodes");
        let theirs = |out: &mut BytesMut| {
            theirs.write(out).expect("encodes");
        };
        assert_eq!(
            encoded(&ours),
            encoded(&theirs),
            "{name}: same bytes on the wire"
        );
        bench_encode(c, name, ours, theirs);
    }
}

fn encoded(f: &impl Fn(&mut BytesMut)) -> BytesMut {
    let mut out = BytesMut::new();
    f(&mut out);
    out
}

criterion_group!(benches, v4_cases, v5_cases);
criterion_main!(benches);
