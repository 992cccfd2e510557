//! CONNECT (3.1) and CONNACK (3.2).

use super::error::{self as rule, DecodeError, EncodeError};
use super::properties::{Context, Props};
use super::reason::allowed;
use super::wire::{Reader, check_topic_name, put_binary};
use super::{ByteStr, ProtocolVersion, QoS, ReasonCode};
use bytes::{BufMut, Bytes, BytesMut};

/// A client's CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// The version the client asked for; it fixes the version of the whole connection.
    pub protocol: ProtocolVersion,
    /// Clean Session (3.1.1) / Clean Start (5.0).
    pub clean_start: bool,
    /// Keep alive in seconds; 0 turns the mechanism off.
    pub keep_alive: u16,
    /// CONNECT properties (5.0): session expiry, limits, authentication...
    pub properties: Props,
    /// May be empty: the server then assigns one (5.0) or requires a clean session (3.1.1).
    pub client_id: ByteStr,
    /// The will message, published when the connection ends other than by a normal DISCONNECT.
    pub will: Option<Will>,
    /// User Name, if the client sent one.
    pub username: Option<ByteStr>,
    /// Binary data, not a string.
    pub password: Option<Bytes>,
}

/// The will message carried by CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// The topic the will is published to.
    pub topic: ByteStr,
    /// The will's application message.
    pub payload: Bytes,
    /// The QoS the will is published with.
    pub qos: QoS,
    /// Whether the will is published as a retained message.
    pub retain: bool,
    /// Will properties (5.0): delay interval, expiry, content type, response topic...
    pub properties: Props,
}

/// The server's CONNACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    /// Whether the server resumed a session it held for this client id.
    pub session_present: bool,
    /// A v5 reason code; 3.1.1 return codes map onto it (see [`ReasonCode::to_v3_connack`]).
    pub reason: ReasonCode,
    /// CONNACK properties (5.0): the server's limits, assigned client id, reason...
    pub properties: Props,
}

impl Connect {
    pub(crate) fn decode(mut r: Reader) -> Result<Self, DecodeError> {
        let name = r.binary()?;
        let level = r.u8()?;
        let protocol = match (name.as_ref(), level) {
            (b"MQTT", 4) => ProtocolVersion::V3_1_1,
            (b"MQTT", 5) => ProtocolVersion::V5,
            (b"MQIsdp", 3) => ProtocolVersion::V3_1,
            (b"MQTT" | b"MQIsdp", _) => return Err(rule::UNSUPPORTED_PROTOCOL_VERSION),
            _ => return Err(rule::PROTOCOL_NAME),
        };
        let flags = r.u8()?;
        if flags & 0x01 != 0 {
            return Err(rule::CONNECT_RESERVED_FLAG);
        }
        let clean_start = flags & 0x02 != 0;
        let will_flag = flags & 0x04 != 0;
        let will_qos_bits = (flags >> 3) & 0x03;
        let will_retain = flags & 0x20 != 0;
        let password_flag = flags & 0x40 != 0;
        let username_flag = flags & 0x80 != 0;
        if !will_flag && will_qos_bits != 0 {
            return Err(rule::WILL_QOS_WITHOUT_WILL);
        }
        if !will_flag && will_retain {
            return Err(rule::WILL_RETAIN_WITHOUT_WILL);
        }
        let will_qos = QoS::from_bits(will_qos_bits).ok_or(rule::WILL_QOS_3)?;
        if password_flag && !username_flag && !protocol.is_v5() {
            return Err(rule::PASSWORD_WITHOUT_USERNAME);
        }
        let keep_alive = r.u16()?;
        let properties = if protocol.is_v5() {
            let p = Props::decode(&mut r, Context::Connect)?;
            if p.authentication_data.is_some() && p.authentication_method.is_none() {
                return Err(rule::AUTH_DATA_WITHOUT_METHOD);
            }
            p
        } else {
            Props::NONE
        };
        let client_id = r.string()?;
        let will = if will_flag {
            let properties = if protocol.is_v5() {
                Props::decode(&mut r, Context::Will)?
            } else {
                Props::NONE
            };
            let topic = r.string()?;
            check_topic_name(&topic)?;
            let payload = r.binary()?;
            Some(Will {
                topic,
                payload,
                qos: will_qos,
                retain: will_retain,
                properties,
            })
        } else {
            None
        };
        let username = if username_flag {
            Some(r.string()?)
        } else {
            None
        };
        let password = if password_flag {
            Some(r.binary()?)
        } else {
            None
        };
        r.finish()?;
        Ok(Self {
            protocol,
            clean_start,
            keep_alive,
            properties,
            client_id,
            will,
            username,
            password,
        })
    }

