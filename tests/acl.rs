//! `auth.acl_file` (Mosquitto's format): who may publish and subscribe to what, checked on the
//! wire with both protocol versions.

mod support;

use bytes::Bytes;
use roost::config::Config;
use roost::protocol::ProtocolVersion::{self, V3_1_1, V5};
use roost::protocol::{ByteStr, QoS, ReasonCode, Will};
use std::path::PathBuf;
use support::*;

const ACL: &str = "\
# Clients without a user name may read public/#.
topic read public/#

user root
topic readwrite #
user alice
topic readwrite demo/#
topic deny demo/secret
user ops
topic read $SYS/#
topic read ops/#

# Every client: its own inbox by user name, its own device topics by client id.
pattern readwrite users/%u/#
pattern write devices/%c/out
";

/// The ACL file above, in a directory of this test's own.
fn acl_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("roost-acl-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let path = dir.join("acl");
    std::fs::write(&path, ACL).expect("written");
    path
}

async fn acl_broker(name: &str) -> TestBroker {
    let path = acl_file(name);
    start_with(|c| c.auth.acl_file = path).await
}

/// A connected client of `version` with this user name (none: anonymous) and client id.
async fn client(b: &TestBroker, v: ProtocolVersion, user: Option<&str>, id: &str) -> Raw {
    let mut connect = connect_packet(v, id, true);
    connect.username = user.map(|u| ByteStr::try_from(u).expect("a user name"));
    Raw::connect_with(b.addr, connect).await.0
}

#[tokio::test]
async fn a_publish_the_acl_does_not_allow_is_refused_in_v5_and_dropped_in_3_1_1() {
    let b = acl_broker("publish").await;
    let mut root = client(&b, V5, Some("root"), "root").await;
    assert_eq!(root.subscribe("#", QoS::AtLeastOnce).await, [1]);
    for v in [V5, V3_1_1] {
        let mut alice = client(&b, v, Some("alice"), "phone").await;
        let ok = alice
            .publish_acked("demo/x", b"ok", QoS::AtLeastOnce, false, 1)
            .await;
        assert_eq!(ok, ReasonCode::SUCCESS, "{v:?}");
        for (topic, id) in [("other/x", 2), ("demo/secret", 3), ("$SYS/broker/x", 4)] {
            let refused = alice
                .publish_acked(topic, b"no", QoS::AtLeastOnce, false, id)
                .await;
            // 3.1.1 has no code for it: acknowledged, not delivered.
            let want = if v == V5 {
                ReasonCode::NOT_AUTHORIZED
            } else {
                ReasonCode::SUCCESS
            };
            assert_eq!(refused, want, "{v:?} {topic}");
        }
        // QoS 2 too, and QoS 0 goes nowhere.
        let refused = alice
            .publish_acked("other/y", b"no", QoS::ExactlyOnce, false, 5)
            .await;
        assert_eq!(refused == ReasonCode::NOT_AUTHORIZED, v == V5, "{v:?}");
        alice
            .publish("other/z", b"no", QoS::AtMostOnce, false, 0)
            .await;
        // Pattern lines: its own device topic by client id, its inbox by user name.
        for (topic, id) in [("devices/phone/out", 6), ("users/alice/note", 7)] {
            let ok = alice
                .publish_acked(topic, b"ok", QoS::AtLeastOnce, false, id)
                .await;
            assert_eq!(ok, ReasonCode::SUCCESS, "{v:?} {topic}");
        }
        let refused = alice
            .publish_acked("devices/other/out", b"no", QoS::AtLeastOnce, false, 8)
            .await;
        assert_eq!(refused == ReasonCode::NOT_AUTHORIZED, v == V5, "{v:?}");
        let got = root.drain().await;
        let topics: Vec<&str> = got.iter().map(|p| &*p.topic).collect();
        assert_eq!(
            topics,
            ["demo/x", "devices/phone/out", "users/alice/note"],
            "{v:?}: only what was allowed arrives"
        );
        for p in &got {
            root.ack(p).await;
        }
        alice.expect_nothing().await; // still connected
    }
    assert_eq!(
        b.server
            .broker()
            .metrics()
            .dropped_not_authorized
            .load(std::sync::atomic::Ordering::Relaxed),
        2 * 6,
        "six PUBLISHes refused per version"
    );
}

#[tokio::test]
async fn a_subscription_that_may_read_nothing_is_refused() {
    let b = acl_broker("subscribe").await;
    for v in [V5, V3_1_1] {
        let refused = if v == V5 { 0x87 } else { 0x80 };
        let mut alice = client(&b, v, Some("alice"), "phone").await;
        for (filter, want) in [
            ("demo/+", 1),
            ("demo/#", 1), // some of it is denied: filtered per message
            ("#", 1),
            ("users/alice/#", 1),
            ("$share/g/demo/#", 1), // a shared subscription is checked by its filter
            ("other/#", refused),
            ("demo/secret", refused),
            ("users/bob/#", refused),
            ("$share/g/other/#", refused),
            ("$SYS/#", refused),
        ] {
            let got = alice.subscribe(filter, QoS::AtLeastOnce).await;
            assert_eq!(got, [want], "{v:?} {filter}");
        }
        let mut root = client(&b, v, Some("root"), "root").await;
        // `#` grants nothing under $SYS; only a rule naming it does.
        assert_eq!(root.subscribe("$SYS/#", QoS::AtMostOnce).await, [refused]);
        let mut ops = client(&b, v, Some("ops"), "ops").await;
        assert_eq!(ops.subscribe("$SYS/#", QoS::AtMostOnce).await, [0]);
        // Without a user name: the lines before any `user`.
        let mut anonymous = client(&b, v, None, "anon").await;
        assert_eq!(anonymous.subscribe("public/#", QoS::AtMostOnce).await, [0]);
        assert_eq!(
            anonymous.subscribe("demo/#", QoS::AtMostOnce).await,
            [refused]
        );
    }
}

