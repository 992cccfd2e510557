//! Will Delay Interval (MQTT 5.0 section 3.1.3.2.2): the will waits until the delay has passed
//! or the session has ended, whichever comes first, and a reconnection to the session within
//! the delay cancels it [MQTT-3.1.3-9].
//!
//! The delay is in whole seconds, so two of these tests let about a second pass; the others
//! use a delay far longer than the test and show that something else released the will.

mod support;

use bytes::Bytes;
use roost::protocol::ProtocolVersion::V5;
use roost::protocol::{ByteStr, Connect, QoS, Will};
use std::time::{Duration, Instant};
use support::*;

/// A v5 CONNECT for `id` with a will on `will/<id>`, delayed `delay` seconds, and a session
/// that outlives the connection by `expiry` seconds.
fn with_will(id: &str, delay: u32, expiry: u32, clean: bool) -> Connect {
    let mut c = connect_packet(V5, id, clean);
    c.properties.make_mut().session_expiry_interval = Some(expiry);
    let mut will = Will {
        topic: ByteStr::try_from(format!("will/{id}")).unwrap(),
        payload: Bytes::from(format!("gone:{id}")),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
    };
    will.properties.make_mut().will_delay_interval = Some(delay);
    c.will = Some(will);
    c
}

async fn watcher(b: &TestBroker) -> Raw {
    let mut w = Raw::connect(b.addr, V5, "watcher", true).await;
    w.subscribe("will/#", QoS::AtLeastOnce).await;
    w
}

async fn expect_will(w: &mut Raw, id: &str) {
    let p = w.expect_publish().await;
    assert_eq!(&p.payload[..], format!("gone:{id}").as_bytes());
    assert_eq!(
        p.properties.will_delay_interval, None,
        "not a PUBLISH property"
    );
    w.ack(&p).await;
}

#[tokio::test]
async fn the_will_waits_for_its_delay() {
    let b = start().await;
    let mut w = watcher(&b).await;
    let (c, _) = Raw::connect_with(b.addr, with_will("late", 1, 300, true)).await;
    drop(c);
    let dropped = Instant::now();
    w.expect_nothing().await;
    expect_will(&mut w, "late").await;
    assert!(
        dropped.elapsed() >= Duration::from_millis(900),
        "published after {:?}, before its 1 s delay",
        dropped.elapsed()
    );
    b.server.shutdown().await;
}

#[tokio::test]
async fn reconnecting_within_the_delay_cancels_the_will() {
    let b = start().await;
    let mut w = watcher(&b).await;
    let (c, _) = Raw::connect_with(b.addr, with_will("back", 1, 300, true)).await;
    drop(c);
    // Back at once, resuming the session [MQTT-3.1.3-9].
    let (mut again, ack) = Raw::connect_with(b.addr, with_will("back", 60, 300, false)).await;
    assert!(ack.session_present);
    // Let the first will's delay pass.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    w.expect_nothing().await;
    again.expect_nothing().await;
    b.server.shutdown().await;
}

#[tokio::test]
async fn a_session_that_ends_first_releases_the_will() {
    let b = start().await;
    let mut w = watcher(&b).await;
    // Session Expiry 0: the session ends with the connection, long before the hour's delay.
    let (c, _) = Raw::connect_with(b.addr, with_will("brief", 3600, 0, true)).await;
    drop(c);
    expect_will(&mut w, "brief").await;
    // A new connection with Clean Start ends the old session too.
    let (c, _) = Raw::connect_with(b.addr, with_will("restart", 3600, 300, true)).await;
    drop(c);
    w.expect_nothing().await;
    let _fresh = Raw::connect(b.addr, V5, "restart", true).await;
    expect_will(&mut w, "restart").await;
    b.server.shutdown().await;
}

#[tokio::test]
async fn shutting_down_releases_waiting_wills() {
    let b = start().await;
    let mut w = watcher(&b).await;
    let (c, _) = Raw::connect_with(b.addr, with_will("pending", 3600, 300, true)).await;
    drop(c);
    w.expect_nothing().await;
    let broker = b.server.broker().clone();
    let metrics_before = roost::Metrics::get(&broker.metrics().wills_published);
    b.server.shutdown().await;
    assert_eq!(
        roost::Metrics::get(&broker.metrics().wills_published),
        metrics_before + 1
    );
}
