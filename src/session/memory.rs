//! The memory budget of the sessions' queues (`limits.max_memory_bytes`): what every session's
//! queue holds in memory, counted together, so that 100,000 offline sessions with full queues
//! cannot grow the broker without bound. Beyond it a kept session's QoS 1/2 messages stay on
//! disk only (see `queue::Entry::Stored`) and other messages are dropped.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

/// What one queued message counts besides its payload: its place in the queue and its share
/// of the message's fields (measured: 40 to 50 bytes a queued delivery, `docs/benchmarks.md`).
pub(crate) const PER_MESSAGE: usize = 64;

/// A session gives back what its queue no longer holds once this much has gathered (or its
/// queue is empty): a subscriber taking messages one by one would otherwise write the shared
/// counter, and move its cache line between cores, for each. What it has not given back yet
/// is counted as held: the count errs high, never low.
pub(super) const CREDIT_BATCH: usize = 16 * 1024;

/// The count and its limit, shared by every session of a broker.
#[derive(Debug, Default)]
pub(crate) struct MemoryBudget {
    /// Bytes; 0 = no limit.
    limit: usize,
    used: AtomicUsize,
    /// A refusal was logged since the count was last below the limit.
    logged: AtomicBool,
}

impl MemoryBudget {
    /// A budget of `limit` bytes (0: no limit).
    pub(crate) fn new(limit: u64) -> Self {
        Self {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            used: AtomicUsize::new(0),
            logged: AtomicBool::new(false),
        }
    }

    /// Whether the queues hold the whole budget or more.
    pub(crate) fn is_spent(&self) -> bool {
        self.limit != 0 && self.used.load(Relaxed) >= self.limit
    }

    /// What the queues hold, as counted.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Relaxed)
    }

    /// The limit; 0 = none.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Counts `bytes` more.
    pub(crate) fn charge(&self, bytes: usize) {
        if bytes > 0 {
            self.used.fetch_add(bytes, Relaxed);
        }
    }

    /// Counts `bytes` less.
    pub(crate) fn credit(&self, bytes: usize) {
        if bytes > 0 {
            let before = self.used.fetch_sub(bytes, Relaxed);
            if before - bytes < self.limit && self.logged.load(Relaxed) {
                self.logged.store(false, Relaxed);
            }
        }
    }

    /// True for the first message refused since the count was last below the limit: the
    /// broker logs one line per episode, not one per message.
    pub(crate) fn first_refusal(&self) -> bool {
        !self.logged.swap(true, Relaxed)
    }
}
