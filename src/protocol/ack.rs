//! PUBACK, PUBREC, PUBREL and PUBCOMP (3.4-3.7): one shape, a packet identifier plus (5.0) a
//! reason code and properties, each omitted on the wire when it has its default.

use super::error::{self as rule, DecodeError, EncodeError};
use super::properties::{Context, Props};
use super::wire::Reader;
use super::{ProtocolVersion, ReasonCode};
use bytes::{BufMut, BytesMut};

/// The body of PUBACK, PUBREC, PUBREL or PUBCOMP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubResp {
    /// The packet identifier of the PUBLISH whose QoS 1 or 2 exchange this belongs to.
    pub packet_id: u16,
    /// Always SUCCESS before 5.0.
    pub reason: ReasonCode,
    /// Reason String and User Properties (5.0).
    pub properties: Props,
}

impl PubResp {
    /// A successful acknowledgement of `packet_id`.
    pub fn new(packet_id: u16) -> Self {
        Self {
            packet_id,
            reason: ReasonCode::SUCCESS,
            properties: Props::NONE,
        }
    }

    /// `codes` lists the reason codes this packet type may carry.
    pub(crate) fn decode(
        mut r: Reader,
        version: ProtocolVersion,
        codes: &[u8],
    ) -> Result<Self, DecodeError> {
        let packet_id = match r.u16()? {
            0 => return Err(rule::PACKET_ID_ZERO),
            id => id,
        };
        let mut resp = Self::new(packet_id);
        if version.is_v5() && !r.is_empty() {
            let code = r.u8()?;
            if !codes.contains(&code) {
                return Err(rule::INVALID_RETURN_CODE);
            }
            resp.reason = ReasonCode(code);
            if !r.is_empty() {
                resp.properties = Props::decode(&mut r, Context::Ack)?;
            }
        }
        r.finish()?;
        Ok(resp)
    }

    pub(crate) fn remaining_len(&self, version: ProtocolVersion) -> usize {
        if !version.is_v5() {
            2
        } else if !self.properties.is_empty() {
            3 + self.properties.encoded_len()
        } else if self.reason != ReasonCode::SUCCESS {
            3
        } else {
            2
        }
    }

    pub(crate) fn encode_body(
        &self,
        version: ProtocolVersion,
        codes: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        if self.packet_id == 0 {
            return Err(EncodeError::PacketIdZero);
        }
        out.put_u16(self.packet_id);
        let len = self.remaining_len(version);
        if !version.is_v5() {
            if self.reason != ReasonCode::SUCCESS || !self.properties.is_empty() {
                return Err(EncodeError::NotInVersion("a reason code or properties"));
            }
            return Ok(());
        }
        if len > 2 {
            if !codes.contains(&self.reason.0) {
                return Err(EncodeError::InvalidReasonCode(self.reason));
            }
            out.put_u8(self.reason.0);
        }
        if len > 3 {
            self.properties.encode(out)?;
        }
        Ok(())
    }
}
