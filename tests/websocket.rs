//! MQTT over WebSocket (section 6) with a real WebSocket client (tokio-tungstenite): packets
//! split across frames and several in one frame, both ways; the `mqtt` subprotocol; ping and
//! pong; a text frame closes the connection; a bad upgrade gets an HTTP error, not a hang; and
//! WSS, the same over TLS.

mod support;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use roost::certs::Authority;
use roost::config::{Listener, ListenerProtocol, Tls};
use std::sync::Arc;
use support::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A broker with one WebSocket listener on /mqtt (and TLS if given).
async fn ws_broker(tls: Option<Tls>) -> TestBroker {
    start_with(|c| {
        c.listeners = vec![Listener {
            protocol: ListenerProtocol::Ws,
            tls,
            ..Listener::new("127.0.0.1:0".parse().unwrap())
        }];
    })
    .await
}

/// Opens a WebSocket on `stream` to `path`, offering `protocol`; returns it and the subprotocol
/// the server chose.
async fn open<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    url: &str,
    protocol: Option<&str>,
) -> (WebSocketStream<S>, Option<String>) {
    let mut request = url.into_client_request().unwrap();
    if let Some(p) = protocol {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", p.parse().unwrap());
    }
    let (ws, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .expect("the upgrade succeeds");
    let chosen = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .map(|v| v.to_str().unwrap().to_owned());
    (ws, chosen)
}

/// Reads binary frames until `n` bytes have come (MQTT packets may span frames).
async fn read_bytes<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    n: usize,
) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < n {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("bytes in time")
        {
            Some(Ok(Message::Binary(b))) => got.extend_from_slice(&b),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected binary frames, got {other:?} after {got:02x?}"),
        }
    }
    got
}

const CONNECT: [u8; 15] = [
    0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 1, b'w',
];

/// A 3.1.1 session over `ws`: CONNECT split over three frames, then SUBSCRIBE and a PUBLISH to
/// its own filter in one frame; the CONNACK, SUBACK and the PUBLISH come back.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) {
    for part in [&CONNECT[..1], &CONNECT[1..6], &CONNECT[6..]] {
        ws.send(Message::Binary(Bytes::copy_from_slice(part)))
            .await
            .unwrap();
    }
    assert_eq!(read_bytes(ws, 4).await, [0x20, 2, 0, 0], "CONNACK");
    let subscribe = frame(0x82, &[0, 1, 0, 1, b't', 0]);
    let publish = frame(0x30, &[0, 1, b't', b'h', b'i']);
    ws.send(Message::Binary(
        [subscribe, publish.clone()].concat().into(),
    ))
    .await
    .unwrap();
    let want = [vec![0x90, 3, 0, 1, 0], publish].concat();
    assert_eq!(
        read_bytes(ws, want.len()).await,
        want,
        "SUBACK, then the message"
    );
}

#[tokio::test]
async fn mqtt_packets_travel_in_binary_frames_split_or_together() {
    let b = ws_broker(None).await;
    let tcp = tokio::net::TcpStream::connect(b.addr).await.unwrap();
    let url = format!("ws://{}/mqtt", b.addr);
    let (mut ws, chosen) = open(tcp, &url, Some("mqtt")).await;
    assert_eq!(
        chosen.as_deref(),
        Some("mqtt"),
        "[MQTT-6.0.0-4] the subprotocol is echoed"
    );
    exchange(&mut ws).await;
    // Ping, pong.
    ws.send(Message::Ping(Bytes::from_static(b"p")))
        .await
        .unwrap();
    let pong = tokio::time::timeout(WAIT, ws.next()).await.unwrap();
    assert!(
        matches!(pong, Some(Ok(Message::Pong(ref p))) if &p[..] == b"p"),
        "{pong:?}"
    );
    // MQTT's PINGREQ works too.
    ws.send(Message::Binary(Bytes::from_static(&[0xC0, 0])))
        .await
        .unwrap();
    assert_eq!(read_bytes(&mut ws, 2).await, [0xD0, 0]);
}

