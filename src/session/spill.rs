//! A kept session's messages held on disk only. Over the memory budget a kept session's QoS
//! 1/2 message is written to the store as always (its row, and its message once for every
//! session) but not kept in memory: the queue holds a count of numbered messages instead, and
//! reads them back a batch at a time as the connection sends them, once the writer has
//! committed them. Every QoS 1/2 message after it is held the same way until the queue has
//! read them all back, so the session's order is kept.

use super::Delivery;
use std::collections::VecDeque;

/// Messages read back per batch, as for a retained stream.
const READ_BATCH: u32 = 64;

/// Where held messages are read back from: the store, under the session's client id.
pub(crate) trait StoredSource {
    /// Whether the writer's change `n` is committed (the rows sent up to it can be read).
    fn committed(&self, n: u64) -> bool;
    /// Appends, in order, the deliveries the store holds numbered `from` on, `count` numbers
    /// (wrapping past `u32::MAX` to 1), each with its number as its `seq`; adds the numbers
    /// of those whose message expired to `gone`. An error if the store cannot be read.
    fn read(
        &self,
        from: u32,
        count: u32,
        out: &mut VecDeque<Delivery>,
        gone: &mut Vec<u32>,
    ) -> Result<(), String>;
}

/// What taking the next batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refill {
    /// Nothing to take: the front has a message ready, or is not a stream.
    Nothing,
    /// Took a batch (or ended a stream): ask for the next message again.
    Again,
    /// The messages are not committed yet: wait for the writer's change `n`.
    Wait(u64),
}

/// A run of consecutively numbered messages held on disk.
#[derive(Debug)]
pub(super) struct Spilled {
    /// The number of the first message not yet read back.
    next: u32,
    /// Messages not yet read back.
    unread: u32,
    /// Messages (read back or not, not yet taken out) and their payload bytes that the
    /// queue counts for this entry.
    pub(super) len: usize,
    pub(super) bytes: usize,
    /// The writer's change that wrote the last of them.
    pub(super) written: u64,
    /// Read back, not yet taken out.
    pub(super) ready: VecDeque<Delivery>,
}

/// The number `n` after `seq` (kept numbers wrap past `u32::MAX` to 1; 0 is never given).
pub(crate) fn advance(seq: u32, n: u32) -> u32 {
    let period = u64::from(u32::MAX);
    // Below `u32::MAX` before the `+ 1`, so it fits.
    ((u64::from(seq.max(1)) - 1 + u64::from(n)) % period + 1) as u32
}

impl Spilled {
    /// `count` messages numbered from `first` on, of `bytes` payload bytes in all, written by
    /// change `written`.
    pub(super) fn new(first: u32, count: u32, bytes: usize, written: u64) -> Self {
        Self {
            next: first,
            unread: count,
            len: count as usize,
            bytes,
            written,
            ready: VecDeque::new(),
        }
    }

    /// Adds message `seq` if it is the next number after the last one held and the entry
    /// holds less than a batch; false otherwise (the caller starts another entry). An entry
    /// is read once its last message is committed: one that grew with every new message would
    /// wait for each new commit in turn, and a session fed faster than the writer commits
    /// would never be sent anything.
    pub(super) fn extend(&mut self, seq: u32, bytes: usize, written: u64) -> bool {
        if self.unread == 0 || self.unread >= READ_BATCH || advance(self.next, self.unread) != seq {
            return false;
        }
        self.unread += 1;
        self.len += 1;
        self.bytes += bytes;
        self.written = written;
        true
    }

    /// Reads the next batch back from `stored`, once the writer has committed them.
    pub(super) fn refill(&mut self, stored: &dyn StoredSource, gone: &mut Vec<u32>) -> Refill {
        if self.unread == 0 {
            return Refill::Again;
        }
        if !stored.committed(self.written) {
            return Refill::Wait(self.written);
        }
        let count = self.unread.min(READ_BATCH);
        if let Err(why) = stored.read(self.next, count, &mut self.ready, gone) {
            // Left as it is: the next turn of the connection tries again.
            tracing::warn!(
                error = why,
                "cannot read queued messages back from the store"
            );
            return Refill::Nothing;
        }
        self.next = advance(self.next, count);
        self.unread -= count;
        Refill::Again
    }

    /// Whether every message was read back and taken out.
    pub(super) fn is_over(&self) -> bool {
        self.unread == 0 && self.ready.is_empty()
    }

    /// Takes the next message read back out; the entry no longer counts it. Returns it and
    /// the payload bytes the entry counted for it (less than its payload for messages
    /// restored at start-up, counted as 0 bytes: their sizes are not read until they are).
    pub(super) fn pop(&mut self) -> Option<(Delivery, usize)> {
        let d = self.ready.pop_front()?;
        let bytes = d.message.payload.len().min(self.bytes);
        self.len = self.len.saturating_sub(1);
        self.bytes -= bytes;
        Some((d, bytes))
    }

    /// Drops the oldest message: the first read back, or else the next on disk (its payload
    /// size unknown here: the entry's average). Returns its number and payload bytes.
    pub(super) fn drop_oldest(&mut self) -> Option<(u32, usize)> {
        if let Some((d, bytes)) = self.pop() {
            return Some((d.seq, bytes));
        }
        if self.unread == 0 {
            return None;
        }
        let seq = self.next;
        let bytes = self.bytes / self.len.max(1);
        self.next = advance(seq, 1);
        self.unread -= 1;
        self.len = self.len.saturating_sub(1);
        self.bytes -= bytes;
        Some((seq, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::advance;

    #[test]
    fn numbers_wrap_past_the_largest_to_one() {
        assert_eq!(advance(1, 1), 2);
        assert_eq!(advance(u32::MAX, 1), 1);
        assert_eq!(advance(u32::MAX - 1, 3), 2);
        assert_eq!(advance(7, 0), 7);
    }
}
