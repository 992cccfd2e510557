//! The retained-message store: one message per topic, updated by retained PUBLISHes, and handed
//! to new subscriptions a batch at a time as their connections send them (see
//! `session/retained.rs`).

use super::{Broker, lock};
use crate::session::{Delivery, MemoryBudget, Message, RetainedCursor, RetainedSource};
use crate::topic::RetainedTree;
use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Instant;

/// Nodes of the tree a batch may visit for each message it hands out, so that a filter that
/// matches little (`+/+/status` over a large tree) holds the store's lock only briefly; the
/// cursor remembers where the walk stopped.
const LOOK_AHEAD: usize = 16;

/// One topic's retained message.
#[derive(Debug)]
enum Held {
    /// In memory.
    Memory(Arc<Message>),
    /// On disk only, its topic here (over `limits.max_memory_bytes`): read back from the
    /// store when a subscription is sent it.
    Disk(Box<str>),
}

/// What a retained message in memory takes beyond its topic and payload: the message's
/// fields, its one buffer's rounding by the allocator, and its node in the tree. Measured:
/// 1,000,000 retained messages of 1 KiB on 22-byte topics took 1,796 bytes each
/// (`roost-bench retained --messages 1000000 --payload 1024`, `rss_per_message_b`;
/// `docs/benchmarks.md`), 750 beyond topic and payload.
pub(crate) const IN_MEMORY: usize = 750;

/// What a topic whose message is on disk only takes beyond its topic: its node in the tree.
/// Measured: about 280 bytes each after a restart of that store with most on disk.
const ON_DISK: usize = 288;

impl Held {
    /// What it counts against the memory budget (see [`IN_MEMORY`], [`ON_DISK`]).
    fn cost(&self) -> usize {
        match self {
            Self::Memory(m) => m.topic.len() + m.payload.len() + IN_MEMORY,
            Self::Disk(topic) => topic.len() + ON_DISK,
        }
    }
}

/// The retained messages, by topic.
#[derive(Debug, Default)]
pub(super) struct RetainedStore {
    tree: RetainedTree<Held>,
    /// Messages stored while the memory budget was spent, to be held on disk only once the
    /// writer has committed them: its change number, and the message (to tell it from a
    /// newer one of its topic).
    spilling: VecDeque<(u64, Weak<Message>)>,
}

impl RetainedStore {
    /// Stores `topic`'s retained message (compacted: see `Message::compacted`), or deletes
    /// it for `None`, an empty payload [MQTT-3.3.1-5, MQTT-3.3.1-10]; counted against
    /// `memory`. `written`: the writer's change that stores it, if there is a store: over the
    /// budget it goes to disk only once that is committed (see [`RetainedStore::settle`]).
    pub(super) fn update(
        &mut self,
        topic: &str,
        kept: Option<Arc<Message>>,
        memory: &MemoryBudget,
        written: Option<u64>,
    ) {
        let Some(kept) = kept else {
            self.remove(topic, memory);
            return;
        };
        if let Some(n) = written.filter(|_| memory.is_spent()) {
            self.spilling.push_back((n, Arc::downgrade(&kept)));
        }
        self.put(topic, Held::Memory(kept), memory);
    }

    /// Moves the messages stored over the budget whose records `committed` says are on disk
    /// out of memory. Called as retained messages are stored and sent, so what waits is at
    /// most what the writer has not committed yet.
    pub(super) fn settle(&mut self, memory: &MemoryBudget, committed: impl Fn(u64) -> bool) {
        while let Some((n, _)) = self.spilling.front()
            && committed(*n)
        {
            let Some((_, message)) = self.spilling.pop_front() else {
                break;
            };
            // Gone (replaced, cleared or expired) or replaced by a newer one: nothing to do.
            let Some(message) = message.upgrade() else {
                continue;
            };
            let current = matches!(
                self.tree.get(&message.topic),
                Some(Held::Memory(m)) if Arc::ptr_eq(m, &message)
            );
            if current {
                let disk = Held::Disk(message.topic.as_str().into());
                self.put(&message.topic, disk, memory);
            }
        }
    }

    /// Puts a message read back from the store in place: one buffer already, as a record is.
    pub(super) fn restore(&mut self, m: Message, memory: &MemoryBudget) {
        let topic = m.topic.clone();
        self.put(&topic, Held::Memory(Arc::new(m)), memory);
    }

