//! Protocol errors, byte for byte (issue 14, sections 1 and 2): one row per packet type, case
//! and version (5.0, 3.1.1 and 3.1), with the exact bytes a client sends and the exact bytes it
//! gets back.
//!
//! MQTT 5.0 section 1.2: a Malformed Packet (0x81) "cannot be parsed according to this
//! specification"; a Protocol Error (0x82) is found "after the packet has been parsed". So a
//! property a packet may not carry, or one whose value has the wrong type or length, is 0x81
//! (section 2.2.2.2); a packet type a server never accepts from a client is 0x82, decided from
//! the fixed header before any of its body is read; an acknowledgement of the wrong kind for the
//! message in flight is 0x82. 3.1.1 has no reason codes: each of these closes the connection.
//! The 5.0 clients here set Request Problem Information to 0, so a DISCONNECT is exactly
//! `E0 01 <code>`.

mod support;

use roost::protocol::ProtocolVersion::{self, V3_1, V3_1_1, V5};
use roost::protocol::{Properties, QoS};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::task::JoinHandle;

/// What the broker answers to one input.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// These bytes, then the connection closes.
    Close(&'static [u8]),
    /// These bytes, and the connection stays open.
    Reply(&'static [u8]),
}

const CLOSED: Want = Want::Close(&[]);
const MALFORMED: Want = Want::Close(&[0xE0, 0x01, 0x81]);
const PROTOCOL: Want = Want::Close(&[0xE0, 0x01, 0x82]);

/// What has happened on the connection before the input.
#[derive(Debug, Clone, Copy)]
enum Setup {
    /// Connected, nothing else.
    Connected,
    /// The broker has sent this client a PUBLISH at this QoS with packet identifier 1.
    Delivered(QoS),
}

/// One row: the input for each version it applies to, and the answer.
struct Row {
    what: &'static str,
    setup: Setup,
    v5: Option<(Vec<u8>, Want)>,
    v311: Option<(Vec<u8>, Want)>,
}

fn row(what: &'static str, v5: (Vec<u8>, Want), v311: Option<(Vec<u8>, Want)>) -> Row {
    Row {
        what,
        setup: Setup::Connected,
        v5: Some(v5),
        v311,
    }
}

/// The same bytes for both versions.
fn both(what: &'static str, bytes: &[u8], v5: Want, v311: Want) -> Row {
    row(what, (bytes.to_vec(), v5), Some((bytes.to_vec(), v311)))
}

/// A v5 PUBLISH at QoS 0 to "t" with this property section (its length and body) and payload
/// "x".
fn publish_v5(props: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 1, b't'];
    body.extend_from_slice(props);
    body.push(b'x');
    frame(0x30, &body)
}

