//! Shared subscription: one publisher on `bench/shared`, N consumers in the group
//! `$share/g/bench/shared`. Each message should reach exactly one consumer; the per-consumer
//! counts show how the broker spreads them. A broker without `$share` refuses the SUBACK (or
//! closes): the run stops there with the broker's reason.

use super::{cpu_figures, flow_figures, report};
use crate::cli::Common;
use crate::flow::{self, Spec};
use crate::report::Report;
use anyhow::{Context, Result};

pub const FILTER: &str = "$share/g/bench/shared";

pub async fn run(common: &Common, subscribers: usize) -> Result<Report> {
    let spec = Spec {
        topics: vec!["bench/shared".into()],
        filters: vec![FILTER.into(); subscribers],
        rate: common.rate,
        fan: 1,
        latency: false,
    };
    let o = flow::run(common, "shared", spec)
        .await
        .context("this scenario needs shared subscriptions ($share, MQTT 5.0 section 4.8.2)")?;
    let mut r = report("shared", common);
    r.params.push(("subscribers", subscribers.to_string()));
    flow_figures(&mut r, common, &o, 1);
    let each = &o.received_each;
    let least = each.iter().copied().min().unwrap_or(0);
    let most = each.iter().copied().max().unwrap_or(0);
    r.int("consumer_min_total", "least served consumer", least, "msgs");
    r.int("consumer_max_total", "most served consumer", most, "msgs");
    r.lists.push(("per_consumer", each.clone()));
    cpu_figures(&mut r, o.bench_cpu, o.broker_cpu);
    Ok(r)
}
