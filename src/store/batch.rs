//! One commit's changes, as the writer gathers them. A delivery to a subscriber that reads as
//! fast as it is sent is queued, sent and acknowledged within the time of one commit; its row
//! written and deleted in the same commit would cost two B-tree updates and its message two
//! more for nothing on disk. So a row deleted (or an inbound QoS 2 id released) in the batch
//! that wrote it cancels the write, and a message written in this batch that no row of it
//! points at any more is not written at all. What reaches the store is the same end state.

use super::{Change, Row};
use crate::session::Message;
use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;
use std::time::Instant;

/// Changes for the next commit, with the writes that later changes in it may cancel.
#[derive(Default)]
pub(super) struct Batch {
    /// In order; `None` where a write was cancelled.
    changes: Vec<Option<Change>>,
    /// Delivery rows written in this batch: key -> (index, message id).
    rows: HashMap<Box<str>, (usize, u64)>,
    /// Inbound QoS 2 ids written in this batch: key -> index.
    inbound: HashMap<Box<str>, usize>,
    /// Messages first written in this batch: id -> (index of its record, rows of this batch
    /// pointing at it, the message). Encoded at the end, only if a row still points at it.
    messages: HashMap<u64, (usize, u32, Arc<Message>)>,
}

impl Batch {
    fn add(&mut self, change: Change) -> usize {
        self.changes.push(Some(change));
        self.changes.len() - 1
    }

    fn cancel(&mut self, i: usize) {
        if let Some(slot) = self.changes.get_mut(i) {
            *slot = None;
        }
    }

    /// A message, first written (the store does not hold it yet).
    pub(super) fn message(&mut self, id: u64, message: Arc<Message>) {
        let i = self.add(Change::Message {
            id,
            record: Vec::new(),
        });
        self.messages.insert(id, (i, 0, message));
    }

    /// A delivery row pointing at message `message`.
    pub(super) fn row(&mut self, key: Box<str>, row: Vec<u8>, message: u64) {
        if let Some((_, rows, _)) = self.messages.get_mut(&message) {
            *rows += 1;
        }
        let i = self.add(Change::Entry {
            key: key.clone(),
            row: Some(row),
        });
        self.rows.insert(key, (i, message));
    }

    /// Any other change, cancelling the write it undoes if that is in this batch.
    pub(super) fn push(&mut self, change: Change) {
        match change {
            Change::Entry { key, row: None } => {
                let Some((i, message)) = self.rows.remove(&key) else {
                    self.add(Change::Entry { key, row: None });
                    return;
                };
                // Never on disk: nothing to delete (a key is written once, see `entry_key`).
                self.cancel(i);
                if let Some((_, rows, _)) = self.messages.get_mut(&message) {
                    *rows -= 1;
                }
            }
            Change::Released { key, packet_id } => {
                let pending = self
                    .rows
                    .get(&key)
                    .and_then(|(i, _)| match &self.changes[*i] {
                        Some(Change::Entry { row: Some(row), .. }) => {
                            Row::released(row, packet_id).ok()
                        }
                        _ => None,
                    });
                match (pending, self.rows.get(&key)) {
                    (Some(row), Some(&(i, _))) => {
                        self.changes[i] = Some(Change::Entry {
                            key,
                            row: Some(row),
                        });
                    }
                    _ => {
                        self.add(Change::Released { key, packet_id });
                    }
                }
            }
            Change::Inbound {
                key,
                pending: false,
            } => {
                if let Some(i) = self.inbound.remove(&key) {
                    self.cancel(i);
                } else {
                    self.add(Change::Inbound {
                        key,
                        pending: false,
                    });
                }
            }
            Change::Inbound { key, pending: true } => {
                let i = self.add(Change::Inbound {
                    key: key.clone(),
                    pending: true,
                });
                self.inbound.insert(key, i);
            }
            other => {
                self.add(other);
            }
        }
    }

    /// The changes to commit, in order; empties the batch. Returns with them the ids of
    /// messages it did not write after all (no row points at them): the writer forgets them.
    pub(super) fn take(&mut self) -> (Vec<Change>, Vec<u64>) {
        let mut unwritten = Vec::new();
        let now = Instant::now();
        for (id, (i, rows, message)) in std::mem::take(&mut self.messages) {
            let record = (rows > 0)
                .then(|| super::encode_retained(&message, now))
                .flatten();
            match (record, self.changes.get_mut(i)) {
                (Some(record), Some(Some(Change::Message { record: slot, .. }))) => {
                    *slot = record;
                }
                (record, _) => {
                    self.cancel(i);
                    unwritten.push(id);
                    if rows > 0 && record.is_none() {
                        // Logged by the encoder. A row without its message would be dropped
                        // at the next start: these deliveries stay in memory only.
                        let lost: Vec<usize> = (self.rows.values())
                            .filter(|(_, m)| *m == id)
                            .map(|(i, _)| *i)
                            .collect();
                        lost.into_iter().for_each(|i| self.cancel(i));
                    }
                }
            }
        }
        let changes = self.changes.drain(..).flatten().collect();
        self.rows.clear();
        self.inbound.clear();
        (changes, unwritten)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(message: u64) -> Vec<u8> {
        Row {
            message,
            qos: crate::protocol::QoS::ExactlyOnce,
            retain: false,
            released: false,
            packet_id: 0,
            extra: None,
        }
        .encode()
    }

    fn message() -> Arc<Message> {
        Arc::new(Message {
            topic: crate::protocol::ByteStr::from_static("t").unwrap(),
            payload: bytes::Bytes::from_static(b"m"),
            qos: crate::protocol::QoS::ExactlyOnce,
            retain: false,
            properties: Default::default(),
            publisher: Arc::from("p"),
            expires_at: None,
        })
    }

    #[test]
    fn a_delivery_done_within_its_batch_writes_nothing() {
        let mut b = Batch::default();
        b.message(7, message());
        b.row("a\u{0}1".into(), row(7), 7);
        b.row("b\u{0}1".into(), row(7), 7);
        b.push(Change::Released {
            key: "b\u{0}1".into(),
            packet_id: 9,
        });
        b.push(Change::Entry {
            key: "a\u{0}1".into(),
            row: None,
        });
        b.push(Change::Inbound {
            key: "p\u{0}0001".into(),
            pending: true,
        });
        b.push(Change::Inbound {
            key: "p\u{0}0001".into(),
            pending: false,
        });
        let (changes, unwritten) = b.take();
        assert!(unwritten.is_empty(), "b's row still points at message 7");
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(
            matches!(&changes[0], Change::Message { id: 7, record } if !record.is_empty()),
            "encoded at the end"
        );
        match &changes[1] {
            Change::Entry { key, row: Some(r) } => {
                assert_eq!(&**key, "b\u{0}1");
                assert!(Row::decode(r).unwrap().released, "PUBREC'd in place");
            }
            other => panic!("{other:?}"),
        }

        // Both rows done: the message is not written either.
        b.message(8, message());
        b.row("a\u{0}2".into(), row(8), 8);
        b.push(Change::Entry {
            key: "a\u{0}2".into(),
            row: None,
        });
        let (changes, unwritten) = b.take();
        assert_eq!(unwritten, [8]);
        assert!(changes.is_empty(), "nothing reaches the disk: {changes:?}");
    }
}
