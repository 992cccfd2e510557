//! Outbound packets: the session's queue drained into the out buffer, acknowledgements, and
//! the DISCONNECT a v5 client is sent before the server closes.

use super::Open;
use super::alias::{self, Naming};
use crate::broker::Metrics;
use crate::connection::Close;
use crate::protocol::{
    ByteStr, Disconnect, EncodeError, Packet, PlainPublish, Props, ProtocolVersion, PubResp,
    Publish, QoS, ReasonCode,
};
use crate::session::{Delivery, DeliveryExtra, Message, Outgoing, RunSlice};
use bytes::BytesMut;
use std::cell::Cell;
use std::sync::Arc;
use std::task::Waker;
use std::time::Instant;

/// Stop filling the out buffer past this many bytes per drain, so one busy subscriber's buffer
/// stays bounded; the rest waits in its session queue.
pub(crate) const WRITE_HIGH_WATER: usize = 64 * 1024;

impl Open {
    /// Appends a packet to the write buffer, within the client's Maximum Packet Size
    /// [MQTT-3.1.2-24]: without its Reason String and User Properties if it does not fit with
    /// them. Every packet but PUBLISH (see `encode_within_limit`) fits without them: the
    /// CONNACK this client accepted was larger than any acknowledgement, and a SUBACK or
    /// UNSUBACK that could not fit was refused before it was made. Packets the broker builds
    /// always encode. Either failure would be a bug, so it is logged rather than allowed to
    /// take the connection down.
    pub(super) fn write_packet(&self, out: &mut BytesMut, packet: Packet) {
        let name = packet.name();
        let packet = if self.client_max_packet == u32::MAX {
            Some(packet)
        } else {
            packet.within(self.version, self.client_max_packet)
        };
        let Some(packet) = packet else {
            tracing::error!(client_id = %self.link.client_id(), "{name} exceeds the client's Maximum Packet Size: not sent");
            return;
        };
        if let Err(e) = packet.encode(self.version, out) {
            tracing::error!(client_id = %self.link.client_id(), "cannot encode {name}: {e}");
        }
    }

    /// Whether a packet of `len` bytes fits the client's Maximum Packet Size.
    pub(super) fn fits(&self, len: usize) -> bool {
        len <= self.client_max_packet as usize
    }

    /// An acknowledgement (PUBACK, PUBREC, PUBREL, PUBCOMP) with a reason code; the reason is
    /// dropped for 3.1.1, which has none.
    /// It waits for the disk if what it answers changed durable state (see `durable.rs`).
    pub(super) fn ack(
        &mut self,
        out: &mut BytesMut,
        make: fn(PubResp) -> Packet,
        packet_id: u16,
        reason: ReasonCode,
    ) {
        self.hold_if_changed(out);
        let mut resp = PubResp::new(packet_id);
        if self.version.is_v5() {
            resp.reason = reason;
        }
        self.write_packet(out, make(resp));
    }

    /// The DISCONNECT a v5 client is sent before the server closes, with a Reason String when
    /// the client did not turn problem information off and the packet still fits its Maximum
    /// Packet Size [MQTT-3.14.2-3] (see `write_packet`).
    pub(super) fn send_disconnect(
        &self,
        out: &mut BytesMut,
        reason: ReasonCode,
        why: Option<String>,
    ) {
        let mut disconnect = Disconnect {
            reason,
            properties: Default::default(),
        };
        if self.problem_info
            && let Some(why) = why.and_then(|w| ByteStr::try_from(w).ok())
        {
            disconnect.properties.make_mut().reason_string = Some(why);
        }
        self.write_packet(out, Packet::Disconnect(disconnect));
    }

    /// Resends, with DUP, what the session had in flight when the client last left.
    pub(super) fn resend_inflight(&mut self, out: &mut BytesMut, now: Instant) {
        let delivered: u64 = self
            .link
            .resend()
            .into_iter()
            .map(|o| self.write_outgoing(out, o, now))
            .sum();
        Metrics::add(&self.link.broker().metrics().messages_delivered, delivered);
    }