    pub(crate) fn remaining_len(&self) -> usize {
        let v5 = self.protocol.is_v5();
        let props = |p: &Props| if v5 { p.encoded_len() } else { 0 };
        let mut n = 2 + self.protocol.protocol_name().len() + 1 + 1 + 2;
        n += props(&self.properties) + 2 + self.client_id.len();
        if let Some(w) = &self.will {
            n += props(&w.properties) + 2 + w.topic.len() + 2 + w.payload.len();
        }
        n += self.username.as_ref().map_or(0, |u| 2 + u.len());
        n += self.password.as_ref().map_or(0, |p| 2 + p.len());
        n
    }

    pub(crate) fn encode_body(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        let v5 = self.protocol.is_v5();
        if self.password.is_some() && self.username.is_none() && !v5 {
            return Err(EncodeError::NotInVersion("a password without a user name"));
        }
        put_binary(out, self.protocol.protocol_name())?;
        out.put_u8(self.protocol.level());
        let mut flags = 0u8;
        if self.clean_start {
            flags |= 0x02;
        }
        if let Some(w) = &self.will {
            flags |= 0x04 | ((w.qos as u8) << 3);
            if w.retain {
                flags |= 0x20;
            }
        }
        if self.password.is_some() {
            flags |= 0x40;
        }
        if self.username.is_some() {
            flags |= 0x80;
        }
        out.put_u8(flags);
        out.put_u16(self.keep_alive);
        if v5 {
            self.properties.encode(out)?;
        }
        put_binary(out, self.client_id.as_bytes())?;
        if let Some(w) = &self.will {
            if v5 {
                w.properties.encode(out)?;
            }
            put_binary(out, w.topic.as_bytes())?;
            put_binary(out, &w.payload)?;
        }
        if let Some(u) = &self.username {
            put_binary(out, u.as_bytes())?;
        }
        if let Some(p) = &self.password {
            put_binary(out, p)?;
        }
        Ok(())
    }
}

impl ConnAck {
    pub(crate) fn decode(mut r: Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let flags = r.u8()?;
        if flags & 0xFE != 0 {
            return Err(rule::CONNACK_RESERVED_FLAGS);
        }
        let session_present = flags & 0x01 != 0;
        let code = r.u8()?;
        let (reason, properties) = if version.is_v5() {
            if !allowed::CONNACK.contains(&code) {
                return Err(rule::INVALID_RETURN_CODE);
            }
            (ReasonCode(code), Props::decode(&mut r, Context::ConnAck)?)
        } else {
            let reason = ReasonCode::from_v3_connack(code).ok_or(rule::INVALID_RETURN_CODE)?;
            (reason, Props::NONE)
        };
        if session_present && reason.is_error() {
            return Err(rule::SESSION_PRESENT_WITH_ERROR);
        }
        r.finish()?;
        Ok(Self {
            session_present,
            reason,
            properties,
        })
    }

    pub(crate) fn remaining_len(&self, version: ProtocolVersion) -> usize {
        2 + if version.is_v5() {
            self.properties.encoded_len()
        } else {
            0
        }
    }

    pub(crate) fn encode_body(
        &self,
        version: ProtocolVersion,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        let code = if version.is_v5() {
            if !allowed::CONNACK.contains(&self.reason.0) {
                return Err(EncodeError::InvalidReasonCode(self.reason));
            }
            self.reason.0
        } else {
            self.reason
                .to_v3_connack()
                .ok_or(EncodeError::InvalidReasonCode(self.reason))?
        };
        out.put_u8(u8::from(self.session_present));
        out.put_u8(code);
        if version.is_v5() {
            self.properties.encode(out)?;
        }
        Ok(())
    }
}
