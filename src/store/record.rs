//! Records: how a message is laid out on disk. The topic, properties and payload are a v5
//! PUBLISH as the codec writes it (so every property round-trips, and a record is checked by
//! the same strict decoder as the wire); before it, a version byte, the expiry as wall-clock
//! time (the process's own clock starts again at each start), the QoS and the publisher.
//!
//! ```text
//! retained: [1] [expires: u64 BE, Unix ms, 0 = never] [qos: u8] [publisher: u16 BE len, bytes]
//!           [v5 PUBLISH packet]
//! ```

use crate::protocol::{
    DecodeLimits, Packet, ProtocolVersion::V5, Publish, QoS, RetainHandling, SubscriptionOptions,
    decode,
};
use crate::session::{Deadline, Message};
use bytes::{BufMut, BytesMut};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The first byte of a retained record.
const RETAINED_V1: u8 = 1;

/// Milliseconds since the Unix epoch now.
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A retained message's record; `None` (logged) for one the codec cannot write as a v5
/// PUBLISH (a 3.1.1 PUBLISH at the largest remaining length grows by its property length): it
/// stays in memory only, rather than leave a record that stops the next start-up.
pub(crate) fn encode_retained(m: &Message, now: Instant) -> Option<Vec<u8>> {
    let p = Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: m.retain,
        topic: m.topic.clone(),
        packet_id: 0,
        properties: m.properties.clone(),
        payload: m.payload.clone(),
    };
    let mut out = BytesMut::with_capacity(16 + m.publisher.len() + p.encoded_len(V5));
    out.put_u8(RETAINED_V1);
    let expires = m.expires_at.map_or(0, |at| {
        unix_ms().saturating_add(at.remaining_ms(now)).max(1)
    });
    out.put_u64(expires);
    out.put_u8(m.qos as u8);
    let publisher = &m.publisher.as_bytes()[..m.publisher.len().min(u16::MAX as usize)];
    out.put_u16(publisher.len() as u16);
    out.put_slice(publisher);
    if let Err(e) = p.encode(V5, &mut out) {
        tracing::warn!(topic = %m.topic, "retained message not kept on disk: {e}");
        return None;
    }
    Some(out.to_vec())
}

