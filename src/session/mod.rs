//! One client's session state, sans IO: its outbound queue and QoS 1/2 in-flight window, packet
//! identifiers, and inbound QoS 2 identifiers awaiting PUBREL. Plain data and functions: it never
//! awaits, locks or touches a socket; the broker keeps it behind a mutex and the connection task
//! drives it.

mod kept;
mod memory;
mod message;
mod overflow;
mod queue;
mod retained;
mod run;
mod spill;
mod window;

pub(crate) use kept::{Journal, Sink, packet_id_of};
pub(crate) use memory::MemoryBudget;
pub use message::{Deadline, Message};
pub(crate) use message::{Delivery, DeliveryExtra, SubscriptionIds};
pub(crate) use overflow::{Enqueued, QueueLimits};
pub(crate) use retained::{RetainedCursor, RetainedSource};
pub(crate) use run::{Run, RunGrant, RunSlice, wire_estimate};
pub(crate) use spill::{Refill, StoredSource, advance};

use crate::protocol::QoS;
use std::sync::Arc;
use std::time::Instant;

/// Queue capacity above which an empty queue is given back (see [`Session::compact`]).
const SHRINK_ABOVE: usize = 64;

/// What an acknowledgement from the client (PUBACK, PUBREC, PUBCOMP) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acked {
    /// It answered a message in flight, as that message's QoS and state call for.
    Done,
    /// No message is in flight with that packet identifier.
    Unknown,
    /// It is the wrong answer for the message in flight with that identifier (PUBACK to QoS 2,
    /// PUBREC to QoS 1, PUBCOMP before PUBREL): a Protocol Error. Nothing changed.
    WrongKind,
}

/// A packet the session wants sent.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outgoing {
    /// A PUBLISH; `packet_id` is 0 at QoS 0.
    Publish {
        packet_id: u16,
        delivery: Delivery,
        dup: bool,
    },
    /// A PUBREL for a QoS 2 message the client has PUBREC'd.
    PubRel { packet_id: u16 },
    /// QoS 0 PUBLISHes of one run, in order. Messages whose expiry interval passes before
    /// they are written are the writer's to skip [MQTT-3.3.2-5].
    Run(RunSlice),
}

impl Outgoing {
    /// About how many bytes it takes on the wire (see [`wire_estimate`]).
    pub(crate) fn estimated_len(&self) -> usize {
        match self {
            Self::Publish { delivery, .. } => wire_estimate(&delivery.message),
            Self::PubRel { .. } => 4,
            Self::Run(slice) => slice.wire_len(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum InFlight {
    /// Sent, awaiting PUBACK (QoS 1) or PUBREC (QoS 2).
    Sent(Delivery),
    /// QoS 2: PUBREC received, PUBREL sent, awaiting PUBCOMP. The delivery's sequence number
    /// if the session is kept, else 0.
    Released(u32),
}

/// A kept delivery as start-up finds it in the store, in the order of its session's queue.
#[derive(Debug)]
pub(crate) enum Resumed {
    /// Read back whole: in flight under an identifier of its own, or PUBREC'd.
    Whole(Restored),
    /// Queued, `count` of them numbered from `first` on: only their numbers are read at
    /// start-up; the connection reads them back from the store when they are due (as messages
    /// held on disk over the memory budget), so a restart with millions of queued messages
    /// holds none of them in memory.
    OnDisk { first: u32, count: u32 },
}

impl Resumed {
    /// How many deliveries.
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Whole(_) => 1,
            Self::OnDisk { count, .. } => *count as usize,
        }
    }
}

/// A kept delivery read back from the store.
#[derive(Debug)]
pub(crate) struct Restored {
    /// The delivery, its sequence number in it.
    pub(crate) delivery: Delivery,
    /// The identifier it went with, if it was in flight under one of its own; 0 otherwise.
    pub(crate) packet_id: u16,
    /// The client PUBREC'd it: only the PUBREL and PUBCOMP are left.
    pub(crate) released: bool,
}

/// The state of one session.
#[derive(Debug)]
pub(crate) struct Session {
    /// Shared by every session of the broker: 8 bytes here, not 24.
    limits: Arc<QueueLimits>,
    /// Messages waiting for the connection or for room in the in-flight window, in order.
    queue: queue::MessageQueue,
    /// QoS 1/2 messages sent and not yet fully acknowledged, in the order they were sent
    /// (read through `Deref`), and the inbound QoS 2 ids awaiting PUBREL, whose duplicates are
    /// acknowledged but not routed again. One box, made on first use (see
    /// [`window::Unfinished`]).
    inflight: window::Unfinished,
    /// Outbound window: the client's Receive Maximum (v5) or the configured limit (3.1.1).
    window: u16,
    next_id: u16,
    dropping: bool,
    /// Backpressure gave up on this session until it has room (see [`Session::stall`]).
    stalled: bool,
    /// Deliveries restored from the store, at the front of the queue, that go with DUP set:
    /// they may have been in flight when the broker stopped. At the resume, as many as the
    /// window holds (those that could have been in flight).
    redeliver: u16,
    /// Set while the session is kept in the store (see [`kept`]).
    kept: Option<Box<kept::Kept>>,
    /// What this session has counted against the memory budget (see [`Session::settle`]).
    charged: usize,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.limits.memory.credit(self.charged);
    }
}

impl Session {
    /// A new, empty session.
    pub(crate) fn new(limits: impl Into<Arc<QueueLimits>>, window: u16) -> Self {
        Self {
            limits: limits.into(),
            queue: Default::default(),
            inflight: Default::default(),
            window: window.max(1),
            next_id: 1,
            dropping: false,
            stalled: false,
            redeliver: 0,
            kept: None,
            charged: 0,
        }
    }

