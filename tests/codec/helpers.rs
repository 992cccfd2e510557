//! Helpers for the byte-literal codec tests.

#[path = "../wire/mod.rs"]
mod wire;
pub use wire::frame;

use bytes::BytesMut;
use roost::protocol::{DecodeError, DecodeLimits, Packet, ProtocolVersion, decode};

/// Decodes exactly one packet from `bytes`, asserting nothing is left over.
pub fn decode_one(v: ProtocolVersion, bytes: &[u8]) -> Result<Packet, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    match decode(&mut buf, v, &DecodeLimits::default())? {
        Some(p) => {
            assert!(buf.is_empty(), "decode left {} bytes", buf.len());
            Ok(p)
        }
        None => panic!("incomplete packet: {bytes:02x?}"),
    }
}

/// Decodes `bytes` and asserts the packet encodes back to exactly the same bytes.
pub fn canonical(v: ProtocolVersion, bytes: &[u8]) -> Packet {
    let p = decode_one(v, bytes).unwrap_or_else(|e| panic!("{e}: {bytes:02x?}"));
    assert_eq!(encode(v, &p), bytes, "re-encoding {p:?}");
    p
}

/// Encodes a packet into a fresh buffer.
pub fn encode(v: ProtocolVersion, p: &Packet) -> Vec<u8> {
    let mut out = BytesMut::new();
    p.encode(v, &mut out)
        .unwrap_or_else(|e| panic!("encode {p:?}: {e}"));
    assert_eq!(out.len(), p.encoded_len(v), "encoded_len of {p:?}");
    out.to_vec()
}

/// The error `bytes` decode to.
pub fn reject(v: ProtocolVersion, bytes: &[u8]) -> DecodeError {
    match decode_one(v, bytes) {
        Err(e) => e,
        Ok(p) => panic!("accepted invalid packet {bytes:02x?} as {p:?}"),
    }
}

/// A length-prefixed string.
pub fn s(text: &[u8]) -> Vec<u8> {
    let mut out = (text.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(text);
    out
}

/// Concatenates byte pieces.
pub fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// A v5 property section: the pieces concatenated behind their length.
pub fn props(parts: &[&[u8]]) -> Vec<u8> {
    let body = parts.concat();
    let mut out = frame(0, &body);
    out.remove(0);
    out
}
