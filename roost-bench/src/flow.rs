//! The timeline every message-flow scenario (fanin, fanout, latency, shared) shares:
//! subscribers first (each SUBACK awaited), then publishers; 1 s of warm-up; the measured
//! interval with a progress line per second; stop the publishers; a drain bounded at 2 s;
//! stop the subscribers. It returns raw counts and leaves their meaning to the scenario.
//!
//! Every wait has a deadline and every task is aborted at the end, so a run takes at most
//! setup + warm-up + duration + drain, whatever the broker does.

use crate::cli::Common;
use crate::client::{Client, Dial};
use crate::histogram::Histogram;
use crate::pacer::Pacer;
use crate::procfs::{CpuMeter, Proc};
use crate::report::{count, rate};
use crate::stats::{Registry, Totals};
use crate::subscriber::Stamps;
use crate::template::Template;
use crate::{publisher, subscriber};
use anyhow::{Context, Result, anyhow};
use roost::protocol::QoS;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::sleep_until;

pub const WARM_UP: Duration = Duration::from_secs(1);
/// Longest wait, after the publishers stop, for messages still on their way.
const DRAIN_MAX: Duration = Duration::from_secs(2);
/// The drain ends early once deliveries stop moving for this long.
const DRAIN_QUIET: Duration = Duration::from_millis(300);
/// Longest wait for every client to connect and subscribe.
const SETUP_MAX: Duration = Duration::from_secs(30);
/// Handshakes in progress at once during setup.
const SETUP_CONCURRENCY: usize = 256;

/// Who publishes where and who subscribes to what.
pub struct Spec {
    /// One publisher per topic.
    pub topics: Vec<String>,
    /// One subscriber per filter.
    pub filters: Vec<String>,
    /// Total msg/s over all publishers; 0 = unthrottled.
    pub rate: u64,
    /// Deliveries one accepted message should cause (1 for fan-in, N for fan-out to N).
    pub fan: u64,
    /// Stamp send times into payloads and record latencies.
    pub latency: bool,
}

/// What happened, in raw counts.
pub struct Outcome {
    /// Counts over the measured interval only.
    pub measured: Totals,
    /// Its length in seconds (the actual one, not the asked one).
    pub seconds: f64,
    /// Counts over the whole run, after the drain.
    pub total: Totals,
    /// Messages each subscriber received over the whole run.
    pub received_each: Vec<u64>,
    pub latency: Option<Histogram>,
    /// Percent of one core over the measured interval.
    pub bench_cpu: f64,
    pub broker_cpu: Option<f64>,
}

/// The clients' tasks and the means to stop them.
struct Tasks {
    stats: Registry,
    publishers: Vec<JoinHandle<Result<()>>>,
    subscribers: Vec<JoinHandle<Result<Option<Histogram>>>>,
    stop_publishers: watch::Sender<bool>,
    stop_subscribers: watch::Sender<bool>,
    /// The first error of any client; the run is abandoned on it.
    errors: mpsc::Receiver<anyhow::Error>,
}

pub async fn run(common: &Common, name: &str, spec: Spec) -> Result<Outcome> {
    let dial = Dial::broker(common);
    let tag = format!("rb{}-{name}", std::process::id());
    let subscribers =
        tokio::time::timeout(SETUP_MAX, connect_all(dial.clone(), &tag, &spec, common))
            .await
            .context("subscribers did not all connect and subscribe within 30 s")??;
    let publisher_ids: Vec<String> = (0..spec.topics.len())
        .map(|i| format!("{tag}-p{i}"))
        .collect();
    let publishers = tokio::time::timeout(SETUP_MAX, connect_many(dial, &publisher_ids, None))
        .await
        .context("publishers did not all connect within 30 s")??;
    let start = Instant::now();
    let mut tasks = spawn(common, &spec, start, subscribers, publishers)?;
    let result = measure(common, name, &spec, start, &mut tasks).await;
    for t in &tasks.publishers {
        t.abort();
    }
    let _ = tasks.stop_subscribers.send(true);
    let mut latency = spec.latency.then(Histogram::default);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    for t in tasks.subscribers {
        let abort = t.abort_handle();
        let joined = tokio::time::timeout_at(deadline, t).await;
        abort.abort();
        if let (Ok(Ok(Ok(Some(h)))), Some(all)) = (joined, latency.as_mut()) {
            all.merge(&h);
        }
    }
    let mut outcome = result?;
    outcome.latency = latency;
    Ok(outcome)
}

