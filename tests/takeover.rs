//! Session takeover (3.1.4 CONNECT actions): a second connection with a client id already
//! connected closes the first (5.0: DISCONNECT 0x8E first) and carries on with the session.

mod support;

use bytes::Bytes;
use roost::protocol::ProtocolVersion::{self, V3_1_1, V5};
use roost::protocol::{ByteStr, Connect, Packet, QoS, ReasonCode, Will};
use support::*;

const VERSIONS: [ProtocolVersion; 2] = [V3_1_1, V5];

/// CONNECT for a session that outlives its connection: 3.1.1 clean session 0; 5.0 clean start
/// 0 with a Session Expiry Interval of a minute.
fn persistent(v: ProtocolVersion, id: &str) -> Connect {
    let mut c = connect_packet(v, id, false);
    if v.is_v5() {
        c.properties.make_mut().session_expiry_interval = Some(60);
    }
    c
}

/// Waits for the broker to close `old` after a takeover and checks how: 5.0 gets DISCONNECT
/// 0x8E first [MQTT-3.1.4-3]; 3.1.1 is simply closed [MQTT-3.1.4-2].
async fn expect_taken_over(old: &mut Raw) {
    let before = old.closed().await;
    if old.version.is_v5() {
        assert!(
            matches!(before.as_slice(), [Packet::Disconnect(d)] if d.reason == ReasonCode::SESSION_TAKEN_OVER),
            "v5: DISCONNECT 0x8E then close: {before:?}"
        );
    } else {
        assert!(
            before.is_empty(),
            "3.1.1: closed without a packet: {before:?}"
        );
    }
}

/// Asserts `c` is open and served: a PINGREQ gets its PINGRESP.
async fn expect_alive(c: &mut Raw) {
    c.send(&Packet::PingReq).await;
    assert_eq!(c.recv().await, Packet::PingResp);
}

