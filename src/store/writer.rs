//! The writer: one thread that takes the broker's changes from a channel and commits them in
//! batches, everything that has arrived since the last commit in the next one (group commit),
//! so that a burst costs one fsync. Nothing on the message path waits for it: sending a
//! change is a channel push.

use super::batch::Batch;
use super::{Change, Row, Store};
use crate::config::SyncMode;
use crate::session::{Delivery, Message};
use rustc_hash::FxHashMap as HashMap;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(test)]
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Weak};
use std::task::Waker;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Writer threads awake (committing, or about to): see [`writers_busy`].
static BUSY: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Whether a writer thread is awake. A runtime worker about to sleep spins first while
/// events come often (`runtime.rs`); not while a writer is awake: the worker is then mostly
/// waiting for that writer's commit, and on a core the two share its spin only delays it
/// (durable QoS 1 fan-in on one core: 575k messages/s spinning, 648k not).
pub(crate) fn writers_busy() -> bool {
    BUSY.load(Ordering::Relaxed) > 0
}

thread_local! {
    /// The number of the last change this thread sent (see [`Writer::last_sent_here`]).
    static LAST_SENT: Cell<u64> = const { Cell::new(0) };
    /// Whether this thread is in a group (see [`Writer::group`]): 0 no, 1 yes with nothing
    /// sent yet, 2 yes and its start was sent.
    static GROUP: Cell<u8> = const { Cell::new(0) };
}

/// What the broker sends the writer.
enum Op {
    /// A change as it is.
    Change(Change),
    /// The changes up to the matching `End` go into one commit (see [`Writer::group`]).
    Begin,
    /// The end of a group.
    End,
    /// A delivery of a persistent session: its row, and its message if the store does not
    /// hold it yet. The writer thread encodes both, off the message path.
    Deliver {
        key: Box<str>,
        delivery: Delivery,
        packet_id: u16,
    },
}

/// Longest a new group waits for the open ones to end (see [`Writer::group`]): a group held
/// longer than this (a thread descheduled for that long) lets new ones begin again rather than
/// stall every connection.
const MAX_GROUP_WAIT: Duration = Duration::from_secs(1);

/// The handle the broker sends changes through.
pub(crate) struct Writer {
    /// What the broker has sent and the thread not yet taken.
    tx: Arc<Inbox>,
    /// The number of the last change on disk (`sync = "always"`), or committed (otherwise),
    /// and the connections waiting for a change to get there.
    done: Arc<Done>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The store, for reading queues held on disk back (reads run beside the thread's
    /// commits: redb gives each the last committed state). Let go at `close`: the file stays
    /// locked while any handle on it lives.
    store: std::sync::RwLock<Option<Arc<dyn Store>>>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer")
    }
}

/// The ops on their way to the thread: a vector it takes whole, under the lock every sender
/// takes anyway, and a condition variable signalled only while the thread sleeps. A channel
/// woke the thread (a futex call and a context switch on the broker's core) for each burst; the
/// thread now finds everything that came during its last commit in one swap.
#[derive(Default)]
struct Inbox {
    queue: Mutex<Queue>,
    ready: std::sync::Condvar,
    /// The thread waits for the groups open to end before it commits: a new group waits
    /// for that (see [`Writer::group`]). Without it, two threads whose groups always overlap
    /// would leave the writer waiting for a moment with none open, and commits (and the
    /// acknowledgements waiting on them) would stop for as long as the load lasts.
    draining: AtomicBool,
}

#[derive(Default)]
struct Queue {
    ops: Vec<Op>,
    /// The number of the last change sent (changes are numbered from 1, in order).
    sent: u64,
    /// The thread is asleep on `ready`.
    sleeping: bool,
    /// `close` was called: nothing more is taken.
    closed: bool,
}

