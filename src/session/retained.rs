//! The retained messages a new subscription still has to receive, as a place in the session's
//! queue rather than copies in it: a subscription to `#` over 100,000 retained messages takes
//! them from the broker's retained store a batch at a time, as fast as the connection sends
//! them, instead of filling (and overflowing) the bounded queue at once. Live messages that
//! arrive meanwhile queue behind the stream, so each topic's messages stay in order. A topic
//! retained anew while the stream is under way is sent as it is when the stream reaches it:
//! possibly once more live, never lost.

use super::{Delivery, DeliveryExtra};
use crate::protocol::QoS;
use std::collections::VecDeque;
use std::sync::Arc;

/// Retained messages taken from the store per batch: enough to fill a write, few enough that
/// the store's lock is held briefly and a session holds little.
const RETAINED_BATCH: usize = 64;

/// Where a subscription's retained messages come from: the broker's retained store. The session
/// asks for the next batch; it never looks anything up itself.
pub(crate) trait RetainedSource {
    /// Appends up to `max` deliveries of the messages `cursor` has still to hand out, in topic
    /// order, and moves the cursor past them (and past any it skipped). Returns true once
    /// there are no more.
    fn next_batch(
        &self,
        cursor: &mut RetainedCursor,
        out: &mut VecDeque<Delivery>,
        max: usize,
    ) -> bool;
}

/// How far one subscription's retained messages have been handed out.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RetainedCursor {
    /// The filter subscribed to (for a `$share` subscription there is no stream).
    pub(crate) filter: Box<str>,
    /// The topic where the last batch stopped (the last node of the tree it visited); `None`
    /// before the first.
    pub(crate) after: Option<Box<str>>,
    /// The QoS the subscription was granted.
    pub(crate) qos: QoS,
    /// The subscription's identifier, carried by every delivery of the stream.
    pub(crate) extra: Option<Arc<DeliveryExtra>>,
    /// The subscriber's ACL, when it may read only some of the topics the filter matches.
    pub(crate) read_check: Option<crate::auth::SharedAcl>,
}

/// A cursor and the batch taken from the store and not yet sent.
#[derive(Debug)]
pub(super) struct RetainedStream {
    pub(super) cursor: RetainedCursor,
    pub(super) ready: VecDeque<Delivery>,
    /// The store has nothing more for this cursor: once `ready` is empty, the stream is over.
    pub(super) exhausted: bool,
}

impl RetainedStream {
    pub(super) fn new(cursor: RetainedCursor) -> Self {
        Self {
            cursor,
            ready: VecDeque::new(),
            exhausted: false,
        }
    }

    /// Takes the next batch from `source` (nothing once exhausted).
    pub(super) fn refill(&mut self, source: &dyn RetainedSource) {
        if !self.exhausted {
            self.exhausted = source.next_batch(&mut self.cursor, &mut self.ready, RETAINED_BATCH);
        }
    }

    /// Whether the stream has nothing more to hand out.
    pub(super) fn is_over(&self) -> bool {
        self.exhausted && self.ready.is_empty()
    }
}
