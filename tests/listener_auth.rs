//! `[listeners.auth]` over `[auth]`, and the password and ACL files reloaded on SIGHUP (through
//! `Server::reload`, which SIGHUP calls): a broken file keeps the rules in use.

mod support;

use bytes::Bytes;
use roost::config::{Listener, ListenerAuth};
use roost::protocol::ProtocolVersion::{self, V3_1_1, V5};
use roost::protocol::{ByteStr, Packet, QoS, ReasonCode};
use std::net::SocketAddr;
use std::path::PathBuf;
use support::*;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("roost-lauth-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The CONNACK reason a client with these credentials gets at `addr`.
async fn connack(
    addr: SocketAddr,
    v: ProtocolVersion,
    user: Option<&str>,
    pw: Option<&str>,
) -> ReasonCode {
    let mut c = Raw::open(addr, v).await;
    let mut connect = connect_packet(v, "", true);
    connect.username = user.map(|u| ByteStr::try_from(u).unwrap());
    connect.password = pw.map(|p| Bytes::copy_from_slice(p.as_bytes()));
    c.send(&Packet::Connect(Box::new(connect))).await;
    match c.recv().await {
        Packet::ConnAck(a) => a.reason,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

#[tokio::test]
async fn a_listener_can_close_its_doors_while_another_stays_open() {
    let d = dir("doors");
    let passwd = d.join("passwd");
    roost::passwords::set_password(&passwd, "alice", "wonderland").unwrap();
    std::fs::write(d.join("acl"), "user alice\ntopic readwrite alice/#\n").unwrap();
    let b = start_with(|c| {
        c.auth.login_delay_ms = 0;
        let open = Listener::new("127.0.0.1:0".parse().unwrap());
        let closed = Listener {
            auth: Some(ListenerAuth {
                allow_anonymous: Some(false),
                password_file: Some(passwd.clone()),
                acl_file: Some(d.join("acl")),
            }),
            ..Listener::new("127.0.0.1:0".parse().unwrap())
        };
        c.listeners = vec![open, closed];
    })
    .await;
    let (open, closed) = (b.server.local_addrs()[0], b.server.local_addrs()[1]);
    for v in [V5, V3_1_1] {
        assert_eq!(
            connack(open, v, None, None).await,
            ReasonCode::SUCCESS,
            "{v:?}"
        );
        let refused = connack(closed, v, None, None).await;
        assert!(
            refused.is_error(),
            "{v:?}: anonymous on the closed listener"
        );
        let wrong = connack(closed, v, Some("alice"), Some("nope")).await;
        assert!(wrong.is_error(), "{v:?}");
        let right = connack(closed, v, Some("alice"), Some("wonderland")).await;
        assert_eq!(right, ReasonCode::SUCCESS, "{v:?}");
    }
    // The ACL applies on the closed listener only.
    let mut c = Raw::open(closed, V5).await;
    let mut connect = connect_packet(V5, "alice-1", true);
    connect.username = Some(ByteStr::from_static("alice").unwrap());
    connect.password = Some(Bytes::from_static(b"wonderland"));
    c.send(&Packet::Connect(Box::new(connect))).await;
    assert!(matches!(c.recv().await, Packet::ConnAck(a) if a.reason == ReasonCode::SUCCESS));
    let no = c
        .publish_acked("other/x", b"m", QoS::AtLeastOnce, false, 1)
        .await;
    assert_eq!(no, ReasonCode::NOT_AUTHORIZED);
    let mut anyone = Raw::connect(open, V5, "anyone", true).await;
    let yes = anyone
        .publish_acked("other/x", b"m", QoS::AtLeastOnce, false, 1)
        .await;
    assert_eq!(
        yes,
        ReasonCode::NO_MATCHING_SUBSCRIBERS,
        "no ACL on the open listener"
    );
}

#[tokio::test]
async fn password_and_acl_files_reload_and_a_broken_one_keeps_the_rules_in_use() {
    let d = dir("reload");
    let passwd = d.join("passwd");
    let acl = d.join("acl");
    roost::passwords::set_password(&passwd, "alice", "first").unwrap();
    std::fs::write(&acl, "user alice\ntopic readwrite a/#\n").unwrap();
    let b = start_with(|c| {
        c.auth.login_delay_ms = 0;
        c.auth.allow_anonymous = false;
        c.auth.password_file = passwd.clone();
        c.auth.acl_file = acl.clone();
    })
    .await;
    let publish_as_alice = |password: &'static str, topic: &'static str| async move {
        let mut c = Raw::open(b.addr, V5).await;
        let mut connect = connect_packet(V5, "alice", true);
        connect.username = Some(ByteStr::from_static("alice").unwrap());
        connect.password = Some(Bytes::from_static(password.as_bytes()));
        c.send(&Packet::Connect(Box::new(connect))).await;
        match c.recv().await {
            Packet::ConnAck(a) if a.reason == ReasonCode::SUCCESS => {}
            Packet::ConnAck(a) => return Err(a.reason),
            other => panic!("{other:?}"),
        }
        Ok(c.publish_acked(topic, b"m", QoS::AtLeastOnce, false, 1)
            .await)
    };
    assert_eq!(
        publish_as_alice("first", "a/x").await,
        Ok(ReasonCode::NO_MATCHING_SUBSCRIBERS)
    );

    roost::passwords::set_password(&passwd, "alice", "second").unwrap();
    std::fs::write(&acl, "user alice\ntopic readwrite b/#\n").unwrap();
    assert_eq!(b.server.reload(), Vec::<String>::new());
    assert!(
        publish_as_alice("first", "b/x").await.is_err(),
        "the old password no longer works"
    );
    assert_eq!(
        publish_as_alice("second", "b/x").await,
        Ok(ReasonCode::NO_MATCHING_SUBSCRIBERS)
    );
    assert_eq!(
        publish_as_alice("second", "a/x").await,
        Ok(ReasonCode::NOT_AUTHORIZED)
    );

    // Broken files: the reload says which line, and the rules in use stay.
    std::fs::write(&passwd, "alice:not-a-hash\n").unwrap();
    std::fs::write(&acl, "user alice\ntopic readwrite b/#\nfrobnicate\n").unwrap();
    let errors = b.server.reload();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].contains("auth.password_file") && errors[0].contains("line 1"),
        "{errors:?}"
    );
    assert!(
        errors[1].contains("auth.acl_file") && errors[1].contains("line 3"),
        "{errors:?}"
    );
    assert_eq!(
        publish_as_alice("second", "b/x").await,
        Ok(ReasonCode::NO_MATCHING_SUBSCRIBERS)
    );
}

/// A 3.1.1 CONNECT on a fresh TCP connection; whether a CONNACK came back before the close.
async fn gets_connack(addr: SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connect = [
        0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 1, b'x',
    ];
    let _ = s.write_all(&connect).await;
    let mut first = [0u8; 1];
    matches!(
        tokio::time::timeout(WAIT, s.read(&mut first)).await,
        Ok(Ok(1)) if first[0] == 0x20
    )
}

/// `max_connections` on a listener: beyond it a connection is closed at once (no CONNACK), and
/// counted; once a client leaves, the next one gets in.
#[tokio::test]
async fn a_listener_at_its_max_connections_closes_the_next_one() {
    let b = start_with(|c| {
        c.listeners = vec![Listener {
            max_connections: 2,
            ..Listener::new("127.0.0.1:0".parse().unwrap())
        }];
    })
    .await;
    let first = Raw::connect(b.addr, V3_1_1, "one", true).await;
    let _second = Raw::connect(b.addr, V3_1_1, "two", true).await;
    assert!(!gets_connack(b.addr).await, "the third is closed");
    let metrics = b.server.broker().metrics();
    assert_eq!(
        metrics
            .refused_listener_full
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    first.disconnect().await;
    // The first connection's task ends just after its DISCONNECT: try until a place is free.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !gets_connack(b.addr).await {
        assert!(tokio::time::Instant::now() < deadline, "no place freed");
    }
}

/// A CONNECT as `user` (its password `pw`) with client id `id`, a persistent session.
fn connect_as(id: &str, user: &'static str, pw: &'static str) -> roost::protocol::Connect {
    let mut connect = connect_packet(V5, id, false);
    connect.username = Some(ByteStr::from_static(user).unwrap());
    connect.password = Some(Bytes::from_static(pw.as_bytes()));
    connect.properties.make_mut().session_expiry_interval = Some(3600);
    connect
}

/// As Mosquitto: a reloaded ACL file applies to clients already connected (what they may
/// publish, what their subscriptions deliver) and to the subscriptions of offline sessions, not
/// only to the next CONNECT and SUBSCRIBE.
#[tokio::test]
async fn an_acl_reload_reaches_connected_clients_and_stored_subscriptions() {
    let d = dir("live-acl");
    let (passwd, acl) = (d.join("passwd"), d.join("acl"));
    for (user, pw) in [("alice", "a"), ("bob", "b"), ("feed", "f")] {
        roost::passwords::set_password(&passwd, user, pw).unwrap();
    }
    let all =
        "user alice\ntopic readwrite a/#\nuser bob\ntopic read a/#\nuser feed\ntopic write a/#\n";
    std::fs::write(&acl, all).unwrap();
    let b = start_with(|c| {
        c.auth.login_delay_ms = 0;
        c.auth.allow_anonymous = false;
        c.auth.password_file = passwd.clone();
        c.auth.acl_file = acl.clone();
    })
    .await;
    let (mut alice, _) = Raw::connect_with(b.addr, connect_as("alice-1", "alice", "a")).await;
    let granted = alice
        .subscribe_with(1, &[("a/#", sub_opts(QoS::AtLeastOnce))])
        .await;
    assert_eq!(granted.reason_codes, vec![ReasonCode::GRANTED_QOS_1]);
    let (mut bob, _) = Raw::connect_with(b.addr, connect_as("bob-1", "bob", "b")).await;
    let granted = bob
        .subscribe_with(1, &[("a/#", sub_opts(QoS::AtLeastOnce))])
        .await;
    assert_eq!(granted.reason_codes, vec![ReasonCode::GRANTED_QOS_1]);
    bob.disconnect().await;
    let (mut feed, _) = Raw::connect_with(b.addr, connect_as("feed-1", "feed", "f")).await;
    assert_eq!(
        feed.publish_acked("a/before", b"1", QoS::AtLeastOnce, false, 1)
            .await,
        ReasonCode::SUCCESS
    );
    assert_eq!(payloads(&alice.drain().await), ["1"]);

    // alice keeps reading a/# but a/secret, and may no longer write; bob loses a/secret too.
    let fewer = "user alice\ntopic read a/#\ntopic deny a/secret\n\
                 user bob\ntopic read a/#\ntopic deny a/secret\n\
                 user feed\ntopic write a/#\n";
    std::fs::write(&acl, fewer).unwrap();
    assert_eq!(b.server.reload(), Vec::<String>::new());
    // Nobody may read a/secret now: no subscriber matches it.
    for (i, topic, reason) in [
        (2, "a/secret", ReasonCode::NO_MATCHING_SUBSCRIBERS),
        (3, "a/open", ReasonCode::SUCCESS),
    ] {
        assert_eq!(
            feed.publish_acked(topic, topic.as_bytes(), QoS::AtLeastOnce, false, i)
                .await,
            reason,
            "{topic}"
        );
    }
    assert_eq!(
        payloads(&alice.drain().await),
        ["a/open"],
        "a/secret is withheld"
    );
    assert_eq!(
        alice
            .publish_acked("a/x", b"m", QoS::AtLeastOnce, false, 7)
            .await,
        ReasonCode::NOT_AUTHORIZED,
        "alice's write is taken away while she is connected"
    );
    let (mut bob, ack) = Raw::connect_with(b.addr, connect_as("bob-1", "bob", "b")).await;
    assert!(ack.session_present);
    assert_eq!(
        payloads(&bob.drain().await),
        ["1", "a/open"],
        "the offline session's subscription follows the new rules too"
    );
}
