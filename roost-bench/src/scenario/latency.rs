//! Latency: one publisher paced at --rate (1000 msg/s unless given) stamping the send time
//! (nanoseconds since the run's start, from the monotonic clock) into each payload, one
//! subscriber taking the difference on receipt. Only messages sent in the measured interval
//! count; percentiles come from a histogram with under 1 % error, the max is exact.

use super::{cpu_figures, flow_figures, report};
use crate::cli::Common;
use crate::flow::{self, Spec};
use crate::report::Report;
use anyhow::Result;

/// Messages per second when --rate is not given (0).
const DEFAULT_RATE: u64 = 1000;

pub async fn run(common: &Common) -> Result<Report> {
    let mut common = common.clone();
    if common.rate == 0 {
        common.rate = DEFAULT_RATE;
    }
    let spec = Spec {
        topics: vec!["bench/latency".into()],
        filters: vec!["bench/latency".into()],
        rate: common.rate,
        fan: 1,
        latency: true,
    };
    let o = flow::run(&common, "latency", spec).await?;
    let mut r = report("latency", &common);
    flow_figures(&mut r, &common, &o, 1);
    let h = o.latency.unwrap_or_default();
    let us = |ns: u64| ns as f64 / 1000.0;
    r.int("samples", "samples (measured interval)", h.count(), "msgs");
    r.real("min_us", "min", us(h.min()), "us");
    r.real("p50_us", "p50", us(h.quantile(0.5)), "us");
    r.real("p99_us", "p99", us(h.quantile(0.99)), "us");
    r.real("p999_us", "p99.9", us(h.quantile(0.999)), "us");
    r.real("max_us", "max", us(h.max()), "us");
    r.real("mean_us", "mean", h.mean() / 1000.0, "us");
    cpu_figures(&mut r, o.bench_cpu, o.broker_cpu);
    Ok(r)
}
