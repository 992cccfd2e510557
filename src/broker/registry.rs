//! The session registry: one [`SessionSlot`] per client id, attached to at most one connection.
//! A second connection with the same client id takes the session over; sessions end at
//! disconnect (clean), never (3.1.1 persistent), or when their v5 expiry timer fires.

use super::link::Link;
use super::{Broker, lock};
use crate::session::{Message, QueueLimits, Session};
use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::time::Duration;
use tokio::task::AbortHandle;

/// A session and the connection (if any) attached to it.
#[derive(Debug)]
pub(crate) struct SessionSlot {
    pub(crate) client_id: Arc<str>,
    /// Whose the session is, for its record in the store: set only for a session made to
    /// outlive its connection while `[persistence]` keeps them (see `broker/durable.rs`).
    /// Fixed for the slot's life (a session is resumed only by its owner, and its expiry never
    /// goes from 0 to more), and outside the state's lock: a fan-out locks a thousand states
    /// per message, and every byte of them is memory traffic.
    pub(super) who: Option<Arc<super::Owner>>,
    /// Held only for short, synchronous updates; never across an `.await`.
    pub(super) state: Mutex<SlotState>,
    /// The id of the attached connection (`state.conn`), 0 if none: written under the state's
    /// lock, readable without it. Shared subscription groups prefer connected members, and a
    /// connection notices before each packet that it was taken over.
    owner: AtomicU64,
    /// When the attached connection last read a packet, on [`crate::clock::now_ms`]'s clock: the
    /// keep-alive sweeper reads it.
    last_heard: AtomicU64,
}

impl SessionSlot {
    /// Notes that the attached connection received a packet at `now_ms`.
    pub(super) fn heard_from(&self, now_ms: u64) {
        self.last_heard.store(now_ms, Ordering::Relaxed);
    }

    /// When the attached connection last received a packet (see [`SessionSlot::heard_from`]).
    pub(super) fn last_heard(&self) -> u64 {
        self.last_heard.load(Ordering::Relaxed)
    }

    /// Whether a connection is attached right now.
    pub(super) fn is_online(&self) -> bool {
        self.owner.load(Ordering::Relaxed) != 0
    }

    /// Whether connection `conn_id` is the one attached. Without the lock this can be stale
    /// by the time it is used; under it (see [`SessionSlot::lock_for`]) it cannot.
    pub(super) fn is_attached_to(&self, conn_id: NonZeroU64) -> bool {
        self.owner.load(Ordering::Acquire) == conn_id.get()
    }

    /// The session's state, for connection `conn_id` to change: `TakenOver` once another
    /// connection has the session (or it has ended), so that nothing a connection does after
    /// it lost its session changes that session or any other [issue 14, section 6].
    pub(super) fn lock_for(
        &self,
        conn_id: NonZeroU64,
    ) -> Result<MutexGuard<'_, SlotState>, TakenOver> {
        let st = lock(&self.state);
        if st.conn.as_ref().map(|c| c.id) == Some(conn_id) {
            Ok(st)
        } else {
            Err(TakenOver)
        }
    }

    /// Attaches `link` (under the state's lock, which the caller holds as `st`).
    fn set_conn(&self, st: &mut SlotState, link: Option<ConnectionLink>) {
        self.owner
            .store(link.as_ref().map_or(0, |l| l.id.get()), Ordering::Release);
        st.conn = link;
        // A wait on the writer was the old connection's: its waker would keep that finished
        // task's memory alive.
        if let Some(later) = &mut st.later {
            later.disk_wait = None;
        }
        st.tidy_later();
    }
}

/// A connection's request refused because the connection no longer has its session: another
/// connection took it over, or Clean Start ended it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TakenOver;

