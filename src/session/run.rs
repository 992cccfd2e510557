//! A run of messages routed together (one topic, one read of a publisher's socket), shared
//! by every session it is queued to, and encoded once per protocol version for all of them.

use super::{Delivery, DeliveryExtra, Message};
use crate::protocol::{PlainPublish, ProtocolVersion, QoS};
use bytes::BytesMut;
use std::ops::Range;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// Messages routed together, shared by every session they are queued to.
#[derive(Debug)]
pub(crate) struct Run {
    messages: Box<[Arc<Message>]>,
    payload_bytes: usize,
    /// Whether any message has RETAIN set (a Retain As Published subscriber keeps it).
    any_retain: bool,
    /// The run as QoS 0 PUBLISHes without RETAIN: [3.1/3.1.1, 5.0], made by the first
    /// subscriber to write it; `None` inside if the run cannot be written that way.
    encoded: [OnceLock<Option<EncodedRun>>; 2],
}

impl PartialEq for Run {
    fn eq(&self, other: &Self) -> bool {
        self.messages == other.messages
    }
}

impl Run {
    /// A run of `messages`, in order.
    pub(crate) fn new(messages: &[Arc<Message>]) -> Arc<Self> {
        Arc::new(Self {
            payload_bytes: messages.iter().map(|m| m.payload.len()).sum(),
            any_retain: messages.iter().any(|m| m.retain),
            messages: messages.into(),
            encoded: Default::default(),
        })
    }

    /// How many messages it holds.
    pub(crate) fn len(&self) -> usize {
        self.messages.len()
    }

    /// True when it holds none.
    pub(crate) fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// The sum of its messages' payload sizes.
    pub(crate) fn payload_bytes(&self) -> usize {
        self.payload_bytes
    }

    /// The messages, in order.
    pub(crate) fn messages(&self) -> &[Arc<Message>] {
        &self.messages
    }

    /// The run as QoS 0 PUBLISHes without RETAIN for `version`, encoded on first use.
    fn encoded(&self, version: ProtocolVersion) -> Option<&EncodedRun> {
        self.encoded[usize::from(version.is_v5())]
            .get_or_init(|| EncodedRun::of(&self.messages, version))
            .as_ref()
    }
}

/// A run's messages encoded back to back as QoS 0 PUBLISHes: every subscriber that takes them
/// at QoS 0 as they came copies its part of these bytes instead of encoding each message.
#[derive(Debug)]
struct EncodedRun {
    bytes: BytesMut,
    /// Where each message's packet ends in `bytes`.
    ends: Box<[u32]>,
    /// The largest packet, to check against a client's Maximum Packet Size.
    largest: usize,
}

impl EncodedRun {
    /// `None` when some message cannot go out as it came: it has v5 properties to forward or
    /// an expiry interval to count down (and to check before it is written).
    fn of(messages: &[Arc<Message>], version: ProtocolVersion) -> Option<Self> {
        let plain =
            |m: &Message| m.expires_at.is_none() && (!version.is_v5() || m.properties.is_empty());
        if !messages.iter().all(|m| plain(m)) {
            return None;
        }
        let mut bytes = BytesMut::with_capacity(messages.iter().map(|m| wire_estimate(m)).sum());
        let mut ends = Vec::with_capacity(messages.len());
        let mut largest = 0;
        for m in messages {
            let start = bytes.len();
            let p = PlainPublish {
                dup: false,
                qos: QoS::AtMostOnce,
                retain: false,
                topic: &m.topic,
                packet_id: 0,
                payload: &m.payload,
            };
            p.encode(version, &mut bytes).ok()?;
            largest = largest.max(bytes.len() - start);
            ends.push(u32::try_from(bytes.len()).ok()?);
        }
        Some(Self {
            bytes,
            ends: ends.into(),
            largest,
        })
    }

    /// The packets of messages `range`.
    fn packets(&self, range: Range<usize>) -> Option<&[u8]> {
        let end = *self.ends.get(range.end.checked_sub(1)?)? as usize;
        let start = match range.start {
            0 => 0,
            i => *self.ends.get(i - 1)? as usize,
        };
        self.bytes.get(start..end)
    }
}

