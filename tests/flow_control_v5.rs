//! Flow control and subscription options a v5 client sets (MQTT 5.0 sections 3.1.2.11.4, 3.8.3.1):
//! the server never sends a packet over the client's Maximum Packet Size (it discards it as if
//! delivered and goes on), and No Local keeps a client's own messages from it.

mod support;

use roost::broker::Metrics;
use roost::protocol::ProtocolVersion::V5;
use roost::protocol::{QoS, SubscriptionOptions};
use support::*;

#[tokio::test]
async fn a_message_over_the_clients_maximum_packet_size_is_discarded_not_sent() {
    let b = start().await;
    let mut c = connect_packet(V5, "small", true);
    c.properties.maximum_packet_size = Some(128);
    let (mut small, _) = Raw::connect_with(b.addr, c).await;
    small.subscribe("m/#", QoS::AtLeastOnce).await;
    let mut publisher = Raw::connect(b.addr, V5, "publisher", true).await;
    let big = vec![b'x'; 500];
    for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        let id = u16::try_from(2 * i + 1).unwrap();
        publisher.publish_acked("m/big", &big, qos, false, id).await;
        publisher
            .publish_acked("m/small", b"fits", qos, false, id + 1)
            .await;
    }
    // [MQTT-3.1.2-24, MQTT-3.1.2-25] the large ones are skipped; the window is not held by them.
    assert_eq!(payloads(&small.drain().await), ["fits", "fits", "fits"]);
    assert_eq!(
        Metrics::get(&b.server.broker().metrics().messages_dropped),
        3
    );
    b.server.shutdown().await;
}

#[tokio::test]
async fn no_local_keeps_a_clients_own_messages_from_it() {
    let b = start().await;
    let mut me = Raw::connect(b.addr, V5, "me", true).await;
    let options = SubscriptionOptions {
        no_local: true,
        ..sub_opts(QoS::AtLeastOnce)
    };
    me.subscribe_with(1, &[("chat", options)]).await;
    let mut other = Raw::connect(b.addr, V5, "other", true).await;
    other.subscribe("chat", QoS::AtLeastOnce).await;
    me.publish_acked("chat", b"from me", QoS::AtLeastOnce, false, 2)
        .await;
    let mut third = Raw::connect(b.addr, V5, "third", true).await;
    third
        .publish_acked("chat", b"from other", QoS::AtLeastOnce, false, 3)
        .await;
    // [MQTT-3.8.3-3] not back to the connection that published it.
    assert_eq!(payloads(&me.drain().await), ["from other"]);
    assert_eq!(payloads(&other.drain().await), ["from me", "from other"]);
    b.server.shutdown().await;
}

#[tokio::test]
async fn more_unreleased_qos2_messages_than_our_receive_maximum_is_disconnect_0x93() {
    let b = start_with(|c| c.limits.receive_maximum = 2).await;
    let (mut c, ack) = Raw::connect_with(b.addr, connect_packet(V5, "greedy", true)).await;
    assert_eq!(ack.properties.receive_maximum, Some(2));
    for id in 1..=2 {
        c.publish("q", b"x", QoS::ExactlyOnce, false, id).await;
        assert!(matches!(c.recv().await, roost::protocol::Packet::PubRec(_)));
    }
    // A third before any PUBREL exceeds the Receive Maximum the CONNACK announced: 5.0
    // section 3.3.4, DISCONNECT 0x93.
    c.publish("q", b"x", QoS::ExactlyOnce, false, 3).await;
    c.expect_disconnect(roost::protocol::ReasonCode::RECEIVE_MAXIMUM_EXCEEDED)
        .await;
    b.server.shutdown().await;
}
