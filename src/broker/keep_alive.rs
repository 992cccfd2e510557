//! Keep-alive deadlines of every connection in one coarse timer wheel, swept by one task.
//!
//! A tokio timer per connection cost each idle connection 128 bytes (a boxed `Sleep`); here a
//! connection costs one 24-byte entry and the 8-byte time of its last packet, which it stores
//! with one relaxed write per read. The sweeper looks at an entry about once per keep-alive
//! period: a connection that was heard from in time is put back at its new deadline, one that
//! was not is flagged in its slot and woken, and closes itself [MQTT-3.1.2-24 of 3.1.1,
//! MQTT-3.1.2-22 of 5.0]. A close comes at most one tick (250 ms) late, never early.

use super::{Broker, SessionSlot, lock};
use crate::clock::now_ms;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// The wheel's resolution.
const TICK: Duration = Duration::from_millis(250);
/// Buckets in the wheel (64 s at 250 ms): a deadline further out than that waits in its bucket
/// for another lap.
const BUCKETS: usize = 256;

/// One connection's keep alive.
struct Entry {
    slot: Arc<SessionSlot>,
    /// The connection (its link id): a later connection to the same session has its own.
    link: NonZeroU64,
    /// 1.5 times the keep alive, in milliseconds.
    grace_ms: u32,
}

/// The wheel and its sweeper.
#[derive(Default)]
pub(crate) struct KeepAlives {
    wheel: Mutex<Wheel>,
    /// Set once the sweeper task runs (it starts with the first connection that needs it).
    started: AtomicBool,
}

#[derive(Default)]
struct Wheel {
    buckets: Vec<Vec<Entry>>,
    /// The tick the sweeper handles next.
    next_tick: u64,
}

impl Wheel {
    fn insert(&mut self, entry: Entry, deadline_ms: u64) {
        if self.buckets.is_empty() {
            self.buckets.resize_with(BUCKETS, Vec::new);
        }
        // Rounded up, and never into the bucket being swept: a deadline is never met early.
        let tick = deadline_ms
            .div_ceil(TICK.as_millis() as u64)
            .max(self.next_tick);
        self.buckets[(tick % BUCKETS as u64) as usize].push(entry);
    }
}

impl Broker {
    /// Watches the keep alive of connection `link` on `slot`, heard from at `since_ms`: once it
    /// has [`lapsed`] (by [`SessionSlot::heard_from`]), the slot's `keep_alive_expired` is set
    /// and its connection woken.
    pub(super) fn watch_keep_alive(
        &self,
        slot: &Arc<SessionSlot>,
        link: NonZeroU64,
        grace_ms: u32,
        since_ms: u64,
    ) {
        let ka = &self.inner.keep_alives;
        if !ka.started.swap(true, Ordering::Relaxed) {
            tokio::spawn(sweep(Arc::downgrade(&self.inner)));
        }
        let now = since_ms;
        slot.heard_from(now);
        let entry = Entry {
            slot: slot.clone(),
            link,
            grace_ms,
        };
        lock(&ka.wheel).insert(entry, now + u64::from(grace_ms));
    }
}

/// Whether a connection last heard from at `last_heard_ms` has been silent for `grace_ms` by
/// `now_ms` (all on [`crate::clock::ms`]'s clock): the one rule, applied by the sweeper and by
/// the connection engine alike.
pub(crate) fn lapsed(last_heard_ms: u64, grace_ms: u32, now_ms: u64) -> bool {
    now_ms >= last_heard_ms.saturating_add(u64::from(grace_ms))
}

/// Sweeps the wheel every tick until the broker is gone or shuts down.
async fn sweep(inner: Weak<super::Inner>) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut due = Vec::new();
    let mut later = Vec::new();
    loop {
        interval.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        if inner.shutting_down.load(Ordering::Acquire) {
            return;
        }
        let now = now_ms();
        // Every tick up to now, each bucket once even if the sweeper fell behind.
        let upto = now / TICK.as_millis() as u64;
        {
            let mut wheel = lock(&inner.keep_alives.wheel);
            if wheel.buckets.is_empty() {
                continue;
            }
            let first = wheel.next_tick;
            for tick in first..=upto.min(first + BUCKETS as u64 - 1) {
                due.append(&mut wheel.buckets[(tick % BUCKETS as u64) as usize]);
            }
            wheel.next_tick = upto + 1;
        }
        for entry in due.drain(..) {
            let last_heard = entry.slot.last_heard();
            let mut st = lock(&entry.slot.state);
            if st.conn.as_ref().map(|c| c.id) != Some(entry.link) {
                continue; // that connection is gone
            }
            if !lapsed(last_heard, entry.grace_ms, now) {
                let deadline = last_heard + u64::from(entry.grace_ms);
                drop(st);
                later.push((entry, deadline));
                continue;
            }
            st.keep_alive_expired = true;
            let waker = st.take_waker();
            drop(st);
            if let Some(waker) = waker {
                waker.wake();
            }
        }
        if !later.is_empty() {
            let mut wheel = lock(&inner.keep_alives.wheel);
            for (entry, deadline) in later.drain(..) {
                wheel.insert(entry, deadline);
            }
        }
    }
}
