//! A kept session over the memory budget: messages held on disk only, read back in order.
//! The store here is a map filled by the session's own journal (the real one, redb, is
//! exercised in `tests/memory_budget.rs`).

use super::*;
use crate::protocol::ByteStr;
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The rows a kept session journalled, as a store would hold them, and how far the writer
/// has committed.
#[derive(Default)]
struct Rows {
    rows: Mutex<BTreeMap<u32, Delivery>>,
    written: Mutex<u64>,
    committed: AtomicU64,
}

impl StoredSource for Rows {
    fn committed(&self, n: u64) -> bool {
        self.committed.load(Relaxed) >= n
    }
    fn read(
        &self,
        from: u32,
        count: u32,
        out: &mut VecDeque<Delivery>,
        _gone: &mut Vec<u32>,
    ) -> Result<(), String> {
        let rows = self.rows.lock().unwrap();
        let last = from + count - 1;
        out.extend(rows.range(from..=last).map(|(_, d)| d.clone()));
        Ok(())
    }
}

fn sink(rows: &Arc<Rows>) -> Sink {
    let rows = rows.clone();
    Arc::new(move |j| {
        match j {
            Journal::Queued { seq, delivery, .. } => {
                rows.rows.lock().unwrap().insert(seq, delivery);
            }
            Journal::Done { seq } => {
                rows.rows.lock().unwrap().remove(&seq);
            }
            _ => {}
        }
        let mut written = rows.written.lock().unwrap();
        *written += 1;
        *written
    })
}

fn message(n: u16) -> Arc<Message> {
    Arc::new(Message {
        topic: ByteStr::from_static("t").unwrap(),
        payload: Bytes::from(n.to_be_bytes().repeat(50)),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
        publisher: Arc::from(""),
        expires_at: None,
    })
}

fn offer(s: &mut Session, n: u16, qos: QoS) -> Enqueued {
    let m = message(n);
    s.enqueue(
        Delivery {
            message: m,
            qos,
            retain: false,
            extra: None,
            seq: 0,
        },
        false,
    )
}

/// Sends everything the session has, reading from `rows` as the connection does.
fn send_all(s: &mut Session, rows: &Rows) -> Vec<u16> {
    let mut got = Vec::new();
    let retained = NoRetained;
    loop {
        match s.next_outgoing(std::time::Instant::now()) {
            Some(Outgoing::Publish {
                packet_id,
                delivery,
                ..
            }) => {
                let p = &delivery.message.payload;
                got.push(u16::from_be_bytes([p[0], p[1]]));
                if packet_id != 0 {
                    assert_eq!(s.puback(packet_id), Acked::Done);
                }
            }
            Some(other) => panic!("{other:?}"),
            None => match s.refill(&retained, Some(rows)) {
                Refill::Again => {}
                Refill::Nothing | Refill::Wait(_) => return got,
            },
        }
    }
}

struct NoRetained;
impl RetainedSource for NoRetained {
    fn next_batch(&self, _: &mut RetainedCursor, _: &mut VecDeque<Delivery>, _: usize) -> bool {
        true
    }
}

fn kept_session(budget: u64, rows: &Arc<Rows>) -> Session {
    let mut s = Session::new(
        QueueLimits {
            max_messages: 100_000,
            max_bytes: 0,
            qos0_offline: true,
            overflow: crate::config::Overflow::DropOldest,
            memory: Arc::new(MemoryBudget::new(budget)),
        },
        5,
    );
    s.keep(sink(rows));
    s
}

/// 100-byte payloads count 164 bytes each: a budget of 1 MiB takes 6,394 of them (the last
/// goes in while the count is still below it).
const FITS: u16 = 6_394;