/// The mutable part of a slot.
#[derive(Debug)]
pub(crate) struct SlotState {
    pub(super) session: Session,
    /// The connection currently attached, if any. Private: it changes only with `owner`.
    pub(super) conn: Option<ConnectionLink>,
    /// Seconds the session outlives its connection: 0 ends it at disconnect, `u32::MAX` never.
    pub(super) expiry: u32,
    /// Who the session belongs to (see [`Broker::attach`]): a keyed hash of the user name and
    /// the listener's rules it connected with. (32 bits fit beside `expiry` at no cost.)
    owner: u32,
    /// Every filter this session is subscribed to, to unsubscribe them when it ends.
    pub(super) filters: Filters,
    /// Bumped on every attach, so an expiry timer armed earlier knows it is stale.
    generation: u64,
    /// The attached connection's task, registered each time it drains the queue: a waker
    /// under the slot's lock (not a `Notify` beside it) costs an idle connection nothing
    /// beyond these 16 bytes, and no wake-up can slip between a drain and a new message.
    waker: Option<Waker>,
    /// Set by the keep-alive sweeper: the attached connection let its keep alive lapse.
    pub(super) keep_alive_expired: bool,
    /// The attached connection took a turn since the idle sweeper last looked.
    pub(super) active: bool,
    /// Messages taken out of the queue, wrapping: publishers held back by it tell a session
    /// that drains slowly from one that takes nothing (see `broker/pressure.rs`). In the
    /// padding beside the flags: free.
    pub(super) taken: u32,
    /// Where the attached connection is in being parked (see `broker/idle.rs`).
    pub(super) park: Park,
    /// A delayed will and the session's timers (see [`Later`]).
    later: Option<Box<Later>>,
}

/// What waits on a session until later: a will held for its Will Delay Interval (see
/// `broker/will.rs`) and the timers that publish it or end the session. Boxed together, as one
/// pointer: most sessions have none of it, and a fan-out locks a thousand sessions per message,
/// where every byte of their state is memory traffic. The timers are cancelled when they stop
/// mattering, so that a client reconnecting in a loop with a long Session Expiry or Will Delay
/// Interval does not leave a sleeping task (holding a discarded session) per connection for
/// years.
#[derive(Debug, Default)]
struct Later {
    will: Option<Message>,
    will_timer: Option<AbortHandle>,
    expiry_timer: Option<AbortHandle>,
    /// Publishers held back until the queue has room (see `broker/pressure.rs`).
    room: Vec<Waker>,
    /// The writer's change the attached connection waits for, to read messages held on disk
    /// back, and its waker: it asks the writer once, not on every turn.
    disk_wait: Option<(u64, Waker)>,
}

impl SlotState {
    /// Takes the will held for its delay, if any, and cancels its timer.
    pub(super) fn take_will(&mut self) -> Option<Message> {
        let later = self.later.as_mut()?;
        if let Some(t) = later.will_timer.take() {
            t.abort();
        }
        let will = later.will.take();
        self.tidy_later();
        will
    }

    /// Holds `will` until `timer` publishes it (replacing a will held before).
    pub(super) fn hold_will(&mut self, will: Message, timer: AbortHandle) {
        let later = self.later.get_or_insert_default();
        if let Some(t) = later.will_timer.replace(timer) {
            t.abort();
        }
        later.will = Some(will);
    }

    /// Arms the session's expiry `timer` (cancelling one armed before).
    pub(super) fn arm_expiry(&mut self, timer: AbortHandle) {
        if let Some(t) = self
            .later
            .get_or_insert_default()
            .expiry_timer
            .replace(timer)
        {
            t.abort();
        }
    }

    /// Cancels the session's expiry timer: it is back online, or ends anyway.
    pub(super) fn cancel_expiry(&mut self) {
        if let Some(t) = self.later.as_mut().and_then(|l| l.expiry_timer.take()) {
            t.abort();
        }
        self.tidy_later();
    }

    /// Frees the box once nothing waits in it.
    fn tidy_later(&mut self) {
        if self.later.as_ref().is_some_and(|l| {
            l.will.is_none()
                && l.will_timer.is_none()
                && l.expiry_timer.is_none()
                && l.room.is_empty()
                && l.disk_wait.is_none()
        }) {
            self.later = None;
        }
    }
}

impl SlotState {
    /// Registers a publisher's task to be woken when the queue has room again.
    pub(super) fn wait_for_room(&mut self, waker: &Waker) {
        let room = &mut self.later.get_or_insert_default().room;
        if !room.iter().any(|w| w.will_wake(waker)) {
            room.push(waker.clone());
        }
    }

    /// The publishers waiting for room, if the queue has some or no one drains it any more
    /// (`offline`): wake them after the lock is released.
    pub(super) fn take_room_waiters(&mut self, offline: bool) -> Vec<Waker> {
        let waiting = self.later.as_ref().is_some_and(|l| !l.room.is_empty());
        if !waiting || !(offline || self.session.has_room()) {
            return Vec::new();
        }
        let room = self
            .later
            .as_mut()
            .map(|l| std::mem::take(&mut l.room))
            .unwrap_or_default();
        self.tidy_later();
        room
    }

