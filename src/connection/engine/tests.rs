//! The engine without a socket: packets in as byte literals, packets out compared byte for
//! byte, and a clock that moves only when a test says so.

use super::Engine;
use crate::auth::{Authenticator, Exchange, Methods, Step};
use crate::broker::Broker;
use crate::config::Config;
use crate::connection::Close;
use crate::protocol::{Packet, ReasonCode};
use bytes::BytesMut;
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

/// A packet: its first byte, the remaining length, the body.
pub(super) fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut n = body.len();
    loop {
        let byte = (n % 128) as u8;
        n /= 128;
        out.push(if n > 0 { byte | 0x80 } else { byte });
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// A string or binary field: two length bytes, then the bytes.
pub(super) fn s(x: &[u8]) -> Vec<u8> {
    let mut out = (x.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(x);
    out
}

/// CONNECT of protocol `level` (3, 4 or 5) with `flags`, `keep_alive`, v5 `props` and `payload`
/// (the client id and what follows it).
pub(super) fn connect(
    level: u8,
    flags: u8,
    keep_alive: u16,
    props: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut body = s(if level == 3 { b"MQIsdp" } else { b"MQTT" });
    body.push(level);
    body.push(flags);
    body.extend_from_slice(&keep_alive.to_be_bytes());
    if level == 5 {
        body.push(props.len() as u8);
        body.extend_from_slice(props);
    }
    body.extend_from_slice(payload);
    frame(0x10, &body)
}

pub(super) const CLEAN: u8 = 0x02;

/// One client's side of an engine: what it sends goes in, what the engine writes comes out.
pub(super) struct Client {
    pub(super) engine: Engine,
    pub(super) out: BytesMut,
}

impl Client {
    pub(super) fn new(broker: &Broker, now: Instant) -> Self {
        let peer = "127.0.0.1:1883".parse().expect("an address");
        Self {
            engine: Engine::new(broker.clone(), peer, now),
            out: BytesMut::new(),
        }
    }

    /// A client that connected with `connect` and was accepted.
    pub(super) fn open(broker: &Broker, connect: &[u8], now: Instant) -> Self {
        let mut client = Self::new(broker, now);
        client.send(connect, now).expect("CONNECT accepted");
        let connack = client.take();
        assert_eq!(connack.first(), Some(&0x20), "CONNACK: {connack:02x?}");
        assert_eq!(connack[3], 0, "CONNACK success: {connack:02x?}");
        assert!(client.engine.is_open());
        client
    }

    pub(super) fn send(&mut self, bytes: &[u8], now: Instant) -> Result<(), Close> {
        let mut inbuf = BytesMut::from(bytes);
        let result = self.engine.receive(&mut inbuf, now, &mut self.out);
        if result.is_ok() {
            assert!(inbuf.is_empty(), "every whole packet handled");
        }
        result
    }

    /// What the engine wrote since the last call.
    pub(super) fn take(&mut self) -> Vec<u8> {
        self.out.split().to_vec()
    }

    /// What the session has for the client, as the shell would write it.
    pub(super) fn transmit(&mut self, now: Instant) -> Result<Vec<u8>, Close> {
        self.engine
            .poll_transmit(&mut self.out, now, Waker::noop())?;
        Ok(self.take())
    }

    /// Ends the connection for `close`, as the shell does; returns what the engine wrote.
    fn close(&mut self, close: &Close, now: Instant) -> Vec<u8> {
        self.engine.close(close, now, &mut self.out);
        self.take()
    }
}

/// A 3.1.1 client subscribed to `filter` at QoS 0.
fn subscriber(broker: &Broker, id: &[u8], filter: &[u8], now: Instant) -> Client {
    let mut sub = Client::open(broker, &connect(4, CLEAN, 0, &[], &s(id)), now);
    let mut body = vec![0, 1];
    body.extend(s(filter));
    body.push(0);
    sub.send(&frame(0x82, &body), now).expect("SUBSCRIBE");
    assert_eq!(sub.take(), [0x90, 3, 0, 1, 0], "SUBACK granting QoS 0");
    sub
}

pub(super) fn broker_with(change: impl FnOnce(&mut Config)) -> Broker {
    let mut config = Config::default();
    change(&mut config);
    Broker::new(Arc::new(config))
}

/// Every refusal of the CONNECT policy, in 3.1.1 and 5.0: the CONNACK (byte for byte, or its
/// reason code where v5 adds a Reason String) and the end it gives.
#[tokio::test]
async fn each_connect_refusal_gets_its_connack_in_each_version() {
    let now = Instant::now();
    let refuses = |broker: &Broker, packet: Vec<u8>| {
        let mut c = Client::new(broker, now);
        let close = c.send(&packet, now).expect_err("refused");
        assert!(!c.engine.is_open());
        (c.take(), close)
    };
    let reason_of = |connack: &[u8]| {
        assert_eq!(connack[0], 0x20, "a CONNACK: {connack:02x?}");
        connack[3]
    };
    let plain = Broker::new(Arc::new(Config::default()));

    // 3.1.1: an empty client id needs a clean session [MQTT-3.1.3-8 of 3.1.1]; 3.1 needs an id.
    let (out, close) = refuses(&plain, connect(4, 0, 0, &[], &s(b"")));
    assert_eq!(out, [0x20, 2, 0, 0x02]);
    assert!(matches!(
        close,
        Close::Refused {
            reason: ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
            ..
        }
    ));
    let (out, _) = refuses(&plain, connect(3, CLEAN, 0, &[], &s(b"")));
    assert_eq!(out, [0x20, 2, 0, 0x02]);

    // Anonymous clients, when they are not allowed: 0x05 in 3.1.1, 0x87 with a Reason String
    // in 5.0; and a user name with no password file to check it is no better (as Mosquitto).
    let closed = broker_with(|c| c.auth.allow_anonymous = false);
    let (out, _) = refuses(&closed, connect(4, CLEAN, 0, &[], &s(b"a")));
    assert_eq!(out, [0x20, 2, 0, 0x05]);
    let (out, _) = refuses(&closed, connect(5, CLEAN, 0, &[], &s(b"a")));
    assert_eq!(reason_of(&out), 0x87);
    assert!(
        out.windows(9).any(|w| w == b"anonymous"),
        "Reason String: {out:02x?}"
    );
    // ... unless the client asked for no problem information [MQTT-3.1.2-29].
    let (out, _) = refuses(&closed, connect(5, CLEAN, 0, &[0x17, 0], &s(b"a")));
    assert_eq!(out, [0x20, 3, 0, 0x87, 0]);
    let mut named = s(b"a");
    named.extend(s(b"user"));
    let (out, close) = refuses(&closed, connect(4, CLEAN | 0x80, 0, &[], &named));
    assert_eq!(out, [0x20, 2, 0, 0x05]);
    assert!(
        matches!(&close, Close::Refused { user: Some(u), .. } if &**u == "user"),
        "the log line names the user: {close:?}"
    );

    // A will above the maximum QoS: 0x9B in 5.0, "not authorized" in 3.1.1.
    let qos0 = broker_with(|c| c.limits.max_qos = 0);
    let mut will = s(b"a");
    will.extend(s(b"w"));
    will.extend(s(b"x"));
    let (out, _) = refuses(&qos0, connect(4, CLEAN | 0x04 | 0x08, 0, &[], &will));
    assert_eq!(out, [0x20, 2, 0, 0x05]);
    let mut will5 = s(b"a");
    will5.push(0); // will properties
    will5.extend(s(b"w"));
    will5.extend(s(b"x"));
    let (out, _) = refuses(
        &qos0,
        connect(5, CLEAN | 0x04 | 0x08, 0, &[0x17, 0], &will5),
    );
    assert_eq!(out, [0x20, 3, 0, 0x9B, 0]);

    // A keep alive above the limit: refused in 3.1.1, granted at the limit in 5.0.
    let short = broker_with(|c| c.limits.max_keepalive = 60);
    let (out, _) = refuses(&short, connect(4, CLEAN, 61, &[], &s(b"a")));
    assert_eq!(out, [0x20, 2, 0, 0x02]);
    let mut c = Client::new(&short, now);
    c.send(&connect(5, CLEAN, 61, &[], &s(b"a")), now)
        .expect("v5 accepted");
    let connack = c.take();
    assert!(
        connack.windows(3).any(|w| w == [0x13, 0, 60]),
        "Server Keep Alive 60: {connack:02x?}"
    );

    // A server sending its clients elsewhere: 0x9C with the Server Reference in 5.0, 0x03 in
    // 3.1.1.
    let moved = broker_with(|c| c.mqtt5.server_reference = "elsewhere:1883".into());
    let (out, _) = refuses(&moved, connect(4, CLEAN, 0, &[], &s(b"a")));
    assert_eq!(out, [0x20, 2, 0, 0x03]);
    let (out, _) = refuses(&moved, connect(5, CLEAN, 0, &[], &s(b"a")));
    let mut want = vec![0x20, 20, 0, 0x9C, 17, 0x1C];
    want.extend(s(b"elsewhere:1883"));
    assert_eq!(out, want);
    // ... 0x9D if it moved for good (`mqtt5.server_moved`).
    let gone = broker_with(|c| {
        c.mqtt5.server_reference = "elsewhere:1883".into();
        c.mqtt5.server_moved = true;
    });
    let (out, _) = refuses(&gone, connect(5, CLEAN, 0, &[], &s(b"a")));
    assert_eq!(out[3], 0x9D);

    // Enhanced authentication: data without a method is a Protocol Error; a method nobody
    // serves is 0x8C.
    let mut data = vec![0x17, 0, 0x16];
    data.extend(s(b"d"));
    let (out, _) = refuses(&plain, connect(5, CLEAN, 0, &data, &s(b"a")));
    assert_eq!(out, [0x20, 3, 0, 0x82, 0]);
    let mut method = vec![0x17, 0, 0x15];
    method.extend(s(b"NOPE"));
    let (out, _) = refuses(&plain, connect(5, CLEAN, 0, &method, &s(b"a")));
    assert_eq!(out, [0x20, 3, 0, 0x8C, 0]);

    // A protocol level nobody speaks: 0x01, in 3.1.1's form [MQTT-3.1.2-2].
    let (out, close) = refuses(&plain, connect(6, CLEAN, 0, &[], &s(b"a")));
    assert_eq!(out, [0x20, 2, 0, 0x01]);
    assert!(matches!(close, Close::Decode(_)));

    // Something other than CONNECT first: closed without an answer [MQTT-3.1.0-1].
    let (out, close) = refuses(&plain, vec![0xC0, 0]);
    assert!(out.is_empty());
    assert!(matches!(close, Close::NotConnect("PINGREQ")), "{close:?}");
}

/// The handshake has the connect timeout; once open, the deadline is 1.5 times the keep alive
/// after the client's last packet.
#[tokio::test]
async fn the_connect_timeout_then_the_keep_alive_set_the_deadline() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let broker = Broker::new(Arc::new(Config::default()));
    let mut silent = Client::new(&broker, t0);
    assert_eq!(silent.engine.poll_timeout(), Some(at(10_000)));
    assert!(silent.engine.handle_timeout(at(9_999)).is_ok());
    assert!(matches!(
        silent.engine.handle_timeout(at(10_000)),
        Err(Close::ConnectTimeout)
    ));

    // Keep alive 10 s: 15 s of silence end it.
    let mut c = Client::open(&broker, &connect(4, CLEAN, 10, &[], &s(b"k")), t0);
    let deadline = c.engine.poll_timeout().expect("a keep-alive deadline");
    let expected = at(15_000);
    assert!(deadline.max(expected) - deadline.min(expected) <= Duration::from_millis(1));
    assert!(c.engine.handle_timeout(at(14_990)).is_ok());
    // A PINGREQ at 10 s (handed over decoded, as `handle` takes it) moves it to 25 s.
    let ping = c.engine.handle(Packet::PingReq, at(10_000), &mut c.out);
    assert!(ping.is_ok());
    assert_eq!(c.take(), [0xD0, 0]);
    assert!(c.engine.handle_timeout(at(24_990)).is_ok());
    assert!(matches!(
        c.engine.handle_timeout(at(25_001)),
        Err(Close::KeepAliveTimeout)
    ));
    // Keep alive 0 turns the mechanism off [MQTT-3.1.2-10 of 3.1.1]: no deadline, however long
    // the silence, in either version.
    for level in [4, 5] {
        let mut off = Client::open(&broker, &connect(level, CLEAN, 0, &[], &s(b"z")), t0);
        assert_eq!(off.engine.poll_timeout(), None);
        assert!(off.engine.handle_timeout(at(86_400_000)).is_ok());
        assert!(
            off.transmit(at(86_400_000)).is_ok(),
            "still open a day later"
        );
    }
}

/// Topic aliases both ways: the client's alias stands for its topic on later PUBLISHes, and
/// toward a client that accepts them the engine assigns one and then sends the alias alone.
#[tokio::test]
async fn topic_aliases_work_both_ways() {
    let now = Instant::now();
    let broker = Broker::new(Arc::new(Config::default()));
    // Subscriber: v5, Topic Alias Maximum 5.
    let mut sub = Client::open(
        &broker,
        &connect(5, CLEAN, 0, &[0x22, 0, 5], &s(b"sub")),
        now,
    );
    let mut body = vec![0, 1, 0];
    body.extend(s(b"a/b"));
    body.push(0);
    sub.send(&frame(0x82, &body), now).expect("SUBSCRIBE");
    assert_eq!(sub.take(), [0x90, 4, 0, 1, 0, 0]);

    let mut publisher = Client::open(&broker, &connect(5, CLEAN, 0, &[], &s(b"pub")), now);
    // Topic "a/b" with alias 1, then alias 1 alone.
    let mut first = s(b"a/b");
    first.extend([3, 0x23, 0, 1]);
    first.push(b'1');
    let mut second = s(b"");
    second.extend([3, 0x23, 0, 1]);
    second.push(b'2');
    let mut both = frame(0x30, &first);
    both.extend(frame(0x30, &second));
    publisher.send(&both, now).expect("both PUBLISHes");

    let mut want = frame(0x30, &[&s(b"a/b")[..], &[3, 0x23, 0, 1, b'1']].concat());
    want.extend(frame(0x30, &[&s(b"")[..], &[3, 0x23, 0, 1, b'2']].concat()));
    assert_eq!(sub.transmit(now).expect("delivered"), want);

    // Alias 0, or above the maximum we announced (10), is 0x94 [MQTT-3.3.2-8, -9].
    let mut bad = s(b"a/b");
    bad.extend([3, 0x23, 0, 11, b'x']);
    let close = publisher
        .send(&frame(0x30, &bad), now)
        .expect_err("refused");
    assert!(matches!(
        close,
        Close::Protocol {
            reason: ReasonCode::TOPIC_ALIAS_INVALID,
            ..
        }
    ));
}

/// The will goes out on every ending but DISCONNECT 0x00 [MQTT-3.1.2-8, MQTT-3.14.4-3].
#[tokio::test]
async fn the_will_goes_out_on_every_ending_but_a_normal_disconnect() {
    let now = Instant::now();
    let broker = Broker::new(Arc::new(Config::default()));
    let mut watcher = subscriber(&broker, b"watcher", b"will/#", now);
    let mut payload = s(b"dev");
    payload.push(0); // will properties
    payload.extend(s(b"will/dev"));
    payload.extend(s(b"gone"));
    let with_will = connect(5, CLEAN | 0x04, 0, &[], &payload);
    let will_publish = frame(0x30, &[&s(b"will/dev")[..], b"gone"].concat());

    enum End {
        Sends(&'static [u8]),
        Is(Close),
    }
    let endings = [
        ("DISCONNECT 0x00", End::Sends(&[0xE0, 1, 0x00]), false),
        ("DISCONNECT 0x04", End::Sends(&[0xE0, 1, 0x04]), true),
        ("a malformed packet", End::Sends(&[0x62, 0]), true),
        ("the socket closing", End::Is(Close::SocketClosed), true),
        (
            "the keep alive lapsing",
            End::Is(Close::KeepAliveTimeout),
            true,
        ),
    ];
    for (ending, end, publishes) in endings {
        let mut dev = Client::open(&broker, &with_will, now);
        let close = match end {
            End::Sends(packet) => dev.send(packet, now).expect_err("ends the connection"),
            End::Is(close) => close,
        };
        dev.close(&close, now);
        let got = watcher.transmit(now).expect("the watcher is attached");
        if publishes {
            assert_eq!(got, will_publish, "{ending}: the will");
        } else {
            assert!(got.is_empty(), "{ending}: no will, got {got:02x?}");
        }
    }
}

/// A method for tests: "hello" is challenged with "prove it", and "proof" then authenticates
/// "alice" with the server data "ok"; anything else fails.
struct Token;

struct TokenExchange(u8);

impl Authenticator for Token {
    fn start(&self, _: &str) -> Option<Box<dyn Exchange>> {
        Some(Box::new(TokenExchange(0)))
    }
}

impl Exchange for TokenExchange {
    fn step(&mut self, data: &[u8]) -> Step {
        match (self.0, data) {
            (0, b"hello") => {
                self.0 = 1;
                Step::Continue(b"prove it".to_vec())
            }
            (1, b"proof") => {
                self.0 = 2;
                Step::Success {
                    data: Some(b"ok".to_vec()),
                    user: "alice".into(),
                }
            }
            _ => Step::Failure("wrong token"),
        }
    }
}

/// AUTH carrying the method "TOKEN" and `data`.
fn auth(reason: u8, data: &[u8]) -> Vec<u8> {
    let mut props = vec![0x15];
    props.extend(s(b"TOKEN"));
    props.push(0x16);
    props.extend(s(data));
    let mut body = vec![reason, props.len() as u8];
    body.extend(props);
    frame(0xF0, &body)
}

/// The enhanced-authentication exchange in the handshake (5.0 section 4.12), its failure, and
/// re-authentication on the open connection (section 4.12.1).
#[tokio::test]
async fn enhanced_authentication_exchanges_auth_packets_then_reauthenticates() {
    let now = Instant::now();
    let mut methods = Methods::new();
    methods.insert("TOKEN", Box::new(Token));
    let broker = Broker::with_methods(Arc::new(Config::default()), methods);
    let mut props = vec![0x15];
    props.extend(s(b"TOKEN"));
    props.push(0x16);
    props.extend(s(b"hello"));
    let hello = connect(5, CLEAN, 0, &props, &s(b"alice-phone"));

    let mut c = Client::new(&broker, now);
    c.send(&hello, now).expect("challenged");
    assert_eq!(c.take(), auth(0x18, b"prove it"));
    assert!(!c.engine.is_open());
    c.send(&auth(0x18, b"proof"), now).expect("authenticated");
    let connack = c.take();
    assert_eq!(connack[..4], [0x20, connack[1], 0, 0], "CONNACK success");
    let mut method_and_data = vec![0x15];
    method_and_data.extend(s(b"TOKEN"));
    method_and_data.push(0x16);
    method_and_data.extend(s(b"ok"));
    assert!(
        connack
            .windows(method_and_data.len())
            .any(|w| w == method_and_data),
        "CONNACK names the method and carries its data [MQTT-4.12.0-5]: {connack:02x?}"
    );

    // Re-authentication: AUTH 0x19, challenged, then AUTH 0x00 with the server's data.
    c.send(&auth(0x19, b"hello"), now)
        .expect("challenged again");
    assert_eq!(c.take(), auth(0x18, b"prove it"));
    c.send(&auth(0x18, b"proof"), now)
        .expect("re-authenticated");
    assert_eq!(c.take(), auth(0x00, b"ok"));

    // A wrong answer in the handshake: CONNACK 0x87, not a word on what was wrong.
    let mut wrong = Client::new(&broker, now);
    wrong.send(&hello, now).expect("challenged");
    wrong.take();
    let close = wrong.send(&auth(0x18, b"guess"), now).expect_err("refused");
    assert!(matches!(
        close,
        Close::Refused {
            reason: ReasonCode::NOT_AUTHORIZED,
            ..
        }
    ));
    let connack = wrong.take();
    assert_eq!(connack[..4], [0x20, connack[1], 0, 0x87]);
    assert!(!connack.windows(5).any(|w| w == b"wrong"), "{connack:02x?}");

    // A packet other than AUTH during the exchange is a Protocol Error [MQTT-3.1.2-30].
    let mut other = Client::new(&broker, now);
    other.send(&hello, now).expect("challenged");
    other.take();
    let close = other.send(&[0xC0, 0], now).expect_err("refused");
    assert!(
        matches!(
            close,
            Close::Refused {
                reason: ReasonCode::PROTOCOL_ERROR,
                ..
            }
        ),
        "{close:?}"
    );
}

/// QoS 1 PUBACKs go out after their run is routed and in the order the PUBLISHes came, with
/// the QoS 2 PUBREC and the PINGRESP between them where their packets were.
#[tokio::test]
async fn a_runs_acknowledgements_keep_the_order_of_its_packets() {
    let now = Instant::now();
    let broker = Broker::new(Arc::new(Config::default()));
    let mut sub = subscriber(&broker, b"all", b"#", now);
    let mut publisher = Client::open(&broker, &connect(4, CLEAN, 0, &[], &s(b"p")), now);
    let publish = |qos: u8, id: u8, topic: &[u8]| {
        frame(
            0x30 | qos << 1,
            &[&s(topic)[..], &[0, id, b'0' + id]].concat(),
        )
    };
    let packets = [
        publish(1, 1, b"a"),
        publish(1, 2, b"a"),
        publish(1, 3, b"b"),
        publish(2, 4, b"b"),
        vec![0xC0, 0],
        publish(1, 5, b"a"),
    ]
    .concat();
    publisher.send(&packets, now).expect("all handled");
    assert_eq!(
        publisher.take(),
        [
            [0x40, 2, 0, 1],
            [0x40, 2, 0, 2],
            [0x40, 2, 0, 3],
            [0x50, 2, 0, 4],
        ]
        .concat()
        .into_iter()
        .chain([0xD0, 0, 0x40, 2, 0, 5])
        .collect::<Vec<u8>>()
    );
    let delivered = sub.transmit(now).expect("delivered");
    let payloads: Vec<u8> = [b"a", b"a", b"b", b"b", b"a"]
        .iter()
        .zip(b'1'..)
        .flat_map(|(topic, n)| frame(0x30, &[&s(&topic[..])[..], &[n]].concat()))
        .collect();
    assert_eq!(delivered, payloads, "routed in the order they came");
}

/// At `limits.max_connections` a CONNECT is refused (0x97 Quota exceeded; 3.1.1 0x03 Server
/// unavailable) until a client leaves.
#[tokio::test]
async fn beyond_max_connections_a_connect_is_refused_until_one_leaves() {
    let now = Instant::now();
    let broker = broker_with(|c| c.limits.max_connections = 1);
    let mut first = Client::open(&broker, &connect(5, CLEAN, 0, &[], &s(b"one")), now);
    let mut second = Client::new(&broker, now);
    let close = second
        .send(&connect(5, CLEAN, 0, &[0x17, 0], &s(b"two")), now)
        .expect_err("refused");
    assert!(matches!(
        close,
        Close::Refused {
            reason: ReasonCode::QUOTA_EXCEEDED,
            ..
        }
    ));
    assert_eq!(second.take(), [0x20, 3, 0, 0x97, 0]);
    let mut third = Client::new(&broker, now);
    third
        .send(&connect(4, CLEAN, 0, &[], &s(b"three")), now)
        .expect_err("refused");
    assert_eq!(third.take(), [0x20, 2, 0, 0x03]);
    first.close(&Close::SocketClosed, now);
    Client::open(&broker, &connect(4, CLEAN, 0, &[], &s(b"four")), now);
}

/// Beyond `limits.max_subscriptions_per_client` a new filter gets 0x97 (3.1.1: 0x80); one the
/// session already has may be subscribed to again.
#[tokio::test]
async fn beyond_max_subscriptions_a_new_filter_is_refused() {
    let now = Instant::now();
    let broker = broker_with(|c| c.limits.max_subscriptions_per_client = 2);
    let subscribe = |filters: &[&[u8]]| {
        let mut body = vec![0, 1, 0];
        for f in filters {
            body.extend(s(f));
            body.push(0);
        }
        frame(0x82, &body)
    };
    let mut c = Client::open(&broker, &connect(5, CLEAN, 0, &[], &s(b"many")), now);
    c.send(&subscribe(&[b"a", b"b", b"c"]), now)
        .expect("SUBSCRIBE");
    assert_eq!(c.take(), [0x90, 6, 0, 1, 0, 0, 0, 0x97]);
    c.send(&subscribe(&[b"a"]), now).expect("again");
    assert_eq!(
        c.take(),
        [0x90, 4, 0, 1, 0, 0],
        "an existing filter is fine"
    );
    let mut old = Client::open(&broker, &connect(4, CLEAN, 0, &[], &s(b"old")), now);
    let mut body = vec![0, 1];
    for f in [&b"a"[..], b"b", b"c"] {
        body.extend(s(f));
        body.push(0);
    }
    old.send(&frame(0x82, &body), now).expect("SUBSCRIBE");
    assert_eq!(old.take(), [0x90, 5, 0, 1, 0, 0, 0x80]);
}

/// Issue 14, section 6, without the race: once another connection has taken the session over,
/// nothing the old connection still has to handle may change any session. Its SUBSCRIBE (and
/// the PUBLISH with it) end the connection as taken over, add no subscription and route
/// nothing, in both versions, whether the old session lived on or not.
#[tokio::test]
async fn after_a_takeover_the_old_connection_changes_nothing() {
    let now = Instant::now();
    let broker = broker_with(|_| {});
    let mut watcher = subscriber(&broker, b"watcher", b"ghost/#", now);
    for (level, flags) in [(4, CLEAN), (4, 0), (5, CLEAN), (5, 0)] {
        // 5.0: a Session Expiry Interval of 60, so a flags of 0 is a session that lives on; its
        // SUBSCRIBE and PUBLISH carry an empty property section.
        let (props, none): (&[u8], &[u8]) = if level == 5 {
            (&[0x11, 0, 0, 0, 60], &[0])
        } else {
            (&[], &[])
        };
        let mut tail = frame(0x82, &[&[0, 1], none, &s(b"ghost/sub"), &[1]].concat());
        tail.extend(frame(0x30, &[&s(b"ghost/pub")[..], none, b"p"].concat()));
        let case = format!("level {level}, flags {flags:#04x}");
        let mut old = Client::open(&broker, &connect(level, flags, 0, props, &s(b"ghost")), now);
        let mut new = Client::open(&broker, &connect(level, CLEAN, 0, props, &s(b"ghost")), now);
        assert!(
            matches!(old.send(&tail, now), Err(Close::TakenOver)),
            "{case}"
        );
        let last = old.close(&Close::TakenOver, now);
        if level == 5 {
            assert_eq!((last[0], last[2]), (0xE0, 0x8E), "{case}: DISCONNECT 0x8E");
        } else {
            assert_eq!(last, [0u8; 0], "{case}: closed");
        }
        assert_eq!(broker.subscription_count(), 1, "{case}: the watcher's only");
        assert_eq!(
            watcher.transmit(now).expect("open"),
            [0u8; 0],
            "{case}: nothing routed"
        );
        let end = new.send(&[0xE0, 0], now).expect_err("DISCONNECT ends it");
        assert!(matches!(end, Close::Normal), "{case}: {end:?}");
        new.close(&end, now);
    }
    // The last session lived on (expiry 60) with no subscription; none is an orphan.
    assert_eq!(
        broker.subscriptions_without_a_session(),
        Vec::<String>::new()
    );
}

/// `limits.max_publish_rate`: a second's worth at once, then the rate; a client over it gets
/// DISCONNECT 0x96 (3.1.1: closed), and what it sent before is routed.
#[tokio::test]
async fn a_client_publishing_over_its_rate_is_disconnected() {
    let now = Instant::now();
    let broker = broker_with(|c| c.limits.max_publish_rate = 2);
    let mut watcher = subscriber(&broker, b"watcher", b"t", now);
    let publish = frame(0x30, &[&s(b"t")[..], &[0], b"x"].concat()); // v5, no properties
    let mut c = Client::open(&broker, &connect(5, CLEAN, 0, &[0x17, 0], &s(b"fast")), now);
    c.send(&[publish.clone(), publish.clone()].concat(), now)
        .expect("two in a second");
    let later = now + Duration::from_millis(500);
    c.send(&publish, later)
        .expect("one more half a second later");
    let end = c.send(&publish, later).expect_err("over the rate");
    assert!(matches!(
        end,
        Close::Protocol {
            reason: ReasonCode::MESSAGE_RATE_TOO_HIGH,
            ..
        }
    ));
    assert_eq!(c.close(&end, later), [0xE0, 1, 0x96]);
    let routed = watcher.transmit(later).expect("open");
    assert_eq!(
        routed,
        frame(0x30, &[&s(b"t")[..], b"x"].concat()).repeat(3)
    );
    // 3.1.1: closed, no DISCONNECT.
    let plain = frame(0x30, &[&s(b"t")[..], b"x"].concat());
    let mut old = Client::open(&broker, &connect(4, CLEAN, 0, &[], &s(b"old")), now);
    let end = old.send(&plain.repeat(3), now).expect_err("over the rate");
    assert_eq!(old.close(&end, now), [0u8; 0]);
}

/// `limits.max_connect_rate_per_address`: a second's worth of CONNECTs from one address, then
/// CONNACK 0x9F (3.1.1: 0x03) until the bucket refills.
#[tokio::test]
async fn connects_faster_than_the_rate_per_address_are_refused() {
    let now = Instant::now();
    let broker = broker_with(|c| c.limits.max_connect_rate_per_address = 2);
    Client::open(&broker, &connect(5, CLEAN, 0, &[], &s(b"a")), now);
    Client::open(&broker, &connect(4, CLEAN, 0, &[], &s(b"b")), now);
    let mut third = Client::new(&broker, now);
    third
        .send(&connect(5, CLEAN, 0, &[0x17, 0], &s(b"c")), now)
        .expect_err("refused");
    assert_eq!(third.take(), [0x20, 3, 0, 0x9F, 0]);
    let mut fourth = Client::new(&broker, now);
    fourth
        .send(&connect(4, CLEAN, 0, &[], &s(b"d")), now)
        .expect_err("refused");
    assert_eq!(fourth.take(), [0x20, 2, 0, 0x03]);
    Client::open(
        &broker,
        &connect(4, CLEAN, 0, &[], &s(b"e")),
        now + Duration::from_millis(600),
    );
}