    /// Brings what this session counts against the memory budget up to what its queue holds
    /// in memory: at once when it grows, in batches when it shrinks (see
    /// [`memory::CREDIT_BATCH`]).
    fn settle(&mut self) {
        self.settle_within(memory::CREDIT_BATCH);
    }

    /// As [`Session::settle`], giving back what the queue no longer holds once it is `batch`
    /// bytes or more (or the queue is empty).
    fn settle_within(&mut self, batch: usize) {
        let resident = self.queue.resident();
        let budget = &self.limits.memory;
        if resident > self.charged {
            budget.charge(resident - self.charged);
            self.charged = resident;
        } else if self.charged - resident >= batch || resident == 0 {
            budget.credit(self.charged - resident);
            self.charged = resident;
        }
    }

    /// Keeps the session in the store from now on: its QoS 1/2 deliveries, queued and in
    /// flight, and each change to them go to `sink`. A no-op for a session kept already.
    pub(crate) fn keep(&mut self, sink: Sink) {
        if self.kept.is_some() {
            return;
        }
        let mut kept = Box::new(kept::Kept {
            next_seq: 1,
            restored_upto: 0,
            sink,
        });
        if let Some(inflight) = self.inflight.outbound_if_any() {
            for (packet_id, state) in inflight.iter_mut() {
                // A released one's message is the client's already: nothing to keep of it.
                if let InFlight::Sent(d) = state {
                    d.seq = kept.take_seq();
                    kept.record(Journal::Queued {
                        seq: d.seq,
                        delivery: d.clone(),
                        packet_id: *packet_id,
                    });
                }
            }
        }
        // Messages of a shared run get their number as they go out (see `next_outgoing`).
        self.queue.for_each_one(|d| {
            if d.qos != QoS::AtMostOnce {
                d.seq = kept.take_seq();
                kept.record(Journal::Queued {
                    seq: d.seq,
                    delivery: d.clone(),
                    packet_id: 0,
                });
            }
        });
        self.kept = Some(kept);
    }

    /// Stops keeping the session in the store (its rows were deleted with its record): what
    /// it held on disk only goes with them.
    pub(crate) fn unkeep(&mut self) {
        if self.queue.is_spilled() {
            self.queue.drop_stored();
            self.settle();
        }
        if self.kept.take().is_some() {
            self.queue.for_each_one(|d| d.seq = 0);
            if let Some(inflight) = self.inflight.outbound_if_any() {
                for (_, state) in inflight.iter_mut() {
                    match state {
                        InFlight::Sent(d) => d.seq = 0,
                        InFlight::Released(seq) => *seq = 0,
                    }
                }
            }
        }
    }

    /// Whether messages of it are held on disk only (see `spill`).
    pub(crate) fn is_spilled(&self) -> bool {
        self.queue.is_spilled()
    }

