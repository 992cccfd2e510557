//! Counters the broker keeps (a Prometheus endpoint comes with the operations issue).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Broker-wide counters. Relaxed atomics: they are statistics, not synchronisation.
#[derive(Debug, Default)]
pub struct Metrics {
    pub connections_accepted: AtomicU64,
    pub connections_refused: AtomicU64,
    pub messages_received: AtomicU64,
    pub messages_delivered: AtomicU64,
    /// Messages a session's full queue refused (slow or offline subscribers).
    pub messages_dropped: AtomicU64,
    pub wills_published: AtomicU64,
}

impl Metrics {
    /// Adds one to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }
}
