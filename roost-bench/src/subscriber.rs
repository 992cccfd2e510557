//! The subscriber's hot loop: read as much as the socket holds, walk the packets in place,
//! count PUBLISHes, answer QoS 1/2 with pre-built 4-byte acks in one write per read, and (for
//! the latency scenario) read the send time out of the payload. Nothing is allocated per
//! message and the shared counter is bumped once per read.

use crate::client::{self, Client, READ_CHUNK};
use crate::frame::{self, PUBCOMP, PUBLISH, PUBREC, PUBREL};
use crate::histogram::Histogram;
use crate::pacer::Pacer;
use crate::stats::ClientStats;
use anyhow::{Context, Result, bail};
use bytes::Buf;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

/// Latency recording: payloads carry nanoseconds since `start`; only messages stamped inside
/// the measured interval are recorded.
#[derive(Debug, Clone, Copy)]
pub struct Stamps {
    pub start: Instant,
    /// Nanoseconds since `start` where measurement begins (the warm-up's end) and ends.
    pub from_ns: u64,
    pub to_ns: u64,
}

/// Receives until `stop` turns true, handling no more messages than `pace` allows (a slow
/// reader; unthrottled by default); returns the latencies recorded, if asked to.
pub async fn run(
    mut client: Client,
    stats: Arc<ClientStats>,
    stamps: Option<Stamps>,
    pace: Pacer,
    mut stop: watch::Receiver<bool>,
) -> Result<Option<Histogram>> {
    let v5 = client.version.is_v5();
    let mut histogram = stamps.map(|_| Histogram::default());
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    let mut total = 0u64;
    client.rbuf.reserve(READ_CHUNK);
    loop {
        // Packets may already wait in the buffer from the handshake: handle them first.
        let mut received = 0u64;
        let budget = pace.due(total, Instant::now());
        while received < budget
            && let Some(f) = frame::scan(&client.rbuf)?
        {
            match f.kind() {
                PUBLISH => {
                    let p = frame::publish(f.first, f.body(&client.rbuf), v5)?;
                    received += 1;
                    match p.qos {
                        1 => out.extend_from_slice(&frame::ack_bytes(frame::PUBACK, p.packet_id)),
                        2 => out.extend_from_slice(&frame::ack_bytes(PUBREC, p.packet_id)),
                        _ => {}
                    }
                    if let (Some(h), Some(s)) = (histogram.as_mut(), stamps) {
                        record(h, s, p.payload);
                    }
                }
                PUBREL => {
                    let (id, _) = frame::ack(f.body(&client.rbuf))?;
                    out.extend_from_slice(&frame::ack_bytes(PUBCOMP, id));
                }
                _ => return Err(client::unexpected(&mut client.rbuf, client.version)),
            }
            client.rbuf.advance(f.len);
        }
        ClientStats::add(&stats.received, received);
        total += received;
        if !out.is_empty() {
            client.stream.send_all(&out).await.context("write")?;
            out.clear();
        }
        if pace.due(total, Instant::now()) == 0 {
            // A slow reader: nothing more is read (so the broker's socket fills) until the
            // next message is due; what waits in the buffer is handled first.
            tokio::select! {
                biased;
                r = stop.changed() => {
                    if r.is_err() || *stop.borrow() {
                        break;
                    }
                }
                _ = tokio::time::sleep_until(pace.next_at(total).into()) => {}
            }
            continue;
        }
        if frame::scan(&client.rbuf)?.is_some() {
            continue;
        }
        client.rbuf.reserve(READ_CHUNK);
        let read = tokio::select! {
            biased;
            r = stop.changed() => {
                if r.is_err() || *stop.borrow() {
                    break;
                }
                continue;
            }
            r = client.stream.read_buf(&mut client.rbuf) => r,
        };
        if read.context("read")? == 0 {
            bail!("broker closed the subscriber's connection");
        }
    }
    // Best effort: the broker may already be gone, and the figures are taken.
    let _ = client.stream.send_all(&client::DISCONNECT).await;
    Ok(histogram)
}

/// Records one message's latency if it was stamped inside the measured interval.
fn record(h: &mut Histogram, s: Stamps, payload: &[u8]) {
    let Some(stamp) = payload.get(..8) else {
        return;
    };
    let sent = u64::from_le_bytes(stamp.try_into().unwrap_or([0; 8]));
    if (s.from_ns..s.to_ns).contains(&sent) {
        let now = s.start.elapsed().as_nanos() as u64;
        h.record(now.saturating_sub(sent));
    }
}