impl Inbox {
    /// Adds `op` (a numbered change unless it is a group's mark); wakes the thread if it sleeps.
    fn push(&self, op: Op, numbered: bool) {
        let mut q = crate::broker::lock(&self.queue);
        if q.closed {
            return;
        }
        if numbered && GROUP.get() == 1 {
            GROUP.set(2);
            q.ops.push(Op::Begin);
        }
        q.ops.push(op);
        if numbered {
            q.sent += 1;
            let n = q.sent;
            LAST_SENT.with(|l| l.set(n));
        }
        let wake = std::mem::take(&mut q.sleeping);
        drop(q);
        if wake {
            self.ready.notify_one();
        }
    }

    /// Moves what was sent into `into`, waiting up to `wait` for something if nothing is
    /// there (`None`: until something comes). Returns false once closed and empty.
    fn take(&self, into: &mut Vec<Op>, wait: Option<Duration>) -> bool {
        let mut q = crate::broker::lock(&self.queue);
        if q.ops.is_empty() && !q.closed {
            q.sleeping = true;
            BUSY.fetch_sub(1, Ordering::Relaxed);
            q = match wait {
                Some(wait) => {
                    self.ready
                        .wait_timeout(q, wait)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => self.ready.wait(q).unwrap_or_else(|e| e.into_inner()),
            };
            q.sleeping = false;
            BUSY.fetch_add(1, Ordering::Relaxed);
        }
        std::mem::swap(into, &mut q.ops);
        !(q.closed && into.is_empty())
    }
}

/// How far the writer has come, and who waits for it.
#[derive(Default)]
struct Done {
    upto: AtomicU64,
    /// Commits fail (a full disk): new QoS 1/2 work is refused meanwhile.
    failing: AtomicBool,
    /// Change number and waker of each connection waiting; `None` once the thread has ended
    /// (nothing more will be done).
    waiting: Mutex<Option<Vec<(u64, Waker)>>>,
}

impl Done {
    /// Notes that change `n` is done and wakes whoever waited for it or an earlier one.
    fn reach(&self, n: u64) {
        self.upto.store(n, Ordering::Release);
        let mut woken = Vec::new();
        if let Some(waiting) = crate::broker::lock(&self.waiting).as_mut() {
            waiting.retain(|(until, waker)| {
                let ready = *until <= n;
                if ready {
                    woken.push(waker.clone());
                }
                !ready
            });
        }
        woken.into_iter().for_each(Waker::wake);
    }
}

/// Messages the store holds, by the address of their one copy in memory: a message that
/// reaches many persistent sessions is written once and each row points at it.
struct Known {
    /// Message address -> its id, and a weak reference that keeps the address from being
    /// reused while it is here.
    by_address: HashMap<usize, (u64, Weak<Message>)>,
    /// Message id -> address, to forget a message the store deleted.
    by_id: HashMap<u64, usize>,
    next_id: u64,
    /// Size of `by_address` after its last sweep of messages gone from memory.
    swept_at: usize,
}

impl Known {
    /// The id of `message`, and whether the store needs its record (first seen).
    fn id(&mut self, message: &Arc<Message>) -> (u64, bool) {
        let address = Arc::as_ptr(message) as usize;
        if let Some((id, _)) = self.by_address.get(&address) {
            return (*id, false);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.by_address
            .insert(address, (id, Arc::downgrade(message)));
        self.by_id.insert(id, address);
        (id, true)
    }

    /// Forgets messages the store deleted, and (now and then) those no session holds in memory
    /// any more: no delivery can name them again.
    fn forget(&mut self, freed: &[u64]) {
        for id in freed {
            if let Some(address) = self.by_id.remove(id) {
                self.by_address.remove(&address);
            }
        }
        if self.by_address.len() > 2 * self.swept_at.max(1024) {
            let by_id = &mut self.by_id;
            self.by_address.retain(|_, (id, weak)| {
                let live = weak.strong_count() > 0;
                if !live {
                    by_id.remove(id);
                }
                live
            });
            self.swept_at = self.by_address.len();
        }
    }
}

impl Writer {
    /// Starts the writer thread over `store`; an error if no thread can be made (the broker
    /// must not run as if it kept what it does not). `known` are the messages the store holds
    /// (as restored), `next_id` above every id the store holds.
    pub(crate) fn start(
        store: Arc<dyn Store>,
        sync: SyncMode,
        interval: Duration,
        known: Vec<(u64, Arc<Message>)>,
        next_id: u64,
    ) -> Result<Self, super::StoreError> {
        let tx = Arc::new(Inbox::default());
        let rx = tx.clone();
        let mut messages = Known {
            by_address: HashMap::with_capacity_and_hasher(known.len(), Default::default()),
            by_id: HashMap::with_capacity_and_hasher(known.len(), Default::default()),
            next_id: next_id.max(1),
            swept_at: known.len(),
        };
        for (id, m) in &known {
            let address = Arc::as_ptr(m) as usize;
            messages
                .by_address
                .insert(address, (*id, Arc::downgrade(m)));
            messages.by_id.insert(*id, address);
        }
        let done = Arc::new(Done {
            upto: AtomicU64::new(0),
            failing: AtomicBool::new(false),
            waiting: Mutex::new(Some(Vec::new())),
        });
        let done2 = done.clone();
        let reader = store.clone();
        let thread = std::thread::Builder::new()
            .name("roost-store".into())
            .spawn(move || {
                BUSY.fetch_add(1, Ordering::Relaxed);
                run(&*store, &rx, sync, interval, messages, &done2);
                BUSY.fetch_sub(1, Ordering::Relaxed);
                // Whoever waits now waits for nothing: wake them to see it.
                let waiting = crate::broker::lock(&done2.waiting).take();
                waiting.into_iter().flatten().for_each(|(_, w)| w.wake());
            })
            .map_err(|e| super::StoreError::Io(format!("cannot start the writer thread: {e}")))?;
        Ok(Self {
            tx,
            done,
            thread: Mutex::new(Some(thread)),
            store: std::sync::RwLock::new(Some(reader)),
        })
    }