/// How one subscriber takes the messages of a run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RunGrant {
    /// The highest QoS granted: each message goes at the lower of this and its own.
    pub(crate) qos: QoS,
    /// Retain As Published: each message keeps its RETAIN flag.
    pub(crate) retain_as_published: bool,
    /// Subscription identifiers for every message, and the shared subscription they came
    /// through, if any (such messages are never queued as a run: a leaving member hands each
    /// one on).
    pub(crate) extra: Option<Arc<DeliveryExtra>>,
}

impl RunGrant {
    /// The RETAIN flag `m` goes with [MQTT-3.3.1-9].
    pub(crate) fn retain(&self, m: &Message) -> bool {
        self.retain_as_published && m.retain
    }

    /// The subscriber's delivery of `m`.
    pub(crate) fn delivery(&self, m: &Arc<Message>) -> Delivery {
        Delivery {
            message: m.clone(),
            qos: m.qos.min(self.qos),
            retain: self.retain(m),
            extra: self.extra.clone(),
            seq: 0,
        }
    }
}

/// Consecutive QoS 0 messages of one run taken out together: the connection writes them
/// straight from the run, with no reference count raised per message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RunSlice {
    run: Arc<Run>,
    start: u32,
    end: u32,
    grant: RunGrant,
    /// The messages' [`wire_estimate`]s added up, as the queue counted them out.
    wire_len: usize,
}

impl RunSlice {
    /// Messages `range` of `run`, about `wire_len` bytes, taken by a subscriber with `grant`.
    pub(super) fn new(run: Arc<Run>, range: Range<u32>, grant: RunGrant, wire_len: usize) -> Self {
        Self {
            run,
            start: range.start,
            end: range.end,
            grant,
            wire_len,
        }
    }

    /// About how many bytes its PUBLISHes take (see [`wire_estimate`]).
    pub(crate) fn wire_len(&self) -> usize {
        self.wire_len
    }

    /// The slice's PUBLISHes already encoded for `version`, if each message goes out as it
    /// came (no properties, no expiry, no RETAIN to keep) and none is larger than
    /// `max_packet`. The caller checks what depends on the connection: it must send no
    /// properties of its own (Subscription Identifiers, Topic Aliases).
    pub(crate) fn encoded(&self, version: ProtocolVersion, max_packet: usize) -> Option<&[u8]> {
        if self.grant.retain_as_published && self.run.any_retain {
            return None;
        }
        let encoded = self.run.encoded(version)?;
        if encoded.largest > max_packet {
            return None;
        }
        encoded.packets(self.start as usize..self.end as usize)
    }

    /// The messages, in order.
    pub(crate) fn messages(&self) -> &[Arc<Message>] {
        self.run
            .messages()
            .get(self.start as usize..self.end as usize)
            .unwrap_or_default()
    }

    /// The messages whose expiry interval has not passed by `now` [MQTT-3.3.2-5]: a slice is
    /// taken out whole, so messages in it can expire before they are written.
    pub(crate) fn live(&self, now: Instant) -> impl Iterator<Item = &Arc<Message>> {
        self.messages().iter().filter(move |m| !m.expired(now))
    }

    /// How the subscriber takes these messages (always at QoS 0).
    pub(crate) fn grant(&self) -> &RunGrant {
        &self.grant
    }
}

