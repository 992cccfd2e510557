//! What the connection does with each packet a client sends.

use super::alias::AliasError;
use super::{Close, Connection};
use crate::broker::{Metrics, SlotState};
use crate::protocol::{
    Disconnect, Packet, Publish, QoS, ReasonCode, SubAck, Subscribe, UnsubAck, Unsubscribe,
};
use crate::session::{Acked, Message};
use crate::topic::too_deep;
use std::cell::RefCell;
use std::sync::Arc;
use std::sync::MutexGuard;

/// Most messages routed as one run: bounds how long the first of them waits for the last.
const MAX_RUN: usize = 256;

fn protocol(reason: ReasonCode, what: &'static str) -> Close {
    Close::Protocol { reason, what }
}

/// An acknowledgement of the wrong kind for the message in flight with its packet identifier
/// is a Protocol Error (v5: DISCONNECT 0x82; 3.1.1: the connection is closed). One for an
/// identifier not in flight is not: it may answer a message the session already gave up.
fn wrong_kind(acked: Acked, what: &'static str) -> Result<(), Close> {
    match acked {
        Acked::WrongKind => Err(protocol(ReasonCode::PROTOCOL_ERROR, what)),
        Acked::Done | Acked::Unknown => Ok(()),
    }
}

/// QoS 0 and 1 messages received with one topic and not yet routed, and the packet ids of the
/// QoS 1 ones, to acknowledge once they are routed (see `flush_run`).
#[derive(Default)]
struct Run {
    messages: Vec<Arc<Message>>,
    acks: Vec<u16>,
}

thread_local! {
    /// The run being read, per thread rather than per connection: a run never outlives the
    /// synchronous `handle_input` that reads it (its last step is `flush_run`), so one vector
    /// serves every connection on the thread, and a connection holds none between reads.
    static RUN: RefCell<Run> = const {
        RefCell::new(Run {
            messages: Vec::new(),
            acks: Vec::new(),
        })
    };
}