    /// Moves queued messages into `out` while the in-flight window and the buffer's high-water
    /// mark allow, and registers `waker` with the session under the same lock, so a message
    /// queued after this drain wakes the connection. Ends the connection if another has taken
    /// the session over, or if the keep-alive sweeper found it lapsed (by the rule of
    /// `Open::keep_alive_lapsed`, on the same last-heard time). `Ok(true)`: the broker asks
    /// the connection to park if it is idle.
    pub(super) fn fill_outbound(
        &mut self,
        out: &mut BytesMut,
        now: Instant,
        waker: &Waker,
    ) -> Result<bool, Close> {
        thread_local! {
            /// Reused by every connection on this thread (it is empty between calls): no
            /// allocation per wake-up, and nothing held per connection.
            static BATCH: Cell<Vec<Outgoing>> = const { Cell::new(Vec::new()) };
        }
        let mut batch = BATCH.take();
        // Changes the session makes as it hands out messages (a message numbered as it goes
        // out, an expired one done) come before any answer written after them.
        self.mark_changes();
        let budget = WRITE_HIGH_WATER.saturating_sub(out.len());
        let drained = self.link.take_outgoing(now, budget, waker, &mut batch);
        let drained = match drained {
            Ok(drained) => drained,
            Err(_) => {
                BATCH.set(batch);
                return Err(Close::TakenOver);
            }
        };
        if drained.keep_alive_lapsed {
            BATCH.set(batch);
            return Err(Close::KeepAliveTimeout);
        }
        let mut delivered = 0;
        for o in batch.drain(..) {
            delivered += self.write_outgoing(out, o, now);
        }
        BATCH.set(batch);
        Metrics::add(&self.link.broker().metrics().messages_delivered, delivered);
        Ok(drained.park)
    }

    /// Writes what the session released; returns how many PUBLISHes went out.
    fn write_outgoing(&mut self, out: &mut BytesMut, o: Outgoing, now: Instant) -> u64 {
        match o {
            Outgoing::PubRel { packet_id } => {
                self.ack(out, Packet::PubRel, packet_id, ReasonCode::SUCCESS);
                0
            }
            Outgoing::Publish {
                packet_id,
                delivery,
                dup,
            } => {
                if delivery.qos == QoS::ExactlyOnce && delivery.seq != 0 {
                    self.hold_until_all_sent(out);
                }
                self.write_publish(out, packet_id, &delivery, dup, now)
            }
            Outgoing::Run(slice) => {
                if let Some(packets) = self.preencoded(&slice) {
                    out.extend_from_slice(packets);
                    return slice.messages().len() as u64;
                }
                let mut written = 0;
                let grant = slice.grant();
                for m in slice.live(now) {
                    written += if self.plain(m, grant.extra.as_ref()) {
                        let retain = grant.retain(m);
                        self.write_plain(out, 0, m, QoS::AtMostOnce, retain, false)
                    } else {
                        self.write_publish(out, 0, &grant.delivery(m), false, now)
                    };
                }
                written
            }
        }
    }

