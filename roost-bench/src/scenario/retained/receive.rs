//! The receive phase of `retained`: a new subscriber takes the stored messages and counts
//! each topic once, until all have come or none has for a while.

use super::{FILTER, SETUP_MAX, TOPIC_PREFIX};
use crate::cli::Common;
use crate::client::{self, Client, Dial, READ_CHUNK};
use crate::frame::{self, PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL};
use crate::report::count;
use anyhow::{Context, Result, bail};
use bytes::Buf;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::time::{sleep_until, timeout};

/// The subscriber stops after this long without a new retained message.
pub const QUIET: Duration = Duration::from_secs(2);
/// And after this long in all, however slowly they still come.
pub const RECEIVE_MAX: Duration = Duration::from_secs(300);

/// What the subscriber got.
#[derive(Default)]
pub struct Received {
    /// Distinct stored topics that arrived with RETAIN set.
    pub received: u64,
    /// Retained PUBLISHes for a topic already received.
    pub duplicates: u64,
    /// Retained PUBLISHes on other topics under the filter (left by an earlier run).
    pub other: u64,
    /// PUBLISHes without RETAIN: live messages from some other client (or a broker that
    /// clears the flag).
    pub live: u64,
    /// From sending SUBSCRIBE to reading the last new retained message; 0 if none came.
    pub secs: f64,
    /// Stopped by `QUIET`, with messages still missing.
    pub quiet: bool,
    /// Stopped by `RECEIVE_MAX`, with messages still missing.
    pub capped: bool,
}

/// Connects a new subscriber, subscribes to `FILTER` and reads until the `expected` stored
/// messages have arrived, or none has for `QUIET`. QoS 1/2 PUBLISHes are acknowledged as
/// `subscriber` does, in one write per read.
pub async fn run(common: &Common, dial: Dial, id: &str, n: u64, expected: u64) -> Result<Received> {
    let mut client = timeout(SETUP_MAX, Client::connect(dial, id))
        .await
        .context("the subscriber got no CONNACK within 10 s")??;
    let v5 = client.version.is_v5();
    let sent = Instant::now();
    // Retained messages that follow the SUBACK stay in `client.rbuf`, handled first below.
    timeout(SETUP_MAX, client.subscribe(FILTER, common.qos()))
        .await
        .context("the subscriber got no SUBACK within 10 s")??;
    let subacked = Instant::now();
    let mut seen = vec![false; n as usize];
    let mut got = Received::default();
    let mut last: Option<Instant> = None;
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    let mut tick = 1u64;
    loop {
        // Everything in the buffer arrived by the read that just returned.
        let now = Instant::now();
        while let Some(f) = frame::scan(&client.rbuf)? {
            match f.kind() {
                PUBLISH => {
                    let p = frame::publish(f.first, f.body(&client.rbuf), v5)?;
                    match p.qos {
                        1 => out.extend_from_slice(&frame::ack_bytes(PUBACK, p.packet_id)),
                        2 => out.extend_from_slice(&frame::ack_bytes(PUBREC, p.packet_id)),
                        _ => {}
                    }
                    match (p.retain, index(p.topic, n)) {
                        (false, _) => got.live += 1,
                        (true, Some(i)) if !seen[i] => {
                            seen[i] = true;
                            got.received += 1;
                            last = Some(now);
                        }
                        (true, Some(_)) => got.duplicates += 1,
                        (true, None) => got.other += 1,
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
        if !out.is_empty() {
            client.stream.send_all(&out).await.context("write")?;
            out.clear();
        }
        if got.received >= expected {
            break;
        }
        client.rbuf.reserve(READ_CHUNK);
        let read = tokio::select! {
            r = client.stream.read_buf(&mut client.rbuf) => r.context("read")?,
            _ = sleep_until((last.unwrap_or(subacked) + QUIET).into()) => {
                got.quiet = true;
                break;
            }
            _ = sleep_until((sent + Duration::from_secs(tick)).into()) => {
                eprintln!("[{tick:>3}s] retained receiving  received {}", count(got.received));
                tick += 1;
                if sent.elapsed() >= RECEIVE_MAX {
                    got.capped = true;
                    break;
                }
                continue;
            }
        };
        if read == 0 {
            bail!(
                "broker closed the subscriber's connection after {} retained messages",
                count(got.received)
            );
        }
    }
    got.secs = last.map_or(0.0, |t| (t - sent).as_secs_f64());
    eprintln!(
        "[receive] {:.2} s, {} of {} received",
        got.secs,
        count(got.received),
        count(expected)
    );
    // Best effort: the figures are taken.
    let _ = client.stream.send_all(&client::DISCONNECT).await;
    Ok(got)
}

/// The `i` of a topic `bench/retained/<i>` with `i < n`.
fn index(topic: &[u8], n: u64) -> Option<usize> {
    let digits = topic.strip_prefix(TOPIC_PREFIX.as_bytes())?;
    let i: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    (i < n).then_some(i as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_map_to_their_index() {
        assert_eq!(index(b"bench/retained/0", 10), Some(0));
        assert_eq!(index(b"bench/retained/9", 10), Some(9));
        assert_eq!(index(b"bench/retained/10", 10), None);
        assert_eq!(index(b"bench/retained/x", 10), None);
        assert_eq!(index(b"bench/other/1", 10), None);
    }
}
