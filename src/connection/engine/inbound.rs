//! What an open connection does with each packet a client sends.

use super::Open;
use super::alias::AliasError;
use crate::broker::{ClientAck, Metrics};
use crate::clock;
use crate::connection::Close;
use crate::protocol::{
    DecodeLimits, Disconnect, Packet, Publish, QoS, ReasonCode, SubAck, Subscribe, UnsubAck,
    Unsubscribe, decode,
};
use crate::session::{Acked, Message};
use crate::topic::too_big;
use bytes::BytesMut;
use std::cell::Cell;
use std::sync::Arc;
use std::time::Instant;

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
/// QoS 1 ones, to acknowledge once they are routed (see [`Open::flush_run`]). One lives for
/// one call of [`Open::receive`] or [`Open::handle`], so its acknowledgements can only go to
/// the connection that read its messages.
pub(super) struct Unrouted {
    messages: Vec<Arc<Message>>,
    acks: Vec<u16>,
}

thread_local! {
    /// The vectors of the last run on this thread, empty, kept for their capacity: no
    /// allocation per read, and a connection holds none between reads.
    static SPARE: Cell<(Vec<Arc<Message>>, Vec<u16>)> = const { Cell::new((Vec::new(), Vec::new())) };
}

impl Unrouted {
    /// An empty run, with the capacity of the last one on this thread.
    fn new() -> Self {
        let (messages, acks) = SPARE.take();
        Self { messages, acks }
    }
}

impl Drop for Unrouted {
    fn drop(&mut self) {
        let mut messages = std::mem::take(&mut self.messages);
        let mut acks = std::mem::take(&mut self.acks);
        messages.clear();
        acks.clear();
        SPARE.set((messages, acks));
    }
}

