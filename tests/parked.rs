//! Parked connections (`limits.idle_park_secs`): an idle connection gives up its task and its
//! reactor registration, and whatever concerns it brings it back: a message for it, a packet
//! from it, a takeover, its keep alive lapsing, the server shutting down.

mod support;

use roost::Metrics;
use roost::protocol::ProtocolVersion::{V3_1_1, V5};
use roost::protocol::{Connect, Packet, QoS, ReasonCode};
use std::time::Duration;
use support::*;

/// A broker that parks connections idle for a second.
async fn broker() -> TestBroker {
    start_with(|c| c.limits.idle_park_secs = 1).await
}

/// Waits until `n` connections are parked (the sweeper runs every second).
async fn parked(b: &TestBroker, n: u64) {
    let gauge = &b.server.broker().metrics().connections_parked;
    let deadline = tokio::time::Instant::now() + WAIT;
    while Metrics::get(gauge) != n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} parked, not {n}",
            Metrics::get(gauge)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_parked_subscriber_gets_its_messages_and_parks_again() {
    let b = broker().await;
    let mut subscribers = Vec::new();
    for i in 0..50 {
        let mut s = Raw::connect(b.addr, V3_1_1, &format!("sub-{i}"), true).await;
        assert_eq!(s.subscribe("fleet/#", QoS::AtLeastOnce).await, [1]);
        subscribers.push(s);
    }
    parked(&b, 50).await;

    let mut publisher = Raw::connect(b.addr, V5, "pub", true).await;
    let reason = publisher
        .publish_acked("fleet/update", b"v2", QoS::AtLeastOnce, false, 1)
        .await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    for s in &mut subscribers {
        let p = s.expect_publish().await;
        assert_eq!(payloads(std::slice::from_ref(&p)), ["v2"]);
        s.ack(&p).await;
    }
    // Idle again, all of them and the publisher: parked again.
    parked(&b, 51).await;
    // Nothing was lost or duplicated on the way.
    for s in &mut subscribers {
        s.expect_nothing().await;
    }
}

#[tokio::test]
async fn a_parked_client_that_sends_is_answered() {
    let b = broker().await;
    let mut c = Raw::connect(b.addr, V5, "pinger", true).await;
    parked(&b, 1).await;
    c.send(&Packet::PingReq).await;
    assert!(matches!(c.recv().await, Packet::PingResp));
    // A subscription made after waking works like any other.
    assert_eq!(c.subscribe("t", QoS::AtMostOnce).await, [0]);
    parked(&b, 1).await;
    let mut p = Raw::connect(b.addr, V5, "p", true).await;
    p.publish("t", b"hi", QoS::AtMostOnce, false, 0).await;
    assert_eq!(payloads(&[c.expect_publish().await]), ["hi"]);
}

#[tokio::test]
async fn a_parked_connection_taken_over_is_told_so() {
    let b = broker().await;
    let mut old = Raw::connect(b.addr, V5, "phone", false).await;
    parked(&b, 1).await;
    let _new = Raw::connect(b.addr, V5, "phone", false).await;
    old.expect_disconnect(ReasonCode::SESSION_TAKEN_OVER).await;
}

#[tokio::test]
async fn a_parked_connection_whose_keep_alive_lapses_is_closed() {
    let b = broker().await;
    let connect = Connect {
        keep_alive: 3,
        ..connect_packet(V5, "sleepy", true)
    };
    let (mut c, _) = Raw::connect_with(b.addr, connect).await;
    parked(&b, 1).await;
    c.expect_disconnect(ReasonCode::KEEP_ALIVE_TIMEOUT).await;
    parked(&b, 0).await;
}

#[tokio::test]
async fn shutdown_reaches_parked_connections() {
    let b = broker().await;
    let mut clients = Vec::new();
    for i in 0..5 {
        clients.push(Raw::connect(b.addr, V5, &format!("c{i}"), true).await);
    }
    parked(&b, 5).await;
    let shutdown = tokio::spawn(b.server.shutdown());
    for c in &mut clients {
        c.expect_disconnect(ReasonCode::SERVER_SHUTTING_DOWN).await;
    }
    tokio::time::timeout(WAIT, shutdown)
        .await
        .expect("shutdown completes with every parked connection closed")
        .expect("shutdown task");
}

#[tokio::test]
async fn a_parked_client_that_closes_its_socket_ends_with_its_will() {
    let b = broker().await;
    let mut watcher = Raw::connect(b.addr, V3_1_1, "watcher", true).await;
    assert_eq!(watcher.subscribe("wills/#", QoS::AtMostOnce).await, [0]);
    let connect = Connect {
        will: Some(roost::protocol::Will {
            topic: roost::protocol::ByteStr::from_static("wills/dev").unwrap(),
            payload: bytes::Bytes::from_static(b"gone"),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Default::default(),
        }),
        ..connect_packet(V3_1_1, "dev", true)
    };
    let (dev, _) = Raw::connect_with(b.addr, connect).await;
    parked(&b, 2).await;
    drop(dev);
    assert_eq!(payloads(&[watcher.expect_publish().await]), ["gone"]);
}

/// A client parked at its CONNACK that publishes at once is resumed and its messages delivered,
/// in order.
#[tokio::test]
async fn a_client_publishing_right_after_connack_is_resumed_in_order() {
    let b = broker().await;
    let mut sub = Raw::connect(b.addr, V3_1_1, "listener", true).await;
    assert_eq!(sub.subscribe("burst", QoS::AtLeastOnce).await, [1]);
    let mut publisher = Raw::connect(b.addr, V3_1_1, "burst", true).await;
    for i in 1..=20u16 {
        publisher
            .publish(
                "burst",
                i.to_string().as_bytes(),
                QoS::AtLeastOnce,
                false,
                i,
            )
            .await;
    }
    let mut got = Vec::new();
    for _ in 0..20 {
        let p = sub.expect_publish().await;
        sub.ack(&p).await;
        got.push(String::from_utf8_lossy(&p.payload).into_owned());
    }
    let want: Vec<String> = (1..=20).map(|i| i.to_string()).collect();
    assert_eq!(got, want);
}
