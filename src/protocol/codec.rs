//! The fixed header (section 2.1/2.2) and the dispatch from it to each packet's decoder and
//! encoder.

use super::error::{self as rule, DecodeError, EncodeError};
use super::reason::allowed;
use super::wire::{Reader, VARINT_MAX, parse_varint, put_header, varint_len};
use super::{
    Auth, ConnAck, Connect, Disconnect, Packet, ProtocolVersion, PubResp, Publish, SubAck,
    Subscribe, UnsubAck, Unsubscribe,
};
use bytes::{Buf, BytesMut};

/// DecodeLimits applied while decoding, before any byte of the packet body is buffered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest whole packet (fixed header included) accepted, in bytes.
    pub max_packet_size: u32,
    /// The packet types the receiver accepts: any other is refused from its first byte, as a
    /// Protocol Error, before its body is read or even waited for.
    pub accepts: PacketTypes,
}

impl Default for DecodeLimits {
    /// The protocol's own limit: a 4-byte remaining length of 268,435,455 plus a 5-byte header.
    /// Every packet type.
    fn default() -> Self {
        Self {
            max_packet_size: VARINT_MAX + 5,
            accepts: PacketTypes::ALL,
        }
    }
}

/// A set of packet types (section 2.1.2), by type number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketTypes(u16);

impl PacketTypes {
    /// Types 1 to 15.
    pub const ALL: Self = Self(0xFFFE);
    /// What a server accepts from a client once connected (the direction column of table 2-1):
    /// PUBLISH, its four acknowledgements, SUBSCRIBE, UNSUBSCRIBE, PINGREQ, DISCONNECT and
    /// AUTH. Not CONNECT: a second one is a Protocol Error [MQTT-3.1.0-2]. Not CONNACK,
    /// SUBACK, UNSUBACK or PINGRESP, which only a server sends.
    pub const FROM_CLIENT: Self = Self(
        1 << kind::PUBLISH
            | 1 << kind::PUBACK
            | 1 << kind::PUBREC
            | 1 << kind::PUBREL
            | 1 << kind::PUBCOMP
            | 1 << kind::SUBSCRIBE
            | 1 << kind::UNSUBSCRIBE
            | 1 << kind::PINGREQ
            | 1 << kind::DISCONNECT
            | 1 << kind::AUTH,
    );
    /// What a server accepts while an enhanced authentication exchange is under way
    /// [MQTT-3.1.2-30]: AUTH, or DISCONNECT to give up.
    pub const AUTH_EXCHANGE: Self = Self(1 << kind::AUTH | 1 << kind::DISCONNECT);

    /// The set without AUTH: a client that named no Authentication Method in CONNECT must not
    /// send one (MQTT 5.0 section 4.12).
    pub const fn without_auth(self) -> Self {
        Self(self.0 & !(1 << kind::AUTH))
    }

    /// Whether packet type `ptype` is in the set.
    pub const fn contains(self, ptype: u8) -> bool {
        ptype < 16 && self.0 & (1 << ptype) != 0
    }
}

/// Packet types (section 2.1.2).
mod kind {
    pub const CONNECT: u8 = 1;
    pub const CONNACK: u8 = 2;
    pub const PUBLISH: u8 = 3;
    pub const PUBACK: u8 = 4;
    pub const PUBREC: u8 = 5;
    pub const PUBREL: u8 = 6;
    pub const PUBCOMP: u8 = 7;
    pub const SUBSCRIBE: u8 = 8;
    pub const SUBACK: u8 = 9;
    pub const UNSUBSCRIBE: u8 = 10;
    pub const UNSUBACK: u8 = 11;
    pub const PINGREQ: u8 = 12;
    pub const PINGRESP: u8 = 13;
    pub const DISCONNECT: u8 = 14;
    pub const AUTH: u8 = 15;
}

/// Checks the first byte on its own, so a garbage stream is refused before anything else of it
/// is waited for or buffered. The type comes first: a packet the receiver never accepts is a
/// Protocol Error whatever its flags or body.
#[inline]
fn check_first_byte(
    first: u8,
    version: ProtocolVersion,
    accepts: PacketTypes,
) -> Result<(), DecodeError> {
    let (ptype, flags) = (first >> 4, first & 0x0F);
    // Type 0 is in no set.
    if !accepts.contains(ptype) || (ptype == kind::AUTH && !version.is_v5()) {
        return Err(refused_type(ptype, version));
    }
    let expected = match ptype {
        kind::PUBLISH => {
            let qos = (flags >> 1) & 0x03;
            if qos == 3 {
                return Err(rule::QOS_3);
            }
            if qos == 0 && flags & 0x08 != 0 {
                return Err(rule::DUP_WITH_QOS_0);
            }
            return Ok(());
        }
        kind::PUBREL | kind::SUBSCRIBE | kind::UNSUBSCRIBE => {
            // MQTT 3.1 let these carry DUP on a retransmission; Mosquitto accepts it too.
            if version == ProtocolVersion::V3_1 && flags == 0x0A {
                return Ok(());
            }
            0x02
        }
        _ => 0x00,
    };
    if flags != expected {
        return Err(rule::RESERVED_FLAGS);
    }
    Ok(())
}

