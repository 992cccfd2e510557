//! Test support for the broker tests: an in-process broker on port 0, a raw-packet client built on
//! Roost's own codec, and rumqttc clients (v4 and v5) whose events arrive on a channel.

// Each `tests/<area>.rs` is its own crate and uses a different subset of these helpers.
#![allow(dead_code)]

pub mod process;
#[path = "../wire/mod.rs"]
mod wire;
// Not every test crate that includes this module writes exact bytes.
#[allow(unused_imports)]
pub use wire::frame;

use bytes::BytesMut;
use roost::Server;
use roost::config::{Config, Listener};
use roost::protocol::{
    ByteStr, Connect, DecodeLimits, Packet, ProtocolVersion, QoS, Subscribe, Subscription,
    SubscriptionOptions, decode,
};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// How long a test waits for something that should happen promptly.
pub const WAIT: Duration = Duration::from_secs(5);

/// A broker running in this process.
pub struct TestBroker {
    pub server: Server,
    pub addr: SocketAddr,
}

/// A broker with the default config on 127.0.0.1, port 0.
pub async fn start() -> TestBroker {
    start_with(|_| {}).await
}

/// A broker with the default config changed by `f`, on 127.0.0.1, port 0.
pub async fn start_with(f: impl FnOnce(&mut Config)) -> TestBroker {
    let mut config = Config {
        listeners: vec![Listener::new("127.0.0.1:0".parse().unwrap())],
        ..Config::default()
    };
    // No parking unless a test asks for it (tests/parked.rs does; the release binary's tests and
    // the interop checks in .ci/run run with the default). A connection parked at CONNACK that
    // publishes at once is resumed through the parking lot's thread, so its messages can reach
    // the broker after another client's later packets: MQTT promises no order across clients,
    // but `Raw::drain` (two PING round trips on the subscriber) assumes the publisher's packets
    // were handled first.
    config.limits.idle_park_secs = 0;
    // Nothing kept on disk unless a test asks for it (in a directory of its own): the default
    // directory, `data` in the working directory, would be every test's at once.
    config.persistence.enabled = false;
    f(&mut config);
    let server = Server::start(config).await.expect("broker starts");
    let addr = server.local_addr();
    TestBroker { server, addr }
}

/// A client that speaks raw packets through Roost's codec.
pub struct Raw {
    pub stream: TcpStream,
    pub version: ProtocolVersion,
    buf: BytesMut,
}

impl Raw {
    /// Opens a TCP connection without sending anything.
    pub async fn open(addr: SocketAddr, version: ProtocolVersion) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        // As real MQTT clients do: without it, a small packet written after a large one waits
        // for the peer's delayed ACK (Nagle), ~40 ms per exchange.
        stream.set_nodelay(true).expect("TCP_NODELAY");
        Self {
            stream,
            version,
            buf: BytesMut::new(),
        }
    }

    /// Opens a connection, sends CONNECT and expects CONNACK success.
    pub async fn connect(
        addr: SocketAddr,
        version: ProtocolVersion,
        client_id: &str,
        clean: bool,
    ) -> Self {
        let mut raw = Self::open(addr, version).await;
        raw.send(&Packet::Connect(Box::new(connect_packet(
            version, client_id, clean,
        ))))
        .await;
        match raw.recv().await {
            Packet::ConnAck(a) if !a.reason.is_error() => raw,
            other => panic!("expected CONNACK success, got {other:?}"),
        }
    }

    /// Encodes and sends one packet.
    pub async fn send(&mut self, p: &Packet) {
        let mut out = BytesMut::new();
        p.encode(self.version, &mut out).expect("encode");
        self.stream.write_all(&out).await.expect("write");
    }

    /// Sends raw bytes as they are.
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// The next packet from the broker, within [`WAIT`]; panics on close or timeout.
    pub async fn recv(&mut self) -> Packet {
        match self.try_recv(WAIT).await {
            Some(p) => p,
            None => panic!("connection closed while waiting for a packet"),
        }
    }

    /// The next packet within `wait`; `None` on timeout or close.
    pub async fn try_recv_for(&mut self, wait: Duration) -> Option<Packet> {
        tokio::time::timeout(wait, self.try_recv(wait + Duration::from_secs(1)))
            .await
            .ok()
            .flatten()
    }

    /// The next packet, or `None` if the broker closed the connection. Panics on timeout.
    pub async fn try_recv(&mut self, wait: Duration) -> Option<Packet> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(p) = decode(&mut self.buf, self.version, &DecodeLimits::default())
                .expect("broker sent a valid packet")
            {
                return Some(p);
            }
            let read = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await;
            match read {
                Err(_) => panic!("timed out waiting for a packet"),
                Ok(Ok(0)) | Ok(Err(_)) => return None,
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Waits for the broker to close the connection, returning the packets it sent first; then
    /// closes this side too, as a client does (the broker lingers until it has).
    pub async fn closed(&mut self) -> Vec<Packet> {
        let mut before = Vec::new();
        while let Some(p) = self.try_recv(WAIT).await {
            before.push(p);
        }
        let _ = self.stream.shutdown().await;
        before
    }

    /// Subscribes to one filter and returns the SUBACK reason codes.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> Vec<u8> {
        let options = SubscriptionOptions {
            qos,
            ..Default::default()
        };
        self.send(&Packet::Subscribe(subscribe_packet(
            1,
            &[(filter, options)],
        )))
        .await;
        match self.recv().await {
            Packet::SubAck(a) => a.reason_codes.iter().map(|c| c.0).collect(),
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }
}

