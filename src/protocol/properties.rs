//! MQTT 5.0 properties (section 2.2.2): one typed struct for every packet, decoded with the
//! per-packet rules of the property table (which packet may carry which property, which may
//! repeat, which values are forbidden) and encoded in a fixed order.

use super::ByteStr;
use super::error::{self as rule, DecodeError, EncodeError};
use super::wire::{Reader, VARINT_MAX, check_topic_name, put_binary, put_varint, varint_len};
use bytes::{BufMut, Bytes, BytesMut};

/// Property identifiers (section 2.2.2.2).
pub mod id {
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub const CONTENT_TYPE: u8 = 0x03;
    pub const RESPONSE_TOPIC: u8 = 0x08;
    pub const CORRELATION_DATA: u8 = 0x09;
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    pub const AUTHENTICATION_DATA: u8 = 0x16;
    pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    pub const RESPONSE_INFORMATION: u8 = 0x1A;
    pub const SERVER_REFERENCE: u8 = 0x1C;
    pub const REASON_STRING: u8 = 0x1F;
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub const TOPIC_ALIAS: u8 = 0x23;
    pub const MAXIMUM_QOS: u8 = 0x24;
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    pub const USER_PROPERTY: u8 = 0x26;
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
}

/// Which packet a property section belongs to; decides what it may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Context {
    Connect,
    ConnAck,
    Publish,
    Will,
    /// PUBACK, PUBREC, PUBREL and PUBCOMP share one table row.
    Ack,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

const fn mask(ids: &[u8]) -> u64 {
    let mut m = 0u64;
    let mut i = 0;
    while i < ids.len() {
        m |= 1 << ids[i];
        i += 1;
    }
    m
}

impl Context {
    /// The property table of section 2.2.2.2 as a bit set per packet.
    fn allowed(self) -> u64 {
        use id::*;
        const MESSAGE: &[u8] = &[
            PAYLOAD_FORMAT_INDICATOR,
            MESSAGE_EXPIRY_INTERVAL,
            CONTENT_TYPE,
            RESPONSE_TOPIC,
            CORRELATION_DATA,
            USER_PROPERTY,
        ];
        const REASON: &[u8] = &[REASON_STRING, USER_PROPERTY];
        match self {
            Self::Connect => mask(&[
                SESSION_EXPIRY_INTERVAL,
                AUTHENTICATION_METHOD,
                AUTHENTICATION_DATA,
                REQUEST_PROBLEM_INFORMATION,
                REQUEST_RESPONSE_INFORMATION,
                RECEIVE_MAXIMUM,
                TOPIC_ALIAS_MAXIMUM,
                USER_PROPERTY,
                MAXIMUM_PACKET_SIZE,
            ]),
            Self::ConnAck => mask(&[
                SESSION_EXPIRY_INTERVAL,
                ASSIGNED_CLIENT_IDENTIFIER,
                SERVER_KEEP_ALIVE,
                AUTHENTICATION_METHOD,
                AUTHENTICATION_DATA,
                RESPONSE_INFORMATION,
                SERVER_REFERENCE,
                REASON_STRING,
                RECEIVE_MAXIMUM,
                TOPIC_ALIAS_MAXIMUM,
                MAXIMUM_QOS,
                RETAIN_AVAILABLE,
                USER_PROPERTY,
                MAXIMUM_PACKET_SIZE,
                WILDCARD_SUBSCRIPTION_AVAILABLE,
                SUBSCRIPTION_IDENTIFIER_AVAILABLE,
                SHARED_SUBSCRIPTION_AVAILABLE,
            ]),
            Self::Publish => mask(MESSAGE) | mask(&[TOPIC_ALIAS, SUBSCRIPTION_IDENTIFIER]),
            Self::Will => mask(MESSAGE) | mask(&[WILL_DELAY_INTERVAL]),
            Self::Ack | Self::SubAck | Self::UnsubAck => mask(REASON),
            Self::Subscribe => mask(&[SUBSCRIPTION_IDENTIFIER, USER_PROPERTY]),
            Self::Unsubscribe => mask(&[USER_PROPERTY]),
            Self::Disconnect => mask(REASON) | mask(&[SESSION_EXPIRY_INTERVAL, SERVER_REFERENCE]),
            Self::Auth => mask(REASON) | mask(&[AUTHENTICATION_METHOD, AUTHENTICATION_DATA]),
        }
    }

