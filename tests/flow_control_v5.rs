//! Flow control and subscription options a v5 client sets (MQTT 5.0 sections 3.1.2.11.4, 3.8.3.1):
//! the server never sends a packet over the client's Maximum Packet Size (it discards it as if
//! delivered and goes on), and No Local keeps a client's own messages from it.

mod support;

use roost::Metrics;
use roost::protocol::ProtocolVersion::V5;
use roost::protocol::{QoS, SubscriptionOptions};
use support::*;

#[tokio::test]
async fn a_message_over_the_clients_maximum_packet_size_is_discarded_not_sent() {
    let b = start().await;
    let mut c = connect_packet(V5, "small", true);
    c.properties.make_mut().maximum_packet_size = Some(128);
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

/// Reads everything until the broker closes the connection; the exact bytes.
async fn bytes_until_closed(c: &mut Raw) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, c.stream.read_to_end(&mut got))
        .await
        .expect("the broker closes the connection")
        .expect("a clean end of stream");
    got
}

/// Issue 14, section 7: the client's Maximum Packet Size holds for every packet, not only
/// PUBLISH [MQTT-3.1.2-24]. The optional Reason String goes first; a CONNACK that does not fit
/// even so is refused with a bare CONNACK 0x95 (nothing at all below 5 bytes) before any
/// session is made; a SUBACK or UNSUBACK that cannot fit is refused with DISCONNECT 0x95
/// before anything is subscribed or unsubscribed.
#[tokio::test]
async fn the_clients_maximum_packet_size_holds_for_every_packet() {
    use roost::protocol::{Packet, Unsubscribe};
    let b = start().await;
    let with_limit = |id: &str, limit: u32| {
        let mut c = connect_packet(V5, id, true);
        c.properties.make_mut().maximum_packet_size = Some(limit);
        c
    };
    // How large the CONNACK is: a limit of exactly that connects, one less does not.
    let (c, ack) = Raw::connect_with(b.addr, with_limit("probe", 1024)).await;
    let size = Packet::ConnAck(ack).encoded_len(V5) as u32;
    c.disconnect().await;
    let (c, _) = Raw::connect_with(b.addr, with_limit("exact", size)).await;
    c.disconnect().await;
    for (limit, want) in [
        (size - 1, &[0x20, 3, 0, 0x95, 0][..]),
        (5, &[0x20, 3, 0, 0x95, 0]),
        (4, &[]),
    ] {
        let mut c = Raw::open(b.addr, V5).await;
        c.send(&Packet::Connect(Box::new(with_limit("small", limit))))
            .await;
        assert_eq!(bytes_until_closed(&mut c).await, want, "limit {limit}");
        assert!(!b.server.broker().has_session("small"), "limit {limit}");
    }

    // SUBACK: 5 bytes and one per filter. With a limit of 20, 15 filters fit, 16 do not. The
    // sessions outlive their connections, so what they hold after the close is what the
    // refused packets left.
    let persistent = |id: &str| {
        let mut c = with_limit(id, 20);
        c.properties.make_mut().session_expiry_interval = Some(60);
        c
    };
    let (mut c, _) = Raw::connect_with(b.addr, persistent("subs")).await;
    let filters: Vec<String> = (0..16).map(|i| format!("f/{i}")).collect();
    let opts: Vec<(&str, SubscriptionOptions)> = filters
        .iter()
        .map(|f| (f.as_str(), sub_opts(QoS::AtMostOnce)))
        .collect();
    assert_eq!(
        c.subscribe_with(1, &opts[..15]).await.reason_codes.len(),
        15
    );
    let unsubscribe = Packet::Unsubscribe(Unsubscribe {
        packet_id: 2,
        properties: Default::default(),
        filters: filters
            .iter()
            .map(|f| roost::protocol::ByteStr::try_from(f.as_str()).unwrap())
            .collect(),
    });
    c.send(&unsubscribe).await;
    // DISCONNECT 0x95; its Reason String would not fit in 20 bytes.
    assert_eq!(bytes_until_closed(&mut c).await, [0xE0, 1, 0x95]);
    assert_eq!(
        b.server.broker().subscription_count(),
        15,
        "nothing unsubscribed"
    );

    let (mut c, _) = Raw::connect_with(b.addr, persistent("subs2")).await;
    c.send(&Packet::Subscribe(subscribe_packet(3, &opts))).await;
    assert_eq!(bytes_until_closed(&mut c).await, [0xE0, 1, 0x95]);
    assert_eq!(
        b.server.broker().subscription_count(),
        15,
        "nothing subscribed"
    );
}

/// A refusing CONNACK loses its Reason String, not its reason code, when the client's limit is
/// too small for both [MQTT-3.2.2-19].
#[tokio::test]
async fn a_refusal_drops_its_reason_string_to_fit_the_clients_limit() {
    use roost::protocol::Packet;
    let b = start_with(|c| c.auth.allow_anonymous = false).await;
    for (limit, short) in [(8, true), (1024, false)] {
        let mut connect = connect_packet(V5, "anonymous", true);
        connect.properties.make_mut().maximum_packet_size = Some(limit);
        let mut c = Raw::open(b.addr, V5).await;
        c.send(&Packet::Connect(Box::new(connect))).await;
        let got = bytes_until_closed(&mut c).await;
        assert_eq!(&got[2..4], [0, 0x87], "Not authorized");
        assert_eq!(got.len() == 5, short, "limit {limit}: {got:02X?}");
    }
}
