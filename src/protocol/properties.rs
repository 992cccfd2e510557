//! MQTT 5.0 properties (section 2.2.2): one typed struct for every packet, decoded with the
//! per-packet rules of the property table (which packet may carry which property, which may
//! repeat, which values are forbidden) and encoded in a fixed order.
//!
//! The property table itself is the `properties!` invocation below, one row per property: the
//! identifier constants, the struct's fields, the per-packet masks, decoding, encoding and
//! sizes are all generated from it.

use super::ByteStr;
use super::error::{self as rule, DecodeError, EncodeError};
use super::wire::{Reader, VARINT_MAX, check_topic_name, put_binary, put_varint, varint_len};
use bytes::{BufMut, Bytes, BytesMut};

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

impl Context {
    /// How many contexts there are: the length of [`ALLOWED`].
    const COUNT: usize = Self::Auth as usize + 1;

    /// The property table of section 2.2.2.2 as a bit set per packet.
    fn allowed(self) -> u64 {
        ALLOWED[self as usize]
    }

    /// Whether `id` may appear more than once in this packet.
    fn may_repeat(self, pid: u8) -> bool {
        pid == id::USER_PROPERTY || (pid == id::SUBSCRIPTION_IDENTIFIER && self == Self::Publish)
    }
}

/// Generates everything that lists the properties from one table. A row reads
///
/// `NAME = id "Spec name", field: kind [if check], [packets];`
///
/// - `NAME = id`: the identifier constant in [`id`];
/// - `"Spec name"`: its name in the spec, for the docs and encode errors;
/// - `field: kind`: the field of [`Properties`], and how its value travels (section 2.2.2.2's
///   "Type" column): `byte`, `u16` (Two Byte Integer), `u32` (Four Byte Integer), `utf8` (UTF-8
///   Encoded String), `binary` (Binary Data), `varint` (Variable Byte Integer) or `utf8_pair`
///   (UTF-8 String Pair). The last two are held as vectors: they are the properties that may
///   repeat;
/// - `if check`: a function the decoded value must pass, `Err` being the decode error;
/// - `[packets]`: the [`Context`]s whose property section may carry it.
///
/// Rows stand in identifier order, which is the order properties are encoded in.
macro_rules! properties {
    (@type byte) => { Option<u8> };
    (@type u16) => { Option<u16> };
    (@type u32) => { Option<u32> };
    (@type utf8) => { Option<ByteStr> };
    (@type binary) => { Option<Bytes> };
    (@type varint) => { Vec<u32> };
    (@type utf8_pair) => { Vec<(ByteStr, ByteStr)> };
    (@check) => { accept };
    (@check $check:expr) => { $check };
    ($(
        $(#[$doc:meta])*
        $name:ident = $id:literal $title:literal,
            $field:ident: $kind:ident $(if $check:expr)?, [$($ctx:ident)+];
    )*) => {
        /// Property identifiers (section 2.2.2.2).
        pub mod id {
            $( #[doc = $title] pub const $name: u8 = $id; )*
        }

        /// Every MQTT 5.0 property. Absent properties are `None` (or empty); the spec's defaults
        /// are applied by whoever reads them, so that a decoded packet encodes back to the same
        /// bytes.
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct Properties {
            $( #[doc = concat!($title, ".")] $(#[$doc])* pub $field: properties!(@type $kind), )*
        }

        /// Every defined identifier, as a bit set.
        const ALL_PROPERTIES: u64 = 0 $(| 1 << id::$name)*;

        /// Per [`Context`], the identifiers its property section may carry, as a bit set.
        const ALLOWED: [u64; Context::COUNT] = {
            let mut allowed = [0; Context::COUNT];
            $($( allowed[Context::$ctx as usize] |= 1 << id::$name; )+)*
            allowed
        };

        // The rows are in identifier order (the encode order), and every id fits the bit sets.
        const _: () = {
            let ids = [$(id::$name),*];
            let mut i = 0;
            while i < ids.len() {
                assert!(ids[i] < 64 && (i == 0 || ids[i - 1] < ids[i]));
                i += 1;
            }
        };

        impl Properties {
            /// No property set.
            pub const EMPTY: Self = Self { $($field: Value::NONE,)* };

            /// Reads the value of property `pid`, which `decode` has checked is defined.
            fn read_one(&mut self, pid: u8, r: &mut Reader) -> Result<(), DecodeError> {
                match pid {
                    $( id::$name => self.$field.read(r, properties!(@check $($check)?)), )*
                    _ => Err(rule::UNKNOWN_PROPERTY),
                }
            }

            /// Bytes of the properties themselves, without the length prefix.
            pub fn body_len(&self) -> usize {
                0 $(+ self.$field.wire_len())*
            }

            /// Writes every property set, identifier and value, in identifier order.
            fn put_body(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
                $( self.$field.put(out, id::$name, $title)?; )*
                Ok(())
            }
        }
    };
}

properties! {
    PAYLOAD_FORMAT_INDICATOR = 0x01 "Payload Format Indicator",
        payload_format_indicator: byte if flag, [Publish Will];
    MESSAGE_EXPIRY_INTERVAL = 0x02 "Message Expiry Interval",
        message_expiry_interval: u32, [Publish Will];
    CONTENT_TYPE = 0x03 "Content Type",
        content_type: utf8, [Publish Will];
    RESPONSE_TOPIC = 0x08 "Response Topic",
        response_topic: utf8 if topic_name, [Publish Will];
    CORRELATION_DATA = 0x09 "Correlation Data",
        correlation_data: binary, [Publish Will];
    /// Several only in a server-to-client PUBLISH (one per matching subscription).
    SUBSCRIPTION_IDENTIFIER = 0x0B "Subscription Identifier",
        subscription_identifiers: varint if non_zero(rule::SUBSCRIPTION_IDENTIFIER_ZERO),
        [Publish Subscribe];
    SESSION_EXPIRY_INTERVAL = 0x11 "Session Expiry Interval",
        session_expiry_interval: u32, [Connect ConnAck Disconnect];
    ASSIGNED_CLIENT_IDENTIFIER = 0x12 "Assigned Client Identifier",
        assigned_client_identifier: utf8, [ConnAck];
    SERVER_KEEP_ALIVE = 0x13 "Server Keep Alive",
        server_keep_alive: u16, [ConnAck];
    AUTHENTICATION_METHOD = 0x15 "Authentication Method",
        authentication_method: utf8, [Connect ConnAck Auth];
    AUTHENTICATION_DATA = 0x16 "Authentication Data",
        authentication_data: binary, [Connect ConnAck Auth];
    REQUEST_PROBLEM_INFORMATION = 0x17 "Request Problem Information",
        request_problem_information: byte if flag, [Connect];
    WILL_DELAY_INTERVAL = 0x18 "Will Delay Interval",
        will_delay_interval: u32, [Will];
    REQUEST_RESPONSE_INFORMATION = 0x19 "Request Response Information",
        request_response_information: byte if flag, [Connect];
    RESPONSE_INFORMATION = 0x1A "Response Information",
        response_information: utf8, [ConnAck];
    SERVER_REFERENCE = 0x1C "Server Reference",
        server_reference: utf8, [ConnAck Disconnect];
    REASON_STRING = 0x1F "Reason String",
        reason_string: utf8, [ConnAck Ack SubAck UnsubAck Disconnect Auth];
    RECEIVE_MAXIMUM = 0x21 "Receive Maximum",
        receive_maximum: u16 if non_zero(rule::RECEIVE_MAXIMUM_ZERO), [Connect ConnAck];
    TOPIC_ALIAS_MAXIMUM = 0x22 "Topic Alias Maximum",
        topic_alias_maximum: u16, [Connect ConnAck];
    TOPIC_ALIAS = 0x23 "Topic Alias",
        topic_alias: u16 if non_zero(rule::TOPIC_ALIAS_ZERO), [Publish];
    MAXIMUM_QOS = 0x24 "Maximum QoS",
        maximum_qos: byte if flag, [ConnAck];
    RETAIN_AVAILABLE = 0x25 "Retain Available",
        retain_available: byte if flag, [ConnAck];
    /// In the order they were received; the spec requires forwarding them in order.
    USER_PROPERTY = 0x26 "User Property",
        user_properties: utf8_pair,
        [Connect ConnAck Publish Will Ack Subscribe SubAck Unsubscribe UnsubAck Disconnect Auth];
    MAXIMUM_PACKET_SIZE = 0x27 "Maximum Packet Size",
        maximum_packet_size: u32 if non_zero(rule::MAXIMUM_PACKET_SIZE_ZERO), [Connect ConnAck];
    WILDCARD_SUBSCRIPTION_AVAILABLE = 0x28 "Wildcard Subscription Available",
        wildcard_subscription_available: byte if flag, [ConnAck];
    SUBSCRIPTION_IDENTIFIER_AVAILABLE = 0x29 "Subscription Identifier Available",
        subscription_identifier_available: byte if flag, [ConnAck];
    SHARED_SUBSCRIPTION_AVAILABLE = 0x2A "Shared Subscription Available",
        shared_subscription_available: byte if flag, [ConnAck];
}

/// Every one-byte property is a 0/1 flag.
fn flag(v: &u8) -> Result<(), DecodeError> {
    match v {
        0 | 1 => Ok(()),
        _ => Err(rule::PROPERTY_VALUE),
    }
}

/// [MQTT-3.3.2-14] a Response Topic is a topic name: no wildcards.
fn topic_name(v: &ByteStr) -> Result<(), DecodeError> {
    check_topic_name(v)
}

/// A value that must not be 0, refused with `err`.
fn non_zero<T: Copy + Into<u32>>(err: DecodeError) -> impl Fn(&T) -> Result<(), DecodeError> {
    move |&v| if v.into() == 0 { Err(err) } else { Ok(()) }
}

/// The check of a row that has none.
fn accept<T>(_: &T) -> Result<(), DecodeError> {
    Ok(())
}

/// How one field of [`Properties`] travels: each field type stands for one wire kind.
trait Value: Sized {
    /// The field when the property is absent.
    const NONE: Self;
    /// One value of the property.
    type One;
    /// Keeps a decoded value: sets it, or appends it for a property that may repeat.
    fn keep(&mut self, v: Self::One);
    /// Bytes on the wire, identifiers included; 0 when absent.
    fn wire_len(&self) -> usize;
    /// Writes identifier `pid` and the value, once per value held; `name` names the property
    /// in an encode error.
    fn put(&self, out: &mut BytesMut, pid: u8, name: &'static str) -> Result<(), EncodeError>;
    /// Reads one value.
    fn read_value(r: &mut Reader) -> Result<Self::One, DecodeError>;

    /// Reads one value, checks it and keeps it.
    fn read(
        &mut self,
        r: &mut Reader,
        check: impl FnOnce(&Self::One) -> Result<(), DecodeError>,
    ) -> Result<(), DecodeError> {
        let v = Self::read_value(r)?;
        check(&v)?;
        self.keep(v);
        Ok(())
    }
}

/// The value of a property that appears at most once: a fixed-size integer, a string or binary
/// data.
trait Single: Sized {
    fn read(r: &mut Reader) -> Result<Self, DecodeError>;
    /// Bytes of the value, length prefix included.
    fn size(&self) -> usize;
    fn put(&self, out: &mut BytesMut) -> Result<(), EncodeError>;
}

/// The Byte, Two Byte and Four Byte Integers, big-endian.
macro_rules! integers {
    ($($t:ident => $put:ident),*) => {$(
        impl Single for $t {
            fn read(r: &mut Reader) -> Result<Self, DecodeError> {
                r.$t()
            }
            fn size(&self) -> usize {
                size_of::<$t>()
            }
            fn put(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
                out.$put(*self);
                Ok(())
            }
        }
    )*};
}

integers!(u8 => put_u8, u16 => put_u16, u32 => put_u32);

impl Single for Bytes {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        r.binary()
    }
    fn size(&self) -> usize {
        2 + self.len()
    }
    fn put(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        put_binary(out, self)
    }
}

/// A UTF-8 Encoded String travels as binary data does; only its reading checks more.
impl Single for ByteStr {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        r.string()
    }
    fn size(&self) -> usize {
        self.as_bytes().size()
    }
    fn put(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        self.as_bytes().put(out)
    }
}

impl<T: Single> Value for Option<T> {
    const NONE: Self = None;
    type One = T;

    fn keep(&mut self, v: T) {
        *self = Some(v);
    }

    fn wire_len(&self) -> usize {
        self.as_ref().map_or(0, |v| 1 + v.size())
    }

    fn put(&self, out: &mut BytesMut, pid: u8, _: &'static str) -> Result<(), EncodeError> {
        if let Some(v) = self {
            out.put_u8(pid);
            v.put(out)?;
        }
        Ok(())
    }

    fn read_value(r: &mut Reader) -> Result<T, DecodeError> {
        T::read(r)
    }
}

/// One value of a property that may repeat.
trait Repeated: Sized {
    fn read(r: &mut Reader) -> Result<Self, DecodeError>;
    /// Bytes of the value.
    fn size(&self) -> usize;
    /// `name` names the property in an encode error.
    fn put(&self, out: &mut BytesMut, name: &'static str) -> Result<(), EncodeError>;
}

/// A Variable Byte Integer: a Subscription Identifier, 1 to 268,435,455.
impl Repeated for u32 {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        r.varint()
    }
    fn size(&self) -> usize {
        varint_len(*self)
    }
    fn put(&self, out: &mut BytesMut, name: &'static str) -> Result<(), EncodeError> {
        if *self == 0 || *self > VARINT_MAX {
            return Err(EncodeError::InvalidProperty(name));
        }
        put_varint(out, *self);
        Ok(())
    }
}

/// A UTF-8 String Pair: a User Property.
impl Repeated for (ByteStr, ByteStr) {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok((r.string()?, r.string()?))
    }
    fn size(&self) -> usize {
        self.0.size() + self.1.size()
    }
    fn put(&self, out: &mut BytesMut, _: &'static str) -> Result<(), EncodeError> {
        self.0.put(out)?;
        self.1.put(out)
    }
}

/// In the order received, which is the order sent.
impl<T: Repeated> Value for Vec<T> {
    const NONE: Self = Vec::new();
    type One = T;

    fn keep(&mut self, v: T) {
        self.push(v);
    }

    fn wire_len(&self) -> usize {
        self.iter().map(|v| 1 + v.size()).sum()
    }

    fn put(&self, out: &mut BytesMut, pid: u8, name: &'static str) -> Result<(), EncodeError> {
        for v in self {
            out.put_u8(pid);
            v.put(out, name)?;
        }
        Ok(())
    }

    fn read_value(r: &mut Reader) -> Result<T, DecodeError> {
        T::read(r)
    }
}

/// A packet's properties as a packet holds them: absent (no allocation) when empty, boxed
/// otherwise, so every packet stays small — most packets carry no properties, and a 400-byte
/// struct inside each one was copied on every decode. Reads go through `Deref` (an absent set
/// reads as all `None`); writes go through [`Props::make_mut`], which allocates on first use, or
/// [`Props::get_mut`], which never does.
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

    /// The properties, for setting one: allocates an empty set first if there is none. Call it
    /// only to write a value; to change or clear properties that may be absent, use
    /// [`Props::get_mut`], which leaves an absent set unallocated.
    pub fn make_mut(&mut self) -> &mut Properties {
        self.0.get_or_insert_with(Box::default)
    }

    /// The properties, for changing or clearing them: `None` (and no allocation) when the set
    /// is absent, where there is nothing to change.
    pub fn get_mut(&mut self) -> Option<&mut Properties> {
        self.0.as_deref_mut()
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

impl Properties {
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

    /// Bytes of the whole property section: length prefix plus body.
    pub fn encoded_len(&self) -> usize {
        let body = self.body_len();
        varint_len(body as u32) + body
    }

    /// Writes the length prefix and the properties, in identifier order.
    pub(crate) fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        let body = self.body_len();
        if body > VARINT_MAX as usize {
            return Err(EncodeError::PacketTooLarge);
        }
        put_varint(out, body as u32);
        if body == 0 {
            return Ok(());
        }
        self.put_body(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_make_mut_allocates() {
        let mut p = Props::NONE;
        assert!(
            p.get_mut().is_none() && p.0.is_none(),
            "changing must not allocate"
        );
        p.make_mut().topic_alias = Some(3);
        assert_eq!(p.get_mut().and_then(|p| p.topic_alias), Some(3));
        assert_eq!(p.topic_alias, Some(3), "reads through `Deref`");
    }
}
