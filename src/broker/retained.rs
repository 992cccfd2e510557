//! The retained-message store: one message per topic, updated by retained PUBLISHes, and handed
//! to new subscriptions a batch at a time as their connections send them (see
//! `session/retained.rs`).

use super::{Broker, lock};
use crate::session::{Delivery, Message, RetainedCursor, RetainedSource};
use crate::topic::RetainedTree;
use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

/// Nodes of the tree a batch may visit for each message it hands out, so that a filter that
/// matches little (`+/+/status` over a large tree) holds the store's lock only briefly; the
/// cursor remembers where the walk stopped.
const LOOK_AHEAD: usize = 16;

/// The retained messages, by topic.
#[derive(Debug, Default)]
pub(super) struct RetainedStore {
    tree: RetainedTree<Arc<Message>>,
}

impl RetainedStore {
    /// Stores a retained message, or deletes the topic's message for an empty payload
    /// [MQTT-3.3.1-5, MQTT-3.3.1-10].
    pub(super) fn update(&mut self, m: &Message) {
        if m.payload.is_empty() {
            self.tree.remove(&m.topic);
        } else {
            // Not a slice of the publisher's read buffer: it may be kept for years.
            self.tree.insert(&m.topic, Arc::new(m.compacted()));
        }
    }

    /// Puts a message read back from the store in place: one buffer already, as a record is.
    pub(super) fn restore(&mut self, m: Message) {
        self.tree.insert(&m.topic.clone(), Arc::new(m));
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
        let mut handed = 0;
        let stopped = store.tree.walk(
            &cursor.filter,
            cursor.after.as_deref(),
            max * LOOK_AHEAD,
            |m| {
                if m.expired(now) {
                    // [MQTT-3.3.2-5] an expired retained message is not sent, and goes.
                    expired.push(m.topic.clone());
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
                    message: m.clone(),
                    qos: m.qos.min(cursor.qos),
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
            store.tree.remove(&topic);
        }
        let done = stopped.is_none();
        cursor.after = stopped.map(String::into_boxed_str);
        done
    }
}
