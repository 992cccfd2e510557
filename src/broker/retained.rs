//! The retained-message store: one message per topic, updated by retained PUBLISHes, and handed
//! to new subscriptions a batch at a time as their connections send them (see
//! `session/retained.rs`). Each message carries the sequence number it was stored with, so a
//! subscription's stream can leave out what was retained after it was made: that reached the
//! subscription live.

use super::{Broker, lock};
use crate::session::{Delivery, Message, RetainedCursor, RetainedSource};
use crate::topic::RetainedTree;
use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

/// Entries a batch may look at for each one it hands out, so that skipping many replaced or
/// expired messages holds the store's lock only briefly; the cursor remembers where it stopped.
const LOOK_AHEAD: usize = 16;

/// A retained message and when it was stored.
#[derive(Debug)]
pub(super) struct Entry {
    message: Arc<Message>,
    /// The store's sequence number when this message was stored.
    seq: u64,
}

/// The retained messages, by topic.
#[derive(Debug, Default)]
pub(super) struct RetainedStore {
    tree: RetainedTree<Entry>,
    /// Bumped for each message stored.
    seq: u64,
}

impl RetainedStore {
    /// Stores a retained message, or deletes the topic's message for an empty payload
    /// [MQTT-3.3.1-5, MQTT-3.3.1-10].
    pub(super) fn update(&mut self, m: &Arc<Message>) {
        if m.payload.is_empty() {
            self.tree.remove(&m.topic);
        } else {
            self.seq += 1;
            let entry = Entry {
                // Not a slice of the publisher's read buffer: it may be kept for years.
                message: Arc::new(m.compacted()),
                seq: self.seq,
            };
            self.tree.insert(&m.topic, entry);
        }
    }

    /// The sequence number a new subscription's stream starts from.
    pub(super) fn snapshot(&self) -> u64 {
        self.seq
    }

    /// Number of retained messages.
    pub(super) fn len(&self) -> usize {
        self.tree.len()
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
        let mut expired = Vec::new();
        let (mut looked, mut last) = (0, None);
        let before = out.len();
        let done = store
            .tree
            .walk(&cursor.filter, cursor.after.as_deref(), |e| {
                looked += 1;
                last = Some(&e.message.topic);
                if e.seq > cursor.snapshot {
                    // Retained after the subscription was made: it was delivered live.
                } else if e.message.expired(now) {
                    // [MQTT-3.3.2-5] an expired retained message is not sent, and goes.
                    expired.push(e.message.topic.clone());
                } else {
                    out.push_back(Delivery {
                        message: e.message.clone(),
                        qos: e.message.qos.min(cursor.qos),
                        retain: true, // [MQTT-3.3.1-8]
                        extra: cursor.extra.clone(),
                    });
                }
                if out.len() - before >= max || looked >= max * LOOK_AHEAD {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            });
        if let Some(topic) = last {
            cursor.after = Some(topic.clone());
        }
        for topic in expired {
            store.tree.remove(&topic);
        }
        done
    }
}
