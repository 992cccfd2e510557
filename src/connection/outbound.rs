//! Outbound packets: the session's queue drained into the write buffer, acknowledgements, and
//! the DISCONNECT a v5 client is sent before the server closes.

use super::{Close, Connection, WRITE_HIGH_WATER};
use crate::broker::{Metrics, lock};
use crate::protocol::{Disconnect, Packet, Props, PubResp, Publish, QoS, ReasonCode};
use crate::session::{Delivery, Message, Outgoing};

impl Connection {
    /// Appends a packet to the write buffer. Packets the broker builds always encode; a failure
    /// would be a bug, so it is logged rather than allowed to take the connection down.
    pub(super) fn write_packet(&mut self, packet: Packet) {
        if let Err(e) = packet.encode(self.version, &mut self.out) {
            tracing::error!(client_id = %self.client_id, "cannot encode {}: {e}", packet.name());
        }
    }

    /// An acknowledgement (PUBACK, PUBREC, PUBREL, PUBCOMP) with a reason code; the reason is
    /// dropped for 3.1.1, which has none.
    pub(super) fn ack(&mut self, make: fn(PubResp) -> Packet, packet_id: u16, reason: ReasonCode) {
        let mut resp = PubResp::new(packet_id);
        if self.version.is_v5() {
            resp.reason = reason;
        }
        self.write_packet(make(resp));
    }

    pub(super) fn send_disconnect(&mut self, reason: ReasonCode) {
        self.write_packet(Packet::Disconnect(Disconnect {
            reason,
            properties: Default::default(),
        }));
    }

    /// Resends, with DUP, what the session had in flight when the client last left.
    pub(super) fn resend_inflight(&mut self) {
        let resend = lock(&self.slot.state).session.resend();
        for o in resend {
            self.write_outgoing(o);
        }
    }

    /// Moves queued messages into the write buffer while the in-flight window and the buffer's
    /// high-water mark allow. Stops if another connection has taken the session over.
    pub(super) fn fill_outbound(&mut self) -> Result<(), Close> {
        // Reused across rounds: no allocation per wake-up once it has grown.
        let mut batch = std::mem::take(&mut self.batch);
        {
            let mut st = lock(&self.slot.state);
            if st.conn.as_ref().map(|c| c.id) != Some(self.link.id) {
                return Err(Close::TakenOver);
            }
            let mut budget = WRITE_HIGH_WATER.saturating_sub(self.out.len());
            while budget > 0 {
                let Some(o) = st.session.next_outgoing() else {
                    break;
                };
                if let Outgoing::Publish { delivery, .. } = &o {
                    budget = budget.saturating_sub(
                        delivery.message.payload.len() + delivery.message.topic.len() + 8,
                    );
                }
                batch.push(o);
            }
        }
        for o in batch.drain(..) {
            self.write_outgoing(o);
        }
        self.batch = batch;
        Ok(())
    }

    fn write_outgoing(&mut self, o: Outgoing) {
        match o {
            Outgoing::PubRel { packet_id } => {
                self.ack(Packet::PubRel, packet_id, ReasonCode::SUCCESS)
            }
            Outgoing::Publish {
                packet_id,
                delivery,
                dup,
            } => {
                let publish = self.publish_for(&delivery, packet_id, dup);
                // Measured only for clients that set a limit: it walks the packet once more.
                if self.client_max_packet != usize::MAX
                    && publish.encoded_len(self.version) > self.client_max_packet
                {
                    // [MQTT-3.1.2-25] too large for the client: discard as if it was delivered.
                    if packet_id != 0 {
                        lock(&self.slot.state).session.abandon(packet_id);
                    }
                    Metrics::inc(&self.broker.metrics().messages_dropped);
                    return;
                }
                if let Err(e) = publish.encode(self.version, &mut self.out) {
                    tracing::error!(client_id = %self.client_id, "cannot encode PUBLISH: {e}");
                    return;
                }
                Metrics::inc(&self.broker.metrics().messages_delivered);
            }
        }
    }

    fn publish_for(&self, d: &Delivery, packet_id: u16, dup: bool) -> Publish {
        let m: &Message = &d.message;
        let properties = if self.version.is_v5() {
            let mut p = m.properties.clone();
            // Only touch the identifiers when there are some: writing through `DerefMut`
            // would allocate a property set for a message that has none.
            if !d.subscription_ids.is_empty() || !p.subscription_identifiers.is_empty() {
                p.subscription_identifiers.clone_from(&d.subscription_ids);
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
