//! The application message as the broker routes it, and one subscriber's copy of it.

use crate::protocol::{ByteStr, Props, QoS};
use bytes::Bytes;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Instant;

/// A PUBLISH as received, built once and shared by every subscriber (never copied per
/// subscriber).
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The topic it was published to, in full (never a Topic Alias).
    pub topic: ByteStr,
    /// The application message, opaque bytes.
    pub payload: Bytes,
    /// The QoS it was published with; a subscriber gets the lower of this and its subscription's.
    pub qos: QoS,
    /// The RETAIN flag it was published with.
    pub retain: bool,
    /// v5 properties forwarded to subscribers (Topic Alias and Subscription Identifiers removed).
    pub properties: Props,
    /// Client id of the publisher, for No Local; empty for will and system messages.
    pub publisher: Arc<str>,
    /// When its v5 Message Expiry Interval runs out, counted from its arrival; `None` never.
    pub expires_at: Option<Deadline>,
}

impl Message {
    /// Whether its Message Expiry Interval has passed at `now`.
    pub(crate) fn expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at.passed(now))
    }

    /// The message with its topic, payload and properties in one buffer of their own. A
    /// decoded message is a slice of the read it arrived in, and keeps that whole buffer alive
    /// (16 KiB for a busy publisher, or the largest packet it sent): a message kept for long,
    /// as a retained one is, must not pin that much for a few bytes. Re-encoding and decoding
    /// it puts every field into one allocation of its exact size.
    pub(crate) fn compacted(&self) -> Self {
        use crate::protocol::{DecodeLimits, Packet, ProtocolVersion::V5, Publish, decode};
        let p = Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: self.topic.clone(),
            packet_id: 0,
            properties: self.properties.clone(),
            payload: self.payload.clone(),
        };
        let mut buf = bytes::BytesMut::with_capacity(p.encoded_len(V5));
        let decoded = p.encode(V5, &mut buf).ok().and_then(|()| {
            decode(&mut buf, V5, &DecodeLimits::default())
                .ok()
                .flatten()
        });
        match decoded {
            Some(Packet::Publish(p)) => Self {
                topic: p.topic,
                payload: p.payload,
                properties: p.properties,
                ..self.clone()
            },
            // It was decoded once, so it encodes and decodes again; if not, keep it as it is.
            _ => self.clone(),
        }
    }

    /// The Message Expiry Interval to send on at `now`: the received value minus the time the
    /// message has waited here [MQTT-3.3.2-6], in whole seconds rounded up (so rounding never
    /// shortens its life), at least 1.
    pub(crate) fn remaining_expiry(&self, now: Instant) -> Option<u32> {
        let left_ms = self.expires_at?.remaining_ms(now);
        Some(
            u32::try_from(left_ms.div_ceil(1000))
                .unwrap_or(u32::MAX)
                .max(1),
        )
    }
}

/// A moment, in 8 bytes: milliseconds since a fixed point in the process's life, plus one. An
/// `Option<Instant>` is 16 bytes, and that much more per message made fan-in on two cores half
/// as fast (every message crosses from the publisher's core to the subscriber's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(NonZeroU64);

impl Deadline {
    /// `secs` seconds after `now`.
    pub(crate) fn after(now: Instant, secs: u32) -> Self {
        let at = crate::clock::ms(now).saturating_add(u64::from(secs) * 1000);
        // At least 1 by construction (`saturating_add(1)` of any u64 below MAX).
        Self(NonZeroU64::new(at.saturating_add(1)).unwrap_or(NonZeroU64::MIN))
    }

    /// `ms` milliseconds after `now`.
    pub(crate) fn after_ms(now: Instant, ms: u64) -> Self {
        let at = crate::clock::ms(now).saturating_add(ms);
        // At least 1 by construction, as in `after`.
        Self(NonZeroU64::new(at.saturating_add(1)).unwrap_or(NonZeroU64::MIN))
    }

    /// Whether it has come by `now`.
    pub(crate) fn passed(self, now: Instant) -> bool {
        crate::clock::ms(now) + 1 >= self.0.get()
    }

