//! The in-flight window's storage, which costs one pointer until a QoS 1/2 message is first
//! sent: most sessions (a device that only publishes, an app that only receives QoS 0) never
//! put a message in flight, and an empty `VecDeque` inline would cost every one 32 bytes.

use super::InFlight;
use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};

/// One message in flight: its packet identifier and how far its acknowledgement has come.
type Entry = (u16, InFlight);

/// What a session that never sent a QoS 1/2 message reads: `VecDeque::new` allocates nothing.
static EMPTY: VecDeque<Entry> = VecDeque::new();

/// QoS 1/2 messages in flight, in the order they were sent; allocated on first mutable use.
#[derive(Debug, Default)]
#[expect(
    clippy::box_collection,
    reason = "a thin pointer in every idle session"
)]
pub(super) struct InFlightQueue(Option<Box<VecDeque<Entry>>>);

impl InFlightQueue {
    /// Gives back the allocation of a queue that is empty again.
    pub(super) fn release_if_empty(&mut self) {
        if self.0.as_ref().is_some_and(|q| q.is_empty()) {
            self.0 = None;
        }
    }
}

impl Deref for InFlightQueue {
    type Target = VecDeque<Entry>;

    fn deref(&self) -> &VecDeque<Entry> {
        self.0.as_deref().unwrap_or(&EMPTY)
    }
}

impl DerefMut for InFlightQueue {
    fn deref_mut(&mut self) -> &mut VecDeque<Entry> {
        self.0.get_or_insert_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_on_first_write_and_gives_back_only_when_empty() {
        let mut q = InFlightQueue::default();
        assert!(q.is_empty() && q.0.is_none(), "reading must not allocate");
        q.push_back((7, InFlight::Released));
        assert_eq!(q.front().map(|e| e.0), Some(7));
        q.release_if_empty();
        assert_eq!(q.len(), 1, "a queue with an entry keeps it");
        q.pop_front();
        q.release_if_empty();
        assert!(q.0.is_none() && q.is_empty());
    }
}