    /// Whether `id` may appear more than once in this packet.
    fn may_repeat(self, pid: u8) -> bool {
        pid == id::USER_PROPERTY || (pid == id::SUBSCRIPTION_IDENTIFIER && self == Self::Publish)
    }
}

/// Every MQTT 5.0 property. Absent properties are `None` (or empty); the spec's defaults are
/// applied by whoever reads them, so that a decoded packet encodes back to the same bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Properties {
    pub payload_format_indicator: Option<u8>,
    pub message_expiry_interval: Option<u32>,
    pub content_type: Option<ByteStr>,
    pub response_topic: Option<ByteStr>,
    pub correlation_data: Option<Bytes>,
    /// Several only in a server-to-client PUBLISH (one per matching subscription).
    pub subscription_identifiers: Vec<u32>,
    pub session_expiry_interval: Option<u32>,
    pub assigned_client_identifier: Option<ByteStr>,
    pub server_keep_alive: Option<u16>,
    pub authentication_method: Option<ByteStr>,
    pub authentication_data: Option<Bytes>,
    pub request_problem_information: Option<u8>,
    pub will_delay_interval: Option<u32>,
    pub request_response_information: Option<u8>,
    pub response_information: Option<ByteStr>,
    pub server_reference: Option<ByteStr>,
    pub reason_string: Option<ByteStr>,
    pub receive_maximum: Option<u16>,
    pub topic_alias_maximum: Option<u16>,
    pub topic_alias: Option<u16>,
    pub maximum_qos: Option<u8>,
    pub retain_available: Option<u8>,
    /// In the order they were received; the spec requires forwarding them in order.
    pub user_properties: Vec<(ByteStr, ByteStr)>,
    pub maximum_packet_size: Option<u32>,
    pub wildcard_subscription_available: Option<u8>,
    pub subscription_identifier_available: Option<u8>,
    pub shared_subscription_available: Option<u8>,
}

/// A packet's properties as a packet holds them: absent (no allocation) when empty, boxed
/// otherwise, so every packet stays small — most packets carry no properties, and a 400-byte
/// struct inside each one was copied on every decode. Reads go through `Deref` (an absent set
/// reads as all `None`); writes through `DerefMut` allocate on first use.
#[derive(Clone, Default)]
pub struct Props(Option<Box<Properties>>);

/// What an absent property set reads as.
static NO_PROPERTIES: Properties = Properties::EMPTY;

impl Props {
    /// No properties.
    pub const NONE: Self = Self(None);

    /// True when no property is set.
    pub fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|p| p.is_empty())
    }

    /// The properties by value.
    pub fn into_inner(self) -> Properties {
        self.0.map_or_else(Properties::default, |b| *b)
    }

    pub(crate) fn decode(r: &mut Reader, ctx: Context) -> Result<Self, DecodeError> {
        Properties::decode(r, ctx).map(Self::from)
    }

    /// Bytes of the whole property section: length prefix plus body.
    pub fn encoded_len(&self) -> usize {
        self.0.as_ref().map_or(1, |p| p.encoded_len())
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        match &self.0 {
            Some(p) => p.encode(out),
            None => {
                out.put_u8(0);
                Ok(())
            }
        }
    }
}

impl From<Properties> for Props {
    fn from(p: Properties) -> Self {
        if p.is_empty() {
            Self(None)
        } else {
            Self(Some(Box::new(p)))
        }
    }
}

impl std::ops::Deref for Props {
    type Target = Properties;
    fn deref(&self) -> &Properties {
        self.0.as_deref().unwrap_or(&NO_PROPERTIES)
    }
}

impl std::ops::DerefMut for Props {
    fn deref_mut(&mut self) -> &mut Properties {
        self.0.get_or_insert_with(Box::default)
    }
}

