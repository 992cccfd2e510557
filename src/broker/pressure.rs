//! Backpressure (`sessions.overflow = "backpressure"`): a connected subscriber whose QoS 1/2
//! queue is full still takes a publisher's message, and the publisher's connection stops
//! reading until that subscriber has room again. Nothing the publisher was told is accepted is
//! dropped; the cost is that one slow subscriber slows every publisher it shares a topic with.
//!
//! The router notes each session a run pressed (a thread-local list, so the hot path passes
//! nothing through); the publishing connection takes the list as a [`Pressure`] and polls it
//! before each read, waiting in the pressed sessions' lists of waiters, which a session wakes as
//! its connection drains it below three quarters of its limits (see `Link::take_outgoing`) or
//! when it goes offline. Each publisher stops after the run that found the queue full (and the
//! one it was reading then), so the queue exceeds its limits by at most two runs per publisher.
//!
//! The wait is bounded (`sessions.backpressure_max_wait_ms` without progress, 8 of them in
//! all): a subscriber that takes nothing at all must not stop a topic for good, and two clients that each publish to the other would
//! otherwise stop reading the acknowledgements that drain their own queues and wait for each
//! other for ever. A session still full at the bound is stalled: it drops new messages, as with
//! `"drop_new"` (counted and logged), until it has room again. A client's own queue never holds
//! it back (full, it drops).

use super::registry::SessionSlot;
use super::{Broker, Metrics, lock};
use std::cell::RefCell;
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

thread_local! {
    /// The sessions the runs routed on this thread since the last take pressed.
    static PRESSED: RefCell<Vec<Arc<SessionSlot>>> = const { RefCell::new(Vec::new()) };
}

/// Notes that a run pressed `slot` (duplicates are removed when the list is taken: a run
/// pressing ten thousand full subscribers must not compare each with all the others).
pub(super) fn note(slot: &Arc<SessionSlot>) {
    PRESSED.with(|p| p.borrow_mut().push(slot.clone()));
}

/// Whether routing on this thread pressed anyone since the last take.
pub(crate) fn pressed_any() -> bool {
    PRESSED.with(|p| !p.borrow().is_empty())
}

/// The full sessions a publisher waits for, until `until` at the latest.
#[derive(Debug)]
pub(crate) struct Pressure {
    /// By address, each once.
    slots: Vec<Watched>,
    until: Instant,
    /// The bound on a wait without progress: `sessions.backpressure_max_wait_ms`, or half the
    /// publisher's keep-alive grace if that is shorter (a paused client is not read, so it
    /// must be marked heard from while it waits, see `Engine::expire_pressure`).
    max_wait: Duration,
    /// When the wait began: after [`MAX_BOUNDS`] bounds the sessions still full are stalled
    /// even if they drained meanwhile (other traffic may keep a queue full for ever).
    began: Instant,
}

/// How many bounds a publisher waits at most, progress or not.
const MAX_BOUNDS: u32 = 8;

/// A full session, and how many messages it had taken out when last looked at.
#[derive(Debug)]
struct Watched {
    slot: Arc<SessionSlot>,
    taken: u32,
}

impl Broker {
    /// Merges what the runs this thread routed since the last call pressed into `pending`,
    /// the wait of the connection that read them (a new one from `now` if it had none).
    /// `grace_ms`: the connection's keep-alive grace (0: none).
    pub(crate) fn take_pressure(
        &self,
        now: Instant,
        grace_ms: u32,
        pending: &mut Option<Box<Pressure>>,
    ) {
        let mut slots = PRESSED.with(|p| std::mem::take(&mut *p.borrow_mut()));
        if slots.is_empty() {
            // Give the (empty) vector's capacity back for the next run.
            PRESSED.with(|p| *p.borrow_mut() = slots);
            return;
        }
        slots.sort_unstable_by_key(Arc::as_ptr);
        slots.dedup_by(|a, b| Arc::ptr_eq(a, b));
        let pressure = pending.get_or_insert_with(|| {
            Metrics::inc(&self.metrics().publishers_paused);
            let mut max_wait =
                Duration::from_millis(self.config().sessions.backpressure_max_wait_ms);
            if grace_ms > 0 {
                max_wait = max_wait.min(Duration::from_millis(u64::from(grace_ms / 2).max(1)));
            }
            Box::new(Pressure {
                slots: Vec::new(),
                until: now + max_wait,
                max_wait,
                began: now,
            })
        });
        let before = pressure.slots.len();
        for slot in slots {
            let known = pressure.slots[..before]
                .binary_search_by_key(&Arc::as_ptr(&slot), |w| Arc::as_ptr(&w.slot))
                .is_ok();
            if !known {
                let taken = lock(&slot.state).taken;
                pressure.slots.push(Watched { slot, taken });
            }
        }
        pressure
            .slots
            .sort_unstable_by_key(|w| Arc::as_ptr(&w.slot));
    }
}

impl Pressure {
    /// When to call [`Pressure::expire`] if no session has woken the publisher by then.
    pub(crate) fn until(&self) -> Instant {
        self.until
    }

    /// Whether the publisher must still wait: some session it pressed is connected and full.
    /// `waker` is then registered with each such session, which wakes it once it is below
    /// three quarters of its limits. (All its publishers at once: the first to run may fill it
    /// again before the last looks, and that one waits on.)
    pub(crate) fn poll(&mut self, waker: &Waker) -> bool {
        self.slots.retain(|w| {
            let mut st = lock(&w.slot.state);
            if !st.is_attached() || !st.session.is_full() {
                return false;
            }
            st.wait_for_room(waker);
            true
        });
        !self.slots.is_empty()
    }

    /// The bound has passed at `now`: a session that took nothing out of its queue since it
    /// was last looked at is stalled (it drops until it has room again, see `Session::stall`)
    /// and waited for no longer; one that did is given another bound, as a slow subscriber
    /// is not a dead one, unless the publisher has waited [`MAX_BOUNDS`] bounds already: the
    /// session is stalled too (too slow to get room in that time, or kept full by other
    /// traffic: letting the publisher go without would add a run beyond its limits every
    /// [`MAX_BOUNDS`] bounds, without end). Whether the publisher must still wait.
    pub(crate) fn expire(&mut self, now: Instant) -> bool {
        let long = now.saturating_duration_since(self.began) >= self.max_wait * MAX_BOUNDS;
        self.slots.retain_mut(|w| {
            let mut st = lock(&w.slot.state);
            if !st.is_attached() || !st.session.is_full() {
                return false;
            }
            if st.taken == w.taken || long {
                st.session.stall();
                return false;
            }
            w.taken = st.taken;
            true
        });
        self.until = now + self.max_wait;
        !self.slots.is_empty()
    }
}
