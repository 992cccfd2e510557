//! A session's QoS 1/2 exchanges in progress, both ways, which cost one pointer until the first
//! one starts: most sessions (a device that publishes at QoS 0 or 1, an app that receives at
//! QoS 0) never put a message in flight or receive a QoS 2 one, and an empty `VecDeque` and
//! `Vec` inline would cost every one 56 bytes.

use super::InFlight;
use std::collections::VecDeque;
use std::ops::Deref;

/// One message in flight: its packet identifier and how far its acknowledgement has come.
type Entry = (u16, InFlight);

/// What a session that never sent a QoS 1/2 message reads: `VecDeque::new` allocates nothing.
static EMPTY: VecDeque<Entry> = VecDeque::new();

#[derive(Debug, Default)]
struct Both {
    /// Outbound QoS 1/2 messages sent and not yet fully acknowledged, in the order sent.
    inflight: VecDeque<Entry>,
    /// Inbound QoS 2 packet ids received and not yet released (3.1.1 MQTT-4.3.3-2, 5.0
    /// MQTT-4.3.3-10). A vector, not a set: it holds at most our Receive Maximum ids.
    inbound_qos2: Vec<u16>,
}

/// The outbound in-flight queue and the inbound QoS 2 ids, allocated together on first use.
/// Reads of the outbound queue go through `Deref` (an absent one reads as empty); writes through
/// [`Unfinished::outbound_mut`], which allocates, or [`Unfinished::outbound_if_any`], which does
/// not.
#[derive(Debug, Default)]
pub(super) struct Unfinished(Option<Box<Both>>);

impl Unfinished {
    /// Gives back the allocation once both are empty again.
    pub(super) fn release_if_empty(&mut self) {
        if self
            .0
            .as_ref()
            .is_some_and(|b| b.inflight.is_empty() && b.inbound_qos2.is_empty())
        {
            self.0 = None;
        }
    }

    /// The outbound queue, for adding a message or changing one there (allocates on first use).
    pub(super) fn outbound_mut(&mut self) -> &mut VecDeque<Entry> {
        &mut self.0.get_or_insert_default().inflight
    }

    /// The outbound queue, for removing messages: `None` (and no allocation) if there are none.
    pub(super) fn outbound_if_any(&mut self) -> Option<&mut VecDeque<Entry>> {
        self.0.as_mut().map(|b| &mut b.inflight)
    }

    /// Inbound QoS 2 ids awaiting PUBREL.
    pub(super) fn inbound_qos2(&self) -> &[u16] {
        self.0.as_ref().map_or(&[], |b| &b.inbound_qos2)
    }

    /// The inbound QoS 2 ids, for adding one (allocates on first use).
    pub(super) fn inbound_qos2_mut(&mut self) -> &mut Vec<u16> {
        &mut self.0.get_or_insert_default().inbound_qos2
    }

    /// The inbound QoS 2 ids, for removing one: `None` (and no allocation) if there are none.
    pub(super) fn inbound_qos2_if_any(&mut self) -> Option<&mut Vec<u16>> {
        self.0.as_mut().map(|b| &mut b.inbound_qos2)
    }
}

impl Deref for Unfinished {
    type Target = VecDeque<Entry>;

    fn deref(&self) -> &VecDeque<Entry> {
        self.0.as_ref().map_or(&EMPTY, |b| &b.inflight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_on_first_write_and_gives_back_only_when_both_are_empty() {
        let mut q = Unfinished::default();
        assert!(q.is_empty() && q.inbound_qos2().is_empty() && q.0.is_none());
        assert!(
            q.inbound_qos2_if_any().is_none() && q.outbound_if_any().is_none(),
            "removing must not allocate"
        );
        assert!(q.0.is_none(), "reading must not allocate");
        q.outbound_mut().push_back((7, InFlight::Released(0)));
        assert_eq!(q.front().map(|e| e.0), Some(7));
        q.release_if_empty();
        assert_eq!(q.len(), 1, "a queue with an entry keeps it");
        q.outbound_if_any().map(VecDeque::pop_front);
        q.inbound_qos2_mut().push(9);
        q.release_if_empty();
        assert_eq!(q.inbound_qos2(), [9], "an inbound id keeps it");
        q.inbound_qos2_if_any().map(Vec::clear);
        q.release_if_empty();
        assert!(q.0.is_none() && q.is_empty());
    }
}
