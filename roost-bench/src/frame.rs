//! The hot-path reader: finds packet boundaries in received bytes and pulls out the few fields a
//! load generator needs (QoS, packet id, payload) without building a `Packet`.
//!
//! It checks framing only (lengths, bounds), never allocates, and must never be used for
//! anything but PUBLISH and the four acknowledgements: every other packet goes through
//! `roost::protocol::decode`, which checks everything.

use anyhow::{Result, bail};

/// Packet types (first byte >> 4) the hot path handles itself.
pub const PUBLISH: u8 = 3;
pub const PUBACK: u8 = 4;
pub const PUBREC: u8 = 5;
pub const PUBREL: u8 = 6;
pub const PUBCOMP: u8 = 7;

/// One whole packet at the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// The fixed header's first byte: type and flags.
    pub first: u8,
    /// Bytes of fixed header (1 + the remaining length's bytes).
    pub header: usize,
    /// Bytes of the whole packet.
    pub len: usize,
}

impl Frame {
    pub fn kind(&self) -> u8 {
        self.first >> 4
    }

    /// The packet's bytes after the fixed header.
    pub fn body<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.header..self.len]
    }
}

/// The packet at the front of `buf`: `Ok(None)` until all of it has arrived.
pub fn scan(buf: &[u8]) -> Result<Option<Frame>> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let mut remaining = 0usize;
    for i in 0..4 {
        let Some(&byte) = buf.get(1 + i) else {
            return Ok(None);
        };
        remaining |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            let header = 2 + i;
            let len = header + remaining;
            if buf.len() < len {
                return Ok(None);
            }
            return Ok(Some(Frame { first, header, len }));
        }
    }
    bail!("broker sent a remaining length longer than 4 bytes")
}

/// What the hot path needs of a PUBLISH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishView<'a> {
    pub qos: u8,
    /// The RETAIN flag: a broker sets it on the retained messages a new subscription brings.
    pub retain: bool,
    /// The topic name's bytes (empty if a v5 Topic Alias stands for it; the bench's clients
    /// allow none).
    pub topic: &'a [u8],
    /// 0 for QoS 0.
    pub packet_id: u16,
    pub payload: &'a [u8],
}

/// Reads a PUBLISH body (`v5`: skip the properties).
pub fn publish(first: u8, body: &[u8], v5: bool) -> Result<PublishView<'_>> {
    let qos = (first >> 1) & 0x03;
    let Some(topic_len) = be16(body, 0) else {
        bail!("truncated PUBLISH from the broker");
    };
    let mut pos = 2 + usize::from(topic_len);
    let Some(topic) = body.get(2..pos) else {
        bail!("truncated PUBLISH from the broker");
    };
    let packet_id = if qos > 0 {
        let Some(id) = be16(body, pos) else {
            bail!("truncated PUBLISH from the broker");
        };
        pos += 2;
        id
    } else {
        0
    };
    if v5 {
        let Some((props, used)) = varint(body.get(pos..).unwrap_or(&[])) else {
            bail!("PUBLISH from the broker with a bad property length");
        };
        pos += used + props;
    }
    let Some(payload) = body.get(pos..) else {
        bail!("PUBLISH from the broker shorter than its topic and properties");
    };
    Ok(PublishView {
        qos,
        retain: first & 0x01 != 0,
        topic,
        packet_id,
        payload,
    })
}

/// The packet id of PUBACK/PUBREC/PUBREL/PUBCOMP and, in v5, its reason code (0 if absent).
pub fn ack(body: &[u8]) -> Result<(u16, u8)> {
    let Some(id) = be16(body, 0) else {
        bail!("acknowledgement from the broker without a packet id");
    };
    Ok((id, body.get(2).copied().unwrap_or(0)))
}

/// A 4-byte acknowledgement (3.1.1 form, also valid v5 with reason Success).
pub fn ack_bytes(kind: u8, packet_id: u16) -> [u8; 4] {
    let flags = if kind == PUBREL { 0x02 } else { 0x00 };
    let [hi, lo] = packet_id.to_be_bytes();
    [kind << 4 | flags, 2, hi, lo]
}

fn be16(buf: &[u8], at: usize) -> Option<u16> {
    let b = buf.get(at..at + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

fn varint(buf: &[u8]) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for (i, &byte) in buf.iter().take(4).enumerate() {
        value |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use roost::protocol::{ByteStr, ProtocolVersion, Publish, QoS};

    fn encoded(qos: QoS, version: ProtocolVersion, payload: usize) -> BytesMut {
        let mut p = Publish::new(
            ByteStr::from_static("a/b").unwrap(),
            Bytes::from(vec![7u8; payload]),
        );
        p.qos = qos;
        p.retain = qos == QoS::AtLeastOnce;
        p.packet_id = if qos == QoS::AtMostOnce { 0 } else { 513 };
        let mut out = BytesMut::new();
        p.encode(version, &mut out).unwrap();
        out
    }

    #[test]
    fn scans_and_reads_publish_in_both_versions() {
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            for (qos, id) in [(QoS::AtMostOnce, 0), (QoS::AtLeastOnce, 513)] {
                let buf = encoded(qos, version, 200);
                let f = scan(&buf).unwrap().unwrap();
                assert_eq!((f.kind(), f.header, f.len), (PUBLISH, 3, buf.len()));
                let p = publish(f.first, f.body(&buf), version.is_v5()).unwrap();
                assert_eq!((p.qos, p.packet_id), (qos as u8, id));
                assert_eq!((p.retain, p.topic), (qos == QoS::AtLeastOnce, &b"a/b"[..]));
                assert_eq!(p.payload, &[7u8; 200][..]);
            }
        }
    }

    #[test]
    fn waits_for_a_whole_packet() {
        let buf = encoded(QoS::AtMostOnce, ProtocolVersion::V3_1_1, 300);
        for cut in 0..buf.len() {
            assert_eq!(scan(&buf[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert!(scan(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]).is_err());
    }

    #[test]
    fn acks_round_trip() {
        let b = ack_bytes(PUBREL, 0x1234);
        assert_eq!(b, [0x62, 2, 0x12, 0x34]);
        let f = scan(&b).unwrap().unwrap();
        assert_eq!(ack(f.body(&b)).unwrap(), (0x1234, 0));
        assert_eq!(ack(&[0, 9, 0x10]).unwrap(), (9, 0x10));
    }
}
