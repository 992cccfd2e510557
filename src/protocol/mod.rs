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
    /// CONNECT: the client's request to connect. Boxed: by far the largest packet, and one per
    /// connection.
    Connect(Box<Connect>),
    /// CONNACK: the server's answer to CONNECT.
    ConnAck(ConnAck),
    /// PUBLISH: an application message, in either direction.
    Publish(Publish),
    /// PUBACK: acknowledges a QoS 1 PUBLISH.
    PubAck(PubResp),
    /// PUBREC: the receiver's first answer to a QoS 2 PUBLISH (publish received).
    PubRec(PubResp),
    /// PUBREL: answers PUBREC, releasing the QoS 2 message.
    PubRel(PubResp),
    /// PUBCOMP: answers PUBREL, completing the QoS 2 exchange.
    PubComp(PubResp),
    /// SUBSCRIBE: the client asks for subscriptions.
    Subscribe(Subscribe),
    /// SUBACK: the server's answer to SUBSCRIBE, a code per topic filter.
    SubAck(SubAck),
    /// UNSUBSCRIBE: the client asks to remove subscriptions.
    Unsubscribe(Unsubscribe),
    /// UNSUBACK: the server's answer to UNSUBSCRIBE.
    UnsubAck(UnsubAck),
    /// PINGREQ: the client's keep-alive ping.
    PingReq,
    /// PINGRESP: the server's answer to PINGREQ.
    PingResp,
    /// DISCONNECT: the sender closes the connection (only the client before MQTT 5.0).
    Disconnect(Disconnect),
    /// AUTH: a step of enhanced authentication (MQTT 5.0 only).
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
