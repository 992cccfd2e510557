//! `roost-bench`, an MQTT load generator for any broker, built on Roost's codec and tokio.
//!
//! It must never be the bottleneck: PUBLISHes are encoded once and copied with a patched
//! packet id, many to a write; received packets are walked in place by a framing-only reader
//! and counted in a local variable; shared counters are bumped once per read or write. Control
//! packets (CONNACK, SUBACK, anything unexpected) go through `roost::protocol::decode`, so a
//! broker's refusal is reported with its reason. Its own CPU use is reported beside the
//! broker's, so a saturated bench shows.
//!
//! Layout:
//! - `cli`: the command line (clap).
//! - `scenario/`: fanin, fanout, latency, conns, handshakes, shared, retained; each builds a spec (or runs
//!   its own loop: conns, retained) and a report.
//! - `flow`: the shared timeline (setup, warm-up, measured interval, drain, progress lines).
//! - `client`: connect, CONNECT/CONNACK, SUBSCRIBE/SUBACK with the full codec.
//! - `stream`: TCP, or TLS over it (`--tls-ca`).
//! - `publisher`, `subscriber`: the hot loops.
//! - `template`, `frame`, `pacer`: pre-encoded PUBLISH, framing-only reader, constant rate.
//! - `stats`, `histogram`, `procfs`, `report`: counting, latency, /proc, output.

mod cli;
mod client;
mod flow;
mod frame;
mod histogram;
mod pacer;
mod procfs;
mod publisher;
mod report;
mod scenario;
mod stats;
mod stream;
mod subscriber;
mod template;

use anyhow::Context;
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut cli = cli::Cli::parse();
    if cli.common.tls_ca.is_some() || cli.common.tls_insecure {
        match stream::Tls::new(cli.common.tls_ca.as_deref()) {
            Ok(tls) => cli.common.tls = Some(tls),
            Err(e) => {
                eprintln!("roost-bench: {e:#}");
                return ExitCode::FAILURE;
            }
        }
    }
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("roost-bench {}: {e:#}", cli.scenario.name());
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &cli::Cli) -> anyhow::Result<()> {
    cli.common.validate(&cli.scenario)?;
    let threads = cli
        .common
        .threads
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1);
    // The bench holds as many sockets as the broker: the raised limit spares users a
    // `ulimit -n`, and with more than one thread (unpinned) its descriptor table would grow
    // with the same stalls as the broker's (roost's src/fd_table.rs).
    roost::fd_table::prepare();
    let runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
    .context("cannot start the tokio runtime")?;
    let report = runtime.block_on(scenario::run(&cli.scenario, &cli.common))?;
    // Tasks still parked on sockets are dropped with the runtime, without waiting for them.
    runtime.shutdown_background();
    if cli.common.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_table());
    }
    Ok(())
}
