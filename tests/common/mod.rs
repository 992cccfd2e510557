//! Shared helpers for the differential tests (`codec_differential*.rs`): Roost's decode and
//! encode wrapped for one packet at a time, and proptest strategies for the strings, topics and
//! payloads every packet is built from.
//!
//! The strategies only make values that are valid everywhere: strings are printable ASCII or
//! letters outside ASCII (2-, 3- and 4-byte UTF-8), never a control character or non-character,
//! which Roost refuses as Mosquitto does; topic names are non-empty and free of wildcards.

#[path = "../wire/mod.rs"]
mod wire;
// Not every test crate that includes this module writes exact bytes.
#[allow(unused_imports)]
pub use wire::frame;

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use roost::protocol::{ByteStr, DecodeError, DecodeLimits, Packet, ProtocolVersion, QoS, decode};

/// Letters outside ASCII: 'é', Greek, CJK and a CJK Extension B letter (4 bytes in UTF-8).
const LETTERS: &str = "\u{e9}\u{3b1}-\u{3c9}\u{4e2d}\u{4e00}\u{20000}-\u{20008}";

/// Decodes exactly one packet from `bytes`, asserting that it consumed every byte.
pub fn decode_one(v: ProtocolVersion, bytes: &[u8]) -> Result<Packet, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    let packet = decode(&mut buf, v, &DecodeLimits::default())?
        .unwrap_or_else(|| panic!("incomplete packet {bytes:02x?}"));
    assert!(buf.is_empty(), "{} bytes left after {packet:?}", buf.len());
    Ok(packet)
}

/// Encodes `p` for `v` into a fresh buffer.
pub fn encode(v: ProtocolVersion, p: &Packet) -> Vec<u8> {
    let mut out = BytesMut::new();
    p.encode(v, &mut out)
        .unwrap_or_else(|e| panic!("encode {p:?}: {e}"));
    out.to_vec()
}

/// A checked string; the strategies only produce valid ones.
pub fn bs(s: &str) -> ByteStr {
    ByteStr::try_from(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

/// Any string, possibly empty.
pub fn text() -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[ -~{LETTERS}]{{0,8}}")).unwrap()
}

/// A non-empty string (user names and passwords: both oracles read "" as "absent").
pub fn word() -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[ -~{LETTERS}]{{1,8}}")).unwrap()
}

/// A topic name: non-empty, no `+` or `#`.
pub fn topic() -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[ -\"$-*,-~{LETTERS}]{{1,8}}")).unwrap()
}

/// A topic filter, with or without wildcards.
pub fn filter() -> impl Strategy<Value = ByteStr> {
    prop_oneof![
        topic(),
        topic().prop_map(|t| format!("{t}/#")),
        topic().prop_map(|t| format!("+/{t}")),
        Just("#".to_string()),
    ]
    .prop_map(|f| bs(&f))
}

/// An application payload or other binary data.
pub fn payload() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

pub fn qos() -> impl Strategy<Value = QoS> {
    (0u8..3).prop_map(|b| QoS::from_bits(b).unwrap())
}

/// A packet identifier: never 0.
pub fn packet_id() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}