#[tokio::test]
async fn second_connection_closes_the_first() {
    let b = start().await;
    for v in VERSIONS {
        let id = format!("twin-{v:?}");
        let mut old = Raw::connect(b.addr, v, &id, true).await;
        expect_alive(&mut old).await;
        let mut new = Raw::connect(b.addr, v, &id, true).await;
        expect_taken_over(&mut old).await;
        expect_alive(&mut new).await;
        new.subscribe("t/new", QoS::AtLeastOnce).await;
        new.disconnect().await;
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn persistent_session_keeps_its_subscriptions_across_a_takeover() {
    let b = start().await;
    let mut publisher = Raw::connect(b.addr, V5, "tk-pub", true).await;
    for v in VERSIONS {
        let id = format!("keep-{v:?}");
        let topic = format!("tk/{v:?}");
        let (mut old, _) = Raw::connect_with(b.addr, persistent(v, &id)).await;
        old.subscribe(&topic, QoS::AtLeastOnce).await;

        let (mut new, ack) = Raw::connect_with(b.addr, persistent(v, &id)).await;
        // [MQTT-3.2.2-2 of 3.1.1, MQTT-3.2.2-3 of 5.0] the session is the old one.
        assert!(ack.session_present, "{v:?} session present");
        expect_taken_over(&mut old).await;

        // The subscription made on the old connection now delivers to the new one.
        for (i, qos) in [(1, QoS::AtMostOnce), (2, QoS::AtLeastOnce)] {
            let reason = publisher.publish_acked(&topic, b"m", qos, false, i).await;
            assert_eq!(
                reason,
                ReasonCode::SUCCESS,
                "matched the surviving subscription"
            );
            let p = new.expect_publish().await;
            assert_eq!((p.topic.as_str(), p.qos), (topic.as_str(), qos));
            new.ack(&p).await;
        }
        new.expect_nothing().await;
        new.disconnect().await;
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn unacknowledged_message_is_resent_to_the_new_connection() {
    let b = start().await;
    let mut publisher = Raw::connect(b.addr, V5, "tk-pub", true).await;
    for v in VERSIONS {
        let id = format!("resend-{v:?}");
        let topic = format!("rs/{v:?}");
        let (mut old, _) = Raw::connect_with(b.addr, persistent(v, &id)).await;
        old.subscribe(&topic, QoS::AtLeastOnce).await;
        publisher
            .publish_acked(&topic, b"once", QoS::AtLeastOnce, false, 7)
            .await;
        let first = old.expect_publish().await;
        assert!(!first.dup);
        // Not acknowledged: the session still has it in flight when the new connection comes.
        let (mut new, ack) = Raw::connect_with(b.addr, persistent(v, &id)).await;
        assert!(ack.session_present);
        expect_taken_over(&mut old).await;
        // [MQTT-4.4.0-1] resent with DUP and the original packet identifier.
        let again = new.expect_publish().await;
        assert!(again.dup, "{v:?} DUP set on the resend");
        assert_eq!(again.packet_id, first.packet_id);
        assert_eq!(&again.payload[..], b"once");
        new.ack(&again).await;
        new.expect_nothing().await;
        new.disconnect().await;
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn clean_takeover_discards_the_old_session() {
    let b = start().await;
    let mut publisher = Raw::connect(b.addr, V5, "tk-pub", true).await;
    for v in VERSIONS {
        let id = format!("fresh-{v:?}");
        let topic = format!("fr/{v:?}");
        let (mut old, _) = Raw::connect_with(b.addr, persistent(v, &id)).await;
        old.subscribe(&topic, QoS::AtLeastOnce).await;
        let (mut new, ack) = Raw::connect_with(b.addr, connect_packet(v, &id, true)).await;
        // [MQTT-3.1.2-6 of 3.1.1, MQTT-3.1.2-4 of 5.0] clean: the old session is discarded.
        assert!(!ack.session_present, "{v:?}");
        expect_taken_over(&mut old).await;
        let reason = publisher
            .publish_acked(&topic, b"lost", QoS::AtLeastOnce, false, 1)
            .await;
        assert_eq!(reason, ReasonCode::NO_MATCHING_SUBSCRIBERS);
        new.expect_nothing().await;
        new.disconnect().await;
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn the_old_connections_will_is_published() {
    let b = start().await;
    let mut watcher = Raw::connect(b.addr, V5, "tk-watch", true).await;
    watcher.subscribe("tk-will/#", QoS::AtLeastOnce).await;
    for v in VERSIONS {
        let id = format!("willing-{v:?}");
        let mut connect = persistent(v, &id);
        connect.will = Some(Will {
            topic: ByteStr::try_from(format!("tk-will/{id}")).unwrap(),
            payload: Bytes::from_static(b"taken"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Default::default(),
        });
        let (mut old, _) = Raw::connect_with(b.addr, connect).await;
        // The session continues (clean 0), but the old connection ended: its will goes out.
        let (new, ack) = Raw::connect_with(b.addr, persistent(v, &id)).await;
        assert!(ack.session_present);
        expect_taken_over(&mut old).await;
        let p = watcher.expect_publish().await;
        assert_eq!(p.topic.as_str(), format!("tk-will/{id}"));
        assert_eq!((&p.payload[..], p.qos), (&b"taken"[..], QoS::AtLeastOnce));
        watcher.ack(&p).await;
        // The new connection carries no will: leaving normally publishes nothing.
        new.disconnect().await;
        watcher.expect_nothing().await;
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn a_chain_of_takeovers_leaves_only_the_last_connection() {
    let b = start().await;
    let mut publisher = Raw::connect(b.addr, V5, "tk-pub", true).await;
    for v in VERSIONS {
        let id = format!("chain-{v:?}");
        let topic = format!("ch/{v:?}");
        let (mut current, _) = Raw::connect_with(b.addr, persistent(v, &id)).await;
        current.subscribe(&topic, QoS::AtLeastOnce).await;
        for _ in 0..5 {
            let (next, ack) = Raw::connect_with(b.addr, persistent(v, &id)).await;
            assert!(ack.session_present);
            let mut old = std::mem::replace(&mut current, next);
            expect_taken_over(&mut old).await;
        }
        publisher
            .publish_acked(&topic, b"last", QoS::AtLeastOnce, false, 1)
            .await;
        let p = current.expect_publish().await;
        assert_eq!(&p.payload[..], b"last");
        current.ack(&p).await;
        current.expect_nothing().await;
        assert!(b.server.broker().has_session(&id));
        current.disconnect().await;
    }
    // Every session left is one of the persistent ones or the publisher: no strays.
    assert_eq!(b.server.broker().session_count(), 3);
    b.server.shutdown().await;
}

/// How a connection asks for its session: Clean Start (3.1.1: CleanSession) and, in 5.0, a
/// Session Expiry Interval.
#[derive(Debug, Clone, Copy)]
struct Kind {
    clean: bool,
    expiry: u32,
}

impl Kind {
    /// Every kind a version has: 3.1.1 has the flag alone (its persistent session never
    /// expires here); 5.0 has both settings, each way.
    fn all(v: ProtocolVersion) -> Vec<Kind> {
        let expiries: &[u32] = if v.is_v5() { &[0, 60] } else { &[0] };
        [true, false]
            .into_iter()
            .flat_map(|clean| expiries.iter().map(move |&expiry| Kind { clean, expiry }))
            .collect()
    }

    /// Whether the session outlives its connection: 3.1.1 CleanSession 0, 5.0 a non-zero
    /// Session Expiry Interval (Clean Start only decides how a session starts).
    fn lives_on(self, v: ProtocolVersion) -> bool {
        if v.is_v5() {
            self.expiry > 0
        } else {
            !self.clean
        }
    }

    /// This kind's CONNECT, with or without a will.
    fn connect(self, v: ProtocolVersion, id: &str, will: bool) -> Connect {
        let mut c = connect_packet(v, id, self.clean);
        if v.is_v5() && self.expiry > 0 {
            c.properties.make_mut().session_expiry_interval = Some(self.expiry);
        }
        if will {
            c.will = Some(Will {
                topic: ByteStr::try_from(format!("will/{id}")).unwrap(),
                payload: Bytes::from_static(b"gone"),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: Default::default(),
            });
        }
        c
    }
}

/// Issue 14, section 4: a session that lasts as long as its connection (CleanSession 1 in
/// 3.1.1, Session Expiry 0 in 5.0, whatever its Clean Start) is never resumed, even by a
/// connection that takes it over while it is open and asks to resume (CleanSession 0 / Clean
/// Start 0): the state "MUST NOT be reused in any subsequent Session" [MQTT-3.1.2-6 of 3.1.1;
/// 5.0 3.1.2.11.2]. Every combination of the two connections' kinds (two in 3.1.1, four in
/// 5.0), with and without a will on either.
#[tokio::test]
async fn a_session_that_ends_with_its_connection_is_never_resumed() {
    let b = start().await;
    let mut watcher = Raw::connect(b.addr, V5, "tk-watch", true).await;
    assert_eq!(watcher.subscribe("will/#", QoS::AtLeastOnce).await, [1]);
    let mut publisher = Raw::connect(b.addr, V5, "tk-pub", true).await;
    let mut n = 0;
    for v in VERSIONS {
        for old_kind in Kind::all(v) {
            for new_kind in Kind::all(v) {
                for (old_will, new_will) in [(false, false), (true, false), (false, true)] {
                    n += 1;
                    let id = format!("m{n}");
                    let case = format!(
                        "{v:?} old {old_kind:?} will {old_will}, new {new_kind:?} will {new_will}"
                    );
                    let topic = format!("tk/{id}");
                    let (mut old, _) =
                        Raw::connect_with(b.addr, old_kind.connect(v, &id, old_will)).await;
                    assert_eq!(old.subscribe(&topic, QoS::AtLeastOnce).await, [1]);
                    // A message in flight to the old connection, never acknowledged.
                    publisher
                        .publish_acked(&topic, b"in flight", QoS::AtLeastOnce, false, 1)
                        .await;
                    assert_eq!(old.expect_publish().await.packet_id, 1, "{case}");

                    let (mut new, ack) =
                        Raw::connect_with(b.addr, new_kind.connect(v, &id, new_will)).await;
                    expect_taken_over(&mut old).await;
                    let resumed = old_kind.lives_on(v) && !new_kind.clean;
                    assert_eq!(ack.session_present, resumed, "{case}: Session Present");
                    // What the old session had: its message in flight and its subscription.
                    let reason = publisher
                        .publish_acked(&topic, b"after", QoS::AtLeastOnce, false, 2)
                        .await;
                    let got = new.drain().await;
                    if resumed {
                        assert_eq!(reason, ReasonCode::SUCCESS, "{case}");
                        assert_eq!(payloads(&got), ["in flight", "after"], "{case}");
                    } else {
                        assert_eq!(reason, ReasonCode::NO_MATCHING_SUBSCRIBERS, "{case}");
                        assert_eq!(got, [], "{case}: nothing of the old session survives");
                    }
                    // The old connection ended without DISCONNECT: its will, if any, went out;
                    // the new connection's will stays with it.
                    let wills = watcher.drain().await;
                    let want: &[&str] = if old_will { &["gone"] } else { &[] };
                    assert_eq!(payloads(&wills), want, "{case}");
                    new.disconnect().await;
                    assert_eq!(
                        watcher.drain().await,
                        [],
                        "{case}: DISCONNECT 0x00, no will"
                    );
                }
            }
        }
    }
    b.server.shutdown().await;
}

/// Issue 14, section 6: a connection being taken over may have read a burst of packets it has
/// not handled yet. None of them may change a session once the takeover has happened: a
/// SUBSCRIBE in that tail added after Clean Start discarded the session would be a ghost,
/// matching messages for a session that no longer exists, forever. Raced many times; after
/// each, every subscription in the broker belongs to a session in its registry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_taken_over_leaves_no_ghost_subscription() {
    let b = start().await;
    let broker = b.server.broker().clone();
    let mut publisher = Raw::connect(b.addr, V5, "ghost-pub", true).await;
    for attempt in 0..200u16 {
        let v = VERSIONS[usize::from(attempt % 2)];
        let kind = Kind {
            clean: attempt % 4 < 2,
            expiry: 60,
        };
        let (mut a, _) = Raw::connect_with(b.addr, kind.connect(v, "ghost", false)).await;
        // One burst of QoS 0 PUBLISHes interleaved with SUBSCRIBEs, written in one go.
        let mut burst = bytes::BytesMut::new();
        for i in 0..40u16 {
            let publish = publish_packet("ghost/x", b"p", QoS::AtMostOnce, false, 0);
            Packet::Publish(publish).encode(v, &mut burst).unwrap();
            let filter = format!("ghost/{attempt}/{i}");
            let s = subscribe_packet(i + 1, &[(filter.as_str(), sub_opts(QoS::AtLeastOnce))]);
            Packet::Subscribe(s).encode(v, &mut burst).unwrap();
        }
        a.send_bytes(&burst).await;
        // B takes the id over with Clean Start and disconnects.
        let b_conn = Raw::connect(b.addr, v, "ghost", true).await;
        b_conn.disconnect().await;
        a.closed().await;
        // No session is left, so no subscription may be: the publisher's messages match none.
        // B's task detaches just after it closes: on two workers the close can come first.
        let gone = async {
            while broker.has_session("ghost") {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(WAIT, gone)
            .await
            .unwrap_or_else(|_| panic!("attempt {attempt}: the session outlived B"));
        let orphans = broker.subscriptions_without_a_session();
        assert_eq!(
            orphans,
            Vec::<String>::new(),
            "attempt {attempt}: ghost subscriptions"
        );
        for i in [0u16, 39] {
            let reason = publisher
                .publish_acked(
                    &format!("ghost/{attempt}/{i}"),
                    b"m",
                    QoS::AtLeastOnce,
                    false,
                    1,
                )
                .await;
            assert_eq!(
                reason,
                ReasonCode::NO_MATCHING_SUBSCRIBERS,
                "attempt {attempt}"
            );
        }
    }
    assert_eq!(broker.subscription_count(), 0);
    b.server.shutdown().await;
}
