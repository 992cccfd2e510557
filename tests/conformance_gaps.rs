//! Broker statements of both specs that no area test covered: a malformed CONNECT closed without
//! CONNACK, the client id as the key of session state, a packet id reused after its exchange
//! ended, the announced Maximum QoS, and wildcards turned off for a 3.1.1 client. Each test
//! names its statement ids; `tools/conformance.py` credits them in `docs/conformance.md`.

mod support;

use roost::protocol::ProtocolVersion::{self, V3_1_1, V5};
use roost::protocol::{Packet, QoS, ReasonCode};
use support::*;

const VERSIONS: [ProtocolVersion; 2] = [V3_1_1, V5];

/// A 3.1.1 CONNECT with these connect flags and this payload (client id first), keep alive 60.
fn v311_connect_bytes(name: &[u8], flags: u8, payload: &[&[u8]]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(name.len() as u16).to_be_bytes());
    body.extend_from_slice(name);
    body.extend_from_slice(&[4, flags, 0, 60]);
    for field in payload {
        body.extend_from_slice(&(field.len() as u16).to_be_bytes());
        body.extend_from_slice(field);
    }
    assert!(body.len() < 128, "one-byte remaining length");
    let mut out = vec![0x10, body.len() as u8];
    out.extend_from_slice(&body);
    out
}

#[tokio::test]
async fn a_malformed_v311_connect_is_closed_without_connack() {
    let b = start().await;
    let cases: [(&str, Vec<u8>); 5] = [
        ("reserved flag", v311_connect_bytes(b"MQTT", 0x03, &[b"id"])),
        (
            "will QoS without will",
            v311_connect_bytes(b"MQTT", 0x0A, &[b"id"]),
        ),
        (
            "will QoS 3",
            v311_connect_bytes(b"MQTT", 0x1E, &[b"id", b"t", b"m"]),
        ),
        (
            "password without user name",
            v311_connect_bytes(b"MQTT", 0x42, &[b"id", b"pw"]),
        ),
        ("protocol name", v311_connect_bytes(b"MQTX", 0x02, &[b"id"])),
    ];
    for (what, bytes) in cases {
        let mut c = Raw::open(b.addr, V3_1_1).await;
        c.send_bytes(&bytes).await;
        // [MQTT-3.2.2-6] of 3.1.1: no return code applies, so no CONNACK, only the close.
        let before = c.closed().await;
        assert!(before.is_empty(), "{what}: {before:?}");
    }
    // The broker still serves well-formed clients.
    Raw::connect(b.addr, V3_1_1, "after", true).await;
    b.server.shutdown().await;
}

/// A CONNECT that resumes or starts a persistent session (v5: it outlives the connection).
fn persistent(v: ProtocolVersion, id: &str) -> roost::protocol::Connect {
    let mut c = connect_packet(v, id, false);
    if v == V5 {
        c.properties.make_mut().session_expiry_interval = Some(60);
    }
    c
}

