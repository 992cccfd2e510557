//! Enhanced authentication (MQTT 5.0 section 4.12) with SCRAM-SHA-256 (RFC 7677): the AUTH
//! exchange in the handshake, its refusals, and re-authentication during the connection. The
//! client side of SCRAM is written here from the RFC, independently of `src/auth`.

mod support;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use roost::ScramCredentials;
use roost::config::ScramUser;
use roost::protocol::ProtocolVersion::{V3_1_1, V5};
use roost::protocol::{Auth, ByteStr, ConnAck, Packet, QoS, ReasonCode};
use sha2::{Digest, Sha256};
use support::*;

const METHOD: &str = "SCRAM-SHA-256";

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The client half of one SCRAM exchange (RFC 5802 section 3).
struct ScramClient {
    password: String,
    first_bare: String,
    nonce: String,
    expected_server_signature: Option<[u8; 32]>,
}

impl ScramClient {
    fn new(user: &str, password: &str, nonce: &str) -> Self {
        Self {
            password: password.into(),
            first_bare: format!("n={user},r={nonce}"),
            nonce: nonce.into(),
            expected_server_signature: None,
        }
    }

    fn first(&self) -> Vec<u8> {
        format!("n,,{}", self.first_bare).into_bytes()
    }

    /// client-final-message for the server-first-message.
    fn last(&mut self, server_first: &[u8]) -> Vec<u8> {
        let server_first = std::str::from_utf8(server_first).unwrap();
        let mut fields = server_first.split(',');
        let nonce = fields.next().unwrap().strip_prefix("r=").unwrap();
        let salt = B64
            .decode(fields.next().unwrap().strip_prefix("s=").unwrap())
            .unwrap();
        let iterations: u32 = fields
            .next()
            .unwrap()
            .strip_prefix("i=")
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            nonce.starts_with(&self.nonce),
            "the server extends our nonce"
        );
        let salted =
            pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(self.password.as_bytes(), &salt, iterations);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.first_bare);
        let signature = hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = hmac(&salted, b"Server Key");
        self.expected_server_signature = Some(hmac(&server_key, auth_message.as_bytes()));
        format!("{without_proof},p={}", B64.encode(proof)).into_bytes()
    }

    /// Checks the server-final-message: the server knew the credential too.
    fn verify(&self, server_final: &[u8]) {
        let want = format!("v={}", B64.encode(self.expected_server_signature.unwrap()));
        assert_eq!(std::str::from_utf8(server_final).unwrap(), want);
    }
}

fn users() -> Vec<ScramUser> {
    let credential = |password| {
        ScramCredentials::generate(password, 4096)
            .unwrap()
            .to_string()
    };
    vec![
        ScramUser {
            user: "alice".into(),
            credential: credential("pencil"),
        },
        ScramUser {
            user: "bob".into(),
            credential: credential("builder"),
        },
    ]
}

async fn scram_broker() -> TestBroker {
    start_with(|c| {
        c.auth.allow_anonymous = false;
        c.auth.scram_users = users();
    })
    .await
}

fn auth(reason: ReasonCode, data: Option<Vec<u8>>) -> Packet {
    let mut a = Auth {
        reason,
        properties: Default::default(),
    };
    a.properties.make_mut().authentication_method = Some(ByteStr::from_static(METHOD).unwrap());
    a.properties.make_mut().authentication_data = data.map(Bytes::from);
    Packet::Auth(a)
}

fn data_of(p: &Packet) -> Vec<u8> {
    let props = match p {
        Packet::Auth(a) => &a.properties,
        Packet::ConnAck(c) => &c.properties,
        other => panic!("expected AUTH or CONNACK, got {other:?}"),
    };
    props
        .authentication_data
        .as_deref()
        .unwrap_or_default()
        .to_vec()
}

