//! The broker as one connection sees it: a [`Link`] to the session it is attached to, with one
//! method per thing a connection asks of the broker. Each method that changes the session
//! checks, under the session's lock, that this connection still has it, and answers
//! [`TakenOver`] otherwise: nothing a connection does after it lost its session changes that
//! session or any other [issue 14, section 6]. The connection never sees the lock.

use super::registry::{Park, SessionSlot, TakenOver};
use super::{Broker, Metrics};
use crate::protocol::{ReasonCode, SubscriptionOptions};
use crate::session::{Acked, Message, Outgoing, Refill, StoredSource};
use std::num::NonZeroU64;
use std::sync::Arc;
use std::task::Waker;
use std::time::Instant;

/// One connection's attachment to its session (from [`Broker::attach`]).
pub(crate) struct Link {
    broker: Broker,
    slot: Arc<SessionSlot>,
    /// This connection's id: the session's `owner` while it is attached.
    id: NonZeroU64,
}

/// An acknowledgement a client sends for a message the broker sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientAck {
    /// PUBACK: a QoS 1 message is done.
    Puback(u16),
    /// PUBREC: a QoS 2 message was received; `failed` if its reason code is an error, which
    /// ends the exchange there.
    Pubrec { packet_id: u16, failed: bool },
    /// PUBCOMP: a released QoS 2 message is done.
    Pubcomp(u16),
}

/// What [`Link::take_outgoing`] found besides the packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Drained {
    /// The broker's keep-alive sweeper found this connection silent past its deadline.
    pub(crate) keep_alive_lapsed: bool,
    /// The idle sweeper asks the connection to park if it has nothing to do.
    pub(crate) park: bool,
}

impl Link {
    pub(super) fn new(broker: Broker, slot: Arc<SessionSlot>, id: NonZeroU64) -> Self {
        Self { broker, slot, id }
    }

    /// The broker this link belongs to.
    pub(crate) fn broker(&self) -> &Broker {
        &self.broker
    }

    /// The session's client id.
    pub(crate) fn client_id(&self) -> &Arc<str> {
        &self.slot.client_id
    }

    /// Whether this connection still has its session. Lock-free, so it can be stale by the time
    /// it is used; every change below checks again under the session's lock.
    pub(crate) fn is_current(&self) -> bool {
        self.slot.is_attached_to(self.id)
    }

    /// Notes that the client was heard from at `now_ms` (on [`crate::clock::ms`]'s clock), for
    /// the keep-alive sweeper.
    pub(crate) fn heard_from(&self, now_ms: u64) {
        self.slot.heard_from(now_ms);
    }

    /// Asks the broker's keep-alive sweeper to wake this connection once it has been silent
    /// for `grace_ms` since `since_ms` (see `broker/keep_alive.rs`).
    pub(crate) fn watch_keep_alive(&self, grace_ms: u32, since_ms: u64) {
        self.broker
            .watch_keep_alive(&self.slot, self.id, grace_ms, since_ms);
    }

    /// Routes QoS 0 and 1 messages that share a topic; returns how many sessions matched.
    /// Full sessions they pressed are the connection's to take (see [`Broker::take_pressure`]).
    pub(crate) fn publish_run(&self, run: &[Arc<Message>]) -> usize {
        self.broker.publish_run(run)
    }

    /// Routes one message; as [`Link::publish_run`].
    pub(crate) fn publish(&self, message: Message) -> usize {
        self.broker.publish_run(&[Arc::new(message)])
    }

    /// Subscribes the session to `filter`; the reason code for SUBACK (the granted QoS, or a
    /// refusal). The filter's retained messages follow as a stream in the session's queue.
    pub(crate) fn subscribe(
        &self,
        filter: &str,
        options: SubscriptionOptions,
        subscription_id: Option<u32>,
        acl: Option<&crate::auth::SharedAcl>,
    ) -> Result<ReasonCode, TakenOver> {
        self.broker
            .subscribe(&self.slot, self.id, filter, options, subscription_id, acl)
    }

    /// Unsubscribes the session from `filter`; whether it was subscribed.
    pub(crate) fn unsubscribe(&self, filter: &str) -> Result<bool, TakenOver> {
        self.broker.unsubscribe(&self.slot, self.id, filter)
    }

    /// Applies the client's acknowledgement of a message the broker sent it.
    pub(crate) fn acknowledge(&self, ack: ClientAck) -> Result<Acked, TakenOver> {
        let mut st = self.slot.lock_for(self.id)?;
        Ok(match ack {
            ClientAck::Puback(id) => st.session.puback(id),
            ClientAck::Pubrec { packet_id, failed } => st.session.pubrec(packet_id, failed),
            ClientAck::Pubcomp(id) => st.session.pubcomp(id),
        })
    }

    /// Notes an inbound QoS 2 PUBLISH: `Some(true)` the first time its packet id is seen (route
    /// it), `Some(false)` for a duplicate before PUBREL, `None` when `max` are already awaiting
    /// PUBREL.
    pub(crate) fn receive_qos2(
        &self,
        packet_id: u16,
        max: usize,
    ) -> Result<Option<bool>, TakenOver> {
        Ok(self
            .slot
            .lock_for(self.id)?
            .session
            .receive_qos2(packet_id, max))
    }

