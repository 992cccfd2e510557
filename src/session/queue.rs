//! A session's queue of messages waiting to be sent. A fan-out gives each subscriber a whole
//! run of messages (one topic, routed together) as one entry that points into the run, which
//! every subscriber shares: queueing a run of 800 messages to 1,000 subscribers writes 1,000
//! entries and raises 1,000 reference counts, not 800,000 of each. The entry becomes one
//! [`Delivery`] at a time as the connection takes messages out.

use super::memory::PER_MESSAGE;
use super::retained::{RetainedCursor, RetainedSource, RetainedStream};
use super::run::{Run, RunGrant, RunSlice, wire_estimate};
use super::spill::{Refill, Spilled, StoredSource};
use super::{Delivery, Message};
use crate::protocol::QoS;
use std::collections::VecDeque;
use std::sync::Arc;

#[derive(Debug)]
enum Entry {
    One(Delivery),
    /// The messages of `run` from `next` on.
    Run {
        run: Arc<Run>,
        next: u32,
        grant: RunGrant,
    },
    /// A subscription's retained messages, taken from the store as they are sent. Counted
    /// neither in `len` nor against the queue's limits: they are not copies held here.
    Retained(Box<RetainedStream>),
    /// Messages of a kept session held on disk only, over the memory budget (see `spill`).
    Stored(Box<Spilled>),
}

/// Messages waiting for the connection or for room in the in-flight window, in order.
#[derive(Debug, Default)]
pub(super) struct MessageQueue {
    entries: VecDeque<Entry>,
    /// Messages queued (a run counts each of its messages not yet taken).
    len: usize,
    /// Payload bytes queued.
    bytes: usize,
    /// Of `len` and `bytes`, what `Stored` entries hold (on disk, or read back and not yet
    /// taken out).
    stored_len: usize,
    stored_bytes: usize,
}

impl MessageQueue {
    /// Messages queued.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Payload bytes queued.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// What the queue holds in memory, for the memory budget: each message not held on disk,
    /// its payload and [`PER_MESSAGE`].
    pub(super) fn resident(&self) -> usize {
        (self.bytes - self.stored_bytes) + PER_MESSAGE * (self.len - self.stored_len)
    }

    /// Whether messages are held on disk: a kept session's next QoS 1/2 message goes there
    /// too, behind them, whatever the budget.
    pub(super) fn is_spilled(&self) -> bool {
        self.stored_len > 0
    }

    /// Queues the kept delivery `seq` of `bytes` payload bytes as held on disk only: its row
    /// is the writer's change `written`, readable once that is committed. A run of numbers
    /// goes into one entry.
    pub(super) fn push_stored(&mut self, seq: u32, bytes: usize, written: u64) {
        self.len += 1;
        self.bytes += bytes;
        self.stored_len += 1;
        self.stored_bytes += bytes;
        if let Some(Entry::Stored(s)) = self.entries.back_mut()
            && s.extend(seq, bytes, written)
        {
            return;
        }
        self.entries.push_back(Entry::Stored(Box::new(Spilled::new(
            seq, 1, bytes, written,
        ))));
    }

    /// Queues `count` kept deliveries numbered from `first` on, as held on disk only, their
    /// rows committed: a restored session's queue. Their payload sizes are not known: counted
    /// as 0 bytes until they are read back.
    pub(super) fn push_stored_run(&mut self, first: u32, count: u32) {
        if count == 0 {
            return;
        }
        self.len += count as usize;
        self.stored_len += count as usize;
        self.entries
            .push_back(Entry::Stored(Box::new(Spilled::new(first, count, 0, 0))));
    }

    /// Entries the queue has room for without growing.
    pub(super) fn capacity(&self) -> usize {
        self.entries.capacity()
    }

    /// Queues one delivery.
    pub(super) fn push(&mut self, delivery: Delivery) {
        self.len += 1;
        self.bytes += delivery.message.payload.len();
        self.entries.push_back(Entry::One(delivery));
    }

    /// Queues every message of `run`, as one entry.
    pub(super) fn push_run(&mut self, run: &Arc<Run>, grant: RunGrant) {
        debug_assert!(grant.extra.as_ref().is_none_or(|e| e.shared.is_none()));
        if run.is_empty() {
            return;
        }
        self.len += run.len();
        self.bytes += run.payload_bytes();
        self.entries.push_back(Entry::Run {
            run: run.clone(),
            next: 0,
            grant,
        });
    }