fn rows() -> Vec<Row> {
    vec![
        // Section 1: a property identifier not valid for its packet type: 0x81.
        row(
            "PUBLISH with a Session Expiry Interval",
            (publish_v5(&[5, 0x11, 0, 0, 0, 1]), MALFORMED),
            None,
        ),
        row(
            "PUBACK with a Topic Alias",
            (vec![0x40, 7, 0, 1, 0, 3, 0x23, 0, 1], MALFORMED),
            None,
        ),
        row(
            "PUBREC with a Topic Alias",
            (vec![0x50, 7, 0, 1, 0, 3, 0x23, 0, 1], MALFORMED),
            None,
        ),
        row(
            "PUBREL with a Session Expiry Interval",
            (vec![0x62, 9, 0, 1, 0, 5, 0x11, 0, 0, 0, 1], MALFORMED),
            None,
        ),
        row(
            "PUBCOMP with a Subscription Identifier",
            (vec![0x70, 6, 0, 1, 0, 2, 0x0B, 1], MALFORMED),
            None,
        ),
        row(
            "SUBSCRIBE with a Session Expiry Interval",
            (
                frame(0x82, &[0, 1, 5, 0x11, 0, 0, 0, 1, 0, 1, b'a', 0]),
                MALFORMED,
            ),
            None,
        ),
        row(
            "UNSUBSCRIBE with a Subscription Identifier",
            (frame(0xA2, &[0, 1, 2, 0x0B, 1, 0, 1, b'a']), MALFORMED),
            None,
        ),
        row(
            "DISCONNECT with a Will Delay Interval",
            (vec![0xE0, 7, 0, 5, 0x18, 0, 0, 0, 1], MALFORMED),
            None,
        ),
        row(
            "PUBLISH with an undefined property identifier",
            (publish_v5(&[2, 0x50, 0]), MALFORMED),
            None,
        ),
        // ... a value of the wrong type or length: 0x81.
        row(
            "PUBLISH with a Message Expiry Interval of 2 bytes",
            (publish_v5(&[3, 0x02, 0, 0]), MALFORMED),
            None,
        ),
        row(
            "PUBLISH with a User Property without its value",
            (publish_v5(&[4, 0x26, 0, 1, b'k']), MALFORMED),
            None,
        ),
        row(
            "PUBLISH whose property length runs past the packet",
            (frame(0x30, &[0, 1, b't', 9, 0x02, 0]), MALFORMED),
            None,
        ),
        row(
            "PUBLISH with a Content Type that is not UTF-8",
            (publish_v5(&[4, 0x03, 0, 1, 0xFF]), MALFORMED),
            None,
        ),
        // ... but a property that parses and is repeated, or has a value the spec forbids, is a
        // Protocol Error (2.2.2.2; 3.3.2.3.4).
        row(
            "PUBLISH with a Message Expiry Interval twice",
            (
                publish_v5(&[10, 0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 1]),
                PROTOCOL,
            ),
            None,
        ),
        row(
            "PUBLISH with Topic Alias 0",
            (
                publish_v5(&[3, 0x23, 0, 0]),
                Want::Close(&[0xE0, 0x01, 0x94]),
            ),
            None,
        ),
        // A packet type a server never accepts from a client: 0x82 from the fixed header,
        // whatever follows it.
        row(
            "CONNACK",
            (vec![0x20, 3, 0, 0, 0], PROTOCOL),
            Some((vec![0x20, 2, 0, 0], CLOSED)),
        ),
        both(
            "CONNACK with a truncated body",
            &[0x20, 1, 0],
            PROTOCOL,
            CLOSED,
        ),
        both(
            "CONNACK with reserved flags set",
            &[0x2F, 0],
            PROTOCOL,
            CLOSED,
        ),
        row(
            "SUBACK",
            (vec![0x90, 4, 0, 1, 0, 0], PROTOCOL),
            Some((vec![0x90, 3, 0, 1, 0], CLOSED)),
        ),
        both("SUBACK without a body", &[0x90, 0], PROTOCOL, CLOSED),
        row(
            "UNSUBACK",
            (vec![0xB0, 4, 0, 1, 0, 0], PROTOCOL),
            Some((vec![0xB0, 2, 0, 1], CLOSED)),
        ),
        both(
            "UNSUBACK with a remaining length over 4 bytes",
            &[0xB0, 0xFF, 0xFF, 0xFF, 0xFF, 1],
            PROTOCOL,
            CLOSED,
        ),
        both("PINGRESP", &[0xD0, 0], PROTOCOL, CLOSED),
        both("PINGRESP with a body", &[0xD0, 1, 0], PROTOCOL, CLOSED),
        both("reserved type 0", &[0x00, 0], PROTOCOL, CLOSED),
        both(
            "reserved type 0 with flags and a body",
            &[0x0F, 2, 0, 0],
            PROTOCOL,
            CLOSED,
        ),
        both(
            "AUTH without an Authentication Method in CONNECT",
            &[0xF0, 0],
            PROTOCOL,
            CLOSED,
        ),
        row(
            "AUTH with a malformed body",
            (vec![0xF0, 2, 0x18, 5], PROTOCOL),
            None,
        ),
        both(
            "a second CONNECT that is itself malformed",
            &[0x10, 1, 0],
            PROTOCOL,
            CLOSED,
        ),
        // Packet Identifier 0 where one is required, and an empty topic without a Topic Alias:
        // parsed, then refused: 0x82 (docs/decisions.md, "Malformed Packet (0x81) or Protocol Error (0x82)").
        row(
            "PUBLISH QoS 1 with Packet Identifier 0",
            (frame(0x32, &[0, 1, b't', 0, 0, 0, b'x']), PROTOCOL),
            Some((frame(0x32, &[0, 1, b't', 0, 0, b'x']), CLOSED)),
        ),
        row(
            "PUBLISH QoS 2 with Packet Identifier 0",
            (frame(0x34, &[0, 1, b't', 0, 0, 0, b'x']), PROTOCOL),
            Some((frame(0x34, &[0, 1, b't', 0, 0, b'x']), CLOSED)),
        ),
        row(
            "SUBSCRIBE with Packet Identifier 0",
            (frame(0x82, &[0, 0, 0, 0, 1, b'a', 0]), PROTOCOL),
            Some((frame(0x82, &[0, 0, 0, 1, b'a', 0]), CLOSED)),
        ),
        row(
            "UNSUBSCRIBE with Packet Identifier 0",
            (frame(0xA2, &[0, 0, 0, 0, 1, b'a']), PROTOCOL),
            Some((frame(0xA2, &[0, 0, 0, 1, b'a']), CLOSED)),
        ),
        both(
            "PUBACK with Packet Identifier 0",
            &[0x40, 2, 0, 0],
            PROTOCOL,
            CLOSED,
        ),
        both(
            "PUBREC with Packet Identifier 0",
            &[0x50, 2, 0, 0],
            PROTOCOL,
            CLOSED,
        ),
        both(
            "PUBREL with Packet Identifier 0",
            &[0x62, 2, 0, 0],
            PROTOCOL,
            CLOSED,
        ),
        both(
            "PUBCOMP with Packet Identifier 0",
            &[0x70, 2, 0, 0],
            PROTOCOL,
            CLOSED,
        ),
        row(
            "PUBLISH with an empty topic and no Topic Alias",
            (frame(0x30, &[0, 0, 0, b'x']), PROTOCOL),
            Some((frame(0x30, &[0, 0, b'x']), CLOSED)),
        ),
        // Section 2: an acknowledgement of the wrong kind for the message in flight: 0x82.
        Row {
            setup: Setup::Delivered(QoS::AtLeastOnce),
            ..both(
                "QoS 1 PUBLISH answered with PUBREC",
                &[0x50, 2, 0, 1],
                PROTOCOL,
                CLOSED,
            )
        },
        Row {
            setup: Setup::Delivered(QoS::AtLeastOnce),
            ..both(
                "QoS 1 PUBLISH answered with PUBCOMP",
                &[0x70, 2, 0, 1],
                PROTOCOL,
                CLOSED,
            )
        },
        Row {
            setup: Setup::Delivered(QoS::ExactlyOnce),
            ..both(
                "QoS 2 PUBLISH answered with PUBACK",
                &[0x40, 2, 0, 1],
                PROTOCOL,
                CLOSED,
            )
        },
        Row {
            setup: Setup::Delivered(QoS::ExactlyOnce),
            ..both(
                "QoS 2 PUBLISH answered with PUBCOMP before PUBREC",
                &[0x70, 2, 0, 1],
                PROTOCOL,
                CLOSED,
            )
        },
        // ... while the right answers, and answers for identifiers not in flight, are not errors.
        Row {
            setup: Setup::Delivered(QoS::AtLeastOnce),
            ..both(
                "QoS 1 PUBLISH answered with PUBACK",
                &[0x40, 2, 0, 1],
                Want::Reply(&[]),
                Want::Reply(&[]),
            )
        },
        Row {
            setup: Setup::Delivered(QoS::ExactlyOnce),
            ..both(
                "QoS 2 PUBLISH answered with PUBREC, PUBREC again, PUBCOMP",
                &[0x50, 2, 0, 1, 0x50, 2, 0, 1, 0x70, 2, 0, 1],
                Want::Reply(&[0x62, 2, 0, 1, 0x62, 2, 0, 1]),
                Want::Reply(&[0x62, 2, 0, 1, 0x62, 2, 0, 1]),
            )
        },
        both(
            "PUBACK for an identifier not in flight",
            &[0x40, 2, 0, 9],
            Want::Reply(&[]),
            Want::Reply(&[]),
        ),
        both(
            "PUBCOMP for an identifier not in flight",
            &[0x70, 2, 0, 9],
            Want::Reply(&[]),
            Want::Reply(&[]),
        ),
        both(
            "PUBREC for an identifier not in flight",
            &[0x50, 2, 0, 9],
            Want::Reply(&[0x62, 3, 0, 9, 0x92]),
            Want::Reply(&[0x62, 2, 0, 9]),
        ),
        both(
            "PUBREL for an identifier not awaiting it",
            &[0x62, 2, 0, 9],
            Want::Reply(&[0x70, 3, 0, 9, 0x92]),
            Want::Reply(&[0x70, 2, 0, 9]),
        ),
    ]
}

