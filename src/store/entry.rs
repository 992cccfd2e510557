//! Rows of a kept session's deliveries and inbound QoS 2 identifiers. A delivery's row points
//! at its message, which is stored once however many sessions it goes to (`messages`, counted
//! by the rows that point at it, see `RedbStore::commit`).
//!
//! ```text
//! key:  client id, NUL, sequence number as 8 hex digits (a session's rows sort together, in
//!       order of number)
//! row:  [1] [message id: u64 BE] [qos: u8] [flags: u8, 1 = RETAIN, 2 = PUBREC'd]
//!       [packet id: u16 BE, 0 = the one the number gives] [n: u16 BE] [n subscription ids:
//!       u32 BE] [shared subscription: u16 BE len, bytes]
//! inbound QoS 2 id awaiting PUBREL: key = client id, NUL, packet id as 4 hex digits; no row
//! ```

use crate::protocol::QoS;
use crate::session::{Delivery, DeliveryExtra, SubscriptionIds};
use std::sync::Arc;

/// The first byte of a delivery row.
const ROW_V1: u8 = 1;
const RETAIN: u8 = 1;
const RELEASED: u8 = 2;

/// The key of delivery `seq` of `client_id`'s session.
pub(crate) fn entry_key(client_id: &str, seq: u32) -> String {
    format!("{client_id}\0{seq:08x}")
}

/// The key of inbound QoS 2 identifier `packet_id` of `client_id`'s session.
pub(crate) fn inbound_key(client_id: &str, packet_id: u16) -> String {
    format!("{client_id}\0{packet_id:04x}")
}

/// The client id and number in a delivery's or an inbound identifier's key.
pub(crate) fn split_key(key: &str) -> Option<(&str, u32)> {
    let (client_id, hex) = key.split_once('\0')?;
    Some((client_id, u32::from_str_radix(hex, 16).ok()?))
}

/// The client id and number of a delivery's key as [`entry_key`] writes it (eight lowercase
/// hex digits, not 0); `None` for any other key.
pub(crate) fn split_entry_key(key: &str) -> Option<(&str, u32)> {
    let (client_id, hex) = key.split_once('\0')?;
    let canonical = hex.len() == 8 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let seq = u32::from_str_radix(hex, 16).ok().filter(|_| canonical)?;
    (seq != 0).then_some((client_id, seq))
}

/// The delivery rows of the persistent sessions, decoded and grouped by session as they are
/// read: a restart with 10 million queued deliveries held each as a key string and a byte
/// vector first, and peaked at 1.95 GB where the deliveries, once in place, take 0.6. A queued
/// delivery is kept as its number only: it is read back from the store when it is sent.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Deliveries {
    /// Each client id with its rows, in the order of their keys.
    pub(crate) clients: Vec<(String, ClientRows)>,
    /// Keys that are not a delivery's key as Roost writes it: deleted at start.
    pub(crate) strays: Vec<String>,
}

/// One session's delivery rows, as start-up needs them.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct ClientRows {
    /// Number and row of each delivery in flight under an identifier of its own, or
    /// PUBREC'd: put back whole.
    pub(crate) whole: Vec<(u32, Row)>,
    /// Numbers of the queued ones.
    pub(crate) queued: Vec<u32>,
}

impl Deliveries {
    /// Adds the row `bytes` at `key` (keys come in order, so a session's rows together). A row
    /// that does not decode is the error, named.
    pub(crate) fn push(&mut self, key: &str, bytes: &[u8]) -> Result<(), super::StoreError> {
        let row = Row::decode(bytes).map_err(|why| super::StoreError::Record {
            what: "delivery",
            key: key.to_owned(),
            why,
        })?;
        let Some((client_id, seq)) = split_entry_key(key) else {
            self.strays.push(key.to_owned());
            return Ok(());
        };
        if !matches!(self.clients.last(), Some((c, _)) if c == client_id) {
            (self.clients).push((client_id.to_owned(), ClientRows::default()));
        }
        let Some((_, rows)) = self.clients.last_mut() else {
            return Ok(());
        };
        if row.released || row.packet_id != 0 {
            rows.whole.push((seq, row));
        } else {
            rows.queued.push(seq);
        }
        Ok(())
    }