/// Why a packet type is refused. Out of line and cold: the decoder is the hot path of every
/// message, and this code is only for the rare packet that breaks the rule.
#[cold]
#[inline(never)]
fn refused_type(ptype: u8, version: ProtocolVersion) -> DecodeError {
    match ptype {
        0 => rule::RESERVED_PACKET_TYPE,
        kind::AUTH if !version.is_v5() => rule::RESERVED_PACKET_TYPE,
        kind::CONNECT => rule::SECOND_CONNECT,
        kind::AUTH => rule::AUTH_NOT_NEGOTIATED,
        _ => rule::PACKET_TYPE_NOT_ACCEPTED,
    }
}

/// Decodes one packet from the front of `buf`.
///
/// Returns `Ok(None)` when `buf` does not yet hold a whole packet (nothing is consumed; the
/// buffer is grown to fit the packet once its size is known and allowed). Otherwise consumes
/// exactly one packet. `version` is the connection's version; a CONNECT carries its own and
/// is decoded whatever `version` says.
pub fn decode(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    limits: &DecodeLimits,
) -> Result<Option<Packet>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let version = if first >> 4 == kind::CONNECT {
        ProtocolVersion::V5
    } else {
        version
    };
    check_first_byte(first, version, limits.accepts)?;
    let Some((remaining, len_bytes)) = parse_varint(&buf[1..])? else {
        return Ok(None);
    };
    let header = 1 + len_bytes;
    let total = header + remaining as usize;
    if total > limits.max_packet_size as usize {
        return Err(rule::PACKET_TOO_LARGE);
    }
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    let mut frame = buf.split_to(total).freeze();
    frame.advance(header);
    decode_body(first, Reader::new(frame), version).map(Some)
}

fn decode_body(first: u8, r: Reader, v: ProtocolVersion) -> Result<Packet, DecodeError> {
    Ok(match first >> 4 {
        kind::CONNECT => Packet::Connect(Box::new(Connect::decode(r)?)),
        kind::CONNACK => Packet::ConnAck(ConnAck::decode(r, v)?),
        kind::PUBLISH => Packet::Publish(Publish::decode(first & 0x0F, r, v)?),
        kind::PUBACK => Packet::PubAck(PubResp::decode(r, v, allowed::PUBACK)?),
        kind::PUBREC => Packet::PubRec(PubResp::decode(r, v, allowed::PUBACK)?),
        kind::PUBREL => Packet::PubRel(PubResp::decode(r, v, allowed::PUBREL)?),
        kind::PUBCOMP => Packet::PubComp(PubResp::decode(r, v, allowed::PUBREL)?),
        kind::SUBSCRIBE => Packet::Subscribe(Subscribe::decode(r, v)?),
        kind::SUBACK => Packet::SubAck(SubAck::decode(r, v)?),
        kind::UNSUBSCRIBE => Packet::Unsubscribe(Unsubscribe::decode(r, v)?),
        kind::UNSUBACK => Packet::UnsubAck(UnsubAck::decode(r, v)?),
        kind::PINGREQ => r.finish().map(|_| Packet::PingReq)?,
        kind::PINGRESP => r.finish().map(|_| Packet::PingResp)?,
        kind::DISCONNECT => Packet::Disconnect(Disconnect::decode(r, v)?),
        kind::AUTH => Packet::Auth(Auth::decode(r)?),
        _ => return Err(rule::RESERVED_PACKET_TYPE),
    })
}

impl Packet {
    /// The first byte of the fixed header.
    fn first_byte(&self) -> u8 {
        match self {
            Self::Connect(_) => kind::CONNECT << 4,
            Self::ConnAck(_) => kind::CONNACK << 4,
            Self::Publish(p) => p.first_byte(),
            Self::PubAck(_) => kind::PUBACK << 4,
            Self::PubRec(_) => kind::PUBREC << 4,
            Self::PubRel(_) => kind::PUBREL << 4 | 0x02,
            Self::PubComp(_) => kind::PUBCOMP << 4,
            Self::Subscribe(_) => kind::SUBSCRIBE << 4 | 0x02,
            Self::SubAck(_) => kind::SUBACK << 4,
            Self::Unsubscribe(_) => kind::UNSUBSCRIBE << 4 | 0x02,
            Self::UnsubAck(_) => kind::UNSUBACK << 4,
            Self::PingReq => kind::PINGREQ << 4,
            Self::PingResp => kind::PINGRESP << 4,
            Self::Disconnect(_) => kind::DISCONNECT << 4,
            Self::Auth(_) => kind::AUTH << 4,
        }
    }

