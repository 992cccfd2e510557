//! Idle connections: open N MQTT connections (TCP, TLS with --tls-ca, CONNECT, CONNACK; keep
//! alive off) from
//! source addresses 127.0.0.1..=127.0.0.S, time it, hold them for --duration seconds, read the
//! broker's RSS before and after, close them. There is no warm-up: the setup is what is
//! measured, and the RSS baseline is read before the first connection.
//!
//! Each connection is one file descriptor here and one in the broker: both processes need an
//! open-file limit above N (checked here for this process, reported for the broker). The bench
//! and Roost raise their soft limit to the hard one themselves; the hard limit is the cap.

use super::{cpu_figures, report};
use crate::cli::Common;
use crate::client::{self, Client, Dial};
use crate::histogram::Histogram;
use crate::procfs::{CpuMeter, Proc};
use crate::report::{Report, count};
use crate::stream::Stream;
use anyhow::{Result, bail};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::sync::{Semaphore, mpsc};

/// Longest time allowed for opening every connection.
const CONNECT_MAX: Duration = Duration::from_secs(60);
/// Descriptors this process needs beside the connections (runtime, stdio, /proc reads).
const SPARE_FDS: u64 = 64;

pub async fn run(
    common: &Common,
    connections: usize,
    source_ips: u8,
    concurrency: usize,
) -> Result<Report> {
    let mut r = report("conns", common);
    r.params.push(("connections", connections.to_string()));
    r.params.push(("source_ips", source_ips.to_string()));
    r.params.push(("concurrency", concurrency.to_string()));
    check_file_limits(&mut r, connections as u64, common.broker_pid)?;
    let broker = common.broker_pid.map(Proc::Pid);
    let rss_before = broker.map(|b| b.rss_kib()).transpose()?;
    let bench_cpu = CpuMeter::start(Proc::SelfProc)?;
    let broker_cpu = broker.map(CpuMeter::start).transpose()?;

    let start = Instant::now();
    let (streams, phases, failures) = open_all(common, connections, source_ips, concurrency).await;
    let connect_secs = start.elapsed().as_secs_f64();
    let bench_cpu = bench_cpu.percent()?;
    let broker_cpu = broker_cpu.map(|m| m.percent()).transpose()?;
    let open = streams.len();
    if open == 0 {
        bail!(
            "no connection succeeded: {}",
            failures.first.unwrap_or_default()
        );
    }

    hold(common.duration(), open).await;
    let rss_after = broker.map(|b| b.rss_kib()).transpose()?;
    // Bounded: a broker that does not close after DISCONNECT must not keep us here.
    let _ = tokio::time::timeout(Duration::from_secs(5), close(streams)).await;

    r.int("connected", "connections open", open as u64, "conns");
    r.int("failed", "connections failed", failures.count, "conns");
    r.real("connect_secs", "time to connect all", connect_secs, "s");
    r.real(
        "connects_per_sec",
        "connection rate",
        open as f64 / connect_secs,
        "conn/s",
    );
    // Where a handshake's time goes, µs: TCP (socket, bind, connect, until connected), the TLS
    // handshake, then CONNECT to CONNACK.
    let tls = common.tls.is_some().then_some((
        &phases.tls,
        ("tls_mean_us", "TLS handshake, mean"),
        ("tls_p99_us", "TLS handshake, p99"),
    ));
    for (h, (mean, mean_label), (p99, p99_label)) in [
        Some((
            &phases.tcp,
            ("tcp_mean_us", "TCP connect, mean"),
            ("tcp_p99_us", "TCP connect, p99"),
        )),
        tls,
        Some((
            &phases.connack,
            ("connack_mean_us", "CONNECT to CONNACK, mean"),
            ("connack_p99_us", "CONNECT to CONNACK, p99"),
        )),
    ]
    .into_iter()
    .flatten()
    {
        r.real(mean, mean_label, h.mean(), "us");
        r.int(p99, p99_label, h.quantile(0.99), "us");
    }
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        r.int("rss_before_kib", "broker RSS before", before, "KiB");
        r.int("rss_after_kib", "broker RSS holding them", after, "KiB");
        let per = after.saturating_sub(before) as f64 / open as f64;
        r.real("rss_per_conn_kib", "broker RSS per connection", per, "KiB");
    }
    cpu_figures(&mut r, bench_cpu, broker_cpu);
    if let Some(e) = failures.first {
        r.notes.push(format!("first failure: {e}"));
    }
    Ok(r)
}

