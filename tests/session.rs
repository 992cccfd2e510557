//! Sessions (3.1.2.4 Clean Session / Clean Start, 5.0 3.1.2.11.2 Session Expiry Interval, 4.1
//! Session State, 4.4 Message delivery retry): what a session keeps across connections.

mod support;

use roost::Metrics;
use roost::protocol::ProtocolVersion::{self, V3_1_1, V5};
use roost::protocol::{Connect, Packet, PubResp, QoS, ReasonCode};
use std::time::{Duration, Instant};
use support::*;

const VERSIONS: [ProtocolVersion; 2] = [V3_1_1, V5];

/// CONNECT for a session that outlives the connection: 3.1.1 clean session 0; 5.0 clean start
/// 0 with a Session Expiry Interval of a minute.
fn persistent(v: ProtocolVersion, id: &str) -> Connect {
    let mut c = connect_packet(v, id, false);
    if v.is_v5() {
        c.properties.make_mut().session_expiry_interval = Some(60);
    }
    c
}

/// Connects with `connect` and asserts the CONNACK's Session Present flag.
async fn resume(b: &TestBroker, connect: Connect, present: bool) -> Raw {
    let v = connect.protocol;
    let (c, ack) = Raw::connect_with(b.addr, connect).await;
    assert_eq!(ack.session_present, present, "{v:?} session present");
    c
}

/// A v5 publisher; its PUBACK says whether anyone is subscribed.
async fn publisher(b: &TestBroker, id: &str) -> Raw {
    Raw::connect(b.addr, V5, id, true).await
}

