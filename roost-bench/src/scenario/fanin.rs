//! Fan-in: P publishers, each on its own topic `bench/<i>`, one subscriber on `bench/#`.
//! Accepted is what the broker took (TCP for QoS 0, acknowledged for QoS 1/2), delivered is
//! what the subscriber received, dropped is the difference over the whole run.

use super::{cpu_figures, flow_figures, report};
use crate::cli::Common;
use crate::flow::{self, Spec};
use crate::report::Report;
use anyhow::Result;

pub async fn run(common: &Common, publishers: usize) -> Result<Report> {
    let spec = Spec {
        topics: (0..publishers).map(|i| format!("bench/{i}")).collect(),
        filters: vec!["bench/#".into()],
        rate: common.rate,
        fan: 1,
        latency: false,
    };
    let o = flow::run(common, "fanin", spec).await?;
    let mut r = report("fanin", common);
    r.params.push(("publishers", publishers.to_string()));
    flow_figures(&mut r, common, &o, 1);
    cpu_figures(&mut r, o.bench_cpu, o.broker_cpu);
    Ok(r)
}