/// A connected client of `version`; a 5.0 one asks for no Reason Strings.
async fn client(addr: std::net::SocketAddr, version: ProtocolVersion, id: &str) -> Raw {
    let mut connect = connect_packet(version, id, true);
    if version.is_v5() {
        let p = Properties {
            request_problem_information: Some(0),
            ..Default::default()
        };
        connect.properties = p.into();
    }
    Raw::connect_with(addr, connect).await.0
}

/// Reads until the broker closes the connection or `wait` passes; returns the bytes and
/// whether it closed (end of stream, not a reset).
async fn read_all(c: &mut Raw, wait: std::time::Duration) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let mut buf = [0u8; 256];
        match tokio::time::timeout_at(deadline, c.stream.read(&mut buf)).await {
            Ok(Ok(0)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => panic!("read failed after {got:02X?}: {e}"),
            Err(_) => return (got, false),
        }
    }
}

#[tokio::test]
async fn each_protocol_error_gets_its_exact_answer_in_every_version() {
    let b = start().await;
    let mut publisher = Raw::connect(b.addr, V5, "publisher", true).await;
    let mut failures = Vec::new();
    let mut n = 0;
    for row in rows() {
        // 3.1 frames every packet after CONNECT as 3.1.1 does, and has no reason codes either.
        for (version, case) in [(V5, &row.v5), (V3_1_1, &row.v311), (V3_1, &row.v311)] {
            let Some((input, want)) = case else { continue };
            n += 1;
            let id = format!("row-{n}");
            let mut c = client(b.addr, version, &id).await;
            if let Setup::Delivered(qos) = row.setup {
                let topic = format!("to/{id}");
                assert_eq!(c.subscribe(&topic, QoS::ExactlyOnce).await, [2]);
                publisher.publish_acked(&topic, b"m", qos, false, 1).await;
                let p = c.expect_publish().await;
                assert_eq!((p.qos, p.packet_id), (qos, 1), "{}", row.what);
            }
            c.send_bytes(input).await;
            let got = match want {
                Want::Close(bytes) => {
                    let (got, closed) = read_all(&mut c, WAIT).await;
                    (got == *bytes && closed).then_some(()).ok_or((got, closed))
                }
                Want::Reply(bytes) => {
                    // A PINGREQ behind the input: its PINGRESP ends the answer.
                    c.send_bytes(&[0xC0, 0]).await;
                    let mut want = bytes.to_vec();
                    want.extend_from_slice(&[0xD0, 0]);
                    let mut got = vec![0; want.len()];
                    let read = tokio::time::timeout(WAIT, c.stream.read_exact(&mut got)).await;
                    (matches!(read, Ok(Ok(_))) && got == want)
                        .then_some(())
                        .ok_or((got, false))
                }
            };
            if let Err((got, closed)) = got {
                failures.push(format!(
                    "{:?} {}: sent {input:02X?}, want {want:02X?}, got {got:02X?} (closed: {closed})",
                    version, row.what
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n} cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The broker is unhurt.
    publisher.expect_nothing().await;
}

/// A property not valid for CONNECT, or for a will, or of the wrong length, is a Malformed
/// Packet: CONNACK 0x81, bare (the client's Maximum Packet Size did not parse either), then the
/// close. (Mosquitto 2.0.11 closes without a CONNACK; 5.0 section 4.13.1 lets a server answer.)
#[tokio::test]
async fn a_connect_with_a_property_it_may_not_carry_gets_connack_0x81() {
    let b = start().await;
    let connect_body = |props: &[u8], will_props: Option<&[u8]>| {
        let flags = if will_props.is_some() { 0x06 } else { 0x02 };
        let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 5, flags, 0, 60];
        body.extend_from_slice(props);
        body.extend_from_slice(&[0, 1, b'c']);
        if let Some(w) = will_props {
            body.extend_from_slice(w);
            body.extend_from_slice(&[0, 1, b'w', 0, 0]);
        }
        frame(0x10, &body)
    };
    for (what, bytes) in [
        (
            "Topic Alias in CONNECT",
            connect_body(&[3, 0x23, 0, 1], None),
        ),
        (
            "Will Delay Interval in CONNECT",
            connect_body(&[5, 0x18, 0, 0, 0, 1], None),
        ),
        (
            "Session Expiry Interval in the will",
            connect_body(&[0], Some(&[5, 0x11, 0, 0, 0, 1])),
        ),
        (
            "Receive Maximum of 1 byte",
            connect_body(&[2, 0x21, 0], None),
        ),
    ] {
        let mut c = Raw::open(b.addr, V5).await;
        c.send_bytes(&bytes).await;
        let (got, closed) = read_all(&mut c, WAIT).await;
        assert!(closed, "{what}");
        assert_eq!(got, [0x20, 3, 0x00, 0x81, 0], "{what}");
    }
}

/// Writes `first`, then QoS 0 PUBLISHes one at a time until `stop`: a client that goes on
/// sending after the broker has ended its connection.
fn keep_writing(
    mut wr: OwnedWriteHalf,
    first: Vec<u8>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<std::io::Result<OwnedWriteHalf>> {
    let qos0 = frame(0x30, &[0, 1, b't', 0, b'x']);
    tokio::spawn(async move {
        wr.write_all(&first).await?;
        while !stop.load(Ordering::Acquire) {
            wr.write_all(&qos0).await?;
            tokio::task::yield_now().await;
        }
        Ok(wr)
    })
}

/// Everything the broker sends until it closes the connection, and whether the read ended with
/// the end of the stream (not an error such as a reset).
async fn read_to_end(rd: &mut OwnedReadHalf) -> (Vec<u8>, std::io::Result<()>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    let end = tokio::time::timeout(WAIT, async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => return Err(e),
            }
        }
    })
    .await
    .expect("the broker closes the connection");
    (got, end)
}

/// Section 3: when the broker ends a connection while the client is still writing, the client
/// reads the exact DISCONNECT and then the end of the stream, and none of its writes before
/// that fail: the broker shuts its side, then reads and discards until the client closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_still_writing_reads_the_disconnect_that_ends_its_connection() {
    let b = start_with(|c| {
        c.limits.receive_maximum = 2;
        c.limits.max_packet_size = 1024;
    })
    .await;
    let qos2 = |id: u16| frame(0x34, &[0, 1, b't', (id >> 8) as u8, id as u8, 0, b'x']);
    let qos0 = frame(0x30, &[0, 1, b't', 0, b'x']);
    let big = frame(0x30, &[&[0, 1, b't', 0][..], &[0; 2048]].concat()); // over the 1,024 limit
    let cases: Vec<(&str, ProtocolVersion, Vec<u8>, Vec<u8>)> = vec![
        (
            "0x93: a third QoS 2 message unreleased, over our Receive Maximum of 2",
            V5,
            [qos2(1), qos2(2), qos2(3)].concat(),
            vec![0x50, 3, 0, 1, 0x10, 0x50, 3, 0, 2, 0x10, 0xE0, 1, 0x93],
        ),
        (
            "0x95: a packet over limits.max_packet_size",
            V5,
            big.clone(),
            vec![0xE0, 1, 0x95],
        ),
        ("0x82: a PINGRESP", V5, vec![0xD0, 0], vec![0xE0, 1, 0x82]),
        // 3.1.1 has no DISCONNECT from the server: the client reads its last PUBACK and then
        // the end of the stream, not a reset.
        (
            "3.1.1: a packet over limits.max_packet_size",
            V3_1_1,
            [frame(0x32, &[0, 1, b't', 0, 7, b'x']), big].concat(),
            vec![0x40, 2, 0, 7],
        ),
        ("3.1.1: a PINGRESP", V3_1_1, vec![0xD0, 0], vec![]),
    ];
    for (what, version, trigger, want) in cases {
        let mut c = client(b.addr, version, "writer").await;
        let (mut rd, wr) = c.stream.into_split();
        let stop = Arc::new(AtomicBool::new(false));
        // The trigger with 4,000 QoS 0 PUBLISHes behind it (unread when the broker ends the
        // connection), then more, until the reader has seen the end of the stream.
        let first = [trigger, qos0.repeat(4_000)].concat();
        let writer = keep_writing(wr, first, stop.clone());
        let (got, end) = read_to_end(&mut rd).await;
        stop.store(true, Ordering::Release);
        let written = writer.await.unwrap();
        assert!(end.is_ok(), "{what}: read failed after {got:02X?}: {end:?}");
        assert_eq!(got, want, "{what}");
        assert!(
            written.is_ok(),
            "{what}: a write failed: {:?}",
            written.err()
        );
        drop(written);
        c = client(b.addr, V5, "next").await;
        c.expect_nothing().await;
    }
}

