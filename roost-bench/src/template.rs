//! A PUBLISH encoded once with Roost's codec; the publishers copy it and patch two fields in
//! place (packet id, send timestamp) instead of encoding each message.

use anyhow::{Context, Result};
use bytes::{Bytes, BytesMut};
use roost::protocol::{ByteStr, ProtocolVersion, Publish, QoS};

/// The wire bytes of one PUBLISH and where its variable fields sit.
#[derive(Debug, Clone)]
pub struct Template {
    bytes: Vec<u8>,
    /// Offset of the two packet id bytes (QoS 1/2 only).
    id_at: Option<usize>,
    /// Offset of the payload, whose first 8 bytes may carry a timestamp.
    payload_at: usize,
}

impl Template {
    /// `topic` with a payload of `payload` bytes (filled with 'x').
    pub fn new(topic: &str, qos: QoS, payload: usize, version: ProtocolVersion) -> Result<Self> {
        let mut p = Publish::new(
            ByteStr::try_from(topic).context("topic")?,
            Bytes::from(vec![b'x'; payload]),
        );
        p.qos = qos;
        // A placeholder: every copy gets its own id.
        p.packet_id = if qos == QoS::AtMostOnce { 0 } else { 1 };
        let mut out = BytesMut::with_capacity(p.encoded_len(version));
        p.encode(version, &mut out).context("encoding PUBLISH")?;
        // Fixed header: the first byte, then the remaining length (its last byte has bit 7 clear).
        let remaining_len_bytes = out[1..].iter().take_while(|&&b| b & 0x80 != 0).count() + 1;
        let id_at = (qos != QoS::AtMostOnce).then_some(1 + remaining_len_bytes + 2 + topic.len());
        Ok(Self {
            payload_at: out.len() - payload,
            bytes: out.to_vec(),
            id_at,
        })
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Appends one copy with its packet id (ignored at QoS 0) and, when given, a timestamp in
    /// the payload's first 8 bytes (little-endian nanoseconds).
    pub fn put(&self, out: &mut Vec<u8>, packet_id: u16, stamp: Option<u64>) {
        let at = out.len();
        out.extend_from_slice(&self.bytes);
        if let Some(i) = self.id_at {
            out[at + i..at + i + 2].copy_from_slice(&packet_id.to_be_bytes());
        }
        if let Some(ns) = stamp {
            let p = at + self.payload_at;
            out[p..p + 8].copy_from_slice(&ns.to_le_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame;

    #[test]
    fn patched_copies_read_back() {
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            for payload in [8usize, 64, 200, 20_000] {
                let t = Template::new("bench/3", QoS::AtLeastOnce, payload, version).unwrap();
                let mut out = Vec::new();
                t.put(&mut out, 0xBEEF, Some(42));
                let f = frame::scan(&out).unwrap().unwrap();
                let p = frame::publish(f.first, f.body(&out), version.is_v5()).unwrap();
                assert_eq!((p.packet_id, p.payload.len()), (0xBEEF, payload));
                assert_eq!(p.payload[..8], 42u64.to_le_bytes());
            }
        }
    }
}