/// Connects the subscribers and subscribes each to its filter.
async fn connect_all(dial: Dial, tag: &str, spec: &Spec, common: &Common) -> Result<Vec<Client>> {
    let ids: Vec<String> = (0..spec.filters.len())
        .map(|i| format!("{tag}-s{i}"))
        .collect();
    let filters: Vec<(String, QoS)> = spec
        .filters
        .iter()
        .map(|f| (f.clone(), common.qos()))
        .collect();
    let dial = Dial {
        persistent: common.persistent,
        ..dial
    };
    connect_many(dial, &ids, Some(&filters)).await
}

/// Connects one client per id, in parallel but bounded; the result keeps the ids' order.
async fn connect_many(
    dial: Dial,
    ids: &[String],
    filters: Option<&[(String, QoS)]>,
) -> Result<Vec<Client>> {
    let permits = Arc::new(Semaphore::new(SETUP_CONCURRENCY));
    let mut handles = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        let (permits, dial) = (permits.clone(), dial.clone());
        let id = id.clone();
        let filter = filters.map(|f| f[i].clone());
        handles.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await?;
            let mut client = Client::connect(dial, &id).await?;
            if let Some((filter, qos)) = filter {
                client.subscribe(&filter, qos).await?;
            }
            anyhow::Ok(client)
        }));
    }
    let mut clients = Vec::with_capacity(ids.len());
    for h in handles {
        clients.push(h.await??);
    }
    Ok(clients)
}

fn spawn(
    common: &Common,
    spec: &Spec,
    start: Instant,
    subscribers: Vec<Client>,
    publishers: Vec<Client>,
) -> Result<Tasks> {
    let (stop_publishers, stop_p) = watch::channel(false);
    let (stop_subscribers, stop_s) = watch::channel(false);
    // Bounded to one error per client: try_send drops the rest, the first one is enough.
    let (errors_tx, errors) = mpsc::channel(subscribers.len() + publishers.len());
    let mut stats = Registry::default();
    let stamps = spec.latency.then(|| Stamps {
        start,
        from_ns: WARM_UP.as_nanos() as u64,
        to_ns: (WARM_UP + common.duration()).as_nanos() as u64,
    });
    let mut subs = Vec::new();
    for (i, client) in subscribers.into_iter().enumerate() {
        let (s, stop, errors) = (stats.subscriber(), stop_s.clone(), errors_tx.clone());
        let pace = Pacer::new(common.sub_rate as f64, start);
        subs.push(tokio::spawn(async move {
            let r = subscriber::run(client, s, stamps, pace, stop).await;
            if let Err(e) = &r {
                let _ = errors.try_send(anyhow!("subscriber {i}: {e:#}"));
            }
            r
        }));
    }
    let per_publisher = spec.rate as f64 / spec.topics.len() as f64;
    let mut pubs = Vec::new();
    for (i, client) in publishers.into_iter().enumerate() {
        let plan = publisher::Plan {
            template: Template::new(
                &spec.topics[i],
                common.qos(),
                common.payload,
                common.version(),
            )?,
            qos: common.qos,
            window: common.window,
            pacer: Pacer::new(per_publisher, start),
            stamp_from: spec.latency.then_some(start),
        };
        let (s, stop, errors) = (stats.publisher(), stop_p.clone(), errors_tx.clone());
        pubs.push(tokio::spawn(async move {
            let r = publisher::run(client, plan, s, stop).await;
            if let Err(e) = &r {
                let _ = errors.try_send(anyhow!("publisher {i}: {e:#}"));
            }
            r
        }));
    }
    Ok(Tasks {
        stats,
        publishers: pubs,
        subscribers: subs,
        stop_publishers,
        stop_subscribers,
        errors,
    })
}

