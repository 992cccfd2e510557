//! New connections per second: --concurrency loops, each connecting (TCP, TLS with --tls-ca,
//! CONNECT/CONNACK), sending DISCONNECT, waiting for the broker to close, and starting over,
//! from source addresses 127.0.0.1..=127.0.0.S in turn. After the 1 s warm-up, for --duration
//! seconds: completed handshakes per second, the time each took (socket to CONNACK), and the
//! broker's CPU time per handshake. What a fleet reconnecting after an outage asks of a broker.

use super::{cpu_figures, report};
use crate::cli::Common;
use crate::client::{self, Client, Dial};
use crate::histogram::Histogram;
use crate::procfs::{CpuMeter, Proc};
use crate::report::{Report, count, rate};
use anyhow::{Result, bail};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// Excluded from the figures, as in every flow scenario.
const WARM_UP: Duration = Duration::from_secs(1);
/// Longest wait for the broker to close after DISCONNECT before the loop moves on.
const CLOSE_MAX: Duration = Duration::from_secs(5);

/// What one loop saw in the measured interval.
#[derive(Default)]
struct Tally {
    /// Socket to CONNACK, µs.
    took: Histogram,
    failed: u64,
    first_failure: Option<String>,
}

pub async fn run(common: &Common, concurrency: usize, source_ips: u8) -> Result<Report> {
    let mut r = report("handshakes", common);
    r.params.push(("concurrency", concurrency.to_string()));
    r.params.push(("source_ips", source_ips.to_string()));
    let tls = match (&common.tls, common.tls_insecure) {
        (None, _) => "off",
        (Some(_), false) => "verified",
        (Some(_), true) => "unverified",
    };
    r.params.push(("tls", tls.to_string()));
    let broker = common.broker_pid.map(Proc::Pid);
    let start = Instant::now();
    let measure_from = start + WARM_UP;
    let measure_to = measure_from + common.duration();
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let tag = format!("rb{}-h", std::process::id());
    let mut loops = Vec::with_capacity(concurrency);
    for l in 0..concurrency {
        // With --persistent each handshake leaves a persistent session behind (ids are unique):
        // a way to fill a broker with offline sessions, for restart times.
        let dial = Dial {
            persistent: common.persistent,
            ..Dial::broker(common)
        };
        let (done, stop, tag) = (done.clone(), stop.clone(), format!("{tag}{l}-"));
        loops.push(tokio::spawn(async move {
            cycle(
                dial,
                l,
                source_ips,
                &tag,
                (measure_from, measure_to),
                &done,
                &stop,
            )
            .await
        }));
    }

    let mut tick = start + Duration::from_secs(1);
    let (mut bench_cpu, mut broker_cpu) = (None, None);
    while tick <= measure_to {
        tokio::time::sleep_until(tick.into()).await;
        let now = done.load(Ordering::Relaxed);
        if tick == measure_from {
            bench_cpu = Some(CpuMeter::start(Proc::SelfProc)?);
            broker_cpu = broker.map(CpuMeter::start).transpose()?;
        }
        eprintln!(
            "[{:>3}s] handshakes{}  completed {}",
            (tick - start).as_secs(),
            if tick <= measure_from {
                " (warm-up)"
            } else {
                ""
            },
            count(now)
        );
        tick += Duration::from_secs(1);
    }
    let bench_busy = bench_cpu.as_ref().map(|m| m.percent()).transpose()?;
    let broker_busy = broker_cpu
        .as_ref()
        .map(|m| Ok::<_, anyhow::Error>((m.percent()?, m.busy_secs()?)))
        .transpose()?;
    stop.store(true, Ordering::Relaxed);

    let mut tally = Tally::default();
    for l in loops {
        let t = l.await?;
        tally.took.merge(&t.took);
        tally.failed += t.failed;
        if tally.first_failure.is_none() {
            tally.first_failure = t.first_failure;
        }
    }
    let n = tally.took.count();
    if n == 0 {
        bail!(
            "no handshake completed: {}",
            tally.first_failure.unwrap_or_default()
        );
    }
    let secs = common.duration().as_secs_f64();
    r.int("handshakes_total", "handshakes completed", n, "conns");
    r.real(
        "handshakes_per_sec",
        "handshakes completed",
        n as f64 / secs,
        "conn/s",
    );
    r.int("failed_total", "handshakes failed", tally.failed, "conns");
    r.int(
        "connect_p50_us",
        "socket to CONNACK, p50",
        tally.took.quantile(0.5),
        "us",
    );
    r.int(
        "connect_p99_us",
        "socket to CONNACK, p99",
        tally.took.quantile(0.99),
        "us",
    );
    r.int(
        "connect_max_us",
        "socket to CONNACK, max",
        tally.took.max(),
        "us",
    );
    if let Some((_, busy)) = broker_busy {
        r.real(
            "broker_us_per_handshake",
            "broker CPU per handshake",
            busy * 1e6 / n as f64,
            "us",
        );
    }
    cpu_figures(
        &mut r,
        bench_busy.unwrap_or_default(),
        broker_busy.map(|(pct, _)| pct),
    );
    if let Some(e) = tally.first_failure {
        r.notes.push(format!("first failure: {e}"));
    }
    r.notes.push(format!(
        "{} handshakes/s; each loop waits for the broker's close before the next connect",
        rate(n as f64 / secs)
    ));
    Ok(r)
}

/// One loop: connect, DISCONNECT, wait for the close, again, until `stop`. Handshakes that
/// end inside `window` are timed and counted.
async fn cycle(
    dial: Dial,
    l: usize,
    source_ips: u8,
    tag: &str,
    window: (Instant, Instant),
    done: &AtomicU64,
    stop: &AtomicBool,
) -> Tally {
    let mut tally = Tally::default();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let source = Ipv4Addr::new(127, 0, 0, 1 + ((l + i) % usize::from(source_ips)) as u8);
        let dial = Dial {
            source: Some(IpAddr::V4(source)),
            ..dial.clone()
        };
        let began = Instant::now();
        let result = Client::connect(dial, &format!("{tag}{i}")).await;
        let ended = Instant::now();
        i += 1;
        let counted = began >= window.0 && ended <= window.1;
        match result {
            Ok(mut c) => {
                if counted {
                    tally.took.record((ended - began).as_micros() as u64);
                    done.fetch_add(1, Ordering::Relaxed);
                }
                // The broker closes first, so TIME_WAIT stays on its side and our source
                // ports stay free for the next connects.
                let _ = tokio::time::timeout(CLOSE_MAX, async {
                    if c.stream.send_all(&client::DISCONNECT).await.is_ok() {
                        let mut sink = [0u8; 64];
                        while matches!(c.stream.read(&mut sink).await, Ok(n) if n > 0) {}
                    }
                })
                .await;
            }
            Err(e) => {
                if counted {
                    tally.failed += 1;
                }
                tally.first_failure.get_or_insert_with(|| format!("{e:#}"));
                // A refusing broker must not turn this into a busy loop.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    tally
}