    /// The ids of the messages the rows put back whole point at.
    pub(crate) fn whole_messages(&self) -> impl Iterator<Item = u64> + '_ {
        self.clients
            .iter()
            .flat_map(|(_, rows)| rows.whole.iter().map(|(_, row)| row.message))
    }
}

/// What a delivery's row holds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    /// The message's id in `messages`.
    pub(crate) message: u64,
    /// The QoS it goes at.
    pub(crate) qos: QoS,
    /// The RETAIN flag it goes with.
    pub(crate) retain: bool,
    /// The client PUBREC'd it.
    pub(crate) released: bool,
    /// The identifier it went with, if not the one its number gives; else 0.
    pub(crate) packet_id: u16,
    /// Its subscription identifiers and shared subscription.
    pub(crate) extra: Option<Arc<DeliveryExtra>>,
}

impl Row {
    /// The row of `delivery`, whose message is `message`.
    pub(crate) fn of(delivery: &Delivery, message: u64, packet_id: u16) -> Self {
        Self {
            message,
            qos: delivery.qos,
            retain: delivery.retain,
            released: false,
            packet_id,
            extra: delivery.extra.clone(),
        }
    }

    /// The row's bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let ids: Vec<u32> = self
            .extra
            .as_ref()
            .map(|e| e.subscription_ids.to_vec())
            .unwrap_or_default();
        let shared = self.extra.as_ref().and_then(|e| e.shared.as_deref());
        let mut out = Vec::with_capacity(20 + 4 * ids.len());
        out.push(ROW_V1);
        out.extend_from_slice(&self.message.to_be_bytes());
        out.push(self.qos as u8);
        out.push((u8::from(self.retain) * RETAIN) | (u8::from(self.released) * RELEASED));
        out.extend_from_slice(&self.packet_id.to_be_bytes());
        let ids = &ids[..ids.len().min(usize::from(u16::MAX))];
        out.extend_from_slice(&(ids.len() as u16).to_be_bytes());
        for id in ids {
            out.extend_from_slice(&id.to_be_bytes());
        }
        let shared = shared.map_or(&[][..], |s| &s.as_bytes()[..s.len().min(0xFFFF)]);
        out.extend_from_slice(&(shared.len() as u16).to_be_bytes());
        out.extend_from_slice(shared);
        out
    }

    /// The row in `bytes`, or why it does not decode.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut r = super::record::Reader::new(bytes);
        let version = r.u8()?;
        if version != ROW_V1 {
            return Err(format!("unknown row version {version}"));
        }
        let message = r.u64()?;
        let qos = QoS::from_bits(r.u8()?).ok_or("bad QoS")?;
        let flags = r.u8()?;
        if flags & !(RETAIN | RELEASED) != 0 {
            return Err(format!("bad flags {flags:#04x}"));
        }
        let packet_id = r.u16()?;
        let n = r.u16()?;
        let mut ids = SubscriptionIds::default();
        for _ in 0..n {
            ids.append(&mut SubscriptionIds::one(Some(r.u32()?)));
        }
        let len = r.u16()?;
        let shared = std::str::from_utf8(r.take(usize::from(len))?)
            .map_err(|_| "shared subscription is not UTF-8")?;
        if !r.is_done() {
            return Err("bytes after the row".into());
        }
        Ok(Self {
            message,
            qos,
            retain: flags & RETAIN != 0,
            released: flags & RELEASED != 0,
            packet_id,
            extra: DeliveryExtra::new(ids, (!shared.is_empty()).then(|| Arc::from(shared))),
        })
    }

    /// The row marked PUBREC'd, sent as `packet_id`.
    pub(crate) fn released(bytes: &[u8], packet_id: u16) -> Result<Vec<u8>, String> {
        let mut row = Self::decode(bytes)?;
        row.released = true;
        row.packet_id = packet_id;
        Ok(row.encode())
    }

    /// The message id of an encoded row (0 if it has none it can name).
    pub(crate) fn message_of(bytes: &[u8]) -> u64 {
        bytes
            .get(1..9)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_be_bytes)
    }
}

