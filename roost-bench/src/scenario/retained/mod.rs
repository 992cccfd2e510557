//! Retained messages (issue 14, 0b: every retained message reaches a new subscriber). One
//! publisher stores N retained messages on `bench/retained/<i>`, --window unacknowledged at a
//! time, and waits for every acknowledgement; then a new subscriber (clean session) subscribes
//! to `bench/retained/#` at --qos. The figures: how many of the N reach it, how long from its
//! SUBSCRIBE to the last one, and (with --broker-pid) the broker's RSS after storing and its
//! peak after the subscriber is served.
//!
//! The messages are stored at QoS 1 (2 with --qos 2), so each is confirmed before the
//! subscriber comes and reaches it at min(stored, --qos) = --qos. The subscriber stops when all
//! have arrived or when none has for 2 s: a broker that sends only part of the set (Mosquitto
//! queues at most max_queued_messages for a client) never sends the rest. They are told apart
//! by topic, so a duplicate cannot hide a missing one.
//!
//! Nothing deletes them afterwards: run each against a freshly started broker, so that its
//! memory figures are this run's.

mod receive;
mod store;

use super::{cpu_figures, report};
use crate::cli::Common;
use crate::client::Dial;
use crate::procfs::{CpuMeter, Proc};
use crate::report::{Report, count};
use anyhow::{Result, bail};
use receive::{QUIET, RECEIVE_MAX, Received};
use std::time::Duration;
use store::Stored;

const TOPIC_PREFIX: &str = "bench/retained/";
const FILTER: &str = "bench/retained/#";
/// Longest wait for a client's CONNACK, and for the subscriber's SUBACK.
const SETUP_MAX: Duration = Duration::from_secs(10);

pub async fn run(common: &Common, messages: usize) -> Result<Report> {
    let n = messages as u64;
    let mut r = report("retained", common);
    // Neither timed nor paced, and the store always has a window.
    r.params
        .retain(|(k, _)| !matches!(*k, "duration_s" | "rate" | "window"));
    r.params.push(("window", common.window.to_string()));
    r.params.push(("messages", messages.to_string()));
    let dial = Dial::broker(common);
    let tag = format!("rb{}-retained", std::process::id());
    let broker = common.broker_pid.map(Proc::Pid);
    let rss_before = broker.map(|b| b.rss_kib()).transpose()?;

    let stored = store::run(common, dial.clone(), &format!("{tag}-p"), n).await?;
    let rss_stored = broker.map(|b| b.rss_kib()).transpose()?;
    if stored.acked == 0 {
        bail!("the broker refused all {n} retained messages");
    }
    // CPU over the receive phase only (the store is setup), as a share of SUBSCRIBE to the
    // last retained message: the quiet wait that may follow costs nothing and would dilute it.
    let bench_cpu = CpuMeter::start(Proc::SelfProc)?;
    let broker_cpu = broker.map(CpuMeter::start).transpose()?;
    let got = receive::run(common, dial, &format!("{tag}-s"), n, stored.acked).await?;
    let share = |m: CpuMeter| -> Result<f64> {
        if got.secs > 0.0 {
            Ok(m.busy_secs()? / got.secs * 100.0)
        } else {
            m.percent()
        }
    };
    let bench_cpu = share(bench_cpu)?;
    let broker_cpu = broker_cpu.map(share).transpose()?;
    let peak = broker.map(|b| b.peak_rss_kib()).transpose()?;

    r.int(
        "stored_total",
        "retained messages stored",
        stored.acked,
        "msgs",
    );
    if stored.refused > 0 {
        r.int(
            "refused_total",
            "refused (v5 ack reason >= 0x80)",
            stored.refused,
            "msgs",
        );
    }
    r.real("store_secs", "time to store", stored.secs, "s");
    r.int("received_total", "retained received", got.received, "msgs");
    let missing = stored.acked.saturating_sub(got.received);
    r.int(
        "missing_total",
        "missing (stored, not received)",
        missing,
        "msgs",
    );
    r.real(
        "receive_secs",
        "SUBSCRIBE to the last retained",
        got.secs,
        "s",
    );
    let per_sec = if got.secs > 0.0 {
        got.received as f64 / got.secs
    } else {
        0.0
    };
    r.real("received_per_sec", "retained delivered", per_sec, "msg/s");
    if got.duplicates > 0 {
        r.int(
            "duplicates_total",
            "retained received twice or more",
            got.duplicates,
            "msgs",
        );
    }
    if let (Some(before), Some(after), Some(peak)) = (rss_before, rss_stored, peak) {
        r.int("rss_before_kib", "broker RSS before storing", before, "KiB");
        r.int("rss_stored_kib", "broker RSS after storing", after, "KiB");
        let per = after.saturating_sub(before) as f64 * 1024.0 / stored.acked as f64;
        r.real(
            "rss_per_message_b",
            "broker RSS per stored message",
            per,
            "B",
        );
        r.int(
            "rss_peak_kib",
            "broker peak RSS (VmHWM) at the end",
            peak,
            "KiB",
        );
        let growth = peak.saturating_sub(after);
        r.int(
            "rss_peak_growth_kib",
            "peak minus after storing",
            growth,
            "KiB",
        );
    }
    cpu_figures(&mut r, bench_cpu, broker_cpu);
    notes(&mut r, &stored, &got, missing);
    Ok(r)
}

/// What the figures alone do not say.
fn notes(r: &mut Report, stored: &Stored, got: &Received, missing: u64) {
    if got.quiet {
        r.notes.push(format!(
            "stopped after {} s without a new retained message: {} of the {} stored never came \
             (a broker may cap what it queues for one client, as Mosquitto's \
             max_queued_messages)",
            QUIET.as_secs(),
            count(missing),
            count(stored.acked)
        ));
    }
    if got.capped {
        r.notes.push(format!(
            "stopped after {} s with retained messages still arriving",
            RECEIVE_MAX.as_secs()
        ));
    }
    if stored.refused > 0 {
        r.notes.push(format!(
            "the broker refused {} of the retained PUBLISHes: not expected, not missing",
            count(stored.refused)
        ));
    }
    if got.other > 0 {
        r.notes.push(format!(
            "{} retained messages on other topics under {FILTER} (an earlier run's, with a \
             larger --messages?): not counted",
            count(got.other)
        ));
    }
    if got.secs > 0.0 && got.secs < 1.0 {
        r.notes.push(format!(
            "CPU figures cover {:.3} s and /proc counts in 10 ms ticks: rough",
            got.secs
        ));
    }
    if got.live > 0 {
        r.notes.push(format!(
            "{} PUBLISHes without RETAIN on {FILTER} (another client publishing there, or a \
             broker that clears the flag): not counted",
            count(got.live)
        ));
    }
}
