//! The publisher's hot loop: copies of a pre-encoded PUBLISH, many per write, within a window
//! and the pace; acknowledgements read in the same task. Per message it does a copy and a
//! two-byte patch, nothing else; counters are bumped once per write or read.
//!
//! The window: QoS 1/2 count PUBLISHes awaiting PUBACK/PUBCOMP. QoS 0 has no acks, so a
//! PINGREQ follows every batch (64 KiB) of PUBLISHes and at most `PINGS_IN_FLIGHT` may await
//! their PINGRESP. A broker answers a PINGREQ after it has handled everything sent before it,
//! so QoS 0 "sent" stays within ~256 KiB of what the broker really took, instead of piling
//! megabytes into loopback socket buffers that it never reads.
//!
//! On stop it sends nothing more, waits for what is in flight (the caller bounds that wait),
//! says DISCONNECT and returns.

use crate::client::{self, Client, READ_CHUNK};
use crate::frame::{self, PUBACK, PUBCOMP, PUBREC, PUBREL};
use crate::pacer::Pacer;
use crate::stats::ClientStats;
use crate::template::Template;
use anyhow::{Context, Result, bail};
use bytes::Buf;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

/// Bytes of PUBLISHes gathered into one write; at QoS 0 a PINGREQ follows each full batch.
const BATCH_BYTES: usize = 64 * 1024;
/// QoS 0: PINGREQs awaiting PINGRESP at once.
const PINGS_IN_FLIGHT: usize = 4;
const PINGREQ: [u8; 2] = [0xC0, 0x00];
/// Packet type of PINGRESP.
const PINGRESP: u8 = 13;

/// What one publisher sends.
pub struct Plan {
    pub template: Template,
    pub qos: u8,
    /// QoS 1/2 messages unacknowledged at once.
    pub window: u32,
    pub pacer: Pacer,
    /// Stamp nanoseconds since this instant into each payload (the latency scenario).
    pub stamp_from: Option<Instant>,
}

/// The publisher's state between iterations.
struct Publisher {
    client: Client,
    plan: Plan,
    stats: Arc<ClientStats>,
    /// Messages per write when unthrottled.
    batch: u64,
    /// `batch` copies of the template, for QoS 0 without timestamps: copied as they are.
    prebuilt: Vec<u8>,
    /// The next write: PUBLISHes, PUBRELs, PINGREQs.
    out: Vec<u8>,
    sent: u64,
    /// QoS 1/2: PUBLISHes awaiting their last acknowledgement.
    in_flight: u32,
    next_id: u16,
    /// QoS 0: messages sent before each PINGREQ still unanswered, oldest first.
    pings: VecDeque<u64>,
    /// QoS 0: messages sent since the last PINGREQ.
    since_ping: u64,
}

/// Runs until `stop` turns true and everything in flight is acknowledged.
pub async fn run(
    client: Client,
    plan: Plan,
    stats: Arc<ClientStats>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let batch = (BATCH_BYTES / plan.template.len()).max(1) as u64;
    let prebuilt = if plan.qos == 0 && plan.stamp_from.is_none() {
        plan.template.bytes().repeat(batch as usize)
    } else {
        Vec::new()
    };
    let mut p = Publisher {
        client,
        plan,
        stats,
        batch,
        prebuilt,
        out: Vec::with_capacity(BATCH_BYTES + 1024),
        sent: 0,
        in_flight: 0,
        next_id: 1,
        pings: VecDeque::with_capacity(PINGS_IN_FLIGHT + 1),
        since_ping: 0,
    };
    // A dropped sender counts as stop, so a failed driver cannot leave this loop spinning.
    while !*stop.borrow() && stop.has_changed().is_ok() {
        p.step(&mut stop).await?;
    }
    p.finish().await
}

impl Publisher {
    /// Messages the window lets go now.
    fn room(&self) -> u64 {
        if self.plan.qos > 0 {
            u64::from(self.plan.window - self.in_flight)
        } else if self.pings.len() < PINGS_IN_FLIGHT {
            u64::MAX
        } else {
            0
        }
    }

