//! The application message as the broker routes it, and one subscriber's copy of it.

use crate::protocol::{ByteStr, Props, QoS};
use bytes::Bytes;
use std::sync::Arc;

/// A PUBLISH as received, built once and shared by every subscriber (never copied per
/// subscriber).
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub topic: ByteStr,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// v5 properties forwarded to subscribers (Topic Alias and Subscription Identifiers removed).
    pub properties: Props,
    /// Client id of the publisher, for No Local; empty for will and system messages.
    pub publisher: Arc<str>,
}

/// One subscriber's delivery of a message.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub message: Arc<Message>,
    /// min(message QoS, granted QoS).
    pub qos: QoS,
    /// The RETAIN flag to send: set for retained messages sent on subscribe, and for Retain As
    /// Published subscriptions; clear otherwise [MQTT-3.3.1-9].
    pub retain: bool,
    /// v5 Subscription Identifiers of the matching subscriptions.
    pub subscription_ids: Vec<u32>,
}
