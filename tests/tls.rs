//! TLS listeners with certificates the tests make (rcgen, through `roost::certs`), and rumqttc
//! over TLS: server authentication, mutual TLS (a good certificate in; none, another CA's and an
//! expired one out), plaintext to a TLS port, the certificate's name as the user name, and a
//! reload while a client stays connected.

mod support;

use roost::certs::{Authority, Issued};
use roost::config::{Listener, Tls};
use rumqttc::{Event, Packet, TlsConfiguration, Transport};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A directory of this test's own.
fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("roost-tls-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Writes a CA's server certificate for 127.0.0.1 into `dir` as server.pem / server.key.
fn write_server(dir: &Path, ca: &Authority) {
    let server = ca.server(&["localhost", "127.0.0.1"]).unwrap();
    std::fs::write(dir.join("server.pem"), &server.cert_pem).unwrap();
    std::fs::write(dir.join("server.key"), &server.key_pem).unwrap();
}

/// A broker with one TLS listener on 127.0.0.1, port 0, using `dir`'s server.pem/server.key,
/// configured further by `tls`.
async fn tls_broker(dir: &Path, tls: impl FnOnce(&mut Tls)) -> TestBroker {
    let mut settings = Tls::new(dir.join("server.pem"), dir.join("server.key"));
    tls(&mut settings);
    start_with(|c| {
        c.listeners = vec![Listener {
            tls: Some(settings),
            ..Listener::new("127.0.0.1:0".parse().unwrap())
        }];
    })
    .await
}

/// A rustls client configuration trusting `ca`, with a client certificate if given.
fn client_tls(ca: &str, cert: Option<&Issued>) -> TlsConfiguration {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match cert {
        Some(issued) => {
            let chain = CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
                .map(|c| c.unwrap())
                .collect();
            let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    TlsConfiguration::Rustls(Arc::new(config))
}

/// What a rumqttc 3.1.1 client over TLS gets first: a CONNACK's code, or the error that ended
/// its connection attempt.
async fn connect_v4(
    addr: std::net::SocketAddr,
    id: &str,
    tls: TlsConfiguration,
) -> Result<(rumqttc::AsyncClient, rumqttc::EventLoop), String> {
    let mut opts = rumqttc::MqttOptions::new(id, "127.0.0.1", addr.port());
    opts.set_transport(Transport::tls_with_config(tls));
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = rumqttc::AsyncClient::new(opts, 10);
    let first = tokio::time::timeout(WAIT, eventloop.poll())
        .await
        .map_err(|_| "no answer".to_string())?;
    match first {
        Ok(Event::Incoming(Packet::ConnAck(ack)))
            if ack.code == rumqttc::ConnectReturnCode::Success =>
        {
            Ok((client, eventloop))
        }
        Ok(other) => Err(format!("{other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Runs a connected client's event loop in a task; its incoming publishes' payloads arrive on
/// the receiver.
fn run(mut eventloop: rumqttc::EventLoop) -> tokio::sync::mpsc::UnboundedReceiver<Vec<u8>> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if let Event::Incoming(Packet::Publish(p)) = event
                && tx.send(p.payload.to_vec()).is_err()
            {
                return;
            }
        }
    });
    rx
}

async fn expect_payload(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>, want: &[u8]) {
    let got = tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a message in time")
        .expect("the client is still running");
    assert_eq!(got, want);
}

#[tokio::test]
async fn a_client_trusting_the_ca_connects_and_exchanges_messages_over_tls() {
    let d = dir("server-auth");
    let ca = Authority::new("test CA").unwrap();
    write_server(&d, &ca);
    let b = tls_broker(&d, |_| {}).await;
    let (sub, events) = connect_v4(b.addr, "sub", client_tls(ca.cert_pem(), None))
        .await
        .expect("TLS with the server's CA");
    let mut got = run(events);
    sub.subscribe("t", rumqttc::QoS::AtLeastOnce).await.unwrap();
    let (publisher, events) = connect_v4(b.addr, "pub", client_tls(ca.cert_pem(), None))
        .await
        .unwrap();
    let _publisher_loop = run(events);
    // The subscription is in place once a message published after it arrives: retry until one
    // does (the SUBSCRIBE travels on the other client's connection).
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        publisher
            .publish("t", rumqttc::QoS::AtLeastOnce, false, "over tls")
            .await
            .unwrap();
        match tokio::time::timeout(Duration::from_millis(200), got.recv()).await {
            Ok(Some(p)) => {
                assert_eq!(p, b"over tls");
                break;
            }
            _ => assert!(tokio::time::Instant::now() < deadline, "nothing arrived"),
        }
    }
    // A client that does not trust the CA refuses the server.
    let other = Authority::new("another CA").unwrap();
    let refused = connect_v4(b.addr, "x", client_tls(other.cert_pem(), None)).await;
    assert!(refused.is_err(), "{:?}", refused.map(|_| ()));
}

#[tokio::test]
async fn mutual_tls_admits_only_a_valid_certificate_from_the_client_ca() {
    let d = dir("mtls");
    let ca = Authority::new("test CA").unwrap();
    write_server(&d, &ca);
    std::fs::write(d.join("ca.pem"), ca.cert_pem()).unwrap();
    let b = tls_broker(&d, |t| {
        t.client_ca = d.join("ca.pem");
        t.require_client_cert = true;
    })
    .await;
    let good = ca.client("device-1").unwrap();
    assert!(
        connect_v4(b.addr, "good", client_tls(ca.cert_pem(), Some(&good)))
            .await
            .is_ok(),
        "a certificate from the client CA"
    );
    let other = Authority::new("another CA").unwrap();
    let expired = ca.client_valid("device-2", 2020, 2021).unwrap();
    for (what, cert) in [
        ("no certificate", None),
        (
            "another CA's certificate",
            Some(other.client("device-3").unwrap()),
        ),
        ("an expired certificate", Some(expired)),
    ] {
        let tls = client_tls(ca.cert_pem(), cert.as_ref());
        let result = connect_v4(b.addr, "bad", tls).await;
        assert!(result.is_err(), "{what} was let in");
    }
}

#[tokio::test]
async fn plaintext_mqtt_to_a_tls_port_is_closed_without_a_connack() {
    let d = dir("plaintext");
    let ca = Authority::new("test CA").unwrap();
    write_server(&d, &ca);
    let b = tls_broker(&d, |_| {}).await;
    let mut s = tokio::net::TcpStream::connect(b.addr).await.unwrap();
    // A 3.1.1 CONNECT, client id "p".
    s.write_all(&[
        0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 1, b'p',
    ])
    .await
    .unwrap();
    let mut got = Vec::new();
    let read = tokio::time::timeout(WAIT, s.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "the broker closes the connection");
    assert_ne!(got.first(), Some(&0x20), "no CONNACK: {got:02x?}");
}

#[tokio::test]
async fn the_certificates_name_is_the_user_name_where_the_listener_says_so() {
    let d = dir("identity");
    let ca = Authority::new("test CA").unwrap();
    write_server(&d, &ca);
    std::fs::write(d.join("ca.pem"), ca.cert_pem()).unwrap();
    std::fs::write(d.join("acl"), "user alice\ntopic readwrite alice/#\n").unwrap();
    let mut settings = Tls::new(d.join("server.pem"), d.join("server.key"));
    settings.client_ca = d.join("ca.pem");
    settings.use_identity_as_username = true;
    let b = start_with(|c| {
        c.listeners = vec![Listener {
            tls: Some(settings),
            ..Listener::new("127.0.0.1:0".parse().unwrap())
        }];
        c.auth.acl_file = d.join("acl");
        c.auth.allow_anonymous = false;
    })
    .await;
    // Alice's certificate, and no user name in the CONNECT: she is alice, and the ACL lets her
    // publish under alice/ only (v5: the PUBACK says).
    let alice = ca.client("alice").unwrap();
    let tls = client_tls(ca.cert_pem(), Some(&alice));
    let (client, mut events) = client_v5(b.addr, "alice-phone", |o| {
        o.set_transport(Transport::tls_with_config(tls));
    })
    .await;
    use rumqttc::v5::mqttbytes::v5::PubAckReason;
    for (topic, want) in [
        ("alice/x", PubAckReason::NoMatchingSubscribers),
        ("bob/x", PubAckReason::NotAuthorized),
    ] {
        client
            .publish(topic, rumqttc::v5::mqttbytes::QoS::AtLeastOnce, false, "m")
            .await
            .unwrap();
        let reason = next_v5(&mut events, |p| match p {
            rumqttc::v5::mqttbytes::v5::Packet::PubAck(a) => Some(a.reason),
            _ => None,
        })
        .await;
        assert_eq!(reason, want, "{topic}");
    }
    // Without a certificate there is no user name to take: refused, as Mosquitto does.
    let mut opts = rumqttc::v5::MqttOptions::new("nobody", "127.0.0.1", b.addr.port());
    opts.set_transport(Transport::tls_with_config(client_tls(ca.cert_pem(), None)));
    let (_c, mut eventloop) = rumqttc::v5::AsyncClient::new(opts, 10);
    let refused = tokio::time::timeout(WAIT, eventloop.poll()).await.unwrap();
    match refused {
        Err(rumqttc::v5::ConnectionError::ConnectionRefused(code)) => assert_eq!(
            code,
            rumqttc::v5::mqttbytes::v5::ConnectReturnCode::NotAuthorized
        ),
        other => panic!("expected CONNACK 0x87, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_certificates_are_used_by_new_clients_while_connected_ones_stay() {
    let d = dir("reload");
    let first = Authority::new("first CA").unwrap();
    write_server(&d, &first);
    let b = tls_broker(&d, |_| {}).await;
    let (stays, events) = connect_v4(b.addr, "stays", client_tls(first.cert_pem(), None))
        .await
        .unwrap();
    let mut got = run(events);
    stays
        .subscribe("r", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();

    // Replaced files, reloaded as SIGHUP does: new clients see the new certificate.
    let second = Authority::new("second CA").unwrap();
    write_server(&d, &second);
    assert_eq!(b.server.reload(), Vec::<String>::new());
    assert!(
        connect_v4(b.addr, "new", client_tls(second.cert_pem(), None))
            .await
            .is_ok()
    );
    assert!(
        connect_v4(b.addr, "old", client_tls(first.cert_pem(), None))
            .await
            .is_err(),
        "the old certificate is no longer served"
    );

    // A broken key: the reload fails, says why, and the certificate in use stays.
    std::fs::write(d.join("server.key"), "not a key").unwrap();
    let errors = b.server.reload();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("server.key"), "{errors:?}");
    assert!(
        connect_v4(b.addr, "still", client_tls(second.cert_pem(), None))
            .await
            .is_ok()
    );

    // Files changed on disk, no signal: the watcher picks them up within a few seconds.
    let third = Authority::new("third CA").unwrap();
    write_server(&d, &third);
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    while connect_v4(b.addr, "watched", client_tls(third.cert_pem(), None))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the watcher did not reload the changed files"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The first client was never dropped: it still receives.
    let (publisher, events) = connect_v4(b.addr, "pub", client_tls(third.cert_pem(), None))
        .await
        .unwrap();
    let _loop = run(events);
    publisher
        .publish("r", rumqttc::QoS::AtLeastOnce, false, "still here")
        .await
        .unwrap();
    expect_payload(&mut got, b"still here").await;
}

#[test]
fn a_broken_tls_setting_stops_start_up_naming_the_key_and_the_file() {
    let d = dir("broken");
    let mut config = roost::Config::default();
    let mut tls = Tls::new(d.join("missing.pem"), d.join("missing.key"));
    config.listeners[0].tls = Some(tls.clone());
    let e = config.validate().expect_err("no such file").to_string();
    assert!(e.starts_with("listeners.tls:"), "{e}");
    assert!(e.contains("missing.pem"), "{e}");

    let ca = Authority::new("test CA").unwrap();
    write_server(&d, &ca);
    tls.cert = d.join("server.pem");
    tls.key = d.join("server.key");
    tls.require_client_cert = true;
    config.listeners[0].tls = Some(tls);
    let e = config.validate().expect_err("no client_ca").to_string();
    assert!(e.contains("need client_ca"), "{e}");
}

/// ALPN: an MQTT listener offers "mqtt" [MQTT over TLS, IANA's registered id] and serves
/// clients that offer no ALPN at all.
#[tokio::test]
async fn an_mqtt_listener_negotiates_alpn_mqtt() {
    let d = dir("alpn");
    let ca = Authority::new("test CA").unwrap();
    write_server(&d, &ca);
    let b = tls_broker(&d, |_| {}).await;
    for (offered, want) in [(vec![b"mqtt".to_vec()], Some(&b"mqtt"[..])), (vec![], None)] {
        let TlsConfiguration::Rustls(config) = client_tls(ca.cert_pem(), None) else {
            unreachable!("client_tls builds a rustls configuration")
        };
        let mut config = (*config).clone();
        config.alpn_protocols = offered;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(b.addr).await.unwrap();
        let tls = connector
            .connect("127.0.0.1".try_into().unwrap(), tcp)
            .await
            .expect("a TLS session");
        assert_eq!(tls.get_ref().1.alpn_protocol(), want);
    }
}

/// A TLS subscriber that reads nothing while a burst larger than the socket buffers is sent gets
/// all of it once it reads. (The connection also flushes its TLS stream whenever it has nothing
/// left to write, so records rustls buffered while the socket was full are never stranded; this
/// test does not reliably reach that moment, so it guards the burst, not that flush.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_tls_subscriber_gets_the_tail_of_a_burst() {
    let d = dir("tail");
    let ca = Authority::new("test CA").unwrap();
    write_server(&d, &ca);
    let plain = Listener::new("127.0.0.1:0".parse().unwrap());
    let mut tls_listener = Listener::new("127.0.0.1:0".parse().unwrap());
    tls_listener.tls = Some(Tls::new(d.join("server.pem"), d.join("server.key")));
    let b = start_with(|c| c.listeners = vec![plain, tls_listener]).await;
    let tls_addr = b.server.local_addrs()[1];

    let TlsConfiguration::Rustls(config) = client_tls(ca.cert_pem(), None) else {
        unreachable!("client_tls builds a rustls configuration")
    };
    let connector = tokio_rustls::TlsConnector::from(config);
    let tcp = tokio::net::TcpStream::connect(tls_addr).await.unwrap();
    let mut sub = connector
        .connect("127.0.0.1".try_into().unwrap(), tcp)
        .await
        .unwrap();
    sub.write_all(&[
        0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 0, 0, 1, b's',
    ])
    .await
    .unwrap();
    sub.write_all(&frame(0x82, &[0, 1, 0, 1, b't', 0]))
        .await
        .unwrap();
    let mut acks = [0u8; 9];
    sub.read_exact(&mut acks).await.unwrap();
    assert_eq!(acks, [0x20, 2, 0, 0, 0x90, 3, 0, 1, 0]);

    // 900 messages of 4 KiB (under the queue's 1,000), more than the socket buffers hold,
    // while the subscriber reads nothing.
    const N: usize = 900;
    let publish = frame(0x30, &[&[0, 1, b't'][..], &[7u8; 4096]].concat());
    let mut publisher =
        Raw::connect(b.addr, roost::protocol::ProtocolVersion::V3_1_1, "p", true).await;
    for _ in 0..N {
        publisher.send_bytes(&publish).await;
    }
    publisher.send(&roost::protocol::Packet::PingReq).await;
    assert_eq!(publisher.recv().await, roost::protocol::Packet::PingResp);

    let mut got = vec![0u8; N * publish.len()];
    tokio::time::timeout(WAIT, sub.read_exact(&mut got))
        .await
        .expect("the whole burst arrives")
        .unwrap();
    assert!(got.chunks(publish.len()).all(|p| p == &publish[..]));
}
