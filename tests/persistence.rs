//! `[persistence]`: what survives a restart of the server, in this process, on a real redb file
//! in a temporary directory. So far: retained messages and persistent sessions with their
//! subscriptions (issue 17 adds queued and in-flight messages).

mod support;

use roost::config::{Config, SyncMode};
use roost::protocol::ProtocolVersion::V5;
use roost::protocol::{ByteStr, Packet, QoS, ReasonCode};
use std::path::{Path, PathBuf};
use support::*;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("roost-persist-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn persisting(dir: &Path, sync: SyncMode) -> impl FnOnce(&mut Config) + use<> {
    let dir = dir.to_path_buf();
    move |c: &mut Config| {
        c.persistence.enabled = true;
        c.persistence.dir = dir;
        c.persistence.sync = sync;
        c.persistence.sync_interval_ms = 50;
    }
}

#[tokio::test]
async fn retained_messages_survive_a_restart_with_their_properties() {
    for sync in [SyncMode::Always, SyncMode::Periodic] {
        let d = dir(&format!("retained-{sync:?}"));
        let b = start_with(persisting(&d, sync)).await;
        let mut p = Raw::connect(b.addr, V5, "publisher", true).await;
        p.publish_acked("a/1", b"one", QoS::AtLeastOnce, true, 1)
            .await;
        let mut two = publish_packet("a/2", b"two", QoS::AtLeastOnce, true, 2);
        {
            let props = two.properties.make_mut();
            props.content_type = Some(ByteStr::from_static("text/plain").unwrap());
            props.message_expiry_interval = Some(3600);
            props.user_properties.push((
                ByteStr::from_static("k").unwrap(),
                ByteStr::from_static("v").unwrap(),
            ));
        }
        p.send(&Packet::Publish(two)).await;
        assert!(matches!(p.recv().await, Packet::PubAck(a) if a.packet_id == 2));
        p.publish_acked("a/3", b"three", QoS::AtLeastOnce, true, 3)
            .await;
        // Cleared: an empty retained PUBLISH deletes the topic's message.
        p.publish_acked("a/3", b"", QoS::AtLeastOnce, true, 4).await;
        b.server.shutdown().await;

        let b = start_with(persisting(&d, sync)).await;
        let mut s = Raw::connect(b.addr, V5, "subscriber", true).await;
        s.subscribe("a/#", QoS::AtLeastOnce).await;
        let got = s.drain().await;
        assert_eq!(payloads(&got), ["one", "two"], "{sync:?}");
        assert!(got.iter().all(|m| m.retain), "{sync:?}: sent as retained");
        let two = &got[1];
        assert_eq!(
            two.properties.content_type.as_deref(),
            Some("text/plain"),
            "{sync:?}"
        );
        assert_eq!(two.properties.user_properties.len(), 1, "{sync:?}");
        let left = two.properties.message_expiry_interval.unwrap();
        assert!((3590..=3600).contains(&left), "{sync:?}: expiry {left}");
        b.server.shutdown().await;
        std::fs::remove_dir_all(&d).unwrap();
    }
}

