//! The scenarios: each turns the command line into a `flow::Spec` (or, for `conns` and
//! `retained`, its own loop) and the raw outcome into a `Report`. The figures every flow shares
//! live here.

mod conns;
mod fanin;
mod fanout;
mod handshakes;
mod latency;
mod offline;
mod retained;
mod shared;

use crate::cli::{Common, Scenario};
use crate::flow::Outcome;
use crate::report::Report;
use anyhow::Result;

/// Runs the scenario the command line names.
pub async fn run(scenario: &Scenario, common: &Common) -> Result<Report> {
    match scenario {
        Scenario::Fanin { publishers } => fanin::run(common, *publishers).await,
        Scenario::Fanout { subscribers } => fanout::run(common, *subscribers).await,
        Scenario::Latency => latency::run(common).await,
        Scenario::Shared { subscribers } => shared::run(common, *subscribers).await,
        Scenario::Conns {
            connections,
            source_ips,
            concurrency,
        } => conns::run(common, *connections, *source_ips, *concurrency).await,
        Scenario::Retained { messages } => retained::run(common, *messages).await,
        Scenario::Offline {
            sessions,
            messages,
            source_ips,
            concurrency,
        } => offline::run(common, *sessions, *messages, *source_ips, *concurrency).await,
        Scenario::Handshakes {
            concurrency,
            source_ips,
        } => handshakes::run(common, *concurrency, *source_ips).await,
    }
}

/// A report with the settings every scenario shares.
fn report(scenario: &'static str, common: &Common) -> Report {
    let mut params = vec![
        ("broker", common.addr().to_string()),
        ("mqtt", common.mqtt_version.to_string()),
        ("qos", common.qos.to_string()),
        ("payload", common.payload.to_string()),
        ("duration_s", common.duration.to_string()),
        ("rate", common.rate.to_string()),
    ];
    if common.qos > 0 {
        params.push(("window", common.window.to_string()));
    }
    if common.persistent {
        params.push(("persistent", "true".into()));
    }
    Report {
        scenario,
        params,
        ..Report::default()
    }
}

/// Accepted/delivered rates and whole-run totals of a flow where each accepted message should
/// reach `fan` subscribers.
///
/// Dropped counts only what the broker confirmed taking (PUBACK/PUBCOMP, or at QoS 0 a PINGRESP
/// to a later PINGREQ) and never delivered by the end of the drain; PUBLISHes it had not even
/// read when the run ended are reported apart as unconfirmed.
fn flow_figures(r: &mut Report, common: &Common, o: &Outcome, fan: u64) {
    let per_sec = |n: u64| n as f64 / o.seconds;
    let t = &o.total;
    if common.qos > 0 {
        r.real("sent_per_sec", "sent", per_sec(o.measured.sent), "msg/s");
    }
    let accepted = per_sec(o.measured.accepted(common.qos));
    r.real("accepted_per_sec", "accepted", accepted, "msg/s");
    let delivered = per_sec(o.measured.received);
    r.real("delivered_per_sec", "delivered", delivered, "msg/s");
    r.int(
        "accepted_total",
        "accepted, whole run",
        t.accepted(common.qos),
        "msgs",
    );
    let unconfirmed = t.sent - t.acked - t.refused;
    if unconfirmed > 0 {
        r.int(
            "unconfirmed_total",
            "sent, unconfirmed at the end",
            unconfirmed,
            "msgs",
        );
        r.notes.push(format!(
            "{unconfirmed} PUBLISHes were not confirmed by the broker ({}) when the drain \
             ended: not counted as dropped",
            if common.qos == 0 {
                "no PINGRESP to a PINGREQ sent after them: probably never read"
            } else {
                "still in flight"
            }
        ));
    }
    let expected = t.acked * fan;
    if fan != 1 {
        r.int(
            "expected_total",
            "deliveries expected (confirmed x N)",
            expected,
            "msgs",
        );
    }
    r.int(
        "delivered_total",
        "delivered, whole run",
        t.received,
        "msgs",
    );
    let dropped = expected.saturating_sub(t.received);
    r.int(
        "dropped_total",
        "dropped (confirmed, not delivered)",
        dropped,
        "msgs",
    );
    let pct = if expected == 0 {
        0.0
    } else {
        dropped as f64 * 100.0 / expected as f64
    };
    r.real("dropped_pct", "dropped", pct, "%");
    if t.refused > 0 {
        r.int(
            "refused_total",
            "refused (v5 ack reason >= 0x80)",
            t.refused,
            "msgs",
        );
    }
    if t.received > t.sent * fan {
        r.notes.push(format!(
            "{} more deliveries than messages sent x subscribers: duplicates",
            t.received - t.sent * fan
        ));
    }
}

/// The bench's and the broker's CPU use over the measured interval.
fn cpu_figures(r: &mut Report, bench: f64, broker: Option<f64>) {
    r.real("bench_cpu_pct", "bench CPU (of one core)", bench, "%");
    if let Some(b) = broker {
        r.real("broker_cpu_pct", "broker CPU (of one core)", b, "%");
    }
}
