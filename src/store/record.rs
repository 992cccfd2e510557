//! Records: how a message is laid out on disk. The topic, properties and payload are a v5
//! PUBLISH as the codec writes it (so every property round-trips, and a record is checked by
//! the same strict decoder as the wire); before it, a version byte, the expiry as wall-clock
//! time (the process's own clock starts again at each start), the QoS and the publisher.
//!
//! ```text
//! retained: [1] [expires: u64 BE, Unix ms, 0 = never] [qos: u8] [publisher: u16 BE len, bytes]
//!           [v5 PUBLISH packet]
//! ```

use crate::protocol::{DecodeLimits, Packet, ProtocolVersion::V5, Publish, QoS, decode};
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

/// A retained message's record.
pub(crate) fn encode_retained(m: &Message, now: Instant) -> Vec<u8> {
    let p = Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: true,
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
    // A message that was decoded once encodes again; if not, the record is left without it and
    // fails to decode at start-up, which is reported there.
    let _ = p.encode(V5, &mut out);
    out.to_vec()
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
            retain: true,
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
            let back = decode_retained(&encode_retained(&m, now), now)
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
        let good = encode_retained(&message(None, now), now);
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
        let mut record = encode_retained(&message(Some(1), now), now);
        // An expiry in the past: 1 ms after the epoch.
        record[1..9].copy_from_slice(&1u64.to_be_bytes());
        assert_eq!(decode_retained(&record, now), Ok(None));
    }
}