/// Runs the whole handshake for `user`; returns the connection and the CONNACK.
async fn scram_connect(b: &TestBroker, id: &str, user: &str, password: &str) -> (Raw, ConnAck) {
    let mut client = ScramClient::new(user, password, "rOprNGfwEbeRWgbNEkqO");
    let mut c = connect_packet(V5, id, true);
    c.properties.make_mut().authentication_method = Some(ByteStr::from_static(METHOD).unwrap());
    c.properties.make_mut().authentication_data = Some(Bytes::from(client.first()));
    let mut raw = Raw::open(b.addr, V5).await;
    raw.send(&Packet::Connect(Box::new(c))).await;
    let challenge = raw.recv().await;
    match &challenge {
        Packet::Auth(a) => {
            assert_eq!(
                a.reason,
                ReasonCode::CONTINUE_AUTHENTICATION,
                "[MQTT-4.12.0-2]"
            );
            assert_eq!(a.properties.authentication_method.as_deref(), Some(METHOD));
        }
        other => panic!("expected AUTH 0x18, got {other:?}"),
    }
    let last = client.last(&data_of(&challenge));
    raw.send(&auth(ReasonCode::CONTINUE_AUTHENTICATION, Some(last)))
        .await;
    match raw.recv().await {
        Packet::ConnAck(ack) => {
            if !ack.reason.is_error() {
                // [MQTT-4.12.0-5] a successful CONNACK names the method.
                assert_eq!(
                    ack.properties.authentication_method.as_deref(),
                    Some(METHOD)
                );
                client.verify(&data_of(&Packet::ConnAck(ack.clone())));
            }
            (raw, ack)
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

#[tokio::test]
async fn scram_authenticates_and_the_client_can_verify_the_server() {
    let b = scram_broker().await;
    let (mut alice, ack) = scram_connect(&b, "alice-1", "alice", "pencil").await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    // A working session: it can subscribe and receive.
    alice.subscribe("t", QoS::AtLeastOnce).await;
    let (mut bob, _) = scram_connect(&b, "bob-1", "bob", "builder").await;
    bob.publish_acked("t", b"hi", QoS::AtLeastOnce, false, 1)
        .await;
    assert_eq!(payloads(&alice.drain().await), ["hi"]);
    b.server.shutdown().await;
}

#[tokio::test]
async fn a_wrong_password_or_unknown_user_is_not_authorized() {
    let b = scram_broker().await;
    for (user, password) in [("alice", "pen"), ("mallory", "pencil")] {
        let (mut raw, ack) = scram_connect(&b, "x", user, password).await;
        assert_eq!(ack.reason, ReasonCode::NOT_AUTHORIZED, "{user}");
        assert!(raw.closed().await.is_empty(), "[MQTT-4.12.0-4] then closed");
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn an_unknown_method_and_anonymous_clients_are_refused() {
    let b = scram_broker().await;
    let mut c = connect_packet(V5, "x", true);
    c.properties.make_mut().authentication_method = Some(ByteStr::from_static("KERBEROS").unwrap());
    let mut raw = Raw::open(b.addr, V5).await;
    raw.send(&Packet::Connect(Box::new(c))).await;
    match raw.recv().await {
        Packet::ConnAck(a) => {
            assert_eq!(
                a.reason,
                ReasonCode::BAD_AUTHENTICATION_METHOD,
                "[MQTT-4.12.0-1]"
            )
        }
        other => panic!("expected CONNACK 0x8C, got {other:?}"),
    }
    // allow_anonymous = false: no method and no user name is refused, in both versions.
    for v in [V5, V3_1_1] {
        let mut raw = Raw::open(b.addr, v).await;
        raw.send(&Packet::Connect(Box::new(connect_packet(v, "anon", true))))
            .await;
        match raw.recv().await {
            Packet::ConnAck(a) => assert_eq!(a.reason, ReasonCode::NOT_AUTHORIZED),
            other => panic!("expected CONNACK 0x87, got {other:?}"),
        }
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn a_packet_other_than_auth_during_the_exchange_is_a_protocol_error() {
    let b = scram_broker().await;
    let client = ScramClient::new("alice", "pencil", "abc");
    let mut c = connect_packet(V5, "x", true);
    c.properties.make_mut().authentication_method = Some(ByteStr::from_static(METHOD).unwrap());
    c.properties.make_mut().authentication_data = Some(Bytes::from(client.first()));
    let mut raw = Raw::open(b.addr, V5).await;
    raw.send(&Packet::Connect(Box::new(c))).await;
    assert!(matches!(raw.recv().await, Packet::Auth(_)));
    raw.send(&Packet::PingReq).await; // [MQTT-3.1.2-30]
    match raw.recv().await {
        Packet::ConnAck(a) => assert_eq!(a.reason, ReasonCode::PROTOCOL_ERROR),
        other => panic!("expected CONNACK 0x82, got {other:?}"),
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn re_authentication_succeeds_for_the_same_user_and_ends_the_connection_otherwise() {
    let b = scram_broker().await;
    let (mut alice, _) = scram_connect(&b, "alice-1", "alice", "pencil").await;
    // [MQTT-4.12.1-1] AUTH 0x19 with the same method starts it.
    let mut again = ScramClient::new("alice", "pencil", "second-nonce");
    alice
        .send(&auth(ReasonCode::REAUTHENTICATE, Some(again.first())))
        .await;
    let challenge = alice.recv().await;
    let last = again.last(&data_of(&challenge));
    alice
        .send(&auth(ReasonCode::CONTINUE_AUTHENTICATION, Some(last)))
        .await;
    let done = alice.recv().await;
    match &done {
        Packet::Auth(a) => assert_eq!(a.reason, ReasonCode::SUCCESS),
        other => panic!("expected AUTH 0x00, got {other:?}"),
    }
    again.verify(&data_of(&done));
    alice.expect_nothing().await; // still connected

    // Re-authenticating as someone else, even with the right password, fails.
    let mut other = ScramClient::new("bob", "builder", "third-nonce");
    alice
        .send(&auth(ReasonCode::REAUTHENTICATE, Some(other.first())))
        .await;
    let challenge = alice.recv().await;
    let last = other.last(&data_of(&challenge));
    alice
        .send(&auth(ReasonCode::CONTINUE_AUTHENTICATION, Some(last)))
        .await;
    alice.expect_disconnect(ReasonCode::NOT_AUTHORIZED).await; // [MQTT-4.12.1-2]
    b.server.shutdown().await;
}

#[tokio::test]
async fn auth_from_a_client_that_used_no_method_is_a_protocol_error() {
    let b = start().await;
    let mut c = Raw::connect(b.addr, V5, "plain", true).await;
    c.send(&auth(ReasonCode::REAUTHENTICATE, None)).await;
    c.expect_disconnect(ReasonCode::PROTOCOL_ERROR).await; // [MQTT-4.12.0-7]
    b.server.shutdown().await;
}

/// An AUTH that does not parse, after a method was negotiated, is a Malformed Packet (5.0
/// section 2.2.2.2): a Topic Alias is not an AUTH property.
#[tokio::test]
async fn an_auth_with_a_property_it_may_not_carry_is_malformed() {
    let b = scram_broker().await;
    let (mut alice, ack) = scram_connect(&b, "alice-1", "alice", "pencil").await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    // AUTH 0x19 with the property section [Topic Alias 1].
    alice.send_bytes(&[0xF0, 5, 0x19, 3, 0x23, 0, 1]).await;
    alice.expect_disconnect(ReasonCode::MALFORMED_PACKET).await;
    b.server.shutdown().await;
}

/// [MQTT-3.1.2-24] A challenge larger than the client's Maximum Packet Size is never sent: the
/// handshake ends with a bare CONNACK 0x95 instead.
#[tokio::test]
async fn a_challenge_over_the_clients_maximum_packet_size_ends_the_handshake_with_0x95() {
    let b = scram_broker().await;
    let client = ScramClient::new("alice", "pencil", "rOprNGfwEbeRWgbNEkqO");
    let mut c = connect_packet(V5, "small", true);
    c.properties.make_mut().authentication_method = Some(ByteStr::from_static(METHOD).unwrap());
    c.properties.make_mut().authentication_data = Some(Bytes::from(client.first()));
    // The server-first-message alone (nonce, salt, iterations) is over 40 bytes.
    c.properties.make_mut().maximum_packet_size = Some(40);
    let mut raw = Raw::open(b.addr, V5).await;
    raw.send(&Packet::Connect(Box::new(c))).await;
    match raw.recv().await {
        Packet::ConnAck(a) => {
            assert_eq!(a.reason, ReasonCode::PACKET_TOO_LARGE);
            assert!(a.properties.is_empty(), "bare: {:?}", a.properties);
        }
        other => panic!("expected CONNACK 0x95, got {other:?}"),
    }
    assert!(raw.closed().await.is_empty());
    b.server.shutdown().await;
}