impl Connection {
    pub(super) fn dispatch(&mut self, packet: Packet) -> Result<(), Close> {
        if !matches!(&packet, Packet::Publish(p) if p.qos != QoS::ExactlyOnce) {
            // Whatever this packet does must come after the messages received before it.
            self.flush_run();
        }
        match packet {
            Packet::Publish(p) => self.on_publish(p)?,
            Packet::PubAck(a) => {
                let acked = self.session()?.session.puback(a.packet_id);
                wrong_kind(acked, "PUBACK for a QoS 2 message")?;
            }
            Packet::PubRec(a) => {
                let failed = a.reason.is_error();
                let acked = self.session()?.session.pubrec(a.packet_id, failed);
                wrong_kind(acked, "PUBREC for a QoS 1 message")?;
                if !failed {
                    let reason = if acked == Acked::Done {
                        ReasonCode::SUCCESS
                    } else {
                        ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
                    };
                    self.ack(Packet::PubRel, a.packet_id, reason);
                }
            }
            Packet::PubComp(a) => {
                let acked = self.session()?.session.pubcomp(a.packet_id);
                wrong_kind(acked, "PUBCOMP for a message not released by PUBREL")?;
            }
            Packet::PubRel(a) => {
                let known = self.session()?.session.release(a.packet_id);
                let reason = if known {
                    ReasonCode::SUCCESS
                } else {
                    ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
                };
                self.ack(Packet::PubComp, a.packet_id, reason);
            }
            Packet::Subscribe(s) => self.on_subscribe(s)?,
            Packet::Unsubscribe(u) => self.on_unsubscribe(u)?,
            Packet::PingReq => self.write_packet(Packet::PingResp),
            Packet::Disconnect(d) => return Err(self.on_disconnect(d)),
            Packet::Connect(_) => {
                return Err(protocol(
                    ReasonCode::PROTOCOL_ERROR,
                    "[MQTT-3.1.0-2] second CONNECT",
                ));
            }
            Packet::Auth(a) => self.on_auth(a)?,
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                return Err(protocol(
                    ReasonCode::PROTOCOL_ERROR,
                    "a packet only a server may send",
                ));
            }
        }
        Ok(())
    }

    fn on_publish(&mut self, mut p: Publish) -> Result<(), Close> {
        let limits = &self.broker.config().limits;
        if let Some(alias) = p.properties.topic_alias {
            let topic = std::mem::take(&mut p.topic);
            p.topic = self
                .extras
                .get_or_insert_with(Default::default)
                .aliases_in
                .resolve(topic, alias, limits.topic_alias_maximum)
                .map_err(|e| match e {
                    AliasError::OutOfRange => protocol(
                        ReasonCode::TOPIC_ALIAS_INVALID,
                        "[MQTT-3.3.2-8, -9] Topic Alias 0 or above the Topic Alias Maximum",
                    ),
                    AliasError::Unknown => protocol(
                        ReasonCode::PROTOCOL_ERROR,
                        "empty topic with a Topic Alias this connection never set",
                    ),
                })?;
        }
        if !p.properties.subscription_identifiers.is_empty() {
            return Err(protocol(
                ReasonCode::PROTOCOL_ERROR,
                "[MQTT-3.3.4-6] PUBLISH from a client carries a Subscription Identifier",
            ));
        }
        if p.qos as u8 > limits.max_qos {
            return Err(protocol(
                ReasonCode::QOS_NOT_SUPPORTED,
                "PUBLISH above the server's maximum QoS",
            ));
        }
        if p.retain && !limits.retain_available {
            return Err(protocol(
                ReasonCode::RETAIN_NOT_SUPPORTED,
                "retained PUBLISH while retain is unavailable",
            ));
        }
        let receive_maximum = usize::from(limits.receive_maximum);
        Metrics::inc(&self.broker.metrics().messages_received);
        let packet_id = p.packet_id;
        let qos = p.qos;
        if too_deep(&p.topic, limits.max_topic_levels) {
            let why = "topic has more levels than limits.max_topic_levels";
            return self.refuse_publish(qos, packet_id, ReasonCode::TOPIC_NAME_INVALID, why);
        }
        if p.check_payload_format().is_err() {
            // 5.0 section 3.3.2.3.2: a Payload Format Indicator of 1 with a payload that is
            // not UTF-8.
            let why = "payload is not UTF-8 though its Payload Format Indicator says so";
            return self.refuse_publish(qos, packet_id, ReasonCode::PAYLOAD_FORMAT_INVALID, why);
        }
        match qos {
            QoS::AtMostOnce | QoS::AtLeastOnce => {
                let full = RUN.with_borrow(|run| {
                    run.messages.first().is_some_and(|m| m.topic != p.topic)
                        || run.messages.len() >= MAX_RUN
                });
                if full {
                    self.flush_run();
                }
                let message = Arc::new(self.message(p));
                RUN.with_borrow_mut(|run| {
                    if qos == QoS::AtLeastOnce {
                        run.acks.push(packet_id);
                    }
                    run.messages.push(message);
                });
            }
            QoS::ExactlyOnce => {
                let first = self
                    .session()?
                    .session
                    .receive_qos2(packet_id, receive_maximum);
                let Some(first) = first else {
                    return Err(protocol(
                        ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
                        "more QoS 2 messages in flight than Receive Maximum",
                    ));
                };
                // A duplicate before PUBREL is acknowledged but not routed again.
                let matched = if first { self.route(p) } else { 1 };
                self.ack(Packet::PubRec, packet_id, matched_reason(matched));
            }
        }
        Ok(())
    }

    /// Refuses a PUBLISH without routing it: in its acknowledgement at QoS 1 and 2, by
    /// DISCONNECT at QoS 0, which has none; a 3.1.1 connection, which has no reason codes, is
    /// closed.
    fn refuse_publish(
        &mut self,
        qos: QoS,
        packet_id: u16,
        reason: ReasonCode,
        why: &'static str,
    ) -> Result<(), Close> {
        if qos == QoS::AtMostOnce || !self.version.is_v5() {
            return Err(protocol(reason, why));
        }
        self.flush_run();
        let make = if qos == QoS::AtLeastOnce {
            Packet::PubAck
        } else {
            Packet::PubRec
        };
        self.ack(make, packet_id, reason);
        tracing::info!(client_id = %self.client_id(), "PUBLISH refused: {why} ({reason})");
        Ok(())
    }

    /// Routes the QoS 0 and 1 messages received since the last flush (one topic), then sends
    /// their PUBACKs: an acknowledgement says the message was accepted, so it follows routing.
    pub(super) fn flush_run(&mut self) {
        // Taken out while it is routed, then put back empty with its capacity.
        let mut run = RUN.take();
        if !run.messages.is_empty() {
            let matched = self.broker.publish_run(&run.messages);
            let reason = matched_reason(matched);
            for &packet_id in &run.acks {
                self.ack(Packet::PubAck, packet_id, reason);
            }
            run.messages.clear();
            run.acks.clear();
        }
        RUN.set(run);
    }

    /// Routes a client's PUBLISH on its own; returns how many sessions it matched.
    fn route(&self, p: Publish) -> usize {
        self.broker.publish(self.message(p))
    }

    /// The message a client's PUBLISH (or its will) becomes.
    fn message(&self, p: Publish) -> Message {
        let mut properties = p.properties;
        // Guarded: a write through `DerefMut` would allocate a set for a PUBLISH without one.
        if properties.topic_alias.is_some() {
            properties.topic_alias = None;
        }
        let expires_at = properties
            .message_expiry_interval
            .map(|secs| crate::session::Deadline::after(std::time::Instant::now(), secs));
        Message {
            topic: p.topic,
            payload: p.payload,
            qos: p.qos,
            retain: p.retain,
            properties,
            publisher: self.client_id().clone(),
            expires_at,
        }
    }

    fn on_subscribe(&mut self, s: Subscribe) -> Result<(), Close> {
        let subscription_id = s.properties.subscription_identifiers.first().copied();
        if subscription_id.is_some()
            && !self
                .broker
                .config()
                .limits
                .subscription_identifier_available
        {
            return Err(protocol(
                ReasonCode::SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED,
                "Subscription Identifier while limits.subscription_identifier_available is off",
            ));
        }
        let mut reason_codes = Vec::with_capacity(s.subscriptions.len());
        let suback = Packet::SubAck(SubAck {
            packet_id: s.packet_id,
            properties: Default::default(),
            reason_codes: vec![ReasonCode::SUCCESS; s.subscriptions.len()],
        });
        self.ack_must_fit(
            suback,
            "its SUBACK would exceed the client's Maximum Packet Size",
        )?;
        for sub in &s.subscriptions {
            if sub.options.no_local && sub.filter.starts_with("$share/") {
                return Err(protocol(
                    ReasonCode::PROTOCOL_ERROR,
                    "[MQTT-3.8.3-4] No Local on a shared subscription",
                ));
            }
            let outcome = self.broker.subscribe(
                &self.slot,
                self.link.id,
                &sub.filter,
                sub.options,
                subscription_id,
            );
            let outcome = outcome.map_err(|_| Close::TakenOver)?;
            let reason = if outcome.is_error() && !self.version.is_v5() {
                ReasonCode::UNSPECIFIED_ERROR // 3.1.1 has one failure code, 0x80
            } else {
                outcome
            };
            if outcome.is_error() {
                tracing::info!(client_id = %self.client_id(), filter = %sub.filter, "subscription refused ({outcome})");
            }
            reason_codes.push(reason);
        }
        // The subscriptions' retained messages are queued to the session as streams: they
        // follow this SUBACK as the connection sends them.
        self.write_packet(Packet::SubAck(SubAck {
            packet_id: s.packet_id,
            properties: Default::default(),
            reason_codes,
        }));
        Ok(())
    }

    fn on_unsubscribe(&mut self, u: Unsubscribe) -> Result<(), Close> {
        let mut reason_codes = Vec::new();
        let unsuback = Packet::UnsubAck(UnsubAck {
            packet_id: u.packet_id,
            properties: Default::default(),
            reason_codes: vec![ReasonCode::SUCCESS; u.filters.len()],
        });
        self.ack_must_fit(
            unsuback,
            "its UNSUBACK would exceed the client's Maximum Packet Size",
        )?;
        for filter in &u.filters {
            let existed = self
                .broker
                .unsubscribe(&self.slot, self.link.id, filter)
                .map_err(|_| Close::TakenOver)?;
            if self.version.is_v5() {
                reason_codes.push(if existed {
                    ReasonCode::SUCCESS
                } else {
                    ReasonCode::NO_SUBSCRIPTION_EXISTED
                });
            }
        }
        self.write_packet(Packet::UnsubAck(UnsubAck {
            packet_id: u.packet_id,
            properties: Default::default(),
            reason_codes,
        }));
        Ok(())
    }

    /// Refuses a SUBSCRIBE or UNSUBSCRIBE whose acknowledgement `ack` (its reason codes still
    /// placeholders) could not be sent within the client's Maximum Packet Size
    /// [MQTT-3.1.2-24]: DISCONNECT 0x95, before anything is (un)subscribed.
    fn ack_must_fit(&self, ack: Packet, what: &'static str) -> Result<(), Close> {
        if self.fits(ack.encoded_len(self.version)) {
            Ok(())
        } else {
            Err(protocol(ReasonCode::PACKET_TOO_LARGE, what))
        }
    }

    /// The session's state, for a change this connection makes: `TakenOver` once another
    /// connection has it, so that nothing read after that point changes any session.
    pub(super) fn session(&self) -> Result<MutexGuard<'_, SlotState>, Close> {
        self.slot
            .lock_for(self.link.id)
            .map_err(|_| Close::TakenOver)
    }

    fn on_disconnect(&mut self, d: Disconnect) -> Close {
        if let Some(expiry) = d.properties.session_expiry_interval {
            let Ok(mut st) = self.session() else {
                return Close::TakenOver;
            };
            if st.expiry == 0 && expiry != 0 {
                // 5.0 section 3.14.2.2.2: a session that ended at disconnect cannot be revived.
                return protocol(
                    ReasonCode::PROTOCOL_ERROR,
                    "Session Expiry set at DISCONNECT after 0 at CONNECT (3.14.2.2.2)",
                );
            }
            st.expiry = expiry;
        }
        // 5.0 [MQTT-3.1.2-8]: only 0x00 deletes the will; 0x04 asks for it and any other code
        // reports an error, so both publish it. A 3.1.1 DISCONNECT decodes as 0x00.
        if d.reason == ReasonCode::NORMAL_DISCONNECTION {
            Close::Normal
        } else {
            Close::NormalWithWill
        }
    }

    /// Publishes the will, if the client left one, and forgets it: at once, or after its v5
    /// Will Delay Interval (not when the server is shutting down: the session ends now).
    pub(super) fn publish_will(&mut self, close: &Close) {
        let Some(will) = self.will.take() else { return };
        let mut properties = will.properties;
        let delay = properties.will_delay_interval.filter(|&secs| {
            secs > 0 && self.version.is_v5() && !matches!(close, Close::ServerShutdown)
        });
        if properties.will_delay_interval.is_some() {
            properties.will_delay_interval = None;
        }
        let message = self.message(Publish {
            dup: false,
            qos: will.qos,
            retain: will.retain,
            topic: will.topic,
            packet_id: 0,
            properties,
            payload: will.payload,
        });
        match delay {
            Some(secs) => self
                .broker
                .defer_will(&self.slot, self.link.id, message, secs),
            None => self.broker.publish_will(message),
        }
    }
}

/// v5 PUBACK/PUBREC reason: 0x10 when no one is subscribed (as Mosquitto answers).
fn matched_reason(matched: usize) -> ReasonCode {
    if matched == 0 {
        ReasonCode::NO_MATCHING_SUBSCRIBERS
    } else {
        ReasonCode::SUCCESS
    }
}