impl PartialEq for Props {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for Props {}

impl std::fmt::Debug for Props {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

fn flag(r: &mut Reader) -> Result<u8, DecodeError> {
    match r.u8()? {
        v @ (0 | 1) => Ok(v),
        _ => Err(rule::PROPERTY_VALUE),
    }
}

fn non_zero_u16(r: &mut Reader, err: DecodeError) -> Result<u16, DecodeError> {
    match r.u16()? {
        0 => Err(err),
        v => Ok(v),
    }
}

impl Properties {
    /// No property set.
    pub const EMPTY: Self = Self {
        payload_format_indicator: None,
        message_expiry_interval: None,
        content_type: None,
        response_topic: None,
        correlation_data: None,
        subscription_identifiers: Vec::new(),
        session_expiry_interval: None,
        assigned_client_identifier: None,
        server_keep_alive: None,
        authentication_method: None,
        authentication_data: None,
        request_problem_information: None,
        will_delay_interval: None,
        request_response_information: None,
        response_information: None,
        server_reference: None,
        reason_string: None,
        receive_maximum: None,
        topic_alias_maximum: None,
        topic_alias: None,
        maximum_qos: None,
        retain_available: None,
        user_properties: Vec::new(),
        maximum_packet_size: None,
        wildcard_subscription_available: None,
        subscription_identifier_available: None,
        shared_subscription_available: None,
    };

    /// True when no property is set (the section encodes as a single 0 byte).
    pub fn is_empty(&self) -> bool {
        self.body_len() == 0
    }

    /// Reads a property length and the properties it covers, enforcing the rules for `ctx`.
    pub(crate) fn decode(r: &mut Reader, ctx: Context) -> Result<Self, DecodeError> {
        let len = r.varint()? as usize;
        if len == 0 {
            return Ok(Self::default());
        }
        let mut r = Reader::new(r.bytes(len)?);
        let mut p = Self::default();
        let allowed = ctx.allowed();
        let mut seen = 0u64;
        while !r.is_empty() {
            let pid = r.varint()?;
            let pid = u8::try_from(pid)
                .ok()
                .filter(|&i| i < 64)
                .ok_or(rule::UNKNOWN_PROPERTY)?;
            let bit = 1u64 << pid;
            if bit & ALL_PROPERTIES == 0 {
                return Err(rule::UNKNOWN_PROPERTY);
            }
            if bit & allowed == 0 {
                return Err(rule::PROPERTY_NOT_ALLOWED);
            }
            if seen & bit != 0 && !ctx.may_repeat(pid) {
                return Err(rule::DUPLICATE_PROPERTY);
            }
            seen |= bit;
            p.read_one(pid, &mut r)?;
        }
        Ok(p)
    }

    fn read_one(&mut self, pid: u8, r: &mut Reader) -> Result<(), DecodeError> {
        use id::*;
        match pid {
            PAYLOAD_FORMAT_INDICATOR => self.payload_format_indicator = Some(flag(r)?),
            MESSAGE_EXPIRY_INTERVAL => self.message_expiry_interval = Some(r.u32()?),
            CONTENT_TYPE => self.content_type = Some(r.string()?),
            RESPONSE_TOPIC => {
                let topic = r.string()?;
                // [MQTT-3.3.2-14] a Response Topic is a topic name: no wildcards.
                check_topic_name(&topic)?;
                self.response_topic = Some(topic);
            }
            CORRELATION_DATA => self.correlation_data = Some(r.binary()?),
            SUBSCRIPTION_IDENTIFIER => match r.varint()? {
                0 => return Err(rule::SUBSCRIPTION_IDENTIFIER_ZERO),
                v => self.subscription_identifiers.push(v),
            },
            SESSION_EXPIRY_INTERVAL => self.session_expiry_interval = Some(r.u32()?),
            ASSIGNED_CLIENT_IDENTIFIER => self.assigned_client_identifier = Some(r.string()?),
            SERVER_KEEP_ALIVE => self.server_keep_alive = Some(r.u16()?),
            AUTHENTICATION_METHOD => self.authentication_method = Some(r.string()?),
            AUTHENTICATION_DATA => self.authentication_data = Some(r.binary()?),
            REQUEST_PROBLEM_INFORMATION => self.request_problem_information = Some(flag(r)?),
            WILL_DELAY_INTERVAL => self.will_delay_interval = Some(r.u32()?),
            REQUEST_RESPONSE_INFORMATION => self.request_response_information = Some(flag(r)?),
            RESPONSE_INFORMATION => self.response_information = Some(r.string()?),
            SERVER_REFERENCE => self.server_reference = Some(r.string()?),
            REASON_STRING => self.reason_string = Some(r.string()?),
            RECEIVE_MAXIMUM => {
                self.receive_maximum = Some(non_zero_u16(r, rule::RECEIVE_MAXIMUM_ZERO)?)
            }
            TOPIC_ALIAS_MAXIMUM => self.topic_alias_maximum = Some(r.u16()?),
            TOPIC_ALIAS => self.topic_alias = Some(non_zero_u16(r, rule::TOPIC_ALIAS_ZERO)?),
            MAXIMUM_QOS => self.maximum_qos = Some(flag(r)?),
            RETAIN_AVAILABLE => self.retain_available = Some(flag(r)?),
            USER_PROPERTY => {
                let key = r.string()?;
                let value = r.string()?;
                self.user_properties.push((key, value));
            }
            MAXIMUM_PACKET_SIZE => match r.u32()? {
                0 => return Err(rule::MAXIMUM_PACKET_SIZE_ZERO),
                v => self.maximum_packet_size = Some(v),
            },
            WILDCARD_SUBSCRIPTION_AVAILABLE => {
                self.wildcard_subscription_available = Some(flag(r)?)
            }
            SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
                self.subscription_identifier_available = Some(flag(r)?)
            }
            SHARED_SUBSCRIPTION_AVAILABLE => self.shared_subscription_available = Some(flag(r)?),
            // `decode` only calls this for ids in ALL_PROPERTIES, all matched above.
            _ => return Err(rule::UNKNOWN_PROPERTY),
        }
        Ok(())
    }