    fn push(&self, op: Op) {
        self.tx.push(op, true);
    }

    /// Starts a group on this thread: the changes sent from it until the guard is dropped go
    /// into one commit, all or none. A connection handles each read of packets in a group, so
    /// that a crash never keeps part of what one packet changed: a QoS 2 message's id without
    /// its copies for every subscriber, or some subscribers' copies without the others'.
    /// A group begun inside another is part of it (its guard does nothing).
    /// While the writer waits for the groups open to end (it commits only between groups),
    /// a new one waits for that first: a group is the handling of one read, so that is short.
    pub(crate) fn group(self: &Arc<Self>) -> Group {
        if GROUP.get() != 0 {
            return Group(None);
        }
        let began = Instant::now();
        while self.tx.draining.load(Ordering::Acquire) && began.elapsed() < MAX_GROUP_WAIT {
            std::thread::yield_now();
        }
        GROUP.set(1);
        Group(Some(self.clone()))
    }

    /// Queues a change for the next commit.
    pub(crate) fn send(&self, change: Change) {
        self.push(Op::Change(change));
    }

    /// Queues a delivery of a persistent session (its row at `key`) for the next commit.
    pub(crate) fn deliver(&self, key: Box<str>, delivery: Delivery, packet_id: u16) {
        self.push(Op::Deliver {
            key,
            delivery,
            packet_id,
        });
    }

    /// The number of the last change sent from this thread (0: none yet). A connection reads
    /// it before and after routing a message to learn whether routing wrote anything.
    pub(crate) fn last_sent_here() -> u64 {
        LAST_SENT.with(Cell::get)
    }

    /// Whether commits are failing (a full disk): what is sent now waits in memory.
    pub(crate) fn is_failing(&self) -> bool {
        self.done.failing.load(Ordering::Relaxed)
    }