/// Section 3, at shutdown: a client still writing reads DISCONNECT 0x8B and the end of the
/// stream, and its writes do not fail while it reads them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_still_writing_reads_the_disconnect_of_a_shutdown() {
    let b = start().await;
    let c = client(b.addr, V5, "writer").await;
    let (mut rd, wr) = c.stream.into_split();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = keep_writing(wr, Vec::new(), stop.clone());
    let shutdown = tokio::spawn(b.server.shutdown());
    let (got, end) = read_to_end(&mut rd).await;
    stop.store(true, Ordering::Release);
    assert!(end.is_ok(), "read failed after {got:02X?}: {end:?}");
    assert_eq!(got, [0xE0, 1, 0x8B]);
    let wr = writer.await.unwrap().expect("no write failed");
    drop(wr); // the client closes: the broker stops lingering and the shutdown completes
    tokio::time::timeout(WAIT, shutdown)
        .await
        .expect("shutdown completes")
        .unwrap();
}

/// Section 3, bounded: a client that never stops writing cannot hold its connection open. After
/// the DISCONNECT the broker reads and discards for at most a second, then closes the socket,
/// so the client's writes start failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_stops_writing_is_closed_all_the_same() {
    let b = start().await;
    let c = client(b.addr, V5, "endless").await;
    let (mut rd, mut wr) = c.stream.into_split();
    let qos0 = frame(0x30, &[0, 1, b't', 0, b'x']);
    let writer = tokio::spawn(async move {
        wr.write_all(&[0xD0, 0]).await?; // a PINGRESP: 0x82
        loop {
            wr.write_all(&qos0.repeat(64)).await?;
            tokio::task::yield_now().await;
        }
    });
    let mut got = [0u8; 3];
    rd.read_exact(&mut got).await.expect("the DISCONNECT");
    assert_eq!(got, [0xE0, 1, 0x82]);
    let failed: std::io::Result<()> = tokio::time::timeout(WAIT, writer)
        .await
        .expect("the broker closes the socket while the client still writes")
        .unwrap();
    assert!(failed.is_err());
}