#[test]
fn over_the_budget_messages_wait_on_disk_and_come_back_in_order() {
    let rows = Arc::new(Rows::default());
    let mut s = kept_session(1 << 20, &rows);
    for n in 0..FITS {
        assert_eq!(offer(&mut s, n, QoS::AtLeastOnce), Enqueued::Queued, "{n}");
    }
    assert!(s.limits.memory.is_spent());
    for n in FITS..FITS + 300 {
        assert_eq!(offer(&mut s, n, QoS::AtLeastOnce), Enqueued::Spilled, "{n}");
    }
    let used = s.limits.memory.used();
    // Numbers on disk are not yet committed: the queue stops at them.
    let got = send_all(&mut s, &rows);
    assert_eq!(got, (0..FITS).collect::<Vec<_>>());
    assert!(s.limits.memory.used() < used);
    // Room again, but the next message goes behind those on disk, to keep the order.
    assert_eq!(
        offer(&mut s, FITS + 300, QoS::AtLeastOnce),
        Enqueued::Spilled
    );
    // QoS 0 is never on disk: it queues in memory, behind them.
    assert_eq!(offer(&mut s, FITS + 301, QoS::AtMostOnce), Enqueued::Queued);
    assert_eq!(
        offer(&mut s, FITS + 302, QoS::AtLeastOnce),
        Enqueued::Spilled
    );
    assert!(matches!(
        s.refill(&NoRetained, Some(&*rows)),
        Refill::Wait(n) if n > 0
    ));
    rows.committed.store(u64::MAX, Relaxed);
    let got = send_all(&mut s, &rows);
    assert_eq!(got, (FITS..FITS + 303).collect::<Vec<_>>());
    assert_eq!(s.queued(), 0);
    assert!(
        rows.rows.lock().unwrap().is_empty(),
        "every one acknowledged"
    );
    // Back below the budget and with nothing on disk: in memory again.
    assert_eq!(offer(&mut s, 1, QoS::AtLeastOnce), Enqueued::Queued);
    let budget = s.limits.memory.clone();
    drop(s);
    assert_eq!(
        budget.used(),
        0,
        "a session gone gives back what it counted"
    );
}

#[test]
fn over_the_budget_a_session_not_kept_drops_and_says_why() {
    let mut s = Session::new(
        QueueLimits {
            max_messages: 100_000,
            max_bytes: 0,
            qos0_offline: true,
            overflow: crate::config::Overflow::DropNew,
            memory: Arc::new(MemoryBudget::new(1 << 20)),
        },
        5,
    );
    let outcomes: Vec<Enqueued> = (0..FITS + 2)
        .map(|n| offer(&mut s, n, QoS::AtLeastOnce))
        .collect();
    assert!(
        outcomes[..usize::from(FITS)]
            .iter()
            .all(|o| *o == Enqueued::Queued)
    );
    assert_eq!(outcomes[usize::from(FITS)..], [Enqueued::OverBudget; 2]);
}

#[test]
fn the_oldest_dropped_may_be_on_disk_and_its_row_goes() {
    let rows = Arc::new(Rows::default());
    let mut s = kept_session(1 << 20, &rows);
    s.limits = Arc::new(QueueLimits {
        max_messages: FITS as usize + 10,
        ..(*s.limits).clone()
    });
    for n in 0..FITS + 10 {
        let _ = offer(&mut s, n, QoS::AtLeastOnce);
    }
    // Full: each new one drops the oldest, from memory first.
    for n in FITS + 10..FITS + 20 {
        assert!(matches!(
            offer(&mut s, n, QoS::AtLeastOnce),
            Enqueued::Displaced { dropped: 1, .. }
        ));
    }
    rows.committed.store(u64::MAX, Relaxed);
    let got = send_all(&mut s, &rows);
    assert_eq!(got, (10..FITS + 20).collect::<Vec<_>>());
    assert!(rows.rows.lock().unwrap().is_empty());
    assert_eq!(s.queued(), 0);
}

/// Messages on disk are read a batch at a time, each batch once its own last message is
/// committed: a session fed faster than the writer commits still gets the older ones.
#[test]
fn each_batch_on_disk_is_read_once_its_own_messages_are_committed() {
    let rows = Arc::new(Rows::default());
    let mut s = kept_session(1 << 20, &rows);
    for n in 0..FITS + 200 {
        let _ = offer(&mut s, n, QoS::AtLeastOnce);
    }
    // The writer has committed the first 64 on disk only (each message is one change).
    rows.committed
        .store(u64::from(FITS) + 64, std::sync::atomic::Ordering::Relaxed);
    let got = send_all(&mut s, &rows);
    assert_eq!(got, (0..FITS + 64).collect::<Vec<_>>());
}
