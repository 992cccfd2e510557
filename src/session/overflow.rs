//! What a session's queue does at its limits (`[sessions]`): the limits, what became of a
//! message offered, and the overflow policies: drop the new message, drop the oldest, or
//! take it and hold its publisher back (`broker/pressure.rs`).

use super::memory::MemoryBudget;
use super::{Delivery, Journal, Run, RunGrant, Session};
use crate::config::Overflow;
use crate::protocol::QoS;
use std::sync::Arc;

/// Queue policy for one session (from `[sessions]` in the config).
#[derive(Debug, Clone)]
pub(crate) struct QueueLimits {
    /// Most messages queued.
    pub(crate) max_messages: usize,
    /// Most payload bytes queued; 0 = unlimited.
    pub(crate) max_bytes: usize,
    /// Queue QoS 0 messages while offline.
    pub(crate) qos0_offline: bool,
    /// What a full queue does with one more message (`sessions.overflow`).
    pub(crate) overflow: Overflow,
    /// What every session's queue holds in memory, together (`limits.max_memory_bytes`).
    pub(crate) memory: Arc<MemoryBudget>,
}

impl QueueLimits {
    /// Whether `len` messages of `bytes` payload bytes are within these limits.
    fn within(&self, len: usize, bytes: usize) -> bool {
        within(self.max_messages, self.max_bytes, len, bytes)
    }
}

/// Whether `len` messages of `bytes` payload bytes are within `max_messages` and `max_bytes`
/// (0: no byte limit).
fn within(max_messages: usize, max_bytes: usize, len: usize, bytes: usize) -> bool {
    len < max_messages && (max_bytes == 0 || bytes <= max_bytes)
}

/// What became of a message offered to a session. A drop must be counted (and logged once per
/// episode) by whoever offered it, hence `must_use`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a dropped message must be counted"]
pub(crate) enum Enqueued {
    Queued,
    /// Dropped by policy (queue full). `first` is true for the first drop of an episode, so the
    /// broker logs once per episode rather than once per message.
    Dropped {
        first: bool,
    },
    /// QoS 0 for an offline session: not queued, by policy, and not counted as a drop.
    Skipped,
    /// Queued, and `dropped` older messages were dropped to make room for it
    /// (`sessions.overflow = "drop_oldest"`); `first` as for `Dropped`.
    Displaced {
        dropped: u32,
        first: bool,
    },
    /// Queued beyond the limits (`sessions.overflow = "backpressure"`): its publisher should
    /// wait until the session has room again (see [`Session::has_room`]).
    Pressed,
    /// Queued, held on disk only: the queues are over the memory budget.
    Spilled,
    /// Dropped: the queues are over the memory budget and the message cannot be held on disk
    /// (QoS 0, or a session not kept in the store).
    OverBudget,
}

impl Session {
    /// Offers a message. `online` says whether a connection is attached.
    pub(crate) fn enqueue(&mut self, delivery: Delivery, online: bool) -> Enqueued {
        let (qos, bytes) = (delivery.qos, delivery.message.payload.len());
        let press = self.may_press(online);
        self.offer(qos, bytes, online, press, || delivery)
    }

    /// Whether a full queue takes messages beyond its limits now, holding their publisher
    /// back instead (`sessions.overflow = "backpressure"`): connected, and not stalled (see
    /// [`Session::stall`]). Asked once per run of messages, which then goes in whole: a run
    /// stopped half way could not be taken back from the sessions that took its first part.
    /// Each publisher stops after the run that pressed the queue, so it grows by at most a
    /// run per publisher beyond its limits.
    pub(crate) fn may_press(&self, online: bool) -> bool {
        online && self.limits.overflow == Overflow::Backpressure && !self.stalled
    }

    /// Its publishers waited `sessions.backpressure_max_wait_ms` and the queue is still
    /// without room: it drops, as with `"drop_new"`, until it has room again.
    pub(crate) fn stall(&mut self) {
        if !self.has_room() {
            self.stalled = true;
        }
    }

    /// Queues every message of `run` as one entry if the session is online and all of them
    /// fit; otherwise queues nothing and returns false, and the caller offers them one by one,
    /// which applies the drop policy to each.
    pub(crate) fn offer_run(&mut self, run: &Arc<Run>, grant: &RunGrant, online: bool) -> bool {
        let fits = self.queue.len() + run.len() <= self.limits.max_messages
            && (self.limits.max_bytes == 0
                || self.queue.bytes() + run.payload_bytes() <= self.limits.max_bytes);
        // A kept session numbers each QoS 1/2 message as it is queued, so takes them one by one.
        let numbered = self.kept.is_some() && grant.qos != QoS::AtMostOnce;
        if !online || !fits || numbered || self.limits.memory.is_spent() {
            return false;
        }
        self.queue.push_run(run, grant.clone());
        self.settle();
        true
    }