#[tokio::test]
async fn each_client_id_resumes_its_own_session_state() {
    let b = start().await;
    for v in VERSIONS {
        let (one, two, three) = (
            format!("one-{v:?}"),
            format!("two-{v:?}"),
            format!("three-{v:?}"),
        );
        for id in [&one, &two] {
            let (mut c, _) = Raw::connect_with(b.addr, persistent(v, id)).await;
            c.subscribe(&format!("owner/{id}"), QoS::AtLeastOnce).await;
            c.disconnect().await;
        }
        let mut publisher = Raw::connect(b.addr, v, "owner-pub", true).await;
        for id in [&one, &two] {
            publisher
                .publish_acked(
                    &format!("owner/{id}"),
                    id.as_bytes(),
                    QoS::AtLeastOnce,
                    false,
                    1,
                )
                .await;
        }
        publisher.disconnect().await;
        // [MQTT-3.1.3-2] the client id names the state: each id gets back its own
        // subscription and queue, in whichever order they return, and a new id gets none.
        for id in [&two, &one] {
            let (mut c, ack) = Raw::connect_with(b.addr, persistent(v, id)).await;
            assert!(ack.session_present, "{v:?} {id}");
            assert_eq!(payloads(&c.drain().await), [id.as_str()], "{v:?}");
            c.disconnect().await;
        }
        let (mut c, ack) = Raw::connect_with(b.addr, persistent(v, &three)).await;
        assert!(!ack.session_present, "{v:?}");
        c.expect_nothing().await;
        c.disconnect().await;
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn a_qos1_packet_id_reused_after_its_puback_is_a_new_message() {
    let b = start().await;
    for v in VERSIONS {
        let mut sub = Raw::connect(b.addr, v, "reuse-sub", true).await;
        sub.subscribe("reuse/t", QoS::AtLeastOnce).await;
        let mut publisher = Raw::connect(b.addr, v, "reuse-pub", true).await;
        // [MQTT-4.3.2-2] of 3.1.1, [MQTT-4.3.2-5] of 5.0: after PUBACK, the same packet id is a
        // new message, DUP or not.
        for (payload, dup) in [("first", false), ("second", true), ("third", false)] {
            let mut p = publish_packet("reuse/t", payload.as_bytes(), QoS::AtLeastOnce, false, 9);
            p.dup = dup;
            publisher.send(&Packet::Publish(p)).await;
            match publisher.recv().await {
                Packet::PubAck(a) => assert_eq!(a.packet_id, 9, "{v:?}"),
                other => panic!("{v:?}: expected PUBACK 9, got {other:?}"),
            }
        }
        assert_eq!(
            payloads(&sub.drain().await),
            ["first", "second", "third"],
            "{v:?}"
        );
        publisher.disconnect().await;
        sub.disconnect().await;
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn v5_a_qos2_packet_id_refused_in_pubrec_is_free_for_a_new_message() {
    let b = start().await;
    let mut sub = Raw::connect(b.addr, V5, "refused-sub", true).await;
    sub.subscribe("refused/t", QoS::ExactlyOnce).await;
    let mut publisher = Raw::connect(b.addr, V5, "refused-pub", true).await;
    // A payload that is not UTF-8 though its Payload Format Indicator says so: PUBREC 0x99.
    let mut bad = publish_packet("refused/t", &[0xC3, 0x28], QoS::ExactlyOnce, false, 4);
    bad.properties.make_mut().payload_format_indicator = Some(1);
    publisher.send(&Packet::Publish(bad)).await;
    match publisher.recv().await {
        Packet::PubRec(a) => {
            assert_eq!(
                (a.packet_id, a.reason),
                (4, ReasonCode::PAYLOAD_FORMAT_INVALID)
            )
        }
        other => panic!("expected PUBREC 0x99, got {other:?}"),
    }
    // [MQTT-4.3.3-9] the same id is then a new message: accepted, routed, completed.
    let reason = publisher
        .publish_acked("refused/t", b"fresh", QoS::ExactlyOnce, false, 4)
        .await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    assert_eq!(payloads(&sub.drain().await), ["fresh"]);
    b.server.shutdown().await;
}

#[tokio::test]
async fn v5_connack_announces_a_maximum_qos_below_2_and_subscribe_still_accepts_any_qos() {
    for (max_qos, announced) in [(0, Some(0)), (1, Some(1)), (2, None)] {
        let b = start_with(|c| c.limits.max_qos = max_qos).await;
        let (mut c, ack) = Raw::connect_with(b.addr, connect_packet(V5, "maxqos", true)).await;
        // [MQTT-3.2.2-9] below 2 it is announced; absent means 2.
        assert_eq!(ack.properties.maximum_qos, announced, "max_qos {max_qos}");
        // [MQTT-3.2.2-10] a SUBSCRIBE asking for more is accepted, granted the maximum.
        let suback = c
            .subscribe_with(1, &[("maxqos/t", sub_opts(QoS::ExactlyOnce))])
            .await;
        assert_eq!(
            suback.reason_codes,
            [ReasonCode(max_qos)],
            "max_qos {max_qos}"
        );
        b.server.shutdown().await;
    }
}

#[tokio::test]
async fn v311_wildcard_filters_get_0x80_when_wildcards_are_turned_off() {
    let b = start_with(|c| c.limits.wildcard_subscription_available = false).await;
    let mut c = Raw::connect(b.addr, V3_1_1, "nowild", true).await;
    let filters = [
        ("w/+", sub_opts(QoS::AtLeastOnce)),
        ("w/#", sub_opts(QoS::AtLeastOnce)),
        ("w/t", sub_opts(QoS::AtLeastOnce)),
    ];
    let ack = c.subscribe_with(5, &filters).await;
    let codes: Vec<u8> = ack.reason_codes.iter().map(|r| r.0).collect();
    // [MQTT-3.8.3-2] of 3.1.1: every filter with a wildcard is refused (0x80, the only
    // failure code of 3.1.1); the plain filter of the same packet is granted.
    assert_eq!(codes, [0x80, 0x80, 0x01]);
    let mut publisher = Raw::connect(b.addr, V3_1_1, "nowild-pub", true).await;
    publisher
        .publish_acked("w/t", b"once", QoS::AtLeastOnce, false, 1)
        .await;
    // One copy, through the plain filter only.
    assert_eq!(payloads(&c.drain().await), ["once"]);
    b.server.shutdown().await;
}

#[tokio::test]
async fn a_publish_beyond_what_the_server_announced_closes_the_connection() {
    let b = start_with(|c| {
        c.limits.max_qos = 1;
        c.limits.retain_available = false;
    })
    .await;
    let mut sub = Raw::connect(b.addr, V5, "beyond-sub", true).await;
    sub.subscribe("beyond/#", QoS::AtLeastOnce).await;
    let (_, ack) = Raw::connect_with(b.addr, connect_packet(V5, "beyond", true)).await;
    assert_eq!(ack.properties.maximum_qos, Some(1));
    assert_eq!(ack.properties.retain_available, Some(0));
    // The client broke MQTT-3.2.2-11 or MQTT-3.2.2-14 of 5.0: DISCONNECT 0x9B or 0x9A; a 3.1.1
    // client, which was told nothing, is closed. Either way the message goes nowhere.
    for v in VERSIONS {
        for (qos, retain, reason) in [
            (QoS::ExactlyOnce, false, ReasonCode::QOS_NOT_SUPPORTED),
            (QoS::AtMostOnce, true, ReasonCode::RETAIN_NOT_SUPPORTED),
        ] {
            let mut c = Raw::connect(b.addr, v, "beyond", true).await;
            let id = if qos == QoS::AtMostOnce { 0 } else { 1 };
            c.publish("beyond/t", b"x", qos, retain, id).await;
            if v == V5 {
                c.expect_disconnect(reason).await;
            } else {
                let before = c.closed().await;
                assert!(before.is_empty(), "{qos:?} retain {retain}: {before:?}");
            }
        }
    }
    sub.expect_nothing().await;
    b.server.shutdown().await;
}
