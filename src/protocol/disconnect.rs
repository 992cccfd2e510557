//! DISCONNECT (3.14) and AUTH (3.15): a reason code and properties, both omitted on the wire
//! when the reason is 0x00 and there are no properties.

use super::error::{self as rule, DecodeError, EncodeError};
use super::properties::{Context, Props};
use super::reason::allowed;
use super::wire::Reader;
use super::{ProtocolVersion, ReasonCode};
use bytes::{BufMut, BytesMut};

/// DISCONNECT. Before 5.0 it has no body: `reason` is always 0x00 (normal disconnection).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disconnect {
    /// Why the sender closes; 0x00 is a normal disconnection.
    pub reason: ReasonCode,
    /// Reason String, Session Expiry Interval, Server Reference, User Properties (5.0).
    pub properties: Props,
}

/// AUTH (5.0 only): a step of enhanced authentication.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Auth {
    /// Success (0x00), Continue authentication (0x18) or Re-authenticate (0x19).
    pub reason: ReasonCode,
    /// Authentication Method and Data, Reason String, User Properties.
    pub properties: Props,
}

/// The shared body of DISCONNECT and AUTH.
fn decode_reason(
    mut r: Reader,
    v: ProtocolVersion,
    ctx: Context,
    codes: &[u8],
) -> Result<(ReasonCode, Props), DecodeError> {
    let mut reason = ReasonCode::SUCCESS;
    let mut properties = Props::NONE;
    if v.is_v5() && !r.is_empty() {
        let code = r.u8()?;
        if !codes.contains(&code) {
            return Err(rule::INVALID_RETURN_CODE);
        }
        reason = ReasonCode(code);
        if !r.is_empty() {
            properties = Props::decode(&mut r, ctx)?;
        }
    }
    r.finish()?;
    Ok((reason, properties))
}

fn reason_len(reason: ReasonCode, p: &Props, v: ProtocolVersion) -> usize {
    if !v.is_v5() {
        0
    } else if !p.is_empty() {
        1 + p.encoded_len()
    } else if reason != ReasonCode::SUCCESS {
        1
    } else {
        0
    }
}

fn encode_reason(
    reason: ReasonCode,
    p: &Props,
    v: ProtocolVersion,
    codes: &[u8],
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    if !v.is_v5() {
        if reason != ReasonCode::SUCCESS || !p.is_empty() {
            return Err(EncodeError::NotInVersion("a reason code or properties"));
        }
        return Ok(());
    }
    let len = reason_len(reason, p, v);
    if len >= 1 {
        if !codes.contains(&reason.0) {
            return Err(EncodeError::InvalidReasonCode(reason));
        }
        out.put_u8(reason.0);
    }
    if len > 1 {
        p.encode(out)?;
    }
    Ok(())
}

impl Disconnect {
    pub(crate) fn decode(r: Reader, v: ProtocolVersion) -> Result<Self, DecodeError> {
        let (reason, properties) = decode_reason(r, v, Context::Disconnect, allowed::DISCONNECT)?;
        Ok(Self { reason, properties })
    }

    pub(crate) fn remaining_len(&self, v: ProtocolVersion) -> usize {
        reason_len(self.reason, &self.properties, v)
    }

    pub(crate) fn encode_body(
        &self,
        v: ProtocolVersion,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        encode_reason(self.reason, &self.properties, v, allowed::DISCONNECT, out)
    }
}

impl Auth {
    pub(crate) fn decode(r: Reader) -> Result<Self, DecodeError> {
        let (reason, properties) =
            decode_reason(r, ProtocolVersion::V5, Context::Auth, allowed::AUTH)?;
        Ok(Self { reason, properties })
    }

    pub(crate) fn remaining_len(&self) -> usize {
        reason_len(self.reason, &self.properties, ProtocolVersion::V5)
    }

    pub(crate) fn encode_body(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        encode_reason(
            self.reason,
            &self.properties,
            ProtocolVersion::V5,
            allowed::AUTH,
            out,
        )
    }
}
