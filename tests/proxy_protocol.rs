//! `proxy_protocol = true` on a listener behind a load balancer: each connection's PROXY
//! header (v1 or v2) names the client's real address, which the broker then uses (here seen
//! through the failed-login count it keeps per address); a connection without one is closed.

mod support;

use roost::config::Listener;
use roost::protocol::ProtocolVersion::V3_1_1;
use std::net::IpAddr;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A 3.1.1 CONNECT (client id "p") with user "alice" and password "wrong".
fn connect_with_a_wrong_password() -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0xC2, 0, 60, 0, 1, b'p'];
    body.extend_from_slice(&[
        0, 5, b'a', b'l', b'i', b'c', b'e', 0, 5, b'w', b'r', b'o', b'n', b'g',
    ]);
    frame(0x10, &body)
}

/// Sends `header` then a CONNECT with a wrong password; returns what came back before the close
/// (the close may be a reset, when the broker stops reading with the client's bytes unread).
async fn attempt(addr: std::net::SocketAddr, header: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&[header, &connect_with_a_wrong_password()].concat())
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    loop {
        match tokio::time::timeout(WAIT, s.read(&mut buf))
            .await
            .expect("closed in time")
        {
            Ok(0) | Err(_) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn the_proxy_header_names_the_address_the_broker_uses() {
    let d = std::env::temp_dir().join(format!("roost-proxy-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let passwd = d.join("passwd");
    roost::passwords::set_password(&passwd, "alice", "right").unwrap();
    let b = start_with(|c| {
        c.auth.password_file = passwd.clone();
        // Counted per address, and waited for but a millisecond.
        c.auth.login_delay_ms = 1;
        c.listeners = vec![Listener {
            proxy_protocol: true,
            ..Listener::new("127.0.0.1:0".parse().unwrap())
        }];
    })
    .await;
    let broker = b.server.broker();
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();

    // v1: refused with 0x04 (bad user name or password), counted against 192.0.2.7.
    let got = attempt(b.addr, b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 1883\r\n").await;
    assert_eq!(got, [0x20, 2, 0, 4]);
    assert_eq!(broker.failed_logins(ip("192.0.2.7")), 1);
    // v2, IPv6.
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x21\0\x24".to_vec();
    v2.extend_from_slice(
        &ip("2001:db8::9")
            .to_string()
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    v2.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
    v2.extend_from_slice(&[0x9c, 0x40, 0x07, 0x5b]);
    assert_eq!(attempt(b.addr, &v2).await, [0x20, 2, 0, 4]);
    assert_eq!(broker.failed_logins(ip("2001:db8::9")), 1);
    // Not the balancer's own address.
    assert_eq!(broker.failed_logins(ip("127.0.0.1")), 0);

    // No header: closed without a CONNACK.
    assert_eq!(attempt(b.addr, b"").await, Vec::<u8>::new());
    // A working client through the balancer.
    let mut s = TcpStream::connect(b.addr).await.unwrap();
    s.write_all(b"PROXY TCP4 192.0.2.8 127.0.0.1 40001 1883\r\n")
        .await
        .unwrap();
    let mut c = Raw::from_stream(s, V3_1_1);
    c.send(&roost::protocol::Packet::Connect(Box::new(connect_packet(
        V3_1_1, "ok", true,
    ))))
    .await;
    assert!(matches!(c.recv().await, roost::protocol::Packet::ConnAck(a) if a.reason.0 == 0));
}