    /// Offers a message of `qos` with a payload of `bytes`, building its delivery only if it
    /// is queued: under overload most offers are refused, and a refused delivery would cost
    /// the router a reference count increment and decrement for nothing. `press`: a full queue
    /// takes a QoS 1/2 message anyway (see [`Session::may_press`]).
    pub(crate) fn offer(
        &mut self,
        qos: QoS,
        bytes: usize,
        online: bool,
        press: bool,
        delivery: impl FnOnce() -> Delivery,
    ) -> Enqueued {
        if !online && qos == QoS::AtMostOnce && !self.limits.qos0_offline {
            return Enqueued::Skipped;
        }
        if self.stalled && self.has_room() {
            // Emptied other than by sending (expiry, a shared hand-back): the stall is over.
            self.stalled = false;
        }
        // Over the memory budget a kept session's QoS 1/2 message is held on disk only, and
        // so is every one after it until those are read back (they stay in order); any other
        // message is dropped. A shared subscription's stays in memory: another member may
        // have to take it.
        let numbered = self.kept.is_some() && qos != QoS::AtMostOnce;
        let spent = self.limits.memory.is_spent();
        if spent && !numbered {
            return Enqueued::OverBudget;
        }
        let (len, queued_bytes) = (self.queue.len(), self.queue.bytes());
        let full = !self.limits.within(len, queued_bytes + bytes);
        let (mut displaced, mut first_drop, mut pressed) = (0, false, false);
        if full {
            match self.limits.overflow {
                // A connected subscriber's QoS 1/2 queue takes it, and the publisher waits for
                // room.
                Overflow::Backpressure if press && qos != QoS::AtMostOnce => pressed = true,
                Overflow::DropNew | Overflow::Backpressure => {
                    let first = !self.dropping;
                    self.dropping = true;
                    return Enqueued::Dropped { first };
                }
                Overflow::DropOldest => {
                    first_drop = !self.dropping;
                    self.dropping = true;
                    while !self
                        .limits
                        .within(self.queue.len(), self.queue.bytes() + bytes)
                    {
                        let Some(seq) = self.queue.drop_oldest() else {
                            // Nothing left to drop (it alone is over the byte limit): it goes.
                            return Enqueued::Dropped { first: first_drop };
                        };
                        self.done(seq);
                        displaced += 1;
                    }
                }
            }
        }
        let mut delivery = delivery();
        delivery.seq = 0;
        let mut spilled = false;
        if let Some(kept) = &mut self.kept
            && delivery.qos != QoS::AtMostOnce
        {
            delivery.seq = kept.take_seq();
            let seq = delivery.seq;
            spilled = (spent || self.queue.is_spilled()) && delivery.shared().is_none();
            // Held on disk only, the delivery goes to the store alone, not copied.
            let in_memory = (!spilled).then(|| delivery.clone());
            let written = kept.record(Journal::Queued {
                seq,
                delivery,
                packet_id: 0,
            });
            match in_memory {
                Some(delivery) => self.queue.push(delivery),
                None => self.queue.push_stored(seq, bytes, written),
            }
        } else {
            self.queue.push(delivery);
        }
        self.settle();
        if displaced > 0 {
            return Enqueued::Displaced {
                dropped: displaced,
                first: first_drop,
            };
        }
        if pressed {
            return Enqueued::Pressed;
        }
        if spilled {
            return Enqueued::Spilled;
        }
        Enqueued::Queued
    }

    /// Whether the queue is at its limits (a message more would be dropped, or press its
    /// publisher).
    pub(crate) fn is_full(&self) -> bool {
        !self.limits.within(self.queue.len(), self.queue.bytes())
    }

    /// Whether publishers held back by this session's full queue are woken: the queue is
    /// below three quarters of its limits (a margin, so that publishers are not woken and
    /// stopped again for every message the subscriber takes).
    pub(crate) fn has_room(&self) -> bool {
        let (messages, bytes) = (self.limits.max_messages, self.limits.max_bytes);
        within(
            messages - messages / 4,
            bytes - bytes / 4,
            self.queue.len(),
            self.queue.bytes(),
        )
    }

    /// After messages were taken out of the queue: a drop episode ends below half the limit,
    /// a stall once there is room.
    pub(super) fn took_one(&mut self) {
        self.settle();
        if self.queue.len() < self.limits.max_messages / 2 {
            self.dropping = false;
        }
        if self.stalled && self.has_room() {
            self.stalled = false;
        }
    }
}