    /// Puts back what the store kept of this (new, empty) session: its deliveries in order, the
    /// inbound QoS 2 identifiers awaiting PUBREL; then keeps it, with `sink`. A delivery that
    /// was in flight under an identifier of its own (or released) is in flight again, to be
    /// resent; the others are queued (on disk, or in memory), and go with the identifier their
    /// number gives them.
    pub(crate) fn restore(&mut self, deliveries: Vec<Resumed>, inbound: Vec<u16>, sink: Sink) {
        let (mut next_seq, mut restored_upto) = (1, 0);
        for r in deliveries {
            let r = match r {
                Resumed::OnDisk { first, count } => {
                    if count == 0 {
                        continue;
                    }
                    restored_upto = spill::advance(first, count - 1);
                    next_seq = spill::advance(first, count);
                    self.queue.push_stored_run(first, count);
                    let count = u16::try_from(count).unwrap_or(u16::MAX);
                    self.redeliver = self.redeliver.saturating_add(count);
                    continue;
                }
                Resumed::Whole(r) => r,
            };
            let seq = r.delivery.seq;
            next_seq = spill::advance(seq, 1);
            if r.released {
                let id = if r.packet_id != 0 {
                    r.packet_id
                } else {
                    packet_id_of(seq)
                };
                self.inflight
                    .outbound_mut()
                    .push_back((id, InFlight::Released(seq)));
            } else if r.packet_id != 0 {
                self.inflight
                    .outbound_mut()
                    .push_back((r.packet_id, InFlight::Sent(r.delivery)));
            } else {
                restored_upto = seq;
                self.queue.push(r.delivery);
                self.redeliver = self.redeliver.saturating_add(1);
            }
        }
        if !inbound.is_empty() {
            self.inflight.inbound_qos2_mut().extend(inbound);
        }
        self.settle();
        self.kept = Some(Box::new(kept::Kept {
            next_seq,
            restored_upto,
            sink,
        }));
    }

    /// Tells the store that the kept delivery `seq` is over (nothing if it is not kept).
    fn done(&self, seq: u32) {
        if let (Some(kept), true) = (&self.kept, seq != 0) {
            kept.record(Journal::Done { seq });
        }
    }

    /// Sets the outbound window for the connection now attached.
    pub(crate) fn set_window(&mut self, window: u16) {
        self.window = window.max(1);
        self.redeliver = self.redeliver.min(self.window);
    }

    /// Messages queued and not yet sent.
    pub(crate) fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Queues the retained messages of a new subscription behind what is queued already: they
    /// are taken from the store as the connection sends them (see [`Session::refill_retained`]).
    pub(crate) fn push_retained(&mut self, cursor: RetainedCursor) {
        self.queue.push_retained(cursor);
    }

    /// Drops the retained messages a subscription to `filter` has still to send: it was
    /// unsubscribed (MQTT-3.10.4-2).
    pub(crate) fn drop_retained(&mut self, filter: &str) {
        self.queue.drop_retained(filter);
    }

    /// When [`Session::next_outgoing`] found nothing because a retained stream, or messages
    /// held on disk, at the front of the queue have no batch ready: takes the next one from
    /// `retained` or `stored`. [`Refill::Again`]: the caller asks for the next packet again.
    pub(crate) fn refill(
        &mut self,
        retained: &dyn RetainedSource,
        stored: Option<&dyn StoredSource>,
    ) -> Refill {
        let mut gone = Vec::new();
        let refill = self.queue.refill_front(retained, stored, &mut gone);
        // Expired while on disk [MQTT-3.3.2-5]: not sent, and their rows go.
        for seq in gone {
            self.done(seq);
        }
        refill
    }

    /// QoS 1/2 messages awaiting acknowledgement.
    pub(crate) fn inflight(&self) -> usize {
        self.inflight.len()
    }