    /// Milliseconds left at `now`; 0 once passed.
    pub(crate) fn remaining_ms(self, now: Instant) -> u64 {
        self.0.get().saturating_sub(crate::clock::ms(now) + 1)
    }
}

/// One subscriber's delivery of a message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Delivery {
    pub(crate) message: Arc<Message>,
    /// min(message QoS, granted QoS).
    pub(crate) qos: QoS,
    /// The RETAIN flag to send: set for retained messages sent on subscribe, and for Retain As
    /// Published subscriptions; clear otherwise [MQTT-3.3.1-9].
    pub(crate) retain: bool,
    /// What only some deliveries carry, shared by all the deliveries of one subscription in a
    /// run: out of line so that a queued delivery is 24 bytes, not 48. A fan-out writes each
    /// subscriber's queue and reads it back, so its size is memory traffic per delivery.
    pub(crate) extra: Option<Arc<DeliveryExtra>>,
    /// Its sequence number in a session kept in the store (see `session::kept`); 0 in any
    /// other. Costs nothing: it fills what was padding.
    pub(crate) seq: u32,
}

/// The rarer parts of a delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DeliveryExtra {
    /// v5 Subscription Identifiers of the matching subscriptions.
    pub(crate) subscription_ids: SubscriptionIds,
    /// The `$share/{group}/{filter}` this delivery was made through, if any: if the member
    /// leaves before finishing it, it goes to another member.
    pub(crate) shared: Option<Arc<str>>,
}

impl DeliveryExtra {
    /// `None` when there is nothing to carry, which is the common case.
    pub(crate) fn new(
        subscription_ids: SubscriptionIds,
        shared: Option<Arc<str>>,
    ) -> Option<Arc<Self>> {
        (!subscription_ids.is_empty() || shared.is_some()).then(|| {
            Arc::new(Self {
                subscription_ids,
                shared,
            })
        })
    }
}

impl Delivery {
    /// The v5 Subscription Identifiers to send with it, if any.
    pub(crate) fn subscription_ids(&self) -> Option<&SubscriptionIds> {
        self.extra
            .as_ref()
            .map(|e| &e.subscription_ids)
            .filter(|ids| !ids.is_empty())
    }

    /// The shared subscription it was made through, if any.
    pub(crate) fn shared(&self) -> Option<&Arc<str>> {
        self.extra.as_ref().and_then(|e| e.shared.as_ref())
    }
}

/// The Subscription Identifiers one delivery carries. Almost every delivery has none or one, so
/// those cases are stored inline: a fan-out to many v5 subscribers allocates nothing per copy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SubscriptionIds {
    /// The first identifier; 0 means none (identifiers are 1 to 268,435,455 [MQTT-3.8.2.1.2]).
    first: u32,
    /// The rest, when overlapping subscriptions of one client each carry an identifier. Boxed
    /// so the rare case costs one pointer, not a `Vec`'s three words, in every queued delivery.
    #[allow(clippy::box_collection)]
    more: Option<Box<Vec<u32>>>,
}

impl SubscriptionIds {
    /// No identifier, or the one a subscription was made with.
    pub(crate) fn one(id: Option<u32>) -> Self {
        Self {
            first: id.unwrap_or(0),
            more: None,
        }
    }

    /// True when there is no identifier.
    pub(crate) fn is_empty(&self) -> bool {
        self.first == 0
    }

    /// Moves `other`'s identifiers after this one's.
    pub(crate) fn append(&mut self, other: &mut Self) {
        let theirs = std::mem::take(other);
        for id in theirs.iter() {
            if self.first == 0 {
                self.first = id;
            } else {
                self.more.get_or_insert_default().push(id);
            }
        }
    }

    /// The identifiers, in the order they were added.
    pub(crate) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        let first = (self.first != 0).then_some(self.first);
        first
            .into_iter()
            .chain(self.more.iter().flat_map(|m| m.iter().copied()))
    }

    /// The identifiers as a vector, for a PUBLISH's properties.
    pub(crate) fn to_vec(&self) -> Vec<u32> {
        self.iter().collect()
    }
}