    /// Whether a connection is attached.
    pub(super) fn is_attached(&self) -> bool {
        self.conn.is_some()
    }

    /// Whether the writer must be asked to wake `waker` once change `n` is done: not if it
    /// was asked that already.
    pub(super) fn ask_disk_wake(&mut self, n: u64, waker: &Waker) -> bool {
        let wait = &mut self.later.get_or_insert_default().disk_wait;
        if matches!(wait, Some((m, w)) if *m == n && w.will_wake(waker)) {
            return false;
        }
        *wait = Some((n, waker.clone()));
        true
    }

    /// Registers the attached connection's task to be woken by [`SlotState::take_waker`].
    pub(super) fn register(&mut self, waker: &Waker) {
        match &self.waker {
            Some(w) if w.will_wake(waker) => {}
            _ => self.waker = Some(waker.clone()),
        }
    }

    /// The waker of the attached connection, if it is waiting: wake it after the lock is
    /// released. It registers again on its next drain.
    pub(super) fn take_waker(&mut self) -> Option<Waker> {
        self.waker.take()
    }

    /// Bumped on every attach: a timer armed earlier compares it to know it is stale.
    pub(super) fn generation(&self) -> u64 {
        self.generation
    }
}

/// Where a connection is in being parked: its task freed while it is idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Park {
    /// Its task runs (or waits).
    Running,
    /// The idle sweeper asked it to park; it will when it next finds nothing to do.
    Requested,
    /// Parked: no task; its waker resumes it.
    Parked,
}

/// The filters a session is subscribed to, to unsubscribe them when it ends, with what each
/// was granted (for the session's record in the store). Boxed: 8 bytes in every session
/// rather than an empty map's 48.
#[derive(Debug, Default)]
#[expect(
    clippy::box_collection,
    reason = "the box is the point: 8 bytes in every session, the set only in those with filters"
)]
pub(super) struct Filters(Option<Box<HashMap<Box<str>, Granted>>>);

/// What a session was granted for one filter: kept for its record in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Granted {
    /// The options, with the QoS granted.
    pub(crate) options: crate::protocol::SubscriptionOptions,
    /// The v5 Subscription Identifier.
    pub(crate) id: Option<u32>,
}

impl Filters {
    /// How many filters.
    pub(super) fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |map| map.len())
    }

    /// Whether `filter` is one of them.
    pub(super) fn contains(&self, filter: &str) -> bool {
        self.0.as_ref().is_some_and(|map| map.contains_key(filter))
    }

    /// Adds `filter` (again, replacing what was granted, if it is there already); returns
    /// what it replaced.
    pub(super) fn insert(&mut self, filter: &str, granted: Granted) -> Option<Granted> {
        self.0
            .get_or_insert_default()
            .insert(filter.into(), granted)
    }

    /// Removes `filter`; whether it was there.
    pub(super) fn remove(&mut self, filter: &str) -> bool {
        let Some(map) = &mut self.0 else {
            return false;
        };
        let had = map.remove(filter).is_some();
        if map.is_empty() {
            self.0 = None;
        }
        had
    }

    /// Every filter, leaving none.
    pub(super) fn take(&mut self) -> Vec<Box<str>> {
        self.0
            .take()
            .map(|map| map.into_keys().collect())
            .unwrap_or_default()
    }
}

/// The connection attached to a session. A connection that finds another id in its slot has
/// been taken over; the slot's waker tells it to look.
#[derive(Debug, Clone)]
pub(super) struct ConnectionLink {
    /// Never 0, so that an absent link costs no extra bytes in the slot.
    pub(super) id: NonZeroU64,
}

/// What a new connection gets from [`Broker::attach`].
pub(crate) struct Attached {
    /// The connection's way to its session.
    pub(crate) link: Link,
    /// CONNACK's Session Present flag.
    pub(crate) session_present: bool,
}

static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// The owner of a session: a hash, keyed at random per process, of the user name (none for an
/// anonymous client) and the identity of the listener's rules (`realm`). 32 bits: guessing a
/// colliding name takes billions of CONNECTs, and the key is unknown outside the process.
pub(crate) fn owner_of(user: Option<&str>, realm: u64) -> u32 {
    use std::hash::{BuildHasher, Hash, Hasher};
    static KEY: std::sync::LazyLock<std::collections::hash_map::RandomState> =
        std::sync::LazyLock::new(Default::default);
    let mut h = KEY.build_hasher();
    user.hash(&mut h);
    realm.hash(&mut h);
    h.finish() as u32
}

