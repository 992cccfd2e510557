//! Acknowledgements that wait for the disk (`persistence.sync = "always"`): a PUBACK, PUBREC,
//! PUBREL, PUBCOMP or SUBACK whose packet changed durable state (a message queued for a
//! persistent session, a retained message, an inbound QoS 2 id, a subscription) goes out only
//! once the store's writer has made that change durable. Nothing waits here: the answer is
//! written into the out buffer as usual and the shell writes the buffer only up to where the
//! first such answer begins (see [`Engine::sendable`]), until the writer wakes the connection.
//! Everything behind it waits too, so answers keep their order [MQTT-4.6.0-2..4].
//!
//! A QoS 2 PUBLISH to a persistent session waits the same way for its own row: a client keeps
//! the packet identifier of a QoS 2 message it received until the PUBREL, so the broker must
//! not forget, in a crash, a QoS 2 message it has sent. It would give that identifier to
//! another message, which the client would take for a duplicate and drop.

use super::{Engine, Open, State};
use crate::store::Writer;
use bytes::BytesMut;
use std::cell::Cell;
use std::task::Waker;

thread_local! {
    /// The number of the last change sent to the store from this thread when the packets being
    /// handled began: a later number means handling them changed durable state.
    static MARK: Cell<u64> = const { Cell::new(0) };
}

/// Answers held in the out buffer until the store has made change `until` durable.
#[derive(Debug, Clone, Copy)]
pub(super) struct Hold {
    /// The change to wait for.
    until: u64,
    /// Where the held bytes begin in the out buffer.
    from: usize,
    /// The change the writer was last asked to wake this connection for (once per change,
    /// not once per turn of the connection's loop).
    asked: u64,
}

impl Open {
    /// Starts a group for the packets about to be handled: what they change reaches the disk
    /// in one commit (see [`Writer::group`]). `None` without a store.
    pub(super) fn group(&self) -> Option<crate::store::Group> {
        self.link.broker().store().map(|w| w.group())
    }

    /// Notes where handling the packets just read begins (see [`MARK`]).
    pub(super) fn mark_changes(&self) {
        if self.link.broker().durable_acks().is_some() {
            MARK.set(Writer::last_sent_here());
        }
    }

    /// Before an answer is written to `out`: if what was handled since [`Open::mark_changes`]
    /// changed durable state, the answer and everything after it waits for that change.
    pub(super) fn hold_if_changed(&mut self, out: &BytesMut) {
        if self.link.broker().durable_acks().is_none() {
            return;
        }
        let last = Writer::last_sent_here();
        if last == MARK.get() {
            return;
        }
        self.hold_from(out.len(), last);
    }

    /// Before a QoS 2 PUBLISH of a persistent session is written to `out`: it waits until its
    /// row, sent to the store when it was queued, is durable. Also before the PUBREC of a
    /// duplicate QoS 2 PUBLISH, whose first copy's changes may still be on their way.
    pub(super) fn hold_until_all_sent(&mut self, out: &BytesMut) {
        let Some(writer) = self.link.broker().durable_acks() else {
            return;
        };
        let last = writer.last_sent();
        if !writer.is_done(last) {
            self.hold_from(out.len(), last);
        }
    }

    /// Holds the out buffer from `from` on until change `last` is durable.
    fn hold_from(&mut self, from: usize, last: u64) {
        let out_len = from;
        let extras = self.extras.get_or_insert_with(Default::default);
        extras.hold = Some(match extras.hold {
            Some(h) => Hold {
                until: h.until.max(last),
                ..h
            },
            None => Hold {
                until: last,
                from: out_len,
                asked: 0,
            },
        });
    }

    /// Lets the held answers go once their change is durable; otherwise asks the writer to
    /// wake `waker` when it is.
    pub(super) fn release_hold(&mut self, waker: &Waker) {
        let Some(hold) = self.extras.as_ref().and_then(|e| e.hold) else {
            return;
        };
        let Some(writer) = self.link.broker().durable_acks() else {
            return;
        };
        let Some(held) = self.extras.as_mut().and_then(|e| e.hold.as_mut()) else {
            return;
        };
        if writer.is_done(hold.until) {
            self.extras.as_mut().map(|e| e.hold.take());
        } else if hold.asked < hold.until {
            held.asked = hold.until;
            if !writer.wake_when_done(hold.until, waker) {
                // The writer has stopped (shutdown): nothing more will be made durable.
                self.extras.as_mut().map(|e| e.hold.take());
            }
        }
    }
}

impl Engine {
    /// How many bytes at the front of an out buffer of `len` bytes may be written now: all of
    /// them, unless answers in it wait for the disk.
    pub(crate) fn sendable(&self, len: usize) -> usize {
        match &self.state {
            State::Open(open) => match open.extras.as_ref().and_then(|e| e.hold) {
                Some(hold) => hold.from.min(len),
                None => len,
            },
            _ => len,
        }
    }