#[tokio::test]
async fn a_wide_subscription_gets_only_what_its_client_may_read_retained_included() {
    let b = acl_broker("filtered").await;
    let mut root = client(&b, V5, Some("root"), "root").await;
    for topic in [
        "demo/a",
        "demo/secret",
        "other/a",
        "users/alice/a",
        "users/bob/a",
    ] {
        root.publish_acked(topic, b"retained", QoS::AtLeastOnce, true, 1)
            .await;
    }
    for v in [V5, V3_1_1] {
        let mut alice = client(&b, v, Some("alice"), "phone").await;
        assert_eq!(alice.subscribe("#", QoS::AtLeastOnce).await, [1]);
        let retained = alice.drain().await;
        let mut topics: Vec<&str> = retained.iter().map(|p| &*p.topic).collect();
        topics.sort_unstable();
        assert_eq!(topics, ["demo/a", "users/alice/a"], "{v:?}: retained");
        for p in &retained {
            alice.ack(p).await;
        }
        for topic in [
            "other/b",
            "demo/secret",
            "demo/b",
            "users/bob/b",
            "users/alice/b",
        ] {
            root.publish_acked(topic, b"live", QoS::AtLeastOnce, false, 2)
                .await;
        }
        let live = alice.drain().await;
        let topics: Vec<&str> = live.iter().map(|p| &*p.topic).collect();
        assert_eq!(topics, ["demo/b", "users/alice/b"], "{v:?}: live");
        for p in &live {
            alice.ack(p).await;
        }
        alice.disconnect().await;
    }
}

#[tokio::test]
async fn a_will_its_client_may_not_publish_is_dropped_at_connect() {
    let b = acl_broker("will").await;
    let mut root = client(&b, V5, Some("root"), "root").await;
    assert_eq!(root.subscribe("#", QoS::AtLeastOnce).await, [1]);
    // The same client id twice: the second CONNECT ends the first connection's session, so a
    // will of the first would be published before the second's.
    for topic in ["other/gone", "demo/gone"] {
        let mut connect = connect_packet(V3_1_1, "willing", true);
        connect.username = Some(ByteStr::from_static("alice").unwrap());
        connect.will = Some(Will {
            topic: ByteStr::try_from(topic).unwrap(),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Default::default(),
        });
        let (c, ack) = Raw::connect_with(b.addr, connect).await;
        assert_eq!(ack.reason, ReasonCode::SUCCESS, "let in either way");
        drop(c); // no DISCONNECT: the will is due
    }
    let will = root.expect_publish().await;
    assert_eq!(&*will.topic, "demo/gone", "only the will alice may publish");
    root.ack(&will).await;
    root.expect_nothing().await;
}

#[test]
fn a_broken_acl_file_stops_start_up_naming_the_key_and_the_line() {
    let dir = std::env::temp_dir().join(format!("roost-acl-broken-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("acl");
    std::fs::write(&path, "user alice\ntopic read demo/#\ntopic read a/#/b\n").unwrap();
    let mut config = Config::default();
    config.auth.acl_file = path;
    let e = config.validate().expect_err("a broken file").to_string();
    assert!(e.contains("auth.acl_file"), "{e}");
    assert!(e.contains("line 3"), "{e}");
    assert!(e.contains("a/#/b"), "{e}");
}

/// A session is never handed to another user: its subscriptions were granted by the first
/// user's rules and its queue holds what that user may read. Connecting with the same client
/// id as someone else (Clean Start 0) starts a new session instead, and gets nothing of theirs.
#[tokio::test]
async fn a_session_is_not_resumed_by_another_user() {
    let b = acl_broker("owner").await;
    let persistent = |user: &'static str| {
        let mut c = connect_packet(V5, "dev1", false);
        c.username = Some(ByteStr::from_static(user).unwrap());
        c.properties.make_mut().session_expiry_interval = Some(60);
        c
    };
    let (mut alice, _) = Raw::connect_with(b.addr, persistent("alice")).await;
    assert_eq!(alice.subscribe("demo/#", QoS::AtLeastOnce).await, [1]);
    alice.disconnect().await;
    let mut root = client(&b, V5, Some("root"), "root").await;
    root.publish_acked("demo/queued", b"for alice", QoS::AtLeastOnce, false, 1)
        .await;
    // Another user, same client id: a new session, nothing queued, no subscription.
    let (mut mallory, ack) = Raw::connect_with(b.addr, persistent("carol")).await;
    assert!(
        !ack.session_present,
        "another user's session is not resumed"
    );
    assert_eq!(mallory.drain().await, []);
    let reason = root
        .publish_acked("demo/live", b"x", QoS::AtLeastOnce, false, 2)
        .await;
    assert_eq!(reason, ReasonCode::NO_MATCHING_SUBSCRIBERS);
    assert_eq!(mallory.drain().await, []);
    mallory.disconnect().await;
    // The same user resumes its own session.
    let (carol, ack) = Raw::connect_with(b.addr, persistent("carol")).await;
    assert!(ack.session_present, "one's own session is resumed");
    carol.disconnect().await;
}