    /// Bytes of the properties themselves, without the length prefix.
    pub fn body_len(&self) -> usize {
        let s = |v: &Option<ByteStr>| v.as_ref().map_or(0, |v| 3 + v.len());
        let b = |v: &Option<Bytes>| v.as_ref().map_or(0, |v| 3 + v.len());
        let n = |present: bool, size: usize| if present { 1 + size } else { 0 };
        n(self.payload_format_indicator.is_some(), 1)
            + n(self.message_expiry_interval.is_some(), 4)
            + s(&self.content_type)
            + s(&self.response_topic)
            + b(&self.correlation_data)
            + self
                .subscription_identifiers
                .iter()
                .map(|&v| 1 + varint_len(v))
                .sum::<usize>()
            + n(self.session_expiry_interval.is_some(), 4)
            + s(&self.assigned_client_identifier)
            + n(self.server_keep_alive.is_some(), 2)
            + s(&self.authentication_method)
            + b(&self.authentication_data)
            + n(self.request_problem_information.is_some(), 1)
            + n(self.will_delay_interval.is_some(), 4)
            + n(self.request_response_information.is_some(), 1)
            + s(&self.response_information)
            + s(&self.server_reference)
            + s(&self.reason_string)
            + n(self.receive_maximum.is_some(), 2)
            + n(self.topic_alias_maximum.is_some(), 2)
            + n(self.topic_alias.is_some(), 2)
            + n(self.maximum_qos.is_some(), 1)
            + n(self.retain_available.is_some(), 1)
            + self
                .user_properties
                .iter()
                .map(|(k, v)| 5 + k.len() + v.len())
                .sum::<usize>()
            + n(self.maximum_packet_size.is_some(), 4)
            + n(self.wildcard_subscription_available.is_some(), 1)
            + n(self.subscription_identifier_available.is_some(), 1)
            + n(self.shared_subscription_available.is_some(), 1)
    }

    /// Bytes of the whole property section: length prefix plus body.
    pub fn encoded_len(&self) -> usize {
        let body = self.body_len();
        varint_len(body as u32) + body
    }

