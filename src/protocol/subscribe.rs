//! SUBSCRIBE, SUBACK, UNSUBSCRIBE and UNSUBACK (3.8-3.11).

use super::error::{self as rule, DecodeError, EncodeError};
use super::properties::{Context, Props};
use super::reason::allowed;
use super::wire::{Reader, put_binary};
use super::{ByteStr, ProtocolVersion, QoS, ReasonCode};
use bytes::{BufMut, BytesMut};

/// What to do with retained messages when subscribing (5.0 section 3.8.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetainHandling {
    /// Send retained messages at the time of the subscribe.
    #[default]
    SendAtSubscribe = 0,
    /// Send them only if the subscription did not already exist.
    SendIfNew = 1,
    /// Do not send them.
    DoNotSend = 2,
}

/// The subscription options byte. Only `qos` exists before 5.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubscriptionOptions {
    /// The highest QoS the server may deliver matching messages with.
    pub qos: QoS,
    /// Never deliver messages this client published itself (5.0).
    pub no_local: bool,
    /// Keep the RETAIN flag messages were published with, rather than clear it (5.0).
    pub retain_as_published: bool,
    /// Whether retained messages are sent when the subscription is made (5.0).
    pub retain_handling: RetainHandling,
}

impl SubscriptionOptions {
    fn decode(byte: u8, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let reserved = if version.is_v5() { 0xC0 } else { 0xFC };
        if byte & reserved != 0 {
            return Err(rule::SUBSCRIPTION_RESERVED_BITS);
        }
        let qos = QoS::from_bits(byte & 0x03).ok_or(rule::SUBSCRIPTION_QOS_3)?;
        let retain_handling = match (byte >> 4) & 0x03 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            _ => return Err(rule::RETAIN_HANDLING_3),
        };
        Ok(Self {
            qos,
            no_local: byte & 0x04 != 0,
            retain_as_published: byte & 0x08 != 0,
            retain_handling,
        })
    }

    fn encode(&self, version: ProtocolVersion) -> Result<u8, EncodeError> {
        let v5_bits = u8::from(self.no_local) << 2
            | u8::from(self.retain_as_published) << 3
            | (self.retain_handling as u8) << 4;
        if !version.is_v5() && v5_bits != 0 {
            return Err(EncodeError::NotInVersion(
                "subscription options other than QoS",
            ));
        }
        Ok(self.qos as u8 | v5_bits)
    }
}

/// One topic filter of a SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// Checked as UTF-8 and non-empty here; wildcard placement is the topic module's job,
    /// because a v5 server answers a bad filter with SUBACK 0x8F rather than by closing.
    pub filter: ByteStr,
    /// How messages matching the filter are delivered.
    pub options: SubscriptionOptions,
}

/// SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Identifies the request; the SUBACK echoes it.
    pub packet_id: u16,
    /// Subscription Identifier and User Properties (5.0).
    pub properties: Props,
    /// The requested filters and options, in order; at least one.
    pub subscriptions: Vec<Subscription>,
}

/// SUBACK: one reason code per requested filter, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    /// The packet identifier of the SUBSCRIBE being answered.
    pub packet_id: u16,
    /// Reason String and User Properties (5.0).
    pub properties: Props,
    /// The granted QoS or the failure for each filter, in request order.
    pub reason_codes: Vec<ReasonCode>,
}

/// UNSUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Identifies the request; the UNSUBACK echoes it.
    pub packet_id: u16,
    /// User Properties (5.0).
    pub properties: Props,
    /// The topic filters to remove, exactly as subscribed; at least one.
    pub filters: Vec<ByteStr>,
}

/// UNSUBACK: one reason code per filter in 5.0, none before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    /// The packet identifier of the UNSUBSCRIBE being answered.
    pub packet_id: u16,
    /// Reason String and User Properties (5.0).
    pub properties: Props,
    /// The result for each filter, in request order (5.0); empty before.
    pub reason_codes: Vec<ReasonCode>,
}

fn packet_id(r: &mut Reader) -> Result<u16, DecodeError> {
    match r.u16()? {
        0 => Err(rule::PACKET_ID_ZERO),
        id => Ok(id),
    }
}

fn properties(r: &mut Reader, v: ProtocolVersion, ctx: Context) -> Result<Props, DecodeError> {
    if v.is_v5() {
        Props::decode(r, ctx)
    } else {
        Ok(Props::NONE)
    }
}

fn props_len(p: &Props, v: ProtocolVersion) -> usize {
    if v.is_v5() { p.encoded_len() } else { 0 }
}

fn put_head(out: &mut BytesMut, id: u16, p: &Props, v: ProtocolVersion) -> Result<(), EncodeError> {
    if id == 0 {
        return Err(EncodeError::PacketIdZero);
    }
    out.put_u16(id);
    if v.is_v5() {
        p.encode(out)
    } else if p.is_empty() {
        Ok(())
    } else {
        Err(EncodeError::NotInVersion("properties"))
    }
}

fn filter(r: &mut Reader) -> Result<ByteStr, DecodeError> {
    let f = r.string()?;
    if f.is_empty() {
        return Err(rule::EMPTY_TOPIC);
    }
    Ok(f)
}