    /// The shell wrote `n` bytes from the front of the out buffer.
    pub(crate) fn wrote(&mut self, n: usize) {
        if let State::Open(open) = &mut self.state
            && let Some(hold) = open.extras.as_mut().and_then(|e| e.hold.as_mut())
        {
            hold.from = hold.from.saturating_sub(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{CLEAN, Client, broker_with, connect, frame, s};
    use crate::config::SyncMode;
    use crate::store::{Change, QueueRows, Snapshot, Store, StoreError, Writer};
    use std::sync::{Arc, Condvar, Mutex, mpsc};
    use std::task::{Wake, Waker};
    use std::time::{Duration, Instant};

    /// A store whose commits wait while its gate is shut.
    #[derive(Default)]
    struct Gated {
        shut: Mutex<bool>,
        turn: Condvar,
    }

    impl Gated {
        fn set(&self, shut: bool) {
            *crate::broker::lock(&self.shut) = shut;
            self.turn.notify_all();
        }
    }

    impl Store for Gated {
        fn commit(&self, _: &[Change], _: bool) -> Result<Vec<u64>, StoreError> {
            let mut shut = crate::broker::lock(&self.shut);
            while *shut {
                shut = self.turn.wait(shut).unwrap_or_else(|e| e.into_inner());
            }
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

    /// A broker with `sync = "always"` on a [`Gated`] store, and a 3.1.1 persistent session
    /// (Clean Session 0) subscribed to "kept" at QoS 1.
    fn kept_subscriber(now: Instant) -> (crate::broker::Broker, Arc<Gated>, Client) {
        let broker = broker_with(|c| {
            c.persistence.enabled = true;
            c.persistence.sync = SyncMode::Always;
        });
        let store = Arc::new(Gated::default());
        let writer = Writer::start(
            store.clone(),
            SyncMode::Always,
            Duration::from_secs(1),
            vec![],
            1,
        );
        broker.persist_to(Arc::new(writer.expect("a writer thread")));
        let mut sub = Client::open(&broker, &connect(4, 0, 0, &[], &s(b"sub")), now);
        let mut body = vec![0, 1];
        body.extend(s(b"kept"));
        body.push(1);
        sub.send(&frame(0x82, &body), now).expect("SUBSCRIBE");
        (broker, store, sub)
    }

    /// A waker that says on a channel that it was woken.
    struct Signal(Mutex<mpsc::Sender<()>>);

    impl Wake for Signal {
        fn wake(self: Arc<Self>) {
            let _ = crate::broker::lock(&self.0).send(());
        }
    }

    /// With `sync = "always"`, a PUBACK for a message queued to a persistent session is not
    /// written until the store has the message on disk; one that changed nothing durable goes
    /// at once.
    #[tokio::test]
    async fn a_puback_waits_for_the_disk_only_when_its_message_was_kept() {
        let now = Instant::now();
        let (broker, store, _sub) = kept_subscriber(now);
        let mut publisher = Client::open(&broker, &connect(4, CLEAN, 0, &[], &s(b"pub")), now);
        store.set(true);
        let publish = |topic: &[u8], id: u8| {
            let mut body = s(topic);
            body.extend([0, id]);
            body.extend(b"payload");
            frame(0x32, &body)
        };
        // Nobody keeps "free": its PUBACK goes at once.
        publisher.send(&publish(b"free", 1), now).expect("PUBLISH");
        assert_eq!(publisher.engine.sendable(publisher.out.len()), 4);
        assert_eq!(publisher.take(), [0x40, 2, 0, 1]);
        // "kept" is queued to the persistent session: its PUBACK waits for the commit.
        publisher.send(&publish(b"kept", 2), now).expect("PUBLISH");
        let (tx, woken) = mpsc::channel();
        let waker = Waker::from(Arc::new(Signal(Mutex::new(tx))));
        publisher
            .engine
            .poll_transmit(&mut publisher.out, now, &waker)
            .expect("open");
        assert_eq!(publisher.out.len(), 4, "written");
        assert_eq!(publisher.engine.sendable(4), 0, "but held");
        store.set(false);
        woken
            .recv_timeout(Duration::from_secs(10))
            .expect("the writer wakes the connection once the message is on disk");
        publisher
            .engine
            .poll_transmit(&mut publisher.out, now, &waker)
            .expect("open");
        assert_eq!(publisher.engine.sendable(4), 4, "released");
        assert_eq!(publisher.take(), [0x40, 2, 0, 2]);
        broker.store().expect("a store").close();
    }

    /// A PUBLISH that came in the same read as its CONNECT: the CONNACK goes at once, the
    /// PUBACK behind it waits for the disk as any other (the handshake writes only what
    /// `sendable` allows).
    #[tokio::test]
    async fn a_puback_read_with_the_connect_waits_for_the_disk_too() {
        let now = Instant::now();
        let (broker, store, _sub) = kept_subscriber(now);
        store.set(true);
        let mut publisher = Client::new(&broker, now);
        let mut bytes = connect(4, CLEAN, 0, &[], &s(b"pub"));
        let mut body = s(b"kept");
        body.extend([0, 7]);
        body.extend(b"payload");
        bytes.extend(frame(0x32, &body));
        publisher.send(&bytes, now).expect("CONNECT and PUBLISH");
        assert_eq!(publisher.out.len(), 8, "CONNACK and PUBACK written");
        assert_eq!(
            publisher.engine.sendable(8),
            4,
            "the CONNACK may go, the PUBACK waits"
        );
        let (tx, woken) = mpsc::channel();
        let waker = Waker::from(Arc::new(Signal(Mutex::new(tx))));
        publisher
            .engine
            .poll_transmit(&mut publisher.out, now, &waker)
            .expect("open");
        store.set(false);
        woken
            .recv_timeout(Duration::from_secs(10))
            .expect("the writer wakes the connection once the message is on disk");
        publisher
            .engine
            .poll_transmit(&mut publisher.out, now, &waker)
            .expect("open");
        assert_eq!(publisher.engine.sendable(8), 8, "released");
        assert_eq!(&publisher.take()[4..], [0x40, 2, 0, 7]);
        broker.store().expect("a store").close();
    }
}
