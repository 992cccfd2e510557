//! Fan-out: one publisher on `bench/fanout`, N subscribers on it. The figure is deliveries
//! per second summed over the subscribers; the spread between the least and the most served
//! subscriber shows whether one slow connection held the others back.

use super::{cpu_figures, flow_figures, report};
use crate::cli::Common;
use crate::flow::{self, Spec};
use crate::report::Report;
use anyhow::Result;

pub async fn run(common: &Common, subscribers: usize) -> Result<Report> {
    let spec = Spec {
        topics: vec!["bench/fanout".into()],
        filters: vec!["bench/fanout".into(); subscribers],
        rate: common.rate,
        fan: subscribers as u64,
        latency: false,
    };
    let o = flow::run(common, "fanout", spec).await?;
    let mut r = report("fanout", common);
    r.params.push(("subscribers", subscribers.to_string()));
    flow_figures(&mut r, common, &o, subscribers as u64);
    let least = o.received_each.iter().copied().min().unwrap_or(0);
    let most = o.received_each.iter().copied().max().unwrap_or(0);
    r.int(
        "subscriber_min_total",
        "least served subscriber",
        least,
        "msgs",
    );
    r.int(
        "subscriber_max_total",
        "most served subscriber",
        most,
        "msgs",
    );
    let starved = o.received_each.iter().filter(|&&n| n == 0).count() as u64;
    r.int(
        "subscribers_starved",
        "subscribers that got nothing",
        starved,
        "subs",
    );
    cpu_figures(&mut r, o.bench_cpu, o.broker_cpu);
    Ok(r)
}