    /// Writes the length prefix and the properties, in identifier order.
    pub(crate) fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        use id::*;
        let body = self.body_len();
        if body > VARINT_MAX as usize {
            return Err(EncodeError::PacketTooLarge);
        }
        put_varint(out, body as u32);
        if body == 0 {
            return Ok(());
        }
        fn u8p(out: &mut BytesMut, pid: u8, v: Option<u8>) {
            if let Some(v) = v {
                out.put_u8(pid);
                out.put_u8(v);
            }
        }
        fn u16p(out: &mut BytesMut, pid: u8, v: Option<u16>) {
            if let Some(v) = v {
                out.put_u8(pid);
                out.put_u16(v);
            }
        }
        fn u32p(out: &mut BytesMut, pid: u8, v: Option<u32>) {
            if let Some(v) = v {
                out.put_u8(pid);
                out.put_u32(v);
            }
        }
        fn st(v: &Option<ByteStr>) -> Option<&[u8]> {
            v.as_ref().map(|v| v.as_bytes().as_ref())
        }
        fn bn(v: &Option<Bytes>) -> Option<&[u8]> {
            v.as_deref()
        }
        fn binp(out: &mut BytesMut, pid: u8, v: Option<&[u8]>) -> Result<(), EncodeError> {
            if let Some(v) = v {
                out.put_u8(pid);
                put_binary(out, v)?;
            }
            Ok(())
        }
        u8p(out, PAYLOAD_FORMAT_INDICATOR, self.payload_format_indicator);
        u32p(out, MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        binp(out, CONTENT_TYPE, st(&self.content_type))?;
        binp(out, RESPONSE_TOPIC, st(&self.response_topic))?;
        binp(out, CORRELATION_DATA, bn(&self.correlation_data))?;
        for &v in &self.subscription_identifiers {
            if v == 0 || v > VARINT_MAX {
                return Err(EncodeError::InvalidProperty("Subscription Identifier"));
            }
            out.put_u8(SUBSCRIPTION_IDENTIFIER);
            put_varint(out, v);
        }
        u32p(out, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        binp(
            out,
            ASSIGNED_CLIENT_IDENTIFIER,
            st(&self.assigned_client_identifier),
        )?;
        u16p(out, SERVER_KEEP_ALIVE, self.server_keep_alive);
        binp(out, AUTHENTICATION_METHOD, st(&self.authentication_method))?;
        binp(out, AUTHENTICATION_DATA, bn(&self.authentication_data))?;
        u8p(
            out,
            REQUEST_PROBLEM_INFORMATION,
            self.request_problem_information,
        );
        u32p(out, WILL_DELAY_INTERVAL, self.will_delay_interval);
        u8p(
            out,
            REQUEST_RESPONSE_INFORMATION,
            self.request_response_information,
        );
        binp(out, RESPONSE_INFORMATION, st(&self.response_information))?;
        binp(out, SERVER_REFERENCE, st(&self.server_reference))?;
        binp(out, REASON_STRING, st(&self.reason_string))?;
        u16p(out, RECEIVE_MAXIMUM, self.receive_maximum);
        u16p(out, TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        u16p(out, TOPIC_ALIAS, self.topic_alias);
        u8p(out, MAXIMUM_QOS, self.maximum_qos);
        u8p(out, RETAIN_AVAILABLE, self.retain_available);
        for (k, v) in &self.user_properties {
            out.put_u8(USER_PROPERTY);
            put_binary(out, k.as_bytes())?;
            put_binary(out, v.as_bytes())?;
        }
        u32p(out, MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        u8p(
            out,
            WILDCARD_SUBSCRIPTION_AVAILABLE,
            self.wildcard_subscription_available,
        );
        u8p(
            out,
            SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            self.subscription_identifier_available,
        );
        u8p(
            out,
            SHARED_SUBSCRIPTION_AVAILABLE,
            self.shared_subscription_available,
        );
        Ok(())
    }
}

const ALL_PROPERTIES: u64 = {
    use id::*;
    mask(&[
        PAYLOAD_FORMAT_INDICATOR,
        MESSAGE_EXPIRY_INTERVAL,
        CONTENT_TYPE,
        RESPONSE_TOPIC,
        CORRELATION_DATA,
        SUBSCRIPTION_IDENTIFIER,
        SESSION_EXPIRY_INTERVAL,
        ASSIGNED_CLIENT_IDENTIFIER,
        SERVER_KEEP_ALIVE,
        AUTHENTICATION_METHOD,
        AUTHENTICATION_DATA,
        REQUEST_PROBLEM_INFORMATION,
        WILL_DELAY_INTERVAL,
        REQUEST_RESPONSE_INFORMATION,
        RESPONSE_INFORMATION,
        SERVER_REFERENCE,
        REASON_STRING,
        RECEIVE_MAXIMUM,
        TOPIC_ALIAS_MAXIMUM,
        TOPIC_ALIAS,
        MAXIMUM_QOS,
        RETAIN_AVAILABLE,
        USER_PROPERTY,
        MAXIMUM_PACKET_SIZE,
        WILDCARD_SUBSCRIPTION_AVAILABLE,
        SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        SHARED_SUBSCRIPTION_AVAILABLE,
    ])
};