    /// Queues a subscription's retained messages, to be taken from the store when they reach
    /// the front.
    /// A stream of the same filter not yet over is dropped first: the new one sends all of it
    /// again anyway, and a client repeating one SUBSCRIBE while it acknowledges nothing would
    /// otherwise add a stream each time, without bound [issue 14, section 0].
    pub(super) fn push_retained(&mut self, cursor: RetainedCursor) {
        self.drop_retained(&cursor.filter);
        self.entries
            .push_back(Entry::Retained(Box::new(RetainedStream::new(cursor))));
    }

    /// Drops the retained streams of `filter` not yet over: an UNSUBSCRIBE stops what the
    /// subscription would still add (MQTT-3.10.4-2; what is in flight is finished).
    pub(super) fn drop_retained(&mut self, filter: &str) {
        self.entries
            .retain(|e| !matches!(e, Entry::Retained(s) if *s.cursor.filter == *filter));
    }

    /// If a retained stream or messages held on disk at the front have nothing ready, takes
    /// the next batch from `retained` or `stored`, or removes the entry once it is over.
    /// [`Refill::Again`]: the front may now have a message to send. Numbers of messages the
    /// store no longer had (expired) are added to `gone`.
    pub(super) fn refill_front(
        &mut self,
        retained: &dyn RetainedSource,
        stored: Option<&dyn StoredSource>,
        gone: &mut Vec<u32>,
    ) -> Refill {
        match self.entries.front_mut() {
            Some(Entry::Retained(stream)) => {
                if !stream.ready.is_empty() {
                    return Refill::Nothing;
                }
                stream.refill(retained);
                if stream.is_over() {
                    self.entries.pop_front();
                }
                Refill::Again
            }
            Some(Entry::Stored(spilled)) => {
                if !spilled.ready.is_empty() {
                    return Refill::Nothing;
                }
                let Some(stored) = stored else {
                    return Refill::Nothing;
                };
                let outcome = spilled.refill(stored, gone);
                if spilled.is_over() {
                    self.pop_stored_front();
                }
                outcome
            }
            _ => Refill::Nothing,
        }
    }

    /// Removes the `Stored` entry at the front, over: what it still counted (messages the
    /// store no longer had) is no longer queued.
    fn pop_stored_front(&mut self) {
        if let Some(Entry::Stored(s)) = self.entries.pop_front() {
            self.uncount_stored(s.len, s.bytes);
        }
    }

    fn uncount_stored(&mut self, len: usize, bytes: usize) {
        self.len -= len;
        self.bytes -= bytes;
        self.stored_len -= len;
        self.stored_bytes -= bytes;
    }

    /// Drops every message held on disk only (their rows are gone).
    pub(super) fn drop_stored(&mut self) {
        self.entries.retain(|e| !matches!(e, Entry::Stored(_)));
        self.uncount_stored(self.stored_len, self.stored_bytes);
    }

    /// The next message and the QoS it goes at. `None` also while a retained stream at the
    /// front waits for its next batch (see [`MessageQueue::refill_front`]).
    pub(super) fn front(&self) -> Option<(&Message, QoS)> {
        match self.entries.front()? {
            Entry::One(d) => Some((&d.message, d.qos)),
            Entry::Retained(stream) => stream.ready.front().map(|d| (&*d.message, d.qos)),
            Entry::Stored(s) => s.ready.front().map(|d| (&*d.message, d.qos)),
            Entry::Run { run, next, grant } => {
                let m = run.messages().get(*next as usize)?;
                Some((m, m.qos.min(grant.qos)))
            }
        }
    }

    /// The sequence number of the delivery at the front if it is a single one (a kept
    /// session's, see `kept`); 0 otherwise.
    pub(super) fn front_seq(&self) -> u32 {
        match self.entries.front() {
            Some(Entry::One(d)) => d.seq,
            Some(Entry::Stored(s)) => s.ready.front().map_or(0, |d| d.seq),
            _ => 0,
        }
    }

    /// Calls `f` on each single delivery queued, in order.
    pub(super) fn for_each_one(&mut self, mut f: impl FnMut(&mut Delivery)) {
        for e in &mut self.entries {
            if let Entry::One(d) = e {
                f(d);
            }
        }
    }

    /// Drops the oldest message queued (retained streams are not counted, and stay); returns
    /// its sequence number in a kept session (0 if none), or `None` if there is nothing to drop.
    pub(super) fn drop_oldest(&mut self) -> Option<u32> {
        let i = self
            .entries
            .iter()
            .position(|e| !matches!(e, Entry::Retained(_)))?;
        let (seq, bytes) = match &mut self.entries[i] {
            Entry::One(d) => (d.seq, d.message.payload.len()),
            Entry::Stored(s) => {
                let (seq, bytes) = s.drop_oldest()?;
                let over = s.is_over();
                self.uncount_stored(1, bytes);
                if over && let Some(Entry::Stored(s)) = self.entries.remove(i) {
                    self.uncount_stored(s.len, s.bytes);
                }
                return Some(seq);
            }
            Entry::Run { run, next, .. } => {
                let bytes = run.messages().get(*next as usize)?.payload.len();
                *next += 1;
                if (*next as usize) < run.len() {
                    self.len -= 1;
                    self.bytes -= bytes;
                    return Some(0);
                }
                (0, bytes)
            }
            Entry::Retained(_) => return None,
        };
        self.entries.remove(i);
        self.len -= 1;
        self.bytes -= bytes;
        Some(seq)
    }