/// A CONNECT with keep alive 60 and nothing else.
pub fn connect_packet(version: ProtocolVersion, client_id: &str, clean: bool) -> Connect {
    Connect {
        protocol: version,
        clean_start: clean,
        keep_alive: 60,
        properties: Default::default(),
        client_id: ByteStr::try_from(client_id).unwrap(),
        will: None,
        username: None,
        password: None,
    }
}

/// A SUBSCRIBE for the given filters.
pub fn subscribe_packet(packet_id: u16, filters: &[(&str, SubscriptionOptions)]) -> Subscribe {
    Subscribe {
        packet_id,
        properties: Default::default(),
        subscriptions: filters
            .iter()
            .map(|(f, options)| Subscription {
                filter: ByteStr::try_from(*f).unwrap(),
                options: *options,
            })
            .collect(),
    }
}

/// A rumqttc 3.1.1 client whose event loop runs in a task; events arrive on the receiver.
pub async fn client_v4(
    addr: SocketAddr,
    id: &str,
    configure: impl FnOnce(&mut rumqttc::MqttOptions),
) -> (
    rumqttc::AsyncClient,
    mpsc::UnboundedReceiver<rumqttc::Event>,
) {
    let mut opts = rumqttc::MqttOptions::new(id, addr.ip().to_string(), addr.port());
    opts.set_keep_alive(Duration::from_secs(30));
    configure(&mut opts);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(opts, 100);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if tx.send(event).is_err() {
                return;
            }
        }
    });
    (client, rx)
}

/// Waits for the first v4 event that `f` maps to `Some`.
pub async fn next_v4<T>(
    rx: &mut mpsc::UnboundedReceiver<rumqttc::Event>,
    mut f: impl FnMut(&rumqttc::Packet) -> Option<T>,
) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            match rx.recv().await {
                Some(rumqttc::Event::Incoming(p)) => {
                    if let Some(t) = f(&p) {
                        return t;
                    }
                }
                Some(_) => {}
                None => panic!("client event loop ended"),
            }
        }
    })
    .await
    .expect("timed out waiting for a client event")
}

/// A rumqttc MQTT 5 client whose event loop runs in a task; events arrive on the receiver.
pub async fn client_v5(
    addr: SocketAddr,
    id: &str,
    configure: impl FnOnce(&mut rumqttc::v5::MqttOptions),
) -> (
    rumqttc::v5::AsyncClient,
    mpsc::UnboundedReceiver<rumqttc::v5::Event>,
) {
    let mut opts = rumqttc::v5::MqttOptions::new(id, addr.ip().to_string(), addr.port());
    opts.set_keep_alive(Duration::from_secs(30));
    configure(&mut opts);
    let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(opts, 100);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if tx.send(event).is_err() {
                return;
            }
        }
    });
    (client, rx)
}

