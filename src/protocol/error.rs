//! Decode and encode errors. Every decode error is a constant that names the normative statement
//! it enforces (3.1.1 and 5.0 numbering differ, so it carries both where both exist) and the
//! reason code the connection answers with. The constants are the codec's conformance table:
//! `docs/conformance.md` lists them with the tests that prove each one.

use super::ReasonCode;
use std::fmt;

/// A packet the codec refuses: which statement it breaks and how to answer it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DecodeError {
    /// MQTT 3.1.1 statement id (or section) broken, if the rule exists in 3.1.1.
    pub v311: Option<&'static str>,
    /// MQTT 5.0 statement id (or section) broken, if the rule exists in 5.0.
    pub v5: Option<&'static str>,
    /// What a v5 peer is told (CONNACK or DISCONNECT); a 3.1.1 peer is simply disconnected,
    /// except for [`UNSUPPORTED_PROTOCOL_VERSION`] which gets CONNACK return code 1.
    pub reason: ReasonCode,
    /// One line for the log.
    pub message: &'static str,
}

impl DecodeError {
    const fn new(
        reason: ReasonCode,
        v311: Option<&'static str>,
        v5: Option<&'static str>,
        message: &'static str,
    ) -> Self {
        Self {
            v311,
            v5,
            reason,
            message,
        }
    }

    /// The reason code to send a v5 peer before closing.
    pub fn reason_code(&self) -> ReasonCode {
        self.reason
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.v311, self.v5) {
            (Some(a), Some(b)) if a == b => write!(f, "[{a}] ")?,
            (Some(a), Some(b)) => write!(f, "[{a} | v5 {b}] ")?,
            (Some(a), None) => write!(f, "[{a}] ")?,
            (None, Some(b)) => write!(f, "[v5 {b}] ")?,
            (None, None) => {}
        }
        write!(f, "{} ({})", self.message, self.reason)
    }
}

impl fmt::Debug for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for DecodeError {}

const MALFORMED: ReasonCode = ReasonCode::MALFORMED_PACKET;
const PROTOCOL: ReasonCode = ReasonCode::PROTOCOL_ERROR;