#[tokio::test]
async fn mqttv3_1_and_no_subprotocol_are_served_too() {
    let b = ws_broker(None).await;
    let url = format!("ws://{}/mqtt", b.addr);
    for (offered, want) in [(Some("mqttv3.1"), Some("mqttv3.1")), (None, None)] {
        let tcp = tokio::net::TcpStream::connect(b.addr).await.unwrap();
        let (mut ws, chosen) = open(tcp, &url, offered).await;
        assert_eq!(chosen.as_deref(), want);
        ws.send(Message::Binary(Bytes::from_static(&CONNECT)))
            .await
            .unwrap();
        assert_eq!(read_bytes(&mut ws, 4).await, [0x20, 2, 0, 0]);
    }
}

#[tokio::test]
async fn a_text_frame_closes_the_connection() {
    let b = ws_broker(None).await;
    let tcp = tokio::net::TcpStream::connect(b.addr).await.unwrap();
    let (mut ws, _) = open(tcp, &format!("ws://{}/mqtt", b.addr), Some("mqtt")).await;
    ws.send(Message::Binary(Bytes::from_static(&CONNECT)))
        .await
        .unwrap();
    assert_eq!(read_bytes(&mut ws, 4).await, [0x20, 2, 0, 0]);
    ws.send(Message::Text("hello".into())).await.unwrap();
    // [MQTT-6.0.0-1]: closed; nothing but the end comes.
    let end = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("closed in time");
    assert!(
        matches!(end, Some(Ok(Message::Close(_))) | None | Some(Err(_))),
        "after a text frame: {end:?}"
    );
}

/// Sends `request` on a plain TCP connection; returns the HTTP status line, and checks the
/// connection is closed after the answer.
async fn http_status(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut answer))
        .await
        .expect("answered and closed, not left hanging")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    answer.lines().next().unwrap_or("").to_owned()
}

#[tokio::test]
async fn a_bad_upgrade_gets_an_http_error() {
    let b = ws_broker(None).await;
    let upgrade = |path: &str, protocol: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: {protocol}\r\n\r\n"
        )
    };
    for (what, request, status) in [
        (
            "a plain GET",
            "GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
            "HTTP/1.1 400 Bad Request",
        ),
        (
            "another path",
            upgrade("/chat", "mqtt"),
            "HTTP/1.1 404 Not Found",
        ),
        (
            "another subprotocol",
            upgrade("/mqtt", "chat"),
            "HTTP/1.1 400 Bad Request",
        ),
        (
            "MQTT to a WebSocket port",
            String::from_utf8_lossy(&CONNECT).into_owned() + "\r\n\r\n",
            "HTTP/1.1 400 Bad Request",
        ),
    ] {
        assert_eq!(
            http_status(b.addr, request.as_bytes()).await,
            status,
            "{what}"
        );
    }
    // A request that never ends is cut off at 8 KiB.
    let endless = format!("GET /mqtt HTTP/1.1\r\nX: {}\r\n", "a".repeat(9000));
    assert_eq!(
        http_status(b.addr, endless.as_bytes()).await,
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
}

#[tokio::test]
async fn wss_is_websocket_over_tls() {
    let d = std::env::temp_dir().join(format!("roost-wss-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let ca = Authority::new("test CA").unwrap();
    let server = ca.server(&["localhost", "127.0.0.1"]).unwrap();
    std::fs::write(d.join("server.pem"), &server.cert_pem).unwrap();
    std::fs::write(d.join("server.key"), &server.key_pem).unwrap();
    let b = ws_broker(Some(Tls::new(d.join("server.pem"), d.join("server.key")))).await;

    let mut roots = rustls::RootCertStore::empty();
    use rustls_pki_types::pem::PemObject;
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca.cert_pem().as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    // As a browser offers: a WebSocket listener answers http/1.1 (offering only "mqtt" there
    // made Chromium's handshake fail).
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(b.addr).await.unwrap();
    let tls = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .expect("TLS with the test CA");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let url = format!("wss://localhost:{}/mqtt", b.addr.port());
    let (mut ws, chosen) = open(tls, &url, Some("mqtt")).await;
    assert_eq!(chosen.as_deref(), Some("mqtt"));
    exchange(&mut ws).await;
}