#[tokio::test]
async fn a_damaged_store_stops_start_up_and_says_what_to_do() {
    let d = dir("damaged");
    std::fs::create_dir_all(&d).unwrap();
    let file = d.join(roost::store::FILE_NAME);
    std::fs::write(&file, b"this is not a store, and it must not be emptied").unwrap();
    let mut config = Config {
        listeners: vec![roost::config::Listener::new("127.0.0.1:0".parse().unwrap())],
        ..Config::default()
    };
    persisting(&d, SyncMode::Always)(&mut config);
    let e = match roost::Server::start(config).await {
        Ok(_) => panic!("started on a damaged store"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.starts_with("persistence: cannot open the store") && e.contains("roost.redb"),
        "{e}"
    );
    assert!(e.contains("move it aside"), "says what to do: {e}");
    assert_eq!(
        std::fs::read(&file).unwrap(),
        b"this is not a store, and it must not be emptied"
    );
    // `roost store check` says the same.
    let e = roost::store::check(&d).unwrap_err().to_string();
    assert!(e.contains("cannot open the store"), "{e}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[tokio::test]
async fn store_check_counts_what_a_store_holds() {
    let d = dir("check");
    let b = start_with(persisting(&d, SyncMode::Always)).await;
    let mut p = Raw::connect(b.addr, V5, "publisher", true).await;
    for i in 0..3u16 {
        p.publish_acked(&format!("c/{i}"), b"x", QoS::AtLeastOnce, true, i + 1)
            .await;
    }
    b.server.shutdown().await;
    let summary = roost::store::check(&d).unwrap();
    assert!(summary.contains("3 retained messages"), "{summary}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[tokio::test]
async fn without_persistence_nothing_is_written() {
    let d = dir("off");
    for enabled_but_off in [false, true] {
        let b = start_with(|c| {
            c.persistence.enabled = enabled_but_off;
            c.persistence.sync = SyncMode::Off;
            c.persistence.dir = d.clone();
        })
        .await;
        let mut p = Raw::connect(b.addr, V5, "publisher", true).await;
        let r = p
            .publish_acked("r/1", b"x", QoS::AtLeastOnce, true, 1)
            .await;
        assert_eq!(r, ReasonCode::NO_MATCHING_SUBSCRIBERS);
        b.server.shutdown().await;
        assert!(!d.exists(), "no store directory made");
    }
}

/// A v5 CONNECT that keeps its session for an hour, as `user`.
fn lasting(client_id: &str, user: Option<&'static str>) -> roost::protocol::Connect {
    let mut c = connect_packet(V5, client_id, false);
    c.properties.make_mut().session_expiry_interval = Some(3600);
    c.username = user.map(|u| ByteStr::from_static(u).unwrap());
    c
}

#[tokio::test]
async fn a_persistent_session_and_its_subscriptions_survive_a_restart() {
    let d = dir("sessions");
    let b = start_with(persisting(&d, SyncMode::Always)).await;
    let (mut dev, ack) = Raw::connect_with(b.addr, lasting("dev-1", Some("alice"))).await;
    assert!(!ack.session_present);
    let mut subscribe = subscribe_packet(
        1,
        &[(
            "a/+",
            roost::protocol::SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                no_local: true,
                ..Default::default()
            },
        )],
    );
    subscribe.properties.make_mut().subscription_identifiers = vec![7];
    dev.send(&Packet::Subscribe(subscribe)).await;
    assert!(matches!(dev.recv().await, Packet::SubAck(_)));
    // Made and removed again: not restored.
    dev.subscribe("z/#", QoS::AtLeastOnce).await;
    dev.send(&Packet::Unsubscribe(roost::protocol::Unsubscribe {
        packet_id: 9,
        properties: Default::default(),
        filters: vec![ByteStr::from_static("z/#").unwrap()],
    }))
    .await;
    assert!(matches!(dev.recv().await, Packet::UnsubAck(_)));
    dev.disconnect().await;
    // A 3.1.1 persistent session too (Clean Session 0: it never expires).
    let mut old = Raw::connect(
        b.addr,
        roost::protocol::ProtocolVersion::V3_1_1,
        "dev-2",
        false,
    )
    .await;
    old.subscribe("b/#", QoS::AtLeastOnce).await;
    old.disconnect().await;
    // And one that ends with its connection: not kept.
    let mut brief = Raw::connect(b.addr, V5, "brief", true).await;
    brief.subscribe("c/#", QoS::AtLeastOnce).await;
    brief.disconnect().await;
    b.server.shutdown().await;

    let b = start_with(persisting(&d, SyncMode::Always)).await;
    assert!(b.server.broker().has_session("dev-1") && b.server.broker().has_session("dev-2"));
    assert!(!b.server.broker().has_session("brief"));
    let mut p = Raw::connect(b.addr, V5, "publisher", true).await;
    for (i, (topic, want)) in [
        ("a/x", ReasonCode::SUCCESS),
        ("b/y/z", ReasonCode::SUCCESS),
        ("c/1", ReasonCode::NO_MATCHING_SUBSCRIBERS),
        ("z/1", ReasonCode::NO_MATCHING_SUBSCRIBERS),
    ]
    .into_iter()
    .enumerate()
    {
        let got = p
            .publish_acked(
                topic,
                topic.as_bytes(),
                QoS::AtLeastOnce,
                false,
                i as u16 + 1,
            )
            .await;
        assert_eq!(got, want, "{topic}: the restored subscriptions match");
    }
    let (mut dev, ack) = Raw::connect_with(b.addr, lasting("dev-1", Some("alice"))).await;
    assert!(ack.session_present, "resumed after the restart");
    let got = dev.drain().await;
    assert_eq!(payloads(&got), ["a/x"]);
    assert_eq!(
        got[0].properties.subscription_identifiers.as_slice(),
        &[7],
        "the Subscription Identifier was kept"
    );
    let mut old = Raw::open(b.addr, roost::protocol::ProtocolVersion::V3_1_1).await;
    old.send(&Packet::Connect(Box::new(connect_packet(
        roost::protocol::ProtocolVersion::V3_1_1,
        "dev-2",
        false,
    ))))
    .await;
    assert!(matches!(old.recv().await, Packet::ConnAck(a) if a.session_present));
    assert_eq!(payloads(&old.drain().await), ["b/y/z"]);
    b.server.shutdown().await;
    std::fs::remove_dir_all(&d).unwrap();
}

#[tokio::test]
async fn a_session_is_resumed_only_by_its_owner_after_a_restart() {
    let d = dir("owner");
    let b = start_with(persisting(&d, SyncMode::Always)).await;
    let (dev, _) = Raw::connect_with(b.addr, lasting("shared-id", Some("alice"))).await;
    dev.disconnect().await;
    b.server.shutdown().await;
    let b = start_with(persisting(&d, SyncMode::Always)).await;
    let (other, ack) = Raw::connect_with(b.addr, lasting("shared-id", Some("mallory"))).await;
    assert!(!ack.session_present, "another user starts afresh");
    other.disconnect().await;
    b.server.shutdown().await;
    // mallory's session replaced alice's, in the store too.
    let b = start_with(persisting(&d, SyncMode::Always)).await;
    let (alice, ack) = Raw::connect_with(b.addr, lasting("shared-id", Some("alice"))).await;
    assert!(!ack.session_present);
    alice.disconnect().await;
    b.server.shutdown().await;
    std::fs::remove_dir_all(&d).unwrap();
}

#[tokio::test]
async fn a_session_that_ends_is_deleted_from_the_store() {
    let d = dir("ended");
    let b = start_with(persisting(&d, SyncMode::Always)).await;
    let (mut dev, _) = Raw::connect_with(b.addr, lasting("dev", None)).await;
    dev.subscribe("e/#", QoS::AtLeastOnce).await;
    dev.disconnect().await;
    // Clean Start ends it.
    let mut again = Raw::connect(b.addr, V5, "dev", true).await;
    again.subscribe("f/#", QoS::AtLeastOnce).await;
    again.disconnect().await;
    b.server.shutdown().await;
    let b = start_with(persisting(&d, SyncMode::Always)).await;
    assert!(!b.server.broker().has_session("dev"));
    b.server.shutdown().await;
    assert!(
        roost::store::check(&d)
            .unwrap()
            .contains(" 0 persistent sessions")
    );
    std::fs::remove_dir_all(&d).unwrap();
}

/// A stored subscription the configuration no longer allows (shared or wildcard subscriptions
/// turned off since) is not restored, and its row is deleted; the session and its other
/// subscriptions are.
#[tokio::test]
async fn subscriptions_a_new_configuration_forbids_are_not_restored() {
    let d = dir("forbidden");
    let b = start_with(persisting(&d, SyncMode::Always)).await;
    let (mut dev, _) = Raw::connect_with(b.addr, lasting("dev", None)).await;
    for filter in ["$share/g/q/#", "w/+", "plain/topic"] {
        dev.subscribe(filter, QoS::AtLeastOnce).await;
    }
    dev.disconnect().await;
    b.server.shutdown().await;
    let stricter = |c: &mut Config| {
        persisting(&d, SyncMode::Always)(c);
        c.shared_subscriptions.available = false;
        c.limits.wildcard_subscription_available = false;
    };
    let b = start_with(stricter).await;
    assert!(b.server.broker().has_session("dev"));
    let mut p = Raw::connect(b.addr, V5, "publisher", true).await;
    for (i, (topic, want)) in [
        ("q/1", ReasonCode::NO_MATCHING_SUBSCRIBERS),
        ("w/1", ReasonCode::NO_MATCHING_SUBSCRIBERS),
        ("plain/topic", ReasonCode::SUCCESS),
    ]
    .into_iter()
    .enumerate()
    {
        let got = p
            .publish_acked(topic, b"x", QoS::AtLeastOnce, false, i as u16 + 1)
            .await;
        assert_eq!(got, want, "{topic}");
    }
    b.server.shutdown().await;
    let said = roost::store::check(&d).unwrap();
    assert!(said.contains("with 1 subscriptions"), "{said}");
    std::fs::remove_dir_all(&d).unwrap();
}

/// Publishes `payload` to `topic` at `qos` and completes the publisher's side.
async fn put(p: &mut Raw, topic: &str, payload: &str, qos: QoS, id: u16) {
    let reason = p
        .publish_acked(topic, payload.as_bytes(), qos, false, id)
        .await;
    assert_eq!(reason, ReasonCode::SUCCESS, "{topic} {payload}");
}

#[tokio::test]
async fn queued_messages_survive_a_restart_in_order_and_are_stored_once() {
    for sync in [SyncMode::Always, SyncMode::Periodic] {
        let d = dir(&format!("queued-{sync:?}"));
        let b = start_with(persisting(&d, sync)).await;
        // Three offline sessions: two v5 at QoS 1 and 2, one 3.1.1 at QoS 1.
        for (id, qos) in [("q1", QoS::AtLeastOnce), ("q2", QoS::ExactlyOnce)] {
            let (mut c, _) = Raw::connect_with(b.addr, lasting(id, None)).await;
            c.subscribe("t/#", qos).await;
            c.disconnect().await;
        }
        let v4 = roost::protocol::ProtocolVersion::V3_1_1;
        let mut old = Raw::connect(b.addr, v4, "old", false).await;
        old.subscribe("t/#", QoS::AtLeastOnce).await;
        old.disconnect().await;
        let mut p = Raw::connect(b.addr, V5, "pub", true).await;
        for i in 0..20u16 {
            let qos = if i.is_multiple_of(2) {
                QoS::AtLeastOnce
            } else {
                QoS::ExactlyOnce
            };
            put(
                &mut p,
                &format!("t/{}", i % 3),
                &format!("m{i}"),
                qos,
                i + 1,
            )
            .await;
        }
        // At QoS 0: not kept (only QoS 1/2 deliveries are).
        put(&mut p, "t/0", "zero", QoS::AtMostOnce, 0).await;
        p.disconnect().await;
        b.server.shutdown().await;

        let summary = roost::store::check(&d).unwrap();
        assert!(
            summary.contains(
                "with 3 subscriptions and 60 queued or in-flight deliveries of 20 stored messages"
            ),
            "{sync:?}: each message once, a row per session: {summary}"
        );
        let b = start_with(persisting(&d, sync)).await;
        let want: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
        for (id, qos) in [("q1", QoS::AtLeastOnce), ("q2", QoS::ExactlyOnce)] {
            let (mut c, ack) = Raw::connect_with(b.addr, lasting(id, None)).await;
            assert!(ack.session_present);
            let got = c.drain().await;
            assert_eq!(payloads(&got), want, "{sync:?} {id}: every one, in order");
            for m in &got {
                let i: u8 = m.payload[1..].iter().fold(0, |n, d| n * 10 + (d - b'0'));
                let sent = if i.is_multiple_of(2) {
                    QoS::AtLeastOnce
                } else {
                    QoS::ExactlyOnce
                };
                assert_eq!(m.qos, sent.min(qos), "{sync:?} {id} {i}");
            }
            c.disconnect().await;
        }
        let mut old = Raw::open(b.addr, v4).await;
        old.send(&Packet::Connect(Box::new(connect_packet(v4, "old", false))))
            .await;
        assert!(matches!(old.recv().await, Packet::ConnAck(a) if a.session_present));
        assert_eq!(payloads(&old.drain().await), want, "{sync:?} 3.1.1");
        old.disconnect().await;
        b.server.shutdown().await;
        // Delivered and acknowledged: gone from the store, messages and all.
        let summary = roost::store::check(&d).unwrap();
        assert!(
            summary.contains("0 queued or in-flight deliveries of 0 stored messages"),
            "{sync:?}: {summary}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}

/// Outbound QoS 1 and QoS 2 messages stopped at every step of their handshake come back after a
/// restart as the spec says [MQTT-4.4.0-1]: an unacknowledged PUBLISH again with its packet
/// identifier and DUP, a PUBREC'd one as a PUBREL; a completed one never again.
#[tokio::test]
async fn in_flight_messages_resume_after_a_restart_at_the_step_they_reached() {
    let d = dir("inflight");
    let b = start_with(persisting(&d, SyncMode::Always)).await;
    let (mut c, _) = Raw::connect_with(b.addr, lasting("dev", None)).await;
    c.subscribe("q1/#", QoS::AtLeastOnce).await;
    c.subscribe("q2/#", QoS::ExactlyOnce).await;
    let mut p = Raw::connect(b.addr, V5, "pub", true).await;
    put(&mut p, "q1/sent", "q1-unacked", QoS::AtLeastOnce, 1).await;
    put(&mut p, "q2/sent", "q2-unanswered", QoS::ExactlyOnce, 2).await;
    put(&mut p, "q2/rec", "q2-recd", QoS::ExactlyOnce, 3).await;
    put(&mut p, "q2/comp", "q2-completed", QoS::ExactlyOnce, 4).await;
    put(&mut p, "q1/acked", "q1-acked", QoS::AtLeastOnce, 5).await;
    let q1 = c.expect_publish().await;
    let q2_sent = c.expect_publish().await;
    let q2_rec = c.expect_publish().await;
    let q2_comp = c.expect_publish().await;
    let q1_acked = c.expect_publish().await;
    assert_eq!(
        payloads(&[q1.clone(), q2_sent.clone(), q2_rec.clone()]),
        ["q1-unacked", "q2-unanswered", "q2-recd"]
    );
    // q2-recd: PUBREC, and the PUBREL it brings is left unanswered.
    c.send(&Packet::PubRec(roost::protocol::PubResp::new(
        q2_rec.packet_id,
    )))
    .await;
    assert!(matches!(c.recv().await, Packet::PubRel(r) if r.packet_id == q2_rec.packet_id));
    c.ack(&q2_comp).await;
    c.ack(&q1_acked).await;
    // The acknowledgements are in once a round trip is done.
    c.send(&Packet::PingReq).await;
    assert_eq!(c.recv().await, Packet::PingResp);
    drop(c);
    p.disconnect().await;
    b.server.shutdown().await;

    let b = start_with(persisting(&d, SyncMode::Always)).await;
    let (mut c, ack) = Raw::connect_with(b.addr, lasting("dev", None)).await;
    assert!(ack.session_present);
    let mut resent = Vec::new();
    let mut rel = Vec::new();
    for _ in 0..3 {
        match c.recv().await {
            Packet::Publish(m) => resent.push(m),
            Packet::PubRel(r) => rel.push(r.packet_id),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(rel, [q2_rec.packet_id], "the PUBREC'd one: PUBREL again");
    assert_eq!(payloads(&resent), ["q1-unacked", "q2-unanswered"]);
    assert_eq!(
        resent.iter().map(|m| m.packet_id).collect::<Vec<_>>(),
        [q1.packet_id, q2_sent.packet_id],
        "with the packet identifiers they went with"
    );
    assert!(resent.iter().all(|m| m.dup), "and DUP set [MQTT-3.3.1-1]");
    for m in &resent {
        c.ack(m).await;
    }
    c.send(&Packet::PubComp(roost::protocol::PubResp::new(
        q2_rec.packet_id,
    )))
    .await;
    assert!(c.drain().await.is_empty(), "completed ones never again");
    c.disconnect().await;
    b.server.shutdown().await;
    let summary = roost::store::check(&d).unwrap();
    assert!(
        summary.contains("0 queued or in-flight deliveries"),
        "{summary}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}

/// An inbound QoS 2 message PUBREC'd before a restart is not routed again when its publisher
/// sends it again after it (exactly once, [MQTT-4.3.3-10] of 5.0 across a restart).
#[tokio::test]
async fn an_inbound_qos2_id_awaiting_pubrel_survives_a_restart() {
    let d = dir("inbound");
    let b = start_with(persisting(&d, SyncMode::Always)).await;
    let (mut s, _) = Raw::connect_with(b.addr, lasting("sub", None)).await;
    s.subscribe("x", QoS::ExactlyOnce).await;
    s.disconnect().await;
    let (mut p, _) = Raw::connect_with(b.addr, lasting("pub", None)).await;
    p.publish("x", b"once", QoS::ExactlyOnce, false, 9).await;
    assert!(matches!(p.recv().await, Packet::PubRec(r) if r.packet_id == 9));
    drop(p);
    b.server.shutdown().await;

    let b = start_with(persisting(&d, SyncMode::Always)).await;
    let (mut p, ack) = Raw::connect_with(b.addr, lasting("pub", None)).await;
    assert!(ack.session_present);
    let mut again = publish_packet("x", b"once", QoS::ExactlyOnce, false, 9);
    again.dup = true;
    p.send(&Packet::Publish(again)).await;
    assert!(matches!(p.recv().await, Packet::PubRec(r) if r.packet_id == 9));
    p.send(&Packet::PubRel(roost::protocol::PubResp::new(9)))
        .await;
    assert!(matches!(p.recv().await, Packet::PubComp(r) if r.packet_id == 9));
    // Released: the same id is a new message now.
    put(&mut p, "x", "twice", QoS::ExactlyOnce, 9).await;
    let (mut s, _) = Raw::connect_with(b.addr, lasting("sub", None)).await;
    assert_eq!(payloads(&s.drain().await), ["once", "twice"]);
    s.disconnect().await;
    p.disconnect().await;
    b.server.shutdown().await;
    std::fs::remove_dir_all(&d).unwrap();
}

/// A v5 CONNECT that keeps its session for an hour, with a will on `will/<id>` delayed
/// `delay` seconds.
fn with_will(id: &str, delay: u32) -> roost::protocol::Connect {
    let mut c = lasting(id, None);
    let mut will = roost::protocol::Will {
        topic: ByteStr::try_from(format!("will/{id}").as_str()).unwrap(),
        payload: bytes::Bytes::from(format!("gone:{id}")),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
    };
    will.properties.make_mut().will_delay_interval = Some(delay);
    c.will = Some(will);
    c
}

/// Leaves the will behind: DISCONNECT 0x04 (Disconnect with Will Message), and the close.
async fn leave_will(mut c: Raw) {
    c.send(&Packet::Disconnect(roost::protocol::Disconnect {
        reason: ReasonCode(0x04),
        properties: Default::default(),
    }))
    .await;
    assert!(c.closed().await.is_empty());
}

/// A will held for its delay by a persistent session is kept: not published when the broker
/// stops (the session outlives the restart), published once its delay is over after it, and
/// cancelled for good by a reconnection within the delay.
#[tokio::test]
async fn a_delayed_will_survives_a_restart() {
    let d = dir("wills");
    let b = start_with(persisting(&d, SyncMode::Always)).await;
    // A persistent watcher: a will that comes due before it is back is queued for it.
    let (mut watcher, _) = Raw::connect_with(b.addr, lasting("watcher", None)).await;
    watcher.subscribe("will/#", QoS::AtLeastOnce).await;
    let (due, _) = Raw::connect_with(b.addr, with_will("due", 1)).await;
    leave_will(due).await;
    let (back, _) = Raw::connect_with(b.addr, with_will("back", 3600)).await;
    leave_will(back).await;
    b.server.shutdown().await;
    assert!(
        matches!(watcher.closed().await.as_slice(), [Packet::Disconnect(d)] if d.reason == ReasonCode(0x8B)),
        "no will published at shutdown"
    );
    let summary = roost::store::check(&d).unwrap();
    assert!(summary.contains("2 held wills"), "{summary}");

    let b = start_with(persisting(&d, SyncMode::Always)).await;
    let (mut watcher, _) = Raw::connect_with(b.addr, lasting("watcher", None)).await;
    let will = watcher.expect_publish().await;
    assert_eq!(
        &will.payload[..],
        b"gone:due",
        "its delay ran on across the restart"
    );
    watcher.ack(&will).await;
    // Back within its delay: that will is cancelled, in the store too.
    let (back, ack) = Raw::connect_with(b.addr, with_will("back", 3600)).await;
    assert!(ack.session_present);
    back.disconnect().await;
    watcher.expect_nothing().await;
    b.server.shutdown().await;
    let summary = roost::store::check(&d).unwrap();
    assert!(summary.contains("0 held wills"), "{summary}");
    std::fs::remove_dir_all(&d).unwrap();
}

/// A held will's Message Expiry Interval counts from its publication, so a will whose interval
/// is shorter than its delay is still there after a restart past that interval (it was once
/// stored with a deadline, and such a store refused to start).
#[tokio::test]
async fn a_held_will_with_a_short_expiry_outlives_a_restart_after_it() {
    let d = dir("will-expiry");
    let b = start_with(persisting(&d, SyncMode::Always)).await;
    let mut connect = with_will("brief", 3600);
    if let Some(w) = connect.will.as_mut() {
        w.properties.make_mut().message_expiry_interval = Some(1);
    }
    let (c, _) = Raw::connect_with(b.addr, connect).await;
    leave_will(c).await;
    let left = std::time::Instant::now();
    b.server.shutdown().await;
    // The interval is the subject here: only the clock passing it can show it.
    let past = std::time::Duration::from_millis(1100).saturating_sub(left.elapsed());
    tokio::time::sleep(past).await;
    let summary = roost::store::check(&d).unwrap();
    assert!(summary.contains("1 held wills"), "{summary}");
    let b = start_with(persisting(&d, SyncMode::Always)).await;
    let (mut watcher, _) = Raw::connect_with(b.addr, lasting("watcher", None)).await;
    watcher.subscribe("will/#", QoS::AtLeastOnce).await;
    watcher.expect_nothing().await;
    b.server.shutdown().await;
    std::fs::remove_dir_all(&d).unwrap();
}
