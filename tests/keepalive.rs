//! Keep alive (3.1.2.10 Keep Alive, 3.12 PINGREQ, 3.13 PINGRESP): PINGREQ is answered, a silent
//! client is closed after one and a half times its keep alive, and 0 turns the timer off.

mod support;

use roost::protocol::ProtocolVersion::{self, V3_1, V3_1_1, V5};
use roost::protocol::{Packet, QoS, ReasonCode};
use std::time::{Duration, Instant};
use support::*;

/// Connects with the given keep alive; returns the client and when its CONNACK arrived.
async fn connect_keep_alive(
    b: &TestBroker,
    v: ProtocolVersion,
    id: &str,
    keep_alive: u16,
) -> (Raw, Instant) {
    let mut connect = connect_packet(v, id, true);
    connect.keep_alive = keep_alive;
    let (c, ack) = Raw::connect_with(b.addr, connect).await;
    // 5.0 [MQTT-3.2.2-22]: no Server Keep Alive, so the client's value is the one in force.
    assert_eq!(ack.properties.server_keep_alive, None);
    (c, Instant::now())
}

#[tokio::test]
async fn pingreq_is_answered_with_pingresp() {
    let b = start().await;
    for (v, id) in [(V3_1, "p31"), (V3_1_1, "p311"), (V5, "p5")] {
        let mut c = Raw::connect(b.addr, v, id, true).await;
        for _ in 0..3 {
            c.send(&Packet::PingReq).await;
            // [MQTT-3.12.4-1]
            assert_eq!(c.recv().await, Packet::PingResp, "{v:?}");
        }
        // Several PINGREQs in one segment get one PINGRESP each.
        c.send_bytes(&[0xC0, 0x00, 0xC0, 0x00]).await;
        assert_eq!(c.recv().await, Packet::PingResp);
        assert_eq!(c.recv().await, Packet::PingResp);
        c.expect_nothing().await;
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn silent_client_is_closed_after_one_and_a_half_keep_alives() {
    let b = start().await;
    // Both versions at once: each connection has its own timer.
    tokio::join!(silent_is_closed(&b, V3_1_1), silent_is_closed(&b, V5));
    b.server.shutdown().await;
}

async fn silent_is_closed(b: &TestBroker, v: ProtocolVersion) {
    let (mut c, connected) = connect_keep_alive(b, v, &format!("silent-{v:?}"), 1).await;
    // Bounded: `closed` waits at most WAIT (5 s) per packet.
    let before = c.closed().await;
    let elapsed = connected.elapsed();
    // [MQTT-3.1.2-24 of 3.1.1, MQTT-3.1.2-22 of 5.0]: 1.5 s; not before 1 s.
    assert!(
        elapsed >= Duration::from_secs(1),
        "{v:?} closed too early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(3),
        "{v:?} closed too late: {elapsed:?}"
    );
    if v.is_v5() {
        assert!(
            matches!(before.as_slice(), [Packet::Disconnect(d)] if d.reason == ReasonCode::KEEP_ALIVE_TIMEOUT),
            "v5 gets DISCONNECT 0x8D first: {before:?}"
        );
    } else {
        assert!(before.is_empty(), "3.1.1 is simply closed: {before:?}");
    }
}

#[tokio::test]
async fn any_packet_restarts_the_keep_alive_timer() {
    let b = start().await;
    tokio::join!(busy_stays_open(&b, V3_1_1), busy_stays_open(&b, V5));
    b.server.shutdown().await;
}

async fn busy_stays_open(b: &TestBroker, v: ProtocolVersion) {
    let (mut c, connected) = connect_keep_alive(b, v, &format!("busy-{v:?}"), 1).await;
    // Traffic every 0.5 s for 2.5 s, well past 1.5 s: PINGREQ and PUBLISH both count.
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.tick().await;
    for i in 1..=5u16 {
        tick.tick().await;
        if i % 2 == 0 {
            c.send(&Packet::PingReq).await;
            assert_eq!(c.recv().await, Packet::PingResp, "{v:?} still open");
        } else {
            c.publish_acked("ka/busy", b"x", QoS::AtLeastOnce, false, i)
                .await;
        }
    }
    assert!(connected.elapsed() >= Duration::from_millis(2500));
    // Then it falls silent and is closed, about 1.5 s after its last packet.
    let last = Instant::now();
    c.closed().await;
    assert!(last.elapsed() >= Duration::from_secs(1), "{v:?}");
}

#[tokio::test]
async fn a_session_resumed_after_a_keep_alive_timeout_is_not_closed_again() {
    // The sweeper flags the session's slot when its connection lapses; the next connection to
    // the same session must start with the flag cleared, and its own keep alive must count.
    let b = start().await;
    let mut connect = connect_packet(V3_1_1, "lapsed", false);
    connect.keep_alive = 1;
    let (mut c, _) = Raw::connect_with(b.addr, connect).await;
    c.closed().await;
    let mut connect = connect_packet(V3_1_1, "lapsed", false);
    connect.keep_alive = 0;
    let (mut c, ack) = Raw::connect_with(b.addr, connect).await;
    assert!(ack.session_present, "the session outlived its connection");
    for _ in 0..3 {
        c.send(&Packet::PingReq).await;
        assert_eq!(c.recv().await, Packet::PingResp, "still open");
    }
    b.server.shutdown().await;
}

/// A packet still arriving counts as hearing from the client, as in Mosquitto (tried with
/// 2.0.11): a large PUBLISH over a slow link may take longer than the keep alive to arrive
/// whole, and must not be cut off for it (docs/decisions.md, "Keep alive limit").
#[tokio::test]
async fn a_packet_arriving_slowly_keeps_its_connection_open() {
    let b = start().await;
    let (mut c, connected) = connect_keep_alive(&b, V3_1_1, "slow-link", 1).await;
    // A QoS 0 PUBLISH to "t" with 28 bytes of payload, a byte every 100 ms: 3 s in all.
    let packet = [&[0x30, 31, 0, 1, b't'][..], &[b'x'; 28]].concat();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for byte in packet.chunks(1) {
        tick.tick().await;
        c.send_bytes(byte).await;
    }
    assert!(connected.elapsed() >= Duration::from_millis(2900));
    c.send(&Packet::PingReq).await;
    assert_eq!(c.recv().await, Packet::PingResp, "still open");
    b.server.shutdown().await;
}