    /// The number of the last change sent, from any thread.
    pub(crate) fn last_sent(&self) -> u64 {
        crate::broker::lock(&self.tx.queue).sent
    }

    /// Whether change `n` has been made durable (with `sync = "always"`; committed with
    /// the other modes).
    pub(crate) fn is_done(&self, n: u64) -> bool {
        self.done.upto.load(Ordering::Acquire) >= n
    }

    /// Wakes `waker` once change `n` is done. False if the writer has stopped (it never will
    /// be: the caller stops waiting).
    pub(crate) fn wake_when_done(&self, n: u64, waker: &Waker) -> bool {
        {
            let mut waiting = crate::broker::lock(&self.done.waiting);
            let Some(waiting) = waiting.as_mut() else {
                return false;
            };
            waiting.push((n, waker.clone()));
        }
        // Done meanwhile, before the writer could see the waker: wake now.
        if self.is_done(n) {
            waker.wake_by_ref();
        }
        true
    }

    /// Reads the rows of a queue held on disk back (see [`Store::read_queue`]).
    pub(crate) fn read_queue(
        &self,
        client_id: &str,
        from: u32,
        count: u32,
    ) -> Result<super::QueueRows, super::StoreError> {
        let store = self.store.read().unwrap_or_else(|e| e.into_inner());
        match &*store {
            Some(store) => store.read_queue(client_id, from, count),
            None => Err(super::StoreError::Io("the store is closed".into())),
        }
    }

    /// Reads a retained message's record back (see [`Store::read_retained`]).
    pub(crate) fn read_retained(&self, topic: &str) -> Result<Option<Vec<u8>>, super::StoreError> {
        let store = self.store.read().unwrap_or_else(|e| e.into_inner());
        match &*store {
            Some(store) => store.read_retained(topic),
            None => Err(super::StoreError::Io("the store is closed".into())),
        }
    }