    /// The next packet to send, if the window allows: QoS 0 messages go straight out, QoS 1/2
    /// take a packet identifier and a place in the window. Order is kept: a QoS 1/2 message
    /// waiting for the window holds back the messages behind it. Messages whose expiry interval
    /// has passed by `now` are discarded on the way [MQTT-3.3.2-5].
    pub(crate) fn next_outgoing(&mut self, now: Instant) -> Option<Outgoing> {
        while self.queue.front()?.0.expired(now) {
            if let Some(d) = self.queue.pop_front() {
                self.done(d.seq);
            }
        }
        let (_, qos) = self.queue.front()?;
        if qos != QoS::AtMostOnce && self.inflight.len() >= usize::from(self.window) {
            return None;
        }
        // A kept delivery goes with the identifier its number gives it; in the rare case that
        // one is still in flight (65,535 numbers back), it waits for it.
        let kept_id = match &self.kept {
            Some(kept) if qos != QoS::AtMostOnce => {
                let seq = match self.queue.front_seq() {
                    0 => kept.peek_seq(),
                    seq => seq,
                };
                let id = packet_id_of(seq);
                if self.inflight.iter().any(|(i, _)| *i == id) {
                    return None;
                }
                Some(id)
            }
            _ => None,
        };
        let mut delivery = self.queue.pop_front()?;
        self.took_one();
        if delivery.qos == QoS::AtMostOnce {
            return Some(Outgoing::Publish {
                packet_id: 0,
                delivery,
                dup: false,
            });
        }
        let packet_id = match (kept_id, &mut self.kept) {
            (Some(id), Some(kept)) => {
                // A message of a run or a retained one: numbered as it goes out.
                if delivery.seq == 0 {
                    delivery.seq = kept.take_seq();
                    kept.record(Journal::Queued {
                        seq: delivery.seq,
                        delivery: delivery.clone(),
                        packet_id: 0,
                    });
                }
                id
            }
            _ => self.allocate_id(),
        };
        self.inflight
            .outbound_mut()
            .push_back((packet_id, InFlight::Sent(delivery.clone())));
        // Only a restored delivery may have been in flight before the restart: one that
        // expired, or went to another member of its shared group, does not pass its DUP on
        // to a message queued since.
        let restored = self
            .kept
            .as_ref()
            .is_some_and(|k| delivery.seq != 0 && delivery.seq <= k.restored_upto);
        let dup = restored && self.redeliver > 0;
        if restored {
            self.redeliver = self.redeliver.saturating_sub(1);
        } else {
            // Past the restored ones (they are at the front): none is left to go with DUP.
            self.redeliver = 0;
        }
        Some(Outgoing::Publish {
            packet_id,
            delivery,
            dup,
        })
    }

    /// As [`Self::next_outgoing`], but QoS 0 messages at the front of a shared run come out
    /// together, as many as fit in about `budget` bytes.
    pub(crate) fn next_outgoing_within(&mut self, now: Instant, budget: usize) -> Option<Outgoing> {
        let slice = self.queue.pop_qos0_slice(budget);
        let Some(slice) = slice else {
            return self.next_outgoing(now);
        };
        self.took_one();
        Some(Outgoing::Run(slice))
    }

    /// Takes out every delivery made through a shared subscription that another member may
    /// have instead: QoS 1 messages in flight awaiting PUBACK (their packet ids are freed), then
    /// every queued one, in order. A QoS 2 message once sent stays: its delivery must complete
    /// with this client [MQTT-4.8.2-4] and never go to another [MQTT-4.8.2-5].
    pub(crate) fn take_shared(&mut self) -> Vec<Delivery> {
        let mut taken = Vec::new();
        if let Some(inflight) = self.inflight.outbound_if_any() {
            inflight.retain(|(_, f)| match f {
                InFlight::Sent(d) if d.shared().is_some() && d.qos == QoS::AtLeastOnce => {
                    taken.push(d.clone());
                    false
                }
                _ => true,
            });
        }
        taken.append(&mut self.queue.take_shared());
        for d in &taken {
            self.done(d.seq);
        }
        self.settle();
        taken
    }

    /// A packet identifier not in use by any in-flight message.
    fn allocate_id(&mut self) -> u16 {
        loop {
            let id = self.next_id;
            self.next_id = self.next_id.checked_add(1).unwrap_or(1);
            if !self.inflight.iter().any(|(i, _)| *i == id) {
                return id;
            }
        }
    }

    fn position(&self, id: u16) -> Option<usize> {
        self.inflight.iter().position(|(i, _)| *i == id)
    }

    /// PUBACK: frees the window if `id` is a QoS 1 message in flight.
    pub(crate) fn puback(&mut self, id: u16) -> Acked {
        match self.position(id) {
            Some(i) if matches!(&self.inflight[i].1, InFlight::Sent(d) if d.qos == QoS::AtLeastOnce) =>
            {
                if let Some((_, InFlight::Sent(d))) = self.inflight.outbound_mut().remove(i) {
                    self.done(d.seq);
                }
                Acked::Done
            }
            // A QoS 2 message answered with PUBACK.
            Some(_) => Acked::WrongKind,
            None => Acked::Unknown,
        }
    }