/// The message in a retained record, or why it does not decode; `Ok(None)` when it expired
/// while the broker was down.
pub(crate) fn decode_retained(record: &[u8], now: Instant) -> Result<Option<Message>, String> {
    let mut at = 0;
    let mut take = |n: usize| {
        let part = record
            .get(at..at + n)
            .ok_or_else(|| format!("cut short at byte {at}"))?;
        at += n;
        Ok::<_, String>(part)
    };
    let version = take(1)?[0];
    if version != RETAINED_V1 {
        return Err(format!("unknown record version {version}"));
    }
    let expires = u64::from_be_bytes(take(8)?.try_into().map_err(|_| "expiry")?);
    let qos = QoS::from_bits(take(1)?[0]).ok_or("bad QoS")?;
    let len = u16::from_be_bytes(take(2)?.try_into().map_err(|_| "publisher length")?);
    let publisher = std::str::from_utf8(take(usize::from(len))?)
        .map_err(|_| "publisher is not UTF-8")?
        .to_owned();
    let mut packet = BytesMut::from(&record[at..]);
    let expires_at = match expires {
        0 => None,
        unix => match unix.checked_sub(unix_ms()) {
            Some(left) if left > 0 => Some(Deadline::after_ms(now, left)),
            _ => return Ok(None),
        },
    };
    match decode(&mut packet, V5, &DecodeLimits::default()) {
        Ok(Some(Packet::Publish(p))) if packet.is_empty() => Ok(Some(Message {
            topic: p.topic,
            payload: p.payload,
            qos,
            retain: p.retain,
            properties: p.properties,
            publisher: Arc::from(publisher),
            expires_at,
        })),
        Ok(Some(_)) => Err("not a PUBLISH, or bytes after it".into()),
        Ok(None) => Err("the PUBLISH is cut short".into()),
        Err(e) => Err(format!("the PUBLISH does not decode: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ByteStr, Props};
    use bytes::Bytes;

    fn message(expiry_secs: Option<u32>, now: Instant) -> Message {
        let mut properties = Props::default();
        let p = properties.make_mut();
        p.content_type = Some(ByteStr::from_static("text/plain").unwrap());
        p.user_properties.push((
            ByteStr::from_static("k").unwrap(),
            ByteStr::from_static("v").unwrap(),
        ));
        Message {
            topic: ByteStr::from_static("a/b").unwrap(),
            payload: Bytes::from_static(b"payload"),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties,
            publisher: Arc::from("publisher-1"),
            expires_at: expiry_secs.map(|s| Deadline::after(now, s)),
        }
    }

    #[test]
    fn a_retained_message_round_trips_with_its_properties() {
        let now = Instant::now();
        for expiry in [None, Some(3600)] {
            let m = message(expiry, now);
            let back = decode_retained(&encode_retained(&m, now).unwrap(), now)
                .unwrap()
                .unwrap();
            assert_eq!(back.expires_at.is_some(), expiry.is_some());
            assert_eq!(
                Message {
                    expires_at: m.expires_at,
                    ..back.clone()
                },
                m
            );
            if let Some(at) = back.expires_at {
                let left = at.remaining_ms(now);
                assert!((3_599_000..=3_600_000).contains(&left), "{left}");
            }
        }
    }

    #[test]
    fn damaged_records_are_refused_with_a_reason() {
        let now = Instant::now();
        let good = encode_retained(&message(None, now), now).unwrap();
        assert!(decode_retained(&[], now).is_err());
        assert!(decode_retained(&[9], now).unwrap_err().contains("version"));
        for cut in [5, 12, good.len() - 1] {
            assert!(decode_retained(&good[..cut], now).is_err(), "cut at {cut}");
        }
        let mut extra = good.clone();
        extra.push(0);
        assert!(
            decode_retained(&extra, now).is_err(),
            "a byte after the PUBLISH"
        );
        let mut bad_qos = good;
        bad_qos[9] = 3;
        assert!(decode_retained(&bad_qos, now).unwrap_err().contains("QoS"));
    }

    #[test]
    fn a_message_that_expired_while_down_is_not_restored() {
        let now = Instant::now();
        let mut record = encode_retained(&message(Some(1), now), now).unwrap();
        // An expiry in the past: 1 ms after the epoch.
        record[1..9].copy_from_slice(&1u64.to_be_bytes());
        assert_eq!(decode_retained(&record, now), Ok(None));
    }
}

/// The first byte of a session record.
const SESSION_V1: u8 = 1;

/// A persistent session as stored: whose it is and how long it lives. Its subscriptions are
/// rows of their own ([`encode_subscription`]), so that a SUBSCRIBE writes one small row
/// rather than the whole session again.
///
/// ```text
/// session:      [1] [expiry: u32 BE] [offline since: u64 BE, Unix ms, 0 = connected]
///               [realm: u64 BE] [user: 0 | 1, u16 BE len, bytes]
/// subscription: [options: u8, as SUBSCRIBE's] [id: u32 BE, 0 = none]
///               (key: client id, NUL, filter: neither may hold a NUL)
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionRecord {
    /// Session Expiry Interval, seconds; `u32::MAX` never.
    pub(crate) expiry: u32,
    /// When its connection went away, Unix ms; 0 while one was attached (its expiry then
    /// counts from the next start).
    pub(crate) offline_since: u64,
    /// The rules it was made under (`Realm::id`).
    pub(crate) realm: u64,
    /// The user it belongs to; `None` for an anonymous client.
    pub(crate) user: Option<String>,
}

/// A subscription's row: the options granted and its Subscription Identifier.
pub(crate) fn encode_subscription(o: SubscriptionOptions, id: Option<u32>) -> Vec<u8> {
    let mut out = Vec::with_capacity(5);
    out.push(
        o.qos as u8
            | u8::from(o.no_local) << 2
            | u8::from(o.retain_as_published) << 3
            | (o.retain_handling as u8) << 4,
    );
    out.extend_from_slice(&id.unwrap_or(0).to_be_bytes());
    out
}

/// The options and identifier in a subscription's row, or why they do not decode.
pub(crate) fn decode_subscription(
    row: &[u8],
) -> Result<(SubscriptionOptions, Option<u32>), String> {
    let [byte, a, b, c, d] = *row else {
        return Err(format!("{} bytes, not 5", row.len()));
    };
    let retain_handling = match (byte >> 4) & 0x03 {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendIfNew,
        2 => RetainHandling::DoNotSend,
        _ => return Err(format!("bad options {byte:#04x}")),
    };
    if byte & 0xC0 != 0 {
        return Err(format!("bad options {byte:#04x}"));
    }
    let options = SubscriptionOptions {
        qos: QoS::from_bits(byte & 0x03).ok_or("bad QoS")?,
        no_local: byte & 0x04 != 0,
        retain_as_published: byte & 0x08 != 0,
        retain_handling,
    };
    let id = u32::from_be_bytes([a, b, c, d]);
    Ok((options, (id != 0).then_some(id)))
}

/// A subscription row's key: the client id and the filter, NUL between (MQTT strings hold no
/// NUL, so the split is unambiguous and a session's rows sort together).
pub(crate) fn subscription_key(client_id: &str, filter: &str) -> String {
    format!("{client_id}\0{filter}")
}

/// The client id and filter of a subscription row's key.
pub(crate) fn split_subscription_key(key: &str) -> Option<(&str, &str)> {
    key.split_once('\0')
}

impl SessionRecord {
    /// The record's bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = BytesMut::with_capacity(32);
        out.put_u8(SESSION_V1);
        out.put_u32(self.expiry);
        out.put_u64(self.offline_since);
        out.put_u64(self.realm);
        match &self.user {
            None => out.put_u8(0),
            Some(u) => {
                out.put_u8(1);
                put_str(&mut out, u);
            }
        }
        out.to_vec()
    }

    /// The session in a record, or why it does not decode.
    pub(crate) fn decode(record: &[u8]) -> Result<Self, String> {
        let mut r = Reader {
            bytes: record,
            at: 0,
        };
        let version = r.u8()?;
        if version != SESSION_V1 {
            return Err(format!("unknown record version {version}"));
        }
        let expiry = r.u32()?;
        let offline_since = r.u64()?;
        let realm = r.u64()?;
        let user = match r.u8()? {
            0 => None,
            1 => Some(r.str()?),
            other => return Err(format!("bad user flag {other}")),
        };
        if r.at != record.len() {
            return Err("bytes after the user".into());
        }
        Ok(Self {
            expiry,
            offline_since,
            realm,
            user,
        })
    }

    /// Seconds of its expiry left at `now_ms` (Unix), counting from now for a session whose
    /// connection was attached when it was written; `None` once it has
    /// expired, `Some(u32::MAX)` for one that never does.
    pub(crate) fn remaining_secs(&self, now_ms: u64) -> Option<u32> {
        if self.expiry == u32::MAX {
            return Some(u32::MAX);
        }
        if self.offline_since == 0 {
            return Some(self.expiry);
        }
        let gone = now_ms.saturating_sub(self.offline_since) / 1000;
        let left = u64::from(self.expiry).checked_sub(gone)?;
        (left > 0).then_some(left as u32)
    }
}

/// The first byte of a will's record.
const WILL_V1: u8 = 1;

/// A held will's record: when it is due (Unix ms), then the message as a retained one's
/// record. `None` for one the codec cannot write (see [`encode_retained`]).
pub(crate) fn encode_will(will: &Message, due_unix_ms: u64, now: Instant) -> Option<Vec<u8>> {
    let message = encode_retained(will, now)?;
    let mut out = Vec::with_capacity(9 + message.len());
    out.push(WILL_V1);
    out.extend_from_slice(&due_unix_ms.to_be_bytes());
    out.extend_from_slice(&message);
    Some(out)
}

/// When a will's record says it is due (Unix ms), and its message; or why it does not decode.
pub(crate) fn decode_will(record: &[u8], now: Instant) -> Result<(u64, Message), String> {
    let (&version, rest) = record.split_first().ok_or("empty")?;
    if version != WILL_V1 {
        return Err(format!("unknown record version {version}"));
    }
    let due = rest.get(..8).ok_or("cut short")?;
    let due = u64::from_be_bytes(due.try_into().map_err(|_| "due time")?);
    // A will's own Message Expiry Interval counts from its publication: it has no expiry yet.
    let message =
        decode_retained(&rest[8..], now)?.ok_or("a will does not expire before it is sent")?;
    Ok((due, message))
}

/// Milliseconds since the Unix epoch now, for session records.
pub(crate) fn now_unix_ms() -> u64 {
    unix_ms()
}

fn put_str(out: &mut BytesMut, s: &str) {
    let s = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    out.put_u16(s.len() as u16);
    out.put_slice(s);
}

/// Reads a record's fields in order, each failing with where the record was cut short.
/// Reads a record's fields in order; each read names where the record ran out.
pub(super) struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `bytes`.
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }
    /// Whether every byte was read.
    pub(super) fn is_done(&self) -> bool {
        self.at == self.bytes.len()
    }
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let part = self
            .bytes
            .get(self.at..self.at + n)
            .ok_or_else(|| format!("cut short at byte {}", self.at))?;
        self.at += n;
        Ok(part)
    }
    pub(super) fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    pub(super) fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    pub(super) fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(super) fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    fn str(&mut self) -> Result<String, String> {
        let n = usize::from(self.u16()?);
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| "a string is not UTF-8".to_string())
    }
}

