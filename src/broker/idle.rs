//! The idle sweeper: once per `limits.idle_park_secs` it asks every connection that took no
//! turn since its last look (nothing read, nothing drained) to park, by flagging its slot and
//! waking it. A connection that still has nothing to do then frees its task and its reactor
//! registration (see `connection/park.rs`). Asking costs a busy connection nothing (it took a
//! turn, so it is not asked) and an idle one one wake-up per period.

use super::registry::Park;
use super::{Broker, Inner, lock};
use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::Duration;

impl Broker {
    /// Starts the idle sweeper if the configuration wants one and a tokio runtime is running
    /// (a broker driven without one, as in benchmarks, never parks).
    pub(super) fn start_idle_sweeper(&self) {
        let secs = self.config().limits.idle_park_secs;
        if secs == 0 || self.inner.idle_sweeper.swap(true, Ordering::Relaxed) {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let every = Duration::from_secs(secs);
            runtime.spawn(sweep(std::sync::Arc::downgrade(&self.inner), every));
        }
    }
}

/// Sweeps every `every` until the broker is gone or shuts down.
async fn sweep(inner: Weak<Inner>, every: Duration) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate: every connection has just been active.
    interval.tick().await;
    let mut slots = Vec::new();
    loop {
        interval.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        if inner.shutting_down.load(Ordering::Acquire) {
            return;
        }
        slots.extend(
            lock(&inner.sessions)
                .values()
                .filter(|s| s.is_online())
                .cloned(),
        );
        drop(inner);
        for slot in slots.drain(..) {
            let waker = {
                let mut st = lock(&slot.state);
                if st.conn.is_none() || st.park == Park::Parked || std::mem::take(&mut st.active) {
                    continue;
                }
                st.park = Park::Requested;
                st.take_waker()
            };
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }
}