/// Waits for the first v5 event that `f` maps to `Some`.
pub async fn next_v5<T>(
    rx: &mut mpsc::UnboundedReceiver<rumqttc::v5::Event>,
    mut f: impl FnMut(&rumqttc::v5::mqttbytes::v5::Packet) -> Option<T>,
) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            match rx.recv().await {
                Some(rumqttc::v5::Event::Incoming(p)) => {
                    if let Some(t) = f(&p) {
                        return t;
                    }
                }
                Some(_) => {}
                None => panic!("client event loop ended"),
            }
        }
    })
    .await
    .expect("timed out waiting for a client event")
}

// Helpers for the delivery tests (publish_qos, subscribe, wildcard, retain, session).

/// A PUBLISH with no properties.
pub fn publish_packet(
    topic: &str,
    payload: &[u8],
    qos: QoS,
    retain: bool,
    packet_id: u16,
) -> roost::protocol::Publish {
    roost::protocol::Publish {
        qos,
        retain,
        packet_id,
        ..roost::protocol::Publish::new(
            ByteStr::try_from(topic).unwrap(),
            bytes::Bytes::copy_from_slice(payload),
        )
    }
}

/// Subscription options with this QoS and every v5 option at its default.
pub fn sub_opts(qos: QoS) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        ..Default::default()
    }
}

/// The payloads of some PUBLISH packets, as strings, in the order received.
pub fn payloads(publishes: &[roost::protocol::Publish]) -> Vec<String> {
    publishes
        .iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect()
}

impl Raw {
    /// Sends `connect` and returns the CONNACK, which must be a success.
    pub async fn connect_with(
        addr: SocketAddr,
        connect: Connect,
    ) -> (Self, roost::protocol::ConnAck) {
        let mut raw = Self::open(addr, connect.protocol).await;
        raw.send(&Packet::Connect(Box::new(connect))).await;
        match raw.recv().await {
            Packet::ConnAck(a) if !a.reason.is_error() => (raw, a),
            other => panic!("expected CONNACK success, got {other:?}"),
        }
    }

