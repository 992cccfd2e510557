//! The store phase of `retained`: one connection publishes the N retained messages,
//! --window unacknowledged at a time, and waits for the last acknowledgement.

use super::{SETUP_MAX, TOPIC_PREFIX};
use crate::cli::Common;
use crate::client::{self, Client, Dial, READ_CHUNK};
use crate::frame::{self, PUBACK, PUBCOMP, PUBREC, PUBREL};
use crate::report::count;
use anyhow::{Context, Result, bail};
use bytes::{Buf, Bytes, BytesMut};
use roost::protocol::{ByteStr, ProtocolVersion, Publish, QoS};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::time::{sleep_until, timeout};

/// Longest wait for the next acknowledgement, before giving up on the broker.
const ACK_MAX: Duration = Duration::from_secs(10);
/// Bytes of PUBLISHes gathered into one write.
const BATCH_BYTES: usize = 64 * 1024;

/// What the store phase got back.
pub struct Stored {
    /// Acknowledged with success (PUBACK, or PUBCOMP at QoS 2).
    pub acked: u64,
    /// Acknowledged with a v5 failure reason.
    pub refused: u64,
    /// From CONNACK to the last acknowledgement.
    pub secs: f64,
}

/// Publishes the N retained messages from one connection, at most --window unacknowledged;
/// returns after the last acknowledgement and a DISCONNECT.
///
/// The window is refilled after every read, however few acks it brought (unlike `publisher`,
/// which waits for a quarter window): Mosquitto leaves Nagle on (`set_tcp_nodelay false`), so
/// it sends the first PUBACK of a burst alone and holds the rest until that one's TCP ACK,
/// which a receiver that sends nothing back delays by 40 ms. Waiting would store 2,300 msg/s.
pub async fn run(common: &Common, dial: Dial, id: &str, n: u64) -> Result<Stored> {
    let mut client = timeout(SETUP_MAX, Client::connect(dial, id))
        .await
        .context("the publisher got no CONNACK within 10 s")??;
    let qos = if common.qos == 2 {
        QoS::ExactlyOnce
    } else {
        QoS::AtLeastOnce
    };
    let payload = Bytes::from(vec![b'x'; common.payload]);
    let window = common.window;
    let mut out = BytesMut::with_capacity(BATCH_BYTES + 1024);
    let (mut next, mut in_flight, mut acked, mut refused) = (0u64, 0u32, 0u64, 0u64);
    let start = Instant::now();
    let (mut tick, mut last_ack) = (1u64, start);
    while acked + refused < n {
        while next < n && in_flight < window {
            encode(&mut out, next, qos, &payload, client.version)?;
            next += 1;
            in_flight += 1;
            if out.len() >= BATCH_BYTES {
                client.stream.send_all(&out).await.context("write")?;
                out.clear();
            }
        }
        // The tail of the batch, and the PUBRELs of the last read.
        if !out.is_empty() {
            client.stream.send_all(&out).await.context("write")?;
            out.clear();
        }
        client.rbuf.reserve(READ_CHUNK);
        let read = tokio::select! {
            r = client.stream.read_buf(&mut client.rbuf) => r.context("reading acknowledgements")?,
            _ = sleep_until((start + Duration::from_secs(tick)).into()) => {
                eprintln!(
                    "[{tick:>3}s] retained storing  acked {}  in flight {in_flight}",
                    count(acked)
                );
                tick += 1;
                continue;
            }
            _ = sleep_until((last_ack + ACK_MAX).into()) => bail!(
                "no acknowledgement for {} s with {in_flight} retained PUBLISHes in flight \
                 ({} acknowledged)",
                ACK_MAX.as_secs(),
                count(acked)
            ),
        };
        if read == 0 {
            bail!(
                "broker closed the publisher's connection after {} acknowledgements",
                count(acked)
            );
        }
        last_ack = Instant::now();
        while let Some(f) = frame::scan(&client.rbuf)? {
            match f.kind() {
                PUBACK | PUBREC | PUBCOMP => {
                    let (id, reason) = frame::ack(f.body(&client.rbuf))?;
                    if f.kind() == PUBREC && reason < 0x80 {
                        out.extend_from_slice(&frame::ack_bytes(PUBREL, id));
                    } else {
                        in_flight = in_flight.saturating_sub(1);
                        if reason >= 0x80 {
                            refused += 1;
                        } else {
                            acked += 1;
                        }
                    }
                }
                _ => return Err(client::unexpected(&mut client.rbuf, client.version)),
            }
            client.rbuf.advance(f.len);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!("[store] {secs:.2} s, {} acknowledged", count(acked));
    // Best effort: everything is acknowledged, the figures are taken.
    let _ = client.stream.send_all(&client::DISCONNECT).await;
    Ok(Stored {
        acked,
        refused,
        secs,
    })
}

/// Appends message `i`: retained, on `bench/retained/<i>`, packet id `i % 65535 + 1` (--window
/// is at most 32,768, so an id in flight is never reused). Each topic differs, so each message
/// is encoded in full: a few milliseconds for 100,000, and the store is not what is measured.
fn encode(
    out: &mut BytesMut,
    i: u64,
    qos: QoS,
    payload: &Bytes,
    version: ProtocolVersion,
) -> Result<()> {
    let topic = ByteStr::try_from(format!("{TOPIC_PREFIX}{i}")).context("topic")?;
    let mut p = Publish::new(topic, payload.clone());
    p.qos = qos;
    p.retain = true;
    p.packet_id = (i % 65_535) as u16 + 1;
    p.encode(version, out).context("encoding PUBLISH")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_messages_are_retained_with_their_topic() {
        let payload = Bytes::from_static(b"xyz");
        let mut out = BytesMut::new();
        for i in [0u64, 65_534, 65_535] {
            encode(&mut out, i, QoS::AtLeastOnce, &payload, ProtocolVersion::V5).unwrap();
        }
        let mut got = Vec::new();
        while let Some(f) = frame::scan(&out).unwrap() {
            let p = frame::publish(f.first, f.body(&out), true).unwrap();
            assert!(p.retain && p.qos == 1 && p.payload == b"xyz");
            got.push((String::from_utf8(p.topic.to_vec()).unwrap(), p.packet_id));
            out.advance(f.len);
        }
        let topic = |i: u32| format!("bench/retained/{i}");
        assert_eq!(
            got,
            [(topic(0), 1), (topic(65_534), 65_535), (topic(65_535), 1)]
        );
    }
}
