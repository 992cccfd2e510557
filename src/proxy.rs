//! The PROXY protocol (HAProxy's, v1 text and v2 binary) on a listener behind a load balancer
//! (`proxy_protocol = true`): the header the balancer sends before the client's first byte
//! names the client's real address, which then stands in the logs, the failed-login slow-down
//! and everywhere else the peer's address is used. The header is read exactly, no byte past
//! it (what follows is the client's TLS or MQTT), and parsed by the `ppp` crate.

use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The v2 header's first 12 bytes.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 line, "\r\n" included (the specification's limit).
const V1_MAX: usize = 107;
/// The most address and TLV bytes a v2 header may announce that we read (the specification
/// allows 65,535; balancers send a few hundred at most).
const V2_MAX_BODY: usize = 4096;

/// Reads a PROXY header from `io` and returns the client's address it names: `Ok(None)` for a
/// header that names none (v1 UNKNOWN, v2 LOCAL or an unspecified or Unix family: the
/// balancer's own connection, e.g. a health check), `Err` for a missing or malformed header.
pub(crate) async fn read_header<S: AsyncRead + Unpin>(
    io: &mut S,
) -> Result<Option<SocketAddr>, String> {
    let mut start = [0u8; 8];
    io.read_exact(&mut start)
        .await
        .map_err(|e| format!("no PROXY header: {e}"))?;
    if start.starts_with(b"PROXY ") {
        let mut line = start.to_vec();
        while !line.ends_with(b"\r\n") {
            if line.len() >= V1_MAX {
                return Err("PROXY v1 line longer than 107 bytes".into());
            }
            line.push(io.read_u8().await.map_err(|e| e.to_string())?);
        }
        return v1(&line);
    }
    if start == V2_SIGNATURE[..8] {
        let mut rest = [0u8; 8];
        io.read_exact(&mut rest).await.map_err(|e| e.to_string())?;
        let mut header = [&start[..], &rest[..]].concat();
        if header[..12] != V2_SIGNATURE {
            return Err("not a PROXY v2 signature".into());
        }
        let len = usize::from(u16::from_be_bytes([header[14], header[15]]));
        if len > V2_MAX_BODY {
            return Err(format!("PROXY v2 header announces {len} bytes"));
        }
        header.resize(16 + len, 0);
        io.read_exact(&mut header[16..])
            .await
            .map_err(|e| e.to_string())?;
        return v2(&header);
    }
    Err(format!(
        "no PROXY header: the connection began with {start:02x?} (proxy_protocol = true expects \
         the load balancer to send one)"
    ))
}

fn v1(line: &[u8]) -> Result<Option<SocketAddr>, String> {
    use ppp::v1::{Addresses, Header};
    let header = Header::try_from(line).map_err(|e| format!("PROXY v1: {e}"))?;
    Ok(match header.addresses {
        Addresses::Tcp4(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
        Addresses::Tcp6(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
        Addresses::Unknown => None,
    })
}

fn v2(bytes: &[u8]) -> Result<Option<SocketAddr>, String> {
    use ppp::v2::{Addresses, Command, Header};
    let header = Header::try_from(bytes).map_err(|e| format!("PROXY v2: {e}"))?;
    if header.command == Command::Local {
        return Ok(None);
    }
    Ok(match header.addresses {
        Addresses::IPv4(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
        Addresses::IPv6(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
        Addresses::Unspecified | Addresses::Unix(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(bytes: &[u8]) -> (Result<Option<SocketAddr>, String>, Vec<u8>) {
        let mut io = bytes;
        let got = read_header(&mut io).await;
        (got, io.to_vec())
    }

    #[tokio::test]
    async fn v1_names_the_client_and_nothing_past_the_line_is_read() {
        let (got, rest) = read(b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 1883\r\n\x10\x0c").await;
        assert_eq!(got, Ok(Some("192.0.2.7:40000".parse().unwrap())));
        assert_eq!(rest, b"\x10\x0c", "the client's bytes are left");
        let (got, _) = read(b"PROXY TCP6 2001:db8::1 ::1 5 6\r\n").await;
        assert_eq!(got, Ok(Some("[2001:db8::1]:5".parse().unwrap())));
        let (got, rest) = read(b"PROXY UNKNOWN\r\n\x10").await;
        assert_eq!((got, rest), (Ok(None), b"\x10".to_vec()));
    }

    #[tokio::test]
    async fn v2_names_the_client_or_none_for_local() {
        let mut v4 = V2_SIGNATURE.to_vec();
        v4.extend_from_slice(&[
            0x21, 0x11, 0, 12, 198, 51, 100, 9, 10, 0, 0, 1, 0x9c, 0x40, 0x07, 0x5b,
        ]);
        v4.extend_from_slice(b"\x10rest");
        let (got, rest) = read(&v4).await;
        assert_eq!(got, Ok(Some("198.51.100.9:40000".parse().unwrap())));
        assert_eq!(rest, b"\x10rest");
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(read(&local).await.0, Ok(None));
    }

    #[tokio::test]
    async fn a_missing_or_broken_header_is_refused() {
        // MQTT straight away: no header.
        assert!(read(b"\x10\x0c\0\x04MQTT\x04\x02\0<").await.0.is_err());
        assert!(read(b"PROXY TCP4 nonsense\r\n").await.0.is_err());
        let long = format!("PROXY TCP4 {}\r\n", "1".repeat(200));
        assert!(read(long.as_bytes()).await.0.is_err());
        let mut huge = V2_SIGNATURE.to_vec();
        huge.extend_from_slice(&[0x21, 0x11, 0xFF, 0xFF]);
        assert!(read(&huge).await.0.is_err());
    }
}