    /// Sends a PUBLISH without waiting for anything.
    pub async fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS, retain: bool, id: u16) {
        let p = publish_packet(topic, payload, qos, retain, id);
        self.send(&Packet::Publish(p)).await;
    }

    /// Publishes and completes the sender's side of the handshake (QoS 0: a PINGREQ round
    /// trip), so the broker has routed the message when this returns. Returns the reason code of
    /// the PUBACK or PUBREC (SUCCESS at QoS 0 and in 3.1.1).
    pub async fn publish_acked(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        retain: bool,
        id: u16,
    ) -> roost::protocol::ReasonCode {
        self.publish(topic, payload, qos, retain, id).await;
        match qos {
            QoS::AtMostOnce => {
                self.send(&Packet::PingReq).await;
                assert_eq!(self.recv().await, Packet::PingResp);
                roost::protocol::ReasonCode::SUCCESS
            }
            QoS::AtLeastOnce => match self.recv().await {
                Packet::PubAck(a) if a.packet_id == id => a.reason,
                other => panic!("expected PUBACK {id}, got {other:?}"),
            },
            QoS::ExactlyOnce => {
                let reason = match self.recv().await {
                    Packet::PubRec(a) if a.packet_id == id => a.reason,
                    other => panic!("expected PUBREC {id}, got {other:?}"),
                };
                self.send(&Packet::PubRel(roost::protocol::PubResp::new(id)))
                    .await;
                match self.recv().await {
                    Packet::PubComp(a) if a.packet_id == id => {}
                    other => panic!("expected PUBCOMP {id}, got {other:?}"),
                }
                reason
            }
        }
    }

    /// The next packet, which must be a PUBLISH.
    pub async fn expect_publish(&mut self) -> roost::protocol::Publish {
        match self.recv().await {
            Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// Acknowledges a received PUBLISH as a client does: PUBACK for QoS 1; PUBREC, PUBREL
    /// (checked) and PUBCOMP for QoS 2; nothing for QoS 0.
    pub async fn ack(&mut self, p: &roost::protocol::Publish) {
        let id = p.packet_id;
        match p.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => {
                self.send(&Packet::PubAck(roost::protocol::PubResp::new(id)))
                    .await
            }
            QoS::ExactlyOnce => {
                self.send(&Packet::PubRec(roost::protocol::PubResp::new(id)))
                    .await;
                match self.recv().await {
                    Packet::PubRel(r) if r.packet_id == id => {}
                    other => panic!("expected PUBREL {id}, got {other:?}"),
                }
                self.send(&Packet::PubComp(roost::protocol::PubResp::new(id)))
                    .await;
            }
        }
    }

    /// Subscribes with explicit options and packet id; returns the SUBACK.
    pub async fn subscribe_with(
        &mut self,
        packet_id: u16,
        filters: &[(&str, SubscriptionOptions)],
    ) -> roost::protocol::SubAck {
        self.send(&Packet::Subscribe(subscribe_packet(packet_id, filters)))
            .await;
        match self.recv().await {
            Packet::SubAck(a) => a,
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Every PUBLISH the broker has for this client right now, acknowledged as it arrives
    /// (QoS 2: PUBREC, then PUBCOMP for the broker's PUBREL), until two PINGREQ round trips in a
    /// row bring nothing; any other packet panics.
    ///
    /// Two round trips, not one: a connection may answer a PINGREQ it reads in the same wake-up
    /// as a queued message before it drains that message into the write buffer, but it always
    /// drains the queue before it reads the next packet. So anything queued for this client
    /// before the first PINGREQ was sent arrives before the second PINGRESP.
    pub async fn drain(&mut self) -> Vec<roost::protocol::Publish> {
        use roost::protocol::PubResp;
        let mut got = Vec::new();
        let mut quiet = 0;
        while quiet < 2 {
            quiet += 1;
            self.send(&Packet::PingReq).await;
            loop {
                match self.recv().await {
                    Packet::PingResp => break,
                    Packet::Publish(p) => {
                        let id = p.packet_id;
                        match p.qos {
                            QoS::AtMostOnce => {}
                            QoS::AtLeastOnce => self.send(&Packet::PubAck(PubResp::new(id))).await,
                            QoS::ExactlyOnce => self.send(&Packet::PubRec(PubResp::new(id))).await,
                        }
                        got.push(p);
                        quiet = 0;
                    }
                    Packet::PubRel(r) => {
                        self.send(&Packet::PubComp(PubResp::new(r.packet_id))).await;
                        quiet = 0;
                    }
                    other => panic!("expected PUBLISH, PUBREL or PINGRESP, got {other:?}"),
                }
            }
        }
        got
    }

    /// Asserts that the broker has nothing queued for this client (see [`Raw::drain`]).
    pub async fn expect_nothing(&mut self) {
        for _ in 0..2 {
            self.send(&Packet::PingReq).await;
            match self.recv().await {
                Packet::PingResp => {}
                other => panic!("expected nothing before PINGRESP, got {other:?}"),
            }
        }
    }

    /// Waits for the broker to close the connection after a DISCONNECT with `reason`, its only
    /// packet before the close; returns that DISCONNECT.
    pub async fn expect_disconnect(
        &mut self,
        reason: roost::protocol::ReasonCode,
    ) -> roost::protocol::Disconnect {
        match self.closed().await.as_slice() {
            [Packet::Disconnect(d)] if d.reason == reason => d.clone(),
            other => panic!("expected DISCONNECT {reason} then close, got {other:?}"),
        }
    }

    /// Sends DISCONNECT and waits for the broker to close the connection.
    ///
    /// On the current-thread runtime of `#[tokio::test]` the broker's connection task detaches
    /// the session in the same poll in which it closes the socket, so once this returns the
    /// session is offline (or gone, for a clean session).
    pub async fn disconnect(mut self) {
        self.send(&Packet::Disconnect(Default::default())).await;
        let rest = self.closed().await;
        assert!(rest.is_empty(), "packets after DISCONNECT: {rest:?}");
    }
}

// Helpers for the robustness tests (will, keepalive, takeover, malformed, slow_consumer).

impl Raw {
    /// Wraps an already connected stream (one opened with socket options of its own, say)
    /// without sending anything.
    pub fn from_stream(stream: TcpStream, version: ProtocolVersion) -> Self {
        stream.set_nodelay(true).expect("TCP_NODELAY");
        Self {
            stream,
            version,
            buf: BytesMut::new(),
        }
    }
}
