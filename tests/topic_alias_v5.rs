//! Topic aliases (MQTT 5.0 section 3.3.2.3.4) in both directions: a client's aliases up to the
//! Topic Alias Maximum the server announces, and the server's aliases toward a client that
//! announced one, reused least recently used first. (The refusals, alias 0, above the maximum
//! and an unknown alias, are cases of `malformed.rs`.)

mod support;

use roost::protocol::ProtocolVersion::V5;
use roost::protocol::{Packet, Publish, QoS};
use std::collections::HashMap;
use support::*;

fn aliased(topic: &str, payload: &str, alias: u16) -> Publish {
    let mut p = publish_packet(topic, payload.as_bytes(), QoS::AtMostOnce, false, 0);
    p.properties.make_mut().topic_alias = Some(alias);
    p
}

#[tokio::test]
async fn a_clients_aliases_stand_for_the_topics_it_set_them_to() {
    let b = start().await;
    let mut sub = Raw::connect(b.addr, V5, "sub", true).await;
    sub.subscribe("#", QoS::AtMostOnce).await;
    let (mut publisher, ack) = Raw::connect_with(b.addr, connect_packet(V5, "pub", true)).await;
    assert_eq!(ack.properties.topic_alias_maximum, Some(10));
    for p in [
        aliased("sensors/kitchen/temp", "21.5", 1),
        aliased("", "21.6", 1),
        aliased("sensors/hall/temp", "19.0", 10),
        aliased("", "21.7", 1),
        aliased("sensors/attic/temp", "15.0", 1), // alias 1 now means the attic
        aliased("", "15.1", 1),
        aliased("", "19.1", 10),
    ] {
        publisher.send(&Packet::Publish(p)).await;
    }
    let got: Vec<(String, String)> = sub
        .drain()
        .await
        .iter()
        .map(|p| {
            assert_eq!(
                p.properties.topic_alias, None,
                "the client asked for no aliases"
            );
            (
                p.topic.to_string(),
                String::from_utf8_lossy(&p.payload).into(),
            )
        })
        .collect();
    let want = [
        ("sensors/kitchen/temp", "21.5"),
        ("sensors/kitchen/temp", "21.6"),
        ("sensors/hall/temp", "19.0"),
        ("sensors/kitchen/temp", "21.7"),
        ("sensors/attic/temp", "15.0"),
        ("sensors/attic/temp", "15.1"),
        ("sensors/hall/temp", "19.1"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(t, p)| (t.to_string(), p.to_string()))
        .collect();
    assert_eq!(got, want);
    b.server.shutdown().await;
}

#[tokio::test]
async fn the_server_uses_aliases_toward_a_client_that_accepts_them() {
    two_aliases_toward_the_client(2, 10).await;
}

/// A client may announce 65,535 aliases; the server uses no more than it accepts itself
/// (`limits.topic_alias_maximum`), so its table stays small.
#[tokio::test]
async fn the_server_uses_no_more_aliases_than_it_accepts() {
    two_aliases_toward_the_client(u16::MAX, 2).await;
}

/// With `client_max` announced by the client and `limits.topic_alias_maximum = server_max`, of
/// which the smaller is 2.
async fn two_aliases_toward_the_client(client_max: u16, server_max: u16) {
    let b = start_with(|c| c.limits.topic_alias_maximum = server_max).await;
    let mut c = connect_packet(V5, "sub", true);
    c.properties.make_mut().topic_alias_maximum = Some(client_max);
    let (mut sub, _) = Raw::connect_with(b.addr, c).await;
    sub.subscribe("t/#", QoS::AtLeastOnce).await;
    let mut publisher = Raw::connect(b.addr, V5, "pub", true).await;
    let sequence = ["t/1", "t/1", "t/2", "t/3", "t/1", "t/3"];
    for (i, topic) in sequence.iter().enumerate() {
        let id = u16::try_from(i + 1).unwrap();
        publisher
            .publish_acked(topic, i.to_string().as_bytes(), QoS::AtLeastOnce, false, id)
            .await;
    }
    let got = sub.drain().await;
    // What each PUBLISH carried: (topic as sent, alias).
    let wire: Vec<(&str, Option<u16>)> = got
        .iter()
        .map(|p| (p.topic.as_str(), p.properties.topic_alias))
        .collect();
    assert_eq!(
        wire,
        [
            ("t/1", Some(1)), // assigned
            ("", Some(1)),    // reused: two bytes instead of the topic
            ("t/2", Some(2)),
            ("t/3", Some(1)), // both taken: t/1's alias was the least recently used
            ("t/1", Some(2)), // now t/2's was
            ("", Some(1)),
        ]
    );
    // Resolved as the client must, every message is on the topic it was published to.
    let mut table: HashMap<u16, String> = HashMap::new();
    for (p, want) in got.iter().zip(sequence) {
        let alias = p.properties.topic_alias.unwrap();
        if !p.topic.is_empty() {
            table.insert(alias, p.topic.to_string());
        }
        assert_eq!(table[&alias], want);
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn aliases_do_not_outlive_the_connection() {
    let b = start().await;
    let mut c = connect_packet(V5, "sub", false);
    c.properties.make_mut().topic_alias_maximum = Some(5);
    c.properties.make_mut().session_expiry_interval = Some(60);
    let (mut sub, _) = Raw::connect_with(b.addr, c.clone()).await;
    sub.subscribe("t/#", QoS::AtLeastOnce).await;
    let mut publisher = Raw::connect(b.addr, V5, "pub", true).await;
    publisher
        .publish_acked("t/x", b"1", QoS::AtLeastOnce, false, 1)
        .await;
    assert_eq!(sub.drain().await[0].properties.topic_alias, Some(1));
    sub.disconnect().await;
    let (mut sub, _) = Raw::connect_with(b.addr, c).await;
    publisher
        .publish_acked("t/x", b"2", QoS::AtLeastOnce, false, 2)
        .await;
    let got = sub.drain().await;
    // A new connection starts with no aliases [MQTT-3.3.2-7]: the topic is sent again.
    assert_eq!(got[0].topic.as_str(), "t/x");
    assert_eq!(got[0].properties.topic_alias, Some(1));
    b.server.shutdown().await;
}
