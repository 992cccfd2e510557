//! The MQTT codec: every packet of MQTT 3.1, 3.1.1 and 5.0, decoded strictly and encoded
//! exactly.
//!
//! Pure by design: no I/O, no tokio, no logging, no clock. [`decode`] takes bytes from a
//! `BytesMut` one packet at a time (`Ok(None)` means "need more bytes") and hands back a
//! [`Packet`] whose topic, payload and binary properties are slices of the received frame, never
//! copies. Every refusal is a [`DecodeError`] constant that names the statement it enforces and
//! the reason code to answer with. [`Packet::encode`] writes into the caller's buffer.
//!
//! Layout: `wire` (integers, strings), `properties` (v5 properties), one file per packet family,
//! `codec` (fixed header and dispatch), `error` (the rules), `reason` (reason codes).

mod ack;
mod codec;
mod connect;
mod disconnect;
pub mod error;
pub mod properties;
mod publish;
mod reason;
mod subscribe;
mod types;
pub mod wire;

pub use ack::PubResp;
pub use codec::{DecodeLimits, PacketTypes, decode};
pub use connect::{ConnAck, Connect, Will};
pub use disconnect::{Auth, Disconnect};
pub use error::{DecodeError, EncodeError};
pub use properties::{Properties, Props};
pub use publish::{PlainPublish, Publish};
pub use reason::ReasonCode;
pub use subscribe::{
    RetainHandling, SubAck, Subscribe, Subscription, SubscriptionOptions, UnsubAck, Unsubscribe,
};
pub use types::{ByteStr, ProtocolVersion, QoS};

/// One MQTT control packet, of any version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// Boxed: by far the largest packet, and one per connection.
    Connect(Box<Connect>),
    ConnAck(ConnAck),
    Publish(Publish),
    PubAck(PubResp),
    PubRec(PubResp),
    PubRel(PubResp),
    PubComp(PubResp),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    /// MQTT 5.0 only.
    Auth(Auth),
}

impl Packet {
    /// The packet's name as the spec writes it (for logs).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Connect(_) => "CONNECT",
            Self::ConnAck(_) => "CONNACK",
            Self::Publish(_) => "PUBLISH",
            Self::PubAck(_) => "PUBACK",
            Self::PubRec(_) => "PUBREC",
            Self::PubRel(_) => "PUBREL",
            Self::PubComp(_) => "PUBCOMP",
            Self::Subscribe(_) => "SUBSCRIBE",
            Self::SubAck(_) => "SUBACK",
            Self::Unsubscribe(_) => "UNSUBSCRIBE",
            Self::UnsubAck(_) => "UNSUBACK",
            Self::PingReq => "PINGREQ",
            Self::PingResp => "PINGRESP",
            Self::Disconnect(_) => "DISCONNECT",
            Self::Auth(_) => "AUTH",
        }
    }
}