    /// Sends what is due and fits, then collects acknowledgements, waiting when nothing can be
    /// sent.
    async fn step(&mut self, stop: &mut watch::Receiver<bool>) -> Result<()> {
        let due = self.plan.pacer.due(self.sent, Instant::now());
        let mut n = due.min(self.room()).min(self.batch);
        // Unthrottled QoS 1/2: refill the window in slices of at least a quarter of it, not
        // one message per returning ack (a broker that acks one packet per send would
        // otherwise cost us a write per message).
        let slice = u64::from((self.plan.window / 4).max(1));
        if self.plan.pacer.unthrottled() && self.plan.qos > 0 && self.in_flight > 0 && n < slice {
            n = 0;
        }
        if n > 0 {
            self.send(n).await?;
        } else if !self.out.is_empty() {
            self.flush().await?;
        }
        self.try_read_acks()?;
        if n > 0 && self.room() >= slice.min(self.batch) && self.plan.pacer.unthrottled() {
            return Ok(());
        }
        // Nothing more can go now: wait for an ack, the next slot of the pace, or stop.
        let next = tokio::time::Instant::from_std(self.plan.pacer.next_at(self.sent));
        let wait_pace = self.room() > 0 && !self.plan.pacer.unthrottled();
        let client = &mut self.client;
        client.rbuf.reserve(READ_CHUNK);
        let result = tokio::select! {
            r = client.stream.read_buf(&mut client.rbuf) => Some(r),
            _ = tokio::time::sleep_until(next), if wait_pace => None,
            _ = stop.changed() => None,
        };
        if let Some(r) = result {
            if r.context("reading acknowledgements")? == 0 {
                bail!("broker closed the publisher's connection");
            }
            self.on_acks()?;
        }
        Ok(())
    }

    /// Writes `n` PUBLISHes (and pending PUBRELs, and a PINGREQ when due) in one write.
    async fn send(&mut self, n: u64) -> Result<()> {
        if self.prebuilt.is_empty() {
            let stamp = self
                .plan
                .stamp_from
                .map(|t0| t0.elapsed().as_nanos() as u64);
            for _ in 0..n {
                let id = self.next_id;
                self.next_id = if id == u16::MAX { 1 } else { id + 1 };
                self.plan.template.put(&mut self.out, id, stamp);
            }
        } else {
            let len = n as usize * self.plan.template.len();
            self.out.extend_from_slice(&self.prebuilt[..len]);
        }
        if self.plan.qos == 0 {
            self.since_ping += n;
            if self.since_ping >= self.batch {
                self.ping();
            }
        } else {
            self.in_flight += n as u32;
        }
        self.flush().await?;
        self.sent += n;
        ClientStats::add(&self.stats.sent, n);
        Ok(())
    }

    /// Appends a PINGREQ covering the messages sent since the last one.
    fn ping(&mut self) {
        self.out.extend_from_slice(&PINGREQ);
        self.pings.push_back(self.since_ping);
        self.since_ping = 0;
    }

    async fn flush(&mut self) -> Result<()> {
        self.client
            .stream
            .send_all(&self.out)
            .await
            .context("write")?;
        self.out.clear();
        Ok(())
    }

    /// Takes whatever acknowledgements have already arrived, without waiting.
    fn try_read_acks(&mut self) -> Result<()> {
        self.client.rbuf.reserve(READ_CHUNK);
        match self.client.stream.try_read_buf(&mut self.client.rbuf) {
            Ok(0) => bail!("broker closed the publisher's connection"),
            Ok(_) => self.on_acks(),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e).context("reading acknowledgements"),
        }
    }

    /// Handles every whole packet in the read buffer.
    fn on_acks(&mut self) -> Result<()> {
        let (mut acked, mut refused) = (0u64, 0u64);
        while let Some(f) = frame::scan(&self.client.rbuf)? {
            match f.kind() {
                PINGRESP => acked += self.pings.pop_front().unwrap_or(0),
                PUBACK | PUBREC | PUBCOMP => {
                    let (id, reason) = frame::ack(f.body(&self.client.rbuf))?;
                    match f.kind() {
                        PUBREC if reason < 0x80 => {
                            self.out.extend_from_slice(&frame::ack_bytes(PUBREL, id))
                        }
                        _ if reason >= 0x80 => refused += 1,
                        _ => acked += 1,
                    }
                    if f.kind() != PUBREC || reason >= 0x80 {
                        self.in_flight = self.in_flight.saturating_sub(1);
                    }
                }
                _ => {
                    return Err(client::unexpected(
                        &mut self.client.rbuf,
                        self.client.version,
                    ));
                }
            }
            self.client.rbuf.advance(f.len);
        }
        ClientStats::add(&self.stats.acked, acked);
        ClientStats::add(&self.stats.refused, refused);
        Ok(())
    }

    /// After stop: a last PINGREQ at QoS 0, wait for the window to empty, then DISCONNECT.
    async fn finish(mut self) -> Result<()> {
        if self.plan.qos == 0 && self.since_ping > 0 {
            self.ping();
        }
        while self.in_flight > 0 || !self.pings.is_empty() {
            if !self.out.is_empty() {
                self.flush().await?;
            }
            self.client.rbuf.reserve(READ_CHUNK);
            if self.client.stream.read_buf(&mut self.client.rbuf).await? == 0 {
                bail!("broker closed the publisher's connection with messages in flight");
            }
            self.on_acks()?;
        }
        self.out.extend_from_slice(&client::DISCONNECT);
        self.flush().await
    }
}