    /// Bytes after the fixed header. A CONNECT is measured in its own version.
    fn remaining_len(&self, v: ProtocolVersion) -> usize {
        match self {
            Self::Connect(c) => c.remaining_len(),
            Self::ConnAck(c) => c.remaining_len(v),
            Self::Publish(p) => p.remaining_len(v),
            Self::PubAck(a) | Self::PubRec(a) | Self::PubRel(a) | Self::PubComp(a) => {
                a.remaining_len(v)
            }
            Self::Subscribe(s) => s.remaining_len(v),
            Self::SubAck(s) => s.remaining_len(v),
            Self::Unsubscribe(u) => u.remaining_len(v),
            Self::UnsubAck(u) => u.remaining_len(v),
            Self::PingReq | Self::PingResp => 0,
            Self::Disconnect(d) => d.remaining_len(v),
            Self::Auth(a) => a.remaining_len(),
        }
    }

    /// The size of the whole encoded packet, to check it against a peer's Maximum Packet Size
    /// before encoding it.
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        total_len(self.remaining_len(version))
    }

    /// The packet as it may go to a peer whose Maximum Packet Size is `limit`: as it is if it
    /// fits, else without its Reason String and User Properties, which a sender leaves out
    /// rather than exceed the limit (MQTT-3.2.2-19, -20 and the same rule for every packet
    /// that has them); `None` if even that does not fit [MQTT-3.1.2-24].
    pub fn within(mut self, version: ProtocolVersion, limit: u32) -> Option<Self> {
        let limit = limit as usize;
        if self.encoded_len(version) <= limit {
            return Some(self);
        }
        let props = match &mut self {
            Self::ConnAck(a) => &mut a.properties,
            Self::PubAck(a) | Self::PubRec(a) | Self::PubRel(a) | Self::PubComp(a) => {
                &mut a.properties
            }
            Self::SubAck(a) => &mut a.properties,
            Self::UnsubAck(a) => &mut a.properties,
            Self::Disconnect(d) => &mut d.properties,
            Self::Auth(a) => &mut a.properties,
            _ => return None,
        };
        let props = props.get_mut()?;
        if props.reason_string.is_none() && props.user_properties.is_empty() {
            return None;
        }
        props.reason_string = None;
        props.user_properties.clear();
        (self.encoded_len(version) <= limit).then_some(self)
    }

    /// Appends the packet, encoded for `version`, to `out`. On error `out` is left as it was.
    pub fn encode(&self, version: ProtocolVersion, out: &mut BytesMut) -> Result<(), EncodeError> {
        let start = out.len();
        let result = self.encode_unchecked(version, out);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn encode_unchecked(&self, v: ProtocolVersion, out: &mut BytesMut) -> Result<(), EncodeError> {
        if matches!(self, Self::Auth(_)) && !v.is_v5() {
            return Err(EncodeError::NotInVersion("AUTH"));
        }
        put_header(out, self.first_byte(), self.remaining_len(v))?;
        match self {
            Self::Connect(c) => c.encode_body(out),
            Self::ConnAck(c) => c.encode_body(v, out),
            Self::Publish(p) => p.encode_body(v, out),
            Self::PubAck(a) | Self::PubRec(a) => a.encode_body(v, allowed::PUBACK, out),
            Self::PubRel(a) | Self::PubComp(a) => a.encode_body(v, allowed::PUBREL, out),
            Self::Subscribe(s) => s.encode_body(v, out),
            Self::SubAck(s) => s.encode_body(v, out),
            Self::Unsubscribe(u) => u.encode_body(v, out),
            Self::UnsubAck(u) => u.encode_body(v, out),
            Self::PingReq | Self::PingResp => Ok(()),
            Self::Disconnect(d) => d.encode_body(v, out),
            Self::Auth(a) => a.encode_body(out),
        }
    }
}

impl Publish {
    /// The size of the encoded PUBLISH, fixed header included.
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        total_len(self.remaining_len(version))
    }

    /// Encodes this PUBLISH without wrapping it in a [`Packet`] (the broker's hot path).
    pub fn encode(&self, version: ProtocolVersion, out: &mut BytesMut) -> Result<(), EncodeError> {
        let start = out.len();
        let result = put_header(out, self.first_byte(), self.remaining_len(version))
            .and_then(|_| self.encode_body(version, out));
        if result.is_err() {
            out.truncate(start);
        }
        result
    }
}

/// Whole packet size for a remaining length: first byte, length bytes, body.
pub(crate) fn total_len(remaining: usize) -> usize {
    1 + varint_len(remaining.min(VARINT_MAX as usize) as u32) + remaining
}
