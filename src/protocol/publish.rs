//! PUBLISH (3.3): the hot path. Decoding slices topic and payload out of the frame; encoding
//! writes straight into the caller's buffer with nothing allocated but buffer growth.

use super::error::{self as rule, DecodeError, EncodeError};
use super::properties::{Context, Props};
use super::wire::{Reader, check_topic_name, put_binary};
use super::{ByteStr, ProtocolVersion, QoS};
use bytes::{BufMut, Bytes, BytesMut};

/// An application message on its way through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// Empty only in a v5 PUBLISH that carries a Topic Alias.
    pub topic: ByteStr,
    /// 0 for QoS 0 (no identifier on the wire), non-zero otherwise.
    pub packet_id: u16,
    pub properties: Props,
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