impl Broker {
    fn queue_limits(&self) -> Arc<QueueLimits> {
        self.inner.queue_limits.clone()
    }

    /// Attaches a new connection to the session of `client_id`, taking it over from any
    /// connection that holds it (woken through the slot's `wake`), or creating it.
    /// `clean_start` discards an existing session first [MQTT-3.1.2-4], and so does a
    /// different `owner` (see [`owner_of`]): a session, its subscriptions and its queued
    /// messages are never handed to another user, or to the same name on a listener with other
    /// rules, whose ACL decided none of them.
    pub(crate) fn attach(
        &self,
        client_id: Arc<str>,
        clean_start: bool,
        window: u16,
        expiry: u32,
        who: super::Owner,
    ) -> Attached {
        let owner = who.hash();
        let who = (self.store().is_some() && expiry != 0).then(|| Arc::new(who));
        let link = ConnectionLink {
            // Starts at 1 and would take 584 years to wrap at a billion connections a second.
            id: NonZeroU64::new(NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed))
                .unwrap_or(NonZeroU64::MIN),
        };
        self.start_idle_sweeper();
        let mut sessions = lock(&self.inner.sessions);
        if let Some(slot) = sessions.get(&client_id).cloned() {
            let mut st = lock(&slot.state);
            if st.conn.is_some() {
                slot.set_conn(&mut st, None);
                // The old connection checks its link on every turn of its loop.
                if let Some(waker) = st.take_waker() {
                    waker.wake();
                }
            }
            // A session that ends with its connection (3.1.1 CleanSession = 1, 5.0 Session
            // Expiry 0) is never resumed, even while that connection is still open: its state
            // "MUST NOT be reused in any subsequent Session" [MQTT-3.1.2-6 of 3.1.1].
            // Whatever follows, the session no longer waits to expire.
            st.cancel_expiry();
            if !clean_start && st.expiry != 0 && st.owner == owner {
                slot.set_conn(&mut st, Some(link.clone()));
                st.keep_alive_expired = false;
                st.park = Park::Running;
                // [MQTT-3.1.3-9] back within the Will Delay Interval: no will.
                if st.take_will().is_some() {
                    self.persist_will(&slot, &st, None);
                }
                st.generation += 1;
                st.expiry = expiry;
                st.session.set_window(window);
                self.persist_session(&slot, &mut st);
                drop(st);
                return Attached {
                    link: Link::new(self.clone(), slot, link.id),
                    session_present: true,
                };
            }
            self.forget_session(&slot, &mut st);
            let filters = st.filters.take();
            // Clean Start ends the old session, so a will it was holding goes out now.
            let will = st.take_will();
            drop(st);
            sessions.remove(&client_id);
            self.unsubscribe_all(&slot, &filters);
            if let Some(will) = will {
                // Routing takes the trie and session locks, never the registry's.
                self.publish_will(will);
            }
        }
        let slot = Arc::new(SessionSlot {
            client_id: client_id.clone(),
            state: Mutex::new(SlotState {
                session: Session::new(self.queue_limits(), window),
                conn: Some(link.clone()),
                expiry,
                owner,
                filters: Filters::default(),
                generation: 0,
                waker: None,
                keep_alive_expired: false,
                active: true,
                taken: 0,
                park: Park::Running,
                later: None,
            }),
            who,
            owner: AtomicU64::new(link.id.get()),
            last_heard: AtomicU64::new(0),
        });
        self.persist_session(&slot, &mut lock(&slot.state));
        sessions.insert(client_id, slot.clone());
        Attached {
            link: Link::new(self.clone(), slot, link.id),
            session_present: false,
        }
    }

    /// Detaches connection `conn_id` from its session when it closes; a no-op if another
    /// connection took the session over meanwhile. Starts the session's expiry.
    pub(super) fn detach(&self, slot: &Arc<SessionSlot>, conn_id: NonZeroU64) {
        // Shared deliveries taken from this session and given to another member reach the
        // disk in one commit: never gone from both.
        let _group = self.store().map(|w| w.group());
        let mut st = lock(&slot.state);
        if st.conn.as_ref().map(|c| c.id) != Some(conn_id) {
            return;
        }
        slot.set_conn(&mut st, None);
        // The waker keeps the finished task's memory alive: not for a session's whole life.
        st.waker = None;
        // No one drains the queue now: its publishers go on (it drops when full, offline).
        let room = st.take_room_waiters(true);
        let (expiry, generation) = (st.expiry, st.generation);
        // Offline from now: its record says since when, so its expiry counts across restarts.
        self.persist_session(slot, &mut st);
        // What came through shared subscriptions and is not finished goes to another member
        // now rather than wait for this one to come back [MQTT-4.8.2 of 5.0 allows it; the
        // issue asks that none be lost].
        let handed_back = st.session.take_shared();
        drop(st);
        room.into_iter().for_each(Waker::wake);
        if !handed_back.is_empty() {
            self.hand_back(slot, handed_back, expiry != 0);
        }
        match expiry {
            0 => self.discard(slot, None),
            u32::MAX => {}
            secs => {
                let mut st = lock(&slot.state);
                if st.conn.is_some() || st.generation != generation {
                    return; // a connection came back meanwhile
                }
                self.expire_after(slot, &mut st, secs);
            }
        }
    }

    /// Arms `slot`'s expiry: the session ends `secs` from now unless a connection attaches
    /// first (under the slot's lock, held by the caller as `st`).
    pub(super) fn expire_after(&self, slot: &Arc<SessionSlot>, st: &mut SlotState, secs: u32) {
        let generation = st.generation;
        let broker = self.clone();
        let slot2 = slot.clone();
        let timer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(u64::from(secs))).await;
            broker.discard(&slot2, Some(generation));
        });
        st.arm_expiry(timer.abort_handle());
    }

    /// Puts a session read back from the store in place, offline: its registry entry and its
    /// state (subscriptions go into the trie separately). Start-up only.
    pub(super) fn restore_slot(
        &self,
        client_id: Arc<str>,
        expiry: u32,
        who: super::Owner,
        filters: Filters,
    ) -> Arc<SessionSlot> {
        let owner = who.hash();
        let slot = Arc::new(SessionSlot {
            client_id: client_id.clone(),
            state: Mutex::new(SlotState {
                session: Session::new(self.queue_limits(), 0),
                conn: None,
                expiry,
                owner,
                filters,
                generation: 0,
                waker: None,
                keep_alive_expired: false,
                active: false,
                taken: 0,
                park: Park::Running,
                later: None,
            }),
            who: Some(Arc::new(who)),
            owner: AtomicU64::new(0),
            last_heard: AtomicU64::new(0),
        });
        lock(&self.inner.sessions).insert(client_id, slot.clone());
        slot
    }

    /// Ends a session whose connection is gone: its subscriptions go, its delayed will goes
    /// out, and its registry entry goes if it is still this slot. `generation` is that of the
    /// attach whose end armed the expiry timer calling this (`None` from the detach itself).
    /// Checked under the registry's and the session's locks, held until the subscriptions are
    /// gone as `attach` holds them: a connection that resumed the session meanwhile keeps it
    /// (aborting a timer does not stop one already past its sleep), and one that made a new
    /// session for the client id cannot see it half removed.
    fn discard(&self, slot: &Arc<SessionSlot>, generation: Option<u64>) {
        let mut sessions = lock(&self.inner.sessions);
        let mut st = lock(&slot.state);
        if st.conn.is_some() || generation.is_some_and(|g| g != st.generation) {
            return;
        }
        if sessions
            .get(&slot.client_id)
            .is_some_and(|s| Arc::ptr_eq(s, slot))
        {
            sessions.remove(&slot.client_id);
            // Only while it is still the client id's session: a slot replaced meanwhile (its
            // store record deleted by the `attach` that replaced it) must not delete the new
            // session's record.
            self.forget_session(slot, &mut st);
        }
        let filters = st.filters.take();
        st.cancel_expiry();
        let will = st.take_will();
        drop(st);
        self.unsubscribe_all(slot, &filters);
        drop(sessions);
        if let Some(will) = will {
            self.publish_will(will);
        }
    }

    /// Messages queued and QoS 1/2 messages in flight for `client_id`'s session, if it has one
    /// (for operators and tests: the queue is bounded by `sessions.max_queued_messages`).
    pub fn queue_depth(&self, client_id: &str) -> Option<(usize, usize)> {
        let slot = lock(&self.inner.sessions).get(client_id).cloned()?;
        let st = lock(&slot.state);
        Some((st.session.queued(), st.session.inflight()))
    }

    /// Whether `client_id` has a session (connected or not).
    pub fn has_session(&self, client_id: &str) -> bool {
        lock(&self.inner.sessions).contains_key(client_id)
    }
}