    /// PUBREL from the client: forgets the inbound QoS 2 id; whether it was known.
    pub(crate) fn release(&self, packet_id: u16) -> Result<bool, TakenOver> {
        Ok(self.slot.lock_for(self.id)?.session.release(packet_id))
    }

    /// Moves the packets the session has for the client into `batch`, within about `budget`
    /// bytes and the in-flight window, pulling retained streams from the store as it goes;
    /// then registers `waker`, under the same lock, to be woken by the next message queued. A
    /// session with nothing to send gives back the memory a burst left in its queue.
    pub(crate) fn take_outgoing(
        &self,
        now: Instant,
        mut budget: usize,
        waker: &Waker,
        batch: &mut Vec<Outgoing>,
    ) -> Result<Drained, TakenOver> {
        let mut st = self.slot.lock_for(self.id)?;
        st.active = true;
        let drained = Drained {
            keep_alive_lapsed: st.keep_alive_expired,
            park: st.park == Park::Requested,
        };
        // Asked once: a connection that does not park now (it had work) is asked again later;
        // one that was parked is running again.
        st.park = Park::Running;
        if drained.keep_alive_lapsed {
            return Ok(drained);
        }
        let writer = self.broker.store();
        let disk = writer.map(|writer| super::disk_queue::DiskQueue {
            writer,
            client_id: &self.slot.client_id,
        });
        let disk = disk.as_ref().map(|d| d as &dyn StoredSource);
        while budget > 0 {
            let Some(o) = st.session.next_outgoing_within(now, budget) else {
                // A subscription's retained messages come from the retained store a batch at a
                // time (its lock is taken under the session's, never the reverse), as do
                // messages held on disk from the store.
                match st.session.refill(&self.broker, disk) {
                    Refill::Again => continue,
                    Refill::Wait(n) => {
                        // Not committed yet: the writer wakes this connection once they are.
                        if let Some(writer) = writer
                            && st.ask_disk_wake(n, waker)
                        {
                            writer.wake_when_done(n, waker);
                        }
                        break;
                    }
                    Refill::Nothing => break,
                }
            };
            budget = budget.saturating_sub(o.estimated_len());
            batch.push(o);
        }
        if batch.is_empty() {
            st.session.compact();
        }
        // Truncating: a count of progress, compared only for change.
        st.taken = st.taken.wrapping_add(batch.len() as u32);
        st.register(waker);
        let room = st.take_room_waiters(false);
        drop(st);
        room.into_iter().for_each(Waker::wake);
        Ok(drained)
    }

    /// Notes that the connection parked: the idle sweeper leaves it be, and the waker it
    /// registered last resumes it. False if it no longer has its session.
    pub(crate) fn mark_parked(&self) -> bool {
        match self.slot.lock_for(self.id) {
            Ok(mut st) => {
                st.park = Park::Parked;
                true
            }
            Err(TakenOver) => false,
        }
    }

    /// What the session had in flight when its client last left, to send again with DUP.
    pub(crate) fn resend(&self) -> Vec<Outgoing> {
        match self.slot.lock_for(self.id) {
            Ok(st) => st.session.resend(),
            Err(TakenOver) => Vec::new(),
        }
    }

    /// Gives up on an in-flight message that could not be sent (too large for the client,
    /// [MQTT-3.1.2-25]), counting it as dropped.
    pub(crate) fn abandon(&self, packet_id: u16) {
        if packet_id != 0
            && let Ok(mut st) = self.slot.lock_for(self.id)
        {
            st.session.abandon(packet_id);
        }
        let metrics = self.broker.metrics();
        Metrics::inc(&metrics.messages_dropped);
        Metrics::inc(&metrics.dropped_too_large);
    }

    /// The client's DISCONNECT sets a new Session Expiry Interval. `Ok(false)` when that is
    /// not allowed: a session that was to end with its connection cannot be revived (5.0
    /// section 3.14.2.2.2).
    pub(crate) fn set_expiry(&self, secs: u32) -> Result<bool, TakenOver> {
        let mut st = self.slot.lock_for(self.id)?;
        if st.expiry == 0 && secs != 0 {
            return Ok(false);
        }
        st.expiry = secs;
        Ok(true)
    }

    /// Publishes the client's will: now, or after `delay_secs` unless the client is back on
    /// the session by then (see `broker/will.rs`).
    pub(crate) fn leave_will(&self, will: Message, delay_secs: Option<u32>) {
        match delay_secs {
            Some(secs) => self.broker.defer_will(&self.slot, self.id, will, secs),
            None => self.broker.publish_will(will),
        }
    }

    /// Detaches the connection from its session, which starts the session's expiry. A no-op
    /// if another connection took the session over.
    pub(crate) fn detach(&self) {
        self.broker.detach(&self.slot, self.id);
    }
}
