//! Offline queues: make N persistent sessions (Clean Session 0, or a v5 Session Expiry of an
//! hour), each subscribed to `offline/all` at the given QoS, and leave them; then publish M
//! messages of --payload bytes to `offline/all`, each waited for (PUBACK at QoS 1), so every
//! session holds M queued messages. Reports the time each phase took and the broker's RSS
//! after each: what a fleet of phones that went offline costs a broker while a notification
//! campaign runs. The sessions are left behind (a persisting broker keeps them).

use super::{cpu_figures, report};
use crate::cli::Common;
use crate::client::{self, Client, Dial};
use crate::procfs::{CpuMeter, Proc};
use crate::report::Report;
use anyhow::{Context, Result, bail};
use roost::protocol::{ByteStr, Packet, Publish, QoS};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

const TOPIC: &str = "offline/all";
/// Longest wait for the broker to close after DISCONNECT.
const CLOSE_MAX: Duration = Duration::from_secs(5);

pub async fn run(
    common: &Common,
    sessions: usize,
    messages: usize,
    source_ips: u8,
    concurrency: usize,
) -> Result<Report> {
    let mut r = report("offline", common);
    r.params.push(("sessions", sessions.to_string()));
    r.params.push(("messages", messages.to_string()));
    let qos = common.qos();
    let broker = common.broker_pid.map(Proc::Pid);
    let rss_start = broker.map(|b| b.rss_kib()).transpose()?;
    let broker_cpu = broker.map(CpuMeter::start).transpose()?;
    let bench_cpu = CpuMeter::start(Proc::SelfProc)?;

    let start = Instant::now();
    leave_sessions(common, sessions, source_ips, concurrency, qos).await?;
    let sessions_secs = start.elapsed().as_secs_f64();
    eprintln!("[sessions] {sessions} left in {sessions_secs:.1} s");
    let rss_sessions = broker.map(|b| b.rss_kib()).transpose()?;

    let start = Instant::now();
    publish(common, messages, qos).await?;
    let publish_secs = start.elapsed().as_secs_f64();
    eprintln!("[publish] {messages} messages in {publish_secs:.1} s");
    let rss_queued = broker.map(|b| b.rss_kib()).transpose()?;
    let peak = broker.map(|b| b.peak_rss_kib()).transpose()?;

    r.real(
        "sessions_secs",
        "time to leave the sessions",
        sessions_secs,
        "s",
    );
    r.real(
        "publish_secs",
        "time to publish (and queue) the messages",
        publish_secs,
        "s",
    );
    let queued = (sessions * messages) as f64;
    r.real(
        "queued_per_sec",
        "messages queued per second",
        queued / publish_secs,
        "msg/s",
    );
    if let (Some(a), Some(b), Some(c), Some(peak)) = (rss_start, rss_sessions, rss_queued, peak) {
        r.int("rss_start_kib", "broker RSS before", a, "KiB");
        r.int("rss_sessions_kib", "broker RSS with the sessions", b, "KiB");
        r.int(
            "rss_queued_kib",
            "broker RSS with the queues full",
            c,
            "KiB",
        );
        r.int("rss_peak_kib", "broker peak RSS", peak, "KiB");
        let per_session = b.saturating_sub(a) as f64 * 1024.0 / sessions as f64;
        r.real(
            "bytes_per_session",
            "RSS per offline session",
            per_session,
            "B",
        );
        let per_queued = c.saturating_sub(b) as f64 * 1024.0 / queued;
        r.real(
            "bytes_per_queued",
            "RSS per queued message",
            per_queued,
            "B",
        );
    }
    cpu_figures(
        &mut r,
        bench_cpu.percent()?,
        broker_cpu.map(|m| m.percent()).transpose()?,
    );
    Ok(r)
}

/// Makes `sessions` persistent sessions subscribed to [`TOPIC`] and disconnects them,
/// `concurrency` at a time, from 127.0.0.1..=127.0.0.S in turn.
async fn leave_sessions(
    common: &Common,
    sessions: usize,
    source_ips: u8,
    concurrency: usize,
    qos: QoS,
) -> Result<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let tag = format!("rb{}-o", std::process::id());
    let dial = Dial {
        persistent: true,
        ..Dial::broker(common)
    };
    let mut loops = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (next, tag, dial) = (next.clone(), tag.clone(), dial.clone());
        loops.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= sessions {
                    return Ok::<_, anyhow::Error>(());
                }
                let source = Ipv4Addr::new(127, 0, 0, 1 + (i % usize::from(source_ips)) as u8);
                let dial = Dial {
                    source: Some(IpAddr::V4(source)),
                    ..dial.clone()
                };
                let mut c = Client::connect(dial, &format!("{tag}{i}")).await?;
                c.subscribe(TOPIC, qos).await?;
                // The broker closes first, so TIME_WAIT stays on its side.
                let _ = tokio::time::timeout(CLOSE_MAX, async {
                    if c.stream.send_all(&client::DISCONNECT).await.is_ok() {
                        let mut sink = [0u8; 64];
                        while matches!(c.stream.read(&mut sink).await, Ok(n) if n > 0) {}
                    }
                })
                .await;
                if i % 10_000 == 9_999 {
                    eprintln!("[sessions] {}", i + 1);
                }
            }
        }));
    }
    for l in loops {
        l.await??;
    }
    Ok(())
}

/// Publishes `messages` to [`TOPIC`], each acknowledged before the next.
async fn publish(common: &Common, messages: usize, qos: QoS) -> Result<()> {
    let dial = Dial::broker(common);
    let mut c = Client::connect(dial, &format!("rb{}-op", std::process::id())).await?;
    for n in 0..messages {
        let mut payload = vec![b'.'; common.payload];
        let stamp = n.to_be_bytes();
        let k = stamp.len().min(payload.len());
        payload[..k].copy_from_slice(&stamp[..k]);
        let packet_id = (n % 65_535) as u16 + 1;
        let p = Publish {
            dup: false,
            qos,
            retain: false,
            topic: ByteStr::try_from(TOPIC).context("topic")?,
            packet_id,
            properties: Default::default(),
            payload: payload.into(),
        };
        c.send(&Packet::Publish(p)).await?;
        match c.recv().await? {
            Packet::PubAck(a) if a.packet_id == packet_id => {}
            Packet::PubRec(a) if a.packet_id == packet_id => {
                c.send(&Packet::PubRel(roost::protocol::PubResp::new(packet_id)))
                    .await?;
                match c.recv().await? {
                    Packet::PubComp(_) => {}
                    other => bail!("expected PUBCOMP, broker sent {}", other.name()),
                }
            }
            other => bail!(
                "expected the acknowledgement of {packet_id}, broker sent {}",
                other.name()
            ),
        }
        if n % 10 == 9 {
            eprintln!("[publish] {}", n + 1);
        }
    }
    Ok(())
}