    /// Takes the next message out as a delivery.
    pub(super) fn pop_front(&mut self) -> Option<Delivery> {
        let delivery = match self.entries.front_mut()? {
            Entry::One(_) => match self.entries.pop_front() {
                Some(Entry::One(d)) => d,
                _ => return None,
            },
            Entry::Run { run, next, grant } => {
                let i = *next as usize;
                // An entry is removed as its last message is taken, so `i` is in the run.
                let delivery = grant.delivery(run.messages().get(i)?);
                *next += 1;
                if i + 1 >= run.len() {
                    self.entries.pop_front();
                }
                delivery
            }
            Entry::Retained(stream) => {
                let delivery = stream.ready.pop_front()?;
                if stream.is_over() {
                    self.entries.pop_front();
                }
                // Not counted in `len` or `bytes`.
                return Some(delivery);
            }
            Entry::Stored(s) => {
                let (delivery, bytes) = s.pop()?;
                if s.is_over() {
                    self.pop_stored_front();
                }
                self.uncount_stored(1, bytes);
                return Some(delivery);
            }
        };
        self.len -= 1;
        self.bytes -= delivery.message.payload.len();
        Some(delivery)
    }

    /// If the next messages come from a run granted at QoS 0, takes as many of them out as fit
    /// in about `budget` bytes (at least one; see [`wire_estimate`]).
    pub(super) fn pop_qos0_slice(&mut self, budget: usize) -> Option<RunSlice> {
        let Some(Entry::Run { run, next, grant }) = self.entries.front_mut() else {
            return None;
        };
        if grant.qos != QoS::AtMostOnce {
            return None;
        }
        let start = *next as usize;
        let rest = run.messages().get(start..)?;
        let (mut count, mut used, mut bytes) = (0, 0, 0);
        for m in rest {
            if count > 0 && used >= budget {
                break;
            }
            used += wire_estimate(m);
            bytes += m.payload.len();
            count += 1;
        }
        let end = start + count;
        // Within the run, whose length fits u32 (it was built from one read).
        let end32 = u32::try_from(end).unwrap_or(u32::MAX);
        let slice = RunSlice::new(run.clone(), *next..end32, grant.clone(), used);
        if end >= run.len() {
            self.entries.pop_front();
        } else {
            *next = end32;
        }
        self.len -= count;
        self.bytes -= bytes;
        Some(slice)
    }

    /// Takes out every delivery made through a shared subscription, in order.
    pub(super) fn take_shared(&mut self) -> Vec<Delivery> {
        let shared = |e: &Entry| matches!(e, Entry::One(d) if d.shared().is_some());
        if !self.entries.iter().any(shared) {
            return Vec::new();
        }
        let mut taken = Vec::new();
        let mut kept = VecDeque::with_capacity(self.entries.len());
        for e in self.entries.drain(..) {
            match e {
                Entry::One(d) if d.shared().is_some() => {
                    self.len -= 1;
                    self.bytes -= d.message.payload.len();
                    taken.push(d);
                }
                e => kept.push_back(e),
            }
        }
        self.entries = kept;
        taken
    }

    /// Gives back the memory of an empty queue.
    pub(super) fn release(&mut self) {
        if self.entries.is_empty() {
            self.entries = VecDeque::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(filter: &str) -> RetainedCursor {
        RetainedCursor {
            filter: filter.into(),
            after: None,
            qos: QoS::AtLeastOnce,
            extra: None,
            read_check: None,
        }
    }

    #[test]
    fn a_filter_subscribed_again_restarts_its_retained_stream_rather_than_adding_one() {
        let mut q = MessageQueue::default();
        for _ in 0..1_000 {
            q.push_retained(cursor("#"));
        }
        q.push_retained(cursor("a/#"));
        q.push_retained(cursor("#"));
        let filters: Vec<&str> = q
            .entries
            .iter()
            .map(|e| match e {
                Entry::Retained(s) => &*s.cursor.filter,
                other => panic!("only streams were queued: {other:?}"),
            })
            .collect();
        assert_eq!(filters, ["a/#", "#"]);
    }
}