    /// Puts a topic whose message stays on disk in place (start-up, over the budget).
    pub(super) fn restore_on_disk(&mut self, topic: String, memory: &MemoryBudget) {
        let held = Held::Disk(topic.as_str().into());
        self.put(&topic, held, memory);
    }

    /// Sets `topic`'s message to `held`, counting the change against `memory`.
    fn put(&mut self, topic: &str, held: Held, memory: &MemoryBudget) {
        memory.charge(held.cost());
        if let Some(old) = self.tree.insert(topic, held) {
            memory.credit(old.cost());
        }
    }

    /// Removes `topic`'s message.
    fn remove(&mut self, topic: &str, memory: &MemoryBudget) {
        if let Some(old) = self.tree.remove(topic) {
            memory.credit(old.cost());
        }
    }

    /// Whether messages wait for the writer to move out of memory.
    pub(super) fn is_spilling(&self) -> bool {
        !self.spilling.is_empty()
    }

    /// Number of retained messages.
    pub(super) fn len(&self) -> usize {
        self.tree.len()
    }
}

impl Broker {
    /// Moves the retained bodies whose records the writer has committed out of memory (see
    /// [`RetainedStore::settle`]), `store` being the retained store under its lock; notes
    /// whether any still wait, for [`Broker::settle_retained_if_waiting`].
    pub(super) fn settle_retained(&self, store: &mut RetainedStore) {
        if let Some(writer) = self.store() {
            store.settle(self.memory(), |n| writer.is_done(n));
        }
        (self.inner.retained_spilling).store(store.is_spilling(), Ordering::Relaxed);
    }

    /// As [`Broker::settle_retained`], taking the lock only if bodies wait (a flag read
    /// without it).
    pub(super) fn settle_retained_if_waiting(&self) {
        if self.inner.retained_spilling.load(Ordering::Relaxed) {
            self.settle_retained(&mut lock(&self.inner.retained));
        }
    }

    /// Reads `topic`'s retained message back from the store (it is held on disk only). `None`
    /// if the store does not have it, or cannot be read (logged).
    fn read_retained(&self, topic: &str, now: Instant) -> Option<Option<Arc<Message>>> {
        let record = match self.store()?.read_retained(topic) {
            Ok(record) => record?,
            Err(e) => {
                tracing::warn!(topic, error = %e, "cannot read a retained message back from the store");
                return None;
            }
        };
        match crate::store::decode_retained(&record, now) {
            Ok(m) => Some(m.map(Arc::new)),
            Err(why) => {
                tracing::warn!(
                    topic,
                    why,
                    "a retained message read back from the store does not decode"
                );
                None
            }
        }
    }
}

impl RetainedSource for Broker {
    fn next_batch(
        &self,
        cursor: &mut RetainedCursor,
        out: &mut VecDeque<Delivery>,
        max: usize,
    ) -> bool {
        let now = Instant::now();
        let mut store = lock(&self.inner.retained);
        self.settle_retained(&mut store);
        let mut expired = Vec::new();
        let mut handed = 0;
        let stopped = store.tree.walk(
            &cursor.filter,
            cursor.after.as_deref(),
            max * LOOK_AHEAD,
            |held| {
                let m = match held {
                    Held::Memory(m) => m.clone(),
                    Held::Disk(topic) => match self.read_retained(topic, now) {
                        Some(Some(m)) => m,
                        Some(None) => {
                            expired.push(topic.to_string());
                            return ControlFlow::Continue(());
                        }
                        None => return ControlFlow::Continue(()),
                    },
                };
                if m.expired(now) {
                    // [MQTT-3.3.2-5] an expired retained message is not sent, and goes.
                    expired.push(m.topic.to_string());
                    return ControlFlow::Continue(());
                }
                if cursor
                    .read_check
                    .as_ref()
                    .is_some_and(|acl| !acl.may_read(&m.topic))
                {
                    return ControlFlow::Continue(());
                }
                out.push_back(Delivery {
                    qos: m.qos.min(cursor.qos),
                    message: m,
                    retain: true, // [MQTT-3.3.1-8]
                    extra: cursor.extra.clone(),
                    seq: 0,
                });
                handed += 1;
                if handed >= max {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        );
        for topic in expired {
            store.remove(&topic, self.memory());
        }
        let done = stopped.is_none();
        cursor.after = stopped.map(String::into_boxed_str);
        done
    }
}
