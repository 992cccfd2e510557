//! PUBLISH (3.3): the hot path. Decoding slices topic and payload out of the frame; encoding
//! writes straight into the caller's buffer with nothing allocated but buffer growth.

use super::error::{self as rule, DecodeError, EncodeError};
use super::properties::{Context, Props};
use super::wire::{Reader, check_topic_name, put_binary, put_header};
use super::{ByteStr, ProtocolVersion, QoS};
use bytes::{BufMut, Bytes, BytesMut};

/// An application message on its way through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// Set on a redelivery of a QoS 1 or 2 message; always clear for QoS 0.
    pub dup: bool,
    /// The QoS this copy of the message travels with.
    pub qos: QoS,
    /// RETAIN: from a publisher, keep it as the topic's retained message; to a subscriber, it was.
    pub retain: bool,
    /// Empty only in a v5 PUBLISH that carries a Topic Alias.
    pub topic: ByteStr,
    /// 0 for QoS 0 (no identifier on the wire), non-zero otherwise.
    pub packet_id: u16,
    /// PUBLISH properties (5.0): expiry, topic alias, subscription identifiers...
    pub properties: Props,
    /// The application message, opaque bytes.
    pub payload: Bytes,
}

impl Publish {
    /// A QoS 0 message with no properties.
    pub fn new(topic: ByteStr, payload: Bytes) -> Self {
        Self {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic,
            packet_id: 0,
            properties: Props::NONE,
            payload,
        }
    }

    /// The fixed-header flags nibble.
    fn flags(&self) -> u8 {
        (u8::from(self.dup) << 3) | ((self.qos as u8) << 1) | u8::from(self.retain)
    }

    /// Decodes the variable header and payload; the flags were checked with the fixed header.
    pub(crate) fn decode(
        flags: u8,
        mut r: Reader,
        version: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        let qos = QoS::from_bits((flags >> 1) & 0x03).ok_or(rule::QOS_3)?;
        let topic = r.string()?;
        let packet_id = if qos == QoS::AtMostOnce {
            0
        } else {
            match r.u16()? {
                0 => return Err(rule::PACKET_ID_ZERO),
                id => id,
            }
        };
        let properties = if version.is_v5() {
            Props::decode(&mut r, Context::Publish)?
        } else {
            Props::NONE
        };
        // v5 lets a Topic Alias stand in for the topic (section 3.3.2.3.4).
        if !(topic.is_empty() && properties.topic_alias.is_some()) {
            check_topic_name(&topic)?;
        }
        Ok(Self {
            dup: flags & 0x08 != 0,
            qos,
            retain: flags & 0x01 != 0,
            topic,
            packet_id,
            properties,
            payload: r.rest(),
        })
    }

    pub(crate) fn remaining_len(&self, version: ProtocolVersion) -> usize {
        let id = if self.qos == QoS::AtMostOnce { 0 } else { 2 };
        let props = if version.is_v5() {
            self.properties.encoded_len()
        } else {
            0
        };
        2 + self.topic.len() + id + props + self.payload.len()
    }

    pub(crate) fn first_byte(&self) -> u8 {
        0x30 | self.flags()
    }

    pub(crate) fn encode_body(
        &self,
        version: ProtocolVersion,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        put_binary(out, self.topic.as_bytes())?;
        if self.qos != QoS::AtMostOnce {
            if self.packet_id == 0 {
                return Err(EncodeError::PacketIdZero);
            }
            out.put_u16(self.packet_id);
        }
        if version.is_v5() {
            self.properties.encode(out)?;
        }
        out.put_slice(&self.payload);
        Ok(())
    }

    /// Checks the payload against a Payload Format Indicator of 1 (UTF-8), as a receiver may
    /// (MQTT 5.0 section 3.3.2.3.2); the codec leaves this to the broker because it costs a scan.
    pub fn check_payload_format(&self) -> Result<(), DecodeError> {
        if self.properties.payload_format_indicator == Some(1)
            && std::str::from_utf8(&self.payload).is_err()
        {
            return Err(rule::PAYLOAD_NOT_UTF8);
        }
        Ok(())
    }
}

/// A PUBLISH with no properties, encoded from borrowed parts: the fan-out path writes one
/// message to many subscribers without cloning its topic and payload handles, since each clone
/// and drop is an atomic on a reference count that every subscriber of the message shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlainPublish<'a> {
    /// Set on a redelivery of a QoS 1 or 2 message; always clear for QoS 0.
    pub dup: bool,
    /// The QoS this copy of the message travels with.
    pub qos: QoS,
    /// Whether the message is sent as a retained one.
    pub retain: bool,
    /// The topic name in full: with no properties there is no Topic Alias to stand in for it.
    pub topic: &'a str,
    /// 0 for QoS 0, non-zero otherwise.
    pub packet_id: u16,
    /// The application message, opaque bytes.
    pub payload: &'a [u8],
}

impl PlainPublish<'_> {
    fn remaining_len(&self, version: ProtocolVersion) -> usize {
        let id = if self.qos == QoS::AtMostOnce { 0 } else { 2 };
        // v5: an empty property section is its one length byte.
        let props = usize::from(version.is_v5());
        2 + self.topic.len() + id + props + self.payload.len()
    }

    /// The size of the encoded PUBLISH, fixed header included.
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        super::codec::total_len(self.remaining_len(version))
    }

    /// Appends the PUBLISH to `out`, byte for byte what [`Publish::encode`] writes for the same
    /// message with no properties. On error `out` is left as it was.
    pub fn encode(&self, version: ProtocolVersion, out: &mut BytesMut) -> Result<(), EncodeError> {
        if self.qos != QoS::AtMostOnce && self.packet_id == 0 {
            return Err(EncodeError::PacketIdZero);
        }
        let start = out.len();
        let flags = (u8::from(self.dup) << 3) | ((self.qos as u8) << 1) | u8::from(self.retain);
        if let Err(e) = put_header(out, 0x30 | flags, self.remaining_len(version)) {
            out.truncate(start);
            return Err(e);
        }
        if let Err(e) = put_binary(out, self.topic.as_bytes()) {
            out.truncate(start);
            return Err(e);
        }
        if self.qos != QoS::AtMostOnce {
            out.put_u16(self.packet_id);
        }
        if version.is_v5() {
            out.put_u8(0);
        }
        out.put_slice(self.payload);
        Ok(())
    }
}