/// Warm-up, measured interval with progress lines, stop, drain.
async fn measure(
    common: &Common,
    name: &str,
    spec: &Spec,
    start: Instant,
    tasks: &mut Tasks,
) -> Result<Outcome> {
    let t0 = start + WARM_UP;
    let t1 = t0 + common.duration();
    let mut last = (start, Totals::default());
    let mut at_t0 = None;
    let mut tick = 1u32;
    loop {
        let at = start + Duration::from_secs(u64::from(tick));
        tokio::select! {
            _ = sleep_until(at.into()) => {}
            Some(e) = tasks.errors.recv() => return Err(e),
        }
        let (now, totals) = (Instant::now(), tasks.stats.totals());
        let phase = if at <= t0 { "warm-up" } else { "measure" };
        progress(name, tick, phase, common.qos, &last, (now, totals));
        last = (now, totals);
        if at == t0 {
            let broker = common
                .broker_pid
                .map(|p| CpuMeter::start(Proc::Pid(p)))
                .transpose()?;
            at_t0 = Some((now, totals, CpuMeter::start(Proc::SelfProc)?, broker));
        }
        if at >= t1 {
            break;
        }
        tick += 1;
    }
    let (t0_now, t0_totals, bench_cpu, broker_cpu) = at_t0.context("no warm-up snapshot")?;
    let (t1_now, t1_totals) = last;
    let bench_cpu = bench_cpu.percent()?;
    let broker_cpu = broker_cpu.map(|m| m.percent()).transpose()?;
    let _ = tasks.stop_publishers.send(true);
    let total = drain(tasks, spec, common.qos).await?;
    Ok(Outcome {
        measured: t1_totals.since(&t0_totals),
        seconds: (t1_now - t0_now).as_secs_f64(),
        total,
        received_each: tasks.stats.received_each(),
        latency: None,
        bench_cpu,
        broker_cpu,
    })
}

/// Waits for the publishers' windows to empty and for deliveries to arrive or stop moving,
/// for at most `DRAIN_MAX`; returns the final counts.
async fn drain(tasks: &mut Tasks, spec: &Spec, qos: u8) -> Result<Totals> {
    let began = Instant::now();
    let deadline = began + DRAIN_MAX;
    let mut last = tasks.stats.totals();
    let mut quiet_since = began;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            Some(e) = tasks.errors.recv() => return Err(e.context("during the drain")),
        }
        let now = Instant::now();
        let totals = tasks.stats.totals();
        let publishers_done = tasks.publishers.iter().all(|t| t.is_finished());
        if totals != last {
            quiet_since = now;
        }
        last = totals;
        let all_in = totals.received >= totals.accepted(qos) * spec.fan;
        let quiet = now - quiet_since >= DRAIN_QUIET;
        if publishers_done && (all_in || quiet) || now >= deadline {
            let waiting = tasks.publishers.iter().filter(|t| !t.is_finished()).count();
            let waiting = if waiting > 0 {
                format!(", {waiting} publishers still waiting for acknowledgements")
            } else {
                String::new()
            };
            eprintln!(
                "[drain] {:.2} s, total delivered {}{waiting}",
                (now - began).as_secs_f64(),
                count(totals.received)
            );
            return Ok(totals);
        }
    }
}

/// One progress line on stderr: rates since the previous line.
fn progress(
    name: &str,
    tick: u32,
    phase: &str,
    qos: u8,
    prev: &(Instant, Totals),
    now: (Instant, Totals),
) {
    let secs = (now.0 - prev.0).as_secs_f64();
    let d = now.1.since(&prev.1);
    let acked = if qos > 0 {
        format!("  acked {}/s", rate(d.acked as f64 / secs))
    } else {
        String::new()
    };
    eprintln!(
        "[{tick:>3}s] {name} {phase:<7}  sent {}/s{acked}  delivered {}/s  (total delivered {})",
        rate(d.sent as f64 / secs),
        rate(d.received as f64 / secs),
        count(now.1.received),
    );
}