#[cfg(test)]
mod session_tests {
    use super::*;

    fn record() -> SessionRecord {
        SessionRecord {
            expiry: 3600,
            offline_since: 1_000_000,
            realm: 2,
            user: Some("alice".into()),
        }
    }

    #[test]
    fn a_subscription_row_round_trips() {
        let o = SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            no_local: true,
            retain_as_published: true,
            retain_handling: RetainHandling::DoNotSend,
        };
        for (o, id) in [(o, Some(42)), (SubscriptionOptions::default(), None)] {
            assert_eq!(
                decode_subscription(&encode_subscription(o, id)),
                Ok((o, id))
            );
        }
        assert!(
            decode_subscription(&[0x30, 0, 0, 0, 0]).is_err(),
            "retain handling 3"
        );
        assert!(decode_subscription(&[0, 0, 0, 0]).is_err());
        let key = subscription_key("dev", "$share/g/a/+");
        assert_eq!(split_subscription_key(&key), Some(("dev", "$share/g/a/+")));
    }

    #[test]
    fn a_session_round_trips() {
        let r = record();
        assert_eq!(SessionRecord::decode(&r.encode()), Ok(r.clone()));
        let anonymous = SessionRecord { user: None, ..r };
        assert_eq!(SessionRecord::decode(&anonymous.encode()), Ok(anonymous));
    }

    #[test]
    fn a_damaged_session_record_is_refused() {
        let good = record().encode();
        for cut in 0..good.len() {
            assert!(SessionRecord::decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(SessionRecord::decode(&longer).is_err());
    }

    #[test]
    fn expiry_counts_from_the_disconnect() {
        let r = record(); // offline since 1,000,000 ms, 3600 s
        assert_eq!(r.remaining_secs(1_000_000 + 600_000), Some(3000));
        assert_eq!(r.remaining_secs(1_000_000 + 3_600_000), None);
        let connected = SessionRecord {
            offline_since: 0,
            ..record()
        };
        assert_eq!(connected.remaining_secs(u64::MAX), Some(3600));
        let forever = SessionRecord {
            expiry: u32::MAX,
            ..record()
        };
        assert_eq!(forever.remaining_secs(u64::MAX), Some(u32::MAX));
    }
}