#[tokio::test]
async fn persistent_session_keeps_subscriptions_and_queues_qos1_and_qos2() {
    let b = start().await;
    let mut p = publisher(&b, "keep-pub").await;
    for v in VERSIONS {
        let id = format!("keep-{v:?}");
        // [MQTT-3.1.2-4] of 3.1.1 / [MQTT-3.1.2-6] of 5.0: no session yet, one is created.
        let mut c = resume(&b, persistent(v, &id), false).await;
        assert_eq!(c.subscribe("keep/#", QoS::ExactlyOnce).await, [2]);
        c.disconnect().await;
        assert!(b.server.broker().has_session(&id), "{v:?}");
        for (n, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
            .into_iter()
            .enumerate()
        {
            let payload = format!("q{n}");
            let reason = p.publish_acked("keep/t", payload.as_bytes(), qos, false, n as u16 + 1);
            assert_eq!(
                reason.await,
                ReasonCode::SUCCESS,
                "the offline session still matches"
            );
        }
        // 3.1.1 [MQTT-3.1.2-5]; 5.0 [MQTT-3.1.2-23] [MQTT-4.5.0-1]: QoS 1 and 2 were stored.
        let mut c = resume(&b, persistent(v, &id), true).await;
        let got = c.drain().await;
        assert_eq!(
            payloads(&got),
            ["q1", "q2"],
            "{v:?}: QoS 0 is not queued offline"
        );
        assert_eq!(got[1].qos, QoS::ExactlyOnce);
        // The subscription came back with the session.
        p.publish_acked("keep/t", b"live", QoS::AtLeastOnce, false, 9)
            .await;
        assert_eq!(payloads(&c.drain().await), ["live"], "{v:?}");
        c.disconnect().await;
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn qos0_is_queued_offline_when_configured() {
    let b = start_with(|c| c.sessions.queue_qos0_offline = true).await;
    let mut p = publisher(&b, "q0-pub").await;
    for v in VERSIONS {
        let id = format!("q0-{v:?}");
        let mut c = resume(&b, persistent(v, &id), false).await;
        c.subscribe("q0/t", QoS::AtLeastOnce).await;
        c.disconnect().await;
        p.publish_acked("q0/t", b"zero", QoS::AtMostOnce, false, 0)
            .await;
        let mut c = resume(&b, persistent(v, &id), true).await;
        let got = c.drain().await;
        assert_eq!(payloads(&got), ["zero"], "{v:?}");
        assert_eq!(got[0].qos, QoS::AtMostOnce);
        c.disconnect().await;
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn unacknowledged_qos1_is_resent_with_dup_and_the_same_id() {
    let b = start().await;
    let mut p = publisher(&b, "dup-pub").await;
    for v in VERSIONS {
        let id = format!("dup-{v:?}");
        let mut c = resume(&b, persistent(v, &id), false).await;
        c.subscribe("dup/t", QoS::AtLeastOnce).await;
        for n in 1..=2u16 {
            p.publish_acked("dup/t", &[b'0' + n as u8], QoS::AtLeastOnce, false, n)
                .await;
        }
        let first = [c.expect_publish().await, c.expect_publish().await];
        assert!(first.iter().all(|m| !m.dup));
        c.disconnect().await; // without PUBACK
        let mut c = resume(&b, persistent(v, &id), true).await;
        for sent in &first {
            let again = c.expect_publish().await;
            // [MQTT-4.4.0-1] same id, [MQTT-3.3.1-1] DUP 1, [MQTT-4.6.0-1] same order.
            assert_eq!(again.packet_id, sent.packet_id, "{v:?}");
            assert!(again.dup, "{v:?}");
            assert_eq!(again.payload, sent.payload);
            c.send(&Packet::PubAck(PubResp::new(again.packet_id))).await;
        }
        c.expect_nothing().await;
        c.disconnect().await;
        // Acknowledged now: nothing is resent on the next connection.
        let mut c = resume(&b, persistent(v, &id), true).await;
        c.expect_nothing().await;
        c.disconnect().await;
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn released_qos2_gets_pubrel_and_unreceived_qos2_gets_publish_on_reconnect() {
    let b = start().await;
    let mut p = publisher(&b, "rel-pub").await;
    for v in VERSIONS {
        let id = format!("rel-{v:?}");
        let mut c = resume(&b, persistent(v, &id), false).await;
        c.subscribe("rel/t", QoS::ExactlyOnce).await;
        for n in 1..=2u16 {
            p.publish_acked("rel/t", &[b'0' + n as u8], QoS::ExactlyOnce, false, n)
                .await;
        }
        let recd = c.expect_publish().await;
        let unrecd = c.expect_publish().await;
        c.send(&Packet::PubRec(PubResp::new(recd.packet_id))).await;
        assert!(matches!(c.recv().await, Packet::PubRel(r) if r.packet_id == recd.packet_id));
        c.disconnect().await; // without PUBCOMP, and without PUBREC for the second
        let mut c = resume(&b, persistent(v, &id), true).await;
        // [MQTT-4.4.0-1]: PUBREL again, not the PUBLISH ([MQTT-4.3.3-6] of 5.0) ...
        match c.recv().await {
            Packet::PubRel(r) => assert_eq!(r.packet_id, recd.packet_id, "{v:?}"),
            other => panic!("{v:?}: expected PUBREL, got {other:?}"),
        }
        // ... and the PUBLISH that was never PUBREC'd, with DUP.
        let again = c.expect_publish().await;
        assert_eq!(
            (again.packet_id, again.dup),
            (unrecd.packet_id, true),
            "{v:?}"
        );
        c.send(&Packet::PubComp(PubResp::new(recd.packet_id))).await;
        c.ack(&again).await;
        c.expect_nothing().await;
        c.disconnect().await;
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn inbound_qos2_state_survives_a_reconnect() {
    let b = start().await;
    for v in VERSIONS {
        let topic = format!("in2/{v:?}");
        let mut sub = Raw::connect(b.addr, V5, "in2-sub", true).await;
        sub.subscribe(&topic, QoS::AtMostOnce).await;
        let id = format!("in2-{v:?}");
        let mut c = resume(&b, persistent(v, &id), false).await;
        c.publish(&topic, b"once", QoS::ExactlyOnce, false, 4).await;
        assert!(matches!(c.recv().await, Packet::PubRec(r) if r.packet_id == 4));
        c.disconnect().await; // before PUBREL
        let mut c = resume(&b, persistent(v, &id), true).await;
        // The client resends the PUBLISH [MQTT-4.4.0-1]: acknowledged, not delivered again
        // (3.1.1 [MQTT-4.3.3-2]; 5.0 [MQTT-4.3.3-10]).
        let mut dup = publish_packet(&topic, b"once", QoS::ExactlyOnce, false, 4);
        dup.dup = true;
        c.send(&Packet::Publish(dup)).await;
        assert!(matches!(c.recv().await, Packet::PubRec(r) if r.packet_id == 4));
        c.send(&Packet::PubRel(PubResp::new(4))).await;
        match c.recv().await {
            Packet::PubComp(r) => assert_eq!((r.packet_id, r.reason), (4, ReasonCode::SUCCESS)),
            other => panic!("{v:?}: expected PUBCOMP, got {other:?}"),
        }
        assert_eq!(payloads(&sub.drain().await), ["once"], "{v:?}");
        c.disconnect().await;
        sub.disconnect().await;
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn clean_session_discards_subscriptions_and_queued_messages() {
    let b = start().await;
    let mut p = publisher(&b, "clean-pub").await;
    for v in VERSIONS {
        let id = format!("clean-{v:?}");
        let mut c = resume(&b, persistent(v, &id), false).await;
        c.subscribe("clean/t", QoS::AtLeastOnce).await;
        c.disconnect().await;
        p.publish_acked("clean/t", b"stale", QoS::AtLeastOnce, false, 1)
            .await;
        // 3.1.1 [MQTT-3.1.2-6] [MQTT-3.2.2-1]; 5.0 [MQTT-3.1.2-4] [MQTT-3.2.2-2].
        let mut c = resume(&b, connect_packet(v, &id, true), false).await;
        c.expect_nothing().await;
        let reason = p
            .publish_acked("clean/t", b"after", QoS::AtLeastOnce, false, 2)
            .await;
        assert_eq!(
            reason,
            ReasonCode::NO_MATCHING_SUBSCRIBERS,
            "{v:?}: subscription gone"
        );
        c.disconnect().await;
        // A clean session (5.0: expiry 0) ends with its connection.
        assert!(!b.server.broker().has_session(&id), "{v:?}");
        let c = resume(&b, persistent(v, &id), false).await;
        c.disconnect().await;
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn offline_queue_is_bounded_and_drops_are_counted() {
    let b = start_with(|c| c.sessions.max_queued_messages = 3).await;
    let mut p = publisher(&b, "bound-pub").await;
    let metrics = b.server.broker().metrics();
    for v in VERSIONS {
        let id = format!("bound-{v:?}");
        let topic = format!("bound/{v:?}"); // the other version's session is still subscribed
        let mut c = resume(&b, persistent(v, &id), false).await;
        c.subscribe(&topic, QoS::AtLeastOnce).await;
        c.disconnect().await;
        let dropped = Metrics::get(&metrics.messages_dropped);
        for n in 0..5u16 {
            p.publish_acked(&topic, &[b'0' + n as u8], QoS::AtLeastOnce, false, n + 1)
                .await;
        }
        assert_eq!(
            Metrics::get(&metrics.messages_dropped) - dropped,
            2,
            "{v:?}"
        );
        // The oldest three were kept; the excess was dropped.
        let mut c = resume(&b, persistent(v, &id), true).await;
        assert_eq!(payloads(&c.drain().await), ["0", "1", "2"], "{v:?}");
        c.disconnect().await;
    }
    b.server.shutdown().await;
}

/// Polls until `client_id` has no session; panics after `within`.
async fn wait_for_expiry(b: &TestBroker, client_id: &str, within: Duration) -> Duration {
    let start = Instant::now();
    while b.server.broker().has_session(client_id) {
        assert!(
            start.elapsed() < within,
            "session {client_id} did not expire"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

#[tokio::test]
async fn v5_session_is_discarded_when_its_expiry_interval_has_passed() {
    let b = start().await;
    let mut connect = connect_packet(V5, "expiring", false);
    connect.properties.make_mut().session_expiry_interval = Some(1);
    let mut c = resume(&b, connect.clone(), false).await;
    c.subscribe("exp/t", QoS::AtLeastOnce).await;
    c.disconnect().await;
    // [MQTT-3.1.2-23] kept after the connection closed ...
    assert!(b.server.broker().has_session("expiring"));
    // ... until the interval has passed [MQTT-4.1.0-2].
    let took = wait_for_expiry(&b, "expiring", Duration::from_secs(5)).await;
    assert!(took >= Duration::from_millis(800), "expired after {took:?}");
    let mut p = publisher(&b, "exp-pub").await;
    let reason = p
        .publish_acked("exp/t", b"x", QoS::AtLeastOnce, false, 1)
        .await;
    assert_eq!(
        reason,
        ReasonCode::NO_MATCHING_SUBSCRIBERS,
        "its subscription went too"
    );
    let c = resume(&b, connect, false).await;
    c.disconnect().await;
    b.server.shutdown().await;
}

#[tokio::test]
async fn v5_expiry_timer_of_an_earlier_connection_spares_a_resumed_session() {
    let b = start().await;
    let mut connect = connect_packet(V5, "resumed", false);
    connect.properties.make_mut().session_expiry_interval = Some(1);
    let mut c = resume(&b, connect.clone(), false).await;
    c.subscribe("res/t", QoS::AtLeastOnce).await;
    c.disconnect().await;
    let mut c = resume(&b, connect.clone(), true).await;
    // No event to await here: the first timer fires while the client is connected again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(b.server.broker().has_session("resumed"), "[MQTT-4.1.0-1]");
    let mut p = publisher(&b, "res-pub").await;
    p.publish_acked("res/t", b"x", QoS::AtLeastOnce, false, 1)
        .await;
    assert_eq!(payloads(&c.drain().await), ["x"]);
    c.disconnect().await;
    wait_for_expiry(&b, "resumed", Duration::from_secs(5)).await;
    b.server.shutdown().await;
}

#[tokio::test]
async fn v5_disconnect_can_shorten_the_expiry_to_zero() {
    let b = start().await;
    let mut c = resume(&b, persistent(V5, "shorten"), false).await;
    c.subscribe("short/t", QoS::AtLeastOnce).await;
    let mut d = roost::protocol::Disconnect::default();
    d.properties.make_mut().session_expiry_interval = Some(0);
    c.send(&Packet::Disconnect(d)).await;
    assert!(c.closed().await.is_empty());
    assert!(!b.server.broker().has_session("shorten"));
    b.server.shutdown().await;
}

#[tokio::test]
async fn v5_session_expiry_0xffffffff_never_ends() {
    let b = start().await;
    let mut connect = connect_packet(V5, "forever", false);
    connect.properties.make_mut().session_expiry_interval = Some(u32::MAX);
    let (c, _) = Raw::connect_with(b.addr, connect.clone()).await;
    c.disconnect().await;
    // No expiry timer is armed for it (5.0 section 3.1.2.11.2): it is still there, and resumes.
    assert!(b.server.broker().has_session("forever"));
    let (_c, ack) = Raw::connect_with(b.addr, connect).await;
    assert!(ack.session_present);
    b.server.shutdown().await;
}

/// A client that reconnects in a loop with the longest Session Expiry and Will Delay Interval
/// leaves no timer behind per connection: each one is cancelled when the session resumes or is
/// discarded, instead of sleeping (and holding the old session) for 136 years.
#[tokio::test]
async fn reconnecting_in_a_loop_leaves_no_timer_behind() {
    use roost::protocol::{ByteStr, Will};
    let b = start().await;
    let tasks = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    let connect = |clean| {
        let mut c = connect_packet(V5, "looper", clean);
        c.properties.make_mut().session_expiry_interval = Some(u32::MAX - 1);
        let mut will = Will {
            topic: ByteStr::try_from("looper/will").unwrap(),
            payload: bytes::Bytes::from_static(b"w"),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Default::default(),
        };
        will.properties.make_mut().will_delay_interval = Some(u32::MAX - 1);
        c.will = Some(will);
        c
    };
    let (c, _) = Raw::connect_with(b.addr, connect(true)).await;
    drop(c);
    let (mut c, _) = Raw::connect_with(b.addr, connect(false)).await;
    c.expect_nothing().await;
    let before = tasks();
    for i in 0..50 {
        // Gone without DISCONNECT: an expiry timer and a will timer start.
        drop(c);
        // Back, resuming the session (even rounds) or with Clean Start (odd rounds).
        let (next, ack) = Raw::connect_with(b.addr, connect(i % 2 == 1)).await;
        assert_eq!(ack.session_present, i % 2 == 0, "round {i}");
        c = next;
        c.expect_nothing().await;
    }
    // One connection task and its session's timers at most, whatever the number of rounds.
    assert!(tasks() <= before + 2, "{} tasks, {before} before", tasks());
}
