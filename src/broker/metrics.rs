//! Counters the broker keeps (a Prometheus endpoint comes with the operations issue).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// Broker-wide counters. Relaxed atomics: they are statistics, not synchronisation.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Connections whose CONNECT was accepted.
    pub connections_accepted: AtomicU64,
    /// Connections closed before a CONNECT was accepted: refused, timed out or malformed.
    pub connections_refused: AtomicU64,
    /// PUBLISHes received from clients.
    pub messages_received: AtomicU64,
    /// PUBLISHes written to subscribers, resends included.
    pub messages_delivered: AtomicU64,
    /// Messages dropped for any reason: the sum of the `dropped_*` counters.
    pub messages_dropped: AtomicU64,
    /// Dropped because a session's queue was full (a slow or offline subscriber).
    pub dropped_queue_full: AtomicU64,
    /// Dropped because the queues were over `limits.max_memory_bytes` and the message could
    /// not be held on disk instead (QoS 0, or a session not kept in the store).
    pub dropped_memory: AtomicU64,
    /// QoS 1/2 messages of persistent sessions held on disk only, the queues being over
    /// `limits.max_memory_bytes`; read back as they are sent.
    pub messages_spilled: AtomicU64,
    /// Dropped because the PUBLISH exceeded the client's Maximum Packet Size [MQTT-3.1.2-25].
    pub dropped_too_large: AtomicU64,
    /// PUBLISHes refused, and deliveries withheld, because the ACL file does not allow them.
    pub dropped_not_authorized: AtomicU64,
    /// Connections ended for publishing faster than the publish rate limits.
    pub disconnected_rate: AtomicU64,
    /// CONNECTs refused for coming faster than `limits.max_connect_rate_per_address`.
    pub refused_connect_rate: AtomicU64,
    /// Connections closed at accept because their listener had its `max_connections`.
    pub refused_listener_full: AtomicU64,
    /// Dropped because a shared subscription's member left with it unfinished and its group
    /// had no other member, and its session ended.
    pub dropped_no_member: AtomicU64,
    /// Times a publisher was held back because a connected subscriber's queue was full
    /// (`sessions.overflow = "backpressure"`).
    pub publishers_paused: AtomicU64,
    /// Will messages published, at once or after their Will Delay Interval.
    pub wills_published: AtomicU64,
    /// Clients connected right now (past CONNACK, until their connection ends).
    pub connections_current: AtomicU64,
    /// Connections parked right now: idle, with no task (see `connection/park.rs`).
    pub connections_parked: AtomicU64,
}

impl Metrics {
    /// Adds one to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    /// Adds `n` to a counter (callers batch their counts: one atomic add per batch, not per
    /// message, keeps the counter's cache line from bouncing between cores).
    pub fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Relaxed);
        }
    }

    /// Takes one from a gauge.
    pub fn dec(counter: &AtomicU64) {
        counter.fetch_sub(1, Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }
}

/// Rate-limits the "queue full" warning: when one hot topic overloads a thousand subscribers at
/// once, the log gets one line a second naming one of them and counting the others, not a
/// thousand lines.
#[derive(Debug)]
pub(crate) struct OverloadLog {
    started: Instant,
    /// Milliseconds after `started` of the last line written; `u64::MAX` before the first.
    last_ms: AtomicU64,
    /// Sessions that began dropping since the last line.
    suppressed: AtomicU64,
}

impl Default for OverloadLog {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            last_ms: AtomicU64::new(u64::MAX),
            suppressed: AtomicU64::new(0),
        }
    }
}

impl OverloadLog {
    /// At most one line a second.
    const INTERVAL_MS: u64 = 1000;

    /// Notes that `client_id`'s queue just filled and logs if a line is due.
    pub(crate) fn queue_full(&self, client_id: &str) {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        let last = self.last_ms.load(Relaxed);
        let due = last == u64::MAX || now.saturating_sub(last) >= Self::INTERVAL_MS;
        if !due
            || self
                .last_ms
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_err()
        {
            self.suppressed.fetch_add(1, Relaxed);
            return;
        }
        let others = self.suppressed.swap(0, Relaxed);
        tracing::warn!(
            client_id,
            others_since_last_warning = others,
            "session queue full: dropping messages for this client until it drains"
        );
    }
}