/// Puts a session's sequence numbers in the order they were given. Numbers wrap past
/// `u32::MAX` to 1, and a session's live ones span far less than half the range, so the
/// oldest is the one after the widest gap between neighbours (going round).
pub(crate) fn order_by_seq<T>(items: &mut [(u32, T)]) {
    items.sort_unstable_by_key(|(seq, _)| *seq);
    let n = items.len();
    if n < 2 {
        return;
    }
    let gap = |i: usize| {
        let (a, b) = (items[i].0, items[(i + 1) % n].0);
        b.wrapping_sub(a)
    };
    let widest = (0..n).max_by_key(|&i| gap(i)).unwrap_or(n - 1);
    items.rotate_left((widest + 1) % n);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_round_trips_with_its_ids_and_group() {
        let mut ids = SubscriptionIds::one(Some(7));
        ids.append(&mut SubscriptionIds::one(Some(268_435_455)));
        let row = Row {
            message: 0x0102_0304_0506_0708,
            qos: QoS::ExactlyOnce,
            retain: true,
            released: false,
            packet_id: 513,
            extra: DeliveryExtra::new(ids, Some(Arc::from("$share/g/a/#"))),
        };
        let bytes = row.encode();
        assert_eq!(Row::decode(&bytes).unwrap(), row);
        assert_eq!(Row::message_of(&bytes), row.message);
        let released = Row::decode(&Row::released(&bytes, 9).unwrap()).unwrap();
        assert!(released.released && released.packet_id == 9);
        for cut in 0..bytes.len() {
            assert!(Row::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn keys_split_back_and_sort_by_number() {
        let keys: Vec<String> = [255, 16, 4096].map(|s| entry_key("dev", s)).into();
        let mut sorted = keys.clone();
        sorted.sort();
        let seqs: Vec<u32> = sorted.iter().map(|k| split_key(k).unwrap().1).collect();
        assert_eq!(seqs, [16, 255, 4096]);
        assert_eq!(
            split_key(&inbound_key("a\u{1}b", 65535)),
            Some(("a\u{1}b", 65535))
        );
    }

    #[test]
    fn numbers_that_wrapped_come_back_in_the_order_given() {
        let mut items: Vec<(u32, ())> = [3, u32::MAX - 1, 1, u32::MAX, 2]
            .into_iter()
            .map(|s| (s, ()))
            .collect();
        order_by_seq(&mut items);
        let seqs: Vec<u32> = items.iter().map(|i| i.0).collect();
        assert_eq!(seqs, [u32::MAX - 1, u32::MAX, 1, 2, 3]);
        let mut plain: Vec<(u32, ())> = [5, 9, 7].into_iter().map(|s| (s, ())).collect();
        order_by_seq(&mut plain);
        assert_eq!(plain.iter().map(|i| i.0).collect::<Vec<_>>(), [5, 7, 9]);
    }

    #[test]
    fn delivery_rows_group_by_session_and_odd_keys_are_strays() {
        let row = Row {
            message: 9,
            qos: QoS::AtLeastOnce,
            retain: false,
            released: false,
            packet_id: 0,
            extra: None,
        };
        let bytes = row.encode();
        let released = Row {
            released: true,
            ..row.clone()
        };
        let mut d = Deliveries::default();
        d.push(&entry_key("a", 9), &released.encode()).unwrap();
        for key in [
            entry_key("a", 1),
            entry_key("a", 2),
            "a\u{0}0000003".into(),  // seven digits: not a key Roost writes
            "a\u{0}0000000A".into(), // uppercase
            entry_key("a", 0),
            "no separator".into(),
            entry_key("b", 7),
        ] {
            d.push(&key, &bytes).unwrap();
        }
        assert_eq!(
            d.clients,
            [
                (
                    "a".to_string(),
                    ClientRows {
                        whole: vec![(9, released)],
                        queued: vec![1, 2],
                    }
                ),
                (
                    "b".to_string(),
                    ClientRows {
                        whole: Vec::new(),
                        queued: vec![7],
                    }
                ),
            ]
        );
        assert_eq!(d.strays.len(), 4);
        let e = d.push(&entry_key("c", 1), &[0xFF]).unwrap_err().to_string();
        assert!(e.contains("delivery") && e.contains("c\\0"), "{e}");
    }
}