fn reason_codes(r: &mut Reader, codes: &[u8]) -> Result<Vec<ReasonCode>, DecodeError> {
    if r.is_empty() {
        return Err(rule::NO_RETURN_CODES);
    }
    let mut out = Vec::with_capacity(r.remaining());
    while !r.is_empty() {
        let c = r.u8()?;
        if !codes.contains(&c) {
            return Err(rule::INVALID_RETURN_CODE);
        }
        out.push(ReasonCode(c));
    }
    Ok(out)
}

fn put_codes(out: &mut BytesMut, codes: &[ReasonCode], ok: &[u8]) -> Result<(), EncodeError> {
    for c in codes {
        if !ok.contains(&c.0) {
            return Err(EncodeError::InvalidReasonCode(*c));
        }
        out.put_u8(c.0);
    }
    Ok(())
}

impl Subscribe {
    pub(crate) fn decode(mut r: Reader, v: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = packet_id(&mut r)?;
        let properties = properties(&mut r, v, Context::Subscribe)?;
        let mut subscriptions = Vec::new();
        while !r.is_empty() {
            let filter = filter(&mut r)?;
            let options = SubscriptionOptions::decode(r.u8()?, v)?;
            subscriptions.push(Subscription { filter, options });
        }
        if subscriptions.is_empty() {
            return Err(rule::NO_TOPIC_FILTERS);
        }
        Ok(Self {
            packet_id,
            properties,
            subscriptions,
        })
    }

    pub(crate) fn remaining_len(&self, v: ProtocolVersion) -> usize {
        let subs: usize = self.subscriptions.iter().map(|s| 3 + s.filter.len()).sum();
        2 + props_len(&self.properties, v) + subs
    }

    pub(crate) fn encode_body(
        &self,
        v: ProtocolVersion,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        put_head(out, self.packet_id, &self.properties, v)?;
        for s in &self.subscriptions {
            put_binary(out, s.filter.as_bytes())?;
            out.put_u8(s.options.encode(v)?);
        }
        Ok(())
    }
}

impl SubAck {
    pub(crate) fn decode(mut r: Reader, v: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = packet_id(&mut r)?;
        let properties = properties(&mut r, v, Context::SubAck)?;
        let codes = if v.is_v5() {
            allowed::SUBACK
        } else {
            allowed::SUBACK_V3
        };
        let reason_codes = reason_codes(&mut r, codes)?;
        Ok(Self {
            packet_id,
            properties,
            reason_codes,
        })
    }

    pub(crate) fn remaining_len(&self, v: ProtocolVersion) -> usize {
        2 + props_len(&self.properties, v) + self.reason_codes.len()
    }

    pub(crate) fn encode_body(
        &self,
        v: ProtocolVersion,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        put_head(out, self.packet_id, &self.properties, v)?;
        put_codes(
            out,
            &self.reason_codes,
            if v.is_v5() {
                allowed::SUBACK
            } else {
                allowed::SUBACK_V3
            },
        )
    }
}

impl Unsubscribe {
    pub(crate) fn decode(mut r: Reader, v: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = packet_id(&mut r)?;
        let properties = properties(&mut r, v, Context::Unsubscribe)?;
        let mut filters = Vec::new();
        while !r.is_empty() {
            filters.push(filter(&mut r)?);
        }
        if filters.is_empty() {
            return Err(rule::NO_TOPIC_FILTERS);
        }
        Ok(Self {
            packet_id,
            properties,
            filters,
        })
    }

    pub(crate) fn remaining_len(&self, v: ProtocolVersion) -> usize {
        let filters: usize = self.filters.iter().map(|f| 2 + f.len()).sum();
        2 + props_len(&self.properties, v) + filters
    }

    pub(crate) fn encode_body(
        &self,
        v: ProtocolVersion,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        put_head(out, self.packet_id, &self.properties, v)?;
        for f in &self.filters {
            put_binary(out, f.as_bytes())?;
        }
        Ok(())
    }
}

impl UnsubAck {
    pub(crate) fn decode(mut r: Reader, v: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = packet_id(&mut r)?;
        let properties = properties(&mut r, v, Context::UnsubAck)?;
        let reason_codes = if v.is_v5() {
            reason_codes(&mut r, allowed::UNSUBACK)?
        } else {
            r.finish()?;
            Vec::new()
        };
        Ok(Self {
            packet_id,
            properties,
            reason_codes,
        })
    }

    pub(crate) fn remaining_len(&self, v: ProtocolVersion) -> usize {
        2 + props_len(&self.properties, v)
            + if v.is_v5() {
                self.reason_codes.len()
            } else {
                0
            }
    }

    pub(crate) fn encode_body(
        &self,
        v: ProtocolVersion,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        put_head(out, self.packet_id, &self.properties, v)?;
        if !v.is_v5() {
            if !self.reason_codes.is_empty() {
                return Err(EncodeError::NotInVersion("UNSUBACK reason codes"));
            }
            return Ok(());
        }
        put_codes(out, &self.reason_codes, allowed::UNSUBACK)
    }
}
