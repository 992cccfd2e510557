//! Every retained message reaches a new subscriber (issue 14, section 0b): a subscription's
//! retained messages are taken from the store as the connection sends them, never through the
//! bounded session queue (`sessions.max_queued_messages`, 1,000 here, once cut 100,000 retained
//! messages to 1,000 without a word), in topic order, with live messages that arrive meanwhile
//! queued behind them so that each topic's messages stay in order.

mod support;

use bytes::Bytes;
use roost::Message;
use roost::protocol::ProtocolVersion::{V3_1_1, V5};
use roost::protocol::{ByteStr, Packet, ProtocolVersion, PubResp, QoS};
use std::collections::HashMap;
use std::sync::Arc;
use support::*;

const DEVICES: usize = 100_000;

/// The status topic of device `i`.
fn status(i: usize) -> String {
    format!("devices/{i}/status")
}

fn message(topic: &str, payload: &str, qos: QoS, retain: bool) -> Message {
    Message {
        topic: ByteStr::try_from(topic).unwrap(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        qos,
        retain,
        properties: Default::default(),
        publisher: Arc::from("fleet"),
        expires_at: None,
    }
}

/// A fleet's last known states, stored straight into the broker: each device's status (which
/// the dashboard's filter matches) and its config (which it does not).
fn store_fleet(broker: &roost::Broker, qos: QoS) {
    for i in 0..DEVICES {
        broker.publish(message(&status(i), "old", qos, true));
        broker.publish(message(&format!("devices/{i}/config"), "cfg", qos, true));
    }
    assert_eq!(broker.retained_count(), 2 * DEVICES);
}

/// `n` retained messages at QoS 1 on `r/0000`, `r/0001`, ...
fn store_numbered(broker: &roost::Broker, n: usize) {
    for i in 0..n {
        broker.publish(message(&format!("r/{i:04}"), "v", QoS::AtLeastOnce, true));
    }
}

/// A client whose socket receive buffer is small, so the broker's writes fill it often and the
/// connection has to wait for the reader: a slow reader, without sleeping.
async fn slow_client(addr: std::net::SocketAddr, version: ProtocolVersion, id: &str) -> Raw {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let mut raw = Raw::from_stream(stream, version);
    raw.send(&Packet::Connect(Box::new(connect_packet(
        version, id, true,
    ))))
    .await;
    assert!(matches!(raw.recv().await, Packet::ConnAck(a) if !a.reason.is_error()));
    raw
}

/// Subscribes a slow dashboard to `devices/+/status` over 100,000 stored statuses, publishes
/// live updates while the retained messages stream, and checks what arrives.
async fn dashboard_gets_every_status(version: ProtocolVersion, qos: QoS) {
    let b = start_with(|c| c.sessions.max_queued_messages = 1_000).await;
    store_fleet(b.server.broker(), qos);
    let mut dash = slow_client(b.addr, version, "dashboard").await;
    let ack = dash
        .subscribe_with(1, &[("devices/+/status", sub_opts(qos))])
        .await;
    assert_eq!(ack.reason_codes[0].0, qos as u8);

    // The order the stream hands them out in: level by level, in byte order.
    let mut order: Vec<String> = (0..DEVICES).map(status).collect();
    order.sort();
    // Mid-stream, live updates: a status already sent, one not reached yet (retained, so the
    // stream carries the new value when it gets there, and the live copy follows), and one
    // not reached yet sent without retain (the stream still carries the old value).
    let (early, late, late_plain) = (
        order[10].clone(),
        order[DEVICES - 10].clone(),
        order[DEVICES - 5].clone(),
    );

    let mut got: Vec<(String, String, bool)> = Vec::with_capacity(DEVICES + 3);
    let mut id = 100;
    let (mut topics, mut updates) = (std::collections::HashSet::new(), 0);
    while topics.len() < DEVICES || updates < 3 {
        let p = dash.expect_publish().await;
        assert_eq!(p.qos, qos, "{version:?}");
        if qos == QoS::AtLeastOnce {
            dash.send(&Packet::PubAck(PubResp::new(p.packet_id))).await;
        }
        topics.insert(p.topic.to_string());
        updates += usize::from(&p.payload[..] == b"new" && !p.retain);
        got.push((
            p.topic.to_string(),
            String::from_utf8_lossy(&p.payload).into_owned(),
            p.retain,
        ));
        if got.len() == 1_000 {
            let mut publisher = Raw::connect(b.addr, V5, "fleet-live", true).await;
            for (topic, retain) in [(&early, true), (&late, true), (&late_plain, false)] {
                id += 1;
                publisher
                    .publish_acked(topic, b"new", QoS::AtLeastOnce, retain, id)
                    .await;
            }
            publisher.disconnect().await;
        }
    }
    dash.expect_nothing().await;

    // The stream: every status in topic order, each once, with RETAIN and the value stored
    // when the stream got to it.
    let stream: Vec<&(String, String, bool)> = got.iter().filter(|(_, _, r)| *r).collect();
    let streamed: Vec<&String> = stream.iter().map(|(t, _, _)| t).collect();
    assert_eq!(
        streamed,
        order.iter().collect::<Vec<_>>(),
        "{version:?} {qos:?}: the retained statuses in topic order"
    );
    assert!(
        stream.iter().all(|(t, p, _)| p == "old" || *t == late),
        "{version:?} {qos:?}"
    );
    // The live updates, in the order published, without RETAIN (not Retain As Published),
    // each after its topic's old value if that came at all.
    let live: Vec<(&str, &str)> = got
        .iter()
        .filter(|(_, _, r)| !*r)
        .map(|(t, p, _)| (t.as_str(), p.as_str()))
        .collect();
    assert_eq!(
        live,
        [
            (early.as_str(), "new"),
            (late.as_str(), "new"),
            (late_plain.as_str(), "new")
        ],
        "{version:?} {qos:?}"
    );
    let mut per_topic: HashMap<&str, Vec<&str>> = HashMap::new();
    for (t, p, _) in &got {
        per_topic.entry(t).or_default().push(p);
    }
    assert_eq!(per_topic[early.as_str()], ["old", "new"]);
    assert_eq!(per_topic[late_plain.as_str()], ["old", "new"]);
    if qos == QoS::AtLeastOnce {
        // The in-flight window (20) keeps the stream from running ahead of the reader, so the
        // update came before the stream reached `late`: the stream carried the new value, and
        // the live copy came after it. Never lost, never out of order.
        assert_eq!(per_topic[late.as_str()], ["new", "new"]);
    } else {
        // At QoS 0 the socket's send buffer may hold the whole stream by then.
        assert!(matches!(
            per_topic[late.as_str()][..],
            ["new", "new"] | ["old", "new"]
        ));
    }
    assert_eq!(per_topic.len(), DEVICES, "every device's status arrived");
}

#[tokio::test]
async fn a_slow_dashboard_gets_all_100k_retained_statuses_at_qos0() {
    dashboard_gets_every_status(V3_1_1, QoS::AtMostOnce).await;
}

#[tokio::test]
async fn a_slow_dashboard_gets_all_100k_retained_statuses_at_qos1() {
    dashboard_gets_every_status(V5, QoS::AtLeastOnce).await;
}

/// A persistent session that leaves in the middle of its retained stream gets the rest when it
/// comes back; what was in flight is resent first.
#[tokio::test]
async fn a_retained_stream_resumes_with_its_session() {
    let b = start().await;
    store_numbered(b.server.broker(), 3_000);
    let props = roost::protocol::Properties {
        session_expiry_interval: Some(60),
        ..Default::default()
    };
    let mut connect = connect_packet(V5, "resumer", true);
    connect.properties = props.into();
    let mut sub = Raw::connect_with(b.addr, connect.clone()).await.0;
    assert_eq!(sub.subscribe("r/#", QoS::AtLeastOnce).await, [1]);
    let mut topics = Vec::new();
    for _ in 0..500 {
        let p = sub.expect_publish().await;
        sub.send(&Packet::PubAck(PubResp::new(p.packet_id))).await;
        topics.push(p.topic.to_string());
    }
    // Gone without DISCONNECT, with up to a window's worth in flight.
    sub.send(&Packet::PingReq).await;
    drop(sub);
    connect.clean_start = false;
    let (mut sub, ack) = Raw::connect_with(b.addr, connect).await;
    assert!(ack.session_present);
    for p in sub.drain().await {
        assert!(p.retain);
        // What was in flight when the client left comes again, with DUP: also what it had
        // acknowledged, when its PUBACKs were lost with the connection (its socket closed with
        // unread messages, so the kernel reset it and dropped what the broker had not read).
        if p.dup && topics.contains(&p.topic.to_string()) {
            continue;
        }
        topics.push(p.topic.to_string());
    }
    let want: Vec<String> = (0..3_000).map(|i| format!("r/{i:04}")).collect();
    assert_eq!(topics, want);
}

/// An UNSUBSCRIBE stops the subscription's retained stream (MQTT-3.10.4-2): what was in flight
/// is finished, nothing more comes.
#[tokio::test]
async fn unsubscribing_stops_the_retained_stream() {
    let b = start().await;
    store_numbered(b.server.broker(), 3_000);
    let mut sub = Raw::connect(b.addr, V5, "quitter", true).await;
    assert_eq!(sub.subscribe("r/#", QoS::AtLeastOnce).await, [1]);
    let mut got = 0;
    for _ in 0..100 {
        let p = sub.expect_publish().await;
        sub.send(&Packet::PubAck(PubResp::new(p.packet_id))).await;
        got += 1;
    }
    sub.send(&Packet::Unsubscribe(roost::protocol::Unsubscribe {
        packet_id: 7,
        properties: Default::default(),
        filters: vec![ByteStr::from_static("r/#").unwrap()],
    }))
    .await;
    // Until the UNSUBACK: at most the in-flight window (20) was sent before it.
    loop {
        match sub.recv().await {
            Packet::Publish(p) => {
                sub.send(&Packet::PubAck(PubResp::new(p.packet_id))).await;
                got += 1;
            }
            Packet::UnsubAck(a) => {
                assert_eq!(a.reason_codes, [roost::protocol::ReasonCode::SUCCESS]);
                break;
            }
            other => panic!("expected PUBLISH or UNSUBACK, got {other:?}"),
        }
    }
    got += sub.drain().await.len();
    assert!(
        got <= 100 + 20,
        "{got} retained messages after unsubscribing at 100"
    );
    assert_eq!(b.server.broker().queue_depth("quitter"), Some((0, 0)));
}