    /// PUBREC: the message is now the client's; a PUBREL is due (also for a repeated PUBREC
    /// of a released message). `failed` is a v5 PUBREC with a reason code of 0x80 or more: the
    /// exchange ends there.
    pub(crate) fn pubrec(&mut self, id: u16, failed: bool) -> Acked {
        match self.position(id) {
            Some(i) => match &self.inflight[i].1 {
                InFlight::Sent(d) if d.qos == QoS::ExactlyOnce => {
                    let seq = d.seq;
                    if failed {
                        self.inflight.outbound_mut().remove(i);
                        self.done(seq);
                    } else {
                        self.inflight.outbound_mut()[i].1 = InFlight::Released(seq);
                        if let (Some(kept), true) = (&self.kept, seq != 0) {
                            kept.record(Journal::Released { seq, packet_id: id });
                        }
                    }
                    Acked::Done
                }
                InFlight::Released(_) => Acked::Done,
                // A QoS 1 message answered with PUBREC.
                InFlight::Sent(_) => Acked::WrongKind,
            },
            None => Acked::Unknown,
        }
    }

    /// PUBCOMP: the QoS 2 exchange of a released message is complete.
    pub(crate) fn pubcomp(&mut self, id: u16) -> Acked {
        match self.position(id) {
            Some(i) if matches!(self.inflight[i].1, InFlight::Released(_)) => {
                if let Some((_, InFlight::Released(seq))) = self.inflight.outbound_mut().remove(i) {
                    self.done(seq);
                }
                Acked::Done
            }
            // A QoS 1 message, or a QoS 2 message not yet PUBREC'd (so never PUBREL'd).
            Some(_) => Acked::WrongKind,
            None => Acked::Unknown,
        }
    }

    /// Gives up on an in-flight message without an acknowledgement (it could not be sent, e.g.
    /// over the client's Maximum Packet Size [MQTT-3.1.2-25]).
    pub(crate) fn abandon(&mut self, id: u16) {
        if let Some(i) = self.position(id) {
            let seq = match self.inflight.outbound_mut().remove(i) {
                Some((_, InFlight::Sent(d))) => d.seq,
                Some((_, InFlight::Released(seq))) => seq,
                None => 0,
            };
            self.done(seq);
        }
    }

    /// What to resend when a client resumes this session: every unacknowledged PUBLISH with
    /// DUP set, and PUBREL for the released ones, in their original order [MQTT-4.4.0-1].
    pub(crate) fn resend(&self) -> Vec<Outgoing> {
        self.inflight
            .iter()
            .map(|(id, state)| match state {
                InFlight::Sent(d) => Outgoing::Publish {
                    packet_id: *id,
                    delivery: d.clone(),
                    dup: true,
                },
                InFlight::Released(_) => Outgoing::PubRel { packet_id: *id },
            })
            .collect()
    }

    /// An inbound QoS 2 PUBLISH: `Some(true)` the first time `id` is seen (route it),
    /// `Some(false)` for a duplicate before PUBREL (acknowledge only), MQTT-4.3.3-10 (5.0).
    /// `None`, and nothing recorded, for a new id when `max` are awaiting PUBREL already (the
    /// Receive Maximum we announced, 5.0 section 3.3.4).
    pub(crate) fn receive_qos2(&mut self, id: u16, max: usize) -> Option<bool> {
        if self.inflight.inbound_qos2().contains(&id) {
            return Some(false);
        }
        if self.inflight.inbound_qos2().len() >= max {
            return None;
        }
        self.inflight.inbound_qos2_mut().push(id);
        if let Some(kept) = &self.kept {
            kept.record(Journal::Inbound {
                packet_id: id,
                pending: true,
            });
        }
        Some(true)
    }

    /// Inbound QoS 2 messages awaiting PUBREL.
    #[cfg(test)]
    pub(crate) fn inbound_pending(&self) -> usize {
        self.inflight.inbound_qos2().len()
    }

    /// PUBREL: forgets the id. False if it was not pending.
    pub(crate) fn release(&mut self, id: u16) -> bool {
        let Some(ids) = self.inflight.inbound_qos2_if_any() else {
            return false;
        };
        let before = ids.len();
        ids.retain(|&i| i != id);
        let released = ids.len() != before;
        if let (Some(kept), true) = (&self.kept, released) {
            kept.record(Journal::Inbound {
                packet_id: id,
                pending: false,
            });
        }
        released
    }

    /// Gives back the memory of queues that grew under a burst and have drained: an overload
    /// must not leave every subscriber holding its peak capacity. The connection calls it when
    /// a turn finds nothing to send, so a steady stream does not pay for regrowing. Its count
    /// against the memory budget is brought to the byte.
    pub(crate) fn compact(&mut self) {
        self.settle_within(0);
        if self.queue.capacity() > SHRINK_ABOVE {
            self.queue.release();
        }
        if self.inflight.capacity() > SHRINK_ABOVE {
            self.inflight.release_if_empty();
        }
    }
}

#[cfg(test)]
mod spill_tests;
#[cfg(test)]
mod tests;
