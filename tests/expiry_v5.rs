//! Message Expiry Interval (MQTT 5.0 section 3.3.2.3.3): a message that outlives its interval
//! while queued or retained is not delivered, and the interval a subscriber receives is what
//! is left of it.
//!
//! The interval is counted in whole seconds, so these tests must let a second pass: each one
//! sleeps just over a second once, for the expiry itself, never to wait for the broker.

mod support;

use roost::protocol::ProtocolVersion::{V3_1_1, V5};
use roost::protocol::{Packet, Publish, QoS};
use std::time::Duration;
use support::*;

/// Just over the shortest interval a client can ask for (1 s).
const PAST_ONE_SECOND: Duration = Duration::from_millis(1100);

fn expiring(topic: &str, payload: &[u8], secs: Option<u32>, retain: bool) -> Publish {
    let mut p = publish_packet(topic, payload, QoS::AtLeastOnce, retain, 1);
    if let Some(secs) = secs {
        p.properties.make_mut().message_expiry_interval = Some(secs);
    }
    p
}

async fn publish(publisher: &mut Raw, p: Publish) {
    publisher.send(&Packet::Publish(p)).await;
    match publisher.recv().await {
        Packet::PubAck(a) if !a.reason.is_error() => {}
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

/// A v5 session that outlives its connection by five minutes.
async fn persistent(b: &TestBroker, id: &str) -> Raw {
    let mut c = connect_packet(V5, id, false);
    c.properties.make_mut().session_expiry_interval = Some(300);
    Raw::connect_with(b.addr, c).await.0
}

#[tokio::test]
async fn a_queued_message_that_expires_is_not_delivered_and_the_rest_carry_what_is_left() {
    let b = start().await;
    let mut sub = persistent(&b, "sub").await;
    sub.subscribe("e/#", QoS::AtLeastOnce).await;
    sub.disconnect().await;

    let mut publisher = Raw::connect(b.addr, V5, "publisher", true).await;
    publish(
        &mut publisher,
        expiring("e/short", b"short", Some(1), false),
    )
    .await;
    publish(
        &mut publisher,
        expiring("e/long", b"long", Some(100), false),
    )
    .await;
    publish(&mut publisher, expiring("e/none", b"none", None, false)).await;
    tokio::time::sleep(PAST_ONE_SECOND).await;

    let mut sub = persistent(&b, "sub").await;
    let got = sub.drain().await;
    assert_eq!(payloads(&got), ["long", "none"], "[MQTT-3.3.2-5]");
    let left = got[0].properties.message_expiry_interval.unwrap();
    // 100 s minus the ~1.1 s it waited, rounded up [MQTT-3.3.2-6].
    assert!((98..=99).contains(&left), "{left}");
    assert_eq!(got[1].properties.message_expiry_interval, None);
    b.server.shutdown().await;
}

#[tokio::test]
async fn an_expired_retained_message_is_not_sent_and_a_live_one_carries_what_is_left() {
    let b = start().await;
    let mut publisher = Raw::connect(b.addr, V5, "publisher", true).await;
    publish(&mut publisher, expiring("r/short", b"short", Some(1), true)).await;
    publish(&mut publisher, expiring("r/long", b"long", Some(60), true)).await;
    tokio::time::sleep(PAST_ONE_SECOND).await;

    let mut sub = Raw::connect(b.addr, V5, "sub", true).await;
    sub.subscribe("r/#", QoS::AtLeastOnce).await;
    let got = sub.drain().await;
    assert_eq!(payloads(&got), ["long"]);
    let left = got[0].properties.message_expiry_interval.unwrap();
    assert!((58..=59).contains(&left), "{left}");
    assert_eq!(
        b.server.broker().retained_count(),
        1,
        "the expired one is gone"
    );

    // A 3.1.1 subscriber gets the live one too, without properties.
    let mut old = Raw::connect(b.addr, V3_1_1, "old", true).await;
    old.subscribe("r/#", QoS::AtLeastOnce).await;
    assert_eq!(payloads(&old.drain().await), ["long"]);
    b.server.shutdown().await;
}

#[tokio::test]
async fn an_online_subscriber_gets_the_interval_as_sent() {
    let b = start().await;
    let mut sub = Raw::connect(b.addr, V5, "sub", true).await;
    sub.subscribe("e/#", QoS::AtLeastOnce).await;
    let mut publisher = Raw::connect(b.addr, V5, "publisher", true).await;
    publish(&mut publisher, expiring("e/x", b"x", Some(30), false)).await;
    let got = sub.drain().await;
    assert_eq!(got[0].properties.message_expiry_interval, Some(30));
    b.server.shutdown().await;
}

#[tokio::test]
async fn a_qos2_exchange_under_way_is_finished_even_after_the_expiry() {
    let b = start().await;
    let mut sub = persistent(&b, "sub").await;
    sub.subscribe("q2/#", QoS::ExactlyOnce).await;
    let mut publisher = Raw::connect(b.addr, V5, "publisher", true).await;
    let mut p = publish_packet("q2/x", b"exactly", QoS::ExactlyOnce, false, 7);
    p.properties.make_mut().message_expiry_interval = Some(1);
    publisher.send(&Packet::Publish(p)).await;
    assert!(matches!(publisher.recv().await, Packet::PubRec(a) if a.packet_id == 7));
    // The subscriber gets it but does not answer; its connection drops.
    let first = sub.expect_publish().await;
    drop(sub);
    tokio::time::sleep(PAST_ONE_SECOND).await;
    // [MQTT-4.3.3-13] the publisher's late PUBREL still completes its exchange.
    publisher
        .send(&Packet::PubRel(roost::protocol::PubResp::new(7)))
        .await;
    assert!(matches!(publisher.recv().await, Packet::PubComp(a) if a.packet_id == 7));
    // [MQTT-4.3.3-7] the PUBLISH already sent is not expired: it is sent again, with DUP.
    let mut sub = persistent(&b, "sub").await;
    let again = sub.expect_publish().await;
    assert!(again.dup);
    assert_eq!(again.packet_id, first.packet_id);
    assert_eq!(&again.payload[..], b"exactly");
    sub.ack(&again).await;
    b.server.shutdown().await;
}