impl Open {
    /// Decodes and handles every whole packet in `inbuf`; see [`super::Engine::receive`].
    pub(super) fn receive(
        &mut self,
        inbuf: &mut BytesMut,
        now: Instant,
        out: &mut BytesMut,
    ) -> Result<(), Close> {
        self.heard_from(now);
        let _group = self.group();
        self.mark_changes();
        let limits = DecodeLimits {
            max_packet_size: self.link.broker().config().limits.max_packet_size,
            accepts: self.accepts,
        };
        let mut run = Unrouted::new();
        let result = loop {
            match decode(inbuf, self.version, &limits) {
                Ok(Some(_)) if !self.link.is_current() => {
                    // Taken over: nothing read from here on may change any session. (The
                    // steps that change this session check again under its lock.)
                    break Err(Close::TakenOver);
                }
                Ok(Some(packet)) => {
                    if let Err(close) = self.dispatch(packet, &mut run, now, out) {
                        break Err(close);
                    }
                    if self.note_pressure(now) {
                        // A full subscriber: the rest waits in `inbuf` until it has room.
                        break Ok(());
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(Close::Decode(e)),
            }
        };
        self.flush_run(&mut run, out);
        self.note_pressure(now);
        result
    }

    /// Handles one decoded packet; see [`super::Engine::handle`].
    pub(super) fn handle(
        &mut self,
        packet: Packet,
        now: Instant,
        out: &mut BytesMut,
    ) -> Result<(), Close> {
        self.heard_from(now);
        if !self.link.is_current() {
            return Err(Close::TakenOver);
        }
        let _group = self.group();
        self.mark_changes();
        let mut run = Unrouted::new();
        let result = self.dispatch(packet, &mut run, now, out);
        self.flush_run(&mut run, out);
        self.note_pressure(now);
        result
    }

    /// Notes, for the keep alive, that the client sent something at `now`.
    pub(super) fn heard_from(&mut self, now: Instant) {
        if self.grace_ms > 0 {
            let ms = clock::ms(now);
            self.last_heard_ms = ms;
            self.link.heard_from(ms);
        }
    }

    fn dispatch(
        &mut self,
        packet: Packet,
        run: &mut Unrouted,
        now: Instant,
        out: &mut BytesMut,
    ) -> Result<(), Close> {
        if !matches!(&packet, Packet::Publish(p) if p.qos != QoS::ExactlyOnce) {
            // Whatever this packet does must come after the messages received before it.
            self.flush_run(run, out);
        }
        match packet {
            Packet::Publish(p) => self.on_publish(p, run, now, out)?,
            Packet::PubAck(a) => {
                let acked = self.acknowledge(ClientAck::Puback(a.packet_id))?;
                wrong_kind(acked, "PUBACK for a QoS 2 message")?;
            }
            Packet::PubRec(a) => {
                let failed = a.reason.is_error();
                let packet_id = a.packet_id;
                let acked = self.acknowledge(ClientAck::Pubrec { packet_id, failed })?;
                wrong_kind(acked, "PUBREC for a QoS 1 message")?;
                if !failed {
                    let reason = if acked == Acked::Done {
                        ReasonCode::SUCCESS
                    } else {
                        ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
                    };
                    self.ack(out, Packet::PubRel, a.packet_id, reason);
                }
            }
            Packet::PubComp(a) => {
                let acked = self.acknowledge(ClientAck::Pubcomp(a.packet_id))?;
                wrong_kind(acked, "PUBCOMP for a message not released by PUBREL")?;
            }
            Packet::PubRel(a) => {
                let known = self
                    .link
                    .release(a.packet_id)
                    .map_err(|_| Close::TakenOver)?;
                let reason = if known {
                    ReasonCode::SUCCESS
                } else {
                    ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
                };
                self.ack(out, Packet::PubComp, a.packet_id, reason);
            }
            Packet::Subscribe(s) => self.on_subscribe(s, out)?,
            Packet::Unsubscribe(u) => self.on_unsubscribe(u, out)?,
            Packet::PingReq => self.write_packet(out, Packet::PingResp),
            Packet::Disconnect(d) => return Err(self.on_disconnect(d)),
            Packet::Connect(_) => {
                return Err(protocol(
                    ReasonCode::PROTOCOL_ERROR,
                    "[MQTT-3.1.0-2] second CONNECT",
                ));
            }
            Packet::Auth(a) => self.on_auth(a, out)?,
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                return Err(protocol(
                    ReasonCode::PROTOCOL_ERROR,
                    "a packet only a server may send",
                ));
            }
        }
        Ok(())
    }

    fn on_publish(
        &mut self,
        mut p: Publish,
        run: &mut Unrouted,
        now: Instant,
        out: &mut BytesMut,
    ) -> Result<(), Close> {
        let broker = self.link.broker().clone();
        let limits = &broker.config().limits;
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
        Metrics::inc(&broker.metrics().messages_received);
        let packet_id = p.packet_id;
        let qos = p.qos;
        if too_big(&p.topic, limits) {
            let why = "topic longer than limits.max_topic_length or deeper than max_topic_levels";
            return self.refuse_publish(
                run,
                out,
                qos,
                packet_id,
                ReasonCode::TOPIC_NAME_INVALID,
                why,
            );
        }
        if let Some(rate) = self.extras.as_mut().and_then(|e| e.rate.as_mut())
            && !rate.allow(p.payload.len(), now)
        {
            Metrics::inc(&broker.metrics().disconnected_rate);
            return Err(protocol(
                ReasonCode::MESSAGE_RATE_TOO_HIGH,
                "PUBLISHes faster than limits.max_publish_rate or max_publish_bytes_rate",
            ));
        }
        if !self.may_publish(&p.topic) {
            return self.deny_publish(run, out, qos, packet_id, &p.topic);
        }
        if p.check_payload_format().is_err() {
            // 5.0 section 3.3.2.3.2: a Payload Format Indicator of 1 with a payload that is
            // not UTF-8.
            let why = "payload is not UTF-8 though its Payload Format Indicator says so";
            let reason = ReasonCode::PAYLOAD_FORMAT_INVALID;
            return self.refuse_publish(run, out, qos, packet_id, reason, why);
        }
        if qos != QoS::AtMostOnce && broker.store().is_some_and(|w| w.is_failing()) {
            // Not acknowledged as kept when it cannot be: the client may try again later.
            let why = "the store cannot write (a full disk?): QoS 1/2 refused until it can";
            return self.refuse_publish(run, out, qos, packet_id, ReasonCode::QUOTA_EXCEEDED, why);
        }
        match qos {
            QoS::AtMostOnce | QoS::AtLeastOnce => {
                let full = run.messages.first().is_some_and(|m| m.topic != p.topic)
                    || run.messages.len() >= MAX_RUN;
                if full {
                    self.flush_run(run, out);
                }
                if qos == QoS::AtLeastOnce {
                    run.acks.push(packet_id);
                }
                run.messages.push(Arc::new(self.message(p, now)));
            }
            QoS::ExactlyOnce => {
                let first = self
                    .link
                    .receive_qos2(packet_id, receive_maximum)
                    .map_err(|_| Close::TakenOver)?;
                let Some(first) = first else {
                    return Err(protocol(
                        ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
                        "more QoS 2 messages in flight than Receive Maximum",
                    ));
                };
                // A duplicate before PUBREL is acknowledged but not routed again, and not before
                // what its first copy changed is on disk (that may still be on its way).
                let matched = if first {
                    self.link.publish(self.message(p, now))
                } else {
                    self.hold_until_all_sent(out);
                    1
                };
                self.ack(out, Packet::PubRec, packet_id, matched_reason(matched));
            }
        }
        Ok(())
    }

    /// Whether the ACL file, if any, lets this client publish to `topic`.
    fn may_publish(&self, topic: &str) -> bool {
        let acl = self.extras.as_ref().and_then(|e| e.acl.as_ref());
        acl.is_none_or(|acl| acl.may_write(topic))
    }

    /// Drops a PUBLISH the ACL does not allow: v5 is told in its PUBACK or PUBREC (0x87);
    /// QoS 0, and 3.1.1, which has no code for it, are acknowledged as usual, as in Mosquitto.
    /// The connection stays open. Logged at debug level only: a device publishing where it may
    /// not would otherwise write a line per message (`dropped_not_authorized` counts them).
    fn deny_publish(
        &mut self,
        run: &mut Unrouted,
        out: &mut BytesMut,
        qos: QoS,
        packet_id: u16,
        topic: &str,
    ) -> Result<(), Close> {
        Metrics::inc(&self.link.broker().metrics().dropped_not_authorized);
        tracing::debug!(client_id = %self.link.client_id(), topic, "PUBLISH not authorized");
        if qos == QoS::AtMostOnce {
            return Ok(());
        }
        // Its acknowledgement comes after those of the messages read before it.
        self.flush_run(run, out);
        let reason = ReasonCode::NOT_AUTHORIZED;
        if qos == QoS::AtLeastOnce {
            self.ack(out, Packet::PubAck, packet_id, reason);
        } else {
            self.ack(out, Packet::PubRec, packet_id, reason);
        }
        Ok(())
    }

    /// Refuses a PUBLISH without routing it: in its acknowledgement at QoS 1 and 2, by
    /// DISCONNECT at QoS 0, which has none; a 3.1.1 connection, which has no reason codes, is
    /// closed.
    fn refuse_publish(
        &mut self,
        run: &mut Unrouted,
        out: &mut BytesMut,
        qos: QoS,
        packet_id: u16,
        reason: ReasonCode,
        why: &'static str,
    ) -> Result<(), Close> {
        if qos == QoS::AtMostOnce || !self.version.is_v5() {
            return Err(protocol(reason, why));
        }
        // Its acknowledgement comes after those of the messages read before it.
        self.flush_run(run, out);
        let make = if qos == QoS::AtLeastOnce {
            Packet::PubAck
        } else {
            Packet::PubRec
        };
        self.ack(out, make, packet_id, reason);
        if reason == ReasonCode::QUOTA_EXCEEDED {
            // The store cannot write: its writer logged that once, and says when it can
            // again; a line per refused message would flood the log of a full disk.
            tracing::debug!(client_id = %self.link.client_id(), "PUBLISH refused: {why} ({reason})");
        } else {
            tracing::info!(client_id = %self.link.client_id(), "PUBLISH refused: {why} ({reason})");
        }
        Ok(())
    }

    /// Routes the QoS 0 and 1 messages received since the last flush (one topic), then sends
    /// their PUBACKs: an acknowledgement says the message was accepted, so it follows routing.
    fn flush_run(&mut self, run: &mut Unrouted, out: &mut BytesMut) {
        if run.messages.is_empty() {
            return;
        }
        let matched = self.link.publish_run(&run.messages);
        let reason = matched_reason(matched);
        for &packet_id in &run.acks {
            self.ack(out, Packet::PubAck, packet_id, reason);
        }
        run.messages.clear();
        run.acks.clear();
    }

    /// The message a client's PUBLISH (or its will) becomes.
    fn message(&self, p: Publish, now: Instant) -> Message {
        let mut properties = p.properties;
        if let Some(set) = properties.get_mut() {
            set.topic_alias = None;
        }
        let expires_at = properties
            .message_expiry_interval
            .map(|secs| crate::session::Deadline::after(now, secs));
        Message {
            topic: p.topic,
            payload: p.payload,
            qos: p.qos,
            retain: p.retain,
            properties,
            publisher: self.link.client_id().clone(),
            expires_at,
        }
    }

    fn on_subscribe(&mut self, s: Subscribe, out: &mut BytesMut) -> Result<(), Close> {
        let subscription_id = s.properties.subscription_identifiers.first().copied();
        let limits = &self.link.broker().config().limits;
        if subscription_id.is_some() && !limits.subscription_identifier_available {
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
            let acl = self.extras.as_ref().and_then(|e| e.acl.as_ref());
            let outcome = self
                .link
                .subscribe(&sub.filter, sub.options, subscription_id, acl)
                .map_err(|_| Close::TakenOver)?;
            let reason = if outcome.is_error() && !self.version.is_v5() {
                ReasonCode::UNSPECIFIED_ERROR // 3.1.1 has one failure code, 0x80
            } else {
                outcome
            };
            if outcome.is_error() {
                tracing::info!(client_id = %self.link.client_id(), filter = %sub.filter, "subscription refused ({outcome})");
            }
            reason_codes.push(reason);
        }
        // The subscriptions' retained messages are queued to the session as streams: they
        // follow this SUBACK as the connection sends them.
        self.hold_if_changed(out);
        self.write_packet(
            out,
            Packet::SubAck(SubAck {
                packet_id: s.packet_id,
                properties: Default::default(),
                reason_codes,
            }),
        );
        Ok(())
    }

    fn on_unsubscribe(&mut self, u: Unsubscribe, out: &mut BytesMut) -> Result<(), Close> {
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
                .link
                .unsubscribe(filter)
                .map_err(|_| Close::TakenOver)?;
            if self.version.is_v5() {
                reason_codes.push(if existed {
                    ReasonCode::SUCCESS
                } else {
                    ReasonCode::NO_SUBSCRIPTION_EXISTED
                });
            }
        }
        self.hold_if_changed(out);
        self.write_packet(
            out,
            Packet::UnsubAck(UnsubAck {
                packet_id: u.packet_id,
                properties: Default::default(),
                reason_codes,
            }),
        );
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

    /// Applies an acknowledgement from the client to its session.
    fn acknowledge(&self, ack: ClientAck) -> Result<Acked, Close> {
        self.link.acknowledge(ack).map_err(|_| Close::TakenOver)
    }

    fn on_disconnect(&mut self, d: Disconnect) -> Close {
        if let Some(expiry) = d.properties.session_expiry_interval {
            match self.link.set_expiry(expiry) {
                Ok(true) => {}
                // 5.0 section 3.14.2.2.2: a session that ended at disconnect cannot be revived.
                Ok(false) => {
                    return protocol(
                        ReasonCode::PROTOCOL_ERROR,
                        "Session Expiry set at DISCONNECT after 0 at CONNECT (3.14.2.2.2)",
                    );
                }
                Err(_) => return Close::TakenOver,
            }
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
    /// Will Delay Interval (also when the server is shutting down: the broker decides then
    /// whether the session outlives the stop, see `Broker::defer_will`).
    pub(super) fn publish_will(&mut self, now: Instant) {
        let Some(will) = self.will.take() else { return };
        let mut properties = will.properties;
        let delay = properties.will_delay_interval.filter(|&secs| {
            // At shutdown too: a persistent session's will stays held in the store (see
            // `Broker::defer_will`); another session's goes now.
            secs > 0 && self.version.is_v5()
        });
        if let Some(set) = properties.get_mut() {
            set.will_delay_interval = None;
        }
        let message = self.message(
            Publish {
                dup: false,
                qos: will.qos,
                retain: will.retain,
                topic: will.topic,
                packet_id: 0,
                properties,
                payload: will.payload,
            },
            now,
        );
        self.link.leave_will(message, delay);
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
