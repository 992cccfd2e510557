//! Counters the client tasks bump once per batch (never per message), and the sums the
//! reporter reads from them. Relaxed atomics: each counter is monotonic and read on its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// One client's counters, on a cache line of its own so clients on different threads do not
/// contend.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct ClientStats {
    /// PUBLISHes written to the socket.
    pub sent: AtomicU64,
    /// PUBLISHes acknowledged with success (PUBACK, or PUBCOMP for QoS 2).
    pub acked: AtomicU64,
    /// PUBLISHes the broker acknowledged with a v5 failure reason (0x80 and above).
    pub refused: AtomicU64,
    /// PUBLISHes received from the broker.
    pub received: AtomicU64,
}

impl ClientStats {
    pub fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Relaxed);
        }
    }
}

/// Sums over a group of clients at one instant.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub sent: u64,
    pub acked: u64,
    pub refused: u64,
    pub received: u64,
}

impl Totals {
    /// Published and taken by the broker: sent for QoS 0 (TCP took it), acked otherwise.
    pub fn accepted(&self, qos: u8) -> u64 {
        if qos == 0 { self.sent } else { self.acked }
    }

    pub fn since(&self, earlier: &Totals) -> Totals {
        Totals {
            sent: self.sent - earlier.sent,
            acked: self.acked - earlier.acked,
            refused: self.refused - earlier.refused,
            received: self.received - earlier.received,
        }
    }
}

/// Every client's counters, publishers and subscribers apart.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    pub publishers: Vec<Arc<ClientStats>>,
    pub subscribers: Vec<Arc<ClientStats>>,
}

impl Registry {
    pub fn publisher(&mut self) -> Arc<ClientStats> {
        let s = Arc::new(ClientStats::default());
        self.publishers.push(s.clone());
        s
    }

    pub fn subscriber(&mut self) -> Arc<ClientStats> {
        let s = Arc::new(ClientStats::default());
        self.subscribers.push(s.clone());
        s
    }

    /// Publisher counters (sent, acked, refused) plus subscriber receipts.
    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for p in &self.publishers {
            t.sent += p.sent.load(Relaxed);
            t.acked += p.acked.load(Relaxed);
            t.refused += p.refused.load(Relaxed);
        }
        for s in &self.subscribers {
            t.received += s.received.load(Relaxed);
        }
        t
    }

    /// Messages each subscriber received so far, in subscriber order.
    pub fn received_each(&self) -> Vec<u64> {
        self.subscribers
            .iter()
            .map(|s| s.received.load(Relaxed))
            .collect()
    }
}