/// About how many bytes `m` takes as a PUBLISH: enough for one without properties under
/// 2 MiB (header 1, length up to 3, topic length 2, packet id 2). For the write budget only.
pub(crate) fn wire_estimate(m: &Message) -> usize {
    m.payload.len() + m.topic.len() + 8
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ByteStr, Packet, Publish};
    use crate::session::Deadline;
    use bytes::Bytes;

    fn message(n: u8, qos: QoS) -> Message {
        Message {
            topic: ByteStr::from_static("a/b").unwrap(),
            payload: Bytes::from(vec![n; usize::from(n)]),
            qos,
            retain: false,
            properties: Default::default(),
            publisher: Arc::from("p"),
            expires_at: None,
        }
    }

    fn run(messages: Vec<Message>) -> Arc<Run> {
        Run::new(&messages.into_iter().map(Arc::new).collect::<Vec<_>>())
    }

    fn slice(run: &Arc<Run>, range: Range<u32>, retain_as_published: bool) -> RunSlice {
        let grant = RunGrant {
            qos: QoS::AtMostOnce,
            retain_as_published,
            extra: None,
        };
        RunSlice::new(run.clone(), range, grant, 0)
    }

    /// What the full encoder writes for messages `range` delivered at QoS 0.
    fn oracle(run: &Run, range: Range<usize>, version: ProtocolVersion) -> BytesMut {
        let mut out = BytesMut::new();
        for m in &run.messages()[range] {
            let mut p = Publish::new(m.topic.clone(), m.payload.clone());
            p.qos = QoS::AtMostOnce;
            Packet::Publish(p).encode(version, &mut out).unwrap();
        }
        out
    }

    #[test]
    fn encoded_slices_match_the_full_encoder_in_every_version() {
        // 200 bytes of payload makes a 2-byte remaining length; QoS 1 and 2 go out at 0.
        let r = run(vec![
            message(1, QoS::AtMostOnce),
            message(200, QoS::AtLeastOnce),
            message(3, QoS::ExactlyOnce),
            message(4, QoS::AtMostOnce),
        ]);
        for version in [
            ProtocolVersion::V3_1,
            ProtocolVersion::V3_1_1,
            ProtocolVersion::V5,
        ] {
            for (a, b) in [(0, 4), (0, 1), (1, 3), (3, 4)] {
                let s = slice(&r, a..b, false);
                let want = oracle(&r, a as usize..b as usize, version);
                assert_eq!(
                    s.encoded(version, usize::MAX),
                    Some(&want[..]),
                    "{version:?} {a}..{b}"
                );
            }
        }
    }

    #[test]
    fn what_must_not_go_out_as_encoded_is_refused() {
        let plain = run(vec![
            message(1, QoS::AtMostOnce),
            message(2, QoS::AtMostOnce),
        ]);
        let whole =
            |r: &Arc<Run>, rap, version| slice(r, 0..2, rap).encoded(version, usize::MAX).is_some();
        assert!(
            whole(&plain, true, ProtocolVersion::V5),
            "nothing retained to keep"
        );

        let mut props = message(2, QoS::AtMostOnce);
        props.properties.make_mut().content_type = Some(ByteStr::from_static("json").unwrap());
        let with_props = run(vec![message(1, QoS::AtMostOnce), props]);
        assert!(
            !whole(&with_props, false, ProtocolVersion::V5),
            "v5 properties to forward"
        );
        assert!(
            whole(&with_props, false, ProtocolVersion::V3_1_1),
            "3.1.1 sends none"
        );

        let mut expiring = message(2, QoS::AtMostOnce);
        expiring.expires_at = Some(Deadline::after(Instant::now(), 60));
        let with_expiry = run(vec![message(1, QoS::AtMostOnce), expiring]);
        assert!(
            !whole(&with_expiry, false, ProtocolVersion::V3_1_1),
            "expiry to check"
        );

        let mut retained = message(2, QoS::AtMostOnce);
        retained.retain = true;
        let with_retain = run(vec![message(1, QoS::AtMostOnce), retained]);
        assert!(
            !whole(&with_retain, true, ProtocolVersion::V3_1_1),
            "RETAIN to keep"
        );
        assert!(
            whole(&with_retain, false, ProtocolVersion::V3_1_1),
            "RETAIN cleared"
        );

        let s = slice(&plain, 0..2, false);
        let largest = 2 + 2 + 3 + 2; // header, topic length, "a/b", payload
        assert!(s.encoded(ProtocolVersion::V3_1_1, largest).is_some());
        assert!(
            s.encoded(ProtocolVersion::V3_1_1, largest - 1).is_none(),
            "over a Maximum Packet Size"
        );
    }
}