/// Generates the rule constants, and `ALL` that lists them, from one table. A row reads
///
/// `NAME = reason, v311, v5, "message";`
///
/// the arguments of [`DecodeError::new`]. The message, which is also the log line, is the first
/// line of the constant's doc; `///` lines on the row follow it.
macro_rules! rules {
    ($($(#[$doc:meta])* $name:ident = $reason:expr, $v311:expr, $v5:expr, $msg:expr;)*) => {
        $(
            #[doc = concat!("Refused: ", $msg, ".")]
            $(#[$doc])*
            pub const $name: DecodeError = DecodeError::new($reason, $v311, $v5, $msg);
        )*
        /// Every decode error, for the conformance table and its tests.
        pub const ALL: &[(&str, DecodeError)] = &[$((stringify!($name), $name)),*];
    };
}

rules! {
    // Framing (section 2)
    RESERVED_PACKET_TYPE = PROTOCOL, Some("2.2.1"), Some("2.1.2"),
        "packet type 0 (or 15 before MQTT 5) is reserved";
    PACKET_TYPE_NOT_ACCEPTED = PROTOCOL, Some("2.2.1"), Some("2.1.2"),
        "packet type only a server sends (CONNACK, SUBACK, UNSUBACK, PINGRESP)";
    SECOND_CONNECT = PROTOCOL, Some("MQTT-3.1.0-2"), Some("MQTT-3.1.0-2"),
        "second CONNECT on one connection";
    AUTH_NOT_NEGOTIATED = PROTOCOL, None, Some("MQTT-4.12.0-7"),
        "AUTH from a client whose CONNECT named no Authentication Method";
    RESERVED_FLAGS = MALFORMED, Some("MQTT-2.2.2-2"), Some("MQTT-2.1.3-1"),
        "fixed header flags are not the values the packet type requires";
    REMAINING_LENGTH_TOO_LONG = MALFORMED, Some("2.2.3"), Some("1.5.5"),
        "remaining length uses more than 4 bytes";
    NON_MINIMAL_VARIABLE_INTEGER = MALFORMED, Some("2.2.3"), Some("MQTT-1.5.5-1"),
        "variable byte integer is not encoded in the minimum number of bytes";
    PACKET_TOO_LARGE = ReasonCode::PACKET_TOO_LARGE, None, Some("3.1.2.11.4"),
        "packet exceeds the maximum packet size";
    TRUNCATED = MALFORMED, Some("MQTT-4.8.0-1"), Some("4.13"),
        "packet ends before its fields do";
    TRAILING_BYTES = MALFORMED, Some("MQTT-4.8.0-1"), Some("4.13"),
        "bytes left over after the packet's last field";
    PACKET_ID_ZERO = PROTOCOL, Some("MQTT-2.3.1-1"), Some("MQTT-2.2.1-3"),
        "packet identifier 0 where a non-zero identifier is required";
    // Data representation (section 1.5)
    INVALID_UTF8 = MALFORMED, Some("MQTT-1.5.3-1"), Some("MQTT-1.5.4-1"),
        "UTF-8 string is ill-formed or encodes a surrogate";
    UTF8_NULL = MALFORMED, Some("MQTT-1.5.3-2"), Some("MQTT-1.5.4-2"),
        "UTF-8 string contains U+0000";
    UTF8_DISALLOWED_CODE_POINT = MALFORMED, Some("1.5.3"), Some("1.5.4"),
        "UTF-8 string contains a control character or non-character (refused, as Mosquitto does)";
    // CONNECT (3.1)
    PROTOCOL_NAME = PROTOCOL, Some("MQTT-3.1.2-1"), Some("MQTT-3.1.2-1"),
        "protocol name is not MQTT (or MQIsdp for level 3)";
    UNSUPPORTED_PROTOCOL_VERSION = ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
        Some("MQTT-3.1.2-2"), Some("MQTT-3.1.2-2"), "protocol level is not 3, 4 or 5";
    CONNECT_RESERVED_FLAG = MALFORMED, Some("MQTT-3.1.2-3"), Some("MQTT-3.1.2-3"),
        "CONNECT reserved flag is not 0";
    WILL_QOS_WITHOUT_WILL = MALFORMED, Some("MQTT-3.1.2-13"), Some("MQTT-3.1.2-11"),
        "will QoS is not 0 while the will flag is 0";
    WILL_QOS_3 = MALFORMED, Some("MQTT-3.1.2-14"), Some("3.1.2.6"),
        "will QoS is 3";
    WILL_RETAIN_WITHOUT_WILL = MALFORMED, Some("MQTT-3.1.2-15"), Some("MQTT-3.1.2-13"),
        "will retain is set while the will flag is 0";
    PASSWORD_WITHOUT_USERNAME = PROTOCOL, Some("MQTT-3.1.2-22"), None,
        "password flag is set while the user name flag is 0";
    // PUBLISH (3.3)
    QOS_3 = MALFORMED, Some("MQTT-3.3.1-4"), Some("MQTT-3.3.1-4"),
        "PUBLISH has both QoS bits set";
    DUP_WITH_QOS_0 = MALFORMED, Some("MQTT-3.3.1-2"), Some("MQTT-3.3.1-2"),
        "PUBLISH has DUP set with QoS 0";
    WILDCARD_IN_TOPIC_NAME = PROTOCOL, Some("MQTT-3.3.2-2"), Some("MQTT-3.3.2-2"),
        "PUBLISH topic name contains a wildcard character";
    EMPTY_TOPIC = PROTOCOL, Some("MQTT-4.7.3-1"), Some("MQTT-4.7.3-1"),
        "topic name or filter is empty (v5 allows an empty PUBLISH topic only with a Topic Alias)";
    // SUBSCRIBE / UNSUBSCRIBE (3.8, 3.10)
    NO_TOPIC_FILTERS = PROTOCOL, Some("MQTT-3.8.3-3"), Some("MQTT-3.8.3-2"),
        "SUBSCRIBE or UNSUBSCRIBE has no topic filter";
    SUBSCRIPTION_RESERVED_BITS = MALFORMED, Some("MQTT-3.8.3-4"), Some("MQTT-3.8.3-5"),
        "reserved bits of the subscription options byte are not 0";
    SUBSCRIPTION_QOS_3 = MALFORMED, Some("MQTT-3.8.3-4"), Some("3.8.3.1"),
        "subscription requests QoS 3";
    RETAIN_HANDLING_3 = PROTOCOL, None, Some("3.8.3.1"),
        "subscription Retain Handling is 3";
    // Acknowledgements and reason codes
    INVALID_RETURN_CODE = PROTOCOL, Some("3.2.2.3"), Some("2.4"),
        "reason or return code is not one this packet may carry";
    CONNACK_RESERVED_FLAGS = MALFORMED, Some("3.2.2.1"), Some("3.2.2.1"),
        "CONNACK acknowledge flags bits 7-1 are not 0";
    SESSION_PRESENT_WITH_ERROR = PROTOCOL, Some("MQTT-3.2.2-4"), Some("MQTT-3.2.2-6"),
        "CONNACK has session present set with a failure code";
    NO_RETURN_CODES = PROTOCOL, Some("3.9.3"), Some("3.9.3"),
        "SUBACK or UNSUBACK carries no reason codes";
    // Properties (2.2.2 in MQTT 5.0)
    DUPLICATE_PROPERTY = PROTOCOL, None, Some("2.2.2.2"),
        "a property other than User Property or Subscription Identifier appears twice";
    PROPERTY_NOT_ALLOWED = MALFORMED, None, Some("2.2.2.2"),
        "property is not allowed on this packet";
    UNKNOWN_PROPERTY = MALFORMED, None, Some("2.2.2.2"),
        "property identifier is not defined";
    PROPERTY_VALUE = PROTOCOL, None, Some("3.1.2.11"),
        "a property has a value the spec forbids (a 0/1 flag that is neither)";
    TOPIC_ALIAS_ZERO = ReasonCode::TOPIC_ALIAS_INVALID, None, Some("MQTT-3.3.2-8"),
        "Topic Alias is 0";
    SUBSCRIPTION_IDENTIFIER_ZERO = PROTOCOL, None, Some("3.8.2.1.2"),
        "Subscription Identifier is 0";
    RECEIVE_MAXIMUM_ZERO = PROTOCOL, None, Some("3.1.2.11.3"),
        "Receive Maximum is 0";
    MAXIMUM_PACKET_SIZE_ZERO = PROTOCOL, None, Some("3.1.2.11.4"),
        "Maximum Packet Size is 0";
    AUTH_DATA_WITHOUT_METHOD = PROTOCOL, None, Some("3.1.2.11.10"),
        "Authentication Data without an Authentication Method";
    PAYLOAD_NOT_UTF8 = ReasonCode::PAYLOAD_FORMAT_INVALID, None, Some("3.3.2.3.2"),
        "Payload Format Indicator says UTF-8 but the payload is not valid UTF-8";
}

/// Why a packet could not be encoded. Encoding a packet the codec built itself never fails;
/// these guard against values a caller put in by hand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A string or binary field is longer than 65,535 bytes.
    #[error("a string or binary field is longer than 65,535 bytes")]
    FieldTooLong,
    /// The packet would exceed the largest remaining length, 268,435,455 bytes.
    #[error("packet is larger than the largest remaining length (268,435,455 bytes)")]
    PacketTooLarge,
    /// A packet type or field this protocol version does not have (e.g. AUTH before MQTT 5).
    #[error("{0} cannot be sent with this protocol version")]
    NotInVersion(&'static str),
    /// A reason code that this packet (in this version) cannot carry.
    #[error("reason code {0} cannot be sent in this packet")]
    InvalidReasonCode(ReasonCode),
    /// A property value the spec does not allow (e.g. Subscription Identifier 0).
    #[error("property value out of range: {0}")]
    InvalidProperty(&'static str),
    /// A packet identifier of 0 where one is required.
    #[error("packet identifier 0 where a non-zero identifier is required")]
    PacketIdZero,
}
