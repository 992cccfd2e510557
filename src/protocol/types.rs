//! Small value types shared by every packet: protocol version, QoS, and `ByteStr`, a UTF-8
//! string that is a zero-copy slice of the frame it was decoded from.

use bytes::Bytes;
use std::fmt;
use std::ops::Deref;

/// The protocol level a connection speaks, fixed by its CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProtocolVersion {
    /// MQTT 3.1, protocol name `MQIsdp`, level 3.
    V3_1,
    /// MQTT 3.1.1, level 4.
    V3_1_1,
    /// MQTT 5.0, level 5.
    V5,
}

impl ProtocolVersion {
    /// The protocol level byte of CONNECT.
    pub fn level(self) -> u8 {
        match self {
            Self::V3_1 => 3,
            Self::V3_1_1 => 4,
            Self::V5 => 5,
        }
    }

    /// The protocol name CONNECT carries for this level.
    pub fn protocol_name(self) -> &'static [u8] {
        match self {
            Self::V3_1 => b"MQIsdp",
            _ => b"MQTT",
        }
    }

    /// True for MQTT 5.0, the only version with properties and reason codes.
    pub fn is_v5(self) -> bool {
        self == Self::V5
    }
}

/// Quality of service of a message or subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum QoS {
    /// QoS 0: delivered at most once, never acknowledged.
    #[default]
    AtMostOnce = 0,
    /// QoS 1: delivered at least once, acknowledged by PUBACK.
    AtLeastOnce = 1,
    /// QoS 2: delivered exactly once, by the PUBREC, PUBREL, PUBCOMP exchange.
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS for a two-bit value; 3 is not a QoS.
    pub fn from_bits(bits: u8) -> Option<Self> {
        match bits {
            0 => Some(Self::AtMostOnce),
            1 => Some(Self::AtLeastOnce),
            2 => Some(Self::ExactlyOnce),
            _ => None,
        }
    }
}

/// A string that was checked against MQTT's UTF-8 rules (section 1.5.4), held as `Bytes` so a
/// decoded topic or client id shares the frame's memory instead of copying it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ByteStr(Bytes);

impl ByteStr {
    /// Wraps bytes the caller has already validated with [`super::wire::validate_utf8`].
    pub(crate) fn from_validated(b: Bytes) -> Self {
        debug_assert!(std::str::from_utf8(&b).is_ok());
        Self(b)
    }

    /// A string from a `'static` literal, checked like a decoded one.
    pub fn from_static(s: &'static str) -> Result<Self, super::DecodeError> {
        super::wire::validate_utf8(s.as_bytes())?;
        Ok(Self(Bytes::from_static(s.as_bytes())))
    }

    /// Checks `b` against the MQTT UTF-8 rules and wraps it.
    pub fn try_from_bytes(b: Bytes) -> Result<Self, super::DecodeError> {
        super::wire::validate_utf8(&b)?;
        Ok(Self(b))
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor admits only bytes that passed `validate_utf8`, which
        // requires `str::from_utf8` to succeed, and the bytes are immutable afterwards.
        // Re-validating here would cost a scan of the topic on every trie lookup.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The underlying bytes (shares memory).
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Unwraps into the underlying bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl TryFrom<&str> for ByteStr {
    type Error = super::DecodeError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::try_from_bytes(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl TryFrom<String> for ByteStr {
    type Error = super::DecodeError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::try_from_bytes(Bytes::from(s))
    }
}

impl Deref for ByteStr {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for ByteStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ByteStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
