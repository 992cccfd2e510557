//! A session kept in the store (`[persistence]`, a session that outlives its connection): each
//! of its QoS 1/2 deliveries gets a sequence number when it is queued, and each change to it
//! (queued, released by PUBREC, done) is handed, as it happens and under the session's lock, to
//! a [`Sink`] the broker connects to the store's writer. The session stays free of IO: it only
//! calls the sink.
//!
//! A kept delivery's packet identifier is a function of its sequence number
//! ([`packet_id_of`]), so sending it writes nothing: after a crash it goes again with the
//! identifier it went with before, and a client that holds that identifier for a QoS 2 message
//! knows it for a duplicate.

use super::Delivery;
use std::sync::Arc;

/// Where a kept session's changes go. Returns the writer's number for the change (0 where
/// there is no writer): a message held on disk only is read back once that is committed.
pub(crate) type Sink = Arc<dyn Fn(Journal) -> u64 + Send + Sync>;

/// One change to a kept session's durable state.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Journal {
    /// A QoS 1/2 delivery queued (or put in flight) with sequence number `seq`. `packet_id` is
    /// 0 unless it is already in flight under an identifier that is not [`packet_id_of`]
    /// `seq` (a session that became kept with messages in flight).
    Queued {
        /// Its sequence number in the session.
        seq: u32,
        /// The delivery (its message is stored once for every session it goes to).
        delivery: Delivery,
        /// Its packet identifier if it has one of its own; 0 otherwise.
        packet_id: u16,
    },
    /// The client PUBREC'd the QoS 2 delivery `seq`, sent as `packet_id`: the PUBREL is due.
    Released {
        /// Its sequence number.
        seq: u32,
        /// The identifier it went with.
        packet_id: u16,
    },
    /// The delivery `seq` is over: acknowledged, expired, abandoned or handed to another
    /// member of its shared subscription.
    Done {
        /// Its sequence number.
        seq: u32,
    },
    /// An inbound QoS 2 packet identifier now awaits PUBREL (`pending`) or was released.
    Inbound {
        /// The identifier.
        packet_id: u16,
        /// True from the PUBLISH, false from the PUBREL.
        pending: bool,
    },
}

/// The packet identifier of the kept delivery `seq`: 1 to 65,535, the same after a restart.
pub(crate) fn packet_id_of(seq: u32) -> u16 {
    // `seq % 65_535` is below 65,535, so the sum fits.
    (seq % 65_535) as u16 + 1
}

/// A kept session's sequence counter and sink.
pub(super) struct Kept {
    /// The next sequence number; 0 is never given (it means "not kept").
    pub(super) next_seq: u32,
    /// The last sequence number restored from the store into the queue (0: none): those up
    /// to it may have been in flight when the broker stopped, and go with DUP set.
    pub(super) restored_upto: u32,
    pub(super) sink: Sink,
}

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Kept {{ next_seq: {}, restored_upto: {} }}",
            self.next_seq, self.restored_upto
        )
    }
}

impl Kept {
    /// Takes the next sequence number (wrapping past `u32::MAX` to 1: the store orders a
    /// session's rows by the gap a wrap leaves, see `store::order_by_seq`).
    pub(super) fn take_seq(&mut self) -> u32 {
        let seq = self.next_seq;
        self.next_seq = super::spill::advance(self.next_seq, 1);
        seq
    }

    /// The sequence number [`Kept::take_seq`] gives next.
    pub(super) fn peek_seq(&self) -> u32 {
        self.next_seq
    }

    /// Hands a change to the store; returns the writer's number for it.
    pub(super) fn record(&self, change: Journal) -> u64 {
        (self.sink)(change)
    }
}