/// Refuses to start if this process cannot hold N sockets; notes a broker that cannot.
fn check_file_limits(r: &mut Report, n: u64, broker_pid: Option<u32>) -> Result<()> {
    if let Some(limit) = Proc::SelfProc.open_file_limit()
        && limit < n + SPARE_FDS
    {
        bail!(
            "--connections {n} needs about {} open files but this process may open {limit}: \
             raise the hard limit (`ulimit -Hn` as root, systemd's `LimitNOFILE=`)",
            n + SPARE_FDS
        );
    }
    if let Some(pid) = broker_pid
        && let Some(limit) = Proc::Pid(pid).open_file_limit()
        && limit < n + 16
    {
        r.notes.push(format!(
            "the broker (pid {pid}) may open {limit} files, fewer than {n} connections"
        ));
    }
    Ok(())
}

/// The handshakes' phase times (`client::Phases`), µs.
#[derive(Default)]
struct PhaseTimes {
    tcp: Histogram,
    tls: Histogram,
    connack: Histogram,
}

/// How many connections failed, and why the first one did.
#[derive(Default)]
struct Failures {
    count: u64,
    first: Option<String>,
}

/// Opens the connections, `concurrency` handshakes at a time, printing progress each second.
async fn open_all(
    common: &Common,
    n: usize,
    source_ips: u8,
    concurrency: usize,
) -> (Vec<Stream>, PhaseTimes, Failures) {
    let permits = Arc::new(Semaphore::new(concurrency));
    // Exactly one message per connection, so capacity n never blocks a sender.
    let (done_tx, mut done) = mpsc::channel(n);
    let tag = format!("rb{}-c", std::process::id());
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let source = Ipv4Addr::new(127, 0, 0, 1 + (i % usize::from(source_ips)) as u8);
        let dial = Dial {
            source: Some(IpAddr::V4(source)),
            ..Dial::broker(common)
        };
        let (permits, done_tx, id) = (permits.clone(), done_tx.clone(), format!("{tag}{i}"));
        tasks.push(tokio::spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else {
                return;
            };
            let result = Client::connect_timed(dial, &id)
                .await
                .map(|(c, phases)| (c.stream, phases));
            let _ = done_tx.send(result).await;
        }));
    }
    drop(done_tx);
    let (start, deadline) = (Instant::now(), Instant::now() + CONNECT_MAX);
    let mut streams = Vec::with_capacity(n);
    let mut phases = PhaseTimes::default();
    let mut failures = Failures::default();
    let mut next_tick = start + Duration::from_secs(1);
    while streams.len() + (failures.count as usize) < n {
        tokio::select! {
            got = done.recv() => match got {
                Some(Ok((stream, took))) => {
                    phases.tcp.record(took.tcp.as_micros() as u64);
                    phases.tls.record(took.tls.as_micros() as u64);
                    phases.connack.record(took.connack.as_micros() as u64);
                    streams.push(stream);
                }
                Some(Err(e)) => {
                    failures.count += 1;
                    failures.first.get_or_insert_with(|| format!("{e:#}"));
                }
                None => break,
            },
            _ = tokio::time::sleep_until(next_tick.into()) => {
                eprintln!(
                    "[{:>3}s] conns connecting  open {}  failed {}",
                    (next_tick - start).as_secs(),
                    count(streams.len() as u64),
                    count(failures.count)
                );
                next_tick += Duration::from_secs(1);
                if Instant::now() >= deadline {
                    break;
                }
            }
        }
    }
    for t in &tasks {
        t.abort();
    }
    let missing = n - streams.len() - failures.count as usize;
    if missing > 0 {
        failures.count += missing as u64;
        failures
            .first
            .get_or_insert_with(|| format!("{missing} not connected within 60 s"));
    }
    (streams, phases, failures)
}

/// Keeps the connections open (they are idle: keep alive is off) for `d`, a line per second.
async fn hold(d: Duration, open: usize) {
    let start = Instant::now();
    for s in 1..=d.as_secs() {
        tokio::time::sleep_until((start + Duration::from_secs(s)).into()).await;
        eprintln!("[{s:>3}s] conns holding  open {}", count(open as u64));
    }
}

/// DISCONNECT, then wait for the broker to close first, so the TIME_WAIT state stays on the
/// broker's side: 18,000 sockets lingering on ours for a minute would slow the next run's
/// `bind` (the kernel searches past them for a free port).
async fn close(streams: Vec<Stream>) {
    let mut tasks = Vec::with_capacity(streams.len());
    for mut s in streams {
        tasks.push(tokio::spawn(async move {
            if s.send_all(&client::DISCONNECT).await.is_ok() {
                let mut sink = [0u8; 64];
                while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}