    /// Commits what is queued, durably, and stops the thread; later changes are not kept.
    pub(crate) fn close(&self) {
        crate::broker::lock(&self.tx.queue).closed = true;
        self.tx.ready.notify_one();
        if let Some(thread) = crate::broker::lock(&self.thread).take() {
            let _ = thread.join();
        }
        self.store.write().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// Ends its thread's group when dropped (see [`Writer::group`]).
pub(crate) struct Group(Option<Arc<Writer>>);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(writer) = &self.0
            && GROUP.replace(0) == 2
        {
            writer.tx.push(Op::End, false);
        }
    }
}

/// Turns an op into the changes the store applies; `open` counts the groups begun and not
/// ended. Returns whether the op was a numbered change (groups' marks are not).
fn translate(op: Op, known: &mut Known, out: &mut Batch, open: &mut usize) -> bool {
    match op {
        Op::Begin => {
            *open += 1;
            return false;
        }
        Op::End => {
            *open = open.saturating_sub(1);
            return false;
        }
        Op::Change(change) => out.push(change),
        Op::Deliver {
            key,
            delivery,
            packet_id,
        } => {
            let (id, new) = known.id(&delivery.message);
            if new {
                out.message(id, delivery.message.clone());
            }
            out.row(key, Row::of(&delivery, id, packet_id).encode(), id);
        }
    }
    true
}

/// The thread: batches until the channel closes, then a last durable commit.
fn run(
    store: &dyn Store,
    rx: &Inbox,
    sync: SyncMode,
    interval: Duration,
    mut known: Known,
    done: &Done,
) {
    let mut batch = Batch::default();
    let mut ops = Vec::new();
    // Changes of a commit that failed, tried again with the next.
    let mut carried: Vec<Change> = Vec::new();
    // Changes committed since the last durable commit ("periodic"): reopening the store after
    // a failure loses them, so they are written again.
    let mut since_durable: Vec<Change> = Vec::new();
    // Ops received, in all: the number of the last one in a commit.
    let mut received = 0u64;
    // Since when committed changes have waited to be made durable (periodic only).
    let mut dirty_since: Option<Instant> = None;
    let mut failing = false;
    // Groups begun and not ended: a commit never ends inside one.
    let mut open = 0;
    loop {
        let wait = match dirty_since {
            // A failed commit is tried again soon, whether or not more changes come.
            _ if !carried.is_empty() => Duration::from_millis(100),
            Some(since) => interval.saturating_sub(since.elapsed()),
            None => Duration::from_secs(3600),
        };
        let mut closed = !rx.take(&mut ops, Some(wait));
        loop {
            for op in ops.drain(..) {
                if translate(op, &mut known, &mut batch, &mut open) {
                    received += 1;
                }
            }
            // A group still open: its end is on its way (its sender never waits for this
            // thread), so wait for it, and hold new groups back meanwhile.
            if open == 0 || closed {
                rx.draining.store(false, Ordering::Release);
                break;
            }
            rx.draining.store(true, Ordering::Release);
            closed = !rx.take(&mut ops, None);
        }
        let due = dirty_since.is_some_and(|since| since.elapsed() >= interval);
        let durable = closed || sync == SyncMode::Always || due;
        let (mut changes, unwritten) = batch.take();
        known.forget(&unwritten);
        if !carried.is_empty() {
            carried.append(&mut changes);
            changes = std::mem::take(&mut carried);
        }
        if changes.is_empty() && !(durable && dirty_since.is_some()) {
            done.reach(received);
            if closed {
                return;
            }
            continue;
        }
        let result = store.commit(&changes, durable);
        match result {
            Ok(freed) => {
                if failing {
                    tracing::info!("persistence: commits succeed again");
                    failing = false;
                    done.failing.store(false, Ordering::Relaxed);
                }
                if durable {
                    since_durable.clear();
                } else {
                    since_durable.append(&mut changes);
                }
                known.forget(&freed);
                done.reach(received);
                dirty_since = match (durable, dirty_since) {
                    (true, _) => None,
                    (false, None) => Some(Instant::now()),
                    (false, since) => since,
                };
            }
            Err(e) => {
                // Kept and tried again with the next batch: a full disk may free up.
                if !failing {
                    tracing::error!(
                        "persistence: a commit failed ({e}); QoS 1/2 messages are refused \
                         (0x97) and acknowledgements wait until the store can write again"
                    );
                    failing = true;
                    done.failing.store(true, Ordering::Relaxed);
                }
                if closed {
                    tracing::error!(
                        "persistence: {} changes were not written at shutdown",
                        changes.len()
                    );
                    return;
                }
                carried = changes;
                std::thread::sleep(Duration::from_millis(100));
                // redb refuses every transaction after a failed write until it is reopened.
                match store.recover() {
                    Ok(()) => {
                        // What was committed but not durable went with the old handle.
                        since_durable.append(&mut carried);
                        carried = std::mem::take(&mut since_durable);
                    }
                    Err(e) => tracing::warn!("persistence: reopening the store failed: {e}"),
                }
            }
        }
        if closed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{QueueRows, Snapshot, StoreError};

    /// Records each commit's size and durability; the first commit waits for the gate.
    #[derive(Default)]
    struct Log(Mutex<Vec<(usize, bool)>>, Mutex<Option<mpsc::Receiver<()>>>);

    impl Store for Log {
        fn commit(&self, changes: &[Change], durable: bool) -> Result<Vec<u64>, StoreError> {
            if let Some(gate) = crate::broker::lock(&self.1).take() {
                let _ = gate.recv();
            }
            crate::broker::lock(&self.0).push((changes.len(), durable));
            Ok(Vec::new())
        }
        fn load(&self) -> Result<Snapshot, StoreError> {
            Ok(Snapshot::default())
        }
        fn read_queue(&self, _: &str, _: u32, _: u32) -> Result<QueueRows, StoreError> {
            Ok(Vec::new())
        }
        fn read_retained(&self, _: &str) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(None)
        }
    }

    /// A writer with `sync = "always"` over `log`.
    fn always(log: &Arc<Log>) -> Arc<Writer> {
        let w = Writer::start(
            log.clone(),
            SyncMode::Always,
            Duration::from_secs(60),
            Vec::new(),
            1,
        );
        Arc::new(w.unwrap())
    }

    fn change(i: usize) -> Change {
        Change::Retained {
            topic: format!("t/{i}").into(),
            record: None,
        }
    }

    #[test]
    fn everything_sent_is_committed_durably_by_close() {
        for sync in [SyncMode::Always, SyncMode::Periodic] {
            let log = Arc::new(Log::default());
            let (open, gate) = mpsc::channel();
            *crate::broker::lock(&log.1) = Some(gate);
            let w =
                Writer::start(log.clone(), sync, Duration::from_secs(60), Vec::new(), 1).unwrap();
            // The first change's commit waits while 999 more arrive: they go in one commit.
            for i in 0..1000 {
                w.send(change(i));
            }
            open.send(()).unwrap();
            w.close();
            let commits = crate::broker::lock(&log.0).clone();
            let total: usize = commits.iter().map(|c| c.0).sum();
            assert_eq!(total, 1000, "{sync:?}: {commits:?}");
            assert!(commits.len() <= 3, "{sync:?}: grouped: {commits:?}");
            assert!(
                commits.last().unwrap().1,
                "{sync:?}: the last commit is durable"
            );
            if sync == SyncMode::Always {
                assert!(commits.iter().all(|c| c.1), "{commits:?}");
            }
        }
    }

    /// A group begun while the writer waits for an open one to end waits for it too: two
    /// threads whose groups always overlap cannot keep the writer from committing.
    #[test]
    fn a_new_group_waits_while_the_writer_waits_for_an_open_one() {
        let log = Arc::new(Log::default());
        let w = always(&log);
        let (held, hold) = mpsc::channel::<()>();
        let (opened, is_open) = mpsc::channel();
        let b = {
            let w = w.clone();
            std::thread::spawn(move || {
                let group = w.group();
                w.send(change(1));
                opened.send(Writer::last_sent_here()).unwrap();
                let _ = hold.recv();
                drop(group);
            })
        };
        let first = is_open.recv().unwrap();
        while !w.tx.draining.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
        let (through, passed) = mpsc::channel();
        let a = {
            let w = w.clone();
            std::thread::spawn(move || {
                let group = w.group();
                w.send(change(2));
                through.send(Writer::last_sent_here()).unwrap();
                drop(group);
            })
        };
        assert!(
            passed.recv_timeout(Duration::from_millis(100)).is_err(),
            "a new group began while the writer waited for an open one"
        );
        assert!(!w.is_done(first));
        held.send(()).unwrap();
        let second = passed.recv_timeout(Duration::from_secs(5)).unwrap();
        a.join().unwrap();
        b.join().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !w.is_done(second) {
            assert!(Instant::now() < deadline, "never committed");
            std::thread::yield_now();
        }
        w.close();
    }

    /// Two threads each beginning a group as soon as the last ended: commits go on while they
    /// do.
    #[test]
    fn commits_go_on_under_groups_that_always_overlap() {
        let log = Arc::new(Log::default());
        let w = always(&log);
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..2)
            .map(|t| {
                let (w, stop) = (w.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let _group = w.group();
                        w.send(change(t * 1_000_000 + i));
                        w.send(change(t * 1_000_000 + i + 1));
                        i += 2;
                    }
                })
            })
            .collect();
        // Ten commits while the groups go on.
        let deadline = Instant::now() + Duration::from_secs(10);
        while crate::broker::lock(&log.0).len() < 10 {
            assert!(Instant::now() < deadline, "commits stopped under load");
            std::thread::yield_now();
        }
        stop.store(true, Ordering::Relaxed);
        threads.into_iter().for_each(|t| t.join().unwrap());
        w.close();
    }
}