    /// A QoS 0 slice's packets as the run encoded them once for every subscriber, when this
    /// connection would write them byte for byte the same (see `plain`).
    fn preencoded<'a>(&self, slice: &'a RunSlice) -> Option<&'a [u8]> {
        if self.adds_properties(slice.grant().extra.as_ref()) {
            return None;
        }
        slice.encoded(self.version, self.client_max_packet as usize)
    }

    /// Whether `m` goes out as it came, with no properties to add or change: most messages.
    fn plain(&self, m: &Message, extra: Option<&Arc<DeliveryExtra>>) -> bool {
        !self.version.is_v5() || (m.properties.is_empty() && !self.adds_properties(extra))
    }

    /// Whether this connection puts properties of its own on a PUBLISH with `extra`: v5
    /// Subscription Identifiers, or a Topic Alias toward a client that accepts them.
    fn adds_properties(&self, extra: Option<&Arc<DeliveryExtra>>) -> bool {
        self.version.is_v5()
            && (extra.is_some_and(|e| !e.subscription_ids.is_empty())
                || self.aliases_out().is_some())
    }

    /// Writes a PUBLISH without properties straight from the shared message; 1 if written.
    fn write_plain(
        &mut self,
        out: &mut BytesMut,
        packet_id: u16,
        m: &Message,
        qos: QoS,
        retain: bool,
        dup: bool,
    ) -> u64 {
        let p = PlainPublish {
            dup: dup && qos != QoS::AtMostOnce,
            qos,
            retain,
            topic: &m.topic,
            packet_id,
            payload: &m.payload,
        };
        let written = self.encode_within_limit(
            out,
            packet_id,
            |v| p.encoded_len(v),
            |v, out| p.encode(v, out),
        );
        self.count_written(written)
    }

    /// Writes one delivery as a PUBLISH; 1 if written.
    fn write_publish(
        &mut self,
        out: &mut BytesMut,
        packet_id: u16,
        delivery: &Delivery,
        dup: bool,
        now: Instant,
    ) -> u64 {
        let m: &Message = &delivery.message;
        if self.plain(m, delivery.extra.as_ref()) {
            let (qos, retain) = (delivery.qos, delivery.retain);
            return self.write_plain(out, packet_id, m, qos, retain, dup);
        }
        let mut p = self.publish_for(delivery, packet_id, dup, now);
        let naming = self.name_topic(&mut p);
        let written = self.encode_within_limit(
            out,
            packet_id,
            |v| p.encoded_len(v),
            |v, out| p.encode(v, out),
        );
        if let (Ok(true), Some(aliases)) = (
            &written,
            self.extras.as_mut().and_then(|e| e.aliases_out.as_mut()),
        ) {
            aliases.commit(&m.topic, naming);
        }
        self.count_written(written)
    }

    /// 1 for a PUBLISH written, 0 for one dropped or (a bug, logged) not encodable.
    fn count_written(&self, written: Result<bool, EncodeError>) -> u64 {
        match written {
            Ok(true) => 1,
            Ok(false) => 0,
            Err(e) => {
                tracing::error!(client_id = %self.link.client_id(), "cannot encode PUBLISH: {e}");
                0
            }
        }
    }

    /// Encodes a PUBLISH unless it exceeds the client's Maximum Packet Size; returns whether it
    /// was written.
    fn encode_within_limit(
        &mut self,
        out: &mut BytesMut,
        packet_id: u16,
        len: impl Fn(ProtocolVersion) -> usize,
        encode: impl Fn(ProtocolVersion, &mut BytesMut) -> Result<(), EncodeError>,
    ) -> Result<bool, EncodeError> {
        // Measured only for clients that set a limit: it walks the packet once more.
        if self.client_max_packet != u32::MAX && len(self.version) > self.client_max_packet as usize
        {
            // [MQTT-3.1.2-25] too large for the client: discard as if it was delivered.
            self.link.abandon(packet_id);
            return Ok(false);
        }
        encode(self.version, out).map(|()| true)
    }

    /// Our topic aliases toward the client, if it accepts any.
    fn aliases_out(&self) -> Option<&alias::Outbound> {
        self.extras.as_ref()?.aliases_out.as_ref()
    }

    /// Names the topic of an outgoing PUBLISH by alias where the client accepts aliases; the
    /// plan is committed only once the packet is written.
    fn name_topic(&self, p: &mut Publish) -> Naming {
        let Some(aliases) = self.aliases_out() else {
            return Naming::Topic;
        };
        let naming = aliases.plan(&p.topic);
        match naming {
            Naming::Topic => {}
            Naming::Alias(alias) => {
                p.topic = ByteStr::default();
                p.properties.make_mut().topic_alias = Some(alias);
            }
            Naming::Assign(alias) => p.properties.make_mut().topic_alias = Some(alias),
        }
        naming
    }

    fn publish_for(&self, d: &Delivery, packet_id: u16, dup: bool, now: Instant) -> Publish {
        let m: &Message = &d.message;
        let properties = if self.version.is_v5() {
            let mut p = m.properties.clone();
            match d.subscription_ids() {
                Some(ids) => p.make_mut().subscription_identifiers = ids.to_vec(),
                None => {
                    if let Some(set) = p.get_mut() {
                        set.subscription_identifiers.clear();
                    }
                }
            }
            if let Some(left) = m.remaining_expiry(now) {
                p.make_mut().message_expiry_interval = Some(left); // [MQTT-3.3.2-6]
            }
            p
        } else {
            Props::NONE
        };
        Publish {
            dup: dup && d.qos != QoS::AtMostOnce,
            qos: d.qos,
            retain: d.retain,
            topic: m.topic.clone(),
            packet_id,
            properties,
            payload: m.payload.clone(),
        }
    }
}
